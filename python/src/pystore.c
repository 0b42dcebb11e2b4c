/* A struct craft_store (craft.h) whose functions call a Python object: a log store written in
 * Python (docs/python.md lists the methods; craft.MemoryLogStore is one).
 *
 * The runtime calls a store from its loop thread and its disk worker thread, never two calls
 * at once; each call here takes the GIL. LogCompacted and LogUnavailable raised by entries()
 * or term() are answers (CRAFT_ECOMPACTED, CRAFT_EUNAVAILABLE); any other exception is a
 * failed write or read: its traceback is logged and the call fails with CRAFT_EIO, which stops
 * the node (DESIGN.md: a store that lost a write cannot be trusted). */
#include "craftpy.h"

#include <string.h>

struct pystore {
    struct craft_store base;
    PyObject *obj;
    PyObject *compacted, *unavailable; /* craft.LogCompacted, craft.LogUnavailable */
};

/* Maps the current exception to a code; logs what is not an expected answer. */
static int fail(struct pystore *s, const char *method)
{
    int rc = CRAFT_EIO;
    if (s->compacted != NULL && PyErr_ExceptionMatches(s->compacted)) {
        PyErr_Clear();
        return CRAFT_ECOMPACTED;
    }
    if (s->unavailable != NULL && PyErr_ExceptionMatches(s->unavailable)) {
        PyErr_Clear();
        return CRAFT_EUNAVAILABLE;
    }
    if (PyErr_ExceptionMatches(PyExc_MemoryError)) {
        rc = CRAFT_ENOMEM;
    }
    char prefix[160];
    snprintf(prefix, sizeof prefix, "craft: the log store's %s() raised; the node stops", method);
    craftpy_log_exception(prefix);
    return rc;
}

#define ENTER(impl)                                                                          \
    struct pystore *s = (impl);                                                                \
    PyGILState_STATE g = PyGILState_Ensure();                                                  \
    int rc = 0;

#define LEAVE()                                                                                \
    PyGILState_Release(g);                                                                     \
    return rc;

/* Calls a method; on error sets rc and jumps to out. */
#define CALL(var, method, ...)                                                               \
    do {                                                                                       \
        var = PyObject_CallMethod(s->obj, method, __VA_ARGS__);                                \
        if (var == NULL) {                                                                     \
            rc = fail(s, method);                                                              \
            goto out;                                                                          \
        }                                                                                      \
    } while (0)

static int u64_of(PyObject *o, uint64_t *out)
{
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        return -1;
    }
    *out = v;
    return 0;
}

static int load_hard_state(void *impl, struct craft_hard_state *out)
{
    ENTER(impl);
    PyObject *r = NULL;
    memset(out, 0, sizeof *out);
    CALL(r, "load_hard_state", NULL);
    unsigned long long term, vote, commit;
    if (!PyArg_ParseTuple(r, "KKK;load_hard_state must return (term, vote, commit)", &term, &vote,
                          &commit)) {
        rc = fail(s, "load_hard_state");
        goto out;
    }
    out->term = term;
    out->vote = vote;
    out->commit = commit;
out:
    Py_XDECREF(r);
    LEAVE();
}

static int save_hard_state(void *impl, const struct craft_hard_state *hs)
{
    ENTER(impl);
    PyObject *r = NULL;
    CALL(r, "save_hard_state", "KKK", (unsigned long long)hs->term, (unsigned long long)hs->vote,
         (unsigned long long)hs->commit);
out:
    Py_XDECREF(r);
    LEAVE();
}

static int bounds(void *impl, craft_index *first, craft_index *last)
{
    ENTER(impl);
    PyObject *r = NULL;
    CALL(r, "bounds", NULL);
    unsigned long long f, l;
    if (!PyArg_ParseTuple(r, "KK;bounds must return (first, last)", &f, &l)) {
        rc = fail(s, "bounds");
        goto out;
    }
    *first = f;
    *last = l;
out:
    Py_XDECREF(r);
    LEAVE();
}

