/* The TCP transport of the libuv runtime: one listener, one outgoing connection per peer
 * (reconnected with exponential backoff and jitter), a handshake on every connection, frames of
 * the wire format (c/include/craft/wire.h) with a write queue per connection and back-pressure.
 *
 * It knows nothing of Raft: the node above hands it messages to send to a server id and gets
 * decoded messages back. Everything runs on the loop's thread.
 *
 * Connections. Each server dials every peer it knows (craft__transport_set_peer) and sends on
 * that outgoing connection; it receives on the connections peers dialed to it. A connection is
 * usable once both handshakes were exchanged: each side sends a CRAFT_WIRE_HANDSHAKE first
 * (from = own id, to = the id it dialed or 0, cluster_id, own listening address). A handshake
 * with another cluster id, or whose `to` is not our id (when non-zero), or, on a connection we
 * dialed, whose `from` is not the id we dialed, is refused: the connection is closed, a counter
 * incremented, a log line says why. A client that is not a server (from = 0) may connect and
 * send CRAFT_WIRE_REQUEST messages; responses go back on the same connection.
 *
 * Bad input: a frame that is oversized, truncated at close, undecodable, of an unknown type, or
 * a Raft message before the handshake, closes that connection (counted as a bad frame, logged);
 * a peer that connects and sends nothing is closed after handshake_timeout_ms. Nothing a peer
 * sends can crash the process or stop the node.
 *
 * Details the node relies on (docs/runtime.md, "Transport", says more):
 * - The side that accepted a connection answers the dialer's handshake only after checking it,
 *   so a refused dialer just sees the connection close (only the refusing side counts it).
 * - After the handshake, a Raft message must say from = the id announced in the handshake and
 *   to = our id (else: bad frame); a client (from = 0) may send only CRAFT_WIRE_REQUEST.
 *   Requests and responses are not checked against the handshake: trust the recv `from`
 *   argument, which is the handshake's id, not the message's own from field.
 * - Messages are received on both kinds of connection: responses to requests we sent come back
 *   on our outgoing connection, requests arrive on connections peers dialed.
 * - Sends are coalesced: every frame sent to a connection during one loop iteration goes out in
 *   one uv_write, from a uv_prepare / uv_check handle of the transport (unreferenced: they do
 *   not keep the loop alive).
 * - Callbacks may call any transport function, including close, and are never called from
 *   inside craft__transport_send / reply / set_faults / stats. set_peer (address change) and
 *   remove_peer may call conn_closed (and set_peer also peer_state(false)) before they return.
 *   After craft__transport_close no callback runs but the close callback.
 * - Before the handshake a frame may not exceed 1 KiB (a handshake is ~200 bytes), so a
 *   stranger cannot make us buffer max_frame bytes; a read buffer grows with what a peer
 *   actually sent, never to what it merely announced, and all of them together stay within
 *   read_budget (members first). A client (from = 0) may only send Requests: another type is
 *   refused on its first bytes, before its body is buffered.
 * - Numeric options left 0 take their default (a zeroed options struct works).
 */
#ifndef CRAFT_UV_TRANSPORT_H
#define CRAFT_UV_TRANSPORT_H

#include <uv.h>

#include "craft.h"
#include "craft/wire.h"

struct craft__transport;
struct craft__conn; /* one TCP connection (opaque to the node) */
struct craft__traffic; /* uv/metrics.h */

enum craft__log_level {
    CRAFT__LOG_DEBUG = 0,
    CRAFT__LOG_INFO = 1,
    CRAFT__LOG_WARN = 2,
    CRAFT__LOG_ERROR = 3
};

