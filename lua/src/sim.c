/* sim.c: raft.core.sim: the deterministic simulator (craft/sim.h) with callbacks into Lua.
 *
 * This is the thin half; lua/raft/sim.lua builds the Cluster API on it (state machines per
 * node, applied records, errors). The simulator calls apply, snapshot, restore and trace from
 * inside its running calls (step, run_for, run_until, propose, restart, ...), always on the
 * caller's thread; each is a protected call, and the first error one raises is kept and raised
 * again when the running call returns. */
#include <stdlib.h>
#include <string.h>

#include "craft/sim.h"
#include "lraft.h"

struct lraft_sim {
    struct craft_sim *sim;
    lua_State *L;
    int apply_ref, snapshot_ref, restore_ref, trace_ref, pred_ref;
    int snap_ref; /* the last snapshot string, borrowed by the simulator until the next one */
    int err_ref;  /* the first error a callback raised during the current call */
    unsigned n;
};

static struct lraft_sim *check_sim(lua_State *L)
{
    struct lraft_sim **p = luaL_checkudata(L, 1, LRAFT_SIM_MT);
    if (*p == NULL || (*p)->sim == NULL) {
        luaL_error(L, "raft.sim: the simulator is closed");
    }
    (*p)->L = L;
    return *p;
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Calls the function and nargs arguments on top; on error keeps the first one. */
static bool call(struct lraft_sim *s, int nargs, int nres)
{
    lua_State *L = s->L;
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    int rc = lua_pcall(L, nargs, nres, base);
    lua_remove(L, base);
    if (rc == LUA_OK) {
        return true;
    }
    if (s->err_ref == LUA_NOREF) {
        s->err_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    } else {
        lua_pop(L, 1);
    }
    return false;
}

/* After a running call: raise what a callback raised. */
static void raise_kept(struct lraft_sim *s, lua_State *L)
{
    if (s->err_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, s->err_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, s->err_ref);
        s->err_ref = LUA_NOREF;
        lua_error(L);
    }
}

static void cb_apply(void *ud, craft_id node, const struct craft_entry *e)
{
    struct lraft_sim *s = ud;
    if (s->apply_ref == LUA_NOREF || s->err_ref != LUA_NOREF) {
        return;
    }
    lua_State *L = s->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->apply_ref);
    lraft_pushu64(L, node);
    lraft_pushu64(L, e->index);
    lraft_pushu64(L, e->term);
    lua_pushinteger(L, e->type);
    lua_pushlstring(L, e->data != NULL ? e->data : "", e->size);
    call(s, 5, 0);
}

static int cb_snapshot(void *ud, craft_id node, const void **data, size_t *size)
{
    struct lraft_sim *s = ud;
    lua_State *L = s->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->snapshot_ref);
    lraft_pushu64(L, node);
    if (!call(s, 1, 1)) {
        return CRAFT_EIO;
    }
    if (lua_type(L, -1) != LUA_TSTRING) {
        lua_pushfstring(L, "snapshot returned a %s, want a string", luaL_typename(L, -1));
        if (s->err_ref == LUA_NOREF) {
            s->err_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        } else {
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        return CRAFT_EINVAL;
    }
    *data = lua_tolstring(L, -1, size);
    if (s->snap_ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, s->snap_ref);
    }
    s->snap_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

static int cb_restore(void *ud, craft_id node, const void *data, size_t size)
{
    struct lraft_sim *s = ud;
    lua_State *L = s->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->restore_ref);
    lraft_pushu64(L, node);
    if (data != NULL) {
        lua_pushlstring(L, data, size);
    } else {
        lua_pushnil(L);
    }
    return call(s, 2, 0) ? 0 : CRAFT_EIO;
}

static void cb_trace(void *ud, const char *line)
{
    struct lraft_sim *s = ud;
    if (s->trace_ref == LUA_NOREF || s->err_ref != LUA_NOREF) {
        return;
    }
    lua_State *L = s->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->trace_ref);
    lua_pushstring(L, line);
    call(s, 1, 0);
}

static int ref_fn(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return LUA_NOREF;
    }
    luaL_checktype(L, -1, LUA_TFUNCTION);
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

