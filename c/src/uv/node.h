/* The libuv node: the protocol core driven by a loop. Files:
 *   node.c      creation from the store, start, stop, status, logging
 *   clock.c     time for the core: ticks from the monotonic clock, missed ticks made up
 *   drive.c     taking the core's updates: writes to disk, messages out, committed entries in
 *   disk.c      the disk queue: one job at a time on libuv's thread pool, group commit
 *   apply.c     the apply queue: committed entries to the state machine in batches, snapshots
 *   requests.c  proposals, reads, membership and transfer requests, forwarding, timeouts
 *   admin.c     operators' requests from the network (status, membership, snapshot now,
 *               metrics), snapshots on request, follower lag events
 *   status.c    the status as a msgpack map (the status request's answer)
 *   metrics.c   counters and histograms (metrics.h), and their Prometheus text
 * Everything runs on the loop's thread except the body of a disk job. */
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
enum { JOB_WRITE = 1, JOB_READ_CHUNK, JOB_TAKE_SNAPSHOT, JOB_RESTORE, JOB_COMPACT };

struct craft__job {
    int kind;
    struct craft__job *next;
    bool started;
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
    /* JOB_TAKE_SNAPSHOT / JOB_RESTORE: the snapshot's metadata (conf owned); size out. */
    struct craft_snapshot_meta meta;
    uint64_t size;
    /* JOB_COMPACT */
    craft_index upto;
    uint64_t took_us; /* JOB_WRITE: how long its store calls took (metrics) */
};

/* ---- the apply queue ---------------------------------------------------------------------- */
enum { ITEM_ENTRY = 1, ITEM_SNAPSHOT, ITEM_RESTORE };

struct craft__item {
    int kind;
    struct craft__item *next;
    struct craft_entry e; /* ITEM_ENTRY, data owned */
    struct craft_snapshot_meta meta; /* ITEM_SNAPSHOT / ITEM_RESTORE, conf owned */
};

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
    char address[CRAFT_ADDRESS_MAX]; /* ADD */
    uint64_t deadline;  /* uv_now() ms */
    /* A forwarded proposal's result from the leader, kept until local apply catches up. */
    void *result;
    size_t result_size;
    int status;
    void *payload; /* the command, when queued before the loop saw it */
    bool payload_inline; /* payload lives in the waiter's own allocation (requests.c) */
    size_t size;
};

struct craft__list {
    struct craft__waiter *head, *tail;
    size_t n;
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

    /* Apply. */
    struct craft__item *items, *items_tail;
    bool fsm_busy;
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

/* apply.c */
int craft__uv_queue_entry(struct craft_uv_node *n, const struct craft_entry *e);
int craft__uv_queue_item(struct craft_uv_node *n, int kind, const struct craft_snapshot_meta *m);
void craft__uv_apply_pump(struct craft_uv_node *n); /* only from craft__uv_drive() */
void craft__uv_items_free(struct craft_uv_node *n);
void craft__uv_snapshot_done(struct craft_uv_node *n, struct craft__job *j);
void craft__uv_snapshot_retry(struct craft_uv_node *n); /* every tick */
void craft__uv_restore_done(struct craft_uv_node *n, struct craft__job *j);

/* requests.c */
void craft__uv_async_cb(uv_async_t *h);
void craft__uv_requests_on_applied(struct craft_uv_node *n, const struct craft_uv_apply *a,
                                   const struct craft_entry *e);
void craft__uv_requests_on_dropped(struct craft_uv_node *n, craft_index from);
void craft__uv_requests_on_read(struct craft_uv_node *n, const struct craft_read_state *r);
void craft__uv_requests_on_role(struct craft_uv_node *n);
void craft__uv_requests_check_applied(struct craft_uv_node *n);
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
