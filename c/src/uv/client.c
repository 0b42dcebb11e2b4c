/* The blocking client (craft/client.h). One TCP connection at a time; on CRAFT_ENOTLEADER it
 * reconnects to the hinted leader, otherwise to the next known server, until the deadline.
 * With TLS or a cluster secret (craft/security.h), the TLS handshake comes first, driven
 * through memory BIOs (tls.h) over the same non-blocking socket and poll() waits. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "craft/client.h"
#include "craft/wire.h"
#include "uv/tls.h"

#define MAX_SERVERS 64

struct craft_client {
    char servers[MAX_SERVERS][CRAFT_ADDRESS_MAX];
    unsigned n_servers;
    unsigned next;
    uint64_t cluster_id;
    unsigned timeout_ms;
    int fd;
    char current[CRAFT_ADDRESS_MAX];
    uint64_t next_id;
    struct craft_wire_buf out;
    struct craft_wire_decoder dec;
    unsigned char *in;
    size_t in_len, in_cap;
    size_t consumed; /* bytes of the last message, dropped at the next receive */
    struct craft__tls_ctx *tls_ctx; /* NULL: plaintext */
    struct craft__tls *tls;         /* this connection's */
    struct craft_wire_buf cipher;   /* ciphertext to send */
    char error[256];                /* why the last connection failed */
    bool unknown; /* the last request was sent and no answer came back */
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int split(const char *addr, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr || (size_t)(colon - addr) >= hcap || strlen(colon + 1) >= pcap) {
        return CRAFT_EINVAL;
    }
    const char *h = addr;
    size_t hl = (size_t)(colon - addr);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    strcpy(port, colon + 1);
    return 0;
}

static void disconnect(struct craft_client *c)
{
    if (c->fd >= 0) {
        close(c->fd);
    }
    craft__tls_free(c->tls);
    c->tls = NULL;
    c->fd = -1;
    c->current[0] = '\0';
    c->in_len = 0;
    c->consumed = 0;
}

static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline) {
            return CRAFT_ETIMEDOUT;
        }
        struct pollfd p = {fd, events, 0};
        int r = poll(&p, 1, (int)(deadline - now));
        if (r > 0) {
            return 0;
        }
        if (r < 0 && errno != EINTR) {
            return CRAFT_EIO;
        }
    }
}

static int send_raw(struct craft_client *c, const void *buf, size_t len, uint64_t deadline)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t k = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k > 0) {
            p += k;
            len -= (size_t)k;
            continue;
        }
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            int rc = wait_fd(c->fd, POLLOUT, deadline);
            if (rc != 0) {
                return rc;
            }
            continue;
        }
        return CRAFT_ENOCONN;
    }
    return 0;
}

/* Sends the ciphertext TLS has waiting. */
static int send_tls_output(struct craft_client *c, uint64_t deadline)
{
    int rc;
    craft_wire_buf_reset(&c->cipher);
    rc = craft__tls_take_output(c->tls, &c->cipher);
    if (rc == 0 && c->cipher.len > 0) {
        rc = send_raw(c, c->cipher.base, c->cipher.len, deadline);
    }
    return rc;
}

static int send_all(struct craft_client *c, const void *buf, size_t len, uint64_t deadline)
{
    if (c->tls == NULL) {
        return send_raw(c, buf, len, deadline);
    }
    if (craft__tls_write(c->tls, buf, len) != 0) {
        return CRAFT_ENOCONN;
    }
    return send_tls_output(c, deadline);
}

/* Receives some ciphertext into TLS (waiting until the deadline). */
static int recv_tls_input(struct craft_client *c, uint64_t deadline)
{
    unsigned char buf[16384];
    for (;;) {
        ssize_t k = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (k > 0) {
            return craft__tls_push(c->tls, buf, (size_t)k);
        }
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            int rc = wait_fd(c->fd, POLLIN, deadline);
            if (rc != 0) {
                return rc;
            }
            continue;
        }
        return CRAFT_ENOCONN;
    }
}

