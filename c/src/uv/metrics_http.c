/* GET /metrics over HTTP/1.1, from the node's own loop (metrics_address). A monitoring system
 * scrapes it; nothing else is served. It is small on purpose and bounded in everything a
 * client controls:
 *
 *   - at most MAX_CONNS connections at once: a new one closes the oldest (so that idle clients
 *     holding every slot cannot keep the monitoring system out), and the listen backlog never
 *     fills with clients nobody answers;
 *   - a request (line and headers) of at most MAX_REQUEST bytes: beyond, 431 and close;
 *   - TIMEOUT_MS for the whole exchange: a client that sends nothing, or a header a byte a
 *     minute, is answered 408 and closed;
 *   - one request per connection (Connection: close): no pipelining, no keep-alive, no body;
 *   - anything that is not "GET /metrics" (or HEAD) is answered 400, 404 or 405, never
 *     crashes, and costs nothing beyond the bytes read.
 *
 * The text is rendered on the loop thread when the request is complete (metrics.c), as
 * Prometheus 0.0.4, or as OpenMetrics 1.0 when the Accept header asks for
 * application/openmetrics-text. Everything runs on the loop thread. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "uv/node.h"
#include "uv/transport_internal.h"

#define MAX_CONNS 16
#define MAX_REQUEST 8192
#define TIMEOUT_MS 10000

struct hconn;

struct craft__metrics_http {
    struct craft_uv_node *n;
    const struct craft_allocator *alloc; /* n's: n may be gone when a failed open is freed */
    uv_tcp_t listener;
    char address[CRAFT_ADDRESS_MAX];
    struct hconn *conns;
    unsigned n_conns;
    unsigned handles;
    bool closing;
    void (*close_cb)(void *data);
    void *close_data;
};

struct hconn {
    struct craft__metrics_http *h;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t write;
    int handles;
    bool closing;
    bool answered;
    char req[MAX_REQUEST];
    size_t len;
    struct craft_wire_buf out;
    struct hconn *prev, *next;
};

static void maybe_done(struct craft__metrics_http *h)
{
    if (h->closing && h->handles == 0) {
        void (*cb)(void *) = h->close_cb;
        void *data = h->close_data;
        craft_free(h->alloc, h);
        if (cb != NULL) {
            cb(data);
        }
    }
}

static void handle_closed(uv_handle_t *hd)
{
    struct craft__metrics_http *h = hd->data;
    h->handles--;
    maybe_done(h);
}

static void conn_handle_closed(uv_handle_t *hd)
{
    struct hconn *c = hd->data;
    struct craft__metrics_http *h = c->h;
    h->handles--;
    if (--c->handles == 0) {
        craft_wire_buf_close(&c->out);
        craft_free(h->alloc, c);
    }
    maybe_done(h);
}

static void conn_close(struct hconn *c)
{
    if (c->closing) {
        return;
    }
    c->closing = true;
    struct craft__metrics_http *h = c->h;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        h->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    h->n_conns--;
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

static void on_written(uv_write_t *w, int status)
{
    struct hconn *c = w->data;
    (void)status;
    conn_close(c); /* Connection: close */
}

static void respond(struct hconn *c, int code, const char *reason, const char *type,
                    const char *extra, const void *body, size_t len, bool head)
{
    if (c->answered || c->closing) {
        return;
    }
    c->answered = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    char hdr[512];
    int k = snprintf(hdr, sizeof hdr,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n",
                     code, reason, type, len, extra);
    if (k < 0 || (size_t)k >= sizeof hdr || craft_wire_buf_reserve(&c->out, (size_t)k + len) != 0) {
        conn_close(c);
        return;
    }
    memcpy(c->out.base, hdr, (size_t)k);
    c->out.len = (size_t)k;
    if (!head && len > 0) {
        memcpy(c->out.base + c->out.len, body, len);
        c->out.len += len;
    }
    uv_buf_t b = uv_buf_init((char *)c->out.base, (unsigned)c->out.len);
    c->write.data = c;
    if (uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        conn_close(c);
    }
}

static void respond_text(struct hconn *c, int code, const char *reason, const char *extra,
                         const char *text)
{
    respond(c, code, reason, "text/plain; charset=utf-8", extra, text, strlen(text), false);
}

/* Case-insensitive search of needle in [s, s + n). */
static bool contains_ci(const char *s, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++) {
        size_t j = 0;
        while (j < m && tolower((unsigned char)s[i + j]) == tolower((unsigned char)needle[j])) {
            j++;
        }
        if (j == m) {
            return true;
        }
    }
    return false;
}

