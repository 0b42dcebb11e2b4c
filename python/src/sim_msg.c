/* Messages, entries and simulator events as Python dicts, and messages and entries back from
 * dicts (for craft.sim's message predicates, inject, and a Raft written in Python). The keys
 * are the field names of craft.h; docs/simulator.md lists them. */
#include "simpy.h"

#include <string.h>

void *craftpy_arena_alloc(struct craftpy_arena *a, size_t size)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 16;
        void **v = PyMem_Realloc(a->blocks, cap * sizeof(*v));
        if (v == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        a->blocks = v;
        a->cap = cap;
    }
    void *p = PyMem_Malloc(size ? size : 1);
    if (p == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    a->blocks[a->n++] = p;
    return p;
}

void craftpy_arena_reset(struct craftpy_arena *a)
{
    for (size_t k = 0; k < a->n; k++) {
        PyMem_Free(a->blocks[k]);
    }
    a->n = 0;
}

static const char *const entry_types[] = {NULL, "command", "barrier", "config"};

const char *craftpy_entry_type_name(int type)
{
    return type >= 1 && type <= 3 ? entry_types[type] : "unknown";
}

int craftpy_entry_type_from(PyObject *o)
{
    if (PyLong_Check(o)) {
        long t = PyLong_AsLong(o);
        if (t >= 1 && t <= 3) {
            return (int)t;
        }
    } else if (PyUnicode_Check(o)) {
        const char *s = PyUnicode_AsUTF8(o);
        for (int t = 1; s != NULL && t <= 3; t++) {
            if (strcmp(s, entry_types[t]) == 0) {
                return t;
            }
        }
    }
    if (!PyErr_Occurred()) {
        PyErr_Format(PyExc_ValueError,
                     "an entry type is \"command\", \"barrier\" or \"config\", not %R", o);
    }
    return -1;
}

int craftpy_msg_type_from(PyObject *o)
{
    if (PyLong_Check(o)) {
        long t = PyLong_AsLong(o);
        if (t >= 1 && t <= CRAFT_MSG_TYPE_MAX) {
            return (int)t;
        }
    } else if (PyUnicode_Check(o)) {
        const char *s = PyUnicode_AsUTF8(o);
        for (int t = 1; s != NULL && t <= CRAFT_MSG_TYPE_MAX; t++) {
            if (strcmp(s, craft_message_type_name(t)) == 0) {
                return t;
            }
        }
    }
    if (!PyErr_Occurred()) {
        PyErr_Format(PyExc_ValueError,
                     "unknown message type %R (RequestVote, RequestVoteResult, AppendEntries, "
                     "AppendEntriesResult, InstallSnapshot, InstallSnapshotResult, TimeoutNow)",
                     o);
    }
    return -1;
}

PyObject *craftpy_ids_of_mask(uint64_t mask)
{
    PyObject *l = PyList_New(0);
    for (unsigned k = 0; l != NULL && k < 64; k++) {
        if (mask & (1ull << k)) {
            PyObject *v = PyLong_FromUnsignedLong(k + 1);
            if (v == NULL || PyList_Append(l, v) != 0) {
                Py_XDECREF(v);
                Py_CLEAR(l);
                break;
            }
            Py_DECREF(v);
        }
    }
    return l;
}

PyObject *craftpy_entry_to_dict(const struct craft_entry *e)
{
    return Py_BuildValue("{s:K,s:K,s:s,s:y#}", "index", (unsigned long long)e->index, "term",
                         (unsigned long long)e->term, "type", craftpy_entry_type_name(e->type),
                         "data", e->data != NULL ? (const char *)e->data : "",
                         (Py_ssize_t)(e->data != NULL ? e->size : 0));
}

/* Sets d[key] = v and drops v's reference; -1 on error (v may be NULL: an error already set). */
static int put(PyObject *d, const char *key, PyObject *v)
{
    if (v == NULL) {
        return -1;
    }
    int rc = PyDict_SetItemString(d, key, v);
    Py_DECREF(v);
    return rc;
}

static int put_u64(PyObject *d, const char *key, uint64_t v)
{
    return put(d, key, PyLong_FromUnsignedLongLong(v));
}

static int put_bool(PyObject *d, const char *key, bool v)
{
    return put(d, key, PyBool_FromLong(v));
}

static uint64_t mask_of(const struct craft_configuration *c, int role)
{
    uint64_t m = 0;
    for (unsigned k = 0; c->servers != NULL && k < c->n; k++) {
        if (c->servers[k].role == role && c->servers[k].id >= 1 && c->servers[k].id <= 64) {
            m |= 1ull << (c->servers[k].id - 1);
        }
    }
    return m;
}

