/*
 * craft simulator: N protocol cores in one process, driven by a virtual clock, a seeded PRNG,
 * a virtual network and virtual disks, with the Raft safety properties checked after every
 * event.
 *
 * Everything is deterministic: the same options (above all the same seed) and the same calls
 * give the same run, event for event, on any machine. Nothing reads a clock, starts a thread or
 * does I/O; a run of simulated minutes takes milliseconds.
 *
 * Model
 * - Servers have ids 1..n_nodes; a new cluster is bootstrapped with servers 1..n_voters as
 *   voters (all of them by default). The others ("spare" servers) start empty in join mode:
 *   they run, but never campaign, until a leader adds them (craft_sim_add_server).
 * - Each live node gets craft_tick() every tick_ms of virtual time (plus a per-node offset and
 *   jitter, so nodes are not in lockstep).
 * - A message is delivered after a random delay in [min_delay_ms, max_delay_ms] (so messages
 *   reorder), lost with probability drop_rate and delivered twice with probability dup_rate.
 *   Partitions and one-way cuts are checked when the message arrives.
 * - Each node has a disk: an update's hard state and entries become durable after a random
 *   latency in [disk_min_ms, disk_max_ms], in the order they were written; then the sim writes
 *   them to the node's in-memory craft_store and calls craft_persisted().
 * - A crash loses the node's volatile state, its unfinished disk writes (the one in progress
 *   possibly torn between two store operations) and every message in flight to it. A restart
 *   boots a new core from what the store holds. Disks can also be wiped, cut short or rolled
 *   back to an older copy while the node is down (craft_sim_disk_lose).
 *
 * Checked after every event (a violation stops the run; see craft_sim_error()):
 *   election safety (one leader per term), log matching, leader append-only, leader
 *   completeness, state machine safety (applied sequences are prefixes of one another),
 *   commit index never decreases, a durable vote never changes within its term and a durable
 *   term never decreases; configurations and quorums (a new leader's votes are a majority of
 *   its configuration, a leader commits only entries of its term stored by a majority of its
 *   configuration, a leader starts a change only with the previous one committed and an entry
 *   of its term committed, committed configurations differ by at most one voter); reads (a
 *   read's index covers everything committed anywhere when it was requested, a failed read is
 *   never served). docs/simulator.md says exactly how each is checked.
 *
 * Threads: a simulator is a plain value; calls on one simulator must not be concurrent.
 * Every function that can fail returns 0 or a negative CRAFT_E* code.
 */
#ifndef CRAFT_SIM_H
#define CRAFT_SIM_H

#include "../craft.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CRAFT_SIM_MAX_NODES 64

/* Returned by every running call once an invariant has been violated (the simulator is then
 * stopped for good; craft_sim_error() says what happened). */
#define CRAFT_SIM_EVIOLATION CRAFT_EVIOLATION

/* ------------------------------------------------------------------------------------------
 * Events: what the simulator reports to observers and keeps in its trace ring.
 * ---------------------------------------------------------------------------------------- */
enum craft_sim_event_kind {
    CRAFT_SIM_EV_SEND = 1,   /* node sent msg to peer (fate says whether the network lost it) */
    CRAFT_SIM_EV_DELIVER,    /* msg from node arrived at peer */
    CRAFT_SIM_EV_DROP,       /* msg from node to peer was lost on arrival (fate says why) */
    CRAFT_SIM_EV_PERSIST,    /* node's update seq became durable (term, vote, index = last) */
    CRAFT_SIM_EV_ROLE,       /* node changed role, term or leader (role, term, leader) */
    CRAFT_SIM_EV_COMMIT,     /* node's commit index advanced to index */
    CRAFT_SIM_EV_PROPOSE,    /* a command proposed at node went to index/term (or failed: rc) */
    CRAFT_SIM_EV_CRASH,      /* node crashed */
    CRAFT_SIM_EV_RESTART,    /* node restarted (term, vote, index = last index in its store) */
    CRAFT_SIM_EV_PARTITION,  /* a partition was set up (text describes the groups) */
    CRAFT_SIM_EV_CUT,        /* messages from node to peer are now lost */
    CRAFT_SIM_EV_HEAL,       /* every partition and cut was removed */
    CRAFT_SIM_EV_NETWORK,    /* network parameters changed (text) */
    CRAFT_SIM_EV_NOTE,       /* free text from craft_sim_note() */
    CRAFT_SIM_EV_VIOLATION,  /* an invariant was violated (text) */
    CRAFT_SIM_EV_MEMBERSHIP, /* a change asked of leader node for server peer (text: add,
                              * promote, remove; index, or rc), or a configuration entry node
                              * appended as leader (text: the servers) */
    CRAFT_SIM_EV_TRANSFER,   /* leadership transfer from node to peer asked (rc) */
    CRAFT_SIM_EV_READ        /* read seq at node: requested, ready at index, served, failed */
};

