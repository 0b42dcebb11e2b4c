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
    CRAFT_SIM_FATE_UNKNOWN,     /* no such server in the simulation */
    CRAFT_SIM_FATE_HELD,        /* SEND: held by a rule until delivered or discarded */
    CRAFT_SIM_FATE_RULE,        /* SEND: lost by a rule; DROP: a held message discarded */
    CRAFT_SIM_FATE_INJECTED     /* SEND: built by hand (craft_sim_inject) */
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
struct craft_sim_core;

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
    /* Another implementation of the protocol to run in place of craft's core (below, "Bring
     * your own core"); NULL: craft's. Borrowed: it must outlive the simulator. */
    const struct craft_sim_core *core;
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
/* A voter becomes a learner (craft_demote). */
CRAFT_API int craft_sim_demote(struct craft_sim *s, craft_id id, craft_index *index);
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


/* ------------------------------------------------------------------------------------------
 * Control: what a test author needs to script a scenario (docs/simulator.md, "Scripting a
 * scenario"). Everything here takes effect at the current virtual time and is deterministic.
 * ---------------------------------------------------------------------------------------- */

/* Selects messages: by type, by link, by a predicate; every condition given must hold. */
struct craft_sim_match {
    uint32_t types; /* bit (1u << type) for each enum craft_message_type; 0: every type */
    craft_id from;  /* 0: any sender */
    craft_id to;    /* 0: any receiver */
    /* NULL: none. Called with the message as sent (entries readable during the call). It must
     * not call into the simulator. */
    bool (*pred)(void *ud, const struct craft_message *m);
    void *pred_ud;
};

/* What a rule does to a message it matches when the message is sent. */
enum craft_sim_action {
    CRAFT_SIM_HOLD = 1,      /* kept aside until craft_sim_deliver() or craft_sim_discard() */
    CRAFT_SIM_DROP = 2,      /* lost */
    CRAFT_SIM_DUPLICATE = 3, /* delivered twice, each copy with its own delay */
    CRAFT_SIM_DELAY = 4      /* delivered delay_ms later than the network would */
};

struct craft_sim_rule {
    struct craft_sim_match match;
    int action;        /* enum craft_sim_action */
    uint64_t delay_ms; /* CRAFT_SIM_DELAY */
    uint64_t count;    /* the rule applies to this many messages, then goes; 0: until removed */
};

/* Adds a rule (checked when a message is sent, before the network's random loss; the first
 * rule that matches decides, rules added earlier first). *id (may be NULL) names it for
 * craft_sim_rule_remove. CRAFT_EINVAL for an unknown action. Messages a rule holds, drops,
 * duplicates or delays are counted as sent; held ones as delivered or dropped later. */
CRAFT_API int craft_sim_rule_add(struct craft_sim *s, const struct craft_sim_rule *r,
                                 uint64_t *id);
/* CRAFT_ENOTFOUND if no such rule (it may have run out of count). */
CRAFT_API int craft_sim_rule_remove(struct craft_sim *s, uint64_t id);
CRAFT_API void craft_sim_rules_clear(struct craft_sim *s);

/* A message a rule holds. msg (entries and snapshot data included) is owned by the simulator,
 * valid until the next call that runs events, delivers or discards. */
struct craft_sim_held {
    uint64_t id; /* in the order held */
    uint64_t held_at; /* virtual ms */
    const struct craft_message *msg;
};
/* Fills up to max records of the held messages that m selects (NULL: all), oldest first;
 * returns how many there are. */
CRAFT_API size_t craft_sim_held(const struct craft_sim *s, const struct craft_sim_match *m,
                                struct craft_sim_held *out, size_t max);
/* Delivers, now and in the order held, up to max (0: every) held message that m selects
 * (NULL: all), each arriving as the network would deliver it (a partition, a cut or a receiver
 * down since the send still loses it); the receiver reacts at once and what it sends goes
 * through the rules and the network. Messages held during the call wait for the next.
 * *n (may be NULL) is how many were delivered or lost on arrival. */
CRAFT_API int craft_sim_deliver(struct craft_sim *s, const struct craft_sim_match *m, size_t max,
                                size_t *n);
/* Drops held messages that m selects (NULL: all). */
CRAFT_API int craft_sim_discard(struct craft_sim *s, const struct craft_sim_match *m, size_t *n);
/* Sends a message built by hand from m->from to m->to (both servers of the simulation; the
 * sender need not be up), after delay_ms, past the rules and the network's loss. Entries and
 * data are copied; an InstallSnapshot without data reads the sender's stored snapshot, as for
 * a real one. CRAFT_EINVAL for unknown servers or type. */
