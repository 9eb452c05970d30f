/* sm_cache.h - stage cache keys and entries. A key is the sha256 of the canonical JSON of its parts:
 * {plugin, plugin_version, plugin_sha256, cache_salt, params (canonical), inputs (name -> digest)}. */
#ifndef SM_CACHE_H
#define SM_CACHE_H

#include <jansson.h>
#include "sm_plugins.h"
#include "sm_store.h"

/* Canonical JSON text (sorted keys, compact, doubles with 17 significant digits); caller frees. */
char *sm_json_canonical(const json_t *v);

/* The key parts for a stage run (new reference). inputs: artifact references are reduced to their digests. */
json_t *sm_cache_parts(const sm_plugin *p, json_t *canonical_params, json_t *inputs);
/* sha256 of the canonical parts. */
void sm_cache_key(const json_t *parts, char key[65]);

/* The cache entry for key if present and every output it names still exists in the store with its size
 * (new reference), else NULL. *why (may be NULL) is set to a static reason when an entry exists but is
 * unusable ("outputs missing"). */
json_t *sm_cache_lookup(const sm_workspace *ws, const char *key, const char **why);
/* Writes the entry atomically (cache/<key>.json). */
int sm_cache_store(const sm_workspace *ws, const char *key, json_t *entry, sm_error *err);

/* Why a stage with `now` parts must run when it last ran with `before` parts (NULL: never ran): a malloc'd
 * sentence such as "parameter 'budget' changed (1000000 -> 2000000)". */
char *sm_cache_explain(const json_t *before, const json_t *now);

#endif
