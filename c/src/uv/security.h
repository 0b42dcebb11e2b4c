/* The node's side of its security settings (security.c). */
#ifndef CRAFT_UV_SECURITY_H
#define CRAFT_UV_SECURITY_H

#include "craft/security.h"
#include "uv/tls.h"

/* The TLS context for s (NULL in plaintext), checked against the node's id: with verify_id its
 * own certificate must name it. 0, or CRAFT_EINVAL / CRAFT_ENOMEM with err set. */
int craft__uv_security_ctx(craft_id id, uint64_t cluster_id, const struct craft_security *s,
                           struct craft__tls_ctx **out, char *err, size_t err_size);

#endif
