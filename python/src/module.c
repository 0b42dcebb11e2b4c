/* craft._craft: module init, the error mapping, and the client-session helpers (the session
 * table of craft/session.h as craft._craft.Sessions, and the envelope encoders). */
#include "craftpy.h"

#include "craft/session.h"
#include "craft/uv.h"

/* ---- errors ------------------------------------------------------------------------------ */

/* craft._errors.from_code, imported on first use: craft/__init__.py imports this module before
 * craft._errors is guaranteed to be loaded, and a failed import must not break module init. */
static PyObject *from_code_fn;
static PyObject *violation_cls;
static PyObject *logger;

static int load_errors(void)
{
    if (from_code_fn != NULL) {
        return 0;
    }
    PyObject *mod = PyImport_ImportModule("craft._errors");
    if (mod == NULL) {
        return -1;
    }
    from_code_fn = PyObject_GetAttrString(mod, "from_code");
    violation_cls = PyObject_GetAttrString(mod, "Violation");
    Py_DECREF(mod);
    if (from_code_fn == NULL || violation_cls == NULL) {
        Py_CLEAR(from_code_fn);
        Py_CLEAR(violation_cls);
        return -1;
    }
    return 0;
}

PyObject *craftpy_error_object(int rc, const char *detail, craft_id leader_id,
                               const char *leader_address)
{
    if (load_errors() != 0) {
        return NULL;
    }
    return PyObject_CallFunction(from_code_fn, "isKs", rc, detail != NULL ? detail : "",
                                 (unsigned long long)leader_id,
                                 leader_address != NULL ? leader_address : "");
}