static void release(lua_State *L, struct lraft_sim *s)
{
    int *refs[] = {&s->apply_ref, &s->snapshot_ref, &s->restore_ref, &s->trace_ref,
                   &s->pred_ref, &s->snap_ref, &s->err_ref};
    for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++) {
        if (*refs[i] != LUA_NOREF) {
            luaL_unref(L, LUA_REGISTRYINDEX, *refs[i]);
            *refs[i] = LUA_NOREF;
        }
    }
}

/* core.sim(options) -> sim, or nil, message, code. Callbacks in options: apply(node, index,
 * term, type, data), snapshot(node) -> string, restore(node, data|nil), trace(line). */
int lraft_sim_open(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    struct craft_sim_options o;
    craft_sim_options_init(&o);
#define U(name, field) field = (__typeof__(field))lraft_opt_int(L, 1, name, (lua_Integer)(field))
#define B(name, field) field = lraft_opt_bool(L, 1, name, field)
    U("n_nodes", o.n_nodes);
    U("n_voters", o.n_voters);
    U("seed", o.seed);
    U("election_ticks", o.node.election_ticks);
    U("heartbeat_ticks", o.node.heartbeat_ticks);
    B("pre_vote", o.node.pre_vote);
    B("check_quorum", o.node.check_quorum);
    U("max_batch_entries", o.node.max_batch_entries);
    U("max_batch_bytes", o.node.max_batch_bytes);
    U("max_inflight", o.node.max_inflight);
    U("snapshot_entries", o.node.snapshot_entries);
    U("snapshot_bytes", o.node.snapshot_bytes);
    U("snapshot_trailing", o.node.snapshot_trailing);
    U("snapshot_chunk_bytes", o.node.snapshot_chunk_bytes);
    U("promote_distance", o.node.promote_distance);
    U("promote_rounds", o.node.promote_rounds);
    B("lease_reads", o.node.lease_reads);
    U("lease_drift_ticks", o.node.lease_drift_ticks);
    U("tick_ms", o.tick_ms);
    U("tick_jitter_ms", o.tick_jitter_ms);
    U("min_delay_ms", o.min_delay_ms);
    U("max_delay_ms", o.max_delay_ms);
    U("disk_min_ms", o.disk_min_ms);
    U("disk_max_ms", o.disk_max_ms);
    B("bootstrap", o.bootstrap);
    U("trace_depth", o.trace_depth);
#undef U
#undef B
    o.drop_rate = lraft_opt_num(L, 1, "drop_rate", o.drop_rate);
    o.dup_rate = lraft_opt_num(L, 1, "dup_rate", o.dup_rate);

    struct lraft_sim **p = lua_newuserdata(L, sizeof *p);
    *p = NULL;
    luaL_getmetatable(L, LRAFT_SIM_MT);
    lua_setmetatable(L, -2);
    struct lraft_sim *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return lraft_fail(L, CRAFT_ENOMEM, NULL);
    }
    *p = s;
    s->L = L;
    s->snap_ref = s->err_ref = s->pred_ref = LUA_NOREF;
    s->apply_ref = ref_fn(L, 1, "apply");
    s->snapshot_ref = ref_fn(L, 1, "snapshot");
    s->restore_ref = ref_fn(L, 1, "restore");
    s->trace_ref = ref_fn(L, 1, "trace");
    o.ud = s;
    o.apply = s->apply_ref != LUA_NOREF ? cb_apply : NULL;
    if (s->snapshot_ref != LUA_NOREF && s->restore_ref != LUA_NOREF) {
        o.snapshot = cb_snapshot;
        o.restore = cb_restore;
    }
    o.trace = s->trace_ref != LUA_NOREF ? cb_trace : NULL;
    s->n = o.n_nodes;
    int ud = lua_gettop(L);
    int rc = craft_sim_new(&o, &s->sim);
    if (rc != 0) {
        release(L, s);
        s->sim = NULL;
        return lraft_fail(L, rc, "raft.sim: bad options (n_nodes 1..64, probabilities in [0, 1], "
                                 "min delay <= max delay, heartbeat_ticks < election_ticks)");
    }
    raise_kept(s, L);
    lua_pushvalue(L, ud);
    return 1;
}

static int push_rc(lua_State *L, struct lraft_sim *s, int rc)
{
    raise_kept(s, L);
    lua_pushinteger(L, rc);
    return 1;
}

