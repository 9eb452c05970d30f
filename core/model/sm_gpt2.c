/* sm_gpt2.c - the device-independent GPT-2 front end: initialisation, llm.c checkpoints, backend choice
 * (CPU, or CUDA through dlopen), loss and the memory/FLOP figures. Training lives in sm_gpt2_train.c. */
#include "sm_gpt2.h"
#include "sm_gpt2_internal.h"
#include "sm_gpt2_priv.h"

#include <dlfcn.h>
#include <pthread.h>
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CKPT_MAGIC 20240326
#define CKPT_HEADER_INTS 256

int sm_gpt2_config_check(const sm_gpt2_config *c, sm_error *err) {
    if (c->max_seq_len < 1 || c->vocab_size < 1 || c->num_layers < 1 || c->num_heads < 1 || c->channels < 1 ||
        c->padded_vocab_size < c->vocab_size)
        return sm_error_set(err, SM_ERR_ARG,
                            "invalid GPT-2 config (maxT %d, V %d, Vp %d, L %d, NH %d, C %d): all must be positive and Vp >= V",
                            c->max_seq_len, c->vocab_size, c->padded_vocab_size, c->num_layers, c->num_heads, c->channels);
    if (c->channels % c->num_heads)
        return sm_error_set(err, SM_ERR_ARG, "channels %d are not divisible by heads %d", c->channels, c->num_heads);
    /* bounds keep every size computation far from overflow (a corrupt header cannot wrap around): with C and
     * Vp x C bounded first, the parameter count itself cannot wrap a size_t */
    double C = c->channels, total = 0;
    if (C * 4 * C > INT32_MAX || (double)c->padded_vocab_size * C > INT32_MAX ||
        (total = (double)sm_gpt2_num_params(c)) > 1e11)
        return sm_error_set(err, SM_ERR_ARG, "config too large (%.3g parameters; C %d, Vp %d, L %d)", total, c->channels,
                            c->padded_vocab_size, c->num_layers);
    return SM_OK;
}

int sm_device_parse(const char *s, sm_device *out, sm_error *err) {
    if (s && !strcmp(s, "cpu")) *out = SM_DEVICE_CPU;
    else if (s && !strcmp(s, "cuda")) *out = SM_DEVICE_CUDA;
    else if (s && !strcmp(s, "auto")) *out = SM_DEVICE_AUTO;
    else return sm_error_set(err, SM_ERR_ARG, "unknown device '%s' (want cpu, cuda or auto)", s ? s : "(null)");
    return SM_OK;
}

size_t sm_gpt2_num_params(const sm_gpt2_config *cfg) {
    size_t sizes[16];
    return sm_gpt2_param_sizes(cfg, sizes);
}

double sm_gpt2_flops_per_token(const sm_gpt2_config *cfg, int T) {
    return 6.0 * (double)sm_gpt2_num_params(cfg) + 6.0 * cfg->num_layers * (double)cfg->channels * T;
}

const sm_gpt2_config *sm_gpt2_get_config(const sm_gpt2 *m) { return &m->cfg; }
const char *sm_gpt2_device_name(const sm_gpt2 *m) { return m->ops->name; }

/* ---- backend choice ---- */

/* libsm_cuda.so, loaded once per process and never unloaded (RTLD_NODELETE: unloading it leaves libstdc++'s
 * emergency pool behind as a leak and buys nothing), and its probe's answer, also taken once. */
static struct {
    pthread_once_t load_once, probe_once;
    const sm_gpt2_backend_ops *ops;
    sm_gpt2_cuda_probe_fn probe;
    sm_error load_err;
    int probe_rc, devices;
    uint64_t free_bytes;
    sm_error probe_err;
} cuda = {.load_once = PTHREAD_ONCE_INIT, .probe_once = PTHREAD_ONCE_INIT};

static void cuda_load(void) {
    char path[4200];
    snprintf(path, sizeof path, "%s/lib/libsm_cuda.so", sm_build_dir());
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!h) {
        sm_error_set(&cuda.load_err, SM_ERR_UNSUPPORTED,
                     "CUDA backend not available: cannot load %s (%s); build it with nvcc or use --device cpu", path, dlerror());
        return;
    }
    sm_gpt2_cuda_probe_fn probe = (sm_gpt2_cuda_probe_fn)dlsym(h, SM_GPT2_CUDA_PROBE);
    sm_gpt2_cuda_backend_fn entry = (sm_gpt2_cuda_backend_fn)dlsym(h, SM_GPT2_CUDA_ENTRY);
    const sm_gpt2_backend_ops *o = entry ? entry() : NULL;
    if (!probe || !o || o->struct_size < sizeof(sm_gpt2_backend_ops)) {
        dlclose(h);
        sm_error_set(&cuda.load_err, SM_ERR_UNSUPPORTED, "%s lacks %s or %s, or its backend table is older than this "
                     "engine's (stale or foreign library: rebuild with make)", path, SM_GPT2_CUDA_PROBE, SM_GPT2_CUDA_ENTRY);
        return;
    }
    cuda.ops = o;
    cuda.probe = probe;
}

