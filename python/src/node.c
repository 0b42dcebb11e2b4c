/* craft._craft.Node: one node of the libuv runtime (craft/uv.h), its loop on a thread of its
 * own that holds the GIL only while it calls Python, its state machine on another.
 *
 * Threads:
 *   - the caller's threads: start(), close(), apply(), read(), ... They submit requests with
 *     craft_uv_submit (allowed from any thread) and wait on a condition variable with the GIL
 *     released;
 *   - the state machine's thread (the runtime's stream, craft/uv.h): apply_batch, snapshot and
 *     restore, read functions, and the answers of applied proposals. It keeps one Python thread
 *     state for its whole life (fsm_thread_start) and takes the GIL once per batch: fsm_apply
 *     takes it and fsm_step_done, after the batch's answers, releases it;
 *   - the loop thread: runs uv_run. Events, log lines and the answers of failed requests take
 *     the GIL there, once per turn of the loop for all its answers (loop_flush);
 *   - libuv's worker threads: the log store's disk work takes the GIL when it calls Python.
 * A request that carries Python work (a read function, an asyncio completion) is not finished in
 * its C callback: it is queued on the thread that answered it and finished there in one go, under
 * one GIL acquisition; asyncio completions go to their event loop with one call_soon_threadsafe
 * per loop and batch. A plain blocking apply() needs no GIL at all: its caller is signalled.
 * The loop thread holds a reference to the Node object until it has ended (close() joins it),
 * so the object cannot be freed under it. */
#include "craftpy.h"

#include <string.h>

#include "craft/uv.h"
#include "security.h"

enum { ST_NEW = 0, ST_STARTING, ST_RUNNING, ST_STOPPING, ST_STOPPED };

struct pyreq;

/* Requests answered on one thread whose Python work waits for that thread's flush. */
struct pyreq_list {
    struct pyreq *head, *tail;
};

typedef struct {
    PyObject_HEAD
    /* Written by the loop thread, read by callers under lock. */
    uv_mutex_t lock;
    uv_cond_t cond;
    int state;
    int start_rc;
    char start_err[512];
    char bound[CRAFT_ADDRESS_MAX];

    struct craft_uv_node *node; /* loop thread only (and status, which any thread may call) */
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t stop_async;
    bool stop_requested;
    /* The loop's thread and the state machine's, as threading.get_ident() and uv see them (each
     * set by its own thread, read under lock). */
    unsigned long loop_ident, fsm_ident;
    uv_thread_t loop_tid, fsm_tid;
    bool has_loop_tid, has_fsm_tid;
    /* The state machine's thread: its Python thread state, kept for its whole life; the GIL,
     * while held from apply to the end of the step (fsm_holding). */
    PyThreadState *fsm_tstate;
    PyGILState_STATE fsm_gil;
    bool fsm_holding;
    /* Answers waiting for their thread's flush: the state machine's (fsm_step_done), the
     * loop's (loop_flush, from a prepare and a check handle, once per turn). */
    struct pyreq_list fsm_pending, loop_pending;
    uv_prepare_t flush_prepare;
    uv_check_t flush_check;

    struct craft_uv_config cfg;
    char *address, *data_dir;
    char *metrics_address; /* GET /metrics (issue 15); NULL: none */
    struct craft_configuration bootstrap;
    bool has_bootstrap;
    PyObject *fsm;    /* adapter: apply_batch(list), snapshot(), restore(reader) */
    PyObject *events; /* events(kind, role, term, leader, index, installed, error, message,
                       * match) */
    PyObject *store;  /* a Python log store, or NULL */
    struct craftpy_security security; /* cfg.security points into it */
    /* This process is a fork of the one whose loop thread runs the node (set in the child by
     * craft's os.register_at_fork hook): the thread does not exist here and the locks may be
     * held by it forever, so nothing may wait for either; every call refuses at once. */
    bool forked;
    /* The exception the state machine's restore() raised while the node started (start()
     * raises it again, with its traceback), or NULL. */
    PyObject *restore_exc;
    /* The exception of the last snapshot() that raised, logged (with its traceback) on the
     * runtime's snapshot_failed line: one log record per attempt. */
    PyObject *snapshot_exc;
} NodeObject;

/* Tells the runtime why a state machine callback failed: "<Type>: <message>" of the current
 * exception (left set), for the log line, the events and the status (craft_uv_fsm_error). */
static void fsm_reason(const char *what)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *s = value != NULL ? PyObject_Str(value) : NULL;
    const char *text = s != NULL ? PyUnicode_AsUTF8(s) : NULL;
    char buf[320];
    snprintf(buf, sizeof buf, "%s raised %s: %s", what,
             type != NULL ? ((PyTypeObject *)type)->tp_name : "an exception",
             text != NULL ? text : "?");
    Py_XDECREF(s);
    PyErr_Clear();
    craft_uv_fsm_error(buf);
    PyErr_Restore(type, value, tb);
}

static const char forked_msg[] =
    "this process is a fork of the one that started the node: its loop thread does not exist "
    "here. Start nodes after forking (in the child), or use multiprocessing's \"spawn\" start "
    "method; the parent's node is not affected";

/* ---- requests -------------------------------------------------------------------------------- */

enum { WAIT_SYNC = 1, WAIT_ASYNC = 2 };

struct pyreq {
    struct craft_uv_request req;
    NodeObject *node; /* borrowed: the loop thread's reference keeps it */
    int mode;
    uv_mutex_t mu;
    uv_cond_t cv;
    int refs; /* the waiter and the callback (sync), under mu */
    bool done;
    /* The outcome, copied. */
    int status;
    craft_index index;
    char *data;
    size_t size;
    craft_id leader_id;
    char leader_address[CRAFT_ADDRESS_MAX];
    /* READ: fn(arg) is called on the state machine's thread; its result or exception is kept. */
    PyObject *read_fn, *read_arg, *read_result;
    PyObject *exc_type, *exc_value, *exc_tb;
    /* ASYNC: done(status, index, data, leader_id, leader_address), called on aio_loop's thread
     * (asyncio.AbstractEventLoop.call_soon_threadsafe, batched) or, without one, on the
     * runtime's thread that answered it. */
    PyObject *done_cb, *aio_loop;
    /* Batch of apply_many: the requests of one call share a result list. */
    struct pyreq *next; /* in a pyreq_list */
};

/* Frees r; needs the GIL when r holds Python objects. */
static void pyreq_free(struct pyreq *r)
{
    Py_XDECREF(r->read_fn);
    Py_XDECREF(r->read_arg);
    Py_XDECREF(r->read_result);
    Py_XDECREF(r->exc_type);
    Py_XDECREF(r->exc_value);
    Py_XDECREF(r->exc_tb);
    Py_XDECREF(r->done_cb);
    Py_XDECREF(r->aio_loop);
    free(r->data);
    if (r->mode == WAIT_SYNC) {
        uv_mutex_destroy(&r->mu);
        uv_cond_destroy(&r->cv);
    }
    free(r);
}

static bool pyreq_has_python(struct pyreq *r)
{
    return r->read_fn != NULL || r->done_cb != NULL;
}

/* A sync request is done: its waiter wakes (or, if it gave up, the request is freed). */
static void pyreq_signal(struct pyreq *r)
{
    uv_mutex_lock(&r->mu);
    r->done = true;
    int left = --r->refs;
    uv_cond_signal(&r->cv);
    uv_mutex_unlock(&r->mu);
    if (left == 0) {
        pyreq_free(r); /* the waiter gave up (the GIL is held if r holds Python objects) */
    }
}

static void list_append(struct pyreq_list *l, struct pyreq *r)
{
    r->next = NULL;
    if (l->tail != NULL) {
        l->tail->next = r;
    } else {
        l->head = r;
    }
    l->tail = r;
}

static bool on_thread(uv_thread_t *tid, bool has)
{
    uv_thread_t me = uv_thread_self();
    return has && uv_thread_equal(&me, tid);
}

static void on_result(struct craft_uv_request *req, const struct craft_uv_result *res)
{
    struct pyreq *r = req->data;
    r->status = res->status;
    r->index = res->index;
    r->leader_id = res->leader_id;
    snprintf(r->leader_address, sizeof r->leader_address, "%s",
             res->leader_address != NULL ? res->leader_address : "");
    if (res->size > 0 && res->data != NULL) {
        r->data = malloc(res->size);
        if (r->data != NULL) {
            memcpy(r->data, res->data, res->size);
            r->size = res->size;
        }
    }
    if (!pyreq_has_python(r)) {
        pyreq_signal(r); /* a blocking apply(): no Python, no GIL */
        return;
    }
    /* Python work waits for this thread's flush: after the state machine's step (the read
     * function then runs before anything else is applied), or at the end of the loop's turn. */
    NodeObject *self = r->node;
    uv_mutex_lock(&self->lock);
    bool loop = on_thread(&self->loop_tid, self->has_loop_tid);
    uv_mutex_unlock(&self->lock);
    list_append(loop ? &self->loop_pending : &self->fsm_pending, r);
}

