/* sm_gpt2_train.c - the training loop (gradient accumulation, clipping, cosine schedule with warmup, AdamW),
 * resume files, and per-domain evaluation. */
#include "sm_gpt2.h"
#include "sm_gpt2_priv.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define RESUME_MAGIC "SMRESUM2"

void sm_train_opts_default(sm_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->B = 4;
    o->T = 64;
    o->grad_accum = 1;
    o->lr = 6e-4f;
    o->min_lr_frac = 0.1f;
    o->warmup_steps = -1;
    o->weight_decay = 0.1f;
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->eps = 1e-8f;
    o->grad_clip = 1.0f;
    o->eval_batches = 4;
}

int64_t sm_gpt2_step(const sm_gpt2 *m) { return m->step; }

/* Learning rate of the step with 0-based index s. */
static double lr_at(const sm_train_opts *o, int64_t s, int warmup) {
    double peak = o->lr, lo = o->lr * o->min_lr_frac;
    if (s < warmup) return peak * (double)(s + 1) / warmup;
    int64_t span = o->steps - warmup;
    double r = span > 1 ? (double)(s - warmup) / (double)(span - 1) : 0.0; /* a lone step runs at the peak */
    if (r > 1.0) r = 1.0;
    return lo + 0.5 * (1.0 + cos(M_PI * r)) * (peak - lo);
}

/* ---- resume files ---- */

/* A resume file: the header, the fp32 parameters and both AdamW moments, then the sha256 (64 hex
 * characters) of everything before it. A file that does not verify is set aside, never loaded. */
typedef struct resume_hdr {
    char magic[8];
    int32_t cfg[6];
    int32_t B, T, grad_accum, pad;
    uint64_t seed, position, nparams;
    int64_t step;
} resume_hdr;

struct resume_ctx { resume_hdr h; const float *p, *m, *v; };

static int write_resume(FILE *f, void *ud) {
    struct resume_ctx *c = ud;
    size_t n = c->h.nparams;
    const float *parts[3] = {c->p, c->m, c->v};
    sm_sha256_ctx *sha = sm_sha256_new();
    int rc = fwrite(&c->h, sizeof c->h, 1, f) == 1 ? 0 : -1;
    sm_sha256_update(sha, &c->h, sizeof c->h);
    for (int i = 0; i < 3 && !rc; i++) {
        if (fwrite(parts[i], 4, n, f) != n) rc = -1;
        sm_sha256_update(sha, parts[i], 4 * n);
    }
    char hex[65];
    sm_sha256_final_hex(sha, hex);
    if (!rc && fwrite(hex, 64, 1, f) != 1) rc = -1;
    return rc;
}

static void fill_hdr(resume_hdr *h, const sm_gpt2 *m, const sm_train_opts *o, uint64_t seed) {
    memset(h, 0, sizeof *h);
    memcpy(h->magic, RESUME_MAGIC, 8);
    h->cfg[0] = m->cfg.max_seq_len;
    h->cfg[1] = m->cfg.vocab_size;
    h->cfg[2] = m->cfg.padded_vocab_size;
    h->cfg[3] = m->cfg.num_layers;
    h->cfg[4] = m->cfg.num_heads;
    h->cfg[5] = m->cfg.channels;
    h->B = o->B;
    h->T = o->T;
    h->grad_accum = o->grad_accum;
    h->seed = seed;
    h->nparams = m->nparams;
}

static int save_resume(sm_gpt2 *m, const sm_train_opts *o, uint64_t seed, uint64_t position, sm_error *err) {
    size_t n = m->nparams;
    float *buf = malloc(3 * n * sizeof(float));
    if (!buf) return sm_error_set(err, SM_ERR_NOMEM, "out of memory writing %s", o->resume_path);
    struct resume_ctx c = {.p = buf, .m = buf + n, .v = buf + 2 * n};
    fill_hdr(&c.h, m, o, seed);
    c.h.position = position;
    c.h.step = m->step;
    int rc = m->ops->get_params(m->be, buf, err);
    if (!rc) rc = m->ops->get_moments(m->be, buf + n, buf + 2 * n, err);
    if (!rc) rc = sm_gpt2_write_file_atomic(o->resume_path, write_resume, &c, err);
    free(buf);
    return rc;
}

/* Renames a resume file that does not verify to <path>.corrupt-<unix time> and warns: training restarts
 * from step 0 instead of resuming into a different model or failing on every re-run. */
