/* sm_cli_run.c - `scalemix run` and `scalemix plan`. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "db/sm_db.h"
#include "model/sm_gpt2.h"
#include "sm_commands.h"
#include "sm_display.h"
#include "sm_engine.h"
#include "sm_exec_slurm.h"
#include "sm_lua.h"

static const char run_usage[] =
    "usage: scalemix run FILE.lua [options]\n"
    "       scalemix plan FILE.lua [options]   (dry run: which stages would be reused or run, and why)\n"
    "\n"
    "A pipeline script is code, like a Makefile: plan runs it too (only its stages are not run), so whatever\n"
    "it does itself, os.execute or io.popen included, happens. Run or plan only scripts you trust.\n"
    "\n"
    "  --param KEY=VALUE     a script parameter (repeatable); the script reads params.KEY. Numbers and\n"
    "                        true/false are converted; anything else is a string\n"
    "  --db DSN              the lineage database (libpq connection string); 'none' for no database.\n"
    "                        Default: $SCALEMIX_DB, the libpq environment, else an embedded server\n"
    "  --workspace DIR       workspace folder (default $SCALEMIX_HOME or ./.scalemix)\n"
    "  --parallel N          most stages running at once (default: CPU cores)\n"
    "  --threads N           CPU threads shared by running stages (default: CPU cores)\n"
    "  --gpu ID              the GPU that GPU stages use: an index as nvidia-smi numbers them, or a GPU-/MIG- UUID\n"
    "                        (sets CUDA_VISIBLE_DEVICES for the run and its stage processes; default: as set,\n"
    "                        else the first GPU)\n"
    "  --log auto|plain|json output style (default auto: live lines on a terminal, plain lines otherwise)\n"
    "  --quiet, --verbose    less or more output (--verbose adds Lua tracebacks)\n"
    "  --events FILE         also append every lineage event as a JSON line to FILE\n"
    SM_EXEC_CLI_USAGE
    "  --trigger T, --nominal-time ISO8601, --schedule NAME, --pipeline NAME\n"
    "                        how the run was started (set by the scheduling daemon)\n"
    "  --expect-sha256 HEX   run the script only if its bytes hash to HEX (set by the scheduling daemon)\n"
    "\n"
    "exit status: 0 success, 1 the pipeline failed or was cancelled, 2 usage error\n";

/* The JSON value of a --param VALUE, or NULL with why filled: a number JSON cannot carry (nan, inf, out of
 * range) or text that is not UTF-8 is refused rather than dropped. */
static json_t *param_value(const char *v, const char **why) {
    if (!strcmp(v, "true")) return json_true();
    if (!strcmp(v, "false")) return json_false();
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (*v && !*end) {
        if (!isfinite(d) || errno == ERANGE) {
            *why = "is not a finite number that fits a double (nan, inf and out-of-range values have no JSON form)";
            return NULL;
        }
        if (d == (double)(long long)d && !strpbrk(v, ".eEpP")) return json_integer((json_int_t)d);
        return json_real(d);
    }
    json_t *s = json_string(v);
    if (!s) *why = "is not valid UTF-8";
    return s;
}

/* A positive count for --parallel / --threads: digits only; 0 on anything else. */
static int count_arg(const char *s) {
    if (!*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 6) return 0;
    return atoi(s);
}

/* One device as CUDA_VISIBLE_DEVICES names it: a decimal index, or a UUID starting GPU- or MIG-. */
static int gpu_id_valid(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 96) return 0;
    if (strspn(s, "0123456789") == n) return 1;
    if (strncmp(s, "GPU-", 4) && strncmp(s, "MIG-", 4)) return 0;
    return n > 4 && strspn(s + 4, "0123456789abcdefABCDEF-/") == n - 4;
}

/* The engine's lineage sink: the database --db names (resolved as sm_db_resolve does; "none": no database),
 * after marking earlier runs whose process died (SIGKILL, crash) abandoned. */
static int open_lineage(void *arg, uv_loop_t *loop, const char *workspace, sm_sink **sink, char **dsn, sm_error *err) {
    int rc = sm_db_resolve(workspace, arg, dsn, err);
    if (rc != SM_OK || !*dsn) return rc;
    if ((rc = sm_pg_sink_open(loop, *dsn, workspace, sink, err)) != SM_OK) return rc;
    int gone = 0;
    sm_error aerr = {0};
    if (sm_db_mark_abandoned(workspace, *dsn, &gone, &aerr) != SM_OK) sm_display_line(SM_LOG_DEBUG, NULL, "%s", aerr.msg);
    else if (gone) sm_display_line(SM_LOG_INFO, NULL, "%d earlier run(s) whose process is gone marked abandoned", gone);
    return SM_OK;
}

