/* Ternary conv2d (groups = 1) as one native call: the patches of the NCHW input are gathered
 * straight into the GEMM's activation rows (int8: gathered and quantized per patch in one pass,
 * as the im2col path did, so the result is the same bit for bit), the ternary GEMM runs with the
 * scale and bias epilogue, and the (B*L) x O result is written back as NCHW with the residual
 * and activation fused into that pass. No float im2col matrix, no transpose in torch. */

typedef struct {
    const float *x;
    const TriConvGeom *g;
    int64_t kk, ldx, rows, rows_per_task;
    int8_t *xq;    /* int8 mode: rows x ldx, zero padded */
    float *s;      /* int8 mode: per-patch scale */
    int32_t *sum;  /* int8 mode: per-patch sum of the codes */
    float *xf;     /* fp32 mode: rows x kk */
    _Atomic int oom;
} PatchJob;

/* The patch of output position r (image b, row oh, column ow) in F.unfold's order: channel,
 * then kernel row, then kernel column; zero where the window leaves the image. */
static inline void gather_patch(const float *x, const TriConvGeom *g, int64_t r, float *out) {
    const int64_t L = g->ho * g->wo, b = r / L, l = r % L, oh = l / g->wo, ow = l % g->wo;
    const float *xb = x + b * g->c * g->h * g->w;
    const int64_t ih0 = oh * g->sh - g->ph, iw0 = ow * g->sw - g->pw;
    for (int64_t c = 0; c < g->c; c++) {
        const float *xc = xb + c * g->h * g->w;
        for (int64_t i = 0; i < g->kh; i++) {
            const int64_t ih = ih0 + i * g->dh;
            float *o = out + (c * g->kh + i) * g->kw;
            if (ih < 0 || ih >= g->h) {
                memset(o, 0, (size_t)g->kw * sizeof(float));
                continue;
            }
            const float *row = xc + ih * g->w;
            if (g->dw == 1 && iw0 >= 0 && iw0 + g->kw <= g->w) {
                memcpy(o, row + iw0, (size_t)g->kw * sizeof(float));
                continue;
            }
            for (int64_t j = 0; j < g->kw; j++) {
                const int64_t iw = iw0 + j * g->dw;
                o[j] = iw >= 0 && iw < g->w ? row[iw] : 0.0f;
            }
        }
    }
}

static void patch_task(void *ctx, int64_t task, int tid) {
    PatchJob *J = ctx;
    (void)tid;
    const int64_t r0 = task * J->rows_per_task, r1 = min64(J->rows, r0 + J->rows_per_task);
    if (J->xf) {
        for (int64_t r = r0; r < r1; r++) gather_patch(J->x, J->g, r, J->xf + r * J->kk);
        return;
    }
    float *buf = tri_alloc((size_t)J->kk * sizeof(float));
    if (!buf) {
        atomic_store(&J->oom, 1);
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        gather_patch(J->x, J->g, r, buf);
        quantize_row(buf, J->kk, J->xq + r * J->ldx, J->ldx, J->s + r, J->sum + r);
    }
    free(buf);
}

typedef struct {
    const float *t;        /* rows x n, row = b * L + l */
    const float *residual; /* NCHW or NULL */
    float *y;              /* NCHW */
    int64_t n, L, nb;
    int act;
} NchwJob;

/* One (image, channel) plane: y[b, o, :] = act(t[b * L + l, o] + residual[b, o, l]). */
static void nchw_task(void *ctx, int64_t task, int tid) {
    NchwJob *J = ctx;
    (void)tid;
    const int64_t b = task / J->n, o = task % J->n;
    const float *src = J->t + b * J->L * J->n + o;
    float *dst = J->y + task * J->L;
    const float *res = J->residual ? J->residual + task * J->L : NULL;
    for (int64_t l = 0; l < J->L; l++) {
        float v = src[l * J->n];
        if (res) v += res[l];
        dst[l] = act_apply(J->act, v);
    }
}

/* ---- fp32 mode: a register-blocked flat convolution ----------------------------------------
 * Each task takes one image, one group and a block of up to TRI_DC_OB of the group's output
 * channels. Each image's group of input channels is copied once (a first parallel pass,
 * shared by the group's channel blocks), zero padded, and split into stride phases: phase (a, b) of a channel holds the padded rows a, a + sh, ... and columns b, b + sw,
 * ... as an hq x wq plane (hq = ceil(hp / sh), wq = ceil(wp / sw); with stride 1 the padded
 * image itself). Laid out at that row stride the output plane (ho - 1) * wq + wo long makes
 * every tap (c, i, j) one contiguous run: phase ((i dh) % sh, (j dw) % sw) of channel c, from
 * row (i dh) / sh, column (j dw) / sw (the wq - wo columns past each output row are computed
 * and dropped). For a chunk of TRI_DC_NV vectors of positions the block's OB x NV accumulators
 * stay in registers while the K taps run: one load per vector and one broadcast weight (the
 * trit, -1/0/+1, as a float) per channel per tap. No patch matrix, no padding of K to packed
 * blocks, no zero skipping (a branch per tap costs more than the FMA it saves). Then each
 * channel's plane gets the scale, bias, residual and activation and, when a pooling follows,
 * is pooled straight from the task's buffer. Depthwise convs are groups of one channel. */
