/* tritium_lm.h: the language-model decode kernels: the int8 linear of a quantized output head
 * (int8 weights with one absmax scale per row, int8 activations per token, exact int32
 * accumulation) and the BitLinear entry with its parameter-free RMSNorm fused.
 * A section of tritium_kernels.c, included by it at this point (build.py renders it inline
 * into one translation unit); not a standalone header.
 *
 * The int8 weight layout ("panels of 16"): n rows padded with zero rows to whole panels of 16,
 * k padded with zeros to a multiple of 4; panel p holds, for each group g of 4 k values,
 * 64 bytes: channel c (0..15) at bytes 4c..4c+3 = w[16p + c][4g .. 4g+3]. One 64-byte group is
 * one zmm of 16 channels x 4 codes (vpdpbusd), two ymm of 8 channels (AVX2), four NEON
 * vectors of 4 channels (sdot); the accumulator lanes are output channels, so a GEMV never
 * reduces horizontally.
 *
 * AVX-512 VNNI multiplies unsigned by signed bytes: the activations go in as xq + 128
 * (unsigned), and sum (xq + 128) w = sum xq w + 128 sum w, so the row sums of the weights
 * (made by tri_i8_pack) are subtracted. AVX2 uses the sign trick (|xq| times w with xq's sign,
 * pairs of products at most 2 * 127 * 127 < 32767: maddubs never saturates). NEON multiplies
 * signed bytes directly (sdot, or smull + pairwise adds without the dot product). */

#define TRI_I8_PANEL 16

static inline int64_t i8_kpad(int64_t k) { return (k + 3) & ~(int64_t)3; }

TRI_EXPORT int64_t tri_i8_bytes(int64_t n, int64_t k) {
    if (n <= 0 || k <= 0) return 0;
    return (n + TRI_I8_PANEL - 1) / TRI_I8_PANEL * TRI_I8_PANEL * i8_kpad(k);
}

TRI_EXPORT int tri_i8_pack(const int8_t *w, int64_t n, int64_t k, int8_t *out, int32_t *wsum) {
    const int64_t kp = i8_kpad(k);
    memset(out, 0, (size_t)tri_i8_bytes(n, k));
    for (int64_t r = 0; r < n; r++) {
        int8_t *dst = out + (r / TRI_I8_PANEL) * TRI_I8_PANEL * kp + (r % TRI_I8_PANEL) * 4;
        int32_t s = 0;
        for (int64_t i = 0; i < k; i++) {
            dst[(i >> 2) * 64 + (i & 3)] = w[r * k + i];
            s += w[r * k + i];
        }
        if (wsum) wsum[r] = s;
    }
    return 0;
}

/* The micro-kernels: out[t][j] (ldo apart) = sum over kp of x[t] * panel columns, for MR tokens
 * (rows of x, ldx apart) and NP panels (pstride bytes apart), ng = kp / 4 groups. Inlined with
 * constant MR/NP so that the accumulators live in registers. */
