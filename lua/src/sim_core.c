/* A Raft written in Lua, run by the simulator in place of craft's core (craft/sim.h, "Bring
 * your own core"): the Lua twin of python/src/sim_core.c, with the same calls and the same
 * tables. The factory given as core = is called at every boot, core(id, config, boot), and
 * returns a node object whose methods the simulator calls: node:step(message), node:tick(),
 * node:propose(data) -> index, term (nil when it does not lead), node:take_update() -> table
 * or nil, node:persisted(seq), node:snapshot_taken(index, size) -> compact_upto,
 * node:status() -> table, node:term_at(index) -> term. Role changes are found here by
 * comparing status() with what was reported last. An error in a method stops the simulator and
 * is raised when the running call returns. */
#include <stdlib.h>
#include <string.h>

#include "lsim.h"

struct lraft_core {
    struct craft_sim_core table;
    struct lraft_sim *s;
    int factory_ref;
};

struct lext_node {
    int ref;
    struct lraft_arena arena;
    int role;
    craft_term term;
    craft_id leader;
    struct craft_snapshot_meta want;
    struct craft_install_snapshot chunk;
};

/* Keeps a message as the simulator's pending error and returns CRAFT_EINVAL. */
static int fail_msg(struct lraft_core *c, const char *what, const char *msg)
{
    lua_pushfstring(c->s->L, "raft.sim core: %s: %s", what, msg);
    lraft_sim_keep(c->s);
    return CRAFT_EINVAL;
}

/* Pushes node:name as a function and node as its first argument. */
static void method(lua_State *L, struct lext_node *n, const char *name)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, n->ref);
    lua_getfield(L, -1, name);
    lua_insert(L, -2);
}

static void push_conf_ids(lua_State *L, const struct craft_configuration *c)
{
    uint64_t voters = 0, learners = 0;
    for (unsigned k = 0; c != NULL && k < c->n; k++) {
        uint64_t bit = 1ull << ((c->servers[k].id - 1) & 63);
        *(c->servers[k].role == CRAFT_VOTER ? &voters : &learners) |= bit;
    }
    lraft_push_ids(L, voters);
    lua_setfield(L, -2, "voters");
    lraft_push_ids(L, learners);
    lua_setfield(L, -2, "learners");
}

#define SET(name, v)                                                                           \
    do {                                                                                       \
        lraft_pushu64(L, (v));                                                                 \
        lua_setfield(L, -2, name);                                                             \
    } while (0)

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

static void push_boot(lua_State *L, const struct craft_boot *b)
{
    lua_createtable(L, 0, 4);
    lua_createtable(L, 0, 3);
    SET("term", b->hard_state.term);
    SET("vote", b->hard_state.vote);
    SET("commit", b->hard_state.commit);
    lua_setfield(L, -2, "hard_state");
    lua_createtable(L, (int)b->n_entries, 0);
    for (size_t k = 0; k < b->n_entries; k++) {
        lraft_push_entry(L, &b->entries[k]);
        lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
    lua_setfield(L, -2, "entries");
    if (b->snapshot != NULL) {
        lua_createtable(L, 0, 6);
        SET("index", b->snapshot->index);
        SET("term", b->snapshot->term);
        SET("size", b->snapshot->size);
        SET("conf_index", b->snapshot->conf_index);
        push_conf_ids(L, &b->snapshot->conf);
        lua_setfield(L, -2, "snapshot");
    }
    if (b->bootstrap != NULL) {
        lua_createtable(L, 0, 3);
        push_conf_ids(L, b->bootstrap);
        /* The configuration entry the core writes at index 1, as craft's core encodes it. */
        void *data = NULL;
        size_t size = 0;
        if (craft_configuration_encode(b->bootstrap, NULL, &data, &size) == 0) {
            lua_pushlstring(L, data, size);
            lua_setfield(L, -2, "data");
            craft_free(NULL, data);
        }
        lua_setfield(L, -2, "bootstrap");
    }
    lraft_push_ids(L, boot_voters(b));
    lua_setfield(L, -2, "voters");
}

static void push_config(lua_State *L, const struct craft_config *c)
{
    lua_createtable(L, 0, 12);
    SET("id", c->id);
    SET("seed", c->seed);
    SET("election_ticks", c->election_ticks);
    SET("heartbeat_ticks", c->heartbeat_ticks);
    lua_pushboolean(L, c->pre_vote);
    lua_setfield(L, -2, "pre_vote");
    lua_pushboolean(L, c->check_quorum);
    lua_setfield(L, -2, "check_quorum");
    SET("max_batch_entries", c->max_batch_entries);
    SET("max_inflight", c->max_inflight);
    SET("snapshot_entries", c->snapshot_entries);
    SET("snapshot_trailing", c->snapshot_trailing);
    SET("snapshot_chunk_bytes", c->snapshot_chunk_bytes);
}

static int ext_create(void *ud, const struct craft_config *config, const struct craft_boot *b,
                      void **core)
{
    struct lraft_core *c = ud;
    lua_State *L = c->s->L;
    *core = NULL;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->factory_ref);
    lraft_pushu64(L, config->id);
    push_config(L, config);
    push_boot(L, b);
    if (!lraft_sim_call(c->s, 3, 1)) {
        return CRAFT_EINVAL;
    }
    if (lua_type(L, -1) != LUA_TTABLE) {
        lua_pop(L, 1);
        return fail_msg(c, "the factory", "must return a node (a table with methods)");
    }
    struct lext_node *n = calloc(1, sizeof(*n));
    if (n == NULL) {
        lua_pop(L, 1);
        return CRAFT_ENOMEM;
    }
    n->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    *core = n;
    return 0;
}

