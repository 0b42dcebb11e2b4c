/* craft._craft.Sim: the deterministic simulator of craft/sim.h with Python callbacks.
 *
 * Everything runs on the calling thread with the GIL held (a simulator is a plain value and its
 * callbacks are Python). A callback that raises cannot return its exception through the C
 * simulator: the first one is kept in `pending` and raised when the running call returns. */
#include "craftpy.h"

#include "craft/sim.h"

typedef struct {
    PyObject_HEAD
    struct craft_sim *sim;
    PyObject *apply;    /* apply(node, index, term, type, data) */
    PyObject *snapshot; /* snapshot(node) -> bytes */
    PyObject *restore;  /* restore(node, data or None) */
    PyObject *trace;    /* trace(line) */
    PyObject *last_snapshot; /* keeps the bytes snapshot() returned alive (sim.h: borrowed) */
    PyObject *pending_type, *pending_value, *pending_tb;
    unsigned tick_ms;
} SimObject;

static void keep_error(SimObject *self)
{
    if (self->pending_type == NULL) {
        PyErr_Fetch(&self->pending_type, &self->pending_value, &self->pending_tb);
    } else {
        PyErr_Clear();
    }
}

void craftpy_sim_collect(void *ud, const char *line);

/* After a running call: raise a callback's exception, a violation, or rc's error. */
static PyObject *finish(SimObject *self, int rc)
{
    if (self->pending_type != NULL) {
        PyErr_Restore(self->pending_type, self->pending_value, self->pending_tb);
        self->pending_type = self->pending_value = self->pending_tb = NULL;
        return NULL;
    }
    if (rc == 0) {
        Py_RETURN_NONE;
    }
    if (rc == CRAFT_SIM_EVIOLATION || craft_sim_error(self->sim) != NULL) {
        PyObject *lines = PyList_New(0);
        if (lines != NULL) {
            craft_sim_dump_trace(self->sim, craftpy_sim_collect, lines);
        }
        const char *msg = craft_sim_error(self->sim);
        craftpy_raise_violation(msg != NULL ? msg : craft_strerror(rc), craft_sim_seed(self->sim),
                                lines);
        Py_XDECREF(lines);
        return NULL;
    }
    return craftpy_raise(rc, NULL, 0, NULL);
}

void craftpy_sim_collect(void *ud, const char *line);
void craftpy_sim_collect(void *ud, const char *line)
{
    PyObject *s = PyUnicode_DecodeUTF8(line, (Py_ssize_t)strlen(line), "replace");
    if (s != NULL) {
        PyList_Append((PyObject *)ud, s);
        Py_DECREF(s);
    } else {
        PyErr_Clear();
    }
}

/* ---- callbacks from the simulator ------------------------------------------------------------ */

static void cb_apply(void *ud, craft_id node, const struct craft_entry *e)
{
    SimObject *self = ud;
    if (self->apply == NULL || self->pending_type != NULL) {
        return;
    }
    PyObject *r = PyObject_CallFunction(self->apply, "KKKiy#", (unsigned long long)node,
                                        (unsigned long long)e->index, (unsigned long long)e->term,
                                        (int)e->type, (const char *)e->data,
                                        (Py_ssize_t)e->size);
    if (r == NULL) {
        keep_error(self);
    }
    Py_XDECREF(r);
}

static int cb_snapshot(void *ud, craft_id node, const void **data, size_t *size)
{
    SimObject *self = ud;
    *data = NULL;
    *size = 0;
    if (self->snapshot == NULL) {
        return 0;
    }
    PyObject *r = PyObject_CallFunction(self->snapshot, "K", (unsigned long long)node);
    if (r == NULL || !PyBytes_Check(r)) {
        if (r != NULL) {
            PyErr_SetString(PyExc_TypeError, "a state machine's snapshot must give bytes");
            Py_DECREF(r);
        }
        keep_error(self);
        return CRAFT_EINVAL;
    }
    Py_XSETREF(self->last_snapshot, r);
    *data = PyBytes_AS_STRING(r);
    *size = (size_t)PyBytes_GET_SIZE(r);
    return 0;
}

