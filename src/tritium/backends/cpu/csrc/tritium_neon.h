/* Tritium CPU kernels: the NEON (aarch64) micro-kernels.
 *
 * Included by tritium_kernels.c in place of the portable micro-kernels when TRI_ISA_NEON is
 * 1 (build.py renders this file into the translation unit). It provides the same interface:
 *   decode_codes, i8_dot4x1/4x2/4x4, f32_dot4x1/4x2/4x4, gemv_direct4, f32_gemv_direct4,
 *   TRI_HAVE_DIRECT, TRI_HAVE_4X4.
 * Integer products: the codes (0..2) fit a signed byte, so code x activation is a signed
 * byte product. With __ARM_FEATURE_DOTPROD (armv8.2-a+dotprod) four of them go into each
 * int32 lane per sdot; without it, smull/smlal2 build int16 partial sums (each step adds at
 * most 2 * 2 * 127 = 508 to a lane, so 64 steps stay below 32768) widened with sadalp.
 * t1.6 digits: q = v / 9 (a multiply-high, exact for v < 256), r = v - 9 q; the three
 * digits of q (0..26) and the two of r (0..8) are byte-table lookups (tbl).
 */
#ifndef TRITIUM_NEON_H
#define TRITIUM_NEON_H

#define TRI_HAVE_DIRECT 1
#define TRI_HAVE_4X4 1

#if defined(__ARM_FEATURE_DOTPROD)
#define TRI_NEON_DOTPROD 1
#else
#define TRI_NEON_DOTPROD 0
#endif

/* Digits of q = v / 9 in 0..26 (entries 27..31 only serve invalid bytes > 242). */
static const uint8_t g_neon_q_d0[32] __attribute__((aligned(16))) = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1};
static const uint8_t g_neon_q_d1[32] __attribute__((aligned(16))) = {
    0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 0, 0, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1};
static const uint8_t g_neon_q_d2[32] __attribute__((aligned(16))) = {
    0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 1, 1, 1, 1, 1};
/* Digits of r = v mod 9 in 0..8. */
static const uint8_t g_neon_r_d3[16] __attribute__((aligned(16))) = {0, 0, 0, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1};
static const uint8_t g_neon_r_d4[16] __attribute__((aligned(16))) = {0, 1, 2, 0, 1, 2, 0, 1, 2, 1, 1, 1, 1, 1, 1, 1};

typedef struct {
    uint8x16x2_t d0, d1, d2;
    uint8x16_t d3, d4;
} NeonT16Tabs;

static inline NeonT16Tabs neon_t16_tabs(void) {
    NeonT16Tabs t;
    t.d0.val[0] = vld1q_u8(g_neon_q_d0); t.d0.val[1] = vld1q_u8(g_neon_q_d0 + 16);
    t.d1.val[0] = vld1q_u8(g_neon_q_d1); t.d1.val[1] = vld1q_u8(g_neon_q_d1 + 16);
    t.d2.val[0] = vld1q_u8(g_neon_q_d2); t.d2.val[1] = vld1q_u8(g_neon_q_d2 + 16);
    t.d3 = vld1q_u8(g_neon_r_d3);
    t.d4 = vld1q_u8(g_neon_r_d4);
    return t;
}

/* The five code vectors (most significant digit first) of 16 t1.6 bytes.
 * floor(v * 57 / 512) == floor(v / 9) for every v in 0..255 (57/512 - 1/9 = 1/(9*512)). */
static inline __attribute__((always_inline)) void neon_t16_decode(const NeonT16Tabs *t, uint8x16_t v,
                                                                  uint8x16_t *c) {
    const uint8x8_t k57 = vdup_n_u8(57);
    const uint8x16_t q = vshrq_n_u8(vcombine_u8(vshrn_n_u16(vmull_u8(vget_low_u8(v), k57), 8),
                                                vshrn_n_u16(vmull_high_u8(v, vdupq_n_u8(57)), 8)), 1);
    const uint8x16_t r = vmlsq_u8(v, q, vdupq_n_u8(9));
    c[0] = vqtbl2q_u8(t->d0, q);
    c[1] = vqtbl2q_u8(t->d1, q);
    c[2] = vqtbl2q_u8(t->d2, q);
    c[3] = vqtbl1q_u8(t->d3, r);
    c[4] = vqtbl1q_u8(t->d4, r);
}

