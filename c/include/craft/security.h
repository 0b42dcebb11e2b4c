/*
 * craft/security.h: who may talk to a node (docs/security.md).
 *
 * Three modes, for peers and clients alike:
 *
 *   CRAFT_SECURITY_PLAINTEXT  nothing is authenticated or encrypted: anyone who reaches the port
 *                             can act as a member. Named as such in the log.
 *   CRAFT_SECURITY_TLS        mutual TLS 1.3 with X.509 certificates: each side presents a
 *                             certificate signed by a CA the other trusts. With verify_id, a
 *                             server's certificate must name its server id (below), so a
 *                             certificate for one server cannot pass for another.
 *   CRAFT_SECURITY_SECRET     TLS 1.3 with an external pre-shared key derived from a cluster
 *                             secret (HKDF-SHA256; a passphrase is stretched with scrypt first),
 *                             for those who will not run a CA. Every holder of the secret is
 *                             trusted as a member.
 *
 * In both TLS modes the TLS handshake completes, and the peer is authenticated, before a single
 * craft frame is read; TLS 1.2 and below are refused.
 *
 * Naming a server id in a certificate: a subjectAltName URI "craft:server:<id>" (e.g.
 * `openssl ... -addext "subjectAltName=URI:craft:server:2"`), or, when the certificate has no
 * such URI, a subject common name "craft-server-<id>". A certificate naming no id is a client's.
 *
 * Rotation without downtime: a CA file may hold several CA certificates (old and new trusted
 * during the change), and a node accepts a second secret (accept_secret_file or
 * accept_passphrase) besides the one it connects with. craft_uv_set_security() swaps the
 * settings of a running node; docs/security.md gives the steps.
 */
#ifndef CRAFT_SECURITY_H
#define CRAFT_SECURITY_H

#include <stdbool.h>
#include <stdint.h>

#include "craft.h"

#ifdef __cplusplus
extern "C" {
#endif

enum craft_security_mode {
    CRAFT_SECURITY_PLAINTEXT = 0,
    CRAFT_SECURITY_TLS = 1,
    CRAFT_SECURITY_SECRET = 2
};

/* Paths are read when the settings are applied (craft_uv_node_new, craft_uv_set_security,
 * craft_client_open_secure); the strings need not outlive that call. */
struct craft_security {
    int mode; /* enum craft_security_mode */
    /* CRAFT_SECURITY_TLS: PEM files. */
    const char *cert_file; /* this side's certificate, optionally followed by intermediates */
    const char *key_file;  /* its private key (unencrypted) */
    const char *ca_file;   /* the CA certificate(s) a peer's certificate must chain to */
    bool verify_id;        /* a server's certificate must name the server id it claims */
    /* CRAFT_SECURITY_SECRET: the secret, one of: */
    const char *secret_file; /* a file whose bytes are the secret (trailing whitespace dropped;
                                at least 16 bytes; craft_secret_generate makes one) */
    const char *passphrase;  /* a passphrase, stretched with scrypt (prefer a secret file) */
    /* ... and optionally a second secret that is accepted from others but not used to connect,
     * for the window of a rotation. */
    const char *accept_secret_file;
    const char *accept_passphrase;
};

/* Checks settings without a node: files readable, certificate and key matching, CA present,
 * secret long enough; the keys are derived as a node would (cluster_id is part of the
 * derivation: every node and client of a cluster must use the same). 0, or CRAFT_EINVAL with
 * a description in err (which may be NULL). */
CRAFT_API int craft_security_check(const struct craft_security *s, uint64_t cluster_id,
                                   char *err, size_t err_size);

/* Writes a new random cluster secret to path: 32 bytes from the system's CSPRNG, base64, in a
 * file created with mode 0600 (never replacing an existing file). 0, CRAFT_EEXISTS, CRAFT_EIO. */
CRAFT_API int craft_secret_generate(const char *path);

/* "plaintext", "tls" or "secret". */
CRAFT_API const char *craft_security_mode_name(int mode);

#ifdef __cplusplus
}
#endif

#endif
