/* tritium_epilogue.h: the int8 activation quantizer and the epilogue (scales, bias, residual, activation).
 * A section of tritium_kernels.c, included by it at this point (build.py renders it
 * inline into one translation unit); not a standalone header. */

/* ------------------------------------------------------------------------------------ */
/* Activation quantization and epilogue                                                 */
/* ------------------------------------------------------------------------------------ */

/* The quantizer divides each x by s = absmax / 127 with IEEE division (RN(x / s)), then rounds
 * half to even: torch's fake quantization, bit for bit. The SIMD paths get RN(x / s) without a
 * division (vdivps is 5-10x an FMA's cost and was half of a small int8 layer's time), from the
 * correctly rounded reciprocal y = RN(1 / s) and two correction steps:
 *   q0 = RN(x y) (within 2 ulps of x / s), q1 = RN(q0 + RN(x - s q0) y) (faithful: within
 *   1/2 ulp plus 2^-21 ulp), q2 = RN(q1 + (x - s q1) y) with x - s q1 exact in an FMA;
 * q2 = RN(x / s) by Markstein's theorem (y within 1/2 ulp of 1/s, q1 faithful; Muller et al.,
 * Handbook of Floating-Point Arithmetic, the division by FMA). The theorem needs no underflow
 * in the residuals: with s >= 2^-100 an exact residual for |x / s| >= 1/4 is a multiple of
 * 2^-148, and smaller quotients round to 0 however they are approximated; s below that, or
 * infinite (an infinite absmax), takes the division. NaN in x stays NaN. */
#define TRI_Q_MIN_SCALE 7.88860905e-31f /* 2^-100 */
#if TRI_ISA_AVX512
static inline __attribute__((always_inline)) __m512 quot512(__m512 x, __m512 s, __m512 y) {
    __m512 q = _mm512_mul_ps(x, y);
    q = _mm512_fmadd_ps(_mm512_fnmadd_ps(s, q, x), y, q);
    return _mm512_fmadd_ps(_mm512_fnmadd_ps(s, q, x), y, q);
}
#endif
#if TRI_ISA_AVX2
static inline __attribute__((always_inline)) __m256 quot256(__m256 x, __m256 s, __m256 y) {
    __m256 q = _mm256_mul_ps(x, y);
    q = _mm256_fmadd_ps(_mm256_fnmadd_ps(s, q, x), y, q);
    return _mm256_fmadd_ps(_mm256_fnmadd_ps(s, q, x), y, q);
}
#endif

static inline int quot_fast(float sc) { return sc >= TRI_Q_MIN_SCALE && sc <= 3.40282347e38f; }

static void quantize_row(const float *x, int64_t k, int8_t *q, int64_t ldq, float *s, int32_t *sum) {
#if TRI_ISA_AVX512
    /* the same values 16 lanes at a time: RN(x / s) (above), round to nearest even, clamp */
    {
        __m512 am = _mm512_setzero_ps();
        int64_t i = 0;
        for (; i + 16 <= k; i += 16) am = _mm512_max_ps(am, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
        if (i < k) /* the tail as one masked load (masked-off lanes read as 0) */
            am = _mm512_max_ps(am, _mm512_abs_ps(_mm512_maskz_loadu_ps((__mmask16)((1u << (k - i)) - 1u), x + i)));
        float amax = _mm512_reduce_max_ps(am);
        float sc = amax / 127.0f;
        if (sc == 0.0f) sc = 1.0f;
        const __m512 vs = _mm512_set1_ps(sc), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
        const __m512 vy = _mm512_set1_ps(1.0f / sc);
        const int fast = quot_fast(sc);
        __m512i acc = _mm512_setzero_si512();
        for (i = 0; i < k; i += 16) {
            const __mmask16 m = k - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - i)) - 1u);
            const __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
            __m512 v = fast ? quot512(xv, vs, vy) : _mm512_div_ps(xv, vs);
            v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
            const __m512i qi = _mm512_maskz_mov_epi32(m, _mm512_cvtps_epi32(v));
            acc = _mm512_add_epi32(acc, qi);
            _mm_mask_storeu_epi8(q + i, m, _mm512_cvtepi32_epi8(qi));
        }
        if (ldq > k) memset(q + k, 0, (size_t)(ldq - k));
        *s = sc;
        if (sum) *sum = _mm512_reduce_add_epi32(acc);
        return;
    }
