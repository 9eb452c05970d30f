/* sm_gpt2_priv.h - the model handle shared by sm_gpt2.c and sm_gpt2_train.c (not a public API). */
#ifndef SM_GPT2_PRIV_H
#define SM_GPT2_PRIV_H

#include <stdio.h>
#include "sm_gpt2.h"

struct sm_gpt2 {
    sm_gpt2_config cfg;
    sm_gpt2_opts opts;
    const sm_gpt2_backend_ops *ops;
    sm_gpt2_backend *be;
    int cuda;       /* 1: ops is the CUDA backend */
    size_t nparams;
    int maxB, maxT; /* the backend's current largest batch */
    int64_t step;   /* optimizer steps taken */
};

/* Grows the backend to hold a B x T batch (parameters and moments carried over; gradients are not). */
int sm_gpt2_ensure_batch(sm_gpt2 *m, int B, int T, sm_error *err);
/* Replaces parameters (and moments when mom != NULL) by recreating the backend. */
int sm_gpt2_replace_state(sm_gpt2 *m, const float *params, const float *mom, const float *vel, sm_error *err);
/* Mean loss of a batch already checked to fit, through the backend's evaluate (forward when it has none). */
int sm_gpt2_evaluate(sm_gpt2 *m, const int32_t *inputs, const int32_t *targets, int B, int T, float *loss, sm_error *err);
/* Writes a file through writer (0 = success) under a temporary name, fsyncs, renames into place. */
int sm_gpt2_write_file_atomic(const char *path, int (*writer)(FILE *f, void *ud), void *ud, sm_error *err);

#endif
