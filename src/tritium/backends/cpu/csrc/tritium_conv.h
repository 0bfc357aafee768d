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

/* ---- pooling on NCHW planes, as torch computes it ----------------------------------------
 * The same window walk, comparisons and sums as ATen's CPU max_pool2d / avg_pool2d kernels
 * for contiguous NCHW input, so the results are the same bit for bit: max starts at -inf and
 * takes a value when it is greater or NaN (the last NaN of the window wins), as selects the
 * compiler vectorizes (a branch on random data mispredicts half the time); avg sums the
 * window row by row and divides by the divisor once. */
#define TRI_POOL_STAGE 2048 /* floats of the 2x2 max pool's staging rows (on the stack) */

/* (v > m || isnan(v)) ? v : m per lane: the max pool's step. Picking "the last NaN, else the
 * first of the largest" is associative, so a window's values may be combined pairwise:
 * pick(pick(d, c), pick(b, a)) is the chain pick(d, pick(c, pick(b, a))). */
static inline tri_v16 vpick(tri_v16 v, tri_v16 m) {
    const tri_v16i t = (v > m) | (v != v);
    return (tri_v16)(((tri_v16i)v & t) | ((tri_v16i)m & ~t));
}

/* 2x2 windows, stride 2, no padding: for output row oh, lane t of one vector combines input
 * columns t and t + 1 of rows 2 oh and 2 oh + 1 (the even lanes are the windows); the rows go
 * to `stage` at a stride of 2 wo and one strided pass keeps the even lanes. Reads up to VW
 * floats past the plane (the caller's slack). */
static void max_pool_2x2(const float *in, int64_t W, int64_t ho, int64_t wo, float *stage,
                         float *out) {
    for (int64_t oh = 0; oh < ho; oh++) {
        const float *r0 = in + 2 * oh * W, *r1 = r0 + W;
        float *st = stage + oh * 2 * wo;
        for (int64_t t = 0; t < 2 * wo; t += VW) {
            const tri_v16 a = *(const tri_v16u *)(r0 + t), b = *(const tri_v16u *)(r0 + t + 1);
            const tri_v16 c = *(const tri_v16u *)(r1 + t), d = *(const tri_v16u *)(r1 + t + 1);
            *(tri_v16u *)(st + t) = vpick(vpick(d, c), vpick(b, a));
        }
    }
    for (int64_t r = 0; r < ho * wo; r++) out[r] = stage[2 * r];
}

/* `slack`: VW floats after the plane may be read */
static void pool_plane(const TriPoolGeom *q, const float *in, float *out, int slack) {
    const int64_t H = q->h, W = q->w;
    if (q->kind == TRI_POOL_MAX) {
        if (q->kh == 2 && q->kw == 2 && q->sh == 2 && q->sw == 2 && q->ph == 0 && q->pw == 0
            && q->dh == 1 && q->dw == 1 && 2 * q->ho <= H && 2 * q->wo <= W) {
            if (slack && 2 * q->ho * q->wo + VW <= TRI_POOL_STAGE) {
                float stage[TRI_POOL_STAGE];
                max_pool_2x2(in, W, q->ho, q->wo, stage, out);
                return;
            }
            for (int64_t oh = 0; oh < q->ho; oh++) {   /* whole windows, no bounds */
                const float *r0 = in + 2 * oh * W, *r1 = r0 + W;
                float *o = out + oh * q->wo;
                for (int64_t ow = 0; ow < q->wo; ow++) {
                    const float a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow],
                                d = r1[2 * ow + 1];
                    float m = a;   /* what -inf then a gives, -inf included */
                    m = ((b > m) | (b != b)) ? b : m;
                    m = ((c > m) | (c != c)) ? c : m;
                    m = ((d > m) | (d != d)) ? d : m;
                    o[ow] = m;
                }
            }
            return;
        }
        for (int64_t oh = 0; oh < q->ho; oh++) {
            for (int64_t ow = 0; ow < q->wo; ow++) {
                int64_t ih0 = oh * q->sh - q->ph, iw0 = ow * q->sw - q->pw;
                const int64_t ih1 = min64(ih0 + (q->kh - 1) * q->dh + 1, H);
                const int64_t iw1 = min64(iw0 + (q->kw - 1) * q->dw + 1, W);
                while (ih0 < 0) ih0 += q->dh;
                while (iw0 < 0) iw0 += q->dw;
                float m = -INFINITY;
                for (int64_t ih = ih0; ih < ih1; ih += q->dh)
                    for (int64_t iw = iw0; iw < iw1; iw += q->dw) {
                        const float v = in[ih * W + iw];
                        m = ((v > m) | (v != v)) ? v : m;   /* no branch to mispredict */
                    }
                out[oh * q->wo + ow] = m;
            }
        }
        return;
    }
    for (int64_t oh = 0; oh < q->ho; oh++) {
        for (int64_t ow = 0; ow < q->wo; ow++) {
            int64_t ih0 = oh * q->sh - q->ph, iw0 = ow * q->sw - q->pw;
            int64_t ih1 = min64(ih0 + q->kh, H + q->ph), iw1 = min64(iw0 + q->kw, W + q->pw);
            const int64_t pool_size = (ih1 - ih0) * (iw1 - iw0);
            ih0 = ih0 < 0 ? 0 : ih0;
            iw0 = iw0 < 0 ? 0 : iw0;
            ih1 = min64(ih1, H);
            iw1 = min64(iw1, W);
            if (ih0 >= ih1 || iw0 >= iw1) {
                out[oh * q->wo + ow] = 0.0f;
                continue;
            }
            const int64_t div = q->divisor > 0 ? q->divisor
                                : q->count_include_pad ? pool_size : (ih1 - ih0) * (iw1 - iw0);
            float sum = 0.0f;
            for (int64_t ih = ih0; ih < ih1; ih++)
                for (int64_t iw = iw0; iw < iw1; iw++) sum += in[ih * W + iw];
            out[oh * q->wo + ow] = sum / (float)div;
        }
    }
}

