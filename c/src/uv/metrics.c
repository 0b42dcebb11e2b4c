/* The node's metrics (metrics.h, docs/metrics.md): the hooks that count, the timing wrappers
 * around the state machine, and the Prometheus / OpenMetrics text.
 *
 * Where each number comes from:
 *   - the core's updates (craft__uv_metrics_update, called by drive.c before any callback):
 *     commands the leader appended, entries committed, and the commit latency;
 *   - events (craft__uv_admin_event): elections, leader changes, membership, snapshots;
 *   - the disk queue (craft__uv_metrics_write): how long each write job took;
 *   - the state machine, through the wrappers cfg.fsm holds (craft__uv_metrics_init): how long
 *     each apply batch took, and the bytes of snapshots written and read (on the state machine
 *     stream's thread: those counters have that one writer);
 *   - the transport (traffic.c): messages and bytes per peer and type;
 *   - the status copy (node.c): indexes, roles, queue depths, the transport's counters. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uv/node.h"

/* ---- histograms ------------------------------------------------------------------------------ */

/* Bucket upper bounds in microseconds; the last bucket is +Inf. Chosen around what a disk
 * (fdatasync: 0.3 ms to 10 ms), a state machine batch and a commit round take. */
static const uint64_t bounds_us[CRAFT__HIST_BUCKETS - 1] = {
    100,    250,    500,     1000,    2500,    5000,    10000,   25000,
    50000,  100000, 250000,  500000,  1000000, 2500000, 5000000, 10000000};

void craft__hist_observe(struct craft__hist *h, uint64_t us)
{
    unsigned k = 0;
    while (k < CRAFT__HIST_BUCKETS - 1 && us > bounds_us[k]) {
        k++;
    }
    craft__count(&h->bucket[k], 1);
    craft__count(&h->count, 1);
    craft__count(&h->sum_us, us);
}

/* ---- the last minute of write jobs ------------------------------------------------------------- */