/* Device memory GPU stages may share: $SCALEMIX_GPU_MEMORY (bytes) when set, else the free memory of the
 * current device as the CUDA backend reports it, else 0 (no GPU). */
static uint64_t probe_gpu(void *arg) {
    (void)arg;
    const char *env = getenv("SCALEMIX_GPU_MEMORY");
    if (env && *env) return strtoull(env, NULL, 10);
    uint64_t free_bytes = 0;
    sm_gpt2_cuda_devices(&free_bytes);
    return free_bytes;
}

/* Records the run's end (rc: how the script ended) and says so. */
static void conclude(sm_engine *e, int rc, const char *msg) {
    int plan = sm_engine_planning(e);
    int status = rc == SM_OK ? SM_STAGE_SUCCEEDED : rc == SM_ERR_CANCELLED ? SM_STAGE_CANCELLED : SM_STAGE_FAILED;
    sm_engine_finish(e, status, rc == SM_OK ? NULL : msg);
    if (rc != SM_OK) {
        fprintf(stderr, "scalemix: %s%s\n", rc == SM_ERR_CANCELLED ? "cancelled: " : "", msg);
        if (!plan) fprintf(stderr, "scalemix: run %s %s\n", sm_engine_run_id(e), rc == SM_ERR_CANCELLED ? "cancelled" : "failed");
    } else if (!plan) {
        sm_display_line(SM_LOG_INFO, NULL, "run %s succeeded", sm_engine_run_id(e));
    }
}

