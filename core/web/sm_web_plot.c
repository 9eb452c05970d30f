/* sm_web_plot.c - the AutoScale figures are drawn by the plot stage itself (plugins/plot.c), called in
 * process with a minimal host whose output is an anonymous memory file: the page and a pipeline's plot
 * stage share one code path, and nothing is written to disk or to the store. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sm_plugins.h"
#include "web/sm_web_int.h"

struct sm_host {
    int fd;
    char *svg;
    char log[256];
};

static void h_log(sm_host *h, int level, const char *fmt, ...) {
    if (level > SM_LOG_WARN) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->log, sizeof h->log, fmt, ap);
    va_end(ap);
}
static void h_progress(sm_host *h, double done, double total, const char *unit) { (void)h, (void)done, (void)total, (void)unit; }
static int h_cancelled(sm_host *h) { (void)h; return 0; }
static int h_threads(sm_host *h) { (void)h; return 1; }
static const char *h_scratch(sm_host *h) { (void)h; return NULL; }
static int h_result(sm_host *h, const char *json) { (void)h, (void)json; return SM_OK; }

static int h_output_path(sm_host *h, const char *name, char *out, size_t cap) {
    (void)name;
    if (h->fd >= 0) return SM_ERR_ARG; /* one figure per call */
    h->fd = memfd_create("scalemix-web-plot", MFD_CLOEXEC);
    if (h->fd < 0) return SM_ERR_IO;
    snprintf(out, cap, "/proc/self/fd/%d", h->fd);
    return SM_OK;
}

static int h_output_commit(sm_host *h, const char *name, const char *tmp, const char *kind, const char *meta, char digest[65]) {
    (void)name, (void)tmp, (void)kind, (void)meta;
    struct stat st;
    if (h->fd < 0 || fstat(h->fd, &st)) return SM_ERR_IO;
    h->svg = malloc((size_t)st.st_size + 1);
    if (!h->svg) return SM_ERR_NOMEM;
    ssize_t got = pread(h->fd, h->svg, (size_t)st.st_size, 0);
    if (got != st.st_size) return SM_ERR_IO;
    h->svg[got] = 0;
    digest[0] = 0;
    return SM_OK;
}

char *sm_wplot(void *plot, const char *kind, const char *title, json_t *data, sm_error *err) {
    const sm_plugin *p = plot;
    sm_host_api api = {
        .struct_size = sizeof api, .abi_major = SM_PLUGIN_ABI_MAJOR, .abi_minor = SM_PLUGIN_ABI_MINOR,
        .log = h_log, .progress = h_progress, .cancelled = h_cancelled, .threads = h_threads,
        .output_path = h_output_path, .output_commit = h_output_commit, .scratch_dir = h_scratch, .result = h_result,
    };
    json_t *params = json_pack("{s:s,s:O}", "kind", kind, "data", data), *canon = NULL;
    if (title) json_object_set_new(params, "title", json_string(title));
    sm_host h = {.fd = -1};
    char *pj = NULL;
    int rc = params ? sm_plugin_check_params(p, params, &canon, err) : sm_error_set(err, SM_ERR_NOMEM, "out of memory");
    if (!rc && !(pj = json_dumps(canon, JSON_COMPACT))) rc = sm_error_set(err, SM_ERR_NOMEM, "out of memory");
    if (!rc) rc = p->desc->run(&api, &h, pj, "{}", err);
    if (!rc && !h.svg) rc = sm_error_set(err, SM_ERR_PLUGIN, "plot drew nothing%s%s", h.log[0] ? ": " : "", h.log);
    free(pj);
    json_decref(params);
    json_decref(canon);
    if (h.fd >= 0) close(h.fd);
    if (rc) { free(h.svg); return NULL; }
    return h.svg;
}
