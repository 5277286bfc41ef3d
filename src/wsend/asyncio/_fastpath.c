/* wsend.asyncio._fastpath: compiled twins of wsend.asyncio.fastpath's ConnectionCorePy (the
 * connection's hot state and paths: receiving whole messages, sending them, corked writes),
 * WaiterPy and ReadyPy.
 *
 * ConnectionCore is the base class of wsend.asyncio.connection.Connection. Its state lives in
 * the Core struct, exposed under the same attribute names as the twin's slots; everything else
 * is the subclass's, reached by attribute. Each method behaves exactly like the twin's (same
 * results, same errors, same calls into the Python code around it); the test suite runs
 * against both. The contracts are in the twins' docstrings.
 *
 * This file holds the module, the shared helpers and ConnectionCore's type and methods;
 * _fastpath_paths.c the paths they run, _fastpath_waiter.c Waiter and Ready.
 */
#include "_fastpath.h"

/* Interned names, and objects looked up once at import. */
PyObject *s_big, *s_big_filled, *s_big_size, *s_big_frame, *s_buf, *s_capped, *s_discard, *s_expect_mask, *s_fast_limit, *s_in_opcode,
    *s_max_events, *s_state, *s_plain_sender, *s_out_opcode, *s_out, *s_is_client, *s_masks,
    *s_mask_pos, *s_receive_buffer, *s_receive_into, *s_receive_data, *s_defer_data,
    *s_send_text, *s_send_binary, *s_data_to_send, *s_handshake_data, *s_after_receive,
    *s_callback_failed, *s_check_queue, *s_closed_exception, *s_send_whole, *s_write_out,
    *s_loop, *s_call_soon, *s_write, *s_writelines, *s_is_closing, *s_done, *s_wake, *s_append,
    *s_popleft, *s_resume, *s_fail_soon, *s_raise_closed, *s_options, *s_max_queue,
    *s_close_rcvd, *s_anext_wait, *s_join, *s_compress, *s_recv_buffer_key, *s_pending_failure,
    *s_call_exception_handler, *s_context, *kw_compress, *kw_context;
PyObject *state_open, *data_type, *deque_type, *usage_error, *urandom, *empty_bytes,
    *cancelled_error, *invalid_state_error, *current_task, *current_tasks;

/* -- the sans-I/O core's slots ----------------------------------------------------------- */

/* Reads of the sans-I/O core's attributes: each is a slot of its class, so once its offset is
 * known (looked up on the class, checked to be a plain object slot) it is read in place, for
 * as long as the class is unchanged (its version tag, as CPython's own attribute cache
 * checks). Anything else goes through getattr. */

Slot SL_BIG = {&s_big}, SL_BIG_FILLED = {&s_big_filled}, SL_BIG_SIZE = {&s_big_size},
            SL_BIG_FRAME = {&s_big_frame}, SL_BUF = {&s_buf}, SL_CAPPED = {&s_capped},
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
PyObject *
fp_slot_get(PyObject *obj, Slot *slot)
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
int
fp_slot_set(PyObject *obj, Slot *slot, PyObject *value)
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
int
fp_attr_true(PyObject *obj, Slot *name)
{
    PyObject *value = fp_slot_get(obj, name);
    int result;
    if (value == NULL) {
        return -1;
    }
    result = PyObject_IsTrue(value);
    Py_DECREF(value);
    return result;
}

/* Whether obj.<slot> is not None; -1 on error. */
int
fp_attr_set(PyObject *obj, Slot *name)
{
    PyObject *value = fp_slot_get(obj, name);
    if (value == NULL) {
        return -1;
    }
    Py_DECREF(value);
    return value != Py_None;
}

