/* sm_cache.c - cache keys, entries and explanations. */
#include "sm_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *sm_json_canonical(const json_t *v) {
    return json_dumps(v, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
}

static json_t *digests_only(json_t *v) {
    if (json_is_object(v)) {
        json_t *d = json_object_get(v, "digest");
        if (json_is_string(d)) return json_incref(d);
        json_t *o = json_object();
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) json_object_set_new(o, k, digests_only(x));
        return o;
    }
    if (json_is_array(v)) {
        json_t *a = json_array();
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) json_array_append_new(a, digests_only(x));
        return a;
    }
    return json_incref(v);
}

json_t *sm_cache_parts(const sm_plugin *p, json_t *canonical_params, json_t *inputs) {
    return json_pack("{s:s, s:s, s:s, s:s, s:O, s:o}", "plugin", p->name, "plugin_version", p->desc->version,
                     "plugin_sha256", p->sha256, "cache_salt", p->desc->cache_salt ? p->desc->cache_salt : "",
                     "params", canonical_params, "inputs", inputs ? digests_only(inputs) : json_object());
}

void sm_cache_key(const json_t *parts, char key[65]) {
    char *s = sm_json_canonical(parts);
    sm_sha256_hex(s, strlen(s), key);
    free(s);
}

/* 1 if every output is in the store with its size and, up to SM_STORE_VERIFY_ON_REUSE_BYTES, its bytes still
 * hash to its digest (a corrupt one is set aside by sm_store_verify: *corrupt = 1, and the stage runs again). */
static int outputs_present(const sm_workspace *ws, json_t *outputs, int *corrupt) {
    const char *k;
    json_t *o;
    json_object_foreach(outputs, k, o) {
        const char *d = json_string_value(json_object_get(o, "digest"));
        json_t *b = json_object_get(o, "bytes");
        if (!d || !sm_store_has(ws, d, json_is_integer(b) ? json_integer_value(b) : -1)) return 0;
        sm_error err = {0};
        if (json_is_integer(b) && (uint64_t)json_integer_value(b) <= SM_STORE_VERIFY_ON_REUSE_BYTES &&
            sm_store_verify(ws, d, &err) != SM_OK) {
            sm_log(SM_LOG_WARN, "%s", err.msg);
            *corrupt = 1;
            return 0;
        }
    }
    return 1;
}

json_t *sm_cache_lookup(const sm_workspace *ws, const char *key, const char **why) {
    char path[PATH_MAX];
    if (why) *why = NULL;
    if (sm_workspace_path(ws, path, sizeof path, "cache/%s.json", key) != SM_OK) return NULL;
    json_t *e = json_load_file(path, 0, NULL);
    if (!e) return NULL;
    if (!json_is_object(e) || !json_is_object(json_object_get(e, "outputs"))) {
        if (why) *why = "its cache entry is unreadable";
        json_decref(e);
        return NULL;
    }
    int corrupt = 0;
    if (!outputs_present(ws, json_object_get(e, "outputs"), &corrupt)) {
        if (why) *why = corrupt ? "an output of its last run was corrupt in the store (set aside)"
                                : "outputs of its last run are missing from the store";
        json_decref(e);
        return NULL;
    }
    return e;
}

int sm_cache_store(const sm_workspace *ws, const char *key, json_t *entry, sm_error *err) {
    char path[PATH_MAX];
    sm_workspace_path(ws, path, sizeof path, "cache/%s.json", key);
    char *s = sm_json_canonical(entry);
    if (!s) return sm_error_set(err, SM_ERR_NOMEM, "cannot serialise the cache entry");
    int rc = sm_write_file_atomic(path, s, strlen(s), 0, err);
    free(s);
    return rc;
}

static char *short_json(const json_t *v) {
    char *s = v ? sm_json_canonical(v) : strdup("nil");
    if (s && strlen(s) > 60) strcpy(s + 57, "...");
    return s;
}

/* Appends "what 'key' changed (a -> b)" for each differing key of two objects. */
static void diff_objects(char *buf, size_t cap, const char *what, const json_t *a, const json_t *b) {
    const char *k;
    json_t *v;
    char *sa, *sb;
    json_object_foreach((json_t *)b, k, v) {
        json_t *old = json_object_get(a, k);
        if (old && json_equal(old, v)) continue;
        size_t l = strlen(buf);
        if (l + 8 >= cap) return;
        sa = short_json(old);
        sb = short_json(v);
        if (!strcmp(what, "input"))
            snprintf(buf + l, cap - l, "%s%s '%s' %s", l ? "; " : "", what, k, old ? "changed" : "added");
        else
            snprintf(buf + l, cap - l, "%s%s '%s' changed (%s -> %s)", l ? "; " : "", what, k, sa, sb);
        free(sa);
        free(sb);
    }
    json_object_foreach((json_t *)a, k, v) {
        if (json_object_get(b, k)) continue;
        size_t l = strlen(buf);
        if (l + 8 >= cap) return;
        snprintf(buf + l, cap - l, "%s%s '%s' removed", l ? "; " : "", what, k);
    }
}

char *sm_cache_explain(const json_t *before, const json_t *now) {
    if (!before) return strdup("no previous run of this stage");
    char buf[2048] = "";
    const char *ps = json_string_value(json_object_get(before, "plugin_sha256"));
    const char *pn = json_string_value(json_object_get(now, "plugin_sha256"));
    const char *vs = json_string_value(json_object_get(before, "plugin_version"));
    const char *vn = json_string_value(json_object_get(now, "plugin_version"));
    if (vs && vn && strcmp(vs, vn)) snprintf(buf, sizeof buf, "plugin version changed (%s -> %s)", vs, vn);
    else if (ps && pn && strcmp(ps, pn)) snprintf(buf, sizeof buf, "plugin binary changed (%.12s -> %.12s)", ps, pn);
    if (!json_equal(json_object_get(before, "cache_salt"), json_object_get(now, "cache_salt"))) {
        size_t l = strlen(buf);
        snprintf(buf + l, sizeof buf - l, "%splugin cache salt changed", l ? "; " : "");
    }
    diff_objects(buf, sizeof buf, "parameter", json_object_get(before, "params"), json_object_get(now, "params"));
    diff_objects(buf, sizeof buf, "input", json_object_get(before, "inputs"), json_object_get(now, "inputs"));
    if (!buf[0]) snprintf(buf, sizeof buf, "nothing changed but no usable cached result exists");
    return strdup(buf);
}
