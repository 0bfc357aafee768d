/* tritium_g2.h: the G2 GEMM for int8 batches (AVX-512 VNNI), its weight re-layout and micro-kernels.
 * A section of tritium_kernels.c, included by it at this point (build.py renders it
 * inline into one translation unit); not a standalone header. */

/* ------------------------------------------------------------------------------------ */
/* G2 GEMM for int8 batches of TRI_GEMM_MIN_M tokens and more (AVX-512 VNNI).            */
/*                                                                                      */
/* The packed rows are re-laid out once per weight (tri_g2_pack, cached by the runtime)  */
/* as 2-bit codes in panels of 16 output channels: byte [p][g][c] holds the codes of     */
/* channel 16 p + c at k = 4g .. 4g + 3 (k = 4g in the low two bits). One zero-extension  */
/* (16 bytes -> 16 dwords), one bit-field select (vpmultishiftqb) and one AND give a zmm  */
/* of 16 channels x 4 codes, which is the unsigned operand of vpdpbusd; the signed        */
/* operand is a 4-byte broadcast of the token's int8 activations. The micro-kernel keeps */
/* TRI_GEMM_MR tokens x TRI_GEMM_NRV zmm (16 channels each) of int32 sums in registers,   */
/* so every expanded weight vector serves MR tokens and every broadcast NRV vectors.      */
/* Tasks are (group of NRV panels) x (chunk of TRI_GEMM_MC tokens); K is split in blocks  */
/* of TRI_GEMM_KC (0: whole rows) with the partial sums kept in a per-thread tile.        */
/* ------------------------------------------------------------------------------------ */

/* on the AVX2 path the entry points below run the GEMM of tritium_g2avx2.h */
#define TRI_HAVE_G2 (TRI_ISA_AVX512 || TRI_HAVE_G2A)

static inline int64_t g2_k4(int64_t k) { return (k + 3) / 4; }
static inline int64_t g2_n16(int64_t n) { return (n + 15) / 16; }

typedef struct {
    int fmt;
    const uint8_t *w;
    int64_t n, k, row_bytes, nb, kpad;
    uint8_t *out;
    _Atomic int oom;
} G2PackJob;

#define G2_PACK_PANELS 8 /* panels per pack task */

static void g2_pack_task(void *ctx, int64_t task, int tid) {
    G2PackJob *J = ctx;
    (void)tid;
    const int64_t k4 = g2_k4(J->k), n16 = g2_n16(J->n);
    uint8_t *codes = tri_alloc((size_t)(16 * J->kpad));
    if (!codes) {
        atomic_store(&J->oom, 1);
        return;
    }
    const int64_t p1 = min64(n16, (task + 1) * G2_PACK_PANELS);
    for (int64_t p = task * G2_PACK_PANELS; p < p1; p++) {
        for (int c = 0; c < 16; c++) {
            const int64_t row = 16 * p + c;
            if (row < J->n) decode_codes(J->fmt, J->w + row * J->row_bytes, J->nb, codes + c * J->kpad);
            else memset(codes + c * J->kpad, 1, (size_t)J->kpad); /* a zero-trit channel */
        }
        uint8_t *o = J->out + p * k4 * 16;
        for (int64_t g = 0; g < k4; g++)
            for (int c = 0; c < 16; c++) {
                const uint8_t *s = codes + c * J->kpad + 4 * g;
                o[g * 16 + c] = (uint8_t)(s[0] | (s[1] << 2) | (s[2] << 4) | (s[3] << 6));
            }
    }
    free(codes);
}

TRI_EXPORT int64_t tri_g2_bytes(int fmt, int64_t n, int64_t k) {
    (void)fmt;
    if (TRI_HAVE_G2A) return g2a_bytes(n, k);
    return TRI_HAVE_G2 ? g2_n16(n) * g2_k4(k) * 16 : 0;
}

TRI_EXPORT int tri_g2_pack(int fmt, const uint8_t *w, int64_t n, int64_t k, int64_t row_bytes,
                           uint8_t *out, int nthreads) {
    if (TRI_HAVE_G2A) return g2a_pack(fmt, w, n, k, row_bytes, out, nthreads);
    G2PackJob J = {.fmt = fmt, .w = w, .n = n, .k = k, .row_bytes = row_bytes, .out = out};
    J.nb = n_blocks(fmt, k);
    J.kpad = J.nb * blk_elems(fmt);
    atomic_init(&J.oom, 0);
    const int64_t n16 = g2_n16(n);
    pool_run(g2_pack_task, &J, (n16 + G2_PACK_PANELS - 1) / G2_PACK_PANELS, nthreads);
    return atomic_load(&J.oom);
}

