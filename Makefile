# camoxpert — build. `make` builds build/camoxpert and build/libcamoxpert.a;
# `make test`, `make bench`, `make demo`, `make clean`; `make DEBUG=1 ...` builds
# with -O0 -g and AddressSanitizer + UndefinedBehaviorSanitizer into build-debug/.
# Overrides: CC=, OPT=, V=1 (show commands), THREADS=, USE_DNNL=0, WERROR=1 (on by default when CI is set).
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
try_link = $(shell printf '$(1)\nint main(void){$(2);return 0;}\n' | $(CC) -x c - -o /dev/null $(3) >/dev/null 2>&1 && echo 1 || echo 0)

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
HAVE_NVCC := $(shell command -v $(or $(CUDA_HOME),/usr/local/cuda)/bin/nvcc >/dev/null 2>&1 && echo 1 || echo 0)

MISSING := $(if $(filter 0,$(HAVE_OPENBLAS)),openblas) $(if $(filter 0,$(HAVE_CJSON)),cjson) \
           $(if $(filter 0,$(HAVE_JPEG)),libjpeg) $(if $(filter 0,$(HAVE_SPNG)),libspng)
MISSING := $(strip $(MISSING))

DEFS := -DHAVE_DNNL=$(HAVE_DNNL)
LIBS := $(OPENBLAS_LIBS) $(CJSON_LIBS) $(JPEG_LIBS) $(SPNG_LIBS) $(if $(filter 1,$(HAVE_DNNL)),$(DNNL_LIBS)) -lm -lpthread
CFLAGS := $(CFLAGS_BASE) $(OPT) $(OPENBLAS_CFLAGS) $(DEFS) $(EXTRA_CFLAGS)
LDFLAGS := -fopenmp $(LDSAN) $(EXTRA_LDFLAGS)

ok = $(if $(filter 1,$(1)),✓,✗)

# ---- sources ----------------------------------------------------------------
LIB_SRC := $(sort $(filter-out src/cli/%,$(wildcard src/*/*.c src/*/*/*.c)))
CLI_SRC := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/*.c))
BENCH_SRC := $(sort $(wildcard bench/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)
BENCH_OBJ := $(BENCH_SRC:%.c=$(BUILD)/obj/%.o)
LIB := $(BUILD)/libcamoxpert.a
BIN := $(BUILD)/camoxpert
TESTBIN := $(BUILD)/camoxpert_tests
BENCHBIN := $(BUILD)/camoxpert_bench

.PHONY: all config test bench demo deps clean
all: config $(BIN) $(LIB)

config:
	@echo "camoxpert build ($(BUILD)): CC=$(CC) DEBUG=$(DEBUG)"
	@echo "  $(call ok,$(HAVE_OPENBLAS)) OpenBLAS   (GEMM; $(OPENBLAS_KIND))"
	@echo "  $(call ok,$(HAVE_DNNL)) oneDNN     (convolution, optional; USE_DNNL=0 to disable)"
	@echo "  $(call ok,$(HAVE_CJSON)) cJSON      (JSON)"
	@echo "  $(call ok,$(HAVE_JPEG)) libjpeg-turbo"
	@echo "  $(call ok,$(HAVE_SPNG)) libspng"
	@echo "  $(call ok,$(HAVE_NVCC)) nvcc       (found; this build is CPU-only)"
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

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC  $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	@$(if $(Q),echo "  AR  $@")
	$(Q)ar rcs $@ $^

$(BIN): $(CLI_OBJ) $(LIB)
	@$(if $(Q),echo "  LD  $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(LIBS)

$(TESTBIN): $(TEST_OBJ) $(LIB)
	@$(if $(Q),echo "  LD  $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(TEST_OBJ) $(LIB) $(LIBS)

$(BENCHBIN): $(BENCH_OBJ) $(LIB)
	@$(if $(Q),echo "  LD  $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(BENCH_OBJ) $(LIB) $(LIBS)

# The test runner prints "N passed, N failed" and exits non-zero on a failure.
test: config $(BIN) $(TESTBIN)
	./$(TESTBIN) $(TESTS)

bench: config $(BIN) $(BENCHBIN)
	./$(BENCHBIN) $(BENCH)

demo: config $(BIN)
	./scripts/demo.sh

deps:
	./scripts/deps.sh

clean:
	rm -rf build build-debug

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(BENCH_OBJ:.o=.d)
