/* The state of a Raft node, shared by the files of the core. Each file owns one concern:
 *   node.c         creation from a boot state, introspection
 *   convert.c      role changes (become follower, pre-candidate, candidate, leader)
 *   election.c     timeouts, pre-vote and vote requests and results (paper 5.2, thesis 9.6)
 *   replication.c  AppendEntries, its results and the commit rule (paper 5.3, 5.4)
 *   step.c         the term rules every message passes first (paper Figure 2, "All servers")
 *   progress.c     the leader's view of each follower (match, next, probe/replicate, window)
 *   membership.c   the configuration in effect, tracked from the log (thesis 4.1), and
 *                  one-server changes (thesis 4.2, 4.3)
 *   snapshot.c     asking for snapshots, compaction, InstallSnapshot (paper section 7)
 *   transfer.c     leadership transfer (thesis 3.10)
 *   read.c         ReadIndex and lease reads (thesis 6.4)
 *   quorum.c       every majority: votes, commit index, read rounds, check-quorum
 *   update.c       collecting outputs, persistence tickets, deferred acknowledgements
 *   log.c          the in-memory log */
#ifndef CRAFT_CORE_NODE_H
#define CRAFT_CORE_NODE_H

#include "core/log.h"
#include "craft.h"

/* The largest term and index: a message naming more is refused before it reaches the core
 * (c/src/wire), and the core never increments past it (craft.h, issue 13). */
#define CRAFT__TERM_MAX CRAFT_TERM_MAX

enum { CRAFT__PROBE = 1, CRAFT__REPLICATE = 2, CRAFT__SNAPSHOT = 3 };

/* The leader's record of one server (itself included, so quorum counting is uniform). */
struct craft__progress {
    craft_id id;
    uint8_t role; /* CRAFT_VOTER or CRAFT_LEARNER */
    uint8_t mode; /* CRAFT__PROBE, CRAFT__REPLICATE, CRAFT__SNAPSHOT */
    craft_index match;
    craft_index next;
    bool probe_sent;    /* probe mode: one AppendEntries is out, wait for its answer */
    bool recent_active; /* heard from within the current check-quorum window */
    /* Replicate mode: last index of each AppendEntries in flight, oldest first. */
    craft_index *inflight;
    unsigned inflight_head;
    unsigned inflight_count;
    /* Heartbeat answers seen while an AppendEntries stayed unacknowledged: a sign that it was
     * lost and the pipeline must restart from match. */
    unsigned stalls;
    int8_t vote; /* while campaigning: 1 granted, -1 rejected, 0 unknown */
    /* A heartbeat rejection proved this follower's log went backwards: rejections of
     * heartbeats sent up to this round are the same news again (replication.c). */
    uint64_t regress_ctx;
    uint64_t ack_ctx;       /* highest heartbeat round this server acknowledged (reads) */
    unsigned caught_up;     /* consecutive rounds a learner was within promote_distance */
    /* Snapshot mode: which snapshot is being sent, how much was acknowledged, and whether a
     * chunk is out (with the ticks it has been waiting, to resend a lost one). */
    craft_index snap_index;
    uint64_t snap_offset;
    bool snap_inflight;
    unsigned snap_wait;
};

/* A read waiting for its heartbeat round (thesis 6.4). ctx 0: no round sent yet. index 0: the
 * leader has not yet committed an entry of its term, so its commit index is not yet known to
 * be the cluster's. */
struct craft__read {
    uint64_t id;
    craft_index index;
    uint64_t ctx;
};

#define CRAFT__LEASE_RING 256

/* A message waiting in the outbox. An AppendEntries names its entries as a log range, turned
 * into pointers only when the update is taken: the log may move in between, and a range whose
 * last entry no longer has the same term is no longer the message we meant to send (by the
 * Log Matching property, equal last index and term mean equal entries). */
struct craft__outmsg {
    struct craft_message m;
    craft_index lo;
    size_t n;
    craft_term hi_term;
};

/* An acknowledgement (vote or append result) that may only leave once everything up to
 * persistence ticket seq is durable (paper Figure 2: respond after updating stable storage). */
struct craft__deferred {
    uint64_t seq;
    struct craft_message m;
};

/* An update whose persistence has not been confirmed yet. */
struct craft__write {
    uint64_t seq;
    craft_index from; /* first entry written, 0 if only hard state */
    craft_index last; /* last index of the log after this write */
};