#if TRI_ISA_AVX512
#define G2_MR TRI_GEMM_MR
#define G2_NRV TRI_GEMM_NRV
#define G2_NR (16 * TRI_GEMM_NRV)
#define G2_TILE_ROWS (((TRI_GEMM_MC + G2_MR - 1) / G2_MR) * G2_MR)
#define G2_TILE_BYTES ((size_t)G2_TILE_ROWS * G2_NR * sizeof(int32_t))

typedef int32_t tri_i32u __attribute__((may_alias, aligned(1)));

/* The intrinsic, not DPBUSD512: in these fully unrolled kernels GCC 12 keeps the
 * accumulators in place with it, while the asm form costs register copies in the loop. */
#define G2_DP(acc, w, x) acc = _mm512_dpbusd_epi32(acc, w, x)

/* 16 bytes (16 channels x 4 two-bit codes) -> 16 dwords of 4 code bytes (0..2). */
static inline __m512i g2_expand(const uint8_t *p) {
    const __m512i t = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
#if defined(__AVX512VBMI__)
    /* byte i of each qword takes the 8 bits at 32 (i / 4) + 2 (i % 4) */
    const __m512i sel = _mm512_set1_epi64(0x2624222006040200LL);
    return _mm512_and_si512(_mm512_multishift_epi64_epi8(sel, t), _mm512_set1_epi8(3));
#else
    __m512i r = _mm512_ternarylogic_epi32(t, _mm512_slli_epi32(t, 6), _mm512_slli_epi32(t, 12), 0xFE);
    return _mm512_ternarylogic_epi32(r, _mm512_slli_epi32(t, 18), _mm512_set1_epi8(3), 0xA8);
#endif
}

/* c[r][16 v + j] (+)= sum over groups g0..g1-1 of codes . activations, for R <= MR tokens x
 * NRV zmm. Always inlined into one function per R, so every loop below has constant bounds
 * and the accumulators live in registers. */
static inline __attribute__((always_inline)) void g2_micro_body(
    const int R, const int U, const int8_t *const *xr, const uint8_t *const *wp, int64_t g0,
    int64_t g1, int32_t *c, int acc_in) {
    /* U = 0: wp[v] are G2 panels (2-bit, expanded here); U = 1: wp[v] point into a block
     * already expanded by g2_unpack (zmm v of group g at (g - g0) * NRV + v) */
    const int64_t S = U ? 64 * G2_NRV : 16;
    __m512i acc[G2_MR][G2_NRV];
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < G2_NRV; v++)
            acc[r][v] = acc_in ? _mm512_loadu_si512(c + r * G2_NR + 16 * v) : _mm512_setzero_si512();
    const uint8_t *w[G2_NRV];
    const int8_t *x[G2_MR];
#pragma GCC unroll 4
    for (int v = 0; v < G2_NRV; v++) w[v] = wp[v] + (U ? 0 : 16 * g0);
