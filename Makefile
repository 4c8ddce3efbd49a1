# camoxpert — build. `make` builds build/camoxpert and build/libcamoxpert.a;
# `make test`, `make bench`, `make demo`, `make clean`; `make DEBUG=1 ...` builds
# with -O0 -g and AddressSanitizer + UndefinedBehaviorSanitizer into build-debug/.
# Overrides: CC=, OPT=, V=1 (show commands), THREADS=, USE_DNNL=0, WERROR=1 (on by default when CI is set),
# CUDA_HOME= (default /usr/local/cuda), USE_CUDA=0 (leave the CUDA backend out), GPU_ARCH= (native, or nvcc -gencode flags).
# Sources are found by wildcard: every src/<layer>/*.c is part of the library
# except src/cli/, which makes the program; tests/*.c make the test runner.

CC ?= cc
ifeq ($(CC),cc)
CC := gcc
endif
PKG_CONFIG ?= pkg-config
DEBUG ?= 0
WERROR ?= $(if $(CI),1,0)

ifeq ($(DEBUG),1)
BUILD ?= build-debug
OPT ?= -O0 -g -fsanitize=address,undefined -fno-omit-frame-pointer
LDSAN := -fsanitize=address,undefined
else
BUILD ?= build
OPT ?= -O2 -g -march=native -fno-math-errno
LDSAN :=
endif

CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -fopenmp -Isrc -MMD -MP
ifeq ($(WERROR),1)
CFLAGS_BASE += -Werror
endif

# ---- dependency probes ----------------------------------------------------
H := \#
pc_cflags = $(shell $(PKG_CONFIG) --cflags $(1) 2>/dev/null)
pc_libs = $(shell $(PKG_CONFIG) --libs $(1) 2>/dev/null)
# try_link(includes, code, libs): 1 if a tiny program compiles and links.
try_link = $(shell printf '$(1)\nint main(void){$(2);return 0;}\n' | $(CC) -x c - -x none -o /dev/null $(3) >/dev/null 2>&1 && echo 1 || echo 0)

