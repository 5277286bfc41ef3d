/* The compiled connection core's paths: corked writes, receiving whole messages, sending
 * them (part of wsend.asyncio._fastpath, see _fastpath.c; twins in fastpath.ConnectionCorePy).
 */
#include "_fastpath.h"

/* -- writing ------------------------------------------------------------------------------ */

/* Write the chunks of a list in order: one vectored write where the transport has one. */
int
fp_write_chunks(Core *self, PyObject *transport, PyObject *chunks)
{
    if (PyList_GET_SIZE(chunks) == 1) {
        return fp_call_method(transport, s_write, PyList_GET_ITEM(chunks, 0));
    }
    if (self->vectored) {
        return fp_call_method(transport, s_writelines, chunks);
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(chunks); i++) {
        PyObject *chunk = PyList_GET_ITEM(chunks, i);
        int r;
        Py_INCREF(chunk);
        r = fp_call_method(transport, s_write, chunk);
        Py_DECREF(chunk);
        if (r < 0) {
            return -1;
        }
    }
    return 0;
}

/* Write every corked chunk, joined into one write when small (twin: _write_corked). */
int
fp_write_corked(Core *self)
{
    PyObject *corked = self->corked, *transport, *fresh;
    Py_ssize_t size;
    int gone, r;

    if (corked == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_corked");
        return -1;
    }
    r = PyObject_IsTrue(corked);
    if (r <= 0) {
        return r;
    }
    fresh = PyList_New(0);
    if (fresh == NULL) {
        return -1;
    }
    transport = self->transport;
    Py_XINCREF(transport);
    size = self->corked_size;
    self->corked = fresh; /* our reference to the old list moves to `corked` */
    self->corked_size = 0;
    gone = fp_transport_gone(transport);
    if (gone != 0) {
        r = gone < 0 ? -1 : 0;
    }
    else if (!PyList_CheckExact(corked)) {
        PyErr_SetString(PyExc_TypeError, "_corked must be a list");
        r = -1;
    }
    else if (size <= JOIN_LIMIT && PyList_GET_SIZE(corked) > 1) {
        PyObject *joined = PyObject_CallMethodOneArg(empty_bytes, s_join, corked);
        r = joined == NULL ? -1 : fp_call_method(transport, s_write, joined);
        Py_XDECREF(joined);
    }
    else {
        r = fp_write_chunks(self, transport, corked);
    }
    Py_XDECREF(transport);
    Py_DECREF(corked);
    return r;
}

/* Keep chunks for _write_out, or write now past the high-water mark (twin: _cork). */
int
fp_cork(Core *self, PyObject *const *chunks, Py_ssize_t n)
{
    if (self->corked == NULL || !PyList_CheckExact(self->corked)) {
        PyErr_SetString(PyExc_TypeError, "_corked must be a list");
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyList_Append(self->corked, chunks[i]) < 0) {
            return -1;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t len = PyBytes_CheckExact(chunks[i]) ? PyBytes_GET_SIZE(chunks[i])
                                                       : PyObject_Size(chunks[i]);
        if (len < 0) {
            return -1;
        }
        self->corked_size += len;
    }
    if (self->corked_size >= self->high_water) {
        return fp_write_corked(self);
    }
    return 0;
}

/* Whether received messages wait in the queue; -1 on error. */
int
fp_queue_waits(Core *self)
{
    return is_none(self->queue) ? 0 : PyObject_IsTrue(self->queue);
}

/* Write chunks at once, or cork them (twin: _write_or_cork, which says when). list is the
 * list holding the chunks, if there is one. */
