/* A Raft written in Python, run by the simulator in place of craft's core (craft/sim.h, "Bring
 * your own core"). The factory given as core= is called at every boot:
 *
 *     factory(id, config: dict, boot: dict) -> node
 *
 * and the node answers the calls craft's core answers, with values instead of structs:
 * step(message), tick(), propose(data) -> (index, term) or None when it does not lead,
 * take_update() -> dict or None, persisted(seq), snapshot_taken(index, size) -> compact_upto,
 * status() -> dict, term_at(index) -> term. docs/simulator.md gives every key. Role changes
 * are found here by comparing status() with what was reported last, so that the checker's
 * election rules see each new leader exactly as they see craft's.
 *
 * A Python exception inside a node's method stops the simulator: the binding keeps the first
 * one and raises it when the running call returns. */
#include "simpy.h"

#include <string.h>

struct craftpy_core {
    struct craft_sim_core table;
    PyObject *factory;
    void (*keep_error)(void *ud);
    void *ud;
};

/* One node: the Python object and the memory its last update points to. */
struct ext_node {
    PyObject *obj;
    struct craftpy_arena arena;
    int role;
    craft_term term;
    craft_id leader;
    struct craft_snapshot_meta want;
    struct craft_install_snapshot chunk;
};

static int fail(struct craftpy_core *c)
{
    c->keep_error(c->ud);
    return CRAFT_EINVAL;
}

/* The voters of the configuration a node boots with: the bootstrap one, else the last
 * configuration entry of its log, else its snapshot's (thesis 4.1: the latest one counts). */
static uint64_t boot_voters(const struct craft_boot *b)
{
    uint64_t m = 0;
    const struct craft_configuration *c = b->bootstrap;
    struct craft_configuration decoded;
    craft_configuration_init(&decoded);
    for (size_t k = b->n_entries; c == NULL && k > 0; k--) {
        const struct craft_entry *e = &b->entries[k - 1];
        if (e->type == CRAFT_ENTRY_CONFIG &&
            craft_configuration_decode(e->data, e->size, NULL, &decoded) == 0) {
            c = &decoded;
        }
    }
    if (c == NULL && b->snapshot != NULL) {
        c = &b->snapshot->conf;
    }
    for (unsigned k = 0; c != NULL && k < c->n; k++) {
        if (c->servers[k].role == CRAFT_VOTER && c->servers[k].id >= 1 && c->servers[k].id <= 64) {
            m |= 1ull << (c->servers[k].id - 1);
        }
    }
    craft_configuration_close(&decoded, NULL);
    return m;
}

static PyObject *boot_dict(const struct craft_boot *b)
{
    PyObject *entries = PyList_New((Py_ssize_t)b->n_entries);
    for (size_t k = 0; entries != NULL && k < b->n_entries; k++) {
        PyObject *e = craftpy_entry_to_dict(&b->entries[k]);
        if (e == NULL) {
            Py_CLEAR(entries);
            break;
        }
        PyList_SET_ITEM(entries, (Py_ssize_t)k, e);
    }
    if (entries == NULL) {
        return NULL;
    }
    PyObject *snap = Py_NewRef(Py_None);
    if (b->snapshot != NULL) {
        uint64_t voters = 0, learners = 0;
        const struct craft_configuration *c = &b->snapshot->conf;
        for (unsigned k = 0; k < c->n; k++) {
            uint64_t bit = 1ull << ((c->servers[k].id - 1) & 63);
            *(c->servers[k].role == CRAFT_VOTER ? &voters : &learners) |= bit;
        }
        Py_SETREF(snap, Py_BuildValue("{s:K,s:K,s:K,s:K,s:N,s:N}", "index",
                                      (unsigned long long)b->snapshot->index, "term",
                                      (unsigned long long)b->snapshot->term, "size",
                                      (unsigned long long)b->snapshot->size, "conf_index",
                                      (unsigned long long)b->snapshot->conf_index, "voters",
                                      craftpy_ids_of_mask(voters), "learners",
                                      craftpy_ids_of_mask(learners)));
    }
    PyObject *boot = Py_NewRef(Py_None);
    if (b->bootstrap != NULL && snap != NULL) {
        uint64_t voters = 0, learners = 0;
        for (unsigned k = 0; k < b->bootstrap->n; k++) {
            uint64_t bit = 1ull << ((b->bootstrap->servers[k].id - 1) & 63);
            *(b->bootstrap->servers[k].role == CRAFT_VOTER ? &voters : &learners) |= bit;
        }
        /* The configuration entry the core writes at index 1, as craft's core encodes it. */
        void *data = NULL;
        size_t size = 0;
        if (craft_configuration_encode(b->bootstrap, NULL, &data, &size) != 0) {
            Py_DECREF(snap);
            Py_DECREF(entries);
            return PyErr_NoMemory();
        }
        Py_SETREF(boot, Py_BuildValue("{s:N,s:N,s:y#}", "voters", craftpy_ids_of_mask(voters),
                                      "learners", craftpy_ids_of_mask(learners), "data",
                                      (const char *)data, (Py_ssize_t)size));
        craft_free(NULL, data);
    }
    if (snap == NULL || boot == NULL) {
        Py_XDECREF(snap);
        Py_XDECREF(boot);
        Py_DECREF(entries);
        return NULL;
    }
    return Py_BuildValue("{s:{s:K,s:K,s:K},s:N,s:N,s:N,s:N}", "hard_state", "term",
                         (unsigned long long)b->hard_state.term, "vote",
                         (unsigned long long)b->hard_state.vote, "commit",
                         (unsigned long long)b->hard_state.commit, "snapshot", snap, "entries",
                         entries, "bootstrap", boot, "voters",
                         craftpy_ids_of_mask(boot_voters(b)));
}