/* Call obj.<name>(arg), or obj.<name>() if arg is NULL, dropping the result; -1 on error. */
int
fp_call_method(PyObject *obj, PyObject *name, PyObject *arg)
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
int
fp_call_true(PyObject *obj, PyObject *name)
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
int
fp_attr_limit(PyObject *obj, Slot *name, int zero_is_none, long long dflt, long long *out)
{
    PyObject *value = fp_slot_get(obj, name);
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
int
fp_transport_gone(PyObject *transport)
{
    return is_none(transport) ? 1 : fp_call_true(transport, s_is_closing);
}

/* Raise self._closed_exception(). */
void
fp_raise_closed(Core *self)
{
    PyObject *exc = PyObject_CallMethodNoArgs((PyObject *)self, s_closed_exception);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
}

/* This thread's receive buffer: a memoryview of RECV_BUFFER_SIZE bytes (borrowed). */
PyObject *
fp_recv_buffer(void)
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
    r = fp_send_fast(self, message, compress);
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
        int pending = fp_attr_set(self->proto, &SL_PENDING_FAILURE);
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
        ready = fp_ready_create(message);
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
    int waiting = fp_queue_waits(self), closing;

    if (waiting < 0) {
        return NULL;
    }
    if (!waiting && self->paused_reading) {
        /* Parsing stopped with frames left buffered: parse on, rather than wait. */
        if (fp_call_method((PyObject *)self, s_resume, NULL) < 0) {
            return NULL;
        }
        waiting = fp_queue_waits(self);
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
            int pending = fp_attr_set(proto, &SL_PENDING_FAILURE);
            if (pending != 0 &&
                (pending < 0 || fp_call_method((PyObject *)self, s_fail_soon, NULL) < 0)) {
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
                 fp_call_method((PyObject *)self, s_resume, NULL) < 0)) {
                Py_DECREF(event);
                return NULL;
            }
        }
        return event;
    }
    closing = self->connection_lost;
    if (!closing && !is_none(proto)) {
        closing = fp_attr_set(proto, &SL_CLOSE_RCVD);
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
    r = fp_send_fast(self, args[0], args[1]);
    return r < 0 ? NULL : PyBool_FromLong(r);
}

/* The chunks argument of _write_or_cork: a list. */
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
    r = fp_write_or_cork(self, args[0], ((PyListObject *)chunks)->ob_item,
                      PyList_GET_SIZE(chunks), chunks);
    Py_DECREF(chunks);
    return r < 0 ? NULL : Py_NewRef(Py_None);
}

static PyObject *
core_write_out(Core *self, PyObject *Py_UNUSED(ignored))
{
    self->cork_scheduled = 0;
    self->cork_for_input = 0;
    self->wrote = 0;
    return fp_write_corked(self) < 0 ? NULL : Py_NewRef(Py_None);
}

static PyObject *
core_write_corked(Core *self, PyObject *Py_UNUSED(ignored))
{
    return fp_write_corked(self) < 0 ? NULL : Py_NewRef(Py_None);
}

static PyObject *
core_end_batch(Core *self, PyObject *Py_UNUSED(ignored))
{
    return fp_end_batch(self) < 0 ? NULL : Py_NewRef(Py_None);
}

static PyMethodDef core_methods[] = {
    {"get_buffer", (PyCFunction)fp_core_get_buffer, METH_O,
     "get_buffer(sizehint) -> memoryview\n\nWhere the transport reads to."},
    {"buffer_updated", (PyCFunction)fp_core_buffer_updated, METH_O,
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
    {"_write_out", (PyCFunction)core_write_out, METH_NOARGS, NULL},
    {"_write_corked", (PyCFunction)core_write_corked, METH_NOARGS, NULL},
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
    {"_read_header", T_PYSSIZET, offsetof(Core, read_header), 0, NULL},
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

/* -- module ------------------------------------------------------------------------------- */

static int
intern_all(void)
{
    struct {
        PyObject **slot;
        const char *text;
    } names[] = {
        {&s_big, "_big"},
        {&s_big_filled, "_big_filled"},
        {&s_big_size, "_big_size"},
        {&s_big_frame, "_big_frame"},
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
        PyModule_AddIntConstant(module, "JOIN_LIMIT", JOIN_LIMIT) < 0 ||
        PyModule_AddIntConstant(module, "LARGE_HEADER", LARGE_HEADER) < 0) {
        Py_DECREF(&Core_Type);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
