/*
 * craft/uv.h: the libuv runtime. Real nodes on real sockets and real files: ticks from the
 * monotonic clock feed the protocol core, peers are TCP connections (wire format:
 * craft/wire.h), the log is written on libuv's thread pool with group commit, committed commands
 * go to the user's state machine in batches, proposals and reads made on a follower are
 * forwarded to the leader.
 *
 * Threads. A node lives on the thread that runs its loop; one loop may drive several nodes.
 * Every function here must be called on that thread, except craft_uv_submit(),
 * craft_uv_status(), craft_uv_set_faults(), craft_uv_set_security() and craft_uv_fsm_run(),
 * which any thread may call, also while the node stops: once craft_uv_node_stop() has begun
 * they return CRAFT_ESHUTDOWN (craft_uv_status() the last status), until the stop callback has
 * returned; after that the node no longer exists, and the stop callback is where the owner of
 * such threads makes sure that they stop calling (it may wait for calls in progress: they do
 * not need the loop).
 *
 * The state machine runs off the loop, so that a slow apply never stops heartbeats: everything
 * that calls the state machine's code runs in one ordered stream on a thread of its own (the
 * runtime's, one per node; or the embedder's, see fsm_wake): apply, snapshot and restore, and
 * the callbacks of the requests the state machine answers (a proposal right after its entry
 * is applied, a read once the state machine has reached its read index). Nothing else of the
 * stream runs meanwhile, so such a callback may read the state machine directly. Which thread
 * runs each callback:
 *
 *   callback                                       runtime's stream    embedder's stream
 *   fsm.apply, fsm.snapshot, fsm.restore           stream thread       embedder's thread
 *   fsm.step_done                                  stream thread       embedder's thread
 *   fsm.thread_start, fsm.thread_stop              stream thread       (never called)
 *   request cb: proposal applied (status 0,        stream thread       embedder's thread
 *     EAPPLY, EDROPPED at its index), read done
 *   request cb: any other answer (failures,        loop thread         embedder's thread
 *     membership, transfer)
 *   event                                          loop thread         embedder's thread
 *   log                                            loop thread, or a disk thread inside a
 *                                                  store call (see log below)
 *   stop callback of craft_uv_node_stop            loop thread         embedder's thread
 *
 * At start (craft_uv_node_new) restore runs on the calling thread, before the node exists.
  */
#ifndef CRAFT_UV_H
#define CRAFT_UV_H

#include <uv.h>

#include "craft.h"
#include "craft/security.h"

