/* store.c: a struct craft_store (craft.h) whose functions call a Lua table of hook functions: a
 * log store written in Lua (raft.node{..., log_store = store}; raft.memory_store() is one, and
 * docs/lua.md lists the hooks). python/src/pystore.c is the Python twin: same method names,
 * same semantics.
 *
 * Threads. The runtime calls its store on the loop thread (while a node opens and closes) and
 * on its disk worker thread (every write and read of a running node), never two calls at
 * once. A Lua state must not be entered from another thread, so a call that arrives on the
 * worker is handed to the loop thread (lraft_marshal, as snapshot and restore are) and the
 * worker waits for the answer; a call on the loop thread runs directly. A consequence: the
 * disk makes progress only while the loop runs (raft.run, raft.poll, a blocking call).
 *
 * Errors. A hook answers "compacted" / "unavailable" by returning nil, "compacted" or nil,
 * "unavailable" (CRAFT_ECOMPACTED, CRAFT_EUNAVAILABLE: entries, term, truncate). Anything else
 * that goes wrong -- an error raised, nil plus another message, a value of the wrong shape --
 * is a failed write or read: the error, with its traceback, goes to raft.on_error's handler
 * (or is raised by the call that runs the loop), and the call fails with CRAFT_EIO, which stops
 * the node (the runtime's rule: a store that lost a write cannot be trusted). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lraft.h"

struct lstore {
    struct craft_store base;
    struct lraft_loop *m;
    unsigned long long id; /* the node's, for messages */
    int ref;               /* the Lua store table */
};

/* A writer or reader handed to the runtime: the Lua value, referenced. */
struct handle {
    int ref;
};

struct op;
typedef void (*op_fn)(lua_State *L, struct op *o);

struct op {
    struct lstore *s;
    op_fn fn;
    int rc;
    /* arguments and results, by operation */
    const struct craft_entry *in_entries;
    size_t n;
    uint64_t a, b;
    struct craft_hard_state *hs;
    const struct craft_hard_state *hs_in;
    const struct craft_snapshot_meta *meta_in;
    struct craft_snapshot_meta *meta_out;
    const struct craft_allocator *alloc;
    struct craft_entry **out;
    size_t *out_n;
    uint64_t *u1, *u2;
    struct handle *h;
    void **hp;
    const void *buf;
    void *obuf;
    size_t len;
    size_t *got;
};

/* ---- calling hooks ------------------------------------------------------------------------- */

static bool to_u64(lua_State *L, int i, uint64_t *out)
{
    if (lua_type(L, i) != LUA_TNUMBER) {
        return false;
    }
#if LUA_VERSION_NUM >= 503
    int isnum = 0;
    lua_Integer v = lua_tointegerx(L, i, &isnum);
    if (!isnum || v < 0) {
        return false;
    }
    *out = (uint64_t)v;
#else
    lua_Number v = lua_tonumber(L, i);
    if (v < 0 || v != (lua_Number)(uint64_t)v) {
        return false;
    }
    *out = (uint64_t)v;
#endif
    return true;
}

static int msgh(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
            msg = lua_tostring(L, -1);
        } else {
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
        }
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Reports a failure of the store (the message at the top of L, popped): the node stops. */
static void report(lua_State *L, struct op *o, const char *what)
{
    lua_pushfstring(L, "raft: node %d: the log store's %s failed; the node stops: %s",
                    (int)o->s->id, what, lua_tostring(L, -1));
    lua_remove(L, -2);
    lraft_report_error(o->s->m);
    o->rc = CRAFT_EIO;
}

static void fail_shape(lua_State *L, struct op *o, const char *what, const char *expected)
{
    lua_pushfstring(L, "it must return %s", expected);
    report(L, o, what);
}

/* Pushes store[name] and the store (self). False when the store has no such function: then
 * the failure is reported (unless optional) and nothing is pushed. */
static bool push_method(lua_State *L, struct op *o, const char *name, bool optional)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, o->s->ref);
    lua_getfield(L, -1, name);
    if (lua_isnil(L, -1) && optional) {
        lua_pop(L, 2);
        return false;
    }
    if (lua_type(L, -1) != LUA_TFUNCTION) {
        lua_pop(L, 2);
        lua_pushfstring(L, "log_store has no method %s() (see docs/lua.md)", name);
        report(L, o, name);
        return false;
    }
    lua_insert(L, -2);
    return true;
}

