/* The libuv node: the protocol core driven by a loop. Files:
 *   node.c      creation from the store, start, stop, status, logging
 *   clock.c     time for the core: ticks from the monotonic clock, missed ticks made up
 *   drive.c     taking the core's updates: writes to disk, messages out, committed entries in
 *   disk.c      the disk queue: one job at a time on libuv's thread pool, group commit
 *   apply.c     the state machine stream, loop side: committed entries, snapshot points and
 *               answers queued in order, and what comes back from the stream
 *   fsm.c       the state machine stream where it runs: the runtime's thread, or the embedder's
 *   requests.c  proposals, reads, membership and transfer requests, forwarding, timeouts
 *   admin.c     operators' requests from the network (status, membership, snapshot now,
 *               metrics), snapshots on request, follower lag events
 *   status.c    the status as a msgpack map (the status request's answer)
 *   metrics.c   counters and histograms (metrics.h), and their Prometheus text
 * Everything runs on the loop's thread except the body of a disk job and the stream (fsm.c). */
#ifndef CRAFT_UV_NODE_H
#define CRAFT_UV_NODE_H

#include <uv.h>

#include "craft.h"
#include "craft/uv.h"
#include "craft/wire.h"
#include "storage/driver_contract.h"
#include "uv/metrics.h"
#include "uv/transport.h"

struct craft__metrics_http;

/* What a message needs besides its entries' payloads, for fitting messages into max_frame
 * (docs/wire.md): the fields of any message, at most 128 bytes as msgpack (an AppendEntries
 * takes 71: the array header, version and type, from, to, term, prev index and term, commit,
 * ctx, the entries' array header); and each entry's own fields, at most 16 (array header, term,
 * type, the bin header of its data). */
#define CRAFT__UV_FRAME_RESERVE 128u
#define CRAFT__UV_ENTRY_RESERVE 16u

/* ---- disk jobs ---------------------------------------------------------------------------- */
enum { JOB_WRITE = 1, JOB_READ_CHUNK, JOB_STORE_SNAPSHOT, JOB_RESTORE_READY, JOB_COMPACT };

struct craft__job {
    int kind;
    struct craft__job *next;
    bool started;
    bool on_pool; /* a write the loop could not take (the store was busy): the pool's */
    int rc;
    char err[400];
    /* JOB_WRITE: everything of one or more updates, carried out in the driver contract's
     * order (storage/driver_contract.h: hard state, snapshot chunk, entries; a chunk is never
     * merged with a later update's); then craft_persisted(seq). */
    uint64_t seq;
    bool has_hs;
    struct craft_hard_state hs;
    /* The entries, their payloads packed in one buffer: while the job waits, updates merged
     * into it append to the buffer (which may move), so each entry records its payload's
     * offset and the pointers are set when the job starts (disk.c, job_seal). */
    struct craft_entry *entries;
    size_t *offsets;
    size_t n_entries, cap_entries;
    unsigned char *payload;
    size_t payload_len, payload_cap;
    bool has_chunk;
    bool discard_log;
    struct craft_install_snapshot chunk; /* data and conf owned */
    /* JOB_READ_CHUNK: the message to fill and send (meta.conf owned, data allocated). */
    struct craft_message msg;
    /* JOB_STORE_SNAPSHOT: a snapshot the state machine wrote into memory (an embedder's stream,
     * fsm.c), stored with this metadata (conf owned); obsolete when the store holds a newer
     * one. JOB_RESTORE_READY: for the restore step `step_id`, after the write that installed
     * the snapshot; with an embedder's stream it reads the snapshot into data and its index
     * into meta. */
    struct craft_snapshot_meta meta;
    uint64_t size;
    char *data;
    size_t data_len;
    bool obsolete;
    uint64_t step_id;
    /* JOB_COMPACT */
    craft_index upto;
    uint64_t took_us; /* JOB_WRITE: how long its store calls took (metrics) */
};

/* ---- the state machine stream ---------------------------------------------------------------
 * Everything that calls the user's state machine runs in one ordered stream of steps, off the
 * loop (docs/runtime.md, "The state machine stream"): apply batches with the answers to the
 * proposals they applied, snapshots, restores, answers to reads, and, with an embedder's
 * stream, every other answer and event. The loop queues steps (apply.c); the stream's thread
 * runs them (fsm.c) and hands them back to the loop, one wake-up per run. */
enum { STEP_APPLY = 1, STEP_SNAPSHOT, STEP_RESTORE, STEP_ANSWER, STEP_EVENT, STEP_STOP };

/* The kinds of craft__uv_queue_item. */
enum { ITEM_SNAPSHOT = STEP_SNAPSHOT, ITEM_RESTORE = STEP_RESTORE };