struct craft_node {
    struct craft_config cfg;
    const struct craft_allocator *alloc;
    craft_id id;

    /* Persistent state (paper Figure 2) and volatile state. */
    int role;
    craft_term term;
    craft_id vote;
    craft_id leader;
    craft_index commit;
    craft_index applied; /* last committed index handed to the driver */
    struct craft__log log;

    /* Membership: the configuration in effect is the last one in the log (thesis 4.1); the
     * snapshot's is kept to fall back on when a truncation removes the log's last one. */
    struct craft_configuration conf;
    craft_index conf_index;
    /* This server is a learner of conf but was a voter of the configuration before it: conf
     * demoted it (craft__may_campaign). */
    bool conf_demoted_self;
    struct craft_configuration snap_conf;
    craft_index snap_conf_index;

    /* Progress, one per server of conf, in the same order (leader and candidates use it). */
    struct craft__progress *progress;
    unsigned n_progress;
    craft_index *quorum_scratch;

    /* The persistence ticket that holds this candidacy's term and vote: the candidate's own
     * vote counts only once it is durable (election.c, paper Figure 2). */
    uint64_t vote_seq;

    /* Timers, in ticks. */
    unsigned election_elapsed; /* since the last valid leader contact or own election */
    unsigned heartbeat_elapsed;
    unsigned randomized_timeout;
    unsigned quorum_elapsed; /* leader: ticks in the current check-quorum window */
    uint64_t ticks;          /* every tick ever seen: the lease clock */
    uint64_t rng;
    uint64_t hb_ctx; /* heartbeat round counter, echoed by followers */
    uint64_t hb_tick[CRAFT__LEASE_RING]; /* tick at which round ctx was sent, by ctx % ring */
    craft_index term_start; /* leader: index of its term's first entry (the barrier) */

    /* Snapshots. snap is the latest snapshot (its conf is snap_conf above); snap_asked: a
     * snapshot was requested and craft_snapshot_taken() has not answered yet. */
    craft_index snap_index;
    craft_term snap_term;
    uint64_t snap_size;
    bool snap_asked;
    bool snap_forced; /* craft_snapshot_request: ask at the next update, whatever the size */
    /* Receiving a snapshot from the leader: which one, and how many bytes were stored. */
    craft_index recv_index;
    craft_term recv_term;
    uint64_t recv_offset;
    /* A received chunk waiting to be taken (its data and configuration copied). */
    bool chunk_pending;
    bool chunk_discard;
    struct craft_install_snapshot chunk;
    void *chunk_buf;
    size_t cap_chunk_buf;
    struct craft_configuration chunk_conf;
    /* The snapshot_wanted output, and the configuration it names. */
    bool want_pending;
    struct craft_snapshot_meta want;

    /* Leadership transfer. */
    craft_id transfer_target;
    unsigned transfer_elapsed;
    bool transfer_sent;
    bool lease_lost; /* TimeoutNow was sent this term: no lease reads until the next term */

    /* Reads. */
    struct craft__read *reads;
    size_t n_reads, cap_reads;
    struct craft_read_state *ready;
    size_t n_ready, cap_ready;
    struct craft_read_state *u_ready;
    size_t cap_u_ready;

    /* Outputs waiting for craft_take_update(). */
    struct craft__outmsg *outbox;
    size_t n_outbox, cap_outbox;
    struct craft__deferred *deferred;
    size_t n_deferred, cap_deferred;
    struct craft__write *writes;
    size_t n_writes, cap_writes;
    bool hs_dirty;
    craft_index unstable_from; /* lowest index changed since the last update, 0 if none */
    craft_index dropped_from;
    bool role_changed;
    craft_id reported_leader;
    int reported_role;

    /* Persistence tickets. */
    uint64_t last_seq;      /* the last ticket handed out */
    uint64_t persisted_seq; /* the last ticket the driver confirmed */
    craft_index persisted_index; /* log[1..persisted_index] in memory is what is durable */

    /* Followers whose log went backwards, waiting for the next update (and its buffer). */
    struct craft_log_regression *regressions;
    size_t n_regressions, cap_regressions;
    struct craft_log_regression *u_regressions;
    size_t cap_u_regressions;

    /* Buffers of the last update, reused. */
    struct craft_message *u_messages;
    size_t cap_u_messages;
    struct craft_entry *u_entries;
    size_t cap_u_entries;
};