/* Calls the function below nargs arguments (the top of L) for nres results (at least 2). On
 * success the results are on the stack and 0 is returned; a nil, "compacted" / "unavailable"
 * answer pops them and returns the code; a failure is reported and pops them. */
static int invoke(lua_State *L, struct op *o, const char *what, int nargs, int nres)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, msgh);
    lua_insert(L, base);
    int rc = lua_pcall(L, nargs, nres, base);
    lua_remove(L, base);
    if (rc != LUA_OK) {
        report(L, o, what);
        return o->rc;
    }
    int first = lua_gettop(L) - nres + 1;
    if (lua_isnil(L, first) && !lua_isnil(L, first + 1)) {
        const char *e = lua_tostring(L, first + 1);
        if (e != NULL && strcmp(e, "compacted") == 0) {
            lua_settop(L, first - 1);
            o->rc = CRAFT_ECOMPACTED;
            return o->rc;
        }
        if (e != NULL && strcmp(e, "unavailable") == 0) {
            lua_settop(L, first - 1);
            o->rc = CRAFT_EUNAVAILABLE;
            return o->rc;
        }
        lua_pushfstring(L, "it returned nil, %s", e != NULL ? e : luaL_typename(L, first + 1));
        lua_replace(L, first);
        lua_settop(L, first);
        report(L, o, what);
        return o->rc;
    }
    return 0;
}

static int op_body(lua_State *L)
{
    struct op *o = lua_touserdata(L, 1);
    lua_settop(L, 0);
    o->fn(L, o);
    return 0;
}

static void run_body(struct lraft_loop *m, struct op *o)
{
    lua_State *L = m->L;
    int top = lua_gettop(L);
    lua_pushcfunction(L, op_body);
    lua_pushlightuserdata(L, o);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        /* Out of memory while pushing arguments: nothing sensible to report through Lua. */
        fprintf(stderr, "raft: node %llu: the log store call failed: %s\n", o->s->id,
                lua_tostring(L, -1));
        o->rc = CRAFT_ENOMEM;
    }
    lua_settop(L, top);
}

static void run_marshalled(struct lraft_loop *m, void *arg)
{
    run_body(m, arg);
}

static int run(struct lstore *s, struct op *o, op_fn fn)
{
    struct lraft_loop *m = s->m;
    o->s = s;
    o->fn = fn;
    o->rc = 0;
    if (m == NULL || m->finalizing || m->closed) {
        return CRAFT_ESHUTDOWN;
    }
    if (lraft_on_loop_thread(m)) {
        run_body(m, o);
        return o->rc;
    }
    struct lraft_call c;
    memset(&c, 0, sizeof c);
    c.kind = CALL_FN;
    c.fn = run_marshalled;
    c.arg = o;
    c.ref = LUA_NOREF;
    lraft_marshal(m, &c);
    return c.rc != 0 ? c.rc : o->rc;
}

/* ---- conversions --------------------------------------------------------------------------- */

static void push_entry(lua_State *L, const struct craft_entry *e)
{
    lua_createtable(L, 0, 4);
    lraft_pushu64(L, e->index);
    lua_setfield(L, -2, "index");
    lraft_pushu64(L, e->term);
    lua_setfield(L, -2, "term");
    lua_pushinteger(L, e->type);
    lua_setfield(L, -2, "type");
    lua_pushlstring(L, e->data != NULL ? (const char *)e->data : "", e->size);
    lua_setfield(L, -2, "data");
}

static bool push_meta(lua_State *L, const struct craft_snapshot_meta *m)
{
    void *conf = NULL;
    size_t size = 0;
    if (craft_configuration_encode(&m->conf, NULL, &conf, &size) != 0) {
        return false;
    }
    lua_createtable(L, 0, 5);
    lraft_pushu64(L, m->index);
    lua_setfield(L, -2, "index");
    lraft_pushu64(L, m->term);
    lua_setfield(L, -2, "term");
    lraft_pushu64(L, m->conf_index);
    lua_setfield(L, -2, "conf_index");
    lraft_pushu64(L, m->size);
    lua_setfield(L, -2, "size");
    lua_pushlstring(L, (const char *)conf, size);
    lua_setfield(L, -2, "conf");
    craft_free(NULL, conf);
    return true;
}

