/* sm_sched_auth.c - what the daemon may run is what `scalemix schedule add` registered.
 *
 * The database holds state, not authority: anyone who can write to it (its server's OS user included) could
 * otherwise make the daemon, often root, run their own script. So a schedule row carries the digest of its
 * pipeline script at registration and an HMAC-SHA256 tag over what decides what runs (name, pipeline path,
 * script digest, parameters, cron, zone, when-changed paths), keyed by <workspace>/sched.key: 32 random
 * bytes, 0600, owned by the workspace's owner, created on first use. The daemon recomputes the tag and the
 * script's digest before deciding or starting a fire, and refuses the fire when either differs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <sys/stat.h>
#include <openssl/crypto.h>

#include "sm_sched_int.h"

#define KEY_BYTES 32

int sm_sched_valid_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64 || s[0] == '.' || s[0] == '-') return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("_.-", s[i])) return 0;
    return 1;
}

static int load_key(unsigned char key[KEY_BYTES], sm_error *err) {
    const char *ws = sm_sched_workspace();
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/sched.key", ws);
    /* The workspace may not exist yet with a database given by DSN: make it (private) for the key. */
    if (mkdir(ws, 0700) != 0 && errno != EEXIST)
        return sm_error_set(err, SM_ERR_IO, "schedule key: creating the workspace %s: %s", ws, strerror(errno));
    int rc = sm_secret_file(path, key, KEY_BYTES, err);
    return rc ? sm_error_wrap(err, "the schedule key") : SM_OK;
}

/* JSON text in one canonical form (compact, sorted keys), so that jsonb's re-rendering does not matter. */
static char *canon(const char *json_text) {
    json_t *j = json_loads(json_text ? json_text : "null", JSON_DECODE_ANY, NULL);
    if (!j) return NULL;
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    json_decref(j);
    return s;
}

int sm_sched_auth_tag(const sm_sched_auth_fields *f, char hex[65], sm_error *err) {
    unsigned char key[KEY_BYTES];
    if (load_key(key, err)) return err ? err->code : SM_ERR_IO;
    char *params = canon(f->params), *wc = canon(f->when_changed);
    if (!params || !wc) {
        free(params);
        free(wc);
        OPENSSL_cleanse(key, sizeof key);
        return sm_error_set(err, SM_ERR_ARG, "schedule '%s': params or when_changed are not JSON", f->name);
    }
    const char *parts[] = {"scalemix-schedule-v1", f->name, f->pipeline, f->script_sha256, params, f->cron, f->tz, wc};
    size_t len = 0;
    for (size_t i = 0; i < SM_ARRAY_LEN(parts); i++) len += strlen(parts[i] ? parts[i] : "") + 1;
    char *msg = malloc(len), *p = msg;
    if (msg)
        for (size_t i = 0; i < SM_ARRAY_LEN(parts); i++) { /* NUL-terminated fields: no two inputs collide */
            size_t l = strlen(parts[i] ? parts[i] : "") + 1;
            memcpy(p, parts[i] ? parts[i] : "", l);
            p += l;
        }
    if (msg) sm_hmac_sha256_hex(key, sizeof key, msg, len, hex);
    OPENSSL_cleanse(key, sizeof key);
    free(msg);
    free(params);
    free(wc);
    return msg ? SM_OK : sm_error_set(err, SM_ERR_NOMEM, "out of memory");
}

/* Appends s to out as one single-quoted shell word. */
static void shell_word(char *out, size_t cap, const char *s) {
    size_t l = strlen(out);
    if (l + 2 >= cap) return;
    out[l++] = ' ';
    out[l++] = '\'';
    for (; *s && l + 5 < cap; s++) {
        if (*s == '\'') {
            memcpy(out + l, "'\\''", 4);
            l += 4;
        } else out[l++] = *s;
    }
    if (l + 1 < cap) out[l++] = '\'';
    out[l] = 0;
}

/* The `schedule add --replace` command that registers f again as the row has it (params and when_changed as
 * stored), for a schedule stored before tags existed. */
static void register_again(const sm_sched_auth_fields *f, char *out, size_t cap) {
    snprintf(out, cap, "scalemix schedule add %s --replace --cron", f->name);
    shell_word(out, cap, f->cron ? f->cron : "");
    snprintf(out + strlen(out), cap - strlen(out), " --tz");
    shell_word(out, cap, f->tz && *f->tz ? f->tz : "UTC");
    json_t *wc = json_loads(f->when_changed ? f->when_changed : "[]", 0, NULL), *v;
    size_t i;
    if (json_array_size(wc)) snprintf(out + strlen(out), cap - strlen(out), " --when-changed");
    json_array_foreach(wc, i, v) if (json_is_string(v)) shell_word(out, cap, json_string_value(v));
    json_decref(wc);
    shell_word(out, cap, f->pipeline ? f->pipeline : "");
    json_t *params = json_loads(f->params ? f->params : "{}", 0, NULL);
    const char *k;
    json_object_foreach(params, k, v) {
        char kv[1024];
        snprintf(kv, sizeof kv, "%s=%s", k, json_string_value(v) ? json_string_value(v) : "");
        snprintf(out + strlen(out), cap - strlen(out), " --param");
        shell_word(out, cap, kv);
    }
    json_decref(params);
}

int sm_sched_auth_check(const sm_sched_auth_fields *f, const char *tag, int check_script, sm_error *err) {
    if (!sm_sched_valid_name(f->name))
        return sm_error_set(err, SM_ERR_ARG, "refused: the schedule name read from the database is not a valid name "
                            "(1-64 characters of A-Z a-z 0-9 _ . -, not starting with . or -)");
    if (!tag || !*tag || !f->script_sha256 || !*f->script_sha256) {
        char cmd[2048];
        register_again(f, cmd, sizeof cmd);
        return sm_error_set(err, SM_ERR_ARG, "refused: schedule '%s' has no authentication tag (it was stored before "
                            "tags existed, or not by `scalemix schedule add`): if its pipeline and parameters are yours, "
                            "register it again, adding the --overlap/--catchup options `scalemix schedule list` shows "
                            "for it: %s", f->name, cmd);
    }
    char want[65];
    if (sm_sched_auth_tag(f, want, err)) return sm_error_wrap(err, "refused: schedule '%s'", f->name);
    if (strlen(tag) != 64 || CRYPTO_memcmp(want, tag, 64) != 0)
        return sm_error_set(err, SM_ERR_ARG, "refused: schedule '%s': its authentication tag does not verify (the row "
                            "was changed outside `scalemix schedule`, or registered with another workspace's key): "
                            "check it and register it again with `scalemix schedule add --replace`", f->name);
    if (!check_script) return SM_OK;
    char now[65];
    sm_error ferr = {0};
    if (sm_sha256_file(f->pipeline, now, NULL, &ferr))
        return sm_error_set(err, SM_ERR_IO, "refused: schedule '%s': its pipeline script cannot be read (%s)", f->name,
                            ferr.msg);
    if (strcmp(now, f->script_sha256))
        return sm_error_set(err, SM_ERR_ARG, "refused: schedule '%s': pipeline script %s changed since it was "
                            "registered (sha256 %.12s..., now %.12s...): review it and register it again with "
                            "`scalemix schedule add --replace`", f->name, f->pipeline, f->script_sha256, now);
    return SM_OK;
}
