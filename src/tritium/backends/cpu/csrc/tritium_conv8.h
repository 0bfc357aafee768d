/* tritium_conv8.h: the int8-activation implicit-GEMM ternary conv2d (act_quant "int8_image").
 * A section of tritium_kernels.c, included by it before tritium_conv.h (build.py renders it
 * inline into one translation unit); not a standalone header.
 *
 * Semantics (TriLinearPlan.act_quant == TRI_AQ_IMAGE): each image (sample) of the NCHW input
 * is quantized once with one absmax scale, s_b = max|x[b]| / 127 (1 when 0), q = clamp(
 * round_half_even(x / s_b), -127, 127) -- exactly tri_quantize_rows on the flattened image --
 * so every output sums int8 values of one scale and the conv is an exact int32 sum:
 *   y[b, o, oh, ow] = act((float)sum_{c,i,j} q[b, c, ih, iw] * t[o, c, i, j] * s_b * scale[o]
 *                         + bias[o] + residual[b, o, oh, ow]).
 *
 * Layouts: the quantized image is stored once per call as zero-padded NHWC bytes u = q + 128
 * (padding holds q = 0, i.e. 128), channels rounded up to a multiple of 4 (cp), so the 4 input
 * channels of one tap are 4 contiguous bytes. The weight is re-laid out once per plan
 * (tri_conv8_pack) in panels of 16 output channels: for k group kq = tap * cp/4 + c/4, 64
 * bytes holding channel r's trits of input channels 4(c/4)..+3 at bytes 4r..4r+3 (s8), then
 * int32 wsum[o] = sum of o's trits. sum u * t = sum q * t + 128 * wsum, so the kernels
 * subtract 128 * wsum[o] (exact). AVX-512 VNNI: one vpdpbusd per panel and position (u8 x s8,
 * 16 channels x 4 k), 6 positions x 4 panels of accumulators; AVX2: vpmaddubsw (pairs <= 510)
 * summed in int16 for at most 64 groups (<= 32640, no overflow), then vpmaddwd into int32;
 * elsewhere (NEON, portable): C loops on the same layout. The positions of a task are output
 * positions read in place from the padded image (tap (i, j) at a fixed byte offset), no patch
 * matrix; the epilogue writes NCHW planes. */

#define TRI_AQ_IMAGE 2
#define TRI_C8_PANEL 16 /* output channels per panel (16 x 4 k = 64 bytes) */
#if TRI_ISA_AVX512
#define TRI_C8_NRV 4   /* panels per micro-kernel: 6 x 4 zmm accumulators + 4 weights */
#define TRI_C8_MR 6
#elif TRI_ISA_AVX2
/* 4 x 2 ymm int16 accumulators + 2 weights + a broadcast: with 6 positions (16 ymm live)
 * GCC kept a third of the accumulators on the stack, a load and a store each per group
 * (MobileNetV2 at batch 1: 4.0 -> 3.5 ms with 4) */
#define TRI_C8_NRV 1
#define TRI_C8_MR 4
#else
#define TRI_C8_NRV 1
#define TRI_C8_MR 4
#endif
#define TRI_C8_NR (TRI_C8_NRV * TRI_C8_PANEL)
#define TRI_C8_CHUNK 96 /* positions per task (a multiple of TRI_C8_MR) */
#define TRI_C8_FLUSH 64 /* AVX2: k groups summed in int16 before widening to int32 */
#define C8_TILE_BYTES ((size_t)(TRI_C8_CHUNK * TRI_C8_NR) * 4) /* a task's sums (or floats) */

typedef int32_t tri_c8_u32 __attribute__((may_alias, aligned(4)));

static inline int64_t c8_cp(int64_t c) { return (c + 3) & ~(int64_t)3; }
static inline int64_t c8_kq(const TriConvGeom *g) { return g->kh * g->kw * c8_cp(g->c) / 4; }
static inline int64_t c8_np(int64_t n) { return (n + TRI_C8_PANEL - 1) / TRI_C8_PANEL; }