/* Field k of the table at i as a u64 (pushes nothing). */
static bool field_u64(lua_State *L, int i, const char *k, uint64_t *out)
{
    lua_getfield(L, i, k);
    bool ok = to_u64(L, -1, out);
    lua_pop(L, 1);
    return ok;
}

/* ---- the operations ------------------------------------------------------------------------ */

static void do_load_hard_state(lua_State *L, struct op *o)
{
    memset(o->hs, 0, sizeof *o->hs);
    if (!push_method(L, o, "load_hard_state", false) ||
        invoke(L, o, "load_hard_state", 1, 3) != 0) {
        return;
    }
    if (lua_isnil(L, 1) && lua_isnil(L, 2) && lua_isnil(L, 3)) {
        return; /* none yet */
    }
    uint64_t t, v, c;
    if (!to_u64(L, 1, &t) || !to_u64(L, 2, &v) || !to_u64(L, 3, &c)) {
        fail_shape(L, o, "load_hard_state", "term, vote, commit (three integers >= 0)");
        return;
    }
    o->hs->term = t;
    o->hs->vote = v;
    o->hs->commit = c;
}

static int load_hard_state(void *impl, struct craft_hard_state *out)
{
    struct op o = {0};
    o.hs = out;
    memset(out, 0, sizeof *out);
    return run(impl, &o, do_load_hard_state);
}

static void do_save_hard_state(lua_State *L, struct op *o)
{
    if (!push_method(L, o, "save_hard_state", false)) {
        return;
    }
    lraft_pushu64(L, o->hs_in->term);
    lraft_pushu64(L, o->hs_in->vote);
    lraft_pushu64(L, o->hs_in->commit);
    invoke(L, o, "save_hard_state", 4, 2);
}

static int save_hard_state(void *impl, const struct craft_hard_state *hs)
{
    struct op o = {0};
    o.hs_in = hs;
    return run(impl, &o, do_save_hard_state);
}

static void do_bounds(lua_State *L, struct op *o)
{
    if (!push_method(L, o, "bounds", false) || invoke(L, o, "bounds", 1, 2) != 0) {
        return;
    }
    if (!to_u64(L, 1, o->u1) || !to_u64(L, 2, o->u2)) {
        fail_shape(L, o, "bounds", "first, last (an empty log: first == last + 1)");
    }
}

static int bounds(void *impl, craft_index *first, craft_index *last)
{
    uint64_t f = 0, l = 0;
    struct op o = {0};
    o.u1 = &f;
    o.u2 = &l;
    int rc = run(impl, &o, do_bounds);
    *first = f;
    *last = l;
    return rc;
}

