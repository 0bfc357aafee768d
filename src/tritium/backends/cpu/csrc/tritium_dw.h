/* tritium_dw.h: the depthwise and pointwise convolutions of MobileNet-style blocks, fp32
 * activations, NCHW in and out (a section of tritium_kernels.c, rendered inline by build.py
 * after the panel GEMM and before tritium_conv.h, whose tri_conv2d_planned dispatches here).
 *
 * Pointwise (1x1, stride 1, no padding, groups 1): y[b, o, :] = sum_c w[o, c] x[b, c, :] is a
 * GEMM whose rows are the contiguous NCHW planes, so the input is read where it lies (no
 * copy, no padding, no phase planes). A task is a block of OB output channels (and a range
 * of images): it decodes its rows of trits to floats once, then for each run of
 * NV vectors of positions keeps OB x NV accumulators in registers over the real K (one
 * load per vector and channel, one broadcast weight per output channel) and writes them with
 * the scale/bias/residual/activation epilogue applied on vectors straight into y. The
 * positions of a last partial vector go through a zero-padded staging tile (never a read
 * past the input).
 *
 * Depthwise (groups == in channels == out channels, any kernel, stride, padding, dilation):
 * one channel is one plane and a handful of taps. Each channel's plane is copied once, zero
 * padded and split into stride phases (as the flat conv does), so that every tap is one
 * contiguous run at the padded row stride; the channel's taps that are not zero are listed
 * (weight +1 or -1), and each run of TRI_PW_NV vectors of positions sums them in registers:
 * a zero trit costs nothing (but on a plane holding NaN or an infinity, whose zero taps run
 * too: 0 * x is NaN there, as in the float convolution the frozen layer stands for). The rows
 * are then written with the epilogue. */

#if TRI_ISA_AVX512
#define TRI_PW_NV 4 /* vectors of positions per register block (the widest) */
#else
#define TRI_PW_NV 2 /* AVX2's 16 ymm (NEON: 2 q registers per vector) */
#endif
#define TRI_PW_RUN (TRI_PW_NV * VW) /* positions per register block */
/* floats of task scratch kept on the stack (36 KiB; a task that needs more allocates): a
 * malloc and free per task cost more than the taps of a small plane */
#define TRI_DW_STACK 9216

static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* The lane-by-lane activations (gelu, silu, ...) out of line: inlined into every register
 * block of every pw_block specialization they made the library 1.5x larger and its build
 * twice as long (the AVX-512 build: 15 s -> 7-8 s with this and pw_run below kept out of
 * line), for a call per vector beside 16 scalar transcendental functions. */
static __attribute__((noinline)) void dw_act_vec(tri_v16 *y, int act) {
    for (int i = 0; i < VW; i++) (*y)[i] = act_apply(act, (*y)[i]);
}

/* v = act(a * sc + bi (+ res)) on one vector: act_apply's values (NaN passes relu/relu6) */
static inline __attribute__((always_inline)) tri_v16 dw_epi_vec(tri_v16 a, tri_v16 sc,
                                                                tri_v16 bi, const float *res,
                                                                int act) {
    tri_v16 y = a * sc + bi;
    if (res) y += *(const tri_v16u *)res;
    if (act == TRI_ACT_RELU || act == TRI_ACT_RELU6) {
        y = (tri_v16)((tri_v16i)y & ~(tri_v16i)(y < 0.0f));
        if (act == TRI_ACT_RELU6) {
            const tri_v16i over = (tri_v16i)(y > 6.0f);
            y = (tri_v16)(((tri_v16i)y & ~over) | ((tri_v16i)((tri_v16){0} + 6.0f) & over));
        }
    } else if (act != TRI_ACT_NONE) {
        dw_act_vec(&y, act);
    }
    return y;
}