enum craft_sim_fate {
    CRAFT_SIM_FATE_OK = 0,
    CRAFT_SIM_FATE_LOST,        /* random loss */
    CRAFT_SIM_FATE_DUPLICATED,  /* this copy is a duplicate */
    CRAFT_SIM_FATE_PARTITIONED, /* sender and receiver are in different groups or cut */
    CRAFT_SIM_FATE_DOWN,        /* the receiver is crashed (or restarted since the send) */
    CRAFT_SIM_FATE_UNKNOWN      /* no such server in the simulation */
};

#define CRAFT_SIM_TEXT_MAX 160

struct craft_sim_event {
    uint64_t time; /* virtual ms */
    uint8_t kind;  /* enum craft_sim_event_kind */
    uint8_t fate;  /* enum craft_sim_fate, for SEND/DELIVER/DROP */
    craft_id node;
    craft_id peer;
    /* SEND, DELIVER, DROP: the message's header and scalar fields. Pointer fields (entries,
     * snapshot data and configuration) are NULL; n_entries and sizes are kept. */
    struct craft_message msg;
    int role;
    craft_term term;
    craft_id leader; /* ROLE: the leader; PERSIST, RESTART: the vote */
    craft_index index;
    uint64_t seq;
    int rc;
    char text[CRAFT_SIM_TEXT_MAX];
};

/* Formats an event as one line (no newline), e.g.
 * "t=1234ms n3 -> n1 AppendEntries term=5 prev=10/4 n=3 commit=9". Returns the length that
 * the line has (as snprintf does). */
CRAFT_API int craft_sim_event_format(const struct craft_sim_event *ev, char *buf, size_t len);

/* ------------------------------------------------------------------------------------------
 * Options
 * ---------------------------------------------------------------------------------------- */
struct craft_sim_options {
    unsigned n_nodes; /* servers 1..n_nodes, 1..CRAFT_SIM_MAX_NODES; default 3 */
    /* Servers 1..n_voters are the bootstrap configuration's voters; n_voters + 1..n_nodes are
     * spare: started empty, without a bootstrap configuration, they wait until added.
     * 0 (the default) means n_nodes. */
    unsigned n_voters;
    uint64_t seed;    /* default 1 */
    /* Template for every node's configuration (defaults from craft_config_init). The simulator
     * sets id, seed (derived from the sim seed, node id and incarnation) and alloc. */
    struct craft_config node;
    unsigned tick_ms;        /* virtual ms per tick; default 10 */
    unsigned tick_jitter_ms; /* each tick interval varies by up to +/- this; default 1 */
    unsigned min_delay_ms;   /* network delay; default 1 */
    unsigned max_delay_ms;   /* default 10 */
    double drop_rate;        /* probability a message is lost; default 0 */
    double dup_rate;         /* probability a message is delivered twice; default 0 */
    unsigned disk_min_ms;    /* disk write latency; default 0 */
    unsigned disk_max_ms;    /* default 2 */
    /* A crash tears the write the disk is working on half of the time: any prefix of its
     * store operations (hard state, snapshot chunk, truncation, each entry appended) survives,
     * as on a real disk between two writes. Default true. */
    bool torn_writes;
    /* Start as a new cluster: each node's first boot passes a configuration with every node
     * as a voter. Default true. */
    bool bootstrap;
    unsigned trace_depth; /* events kept for craft_sim_dump_trace(); default 64 */
    /* Called for every committed entry a node applies (all entry types; check e->type), in
     * order, with the entry borrowed for the call. It must not call into the simulator. A
     * restarted node applies its log again from the start, as a fresh state machine would. */
    void (*apply)(void *ud, craft_id node, const struct craft_entry *e);
    /* Snapshots of that state machine, when the core asks for one (craft_config.snapshot_*):
     * snapshot() returns its state as of the last entry applied on node, in *data (borrowed
     * until the next call of snapshot()); restore() replaces a node's state with one taken
     * that way (from a snapshot received from the leader, or read from the store at a
     * restart), or with an empty state machine when data is NULL (at every boot without a
     * snapshot). Each returns 0 or a negative CRAFT_E* code, which stops the simulator. NULL:
     * the simulator's snapshots carry only its own state (which it checks on restore). */
    int (*snapshot)(void *ud, craft_id node, const void **data, size_t *size);
    int (*restore)(void *ud, craft_id node, const void *data, size_t size);
    /* Called with every event, formatted (trace) or as a struct (event). Either may be NULL. */
    void (*trace)(void *ud, const char *line);
    void (*event)(void *ud, const struct craft_sim_event *ev);
    void *ud;
    const struct craft_allocator *alloc; /* NULL: the C library's */
};