static int cb_restore(void *ud, craft_id node, const void *data, size_t size)
{
    SimObject *self = ud;
    if (self->restore == NULL) {
        return 0;
    }
    PyObject *r;
    if (data == NULL) {
        r = PyObject_CallFunction(self->restore, "KO", (unsigned long long)node, Py_None);
    } else {
        r = PyObject_CallFunction(self->restore, "Ky#", (unsigned long long)node,
                                  (const char *)data, (Py_ssize_t)size);
    }
    if (r == NULL) {
        keep_error(self);
        return CRAFT_EINVAL;
    }
    Py_DECREF(r);
    return 0;
}

static void cb_trace(void *ud, const char *line)
{
    SimObject *self = ud;
    if (self->trace == NULL || self->pending_type != NULL) {
        return;
    }
    PyObject *r = PyObject_CallFunction(self->trace, "s", line);
    if (r == NULL) {
        keep_error(self);
    }
    Py_XDECREF(r);
}

/* ---- the type -------------------------------------------------------------------------------- */

static int get_opt_double(PyObject *kw, const char *name, double *out)
{
    PyObject *v = kw != NULL ? PyDict_GetItemString(kw, name) : NULL;
    if (v == NULL || v == Py_None) {
        return 0;
    }
    double d = PyFloat_AsDouble(v);
    if (d == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    *out = d;
    return 0;
}

static int get_opt_u64(PyObject *kw, const char *name, uint64_t *out)
{
    PyObject *v = kw != NULL ? PyDict_GetItemString(kw, name) : NULL;
    if (v == NULL || v == Py_None) {
        return 0;
    }
    if (PyBool_Check(v)) {
        *out = v == Py_True;
        return 0;
    }
    unsigned long long x = PyLong_AsUnsignedLongLong(v);
    if (x == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Format(PyExc_ValueError, "option %s must be a non-negative integer", name);
        return -1;
    }
    *out = x;
    return 0;
}

#define OPT_U(name, field)                                                                   \
    do {                                                                                       \
        uint64_t v_ = (field);                                                                 \
        if (get_opt_u64(kw, name, &v_) != 0)                                                   \
            return -1;                                                                         \
        (field) = v_;                                                                          \
    } while (0)

static const char *const known_options[] = {
    "n_nodes", "seed", "election_ticks", "heartbeat_ticks", "pre_vote", "check_quorum",
    "max_batch_entries", "max_batch_bytes", "max_inflight", "snapshot_entries", "snapshot_bytes",
    "snapshot_trailing", "snapshot_chunk_bytes", "promote_distance", "promote_rounds",
    "lease_reads", "lease_drift_ticks", "tick_ms", "tick_jitter_ms", "min_delay_ms",
    "max_delay_ms", "drop_rate", "dup_rate", "disk_min_ms", "disk_max_ms", "bootstrap",
    "trace_depth", "n_voters", "apply", "snapshot", "restore", "trace", NULL,
};

static int Sim_init(SimObject *self, PyObject *args, PyObject *kw)
{
    if (self->sim != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Sim.__init__ called twice");
        return -1;
    }
    if (PyTuple_GET_SIZE(args) != 0) {
        PyErr_SetString(PyExc_TypeError, "Sim takes keyword arguments only");
        return -1;
    }
    if (kw != NULL) {
        PyObject *key;
        Py_ssize_t pos = 0;
        while (PyDict_Next(kw, &pos, &key, NULL)) {
            const char *k = PyUnicode_AsUTF8(key);
            if (k == NULL) {
                return -1;
            }
            int found = 0;
            for (int i = 0; known_options[i] != NULL; i++) {
                if (strcmp(known_options[i], k) == 0) {
                    found = 1;
                }
            }
            if (!found) {
                PyErr_Format(PyExc_TypeError, "unknown simulator option %R", key);
                return -1;
            }
        }
    }
    struct craft_sim_options o;
    craft_sim_options_init(&o);
    OPT_U("n_nodes", o.n_nodes);
    OPT_U("seed", o.seed);
    OPT_U("election_ticks", o.node.election_ticks);
    OPT_U("heartbeat_ticks", o.node.heartbeat_ticks);
    OPT_U("pre_vote", o.node.pre_vote);
    OPT_U("check_quorum", o.node.check_quorum);
    OPT_U("max_batch_entries", o.node.max_batch_entries);
    OPT_U("max_batch_bytes", o.node.max_batch_bytes);
    OPT_U("max_inflight", o.node.max_inflight);
    OPT_U("snapshot_entries", o.node.snapshot_entries);
    OPT_U("snapshot_bytes", o.node.snapshot_bytes);
    OPT_U("snapshot_trailing", o.node.snapshot_trailing);
    OPT_U("snapshot_chunk_bytes", o.node.snapshot_chunk_bytes);
    OPT_U("promote_distance", o.node.promote_distance);
    OPT_U("promote_rounds", o.node.promote_rounds);
    OPT_U("lease_reads", o.node.lease_reads);
    OPT_U("lease_drift_ticks", o.node.lease_drift_ticks);
    OPT_U("tick_ms", o.tick_ms);
    OPT_U("tick_jitter_ms", o.tick_jitter_ms);
    OPT_U("min_delay_ms", o.min_delay_ms);
    OPT_U("max_delay_ms", o.max_delay_ms);
    OPT_U("disk_min_ms", o.disk_min_ms);
    OPT_U("disk_max_ms", o.disk_max_ms);
    OPT_U("bootstrap", o.bootstrap);
    OPT_U("trace_depth", o.trace_depth);
    OPT_U("n_voters", o.n_voters);
    if (get_opt_double(kw, "drop_rate", &o.drop_rate) != 0 ||
        get_opt_double(kw, "dup_rate", &o.dup_rate) != 0) {
        return -1;
    }
    const char *cbs[] = {"apply", "snapshot", "restore", "trace"};
    PyObject **slots[] = {&self->apply, &self->snapshot, &self->restore, &self->trace};
    for (int i = 0; i < 4; i++) {
        PyObject *v = kw != NULL ? PyDict_GetItemString(kw, cbs[i]) : NULL;
        if (v != NULL && v != Py_None) {
            if (!PyCallable_Check(v)) {
                PyErr_Format(PyExc_TypeError, "%s must be callable", cbs[i]);
                return -1;
            }
            Py_INCREF(v);
            Py_XSETREF(*slots[i], v);
        }
    }
    o.apply = cb_apply;
    o.snapshot = self->snapshot != NULL ? cb_snapshot : NULL;
    o.restore = self->restore != NULL ? cb_restore : NULL;
    o.trace = self->trace != NULL ? cb_trace : NULL;
    o.ud = self;
    self->tick_ms = o.tick_ms;
    int rc = craft_sim_new(&o, &self->sim);
    if (rc != 0) {
        self->sim = NULL;
        if (self->pending_type != NULL) {
            finish(self, rc);
        } else {
            craftpy_raise(rc, "bad simulator options (n_nodes 1..64, rates in [0, 1], "
                              "min delays <= max delays, heartbeat_ticks < election_ticks)",
                          0, NULL);
        }
        return -1;
    }
    return 0;
}

static int Sim_traverse(SimObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->apply);
    Py_VISIT(self->snapshot);
    Py_VISIT(self->restore);
    Py_VISIT(self->trace);
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static int Sim_clear(SimObject *self)
{
    Py_CLEAR(self->apply);
    Py_CLEAR(self->snapshot);
    Py_CLEAR(self->restore);
    Py_CLEAR(self->trace);
    return 0;
}

static void Sim_dealloc(SimObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    craft_sim_free(self->sim);
    self->sim = NULL;
    Sim_clear(self);
    Py_CLEAR(self->last_snapshot);
    Py_CLEAR(self->pending_type);
    Py_CLEAR(self->pending_value);
    Py_CLEAR(self->pending_tb);
    tp->tp_free(self);
    Py_DECREF(tp);
}

#define CHECK(self)                                                                          \
    if ((self)->sim == NULL) {                                                                 \
        PyErr_SetString(PyExc_RuntimeError, "the simulator was not created");                  \
        return NULL;                                                                           \
    }

static PyObject *Sim_step(SimObject *self, PyObject *noargs)
{
    CHECK(self);
    int rc = craft_sim_step(self->sim);
    if (rc == CRAFT_ENOTFOUND && self->pending_type == NULL) {
        Py_RETURN_FALSE;
    }
    PyObject *r = finish(self, rc);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    Py_RETURN_TRUE;
}

static PyObject *Sim_run_for(SimObject *self, PyObject *args)
{
    unsigned long long ms;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "K", &ms)) {
        return NULL;
    }
    return finish(self, craft_sim_run_for(self->sim, ms));
}

