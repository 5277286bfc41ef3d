/* Compiled twin of wsend.asyncio.fastpath.ConnectionCorePy: the connection's hot state and
 * paths (receiving whole messages, sending them, corked writes).
 *
 * ConnectionCore is the base class of wsend.asyncio.connection.Connection. Its state lives in
 * this struct, exposed under the same attribute names as the twin's slots; everything else is
 * the subclass's, reached by attribute. Each method behaves exactly like the twin's (same
 * results, same errors, same calls into the Python code around it); the test suite runs
 * against both. The contracts are in the twin's docstrings.
 */
#include "_framing.h"
#include <structmember.h>
#include <descrobject.h>

/* As fastpath.RECV_BUFFER_SIZE and fastpath.JOIN_LIMIT (a test checks that they agree), and
 * the sans-I/O core's pool of masking keys. */
#define RECV_BUFFER_SIZE (1 << 20)
#define JOIN_LIMIT 65536
#define MASK_POOL 1024

typedef struct {
    PyObject_HEAD
    PyObject *proto;
    PyObject *transport;
    PyObject *on_message;
    PyObject *waiter;
    PyObject *queue;
    PyObject *corked;
    Py_ssize_t corked_size;
    Py_ssize_t high_water;
    char batching;
    char connection_lost;
    char cork_for_input;
    char cork_scheduled;
    char paused_reading;
    char paused_writing;
    char reading;
    char reading_into;
    char send_held;
    char vectored;
    char wrote;
} Core;

/* Interned names, and objects looked up once at import. */
static PyObject *s_big, *s_buf, *s_capped, *s_discard, *s_expect_mask, *s_fast_limit,
    *s_in_opcode, *s_max_events, *s_state, *s_plain_sender, *s_out_opcode, *s_out,
    *s_is_client, *s_masks, *s_mask_pos, *s_receive_buffer, *s_receive_into, *s_receive_data,
    *s_defer_data, *s_send_text, *s_send_binary, *s_data_to_send, *s_handshake_data,
    *s_after_receive, *s_callback_failed, *s_check_queue, *s_closed_exception, *s_send_whole,
    *s_write_out, *s_loop, *s_call_soon, *s_write, *s_writelines, *s_is_closing, *s_done,
    *s_wake, *s_append, *s_popleft, *s_resume, *s_fail_soon, *s_raise_closed, *s_options,
    *s_max_queue, *s_close_rcvd, *s_anext_wait, *s_join, *s_compress, *s_recv_buffer_key, *kw_compress, *kw_context;
static PyObject *ready_create(PyObject *value);
static PyObject *state_open, *data_type, *s_pending_failure, *deque_type, *usage_error, *urandom, *empty_bytes;

static inline int
is_none(PyObject *obj)
{
    return obj == NULL || obj == Py_None;
}

/* -- the sans-I/O core's slots ----------------------------------------------------------- */

/* Reads of the sans-I/O core's attributes: each is a slot of its class, so once its offset is
 * known (looked up on the class, checked to be a plain object slot) it is read in place, for
 * as long as the class is unchanged (its version tag, as CPython's own attribute cache
 * checks). Anything else goes through getattr. */
typedef struct {
    PyObject **name;
    PyTypeObject *type; /* borrowed, checked with its version tag */
    unsigned int tag;
    Py_ssize_t offset;
} Slot;

static Slot SL_BIG = {&s_big}, SL_BUF = {&s_buf}, SL_CAPPED = {&s_capped},
            SL_DISCARD = {&s_discard}, SL_EXPECT_MASK = {&s_expect_mask},
            SL_FAST_LIMIT = {&s_fast_limit}, SL_IN_OPCODE = {&s_in_opcode},
            SL_MAX_EVENTS = {&s_max_events}, SL_STATE = {&s_state},
            SL_PLAIN_SENDER = {&s_plain_sender}, SL_OUT_OPCODE = {&s_out_opcode},
            SL_OUT = {&s_out}, SL_IS_CLIENT = {&s_is_client}, SL_MASKS = {&s_masks},
            SL_MASK_POS = {&s_mask_pos}, SL_PENDING_FAILURE = {&s_pending_failure},
            SL_CLOSE_RCVD = {&s_close_rcvd};

static inline int
slot_known(PyObject *obj, Slot *slot)
{
    PyTypeObject *type = Py_TYPE(obj);
    return type == slot->type && type->tp_version_tag == slot->tag &&
           (type->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG);
}

/* Find where type keeps the slot, if it is a plain object slot and the type has a valid
 * version tag (else it is read with getattr). */
static void
slot_resolve(PyTypeObject *type, Slot *slot)
{
    PyObject *descr;
    slot->type = NULL;
    if (!(type->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG)) {
        return;
    }
    descr = PyObject_GetAttr((PyObject *)type, *slot->name);
    if (descr == NULL) {
        PyErr_Clear();
        return;
    }
    if (Py_IS_TYPE(descr, &PyMemberDescr_Type) &&
        ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX &&
        !(((PyMemberDescrObject *)descr)->d_member->flags & READONLY) &&
        (type->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG)) {
        slot->offset = ((PyMemberDescrObject *)descr)->d_member->offset;
        slot->tag = type->tp_version_tag;
        slot->type = type;
    }
    Py_DECREF(descr);
}

/* obj.<slot> (a new reference). */
static PyObject *
slot_get(PyObject *obj, Slot *slot)
{
    if (!slot_known(obj, slot)) {
        slot_resolve(Py_TYPE(obj), slot);
    }
    if (slot_known(obj, slot)) {
        PyObject *value = *(PyObject **)((char *)obj + slot->offset);
        if (value != NULL) {
            return Py_NewRef(value);
        }
    }
    return PyObject_GetAttr(obj, *slot->name); /* or raise AttributeError as it does */
}

/* obj.<slot> = value */
static int
slot_set(PyObject *obj, Slot *slot, PyObject *value)
{
    if (!slot_known(obj, slot)) {
        slot_resolve(Py_TYPE(obj), slot);
    }
    if (slot_known(obj, slot)) {
        Py_XSETREF(*(PyObject **)((char *)obj + slot->offset), Py_NewRef(value));
        return 0;
    }
    return PyObject_SetAttr(obj, *slot->name, value);
}

/* -- small helpers ------------------------------------------------------------------------ */

/* The truth value of obj.<slot>; -1 on error. */
static int
attr_true(PyObject *obj, Slot *name)
{
    PyObject *value = slot_get(obj, name);
    int result;
    if (value == NULL) {
        return -1;
    }
    result = PyObject_IsTrue(value);
    Py_DECREF(value);
    return result;
}