static PyObject *entry_tuple(const struct craft_entry *e)
{
    return Py_BuildValue("(KKiy#)", (unsigned long long)e->index, (unsigned long long)e->term,
                         (int)e->type, e->data != NULL ? (const char *)e->data : "",
                         (Py_ssize_t)e->size);
}

static int append(void *impl, const struct craft_entry *entries, size_t n)
{
    ENTER(impl);
    PyObject *r = NULL;
    PyObject *list = PyList_New((Py_ssize_t)n);
    if (list == NULL) {
        rc = fail(s, "append");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        PyObject *t = entry_tuple(&entries[i]);
        if (t == NULL) {
            rc = fail(s, "append");
            goto out;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, t);
    }
    CALL(r, "append", "(O)", list);
out:
    Py_XDECREF(list);
    Py_XDECREF(r);
    LEAVE();
}

static int truncate_(void *impl, craft_index from)
{
    ENTER(impl);
    PyObject *r = NULL;
    CALL(r, "truncate", "K", (unsigned long long)from);
out:
    Py_XDECREF(r);
    LEAVE();
}

static int compact(void *impl, craft_index upto)
{
    ENTER(impl);
    PyObject *r = NULL;
    CALL(r, "compact", "K", (unsigned long long)upto);
out:
    Py_XDECREF(r);
    LEAVE();
}

static int entries(void *impl, craft_index lo, craft_index hi, const struct craft_allocator *a,
                   struct craft_entry **out, size_t *n)
{
    ENTER(impl);
    PyObject *r = NULL, *fast = NULL;
    *out = NULL;
    *n = 0;
    CALL(r, "entries", "KK", (unsigned long long)lo, (unsigned long long)hi);
    fast = PySequence_Fast(r, "entries must return a list of (index, term, type, data)");
    if (fast == NULL) {
        rc = fail(s, "entries");
        goto out;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(fast);
    if (count == 0) {
        goto out;
    }
    size_t total = (size_t)count * sizeof(struct craft_entry);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *t = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 4 ||
            !PyBytes_Check(PyTuple_GET_ITEM(t, 3))) {
            PyErr_SetString(PyExc_TypeError,
                            "entries must return a list of (index, term, type, bytes) tuples");
            rc = fail(s, "entries");
            goto out;
        }
        total += (size_t)PyBytes_GET_SIZE(PyTuple_GET_ITEM(t, 3));
    }
    struct craft_entry *arr = craft_malloc(a, total);
    if (arr == NULL) {
        rc = CRAFT_ENOMEM;
        goto out;
    }
    char *p = (char *)(arr + count);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *t = PySequence_Fast_GET_ITEM(fast, i);
        uint64_t idx, term, type;
        if (u64_of(PyTuple_GET_ITEM(t, 0), &idx) != 0 || u64_of(PyTuple_GET_ITEM(t, 1), &term) ||
            u64_of(PyTuple_GET_ITEM(t, 2), &type) != 0) {
            craft_free(a, arr);
            rc = fail(s, "entries");
            goto out;
        }
        PyObject *b = PyTuple_GET_ITEM(t, 3);
        size_t len = (size_t)PyBytes_GET_SIZE(b);
        memcpy(p, PyBytes_AS_STRING(b), len);
        arr[i] = (struct craft_entry){term, idx, (uint8_t)type, p, len};
        p += len;
    }
    *out = arr;
    *n = (size_t)count;
out:
    Py_XDECREF(fast);
    Py_XDECREF(r);
    LEAVE();
}

static int term(void *impl, craft_index i, craft_term *out)
{
    ENTER(impl);
    PyObject *r = NULL;
    CALL(r, "term", "K", (unsigned long long)i);
    uint64_t t;
    if (u64_of(r, &t) != 0) {
        rc = fail(s, "term");
        goto out;
    }
    *out = t;
out:
    Py_XDECREF(r);
    LEAVE();
}