/* craft._craft._run_completions(batch): on an asyncio event loop, done(*args) for each (done,
 * args) of a batch handed over with one call_soon_threadsafe. */
static PyObject *run_completions(PyObject *module, PyObject *batch)
{
    (void)module;
    if (!PyList_Check(batch)) {
        PyErr_SetString(PyExc_TypeError, "a list of (done, args) pairs");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(batch); i++) {
        PyObject *pair = PyList_GET_ITEM(batch, i);
        PyObject *x = PyObject_Call(PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1), NULL);
        if (x == NULL) {
            craftpy_log_exception("craft: an asyncio completion failed");
        }
        Py_XDECREF(x);
    }
    Py_RETURN_NONE;
}

static PyMethodDef run_completions_def = {"_run_completions", (PyCFunction)run_completions, METH_O,
                                          "runs a batch of asyncio completions"};
static PyObject *run_completions_fn; /* a function object of run_completions */

/* With the GIL: finishes the requests of l (read functions, asyncio completions, waiters). The
 * asyncio completions of the same event loop go over in one call_soon_threadsafe. */
static void flush(struct pyreq_list *l)
{
    struct pyreq *r = l->head;
    l->head = l->tail = NULL;
    PyObject *loops = NULL;   /* [loop, ...] */
    PyObject *batches = NULL; /* [[(done, args), ...], ...], one per loop */
    while (r != NULL) {
        struct pyreq *next = r->next;
        if (r->read_fn != NULL && r->status == 0) {
            /* The barrier passed: the state machine reflects every write committed before the
             * request, and nothing applies while we are here (the state machine's thread). */
            r->read_result = PyObject_CallOneArg(r->read_fn, r->read_arg);
            if (r->read_result == NULL) {
                PyErr_Fetch(&r->exc_type, &r->exc_value, &r->exc_tb);
            }
        }
        if (r->mode != WAIT_ASYNC) {
            pyreq_signal(r);
            r = next;
            continue;
        }
        PyObject *args = Py_BuildValue("(iKy#Ks)", r->status, (unsigned long long)r->index,
                                       r->data != NULL ? r->data : "", (Py_ssize_t)r->size,
                                       (unsigned long long)r->leader_id, r->leader_address);
        if (args == NULL) {
            craftpy_log_exception("craft: an asyncio completion failed");
        } else if (r->aio_loop == NULL) {
            PyObject *x = PyObject_Call(r->done_cb, args, NULL);
            if (x == NULL) {
                craftpy_log_exception("craft: a completion callback failed");
            }
            Py_XDECREF(x);
        } else {
            if (loops == NULL) {
                loops = PyList_New(0);
                batches = PyList_New(0);
            }
            Py_ssize_t k = 0;
            Py_ssize_t n = loops != NULL ? PyList_GET_SIZE(loops) : 0;
            while (k < n && PyList_GET_ITEM(loops, k) != r->aio_loop) {
                k++;
            }
            PyObject *pair = PyTuple_Pack(2, r->done_cb, args);
            if (loops != NULL && batches != NULL && pair != NULL && k == n) {
                PyObject *b = PyList_New(0);
                if (b == NULL || PyList_Append(loops, r->aio_loop) != 0 ||
                    PyList_Append(batches, b) != 0) {
                    PyErr_Clear();
                }
                Py_XDECREF(b);
            }
            if (pair == NULL || batches == NULL || k >= PyList_GET_SIZE(batches) ||
                PyList_Append(PyList_GET_ITEM(batches, k), pair) != 0) {
                craftpy_log_exception("craft: an asyncio completion was lost");
            }
            Py_XDECREF(pair);
        }
        Py_XDECREF(args);
        pyreq_free(r);
        r = next;
    }
    for (Py_ssize_t k = 0; loops != NULL && batches != NULL && k < PyList_GET_SIZE(batches); k++) {
        PyObject *x = PyObject_CallMethod(PyList_GET_ITEM(loops, k), "call_soon_threadsafe",
                                          "OO", run_completions_fn, PyList_GET_ITEM(batches, k));
        if (x == NULL) {
            if (PyErr_ExceptionMatches(PyExc_RuntimeError)) {
                PyErr_Clear(); /* the event loop is closed: nobody is waiting any more */
            } else {
                craftpy_log_exception("craft: handing completions to an event loop failed");
            }
        }
        Py_XDECREF(x);
    }
    Py_XDECREF(loops);
    Py_XDECREF(batches);
}

/* The loop thread's flush, once per turn: before it waits for I/O (prepare) and after the I/O
 * callbacks (check). */
static void loop_flush(NodeObject *self)
{
    if (self->loop_pending.head == NULL) {
        return;
    }
    PyGILState_STATE g = PyGILState_Ensure();
    flush(&self->loop_pending);
    PyGILState_Release(g);
}

static void on_flush_prepare(uv_prepare_t *h)
{
    loop_flush(h->data);
}

static void on_flush_check(uv_check_t *h)
{
    loop_flush(h->data);
}

