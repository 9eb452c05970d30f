/* sm_gpt2.h - the GPT-2 model library the stages call (device independent front end).
 * Owner: the model module. Backends: sm_gpt2_backend.h. Data: sm_loader.h. */
#ifndef SM_GPT2_H
#define SM_GPT2_H

#include "sm_gpt2_backend.h"
#include "sm_loader.h"

typedef enum { SM_DEVICE_AUTO = 0, SM_DEVICE_CPU = 1, SM_DEVICE_CUDA = 2 } sm_device;

typedef struct sm_gpt2 sm_gpt2;

typedef struct sm_gpt2_opts {
    sm_device device;  /* AUTO: CUDA when libsm_cuda.so loads and a GPU is usable, else CPU (logged once) */
    sm_dtype dtype;    /* compute dtype; master weights and optimizer state are always fp32 */
    int threads;       /* CPU threads (0 = OpenMP default) */
    int max_B, max_T;  /* largest batch the model will run */
} sm_gpt2_opts;

/* Parses "cpu", "cuda", "auto".
 * The CPU backend computes in fp32 only: dtype SM_DTYPE_BF16 with SM_DEVICE_CPU is rejected with
 * SM_ERR_UNSUPPORTED; with SM_DEVICE_AUTO landing on the CPU it computes in fp32 (logged). AUTO also
 * falls back to the CPU when the CUDA backend loads but cannot create the model. max_B/max_T of 0 default to 4 x min(64, maxT); larger batches grow the
 * backend on demand. */
int sm_device_parse(const char *s, sm_device *out, sm_error *err);

/* A new model with GPT-2's initialisation (normal(0, 0.02); residual projections scaled by
 * 1/sqrt(2L); biases zero; LayerNorm weights 1) from seed. */
int sm_gpt2_create(sm_gpt2 **out, const sm_gpt2_config *cfg, uint64_t seed, const sm_gpt2_opts *opts, sm_error *err);
/* Loads an llm.c checkpoint (version 3 fp32 or 5 bf16), checking magic, version and exact size. */
int sm_gpt2_load(sm_gpt2 **out, const char *path, const sm_gpt2_opts *opts, sm_error *err);
/* Writes an llm.c checkpoint (version 3 or 5) to path via a temporary name and rename. */
int sm_gpt2_save(sm_gpt2 *m, const char *path, int version, sm_error *err);
void sm_gpt2_free(sm_gpt2 *m);

const sm_gpt2_config *sm_gpt2_get_config(const sm_gpt2 *m);
const char *sm_gpt2_device_name(const sm_gpt2 *m);
size_t sm_gpt2_num_params(const sm_gpt2_config *cfg);
/* 6N + 6LCT. */
double sm_gpt2_flops_per_token(const sm_gpt2_config *cfg, int T);
/* Usable CUDA devices (0 when libsm_cuda.so is not built or no GPU is usable), with the free memory of the
 * current one at the first call; probed once per process. */
int sm_gpt2_cuda_devices(uint64_t *free_bytes);
/* Bytes a model of cfg training B x T batches in dtype allocates on dev (CPU: host memory; CUDA: device
 * memory, the backend's own plan, without the process's driver context). Needs no GPU; dev must be CPU
 * or CUDA. Errors as the backend's create() would report them. */
int sm_gpt2_memory_need(const sm_gpt2_config *cfg, int B, int T, sm_dtype dtype, sm_device dev, uint64_t *bytes,
                        sm_error *err);

/* Reads an llm.c checkpoint's config and its parameters widened to fp32 (malloc'd; caller frees);
 * version_out may be NULL. Same checks as sm_gpt2_load. */
int sm_gpt2_read_checkpoint(const char *path, sm_gpt2_config *cfg, float **params, int *version_out, sm_error *err);
/* Copies the current fp32 master weights (sm_gpt2_num_params floats, checkpoint order) to dst. */
int sm_gpt2_get_params(sm_gpt2 *m, float *dst, sm_error *err);
/* Optimizer steps taken so far (0 for a new or loaded model; restored from a resume file). */
int64_t sm_gpt2_step(const sm_gpt2 *m);

/* Mean cross-entropy of the model on B x T inputs/targets. */
int sm_gpt2_loss(sm_gpt2 *m, const int32_t *inputs, const int32_t *targets, int B, int T, float *loss, sm_error *err);

typedef struct sm_train_opts {
    int B, T;                  /* micro-batch */
    int grad_accum;            /* micro-batches per optimizer step (>= 1) */
    int64_t steps;             /* optimizer steps to reach (total, counting resumed ones) */
    float lr, min_lr_frac;     /* peak learning rate; cosine decays to lr * min_lr_frac */
    int warmup_steps;          /* < 0: 10% of steps */
    float weight_decay, beta1, beta2, eps;
    float grad_clip;           /* 0: none */
    int eval_every;            /* steps between per-domain evaluations (0: only at the end) */
    int eval_batches;          /* batches of B x T per domain per evaluation */
    int checkpoint_every;      /* steps between resume files (0: none) */
    const char *resume_path;   /* resume file: read if present, written every checkpoint_every steps */
    uint64_t seed;
} sm_train_opts;

/* Fills opts with the defaults (B 4, T 64, lr 6e-4, warmup 10% of steps (-1), min_lr_frac 0.1, wd 0.1,
 * betas 0.9/0.95, eps 1e-8, clip 1.0, grad_accum 1, eval_batches 4, eval_every 0, no resume file). */
void sm_train_opts_default(sm_train_opts *opts);

typedef struct sm_train_event {
    int64_t step;              /* optimizer step just completed */
    int64_t steps;
    double train_loss;         /* mean loss of the step */
    double lr, grad_norm;
    double tokens_per_s;
    int eval;                  /* 1 if domain_losses holds a fresh evaluation */
    const double *domain_losses; /* per loader domain, when eval */
} sm_train_event;

/* Called after every step; return nonzero to stop (the training returns SM_ERR_CANCELLED after
 * writing a resume file if configured). */
typedef int (*sm_train_callback)(void *ud, const sm_train_event *ev);

/* Trains on loader's training stream until opts->steps; resumes from opts->resume_path when present,
 * giving the same losses bit for bit as an uninterrupted run. The loader's mixture must be set with the
 * same B and T, and its stream must hold at least (steps - done) * grad_accum batches from its current
 * position. The resume file holds the fp32 weights, AdamW moments, step, the loader seed and position
 * (the only randomness in training is the data order, which seed and position determine). */
int sm_gpt2_train(sm_gpt2 *m, sm_loader *ld, const sm_train_opts *opts, sm_train_callback cb, void *ud, sm_error *err);

/* One optimizer step on one batch outside a loader (zero gradients, forward, backward, clipping, AdamW as
 * step sm_gpt2_step(m) + 1 with o's hyperparameters at learning rate lr). Fills loss and, when fwd_s is not
 * NULL, the seconds the forward pass took. For benchmarks and callers that feed their own batches. */
int sm_gpt2_step_batch(sm_gpt2 *m, const int32_t *inputs, const int32_t *targets, int B, int T, const sm_train_opts *o,
                       double lr, float *loss, double *fwd_s, sm_error *err);

/* Mean validation loss per loader domain over each domain's fixed validation sample of batches x B rows of
 * T+1 tokens spread over its validation shards (sm_loader_val_batch; fewer rows when a shard is smaller).
 * losses has ndomains entries. */
int sm_gpt2_eval_domains(sm_gpt2 *m, sm_loader *ld, int B, int T, int batches, double *losses, sm_error *err);

#endif
