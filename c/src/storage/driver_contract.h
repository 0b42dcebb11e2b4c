/* The driver contract: how a driver carries out what an update of the core asks it to persist.
 * One implementation, used by the simulator (c/src/sim/disk.c) and the libuv runtime
 * (c/src/uv/disk.c), so that what the simulator proves about crash points holds for the
 * runtime too. docs/core.md ("The driver contract") states the whole contract; this file does
 * the part that touches a store:
 *
 *   1. the hard state (term, vote, commit hint),
 *   2. a snapshot chunk received from the leader (the last one installs the snapshot),
 *   3. the removal of a conflicting suffix, then the new entries,
 *
 * in that order, and only then may the driver report the job's ticket with craft_persisted().
 *
 * Why this order is safe at every crash point between two store operations:
 *   - The hard state goes first, so the durable term is never below the term of a durable
 *     entry or snapshot (boot refuses a store where it is: a vote could be cast twice in one
 *     term). Entries of a new term arrive with the term change in the same job (a follower's
 *     first AppendEntries of a term, a new leader's barrier).
 *   - The commit hint written with it could name entries this very job is about to replace
 *     (a follower truncating an uncommitted suffix and appending the leader's entries): a
 *     crash after the hard state and before the append would leave a hint over entries that
 *     were never committed. So the hint is capped below the first index the job changes
 *     (craft__persist_commit_hint). A hint is only a shortcut for a restart; a lower one is
 *     always safe.
 *   - Removing a suffix before appending loses nothing acknowledged: the suffix conflicts
 *     with the leader's log, so it was never committed; the acknowledgement of the new
 *     entries leaves only after the whole job.
 *   - Any prefix of the appended entries may survive a crash (a torn tail): it is a prefix of
 *     the leader's log, which is what a follower holds after a lost message. */
#ifndef CRAFT_STORAGE_DRIVER_CONTRACT_H
#define CRAFT_STORAGE_DRIVER_CONTRACT_H

#include "craft.h"

/* What one job persists: the union of one or more updates, in order (group commit merges
 * updates; the later hard state wins, entries are the merged suffix). */
struct craft__persist_job {
    bool has_hard_state;
    struct craft_hard_state hard_state;
    const struct craft_install_snapshot *chunk; /* NULL: none */
    bool discard_log;                           /* with chunk->done (craft_update) */
    const struct craft_entry *entries;
    size_t n_entries;
};

/* A snapshot being received, between its chunks (owned by the driver, one per node). */
struct craft__snap_rx {
    const struct craft_allocator *alloc; /* for the metadata read back from the store */
    void *writer;      /* the store's writer, NULL when none is open */
    craft_index index; /* the snapshot the writer or the skip is for */
    bool skip;         /* the store already holds this snapshot or a newer one: obsolete */
};

/* A crash in the middle of a job, for the simulator: the number of store operations that
 * still complete (an append of n entries counts as n operations, any prefix surviving). */
struct craft__crash_point {
    bool armed;
    unsigned ops_left;
};

#define CRAFT__PERSIST_CRASHED 1 /* craft__persist stopped at the crash point */

/* The commit hint the job writes: commit, capped below the first index the job changes. */
craft_index craft__persist_commit_hint(const struct craft__persist_job *j, craft_index commit);

/* Carries out the job on s in the contract's order. Returns 0, a negative CRAFT_E* code from
 * the store (with *what naming the step), or CRAFT__PERSIST_CRASHED when crash ran out first
 * (the store then holds a prefix of the job's operations). crash may be NULL. */
int craft__persist(struct craft_store *s, struct craft__snap_rx *rx,
                   const struct craft__persist_job *j, struct craft__crash_point *crash,
                   const char **what);

/* Abandons a snapshot being received (a crash, a stop, a newer transfer). */
void craft__snap_rx_abort(struct craft_store *s, struct craft__snap_rx *rx);

#endif