static struct pyreq *pyreq_new(NodeObject *self, int mode, int op)
{
    struct pyreq *r = calloc(1, sizeof *r);
    if (r == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    r->node = self;
    r->mode = mode;
    r->req.op = op;
    r->req.cb = on_result;
    r->req.data = r;
    if (mode == WAIT_SYNC) {
        if (uv_mutex_init(&r->mu) != 0 || uv_cond_init(&r->cv) != 0) {
            free(r);
            PyErr_NoMemory();
            return NULL;
        }
        r->refs = 2;
    }
    return r;
}

static int check_running(NodeObject *self)
{
    if (self->forked) {
        craftpy_raise(CRAFT_ESHUTDOWN, forked_msg, 0, NULL);
        return -1;
    }
    uv_mutex_lock(&self->lock);
    int st = self->state;
    uv_mutex_unlock(&self->lock);
    if (st != ST_RUNNING) {
        craftpy_raise(CRAFT_ESHUTDOWN,
                      st == ST_NEW ? "the node is not started: call start() first (or use it "
                                     "in a with block)"
                      : st == ST_STARTING ? "the node is still starting: wait for start() to "
                                            "return"
                                          : "the node is closed: create a new Node to go on",
                      0, NULL);
        return -1;
    }
    return 0;
}

/* Submits r; on failure frees it and raises. */
static int submit(NodeObject *self, struct pyreq *r)
{
    if (check_running(self) != 0) {
        pyreq_free(r);
        return -1;
    }
    int rc = craft_uv_submit(self->node, &r->req);
    if (rc == CRAFT_ETOOBIG) {
        char msg[320];
        snprintf(msg, sizeof msg,
                 "the command is %zu bytes, more than the %zu bytes a command may have with "
                 "max_frame = %u (one entry must fit in one frame): split it, or raise "
                 "max_frame on every node",
                 r->req.size, craft_uv_max_command(self->cfg.max_frame),
                 (unsigned)self->cfg.max_frame);
        pyreq_free(r);
        craftpy_raise(rc, msg, 0, NULL);
        return -1;
    }
    if (rc != 0) {
        pyreq_free(r);
        craftpy_raise(rc, "submitting the request", 0, NULL);
        return -1;
    }
    return 0;
}

/* Waits for a submitted sync request with the GIL released, in slices so that Ctrl-C works.
 * Gives up after timeout_ms plus a grace period (the runtime times requests out itself; this
 * is the backstop if the loop is gone). Returns 0 when done; -1 with an exception set. The
 * request then belongs to the callback. */
static int wait_req(struct pyreq *r, unsigned timeout_ms)
{
    uint64_t waited = 0, limit = (uint64_t)timeout_ms + 5000;
    for (;;) {
        bool done;
        Py_BEGIN_ALLOW_THREADS;
        uv_mutex_lock(&r->mu);
        if (!r->done) {
            (void)uv_cond_timedwait(&r->cv, &r->mu, 100 * 1000000ULL);
        }
        done = r->done;
        uv_mutex_unlock(&r->mu);
        Py_END_ALLOW_THREADS;
        if (done) {
            return 0;
        }
        waited += 100;
        int sig = PyErr_CheckSignals();
        if (sig != 0 || waited >= limit) {
            if (sig == 0) {
                craftpy_raise(CRAFT_ETIMEDOUT, "no answer from the node's loop", 0, NULL);
            }
            uv_mutex_lock(&r->mu);
            int left = --r->refs;
            uv_mutex_unlock(&r->mu);
            if (left == 0) {
                pyreq_free(r);
            }
            return -1;
        }
    }
}

/* After a sync wait: releases the waiter's reference. */
static void pyreq_release(struct pyreq *r)
{
    uv_mutex_lock(&r->mu);
    int left = --r->refs;
    uv_mutex_unlock(&r->mu);
    if (left == 0) {
        pyreq_free(r);
    }
}

static PyObject *raise_status(struct pyreq *r)
{
    if (r->status == CRAFT_EAPPLY) {
        /* The Python layer turns this into craft.ApplyError with the original exception. */
        PyObject *exc = craftpy_error_object(r->status, "", 0, NULL);
        if (exc == NULL) {
            return NULL;
        }
        PyObject *payload = Py_BuildValue("(Ky#)", (unsigned long long)r->index,
                                          r->data != NULL ? r->data : "", (Py_ssize_t)r->size);
        if (payload != NULL) {
            PyObject_SetAttrString(exc, "apply_payload", payload);
            Py_DECREF(payload);
        }
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
        return NULL;
    }
    char detail[600] = "";
    if (r->data != NULL && r->size > 0) {
        snprintf(detail, sizeof detail, "%.*s", (int)(r->size < 560 ? r->size : 560), r->data);
    }
    return craftpy_raise(r->status, detail, r->leader_id, r->leader_address);
}

/* ---- the state machine, called by the runtime ------------------------------------------------ */

/* The adapter stops the node on purpose (python/craft/__init__.py, _Stop: an entry it cannot
 * interpret, a state known to be wrong): the exception carries the CRAFT_E* code, the index and
 * the reason. The reason goes to the command at that index as its result, which the runtime
 * reports as why the node stopped (craft/uv.h); the adapter has logged it already, so no
 * traceback. Returns false (exception left set) for any other exception. */
static bool stop_requested(struct craft_uv_apply *cmds, size_t n, int *rc)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *index = value != NULL ? PyObject_GetAttrString(value, "stop_index") : NULL;
    if (index == NULL) {
        PyErr_Clear();
        PyErr_Restore(type, value, tb);
        return false;
    }
    unsigned long long at = PyLong_AsUnsignedLongLong(index);
    Py_DECREF(index);
    PyObject *code = PyObject_GetAttrString(value, "code");
    long c = code != NULL ? PyLong_AsLong(code) : CRAFT_EAPPLY;
    Py_XDECREF(code);
    *rc = c < 0 && c >= -100 ? (int)c : CRAFT_EAPPLY;
    PyObject *text = PyObject_Str(value);
    Py_ssize_t len = 0;
    const char *s = text != NULL ? PyUnicode_AsUTF8AndSize(text, &len) : NULL;
    PyErr_Clear();
    for (size_t i = 0; s != NULL && i < n; i++) {
        if (cmds[i].index == at || i == n - 1) {
            craft_free(NULL, cmds[i].result);
            cmds[i].result = craft_malloc(NULL, len > 0 ? (size_t)len : 1);
            if (cmds[i].result != NULL) {
                memcpy(cmds[i].result, s, (size_t)len);
                cmds[i].result_size = (size_t)len;
                cmds[i].error = 1;
            }
            break;
        }
    }
    Py_XDECREF(text);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return true;
}

/* The state machine's thread takes the GIL for a batch and keeps it until the end of the step
 * (fsm_step_done), so the batch's answers are finished under the same acquisition. */
static void fsm_hold_gil(NodeObject *self)
{
    if (!self->fsm_holding) {
        self->fsm_gil = PyGILState_Ensure();
        self->fsm_holding = true;
    }
}

static void fsm_step_done(void *data)
{
    NodeObject *self = data;
    if (self->fsm_pending.head != NULL) {
        fsm_hold_gil(self);
        flush(&self->fsm_pending);
    }
    if (self->fsm_holding) {
        self->fsm_holding = false;
        PyGILState_Release(self->fsm_gil);
    }
}

/* The state machine's thread keeps one Python thread state for its whole life (as the loop
 * thread does, loop_main): PyGILState_Ensure then finds it instead of making one per batch. */
static void fsm_thread_start(void *data)
{
    NodeObject *self = data;
    PyGILState_STATE g = PyGILState_Ensure();
    self->fsm_gil = g;
    uv_mutex_lock(&self->lock);
    self->fsm_ident = PyThread_get_thread_ident();
    self->fsm_tid = uv_thread_self();
    self->has_fsm_tid = true;
    uv_mutex_unlock(&self->lock);
    self->fsm_tstate = PyEval_SaveThread();
}

static void fsm_thread_stop(void *data)
{
    NodeObject *self = data;
    uv_mutex_lock(&self->lock);
    self->has_fsm_tid = false;
    uv_mutex_unlock(&self->lock);
    PyEval_RestoreThread(self->fsm_tstate);
    PyGILState_Release(self->fsm_gil);
}

static int fsm_apply(void *data, struct craft_uv_apply *cmds, size_t n)
{
    NodeObject *self = data;
    fsm_hold_gil(self); /* released by fsm_step_done, after the batch's answers */
    int rc = 0;
    PyObject *list = PyList_New((Py_ssize_t)n);
    PyObject *res = NULL;
    if (list == NULL) {
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        PyObject *t = Py_BuildValue("(KKy#)", (unsigned long long)cmds[i].index,
                                    (unsigned long long)cmds[i].term,
                                    cmds[i].data != NULL ? (const char *)cmds[i].data : "",
                                    (Py_ssize_t)cmds[i].size);
        if (t == NULL) {
            goto fail;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, t);
    }
    res = PyObject_CallMethod(self->fsm, "apply_batch", "(O)", list);
    if (res == NULL) {
        goto fail;
    }
    if (!PyList_Check(res) || (size_t)PyList_GET_SIZE(res) != n) {
        PyErr_SetString(PyExc_TypeError, "apply_batch must return one result per command");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(res, (Py_ssize_t)i);
        int error = 0;
        if (PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 1) {
            error = 1;
            item = PyTuple_GET_ITEM(item, 0);
        }
        char *buf;
        Py_ssize_t len;
        if (item == Py_None) {
            buf = NULL;
            len = 0;
        } else if (PyBytes_AsStringAndSize(item, &buf, &len) != 0) {
            goto fail;
        }
        cmds[i].error = error;
        if (len > 0) {
            cmds[i].result = craft_malloc(NULL, (size_t)len);
            if (cmds[i].result == NULL) {
                PyErr_NoMemory();
                goto fail;
            }
            memcpy(cmds[i].result, buf, (size_t)len);
            cmds[i].result_size = (size_t)len;
        }
    }
    goto out;
fail:
    rc = CRAFT_EAPPLY;
    if (stop_requested(cmds, n, &rc)) {
        goto out;
    }
    craftpy_log_exception("craft: the state machine adapter failed; the node stops");
out:
    Py_XDECREF(list);
    Py_XDECREF(res);
    return rc;
}

static int fsm_snapshot(void *data, craft_uv_write_fn write, void *ctx)
{
    NodeObject *self = data;
    PyGILState_STATE g = PyGILState_Ensure();
    int rc = 0;
    PyObject *it = NULL, *chunk = NULL;
    PyObject *r = PyObject_CallMethod(self->fsm, "snapshot", NULL);
    if (r == NULL) {
        goto fail;
    }
    if (PyBytes_Check(r) || PyByteArray_Check(r) || PyMemoryView_Check(r)) {
        it = PyTuple_Pack(1, r);
        Py_SETREF(it, it != NULL ? PyObject_GetIter(it) : NULL);
    } else {
        it = PyObject_GetIter(r);
    }
    if (it == NULL) {
        goto fail;
    }
    while ((chunk = PyIter_Next(it)) != NULL) {
        Py_buffer view;
        if (PyObject_GetBuffer(chunk, &view, PyBUF_SIMPLE) != 0) {
            goto fail;
        }
        Py_BEGIN_ALLOW_THREADS;
        rc = view.len > 0 ? write(ctx, view.buf, (size_t)view.len) : 0;
        Py_END_ALLOW_THREADS;
        PyBuffer_Release(&view);
        Py_CLEAR(chunk);
        if (rc != 0) {
            goto out;
        }
    }
    if (PyErr_Occurred()) {
        goto fail;
    }
    goto out;
fail:
    /* Not a disk problem: the user's code raised. The runtime keeps serving and tries again
     * after a backoff (docs/python.md, "Snapshots that fail"). */
    rc = CRAFT_EAPPLY;
    fsm_reason("snapshot()");
    {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (tb != NULL && value != NULL) {
            PyException_SetTraceback(value, tb);
        }
        Py_XSETREF(self->snapshot_exc, value);
        Py_XDECREF(type);
        Py_XDECREF(tb);
    }
out:
    Py_XDECREF(chunk);
    Py_XDECREF(it);
    Py_XDECREF(r);
    PyGILState_Release(g);
    return rc;
}

