/* tritium_pack.h: packing of trits into the t2 / t1.6 formats and validation of packed rows.
 * A section of tritium_kernels.c, included by it at this point (build.py renders it
 * inline into one translation unit); not a standalone header. */

/* ------------------------------------------------------------------------------------ */
/* Packing                                                                              */
/* ------------------------------------------------------------------------------------ */

/* 128 trits -> 32 bytes; byte j = c[j] | c[j+32]<<2 | c[j+64]<<4 | c[j+96]<<6.
 * Returns the largest code seen (> 2 means an invalid value was present). */
static inline uint8_t pack_block_t2(const int8_t *s, uint8_t *d) {
    uint8_t mx = 0;
    for (int j = 0; j < 32; j++) {
        uint8_t c0 = (uint8_t)(s[j] + 1), c1 = (uint8_t)(s[j + 32] + 1);
        uint8_t c2 = (uint8_t)(s[j + 64] + 1), c3 = (uint8_t)(s[j + 96] + 1);
        uint8_t a = c0 > c1 ? c0 : c1, b = c2 > c3 ? c2 : c3, m = a > b ? a : b;
        mx = mx > m ? mx : m;
        d[j] = (uint8_t)(c0 | (c1 << 2) | (c2 << 4) | (c3 << 6));
    }
    return mx;
}

/* 160 trits -> 32 bytes; byte j = 81 c[j] + 27 c[j+32] + 9 c[j+64] + 3 c[j+96] + c[j+128]. */
static inline uint8_t pack_block_t16(const int8_t *s, uint8_t *d) {
    uint8_t mx = 0;
    for (int j = 0; j < 32; j++) {
        uint8_t c0 = (uint8_t)(s[j] + 1), c1 = (uint8_t)(s[j + 32] + 1);
        uint8_t c2 = (uint8_t)(s[j + 64] + 1), c3 = (uint8_t)(s[j + 96] + 1);
        uint8_t c4 = (uint8_t)(s[j + 128] + 1);
        uint8_t a = c0 > c1 ? c0 : c1, b = c2 > c3 ? c2 : c3, m = a > b ? a : b;
        m = m > c4 ? m : c4;
        mx = mx > m ? mx : m;
        d[j] = (uint8_t)(c0 * 81 + c1 * 27 + c2 * 9 + c3 * 3 + c4);
    }
    return mx;
}

static int pack_row(int fmt, const int8_t *src, int64_t k, uint8_t *dst) {
    const int64_t be = blk_elems(fmt);
    const int64_t full = k / be;
    uint8_t mx = 0;
    for (int64_t b = 0; b < full; b++) {
        uint8_t m = fmt == TRI_FMT_T2 ? pack_block_t2(src + b * be, dst + b * TRI_BLOCK_BYTES)
                                      : pack_block_t16(src + b * be, dst + b * TRI_BLOCK_BYTES);
        mx = mx > m ? mx : m;
    }
    if (k > full * be) {
        int8_t tmp[TRI_T16_BLOCK];
        memset(tmp, 0, sizeof tmp);
        memcpy(tmp, src + full * be, (size_t)(k - full * be));
        uint8_t m = fmt == TRI_FMT_T2 ? pack_block_t2(tmp, dst + full * TRI_BLOCK_BYTES)
                                      : pack_block_t16(tmp, dst + full * TRI_BLOCK_BYTES);
        mx = mx > m ? mx : m;
    }
    return mx > 2;
}

typedef struct {
    int fmt;
    const int8_t *src;
    int64_t rows, k, row_bytes, rows_per_task;
    uint8_t *dst;
    int8_t *out;
    const uint8_t *in;
    _Atomic int64_t bad_row;
} RowsJob;

static void pack_task(void *ctx, int64_t task, int tid) {
    RowsJob *J = ctx;
    (void)tid;
    int64_t r1 = min64(J->rows, (task + 1) * J->rows_per_task);
    for (int64_t r = task * J->rows_per_task; r < r1; r++)
        if (pack_row(J->fmt, J->src + r * J->k, J->k, J->dst + r * J->row_bytes)) atomic_min64(&J->bad_row, r);
}

static int64_t rows_per_task(int64_t rows, int64_t k, int nthreads) {
    /* ~8 tasks per thread, each at least ~64K elements */
    int64_t per = (rows + 8 * (int64_t)nthreads - 1) / (8 * (int64_t)nthreads);
    int64_t min_rows = (65536 + k) / (k + 1);
    if (per < min_rows) per = min_rows;
    return per < 1 ? 1 : per;
}

