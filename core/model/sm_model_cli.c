/* sm_model_cli.c - `scalemix eval`: the mean next-token cross-entropy of a checkpoint on a shard. */
#include "../sm_commands.h"
#include "sm_gpt2.h"
#include "sm_shard.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void eval_usage(FILE *f) {
    fprintf(f, "usage: scalemix eval --model CKPT --data SHARD [--batch B] [--seq T] [--device cpu|cuda|auto] [--threads N]\n"
               "Prints the mean cross-entropy (nats per token) of the llm.c checkpoint CKPT on the first B*T+1 tokens\n"
               "of the token shard SHARD (defaults B=4, T=64, device auto).\n");
}

static int parse_pos_int(const char *s, const char *what, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < 1 || v > 1 << 20) {
        fprintf(stderr, "eval: %s must be a positive integer (got '%s')\n", what, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int sm_cmd_eval(int argc, char **argv) {
    static const struct option lo[] = {{"model", required_argument, 0, 'm'}, {"data", required_argument, 0, 'd'},
                                       {"batch", required_argument, 0, 'B'}, {"seq", required_argument, 0, 'T'},
                                       {"device", required_argument, 0, 'D'}, {"threads", required_argument, 0, 'j'},
                                       {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *model = NULL, *data = NULL, *dev = "auto";
    int B = 4, T = 64, threads = 0;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+", lo, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'd': data = optarg; break;
        case 'B': if (parse_pos_int(optarg, "--batch", &B)) return 2; break;
        case 'T': if (parse_pos_int(optarg, "--seq", &T)) return 2; break;
        case 'j': if (parse_pos_int(optarg, "--threads", &threads)) return 2; break;
        case 'D': dev = optarg; break;
        case 'h': eval_usage(stdout); return 0;
        default:
            fprintf(stderr, "eval: unknown or incomplete option '%s'\n", argv[optind - 1]);
            eval_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "eval: unexpected argument '%s'\n", argv[optind]);
        eval_usage(stderr);
        return 2;
    }
    if (!model || !data) {
        fprintf(stderr, "eval: --model and --data are required\n");
        eval_usage(stderr);
        return 2;
    }
    sm_error err = {0};
    sm_gpt2_opts o = {.dtype = SM_DTYPE_FP32, .threads = threads, .max_B = B, .max_T = T};
    if (sm_device_parse(dev, &o.device, &err)) {
        fprintf(stderr, "eval: %s\n", err.msg);
        return 2;
    }
    sm_shard sh;
    if (sm_shard_open(&sh, data, &err)) {
        fprintf(stderr, "eval: %s\n", err.msg);
        return 1;
    }
    size_t n = (size_t)B * T;
    if (sh.ntokens < n + 1) {
        fprintf(stderr, "eval: %s holds %llu tokens; --batch %d --seq %d needs %zu (lower them)\n", data,
                (unsigned long long)sh.ntokens, B, T, n + 1);
        sm_shard_close(&sh);
        return 1;
    }
    sm_gpt2 *m = NULL;
    int rc = sm_gpt2_load(&m, model, &o, &err);
    if (!rc && T > sm_gpt2_get_config(m)->max_seq_len)
        rc = sm_error_set(&err, SM_ERR_ARG, "--seq %d exceeds the model's context of %d", T, sm_gpt2_get_config(m)->max_seq_len);
    int32_t *in = NULL, *tg = NULL;
    float loss = 0.0f;
    if (!rc) {
        in = malloc(n * sizeof(int32_t));
        tg = malloc(n * sizeof(int32_t));
        if (!in || !tg) rc = sm_error_set(&err, SM_ERR_NOMEM, "out of memory");
    }
    if (!rc) {
        for (size_t i = 0; i < n; i++) {
            in[i] = (int32_t)sm_shard_token(&sh, i);
            tg[i] = (int32_t)sm_shard_token(&sh, i + 1);
        }
        rc = sm_gpt2_loss(m, in, tg, B, T, &loss, &err);
    }
    if (rc) fprintf(stderr, "eval: %s\n", err.msg);
    else printf("%.6f\n", loss);
    free(in);
    free(tg);
    sm_gpt2_free(m);
    sm_shard_close(&sh);
    return rc ? 1 : 0;
}