#if TRI_ISA_AVX512
#define I8_MR 4
#define I8_NP 4
#define I8_XOFF 128 /* activations stored as xq + 128 (unsigned) */
static inline __attribute__((always_inline)) void i8_mk(const uint8_t *x, int64_t ldx,
        const int8_t *w, int64_t pstride, int64_t ng, int32_t *out, int64_t ldo, const int MR,
        const int NP) {
    __m512i acc[I8_MR][I8_NP];
    for (int t = 0; t < MR; t++)
        for (int p = 0; p < NP; p++) acc[t][p] = _mm512_setzero_si512();
    for (int64_t g = 0; g < ng; g++) {
        __m512i wv[I8_NP];
        for (int p = 0; p < NP; p++) wv[p] = _mm512_loadu_si512((const void *)(w + p * pstride + g * 64));
        for (int t = 0; t < MR; t++) {
            int32_t x4;
            memcpy(&x4, x + t * ldx + g * 4, 4);
            const __m512i xb = _mm512_set1_epi32(x4);
            for (int p = 0; p < NP; p++) acc[t][p] = _mm512_dpbusd_epi32(acc[t][p], xb, wv[p]);
        }
    }
    for (int t = 0; t < MR; t++)
        for (int p = 0; p < NP; p++) _mm512_storeu_si512((void *)(out + t * ldo + p * 16), acc[t][p]);
}
#elif TRI_ISA_AVX2
#define I8_MR 2
#define I8_NP 2
#define I8_XOFF 0
static inline __attribute__((always_inline)) void i8_mk(const uint8_t *x, int64_t ldx,
        const int8_t *w, int64_t pstride, int64_t ng, int32_t *out, int64_t ldo, const int MR,
        const int NP) {
    __m256i acc[I8_MR][2 * I8_NP];
    const __m256i ones = _mm256_set1_epi16(1);
    for (int t = 0; t < MR; t++)
        for (int p = 0; p < 2 * NP; p++) acc[t][p] = _mm256_setzero_si256();
    for (int64_t g = 0; g < ng; g++) {
        __m256i wv[2 * I8_NP];
        for (int p = 0; p < NP; p++) {
            wv[2 * p] = _mm256_loadu_si256((const __m256i *)(w + p * pstride + g * 64));
            wv[2 * p + 1] = _mm256_loadu_si256((const __m256i *)(w + p * pstride + g * 64 + 32));
        }
        for (int t = 0; t < MR; t++) {
            int32_t x4;
            memcpy(&x4, x + t * ldx + g * 4, 4);
            const __m256i xb = _mm256_set1_epi32(x4);
            const __m256i ax = _mm256_abs_epi8(xb);
            for (int p = 0; p < 2 * NP; p++) {
                const __m256i prod = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(wv[p], xb));
                acc[t][p] = _mm256_add_epi32(acc[t][p], _mm256_madd_epi16(prod, ones));
            }
        }
    }
    for (int t = 0; t < MR; t++)
        for (int p = 0; p < 2 * NP; p++) _mm256_storeu_si256((__m256i *)(out + t * ldo + p * 8), acc[t][p]);
}
#elif TRI_ISA_NEON
#define I8_MR 2
#define I8_NP 2
#define I8_XOFF 0
static inline __attribute__((always_inline)) void i8_mk(const uint8_t *x, int64_t ldx,
        const int8_t *w, int64_t pstride, int64_t ng, int32_t *out, int64_t ldo, const int MR,
        const int NP) {
    int32x4_t acc[I8_MR][4 * I8_NP];
    for (int t = 0; t < MR; t++)
        for (int p = 0; p < 4 * NP; p++) acc[t][p] = vdupq_n_s32(0);
    for (int64_t g = 0; g < ng; g++) {
        int8x16_t wv[4 * I8_NP];
        for (int p = 0; p < NP; p++)
            for (int q = 0; q < 4; q++) wv[4 * p + q] = vld1q_s8(w + p * pstride + g * 64 + q * 16);
        for (int t = 0; t < MR; t++) {
            int32_t x4;
            memcpy(&x4, x + t * ldx + g * 4, 4);
            const int8x16_t xb = vreinterpretq_s8_s32(vdupq_n_s32(x4));
            for (int p = 0; p < 4 * NP; p++) {
#if defined(__ARM_FEATURE_DOTPROD)
                acc[t][p] = vdotq_s32(acc[t][p], wv[p], xb);
#else
                /* 4 channels x 4 products: int16 products, pairs summed twice */
                const int16x8_t lo = vmull_s8(vget_low_s8(wv[p]), vget_low_s8(xb));
                const int16x8_t hi = vmull_s8(vget_high_s8(wv[p]), vget_high_s8(xb));
                acc[t][p] = vaddq_s32(acc[t][p], vpaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi)));
#endif
            }
        }
    }
    for (int t = 0; t < MR; t++)
        for (int p = 0; p < 4 * NP; p++) vst1q_s32(out + t * ldo + p * 4, acc[t][p]);
}
#else
#define I8_MR 2
#define I8_NP 1
#define I8_XOFF 0
static inline __attribute__((always_inline)) void i8_mk(const uint8_t *x, int64_t ldx,
        const int8_t *w, int64_t pstride, int64_t ng, int32_t *out, int64_t ldo, const int MR,
        const int NP) {
    for (int t = 0; t < MR; t++)
        for (int p = 0; p < NP; p++) {
            int32_t acc[16] = {0};
            const int8_t *xs = (const int8_t *)(x + t * ldx);
            const int8_t *wp = w + p * pstride;
            for (int64_t g = 0; g < ng; g++)
                for (int c = 0; c < 16; c++)
                    for (int j = 0; j < 4; j++) acc[c] += (int32_t)xs[g * 4 + j] * wp[g * 64 + c * 4 + j];
            for (int c = 0; c < 16; c++) out[t * ldo + p * 16 + c] = acc[c];
        }
}
#endif

