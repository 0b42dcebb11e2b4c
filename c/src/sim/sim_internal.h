/*
 * The simulator's state, shared by its files: sim.c (life cycle, the event loop, draining a
 * node's updates, crash and restart), network.c (messages in flight), disk.c (asynchronous
 * persistence), invariants.c (the safety checker), quorum.c (the checker's configuration and
 * quorum rules), membership.c (membership changes and leadership transfer as inputs),
 * reads.c (ReadIndex reads and their linearizability check), trace.c (the event ring and
 * formatting). Nodes are addressed by their index i (server id i + 1); a set of servers is a
 * 64-bit mask with bit i for server i + 1 (CRAFT_SIM_MAX_NODES is 64).
 */
#ifndef CRAFT_SIM_INTERNAL_H
#define CRAFT_SIM_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>

#include "craft/sim.h"
#include "events.h"
#include "prng.h"
#include "storage/driver_contract.h"

/* A message in flight: a deep copy, since the core's pointers die at its next call. */
struct craft__sim_packet {
    struct craft_message m; /* entries, snapshot data and conf point into owned memory */
    void *entries_block;    /* entry array followed by the payloads (one allocation) */
    void *snap_data;
    uint32_t dst_incarnation; /* the receiver's incarnation at send time */
    uint8_t fate;             /* CRAFT_SIM_FATE_OK or _DUPLICATED */
};

/* One update's persistence work, waiting for its virtual disk latency. */
struct craft__sim_write {
    struct craft__sim_write *next;
    uint64_t seq;
    /* A snapshot chunk received from the leader, stored before the rest (craft.h). */
    bool has_chunk;
    bool discard_log;
    struct craft_install_snapshot chunk; /* data and meta.conf owned here */
    bool has_hard_state;
    struct craft_hard_state hard_state;
    struct craft_entry *entries; /* one allocation: the array, then the payloads */
    size_t n_entries;
};

struct craft__sim_disk {
    struct craft__sim_write *head, *tail;
    uint64_t busy_until; /* completion time of the last write queued: writes finish in order */
};

/* What the checker knows about one log position. */
struct craft__sim_slot {
    craft_term term;
    uint8_t type;
    uint64_t data_hash;
    uint64_t chain; /* craft__sim_hash_chain over the log up to this entry */
    uint64_t voters; /* CONFIG entries: the configuration's voters (a mask) */
};

/* A mirror of a node's log, built from the entries its updates hand out (and, after a crash,
 * from its store). Entries base + 1 .. base + n. */
struct craft__sim_shadow {
    craft_index base;
    uint64_t base_chain;
    struct craft__sim_slot *v;
    size_t n, cap;
};

struct craft__sim_node {
    craft_id id;
    struct craft_node *core; /* NULL while down, or when the user brought the core (ext) */
    void *ext;               /* a node of the user's core (craft_sim_options.core) while up */
    struct craft_store *store;
    bool up;
    bool started; /* has booted at least once (only the first boot may bootstrap) */
    uint32_t incarnation;
    struct craft__sim_disk disk;
    struct craft__sim_shadow log;
    /* Applied since the last (re)start. */
    struct craft_sim_applied *applied;
    size_t n_applied, cap_applied;
    craft_index applied_base; /* the first applied index must be applied_base + 1 */
    /* Last observed volatile state (for change detection and monotonicity). */
    int role;
    craft_term term;
    craft_id leader;
    craft_index commit;
    /* The node's current term as far as the checker knows, updated from every update (the
     * hard state and role changes) before committed entries are applied, so that commitment
     * is never attributed to a term older than the truth (see invariants.c). */
    craft_term cur_term;
    /* The hard state in the store, mirrored to check durable votes. */
    struct craft_hard_state durable;
    /* Snapshot being received: the bytes so far (for restoring the state machine when the
     * last chunk arrives) and the store's writer (when the chunks reach the disk). */
    unsigned char *rx;
    size_t rx_len, rx_cap;
    struct craft__snap_rx rx_store;
    /* A copy of the store saved by craft_sim_disk_save (an older copy to put back). */
    struct craft_store *saved;
    /* Granted votes delivered to this node in grant_term (a mask): its election quorum. */
    craft_term grant_term;
    uint64_t grant_mask;
    /* The voters of the configuration the core had at the last observation. */
    uint64_t conf_voters;
    /* control.c: its clock (0: stopped) and a generation that retires ticks scheduled under
     * an earlier setting; protocol options for its next boot. */
    unsigned clock_ms;
    uint32_t clock_gen;
    bool has_config;
    struct craft_config config;
};

