/* The simulator's half of craft._craft: sim.c (the Sim type), sim_msg.c (messages, entries and
 * events as dicts and back), sim_core.c (a Raft written in Python run in place of craft's core).
 * The dict shapes are documented in docs/simulator.md ("Messages, entries and events as
 * values") and are the same tables in Lua (lua/src/sim_msg.c). */
#ifndef CRAFTPY_SIMPY_H
#define CRAFTPY_SIMPY_H

#include "craftpy.h"
#include "craft/sim.h"

/* Memory that lives until the arena is reset: what a message or an update built from Python
 * values points to. */
struct craftpy_arena {
    void **blocks;
    size_t n, cap;
};
void *craftpy_arena_alloc(struct craftpy_arena *a, size_t size);
void craftpy_arena_reset(struct craftpy_arena *a);

/* New references, or NULL with an exception set. */
PyObject *craftpy_msg_to_dict(const struct craft_message *m);
PyObject *craftpy_entry_to_dict(const struct craft_entry *e);
PyObject *craftpy_event_to_dict(const struct craft_sim_event *ev);
/* A list of ids from a mask (bit id - 1). */
PyObject *craftpy_ids_of_mask(uint64_t mask);

/* From Python values: 0, or -1 with an exception set (TypeError/ValueError naming the field).
 * What the result points to lives in the arena. */
int craftpy_msg_from_dict(PyObject *d, struct craft_message *m, struct craftpy_arena *a);
int craftpy_entry_from_dict(PyObject *d, struct craft_entry *e, struct craftpy_arena *a);
/* An entry type: "command", "barrier", "config" or 1..3; -1 with an exception set. */
int craftpy_entry_type_from(PyObject *o);
/* A message type: its name ("AppendEntries", ...) or 1..7; -1 with an exception set. */
int craftpy_msg_type_from(PyObject *o);
const char *craftpy_entry_type_name(int type);
/* A configuration of voters and learners (lists of ids), in the arena. */
int craftpy_conf_from(PyObject *voters, PyObject *learners, struct craft_configuration *c,
                      struct craftpy_arena *a);

/* Field helpers for dicts: a missing key or None leaves *out alone. */
int craftpy_get_u64(PyObject *d, const char *key, uint64_t *out);
int craftpy_get_bool(PyObject *d, const char *key, bool *out);

/* sim_core.c: a craft_sim_core table over a Python factory (kept referenced by the table). */
struct craftpy_core;
struct craftpy_core *craftpy_core_new(PyObject *factory, void (*keep_error)(void *ud),
                                      void *ud);
const struct craft_sim_core *craftpy_core_table(struct craftpy_core *c);
void craftpy_core_free(struct craftpy_core *c);
int craftpy_core_traverse(struct craftpy_core *c, visitproc visit, void *arg);

#endif
