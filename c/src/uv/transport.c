/* The TCP transport (see transport.h): open and close, peers and their reconnect timers, send
 * and reply, the flush of coalesced writes, fault injection and stats. One connection's life
 * (dial, accept, read, handshake, write, close) is in conn.c. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "uv/metrics.h"
#include "uv/tls.h"
#include "uv/transport_internal.h"

void craft__transport_options_init(struct craft__transport_options *o)
{
    memset(o, 0, sizeof *o);
    o->max_frame = CRAFT_WIRE_MAX_FRAME_DEFAULT;
    o->connect_timeout_ms = 1000;
    o->handshake_timeout_ms = 2000;
    o->backoff_min_ms = 50;
    o->backoff_max_ms = 2000;
    o->max_queue_bytes = 64u * 1024u * 1024u;
    o->max_pending = 128;
    o->max_clients = 1024;
    o->max_clients_per_ip = 128;
    o->client_idle_timeout_ms = 60000;
    o->max_client_requests = 256;
    o->read_budget = 128u * 1024u * 1024u;
}

/* Zero means "the default", so that a zeroed options struct works as well as an initialized
 * one. */
static void fill_defaults(struct craft__transport_options *o)
{
    struct craft__transport_options d;
    craft__transport_options_init(&d);
#define DEFAULT(f)                                                                                 \
    if (o->f == 0) {                                                                               \
        o->f = d.f;                                                                                \
    }
    DEFAULT(max_frame)
    DEFAULT(connect_timeout_ms)
    DEFAULT(handshake_timeout_ms)
    DEFAULT(backoff_min_ms)
    DEFAULT(backoff_max_ms)
    DEFAULT(max_queue_bytes)
    DEFAULT(max_pending)
    DEFAULT(max_clients)
    DEFAULT(max_clients_per_ip)
    DEFAULT(client_idle_timeout_ms)
    DEFAULT(max_client_requests)
    DEFAULT(read_budget)
#undef DEFAULT
    if (o->backoff_max_ms < o->backoff_min_ms) {
        o->backoff_max_ms = o->backoff_min_ms;
    }
}

void craft__transport_log(struct craft__transport *t, int level, const char *fmt, ...)
{
    char line[512];
    va_list ap;

    if (t->cb.log == NULL) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    t->cb.log(t->cb.data, level, line);
}

/* --- Closing ------------------------------------------------------------------------------- */

void craft__transport_handle_closed(struct craft__transport *t)
{
    void (*cb)(void *data);
    void *data;

    if (--t->handles > 0 || !t->closing) {
        return;
    }
    /* Every handle is closed, so no libuv callback can reach t any more. */
    cb = t->close_cb;
    data = t->close_data;
    craft_free(t->alloc, t->faults);
    craft__tls_ctx_unref(t->tls);
    craft__tls_ctx_unref(t->reload_tls);
    uv_mutex_destroy(&t->reload_lock);
    craft_free(t->alloc, t->sources);
    craft_free(t->alloc, t->scratch);
    craft_free(t->alloc, t);
    if (cb != NULL) {
        cb(data);
    }
}

static void on_own_handle_closed(uv_handle_t *h)
{
    craft__transport_handle_closed(h->data);
}

static void on_peer_timer_closed(uv_handle_t *h)
{
    struct craft__peer *p = h->data;
    struct craft__transport *t = p->t;
    craft_free(t->alloc, p);
    craft__transport_handle_closed(t);
}

static void on_delayed_closed(uv_handle_t *h)
{
    struct craft__delayed *d = h->data;
    struct craft__transport *t = d->t;
    craft_wire_buf_close(&d->bytes);
    craft_free(t->alloc, d);
    craft__transport_handle_closed(t);
}

static void delayed_unlink(struct craft__delayed *d)
{
    struct craft__transport *t = d->t;
    if (d->prev != NULL) {
        d->prev->next = d->next;
    } else {
        t->delayed = d->next;
    }
    if (d->next != NULL) {
        d->next->prev = d->prev;
    }
    d->prev = d->next = NULL;
}