/* int8_image mode, one group: the only geometry these kernels take */
static int c8_fits(const TriLinearPlan *p, const TriConvGeom *g) {
    return p->act_quant == TRI_AQ_IMAGE && g->groups == 1 && p->k == g->c * g->kh * g->kw;
}

/* The bytes of the weight layout tri_conv2d_planned wants (as its gw) in int8_image mode for
 * this geometry (panels, then int32 row sums); 0 when it does not run this conv. */
TRI_EXPORT int64_t tri_conv8_bytes(const TriLinearPlan *p, const TriConvGeom *g) {
    if (!c8_fits(p, g)) return 0;
    return c8_np(p->n) * (c8_kq(g) * 64 + TRI_C8_PANEL * 4);
}

/* Lay p's weight out for geometry g (see above). Returns 0, 1 if out of memory, 2 for a
 * geometry tri_conv8_bytes refuses. */
TRI_EXPORT int tri_conv8_pack(const TriLinearPlan *p, const TriConvGeom *g, int8_t *out) {
    if (!c8_fits(p, g)) return 2;
    const int64_t k = p->k, n = p->n, nb = n_blocks(p->fmt, k), np = c8_np(n);
    const int64_t kq = c8_kq(g), cq = c8_cp(g->c) / 4, khw = g->kh * g->kw;
    uint8_t *codes = tri_alloc((size_t)(nb * blk_elems(p->fmt)));
    if (!codes) return 1;
    memset(out, 0, (size_t)(np * kq * 64));
    int32_t *wsum = (int32_t *)(out + np * kq * 64);
    memset(wsum, 0, (size_t)(np * TRI_C8_PANEL) * sizeof(int32_t));
    for (int64_t o = 0; o < n; o++) {
        decode_codes(p->fmt, p->w + o * p->row_bytes, nb, codes);
        int8_t *panel = out + o / TRI_C8_PANEL * kq * 64 + o % TRI_C8_PANEL * 4;
        int32_t s = 0;
        for (int64_t c = 0; c < g->c; c++)
            for (int64_t t = 0; t < khw; t++) {
                const int tr = (int)codes[c * khw + t] - 1;
                panel[(t * cq + c / 4) * 64 + c % 4] = (int8_t)tr;
                s += tr;
            }
        wsum[o] = s;
    }
    free(codes);
    return 0;
}

typedef struct {
    const TriLinearPlan *p;
    const TriConvGeom *g;
    const float *x, *residual;
    const int8_t *wp;       /* the layout of tri_conv8_pack */
    const int32_t *wsum;
    float *y;
    uint8_t *xp;            /* batch padded NHWC images of img bytes */
    float *sx;              /* per image scale */
    const int64_t *off;     /* byte offset of each tap */
    int64_t img, hp, wpix, cp, kq, ntap, L, m, nchunk, nblk;
    int act;
    int32_t *acc[TRI_MAX_THREADS];
    float *ftile[TRI_MAX_THREADS];  /* per thread: the scaled sums of a task */
    int8_t *qbuf[TRI_MAX_THREADS];  /* per thread: one image quantized, NCHW */
    _Atomic int oom;
} C8Job;

/* task = image: quantized once (tri_quantize_rows' arithmetic over the flattened image, whose
 * second pass reads it from cache) into a per-thread buffer, then written into the padded
 * NHWC image (padding and channel tail 128, i.e. q = 0) while that buffer is in cache */