/* Whether obj.<slot> is not None; -1 on error. */
static int
attr_set(PyObject *obj, Slot *name)
{
    PyObject *value = slot_get(obj, name);
    if (value == NULL) {
        return -1;
    }
    Py_DECREF(value);
    return value != Py_None;
}

/* Call obj.<name>(arg), or obj.<name>() if arg is NULL, dropping the result; -1 on error. */
static int
call_method(PyObject *obj, PyObject *name, PyObject *arg)
{
    PyObject *result = arg == NULL ? PyObject_CallMethodNoArgs(obj, name)
                                   : PyObject_CallMethodOneArg(obj, name, arg);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

/* The truth value of obj.<name>(); -1 on error. */
static int
call_true(PyObject *obj, PyObject *name)
{
    PyObject *result = PyObject_CallMethodNoArgs(obj, name);
    int truth;
    if (result == NULL) {
        return -1;
    }
    truth = PyObject_IsTrue(result);
    Py_DECREF(result);
    return truth;
}

/* obj.<slot> as a limit: None, or 0 when zero_is_none, gives dflt; ints past the C range
 * are clamped (no frame can exceed LLONG_MAX bytes and be whole in a buffer). */
static int
attr_limit(PyObject *obj, Slot *name, int zero_is_none, long long dflt, long long *out)
{
    PyObject *value = slot_get(obj, name);
    int overflow;
    long long n;
    if (value == NULL) {
        return -1;
    }
    if (value == Py_None) {
        Py_DECREF(value);
        *out = dflt;
        return 0;
    }
    n = PyLong_AsLongLongAndOverflow(value, &overflow);
    Py_DECREF(value);
    if (n == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow) {
        n = overflow > 0 ? LLONG_MAX : -1;
    }
    *out = (n == 0 && zero_is_none) ? dflt : n;
    return 0;
}

/* Whether the transport is missing or closing; -1 on error. */
static int
transport_gone(PyObject *transport)
{
    return is_none(transport) ? 1 : call_true(transport, s_is_closing);
}

/* Raise self._closed_exception(). */
static void
raise_closed(Core *self)
{
    PyObject *exc = PyObject_CallMethodNoArgs((PyObject *)self, s_closed_exception);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
}

/* This thread's receive buffer: a memoryview of RECV_BUFFER_SIZE bytes (borrowed). */
static PyObject *
recv_buffer(void)
{
    PyObject *dict = PyThreadState_GetDict(), *view, *array;
    if (dict == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "no thread state");
        return NULL;
    }
    view = PyDict_GetItemWithError(dict, s_recv_buffer_key);
    if (view != NULL || PyErr_Occurred()) {
        return view;
    }
    array = PyByteArray_FromStringAndSize(NULL, RECV_BUFFER_SIZE);
    if (array == NULL) {
        return NULL;
    }
    view = PyMemoryView_FromObject(array);
    Py_DECREF(array);
    if (view == NULL) {
        return NULL;
    }
    if (PyDict_SetItem(dict, s_recv_buffer_key, view) < 0) {
        Py_DECREF(view);
        return NULL;
    }
    Py_DECREF(view); /* the thread's dict keeps it */
    return view;
}

/* -- writing ------------------------------------------------------------------------------ */

/* Write the chunks of a list in order: one vectored write where the transport has one. */
static int
write_chunks(Core *self, PyObject *transport, PyObject *chunks)
{
    if (PyList_GET_SIZE(chunks) == 1) {
        return call_method(transport, s_write, PyList_GET_ITEM(chunks, 0));
    }
    if (self->vectored) {
        return call_method(transport, s_writelines, chunks);
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(chunks); i++) {
        PyObject *chunk = PyList_GET_ITEM(chunks, i);
        int r;
        Py_INCREF(chunk);
        r = call_method(transport, s_write, chunk);
        Py_DECREF(chunk);
        if (r < 0) {
            return -1;
        }
    }
    return 0;
}

/* Write every corked chunk, joined into one write when small (twin: _write_corked). */
static int
write_corked(Core *self)
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
    gone = transport_gone(transport);
    if (gone != 0) {
        r = gone < 0 ? -1 : 0;
    }
    else if (!PyList_CheckExact(corked)) {
        PyErr_SetString(PyExc_TypeError, "_corked must be a list");
        r = -1;
    }
    else if (size <= JOIN_LIMIT && PyList_GET_SIZE(corked) > 1) {
        PyObject *joined = PyObject_CallMethodOneArg(empty_bytes, s_join, corked);
        r = joined == NULL ? -1 : call_method(transport, s_write, joined);
        Py_XDECREF(joined);
    }
    else {
        r = write_chunks(self, transport, corked);
    }
    Py_XDECREF(transport);
    Py_DECREF(corked);
    return r;
}

/* Keep chunks for _write_out, or write now past the high-water mark (twin: _cork). */
static int
cork(Core *self, PyObject *const *chunks, Py_ssize_t n)
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
        return write_corked(self);
    }
    return 0;
}

/* Whether received messages wait in the queue; -1 on error. */
static int
queue_waits(Core *self)
{
    return is_none(self->queue) ? 0 : PyObject_IsTrue(self->queue);
}

/* Write chunks at once, or cork them (twin: _write_or_cork, which says when). list is the
 * list holding the chunks, if there is one. */
static int
write_or_cork(Core *self, PyObject *transport, PyObject *const *chunks, Py_ssize_t n,
              PyObject *list)
{
    int waiting, r;
    if (self->batching) {
        return cork(self, chunks, n);
    }
    if (self->cork_scheduled) {
        if (cork(self, chunks, n) < 0) {
            return -1;
        }
        if (self->cork_for_input) {
            waiting = queue_waits(self);
            if (waiting < 0) {
                return -1;
            }
            if (!waiting) {
                self->cork_for_input = 0;
                return write_corked(self);
            }
        }
        return 0;
    }
    waiting = queue_waits(self);
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
        return cork(self, chunks, n);
    }
    self->wrote = 1;
    if (n == 1) {
        return call_method(transport, s_write, chunks[0]);
    }
    if (list != NULL) {
        return write_chunks(self, transport, list);
    }
    list = PyList_New(n);
    if (list == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(chunks[i]);
        PyList_SET_ITEM(list, i, chunks[i]);
    }
    r = write_chunks(self, transport, list);
    Py_DECREF(list);
    return r;
}

/* A batch handed to on_message ended: write what its answers corked (twin: _end_batch). */
static int
end_batch(Core *self)
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
    return write_corked(self);
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
    r = call_method((PyObject *)self, s_callback_failed, value);
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
    return call_method(self->queue, s_append, message);
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
    done = call_true(waiter, s_done);
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
    r = call_method(waiter, s_wake, first);
    Py_DECREF(first);
    Py_DECREF(waiter);
    return r;
}

