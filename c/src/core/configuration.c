/* Cluster configurations: the set of servers, each a voter or a learner (thesis chapter 4).
 *
 * A configuration lives in the log as a CRAFT_ENTRY_CONFIG entry and in snapshot metadata, so it
 * has a byte encoding of its own that any language can read (docs/formats.md):
 *
 *   u8  version (1)
 *   u32 number of servers                      little-endian
 *   per server: u64 id, u8 role | flags << 4, u16 address length, address bytes (no NUL)
 *
 * Decoding is total: every byte string either decodes or yields CRAFT_EMALFORMED, because the
 * bytes may come from the network or a damaged disk. */
#include <string.h>

#include "craft.h"

#define CONF_FORMAT_VERSION 1

void craft_configuration_init(struct craft_configuration *c)
{
    c->n = 0;
    c->servers = NULL;
}

void craft_configuration_close(struct craft_configuration *c, const struct craft_allocator *a)
{
    craft_free(a, c->servers);
    c->servers = NULL;
    c->n = 0;
}

const struct craft_server *craft_configuration_get(const struct craft_configuration *c,
                                                   craft_id id)
{
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].id == id) {
            return &c->servers[i];
        }
    }
    return NULL;
}

int craft_configuration_add(struct craft_configuration *c, const struct craft_allocator *a,
                            craft_id id, const char *address, int role)
{
    if (id == 0 || (role != CRAFT_VOTER && role != CRAFT_LEARNER)) {
        return CRAFT_EINVAL;
    }
    if (address == NULL) {
        address = "";
    }
    size_t len = strlen(address);
    if (len >= CRAFT_ADDRESS_MAX) {
        return CRAFT_EINVAL;
    }
    if (craft_configuration_get(c, id) != NULL) {
        return CRAFT_EEXISTS;
    }
    struct craft_server *s = craft_realloc(a, c->servers, (c->n + 1) * sizeof *s);
    if (s == NULL) {
        return CRAFT_ENOMEM;
    }
    c->servers = s;
    memset(&s[c->n], 0, sizeof s[c->n]);
    s[c->n].id = id;
    s[c->n].role = (uint8_t)role;
    memcpy(s[c->n].address, address, len + 1);
    c->n++;
    return 0;
}

int craft_configuration_copy(struct craft_configuration *dst,
                             const struct craft_configuration *src,
                             const struct craft_allocator *a)
{
    craft_configuration_init(dst);
    if (src->n == 0) {
        return 0;
    }
    dst->servers = craft_malloc(a, src->n * sizeof *dst->servers);
    if (dst->servers == NULL) {
        return CRAFT_ENOMEM;
    }
    memcpy(dst->servers, src->servers, src->n * sizeof *dst->servers);
    dst->n = src->n;
    return 0;
}

unsigned craft_configuration_voters(const struct craft_configuration *c)
{
    unsigned n = 0;
    for (unsigned i = 0; i < c->n; i++) {
        n += c->servers[i].role == CRAFT_VOTER;
    }
    return n;
}

int craft_configuration_encode(const struct craft_configuration *c,
                               const struct craft_allocator *a, void **buf, size_t *size)
{
    size_t total = 1 + 4;
    for (unsigned i = 0; i < c->n; i++) {
        total += 8 + 1 + 2 + strnlen(c->servers[i].address, CRAFT_ADDRESS_MAX - 1);
    }
    uint8_t *p = craft_malloc(a, total);
    if (p == NULL) {
        return CRAFT_ENOMEM;
    }
    uint8_t *w = p;
    *w++ = CONF_FORMAT_VERSION;
    for (int k = 0; k < 4; k++) {
        *w++ = (uint8_t)(c->n >> (8 * k));
    }
    for (unsigned i = 0; i < c->n; i++) {
        const struct craft_server *s = &c->servers[i];
        for (int k = 0; k < 8; k++) {
            *w++ = (uint8_t)(s->id >> (8 * k));
        }
        *w++ = (uint8_t)(s->role | (s->flags << 4));
        size_t len = strnlen(s->address, CRAFT_ADDRESS_MAX - 1);
        *w++ = (uint8_t)len;
        *w++ = (uint8_t)(len >> 8);
        memcpy(w, s->address, len);
        w += len;
    }
    *buf = p;
    *size = total;
    return 0;
}

int craft_configuration_decode(const void *buf, size_t size, const struct craft_allocator *a,
                               struct craft_configuration *out)
{
    const uint8_t *p = buf;
    const uint8_t *end = p + size;
    craft_configuration_init(out);
    if (size < 5) {
        return CRAFT_EMALFORMED;
    }
    if (p[0] != CONF_FORMAT_VERSION) {
        return CRAFT_EVERSION;
    }
    uint32_t n = 0;
    for (int k = 0; k < 4; k++) {
        n |= (uint32_t)p[1 + k] << (8 * k);
    }
    p += 5;
    /* Each server takes at least 11 bytes: reject a count the bytes cannot hold before
     * allocating for it. */
    if ((size_t)(end - p) / 11 < n) {
        return CRAFT_EMALFORMED;
    }
    int rc = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (end - p < 11) {
            rc = CRAFT_EMALFORMED;
            break;
        }
        craft_id id = 0;
        for (int k = 0; k < 8; k++) {
            id |= (craft_id)p[k] << (8 * k);
        }
        uint8_t role = p[8] & 0x0f;
        uint8_t flags = p[8] >> 4;
        size_t len = (size_t)p[9] | ((size_t)p[10] << 8);
        p += 11;
        if (len >= CRAFT_ADDRESS_MAX || (size_t)(end - p) < len) {
            rc = CRAFT_EMALFORMED;
            break;
        }
        char address[CRAFT_ADDRESS_MAX];
        memcpy(address, p, len);
        address[len] = '\0';
        if (memchr(address, '\0', len) != NULL) {
            rc = CRAFT_EMALFORMED;
            break;
        }
        p += len;
        rc = craft_configuration_add(out, a, id, address, role);
        if (rc != 0) {
            if (rc != CRAFT_ENOMEM) {
                rc = CRAFT_EMALFORMED; /* id 0, bad role or duplicate */
            }
            break;
        }
        out->servers[out->n - 1].flags = flags;
    }
    if (rc == 0 && p != end) {
        rc = CRAFT_EMALFORMED; /* trailing bytes */
    }
    if (rc != 0) {
        craft_configuration_close(out, a);
    }
    return rc;
}