typedef struct {
    const TriPoolGeom *q;
    const float *x;
    float *y;
    int64_t planes, per_task;
} PoolJob;

static void pool_task(void *ctx, int64_t task, int tid) {
    PoolJob *J = ctx;
    (void)tid;
    const int64_t in = J->q->h * J->q->w, out = J->q->ho * J->q->wo;
    const int64_t p1 = min64(J->planes, (task + 1) * J->per_task);
    for (int64_t p = task * J->per_task; p < p1; p++)   /* the next plane is the slack */
        pool_plane(J->q, J->x + p * in, J->y + p * out, p + 1 < J->planes);
}

static int pool_geom_ok(const TriPoolGeom *q) {
    return q->kind >= TRI_POOL_MAX && q->kind <= TRI_POOL_AVG && q->h > 0 && q->w > 0
           && q->kh > 0 && q->kw > 0 && q->sh > 0 && q->sw > 0 && q->ph >= 0 && q->pw >= 0
           && q->dh > 0 && q->dw > 0 && q->ho > 0 && q->wo > 0;
}

static void pool_planes(const TriPoolGeom *q, const float *x, int64_t planes, float *y,
                        int nthreads) {
    const int64_t in = q->h * q->w + q->ho * q->wo * q->kh * q->kw;   /* work per plane */
    PoolJob J = {.q = q, .x = x, .y = y, .planes = planes};
    J.per_task = (16384 + in - 1) / in;
    const int64_t tasks = (planes + J.per_task - 1) / J.per_task;
    pool_run(pool_task, &J, tasks, team_for_work((double)planes * (double)in, nthreads));
}

