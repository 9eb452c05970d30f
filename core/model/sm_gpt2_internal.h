/* sm_gpt2_internal.h - helpers shared by the model module's own files (not a public API). */
#ifndef SM_GPT2_INTERNAL_H
#define SM_GPT2_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "sm_gpt2_backend.h"

/* Checks a configuration is usable (positive sizes, C divisible by NH, Vp >= V); SM_ERR_ARG otherwise. */
int sm_gpt2_config_check(const sm_gpt2_config *cfg, sm_error *err);
/* Floats of activations plus backward scratch the CPU backend keeps for a B x T batch on threads threads. */
size_t sm_gpt2_cpu_act_floats(const sm_gpt2_config *cfg, int B, int T, int threads);

/* The fused classifier (sm_gpt2_classifier.c); x is the final LayerNorm's output (BT x C), wte the token
 * embedding (its first V rows are the classifier). Scratch: sm_gpt2_cls_scratch_floats(nt, BT, C, V) floats,
 * 64-byte aligned, for nt threads. */
size_t sm_gpt2_cls_scratch_floats(int nt, size_t BT, size_t C, size_t V);
/* Floats to keep a training forward's logits for backward (tile by tile). */
size_t sm_gpt2_cls_keep_floats(size_t BT, size_t V);
/* lse[i] = log-sum-exp of row i's logits, losses[i] = lse[i] - logit of targets[i]; the logits are kept
 * in keep (sm_gpt2_cls_keep_floats) for backward, or nowhere when keep is NULL. */
void sm_gpt2_cls_forward(int nt, float *scratch, float *keep, const float *x, const float *wte, const int32_t *targets, size_t BT,
                         size_t C, size_t V, float *lse, float *losses);
/* With dlogits = (softmax - onehot(targets)) * dscale made in place from the kept logits and lse:
 * dwte += dlogits^T . x, dx = dlogits . wte. */
void sm_gpt2_cls_backward(int nt, float *scratch, float *keep, const float *x, const float *wte, const int32_t *targets,
                          const float *lse, float dscale, size_t BT, size_t C, size_t V, float *dwte, float *dx);

/* Seconds spent in and FLOPs done by the CPU backend's matrix products called from this thread. */
void sm_gpt2_cpu_gemm_stats(double *seconds, double *flops);

#endif
