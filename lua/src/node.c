/* node.c: raft.core.node: one node of the libuv runtime (craft/uv.h) on the module's loop.
 *
 * The userdata holds a pointer to a malloc'd struct lraft_node, which lives until the node is
 * both closed and collected. An open node is kept reachable from the module's table of live
 * nodes, so a running server is never collected under its own loop; :close() (and __gc, at
 * lua_close) stop it through one idempotent path.
 *
 * The state machine: apply runs on the loop thread, inside raft.run / raft.poll, one protected
 * call per command (or, when the state machine has an apply_batch, one per batch). Snapshot and restore are called by the runtime on a worker thread; a Lua
 * state must not be entered from there, so the worker hands the call to the loop thread
 * (lraft_marshal) and waits: the Lua snapshot function runs on the loop thread and returns a
 * string (or a table of strings) that the worker then writes; for restore the worker reads the
 * whole snapshot and the loop thread passes it to the Lua restore function. The runtime pauses
 * applying while either runs, so the state the Lua function sees is exactly the snapshot's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "craft/uv.h"
#include "lraft.h"

enum { ST_OPEN = 1, ST_STOPPING, ST_CLOSED };

struct lraft_node {
    struct lraft_loop *m; /* NULL once the loop is gone */
    struct craft_uv_node *node;
    struct craft_uv_config cfg;
    struct craft_configuration boot;
    bool has_boot;
    char *address, *data_dir;
    char *metrics_address; /* GET /metrics served here (issue 15); NULL: none */
    char bound[CRAFT_ADDRESS_MAX];
    int state;
    bool closed; /* ST_CLOSED, as a flag for lraft_run_until */
    bool stop_deferred;
    bool collected; /* the userdata is gone: free when closed */
    bool fsm_woken; /* its state machine stream has work (lraft_nodes_run_streams) */
    unsigned stream_pass; /* the last pass of lraft_nodes_run_streams that ran it */
    char *snapshot_tb; /* the last failed snapshot's error and traceback (loop thread), printed
                        * with the runtime's snapshot_failed line: one line per attempt */
    int apply_ref, apply_batch_ref, snapshot_ref, restore_ref, event_ref, log_ref;
    struct lraft_node *next, *prev;
};

struct lraft_req {
    struct craft_uv_request req;
    struct lraft_loop *m;
    int cb_ref;
};

static struct lraft_node *check_node(lua_State *L, int i)
{
    struct lraft_node **p = luaL_checkudata(L, i, LRAFT_NODE_MT);
    return *p;
}

static struct lraft_node *check_open(lua_State *L, int i)
{
    struct lraft_node *nd = check_node(L, i);
    if (nd->state != ST_OPEN || nd->m == NULL) {
        luaL_error(L, "raft: the node is closed");
    }
    return nd;
}

static void unref(lua_State *L, int *ref)
{
    if (*ref != LUA_NOREF && *ref != LUA_REFNIL) {
        luaL_unref(L, LUA_REGISTRYINDEX, *ref);
    }
    *ref = LUA_NOREF;
}

static void node_free(struct lraft_node *nd)
{
    if (nd->m != NULL) {
        if (nd->prev != NULL) {
            nd->prev->next = nd->next;
        } else {
            nd->m->nodes = nd->next;
        }
        if (nd->next != NULL) {
            nd->next->prev = nd->prev;
        }
    }
    if (nd->has_boot) {
        craft_configuration_close(&nd->boot, NULL);
    }
    free(nd->address);
    free(nd->data_dir);
    free(nd->metrics_address);
    free(nd->snapshot_tb);
    free(nd);
}

/* ---- protected bodies --------------------------------------------------------------------------
 * Everything a callback from the runtime does with the Lua state happens inside one protected
 * call of a C function, so that even an out-of-memory error in a push never unwinds through
 * libuv's frames. */

typedef int (*body_fn)(lua_State *L);

static bool protect(struct lraft_loop *m, body_fn fn, void *ud)
{
    lua_State *L = m->L;
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, ud);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "raft: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        return false;
    }
    return true;
}

/* The error value at the top as a string (the error's message, no traceback). */
static const char *error_string(lua_State *L, size_t *len)
{
    if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
        return lua_tolstring(L, -1, len);
    }
    if (luaL_callmeta(L, -1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
        lua_replace(L, -2);
        return lua_tolstring(L, -1, len);
    }
    const char *s = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, -1));
    lua_replace(L, -2);
    *len = strlen(s);
    return s;
}

/* ---- the state machine --------------------------------------------------------------------- */

struct apply_ctx {
    struct lraft_node *nd;
    struct craft_uv_apply *cmds;
    size_t n;
    int rc;
};

static void *copy_bytes(const char *s, size_t len)
{
    void *p = craft_malloc(NULL, len > 0 ? len : 1);
    if (p != NULL) {
        memcpy(p, s, len);
    }
    return p;
}

/* The error at the top of the stack is {raft_fatal = "EMALFORMED", message = ..., index = ...}
 * from lua/raft/fsm.lua (an entry it cannot interpret, a state known to be wrong, an
 * apply_batch that broke its contract): the node stops, with the message as the result of the
 * command c. Returns false, the stack as it was, for any other error. */
static bool take_fatal(lua_State *L, struct apply_ctx *a, struct craft_uv_apply *c)
{
    if (lua_type(L, -1) != LUA_TTABLE) {
        return false;
    }
    lua_getfield(L, -1, "raft_fatal");
    lua_getfield(L, -2, "message");
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
        lua_pop(L, 2);
        return false;
    }
    const char *name = lua_tostring(L, -2);
    a->rc = CRAFT_EMALFORMED;
