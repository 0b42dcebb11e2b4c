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
/* The server the client is talking to ("" if none). */
CRAFT_API const char *craft_client_server(const struct craft_client *c);
/* Why the last connection attempt failed ("" after a success): a TLS handshake refused, an
 * unknown CA, ... */
CRAFT_API const char *craft_client_error(const struct craft_client *c);

#ifdef __cplusplus
}
#endif

#endif
