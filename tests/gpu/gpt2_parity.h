/* gpt2_parity.h - what the CUDA backend's comparisons with the CPU backend share (tests/gpu/test_gpt2_cuda.c
 * on a GPU, tests/gpu/emu/emu_main.cpp under the host emulation): the random stream, random weights and the
 * per-tensor relative error. Static functions, C and C++. */
#ifndef GPT2_PARITY_H
#define GPT2_PARITY_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include "model/sm_gpt2_backend.h"

static uint64_t rs = 0x9E3779B97F4A7C15ULL;
static double urand(void) {
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    return ((rs >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
static double nrand(void) { return sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand()); }

/* Random weights: matrices N(0, 0.02), biases N(0, 0.01) and LayerNorm weights 1 + N(0, 0.1), so that every
 * parameter path (biases, LayerNorm affine terms) carries signal; qkv weights N(0, 0.1), so that attention
 * is far from uniform and its gradient paths (the diagonal, the masks) weigh in the comparison. */
static void fill_random_params(const sm_gpt2_config *c, float *p) {
    size_t s[16];
    sm_gpt2_param_sizes(c, s);
    size_t o = 0;
    for (int t = 0; t < 16; t++) {
        int lnw = t == 2 || t == 8 || t == 14, bias = t == 3 || t == 5 || t == 7 || t == 9 || t == 11 || t == 13 || t == 15;
        for (size_t i = 0; i < s[t]; i++)
            p[o + i] = (float)(lnw ? 1.0 + 0.1 * nrand() : bias ? 0.01 * nrand() : (t == 4 ? 0.1 : 0.02) * nrand());
        o += s[t];
    }
}

static const char *const tensor_name[16] = {"wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
                                      "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb"};

/* ||a - b|| / ||b|| over reps blocks of len floats, stride apart, from off. */
static double rel_l2(const float *a, const float *b, size_t off, size_t len, size_t stride, size_t reps) {
    double d = 0, r = 0;
    for (size_t k = 0; k < reps; k++)
        for (size_t i = off + k * stride; i < off + k * stride + len; i++) {
            double x = (double)a[i] - b[i];
            d += x * x;
            r += (double)b[i] * b[i];
        }
    return sqrt(d) / (sqrt(r) > 1e-30 ? sqrt(r) : 1e-30);
}

/* max over tensors of ||a - b|| / ||b||, printing each tensor's figure (NaN counts as infinitely bad). */
static double worst_tensor_error(const sm_gpt2_config *c, const float *a, const float *b, const char *what) {
    size_t s[16];
    sm_gpt2_param_sizes(c, s);
    size_t o = 0;
    double worst = 0.0;
    printf("  %s:", what);
    for (int t = 0; t < 16; t++) {
        double rel = rel_l2(a, b, o, s[t], 0, 1);
        printf(" %s %.1e", tensor_name[t], rel);
        if (rel > worst || rel != rel) worst = rel != rel ? INFINITY : rel;
        o += s[t];
    }
    /* q, k and v rows of qkvw apart: an error in one attention backward path shows here first */
    size_t C = (size_t)c->channels, q0 = s[0] + s[1] + s[2] + s[3];
    for (int part = 0; part < 3; part++) {
        double rel = rel_l2(a, b, q0 + (size_t)part * C * C, C * C, 3 * C * C, (size_t)c->num_layers);
        printf(" qkvw[%c] %.1e", "qkv"[part], rel);
        if (rel > worst || rel != rel) worst = rel != rel ? INFINITY : rel;
    }
    printf("\n");
    return worst;
}

#endif