static int set_aside_resume(const char *path, const char *why, sm_error *err) {
    char aside[4200];
    if (snprintf(aside, sizeof aside, "%s.corrupt-%lld", path, (long long)time(NULL)) >= (int)sizeof aside)
        return sm_error_set(err, SM_ERR_ARG, "path too long: %s", path);
    if (rename(path, aside) != 0)
        return sm_error_set(err, SM_ERR_IO, "%s %s, and it cannot be set aside: %s", path, why, strerror(errno));
    sm_log(SM_LOG_WARN, "resume file %s %s; set aside as %s, training restarts from step 0", path, why, aside);
    return SM_OK;
}

/* Loads the resume file when it exists and verifies: *found = 1 and the model/loader are restored. One that
 * does not verify (not a resume file, truncated, checksum mismatch) is set aside and *found stays 0. */
static int load_resume(sm_gpt2 *m, sm_loader *ld, const sm_train_opts *o, uint64_t seed, int *found, sm_error *err) {
    *found = 0;
    const char *path = o->resume_path;
    FILE *f = fopen(path, "rbe");
    if (!f) {
        if (errno == ENOENT) return SM_OK;
        return sm_error_set(err, SM_ERR_IO, "cannot open resume file %s: %s", path, strerror(errno));
    }
    struct stat st;
    resume_hdr h, want;
    fill_hdr(&want, m, o, seed);
    const char *bad = NULL;
    if (fstat(fileno(f), &st) != 0 || (uint64_t)st.st_size < sizeof h || fread(&h, sizeof h, 1, f) != 1)
        bad = "is shorter than a resume header (truncated or not a resume file)";
    else if (memcmp(h.magic, RESUME_MAGIC, 8))
        bad = "is not a scalemix resume file of this version (bad magic)";
    else if (h.nparams > ((uint64_t)st.st_size) / 12 || (uint64_t)st.st_size != sizeof h + 12 * h.nparams + 64)
        bad = "has the wrong size (truncated or corrupt)";
    if (bad) {
        fclose(f);
        return set_aside_resume(path, bad, err);
    }
    size_t n = h.nparams;
    float *buf = malloc(3 * n * sizeof(float));
    if (!buf) { fclose(f); return sm_error_set(err, SM_ERR_NOMEM, "out of memory reading %s", path); }
    char stored[64], hex[65];
    int rc = SM_OK;
    if (fread(buf, 4, 3 * n, f) != 3 * n || fread(stored, 64, 1, f) != 1) rc = sm_error_set(err, SM_ERR_IO, "cannot read %s", path);
    fclose(f);
    if (rc) {
        free(buf);
        return rc;
    }
    sm_sha256_ctx *sha = sm_sha256_new();
    sm_sha256_update(sha, &h, sizeof h);
    sm_sha256_update(sha, buf, 12 * n);
    sm_sha256_final_hex(sha, hex);
    if (memcmp(hex, stored, 64)) {
        free(buf);
        return set_aside_resume(path, "does not match its checksum (corrupt)", err);
    }
    if (memcmp(h.cfg, want.cfg, sizeof h.cfg) || h.nparams != want.nparams)
        rc = sm_error_set(err, SM_ERR_FORMAT, "%s: written for a different model configuration; delete it or use another path", path);
    else if (h.B != want.B || h.T != want.T || h.grad_accum != want.grad_accum || h.seed != want.seed)
        rc = sm_error_set(err, SM_ERR_ARG,
                          "%s: written by a run with B %d T %d grad_accum %d seed %llu; this run has B %d T %d grad_accum %d seed %llu",
                          path, h.B, h.T, h.grad_accum, (unsigned long long)h.seed, want.B, want.T, want.grad_accum,
                          (unsigned long long)want.seed);
    else if (h.step < 0 || h.step > o->steps)
        rc = sm_error_set(err, SM_ERR_ARG, "%s: at step %lld, beyond this run's %lld steps", path, (long long)h.step,
                          (long long)o->steps);
    if (!rc) rc = sm_gpt2_replace_state(m, buf, buf + n, buf + 2 * n, err);
    free(buf);
    if (!rc) rc = sm_loader_seek(ld, h.position, err);
    if (rc) return sm_error_wrap(err, "resuming from %s", path);
    m->step = h.step;
    *found = 1;
    sm_log(SM_LOG_INFO, "resumed from %s at step %lld", path, (long long)h.step);
    return SM_OK;
}