/* dst[i] = act(a[i] * sc + bi (+ res[i])) for i < len */
static void dw_epi_run(const float *a, int64_t len, float sc, float bi, const float *res,
                       int act, float *dst) {
    const tri_v16 s = (tri_v16){0} + sc, b = (tri_v16){0} + bi;
    int64_t i = 0;
    for (; i + VW <= len; i += VW)
        *(tri_v16u *)(dst + i) = dw_epi_vec(*(const tri_v16u *)(a + i), s, b,
                                            res ? res + i : NULL, act);
    for (; i < len; i++) {
        float v = a[i] * sc + bi;
        if (res) v += res[i];
        dst[i] = act_apply(act, v);
    }
}

/* ---- pointwise ---------------------------------------------------------------------------- */

/* Register blocks: NV vectors of positions x OB output channels, OB * NV accumulators. A plane
 * of at least TRI_PW_NV vectors takes the widest runs; a shorter one (MobileNetV2's 4x4 and
 * 8x8 planes) takes as many vectors as it has and more channels per block, so that the FMAs
 * in flight stay as many. */
#if TRI_ISA_AVX512
#define TRI_PW_OB_FOR(nv) ((nv) >= 4 ? 6 : (nv) == 3 ? 8 : (nv) == 2 ? 12 : 24)
#define TRI_PW_OB_MAX 24
#else
#define TRI_PW_OB_FOR(nv) ((nv) >= 2 ? 6 : 12)
#define TRI_PW_OB_MAX 12
#endif

typedef struct {
    const TriLinearPlan *p;
    const float *x, *residual;
    float *y;
    int64_t hw, nblk, gb, ipt; /* plane length, channel blocks, blocks per group, images per task */
    int64_t batch;
    int nv, ob;            /* vectors per run, channels per block */
    int act;
    _Atomic int oom;
} PwJob;

/* OB output channels (the first `live` of them stored) x NV vectors of positions:
 * a[o][v] = sum_k w(o, k) * src[k * ld + v VW], then the epilogue into y rows ldy apart. The
 * weights are k-blocked (pw_decode): w(o, k) = wt[(k / 4) * 4 * OB + o * 4 + k % 4], so that
 * with k unrolled by 4 every broadcast is one base register plus a constant. */
static inline __attribute__((always_inline)) void pw_block(
    const float *src, int64_t ld, int64_t K, const float *wt, const TriLinearPlan *p,
    int64_t o0, int live, const float *res, float *y, int64_t ldy, int act, const int OB,
    const int NV) {
    tri_v16 a[TRI_PW_OB_MAX][TRI_PW_NV];
#pragma GCC unroll 32
    for (int ob = 0; ob < OB; ob++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) a[ob][v] = (tri_v16){0};
    const int64_t k4 = K & ~(int64_t)3;
    for (int64_t k0 = 0; k0 < K; k0 += 4) {
        const float *w = wt + k0 * OB;
        const int kn = k0 < k4 ? 4 : (int)(K - k0);
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            if (j >= kn) break;
            const float *s = src + (k0 + j) * ld;
            tri_v16 xv[TRI_PW_NV];
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) xv[v] = *(const tri_v16u *)(s + v * VW);
#pragma GCC unroll 32
            for (int ob = 0; ob < OB; ob++) {
                const float wv = w[ob * 4 + j];
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++) a[ob][v] += wv * xv[v];
            }
        }
    }
#pragma GCC unroll 32
    for (int ob = 0; ob < OB; ob++) {
        if (ob >= live) break;
        const int64_t o = o0 + ob;
        const tri_v16 sc = (tri_v16){0} + p->scale[p->nscale == 1 ? 0 : o];
        const tri_v16 bi = (tri_v16){0} + (p->bias ? p->bias[o] : 0.0f);
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            *(tri_v16u *)(y + ob * ldy + v * VW) =
                dw_epi_vec(a[ob][v], sc, bi, res ? res + ob * ldy + v * VW : NULL, act);
    }
}

/* One call per register block (its K loop and epilogue dwarf a call); not inlined and not
 * cloned, because its specializations are most of the library's code and gcc otherwise
 * copies all of them into each of pw_task's two call sites. */
