/*
 * craft: a Raft consensus library.
 *
 * This header is the public C API of the protocol core: a Raft node as a value, with no I/O,
 * no clock, no threads and no global state. A driver (the simulator, the libuv runtime, a test)
 * feeds it inputs -- craft_step() for a message, craft_tick() for the passage of time,
 * craft_propose() for a command -- and collects its outputs with craft_take_update(): hard
 * state and entries to persist, messages to send, committed entries to apply. When the driver
 * has made an update durable it says so with craft_persisted(); only then does the core
 * acknowledge a vote or an append (Raft paper, Figure 2: "respond to RPCs ... after updating
 * stable storage").
 *
 * It also declares the storage interface (struct craft_store) that the durable store, the
 * in-memory store and the bindings' script stores implement.
 *
 * Conventions: every function that can fail returns 0 or a negative CRAFT_E* code; pointers
 * handed in are borrowed for the duration of the call unless said otherwise; names prefixed
 * craft__ are internal and not part of this API.
 */
#ifndef CRAFT_H
#define CRAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CRAFT_VERSION_MAJOR 0
#define CRAFT_VERSION_MINOR 1
#define CRAFT_VERSION_PATCH 0
#define CRAFT_VERSION_STRING "0.1.0"

#if defined(__GNUC__)
#define CRAFT_API __attribute__((visibility("default")))
#else
#define CRAFT_API
#endif

/* ------------------------------------------------------------------------------------------
 * Errors
 *
 * One table makes the codes, their names and their messages (the libuv UV_ERRNO_MAP idea).
 * ---------------------------------------------------------------------------------------- */
#define CRAFT_ERRNO_MAP(X)                                                                     \
    X(NOMEM, -1, "out of memory")                                                              \
    X(INVAL, -2, "invalid argument")                                                           \
    X(NOTLEADER, -3, "this node is not the leader")                                            \
    X(BUSY, -4, "busy: a leadership transfer or membership change is in progress")             \
    X(SHUTDOWN, -5, "the node is shutting down")                                               \
    X(TIMEDOUT, -6, "timed out")                                                               \
    X(MALFORMED, -7, "malformed message or data")                                              \
    X(CORRUPT, -8, "corrupt data in storage")                                                  \
    X(IO, -9, "I/O error")                                                                     \
    X(NOTFOUND, -10, "not found")                                                              \
    X(TOOBIG, -11, "too big")                                                                  \
    X(DROPPED, -12, "the proposal was lost to a leader change; it was not applied")            \
    X(COMPACTED, -13, "the requested index has been compacted into a snapshot")                \
    X(UNAVAILABLE, -14, "the requested index is not available yet")                            \
    X(LOCKED, -15, "the data directory is locked by another process")                          \
    X(VERSION, -16, "unsupported format or protocol version")                                  \
    X(EXISTS, -17, "already exists")                                                           \
    X(NOCONN, -18, "no connection")                                                            \
    X(CANCELED, -19, "canceled")                                                               \
    X(STATE, -20, "the call is not valid in the node's current state")                         \
    X(VIOLATION, -21, "a Raft safety invariant was violated")                                  \
    X(APPLY, -22, "the state machine failed the command")                                      \
    X(ADDRINUSE, -23, "the address is already in use")

enum {
#define CRAFT__ERRNO_ENUM(name, code, msg) CRAFT_E##name = (code),
    CRAFT_ERRNO_MAP(CRAFT__ERRNO_ENUM)
#undef CRAFT__ERRNO_ENUM
};

/* A human-readable message for a CRAFT_E* code ("unknown error" for anything else). */
CRAFT_API const char *craft_strerror(int rc);
/* The code's name, e.g. "CRAFT_ENOTLEADER". */
CRAFT_API const char *craft_err_name(int rc);

/* ------------------------------------------------------------------------------------------
 * Memory
 *
 * Every allocation a node, store or simulator makes goes through the allocator it was created
 * with (NULL means the C library's). Tests use this to inject out-of-memory failures.
 * ---------------------------------------------------------------------------------------- */
struct craft_allocator {
    void *data;
    void *(*malloc)(void *data, size_t size);
    void *(*calloc)(void *data, size_t nmemb, size_t size);
    void *(*realloc)(void *data, void *ptr, size_t size);
    void (*free)(void *data, void *ptr);
};