TRI_EXPORT int64_t tri_pack(int fmt, const int8_t *src, int64_t rows, int64_t k, uint8_t *dst,
                            int64_t row_bytes, int nthreads) {
    RowsJob J = {.fmt = fmt, .src = src, .rows = rows, .k = k, .row_bytes = row_bytes, .dst = dst};
    atomic_init(&J.bad_row, rows);
    J.rows_per_task = rows_per_task(rows, k, nthreads);
    pool_run(pack_task, &J, (rows + J.rows_per_task - 1) / J.rows_per_task, nthreads);
    int64_t bad_row = atomic_load(&J.bad_row);
    if (bad_row == rows) return -1;
    for (int64_t c = 0; c < k; c++) {
        int8_t v = src[bad_row * k + c];
        if (v < -1 || v > 1) return bad_row * k + c;
    }
    return bad_row * k; /* not reached: the row had an invalid value */
}

/* float32 input: trit = sign(v), invalid unless v is exactly that trit (catches 0.5, 2, NaN). */
static int f32_row_to_trits(const float *s, int64_t k, int8_t *d) {
    uint8_t bad = 0;
    for (int64_t i = 0; i < k; i++) {
        float v = s[i];
        int8_t t = (int8_t)((v > 0.0f) - (v < 0.0f));
        bad |= (uint8_t)(v != (float)t);
        d[i] = t;
    }
    return bad;
}

typedef struct {
    int fmt;
    const float *src;
    int64_t rows, k, row_bytes, rows_per_task;
    uint8_t *dst;
    _Atomic int64_t bad_row;
    _Atomic int oom;
} PackF32Job;

static void pack_f32_task(void *ctx, int64_t task, int tid) {
    PackF32Job *J = ctx;
    (void)tid;
    int8_t *tmp = tri_alloc((size_t)J->k);
    if (!tmp) {
        atomic_store(&J->oom, 1);
        return;
    }
    int64_t r1 = min64(J->rows, (task + 1) * J->rows_per_task);
    for (int64_t r = task * J->rows_per_task; r < r1; r++) {
        int bad = f32_row_to_trits(J->src + r * J->k, J->k, tmp);
        bad |= pack_row(J->fmt, tmp, J->k, J->dst + r * J->row_bytes);
        if (bad) atomic_min64(&J->bad_row, r);
    }
    free(tmp);
}

/* Like tri_pack for float32 input. Returns -1, the flat index of the first invalid value,
 * or -2 when a buffer could not be allocated. */
TRI_EXPORT int64_t tri_pack_f32(int fmt, const float *src, int64_t rows, int64_t k, uint8_t *dst,
                                int64_t row_bytes, int nthreads) {
    PackF32Job J = {.fmt = fmt, .src = src, .rows = rows, .k = k, .row_bytes = row_bytes, .dst = dst};
    atomic_init(&J.bad_row, rows);
    atomic_init(&J.oom, 0);
    J.rows_per_task = rows_per_task(rows, k, nthreads);
    pool_run(pack_f32_task, &J, (rows + J.rows_per_task - 1) / J.rows_per_task, nthreads);
    if (atomic_load(&J.oom)) return -2;
    int64_t bad_row = atomic_load(&J.bad_row);
    if (bad_row == rows) return -1;
    for (int64_t c = 0; c < k; c++) {
        float v = src[bad_row * k + c];
        if (!(v == -1.0f || v == 0.0f || v == 1.0f)) return bad_row * k + c;
    }
    return bad_row * k;
}

/* Decode one 32-byte block into trits. Returns nonzero when a byte is invalid. */
static inline int unpack_block_t2(const uint8_t *s, int8_t *d) {
    uint8_t bad = 0;
    for (int j = 0; j < 32; j++) {
        uint8_t b = s[j];
        bad |= (uint8_t)(b & (b >> 1) & 0x55); /* a code 3 has both of its bits set */
        d[j] = (int8_t)((b & 3) - 1);
        d[j + 32] = (int8_t)(((b >> 2) & 3) - 1);
        d[j + 64] = (int8_t)(((b >> 4) & 3) - 1);
        d[j + 96] = (int8_t)((b >> 6) - 1);
    }
    return bad != 0;
}

/* Base-3 digits by fixed point: f = 270 v approximates v / 243 in 16-bit fixed point
 * from above by less than 1/243, so the top digit of 3 f is exactly the next trit code
 * for every v in 0..242 (checked exhaustively in the tests). */