# Prefer Debian's OpenMP build of OpenBLAS: it shares libgomp's thread pool with
# our OpenMP loops, where the pthreads build competes with it for the cores.
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
OPENBLAS_OMP_DIR := /usr/lib/$(MULTIARCH)/openblas-openmp
ifneq ($(wildcard $(OPENBLAS_OMP_DIR)/libopenblas.so),)
OPENBLAS_CFLAGS ?= -I/usr/include/$(MULTIARCH)/openblas-openmp
OPENBLAS_LIBS ?= -L$(OPENBLAS_OMP_DIR) -Wl,-rpath,$(OPENBLAS_OMP_DIR) -lopenblas
OPENBLAS_KIND := OpenMP build
else
OPENBLAS_CFLAGS ?= $(call pc_cflags,openblas)
OPENBLAS_LIBS ?= $(or $(call pc_libs,openblas),-lopenblas)
OPENBLAS_KIND := not the OpenMP build: threads may compete; scripts/deps.sh installs it
endif
HAVE_OPENBLAS := $(call try_link,$(H)include <cblas.h>,cblas_sgemm(0,0,0,0,0,0,0,0,0,0,0,0,0,0),$(OPENBLAS_CFLAGS) $(OPENBLAS_LIBS))
CJSON_LIBS ?= $(or $(call pc_libs,libcjson),-lcjson)
HAVE_CJSON := $(call try_link,$(H)include <cjson/cJSON.h>,cJSON_Parse(0),$(CJSON_LIBS))
JPEG_LIBS ?= $(or $(call pc_libs,libjpeg),-ljpeg)
HAVE_JPEG := $(call try_link,$(H)include <stdio.h>\n$(H)include <jpeglib.h>,jpeg_std_error(0),$(JPEG_LIBS))
SPNG_LIBS ?= $(or $(call pc_libs,spng),-lspng)
HAVE_SPNG := $(call try_link,$(H)include <spng.h>,spng_ctx_new(0),$(SPNG_LIBS))
USE_DNNL ?= 1
ifeq ($(USE_DNNL),1)
DNNL_LIBS ?= $(or $(call pc_libs,dnnl),-ldnnl)
HAVE_DNNL := $(call try_link,$(H)include <oneapi/dnnl/dnnl.h>,dnnl_version(),$(DNNL_LIBS))
else
HAVE_DNNL := 0
endif
# ---- CUDA: the GPU backend (src/ops/cuda/*.cu) is built when nvcc, cuDNN and
# cuBLASLt are found, unless USE_CUDA=0, as a plug-in beside the program
# (build/libcamoxpert_cuda.so: cudart linked statically; cuDNN and cuBLASLt found at
# run time through the rpath or the system's library path) that ops.c opens on the
# first GPU call. The programs export the library's functions to it (-rdynamic,
# the whole archive). A CPU run never maps the GPU libraries; the program starts
# without a GPU, a driver or the plug-in (--device cuda then says why).
CUDA_HOME ?= /usr/local/cuda
NVCC := $(CUDA_HOME)/bin/nvcc
USE_CUDA ?= 1
ifeq ($(USE_CUDA),1)
HAVE_NVCC := $(shell test -x $(NVCC) && echo 1 || echo 0)
HAVE_CUDNN := $(shell test -f $(CUDA_HOME)/include/cudnn.h -o -f /usr/include/cudnn.h -o -f /usr/include/$(shell $(CC) -print-multiarch 2>/dev/null)/cudnn.h && echo 1 || echo 0)
HAVE_CUDA := $(if $(filter 11,$(HAVE_NVCC)$(HAVE_CUDNN)),1,0)
else
HAVE_NVCC := 0
HAVE_CUDNN := 0
HAVE_CUDA := 0
endif
# GPU code (docs/DEPLOY.md, "Supported cards"): machine code for every common card of compute
# capability 8.0 and newer — sm_80 (A100, A30), sm_86 (RTX 30, A10, A40, RTX A-series), sm_89
# (RTX 40, L4, L40S), sm_90 (H100, H200) — plus compute_90 PTX, which the driver compiles for
# newer cards (Blackwell: B200, RTX 50) on first use. A card of another 8.x minor runs its major's
# code (8.7 runs sm_86). GPU_ARCH=native: the build machine's own card only (nvcc -arch=native,
# the quickest build); or nvcc's flags as they are: GPU_ARCH="-gencode arch=compute_120,code=sm_120".
GPU_ARCH ?= $(foreach a,80 86 89 90,-gencode arch=compute_$(a),code=sm_$(a)) -gencode arch=compute_90,code=compute_90
comma := ,
GPU_ARCH_FLAGS := $(if $(filter native,$(GPU_ARCH)),-arch=native,$(GPU_ARCH))
# What the plug-in says it holds (camoxpert --version; the error on a card it lacks): each
# code=X of GPU_ARCH, sm_X and compute_X of -arch=sm_X, or "native".
GPU_ARCH_LIST := $(if $(filter native,$(GPU_ARCH)),native,$(strip \
    $(patsubst code=%,%,$(filter code=%,$(subst $(comma), ,$(GPU_ARCH)))) \
    $(foreach a,$(patsubst -arch=sm_%,%,$(filter -arch=sm_%,$(GPU_ARCH))),sm_$(a) compute_$(a))))
CUDA_LIBDIR := $(firstword $(wildcard $(CUDA_HOME)/lib64 $(CUDA_HOME)/lib))
ifeq ($(HAVE_CUDA),1)
CUDA_LIBS := -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) -lcudnn -lcublasLt -lcudart_static -ldl -lrt -lstdc++
HOST_CUDA_LIBS := -ldl -rdynamic
endif

MISSING := $(if $(filter 0,$(HAVE_OPENBLAS)),openblas) $(if $(filter 0,$(HAVE_CJSON)),cjson) \
           $(if $(filter 0,$(HAVE_JPEG)),libjpeg) $(if $(filter 0,$(HAVE_SPNG)),libspng)
MISSING := $(strip $(MISSING))

DEFS := -DHAVE_DNNL=$(HAVE_DNNL) -DHAVE_CUDA=$(HAVE_CUDA)
LIBS := $(OPENBLAS_LIBS) $(CJSON_LIBS) $(JPEG_LIBS) $(SPNG_LIBS) $(if $(filter 1,$(HAVE_DNNL)),$(DNNL_LIBS)) $(HOST_CUDA_LIBS) -lm -lpthread
CFLAGS := $(CFLAGS_BASE) $(OPT) $(OPENBLAS_CFLAGS) $(DEFS) $(EXTRA_CFLAGS)
LDFLAGS := -fopenmp $(LDSAN) $(EXTRA_LDFLAGS)

