/*
 * craft/client.h: a small blocking client for a craft cluster, for programs that are not
 * nodes (command-line tools, tests, load generators). It speaks the wire format's client
 * messages (docs/wire.md): a handshake with server id 0, then CRAFT_WIRE_REQUEST /
 * CRAFT_WIRE_RESPONSE. It follows leader hints by itself: a request sent to a follower that
 * answers CRAFT_ENOTLEADER is retried at the leader it names.
 *
 * Not thread-safe: one client per thread. No libuv: plain blocking sockets with timeouts.
 */
#ifndef CRAFT_CLIENT_H
#define CRAFT_CLIENT_H

#include "craft.h"
#include "craft/security.h"

#ifdef __cplusplus
extern "C" {
#endif

struct craft_client;

/* servers: addresses "host:port" of any members (at least one). */
CRAFT_API int craft_client_open(const char *const *servers, unsigned n_servers,
                                uint64_t cluster_id, unsigned timeout_ms,
                                struct craft_client **out);
/* The same with security settings (craft/security.h; NULL: plaintext), which must match the
 * cluster's: a client certificate signed by a CA the servers trust, or the cluster secret.
 * With verify_id, a server must be the server its certificate names. CRAFT_EINVAL with a
 * description in err (may be NULL) when the settings cannot work. */
CRAFT_API int craft_client_open_secure(const char *const *servers, unsigned n_servers,
                                       uint64_t cluster_id, unsigned timeout_ms,
                                       const struct craft_security *security,
                                       struct craft_client **out, char *err, size_t err_size);
CRAFT_API void craft_client_close(struct craft_client *c);

/* Commits and applies a command; *result (allocated with craft_malloc(NULL), free with
 * craft_free(NULL, ...)) is the state machine's answer, *index where it was applied. Returns
 * 0, CRAFT_EAPPLY (the state machine failed it; *result holds its message), CRAFT_ETIMEDOUT or
 * CRAFT_ENOCONN (outcome unknown: it may or may not have been applied), CRAFT_ENOTLEADER (no
 * leader found in time), ... result, size and index may be NULL. */
CRAFT_API int craft_client_propose(struct craft_client *c, const void *cmd, size_t len,
                                   void **result, size_t *size, craft_index *index);
/* A linearizable read barrier: *index is the read index the leader confirmed. */
CRAFT_API int craft_client_read(struct craft_client *c, craft_index *index);
/* Operators' requests (docs/wire.md, "Administrative requests"). On failure,
 * craft_client_error() says why when the server said (a change refused, a stopped node).
 *
 * The status of a server: *payload (craft_malloc(NULL, ...)) is a msgpack map whose keys are
 * listed in docs/wire.md. Answered by whichever server the client reaches: open the client on
 * one address to ask that server. */
CRAFT_API int craft_client_status(struct craft_client *c, void **payload, size_t *size);
/* A server's metrics as Prometheus text (docs/metrics.md), NUL-terminated. */
CRAFT_API int craft_client_metrics(struct craft_client *c, char **text, size_t *size);
/* A membership change or a leadership transfer, kind CRAFT_WIRE_ADD (server at address, a
 * learner; auto_promote), _REMOVE, _PROMOTE, _DEMOTE or _TRANSFER (server 0: the most
 * up-to-date voter): sent to the leader (hints followed), answered once the change is applied
 * there (*index: its configuration entry) or the leader stepped down (transfer). Errors as the
 * core's (CRAFT_EEXISTS, CRAFT_ENOTFOUND, CRAFT_ESTATE: a learner not caught up, CRAFT_EINVAL,
 * CRAFT_EBUSY: another change kept the leader busy until the deadline), CRAFT_ENOTLEADER (no
 * leader found in time: nothing was done), CRAFT_ETIMEDOUT / CRAFT_ENOCONN (sent, outcome
 * unknown: look at the status). */
CRAFT_API int craft_client_change(struct craft_client *c, int kind, craft_id server,
                                  const char *address, bool auto_promote, craft_index *index);
/* Has the server the client reaches take a snapshot now; *index is what it covers. */
CRAFT_API int craft_client_snapshot(struct craft_client *c, craft_index *index);
/* After a failed request: true if it was sent and no answer came back (CRAFT_ETIMEDOUT or
 * CRAFT_ENOCONN), or the server answered that it gave up waiting for it (CRAFT_ETIMEDOUT): it
 * may or may not have taken effect. False when it was never sent (no server reached, no
 * leader found) or was refused: then it did not. */
CRAFT_API bool craft_client_outcome_unknown(const struct craft_client *c);
/* The server the client is talking to ("" if none). */
CRAFT_API const char *craft_client_server(const struct craft_client *c);
/* Why the last connection attempt failed ("" after a success): a TLS handshake refused, an
 * unknown CA, ... */
CRAFT_API const char *craft_client_error(const struct craft_client *c);

#ifdef __cplusplus
}
#endif

#endif