#define LRAFT_CODE_OF(cname, code, msg)                                                        \
    if (strcmp(name, "E" #cname) == 0)                                                         \
        a->rc = code;
    CRAFT_ERRNO_MAP(LRAFT_CODE_OF)
#undef LRAFT_CODE_OF
    size_t len = 0;
    const char *s = lua_tolstring(L, -1, &len);
    craft_free(NULL, c->result); /* the stop's reason replaces any result */
    c->result = copy_bytes(s, len);
    c->result_size = c->result != NULL ? len : 0;
    c->error = 1;
    return true;
}

/* One result of the adapter's apply_batch (lua/raft/fsm.lua) for c: a string, or {message}
 * for a command that failed in the state machine. */
static int take_result(lua_State *L, struct craft_uv_apply *c)
{
    size_t len = 0;
    const char *s = NULL;
    if (lua_type(L, -1) == LUA_TTABLE) {
        lua_rawgeti(L, -1, 1);
        s = lua_tolstring(L, -1, &len);
        c->error = 1;
    } else {
        s = lua_tolstring(L, -1, &len);
    }
    if (s != NULL && (len > 0 || c->error)) {
        c->result = copy_bytes(s, len);
        if (c->result == NULL) {
            return CRAFT_ENOMEM;
        }
        c->result_size = len;
    }
    return 0;
}

/* The state machine has an apply_batch: one call of the adapter for the whole batch, which
 * hands the user's apply_batch runs of plain commands (lua/raft/fsm.lua). */
static int apply_batch_body(lua_State *L)
{
    struct apply_ctx *a = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->nd->apply_batch_ref);
    lua_createtable(L, (int)a->n, 0);
    lua_createtable(L, (int)a->n, 0);
    for (size_t i = 0; i < a->n; i++) {
        struct craft_uv_apply *c = &a->cmds[i];
        lua_pushlstring(L, c->data != NULL ? c->data : "", c->size);
        lua_rawseti(L, -3, (lua_Integer)i + 1);
        lraft_pushu64(L, c->index);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        /* The stop's reason goes to the command it names (else the first). */
        struct craft_uv_apply *at = &a->cmds[0];
        if (lua_type(L, -1) == LUA_TTABLE) {
            lua_getfield(L, -1, "index");
            if (lraft_isinteger(L, -1)) {
                lua_Integer index = lua_tointeger(L, -1);
                for (size_t i = 0; i < a->n; i++) {
                    if ((lua_Integer)a->cmds[i].index == index) {
                        at = &a->cmds[i];
                    }
                }
            }
            lua_pop(L, 1);
        }
        if (!take_fatal(L, a, at)) {
            /* A bug of the adapter's own: stop rather than guess what was applied. */
            size_t len = 0;
            const char *s = error_string(L, &len);
            at->result = copy_bytes(s, len);
            at->result_size = at->result != NULL ? len : 0;
            at->error = 1;
            a->rc = CRAFT_EINVAL;
        }
        return 0;
    }
    for (size_t i = 0; i < a->n; i++) {
        lua_rawgeti(L, 2, (lua_Integer)i + 1);
        a->rc = take_result(L, &a->cmds[i]);
        if (a->rc != 0) {
            return 0;
        }
        lua_settop(L, 2);
    }
    return 0;
}

static int apply_body(lua_State *L)
{
    struct apply_ctx *a = lua_touserdata(L, 1);
    for (size_t i = 0; i < a->n; i++) {
        struct craft_uv_apply *c = &a->cmds[i];
        lua_rawgeti(L, LUA_REGISTRYINDEX, a->nd->apply_ref);
        lua_pushlstring(L, c->data != NULL ? c->data : "", c->size);
        lraft_pushu64(L, c->index);
        size_t len = 0;
        const char *s = NULL;
        if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
            if (take_fatal(L, a, c)) {
                return 0;
            }
            /* Deterministic state-machine behaviour (DESIGN.md): the entry counts as applied
             * everywhere and the proposer gets the message. */
            s = error_string(L, &len);
            c->error = 1;
        } else if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
            s = lua_tolstring(L, -1, &len);
        } else if (!lua_isnil(L, -1)) {
            s = lua_pushfstring(L, "apply returned a %s: return a string or nil",
                                luaL_typename(L, -1));
            len = strlen(s);
            c->error = 1;
        }
        if (s != NULL && (len > 0 || c->error)) {
            c->result = copy_bytes(s, len);
            if (c->result == NULL) {
                a->rc = CRAFT_ENOMEM;
                return 0;
            }
            c->result_size = len;
        }
        lua_settop(L, 1);
    }
    return 0;
}

static int fsm_apply(void *data, struct craft_uv_apply *cmds, size_t n)
{
    struct lraft_node *nd = data;
    struct lraft_loop *m = nd->m;
    if (m == NULL || m->finalizing ||
        (nd->apply_ref == LUA_NOREF && nd->apply_batch_ref == LUA_NOREF)) {
        return CRAFT_ESHUTDOWN; /* the Lua state is going away: stop here */
    }
    struct apply_ctx a = {nd, cmds, n, 0};
    if (!protect(m, nd->apply_batch_ref != LUA_NOREF ? apply_batch_body : apply_body, &a)) {
        return CRAFT_ENOMEM;
    }
    return a.rc;
}

struct snap_ctx {
    struct lraft_node *nd;
    struct lraft_call *c;
};

static int snapshot_traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    luaL_traceback(L, L, msg != NULL ? msg : "(the error object is not a string)", 1);
    return 1;
}

/* The reason for the runtime (the error's first line, handed to the worker in c->data) and the
 * whole text with its traceback for the log line. */
static void keep_snapshot_error(struct lraft_node *nd, struct lraft_call *c, const char *text)
{
    if (text == NULL) {
        text = "(no message)";
    }
    free(nd->snapshot_tb);
    nd->snapshot_tb = strdup(text);
    size_t first = strcspn(text, "\n");
    c->data = malloc(first + 32);
    if (c->data != NULL) {
        snprintf(c->data, first + 32, "snapshot raised: %.*s", (int)first, text);
    }
}