struct pred_ctx {
    SimObject *self;
    PyObject *pred;
};

static bool pred_cb(struct craft_sim *s, void *ud)
{
    struct pred_ctx *c = ud;
    if (c->self->pending_type != NULL) {
        return true;
    }
    PyObject *r = PyObject_CallNoArgs(c->pred);
    if (r == NULL) {
        keep_error(c->self);
        return true;
    }
    int t = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (t < 0) {
        keep_error(c->self);
        return true;
    }
    return t != 0;
}

/* run_until(pred, max_ms) -> bool: True when pred became true, False when time ran out. */
static PyObject *Sim_run_until(SimObject *self, PyObject *args)
{
    PyObject *pred;
    unsigned long long ms;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "OK", &pred, &ms)) {
        return NULL;
    }
    struct pred_ctx c = {self, pred};
    int rc = craft_sim_run_until(self->sim, pred_cb, &c, ms);
    if (rc == CRAFT_ETIMEDOUT && self->pending_type == NULL) {
        Py_RETURN_FALSE;
    }
    PyObject *r = finish(self, rc);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    Py_RETURN_TRUE;
}

static PyObject *Sim_propose(SimObject *self, PyObject *args)
{
    Py_buffer data;
    unsigned long long node = 0;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "y*|K", &data, &node)) {
        return NULL;
    }
    craft_index index = 0;
    craft_term term = 0;
    int rc = craft_sim_propose(self->sim, node, data.buf, (size_t)data.len, &index, &term);
    PyBuffer_Release(&data);
    if (rc == CRAFT_ENOTLEADER || rc == CRAFT_EBUSY || rc == CRAFT_ESTATE) {
        /* Not an exception in a lab: the caller checks. (0, 0, code) */
        return Py_BuildValue("(KKi)", 0ULL, 0ULL, rc);
    }
    PyObject *r = finish(self, rc);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    return Py_BuildValue("(KKi)", (unsigned long long)index, (unsigned long long)term, 0);
}