void craft__window_add(struct craft__window *w, uint64_t now_ms, uint64_t us)
{
    w->us[w->next] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    w->at_ms[w->next] = now_ms;
    w->next = (w->next + 1) % CRAFT__WINDOW_SAMPLES;
    w->added++;
    if (w->n < CRAFT__WINDOW_SAMPLES) {
        w->n++;
    }
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

void craft__window_percentiles(const struct craft__window *w, uint64_t now_ms, uint64_t window_ms,
                               uint64_t *p50, uint64_t *p99, uint64_t *count)
{
    uint32_t recent[CRAFT__WINDOW_SAMPLES];
    size_t m = 0;
    for (size_t i = 0; i < w->n; i++) {
        if (w->at_ms[i] + window_ms >= now_ms) {
            recent[m++] = w->us[i];
        }
    }
    *p50 = *p99 = 0;
    *count = m;
    if (m == 0) {
        return;
    }
    qsort(recent, m, sizeof recent[0], cmp_u32);
    /* Nearest rank: the smallest sample with at least p% of the samples at or below it. */
    *p50 = recent[(m * 50 + 99) / 100 - 1];
    *p99 = recent[(m * 99 + 99) / 100 - 1];
}

/* ---- hooks ---------------------------------------------------------------------------------- */

static uint64_t now_us(void)
{
    return uv_hrtime() / 1000;
}

void craft__uv_metrics_update(struct craft_uv_node *n, const struct craft_update *u)
{
    struct craft__metrics *m = &n->metrics;
    struct craft__commit_clock *c = &m->commit_clock;
    bool leader = craft_node_role(n->core) == CRAFT_LEADER;
    if (u->role_changed) {
        c->n = 0; /* entries of another term: the next leader commits them, not us */
    }
    if (leader && u->n_entries > 0) {
        uint64_t commands = 0;
        for (size_t k = 0; k < u->n_entries; k++) {
            commands += u->entries[k].type == CRAFT_ENTRY_COMMAND;
        }
        craft__count(&m->proposals, commands);
        /* The clock starts when the leader hands the batch to its disk and its followers. */
        if (c->n == CRAFT__PENDING_COMMITS) {
            c->head = (c->head + 1) % CRAFT__PENDING_COMMITS; /* forget the oldest */
            c->n--;
        }
        size_t at = (c->head + c->n) % CRAFT__PENDING_COMMITS;
        c->index[at] = u->entries[u->n_entries - 1].index;
        c->at_us[at] = now_us();
        c->n++;
    }
    if (u->n_committed > 0) {
        craft__count(&m->entries_committed, u->n_committed);
        craft_index commit = u->committed[u->n_committed - 1].index;
        uint64_t now = c->n > 0 ? now_us() : 0;
        while (c->n > 0 && c->index[c->head] <= commit) {
            craft__hist_observe(&m->commit, now - c->at_us[c->head]);
            c->head = (c->head + 1) % CRAFT__PENDING_COMMITS;
            c->n--;
        }
    }
}

void craft__uv_metrics_write(struct craft_uv_node *n, const struct craft__job *j)
{
    if (j->n_entries == 0 && !j->has_hs && !j->has_chunk) {
        return;
    }
    craft__hist_observe(&n->metrics.fsync, j->took_us);
    craft__window_add(&n->metrics.fsync_window, uv_now(n->loop), j->took_us);
}

/* ---- the state machine, timed ------------------------------------------------------------- */

static int timed_apply(void *data, struct craft_uv_apply *cmds, size_t count)
{
    struct craft_uv_node *n = data;
    uint64_t t0 = now_us();
    int rc = n->user_fsm.apply(n->user_fsm.data, cmds, count);
    craft__hist_observe(&n->metrics.apply_batch, now_us() - t0);
    return rc;
}

struct counted_write {
    craft_uv_write_fn write;
    void *ctx;
    uint64_t bytes;
};

static int count_write(void *ctx, const void *buf, size_t len)
{
    struct counted_write *w = ctx;
    int rc = w->write(w->ctx, buf, len);
    if (rc == 0) {
        w->bytes += len;
    }
    return rc;
}

static int timed_snapshot(void *data, craft_uv_write_fn write, void *ctx)
{
    struct craft_uv_node *n = data;
    struct counted_write w = {write, ctx, 0};
    int rc = n->user_fsm.snapshot(n->user_fsm.data, count_write, &w);
    craft__count(&n->metrics.snapshot_bytes_written, w.bytes);
    return rc;
}

struct counted_read {
    craft_uv_read_fn read;
    void *ctx;
    uint64_t bytes;
};

static int count_read(void *ctx, void *buf, size_t cap, size_t *got)
{
    struct counted_read *r = ctx;
    int rc = r->read(r->ctx, buf, cap, got);
    if (rc == 0) {
        r->bytes += *got;
    }
    return rc;
}

static int timed_restore(void *data, craft_uv_read_fn read, void *ctx)
{
    struct craft_uv_node *n = data;
    struct counted_read r = {read, ctx, 0};
    int rc = n->user_fsm.restore(n->user_fsm.data, count_read, &r);
    craft__count(&n->metrics.snapshot_bytes_read, r.bytes);
    return rc;
}

/* The stream's other hooks reach the user's callbacks with the user's data. */
static void forward_step_done(void *data)
{
    struct craft_uv_node *n = data;
    n->user_fsm.step_done(n->user_fsm.data);
}

static void forward_thread_start(void *data)
{
    struct craft_uv_node *n = data;
    n->user_fsm.thread_start(n->user_fsm.data);
}

static void forward_thread_stop(void *data)
{
    struct craft_uv_node *n = data;
    n->user_fsm.thread_stop(n->user_fsm.data);
}

void craft__uv_metrics_init(struct craft_uv_node *n)
{
    /* Callbacks the user left out stay NULL: the runtime asks for no snapshot from a state
     * machine without one. */
    n->user_fsm = n->cfg.fsm;
    n->cfg.fsm.data = n;
    n->cfg.fsm.apply = n->user_fsm.apply != NULL ? timed_apply : NULL;
    n->cfg.fsm.snapshot = n->user_fsm.snapshot != NULL ? timed_snapshot : NULL;
    n->cfg.fsm.restore = n->user_fsm.restore != NULL ? timed_restore : NULL;
    n->cfg.fsm.step_done = n->user_fsm.step_done != NULL ? forward_step_done : NULL;
    n->cfg.fsm.thread_start = n->user_fsm.thread_start != NULL ? forward_thread_start : NULL;
    n->cfg.fsm.thread_stop = n->user_fsm.thread_stop != NULL ? forward_thread_stop : NULL;
}

/* ---- the text ------------------------------------------------------------------------------- */

struct out {
    struct craft_wire_buf *b;
    bool om; /* OpenMetrics rather than Prometheus 0.0.4 */
    int rc;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
    if (o->rc != 0) {
        return;
    }
    for (size_t want = 256;;) {
        int rc = craft_wire_buf_reserve(o->b, want);
        if (rc != 0) {
            o->rc = rc;
            return;
        }
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf((char *)o->b->base + o->b->len, o->b->cap - o->b->len, fmt, ap);
        va_end(ap);
        if (k < 0) {
            o->rc = CRAFT_EINVAL;
            return;
        }
        if ((size_t)k < o->b->cap - o->b->len) {
            o->b->len += (size_t)k;
            return;
        }
        want = (size_t)k + 1;
    }
}

enum kind { COUNTER, GAUGE, HISTOGRAM };

/* # HELP and # TYPE of a family. A counter's samples end in _total; in OpenMetrics the
 * family's name is without it. */
static void family(struct out *o, const char *name, enum kind k, const char *help)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    char fam[128];
    snprintf(fam, sizeof fam, "%s%s", name, k == COUNTER && !o->om ? "_total" : "");
    put(o, "# HELP %s %s\n# TYPE %s %s\n", fam, help, fam, types[k]);
}