/* ---- evaluation ---- */

int sm_gpt2_eval_domains(sm_gpt2 *m, sm_loader *ld, int B, int T, int batches, double *losses, sm_error *err) {
    if (batches < 1) return sm_error_set(err, SM_ERR_ARG, "evaluation needs at least one batch (got %d)", batches);
    int rc = sm_gpt2_ensure_batch(m, B, T, err);
    if (rc) return rc;
    size_t BT = (size_t)B * T;
    int32_t *in = malloc(BT * sizeof(int32_t)), *tg = malloc(BT * sizeof(int32_t));
    if (!in || !tg) { free(in); free(tg); return sm_error_set(err, SM_ERR_NOMEM, "out of memory"); }
    for (size_t d = 0; d < sm_loader_num_domains(ld) && !rc; d++) {
        uint64_t ntok = sm_loader_val_tokens(ld, d);
        uint64_t rows = sm_loader_val_rows(ld, d, T);
        if (rows > (uint64_t)batches * B) rows = (uint64_t)batches * B;
        if (rows == 0) {
            losses[d] = NAN;
            sm_log(SM_LOG_WARN, "domain %s: validation shards hold %llu tokens, fewer than one sequence of %d+1; loss is NaN",
                   sm_loader_domain_name(ld, d), (unsigned long long)ntok, T);
            continue;
        }
        double sum = 0.0;
        for (uint64_t r0 = 0; r0 < rows && !rc; r0 += (uint64_t)B) {
            int nb = (int)(rows - r0 < (uint64_t)B ? rows - r0 : (uint64_t)B);
            size_t n = (size_t)nb * T;
            rc = sm_loader_val_batch(ld, d, T, (uint64_t)batches * B, r0, nb, in, tg, err);
            if (rc) break;
            float l;
            rc = sm_gpt2_evaluate(m, in, tg, nb, T, &l, err);
            sum += (double)l * (double)n;
        }
        losses[d] = sum / ((double)rows * T);
    }
    free(in);
    free(tg);
    return rc;
}

/* ---- training ---- */

int sm_gpt2_step_batch(sm_gpt2 *m, const int32_t *inputs, const int32_t *targets, int B, int T, const sm_train_opts *o,
                       double lr, float *loss, double *fwd_s, sm_error *err) {
    int rc = sm_gpt2_ensure_batch(m, B, T, err);
    if (!rc) rc = m->ops->zero_grad(m->be, err);
    double t0 = sm_monotonic();
    if (!rc) rc = m->ops->forward(m->be, inputs, targets, B, T, loss, NULL, err);
    if (fwd_s) *fwd_s = sm_monotonic() - t0;
    if (!rc) rc = m->ops->backward(m->be, 1.0f, err);
    double norm = 0.0;
    if (!rc) rc = m->ops->grad_norm(m->be, &norm, err);
    if (rc) return rc;
    float mult = (o->grad_clip > 0 && norm > o->grad_clip) ? (float)(o->grad_clip / norm) : 1.0f;
    rc = m->ops->adamw(m->be, (float)lr, o->beta1, o->beta2, o->eps, o->weight_decay, mult, (int)(m->step + 1), err);
    if (!rc) m->step++;
    return rc;
}

static int do_eval(sm_gpt2 *m, sm_loader *ld, const sm_train_opts *o, double *dl, sm_error *err) {
    if (o->eval_batches < 1) return SM_OK;
    return sm_gpt2_eval_domains(m, ld, o->B, o->T, o->eval_batches, dl, err);
}

