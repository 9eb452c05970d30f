#!/usr/bin/env bash
# bench_vs_llmc.sh - CPU training throughput of scalemix beside llm.c's train_gpt2.c, same shapes, random
# init, one after the other in one run; prints the ratio per shape. Asserts nothing.
#
# usage: tests/bench/bench_vs_llmc.sh LLMC_DIR [threads] [steps]
#   LLMC_DIR  a checkout of https://github.com/karpathy/llm.c (kept outside this repository; never
#             committed). Its train_gpt2.c is built with -Ofast -march=native -fopenmp; a small harness
#             written to a temporary folder includes it (with TESTING defined, so its main is left out),
#             fills the parameters with random numbers and times forward, zero_grad, backward and update.
# Both programs run with the OpenMP wait policy scalemix picks for itself (OMP_WAIT_POLICY=passive) unless
# OMP_WAIT_POLICY or GOMP_SPINCOUNT is set (GOMP_SPINCOUNT=300000: libgomp's default spinning for both).
# Needs build/bench/bench_gpt2_cpu (make build/bench/bench_gpt2_cpu; BUILD=... for another build folder).
set -euo pipefail
if [[ $# -lt 1 || ! -f "$1/train_gpt2.c" ]]; then
    echo "usage: $0 LLMC_DIR [threads] [steps]   (LLMC_DIR: a checkout of karpathy/llm.c holding train_gpt2.c)" >&2
    exit 2
fi
llmc=$(cd "$1" && pwd)
threads=${2:-2}
steps=${3:-5}
root=$(cd "$(dirname "$0")/../.." && pwd)
bench="$root/${BUILD:-build}/bench/bench_gpt2_cpu"
[[ -x "$bench" ]] || { echo "$0: $bench not built (make ${BUILD:-build}/bench/bench_gpt2_cpu)" >&2; exit 2; }
[[ -n ${OMP_WAIT_POLICY+set} || -n ${GOMP_SPINCOUNT+set} ]] || export OMP_WAIT_POLICY=passive
tmp=$(mktemp -d /tmp/sm-llmc.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

cat > "$tmp/harness.c" <<'EOF'
/* Times llm.c's CPU training step at a given shape from random parameters. */
#define TESTING
#include "train_gpt2.c"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc != 8) { fprintf(stderr, "usage: harness L H C maxT T B steps\n"); return 2; }
    GPT2 model;
    memset(&model, 0, sizeof model);
    model.config.num_layers = atoi(argv[1]);
    model.config.num_heads = atoi(argv[2]);
    model.config.channels = atoi(argv[3]);
    model.config.max_seq_len = atoi(argv[4]);
    model.config.vocab_size = 50257;
    model.config.padded_vocab_size = 50304;
    int T = atoi(argv[5]), B = atoi(argv[6]), steps = atoi(argv[7]);
    fill_in_parameter_sizes(model.param_sizes, model.config);
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) model.num_parameters += model.param_sizes[i];
    model.params_memory = malloc_and_point_parameters(&model.params, model.param_sizes);
    uint64_t s = 42;
    for (size_t i = 0; i < model.num_parameters; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        model.params_memory[i] = ((float)((s >> 40) & 0xffffff) / 16777216.0f - 0.5f) * 0.04f;
    }
    for (size_t i = 0; i < model.param_sizes[2] + model.param_sizes[3]; i++) /* LayerNorm weights 1, biases 0 */
        model.params.ln1w[i] = i < model.param_sizes[2] ? 1.0f : 0.0f;
    for (size_t i = 0; i < model.param_sizes[8] + model.param_sizes[9]; i++)
        model.params.ln2w[i] = i < model.param_sizes[8] ? 1.0f : 0.0f;
    model.mean_loss = -1.0f;
    int *in = malloc(sizeof(int) * B * T), *tg = malloc(sizeof(int) * B * T);
    for (int i = 0; i < B * T; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        in[i] = (int)((s >> 33) % 50257);
    }
    for (int i = 0; i < B * T; i++) tg[i] = in[(i + 1) % (B * T)];
    double tot = 0;
    for (int it = 0; it <= steps; it++) {
        double t0 = now_s();
        gpt2_forward(&model, in, tg, B, T);
        gpt2_zero_grad(&model);
        gpt2_backward(&model);
        gpt2_update(&model, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f, it + 1);
        if (it > 0) tot += now_s() - t0; /* the first step allocates: warmup */
    }
    printf("llm.c L%s H%s C%s T%d B%d: step %.4f s, loss %.3f; tokens/s %.0f\n", argv[1], argv[2], argv[3], T, B,
           tot / steps, model.mean_loss, (double)B * T * steps / tot);
    return 0;
}
EOF
gcc -Ofast -march=native -fopenmp -DOMP -I"$llmc" -o "$tmp/harness" "$tmp/harness.c" -lm 2> "$tmp/cc.log" ||
    { cat "$tmp/cc.log" >&2; echo "$0: building llm.c's train_gpt2.c failed" >&2; exit 1; }

echo "scalemix vs llm.c, $threads threads, $steps timed steps after 1 warmup; OMP_WAIT_POLICY ${OMP_WAIT_POLICY:-(unset)}, GOMP_SPINCOUNT ${GOMP_SPINCOUNT:-(unset)}; load average $(cut -d' ' -f1-3 /proc/loadavg)"
# name L H C maxT T B (124M keeps GPT-2's 1024 positions)
shapes=("demo-proxy 2 2 64 64 64 8" "L4-C256 4 4 256 128 128 4" "gpt2-124M 12 12 768 1024 64 4")
printf '%-12s %14s %14s %7s\n' shape scalemix llm.c ratio
for s in "${shapes[@]}"; do
    read -r name L H C maxT T B <<< "$s"
    ours=$("$bench" --layers "$L" --heads "$H" --channels "$C" --max-seq "$maxT" --seq "$T" --batch "$B" \
        --steps "$steps" --threads "$threads" | grep 'tokens/s [0-9.]*$' | tail -1)
    theirs=$(OMP_NUM_THREADS=$threads "$tmp/harness" "$L" "$H" "$C" "$maxT" "$T" "$B" "$steps" | tail -1)
    echo "  $ours" >&2
    echo "  $theirs" >&2
    a=${ours##* }
    b=${theirs##* }
    printf '%-12s %14s %14s %6.2fx\n' "$name" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN { print a / b }')"
done