PyObject *craftpy_raise(int rc, const char *detail, craft_id leader_id, const char *leader_address)
{
    PyObject *exc = craftpy_error_object(rc, detail, leader_id, leader_address);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

PyObject *craftpy_raise_violation(const char *message, uint64_t seed, PyObject *trace)
{
    if (load_errors() != 0) {
        return NULL;
    }
    PyObject *exc = PyObject_CallFunction(violation_cls, "sKO", message, (unsigned long long)seed,
                                          trace != NULL ? trace : Py_None);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

static PyObject *get_logger(void)
{
    if (logger == NULL) {
        PyObject *logging = PyImport_ImportModule("logging");
        if (logging == NULL) {
            return NULL;
        }
        logger = PyObject_CallMethod(logging, "getLogger", "s", "craft");
        Py_DECREF(logging);
    }
    return logger;
}

void craftpy_log(int level, const char *line)
{
    static const int levels[] = {10, 20, 30, 40}; /* logging.DEBUG .. ERROR */
    int pylevel = level >= 0 && level <= 3 ? levels[level] : 40;
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    PyObject *lg = get_logger();
    if (lg != NULL) {
        PyObject *r = PyObject_CallMethod(lg, "log", "iss", pylevel, "%s", line);
        Py_XDECREF(r);
    }
    PyErr_Clear();
    PyErr_Restore(exc_type, exc_value, exc_tb);
}

void craftpy_log_exc(int level, const char *line, PyObject *exc)
{
    static const int levels[] = {10, 20, 30, 40};
    int pylevel = level >= 0 && level <= 3 ? levels[level] : 40;
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    PyObject *lg = get_logger();
    if (lg != NULL) {
        PyObject *tb = PyException_GetTraceback(exc);
        PyObject *info = PyTuple_Pack(3, (PyObject *)Py_TYPE(exc), exc, tb != NULL ? tb : Py_None);
        Py_XDECREF(tb);
        PyObject *kw = info != NULL ? Py_BuildValue("{s:O}", "exc_info", info) : NULL;
        PyObject *meth = PyObject_GetAttrString(lg, "log");
        PyObject *args = Py_BuildValue("(iss)", pylevel, "%s", line);
        if (meth != NULL && args != NULL && kw != NULL) {
            PyObject *r = PyObject_Call(meth, args, kw);
            Py_XDECREF(r);
        }
        Py_XDECREF(meth);
        Py_XDECREF(args);
        Py_XDECREF(kw);
        Py_XDECREF(info);
    }
    PyErr_Clear();
    PyErr_Restore(exc_type, exc_value, exc_tb);
}

void craftpy_log_exception(const char *prefix)
{
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    if (exc_type == NULL) {
        return;
    }
    PyErr_NormalizeException(&exc_type, &exc_value, &exc_tb);
    if (exc_tb != NULL && exc_value != NULL) {
        PyException_SetTraceback(exc_value, exc_tb);
    }
    PyObject *lg = get_logger();
    if (lg != NULL) {
        PyObject *info = PyTuple_Pack(3, exc_type, exc_value ? exc_value : Py_None,
                                      exc_tb ? exc_tb : Py_None);
        PyObject *kw = info != NULL ? Py_BuildValue("{s:O}", "exc_info", info) : NULL;
        PyObject *meth = PyObject_GetAttrString(lg, "error");
        PyObject *args = Py_BuildValue("(ss)", "%s", prefix);
        if (meth != NULL && args != NULL && kw != NULL) {
            PyObject *r = PyObject_Call(meth, args, kw);
            Py_XDECREF(r);
        }
        Py_XDECREF(meth);
        Py_XDECREF(args);
        Py_XDECREF(kw);
        Py_XDECREF(info);
    }
    PyErr_Clear();
    Py_XDECREF(exc_type);
    Py_XDECREF(exc_value);
    Py_XDECREF(exc_tb);
}

/* ---- sessions ------------------------------------------------------------------------------ */

static PyObject *enc_result(int rc, void *buf, size_t size)
{
    if (rc != 0) {
        return craftpy_raise(rc, "encoding a session envelope", 0, NULL);
    }
    PyObject *b = PyBytes_FromStringAndSize(buf, (Py_ssize_t)size);
    craft_free(NULL, buf);
    return b;
}

static PyObject *py_session_register(PyObject *self, PyObject *noargs)
{
    void *buf = NULL;
    size_t size = 0;
    int rc = craft_session_encode_register(NULL, &buf, &size);
    return enc_result(rc, buf, size);
}

static PyObject *py_session_command(PyObject *self, PyObject *args)
{
    unsigned long long client, seq, ack;
    Py_buffer payload;
    if (!PyArg_ParseTuple(args, "KKKy*", &client, &seq, &ack, &payload)) {
        return NULL;
    }
    void *buf = NULL;
    size_t size = 0;
    int rc = craft_session_encode_command(NULL, client, seq, ack, payload.buf,
                                          (size_t)payload.len, &buf, &size);
    PyBuffer_Release(&payload);
    if (rc == CRAFT_EINVAL) {
        PyErr_SetString(PyExc_ValueError, "a session command needs client > 0, seq > 0, ack < seq");
        return NULL;
    }
    return enc_result(rc, buf, size);
}

static PyObject *py_session_unregister(PyObject *self, PyObject *args)
{
    unsigned long long client;
    if (!PyArg_ParseTuple(args, "K", &client)) {
        return NULL;
    }
    void *buf = NULL;
    size_t size = 0;
    int rc = craft_session_encode_unregister(NULL, client, &buf, &size);
    if (rc == CRAFT_EINVAL) {
        PyErr_SetString(PyExc_ValueError, "client must be > 0");
        return NULL;
    }
    return enc_result(rc, buf, size);
}

typedef struct {
    PyObject_HEAD
    struct craft_sessions *table;
} SessionsObject;

static int Sessions_init(SessionsObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"max_sessions", "expire_after", "max_cached_results", "strict", NULL};
    struct craft_sessions_options o;
    craft_sessions_options_init(&o);
    unsigned int max_sessions = o.max_sessions, max_cached = o.max_cached_results;
    unsigned long long expire_after = o.expire_after;
    int strict = o.strict;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|IKIp", kwlist, &max_sessions, &expire_after,
                                     &max_cached, &strict)) {
        return -1;
    }
    o.max_sessions = max_sessions;
    o.expire_after = expire_after;
    o.max_cached_results = max_cached;
    o.strict = strict;
    craft_sessions_free(self->table);
    self->table = NULL;
    int rc = craft_sessions_new(NULL, &o, &self->table);
    if (rc != 0) {
        craftpy_raise(rc, "session table options", 0, NULL);
        return -1;
    }
    return 0;
}