static PyObject *meta_tuple(const struct craft_snapshot_meta *m)
{
    void *conf = NULL;
    size_t size = 0;
    int rc = craft_configuration_encode(&m->conf, NULL, &conf, &size);
    if (rc != 0) {
        return PyErr_NoMemory();
    }
    PyObject *t = Py_BuildValue("(KKKKy#)", (unsigned long long)m->index,
                                (unsigned long long)m->term, (unsigned long long)m->conf_index,
                                (unsigned long long)m->size, (const char *)conf,
                                (Py_ssize_t)size);
    craft_free(NULL, conf);
    return t;
}

/* A writer or reader handed to the runtime: the Python object, referenced. */
static int snapshot_begin(void *impl, const struct craft_snapshot_meta *meta, void **writer)
{
    ENTER(impl);
    PyObject *r = NULL, *m = meta_tuple(meta);
    if (m == NULL) {
        rc = fail(s, "snapshot_begin");
        goto out;
    }
    CALL(r, "snapshot_begin", "(O)", m);
    *writer = r;
    r = NULL;
out:
    Py_XDECREF(m);
    Py_XDECREF(r);
    LEAVE();
}

static int snapshot_write(void *impl, void *writer, const void *buf, size_t len)
{
    ENTER(impl);
    PyObject *r = PyObject_CallMethod((PyObject *)writer, "write", "y#", (const char *)buf,
                                      (Py_ssize_t)len);
    if (r == NULL) {
        rc = fail(s, "snapshot writer's write");
    }
    Py_XDECREF(r);
    LEAVE();
}

static int snapshot_commit(void *impl, void *writer)
{
    ENTER(impl);
    PyObject *r = NULL;
    CALL(r, "snapshot_commit", "(O)", (PyObject *)writer);
out:
    Py_XDECREF(r);
    Py_DECREF((PyObject *)writer); /* consumed, whatever happened */
    LEAVE();
}

static void snapshot_abort(void *impl, void *writer)
{
    struct pystore *s = impl;
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *r = PyObject_CallMethod(s->obj, "snapshot_abort", "(O)", (PyObject *)writer);
    if (r == NULL) {
        craftpy_log_exception("craft: the log store's snapshot_abort() raised");
    }
    Py_XDECREF(r);
    Py_DECREF((PyObject *)writer);
    PyGILState_Release(g);
}

static int snapshot_meta(void *impl, const struct craft_allocator *a,
                         struct craft_snapshot_meta *out)
{
    ENTER(impl);
    PyObject *r = NULL;
    memset(out, 0, sizeof *out);
    CALL(r, "snapshot_meta", NULL);
    if (r == Py_None) {
        rc = CRAFT_ENOTFOUND;
        goto out;
    }
    unsigned long long index, t, conf_index, size;
    Py_buffer conf;
    if (!PyArg_ParseTuple(r, "KKKKy*;snapshot_meta must return None or (index, term, "
                             "conf_index, size, conf)", &index, &t, &conf_index, &size, &conf)) {
        rc = fail(s, "snapshot_meta");
        goto out;
    }
    rc = craft_configuration_decode(conf.buf, (size_t)conf.len, a, &out->conf);
    PyBuffer_Release(&conf);
    out->index = index;
    out->term = t;
    out->conf_index = conf_index;
    out->size = size;
out:
    Py_XDECREF(r);
    LEAVE();
}

static int snapshot_open(void *impl, void **reader)
{
    ENTER(impl);
    PyObject *r = NULL;
    CALL(r, "snapshot_open", NULL);
    if (r == Py_None) {
        rc = CRAFT_ENOTFOUND;
        goto out;
    }
    *reader = r;
    r = NULL;
out:
    Py_XDECREF(r);
    LEAVE();
}