/* craft._craft.SnapshotReader: the file-like object restore() reads, valid during the call. */
typedef struct {
    PyObject_HEAD
    craft_uv_read_fn read;
    void *ctx;
    bool eof;
    int rc;
} ReaderObject;

static PyTypeObject *reader_type;

static PyObject *Reader_read(ReaderObject *self, PyObject *args)
{
    Py_ssize_t want = -1;
    if (!PyArg_ParseTuple(args, "|n", &want)) {
        return NULL;
    }
    if (self->read == NULL) {
        PyErr_SetString(PyExc_ValueError, "the snapshot reader is only valid during restore()");
        return NULL;
    }
    size_t cap = want < 0 ? 65536 : (size_t)want;
    size_t len = 0, alloc = want < 0 ? 65536 : (size_t)want;
    char *buf = malloc(alloc > 0 ? alloc : 1);
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    int rc = 0;
    while (!self->eof && (want < 0 || len < (size_t)want)) {
        if (want < 0 && alloc - len < cap) {
            char *nb = realloc(buf, alloc * 2);
            if (nb == NULL) {
                free(buf);
                return PyErr_NoMemory();
            }
            buf = nb;
            alloc *= 2;
        }
        size_t n = 0;
        size_t room = want < 0 ? alloc - len : (size_t)want - len;
        Py_BEGIN_ALLOW_THREADS;
        rc = self->read(self->ctx, buf + len, room, &n);
        Py_END_ALLOW_THREADS;
        if (rc != 0) {
            break;
        }
        if (n == 0) {
            self->eof = true;
        }
        len += n;
    }
    if (rc != 0) {
        free(buf);
        self->rc = rc;
        return craftpy_raise(rc, "reading the snapshot", 0, NULL);
    }
    PyObject *b = PyBytes_FromStringAndSize(buf, (Py_ssize_t)len);
    free(buf);
    return b;
}

static PyObject *Reader_readable(ReaderObject *self, PyObject *noargs)
{
    Py_RETURN_TRUE;
}

static PyMethodDef Reader_methods[] = {
    {"read", (PyCFunction)Reader_read, METH_VARARGS, "read(n=-1) -> bytes (b'' at the end)"},
    {"readable", (PyCFunction)Reader_readable, METH_NOARGS, "True"},
    {NULL, NULL, 0, NULL},
};

static void Reader_dealloc(ReaderObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyType_Slot Reader_slots[] = {
    {Py_tp_doc, "A snapshot being restored: read(n) returns up to n bytes, b'' at the end."},
    {Py_tp_methods, Reader_methods},
    {Py_tp_dealloc, Reader_dealloc},
    {0, NULL},
};

static PyType_Spec Reader_spec = {"craft._craft.SnapshotReader", sizeof(ReaderObject), 0,
                                  Py_TPFLAGS_DEFAULT, Reader_slots};

static int fsm_restore(void *data, craft_uv_read_fn read, void *ctx)
{
    NodeObject *self = data;
    PyGILState_STATE g = PyGILState_Ensure();
    int rc = 0;
    ReaderObject *reader = PyObject_New(ReaderObject, reader_type);
    if (reader == NULL) {
        rc = CRAFT_ENOMEM;
        PyErr_Clear();
        goto out;
    }
    reader->read = read;
    reader->ctx = ctx;
    reader->eof = false;
    reader->rc = 0;
    PyObject *r = PyObject_CallMethod(self->fsm, "restore", "(O)", reader);
    if (r == NULL) {
        /* The user's exception (or the adapter's refusal of a snapshot it cannot interpret):
         * not a disk problem, unless reading the snapshot itself failed. */
        rc = reader->rc != 0 ? reader->rc : CRAFT_EAPPLY;
        fsm_reason("restore()");
        uv_mutex_lock(&self->lock);
        bool starting = self->state == ST_STARTING;
        uv_mutex_unlock(&self->lock);
        if (starting) {
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_NormalizeException(&type, &value, &tb);
            if (tb != NULL && value != NULL) {
                PyException_SetTraceback(value, tb);
            }
            Py_XSETREF(self->restore_exc, value);
            Py_XDECREF(type);
            Py_XDECREF(tb);
        } else {
            craftpy_log_exception("craft: the state machine's restore() raised; the node stops");
        }
    }
    Py_XDECREF(r);
    reader->read = NULL; /* later reads raise */
    reader->ctx = NULL;
    Py_DECREF(reader);
out:
    PyGILState_Release(g);
    return rc;
}

static void on_event(void *data, const struct craft_uv_event *e)
{
    NodeObject *self = data;
    if (self->events == NULL) {
        return;
    }
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *r = PyObject_CallFunction(self->events, "iiKKKOisK", e->type, e->role,
                                        (unsigned long long)e->term,
                                        (unsigned long long)e->leader,
                                        (unsigned long long)e->index,
                                        e->installed ? Py_True : Py_False, e->error,
                                        e->message != NULL ? e->message : "",
                                        (unsigned long long)e->match);
    if (r == NULL) {
        craftpy_log_exception("craft: an event callback raised");
    }
    Py_XDECREF(r);
    PyGILState_Release(g);
}

static void on_log(void *data, int level, const char *line)
{
    NodeObject *self = data;
    PyGILState_STATE g = PyGILState_Ensure();
    if (self->snapshot_exc != NULL && strstr(line, "event=snapshot_failed") != NULL) {
        PyObject *exc = self->snapshot_exc;
        self->snapshot_exc = NULL;
        craftpy_log_exc(level, line, exc);
        Py_DECREF(exc);
    } else {
        craftpy_log(level, line);
    }
    PyGILState_Release(g);
}

/* ---- the loop thread ------------------------------------------------------------------------- */

static void set_state(NodeObject *self, int st)
{
    uv_mutex_lock(&self->lock);
    self->state = st;
    uv_cond_broadcast(&self->cond);
    uv_mutex_unlock(&self->lock);
}

static void close_flush_handles(NodeObject *self)
{
    loop_flush(self); /* the answers of the stop (Closed) */
    uv_close((uv_handle_t *)&self->flush_prepare, NULL);
    uv_close((uv_handle_t *)&self->flush_check, NULL);
}

static void on_stopped(void *data)
{
    NodeObject *self = data;
    self->node = NULL;
    uv_close((uv_handle_t *)&self->stop_async, NULL);
    close_flush_handles(self);
}

static void on_stop_async(uv_async_t *h)
{
    NodeObject *self = h->data;
    if (self->node == NULL || self->stop_requested) {
        return;
    }
    self->stop_requested = true;
    craft_uv_node_stop(self->node, on_stopped, self);
}

static void loop_body(NodeObject *self);

/* The loop thread. It keeps one Python thread state for its whole life (taken once, with the
 * GIL released at once): every callback's PyGILState_Ensure then finds it instead of creating
 * and destroying one each time, which was a fifth of a busy leader's time (bench/python_bench.py,
 * perf). */
static void loop_main(void *arg)
{
    NodeObject *self = arg;
    PyGILState_STATE pin = PyGILState_Ensure();
    uv_mutex_lock(&self->lock);
    self->loop_ident = PyThread_get_thread_ident();
    self->loop_tid = uv_thread_self();
    self->has_loop_tid = true;
    uv_mutex_unlock(&self->lock);
    PyThreadState *saved = PyEval_SaveThread();
    loop_body(arg);
    PyEval_RestoreThread(saved);
    PyGILState_Release(pin);
}

static void loop_body(NodeObject *self)
{
    struct craft_store *store = NULL;
    int rc = 0;
    uv_prepare_init(&self->loop, &self->flush_prepare);
    self->flush_prepare.data = self;
    uv_prepare_start(&self->flush_prepare, on_flush_prepare);
    uv_unref((uv_handle_t *)&self->flush_prepare);
    uv_check_init(&self->loop, &self->flush_check);
    self->flush_check.data = self;
    uv_check_start(&self->flush_check, on_flush_check);
    uv_unref((uv_handle_t *)&self->flush_check);
    if (self->store != NULL) {
        PyGILState_STATE g = PyGILState_Ensure();
        rc = craftpy_store_new(self->store, &store);
        if (rc != 0) {
            craftpy_log_exception("craft: creating the Python log store");
        }
        PyGILState_Release(g);
    }
    struct craft_uv_config c = self->cfg;
    c.store = store;
    if (rc == 0) {
        rc = craft_uv_node_new(&self->loop, &c, &self->node);
    }
    if (rc == 0) {
        rc = craft_uv_node_start(self->node);
        if (rc != 0) {
            /* Stop frees it; run the loop until it is gone. */
            craft_uv_node_stop(self->node, on_stopped, self);
            uv_run(&self->loop, UV_RUN_DEFAULT);
        }
    }
    uv_mutex_lock(&self->lock);
    self->start_rc = rc;
    if (rc != 0) {
        snprintf(self->start_err, sizeof self->start_err, "%s", craft_uv_last_error());
    } else {
        snprintf(self->bound, sizeof self->bound, "%s", craft_uv_node_address(self->node));
    }
    self->state = rc == 0 ? ST_RUNNING : ST_STOPPED;
    uv_cond_broadcast(&self->cond);
    uv_mutex_unlock(&self->lock);
    if (rc != 0) {
        if (!uv_is_closing((uv_handle_t *)&self->stop_async)) {
            uv_close((uv_handle_t *)&self->stop_async, NULL);
        }
        if (!uv_is_closing((uv_handle_t *)&self->flush_prepare)) {
            close_flush_handles(self);
        }
        uv_run(&self->loop, UV_RUN_DEFAULT);
        uv_loop_close(&self->loop);
        return;
    }
    uv_run(&self->loop, UV_RUN_DEFAULT);
    uv_loop_close(&self->loop);
    set_state(self, ST_STOPPED);
}

/* ---- the type -------------------------------------------------------------------------------- */

static int parse_bootstrap(NodeObject *self, PyObject *peers)
{
    PyObject *items = PyMapping_Items(peers);
    if (items == NULL) {
        return -1;
    }
    craft_configuration_init(&self->bootstrap);
    self->has_bootstrap = true;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        unsigned long long id;
        const char *addr;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(items, i), "Ks", &id, &addr)) {
            Py_DECREF(items);
            return -1;
        }
        int rc = craft_configuration_add(&self->bootstrap, NULL, id, addr, CRAFT_VOTER);
        if (rc != 0) {
            Py_DECREF(items);
            PyErr_Format(PyExc_ValueError, "peers: bad entry %llu=%s (ids > 0, unique, "
                         "addresses \"host:port\" under %d bytes)", id, addr, CRAFT_ADDRESS_MAX);
            return -1;
        }
    }
    Py_DECREF(items);
    return 0;
}

