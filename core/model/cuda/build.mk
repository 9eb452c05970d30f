# core/model/cuda/build.mk - the CUDA backend, $(BUILD)/lib/libsm_cuda.so, which core/model/sm_gpt2.c dlopens.
# Built whenever nvcc exists, with or without a GPU (the library loads and answers its probe without one).
ifneq ($(strip $(NVCC)),)
CUDA_HOME ?= $(abspath $(dir $(NVCC))..)
CUDA_LIBDIR ?= $(CUDA_HOME)/lib64
CUDA_SRCS := $(wildcard core/model/cuda/*.cu)
CUDA_OBJS := $(CUDA_SRCS:%.cu=$(BUILD)/obj/%.o)
# sm_90 machine code plus compute_90 PTX that newer GPUs JIT-compile; only the two entry points are exported.
NVCC_ARCH ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
NVCC_FLAGS ?= -O3 -std=c++17 $(NVCC_ARCH) -Xcompiler -fPIC,-Wall,-Wextra,-fvisibility=hidden -Icore -MMD -MP

all: $(BUILD)/lib/libsm_cuda.so
TEST_EXTRA += $(BUILD)/lib/libsm_cuda.so

$(BUILD)/obj/core/model/cuda/%.o: core/model/cuda/%.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) -c $< -o $@

$(BUILD)/lib/libsm_cuda.so: $(CUDA_OBJS)
	@mkdir -p $(dir $@)
	$(NVCC) -shared $(NVCC_ARCH) -o $@ $^ -L$(CUDA_LIBDIR) -Xlinker -rpath,$(CUDA_LIBDIR) -lcublasLt -lcublas -lcudart
else
all: sm-cuda-skipped
.PHONY: sm-cuda-skipped
sm-cuda-skipped:
	@echo "scalemix: nvcc not found, the CUDA backend (libsm_cuda.so) is skipped; models run on the CPU"
endif

# Runs the CUDA sources under the host emulation against the CPU backend (no GPU or nvcc needed; under a minute; make test runs it too).
.PHONY: cuda-emu
cuda-emu: $(LIB)
	BUILD=$(BUILD) bash tests/gpu/emu/run_emu.sh

# On a machine with a GPU, everything that needs one in a single command: the CUDA tests, compute-sanitizer
# memcheck and the throughput benchmark (124M and 350M). Where no GPU is usable each part says so and skips.
.PHONY: gpu-check
gpu-check: test-build
	@BUILD=$(BUILD) TESTS=gpu bash tests/run.sh
	$(BUILD)/bench/bench_gpt2_cuda