static __attribute__((noinline, noclone)) void pw_run(
    const float *src, int64_t ld, int64_t K, const float *wt, const TriLinearPlan *p, int64_t o0,
    int live, const float *res, float *y, int64_t ldy, int act, int ob, int nv) {
#define PW_CASE(O, V) case (O) * 8 + (V): \
        pw_block(src, ld, K, wt, p, o0, live, res, y, ldy, act, O, V); break;
    switch (ob * 8 + nv) {
#if TRI_ISA_AVX512
        PW_CASE(6, 1) PW_CASE(6, 2) PW_CASE(6, 3) PW_CASE(6, 4)
        PW_CASE(8, 1) PW_CASE(8, 2) PW_CASE(8, 3)
        PW_CASE(12, 1) PW_CASE(12, 2) PW_CASE(24, 1)
#else
        PW_CASE(6, 1) PW_CASE(6, 2) PW_CASE(12, 1)
#endif
    }
#undef PW_CASE
}

/* the trits of rows [o0, o0 + live) as floats, k-blocked (see pw_block): the rows past
 * live and the k past K zero */
static void pw_decode(const TriLinearPlan *p, int64_t o0, int live, int ob, uint8_t *codes,
                      float *wt) {
    const int64_t k = p->k, nb = n_blocks(p->fmt, k), kq = (k + 3) / 4;
    for (int r = 0; r < ob; r++) {
        if (r < live) {
            decode_codes(p->fmt, p->w + (o0 + r) * p->row_bytes, nb, codes);
            for (int64_t i = k; i < kq * 4; i++) codes[i] = 1;
        } else {
            memset(codes, 1, (size_t)(kq * 4));
        }
        for (int64_t q = 0; q < kq; q++)
            for (int j = 0; j < 4; j++)
                wt[q * 4 * ob + r * 4 + j] = (float)((int)codes[q * 4 + j] - 1);
    }
}

static void pw_task(void *ctx, int64_t task, int tid) {
    PwJob *J = ctx;
    (void)tid;
    const TriLinearPlan *p = J->p;
    const int64_t n = p->n, K = p->k, hw = J->hw, kp = (K + 3) / 4 * 4;
    const int OB = J->ob, NV = J->nv;
    const int64_t ngrp = (J->nblk + J->gb - 1) / J->gb;
    const int64_t grp = task % ngrp, it = task / ngrp;
    const int64_t blk0 = grp * J->gb, nb = min64(J->nblk, blk0 + J->gb) - blk0;
    const int64_t nfull = hw / VW, tail = hw % VW;
    /* scratch: the group's decoded blocks (nb x OB x kp), the codes of one row, and for a
     * partial last vector the staged input (K x VW) and output (OB x VW: residual, result) */
    const size_t floats = (size_t)(nb * OB * kp) + (tail ? (size_t)((K + 2 * OB) * VW) : 0);
    float stk[TRI_DW_STACK] __attribute__((aligned(64)));
    const size_t bytes = floats * sizeof(float) + (size_t)(n_blocks(p->fmt, K) * blk_elems(p->fmt));
    float *wt = bytes <= sizeof stk ? stk : tri_alloc(bytes);
    if (!wt) {
        atomic_store(&J->oom, 1);
        return;
    }
    float *xs = wt + nb * OB * kp, *rs = xs + K * VW, *ys = rs + OB * VW;
    uint8_t *codes = (uint8_t *)(wt + floats);
    for (int64_t i = 0; i < nb; i++) {
        const int64_t o0 = (blk0 + i) * OB;
        pw_decode(p, o0, (int)min64(OB, n - o0), OB, codes, wt + i * OB * kp);
    }
    const int64_t b1 = min64(J->batch, (it + 1) * J->ipt);
    for (int64_t b = it * J->ipt; b < b1; b++) {
        const float *xb = J->x + b * K * hw;
        /* each run of positions meets every block of the group while it is in L1 */
        for (int64_t v0 = 0; v0 < nfull; v0 += NV) {
            const int nv = (int)min64(NV, nfull - v0);
            for (int64_t i = 0; i < nb; i++) {
                const int64_t o0 = (blk0 + i) * OB, off = (b * n + o0) * hw + v0 * VW;
                pw_run(xb + v0 * VW, hw, K, wt + i * OB * kp, p, o0, (int)min64(OB, n - o0),
                       J->residual ? J->residual + off : NULL, J->y + off, hw, J->act, OB, nv);
            }
        }
        if (!tail) continue;
        const int64_t l0 = nfull * VW;
        for (int64_t c = 0; c < K; c++) {
            for (int64_t i = 0; i < tail; i++) xs[c * VW + i] = xb[c * hw + l0 + i];
            for (int64_t i = tail; i < VW; i++) xs[c * VW + i] = 0.0f;
        }
        for (int64_t i = 0; i < nb; i++) {
            const int64_t o0 = (blk0 + i) * OB;
            const int live = (int)min64(OB, n - o0);
            float *yb = J->y + (b * n + o0) * hw;
            const float *rb = J->residual ? J->residual + (b * n + o0) * hw : NULL;
            if (rb)
                for (int r = 0; r < live; r++)
                    for (int64_t l = 0; l < VW; l++)
                        rs[r * VW + l] = l < tail ? rb[r * hw + l0 + l] : 0.0f;
            pw_run(xs, VW, K, wt + i * OB * kp, p, o0, live, rb ? rs : NULL, ys, VW, J->act,
                   OB, 1);
            for (int r = 0; r < live; r++)
                for (int64_t l = 0; l < tail; l++) yb[r * hw + l0 + l] = ys[r * VW + l];
        }
    }
    if (wt != stk) free(wt);
}