static char *dup_str(const char *s)
{
    if (s == NULL) {
        return NULL;
    }
    char *d = malloc(strlen(s) + 1);
    if (d != NULL) {
        strcpy(d, s);
    }
    return d;
}

static int Node_init(NodeObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"id", "address", "data_dir", "fsm", "events", "peers", "store",
                             "cluster_id", "heartbeat_ms", "election_timeout_ms", "pre_vote",
                             "check_quorum", "snapshot_entries", "snapshot_trailing", "fsync",
                             "forward", "max_frame", "default_timeout_ms", "log_level", "seed",
                             "segment_size", "security", "limits", "metrics_address",
                             "lag_threshold", NULL};
    unsigned long long id, cluster_id = 0, snapshot_entries = 16384, snapshot_trailing = 1024,
                           seed = 0, segment_size = 0, lag_threshold = 1000;
    const char *address, *data_dir = NULL, *metrics_address = NULL;
    PyObject *fsm, *events = Py_None, *peers = Py_None, *store = Py_None;
    PyObject *security = Py_None, *limits = Py_None;
    unsigned heartbeat_ms = 50, election_ms = 500, max_frame = 0, default_timeout_ms = 10000;
    int pre_vote = 1, check_quorum = 1, fsync = 1, forward = 1, log_level = CRAFT_UV_INFO;
    if (self->state != ST_NEW || self->fsm != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Node.__init__ called twice");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Ksz|O$OOOKIIppKKppIIiKKOOzK", kwlist, &id,
                                     &address, &data_dir, &fsm, &events, &peers, &store,
                                     &cluster_id, &heartbeat_ms, &election_ms, &pre_vote,
                                     &check_quorum, &snapshot_entries, &snapshot_trailing, &fsync,
                                     &forward, &max_frame, &default_timeout_ms, &log_level, &seed,
                                     &segment_size, &security, &limits, &metrics_address,
                                     &lag_threshold)) {
        return -1;
    }
    struct craft_uv_limits lim;
    if (craftpy_limits_parse(limits, &lim) != 0 ||
        craftpy_security_parse(security, &self->security) != 0) {
        return -1;
    }
    craft_uv_config_init(&self->cfg, id);
    self->address = dup_str(address);
    self->data_dir = dup_str(data_dir);
    self->cfg.address = self->address;
    self->cfg.data_dir = self->data_dir;
    self->cfg.cluster_id = cluster_id;
    self->cfg.heartbeat_ms = heartbeat_ms;
    self->cfg.election_timeout_ms = election_ms;
    self->cfg.pre_vote = pre_vote;
    self->cfg.check_quorum = check_quorum;
    self->cfg.snapshot_entries = snapshot_entries;
    self->cfg.snapshot_trailing = snapshot_trailing;
    self->cfg.fsync = fsync;
    self->cfg.segment_size = segment_size; /* range checked by craft.Node; 0: the default */
    self->cfg.forward = forward;
    if (max_frame != 0) {
        self->cfg.max_frame = max_frame;
    }
    self->cfg.default_timeout_ms = default_timeout_ms;
    self->cfg.log_level = log_level;
    self->cfg.seed = seed;
    self->cfg.limits = lim;
    self->cfg.security = self->security.s;
    self->metrics_address = metrics_address != NULL ? dup_str(metrics_address) : NULL;
    self->cfg.metrics_address = self->metrics_address;
    self->cfg.lag_threshold = lag_threshold;
    self->cfg.fsm = (struct craft_uv_fsm){.data = self,
                                          .apply = fsm_apply,
                                          .snapshot = fsm_snapshot,
                                          .restore = fsm_restore,
                                          .step_done = fsm_step_done,
                                          .thread_start = fsm_thread_start,
                                          .thread_stop = fsm_thread_stop};
    self->cfg.log = on_log;
    self->cfg.log_data = self;
    self->cfg.event = on_event;
    self->cfg.event_data = self;
    Py_INCREF(fsm);
    self->fsm = fsm;
    if (events != Py_None) {
        Py_INCREF(events);
        self->events = events;
    }
    if (store != Py_None) {
        Py_INCREF(store);
        self->store = store;
    }
    if (peers != Py_None) {
        if (parse_bootstrap(self, peers) != 0) {
            return -1;
        }
        self->cfg.bootstrap = &self->bootstrap;
    }
    return 0;
}

static PyObject *Node_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    NodeObject *self = (NodeObject *)PyType_GenericNew(type, args, kw);
    if (self == NULL) {
        return NULL;
    }
    if (uv_mutex_init(&self->lock) != 0 || uv_cond_init(&self->cond) != 0) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->state = ST_NEW;
    return (PyObject *)self;
}

static PyObject *Node_start(NodeObject *self, PyObject *args)
{
    double timeout = 30.0;
    if (!PyArg_ParseTuple(args, "|d", &timeout)) {
        return NULL;
    }
    if (self->state != ST_NEW) {
        return craftpy_raise(CRAFT_ESTATE, "start() may be called once", 0, NULL);
    }
    if (uv_loop_init(&self->loop) != 0) {
        return craftpy_raise(CRAFT_ENOMEM, "uv_loop_init", 0, NULL);
    }
    uv_async_init(&self->loop, &self->stop_async, on_stop_async);
    self->stop_async.data = self;
    self->state = ST_STARTING;
    Py_INCREF(self); /* the loop thread's reference, dropped by close() after the join */
    if (uv_thread_create(&self->thread, loop_main, self) != 0) {
        Py_DECREF(self);
        self->state = ST_NEW;
        uv_close((uv_handle_t *)&self->stop_async, NULL);
        uv_run(&self->loop, UV_RUN_DEFAULT);
        uv_loop_close(&self->loop);
        return craftpy_raise(CRAFT_ENOMEM, "starting the loop thread", 0, NULL);
    }
    int st;
    Py_BEGIN_ALLOW_THREADS;
    uv_mutex_lock(&self->lock);
    while (self->state == ST_STARTING) {
        uv_cond_wait(&self->cond, &self->lock);
    }
    st = self->state;
    uv_mutex_unlock(&self->lock);
    Py_END_ALLOW_THREADS;
    if (st != ST_RUNNING) {
        Py_BEGIN_ALLOW_THREADS;
        uv_thread_join(&self->thread);
        Py_END_ALLOW_THREADS;
        Py_DECREF(self);
        int code = self->start_rc;
        /* Nothing is left open (the loop thread closed the store, the loop and its handles):
         * start() may be called again, e.g. once the address is free. */
        self->state = ST_NEW;
        self->bound[0] = '\0';
        if (self->restore_exc != NULL) {
            /* The state machine's own exception, with its traceback, and what craft was doing. */
            PyObject *exc = self->restore_exc;
            self->restore_exc = NULL;
            PyObject *note = PyUnicode_FromFormat("craft: raised by the state machine's restore() "
                                                  "while node %llu started (%s)",
                                                  (unsigned long long)self->cfg.id,
                                                  self->start_err);
            if (note != NULL) {
                PyObject *r = PyObject_CallMethod(exc, "add_note", "(O)", note);
                Py_XDECREF(r);
                PyErr_Clear();
                Py_DECREF(note);
            }
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
            return NULL;
        }
        return craftpy_raise(code, self->start_err, 0, NULL);
    }
    Py_RETURN_NONE;
}

