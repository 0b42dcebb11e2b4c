/* core.c: the raft.core module: the loop that the caller's thread drives, protected calls into
 * Lua, the queue of calls from worker threads, error values, and the module table.
 *
 * The loop belongs to the Lua state: raft.run() and raft.poll() run it on the caller's thread,
 * and every callback into Lua happens inside one of those calls (or inside a blocking call of
 * the module that drives the loop itself). Callbacks are protected calls with a traceback; an
 * error they raise goes to raft.on_error's handler, or, without one, stops the loop and is
 * raised again by whatever was running it, once uv_run has returned (never across libuv's
 * frames). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "craft/uv.h"
#include "lraft.h"

static const char LOOP_KEY[] = "raft.core.loop";

/* ---- options ---------------------------------------------------------------------------------- */

lua_Integer lraft_opt_int(lua_State *L, int t, const char *k, lua_Integer def)
{
    lua_getfield(L, t, k);
    lua_Integer v = lua_isnil(L, -1) ? def : (lua_Integer)luaL_checknumber(L, -1);
    lua_pop(L, 1);
    return v;
}

double lraft_opt_num(lua_State *L, int t, const char *k, double def)
{
    lua_getfield(L, t, k);
    double v = lua_isnil(L, -1) ? def : (double)luaL_checknumber(L, -1);
    lua_pop(L, 1);
    return v;
}

bool lraft_opt_bool(lua_State *L, int t, const char *k, bool def)
{
    lua_getfield(L, t, k);
    bool v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* The string stays valid while the table holds it. */
const char *lraft_opt_str(lua_State *L, int t, const char *k, const char *def)
{
    lua_getfield(L, t, k);
    const char *v = lua_isnil(L, -1) ? def : luaL_checkstring(L, -1);
    lua_pop(L, 1);
    return v;
}

/* ---- errors ----------------------------------------------------------------------------------- */

int lraft_fail(lua_State *L, int rc, const char *msg)
{
    lua_pushnil(L);
    lua_pushstring(L, msg != NULL && msg[0] ? msg : craft_strerror(rc));
    const char *name = craft_err_name(rc);
    lua_pushstring(L, strncmp(name, "CRAFT_", 6) == 0 ? name + 6 : name);
    return 3;
}

static int traceback(lua_State *L)
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

/* An error (with its traceback) at the top of m->L, raised by a callback: pops it. */
void lraft_report_error(struct lraft_loop *m)
{
    lua_State *L = m->L;
    if (m->err_handler != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, m->err_handler);
        lua_insert(L, -2);
        if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
            fprintf(stderr, "raft: the error handler raised: %s\n", lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        return;
    }
    if (m->pending_err == LUA_NOREF) {
        m->pending_err = luaL_ref(L, LUA_REGISTRYINDEX);
        uv_stop(&m->loop);
    } else {
        fprintf(stderr, "raft: error in a callback (another one is pending): %s\n",
                lua_tostring(L, -1));
        lua_pop(L, 1);
    }
}

bool lraft_pcall(struct lraft_loop *m, int nargs, int nres)
{
    lua_State *L = m->L;
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    int rc = lua_pcall(L, nargs, nres, base);
    lua_remove(L, base);
    if (rc == LUA_OK) {
        return true;
    }
    lraft_report_error(m);
    return false;
}

void lraft_raise_pending(struct lraft_loop *m, lua_State *L)
{
    if (m->pending_err == LUA_NOREF) {
        return;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, m->pending_err);
    luaL_unref(L, LUA_REGISTRYINDEX, m->pending_err);
    m->pending_err = LUA_NOREF;
    lua_error(L);
}

/* ---- calls from worker threads ------------------------------------------------------------- */

bool lraft_on_loop_thread(struct lraft_loop *m)
{
    uv_thread_t self = uv_thread_self();
    return uv_thread_equal(&self, &m->thread) != 0;
}

void lraft_marshal(struct lraft_loop *m, struct lraft_call *c)
{
    c->done = false;
    c->next = NULL;
    uv_mutex_lock(&m->mu);
    if (m->calls_tail != NULL) {
        m->calls_tail->next = c;
    } else {
        m->calls = c;
    }
    m->calls_tail = c;
    uv_mutex_unlock(&m->mu);
    uv_async_send(&m->wake);
    if (c->detached) {
        return;
    }
    uv_mutex_lock(&m->mu);
    while (!c->done) {
        uv_cond_wait(&m->cv, &m->mu);
    }
    uv_mutex_unlock(&m->mu);
}

static void on_wake(uv_async_t *h)
{
    struct lraft_loop *m = h->data;
    for (;;) {
        uv_mutex_lock(&m->mu);
        struct lraft_call *c = m->calls;
        if (c != NULL) {
            m->calls = c->next;
            if (m->calls == NULL) {
                m->calls_tail = NULL;
            }
        }
        uv_mutex_unlock(&m->mu);
        if (c == NULL) {
            break;
        }
        lraft_node_run_call(m, c);
        if (c->detached) {
            free(c->data);
            free(c);
            continue;
        }
        uv_mutex_lock(&m->mu);
        c->done = true;
        uv_cond_broadcast(&m->cv);
        uv_mutex_unlock(&m->mu);
    }
    lraft_nodes_run_streams(m);
    lraft_nodes_deferred(m);
}

/* ---- the loop --------------------------------------------------------------------------------- */

struct lraft_loop *lraft_loop_get(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, LOOP_KEY);
    struct lraft_loop **p = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (p == NULL || *p == NULL || (*p)->closed) {
        luaL_error(L, "raft: the module's loop is closed");
    }
    return *p;
}