ok = $(if $(filter 1,$(1)),✓,✗)

# ---- sources ----------------------------------------------------------------
LIB_SRC := $(sort $(filter-out src/cli/%,$(wildcard src/*/*.c src/*/*/*.c)))
CU_SRC := $(if $(filter 1,$(HAVE_CUDA)),$(sort $(wildcard src/ops/cuda/*.cu)))
CLI_SRC := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/*.c))
BENCH_SRC := $(sort $(wildcard bench/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CU_OBJ := $(CU_SRC:%.cu=$(BUILD)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)
BENCH_OBJ := $(BENCH_SRC:%.c=$(BUILD)/obj/%.o)
LIB := $(BUILD)/libcamoxpert.a
CUDA_PLUGIN := $(if $(filter 1,$(HAVE_CUDA)),$(BUILD)/libcamoxpert_cuda.so)
# the whole library in each program: the CUDA plug-in may call any of it
ifeq ($(HAVE_CUDA),1)
LINK_LIB := -Wl,--whole-archive $(LIB) -Wl,--no-whole-archive
else
LINK_LIB := $(LIB)
endif
BIN := $(BUILD)/camoxpert
TESTBIN := $(BUILD)/camoxpert_tests
BENCHBIN := $(BUILD)/camoxpert_bench

.PHONY: all config test test-fast bench demo deps clean
all: config $(BIN) $(LIB)

config:
	@echo "camoxpert build ($(BUILD)): CC=$(CC) DEBUG=$(DEBUG)"
	@echo "  $(call ok,$(HAVE_OPENBLAS)) OpenBLAS   (GEMM; $(OPENBLAS_KIND))"
	@echo "  $(call ok,$(HAVE_DNNL)) oneDNN     (convolution, matmul; optional, USE_DNNL=0 to disable)"
	@echo "  $(call ok,$(HAVE_CJSON)) cJSON      (JSON)"
	@echo "  $(call ok,$(HAVE_JPEG)) libjpeg-turbo"
	@echo "  $(call ok,$(HAVE_SPNG)) libspng"
	@echo "  $(call ok,$(HAVE_CUDA)) CUDA       (GPU backend: nvcc $(call ok,$(HAVE_NVCC)), cuDNN $(call ok,$(HAVE_CUDNN)); CUDA_HOME=$(CUDA_HOME); USE_CUDA=0 to leave out)"
ifeq ($(HAVE_CUDA),1)
	@echo "             GPU code: $(GPU_ARCH_LIST) (GPU_ARCH=native: this machine's card only)"
endif
ifneq ($(MISSING),)
	@echo "missing required libraries: $(MISSING) — run scripts/deps.sh (apt-get) or pass *_LIBS= overrides"; exit 1
endif

V ?= 0
Q := $(if $(filter 1,$(V)),,@)

# The fast CPU kernels may fuse a*b + c into one FMA (-std=c11 turns GCC's
# contraction off): it doubles the arithmetic rate of the depthwise and
# element-wise loops, and changes results only within the op table's
# fast-vs-reference tolerances. The reference kernels keep strict rounding.
$(BUILD)/obj/src/ops/cpu/%.o: CFLAGS += -ffp-contract=fast

# Objects depend on the flags they were built with: switching USE_CUDA, USE_DNNL,
# DEBUG or OPT rebuilds what they change (the file is rewritten only on a change).
FLAGS_FILE := $(BUILD)/flags
FLAGS_NOW := $(subst ','"'"',$(CFLAGS) $(NVCC) $(GPU_ARCH_FLAGS) $(GPU_ARCH_LIST) $(LIBS) $(LDFLAGS))
$(shell mkdir -p $(BUILD); echo '$(FLAGS_NOW)' | cmp -s - $(FLAGS_FILE) || echo '$(FLAGS_NOW)' > $(FLAGS_FILE))

# The report page's script and style sheet are built into assets.o (.incbin).
$(BUILD)/obj/src/report/assets.o: src/report/page.js src/report/page.css

$(BUILD)/obj/%.o: %.c $(FLAGS_FILE)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC  $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# CUDA kernels: C++17 under nvcc, the same warnings (as errors under WERROR) from the host compiler.
NVCCFLAGS := -std=c++17 -O3 $(GPU_ARCH_FLAGS) -DCX_GPU_ARCHS='"$(GPU_ARCH_LIST)"' -Isrc -D_GNU_SOURCE $(DEFS) -MMD -MP -Xcompiler -fPIC,-Wall,-Wextra,-Wno-unused-parameter \
             $(if $(filter 1,$(WERROR)),-Werror all-warnings -Xcompiler -Werror) $(if $(filter 1,$(DEBUG)),-g -G,-lineinfo)
# photo.cu rounds as the host does (core/pixels.h): no fused multiply-adds.
$(BUILD)/obj/src/ops/cuda/photo.o: NVCCFLAGS += -fmad=false
$(BUILD)/obj/%.o: %.cu $(FLAGS_FILE)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  NVCC $<")
	$(Q)$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	@$(if $(Q),echo "  AR  $@")
	$(Q)ar rcs $@ $^

$(CUDA_PLUGIN): $(CU_OBJ) $(FLAGS_FILE)
	@$(if $(Q),echo "  LD  $@")
	$(Q)$(CC) -shared -o $@ $(CU_OBJ) $(CUDA_LIBS) -lpthread

$(BIN): $(CLI_OBJ) $(LIB) $(CUDA_PLUGIN) $(FLAGS_FILE)
	@$(if $(Q),echo "  LD  $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(LINK_LIB) $(LIBS)

$(TESTBIN): $(TEST_OBJ) $(LIB) $(CUDA_PLUGIN) $(FLAGS_FILE)
	@$(if $(Q),echo "  LD  $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(TEST_OBJ) $(LINK_LIB) $(LIBS)

$(BENCHBIN): $(BENCH_OBJ) $(LIB) $(CUDA_PLUGIN) $(FLAGS_FILE)
	@$(if $(Q),echo "  LD  $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(BENCH_OBJ) $(LINK_LIB) $(LIBS)

# The test runner prints "N passed, N failed" and exits non-zero on a failure.
# `make test` is the whole suite (what CI runs); `make test-fast` leaves out the tests
# marked TEST_SLOW (training runs, kills and resumes, twin and shared fixtures, several
# processes, Chromium, ONNX Runtime) and the fuzzers' smoke run: under 90 s on 2 cores.
# TESTS=NAME... selects tests by name (or, as tests/test_x.c, by file) either way.
test: config $(BIN) $(TESTBIN)
	./$(TESTBIN) $(TESTS)

test-fast: config $(BIN) $(TESTBIN)
	./$(TESTBIN) --fast $(TESTS)

bench: config $(BIN) $(BENCHBIN)
	./$(BENCHBIN) $(BENCH)

demo: config $(BIN)
	./scripts/demo.sh

deps:
	./scripts/deps.sh

clean:
	rm -rf build build-debug

-include $(LIB_OBJ:.o=.d) $(CU_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(BENCH_OBJ:.o=.d)

# ---- fuzzing (every parser: images, file names, safetensors) ---------------------
# `make fuzz` builds the harnesses fuzz/fuzz_*.c into build-fuzz/ with libFuzzer
# (clang -fsanitize=fuzzer,address,undefined); `make fuzz-smoke` runs each for
# FUZZ_SECONDS (default 3) from a generated seed corpus, and `make test` runs it.
# Without clang's libFuzzer the harnesses are linked with fuzz/driver.c, a
# deterministic mutation driver (FUZZ_ITERS mutants per seed), under $(CC) ASan.
# Long runs: build-fuzz/fuzz_image build-fuzz/corpus/image -max_total_time=600
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 3
FUZZ_ITERS ?= 300
FUZZ_BUILD := build-fuzz
HAVE_LIBFUZZER := $(shell printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n){return 0;}\n' | $(FUZZ_CC) -fsanitize=fuzzer -x c - -o /dev/null >/dev/null 2>&1 && echo 1 || echo 0)
FUZZ_LIB_SRC := src/core/arena.c src/core/device.c src/core/error.c src/core/io.c src/core/log.c src/core/names.c src/core/rng.c \
                src/core/safetensors.c src/core/tensor.c src/core/text.c $(sort $(wildcard src/data/image.c src/data/dataset.c)) \
                src/report/runlog.c
FUZZ_NAMES := $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_BINS := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz_%)
ifeq ($(HAVE_LIBFUZZER),1)
FUZZ_COMPILER := $(FUZZ_CC)
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -Isrc -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -MMD -MP
FUZZ_LINK := -fsanitize=fuzzer,address,undefined
FUZZ_MAIN :=
else
FUZZ_COMPILER := $(CC)
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -Isrc -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -MMD -MP
FUZZ_LINK := -fsanitize=address,undefined
FUZZ_MAIN := $(FUZZ_BUILD)/obj/fuzz/driver.o
endif
FUZZ_LIB_OBJ := $(FUZZ_LIB_SRC:%.c=$(FUZZ_BUILD)/obj/%.o)
.SECONDARY: $(FUZZ_LIB_OBJ) $(FUZZ_NAMES:%=$(FUZZ_BUILD)/obj/fuzz/fuzz_%.o) $(FUZZ_MAIN)

.PHONY: fuzz fuzz-smoke
fuzz: $(FUZZ_BINS)

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_COMPILER) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/obj/fuzz/fuzz_%.o $(FUZZ_LIB_OBJ) $(FUZZ_MAIN)
	$(FUZZ_COMPILER) $(FUZZ_LINK) -o $@ $^ $(JPEG_LIBS) $(SPNG_LIBS) $(CJSON_LIBS) -lm -lpthread

$(BUILD)/make_seeds: fuzz/make_seeds.c $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LIBS)

fuzz-smoke: $(FUZZ_BINS) $(BUILD)/make_seeds
	@rm -rf $(FUZZ_BUILD)/corpus $(FUZZ_BUILD)/new && mkdir -p $(FUZZ_BUILD)/corpus/names $(FUZZ_BUILD)/new/image \
	    $(FUZZ_BUILD)/new/names $(FUZZ_BUILD)/new/safetensors $(FUZZ_BUILD)/corpus/runlog $(FUZZ_BUILD)/new/runlog
	@cp fuzz/runlog_seed.jsonl $(FUZZ_BUILD)/corpus/runlog/
	@$(BUILD)/make_seeds $(FUZZ_BUILD)/corpus/image $(FUZZ_BUILD)/corpus/safetensors >/dev/null
	@cp tests/fixtures/train_golden.safetensors $(FUZZ_BUILD)/corpus/safetensors/
	@printf 'COD10K-CAM-1-Aquatic-1-BatFish-1' > $(FUZZ_BUILD)/corpus/names/cod10k
	@printf 'SYN-CAM-sand-000017.jpg' > $(FUZZ_BUILD)/corpus/names/synth
ifeq ($(HAVE_LIBFUZZER),1)
	@for t in $(FUZZ_NAMES); do echo "fuzz-smoke: $$t for $(FUZZ_SECONDS) s (libFuzzer, ASan+UBSan)"; \
	  if $(FUZZ_BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	       $(FUZZ_BUILD)/new/$$t $(FUZZ_BUILD)/corpus/$$t > $(FUZZ_BUILD)/$$t.log 2>&1; \
	  then grep -E 'stat::number_of_executed_units' $(FUZZ_BUILD)/$$t.log; \
	  else tail -40 $(FUZZ_BUILD)/$$t.log; echo "fuzz-smoke: $$t FAILED (log: $(FUZZ_BUILD)/$$t.log)"; exit 1; fi; done
else
	@for t in $(FUZZ_NAMES); do echo "fuzz-smoke: $$t, $(FUZZ_ITERS) mutants per seed (driver, ASan+UBSan)"; \
	  $(FUZZ_BUILD)/fuzz_$$t -n $(FUZZ_ITERS) $(FUZZ_BUILD)/corpus/$$t/* || exit 1; done
endif

test: fuzz-smoke

-include $(FUZZ_LIB_OBJ:.o=.d) $(FUZZ_BUILD)/obj/fuzz/*.d