/* A 1x1 convolution, stride 1, no padding, one group, fp32 activations. */
static inline int pw_conv_fits(const TriLinearPlan *p, const TriConvGeom *g) {
    return !p->act_quant && g->groups == 1 && g->kh == 1 && g->kw == 1 && g->sh == 1
           && g->sw == 1 && g->ph == 0 && g->pw == 0 && g->ho == g->h && g->wo == g->w
           && p->k == g->c;
}

static int pw_conv(const TriLinearPlan *p, const TriConvGeom *g, const float *x, int64_t batch,
                   const float *residual, int act, float *y, int nthreads) {
    PwJob J = {.p = p, .x = x, .residual = residual, .y = y, .hw = g->h * g->w,
               .batch = batch, .act = act};
    atomic_init(&J.oom, 0);
    const int64_t nvec = J.hw / VW;
    J.nv = (int)(nvec >= TRI_PW_NV ? TRI_PW_NV : nvec < 1 ? 1 : nvec);
    J.ob = TRI_PW_OB_FOR(J.nv);
    /* few channels: smaller blocks waste fewer zero rows */
    while (J.ob > 6 && J.ob / 2 >= p->n) J.ob /= 2;
    if (J.ob < 6) J.ob = 6;
    J.nblk = (p->n + J.ob - 1) / J.ob;
    const double work = (double)batch * (double)p->n * (double)p->k * (double)J.hw;
    const int team = team_for_work(work, nthreads);
    /* blocks grouped so that a group's weights stay in L2 (about 64 KiB) while the runs of
     * positions pass; images and groups split so that every thread finds a few tasks */
    const int64_t kp = (p->k + 3) / 4 * 4;
    J.gb = max64(1, min64(J.nblk, 16384 / (J.ob * kp)));
    int64_t parts = 1;
    while (parts < batch && (J.nblk + J.gb - 1) / J.gb * parts < 4 * (int64_t)team) parts *= 2;
    if (parts > batch) parts = batch;
    while (J.gb > 1 && (J.nblk + J.gb - 1) / J.gb * parts < 4 * (int64_t)team)
        J.gb = (J.gb + 1) / 2;
    J.ipt = (batch + parts - 1) / parts;
    pool_run(pw_task, &J, (J.nblk + J.gb - 1) / J.gb * ((batch + J.ipt - 1) / J.ipt), team);
    return atomic_load(&J.oom) ? 1 : 0;
}

/* ---- depthwise ---------------------------------------------------------------------------- */