/* close() stops the loop thread and joins it: on that thread (an event callback, a read
 * function, apply) it cannot, and must not mark the node closed and drop the loop's reference
 * while the loop still runs. Refused there, before anything changes. */
static PyObject *Node_close(NodeObject *self, PyObject *noargs)
{
    if (self->forked) {
        Py_RETURN_NONE; /* the node belongs to the parent: nothing of it to close here */
    }
    uv_mutex_lock(&self->lock);
    int st = self->state;
    if ((st == ST_STARTING || st == ST_RUNNING || st == ST_STOPPING) &&
        (on_thread(&self->loop_tid, self->has_loop_tid) ||
         on_thread(&self->fsm_tid, self->has_fsm_tid))) {
        uv_mutex_unlock(&self->lock);
        PyErr_SetString(PyExc_RuntimeError,
                        "close() called on one of the node's own threads (from an event "
                        "callback, a read function or apply), which it would have to stop and "
                        "wait for: close the node from another thread");
        return NULL;
    }
    if (st == ST_RUNNING) {
        self->state = ST_STOPPING;
    }
    uv_mutex_unlock(&self->lock);
    if (st == ST_NEW) {
        self->state = ST_STOPPED;
        Py_RETURN_NONE;
    }
    if (st != ST_RUNNING) {
        Py_RETURN_NONE; /* already closed, or another thread is closing it */
    }
    uv_async_send(&self->stop_async);
    Py_BEGIN_ALLOW_THREADS;
    uv_thread_join(&self->thread);
    Py_END_ALLOW_THREADS;
    set_state(self, ST_STOPPED);
    Py_DECREF(self); /* the loop thread's reference */
    Py_RETURN_NONE;
}

static unsigned timeout_ms_of(double t)
{
    if (t <= 0) {
        return 0;
    }
    double ms = t * 1000.0;
    return ms > 4e9 ? 4000000000U : (unsigned)(ms + 0.5) ? (unsigned)(ms + 0.5) : 1;
}

/* Sync request: submit, wait, then either return the payload or raise. */
static PyObject *run_sync(NodeObject *self, struct pyreq *r, double timeout)
{
    r->req.timeout_ms = timeout_ms_of(timeout);
    unsigned wait_ms = r->req.timeout_ms ? r->req.timeout_ms : self->cfg.default_timeout_ms;
    if (submit(self, r) != 0) {
        return NULL;
    }
    if (wait_req(r, wait_ms) != 0) {
        return NULL;
    }
    PyObject *ret = NULL;
    if (r->status != 0) {
        raise_status(r);
    } else if (r->read_fn != NULL) {
        if (r->exc_type != NULL) {
            PyErr_Restore(r->exc_type, r->exc_value, r->exc_tb);
            r->exc_type = r->exc_value = r->exc_tb = NULL;
        } else {
            ret = r->read_result;
            r->read_result = NULL;
        }
    } else {
        ret = Py_BuildValue("(Ky#)", (unsigned long long)r->index, r->data != NULL ? r->data : "",
                            (Py_ssize_t)r->size);
    }
    pyreq_release(r);
    return ret;
}

/* apply(command, timeout=0) -> (index, result) */
static PyObject *Node_apply(NodeObject *self, PyObject *args)
{
    Py_buffer cmd;
    double timeout = 0;
    if (!PyArg_ParseTuple(args, "y*|d", &cmd, &timeout)) {
        return NULL;
    }
    struct pyreq *r = pyreq_new(self, WAIT_SYNC, CRAFT_UV_PROPOSE);
    if (r == NULL) {
        PyBuffer_Release(&cmd);
        return NULL;
    }
    r->req.payload = cmd.buf;
    r->req.size = (size_t)cmd.len;
    /* craft_uv_submit copies the payload, so the buffer can go once it returned. */
    r->req.timeout_ms = timeout_ms_of(timeout);
    unsigned wait_ms = r->req.timeout_ms ? r->req.timeout_ms : self->cfg.default_timeout_ms;
    if (submit(self, r) != 0) {
        PyBuffer_Release(&cmd);
        return NULL;
    }
    PyBuffer_Release(&cmd);
    if (wait_req(r, wait_ms) != 0) {
        return NULL;
    }
    PyObject *ret = NULL;
    if (r->status != 0) {
        raise_status(r);
    } else {
        ret = Py_BuildValue("(Ky#)", (unsigned long long)r->index, r->data != NULL ? r->data : "",
                            (Py_ssize_t)r->size);
    }
    pyreq_release(r);
    return ret;
}

/* submit_async(op, payload, done, timeout=0, server=0, address=None, auto_promote=False,
 * loop=None): done(status, index, data, leader_id, leader_address) is called on the asyncio
 * event loop `loop` (the completions of one batch handed over together), or, without a loop,
 * on the runtime's thread that answered the request. */
