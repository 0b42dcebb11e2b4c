/* The fixture of the transport's tests (test_uv_transport.c, test_uv_tls.c): a loop with a
 * ticking timer and a counting allocator, endpoints (a transport and what its callbacks saw),
 * raw libuv sockets playing hostile or minimal peers, and a fake server. Every wait is bounded:
 * a 1 ms repeating timer keeps the loop turning and WAIT gives up at its deadline, so a broken
 * transport fails a CHECK instead of hanging. Include harness.h first. */
#ifndef CRAFT_TEST_TRANSPORT_FIXTURE_H
#define CRAFT_TEST_TRANSPORT_FIXTURE_H

#include <uv.h>

#include "uv/transport_internal.h"
#include "wire/internal.h"
#include "wire_util.h"

#define TF_UNUSED __attribute__((unused))

/* --- A loop, a ticking timer, a counting allocator -------------------------------- */

struct fx {
    uv_loop_t loop;
    uv_timer_t tick;
    struct wu_alloc_stats mem;
    struct craft_allocator alloc;
};

/* Allocated per test and never reused, so a test that fails half-way (leaving handles open)
 * cannot corrupt the next one. */
TF_UNUSED static struct fx *F;

TF_UNUSED static void on_tick(uv_timer_t *h)
{
    (void)h; /* only makes UV_RUN_ONCE return */
}

TF_UNUSED static void fx_init(void)
{
    F = calloc(1, sizeof *F);
    F->alloc = wu_allocator(&F->mem);
    uv_loop_init(&F->loop);
    uv_timer_init(&F->loop, &F->tick);
    uv_timer_start(&F->tick, on_tick, 1, 1);
}

TF_UNUSED static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

TF_UNUSED static bool spin(uint64_t deadline)
{
    if (now_ms() >= deadline) {
        return false;
    }
    uv_run(&F->loop, UV_RUN_ONCE);
    return true;
}

/* Runs the loop until expr holds or ms pass; then CHECK(expr) says which. */
#define WAIT(expr, ms)                                                                             \
    do {                                                                                           \
        uint64_t wait_deadline_ = now_ms() + (ms);                                                 \
        while (!(expr) && spin(wait_deadline_)) {                                                  \
        }                                                                                          \
    } while (0)

/* Closes the tick timer, lets every close callback run, and checks nothing is left. */
#define FX_FINI()                                                                                  \
    do {                                                                                           \
        int fini_rc_ = UV_EBUSY;                                                                   \
        uv_close((uv_handle_t *)&F->tick, NULL);                                                   \
        for (int i_ = 0; i_ < 1000 && fini_rc_ != 0; i_++) {                                       \
            uv_run(&F->loop, UV_RUN_NOWAIT);                                                       \
            fini_rc_ = uv_loop_close(&F->loop);                                                    \
        }                                                                                          \
        CHECK_EQ(fini_rc_, 0);                                                                     \
        CHECK_EQ(F->mem.live, 0);                                                                  \
        free(F);                                                                                   \
        F = NULL;                                                                                  \
    } while (0)

/* --- Endpoints: a transport and what its callbacks saw --------------------------------------- */

struct ep {
    struct craft__transport *t;
    craft_id id;
    char addr[CRAFT_ADDRESS_MAX];
    /* recv */
    int received;
    int raft_received;
    craft_id last_from;
    const struct craft_wire_message *expect; /* when set: received[i] must equal expect[i] */
    size_t n_expect;
    int matched, mismatched;
    bool track_ctx; /* AppendEntries ctx must count up from next_ctx */
    uint64_t next_ctx;
    int out_of_order;
    bool reply_requests; /* answer each Request with a Response echoing it */
    int requests;
    bool close_on_recv; /* close the transport from inside recv */
    /* other callbacks */
    int up, down, conns_closed;
    craft_term term; /* what the term callback says */
    bool closed;
    char logs[16384];
};

TF_UNUSED static void ep_closed(void *data)
{
    ((struct ep *)data)->closed = true;
}