/* The four code vectors of 16 t2 bytes. */
static inline __attribute__((always_inline)) void neon_t2_decode(uint8x16_t v, uint8x16_t *c) {
    const uint8x16_t m3 = vdupq_n_u8(3);
    c[0] = vandq_u8(v, m3);
    c[1] = vandq_u8(vshrq_n_u8(v, 2), m3);
    c[2] = vandq_u8(vshrq_n_u8(v, 4), m3);
    c[3] = vshrq_n_u8(v, 6);
}

static void decode_codes(int fmt, const uint8_t *w, int64_t nb, uint8_t *c) {
    if (fmt == TRI_FMT_T2) {
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *d = c + b * TRI_T2_BLOCK;
            for (int h = 0; h < 2; h++) {
                uint8x16_t cv[4];
                neon_t2_decode(vld1q_u8(w + b * 32 + 16 * h), cv);
                for (int i = 0; i < 4; i++) vst1q_u8(d + 32 * i + 16 * h, cv[i]);
            }
        }
    } else {
        const NeonT16Tabs t = neon_t16_tabs();
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *d = c + b * TRI_T16_BLOCK;
            for (int h = 0; h < 2; h++) {
                uint8x16_t cv[5];
                neon_t16_decode(&t, vld1q_u8(w + b * 32 + 16 * h), cv);
                for (int i = 0; i < 5; i++) vst1q_u8(d + 32 * i + 16 * h, cv[i]);
            }
        }
    }
}

/* ---- int8 products ------------------------------------------------------------------- */

#if TRI_NEON_DOTPROD
#define NEON_DOT(acc, c, x) acc = vdotq_s32(acc, vreinterpretq_s8_u8(c), (x))
#endif

/* int16 step without dotprod: p += c[0:8] * x[0:8] + c[8:16] * x[8:16] lane-wise. */
#define NEON_MLAL(p, c, x)                                                          \
    do {                                                                            \
        const int8x16_t cs_ = vreinterpretq_s8_u8(c), xs_ = (x);                    \
        p = vmlal_s8(p, vget_low_s8(cs_), vget_low_s8(xs_));                        \
        p = vmlal_high_s8(p, cs_, xs_);                                             \
    } while (0)

/* Steps of 16 bytes per int16 run (64 * 508 < 32768). */
#define NEON_RUN (64 * 16)

/* sum_i c[r][i] * x[u][i] over kp bytes (kp a multiple of 32) for 4 code rows x nt tokens. */
static inline __attribute__((always_inline)) void neon_i8_dot(const uint8_t *const *c,
                                                              const int8_t *const *x, int nt,
                                                              int64_t kp, int32_t *o) {
#if TRI_NEON_DOTPROD
    int32x4_t a[4][4];
    for (int u = 0; u < nt; u++)
        for (int r = 0; r < 4; r++) a[u][r] = vdupq_n_s32(0);
    for (int64_t i = 0; i < kp; i += 16) {
        const uint8x16_t c0 = vld1q_u8(c[0] + i), c1 = vld1q_u8(c[1] + i);
        const uint8x16_t c2 = vld1q_u8(c[2] + i), c3 = vld1q_u8(c[3] + i);
        for (int u = 0; u < nt; u++) {
            const int8x16_t xv = vld1q_s8(x[u] + i);
            NEON_DOT(a[u][0], c0, xv);
            NEON_DOT(a[u][1], c1, xv);
            NEON_DOT(a[u][2], c2, xv);
            NEON_DOT(a[u][3], c3, xv);
        }
    }
    for (int u = 0; u < nt; u++)
        for (int r = 0; r < 4; r++) o[4 * u + r] = vaddvq_s32(a[u][r]);
#else
    int32_t acc[16] = {0};
    for (int64_t i0 = 0; i0 < kp; i0 += NEON_RUN) {
        const int64_t i1 = min64(kp, i0 + NEON_RUN);
        int16x8_t p[4][4];
        for (int u = 0; u < nt; u++)
            for (int r = 0; r < 4; r++) p[u][r] = vdupq_n_s16(0);
        for (int64_t i = i0; i < i1; i += 16) {
            const uint8x16_t c0 = vld1q_u8(c[0] + i), c1 = vld1q_u8(c[1] + i);
            const uint8x16_t c2 = vld1q_u8(c[2] + i), c3 = vld1q_u8(c[3] + i);
            for (int u = 0; u < nt; u++) {
                const int8x16_t xv = vld1q_s8(x[u] + i);
                NEON_MLAL(p[u][0], c0, xv);
                NEON_MLAL(p[u][1], c1, xv);
                NEON_MLAL(p[u][2], c2, xv);
                NEON_MLAL(p[u][3], c3, xv);
            }
        }
        for (int u = 0; u < nt; u++)
            for (int r = 0; r < 4; r++) acc[4 * u + r] += vaddlvq_s16(p[u][r]);
    }
    for (int j = 0; j < 4 * nt; j++) o[j] = acc[j];
#endif
}