typedef struct {
    const TriLinearPlan *p;
    const TriConvGeom *g;
    const float *x, *residual;
    float *y;
    int64_t hq, wq, len, lp, img, cpt, nct, kk;
    const int64_t *off; /* kk tap offsets in a channel's phase planes */
    const int32_t *nt;  /* per channel: how many taps are not zero */
    const int64_t *toff;/* per channel: kk offsets, the nonzero taps first */
    const float *tw;    /* per channel: their weights (+1 or -1) */
    int act;
    _Atomic int oom;
} DwJob;

/* channel c of image xb as zero-padded stride phases (phase (a, bph) holds padded rows a, a +
 * sh, ... and columns bph, bph + sw, ...), hq x wq each; then zeros up to J->img floats */
static void dw_copy(const DwJob *J, const float *xc, float *d0) {
    const TriConvGeom *g = J->g;
    const int64_t hq = J->hq, wq = J->wq, sh = g->sh, sw = g->sw;
    float *d = d0;
    for (int64_t a = 0; a < sh; a++)
        for (int64_t bph = 0; bph < sw; bph++) {
            /* column q of this phase reads input column q * sw + bph - pw */
            const int64_t q0 = bph >= g->pw ? 0 : (g->pw - bph + sw - 1) / sw;
            const int64_t q1 = min64(wq, (g->w + g->pw - bph + sw - 1) / sw);
            for (int64_t r = 0; r < hq; r++, d += wq) {
                const int64_t ih = r * sh + a - g->ph;
                if (ih < 0 || ih >= g->h || q1 <= q0) {
                    memset(d, 0, (size_t)wq * sizeof(float));
                    continue;
                }
                const float *src = xc + ih * g->w + q0 * sw + bph - g->pw;
                for (int64_t q = 0; q < q0; q++) d[q] = 0.0f;
                if (sw == 1)
                    memcpy(d + q0, src, (size_t)(q1 - q0) * sizeof(float));
                else
                    for (int64_t q = q0; q < q1; q++) d[q] = src[(q - q0) * sw];
                for (int64_t q = q1; q < wq; q++) d[q] = 0.0f;
            }
        }
    memset(d, 0, (size_t)(J->img - (d - d0)) * sizeof(float));
}

/* Whether the len floats at x are all finite: x * 0 is 0 for a finite x and NaN for NaN or an
 * infinity, so the sum of them is NaN exactly when one is not finite. */
static int dw_plane_finite(const float *x, int64_t len) {
    tri_v16 a = {0};
    int64_t i = 0;
    for (; i + VW <= len; i += VW) a += *(const tri_v16u *)(x + i) * 0.0f;
    float s = 0.0f;
    for (; i < len; i++) s += x[i] * 0.0f;
    for (int l = 0; l < VW; l++) s += a[l];
    return s == s;
}

/* acc[l] = sum over the nt listed taps of w[t] * src[off[t] + l], for whole runs up to lp */
static void dw_sum(const float *src, const int64_t *off, const float *w, int nt, int64_t lp,
                   float *acc) {
    int64_t l0 = 0;
    for (; l0 + TRI_PW_RUN <= lp; l0 += TRI_PW_RUN) {
        tri_v16 a[TRI_PW_NV];
        for (int v = 0; v < TRI_PW_NV; v++) a[v] = (tri_v16){0};
        for (int t = 0; t < nt; t++) {
            const float *s = src + off[t] + l0;
            const float wv = w[t];
            for (int v = 0; v < TRI_PW_NV; v++) a[v] += wv * *(const tri_v16u *)(s + v * VW);
        }
        for (int v = 0; v < TRI_PW_NV; v++) *(tri_v16 *)(acc + l0 + v * VW) = a[v];
    }
    for (; l0 < lp; l0 += VW) {
        tri_v16 a = {0};
        for (int t = 0; t < nt; t++) a += w[t] * *(const tri_v16u *)(src + off[t] + l0);
        *(tri_v16 *)(acc + l0) = a;
    }
}

