/* sm_cli_exec.c - the executor options of `scalemix run` and `scalemix plan` (sm_exec_slurm.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm_exec_slurm.h"

/* "4G", "512M", "2048" (MiB, as Slurm reads a bare number), "1T", "100K" -> bytes; 0 when malformed. */
static uint64_t mem_arg(const char *s) {
    char *end;
    if (!*s || strspn(s, "0123456789") == 0) return 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = 20;
    if (*end) {
        const char *units = "KMGT", *u = strchr(units, end[0] & ~0x20);
        if (!u || end[1]) return 0;
        shift = 10 * (unsigned)(u - units + 1);
    }
    if (v == 0 || v > (UINT64_MAX >> shift)) return 0;
    return (uint64_t)v << shift;
}

/* The value of option name at argv[*i] (--name VALUE or --name=VALUE), advancing *i; NULL if argv[*i] is
 * not that option; "" and err set when its value is missing. */
static const char *opt_value(int argc, char **argv, int *i, const char *name, int *missing) {
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n)) return NULL;
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    if (argv[*i][n]) return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return "";
    }
    return argv[++*i];
}

int sm_exec_cli_take(int argc, char **argv, sm_exec_cli *c, sm_error *err) {
    memset(c, 0, sizeof *c);
    c->slurm.slurm.extra = c->extra;
    int w = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) { /* the rest is not ours */
            while (i < argc) argv[w++] = argv[i++];
            break;
        }
        int missing = 0;
        const char *v;
        const char *opt = argv[i];
        if ((v = opt_value(argc, argv, &i, "--executor", &missing))) {
            if (strcmp(v, "local") && strcmp(v, "slurm"))
                return sm_error_set(err, SM_ERR_ARG, "--executor wants local or slurm, got '%s'", v), -1;
            c->executor = strcmp(v, "local") ? v : NULL;
        } else if ((v = opt_value(argc, argv, &i, "--slurm-partition", &missing))) c->slurm.slurm.partition = v;
        else if ((v = opt_value(argc, argv, &i, "--slurm-account", &missing))) c->slurm.slurm.account = v;
        else if ((v = opt_value(argc, argv, &i, "--slurm-time", &missing))) c->slurm.slurm.time_limit = v;
        else if ((v = opt_value(argc, argv, &i, "--slurm-mem", &missing))) {
            if (!missing && !(c->slurm.mem_bytes = mem_arg(v)))
                return sm_error_set(err, SM_ERR_ARG, "--slurm-mem wants a size such as 4G, 512M or 2048 (MiB), got '%s'", v), -1;
        } else if ((v = opt_value(argc, argv, &i, "--slurm-option", &missing))) {
            if (c->slurm.slurm.n_extra == SM_ARRAY_LEN(c->extra))
                return sm_error_set(err, SM_ERR_ARG, "at most %zu --slurm-option", SM_ARRAY_LEN(c->extra)), -1;
            if (!missing && !*v) return sm_error_set(err, SM_ERR_ARG, "--slurm-option wants an sbatch option, got ''"), -1;
            c->extra[c->slurm.slurm.n_extra++] = v;
        } else if (!strcmp(argv[i], "--slurm-requeue")) c->slurm.requeue = 1;
        else {
            argv[w++] = argv[i];
            continue;
        }
        int optlen = (int)strcspn(opt, "=");
        if (missing) return sm_error_set(err, SM_ERR_ARG, "%.*s needs a value", optlen, opt), -1;
        if (v && !*v) return sm_error_set(err, SM_ERR_ARG, "%.*s wants a value, got ''", optlen, opt), -1;
    }
    argv[w] = NULL;
    return w;
}

int sm_exec_cli_add(sm_engine *e, const sm_exec_cli *c, sm_error *err) {
    sm_executor *x;
    int rc = sm_exec_slurm_create(&x, &c->slurm, err);
    if (rc != SM_OK) return rc;
    if ((rc = sm_engine_add_executor(e, x, err)) != SM_OK) x->free(x);
    return rc;
}