CRAFT_API const struct craft_allocator *craft_default_allocator(void);
/* Helpers that accept NULL for the default allocator. */
CRAFT_API void *craft_malloc(const struct craft_allocator *a, size_t size);
CRAFT_API void *craft_calloc(const struct craft_allocator *a, size_t nmemb, size_t size);
CRAFT_API void *craft_realloc(const struct craft_allocator *a, void *ptr, size_t size);
CRAFT_API void craft_free(const struct craft_allocator *a, void *ptr);

/* ------------------------------------------------------------------------------------------
 * Basic types
 * ---------------------------------------------------------------------------------------- */
typedef uint64_t craft_id;    /* a server id; 0 means "none" */
typedef uint64_t craft_term;  /* 0 is before any election */
typedef uint64_t craft_index; /* log indexes start at 1; 0 means "none" */

/* The largest term and the largest index craft accepts, from the network (the wire decoder
 * refuses a message carrying more, docs/wire.md "Bounds") or from a store (the core refuses to
 * start from one). 2^62 - 1 is out of reach of any real cluster (a term per millisecond, or a
 * million entries a second, for over 100,000 years), and every "+ 1" the core does on a term or
 * an index is then free of overflow: the core never increments a term or an index that has
 * reached the bound (it stops campaigning, or refuses the append with CRAFT_ETOOBIG). */
#define CRAFT_TERM_MAX ((craft_term)(((uint64_t)1 << 62) - 1))
#define CRAFT_INDEX_MAX ((craft_index)(((uint64_t)1 << 62) - 1))

enum craft_entry_type {
    CRAFT_ENTRY_COMMAND = 1, /* the user's command, for the state machine */
    CRAFT_ENTRY_BARRIER = 2, /* a no-op: appended by every new leader (paper section 5.4.2) */
    CRAFT_ENTRY_CONFIG = 3   /* a cluster configuration, encoded by craft_configuration_encode */
};

struct craft_entry {
    craft_term term;
    craft_index index;
    uint8_t type; /* enum craft_entry_type */
    const void *data;
    size_t size;
};

/* Durable state that must be written before a vote is granted (paper Figure 2). The commit
 * index is only a hint that saves re-deriving it after a restart. */
struct craft_hard_state {
    craft_term term;
    craft_id vote;
    craft_index commit;
};

/* ------------------------------------------------------------------------------------------
 * Cluster configuration (membership)
 * ---------------------------------------------------------------------------------------- */
enum craft_server_role {
    CRAFT_VOTER = 1,  /* counts in elections and in the commit quorum */
    CRAFT_LEARNER = 2 /* receives the log but does not vote (a non-voter, thesis 4.2.1) */
};

#define CRAFT_ADDRESS_MAX 128 /* bytes, including the terminating NUL */

/* Server flags. */
#define CRAFT_SERVER_AUTO_PROMOTE 0x01 /* a learner the leader promotes once caught up */

struct craft_server {
    craft_id id;
    uint8_t role;  /* enum craft_server_role */
    uint8_t flags; /* CRAFT_SERVER_* */
    char address[CRAFT_ADDRESS_MAX];
};

struct craft_configuration {
    unsigned n;
    struct craft_server *servers; /* allocated with the allocator given to the functions below */
};

CRAFT_API void craft_configuration_init(struct craft_configuration *c);
CRAFT_API void craft_configuration_close(struct craft_configuration *c,
                                         const struct craft_allocator *a);
/* Adds a server. CRAFT_EINVAL for id 0, a bad role or an address that does not fit;
 * CRAFT_EEXISTS for a duplicate id. */
CRAFT_API int craft_configuration_add(struct craft_configuration *c,
                                      const struct craft_allocator *a, craft_id id,
                                      const char *address, int role);
CRAFT_API const struct craft_server *craft_configuration_get(const struct craft_configuration *c,
                                                             craft_id id);
CRAFT_API int craft_configuration_copy(struct craft_configuration *dst,
                                       const struct craft_configuration *src,
                                       const struct craft_allocator *a);
CRAFT_API unsigned craft_configuration_voters(const struct craft_configuration *c);
/* The language-neutral binary encoding stored in CRAFT_ENTRY_CONFIG entries and snapshot
 * metadata (documented in docs/formats.md). encode allocates *buf with a; decode is total: any
 * byte string decodes or returns CRAFT_EMALFORMED. */
