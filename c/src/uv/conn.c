/* One TCP connection of the transport: dialed to a peer or accepted by the listener, then the
 * handshake, the frames read and decoded, the write queue, and the close.
 *
 * Nothing a peer sends is trusted: the length prefix is judged before the body is buffered,
 * every frame goes through the total decoder, and any violation closes the connection (and
 * only it) with a counter and a log line. */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "uv/metrics.h"
#include "uv/tls.h"
#include "uv/transport_internal.h"

static const char *side(const struct craft__conn *c)
{
    return c->outgoing ? "to" : "from";
}

static void spares_free(struct craft__conn *c);

/* --- Life and death ------------------------------------------------------------------------ */

static void on_handle_closed(uv_handle_t *h)
{
    struct craft__conn *c = h->data;
    struct craft__transport *t = c->t;

    if (--c->open_handles > 0) {
        craft__transport_handle_closed(t);
        return;
    }
    /* Both handles are closed; libuv ran the callbacks of every pending write and of the
     * connect request (UV_ECANCELED) before these close callbacks, so nothing refers to c. */
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        t->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    craft_free(t->alloc, c->rbuf);
    craft__tls_free(c->tls);
    craft_wire_decoder_close(&c->dec);
    craft_wire_buf_close(&c->pending);
    spares_free(c);
    craft_free(t->alloc, c);
    craft__transport_handle_closed(t);
}

/* A new connection with both handles initialized and linked into t->conns. */
static struct craft__conn *conn_new(struct craft__transport *t)
{
    struct craft__conn *c = craft_calloc(t->alloc, 1, sizeof *c);
    int rc;

    if (c == NULL) {
        return NULL;
    }
    rc = uv_tcp_init(t->loop, &c->tcp);
    if (rc != 0) {
        craft_free(t->alloc, c);
        return NULL;
    }
    uv_timer_init(t->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->connect.data = c;
    c->open_handles = 2;
    t->handles += 2;
    c->t = t;
    craft_wire_decoder_init(&c->dec, t->alloc);
    c->dec.max_frame = t->o.max_frame;
    craft_wire_buf_init(&c->pending, t->alloc);
    c->next = t->conns;
    if (t->conns != NULL) {
        t->conns->prev = c;
    }
    t->conns = c;
    return c;
}

void craft__conn_close(struct craft__conn *c, bool notify)
{
    struct craft__transport *t = c->t;
    struct craft__peer *p = c->peer;
    bool was_up = c->state == CRAFT__CONN_UP;

    if (c->state == CRAFT__CONN_CLOSING) {
        return;
    }
    c->state = CRAFT__CONN_CLOSING;
    craft__transport_unmark_dirty(c);
    craft__transport_forget_conn(c);
    craft__limits_closed(c);
    if (was_up) {
        t->stats.disconnects++;
    }
    if (p != NULL) {
        p->conn = NULL;
        c->peer = NULL;
    }
    /* Cancels the connect request and pending writes: their callbacks run (UV_ECANCELED)
     * before the close callbacks. */
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);

    if (!notify || t->closing) {
        return;
    }
    /* Last: these callbacks may call back into the transport. */
    if (c->announced && t->cb.conn_closed != NULL) {
        t->cb.conn_closed(t->cb.data, c);
    }
    if (p != NULL) {
        craft__transport_peer_down(p, was_up);
    }
}