int
fp_write_or_cork(Core *self, PyObject *transport, PyObject *const *chunks, Py_ssize_t n,
              PyObject *list)
{
    int waiting, r;
    if (self->batching) {
        return fp_cork(self, chunks, n);
    }
    if (self->cork_scheduled) {
        if (fp_cork(self, chunks, n) < 0) {
            return -1;
        }
        if (self->cork_for_input) {
            waiting = fp_queue_waits(self);
            if (waiting < 0) {
                return -1;
            }
            if (!waiting) {
                self->cork_for_input = 0;
                return fp_write_corked(self);
            }
        }
        return 0;
    }
    waiting = fp_queue_waits(self);
    if (waiting < 0) {
        return -1;
    }
    if (self->wrote || waiting) {
        PyObject *loop, *callback, *handle;
        self->cork_scheduled = 1;
        self->cork_for_input = (char)waiting;
        loop = PyObject_GetAttr((PyObject *)self, s_loop);
        if (loop == NULL) {
            return -1;
        }
        callback = PyObject_GetAttr((PyObject *)self, s_write_out);
        if (callback == NULL) {
            Py_DECREF(loop);
            return -1;
        }
        handle = PyObject_CallMethodOneArg(loop, s_call_soon, callback);
        Py_DECREF(callback);
        Py_DECREF(loop);
        if (handle == NULL) {
            return -1;
        }
        Py_DECREF(handle);
        return fp_cork(self, chunks, n);
    }
    self->wrote = 1;
    if (n == 1) {
        return fp_call_method(transport, s_write, chunks[0]);
    }
    if (list != NULL) {
        return fp_write_chunks(self, transport, list);
    }
    list = PyList_New(n);
    if (list == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(chunks[i]);
        PyList_SET_ITEM(list, i, chunks[i]);
    }
    r = fp_write_chunks(self, transport, list);
    Py_DECREF(list);
    return r;
}

/* A batch handed to on_message ended: write what its answers corked (twin: _end_batch). */
int
fp_end_batch(Core *self)
{
    int r;
    self->batching = 0;
    if (self->cork_scheduled || self->corked == NULL) {
        return 0;
    }
    r = PyObject_IsTrue(self->corked);
    if (r <= 0) {
        return r;
    }
    self->wrote = 1;
    return fp_write_corked(self);
}

/* -- receiving ---------------------------------------------------------------------------- */

/* Hand a message to on_message; log a failure and fail the connection as the twin does.
 * -1 only for exceptions that aren't Exception (KeyboardInterrupt and the like go on up). */
static int
dispatch(Core *self, PyObject *callback, PyObject *message)
{
    PyObject *result, *type, *value, *tb;
    int r;
    Py_INCREF(callback);
    result = PyObject_CallOneArg(callback, message);
    Py_DECREF(callback);
    if (result != NULL) {
        Py_DECREF(result);
        return 0;
    }
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        return -1;
    }
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
    }
    r = fp_call_method((PyObject *)self, s_callback_failed, value);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return r;
}

/* Append a message to the queue, created on first use. */
static int
enqueue(Core *self, PyObject *message)
{
    if (is_none(self->queue)) {
        PyObject *queue = PyObject_CallNoArgs(deque_type);
        if (queue == NULL) {
            return -1;
        }
        Py_XSETREF(self->queue, queue);
    }
    return fp_call_method(self->queue, s_append, message);
}

/* A reader waits in recv() and messages are queued: it takes the first now (Waiter.wake),
 * and the rest from the queue in the same turn. */
static int
wake_reader(Core *self, int *batch)
{
    PyObject *waiter = self->waiter, *queue = self->queue, *first;
    Py_ssize_t n;
    int done, r;
    if (is_none(queue) || is_none(waiter)) {
        return 0;
    }
    n = PyObject_Size(queue);
    if (n <= 0) {
        return (int)n;
    }
    Py_INCREF(waiter);
    done = fp_call_true(waiter, s_done);
    if (done != 0) {
        Py_DECREF(waiter);
        return done < 0 ? -1 : 0;
    }
    if (n > 1) {
        *batch = 1;
        self->batching = 1;
    }
    Py_INCREF(queue);
    first = PyObject_CallMethodNoArgs(queue, s_popleft);
    Py_DECREF(queue);
    if (first == NULL) {
        Py_DECREF(waiter);
        return -1;
    }
    r = fp_call_method(waiter, s_wake, first);
    Py_DECREF(first);
    Py_DECREF(waiter);
    return r;
}

/* Whether proto is between messages with nothing buffered, reading; -1 on error. */
static int
proto_plain(PyObject *proto)
{
    int r = fp_attr_true(proto, &SL_DISCARD);
    if (r != 0) {
        return r < 0 ? -1 : 0;
    }
    r = fp_attr_true(proto, &SL_CAPPED);
    if (r != 0) {
        return r < 0 ? -1 : 0;
    }
    r = fp_attr_set(proto, &SL_BIG);
    if (r != 0) {
        return r < 0 ? -1 : 0;
    }
    r = fp_attr_true(proto, &SL_BUF);
    if (r != 0) {
        return r < 0 ? -1 : 0;
    }
    r = fp_attr_set(proto, &SL_IN_OPCODE);
    return r < 0 ? -1 : !r;
}

