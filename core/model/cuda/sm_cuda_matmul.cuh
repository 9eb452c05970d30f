// sm_cuda_matmul.cuh - matrix products through cuBLASLt (column-major, as cuBLAS sees our row-major
// buffers): D(m x n) = alpha * op(A) op(B) + beta * D, fp32 accumulation (CUBLAS_COMPUTE_32F: no TF32, so
// the fp32 mode is a true fp32 reference), optional bias / GELU epilogues.
#ifndef SM_CUDA_MATMUL_CUH
#define SM_CUDA_MATMUL_CUH

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stddef.h>

typedef struct sm_cu_mm {
    cublasLtHandle_t lt;
    void *workspace;
    size_t workspace_bytes;
    cudaStream_t stream;
} sm_cu_mm;

typedef enum { SM_MM_NONE = 0, SM_MM_BIAS = 1, SM_MM_GELU_AUX_BIAS = 2 } sm_cu_mm_epilogue;

typedef struct sm_cu_mm_args {
    int transa, transb;
    int m, n, k;
    const void *A; int lda;
    const void *B; int ldb;
    void *D; int ldd;
    cudaDataType_t ab_type, d_type;
    float alpha, beta;          /* beta != 0 reads D as C (accumulation) */
    sm_cu_mm_epilogue epilogue;
    const void *bias;           /* m entries of d_type */
    void *aux; int ldaux;       /* GELU_AUX: pre-activation output, d_type */
} sm_cu_mm_args;

// Returns 0, or -1 with why filled (cuBLASLt status and the shape), or -2 when cuBLASLt has no algorithm
// for the combination (the caller may fall back to an unfused path).
int sm_cu_matmul(const sm_cu_mm *ctx, const sm_cu_mm_args *a, char *why, size_t whylen);

#endif