static void c8_image_task(void *ctx, int64_t b, int tid) {
    C8Job *J = ctx;
    const TriConvGeom *g = J->g;
    const int64_t hw = g->h * g->w, chw = g->c * hw, cp = J->cp;
    if (!J->qbuf[tid]) J->qbuf[tid] = scratch_get(TRI_SCRATCH_C8_Q, (size_t)chw);
    int8_t *q = J->qbuf[tid];
    if (!q) {
        atomic_store(&J->oom, 1);
        return;
    }
    quantize_row(J->x + b * chw, chw, q, chw, J->sx + b, NULL);
    uint8_t *img = J->xp + b * J->img;
    if (g->ph == 0 && g->pw == 0 && cp == g->c) {   /* every byte but the tail is written */
        const int64_t used = g->h * g->w * cp;
        memset(img + used, 0x80, (size_t)(J->img - used));
    } else {
        memset(img, 0x80, (size_t)J->img);
    }
    for (int64_t ih = 0; ih < g->h; ih++) {
        uint8_t *d = img + ((ih + g->ph) * J->wpix + g->pw) * cp;
        const int8_t *qr = q + ih * g->w;
        int64_t c = 0;
        for (; c + 4 <= g->c; c += 4) {   /* 4 channels of a pixel as one 32-bit store */
            const int8_t *q0 = qr + c * hw, *q1 = q0 + hw, *q2 = q1 + hw, *q3 = q2 + hw;
            int64_t iw = 0;
#if TRI_ISA_AVX2 || TRI_ISA_AVX512
            /* 16 pixels at a time: the 4 planes' bytes interleaved by unpacks */
            for (; iw + 16 <= g->w; iw += 16) {
                const __m128i x0 = _mm_loadu_si128((const __m128i *)(q0 + iw));
                const __m128i x1 = _mm_loadu_si128((const __m128i *)(q1 + iw));
                const __m128i x2 = _mm_loadu_si128((const __m128i *)(q2 + iw));
                const __m128i x3 = _mm_loadu_si128((const __m128i *)(q3 + iw));
                const __m128i a0 = _mm_unpacklo_epi8(x0, x1), a1 = _mm_unpackhi_epi8(x0, x1);
                const __m128i b0 = _mm_unpacklo_epi8(x2, x3), b1 = _mm_unpackhi_epi8(x2, x3);
                const __m128i off = _mm_set1_epi8((char)0x80);
                __m128i wv[4] = {_mm_xor_si128(_mm_unpacklo_epi16(a0, b0), off),
                                 _mm_xor_si128(_mm_unpackhi_epi16(a0, b0), off),
                                 _mm_xor_si128(_mm_unpacklo_epi16(a1, b1), off),
                                 _mm_xor_si128(_mm_unpackhi_epi16(a1, b1), off)};
                uint8_t *dp = d + iw * cp + c;
                if (cp == 4) {
                    for (int i = 0; i < 4; i++) _mm_storeu_si128((__m128i *)(dp + 16 * i), wv[i]);
                } else {
                    int32_t tmp[16];
                    memcpy(tmp, wv, sizeof tmp);
                    for (int i = 0; i < 16; i++) *(tri_c8_u32 *)(dp + i * cp) = tmp[i];
                }
            }
#endif
            for (; iw < g->w; iw++) {
                const uint32_t v = (uint32_t)(uint8_t)q0[iw] | (uint32_t)(uint8_t)q1[iw] << 8
                                   | (uint32_t)(uint8_t)q2[iw] << 16
                                   | (uint32_t)(uint8_t)q3[iw] << 24;
                *(tri_c8_u32 *)(d + iw * cp + c) = (int32_t)(v ^ 0x80808080u);
            }
        }
        for (; c < g->c; c++)
            for (int64_t iw = 0; iw < g->w; iw++)
                d[iw * cp + c] = (uint8_t)(qr[c * hw + iw] ^ 0x80);
    }
}

#if TRI_ISA_AVX512
static inline __attribute__((always_inline)) void c8_block(
    const uint8_t *const *src, const int64_t *off, int64_t ntap, int64_t cq, const int8_t *w,
    int64_t pstride, int32_t *acc, const int NR) {
    __m512i a[TRI_C8_MR][TRI_C8_NRV];
    for (int u = 0; u < TRI_C8_MR; u++)
        for (int v = 0; v < NR; v++) a[u][v] = _mm512_setzero_si512();
    for (int64_t t = 0; t < ntap; t++) {
        const int64_t o = off[t];
        for (int64_t c = 0; c < cq; c++, w += 64) {
            __m512i wv[TRI_C8_NRV];
            for (int v = 0; v < NR; v++) wv[v] = _mm512_loadu_si512((const void *)(w + v * pstride));
            for (int u = 0; u < TRI_C8_MR; u++) {
                const __m512i xv = _mm512_set1_epi32(*(const tri_c8_u32 *)(src[u] + o + 4 * c));
                for (int v = 0; v < NR; v++) a[u][v] = _mm512_dpbusd_epi32(a[u][v], xv, wv[v]);
            }
        }
    }
    for (int u = 0; u < TRI_C8_MR; u++)
        for (int v = 0; v < NR; v++)
            _mm512_storeu_si512((void *)(acc + u * TRI_C8_NR + v * 16), a[u][v]);
}