/* Deliver the whole simple messages at the start of view[:end]; hand the rest to proto
 * (twin: _receive_messages). */
static int
receive_messages(Core *self, PyObject *proto, PyObject *view, Py_ssize_t end)
{
    const unsigned char *buf = (const unsigned char *)PyMemoryView_GET_BUFFER(view)->buf;
    long long limit, fast_limit, n = 0;
    Py_ssize_t pos = 0;
    int expect_mask, batch = 0, r = 0;
    SimpleFrame f;

    if (fp_attr_limit(proto, &SL_MAX_EVENTS, 1, (long long)1 << 62, &limit) < 0 ||
        fp_attr_limit(proto, &SL_FAST_LIMIT, 0, -1, &fast_limit) < 0) {
        return -1;
    }
    expect_mask = fp_attr_true(proto, &SL_EXPECT_MASK);
    if (expect_mask < 0) {
        return -1;
    }
    while (n < limit && simple_frame(buf, pos, end, expect_mask, fast_limit, &f)) {
        PyObject *message = simple_message(buf, &f), *callback;
        if (message == NULL) {
            if (PyErr_Occurred()) {
                r = -1;
                goto done;
            }
            break; /* invalid UTF-8: the sans-I/O core fails the connection */
        }
        pos = f.start + f.length;
        n++;
        callback = self->on_message;
        if (is_none(callback)) {
            r = enqueue(self, message);
            Py_DECREF(message);
            if (r < 0) {
                goto done;
            }
            continue;
        }
        if (n == 1 && pos < end) {
            batch = 1;
            self->batching = 1;
        }
        r = dispatch(self, callback, message);
        Py_DECREF(message);
        if (r < 0) {
            goto done;
        }
        r = fp_attr_true(proto, &SL_DISCARD); /* the callback failed the connection */
        if (r != 0) {
            if (r < 0) {
                goto done;
            }
            r = 0;
            break;
        }
    }
    r = wake_reader(self, &batch);
    if (r < 0) {
        goto done;
    }
    if (pos < end) {
        PyObject *rest = PySequence_GetSlice(view, pos, end);
        int discard;
        if (rest == NULL) {
            r = -1;
            goto done;
        }
        discard = fp_attr_true(proto, &SL_DISCARD);
        if (discard < 0) {
            r = -1;
        }
        else {
            r = fp_call_method(proto, n >= limit && !discard ? s_defer_data : s_receive_data, rest);
        }
        Py_DECREF(rest);
        if (r == 0) {
            r = fp_call_method((PyObject *)self, s_after_receive, proto);
        }
    }
    else if (!is_none(self->queue)) {
        r = PyObject_IsTrue(self->queue);
        if (r > 0) {
            r = fp_call_method((PyObject *)self, s_check_queue, NULL);
        }
    }
done:
    if (batch) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (fp_end_batch(self) < 0) {
            if (type != NULL) {
                PyErr_Clear(); /* the first error wins */
                PyErr_Restore(type, value, tb);
            }
            return -1;
        }
        PyErr_Restore(type, value, tb);
    }
    return r;
}