static void cuda_probe_once(void) {
    pthread_once(&cuda.load_once, cuda_load);
    if (!cuda.ops) {
        cuda.probe_rc = cuda.load_err.code;
        cuda.probe_err = cuda.load_err;
        return;
    }
    uint64_t total = 0;
    cuda.probe_rc = cuda.probe(&cuda.devices, &cuda.free_bytes, &total, &cuda.probe_err);
    if (cuda.probe_rc == SM_OK && cuda.devices < 1)
        cuda.probe_rc = sm_error_set(&cuda.probe_err, SM_ERR_UNSUPPORTED, "no CUDA device visible");
    if (cuda.probe_rc != SM_OK) cuda.devices = 0, cuda.free_bytes = 0;
}

/* The CUDA backend's ops table; needs no GPU. */
static int open_cuda(const sm_gpt2_backend_ops **ops, sm_error *err) {
    pthread_once(&cuda.load_once, cuda_load);
    if (!cuda.ops) {
        if (err) *err = cuda.load_err;
        return cuda.load_err.code;
    }
    *ops = cuda.ops;
    return SM_OK;
}

/* The CUDA backend, when a GPU is usable. */
static int load_cuda(const sm_gpt2_backend_ops **ops, sm_error *err) {
    pthread_once(&cuda.probe_once, cuda_probe_once);
    if (cuda.probe_rc != SM_OK) {
        if (!cuda.ops) return open_cuda(ops, err);
        return sm_error_set(err, SM_ERR_UNSUPPORTED, "no usable GPU: %s", cuda.probe_err.msg);
    }
    *ops = cuda.ops;
    return SM_OK;
}

int sm_gpt2_cuda_devices(uint64_t *free_bytes) {
    pthread_once(&cuda.probe_once, cuda_probe_once);
    if (free_bytes) *free_bytes = cuda.free_bytes;
    return cuda.devices;
}

int sm_gpt2_memory_need(const sm_gpt2_config *cfg, int B, int T, sm_dtype dtype, sm_device dev, uint64_t *bytes,
                        sm_error *err) {
    *bytes = 0;
    if (dev == SM_DEVICE_CPU) return sm_gpt2_cpu_backend()->memory_need(cfg, dtype, B, T, bytes, err);
    if (dev != SM_DEVICE_CUDA)
        return sm_error_set(err, SM_ERR_ARG, "memory need: name the device (cpu or cuda), not auto");
    const sm_gpt2_backend_ops *ops = NULL;
    int rc = open_cuda(&ops, err);
    return rc ? rc : ops->memory_need(cfg, dtype, B, T, bytes, err);
}

static int choose_backend(sm_gpt2 *m, sm_device dev, sm_error *err) {
    static atomic_int auto_logged;
    m->ops = sm_gpt2_cpu_backend();
    m->cuda = 0;
    if (dev == SM_DEVICE_CPU) return SM_OK;
    if (dev == SM_DEVICE_CUDA) {
        int rc = load_cuda(&m->ops, err);
        m->cuda = rc == SM_OK;
        return rc;
    }
    if (dev != SM_DEVICE_AUTO) return sm_error_set(err, SM_ERR_ARG, "unknown device %d", (int)dev);
    sm_error e2 = {0};
    int rc = load_cuda(&m->ops, &e2);
    if (rc) m->ops = sm_gpt2_cpu_backend();
    m->cuda = rc == SM_OK;
    if (!atomic_exchange(&auto_logged, 1)) {
        if (rc) sm_log(SM_LOG_INFO, "device auto: using the CPU (%s)", e2.msg);
        else sm_log(SM_LOG_INFO, "device auto: using CUDA");
    }
    return SM_OK;
}