static void c8_rows(const uint8_t *const *src, const int64_t *off, int64_t ntap, int64_t cq,
                    const int8_t *w, int64_t pstride, int32_t *acc, int nr) {
    switch (nr) {
    case 1: c8_block(src, off, ntap, cq, w, pstride, acc, 1); break;
    case 2: c8_block(src, off, ntap, cq, w, pstride, acc, 2); break;
    case 3: c8_block(src, off, ntap, cq, w, pstride, acc, 3); break;
    default: c8_block(src, off, ntap, cq, w, pstride, acc, 4); break;
    }
}
#elif TRI_ISA_AVX2
/* int16 partial sums in registers over at most TRI_C8_FLUSH groups, then widened into the
 * int32 tile in memory (so the 12 int16 accumulators never compete with int32 ones) */
static void c8_rows(const uint8_t *const *src, const int64_t *off, int64_t ntap, int64_t cq,
                    const int8_t *w, int64_t pstride, int32_t *acc, int nr) {
    (void)pstride; (void)nr;
    const __m256i ones = _mm256_set1_epi16(1);
    const int64_t groups = ntap * cq;
    if (groups == 0)
        for (int u = 0; u < TRI_C8_MR; u++)
            for (int v = 0; v < 2; v++)
                _mm256_storeu_si256((__m256i *)(acc + u * TRI_C8_NR + v * 8), _mm256_setzero_si256());
    int64_t t = 0, c = 0;
    for (int64_t g0 = 0; g0 < groups; g0 += TRI_C8_FLUSH) {
        const int64_t g1 = min64(groups, g0 + TRI_C8_FLUSH);
        __m256i a[TRI_C8_MR][2];
        for (int u = 0; u < TRI_C8_MR; u++) a[u][0] = a[u][1] = _mm256_setzero_si256();
        int64_t o = off[t];
        for (int64_t gi = g0; gi < g1; gi++, w += 64) {
            const __m256i w0 = _mm256_loadu_si256((const __m256i *)w);
            const __m256i w1 = _mm256_loadu_si256((const __m256i *)(w + 32));
            const int64_t at = o + 4 * c;
            for (int u = 0; u < TRI_C8_MR; u++) {
                const __m256i xv = _mm256_set1_epi32(*(const tri_c8_u32 *)(src[u] + at));
                a[u][0] = _mm256_add_epi16(a[u][0], _mm256_maddubs_epi16(xv, w0));
                a[u][1] = _mm256_add_epi16(a[u][1], _mm256_maddubs_epi16(xv, w1));
            }
            if (++c == cq) {
                c = 0;
                if (++t < ntap) o = off[t];
            }
        }
        for (int u = 0; u < TRI_C8_MR; u++)
            for (int v = 0; v < 2; v++) {   /* the first flush stores, the later ones add */
                __m256i *d = (__m256i *)(acc + u * TRI_C8_NR + v * 8);
                const __m256i sv = _mm256_madd_epi16(a[u][v], ones);
                _mm256_storeu_si256(d, g0 ? _mm256_add_epi32(_mm256_loadu_si256(d), sv) : sv);
            }
    }
}
#else
static void c8_rows(const uint8_t *const *src, const int64_t *off, int64_t ntap, int64_t cq,
                    const int8_t *w, int64_t pstride, int32_t *acc, int nr) {
    (void)pstride; (void)nr;
    int32_t a[TRI_C8_MR][TRI_C8_PANEL];
    memset(a, 0, sizeof a);
    for (int64_t t = 0; t < ntap; t++) {
        const int64_t o = off[t];
        for (int64_t c = 0; c < cq; c++, w += 64)
            for (int u = 0; u < TRI_C8_MR; u++) {
                const uint8_t *xs = src[u] + o + 4 * c;
                const int32_t x0 = xs[0], x1 = xs[1], x2 = xs[2], x3 = xs[3];
                for (int r = 0; r < TRI_C8_PANEL; r++)
                    a[u][r] += x0 * w[4 * r] + x1 * w[4 * r + 1] + x2 * w[4 * r + 2]
                               + x3 * w[4 * r + 3];
            }
    }
    for (int u = 0; u < TRI_C8_MR; u++)
        memcpy(acc + u * TRI_C8_NR, a[u], sizeof a[u]);
}
#endif