static int run(struct lraft_loop *m, lua_State *L, uv_run_mode mode)
{
    lua_State *prev = m->L;
    m->L = L;
    m->depth++;
    int alive = uv_run(&m->loop, mode);
    m->depth--;
    m->L = prev;
    return alive;
}

void lraft_run_until(struct lraft_loop *m, lua_State *L, const bool *flag)
{
    while (!*flag) {
        int alive = run(m, L, UV_RUN_ONCE);
        if (!alive && !*flag) {
            break;
        }
        if (m->pending_err != LUA_NOREF && m->err_handler == LUA_NOREF && m->finalizing) {
            /* Nobody will raise it: drop it. */
            luaL_unref(L, LUA_REGISTRYINDEX, m->pending_err);
            m->pending_err = LUA_NOREF;
        }
    }
}

static void on_timer(uv_timer_t *t)
{
    /* raft.run(timeout): stop there. raft.poll(timeout): waking uv_run was the point. */
    uv_stop(t->loop);
}

static int check_reentry(lua_State *L, struct lraft_loop *m, const char *what)
{
    if (m->depth > 0) {
        return luaL_error(L,
                          "raft.%s: the loop is already running (called from a callback?): "
                          "callbacks must not wait; pass a callback, or use a coroutine "
                          "started with raft.spawn",
                          what);
    }
    return 0;
}

/* Ctrl-C while raft.run waits. The interpreters' own SIGINT handler (lua.c, luajit.c) only sets
 * a hook that raises "interrupted!" at the next Lua instruction, and resets SIGINT to its
 * default: in uv_run with nothing to do no Lua instruction comes, so the first Ctrl-C did
 * nothing and the second killed the process with its nodes open. While raft.run runs, SIGINT
 * is ours instead: it stops the loop, and raft.run closes every node and returns. */
static void on_sigint(uv_signal_t *h, int signum)
{
    (void)signum;
    struct lraft_loop *m = h->data;
    m->interrupted = true;
    uv_stop(&m->loop);
}

/* core.run(mode, timeout_ms): mode "default" (until raft.stop(), the timeout, or nothing
 * left), "once" (until something happened or the timeout), "nowait". Returns whether the loop
 * still has work; in mode "default", nil, message, "EINTR" when SIGINT ended it (every node is
 * closed then). */
static int l_run(lua_State *L)
{
    static const char *const modes[] = {"default", "once", "nowait", NULL};
    struct lraft_loop *m = lraft_loop_get(L);
    int mode = luaL_checkoption(L, 1, "default", modes);
    lua_Integer timeout = luaL_optinteger(L, 2, -1);
    check_reentry(L, m, mode == 0 ? "run" : "poll");
    if (timeout >= 0 && mode != 2) {
        uv_timer_start(&m->timer, on_timer, (uint64_t)timeout, 0);
    }
    /* The host's SIGINT disposition, put back when the run ends (libuv would leave the
     * default action behind). */
    struct sigaction before;
    bool watch = mode == 0 && sigaction(SIGINT, NULL, &before) == 0;
    if (watch) {
        m->interrupted = false;
        watch = uv_signal_start(&m->sigint, on_sigint, SIGINT) == 0;
    }
    int alive = run(m, L, mode == 0 ? UV_RUN_DEFAULT : mode == 1 ? UV_RUN_ONCE : UV_RUN_NOWAIT);
    uv_timer_stop(&m->timer);
    if (watch) {
        uv_signal_stop(&m->sigint);
        sigaction(SIGINT, &before, NULL);
    }
    if (watch && m->interrupted) {
        m->interrupted = false;
        lraft_nodes_close_open(m, L);
        lraft_raise_pending(m, L);
        lua_pushnil(L);
        lua_pushstring(L, "interrupted: SIGINT (Ctrl-C) ended raft.run; every node was closed");
        lua_pushstring(L, "EINTR");
        return 3;
    }
    lraft_raise_pending(m, L);
    lua_pushboolean(L, alive);
    return 1;
}

