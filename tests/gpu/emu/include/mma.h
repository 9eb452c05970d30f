// Host emulation of the WMMA API (tests/gpu/emu): every lane holds the whole 16x16 tile and computes the
// product redundantly; stores are done by lane 0 and followed by a warp barrier. Same results as the
// tensor cores up to fp32 summation order.
#pragma once
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <type_traits>
#include "cuda_bf16.h"
#include "cuda_runtime.h"
namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
template <typename Use, int M, int N, int K, typename T, typename Layout = void> struct fragment { float v[16][16]; };
inline float emu_f(float x) { return x; }
inline float emu_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename Use, int M, int N, int K, typename T, typename L>
inline void fill_fragment(fragment<Use, M, N, K, T, L> &f, float x) {
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++) f.v[r][c] = x;
}
// The GPU's rules for load/store_matrix_sync: a 256-bit aligned pointer and a stride of a multiple of 16 bytes;
// a breach is a misaligned-address fault there, so it stops the emulation here.
inline void emu_check_tile(const void *p, unsigned ldm, size_t esize, const char *what) {
    if ((uintptr_t)p % 32 || (ldm * esize) % 16) {
        fprintf(stderr, "FAIL: wmma::%s: pointer %p (%zu bytes past 32-byte alignment) or stride %u x %zu bytes "
                "breaks WMMA's alignment rules\n", what, p, (size_t)((uintptr_t)p % 32), ldm, esize);
        abort();
    }
}
template <typename Use, int M, int N, int K, typename T, typename L>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L> &f, const T *p, unsigned ldm) {
    emu_check_tile(p, ldm, sizeof(T), "load_matrix_sync");
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++)
            f.v[r][c] = emu_f(std::is_same<L, row_major>::value ? p[r * ldm + c] : p[c * ldm + r]);
}
template <typename TA, typename LA, typename TB, typename LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float> &d, const fragment<matrix_a, 16, 16, 16, TA, LA> &a,
                     const fragment<matrix_b, 16, 16, 16, TB, LB> &b, const fragment<accumulator, 16, 16, 16, float> &c) {
    fragment<accumulator, 16, 16, 16, float> t;
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) {
            float s = c.v[i][j];
            for (int k = 0; k < 16; k++) s += a.v[i][k] * b.v[k][j];
            t.v[i][j] = s;
        }
    d = t;
}
inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f, unsigned ldm, layout_t l) {
    emu_check_tile(p, ldm, sizeof(float), "store_matrix_sync");
    if (threadIdx.x % 32 == 0)
        for (int r = 0; r < 16; r++)
            for (int c = 0; c < 16; c++) p[l == mem_row_major ? r * ldm + c : c * ldm + r] = f.v[r][c];
    __syncwarp();
}
} // namespace wmma
} // namespace nvcuda
