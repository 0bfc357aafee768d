/* The CPython fast path into a kernel library's per-call entry points.
 *
 * ctypes spends 0.6-0.9 us converting a call's eight arguments through its argtypes and
 * libffi, as much as a small layer's whole kernel. This extension module calls the same C
 * functions through their own prototypes (tritium_kernels.h, included ahead of this file by
 * tritium.backends.cpu.build) from METH_FASTCALL functions: about 0.1 us a call.
 *
 * Each function takes the entry point's address first (any kernel library's: the default
 * build or a tuned specialization, found by ctypes once), then the entry point's own arguments
 * in order. Pointers are ints (addresses) or None (NULL); anything else is a TypeError, never a
 * guess at what an object's address is. Integers out of their C type's range raise
 * OverflowError. The GIL is released around the call, as ctypes.CDLL does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>

#include "tritium_kernels.h"

#define TRI_PYCALL_ABI 1

static int a_ptr(PyObject *o, void **out) {
    if (o == Py_None) {
        *out = NULL;
        return 1;
    }
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "a pointer argument must be an int address or None, not %.80s",
                     Py_TYPE(o)->tp_name);
        return 0;
    }
    void *p = PyLong_AsVoidPtr(o);
    if (p == NULL && PyErr_Occurred()) return 0;
    *out = p;
    return 1;
}

static int a_i64(PyObject *o, int64_t *out) {
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "an integer argument must be an int, not %.80s",
                     Py_TYPE(o)->tp_name);
        return 0;
    }
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred()) return 0;
    *out = (int64_t)v;
    return 1;
}

static int a_int(PyObject *o, int *out) {
    int64_t v;
    if (!a_i64(o, &v)) return 0;
    if (v < INT_MIN || v > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "an int argument is out of the C int range");
        return 0;
    }
    *out = (int)v;
    return 1;
}

static int a_f32(PyObject *o, float *out) {
    double d = PyFloat_AsDouble(o);
    if (d == -1.0 && PyErr_Occurred()) return 0;
    *out = (float)d;
    return 1;
}

static int a_count(const char *name, Py_ssize_t got, Py_ssize_t want) {
    if (got == want + 1) return 1;
    PyErr_Format(PyExc_TypeError, "%s takes the entry point's address and %zd arguments (%zd given)",
                 name, want, got);
    return 0;
}

/* The entry point's address (never NULL) as a pointer of the prototype's own type. */
static int a_fn(PyObject *o, void **out) {
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "the entry point must be an int address, not %.80s",
                     Py_TYPE(o)->tp_name);
        return 0;
    }
    if (!a_ptr(o, out)) return 0;
    if (*out == NULL) {
        PyErr_SetString(PyExc_ValueError, "the entry point's address is 0");
        return 0;
    }
    return 1;
}
#define A_FN(o, f) a_fn((o), (void **)&(f))

#define CALL_INT(expr)                  \
    do {                                \
        int rc_;                        \
        Py_BEGIN_ALLOW_THREADS          \
        rc_ = (expr);                   \
        Py_END_ALLOW_THREADS            \
        return PyLong_FromLong(rc_);    \
    } while (0)

static PyObject *c_linear_planned(PyObject *self, PyObject *const *a, Py_ssize_t n) {
    __typeof__(&tri_linear_planned) f;
    void *p, *x, *r, *y, *gw;
    int64_t m;
    int act, th;
    (void)self;
    if (!a_count("tri_linear_planned", n, 8) || !A_FN(a[0], f) || !a_ptr(a[1], &p)
        || !a_ptr(a[2], &x) || !a_i64(a[3], &m) || !a_ptr(a[4], &r) || !a_int(a[5], &act)
        || !a_ptr(a[6], &y) || !a_int(a[7], &th) || !a_ptr(a[8], &gw))
        return NULL;
    CALL_INT(f(p, x, m, r, act, y, th, gw));
}

static PyObject *c_chain_planned(PyObject *self, PyObject *const *a, Py_ssize_t n) {
    __typeof__(&tri_chain_planned) f;
    void *c, *x, *y, *gws;
    int64_t m;
    int th;
    (void)self;
    if (!a_count("tri_chain_planned", n, 6) || !A_FN(a[0], f) || !a_ptr(a[1], &c)
        || !a_ptr(a[2], &x) || !a_i64(a[3], &m) || !a_ptr(a[4], &y) || !a_int(a[5], &th)
        || !a_ptr(a[6], &gws))
        return NULL;
    CALL_INT(f(c, x, m, y, th, gws));
}

static PyObject *c_conv2d_planned(PyObject *self, PyObject *const *a, Py_ssize_t n) {
    __typeof__(&tri_conv2d_planned) f;
    void *p, *g, *x, *r, *y, *gw;
    int64_t b;
    int act, th;
    (void)self;
    if (!a_count("tri_conv2d_planned", n, 9) || !A_FN(a[0], f) || !a_ptr(a[1], &p)
        || !a_ptr(a[2], &g) || !a_ptr(a[3], &x) || !a_i64(a[4], &b) || !a_ptr(a[5], &r)
        || !a_int(a[6], &act) || !a_ptr(a[7], &y) || !a_int(a[8], &th) || !a_ptr(a[9], &gw))
        return NULL;
    CALL_INT(f(p, g, x, b, r, act, y, th, gw));
}

