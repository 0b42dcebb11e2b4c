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

#include "uv/transport_internal.h"

static const char *side(const struct craft__conn *c)
{
    return c->outgoing ? "to" : "from";
}

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
    craft_wire_decoder_close(&c->dec);
    craft_wire_buf_close(&c->pending);
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
    if (!c->outgoing) {
        t->n_incoming--;
    }
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
    }
}

/* --- Writing ------------------------------------------------------------------------------- */

struct write_req {
    uv_write_t req;
    struct craft__conn *conn;
    struct craft_wire_buf buf;
};

static void on_write(uv_write_t *req, int status)
{
    struct write_req *w = req->data;
    struct craft__conn *c = w->conn;
    struct craft__transport *t = c->t;

    c->queued -= w->buf.len;
    if (status == 0) {
        t->stats.bytes_sent += w->buf.len;
    } else if (status != UV_ECANCELED && c->state != CRAFT__CONN_CLOSING) {
        craft__transport_log(t, CRAFT__LOG_INFO, "transport: write %s %s failed: %s", side(c),
                             c->name, uv_strerror(status));
        craft__conn_close(c, true);
    }
    craft_wire_buf_close(&w->buf);
    craft_free(t->alloc, w);
}

void craft__conn_flush(struct craft__conn *c)
{
    struct craft__transport *t = c->t;
    struct write_req *w;
    uv_buf_t b;
    int rc;

    if (c->state == CRAFT__CONN_CLOSING || c->state == CRAFT__CONN_CONNECTING ||
        c->pending.len == 0) {
        return;
    }
    w = craft_malloc(t->alloc, sizeof *w);
    if (w == NULL) {
        craft__transport_log(t, CRAFT__LOG_ERROR, "transport: out of memory writing %s %s", side(c),
                             c->name);
        craft__conn_close(c, true);
        return;
    }
    /* The write takes the pending buffer as it is (no copy); the connection starts a new one. */
    w->conn = c;
    w->req.data = w;
    w->buf = c->pending;
    craft_wire_buf_init(&c->pending, t->alloc);
    b = uv_buf_init((char *)w->buf.base, (unsigned)w->buf.len);
    rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc != 0) {
        c->queued -= w->buf.len;
        craft_wire_buf_close(&w->buf);
        craft_free(t->alloc, w);
        craft__transport_log(t, CRAFT__LOG_INFO, "transport: write %s %s failed: %s", side(c),
                             c->name, uv_strerror(rc));
        craft__conn_close(c, true);
    }
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

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct craft__conn *c = h->data;
    const struct craft__transport *t = c->t;
    size_t want = c->rlen + CRAFT__READ_CHUNK;

    (void)suggested;
    if (want > c->rcap) {
        /* Doubling, so a large frame costs few regrowths, but never beyond the frame being
         * read: memory stays within about twice what the peer actually sent, whatever length
         * it announced. */
        size_t cap = c->rcap * 2;
        size_t frame_len;
        uint8_t *grown;
        if (craft_wire_frame_length(c->rbuf, c->rlen, frame_limit(c), &frame_len) ==
                CRAFT_WIRE_NEED_MORE &&
            cap > frame_len) {
            cap = frame_len;
        }
        if (cap < want) {
            cap = want;
        }
        grown = craft_realloc(t->alloc, c->rbuf, cap);
        if (grown == NULL) {
            /* libuv then calls on_read with UV_ENOBUFS. */
            buf->base = NULL;
            buf->len = 0;
            return;
        }
        c->rbuf = grown;
        c->rcap = cap;
    }
    buf->base = (char *)c->rbuf + c->rlen;
    buf->len = c->rcap - c->rlen;
}