CRAFT_API int craft_configuration_encode(const struct craft_configuration *c,
                                         const struct craft_allocator *a, void **buf,
                                         size_t *size);
CRAFT_API int craft_configuration_decode(const void *buf, size_t size,
                                         const struct craft_allocator *a,
                                         struct craft_configuration *out);

/* ------------------------------------------------------------------------------------------
 * Snapshots
 * ---------------------------------------------------------------------------------------- */
struct craft_snapshot_meta {
    craft_index index; /* last index the snapshot covers */
    craft_term term;   /* term of that entry */
    struct craft_configuration conf; /* the latest configuration at or before index */
    craft_index conf_index;          /* index of the entry that held that configuration */
    uint64_t size;                   /* bytes of state machine data */
};

/* ------------------------------------------------------------------------------------------
 * Messages
 *
 * The core produces and consumes these; the wire layer turns them into bytes. A message handed
 * to craft_step() is borrowed: the core copies what it keeps.
 * ---------------------------------------------------------------------------------------- */
enum craft_message_type {
    CRAFT_MSG_REQUEST_VOTE = 1,
    CRAFT_MSG_REQUEST_VOTE_RESULT = 2,
    CRAFT_MSG_APPEND_ENTRIES = 3,
    CRAFT_MSG_APPEND_ENTRIES_RESULT = 4,
    CRAFT_MSG_INSTALL_SNAPSHOT = 5,
    CRAFT_MSG_INSTALL_SNAPSHOT_RESULT = 6,
    CRAFT_MSG_TIMEOUT_NOW = 7
};
#define CRAFT_MSG_TYPE_MAX 7

struct craft_request_vote {
    craft_index last_log_index;
    craft_term last_log_term;
    bool pre_vote; /* thesis 9.6: would you vote for me? (term is the term I would use) */
    bool transfer; /* thesis 3.10: sent after TimeoutNow; overrides the leader-alive check */
};

struct craft_request_vote_result {
    bool granted;
    bool pre_vote;
};

struct craft_append_entries {
    craft_index prev_index;
    craft_term prev_term;
    craft_index commit;
    uint64_t ctx; /* heartbeat round, echoed back: confirms leadership for reads */
    const struct craft_entry *entries;
    size_t n_entries;
};

struct craft_append_entries_result {
    bool rejected;
    /* Accepted: the index of the last entry the follower now holds that matches the leader's
     * log (its match index). Rejected: the prev_index that was rejected. */
    craft_index index;
    /* Rejected only: the conflict hint for fast backtracking, the follower's last index at or
     * below prev_index whose term is at most hint_term (etcd's findConflictByTerm). */
    craft_index hint_index;
    craft_term hint_term;
    craft_index last_index; /* the follower's last log index */
    uint64_t ctx;           /* echoed from the request */
};

/* One chunk of a snapshot (paper section 7, Figure 13). When the core emits this message, data
 * is NULL and size is the chunk length wanted: the driver reads bytes [offset, offset + size)
 * of the snapshot at meta.index from its snapshot store and fills them in before sending. */
struct craft_install_snapshot {
    struct craft_snapshot_meta meta;
    uint64_t offset;
    const void *data;
    size_t size;
    bool done; /* the last chunk */
};

struct craft_install_snapshot_result {
    craft_index index; /* the snapshot's index */
    uint64_t offset;   /* bytes received so far: the next chunk to send */
    bool rejected;     /* the follower will not take this snapshot (restart from 0) */
    bool done;         /* the follower has installed it */
};

struct craft_message {
    uint8_t type; /* enum craft_message_type */
    craft_id from;
    craft_id to;
    craft_term term;
    union {
        struct craft_request_vote request_vote;
        struct craft_request_vote_result request_vote_result;
        struct craft_append_entries append_entries;
        struct craft_append_entries_result append_entries_result;
        struct craft_install_snapshot install_snapshot;
        struct craft_install_snapshot_result install_snapshot_result;
    } u;
};

CRAFT_API const char *craft_message_type_name(int type);

/* ------------------------------------------------------------------------------------------
 * The node
 * ---------------------------------------------------------------------------------------- */
enum craft_role {
    CRAFT_FOLLOWER = 1,
    CRAFT_PRE_CANDIDATE = 2, /* thesis 9.6: polling before a real election */
    CRAFT_CANDIDATE = 3,
    CRAFT_LEADER = 4
};
CRAFT_API const char *craft_role_name(int role);

