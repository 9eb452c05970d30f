/* sm_gpt2_internal.h - helpers shared by the model module's own files (not a public API). */
#ifndef SM_GPT2_INTERNAL_H
#define SM_GPT2_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "sm_gpt2_backend.h"

/* The CPU backend's hot elementwise loops are cloned for AVX-512, AVX2 and baseline x86-64, picked at load
 * time (not in ASan builds). */
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define SM_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SM_CLONES
#endif

/* e^x within ~2 ulp for x in [-87.3, 88.7]; meaningless outside (the caller bounds x). */
static inline float exp_core(float x) {
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23; /* unsigned: a NaN x (n = INT_MIN on x86) gives a NaN, not UB */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* e^x, within ~2 ulp for x in [-87, 88] (clamped there: below, e^-87 ~ 1.6e-38 stands for 0). */
static inline float exp_poly(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    return exp_core(x);
}

/* Checks a configuration is usable (positive sizes, C divisible by NH, Vp >= V); SM_ERR_ARG otherwise. */
int sm_gpt2_config_check(const sm_gpt2_config *cfg, sm_error *err);
/* Floats of activations plus backward scratch the CPU backend keeps for a B x T batch on threads threads. */
size_t sm_gpt2_cpu_act_floats(const sm_gpt2_config *cfg, int B, int T, int threads);

/* The fused classifier (sm_gpt2_classifier.c); x is the final LayerNorm's output (BT x C), wte the token
 * embedding (its first V rows are the classifier). Scratch: sm_gpt2_cls_scratch_floats(nt, BT, C, V) floats,
 * 64-byte aligned, for nt threads (a multiple of 16 floats, so a keep buffer right after it stays aligned). */
size_t sm_gpt2_cls_scratch_floats(int nt, size_t BT, size_t C, size_t V);
/* Floats to keep a training forward's exps for backward (block by block). */
size_t sm_gpt2_cls_keep_floats(size_t BT, size_t V);
/* lse[i] = log-sum-exp of row i's logits, losses[i] = lse[i] - logit of targets[i]; the exps are kept in
 * keep (sm_gpt2_cls_keep_floats floats, 64-byte aligned: written with aligned streaming stores) for
 * backward, or nowhere when keep is NULL. */
void sm_gpt2_cls_forward(int nt, float *scratch, float *keep, const float *x, const float *wte, const int32_t *targets, size_t BT,
                         size_t C, size_t V, float *lse, float *losses);
/* With dlogits = (softmax - onehot(targets)) * dscale made in place from the kept exps and lse:
 * dwte += dlogits^T . x, dx = dlogits . wte. */
void sm_gpt2_cls_backward(int nt, float *scratch, float *keep, const float *x, const float *wte, const int32_t *targets,
                          const float *lse, float dscale, size_t BT, size_t C, size_t V, float *dwte, float *dx);

/* The instruction set of the classifier's kernel in use: "x86-64-v4", "x86-64-v3" or "baseline". */
const char *sm_gpt2_cls_isa(void);
/* Makes the classifier use the kernel for isa (one of the above; NULL: the best the CPU runs, the
 * default); -1 where the CPU lacks it or isa is unknown. For tests: not thread safe. */
int sm_gpt2_cls_use_isa(const char *isa);

/* Seconds spent in and FLOPs done by the CPU backend's matrix products called from this thread. */
void sm_gpt2_cpu_gemm_stats(double *seconds, double *flops);

#endif