static void counter(struct out *o, const char *name, const char *help, uint64_t v)
{
    family(o, name, COUNTER, help);
    put(o, "%s_total %llu\n", name, (unsigned long long)v);
}

static void gauge(struct out *o, const char *name, const char *help, double v)
{
    family(o, name, GAUGE, help);
    put(o, "%s %.17g\n", name, v);
}

static void histogram(struct out *o, const char *name, const char *help, struct craft__hist *h)
{
    family(o, name, HISTOGRAM, help);
    uint64_t cumulative = 0;
    for (unsigned k = 0; k < CRAFT__HIST_BUCKETS; k++) {
        cumulative += craft__value(&h->bucket[k]);
        if (k < CRAFT__HIST_BUCKETS - 1) {
            put(o, "%s_bucket{le=\"%g\"} %llu\n", name, (double)bounds_us[k] / 1e6,
                (unsigned long long)cumulative);
        } else {
            put(o, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cumulative);
        }
    }
    /* The count is the +Inf bucket, read once, so that the two always agree. */
    put(o, "%s_sum %.6f\n%s_count %llu\n", name, (double)craft__value(&h->sum_us) / 1e6, name,
        (unsigned long long)cumulative);
}

/* A label value as the text formats want it: backslash, quote and newline escaped. */
static void label_value(char *out, size_t cap, const char *s)
{
    size_t k = 0;
    for (; *s != '\0' && k + 3 < cap; s++) {
        if (*s == '\\' || *s == '"') {
            out[k++] = '\\';
            out[k++] = *s;
        } else if (*s == '\n') {
            out[k++] = '\\';
            out[k++] = 'n';
        } else {
            out[k++] = *s;
        }
    }
    out[k] = '\0';
}

static const char *type_label(int tag)
{
    switch (tag) {
    case 64:
        return "Handshake";
    case 65:
        return "Request";
    case 66:
        return "Response";
    default:
        return craft_message_type_name(tag);
    }
}

static void peer_label(char *out, size_t cap, craft_id id)
{
    if (id == 0) {
        snprintf(out, cap, "client");
    } else if (id == UINT64_MAX) {
        snprintf(out, cap, "other");
    } else {
        snprintf(out, cap, "%llu", (unsigned long long)id);
    }
}

