// emu_matmul.cpp - host reference for sm_cu_matmul (tests/gpu/emu): the BLAS column-major definition
// D = alpha op(A) op(B) + beta D, then bias (per row i of D) and GELU with the pre-activation in aux,
// in double, rounding to the output type. It checks the backend's row-major <-> column-major mapping.
#include <math.h>
#include "../../../core/model/cuda/sm_cuda_matmul.cuh"
#include "cuda_bf16.h"

static double ld(const void *p, cudaDataType_t t, size_t i) {
    return t == CUDA_R_32F ? ((const float *)p)[i] : __bfloat162float(((const __nv_bfloat16 *)p)[i]);
}
static void st(void *p, cudaDataType_t t, size_t i, double v) {
    if (t == CUDA_R_32F) ((float *)p)[i] = (float)v;
    else ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn((float)v);
}

int sm_cu_matmul(const sm_cu_mm *, const sm_cu_mm_args *a, char *, size_t) {
    for (int j = 0; j < a->n; j++)
        for (int i = 0; i < a->m; i++) {
            double acc = 0;
            for (int p = 0; p < a->k; p++) {
                double x = a->transa ? ld(a->A, a->ab_type, (size_t)p + (size_t)i * a->lda)
                                     : ld(a->A, a->ab_type, (size_t)i + (size_t)p * a->lda);
                double y = a->transb ? ld(a->B, a->ab_type, (size_t)j + (size_t)p * a->ldb)
                                     : ld(a->B, a->ab_type, (size_t)p + (size_t)j * a->ldb);
                acc += x * y;
            }
            size_t di = (size_t)i + (size_t)j * a->ldd;
            double v = a->alpha * acc + (a->beta != 0.0f ? a->beta * ld(a->D, a->d_type, di) : 0.0);
            if (a->epilogue != SM_MM_NONE) v += ld(a->bias, a->d_type, (size_t)i);
            if (a->epilogue == SM_MM_GELU_AUX_BIAS) {
                st(a->aux, a->d_type, (size_t)i + (size_t)j * a->ldaux, v);
                v = 0.5 * v * (1.0 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
            }
            st(a->D, a->d_type, di, v);
        }
    return 0;
}
