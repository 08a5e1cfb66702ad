# bild - Big Little Decoder.  `make` builds the CPU version into build/.
#
#   make                 build/bild and the library
#   make demo            install deps, build, fetch stories15M, write a story with BiLD,
#                        then BiLD --exact against the large model alone (scripts/demo.sh)
#   make test            install deps, build and run every test (tests/run.sh)
#   make bench           build and run the benchmarks (bench/)
#   make models          fetch stories15M into models/ (scripts/get-models.sh)
#   make deps            install the Debian packages the build needs (idempotent)
#   make SANITIZE=address,undefined test
#   make debug           -O0 build
#   make CUDA=1          also the CUDA backend (--device cuda:N), into build/cuda/
#   make fuzz            libFuzzer targets on the message decoder and the safetensors parser (clang) into build/fuzz/
#   make clean
#
# CI adds WERROR=1.

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
CFLAGS  := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter $(OPT) -g \
           -fno-math-errno -I. -MMD -MP $(EXTRA_CFLAGS)
LDLIBS  := -lzmq -lmsgpackc -lcjson -lpcre2-8 -licuuc -lpthread -lm
LDFLAGS :=

# make CUDA=1: the CUDA backend (kernels/cuda/*.cu: nvcc, cuBLAS) into
# build/cuda/, a fat binary for CUDA_ARCH (compute capabilities; override
# with e.g. CUDA_ARCH=90 for one GPU). CUDA_HOME is the toolkit's root.
comma     := ,
CUDA      ?= 0
CUDA_HOME ?= /usr/local/cuda
NVCC      ?= $(CUDA_HOME)/bin/nvcc
CUDA_ARCH ?= 75 80 86 89 90
ifeq ($(CUDA),1)
BUILD   := build/cuda
CFLAGS  += -DBILD_CUDA
NVCCFLAGS := -std=c++17 -O3 -g -lineinfo -I. -DBILD_CUDA \
             $(foreach a,$(CUDA_ARCH),-gencode arch=compute_$(a),code=sm_$(a)) \
             -gencode arch=compute_$(lastword $(CUDA_ARCH)),code=compute_$(lastword $(CUDA_ARCH)) \
             -Xcompiler -Wall,-Wextra,-Wno-unused-parameter$(if $(filter 1,$(WERROR)),$(comma)-Werror,)
LDLIBS  += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart -ldl -lstdc++
endif

# ICU=0: no libicu (tokenizer.json files with an NFC normalizer are then
# refused with a message); for machines without it, such as a GPU box that
# is handed prebuilt binaries (tests/gpu/run.sh).
ICU ?= 1
ifeq ($(ICU),0)
CFLAGS += -DBILD_NO_ICU
LDLIBS := $(filter-out -licuuc,$(LDLIBS))
endif

ifeq ($(WERROR),1)
CFLAGS += -Werror
endif
ifneq ($(SANITIZE),)
CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SANITIZE)
BUILD   := $(if $(filter 1,$(CUDA)),build/cuda-san,build/san)
endif

# Per-ISA kernel files are compiled with their own flags and chosen at run time.
AVX512_FLAGS := -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma -mavx2
AVX2_FLAGS   := -mavx2 -mfma -mf16c