void craft__transport_close(struct craft__transport *t, void (*cb)(void *data), void *data)
{
    if (t->closing) {
        return;
    }
    t->closing = true;
    t->close_cb = cb;
    t->close_data = data;
    /* Connections stay on t->conns until their handles are closed; close_conn skips those
     * already closing. */
    for (struct craft__conn *c = t->conns; c != NULL; c = c->next) {
        craft__conn_close(c, false);
    }
    while (t->peers != NULL) {
        struct craft__peer *p = t->peers;
        t->peers = p->next;
        p->removed = true;
        uv_close((uv_handle_t *)&p->timer, on_peer_timer_closed);
    }
    while (t->delayed != NULL) {
        struct craft__delayed *d = t->delayed;
        delayed_unlink(d);
        uv_close((uv_handle_t *)&d->timer, on_delayed_closed);
    }
    uv_close((uv_handle_t *)&t->listener, on_own_handle_closed);
    uv_close((uv_handle_t *)&t->prepare, on_own_handle_closed);
    uv_close((uv_handle_t *)&t->check, on_own_handle_closed);
    uv_close((uv_handle_t *)&t->reload, on_own_handle_closed);
}

/* --- Flushing coalesced writes -------------------------------------------------------------
 * Frames accumulate in each connection's pending buffer and go out in one uv_write per
 * connection per loop iteration. The prepare handle runs after timers (the node's tick) and
 * just before the loop polls; the check handle runs right after the poll, so messages sent by
 * read callbacks leave in the same iteration. Nothing sent waits for the loop to block. */

void craft__transport_mark_dirty(struct craft__conn *c)
{
    struct craft__transport *t = c->t;
    if (!c->dirty) {
        c->dirty = true;
        c->next_dirty = t->dirty;
        t->dirty = c;
    }
}

void craft__transport_unmark_dirty(struct craft__conn *c)
{
    struct craft__conn **pp = &c->t->dirty;
    if (!c->dirty) {
        return;
    }
    while (*pp != c) {
        pp = &(*pp)->next_dirty;
    }
    *pp = c->next_dirty;
    c->next_dirty = NULL;
    c->dirty = false;
}

static void flush_all(struct craft__transport *t)
{
    /* A flush that fails closes its connection, whose callbacks may send on others: those
     * join the list and are flushed by this same loop. */
    while (t->dirty != NULL) {
        struct craft__conn *c = t->dirty;
        t->dirty = c->next_dirty;
        c->next_dirty = NULL;
        c->dirty = false;
        craft__conn_flush(c);
    }
}

void craft__transport_flush(struct craft__transport *t)
{
    flush_all(t);
}

static void on_prepare(uv_prepare_t *h)
{
    flush_all(h->data);
}

static void on_check(uv_check_t *h)
{
    flush_all(h->data);
}

/* --- Security settings --------------------------------------------------------------------- */

void craft__transport_set_security(struct craft__transport *t, struct craft__tls_ctx *x)
{
    int before = t->tls != NULL ? craft__tls_ctx_mode(t->tls) : CRAFT_SECURITY_PLAINTEXT;
    int after = x != NULL ? craft__tls_ctx_mode(x) : CRAFT_SECURITY_PLAINTEXT;
    char why[200];

    if (t->closing) {
        return;
    }
    if (x != NULL) {
        craft__tls_ctx_ref(x);
    }
    craft__tls_ctx_unref(t->tls);
    t->tls = x;
    craft__transport_log(t, after == CRAFT_SECURITY_PLAINTEXT ? CRAFT__LOG_WARN : CRAFT__LOG_INFO,
                         "transport: security settings changed: %s",
                         x != NULL ? craft__tls_ctx_describe(x)
                                   : "PLAINTEXT (neither authenticated nor encrypted)");
    for (struct craft__conn *c = t->conns; c != NULL;) {
        struct craft__conn *next = c->next;
        if (c->state != CRAFT__CONN_CLOSING && c->state != CRAFT__CONN_CONNECTING) {
            if (before != after) {
                craft__transport_log(t, CRAFT__LOG_INFO,
                                     "transport: closing connection %s %s: the security mode "
                                     "changed from %s to %s",
                                     c->outgoing ? "to" : "from", c->name,
                                     craft_security_mode_name(before),
                                     craft_security_mode_name(after));
                craft__conn_close(c, true);
            } else if (c->tls != NULL && !craft__tls_still_trusted(c->tls, x, why, sizeof why)) {
                craft__transport_log(t, CRAFT__LOG_WARN,
                                     "transport: closing connection %s %s (server %" PRIu64
                                     "): %s",
                                     c->outgoing ? "to" : "from", c->name, c->remote, why);
                craft__conn_close(c, true);
            }
        }
        /* A close may close others (callbacks): start over from what is left. */
        c = t->closing ? NULL : next;
    }
}