static void ext_destroy(void *ud, void *core)
{
    struct lraft_core *c = ud;
    struct lext_node *n = core;
    luaL_unref(c->s->L, LUA_REGISTRYINDEX, n->ref);
    lraft_arena_free(&n->arena);
    free(n);
}

static int call_void(struct lraft_core *c, struct lext_node *n, int nargs)
{
    lraft_arena_reset(&n->arena);
    return lraft_sim_call(c->s, nargs + 1, 0) ? 0 : CRAFT_EINVAL;
}

static int ext_step(void *ud, void *core, const struct craft_message *m)
{
    struct lraft_core *c = ud;
    method(c->s->L, core, "step");
    lraft_push_msg(c->s->L, m);
    return call_void(c, core, 1);
}

static int ext_tick(void *ud, void *core)
{
    struct lraft_core *c = ud;
    method(c->s->L, core, "tick");
    return call_void(c, core, 0);
}

static int ext_propose(void *ud, void *core, const void *data, size_t size, craft_index *index,
                       craft_term *term)
{
    struct lraft_core *c = ud;
    struct lext_node *n = core;
    lua_State *L = c->s->L;
    lraft_arena_reset(&n->arena);
    method(L, n, "propose");
    lua_pushlstring(L, data, size);
    if (!lraft_sim_call(c->s, 2, 2)) {
        return CRAFT_EINVAL;
    }
    if (lua_isnil(L, -2)) {
        lua_pop(L, 2);
        return CRAFT_ENOTLEADER;
    }
    craft_index i = (craft_index)lua_tointeger(L, -2);
    craft_term t = (craft_term)lua_tointeger(L, -1);
    lua_pop(L, 2);
    if (index != NULL) {
        *index = i;
    }
    if (term != NULL) {
        *term = t;
    }
    return 0;
}

static int parse_role(lua_State *L, int idx)
{
    if (lua_isnil(L, idx)) {
        return CRAFT_FOLLOWER;
    }
    if (lua_type(L, idx) == LUA_TNUMBER) {
        lua_Integer r = lua_tointeger(L, idx);
        return r >= CRAFT_FOLLOWER && r <= CRAFT_LEADER ? (int)r : -1;
    }
    const char *s = lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : NULL;
    for (int r = CRAFT_FOLLOWER; s != NULL && r <= CRAFT_LEADER; r++) {
        if (strcmp(s, craft_role_name(r)) == 0) {
            return r;
        }
    }
    return -1;
}