static PyObject *config_dict(const struct craft_config *c)
{
    return Py_BuildValue(
        "{s:K,s:K,s:I,s:I,s:O,s:O,s:I,s:n,s:I,s:K,s:K,s:K,s:n}", "id", (unsigned long long)c->id,
        "seed", (unsigned long long)c->seed, "election_ticks", c->election_ticks,
        "heartbeat_ticks", c->heartbeat_ticks, "pre_vote", c->pre_vote ? Py_True : Py_False,
        "check_quorum", c->check_quorum ? Py_True : Py_False, "max_batch_entries",
        c->max_batch_entries, "max_batch_bytes", (Py_ssize_t)c->max_batch_bytes, "max_inflight",
        c->max_inflight, "snapshot_entries", (unsigned long long)c->snapshot_entries,
        "snapshot_bytes", (unsigned long long)c->snapshot_bytes, "snapshot_trailing",
        (unsigned long long)c->snapshot_trailing, "snapshot_chunk_bytes",
        (Py_ssize_t)c->snapshot_chunk_bytes);
}

static int ext_create(void *ud, const struct craft_config *config, const struct craft_boot *b,
                      void **core)
{
    struct craftpy_core *c = ud;
    *core = NULL;
    struct ext_node *n = PyMem_Calloc(1, sizeof(*n));
    if (n == NULL) {
        return CRAFT_ENOMEM;
    }
    PyObject *cfg = config_dict(config);
    PyObject *boot = cfg != NULL ? boot_dict(b) : NULL;
    if (boot != NULL) {
        n->obj = PyObject_CallFunction(c->factory, "KOO", (unsigned long long)config->id, cfg,
                                       boot);
    }
    Py_XDECREF(cfg);
    Py_XDECREF(boot);
    if (n->obj == NULL) {
        PyMem_Free(n);
        return fail(c);
    }
    *core = n;
    return 0;
}

static void ext_destroy(void *ud, void *core)
{
    (void)ud;
    struct ext_node *n = core;
    Py_XDECREF(n->obj);
    craftpy_arena_reset(&n->arena);
    PyMem_Free(n->arena.blocks);
    PyMem_Free(n);
}

/* Calls a method and discards its result: 0, or CRAFT_EINVAL with the exception kept. */
static int call_void(struct craftpy_core *c, struct ext_node *n, PyObject *r)
{
    craftpy_arena_reset(&n->arena);
    if (r == NULL) {
        return fail(c);
    }
    Py_DECREF(r);
    return 0;
}

static int ext_step(void *ud, void *core, const struct craft_message *m)
{
    struct ext_node *n = core;
    PyObject *d = craftpy_msg_to_dict(m);
    PyObject *r = d != NULL ? PyObject_CallMethod(n->obj, "step", "O", d) : NULL;
    Py_XDECREF(d);
    return call_void(ud, n, r);
}