static PyObject *id_call(SimObject *self, PyObject *args, int (*fn)(struct craft_sim *, craft_id),
                         const char *what)
{
    unsigned long long id;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "K", &id)) {
        return NULL;
    }
    int rc = fn(self->sim, id);
    if (rc == CRAFT_EINVAL) {
        PyErr_Format(PyExc_ValueError, "no server %llu in this simulation (ids are 1..%u)", id,
                     craft_sim_n_nodes(self->sim));
        return NULL;
    }
    if (rc == CRAFT_ESTATE) {
        PyErr_Format(PyExc_ValueError, "server %llu is already %s", id, what);
        return NULL;
    }
    return finish(self, rc);
}

static PyObject *Sim_crash(SimObject *self, PyObject *args)
{
    return id_call(self, args, craft_sim_crash, "down");
}

static PyObject *Sim_restart(SimObject *self, PyObject *args)
{
    return id_call(self, args, craft_sim_restart, "up");
}

static PyObject *Sim_partition(SimObject *self, PyObject *args)
{
    PyObject *seq;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "O", &seq)) {
        return NULL;
    }
    unsigned n = craft_sim_n_nodes(self->sim);
    unsigned groups[CRAFT_SIM_MAX_NODES];
    PyObject *fast = PySequence_Fast(seq, "partition needs a sequence of group numbers");
    if (fast == NULL) {
        return NULL;
    }
    if ((unsigned)PySequence_Fast_GET_SIZE(fast) != n) {
        Py_DECREF(fast);
        PyErr_Format(PyExc_ValueError, "partition needs one group number per node (%u)", n);
        return NULL;
    }
    for (unsigned i = 0; i < n; i++) {
        unsigned long g = PyLong_AsUnsignedLong(PySequence_Fast_GET_ITEM(fast, i));
        if (g == (unsigned long)-1 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return NULL;
        }
        groups[i] = (unsigned)g;
    }
    Py_DECREF(fast);
    return finish(self, craft_sim_partition(self->sim, groups));
}