#endif
    float amax = 0.0f;
    int64_t i0 = 0;
#if TRI_ISA_AVX2
    /* 8 lanes at a time, the same arithmetic as the loops below (bit-identical); max(a, amax)
     * keeps amax when a is NaN, as the scalar compare does */
    __m256 am = _mm256_setzero_ps();
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    for (; i0 + 8 <= k; i0 += 8) am = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i0), absm), am);
    float lanes[8];
    _mm256_storeu_ps(lanes, am);
    for (int j = 0; j < 8; j++) amax = lanes[j] > amax ? lanes[j] : amax;
#endif
    for (int64_t i = i0; i < k; i++) {
        float a = fabsf(x[i]);
        amax = a > amax ? a : amax;
    }
    float sc = amax / 127.0f;
    if (sc == 0.0f) sc = 1.0f;
    int32_t acc = 0;
    i0 = 0;
#if TRI_ISA_AVX2
    {
        const __m256 vs = _mm256_set1_ps(sc), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
        const __m256 vy = _mm256_set1_ps(1.0f / sc);
        const int fast = quot_fast(sc);
        __m256i va = _mm256_setzero_si256();
        for (; i0 + 8 <= k; i0 += 8) {
            const __m256 xv = _mm256_loadu_ps(x + i0);
            __m256 v = _mm256_round_ps(fast ? quot256(xv, vs, vy) : _mm256_div_ps(xv, vs),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q)); /* NaN -> 0, as (int8_t)NaN */
            const __m256i qi = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, lo), hi));
            va = _mm256_add_epi32(va, qi);
            const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
            _mm_storel_epi64((__m128i *)(q + i0), _mm_packs_epi16(w, w));
        }
        int32_t s8[8];
        _mm256_storeu_si256((__m256i *)s8, va);
        for (int j = 0; j < 8; j++) acc += s8[j];
    }
#endif
    for (int64_t i = i0; i < k; i++) {
        float v = nearbyintf(x[i] / sc);
        v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
        int8_t qi = (int8_t)v;
        q[i] = qi;
        acc += qi;
    }
    if (ldq > k) memset(q + k, 0, (size_t)(ldq - k));
    *s = sc;
    if (sum) *sum = acc;
}

typedef struct {
    const float *x;
    int64_t k, ldq;
    int8_t *xq;
    float *s;
    int32_t *sum;
} QuantJob;

static void quant_task(void *ctx, int64_t t, int tid) {
    QuantJob *J = ctx;
    (void)tid;
    quantize_row(J->x + t * J->k, J->k, J->xq + t * J->ldq, J->ldq, J->s + t, J->sum ? J->sum + t : NULL);
}

static void quantize_all(const float *x, int64_t m, int64_t k, int8_t *xq, int64_t ldq, float *s,
                         int32_t *sum, int nthreads) {
    QuantJob J = {x, k, ldq, xq, s, sum};
    pool_run(quant_task, &J, m, m * k < 32768 ? 1 : nthreads);
}

TRI_EXPORT void tri_quantize_rows(const float *x, int64_t m, int64_t k, int8_t *xq, float *s,
                                  int nthreads) {
    quantize_all(x, m, k, xq, k, s, NULL, nthreads);
}

static inline float act_apply(int act, float v) {
    switch (act) {
    /* NaN passes through, as in torch.relu / F.relu6 */
    case TRI_ACT_RELU: return v < 0.0f ? 0.0f : v;
    case TRI_ACT_RELU6: return v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v);
    case TRI_ACT_GELU: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    case TRI_ACT_SILU: return v / (1.0f + expf(-v));
    case TRI_ACT_SIGMOID: return 1.0f / (1.0f + expf(-v));
    case TRI_ACT_TANH: return tanhf(v);
    default: return v;
    }
}

typedef struct {
    const float *scale;
    int64_t nscale;
    const float *bias;
    const float *residual;
    int act;
} Epi;

static inline float epi_apply(const Epi *e, int64_t n, int64_t t, int64_t col, float v) {
    v *= e->scale[e->nscale == 1 ? 0 : col];
    if (e->bias) v += e->bias[col];
    if (e->residual) v += e->residual[t * n + col];
    return act_apply(e->act, v);
}