static int ext_tick(void *ud, void *core)
{
    struct ext_node *n = core;
    return call_void(ud, n, PyObject_CallMethod(n->obj, "tick", NULL));
}

static int ext_propose(void *ud, void *core, const void *data, size_t size, craft_index *index,
                       craft_term *term)
{
    struct craftpy_core *c = ud;
    struct ext_node *n = core;
    craftpy_arena_reset(&n->arena);
    PyObject *r = PyObject_CallMethod(n->obj, "propose", "y#", (const char *)data,
                                      (Py_ssize_t)size);
    if (r == NULL) {
        return fail(c);
    }
    if (r == Py_None) {
        Py_DECREF(r);
        return CRAFT_ENOTLEADER;
    }
    unsigned long long i = 0, t = 0;
    int ok = PyArg_ParseTuple(r, "KK", &i, &t);
    Py_DECREF(r);
    if (!ok) {
        PyErr_SetString(PyExc_TypeError, "propose must return (index, term), or None when this "
                                         "node does not lead");
        return fail(c);
    }
    if (index != NULL) {
        *index = i;
    }
    if (term != NULL) {
        *term = t;
    }
    return 0;
}

static int parse_role(PyObject *v)
{
    if (v == NULL || v == Py_None) {
        return CRAFT_FOLLOWER;
    }
    if (PyLong_Check(v)) {
        long r = PyLong_AsLong(v);
        return r >= CRAFT_FOLLOWER && r <= CRAFT_LEADER ? (int)r : -1;
    }
    const char *s = PyUnicode_Check(v) ? PyUnicode_AsUTF8(v) : NULL;
    for (int r = CRAFT_FOLLOWER; s != NULL && r <= CRAFT_LEADER; r++) {
        if (strcmp(s, craft_role_name(r)) == 0) {
            return r;
        }
    }
    return -1;
}

static int read_status(struct ext_node *n, struct craft_sim_core_status *out)
{
    memset(out, 0, sizeof(*out));
    PyObject *d = PyObject_CallMethod(n->obj, "status", NULL);
    if (d == NULL) {
        return -1;
    }
    if (!PyDict_Check(d)) {
        PyErr_SetString(PyExc_TypeError, "status() must return a dict");
        Py_DECREF(d);
        return -1;
    }
    int role = parse_role(PyDict_GetItemString(d, "role"));
    int rc = role < 0;
    if (rc) {
        PyErr_SetString(PyExc_ValueError,
                        "status()['role'] is follower, pre-candidate, candidate or leader");
    }
    out->role = role;
    rc = rc || craftpy_get_u64(d, "term", &out->term) || craftpy_get_u64(d, "vote", &out->vote) ||
         craftpy_get_u64(d, "leader", &out->leader) ||
         craftpy_get_u64(d, "commit", &out->commit) ||
         craftpy_get_u64(d, "first_index", &out->first_index) ||
         craftpy_get_u64(d, "last_index", &out->last_index) ||
         craftpy_get_u64(d, "last_term", &out->last_term);
    PyObject *voters = rc ? NULL : PyDict_GetItemString(d, "voters");
    if (voters != NULL) {
        PyObject *seq = PySequence_Fast(voters, "status()['voters'] must be a list of ids");
        for (Py_ssize_t k = 0; seq != NULL && k < PySequence_Fast_GET_SIZE(seq); k++) {
            unsigned long long id = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(seq, k));
            if (PyErr_Occurred() || id == 0 || id > 64) {
                if (!PyErr_Occurred()) {
                    PyErr_SetString(PyExc_ValueError, "status()['voters']: ids are 1..64");
                }
                rc = 1;
                break;
            }
            out->voters |= 1ull << (id - 1);
        }
        rc = rc || seq == NULL;
        Py_XDECREF(seq);
    }
    Py_DECREF(d);
    return rc ? -1 : 0;
}

static int ext_status(void *ud, void *core, struct craft_sim_core_status *out)
{
    if (read_status(core, out) != 0) {
        return fail(ud);
    }
    return 0;
}