static int l_step(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    return push_rc(L, s, craft_sim_step(s->sim));
}

static int l_run_for(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    lua_Integer ms = luaL_checkinteger(L, 2);
    return push_rc(L, s, craft_sim_run_for(s->sim, (uint64_t)(ms < 0 ? 0 : ms)));
}

static bool pred(struct craft_sim *sim, void *ud)
{
    (void)sim;
    struct lraft_sim *s = ud;
    if (s->err_ref != LUA_NOREF) {
        return true; /* stop: an error is waiting to be raised */
    }
    lua_rawgeti(s->L, LUA_REGISTRYINDEX, s->pred_ref);
    if (!call(s, 0, 1)) {
        return true;
    }
    bool r = lua_toboolean(s->L, -1);
    lua_pop(s->L, 1);
    return r;
}

/* sim:run_until(pred, max_ms) -> rc (0: pred became true; ETIMEDOUT) */
static int l_run_until(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_Integer ms = luaL_checkinteger(L, 3);
    int saved = s->pred_ref;
    lua_pushvalue(L, 2);
    s->pred_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    int rc = craft_sim_run_until(s->sim, pred, s, (uint64_t)(ms < 0 ? 0 : ms));
    luaL_unref(L, LUA_REGISTRYINDEX, s->pred_ref);
    s->pred_ref = saved;
    return push_rc(L, s, rc);
}

/* sim:propose(node, data) -> rc, index, term */
static int l_propose(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    lua_Integer node = luaL_checkinteger(L, 2);
    size_t len;
    const char *data = luaL_checklstring(L, 3, &len);
    craft_index index = 0;
    craft_term term = 0;
    int rc = craft_sim_propose(s->sim, (craft_id)node, data, len, &index, &term);
    raise_kept(s, L);
    lua_pushinteger(L, rc);
    lraft_pushu64(L, index);
    lraft_pushu64(L, term);
    return 3;
}

static int id_call(lua_State *L, int (*fn)(struct craft_sim *, craft_id))
{
    struct lraft_sim *s = check_sim(L);
    lua_Integer id = luaL_checkinteger(L, 2);
    return push_rc(L, s, fn(s->sim, (craft_id)id));
}

static int l_crash(lua_State *L)
{
    return id_call(L, craft_sim_crash);
}

static int l_restart(lua_State *L)
{
    return id_call(L, craft_sim_restart);
}

static int l_transfer(lua_State *L)
{
    return id_call(L, craft_sim_transfer);
}

/* sim:partition({group of node 1, group of node 2, ...}) */
static int l_partition(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    unsigned group_of[CRAFT_SIM_MAX_NODES];
    for (unsigned i = 0; i < s->n && i < CRAFT_SIM_MAX_NODES; i++) {
        lua_rawgeti(L, 2, (lua_Integer)i + 1);
        group_of[i] = (unsigned)luaL_optinteger(L, -1, 0);
        lua_pop(L, 1);
    }
    return push_rc(L, s, craft_sim_partition(s->sim, group_of));
}

static int l_cut(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    lua_Integer a = luaL_checkinteger(L, 2), b = luaL_checkinteger(L, 3);
    return push_rc(L, s, craft_sim_cut(s->sim, (craft_id)a, (craft_id)b));
}

static int l_heal(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    return push_rc(L, s, craft_sim_heal(s->sim));
}

static int l_set_network(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    double drop = luaL_checknumber(L, 2), dup = luaL_checknumber(L, 3);
    lua_Integer lo = luaL_checkinteger(L, 4), hi = luaL_checkinteger(L, 5);
    if (lo < 0 || hi < 0) {
        return luaL_argerror(L, 4, "delays are >= 0");
    }
    return push_rc(L, s, craft_sim_set_network(s->sim, drop, dup, (unsigned)lo, (unsigned)hi));
}

static int l_set_disk(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    lua_Integer lo = luaL_checkinteger(L, 2), hi = luaL_checkinteger(L, 3);
    if (lo < 0 || hi < 0) {
        return luaL_argerror(L, 2, "latencies are >= 0");
    }
    return push_rc(L, s, craft_sim_set_disk(s->sim, (unsigned)lo, (unsigned)hi));
}