#if TRI_ISA_AVX512
#define TRI_DC_OB 6 /* 6 x 4 accumulators + 4 inputs of the 32 zmm */
#define TRI_DC_NV 4
#elif TRI_ISA_AVX2
#define TRI_DC_OB 6 /* 6 x 2 accumulators + 2 inputs of AVX2's 16 ymm */
#define TRI_DC_NV 2
#else
#define TRI_DC_OB 4 /* 4 x 2 accumulators + 2 inputs (NEON: 2 q each) */
#define TRI_DC_NV 2
#endif
#define TRI_FLAT_CONV_SMALL_K 1024 /* up to this K every fp32 conv takes the flat conv */
#define TRI_FLAT_CONV_MIN_LEN 64 /* above it, planes at least this long (ResNet-18's 4x4 lose) */

typedef struct {
    const TriConvGeom *g;
    const TriPoolGeom *q;  /* or NULL */
    const float *x, *residual;
    const float *wf;       /* O x K weights as floats (a ternary weight's trits) */
    const float *scale;    /* per output channel, or one for all (nscale 1) */
    const float *bias;     /* O or NULL */
    int64_t n, k, nscale;
    const int64_t *off;    /* K tap offsets in a group's phase planes */
    float *y;
    int act;
    int64_t hq, wq, len, lp, nblk, img, cg, og;
    float *imgs;           /* batch x groups images of J->img floats, copied once */
    _Atomic int oom;
} FlatConvJob;

static inline __attribute__((always_inline)) void flat_conv_block(
    const float *src, const int64_t *off, int64_t K, const float *w, float *out, int64_t lp,
    const int OB, const int NV) {
    tri_v16 a[TRI_DC_OB][TRI_DC_NV];
    for (int ob = 0; ob < OB; ob++)
        for (int v = 0; v < NV; v++) a[ob][v] = (tri_v16){0};
    for (int64_t k = 0; k < K; k++) {
        const float *s = src + off[k];
        tri_v16 xv[TRI_DC_NV];
        for (int v = 0; v < NV; v++) xv[v] = *(const tri_v16u *)(s + v * VW);
        for (int ob = 0; ob < OB; ob++) {
            const float wv = w[ob * K + k];
            for (int v = 0; v < NV; v++) a[ob][v] += wv * xv[v];
        }
    }
    for (int ob = 0; ob < OB; ob++)
        for (int v = 0; v < NV; v++) *(tri_v16u *)(out + ob * lp + v * VW) = a[ob][v];
}

static void flat_conv_chunk(const float *src, const int64_t *off, int64_t K, const float *w,
                            float *out, int64_t lp, int ob, int nv) {
#define FC_CASE(O, V) case (O) * 8 + (V): flat_conv_block(src, off, K, w, out, lp, O, V); break;
#if TRI_DC_NV > 2
#define FC_ROW(O) FC_CASE(O, 1) FC_CASE(O, 2) FC_CASE(O, 3) FC_CASE(O, 4)
#else
#define FC_ROW(O) FC_CASE(O, 1) FC_CASE(O, 2)
#endif
    switch (ob * 8 + (nv > TRI_DC_NV ? TRI_DC_NV : nv)) {
        FC_ROW(1) FC_ROW(2) FC_ROW(3) FC_ROW(4)
#if TRI_DC_OB > 4
        FC_ROW(5) FC_ROW(6)
#endif
    }
#undef FC_ROW
#undef FC_CASE
}

/* dst = act(a * sc + bi (+ res)) for one output row: act_apply's values, with the common
 * activations hoisted out of the loop so that it vectorizes */
static inline __attribute__((always_inline)) void flat_epi_t(
    const float *a, int64_t wo, float sc, float bi, const float *res, float *dst, const int act,
    const int has_res) {
    for (int64_t ow = 0; ow < wo; ow++) {
        float v = a[ow] * sc + bi;
        if (has_res) v += res[ow];
        if (act == TRI_ACT_RELU) v = v < 0.0f ? 0.0f : v;
        else if (act == TRI_ACT_RELU6) v = v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v);
        else if (act != TRI_ACT_NONE) v = act_apply(act, v);
        dst[ow] = v;
    }
}