struct craft_config {
    craft_id id;
    /* Time, in ticks. A follower that hears nothing for a random number of ticks in
     * [election_ticks, 2 * election_ticks) starts an election (paper section 5.2). */
    unsigned election_ticks;  /* default 10 */
    unsigned heartbeat_ticks; /* default 1; must be below election_ticks */
    bool pre_vote;            /* default true (thesis 9.6) */
    bool check_quorum;        /* default true (thesis 6.2) */
    /* Replication flow control (thesis 10.2.1 and 10.2.2). */
    unsigned max_batch_entries; /* entries per AppendEntries, default 1024 */
    size_t max_batch_bytes;     /* payload bytes per AppendEntries, default 1 MiB */
    unsigned max_inflight;      /* AppendEntries in flight per follower, default 64 */
    /* Seeds the node's own PRNG (randomized timeouts): no call to rand(). */
    uint64_t seed;
    const struct craft_allocator *alloc; /* NULL: the C library's */
    /* Snapshots (paper section 7). The core asks for a snapshot when the log holds more than
     * snapshot_entries applied entries or snapshot_bytes of them (0 disables either test); after
     * one, it keeps snapshot_trailing entries so that slightly lagging followers still catch up
     * from the log. */
    uint64_t snapshot_entries;   /* default 16384 */
    uint64_t snapshot_bytes;     /* default 64 MiB */
    uint64_t snapshot_trailing;  /* default 1024 */
    size_t snapshot_chunk_bytes; /* InstallSnapshot chunk size, default 1 MiB */
    /* Membership: a learner is promotable (by craft_promote or automatically) once its match
     * index is within promote_distance of the leader's last index for promote_rounds
     * consecutive heartbeat rounds. */
    uint64_t promote_distance; /* default 64 */
    unsigned promote_rounds;   /* default 3 */
    /* Lease reads (off by default): a leader serves CRAFT_READ_LEASE reads without a heartbeat
     * round while a majority acknowledged a heartbeat sent less than election_ticks -
     * lease_drift_ticks ago. Requires check_quorum. */
    bool lease_reads;
    unsigned lease_drift_ticks; /* default 2 */
    /* UNSAFE, for teaching only: each flag switches off one safety rule of Raft, so that a lab
     * can watch the simulator's checker catch what follows (docs/lab.md, "Break it"). A node
     * with any of them set can lose committed entries or let two leaders share a term. All
     * false by craft_config_init; nothing in craft sets them. (Pre-vote and check-quorum are
     * liveness features, switched off with pre_vote and check_quorum above.) */
    struct craft_unsafe {
        bool no_commit_rule;          /* commit an entry of an older term by counting
                                       * replicas (paper 5.4.2, Figure 8) */
        bool no_election_restriction; /* vote for a candidate whose log is behind (5.4.1) */
        bool no_persist_before_vote;  /* grant a vote, or count one's own, before it is durable
                                       * (Figure 2: "respond after updating stable storage") */
    } unsafe;
};

/* Fills c with the defaults above for server id. */
CRAFT_API void craft_config_init(struct craft_config *c, craft_id id);

/* What a node starts from: what its store holds. All of it is borrowed (copied by the core). */
struct craft_boot {
    struct craft_hard_state hard_state;
    const struct craft_snapshot_meta *snapshot; /* NULL if none */
    const struct craft_entry *entries;          /* contiguous, following the snapshot */
    size_t n_entries;
    /* For a brand-new cluster only: with a store that holds no entry and no snapshot, the
     * core writes this configuration as entry 1 of term 1 (emitted in the first update for
     * persistence), keeping any term and vote the hard state holds (a crash may land between
     * the hard state and entry 1 of that first write). A node started empty without it waits,
     * never campaigning, until a leader adds it. Ignored if the store holds entries or a
     * snapshot. */
    const struct craft_configuration *bootstrap;
};

struct craft_node;

CRAFT_API int craft_node_new(const struct craft_config *config, const struct craft_boot *boot,
                             struct craft_node **out);
CRAFT_API void craft_node_free(struct craft_node *n);

/* Inputs. */

/* A message from a peer. Messages of a stale term, from unknown servers or that make no sense
 * are ignored (return 0); CRAFT_EMALFORMED means the message itself is invalid (e.g. entries
 * that are not contiguous), CRAFT_ENOMEM that it could not be processed. */
