/* craft._craft.Sim: the deterministic simulator of craft/sim.h with Python callbacks.
 *
 * Everything runs on the calling thread with the GIL held (a simulator is a plain value and its
 * callbacks are Python). A callback that raises cannot return its exception through the C
 * simulator: the first one is kept in `pending` and raised when the running call returns. */
#include "simpy.h"

typedef struct {
    PyObject_HEAD
    struct craft_sim *sim;
    PyObject *apply;    /* apply(node, index, term, type, data) */
    PyObject *snapshot; /* snapshot(node) -> bytes */
    PyObject *restore;  /* restore(node, data or None) */
    PyObject *trace;    /* trace(line) */
    PyObject *event;    /* event(dict): every event as a value */
    PyObject *preds;    /* capsules of the rules' predicates, alive as long as the simulator */
    struct craftpy_core *core; /* a Raft written in Python (core=), or NULL */
    struct craftpy_arena arena; /* what an injected message points to, during the call */
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
    PyObject *r = PyObject_CallFunction(self->apply, "KKKiy#I", (unsigned long long)node,
                                        (unsigned long long)e->index, (unsigned long long)e->term,
                                        (int)e->type, (const char *)e->data,
                                        (Py_ssize_t)e->size,
                                        self->sim ? (unsigned)craft_sim_boots(self->sim, node)
                                                  : 1u);
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
    /* The simulator sets the restored index before calling (0: an empty state machine). */
    struct craft_sim_node_status st = {.boots = 1};
    if (self->sim != NULL) { /* NULL while craft_sim_new boots the nodes the first time */
        craft_sim_status(self->sim, node, &st);
    }
    if (data == NULL) {
        r = PyObject_CallFunction(self->restore, "KOKI", (unsigned long long)node, Py_None,
                                  (unsigned long long)st.restored_index, (unsigned)st.boots);
    } else {
        r = PyObject_CallFunction(self->restore, "Ky#KI", (unsigned long long)node,
                                  (const char *)data, (Py_ssize_t)size,
                                  (unsigned long long)st.restored_index, (unsigned)st.boots);
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

static void cb_event(void *ud, const struct craft_sim_event *ev)
{
    SimObject *self = ud;
    if (self->event == NULL || self->pending_type != NULL) {
        return;
    }
    PyObject *d = craftpy_event_to_dict(ev);
    PyObject *r = d != NULL ? PyObject_CallOneArg(self->event, d) : NULL;
    Py_XDECREF(d);
    if (r == NULL) {
        keep_error(self);
    }
    Py_XDECREF(r);
}

static void keep_error_ud(void *ud)
{
    keep_error(ud);
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
    "trace_depth", "n_voters", "apply", "snapshot", "restore", "trace", "event", "core",
    "torn_writes", "unsafe", NULL,
};

/* unsafe=["no_commit_rule", ...]: teaching only (docs/lab.md, "Break it"). */
static int get_unsafe(PyObject *kw, struct craft_unsafe *u)
{
    PyObject *v = kw != NULL ? PyDict_GetItemString(kw, "unsafe") : NULL;
    if (v == NULL || v == Py_None) {
        return 0;
    }
    PyObject *seq = PyUnicode_Check(v) ? PyTuple_Pack(1, v)
                                       : PySequence_Tuple(v);
    if (seq == NULL) {
        return -1;
    }
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(seq); k++) {
        PyObject *item = PyTuple_GET_ITEM(seq, k);
        const char *f = PyUnicode_Check(item) ? PyUnicode_AsUTF8(item) : NULL;
        char name[64] = "";
        for (size_t i = 0; f != NULL && f[i] != '\0' && i + 1 < sizeof(name); i++) {
            name[i] = f[i] == '-' ? '_' : f[i];
            name[i + 1] = '\0';
        }
        if (strcmp(name, "no_commit_rule") == 0) {
            u->no_commit_rule = true;
        } else if (strcmp(name, "no_election_restriction") == 0) {
            u->no_election_restriction = true;
        } else if (strcmp(name, "no_persist_before_vote") == 0) {
            u->no_persist_before_vote = true;
        } else {
            PyErr_Format(PyExc_ValueError,
                         "unsafe: no_commit_rule, no_election_restriction or "
                         "no_persist_before_vote, not %R", item);
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    return 0;
}

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
    OPT_U("torn_writes", o.torn_writes);
    if (get_unsafe(kw, &o.node.unsafe) != 0) {
        return -1;
    }
    if (get_opt_double(kw, "drop_rate", &o.drop_rate) != 0 ||
        get_opt_double(kw, "dup_rate", &o.dup_rate) != 0) {
        return -1;
    }
    const char *cbs[] = {"apply", "snapshot", "restore", "trace", "event"};
    PyObject **slots[] = {&self->apply, &self->snapshot, &self->restore, &self->trace,
                          &self->event};
    for (int i = 0; i < 5; i++) {
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
    o.event = self->event != NULL ? cb_event : NULL;
    o.ud = self;
    self->preds = PyList_New(0);
    if (self->preds == NULL) {
        return -1;
    }
    PyObject *factory = kw != NULL ? PyDict_GetItemString(kw, "core") : NULL;
    if (factory != NULL && factory != Py_None) {
        if (!PyCallable_Check(factory)) {
            PyErr_SetString(PyExc_TypeError,
                            "core must be callable: core(id, config, boot) -> a Raft node");
            return -1;
        }
        self->core = craftpy_core_new(factory, keep_error_ud, self);
        if (self->core == NULL) {
            return -1;
        }
        o.core = craftpy_core_table(self->core);
    }
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
    Py_VISIT(self->event);
    Py_VISIT(self->preds);
    if (self->core != NULL && craftpy_core_traverse(self->core, visit, arg) != 0) {
        return -1;
    }
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static int Sim_clear(SimObject *self)
{
    Py_CLEAR(self->apply);
    Py_CLEAR(self->snapshot);
    Py_CLEAR(self->restore);
    Py_CLEAR(self->trace);
    Py_CLEAR(self->event);
    return 0;
}

static void Sim_dealloc(SimObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    craft_sim_free(self->sim);
    self->sim = NULL;
    /* After the simulator: freeing it destroys the nodes of a Python core. */
    craftpy_core_free(self->core);
    self->core = NULL;
    Py_CLEAR(self->preds);
    craftpy_arena_reset(&self->arena);
    PyMem_Free(self->arena.blocks);
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

static const char *const progress_modes[] = {"?", "probe", "replicate", "snapshot"};

/* status(id) -> dict: the node as the simulator sees it, the configuration in effect and, on a
 * leader, its view of every server's progress. */
static PyObject *Sim_status(SimObject *self, PyObject *args)
{
    unsigned long long id;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "K", &id)) {
        return NULL;
    }
    struct craft_sim_node_status st;
    if (craft_sim_status(self->sim, id, &st) != 0) {
        PyErr_Format(PyExc_ValueError, "no server %llu in this simulation (ids are 1..%u)", id,
                     craft_sim_n_nodes(self->sim));
        return NULL;
    }
    if (!st.up) {
        return Py_BuildValue("{s:K,s:O,s:K,s:K,s:I}", "id", id, "up", Py_False, "applied",
                             (unsigned long long)st.applied, "restored_index",
                             (unsigned long long)st.restored_index, "boots", st.boots);
    }
    PyObject *progress = PyDict_New();
    struct craft_progress_info p[CRAFT_SIM_MAX_NODES];
    unsigned n = craft_sim_progress(self->sim, id, p, CRAFT_SIM_MAX_NODES);
    for (unsigned k = 0; progress != NULL && k < n && k < CRAFT_SIM_MAX_NODES; k++) {
        PyObject *key = PyLong_FromUnsignedLongLong(p[k].id);
        PyObject *v = Py_BuildValue(
            "{s:s,s:s,s:K,s:K,s:I,s:O}", "role", p[k].role == CRAFT_VOTER ? "voter" : "learner",
            "state", p[k].mode <= 3 ? progress_modes[p[k].mode] : "?", "match",
            (unsigned long long)p[k].match, "next", (unsigned long long)p[k].next, "inflight",
            p[k].inflight, "recent_active", p[k].recent_active ? Py_True : Py_False);
        if (key == NULL || v == NULL || PyDict_SetItem(progress, key, v) != 0) {
            Py_CLEAR(progress);
        }
        Py_XDECREF(key);
        Py_XDECREF(v);
    }
    if (progress == NULL) {
        return NULL;
    }
    return Py_BuildValue(
        "{s:K,s:O,s:s,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:I,s:N,s:N,s:K,s:N}", "id", id,
        "up", Py_True, "role", craft_role_name(st.role), "term", (unsigned long long)st.term,
        "vote", (unsigned long long)st.vote, "leader", (unsigned long long)st.leader, "commit",
        (unsigned long long)st.commit, "applied", (unsigned long long)st.applied, "first_index",
        (unsigned long long)st.first_index, "last_index", (unsigned long long)st.last_index,
        "last_term", (unsigned long long)st.last_term, "transfer_target",
        (unsigned long long)st.transfer_target, "restored_index",
        (unsigned long long)st.restored_index, "boots", st.boots, "voters",
        craftpy_ids_of_mask(st.voters), "learners", craftpy_ids_of_mask(st.learners),
        "conf_index", (unsigned long long)st.conf_index, "progress", progress);
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

/* ---- control for test authors (craft/sim.h, "Control") ---------------------------------------- */

/* A rule's or a selection's predicate, called by the simulator with the message. */
struct match_pred {
    SimObject *self;
    PyObject *fn;
};

static bool match_pred_cb(void *ud, const struct craft_message *m)
{
    struct match_pred *p = ud;
    if (p->self->pending_type != NULL) {
        return false;
    }
    PyObject *d = craftpy_msg_to_dict(m);
    PyObject *r = d != NULL ? PyObject_CallOneArg(p->fn, d) : NULL;
    Py_XDECREF(d);
    int t = r != NULL ? PyObject_IsTrue(r) : -1;
    Py_XDECREF(r);
    if (t < 0) {
        keep_error(p->self);
        return false;
    }
    return t != 0;
}

static void match_pred_free(PyObject *capsule)
{
    struct match_pred *p = PyCapsule_GetPointer(capsule, "craft.sim.pred");
    if (p != NULL) {
        Py_XDECREF(p->fn);
        PyMem_Free(p);
    }
}

/* Reads types=, from_=, to=, where= from kw into m. A predicate for a rule lives as long as the
 * simulator (keep = true); one for a single call lives in *tmp. */
static int parse_match(SimObject *self, PyObject *kw, struct craft_sim_match *m, bool keep,
                       struct match_pred *tmp)
{
    memset(m, 0, sizeof(*m));
    if (kw == NULL) {
        return 0;
    }
    PyObject *types = PyDict_GetItemString(kw, "types");
    if (types != NULL && types != Py_None) {
        PyObject *seq = PyUnicode_Check(types) || PyLong_Check(types)
                            ? PyTuple_Pack(1, types)
                            : PySequence_Tuple(types);
        if (seq == NULL) {
            return -1;
        }
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(seq); k++) {
            int t = craftpy_msg_type_from(PyTuple_GET_ITEM(seq, k));
            if (t < 0) {
                Py_DECREF(seq);
                return -1;
            }
            m->types |= 1u << t;
        }
        Py_DECREF(seq);
    }
    if (craftpy_get_u64(kw, "from_", &m->from) != 0 || craftpy_get_u64(kw, "to", &m->to) != 0) {
        return -1;
    }
    unsigned n = craft_sim_n_nodes(self->sim);
    if (m->from > n || m->to > n) {
        PyErr_Format(PyExc_ValueError, "no such server in this simulation (ids are 1..%u)", n);
        return -1;
    }
    PyObject *where = PyDict_GetItemString(kw, "where");
    if (where == NULL || where == Py_None) {
        return 0;
    }
    if (!PyCallable_Check(where)) {
        PyErr_SetString(PyExc_TypeError, "where must be callable: where(message dict) -> bool");
        return -1;
    }
    struct match_pred *p = tmp;
    if (keep) {
        p = PyMem_Malloc(sizeof(*p));
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        PyObject *cap = PyCapsule_New(p, "craft.sim.pred", match_pred_free);
        if (cap == NULL || PyList_Append(self->preds, cap) != 0) {
            if (cap == NULL) {
                PyMem_Free(p);
            }
            Py_XDECREF(cap);
            return -1;
        }
        Py_DECREF(cap);
        Py_INCREF(where);
    }
    p->self = self;
    p->fn = where;
    m->pred = match_pred_cb;
    m->pred_ud = p;
    return 0;
}

static const char *const actions[] = {NULL, "hold", "drop", "duplicate", "delay"};

/* rule_add(action, delay_ms=0, count=0, types=, from_=, to=, where=) -> id */
static PyObject *Sim_rule_add(SimObject *self, PyObject *args, PyObject *kw)
{
    CHECK(self);
    const char *action;
    if (!PyArg_ParseTuple(args, "s", &action)) {
        return NULL;
    }
    struct craft_sim_rule r;
    memset(&r, 0, sizeof(r));
    for (int k = 1; k <= 4; k++) {
        if (strcmp(action, actions[k]) == 0) {
            r.action = k;
        }
    }
    if (r.action == 0) {
        PyErr_Format(PyExc_ValueError, "a rule's action is hold, drop, duplicate or delay, not %s",
                     action);
        return NULL;
    }
    if (kw != NULL && (craftpy_get_u64(kw, "delay_ms", &r.delay_ms) != 0 ||
                       craftpy_get_u64(kw, "count", &r.count) != 0)) {
        return NULL;
    }
    if (parse_match(self, kw, &r.match, true, NULL) != 0) {
        return NULL;
    }
    uint64_t id = 0;
    int rc = craft_sim_rule_add(self->sim, &r, &id);
    if (rc != 0) {
        return craftpy_raise(rc, "rule_add", 0, NULL);
    }
    return PyLong_FromUnsignedLongLong(id);
}

static PyObject *Sim_rule_remove(SimObject *self, PyObject *args)
{
    unsigned long long id;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "K", &id)) {
        return NULL;
    }
    return PyBool_FromLong(craft_sim_rule_remove(self->sim, id) == 0);
}

static PyObject *Sim_rules_clear(SimObject *self, PyObject *noargs)
{
    CHECK(self);
    craft_sim_rules_clear(self->sim);
    Py_RETURN_NONE;
}

/* held(types=, from_=, to=, where=) -> [message dict + id, held_at] */
static PyObject *Sim_held(SimObject *self, PyObject *args, PyObject *kw)
{
    CHECK(self);
    struct craft_sim_match m;
    struct match_pred tmp;
    if (parse_match(self, kw, &m, false, &tmp) != 0) {
        return NULL;
    }
    size_t n = craft_sim_held(self->sim, &m, NULL, 0);
    struct craft_sim_held *h = PyMem_Calloc(n ? n : 1, sizeof(*h));
    if (h == NULL) {
        return PyErr_NoMemory();
    }
    n = craft_sim_held(self->sim, &m, h, n);
    PyObject *l = self->pending_type == NULL ? PyList_New(0) : NULL;
    for (size_t k = 0; l != NULL && k < n; k++) {
        PyObject *d = craftpy_msg_to_dict(h[k].msg);
        PyObject *id = PyLong_FromUnsignedLongLong(h[k].id);
        PyObject *at = PyLong_FromUnsignedLongLong(h[k].held_at);
        if (d == NULL || id == NULL || at == NULL || PyDict_SetItemString(d, "id", id) != 0 ||
            PyDict_SetItemString(d, "held_at", at) != 0 || PyList_Append(l, d) != 0) {
            Py_CLEAR(l);
        }
        Py_XDECREF(d);
        Py_XDECREF(id);
        Py_XDECREF(at);
    }
    PyMem_Free(h);
    if (self->pending_type != NULL) {
        Py_XDECREF(l);
        return finish(self, 0);
    }
    return l;
}

/* deliver(max=0, types=, from_=, to=, where=) -> how many */
static PyObject *Sim_deliver(SimObject *self, PyObject *args, PyObject *kw)
{
    CHECK(self);
    struct craft_sim_match m;
    struct match_pred tmp;
    uint64_t max = 0;
    if ((kw != NULL && craftpy_get_u64(kw, "max", &max) != 0) ||
        parse_match(self, kw, &m, false, &tmp) != 0) {
        return NULL;
    }
    size_t n = 0;
    int rc = craft_sim_deliver(self->sim, &m, (size_t)max, &n);
    PyObject *r = finish(self, rc);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    return PyLong_FromSize_t(n);
}

static PyObject *Sim_discard(SimObject *self, PyObject *args, PyObject *kw)
{
    CHECK(self);
    struct craft_sim_match m;
    struct match_pred tmp;
    if (parse_match(self, kw, &m, false, &tmp) != 0) {
        return NULL;
    }
    size_t n = 0;
    int rc = craft_sim_discard(self->sim, &m, &n);
    PyObject *r = finish(self, rc);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    return PyLong_FromSize_t(n);
}

/* inject(message dict, delay_ms=0) */
static PyObject *Sim_inject(SimObject *self, PyObject *args)
{
    PyObject *d;
    unsigned long long delay = 0;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "O|K", &d, &delay)) {
        return NULL;
    }
    struct craft_message m;
    if (craftpy_msg_from_dict(d, &m, &self->arena) != 0) {
        craftpy_arena_reset(&self->arena);
        return NULL;
    }
    int rc = craft_sim_inject(self->sim, &m, delay);
    craftpy_arena_reset(&self->arena);
    if (rc == CRAFT_EINVAL) {
        PyErr_Format(PyExc_ValueError,
                     "inject: from and to must be two different servers of this simulation "
                     "(1..%u)", craft_sim_n_nodes(self->sim));
        return NULL;
    }
    if (rc == CRAFT_EUNAVAILABLE) {
        PyErr_SetString(PyExc_ValueError, "inject: an InstallSnapshot without data from a "
                                          "sender that does not store that snapshot");
        return NULL;
    }
    return finish(self, rc);
}