static void i8_dot4x1(const uint8_t *const *c, const int8_t *x, int64_t kp, int32_t *o) {
    const int8_t *xs[1] = {x};
    neon_i8_dot(c, xs, 1, kp, o);
}

static void i8_dot4x2(const uint8_t *const *c, const int8_t *x0, const int8_t *x1, int64_t kp,
                      int32_t *o) {
    const int8_t *xs[2] = {x0, x1};
    neon_i8_dot(c, xs, 2, kp, o);
}

__attribute__((noinline)) static void i8_dot4x4(const uint8_t *const *c, const int8_t *const *x,
                                                int64_t kp, int32_t *o) {
    neon_i8_dot(c, x, 4, kp, o);
}

/* acc += sum over n 16-byte steps of codes * activations, for one block of one row. */
static inline __attribute__((always_inline)) int32x4_t neon_blk_dot(int32x4_t acc, const uint8x16_t *c,
                                                                    const int8x16_t *x, int n) {
#if TRI_NEON_DOTPROD
    for (int i = 0; i < n; i++) NEON_DOT(acc, c[i], x[i]);
    return acc;
#else
    int16x8_t p = vdupq_n_s16(0); /* at most 10 steps: |p| <= 5080 */
    for (int i = 0; i < n; i++) NEON_MLAL(p, c[i], x[i]);
    return vpadalq_s16(acc, p);
#endif
}

/* int8 GEMV straight from the packed bytes (x zero padded to nb whole blocks). */
static void gemv_direct4(int fmt, const uint8_t *const *w, const int8_t *x, int64_t nb, int32_t *o) {
    int32x4_t a[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
    if (fmt == TRI_FMT_T2) {
        for (int64_t b = 0; b < nb; b++) {
            const int8_t *xb = x + b * TRI_T2_BLOCK;
            int8x16_t xv[8]; /* digit i, half h -> xv[2 i + h] */
            for (int i = 0; i < 8; i++) xv[i] = vld1q_s8(xb + 16 * i);
            for (int r = 0; r < 4; r++) {
                uint8x16_t cv[8], lo[4], hi[4];
                neon_t2_decode(vld1q_u8(w[r] + b * 32), lo);
                neon_t2_decode(vld1q_u8(w[r] + b * 32 + 16), hi);
                for (int i = 0; i < 4; i++) { cv[2 * i] = lo[i]; cv[2 * i + 1] = hi[i]; }
                a[r] = neon_blk_dot(a[r], cv, xv, 8);
            }
        }
    } else {
        const NeonT16Tabs t = neon_t16_tabs();
        for (int64_t b = 0; b < nb; b++) {
            const int8_t *xb = x + b * TRI_T16_BLOCK;
            int8x16_t xv[10];
            for (int i = 0; i < 10; i++) xv[i] = vld1q_s8(xb + 16 * i);
            for (int r = 0; r < 4; r++) {
                uint8x16_t cv[10], lo[5], hi[5];
                neon_t16_decode(&t, vld1q_u8(w[r] + b * 32), lo);
                neon_t16_decode(&t, vld1q_u8(w[r] + b * 32 + 16), hi);
                for (int i = 0; i < 5; i++) { cv[2 * i] = lo[i]; cv[2 * i + 1] = hi[i]; }
                a[r] = neon_blk_dot(a[r], cv, xv, 10);
            }
        }
    }
    for (int r = 0; r < 4; r++) o[r] = vaddvq_s32(a[r]);
}

/* ---- fp32 activations ------------------------------------------------------------------ */

/* acc += (codes - 1) * x[0:16] for 16 codes: trits widened to int32 and converted. */
static inline __attribute__((always_inline)) void neon_fma_codes16(uint8x16_t c, const float *x,
                                                                   float32x4_t *a0, float32x4_t *a1) {
    const int8x16_t t = vreinterpretq_s8_u8(vsubq_u8(c, vdupq_n_u8(1)));
    const int16x8_t lo = vmovl_s8(vget_low_s8(t)), hi = vmovl_high_s8(t);
    *a0 = vfmaq_f32(*a0, vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), vld1q_f32(x));
    *a1 = vfmaq_f32(*a1, vcvtq_f32_s32(vmovl_high_s16(lo)), vld1q_f32(x + 4));
    *a0 = vfmaq_f32(*a0, vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), vld1q_f32(x + 8));
    *a1 = vfmaq_f32(*a1, vcvtq_f32_s32(vmovl_high_s16(hi)), vld1q_f32(x + 12));
}

