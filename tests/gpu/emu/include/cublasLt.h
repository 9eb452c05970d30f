// Host emulation stand-in for cuBLASLt's handle type and status (tests/gpu/emu); the products themselves
// are computed by tests/gpu/emu/emu_matmul.cpp.
#pragma once
#include "cuda_runtime.h"
typedef void *cublasLtHandle_t;
typedef int cublasStatus_t;
#define CUBLAS_STATUS_SUCCESS 0
inline cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) { *h = (void *)1; return 0; }
inline cublasStatus_t cublasLtDestroy(cublasLtHandle_t) { return 0; }
inline const char *cublasGetStatusString(cublasStatus_t) { return "emulated"; }