#pragma GCC unroll 16
    for (int r = 0; r < R; r++) x[r] = xr[r] + 4 * g0;
    /* fewer than 8 accumulators cannot hide the vpdpbusd latency: then odd groups go to a
     * second set, added at the end */
    const int SPLIT = R * G2_NRV < 8;
    __m512i acc2[G2_MR][G2_NRV];
    if (SPLIT) {
#pragma GCC unroll 16
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int v = 0; v < G2_NRV; v++) acc2[r][v] = _mm512_setzero_si512();
    }
    int64_t g = g0;
    if (SPLIT) {
        for (; g + 2 <= g1; g += 2) {
            __m512i wv[G2_NRV], wu[G2_NRV];
#pragma GCC unroll 4
            for (int v = 0; v < G2_NRV; v++) {
#if TRI_GEMM_PF
                if (!U && ((uintptr_t)w[v] & 63) == 0) _mm_prefetch((const char *)(w[v] + TRI_GEMM_PF), _MM_HINT_T0);
#endif
                wv[v] = U ? _mm512_load_si512(w[v]) : g2_expand(w[v]);
                wu[v] = U ? _mm512_load_si512(w[v] + S) : g2_expand(w[v] + S);
                w[v] += 2 * S;
            }
#pragma GCC unroll 16
            for (int r = 0; r < R; r++) {
                const __m512i xb = _mm512_set1_epi32(*(const tri_i32u *)x[r]);
                const __m512i xc = _mm512_set1_epi32(*(const tri_i32u *)(x[r] + 4));
                x[r] += 8;
#pragma GCC unroll 4
                for (int v = 0; v < G2_NRV; v++) {
                    G2_DP(acc[r][v], wv[v], xb);
                    G2_DP(acc2[r][v], wu[v], xc);
                }
            }
        }
    }
    for (; g < g1; g++) {
        __m512i wv[G2_NRV];
#pragma GCC unroll 4
        for (int v = 0; v < G2_NRV; v++) {
#if TRI_GEMM_PF
            if (!U && ((uintptr_t)w[v] & 63) == 0) _mm_prefetch((const char *)(w[v] + TRI_GEMM_PF), _MM_HINT_T0);
#endif
            wv[v] = U ? _mm512_load_si512(w[v]) : g2_expand(w[v]);
            w[v] += S;
        }
#pragma GCC unroll 16
        for (int r = 0; r < R; r++) {
            const __m512i xb = _mm512_set1_epi32(*(const tri_i32u *)x[r]);
            x[r] += 4;
#pragma GCC unroll 4
            for (int v = 0; v < G2_NRV; v++) G2_DP(acc[r][v], wv[v], xb);
        }
    }
    if (SPLIT) {
#pragma GCC unroll 16
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int v = 0; v < G2_NRV; v++) acc[r][v] = _mm512_add_epi32(acc[r][v], acc2[r][v]);
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < G2_NRV; v++) _mm512_storeu_si512(c + r * G2_NR + 16 * v, acc[r][v]);
}

typedef void (*g2_micro_fn)(const int8_t *const *, const uint8_t *const *, int64_t, int64_t,
                            int32_t *, int);
#define G2_MICRO(R)                                                                          \
    __attribute__((noinline)) static void g2_micro_##R(const int8_t *const *xr,             \
                                                       const uint8_t *const *wp, int64_t g0, \
                                                       int64_t g1, int32_t *c, int acc_in) { \
        g2_micro_body(R, 0, xr, wp, g0, g1, c, acc_in);                                      \
    }                                                                                        \
    __attribute__((noinline)) static void g2_microu_##R(const int8_t *const *xr,            \
                                                        const uint8_t *const *wp, int64_t g0, \
                                                        int64_t g1, int32_t *c, int acc_in) { \
        g2_micro_body(R, 1, xr, wp, g0, g1, c, acc_in);                                      \
    }
G2_MICRO(1)
#if G2_MR >= 2
G2_MICRO(2)
#endif
#if G2_MR >= 3
G2_MICRO(3)
#endif
#if G2_MR >= 4
G2_MICRO(4)
#endif
#if G2_MR >= 5
G2_MICRO(5)
#endif
#if G2_MR >= 6
G2_MICRO(6)
#endif
#if G2_MR >= 7
G2_MICRO(7)
#endif
#if G2_MR >= 8
G2_MICRO(8)
#endif
#if G2_MR >= 9
G2_MICRO(9)
#endif
#if G2_MR >= 10
G2_MICRO(10)
#endif
#if G2_MR >= 11
G2_MICRO(11)
#endif
#if G2_MR >= 12
G2_MICRO(12)
#endif
#if G2_MR > 12
#error "TRI_GEMM_MR above 12 is not supported"
#endif

/* g2_micro_tab[U][R] runs R tokens (1 <= R <= MR) on packed (U = 0) or expanded (U = 1)
 * weights: a batch tail costs only its own rows */