/* fp32 GEMV from the packed bytes (x zero padded to nb whole blocks). */
static void f32_gemv_direct4(int fmt, const uint8_t *const *w, const float *x, int64_t nb, float *o) {
    float32x4_t a[4][2];
    for (int r = 0; r < 4; r++) a[r][0] = a[r][1] = vdupq_n_f32(0.0f);
    if (fmt == TRI_FMT_T2) {
        for (int64_t b = 0; b < nb; b++) {
            const float *xb = x + b * TRI_T2_BLOCK;
            for (int r = 0; r < 4; r++) {
                for (int h = 0; h < 2; h++) {
                    uint8x16_t cv[4];
                    neon_t2_decode(vld1q_u8(w[r] + b * 32 + 16 * h), cv);
                    for (int i = 0; i < 4; i++) neon_fma_codes16(cv[i], xb + 32 * i + 16 * h, &a[r][0], &a[r][1]);
                }
            }
        }
    } else {
        const NeonT16Tabs t = neon_t16_tabs();
        for (int64_t b = 0; b < nb; b++) {
            const float *xb = x + b * TRI_T16_BLOCK;
            for (int r = 0; r < 4; r++) {
                for (int h = 0; h < 2; h++) {
                    uint8x16_t cv[5];
                    neon_t16_decode(&t, vld1q_u8(w[r] + b * 32 + 16 * h), cv);
                    for (int i = 0; i < 5; i++) neon_fma_codes16(cv[i], xb + 32 * i + 16 * h, &a[r][0], &a[r][1]);
                }
            }
        }
    }
    for (int r = 0; r < 4; r++) o[r] = vaddvq_f32(vaddq_f32(a[r][0], a[r][1]));
}

/* sum_i wf[r][i] * x[u][i] over k for 4 decoded float rows (readable up to k rounded up to 4)
 * x nt tokens (x rows hold exactly k floats: the tail goes through a zero padded copy). */
static inline __attribute__((always_inline)) void neon_f32_dot(const float *const *wf,
                                                               const float *const *x, int nt,
                                                               int64_t k, float *o) {
    float32x4_t a[4][4];
    for (int u = 0; u < nt; u++)
        for (int r = 0; r < 4; r++) a[u][r] = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 4 <= k; i += 4) {
        const float32x4_t w0 = vld1q_f32(wf[0] + i), w1 = vld1q_f32(wf[1] + i);
        const float32x4_t w2 = vld1q_f32(wf[2] + i), w3 = vld1q_f32(wf[3] + i);
        for (int u = 0; u < nt; u++) {
            const float32x4_t xv = vld1q_f32(x[u] + i);
            a[u][0] = vfmaq_f32(a[u][0], w0, xv);
            a[u][1] = vfmaq_f32(a[u][1], w1, xv);
            a[u][2] = vfmaq_f32(a[u][2], w2, xv);
            a[u][3] = vfmaq_f32(a[u][3], w3, xv);
        }
    }
    if (i < k) {
        const float32x4_t w0 = vld1q_f32(wf[0] + i), w1 = vld1q_f32(wf[1] + i);
        const float32x4_t w2 = vld1q_f32(wf[2] + i), w3 = vld1q_f32(wf[3] + i);
        for (int u = 0; u < nt; u++) {
            float tail[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            memcpy(tail, x[u] + i, (size_t)(k - i) * sizeof(float));
            const float32x4_t xv = vld1q_f32(tail);
            a[u][0] = vfmaq_f32(a[u][0], w0, xv);
            a[u][1] = vfmaq_f32(a[u][1], w1, xv);
            a[u][2] = vfmaq_f32(a[u][2], w2, xv);
            a[u][3] = vfmaq_f32(a[u][3], w3, xv);
        }
    }
    for (int u = 0; u < nt; u++)
        for (int r = 0; r < 4; r++) o[4 * u + r] = vaddvq_f32(a[u][r]);
}

static void f32_dot4x1(const float *const *wf, const float *x, int64_t k, float *o) {
    const float *xs[1] = {x};
    neon_f32_dot(wf, xs, 1, k, o);
}

static void f32_dot4x2(const float *const *wf, const float *x0, const float *x1, int64_t k, float *o) {
    const float *xs[2] = {x0, x1};
    neon_f32_dot(wf, xs, 2, k, o);
}

__attribute__((noinline)) static void f32_dot4x4(const float *const *wf, const float *const *x,
                                                 int64_t k, float *o) {
    neon_f32_dot(wf, x, 4, k, o);
}

#endif
