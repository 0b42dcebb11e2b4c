/* TLS 1.3 for craft's connections (craft/security.h), with OpenSSL driven through memory BIOs:
 * the caller moves ciphertext between the socket and the TLS object itself, so nothing here
 * touches a socket, blocks or needs a thread. The transport's event loop (conn.c) and the
 * blocking client (client.c) both drive it.
 *
 *   craft__tls_ctx  the settings of one mode (an SSL_CTX, and the derived keys of the secret
 *                   mode), reference-counted: a connection keeps the one it started with
 *                   while a rotation installs another.
 *   craft__tls      one connection's TLS state.
 */
#ifndef CRAFT_UV_TLS_H
#define CRAFT_UV_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "craft.h"
#include "craft/security.h"
#include "craft/wire.h"

struct craft__tls_ctx;
struct craft__tls;

/* Builds the settings of s (mode TLS or SECRET) for cluster_id. 0, or CRAFT_EINVAL with a
 * description in err (a file that cannot be read, a key that does not match its certificate,
 * a CA file with no certificate, a secret too short, ...), CRAFT_ENOMEM. */
int craft__tls_ctx_new(const struct craft_security *s, uint64_t cluster_id,
                       struct craft__tls_ctx **out, char *err, size_t err_size);
void craft__tls_ctx_ref(struct craft__tls_ctx *x);
void craft__tls_ctx_unref(struct craft__tls_ctx *x);
int craft__tls_ctx_mode(const struct craft__tls_ctx *x);
bool craft__tls_ctx_verify_id(const struct craft__tls_ctx *x);
/* The server id this side's own certificate names (0: none, or the secret mode). False when
 * it names two different ids. */
bool craft__tls_ctx_own_id(const struct craft__tls_ctx *x, craft_id *id);
/* For log lines: "TLS 1.3, certificates, server ids verified", ... */
const char *craft__tls_ctx_describe(const struct craft__tls_ctx *x);

/* A connection's TLS: server is the side that accepted. NULL when out of memory. */
struct craft__tls *craft__tls_new(struct craft__tls_ctx *x, bool server);
void craft__tls_free(struct craft__tls *s);

/* Ciphertext that arrived from the peer. 0 or CRAFT_ENOMEM. */
int craft__tls_push(struct craft__tls *s, const void *data, size_t n);
/* Advances the handshake with what was pushed: 1 once it is done (the peer is authenticated),
 * 0 while it needs more from the peer, CRAFT_EIO when it failed, the reason in err. Output to
 * send to the peer may be waiting either way (craft__tls_take_output). */
int craft__tls_handshake(struct craft__tls *s, char *err, size_t err_size);
bool craft__tls_established(const struct craft__tls *s);
/* Plaintext received, after the handshake: 0 with *n > 0 bytes in buf, 0 with *n = 0 when it
 * needs more ciphertext, CRAFT_ENOCONN when the peer closed the TLS session, CRAFT_EIO on an
 * error (reason in err). */
int craft__tls_read(struct craft__tls *s, void *buf, size_t cap, size_t *n, char *err,
                    size_t err_size);
/* Encrypts n bytes of plaintext; the ciphertext waits as output. 0, CRAFT_EIO, CRAFT_ENOMEM. */
int craft__tls_write(struct craft__tls *s, const void *data, size_t n);
/* Bytes of ciphertext waiting to go to the peer, and taking them (appended to out). */
size_t craft__tls_output_size(const struct craft__tls *s);
int craft__tls_take_output(struct craft__tls *s, struct craft_wire_buf *out);

/* After the handshake. *id: the server id the peer's certificate names (0: none, a client's
 * certificate, or the secret mode). Returns false when the certificate names two different ids
 * (such a certificate is refused). */
bool craft__tls_peer_id(const struct craft__tls *s, craft_id *id);
/* Whether this connection's credentials are still accepted under x (after a rotation): the
 * secret it used is one of x's, or the peer's certificate chain verifies against x's CAs. When
 * not, why says so. */
bool craft__tls_still_trusted(const struct craft__tls *s, const struct craft__tls_ctx *x,
                              char *why, size_t why_size);

#endif