static PyObject *Node_submit_async(NodeObject *self, PyObject *args)
{
    int op;
    Py_buffer payload;
    PyObject *done, *aio_loop = Py_None;
    double timeout = 0;
    unsigned long long server = 0;
    const char *address = NULL;
    int auto_promote = 0;
    if (!PyArg_ParseTuple(args, "iy*O|dKzpO", &op, &payload, &done, &timeout, &server, &address,
                          &auto_promote, &aio_loop)) {
        return NULL;
    }
    struct pyreq *r = pyreq_new(self, WAIT_ASYNC, op);
    if (r == NULL) {
        PyBuffer_Release(&payload);
        return NULL;
    }
    Py_INCREF(done);
    r->done_cb = done;
    if (aio_loop != Py_None) {
        Py_INCREF(aio_loop);
        r->aio_loop = aio_loop;
    }
    r->req.payload = payload.buf;
    r->req.size = (size_t)payload.len;
    r->req.timeout_ms = timeout_ms_of(timeout);
    r->req.server = server;
    r->req.address = address;
    r->req.auto_promote = auto_promote;
    int rc = submit(self, r);
    PyBuffer_Release(&payload);
    if (rc != 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _on_runtime_thread() -> whether the caller is the node's loop thread or its state machine's
 * (where a blocking call would wait for itself). */
static PyObject *Node_on_runtime_thread(NodeObject *self, PyObject *noargs)
{
    if (self->forked) {
        Py_RETURN_FALSE;
    }
    uv_mutex_lock(&self->lock);
    bool mine = self->state != ST_NEW && self->state != ST_STOPPED &&
                (on_thread(&self->loop_tid, self->has_loop_tid) ||
                 on_thread(&self->fsm_tid, self->has_fsm_tid));
    uv_mutex_unlock(&self->lock);
    return PyBool_FromLong(mine);
}

/* read(fn, arg, lease=False, timeout=0) -> fn(arg), run on the state machine's thread after the
 * barrier, with no apply in progress */
static PyObject *Node_read(NodeObject *self, PyObject *args)
{
    PyObject *fn, *arg;
    int lease = 0;
    double timeout = 0;
    if (!PyArg_ParseTuple(args, "OO|pd", &fn, &arg, &lease, &timeout)) {
        return NULL;
    }
    struct pyreq *r = pyreq_new(self, WAIT_SYNC, lease ? CRAFT_UV_READ_LEASE : CRAFT_UV_READ);
    if (r == NULL) {
        return NULL;
    }
    Py_INCREF(fn);
    Py_INCREF(arg);
    r->read_fn = fn;
    r->read_arg = arg;
    return run_sync(self, r, timeout);
}

/* change(op, server, address=None, auto_promote=False, timeout=0) -> index */
static PyObject *Node_change(NodeObject *self, PyObject *args)
{
    int op;
    unsigned long long server;
    const char *address = NULL;
    int auto_promote = 0;
    double timeout = 0;
    if (!PyArg_ParseTuple(args, "iK|zpd", &op, &server, &address, &auto_promote, &timeout)) {
        return NULL;
    }
    if (op < CRAFT_UV_ADD || op > CRAFT_UV_SNAPSHOT) {
        PyErr_SetString(PyExc_ValueError, "bad op");
        return NULL;
    }
    struct pyreq *r = pyreq_new(self, WAIT_SYNC, op);
    if (r == NULL) {
        return NULL;
    }
    r->req.server = server;
    r->req.address = address;
    r->req.auto_promote = auto_promote;
    PyObject *t = run_sync(self, r, timeout);
    if (t == NULL) {
        return NULL;
    }
    PyObject *index = PyTuple_GetItem(t, 0);
    Py_XINCREF(index);
    Py_DECREF(t);
    return index;
}

static PyObject *Node_set_faults(NodeObject *self, PyObject *args)
{
    /* craft_uv_set_faults: thread-safe, applied on the loop thread. */
    unsigned long long to;
    double drop = 0.0;
    unsigned int delay_min_ms = 0, delay_max_ms = 0;
    int block = 0;
    if (!PyArg_ParseTuple(args, "K|dIIp", &to, &drop, &delay_min_ms, &delay_max_ms, &block)) {
        return NULL;
    }
    if (to == 0 || !(drop >= 0.0 && drop <= 1.0) || delay_min_ms > delay_max_ms) {
        PyErr_SetString(PyExc_ValueError, "set_faults: need to > 0, 0 <= drop <= 1 and "
                                          "delay_min_ms <= delay_max_ms");
        return NULL;
    }
    if (check_running(self) != 0) {
        return NULL;
    }
    int rc = craft_uv_set_faults(self->node, (craft_id)to, drop, delay_min_ms, delay_max_ms,
                                 block != 0);
    if (rc != 0) {
        return craftpy_raise(rc, "set_faults", 0, NULL);
    }
    Py_RETURN_NONE;
}

static PyObject *Node_set_security(NodeObject *self, PyObject *args)
{
    /* craft_uv_set_security: any thread; reads the files and derives the keys here (scrypt
     * for a passphrase), with the GIL released. */
    PyObject *obj;
    struct craftpy_security sec;
    int rc;
    if (!PyArg_ParseTuple(args, "O", &obj) || craftpy_security_parse(obj, &sec) != 0) {
        return NULL;
    }
    if (check_running(self) != 0) {
        craftpy_security_free(&sec);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS;
    rc = craft_uv_set_security(self->node, &sec.s);
    Py_END_ALLOW_THREADS;
    craftpy_security_free(&sec);
    if (rc != 0) {
        return craftpy_raise(rc, rc == CRAFT_EINVAL ? craft_uv_last_error() : "set_security", 0,
                             NULL);
    }
    Py_RETURN_NONE;
}

static PyObject *Node_status(NodeObject *self, PyObject *noargs)
{
    if (check_running(self) != 0) {
        return NULL;
    }
    struct craft_uv_status s;
    int rc = craft_uv_status(self->node, &s);
    if (rc != 0) {
        return craftpy_raise(rc, "status", 0, NULL);
    }
    PyObject *peers = PyList_New(0);
    for (unsigned i = 0; peers != NULL && i < s.n_peers && i < CRAFT_UV_STATUS_PEERS; i++) {
        const struct craft_uv_peer_status *p = &s.peers[i];
        PyObject *d = Py_BuildValue("{s:K,s:s,s:s,s:K,s:O}", "id", (unsigned long long)p->id,
                                    "role", p->role == CRAFT_LEARNER ? "learner" : "voter",
                                    "address", p->address, "match", (unsigned long long)p->match,
                                    "connected", p->connected ? Py_True : Py_False);
        if (d == NULL || PyList_Append(peers, d) != 0) {
            Py_XDECREF(d);
            Py_CLEAR(peers);
        }
        Py_XDECREF(d);
    }
    if (peers == NULL) {
        return NULL;
    }
    PyObject *counters = Py_BuildValue(
        "{s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K}", "msgs_sent",
        (unsigned long long)s.msgs_sent, "msgs_received", (unsigned long long)s.msgs_received,
        "bytes_sent", (unsigned long long)s.bytes_sent, "bytes_received",
        (unsigned long long)s.bytes_received, "entries_appended",
        (unsigned long long)s.entries_appended, "entries_applied",
        (unsigned long long)s.entries_applied, "fsyncs", (unsigned long long)s.fsyncs,
        "elections", (unsigned long long)s.elections, "snapshots", (unsigned long long)s.snapshots,
        "bad_frames", (unsigned long long)s.bad_frames, "refused_handshakes",
        (unsigned long long)s.refused_handshakes, "forwarded", (unsigned long long)s.forwarded);
    if (counters == NULL) {
        Py_DECREF(peers);
        return NULL;
    }
    const char *role = s.stopped ? "stopped" : s.role != 0 ? craft_role_name(s.role) : "none";
    PyObject *d = Py_BuildValue("{s:K,s:s,s:K,s:K,s:s,s:K,s:K,s:K,s:K,s:K,s:N,s:N,s:O,s:s}", "id",
                         (unsigned long long)s.id, "role", role, "term",
                         (unsigned long long)s.term, "leader", (unsigned long long)s.leader,
                         "leader_address", s.leader_address, "commit",
                         (unsigned long long)s.commit, "applied", (unsigned long long)s.applied,
                         "first_index", (unsigned long long)s.first_index, "last_index",
                         (unsigned long long)s.last_index, "snapshot_index",
                         (unsigned long long)s.snapshot_index, "peers", peers, "counters",
                         counters, "stopped", s.stopped ? Py_True : Py_False, "address",
                         self->bound);
    PyObject *extra = d != NULL ? Py_BuildValue("{s:s,s:K,s:s,s:O,s:K}", "stop_reason",
                                                s.stop_reason, "snapshot_failures",
                                                (unsigned long long)s.snapshot_failures,
                                                "snapshot_error", s.snapshot_error, "removed",
                                                s.removed ? Py_True : Py_False, "cluster_id",
                                                (unsigned long long)s.cluster_id)
                                : NULL;
    if (extra == NULL || PyDict_Update(d, extra) != 0) {
        Py_XDECREF(extra);
        Py_XDECREF(d);
        return NULL;
    }
    Py_DECREF(extra);
    return d;
}

/* status_packed() -> the status as the msgpack map of docs/wire.md (what a status request
 * over the network answers), and metrics(openmetrics=False) -> the metrics text. */
static PyObject *Node_status_packed(NodeObject *self, PyObject *noargs)
{
    if (check_running(self) != 0) {
        return NULL;
    }
    struct craft_uv_status s;
    void *buf = NULL;
    size_t size = 0;
    int rc = craft_uv_status(self->node, &s);
    if (rc == 0) {
        rc = craft_uv_status_pack(&s, &buf, &size);
    }
    if (rc != 0) {
        return craftpy_raise(rc, "status", 0, NULL);
    }
    PyObject *r = PyBytes_FromStringAndSize(buf, (Py_ssize_t)size);
    craft_free(NULL, buf);
    return r;
}

static PyObject *Node_metrics(NodeObject *self, PyObject *args)
{
    int openmetrics = 0;
    if (!PyArg_ParseTuple(args, "|p", &openmetrics) || check_running(self) != 0) {
        return NULL;
    }
    char *text = NULL;
    size_t size = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = craft_uv_metrics(self->node, openmetrics != 0, &text, &size);
    Py_END_ALLOW_THREADS;
    if (rc != 0) {
        return craftpy_raise(rc, "metrics", 0, NULL);
    }
    PyObject *r = PyUnicode_DecodeUTF8(text, (Py_ssize_t)size, "replace");
    craft_free(NULL, text);
    return r;
}

/* after_fork_child(): in a forked child of a process that started a node. libuv's thread pool
 * (the disk and snapshot work) was started by the parent: its threads do not exist in the child,
 * but libuv's destructor joins them at exit, which crashed every such child as it exited.
 * libuv re-creates the pool in a child on the next piece of work (its own pthread_atfork hook
 * resets the pool's once-flag): queueing one empty piece of work starts a pool of this process
 * for the destructor to stop. */
static void noop_work(uv_work_t *w)
{
    (void)w;
}

static void noop_after_work(uv_work_t *w, int status)
{
    (void)w;
    (void)status;
}

PyObject *craftpy_after_fork_child(PyObject *module, PyObject *noargs)
{
    uv_loop_t loop;
    uv_work_t w;
    if (uv_loop_init(&loop) != 0) {
        Py_RETURN_NONE;
    }
    if (uv_queue_work(&loop, &w, noop_work, noop_after_work) == 0) {
        Py_BEGIN_ALLOW_THREADS;
        uv_run(&loop, UV_RUN_DEFAULT);
        Py_END_ALLOW_THREADS;
    }
    uv_loop_close(&loop);
    Py_RETURN_NONE;
}

/* max_command(max_frame=0) -> the largest command a cluster with that max_frame replicates. */
PyObject *craftpy_max_command(PyObject *module, PyObject *args)
{
    unsigned long long max_frame = 0;
    if (!PyArg_ParseTuple(args, "|K", &max_frame)) {
        return NULL;
    }
    if (max_frame > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "max_frame must be below 2**32");
        return NULL;
    }
    return PyLong_FromSize_t(craft_uv_max_command((uint32_t)max_frame));
}

/* _forked(): called in a forked child for every node started before the fork. */
static PyObject *Node_forked(NodeObject *self, PyObject *noargs)
{
    self->forked = true;
    Py_RETURN_NONE;
}

static PyObject *Node_get_address(NodeObject *self, void *closure)
{
    if (self->forked) {
        return PyUnicode_FromString(self->bound[0] ? self->bound : self->address);
    }
    uv_mutex_lock(&self->lock);
    PyObject *r = PyUnicode_FromString(self->bound[0] ? self->bound : self->address);
    uv_mutex_unlock(&self->lock);
    return r;
}

static PyObject *Node_get_running(NodeObject *self, void *closure)
{
    if (self->forked) {
        Py_RETURN_FALSE;
    }
    uv_mutex_lock(&self->lock);
    int st = self->state;
    uv_mutex_unlock(&self->lock);
    return PyBool_FromLong(st == ST_RUNNING);
}

static PyObject *Node_get_id(NodeObject *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->cfg.id);
}

static int Node_traverse(NodeObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fsm);
    Py_VISIT(self->events);
    Py_VISIT(self->store);
    Py_VISIT(self->restore_exc);
    Py_VISIT(self->snapshot_exc);
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static int Node_clear(NodeObject *self)
{
    /* Only reachable when the loop thread has ended (it holds a reference while running). */
    Py_CLEAR(self->fsm);
    Py_CLEAR(self->events);
    Py_CLEAR(self->store);
    Py_CLEAR(self->restore_exc);
    Py_CLEAR(self->snapshot_exc);
    return 0;
}

static void Node_dealloc(NodeObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Node_clear(self);
    if (self->has_bootstrap) {
        craft_configuration_close(&self->bootstrap, NULL);
    }
    free(self->address);
    free(self->data_dir);
    free(self->metrics_address);
    craftpy_security_free(&self->security);
    uv_mutex_destroy(&self->lock);
    uv_cond_destroy(&self->cond);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef Node_methods[] = {
    {"start", (PyCFunction)Node_start, METH_VARARGS, "start(): opens the store, binds, runs."},
    {"close", (PyCFunction)Node_close, METH_NOARGS, "close(): stops gracefully; idempotent."},
    {"apply", (PyCFunction)Node_apply, METH_VARARGS, "apply(cmd, timeout=0) -> (index, bytes)"},
    {"submit_async", (PyCFunction)Node_submit_async, METH_VARARGS,
     "submit_async(op, payload, done, timeout=0, server=0, address=None, auto_promote=False, "
     "loop=None)"},
    {"read", (PyCFunction)Node_read, METH_VARARGS, "read(fn, arg, lease=False, timeout=0)"},
    {"change", (PyCFunction)Node_change, METH_VARARGS,
     "change(op, server, address=None, auto_promote=False, timeout=0) -> index"},
    {"status", (PyCFunction)Node_status, METH_NOARGS, "status() -> dict"},
    {"status_packed", (PyCFunction)Node_status_packed, METH_NOARGS,
     "status_packed() -> the status as a msgpack map (docs/wire.md)"},
    {"metrics", (PyCFunction)Node_metrics, METH_VARARGS,
     "metrics(openmetrics=False) -> Prometheus or OpenMetrics text"},
    {"_on_runtime_thread", (PyCFunction)Node_on_runtime_thread, METH_NOARGS,
     "_on_runtime_thread() -> whether this is the node's loop or state machine thread"},
    {"_forked", (PyCFunction)Node_forked, METH_NOARGS,
     "_forked(): this process is a fork of the node's: refuse every call from now on"},
    {"set_faults", (PyCFunction)Node_set_faults, METH_VARARGS,
     "set_faults(to, drop=0.0, delay_min_ms=0, delay_max_ms=0, block=False)"},
    {"set_security", (PyCFunction)Node_set_security, METH_VARARGS,
     "set_security(settings): new security settings for the running node (rotation)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Node_getset[] = {
    {"address", (getter)Node_get_address, NULL, "the address bound", NULL},
    {"running", (getter)Node_get_running, NULL, "started and not closed", NULL},
    {"id", (getter)Node_get_id, NULL, "server id", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Node_slots[] = {
    {Py_tp_doc, "A node of the libuv runtime. Use craft.Node."},
    {Py_tp_new, Node_new},
    {Py_tp_init, Node_init},
    {Py_tp_dealloc, Node_dealloc},
    {Py_tp_traverse, Node_traverse},
    {Py_tp_clear, Node_clear},
    {Py_tp_methods, Node_methods},
    {Py_tp_getset, Node_getset},
    {0, NULL},
};

static PyType_Spec Node_spec = {"craft._craft.Node", sizeof(NodeObject), 0,
                                Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, Node_slots};

int craftpy_node_init(PyObject *m)
{
    run_completions_fn = PyCFunction_New(&run_completions_def, NULL);
    if (run_completions_fn == NULL) {
        return -1;
    }
    reader_type = (PyTypeObject *)PyType_FromSpec(&Reader_spec);
    if (reader_type == NULL) {
        return -1;
    }
    Py_INCREF(reader_type);
    if (PyModule_AddObject(m, "SnapshotReader", (PyObject *)reader_type) != 0) {
        Py_DECREF(reader_type);
        return -1;
    }
    PyObject *t = PyType_FromSpec(&Node_spec);
    if (t == NULL) {
        return -1;
    }
    if (PyModule_AddObject(m, "Node", t) != 0) {
        Py_DECREF(t);
        return -1;
    }
    if (craftpy_security_init(m) != 0) {
        return -1;
    }
#define ADD_INT(name, value)                                                                 \
    if (PyModule_AddIntConstant(m, name, value) != 0)                                          \
        return -1;
    ADD_INT("OP_PROPOSE", CRAFT_UV_PROPOSE);
    ADD_INT("OP_READ", CRAFT_UV_READ);
    ADD_INT("OP_READ_LEASE", CRAFT_UV_READ_LEASE);
    ADD_INT("OP_ADD", CRAFT_UV_ADD);
    ADD_INT("OP_PROMOTE", CRAFT_UV_PROMOTE);
    ADD_INT("OP_REMOVE", CRAFT_UV_REMOVE);
    ADD_INT("OP_TRANSFER", CRAFT_UV_TRANSFER);
    ADD_INT("EVENT_ROLE", CRAFT_UV_EVENT_ROLE);
    ADD_INT("EVENT_MEMBERSHIP", CRAFT_UV_EVENT_MEMBERSHIP);
    ADD_INT("EVENT_SNAPSHOT", CRAFT_UV_EVENT_SNAPSHOT);
    ADD_INT("EVENT_STOPPED", CRAFT_UV_EVENT_STOPPED);
    ADD_INT("EVENT_FOLLOWER_LOG_LOST", CRAFT_UV_EVENT_FOLLOWER_LOG_LOST);
    ADD_INT("EVENT_SNAPSHOT_FAILED", CRAFT_UV_EVENT_SNAPSHOT_FAILED);
    ADD_INT("EVENT_REMOVED", CRAFT_UV_EVENT_REMOVED);
    ADD_INT("EVENT_PEERS_DIFFER", CRAFT_UV_EVENT_PEERS_DIFFER);
    ADD_INT("LOG_DEBUG", CRAFT_UV_DEBUG);
    ADD_INT("LOG_INFO", CRAFT_UV_INFO);
    ADD_INT("LOG_WARN", CRAFT_UV_WARN);
    ADD_INT("LOG_ERROR", CRAFT_UV_ERROR);
#undef ADD_INT
    return 0;
}