static int snapshot_body(lua_State *L)
{
    struct snap_ctx *x = lua_touserdata(L, 1);
    struct lraft_loop *m = x->nd->m;
    struct lraft_call *c = x->c;
    lua_settop(L, 0);
    lua_pushcfunction(L, snapshot_traceback);
    lua_rawgeti(L, LUA_REGISTRYINDEX, x->nd->snapshot_ref);
    if (lua_pcall(L, 0, 1, 1) != LUA_OK) {
        /* Not a disk problem and not fatal: the runtime logs it (with this traceback), raises
         * "snapshot_failed" and tries again after a backoff; the node keeps serving. */
        c->rc = CRAFT_EAPPLY;
        keep_snapshot_error(x->nd, c, lua_tostring(L, -1));
        return 0;
    }
    lua_remove(L, 1);
    /* Our own table of the chunks: the user may change theirs while the worker writes. */
    lua_newtable(L);
    size_t n = 0;
    if (lua_type(L, 1) == LUA_TSTRING) {
        lua_pushvalue(L, 1);
        lua_rawseti(L, 2, 1);
        n = 1;
    } else if (lua_type(L, 1) == LUA_TTABLE) {
        size_t len = lua_rawlen(L, 1);
        for (size_t i = 1; i <= len; i++) {
            lua_rawgeti(L, 1, (lua_Integer)i);
            if (lua_type(L, -1) != LUA_TSTRING) {
                lua_pushfstring(L, "snapshot: chunk %d is a %s: return a string or a table of "
                                   "strings", (int)i, luaL_typename(L, -1));
                c->rc = CRAFT_EINVAL;
                goto fail;
            }
            lua_rawseti(L, 2, (lua_Integer)i);
        }
        n = len;
    } else if (!lua_isnil(L, 1)) {
        lua_pushfstring(L, "snapshot returned a %s: return a string or a table of strings",
                        luaL_typename(L, 1));
        c->rc = CRAFT_EINVAL;
        goto fail;
    }
    c->chunks = calloc(n > 0 ? n : 1, sizeof *c->chunks);
    c->lens = calloc(n > 0 ? n : 1, sizeof *c->lens);
    if (c->chunks == NULL || c->lens == NULL) {
        c->rc = CRAFT_ENOMEM;
        return 0;
    }
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, (lua_Integer)i);
        c->chunks[i - 1] = lua_tolstring(L, -1, &c->lens[i - 1]);
        lua_pop(L, 1);
    }
    c->n = n;
    lua_pushvalue(L, 2);
    c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
fail:
    /* A programming error: reported as a failed snapshot, like an error the function raised. */
    luaL_traceback(L, L, lua_tostring(L, -1), 0);
    keep_snapshot_error(x->nd, c, lua_tostring(L, -1));
    (void)m;
    return 0;
}

struct restore_ctx {
    struct lraft_node *nd;
    struct lraft_call *c;
};

static int restore_body(lua_State *L)
{
    struct restore_ctx *x = lua_touserdata(L, 1);
    struct lraft_call *c = x->c;
    lua_rawgeti(L, LUA_REGISTRYINDEX, x->nd->restore_ref);
    lua_pushlstring(L, c->data != NULL ? c->data : "", c->size);
    if (!lraft_pcall(x->nd->m, 1, 0)) {
        c->rc = CRAFT_EIO;
    }
    return 0;
}

static void deliver_line(struct lraft_node *nd, int level, const char *line);

struct log_ctx {
    struct lraft_node *nd;
    int level;
    const char *line;
};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static int log_body(lua_State *L)
{
    struct log_ctx *x = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, x->nd->log_ref);
    lua_pushstring(L, level_names[x->level < 0 ? 0 : x->level > 3 ? 3 : x->level]);
    lua_pushstring(L, x->line);
    lraft_pcall(x->nd->m, 2, 0);
    return 0;
}

static void deliver_log(struct lraft_node *nd, int level, const char *line)
{
    char *joined = NULL;
    if (nd->snapshot_tb != NULL && strstr(line, "event=snapshot_failed") != NULL) {
        size_t a = strlen(line), b = strlen(nd->snapshot_tb);
        joined = malloc(a + b + 2);
        if (joined != NULL) {
            memcpy(joined, line, a);
            joined[a] = '\n';
            memcpy(joined + a + 1, nd->snapshot_tb, b + 1);
            line = joined;
        }
        free(nd->snapshot_tb);
        nd->snapshot_tb = NULL;
    }
    deliver_line(nd, level, line);
    free(joined);
}

static void deliver_line(struct lraft_node *nd, int level, const char *line)
{
    struct lraft_loop *m = nd->m;
    if (nd->log_ref == LUA_NOREF || m == NULL || m->finalizing) {
        fprintf(stderr, "%s\n", line);
        return;
    }
    struct log_ctx x = {nd, level, line};
    protect(m, log_body, &x);
}

static void do_snapshot(struct lraft_node *nd, struct lraft_call *c)
{
    struct snap_ctx x = {nd, c};
    c->ref = LUA_NOREF;
    if (nd->snapshot_ref == LUA_NOREF) {
        c->rc = CRAFT_EINVAL;
        return;
    }
    if (!protect(nd->m, snapshot_body, &x) && c->rc == 0) {
        c->rc = CRAFT_ENOMEM;
    }
}

static void do_restore(struct lraft_node *nd, struct lraft_call *c)
{
    if (nd->restore_ref == LUA_NOREF) {
        c->rc = c->size == 0 ? 0 : CRAFT_EINVAL;
        if (c->rc != 0) {
            deliver_log(nd, CRAFT_UV_ERROR,
                        "raft: a snapshot must be restored but the node has no restore function");
        }
        return;
    }
    struct restore_ctx x = {nd, c};
    if (!protect(nd->m, restore_body, &x) && c->rc == 0) {
        c->rc = CRAFT_ENOMEM;
    }
}