static PyObject *Sim_cut(SimObject *self, PyObject *args)
{
    unsigned long long a, b;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "KK", &a, &b)) {
        return NULL;
    }
    int rc = craft_sim_cut(self->sim, a, b);
    if (rc == CRAFT_EINVAL) {
        PyErr_SetString(PyExc_ValueError, "cut needs two different server ids of this simulation");
        return NULL;
    }
    return finish(self, rc);
}

static PyObject *Sim_heal(SimObject *self, PyObject *noargs)
{
    CHECK(self);
    return finish(self, craft_sim_heal(self->sim));
}

static PyObject *Sim_set_network(SimObject *self, PyObject *args)
{
    double drop, dup;
    unsigned lo, hi;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "ddII", &drop, &dup, &lo, &hi)) {
        return NULL;
    }
    int rc = craft_sim_set_network(self->sim, drop, dup, lo, hi);
    if (rc == CRAFT_EINVAL) {
        PyErr_SetString(PyExc_ValueError,
                        "network: drop and duplicate are probabilities in [0, 1]; delay lo <= hi");
        return NULL;
    }
    return finish(self, rc);
}

static PyObject *Sim_set_disk(SimObject *self, PyObject *args)
{
    unsigned lo, hi;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "II", &lo, &hi)) {
        return NULL;
    }
    int rc = craft_sim_set_disk(self->sim, lo, hi);
    if (rc == CRAFT_EINVAL) {
        PyErr_SetString(PyExc_ValueError, "disk latency: lo <= hi");
        return NULL;
    }
    return finish(self, rc);
}

static PyObject *Sim_note(SimObject *self, PyObject *args)
{
    const char *text;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "s", &text)) {
        return NULL;
    }
    craft_sim_note(self->sim, text);
    Py_RETURN_NONE;
}

static PyObject *Sim_leader(SimObject *self, PyObject *noargs)
{
    CHECK(self);
    return PyLong_FromUnsignedLongLong(craft_sim_leader(self->sim));
}

static PyObject *Sim_is_up(SimObject *self, PyObject *args)
{
    unsigned long long id;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "K", &id)) {
        return NULL;
    }
    return PyBool_FromLong(craft_sim_is_up(self->sim, id));
}

static PyObject *Sim_status(SimObject *self, PyObject *args)
{
    unsigned long long id;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "K", &id)) {
        return NULL;
    }
    const struct craft_node *n = craft_sim_node(self->sim, id);
    if (n == NULL) {
        return Py_BuildValue("{s:K,s:O,s:K}", "id", id, "up", Py_False, "applied",
                             (unsigned long long)craft_sim_applied_index(self->sim, id));
    }
    int role = craft_node_role(n);
    return Py_BuildValue(
        "{s:K,s:O,s:s,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K}", "id", id, "up", Py_True, "role",
        craft_role_name(role), "term", (unsigned long long)craft_node_term(n), "vote",
        (unsigned long long)craft_node_vote(n), "leader", (unsigned long long)craft_node_leader(n),
        "commit", (unsigned long long)craft_node_commit(n), "applied",
        (unsigned long long)craft_sim_applied_index(self->sim, id), "first_index",
        (unsigned long long)craft_node_first_index(n), "last_index",
        (unsigned long long)craft_node_last_index(n), "transfer_target",
        (unsigned long long)craft_node_transfer_target(n));
}

