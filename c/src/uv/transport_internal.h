/* The transport's private structures, shared by its files:
 *
 *   transport.c  the transport itself: open and close, peers and their reconnect timers,
 *                send and reply, the flush of coalesced writes, fault injection, stats.
 *   conn.c       one TCP connection: dial or accept, read and decode frames, handshake,
 *                write queue, close.
 *   addr.c       "host:port" <-> struct sockaddr.
 *   tls.c        TLS 1.3 through memory BIOs (tls.h), used by conn.c when the transport has a
 *                TLS context: the TLS handshake comes before craft's.
 *   limits.c     resources per source: connections per class and per source IP, the memory
 *                budget of read buffers, who is evicted when they run out.
 *   backoff.c    the seeded PRNG and the reconnect backoff with jitter.
 *
 * Ownership of libuv handles (libuv docs/src/handle.rst): every handle lives inside a heap
 * object of ours (transport, peer, conn, delayed message) that is freed only in the close
 * callback of its last handle. t->handles counts every open handle; when the transport is
 * closing and it reaches 0, the transport is freed and the user's close callback runs.
 */
#ifndef CRAFT_UV_TRANSPORT_INTERNAL_H
#define CRAFT_UV_TRANSPORT_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uv/transport.h"

/* Bytes asked of the socket per read, into the transport's scratch buffer. */
#define CRAFT__READ_CHUNK (64u * 1024u)
/* The longest frame body accepted before the handshake (a handshake takes under 200 bytes). */
#define CRAFT__HANDSHAKE_MAX_FRAME 1024u
/* A member's connection whose read buffer grew beyond this (a big frame) gives it back when it
 * has no partial frame left; other connections give back any buffer then. */
#define CRAFT__READ_KEEP (1024u * 1024u)

/* What a connection is, for the limits of limits.c. */
enum craft__conn_kind {
    CRAFT__KIND_OUTGOING = 1, /* we dialed it: one per peer */
    CRAFT__KIND_PENDING,      /* accepted, handshake not done yet */
    CRAFT__KIND_CLIENT,       /* accepted, handshake done, not a member (a client, or a server
                                 outside our configuration) */
    CRAFT__KIND_MEMBER        /* accepted, handshake done, a server of our configuration */
};

/* Connections per source IP. */
struct craft__source {
    uint8_t ip[16];
    unsigned pending, clients;
};

enum craft__conn_state {
    CRAFT__CONN_CONNECTING = 1, /* outgoing, uv_tcp_connect pending */
    CRAFT__CONN_HANDSHAKE,      /* TCP up, waiting for the other side's handshake */
    CRAFT__CONN_UP,             /* both handshakes exchanged: messages flow */
    CRAFT__CONN_CLOSING         /* uv_close called; freed when both handles are closed */
};

struct craft__peer {
    struct craft__transport *t;
    craft_id id;
    char address[CRAFT_ADDRESS_MAX];
    struct sockaddr_storage addr;
    struct craft__conn *conn; /* the outgoing connection, NULL between attempts */
    uv_timer_t timer;         /* the reconnect delay */
    unsigned backoff_ms;      /* the next delay, before jitter */
    bool up;                  /* reported up through peer_state */
    bool removed;
    struct craft__peer *next;
};

struct craft__write_req;

