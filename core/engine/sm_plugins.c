/* sm_plugins.c - the plugin loader. */
#include "sm_plugins.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int sm_plugin_load(const char *path, sm_plugin **out, sm_error *err) {
    *out = NULL;
    sm_plugin *p = calloc(1, sizeof *p);
    if (!p) return sm_error_set(err, SM_ERR_NOMEM, "out of memory loading %s", path);
    snprintf(p->path, sizeof p->path, "%s", path);
    if (sm_sha256_file(path, p->sha256, NULL, err) != SM_OK) {
        free(p);
        return sm_error_set(err, SM_ERR_PLUGIN, "cannot read plugin %s: %s", path, err ? err->msg : "");
    }
    p->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!p->dl) {
        sm_error_set(err, SM_ERR_PLUGIN, "cannot load plugin %s: %s", path, dlerror());
        free(p);
        return SM_ERR_PLUGIN;
    }
    sm_plugin_describe_fn fn = (sm_plugin_describe_fn)dlsym(p->dl, SM_PLUGIN_ENTRY);
    const sm_plugin_desc *d = fn ? fn() : NULL;
    int rc = SM_OK;
    if (!fn)
        rc = sm_error_set(err, SM_ERR_PLUGIN, "%s is not a scalemix plugin: it exports no %s()", path, SM_PLUGIN_ENTRY);
    else if (!d || d->struct_size < offsetof(sm_plugin_desc, run) + sizeof d->run)
        rc = sm_error_set(err, SM_ERR_PLUGIN, "plugin %s returned an invalid descriptor", path);
    else if (d->abi_major != SM_PLUGIN_ABI_MAJOR || d->abi_minor > SM_PLUGIN_ABI_MINOR)
        rc = sm_error_set(err, SM_ERR_PLUGIN,
                          "plugin %s was built for plugin ABI %u.%u but this engine provides ABI %d.%d; rebuild the plugin against this engine's sm_plugin.h",
                          path, d->abi_major, d->abi_minor, SM_PLUGIN_ABI_MAJOR, SM_PLUGIN_ABI_MINOR);
    else if (!d->name || !*d->name || !d->version || !d->run)
        rc = sm_error_set(err, SM_ERR_PLUGIN, "plugin %s lacks a name, version or run function", path);
    if (rc == SM_OK) {
        json_error_t je;
        p->schema = json_loads(d->params_schema ? d->params_schema : "{}", 0, &je);
        if (!p->schema || !json_is_object(p->schema))
            rc = sm_error_set(err, SM_ERR_PLUGIN, "plugin %s has an invalid params_schema: %s (line %d)", path, je.text, je.line);
    }
    if (rc != SM_OK) {
        json_decref(p->schema);
        dlclose(p->dl);
        free(p);
        return rc;
    }
    p->desc = d;
    /* the plugin's own copy of the library logger (-Bsymbolic binds its code to it), if it has one */
    p->log_bind = (void (*)(const sm_host_api *, sm_host *))dlsym(p->dl, "sm_log_bind");
    if (p->log_bind == sm_log_bind) p->log_bind = NULL;
    snprintf(p->name, sizeof p->name, "%s", d->name);
    *out = p;
    return SM_OK;
}

void sm_plugin_unload(sm_plugin *p) {
    if (!p) return;
    json_decref(p->schema);
    /* The shared object stays mapped: OpenMP and OpenBLAS thread pools it started may outlive the call. */
    free(p);
}

int sm_plugin_find(const char *name, char *path_out, size_t cap, sm_error *err) {
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
            return sm_error_set(err, SM_ERR_ARG, "invalid stage name '%s' (use a-z, 0-9, _ and -)", name);
    char searched[2048] = "";
    const char *env = getenv("SCALEMIX_PLUGIN_PATH");
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s%s%s/plugins", env ? env : "", env && *env ? ":" : "", sm_build_dir());
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        struct stat st;
        if (snprintf(path_out, cap, "%s/%s.so", d, name) < (int)cap && stat(path_out, &st) == 0) return SM_OK;
        size_t l = strlen(searched);
        snprintf(searched + l, sizeof searched - l, "%s%s", l ? ", " : "", d);
    }
    return sm_error_set(err, SM_ERR_NOTFOUND, "no plugin for stage '%s' (looked for %s.so in %s; build with `make` or set SCALEMIX_PLUGIN_PATH)",
                        name, name, searched);
}