static void dw_task(void *ctx, int64_t task, int tid) {
    DwJob *J = ctx;
    (void)tid;
    const TriLinearPlan *p = J->p;
    const TriConvGeom *g = J->g;
    const int64_t n = p->n, kk = J->kk, hw = g->h * g->w, ohw = g->ho * g->wo;
    const int64_t b = task / J->nct, c0 = task % J->nct * J->cpt, c1 = min64(n, c0 + J->cpt);
    /* scratch: phase planes (J->img), then the accumulators (lp, vector aligned) */
    float stk[TRI_DW_STACK] __attribute__((aligned(64)));
    const size_t need = (size_t)(J->img + J->lp + VW);
    float *buf = need <= TRI_DW_STACK ? stk : tri_alloc(need * sizeof(float));
    if (!buf) {
        atomic_store(&J->oom, 1);
        return;
    }
    float *acc = buf + (J->img + VW - 1) / VW * VW;   /* tri_alloc: 64-byte aligned */
    for (int64_t c = c0; c < c1; c++) {
        const int64_t plane = b * n + c;
        /* the zero taps (listed after the others) count on a plane holding NaN or an
         * infinity: 0 * x is NaN there, as in the convolution of the weights as floats */
        int nt = J->nt[c];
        if (nt < kk && !dw_plane_finite(J->x + plane * hw, hw)) nt = (int)kk;
        const float sc = p->scale[p->nscale == 1 ? 0 : c];
        const float bi = p->bias ? p->bias[c] : 0.0f;
        const float *res = J->residual ? J->residual + plane * ohw : NULL;
        float *dst = J->y + plane * ohw;
        if (nt == 0) {
            memset(acc, 0, (size_t)J->lp * sizeof(float));
        } else {
            dw_copy(J, J->x + plane * hw, buf);
            dw_sum(buf, J->toff + c * kk, J->tw + c * kk, nt, J->lp, acc);
        }
        if (J->wq == g->wo) {
            dw_epi_run(acc, ohw, sc, bi, res, J->act, dst);
        } else if (res) {
            for (int64_t oh = 0; oh < g->ho; oh++)
                dw_epi_run(acc + oh * J->wq, g->wo, sc, bi, res + oh * g->wo, J->act,
                           dst + oh * g->wo);
        } else {   /* the epilogue on whole vectors in place, then the rows compacted */
            dw_epi_run(acc, J->lp, sc, bi, NULL, J->act, acc);
            const int64_t wo = g->wo, wq = J->wq;
            for (int64_t oh = 0; oh < g->ho; oh++) memcpy(dst + oh * wo, acc + oh * wq,
                                                          (size_t)wo * sizeof(float));
        }
    }
    if (buf != stk) free(buf);
}

/* the kk (<= a block) codes of depthwise channel c: t2 with kk <= 32 holds element t in the
 * low 2 bits of byte t (docs/formats.md), read directly; otherwise the row is decoded */
static inline const uint8_t *dw_codes(const TriLinearPlan *p, int64_t c, int64_t kk,
                                      int64_t nb, uint8_t *codes) {
    const uint8_t *row = p->w + c * p->row_bytes;
    if (p->fmt == TRI_FMT_T2 && kk <= 32) {
        for (int64_t t = 0; t < kk; t++) codes[t] = row[t] & 3;
    } else {
        decode_codes(p->fmt, row, nb, codes);
    }
    return codes;
}

/* Small output planes (MobileNet's 8x8 and 4x4 stages): the plane-per-channel sweep above
 * spends more on its per-channel copies and calls than on the taps. Here the vector lanes are
 * VW channels instead: a task gathers its channels' zero-padded planes into one tile of
 * positions x VW lanes, keeps each tap's VW weights as a vector, and every output position
 * is kk loads and FMAs for VW channels at once; the tile of results is scattered back to the
 * NCHW planes. */
#define TRI_DW_LANES_MAX_OUT 64 /* output planes up to this many positions take the lanes */

