// emu_main.cpp - runs the CUDA backend's code (kernels, memory plan, forward/backward orchestration)
// under the host emulation against the CPU backend: loss, per-position losses and every gradient tensor,
// fp32 and bf16, both head sizes, ragged T, then AdamW and the gradient norm. What it cannot check:
// real GPU scheduling, cuBLASLt itself, and performance.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>
extern "C" {
#include "model/sm_gpt2.h"
}
#include "../gpt2_parity.h"
extern "C" const sm_gpt2_backend_ops *sm_gpt2_cuda_backend(void);

static int failures;

// Small shapes: the emulation runs every CUDA thread of every block, one after another.
static void parity(sm_dtype dt, int NH, int B, int T, double ltol, double gtol) {
    sm_gpt2_config c = {T > 96 ? T : 96, 200, 256, 2, NH, 64};
    size_t s[16];
    size_t n = sm_gpt2_param_sizes(&c, s);
    std::vector<float> p(n), gc(n), gg(n), pc(n), pg(n), lc(B * T), lg(B * T);
    fill_random_params(&c, p.data());
    std::vector<int32_t> in(B * T), tg(B * T);
    for (int i = 0; i < B * T; i++) { in[i] = (int32_t)(urand() * 200); tg[i] = (int32_t)(urand() * 200); }
    in[0] = in[1] = in[B * T - 1]; // repeated tokens: the grouped embedding backward
    const sm_gpt2_backend_ops *cpu = sm_gpt2_cpu_backend(), *cu = sm_gpt2_cuda_backend();
    sm_gpt2_backend *bc = NULL, *bg = NULL;
    sm_error e = {};
    if (cpu->create(&bc, &c, p.data(), SM_DTYPE_FP32, B, T, 1, &e) || cu->create(&bg, &c, p.data(), dt, B, T, 0, &e)) {
        printf("FAIL: create: %s\n", e.msg);
        failures++;
        return;
    }
    float l1, l2;
    cpu->forward(bc, in.data(), tg.data(), B, T, &l1, lc.data(), &e);
    if (cu->forward(bg, in.data(), tg.data(), B, T, &l2, lg.data(), &e)) { printf("FAIL: forward %s\n", e.msg); failures++; return; }
    double wpos = 0;
    for (int i = 0; i < B * T; i++) wpos = fmax(wpos, fabs(lg[i] - lc[i]) / fabs(lc[i]));
    int ok = fabs(l2 - l1) <= ltol * fabs(l1) && wpos <= 10 * ltol;
    printf("%s: %s HS=%d B=%d T=%d loss cpu %.7f emu %.7f rel %.1e, worst position %.1e\n", ok ? "PASS" : "FAIL",
           dt ? "bf16" : "fp32", 64 / NH, B, T, l1, l2, fabs(l2 - l1) / l1, wpos);
    failures += !ok;
    cpu->backward(bc, 0.5f, &e);
    cu->backward(bg, 0.5f, &e);
    cpu->get_grads(bc, gc.data(), &e);
    cu->get_grads(bg, gg.data(), &e);
    double worst = worst_tensor_error(&c, gg.data(), gc.data(), "grads");
    ok = worst <= gtol;
    printf("%s: %s HS=%d gradients, worst tensor %.2e (tol %.0e)\n", ok ? "PASS" : "FAIL", dt ? "bf16" : "fp32",
           64 / NH, worst, gtol);
    failures += !ok;
    double nc = 0, ng = 0;
    cpu->grad_norm(bc, &nc, &e);
    cu->grad_norm(bg, &ng, &e);
    cpu->adamw(bc, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.8f, 1, &e);
    cu->adamw(bg, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.8f, 1, &e);
    cpu->get_params(bc, pc.data(), &e);
    cu->get_params(bg, pg.data(), &e);
    // Adam's first step moves each weight by about lr * sign(g): compare the moves, not the weights.
    size_t agree = 0, moved = 0;
    for (size_t i = 0; i < n; i++) {
        double dc = pc[i] - p[i], dg = pg[i] - p[i];
        if (fabs(dc) > 1e-4) { moved++; agree += fabs(dg - dc) <= 0.05 * fabs(dc); }
    }
    ok = fabs(nc - ng) <= (dt ? 3e-2 : 1e-4) * nc && agree >= (dt ? 0.9 : 0.999) * moved;
    printf("%s: %s grad norm cpu %.6g emu %.6g; AdamW moves agreeing within 5%%: %zu of %zu\n", ok ? "PASS" : "FAIL",
           dt ? "bf16" : "fp32", nc, ng, agree, moved);
    failures += !ok;
    // Every bit the emulated GPU produced, for run_emu.sh to compare across thread and block orders.
    uint64_t h = 1469598103934665603ull;
    auto mix = [&h](const void *d, size_t bytes) {
        for (size_t i = 0; i < bytes; i++) h = (h ^ ((const unsigned char *)d)[i]) * 1099511628211ull;
    };
    mix(&l2, sizeof l2);
    mix(lg.data(), lg.size() * sizeof(float));
    mix(gg.data(), gg.size() * sizeof(float));
    mix(&ng, sizeof ng);
    mix(pg.data(), pg.size() * sizeof(float));
    printf("digest: %s HS=%d B=%d T=%d %016llx\n", dt ? "bf16" : "fp32", 64 / NH, B, T, (unsigned long long)h);
    cpu->destroy(bc);
    cu->destroy(bg);
}

int main() {
    setvbuf(stdout, NULL, _IONBF, 0);
    parity(SM_DTYPE_FP32, 1, 2, 40, 1e-4, 1e-4); // head size 64, one ragged tile
    parity(SM_DTYPE_FP32, 2, 1, 90, 1e-4, 1e-4); // head size 32, two tiles
    printf("bf16, attention on CUDA cores (SM_CUDA_TC_ATTENTION=0):\n");
    setenv("SM_CUDA_TC_ATTENTION", "0", 1);
    parity(SM_DTYPE_BF16, 1, 2, 40, 1e-2, 5e-2);
    printf("bf16, attention on tensor cores (WMMA):\n");
    unsetenv("SM_CUDA_TC_ATTENTION");
    parity(SM_DTYPE_BF16, 1, 2, 40, 1e-2, 5e-2);
    parity(SM_DTYPE_BF16, 2, 1, 90, 1e-2, 5e-2);
    parity(SM_DTYPE_BF16, 1, 1, 200, 1e-2, 5e-2); // four tiles, the last ragged
    printf("%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