#if TRI_ISA_AVX2 || TRI_ISA_AVX512
/* r[j][i] = r[i][j]: 8 rows of 8 floats transposed in registers */
static inline __attribute__((always_inline)) void c8_tr8(__m256 r[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* The first r8 (a multiple of 8) positions of a run of the int32 sums a0 (positions x
 * TRI_C8_NR channels) into the NCHW planes y (channel c at y + c * ld): each row of 8 channels
 * scaled as the float tile's pass scales it ((sum - 128 wsum) * s_sample, then * scale + bias
 * in one fused multiply-add, as the compiler contracts that pass) on its way into an 8 x 8
 * transpose in registers (a strided scalar read per element before), then the residual and
 * relu/relu6 (or none) on vectors of 8 positions. The sums are read once and no float tile is
 * written and read back: a 24 -> 144 pointwise conv on a 32x32 plane spent more time in its
 * epilogue than in its products. The values are act_apply's (max(0, v) and min(6, v) return
 * v for NaN, and -0 for -0, as its compares do). */
static void c8_epi_sums(const int32_t *a0, int64_t r8, int64_t nc, const int32_t *corr,
                        const float *sc, const float *bi, float sb, float *y, const float *res,
                        int64_t ld, int act) {
    const __m256 zero = _mm256_setzero_ps(), six = _mm256_set1_ps(6.0f), sbv = _mm256_set1_ps(sb);
    for (int64_t c = 0; c < nc; c += 8) {
        const int live = (int)min64(8, nc - c);   /* the tile's columns past nc are finite */
        const __m256i cv = _mm256_loadu_si256((const __m256i *)(corr + c));
        const __m256 scv = _mm256_loadu_ps(sc + c), biv = _mm256_loadu_ps(bi + c);
        for (int64_t r = 0; r < r8; r += 8) {
            __m256 v[8];
            for (int i = 0; i < 8; i++) {
                const __m256i s = _mm256_loadu_si256((const __m256i *)(a0 + (r + i) * TRI_C8_NR + c));
                const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(s, cv)), sbv);
#ifdef __FMA__
                v[i] = _mm256_fmadd_ps(f, scv, biv);
#else
                v[i] = _mm256_add_ps(_mm256_mul_ps(f, scv), biv);
#endif
            }
            c8_tr8(v);
            for (int j = 0; j < live; j++) {
                __m256 a = v[j];
                if (res) a = _mm256_add_ps(a, _mm256_loadu_ps(res + (c + j) * ld + r));
                if (act != TRI_ACT_NONE) a = _mm256_max_ps(zero, a);
                if (act == TRI_ACT_RELU6) a = _mm256_min_ps(six, a);
                _mm256_storeu_ps(y + (c + j) * ld + r, a);
            }
        }
    }
}
#endif