static void flat_epi_row(const float *a, int64_t wo, float sc, float bi, const float *res,
                         int act, float *dst) {
#define EPI_CASE(A) case A: \
        if (res) flat_epi_t(a, wo, sc, bi, res, dst, A, 1); \
        else flat_epi_t(a, wo, sc, bi, res, dst, A, 0); \
        return;
    switch (act) {
        EPI_CASE(TRI_ACT_NONE) EPI_CASE(TRI_ACT_RELU) EPI_CASE(TRI_ACT_RELU6)
    }
#undef EPI_CASE
    for (int64_t ow = 0; ow < wo; ow++) {
        float v = a[ow] * sc + bi;
        if (res) v += res[ow];
        dst[ow] = act_apply(act, v);
    }
}

/* the channels [c0, c0 + cg) of image xb as zero-padded stride phases (see above), then zeros
 * up to J->img floats */
static void flat_conv_copy(const FlatConvJob *J, const float *xb, int64_t c0, float *img) {
    const TriConvGeom *g = J->g;
    const int64_t hw = g->h * g->w, hq = J->hq, wq = J->wq, sh = g->sh, sw = g->sw;
    float *d = img;
    for (int64_t c = c0; c < c0 + J->cg; c++) {
        for (int64_t a = 0; a < sh; a++) {
            for (int64_t bph = 0; bph < sw; bph++) {
                /* columns q of this phase read input column q * sw + bph - pw */
                const int64_t q0 = bph >= g->pw ? 0 : (g->pw - bph + sw - 1) / sw;
                const int64_t q1 = min64(wq, (g->w + g->pw - bph + sw - 1) / sw);
                for (int64_t r = 0; r < hq; r++, d += wq) {
                    const int64_t ih = r * sh + a - g->ph;
                    if (ih < 0 || ih >= g->h || q1 <= q0) {
                        memset(d, 0, (size_t)wq * sizeof(float));
                        continue;
                    }
                    const float *src = xb + c * hw + ih * g->w + q0 * sw + bph - g->pw;
                    for (int64_t q = 0; q < q0; q++) d[q] = 0.0f;
                    if (sw == 1)
                        memcpy(d + q0, src, (size_t)(q1 - q0) * sizeof(float));
                    else
                        for (int64_t q = q0; q < q1; q++) d[q] = src[(q - q0) * sw];
                    for (int64_t q = q1; q < wq; q++) d[q] = 0.0f;
                }
            }
        }
    }
    memset(d, 0, (size_t)(J->img - (d - img)) * sizeof(float));
}

static void flat_conv_task(void *ctx, int64_t task, int tid) {
    FlatConvJob *J = ctx;
    (void)tid;
    const TriConvGeom *g = J->g;
    const int64_t n = J->n, K = J->k, groups = g->groups;
    const int64_t blk = task % J->nblk, gi = task / J->nblk % groups, b = task / J->nblk / groups;
    const int64_t o0 = gi * J->og + blk * J->og / J->nblk;
    const int64_t o1 = gi * J->og + (blk + 1) * J->og / J->nblk;
    const int ob = (int)(o1 - o0);
    const int64_t ohw = g->ho * g->wo, wq = J->wq;
    const int64_t pool_out = J->q ? J->q->ho * J->q->wo : 0;
    float *pl = tri_alloc((size_t)((int64_t)ob * J->lp + (J->q ? ohw + VW : 0)) * sizeof(float));
    if (!pl) {
        atomic_store(&J->oom, 1);
        return;
    }
    float *tmp = pl + (int64_t)ob * J->lp;
    const float *img = J->imgs + (b * groups + gi) * J->img;
    for (int64_t l0 = 0; l0 < J->len; l0 += TRI_DC_NV * VW)
        flat_conv_chunk(img + l0, J->off, K, J->wf + o0 * K, pl + l0, J->lp, ob,
                        (int)((min64(J->len - l0, TRI_DC_NV * VW) + VW - 1) / VW));
    for (int i = 0; i < ob; i++) {
        const int64_t o = o0 + i, plane = b * n + o;
        const float sc = J->scale[J->nscale == 1 ? 0 : o];
        const float bi = J->bias ? J->bias[o] : 0.0f;
        const float *res = J->residual ? J->residual + plane * ohw : NULL;
        float *dst = J->q ? tmp : J->y + plane * ohw;
        const float *a = pl + i * J->lp;
        for (int64_t oh = 0; oh < g->ho; oh++)
            flat_epi_row(a + oh * wq, g->wo, sc, bi, res ? res + oh * g->wo : NULL, J->act,
                         dst + oh * g->wo);
        if (J->q) pool_plane(J->q, tmp, J->y + plane * pool_out, 1);
    }
    free(pl);
}