/* Builds the model around host parameters (taken over: freed here on failure too). */
static int model_new(sm_gpt2 **out, const sm_gpt2_config *cfg, float *params, const sm_gpt2_opts *opts, sm_error *err) {
    *out = NULL;
    sm_gpt2_opts o = {0};
    if (opts) o = *opts;
    int rc = sm_gpt2_config_check(cfg, err);
    if (rc) { free(params); return rc; }
    sm_gpt2 *m = calloc(1, sizeof *m);
    if (!m) { free(params); return sm_error_set(err, SM_ERR_NOMEM, "out of memory"); }
    m->cfg = *cfg;
    m->opts = o;
    m->nparams = sm_gpt2_num_params(cfg);
    m->maxB = o.max_B > 0 ? o.max_B : 4;
    m->maxT = o.max_T > 0 ? o.max_T : (cfg->max_seq_len < 64 ? cfg->max_seq_len : 64);
    if (m->maxT > cfg->max_seq_len) m->maxT = cfg->max_seq_len;
    rc = choose_backend(m, o.device, err);
    /* bf16 is a GPU compute mode; AUTO landing on the CPU computes in fp32 instead of failing */
    if (rc == SM_OK && !m->cuda && o.device == SM_DEVICE_AUTO && o.dtype != SM_DTYPE_FP32) {
        sm_log(SM_LOG_INFO, "device auto: the CPU computes in fp32 (bf16 requested)");
        m->opts.dtype = SM_DTYPE_FP32;
    }
    if (rc == SM_OK)
        rc = m->ops->create(&m->be, cfg, params, m->opts.dtype, m->maxB, m->maxT, o.threads, err);
    if (rc && o.device == SM_DEVICE_AUTO && m->cuda) {
        /* AUTO promised a working model: a GPU that cannot hold it falls back to the CPU */
        sm_log(SM_LOG_WARN, "device auto: CUDA backend failed (%s); using the CPU", err ? err->msg : "?");
        m->cuda = 0;
        m->ops = sm_gpt2_cpu_backend();
        m->opts.dtype = SM_DTYPE_FP32;
        rc = m->ops->create(&m->be, cfg, params, m->opts.dtype, m->maxB, m->maxT, o.threads, err);
    }
    free(params);
    if (rc) {
        free(m);
        return rc;
    }
    *out = m;
    return SM_OK;
}

void sm_gpt2_free(sm_gpt2 *m) {
    if (!m) return;
    if (m->be) m->ops->destroy(m->be);
    free(m);
}

int sm_gpt2_ensure_batch(sm_gpt2 *m, int B, int T, sm_error *err) {
    if (B < 1 || T < 1 || T > m->cfg.max_seq_len)
        return sm_error_set(err, SM_ERR_ARG, "batch %d x %d invalid (1 <= T <= max_seq_len %d)", B, T, m->cfg.max_seq_len);
    if (B <= m->maxB && T <= m->maxT) return SM_OK;
    /* Recreate the backend for the larger shape, carrying parameters and moments over. */
    int nB = B > m->maxB ? B : m->maxB, nT = T > m->maxT ? T : m->maxT;
    size_t n = m->nparams;
    float *p = malloc(n * sizeof(float)), *mo = malloc(n * sizeof(float)), *v = malloc(n * sizeof(float));
    int rc = (!p || !mo || !v) ? sm_error_set(err, SM_ERR_NOMEM, "out of memory resizing the model") : SM_OK;
    if (!rc) rc = m->ops->get_params(m->be, p, err);
    if (!rc) rc = m->ops->get_moments(m->be, mo, v, err);
    sm_gpt2_backend *nb = NULL;
    if (!rc) {
        m->ops->destroy(m->be);
        m->be = NULL;
        rc = m->ops->create(&nb, &m->cfg, p, m->opts.dtype, nB, nT, m->opts.threads, err);
    }
    if (!rc) rc = m->ops->set_moments(nb, mo, v, err);
    if (!rc) {
        m->be = nb;
        m->maxB = nB;
        m->maxT = nT;
    } else if (nb) {
        m->ops->destroy(nb);
    }
    free(p);
    free(mo);
    free(v);
    return rc;
}

int sm_gpt2_replace_state(sm_gpt2 *m, const float *params, const float *mom, const float *vel, sm_error *err) {
    sm_gpt2_backend *nb = NULL;
    int rc = m->ops->create(&nb, &m->cfg, params, m->opts.dtype, m->maxB, m->maxT, m->opts.threads, err);
    if (!rc && mom) rc = m->ops->set_moments(nb, mom, vel, err);
    if (rc) {
        if (nb) m->ops->destroy(nb);
        return rc;
    }
    m->ops->destroy(m->be);
    m->be = nb;
    return SM_OK;
}