static void dw_lanes_task(void *ctx, int64_t task, int tid) {
    DwJob *J = ctx;
    (void)tid;
    const TriLinearPlan *p = J->p;
    const TriConvGeom *g = J->g;
    const int64_t n = p->n, kk = J->kk, hw = g->h * g->w, ohw = g->ho * g->wo;
    const int64_t nblk = (n + VW - 1) / VW, b = task / nblk, c0 = task % nblk * VW;
    const int lanes = (int)min64(VW, n - c0);
    const int64_t hp = g->h + 2 * g->ph, wp = g->w + 2 * g->pw;
    /* scratch: the input tile (hp x wp x VW), the output tile (ohw x VW), and the residual's */
    float stk[TRI_DW_STACK] __attribute__((aligned(64)));
    const size_t need = (size_t)((hp * wp + 2 * ohw) * VW);
    float *tile = need <= TRI_DW_STACK ? stk : tri_alloc(need * sizeof(float));
    if (!tile) {
        atomic_store(&J->oom, 1);
        return;
    }
    float *out = tile + hp * wp * VW, *rt = out + ohw * VW;
    memset(tile, 0, (size_t)(hp * wp * VW) * sizeof(float));
    const float *xb = J->x + (b * n + c0) * hw;
    for (int l = 0; l < lanes; l++)
        for (int64_t ih = 0; ih < g->h; ih++)
            for (int64_t iw = 0; iw < g->w; iw++)
                tile[((ih + g->ph) * wp + iw + g->pw) * VW + l] = xb[l * hw + ih * g->w + iw];
    const float *res = J->residual ? J->residual + (b * n + c0) * ohw : NULL;
    if (res)
        for (int64_t q = 0; q < ohw; q++)
            for (int l = 0; l < VW; l++) rt[q * VW + l] = l < lanes ? res[l * ohw + q] : 0.0f;
    const tri_v16 *wv = (const tri_v16 *)J->tw + (c0 / VW) * kk;   /* kk vectors */
    tri_v16 sc, bi = {0};
    for (int l = 0; l < VW; l++) {
        const int64_t c = c0 + (l < lanes ? l : 0);
        sc[l] = p->scale[p->nscale == 1 ? 0 : c];
        bi[l] = p->bias ? p->bias[c] : 0.0f;
    }
    for (int64_t oh = 0; oh < g->ho; oh++)
        for (int64_t ow = 0; ow < g->wo; ow++) {
            const float *src = tile + (oh * g->sh * wp + ow * g->sw) * VW;
            tri_v16 a = {0};
            for (int64_t i = 0, t = 0; i < g->kh; i++)
                for (int64_t j = 0; j < g->kw; j++, t++)
                    a += wv[t] * *(const tri_v16 *)(src + (i * g->dh * wp + j * g->dw) * VW);
            const int64_t q = oh * g->wo + ow;
            *(tri_v16 *)(out + q * VW) = dw_epi_vec(a, sc, bi, res ? rt + q * VW : NULL, J->act);
        }
    float *yb = J->y + (b * n + c0) * ohw;
    for (int l = 0; l < lanes; l++)
        for (int64_t q = 0; q < ohw; q++) yb[l * ohw + q] = out[q * VW + l];
    if (tile != stk) free(tile);
}

static int dw_lanes(DwJob *J, int64_t batch, int nthreads) {
    const TriLinearPlan *p = J->p;
    const int64_t n = p->n, kk = J->kk, nblk = (n + VW - 1) / VW;
    const int64_t nb = n_blocks(p->fmt, kk);
    /* each block of VW channels: kk weight vectors (lanes past n zero) */
    float *tw = tri_alloc((size_t)(nblk * kk * VW) * sizeof(float));
    uint8_t *codes = tri_alloc((size_t)(nb * blk_elems(p->fmt)));
    if (!tw || !codes) {
        free(tw); free(codes);
        return 1;
    }
    memset(tw, 0, (size_t)(nblk * kk * VW) * sizeof(float));
    for (int64_t c = 0; c < n; c++) {
        dw_codes(p, c, kk, nb, codes);
        for (int64_t t = 0; t < kk; t++)
            tw[((c / VW) * kk + t) * VW + c % VW] = (float)((int)codes[t] - 1);
    }
    J->tw = tw;
    const double work = (double)batch * (double)n * (double)kk * (double)(J->g->ho * J->g->wo);
    pool_run(dw_lanes_task, J, batch * nblk, team_for_work(work, nthreads));
    free(tw); free(codes);
    return atomic_load(&J->oom) ? 1 : 0;
}