static const g2_micro_fn g2_micro_tab[2][G2_MR + 1] = {
    {NULL, g2_micro_1,
#if G2_MR >= 2
     g2_micro_2,
#endif
#if G2_MR >= 3
     g2_micro_3,
#endif
#if G2_MR >= 4
     g2_micro_4,
#endif
#if G2_MR >= 5
     g2_micro_5,
#endif
#if G2_MR >= 6
     g2_micro_6,
#endif
#if G2_MR >= 7
     g2_micro_7,
#endif
#if G2_MR >= 8
     g2_micro_8,
#endif
#if G2_MR >= 9
     g2_micro_9,
#endif
#if G2_MR >= 10
     g2_micro_10,
#endif
#if G2_MR >= 11
     g2_micro_11,
#endif
#if G2_MR >= 12
     g2_micro_12,
#endif
    },
    {NULL, g2_microu_1,
#if G2_MR >= 2
     g2_microu_2,
#endif
#if G2_MR >= 3
     g2_microu_3,
#endif
#if G2_MR >= 4
     g2_microu_4,
#endif
#if G2_MR >= 5
     g2_microu_5,
#endif
#if G2_MR >= 6
     g2_microu_6,
#endif
#if G2_MR >= 7
     g2_microu_7,
#endif
#if G2_MR >= 8
     g2_microu_8,
#endif
#if G2_MR >= 9
     g2_microu_9,
#endif
#if G2_MR >= 10
     g2_microu_10,
#endif
#if G2_MR >= 11
     g2_microu_11,
#endif
#if G2_MR >= 12
     g2_microu_12,
#endif
    },
};

/* Expand groups g0..g1-1 of NRV panels into buf ([g - g0][v] zmm). */
static void g2_unpack(const uint8_t *const *wp, int64_t g0, int64_t g1, uint8_t *buf) {
    for (int64_t g = g0; g < g1; g++)
        for (int v = 0; v < G2_NRV; v++)
            _mm512_store_si512(buf + ((g - g0) * G2_NRV + v) * 64, g2_expand(wp[v] + 16 * g));
}

/* y[t, c0 .. c0 + cnt) from the int32 sums of one token and 16 channels. */
static void g2_epilogue(const Problem *P, int64_t t, int64_t c0, int cnt, const int32_t *acc) {
    const int64_t n = P->n;
    const __mmask16 m = (__mmask16)(cnt >= 16 ? 0xFFFFu : ((1u << cnt) - 1u));
    const __m512i v = _mm512_sub_epi32(_mm512_loadu_si512(acc), _mm512_set1_epi32(P->sumx[t]));
    if (P->yi) {
        _mm512_mask_storeu_epi32(P->yi + t * n + c0, m, v);
        return;
    }
    const Epi *e = &P->epi;
    __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_set1_ps(P->sx[t]));
    f = _mm512_mul_ps(f, e->nscale == 1 ? _mm512_set1_ps(e->scale[0]) : _mm512_maskz_loadu_ps(m, e->scale + c0));
    if (e->bias) f = _mm512_add_ps(f, _mm512_maskz_loadu_ps(m, e->bias + c0));
    if (e->residual) f = _mm512_add_ps(f, _mm512_maskz_loadu_ps(m, e->residual + t * n + c0));
    float *dst = P->y + t * n + c0;
    switch (e->act) {
    case TRI_ACT_NONE: break;
    /* vmaxps/vminps return the second operand when one is NaN: NaN passes, as in torch */
    case TRI_ACT_RELU: f = _mm512_max_ps(_mm512_setzero_ps(), f); break;
    case TRI_ACT_RELU6: f = _mm512_min_ps(_mm512_set1_ps(6.0f), _mm512_max_ps(_mm512_setzero_ps(), f)); break;
    default:
        _mm512_mask_storeu_ps(dst, m, f);
        for (int j = 0; j < cnt; j++) dst[j] = act_apply(e->act, dst[j]);
        return;
    }
    _mm512_mask_storeu_ps(dst, m, f);
}

typedef struct {
    const Problem *P;
    const uint8_t *gw;
    int64_t n16, k4, ngroups;
    int32_t *tile[TRI_MAX_THREADS]; /* per-thread MC x NR partial sums, the thread's scratch */
    uint8_t *wbuf[TRI_MAX_THREADS]; /* per-thread expanded weight block (TRI_GEMM_UNPACK) */
    size_t wbuf_bytes;
    _Atomic int err;
} G2Job;