/* Some bytes of the stream into buf: plaintext, decrypted when TLS is on. */
static int recv_some(struct craft_client *c, unsigned char *buf, size_t cap, size_t *n,
                     uint64_t deadline)
{
    *n = 0;
    if (c->tls != NULL) {
        for (;;) {
            int rc = craft__tls_read(c->tls, buf, cap, n, c->error, sizeof c->error);
            if (rc != 0) {
                return CRAFT_ENOCONN;
            }
            if (*n > 0) {
                return 0;
            }
            rc = recv_tls_input(c, deadline);
            if (rc != 0) {
                return rc;
            }
        }
    }
    for (;;) {
        ssize_t k = recv(c->fd, buf, cap, MSG_DONTWAIT);
        if (k > 0) {
            *n = (size_t)k;
            return 0;
        }
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            int rc = wait_fd(c->fd, POLLIN, deadline);
            if (rc != 0) {
                return rc;
            }
            continue;
        }
        return CRAFT_ENOCONN;
    }
}

/* The TLS handshake, on a fresh TCP connection: the server must authenticate to us (and we
 * to it) before craft's handshake. */
static int tls_connect(struct craft_client *c, uint64_t deadline)
{
    c->tls = craft__tls_new(c->tls_ctx, false);
    if (c->tls == NULL) {
        return CRAFT_ENOMEM;
    }
    for (;;) {
        int rc = craft__tls_handshake(c->tls, c->error, sizeof c->error);
        int sent = send_tls_output(c, deadline);
        if (rc < 0) {
            return CRAFT_ENOCONN;
        }
        if (sent != 0) {
            return sent;
        }
        if (rc == 1) {
            return 0;
        }
        rc = recv_tls_input(c, deadline);
        if (rc != 0) {
            snprintf(c->error, sizeof c->error, "TLS handshake with %s: %s", c->current,
                     rc == CRAFT_ETIMEDOUT ? "timed out" : "the server closed the connection");
            return rc;
        }
    }
}

/* Receives one message. The codec decodes without copying, so the message points into c->in:
 * it stays valid until the next receive, which is when its bytes are dropped. */
static int recv_msg(struct craft_client *c, struct craft_wire_message *m, uint64_t deadline)
{
    if (c->consumed > 0) {
        memmove(c->in, c->in + c->consumed, c->in_len - c->consumed);
        c->in_len -= c->consumed;
        c->consumed = 0;
    }
    for (;;) {
        size_t need = 0;
        int rc = craft_wire_frame_length(c->in, c->in_len, CRAFT_WIRE_MAX_FRAME_DEFAULT, &need);
        if (rc == 0) {
            rc = craft_wire_decode_frame(&c->dec, c->in, c->in_len, &c->consumed, m);
            return rc == 0 ? 0 : CRAFT_EMALFORMED;
        }
        if (rc != CRAFT_WIRE_NEED_MORE) {
            return CRAFT_EMALFORMED;
        }
        if (c->in_cap < c->in_len + 65536) {
            size_t cap = c->in_cap ? c->in_cap * 2 : 131072;
            while (cap < c->in_len + 65536) {
                cap *= 2;
            }
            unsigned char *p = craft_realloc(NULL, c->in, cap);
            if (p == NULL) {
                return CRAFT_ENOMEM;
            }
            c->in = p;
            c->in_cap = cap;
        }
        size_t k;
        rc = recv_some(c, c->in + c->in_len, c->in_cap - c->in_len, &k, deadline);
        if (rc != 0) {
            return rc;
        }
        c->in_len += k;
    }
}