static int change(lua_State *L, int kind)
{
    struct lraft_sim *s = check_sim(L);
    lua_Integer id = luaL_checkinteger(L, 2);
    craft_index index = 0;
    int rc;
    if (kind == 0) {
        rc = craft_sim_add_server(s->sim, (craft_id)id, lua_toboolean(L, 3), &index);
    } else if (kind == 1) {
        rc = craft_sim_promote(s->sim, (craft_id)id, &index);
    } else {
        rc = craft_sim_remove_server(s->sim, (craft_id)id, &index);
    }
    raise_kept(s, L);
    lua_pushinteger(L, rc);
    lraft_pushu64(L, index);
    return 2;
}

static int l_add_server(lua_State *L)
{
    return change(L, 0);
}

static int l_promote(lua_State *L)
{
    return change(L, 1);
}

static int l_remove_server(lua_State *L)
{
    return change(L, 2);
}

/* sim:read(node, id, lease) -> rc */
static int l_read(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    lua_Integer node = luaL_checkinteger(L, 2), id = luaL_checkinteger(L, 3);
    int mode = lua_toboolean(L, 4) ? CRAFT_READ_LEASE : CRAFT_READ_INDEX;
    return push_rc(L, s, craft_sim_read_mode(s->sim, (craft_id)node, (uint64_t)id, mode));
}