/* campaign(id) -> rc (CRAFT_ESTATE: down, leads already, or cannot campaign) */
static PyObject *Sim_campaign(SimObject *self, PyObject *args)
{
    unsigned long long id;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "K", &id)) {
        return NULL;
    }
    int rc = craft_sim_campaign(self->sim, id);
    if (rc == CRAFT_EINVAL) {
        PyErr_Format(PyExc_ValueError, "no server %llu in this simulation", id);
        return NULL;
    }
    if (rc != 0 && rc != CRAFT_ESTATE) {
        return finish(self, rc);
    }
    if (self->pending_type != NULL) {
        return finish(self, 0);
    }
    return PyLong_FromLong(rc);
}

/* tick_node(id, n) -> rc (CRAFT_ESTATE when down) */
static PyObject *Sim_tick_node(SimObject *self, PyObject *args)
{
    unsigned long long id;
    unsigned n = 1;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "K|I", &id, &n)) {
        return NULL;
    }
    int rc = craft_sim_tick(self->sim, id, n);
    if (rc == CRAFT_EINVAL) {
        PyErr_Format(PyExc_ValueError, "no server %llu in this simulation", id);
        return NULL;
    }
    if (rc != 0 && rc != CRAFT_ESTATE) {
        return finish(self, rc);
    }
    if (self->pending_type != NULL) {
        return finish(self, 0);
    }
    return PyLong_FromLong(rc);
}