/* node:status() into out; 0, or CRAFT_EINVAL with the error kept. */
static int read_status(struct lraft_core *c, struct lext_node *n,
                       struct craft_sim_core_status *out)
{
    lua_State *L = c->s->L;
    memset(out, 0, sizeof(*out));
    method(L, n, "status");
    if (!lraft_sim_call(c->s, 1, 1)) {
        return CRAFT_EINVAL;
    }
    if (lua_type(L, -1) != LUA_TTABLE) {
        lua_pop(L, 1);
        return fail_msg(c, "status()", "must return a table");
    }
    int t = lua_gettop(L);
    lua_getfield(L, t, "role");
    out->role = parse_role(L, -1);
    lua_pop(L, 1);
    if (out->role < 0) {
        lua_pop(L, 1);
        return fail_msg(c, "status().role", "is follower, pre-candidate, candidate or leader");
    }
    out->term = lraft_field_u64(L, t, "term", 0);
    out->vote = lraft_field_u64(L, t, "vote", 0);
    out->leader = lraft_field_u64(L, t, "leader", 0);
    out->commit = lraft_field_u64(L, t, "commit", 0);
    out->first_index = lraft_field_u64(L, t, "first_index", 0);
    out->last_index = lraft_field_u64(L, t, "last_index", 0);
    out->last_term = lraft_field_u64(L, t, "last_term", 0);
    lua_getfield(L, t, "voters");
    if (lua_type(L, -1) == LUA_TTABLE) {
        size_t len = lua_rawlen(L, -1);
        for (size_t k = 1; k <= len; k++) {
            lua_rawgeti(L, -1, (lua_Integer)k);
            lua_Integer id = lua_tointeger(L, -1);
            lua_pop(L, 1);
            if (id >= 1 && id <= 64) {
                out->voters |= 1ull << (id - 1);
            }
        }
    }
    lua_pop(L, 2);
    return 0;
}

static int ext_status(void *ud, void *core, struct craft_sim_core_status *out)
{
    return read_status(ud, core, out);
}

static craft_term ext_term_at(void *ud, void *core, craft_index index)
{
    struct lraft_core *c = ud;
    lua_State *L = c->s->L;
    method(L, core, "term_at");
    lraft_pushu64(L, index);
    if (!lraft_sim_call(c->s, 2, 1)) {
        return 0;
    }
    craft_term t = (craft_term)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return t;
}

static const char *entries_from(lua_State *L, int t, const char *key, struct lext_node *n,
                                const struct craft_entry **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    lua_getfield(L, t, key);
    const char *err = NULL;
    if (lua_type(L, -1) == LUA_TTABLE) {
        size_t len = lua_rawlen(L, -1);
        struct craft_entry *v = lraft_arena_alloc(&n->arena, len * sizeof(*v));
        err = v == NULL ? "out of memory" : NULL;
        for (size_t k = 0; err == NULL && k < len; k++) {
            lua_rawgeti(L, -1, (lua_Integer)k + 1);
            err = lraft_to_entry(L, -1, &v[k], &n->arena);
            lua_pop(L, 1);
        }
        *out = v;
        *count = len;
    }
    lua_pop(L, 1);
    return err;
}