TF_UNUSED static void ep_recv(void *data, struct craft__conn *conn, craft_id from,
                    const struct craft_wire_message *m)
{
    struct ep *e = data;
    size_t i = (size_t)e->received++;

    e->last_from = from;
    if (m->type <= CRAFT_WIRE_RAFT_TYPE_MAX) {
        e->raft_received++;
    }
    if (e->expect != NULL && i < e->n_expect) {
        if (craft__wire_message_equal(&e->expect[i], m)) {
            e->matched++;
        } else {
            e->mismatched++;
        }
    }
    if (e->track_ctx && m->type == CRAFT_MSG_APPEND_ENTRIES) {
        if (m->u.raft.u.append_entries.ctx == e->next_ctx) {
            e->next_ctx++;
        } else {
            e->out_of_order++;
        }
    }
    if (m->type == CRAFT_WIRE_REQUEST) {
        e->requests++;
        if (e->reply_requests && craft__conn_remote_id(conn) == from) {
            struct craft_wire_message r;
            memset(&r, 0, sizeof r);
            r.type = CRAFT_WIRE_RESPONSE;
            r.u.response.from = e->id;
            r.u.response.to = from;
            r.u.response.id = m->u.request.id;
            r.u.response.index = 1234;
            r.u.response.payload = m->u.request.payload;
            r.u.response.size = m->u.request.size;
            craft__transport_reply(e->t, conn, &r);
        }
    }
    if (e->close_on_recv) {
        e->close_on_recv = false;
        craft__transport_close(e->t, ep_closed, e);
    }
}

TF_UNUSED static void ep_peer_state(void *data, craft_id id, bool up)
{
    struct ep *e = data;
    (void)id;
    if (up) {
        e->up++;
    } else {
        e->down++;
    }
}

TF_UNUSED static void ep_conn_closed(void *data, struct craft__conn *conn)
{
    (void)conn;
    ((struct ep *)data)->conns_closed++;
}

TF_UNUSED static void ep_log(void *data, int level, const char *line)
{
    struct ep *e = data;
    size_t n = strlen(e->logs);
    if (getenv("CRAFT_TEST_VERBOSE") != NULL) {
        fprintf(stderr, "[%llu] %d %s\n", (unsigned long long)e->id, level, line);
    }
    snprintf(e->logs + n, sizeof e->logs - n, "%s\n", line);
}

TF_UNUSED static craft_term ep_term(void *data)
{
    return ((struct ep *)data)->term;
}

TF_UNUSED static void opts_init(struct craft__transport_options *o, craft_id id)
{
    craft__transport_options_init(o);
    o->id = id;
    o->cluster_id = 42;
    o->listen_address = "127.0.0.1:0";
    o->backoff_min_ms = 10;
    o->backoff_max_ms = 80;
    o->handshake_timeout_ms = 1000;
    o->seed = id;
    o->alloc = &F->alloc;
}

TF_UNUSED static int ep_open_opts(struct ep *e, const struct craft__transport_options *o)
{
    struct craft__transport_callbacks cb = {e,      ep_recv, ep_peer_state, ep_conn_closed,
                                            ep_log, ep_term};
    int rc;

    memset(e, 0, sizeof *e);
    e->id = o->id;
    rc = craft__transport_open(&F->loop, o, &cb, &e->t);
    if (rc == 0) {
        snprintf(e->addr, sizeof e->addr, "%s", craft__transport_address(e->t));
    }
    return rc;
}

TF_UNUSED static int ep_open(struct ep *e, craft_id id)
{
    struct craft__transport_options o;
    opts_init(&o, id);
    return ep_open_opts(e, &o);
}

TF_UNUSED static void ep_close(struct ep *e)
{
    if (e->t != NULL && !e->closed) {
        craft__transport_close(e->t, ep_closed, e);
    }
    WAIT(e->closed, 3000);
    CHECK(e->closed);
    e->t = NULL;
}

TF_UNUSED static struct craft__transport_stats stats_of(const struct ep *e)
{
    struct craft__transport_stats s;
    craft__transport_stats(e->t, &s);
    return s;
}

/* Opens a and b (ids 1 and 2) dialing each other and waits until both are connected. */
TF_UNUSED static void pair(struct ep *a, struct ep *b)
{
    CHECK_OK(ep_open(a, 1));
    CHECK_OK(ep_open(b, 2));
    CHECK_OK(craft__transport_set_peer(a->t, 2, b->addr));
    CHECK_OK(craft__transport_set_peer(b->t, 1, a->addr));
    WAIT(craft__transport_connected(a->t, 2) && craft__transport_connected(b->t, 1), 3000);
    CHECK(craft__transport_connected(a->t, 2));
    CHECK(craft__transport_connected(b->t, 1));
}