/* task = channel block (TRI_C8_NRV panels) x chunk of positions (across the batch) */
static void c8_task(void *ctx, int64_t task, int tid) {
    C8Job *J = ctx;
    const TriLinearPlan *p = J->p;
    const TriConvGeom *g = J->g;
    const int64_t blk = task / J->nchunk, ch = task % J->nchunk, n = p->n;
    const int64_t p0 = blk * TRI_C8_NRV, np = c8_np(n);
    const int nr = (int)min64(TRI_C8_NRV, np - p0);
    const int64_t c0 = p0 * TRI_C8_PANEL, nc = min64((int64_t)nr * TRI_C8_PANEL, n - c0);
    const int64_t t0 = ch * TRI_C8_CHUNK, t1 = min64(J->m, t0 + TRI_C8_CHUNK);
    if (!J->acc[tid]) J->acc[tid] = scratch_get(TRI_SCRATCH_TILE, C8_TILE_BYTES);
    if (!J->ftile[tid]) J->ftile[tid] = scratch_get(TRI_SCRATCH_C8_F, C8_TILE_BYTES);
    int32_t *acc = J->acc[tid];
    if (!acc || !J->ftile[tid]) {
        atomic_store(&J->oom, 1);
        return;
    }
    const int64_t pstride = J->kq * 64;
    const int8_t *w = J->wp + p0 * pstride;
    /* (image, row, column) of position t0, then stepped: no division per position */
    int64_t b0 = t0 / J->L, oh0 = t0 % J->L / g->wo, ow0 = t0 % g->wo;
    for (int64_t t = t0; t < t1; t += TRI_C8_MR) {
        const uint8_t *src[TRI_C8_MR];
        for (int u = 0; u < TRI_C8_MR; u++) {
            if (t + u < t1) {
                src[u] = J->xp + b0 * J->img + (oh0 * g->sh * J->wpix + ow0 * g->sw) * J->cp;
                if (++ow0 == g->wo) {
                    ow0 = 0;
                    if (++oh0 == g->ho) { oh0 = 0; b0++; }
                }
            } else {
                src[u] = src[0];   /* a tail repeats its first row */
            }
        }
        c8_rows(src, J->off, J->ntap, J->cp / 4, w, pstride, acc + (t - t0) * TRI_C8_NR, nr);
    }
    /* the epilogue: per position, the block's channels as lanes (vectorized: the correction,
     * sample and channel scales, bias) into a float tile in place of the sums; then channel
     * by channel over the chunk's runs of one image (contiguous in the channel's plane), the
     * residual and activation */
    float sc[TRI_C8_NR], bi[TRI_C8_NR];
    int32_t corr[TRI_C8_NR];
    for (int64_t c = 0; c < TRI_C8_NR; c++) {
        const int64_t o = c0 + (c < nc ? c : 0);
        sc[c] = p->scale[p->nscale == 1 ? 0 : o];
        bi[c] = p->bias ? p->bias[o] : 0.0f;
        corr[c] = 128 * J->wsum[o];
    }
    float *ft = J->ftile[tid];
    for (int64_t t = t0; t < t1;) {
        const int64_t b = t / J->L, l0 = t % J->L, run = min64(t1 - t, J->L - l0);
        const float sb = J->sx[b];
        int64_t r0 = 0;   /* positions before r0 are written */
#if TRI_ISA_AVX2 || TRI_ISA_AVX512
        if (J->act == TRI_ACT_NONE || J->act == TRI_ACT_RELU || J->act == TRI_ACT_RELU6) {
            r0 = run & ~(int64_t)7;
            c8_epi_sums(acc + (t - t0) * TRI_C8_NR, r0, nc, corr, sc, bi, sb,
                        J->y + (b * n + c0) * J->L + l0,
                        J->residual ? J->residual + (b * n + c0) * J->L + l0 : NULL, J->L, J->act);
        }
#endif
        for (int64_t r = r0; r < run; r++) {
            const int32_t *ar = acc + (t - t0 + r) * TRI_C8_NR;
            float *fr = ft + (t - t0 + r) * TRI_C8_NR;
            for (int c = 0; c < TRI_C8_NR; c++) fr[c] = (float)(ar[c] - corr[c]) * sb * sc[c] + bi[c];
        }
        const float *f0 = ft + (t - t0) * TRI_C8_NR;
        for (int64_t c = 0; c < nc; c++) {
            const int64_t at = (b * n + c0 + c) * J->L + l0;
            float *dst = J->y + at;
            if (J->residual) {
                const float *res = J->residual + at;
                for (int64_t r = r0; r < run; r++)
                    dst[r] = act_apply(J->act, f0[r * TRI_C8_NR + c] + res[r]);
            } else if (J->act == TRI_ACT_RELU) {
                for (int64_t r = r0; r < run; r++) {
                    const float v = f0[r * TRI_C8_NR + c];
                    dst[r] = v < 0.0f ? 0.0f : v;
                }
            } else if (J->act == TRI_ACT_NONE) {
                for (int64_t r = r0; r < run; r++) dst[r] = f0[r * TRI_C8_NR + c];
            } else {
                for (int64_t r = r0; r < run; r++) dst[r] = act_apply(J->act, f0[r * TRI_C8_NR + c]);
            }
        }
        t += run;
    }
}