/* Whether proto is between messages with nothing buffered, reading; -1 on error. */
static int
proto_plain(PyObject *proto)
{
    int r = attr_true(proto, &SL_DISCARD);
    if (r != 0) {
        return r < 0 ? -1 : 0;
    }
    r = attr_true(proto, &SL_CAPPED);
    if (r != 0) {
        return r < 0 ? -1 : 0;
    }
    r = attr_set(proto, &SL_BIG);
    if (r != 0) {
        return r < 0 ? -1 : 0;
    }
    r = attr_true(proto, &SL_BUF);
    if (r != 0) {
        return r < 0 ? -1 : 0;
    }
    r = attr_set(proto, &SL_IN_OPCODE);
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

    if (attr_limit(proto, &SL_MAX_EVENTS, 1, (long long)1 << 62, &limit) < 0 ||
        attr_limit(proto, &SL_FAST_LIMIT, 0, -1, &fast_limit) < 0) {
        return -1;
    }
    expect_mask = attr_true(proto, &SL_EXPECT_MASK);
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
        r = attr_true(proto, &SL_DISCARD); /* the callback failed the connection */
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
        discard = attr_true(proto, &SL_DISCARD);
        if (discard < 0) {
            r = -1;
        }
        else {
            r = call_method(proto, n >= limit && !discard ? s_defer_data : s_receive_data, rest);
        }
        Py_DECREF(rest);
        if (r == 0) {
            r = call_method((PyObject *)self, s_after_receive, proto);
        }
    }
    else if (!is_none(self->queue)) {
        r = PyObject_IsTrue(self->queue);
        if (r > 0) {
            r = call_method((PyObject *)self, s_check_queue, NULL);
        }
    }
done:
    if (batch) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (end_batch(self) < 0) {
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

static PyObject *
core_get_buffer(Core *self, PyObject *sizehint)
{
    PyObject *proto = self->proto, *view;
    if (!is_none(proto)) {
        int big = attr_set(proto, &SL_BIG);
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
    view = recv_buffer();
    Py_XINCREF(view);
    return view;
}

static PyObject *
core_buffer_updated(Core *self, PyObject *arg)
{
    PyObject *proto = self->proto, *view;
    Py_ssize_t nbytes = PyLong_AsSsize_t(arg);
    int r;

    if (nbytes == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (!is_none(proto) && self->reading_into) {
        self->wrote = 0;
        Py_INCREF(proto);
        r = call_method(proto, s_receive_into, arg);
        if (r == 0) {
            r = call_method((PyObject *)self, s_after_receive, proto);
        }
        Py_DECREF(proto);
        return r < 0 ? NULL : Py_NewRef(Py_None);
    }
    view = recv_buffer();
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
        r = call_method((PyObject *)self, s_handshake_data, data);
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
        r = data == NULL ? -1 : call_method(proto, s_receive_data, data);
        Py_XDECREF(data);
        if (r == 0) {
            r = call_method((PyObject *)self, s_after_receive, proto);
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
    PyObject *masks = slot_get(proto, &SL_MASKS), *value;
    Py_ssize_t pos;
    if (masks == NULL) {
        return -1;
    }
    value = slot_get(proto, &SL_MASK_POS);
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
            slot_set(proto, &SL_MASKS, masks) < 0) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_RuntimeError, "os.urandom() gave too few bytes");
            }
            Py_DECREF(masks);
            return -1;
        }
        pos = 0;
    }
    value = PyLong_FromSsize_t(pos + 4);
    if (value == NULL || slot_set(proto, &SL_MASK_POS, value) < 0) {
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
    int r = attr_true(proto, &SL_PLAIN_SENDER);
    if (r <= 0) {
        return r;
    }
    r = attr_set(proto, &SL_OUT_OPCODE);
    if (r != 0) {
        return r < 0 ? -1 : 0;
    }
    out = slot_get(proto, &SL_OUT);
    if (out == NULL) {
        return -1;
    }
    r = PyObject_IsTrue(out);
    Py_DECREF(out);
    return r < 0 ? -1 : !r;
}

/* Frame message (bytes or str) here into chunks; returns their number or -1. */
static int
frame_message(PyObject *proto, PyObject *message, PyObject **chunks)
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
    is_client = attr_true(proto, &SL_IS_CLIENT);
    if (is_client > 0 && next_mask(proto, &pool, &offset) < 0) {
        is_client = -1;
    }
    if (is_client < 0) {
        Py_XDECREF(owner);
        return -1;
    }
    n = build_frame(b0, data, len, owner,
                    pool ? (const unsigned char *)PyBytes_AS_STRING(pool) + offset : NULL,
                    chunks);
    Py_XDECREF(pool);
    Py_XDECREF(owner);
    return n;
}

/* Send str or bytes on an open connection by the shortest path (twin: _send_fast).
 * Returns 1 if sent, 0 if not applicable, -1 on error. */
static int
send_fast(Core *self, PyObject *message, PyObject *compress)
{
    PyObject *proto = self->proto, *state, *transport, *chunks[2], *list = NULL;
    int plain, gone, r, n;

    if ((!PyBytes_CheckExact(message) && !PyUnicode_CheckExact(message)) || is_none(proto)) {
        return 0;
    }
    state = slot_get(proto, &SL_STATE);
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
        n = frame_message(proto, message, chunks);
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
    gone = transport_gone(transport);
    if (gone != 0) {
        if (gone > 0) {
            raise_closed(self);
        }
        r = -1;
    }
    else if (list != NULL) {
        r = write_or_cork(self, transport, ((PyListObject *)list)->ob_item,
                          PyList_GET_SIZE(list), list);
    }
    else {
        r = write_or_cork(self, transport, chunks, n, NULL);
    }
    Py_XDECREF(transport);
    if (list != NULL) {
        Py_DECREF(list);
    }
    else {
        for (int i = 0; i < n; i++) {
            Py_DECREF(chunks[i]);
        }
    }
    return r < 0 ? -1 : 1;
}

/* -- methods ------------------------------------------------------------------------------ */

/* Parse send_nowait(message, *, compress=None)'s arguments. */
static int
parse_send_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                PyObject **message, PyObject **compress)
{
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    *compress = Py_None;
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError, "%s() takes exactly one positional argument (%zd given)",
                     fname, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        int same = PyUnicode_Compare(key, s_compress);
        if (same == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (same != 0) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname,
                         key);
            return -1;
        }
        *compress = args[nargs + i];
    }
    *message = args[0];
    return 0;
}