TF_UNUSED static struct craft_wire_message heartbeat(craft_id from, craft_id to, uint64_t ctx)
{
    struct craft_wire_message m;
    memset(&m, 0, sizeof m);
    m.type = CRAFT_MSG_APPEND_ENTRIES;
    m.u.raft.type = CRAFT_MSG_APPEND_ENTRIES;
    m.u.raft.from = from;
    m.u.raft.to = to;
    m.u.raft.term = 1;
    m.u.raft.u.append_entries.ctx = ctx;
    return m;
}

/* --- Raw sockets: hostile or minimal peers --------------------------------------------------- */

struct raw {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    uint8_t out[8192];
    size_t n_out;
    bool shutdown_after; /* half-close after writing out */
    bool no_read;        /* never read (back-pressure) */
    bool connected, eof, closed;
    uint8_t in[1 << 16];
    size_t n_in;
};

TF_UNUSED static void raw_on_close(uv_handle_t *h)
{
    ((struct raw *)h->data)->closed = true;
}

TF_UNUSED static void raw_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct raw *r = h->data;
    (void)suggested;
    if (r->n_in == sizeof r->in) {
        r->n_in = 0; /* we only look at the start of what a peer says */
    }
    buf->base = (char *)r->in + r->n_in;
    buf->len = sizeof r->in - r->n_in;
}

TF_UNUSED static void raw_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct raw *r = s->data;
    (void)buf;
    if (nread > 0) {
        r->n_in += (size_t)nread;
    } else if (nread < 0) {
        r->eof = true;
        if (!uv_is_closing((uv_handle_t *)&r->tcp)) {
            uv_close((uv_handle_t *)&r->tcp, raw_on_close);
        }
    }
}

TF_UNUSED static void raw_written(uv_write_t *req, int status)
{
    (void)req;
    (void)status;
}

TF_UNUSED static void raw_shut(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status;
}

/* Starts reading (unless no_read) and writes out, for a connected socket. */
TF_UNUSED static void raw_go(struct raw *r)
{
    r->connected = true;
    if (!r->no_read) {
        uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read);
    }
    if (r->n_out > 0) {
        uv_buf_t b = uv_buf_init((char *)r->out, (unsigned)r->n_out);
        uv_write(&r->wreq, (uv_stream_t *)&r->tcp, &b, 1, raw_written);
    }
    if (r->shutdown_after) {
        uv_shutdown(&r->sreq, (uv_stream_t *)&r->tcp, raw_shut);
    }
}

TF_UNUSED static void raw_connected(uv_connect_t *req, int status)
{
    struct raw *r = req->data;
    if (status != 0) {
        r->eof = true;
        uv_close((uv_handle_t *)&r->tcp, raw_on_close);
        return;
    }
    raw_go(r);
}

TF_UNUSED static struct raw *raw_new(void)
{
    struct raw *r = calloc(1, sizeof *r);
    uv_tcp_init(&F->loop, &r->tcp);
    r->tcp.data = r;
    r->creq.data = r;
    return r;
}

TF_UNUSED static void raw_add(struct raw *r, const void *bytes, size_t n)
{
    memcpy(r->out + r->n_out, bytes, n);
    r->n_out += n;
}

/* Appends the frame of message m. */
TF_UNUSED static void raw_add_msg(struct raw *r, const struct craft_wire_message *m)
{
    struct craft_wire_buf b;
    craft_wire_buf_init(&b, NULL);
    if (craft_wire_encode_message(&b, m) == 0) {
        raw_add(r, b.base, b.len);
    }
    craft_wire_buf_close(&b);
}