static int type_ok(const char *type, json_t *v) {
    if (!strcmp(type, "number")) return json_is_number(v);
    if (!strcmp(type, "integer")) return json_is_integer(v) || (json_is_real(v) && json_real_value(v) == (double)(long long)json_real_value(v));
    if (!strcmp(type, "string")) return json_is_string(v);
    if (!strcmp(type, "boolean")) return json_is_boolean(v);
    if (!strcmp(type, "array")) return json_is_array(v) || (json_is_object(v) && json_object_size(v) == 0);
    if (!strcmp(type, "object")) return json_is_object(v);
    if (!strcmp(type, "any")) return 1;
    return 0;
}

static const char *json_type_name(json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "a table";
    case JSON_ARRAY: return "a list";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "nil";
    }
}

int sm_plugin_check_params(const sm_plugin *p, json_t *params, json_t **canonical, sm_error *err) {
    *canonical = NULL;
    if (params && !json_is_object(params)) return sm_error_set(err, SM_ERR_ARG, "stage %s: parameters must be a table", p->name);
    json_t *out = json_object();
    const char *key;
    json_t *v;
    if (params) {
        json_object_foreach(params, key, v) {
            json_t *spec = json_object_get(p->schema, key);
            if (!spec) {
                char known[1024] = "";
                const char *k2;
                json_t *s2;
                json_object_foreach(p->schema, k2, s2) {
                    size_t l = strlen(known);
                    snprintf(known + l, sizeof known - l, "%s%s", l ? ", " : "", k2);
                }
                json_decref(out);
                return sm_error_set(err, SM_ERR_ARG, "stage %s: unknown parameter '%s' (known: %s)", p->name, key, known);
            }
            if (json_is_null(v)) continue; /* nil in Lua: take the default */
            const char *type = json_string_value(json_object_get(spec, "type"));
            if (!type) type = "any";
            if (!type_ok(type, v)) {
                json_decref(out);
                return sm_error_set(err, SM_ERR_ARG, "stage %s: parameter '%s' must be %s %s, got %s", p->name, key,
                                    type[0] == 'a' || type[0] == 'i' || type[0] == 'o' ? "an" : "a", type, json_type_name(v));
            }
            if (!strcmp(type, "array") && json_is_object(v)) json_object_set_new(out, key, json_array());
            else if (!strcmp(type, "integer") && json_is_real(v)) json_object_set_new(out, key, json_integer((json_int_t)json_real_value(v)));
            else json_object_set(out, key, v);
        }
    }
    json_object_foreach(p->schema, key, v) {
        if (json_object_get(out, key)) continue;
        json_t *def = json_object_get(v, "default");
        if (def) json_object_set(out, key, def);
        else if (json_is_true(json_object_get(v, "required"))) {
            json_decref(out);
            return sm_error_set(err, SM_ERR_ARG, "stage %s: missing required parameter '%s'%s%s", p->name, key,
                                json_object_get(v, "doc") ? " — " : "", json_object_get(v, "doc") ? json_string_value(json_object_get(v, "doc")) : "");
        } else json_object_set_new(out, key, json_null());
    }
    *canonical = out;
    return SM_OK;
}

void sm_plugin_print_params(const sm_plugin *p, FILE *out) {
    const char *key;
    json_t *v;
    fprintf(out, "stage %s %s: %s\nparameters:\n", p->name, p->desc->version, p->desc->description ? p->desc->description : "");
    json_object_foreach(p->schema, key, v) {
        char *def = json_object_get(v, "default") ? json_dumps(json_object_get(v, "default"), JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
        fprintf(out, "  %-18s %-8s %s%s%s%s\n", key, json_string_value(json_object_get(v, "type")) ? json_string_value(json_object_get(v, "type")) : "any",
                json_string_value(json_object_get(v, "doc")) ? json_string_value(json_object_get(v, "doc")) : "",
                def ? " (default " : json_is_true(json_object_get(v, "required")) ? " (required)" : "", def ? def : "", def ? ")" : "");
        free(def);
    }
}