static PyObject *
core_send_nowait(Core *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *message, *compress, *sent;
    int r;
    if (parse_send_args("send_nowait", args, nargs, kwnames, &message, &compress) < 0) {
        return NULL;
    }
    if (self->send_held) {
        PyErr_SetString(usage_error, "a streamed message is being sent: await send() instead");
        return NULL;
    }
    r = send_fast(self, message, compress);
    if (r < 0) {
        return NULL;
    }
    if (r > 0) {
        Py_RETURN_NONE;
    }
    {
        PyObject *call[3] = {(PyObject *)self, message, compress};
        sent = PyObject_VectorcallMethod(s_send_whole, call, 3, NULL);
    }
    if (sent == NULL) {
        return NULL;
    }
    r = PyObject_IsTrue(sent);
    Py_DECREF(sent);
    if (r < 0) {
        return NULL;
    }
    if (!r) {
        PyObject *name = PyType_GetName(Py_TYPE(message));
        if (name != NULL) {
            PyErr_Format(PyExc_TypeError, "send_nowait() takes str or bytes-like messages, not %U",
                         name);
            Py_DECREF(name);
        }
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
core_pop_ready(Core *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *queue = self->queue, *first;
    Py_ssize_t n;
    if (is_none(queue) || self->reading || self->paused_reading) {
        Py_RETURN_NONE;
    }
    n = PyObject_Size(queue);
    if (n <= 0) {
        return n < 0 ? NULL : Py_NewRef(Py_None);
    }
    first = PySequence_GetItem(queue, 0);
    if (first == NULL) {
        return NULL;
    }
    Py_DECREF(first); /* the queue holds it */
    if ((PyObject *)Py_TYPE(first) == data_type) {
        Py_RETURN_NONE;
    }
    if (n == 1 && !is_none(self->proto)) {
        int pending = attr_set(self->proto, &SL_PENDING_FAILURE);
        if (pending != 0) {
            return pending < 0 ? NULL : Py_NewRef(Py_None);
        }
    }
    return PyObject_CallMethodNoArgs(queue, s_popleft);
}

/* async for: a waiting message without a coroutine, else Connection._anext_wait(). */
static PyObject *
core_anext(Core *self)
{
    PyObject *message = core_pop_ready(self, NULL), *ready;
    if (message == NULL) {
        return NULL;
    }
    if (message != Py_None) {
        ready = ready_create(message);
        Py_DECREF(message);
        return ready;
    }
    Py_DECREF(message);
    return PyObject_CallMethodNoArgs((PyObject *)self, s_anext_wait);
}

static PyObject *
core_ready_fragment(Core *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *queue, *event, *proto = self->proto, *result;
    Py_ssize_t left;
    int waiting = queue_waits(self), closing;

    if (waiting < 0) {
        return NULL;
    }
    if (!waiting && self->paused_reading) {
        /* Parsing stopped with frames left buffered: parse on, rather than wait. */
        if (call_method((PyObject *)self, s_resume, NULL) < 0) {
            return NULL;
        }
        waiting = queue_waits(self);
        if (waiting < 0) {
            return NULL;
        }
    }
    if (waiting) {
        queue = Py_NewRef(self->queue);
        event = PyObject_CallMethodNoArgs(queue, s_popleft);
        left = event == NULL ? -1 : PyObject_Size(queue);
        Py_DECREF(queue);
        if (left < 0) {
            Py_XDECREF(event);
            return NULL;
        }
        proto = self->proto;
        if (left == 0 && !is_none(proto)) {
            int pending = attr_set(proto, &SL_PENDING_FAILURE);
            if (pending != 0 &&
                (pending < 0 || call_method((PyObject *)self, s_fail_soon, NULL) < 0)) {
                Py_DECREF(event);
                return NULL;
            }
        }
        if (self->paused_reading) {
            PyObject *options = PyObject_GetAttr((PyObject *)self, s_options), *value;
            Py_ssize_t max_queue = -1;
            value = options == NULL ? NULL : PyObject_GetAttr(options, s_max_queue);
            Py_XDECREF(options);
            if (value != NULL) {
                max_queue = PyLong_AsSsize_t(value);
                Py_DECREF(value);
            }
            if ((max_queue == -1 && PyErr_Occurred()) || value == NULL ||
                (left <= max_queue / 4 &&
                 call_method((PyObject *)self, s_resume, NULL) < 0)) {
                Py_DECREF(event);
                return NULL;
            }
        }
        return event;
    }
    closing = self->connection_lost;
    if (!closing && !is_none(proto)) {
        closing = attr_set(proto, &SL_CLOSE_RCVD);
        if (closing < 0) {
            return NULL;
        }
    }
    if (closing) {
        result = PyObject_CallMethodNoArgs((PyObject *)self, s_raise_closed);
        if (result != NULL) { /* it always raises */
            Py_DECREF(result);
            PyErr_SetString(PyExc_RuntimeError, "_raise_closed() returned");
        }
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
core_send_fast(Core *self, PyObject *const *args, Py_ssize_t nargs)
{
    int r;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_send_fast() takes exactly 2 arguments");
        return NULL;
    }
    r = send_fast(self, args[0], args[1]);
    return r < 0 ? NULL : PyBool_FromLong(r);
}

/* The chunks argument of _write_or_cork, _cork and _write_chunks: a list. */
static int
check_chunks(PyObject *chunks)
{
    if (!PyList_CheckExact(chunks)) {
        PyErr_SetString(PyExc_TypeError, "chunks must be a list");
        return -1;
    }
    return 0;
}

static PyObject *
core_write_or_cork(Core *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *chunks;
    int r;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_write_or_cork() takes exactly 2 arguments");
        return NULL;
    }
    chunks = args[1];
    if (check_chunks(chunks) < 0) {
        return NULL;
    }
    Py_INCREF(chunks);
    r = write_or_cork(self, args[0], ((PyListObject *)chunks)->ob_item,
                      PyList_GET_SIZE(chunks), chunks);
    Py_DECREF(chunks);
    return r < 0 ? NULL : Py_NewRef(Py_None);
}

static PyObject *
core_cork(Core *self, PyObject *chunks)
{
    int r;
    if (check_chunks(chunks) < 0) {
        return NULL;
    }
    Py_INCREF(chunks);
    r = cork(self, ((PyListObject *)chunks)->ob_item, PyList_GET_SIZE(chunks));
    Py_DECREF(chunks);
    return r < 0 ? NULL : Py_NewRef(Py_None);
}

static PyObject *
core_write_out(Core *self, PyObject *Py_UNUSED(ignored))
{
    self->cork_scheduled = 0;
    self->cork_for_input = 0;
    self->wrote = 0;
    return write_corked(self) < 0 ? NULL : Py_NewRef(Py_None);
}

static PyObject *
core_write_corked(Core *self, PyObject *Py_UNUSED(ignored))
{
    return write_corked(self) < 0 ? NULL : Py_NewRef(Py_None);
}

static PyObject *
core_write_chunks(Core *self, PyObject *const *args, Py_ssize_t nargs)
{
    int r;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_write_chunks() takes exactly 2 arguments");
        return NULL;
    }
    if (check_chunks(args[1]) < 0) {
        return NULL;
    }
    Py_INCREF(args[1]);
    r = write_chunks(self, args[0], args[1]);
    Py_DECREF(args[1]);
    return r < 0 ? NULL : Py_NewRef(Py_None);
}

static PyObject *
core_end_batch(Core *self, PyObject *Py_UNUSED(ignored))
{
    return end_batch(self) < 0 ? NULL : Py_NewRef(Py_None);
}

static PyMethodDef core_methods[] = {
    {"get_buffer", (PyCFunction)core_get_buffer, METH_O,
     "get_buffer(sizehint) -> memoryview\n\nWhere the transport reads to."},
    {"buffer_updated", (PyCFunction)core_buffer_updated, METH_O,
     "buffer_updated(nbytes)\n\nParse and deliver what arrived."},
    {"send_nowait", (PyCFunction)(void (*)(void))core_send_nowait,
     METH_FASTCALL | METH_KEYWORDS,
     "send_nowait(message, *, compress=None)\n\nSend a message without waiting: how "
     "on_message callbacks answer.\n\nTakes str (text) or bytes-like (binary) messages and "
     "writes them at once, or buffers them if the socket can't take more now, like the "
     "browser's send(): buffered_amount tells how much waits. Files and iterables need "
     "send().\n\nRaises:\n    ConnectionClosed: the connection is closed or closing.\n"
     "    UsageError: a streamed message is being sent (its frames must come first).\n"
     "    TypeError: the message is neither str nor bytes-like."},
    {"_send_fast", (PyCFunction)(void (*)(void))core_send_fast, METH_FASTCALL, NULL},
    {"_pop_ready", (PyCFunction)core_pop_ready, METH_NOARGS, NULL},
    {"_ready_fragment", (PyCFunction)core_ready_fragment, METH_NOARGS, NULL},
    {"_write_or_cork", (PyCFunction)(void (*)(void))core_write_or_cork, METH_FASTCALL, NULL},
    {"_cork", (PyCFunction)core_cork, METH_O, NULL},
    {"_write_out", (PyCFunction)core_write_out, METH_NOARGS, NULL},
    {"_write_corked", (PyCFunction)core_write_corked, METH_NOARGS, NULL},
    {"_write_chunks", (PyCFunction)(void (*)(void))core_write_chunks, METH_FASTCALL, NULL},
    {"_end_batch", (PyCFunction)core_end_batch, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

#define OBJ(name, field) {name, T_OBJECT_EX, offsetof(Core, field), 0, NULL}
#define FLAG(name, field) {name, T_BOOL, offsetof(Core, field), 0, NULL}

static PyMemberDef core_members[] = {
    OBJ("proto", proto),
    OBJ("transport", transport),
    OBJ("_on_message", on_message),
    OBJ("_waiter", waiter),
    OBJ("_queue", queue),
    OBJ("_corked", corked),
    {"_corked_size", T_PYSSIZET, offsetof(Core, corked_size), 0, NULL},
    {"_high_water", T_PYSSIZET, offsetof(Core, high_water), 0, NULL},
    FLAG("_batching", batching),
    FLAG("_connection_lost", connection_lost),
    FLAG("_cork_for_input", cork_for_input),
    FLAG("_cork_scheduled", cork_scheduled),
    FLAG("_paused_reading", paused_reading),
    FLAG("_paused_writing", paused_writing),
    FLAG("_reading", reading),
    FLAG("_reading_into", reading_into),
    FLAG("_send_held", send_held),
    FLAG("_vectored", vectored),
    FLAG("_wrote", wrote),
    {NULL, 0, 0, 0, NULL},
};

static int
core_traverse(Core *self, visitproc visit, void *arg)
{
    Py_VISIT(self->proto);
    Py_VISIT(self->transport);
    Py_VISIT(self->on_message);
    Py_VISIT(self->waiter);
    Py_VISIT(self->queue);
    Py_VISIT(self->corked);
    return 0;
}

static int
core_clear(Core *self)
{
    Py_CLEAR(self->proto);
    Py_CLEAR(self->transport);
    Py_CLEAR(self->on_message);
    Py_CLEAR(self->waiter);
    Py_CLEAR(self->queue);
    Py_CLEAR(self->corked);
    return 0;
}

static void
core_dealloc(Core *self)
{
    PyObject_GC_UnTrack(self);
    core_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyAsyncMethods core_as_async = {
    .am_anext = (unaryfunc)core_anext,
};

static PyTypeObject Core_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "wsend.asyncio._fastpath.ConnectionCore",
    .tp_basicsize = sizeof(Core),
    .tp_dealloc = (destructor)core_dealloc,
    .tp_as_async = &core_as_async,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The hot state and methods of a connection (see fastpath.ConnectionCorePy).",
    .tp_traverse = (traverseproc)core_traverse,
    .tp_clear = (inquiry)core_clear,
    .tp_methods = core_methods,
    .tp_members = core_members,
    .tp_new = PyType_GenericNew,
};

/* -- Ready ------------------------------------------------------------------------------- */

/* Twin of fastpath.ReadyPy: an awaitable whose result is there already. */
typedef struct {
    PyObject_HEAD
    PyObject *value;
} Ready;

static PyTypeObject Ready_Type;

static PyObject *
ready_create(PyObject *value)
{
    Ready *self = PyObject_GC_New(Ready, &Ready_Type);
    if (self == NULL) {
        return NULL;
    }
    self->value = Py_NewRef(value);
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

static PyObject *
ready_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"value", NULL};
    PyObject *value;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:Ready", kwlist, &value)) {
        return NULL;
    }
    return ready_create(value);
}

static int
ready_traverse(Ready *self, visitproc visit, void *arg)
{
    Py_VISIT(self->value);
    return 0;
}

static int
ready_clear(Ready *self)
{
    Py_CLEAR(self->value);
    return 0;
}

static void
ready_dealloc(Ready *self)
{
    PyObject_GC_UnTrack(self);
    ready_clear(self);
    PyObject_GC_Del(self);
}

static PySendResult
ready_send(Ready *self, PyObject *arg, PyObject **result)
{
    if (self->value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "value");
        *result = NULL;
        return PYGEN_ERROR;
    }
    *result = Py_NewRef(self->value);
    return PYGEN_RETURN;
}