static inline int unpack_block_t16(const uint8_t *s, int8_t *d) {
    uint8_t mx = 0;
    for (int j = 0; j < 32; j++) {
        uint32_t v = s[j];
        mx = mx > s[j] ? mx : s[j];
        uint32_t f = v * 270u, t;
        t = f * 3u; d[j] = (int8_t)((int)(t >> 16) - 1); f = t & 0xFFFFu;
        t = f * 3u; d[j + 32] = (int8_t)((int)(t >> 16) - 1); f = t & 0xFFFFu;
        t = f * 3u; d[j + 64] = (int8_t)((int)(t >> 16) - 1); f = t & 0xFFFFu;
        t = f * 3u; d[j + 96] = (int8_t)((int)(t >> 16) - 1); f = t & 0xFFFFu;
        t = f * 3u; d[j + 128] = (int8_t)((int)(t >> 16) - 1);
    }
    return mx > 242;
}

/* Whether byte j of block b (row of length k) is invalid: bad code or non-zero padding. */
static int byte_invalid(int fmt, uint8_t byte, int64_t b, int64_t j, int64_t k) {
    const int64_t be = blk_elems(fmt);
    const int nd = fmt == TRI_FMT_T2 ? 4 : 5;
    int codes[5];
    if (fmt == TRI_FMT_T2) {
        for (int i = 0; i < 4; i++) codes[i] = (byte >> (2 * i)) & 3;
    } else {
        if (byte > 242) return 1;
        int v = byte;
        for (int i = 4; i >= 0; i--) { codes[i] = v % 3; v /= 3; }
    }
    for (int i = 0; i < nd; i++) {
        if (codes[i] == 3) return 1;
        if (b * be + 32 * i + j >= k && codes[i] != 1) return 1;
    }
    return 0;
}

static int unpack_row(int fmt, const uint8_t *src, int64_t k, int8_t *dst) {
    const int64_t be = blk_elems(fmt);
    const int64_t full = k / be;
    int8_t tmp[TRI_T16_BLOCK];
    int bad = 0;
    for (int64_t b = 0; b < full; b++) {
        int8_t *d = dst ? dst + b * be : tmp;
        bad |= fmt == TRI_FMT_T2 ? unpack_block_t2(src + b * TRI_BLOCK_BYTES, d)
                                 : unpack_block_t16(src + b * TRI_BLOCK_BYTES, d);
    }
    if (k > full * be) {
        int64_t rem = k - full * be;
        bad |= fmt == TRI_FMT_T2 ? unpack_block_t2(src + full * TRI_BLOCK_BYTES, tmp)
                                 : unpack_block_t16(src + full * TRI_BLOCK_BYTES, tmp);
        for (int64_t i = rem; i < be; i++) bad |= tmp[i] != 0;
        if (dst) memcpy(dst + full * be, tmp, (size_t)rem);
    }
    return bad;
}

static void unpack_task(void *ctx, int64_t task, int tid) {
    RowsJob *J = ctx;
    (void)tid;
    int64_t r1 = min64(J->rows, (task + 1) * J->rows_per_task);
    for (int64_t r = task * J->rows_per_task; r < r1; r++)
        if (unpack_row(J->fmt, J->in + r * J->row_bytes, J->k, J->out ? J->out + r * J->k : NULL))
            atomic_min64(&J->bad_row, r);
}

TRI_EXPORT int64_t tri_unpack(int fmt, const uint8_t *src, int64_t rows, int64_t k,
                              int64_t row_bytes, int8_t *dst, int nthreads) {
    RowsJob J = {.fmt = fmt, .in = src, .rows = rows, .k = k, .row_bytes = row_bytes, .out = dst};
    atomic_init(&J.bad_row, rows);
    J.rows_per_task = rows_per_task(rows, k, nthreads);
    pool_run(unpack_task, &J, (rows + J.rows_per_task - 1) / J.rows_per_task, nthreads);
    int64_t bad_row = atomic_load(&J.bad_row);
    if (bad_row == rows) return -1;
    for (int64_t i = 0; i < row_bytes; i++) {
        if (byte_invalid(fmt, src[bad_row * row_bytes + i], i / TRI_BLOCK_BYTES,
                         i % TRI_BLOCK_BYTES, k))
            return bad_row * row_bytes + i;
    }
    return bad_row * row_bytes;
}

