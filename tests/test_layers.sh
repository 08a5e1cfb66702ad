#!/bin/sh
# test_layers.sh - the source tree keeps its layering (tools/check/layers.py):
# includes only go down (proto/, the workers, model/ and kernels/ never
# include coordinator/), and no two files of the library call each other
# around a circle (from nm of the objects of $BUILD).
set -u
BUILD=${BUILD:-build}
/usr/bin/python3 tools/check/layers.py "$BUILD"