void lraft_node_run_call(struct lraft_loop *m, struct lraft_call *c)
{
    struct lraft_node *nd = c->nd;
    if (m->finalizing) {
        c->rc = CRAFT_ESHUTDOWN;
        if (c->kind == CALL_LOG) {
            fprintf(stderr, "%s\n", c->data);
        }
        return;
    }
    switch (c->kind) {
    case CALL_SNAPSHOT:
        do_snapshot(nd, c);
        break;
    case CALL_RELEASE:
        luaL_unref(m->L, LUA_REGISTRYINDEX, c->ref);
        break;
    case CALL_RESTORE:
        do_restore(nd, c);
        break;
    case CALL_LOG:
        deliver_log(nd, c->level, c->data);
        break;
    case CALL_FN:
        c->fn(m, c->arg);
        break;
    }
}

static int fsm_snapshot(void *data, craft_uv_write_fn write, void *ctx)
{
    struct lraft_node *nd = data;
    struct lraft_loop *m = nd->m;
    if (m == NULL) {
        return CRAFT_ESHUTDOWN;
    }
    struct lraft_call c;
    memset(&c, 0, sizeof c);
    c.ref = LUA_NOREF;
    c.kind = CALL_SNAPSHOT;
    c.nd = nd;
    if (lraft_on_loop_thread(m)) {
        lraft_node_run_call(m, &c);
    } else {
        lraft_marshal(m, &c);
    }
    int rc = c.rc;
    if (c.data != NULL) {
        craft_uv_fsm_error(c.data); /* on this (the worker's) thread: the runtime reads it here */
        free(c.data);
        c.data = NULL;
    }
    for (size_t i = 0; rc == 0 && i < c.n; i++) {
        if (c.lens[i] > 0) {
            rc = write(ctx, c.chunks[i], c.lens[i]);
        }
    }
    free(c.chunks);
    free(c.lens);
    if (c.ref != LUA_NOREF) {
        struct lraft_call *r = calloc(1, sizeof *r);
        if (r != NULL) {
            r->kind = CALL_RELEASE;
            r->nd = nd;
            r->ref = c.ref;
            r->detached = true;
            if (lraft_on_loop_thread(m)) {
                lraft_node_run_call(m, r);
                free(r);
            } else {
                lraft_marshal(m, r);
            }
        }
    }
    return rc;
}

static int fsm_restore(void *data, craft_uv_read_fn read, void *ctx)
{
    struct lraft_node *nd = data;
    struct lraft_loop *m = nd->m;
    if (m == NULL) {
        return CRAFT_ESHUTDOWN;
    }
    struct lraft_call c;
    memset(&c, 0, sizeof c);
    c.kind = CALL_RESTORE;
    c.nd = nd;
    size_t cap = 65536;
    c.data = malloc(cap);
    if (c.data == NULL) {
        return CRAFT_ENOMEM;
    }
    for (;;) {
        if (cap - c.size < 65536) {
            char *p = realloc(c.data, cap * 2);
            if (p == NULL) {
                free(c.data);
                return CRAFT_ENOMEM;
            }
            c.data = p;
            cap *= 2;
        }
        size_t got = 0;
        int rc = read(ctx, c.data + c.size, cap - c.size, &got);
        if (rc != 0) {
            free(c.data);
            return rc;
        }
        if (got == 0) {
            break;
        }
        c.size += got;
    }
    if (lraft_on_loop_thread(m)) {
        lraft_node_run_call(m, &c);
    } else {
        lraft_marshal(m, &c);
    }
    free(c.data);
    return c.rc;
}

/* ---- events and log lines ------------------------------------------------------------------ */

struct event_ctx {
    struct lraft_node *nd;
    const struct craft_uv_event *e;
};

static int event_body(lua_State *L)
{
    struct event_ctx *x = lua_touserdata(L, 1);
    const struct craft_uv_event *e = x->e;
    lua_rawgeti(L, LUA_REGISTRYINDEX, x->nd->event_ref);
    lua_pushinteger(L, e->type);
    lua_pushstring(L, e->role != 0 ? craft_role_name(e->role) : "none");
    lraft_pushu64(L, e->term);
    lraft_pushu64(L, e->leader);
    lraft_pushu64(L, e->index);
    lua_pushboolean(L, e->installed);
    lua_pushinteger(L, e->error);
    lua_pushstring(L, e->message != NULL ? e->message : "");
    lraft_pushu64(L, e->match);
    lraft_pcall(x->nd->m, 9, 0);
    return 0;
}

static void on_event(void *data, const struct craft_uv_event *e)
{
    struct lraft_node *nd = data;
    if (nd->m == NULL || nd->m->finalizing || nd->event_ref == LUA_NOREF) {
        return;
    }
    if (!lraft_on_loop_thread(nd->m)) {
        return; /* never happens: events are raised on the loop thread */
    }
    struct event_ctx x = {nd, e};
    protect(nd->m, event_body, &x);
}

static void on_log(void *data, int level, const char *line)
{
    struct lraft_node *nd = data;
    if (nd->m == NULL) {
        fprintf(stderr, "%s\n", line);
        return;
    }
    if (lraft_on_loop_thread(nd->m)) {
        deliver_log(nd, level, line);
        return;
    }
    /* The store logs from the disk thread: hand the line to the loop, do not wait. */
    struct lraft_call *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return;
    }
    c->kind = CALL_LOG;
    c->nd = nd;
    c->level = level;
    c->data = strdup(line);
    c->detached = true;
    if (c->data == NULL) {
        free(c);
        return;
    }
    lraft_marshal(nd->m, c);
}

