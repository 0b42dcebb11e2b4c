/* sim.c: raft.core.sim: the deterministic simulator (craft/sim.h) with callbacks into Lua.
 *
 * This is the thin half; lua/raft/sim.lua builds the Cluster API on it (state machines per
 * node, applied records, errors). The simulator calls apply, snapshot, restore and trace from
 * inside its running calls (step, run_for, run_until, propose, restart, ...), always on the
 * caller's thread; each is a protected call, and the first error one raises is kept and raised
 * again when the running call returns. */
#include <stdlib.h>
#include <string.h>

#include "lsim.h"

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

void lraft_sim_keep(struct lraft_sim *s)
{
    if (s->err_ref == LUA_NOREF) {
        s->err_ref = luaL_ref(s->L, LUA_REGISTRYINDEX);
    } else {
        lua_pop(s->L, 1);
    }
}

/* Calls the function and nargs arguments on top; on error keeps the first one. */
bool lraft_sim_call(struct lraft_sim *s, int nargs, int nres);
#define call lraft_sim_call
bool lraft_sim_call(struct lraft_sim *s, int nargs, int nres)
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
    lua_pushinteger(L, s->sim != NULL ? (lua_Integer)craft_sim_boots(s->sim, node) : 1);
    call(s, 6, 0);
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
    /* The simulator sets the restored index before calling (0: an empty state machine). */
    struct craft_sim_node_status st = {.boots = 1};
    if (s->sim != NULL) { /* NULL while craft_sim_new boots the nodes the first time */
        craft_sim_status(s->sim, node, &st);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->restore_ref);
    lraft_pushu64(L, node);
    if (data != NULL) {
        lua_pushlstring(L, data, size);
    } else {
        lua_pushnil(L);
    }
    lraft_pushu64(L, st.restored_index);
    lua_pushinteger(L, (lua_Integer)st.boots);
    return call(s, 4, 0) ? 0 : CRAFT_EIO;
}