static int l_read_result(lua_State *L)
{
    static const char *const states[] = {"?", "pending", "ready", "served", "failed"};
    struct lraft_sim *s = check_sim(L);
    lua_Integer id = luaL_checkinteger(L, 2);
    struct craft_sim_read r;
    if (craft_sim_read_result(s->sim, (uint64_t)id, &r) != 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_createtable(L, 0, 10);
    lraft_pushu64(L, r.id);
    lua_setfield(L, -2, "id");
    lraft_pushu64(L, r.node);
    lua_setfield(L, -2, "node");
    lua_pushstring(L, r.mode == CRAFT_READ_LEASE ? "lease" : "linearizable");
    lua_setfield(L, -2, "mode");
    lua_pushstring(L, r.state <= 4 ? states[r.state] : "?");
    lua_setfield(L, -2, "state");
    lua_pushinteger(L, r.status);
    lua_setfield(L, -2, "status");
    lraft_pushu64(L, r.index);
    lua_setfield(L, -2, "index");
    lraft_pushu64(L, r.committed);
    lua_setfield(L, -2, "committed");
    lraft_pushu64(L, r.applied);
    lua_setfield(L, -2, "applied");
    lraft_pushu64(L, r.requested_at);
    lua_setfield(L, -2, "requested_at");
    lraft_pushu64(L, r.completed_at);
    lua_setfield(L, -2, "completed_at");
    return 1;
}

static int l_note(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    craft_sim_note(s->sim, luaL_checkstring(L, 2));
    raise_kept(s, L);
    return 0;
}

static int l_leader(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    lraft_pushu64(L, craft_sim_leader(s->sim));
    return 1;
}

static int l_is_up(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    lua_pushboolean(L, craft_sim_is_up(s->sim, (craft_id)luaL_checkinteger(L, 2)));
    return 1;
}

#define SET(name, v)                                                                             \
    do {                                                                                       \
        lraft_pushu64(L, (v));                                                                 \
        lua_setfield(L, -2, name);                                                             \
    } while (0)

static int l_status(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    craft_id id = (craft_id)luaL_checkinteger(L, 2);
    const struct craft_node *n = craft_sim_node(s->sim, id);
    lua_createtable(L, 0, 10);
    SET("id", id);
    lua_pushboolean(L, n != NULL);
    lua_setfield(L, -2, "up");
    SET("applied", craft_sim_applied_index(s->sim, id));
    if (n == NULL) {
        return 1;
    }
    lua_pushstring(L, craft_role_name(craft_node_role(n)));
    lua_setfield(L, -2, "role");
    SET("term", craft_node_term(n));
    SET("vote", craft_node_vote(n));
    SET("leader", craft_node_leader(n));
    SET("commit", craft_node_commit(n));
    SET("first_index", craft_node_first_index(n));
    SET("last_index", craft_node_last_index(n));
    SET("transfer_target", craft_node_transfer_target(n));
    return 1;
}

/* sim:log(id) -> { {index, term, type, data}, ... } (the entries the node's core holds) */
static int l_log(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    craft_id id = (craft_id)luaL_checkinteger(L, 2);
    const struct craft_node *n = craft_sim_node(s->sim, id);
    lua_newtable(L);
    if (n == NULL) {
        return 1;
    }
    craft_index first = craft_node_first_index(n), last = craft_node_last_index(n);
    lua_Integer k = 1;
    for (craft_index i = first; i <= last && i != 0; i++) {
        const struct craft_entry *e = craft_node_entry(n, i);
        if (e == NULL) {
            continue;
        }
        lua_createtable(L, 0, 4);
        SET("index", e->index);
        SET("term", e->term);
        lua_pushinteger(L, e->type);
        lua_setfield(L, -2, "type");
        lua_pushlstring(L, e->data != NULL ? e->data : "", e->size);
        lua_setfield(L, -2, "data");
        lua_rawseti(L, -2, k++);
    }
    return 1;
}

static int l_committed(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    lraft_pushu64(L, craft_sim_committed(s->sim));
    return 1;
}

static int l_now(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    lraft_pushu64(L, craft_sim_now(s->sim));
    return 1;
}

static int l_stats(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    struct craft_sim_stats st;
    craft_sim_stats(s->sim, &st);
    lua_createtable(L, 0, 10);
    SET("events", st.events);
    SET("ticks", st.ticks);
    SET("disk_writes", st.disk_writes);
    SET("crashes", st.crashes);
    SET("restarts", st.restarts);
    SET("changes", st.changes);
    SET("transfers", st.transfers);
    SET("reads_served", st.reads_served);
    SET("reads_failed", st.reads_failed);
    lua_newtable(L);
    for (int t = 1; t <= CRAFT_MSG_TYPE_MAX; t++) {
        lua_createtable(L, 0, 5);
        SET("sent", st.sent[t]);
        SET("bytes", st.bytes[t]);
        SET("delivered", st.delivered[t]);
        SET("dropped", st.dropped[t]);
        SET("duplicated", st.duplicated[t]);
        lua_setfield(L, -2, craft_message_type_name(t));
    }
    lua_setfield(L, -2, "messages");
    return 1;
}

static int l_check(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    return push_rc(L, s, craft_sim_check(s->sim));
}

static int l_error(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    const char *e = craft_sim_error(s->sim);
    if (e == NULL) {
        lua_pushnil(L);
    } else {
        lua_pushstring(L, e);
    }
    return 1;
}

static void add_line(void *ud, const char *line)
{
    lua_State *L = ud;
    lua_pushstring(L, line);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
}

static int l_trace_lines(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    lua_newtable(L);
    craft_sim_dump_trace(s->sim, add_line, L);
    return 1;
}

static int l_close(lua_State *L)
{
    struct lraft_sim **p = luaL_checkudata(L, 1, LRAFT_SIM_MT);
    struct lraft_sim *s = *p;
    if (s == NULL) {
        return 0;
    }
    *p = NULL;
    craft_sim_free(s->sim);
    release(L, s);
    free(s);
    return 0;
}

static const luaL_Reg methods[] = {
    {"step", l_step},
    {"run_for", l_run_for},
    {"run_until", l_run_until},
    {"propose", l_propose},
    {"crash", l_crash},
    {"restart", l_restart},
    {"partition", l_partition},
    {"cut", l_cut},
    {"heal", l_heal},
    {"set_network", l_set_network},
    {"set_disk", l_set_disk},
    {"add_server", l_add_server},
    {"promote", l_promote},
    {"remove_server", l_remove_server},
    {"transfer", l_transfer},
    {"read", l_read},
    {"read_result", l_read_result},
    {"note", l_note},
    {"leader", l_leader},
    {"is_up", l_is_up},
    {"status", l_status},
    {"log", l_log},
    {"committed", l_committed},
    {"now", l_now},
    {"stats", l_stats},
    {"check", l_check},
    {"error", l_error},
    {"trace_lines", l_trace_lines},
    {"close", l_close},
    {NULL, NULL},
};

void lraft_sim_init(lua_State *L)
{
    if (luaL_newmetatable(L, LRAFT_SIM_MT)) {
        lua_newtable(L);
        luaL_setfuncs(L, methods, 0);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_close);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
}