/* Input we refuse: the connection goes, the node stays. */
static void bad_frame(struct craft__conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void bad_frame(struct craft__conn *c, const char *fmt, ...)
{
    char why[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    c->t->stats.bad_frames++;
    craft__transport_log(c->t, CRAFT__LOG_WARN,
                         "transport: closing connection %s %s (server %" PRIu64 "): bad frame: %s",
                         side(c), c->name, c->remote, why);
    craft__conn_close(c, true);
}

static void refuse(struct craft__conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void refuse(struct craft__conn *c, const char *fmt, ...)
{
    char why[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    c->t->stats.refused_handshakes++;
    craft__transport_log(c->t, CRAFT__LOG_WARN, "transport: refused handshake %s %s: %s", side(c),
                         c->name, why);
    craft__conn_close(c, true);
}

static void on_timer(uv_timer_t *h);

/* A client (a non-member) that has no request in flight and sent nothing for
 * client_idle_timeout_ms is closed, so that idle connections cannot keep real clients out.
 * The timer is armed once per timeout, not per frame: it checks when the last frame came and
 * re-arms for the rest. */
static void check_idle(struct craft__conn *c)
{
    struct craft__transport *t = c->t;
    uint64_t now = uv_now(t->loop);
    uint64_t idle = now - c->last_active;

    if (c->in_flight > 0 || idle < t->o.client_idle_timeout_ms) {
        uint64_t wait = c->in_flight > 0 ? t->o.client_idle_timeout_ms
                                         : t->o.client_idle_timeout_ms - idle;
        uv_timer_start(&c->timer, on_timer, wait, 0);
        return;
    }
    t->stats.idle_closed++;
    craft__transport_log(t, CRAFT__LOG_INFO,
                         "transport: closing client connection from %s: idle for %u ms", c->name,
                         t->o.client_idle_timeout_ms);
    craft__conn_close(c, true);
}

static void on_timer(uv_timer_t *h)
{
    struct craft__conn *c = h->data;

    if (c->state == CRAFT__CONN_CONNECTING) {
        craft__transport_log(c->t, CRAFT__LOG_DEBUG, "transport: connect to %s timed out", c->name);
        craft__conn_close(c, true);
    } else if (c->state == CRAFT__CONN_HANDSHAKE) {
        c->t->stats.handshake_timeouts++;
        craft__transport_log(c->t, CRAFT__LOG_WARN,
                             "transport: closing connection %s %s: no handshake within %u ms",
                             side(c), c->name, c->t->o.handshake_timeout_ms);
        craft__conn_close(c, true);
    } else if (c->state == CRAFT__CONN_UP && c->kind == CRAFT__KIND_CLIENT) {
        check_idle(c);
    }
}

/* --- Writing ------------------------------------------------------------------------------- */

/* Kept per connection for reuse: at most SPARE_WRITES of them, with buffers up to
 * SPARE_BYTES (a burst's large buffer is not kept for ever). */
#define SPARE_WRITES 4
#define SPARE_BYTES (1u << 20)

struct craft__write_req {
    uv_write_t req;
    struct craft__conn *conn;
    struct craft__write_req *next_spare;
    struct craft_wire_buf buf; /* the bytes on the wire (TLS: ciphertext) */
    size_t counted;            /* of them, what c->queued counts (the plaintext frames) */
};

/* A write request is finished with: kept for the next flush, or freed. */
static void write_req_done(struct craft__conn *c, struct craft__write_req *w)
{
    if (c->state != CRAFT__CONN_CLOSING && c->n_spare < SPARE_WRITES &&
        w->buf.cap <= SPARE_BYTES) {
        craft_wire_buf_reset(&w->buf);
        w->counted = 0;
        w->next_spare = c->spare;
        c->spare = w;
        c->n_spare++;
        return;
    }
    craft_wire_buf_close(&w->buf);
    craft_free(c->t->alloc, w);
}

static void spares_free(struct craft__conn *c)
{
    while (c->spare != NULL) {
        struct craft__write_req *w = c->spare;
        c->spare = w->next_spare;
        craft_wire_buf_close(&w->buf);
        craft_free(c->t->alloc, w);
    }
    c->n_spare = 0;
}

static void on_write(uv_write_t *req, int status)
{
    struct craft__write_req *w = req->data;
    struct craft__conn *c = w->conn;
    struct craft__transport *t = c->t;

    c->queued -= w->counted;
    if (status == 0) {
        t->stats.bytes_sent += w->buf.len;
    } else if (status != UV_ECANCELED && c->state != CRAFT__CONN_CLOSING) {
        craft__transport_log(t, CRAFT__LOG_INFO, "transport: write %s %s failed: %s", side(c),
                             c->name, uv_strerror(status));
        craft__conn_close(c, true);
    }
    write_req_done(c, w);
}

/* Hands w (its buffer filled) to uv_write; on failure the connection closes. */
static void write_out(struct craft__conn *c, struct craft__write_req *w)
{
    struct craft__transport *t = c->t;
    uv_buf_t b = uv_buf_init((char *)w->buf.base, (unsigned)w->buf.len);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);

    if (rc != 0) {
        c->queued -= w->counted;
        write_req_done(c, w);
        craft__transport_log(t, CRAFT__LOG_INFO, "transport: write %s %s failed: %s", side(c),
                             c->name, uv_strerror(rc));
        craft__conn_close(c, true);
    }
}

static struct craft__write_req *write_req_new(struct craft__conn *c)
{
    if (c->spare != NULL) {
        struct craft__write_req *w = c->spare;
        c->spare = w->next_spare;
        c->n_spare--;
        return w; /* buffer empty, its capacity kept */
    }
    struct craft__write_req *w = craft_malloc(c->t->alloc, sizeof *w);

    if (w == NULL) {
        craft__transport_log(c->t, CRAFT__LOG_ERROR, "transport: out of memory writing %s %s",
                             side(c), c->name);
        craft__conn_close(c, true);
        return NULL;
    }
    w->conn = c;
    w->req.data = w;
    w->counted = 0;
    craft_wire_buf_init(&w->buf, c->t->alloc);
    return w;
}

/* TLS: encrypts the pending frames (if the handshake is done) and writes whatever ciphertext
 * waits, handshake messages included. */
static void flush_tls(struct craft__conn *c)
{
    struct craft__write_req *w;
    size_t counted = 0;

    if (c->pending.len > 0 && craft__tls_established(c->tls)) {
        if (craft__tls_write(c->tls, c->pending.base, c->pending.len) != 0) {
            craft__transport_log(c->t, CRAFT__LOG_ERROR, "transport: TLS write %s %s failed",
                                 side(c), c->name);
            craft__conn_close(c, true);
            return;
        }
        counted = c->pending.len;
        craft_wire_buf_reset(&c->pending);
    }
    if (craft__tls_output_size(c->tls) == 0) {
        c->queued -= counted;
        return;
    }
    w = write_req_new(c);
    if (w == NULL) {
        return;
    }
    w->counted = counted;
    if (craft__tls_take_output(c->tls, &w->buf) != 0) {
        c->queued -= counted;
        craft_wire_buf_close(&w->buf);
        craft_free(c->t->alloc, w);
        craft__transport_log(c->t, CRAFT__LOG_ERROR, "transport: out of memory writing %s %s",
                             side(c), c->name);
        craft__conn_close(c, true);
        return;
    }
    write_out(c, w);
}

void craft__conn_flush(struct craft__conn *c)
{
    struct craft__write_req *w;

    if (c->state == CRAFT__CONN_CLOSING || c->state == CRAFT__CONN_CONNECTING) {
        return;
    }
    if (c->tls != NULL) {
        flush_tls(c);
        return;
    }
    if (c->pending.len == 0) {
        return;
    }
    w = write_req_new(c);
    if (w == NULL) {
        return;
    }
    /* The write takes the pending buffer as it is (no copy); the connection goes on with the
     * request's own (empty) buffer, whose capacity a spare request kept. */
    struct craft_wire_buf empty = w->buf;
    w->buf = c->pending;
    w->counted = w->buf.len;
    c->pending = empty;
    write_out(c, w);
}

/* Judges the bytes just appended to pending (from `before`): within the queue limit they
 * stay; beyond it they are taken back. A queue that is empty takes any one frame, or a
 * message larger than the limit could never be sent. uv_buf_t's length is an unsigned int. */
static int admit(struct craft__conn *c, size_t before)
{
    size_t n = c->pending.len - before;

    if (c->pending.len > UINT_MAX || (c->queued > 0 && c->queued + n > c->t->o.max_queue_bytes)) {
        c->pending.len = before;
        return n > UINT_MAX ? CRAFT_ETOOBIG : CRAFT_EBUSY;
    }
    c->queued += n;
    craft__transport_mark_dirty(c);
    return 0;
}

int craft__conn_enqueue(struct craft__conn *c, const struct craft_wire_message *m)
{
    size_t before = c->pending.len;
    int rc;

    if (c->state == CRAFT__CONN_CLOSING || c->state == CRAFT__CONN_CONNECTING) {
        return CRAFT_ENOCONN;
    }
    /* Refuse before paying for the encoding when the queue is already full. */
    if (c->queued > 0 && c->queued >= c->t->o.max_queue_bytes) {
        return CRAFT_EBUSY;
    }
    rc = craft_wire_encode_message(&c->pending, m);
    if (rc != 0) {
        return rc;
    }
    return admit(c, before);
}

int craft__conn_enqueue_bytes(struct craft__conn *c, const void *bytes, size_t n)
{
    size_t before = c->pending.len;
    int rc;

    if (c->state == CRAFT__CONN_CLOSING || c->state == CRAFT__CONN_CONNECTING) {
        return CRAFT_ENOCONN;
    }
    if (c->queued > 0 && c->queued >= c->t->o.max_queue_bytes) {
        return CRAFT_EBUSY;
    }
    rc = craft_wire_buf_reserve(&c->pending, n);
    if (rc != 0) {
        return rc;
    }
    memcpy(c->pending.base + c->pending.len, bytes, n);
    c->pending.len += n;
    return admit(c, before);
}

static void send_handshake(struct craft__conn *c)
{
    struct craft__transport *t = c->t;
    struct craft_wire_message m;
    int rc;

    memset(&m, 0, sizeof m);
    m.type = CRAFT_WIRE_HANDSHAKE;
    m.u.handshake.from = t->o.id;
    m.u.handshake.to = c->remote;
    m.u.handshake.cluster_id = t->o.cluster_id;
    strcpy(m.u.handshake.address, t->address);
    rc = craft__conn_enqueue(c, &m);
    if (rc != 0) {
        craft__transport_log(t, CRAFT__LOG_ERROR, "transport: cannot send handshake %s %s: %s",
                             side(c), c->name, craft_strerror(rc));
        craft__conn_close(c, true);
    }
}

/* --- Reading ------------------------------------------------------------------------------- */

/* The longest body accepted. Before the handshake only a handshake may come, and it is small:
 * a stranger must not get to announce (and make us buffer) a 64 MiB frame. */
static uint32_t frame_limit(const struct craft__conn *c)
{
    uint32_t max = c->t->o.max_frame;
    if (c->state != CRAFT__CONN_UP && max > CRAFT__HANDSHAKE_MAX_FRAME) {
        max = CRAFT__HANDSHAKE_MAX_FRAME;
    }
    return max;
}

/* Every read lands in the transport's scratch buffer (one for all connections: a read is
 * consumed before the next one starts), and only the bytes of a partial frame are kept per
 * connection (deliver). An idle connection then holds no read memory at all. */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct craft__conn *c = h->data;

    (void)suggested;
    buf->base = (char *)c->t->scratch;
    buf->len = CRAFT__READ_CHUNK;
}

/* docs/wire.md: a connection that claims to be server `from` is accepted only if it comes from
 * the address the configuration gives that server. Its source IP must be the configured IP
 * (our own outgoing connections leave from our listening IP, see craft__conn_dial), and the
 * listening address it announces must be the configured one (an announced wildcard host only
 * has its port compared). A server we do not know (a leader contacting a server that joins
 * empty, which knows nobody yet) is accepted, not as a member. Returns false after refusing. */
static bool check_member_address(struct craft__conn *c, const struct craft_wire_handshake *h)
{
    struct craft__transport *t = c->t;
    struct craft__peer *p = craft__transport_find_peer(t, h->from);
    struct sockaddr_storage announced;

    if (p == NULL) {
        craft__transport_log(t, CRAFT__LOG_INFO,
                             "transport: server %" PRIu64 " at %s is not in our configuration",
                             h->from, c->name);
        return true;
    }
    if (!craft__transport_same_host((const struct sockaddr *)&c->addr,
                                    (const struct sockaddr *)&p->addr)) {
        refuse(c, "it claims to be server %" PRIu64 ", configured at %s, from another address",
               h->from, p->address);
        return false;
    }
    if (craft__transport_parse_address(h->address, &announced) != 0 ||
        craft__transport_port((const struct sockaddr *)&announced) !=
            craft__transport_port((const struct sockaddr *)&p->addr) ||
        (!craft__transport_is_wildcard((const struct sockaddr *)&announced) &&
         !craft__transport_same_host((const struct sockaddr *)&announced,
                                     (const struct sockaddr *)&p->addr))) {
        refuse(c, "server %" PRIu64 " announces address \"%s\", configured at %s", h->from,
               h->address, p->address);
        return false;
    }
    c->member = true;
    return true;
}

/* A connection claiming server id `from`: with verify_id, its certificate must name that id,
 * and then stands for it (a member is known by its certificate, wherever it connects from);
 * otherwise its address is checked. */
static bool check_member(struct craft__conn *c, const struct craft_wire_handshake *h)
{
    struct craft__transport *t = c->t;
    craft_id named = 0;

    if (c->tls == NULL || !craft__tls_ctx_verify_id(t->tls)) {
        return check_member_address(c, h);
    }
    craft__tls_peer_id(c->tls, &named);
    if (named != h->from) {
        if (named == 0) {
            refuse(c, "it claims to be server %" PRIu64 " with a certificate that names no "
                      "server id", h->from);
        } else {
            refuse(c, "it claims to be server %" PRIu64 " with a certificate for server %" PRIu64,
                   h->from, named);
        }
        return false;
    }
    c->member = craft__transport_find_peer(t, h->from) != NULL;
    return true;
}

/* A member has one connection to us: a newer one (it restarted, or its old connection died
 * without us noticing) replaces the older, so members' connections stay bounded. */
static void replace_older(struct craft__conn *c)
{
    struct craft__conn *o = c->t->conns;
    while (o != NULL) {
        struct craft__conn *next = o->next;
        if (o != c && !o->outgoing && o->member && o->remote == c->remote &&
            o->state != CRAFT__CONN_CLOSING) {
            craft__transport_log(c->t, CRAFT__LOG_INFO,
                                 "transport: server %" PRIu64
                                 " connected again from %s: closing its older connection",
                                 c->remote, c->name);
            craft__conn_close(o, true);
        }
        o = next;
    }
}

static void handshake_received(struct craft__conn *c, const struct craft_wire_message *m)
{
    struct craft__transport *t = c->t;
    const struct craft_wire_handshake *h = &m->u.handshake;
    const char *why;

    if (m->type != CRAFT_WIRE_HANDSHAKE) {
        bad_frame(c, "%s before the handshake", craft_wire_type_name(m->type));
        return;
    }
    /* 0 is no cluster id (a client, a node in join mode): accepted. */
    if (h->cluster_id != 0 && t->o.cluster_id != 0 && h->cluster_id != t->o.cluster_id) {
        refuse(c, "cluster id %#" PRIx64 " (server %" PRIu64 "), ours is %#" PRIx64 ": a node of "
               "another cluster (bootstrapped with other peers, or given another cluster_id)",
               h->cluster_id, h->from, t->o.cluster_id);
        return;
    }
    if (h->to != 0 && h->to != t->o.id) {
        refuse(c, "server %" PRIu64 " wants server %" PRIu64 ", we are %" PRIu64, h->from, h->to,
               t->o.id);
        return;
    }
    if (c->outgoing && h->from != c->remote) {
        refuse(c, "it is server %" PRIu64 ", we dialed server %" PRIu64, h->from, c->remote);
        return;
    }
    if (!c->outgoing && h->from == t->o.id) {
        refuse(c, "it claims our own id %" PRIu64, h->from);
        return;
    }
    if (!c->outgoing && h->from != 0 && !check_member(c, h)) {
        return;
    }
    why = craft__limits_handshaken(c, c->member);
    if (why != NULL) {
        t->stats.refused_clients++;
        craft__transport_log(t, CRAFT__LOG_WARN, "transport: refused %s %" PRIu64 " from %s: %s",
                             h->from != 0 ? "server" : "client", h->from, c->name, why);
        craft__conn_close(c, true);
        return;
    }
    c->remote = h->from;
    memcpy(c->remote_address, h->address, sizeof c->remote_address);
    c->remote_address[sizeof c->remote_address - 1] = '\0';
    uv_timer_stop(&c->timer);
    if (c->kind == CRAFT__KIND_CLIENT) {
        c->last_active = uv_now(t->loop);
        uv_timer_start(&c->timer, on_timer, t->o.client_idle_timeout_ms, 0);
    }
    if (!c->outgoing) {
        /* Answered only now that the dialer has proven to be of our cluster. */
        send_handshake(c);
        if (c->state == CRAFT__CONN_CLOSING) {
            return;
        }
    }
    c->state = CRAFT__CONN_UP;
    t->stats.connects++;
    if (c->member) {
        replace_older(c);
    }
    if (c->outgoing) {
        craft__transport_peer_up(c->peer);
    } else {
        craft__transport_log(t, CRAFT__LOG_DEBUG,
                             "transport: accepted %s %" PRIu64 " from %s (announced %s)",
                             c->remote != 0 ? "server" : "client", c->remote, c->name,
                             c->remote_address[0] != '\0' ? c->remote_address : "no address");
    }
}

/* A client has at most max_client_requests Requests in flight: one more is answered
 * CRAFT_EBUSY here, and never reaches the node. (craft__transport_reply counts the answers.) */
static bool admit_request(struct craft__conn *c, const struct craft_wire_request *rq)
{
    struct craft__transport *t = c->t;
    struct craft_wire_message r;

    if (c->in_flight < t->o.max_client_requests) {
        c->in_flight++;
        return true;
    }
    t->stats.requests_refused++;
    memset(&r, 0, sizeof r);
    r.type = CRAFT_WIRE_RESPONSE;
    r.u.response.from = t->o.id;
    r.u.response.id = rq->id;
    r.u.response.error = CRAFT_EBUSY;
    if (craft__conn_enqueue(c, &r) != 0) {
        craft__transport_log(t, CRAFT__LOG_WARN,
                             "transport: closing client connection from %s: it does not read "
                             "its answers",
                             c->name);
        craft__conn_close(c, true);
    }
    return false;
}

static void message_received(struct craft__conn *c, const struct craft_wire_message *m)
{
    struct craft__transport *t = c->t;

    if (c->state == CRAFT__CONN_HANDSHAKE) {
        handshake_received(c, m);
        return;
    }
    if (m->type == CRAFT_WIRE_HANDSHAKE) {
        bad_frame(c, "a second handshake");
        return;
    }
    if (m->type <= CRAFT_WIRE_RAFT_TYPE_MAX) {
        if (c->remote == 0) {
            bad_frame(c, "%s from a client", craft_wire_type_name(m->type));
            return;
        }
        /* The core trusts from: it must be who the handshake said. */
        if (m->u.raft.from != c->remote || m->u.raft.to != t->o.id) {
            bad_frame(c,
                      "%s from %" PRIu64 " to %" PRIu64 " on a connection between %" PRIu64
                      " and %" PRIu64,
                      craft_wire_type_name(m->type), m->u.raft.from, m->u.raft.to, c->remote,
                      t->o.id);
            return;
        }
    } else if (m->type == CRAFT_WIRE_RESPONSE && c->remote == 0) {
        bad_frame(c, "Response from a client");
        return;
    }
    if (c->kind == CRAFT__KIND_CLIENT) {
        c->last_active = uv_now(t->loop);
        if (m->type == CRAFT_WIRE_REQUEST && !admit_request(c, &m->u.request)) {
            return;
        }
    }
    t->stats.msgs_received++;
    c->announced = true;
    if (t->cb.recv != NULL) {
        t->cb.recv(t->cb.data, c, c->remote, m);
    }
}

/* The highest term a Raft message may carry: our term plus CRAFT_WIRE_TERM_AHEAD_MAX (0, the
 * absolute bound only, when the node does not say its term). */
static craft_term max_term(struct craft__transport *t)
{
    craft_term now;
    if (t->cb.term == NULL) {
        return 0;
    }
    now = t->cb.term(t->cb.data);
    if (now >= CRAFT_TERM_MAX - CRAFT_WIRE_TERM_AHEAD_MAX) {
        return CRAFT_TERM_MAX;
    }
    return now + CRAFT_WIRE_TERM_AHEAD_MAX;
}

/* What a client may not send is refused on the first bytes of its frame, before the body is
 * buffered (a 60 MiB AppendEntries would otherwise be read, and decoded into ten times its size,
 * only to be refused). */
static bool allowed_early(struct craft__conn *c, const uint8_t *body, size_t len)
{
    uint64_t type;
    int rc;

    if (c->state != CRAFT__CONN_UP || c->remote != 0 || c->outgoing) {
        return true;
    }
    rc = craft_wire_peek_type(body, len, &type);
    if (rc == CRAFT_WIRE_NEED_MORE) {
        return true;
    }
    if (rc == 0 && type == CRAFT_WIRE_REQUEST) {
        return true;
    }
    if (rc == 0) {
        bad_frame(c, "%s from a client", craft_wire_type_name((int)type));
    } else {
        bad_frame(c, "%s", rc == CRAFT_EVERSION ? "unsupported protocol version"
                                                : "bad frame header (not a message array)");
    }
    return false;
}

/* Decodes and delivers every whole frame at the start of buf; returns the bytes consumed (the
 * rest is the start of a frame), or SIZE_MAX once the connection is closing. The messages point
 * into buf, which must not move until this returns. */
static size_t process(struct craft__conn *c, const uint8_t *buf, size_t len)
{
    struct craft__transport *t = c->t;
    size_t off = 0;

    while (c->state != CRAFT__CONN_CLOSING && !t->closing) {
        struct craft_wire_message m;
        const uint8_t *p = buf + off;
        size_t frame_len;
        uint32_t limit = frame_limit(c);
        int rc = craft_wire_frame_length(p, len - off, limit, &frame_len);

        if (rc == CRAFT_WIRE_NEED_MORE) {
            if (len - off > CRAFT_WIRE_HEADER_SIZE &&
                !allowed_early(c, p + CRAFT_WIRE_HEADER_SIZE,
                               len - off - CRAFT_WIRE_HEADER_SIZE)) {
                return SIZE_MAX;
            }
            return off;
        }
        if (rc == CRAFT_ETOOBIG) {
            /* Judged on the 4 length bytes alone: the body is never buffered. */
            uint32_t body =
                (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
            bad_frame(c, "frame of %" PRIu32 " bytes, the maximum %sis %" PRIu32, body,
                      c->state == CRAFT__CONN_UP ? "" : "before the handshake ", limit);
            return SIZE_MAX;
        }
        if (rc != 0) {
            bad_frame(c, "bad frame header (not a message array)");
            return SIZE_MAX;
        }
        c->dec.max_term = max_term(t);
        rc = craft_wire_decode(&c->dec, p + CRAFT_WIRE_HEADER_SIZE,
                               frame_len - CRAFT_WIRE_HEADER_SIZE, &m);
        if (rc == CRAFT_ENOMEM) {
            craft__transport_log(t, CRAFT__LOG_ERROR,
                                 "transport: out of memory decoding a frame %s %s", side(c),
                                 c->name);
            craft__conn_close(c, true);
            return SIZE_MAX;
        }
        if (rc != 0) {
            bad_frame(c, "%s", c->dec.error != NULL ? c->dec.error : craft_strerror(rc));
            return SIZE_MAX;
        }
        off += frame_len;
        message_received(c, &m);
        /* After it: a handshake has then told who the sender is. */
        craft__traffic_received(t->o.traffic, c->remote, m.type, frame_len, uv_now(t->loop));
    }
    return SIZE_MAX;
}

static void rbuf_free(struct craft__conn *c)
{
    c->t->read_bytes -= c->rcap;
    craft_free(c->t->alloc, c->rbuf);
    c->rbuf = NULL;
    c->rcap = 0;
}

/* Room for `need` bytes in c's partial-frame buffer, within the read budget. Doubling, so a
 * large frame costs few regrowths, but never beyond the frame being read: memory stays within
 * about twice what the peer actually sent, whatever length it announced. */
static bool rbuf_reserve(struct craft__conn *c, size_t need, size_t frame_len)
{
    struct craft__transport *t = c->t;
    size_t cap = c->rcap * 2;
    uint8_t *grown;

    if (need <= c->rcap) {
        return true;
    }
    if (frame_len != 0 && cap > frame_len) {
        cap = frame_len;
    }
    if (cap < need) {
        cap = need;
    }
    if (!craft__limits_may_grow(c, cap - c->rcap)) {
        t->stats.evicted++;
        craft__transport_log(t, CRAFT__LOG_WARN,
                             "transport: closing connection %s %s (server %" PRIu64
                             "): its partial frame would exceed the read budget of %zu bytes",
                             side(c), c->name, c->remote, t->o.read_budget);
        craft__conn_close(c, true);
        return false;
    }
    grown = craft_realloc(t->alloc, c->rbuf, cap);
    if (grown == NULL) {
        craft__transport_log(t, CRAFT__LOG_ERROR, "transport: out of memory reading %s %s",
                             side(c), c->name);
        craft__conn_close(c, true);
        return false;
    }
    t->read_bytes += cap - c->rcap;
    c->rbuf = grown;
    c->rcap = cap;
    return true;
}

/* Bytes that arrived on c (plaintext: TLS has already been taken off). With nothing pending,
 * whole frames are decoded straight from data and only a trailing partial frame is copied; else
 * data joins the partial frame first. */
static void deliver(struct craft__conn *c, const uint8_t *data, size_t n)
{
    size_t used;

    if (c->rlen == 0) {
        used = process(c, data, n);
        if (used == SIZE_MAX) {
            return;
        }
        data += used;
        n -= used;
        if (n == 0) {
            return;
        }
    }
    /* The frame's length, when its 4-byte prefix is here (process judged it already). */
    uint8_t hdr[CRAFT_WIRE_HEADER_SIZE];
    size_t k = 0, frame_len = 0;
    for (; k < CRAFT_WIRE_HEADER_SIZE && k < c->rlen; k++) {
        hdr[k] = c->rbuf[k];
    }
    for (size_t j = 0; k < CRAFT_WIRE_HEADER_SIZE && j < n; j++, k++) {
        hdr[k] = data[j];
    }
    if (k == CRAFT_WIRE_HEADER_SIZE) {
        frame_len = CRAFT_WIRE_HEADER_SIZE + ((size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 |
                                              (size_t)hdr[2] << 8 | (size_t)hdr[3]);
    }
    if (!rbuf_reserve(c, c->rlen + n, frame_len)) {
        return;
    }
    memcpy(c->rbuf + c->rlen, data, n);
    c->rlen += n;
    used = process(c, c->rbuf, c->rlen);
    if (used == SIZE_MAX) {
        return;
    }
    c->rlen -= used;
    if (c->rlen > 0 && used > 0) {
        memmove(c->rbuf, c->rbuf + used, c->rlen);
    }
    if (c->rlen == 0 && (!craft__limits_privileged(c) || c->rcap > CRAFT__READ_KEEP)) {
        /* Nothing partial left: give the memory back (a member keeps a small buffer). */
        rbuf_free(c);
    }
}

/* --- TLS ----------------------------------------------------------------------------------- */

/* The TLS handshake is done: the peer holds a certificate our CAs vouch for, or the cluster
 * secret. With verify_id, the server we dialed must be the one its certificate names. Then
 * craft's own handshake follows, inside TLS. */
static void tls_established(struct craft__conn *c)
{
    struct craft__transport *t = c->t;
    char why[200];
    craft_id named;

    if (!craft__tls_peer_id(c->tls, &named)) {
        refuse(c, "its certificate names two different server ids");
        return;
    }
    if (t->tls != NULL && !craft__tls_still_trusted(c->tls, t->tls, why, sizeof why)) {
        /* The settings were rotated during its handshake. */
        refuse(c, "%s", why);
        return;
    }
    if (c->outgoing && craft__tls_ctx_verify_id(t->tls) && named != c->remote) {
        if (named == 0) {
            refuse(c, "its certificate names no server id, we dialed server %" PRIu64, c->remote);
        } else {
            refuse(c, "its certificate names server %" PRIu64 ", we dialed server %" PRIu64,
                   named, c->remote);
        }
        return;
    }
    craft__transport_log(t, CRAFT__LOG_DEBUG, "transport: TLS up %s %s (certificate names %s%" PRIu64 ")",
                         side(c), c->name, named != 0 ? "server " : "no server, ", named);
    if (c->outgoing) {
        send_handshake(c);
    }
}

/* Ciphertext from the socket: advances the TLS handshake, then hands what it decrypts to
 * deliver(). Nothing reaches craft's frame parser before the peer is authenticated. */
static void tls_input(struct craft__conn *c, const uint8_t *data, size_t n)
{
    struct craft__transport *t = c->t;
    char err[256];
    int rc;

    if (craft__tls_push(c->tls, data, n) != 0) {
        craft__transport_log(t, CRAFT__LOG_ERROR, "transport: out of memory reading %s %s",
                             side(c), c->name);
        craft__conn_close(c, true);
        return;
    }
    if (!craft__tls_established(c->tls)) {
        rc = craft__tls_handshake(c->tls, err, sizeof err);
        craft__conn_flush(c); /* our part of the handshake, or the alert that ends it */
        if (rc < 0) {
            refuse(c, "%s", err);
            return;
        }
        if (rc == 0 || c->state == CRAFT__CONN_CLOSING) {
            return;
        }
        tls_established(c);
    }
    while (c->state != CRAFT__CONN_CLOSING && !t->closing) {
        size_t got;
        rc = craft__tls_read(c->tls, t->scratch, CRAFT__READ_CHUNK, &got, err, sizeof err);
        if (rc == CRAFT_ENOCONN) {
            craft__transport_log(t, CRAFT__LOG_INFO,
                                 "transport: connection %s %s (server %" PRIu64
                                 ") closed by peer (TLS)",
                                 side(c), c->name, c->remote);
            craft__conn_close(c, true);
            return;
        }
        if (rc != 0) {
            bad_frame(c, "%s", err);
            return;
        }
        if (got == 0) {
            break;
        }
        deliver(c, t->scratch, got);
    }
    if (c->state != CRAFT__CONN_CLOSING && !t->closing &&
        craft__tls_output_size(c->tls) > 0) {
        craft__transport_mark_dirty(c); /* e.g. an answer to a key update */
    }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct craft__conn *c = stream->data;
    struct craft__transport *t = c->t;

    (void)buf;
    if (c->state == CRAFT__CONN_CLOSING) {
        return;
    }
    if (nread > 0) {
        t->stats.bytes_received += (uint64_t)nread;
        if (c->tls != NULL) {
            tls_input(c, t->scratch, (size_t)nread);
        } else {
            deliver(c, t->scratch, (size_t)nread);
        }
        return;
    }
    if (nread == 0) {
        return; /* EAGAIN */
    }
    if (nread == UV_EOF && c->rlen > 0) {
        bad_frame(c, "connection closed in the middle of a frame (%zu bytes of it)", c->rlen);
    } else if (nread == UV_EOF) {
        craft__transport_log(t, c->state == CRAFT__CONN_UP ? CRAFT__LOG_INFO : CRAFT__LOG_DEBUG,
                             "transport: connection %s %s (server %" PRIu64 ") closed by peer%s",
                             side(c), c->name, c->remote,
                             c->state == CRAFT__CONN_UP ? "" : " before the handshake");
        craft__conn_close(c, true);
    } else {
        craft__transport_log(t, CRAFT__LOG_INFO, "transport: read %s %s failed: %s", side(c),
                             c->name, uv_strerror((int)nread));
        craft__conn_close(c, true);
    }
}

/* Common to both directions once TCP is up. */
static int start(struct craft__conn *c)
{
    int rc;

    /* Raft's messages are small and latency-bound; we coalesce writes ourselves. */
    uv_tcp_nodelay(&c->tcp, 1);
    c->state = CRAFT__CONN_HANDSHAKE;
    if (c->t->tls != NULL) {
        c->tls = craft__tls_new(c->t->tls, !c->outgoing);
        if (c->tls == NULL) {
            craft__transport_log(c->t, CRAFT__LOG_ERROR, "transport: out of memory for TLS %s %s",
                                 side(c), c->name);
            craft__conn_close(c, true);
            return CRAFT_ENOMEM;
        }
    }
    uv_timer_start(&c->timer, on_timer, c->t->o.handshake_timeout_ms, 0);
    rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc != 0) {
        craft__transport_log(c->t, CRAFT__LOG_INFO, "transport: read %s %s failed: %s", side(c),
                             c->name, uv_strerror(rc));
        craft__conn_close(c, true);
    }
    return rc;
}

/* --- Dialing ------------------------------------------------------------------------------- */

static void on_connect(uv_connect_t *req, int status)
{
    struct craft__conn *c = req->data;

    if (status == UV_ECANCELED || c->state == CRAFT__CONN_CLOSING) {
        return; /* closed while connecting */
    }
    if (status != 0) {
        craft__transport_log(c->t, CRAFT__LOG_DEBUG,
                             "transport: connect to server %" PRIu64 " at %s failed: %s", c->remote,
                             c->name, uv_strerror(status));
        craft__conn_close(c, true);
        return;
    }
    if (start(c) != 0) {
        return;
    }
    if (c->tls == NULL) {
        send_handshake(c);
        return;
    }
    /* The dialer speaks first: its ClientHello. */
    char err[256];
    if (craft__tls_handshake(c->tls, err, sizeof err) < 0) {
        refuse(c, "%s", err);
        return;
    }
    craft__conn_flush(c);
}

/* Outgoing connections leave from the IP we listen on (when it is not a wildcard), so that
 * the peer sees the address the configuration gives us: on a host with several addresses the
 * kernel would otherwise pick the source by route, and the peer would refuse us. */
static int bind_source(struct craft__conn *c)
{
    struct sockaddr_storage src = c->t->bound;

    if (craft__transport_is_wildcard((const struct sockaddr *)&src) ||
        src.ss_family != c->addr.ss_family) {
        return 0;
    }
    if (src.ss_family == AF_INET) {
        ((struct sockaddr_in *)&src)->sin_port = 0;
    } else {
        ((struct sockaddr_in6 *)&src)->sin6_port = 0;
    }
    return uv_tcp_bind(&c->tcp, (const struct sockaddr *)&src, 0);
}

void craft__conn_dial(struct craft__peer *p)
{
    struct craft__transport *t = p->t;
    struct craft__conn *c = conn_new(t);
    int rc;

    if (c == NULL) {
        craft__transport_log(t, CRAFT__LOG_ERROR,
                             "transport: out of memory dialing server %" PRIu64, p->id);
        craft__transport_peer_down(p, false);
        return;
    }
    c->outgoing = true;
    c->kind = CRAFT__KIND_OUTGOING;
    c->peer = p;
    c->remote = p->id;
    c->state = CRAFT__CONN_CONNECTING;
    strcpy(c->name, p->address);
    p->conn = c;
    c->addr = p->addr;
    uv_timer_start(&c->timer, on_timer, t->o.connect_timeout_ms, 0);
    rc = bind_source(c);
    if (rc == 0) {
        rc = uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&p->addr, on_connect);
    }
    if (rc != 0) {
        craft__transport_log(t, CRAFT__LOG_DEBUG,
                             "transport: connect to server %" PRIu64 " at %s failed: %s", p->id,
                             p->address, uv_strerror(rc));
        craft__conn_close(c, true);
    }
}

/* --- Accepting ----------------------------------------------------------------------------- */

void craft__conn_on_connection(uv_stream_t *server, int status)
{
    struct craft__transport *t = server->data;
    struct craft__conn *c;
    struct sockaddr_storage addr;
    int len = sizeof addr;
    int rc;

    if (status != 0) {
        craft__transport_log(t, CRAFT__LOG_WARN, "transport: accept failed: %s",
                             uv_strerror(status));
        return;
    }
    c = conn_new(t);
    if (c == NULL) {
        /* libuv stops watching the listener until a connection is accepted; without memory
         * there is nothing better to do than say so. */
        craft__transport_log(t, CRAFT__LOG_ERROR, "transport: out of memory accepting");
        return;
    }
    c->state = CRAFT__CONN_HANDSHAKE;
    strcpy(c->name, "?");
    rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc != 0) {
        craft__transport_log(t, CRAFT__LOG_WARN, "transport: accept failed: %s", uv_strerror(rc));
        craft__conn_close(c, true);
        return;
    }
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&addr, &len) == 0) {
        craft__transport_format_address((const struct sockaddr *)&addr, c->name, sizeof c->name);
        c->addr = addr;
    }
    craft__transport_ip_key((const struct sockaddr *)&c->addr, c->ip);
    if (craft__limits_accepted(c) != 0) {
        craft__transport_log(t, CRAFT__LOG_ERROR, "transport: out of memory accepting %s",
                             c->name);
        craft__conn_close(c, true);
        return;
    }
    start(c);
}

craft_id craft__conn_remote_id(const struct craft__conn *conn)
{
    return conn->remote;
}

const char *craft__conn_remote_address(const struct craft__conn *conn)
{
    return conn->remote_address;
}
