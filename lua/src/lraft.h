/* lraft.h: what the files of the raft.core Lua module share.
 *
 * raft.core is the C half of the Lua rock "raft" (lua/raft/init.lua is the other half, and the
 * API users see). It holds one libuv loop per Lua state, driven by the caller's thread (raft.run,
 * raft.poll), the runtime's nodes (node.c) and the simulator (sim.c). Everything Lua-facing that
 * can be written in Lua is: this side converts values, keeps callbacks with luaL_ref, and calls
 * them with a protected call.
 *
 * Threads: the Lua state is touched only on the thread that created the module (the loop
 * thread). The runtime calls the state machine's snapshot and restore, a log store written in
 * Lua (store.c), and sometimes its log function, on a libuv worker thread: those calls are
 * marshalled to the loop thread (see lraft_marshal) and the worker waits for the answer. */
#ifndef LRAFT_H
#define LRAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "../compat.h"
#include "craft.h"

#define LRAFT_LOOP_MT "raft.loop"
#define LRAFT_NODE_MT "raft.node"
#define LRAFT_SIM_MT "raft.sim"

/* A call from a worker thread to be run on the loop thread. */
enum { CALL_SNAPSHOT = 1, CALL_RELEASE, CALL_RESTORE, CALL_LOG, CALL_FN };

struct lraft_loop;

struct lraft_node;

struct lraft_call {
    int kind;
    struct lraft_node *nd;
    /* SNAPSHOT (out): the Lua value kept alive by ref, and its chunks. */
    int ref;
    const char **chunks;
    size_t *lens;
    size_t n;
    /* RESTORE (in): the whole snapshot. LOG: the line. */
    char *data;
    size_t size;
    int level;
    /* FN: fn(loop, arg) on the loop thread (the log store's calls, store.c). */
    void (*fn)(struct lraft_loop *m, void *arg);
    void *arg;
    int rc;
    bool done;
    bool detached; /* RELEASE, LOG: nobody waits; the loop frees it */
    struct lraft_call *next;
};

/* The module's state: one per Lua state, a full userdata kept in the registry. */
struct lraft_loop {
    uv_loop_t loop;
    uv_thread_t thread; /* the loop thread: the one that loaded the module */
    lua_State *L;       /* the thread calling into the loop right now */
    int depth;          /* > 0 while uv_run runs (callbacks may not run the loop again) */
    bool finalizing;    /* lua_close: no more calls into Lua */
    bool closed;
    int err_handler;    /* LUA_NOREF, or raft.on_error's function */
    int pending_err;    /* LUA_NOREF, or the first error a callback raised */
    int live;           /* registry ref of a table {node userdata = true} of open nodes */
    uv_timer_t timer;   /* raft.poll / raft.run timeouts */
    uv_signal_t sigint; /* watched while raft.run runs: Ctrl-C ends it and closes the nodes */
    bool interrupted;   /* SIGINT arrived during raft.run */
    uv_async_t wake;    /* worker calls and deferred stops */
    uv_mutex_t mu;
    uv_cond_t cv;
    struct lraft_call *calls, *calls_tail;
    struct lraft_node *nodes; /* every node not yet freed */
    unsigned stream_pass;     /* lraft_nodes_run_streams' passes, counted */
};

/* core.c */
struct lraft_loop *lraft_loop_get(lua_State *L);
/* Calls the function at the top of the stack with nargs arguments below it... precisely: the
 * function and its nargs arguments are on top of m->L; pops them; on error hands the traceback
 * to the error handler. Returns true when the call succeeded (its nres results are then on the
 * stack). */
bool lraft_pcall(struct lraft_loop *m, int nargs, int nres);
/* Runs fn on the loop thread on behalf of a worker and waits for it (call lives on the caller's
 * stack), or queues it and returns at once when call->detached (heap-allocated). */
void lraft_marshal(struct lraft_loop *m, struct lraft_call *call);
bool lraft_on_loop_thread(struct lraft_loop *m);
/* Runs the loop until *flag becomes true (or the loop has nothing left to do). */
void lraft_run_until(struct lraft_loop *m, lua_State *L, const bool *flag);
/* Hands the error at the top of m->L (popped) to raft.on_error's handler, or keeps it to be
 * raised once the loop returns. */
void lraft_report_error(struct lraft_loop *m);
/* Raises the error a callback left pending, if any. */
void lraft_raise_pending(struct lraft_loop *m, lua_State *L);
/* Pushes nil, message, code name ("ENOTLEADER") and returns 3. */
int lraft_fail(lua_State *L, int rc, const char *msg);

/* node.c */
int lraft_node_open(lua_State *L);
void lraft_node_init(lua_State *L);
void lraft_node_run_call(struct lraft_loop *m, struct lraft_call *c);
void lraft_nodes_close_all(struct lraft_loop *m, lua_State *L);
/* Closes every open node (raft.run interrupted), running the loop until each has stopped. */
void lraft_nodes_close_open(struct lraft_loop *m, lua_State *L);
void lraft_nodes_deferred(struct lraft_loop *m);
/* Runs the state machine stream of every node that has work (craft_uv_fsm_run). */
void lraft_nodes_run_streams(struct lraft_loop *m);

/* store.c: a craft_store calling the Lua table at idx (raft.node's log_store). Raises for a
 * table without the required hooks. */
int lraft_store_new(lua_State *L, struct lraft_loop *m, int idx, unsigned long long id,
                    struct craft_store **out);

/* security.c: the settings table at index t (nil: plaintext; raises for a bad mode), the limits
 * table at index t (nil: the defaults); core.generate_secret, core.check_security. */
struct craft_security;
struct craft_uv_limits;
void lraft_security_read(lua_State *L, int t, struct craft_security *s);
void lraft_limits_read(lua_State *L, int t, struct craft_uv_limits *l);
int lraft_generate_secret(lua_State *L);
int lraft_check_security(lua_State *L);
/* session.c, sha256.c: add their functions to the module table at the top of the stack. */
void lraft_session_init(lua_State *L);
void lraft_sha256_init(lua_State *L);

/* sim.c */
int lraft_sim_open(lua_State *L);
/* core.run_script(text) -> output, report, commands, mismatches (a transcript) */
int lraft_sim_run_script(lua_State *L);
void lraft_sim_init(lua_State *L);

/* Option helpers: read field k of the table at index t, or the default. */
lua_Integer lraft_opt_int(lua_State *L, int t, const char *k, lua_Integer def);
bool lraft_opt_bool(lua_State *L, int t, const char *k, bool def);
double lraft_opt_num(lua_State *L, int t, const char *k, double def);
const char *lraft_opt_str(lua_State *L, int t, const char *k, const char *def);

#endif
