#!/usr/bin/python3
"""layers.py - checks the source tree's layering (README.md, "Layout").

1. Includes only go down: each folder has a rank, and a file may include a
   header of its own folder or of a folder of lower rank, never of the same
   rank elsewhere or above (so proto/, the workers, model/ and kernels/ never
   include coordinator/):
       kernels/ (and its cpu/, cuda/, ref/)      0
       model/                                    1
       common/                                   2
       proto/                                    3
       cli/                                      4
       small_worker/, large_worker/, align/      5
       coordinator/                              6
   cli/bild.c, the executable's main, reaches the commands above it only
   through the declarations of cli/commands.h.
2. No two files of the library call each other, directly or around a
   circle: from `nm` of each object of BUILD (default build/), the graph
   "file A calls a function defined in file B" has no cycle.

Usage: layers.py [BUILD]. Prints what breaks a rule; exits 1 if anything does.
"""
import collections
import glob
import os
import re
import subprocess
import sys

RANK = {"kernels": 0, "model": 1, "common": 2, "proto": 3, "cli": 4,
        "small_worker": 5, "large_worker": 5, "align": 5, "coordinator": 6}
FAMILY = {"kernels/cpu": "kernels", "kernels/cuda": "kernels", "kernels/ref": "kernels"}


def folder(path):
    d = os.path.dirname(path)
    return FAMILY.get(d, d)


def sources():
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.c", "*.h", "*.cu"], capture_output=True, text=True, check=True)
    return sorted({p for p in out.stdout.split() if folder(p) in RANK and os.path.exists(p)})


def check_includes(bad):
    n = 0
    for path in sources():
        here = folder(path)
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
                if not m:
                    continue
                n += 1
                there = folder(m.group(1))
                if there == here:
                    continue
                if there not in RANK:
                    bad.append(f"{path}:{lineno}: includes {m.group(1)}, outside the layered folders")
                elif RANK[there] >= RANK[here] and not (path == "cli/bild.c" and m.group(1) == "cli/commands.h"):
                    bad.append(f"{path}:{lineno}: {here}/ (rank {RANK[here]}) includes {m.group(1)} "
                               f"({there}/, rank {RANK[there]})")
    return n


def check_cycles(build, bad):
    objs = {}
    for path in sources():
        if path.endswith((".c", ".cu")):
            o = os.path.join(build, os.path.splitext(path)[0] + ".o")
            if os.path.exists(o):
                objs[path] = o
    if len(objs) < 20:
        bad.append(f"only {len(objs)} objects found under {build}/: build first (make)")
        return 0
    defined, wanted = {}, {}
    for path, o in objs.items():
        nm = subprocess.run(["nm", o], capture_output=True, text=True, check=True).stdout
        wanted[path] = set()
        for line in nm.splitlines():
            f = line.split()
            if len(f) == 3 and f[1] in "TDRB":
                defined.setdefault(f[2], path)
            elif len(f) == 2 and f[0] == "U":
                wanted[path].add(f[1])
    calls = collections.defaultdict(dict)
    for path, syms in wanted.items():
        for s in syms:
            if s in defined and defined[s] != path:
                calls[path].setdefault(defined[s], s)
    # Tarjan's strongly connected components
    index, low, stack, on, comps = {}, {}, [], set(), []
    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in calls[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))
    sys.setrecursionlimit(10000)
    for v in sorted(objs):
        if v not in index:
            visit(v)
    for comp in comps:
        edges = [f"{a} calls {b} ({calls[a][b]})" for a in comp for b in comp if b in calls[a]]
        bad.append("files calling each other around a circle: " + "; ".join(edges))
    return len(objs)


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    bad = []
    n_inc = check_includes(bad)
    n_obj = check_cycles(build, bad)
    for b in bad:
        print("FAIL", b)
    print(f"layers: {n_inc} includes, {n_obj} objects checked; {len(bad)} problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