static int l_stop(lua_State *L)
{
    struct lraft_loop *m = lraft_loop_get(L);
    uv_stop(&m->loop);
    return 0;
}

static int l_in_loop(lua_State *L)
{
    struct lraft_loop *m = lraft_loop_get(L);
    lua_pushboolean(L, m->depth > 0);
    return 1;
}

static int l_on_error(lua_State *L)
{
    struct lraft_loop *m = lraft_loop_get(L);
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TFUNCTION);
    }
    if (m->err_handler != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, m->err_handler);
        m->err_handler = LUA_NOREF;
    }
    if (!lua_isnoneornil(L, 1)) {
        lua_pushvalue(L, 1);
        m->err_handler = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    return 0;
}

/* Milliseconds of a monotonic clock. */
static int l_now(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)(uv_hrtime() / 1000000ULL));
    return 1;
}

/* Milliseconds of the same clock, with a fraction (nanosecond resolution): for latencies. */
static int l_hrtime(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e6);
    return 1;
}

/* For embedding in another loop: the fd to watch for readability and the timeout after which
 * raft.poll(0) must be called anyway (-1: none). */
static int l_backend(lua_State *L)
{
    struct lraft_loop *m = lraft_loop_get(L);
    uv_update_time(&m->loop);
    lua_pushinteger(L, uv_backend_fd(&m->loop));
    lua_pushinteger(L, uv_backend_timeout(&m->loop));
    return 2;
}

static int l_strerror(lua_State *L)
{
    int rc = (int)luaL_checkinteger(L, 1);
    const char *name = craft_err_name(rc);
    lua_pushstring(L, craft_strerror(rc));
    lua_pushstring(L, strncmp(name, "CRAFT_", 6) == 0 ? name + 6 : name);
    return 2;
}

static void close_cb(uv_handle_t *h)
{
    (void)h;
}

/* ---- one-shot timers (raft.after, raft.sleep in a coroutine) ---------------------------------- */

struct ltimer {
    uv_timer_t t;
    struct lraft_loop *m;
    int cb_ref;
};

static void timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static int timer_body(lua_State *L)
{
    struct ltimer *t = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->cb_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, t->cb_ref);
    t->cb_ref = LUA_NOREF;
    lraft_pcall(t->m, 0, 0);
    return 0;
}

static void on_after(uv_timer_t *h)
{
    struct ltimer *t = h->data;
    if (!t->m->finalizing) {
        lua_State *L = t->m->L;
        lua_pushcfunction(L, timer_body);
        lua_pushlightuserdata(L, t);
        if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
            fprintf(stderr, "raft: %s\n", lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    uv_close((uv_handle_t *)h, timer_closed);
}

/* core.after(ms, fn): calls fn once on the loop after ms. */
static int l_after(lua_State *L)
{
    struct lraft_loop *m = lraft_loop_get(L);
    lua_Integer ms = luaL_checkinteger(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    struct ltimer *t = calloc(1, sizeof *t);
    if (t == NULL) {
        return luaL_error(L, "raft.after: out of memory");
    }
    t->m = m;
    uv_timer_init(&m->loop, &t->t);
    t->t.data = t;
    lua_pushvalue(L, 2);
    t->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    uv_timer_start(&t->t, on_after, (uint64_t)(ms < 0 ? 0 : ms), 0);
    return 0;
}

static void close_timer(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h) && h->type == UV_TIMER) {
        uv_close(h, timer_closed);
    }
}

static int loop_gc(lua_State *L)
{
    struct lraft_loop **p = luaL_checkudata(L, 1, LRAFT_LOOP_MT);
    struct lraft_loop *m = *p;
    if (m == NULL || m->closed) {
        return 0;
    }
    m->finalizing = true;
    m->L = L;
    lraft_nodes_close_all(m, L);
    m->closed = true;
    uv_close((uv_handle_t *)&m->timer, close_cb);
    uv_close((uv_handle_t *)&m->wake, close_cb);
    uv_close((uv_handle_t *)&m->sigint, close_cb);
    /* Pending raft.after timers: the nodes are gone, so every other handle is one of those. */
    uv_walk(&m->loop, close_timer, NULL);
    uv_run(&m->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&m->loop) != 0) {
        /* Something still runs on the loop (a node that could not stop): leak it rather than
         * free memory libuv may still use. */
        return 0;
    }
    uv_mutex_destroy(&m->mu);
    uv_cond_destroy(&m->cv);
    free(m);
    *p = NULL;
    return 0;
}

