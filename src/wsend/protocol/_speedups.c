/* Compiled twins of the protocol core's pure-Python hot paths: masking (mask.apply_mask_py),
 * parsing runs of whole simple messages (mask.parse_messages_py), building frames
 * (frames.serialize_frame_py), and mask.PayloadBufferPy.
 *
 * Each behaves exactly like its pure-Python twin (same accepted types, same results, same
 * errors); the test suite runs against both. The portable masking loop works on 8 bytes at a
 * time; on x86-64 with GCC or Clang, a 32-byte AVX2 loop is chosen at run time when the CPU
 * has AVX2.
 */
#include "_framing.h"

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

/* parse_messages: whole, simple messages parsed straight from a buffer.
 *
 * Twin of wsend.protocol.mask.parse_messages_py (see its docstring): from buf[pos:], parse
 * frames that are each a whole uncompressed text or binary message (FIN set, no RSV bits,
 * masked exactly when expected, payload within limit) into events, as bytes or as str (text,
 * strictly decoded UTF-8); at most count of them. Stops before the first frame that is
 * incomplete, of another kind, or text that isn't valid UTF-8: the general parser takes it.
 * Returns (new pos, number parsed).
 */
static PyObject *
parse_messages(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t pos, count, n = 0;
    long long limit;
    int expect_mask;
    PyObject *events, *result = NULL;

    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "parse_messages() takes exactly 6 arguments");
        return NULL;
    }
    pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred()) {
        return NULL;
    }
    expect_mask = PyObject_IsTrue(args[2]);
    if (expect_mask < 0) {
        return NULL;
    }
    {
        /* A limit past the C range is no limit (no frame that large fits in a buffer); one
         * below it admits nothing. */
        int overflow;
        limit = PyLong_AsLongLongAndOverflow(args[3], &overflow);
        if (limit == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (overflow) {
            limit = overflow > 0 ? LLONG_MAX : -1;
        }
    }
    count = PyLong_AsSsize_t(args[4]);
    if (count == -1 && PyErr_Occurred()) {
        return NULL;
    }
    events = args[5];
    if (!PyList_Check(events)) {
        PyErr_SetString(PyExc_TypeError, "events must be a list");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (pos < 0 || pos > view.len) {
        PyErr_SetString(PyExc_ValueError, "pos out of range");
        goto done;
    }
    {
        const unsigned char *buf = (const unsigned char *)view.buf;
        SimpleFrame f;
        while (n < count && simple_frame(buf, pos, view.len, expect_mask, limit, &f)) {
            PyObject *message = simple_message(buf, &f);
            if (message == NULL) {
                if (PyErr_Occurred()) {
                    goto done;
                }
                break; /* invalid UTF-8: the general parser reports it */
            }
            if (PyList_Append(events, message) < 0) {
                Py_DECREF(message);
                goto done;
            }
            Py_DECREF(message);
            pos = f.start + f.length;
            n++;
        }
    }
    {
        PyObject *p = PyLong_FromSsize_t(pos), *c = p ? PyLong_FromSsize_t(n) : NULL;
        if (c != NULL) {
            result = PyTuple_Pack(2, p, c);
        }
        Py_XDECREF(p);
        Py_XDECREF(c);
    }
done:
    PyBuffer_Release(&view);
    return result;
}

/* serialize_frame: one frame, header and payload (twin of frames.serialize_frame_py). */
static PyObject *
serialize_frame(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"opcode", "payload", "fin", "rsv1", "mask", NULL};
    int opcode, fin = 1, rsv1 = 0, n;
    PyObject *payload, *mask = Py_None, *chunks[2], *result = NULL;
    Py_buffer data, key;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iO|$ppO:serialize_frame", kwlist, &opcode,
                                     &payload, &fin, &rsv1, &mask)) {
        return NULL;
    }
    if (opcode < 0 || opcode > 15) {
        PyErr_SetString(PyExc_ValueError, "opcode must be between 0 and 15");
        return NULL;
    }
    if (PyObject_GetBuffer(payload, &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    key.buf = NULL;
    if (mask != Py_None) {
        if (PyObject_GetBuffer(mask, &key, PyBUF_SIMPLE) < 0) {
            PyBuffer_Release(&data);
            return NULL;
        }
        if (key.len != 4) {
            PyErr_SetString(PyExc_ValueError, "mask must contain 4 bytes");
            goto done;
        }
    }
    n = build_frame((unsigned char)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode),
                    (const char *)data.buf, data.len, payload,
                    (const unsigned char *)key.buf, NULL, chunks);
    if (n < 0) {
        goto done;
    }
    result = PyList_New(n);
    if (result == NULL) {
        for (int i = 0; i < n; i++) {
            Py_DECREF(chunks[i]);
        }
        goto done;
    }
    for (int i = 0; i < n; i++) {
        PyList_SET_ITEM(result, i, chunks[i]);
    }
done:
    if (mask != Py_None) {
        PyBuffer_Release(&key);
    }
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
    {"parse_messages", (PyCFunction)(void (*)(void))parse_messages, METH_FASTCALL,
     "parse_messages(buf, pos, expect_mask, limit, count, events) -> (pos, n)\n\n"
     "Parse whole, simple messages from buf[pos:] into events (see parse_messages_py)."},
    {"serialize_frame", (PyCFunction)(void (*)(void))serialize_frame,
     METH_VARARGS | METH_KEYWORDS,
     "serialize_frame(opcode, payload, *, fin=True, rsv1=False, mask=None) -> list\n\n"
     "Build one frame as a list of chunks (see frames.serialize_frame_py)."},
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