PyObject *craftpy_msg_to_dict(const struct craft_message *m)
{
    PyObject *d = PyDict_New();
    if (d == NULL) {
        return NULL;
    }
    int rc = put(d, "type", PyUnicode_FromString(craft_message_type_name(m->type)));
    rc = rc ? rc : put_u64(d, "from", m->from);
    rc = rc ? rc : put_u64(d, "to", m->to);
    rc = rc ? rc : put_u64(d, "term", m->term);
    switch (m->type) {
    case CRAFT_MSG_REQUEST_VOTE: {
        const struct craft_request_vote *r = &m->u.request_vote;
        rc = rc ? rc : put_u64(d, "last_log_index", r->last_log_index);
        rc = rc ? rc : put_u64(d, "last_log_term", r->last_log_term);
        rc = rc ? rc : put_bool(d, "pre_vote", r->pre_vote);
        rc = rc ? rc : put_bool(d, "transfer", r->transfer);
        break;
    }
    case CRAFT_MSG_REQUEST_VOTE_RESULT:
        rc = rc ? rc : put_bool(d, "granted", m->u.request_vote_result.granted);
        rc = rc ? rc : put_bool(d, "pre_vote", m->u.request_vote_result.pre_vote);
        break;
    case CRAFT_MSG_APPEND_ENTRIES: {
        const struct craft_append_entries *a = &m->u.append_entries;
        rc = rc ? rc : put_u64(d, "prev_index", a->prev_index);
        rc = rc ? rc : put_u64(d, "prev_term", a->prev_term);
        rc = rc ? rc : put_u64(d, "commit", a->commit);
        rc = rc ? rc : put_u64(d, "ctx", a->ctx);
        PyObject *l = rc ? NULL : PyList_New((Py_ssize_t)(a->entries ? a->n_entries : 0));
        for (size_t k = 0; l != NULL && a->entries != NULL && k < a->n_entries; k++) {
            PyObject *e = craftpy_entry_to_dict(&a->entries[k]);
            if (e == NULL) {
                Py_CLEAR(l);
                break;
            }
            PyList_SET_ITEM(l, (Py_ssize_t)k, e);
        }
        rc = rc ? rc : put(d, "entries", l);
        /* Events keep counts, not entries (their pointers would dangle). */
        rc = rc ? rc : put_u64(d, "n_entries", a->n_entries);
        break;
    }
    case CRAFT_MSG_APPEND_ENTRIES_RESULT: {
        const struct craft_append_entries_result *r = &m->u.append_entries_result;
        rc = rc ? rc : put_bool(d, "rejected", r->rejected);
        rc = rc ? rc : put_u64(d, "index", r->index);
        rc = rc ? rc : put_u64(d, "hint_index", r->hint_index);
        rc = rc ? rc : put_u64(d, "hint_term", r->hint_term);
        rc = rc ? rc : put_u64(d, "last_index", r->last_index);
        rc = rc ? rc : put_u64(d, "ctx", r->ctx);
        break;
    }
    case CRAFT_MSG_INSTALL_SNAPSHOT: {
        const struct craft_install_snapshot *s = &m->u.install_snapshot;
        rc = rc ? rc : put_u64(d, "snapshot_index", s->meta.index);
        rc = rc ? rc : put_u64(d, "snapshot_term", s->meta.term);
        rc = rc ? rc : put_u64(d, "snapshot_size", s->meta.size);
        rc = rc ? rc : put_u64(d, "conf_index", s->meta.conf_index);
        rc = rc ? rc : put(d, "voters", craftpy_ids_of_mask(mask_of(&s->meta.conf, CRAFT_VOTER)));
        rc = rc ? rc : put(d, "learners",
                           craftpy_ids_of_mask(mask_of(&s->meta.conf, CRAFT_LEARNER)));
        rc = rc ? rc : put_u64(d, "offset", s->offset);
        rc = rc ? rc : put_u64(d, "length", s->size);
        if (s->data != NULL) {
            rc = rc ? rc : put(d, "data", PyBytes_FromStringAndSize(s->data, (Py_ssize_t)s->size));
        } else {
            rc = rc ? rc : PyDict_SetItemString(d, "data", Py_None);
        }
        rc = rc ? rc : put_bool(d, "done", s->done);
        break;
    }
    case CRAFT_MSG_INSTALL_SNAPSHOT_RESULT: {
        const struct craft_install_snapshot_result *r = &m->u.install_snapshot_result;
        rc = rc ? rc : put_u64(d, "index", r->index);
        rc = rc ? rc : put_u64(d, "offset", r->offset);
        rc = rc ? rc : put_bool(d, "rejected", r->rejected);
        rc = rc ? rc : put_bool(d, "done", r->done);
        break;
    }
    default:
        break;
    }
    if (rc != 0) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

static const char *const event_kinds[] = {
    NULL,        "send",      "deliver", "drop", "persist", "role",       "commit",
    "propose",   "crash",     "restart", "partition", "cut", "heal",      "network",
    "note",      "violation", "membership", "transfer", "read",
};

static const char *const fates[] = {"ok",   "lost", "duplicate", "partitioned", "down",
                                    "unknown", "held", "rule", "injected"};

PyObject *craftpy_event_to_dict(const struct craft_sim_event *ev)
{
    PyObject *d = PyDict_New();
    if (d == NULL) {
        return NULL;
    }
    size_t nk = sizeof(event_kinds) / sizeof(event_kinds[0]);
    const char *kind = ev->kind < nk && event_kinds[ev->kind] ? event_kinds[ev->kind] : "?";
    char line[512];
    craft_sim_event_format(ev, line, sizeof(line));
    int rc = put_u64(d, "time", ev->time);
    rc = rc ? rc : put(d, "kind", PyUnicode_FromString(kind));
    rc = rc ? rc : put_u64(d, "node", ev->node);
    rc = rc ? rc : put(d, "line", PyUnicode_DecodeUTF8(line, (Py_ssize_t)strlen(line), "replace"));
    switch (ev->kind) {
    case CRAFT_SIM_EV_SEND:
    case CRAFT_SIM_EV_DELIVER:
    case CRAFT_SIM_EV_DROP:
        rc = rc ? rc : put_u64(d, "peer", ev->peer);
        rc = rc ? rc : put(d, "fate", PyUnicode_FromString(ev->fate < 9 ? fates[ev->fate] : "?"));
        rc = rc ? rc : put(d, "message", craftpy_msg_to_dict(&ev->msg));
        break;
    case CRAFT_SIM_EV_PERSIST:
    case CRAFT_SIM_EV_RESTART:
        rc = rc ? rc : put_u64(d, "seq", ev->seq);
        rc = rc ? rc : put_u64(d, "term", ev->term);
        rc = rc ? rc : put_u64(d, "vote", ev->leader);
        rc = rc ? rc : put_u64(d, "index", ev->index);
        break;
    case CRAFT_SIM_EV_ROLE:
        rc = rc ? rc : put(d, "role", PyUnicode_FromString(craft_role_name(ev->role)));
        rc = rc ? rc : put_u64(d, "term", ev->term);
        rc = rc ? rc : put_u64(d, "leader", ev->leader);
        break;
    case CRAFT_SIM_EV_COMMIT:
        rc = rc ? rc : put_u64(d, "index", ev->index);
        break;
    case CRAFT_SIM_EV_PROPOSE:
    case CRAFT_SIM_EV_MEMBERSHIP:
    case CRAFT_SIM_EV_TRANSFER:
    case CRAFT_SIM_EV_READ:
        rc = rc ? rc : put_u64(d, "peer", ev->peer);
        rc = rc ? rc : put_u64(d, "index", ev->index);
        rc = rc ? rc : put_u64(d, "term", ev->term);
        rc = rc ? rc : put_u64(d, "seq", ev->seq);
        rc = rc ? rc : put(d, "rc", PyUnicode_FromString(ev->rc ? craft_err_name(ev->rc) : ""));
        rc = rc ? rc : put(d, "text", PyUnicode_FromString(ev->text));
        break;
    case CRAFT_SIM_EV_CUT:
        rc = rc ? rc : put_u64(d, "peer", ev->peer);
        break;
    default:
        rc = rc ? rc : put(d, "text", PyUnicode_DecodeUTF8(ev->text, (Py_ssize_t)strlen(ev->text),
                                                           "replace"));
        break;
    }
    if (rc != 0) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

/* ---- from Python values ---------------------------------------------------------------------- */

int craftpy_get_u64(PyObject *d, const char *key, uint64_t *out)
{
    PyObject *v = PyDict_GetItemString(d, key); /* borrowed */
    if (v == NULL || v == Py_None) {
        return 0;
    }
    if (PyBool_Check(v)) {
        *out = v == Py_True;
        return 0;
    }
    unsigned long long x = PyLong_AsUnsignedLongLong(v);
    if (x == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Format(PyExc_ValueError, "%s must be a non-negative integer, not %R", key, v);
        return -1;
    }
    *out = x;
    return 0;
}

int craftpy_get_bool(PyObject *d, const char *key, bool *out)
{
    PyObject *v = PyDict_GetItemString(d, key);
    if (v == NULL || v == Py_None) {
        return 0;
    }
    int t = PyObject_IsTrue(v);
    if (t < 0) {
        return -1;
    }
    *out = t != 0;
    return 0;
}

/* Copies a bytes-like value into the arena. */
static int get_bytes(PyObject *v, const char *what, struct craftpy_arena *a, const void **data,
                     size_t *size)
{
    Py_buffer b;
    if (PyObject_GetBuffer(v, &b, PyBUF_SIMPLE) != 0) {
        PyErr_Format(PyExc_TypeError, "%s must be bytes, not %.80s", what, Py_TYPE(v)->tp_name);
        return -1;
    }
    void *p = craftpy_arena_alloc(a, (size_t)b.len);
    if (p != NULL && b.len > 0) {
        memcpy(p, b.buf, (size_t)b.len);
    }
    *data = p;
    *size = (size_t)b.len;
    PyBuffer_Release(&b);
    return p != NULL ? 0 : -1;
}

int craftpy_entry_from_dict(PyObject *d, struct craft_entry *e, struct craftpy_arena *a)
{
    memset(e, 0, sizeof(*e));
    if (!PyDict_Check(d)) {
        PyErr_Format(PyExc_TypeError, "an entry is a dict {index, term, type, data}, not %.80s",
                     Py_TYPE(d)->tp_name);
        return -1;
    }
    if (craftpy_get_u64(d, "index", &e->index) != 0 ||
        craftpy_get_u64(d, "term", &e->term) != 0) {
        return -1;
    }
    PyObject *t = PyDict_GetItemString(d, "type");
    int type = t == NULL ? CRAFT_ENTRY_COMMAND : craftpy_entry_type_from(t);
    if (type < 0) {
        return -1;
    }
    e->type = (uint8_t)type;
    PyObject *data = PyDict_GetItemString(d, "data");
    if (data != NULL && data != Py_None) {
        return get_bytes(data, "an entry's data", a, &e->data, &e->size);
    }
    return 0;
}

static int add_ids(PyObject *ids, int role, struct craft_server *servers, unsigned *n,
                   unsigned max)
{
    if (ids == NULL || ids == Py_None) {
        return 0;
    }
    PyObject *seq = PySequence_Fast(ids, "voters and learners are lists of server ids");
    if (seq == NULL) {
        return -1;
    }
    Py_ssize_t len = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t k = 0; k < len; k++) {
        unsigned long long id = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(seq, k));
        if (PyErr_Occurred() || id == 0 || *n >= max) {
            Py_DECREF(seq);
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_ValueError, "server ids are 1..64");
            }
            return -1;
        }
        struct craft_server *s = &servers[(*n)++];
        memset(s, 0, sizeof(*s));
        s->id = id;
        s->role = (uint8_t)role;
        snprintf(s->address, sizeof(s->address), "sim-%llu", id);
    }
    Py_DECREF(seq);
    return 0;
}