/* Appends a frame around a hand-made body. */
TF_UNUSED static void raw_add_body(struct raw *r, const void *body, size_t n)
{
    uint8_t hdr[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    raw_add(r, hdr, 4);
    raw_add(r, body, n);
}

TF_UNUSED static void raw_connect(struct raw *r, const char *addr)
{
    struct sockaddr_storage sa;
    craft__transport_parse_address(addr, &sa);
    uv_tcp_connect(&r->creq, &r->tcp, (const struct sockaddr *)&sa, raw_connected);
}

/* The same from a chosen source IP (127.0.0.2: another host, as far as the listener can tell;
 * Linux routes all of 127.0.0.0/8 to the loopback interface). */
TF_UNUSED static void raw_connect_from(struct raw *r, const char *addr, const char *from)
{
    struct sockaddr_storage src;
    craft__transport_parse_address(from, &src);
    uv_tcp_bind(&r->tcp, (const struct sockaddr *)&src, 0);
    raw_connect(r, addr);
}

TF_UNUSED static void raw_free(struct raw *r)
{
    if (!uv_is_closing((uv_handle_t *)&r->tcp)) {
        uv_close((uv_handle_t *)&r->tcp, raw_on_close);
    }
    WAIT(r->closed, 2000);
    free(r);
}

TF_UNUSED static struct craft_wire_message handshake(craft_id from, craft_id to, uint64_t cluster)
{
    struct craft_wire_message m;
    memset(&m, 0, sizeof m);
    m.type = CRAFT_WIRE_HANDSHAKE;
    m.u.handshake.from = from;
    m.u.handshake.to = to;
    m.u.handshake.cluster_id = cluster;
    return m;
}

/* A fake server: accepts connections and answers each with a fixed handshake, reading what
 * comes or, with no_read, never reading. */
#define FAKE_MAX 32
struct fake {
    uv_tcp_t listener;
    char addr[CRAFT_ADDRESS_MAX];
    struct craft_wire_message hs;
    bool no_read;
    bool closed;
    struct raw *conns[FAKE_MAX];
    int n;
};

TF_UNUSED static void fake_on_close(uv_handle_t *h)
{
    ((struct fake *)h->data)->closed = true;
}

TF_UNUSED static void fake_accept(uv_stream_t *s, int status)
{
    struct fake *f = s->data;
    struct raw *r;
    if (status != 0 || f->n == FAKE_MAX) {
        return;
    }
    r = raw_new();
    f->conns[f->n++] = r;
    uv_accept(s, (uv_stream_t *)&r->tcp);
    r->no_read = f->no_read;
    raw_add_msg(r, &f->hs);
    raw_go(r);
}

TF_UNUSED static void fake_open(struct fake *f, const struct craft_wire_message *hs, bool no_read)
{
    struct sockaddr_storage sa, bound;
    int len = sizeof bound;
    memset(f, 0, sizeof *f);
    f->hs = *hs;
    f->no_read = no_read;
    uv_tcp_init(&F->loop, &f->listener);
    f->listener.data = f;
    craft__transport_parse_address("127.0.0.1:0", &sa);
    uv_tcp_bind(&f->listener, (const struct sockaddr *)&sa, 0);
    uv_listen((uv_stream_t *)&f->listener, 16, fake_accept);
    uv_tcp_getsockname(&f->listener, (struct sockaddr *)&bound, &len);
    craft__transport_format_address((const struct sockaddr *)&bound, f->addr, sizeof f->addr);
}

TF_UNUSED static void fake_close(struct fake *f)
{
    uv_close((uv_handle_t *)&f->listener, fake_on_close);
    for (int i = 0; i < f->n; i++) {
        raw_free(f->conns[i]);
    }
    WAIT(f->closed, 2000);
}

/* Decodes the frames a raw socket received into msgs (copies of the fixed-size parts). */
TF_UNUSED static size_t decode_all(const struct raw *r, struct craft_wire_message *msgs, size_t max,
                         char *payload, size_t payload_max)
{
    struct craft_wire_decoder d;
    size_t off = 0, n = 0, consumed;
    craft_wire_decoder_init(&d, NULL);
    while (n < max &&
           craft_wire_decode_frame(&d, r->in + off, r->n_in - off, &consumed, &msgs[n]) == 0) {
        if (msgs[n].type == CRAFT_WIRE_RESPONSE) {
            size_t k = msgs[n].u.response.size < payload_max - 1 ? msgs[n].u.response.size
                                                                 : payload_max - 1;
            memcpy(payload, msgs[n].u.response.payload, k);
            payload[k] = '\0';
            msgs[n].u.response.payload = NULL;
        }
        off += consumed;
        n++;
    }
    craft_wire_decoder_close(&d);
    return n;
}

#endif