static craft_term ext_term_at(void *ud, void *core, craft_index index)
{
    struct ext_node *n = core;
    PyObject *r = PyObject_CallMethod(n->obj, "term_at", "K", (unsigned long long)index);
    unsigned long long t = r != NULL ? PyLong_AsUnsignedLongLong(r) : 0;
    Py_XDECREF(r);
    if (PyErr_Occurred()) {
        fail(ud);
        return 0;
    }
    return t;
}

/* A list of entry dicts into an arena array. */
static int entries_from(PyObject *d, const char *key, struct ext_node *n,
                        const struct craft_entry **out, size_t *count)
{
    PyObject *l = PyDict_GetItemString(d, key);
    *out = NULL;
    *count = 0;
    if (l == NULL || l == Py_None) {
        return 0;
    }
    PyObject *seq = PySequence_Fast(l, "an update's entries and committed are lists of entries");
    if (seq == NULL) {
        return -1;
    }
    Py_ssize_t len = PySequence_Fast_GET_SIZE(seq);
    struct craft_entry *v = craftpy_arena_alloc(&n->arena, (size_t)len * sizeof(*v));
    int rc = v == NULL ? -1 : 0;
    for (Py_ssize_t k = 0; rc == 0 && k < len; k++) {
        rc = craftpy_entry_from_dict(PySequence_Fast_GET_ITEM(seq, k), &v[k], &n->arena);
    }
    Py_DECREF(seq);
    *out = v;
    *count = (size_t)len;
    return rc;
}

static int update_from(struct ext_node *n, PyObject *d, struct craft_update *u)
{
    if (!PyDict_Check(d)) {
        PyErr_SetString(PyExc_TypeError, "take_update() must return a dict or None");
        return -1;
    }
    if (craftpy_get_u64(d, "seq", &u->seq) != 0) {
        return -1;
    }
    PyObject *hs = PyDict_GetItemString(d, "hard_state");
    if (hs != NULL && hs != Py_None) {
        if (!PyDict_Check(hs)) {
            PyErr_SetString(PyExc_TypeError, "an update's hard_state is a dict {term, vote, "
                                             "commit}");
            return -1;
        }
        u->hard_state_changed = true;
        if (craftpy_get_u64(hs, "term", &u->hard_state.term) != 0 ||
            craftpy_get_u64(hs, "vote", &u->hard_state.vote) != 0 ||
            craftpy_get_u64(hs, "commit", &u->hard_state.commit) != 0) {
            return -1;
        }
    }
    if (entries_from(d, "entries", n, &u->entries, &u->n_entries) != 0 ||
        entries_from(d, "committed", n, &u->committed, &u->n_committed) != 0) {
        return -1;
    }
    PyObject *msgs = PyDict_GetItemString(d, "messages");
    if (msgs != NULL && msgs != Py_None) {
        PyObject *seq = PySequence_Fast(msgs, "an update's messages are a list of dicts");
        if (seq == NULL) {
            return -1;
        }
        Py_ssize_t len = PySequence_Fast_GET_SIZE(seq);
        struct craft_message *v = craftpy_arena_alloc(&n->arena, (size_t)len * sizeof(*v));
        int rc = v == NULL ? -1 : 0;
        for (Py_ssize_t k = 0; rc == 0 && k < len; k++) {
            rc = craftpy_msg_from_dict(PySequence_Fast_GET_ITEM(seq, k), &v[k], &n->arena);
        }
        Py_DECREF(seq);
        if (rc != 0) {
            return -1;
        }
        u->messages = v;
        u->n_messages = (size_t)len;
    }
    PyObject *want = PyDict_GetItemString(d, "snapshot_wanted");
    if (want != NULL && want != Py_None) {
        memset(&n->want, 0, sizeof(n->want));
        if (!PyDict_Check(want) || craftpy_get_u64(want, "index", &n->want.index) != 0 ||
            craftpy_get_u64(want, "term", &n->want.term) != 0 ||
            craftpy_get_u64(want, "conf_index", &n->want.conf_index) != 0 ||
            craftpy_conf_from(PyDict_GetItemString(want, "voters"),
                              PyDict_GetItemString(want, "learners"), &n->want.conf,
                              &n->arena) != 0) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_TypeError, "snapshot_wanted is a dict {index, term, "
                                                 "conf_index, voters, learners}");
            }
            return -1;
        }
        u->snapshot_wanted = &n->want;
    }
    PyObject *chunk = PyDict_GetItemString(d, "snapshot_chunk");
    if (chunk != NULL && chunk != Py_None) {
        struct craft_message m;
        if (craftpy_msg_from_dict(chunk, &m, &n->arena) != 0) {
            return -1;
        }
        if (m.type != CRAFT_MSG_INSTALL_SNAPSHOT) {
            PyErr_SetString(PyExc_ValueError, "snapshot_chunk is the InstallSnapshot message "
                                              "received");
            return -1;
        }
        n->chunk = m.u.install_snapshot;
        u->snapshot_chunk = &n->chunk;
        bool discard = false;
        if (craftpy_get_bool(d, "snapshot_discard_log", &discard) != 0) {
            return -1;
        }
        u->snapshot_discard_log = discard;
    }
    return craftpy_get_u64(d, "dropped_from", &u->dropped_from);
}