static int snapshot_read(void *impl, void *reader, uint64_t offset, void *buf, size_t len,
                         size_t *n)
{
    ENTER(impl);
    *n = 0;
    PyObject *r = PyObject_CallMethod((PyObject *)reader, "read", "KK", (unsigned long long)offset,
                                      (unsigned long long)len);
    if (r == NULL) {
        rc = fail(s, "snapshot reader's read");
        goto out;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(r, &view, PyBUF_SIMPLE) != 0) {
        rc = fail(s, "snapshot reader's read");
        goto out;
    }
    size_t k = (size_t)view.len < len ? (size_t)view.len : len;
    memcpy(buf, view.buf, k);
    *n = k;
    PyBuffer_Release(&view);
out:
    Py_XDECREF(r);
    LEAVE();
}

static void snapshot_close(void *impl, void *reader)
{
    struct pystore *s = impl;
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *close = PyObject_GetAttrString((PyObject *)reader, "close");
    if (close != NULL) {
        PyObject *r = PyObject_CallNoArgs(close);
        if (r == NULL) {
            craftpy_log_exception("craft: a snapshot reader's close() raised");
        }
        Py_XDECREF(r);
        Py_DECREF(close);
    } else {
        PyErr_Clear();
    }
    Py_DECREF((PyObject *)reader);
    (void)s;
    PyGILState_Release(g);
}

static void close_(void *impl)
{
    struct pystore *s = impl;
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *close = PyObject_GetAttrString(s->obj, "close");
    if (close != NULL) {
        PyObject *r = PyObject_CallNoArgs(close);
        if (r == NULL) {
            craftpy_log_exception("craft: the log store's close() raised");
        }
        Py_XDECREF(r);
        Py_DECREF(close);
    } else {
        PyErr_Clear();
    }
    Py_DECREF(s->obj);
    Py_XDECREF(s->compacted);
    Py_XDECREF(s->unavailable);
    free(s);
    PyGILState_Release(g);
}

int craftpy_store_new(PyObject *obj, struct craft_store **out)
{
    static const char *required[] = {"load_hard_state", "save_hard_state", "bounds", "append",
                                     "truncate", "compact", "entries", "term", "snapshot_begin",
                                     "snapshot_commit", "snapshot_abort", "snapshot_meta",
                                     "snapshot_open", NULL};
    for (int i = 0; required[i] != NULL; i++) {
        if (!PyObject_HasAttrString(obj, required[i])) {
            PyErr_Format(PyExc_TypeError, "log_store has no method %s() (see docs/python.md)",
                         required[i]);
            return CRAFT_EINVAL;
        }
    }
    struct pystore *s = calloc(1, sizeof *s);
    if (s == NULL) {
        PyErr_NoMemory();
        return CRAFT_ENOMEM;
    }
    PyObject *mod = PyImport_ImportModule("craft._errors");
    if (mod != NULL) {
        s->compacted = PyObject_GetAttrString(mod, "LogCompacted");
        s->unavailable = PyObject_GetAttrString(mod, "LogUnavailable");
        Py_DECREF(mod);
    }
    if (s->compacted == NULL || s->unavailable == NULL) {
        Py_XDECREF(s->compacted);
        Py_XDECREF(s->unavailable);
        free(s);
        return CRAFT_EINVAL;
    }
    Py_INCREF(obj);
    s->obj = obj;
    s->base.version = CRAFT_STORE_VERSION;
    s->base.impl = s;
    s->base.load_hard_state = load_hard_state;
    s->base.save_hard_state = save_hard_state;
    s->base.bounds = bounds;
    s->base.append = append;
    s->base.truncate = truncate_;
    s->base.compact = compact;
    s->base.entries = entries;
    s->base.term = term;
    s->base.snapshot_begin = snapshot_begin;
    s->base.snapshot_write = snapshot_write;
    s->base.snapshot_commit = snapshot_commit;
    s->base.snapshot_abort = snapshot_abort;
    s->base.snapshot_meta = snapshot_meta;
    s->base.snapshot_open = snapshot_open;
    s->base.snapshot_read = snapshot_read;
    s->base.snapshot_close = snapshot_close;
    s->base.close = close_;
    *out = &s->base;
    return 0;
}