/* ---- requests -------------------------------------------------------------------------------- */

struct result_ctx {
    struct lraft_req *r;
    const struct craft_uv_result *res;
};

static int result_body(lua_State *L)
{
    struct result_ctx *x = lua_touserdata(L, 1);
    const struct craft_uv_result *res = x->res;
    lua_rawgeti(L, LUA_REGISTRYINDEX, x->r->cb_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, x->r->cb_ref);
    x->r->cb_ref = LUA_NOREF;
    lua_pushinteger(L, res->status);
    lraft_pushu64(L, res->index);
    if (res->data != NULL) {
        lua_pushlstring(L, res->data, res->size);
    } else {
        lua_pushliteral(L, "");
    }
    lraft_pushu64(L, res->leader_id);
    lua_pushstring(L, res->leader_address != NULL ? res->leader_address : "");
    lraft_pcall(x->r->m, 5, 0);
    return 0;
}

static void on_result(struct craft_uv_request *req, const struct craft_uv_result *res)
{
    struct lraft_req *r = req->data;
    if (!r->m->finalizing) {
        struct result_ctx x = {r, res};
        protect(r->m, result_body, &x);
    }
    free(r);
}

/* node:submit(op, payload, server, address, auto_promote, timeout_ms, callback)
 * -> true, or nil, message, code (the callback is then never called). */
static int l_submit(lua_State *L)
{
    struct lraft_node *nd = check_open(L, 1);
    int op = (int)luaL_checkinteger(L, 2);
    size_t len = 0;
    const char *payload = luaL_optlstring(L, 3, "", &len);
    lua_Integer server = luaL_optinteger(L, 4, 0);
    const char *address = luaL_optstring(L, 5, NULL);
    bool auto_promote = lua_toboolean(L, 6);
    lua_Integer timeout = luaL_optinteger(L, 7, 0);
    luaL_checktype(L, 8, LUA_TFUNCTION);
    if (op < CRAFT_UV_PROPOSE || op > CRAFT_UV_SNAPSHOT) {
        return luaL_argerror(L, 2, "unknown operation");
    }
    struct lraft_req *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return lraft_fail(L, CRAFT_ENOMEM, NULL);
    }
    r->m = nd->m;
    r->req.op = op;
    r->req.payload = payload;
    r->req.size = len;
    r->req.server = (craft_id)server;
    r->req.address = address;
    r->req.auto_promote = auto_promote;
    r->req.timeout_ms = timeout > 0 ? (unsigned)timeout : 0;
    r->req.cb = on_result;
    r->req.data = r;
    lua_pushvalue(L, 8);
    r->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    int rc = craft_uv_submit(nd->node, &r->req);
    if (rc != 0) {
        luaL_unref(L, LUA_REGISTRYINDEX, r->cb_ref);
        free(r);
        if (rc == CRAFT_ETOOBIG) {
            lua_pushfstring(L, "too large: the command is %d bytes, more than the %d bytes a "
                               "command may have with max_frame = %d (one entry must fit in "
                               "one frame): split it, or raise max_frame on every node",
                            (int)len, (int)craft_uv_max_command(nd->cfg.max_frame),
                            (int)nd->cfg.max_frame);
            return lraft_fail(L, rc, lua_tostring(L, -1));
        }
        return lraft_fail(L, rc, NULL);
    }
    /* Wake the loop if it sleeps in raft.poll: the request arrives through an async handle. */
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- status and metrics ----------------------------------------------------------------------
 * The status table is the runtime's own msgpack map (craft_uv_status_pack, the payload a status
 * request over the network answers) turned into Lua values: the field names are written once, in
 * c/src/uv/status.c, for Python, Lua and the `craft status` command line alike. */

static void push_object(lua_State *L, const msgpack_object *o)
{
    luaL_checkstack(L, 3, "raft: the status is nested too deeply");
    switch (o->type) {
    case MSGPACK_OBJECT_BOOLEAN:
        lua_pushboolean(L, o->via.boolean);
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        lraft_pushu64(L, o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        lua_pushinteger(L, (lua_Integer)o->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        lua_pushnumber(L, o->via.f64);
        break;
    case MSGPACK_OBJECT_STR:
        lua_pushlstring(L, o->via.str.ptr, o->via.str.size);
        break;
    case MSGPACK_OBJECT_BIN:
        lua_pushlstring(L, o->via.bin.ptr, o->via.bin.size);
        break;
    case MSGPACK_OBJECT_ARRAY:
        lua_createtable(L, (int)o->via.array.size, 0);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            push_object(L, &o->via.array.ptr[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    case MSGPACK_OBJECT_MAP:
        lua_createtable(L, 0, (int)o->via.map.size);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            push_object(L, &o->via.map.ptr[i].key);
            push_object(L, &o->via.map.ptr[i].val);
            if (lua_isnil(L, -2)) {
                lua_pop(L, 2); /* a nil key cannot be stored; the runtime never sends one */
            } else {
                lua_rawset(L, -3);
            }
        }
        break;
    default:
        lua_pushnil(L);
        break;
    }
}

/* Decodes the packed status and pushes it as a table; false when it does not decode. */
static bool push_packed(lua_State *L, const void *buf, size_t size)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    bool ok = msgpack_unpack_next(&u, buf, size, &off) == MSGPACK_UNPACK_SUCCESS &&
              u.data.type == MSGPACK_OBJECT_MAP;
    if (ok) {
        push_object(L, &u.data);
    }
    msgpack_unpacked_destroy(&u);
    return ok;
}

static int l_status(lua_State *L)
{
    struct lraft_node *nd = check_open(L, 1);
    struct craft_uv_status s;
    int rc = craft_uv_status(nd->node, &s);
    void *buf = NULL;
    size_t size = 0;
    if (rc == 0) {
        rc = craft_uv_status_pack(&s, &buf, &size);
    }
    if (rc != 0) {
        return lraft_fail(L, rc, NULL);
    }
    bool ok = push_packed(L, buf, size);
    craft_free(NULL, buf);
    if (!ok) {
        return lraft_fail(L, CRAFT_EMALFORMED, "the runtime's status did not decode");
    }
    /* As hex: a 64-bit id does not fit a LuaJIT number (the one field Lua shows differently). */
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)s.cluster_id);
    lua_pushstring(L, hex);
    lua_setfield(L, -2, "cluster_id");
    return 1;
}