CRAFT_API int craft_step(struct craft_node *n, const struct craft_message *m);
/* One unit of time passed. */
CRAFT_API int craft_tick(struct craft_node *n);
/* Proposes one command (copied). On success *index and *term say where it went in the log:
 * the command was applied iff the entry applied at *index has term *term. CRAFT_ENOTLEADER
 * when this node is not the leader; CRAFT_EBUSY during a leadership transfer. index and term
 * may be NULL. */
CRAFT_API int craft_propose(struct craft_node *n, const void *data, size_t size,
                            craft_index *index, craft_term *term);
/* Proposes a batch of commands at once; they take consecutive indexes from *first_index. */
struct craft_buf {
    const void *base;
    size_t len;
};
CRAFT_API int craft_propose_batch(struct craft_node *n, const struct craft_buf *cmds, size_t count,
                                  craft_index *first_index, craft_term *term);

/* Snapshots (paper section 7). */

/* The driver finished the snapshot asked for in an update (see craft_update.snapshot_wanted):
 * the state machine at meta.index is durable in the store, size bytes. The core compacts its
 * log, keeping snapshot_trailing entries, and sets *compact_upto to the index up to which the
 * driver may now compact the store (0: nothing). index 0 means the snapshot failed: the core
 * will ask again later. */
CRAFT_API int craft_snapshot_taken(struct craft_node *n, craft_index index, uint64_t size,
                                   craft_index *compact_upto);
/* Asks for a snapshot now, whatever the thresholds (an operator's "take one now"): the next
 * update's snapshot_wanted covers everything applied by then. *index (may be NULL) is the
 * index the snapshot will cover at least: the applied index, or the index of the snapshot
 * already asked for and not yet taken; 0 when the latest snapshot already covers everything
 * applied (nothing to do). Any role. */
CRAFT_API int craft_snapshot_request(struct craft_node *n, craft_index *index);

/* Membership (thesis chapter 4): one server at a time, leader only. Each returns the index of
 * the configuration entry it appended (NULL allowed). CRAFT_ENOTLEADER on a follower;
 * CRAFT_EBUSY while another change is uncommitted, before the leader has committed an entry
 * of its own term (Ongaro's 2015 correction), or during a leadership transfer; CRAFT_EEXISTS /
 * CRAFT_ENOTFOUND for a server that is / is not there; CRAFT_ESTATE to promote a learner that
 * has not caught up. */
CRAFT_API int craft_add_server(struct craft_node *n, craft_id id, const char *address,
                               bool auto_promote, craft_index *index);
CRAFT_API int craft_promote(struct craft_node *n, craft_id id, craft_index *index);
CRAFT_API int craft_remove_server(struct craft_node *n, craft_id id, craft_index *index);
/* Makes voter id a learner (the inverse of craft_promote): same rules as the others;
 * CRAFT_EINVAL for a learner or the last voter. A leader that demotes itself steps down once
 * the change is committed. A demoted server is never promoted again automatically. */
CRAFT_API int craft_demote(struct craft_node *n, craft_id id, craft_index *index);

/* Leadership transfer (thesis 3.10): the leader stops accepting proposals, brings target up to
 * date and tells it to start an election at once. target 0 picks the most up-to-date voter.
 * The transfer is abandoned after an election timeout. */
CRAFT_API int craft_transfer_leadership(struct craft_node *n, craft_id target);
/* The server a transfer in progress targets, 0 if none. */
CRAFT_API craft_id craft_node_transfer_target(const struct craft_node *n);

/* Linearizable reads (thesis 6.4). The leader records its commit index and confirms with a
 * heartbeat round that it still leads; the result arrives in an update's reads: the read may be
 * served once the state machine has applied up to its index. A leader loses pending reads when
 * it steps down (status CRAFT_ENOTLEADER). CRAFT_READ_LEASE skips the round while the lease of
 * craft_config.lease_reads holds (falls back to a round otherwise). */
enum craft_read_mode { CRAFT_READ_INDEX = 1, CRAFT_READ_LEASE = 2 };
CRAFT_API int craft_read_index(struct craft_node *n, uint64_t id, int mode);

struct craft_read_state {
    uint64_t id;
    craft_index index; /* serve once applied >= index */
    int status;        /* 0, or CRAFT_ENOTLEADER when leadership was lost */
};

/* Outputs. */