static void on_reload(uv_async_t *h)
{
    struct craft__transport *t = h->data;
    struct craft__tls_ctx *x;
    bool posted;

    uv_mutex_lock(&t->reload_lock);
    posted = t->reload_posted;
    x = t->reload_tls;
    t->reload_posted = false;
    t->reload_tls = NULL;
    uv_mutex_unlock(&t->reload_lock);
    if (posted) {
        craft__transport_set_security(t, x);
    }
    craft__tls_ctx_unref(x);
}

void craft__transport_post_security(struct craft__transport *t, struct craft__tls_ctx *x)
{
    struct craft__tls_ctx *old;

    if (x != NULL) {
        craft__tls_ctx_ref(x);
    }
    uv_mutex_lock(&t->reload_lock);
    old = t->reload_tls;
    t->reload_tls = x;
    t->reload_posted = true;
    uv_mutex_unlock(&t->reload_lock);
    craft__tls_ctx_unref(old); /* posted twice before the loop took it: the later wins */
    uv_async_send(&t->reload);
}

/* --- Open ---------------------------------------------------------------------------------- */

/* Clients must not take every file descriptor: the node needs some to dial its peers and to
 * write its log. At most half the process's limit goes to clients, an eighth to connections
 * still in their handshake. */
static void clamp_to_file_limit(struct craft__transport *t)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) {
        return;
    }
    if (t->o.max_clients > rl.rlim_cur / 2) {
        t->o.max_clients = (unsigned)(rl.rlim_cur / 2);
    }
    if (t->o.max_pending > rl.rlim_cur / 8) {
        t->o.max_pending = (unsigned)(rl.rlim_cur / 8);
    }
    if (t->o.max_pending == 0) {
        t->o.max_pending = 1;
    }
}

int craft__transport_open(uv_loop_t *loop, const struct craft__transport_options *o,
                          const struct craft__transport_callbacks *cb,
                          struct craft__transport **out)
{
    struct craft__transport *t;
    struct sockaddr_storage addr;
    struct sockaddr_storage bound;
    int namelen = sizeof bound;
    int rc;

    *out = NULL;
    if (o->id == 0 || craft__transport_parse_address(o->listen_address, &addr) != 0) {
        return CRAFT_EINVAL;
    }
    t = craft_calloc(o->alloc, 1, sizeof *t);
    if (t == NULL) {
        return CRAFT_ENOMEM;
    }
    t->loop = loop;
    t->o = *o;
    t->o.listen_address = NULL;
    fill_defaults(&t->o);
    if (cb != NULL) {
        t->cb = *cb;
    }
    t->alloc = o->alloc;
    t->prng = o->seed;
    t->scratch = craft_malloc(t->alloc, CRAFT__READ_CHUNK);
    if (t->scratch == NULL || uv_mutex_init(&t->reload_lock) != 0) {
        craft_free(t->alloc, t->scratch);
        craft_free(t->alloc, t);
        return CRAFT_ENOMEM;
    }
    t->o.tls = NULL;
    if (o->tls != NULL) {
        craft__tls_ctx_ref(o->tls);
        t->tls = o->tls;
    }
    clamp_to_file_limit(t);