CRAFT_API int craft_sim_inject(struct craft_sim *s, const struct craft_message *m,
                               uint64_t delay_ms);

/* Makes node id campaign now: its clock jumps forward, one tick at a time (at most 2 *
 * election_ticks + 1), until its election timer fires and it becomes pre-candidate,
 * candidate or leader. 0 once it is; CRAFT_ESTATE if it is down or leads already, or never
 * started an election (a learner, a server outside its configuration). */
CRAFT_API int craft_sim_campaign(struct craft_sim *s, craft_id id);
/* Ticks node id n times now (each tick drained before the next). CRAFT_ESTATE if down. */
CRAFT_API int craft_sim_tick(struct craft_sim *s, craft_id id, unsigned n);
/* Node id's clock: a tick every tick_ms of virtual time (the option's tick_ms at start, with the
 * same jitter; must exceed tick_jitter_ms), or 0 to stop it: the node is then ticked only by
 * craft_sim_tick and craft_sim_campaign. id 0: every node. A faster clock makes a node's
 * election timeout and heartbeats shorter in virtual time. CRAFT_EINVAL otherwise. */
CRAFT_API int craft_sim_set_clock(struct craft_sim *s, craft_id id, unsigned tick_ms);
CRAFT_API unsigned craft_sim_clock(const struct craft_sim *s, craft_id id);
/* Node id's protocol options (election_ticks, pre_vote, ...): read them, or set them for its
 * next boot (craft_sim_restart); id and seed are the simulator's. CRAFT_EINVAL for an unknown
 * id or heartbeat_ticks >= election_ticks. */
CRAFT_API int craft_sim_node_config(const struct craft_sim *s, craft_id id,
                                    struct craft_config *out);
CRAFT_API int craft_sim_set_node_config(struct craft_sim *s, craft_id id,
                                        const struct craft_config *c);

/* ------------------------------------------------------------------------------------------
 * Observation for test authors
 * ---------------------------------------------------------------------------------------- */

/* Messages over one link (from -> to). */
struct craft_sim_link_stats {
    uint64_t sent;      /* sent by from to to (duplicates not counted again) */
    uint64_t bytes;     /* their estimated wire size */
    uint64_t delivered; /* arrived at to (a duplicate counts) */
    uint64_t dropped;   /* lost: randomly, by a rule, a partition, a cut, a receiver down */
    uint64_t held;      /* held by a rule (then delivered or dropped later) */
};
/* CRAFT_EINVAL for unknown servers. */
CRAFT_API int craft_sim_link_stats(const struct craft_sim *s, craft_id from, craft_id to,
                                   struct craft_sim_link_stats *out);

/* One node as the simulator sees it (works whichever core runs it). */
struct craft_sim_node_status {
    craft_id id;
    bool up;
    uint32_t boots; /* 1 at the first boot, + 1 at every restart: the node's incarnation */
    int role;       /* enum craft_role; 0 when down */
    craft_term term;
    craft_id vote;
    craft_id leader;
    craft_index commit;
    craft_index applied;        /* the state machine's last index (craft_sim_applied_index) */
    craft_index restored_index; /* the snapshot its state machine was last restored from (0:
                                 * none: started empty) */
    craft_index first_index, last_index;
    craft_term last_term;
    uint64_t voters; /* the configuration in effect: bit (id - 1) per voter */
    uint64_t learners;
    craft_index conf_index; /* index of the configuration entry in effect (0 if unknown) */
    craft_id transfer_target;
};
/* CRAFT_EINVAL for an unknown id; a node that is down reports up = false, boots, applied and
 * restored_index. */
CRAFT_API int craft_sim_status(const struct craft_sim *s, craft_id id,
                               struct craft_sim_node_status *out);
/* The leader's view of each server (craft_node_progress): fills up to max records, returns
 * how many servers there are; 0 unless id leads with craft's core. */
CRAFT_API unsigned craft_sim_progress(const struct craft_sim *s, craft_id id,
                                      struct craft_progress_info *out, unsigned max);
/* The boot count (as in craft_sim_node_status); 0 for an unknown id. */
CRAFT_API uint32_t craft_sim_boots(const struct craft_sim *s, craft_id id);