/* control.c */
struct craft__sim_rule {
    uint64_t id;
    struct craft_sim_rule r;
};

struct craft__sim_held {
    uint64_t id;
    uint64_t at;
    struct craft__sim_packet *p;
};

/* A read asked through craft_sim_read (the public record plus the incarnation it was asked
 * of: a crash cancels it). */
struct craft__sim_read {
    struct craft_sim_read r;
    uint32_t incarnation;
};

/* Per-term facts the checker accumulates. */
struct craft__sim_term_info {
    craft_id leader;         /* the leader of this term, 0 if none seen */
    craft_index max_commit;  /* highest commit index a node reported while in this term */
    uint64_t elected_by;     /* the leader and the voters whose grants it received */
    uint64_t elected_conf;   /* the voters of its configuration when it won */
};

struct craft_sim {
    struct craft_sim_options o;
    const struct craft_allocator *alloc;
    unsigned n;
    struct craft__sim_node *nodes;
    uint64_t now;
    struct craft__sim_prng rng;
    struct craft__sim_queue queue;
    struct craft_configuration bootstrap;

    /* Network. */
    unsigned *group_of;
    bool *cut; /* n * n: cut[from * n + to] */

    /* Checker. */
    struct craft__sim_term_info *terms; /* indexed by term */
    size_t n_terms;
    struct craft__sim_slot *committed; /* committed[i - 1]: the committed entry at index i */
    size_t n_committed, cap_committed;
    /* The voters of the last configuration in the committed record (bootstrap at first);
     * conf_known is false after a gap in the record (a snapshot nobody reported). */
    uint64_t committed_voters;
    bool conf_known;

    /* Reads, in the order asked; open[] indexes those not yet served or failed. */
    struct craft__sim_read *reads;
    size_t n_reads, cap_reads;
    size_t *open;
    size_t n_open, cap_open;

    /* Trace ring. */
    struct craft_sim_event *ring;
    size_t ring_len, ring_head; /* count held, next slot to write */

    /* control.c: message rules, held messages, per-link counters (links[from * n + to]). */
    struct craft__sim_rule *rules;
    size_t n_rules, cap_rules;
    uint64_t next_rule_id;
    struct craft__sim_held *held;
    size_t n_held, cap_held;
    uint64_t next_held_id;
    struct craft_sim_link_stats *links;

    struct craft_sim_stats stats;
    int stop_rc; /* 0 while running; the error that stopped the simulator */
    char error[512];
};