static PyObject *
ready_iternext(Ready *self)
{
    PyObject *stop;
    if (self->value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "value");
        return NULL;
    }
    stop = PyObject_CallOneArg(PyExc_StopIteration, self->value);
    if (stop != NULL) {
        PyErr_SetObject(PyExc_StopIteration, stop);
        Py_DECREF(stop);
    }
    return NULL;
}

static PyObject *
ready_await(Ready *self)
{
    return Py_NewRef((PyObject *)self);
}

static PyMemberDef ready_members[] = {
    {"value", T_OBJECT_EX, offsetof(Ready, value), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyAsyncMethods ready_as_async = {
    .am_await = (unaryfunc)ready_await,
    .am_send = (sendfunc)ready_send,
};

static PyTypeObject Ready_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "wsend.asyncio._fastpath.Ready",
    .tp_basicsize = sizeof(Ready),
    .tp_dealloc = (destructor)ready_dealloc,
    .tp_as_async = &ready_as_async,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Ready(value)\n\nAn awaitable whose result is there already (see fastpath.ReadyPy).",
    .tp_traverse = (traverseproc)ready_traverse,
    .tp_clear = (inquiry)ready_clear,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)ready_iternext,
    .tp_members = ready_members,
    .tp_new = ready_new,
};

/* -- Waiter ------------------------------------------------------------------------------ */