/* What a node's disk holds (what it would boot from): hard state, log bounds, snapshot. */
struct craft_sim_durable {
    struct craft_hard_state hard_state;
    craft_index first_index, last_index; /* first = last + 1 when the log is empty */
    bool has_snapshot;
    craft_index snapshot_index;
    craft_term snapshot_term;
    uint64_t snapshot_size;
    craft_index snapshot_conf_index;
    uint64_t snapshot_voters; /* bit (id - 1) per voter of the snapshot's configuration */
};
/* CRAFT_EINVAL for an unknown id, or the store's error. The entries themselves: the store of
 * craft_sim_store(). */
CRAFT_API int craft_sim_durable(const struct craft_sim *s, craft_id id,
                                struct craft_sim_durable *out);

/* Calls fn with the last trace_depth events, oldest first, as structs. */
CRAFT_API void craft_sim_dump_events(const struct craft_sim *s,
                                     void (*fn)(void *ud, const struct craft_sim_event *ev),
                                     void *ud);

/* ------------------------------------------------------------------------------------------
 * Bring your own core
 *
 * A simulator can run another implementation of the protocol in place of craft's core: a
 * student's, a port, a model. It takes the same inputs and gives the same outputs as craft.h
 * (craft_step, craft_tick, craft_propose, craft_take_update, craft_persisted,
 * craft_snapshot_taken), and the simulator drives it exactly as it drives craft's: the same
 * network, disks, crashes, seeds and invariant checker. Membership changes, leadership
 * transfer and reads are craft's only (CRAFT_EINVAL with another core).
 * Every function gets the table's ud and the core value create made. Pointers in an update
 * stay valid until the next call on that core.
 * ---------------------------------------------------------------------------------------- */
struct craft_sim_core_status {
    int role; /* enum craft_role */
    craft_term term;
    craft_id vote;
    craft_id leader;
    craft_index commit;
    craft_index first_index, last_index;
    craft_term last_term; /* term of last_index (or of the snapshot it ends at) */
    uint64_t voters;      /* its configuration: bit (id - 1) per voter */
};

struct craft_sim_core {
    void *ud;
    /* Boots a node: config as craft_node_new takes it (id, seed, election_ticks ...), boot as
     * the store holds it (with the bootstrap configuration for a new cluster). */
    int (*create)(void *ud, const struct craft_config *config, const struct craft_boot *boot,
                  void **core);
    void (*destroy)(void *ud, void *core);
    int (*step)(void *ud, void *core, const struct craft_message *m);
    int (*tick)(void *ud, void *core);
    int (*propose)(void *ud, void *core, const void *data, size_t size, craft_index *index,
                   craft_term *term);
    /* 1 with *u filled, 0 when there is nothing to do, or a negative CRAFT_E* code. */
    int (*take_update)(void *ud, void *core, struct craft_update *u);
    int (*persisted)(void *ud, void *core, uint64_t seq);
    int (*snapshot_taken)(void *ud, void *core, craft_index index, uint64_t size,
                          craft_index *compact_upto);
    int (*status)(void *ud, void *core, struct craft_sim_core_status *out);
    /* The term of the entry at index (0 if the core does not hold it). */
    craft_term (*term_at)(void *ud, void *core, craft_index index);
};


/* ------------------------------------------------------------------------------------------
 * Transcripts: scenarios as text (docs/simulator.md, "Transcripts")
 *
 * A transcript is a file of commands (add-nodes, campaign, propose, deliver-msgs, stabilize,
 * drop, tick, run, partition, heal, crash, restart, status, log, read, ...), each followed by
 * a line "----" and the output it is expected to give, up to a blank line; lines starting with
 * '#' are comments. Running it gives the transcript again with the actual output of every
 * command (what a --rewrite writes back), and counts the commands whose output differed. The
 * simulator starts with every clock stopped and every message held, so nothing happens that
 * the script does not ask for.
 * ---------------------------------------------------------------------------------------- */
struct craft_sim_script_result {
    char *output;      /* the transcript with the actual outputs (NUL-terminated) */
    size_t output_len;
    char *report;      /* for each mismatch: its line, the command, expected and actual output */
    unsigned commands;
    unsigned mismatches;
};
/* 0, or CRAFT_ENOMEM. Problems in the script itself (an unknown command, a bad argument) are
 * the command's output ("error: ..."), so they show as mismatches, never as a crash. */
CRAFT_API int craft_sim_script_run(const char *text, size_t len,
                                   struct craft_sim_script_result *r);
CRAFT_API void craft_sim_script_result_free(struct craft_sim_script_result *r);

#ifdef __cplusplus
}
#endif

#endif /* CRAFT_SIM_H */