static void cb_event(void *ud, const struct craft_sim_event *ev)
{
    struct lraft_sim *s = ud;
    if (s->event_ref == LUA_NOREF || s->err_ref != LUA_NOREF) {
        return;
    }
    lua_State *L = s->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->event_ref);
    lraft_push_event(L, ev);
    call(s, 1, 0);
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
                   &s->pred_ref, &s->snap_ref, &s->err_ref, &s->event_ref, &s->preds_ref};
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
    B("torn_writes", o.torn_writes);
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
    s->event_ref = ref_fn(L, 1, "event");
    lua_newtable(L);
    s->preds_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    o.ud = s;
    o.apply = s->apply_ref != LUA_NOREF ? cb_apply : NULL;
    o.snapshot = s->snapshot_ref != LUA_NOREF ? cb_snapshot : NULL;
    o.restore = s->restore_ref != LUA_NOREF ? cb_restore : NULL;
    o.trace = s->trace_ref != LUA_NOREF ? cb_trace : NULL;
    o.event = s->event_ref != LUA_NOREF ? cb_event : NULL;
    /* unsafe = {"no_commit_rule", ...}: teaching only (docs/lab.md, "Break it"). */
    lua_getfield(L, 1, "unsafe");
    if (lua_type(L, -1) == LUA_TTABLE) {
        size_t n = lua_rawlen(L, -1);
        for (size_t k = 1; k <= n; k++) {
            lua_rawgeti(L, -1, (lua_Integer)k);
            const char *f = lua_tostring(L, -1);
            char name[64] = "";
            for (size_t i = 0; f != NULL && f[i] != '\0' && i + 1 < sizeof(name); i++) {
                name[i] = f[i] == '-' ? '_' : f[i];
                name[i + 1] = '\0';
            }
            lua_pop(L, 1);
            if (strcmp(name, "no_commit_rule") == 0) {
                o.node.unsafe.no_commit_rule = true;
            } else if (strcmp(name, "no_election_restriction") == 0) {
                o.node.unsafe.no_election_restriction = true;
            } else if (strcmp(name, "no_persist_before_vote") == 0) {
                o.node.unsafe.no_persist_before_vote = true;
            } else {
                return luaL_argerror(L, 1, "unsafe: no_commit_rule, no_election_restriction or "
                                           "no_persist_before_vote");
            }
        }
    }
    lua_pop(L, 1);
    lua_getfield(L, 1, "core");
    if (!lua_isnil(L, -1)) {
        luaL_argcheck(L, lua_type(L, -1) == LUA_TFUNCTION, 1,
                      "core must be a function core(id, config, boot) -> a Raft node");
        s->core = lraft_core_new(L, s); /* pops the factory */
        if (s->core == NULL) {
            release(L, s);
            return lraft_fail(L, CRAFT_ENOMEM, NULL);
        }
        o.core = lraft_core_table(s->core);
    } else {
        lua_pop(L, 1);
    }
    s->n = o.n_nodes;
    int ud = lua_gettop(L);
    int rc = craft_sim_new(&o, &s->sim);
    if (rc != 0) {
        lraft_core_free(L, s->core);
        s->core = NULL;
        raise_kept(s, L); /* a Lua core that failed at boot: its error */
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

/* sim:status(id): the node as the simulator sees it, the configuration in effect and, on a
 * leader, its view of each server's progress. */
static int l_status(lua_State *L)
{
    static const char *const modes[] = {"?", "probe", "replicate", "snapshot"};
    struct lraft_sim *s = check_sim(L);
    craft_id id = (craft_id)luaL_checkinteger(L, 2);
    struct craft_sim_node_status st;
    if (craft_sim_status(s->sim, id, &st) != 0) {
        return luaL_argerror(L, 2, "no such server in this simulation");
    }
    lua_createtable(L, 0, 20);
    SET("id", id);
    lua_pushboolean(L, st.up);
    lua_setfield(L, -2, "up");
    SET("applied", st.applied);
    SET("restored_index", st.restored_index);
    SET("boots", st.boots);
    if (!st.up) {
        return 1;
    }
    lua_pushstring(L, craft_role_name(st.role));
    lua_setfield(L, -2, "role");
    SET("term", st.term);
    SET("vote", st.vote);
    SET("leader", st.leader);
    SET("commit", st.commit);
    SET("first_index", st.first_index);
    SET("last_index", st.last_index);
    SET("last_term", st.last_term);
    SET("transfer_target", st.transfer_target);
    SET("conf_index", st.conf_index);
    lraft_push_ids(L, st.voters);
    lua_setfield(L, -2, "voters");
    lraft_push_ids(L, st.learners);
    lua_setfield(L, -2, "learners");
    struct craft_progress_info p[CRAFT_SIM_MAX_NODES];
    unsigned n = craft_sim_progress(s->sim, id, p, CRAFT_SIM_MAX_NODES);
    lua_newtable(L);
    for (unsigned k = 0; k < n && k < CRAFT_SIM_MAX_NODES; k++) {
        lua_createtable(L, 0, 6);
        lua_pushstring(L, p[k].role == CRAFT_VOTER ? "voter" : "learner");
        lua_setfield(L, -2, "role");
        lua_pushstring(L, p[k].mode <= 3 ? modes[p[k].mode] : "?");
        lua_setfield(L, -2, "state");
        SET("match", p[k].match);
        SET("next", p[k].next);
        SET("inflight", p[k].inflight);
        lua_pushboolean(L, p[k].recent_active);
        lua_setfield(L, -2, "recent_active");
        lua_rawseti(L, -2, (lua_Integer)p[k].id);
    }
    lua_setfield(L, -2, "progress");
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

/* ---- control for test authors (craft/sim.h, "Control") ---------------------------------------- */

/* A predicate: the function is s->preds_ref[key] (key 0 for one call, 1, 2, ... for rules). */
struct match_pred {
    struct lraft_sim *s;
    lua_Integer key;
};

static bool match_pred_cb(void *ud, const struct craft_message *m)
{
    struct match_pred *p = ud;
    struct lraft_sim *s = p->s;
    if (s->err_ref != LUA_NOREF) {
        return false;
    }
    lua_State *L = s->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->preds_ref);
    lua_rawgeti(L, -1, p->key);
    lua_remove(L, -2);
    lraft_push_msg(L, m);
    if (!call(s, 1, 1)) {
        return false;
    }
    bool r = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return r;
}

/* Reads {types =, from =, to =, where =} at idx (may be nil) into m. */
static void parse_match(lua_State *L, struct lraft_sim *s, int idx, struct craft_sim_match *m,
                        bool keep, struct match_pred *tmp)
{
    memset(m, 0, sizeof(*m));
    if (lua_isnoneornil(L, idx)) {
        return;
    }
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_getfield(L, idx, "types");
    if (lua_type(L, -1) == LUA_TTABLE) {
        size_t n = lua_rawlen(L, -1);
        for (size_t k = 1; k <= n; k++) {
            lua_rawgeti(L, -1, (lua_Integer)k);
            int t = lraft_msg_type(L, -1);
            lua_pop(L, 1);
            if (t < 0) {
                luaL_argerror(L, idx, "unknown message type in types");
            }
            m->types |= 1u << t;
        }
    } else if (!lua_isnil(L, -1)) {
        int t = lraft_msg_type(L, -1);
        if (t < 0) {
            luaL_argerror(L, idx, "unknown message type (RequestVote, RequestVoteResult, "
                                  "AppendEntries, AppendEntriesResult, InstallSnapshot, "
                                  "InstallSnapshotResult, TimeoutNow)");
        }
        m->types = 1u << t;
    }
    lua_pop(L, 1);
    m->from = lraft_field_u64(L, idx, "from", 0);
    m->to = lraft_field_u64(L, idx, "to", 0);
    if (m->from > s->n || m->to > s->n) {
        luaL_argerror(L, idx, "no such server in this simulation");
    }
    lua_getfield(L, idx, "where");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    luaL_argcheck(L, lua_type(L, -1) == LUA_TFUNCTION, idx, "where must be a function");
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->preds_ref);
    struct match_pred *p = tmp;
    lua_Integer key = 0;
    if (keep) {
        key = (lua_Integer)lua_rawlen(L, -1) + 1;
        p = lua_newuserdata(L, sizeof(*p)); /* kept alive by preds[key + 1] */
        lua_rawseti(L, -2, key + 1);
    }
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, key);
    lua_pop(L, 2);
    p->s = s;
    p->key = key;
    m->pred = match_pred_cb;
    m->pred_ud = p;
}