/* Twin of fastpath.WaiterPy (see its docstring): what recv() waits on, resumed at once when
 * a read callback delivers the message. */
enum { W_PENDING, W_FINISHED, W_CANCELLED };

typedef struct {
    PyObject_HEAD
    PyObject *loop;
    PyObject *result;
    PyObject *cancel_msg;
    PyObject *callbacks; /* list of (fn, context) tuples */
    char state;
    char blocking; /* _asyncio_future_blocking */
    char yielded;  /* awaited once already */
} Waiter;

static PyTypeObject Waiter_Type;
static PyObject *cancelled_error, *invalid_state_error, *current_task, *current_tasks,
    *s_call_exception_handler,
    *s_context;

static PyObject *
waiter_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"loop", NULL};
    PyObject *loop;
    Waiter *self;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:Waiter", kwlist, &loop)) {
        return NULL;
    }
    self = (Waiter *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->callbacks = PyList_New(0);
    if (self->callbacks == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->loop = Py_NewRef(loop);
    self->state = W_PENDING;
    return (PyObject *)self;
}

static int
waiter_traverse(Waiter *self, visitproc visit, void *arg)
{
    Py_VISIT(self->loop);
    Py_VISIT(self->result);
    Py_VISIT(self->cancel_msg);
    Py_VISIT(self->callbacks);
    return 0;
}

static int
waiter_clear(Waiter *self)
{
    Py_CLEAR(self->loop);
    Py_CLEAR(self->result);
    Py_CLEAR(self->cancel_msg);
    Py_CLEAR(self->callbacks);
    return 0;
}

static void
waiter_dealloc(Waiter *self)
{
    PyObject_GC_UnTrack(self);
    waiter_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* loop.call_soon(fn, self, context=context) */
static int
schedule_one(Waiter *self, PyObject *fn, PyObject *context)
{
    PyObject *args[3] = {fn, (PyObject *)self, context}, *call_soon, *handle;
    call_soon = PyObject_GetAttr(self->loop, s_call_soon);
    if (call_soon == NULL) {
        return -1;
    }
    handle = PyObject_Vectorcall(call_soon, args, 2, kw_context);
    Py_DECREF(call_soon);
    if (handle == NULL) {
        return -1;
    }
    Py_DECREF(handle);
    return 0;
}

/* Take the callbacks (a new reference to the list; the waiter gets an empty one). */
static PyObject *
take_callbacks(Waiter *self)
{
    PyObject *callbacks = self->callbacks, *fresh = PyList_New(0);
    if (fresh == NULL) {
        return NULL;
    }
    self->callbacks = fresh;
    return callbacks;
}

static int
schedule_all(Waiter *self)
{
    PyObject *callbacks = take_callbacks(self);
    int r = 0;
    if (callbacks == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(callbacks) && r == 0; i++) {
        PyObject *item = PyList_GET_ITEM(callbacks, i);
        r = schedule_one(self, PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1));
    }
    Py_DECREF(callbacks);
    return r;
}

static int
finish(Waiter *self, PyObject *result)
{
    if (self->state != W_PENDING) {
        PyErr_SetString(invalid_state_error, "invalid state");
        return -1;
    }
    self->state = W_FINISHED;
    Py_XSETREF(self->result, Py_NewRef(result));
    return 0;
}

static PyObject *
waiter_set_result(Waiter *self, PyObject *result)
{
    if (finish(self, result) < 0 || schedule_all(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Run fn(self) in context; report what it raises as the loop reports a callback's error. */
static int
run_callback(Waiter *self, PyObject *fn, PyObject *context)
{
    PyObject *result;
    if (PyContext_Enter(context) < 0) {
        return -1;
    }
    result = PyObject_CallOneArg(fn, (PyObject *)self);
    if (PyContext_Exit(context) < 0) {
        Py_XDECREF(result);
        return -1;
    }
    if (result != NULL) {
        Py_DECREF(result);
        return 0;
    }
    if (PyErr_ExceptionMatches(PyExc_SystemExit) ||
        PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        return -1;
    }
    {
        PyObject *type, *value, *tb, *text, *report, *r = NULL;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (tb != NULL) {
            PyException_SetTraceback(value, tb);
        }
        text = PyUnicode_FromFormat("Exception in callback %R", fn);
        report = text == NULL ? NULL
                              : Py_BuildValue("{sOsOsO}", "message", text, "exception", value,
                                              "future", (PyObject *)self);
        if (report != NULL) {
            r = PyObject_CallMethodOneArg(self->loop, s_call_exception_handler, report);
        }
        Py_XDECREF(text);
        Py_XDECREF(report);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
    }
    return 0;
}

static PyObject *
waiter_wake(Waiter *self, PyObject *result)
{
    PyObject *task, *callbacks;
    int r = 0;
    if (finish(self, result) < 0) {
        return NULL;
    }
    if (current_tasks != NULL) {
        task = PyDict_GetItemWithError(current_tasks, self->loop); /* borrowed */
        if (task == NULL && PyErr_Occurred()) {
            return NULL;
        }
    }
    else {
        task = PyObject_CallOneArg(current_task, self->loop);
        if (task == NULL) {
            return NULL;
        }
        Py_DECREF(task);
    }
    if (!is_none(task)) {
        return schedule_all(self) < 0 ? NULL : Py_NewRef(Py_None);
    }
    callbacks = take_callbacks(self);
    if (callbacks == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(callbacks) && r == 0; i++) {
        PyObject *item = PyList_GET_ITEM(callbacks, i);
        r = run_callback(self, PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1));
    }
    Py_DECREF(callbacks);
    return r < 0 ? NULL : Py_NewRef(Py_None);
}

static PyObject *
waiter_add_done_callback(Waiter *self, PyObject *const *args, Py_ssize_t nargs,
                         PyObject *kwnames)
{
    PyObject *fn, *context = Py_None, *item;
    int r;
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "add_done_callback() takes exactly one positional argument");
        return NULL;
    }
    fn = args[0];
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames)) {
        if (PyTuple_GET_SIZE(kwnames) != 1 ||
            PyUnicode_Compare(PyTuple_GET_ITEM(kwnames, 0), s_context) != 0) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_TypeError,
                                "add_done_callback() takes only the keyword argument 'context'");
            }
            return NULL;
        }
        context = args[1];
    }
    if (context == Py_None) {
        context = PyContext_CopyCurrent();
        if (context == NULL) {
            return NULL;
        }
    }
    else {
        Py_INCREF(context);
    }
    if (self->state != W_PENDING) {
        r = schedule_one(self, fn, context);
        Py_DECREF(context);
        return r < 0 ? NULL : Py_NewRef(Py_None);
    }
    item = PyTuple_Pack(2, fn, context);
    Py_DECREF(context);
    if (item == NULL) {
        return NULL;
    }
    r = PyList_Append(self->callbacks, item);
    Py_DECREF(item);
    return r < 0 ? NULL : Py_NewRef(Py_None);
}

