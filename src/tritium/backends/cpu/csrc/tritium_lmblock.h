/* tritium_lmblock.h: a BitNet decoder block in one call, for one token (tri_lm_block_decode)
 * and for a prompt of m tokens (tri_lm_block_prefill), over a KV cache kept once per k/v head
 * (or repeated per query head) in float32 or float16. A section of tritium_kernels.c, included
 * by it after tritium_lm.h (build.py renders it inline into one translation unit); not a
 * standalone header. */

/* ------------------------------------------------------------------------------------ */
/* One decoder block of a BitNet-style language model for one token, in one call           */
/* ------------------------------------------------------------------------------------ */

/* tri_lm_block_decode runs, for the one new token x [dim] at position pos:
 *   h = rms(x) * w_in;  q, k, v = the int8 products of h (quantized once);  rope on q and k
 *   (the "rotate half" form, with the row cos/sin of the position);  k, v written to the cache
 *   at pos (kv head j into the cache heads j*c .. j*c+c-1, c = cache_heads / kv_heads: 1 keeps
 *   each k/v head once, heads / kv_heads is the layout of a generated model that repeats its
 *   k/v heads before attention; float32 or float16 elements);  a = softmax(q k^T /
 *   sqrt(head_dim)) v over positions 0 .. pos of the cache, per head (query head h reads
 *   its k/v head's first copy);
 *   x += o(rms(a) * w_attn);  m = rms(x) * w_post;  t = relu(gate(m))^2 * up(m);
 *   x += down(rms(t) * w_ffn)
 * where rms(v) = v / sqrt(mean(v^2) + eps) (the mean in float) and every product is a frozen
 * layer's plan with int8 activations per token run through run_problem, as tri_linear runs a
 * one-token call (the same quantizer, the same kernels). The rope, the residual adds and the
 * ReLU^2 gating round each operation as PyTorch's elementwise ops do (no contraction into
 * FMA), so only the norms' and the attention's summation order differ from the eager path. */
typedef struct {
    int64_t dim, heads, kv_heads, head_dim, ffn;
    float eps_in, eps_attn, eps_post, eps_ffn;
    const float *w_in, *w_attn, *w_post, *w_ffn; /* RMSNorm weights; NULL: none */
    const TriLinearPlan *q, *k, *v, *o, *gate, *up, *down;
    /* heads of the KV cache: kv_heads (each k/v head stored once) or a multiple of it that
     * divides heads (heads: each k/v head repeated for every query head of its group, the
     * layout of a generated model that repeats its k/v heads before attention); 0: heads */
    int64_t cache_heads;
    /* the cache's element type: 0 float32, 1 float16 (IEEE binary16, rounded to nearest even
     * when written, as torch's .half()) */
    int64_t cache_half;
} TriLmBlock;

/* float16 <-> float32 of a row: F16C on x86 (every AVX2 CPU has it; enabled per function),
 * the fp16 conversions of AArch64 on NEON, bit operations in portable C */