struct craft__transport_callbacks {
    void *data;
    /* A decoded message arrived on conn from server `from` (0 for a non-server client). The
     * message and everything it points to are valid only during the call. For a
     * CRAFT_WIRE_REQUEST, answer with craft__transport_reply(t, conn, ...). */
    void (*recv)(void *data, struct craft__conn *conn, craft_id from,
                 const struct craft_wire_message *m);
    /* The outgoing connection to peer id went up (true: handshake done) or down (false; only
     * after it was up). Not called for remove_peer nor after close. */
    void (*peer_state)(void *data, craft_id id, bool connected);
    /* A connection closed (conn is invalid after this returns): forget requests from it.
     * Called only for connections that were passed to recv at least once. */
    void (*conn_closed)(void *data, struct craft__conn *conn);
    /* A log line (no trailing newline). */
    void (*log)(void *data, int level, const char *line);
    /* The node's current term (may be NULL). A Raft message whose term is more than
     * CRAFT_WIRE_TERM_AHEAD_MAX above it is refused at decode as a bad frame. */
    craft_term (*term)(void *data);
};

struct craft__transport_options {
    craft_id id;
    uint64_t cluster_id;
    const char *listen_address;    /* "host:port" (IPv4 or [IPv6]); port 0 picks one */
    uint32_t max_frame;            /* default CRAFT_WIRE_MAX_FRAME_DEFAULT */
    unsigned connect_timeout_ms;   /* default 1000 */
    unsigned handshake_timeout_ms; /* default 2000 */
    unsigned backoff_min_ms;       /* first reconnect delay, default 50 */
    unsigned backoff_max_ms;       /* default 2000 */
    size_t max_queue_bytes; /* per connection; beyond it sends fail CRAFT_EBUSY; default 64 MiB */
    /* Resources per source (docs/security.md). Members of the configuration (incoming from a
     * configured server, its address or certificate checked) are not counted as clients and are
     * never evicted: peers can always connect. */
    unsigned max_pending;     /* accepted, handshake not done; default 128. Beyond it the oldest
                                 pending connection of the source IP with the most is closed */
    unsigned max_clients;     /* handshaken non-members (clients, unknown servers), default
                                 1024; beyond it a new one is refused at its handshake */
    unsigned max_clients_per_ip;      /* default 128 */
    unsigned client_idle_timeout_ms;  /* a non-member with no request in flight that sends
                                         nothing for this long is closed; default 60000 */
    unsigned max_client_requests;     /* Requests in flight per non-member connection; more are
                                         answered CRAFT_EBUSY at once; default 256 */
    size_t read_budget; /* bytes of partial frames buffered for all connections together;
                           default 128 MiB. A non-member that needs more is closed; a member
                           that needs more evicts non-members (largest buffer first) */
    uint64_t seed;          /* backoff jitter and fault injection */
    /* TLS settings (uv/tls.h); NULL: plaintext. The transport takes a reference. */
    struct craft__tls_ctx *tls;
    /* Messages and bytes per peer and type, and when each peer was last heard from, are
     * counted here (uv/metrics.h); NULL: not counted. */
    struct craft__traffic *traffic;
    const struct craft_allocator *alloc;
};

struct craft__transport_stats {
    uint64_t msgs_sent, msgs_received;
    uint64_t bytes_sent, bytes_received;
    uint64_t bad_frames;         /* connections closed for bad input */
    uint64_t refused_handshakes; /* wrong cluster or id */
    uint64_t connects, disconnects;
    uint64_t send_dropped;       /* messages refused because of back-pressure or no connection */
    uint64_t handshake_timeouts; /* connections closed for staying silent (no handshake) */
    uint64_t fault_dropped;      /* messages dropped by craft__transport_set_faults */
    uint64_t refused_clients;    /* client quotas (max_clients, max_clients_per_ip) */
    uint64_t evicted;            /* pending connections closed to make room, over-budget ones */
    uint64_t idle_closed;        /* non-members closed after client_idle_timeout_ms */
    uint64_t requests_refused;   /* Requests beyond max_client_requests, answered CRAFT_EBUSY */
};

void craft__transport_options_init(struct craft__transport_options *o);
/* Binds and listens. Returns CRAFT_EINVAL for a bad address or id 0, CRAFT_EIO if it cannot
 * bind (then memory is released once the loop runs: the listener's close is asynchronous),
 * CRAFT_ENOMEM. Addresses are numeric ("127.0.0.1:7001", "[::1]:7001"); "localhost" is taken
 * as 127.0.0.1; no DNS lookups. */
int craft__transport_open(uv_loop_t *loop, const struct craft__transport_options *o,
                          const struct craft__transport_callbacks *cb,
                          struct craft__transport **out);