/* One family with a sample per peer row and message type (those that saw any message). */
static void traffic(struct out *o, struct craft__traffic *t, const char *name, const char *help,
                    size_t offset)
{
    family(o, name, COUNTER, help);
    for (unsigned i = 0; i < CRAFT__TRAFFIC_ROWS; i++) {
        struct craft__traffic_row *r = &t->rows[i];
        if (!atomic_load_explicit(&r->used, memory_order_acquire)) {
            continue;
        }
        char peer[32];
        peer_label(peer, sizeof peer, atomic_load_explicit(&r->id, memory_order_relaxed));
        craft__counter *column = (craft__counter *)((char *)r + offset);
        for (unsigned k = 0; k < CRAFT__TRAFFIC_TYPES; k++) {
            if (craft__value(&r->sent_msgs[k]) == 0 && craft__value(&r->recv_msgs[k]) == 0) {
                continue;
            }
            put(o, "%s_total{peer=\"%s\",type=\"%s\"} %llu\n", name, peer,
                type_label(craft__traffic_type_tag(k)),
                (unsigned long long)craft__value(&column[k]));
        }
    }
}

static const char *peer_state_name(uint8_t s)
{
    static const char *const names[] = {"unknown", "probe", "replicate", "snapshot", "self"};
    return s < sizeof names / sizeof names[0] ? names[s] : "unknown";
}

static void peers(struct out *o, const struct craft_uv_status *s)
{
    static const struct {
        const char *name, *help;
    } fams[] = {
        {"craft_peer_connected", "1 if this node's connection to the peer is up"},
        {"craft_peer_last_contact_seconds",
         "seconds since a message from the peer arrived (-1: never)"},
        {"craft_peer_match_index", "leader: the peer's last index known to match the leader's"},
        {"craft_peer_next_index", "leader: the next index to send to the peer"},
        {"craft_peer_lag_entries", "leader: the leader's last index minus the peer's match"},
        {"craft_peer_inflight", "leader: AppendEntries sent to the peer and not answered yet"},
        {"craft_peer_state",
         "leader: the peer's replication state (probe, replicate, snapshot), 1 for the current"},
        {"craft_peer_voter", "1 if the peer is a voter, 0 for a learner"},
    };
    bool leader = s->role == CRAFT_LEADER;
    for (unsigned f = 0; f < sizeof fams / sizeof fams[0]; f++) {
        if (f >= 2 && f <= 6 && !leader) {
            continue; /* only the leader tracks its followers */
        }
        family(o, fams[f].name, GAUGE, fams[f].help);
        for (unsigned i = 0; i < s->n_peers && i < CRAFT_UV_STATUS_PEERS; i++) {
            const struct craft_uv_peer_status *p = &s->peers[i];
            if (p->id == s->id) {
                continue;
            }
            char addr[2 * CRAFT_ADDRESS_MAX];
            label_value(addr, sizeof addr, p->address);
            const char *nm = fams[f].name;
            switch (f) {
            case 0:
                put(o, "%s{peer=\"%llu\",address=\"%s\"} %d\n", nm, (unsigned long long)p->id,
                    addr, p->connected ? 1 : 0);
                break;
            case 1:
                put(o, "%s{peer=\"%llu\"} %.3f\n", nm, (unsigned long long)p->id,
                    p->last_contact_ms < 0 ? -1.0 : (double)p->last_contact_ms / 1000.0);
                break;
            case 2:
                put(o, "%s{peer=\"%llu\"} %llu\n", nm, (unsigned long long)p->id,
                    (unsigned long long)p->match);
                break;
            case 3:
                put(o, "%s{peer=\"%llu\"} %llu\n", nm, (unsigned long long)p->id,
                    (unsigned long long)p->next);
                break;
            case 4:
                put(o, "%s{peer=\"%llu\"} %llu\n", nm, (unsigned long long)p->id,
                    (unsigned long long)p->lag);
                break;
            case 5:
                put(o, "%s{peer=\"%llu\"} %u\n", nm, (unsigned long long)p->id, p->inflight);
                break;
            case 6:
                for (uint8_t st = CRAFT_UV_PEER_PROBE; st <= CRAFT_UV_PEER_SNAPSHOT; st++) {
                    put(o, "%s{peer=\"%llu\",state=\"%s\"} %d\n", nm, (unsigned long long)p->id,
                        peer_state_name(st), p->state == st ? 1 : 0);
                }
                break;
            default:
                put(o, "%s{peer=\"%llu\"} %d\n", nm, (unsigned long long)p->id,
                    p->role == CRAFT_VOTER ? 1 : 0);
                break;
            }
        }
    }
}

