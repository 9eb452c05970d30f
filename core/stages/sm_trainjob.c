/* sm_trainjob.c - one GPT-2 training run from stage parameters: loader from the tokenize stage's shards,
 * mixture, model, training with metrics and cancel, per-domain evaluation, result. */
#include "sm_trainjob.h"

#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../model/sm_gpt2.h"

/* What a training process holds beyond its model (see sm_trainjob_resources). */
#define PROCESS_HEADROOM_BYTES (256ull << 20)

typedef struct shard_list {
    const char **paths;
    size_t n;
} shard_list;

typedef struct job {
    json_t *params, *inputs;
    size_t nd;
    const char **domains;
    double *mix;          /* tokens per domain, or weights when by_weight */
    int by_weight;
    double budget;
    sm_gpt2_config cfg;
    int B, T, threads, eval_batches, curve_batches, eval_every, checkpoint_every;
    uint64_t seed;
    double lr, wd, clip;
    sm_device device;
    shard_list *train, *val;
} job;

static void job_free(job *j) {
    for (size_t i = 0; j->train && i < j->nd; i++) free(j->train[i].paths);
    for (size_t i = 0; j->val && i < j->nd; i++) free(j->val[i].paths);
    free(j->train);
    free(j->val);
    free(j->domains);
    free(j->mix);
    json_decref(j->params);
    json_decref(j->inputs);
}

static int get_int(json_t *o, const char *k, int def) {
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? (int)json_number_value(v) : def;
}

/* The model shape from the `model` table: only known keys, each a whole number in its range; absent keys
 * take the defaults. A wrong type, a fraction or an unknown key is an error naming it (never ignored). */