/* core.max_command([max_frame]) -> the largest command a cluster with that max_frame replicates. */
static int l_max_command(lua_State *L)
{
    lua_Integer max_frame = luaL_optinteger(L, 1, 0);
    luaL_argcheck(L, max_frame >= 0 && max_frame <= 0xFFFFFFFF, 1, "max_frame out of range");
    lua_pushinteger(L, (lua_Integer)craft_uv_max_command((uint32_t)max_frame));
    return 1;
}

static const luaL_Reg funcs[] = {
    {"max_command", l_max_command},
    {"run", l_run},
    {"stop", l_stop},
    {"in_loop", l_in_loop},
    {"on_error", l_on_error},
    {"now", l_now},
    {"hrtime", l_hrtime},
    {"after", l_after},
    {"backend", l_backend},
    {"strerror", l_strerror},
    {"node", lraft_node_open},
    {"generate_secret", lraft_generate_secret},
    {"check_security", lraft_check_security},
    {"sim", lraft_sim_open},
    {"run_script", lraft_sim_run_script},
    {NULL, NULL},
};

#if defined(__GNUC__)
__attribute__((visibility("default")))
#endif
int luaopen_raft_core(lua_State *L);

int luaopen_raft_core(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, LOOP_KEY);
    bool have = !lua_isnil(L, -1);
    lua_pop(L, 1);
    /* The runtime writes to TCP sockets with libuv, which does not ask for MSG_NOSIGNAL: a
     * write to a peer that just died (kill -9 of the leader) raises SIGPIPE, whose default
     * action kills the process without a word. C programs and Python ignore it; the standalone
     * Lua interpreters do not. Ignore it unless the host installed a handler of its own. */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        signal(SIGPIPE, SIG_IGN);
    }
    if (!have) {
        struct lraft_loop **p = lua_newuserdata(L, sizeof *p);
        *p = NULL;
        if (luaL_newmetatable(L, LRAFT_LOOP_MT)) {
            lua_pushcfunction(L, loop_gc);
            lua_setfield(L, -2, "__gc");
        }
        lua_setmetatable(L, -2);
        struct lraft_loop *m = calloc(1, sizeof *m);
        if (m == NULL) {
            return luaL_error(L, "raft: out of memory");
        }
        if (uv_loop_init(&m->loop) != 0) {
            free(m);
            return luaL_error(L, "raft: uv_loop_init failed");
        }
        m->thread = uv_thread_self();
        m->err_handler = LUA_NOREF;
        m->pending_err = LUA_NOREF;
        uv_mutex_init(&m->mu);
        uv_cond_init(&m->cv);
        uv_timer_init(&m->loop, &m->timer);
        m->timer.data = m;
        uv_signal_init(&m->loop, &m->sigint);
        m->sigint.data = m;
        uv_unref((uv_handle_t *)&m->sigint); /* watching Ctrl-C keeps nothing alive */
        uv_async_init(&m->loop, &m->wake, on_wake);
        m->wake.data = m;
        uv_unref((uv_handle_t *)&m->wake);
        lua_newtable(L);
        m->live = luaL_ref(L, LUA_REGISTRYINDEX);
        *p = m;
        lua_setfield(L, LUA_REGISTRYINDEX, LOOP_KEY);
    }
    lraft_node_init(L);
    lraft_sim_init(L);
    luaL_newlib(L, funcs);
    lraft_session_init(L);
    lraft_sha256_init(L);
    lua_pushstring(L, CRAFT_VERSION_STRING);
    lua_setfield(L, -2, "craft_version");
    lua_newtable(L);
#define LRAFT_CODE(name, code, msg)                                                              \
    lua_pushinteger(L, code);                                                                  \
    lua_setfield(L, -2, "E" #name);
    CRAFT_ERRNO_MAP(LRAFT_CODE)
#undef LRAFT_CODE
    lua_setfield(L, -2, "codes");
    return 1;
}