struct craft__fsm_entry {
    craft_index index;
    craft_term term;
    int type;
    size_t off, size;   /* the payload, at off in the step's arena */
    void *result;       /* what apply gave (craft_malloc(NULL, ...)) */
    size_t result_size;
    int error;
    bool skipped;       /* at or below a snapshot the state machine was restored from */
};

struct craft__waiter;

struct craft__list {
    struct craft__waiter *head, *tail;
    size_t n;
};

struct craft__step {
    int kind;
    struct craft__step *next;
    /* STEP_APPLY: committed entries in log order (contiguous indexes), at most CRAFT__FSM_BATCH */
    struct craft__fsm_entry *entries;
    size_t n_entries, cap_entries, n_commands;
    char *arena;
    size_t arena_len, arena_cap;
    /* STEP_APPLY: the local proposals of these entries (w->status 0: answered with its entry's
     * result). STEP_ANSWER: requests answered with their own status, index and result. */
    struct craft__list answers;
    /* STEP_SNAPSHOT / STEP_RESTORE: the metadata (conf owned). A restore waits, not ready, until
     * the write that installed its snapshot is done (job JOB_RESTORE_READY with this id). */
    struct craft_snapshot_meta meta;
    uint64_t id;
    bool ready;
    uint64_t size;      /* SNAPSHOT: bytes written */
    bool obsolete;      /* SNAPSHOT: the store held a newer snapshot at commit: not stored */
    char *data;         /* embedder's stream: SNAPSHOT written into memory, RESTORE read in */
    size_t data_len, data_cap;
    /* STEP_EVENT: the event and its message (owned) */
    struct craft_uv_event event;
    char *message;
    /* Outcome, from the stream's thread. */
    int rc;
    char err[400];
};

/* Commands per call of the state machine's apply. */
#define CRAFT__FSM_BATCH 1024

/* ---- requests ----------------------------------------------------------------------------- */
/* Where a waiting request came from: a local caller (req) or a peer's forwarded request on a
 * connection (conn, remote_id). */
struct craft__waiter {
    struct craft__waiter *next, *prev;
    int op;
    struct craft_uv_request *req; /* local caller, or NULL */
    struct craft__conn *conn;     /* remote caller, or NULL */
    uint64_t remote_id;
    craft_index index;  /* proposal/config entry index, or read index */
    craft_term term;    /* proposal term */
    uint64_t read_id;   /* core read id, or forwarded request id */
    craft_id target;    /* forwarded: the leader it was sent to */
    /* ADD: the server's address. Answered on the stream (an answer with CRAFT_ENOTLEADER):
     * the leader's address, and leader_id. */
    char address[CRAFT_ADDRESS_MAX];
    craft_id leader_id;
    uint64_t deadline;  /* uv_now() ms */
    /* A forwarded proposal's result from the leader, kept until local apply catches up; an
     * answer's result, when it is answered on the stream (owned). */
    void *result;
    size_t result_size;
    int status;
    void *payload; /* the command, when queued before the loop saw it */
    bool payload_inline; /* payload lives in the waiter's own allocation (requests.c) */
    size_t size;
};

struct craft_uv_node {
    uv_loop_t *loop;
    struct craft_uv_config cfg;
    char address[CRAFT_ADDRESS_MAX];
    char *data_dir;
    const struct craft_allocator *alloc;
    craft_id id;
    struct craft_node *core;
    struct craft_store *store;
    struct craft__transport *transport;
    craft_id dialed[64]; /* the peers handed to the transport (to drop those that leave) */
    unsigned n_dialed;
    craft_index synced_conf; /* the configuration index the transport's peers follow */
    uv_timer_t tick;        /* one-shot, armed for the next tick the clock says is due */
    uint64_t clock_origin;  /* clock.c: ns when ticking started */
    uint64_t ticks_fed;     /* ticks given to the core (or skipped in a long stall) since */
    bool clock_started;
    unsigned election_ticks;
    uv_async_t async;
    uv_prepare_t prepare;   /* refreshes the status copy before the loop blocks */
    uv_idle_t write_idle;   /* runs a write on the loop in the next turn (disk.c) */
    bool status_dirty;
    uv_mutex_t lock;        /* the submit queue and the status copy */
    uv_thread_t loop_thread;
    unsigned open_handles;  /* tick, async, prepare: closed asynchronously at stop */

