/* sm_plugins.h - loading stage plugins (dlopen, ABI check, binary hash) and validating their parameters. */
#ifndef SM_PLUGINS_H
#define SM_PLUGINS_H

#include <jansson.h>
#include <limits.h>
#include "sm_plugin.h"

typedef struct sm_plugin {
    char name[64];
    char path[PATH_MAX];
    char sha256[65]; /* of the shared object's bytes: part of every cache key */
    void *dl;
    const sm_plugin_desc *desc;
    json_t *schema; /* parsed params_schema */
    /* the plugin's copy of sm_log_bind (NULL: it links no copy of the library) */
    void (*log_bind)(const sm_host_api *api, sm_host *h);
} sm_plugin;

/* Loads the shared object at path: RTLD_NOW | RTLD_LOCAL, the entry point, struct size, ABI major equal and
 * minor not newer than the host's (the message names both versions), a parseable params_schema. */
int sm_plugin_load(const char *path, sm_plugin **out, sm_error *err);
void sm_plugin_unload(sm_plugin *p);

/* Finds plugin `name`: each folder of $SCALEMIX_PLUGIN_PATH (colon-separated), then <build>/plugins.
 * SM_ERR_NOTFOUND lists the folders searched. */
int sm_plugin_find(const char *name, char *path_out, size_t cap, sm_error *err);

/* Validates params (an object; NULL = {}) against the plugin's schema: unknown names and wrong types are
 * SM_ERR_ARG naming the parameter, the stage and the expected type; required ones must be present; defaults
 * are filled in. Returns a new reference to the canonical object. An empty object is accepted for an array
 * (Lua cannot tell {} from []). */
int sm_plugin_check_params(const sm_plugin *p, json_t *params, json_t **canonical, sm_error *err);

/* Human description of a plugin's parameters, one per line (for `scalemix help STAGE`). */
void sm_plugin_print_params(const sm_plugin *p, FILE *out);

#endif