/* task = image * groups + group: its phase planes, shared by the group's channel blocks */
static void flat_copy_task(void *ctx, int64_t task, int tid) {
    FlatConvJob *J = ctx;
    (void)tid;
    const TriConvGeom *g = J->g;
    flat_conv_copy(J, J->x + task / g->groups * g->c * g->h * g->w, task % g->groups * J->cg,
                   J->imgs + task * J->img);
}

/* fp32 activations, and grouped, or a small K, or an output plane long enough that the
 * register blocks over positions beat the patch GEMM (measured on ResNet-18's 3x3 convs at
 * 32x32 input: 16x16 and 8x8 planes win by 1.2-2x, stride-2 8x8 -> 4x4 and 4x4 ones lose 2x) */
static int flat_conv_shape_fits(int64_t k, const TriConvGeom *g) {
    const int64_t len = (g->ho - 1) * ((g->w + 2 * g->pw + g->sw - 1) / g->sw) + g->wo;
    return g->groups > 1 || k <= TRI_FLAT_CONV_SMALL_K || len >= TRI_FLAT_CONV_MIN_LEN;
}

static int flat_conv_fits(const TriLinearPlan *p, const TriConvGeom *g) {
    return !p->act_quant && flat_conv_shape_fits(p->k, g);
}

/* the offset of tap (c, i, j) in a group's phase planes (see above), for the K taps */
static void flat_offsets(const FlatConvJob *J, int64_t *off) {
    const TriConvGeom *g = J->g;
    const int64_t phase = J->hq * J->wq, sh = g->sh, sw = g->sw;
    for (int64_t c = 0, t = 0; c < J->cg; c++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++, t++) {
                const int64_t ri = i * g->dh, cj = j * g->dw;
                off[t] = ((c * sh + ri % sh) * sw + cj % sw) * phase + ri / sh * J->wq + cj / sw;
            }
}

/* the flat conv of the O x K float weights wf (K = C / groups * kh * kw in (c, i, j) order:
 * a conv weight's own layout) with the scale and bias epilogue */
static int flat_conv_run(const float *wf, int64_t n, int64_t k, const float *scale,
                         int64_t nscale, const float *bias, const TriConvGeom *g,
                         const float *x, int64_t batch, const float *residual, int act,
                         const TriPoolGeom *q, float *y, int nthreads) {
    const int64_t sh = g->sh, sw = g->sw;
    FlatConvJob J = {.g = g, .q = q, .x = x, .residual = residual, .y = y, .act = act,
                     .wf = wf, .scale = scale, .bias = bias, .n = n, .k = k, .nscale = nscale};
    J.hq = (g->h + 2 * g->ph + sh - 1) / sh;
    J.wq = (g->w + 2 * g->pw + sw - 1) / sw;
    J.len = (g->ho - 1) * J.wq + g->wo;
    J.lp = (J.len + VW - 1) / VW * VW;
    J.cg = g->c / g->groups;
    J.og = n / g->groups;
    J.img = J.cg * sh * sw * J.hq * J.wq + VW;
    J.nblk = (J.og + TRI_DC_OB - 1) / TRI_DC_OB;
    atomic_init(&J.oom, 0);
    int64_t *off = tri_alloc((size_t)k * sizeof(int64_t));
    J.imgs = tri_alloc((size_t)(batch * g->groups * J.img) * sizeof(float));
    int err = 1;
    if (off && J.imgs) {
        pool_run(flat_copy_task, &J, batch * g->groups,
                 team_for_work((double)(batch * g->groups * J.img), nthreads));
        flat_offsets(&J, off);
        J.off = off;
        const double work = (double)batch * (double)n * (double)k * (double)J.len;
        pool_run(flat_conv_task, &J, batch * g->groups * J.nblk, team_for_work(work, nthreads));
        err = atomic_load(&J.oom) ? 1 : 0;
    }
    free(off); free(J.imgs);
    return err;
}

static int flat_conv(const TriLinearPlan *p, const TriConvGeom *g, const float *x,
                     int64_t batch, const float *residual, int act, const TriPoolGeom *q,
                     float *y, int nthreads) {
    const int64_t n = p->n, k = p->k;
    float *wf = tri_alloc((size_t)(n * k) * sizeof(float));
    uint8_t *codes = tri_alloc((size_t)(n_blocks(p->fmt, k) * blk_elems(p->fmt)));
    int err = 1;
    if (wf && codes) {
        for (int64_t o = 0; o < n; o++) {
            decode_codes(p->fmt, p->w + o * p->row_bytes, n_blocks(p->fmt, k), codes);
            for (int64_t i = 0; i < k; i++) wf[o * k + i] = (float)((int)codes[i] - 1);
        }
        err = flat_conv_run(wf, n, k, p->scale, p->nscale, p->bias, g, x, batch, residual, act,
                            q, y, nthreads);
    }
    free(wf); free(codes);
    return err;
}