static const char *update_from(lua_State *L, int t, struct lext_node *n, struct craft_update *u)
{
    u->seq = lraft_field_u64(L, t, "seq", 0);
    lua_getfield(L, t, "hard_state");
    if (lua_type(L, -1) == LUA_TTABLE) {
        u->hard_state_changed = true;
        u->hard_state.term = lraft_field_u64(L, -1, "term", 0);
        u->hard_state.vote = lraft_field_u64(L, lua_gettop(L), "vote", 0);
        u->hard_state.commit = lraft_field_u64(L, lua_gettop(L), "commit", 0);
    }
    lua_pop(L, 1);
    const char *err = entries_from(L, t, "entries", n, &u->entries, &u->n_entries);
    if (err == NULL) {
        err = entries_from(L, t, "committed", n, &u->committed, &u->n_committed);
    }
    lua_getfield(L, t, "messages");
    if (err == NULL && lua_type(L, -1) == LUA_TTABLE) {
        size_t len = lua_rawlen(L, -1);
        struct craft_message *v = lraft_arena_alloc(&n->arena, len * sizeof(*v));
        err = v == NULL ? "out of memory" : NULL;
        for (size_t k = 0; err == NULL && k < len; k++) {
            lua_rawgeti(L, -1, (lua_Integer)k + 1);
            err = lraft_to_msg(L, -1, &v[k], &n->arena);
            lua_pop(L, 1);
        }
        u->messages = v;
        u->n_messages = len;
    }
    lua_pop(L, 1);
    lua_getfield(L, t, "snapshot_wanted");
    if (err == NULL && lua_type(L, -1) == LUA_TTABLE) {
        int w = lua_gettop(L);
        memset(&n->want, 0, sizeof(n->want));
        n->want.index = lraft_field_u64(L, w, "index", 0);
        n->want.term = lraft_field_u64(L, w, "term", 0);
        n->want.conf_index = lraft_field_u64(L, w, "conf_index", 0);
        lua_getfield(L, w, "voters");
        lua_getfield(L, w, "learners");
        err = lraft_to_conf(L, w + 1, w + 2, &n->want.conf, &n->arena);
        lua_pop(L, 2);
        u->snapshot_wanted = &n->want;
    }
    lua_pop(L, 1);
    lua_getfield(L, t, "snapshot_chunk");
    if (err == NULL && lua_type(L, -1) == LUA_TTABLE) {
        struct craft_message m;
        err = lraft_to_msg(L, -1, &m, &n->arena);
        if (err == NULL && m.type != CRAFT_MSG_INSTALL_SNAPSHOT) {
            err = "snapshot_chunk is the InstallSnapshot message received";
        }
        n->chunk = m.u.install_snapshot;
        u->snapshot_chunk = &n->chunk;
        u->snapshot_discard_log = lraft_field_bool(L, t, "snapshot_discard_log", false);
    }
    lua_pop(L, 1);
    u->dropped_from = lraft_field_u64(L, t, "dropped_from", 0);
    return err;
}

static int ext_take_update(void *ud, void *core, struct craft_update *u)
{
    struct lraft_core *c = ud;
    struct lext_node *n = core;
    lua_State *L = c->s->L;
    lraft_arena_reset(&n->arena);
    method(L, n, "take_update");
    if (!lraft_sim_call(c->s, 1, 1)) {
        return CRAFT_EINVAL;
    }
    int got = 0;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TTABLE) {
            lua_pop(L, 1);
            return fail_msg(c, "take_update()", "must return a table or nil");
        }
        got = 1;
        const char *err = update_from(L, lua_gettop(L), n, u);
        if (err != NULL) {
            lua_pop(L, 1);
            return fail_msg(c, "take_update()", err);
        }
    }
    lua_pop(L, 1);
    struct craft_sim_core_status st;
    int rc = read_status(c, n, &st);
    if (rc != 0) {
        return rc;
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
    struct lraft_core *c = ud;
    method(c->s->L, core, "persisted");
    lraft_pushu64(c->s->L, seq);
    return call_void(c, core, 1);
}

static int ext_snapshot_taken(void *ud, void *core, craft_index index, uint64_t size,
                              craft_index *compact_upto)
{
    struct lraft_core *c = ud;
    struct lext_node *n = core;
    lua_State *L = c->s->L;
    lraft_arena_reset(&n->arena);
    method(L, n, "snapshot_taken");
    lraft_pushu64(L, index);
    lraft_pushu64(L, size);
    if (!lraft_sim_call(c->s, 3, 1)) {
        return CRAFT_EINVAL;
    }
    lua_Integer upto = lua_isnil(L, -1) ? 0 : lua_tointeger(L, -1);
    lua_pop(L, 1);
    *compact_upto = upto < 0 ? 0 : (craft_index)upto;
    return 0;
}

struct lraft_core *lraft_core_new(lua_State *L, struct lraft_sim *s)
{
    struct lraft_core *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        lua_pop(L, 1);
        return NULL;
    }
    c->s = s;
    c->factory_ref = luaL_ref(L, LUA_REGISTRYINDEX);
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

const struct craft_sim_core *lraft_core_table(struct lraft_core *c)
{
    return &c->table;
}

void lraft_core_free(lua_State *L, struct lraft_core *c)
{
    if (c != NULL) {
        luaL_unref(L, LUA_REGISTRYINDEX, c->factory_ref);
        free(c);
    }
}