#if TRI_ISA_AVX2 || TRI_ISA_AVX512
__attribute__((target("f16c"))) static void lmb_to_half(const float *x, uint16_t *h, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(h + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) h[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}
__attribute__((target("f16c"))) static void lmb_from_half(const uint16_t *h, float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < n; i++) x[i] = _cvtsh_ss(h[i]);
}
#elif TRI_ISA_NEON
static void lmb_to_half(const float *x, uint16_t *h, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1_u16(h + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    for (; i < n; i++) {
        const __fp16 v = (__fp16)x[i];
        memcpy(h + i, &v, 2);
    }
}
static void lmb_from_half(const uint16_t *h, float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(x + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h + i))));
    for (; i < n; i++) {
        __fp16 v;
        memcpy(&v, h + i, 2);
        x[i] = (float)v;
    }
}
#else
static uint16_t lmb_half_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    const uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7FFFFFFFu;
    if (a >= 0x7F800000u) /* inf, NaN (quiet, payload kept in the high bits) */
        return (uint16_t)(sign | 0x7C00u | (a > 0x7F800000u ? 0x200u | ((a >> 13) & 0x3FFu) : 0u));
    if (a >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u); /* rounds past 65504: inf */
    if (a < 0x38800000u) { /* a subnormal half (or zero): round a * 2^24 to an integer */
        if (a < 0x33000000u) return (uint16_t)sign; /* below half the smallest: 0 */
        const uint32_t e = a >> 23, mant = (a & 0x7FFFFFu) | 0x800000u;
        const uint32_t shift = 126u - e; /* 14 .. 24 */
        uint32_t r = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1u), halfway = 1u << (shift - 1u);
        if (rem > halfway || (rem == halfway && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    /* normal: rebias the exponent, round the 13 dropped bits to nearest even */
    uint32_t r = ((a >> 13) - ((127u - 15u) << 10));
    const uint32_t rem = a & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++;
    return (uint16_t)(sign | r);
}
static float lmb_float_of(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
    uint32_t u;
    if (e == 0x1Fu) {
        u = sign | 0x7F800000u | (mant << 13);
    } else if (e) {
        u = sign | ((e + 112u) << 23) | (mant << 13);
    } else if (mant) { /* subnormal: normalize */
        uint32_t m = mant, ex = 113u;
        while (!(m & 0x400u)) { m <<= 1; ex--; }
        u = sign | (ex << 23) | ((m & 0x3FFu) << 13);
    } else {
        u = sign;
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static void lmb_to_half(const float *x, uint16_t *h, int64_t n) {
    for (int64_t i = 0; i < n; i++) h[i] = lmb_half_of(x[i]);
}
static void lmb_from_half(const uint16_t *h, float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = lmb_float_of(h[i]);
}
#endif

/* row p of cache head ch (cap positions of hd values) */
static inline const float *lmb_row(const void *c, int half, int64_t ch, int64_t cap, int64_t p,
                                   int64_t hd, float *tmp) {
    if (!half) return (const float *)c + (ch * cap + p) * hd;
    lmb_from_half((const uint16_t *)c + (ch * cap + p) * hd, tmp, hd);
    return tmp;
}

/* copies of each k/v head in the cache of b (0 when cache_heads does not fit) */
static inline int64_t lmb_crep(const TriLmBlock *b) {
    const int64_t C = b->cache_heads ? b->cache_heads : b->heads;
    if (C <= 0 || C % b->kv_heads || b->heads % C) return 0;
    return C / b->kv_heads;
}

#if defined(__GNUC__) && !defined(__clang__)
#define LMB_EXACT __attribute__((optimize("fp-contract=off")))
#else
#define LMB_EXACT /* clang contracts only within one expression (-ffp-contract=on) */
#endif

static inline int64_t lmb_ldx(const TriLinearPlan *p) {
    return n_blocks(p->fmt, p->k) * blk_elems(p->fmt) + 64;
}

/* the workspace: float regions, then the int8 activations (the widest layer's row) */
typedef struct {
    float *xn, *q, *k, *v, *att, *g, *u, *y, *scores, *sx;
    int32_t *sumx;
    int8_t *xq;
    int64_t bytes;
} LmbSpace;

static LmbSpace lmb_space(const TriLmBlock *b, int64_t cap, uint8_t *base) {
    const int64_t qd = b->heads * b->head_dim, kvd = b->kv_heads * b->head_dim;
    int64_t wide = b->dim > qd ? b->dim : qd;
    if (b->ffn > wide) wide = b->ffn;
    int64_t ldx = lmb_ldx(b->q);
    const TriLinearPlan *ps[6] = {b->o, b->gate, b->up, b->down, b->k, b->v};
    for (int i = 0; i < 6; i++) if (lmb_ldx(ps[i]) > ldx) ldx = lmb_ldx(ps[i]);
    const int64_t sizes[10] = {wide, qd, kvd, kvd, qd, b->ffn, b->ffn, wide,
                               b->heads * (cap + b->head_dim), 16};
    LmbSpace s;
    float **dst[10] = {&s.xn, &s.q, &s.k, &s.v, &s.att, &s.g, &s.u, &s.y, &s.scores, &s.sx};
    int64_t off = 0;
    for (int i = 0; i < 10; i++) {
        *dst[i] = base ? (float *)(base + off) : NULL;
        off += (sizes[i] * (int64_t)sizeof(float) + 63) & ~(int64_t)63;
    }
    s.sumx = base ? (int32_t *)(base + off) : NULL;
    off += 64;
    s.xq = base ? (int8_t *)(base + off) : NULL;
    off += (ldx + 63) & ~(int64_t)63;
    s.bytes = off;
    return s;
}

/* bytes of the workspace tri_lm_block_decode needs for a cache of `cap` positions */
TRI_EXPORT int64_t tri_lm_block_workspace(const TriLmBlock *b, int64_t cap) {
    return lmb_space(b, cap, NULL).bytes;
}

/* y = v / sqrt(mean(v^2) + eps) * w, rounded as torch's rms_norm: (v * inv) * w */
static LMB_EXACT void lmb_rms(const float *v, int64_t n, float eps, const float *w, float *y) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += v[i + j] * v[i + j];
    float ss = 0.0f;
    for (; i < n; i++) ss += v[i] * v[i];
    for (int j = 0; j < 8; j++) ss += acc[j];
    const float inv = 1.0f / sqrtf(ss / (float)n + eps);
    if (w)
        for (i = 0; i < n; i++) y[i] = (v[i] * inv) * w[i];
    else
        for (i = 0; i < n; i++) y[i] = v[i] * inv;
}

/* The int8 products of an already quantized row (xq, sx, sumx) with `count` (at most 3) frozen
 * layers of its width: ys[i] [n_i], as tri_linear computes a one-token call, but in one
 * parallel region (the team sized by their work together: q/k/v or gate/up of a small model
 * each fall below the size that pays for a second thread, together they may not). */
typedef struct {
    ProblemJob *jobs[3];
    int64_t start[4];
    int count;
} LmbMulti;

static void lmb_multi_task(void *ctx, int64_t task, int tid) {
    const LmbMulti *M = ctx;
    int i = 0;
    while (i + 1 < M->count && task >= M->start[i + 1]) i++;
    problem_task(M->jobs[i], task - M->start[i], tid);
}

static int lmb_linears(const TriLinearPlan *const *ps, float *const *ys, int count,
                       const LmbSpace *s, int nthreads) {
    if (nthreads > TRI_MAX_THREADS) nthreads = TRI_MAX_THREADS;
    if (nthreads < 1) nthreads = 1;
    Problem P[3];
    LmbMulti M;
    memset(&M, 0, sizeof M);
    double work = 0.0;
    int64_t total = 0;
    for (int i = 0; i < count; i++) {
        const TriLinearPlan *p = ps[i];
        memset(&P[i], 0, sizeof P[i]);
        P[i].m = 1; P[i].k = p->k; P[i].n = p->n; P[i].row_bytes = p->row_bytes;
        P[i].fmt = p->fmt; P[i].w = p->w; P[i].y = ys[i];
        P[i].nb = n_blocks(p->fmt, p->k); P[i].kpad = P[i].nb * blk_elems(p->fmt);
        P[i].ldx = P[i].kpad + 64;
        P[i].epi.scale = p->scale; P[i].epi.nscale = p->nscale; P[i].epi.bias = p->bias;
        P[i].epi.act = TRI_ACT_NONE;
        P[i].xq = s->xq; P[i].sx = s->sx; P[i].sumx = s->sumx;
        int64_t nt;
        double w;
        M.jobs[i] = problem_job_new(&P[i], nthreads, &nt, &w);
        if (!M.jobs[i]) {
            for (int j = 0; j < i; j++) problem_job_free(M.jobs[j]);
            return 1;
        }
        M.start[i] = total;
        total += nt;
        work += w;
    }
    M.count = count;
    M.start[count] = total;
    pool_run(lmb_multi_task, &M, total, team_for_work(work, nthreads));
    int err = 0;
    for (int i = 0; i < count; i++) err |= problem_job_free(M.jobs[i]);
    return err;
}

static int lmb_linear(const TriLinearPlan *p, const LmbSpace *s, float *y, int nthreads) {
    return lmb_linears(&p, &y, 1, s, nthreads);
}

static void lmb_quantize(const float *v, const TriLinearPlan *p, const LmbSpace *s) {
    quantize_row(v, p->k, s->xq, lmb_ldx(p), s->sx, s->sumx);
}

static LMB_EXACT void lmb_rope(float *v, int64_t nheads, int64_t hd, const float *c,
                               const float *sn) {
    const int64_t half = hd / 2;
    for (int64_t h = 0; h < nheads; h++) {
        float *a = v + h * hd, *b = a + half;
        for (int64_t i = 0; i < half; i++) {
            const float x1 = a[i], x2 = b[i];
            const float p1 = x1 * c[i], p2 = x2 * sn[i], p3 = x2 * c[i], p4 = x1 * sn[i];
            a[i] = p1 - p2;
            b[i] = p3 + p4;
        }
    }
}

static LMB_EXACT void lmb_add(float *x, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = x[i] + y[i];
}

static inline float lmb_dot(const float *a, const float *b, int64_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    float s = 0.0f;
    for (; i < n; i++) s += a[i] * b[i];
    for (int j = 0; j < 8; j++) s += acc[j];
    return s;
}

typedef struct {
    const float *q;
    const void *kc, *vc;
    int64_t cap, n, hd, rep, crep, half;
    float scale;
    float *scores, *out;
} LmbAttJob;

/* softmax(q k^T * scale) v over positions 0 .. n-1 of cache head ch; s: n + hd floats of
 * scratch */
static void lmb_att_row(const float *q, const void *kc, const void *vc, int half, int64_t ch,
                        int64_t cap, int64_t n, int64_t hd, float scale, float *s, float *o) {
    float mx = -INFINITY;
    float *tmp = s + n;
    for (int64_t p = 0; p < n; p++) {
        s[p] = lmb_dot(q, lmb_row(kc, half, ch, cap, p, hd, tmp), hd) * scale;
        if (s[p] > mx) mx = s[p];
    }
    float sum = 0.0f;
    for (int64_t p = 0; p < n; p++) {
        s[p] = expf(s[p] - mx);
        sum += s[p];
    }
    const float inv = 1.0f / sum;
    for (int64_t d = 0; d < hd; d++) o[d] = 0.0f;
    for (int64_t p = 0; p < n; p++) {
        const float w = s[p] * inv;
        const float *vr = lmb_row(vc, half, ch, cap, p, hd, tmp);
        for (int64_t d = 0; d < hd; d++) o[d] += w * vr[d];
    }
}

/* one head of the one-token decode */
static void lmb_att_task(void *ctx, int64_t h, int tid) {
    (void)tid;
    const LmbAttJob *J = ctx;
    const int64_t hd = J->hd;
    /* query head h reads its k/v head's (first) copy in the cache */
    const int64_t ch = h / J->rep * J->crep;
    lmb_att_row(J->q + h * hd, J->kc, J->vc, (int)J->half, ch, J->cap, J->n, hd, J->scale,
                J->scores + h * (J->cap + hd), J->out + h * hd);
}

/* the keys and values of m tokens (rows of KV heads) into the cache at pos .. pos+m-1, each
 * k/v head j into cache heads j*crep .. j*crep+crep-1 */
static void lmb_cache_write(const float *k, const float *v, int64_t m, int64_t KV, int64_t hd,
                            int64_t crep, int half, void *kc, void *vc, int64_t cap,
                            int64_t pos) {
    const size_t row = (size_t)hd * sizeof(float);
    for (int64_t t = 0; t < m; t++)
        for (int64_t j = 0; j < KV; j++)
            for (int64_t r = 0; r < crep; r++) {
                const int64_t at = ((j * crep + r) * cap + pos + t) * hd;
                const float *ks = k + (t * KV + j) * hd, *vs = v + (t * KV + j) * hd;
                if (half) {
                    lmb_to_half(ks, (uint16_t *)kc + at, hd);
                    lmb_to_half(vs, (uint16_t *)vc + at, hd);
                } else {
                    memcpy((float *)kc + at, ks, row);
                    memcpy((float *)vc + at, vs, row);
                }
            }
}

static LMB_EXACT void lmb_relu2_gate(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float r = g[i] < 0.0f ? 0.0f : g[i]; /* NaN passes, as torch.relu */
        const float sq = r * r;
        g[i] = sq * u[i];
    }
}

/* Returns 0, 2 when the block's shapes do not fit together (or pos is outside the cache),
 * 1 when a kernel could not allocate its buffers. x [dim] is the block's output (xin its
 * input; they may be the same buffer: then it is updated in place); kc/vc are the
 * cache's [cache_heads, cap, head_dim] keys and values (float32, or float16 when
 * b->cache_half); cos/sin the position's head_dim/2 angles;
 * ws a workspace of tri_lm_block_workspace(b, cap) bytes, 64-byte aligned. */
TRI_EXPORT int tri_lm_block_decode(const TriLmBlock *b, const float *xin, float *x,
                                   const float *cosr, const float *sinr, void *kc, void *vc,
                                   int64_t cap, int64_t pos, uint8_t *ws, int nthreads) {
    const int64_t H = b->heads, KV = b->kv_heads, hd = b->head_dim, D = b->dim, F = b->ffn;
    if (H <= 0 || KV <= 0 || H % KV || hd <= 0 || hd % 2 || pos < 0 || pos >= cap) return 2;
    const int64_t qd = H * hd, kvd = KV * hd, rep = H / KV, crep = lmb_crep(b);
    if (!crep) return 2;
    const TriLinearPlan *ps[7] = {b->q, b->k, b->v, b->o, b->gate, b->up, b->down};
    const int64_t ks[7] = {D, D, D, qd, D, D, F}, ns[7] = {qd, kvd, kvd, D, F, F, D};
    for (int i = 0; i < 7; i++)
        if (ps[i]->k != ks[i] || ps[i]->n != ns[i] || !ps[i]->act_quant) return 2;
    /* q/k/v and gate/up read one quantized row: one packed format (the same padding) */
    if (b->k->fmt != b->q->fmt || b->v->fmt != b->q->fmt || b->up->fmt != b->gate->fmt) return 2;
    const LmbSpace s = lmb_space(b, cap, ws);
    int rc = 0;
    if (x != xin) memcpy(x, xin, (size_t)D * sizeof(float));
    /* attention */
    lmb_rms(x, D, b->eps_in, b->w_in, s.xn);
    lmb_quantize(s.xn, b->q, &s);
    {
        const TriLinearPlan *qkv[3] = {b->q, b->k, b->v};
        float *const out[3] = {s.q, s.k, s.v};
        if ((rc = lmb_linears(qkv, out, 3, &s, nthreads))) return rc;
    }
    lmb_rope(s.q, H, hd, cosr, sinr);
    lmb_rope(s.k, KV, hd, cosr, sinr);
    const int half = b->cache_half != 0;
    lmb_cache_write(s.k, s.v, 1, KV, hd, crep, half, kc, vc, cap, pos);
    LmbAttJob A = {s.q, kc, vc, cap, pos + 1, hd, rep, crep, half, 1.0f / sqrtf((float)hd),
                   s.scores, s.att};
    pool_run(lmb_att_task, &A, H,
             team_for_work((double)H * (double)(pos + 1) * (double)hd * 2.0, nthreads));
    lmb_rms(s.att, qd, b->eps_attn, b->w_attn, s.xn);
    lmb_quantize(s.xn, b->o, &s);
    if ((rc = lmb_linear(b->o, &s, s.y, nthreads))) return rc;
    lmb_add(x, s.y, D);
    /* MLP */
    lmb_rms(x, D, b->eps_post, b->w_post, s.xn);
    lmb_quantize(s.xn, b->gate, &s);
    {
        const TriLinearPlan *gu[2] = {b->gate, b->up};
        float *const out[2] = {s.g, s.u};
        if ((rc = lmb_linears(gu, out, 2, &s, nthreads))) return rc;
    }
    lmb_relu2_gate(s.g, s.u, F);
    lmb_rms(s.g, F, b->eps_ffn, b->w_ffn, s.xn);
    lmb_quantize(s.xn, b->down, &s);
    if ((rc = lmb_linear(b->down, &s, s.y, nthreads))) return rc;
    lmb_add(x, s.y, D);
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* One decoder block for a chunk of tokens (a prompt), in one call                         */
/* ------------------------------------------------------------------------------------ */

/* tri_lm_block_prefill runs the block of tri_lm_block_decode on m tokens x [m, dim] at
 * positions pos .. pos+m-1: each norm per token, q/k/v (then o, gate/up, down) as one int8
 * quantization of the m rows and the layers' batch products (the G2 GEMM from TRI_GEMM_MIN_M
 * tokens, on each layer's G2 layout gws[i] when given, as tri_linear_planned runs a layer's
 * call on m tokens), rope with the m rows of cos/sin from row pos, the m keys and values
 * written to the cache at pos .. pos+m-1, causal attention (token t sees positions 0 ..
 * pos+t), the residuals and ReLU^2 gating as in the decode. */
typedef struct {
    const float *q;
    const void *kc, *vc;
    int64_t m, pos, cap, hd, H, rep, crep, nqb, half;
    float scale;
    float *scores; /* TRI_MAX_THREADS rows of pos + m + hd */
    float *out;
} LmpAttJob;

#define LMP_QB 16 /* queries of one head per attention task */

static void lmp_att_task(void *ctx, int64_t task, int tid) {
    const LmpAttJob *J = ctx;
    const int64_t h = task / J->nqb, t0 = task % J->nqb * LMP_QB, t1 = min64(J->m, t0 + LMP_QB);
    const int64_t hd = J->hd, qd = J->H * hd, ch = h / J->rep * J->crep;
    float *s = J->scores + (int64_t)tid * (J->pos + J->m + hd);
    for (int64_t t = t0; t < t1; t++)
        lmb_att_row(J->q + t * qd + h * hd, J->kc, J->vc, (int)J->half, ch, J->cap,
                    J->pos + t + 1, hd, J->scale, s, J->out + t * qd + h * hd);
}

static void lmp_rms(const float *v, int64_t m, int64_t n, float eps, const float *w, float *y) {
    for (int64_t t = 0; t < m; t++) lmb_rms(v + t * n, n, eps, w, y + t * n);
}

/* y [m, n] = the layer's product of the quantized rows (xq with p's row stride, sx, sumx) */
static int lmp_linear(const TriLinearPlan *p, const uint8_t *gw, const int8_t *xq,
                      const float *sx, const int32_t *sumx, int64_t m, float *y, int nthreads) {
    if (p->n == 0) return 0;
    Problem P;
    memset(&P, 0, sizeof P);
    P.m = m; P.k = p->k; P.n = p->n; P.row_bytes = p->row_bytes; P.fmt = p->fmt; P.w = p->w;
    P.y = y; P.nb = n_blocks(p->fmt, p->k); P.kpad = P.nb * blk_elems(p->fmt);
    P.ldx = P.kpad + 64;
    P.epi.scale = p->scale; P.epi.nscale = p->nscale; P.epi.bias = p->bias;
    P.epi.act = TRI_ACT_NONE;
    P.xq = xq; P.sx = sx; P.sumx = sumx;
    return TRI_HAVE_G2 && m >= TRI_GEMM_MIN_M ? run_g2(&P, gw, nthreads) : run_problem(&P, nthreads);
}

/* Returns 0, 2 when the block's shapes do not fit together (or pos .. pos+m-1 is outside
 * the cache), 1 when a buffer could not be allocated. x [m, dim] is the output (xin the
 * input; the same buffer updates in place); cosr/sinr: m rows of head_dim/2 angles (those
 * of positions pos ..); kc/vc the cache [cache heads, cap, head_dim]; gws: 7 pointers (q, k,
 * v, o, gate, up, down) to the layers' G2 layouts, any of them NULL, or NULL. */
TRI_EXPORT int tri_lm_block_prefill(const TriLmBlock *b, const float *xin, float *x, int64_t m,
                                    const float *cosr, const float *sinr, void *kc, void *vc,
                                    int64_t cap, int64_t pos, const uint8_t *const *gws,
                                    int nthreads) {
    const int64_t H = b->heads, KV = b->kv_heads, hd = b->head_dim, D = b->dim, F = b->ffn;
    if (H <= 0 || KV <= 0 || H % KV || hd <= 0 || hd % 2 || m <= 0 || pos < 0
        || pos + m > cap)
        return 2;
    const int64_t qd = H * hd, kvd = KV * hd, rep = H / KV, crep = lmb_crep(b), half = hd / 2;
    if (!crep) return 2;
    const TriLinearPlan *ps[7] = {b->q, b->k, b->v, b->o, b->gate, b->up, b->down};
    const int64_t ks[7] = {D, D, D, qd, D, D, F}, ns[7] = {qd, kvd, kvd, D, F, F, D};
    for (int i = 0; i < 7; i++)
        if (ps[i]->k != ks[i] || ps[i]->n != ns[i] || !ps[i]->act_quant) return 2;
    if (b->k->fmt != b->q->fmt || b->v->fmt != b->q->fmt || b->up->fmt != b->gate->fmt) return 2;
    if (nthreads > TRI_MAX_THREADS) nthreads = TRI_MAX_THREADS;
    if (nthreads < 1) nthreads = 1;
    const uint8_t *gw[7] = {NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    if (gws)
        for (int i = 0; i < 7; i++) gw[i] = gws[i];
    int64_t wide = D > qd ? D : qd, ldx = 0;
    if (F > wide) wide = F;
    for (int i = 0; i < 7; i++) if (lmb_ldx(ps[i]) > ldx) ldx = lmb_ldx(ps[i]);
    float *xn = tri_alloc((size_t)(m * wide) * sizeof(float));
    float *q = tri_alloc((size_t)(m * qd) * sizeof(float));
    float *kk = tri_alloc((size_t)(m * kvd) * sizeof(float));
    float *vv = tri_alloc((size_t)(m * kvd) * sizeof(float));
    float *att = tri_alloc((size_t)(m * qd) * sizeof(float));
    float *g = tri_alloc((size_t)(m * F) * sizeof(float));
    float *u = tri_alloc((size_t)(m * F) * sizeof(float));
    float *y = tri_alloc((size_t)(m * D) * sizeof(float));
    float *scores = tri_alloc((size_t)(TRI_MAX_THREADS * (pos + m + hd)) * sizeof(float));
    float *sx = tri_alloc((size_t)m * sizeof(float));
    int32_t *sumx = tri_alloc((size_t)m * sizeof(int32_t));
    int8_t *xq = tri_alloc((size_t)(m * ldx));
    int rc = 1;
    if (!xn || !q || !kk || !vv || !att || !g || !u || !y || !scores || !sx || !sumx || !xq)
        goto done;
    if (x != xin) memcpy(x, xin, (size_t)(m * D) * sizeof(float));
    /* attention */
    lmp_rms(x, m, D, b->eps_in, b->w_in, xn);
    quantize_all(xn, m, D, xq, lmb_ldx(b->q), sx, sumx, nthreads);
    if ((rc = lmp_linear(b->q, gw[0], xq, sx, sumx, m, q, nthreads))) goto done;
    if ((rc = lmp_linear(b->k, gw[1], xq, sx, sumx, m, kk, nthreads))) goto done;
    if ((rc = lmp_linear(b->v, gw[2], xq, sx, sumx, m, vv, nthreads))) goto done;
    for (int64_t t = 0; t < m; t++) {
        lmb_rope(q + t * qd, H, hd, cosr + t * half, sinr + t * half);
        lmb_rope(kk + t * kvd, KV, hd, cosr + t * half, sinr + t * half);
    }
    lmb_cache_write(kk, vv, m, KV, hd, crep, b->cache_half != 0, kc, vc, cap, pos);
    {
        LmpAttJob A = {q, kc, vc, m, pos, cap, hd, H, rep, crep, (m + LMP_QB - 1) / LMP_QB,
                       b->cache_half != 0, 1.0f / sqrtf((float)hd), scores, att};
        const double work = (double)H * (double)m * ((double)pos + 0.5 * (double)m)
                            * (double)hd * 2.0;
        pool_run(lmp_att_task, &A, H * A.nqb, team_for_work(work, nthreads));
    }
    lmp_rms(att, m, qd, b->eps_attn, b->w_attn, xn);
    quantize_all(xn, m, qd, xq, lmb_ldx(b->o), sx, sumx, nthreads);
    if ((rc = lmp_linear(b->o, gw[3], xq, sx, sumx, m, y, nthreads))) goto done;
    lmb_add(x, y, m * D);
    /* MLP */
    lmp_rms(x, m, D, b->eps_post, b->w_post, xn);
    quantize_all(xn, m, D, xq, lmb_ldx(b->gate), sx, sumx, nthreads);
    if ((rc = lmp_linear(b->gate, gw[4], xq, sx, sumx, m, g, nthreads))) goto done;
    if ((rc = lmp_linear(b->up, gw[5], xq, sx, sumx, m, u, nthreads))) goto done;
    lmb_relu2_gate(g, u, m * F);
    lmp_rms(g, m, F, b->eps_ffn, b->w_ffn, xn);
    quantize_all(xn, m, F, xq, lmb_ldx(b->down), sx, sumx, nthreads);
    if ((rc = lmp_linear(b->down, gw[6], xq, sx, sumx, m, y, nthreads))) goto done;
    lmb_add(x, y, m * D);
    rc = 0;
done:
    free(xn); free(q); free(kk); free(vv); free(att); free(g); free(u); free(y);
    free(scores); free(sx); free(sumx); free(xq);
    return rc;
}