/* A full-precision conv2d (the model's own float weights, w: O x C / groups * kh * kw) as the
 * flat conv: per output channel y = act(conv(x, w) * scale + bias (+ residual)), pooled by q
 * when given (scale NULL: 1; a batch norm in inference form folds into scale and bias).
 * Returns 2 for a geometry that does not fit, 3 for one the flat conv does not take (a long
 * K on a short plane: the caller's GEMM path), 1 when out of memory. */
TRI_EXPORT int tri_conv2d_f32(const float *w, const float *scale, const float *bias,
                              int64_t n, const TriConvGeom *g, const float *x, int64_t batch,
                              const float *residual, int act, const TriPoolGeom *q, float *y,
                              int nthreads) {
    static const float one = 1.0f;
    if (g->groups < 1 || g->c % g->groups || n % g->groups || g->ho <= 0 || g->wo <= 0)
        return 2;
    if (q && (!pool_geom_ok(q) || q->h != g->ho || q->w != g->wo)) return 2;
    const int64_t k = g->c / g->groups * g->kh * g->kw;
    if (!flat_conv_shape_fits(k, g)) return 3;
    if (batch == 0 || n == 0) return 0;
    return flat_conv_run(w, n, k, scale ? scale : &one, scale ? n : 1, bias, g, x, batch,
                         residual, act, q, y, nthreads);
}

/* ---- fp32 mode: an implicit GEMM for many channels on small planes -------------------------
 * The flat conv's lanes are output positions; on small planes (ResNet's 8x8 and 4x4) most of
 * a vector is row padding or a tail. Here the lanes are output channels, as in the panel GEMM
 * (tritium_f32p.h), and the "rows" are output positions read in place: each image is copied
 * once into the flat conv's zero-padded stride phases, where output position (oh, ow) reads
 * tap t at oh * wq + ow + off[t], so no patch matrix is gathered. The weight comes as a
 * panel layout made once per weight (tri_conv_panel_pack: the trits as int8, k-major in
 * panels of TRI_IG_NV vectors of output channels, 64 on AVX-512 and 16 on AVX2), so a call
 * decodes nothing from the packed format. A task is a panel x a chunk of positions (all
 * images of the batch in one range); K runs in slices of TRI_IG_KC, each widened to floats
 * once per task (it then stays in L1), and for each TRI_IG_MR positions the MR x NV
 * accumulators stay in registers over the slice: one offset load, NV weight vectors and MR
 * broadcasts per tap. Each output's sum is the same sequence
 * of multiply-adds in k order as the flat conv's, so the two give the same values. The
 * epilogue writes NCHW planes with the scale, bias, residual and activation. */
#if TRI_ISA_AVX512
#define TRI_IG_NV 4
#define TRI_IG_MR 6   /* 6 x 4 accumulators + 4 weight vectors + a broadcast of the 32 zmm */
#define TRI_IG_KC 128
#else
#define TRI_IG_NV 2
#define TRI_IG_MR 6   /* 6 x 2 accumulators + 2 weight vectors + a broadcast: AVX2's 16 ymm */
#define TRI_IG_KC 256
#endif
#define TRI_IG_CHUNK 192 /* positions per task (a multiple of TRI_IG_MR) */
#define TRI_IG_NR (TRI_IG_NV * VW)
#define TRI_IG_MAX_PLANE 64 /* output planes up to this many positions (ResNet's 8x8, 4x4) */

typedef int8_t tri_v16b __attribute__((vector_size(VW), aligned(1)));

/* VW int8 trits widened to floats (sign-extended and converted in two instructions on x86) */
static inline __attribute__((always_inline)) tri_v16 ig_widen(const int8_t *w) {
#if TRI_ISA_AVX512
    return (tri_v16)_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)w)));
#elif TRI_ISA_AVX2
    return (tri_v16)_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)w)));
#else
    return __builtin_convertvector(__builtin_convertvector(*(const tri_v16b *)w, tri_v16i),
                                   tri_v16);
#endif
}

typedef struct {
    const TriLinearPlan *p;
    const TriConvGeom *g;
    const float *imgs, *residual;
    const int8_t *wp;       /* the panel layout */
    const int64_t *off;
    float *y;
    int act;
    int64_t img, wq, L, m, nchunk;
    float *acc[TRI_MAX_THREADS];   /* per thread: chunk x TRI_IG_NR partial sums */
    float *wt[TRI_MAX_THREADS];    /* per thread: a K slice of the panel as floats */
    _Atomic int oom;
} IgJob;

