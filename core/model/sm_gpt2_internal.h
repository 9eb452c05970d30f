/* sm_gpt2_internal.h - helpers shared by the model module's own files (not a public API). */
#ifndef SM_GPT2_INTERNAL_H
#define SM_GPT2_INTERNAL_H

#include <stddef.h>
#include "sm_gpt2_backend.h"

/* Checks a configuration is usable (positive sizes, C divisible by NH, Vp >= V); SM_ERR_ARG otherwise. */
int sm_gpt2_config_check(const sm_gpt2_config *cfg, sm_error *err);
/* Floats of activations plus backward scratch the CPU backend keeps for a B x T batch. */
size_t sm_gpt2_cpu_act_floats(const sm_gpt2_config *cfg, int B, int T);

/* Seconds spent in and FLOPs done by the CPU backend's matrix products called from this thread. */
void sm_gpt2_cpu_gemm_stats(double *seconds, double *flops);

#endif