int sm_gpt2_train(sm_gpt2 *m, sm_loader *ld, const sm_train_opts *o, sm_train_callback cb, void *ud, sm_error *err) {
    int lB, lT;
    uint64_t seed;
    int rc = sm_loader_batch_shape(ld, &lB, &lT, &seed, err);
    if (rc) return rc;
    if (lB != o->B || lT != o->T)
        return sm_error_set(err, SM_ERR_ARG, "the loader's mixture was set for %d x %d batches but training asks for %d x %d",
                            lB, lT, o->B, o->T);
    if (o->grad_accum < 1 || o->steps < 0 || !(o->lr >= 0) || o->beta1 < 0 || o->beta1 >= 1 || o->beta2 < 0 ||
        o->beta2 >= 1 || !(o->eps > 0) || o->grad_clip < 0 || o->eval_every < 0 || o->checkpoint_every < 0)
        return sm_error_set(err, SM_ERR_ARG,
                            "invalid training options (need grad_accum >= 1, steps >= 0, lr >= 0, 0 <= betas < 1, eps > 0, clip >= 0)");
    if (o->checkpoint_every > 0 && !o->resume_path)
        return sm_error_set(err, SM_ERR_ARG, "checkpoint_every is set but resume_path is not");
    rc = sm_gpt2_ensure_batch(m, o->B, o->T, err);
    if (rc) return rc;
    if (o->resume_path) {
        int found;
        rc = load_resume(m, ld, o, seed, &found, err);
        if (rc) return rc;
    }
    int warmup = o->warmup_steps >= 0 ? o->warmup_steps : (int)(o->steps / 10);
    int64_t need = (o->steps - m->step) * o->grad_accum;
    int64_t left = sm_loader_num_batches(ld) - (int64_t)sm_loader_position(ld);
    if (need > left)
        return sm_error_set(err, SM_ERR_ARG,
                            "training to step %lld needs %lld more batches of %d x %d but the loader's stream has %lld left; set a larger token budget",
                            (long long)o->steps, (long long)need, o->B, o->T, (long long)left);
    size_t nd = sm_loader_num_domains(ld), BT = (size_t)o->B * o->T;
    int32_t *in = malloc(BT * sizeof(int32_t)), *tg = malloc(BT * sizeof(int32_t));
    double *dl = calloc(nd, sizeof(double));
    if (!in || !tg || !dl) { free(in); free(tg); free(dl); return sm_error_set(err, SM_ERR_NOMEM, "out of memory"); }
    while (m->step < o->steps && !rc) {
        double t0 = sm_monotonic();
        rc = m->ops->zero_grad(m->be, err);
        double lsum = 0.0;
        for (int a = 0; a < o->grad_accum && !rc; a++) {
            float l = 0.0f;
            rc = sm_loader_next(ld, in, tg, err);
            if (!rc) rc = m->ops->forward(m->be, in, tg, o->B, o->T, &l, NULL, err);
            if (!rc) rc = m->ops->backward(m->be, 1.0f / o->grad_accum, err);
            lsum += l;
        }
        double norm = 0.0;
        if (!rc) rc = m->ops->grad_norm(m->be, &norm, err);
        if (rc) break;
        if (!isfinite(norm)) {
            rc = sm_error_set(err, SM_ERR_INTERNAL, "gradient norm is %g at step %lld (training diverged; lower the learning rate)",
                              norm, (long long)m->step + 1);
            break;
        }
        float mult = (o->grad_clip > 0 && norm > o->grad_clip) ? (float)(o->grad_clip / norm) : 1.0f;
        double lr = lr_at(o, m->step, warmup);
        if (m->step + 1 > INT32_MAX) { rc = sm_error_set(err, SM_ERR_ARG, "too many steps"); break; }
        rc = m->ops->adamw(m->be, (float)lr, o->beta1, o->beta2, o->eps, o->weight_decay, mult, (int)(m->step + 1), err);
        if (rc) break;
        m->step++;
        double dt = sm_monotonic() - t0;
        sm_train_event ev = {.step = m->step, .steps = o->steps, .train_loss = lsum / o->grad_accum, .lr = lr,
                             .grad_norm = norm, .tokens_per_s = dt > 0 ? (double)BT * o->grad_accum / dt : 0.0};
        int last = m->step == o->steps;
        if ((o->eval_every > 0 && m->step % o->eval_every == 0) || (last && o->eval_batches > 0)) {
            rc = do_eval(m, ld, o, dl, err);
            if (rc) break;
            ev.eval = o->eval_batches > 0;
            ev.domain_losses = dl;
        }
        if (o->checkpoint_every > 0 && (m->step % o->checkpoint_every == 0 || last)) {
            rc = save_resume(m, o, seed, sm_loader_position(ld), err);
            if (rc) break;
        }
        if (cb && cb(ud, &ev)) {
            if (o->resume_path) rc = save_resume(m, o, seed, sm_loader_position(ld), err);
            if (!rc) rc = sm_error_set(err, SM_ERR_CANCELLED, "training cancelled at step %lld", (long long)m->step);
            break;
        }
    }
    free(in);
    free(tg);
    free(dl);
    return rc;
}