#ifdef __cplusplus
extern "C" {
#endif

struct craft_uv_node;

/* ------------------------------------------------------------------------------------------
 * The state machine
 * ---------------------------------------------------------------------------------------- */

/* One committed command handed to apply. */
struct craft_uv_apply {
    craft_index index;
    craft_term term;
    const void *data;
    size_t size;
    /* Filled by apply: the result returned to the proposer (allocated with craft_malloc(NULL,
     * ...); the runtime frees it), and error != 0 when the command failed in the state machine.
     * A failure is deterministic state-machine behaviour: the entry still counts as applied
     * everywhere, and the proposer gets CRAFT_EAPPLY with the result bytes as the message. */
    void *result;
    size_t result_size;
    int error;
};

/* Writes snapshot bytes; returns 0 or a CRAFT_E* code (then stop and return it). */
typedef int (*craft_uv_write_fn)(void *ctx, const void *buf, size_t len);
/* Reads up to cap bytes; *n is 0 at the end. */
typedef int (*craft_uv_read_fn)(void *ctx, void *buf, size_t cap, size_t *n);

struct craft_uv_fsm {
    void *data;
    /* Applies a batch of commands, in log order (the stream's thread). A non-zero return (a
     * CRAFT_E* code) means the state machine cannot go on: the node stops, loudly; the result
     * of the last command whose error is set, if any, is the reason it reports (the stopped
     * event's message). A binding stops this way on a command it cannot interpret or a state it
     * knows to be wrong (docs/protocol.md). The loop goes on meanwhile: heartbeats, replication
     * and the disk do not wait for it. */
    int (*apply)(void *data, struct craft_uv_apply *cmds, size_t n);
    /* Writes the whole state (the stream's thread, in the stream's order: the state is exactly
     * the one at the snapshot's index). */
    int (*snapshot)(void *data, craft_uv_write_fn write, void *ctx);
    /* Replaces the whole state with a snapshot's (the stream's thread, in order). */
    int (*restore)(void *data, craft_uv_read_fn read, void *ctx);
    /* Optional: called on the stream's thread after each step that ran user code (an apply
     * batch and the callbacks of the requests it answered, a run of read answers, ...), before
     * the stream goes on. A binding can gather work per request and finish it here in one go
     * (the Python binding hands every asyncio completion of a batch over at once). */
    void (*step_done)(void *data);
    /* Optional, the runtime's stream only: called on the stream's thread when it starts and
     * just before it ends (a binding attaches the thread to its language runtime here). */
    void (*thread_start)(void *data);
    void (*thread_stop)(void *data);
};

/* Runs the state machine stream of a node whose embedder runs it (fsm_wake): every step that is
 * ready, then returns. Call it on one thread only, after each fsm_wake (and again while it
 * returns 1). Returns 0 when the stream is empty, 1 when steps are still waiting (call again),
 * CRAFT_ESHUTDOWN when the node stopped and this call ran its stop callback: the node no
 * longer exists (never call it again), or CRAFT_EINVAL for a node whose stream the runtime
 * runs. The stream must be run until then: a stopping node waits for it. */
CRAFT_API int craft_uv_fsm_run(struct craft_uv_node *n);

/* Says why a state machine callback is about to fail: call it on the thread the callback runs
 * on, before returning the error. The runtime then reports this reason (log line, events,
 * status, craft_uv_last_error) instead of the bare code, e.g. the exception a binding's user
 * code raised. The text is copied (up to 300 bytes). */
CRAFT_API void craft_uv_fsm_error(const char *reason);

/* ------------------------------------------------------------------------------------------
 * Configuration
 * ---------------------------------------------------------------------------------------- */
enum craft_uv_log_level {
    CRAFT_UV_DEBUG = 0,
    CRAFT_UV_INFO = 1,
    CRAFT_UV_WARN = 2,
    CRAFT_UV_ERROR = 3
};

enum craft_uv_event_type {
    CRAFT_UV_EVENT_ROLE = 1,       /* role or leader changed: role, term, leader */
    CRAFT_UV_EVENT_MEMBERSHIP = 2, /* a configuration entry was applied: index */
    CRAFT_UV_EVENT_SNAPSHOT = 3,   /* a snapshot was taken (installed = false) or installed */
    CRAFT_UV_EVENT_STOPPED = 4,    /* the node stopped on a fatal error: error, message */
    /* Leader: follower `leader` lost entries it had acknowledged (its log went backwards: a
     * cut, wiped or restored data directory); match is what it had acknowledged, index its
     * last index now. The leader repairs it; see docs/core.md for what this weakens. */
    CRAFT_UV_EVENT_FOLLOWER_LOG_LOST = 5,
    /* The state machine's snapshot failed (index, error, message: why). Nothing is lost: the
     * log keeps every entry; it is tried again after a backoff (1 s, doubling to 60 s), and
     * the node keeps serving meanwhile. status.snapshot_failures counts the failures in a
     * row. */
    CRAFT_UV_EVENT_SNAPSHOT_FAILED = 6,
    /* This node was removed from the cluster: server `leader` says its committed configuration
     * (of index `index`) lacks it. status.removed is set; requests keep failing. */
    CRAFT_UV_EVENT_REMOVED = 7,
    /* At start: the bootstrap configuration given (peers) differs from the stored one, which
     * the node keeps; message names each difference (index: the stored one's). */
    CRAFT_UV_EVENT_PEERS_DIFFER = 8,
    /* Leader: follower `leader` fell more than lag_threshold entries behind (index: the
     * leader's last index, match: the follower's; the lag is index - match). Once per
     * episode: CRAFT_UV_EVENT_FOLLOWER_CAUGHT_UP follows when its lag is back within half the
     * threshold, or when the follower leaves the configuration (match 0). A leader that steps
     * down forgets its episodes (the next leader reports its own). */
    CRAFT_UV_EVENT_FOLLOWER_LAGGING = 9,
    CRAFT_UV_EVENT_FOLLOWER_CAUGHT_UP = 10
};

struct craft_uv_event {
    int type;
    int role;
    craft_term term;
    craft_id leader;
    craft_index index;
    bool installed;
    int error;
    const char *message;
    craft_index match; /* CRAFT_UV_EVENT_FOLLOWER_LOG_LOST */
};

/* Resources per source (docs/security.md): what clients, and each source address, may hold of a
 * node. Members of the configuration are never counted as clients nor evicted: peers can always
 * connect. 0 takes the default. */
struct craft_uv_limits {
    unsigned max_pending;        /* connections still in their handshake; default 128. Beyond,
                                    the oldest of the address holding the most is closed */
    unsigned max_clients;        /* client connections (non-members); default 1024, at most half
                                    the process's file descriptor limit */
    unsigned max_clients_per_ip; /* default 128 */
    unsigned client_idle_timeout_ms; /* a client with no request in flight that sends nothing
                                        for this long is closed; default 60000 */
    unsigned max_client_requests;    /* requests in flight per client connection; more are
                                        answered CRAFT_EBUSY; default 256 */
    size_t read_budget; /* bytes of partially received frames, all connections together;
                           default 128 MiB (members take precedence over clients) */
};

struct craft_uv_config {
    craft_id id;
    const char *address;  /* "host:port" to listen on; port 0 picks one */
    const char *data_dir; /* for the default durable store */
    /* Peers of another cluster are refused. 0: derived from the bootstrap configuration when
     * the cluster is created, and kept in the data directory's CLUSTER file (so nodes
     * bootstrapped with different peer maps refuse each other); a node in join mode then has
     * none and accepts any cluster. A peer or client with cluster id 0 is accepted. */
    uint64_t cluster_id;
    /* A new cluster: the initial configuration, this node included, used only when the store
     * is empty. NULL: join mode, the node waits until a leader adds it. */
    const struct craft_configuration *bootstrap;
    unsigned heartbeat_ms;        /* default 50: the tick */
    unsigned election_timeout_ms; /* default 500: random in [t, 2t) */
    bool pre_vote;                /* default true */
    bool check_quorum;            /* default true */
    /* Snapshots: taken when the applied log holds snapshot_entries entries or snapshot_bytes
     * bytes (0 disables either test); a state machine without a snapshot callback is never
     * asked for one (its log then grows without bound). */
    uint64_t snapshot_entries;    /* default 16384 */
    uint64_t snapshot_bytes;      /* default 64 MiB */
    uint64_t snapshot_trailing;   /* default 1024 */
    bool fsync;                   /* default true: acknowledged writes survive a crash */
    /* Default true: a small write while the disk is idle is done on the loop thread itself,
     * after sending what waits, saving the two thread hops of the worker (the lower latency
     * at one request in flight); a write slower than 2 ms sends the next ones to the worker for
     * 2 s, so a slow disk never holds up heartbeats. false: always on the worker. */
    bool write_on_loop;
    /* The durable store's WAL segment size (craft_disk_store_options.segment_size): every
     * segment file is preallocated to it, so it is what a node occupies on disk from the
     * start. 0: the store's default, 64 MiB. Ignored with a store of the caller's. */
    uint64_t segment_size;
    bool forward;                 /* default true: followers forward proposals and reads */
    /* The longest frame body accepted from a peer, and so the largest message this node
     * builds: AppendEntries are split by bytes to fit, and a command that cannot fit alone is
     * refused at submit (craft_uv_max_command). The same on every node of a cluster. Default
     * 64 MiB; at least CRAFT_UV_MAX_FRAME_MIN. */
    uint32_t max_frame;
    struct craft_uv_limits limits; /* zeroed: the defaults */
    /* Who may connect, peers and clients (craft/security.h, docs/security.md). Zeroed:
     * plaintext, which the log names as such. */
    struct craft_security security;
    unsigned default_timeout_ms;  /* requests without their own timeout; default 10000 */
    /* Serve GET /metrics (Prometheus / OpenMetrics text, docs/metrics.md) on this "host:port"
     * from the node's loop; NULL: no HTTP listener (craft_uv_metrics still works). Unlike the
     * Raft port, it is not authenticated: bind it to an address only the monitoring system
     * reaches (127.0.0.1, a management network). */
    const char *metrics_address;
    /* A follower more than this many entries behind the leader raises
     * CRAFT_UV_EVENT_FOLLOWER_LAGGING on the leader; default 1000; 0 disables the event. */
    uint64_t lag_threshold;
    struct craft_uv_fsm fsm;
    /* Who runs the state machine stream. NULL (the default): the runtime, on a thread of its
     * own that it starts with the node and ends when it stops. Otherwise the embedder, on a
     * thread of its choice (the same one each time): fsm_wake(fsm_wake_data) is called (on the
     * loop thread, or the thread calling craft_uv_fsm_run) when the stream gets work while it
     * was idle, and the embedder then calls craft_uv_fsm_run(). Every callback of the node but
     * log lines is then delivered on that thread (see the table at the top): a binding whose
     * language may only run on one thread (Lua) uses this. */
    void (*fsm_wake)(void *data);
    void *fsm_wake_data;
    /* Optional store (e.g. a binding's); the node takes ownership. NULL: the durable store in
     * data_dir. */
    struct craft_store *store;
    /* Log lines. Called on the loop thread, except the durable store's own lines (a torn tail
     * cut, segments removed), which come from the disk thread inside the store call. */
    void (*log)(void *data, int level, const char *line);
    void *log_data;
    int log_level; /* default CRAFT_UV_INFO */
    void (*event)(void *data, const struct craft_uv_event *e);
    void *event_data;
    uint64_t seed; /* 0: derived from the id and the clock */
    const struct craft_allocator *alloc;
};

CRAFT_API void craft_uv_config_init(struct craft_uv_config *c, craft_id id);

/* The smallest max_frame a node accepts (craft_uv_node_new fails with CRAFT_EINVAL below it). */
#define CRAFT_UV_MAX_FRAME_MIN (64u * 1024u)

/* The largest command a node whose peers accept frames of max_frame bytes can replicate: one
 * entry alone in an AppendEntries, with the message's own fields, must fit in one frame.
 * craft_uv_submit refuses a longer proposal at once with CRAFT_ETOOBIG (a leader that accepted
 * it would send a frame every follower refuses, forever). 0: the default max_frame. */
CRAFT_API size_t craft_uv_max_command(uint32_t max_frame);

/* ------------------------------------------------------------------------------------------
 * Lifecycle
 * ---------------------------------------------------------------------------------------- */

/* Opens the store (the data directory is locked), restores the state machine from the latest
 * snapshot, binds the address. If the process leaves SIGPIPE at its default action, it is set to
 * ignored (a peer that goes away must not kill the process). On failure nothing is left open; *errmsg (if given) points to
 * a static or node-owned description valid until the next call. */
CRAFT_API int craft_uv_node_new(uv_loop_t *loop, const struct craft_uv_config *c,
                                struct craft_uv_node **out);
/* A description of the last error of craft_uv_node_new on this thread. */
CRAFT_API const char *craft_uv_last_error(void);
/* Starts ticking and connecting. */
CRAFT_API int craft_uv_node_start(struct craft_uv_node *n);
/* Stops gracefully: pending requests fail with CRAFT_ESHUTDOWN, what is being written is
 * flushed, the state machine finishes the step it is running (queued ones are dropped: a
 * restart applies them again from the log), connections and the store are closed; then cb is
 * called, and the node's memory is freed (with its allocator) when cb returns. */
CRAFT_API void craft_uv_node_stop(struct craft_uv_node *n, void (*cb)(void *data), void *data);
/* The address actually bound. */
CRAFT_API const char *craft_uv_node_address(const struct craft_uv_node *n);
CRAFT_API craft_id craft_uv_node_id(const struct craft_uv_node *n);

/* ------------------------------------------------------------------------------------------
 * Requests
 *
 * A request is owned by the caller and must stay valid and untouched until its callback has
 * run. craft_uv_submit() may be called from any thread; it copies the payload. If it returns
 * an error the callback is never called; otherwise it is called exactly once: on the state
 * machine's stream when the state machine answers it (a proposal applied, a read done), else on
 * the loop thread (with an embedder's stream, always on the stream; see the table at the top).
 * ---------------------------------------------------------------------------------------- */
enum craft_uv_op {
    CRAFT_UV_PROPOSE = 1,  /* commit and apply a command; result: the state machine's */
    CRAFT_UV_READ = 2,     /* linearizable read barrier: the callback runs on the state
                              machine's stream once the local state machine reflects every
                              write committed before the request; no apply runs during it */
    CRAFT_UV_READ_LEASE = 3, /* the same, without the heartbeat round while the leader's
                                lease holds (on the monotonic clock; a stall of the loop longer
                                than the lease voids it), else a barrier */
    CRAFT_UV_ADD = 4,      /* add server id at address as a learner (auto_promote optional) */
    CRAFT_UV_PROMOTE = 5,  /* learner id becomes a voter */
    CRAFT_UV_REMOVE = 6,   /* remove server id */
    CRAFT_UV_TRANSFER = 7, /* hand leadership to id (0: the most up-to-date voter) */
    CRAFT_UV_DEMOTE = 8,   /* voter id becomes a learner */
    /* Take a snapshot of this node's state machine now, whatever the thresholds (answered
     * once it is stored; index: what it covers). CRAFT_EINVAL when the state machine has no
     * snapshot callback; when the latest snapshot covers everything applied already, answered
     * at once with its index. Never forwarded. */
    CRAFT_UV_SNAPSHOT = 9
};

struct craft_uv_result {
    int status;        /* 0, or CRAFT_E*: ENOTLEADER, ETIMEDOUT, ESHUTDOWN, EDROPPED (lost to a
                          leader change, not applied), EAPPLY (the state machine failed the
                          command; data holds its message), ENOCONN (forwarded, outcome
                          unknown), EBUSY, ... */
    craft_index index; /* where the command was applied / the read index */
    const void *data;  /* the state machine's result; valid during the callback */
    size_t size;
    craft_id leader_id;         /* with CRAFT_ENOTLEADER, when known */
    const char *leader_address; /* "" when unknown */
};

struct craft_uv_request {
    int op;
    const void *payload; /* PROPOSE: the command (copied by craft_uv_submit) */
    size_t size;
    craft_id server;     /* ADD, PROMOTE, REMOVE, TRANSFER */
    const char *address; /* ADD (copied) */
    bool auto_promote;   /* ADD */
    unsigned timeout_ms; /* 0: the node's default */
    void (*cb)(struct craft_uv_request *req, const struct craft_uv_result *r);
    void *data; /* for the caller */
    /* Private. */
    void *internal[8];
};

CRAFT_API int craft_uv_submit(struct craft_uv_node *n, struct craft_uv_request *req);

/* ------------------------------------------------------------------------------------------
 * Status (any thread): a consistent copy taken after the node's last step.
 * ---------------------------------------------------------------------------------------- */
#define CRAFT_UV_STATUS_PEERS 32

enum craft_uv_peer_state {
    CRAFT_UV_PEER_UNKNOWN = 0, /* not the leader: it does not track its peers */
    CRAFT_UV_PEER_PROBE = 1,   /* finding where the follower's log matches (one message at a time) */
    CRAFT_UV_PEER_REPLICATE = 2, /* pipelining entries */
    CRAFT_UV_PEER_SNAPSHOT = 3,  /* sending it a snapshot */
    CRAFT_UV_PEER_SELF = 4       /* this node */
};

struct craft_uv_peer_status {
    craft_id id;
    uint8_t role; /* CRAFT_VOTER / CRAFT_LEARNER */
    char address[CRAFT_ADDRESS_MAX];
    craft_index match; /* leader only */
    bool connected;
    /* Leader only (0 elsewhere): the next index to send, how far behind the leader's last
     * index its match is, AppendEntries in flight, the replication state. */
    craft_index next;
    uint64_t lag;
    unsigned inflight;
    uint8_t state; /* enum craft_uv_peer_state */
    /* Milliseconds since a message from it arrived (any role); -1: never. */
    int64_t last_contact_ms;
};

struct craft_uv_status {
    craft_id id;
    int role;
    craft_term term;
    craft_id leader;
    char leader_address[CRAFT_ADDRESS_MAX];
    craft_index commit, applied, first_index, last_index, snapshot_index;
    unsigned n_peers;
    struct craft_uv_peer_status peers[CRAFT_UV_STATUS_PEERS];
    /* Counters. */
    uint64_t msgs_sent, msgs_received, bytes_sent, bytes_received;
    uint64_t entries_appended, entries_applied, fsyncs, elections, snapshots;
    uint64_t bad_frames, refused_handshakes, forwarded;
    bool stopped; /* a fatal error stopped the node (role is then 0: it leads nothing) */
    bool removed; /* a member said this node is no longer in the configuration */
    uint64_t cluster_id; /* sent in every handshake: given, or derived from the bootstrap
                          * configuration and kept in the data directory; 0: none */
    char stop_reason[512];   /* why, when stopped */
    uint64_t snapshot_failures; /* snapshots that failed in a row (0 after one succeeds) */
    char snapshot_error[400];   /* why the last one failed */
    char address[CRAFT_ADDRESS_MAX]; /* the address bound */
    char metrics_address[CRAFT_ADDRESS_MAX]; /* metrics_address as bound; "" without */
    /* Leader: a majority of the voters (itself included) was heard from within an election
     * timeout. Follower: it heard from a leader within an election timeout. Else false. */
    bool has_quorum;
    int64_t leader_contact_ms;  /* follower: ms since the leader was last heard from; -1 */
    craft_index conf_index;     /* the configuration in effect (peers): its entry's index */
    bool conf_committed;        /* ... and whether that entry is committed */
    unsigned voters, learners;
    uint64_t uptime_ms;         /* since craft_uv_node_start */
    craft_term snapshot_term;   /* the latest snapshot, taken or installed (snapshot_index) */
    uint64_t snapshot_size;     /* its bytes */
    /* Write jobs (append and fdatasync together) over the last minute: their count, and the
     * 50th and 99th percentile of their duration, in microseconds. */
    uint64_t fsync_count_1m, fsync_p50_us, fsync_p99_us;
    uint64_t pending_requests;  /* requests waiting in the node's tables (queue depth) */
    uint64_t pending_jobs;      /* disk jobs queued or running */
    /* More counters (docs/metrics.md has them all). */
    uint64_t elections_won, leader_changes, proposals, entries_committed;
    uint64_t snapshots_installed, snapshots_failed, send_dropped, fault_dropped;
    uint64_t connects, disconnects;
};

CRAFT_API int craft_uv_status(struct craft_uv_node *n, struct craft_uv_status *out);

/* The status as a msgpack map with string keys, the payload of a CRAFT_WIRE_STATUS response
 * (docs/wire.md lists the keys; the Python and Lua status tables use the same names). *out is
 * allocated with craft_malloc(NULL, ...). */
CRAFT_API int craft_uv_status_pack(const struct craft_uv_status *s, void **out, size_t *size);

/* ------------------------------------------------------------------------------------------
 * Metrics (any thread): the node's counters, gauges and histograms as Prometheus text
 * (format 0.0.4), or OpenMetrics 1.0 with openmetrics (docs/metrics.md lists every metric).
 * *out is NUL-terminated, allocated with craft_malloc(NULL, ...); *size excludes the NUL.
 * CRAFT_ESHUTDOWN once the node stops.
 * ---------------------------------------------------------------------------------------- */
CRAFT_API int craft_uv_metrics(struct craft_uv_node *n, bool openmetrics, char **out,
                               size_t *size);

/* ------------------------------------------------------------------------------------------
 * Security (any thread): replaces the node's security settings while it runs, to rotate a
 * certificate, a CA or a cluster secret without downtime (docs/security.md gives the steps).
 * The files are read and the keys derived on the calling thread; errors are reported then
 * (CRAFT_EINVAL, with craft_uv_last_error() saying why) and the node keeps its settings.
 * Otherwise the change is applied on the loop's thread: new connections use the new settings
 * at once, established connections whose credentials are no longer accepted are closed (and
 * redialed with the new ones), and a change of mode (plaintext, tls, secret) closes every
 * connection. CRAFT_ESHUTDOWN once the node is stopping.
 * ---------------------------------------------------------------------------------------- */
CRAFT_API int craft_uv_set_security(struct craft_uv_node *n, const struct craft_security *s);

/* ------------------------------------------------------------------------------------------
 * Fault injection (any thread), for tests and fault campaigns: the machines craft is tested on
 * have no tc netem. Every message this node sends to server `to` is dropped with probability
 * drop (0..1) and delayed by a uniform random [delay_min_ms, delay_max_ms] (which reorders);
 * block drops everything sent to `to` (a one-way cut). All zero clears the faults for `to`.
 * ---------------------------------------------------------------------------------------- */
CRAFT_API int craft_uv_set_faults(struct craft_uv_node *n, craft_id to, double drop,
                                  unsigned delay_min_ms, unsigned delay_max_ms, bool block);

#ifdef __cplusplus
}
#endif

#endif