/* The address actually bound ("127.0.0.1:40123" when port 0 was asked). */
const char *craft__transport_address(const struct craft__transport *t);
/* Adds or updates a peer; the transport starts dialing it. Setting an address that changed
 * reconnects. CRAFT_EINVAL for id 0 or an address that does not parse; our own id is ignored
 * (returns 0, nothing is dialed), so the node may pass every server of a configuration. */
int craft__transport_set_peer(struct craft__transport *t, craft_id id, const char *address);
void craft__transport_remove_peer(struct craft__transport *t, craft_id id);
/* Whether our outgoing connection to id is up (its handshake done). */
bool craft__transport_connected(const struct craft__transport *t, craft_id id);
/* Whether a message to id has a connection to go on (see craft__transport_send). */
bool craft__transport_reachable(const struct craft__transport *t, craft_id id);
/* Sends a message to peer id on the outgoing connection, or, while that is not up, on a
 * connection server id dialed to us (a server that joined empty does not know our address
 * yet, but must still answer us). The message is encoded at once
 * (the caller's buffers may be reused after return). CRAFT_ENOCONN if not connected (the
 * message is dropped: Raft tolerates loss), CRAFT_EBUSY beyond max_queue_bytes. */
int craft__transport_send(struct craft__transport *t, craft_id to,
                          const struct craft_wire_message *m);
/* Sends a message on a specific connection (answers to requests). CRAFT_ENOCONN if that
 * connection is closing, CRAFT_EBUSY beyond max_queue_bytes. */
int craft__transport_reply(struct craft__transport *t, struct craft__conn *conn,
                           const struct craft_wire_message *m);
/* Bytes accepted for peer id's outgoing connection and not yet written to the socket (0 if not
 * connected): for the status. */
size_t craft__transport_queued_bytes(const struct craft__transport *t, craft_id id);
/* The id a connection announced in its handshake (0: a client), and the listening address it
 * announced ("" if none). Valid while the connection is (until conn_closed). */
craft_id craft__conn_remote_id(const struct craft__conn *conn);
const char *craft__conn_remote_address(const struct craft__conn *conn);
void craft__transport_stats(const struct craft__transport *t, struct craft__transport_stats *out);
/* Hands every connection's pending frames to the kernel now, rather than at the end of the
 * loop iteration (before the loop blocks in a write of its own: disk.c). */
void craft__transport_flush(struct craft__transport *t);
/* Closes every connection and the listener; cb runs once all handles are closed (the
 * transport is freed just before; cb may be NULL). Pending writes are discarded. Safe with
 * connections mid-connect, mid-handshake or mid-write, and from inside a callback. */
void craft__transport_close(struct craft__transport *t, void (*cb)(void *data), void *data);

/* Replaces the security settings (NULL: plaintext) on the loop's thread. New connections use
 * them at once. Within the same mode, established connections whose credentials x no longer
 * accepts are closed (a secret dropped from the accepted ones, a certificate whose CA is no
 * longer trusted); a change of mode closes every connection. The transport takes a reference. */
void craft__transport_set_security(struct craft__transport *t, struct craft__tls_ctx *x);
/* The same from any thread, while the transport is open (the caller must guarantee it is not
 * closed meanwhile): the change is applied on the loop's thread shortly after. */
void craft__transport_post_security(struct craft__transport *t, struct craft__tls_ctx *x);

/* Fault injection for tests and fault campaigns (the machines have no tc netem): every message
 * to peer `to` is dropped with probability drop, and delayed by a uniform random [min, max] ms
 * (which reorders). Also one-direction cuts: block(to) drops everything sent to `to`.
 * Applies to send(to) and to replies on connections from server `to`. A dropped message still
 * returns 0 (the network lost it) and counts in fault_dropped. A delayed message is encoded at
 * once and written after the delay on the connection it was meant for, if that is still up.
 * Settings are kept per id, whether or not the peer is known yet; all zero/false clears them. */
void craft__transport_set_faults(struct craft__transport *t, craft_id to, double drop,
                                 unsigned delay_min_ms, unsigned delay_max_ms, bool block);

#endif