static inline __attribute__((always_inline)) void ig_block(
    const float *wt, const float *const *src, const int64_t *off, int64_t k0, int64_t k1,
    float *acc, int first, const int MR) {
    tri_v16 a[TRI_IG_MR][TRI_IG_NV];
    for (int u = 0; u < MR; u++)
        for (int v = 0; v < TRI_IG_NV; v++)
            a[u][v] = first ? (tri_v16){0} : *(const tri_v16 *)(acc + (u * TRI_IG_NV + v) * VW);
    for (int64_t kk = k0; kk < k1; kk++) {
        const tri_v16 *w = (const tri_v16 *)(wt + (kk - k0) * TRI_IG_NR);
        tri_v16 wv[TRI_IG_NV];
        for (int v = 0; v < TRI_IG_NV; v++) wv[v] = w[v];
        const int64_t o = off[kk];
        for (int u = 0; u < MR; u++) {
            const float xv = src[u][o];
            for (int v = 0; v < TRI_IG_NV; v++) a[u][v] += xv * wv[v];
        }
    }
    for (int u = 0; u < MR; u++)
        for (int v = 0; v < TRI_IG_NV; v++)
            *(tri_v16 *)(acc + (u * TRI_IG_NV + v) * VW) = a[u][v];
}

static void ig_rows(const float *wt, const float *const *src, const int64_t *off, int64_t k0,
                    int64_t k1, float *acc, int first, int mr) {
#define IG_CASE(M) case M: ig_block(wt, src, off, k0, k1, acc, first, M); break;
    switch (mr) {
        IG_CASE(1) IG_CASE(2) IG_CASE(3) IG_CASE(4) IG_CASE(5) IG_CASE(6)
    }
#undef IG_CASE
}

static void ig_task(void *ctx, int64_t task, int tid) {
    IgJob *J = ctx;
    const TriLinearPlan *p = J->p;
    const TriConvGeom *g = J->g;
    const int64_t panel = task / J->nchunk, ch = task % J->nchunk, k = p->k, n = p->n;
    const int64_t c0 = panel * TRI_IG_NR, nc = min64(TRI_IG_NR, n - c0);
    const int64_t t0 = ch * TRI_IG_CHUNK, t1 = min64(J->m, t0 + TRI_IG_CHUNK);
    if (!J->acc[tid])
        J->acc[tid] = tri_alloc((size_t)(TRI_IG_CHUNK * TRI_IG_NR) * sizeof(float));
    if (!J->wt[tid]) J->wt[tid] = tri_alloc((size_t)(TRI_IG_KC * TRI_IG_NR) * sizeof(float));
    float *acc = J->acc[tid], *wt = J->wt[tid];
    if (!acc || !wt) {
        atomic_store(&J->oom, 1);
        return;
    }
    const int8_t *wp = J->wp + panel * k * TRI_IG_NR;
    for (int64_t k0 = 0; k0 < k; k0 += TRI_IG_KC) {
        const int64_t k1 = min64(k, k0 + TRI_IG_KC);
        /* the slice widened to floats once, for all the chunk's positions */
        for (int64_t i = 0; i < (k1 - k0) * TRI_IG_NR; i += VW)
            *(tri_v16 *)(wt + i) = ig_widen(wp + k0 * TRI_IG_NR + i);
        for (int64_t t = t0; t < t1; t += TRI_IG_MR) {
            const int mr = (int)min64(TRI_IG_MR, t1 - t);
            const float *src[TRI_IG_MR];
            for (int u = 0; u < mr; u++) {
                const int64_t b = (t + u) / J->L, l = (t + u) % J->L;
                src[u] = J->imgs + b * J->img + l / g->wo * J->wq + l % g->wo;
            }
            ig_rows(wt, src, J->off, k0, k1, acc + (t - t0) * TRI_IG_NR, k0 == 0, mr);
        }
    }
    /* the epilogue, channel by channel: each writes a contiguous run of its planes */
    for (int64_t c = 0; c < nc; c++) {
        const int64_t o = c0 + c;
        const float sc = p->scale[p->nscale == 1 ? 0 : o], bi = p->bias ? p->bias[o] : 0.0f;
        for (int64_t t = t0; t < t1; t++) {
            const int64_t b = t / J->L, l = t % J->L, at = (b * n + o) * J->L + l;
            float v = acc[(t - t0) * TRI_IG_NR + c] * sc + bi;
            if (J->residual) v += J->residual[at];
            J->y[at] = act_apply(J->act, v);
        }
    }
}

/* fp32 activations, no groups, at least one whole panel of output channels, a small output
 * plane (the flat conv's vectors would be mostly row padding and tails) and a window larger
 * than 1x1 (a 1x1 conv's K is small: the image copy, not the products, decides, and the flat
 * conv measured faster). Measured on ResNet-18 (32x32 input, AVX-512, 1 thread): its 3x3
 * convs with 8x8 and 4x4 outputs 1.2-1.5x the flat conv or patch GEMM they replace at batch
 * 1 and 1.05-1.75x at batch 64; on 16x16 outputs (layer2) the flat conv stays 1.1-1.2x
 * faster. */