struct craft__conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* connect timeout, then handshake timeout */
    uv_connect_t connect;
    struct craft__transport *t;
    struct craft__peer *peer; /* outgoing: the peer dialed (NULL once it was removed) */
    int state;                /* enum craft__conn_state */
    int open_handles;         /* of tcp and timer: freed at 0 */
    bool outgoing;
    bool member;     /* incoming from a server of the configuration, its address checked */
    int kind;        /* enum craft__conn_kind */
    uint8_t ip[16];  /* incoming: the source IP (craft__transport_ip_key) */
    uint64_t seq;    /* incoming: accept order (the oldest pending is evicted first) */
    uint64_t last_active; /* uv_now() of the last frame received (idle timeout) */
    unsigned in_flight;   /* Requests received and not answered yet */
    bool announced;  /* handed to the recv callback: conn_closed is owed when it closes */
    bool dirty;      /* on t->dirty: has pending bytes to flush */
    craft_id remote; /* the id from its handshake (the peer's for outgoing) */
    char remote_address[CRAFT_ADDRESS_MAX]; /* the listening address from its handshake */
    char name[CRAFT_ADDRESS_MAX];           /* the socket's other end, for log lines */
    struct sockaddr_storage addr;           /* the same (incoming: the source address) */
    /* Bytes of a partial frame kept between reads; rbuf[0] is the start of a frame. rcap counts
     * in the transport's read budget (t->read_bytes). */
    uint8_t *rbuf;
    size_t rlen, rcap;
    struct craft__tls *tls; /* NULL in plaintext */
    struct craft_wire_decoder dec;
    /* Frames encoded since the last flush; queued counts them plus the bytes handed to
     * uv_write whose callback has not run yet (what back-pressure judges). */
    struct craft_wire_buf pending;
    size_t queued;
    /* Write requests whose write completed, kept with their buffers for the next flushes, so a
     * connection in steady state allocates nothing per message (conn.c). */
    struct craft__write_req *spare;
    unsigned n_spare;
    struct craft__conn *prev, *next; /* t->conns */
    struct craft__conn *next_dirty;
};

/* Fault settings for messages to one server id. */
struct craft__fault {
    craft_id to;
    double drop;
    unsigned delay_min_ms, delay_max_ms;
    bool block;
};

/* A message held back by an injected delay, already encoded. */
struct craft__delayed {
    uv_timer_t timer;
    struct craft__transport *t;
    struct craft__conn *conn; /* NULL once that connection closed: the message is lost */
    struct craft_wire_buf bytes;
    struct craft__delayed *prev, *next;
};

struct craft__transport {
    uv_loop_t *loop;
    struct craft__transport_options o; /* listen_address not kept: see address */
    struct craft__transport_callbacks cb;
    const struct craft_allocator *alloc;
    char address[CRAFT_ADDRESS_MAX]; /* the address actually bound */
    struct sockaddr_storage bound;   /* the same, parsed: outgoing connections leave from its IP */
    uv_tcp_t listener;
    uv_prepare_t prepare; /* flushes writes before the loop blocks */
    uv_check_t check;     /* flushes writes made by read callbacks */
    struct craft__peer *peers;
    struct craft__conn *conns;
    struct craft__conn *dirty;
    uint8_t *scratch; /* CRAFT__READ_CHUNK bytes: every read lands here first */
    struct craft__tls_ctx *tls; /* the security settings for new connections; NULL: plaintext */
    /* Settings posted from another thread (craft__transport_post_security), applied on the
     * loop's thread by the reload handle. */
    uv_async_t reload;
    uv_mutex_t reload_lock;
    bool reload_posted;
    struct craft__tls_ctx *reload_tls;
    size_t read_bytes; /* sum of the connections' rcap: judged against o.read_budget */
    struct craft__source *sources;
    size_t n_sources, cap_sources;
    unsigned n_pending, n_clients;
    uint64_t next_seq;
    struct craft__delayed *delayed;
    struct craft__fault *faults;
    size_t n_faults;
    uint64_t prng;
    struct craft__transport_stats stats;
    size_t handles; /* open handles of the transport and everything it owns */
    bool closing;
    void (*close_cb)(void *data);
    void *close_data;
};