int craft__uv_metrics_render(struct craft_uv_node *n, const struct craft_uv_status *s,
                             bool openmetrics, struct craft_wire_buf *b)
{
    struct out o = {b, openmetrics, 0};
    struct craft__metrics *m = &n->metrics;
    char addr[2 * CRAFT_ADDRESS_MAX];
    label_value(addr, sizeof addr, s->address);

    family(&o, "craft_info", GAUGE, "constant 1, labelled with the node's id, address, version");
    put(&o, "craft_info{id=\"%llu\",address=\"%s\",version=\"%s\",cluster_id=\"%016llx\"} 1\n",
        (unsigned long long)s->id, addr, CRAFT_VERSION_STRING,
        (unsigned long long)s->cluster_id);
    family(&o, "craft_role", GAUGE, "1 for the node's current role, 0 for the others");
    static const char *const roles[] = {"follower", "pre-candidate", "candidate", "leader"};
    for (int r = CRAFT_FOLLOWER; r <= CRAFT_LEADER; r++) {
        put(&o, "craft_role{role=\"%s\"} %d\n", roles[r - 1], !s->stopped && s->role == r);
    }
    gauge(&o, "craft_is_leader", "1 while this node is the leader", s->role == CRAFT_LEADER);
    gauge(&o, "craft_stopped", "1 once a fatal error stopped the node", s->stopped);
    gauge(&o, "craft_removed", "1 once a member said this node left the configuration",
          s->removed);
    gauge(&o, "craft_has_quorum",
          "leader: a majority of voters heard from within an election timeout; follower: a "
          "leader heard from within one",
          s->has_quorum);
    gauge(&o, "craft_term", "the current term", (double)s->term);
    gauge(&o, "craft_leader_id", "the leader this node knows (0: none)", (double)s->leader);
    gauge(&o, "craft_commit_index", "the highest index known committed", (double)s->commit);
    gauge(&o, "craft_applied_index", "the highest index applied to the state machine",
          (double)s->applied);
    gauge(&o, "craft_first_index", "the first index in the log", (double)s->first_index);
    gauge(&o, "craft_last_index", "the last index in the log", (double)s->last_index);
    gauge(&o, "craft_snapshot_index", "the latest snapshot's last index",
          (double)s->snapshot_index);
    gauge(&o, "craft_snapshot_size_bytes", "the latest snapshot's size", (double)s->snapshot_size);
    gauge(&o, "craft_configuration_index", "the index of the configuration in effect",
          (double)s->conf_index);
    gauge(&o, "craft_configuration_committed", "1 if the configuration in effect is committed",
          s->conf_committed);
    gauge(&o, "craft_voters", "voters in the configuration in effect", s->voters);
    gauge(&o, "craft_learners", "learners in the configuration in effect", s->learners);
    gauge(&o, "craft_uptime_seconds", "seconds since the node started",
          (double)s->uptime_ms / 1000.0);
    gauge(&o, "craft_request_queue_depth",
          "requests waiting in the node (proposals, reads, changes, forwarded)",
          (double)s->pending_requests);
    gauge(&o, "craft_disk_queue_depth", "disk jobs queued or running", (double)s->pending_jobs);

    counter(&o, "craft_proposals", "commands the node appended as leader",
            craft__value(&m->proposals));
    counter(&o, "craft_entries_committed", "entries this node saw committed",
            craft__value(&m->entries_committed));
    counter(&o, "craft_entries_applied", "entries applied to the state machine",
            s->entries_applied);
    counter(&o, "craft_entries_appended", "entries written to this node's log",
            s->entries_appended);
    counter(&o, "craft_forwarded", "proposals and reads forwarded to the leader", s->forwarded);
    counter(&o, "craft_elections_started", "elections this node started (as a candidate)",
            craft__value(&m->elections_started));
    counter(&o, "craft_elections_won", "elections this node won",
            craft__value(&m->elections_won));
    counter(&o, "craft_leader_changes", "times the leader this node knows changed to another",
            craft__value(&m->leader_changes));
    counter(&o, "craft_membership_changes", "configuration entries applied",
            craft__value(&m->membership_changes));
    counter(&o, "craft_snapshots_taken", "snapshots of the state machine taken",
            craft__value(&m->snapshots_taken));
    counter(&o, "craft_snapshots_installed", "snapshots received from the leader and installed",
            craft__value(&m->snapshots_installed));
    counter(&o, "craft_snapshots_failed", "snapshots the state machine failed to take",
            craft__value(&m->snapshots_failed));
    counter(&o, "craft_snapshot_written_bytes", "bytes of snapshots written by the state machine",
            craft__value(&m->snapshot_bytes_written));
    counter(&o, "craft_snapshot_read_bytes", "bytes of snapshots read back into the state machine",
            craft__value(&m->snapshot_bytes_read));
    counter(&o, "craft_fsyncs", "log writes made durable (append or hard state)", s->fsyncs);
    counter(&o, "craft_follower_lagging_events",
            "times a follower fell more than lag_threshold entries behind (leader)",
            craft__value(&m->lagging_events));
    counter(&o, "craft_dropped_frames",
            "connections closed for a bad frame (malformed, oversized, out of place)",
            s->bad_frames);
    family(&o, "craft_dropped_messages", COUNTER,
           "messages not sent: no connection or a full queue (backpressure), or dropped by "
           "injected faults (fault)");
    put(&o, "craft_dropped_messages_total{reason=\"backpressure\"} %llu\n",
        (unsigned long long)s->send_dropped);
    put(&o, "craft_dropped_messages_total{reason=\"fault\"} %llu\n",
        (unsigned long long)s->fault_dropped);
    counter(&o, "craft_refused_handshakes", "connections refused at the handshake",
            s->refused_handshakes);
    counter(&o, "craft_connects", "connections established", s->connects);
    counter(&o, "craft_disconnects", "connections lost", s->disconnects);
    traffic(&o, &m->traffic, "craft_messages_sent", "messages sent, per peer and type",
            offsetof(struct craft__traffic_row, sent_msgs));
    traffic(&o, &m->traffic, "craft_messages_received", "messages received, per peer and type",
            offsetof(struct craft__traffic_row, recv_msgs));
    traffic(&o, &m->traffic, "craft_sent_bytes", "bytes of frames sent, per peer and type",
            offsetof(struct craft__traffic_row, sent_bytes));
    traffic(&o, &m->traffic, "craft_received_bytes", "bytes of frames received, per peer and type",
            offsetof(struct craft__traffic_row, recv_bytes));
    peers(&o, s);
    histogram(&o, "craft_fsync_seconds",
              "duration of a log write: append and fdatasync (hard state, entries, or a "
              "snapshot chunk)",
              &m->fsync);
    histogram(&o, "craft_apply_batch_seconds",
              "duration of one call of the state machine's apply (a batch of commands)",
              &m->apply_batch);
    histogram(&o, "craft_commit_latency_seconds",
              "leader: from appending a batch of entries to committing it", &m->commit);
    if (openmetrics) {
        put(&o, "# EOF\n");
    }
    if (o.rc == 0) {
        o.rc = craft_wire_buf_reserve(b, 1);
    }
    if (o.rc == 0) {
        b->base[b->len] = '\0';
    }
    return o.rc;
}

int craft_uv_metrics(struct craft_uv_node *n, bool openmetrics, char **out, size_t *size)
{
    if (n == NULL || out == NULL) {
        return CRAFT_EINVAL;
    }
    struct craft_uv_status *s = craft_malloc(NULL, sizeof *s);
    if (s == NULL) {
        return CRAFT_ENOMEM;
    }
    uv_mutex_lock(&n->lock);
    bool stopping = n->stopping;
    *s = n->status;
    uv_mutex_unlock(&n->lock);
    if (stopping) {
        craft_free(NULL, s);
        return CRAFT_ESHUTDOWN;
    }
    struct craft_wire_buf b;
    craft_wire_buf_init(&b, NULL);
    int rc = craft__uv_metrics_render(n, s, openmetrics, &b);
    craft_free(NULL, s);
    if (rc != 0) {
        craft_wire_buf_close(&b);
        return rc;
    }
    *out = (char *)b.base;
    if (size != NULL) {
        *size = b.len;
    }
    return 0;
}