    rc = uv_tcp_init(loop, &t->listener);
    if (rc != 0) {
        craft__tls_ctx_unref(t->tls);
        uv_mutex_destroy(&t->reload_lock);
        craft_free(t->alloc, t->scratch);
        craft_free(t->alloc, t);
        return CRAFT_EIO;
    }
    t->listener.data = t;
    t->handles = 1;
    rc = uv_tcp_bind(&t->listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)&t->listener, 128, craft__conn_on_connection);
    }
    if (rc == 0) {
        rc = uv_tcp_getsockname(&t->listener, (struct sockaddr *)&bound, &namelen);
    }
    if (rc != 0) {
        craft__transport_log(t, CRAFT__LOG_ERROR, "transport: cannot listen on %s: %s",
                             o->listen_address, uv_strerror(rc));
        /* The listener is open: free t only from its close callback. No callback of the
         * caller's runs (close_cb is NULL). */
        t->closing = true;
        uv_close((uv_handle_t *)&t->listener, on_own_handle_closed);
        return rc == UV_EADDRINUSE ? CRAFT_EADDRINUSE : CRAFT_EIO;
    }
    craft__transport_format_address((const struct sockaddr *)&bound, t->address, sizeof t->address);
    t->bound = bound;

    uv_prepare_init(loop, &t->prepare);
    uv_check_init(loop, &t->check);
    uv_async_init(loop, &t->reload, on_reload);
    t->prepare.data = t;
    t->check.data = t;
    t->reload.data = t;
    t->handles += 3;
    uv_unref((uv_handle_t *)&t->reload);
    uv_prepare_start(&t->prepare, on_prepare);
    uv_check_start(&t->check, on_check);
    /* They only flush: they must not keep the loop alive on their own. */
    uv_unref((uv_handle_t *)&t->prepare);
    uv_unref((uv_handle_t *)&t->check);

    if (t->tls != NULL) {
        craft__transport_log(t, CRAFT__LOG_INFO,
                             "transport: server %" PRIu64 " listening on %s (%s)", t->o.id,
                             t->address, craft__tls_ctx_describe(t->tls));
    } else {
        /* Info, like the line above: every plaintext program would print it otherwise. */
        craft__transport_log(t, CRAFT__LOG_INFO,
                             "transport: server %" PRIu64 " listening on %s in PLAINTEXT: "
                             "connections are neither authenticated nor encrypted, anyone who "
                             "reaches this port can act as a member (docs/security.md)",
                             t->o.id, t->address);
    }
    *out = t;
    return 0;
}

const char *craft__transport_address(const struct craft__transport *t)
{
    return t->address;
}

/* --- Peers --------------------------------------------------------------------------------- */

struct craft__peer *craft__transport_find_peer(const struct craft__transport *t, craft_id id)
{
    for (struct craft__peer *p = t->peers; p != NULL; p = p->next) {
        if (p->id == id) {
            return p;
        }
    }
    return NULL;
}

static void on_redial(uv_timer_t *h)
{
    struct craft__peer *p = h->data;
    if (!p->removed && p->conn == NULL && !p->t->closing) {
        craft__conn_dial(p);
    }
}

void craft__transport_peer_up(struct craft__peer *p)
{
    struct craft__transport *t = p->t;
    /* A successful handshake ends the run of failures. */
    p->backoff_ms = t->o.backoff_min_ms;
    p->up = true;
    craft__transport_log(t, CRAFT__LOG_INFO, "transport: connected to server %" PRIu64 " at %s",
                         p->id, p->address);
    if (t->cb.peer_state != NULL) {
        t->cb.peer_state(t->cb.data, p->id, true);
    }
}

void craft__transport_peer_down(struct craft__peer *p, bool was_up)
{
    struct craft__transport *t = p->t;
    unsigned delay;

    if (was_up && p->up) {
        p->up = false;
        craft__transport_log(t, CRAFT__LOG_INFO,
                             "transport: lost connection to server %" PRIu64 " at %s", p->id,
                             p->address);
        if (t->cb.peer_state != NULL) {
            t->cb.peer_state(t->cb.data, p->id, false);
        }
    }
    /* The callback may have removed the peer, redialed it or closed everything. */
    if (p->removed || t->closing || p->conn != NULL) {
        return;
    }
    delay = craft__transport_backoff_delay(&t->prng, p->backoff_ms);
    p->backoff_ms =
        craft__transport_backoff_next(p->backoff_ms, t->o.backoff_min_ms, t->o.backoff_max_ms);
    uv_timer_start(&p->timer, on_redial, delay, 0);
}