# Everything but cli/bild.c (the executable's main) goes into the library;
# each command's entry point (cli/commands.h) is in it too.
LIB_SRC  := $(wildcard kernels/*.c kernels/ref/*.c kernels/cpu/*.c model/*.c proto/*.c common/*.c align/*.c eval/*.c) \
            $(filter-out cli/bild.c,$(wildcard cli/*.c)) \
            $(wildcard small_worker/*.c large_worker/*.c coordinator/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
ifeq ($(CUDA),1)
CU_SRC   := $(wildcard kernels/cuda/*.cu)
LIB_OBJ  += $(CU_SRC:%.cu=$(BUILD)/%.o)
endif
# GPU tests and benchmarks (tests/gpu/run.sh runs them on a GPU machine; they
# also take --device cpu): built always, never run by tests/run.sh.
GPU_SRC  := $(wildcard tests/gpu/*.c)
GPU_BIN  := $(GPU_SRC:tests/gpu/%.c=$(BUILD)/gpu/%)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all test bench demo models deps debug clean info fuzz
all: info $(BUILD)/bild $(TEST_BIN) $(BENCH_BIN) $(GPU_BIN) $(BUILD)/tests/bild-proto1

info:
	@echo "bild: $(if $(filter 1,$(CUDA)),CPU + CUDA (sm_$(CUDA_ARCH)),CPU) build into $(BUILD)/$(if $(SANITIZE), with -fsanitize=$(SANITIZE),)"

$(BUILD)/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX512_FLAGS) -c $< -o $@

$(BUILD)/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX2_FLAGS) -c $< -o $@

$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libbild.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/bild: $(BUILD)/cli/bild.o $(BUILD)/libbild.a
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# bild speaking protocol version 1 (an older release): the peer of another version in tests/test_faults.sh
$(BUILD)/tests/proto_v1.o: proto/proto.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DPROTO_VERSION=1 -c $< -o $@

$(BUILD)/tests/bild-proto1: $(BUILD)/cli/bild.o $(BUILD)/tests/proto_v1.o $(BUILD)/libbild.a
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(BUILD)/libbild.a
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/gpu/%: $(BUILD)/tests/gpu/%.o $(BUILD)/libbild.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(BUILD)/libbild.a
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

test: deps
	$(MAKE) all
	sh scripts/get-models.sh
	BUILD=$(BUILD) sh tests/run.sh

# The README's first command: install, build, fetch the models, and write a
# story with BiLD as three processes (launch/local.sh: the large and the
# small worker over ipc://, the coordinator in front; stories15M large, the
# project's aligned small model, tools/align/stories15M-aligned). Story on stdout,
# statistics on stderr.
SMALL_MODEL ?= tools/align/stories15M-aligned
DEMO_PROMPT ?= Once upon a time, there was a little girl named Lily.
demo:
	BUILD=$(BUILD) sh scripts/demo.sh $(SMALL_MODEL) "$(DEMO_PROMPT)"

bench: all models
	$(BUILD)/bench/decode
	$(BUILD)/bench/bild
	BILD=$(BUILD)/bild sh bench/remote.sh

models:
	sh scripts/get-models.sh

deps:
	sh scripts/install-deps.sh

debug:
	$(MAKE) OPT=-O0 BUILD=build/debug

# The message decoder under libFuzzer with AddressSanitizer and UBSan
# (tests/fuzz/fuzz_proto.c; needs clang and libclang-rt-14-dev, see
# scripts/install-deps.sh). Builds build/fuzz/fuzz_proto and the seed-corpus
# writer build/fuzz/make_corpus, and writes one valid message of every type
# into build/fuzz/corpus (inputs the fuzzer finds later are kept there too).
# Always into build/fuzz with its own flags, whatever BUILD and SANITIZE say.
# tests/test_fuzz.sh runs a short fixed number of executions; the long run:
#   make fuzz && build/fuzz/fuzz_proto -runs=1000000 build/fuzz/corpus
# (a crash leaves crash-<sha1> in the current folder; rerun it with
# build/fuzz/fuzz_proto crash-<sha1>).
FUZZ_CC     ?= clang
FUZZ_DIR    := build/fuzz
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter -g -O1 -I. \
               -fno-omit-frame-pointer $(if $(filter 1,$(WERROR)),-Werror,)
FUZZ_DEPS   := proto/proto.c proto/proto.h common/worker.h

fuzz: $(FUZZ_DIR)/fuzz_proto $(FUZZ_DIR)/make_corpus $(FUZZ_DIR)/fuzz_safetensors $(FUZZ_DIR)/fuzz_tokenizer_json
	$(FUZZ_DIR)/make_corpus $(FUZZ_DIR)/corpus

$(FUZZ_DIR)/fuzz_proto: tests/fuzz/fuzz_proto.c $(FUZZ_DEPS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	    tests/fuzz/fuzz_proto.c proto/proto.c -o $@ -lmsgpackc

$(FUZZ_DIR)/make_corpus: tests/fuzz/make_corpus.c $(FUZZ_DEPS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) tests/fuzz/make_corpus.c proto/proto.c -o $@ -lmsgpackc

# The safetensors header parser (tests/fuzz/fuzz_safetensors.c; seeds in
# tests/fuzz/safetensors_seeds; short run in tests/test_fuzz_safetensors.sh):
#   make fuzz && build/fuzz/fuzz_safetensors -runs=1000000 tests/fuzz/safetensors_seeds
$(FUZZ_DIR)/fuzz_safetensors: tests/fuzz/fuzz_safetensors.c model/safetensors.c model/safetensors.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	    tests/fuzz/fuzz_safetensors.c model/safetensors.c -o $@ -lcjson

# The tokenizer.json loader and encoder (tests/fuzz/fuzz_tokenizer_json.c;
# seeds in tests/fuzz/tokenizer_seeds; short run in tests/test_fuzz_tokenizer.sh):
#   make fuzz && build/fuzz/fuzz_tokenizer_json -runs=1000000 -max_len=6000 tests/fuzz/tokenizer_seeds
$(FUZZ_DIR)/fuzz_tokenizer_json: tests/fuzz/fuzz_tokenizer_json.c model/tokenizer.c model/tokenizer_hf.c \
                                 model/tokenizer.h model/tokenizer_impl.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	    tests/fuzz/fuzz_tokenizer_json.c model/tokenizer.c model/tokenizer_hf.c -o $@ -lcjson -lpcre2-8 -licuuc

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