CRAFT_API void craft_sim_options_init(struct craft_sim_options *o);

/* ------------------------------------------------------------------------------------------
 * Life cycle and running
 * ---------------------------------------------------------------------------------------- */
struct craft_sim;

/* Creates the simulator and boots every node (no event has run yet). The options are copied.
 * CRAFT_EINVAL for bad options; any error of craft_node_new or craft_mem_store_new. */
CRAFT_API int craft_sim_new(const struct craft_sim_options *o, struct craft_sim **out);
CRAFT_API void craft_sim_free(struct craft_sim *s);

CRAFT_API uint64_t craft_sim_now(const struct craft_sim *s); /* virtual ms */
CRAFT_API uint64_t craft_sim_seed(const struct craft_sim *s);
CRAFT_API unsigned craft_sim_n_nodes(const struct craft_sim *s);

/* Runs the next event. Returns 0; CRAFT_ENOTFOUND when nothing is pending (every node down
 * and nothing in flight); CRAFT_SIM_EVIOLATION after a violation; or the error that stopped
 * the simulator (an unexpected error from a core or a store; see craft_sim_error()). Once
 * stopped, every running call returns the same code. */
CRAFT_API int craft_sim_step(struct craft_sim *s);
/* Runs every event up to now + ms; the clock then reads now + ms. */
CRAFT_API int craft_sim_run_for(struct craft_sim *s, uint64_t ms);
/* Runs until pred returns true (checked before the first event and after every event) or
 * max_ms have passed: 0 when pred became true, CRAFT_ETIMEDOUT otherwise. */
typedef bool (*craft_sim_pred)(struct craft_sim *s, void *ud);
CRAFT_API int craft_sim_run_until(struct craft_sim *s, craft_sim_pred pred, void *ud,
                                  uint64_t max_ms);

/* ------------------------------------------------------------------------------------------
 * Inputs and faults (each takes effect at the current virtual time)
 * ---------------------------------------------------------------------------------------- */

/* Proposes a command at node id (0: the current leader, see craft_sim_leader()). Returns what
 * craft_propose returns (CRAFT_ENOTLEADER when there is no leader), or CRAFT_ESTATE when the
 * node is down. index and term may be NULL. */
CRAFT_API int craft_sim_propose(struct craft_sim *s, craft_id id, const void *data, size_t size,
                                craft_index *index, craft_term *term);
/* CRAFT_EINVAL for an unknown id, CRAFT_ESTATE if already down / already up. */
CRAFT_API int craft_sim_crash(struct craft_sim *s, craft_id id);
CRAFT_API int craft_sim_restart(struct craft_sim *s, craft_id id);
/* group_of[i] is the group of server i + 1 (n_nodes values): messages pass only within a
 * group. Replaces any earlier partition; cuts stay. */
CRAFT_API int craft_sim_partition(struct craft_sim *s, const unsigned *group_of);
/* Messages from one server to another are lost (one direction only). */
CRAFT_API int craft_sim_cut(struct craft_sim *s, craft_id from, craft_id to);
/* Removes every partition and cut. */
CRAFT_API int craft_sim_heal(struct craft_sim *s);
/* CRAFT_EINVAL for a probability outside [0, 1] or min > max. */
CRAFT_API int craft_sim_set_network(struct craft_sim *s, double drop_rate, double dup_rate,
                                    unsigned min_delay_ms, unsigned max_delay_ms);