static PyObject *
waiter_remove_done_callback(Waiter *self, PyObject *fn)
{
    PyObject *kept = PyList_New(0), *callbacks = self->callbacks;
    Py_ssize_t removed = 0;
    if (kept == NULL) {
        return NULL;
    }
    Py_INCREF(callbacks); /* comparing may run code that replaces the list */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(callbacks); i++) {
        PyObject *item = PyList_GET_ITEM(callbacks, i);
        int same;
        Py_INCREF(item);
        same = PyObject_RichCompareBool(PyTuple_GET_ITEM(item, 0), fn, Py_EQ);
        if (same < 0 || (!same && PyList_Append(kept, item) < 0)) {
            Py_DECREF(item);
            Py_DECREF(callbacks);
            Py_DECREF(kept);
            return NULL;
        }
        Py_DECREF(item);
        removed += same;
    }
    Py_DECREF(callbacks);
    Py_SETREF(self->callbacks, kept);
    return PyLong_FromSsize_t(removed);
}

static PyObject *
waiter_cancel(Waiter *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"msg", NULL};
    PyObject *msg = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:cancel", kwlist, &msg)) {
        return NULL;
    }
    if (self->state != W_PENDING) {
        Py_RETURN_FALSE;
    }
    self->state = W_CANCELLED;
    Py_XSETREF(self->cancel_msg, Py_NewRef(msg));
    if (schedule_all(self) < 0) {
        return NULL;
    }
    Py_RETURN_TRUE;
}

/* The result (a new reference), or NULL with CancelledError or InvalidStateError set. */
static PyObject *
waiter_get_result(Waiter *self)
{
    if (self->state == W_CANCELLED) {
        PyObject *msg = is_none(self->cancel_msg) ? PyUnicode_FromString("")
                                                  : Py_NewRef(self->cancel_msg);
        if (msg != NULL) {
            PyObject *exc = PyObject_CallOneArg(cancelled_error, msg);
            Py_DECREF(msg);
            if (exc != NULL) {
                PyErr_SetObject(cancelled_error, exc);
                Py_DECREF(exc);
            }
        }
        return NULL;
    }
    if (self->state == W_PENDING) {
        PyErr_SetString(invalid_state_error, "Result is not ready.");
        return NULL;
    }
    return Py_NewRef(self->result);
}

static PyObject *
waiter_result(Waiter *self, PyObject *Py_UNUSED(ignored))
{
    return waiter_get_result(self);
}

static PyObject *
waiter_done(Waiter *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->state != W_PENDING);
}

static PyObject *
waiter_cancelled(Waiter *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->state == W_CANCELLED);
}

static PyObject *
waiter_get_loop(Waiter *self, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(self->loop);
}

/* await waiter: yields itself while pending (as asyncio's futures do), then returns the
 * result. The waiter is its own iterator. */
static PySendResult
waiter_send(Waiter *self, PyObject *value, PyObject **result)
{
    if (self->state == W_PENDING) {
        if (self->yielded) {
            PyErr_SetString(PyExc_RuntimeError, "await wasn't used with future");
            *result = NULL;
            return PYGEN_ERROR;
        }
        self->yielded = 1;
        self->blocking = 1;
        *result = Py_NewRef((PyObject *)self);
        return PYGEN_NEXT;
    }
    *result = waiter_get_result(self);
    return *result == NULL ? PYGEN_ERROR : PYGEN_RETURN;
}

static PyObject *
waiter_iternext(Waiter *self)
{
    PyObject *result;
    PySendResult r = waiter_send(self, Py_None, &result);
    if (r == PYGEN_RETURN) {
        /* StopIteration(result), wrapped so that a tuple or exception stays one value */
        PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, result);
        Py_DECREF(result);
        if (stop != NULL) {
            PyErr_SetObject(PyExc_StopIteration, stop);
            Py_DECREF(stop);
        }
        return NULL;
    }
    return r == PYGEN_NEXT ? result : NULL;
}

static PyObject *
waiter_await(Waiter *self)
{
    return Py_NewRef((PyObject *)self);
}

static PyObject *
waiter_get_blocking(Waiter *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->blocking);
}

static int
waiter_set_blocking(Waiter *self, PyObject *value, void *Py_UNUSED(closure))
{
    int truth;
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete _asyncio_future_blocking");
        return -1;
    }
    truth = PyObject_IsTrue(value);
    if (truth < 0) {
        return -1;
    }
    self->blocking = (char)truth;
    return 0;
}