/* node:metrics(openmetrics) -> the Prometheus (or OpenMetrics) text, or nil, message, code. */
static int l_metrics(lua_State *L)
{
    struct lraft_node *nd = check_open(L, 1);
    char *text = NULL;
    size_t size = 0;
    int rc = craft_uv_metrics(nd->node, lua_toboolean(L, 2), &text, &size);
    if (rc != 0) {
        return lraft_fail(L, rc, NULL);
    }
    lua_pushlstring(L, text, size);
    craft_free(NULL, text);
    return 1;
}

static int l_id(lua_State *L)
{
    struct lraft_node *nd = check_node(L, 1);
    lraft_pushu64(L, nd->cfg.id);
    return 1;
}

static int l_address(lua_State *L)
{
    struct lraft_node *nd = check_node(L, 1);
    lua_pushstring(L, nd->bound[0] ? nd->bound : nd->address);
    return 1;
}

static int l_is_open(lua_State *L)
{
    struct lraft_node *nd = check_node(L, 1);
    lua_pushboolean(L, nd->state == ST_OPEN);
    return 1;
}

/* ---- closing ------------------------------------------------------------------------------- */

static void live_set(lua_State *L, struct lraft_loop *m, int ud, bool on)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, m->live);
    lua_pushvalue(L, ud);
    if (on) {
        lua_pushboolean(L, 1);
    } else {
        lua_pushnil(L);
    }
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

static int live_remove_body(lua_State *L)
{
    struct lraft_node *nd = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, nd->m->live);
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        lua_pop(L, 1);
        struct lraft_node **p = lua_touserdata(L, -1);
        if (p != NULL && *p == nd) {
            lua_pushnil(L);
            lua_rawset(L, -3);
            break;
        }
    }
    return 0;
}

static void on_stopped(void *data)
{
    struct lraft_node *nd = data;
    struct lraft_loop *m = nd->m;
    nd->node = NULL;
    nd->state = ST_CLOSED;
    nd->closed = true;
    if (m != NULL && !m->finalizing && m->L != NULL) {
        lua_State *L = m->L;
        unref(L, &nd->apply_ref);
        unref(L, &nd->apply_batch_ref);
        unref(L, &nd->snapshot_ref);
        unref(L, &nd->restore_ref);
        unref(L, &nd->event_ref);
        unref(L, &nd->log_ref);
        protect(m, live_remove_body, nd);
    }
    /* While the state closes, lraft_nodes_close_all frees what is collected once every node
     * has stopped: freeing here would pull the node from under its loop. */
    if (nd->collected && (m == NULL || !m->finalizing)) {
        node_free(nd);
    }
}

/* Starts stopping; returns whether the stop is complete. */
static void begin_stop(struct lraft_node *nd)
{
    if (nd->state != ST_OPEN) {
        return;
    }
    nd->state = ST_STOPPING;
    if (nd->node == NULL) {
        on_stopped(nd);
        return;
    }
    if (nd->m->depth > 0) {
        /* Called from a callback, perhaps this node's own: stop on the next turn of the loop,
         * outside the runtime's frames. */
        nd->stop_deferred = true;
        uv_async_send(&nd->m->wake);
        return;
    }
    craft_uv_node_stop(nd->node, on_stopped, nd);
}

void lraft_nodes_deferred(struct lraft_loop *m)
{
    for (struct lraft_node *nd = m->nodes; nd != NULL; nd = nd->next) {
        if (nd->stop_deferred) {
            nd->stop_deferred = false;
            craft_uv_node_stop(nd->node, on_stopped, nd);
        }
    }
}

/* Idempotent; shared by :close(), __close and __gc. */
static void node_close(lua_State *L, struct lraft_node *nd)
{
    struct lraft_loop *m = nd->m;
    if (m == NULL || nd->state == ST_CLOSED) {
        return;
    }
    if (m->depth == 0) {
        m->L = L;
    }
    begin_stop(nd);
    if (m->depth == 0 && !nd->closed) {
        lraft_run_until(m, L, &nd->closed);
    }
}

void lraft_nodes_close_all(struct lraft_loop *m, lua_State *L)
{
    for (struct lraft_node *nd = m->nodes; nd != NULL; nd = nd->next) {
        begin_stop(nd);
        if (nd->stop_deferred) {
            nd->stop_deferred = false;
            craft_uv_node_stop(nd->node, on_stopped, nd);
        }
    }
    for (struct lraft_node *nd = m->nodes; nd != NULL; nd = nd->next) {
        if (!nd->closed) {
            lraft_run_until(m, L, &nd->closed);
        }
    }
    /* The loop goes away: nodes freed later must not touch it. */
    struct lraft_node *nd = m->nodes;
    while (nd != NULL) {
        struct lraft_node *next = nd->next;
        nd->m = NULL;
        nd->next = nd->prev = NULL;
        if (nd->collected && nd->closed) {
            node_free(nd);
        }
        nd = next;
    }
    m->nodes = NULL;
}