typedef struct {
    const uint8_t *x;      /* m rows of kp (+ offset) activation bytes, ldx apart */
    int64_t m, n, kp, ldx, npanel, ntchunk;
    const int8_t *w;       /* the panels */
    const int32_t *wsum;   /* row sums (the +128 correction; may be NULL when I8_XOFF is 0) */
    const float *sx;       /* per-token scales (NULL: raw int32 output to yi) */
    const float *ws;       /* per-row scales */
    const float *bias;     /* may be NULL */
    float *y;
    int32_t *yi;
} I8Job;

#define I8_TCHUNK 64 /* tokens per task */

static void i8_task(void *ctx, int64_t task, int tid) {
    (void)tid;
    const I8Job *J = ctx;
    const int64_t pg = task / J->ntchunk, tc = task % J->ntchunk;
    const int64_t p0 = pg * I8_NP, np = min64(I8_NP, J->npanel - p0);
    const int64_t t0 = tc * I8_TCHUNK, t1 = min64(J->m, t0 + I8_TCHUNK);
    const int64_t pstride = TRI_I8_PANEL * J->kp, ng = J->kp / 4;
    const int8_t *w = J->w + p0 * pstride;
    int32_t acc[I8_MR * I8_NP * TRI_I8_PANEL];
    const int64_t ldo = I8_NP * TRI_I8_PANEL;
    for (int64_t t = t0; t < t1; t += I8_MR) {
        const int64_t mr = min64(I8_MR, t1 - t);
        const uint8_t *x = J->x + t * J->ldx;
        /* constant (MR, NP) instances; the tails take the one-token / one-panel kernels */
        if (mr == I8_MR && np == I8_NP) {
            i8_mk(x, J->ldx, w, pstride, ng, acc, ldo, I8_MR, I8_NP);
        } else if (np == I8_NP) {
            for (int64_t u = 0; u < mr; u++) i8_mk(x + u * J->ldx, J->ldx, w, pstride, ng, acc + u * ldo, ldo, 1, I8_NP);
        } else {
            for (int64_t u = 0; u < mr; u++)
                for (int64_t p = 0; p < np; p++)
                    i8_mk(x + u * J->ldx, J->ldx, w + p * pstride, pstride, ng, acc + u * ldo + p * TRI_I8_PANEL, ldo, 1, 1);
        }
        const int64_t c0 = p0 * TRI_I8_PANEL, c1 = min64(J->n, (p0 + np) * TRI_I8_PANEL);
        for (int64_t u = 0; u < mr; u++) {
            const int32_t *a = acc + u * ldo;
            if (J->sx == NULL) {
                int32_t *yi = J->yi + (t + u) * J->n;
                for (int64_t c = c0; c < c1; c++) yi[c] = a[c - c0] - I8_XOFF * J->wsum[c];
                continue;
            }
            const float s = J->sx[t + u];
            float *y = J->y + (t + u) * J->n;
            for (int64_t c = c0; c < c1; c++) {
                float v = (float)(a[c - c0] - I8_XOFF * J->wsum[c]) * s * J->ws[c];
                if (J->bias) v += J->bias[c];
                y[c] = v;
            }
        }
    }
}

/* xq: m rows of k int8 (or NULL: quantize x per token, as tri_quantize_rows); runs the job. */
static int i8_run(const float *x, const int8_t *xq, int64_t m, int64_t k, const int8_t *wp,
                  int64_t n, const float *ws, const int32_t *wsum, const float *bias, float *y,
                  int32_t *yi, int nthreads) {
    if (m <= 0 || n <= 0) return 0;
    const int64_t kp = i8_kpad(k), ldx = kp + 64;
    uint8_t *xb = tri_alloc((size_t)(m * ldx));
    float *sx = xq ? NULL : tri_alloc((size_t)m * sizeof(float));
    if (!xb || (!xq && !sx)) {
        free(xb); free(sx);
        return 1;
    }
    if (xq) {
        for (int64_t t = 0; t < m; t++) {
            memcpy(xb + t * ldx, xq + t * k, (size_t)k);
            memset(xb + t * ldx + k, 0, (size_t)(ldx - k));
        }
    } else {
        quantize_all(x, m, k, (int8_t *)xb, ldx, sx, NULL, nthreads);
    }
    if (I8_XOFF)
        for (int64_t i = 0; i < m * ldx; i++) xb[i] ^= 0x80; /* xq + 128 as an unsigned byte */
    I8Job J = {xb, m, n, kp, ldx, (n + TRI_I8_PANEL - 1) / TRI_I8_PANEL, (m + I8_TCHUNK - 1) / I8_TCHUNK,
               wp, wsum, sx, ws, bias, y, yi};
    const int64_t groups = (J.npanel + I8_NP - 1) / I8_NP;
    pool_run(i8_task, &J, groups * J.ntchunk, team_for_work((double)m * (double)n * (double)kp, nthreads));
    free(xb); free(sx);
    return 0;
}

