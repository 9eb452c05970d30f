// sm_cuda_matmul.cu - one cuBLASLt call per product. The descriptors and the heuristic query are rebuilt
// per call (microseconds against milliseconds of math at training sizes); the heuristic's first choice is
// deterministic for a given shape, and cuBLASLt does not use atomics unless asked to, so results repeat.
#include <stdio.h>
#include "sm_cuda_matmul.cuh"

#define LT_TRY(call)                                                                                      \
    do {                                                                                                  \
        cublasStatus_t st_ = (call);                                                                      \
        if (st_ != CUBLAS_STATUS_SUCCESS) {                                                               \
            snprintf(why, whylen, "%s failed: %s (m=%d n=%d k=%d)", #call, cublasGetStatusString(st_), a->m, \
                     a->n, a->k);                                                                         \
            rc = -1;                                                                                      \
            goto done;                                                                                    \
        }                                                                                                 \
    } while (0)

int sm_cu_matmul(const sm_cu_mm *ctx, const sm_cu_mm_args *a, char *why, size_t whylen) {
    int rc = 0, count = 0;
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t heur;
    cublasOperation_t ta = a->transa ? CUBLAS_OP_T : CUBLAS_OP_N, tb = a->transb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
    size_t ws = ctx->workspace_bytes;

    LT_TRY(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    if (a->epilogue == SM_MM_BIAS) epi = CUBLASLT_EPILOGUE_BIAS;
    if (a->epilogue == SM_MM_GELU_AUX_BIAS) epi = CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    if (epi != CUBLASLT_EPILOGUE_DEFAULT) {
        LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &a->bias, sizeof a->bias));
    }
    if (a->epilogue == SM_MM_GELU_AUX_BIAS) {
        int64_t ldaux = a->ldaux;
        LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &a->aux, sizeof a->aux));
        LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ldaux, sizeof ldaux));
    }
    LT_TRY(cublasLtMatrixLayoutCreate(&la, a->ab_type, a->transa ? a->k : a->m, a->transa ? a->m : a->k, a->lda));
    LT_TRY(cublasLtMatrixLayoutCreate(&lb, a->ab_type, a->transb ? a->n : a->k, a->transb ? a->k : a->n, a->ldb));
    LT_TRY(cublasLtMatrixLayoutCreate(&ld, a->d_type, a->m, a->n, a->ldd));
    LT_TRY(cublasLtMatmulPreferenceCreate(&pref));
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    LT_TRY(cublasLtMatmulAlgoGetHeuristic(ctx->lt, op, la, lb, ld, ld, pref, 1, &heur, &count));
    if (count == 0) {
        snprintf(why, whylen, "cuBLASLt has no algorithm for m=%d n=%d k=%d (epilogue %d)", a->m, a->n, a->k,
                 (int)a->epilogue);
        rc = -2;
        goto done;
    }
    LT_TRY(cublasLtMatmul(ctx->lt, op, &a->alpha, a->A, la, a->B, lb, &a->beta, a->D, ld, a->D, ld, &heur.algo,
                          ctx->workspace, ctx->workspace_bytes, ctx->stream));
done:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (ld) cublasLtMatrixLayoutDestroy(ld);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (op) cublasLtMatmulDescDestroy(op);
    return rc;
}
