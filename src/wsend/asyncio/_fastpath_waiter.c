/* Ready and Waiter: the awaitables of the compiled coroutine paths (part of
 * wsend.asyncio._fastpath, see _fastpath.c; twins: fastpath.ReadyPy and fastpath.WaiterPy).
 */
#include "_fastpath.h"

/* -- Ready ------------------------------------------------------------------------------- */

/* Twin of fastpath.ReadyPy: an awaitable whose result is there already. */
typedef struct {
    PyObject_HEAD
    PyObject *value;
} Ready;


PyObject *
fp_ready_create(PyObject *value)
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
    return fp_ready_create(value);
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

PyTypeObject Ready_Type = {
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

PyTypeObject Waiter_Type = {
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