/* A slot holding an int, as a long long; -1 on error. */
static int
slot_int(PyObject *obj, Slot *slot, long long *out)
{
    PyObject *value = fp_slot_get(obj, slot);
    if (value == NULL) {
        return -1;
    }
    *out = PyLong_AsLongLong(value);
    Py_DECREF(value);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

/* nbytes read in place into the middle of a large binary frame: count them as the sans-I/O
 * core's receive_into does when it returns False, without the calls. 1 if counted, 0 if
 * receive_into must take them (the frame ends, or isn't binary), -1 on error. *ends tells
 * whether the bytes end the frame. */
static int
count_big_binary(PyObject *proto, Py_ssize_t nbytes, int *ends)
{
    PyObject *frame, *value;
    long long b0, filled, size;
    int r;

    *ends = 0;
    if (nbytes <= 0) {
        return 0;
    }
    r = fp_attr_set(proto, &SL_BIG);
    if (r <= 0) {
        return r;
    }
    r = fp_attr_true(proto, &SL_DISCARD);
    if (r != 0) {
        return r < 0 ? -1 : 0;
    }
    if (slot_int(proto, &SL_BIG_FILLED, &filled) < 0 || slot_int(proto, &SL_BIG_SIZE, &size) < 0) {
        return -1;
    }
    if (filled + nbytes >= size) {
        *ends = filled + nbytes == size;
        return 0;
    }
    frame = fp_slot_get(proto, &SL_BIG_FRAME);
    if (frame == NULL) {
        return -1;
    }
    if (!PyTuple_CheckExact(frame) || PyTuple_GET_SIZE(frame) < 1) {
        Py_DECREF(frame);
        return 0;
    }
    b0 = PyLong_AsLongLong(PyTuple_GET_ITEM(frame, 0));
    Py_DECREF(frame);
    if (b0 == -1 && PyErr_Occurred()) {
        return -1;
    }
    if ((b0 & 0x0F) != 0x2) {
        return 0;
    }
    value = PyLong_FromLongLong(filled + nbytes);
    if (value == NULL) {
        return -1;
    }
    r = fp_slot_set(proto, &SL_BIG_FILLED, value);
    Py_DECREF(value);
    return r < 0 ? -1 : 1;
}

PyObject *
fp_core_get_buffer(Core *self, PyObject *sizehint)
{
    PyObject *proto = self->proto, *view;
    if (!is_none(proto)) {
        int big = fp_attr_set(proto, &SL_BIG);
        if (big < 0) {
            return NULL;
        }
        if (big) {
            view = PyObject_CallMethodNoArgs(proto, s_receive_buffer);
            if (view == NULL) {
                return NULL;
            }
            if (view != Py_None) {
                self->reading_into = 1;
                return view;
            }
            Py_DECREF(view);
        }
    }
    self->reading_into = 0;
    view = fp_recv_buffer();
    if (view != NULL && self->read_header > 0) {
        return PySequence_GetSlice(view, 0, self->read_header);
    }
    Py_XINCREF(view);
    return view;
}

PyObject *
fp_core_buffer_updated(Core *self, PyObject *arg)
{
    PyObject *proto = self->proto, *view;
    Py_ssize_t nbytes = PyLong_AsSsize_t(arg);
    int r;

    if (nbytes == -1 && PyErr_Occurred()) {
        return NULL;
    }
    self->read_header = 0;
    if (!is_none(proto) && self->reading_into) {
        int ends;
        self->wrote = 0;
        Py_INCREF(proto);
        r = count_big_binary(proto, nbytes, &ends);
        if (r == 0) {
            PyObject *more = PyObject_CallMethodOneArg(proto, s_receive_into, arg);
            r = more == NULL ? -1 : PyObject_IsTrue(more);
            Py_XDECREF(more);
            if (r > 0) {
                r = fp_call_method((PyObject *)self, s_after_receive, proto);
            }
        }
        else if (r > 0) {
            r = 0;
        }
        if (r == 0 && ends) {
            int masked = fp_attr_true(proto, &SL_EXPECT_MASK);
            if (masked < 0) {
                r = -1;
            }
            else {
                self->read_header = LARGE_HEADER + 4 * masked;
            }
        }
        Py_DECREF(proto);
        return r < 0 ? NULL : Py_NewRef(Py_None);
    }
    view = fp_recv_buffer();
    if (view == NULL) {
        return NULL;
    }
    if (nbytes < 0 || nbytes > PyMemoryView_GET_BUFFER(view)->len) {
        PyErr_SetString(PyExc_ValueError, "nbytes out of range");
        return NULL;
    }
    if (is_none(proto)) {
        PyObject *data = PyBytes_FromStringAndSize(PyMemoryView_GET_BUFFER(view)->buf, nbytes);
        if (data == NULL) {
            return NULL;
        }
        r = fp_call_method((PyObject *)self, s_handshake_data, data);
        Py_DECREF(data);
        return r < 0 ? NULL : Py_NewRef(Py_None);
    }
    self->wrote = 0;
    Py_INCREF(proto);
    Py_INCREF(view);
    r = proto_plain(proto);
    if (r > 0) {
        r = receive_messages(self, proto, view, nbytes);
    }
    else if (r == 0) {
        PyObject *data = PySequence_GetSlice(view, 0, nbytes);
        r = data == NULL ? -1 : fp_call_method(proto, s_receive_data, data);
        Py_XDECREF(data);
        if (r == 0) {
            r = fp_call_method((PyObject *)self, s_after_receive, proto);
        }
    }
    Py_DECREF(view);
    Py_DECREF(proto);
    return r < 0 ? NULL : Py_NewRef(Py_None);
}

/* -- sending ------------------------------------------------------------------------------ */

/* The next masking key from proto's pool, refilled from os.urandom (as proto._write does).
 * Stores a new reference to the pool in *pool and the key's offset in *offset. */
static int
next_mask(PyObject *proto, PyObject **pool, Py_ssize_t *offset)
{
    PyObject *masks = fp_slot_get(proto, &SL_MASKS), *value;
    Py_ssize_t pos;
    if (masks == NULL) {
        return -1;
    }
    value = fp_slot_get(proto, &SL_MASK_POS);
    if (value == NULL) {
        Py_DECREF(masks);
        return -1;
    }
    pos = PyLong_AsSsize_t(value);
    Py_DECREF(value);
    if ((pos == -1 && PyErr_Occurred()) || !PyBytes_Check(masks)) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "_masks must be bytes");
        }
        Py_DECREF(masks);
        return -1;
    }
    if (pos < 0 || pos + 4 > PyBytes_GET_SIZE(masks)) {
        PyObject *size = PyLong_FromLong(MASK_POOL);
        Py_DECREF(masks);
        if (size == NULL) {
            return -1;
        }
        masks = PyObject_CallOneArg(urandom, size);
        Py_DECREF(size);
        if (masks == NULL) {
            return -1;
        }
        if (!PyBytes_Check(masks) || PyBytes_GET_SIZE(masks) < 4 ||
            fp_slot_set(proto, &SL_MASKS, masks) < 0) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_RuntimeError, "os.urandom() gave too few bytes");
            }
            Py_DECREF(masks);
            return -1;
        }
        pos = 0;
    }
    value = PyLong_FromSsize_t(pos + 4);
    if (value == NULL || fp_slot_set(proto, &SL_MASK_POS, value) < 0) {
        Py_XDECREF(value);
        Py_DECREF(masks);
        return -1;
    }
    Py_DECREF(value);
    *pool = masks;
    *offset = pos;
    return 0;
}

