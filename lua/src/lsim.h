/* The simulator's half of raft.core: sim.c (the sim object), sim_msg.c (messages, entries and
 * events as tables and back), sim_core.c (a Raft written in Lua run in place of craft's core).
 * The table shapes are those of craft.sim's dicts in Python (docs/simulator.md, "Messages,
 * entries and events as values"). */
#ifndef LRAFT_LSIM_H
#define LRAFT_LSIM_H

#include <stdbool.h>

#include "craft/sim.h"
#include "lraft.h"

struct lraft_core;

struct lraft_sim {
    struct craft_sim *sim;
    lua_State *L;
    int apply_ref, snapshot_ref, restore_ref, trace_ref, pred_ref, event_ref;
    int snap_ref; /* the last snapshot string, borrowed by the simulator until the next one */
    int err_ref;  /* the first error a callback raised during the current call */
    int preds_ref; /* a table keeping the rules' predicates alive */
    unsigned n;
    struct lraft_core *core; /* a Raft written in Lua (core =), or NULL */
};

/* Calls the function and nargs arguments on top of s->L in protected mode; on error keeps the
 * first error (raised when the running call returns) and returns false (nothing pushed). */
bool lraft_sim_call(struct lraft_sim *s, int nargs, int nres);
/* Keeps the error value on top of the stack (pops it). */
void lraft_sim_keep(struct lraft_sim *s);

/* Memory that lives until reset: what a message or an update built from Lua values points to. */
struct lraft_arena {
    void **blocks;
    size_t n, cap;
};
void *lraft_arena_alloc(struct lraft_arena *a, size_t size);
void lraft_arena_reset(struct lraft_arena *a);
void lraft_arena_free(struct lraft_arena *a);

void lraft_push_msg(lua_State *L, const struct craft_message *m);
void lraft_push_entry(lua_State *L, const struct craft_entry *e);
void lraft_push_event(lua_State *L, const struct craft_sim_event *ev);
void lraft_push_ids(lua_State *L, uint64_t mask);
/* From the table at idx: NULL, or an error message (a static string or one pushed: the caller
 * raises or keeps it). What the result points to lives in the arena. */
const char *lraft_to_msg(lua_State *L, int idx, struct craft_message *m, struct lraft_arena *a);
const char *lraft_to_entry(lua_State *L, int idx, struct craft_entry *e, struct lraft_arena *a);
const char *lraft_to_conf(lua_State *L, int voters, int learners, struct craft_configuration *c,
                          struct lraft_arena *a);
/* A message type by name or number: 1..7, or -1. */
int lraft_msg_type(lua_State *L, int idx);
/* Field helpers: a missing field leaves *out alone. */
uint64_t lraft_field_u64(lua_State *L, int t, const char *k, uint64_t def);
bool lraft_field_bool(lua_State *L, int t, const char *k, bool def);

/* sim_core.c: a craft_sim_core table over a Lua factory (at the top of the stack: popped). */
struct lraft_core *lraft_core_new(lua_State *L, struct lraft_sim *s);
const struct craft_sim_core *lraft_core_table(struct lraft_core *c);
void lraft_core_free(lua_State *L, struct lraft_core *c);

#endif