static int ig_conv_fits(const TriLinearPlan *p, const TriConvGeom *g) {
    return (TRI_ISA_AVX512 || TRI_ISA_AVX2) && !p->act_quant && g->groups == 1
           && p->n >= TRI_IG_NR && g->ho * g->wo <= TRI_IG_MAX_PLANE && g->kh * g->kw > 1;
}

/* The bytes of the panel layout that tri_conv2d_planned wants (as its `gw`) for this
 * geometry with fp32 activations; 0 when it runs without one. */
TRI_EXPORT int64_t tri_conv_panel_bytes(const TriLinearPlan *p, const TriConvGeom *g) {
    if (!ig_conv_fits(p, g)) return 0;
    return (p->n + TRI_IG_NR - 1) / TRI_IG_NR * TRI_IG_NR * p->k;
}

/* The panel layout: out[(panel * k + kk) * TRI_IG_NR + r] = the trit of channel
 * panel * TRI_IG_NR + r at kk (0 past the last channel). Returns 1 if out of memory. */
TRI_EXPORT int tri_conv_panel_pack(const TriLinearPlan *p, int8_t *out) {
    const int64_t k = p->k, n = p->n, nb = n_blocks(p->fmt, k);
    const int64_t np = (n + TRI_IG_NR - 1) / TRI_IG_NR;
    uint8_t *codes = tri_alloc((size_t)(nb * blk_elems(p->fmt)));
    if (!codes) return 1;
    memset(out, 0, (size_t)(np * TRI_IG_NR * k));
    for (int64_t o = 0; o < n; o++) {
        decode_codes(p->fmt, p->w + o * p->row_bytes, nb, codes);
        int8_t *d = out + o / TRI_IG_NR * k * TRI_IG_NR + o % TRI_IG_NR;
        for (int64_t kk = 0; kk < k; kk++) d[kk * TRI_IG_NR] = (int8_t)((int)codes[kk] - 1);
    }
    free(codes);
    return 0;
}

static int ig_conv(const TriLinearPlan *p, const TriConvGeom *g, const float *x, int64_t batch,
                   const float *residual, int act, const int8_t *wp, float *y, int nthreads) {
    const int64_t n = p->n, k = p->k, sh = g->sh, sw = g->sw;
    FlatConvJob F = {.g = g, .x = x};
    F.hq = (g->h + 2 * g->ph + sh - 1) / sh;
    F.wq = (g->w + 2 * g->pw + sw - 1) / sw;
    F.cg = g->c;
    F.img = F.cg * sh * sw * F.hq * F.wq + VW;
    IgJob *J = calloc(1, sizeof(IgJob));
    int64_t *off = tri_alloc((size_t)k * sizeof(int64_t));
    F.imgs = tri_alloc((size_t)(batch * F.img) * sizeof(float));
    int err = 1;
    if (J && off && F.imgs) {
        pool_run(flat_copy_task, &F, batch, team_for_work((double)(batch * F.img), nthreads));
        flat_offsets(&F, off);
        J->p = p; J->g = g; J->imgs = F.imgs; J->residual = residual; J->wp = wp; J->off = off;
        J->y = y; J->act = act; J->img = F.img; J->wq = F.wq; J->L = g->ho * g->wo;
        J->m = batch * J->L;
        J->nchunk = (J->m + TRI_IG_CHUNK - 1) / TRI_IG_CHUNK;
        atomic_init(&J->oom, 0);
        const int64_t npanel = (n + TRI_IG_NR - 1) / TRI_IG_NR;
        const double work = (double)J->m * (double)n * (double)k;
        pool_run(ig_task, J, npanel * J->nchunk, team_for_work(work, nthreads));
        err = atomic_load(&J->oom) ? 1 : 0;
        for (int i = 0; i < TRI_MAX_THREADS; i++) {
            free(J->acc[i]);
            free(J->wt[i]);
        }
    }
    free(J); free(off); free(F.imgs);
    return err;
}