static PyObject *Sim_set_clock(SimObject *self, PyObject *args)
{
    unsigned long long id;
    unsigned ms;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "KI", &id, &ms)) {
        return NULL;
    }
    int rc = craft_sim_set_clock(self->sim, id, ms);
    if (rc == CRAFT_EINVAL) {
        PyErr_SetString(PyExc_ValueError,
                        "set_clock: a server of this simulation (0: all), and a tick interval "
                        "above tick_jitter_ms (0 stops the clock)");
        return NULL;
    }
    return finish(self, rc);
}

static PyObject *Sim_clock(SimObject *self, PyObject *args)
{
    unsigned long long id;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "K", &id)) {
        return NULL;
    }
    return PyLong_FromUnsignedLong(craft_sim_clock(self->sim, id));
}

#define CONFIG_FIELDS(X)                                                                       \
    X(election_ticks) X(heartbeat_ticks) X(pre_vote) X(check_quorum) X(max_batch_entries)      \
    X(max_batch_bytes) X(max_inflight) X(snapshot_entries) X(snapshot_bytes)                   \
    X(snapshot_trailing) X(snapshot_chunk_bytes) X(promote_distance) X(promote_rounds)         \
    X(lease_reads) X(lease_drift_ticks)

static PyObject *Sim_node_config(SimObject *self, PyObject *args)
{
    unsigned long long id;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "K", &id)) {
        return NULL;
    }
    struct craft_config c;
    if (craft_sim_node_config(self->sim, id, &c) != 0) {
        PyErr_Format(PyExc_ValueError, "no server %llu in this simulation", id);
        return NULL;
    }
    PyObject *d = PyDict_New();