/* --- transport.c --------------------------------------------------------------------------- */
/* The peer with that id (a server of the configuration we dial), or NULL. */
struct craft__peer *craft__transport_find_peer(const struct craft__transport *t, craft_id id);
void craft__transport_log(struct craft__transport *t, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A handle owned by t finished closing. */
void craft__transport_handle_closed(struct craft__transport *t);
/* The outgoing connection of peer completed its handshake. */
void craft__transport_peer_up(struct craft__peer *p);
/* The outgoing connection of peer closed (was_up: after its handshake): schedule a redial. */
void craft__transport_peer_down(struct craft__peer *p, bool was_up);
/* conn has pending bytes: flush them before the loop next blocks. */
void craft__transport_mark_dirty(struct craft__conn *c);
void craft__transport_unmark_dirty(struct craft__conn *c);
/* A connection is closing: delayed messages meant for it are lost. */
void craft__transport_forget_conn(struct craft__conn *c);

/* --- conn.c -------------------------------------------------------------------------------- */
/* Dials p (p->conn is set); on a synchronous failure, schedules a redial. */
void craft__conn_dial(struct craft__peer *p);
/* The listener's connection callback. */
void craft__conn_on_connection(uv_stream_t *server, int status);
/* Appends a frame holding m (or already encoded bytes) to the write queue. CRAFT_EBUSY beyond
 * max_queue_bytes, CRAFT_ENOCONN if the connection is closing. */
int craft__conn_enqueue(struct craft__conn *c, const struct craft_wire_message *m);
int craft__conn_enqueue_bytes(struct craft__conn *c, const void *bytes, size_t n);
/* Hands the pending bytes to uv_write. */
void craft__conn_flush(struct craft__conn *c);
/* Starts closing c. notify: run the callbacks owed (conn_closed, peer_state) and schedule a
 * redial; false only when the whole transport closes. */
void craft__conn_close(struct craft__conn *c, bool notify);

/* --- limits.c ------------------------------------------------------------------------------ */
/* An accepted connection starts as pending; CRAFT_ENOMEM. Makes room first if too many are
 * pending: the oldest pending connection of the source with the most is closed. */
int craft__limits_accepted(struct craft__conn *c);
/* Its handshake is done: it becomes a member or a client. NULL, or why a client is refused
 * (too many clients, or too many from its IP): then the caller refuses it. */
const char *craft__limits_handshaken(struct craft__conn *c, bool member);
/* It is closing: forget it in the counts and the budget. */
void craft__limits_closed(struct craft__conn *c);
/* Whether c may grow its read buffer by `grow` bytes. A member (or our own connection) always
 * may: clients holding the largest buffers are closed to make room, if the budget is spent.
 * Anything else may only within the budget. */
bool craft__limits_may_grow(struct craft__conn *c, size_t grow);
/* Members and our outgoing connections are privileged: never evicted, not counted as clients. */
bool craft__limits_privileged(const struct craft__conn *c);

/* --- addr.c -------------------------------------------------------------------------------- */
/* Parses "a.b.c.d:port", "[v6]:port" or "localhost:port". 0 or CRAFT_EINVAL. */
int craft__transport_parse_address(const char *s, struct sockaddr_storage *out);
/* Formats an IPv4 or IPv6 socket address as the parser reads it. */
void craft__transport_format_address(const struct sockaddr *sa, char *buf, size_t size);
/* Whether two socket addresses have the same IP (ports ignored; an IPv4 address equals its
 * IPv4-mapped IPv6 form). */
bool craft__transport_same_host(const struct sockaddr *a, const struct sockaddr *b);
/* Whether the IP is 0.0.0.0 or :: (listen on every interface). */
bool craft__transport_is_wildcard(const struct sockaddr *sa);
unsigned craft__transport_port(const struct sockaddr *sa);
/* The IP as 16 bytes (IPv4 mapped into IPv6), a key for counting connections per source. */
void craft__transport_ip_key(const struct sockaddr *sa, uint8_t key[16]);

/* --- backoff.c ----------------------------------------------------------------------------- */
/* splitmix64: the next value of the sequence seeded by *state. */
uint64_t craft__transport_rand(uint64_t *state);
/* Uniform in [0, 1). */
double craft__transport_rand_unit(uint64_t *state);
/* Uniform in [lo, hi] (hi >= lo). */
unsigned craft__transport_rand_range(uint64_t *state, unsigned lo, unsigned hi);
/* The delay before a redial: uniform in [backoff / 2, backoff] ("equal jitter": never less
 * than half, so a flapping peer is not hammered, yet peers dialing it spread out). */
unsigned craft__transport_backoff_delay(uint64_t *state, unsigned backoff_ms);
/* The backoff after one more failure: doubled, at most max_ms, at least min_ms. */
unsigned craft__transport_backoff_next(unsigned backoff_ms, unsigned min_ms, unsigned max_ms);

#endif