/* Whether an Accept header among the header lines [s, s + n) asks for OpenMetrics. */
static bool wants_openmetrics(const char *s, size_t n)
{
    const char *end = s + n;
    while (s < end) {
        const char *eol = memchr(s, '\n', (size_t)(end - s));
        size_t len = eol != NULL ? (size_t)(eol - s) : (size_t)(end - s);
        if (len > 7 && contains_ci(s, 7, "accept:") &&
            contains_ci(s + 7, len - 7, "application/openmetrics-text")) {
            return true;
        }
        s += len + 1;
    }
    return false;
}

/* A whole request is in c->req[0, len) (up to and including the blank line). */
static void serve(struct hconn *c, size_t len)
{
    const char *r = c->req;
    const char *eol = memchr(r, '\n', len);
    size_t line = (size_t)(eol - r);
    if (line > 0 && r[line - 1] == '\r') {
        line--;
    }
    for (size_t i = 0; i < line; i++) {
        if (!isprint((unsigned char)r[i])) {
            respond_text(c, 400, "Bad Request", "", "bad request line\n");
            return;
        }
    }
    /* METHOD SP TARGET SP HTTP/1.x */
    const char *sp1 = memchr(r, ' ', line);
    const char *sp2 = sp1 != NULL ? memchr(sp1 + 1, ' ', line - (size_t)(sp1 + 1 - r)) : NULL;
    if (sp1 == NULL || sp2 == NULL || sp2 == sp1 + 1 ||
        (size_t)(r + line - (sp2 + 1)) != 8 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0) {
        respond_text(c, 400, "Bad Request", "", "expected: GET /metrics HTTP/1.1\n");
        return;
    }
    size_t mlen = (size_t)(sp1 - r), tlen = (size_t)(sp2 - sp1 - 1);
    const char *target = sp1 + 1;
    bool head = mlen == 4 && memcmp(r, "HEAD", 4) == 0;
    if (!head && !(mlen == 3 && memcmp(r, "GET", 3) == 0)) {
        respond_text(c, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n",
                     "only GET /metrics is served\n");
        return;
    }
    bool metrics = (tlen == 8 && memcmp(target, "/metrics", 8) == 0) ||
                   (tlen > 8 && memcmp(target, "/metrics?", 9) == 0);
    if (!metrics) {
        respond_text(c, 404, "Not Found", "", "only /metrics is served here\n");
        return;
    }
    bool om = wants_openmetrics(eol + 1, len - line - 1);
    struct craft_uv_node *n = c->h->n;
    craft__uv_publish_status(n);
    struct craft_wire_buf b;
    craft_wire_buf_init(&b, n->alloc);
    if (craft__uv_metrics_render(n, &n->status, om, &b) != 0) {
        craft_wire_buf_close(&b);
        respond_text(c, 500, "Internal Server Error", "", "out of memory\n");
        return;
    }
    respond(c, 200, "OK",
            om ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
               : "text/plain; version=0.0.4; charset=utf-8",
            "", b.base, b.len, head);
    craft_wire_buf_close(&b);
}

/* The end of the headers (the byte after the blank line), or 0 if not yet there. */
static size_t request_end(const char *s, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] == '\n' && s[i + 1] == '\n') {
            return i + 2;
        }
        if (i + 3 < n && s[i] == '\r' && s[i + 1] == '\n' && s[i + 2] == '\r' &&
            s[i + 3] == '\n') {
            return i + 4;
        }
    }
    return 0;
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    struct hconn *c = hd->data;
    (void)suggested;
    /* Reads land straight in the request buffer; one byte is kept to notice overflow. */
    buf->base = c->req + c->len;
    buf->len = MAX_REQUEST - c->len;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct hconn *c = s->data;
    (void)buf;
    if (c->closing || c->answered) {
        return;
    }
    if (nread < 0) {
        conn_close(c); /* EOF or an error before a whole request: nothing to answer */
        return;
    }
    size_t from = c->len > 3 ? c->len - 3 : 0;
    c->len += (size_t)nread;
    size_t end = request_end(c->req + from, c->len - from);
    if (end != 0) {
        serve(c, from + end);
        return;
    }
    if (c->len >= MAX_REQUEST) {
        respond_text(c, 431, "Request Header Fields Too Large", "", "request too large\n");
    }
}