#define PUT(f)                                                                                 \
    if (d != NULL) {                                                                           \
        PyObject *v_ = PyLong_FromUnsignedLongLong((unsigned long long)c.f);                   \
        if (v_ == NULL || PyDict_SetItemString(d, #f, v_) != 0) {                              \
            Py_CLEAR(d);                                                                       \
        }                                                                                      \
        Py_XDECREF(v_);                                                                        \
    }
    CONFIG_FIELDS(PUT)
#undef PUT
    return d;
}

/* set_node_config(id, dict): for the node's next boot; unknown keys are a TypeError. */
static PyObject *Sim_set_node_config(SimObject *self, PyObject *args)
{
    unsigned long long id;
    PyObject *d;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "KO!", &id, &PyDict_Type, &d)) {
        return NULL;
    }
    struct craft_config c;
    if (craft_sim_node_config(self->sim, id, &c) != 0) {
        PyErr_Format(PyExc_ValueError, "no server %llu in this simulation", id);
        return NULL;
    }
    PyObject *key;
    Py_ssize_t pos = 0;
    while (PyDict_Next(d, &pos, &key, NULL)) {
        const char *k = PyUnicode_Check(key) ? PyUnicode_AsUTF8(key) : NULL;
        bool known = false;
#define IS(f) known |= k != NULL && strcmp(k, #f) == 0;
        CONFIG_FIELDS(IS)
#undef IS
        if (!known) {
            PyErr_Format(PyExc_TypeError, "unknown protocol option %R", key);
            return NULL;
        }
    }