    /* Cross-thread submissions (under lock), linked through req->internal[0]. */
    struct craft_uv_request *sub_head, *sub_tail;
    /* Fault settings waiting for the loop thread (under lock). */
    struct craft__fault_setting {
        craft_id to;
        double drop;
        unsigned delay_min_ms, delay_max_ms;
        bool block;
    } faults[16];
    unsigned n_faults;

    /* Disk. */
    struct craft__job *jobs, *jobs_tail; /* FIFO; the head runs when started */
    struct craft__job *spare_job; /* a finished write job kept for the next (disk.c) */
    uv_work_t work;
    bool job_running;
    struct craft__snap_rx rx; /* snapshot being received (disk thread only) */

    /* Driving (drive.c): a call is running; a callback asked it to go round once more; the
     * read results of the update being carried out, copied out of the core. */
    bool driving, drive_again;
    struct craft_read_state *read_out;
    size_t cap_read_out;

    /* The state machine stream. Under fsm_lock: the steps to run, those run (for the loop),
     * whether a run is executing, halted (a step failed: no more state machine work), quit
     * (the runtime's thread ends), async_closed (fsm_async may no longer be sent). */
    uv_mutex_t fsm_lock;
    uv_cond_t fsm_cond; /* the runtime's thread waits on it for steps */
    struct craft__step *fsm_head, *fsm_tail, *fsm_done, *fsm_done_tail;
    bool fsm_busy, fsm_halted, fsm_quit, fsm_async_closed;
    uv_async_t fsm_async; /* steps run: their outcome reaches the loop */
    bool fsm_embedded;    /* cfg.fsm_wake: the embedder runs the stream (craft_uv_fsm_run) */
    bool fsm_has_thread;
    uv_thread_t fsm_thread;
    /* Only the thread running the stream: what the state machine reflects, the batch. */
    craft_index fsm_applied;
    struct craft_uv_apply *fsm_cmds;
    struct craft__fsm_entry **fsm_map;
    /* Loop only: steps not yet handed to the stream (a restore not ready holds back what
     * follows it), the last index handed over, spare steps, restore ids. */
    struct craft__step *pending, *pending_tail, *spare;
    unsigned n_spare;
    craft_index queued;
    uint64_t next_step_id;
    /* Serializes every store call of a running node (the storage interface allows no concurrent
     * calls): disk jobs, and the stream's snapshots and restores. */
    uv_mutex_t store_lock;
    craft_index applied;
    craft_index snapshot_index; /* of the latest snapshot taken or installed */
    /* Snapshots that failed in a row, the last reason, and when to try again: until then the
     * core's request stays unanswered (parked), so it asks for no other (apply.c). */
    unsigned snap_failures;
    char snap_error[400];
    uint64_t snap_retry_at; /* uv_now() ms */
    bool snap_parked;

    /* Requests. */
    struct craft__list proposals; /* by index: local and remote proposals, config changes */
    struct craft__list reads;     /* waiting for the core's read index (by read_id) */
    struct craft__list apply_wait; /* waiting for applied >= index (reads, forwarded) */
    struct craft__list forwarded;  /* sent to the leader, waiting for its response */
    struct craft__list transfers;
    struct craft__list parked;     /* to forward once a leader is known (elections) */
    struct craft__list snapshot_waits; /* CRAFT_UV_SNAPSHOT: until a snapshot covers index */
    uint64_t next_read_id;
    uint64_t next_forward_id;

    /* State. */
    int role;
    craft_term term;
    craft_id leader;
    bool started;
    bool stopping;
    bool closing; /* the transport and handles are being closed */
    bool removed; /* a member said this node is not in its committed configuration */
    uint64_t cluster_id; /* in every handshake (identity.c); 0: none, any cluster */
    bool dead; /* a fatal error: nothing more is processed */
    int dead_rc;
    char dead_msg[512]; /* why, given to every request the node fails from then on */
    void (*stop_cb)(void *data);
    void *stop_data;

    struct craft_uv_status status; /* the copy for craft_uv_status (under lock) */
    uint64_t entries_appended, entries_applied, fsyncs, elections, snapshots, forwarded_count;
    /* Writes done on the loop (disk.c), and until when the loop leaves them to the worker
     * after a slow one (uv_now ms). */
    uint64_t loop_writes, loop_writes_off_until;
    uint64_t loop_writes_busy; /* small writes sent to the pool: the stream held the store */

    /* Operations (admin.c, metrics.c). The user's state machine, called through the timing
     * wrappers that cfg.fsm holds; when the node started (uv_now ms); the followers reported
     * lagging (leader); the metrics and their HTTP listener. */
    struct craft_uv_fsm user_fsm;
    uint64_t started_ms;
    craft_id lagging[CRAFT_UV_STATUS_PEERS];
    unsigned n_lagging;
    uint64_t percentiles_at_ms; /* when the status's fsync percentiles were last computed */
    uint64_t percentiles_added; /* ... and how many samples had been added then */
    struct craft__metrics_http *http;
    struct craft__metrics metrics;
};