int craftpy_conf_from(PyObject *voters, PyObject *learners, struct craft_configuration *c,
                      struct craftpy_arena *a)
{
    c->n = 0;
    c->servers = craftpy_arena_alloc(a, CRAFT_SIM_MAX_NODES * sizeof(struct craft_server));
    if (c->servers == NULL) {
        return -1;
    }
    if (add_ids(voters, CRAFT_VOTER, c->servers, &c->n, CRAFT_SIM_MAX_NODES) != 0 ||
        add_ids(learners, CRAFT_LEARNER, c->servers, &c->n, CRAFT_SIM_MAX_NODES) != 0) {
        return -1;
    }
    return 0;
}

int craftpy_msg_from_dict(PyObject *d, struct craft_message *m, struct craftpy_arena *a)
{
    memset(m, 0, sizeof(*m));
    if (!PyDict_Check(d)) {
        PyErr_Format(PyExc_TypeError, "a message is a dict (docs/simulator.md), not %.80s",
                     Py_TYPE(d)->tp_name);
        return -1;
    }
    PyObject *t = PyDict_GetItemString(d, "type");
    if (t == NULL) {
        PyErr_SetString(PyExc_ValueError, "a message needs a type");
        return -1;
    }
    int type = craftpy_msg_type_from(t);
    if (type < 0) {
        return -1;
    }
    m->type = (uint8_t)type;
    if (craftpy_get_u64(d, "from", &m->from) != 0 || craftpy_get_u64(d, "to", &m->to) != 0 ||
        craftpy_get_u64(d, "term", &m->term) != 0) {
        return -1;
    }
    int rc = 0;
    switch (type) {
    case CRAFT_MSG_REQUEST_VOTE: {
        struct craft_request_vote *r = &m->u.request_vote;
        rc = craftpy_get_u64(d, "last_log_index", &r->last_log_index) ||
             craftpy_get_u64(d, "last_log_term", &r->last_log_term) ||
             craftpy_get_bool(d, "pre_vote", &r->pre_vote) ||
             craftpy_get_bool(d, "transfer", &r->transfer);
        break;
    }
    case CRAFT_MSG_REQUEST_VOTE_RESULT:
        rc = craftpy_get_bool(d, "granted", &m->u.request_vote_result.granted) ||
             craftpy_get_bool(d, "pre_vote", &m->u.request_vote_result.pre_vote);
        break;
    case CRAFT_MSG_APPEND_ENTRIES: {
        struct craft_append_entries *ae = &m->u.append_entries;
        rc = craftpy_get_u64(d, "prev_index", &ae->prev_index) ||
             craftpy_get_u64(d, "prev_term", &ae->prev_term) ||
             craftpy_get_u64(d, "commit", &ae->commit) || craftpy_get_u64(d, "ctx", &ae->ctx);
        PyObject *l = rc ? NULL : PyDict_GetItemString(d, "entries");
        if (l != NULL && l != Py_None) {
            PyObject *seq = PySequence_Fast(l, "entries must be a list of entry dicts");
            if (seq == NULL) {
                return -1;
            }
            Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
            struct craft_entry *v = craftpy_arena_alloc(a, (size_t)n * sizeof(*v));
            rc = v == NULL;
            for (Py_ssize_t k = 0; rc == 0 && k < n; k++) {
                rc = craftpy_entry_from_dict(PySequence_Fast_GET_ITEM(seq, k), &v[k], a) != 0;
            }
            Py_DECREF(seq);
            ae->entries = v;
            ae->n_entries = (size_t)n;
        }
        break;
    }
    case CRAFT_MSG_APPEND_ENTRIES_RESULT: {
        struct craft_append_entries_result *r = &m->u.append_entries_result;
        rc = craftpy_get_bool(d, "rejected", &r->rejected) ||
             craftpy_get_u64(d, "index", &r->index) ||
             craftpy_get_u64(d, "hint_index", &r->hint_index) ||
             craftpy_get_u64(d, "hint_term", &r->hint_term) ||
             craftpy_get_u64(d, "last_index", &r->last_index) ||
             craftpy_get_u64(d, "ctx", &r->ctx);
        break;
    }
    case CRAFT_MSG_INSTALL_SNAPSHOT: {
        struct craft_install_snapshot *s = &m->u.install_snapshot;
        uint64_t length = 0;
        rc = craftpy_get_u64(d, "snapshot_index", &s->meta.index) ||
             craftpy_get_u64(d, "snapshot_term", &s->meta.term) ||
             craftpy_get_u64(d, "snapshot_size", &s->meta.size) ||
             craftpy_get_u64(d, "conf_index", &s->meta.conf_index) ||
             craftpy_get_u64(d, "offset", &s->offset) || craftpy_get_u64(d, "length", &length) ||
             craftpy_get_bool(d, "done", &s->done);
        if (rc == 0) {
            rc = craftpy_conf_from(PyDict_GetItemString(d, "voters"),
                                   PyDict_GetItemString(d, "learners"), &s->meta.conf, a) != 0;
        }
        s->size = (size_t)length;
        PyObject *data = rc ? NULL : PyDict_GetItemString(d, "data");
        if (data != NULL && data != Py_None) {
            rc = get_bytes(data, "InstallSnapshot data", a, &s->data, &s->size) != 0;
        }
        break;
    }
    case CRAFT_MSG_INSTALL_SNAPSHOT_RESULT: {
        struct craft_install_snapshot_result *r = &m->u.install_snapshot_result;
        rc = craftpy_get_u64(d, "index", &r->index) || craftpy_get_u64(d, "offset", &r->offset) ||
             craftpy_get_bool(d, "rejected", &r->rejected) ||
             craftpy_get_bool(d, "done", &r->done);
        break;
    }
    default:
        break;
    }
    return rc ? -1 : 0;
}