static PyGetSetDef waiter_getset[] = {
    {"_asyncio_future_blocking", (getter)waiter_get_blocking, (setter)waiter_set_blocking, NULL,
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef waiter_methods[] = {
    {"get_loop", (PyCFunction)waiter_get_loop, METH_NOARGS, NULL},
    {"done", (PyCFunction)waiter_done, METH_NOARGS, NULL},
    {"cancelled", (PyCFunction)waiter_cancelled, METH_NOARGS, NULL},
    {"result", (PyCFunction)waiter_result, METH_NOARGS, NULL},
    {"add_done_callback", (PyCFunction)(void (*)(void))waiter_add_done_callback,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"remove_done_callback", (PyCFunction)waiter_remove_done_callback, METH_O, NULL},
    {"cancel", (PyCFunction)(void (*)(void))waiter_cancel, METH_VARARGS | METH_KEYWORDS, NULL},
    {"set_result", (PyCFunction)waiter_set_result, METH_O, NULL},
    {"wake", (PyCFunction)waiter_wake, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyAsyncMethods waiter_as_async = {
    .am_await = (unaryfunc)waiter_await,
    .am_send = (sendfunc)waiter_send,
};

static PyTypeObject Waiter_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "wsend.asyncio._fastpath.Waiter",
    .tp_basicsize = sizeof(Waiter),
    .tp_dealloc = (destructor)waiter_dealloc,
    .tp_as_async = &waiter_as_async,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Waiter(loop)\n\nWhat recv() waits on (see fastpath.WaiterPy).",
    .tp_traverse = (traverseproc)waiter_traverse,
    .tp_clear = (inquiry)waiter_clear,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)waiter_iternext,
    .tp_methods = waiter_methods,
    .tp_getset = waiter_getset,
    .tp_new = waiter_new,
};

/* -- module ------------------------------------------------------------------------------- */

static int
intern_all(void)
{
    struct {
        PyObject **slot;
        const char *text;
    } names[] = {
        {&s_big, "_big"},
        {&s_buf, "_buf"},
        {&s_capped, "_capped"},
        {&s_discard, "_discard"},
        {&s_expect_mask, "_expect_mask"},
        {&s_fast_limit, "_fast_limit"},
        {&s_in_opcode, "_in_opcode"},
        {&s_max_events, "max_events"},
        {&s_state, "state"},
        {&s_plain_sender, "_plain_sender"},
        {&s_out_opcode, "_out_opcode"},
        {&s_out, "_out"},
        {&s_is_client, "is_client"},
        {&s_masks, "_masks"},
        {&s_mask_pos, "_mask_pos"},
        {&s_receive_buffer, "receive_buffer"},
        {&s_receive_into, "receive_into"},
        {&s_receive_data, "receive_data"},
        {&s_defer_data, "defer_data"},
        {&s_send_text, "send_text"},
        {&s_send_binary, "send_binary"},
        {&s_data_to_send, "data_to_send"},
        {&s_handshake_data, "handshake_data"},
        {&s_after_receive, "_after_receive"},
        {&s_callback_failed, "_callback_failed"},
        {&s_check_queue, "_check_queue"},
        {&s_closed_exception, "_closed_exception"},
        {&s_send_whole, "_send_whole"},
        {&s_write_out, "_write_out"},
        {&s_loop, "loop"},
        {&s_call_soon, "call_soon"},
        {&s_write, "write"},
        {&s_writelines, "writelines"},
        {&s_is_closing, "is_closing"},
        {&s_done, "done"},
        {&s_wake, "wake"},
        {&s_append, "append"},
        {&s_popleft, "popleft"},
        {&s_resume, "_resume"},
        {&s_fail_soon, "_fail_soon"},
        {&s_raise_closed, "_raise_closed"},
        {&s_options, "options"},
        {&s_max_queue, "max_queue"},
        {&s_close_rcvd, "close_rcvd"},
        {&s_anext_wait, "_anext_wait"},
        {&s_pending_failure, "pending_failure"},
        {&s_join, "join"},
        {&s_compress, "compress"},
        {&s_recv_buffer_key, "wsend.asyncio._fastpath.recv_buffer"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        *names[i].slot = PyUnicode_InternFromString(names[i].text);
        if (*names[i].slot == NULL) {
            return -1;
        }
    }
    s_call_exception_handler = PyUnicode_InternFromString("call_exception_handler");
    s_context = PyUnicode_InternFromString("context");
    if (s_call_exception_handler == NULL || s_context == NULL) {
        return -1;
    }
    kw_compress = PyTuple_Pack(1, s_compress);
    kw_context = PyTuple_Pack(1, s_context);
    return kw_compress == NULL || kw_context == NULL ? -1 : 0;
}

/* module.attr (a new reference). */
static PyObject *
import_attr(const char *module, const char *attr)
{
    PyObject *mod = PyImport_ImportModule(module), *value;
    if (mod == NULL) {
        return NULL;
    }
    value = PyObject_GetAttrString(mod, attr);
    Py_DECREF(mod);
    return value;
}

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT, "wsend.asyncio._fastpath",
    "Compiled hot paths of asyncio connections (twin: wsend.asyncio.fastpath).", -1, NULL,
};

PyMODINIT_FUNC
PyInit__fastpath(void)
{
    PyObject *module, *state;
    if (intern_all() < 0) {
        return NULL;
    }
    state = import_attr("wsend.protocol.connection", "State");
    if (state == NULL) {
        return NULL;
    }
    state_open = PyObject_GetAttrString(state, "OPEN");
    Py_DECREF(state);
    data_type = import_attr("wsend.protocol.connection", "Data");
    if (data_type == NULL) {
        return NULL;
    }
    deque_type = import_attr("collections", "deque");
    usage_error = import_attr("wsend.exceptions", "UsageError");
    urandom = import_attr("os", "urandom");
    empty_bytes = PyBytes_FromStringAndSize(NULL, 0);
    cancelled_error = import_attr("asyncio", "CancelledError");
    invalid_state_error = import_attr("asyncio", "InvalidStateError");
    /* The running task: asyncio.current_task, in C from Python 3.12; before, it is a Python
     * function reading _asyncio's dict of current tasks, read here directly. */
    current_task = import_attr("_asyncio", "current_task");
    if (current_task == NULL) {
        PyErr_Clear();
        current_tasks = import_attr("_asyncio", "_current_tasks");
        if (current_tasks == NULL || !PyDict_CheckExact(current_tasks)) {
            PyErr_Clear();
            Py_CLEAR(current_tasks);
            current_task = import_attr("asyncio", "current_task");
        }
    }
    if (state_open == NULL || deque_type == NULL || usage_error == NULL || urandom == NULL ||
        empty_bytes == NULL || cancelled_error == NULL || invalid_state_error == NULL ||
        (current_task == NULL && current_tasks == NULL)) {
        return NULL;
    }
    if (PyType_Ready(&Core_Type) < 0 || PyType_Ready(&Waiter_Type) < 0 ||
        PyType_Ready(&Ready_Type) < 0) {
        return NULL;
    }
    module = PyModule_Create(&fastpath_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&Core_Type);
    Py_INCREF(&Waiter_Type);
    Py_INCREF(&Ready_Type);
    if (PyModule_AddObject(module, "ConnectionCore", (PyObject *)&Core_Type) < 0 ||
        PyModule_AddObject(module, "Waiter", (PyObject *)&Waiter_Type) < 0 ||
        PyModule_AddObject(module, "Ready", (PyObject *)&Ready_Type) < 0 ||
        PyModule_AddIntConstant(module, "RECV_BUFFER_SIZE", RECV_BUFFER_SIZE) < 0 ||
        PyModule_AddIntConstant(module, "JOIN_LIMIT", JOIN_LIMIT) < 0) {
        Py_DECREF(&Core_Type);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