TRI_EXPORT int tri_conv2d_planned(const TriLinearPlan *p, const TriConvGeom *g, const float *x,
                                  int64_t batch, const float *residual, int act, float *y,
                                  int nthreads, const uint8_t *gw) {
    const int64_t L = g->ho * g->wo, m = batch * L, k = p->k, n = p->n;
    if (g->groups < 1 || g->c % g->groups || n % g->groups
        || k != g->c / g->groups * g->kh * g->kw)
        return 2;
    if (m == 0 || n == 0) return 0;
    if (p->act_quant == TRI_AQ_IMAGE)   /* int8_image: gw is tri_conv8_pack's layout or NULL */
        return c8_fits(p, g) ? conv8(p, g, x, batch, residual, act, (const int8_t *)gw, y, nthreads)
                             : 3;
    if (gw && ig_conv_fits(p, g))   /* gw: the panel layout in fp32 mode */
        return ig_conv(p, g, x, batch, residual, act, (const int8_t *)gw, y, nthreads);
    if (pw_conv_fits(p, g)) return pw_conv(p, g, x, batch, residual, act, y, nthreads);
    if (dw_conv_fits(p, g)) return dw_conv(p, g, x, batch, residual, act, y, nthreads);
    if (flat_conv_fits(p, g)) return flat_conv(p, g, x, batch, residual, act, NULL, y, nthreads);
    if (g->groups != 1) return 3;   /* grouped: only the flat conv */
    Problem P;
    memset(&P, 0, sizeof P);
    P.m = m; P.k = k; P.n = n; P.row_bytes = p->row_bytes; P.fmt = p->fmt; P.w = p->w;
    P.nb = n_blocks(p->fmt, k);
    P.kpad = P.nb * blk_elems(p->fmt);
    const int g2 = p->act_quant && TRI_HAVE_G2 && m >= TRI_GEMM_MIN_M;
    P.ldx = g2 ? g2_xq_stride(k) : P.kpad + 64;
    P.epi.scale = p->scale; P.epi.nscale = p->nscale; P.epi.bias = p->bias;
    /* without a residual the activation belongs to the epilogue; with one, to the NCHW pass */
    P.epi.act = residual ? TRI_ACT_NONE : act;
    float *t = tri_alloc((size_t)(m * n) * sizeof(float));
    PatchJob J = {.x = x, .g = g, .kk = k, .ldx = P.ldx, .rows = m};
    atomic_init(&J.oom, 0);
    int err = 1;
    if (!t) return 1;
    P.y = t;
    J.rows_per_task = rows_per_task(m, k, nthreads);
    const int64_t tasks = (m + J.rows_per_task - 1) / J.rows_per_task;
    const int gather_threads = m * k < 32768 ? 1 : nthreads;
    if (p->act_quant) {
        J.xq = tri_alloc((size_t)(m * P.ldx));
        J.s = tri_alloc((size_t)m * sizeof(float));
        J.sum = tri_alloc((size_t)m * sizeof(int32_t));
        if (J.xq && J.s && J.sum) {
            pool_run(patch_task, &J, tasks, gather_threads);
            if (!atomic_load(&J.oom)) {
                P.xq = J.xq; P.sx = J.s; P.sumx = J.sum;
                err = g2 ? run_g2(&P, gw, nthreads) : run_problem(&P, nthreads);
            }
        }
        free(J.xq); free(J.s); free(J.sum);
    } else {
        J.xf = tri_alloc((size_t)(m * k) * sizeof(float));
        if (J.xf) {
            pool_run(patch_task, &J, tasks, gather_threads);
            P.x = J.xf;
            err = f32p_fits(&P) ? run_f32p(&P, nthreads) : run_problem(&P, nthreads);
        }
        free(J.xf);
    }
    if (!err) {
        NchwJob N = {.t = t, .residual = residual, .y = y, .n = n, .L = L, .nb = batch,
                     .act = residual ? act : TRI_ACT_NONE};
        pool_run(nchw_task, &N, batch * n, m * n < 65536 ? 1 : nthreads);
    }
    free(t);
    return err;
}


TRI_EXPORT int tri_conv2d_pool_planned(const TriLinearPlan *p, const TriConvGeom *g,
                                       const float *x, int64_t batch, const float *residual,
                                       int act, const TriPoolGeom *q, float *y, int nthreads,
                                       const uint8_t *gw) {
    if (!q) return tri_conv2d_planned(p, g, x, batch, residual, act, y, nthreads, gw);
    if (g->groups < 1 || g->c % g->groups || p->n % g->groups
        || p->k != g->c / g->groups * g->kh * g->kw)
        return 2;
    if (!pool_geom_ok(q) || q->h != g->ho || q->w != g->wo) return 2;
    if (batch == 0 || p->n == 0) return 0;
    if (!(gw && ig_conv_fits(p, g)) && flat_conv_fits(p, g))
        return flat_conv(p, g, x, batch, residual, act, q, y, nthreads);
    if (g->groups != 1) return 3;
    /* the other paths: their NCHW output, then the pooling pass */
    float *t = tri_alloc((size_t)(batch * p->n * g->ho * g->wo) * sizeof(float));
    if (!t) return 1;
    int err = tri_conv2d_planned(p, g, x, batch, residual, act, t, nthreads, gw);
    if (!err) pool_planes(q, t, batch * p->n, y, nthreads);
    free(t);
    return err;
}