/* task = chunk * ngroups + group: consecutive tasks share the chunk's activations */
static void g2_task(void *ctx, int64_t task, int tid) {
    G2Job *J = ctx;
    const Problem *P = J->P;
    const int64_t grp = task % J->ngroups, ch = task / J->ngroups;
    const int64_t t0 = ch * TRI_GEMM_MC, t1 = min64(P->m, t0 + TRI_GEMM_MC);
    const int64_t p0 = grp * G2_NRV;
    if (!J->tile[tid]) J->tile[tid] = scratch_get(TRI_SCRATCH_TILE, G2_TILE_BYTES);
    int32_t *tile = J->tile[tid];
    if (!tile) {
        atomic_store(&J->err, 1);
        return;
    }
    const uint8_t *wp[G2_NRV];
    for (int v = 0; v < G2_NRV; v++) wp[v] = J->gw + min64(p0 + v, J->n16 - 1) * J->k4 * 16;
    const int64_t kcg = TRI_GEMM_KC > 0 ? TRI_GEMM_KC / 4 : J->k4;
    /* expand the weights once per block when more than one micro-kernel call will use them */
    const int unpack = TRI_GEMM_UNPACK && t1 - t0 > G2_MR;
    uint8_t *buf = NULL;
    if (unpack) {
        if (!J->wbuf[tid]) J->wbuf[tid] = scratch_get(TRI_SCRATCH_WBUF, J->wbuf_bytes);
        buf = J->wbuf[tid];
        if (!buf) {
            atomic_store(&J->err, 1);
            return;
        }
    }
    const uint8_t *bp[G2_NRV];
    for (int v = 0; v < G2_NRV; v++) bp[v] = buf + 64 * v;
    if (J->k4 == 0) memset(tile, 0, G2_TILE_BYTES); /* K = 0 */
    for (int64_t g0 = 0; g0 < J->k4; g0 += kcg) {
        const int64_t g1 = min64(J->k4, g0 + kcg);
        if (unpack) g2_unpack(wp, g0, g1, buf);
        for (int64_t t = t0; t < t1; t += G2_MR) {
            const int rows = (int)min64(G2_MR, t1 - t);
            const int8_t *xr[G2_MR];
            for (int r = 0; r < rows; r++) xr[r] = P->xq + (t + r) * P->ldx;
            g2_micro_tab[unpack][rows](xr, unpack ? bp : wp, g0, g1, tile + (t - t0) * G2_NR, g0 > 0);
        }
    }
    for (int64_t t = t0; t < t1; t++)
        for (int v = 0; v < G2_NRV; v++) {
            const int64_t c0 = (p0 + v) * 16;
            if (c0 >= P->n) break;
            g2_epilogue(P, t, c0, (int)min64(16, P->n - c0), tile + (t - t0) * G2_NR + 16 * v);
        }
}

/* The int8 GEMM on the G2 layout gw (NULL: re-laid out here for this call). */
static int run_g2(const Problem *P, const uint8_t *gw, int nthreads) {
    if (nthreads > TRI_MAX_THREADS) nthreads = TRI_MAX_THREADS;
    if (nthreads < 1) nthreads = 1;
    uint8_t *own = NULL;
    if (!gw) {
        own = tri_alloc((size_t)tri_g2_bytes(P->fmt, P->n, P->k));
        if (!own || tri_g2_pack(P->fmt, P->w, P->n, P->k, P->row_bytes, own, nthreads)) {
            free(own);
            return 1;
        }
        gw = own;
    }
    G2Job *J = calloc(1, sizeof(G2Job));
    if (!J) {
        free(own);
        return 1;
    }
    J->P = P;
    J->gw = gw;
    J->n16 = g2_n16(P->n);
    J->k4 = g2_k4(P->k);
    J->ngroups = (J->n16 + G2_NRV - 1) / G2_NRV;
    J->wbuf_bytes = (size_t)(min64(TRI_GEMM_KC > 0 ? TRI_GEMM_KC / 4 : J->k4, J->k4) * G2_NR * 4);
    atomic_init(&J->err, 0);
    const int64_t nchunk = (P->m + TRI_GEMM_MC - 1) / TRI_GEMM_MC;
    const double work = (double)P->m * (double)P->n * (double)P->k * TRI_INT8_WORK;
    pool_run(g2_task, J, J->ngroups * nchunk, team_for_work(work, nthreads));
    int err = atomic_load(&J->err);
    for (int i = 0; i < TRI_MAX_THREADS; i++) {
        scratch_put(J->tile[i], G2_TILE_BYTES);
        scratch_put(J->wbuf[i], J->wbuf_bytes);
    }
    free(J);
    free(own);
    return err;
}
#elif TRI_HAVE_G2A
static int run_g2(const Problem *P, const uint8_t *gw, int nthreads) { return run_g2a(P, gw, nthreads); }
#else
static int run_g2(const Problem *P, const uint8_t *gw, int nthreads) {
    (void)P; (void)gw; (void)nthreads;
    return 1; /* never called: TRI_HAVE_G2 == 0 */
}
#endif