static int ext_take_update(void *ud, void *core, struct craft_update *u)
{
    struct craftpy_core *c = ud;
    struct ext_node *n = core;
    craftpy_arena_reset(&n->arena);
    PyObject *d = PyObject_CallMethod(n->obj, "take_update", NULL);
    if (d == NULL) {
        return fail(c);
    }
    int got = 0;
    if (d != Py_None) {
        got = 1;
        if (update_from(n, d, u) != 0) {
            Py_DECREF(d);
            return fail(c);
        }
    }
    Py_DECREF(d);
    /* The role, term or leader changed since the last report: say so in this update. */
    struct craft_sim_core_status st;
    if (read_status(n, &st) != 0) {
        return fail(c);
    }
    if (st.role != n->role || st.term != n->term || st.leader != n->leader) {
        n->role = st.role;
        n->term = st.term;
        n->leader = st.leader;
        u->role_changed = true;
        u->role = st.role;
        u->term = st.term;
        u->leader = st.leader;
        got = 1;
    }
    if (got && !u->hard_state_changed) {
        u->hard_state.term = st.term;
        u->hard_state.vote = st.vote;
        u->hard_state.commit = st.commit;
    }
    return got;
}

static int ext_persisted(void *ud, void *core, uint64_t seq)
{
    struct ext_node *n = core;
    return call_void(ud, n,
                     PyObject_CallMethod(n->obj, "persisted", "K", (unsigned long long)seq));
}

static int ext_snapshot_taken(void *ud, void *core, craft_index index, uint64_t size,
                              craft_index *compact_upto)
{
    struct craftpy_core *c = ud;
    struct ext_node *n = core;
    craftpy_arena_reset(&n->arena);
    PyObject *r = PyObject_CallMethod(n->obj, "snapshot_taken", "KK", (unsigned long long)index,
                                      (unsigned long long)size);
    if (r == NULL) {
        return fail(c);
    }
    unsigned long long upto = r == Py_None ? 0 : PyLong_AsUnsignedLongLong(r);
    Py_DECREF(r);
    if (PyErr_Occurred()) {
        return fail(c);
    }
    *compact_upto = upto;
    return 0;
}

struct craftpy_core *craftpy_core_new(PyObject *factory, void (*keep_error)(void *ud), void *ud)
{
    struct craftpy_core *c = PyMem_Calloc(1, sizeof(*c));
    if (c == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    c->factory = Py_NewRef(factory);
    c->keep_error = keep_error;
    c->ud = ud;
    c->table = (struct craft_sim_core){
        .ud = c,
        .create = ext_create,
        .destroy = ext_destroy,
        .step = ext_step,
        .tick = ext_tick,
        .propose = ext_propose,
        .take_update = ext_take_update,
        .persisted = ext_persisted,
        .snapshot_taken = ext_snapshot_taken,
        .status = ext_status,
        .term_at = ext_term_at,
    };
    return c;
}

const struct craft_sim_core *craftpy_core_table(struct craftpy_core *c)
{
    return &c->table;
}

void craftpy_core_free(struct craftpy_core *c)
{
    if (c != NULL) {
        Py_XDECREF(c->factory);
        PyMem_Free(c);
    }
}

int craftpy_core_traverse(struct craftpy_core *c, visitproc visit, void *arg)
{
    Py_VISIT(c->factory);
    return 0;
}
