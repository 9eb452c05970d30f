/* sm_gpt2_backend.h - the device backend interface of the GPT-2 model (FROZEN: additive changes only,
 * at the end of the struct). The device-independent front end (sm_gpt2.c: init, checkpoints, resume,
 * schedules, training loop, evaluation) drives a backend through these operations; the CPU backend
 * (OpenBLAS) and the CUDA backend (cuBLASLt, a separate shared object loaded with dlopen) implement them.
 *
 * Parameters cross this interface as one fp32 host array in llm.c checkpoint order (wte, wpe, ln1w, ln1b,
 * qkvw, qkvb, attprojw, attprojb, ln2w, ln2b, fcw, fcb, fcprojw, fcprojb, lnfw, lnfb). Gradients and AdamW
 * moments use the same layout. All functions return SM_OK or a negative SM_ERR_* with err filled. */
#ifndef SM_GPT2_BACKEND_H
#define SM_GPT2_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include "../sm_common.h"

typedef struct sm_gpt2_config {
    int max_seq_len;       /* maxT */
    int vocab_size;        /* V, 50257 for GPT-2 */
    int padded_vocab_size; /* Vp, V rounded up to a multiple of 128 */
    int num_layers;        /* L */
    int num_heads;         /* NH */
    int channels;          /* C */
} sm_gpt2_config;

typedef enum { SM_DTYPE_FP32 = 0, SM_DTYPE_BF16 = 1 } sm_dtype;

typedef struct sm_gpt2_backend sm_gpt2_backend; /* a backend's private state for one model */

typedef struct sm_gpt2_backend_ops {
    uint32_t struct_size;
    const char *name; /* "cpu", "cuda" */
    /* Creates state for cfg with the given parameters (copied), compute dtype, and the largest batch
     * B x T it will be asked to run. threads: CPU threads (ignored by GPU backends). */
    int (*create)(sm_gpt2_backend **out, const sm_gpt2_config *cfg, const float *params, sm_dtype dtype,
                  int max_B, int max_T, int threads, sm_error *err);
    void (*destroy)(sm_gpt2_backend *b);
    /* Forward pass over inputs (B*T token ids). With targets (B*T ids, may be NULL) computes the mean
     * cross-entropy into *loss and, if losses != NULL, the per-position losses (B*T floats). */
    int (*forward)(sm_gpt2_backend *b, const int32_t *inputs, const int32_t *targets, int B, int T,
                   float *loss, float *losses, sm_error *err);
    /* Backward pass of the last forward (which must have had targets): ADDS d(mean loss)/d(param) *
     * grad_scale into the gradient buffer (grad_scale = 1/accumulation steps). */
    int (*backward)(sm_gpt2_backend *b, float grad_scale, sm_error *err);
    int (*zero_grad)(sm_gpt2_backend *b, sm_error *err);
    /* Global L2 norm of the gradient buffer. */
    int (*grad_norm)(sm_gpt2_backend *b, double *norm, sm_error *err);
    /* One AdamW update at step t (1-based) with bias correction; gradients are multiplied by grad_mult
     * first (for clipping). Weight decay applies to 2-D weight matrices (wte, wpe, qkvw, attprojw, fcw,
     * fcprojw) only, decoupled (p -= lr * wd * p). */
    int (*adamw)(sm_gpt2_backend *b, float lr, float beta1, float beta2, float eps, float weight_decay,
                 float grad_mult, int t, sm_error *err);
    /* Copies between the backend and host fp32 arrays of num_params floats (master weights, gradients,
     * first and second moments). */
    int (*get_params)(sm_gpt2_backend *b, float *dst, sm_error *err);
    int (*get_grads)(sm_gpt2_backend *b, float *dst, sm_error *err);
    int (*get_moments)(sm_gpt2_backend *b, float *m, float *v, sm_error *err);
    int (*set_moments)(sm_gpt2_backend *b, const float *m, const float *v, sm_error *err);
    /* Bytes of memory (device memory for a GPU backend) that create() with these arguments allocates:
     * parameters, gradients, moments, activations and scratch. Needs no device; checks the arguments as
     * create() does. A GPU process also pays for its driver context, which this does not count. */
    int (*memory_need)(const sm_gpt2_config *cfg, sm_dtype dtype, int max_B, int max_T, uint64_t *bytes,
                       sm_error *err);
    /* Optional (NULL: the front end evaluates with forward): forward with targets for evaluation only,
     * keeping nothing for a backward pass (a following backward fails as after a forward without
     * targets). Same arguments and results as forward; targets must not be NULL. */
    int (*evaluate)(sm_gpt2_backend *b, const int32_t *inputs, const int32_t *targets, int B, int T,
                    float *loss, float *losses, sm_error *err);
} sm_gpt2_backend_ops;

/* Number of parameters (padded vocabulary included) and each tensor's size, in checkpoint order. */
size_t sm_gpt2_param_sizes(const sm_gpt2_config *cfg, size_t sizes[16]);

/* The CPU backend (always built). */
const sm_gpt2_backend_ops *sm_gpt2_cpu_backend(void);

/* The CUDA backend's entry point, exported by build/lib/libsm_cuda.so. */
#define SM_GPT2_CUDA_ENTRY "sm_gpt2_cuda_backend"
typedef const sm_gpt2_backend_ops *(*sm_gpt2_cuda_backend_fn)(void);
/* Also exported by libsm_cuda.so: number of visible devices and free/total memory of the current one;
 * returns SM_ERR_UNSUPPORTED when no GPU is usable (with the reason in err). */
#define SM_GPT2_CUDA_PROBE "sm_gpt2_cuda_probe"
typedef int (*sm_gpt2_cuda_probe_fn)(int *devices, uint64_t *free_bytes, uint64_t *total_bytes, sm_error *err);

#endif