/* A follower whose log went backwards: it rejected a heartbeat at an index it had already
 * acknowledged, so its disk lost entries it had promised to keep (a cut or wiped data
 * directory, an older copy put back, a disk that lied about fsync). The leader re-replicates
 * from what the follower really holds. Entries that counted this follower toward their commit
 * may now be stored on fewer servers than Raft assumes: the driver should say so loudly
 * (docs/core.md, "A follower whose log went backwards"). */
struct craft_log_regression {
    craft_id id;             /* the follower */
    craft_index match;       /* what the leader had counted as stored there */
    craft_index last_index;  /* the follower's last index now */
};

struct craft_update {
    /* Persistence ticket: once the hard state and entries below are durable (and those of
     * every earlier update), call craft_persisted(n, seq). 0 when there is nothing to persist. */
    uint64_t seq;
    bool hard_state_changed;
    struct craft_hard_state hard_state;
    /* Entries to append to the log. If entries[0].index is at or below the store's last
     * index, the store first removes every entry from entries[0].index on (a follower's
     * conflicting suffix, paper section 5.3). */
    const struct craft_entry *entries;
    size_t n_entries;
    /* Messages to send now, in order. */
    const struct craft_message *messages;
    size_t n_messages;
    /* Committed entries to apply to the state machine, in order. */
    const struct craft_entry *committed;
    size_t n_committed;
    /* Proposals in the log from this index on were discarded (overwritten by a new leader's
     * log): any proposal waiting at or after it has failed with CRAFT_EDROPPED. 0 if none. */
    craft_index dropped_from;
    /* A chunk of a snapshot sent by the leader, to store before anything else of this update
     * (paper section 7). offset 0 starts a new snapshot (abandon any partial one). When done:
     * make it durable as the store's latest snapshot; then, if snapshot_discard_log, remove
     * every entry from the store's log, otherwise compact the store up to meta.index; restore
     * the state machine from it; only then apply u->committed and persist u->entries.
     * A partial chunk of a snapshot at or below the store's latest snapshot (the node took a
     * newer one of its own meanwhile) is to be skipped: the core will not install it. */
    const struct craft_install_snapshot *snapshot_chunk;
    bool snapshot_discard_log;
    /* The log has grown past the snapshot thresholds: after applying u->committed, snapshot
     * the state machine (it is then at snapshot_wanted->index), store it with this metadata,
     * and call craft_snapshot_taken(). Not asked again until then. */
    const struct craft_snapshot_meta *snapshot_wanted;
    /* Reads that became safe (or failed). */
    const struct craft_read_state *reads;
    size_t n_reads;
    /* Leader: followers found to have lost acknowledged entries (see above). */
    const struct craft_log_regression *regressions;
    size_t n_regressions;
    /* Role or leader changed in this update. */
    bool role_changed;
    int role;
    craft_id leader;
    craft_term term;
};

/* True if craft_take_update() would return something. */
CRAFT_API bool craft_has_update(const struct craft_node *n);
/* Collects everything pending into *u. Everything u points to stays valid until the next call
 * into the node; copy what must outlive it. Committed entries handed out are considered
 * applied. Never fails except for CRAFT_EINVAL. */
CRAFT_API int craft_take_update(struct craft_node *n, struct craft_update *u);
/* The driver made every update up to and including seq durable. */
CRAFT_API int craft_persisted(struct craft_node *n, uint64_t seq);

/* Introspection (for drivers, the simulator's invariant checks, tests and status pages). */
CRAFT_API craft_id craft_node_id(const struct craft_node *n);
CRAFT_API int craft_node_role(const struct craft_node *n);
CRAFT_API craft_term craft_node_term(const struct craft_node *n);
CRAFT_API craft_id craft_node_vote(const struct craft_node *n);
CRAFT_API craft_id craft_node_leader(const struct craft_node *n);
CRAFT_API craft_index craft_node_commit(const struct craft_node *n);
CRAFT_API craft_index craft_node_applied(const struct craft_node *n);
CRAFT_API craft_index craft_node_first_index(const struct craft_node *n);
CRAFT_API craft_index craft_node_last_index(const struct craft_node *n);
/* The entry at index, borrowed until the next call into the node; NULL if not in the log. */
CRAFT_API const struct craft_entry *craft_node_entry(const struct craft_node *n, craft_index i);
/* The term of the entry at index (also for the snapshot's last index); 0 if unknown. */
CRAFT_API craft_term craft_node_term_at(const struct craft_node *n, craft_index i);
/* The latest snapshot (taken or installed): its index (0: none), term and size in bytes (term
 * and size may be NULL). */