/* Whether proto sends a whole message framed here: no compression, no fragmented message
 * in progress, no output waiting (it must go first); -1 on error. */
static int
proto_plain_sender(PyObject *proto)
{
    PyObject *out;
    int r = fp_attr_true(proto, &SL_PLAIN_SENDER);
    if (r <= 0) {
        return r;
    }
    r = fp_attr_set(proto, &SL_OUT_OPCODE);
    if (r != 0) {
        return r < 0 ? -1 : 0;
    }
    out = fp_slot_get(proto, &SL_OUT);
    if (out == NULL) {
        return -1;
    }
    r = PyObject_IsTrue(out);
    Py_DECREF(out);
    return r < 0 ? -1 : !r;
}

/* A large masked frame is built into the bytes object the previous frame of the same size
 * used, when nothing else holds it any more (the transport wrote it all): a client sending
 * large messages then doesn't allocate (and page in) a new buffer for each. One is kept per
 * process, of SCRATCH_MIN to SCRATCH_MAX bytes. */
#define SCRATCH_MIN (64 * 1024)
#define SCRATCH_MAX (16 * 1024 * 1024)
static PyObject *scratch = NULL;

/* The kept buffer if it has size bytes and is free (a new reference), or NULL. */
static PyObject *
take_scratch(Py_ssize_t size)
{
    PyObject *kept = scratch;
    if (kept == NULL || PyBytes_GET_SIZE(kept) != size || Py_REFCNT(kept) != 1) {
        return NULL;
    }
    scratch = NULL; /* our reference moves to the caller */
    return kept;
}

/* Drop a masked frame built here, keeping it for the next one if nothing else holds it. */
static void
release_masked(PyObject *frame)
{
    Py_ssize_t size = PyBytes_GET_SIZE(frame);
    if (Py_REFCNT(frame) == 1 && size >= SCRATCH_MIN && size <= SCRATCH_MAX) {
        Py_XSETREF(scratch, frame);
    }
    else {
        Py_DECREF(frame);
    }
}

/* Frame message (bytes or str) here into chunks; returns their number or -1. *masked tells
 * whether the frame is masked (one chunk, built here). */