TRI_EXPORT int tri_i8_linear(const float *x, int64_t m, int64_t k, const int8_t *wp, int64_t n,
                             const float *wscale, const int32_t *wsum, const float *bias,
                             float *y, int nthreads) {
    return i8_run(x, NULL, m, k, wp, n, wscale, wsum, bias, y, NULL, nthreads);
}

TRI_EXPORT int tri_i8_gemm(const int8_t *xq, int64_t m, int64_t k, const int8_t *wp, int64_t n,
                           const int32_t *wsum, int32_t *y, int nthreads) {
    return i8_run(NULL, xq, m, k, wp, n, NULL, wsum, NULL, NULL, y, nthreads);
}

/* RMSNorm (no weight) of each row: in double precision the mean of squares, then
 * y = x / sqrt(mean + eps) in float. */
static void rms_rows(const float *x, int64_t m, int64_t k, float eps, float *xn) {
    for (int64_t t = 0; t < m; t++) {
        const float *r = x + t * k;
        float *o = xn + t * k;
        double ss = 0.0;
        for (int64_t i = 0; i < k; i++) ss += (double)r[i] * (double)r[i];
        const float inv = (float)(1.0 / sqrt(ss / (double)k + (double)eps));
        for (int64_t i = 0; i < k; i++) o[i] = r[i] * inv;
    }
}

/* tri_linear_planned on rms_rows(x): a frozen BitLinear in one call. */
TRI_EXPORT int tri_rms_linear_planned(const TriLinearPlan *p, const float *x, int64_t m,
                                      float eps, int act, float *y, int nthreads,
                                      const uint8_t *gw) {
    float *xn = tri_alloc((size_t)(m * p->k) * sizeof(float));
    if (!xn) return 1;
    rms_rows(x, m, p->k, eps, xn);
    int rc = tri_linear_planned(p, xn, m, NULL, act, y, nthreads, gw);
    free(xn);
    return rc;
}

/* Several frozen int8 layers of one input (the same k and format): rms_rows and the int8
 * quantization once, then each layer's product, dispatched as tri_linear dispatches it (so
 * each ys[i] holds exactly what tri_rms_linear_planned(plans[i], ...) gives). Returns 0, 1 on
 * allocation failure, 2 when the layers do not share k, format and int8 activations. */
TRI_EXPORT int tri_rms_multi_planned(const TriLinearPlan *const *plans, int64_t count,
                                     const float *x, int64_t m, float eps, float *const *ys,
                                     int nthreads) {
    if (count <= 0 || m <= 0) return 0;
    const int64_t k = plans[0]->k;
    const int fmt = plans[0]->fmt;
    for (int64_t i = 0; i < count; i++)
        if (plans[i]->k != k || plans[i]->fmt != fmt || !plans[i]->act_quant) return 2;
    const int64_t nb = n_blocks(fmt, k), kpad = nb * blk_elems(fmt), ldx = kpad + 64;
    float *xn = tri_alloc((size_t)(m * k) * sizeof(float));
    int8_t *xq = tri_alloc((size_t)(m * ldx));
    float *sx = tri_alloc((size_t)m * sizeof(float));
    int32_t *sumx = tri_alloc((size_t)m * sizeof(int32_t));
    int err = 1;
    if (xn && xq && sx && sumx) {
        rms_rows(x, m, k, eps, xn);
        quantize_all(xn, m, k, xq, ldx, sx, sumx, nthreads);
        err = 0;
        for (int64_t i = 0; i < count && !err; i++) {
            const TriLinearPlan *p = plans[i];
            Problem P;
            memset(&P, 0, sizeof P);
            P.m = m; P.k = k; P.n = p->n; P.row_bytes = p->row_bytes; P.fmt = fmt; P.w = p->w;
            P.y = ys[i]; P.nb = nb; P.kpad = kpad; P.ldx = ldx;
            P.epi.scale = p->scale; P.epi.nscale = p->nscale; P.epi.bias = p->bias;
            P.epi.act = TRI_ACT_NONE;
            P.xq = xq; P.sx = sx; P.sumx = sumx;
            if (p->n == 0) continue;
            err = TRI_HAVE_G2 && m >= TRI_GEMM_MIN_M ? run_g2(&P, NULL, nthreads) : run_problem(&P, nthreads);
        }
    }
    free(xn); free(xq); free(sx); free(sumx);
    return err;
}