/* ---- initialisation ---- */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *s) { return ((splitmix64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

static void fill_normal(float *x, size_t n, double std, uint64_t *s) {
    for (size_t i = 0; i < n; i += 2) {
        double u1 = uniform01(s), u2 = uniform01(s);
        double r = sqrt(-2.0 * log(u1)), a = 2.0 * M_PI * u2;
        x[i] = (float)(std * r * cos(a));
        if (i + 1 < n) x[i + 1] = (float)(std * r * sin(a));
    }
}

int sm_gpt2_create(sm_gpt2 **out, const sm_gpt2_config *cfg, uint64_t seed, const sm_gpt2_opts *opts, sm_error *err) {
    *out = NULL;
    int rc = sm_gpt2_config_check(cfg, err);
    if (rc) return rc;
    size_t sizes[16];
    size_t n = sm_gpt2_param_sizes(cfg, sizes);
    float *p = calloc(n, sizeof(float));
    if (!p) return sm_error_set(err, SM_ERR_NOMEM, "out of memory for %zu parameters", n);
    float *t[16];
    size_t o = 0;
    for (int i = 0; i < 16; i++) { t[i] = p + o; o += sizes[i]; }
    uint64_t s = seed ^ 0x5ca1e6e7a2ULL;
    double resid = 0.02 / sqrt(2.0 * cfg->num_layers);
    /* Padded vocabulary rows stay zero. */
    fill_normal(t[0], (size_t)cfg->vocab_size * cfg->channels, 0.02, &s);
    fill_normal(t[1], sizes[1], 0.02, &s);
    fill_normal(t[4], sizes[4], 0.02, &s);
    fill_normal(t[6], sizes[6], resid, &s);
    fill_normal(t[10], sizes[10], 0.02, &s);
    fill_normal(t[12], sizes[12], resid, &s);
    for (size_t i = 0; i < sizes[2]; i++) t[2][i] = 1.0f;
    for (size_t i = 0; i < sizes[8]; i++) t[8][i] = 1.0f;
    for (size_t i = 0; i < sizes[14]; i++) t[14][i] = 1.0f;
    return model_new(out, cfg, p, opts, err);
}

/* ---- checkpoints ---- */

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return (uint16_t)((u >> 16) | 0x40); /* NaN stays NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

int sm_gpt2_read_checkpoint(const char *path, sm_gpt2_config *cfg, float **params_out, int *version_out, sm_error *err) {
    *params_out = NULL;
    FILE *f = fopen(path, "rbe");
    if (!f) return sm_error_set(err, SM_ERR_IO, "cannot open checkpoint %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        int e = errno;
        fclose(f);
        return sm_error_set(err, SM_ERR_IO, "cannot stat checkpoint %s: %s", path, strerror(e));
    }
    int32_t h[CKPT_HEADER_INTS];
    if ((uint64_t)st.st_size < sizeof h || fread(h, sizeof h, 1, f) != 1) {
        fclose(f);
        return sm_error_set(err, SM_ERR_FORMAT, "%s: %lld bytes is shorter than the 1024-byte checkpoint header (truncated or not a checkpoint)",
                            path, (long long)st.st_size);
    }
    if (h[0] != CKPT_MAGIC) {
        fclose(f);
        return sm_error_set(err, SM_ERR_FORMAT, "%s: not an llm.c GPT-2 checkpoint (magic %d, want %d)", path, h[0], CKPT_MAGIC);
    }
    if (h[1] != 3 && h[1] != 5) {
        fclose(f);
        return sm_error_set(err, SM_ERR_FORMAT, "%s: checkpoint version %d is not supported (want 3 fp32 or 5 bf16)", path, h[1]);
    }
    sm_gpt2_config c = {.max_seq_len = h[2], .vocab_size = h[3], .num_layers = h[4], .num_heads = h[5], .channels = h[6],
                        .padded_vocab_size = h[7]};
    sm_error e2 = {0};
    if (sm_gpt2_config_check(&c, &e2)) {
        fclose(f);
        return sm_error_set(err, SM_ERR_FORMAT, "%s: corrupt checkpoint header: %s", path, e2.msg);
    }
    size_t n = sm_gpt2_num_params(&c);
    int eb = h[1] == 3 ? 4 : 2;
    uint64_t want = sizeof h + (uint64_t)n * eb;
    if ((uint64_t)st.st_size != want) {
        fclose(f);
        return sm_error_set(err, SM_ERR_FORMAT, "%s: header describes %zu parameters (%llu bytes) but the file has %lld bytes (truncated or corrupt)",
                            path, n, (unsigned long long)want, (long long)st.st_size);
    }
    float *p = malloc(n * sizeof(float));
    if (!p) {
        fclose(f);
        return sm_error_set(err, SM_ERR_NOMEM, "out of memory for %zu parameters of %s", n, path);
    }
    int ok;
    if (eb == 4) {
        ok = fread(p, 4, n, f) == n;
    } else {
        /* bf16 -> fp32 in place from the back half of the buffer */
        uint16_t *hb = (uint16_t *)p + n;
        ok = fread(hb, 2, n, f) == n;
        for (size_t i = 0; ok && i < n; i++) p[i] = bf16_to_f32(hb[i]);
    }
    fclose(f);
    if (!ok) {
        free(p);
        return sm_error_set(err, SM_ERR_IO, "cannot read the parameters of %s", path);
    }
    *cfg = c;
    *params_out = p;
    if (version_out) *version_out = h[1];
    return SM_OK;
}

int sm_gpt2_load(sm_gpt2 **out, const char *path, const sm_gpt2_opts *opts, sm_error *err) {
    *out = NULL;
    sm_gpt2_config c;
    float *p;
    int rc = sm_gpt2_read_checkpoint(path, &c, &p, NULL, err);
    if (rc) return rc;
    rc = model_new(out, &c, p, opts, err);
    if (rc) sm_error_wrap(err, "loading %s", path);
    return rc;
}

int sm_gpt2_write_file_atomic(const char *path, int (*writer)(FILE *f, void *ud), void *ud, sm_error *err) {
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return sm_error_set(err, SM_ERR_ARG, "path too long: %s", path);
    FILE *f = fopen(tmp, "wbe");
    if (!f) return sm_error_set(err, SM_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    int ok = writer(f, ud) == 0;
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int e = errno;
    if (fclose(f) != 0) ok = 0;
    if (!ok) {
        unlink(tmp);
        return sm_error_set(err, SM_ERR_IO, "cannot write %s: %s", tmp, strerror(e ? e : EIO));
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        return sm_error_set(err, SM_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(e));
    }
    return SM_OK;
}

struct ckpt_ctx { const sm_gpt2_config *cfg; const float *p; size_t n; int version; };

static int write_ckpt(FILE *f, void *ud) {
    struct ckpt_ctx *c = ud;
    int32_t h[CKPT_HEADER_INTS] = {CKPT_MAGIC, c->version, c->cfg->max_seq_len, c->cfg->vocab_size, c->cfg->num_layers,
                                   c->cfg->num_heads, c->cfg->channels, c->cfg->padded_vocab_size};
    if (fwrite(h, sizeof h, 1, f) != 1) return -1;
    if (c->version == 3) return fwrite(c->p, 4, c->n, f) == c->n ? 0 : -1;
    uint16_t buf[8192];
    for (size_t i = 0; i < c->n; i += 8192) {
        size_t k = c->n - i < 8192 ? c->n - i : 8192;
        for (size_t j = 0; j < k; j++) buf[j] = f32_to_bf16(c->p[i + j]);
        if (fwrite(buf, 2, k, f) != k) return -1;
    }
    return 0;
}

int sm_gpt2_save(sm_gpt2 *m, const char *path, int version, sm_error *err) {
    if (version != 3 && version != 5)
        return sm_error_set(err, SM_ERR_ARG, "checkpoint version %d cannot be written (want 3 fp32 or 5 bf16)", version);
    float *p = malloc(m->nparams * sizeof(float));
    if (!p) return sm_error_set(err, SM_ERR_NOMEM, "out of memory saving %s", path);
    int rc = m->ops->get_params(m->be, p, err);
    if (!rc) {
        struct ckpt_ctx c = {&m->cfg, p, m->nparams, version};
        rc = sm_gpt2_write_file_atomic(path, write_ckpt, &c, err);
    }
    free(p);
    return rc;
}

int sm_gpt2_get_params(sm_gpt2 *m, float *dst, sm_error *err) { return m->ops->get_params(m->be, dst, err); }

/* ---- loss ---- */

int sm_gpt2_loss(sm_gpt2 *m, const int32_t *inputs, const int32_t *targets, int B, int T, float *loss, sm_error *err) {
    if (!inputs || !targets || !loss) return sm_error_set(err, SM_ERR_ARG, "sm_gpt2_loss needs inputs, targets and loss");
    int rc = sm_gpt2_ensure_batch(m, B, T, err);
    if (rc) return rc;
    return sm_gpt2_evaluate(m, inputs, targets, B, T, loss, err);
}

int sm_gpt2_evaluate(sm_gpt2 *m, const int32_t *inputs, const int32_t *targets, int B, int T, float *loss, sm_error *err) {
    if (m->ops->struct_size > offsetof(sm_gpt2_backend_ops, evaluate) && m->ops->evaluate)
        return m->ops->evaluate(m->be, inputs, targets, B, T, loss, NULL, err);
    return m->ops->forward(m->be, inputs, targets, B, T, loss, NULL, err);
}