CRAFT_API craft_index craft_node_snapshot(const struct craft_node *n, craft_term *term,
                                          uint64_t *size);
/* The configuration in effect (the last one in the log, thesis 4.1), and its index. */
CRAFT_API const struct craft_configuration *craft_node_configuration(const struct craft_node *n,
                                                                      craft_index *index);

struct craft_progress_info {
    craft_id id;
    uint8_t role;    /* enum craft_server_role */
    uint8_t mode;    /* 1 probe, 2 replicate, 3 snapshot */
    craft_index match;
    craft_index next;
    unsigned inflight;
    bool recent_active;
};
/* On the leader: fills up to max progress records and returns how many servers there are;
 * elsewhere returns 0. */
CRAFT_API unsigned craft_node_progress(const struct craft_node *n, struct craft_progress_info *out,
                                       unsigned max);

/* ------------------------------------------------------------------------------------------
 * Storage interface
 *
 * A table of functions over an opaque impl, implemented by the durable store, the in-memory
 * store and the bindings (a store written in Python or Lua). Every function returns 0 or a
 * negative CRAFT_E* code; every write is durable when it returns. Memory a store returns is
 * allocated with the allocator passed to the call and freed by the caller with it.
 * Calls on one store are never concurrent.
 * ---------------------------------------------------------------------------------------- */
#define CRAFT_STORE_VERSION 1

struct craft_store {
    int version; /* CRAFT_STORE_VERSION */
    void *impl;
    /* Hard state; a store that has none returns zeros. */
    int (*load_hard_state)(void *impl, struct craft_hard_state *out);
    int (*save_hard_state)(void *impl, const struct craft_hard_state *hs);
    /* Bounds of the log: first and last index held. An empty log reports first = last + 1,
     * where last is the snapshot's index (0 if none). */
    int (*bounds)(void *impl, craft_index *first, craft_index *last);
    /* Appends entries; entries[0].index must be last + 1 (truncate first otherwise). */
    int (*append)(void *impl, const struct craft_entry *entries, size_t n);
    /* Removes every entry with index >= from. */
    int (*truncate)(void *impl, craft_index from);
    /* Removes every entry with index <= upto (after a snapshot covers them). */
    int (*compact)(void *impl, craft_index upto);
    /* Reads entries [lo, hi]: *out is ONE allocation (the array, followed by the payloads it
     * points into) released with a single free. CRAFT_ECOMPACTED below the first index,
     * CRAFT_EUNAVAILABLE past the last. */
    int (*entries)(void *impl, craft_index lo, craft_index hi, const struct craft_allocator *a,
                   struct craft_entry **out, size_t *n);
    int (*term)(void *impl, craft_index i, craft_term *out);
    /* Snapshots are written and read as streams of chunks. */
    int (*snapshot_begin)(void *impl, const struct craft_snapshot_meta *meta, void **writer);
    int (*snapshot_write)(void *impl, void *writer, const void *buf, size_t len);
    /* Makes the snapshot durable and the latest; older ones are removed after that. */
    int (*snapshot_commit)(void *impl, void *writer);
    void (*snapshot_abort)(void *impl, void *writer);
    /* Metadata of the latest snapshot (conf allocated with a); CRAFT_ENOTFOUND if none. */
    int (*snapshot_meta)(void *impl, const struct craft_allocator *a,
                         struct craft_snapshot_meta *out);
    int (*snapshot_open)(void *impl, void **reader);
    /* Reads up to len bytes at offset into buf; *n is 0 at the end. */
    int (*snapshot_read)(void *impl, void *reader, uint64_t offset, void *buf, size_t len,
                         size_t *n);
    void (*snapshot_close)(void *impl, void *reader);
    /* Releases the store and everything it holds, including this table. */
    void (*close)(void *impl);
};

/* The in-memory store (c/src/storage/mem_store.c): same semantics, nothing survives the
 * process. Used by the simulator and tests. */
CRAFT_API int craft_mem_store_new(const struct craft_allocator *a, struct craft_store **out);
/* Closes any store: s->close(s->impl). NULL is ignored. */
CRAFT_API void craft_store_close(struct craft_store *s);

#ifdef __cplusplus
}
#endif

#endif /* CRAFT_H */