static PyObject *c_conv2d_pool_planned(PyObject *self, PyObject *const *a, Py_ssize_t n) {
    __typeof__(&tri_conv2d_pool_planned) f;
    void *p, *g, *x, *r, *q, *y, *gw;
    int64_t b;
    int act, th;
    (void)self;
    if (!a_count("tri_conv2d_pool_planned", n, 10) || !A_FN(a[0], f) || !a_ptr(a[1], &p)
        || !a_ptr(a[2], &g) || !a_ptr(a[3], &x) || !a_i64(a[4], &b) || !a_ptr(a[5], &r)
        || !a_int(a[6], &act) || !a_ptr(a[7], &q) || !a_ptr(a[8], &y) || !a_int(a[9], &th)
        || !a_ptr(a[10], &gw))
        return NULL;
    CALL_INT(f(p, g, x, b, r, act, q, y, th, gw));
}

static PyObject *c_conv2d_f32(PyObject *self, PyObject *const *a, Py_ssize_t n) {
    __typeof__(&tri_conv2d_f32) f;
    void *w, *s, *bias, *g, *x, *r, *q, *y;
    int64_t nout, b;
    int act, th;
    (void)self;
    if (!a_count("tri_conv2d_f32", n, 12) || !A_FN(a[0], f) || !a_ptr(a[1], &w)
        || !a_ptr(a[2], &s) || !a_ptr(a[3], &bias) || !a_i64(a[4], &nout) || !a_ptr(a[5], &g)
        || !a_ptr(a[6], &x) || !a_i64(a[7], &b) || !a_ptr(a[8], &r) || !a_int(a[9], &act)
        || !a_ptr(a[10], &q) || !a_ptr(a[11], &y) || !a_int(a[12], &th))
        return NULL;
    CALL_INT(f(w, s, bias, nout, g, x, b, r, act, q, y, th));
}

static PyObject *c_pool2d(PyObject *self, PyObject *const *a, Py_ssize_t n) {
    __typeof__(&tri_pool2d) f;
    void *q, *x, *y;
    int64_t planes;
    int th;
    (void)self;
    if (!a_count("tri_pool2d", n, 5) || !A_FN(a[0], f) || !a_ptr(a[1], &q) || !a_ptr(a[2], &x)
        || !a_i64(a[3], &planes) || !a_ptr(a[4], &y) || !a_int(a[5], &th))
        return NULL;
    CALL_INT(f(q, x, planes, y, th));
}

static PyObject *c_rms_linear_planned(PyObject *self, PyObject *const *a, Py_ssize_t n) {
    __typeof__(&tri_rms_linear_planned) f;
    void *p, *x, *y, *gw;
    int64_t m;
    float eps;
    int act, th;
    (void)self;
    if (!a_count("tri_rms_linear_planned", n, 8) || !A_FN(a[0], f) || !a_ptr(a[1], &p)
        || !a_ptr(a[2], &x) || !a_i64(a[3], &m) || !a_f32(a[4], &eps) || !a_int(a[5], &act)
        || !a_ptr(a[6], &y) || !a_int(a[7], &th) || !a_ptr(a[8], &gw))
        return NULL;
    CALL_INT(f(p, x, m, eps, act, y, th, gw));
}

static PyObject *c_rms_multi_planned(PyObject *self, PyObject *const *a, Py_ssize_t n) {
    __typeof__(&tri_rms_multi_planned) f;
    void *plans, *x, *ys;
    int64_t count, m;
    float eps;
    int th;
    (void)self;
    if (!a_count("tri_rms_multi_planned", n, 7) || !A_FN(a[0], f) || !a_ptr(a[1], &plans)
        || !a_i64(a[2], &count) || !a_ptr(a[3], &x) || !a_i64(a[4], &m) || !a_f32(a[5], &eps)
        || !a_ptr(a[6], &ys) || !a_int(a[7], &th))
        return NULL;
    CALL_INT(f(plans, count, x, m, eps, ys, th));
}

static PyObject *c_i8_linear(PyObject *self, PyObject *const *a, Py_ssize_t n) {
    __typeof__(&tri_i8_linear) f;
    void *x, *wp, *ws, *wsum, *bias, *y;
    int64_t m, k, nout;
    int th;
    (void)self;
    if (!a_count("tri_i8_linear", n, 10) || !A_FN(a[0], f) || !a_ptr(a[1], &x)
        || !a_i64(a[2], &m) || !a_i64(a[3], &k) || !a_ptr(a[4], &wp) || !a_i64(a[5], &nout)
        || !a_ptr(a[6], &ws) || !a_ptr(a[7], &wsum) || !a_ptr(a[8], &bias) || !a_ptr(a[9], &y)
        || !a_int(a[10], &th))
        return NULL;
    CALL_INT(f(x, m, k, wp, nout, ws, wsum, bias, y, th));
}

#define ENTRY(name, fn) {name, (PyCFunction)(void (*)(void))fn, METH_FASTCALL, NULL}
static PyMethodDef methods[] = {
    ENTRY("tri_linear_planned", c_linear_planned),
    ENTRY("tri_chain_planned", c_chain_planned),
    ENTRY("tri_conv2d_planned", c_conv2d_planned),
    ENTRY("tri_conv2d_pool_planned", c_conv2d_pool_planned),
    ENTRY("tri_conv2d_f32", c_conv2d_f32),
    ENTRY("tri_pool2d", c_pool2d),
    ENTRY("tri_rms_linear_planned", c_rms_linear_planned),
    ENTRY("tri_rms_multi_planned", c_rms_multi_planned),
    ENTRY("tri_i8_linear", c_i8_linear),
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_tritium_pycall",
    "Fast calls into a Tritium kernel library's per-call entry points.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__tritium_pycall(void) {
    PyObject *mod = PyModule_Create(&module);
    if (mod != NULL && PyModule_AddIntConstant(mod, "ABI", TRI_PYCALL_ABI) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
