/*
 * The payload of the administrative requests (CRAFT_WIRE_ADD ... CRAFT_WIRE_SNAPSHOT,
 * docs/wire.md): one msgpack array of exactly 4, [server: uint, address: address,
 * auto_promote: bool, timeout_ms: uint32]. Decoding is total, like every decode of the wire
 * layer: anything else is CRAFT_EMALFORMED with a reason.
 */
#include <string.h>

#include "wire/internal.h"

int craft_wire_admin_encode(struct craft_wire_buf *b, const struct craft_wire_admin *a)
{
    if (b == NULL || a == NULL || !craft__wire_address_ok(a->address)) {
        return CRAFT_EINVAL;
    }
    size_t start = b->len;
    int rc = craft_wire_pack_array(b, 4);
    if (rc == 0) {
        rc = craft_wire_pack_uint(b, a->server);
    }
    if (rc == 0) {
        rc = craft_wire_pack_str(b, a->address);
    }
    if (rc == 0) {
        rc = craft_wire_pack_bool(b, a->auto_promote);
    }
    if (rc == 0) {
        rc = craft_wire_pack_uint(b, a->timeout_ms);
    }
    if (rc != 0) {
        b->len = start;
    }
    return rc;
}

int craft_wire_admin_decode(const void *payload, size_t size, struct craft_wire_admin *out,
                            const char **why)
{
    struct craft__wire_reader r = {payload, (const uint8_t *)payload + size, NULL};
    uint64_t timeout = 0;
    int rc;
    memset(out, 0, sizeof *out);
    if (payload == NULL && size > 0) {
        return CRAFT_EINVAL;
    }
    rc = craft__wire_expect_array(&r, 4);
    if (rc == 0) {
        rc = craft__wire_read_uint(&r, &out->server);
    }
    if (rc == 0) {
        rc = craft__wire_read_address(&r, out->address);
    }
    if (rc == 0) {
        rc = craft__wire_read_bool(&r, &out->auto_promote);
    }
    if (rc == 0) {
        rc = craft__wire_read_uint(&r, &timeout);
    }
    if (rc == 0 && timeout > UINT32_MAX) {
        r.error = "admin request: timeout out of range";
        rc = CRAFT_EMALFORMED;
    }
    if (rc == 0 && r.p != r.end) {
        r.error = "admin request: bytes after the arguments";
        rc = CRAFT_EMALFORMED;
    }
    if (rc != 0) {
        if (why != NULL) {
            *why = r.error != NULL ? r.error : "admin request: malformed arguments";
        }
        memset(out, 0, sizeof *out);
        return CRAFT_EMALFORMED;
    }
    out->timeout_ms = (uint32_t)timeout;
    return 0;
}