static void Sessions_dealloc(SessionsObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    craft_sessions_free(self->table);
    tp->tp_free(self);
    Py_DECREF(tp);
}

/* apply(index, term, type, data) -> (kind, client, seq, payload_or_result, error) */
static PyObject *Sessions_apply(SessionsObject *self, PyObject *args)
{
    unsigned long long index, term;
    int type;
    Py_buffer data;
    if (self->table == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Sessions not initialized");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "KKiy*", &index, &term, &type, &data)) {
        return NULL;
    }
    struct craft_entry e = {term, index, (uint8_t)type, data.buf, (size_t)data.len};
    struct craft_session_outcome o;
    int rc = craft_sessions_apply(self->table, &e, &o);
    PyObject *r = NULL;
    if (rc != 0) {
        craftpy_raise(rc, "session table apply", 0, NULL);
    } else {
        PyObject *bytes = Py_None;
        Py_INCREF(Py_None);
        if (o.kind == CRAFT_SESSION_APPLY || (o.kind == CRAFT_SESSION_NONE && o.payload != NULL)) {
            Py_DECREF(bytes);
            bytes = PyBytes_FromStringAndSize(o.payload, (Py_ssize_t)o.payload_len);
        } else if (o.kind == CRAFT_SESSION_DUPLICATE) {
            Py_DECREF(bytes);
            bytes = PyBytes_FromStringAndSize(o.result, (Py_ssize_t)o.result_len);
        }
        if (bytes != NULL) {
            r = Py_BuildValue("(iKKNi)", o.kind, (unsigned long long)o.client,
                              (unsigned long long)o.seq, bytes, o.error);
        }
    }
    PyBuffer_Release(&data);
    return r;
}

static PyObject *Sessions_record(SessionsObject *self, PyObject *args)
{
    unsigned long long client, seq;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "KKy*", &client, &seq, &data)) {
        return NULL;
    }
    int rc = craft_sessions_record(self->table, client, seq, data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    if (rc != 0) {
        return craftpy_raise(rc, "session table record", 0, NULL);
    }
    Py_RETURN_NONE;
}

static PyObject *Sessions_encode(SessionsObject *self, PyObject *noargs)
{
    void *buf = NULL;
    size_t size = 0;
    int rc = craft_sessions_encode(self->table, &buf, &size);
    if (rc != 0) {
        return craftpy_raise(rc, "session table encode", 0, NULL);
    }
    PyObject *b = PyBytes_FromStringAndSize(buf, (Py_ssize_t)size);
    craft_free(NULL, buf);
    return b;
}

static PyObject *Sessions_decode(SessionsObject *self, PyObject *args)
{
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*", &data)) {
        return NULL;
    }
    int rc = craft_sessions_decode(self->table, data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    if (rc != 0) {
        return craftpy_raise(rc, "the snapshot's session table", 0, NULL);
    }
    Py_RETURN_NONE;
}

static PyObject *Sessions_len(SessionsObject *self, PyObject *noargs)
{
    return PyLong_FromUnsignedLong(craft_sessions_count(self->table));
}