static int run_or_plan(int argc, char **argv, int plan) {
    static const struct option longopts[] = {
        {"param", required_argument, 0, 'p'},   {"db", required_argument, 0, 'd'},       {"workspace", required_argument, 0, 'w'},
        {"parallel", required_argument, 0, 'j'}, {"threads", required_argument, 0, 't'}, {"log", required_argument, 0, 'l'},
        {"quiet", no_argument, 0, 'q'},          {"verbose", no_argument, 0, 'v'},       {"events", required_argument, 0, 'e'},
        {"trigger", required_argument, 0, 'T'},  {"nominal-time", required_argument, 0, 'N'},
        {"schedule", required_argument, 0, 'S'}, {"pipeline", required_argument, 0, 'P'}, {"help", no_argument, 0, 'h'},
        {"gpu", required_argument, 0, 'g'},      {"expect-sha256", required_argument, 0, 'X'},
        {0, 0, 0, 0}};
    const char *expect_sha256 = NULL;
    sm_engine_opts o = {.plan = plan, .open_sink = open_lineage, .gpu_probe = probe_gpu};
    int log_mode = SM_DISPLAY_AUTO, verbosity = 1, c;
    sm_exec_cli xc;
    sm_error err = {0};
    if ((argc = sm_exec_cli_take(argc, argv, &xc, &err)) < 0) {
        fprintf(stderr, "scalemix %s: %s\n", argv[0], err.msg);
        return 2;
    }
    o.executor = xc.executor;
    json_t *params = json_object();
    optind = 0; /* glibc: 0 fully resets getopt, which a caller may have used already (the daemon's child) */
    opterr = 0;
    while ((c = getopt_long(argc, argv, "hqv", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': {
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg) {
                fprintf(stderr, "scalemix %s: --param wants KEY=VALUE, got '%s'\n", argv[0], optarg);
                json_decref(params);
                return 2;
            }
            char key[256];
            const char *why = NULL;
            if ((size_t)(eq - optarg) >= sizeof key) why = "has a key longer than 255 bytes";
            snprintf(key, sizeof key, "%.*s", (int)(eq - optarg), optarg);
            json_t *val = why ? NULL : param_value(eq + 1, &why);
            if (val && json_object_set_new(params, key, val) != 0) why = "has a key that is not valid UTF-8";
            if (why) {
                fprintf(stderr, "scalemix %s: --param %s %s\n", argv[0], optarg, why);
                json_decref(params);
                return 2;
            }
            break;
        }
        case 'd': o.sink_arg = optarg; break;
        case 'w': o.workspace = optarg; break;
        case 'j':
        case 't':
            if (!(*(c == 'j' ? &o.parallel : &o.threads) = count_arg(optarg))) {
                fprintf(stderr, "scalemix %s: --%s wants a positive whole number, got '%s'\n", argv[0],
                        c == 'j' ? "parallel" : "threads", optarg);
                json_decref(params);
                return 2;
            }
            break;
        case 'l':
            if (!strcmp(optarg, "json")) log_mode = SM_DISPLAY_JSON;
            else if (!strcmp(optarg, "plain")) log_mode = SM_DISPLAY_PLAIN;
            else if (!strcmp(optarg, "auto")) log_mode = SM_DISPLAY_AUTO;
            else {
                fprintf(stderr, "scalemix %s: --log wants auto, plain or json, got '%s'\n", argv[0], optarg);
                json_decref(params);
                return 2;
            }
            break;
        case 'q': verbosity = 0; break;
        case 'v': verbosity = 2; break;
        case 'e': o.events_path = optarg; break;
        case 'T': o.trigger = optarg; break;
        case 'N': o.nominal_time = optarg; break;
        case 'S': o.schedule = optarg; break;
        case 'P': o.pipeline = optarg; break;
        case 'X': expect_sha256 = optarg; break;
        case 'g':
            /* before the engine exists: the CUDA runtime reads the variable once, at its first call */
            if (!gpu_id_valid(optarg)) {
                fprintf(stderr, "scalemix %s: --gpu wants one GPU, an index (0, 1, ...) or a GPU-/MIG- UUID, got '%s'\n",
                        argv[0], optarg);
                json_decref(params);
                return 2;
            }
            setenv("CUDA_VISIBLE_DEVICES", optarg, 1);
            break;
        case 'h': fputs(run_usage, stdout); json_decref(params); return 0;
        default:
            fprintf(stderr, "scalemix %s: unknown or incomplete option '%s'\n%s", argv[0], argv[optind - 1], run_usage);
            json_decref(params);
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "scalemix %s: %s\n%s", argv[0], optind >= argc ? "which script? give FILE.lua" : "give exactly one script",
                run_usage);
        json_decref(params);
        return 2;
    }
    const char *script = argv[optind];
    struct stat st;
    if (stat(script, &st) != 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "scalemix %s: cannot read script %s: %s\n", argv[0], script, errno ? strerror(errno) : "not a file");
        json_decref(params);
        return 2;
    }
    sm_display_init(log_mode, verbosity);
    char sha[65];
    if (sm_sha256_file(script, sha, NULL, &err) != SM_OK) {
        fprintf(stderr, "scalemix %s: %s\n", argv[0], err.msg);
        json_decref(params);
        return 2;
    }
    if (expect_sha256 && strcmp(sha, expect_sha256)) { /* the run loads only the bytes of this digest (sm_lua_run) */
        fprintf(stderr, "scalemix %s: refused: script %s has sha256 %s, not the %s it was started for; nothing ran\n",
                argv[0], script, sha, expect_sha256);
        json_decref(params);
        return 1;
    }
    o.script_path = script;
    o.script_sha256 = sha;
    o.params = params;
    if (!o.parallel && xc.executor) o.parallel = SM_EXEC_SLURM_PARALLEL;
    sm_engine *e;
    if (sm_engine_create(&e, &o, &err) != SM_OK) {
        fprintf(stderr, "scalemix %s: %s\n", argv[0], err.msg);
        json_decref(params);
        return err.code == SM_ERR_ARG ? 2 : 1;
    }
    if (sm_exec_cli_add(e, &xc, &err) != SM_OK) {
        fprintf(stderr, "scalemix %s: %s\n", argv[0], err.msg);
        sm_engine_free(e);
        json_decref(params);
        return 1;
    }
    if (!plan) sm_display_line(SM_LOG_INFO, NULL, "run %s of %s (workspace %s%s%s)", sm_engine_run_id(e), script,
                               sm_engine_workspace(e)->root, sm_engine_dsn(e) ? "" : ", no database", "");
    int script_exit = -1;
    int rc = sm_lua_run(e, script, sha, params, &script_exit, &err);
    conclude(e, rc, err.msg);
    sm_engine_free(e);
    json_decref(params);
    if (script_exit >= 0) return script_exit; /* os.exit(code): the script's own exit status */
    return rc == SM_OK ? 0 : rc == SM_ERR_ARG ? 2 : 1;
}

int sm_cmd_run(int argc, char **argv) { return run_or_plan(argc, argv, 0); }
int sm_cmd_plan(int argc, char **argv) { return run_or_plan(argc, argv, 1); }