static PyObject *Sim_log(SimObject *self, PyObject *args)
{
    unsigned long long id;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "K", &id)) {
        return NULL;
    }
    const struct craft_node *n = craft_sim_node(self->sim, id);
    PyObject *list = PyList_New(0);
    if (n == NULL || list == NULL) {
        return list;
    }
    craft_index first = craft_node_first_index(n), last = craft_node_last_index(n);
    for (craft_index i = first; i <= last && i != 0; i++) {
        const struct craft_entry *e = craft_node_entry(n, i);
        if (e == NULL) {
            continue;
        }
        PyObject *t = Py_BuildValue("(KKiy#)", (unsigned long long)e->index,
                                    (unsigned long long)e->term, (int)e->type,
                                    (const char *)e->data, (Py_ssize_t)e->size);
        if (t == NULL || PyList_Append(list, t) != 0) {
            Py_XDECREF(t);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(t);
    }
    return list;
}

static PyObject *Sim_applied(SimObject *self, PyObject *args)
{
    unsigned long long id;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "K", &id)) {
        return NULL;
    }
    const struct craft_sim_applied *a = NULL;
    size_t n = 0;
    int rc = craft_sim_applied(self->sim, id, &a, &n);
    if (rc != 0) {
        return finish(self, rc);
    }
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list != NULL && i < n; i++) {
        PyObject *t = Py_BuildValue("(KKiK)", (unsigned long long)a[i].index,
                                    (unsigned long long)a[i].term, (int)a[i].type,
                                    (unsigned long long)a[i].hash);
        if (t == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, t);
    }
    return list;
}

static PyObject *Sim_stats(SimObject *self, PyObject *noargs)
{
    CHECK(self);
    struct craft_sim_stats st;
    craft_sim_stats(self->sim, &st);
    PyObject *by_type = PyDict_New();
    for (int t = 1; by_type != NULL && t <= CRAFT_MSG_TYPE_MAX; t++) {
        PyObject *d = Py_BuildValue("{s:K,s:K,s:K,s:K,s:K}", "sent", (unsigned long long)st.sent[t],
                                    "bytes", (unsigned long long)st.bytes[t], "delivered",
                                    (unsigned long long)st.delivered[t], "dropped",
                                    (unsigned long long)st.dropped[t], "duplicated",
                                    (unsigned long long)st.duplicated[t]);
        if (d == NULL || PyDict_SetItemString(by_type, craft_message_type_name(t), d) != 0) {
            Py_XDECREF(d);
            Py_CLEAR(by_type);
            break;
        }
        Py_DECREF(d);
    }
    if (by_type == NULL) {
        return NULL;
    }
    return Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:N}", "events", (unsigned long long)st.events,
                         "ticks", (unsigned long long)st.ticks, "disk_writes",
                         (unsigned long long)st.disk_writes, "crashes",
                         (unsigned long long)st.crashes, "restarts",
                         (unsigned long long)st.restarts, "messages", by_type);
}

static PyObject *Sim_check(SimObject *self, PyObject *noargs)
{
    CHECK(self);
    return finish(self, craft_sim_check(self->sim));
}

static PyObject *Sim_trace_lines(SimObject *self, PyObject *noargs)
{
    CHECK(self);
    PyObject *lines = PyList_New(0);
    if (lines != NULL) {
        craft_sim_dump_trace(self->sim, craftpy_sim_collect, lines);
    }
    return lines;
}

static PyObject *Sim_error(SimObject *self, PyObject *noargs)
{
    CHECK(self);
    const char *e = craft_sim_error(self->sim);
    if (e == NULL) {
        Py_RETURN_NONE;
    }
    return PyUnicode_FromString(e);
}

static PyObject *Sim_now(SimObject *self, PyObject *noargs)
{
    CHECK(self);
    return PyLong_FromUnsignedLongLong(craft_sim_now(self->sim));
}

static PyObject *Sim_seed(SimObject *self, PyObject *noargs)
{
    CHECK(self);
    return PyLong_FromUnsignedLongLong(craft_sim_seed(self->sim));
}

static PyObject *Sim_n_nodes(SimObject *self, PyObject *noargs)
{
    CHECK(self);
    return PyLong_FromUnsignedLong(craft_sim_n_nodes(self->sim));
}

static PyObject *Sim_committed(SimObject *self, PyObject *noargs)
{
    CHECK(self);
    return PyLong_FromUnsignedLongLong(craft_sim_committed(self->sim));
}

static PyObject *Sim_hash(PyObject *cls, PyObject *args)
{
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*", &data)) {
        return NULL;
    }
    uint64_t h = craft_sim_hash(data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLongLong(h);
}

