/* sm_asjson.c - JSON helpers for the AutoScale plugins. */
#include "sm_asjson.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int sm_asj_parse(const char *params_json, const char *stage, json_t **out, sm_error *err) {
    json_error_t je;
    *out = NULL;
    json_t *j = json_loads(params_json ? params_json : "", 0, &je);
    if (!j) return sm_error_set(err, SM_ERR_ARG, "%s: parameters are not valid JSON: %s (line %d)", stage, je.text, je.line);
    if (!json_is_object(j)) {
        json_decref(j);
        return sm_error_set(err, SM_ERR_ARG, "%s: parameters must be a JSON object", stage);
    }
    *out = j;
    return SM_OK;
}

int sm_asj_opt_number(const json_t *obj, const char *key, const char *stage, double *out, sm_error *err) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return sm_error_set(err, SM_ERR_ARG, "%s: '%s' must be a number or null", stage, key);
    *out = json_number_value(v);
    if (!isfinite(*out)) return sm_error_set(err, SM_ERR_ARG, "%s: '%s' must be finite", stage, key);
    return 1;
}

int sm_asj_positive(const json_t *obj, const char *key, const char *stage, const char *what, double *out, sm_error *err) {
    json_t *v = json_object_get(obj, key);
    if (!v || !json_is_number(v))
        return sm_error_set(err, SM_ERR_ARG, "%s: %s needs a number '%s'", stage, what, key);
    double d = json_number_value(v);
    if (!(isfinite(d) && d > 0))
        return sm_error_set(err, SM_ERR_ARG, "%s: %s has %s = %g; it must be a positive number", stage, what, key, d);
    *out = d;
    return SM_OK;
}

int sm_asj_positive_list(const json_t *obj, const char *key, const char *stage, const char *what, double **out, size_t *n,
                         sm_error *err) {
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    *n = 0;
    if (json_is_number(v)) {
        double d;
        int rc = sm_asj_positive(obj, key, stage, what, &d, err);
        if (rc) return rc;
        if (!(*out = malloc(sizeof **out))) return sm_error_set(err, SM_ERR_NOMEM, "%s: out of memory", stage);
        **out = d;
        *n = 1;
        return SM_OK;
    }
    size_t k = json_array_size(v);
    if (!json_is_array(v) || k == 0)
        return sm_error_set(err, SM_ERR_ARG, "%s: %s needs '%s' as a number or a non-empty list of numbers (repeats)", stage,
                            what, key);
    if (!(*out = malloc(k * sizeof **out))) return sm_error_set(err, SM_ERR_NOMEM, "%s: out of memory", stage);
    for (size_t i = 0; i < k; i++) {
        json_t *e = json_array_get(v, i);
        double d = json_is_number(e) ? json_number_value(e) : NAN;
        if (!(isfinite(d) && d > 0)) {
            free(*out);
            *out = NULL;
            return sm_error_set(err, SM_ERR_ARG, "%s: %s has %s[%zu] that is not a positive number", stage, what, key, i);
        }
        (*out)[i] = d;
    }
    *n = k;
    return SM_OK;
}

int sm_asj_rows(const json_t *obj, const char *key, const char *stage, size_t m, double **out, size_t *rows, sm_error *err) {
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    *rows = 0;
    /* an empty Lua table arrives as {} */
    if (!v || json_is_null(v) || (json_is_object(v) && json_object_size(v) == 0)) return SM_OK;
    size_t r = json_array_size(v);
    if (!json_is_array(v)) return sm_error_set(err, SM_ERR_ARG, "%s: '%s' must be a list of replicates [[w_1..w_m], ...]", stage, key);
    if (r == 0) return SM_OK;
    if (!(*out = malloc(r * m * sizeof **out))) return sm_error_set(err, SM_ERR_NOMEM, "%s: out of memory", stage);
    for (size_t i = 0; i < r; i++) {
        json_t *row = json_array_get(v, i);
        if (!json_is_array(row) || json_array_size(row) != m) {
            free(*out);
            *out = NULL;
            return sm_error_set(err, SM_ERR_ARG, "%s: %s[%zu] must be a list of %zu numbers (one per domain)", stage, key, i, m);
        }
        for (size_t j = 0; j < m; j++) {
            json_t *e = json_array_get(row, j);
            (*out)[i * m + j] = json_is_number(e) ? json_number_value(e) : NAN;
        }
    }
    *rows = r;
    return SM_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int sm_asj_keys(const json_t *obj, char ***names, size_t *n, sm_error *err) {
    *names = NULL;
    *n = 0;
    size_t cnt = json_object_size(obj);
    char **v = calloc(cnt ? cnt : 1, sizeof *v);
    if (!v) return sm_error_set(err, SM_ERR_NOMEM, "out of memory");
    const char *key;
    json_t *val;
    size_t i = 0;
    json_object_foreach((json_t *)obj, key, val) {
        (void)val;
        if (!(v[i] = strdup(key))) { sm_asj_free_names(v, i); return sm_error_set(err, SM_ERR_NOMEM, "out of memory"); }
        i++;
    }
    qsort(v, i, sizeof *v, cmp_str);
    *names = v;
    *n = i;
    return SM_OK;
}

void sm_asj_free_names(char **names, size_t n) {
    if (!names) return;
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

int sm_asj_domain_values(const json_t *obj, const char *stage, const char *what, size_t m, char *const *domains,
                         double *out, sm_error *err) {
    if (!json_is_object(obj))
        return sm_error_set(err, SM_ERR_ARG, "%s: %s must be an object {domain: number}", stage, what);
    for (size_t i = 0; i < m; i++) {
        json_t *v = json_object_get(obj, domains[i]);
        if (!v) return sm_error_set(err, SM_ERR_ARG, "%s: %s has no entry for domain '%s'", stage, what, domains[i]);
        double d = json_is_number(v) ? json_number_value(v) : NAN;
        if (!(isfinite(d) && d > 0))
            return sm_error_set(err, SM_ERR_ARG, "%s: %s['%s'] must be a positive number", stage, what, domains[i]);
        out[i] = d;
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)obj, key, val) {
        (void)val;
        size_t i = 0;
        while (i < m && strcmp(domains[i], key)) i++;
        if (i == m) return sm_error_set(err, SM_ERR_ARG, "%s: %s names unknown domain '%s'", stage, what, key);
    }
    return SM_OK;
}

json_t *sm_asj_num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

json_t *sm_asj_map(size_t m, char *const *domains, const double *v) {
    json_t *o = json_object();
    for (size_t i = 0; o && i < m; i++) json_object_set_new(o, domains[i], sm_asj_num(v[i]));
    return o;
}

json_t *sm_asj_interval(double lo, double hi) { return json_pack("{s:o,s:o}", "lo", sm_asj_num(lo), "hi", sm_asj_num(hi)); }

json_t *sm_asj_rows_json(const double *v, size_t rows, size_t m) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < rows; i++) {
        json_t *row = json_array();
        for (size_t j = 0; j < m; j++) json_array_append_new(row, sm_asj_num(v[i * m + j]));
        json_array_append_new(a, row);
    }
    return a;
}

int sm_asj_emit(const sm_host_api *api, sm_host *h, json_t *obj, const char *stage, sm_error *err) {
    char *s = obj ? json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(obj);
    if (!s) return sm_error_set(err, SM_ERR_NOMEM, "%s: could not build the result JSON", stage);
    int rc = api->result(h, s);
    free(s);
    if (rc) return sm_error_set(err, rc, "%s: the host refused the result (%s)", stage, sm_error_name(rc));
    return SM_OK;
}