/* node.c */
/* Sets what craft_uv_last_error() says on this thread. */
void craft__uv_set_last_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The reason a state machine callback gave with craft_uv_fsm_error (or rc's text), copied into
 * buf; clears it. On the thread the callback ran on. */
const char *craft__uv_take_fsm_error(int rc, char *buf, size_t cap);
void craft__uv_log(struct craft_uv_node *n, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void craft__uv_fatal(struct craft_uv_node *n, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void craft__uv_event(struct craft_uv_node *n, const struct craft_uv_event *e);
void craft__uv_publish_status(struct craft_uv_node *n);
void craft__uv_maybe_publish_status(struct craft_uv_node *n);
void craft__uv_maybe_finish_stop(struct craft_uv_node *n);
/* identity.c: the cluster id (given, kept in the data directory, or derived from the bootstrap
 * configuration; 0: none), and the warning about a peers map that differs from the stored
 * configuration (at start). */
uint64_t craft__uv_cluster_id_of(const struct craft_configuration *conf);
int craft__uv_cluster_id(const struct craft_uv_config *c, const char *data_dir, uint64_t *out,
                         char *err, size_t cap);
void craft__uv_check_peers(struct craft_uv_node *n);
/* Server `by` says this node is not in its committed configuration (of index `index`). */
void craft__uv_removed(struct craft_uv_node *n, craft_id by, craft_index index);
/* The node's listening address (the transport's, or the configured one before it exists). */
const char *craft__uv_address(const struct craft_uv_node *n);

/* clock.c: ticks from the monotonic clock; craft__uv_clock_feed() before every input. */
void craft__uv_clock_start(struct craft_uv_node *n);
int craft__uv_clock_feed(struct craft_uv_node *n);

/* drive.c. craft__uv_drive() after every input; it does not nest (see drive.c). */
void craft__uv_drive(struct craft_uv_node *n);
void craft__uv_recv(void *data, struct craft__conn *conn, craft_id from,
                    const struct craft_wire_message *m);

/* disk.c */
void craft__uv_job_push(struct craft_uv_node *n, struct craft__job *j);
struct craft__job *craft__uv_job_tail_write(struct craft_uv_node *n);
void craft__uv_job_free(struct craft_uv_node *n, struct craft__job *j);
void craft__uv_disk_kick(struct craft_uv_node *n);
void craft__uv_loop_write_cb(uv_idle_t *h);

/* apply.c: the stream, loop side. */
int craft__uv_queue_entry(struct craft_uv_node *n, const struct craft_entry *e);
int craft__uv_queue_item(struct craft_uv_node *n, int kind, const struct craft_snapshot_meta *m);
void craft__uv_apply_pump(struct craft_uv_node *n); /* hands what is ready to the stream */
/* A request answered on the stream (a read, a forwarded proposal; with an embedder's stream,
 * every answer): w's status, index and result are set. */
void craft__uv_queue_answer(struct craft_uv_node *n, struct craft__waiter *w);
/* With an embedder's stream: an event, delivered on it (the message is copied). */
void craft__uv_queue_event(struct craft_uv_node *n, const struct craft_uv_event *e);
/* Takes the steps not yet run out of the stream (stop, fatal error): their requests fail with
 * status. With an embedder's stream, answers and events stay (they are delivered). */
void craft__uv_fsm_cancel(struct craft_uv_node *n, int status);
bool craft__uv_fsm_idle(struct craft_uv_node *n); /* nothing runs, nothing waits */
void craft__uv_fsm_async_cb(uv_async_t *h);
void craft__uv_fsm_restore_ready(struct craft_uv_node *n, struct craft__job *j);
void craft__uv_snapshot_done(struct craft_uv_node *n, int rc, const char *err,
                             craft_index index, uint64_t size, bool obsolete);
void craft__uv_snapshot_retry(struct craft_uv_node *n); /* every tick */
void craft__uv_step_free(struct craft_uv_node *n, struct craft__step *s);
void craft__uv_steps_free(struct craft_uv_node *n, struct craft__step *s);

/* fsm.c: the stream where it runs. */
int craft__uv_fsm_start(struct craft_uv_node *n);
void craft__uv_fsm_wake(struct craft_uv_node *n, bool was_empty);
void craft__uv_fsm_join(struct craft_uv_node *n);
/* With an embedder's stream: the last step, which calls the stop callback and frees n. */
void craft__uv_fsm_push_stop(struct craft_uv_node *n);
void craft__uv_node_free_memory(struct craft_uv_node *n); /* node.c */

/* requests.c */
void craft__list_push(struct craft__list *l, struct craft__waiter *w);
void craft__list_remove(struct craft__list *l, struct craft__waiter *w);
void craft__uv_waiter_free(struct craft_uv_node *n, struct craft__waiter *w);
/* Answers every request of l with status (emptying l). */
void craft__uv_requests_fail_list(struct craft_uv_node *n, struct craft__list *l, int status);
void craft__uv_async_cb(uv_async_t *h);
/* A run of applied entries came back from the stream: proposals answered on the loop (from
 * peers, membership changes) get their answers. */
void craft__uv_requests_on_applied(struct craft_uv_node *n, const struct craft__step *s);
/* Before an apply step enters the stream: the local proposals of its entries go with it. */
void craft__uv_requests_take_proposals(struct craft_uv_node *n, struct craft__step *s);
void craft__uv_requests_on_dropped(struct craft_uv_node *n, craft_index from);
void craft__uv_requests_on_read(struct craft_uv_node *n, const struct craft_read_state *r);
void craft__uv_requests_on_role(struct craft_uv_node *n);
/* Reads (and forwarded proposals) whose index the stream has been handed: answered on it. */
void craft__uv_requests_check_applied(struct craft_uv_node *n);
/* A request answered on the stream (fsm.c, on the stream's thread). */
void craft__uv_answer_on_stream(struct craft__waiter *w, int status, const void *data,
                                size_t size);
void craft__uv_requests_tick(struct craft_uv_node *n);
void craft__uv_requests_fail_all(struct craft_uv_node *n, int status);
void craft__uv_on_request(struct craft_uv_node *n, struct craft__conn *conn,
                          const struct craft_wire_request *rq);
void craft__uv_on_response(struct craft_uv_node *n, const struct craft_wire_response *rs);
void craft__uv_on_conn_closed(void *data, struct craft__conn *conn);
void craft__uv_on_peer_state(void *data, craft_id id, bool connected);
/* For admin.c: carry out a waiter built from the network (as craft_uv_submit does), and
 * answer one (its callback or its connection) and free it. */
void craft__uv_request_process(struct craft_uv_node *n, struct craft__waiter *w);
void craft__uv_request_complete(struct craft_uv_node *n, struct craft__waiter *w, int status,
                                craft_index index, const void *data, size_t size);

/* admin.c */
/* An operator's request (CRAFT_WIRE_STATUS .. CRAFT_WIRE_METRICS) from a connection. */
void craft__uv_admin_request(struct craft_uv_node *n, struct craft__conn *conn,
                             const struct craft_wire_request *rq);
/* CRAFT_UV_SNAPSHOT, local or from the network: asks the core, waits in snapshot_waits. */
void craft__uv_admin_snapshot(struct craft_uv_node *n, struct craft__waiter *w);
/* Every event goes through here first: metrics, snapshot waiters. */
void craft__uv_admin_event(struct craft_uv_node *n, const struct craft_uv_event *e);
/* Every tick: lagging followers. */
void craft__uv_admin_tick(struct craft_uv_node *n);

/* metrics.c */
void craft__uv_metrics_init(struct craft_uv_node *n); /* wraps cfg.fsm with the timers */
/* After craft_take_update, before any callback: proposals, commits, commit latency. */
void craft__uv_metrics_update(struct craft_uv_node *n, const struct craft_update *u);
/* A write job finished: how long its store calls took. */
void craft__uv_metrics_write(struct craft_uv_node *n, const struct craft__job *j);
/* The text, for the status s (a copy of n->status), appended to b (NUL-terminated). */
int craft__uv_metrics_render(struct craft_uv_node *n, const struct craft_uv_status *s,
                             bool openmetrics, struct craft_wire_buf *b);
/* status.c */
int craft__uv_status_encode(const struct craft_uv_status *s, struct craft_wire_buf *b);
/* "probe", "replicate", "snapshot", "self", or "" (enum craft_uv_peer_state). */
const char *craft__uv_peer_state_name(uint8_t state);

/* metrics_http.c: GET /metrics on address, served from the node's loop. */
int craft__metrics_http_open(struct craft_uv_node *n, const char *address,
                             struct craft__metrics_http **out, char *err, size_t cap);
const char *craft__metrics_http_address(const struct craft__metrics_http *h);
/* Closes the listener and every connection; cb runs once all their handles are closed. */
void craft__metrics_http_close(struct craft__metrics_http *h, void (*cb)(void *data),
                               void *data);

#endif