static void do_append(lua_State *L, struct op *o)
{
    if (!push_method(L, o, "append", false)) {
        return;
    }
    lua_createtable(L, (int)o->n, 0);
    for (size_t i = 0; i < o->n; i++) {
        push_entry(L, &o->in_entries[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    invoke(L, o, "append", 2, 2);
}

static int append(void *impl, const struct craft_entry *entries, size_t n)
{
    struct op o = {0};
    o.in_entries = entries;
    o.n = n;
    return run(impl, &o, do_append);
}

static void do_truncate(lua_State *L, struct op *o)
{
    if (!push_method(L, o, "truncate", false)) {
        return;
    }
    lraft_pushu64(L, o->a);
    invoke(L, o, "truncate", 2, 2);
}

static int truncate_(void *impl, craft_index from)
{
    struct op o = {0};
    o.a = from;
    return run(impl, &o, do_truncate);
}

static void do_compact(lua_State *L, struct op *o)
{
    if (!push_method(L, o, "compact", false)) {
        return;
    }
    lraft_pushu64(L, o->a);
    invoke(L, o, "compact", 2, 2);
}

static int compact(void *impl, craft_index upto)
{
    struct op o = {0};
    o.a = upto;
    return run(impl, &o, do_compact);
}

static void do_entries(lua_State *L, struct op *o)
{
    static const char *shape = "a table of {index =, term =, type =, data = string} for every "
                               "index of [lo, hi], in order";
    if (!push_method(L, o, "entries", false)) {
        return;
    }
    lraft_pushu64(L, o->a);
    lraft_pushu64(L, o->b);
    if (invoke(L, o, "entries", 3, 2) != 0) {
        return;
    }
    if (lua_type(L, 1) != LUA_TTABLE) {
        fail_shape(L, o, "entries", shape);
        return;
    }
    size_t count = lua_rawlen(L, 1);
    size_t want = o->b >= o->a ? (size_t)(o->b - o->a + 1) : 0;
    if (count != want) {
        lua_pushfstring(L, "entries(%d, %d) returned %d entries: ", (int)o->a, (int)o->b,
                        (int)count);
        lua_pushstring(L, shape);
        lua_concat(L, 2);
        report(L, o, "entries");
        return;
    }
    if (count == 0) {
        return;
    }
    size_t total = count * sizeof(struct craft_entry);
    for (size_t i = 0; i < count; i++) {
        lua_rawgeti(L, 1, (lua_Integer)i + 1);
        uint64_t idx = 0;
        if (lua_type(L, -1) != LUA_TTABLE || !field_u64(L, -1, "index", &idx) ||
            idx != o->a + i) {
            fail_shape(L, o, "entries", shape);
            return;
        }
        lua_getfield(L, -1, "data");
        if (lua_type(L, -1) != LUA_TSTRING) {
            fail_shape(L, o, "entries", shape);
            return;
        }
        total += lua_rawlen(L, -1);
        lua_pop(L, 2);
    }
    struct craft_entry *arr = craft_malloc(o->alloc, total);
    if (arr == NULL) {
        o->rc = CRAFT_ENOMEM;
        return;
    }
    char *p = (char *)(arr + count);
    for (size_t i = 0; i < count; i++) {
        lua_rawgeti(L, 1, (lua_Integer)i + 1);
        uint64_t term = 0, type = CRAFT_ENTRY_COMMAND;
        lua_getfield(L, -1, "type");
        bool type_ok = lua_isnil(L, -1) || to_u64(L, -1, &type);
        lua_pop(L, 1);
        if (!field_u64(L, -1, "term", &term) || !type_ok || type > 255) {
            craft_free(o->alloc, arr);
            fail_shape(L, o, "entries", shape);
            return;
        }
        lua_getfield(L, -1, "data");
        size_t len = 0;
        const char *d = lua_tolstring(L, -1, &len);
        memcpy(p, d, len);
        arr[i] = (struct craft_entry){term, o->a + i, (uint8_t)type, p, len};
        p += len;
        lua_pop(L, 2);
    }
    *o->out = arr;
    *o->out_n = count;
}

static int entries(void *impl, craft_index lo, craft_index hi, const struct craft_allocator *a,
                   struct craft_entry **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    struct op o = {0};
    o.a = lo;
    o.b = hi;
    o.alloc = a;
    o.out = out;
    o.out_n = n;
    return run(impl, &o, do_entries);
}

static void do_term(lua_State *L, struct op *o)
{
    if (!push_method(L, o, "term", false)) {
        return;
    }
    lraft_pushu64(L, o->a);
    if (invoke(L, o, "term", 2, 2) != 0) {
        return;
    }
    if (!to_u64(L, 1, o->u1)) {
        fail_shape(L, o, "term", "an integer (or nil, \"compacted\" / nil, \"unavailable\")");
    }
}

static int term(void *impl, craft_index i, craft_term *out)
{
    uint64_t t = 0;
    struct op o = {0};
    o.a = i;
    o.u1 = &t;
    int rc = run(impl, &o, do_term);
    *out = t;
    return rc;
}

/* ---- snapshots ----------------------------------------------------------------------------- */

static void do_snapshot_begin(lua_State *L, struct op *o)
{
    if (!push_method(L, o, "snapshot_begin", false)) {
        return;
    }
    if (!push_meta(L, o->meta_in)) {
        lua_pop(L, 2);
        o->rc = CRAFT_ENOMEM;
        return;
    }
    if (invoke(L, o, "snapshot_begin", 2, 2) != 0) {
        return;
    }
    if (lua_isnil(L, 1)) {
        fail_shape(L, o, "snapshot_begin", "a writer (writer:write(data) is called with each chunk)");
        return;
    }
    struct handle *h = malloc(sizeof *h);
    if (h == NULL) {
        o->rc = CRAFT_ENOMEM;
        return;
    }
    lua_pushvalue(L, 1);
    h->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    *o->hp = h;
}

static int snapshot_begin(void *impl, const struct craft_snapshot_meta *meta, void **writer)
{
    struct op o = {0};
    o.meta_in = meta;
    o.hp = writer;
    *writer = NULL;
    return run(impl, &o, do_snapshot_begin);
}

/* Pushes obj[name] and obj (self), obj being the handle's value. */
static bool push_handle_method(lua_State *L, struct op *o, const char *name, bool optional)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, o->h->ref);
    if (lua_type(L, -1) != LUA_TTABLE && lua_type(L, -1) != LUA_TUSERDATA) {
        lua_pop(L, 1);
        if (optional) {
            return false;
        }
        lua_pushfstring(L, "the writer or reader has no method %s()", name);
        report(L, o, name);
        return false;
    }
    lua_getfield(L, -1, name);
    if (lua_type(L, -1) != LUA_TFUNCTION) {
        lua_pop(L, 2);
        if (optional) {
            return false;
        }
        lua_pushfstring(L, "the writer or reader has no method %s()", name);
        report(L, o, name);
        return false;
    }
    lua_insert(L, -2);
    return true;
}

static void do_snapshot_write(lua_State *L, struct op *o)
{
    if (!push_handle_method(L, o, "write", false)) {
        return;
    }
    lua_pushlstring(L, (const char *)o->buf, o->len);
    invoke(L, o, "snapshot writer's write", 2, 2);
}

static int snapshot_write(void *impl, void *writer, const void *buf, size_t len)
{
    struct op o = {0};
    o.h = writer;
    o.buf = buf;
    o.len = len;
    return run(impl, &o, do_snapshot_write);
}

static void release(lua_State *L, struct op *o)
{
    luaL_unref(L, LUA_REGISTRYINDEX, o->h->ref);
    o->h->ref = LUA_NOREF;
}

static void do_snapshot_commit(lua_State *L, struct op *o)
{
    if (push_method(L, o, "snapshot_commit", false)) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, o->h->ref);
        invoke(L, o, "snapshot_commit", 2, 2);
    }
    release(L, o);
}