static void handshake_received(struct craft__conn *c, const struct craft_wire_message *m)
{
    struct craft__transport *t = c->t;
    const struct craft_wire_handshake *h = &m->u.handshake;

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
    c->remote = h->from;
    memcpy(c->remote_address, h->address, sizeof c->remote_address);
    c->remote_address[sizeof c->remote_address - 1] = '\0';
    uv_timer_stop(&c->timer);
    if (!c->outgoing) {
        /* Answered only now that the dialer has proven to be of our cluster. */
        send_handshake(c);
        if (c->state == CRAFT__CONN_CLOSING) {
            return;
        }
    }
    c->state = CRAFT__CONN_UP;
    t->stats.connects++;
    if (c->outgoing) {
        craft__transport_peer_up(c->peer);
    } else {
        craft__transport_log(t, CRAFT__LOG_DEBUG,
                             "transport: accepted %s %" PRIu64 " from %s (announced %s)",
                             c->remote != 0 ? "server" : "client", c->remote, c->name,
                             c->remote_address[0] != '\0' ? c->remote_address : "no address");
    }
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
    t->stats.msgs_received++;
    c->announced = true;
    if (t->cb.recv != NULL) {
        t->cb.recv(t->cb.data, c, c->remote, m);
    }
}

/* Decodes and delivers every whole frame in the read buffer. */
static void process(struct craft__conn *c)
{
    struct craft__transport *t = c->t;
    size_t off = 0;

    while (c->state != CRAFT__CONN_CLOSING && !t->closing) {
        struct craft_wire_message m;
        const uint8_t *p = c->rbuf + off;
        size_t frame_len;
        uint32_t limit = frame_limit(c);
        int rc = craft_wire_frame_length(p, c->rlen - off, limit, &frame_len);

        if (rc == CRAFT_WIRE_NEED_MORE) {
            break;
        }
        if (rc == CRAFT_ETOOBIG) {
            /* Judged on the 4 length bytes alone: the body is never buffered. */
            uint32_t body =
                (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
            bad_frame(c, "frame of %" PRIu32 " bytes, the maximum %sis %" PRIu32, body,
                      c->state == CRAFT__CONN_UP ? "" : "before the handshake ", limit);
            return;
        }
        if (rc != 0) {
            bad_frame(c, "bad frame header (not a message array)");
            return;
        }
        rc = craft_wire_decode(&c->dec, p + CRAFT_WIRE_HEADER_SIZE,
                               frame_len - CRAFT_WIRE_HEADER_SIZE, &m);
        if (rc == CRAFT_ENOMEM) {
            craft__transport_log(t, CRAFT__LOG_ERROR,
                                 "transport: out of memory decoding a frame %s %s", side(c),
                                 c->name);
            craft__conn_close(c, true);
            return;
        }
        if (rc != 0) {
            bad_frame(c, "%s", c->dec.error != NULL ? c->dec.error : craft_strerror(rc));
            return;
        }
        off += frame_len;
        /* m points into rbuf, which does not move until the loop ends. */
        message_received(c, &m);
    }
    if (c->state == CRAFT__CONN_CLOSING || t->closing) {
        return;
    }
    c->rlen -= off;
    if (c->rlen > 0 && off > 0) {
        memmove(c->rbuf, c->rbuf + off, c->rlen);
    }
    if (c->rlen == 0 && c->rcap > CRAFT__READ_KEEP) {
        /* A big frame went through: give its memory back rather than keep it per connection. */
        craft_free(t->alloc, c->rbuf);
        c->rbuf = NULL;
        c->rcap = 0;
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
        c->rlen += (size_t)nread;
        t->stats.bytes_received += (uint64_t)nread;
        process(c);
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
    if (start(c) == 0) {
        send_handshake(c);
    }
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
    c->peer = p;
    c->remote = p->id;
    c->state = CRAFT__CONN_CONNECTING;
    strcpy(c->name, p->address);
    p->conn = c;
    uv_timer_start(&c->timer, on_timer, t->o.connect_timeout_ms, 0);
    rc = uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&p->addr, on_connect);
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
    t->n_incoming++;
    strcpy(c->name, "?");
    rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc != 0) {
        craft__transport_log(t, CRAFT__LOG_WARN, "transport: accept failed: %s", uv_strerror(rc));
        craft__conn_close(c, true);
        return;
    }
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&addr, &len) == 0) {
        craft__transport_format_address((const struct sockaddr *)&addr, c->name, sizeof c->name);
    }
    if (t->n_incoming > t->o.max_incoming) {
        craft__transport_log(t, CRAFT__LOG_WARN,
                             "transport: closing connection from %s: more than %u connections",
                             c->name, t->o.max_incoming);
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