static void on_timeout(uv_timer_t *t)
{
    struct hconn *c = t->data;
    if (!c->answered) {
        respond_text(c, 408, "Request Timeout", "", "no whole request in time\n");
    } else {
        conn_close(c); /* the client does not read its answer */
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    struct craft__metrics_http *h = server->data;
    if (status != 0 || h->closing) {
        return;
    }
    struct hconn *c = craft_calloc(h->alloc, 1, sizeof *c);
    if (c == NULL) {
        return; /* the connection waits in the backlog; a later accept takes it */
    }
    c->h = h;
    craft_wire_buf_init(&c->out, h->alloc);
    uv_tcp_init(server->loop, &c->tcp);
    uv_timer_init(server->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles = 2;
    h->handles += 2;
    c->next = h->conns;
    if (h->conns != NULL) {
        h->conns->prev = c;
    }
    h->conns = c;
    h->n_conns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    if (h->n_conns > MAX_CONNS) {
        struct hconn *oldest = h->conns;
        while (oldest->next != NULL) {
            oldest = oldest->next; /* new ones go to the front */
        }
        conn_close(oldest);
    }
    uv_timer_start(&c->timer, on_timeout, TIMEOUT_MS, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_close(c);
    }
}

int craft__metrics_http_open(struct craft_uv_node *n, const char *address,
                             struct craft__metrics_http **out, char *err, size_t cap)
{
    struct sockaddr_storage sa;
    if (craft__transport_parse_address(address, &sa) != 0) {
        snprintf(err, cap, "\"%s\" is not host:port with a numeric host", address);
        return CRAFT_EINVAL;
    }
    struct craft__metrics_http *h = craft_calloc(n->alloc, 1, sizeof *h);
    if (h == NULL) {
        snprintf(err, cap, "out of memory");
        return CRAFT_ENOMEM;
    }
    h->n = n;
    h->alloc = n->alloc;
    uv_tcp_init(n->loop, &h->listener);
    h->listener.data = h;
    h->handles = 1;
    int rc = uv_tcp_bind(&h->listener, (const struct sockaddr *)&sa, 0);
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)&h->listener, 64, on_connection);
    }
    if (rc != 0) {
        snprintf(err, cap, "cannot listen on %s: %s", address, uv_strerror(rc));
        /* Freed once the loop runs (a handle's close is asynchronous). */
        h->closing = true;
        uv_close((uv_handle_t *)&h->listener, handle_closed);
        return rc == UV_EADDRINUSE ? CRAFT_EADDRINUSE : CRAFT_EIO;
    }
    struct sockaddr_storage bound;
    int len = sizeof bound;
    if (uv_tcp_getsockname(&h->listener, (struct sockaddr *)&bound, &len) == 0) {
        craft__transport_format_address((const struct sockaddr *)&bound, h->address,
                                        sizeof h->address);
    } else {
        snprintf(h->address, sizeof h->address, "%s", address);
    }
    craft__uv_log(n, CRAFT_UV_INFO, "event=metrics_listen address=%s (GET /metrics)", h->address);
    *out = h;
    return 0;
}

const char *craft__metrics_http_address(const struct craft__metrics_http *h)
{
    return h != NULL ? h->address : "";
}

void craft__metrics_http_close(struct craft__metrics_http *h, void (*cb)(void *data),
                               void *data)
{
    h->closing = true;
    h->close_cb = cb;
    h->close_data = data;
    while (h->conns != NULL) {
        conn_close(h->conns);
    }
    uv_close((uv_handle_t *)&h->listener, handle_closed);
}
