/* The status as a msgpack map with string keys: the answer to a CRAFT_WIRE_STATUS request
 * (the `craft status` command line reads it), and craft_uv_status_pack for the bindings. The
 * keys are those of the Python and Lua status tables (docs/wire.md lists them); a reader
 * ignores keys it does not know, so keys may be added without a new protocol version. */
#include <string.h>

#include "uv/node.h"

struct map {
    struct craft_wire_buf *b;
    size_t at;
    uint32_t n;
    int rc;
};

static void key(struct map *m, const char *k)
{
    if (m->rc == 0) {
        m->rc = craft_wire_pack_str(m->b, k);
        m->n++;
    }
}

static void u64(struct map *m, const char *k, uint64_t v)
{
    key(m, k);
    if (m->rc == 0) {
        m->rc = craft_wire_pack_uint(m->b, v);
    }
}

static void i64(struct map *m, const char *k, int64_t v)
{
    key(m, k);
    if (m->rc == 0) {
        m->rc = craft_wire_pack_int(m->b, v);
    }
}

static void boolean(struct map *m, const char *k, bool v)
{
    key(m, k);
    if (m->rc == 0) {
        m->rc = craft_wire_pack_bool(m->b, v);
    }
}

static void str(struct map *m, const char *k, const char *v)
{
    key(m, k);
    if (m->rc == 0) {
        m->rc = craft_wire_pack_str(m->b, v);
    }
}

static void open_map(struct map *m, struct craft_wire_buf *b, int *rc)
{
    m->b = b;
    m->n = 0;
    m->rc = *rc;
    if (m->rc == 0) {
        m->rc = craft_wire_pack_map16(b, &m->at);
    }
}

static void close_map(struct map *m, int *rc)
{
    if (m->rc == 0) {
        m->rc = craft_wire_pack_patch16(m->b, m->at, m->n);
    }
    *rc = m->rc;
}

static const char *role_name(const struct craft_uv_status *s)
{
    return s->stopped ? "stopped" : s->role != 0 ? craft_role_name(s->role) : "none";
}

const char *craft__uv_peer_state_name(uint8_t state)
{
    static const char *const names[] = {"", "probe", "replicate", "snapshot", "self"};
    return state < sizeof names / sizeof names[0] ? names[state] : "";
}

static void peers(struct map *top, const struct craft_uv_status *s)
{
    key(top, "peers");
    if (top->rc == 0) {
        top->rc = craft_wire_pack_array(top->b, s->n_peers);
    }
    for (unsigned i = 0; i < s->n_peers && i < CRAFT_UV_STATUS_PEERS && top->rc == 0; i++) {
        const struct craft_uv_peer_status *p = &s->peers[i];
        struct map m;
        open_map(&m, top->b, &top->rc);
        u64(&m, "id", p->id);
        str(&m, "role", p->role == CRAFT_LEARNER ? "learner" : "voter");
        str(&m, "address", p->address);
        u64(&m, "match", p->match);
        boolean(&m, "connected", p->connected);
        u64(&m, "next", p->next);
        u64(&m, "lag", p->lag);
        u64(&m, "inflight", p->inflight);
        str(&m, "state", craft__uv_peer_state_name(p->state));
        i64(&m, "last_contact_ms", p->last_contact_ms);
        close_map(&m, &top->rc);
    }
}

/* The ids of the servers of one role, in increasing order. */
static void ids(struct map *top, const char *k, const struct craft_uv_status *s, uint8_t role)
{
    key(top, k);
    craft_id sorted[CRAFT_UV_STATUS_PEERS];
    uint32_t count = 0;
    for (unsigned i = 0; i < s->n_peers && i < CRAFT_UV_STATUS_PEERS; i++) {
        if (s->peers[i].role != role) {
            continue;
        }
        uint32_t at = count++;
        while (at > 0 && sorted[at - 1] > s->peers[i].id) {
            sorted[at] = sorted[at - 1];
            at--;
        }
        sorted[at] = s->peers[i].id;
    }
    if (top->rc == 0) {
        top->rc = craft_wire_pack_array(top->b, count);
    }
    for (uint32_t i = 0; i < count && top->rc == 0; i++) {
        top->rc = craft_wire_pack_uint(top->b, sorted[i]);
    }
}