static int connect_to(struct craft_client *c, const char *addr, uint64_t deadline)
{
    disconnect(c);
    /* Kept when this attempt only runs out of time: the reason of the previous one says more. */
    char previous[sizeof c->error];
    memcpy(previous, c->error, sizeof previous);
    c->error[0] = '\0';
    char host[CRAFT_ADDRESS_MAX], port[16];
    if (split(addr, host, sizeof host, port, sizeof port) != 0) {
        return CRAFT_EINVAL;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0 || res == NULL) {
        return CRAFT_EINVAL;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(res);
        return CRAFT_EIO;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int r = connect(fd, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    c->fd = fd;
    if (r != 0 && errno != EINPROGRESS) {
        disconnect(c);
        return CRAFT_ENOCONN;
    }
    int rc = wait_fd(fd, POLLOUT, deadline);
    int err = 0;
    socklen_t len = sizeof err;
    if (rc == 0 && (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)) {
        /* Not even TCP: say so, rather than blame the handshake below. */
        snprintf(c->error, sizeof c->error, "connecting to %s: %s", addr,
                 err != 0 ? strerror(err) : "the connection failed");
        rc = CRAFT_ENOCONN;
    }
    if (rc == CRAFT_ETIMEDOUT && c->error[0] == '\0' && previous[0] == '\0') {
        snprintf(c->error, sizeof c->error, "connecting to %s: no answer in time", addr);
    }
    snprintf(c->current, sizeof c->current, "%s", addr);
    if (rc == 0 && c->tls_ctx != NULL) {
        rc = tls_connect(c, deadline);
    }
    if (rc == 0) {
        struct craft_wire_message hs;
        memset(&hs, 0, sizeof hs);
        hs.type = CRAFT_WIRE_HANDSHAKE;
        hs.u.handshake.cluster_id = c->cluster_id;
        craft_wire_buf_reset(&c->out);
        rc = craft_wire_encode_message(&c->out, &hs);
        if (rc == 0) {
            rc = send_all(c, c->out.base, c->out.len, deadline);
        }
    }
    struct craft_wire_message m;
    if (rc == 0) {
        rc = recv_msg(c, &m, deadline);
        /* A client without a cluster id (0) accepts the server's, whatever it is. */
        if (rc == 0 && (m.type != CRAFT_WIRE_HANDSHAKE ||
                        (c->cluster_id != 0 && m.u.handshake.cluster_id != c->cluster_id))) {
            rc = CRAFT_ENOCONN;
        }
        /* With verify_id, the server must be the one its certificate names. */
        craft_id named = 0;
        if (rc == 0 && c->tls != NULL && craft__tls_ctx_verify_id(c->tls_ctx) &&
            (!craft__tls_peer_id(c->tls, &named) || named != m.u.handshake.from)) {
            snprintf(c->error, sizeof c->error,
                     "%s says it is server %llu, its certificate names %llu", addr,
                     (unsigned long long)m.u.handshake.from, (unsigned long long)named);
            rc = CRAFT_ENOCONN;
        }
    }
    if (rc != 0) {
        if (rc == CRAFT_ETIMEDOUT && previous[0] != '\0') {
            /* Cut short by the deadline (a handshake included): why the attempts before it
             * failed says more than that. */
            memcpy(c->error, previous, sizeof c->error);
        } else if (c->error[0] == '\0' && rc == CRAFT_ENOCONN && c->fd >= 0) {
            snprintf(c->error, sizeof c->error,
                     "%s closed the connection during the handshake (another cluster id, or a "
                     "server that requires TLS or a cluster secret)",
                     addr);
        } else if (c->error[0] == '\0') {
            snprintf(c->error, sizeof c->error, "connecting to %s: %s", addr, craft_strerror(rc));
        }
        disconnect(c);
        return rc;
    }
    c->error[0] = '\0';
    return 0;
}

int craft_client_open(const char *const *servers, unsigned n_servers, uint64_t cluster_id,
                      unsigned timeout_ms, struct craft_client **out)
{
    return craft_client_open_secure(servers, n_servers, cluster_id, timeout_ms, NULL, out, NULL,
                                    0);
}

int craft_client_open_secure(const char *const *servers, unsigned n_servers,
                             uint64_t cluster_id, unsigned timeout_ms,
                             const struct craft_security *security, struct craft_client **out,
                             char *err, size_t err_size)
{
    struct craft__tls_ctx *tls = NULL;
    if (servers == NULL || n_servers == 0 || n_servers > MAX_SERVERS || out == NULL) {
        return CRAFT_EINVAL;
    }
    if (security != NULL && security->mode != CRAFT_SECURITY_PLAINTEXT) {
        char why[256] = "";
        int rc = craft__tls_ctx_new(security, cluster_id, &tls, why, sizeof why);
        if (rc != 0) {
            if (err != NULL && err_size > 0) {
                snprintf(err, err_size, "%s", why[0] != '\0' ? why : craft_strerror(rc));
            }
            return rc;
        }
    }
    struct craft_client *c = craft_calloc(NULL, 1, sizeof *c);
    if (c == NULL) {
        craft__tls_ctx_unref(tls);
        return CRAFT_ENOMEM;
    }
    c->tls_ctx = tls;
    craft_wire_buf_init(&c->cipher, NULL);
    for (unsigned i = 0; i < n_servers; i++) {
        if (servers[i] == NULL || strlen(servers[i]) >= CRAFT_ADDRESS_MAX) {
            craft__tls_ctx_unref(tls);
            craft_free(NULL, c);
            return CRAFT_EINVAL;
        }
        strcpy(c->servers[i], servers[i]);
    }
    c->n_servers = n_servers;
    c->cluster_id = cluster_id;
    c->timeout_ms = timeout_ms ? timeout_ms : 10000;
    c->fd = -1;
    craft_wire_buf_init(&c->out, NULL);
    craft_wire_decoder_init(&c->dec, NULL);
    *out = c;
    return 0;
}

void craft_client_close(struct craft_client *c)
{
    if (c == NULL) {
        return;
    }
    disconnect(c);
    craft__tls_ctx_unref(c->tls_ctx);
    craft_wire_buf_close(&c->cipher);
    craft_wire_buf_close(&c->out);
    craft_wire_decoder_close(&c->dec);
    craft_free(NULL, c->in);
    craft_free(NULL, c);
}

const char *craft_client_server(const struct craft_client *c)
{
    return c->fd >= 0 ? c->current : "";
}

const char *craft_client_error(const struct craft_client *c)
{
    return c->error;
}

bool craft_client_outcome_unknown(const struct craft_client *c)
{
    return c->unknown;
}

static void remember(struct craft_client *c, const char *addr)
{
    for (unsigned i = 0; i < c->n_servers; i++) {
        if (strcmp(c->servers[i], addr) == 0) {
            return;
        }
    }
    if (c->n_servers < MAX_SERVERS) {
        strcpy(c->servers[c->n_servers++], addr);
    }
}

static int request(struct craft_client *c, uint8_t kind, const void *cmd, size_t len,
                   void **result, size_t *size, craft_index *index)
{
    uint64_t deadline = now_ms() + c->timeout_ms;
    char hint[CRAFT_ADDRESS_MAX] = "";
    int last = CRAFT_ENOTLEADER;
    /* A server answered "not leader": the cluster is reachable, and a leader it named that
     * cannot be reached (it just died) means no leader, not an unreachable cluster. */
    bool answered = false;
    c->unknown = false;
    while (now_ms() < deadline) {
        int rc = 0;
        if (c->fd < 0) {
            const char *to = hint[0] != '\0' ? hint : c->servers[c->next++ % c->n_servers];
            rc = connect_to(c, to, deadline);
            hint[0] = '\0';
            if (rc != 0) {
                last = answered ? CRAFT_ENOTLEADER : rc == CRAFT_ETIMEDOUT ? rc : CRAFT_ENOCONN;
                struct timespec ts = {0, 20 * 1000000};
                nanosleep(&ts, NULL);
                continue;
            }
        }
        struct craft_wire_message m;
        memset(&m, 0, sizeof m);
        m.type = CRAFT_WIRE_REQUEST;
        m.u.request.id = ++c->next_id;
        m.u.request.kind = kind;
        m.u.request.payload = cmd;
        m.u.request.size = len;
        craft_wire_buf_reset(&c->out);
        rc = craft_wire_encode_message(&c->out, &m);
        if (rc != 0) {
            return rc;
        }
        bool sent = false;
        rc = send_all(c, c->out.base, c->out.len, deadline);
        sent = rc == 0;
        while (rc == 0) {
            rc = recv_msg(c, &m, deadline);
            if (rc == 0 && m.type == CRAFT_WIRE_RESPONSE && m.u.response.id == c->next_id) {
                break;
            }
        }
        if (rc != 0) {
            disconnect(c);
            /* Sent and no answer: it may have been applied. Never resend it blindly. */
            c->unknown = sent;
            return sent ? (rc == CRAFT_ETIMEDOUT ? rc : CRAFT_ENOCONN) : rc;
        }
        const struct craft_wire_response *rs = &m.u.response;
        /* The server gave up waiting for it (a proposal or change appended, not yet applied;
         * a transfer under way): it may still take effect. */
        c->unknown = rs->error == CRAFT_ETIMEDOUT;
        if (rs->error == CRAFT_ENOTLEADER) {
            last = CRAFT_ENOTLEADER;
            answered = true;
            if (rs->leader_address[0] != '\0') {
                snprintf(hint, sizeof hint, "%s", rs->leader_address);
                remember(c, hint);
            } else {
                struct timespec ts = {0, 50 * 1000000};
                nanosleep(&ts, NULL); /* no leader yet: an election is under way */
            }
            disconnect(c);
            continue;
        }
        if (index != NULL) {
            *index = rs->index;
        }
        if (rs->error != 0 && result == NULL) {
            /* Why the server refused (a change refused, a stopped node): for
             * craft_client_error. */
            size_t k = rs->size < sizeof c->error - 1 ? rs->size : sizeof c->error - 1;
            if (k > 0) {
                memcpy(c->error, rs->payload, k);
            }
            c->error[k] = '\0';
        }
        if (result != NULL) {
            *result = NULL;
            if (size != NULL) {
                *size = rs->size;
            }
            if (rs->size > 0) {
                *result = craft_malloc(NULL, rs->size);
                if (*result == NULL) {
                    return CRAFT_ENOMEM;
                }
                memcpy(*result, rs->payload, rs->size);
            }
        }
        return rs->error;
    }
    return last;
}

int craft_client_propose(struct craft_client *c, const void *cmd, size_t len, void **result,
                         size_t *size, craft_index *index)
{
    if (c == NULL || (len > 0 && cmd == NULL)) {
        return CRAFT_EINVAL;
    }
    return request(c, CRAFT_WIRE_PROPOSE, cmd, len, result, size, index);
}

int craft_client_read(struct craft_client *c, craft_index *index)
{
    if (c == NULL) {
        return CRAFT_EINVAL;
    }
    return request(c, CRAFT_WIRE_READ, NULL, 0, NULL, NULL, index);
}

/* ---- operators' requests (docs/wire.md, "Administrative requests") ---------------------- */

/* What the server may take: a little less than what we wait, so that its answer (a timeout
 * included) arrives before we give up, and the outcome is known. */
static uint32_t server_timeout(const struct craft_client *c)
{
    unsigned margin = c->timeout_ms / 10 < 1000 ? c->timeout_ms / 10 : 1000;
    return c->timeout_ms > margin ? c->timeout_ms - margin : 1;
}

static int admin(struct craft_client *c, uint8_t kind, craft_id server, const char *address,
                 bool auto_promote, void **result, size_t *size, craft_index *index)
{
    struct craft_wire_admin a;
    memset(&a, 0, sizeof a);
    a.server = server;
    if (address != NULL) {
        if (strlen(address) >= CRAFT_ADDRESS_MAX) {
            return CRAFT_EINVAL;
        }
        strcpy(a.address, address);
    }
    a.auto_promote = auto_promote;
    a.timeout_ms = server_timeout(c);
    struct craft_wire_buf b;
    craft_wire_buf_init(&b, NULL);
    int rc = craft_wire_admin_encode(&b, &a);
    if (rc == 0) {
        rc = request(c, kind, b.base, b.len, result, size, index);
    }
    craft_wire_buf_close(&b);
    return rc;
}

int craft_client_status(struct craft_client *c, void **payload, size_t *size)
{
    if (c == NULL || payload == NULL || size == NULL) {
        return CRAFT_EINVAL;
    }
    return request(c, CRAFT_WIRE_STATUS, NULL, 0, payload, size, NULL);
}

int craft_client_metrics(struct craft_client *c, char **text, size_t *size)
{
    void *p = NULL;
    size_t n = 0;
    if (c == NULL || text == NULL) {
        return CRAFT_EINVAL;
    }
    int rc = request(c, CRAFT_WIRE_METRICS, NULL, 0, &p, &n, NULL);
    if (rc != 0) {
        craft_free(NULL, p);
        return rc;
    }
    char *t = craft_realloc(NULL, p, n + 1);
    if (t == NULL) {
        craft_free(NULL, p);
        return CRAFT_ENOMEM;
    }
    t[n] = '\0';
    *text = t;
    if (size != NULL) {
        *size = n;
    }
    return 0;
}

int craft_client_change(struct craft_client *c, int kind, craft_id server, const char *address,
                        bool auto_promote, craft_index *index)
{
    if (c == NULL || kind < CRAFT_WIRE_ADD || kind > CRAFT_WIRE_TRANSFER ||
        (kind == CRAFT_WIRE_ADD && (server == 0 || address == NULL || address[0] == '\0')) ||
        (kind != CRAFT_WIRE_TRANSFER && server == 0)) {
        return CRAFT_EINVAL;
    }
    return admin(c, (uint8_t)kind, server, kind == CRAFT_WIRE_ADD ? address : NULL,
                 auto_promote, NULL, NULL, index);
}

int craft_client_snapshot(struct craft_client *c, craft_index *index)
{
    if (c == NULL) {
        return CRAFT_EINVAL;
    }
    return admin(c, CRAFT_WIRE_SNAPSHOT, 0, NULL, false, NULL, NULL, index);
}