TRI_EXPORT int tri_pool2d(const TriPoolGeom *q, const float *x, int64_t planes, float *y,
                          int nthreads) {
    if (!pool_geom_ok(q)) return 2;
    if (planes > 0) pool_planes(q, x, planes, y, nthreads);
    return 0;
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
#else
#define TRI_DC_OB 4 /* 4 x 2 accumulators + 2 inputs of AVX2's 16 ymm (NEON: 2 q each) */
#define TRI_DC_NV 2
#endif
#define TRI_FLAT_CONV_SMALL_K 1024 /* up to this K every fp32 conv takes the flat conv */
#define TRI_FLAT_CONV_MIN_LEN 64 /* above it, planes at least this long (ResNet-18's 4x4 lose) */

typedef struct {
    const TriLinearPlan *p;
    const TriConvGeom *g;
    const TriPoolGeom *q;  /* or NULL */
    const float *x, *residual;
    const float *wf;       /* O x K trits as floats */
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
    const int64_t n = J->p->n, K = J->p->k, groups = g->groups;
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
        const float sc = J->p->scale[J->p->nscale == 1 ? 0 : o];
        const float bi = J->p->bias ? J->p->bias[o] : 0.0f;
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
static int flat_conv_fits(const TriLinearPlan *p, const TriConvGeom *g) {
    if (p->act_quant) return 0;
    const int64_t len = (g->ho - 1) * ((g->w + 2 * g->pw + g->sw - 1) / g->sw) + g->wo;
    return g->groups > 1 || p->k <= TRI_FLAT_CONV_SMALL_K || len >= TRI_FLAT_CONV_MIN_LEN;
}

static int flat_conv(const TriLinearPlan *p, const TriConvGeom *g, const float *x,
                     int64_t batch, const float *residual, int act, const TriPoolGeom *q,
                     float *y, int nthreads) {
    const int64_t n = p->n, k = p->k, sh = g->sh, sw = g->sw;
    FlatConvJob J = {.p = p, .g = g, .q = q, .x = x, .residual = residual, .y = y, .act = act};
    J.hq = (g->h + 2 * g->ph + sh - 1) / sh;
    J.wq = (g->w + 2 * g->pw + sw - 1) / sw;
    J.len = (g->ho - 1) * J.wq + g->wo;
    J.lp = (J.len + VW - 1) / VW * VW;
    J.cg = g->c / g->groups;
    J.og = n / g->groups;
    J.img = J.cg * sh * sw * J.hq * J.wq + VW;
    J.nblk = (J.og + TRI_DC_OB - 1) / TRI_DC_OB;
    atomic_init(&J.oom, 0);
    float *wf = tri_alloc((size_t)(n * k) * sizeof(float));
    int64_t *off = tri_alloc((size_t)k * sizeof(int64_t));
    uint8_t *codes = tri_alloc((size_t)(n_blocks(p->fmt, k) * blk_elems(p->fmt)));
    J.imgs = tri_alloc((size_t)(batch * g->groups * J.img) * sizeof(float));
    int err = 1;
    if (wf && off && codes && J.imgs) {
        pool_run(flat_copy_task, &J, batch * g->groups,
                 team_for_work((double)(batch * g->groups * J.img), nthreads));
        for (int64_t o = 0; o < n; o++) {
            decode_codes(p->fmt, p->w + o * p->row_bytes, n_blocks(p->fmt, k), codes);
            for (int64_t i = 0; i < k; i++) wf[o * k + i] = (float)((int)codes[i] - 1);
        }
        const int64_t phase = J.hq * J.wq;
        for (int64_t c = 0, t = 0; c < J.cg; c++)
            for (int64_t i = 0; i < g->kh; i++)
                for (int64_t j = 0; j < g->kw; j++, t++) {
                    const int64_t ri = i * g->dh, cj = j * g->dw;
                    off[t] = ((c * sh + ri % sh) * sw + cj % sw) * phase + ri / sh * J.wq
                             + cj / sw;
                }
        J.wf = wf;
        J.off = off;
        const double work = (double)batch * (double)n * (double)k * (double)J.len;
        pool_run(flat_conv_task, &J, batch * g->groups * J.nblk, team_for_work(work, nthreads));
        err = atomic_load(&J.oom) ? 1 : 0;
    }
    free(wf); free(off); free(codes); free(J.imgs);
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
    if (pw_conv_fits(p, g)) return pw_conv(p, g, x, batch, residual, act, y, nthreads);
    if (dw_conv_fits(p, g)) return dw_conv(p, g, x, batch, residual, act, y, nthreads);
    if (flat_conv_fits(p, g)) return flat_conv(p, g, x, batch, residual, act, NULL, y, nthreads);
    if (g->groups != 1) return 3;   /* grouped: only the flat conv */
    Problem P;
    memset(&P, 0, sizeof P);
    P.m = m; P.k = k; P.n = n; P.row_bytes = p->row_bytes; P.fmt = p->fmt; P.w = p->w;
    P.nb = n_blocks(p->fmt, k);
    P.kpad = P.nb * blk_elems(p->fmt);
    P.ldx = P.kpad + 64;
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
                err = TRI_HAVE_G2 && m >= TRI_GEMM_MIN_M ? run_g2(&P, gw, nthreads)
                                                         : run_problem(&P, nthreads);
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
    if (flat_conv_fits(p, g)) return flat_conv(p, g, x, batch, residual, act, q, y, nthreads);
    if (g->groups != 1) return 3;
    /* the other paths: their NCHW output, then the pooling pass */
    float *t = tri_alloc((size_t)(batch * p->n * g->ho * g->wo) * sizeof(float));
    if (!t) return 1;
    int err = tri_conv2d_planned(p, g, x, batch, residual, act, t, nthreads, gw);
    if (!err) pool_planes(q, t, batch * p->n, y, nthreads);
    free(t);
    return err;
}