static void counters(struct map *top, const struct craft_uv_status *s)
{
    key(top, "counters");
    struct map m;
    open_map(&m, top->b, &top->rc);
    u64(&m, "msgs_sent", s->msgs_sent);
    u64(&m, "msgs_received", s->msgs_received);
    u64(&m, "bytes_sent", s->bytes_sent);
    u64(&m, "bytes_received", s->bytes_received);
    u64(&m, "entries_appended", s->entries_appended);
    u64(&m, "entries_applied", s->entries_applied);
    u64(&m, "fsyncs", s->fsyncs);
    u64(&m, "elections", s->elections);
    u64(&m, "snapshots", s->snapshots);
    u64(&m, "bad_frames", s->bad_frames);
    u64(&m, "refused_handshakes", s->refused_handshakes);
    u64(&m, "forwarded", s->forwarded);
    u64(&m, "elections_won", s->elections_won);
    u64(&m, "leader_changes", s->leader_changes);
    u64(&m, "proposals", s->proposals);
    u64(&m, "entries_committed", s->entries_committed);
    u64(&m, "snapshots_installed", s->snapshots_installed);
    u64(&m, "snapshots_failed", s->snapshots_failed);
    u64(&m, "send_dropped", s->send_dropped);
    u64(&m, "fault_dropped", s->fault_dropped);
    u64(&m, "connects", s->connects);
    u64(&m, "disconnects", s->disconnects);
    close_map(&m, &top->rc);
}

int craft__uv_status_encode(const struct craft_uv_status *s, struct craft_wire_buf *b)
{
    int rc = 0;
    size_t start = b->len;
    struct map m;
    open_map(&m, b, &rc);
    u64(&m, "id", s->id);
    str(&m, "role", role_name(s));
    u64(&m, "term", s->term);
    u64(&m, "leader", s->leader);
    str(&m, "leader_address", s->leader_address);
    u64(&m, "commit", s->commit);
    u64(&m, "applied", s->applied);
    u64(&m, "first_index", s->first_index);
    u64(&m, "last_index", s->last_index);
    u64(&m, "snapshot_index", s->snapshot_index);
    u64(&m, "snapshot_term", s->snapshot_term);
    u64(&m, "snapshot_size", s->snapshot_size);
    str(&m, "address", s->address);
    str(&m, "metrics_address", s->metrics_address);
    u64(&m, "cluster_id", s->cluster_id);
    boolean(&m, "stopped", s->stopped);
    str(&m, "stop_reason", s->stop_reason);
    boolean(&m, "removed", s->removed);
    u64(&m, "snapshot_failures", s->snapshot_failures);
    str(&m, "snapshot_error", s->snapshot_error);
    boolean(&m, "has_quorum", s->has_quorum);
    i64(&m, "leader_contact_ms", s->leader_contact_ms);
    u64(&m, "conf_index", s->conf_index);
    boolean(&m, "conf_committed", s->conf_committed);
    ids(&m, "voters", s, CRAFT_VOTER);
    ids(&m, "learners", s, CRAFT_LEARNER);
    u64(&m, "uptime_ms", s->uptime_ms);
    u64(&m, "fsync_p50_us", s->fsync_p50_us);
    u64(&m, "fsync_p99_us", s->fsync_p99_us);
    u64(&m, "fsync_count_1m", s->fsync_count_1m);
    u64(&m, "pending_requests", s->pending_requests);
    u64(&m, "pending_jobs", s->pending_jobs);
    peers(&m, s);
    counters(&m, s);
    close_map(&m, &rc);
    if (rc != 0) {
        b->len = start;
    }
    return rc;
}

int craft_uv_status_pack(const struct craft_uv_status *s, void **out, size_t *size)
{
    if (s == NULL || out == NULL || size == NULL) {
        return CRAFT_EINVAL;
    }
    struct craft_wire_buf b;
    craft_wire_buf_init(&b, NULL);
    int rc = craft__uv_status_encode(s, &b);
    if (rc != 0) {
        craft_wire_buf_close(&b);
        return rc;
    }
    *out = b.base;
    *size = b.len;
    return 0;
}