/* Membership, transfer and reads return the core's code: normal outcomes in a faulty cluster,
 * so they come back as values, not exceptions (a lab inspects them). */
static PyObject *rc_index(SimObject *self, int rc, craft_index index)
{
    if (rc == CRAFT_EINVAL) {
        PyErr_Format(PyExc_ValueError, "no such server in this simulation (ids are 1..%u)",
                     craft_sim_n_nodes(self->sim));
        return NULL;
    }
    if (rc == CRAFT_SIM_EVIOLATION || self->pending_type != NULL) {
        return finish(self, rc == 0 ? CRAFT_SIM_EVIOLATION : rc);
    }
    return Py_BuildValue("(iK)", rc, (unsigned long long)index);
}

static PyObject *Sim_add_server(SimObject *self, PyObject *args)
{
    unsigned long long id;
    int auto_promote = 0;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "K|p", &id, &auto_promote)) {
        return NULL;
    }
    craft_index index = 0;
    int rc = craft_sim_add_server(self->sim, id, auto_promote, &index);
    return rc_index(self, rc, index);
}

static PyObject *Sim_promote(SimObject *self, PyObject *args)
{
    unsigned long long id;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "K", &id)) {
        return NULL;
    }
    craft_index index = 0;
    int rc = craft_sim_promote(self->sim, id, &index);
    return rc_index(self, rc, index);
}

static PyObject *Sim_remove_server(SimObject *self, PyObject *args)
{
    unsigned long long id;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "K", &id)) {
        return NULL;
    }
    craft_index index = 0;
    int rc = craft_sim_remove_server(self->sim, id, &index);
    return rc_index(self, rc, index);
}

static PyObject *Sim_transfer(SimObject *self, PyObject *args)
{
    unsigned long long id = 0;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "|K", &id)) {
        return NULL;
    }
    int rc = craft_sim_transfer(self->sim, id);
    if (rc == CRAFT_SIM_EVIOLATION) {
        return finish(self, rc);
    }
    return PyLong_FromLong(rc);
}

static PyObject *Sim_read(SimObject *self, PyObject *args)
{
    unsigned long long node, id;
    int lease = 0;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "KK|p", &node, &id, &lease)) {
        return NULL;
    }
    int rc = craft_sim_read_mode(self->sim, node, id, lease ? CRAFT_READ_LEASE : CRAFT_READ_INDEX);
    if (rc == CRAFT_SIM_EVIOLATION) {
        return finish(self, rc);
    }
    return PyLong_FromLong(rc);
}

static PyObject *Sim_read_result(SimObject *self, PyObject *args)
{
    unsigned long long id;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "K", &id)) {
        return NULL;
    }
    struct craft_sim_read r;
    if (craft_sim_read_result(self->sim, id, &r) != 0) {
        Py_RETURN_NONE;
    }
    static const char *states[] = {"?", "pending", "ready", "served", "failed"};
    return Py_BuildValue("{s:K,s:K,s:s,s:s,s:i,s:K,s:K,s:K,s:K,s:K}", "id",
                         (unsigned long long)r.id, "node", (unsigned long long)r.node, "mode",
                         r.mode == CRAFT_READ_LEASE ? "lease" : "linearizable", "state",
                         r.state <= 4 ? states[r.state] : "?", "status", r.status, "index",
                         (unsigned long long)r.index, "committed",
                         (unsigned long long)r.committed, "applied", (unsigned long long)r.applied,
                         "requested_at", (unsigned long long)r.requested_at, "completed_at",
                         (unsigned long long)r.completed_at);
}

