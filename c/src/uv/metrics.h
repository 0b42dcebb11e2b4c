/* A node's metrics (docs/metrics.md): counters and histograms that the runtime updates as it
 * works, and their rendering as Prometheus / OpenMetrics text (craft_uv_metrics, GET /metrics).
 *
 *   metrics.c       the counters and histograms, the hooks the runtime calls, the text
 *   traffic.c       messages and bytes per peer and message type, and when each peer was last
 *                   heard from (the transport counts into it)
 *   metrics_http.c  the small HTTP/1.1 responder behind metrics_address
 *
 * Threads. Every value has one writer at a time (the loop thread, or the thread running the
 * state machine's apply, or the disk job in progress, which libuv's work queue orders), and is
 * read by any thread: craft_uv_metrics() may run on a caller's thread. So values are C11
 * atomics written with a relaxed load and store (a plain move on the machines we run on, no
 * locked instruction) and read with a relaxed load: a reader sees each value whole, though a
 * histogram's count and sum may be one observation apart, as with any Prometheus client. */
#ifndef CRAFT_UV_METRICS_H
#define CRAFT_UV_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "craft.h"
#include "craft/wire.h"

typedef _Atomic uint64_t craft__counter;

static inline void craft__count(craft__counter *c, uint64_t k)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + k,
                          memory_order_relaxed);
}

static inline void craft__gauge_set(craft__counter *c, uint64_t v)
{
    atomic_store_explicit(c, v, memory_order_relaxed);
}

static inline uint64_t craft__value(craft__counter *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* A latency histogram in microseconds, with the fixed bucket bounds of metrics.c (100 us to
 * 10 s, and +Inf). Buckets are stored per bucket and made cumulative when rendered. */
#define CRAFT__HIST_BUCKETS 17
struct craft__hist {
    craft__counter bucket[CRAFT__HIST_BUCKETS];
    craft__counter count;
    craft__counter sum_us;
};
void craft__hist_observe(struct craft__hist *h, uint64_t us);

/* Message types counted per peer: the seven Raft messages, then Handshake, Request,
 * Response (wire tags 1..7, 64..66). */
#define CRAFT__TRAFFIC_TYPES 10
/* Rows: one per server id heard from or sent to, the clients (id 0) together in one row, and
 * the last row for whatever does not fit ("other"). */
#define CRAFT__TRAFFIC_ROWS 66

struct craft__traffic_row {
    atomic_bool used;
    _Atomic craft_id id;
    craft__counter sent_msgs[CRAFT__TRAFFIC_TYPES], sent_bytes[CRAFT__TRAFFIC_TYPES];
    craft__counter recv_msgs[CRAFT__TRAFFIC_TYPES], recv_bytes[CRAFT__TRAFFIC_TYPES];
    craft__counter last_recv_ms; /* uv_now() of the last message from it; 0: never */
};

struct craft__traffic {
    struct craft__traffic_row rows[CRAFT__TRAFFIC_ROWS];
};

/* traffic.c: the transport's hooks (t may be NULL: not counted). Loop thread. */
void craft__traffic_sent(struct craft__traffic *t, craft_id peer, int type, size_t bytes);
void craft__traffic_received(struct craft__traffic *t, craft_id peer, int type, size_t bytes,
                             uint64_t now_ms);
/* When peer was last heard from (uv_now() ms), 0 if never. */
uint64_t craft__traffic_last_heard(struct craft__traffic *t, craft_id peer);
/* The wire tag of a type index (0 .. CRAFT__TRAFFIC_TYPES - 1), and its name. */
int craft__traffic_type_tag(unsigned k);

/* Samples of the write jobs' duration (append + fdatasync) over the last minute, for the
 * status's p50 and p99. Loop thread. */
#define CRAFT__WINDOW_SAMPLES 2048
struct craft__window {
    uint32_t us[CRAFT__WINDOW_SAMPLES];
    uint64_t at_ms[CRAFT__WINDOW_SAMPLES];
    size_t next, n;
    uint64_t added; /* samples ever added */
};
void craft__window_add(struct craft__window *w, uint64_t now_ms, uint64_t us);
/* p50 and p99 (us) of the samples of the last window_ms; *count of them (0: both 0). */
void craft__window_percentiles(const struct craft__window *w, uint64_t now_ms, uint64_t window_ms,
                               uint64_t *p50, uint64_t *p99, uint64_t *count);

/* Commit latency on the leader: the time from appending an entry to committing it, tracked for
 * the last entry of each appended batch (a ring; the oldest are forgotten when it is full). */
#define CRAFT__PENDING_COMMITS 512
struct craft__commit_clock {
    craft_index index[CRAFT__PENDING_COMMITS];
    uint64_t at_us[CRAFT__PENDING_COMMITS];
    size_t head, n;
};

struct craft__metrics {
    /* Protocol. */
    craft__counter proposals;        /* commands the leader appended (entries of type command) */
    craft__counter entries_committed;
    craft__counter elections_started, elections_won, leader_changes;
    craft__counter membership_changes; /* configuration entries applied */
    /* State machine and storage. */
    craft__counter apply_batches;
    struct craft__hist apply_batch;  /* one call of the state machine's apply */
    struct craft__hist fsync;        /* one write job: append and fdatasync */
    struct craft__hist commit;       /* leader: append to commit */
    craft__counter snapshots_taken, snapshots_installed, snapshots_failed;
    craft__counter snapshot_bytes_written, snapshot_bytes_read;
    craft__counter snapshot_requests; /* operators' "take one now" */
    craft__counter lagging_events;
    struct craft__traffic traffic;
    /* Loop thread only. */
    struct craft__window fsync_window;
    struct craft__commit_clock commit_clock;
    craft_id last_leader;
    int last_role;
};

#endif