static int model_config(json_t *model, sm_gpt2_config *cfg, sm_error *err) {
    static const struct { const char *key; int def, min, max; } keys[] = {
        {"layers", 2, 1, 1024}, {"heads", 2, 1, 1024}, {"channels", 64, 1, 1 << 16}, {"seq", 64, 2, 1 << 20}, {"vocab", 50257, 2, 1 << 24}};
    int v[5];
    if (model && !json_is_object(model))
        return sm_error_set(err, SM_ERR_ARG, "'model' must be a table such as {layers = 2, heads = 2, channels = 64, seq = 64}");
    const char *k;
    json_t *x;
    json_object_foreach(model, k, x) {
        size_t i = 0;
        while (i < SM_ARRAY_LEN(keys) && strcmp(k, keys[i].key)) i++;
        if (i == SM_ARRAY_LEN(keys))
            return sm_error_set(err, SM_ERR_ARG, "model: unknown key '%s' (known: layers, heads, channels, seq, vocab)", k);
    }
    for (size_t i = 0; i < SM_ARRAY_LEN(keys); i++) {
        x = json_object_get(model, keys[i].key);
        double d = x ? json_number_value(x) : keys[i].def;
        if (x && (!json_is_number(x) || d != floor(d)))
            return sm_error_set(err, SM_ERR_ARG, "model.%s must be a whole number", keys[i].key);
        if (d < keys[i].min || d > keys[i].max)
            return sm_error_set(err, SM_ERR_ARG, "model.%s is %g; it must be between %d and %d", keys[i].key, d, keys[i].min, keys[i].max);
        v[i] = (int)d;
    }
    *cfg = (sm_gpt2_config){.num_layers = v[0], .num_heads = v[1], .channels = v[2], .max_seq_len = v[3], .vocab_size = v[4]};
    cfg->padded_vocab_size = (cfg->vocab_size + 127) / 128 * 128;
    if (cfg->channels % cfg->num_heads)
        return sm_error_set(err, SM_ERR_ARG, "model.channels (%d) must divide by model.heads (%d)", cfg->channels, cfg->num_heads);
    return SM_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* Collects "<split>/<domain>/NNNN" artifact paths per domain, sorted by name. */
static int collect_shards(job *j, const char *split, shard_list *out, sm_error *err) {
    size_t plen = strlen(split);
    for (size_t d = 0; d < j->nd; d++) {
        size_t dlen = strlen(j->domains[d]);
        const char *name;
        json_t *ref;
        const char **names = calloc(json_object_size(j->inputs) + 1, sizeof *names);
        size_t n = 0;
        json_object_foreach(j->inputs, name, ref) {
            if (strncmp(name, split, plen) || name[plen] != '/' || strncmp(name + plen + 1, j->domains[d], dlen) ||
                name[plen + 1 + dlen] != '/')
                continue;
            names[n++] = name;
        }
        qsort(names, n, sizeof *names, cmp_str);
        out[d].paths = calloc(n + 1, sizeof *out[d].paths);
        out[d].n = n;
        for (size_t i = 0; i < n; i++) {
            const char *p = json_string_value(json_object_get(json_object_get(j->inputs, names[i]), "path"));
            if (!p) {
                sm_error_set(err, SM_ERR_ARG, "input %s is not an artifact with a path", names[i]);
                free(names);
                return SM_ERR_ARG;
            }
            out[d].paths[i] = p;
        }
        free(names);
        if (n == 0)
            return sm_error_set(err, SM_ERR_ARG, "domain '%s' has no %s shards among the inputs (expected artifacts named %s/%s/0000 "
                                "from the tokenize stage)", j->domains[d], split, split, j->domains[d]);
    }
    return SM_OK;
}

static int job_parse(job *j, const char *params_json, const char *inputs_json, int full, sm_error *err) {
    memset(j, 0, sizeof *j);
    json_error_t je;
    j->params = json_loads(params_json, 0, &je);
    j->inputs = json_loads(inputs_json ? inputs_json : "{}", 0, &je);
    if (!json_is_object(j->params) || !json_is_object(j->inputs)) return sm_error_set(err, SM_ERR_ARG, "parameters or inputs are not JSON objects");
    json_t *doms = json_object_get(j->params, "domains");
    j->nd = json_array_size(doms);
    if (j->nd == 0) return sm_error_set(err, SM_ERR_ARG, "'domains' must list at least one domain");
    j->domains = calloc(j->nd, sizeof *j->domains);
    j->mix = calloc(j->nd, sizeof *j->mix);
    for (size_t i = 0; i < j->nd; i++) {
        j->domains[i] = json_string_value(json_array_get(doms, i));
        if (!j->domains[i]) return sm_error_set(err, SM_ERR_ARG, "'domains' must be a list of names");
    }
    json_t *tokens = json_object_get(j->params, "tokens"), *weights = json_object_get(j->params, "weights");
    if (json_is_object(tokens) == json_is_object(weights))
        return sm_error_set(err, SM_ERR_ARG, "give the mixture as exactly one of 'tokens' (per domain) or 'weights' with 'budget'");
    j->by_weight = json_is_object(weights);
    json_t *mix = j->by_weight ? weights : tokens;
    for (size_t i = 0; i < j->nd; i++) {
        json_t *v = json_object_get(mix, j->domains[i]);
        if (!json_is_number(v) || json_number_value(v) < 0 || !isfinite(json_number_value(v)))
            return sm_error_set(err, SM_ERR_ARG, "'%s' needs a non-negative number for domain '%s'", j->by_weight ? "weights" : "tokens", j->domains[i]);
        j->mix[i] = json_number_value(v);
    }
    if (j->by_weight) {
        j->budget = json_number_value(json_object_get(j->params, "budget"));
        if (!(j->budget > 0)) return sm_error_set(err, SM_ERR_ARG, "'weights' needs a positive 'budget' (total training tokens)");
    }
    if (model_config(json_object_get(j->params, "model"), &j->cfg, err) != SM_OK) return SM_ERR_ARG;
    j->T = j->cfg.max_seq_len;
    j->B = get_int(j->params, "batch", 8);
    j->threads = get_int(j->params, "threads", 1);
    j->eval_batches = get_int(j->params, "eval_batches", 16);
    j->curve_batches = full ? get_int(j->params, "curve_eval_batches", j->eval_batches) : 0;
    j->eval_every = full ? get_int(j->params, "eval_every", 0) : 0;
    j->checkpoint_every = full ? get_int(j->params, "checkpoint_every", 0) : 0;
    j->seed = (uint64_t)get_int(j->params, "seed", 1);
    j->lr = json_number_value(json_object_get(j->params, "lr"));
    j->wd = json_number_value(json_object_get(j->params, "weight_decay"));
    j->clip = json_number_value(json_object_get(j->params, "grad_clip"));
    if (j->B < 1 || j->eval_batches < 1 || (full && j->curve_batches < 1) || !(j->lr > 0))
        return sm_error_set(err, SM_ERR_ARG, "batch, eval_batches, curve_eval_batches and lr must be positive");
    const char *dev = json_string_value(json_object_get(j->params, "device"));
    int rc = sm_device_parse(dev ? dev : "auto", &j->device, err);
    if (rc != SM_OK) return rc;
    j->train = calloc(j->nd, sizeof *j->train);
    j->val = calloc(j->nd, sizeof *j->val);
    if ((rc = collect_shards(j, "train", j->train, err)) != SM_OK) return rc;
    return collect_shards(j, "val", j->val, err);
}

/* auto: CUDA in bf16 when it can be had, else the CPU in fp32 (said once in the log). */
static int make_model(const sm_host_api *api, sm_host *h, job *j, sm_gpt2 **m, sm_error *err) {
    sm_gpt2_opts o = {.device = j->device, .dtype = j->device == SM_DEVICE_CUDA ? SM_DTYPE_BF16 : SM_DTYPE_FP32,
                      .threads = api->threads(h), .max_B = j->B, .max_T = j->T};
    if (j->device == SM_DEVICE_AUTO) {
        o.device = SM_DEVICE_CUDA;
        o.dtype = SM_DTYPE_BF16;
        sm_error cerr = {0};
        if (sm_gpt2_create(m, &j->cfg, j->seed, &o, &cerr) == SM_OK) return SM_OK;
        api->log(h, SM_LOG_DEBUG, "device auto: using the CPU (%s)", cerr.msg);
        o.device = SM_DEVICE_CPU;
        o.dtype = SM_DTYPE_FP32;
    }
    return sm_gpt2_create(m, &j->cfg, j->seed, &o, err);
}

typedef struct progress {
    const sm_host_api *api;
    sm_host *h;
    job *j;
    double tokens_per_step;
    /* the evaluation curve (full runs) */
    double *curve_steps, *curve_ppl, *curve_loss; /* curve_loss: neval x nd */
    size_t ncurve, capcurve;
} progress;

static double mean_ppl(const double *losses, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += exp(losses[i]);
    return s / (double)n;
}

static int on_step(void *ud, const sm_train_event *ev) {
    progress *p = ud;
    const sm_host_api *api = p->api;
    api->progress(p->h, (double)ev->step * p->tokens_per_step, (double)ev->steps * p->tokens_per_step, "tokens");
    api->metric(p->h, "train_loss", ev->step, NULL, ev->train_loss);
    if (ev->eval && ev->domain_losses) {
        size_t nd = p->j->nd;
        for (size_t d = 0; d < nd; d++) api->metric(p->h, "val_loss", ev->step, p->j->domains[d], ev->domain_losses[d]);
        double ppl = mean_ppl(ev->domain_losses, nd);
        api->metric(p->h, "val_ppl_mean", ev->step, NULL, ppl);
        if (p->ncurve == p->capcurve) {
            p->capcurve = p->capcurve ? 2 * p->capcurve : 32;
            p->curve_steps = realloc(p->curve_steps, p->capcurve * sizeof(double));
            p->curve_ppl = realloc(p->curve_ppl, p->capcurve * sizeof(double));
            p->curve_loss = realloc(p->curve_loss, p->capcurve * nd * sizeof(double));
        }
        p->curve_steps[p->ncurve] = (double)ev->step;
        p->curve_ppl[p->ncurve] = ppl;
        memcpy(p->curve_loss + p->ncurve * nd, ev->domain_losses, nd * sizeof(double));
        p->ncurve++;
    }
    return api->cancelled(p->h) ? 1 : 0;
}

/* The final evaluation on every domain's fixed validation sample (eval_batches x B rows spread over the
 * shard), batch by batch: loss[d] is the token-weighted mean and se[d] the standard error of that mean from
 * the spread of the batch means (NaN with a single batch). Each batch covers one stratum of the shard, so
 * this overstates the error of the stratified sample a little rather than understating it. batches[d] gets
 * every batch's mean loss: two runs evaluated on the same sample are paired batch by batch, and the spread
 * of the per-batch differences is the evaluation error of their contrast (sm.eval_contrast_se). */
static int final_eval(const job *j, sm_gpt2 *m, sm_loader *ld, double *loss, double *se, json_t *batches, sm_error *err) {
    size_t BT = (size_t)j->B * j->T;
    int32_t *in = malloc(BT * sizeof(int32_t)), *tg = malloc(BT * sizeof(int32_t));
    if (!in || !tg) { free(in); free(tg); return sm_error_set(err, SM_ERR_NOMEM, "out of memory"); }
    int rc = SM_OK;
    uint64_t sample = (uint64_t)j->eval_batches * (uint64_t)j->B;
    for (size_t d = 0; d < j->nd && !rc; d++) {
        uint64_t rows = sm_loader_val_rows(ld, d, j->T);
        if (rows > sample) rows = sample;
        if (rows == 0) {
            rc = sm_error_set(err, SM_ERR_ARG, "domain '%s' has no usable validation loss: its validation shards need at least "
                              "%d tokens; tokenize with a larger val_fraction or give that domain more text", j->domains[d], j->T + 1);
            break;
        }
        double sum = 0, s1 = 0, s2 = 0;
        int nb = 0;
        json_t *bl = json_array();
        json_object_set_new(batches, j->domains[d], bl);
        for (uint64_t r0 = 0; r0 < rows && !rc; r0 += (uint64_t)j->B, nb++) {
            int n = (int)(rows - r0 < (uint64_t)j->B ? rows - r0 : (uint64_t)j->B);
            float l = 0;
            rc = sm_loader_val_batch(ld, d, j->T, sample, r0, n, in, tg, err);
            if (!rc) rc = sm_gpt2_loss(m, in, tg, n, j->T, &l, err);
            sum += (double)l * n;
            json_array_append_new(bl, json_real(l));
            s1 += l;
            s2 += (double)l * l;
        }
        loss[d] = sum / (double)rows;
        if (!rc && !isfinite(loss[d]))
            rc = sm_error_set(err, SM_ERR_INTERNAL, "domain '%s': the validation loss is %g (the model diverged; lower the learning rate)",
                              j->domains[d], loss[d]);
        double var = nb > 1 ? (s2 - s1 * s1 / nb) / (nb - 1) : 0;
        se[d] = nb > 1 ? sqrt((var > 0 ? var : 0) / nb) : NAN;
    }
    free(in);
    free(tg);
    return rc;
}

static json_t *per_domain(const job *j, const double *v, int as_int) {
    json_t *o = json_object();
    for (size_t d = 0; d < j->nd; d++)
        json_object_set_new(o, j->domains[d], as_int ? json_integer((json_int_t)v[d]) : isfinite(v[d]) ? json_real(v[d]) : json_null());
    return o;
}

int sm_trainjob_run(const sm_host_api *api, sm_host *h, const char *params_json, const char *inputs_json, int full,
                    sm_error *err) {
    job j;
    sm_loader *ld = NULL;
    sm_gpt2 *m = NULL;
    progress pr = {0};
    double *final_losses = NULL, *final_se = NULL;
    int rc = job_parse(&j, params_json, inputs_json, full, err);
    if (rc != SM_OK) goto out;
    sm_loader_domain *ds = calloc(j.nd, sizeof *ds);
    for (size_t d = 0; d < j.nd; d++)
        ds[d] = (sm_loader_domain){j.domains[d], j.train[d].paths, j.train[d].n, j.val[d].paths, j.val[d].n};
    rc = sm_loader_open(&ld, ds, j.nd, err);
    free(ds);
    if (rc != SM_OK) goto out;
    rc = j.by_weight ? sm_loader_set_weights(ld, j.mix, j.budget, j.B, j.T, j.seed, err)
                     : sm_loader_set_tokens(ld, j.mix, j.B, j.T, j.seed, err);
    if (rc != SM_OK) goto out;
    int64_t steps = sm_loader_num_batches(ld);
    if (steps < 1) {
        rc = sm_error_set(err, SM_ERR_ARG, "the mixture holds fewer tokens than one batch of %d x %d", j.B, j.T);
        goto out;
    }
    if ((rc = make_model(api, h, &j, &m, err)) != SM_OK) goto out;
    sm_train_opts o;
    sm_train_opts_default(&o);
    o.B = j.B;
    o.T = j.T;
    o.steps = steps;
    o.lr = (float)j.lr;
    o.weight_decay = (float)j.wd;
    o.grad_clip = (float)j.clip;
    o.eval_every = full && j.eval_every <= 0 ? (int)(steps >= 20 ? steps / 20 : 1) : j.eval_every;
    o.eval_batches = j.curve_batches; /* the curve's points (full runs); the final metric is measured below */
    o.seed = j.seed;
    char resume[4096];
    if (full && j.checkpoint_every > 0 && api->scratch_dir(h)) {
        snprintf(resume, sizeof resume, "%s/resume.bin", api->scratch_dir(h));
        o.checkpoint_every = j.checkpoint_every;
        o.resume_path = resume;
    }
    pr = (progress){.api = api, .h = h, .j = &j, .tokens_per_step = (double)j.B * j.T};
    api->log(h, SM_LOG_DEBUG, "%lld steps of %d x %d on %s (%zu parameters)", (long long)steps, j.B, j.T, sm_gpt2_device_name(m),
             sm_gpt2_num_params(&j.cfg));
    double t0 = sm_now();
    rc = sm_gpt2_train(m, ld, &o, on_step, &pr, err);
    if (rc != SM_OK) goto out;
    double secs = sm_now() - t0;
    final_losses = calloc(j.nd, sizeof(double));
    final_se = calloc(j.nd, sizeof(double));
    if (!final_losses || !final_se) {
        rc = sm_error_set(err, SM_ERR_NOMEM, "out of memory");
        goto out;
    }
    json_t *batch_losses = json_object();
    if ((rc = final_eval(&j, m, ld, final_losses, final_se, batch_losses, err)) != SM_OK) {
        json_decref(batch_losses);
        goto out;
    }
    uint64_t *served = calloc(j.nd, sizeof *served);
    double *epochs = calloc(j.nd, sizeof *epochs), *served_d = calloc(j.nd, sizeof *served_d), *ppl = calloc(j.nd, sizeof *ppl);
    sm_loader_served(ld, served, epochs);
    double total = 0, mean_loss = 0, var_metric = 0;
    for (size_t d = 0; d < j.nd; d++) {
        served_d[d] = (double)served[d];
        total += served_d[d];
        ppl[d] = exp(final_losses[d]);
        mean_loss += final_losses[d] / (double)j.nd;
        var_metric += ppl[d] * ppl[d] * final_se[d] * final_se[d]; /* delta method: d exp(l) = exp(l) dl */
        api->metric(h, "final_val_loss", steps, j.domains[d], final_losses[d]);
    }
    double metric = mean_ppl(final_losses, j.nd);
    api->metric(h, "final_val_ppl_mean", steps, NULL, metric);
    json_t *res = json_pack("{s:o, s:o, s:o, s:o, s:f, s:I, s:f, s:f, s:f, s:s, s:I}", "tokens", per_domain(&j, served_d, 1),
                            "val_loss", per_domain(&j, final_losses, 0), "val_ppl", per_domain(&j, ppl, 0), "epochs",
                            per_domain(&j, epochs, 0), "metric", metric, "steps", (json_int_t)steps, "total_tokens", total,
                            "seconds", secs, "tokens_per_s", secs > 0 ? total / secs : 0.0, "device", sm_gpt2_device_name(m),
                            "params", (json_int_t)sm_gpt2_num_params(&j.cfg));
    json_object_set_new(res, "tokens_per_step", json_real(pr.tokens_per_step));
    /* evaluation noise: the standard error of the final evaluation on the fixed sample (null with one batch) */
    json_object_set_new(res, "val_loss_se", per_domain(&j, final_se, 0));
    json_object_set_new(res, "metric_se", isfinite(var_metric) ? json_real(sqrt(var_metric) / (double)j.nd) : json_null());
    json_object_set_new(res, "mean_loss", json_real(mean_loss));
    json_object_set_new(res, "eval_rows", json_integer((json_int_t)j.eval_batches * j.B));
    json_object_set_new(res, "val_batch_loss", batch_losses);
    if (full) {
        json_t *cs = json_array(), *cp = json_array();
        for (size_t i = 0; i < pr.ncurve; i++) {
            json_array_append_new(cs, json_real(pr.curve_steps[i]));
            json_array_append_new(cp, json_real(pr.curve_ppl[i]));
        }
        json_object_set_new(res, "curve", json_pack("{s:o, s:o}", "steps", cs, "ppl", cp));
        api->result_f64(h, "curve_steps", pr.curve_steps, pr.ncurve);
        api->result_f64(h, "curve_ppl", pr.curve_ppl, pr.ncurve);
    }
    api->result_f64(h, "val_loss", final_losses, j.nd);
    api->result_f64(h, "tokens", served_d, j.nd);
    char *text = json_dumps(res, JSON_COMPACT | JSON_REAL_PRECISION(17));
    rc = text ? api->result(h, text) : SM_ERR_INTERNAL;
    free(text);
    json_decref(res);
    free(served);
    free(epochs);
    free(served_d);
    free(ppl);
    if (rc != SM_OK) {
        sm_error_set(err, rc, "cannot record the result (a value JSON cannot carry?)");
        goto out;
    }
    if (full) {
        char path[4096], digest[65];
        if ((rc = api->output_path(h, "model", path, sizeof path)) != SM_OK ||
            (rc = sm_gpt2_save(m, path, 3, err)) != SM_OK)
            goto out;
        char meta[256];
        snprintf(meta, sizeof meta, "{\"format\": \"llm.c checkpoint v3\", \"layers\": %d, \"heads\": %d, \"channels\": %d, \"seq\": %d}",
                 j.cfg.num_layers, j.cfg.num_heads, j.cfg.channels, j.cfg.max_seq_len);
        if ((rc = api->output_commit(h, "model", path, "checkpoint", meta, digest)) != SM_OK)
            sm_error_set(err, rc, "cannot store the trained model");
    }
out:
    if (rc == SM_ERR_CANCELLED && err) sm_error_set(err, rc, "cancelled");
    free(final_losses);
    free(final_se);
    free(pr.curve_steps);
    free(pr.curve_ppl);
    free(pr.curve_loss);
    sm_gpt2_free(m);
    sm_loader_free(ld);
    job_free(&j);
    return rc;
}

int sm_trainjob_resources(const char *params_json, const char *inputs_json, sm_resources *out, sm_error *err) {
    (void)inputs_json;
    json_t *p = json_loads(params_json, 0, NULL);
    if (!p) return sm_error_set(err, SM_ERR_ARG, "parameters are not JSON");
    out->threads = get_int(p, "threads", 1);
    sm_gpt2_config checked; /* a bad model shape fails at submission, on the script's line */
    if (model_config(json_object_get(p, "model"), &checked, err) != SM_OK) {
        json_decref(p);
        return SM_ERR_ARG;
    }
    if (out->struct_size >= offsetof(sm_resources, host_memory_bytes) + sizeof out->host_memory_bytes) {
        /* the CPU backend's own plan (also the host copies a GPU run keeps), plus the process around it:
         * libraries, OpenBLAS and OpenMP buffers, the loader (bench_gpt2_cpu at the demo shape, its model and
         * its sgemm-bound matrices included, peaks at 188 MiB resident) */
        uint64_t host = 0;
        sm_error herr = {0};
        if (sm_gpt2_memory_need(&checked, get_int(p, "batch", 8), checked.max_seq_len, SM_DTYPE_FP32, SM_DEVICE_CPU,
                                &host, &herr) == SM_OK)
            out->host_memory_bytes = host + PROCESS_HEADROOM_BYTES;
    }
    const char *dev = json_string_value(json_object_get(p, "device"));
    if (dev && (!strcmp(dev, "cuda") || (!strcmp(dev, "auto") && sm_gpt2_cuda_devices(NULL) > 0))) {
        sm_gpt2_config cfg;
        if (model_config(json_object_get(p, "model"), &cfg, err) != SM_OK) {
            json_decref(p);
            return SM_ERR_ARG;
        }
        /* the CUDA backend's own memory plan; the driver context is the stage process's own (isolate), its
         * few hundred MiB outside this figure */
        uint64_t need = 0;
        sm_error nerr = {0};
        int rc = sm_gpt2_memory_need(&cfg, get_int(p, "batch", 8), cfg.max_seq_len, SM_DTYPE_BF16, SM_DEVICE_CUDA, &need, &nerr);
        if (rc == SM_OK) {
            out->gpu = 1;
            out->device_memory_bytes = need;
            out->isolate = 1; /* one CUDA context per stage process: a crash or leak ends with the stage */
        } else if (strcmp(dev, "auto")) {
            json_decref(p);
            if (err) *err = nerr;
            return rc;
        } /* auto: a shape the CUDA backend refuses runs on the CPU, as make_model falls back */
    }
    json_decref(p);
    return SM_OK;
}