void lraft_nodes_close_open(struct lraft_loop *m, lua_State *L)
{
    for (;;) {
        struct lraft_node *nd = m->nodes;
        while (nd != NULL && nd->state != ST_OPEN) {
            nd = nd->next;
        }
        if (nd == NULL) {
            return;
        }
        node_close(L, nd);
        if (nd->state == ST_OPEN) {
            return; /* cannot happen: begin_stop leaves ST_OPEN at once */
        }
    }
}

static int l_close(lua_State *L)
{
    struct lraft_node *nd = check_node(L, 1);
    if (nd->m != NULL && nd->state == ST_OPEN) {
        node_close(L, nd);
        lraft_raise_pending(nd->m, L);
    }
    lua_pushboolean(L, nd->state == ST_CLOSED);
    return 1;
}

static int l_gc(lua_State *L)
{
    struct lraft_node **p = luaL_checkudata(L, 1, LRAFT_NODE_MT);
    struct lraft_node *nd = *p;
    if (nd == NULL) {
        return 0;
    }
    *p = NULL;
    if (nd->m == NULL) {
        node_free(nd);
        return 0;
    }
    if (nd->state != ST_CLOSED) {
        /* An open node is referenced by the loop's table of live nodes: reaching here means
         * the Lua state is closing. No more calls into Lua. */
        nd->m->finalizing = true;
        node_close(L, nd);
    }
    /* Marked collected only now: on_stopped frees a collected node, and it runs inside
     * node_close when the stop completes there (which freed it twice, a crash at exit of
     * every script that ended with a node open). If the stop did not complete, on_stopped
     * frees it later. */
    nd->collected = true;
    if (nd->closed) {
        node_free(nd);
    }
    return 0;
}

/* ---- the state machine stream -------------------------------------------------------------- */

static void fsm_wake(void *data)
{
    struct lraft_node *nd = data;
    nd->fsm_woken = true;
    if (nd->m != NULL) {
        uv_async_send(&nd->m->wake);
    }
}

void lraft_nodes_run_streams(struct lraft_loop *m)
{
    /* A stream runs Lua code, and with it the garbage collector: a closed node that was
     * collected is freed there (l_gc), the next one in the list included. So no pointer into
     * the list is kept across a run: each run starts again from the head, and the pass number
     * marks the nodes that ran in this pass (a node with more to do runs on the next turn). */
    unsigned pass = ++m->stream_pass;
    for (;;) {
        struct lraft_node *nd = m->nodes;
        while (nd != NULL && !(nd->fsm_woken && nd->node != NULL && nd->stream_pass != pass)) {
            nd = nd->next;
        }
        if (nd == NULL) {
            return;
        }
        /* An open node is referenced from the live table: never collected while it runs. */
        nd->stream_pass = pass;
        nd->fsm_woken = false;
        if (craft_uv_fsm_run(nd->node) == 1) {
            nd->fsm_woken = true; /* more: after the loop's next turn */
            uv_async_send(&m->wake);
        }
    }
}

/* ---- creation ------------------------------------------------------------------------------ */

static int ref_opt_fn(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return LUA_NOREF;
    }
    if (lua_type(L, -1) != LUA_TFUNCTION) {
        return luaL_error(L, "raft.node: %s must be a function", k);
    }
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