int craft__transport_set_peer(struct craft__transport *t, craft_id id, const char *address)
{
    struct sockaddr_storage addr;
    struct craft__peer *p;

    if (id == 0 || craft__transport_parse_address(address, &addr) != 0) {
        return CRAFT_EINVAL;
    }
    if (t->closing) {
        return CRAFT_ESHUTDOWN;
    }
    if (id == t->o.id) {
        return 0;
    }
    p = craft__transport_find_peer(t, id);
    if (p != NULL) {
        if (strcmp(p->address, address) == 0) {
            return 0;
        }
        craft__transport_log(t, CRAFT__LOG_INFO,
                             "transport: server %" PRIu64 " moved from %s to %s", id, p->address,
                             address);
        strcpy(p->address, address);
        p->addr = addr;
        if (p->conn != NULL) {
            craft__conn_close(p->conn, true); /* schedules a redial after a backoff... */
        }
        if (p->removed || t->closing) {
            return 0; /* ...unless a callback of that close removed it */
        }
        /* ...but the new address deserves a fresh start. */
        p->backoff_ms = t->o.backoff_min_ms;
        uv_timer_start(&p->timer, on_redial, 0, 0);
        return 0;
    }

    p = craft_calloc(t->alloc, 1, sizeof *p);
    if (p == NULL) {
        return CRAFT_ENOMEM;
    }
    p->t = t;
    p->id = id;
    strcpy(p->address, address);
    p->addr = addr;
    p->backoff_ms = t->o.backoff_min_ms;
    uv_timer_init(t->loop, &p->timer);
    p->timer.data = p;
    t->handles++;
    p->next = t->peers;
    t->peers = p;
    craft__conn_dial(p);
    return 0;
}

void craft__transport_remove_peer(struct craft__transport *t, craft_id id)
{
    struct craft__peer **pp = &t->peers;
    struct craft__peer *p;

    while (*pp != NULL && (*pp)->id != id) {
        pp = &(*pp)->next;
    }
    if (*pp == NULL) {
        return;
    }
    p = *pp;
    *pp = p->next;
    p->removed = true;
    if (p->conn != NULL) {
        struct craft__conn *c = p->conn;
        /* Detached first: its close must not schedule a redial of a peer that is gone. */
        c->peer = NULL;
        p->conn = NULL;
        craft__conn_close(c, true);
    }
    uv_close((uv_handle_t *)&p->timer, on_peer_timer_closed);
}

/* The connection to send to server id on: our outgoing one when it is up, else one that server
 * dialed to us. The fallback matters for a server that does not know the others' addresses
 * yet (one started empty to join a cluster learns them only from the configuration in its log):
 * it can still answer the leader that contacted it. */
static struct craft__conn *route(const struct craft__transport *t, craft_id id)
{
    const struct craft__peer *p = craft__transport_find_peer(t, id);
    if (p != NULL && p->conn != NULL && p->conn->state == CRAFT__CONN_UP) {
        return p->conn;
    }
    if (id == 0) {
        return NULL;
    }
    for (struct craft__conn *c = t->conns; c != NULL; c = c->next) {
        if (!c->outgoing && c->remote == id && c->state == CRAFT__CONN_UP) {
            return c;
        }
    }
    return NULL;
}

bool craft__transport_connected(const struct craft__transport *t, craft_id id)
{
    const struct craft__peer *p = craft__transport_find_peer(t, id);
    return p != NULL && p->conn != NULL && p->conn->state == CRAFT__CONN_UP;
}

bool craft__transport_reachable(const struct craft__transport *t, craft_id id)
{
    return route(t, id) != NULL;
}

size_t craft__transport_queued_bytes(const struct craft__transport *t, craft_id id)
{
    const struct craft__peer *p = craft__transport_find_peer(t, id);
    return p != NULL && p->conn != NULL ? p->conn->queued : 0;
}

/* --- Sending ------------------------------------------------------------------------------- */

static struct craft__fault *find_fault(const struct craft__transport *t, craft_id to)
{
    for (size_t i = 0; i < t->n_faults; i++) {
        if (t->faults[i].to == to) {
            return &t->faults[i];
        }
    }
    return NULL;
}

static void on_delayed(uv_timer_t *h)
{
    struct craft__delayed *d = h->data;
    struct craft__transport *t = d->t;

    if (d->conn != NULL) {
        int rc = craft__conn_enqueue_bytes(d->conn, d->bytes.base, d->bytes.len);
        if (rc != 0) {
            t->stats.send_dropped++;
        }
    }
    delayed_unlink(d);
    uv_close((uv_handle_t *)&d->timer, on_delayed_closed);
}

void craft__transport_forget_conn(struct craft__conn *c)
{
    for (struct craft__delayed *d = c->t->delayed; d != NULL; d = d->next) {
        if (d->conn == c) {
            d->conn = NULL;
        }
    }
}