static int
frame_message(PyObject *proto, PyObject *message, PyObject **chunks, int *masked)
{
    PyObject *owner = NULL, *pool = NULL;
    const char *data;
    Py_ssize_t len, offset = 0;
    unsigned char b0;
    int is_client, n;

    if (PyBytes_CheckExact(message)) {
        b0 = 0x82;
        data = PyBytes_AS_STRING(message);
        len = PyBytes_GET_SIZE(message);
        owner = Py_NewRef(message);
    }
    else {
        b0 = 0x81;
        if (PyUnicode_IS_COMPACT_ASCII(message) && PyUnicode_GET_LENGTH(message) <= WSEND_JOIN_FRAME) {
            /* ASCII is its own UTF-8: copied straight into the frame. */
            data = (const char *)PyUnicode_DATA(message);
            len = PyUnicode_GET_LENGTH(message);
        }
        else {
            owner = PyUnicode_AsUTF8String(message);
            if (owner == NULL) {
                return -1;
            }
            data = PyBytes_AS_STRING(owner);
            len = PyBytes_GET_SIZE(owner);
        }
    }
    is_client = fp_attr_true(proto, &SL_IS_CLIENT);
    if (is_client > 0 && next_mask(proto, &pool, &offset) < 0) {
        is_client = -1;
    }
    if (is_client < 0) {
        Py_XDECREF(owner);
        return -1;
    }
    *masked = pool != NULL;
    n = build_frame(b0, data, len, owner,
                    pool ? (const unsigned char *)PyBytes_AS_STRING(pool) + offset : NULL,
                    pool != NULL && len >= SCRATCH_MIN ? take_scratch(frame_size(len, 1)) : NULL,
                    chunks);
    Py_XDECREF(pool);
    Py_XDECREF(owner);
    return n;
}

/* Send str or bytes on an open connection by the shortest path (twin: _send_fast).
 * Returns 1 if sent, 0 if not applicable, -1 on error. */
int
fp_send_fast(Core *self, PyObject *message, PyObject *compress)
{
    PyObject *proto = self->proto, *state, *transport, *chunks[2], *list = NULL;
    int plain, gone, r, n, masked = 0;

    if ((!PyBytes_CheckExact(message) && !PyUnicode_CheckExact(message)) || is_none(proto)) {
        return 0;
    }
    state = fp_slot_get(proto, &SL_STATE);
    if (state == NULL) {
        return -1;
    }
    Py_DECREF(state);
    if (state != state_open || self->connection_lost) {
        return 0;
    }
    Py_INCREF(proto);
    plain = proto_plain_sender(proto);
    if (plain > 0) {
        n = frame_message(proto, message, chunks, &masked);
    }
    else if (plain == 0) {
        /* Compression, or output that must go first: the sans-I/O core frames it. */
        PyObject *args[3] = {NULL, NULL, compress}, *data, *result;
        if (PyUnicode_CheckExact(message)) {
            data = PyUnicode_AsUTF8String(message);
        }
        else {
            data = Py_NewRef(message);
        }
        n = -1;
        if (data != NULL) {
            args[0] = proto;
            args[1] = data;
            result = PyObject_VectorcallMethod(
                PyUnicode_CheckExact(message) ? s_send_text : s_send_binary, args, 2,
                kw_compress);
            Py_DECREF(data);
            if (result != NULL) {
                Py_DECREF(result);
                list = PyObject_CallMethodNoArgs(proto, s_data_to_send);
                if (list != NULL && !PyList_CheckExact(list)) {
                    PyErr_SetString(PyExc_TypeError, "data_to_send() must return a list");
                    Py_CLEAR(list);
                }
                if (list != NULL) {
                    n = 0;
                }
            }
        }
    }
    else {
        n = -1;
    }
    Py_DECREF(proto);
    if (n < 0) {
        return -1;
    }
    transport = self->transport;
    Py_XINCREF(transport);
    gone = fp_transport_gone(transport);
    if (gone != 0) {
        if (gone > 0) {
            fp_raise_closed(self);
        }
        r = -1;
    }
    else if (list != NULL) {
        r = fp_write_or_cork(self, transport, ((PyListObject *)list)->ob_item,
                          PyList_GET_SIZE(list), list);
    }
    else {
        r = fp_write_or_cork(self, transport, chunks, n, NULL);
    }
    Py_XDECREF(transport);
    if (list != NULL) {
        Py_DECREF(list);
    }
    else {
        if (masked) {
            release_masked(chunks[0]);
        }
        else {
            for (int i = 0; i < n; i++) {
                Py_DECREF(chunks[i]);
            }
        }
    }
    return r < 0 ? -1 : 1;
}