CRAFT_API int craft_sim_set_disk(struct craft_sim *s, unsigned min_ms, unsigned max_ms);
/* Membership (thesis chapter 4), asked of the current leader (craft_sim_leader()): what the
 * core's craft_add_server / craft_promote / craft_remove_server return -- CRAFT_ENOTLEADER when
 * there is no leader, CRAFT_EBUSY while a change or transfer is in progress or before the
 * leader committed an entry of its term, CRAFT_EEXISTS / CRAFT_ENOTFOUND, CRAFT_ESTATE for a
 * learner not caught up -- all normal outcomes in a faulty cluster. id must be a server of the
 * simulation (1..n_nodes; CRAFT_EINVAL otherwise). A server added joins as a learner (with
 * auto_promote the leader makes it a voter once caught up). A removed server keeps running:
 * it must not disrupt the cluster. On success *index (may be NULL) is the index of the
 * configuration entry. */
CRAFT_API int craft_sim_add_server(struct craft_sim *s, craft_id id, bool auto_promote,
                                   craft_index *index);
CRAFT_API int craft_sim_promote(struct craft_sim *s, craft_id id, craft_index *index);
CRAFT_API int craft_sim_remove_server(struct craft_sim *s, craft_id id, craft_index *index);
/* Leadership transfer (thesis 3.10) from the current leader to target (0: the core picks the
 * most up-to-date voter). Returns what craft_transfer_leadership returns. */
CRAFT_API int craft_sim_transfer(struct craft_sim *s, craft_id target);

/* Reads (thesis 6.4): craft_read_index(CRAFT_READ_INDEX) on node with the caller's id, which
 * must be unique within the simulation (CRAFT_EEXISTS otherwise). Returns what the core
 * returns (CRAFT_ENOTLEADER on a follower; CRAFT_ESTATE when the node is down). On success
 * the read is recorded: when the core reports it (craft_update.reads) it is checked and, with
 * status 0, served once the node's state machine has applied up to its index. */
CRAFT_API int craft_sim_read(struct craft_sim *s, craft_id node, uint64_t id);
/* The same with a mode: CRAFT_READ_INDEX or CRAFT_READ_LEASE (needs node.lease_reads). */
CRAFT_API int craft_sim_read_mode(struct craft_sim *s, craft_id node, uint64_t id, int mode);

enum craft_sim_read_state {
    CRAFT_SIM_READ_PENDING = 1, /* asked, not reported by the core yet */
    CRAFT_SIM_READ_READY,       /* confirmed at index, waiting for the state machine */
    CRAFT_SIM_READ_SERVED,      /* served: the node had applied up to index (or more) */
    CRAFT_SIM_READ_FAILED       /* status: CRAFT_ENOTLEADER, or CRAFT_ECANCELED (crash) */
};

struct craft_sim_read {
    uint64_t id;
    craft_id node;
    uint8_t mode;   /* enum craft_read_mode */
    uint8_t state;  /* enum craft_sim_read_state */
    int status;     /* 0, or why it failed */
    craft_index index;     /* READY, SERVED: the read index the core gave */
    craft_index committed; /* the highest index known committed anywhere when requested */
    craft_index applied;   /* SERVED: the node's applied index when served */
    uint64_t requested_at, completed_at; /* virtual ms (completed: served or failed) */
};
/* The record of read id: 0, or CRAFT_ENOTFOUND. */
CRAFT_API int craft_sim_read_result(const struct craft_sim *s, uint64_t id,
                                    struct craft_sim_read *out);

/* Disk loss, as operators and failing disks cause it (docs/simulator.md, "Disk loss"). The
 * node must be down (CRAFT_ESTATE otherwise); it comes back with craft_sim_restart().
 *  - CRAFT_SIM_DISK_WIPE: the data directory is lost; the node restarts empty (with the
 *    bootstrap configuration if it is a founding voter, as its unchanged command line would).
 *  - CRAFT_SIM_DISK_CUT_TAIL: the last n entries of its log are lost (a torn segment cut back
 *    at recovery), never below the snapshot; the hard state is kept.
 *  - CRAFT_SIM_DISK_ROLLBACK: the copy saved by craft_sim_disk_save() is put back (an older
 *    backup restored); CRAFT_ENOTFOUND if none was saved.
 * Raft assumes durable state is never lost: a loss can take away the last majority copy of a
 * committed entry, or let the node vote twice in a term, and the checker then reports the
 * violation it causes. craft_sim_disk_loss_safe() tells whether a loss stays within what
 * Raft tolerates (every committed entry still on a majority of every configuration's voters
 * without the lost part; the node's term and vote unchanged, or the node a member of no
 * configuration). */
