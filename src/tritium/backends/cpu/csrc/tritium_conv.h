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

/* ---- fp32 mode, small patches: a direct ternary convolution ---------------------------------
 * With float activations a ternary tap is an add, a subtract or nothing, so each output row
 * of a channel is the sum of shifted input rows: acc[ow] += x[c, ih, ow * sw + iw0] for the
 * +1 taps, -= for the -1 taps, over contiguous runs the compiler vectorizes (stride 1). No
 * patch matrix, no NCHW pass: for small patches (LeNet-5's 1x5x5 and 6x5x5 with 6 and 16
 * channels) gathering the patches cost more than the products. The scale, bias, residual
 * and activation finish each row. */
#define TRI_DIRECT_CONV_MAX_K 256 /* C * KH * KW up to this takes the direct convolution */
#define TRI_DIRECT_CONV_MAX_WO 4096 /* floats of the per-task accumulator (a row or a plane) */

typedef struct {
    const TriLinearPlan *p;
    const TriConvGeom *g;
    const float *x, *residual;
    const int8_t *trits; /* O x K, decoded once per call */
    float *y;
    int act;
} DirectConvJob;

/* the whole-plane form: no padding, stride 1, the plane at the input's row stride fits acc */
static inline int direct_conv_flat(const TriConvGeom *g) {
    return g->ph == 0 && g->pw == 0 && g->sh == 1 && g->sw == 1
           && (g->ho - 1) * g->w + g->wo <= TRI_DIRECT_CONV_MAX_WO;
}

static void direct_conv_task(void *ctx, int64_t task, int tid) {
    DirectConvJob *J = ctx;
    (void)tid;
    const TriConvGeom *g = J->g;
    const int64_t o = task % J->p->n, b = task / J->p->n, K = J->p->k;
    const int8_t *t = J->trits + o * K;
    const float sc = J->p->scale[J->p->nscale == 1 ? 0 : o];
    const float bi = J->p->bias ? J->p->bias[o] : 0.0f;
    const float *xb = J->x + b * g->c * g->h * g->w;
    const int64_t plane = g->ho * g->wo;
    float *yo = J->y + task * plane;
    const float *ro = J->residual ? J->residual + task * plane : NULL;
    float acc[TRI_DIRECT_CONV_MAX_WO];
    if (direct_conv_flat(g)) {
        /* no padding, stride 1: the output rows laid out at the input's row stride make every
         * tap one contiguous run over the whole plane (the columns past wo are dropped) */
        const int64_t len = (g->ho - 1) * g->w + g->wo;
        for (int64_t l = 0; l < len; l++) acc[l] = 0.0f;
        for (int64_t c = 0; c < g->c; c++) {
            for (int64_t i = 0; i < g->kh; i++) {
                const int8_t *tr = t + (c * g->kh + i) * g->kw;
                for (int64_t j = 0; j < g->kw; j++) {
                    const int tv = tr[j];
                    if (!tv) continue;
                    const float *src = xb + (c * g->h + i * g->dh) * g->w + j * g->dw;
                    if (tv > 0)
                        for (int64_t l = 0; l < len; l++) acc[l] += src[l];
                    else
                        for (int64_t l = 0; l < len; l++) acc[l] -= src[l];
                }
            }
        }
        for (int64_t oh = 0; oh < g->ho; oh++) {
            const float *a = acc + oh * g->w;
            float *dst = yo + oh * g->wo;
            const float *res = ro ? ro + oh * g->wo : NULL;
            for (int64_t ow = 0; ow < g->wo; ow++) {
                float v = a[ow] * sc + bi;
                if (res) v += res[ow];
                dst[ow] = act_apply(J->act, v);
            }
        }
        return;
    }
    for (int64_t oh = 0; oh < g->ho; oh++) {
        for (int64_t ow = 0; ow < g->wo; ow++) acc[ow] = 0.0f;
        for (int64_t c = 0; c < g->c; c++) {
            for (int64_t i = 0; i < g->kh; i++) {
                const int64_t ih = oh * g->sh - g->ph + i * g->dh;
                if (ih < 0 || ih >= g->h) continue;
                const float *row = xb + (c * g->h + ih) * g->w;
                const int8_t *tr = t + (c * g->kh + i) * g->kw;
                for (int64_t j = 0; j < g->kw; j++) {
                    const int tv = tr[j];
                    if (!tv) continue;
                    const int64_t iw0 = j * g->dw - g->pw;   /* iw = ow + iw0 (stride 1) */
                    const int64_t lo = iw0 < 0 ? -iw0 : 0;
                    const int64_t hi = min64(g->wo, g->w - iw0);
                    const float *src = row + iw0;
                    if (tv > 0)
                        for (int64_t ow = lo; ow < hi; ow++) acc[ow] += src[ow];
                    else
                        for (int64_t ow = lo; ow < hi; ow++) acc[ow] -= src[ow];
                }
            }
        }
        float *dst = yo + oh * g->wo;
        const float *res = ro ? ro + oh * g->wo : NULL;
        for (int64_t ow = 0; ow < g->wo; ow++) {
            float v = acc[ow] * sc + bi;
            if (res) v += res[ow];
            dst[ow] = act_apply(J->act, v);
        }
    }
}

/* fp32 mode, small patches, and either the whole-plane form or rows long enough for the
 * row form to beat the patch gather (measured on LeNet-5's shapes: 10-wide rows lose) */
static int direct_conv_fits(const TriLinearPlan *p, const TriConvGeom *g) {
    if (p->act_quant || g->sw != 1 || p->k > TRI_DIRECT_CONV_MAX_K) return 0;
    return direct_conv_flat(g) || (g->wo >= 24 && g->wo <= TRI_DIRECT_CONV_MAX_WO);
}

static int direct_conv(const TriLinearPlan *p, const TriConvGeom *g, const float *x,
                       int64_t batch, const float *residual, int act, float *y, int nthreads) {
    const int64_t n = p->n, k = p->k;
    int8_t *trits = tri_alloc((size_t)(n * k));
    if (!trits) return 1;
    uint8_t *codes = tri_alloc((size_t)(n_blocks(p->fmt, k) * blk_elems(p->fmt)));
    if (!codes) {
        free(trits);
        return 1;
    }
    for (int64_t o = 0; o < n; o++) {
        decode_codes(p->fmt, p->w + o * p->row_bytes, n_blocks(p->fmt, k), codes);
        for (int64_t i = 0; i < k; i++) trits[o * k + i] = (int8_t)((int)codes[i] - 1);
    }
    free(codes);
    DirectConvJob J = {.p = p, .g = g, .x = x, .residual = residual, .trits = trits, .y = y,
                       .act = act};
    const double work = (double)batch * (double)n * (double)k * (double)(g->ho * g->wo);
    pool_run(direct_conv_task, &J, batch * n, team_for_work(work, nthreads));
    free(trits);
    return 0;
}

TRI_EXPORT int tri_conv2d_planned(const TriLinearPlan *p, const TriConvGeom *g, const float *x,
                                  int64_t batch, const float *residual, int act, float *y,
                                  int nthreads, const uint8_t *gw) {
    const int64_t L = g->ho * g->wo, m = batch * L, k = p->k, n = p->n;
    if (k != g->c * g->kh * g->kw) return 2;
    if (m == 0 || n == 0) return 0;
    if (direct_conv_fits(p, g)) return direct_conv(p, g, x, batch, residual, act, y, nthreads);
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