static const char *const actions[] = {"hold", "drop", "duplicate", "delay", NULL};

/* sim:rule_add(action, {types =, from =, to =, where =, delay_ms =, count =}) -> id */
static int l_rule_add(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    struct craft_sim_rule r;
    memset(&r, 0, sizeof(r));
    r.action = luaL_checkoption(L, 2, NULL, actions) + 1;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        r.delay_ms = lraft_field_u64(L, 3, "delay_ms", 0);
        r.count = lraft_field_u64(L, 3, "count", 0);
    }
    parse_match(L, s, 3, &r.match, true, NULL);
    uint64_t id = 0;
    int rc = craft_sim_rule_add(s->sim, &r, &id);
    if (rc != 0) {
        return lraft_fail(L, rc, NULL);
    }
    lraft_pushu64(L, id);
    return 1;
}

static int l_rule_remove(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    lua_pushboolean(L, craft_sim_rule_remove(s->sim, (uint64_t)luaL_checkinteger(L, 2)) == 0);
    return 1;
}

static int l_rules_clear(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    craft_sim_rules_clear(s->sim);
    return 0;
}

/* sim:held(selection) -> { message + id, held_at, ... } */
static int l_held(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    struct craft_sim_match m;
    struct match_pred tmp;
    parse_match(L, s, 2, &m, false, &tmp);
    size_t n = craft_sim_held(s->sim, &m, NULL, 0);
    struct craft_sim_held *h = calloc(n ? n : 1, sizeof(*h));
    if (h == NULL) {
        return luaL_error(L, "out of memory");
    }
    n = craft_sim_held(s->sim, &m, h, n);
    lua_createtable(L, (int)n, 0);
    for (size_t k = 0; k < n; k++) {
        lraft_push_msg(L, h[k].msg);
        SET("id", h[k].id);
        SET("held_at", h[k].held_at);
        lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
    free(h);
    raise_kept(s, L);
    return 1;
}

/* sim:deliver(selection, max) -> rc, n */
static int l_deliver(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    struct craft_sim_match m;
    struct match_pred tmp;
    parse_match(L, s, 2, &m, false, &tmp);
    lua_Integer max = luaL_optinteger(L, 3, 0);
    size_t n = 0;
    int rc = craft_sim_deliver(s->sim, &m, (size_t)(max < 0 ? 0 : max), &n);
    raise_kept(s, L);
    lua_pushinteger(L, rc);
    lua_pushinteger(L, (lua_Integer)n);
    return 2;
}

static int l_discard(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    struct craft_sim_match m;
    struct match_pred tmp;
    parse_match(L, s, 2, &m, false, &tmp);
    size_t n = 0;
    craft_sim_discard(s->sim, &m, &n);
    raise_kept(s, L);
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

/* sim:inject(message, delay_ms) -> rc (EINVAL: bad servers) or an error for a bad table */
static int l_inject(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    lua_Integer delay = luaL_optinteger(L, 3, 0);
    struct lraft_arena a = {0};
    struct craft_message m;
    const char *err = lraft_to_msg(L, 2, &m, &a);
    if (err != NULL) {
        lraft_arena_free(&a);
        return luaL_argerror(L, 2, err);
    }
    int rc = craft_sim_inject(s->sim, &m, (uint64_t)(delay < 0 ? 0 : delay));
    lraft_arena_free(&a);
    return push_rc(L, s, rc);
}

static int l_campaign(lua_State *L)
{
    return id_call(L, craft_sim_campaign);
}

static int l_tick_node(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    lua_Integer id = luaL_checkinteger(L, 2), n = luaL_optinteger(L, 3, 1);
    return push_rc(L, s, craft_sim_tick(s->sim, (craft_id)id, (unsigned)(n < 0 ? 0 : n)));
}

static int l_set_clock(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    lua_Integer id = luaL_checkinteger(L, 2), ms = luaL_checkinteger(L, 3);
    return push_rc(L, s, craft_sim_set_clock(s->sim, (craft_id)id, (unsigned)(ms < 0 ? 0 : ms)));
}

static int l_clock(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    lua_pushinteger(L, craft_sim_clock(s->sim, (craft_id)luaL_checkinteger(L, 2)));
    return 1;
}

#define CONFIG_FIELDS(X)                                                                       \
    X(election_ticks) X(heartbeat_ticks) X(max_batch_entries) X(max_batch_bytes)               \
    X(max_inflight) X(snapshot_entries) X(snapshot_bytes) X(snapshot_trailing)                 \
    X(snapshot_chunk_bytes) X(promote_distance) X(promote_rounds) X(lease_drift_ticks)
#define CONFIG_BOOLS(X) X(pre_vote) X(check_quorum) X(lease_reads)

static int l_node_config(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    struct craft_config c;
    if (craft_sim_node_config(s->sim, (craft_id)luaL_checkinteger(L, 2), &c) != 0) {
        return luaL_argerror(L, 2, "no such server in this simulation");
    }
    lua_newtable(L);
#define PUTU(f) SET(#f, c.f);
#define PUTB(f)                                                                                \
    lua_pushboolean(L, c.f);                                                                   \
    lua_setfield(L, -2, #f);
    CONFIG_FIELDS(PUTU)
    CONFIG_BOOLS(PUTB)
#undef PUTU
#undef PUTB
    return 1;
}

/* sim:set_node_config(id, {election_ticks =, ...}) -> rc: for the node's next boot */
static int l_set_node_config(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    craft_id id = (craft_id)luaL_checkinteger(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    struct craft_config c;
    if (craft_sim_node_config(s->sim, id, &c) != 0) {
        return luaL_argerror(L, 2, "no such server in this simulation");
    }
    lua_pushnil(L);
    while (lua_next(L, 3) != 0) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        bool known = false;
#define IS(f) known |= strcmp(k, #f) == 0;
        CONFIG_FIELDS(IS)
        CONFIG_BOOLS(IS)
#undef IS
        if (!known) {
            return luaL_error(L, "raft.sim: unknown protocol option '%s'", k);
        }
        lua_pop(L, 1);
    }
#define GETU(f) c.f = (__typeof__(c.f))lraft_field_u64(L, 3, #f, (uint64_t)c.f);
#define GETB(f) c.f = lraft_field_bool(L, 3, #f, c.f);
    CONFIG_FIELDS(GETU)
    CONFIG_BOOLS(GETB)
#undef GETU
#undef GETB
    lua_pushinteger(L, craft_sim_set_node_config(s->sim, id, &c));
    return 1;
}

static int l_link_stats(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    struct craft_sim_link_stats st;
    if (craft_sim_link_stats(s->sim, (craft_id)luaL_checkinteger(L, 2),
                             (craft_id)luaL_checkinteger(L, 3), &st) != 0) {
        return luaL_error(L, "raft.sim: link_stats: two servers of this simulation");
    }
    lua_createtable(L, 0, 5);
    SET("sent", st.sent);
    SET("bytes", st.bytes);
    SET("delivered", st.delivered);
    SET("dropped", st.dropped);
    SET("held", st.held);
    return 1;
}

/* sim:durable(id) -> {hard_state =, first_index =, last_index =, entries =, snapshot =} */
static int l_durable(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    craft_id id = (craft_id)luaL_checkinteger(L, 2);
    struct craft_sim_durable d;
    int rc = craft_sim_durable(s->sim, id, &d);
    if (rc == CRAFT_EINVAL) {
        return luaL_argerror(L, 2, "no such server in this simulation");
    }
    if (rc != 0) {
        return lraft_fail(L, rc, "reading the store");
    }
    const struct craft_store *st = craft_sim_store(s->sim, id);
    struct craft_entry *e = NULL;
    size_t n = 0;
    if (d.last_index >= d.first_index) {
        rc = st->entries(st->impl, d.first_index, d.last_index, NULL, &e, &n);
        if (rc != 0) {
            return lraft_fail(L, rc, "reading the store's entries");
        }
    }
    lua_createtable(L, 0, 5);
    lua_createtable(L, 0, 3);
    SET("term", d.hard_state.term);
    SET("vote", d.hard_state.vote);
    SET("commit", d.hard_state.commit);
    lua_setfield(L, -2, "hard_state");
    SET("first_index", d.first_index);
    SET("last_index", d.last_index);
    lua_createtable(L, (int)n, 0);
    for (size_t k = 0; k < n; k++) {
        lraft_push_entry(L, &e[k]);
        lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
    craft_free(NULL, e);
    lua_setfield(L, -2, "entries");
    if (d.has_snapshot) {
        lua_createtable(L, 0, 5);
        SET("index", d.snapshot_index);
        SET("term", d.snapshot_term);
        SET("size", d.snapshot_size);
        SET("conf_index", d.snapshot_conf_index);
        lraft_push_ids(L, d.snapshot_voters);
        lua_setfield(L, -2, "voters");
        lua_setfield(L, -2, "snapshot");
    }
    return 1;
}

static void add_event(void *ud, const struct craft_sim_event *ev)
{
    lua_State *L = ud;
    lraft_push_event(L, ev);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
}

static int l_events(lua_State *L)
{
    struct lraft_sim *s = check_sim(L);
    lua_newtable(L);
    craft_sim_dump_events(s->sim, add_event, L);
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
    s->L = L;
    craft_sim_free(s->sim);
    lraft_core_free(L, s->core); /* after the simulator: freeing it destroys the nodes */
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
    {"rule_add", l_rule_add},
    {"rule_remove", l_rule_remove},
    {"rules_clear", l_rules_clear},
    {"held", l_held},
    {"deliver", l_deliver},
    {"discard", l_discard},
    {"inject", l_inject},
    {"campaign", l_campaign},
    {"tick_node", l_tick_node},
    {"set_clock", l_set_clock},
    {"clock", l_clock},
    {"node_config", l_node_config},
    {"set_node_config", l_set_node_config},
    {"link_stats", l_link_stats},
    {"durable", l_durable},
    {"events", l_events},
    {"close", l_close},
    {NULL, NULL},
};

int lraft_sim_run_script(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    struct craft_sim_script_result r;
    if (craft_sim_script_run(text, len, &r) != 0) {
        return luaL_error(L, "raft.sim: out of memory running a transcript");
    }
    lua_pushlstring(L, r.output, r.output_len);
    lua_pushstring(L, r.report);
    lua_pushinteger(L, (lua_Integer)r.commands);
    lua_pushinteger(L, (lua_Integer)r.mismatches);
    craft_sim_script_result_free(&r);
    return 4;
}

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