enum craft_sim_disk_loss {
    CRAFT_SIM_DISK_WIPE = 1,
    CRAFT_SIM_DISK_CUT_TAIL = 2,
    CRAFT_SIM_DISK_ROLLBACK = 3
};
CRAFT_API int craft_sim_disk_save(struct craft_sim *s, craft_id id);
CRAFT_API int craft_sim_disk_lose(struct craft_sim *s, craft_id id, int kind, uint64_t n);
CRAFT_API bool craft_sim_disk_loss_safe(struct craft_sim *s, craft_id id, int kind, uint64_t n);

/* Adds a free-text line to the trace (at most CRAFT_SIM_TEXT_MAX - 1 bytes are kept). */
CRAFT_API void craft_sim_note(struct craft_sim *s, const char *text);

/* ------------------------------------------------------------------------------------------
 * Observation
 * ---------------------------------------------------------------------------------------- */

/* The live leader with the highest term; 0 if there is none (or, after a violation, two). */
CRAFT_API craft_id craft_sim_leader(const struct craft_sim *s);
CRAFT_API bool craft_sim_is_up(const struct craft_sim *s, craft_id id);
/* The node, for the introspection getters of craft.h only (craft_node_role, ...): feeding it
 * inputs directly would bypass the simulator. NULL when down or unknown. Valid until the node
 * crashes or the simulator is freed. */
CRAFT_API const struct craft_node *craft_sim_node(const struct craft_sim *s, craft_id id);
/* The node's durable store (survives crashes); NULL for an unknown id. Read only. */
CRAFT_API const struct craft_store *craft_sim_store(const struct craft_sim *s, craft_id id);

/* What a node applied since it last started, in order. */
struct craft_sim_applied {
    craft_index index;
    craft_term term;
    uint8_t type;  /* enum craft_entry_type */
    uint64_t hash; /* craft_sim_hash() of the entry's data */
};
/* The entries applied after the snapshot the node's state machine was last restored from
 * (see craft_sim_applied_index). *out stays valid until the next call that runs events or
 * restarts the node. */
CRAFT_API int craft_sim_applied(const struct craft_sim *s, craft_id id,
                                const struct craft_sim_applied **out, size_t *n);
/* The index of the last entry the node's state machine holds (from a snapshot or applied);
 * 0 for an unknown id. */
CRAFT_API craft_index craft_sim_applied_index(const struct craft_sim *s, craft_id id);
/* The 64-bit hash (FNV-1a) used for entry data in applied records. */
CRAFT_API uint64_t craft_sim_hash(const void *data, size_t size);
/* The highest index known to be committed anywhere in the cluster. */
CRAFT_API craft_index craft_sim_committed(const struct craft_sim *s);

struct craft_sim_stats {
    uint64_t events;     /* events run */
    uint64_t ticks;      /* craft_tick calls */
    uint64_t disk_writes;
    uint64_t crashes;
    uint64_t restarts;
    uint64_t disk_losses; /* craft_sim_disk_lose calls */
    uint64_t regressions; /* followers a leader found with a log gone backwards */
    uint64_t torn_writes; /* crashes that tore the write in progress */
    uint64_t changes;   /* membership changes the leader accepted */
    uint64_t transfers; /* leadership transfers the leader accepted */
    uint64_t reads_served;
    uint64_t reads_failed;
    /* By message type (index = enum craft_message_type; 0 unused). bytes is an estimate of
     * the wire size: a fixed header per message plus each entry's header and payload. */
    uint64_t sent[CRAFT_MSG_TYPE_MAX + 1];
    uint64_t bytes[CRAFT_MSG_TYPE_MAX + 1];
    uint64_t delivered[CRAFT_MSG_TYPE_MAX + 1];
    uint64_t dropped[CRAFT_MSG_TYPE_MAX + 1]; /* lost, partitioned or to a down node */
    uint64_t duplicated[CRAFT_MSG_TYPE_MAX + 1];
};
CRAFT_API void craft_sim_stats(const struct craft_sim *s, struct craft_sim_stats *out);

/* Checks every invariant over every node now (the per-event checks look only at what the
 * event changed). 0 or CRAFT_SIM_EVIOLATION. */
CRAFT_API int craft_sim_check(struct craft_sim *s);
/* What stopped the simulator (the violated invariant, or the unexpected error), or NULL. */
CRAFT_API const char *craft_sim_error(const struct craft_sim *s);
/* Calls line() with the last trace_depth events, oldest first, formatted. */
CRAFT_API void craft_sim_dump_trace(const struct craft_sim *s,
                                    void (*line)(void *ud, const char *line), void *ud);

#ifdef __cplusplus
}
#endif

#endif /* CRAFT_SIM_H */
