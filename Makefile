# scalemix build. `make` builds the engine and plugins; `make test` runs every test; `make demo` runs the
# AutoScale demo; `make deps` installs the Debian packages (as root) or prints the command to.
BUILD ?= build
CC ?= gcc
NVCC ?= $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })
PKGS := libuv luajit libpq openblas libzstd zlib gsl libutf8proc jansson libcrypto libmicrohttpd

DEBIAN_PACKAGES := build-essential pkg-config libuv1-dev libluajit-5.1-dev luajit libpq-dev postgresql \
  postgresql-client libopenblas-dev libzstd-dev zlib1g-dev libgsl-dev libutf8proc-dev libjansson-dev \
  libssl-dev lua-cjson groff-base python3 python3-numpy tzdata xz-utils ca-certificates unicode-data tmux \
  libmicrohttpd-dev curl slurm-wlm munge

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# GSL's reference CBLAS is dropped: OpenBLAS provides the cblas_* symbols GSL calls.
PKG_LIBS := $(filter-out -lgslcblas,$(shell pkg-config --libs $(PKGS) 2>/dev/null))
SAN ?=
CFLAGS ?= -O2 -g
CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -fPIC -fopenmp -Icore -Icore/engine $(PKG_CFLAGS) $(SAN) -MMD -MP
LDFLAGS += -fopenmp $(SAN)
LDLIBS += $(PKG_LIBS) -lm -ldl -lpthread

CORE_SRCS := $(filter-out core/main.c,$(wildcard core/*.c core/*/*.c))
CORE_OBJS := $(CORE_SRCS:%.c=$(BUILD)/obj/%.o)
LIB := $(BUILD)/libscalemix.a
PLUGIN_SRCS := $(wildcard plugins/*.c)
PLUGINS := $(PLUGIN_SRCS:plugins/%.c=$(BUILD)/plugins/%.so)
TEST_PLUGINS := $(patsubst tests/plugins/%.c,$(BUILD)/tests/plugins/%.so,$(wildcard tests/plugins/*.c))
UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/test_*.c))
GPU_TESTS := $(patsubst tests/gpu/%.c,$(BUILD)/tests/gpu/%,$(wildcard tests/gpu/test_*.c))
BENCHES := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(wildcard tests/bench/bench_*.c))

.PHONY: all deps test test-asan bench demo clean check-deps
all: check-deps $(BUILD)/scalemix $(PLUGINS)

# Module fragments add targets (vocabulary, corpus, CUDA library) without editing this file.
include $(wildcard core/*/build.mk core/*/*/build.mk pipelines/*/build.mk)

check-deps:
	@missing=""; for p in $(PKGS); do pkg-config --exists $$p 2>/dev/null || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "scalemix: missing libraries:$$missing. Run 'make deps' (as root) or:"; \
	  echo "  apt-get install -y $(DEBIAN_PACKAGES)"; exit 2; fi

deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -z "$$missing" ]; then echo "deps: all Debian packages present"; \
	elif [ "$$(id -u)" = 0 ]; then echo "deps: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "deps: missing$$missing; run as root:"; echo "  apt-get install -y$$missing"; exit 2; fi

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(CORE_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# -rdynamic exports the engine's C API to LuaJIT's FFI (ffi.C).
$(BUILD)/scalemix: $(BUILD)/obj/core/main.o $(LIB)
	$(CC) $(LDFLAGS) -rdynamic -o $@ $< -Wl,--whole-archive $(LIB) -Wl,--no-whole-archive $(LDLIBS)

# Plugins carry their own copy of the library code they use (so the plugin's hash, part of every
# cache key, changes when that code does) and bind to it first (-Bsymbolic).
$(BUILD)/plugins/%.so: $(BUILD)/obj/plugins/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -shared -Wl,-Bsymbolic -o $@ $< $(LIB) $(LDLIBS)

$(BUILD)/tests/plugins/%.so: $(BUILD)/obj/tests/plugins/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -shared -Wl,-Bsymbolic -o $@ $< $(LIB) $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -rdynamic -o $@ $< -Wl,--whole-archive $(LIB) -Wl,--no-whole-archive $(LDLIBS)

$(BUILD)/tests/gpu/%: $(BUILD)/obj/tests/gpu/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/obj/tests/bench/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -rdynamic -o $@ $< -Wl,--whole-archive $(LIB) -Wl,--no-whole-archive $(LDLIBS)

test-build: all $(TEST_PLUGINS) $(UNIT_TESTS) $(GPU_TESTS) $(BENCHES) $(TEST_EXTRA)

test: deps
	@$(MAKE) --no-print-directory test-build
	@BUILD=$(BUILD) bash tests/run.sh

test-asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" test-build
	@BUILD=build-asan SM_ASAN=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp UBSAN_OPTIONS=print_stacktrace=1 bash tests/run.sh

bench: all $(TEST_PLUGINS) $(BENCHES)
	@for b in $(BENCHES); do echo "== $$b"; $$b || exit 1; done

demo: deps
	@$(MAKE) --no-print-directory all corpus
	$(BUILD)/scalemix run pipelines/autoscale.lua $(DEMO_ARGS)

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
.SECONDARY:
