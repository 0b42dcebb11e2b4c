/* Messages, entries and simulator events as Lua tables, and messages and entries back from
 * tables (for raft.sim's message predicates, inject, and a Raft written in Lua). The field
 * names are those of craft.h and of craft.sim's dicts in Python: one description serves both
 * (docs/simulator.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsim.h"

void *lraft_arena_alloc(struct lraft_arena *a, size_t size)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 16;
        void **v = realloc(a->blocks, cap * sizeof(*v));
        if (v == NULL) {
            return NULL;
        }
        a->blocks = v;
        a->cap = cap;
    }
    void *p = malloc(size ? size : 1);
    if (p != NULL) {
        a->blocks[a->n++] = p;
    }
    return p;
}

void lraft_arena_reset(struct lraft_arena *a)
{
    for (size_t k = 0; k < a->n; k++) {
        free(a->blocks[k]);
    }
    a->n = 0;
}

void lraft_arena_free(struct lraft_arena *a)
{
    lraft_arena_reset(a);
    free(a->blocks);
    a->blocks = NULL;
    a->cap = 0;
}

static const char *const entry_types[] = {NULL, "command", "barrier", "config"};

#define SETU(name, v)                                                                          \
    do {                                                                                       \
        lraft_pushu64(L, (v));                                                                 \
        lua_setfield(L, -2, name);                                                             \
    } while (0)
#define SETB(name, v)                                                                          \
    do {                                                                                       \
        lua_pushboolean(L, (v));                                                               \
        lua_setfield(L, -2, name);                                                             \
    } while (0)
#define SETS(name, v)                                                                          \
    do {                                                                                       \
        lua_pushstring(L, (v));                                                                \
        lua_setfield(L, -2, name);                                                             \
    } while (0)

void lraft_push_ids(lua_State *L, uint64_t mask)
{
    lua_newtable(L);
    lua_Integer k = 1;
    for (unsigned i = 0; i < 64; i++) {
        if (mask & (1ull << i)) {
            lua_pushinteger(L, (lua_Integer)i + 1);
            lua_rawseti(L, -2, k++);
        }
    }
}

void lraft_push_entry(lua_State *L, const struct craft_entry *e)
{
    lua_createtable(L, 0, 4);
    SETU("index", e->index);
    SETU("term", e->term);
    SETS("type", e->type >= 1 && e->type <= 3 ? entry_types[e->type] : "unknown");
    lua_pushlstring(L, e->data != NULL ? e->data : "", e->data != NULL ? e->size : 0);
    lua_setfield(L, -2, "data");
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

void lraft_push_msg(lua_State *L, const struct craft_message *m)
{
    lua_createtable(L, 0, 10);
    SETS("type", craft_message_type_name(m->type));
    SETU("from", m->from);
    SETU("to", m->to);
    SETU("term", m->term);
    switch (m->type) {
    case CRAFT_MSG_REQUEST_VOTE:
        SETU("last_log_index", m->u.request_vote.last_log_index);
        SETU("last_log_term", m->u.request_vote.last_log_term);
        SETB("pre_vote", m->u.request_vote.pre_vote);
        SETB("transfer", m->u.request_vote.transfer);
        break;
    case CRAFT_MSG_REQUEST_VOTE_RESULT:
        SETB("granted", m->u.request_vote_result.granted);
        SETB("pre_vote", m->u.request_vote_result.pre_vote);
        break;
    case CRAFT_MSG_APPEND_ENTRIES: {
        const struct craft_append_entries *a = &m->u.append_entries;
        SETU("prev_index", a->prev_index);
        SETU("prev_term", a->prev_term);
        SETU("commit", a->commit);
        SETU("ctx", a->ctx);
        lua_createtable(L, a->entries ? (int)a->n_entries : 0, 0);
        for (size_t k = 0; a->entries != NULL && k < a->n_entries; k++) {
            lraft_push_entry(L, &a->entries[k]);
            lua_rawseti(L, -2, (lua_Integer)k + 1);
        }
        lua_setfield(L, -2, "entries");
        SETU("n_entries", a->n_entries);
        break;
    }
    case CRAFT_MSG_APPEND_ENTRIES_RESULT: {
        const struct craft_append_entries_result *r = &m->u.append_entries_result;
        SETB("rejected", r->rejected);
        SETU("index", r->index);
        SETU("hint_index", r->hint_index);
        SETU("hint_term", r->hint_term);
        SETU("last_index", r->last_index);
        SETU("ctx", r->ctx);
        break;
    }
    case CRAFT_MSG_INSTALL_SNAPSHOT: {
        const struct craft_install_snapshot *s = &m->u.install_snapshot;
        SETU("snapshot_index", s->meta.index);
        SETU("snapshot_term", s->meta.term);
        SETU("snapshot_size", s->meta.size);
        SETU("conf_index", s->meta.conf_index);
        lraft_push_ids(L, mask_of(&s->meta.conf, CRAFT_VOTER));
        lua_setfield(L, -2, "voters");
        lraft_push_ids(L, mask_of(&s->meta.conf, CRAFT_LEARNER));
        lua_setfield(L, -2, "learners");
        SETU("offset", s->offset);
        SETU("length", s->size);
        if (s->data != NULL) {
            lua_pushlstring(L, s->data, s->size);
            lua_setfield(L, -2, "data");
        }
        SETB("done", s->done);
        break;
    }
    case CRAFT_MSG_INSTALL_SNAPSHOT_RESULT: {
        const struct craft_install_snapshot_result *r = &m->u.install_snapshot_result;
        SETU("index", r->index);
        SETU("offset", r->offset);
        SETB("rejected", r->rejected);
        SETB("done", r->done);
        break;
    }
    default:
        break;
    }
}

static const char *const event_kinds[] = {
    NULL,        "send",      "deliver", "drop", "persist", "role",       "commit",
    "propose",   "crash",     "restart", "partition", "cut", "heal",      "network",
    "note",      "violation", "membership", "transfer", "read",
};

static const char *const fates[] = {"ok",   "lost", "duplicate", "partitioned", "down",
                                    "unknown", "held", "rule", "injected"};

void lraft_push_event(lua_State *L, const struct craft_sim_event *ev)
{
    size_t nk = sizeof(event_kinds) / sizeof(event_kinds[0]);
    char line[512];
    craft_sim_event_format(ev, line, sizeof(line));
    lua_createtable(L, 0, 8);
    SETU("time", ev->time);
    SETS("kind", ev->kind < nk && event_kinds[ev->kind] ? event_kinds[ev->kind] : "?");
    SETU("node", ev->node);
    SETS("line", line);
    switch (ev->kind) {
    case CRAFT_SIM_EV_SEND:
    case CRAFT_SIM_EV_DELIVER:
    case CRAFT_SIM_EV_DROP:
        SETU("peer", ev->peer);
        SETS("fate", ev->fate < 9 ? fates[ev->fate] : "?");
        lraft_push_msg(L, &ev->msg);
        lua_setfield(L, -2, "message");
        break;
    case CRAFT_SIM_EV_PERSIST:
    case CRAFT_SIM_EV_RESTART:
        SETU("seq", ev->seq);
        SETU("term", ev->term);
        SETU("vote", ev->leader);
        SETU("index", ev->index);
        break;
    case CRAFT_SIM_EV_ROLE:
        SETS("role", craft_role_name(ev->role));
        SETU("term", ev->term);
        SETU("leader", ev->leader);
        break;
    case CRAFT_SIM_EV_COMMIT:
        SETU("index", ev->index);
        break;
    case CRAFT_SIM_EV_PROPOSE:
    case CRAFT_SIM_EV_MEMBERSHIP:
    case CRAFT_SIM_EV_TRANSFER:
    case CRAFT_SIM_EV_READ:
        SETU("peer", ev->peer);
        SETU("index", ev->index);
        SETU("term", ev->term);
        SETU("seq", ev->seq);
        SETS("rc", ev->rc ? craft_err_name(ev->rc) : "");
        SETS("text", ev->text);
        break;
    case CRAFT_SIM_EV_CUT:
        SETU("peer", ev->peer);
        break;
    default:
        SETS("text", ev->text);
        break;
    }
}

/* ---- from Lua values ----------------------------------------------------------------------- */

uint64_t lraft_field_u64(lua_State *L, int t, const char *k, uint64_t def)
{
    lua_getfield(L, t, k);
    uint64_t v = def;
    if (lua_type(L, -1) == LUA_TNUMBER) {
        lua_Integer i = lua_tointeger(L, -1);
        v = i < 0 ? 0 : (uint64_t)i;
    } else if (lua_type(L, -1) == LUA_TBOOLEAN) {
        v = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

bool lraft_field_bool(lua_State *L, int t, const char *k, bool def)
{
    lua_getfield(L, t, k);
    bool v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1) != 0;
    lua_pop(L, 1);
    return v;
}

int lraft_msg_type(lua_State *L, int idx)
{
    if (lua_type(L, idx) == LUA_TNUMBER) {
        lua_Integer t = lua_tointeger(L, idx);
        return t >= 1 && t <= CRAFT_MSG_TYPE_MAX ? (int)t : -1;
    }
    const char *s = lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : NULL;
    for (int t = 1; s != NULL && t <= CRAFT_MSG_TYPE_MAX; t++) {
        if (strcmp(s, craft_message_type_name(t)) == 0) {
            return t;
        }
    }
    return -1;
}

/* The string at idx into the arena. */
static const char *to_bytes(lua_State *L, int idx, struct lraft_arena *a, const void **data,
                            size_t *size)
{
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (s == NULL) {
        return "data must be a string";
    }
    void *p = lraft_arena_alloc(a, len);
    if (p == NULL) {
        return "out of memory";
    }
    memcpy(p, s, len);
    *data = p;
    *size = len;
    return NULL;
}

const char *lraft_to_entry(lua_State *L, int idx, struct craft_entry *e, struct lraft_arena *a)
{
    memset(e, 0, sizeof(*e));
    if (lua_type(L, idx) != LUA_TTABLE) {
        return "an entry is a table {index =, term =, type =, data =}";
    }
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    e->index = lraft_field_u64(L, idx, "index", 0);
    e->term = lraft_field_u64(L, idx, "term", 0);
    e->type = CRAFT_ENTRY_COMMAND;
    lua_getfield(L, idx, "type");
    if (lua_type(L, -1) == LUA_TSTRING) {
        const char *t = lua_tostring(L, -1);
        e->type = 0;
        for (int k = 1; k <= 3; k++) {
            if (strcmp(t, entry_types[k]) == 0) {
                e->type = (uint8_t)k;
            }
        }
    } else if (lua_type(L, -1) == LUA_TNUMBER) {
        lua_Integer t = lua_tointeger(L, -1);
        e->type = t >= 1 && t <= 3 ? (uint8_t)t : 0;
    }
    lua_pop(L, 1);
    if (e->type == 0) {
        return "an entry's type is \"command\", \"barrier\" or \"config\"";
    }
    lua_getfield(L, idx, "data");
    const char *err = NULL;
    if (!lua_isnil(L, -1)) {
        err = to_bytes(L, -1, a, &e->data, &e->size);
    }
    lua_pop(L, 1);
    return err;
}

static const char *add_ids(lua_State *L, int t, int role, struct craft_server *servers,
                           unsigned *n)
{
    if (t == 0 || lua_type(L, t) != LUA_TTABLE) {
        return NULL;
    }
    size_t len = lua_rawlen(L, t);
    for (size_t k = 1; k <= len; k++) {
        lua_rawgeti(L, t, (lua_Integer)k);
        lua_Integer id = lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (id < 1 || id > 64 || *n >= CRAFT_SIM_MAX_NODES) {
            return "server ids are 1..64";
        }
        struct craft_server *s = &servers[(*n)++];
        memset(s, 0, sizeof(*s));
        s->id = (craft_id)id;
        s->role = (uint8_t)role;
        snprintf(s->address, sizeof(s->address), "sim-%d", (int)id);
    }
    return NULL;
}

const char *lraft_to_conf(lua_State *L, int voters, int learners, struct craft_configuration *c,
                          struct lraft_arena *a)
{
    c->n = 0;
    c->servers = lraft_arena_alloc(a, CRAFT_SIM_MAX_NODES * sizeof(struct craft_server));
    if (c->servers == NULL) {
        return "out of memory";
    }
    const char *err = add_ids(L, voters, CRAFT_VOTER, c->servers, &c->n);
    return err ? err : add_ids(L, learners, CRAFT_LEARNER, c->servers, &c->n);
}

const char *lraft_to_msg(lua_State *L, int idx, struct craft_message *m, struct lraft_arena *a)
{
    memset(m, 0, sizeof(*m));
    if (lua_type(L, idx) != LUA_TTABLE) {
        return "a message is a table (docs/simulator.md)";
    }
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    lua_getfield(L, idx, "type");
    int type = lraft_msg_type(L, -1);
    lua_pop(L, 1);
    if (type < 0) {
        return "unknown message type (RequestVote, RequestVoteResult, AppendEntries, "
               "AppendEntriesResult, InstallSnapshot, InstallSnapshotResult, TimeoutNow)";
    }
    m->type = (uint8_t)type;
    m->from = lraft_field_u64(L, idx, "from", 0);
    m->to = lraft_field_u64(L, idx, "to", 0);
    m->term = lraft_field_u64(L, idx, "term", 0);
    const char *err = NULL;
    switch (type) {
    case CRAFT_MSG_REQUEST_VOTE:
        m->u.request_vote.last_log_index = lraft_field_u64(L, idx, "last_log_index", 0);
        m->u.request_vote.last_log_term = lraft_field_u64(L, idx, "last_log_term", 0);
        m->u.request_vote.pre_vote = lraft_field_bool(L, idx, "pre_vote", false);
        m->u.request_vote.transfer = lraft_field_bool(L, idx, "transfer", false);
        break;
    case CRAFT_MSG_REQUEST_VOTE_RESULT:
        m->u.request_vote_result.granted = lraft_field_bool(L, idx, "granted", false);
        m->u.request_vote_result.pre_vote = lraft_field_bool(L, idx, "pre_vote", false);
        break;
    case CRAFT_MSG_APPEND_ENTRIES: {
        struct craft_append_entries *ae = &m->u.append_entries;
        ae->prev_index = lraft_field_u64(L, idx, "prev_index", 0);
        ae->prev_term = lraft_field_u64(L, idx, "prev_term", 0);
        ae->commit = lraft_field_u64(L, idx, "commit", 0);
        ae->ctx = lraft_field_u64(L, idx, "ctx", 0);
        lua_getfield(L, idx, "entries");
        if (lua_type(L, -1) == LUA_TTABLE) {
            size_t n = lua_rawlen(L, -1);
            struct craft_entry *v = lraft_arena_alloc(a, n * sizeof(*v));
            err = v == NULL ? "out of memory" : NULL;
            for (size_t k = 0; err == NULL && k < n; k++) {
                lua_rawgeti(L, -1, (lua_Integer)k + 1);
                err = lraft_to_entry(L, -1, &v[k], a);
                lua_pop(L, 1);
            }
            ae->entries = v;
            ae->n_entries = n;
        }
        lua_pop(L, 1);
        break;
    }
    case CRAFT_MSG_APPEND_ENTRIES_RESULT: {
        struct craft_append_entries_result *r = &m->u.append_entries_result;
        r->rejected = lraft_field_bool(L, idx, "rejected", false);
        r->index = lraft_field_u64(L, idx, "index", 0);
        r->hint_index = lraft_field_u64(L, idx, "hint_index", 0);
        r->hint_term = lraft_field_u64(L, idx, "hint_term", 0);
        r->last_index = lraft_field_u64(L, idx, "last_index", 0);
        r->ctx = lraft_field_u64(L, idx, "ctx", 0);
        break;
    }
    case CRAFT_MSG_INSTALL_SNAPSHOT: {
        struct craft_install_snapshot *s = &m->u.install_snapshot;
        s->meta.index = lraft_field_u64(L, idx, "snapshot_index", 0);
        s->meta.term = lraft_field_u64(L, idx, "snapshot_term", 0);
        s->meta.size = lraft_field_u64(L, idx, "snapshot_size", 0);
        s->meta.conf_index = lraft_field_u64(L, idx, "conf_index", 0);
        s->offset = lraft_field_u64(L, idx, "offset", 0);
        s->size = (size_t)lraft_field_u64(L, idx, "length", 0);
        s->done = lraft_field_bool(L, idx, "done", false);
        lua_getfield(L, idx, "voters");
        lua_getfield(L, idx, "learners");
        err = lraft_to_conf(L, lua_gettop(L) - 1, lua_gettop(L), &s->meta.conf, a);
        lua_pop(L, 2);
        lua_getfield(L, idx, "data");
        if (err == NULL && !lua_isnil(L, -1)) {
            err = to_bytes(L, -1, a, &s->data, &s->size);
        }
        lua_pop(L, 1);
        break;
    }
    case CRAFT_MSG_INSTALL_SNAPSHOT_RESULT: {
        struct craft_install_snapshot_result *r = &m->u.install_snapshot_result;
        r->index = lraft_field_u64(L, idx, "index", 0);
        r->offset = lraft_field_u64(L, idx, "offset", 0);
        r->rejected = lraft_field_bool(L, idx, "rejected", false);
        r->done = lraft_field_bool(L, idx, "done", false);
        break;
    }
    default:
        break;
    }
    return err;
}