static int send_later(struct craft__transport *t, struct craft__conn *c,
                      const struct craft_wire_message *m, unsigned delay_ms)
{
    struct craft__delayed *d = craft_calloc(t->alloc, 1, sizeof *d);
    int rc;

    if (d == NULL) {
        return CRAFT_ENOMEM;
    }
    /* Encoded now: the caller's buffers may be reused as soon as we return. */
    craft_wire_buf_init(&d->bytes, t->alloc);
    rc = craft_wire_encode_message(&d->bytes, m);
    if (rc != 0) {
        craft_wire_buf_close(&d->bytes);
        craft_free(t->alloc, d);
        return rc;
    }
    d->t = t;
    d->conn = c;
    uv_timer_init(t->loop, &d->timer);
    d->timer.data = d;
    t->handles++;
    d->next = t->delayed;
    if (t->delayed != NULL) {
        t->delayed->prev = d;
    }
    t->delayed = d;
    uv_timer_start(&d->timer, on_delayed, delay_ms, 0);
    return 0;
}

static int send_on(struct craft__transport *t, struct craft__conn *c,
                   const struct craft_wire_message *m)
{
    struct craft__fault *f;
    int rc;

    if (m->type == CRAFT_WIRE_HANDSHAKE) {
        return CRAFT_EINVAL; /* ours to send, once, when the connection opens */
    }
    f = c->remote != 0 ? find_fault(t, c->remote) : NULL;
    if (f != NULL) {
        if (f->block || (f->drop > 0 && craft__transport_rand_unit(&t->prng) < f->drop)) {
            t->stats.fault_dropped++;
            return 0;
        }
        if (f->delay_max_ms > 0) {
            rc = send_later(
                t, c, m, craft__transport_rand_range(&t->prng, f->delay_min_ms, f->delay_max_ms));
            if (rc == 0) {
                t->stats.msgs_sent++;
                craft__traffic_sent(t->o.traffic, c->remote, m->type, t->delayed->bytes.len);
            }
            return rc;
        }
    }
    size_t queued = c->queued;
    rc = craft__conn_enqueue(c, m);
    if (rc == 0) {
        t->stats.msgs_sent++;
        craft__traffic_sent(t->o.traffic, c->remote, m->type, c->queued - queued);
    } else if (rc == CRAFT_EBUSY) {
        t->stats.send_dropped++;
    }
    return rc;
}

int craft__transport_send(struct craft__transport *t, craft_id to,
                          const struct craft_wire_message *m)
{
    if (t->closing) {
        return CRAFT_ESHUTDOWN;
    }
    struct craft__conn *c = route(t, to);
    if (c == NULL) {
        t->stats.send_dropped++;
        return CRAFT_ENOCONN;
    }
    return send_on(t, c, m);
}

int craft__transport_reply(struct craft__transport *t, struct craft__conn *conn,
                           const struct craft_wire_message *m)
{
    if (t->closing) {
        return CRAFT_ESHUTDOWN;
    }
    if (conn == NULL || conn->state != CRAFT__CONN_UP) {
        t->stats.send_dropped++;
        return CRAFT_ENOCONN;
    }
    if (m->type == CRAFT_WIRE_RESPONSE && conn->in_flight > 0) {
        conn->in_flight--; /* a client's request answered (max_client_requests) */
    }
    return send_on(t, conn, m);
}

void craft__transport_stats(const struct craft__transport *t, struct craft__transport_stats *out)
{
    *out = t->stats;
}

/* --- Faults -------------------------------------------------------------------------------- */

void craft__transport_set_faults(struct craft__transport *t, craft_id to, double drop,
                                 unsigned delay_min_ms, unsigned delay_max_ms, bool block)
{
    struct craft__fault *f = find_fault(t, to);

    if (delay_max_ms < delay_min_ms) {
        delay_max_ms = delay_min_ms;
    }
    if (drop <= 0 && delay_max_ms == 0 && !block) {
        if (f != NULL) {
            *f = t->faults[--t->n_faults];
        }
        return;
    }
    if (f == NULL) {
        struct craft__fault *grown =
            craft_realloc(t->alloc, t->faults, (t->n_faults + 1) * sizeof *t->faults);
        if (grown == NULL) {
            craft__transport_log(t, CRAFT__LOG_ERROR,
                                 "transport: out of memory setting faults for server %" PRIu64, to);
            return;
        }
        t->faults = grown;
        f = &t->faults[t->n_faults++];
    }
    f->to = to;
    f->drop = drop;
    f->delay_min_ms = delay_min_ms;
    f->delay_max_ms = delay_max_ms;
    f->block = block;
}