static PyMethodDef Sim_methods[] = {
    {"add_server", (PyCFunction)Sim_add_server, METH_VARARGS,
     "add_server(id, auto_promote=False) -> (rc, index)"},
    {"promote", (PyCFunction)Sim_promote, METH_VARARGS, "promote(id) -> (rc, index)"},
    {"remove_server", (PyCFunction)Sim_remove_server, METH_VARARGS,
     "remove_server(id) -> (rc, index)"},
    {"transfer", (PyCFunction)Sim_transfer, METH_VARARGS, "transfer(target=0) -> rc"},
    {"read", (PyCFunction)Sim_read, METH_VARARGS, "read(node, id, lease=False) -> rc"},
    {"read_result", (PyCFunction)Sim_read_result, METH_VARARGS, "read_result(id) -> dict|None"},
    {"step", (PyCFunction)Sim_step, METH_NOARGS, "Runs one event; False when none is pending."},
    {"run_for", (PyCFunction)Sim_run_for, METH_VARARGS, "run_for(ms)"},
    {"run_until", (PyCFunction)Sim_run_until, METH_VARARGS, "run_until(pred, max_ms) -> bool"},
    {"propose", (PyCFunction)Sim_propose, METH_VARARGS,
     "propose(data, node=0) -> (index, term, rc)"},
    {"crash", (PyCFunction)Sim_crash, METH_VARARGS, "crash(id)"},
    {"restart", (PyCFunction)Sim_restart, METH_VARARGS, "restart(id)"},
    {"partition", (PyCFunction)Sim_partition, METH_VARARGS, "partition(group_of_each_node)"},
    {"cut", (PyCFunction)Sim_cut, METH_VARARGS, "cut(from, to)"},
    {"heal", (PyCFunction)Sim_heal, METH_NOARGS, "heal()"},
    {"set_network", (PyCFunction)Sim_set_network, METH_VARARGS,
     "set_network(drop, dup, min_delay_ms, max_delay_ms)"},
    {"set_disk", (PyCFunction)Sim_set_disk, METH_VARARGS, "set_disk(min_ms, max_ms)"},
    {"note", (PyCFunction)Sim_note, METH_VARARGS, "note(text)"},
    {"leader", (PyCFunction)Sim_leader, METH_NOARGS, "leader() -> id or 0"},
    {"is_up", (PyCFunction)Sim_is_up, METH_VARARGS, "is_up(id) -> bool"},
    {"status", (PyCFunction)Sim_status, METH_VARARGS, "status(id) -> dict"},
    {"log", (PyCFunction)Sim_log, METH_VARARGS, "log(id) -> [(index, term, type, data)]"},
    {"applied", (PyCFunction)Sim_applied, METH_VARARGS,
     "applied(id) -> [(index, term, type, hash)]"},
    {"stats", (PyCFunction)Sim_stats, METH_NOARGS, "stats() -> dict"},
    {"check", (PyCFunction)Sim_check, METH_NOARGS, "check(): every invariant over every node"},
    {"trace_lines", (PyCFunction)Sim_trace_lines, METH_NOARGS, "the last trace_depth events"},
    {"error", (PyCFunction)Sim_error, METH_NOARGS, "what stopped the simulator, or None"},
    {"now", (PyCFunction)Sim_now, METH_NOARGS, "virtual ms"},
    {"seed", (PyCFunction)Sim_seed, METH_NOARGS, "the seed"},
    {"n_nodes", (PyCFunction)Sim_n_nodes, METH_NOARGS, "number of servers"},
    {"committed", (PyCFunction)Sim_committed, METH_NOARGS, "highest index committed anywhere"},
    {"hash", (PyCFunction)Sim_hash, METH_VARARGS | METH_CLASS, "FNV-1a of bytes"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot Sim_slots[] = {
    {Py_tp_doc, "The deterministic simulator (craft/sim.h). Use craft.sim.Cluster."},
    {Py_tp_init, Sim_init},
    {Py_tp_dealloc, Sim_dealloc},
    {Py_tp_traverse, Sim_traverse},
    {Py_tp_clear, Sim_clear},
    {Py_tp_methods, Sim_methods},
    {Py_tp_new, PyType_GenericNew},
    {0, NULL},
};

static PyType_Spec Sim_spec = {"craft._craft.Sim", sizeof(SimObject), 0,
                               Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, Sim_slots};

int craftpy_sim_init(PyObject *m)
{
    PyObject *t = PyType_FromSpec(&Sim_spec);
    if (t == NULL) {
        return -1;
    }
    if (PyModule_AddObject(m, "Sim", t) != 0) {
        Py_DECREF(t);
        return -1;
    }
    return 0;
}