#define GET(f)                                                                                 \
    {                                                                                          \
        uint64_t v_ = (uint64_t)c.f;                                                           \
        if (craftpy_get_u64(d, #f, &v_) != 0) {                                                \
            return NULL;                                                                       \
        }                                                                                      \
        c.f = (__typeof__(c.f))v_;                                                             \
    }
    CONFIG_FIELDS(GET)
#undef GET
    if (craft_sim_set_node_config(self->sim, id, &c) != 0) {
        PyErr_SetString(PyExc_ValueError, "heartbeat_ticks must be below election_ticks");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Sim_link_stats(SimObject *self, PyObject *args)
{
    unsigned long long a, b;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "KK", &a, &b)) {
        return NULL;
    }
    struct craft_sim_link_stats st;
    if (craft_sim_link_stats(self->sim, a, b, &st) != 0) {
        PyErr_SetString(PyExc_ValueError, "link_stats: two servers of this simulation");
        return NULL;
    }
    return Py_BuildValue("{s:K,s:K,s:K,s:K,s:K}", "sent", (unsigned long long)st.sent, "bytes",
                         (unsigned long long)st.bytes, "delivered",
                         (unsigned long long)st.delivered, "dropped",
                         (unsigned long long)st.dropped, "held", (unsigned long long)st.held);
}