/* int8_image mode: quantize each image once, lay it out padded NHWC, run the implicit GEMM
 * on the layout gw of tri_conv8_pack (or a layout made here when gw is NULL). */
static int conv8(const TriLinearPlan *p, const TriConvGeom *g, const float *x, int64_t batch,
                 const float *residual, int act, const int8_t *gw, float *y, int nthreads) {
    const int64_t n = p->n, chw = g->c * g->h * g->w;
    C8Job *J = calloc(1, sizeof(C8Job));
    if (!J) return 1;
    J->p = p; J->g = g; J->x = x; J->residual = residual; J->y = y; J->act = act;
    J->cp = c8_cp(g->c);
    J->kq = c8_kq(g);
    J->ntap = g->kh * g->kw;
    J->hp = g->h + 2 * g->ph;
    J->wpix = g->w + 2 * g->pw;
    J->img = (J->hp * J->wpix * J->cp + 63) & ~(int64_t)63;
    J->L = g->ho * g->wo;
    J->m = batch * J->L;
    J->nchunk = (J->m + TRI_C8_CHUNK - 1) / TRI_C8_CHUNK;
    J->nblk = (c8_np(n) + TRI_C8_NRV - 1) / TRI_C8_NRV;
    atomic_init(&J->oom, 0);
    int8_t *own = NULL;
    if (!gw) {
        own = tri_alloc((size_t)tri_conv8_bytes(p, g));
        if (own && tri_conv8_pack(p, g, own)) {
            free(own);
            own = NULL;
        }
        gw = own;
    }
    int64_t *off = tri_alloc((size_t)J->ntap * sizeof(int64_t));
    J->sx = tri_alloc((size_t)batch * sizeof(float));
    const size_t xp_bytes = (size_t)(batch * J->img);
    J->xp = scratch_get(TRI_SCRATCH_C8_IMG, xp_bytes);
    int err = 1;
    if (gw && off && J->sx && J->xp) {
        J->wp = gw;
        J->wsum = (const int32_t *)(gw + c8_np(n) * J->kq * 64);
        for (int64_t i = 0, t = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++, t++)
                off[t] = (i * g->dh * J->wpix + j * g->dw) * J->cp;
        J->off = off;
        pool_run(c8_image_task, J, batch, team_for_work((double)(batch * chw) * 16.0, nthreads));
        const double work = (double)J->m * (double)n * (double)(J->kq * 4) * TRI_INT8_WORK;
        pool_run(c8_task, J, J->nblk * J->nchunk, team_for_work(work, nthreads));
        err = atomic_load(&J->oom) ? 1 : 0;
        for (int i = 0; i < TRI_MAX_THREADS; i++) {
            scratch_put(J->acc[i], C8_TILE_BYTES);
            scratch_put(J->ftile[i], C8_TILE_BYTES);
            scratch_put(J->qbuf[i], (size_t)chw);
        }
    }
    scratch_put(J->xp, xp_bytes);
    free(own); free(off); free(J->sx); free(J);
    return err;
}