/* Depthwise: one input and one output channel per group, fp32 activations. */
static inline int dw_conv_fits(const TriLinearPlan *p, const TriConvGeom *g) {
    return !p->act_quant && g->groups > 1 && g->groups == g->c && p->n == g->c
           && p->k == g->kh * g->kw;
}

static int dw_conv(const TriLinearPlan *p, const TriConvGeom *g, const float *x, int64_t batch,
                   const float *residual, int act, float *y, int nthreads) {
    const int64_t sh = g->sh, sw = g->sw, kk = g->kh * g->kw, n = p->n;
    DwJob J = {.p = p, .g = g, .x = x, .residual = residual, .y = y, .act = act, .kk = kk};
    atomic_init(&J.oom, 0);
    if (g->ho * g->wo <= TRI_DW_LANES_MAX_OUT) return dw_lanes(&J, batch, nthreads);
    J.hq = (g->h + 2 * g->ph + sh - 1) / sh;
    J.wq = (g->w + 2 * g->pw + sw - 1) / sw;
    J.len = (g->ho - 1) * J.wq + g->wo;
    J.lp = (J.len + VW - 1) / VW * VW;
    /* the phase planes, then zeros far enough that every run up to lp reads inside */
    J.img = sh * sw * J.hq * J.wq + J.lp + TRI_PW_RUN;
    /* the tap offsets, then each channel's taps: those that are not zero first (listed
     * without a branch: random trits mispredict), then the zero ones from the end (weight 0:
     * they run on a plane that is not all finite), decoded once per call */
    const int64_t nb = n_blocks(p->fmt, kk);
    int64_t *off = tri_alloc((size_t)(kk + n * kk) * sizeof(int64_t));
    int32_t *nt = tri_alloc((size_t)n * sizeof(int32_t));
    float *tw = tri_alloc((size_t)(n * kk) * sizeof(float));
    uint8_t *codes = tri_alloc((size_t)(nb * blk_elems(p->fmt)));
    if (!off || !nt || !tw || !codes) {
        free(off); free(nt); free(tw); free(codes);
        return 1;
    }
    const int64_t phase = J.hq * J.wq;
    for (int64_t i = 0, t = 0; i < g->kh; i++)
        for (int64_t j = 0; j < g->kw; j++, t++) {
            const int64_t ri = i * g->dh, cj = j * g->dw;
            off[t] = ((ri % sh) * sw + cj % sw) * phase + ri / sh * J.wq + cj / sw;
        }
    int64_t *toff = off + kk;
    for (int64_t c = 0; c < n; c++) {
        dw_codes(p, c, kk, nb, codes);
        int32_t m = 0, z = 0;
        for (int64_t t = 0; t < kk; t++) {
            const int live = codes[t] != 1;
            const int64_t at = c * kk + (live ? m : kk - 1 - z);
            toff[at] = off[t];
            tw[at] = (float)((int)codes[t] - 1);
            m += live;
            z += !live;
        }
        nt[c] = m;
    }
    J.off = off;
    J.nt = nt;
    J.toff = toff;
    J.tw = tw;
    const double work = (double)batch * (double)n * (double)(J.img + kk * J.lp);
    const int team = team_for_work(work, nthreads);
    /* channels per task: about 16 tasks per thread, at least 8 channels' work each */
    const int64_t tasks_per_image = min64(n, (16 * (int64_t)team + batch - 1) / batch);
    J.cpt = (n + tasks_per_image - 1) / tasks_per_image;
    if (J.cpt < 8) J.cpt = min64(n, 8);
    J.nct = (n + J.cpt - 1) / J.cpt;
    pool_run(dw_task, &J, batch * J.nct, team);
    free(off); free(nt); free(tw); free(codes);
    return atomic_load(&J.oom) ? 1 : 0;
}