static PyMethodDef Sessions_methods[] = {
    {"apply", (PyCFunction)Sessions_apply, METH_VARARGS,
     "apply(index, term, type, data) -> (kind, client, seq, bytes_or_None, error)"},
    {"record", (PyCFunction)Sessions_record, METH_VARARGS, "record(client, seq, result)"},
    {"encode", (PyCFunction)Sessions_encode, METH_NOARGS, "encode() -> bytes"},
    {"decode", (PyCFunction)Sessions_decode, METH_VARARGS, "decode(bytes)"},
    {"count", (PyCFunction)Sessions_len, METH_NOARGS, "count() -> int"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot Sessions_slots[] = {
    {Py_tp_doc, "The replicated client-session table of craft/session.h (exactly-once)."},
    {Py_tp_init, Sessions_init},
    {Py_tp_dealloc, Sessions_dealloc},
    {Py_tp_methods, Sessions_methods},
    {Py_tp_new, PyType_GenericNew},
    {0, NULL},
};

static PyType_Spec Sessions_spec = {"craft._craft.Sessions", sizeof(SessionsObject), 0,
                                    Py_TPFLAGS_DEFAULT, Sessions_slots};

int craftpy_sessions_init(PyObject *m)
{
    PyObject *t = PyType_FromSpec(&Sessions_spec);
    if (t == NULL) {
        return -1;
    }
    if (PyModule_AddObject(m, "Sessions", t) != 0) {
        Py_DECREF(t);
        return -1;
    }
    return 0;
}

/* ---- misc ------------------------------------------------------------------------------------ */

static PyObject *py_strerror(PyObject *self, PyObject *args)
{
    int rc;
    if (!PyArg_ParseTuple(args, "i", &rc)) {
        return NULL;
    }
    return Py_BuildValue("(ss)", craft_err_name(rc), craft_strerror(rc));
}

static PyMethodDef module_methods[] = {
    {"session_register", py_session_register, METH_NOARGS, "The register envelope."},
    {"session_command", py_session_command, METH_VARARGS,
     "session_command(client, seq, ack, payload) -> bytes"},
    {"session_unregister", py_session_unregister, METH_VARARGS,
     "session_unregister(client) -> bytes"},
    {"strerror", py_strerror, METH_VARARGS, "strerror(code) -> (name, message)"},
    {"max_command", craftpy_max_command, METH_VARARGS,
     "max_command(max_frame=0) -> the largest command a cluster with that max_frame replicates"},
    {"after_fork_child", craftpy_after_fork_child, METH_NOARGS,
     "after_fork_child(): restarts libuv's thread pool in a forked child (see node.c)"},
    {NULL, NULL, 0, NULL},
};

static int module_exec(PyObject *m)
{
    if (PyModule_AddStringConstant(m, "VERSION", CRAFT_VERSION_STRING) != 0 ||
        craftpy_sessions_init(m) != 0 || craftpy_sim_init(m) != 0 || craftpy_node_init(m) != 0 ||
        craftpy_client_init(m) != 0) {
        return -1;
    }
#define ADD_INT(name, value)                                                                 \
    if (PyModule_AddIntConstant(m, name, value) != 0)                                          \
        return -1;
    ADD_INT("ENTRY_COMMAND", CRAFT_ENTRY_COMMAND);
    ADD_INT("ENTRY_BARRIER", CRAFT_ENTRY_BARRIER);
    ADD_INT("ENTRY_CONFIG", CRAFT_ENTRY_CONFIG);
    ADD_INT("SESSION_NONE", CRAFT_SESSION_NONE);
    ADD_INT("SESSION_REGISTERED", CRAFT_SESSION_REGISTERED);
    ADD_INT("SESSION_APPLY", CRAFT_SESSION_APPLY);
    ADD_INT("SESSION_DUPLICATE", CRAFT_SESSION_DUPLICATE);
    ADD_INT("SESSION_UNKNOWN", CRAFT_SESSION_UNKNOWN);
    ADD_INT("SESSION_STALE", CRAFT_SESSION_STALE);
    ADD_INT("SESSION_UNREGISTERED", CRAFT_SESSION_UNREGISTERED);
    ADD_INT("SESSION_MALFORMED", CRAFT_SESSION_MALFORMED);
#undef ADD_INT
    return 0;
}

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "craft._craft",
    "The C part of craft: the simulator, the runtime's nodes and the session table.", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__craft(void)
{
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL) {
        return NULL;
    }
    if (module_exec(m) != 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