/* durable(id) -> {hard_state, first_index, last_index, entries, snapshot}: what its disk holds */
static PyObject *Sim_durable(SimObject *self, PyObject *args)
{
    unsigned long long id;
    CHECK(self);
    if (!PyArg_ParseTuple(args, "K", &id)) {
        return NULL;
    }
    struct craft_sim_durable d;
    int rc = craft_sim_durable(self->sim, id, &d);
    if (rc == CRAFT_EINVAL) {
        PyErr_Format(PyExc_ValueError, "no server %llu in this simulation", id);
        return NULL;
    }
    if (rc != 0) {
        return craftpy_raise(rc, "reading the store", 0, NULL);
    }
    const struct craft_store *st = craft_sim_store(self->sim, id);
    struct craft_entry *e = NULL;
    size_t n = 0;
    if (d.last_index >= d.first_index) {
        rc = st->entries(st->impl, d.first_index, d.last_index, NULL, &e, &n);
        if (rc != 0) {
            return craftpy_raise(rc, "reading the store's entries", 0, NULL);
        }
    }
    PyObject *entries = PyList_New((Py_ssize_t)n);
    for (size_t k = 0; entries != NULL && k < n; k++) {
        PyObject *v = craftpy_entry_to_dict(&e[k]);
        if (v == NULL) {
            Py_CLEAR(entries);
            break;
        }
        PyList_SET_ITEM(entries, (Py_ssize_t)k, v);
    }
    craft_free(NULL, e);
    if (entries == NULL) {
        return NULL;
    }
    PyObject *snap;
    if (d.has_snapshot) {
        snap = Py_BuildValue("{s:K,s:K,s:K,s:K,s:N}", "index",
                             (unsigned long long)d.snapshot_index, "term",
                             (unsigned long long)d.snapshot_term, "size",
                             (unsigned long long)d.snapshot_size, "conf_index",
                             (unsigned long long)d.snapshot_conf_index, "voters",
                             craftpy_ids_of_mask(d.snapshot_voters));
    } else {
        snap = Py_NewRef(Py_None);
    }
    if (snap == NULL) {
        Py_DECREF(entries);
        return NULL;
    }
    return Py_BuildValue("{s:{s:K,s:K,s:K},s:K,s:K,s:N,s:N}", "hard_state", "term",
                         (unsigned long long)d.hard_state.term, "vote",
                         (unsigned long long)d.hard_state.vote, "commit",
                         (unsigned long long)d.hard_state.commit, "first_index",
                         (unsigned long long)d.first_index, "last_index",
                         (unsigned long long)d.last_index, "entries", entries, "snapshot", snap);
}

