/* craft._craft.Client: the blocking client of craft/client.h for Python, which craft.Client
 * (python/craft/client.py) and the `craft` command line (python/craft/__main__.py) use to talk
 * to live nodes: proposals and reads, and the operators' requests (status, membership,
 * transfer, snapshot, metrics). Every call releases the GIL while it waits on the network; a
 * lock makes one client usable from several threads, one call at a time. */
#include "craftpy.h"
#include "security.h"

#include "craft/client.h"
#include "craft/uv.h"
#include "craft/wire.h"
#include "pythread.h"

typedef struct {
    PyObject_HEAD
    struct craft_client *c;
    PyThread_type_lock lock;
} ClientObject;

static PyObject *client_type;

static int Client_init(ClientObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"servers", "cluster_id", "timeout", "security", NULL};
    PyObject *servers, *security = Py_None;
    unsigned long long cluster_id = 0;
    double timeout = 10.0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|KdO", kwlist, &servers, &cluster_id, &timeout,
                                     &security)) {
        return -1;
    }
    if (self->c != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Client.__init__ called twice");
        return -1;
    }
    PyObject *seq = PySequence_Fast(servers, "servers must be a list of \"host:port\" strings");
    if (seq == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n < 1 || n > 64) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "servers: give 1 to 64 addresses");
        return -1;
    }
    const char *addrs[64];
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = PySequence_Fast_GET_ITEM(seq, i);
        addrs[i] = PyUnicode_Check(s) ? PyUnicode_AsUTF8(s) : NULL;
        if (addrs[i] == NULL) {
            Py_DECREF(seq);
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_TypeError, "servers must be \"host:port\" strings");
            }
            return -1;
        }
    }
    if (!(timeout > 0) || timeout > 86400) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "timeout must be > 0 and at most a day (seconds)");
        return -1;
    }
    struct craftpy_security sec;
    if (craftpy_security_parse(security, &sec) != 0) {
        Py_DECREF(seq);
        return -1;
    }
    char err[512] = "";
    int rc;
    /* Reading the files and deriving the keys (scrypt for a passphrase) may take a while. */
    Py_BEGIN_ALLOW_THREADS;
    rc = craft_client_open_secure(addrs, (unsigned)n, cluster_id, (unsigned)(timeout * 1000 + 0.5),
                                  &sec.s, &self->c, err, sizeof err);
    Py_END_ALLOW_THREADS;
    craftpy_security_free(&sec);
    Py_DECREF(seq);
    if (rc != 0) {
        self->c = NULL;
        craftpy_raise(rc == CRAFT_EINVAL ? CRAFT_EINVAL : rc,
                      err[0] != '\0' ? err : "bad servers (each \"host:port\")", 0, NULL);
        return -1;
    }
    self->lock = PyThread_allocate_lock();
    if (self->lock == NULL) {
        craft_client_close(self->c);
        self->c = NULL;
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void Client_dealloc(ClientObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    craft_client_close(self->c);
    if (self->lock != NULL) {
        PyThread_free_lock(self->lock);
    }
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* Takes the client for one call (waiting without the GIL); NULL with an exception if closed. */
static struct craft_client *take(ClientObject *self)
{
    if (self->c == NULL || self->lock == NULL) {
        craftpy_raise(CRAFT_ESHUTDOWN, "the client is closed", 0, NULL);
        return NULL;
    }
    if (!PyThread_acquire_lock(self->lock, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS;
        PyThread_acquire_lock(self->lock, WAIT_LOCK);
        Py_END_ALLOW_THREADS;
    }
    if (self->c == NULL) {
        PyThread_release_lock(self->lock);
        craftpy_raise(CRAFT_ESHUTDOWN, "the client is closed", 0, NULL);
        return NULL;
    }
    return self->c;
}

/* Raises for rc, with the server's reason (or why the connection failed) when there is one. */
static PyObject *fail(ClientObject *self, int rc, const char *what)
{
    const char *why = craft_client_error(self->c);
    char detail[600];
    snprintf(detail, sizeof detail, "%s%s%s", what, why[0] != '\0' ? ": " : "", why);
    PyThread_release_lock(self->lock);
    return craftpy_raise(rc, detail, 0, NULL);
}

static PyObject *Client_propose(ClientObject *self, PyObject *args)
{
    Py_buffer cmd;
    if (!PyArg_ParseTuple(args, "y*", &cmd)) {
        return NULL;
    }
    struct craft_client *c = take(self);
    if (c == NULL) {
        PyBuffer_Release(&cmd);
        return NULL;
    }
    void *result = NULL;
    size_t size = 0;
    craft_index index = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = craft_client_propose(c, cmd.buf, (size_t)cmd.len, &result, &size, &index);
    Py_END_ALLOW_THREADS;
    PyBuffer_Release(&cmd);
    if (rc != 0 && rc != CRAFT_EAPPLY) {
        craft_free(NULL, result);
        return fail(self, rc, "propose");
    }
    PyThread_release_lock(self->lock);
    PyObject *r = Py_BuildValue("(iKy#)", rc, (unsigned long long)index,
                                result != NULL ? (const char *)result : "", (Py_ssize_t)size);
    craft_free(NULL, result);
    return r;
}

static PyObject *Client_read(ClientObject *self, PyObject *noargs)
{
    struct craft_client *c = take(self);
    if (c == NULL) {
        return NULL;
    }
    craft_index index = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = craft_client_read(c, &index);
    Py_END_ALLOW_THREADS;
    if (rc != 0) {
        return fail(self, rc, "read");
    }
    PyThread_release_lock(self->lock);
    return PyLong_FromUnsignedLongLong(index);
}

static PyObject *Client_status(ClientObject *self, PyObject *noargs)
{
    struct craft_client *c = take(self);
    if (c == NULL) {
        return NULL;
    }
    void *payload = NULL;
    size_t size = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = craft_client_status(c, &payload, &size);
    Py_END_ALLOW_THREADS;
    if (rc != 0) {
        craft_free(NULL, payload);
        return fail(self, rc, "status");
    }
    PyThread_release_lock(self->lock);
    PyObject *r = PyBytes_FromStringAndSize(payload != NULL ? payload : "", (Py_ssize_t)size);
    craft_free(NULL, payload);
    return r;
}

static PyObject *Client_metrics(ClientObject *self, PyObject *noargs)
{
    struct craft_client *c = take(self);
    if (c == NULL) {
        return NULL;
    }
    char *text = NULL;
    size_t size = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = craft_client_metrics(c, &text, &size);
    Py_END_ALLOW_THREADS;
    if (rc != 0) {
        return fail(self, rc, "metrics");
    }
    PyThread_release_lock(self->lock);
    PyObject *r = PyUnicode_DecodeUTF8(text, (Py_ssize_t)size, "replace");
    craft_free(NULL, text);
    return r;
}

/* change(kind, server, address=None, auto_promote=False) -> index */
static PyObject *Client_change(ClientObject *self, PyObject *args)
{
    int kind, auto_promote = 0;
    unsigned long long server;
    const char *address = NULL;
    if (!PyArg_ParseTuple(args, "iK|zp", &kind, &server, &address, &auto_promote)) {
        return NULL;
    }
    if (kind < CRAFT_WIRE_ADD || kind > CRAFT_WIRE_TRANSFER) {
        PyErr_SetString(PyExc_ValueError, "kind: one of CLIENT_ADD .. CLIENT_TRANSFER");
        return NULL;
    }
    struct craft_client *c = take(self);
    if (c == NULL) {
        return NULL;
    }
    craft_index index = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = craft_client_change(c, kind, (craft_id)server, address, auto_promote != 0, &index);
    Py_END_ALLOW_THREADS;
    if (rc != 0) {
        return fail(self, rc, "change");
    }
    PyThread_release_lock(self->lock);
    return PyLong_FromUnsignedLongLong(index);
}

static PyObject *Client_snapshot(ClientObject *self, PyObject *noargs)
{
    struct craft_client *c = take(self);
    if (c == NULL) {
        return NULL;
    }
    craft_index index = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = craft_client_snapshot(c, &index);
    Py_END_ALLOW_THREADS;
    if (rc != 0) {
        return fail(self, rc, "snapshot");
    }
    PyThread_release_lock(self->lock);
    return PyLong_FromUnsignedLongLong(index);
}

static PyObject *Client_close(ClientObject *self, PyObject *noargs)
{
    if (self->c == NULL) {
        Py_RETURN_NONE;
    }
    struct craft_client *c = take(self);
    if (c == NULL) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    craft_client_close(c);
    self->c = NULL;
    PyThread_release_lock(self->lock);
    Py_RETURN_NONE;
}

static PyObject *Client_get_server(ClientObject *self, void *closure)
{
    (void)closure;
    return PyUnicode_FromString(self->c != NULL ? craft_client_server(self->c) : "");
}

static PyObject *Client_get_unknown(ClientObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->c != NULL && craft_client_outcome_unknown(self->c));
}

static PyObject *Client_get_error(ClientObject *self, void *closure)
{
    (void)closure;
    return PyUnicode_FromString(self->c != NULL ? craft_client_error(self->c) : "");
}

static PyMethodDef Client_methods[] = {
    {"propose", (PyCFunction)Client_propose, METH_VARARGS,
     "propose(command) -> (status, index, result): status 0 or -22 (the state machine failed it)"},
    {"read", (PyCFunction)Client_read, METH_NOARGS, "read() -> the confirmed read index"},
    {"status", (PyCFunction)Client_status, METH_NOARGS,
     "status() -> the server's status, a msgpack map (docs/wire.md)"},
    {"metrics", (PyCFunction)Client_metrics, METH_NOARGS, "metrics() -> Prometheus text"},
    {"change", (PyCFunction)Client_change, METH_VARARGS,
     "change(kind, server, address=None, auto_promote=False) -> configuration index"},
    {"snapshot", (PyCFunction)Client_snapshot, METH_NOARGS,
     "snapshot() -> the index the snapshot covers"},
    {"close", (PyCFunction)Client_close, METH_NOARGS, "close(): idempotent"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Client_getset[] = {
    {"server", (getter)Client_get_server, NULL, "the server talked to (\"\" if none)", NULL},
    {"error", (getter)Client_get_error, NULL, "why the last request or connection failed", NULL},
    {"outcome_unknown", (getter)Client_get_unknown, NULL,
     "the last failed request was sent and no answer came back", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Client_slots[] = {
    {Py_tp_init, (void *)Client_init},
    {Py_tp_new, (void *)PyType_GenericNew},
    {Py_tp_dealloc, (void *)Client_dealloc},
    {Py_tp_methods, Client_methods},
    {Py_tp_getset, Client_getset},
    {Py_tp_doc, "Client(servers, cluster_id=0, timeout=10.0, security=None): the blocking "
                "client of craft/client.h"},
    {0, NULL},
};

static PyType_Spec Client_spec = {"craft._craft.Client", sizeof(ClientObject), 0,
                                  Py_TPFLAGS_DEFAULT, Client_slots};

int craftpy_client_init(PyObject *m)
{
    client_type = PyType_FromSpec(&Client_spec);
    if (client_type == NULL || PyModule_AddObjectRef(m, "Client", client_type) != 0) {
        return -1;
    }
#define ADD_INT(name, value)                                                                 \
    if (PyModule_AddIntConstant(m, name, value) != 0)                                          \
        return -1;
    ADD_INT("CLIENT_ADD", CRAFT_WIRE_ADD);
    ADD_INT("CLIENT_REMOVE", CRAFT_WIRE_REMOVE);
    ADD_INT("CLIENT_PROMOTE", CRAFT_WIRE_PROMOTE);
    ADD_INT("CLIENT_DEMOTE", CRAFT_WIRE_DEMOTE);
    ADD_INT("CLIENT_TRANSFER", CRAFT_WIRE_TRANSFER);
    ADD_INT("OP_DEMOTE", CRAFT_UV_DEMOTE);
    ADD_INT("OP_SNAPSHOT", CRAFT_UV_SNAPSHOT);
    ADD_INT("EVENT_FOLLOWER_LAGGING", CRAFT_UV_EVENT_FOLLOWER_LAGGING);
    ADD_INT("EVENT_FOLLOWER_CAUGHT_UP", CRAFT_UV_EVENT_FOLLOWER_CAUGHT_UP);
#undef ADD_INT
    return 0;
}