/* sim.c */
/* Records an unexpected error or a violation, stops the simulator and returns rc. */
int craft__sim_fail(struct craft_sim *s, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Takes and carries out every pending update of node i, then observes its state. */
int craft__sim_drain(struct craft_sim *s, unsigned i);
int craft__sim_schedule(struct craft_sim *s, uint64_t at, uint8_t kind, unsigned node,
                        void *ptr);

/* core.c: the protocol core a node runs, craft's or the user's (craft_sim_options.core).
 * Each calls one function of the core of node i (which must be up). */
int craft__sim_core_new(struct craft_sim *s, unsigned i, const struct craft_config *c,
                        const struct craft_boot *b);
void craft__sim_core_free(struct craft_sim *s, unsigned i);
int craft__sim_core_step(struct craft_sim *s, unsigned i, const struct craft_message *m);
int craft__sim_core_tick(struct craft_sim *s, unsigned i);
int craft__sim_core_propose(struct craft_sim *s, unsigned i, const void *data, size_t size,
                            craft_index *index, craft_term *term);
/* 1 with *u filled, 0 when there is nothing, or an error. */
int craft__sim_core_take(struct craft_sim *s, unsigned i, struct craft_update *u);
int craft__sim_core_persisted(struct craft_sim *s, unsigned i, uint64_t seq);
int craft__sim_core_snapshot_taken(struct craft_sim *s, unsigned i, craft_index index,
                                   uint64_t size, craft_index *compact_upto);
void craft__sim_core_status(const struct craft_sim *s, unsigned i,
                            struct craft_sim_core_status *out);
craft_term craft__sim_core_term_at(const struct craft_sim *s, unsigned i, craft_index index);
/* The voters of the configuration the core uses (a mask). */
uint64_t craft__sim_core_voters(const struct craft_sim *s, unsigned i);
/* craft's core of node i, or NULL (down, or another core: membership, transfer and reads are
 * craft's only). */
struct craft_node *craft__sim_core_native(const struct craft_sim *s, unsigned i);

/* control.c */
/* A message node from (0-based) sends: what the rules say (0: none matched, or an action)
 * and, for CRAFT_SIM_DELAY, the extra delay. */
int craft__sim_rules_apply(struct craft_sim *s, const struct craft_message *m,
                           uint64_t *delay_ms);
int craft__sim_hold(struct craft_sim *s, struct craft__sim_packet *p);
void craft__sim_control_close(struct craft_sim *s);
struct craft_sim_link_stats *craft__sim_link(struct craft_sim *s, craft_id from, craft_id to);

/* network.c */
/* Deep-copies a message node from (0-based) sends (an InstallSnapshot without data is filled
 * from the sender's store: CRAFT_EUNAVAILABLE when it does not hold that snapshot). */
int craft__sim_packet_copy(struct craft_sim *s, unsigned from, const struct craft_message *m,
                           struct craft__sim_packet **out);
int craft__sim_net_send(struct craft_sim *s, unsigned from, const struct craft_message *m);
int craft__sim_net_deliver(struct craft_sim *s, struct craft__sim_packet *p);
void craft__sim_packet_free(struct craft_sim *s, struct craft__sim_packet *p);
size_t craft__sim_message_bytes(const struct craft_message *m);

/* disk.c */
int craft__sim_disk_write(struct craft_sim *s, unsigned i, const struct craft_update *u);
int craft__sim_disk_complete(struct craft_sim *s, unsigned i);
/* A crash: the write in progress may be torn (a prefix of its store operations done), the
 * rest of the queue is lost. */
int craft__sim_disk_crash(struct craft_sim *s, unsigned i);
void craft__sim_disk_discard(struct craft_sim *s, unsigned i);

/* snapshot.c */
/* The core asked for a snapshot (u->snapshot_wanted): take it, store it, tell the core. Must
 * be the last use of the update (it calls into the core). */
int craft__sim_snap_take(struct craft_sim *s, unsigned i, const struct craft_snapshot_meta *m);
/* A chunk in an update: collect it; on the last, restore the state machine and the mirror. */
int craft__sim_snap_chunk(struct craft_sim *s, unsigned i, const struct craft_install_snapshot *c,
                          bool discard_log);
/* At boot: restore the state machine from the store's snapshot (or to empty). */
int craft__sim_snap_boot(struct craft_sim *s, unsigned i, bool has_snapshot,
                         const struct craft_snapshot_meta *meta);
/* At a crash: abandon a snapshot being written. */
void craft__sim_snap_crash(struct craft_sim *s, unsigned i);

/* invariants.c */
/* After a snapshot install: the mirror now starts at index (every entry dropped if
 * discard, otherwise the ones at or below index). */
int craft__sim_shadow_rebase(struct craft_sim *s, unsigned i, craft_index index,
                             craft_term term, bool discard);
/* The committed record's chain at index, if known. */
bool craft__sim_committed_chain(const struct craft_sim *s, craft_index index, uint64_t *chain);
/* Node i's mirror chain at index, if it holds it. */
bool craft__sim_shadow_chain(const struct craft_sim *s, unsigned i, craft_index index,
                             uint64_t *chain);
void craft__sim_shadow_close(struct craft_sim *s, struct craft__sim_shadow *l);
/* Rebuilds node i's shadow log from entries (after a boot). */
int craft__sim_shadow_reset(struct craft_sim *s, unsigned i, craft_index base,
                            craft_term base_term, const struct craft_entry *e, size_t n);
/* The observers: the driver path calls them with what a node did, tests call them with
 * fabrications to prove the checker fails. Each returns 0 or CRAFT_SIM_EVIOLATION (or
 * CRAFT_ENOMEM). */
int craft__sim_inv_append(struct craft_sim *s, unsigned i, const struct craft_entry *e,
                          size_t n, bool leader_before);
int craft__sim_inv_role(struct craft_sim *s, unsigned i, int role, craft_term term);
int craft__sim_inv_commit(struct craft_sim *s, unsigned i, craft_index commit,
                          craft_term term);
int craft__sim_inv_apply(struct craft_sim *s, unsigned i, const struct craft_entry *e);
int craft__sim_inv_durable(struct craft_sim *s, unsigned i, const struct craft_hard_state *hs);
/* Looks at node i's state after an event (role, term, commit). */
int craft__sim_inv_observe(struct craft_sim *s, unsigned i);
/* Everything, over all nodes. */
int craft__sim_inv_check_all(struct craft_sim *s);
void craft__sim_inv_close(struct craft_sim *s);

/* quorum.c: the configuration rules of the checker. */
uint64_t craft__sim_voters_of(const struct craft_configuration *c);
/* Formats a mask as "{1,2,3}". */
void craft__sim_mask_format(uint64_t mask, char *buf, size_t len);
/* A granted (real) vote from server from reached node i in term. */
void craft__sim_inv_grant(struct craft_sim *s, unsigned i, craft_id from, craft_term term);
/* Node i just became leader of term: its election quorum against its configuration. */
int craft__sim_inv_elected(struct craft_sim *s, unsigned i, craft_term term);
/* Node i, leader of term (conf_before: its voters before the input), advanced its commit
 * index to commit: the entry is of its term and a majority of its configuration stores it. */
int craft__sim_inv_leader_commit(struct craft_sim *s, unsigned i, craft_term term,
                                 uint64_t conf_before, craft_index commit);
/* Node i, leader, appended configuration entry e; commit_before is its commit index before
 * the input. The previous configuration must be committed, an entry of its term too, and the
 * voters change by at most one. */
int craft__sim_inv_conf_append(struct craft_sim *s, unsigned i, const struct craft_entry *e,
                               craft_index commit_before);
/* The committed record grew by the slot at index (called for CONFIG slots). */
int craft__sim_inv_conf_committed(struct craft_sim *s, craft_index index,
                                  const struct craft__sim_slot *sl);

/* reads.c */
/* The core reported reads (craft_update.reads) on node i. */
int craft__sim_reads_reported(struct craft_sim *s, unsigned i, const struct craft_read_state *r,
                              size_t n);
/* Serves node i's ready reads its state machine has caught up with. */
int craft__sim_reads_serve(struct craft_sim *s, unsigned i);
/* Node i crashed: its open reads fail with CRAFT_ECANCELED. */
void craft__sim_reads_crash(struct craft_sim *s, unsigned i);
void craft__sim_reads_close(struct craft_sim *s);

/* trace.c */
void craft__sim_emit(struct craft_sim *s, struct craft_sim_event *ev);
void craft__sim_emit_text(struct craft_sim *s, uint8_t kind, craft_id node, const char *fmt,
                          ...) __attribute__((format(printf, 4, 5)));
void craft__sim_event_init(struct craft_sim *s, struct craft_sim_event *ev, uint8_t kind,
                           craft_id node);
const char *craft__sim_msg_name(int type);

#endif /* CRAFT_SIM_INTERNAL_H */
