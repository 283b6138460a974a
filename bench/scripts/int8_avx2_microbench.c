// What 8-bit products can gain over f32 on a CPU with AVX2 and no AVX-512 (the reasoning
// behind `augur_kernels::int8::Kernel::Avx2`). One core, one register block repeated over
// ROWS activation rows (K = 384 inputs): rows x 16 columns in 4-row blocks for the 8-bit
// variants, 4 x 24 for f32 FMA. Prints multiply-adds per second for
//   - "u8 plain":  vpmaddubsw on raw u8 bytes (saturates for u8 x i8 in general: not exact),
//   - "u8 sign":   the kernel's scheme: |u - 128| times the weight with u - 128's sign
//                  (vpsignb), exact,
//   - "u8 xor+sign": the same with the centring (xor 0x80) done in the loop, as the kernel
//                  does it,
//   - "f32 fma":   the f32 FMA block the f32 engine's products run at best.
// Not part of the build or the tests; the numbers vary with the host's load, so run it a few
// times:
//   gcc -O3 -mavx2 -mfma -DROWS=256 bench/scripts/int8_avx2_microbench.c -o /tmp/mb && /tmp/mb
// ROWS=8 keeps the activations in L1, ROWS=256 (a 256-token pass) in L2.
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#ifndef ROWS
#define ROWS 256
#endif
#define K 384

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static uint8_t A[ROWS * K] __attribute__((aligned(64)));
static int8_t B[16 * K] __attribute__((aligned(64)));
static float Af[4 * K], Bf[24 * K];
static int32_t out[ROWS * 16];
static float outf[4 * 24];

// mode 0: plain, 1: sign (bytes already centred), 2: xor + sign.
__attribute__((noinline)) static void block_u8(int mode) {
    const __m256i ones = _mm256_set1_epi16(1), x80 = _mm256_set1_epi8((char)0x80);
    for (int rb = 0; rb < ROWS; rb += 4) {
        __m256i acc[4][2];
        for (int r = 0; r < 4; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
        for (int q = 0; q < K / 4; q++) {
            __m256i b0 = _mm256_load_si256((const __m256i *)(B + q * 64));
            __m256i b1 = _mm256_load_si256((const __m256i *)(B + q * 64 + 32));
            for (int r = 0; r < 4; r++) {
                __m256i a = _mm256_set1_epi32(*(const int32_t *)(A + (rb + r) * K + 4 * q));
                __m256i p0, p1;
                if (mode == 0) {
                    p0 = _mm256_maddubs_epi16(a, b0);
                    p1 = _mm256_maddubs_epi16(a, b1);
                } else {
                    if (mode == 2) a = _mm256_xor_si256(a, x80);
                    __m256i m = _mm256_abs_epi8(a);
                    p0 = _mm256_maddubs_epi16(m, _mm256_sign_epi8(b0, a));
                    p1 = _mm256_maddubs_epi16(m, _mm256_sign_epi8(b1, a));
                }
                acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(p0, ones));
                acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(p1, ones));
            }
        }
        for (int r = 0; r < 4; r++)
            for (int c = 0; c < 2; c++)
                _mm256_storeu_si256((__m256i *)(out + (rb + r) * 16 + c * 8), acc[r][c]);
    }
}

__attribute__((noinline)) static void block_f32(void) {
    __m256 acc[4][3];
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 3; c++) acc[r][c] = _mm256_setzero_ps();
    for (int k = 0; k < K; k++) {
        __m256 b0 = _mm256_loadu_ps(Bf + k * 24), b1 = _mm256_loadu_ps(Bf + k * 24 + 8),
               b2 = _mm256_loadu_ps(Bf + k * 24 + 16);
        for (int r = 0; r < 4; r++) {
            __m256 a = _mm256_broadcast_ss(Af + k * 4 + r);
            acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
            acc[r][2] = _mm256_fmadd_ps(a, b2, acc[r][2]);
        }
    }
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 3; c++) _mm256_storeu_ps(outf + r * 24 + c * 8, acc[r][c]);
}

int main(void) {
    for (int i = 0; i < ROWS * K; i++) A[i] = (uint8_t)(i * 7);
    for (int i = 0; i < 16 * K; i++) B[i] = (int8_t)(i % 255 - 127);
    for (int i = 0; i < 4 * K; i++) Af[i] = (float)(i % 13);
    for (int i = 0; i < 24 * K; i++) Bf[i] = (float)(i % 7);
    const long u8_iters = 8000000L / ROWS, f32_iters = 2000000L;
    const char *names[3] = {"u8 plain", "u8 sign", "u8 xor+sign"};
    printf("ROWS %d, K %d, one core, G multiply-adds/s\n", ROWS, K);
    for (int rep = 0; rep < 3; rep++) {
        for (int mode = 0; mode < 3; mode++) {
            double t = now();
            for (long i = 0; i < u8_iters; i++) {
                block_u8(mode);
                __asm__ volatile("" ::"r"(out) : "memory");
            }
            double dt = now() - t;
            printf("%-12s %6.1f\n", names[mode], u8_iters * (double)ROWS * 16 * K / dt / 1e9);
        }
        double t = now();
        for (long i = 0; i < f32_iters; i++) {
            block_f32();
            __asm__ volatile("" ::"r"(outf) : "memory");
        }
        double dt = now() - t;
        printf("%-12s %6.1f\n", "f32 fma", f32_iters * 4.0 * 24 * K / dt / 1e9);
    }
    return 0;
}
