/* Compiled twin of wsend.protocol.mask.apply_mask_py: XOR a payload with a 4-byte mask.
 *
 * Behaves exactly like the pure-Python function (same accepted types, same errors); the
 * test suite runs against both. The portable loop works on 8 bytes at a time; on x86-64 with
 * GCC or Clang, a 32-byte AVX2 loop is chosen at run time when the CPU has AVX2.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define WSEND_AVX2 1
#include <immintrin.h>

/* XOR n bytes (a multiple of 32) with a 32-byte key pattern; returns bytes done. */
__attribute__((target("avx2"))) static Py_ssize_t
mask_avx2(const unsigned char *src, unsigned char *dst, Py_ssize_t n, const unsigned char *k32)
{
    __m256i key = _mm256_loadu_si256((const __m256i *)k32);
    Py_ssize_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i word = _mm256_loadu_si256((const __m256i *)(src + i));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_xor_si256(word, key));
    }
    return i;
}

static int has_avx2 = -1;
#endif

/* XOR src with the repeated 4-byte key into dst (they may be the same buffer). */
static void
mask_into(const unsigned char *src, unsigned char *dst, Py_ssize_t n, const unsigned char *key)
{
    Py_ssize_t i = 0;
    unsigned char k[32];
    uint64_t key8;
    for (int j = 0; j < 32; j += 4) {
        memcpy(k + j, key, 4);
    }
#ifdef WSEND_AVX2
    if (has_avx2 < 0) {
        __builtin_cpu_init();
        has_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    if (has_avx2 && n >= 64) {
        i = mask_avx2(src, dst, n, k);
    }
#endif
    memcpy(&key8, k, 8);
    for (; i + 8 <= n; i += 8) {
        uint64_t word;
        memcpy(&word, src + i, 8);
        word ^= key8;
        memcpy(dst + i, &word, 8);
    }
    for (; i < n; i++) {
        dst[i] = src[i] ^ key[i & 3];
    }
}

static PyObject *
apply_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, mask;
    PyObject *result = NULL;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "apply_mask() takes exactly 2 arguments");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &mask, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (mask.len != 4) {
        PyErr_SetString(PyExc_ValueError, "mask must contain 4 bytes");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result == NULL) {
        goto done;
    }
    mask_into((const unsigned char *)data.buf, (unsigned char *)PyBytes_AS_STRING(result),
              data.len, (const unsigned char *)mask.buf);
done:
    PyBuffer_Release(&mask);
    PyBuffer_Release(&data);
    return result;
}

/* PayloadBuffer: a frame's payload received in place.
 *
 * Twin of wsend.protocol.mask.PayloadBufferPy. It owns a new bytes object of the frame's size,
 * not yet shared, and exposes its memory as a writable buffer so that the transport reads
 * the payload straight into it. finish() unmasks it in place and hands the bytes object over:
 * a large payload costs no copy at all. The memory is the allocator's (lazily backed by the
 * kernel for large sizes): a frame that is announced but never sent costs little.
 */
typedef struct {
    PyObject_HEAD
    PyObject *bytes; /* NULL once finished */
} PayloadBuffer;

static PyTypeObject PayloadBuffer_Type;

static PyObject *
payload_buffer_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Py_ssize_t size;
    PayloadBuffer *self;
    static char *kwlist[] = {"size", NULL};

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n:PayloadBuffer", kwlist, &size)) {
        return NULL;
    }
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "size must not be negative");
        return NULL;
    }
    self = (PayloadBuffer *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->bytes = PyBytes_FromStringAndSize(NULL, size);
    if (self->bytes == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
payload_buffer_dealloc(PayloadBuffer *self)
{
    Py_XDECREF(self->bytes);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
payload_buffer_getbuffer(PayloadBuffer *self, Py_buffer *view, int flags)
{
    if (self->bytes == NULL) {
        PyErr_SetString(PyExc_BufferError, "the payload buffer is finished");
        view->obj = NULL;
        return -1;
    }
    return PyBuffer_FillInfo(view, (PyObject *)self, PyBytes_AS_STRING(self->bytes),
                             PyBytes_GET_SIZE(self->bytes), 0, flags);
}

static PyBufferProcs payload_buffer_as_buffer = {
    (getbufferproc)payload_buffer_getbuffer,
    NULL,
};

static PyObject *
payload_buffer_view(PayloadBuffer *self, PyObject *Py_UNUSED(ignored))
{
    return PyMemoryView_FromObject((PyObject *)self);
}

static PyObject *
payload_buffer_finish(PayloadBuffer *self, PyObject *mask)
{
    PyObject *result = self->bytes;
    if (result == NULL) {
        PyErr_SetString(PyExc_ValueError, "the payload buffer is already finished");
        return NULL;
    }
    if (mask != Py_None) {
        Py_buffer key;
        if (PyObject_GetBuffer(mask, &key, PyBUF_SIMPLE) < 0) {
            return NULL;
        }
        if (key.len != 4) {
            PyBuffer_Release(&key);
            PyErr_SetString(PyExc_ValueError, "mask must contain 4 bytes");
            return NULL;
        }
        mask_into((const unsigned char *)PyBytes_AS_STRING(result),
                  (unsigned char *)PyBytes_AS_STRING(result), PyBytes_GET_SIZE(result),
                  (const unsigned char *)key.buf);
        PyBuffer_Release(&key);
    }
    self->bytes = NULL; /* handed over: no view may be taken any more */
    return result;
}

static PyMethodDef payload_buffer_methods[] = {
    {"view", (PyCFunction)payload_buffer_view, METH_NOARGS,
     "view() -> memoryview\n\nA writable view of the whole payload."},
    {"finish", (PyCFunction)payload_buffer_finish, METH_O,
     "finish(mask) -> bytes\n\nUnmask in place (mask: 4 bytes or None) and return the "
     "payload; the buffer can't be used afterwards."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PayloadBuffer_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "wsend.protocol._speedups.PayloadBuffer",
    .tp_basicsize = sizeof(PayloadBuffer),
    .tp_dealloc = (destructor)payload_buffer_dealloc,
    .tp_as_buffer = &payload_buffer_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "PayloadBuffer(size)\n\nA frame payload received in place, then handed over as bytes.",
    .tp_methods = payload_buffer_methods,
    .tp_new = payload_buffer_new,
};

static PyMethodDef speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL,
     "apply_mask(data, mask) -> bytes\n\nXOR data with the 4-byte mask repeated."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "wsend.protocol._speedups",
    "Compiled hot paths of the WebSocket protocol core.", -1, speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyObject *module;
    if (PyType_Ready(&PayloadBuffer_Type) < 0) {
        return NULL;
    }
    module = PyModule_Create(&speedups_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&PayloadBuffer_Type);
    if (PyModule_AddObject(module, "PayloadBuffer", (PyObject *)&PayloadBuffer_Type) < 0) {
        Py_DECREF(&PayloadBuffer_Type);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
