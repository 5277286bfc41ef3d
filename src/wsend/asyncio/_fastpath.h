/* Declarations shared by the parts of wsend.asyncio._fastpath (see _fastpath.c):
 * _fastpath.c (the module, the connection core's type and methods, shared helpers),
 * _fastpath_paths.c (receiving, sending and corked writes) and _fastpath_waiter.c (the
 * future-like Waiter and the completed awaitable Ready). The module is built with hidden
 * symbol visibility: only its init function is exported.
 */
#ifndef WSEND_FASTPATH_H
#define WSEND_FASTPATH_H

#include "_framing.h"
#include <structmember.h>
#include <descrobject.h>

/* As fastpath.RECV_BUFFER_SIZE and fastpath.JOIN_LIMIT (a test checks that they agree), and
 * the sans-I/O core's pool of masking keys. */
#define RECV_BUFFER_SIZE (1 << 20)
#define JOIN_LIMIT 65536
#define LARGE_HEADER 10 /* Protocol.large_header_size without the mask (a test checks) */
#define MASK_POOL 1024

/* The connection's hot state: the twin's slots (fastpath.ConnectionCorePy.__slots__). */
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
    Py_ssize_t read_header; /* a large frame ended a read: read this much alone next */
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

/* A slot of the sans-I/O core's class, read in place once its offset is known (see
 * fp_slot_get in _fastpath.c). */
typedef struct {
    PyObject **name;
    PyTypeObject *type; /* borrowed, checked with its version tag */
    unsigned int tag;
    Py_ssize_t offset;
} Slot;

/* Interned names, and objects looked up once at import (_fastpath.c). */
extern PyObject *s_big, *s_big_filled, *s_big_size, *s_big_frame, *s_buf, *s_capped, *s_discard, *s_expect_mask, *s_fast_limit,
    *s_in_opcode, *s_max_events, *s_state, *s_plain_sender, *s_out_opcode, *s_out,
    *s_is_client, *s_masks, *s_mask_pos, *s_receive_buffer, *s_receive_into, *s_receive_data,
    *s_defer_data, *s_send_text, *s_send_binary, *s_data_to_send, *s_handshake_data,
    *s_after_receive, *s_callback_failed, *s_check_queue, *s_closed_exception, *s_send_whole,
    *s_write_out, *s_loop, *s_call_soon, *s_write, *s_writelines, *s_is_closing, *s_done,
    *s_wake, *s_append, *s_popleft, *s_resume, *s_fail_soon, *s_raise_closed, *s_options,
    *s_max_queue, *s_close_rcvd, *s_anext_wait, *s_join, *s_compress, *s_recv_buffer_key,
    *s_pending_failure, *s_call_exception_handler, *s_context, *kw_compress, *kw_context;
extern PyObject *state_open, *data_type, *deque_type, *usage_error, *urandom, *empty_bytes,
    *cancelled_error, *invalid_state_error, *current_task, *current_tasks;
extern Slot SL_BIG, SL_BIG_FILLED, SL_BIG_SIZE, SL_BIG_FRAME, SL_BUF, SL_CAPPED, SL_DISCARD, SL_EXPECT_MASK, SL_FAST_LIMIT, SL_IN_OPCODE,
    SL_MAX_EVENTS, SL_STATE, SL_PLAIN_SENDER, SL_OUT_OPCODE, SL_OUT, SL_IS_CLIENT, SL_MASKS,
    SL_MASK_POS, SL_PENDING_FAILURE, SL_CLOSE_RCVD;

/* The types of _fastpath_waiter.c. */
extern PyTypeObject Waiter_Type, Ready_Type;

static inline int
is_none(PyObject *obj)
{
    return obj == NULL || obj == Py_None;
}

/* _fastpath.c: shared helpers (each returns -1 or NULL with an exception set on error). */
PyObject *fp_slot_get(PyObject *obj, Slot *slot);
int fp_slot_set(PyObject *obj, Slot *slot, PyObject *value);
int fp_attr_true(PyObject *obj, Slot *name);
int fp_attr_set(PyObject *obj, Slot *name);
int fp_attr_limit(PyObject *obj, Slot *name, int zero_is_none, long long dflt, long long *out);
int fp_call_method(PyObject *obj, PyObject *name, PyObject *arg);
int fp_call_true(PyObject *obj, PyObject *name);
int fp_transport_gone(PyObject *transport);
void fp_raise_closed(Core *self);
PyObject *fp_recv_buffer(void);

/* _fastpath_paths.c: the connection core's paths. */
int fp_write_chunks(Core *self, PyObject *transport, PyObject *chunks);
int fp_write_corked(Core *self);
int fp_cork(Core *self, PyObject *const *chunks, Py_ssize_t n);
int fp_queue_waits(Core *self);
int fp_write_or_cork(Core *self, PyObject *transport, PyObject *const *chunks, Py_ssize_t n,
                     PyObject *list);
int fp_end_batch(Core *self);
int fp_send_fast(Core *self, PyObject *message, PyObject *compress);
PyObject *fp_core_get_buffer(Core *self, PyObject *sizehint);
PyObject *fp_core_buffer_updated(Core *self, PyObject *arg);

/* _fastpath_waiter.c */
PyObject *fp_ready_create(PyObject *value);

#endif /* WSEND_FASTPATH_H */