static void collect_event(void *ud, const struct craft_sim_event *ev)
{
    PyObject *l = ud;
    if (PyErr_Occurred()) {
        return;
    }
    PyObject *d = craftpy_event_to_dict(ev);
    if (d != NULL) {
        PyList_Append(l, d);
        Py_DECREF(d);
    }
}

static PyObject *Sim_events(SimObject *self, PyObject *noargs)
{
    CHECK(self);
    PyObject *l = PyList_New(0);
    if (l != NULL) {
        craft_sim_dump_events(self->sim, collect_event, l);
        if (PyErr_Occurred()) {
            Py_CLEAR(l);
        }
    }
    return l;
}

static PyMethodDef Sim_methods[] = {
    {"rule_add", (PyCFunction)(void (*)(void))Sim_rule_add, METH_VARARGS | METH_KEYWORDS,
     "rule_add(action, delay_ms=0, count=0, types=, from_=, to=, where=) -> id"},
    {"rule_remove", (PyCFunction)Sim_rule_remove, METH_VARARGS, "rule_remove(id) -> bool"},
    {"rules_clear", (PyCFunction)Sim_rules_clear, METH_NOARGS, "rules_clear()"},
    {"held", (PyCFunction)(void (*)(void))Sim_held, METH_VARARGS | METH_KEYWORDS,
     "held(types=, from_=, to=, where=) -> [message]"},
    {"deliver", (PyCFunction)(void (*)(void))Sim_deliver, METH_VARARGS | METH_KEYWORDS,
     "deliver(max=0, types=, from_=, to=, where=) -> n"},
    {"discard", (PyCFunction)(void (*)(void))Sim_discard, METH_VARARGS | METH_KEYWORDS,
     "discard(types=, from_=, to=, where=) -> n"},
    {"inject", (PyCFunction)Sim_inject, METH_VARARGS, "inject(message, delay_ms=0)"},
    {"campaign", (PyCFunction)Sim_campaign, METH_VARARGS, "campaign(id) -> rc"},
    {"tick_node", (PyCFunction)Sim_tick_node, METH_VARARGS, "tick_node(id, n=1) -> rc"},
    {"set_clock", (PyCFunction)Sim_set_clock, METH_VARARGS, "set_clock(id, tick_ms)"},
    {"clock", (PyCFunction)Sim_clock, METH_VARARGS, "clock(id) -> tick_ms"},
    {"node_config", (PyCFunction)Sim_node_config, METH_VARARGS, "node_config(id) -> dict"},
    {"set_node_config", (PyCFunction)Sim_set_node_config, METH_VARARGS,
     "set_node_config(id, dict): for its next boot"},
    {"link_stats", (PyCFunction)Sim_link_stats, METH_VARARGS, "link_stats(from, to) -> dict"},
    {"durable", (PyCFunction)Sim_durable, METH_VARARGS, "durable(id) -> dict"},
    {"events", (PyCFunction)Sim_events, METH_NOARGS, "the last trace_depth events as dicts"},
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

/* run_script(text) -> (output, report, commands, mismatches): a transcript (craft/sim.h). */
static PyObject *run_script(PyObject *mod, PyObject *args)
{
    Py_buffer text;
    if (!PyArg_ParseTuple(args, "y*", &text)) {
        return NULL;
    }
    struct craft_sim_script_result r;
    int rc = craft_sim_script_run(text.buf, (size_t)text.len, &r);
    PyBuffer_Release(&text);
    if (rc != 0) {
        return PyErr_NoMemory();
    }
    PyObject *res = Py_BuildValue("(s#sII)", r.output, (Py_ssize_t)r.output_len, r.report,
                                  r.commands, r.mismatches);
    craft_sim_script_result_free(&r);
    return res;
}

static PyMethodDef script_def = {"run_script", run_script, METH_VARARGS,
                                 "run_script(text: bytes) -> (output, report, commands, "
                                 "mismatches): runs a transcript (docs/simulator.md)"};

int craftpy_sim_init(PyObject *m)
{
    PyObject *name = PyModule_GetNameObject(m);
    PyObject *f = name != NULL ? PyCFunction_NewEx(&script_def, NULL, name) : NULL;
    Py_XDECREF(name);
    if (f == NULL || PyModule_AddObject(m, "run_script", f) != 0) {
        Py_XDECREF(f);
        return -1;
    }
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