static int snapshot_commit(void *impl, void *writer)
{
    struct op o = {0};
    o.h = writer;
    int rc = run(impl, &o, do_snapshot_commit);
    free(writer); /* consumed, whatever happened */
    return rc;
}

static void do_snapshot_abort(lua_State *L, struct op *o)
{
    if (push_method(L, o, "snapshot_abort", true)) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, o->h->ref);
        invoke(L, o, "snapshot_abort", 2, 2);
    }
    release(L, o);
}

static void snapshot_abort(void *impl, void *writer)
{
    struct op o = {0};
    o.h = writer;
    run(impl, &o, do_snapshot_abort);
    free(writer);
}

static void do_snapshot_meta(lua_State *L, struct op *o)
{
    static const char *shape = "nil, or {index =, term =, conf_index =, size =, conf = string}";
    if (!push_method(L, o, "snapshot_meta", false) ||
        invoke(L, o, "snapshot_meta", 1, 2) != 0) {
        return;
    }
    if (lua_isnil(L, 1)) {
        o->rc = CRAFT_ENOTFOUND;
        return;
    }
    uint64_t index, t, conf_index, size;
    if (lua_type(L, 1) != LUA_TTABLE || !field_u64(L, 1, "index", &index) ||
        !field_u64(L, 1, "term", &t) || !field_u64(L, 1, "conf_index", &conf_index) ||
        !field_u64(L, 1, "size", &size)) {
        fail_shape(L, o, "snapshot_meta", shape);
        return;
    }
    lua_getfield(L, 1, "conf");
    if (lua_type(L, -1) != LUA_TSTRING) {
        fail_shape(L, o, "snapshot_meta", shape);
        return;
    }
    size_t len = 0;
    const char *conf = lua_tolstring(L, -1, &len);
    int rc = craft_configuration_decode(conf, len, o->alloc, &o->meta_out->conf);
    if (rc != 0) {
        lua_pushfstring(L, "its conf does not decode (%s)", craft_strerror(rc));
        report(L, o, "snapshot_meta");
        return;
    }
    o->meta_out->index = index;
    o->meta_out->term = t;
    o->meta_out->conf_index = conf_index;
    o->meta_out->size = size;
}

