/* sm_asjson.h - JSON helpers shared by the AutoScale stage plugins (fit, extrapolate, compare, plot):
 * parameter reading with clear errors, per-domain maps, and result emission through the host API. */
#ifndef SM_ASJSON_H
#define SM_ASJSON_H

#include <jansson.h>
#include <stddef.h>
#include "sm_common.h"
#include "sm_plugin.h"

/* Parses params_json; it must be a JSON object. */
int sm_asj_parse(const char *params_json, const char *stage, json_t **out, sm_error *err);
/* obj[key] as a number: 0 absent or null (*out untouched), 1 present; SM_ERR_ARG when present but not a number. */
int sm_asj_opt_number(const json_t *obj, const char *key, const char *stage, double *out, sm_error *err);
/* obj[key] as a finite number > 0, required; what names the field in the message. */
int sm_asj_positive(const json_t *obj, const char *key, const char *stage, const char *what, double *out, sm_error *err);
/* obj[key] as one positive number or a non-empty list of them (repeated measurements), required; *out is
 * malloc'd (the caller frees), *n its length. */
int sm_asj_positive_list(const json_t *obj, const char *key, const char *stage, const char *what, double **out, size_t *n,
                         sm_error *err);
/* obj[key] as a list of number arrays (replicates), each of length m; absent, null or {} (an empty Lua table)
 * gives 0 rows. *out is
 * malloc'd rows * m, row-major. */
int sm_asj_rows(const json_t *obj, const char *key, const char *stage, size_t m, double **out, size_t *rows, sm_error *err);
/* A sorted list of the keys of obj (strdup'd; free with sm_asj_free_names). */
int sm_asj_keys(const json_t *obj, char ***names, size_t *n, sm_error *err);
void sm_asj_free_names(char **names, size_t n);
/* Reads {domain: positive number} for exactly the m domains (missing or unknown keys are SM_ERR_ARG). */
int sm_asj_domain_values(const json_t *obj, const char *stage, const char *what, size_t m, char *const *domains,
                         double *out, sm_error *err);
/* A JSON number, or null when v is not finite (JSON has no NaN). */
json_t *sm_asj_num(double v);
/* {domain: value} */
json_t *sm_asj_map(size_t m, char *const *domains, const double *v);
/* {lo, hi} (nulls when not finite) */
json_t *sm_asj_interval(double lo, double hi);
/* [[...m numbers...], ...]: rows x m, row-major */
json_t *sm_asj_rows_json(const double *v, size_t rows, size_t m);
/* Sends obj as the stage result (17 significant digits) and drops the reference. */
int sm_asj_emit(const sm_host_api *api, sm_host *h, json_t *obj, const char *stage, sm_error *err);

#endif
