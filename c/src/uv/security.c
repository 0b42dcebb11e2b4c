/* A node's security settings (craft/security.h): built from the configuration when the node
 * opens, and replaced while it runs (craft_uv_set_security) to rotate credentials. The TLS
 * machinery itself is tls.c; the transport applies the settings (transport.c, conn.c). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "uv/node.h"
#include "uv/security.h"
#include "uv/tls.h"

int craft__uv_security_ctx(craft_id id, uint64_t cluster_id, const struct craft_security *s,
                           struct craft__tls_ctx **out, char *err, size_t err_size)
{
    craft_id own;
    int rc;

    *out = NULL;
    if (s->mode == CRAFT_SECURITY_PLAINTEXT) {
        return 0;
    }
    rc = craft__tls_ctx_new(s, cluster_id, out, err, err_size);
    if (rc != 0) {
        return rc;
    }
    /* With verify_id our peers will insist that our certificate names us: say so now rather
     * than be refused by every one of them. */
    if (craft__tls_ctx_verify_id(*out) &&
        (!craft__tls_ctx_own_id(*out, &own) || own != id)) {
        snprintf(err, err_size,
                 "verify_id is on but the certificate %s names %s%llu, not this server (%llu): "
                 "give it a subjectAltName URI craft:server:%llu",
                 s->cert_file, own != 0 ? "server " : "no server id ", (unsigned long long)own,
                 (unsigned long long)id, (unsigned long long)id);
        craft__tls_ctx_unref(*out);
        *out = NULL;
        return CRAFT_EINVAL;
    }
    return 0;
}

int craft_uv_set_security(struct craft_uv_node *n, const struct craft_security *s)
{
    struct craft__tls_ctx *x;
    char err[512] = "";
    int rc;

    if (n == NULL || s == NULL) {
        return CRAFT_EINVAL;
    }
    rc = craft__uv_security_ctx(n->id, n->cfg.cluster_id, s, &x, err, sizeof err);
    if (rc != 0) {
        craft__uv_set_last_error("%s", err[0] != '\0' ? err : craft_strerror(rc));
        return rc;
    }
    uv_mutex_lock(&n->lock);
    if (n->stopping || n->transport == NULL) {
        uv_mutex_unlock(&n->lock);
        craft__tls_ctx_unref(x);
        return CRAFT_ESHUTDOWN;
    }
    /* Under the lock the transport cannot be closed: stopping is set under it first. */
    craft__transport_post_security(n->transport, x);
    uv_mutex_unlock(&n->lock);
    craft__tls_ctx_unref(x);
    /* No log line here: this may be another thread; the transport logs the change. */
    return 0;
}