static char *dup_opt(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

/* core.node(options) -> node userdata, or nil, message, code. The options were checked by
 * raft/init.lua; here they are converted. */
int lraft_node_open(lua_State *L)
{
    struct lraft_loop *m = lraft_loop_get(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    if (m->depth > 0) {
        return luaL_error(L, "raft.node: cannot start a node from a callback");
    }
    struct lraft_node **p = lua_newuserdata(L, sizeof *p);
    *p = NULL;
    luaL_getmetatable(L, LRAFT_NODE_MT);
    lua_setmetatable(L, -2);
    int ud = lua_gettop(L);
    struct lraft_node *nd = calloc(1, sizeof *nd);
    if (nd == NULL) {
        return lraft_fail(L, CRAFT_ENOMEM, NULL);
    }
    nd->apply_ref = nd->apply_batch_ref = nd->snapshot_ref = nd->restore_ref = nd->event_ref =
        nd->log_ref = LUA_NOREF;
    *p = nd;
    nd->m = m;
    nd->next = m->nodes;
    if (m->nodes != NULL) {
        m->nodes->prev = nd;
    }
    m->nodes = nd;
    nd->state = ST_OPEN;

    struct craft_uv_config *c = &nd->cfg;
    craft_uv_config_init(c, (craft_id)lraft_opt_int(L, 1, "id", 0));
    nd->address = dup_opt(lraft_opt_str(L, 1, "address", NULL));
    nd->data_dir = dup_opt(lraft_opt_str(L, 1, "data_dir", NULL));
    c->address = nd->address;
    c->data_dir = nd->data_dir;
    c->cluster_id = (uint64_t)lraft_opt_int(L, 1, "cluster_id", 0);
    c->heartbeat_ms = (unsigned)lraft_opt_int(L, 1, "heartbeat_ms", c->heartbeat_ms);
    c->election_timeout_ms =
        (unsigned)lraft_opt_int(L, 1, "election_timeout_ms", c->election_timeout_ms);
    c->pre_vote = lraft_opt_bool(L, 1, "pre_vote", c->pre_vote);
    c->check_quorum = lraft_opt_bool(L, 1, "check_quorum", c->check_quorum);
    c->snapshot_entries = (uint64_t)lraft_opt_int(L, 1, "snapshot_entries",
                                                  (lua_Integer)c->snapshot_entries);
    c->snapshot_trailing = (uint64_t)lraft_opt_int(L, 1, "snapshot_trailing",
                                                   (lua_Integer)c->snapshot_trailing);
    c->fsync = lraft_opt_bool(L, 1, "fsync", c->fsync);
    /* Range checked by raft.node (lua/raft/init.lua); 0: the store's default. */
    c->segment_size = (uint64_t)lraft_opt_int(L, 1, "segment_size", 0);
    c->forward = lraft_opt_bool(L, 1, "forward", c->forward);
    c->max_frame = (uint32_t)lraft_opt_int(L, 1, "max_frame", c->max_frame);
    c->default_timeout_ms =
        (unsigned)lraft_opt_int(L, 1, "timeout_ms", c->default_timeout_ms);
    c->log_level = (int)lraft_opt_int(L, 1, "log_level", CRAFT_UV_WARN);
    c->seed = (uint64_t)lraft_opt_int(L, 1, "seed", 0);
    nd->metrics_address = dup_opt(lraft_opt_str(L, 1, "metrics_address", NULL));
    c->metrics_address = nd->metrics_address;
    c->lag_threshold = (uint64_t)lraft_opt_int(L, 1, "lag_threshold",
                                               (lua_Integer)c->lag_threshold);
    /* Borrowed from the options table, which stays on the stack through craft_uv_node_new. */
    lua_getfield(L, 1, "security");
    lraft_security_read(L, lua_gettop(L), &c->security);
    lua_pop(L, 1);
    lua_getfield(L, 1, "limits");
    lraft_limits_read(L, lua_gettop(L), &c->limits);
    lua_pop(L, 1);
    lua_getfield(L, 1, "peers");
    if (lua_type(L, -1) == LUA_TTABLE) {
        craft_configuration_init(&nd->boot);
        nd->has_boot = true;
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) {
            lua_Integer id = lua_tointeger(L, -2);
            const char *addr = lua_tostring(L, -1);
            int rc = addr != NULL ? craft_configuration_add(&nd->boot, NULL, (craft_id)id, addr,
                                                            CRAFT_VOTER)
                                  : CRAFT_EINVAL;
            if (rc != 0) {
                return luaL_error(L, "raft.node: bad peer %d (ids > 0 and unique, addresses "
                                     "\"host:port\")", (int)id);
            }
            lua_pop(L, 1);
        }
        c->bootstrap = &nd->boot;
    }
    lua_pop(L, 1);
    nd->apply_ref = ref_opt_fn(L, 1, "apply");
    nd->apply_batch_ref = ref_opt_fn(L, 1, "apply_batch");
    nd->snapshot_ref = ref_opt_fn(L, 1, "snapshot");
    nd->restore_ref = ref_opt_fn(L, 1, "restore");
    nd->event_ref = ref_opt_fn(L, 1, "event");
    nd->log_ref = ref_opt_fn(L, 1, "log");
    if (nd->snapshot_ref == LUA_NOREF) {
        c->snapshot_entries = 0; /* nothing to take snapshots with */
    }
    lua_getfield(L, 1, "log_store");
    if (!lua_isnil(L, -1)) {
        /* The node owns the store from here: craft_uv_node_new closes it even on failure. */
        lraft_store_new(L, m, -1, (unsigned long long)c->id, &c->store);
    }
    lua_pop(L, 1);
    c->fsm = (struct craft_uv_fsm){.data = nd, .apply = fsm_apply, .snapshot = fsm_snapshot,
                                   .restore = fsm_restore};
    /* The Lua state may be entered by one thread only: the node's state machine stream, and
     * with it every callback, runs where the loop runs (lraft_nodes_run_streams). */
    c->fsm_wake = fsm_wake;
    c->fsm_wake_data = nd;
    c->log = on_log;
    c->log_data = nd;
    c->event = on_event;
    c->event_data = nd;

    /* Opening may restore the state machine from a snapshot, on this thread. */
    lua_State *prev = m->L;
    m->L = L;
    int rc = craft_uv_node_new(&m->loop, c, &nd->node);
    if (rc == 0) {
        snprintf(nd->bound, sizeof nd->bound, "%s", craft_uv_node_address(nd->node));
        rc = craft_uv_node_start(nd->node);
        if (rc != 0) {
            lua_pushfstring(L, "starting node %d: %s", (int)c->id, craft_strerror(rc));
        } else {
            /* What starting raised (peers_differ) is delivered before raft.node returns, as a
             * callback (nothing may wait in it). */
            m->depth++;
            nd->fsm_woken = false;
            if (craft_uv_fsm_run(nd->node) == 1) {
                fsm_wake(nd);
            }
            m->depth--;
        }
    } else {
        lua_pushstring(L, craft_uv_last_error());
    }
    m->L = prev;
    if (rc != 0) {
        /* The message is on the stack; close what was opened. */
        live_set(L, m, ud, true);
        node_close(L, nd);
        if (m->pending_err != LUA_NOREF) {
            lraft_raise_pending(m, L);
        }
        const char *msg = lua_tostring(L, -1);
        return lraft_fail(L, rc, msg);
    }
    live_set(L, m, ud, true);
    lua_pushvalue(L, ud);
    lraft_raise_pending(m, L);
    return 1;
}

/* node:set_security(settings) -> true, or nil, message, code */
static int l_set_security(lua_State *L)
{
    struct lraft_node *nd = check_open(L, 1);
    struct craft_security s;
    lraft_security_read(L, 2, &s);
    int rc = craft_uv_set_security(nd->node, &s);
    if (rc != 0) {
        return lraft_fail(L, rc, rc == CRAFT_EINVAL ? craft_uv_last_error() : NULL);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static const luaL_Reg methods[] = {
    {"submit", l_submit},
    {"set_security", l_set_security},
    {"status", l_status},
    {"metrics", l_metrics},
    {"id", l_id},
    {"address", l_address},
    {"is_open", l_is_open},
    {"close", l_close},
    {NULL, NULL},
};

void lraft_node_init(lua_State *L)
{
    if (luaL_newmetatable(L, LRAFT_NODE_MT)) {
        lua_newtable(L);
        luaL_setfuncs(L, methods, 0);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_close);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
}