/* convert.c */
void craft__become_follower(struct craft_node *n, craft_term term, craft_id leader);
void craft__become_pre_candidate(struct craft_node *n);
void craft__become_candidate(struct craft_node *n);
int craft__become_leader(struct craft_node *n);
void craft__reset_election_timer(struct craft_node *n);

/* election.c */
int craft__election_tick(struct craft_node *n);
int craft__campaign(struct craft_node *n, bool transfer);
int craft__recv_request_vote(struct craft_node *n, const struct craft_message *m);
int craft__recv_request_vote_result(struct craft_node *n, const struct craft_message *m);
int craft__election_persisted(struct craft_node *n);
bool craft__is_voter(const struct craft_node *n, craft_id id);
bool craft__may_campaign(const struct craft_node *n);

/* replication.c */
int craft__heartbeat_tick(struct craft_node *n);
int craft__send_append(struct craft_node *n, struct craft__progress *p, bool heartbeat);
int craft__broadcast_append(struct craft_node *n);
int craft__broadcast_heartbeat(struct craft_node *n);
int craft__recv_append_entries(struct craft_node *n, const struct craft_message *m);
int craft__recv_append_entries_result(struct craft_node *n, const struct craft_message *m);
int craft__maybe_commit(struct craft_node *n);
int craft__append_local(struct craft_node *n, uint8_t type, const void *data, size_t size);

/* progress.c */
int craft__progress_rebuild(struct craft_node *n);
struct craft__progress *craft__progress_get(struct craft_node *n, craft_id id);
void craft__progress_reset_all(struct craft_node *n);
void craft__progress_become_probe(struct craft__progress *p);
void craft__progress_become_replicate(struct craft__progress *p);
bool craft__progress_paused(const struct craft_node *n, const struct craft__progress *p);
void craft__progress_sent(struct craft_node *n, struct craft__progress *p, craft_index last,
                          size_t n_entries);
void craft__progress_ack(const struct craft_node *n, struct craft__progress *p,
                         craft_index index);
void craft__progress_free(struct craft_node *n);
craft_index craft__progress_self_match(const struct craft_node *n);

/* quorum.c */
enum { CRAFT__Q_MATCH = 1, CRAFT__Q_ACK_CTX = 2 };
enum { CRAFT__VOTE_PENDING = 0, CRAFT__VOTE_WON = 1, CRAFT__VOTE_LOST = 2 };
unsigned craft__quorum_size(unsigned voters);
uint64_t craft__quorum_value(struct craft_node *n, int what);
int craft__quorum_vote_result(const struct craft_node *n);
bool craft__quorum_active(const struct craft_node *n);

/* membership.c */
int craft__conf_reload(struct craft_node *n);
int craft__conf_from_entry(struct craft_node *n, const struct craft_entry *e);

/* snapshot.c */
int craft__send_snapshot(struct craft_node *n, struct craft__progress *p);
int craft__recv_install_snapshot(struct craft_node *n, const struct craft_message *m);
int craft__recv_install_snapshot_result(struct craft_node *n, const struct craft_message *m);
void craft__snapshot_tick(struct craft_node *n, struct craft__progress *p);
int craft__snapshot_check(struct craft_node *n);
int craft__conf_at(struct craft_node *n, craft_index index, struct craft_configuration *out,
                   craft_index *conf_index);

/* membership.c (changes) */
int craft__auto_promote_tick(struct craft_node *n);
void craft__maybe_step_down_removed(struct craft_node *n);

/* transfer.c */
void craft__transfer_tick(struct craft_node *n);
int craft__transfer_progress(struct craft_node *n, struct craft__progress *p);
void craft__transfer_clear(struct craft_node *n);

/* read.c */
int craft__reads_flush(struct craft_node *n);
int craft__reads_check(struct craft_node *n);
void craft__reads_fail_all(struct craft_node *n);

/* update.c */
int craft__reserve(const struct craft_allocator *a, void **arr, size_t *cap, size_t want,
                   size_t elem);
int craft__send(struct craft_node *n, const struct craft_message *m, craft_index lo, size_t count);
int craft__send_after_persist(struct craft_node *n, const struct craft_message *m);
void craft__mark_unstable(struct craft_node *n, craft_index from);
void craft__mark_hard_state(struct craft_node *n);

/* A splitmix64 step: the core's only source of randomness, seeded from the config. */
static inline uint64_t craft__rand(struct craft_node *n)
{
    uint64_t z = (n->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#endif