static int snapshot_meta(void *impl, const struct craft_allocator *a,
                         struct craft_snapshot_meta *out)
{
    memset(out, 0, sizeof *out);
    struct op o = {0};
    o.alloc = a;
    o.meta_out = out;
    return run(impl, &o, do_snapshot_meta);
}

static void do_snapshot_open(lua_State *L, struct op *o)
{
    if (!push_method(L, o, "snapshot_open", false) ||
        invoke(L, o, "snapshot_open", 1, 2) != 0) {
        return;
    }
    if (lua_isnil(L, 1)) {
        o->rc = CRAFT_ENOTFOUND;
        return;
    }
    struct handle *h = malloc(sizeof *h);
    if (h == NULL) {
        o->rc = CRAFT_ENOMEM;
        return;
    }
    lua_pushvalue(L, 1);
    h->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    *o->hp = h;
}

static int snapshot_open(void *impl, void **reader)
{
    struct op o = {0};
    o.hp = reader;
    *reader = NULL;
    return run(impl, &o, do_snapshot_open);
}

static void do_snapshot_read(lua_State *L, struct op *o)
{
    if (!push_handle_method(L, o, "read", false)) {
        return;
    }
    lraft_pushu64(L, o->a);
    lraft_pushu64(L, o->len);
    if (invoke(L, o, "snapshot reader's read", 3, 2) != 0) {
        return;
    }
    if (lua_isnil(L, 1)) {
        return; /* the end */
    }
    if (lua_type(L, 1) != LUA_TSTRING) {
        fail_shape(L, o, "snapshot reader's read", "a string (\"\" or nil at the end)");
        return;
    }
    size_t len = 0;
    const char *s = lua_tolstring(L, 1, &len);
    size_t k = len < o->len ? len : o->len;
    memcpy(o->obuf, s, k);
    *o->got = k;
}

static int snapshot_read(void *impl, void *reader, uint64_t offset, void *buf, size_t len,
                         size_t *n)
{
    *n = 0;
    struct op o = {0};
    o.h = reader;
    o.a = offset;
    o.obuf = buf;
    o.len = len;
    o.got = n;
    return run(impl, &o, do_snapshot_read);
}

static void do_snapshot_close(lua_State *L, struct op *o)
{
    if (push_handle_method(L, o, "close", true)) {
        invoke(L, o, "snapshot reader's close", 1, 2);
    }
    release(L, o);
}

static void snapshot_close(void *impl, void *reader)
{
    struct op o = {0};
    o.h = reader;
    run(impl, &o, do_snapshot_close);
    free(reader);
}

static void do_close(lua_State *L, struct op *o)
{
    if (push_method(L, o, "close", true)) {
        invoke(L, o, "close", 1, 2);
    }
    luaL_unref(L, LUA_REGISTRYINDEX, o->s->ref);
    o->s->ref = LUA_NOREF;
}

static void close_(void *impl)
{
    struct lstore *s = impl;
    struct op o = {0};
    run(s, &o, do_close); /* nothing to do once the Lua state is closing */
    free(s);
}

/* ---- creation ------------------------------------------------------------------------------ */

static const char *const required[] = {
    "load_hard_state", "save_hard_state", "bounds", "append", "truncate", "compact", "entries",
    "term", "snapshot_begin", "snapshot_commit", "snapshot_meta", "snapshot_open", NULL};

int lraft_store_new(lua_State *L, struct lraft_loop *m, int idx, unsigned long long id,
                    struct craft_store **out)
{
    if (idx < 0) {
        idx = lua_gettop(L) + idx + 1;
    }
    for (int i = 0; required[i] != NULL; i++) {
        lua_getfield(L, idx, required[i]);
        bool ok = lua_type(L, -1) == LUA_TFUNCTION;
        lua_pop(L, 1);
        if (!ok) {
            return luaL_error(L, "raft.node: log_store has no method %s() (see docs/lua.md)",
                              required[i]);
        }
    }
    struct lstore *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return luaL_error(L, "raft.node: out of memory");
    }
    s->m = m;
    s->id = id;
    lua_pushvalue(L, idx);
    s->ref = luaL_ref(L, LUA_REGISTRYINDEX);
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
