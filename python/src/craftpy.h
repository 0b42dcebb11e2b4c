/* craft._craft: the CPython binding of craft. Files:
 *   module.c    module init, errors (CRAFT_E* codes to craft.Error subclasses), session helpers
 *   sim.c       craft._craft.Sim: the deterministic simulator with Python state machines
 *   node.c      craft._craft.Node: a real node on the libuv runtime, its loop on its own thread
 *   pystore.c   a struct craft_store whose functions call a Python log store
 * Rules kept everywhere: no exception is left set across the C boundary (a callback from C that
 * fails records or logs its exception); the GIL is released around every blocking wait; every
 * call into Python from a runtime thread is bracketed by PyGILState_Ensure/Release. */
#ifndef CRAFTPY_H
#define CRAFTPY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "craft.h"

/* Sets the craft.Error subclass for rc (a CRAFT_E* code) with an optional detail and, for
 * CRAFT_ENOTLEADER, the leader. Returns NULL so callers can `return craftpy_raise(...)`. */
PyObject *craftpy_raise(int rc, const char *detail, craft_id leader_id,
                        const char *leader_address);
/* The same, as an exception instance (new reference), or NULL with an error set. */
PyObject *craftpy_error_object(int rc, const char *detail, craft_id leader_id,
                               const char *leader_address);
/* Raises craft.Violation(message, seed, trace). */
PyObject *craftpy_raise_violation(const char *message, uint64_t seed, PyObject *trace);
/* Logs the current exception (with its traceback) to the "craft" logger at ERROR and clears
 * it; prefix says where it happened. Needs the GIL. */
void craftpy_log_exception(const char *prefix);
/* Logs a line to the "craft" logger at a CRAFT_UV_* level. Needs the GIL. */
void craftpy_log(int level, const char *line);
/* The same with an exception's traceback (exc_info). Needs the GIL. */
void craftpy_log_exc(int level, const char *line, PyObject *exc);

/* node.c: craft._craft.after_fork_child(), see there. */
PyObject *craftpy_after_fork_child(PyObject *module, PyObject *noargs);
/* node.c: craft._craft.max_command(max_frame=0). */
PyObject *craftpy_max_command(PyObject *module, PyObject *args);

int craftpy_sim_init(PyObject *m);
int craftpy_node_init(PyObject *m);
int craftpy_sessions_init(PyObject *m);
int craftpy_client_init(PyObject *m); /* client.c: craft._craft.Client */

/* pystore.c: a store over a Python object (referenced until the store is closed). */
int craftpy_store_new(PyObject *obj, struct craft_store **out);

#endif
