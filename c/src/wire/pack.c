/*
 * A small msgpack writer for the runtime's structured payloads: the status a node returns to a
 * CRAFT_WIRE_STATUS request (a map with string keys, docs/wire.md) and the arguments of the
 * administrative requests. Messages themselves are written by encode.c through msgpack-c; these
 * payloads are plain values written byte by byte here, always in the shortest format except
 * for the 16-bit map and array headers of craft_wire_pack_map16/array16, whose counts are
 * patched once the caller knows them.
 */
#include <string.h>

#include "wire/internal.h"

static int put(struct craft_wire_buf *b, const void *bytes, size_t n)
{
    int rc = craft_wire_buf_reserve(b, n);
    if (rc != 0) {
        return rc;
    }
    if (n > 0) {
        memcpy(b->base + b->len, bytes, n);
        b->len += n;
    }
    return 0;
}

/* A one-byte tag followed by v in w big-endian bytes. */
static int put_tagged(struct craft_wire_buf *b, uint8_t tag, uint64_t v, size_t w)
{
    uint8_t out[9];
    out[0] = tag;
    for (size_t i = 0; i < w; i++) {
        out[1 + i] = (uint8_t)(v >> (8 * (w - 1 - i)));
    }
    return put(b, out, 1 + w);
}

int craft_wire_pack_uint(struct craft_wire_buf *b, uint64_t v)
{
    if (v < 0x80) {
        uint8_t c = (uint8_t)v;
        return put(b, &c, 1);
    }
    if (v <= UINT8_MAX) {
        return put_tagged(b, 0xcc, v, 1);
    }
    if (v <= UINT16_MAX) {
        return put_tagged(b, 0xcd, v, 2);
    }
    if (v <= UINT32_MAX) {
        return put_tagged(b, 0xce, v, 4);
    }
    return put_tagged(b, 0xcf, v, 8);
}

int craft_wire_pack_int(struct craft_wire_buf *b, int64_t v)
{
    if (v >= 0) {
        return craft_wire_pack_uint(b, (uint64_t)v);
    }
    if (v >= -32) {
        uint8_t c = (uint8_t)(0xe0 | (uint8_t)(v + 32));
        return put(b, &c, 1);
    }
    /* Two's complement bytes of v, without an implementation-defined conversion. */
    uint64_t u = ~(uint64_t)(-(v + 1));
    if (v >= INT8_MIN) {
        return put_tagged(b, 0xd0, u & 0xff, 1);
    }
    if (v >= INT16_MIN) {
        return put_tagged(b, 0xd1, u & 0xffff, 2);
    }
    if (v >= INT32_MIN) {
        return put_tagged(b, 0xd2, u & 0xffffffffu, 4);
    }
    return put_tagged(b, 0xd3, u, 8);
}

int craft_wire_pack_bool(struct craft_wire_buf *b, bool v)
{
    uint8_t c = v ? 0xc3 : 0xc2;
    return put(b, &c, 1);
}

int craft_wire_pack_nil(struct craft_wire_buf *b)
{
    uint8_t c = 0xc0;
    return put(b, &c, 1);
}

int craft_wire_pack_double(struct craft_wire_buf *b, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    return put_tagged(b, 0xcb, bits, 8);
}

int craft_wire_pack_strn(struct craft_wire_buf *b, const char *s, size_t n)
{
    int rc;
    if (n < 32) {
        uint8_t c = (uint8_t)(0xa0 | n);
        rc = put(b, &c, 1);
    } else if (n <= UINT8_MAX) {
        rc = put_tagged(b, 0xd9, n, 1);
    } else if (n <= UINT16_MAX) {
        rc = put_tagged(b, 0xda, n, 2);
    } else if ((uint64_t)n <= UINT32_MAX) {
        rc = put_tagged(b, 0xdb, n, 4);
    } else {
        return CRAFT_ETOOBIG;
    }
    return rc != 0 ? rc : put(b, s, n);
}

int craft_wire_pack_str(struct craft_wire_buf *b, const char *s)
{
    return craft_wire_pack_strn(b, s, strlen(s));
}

int craft_wire_pack_bin(struct craft_wire_buf *b, const void *data, size_t n)
{
    int rc;
    if (n <= UINT8_MAX) {
        rc = put_tagged(b, 0xc4, n, 1);
    } else if (n <= UINT16_MAX) {
        rc = put_tagged(b, 0xc5, n, 2);
    } else if ((uint64_t)n <= UINT32_MAX) {
        rc = put_tagged(b, 0xc6, n, 4);
    } else {
        return CRAFT_ETOOBIG;
    }
    return rc != 0 ? rc : put(b, data, n);
}

static int pack_container(struct craft_wire_buf *b, uint8_t fix, uint8_t tag16, uint8_t tag32,
                          uint32_t n)
{
    if (n < 16) {
        uint8_t c = (uint8_t)(fix | n);
        return put(b, &c, 1);
    }
    if (n <= UINT16_MAX) {
        return put_tagged(b, tag16, n, 2);
    }
    return put_tagged(b, tag32, n, 4);
}

int craft_wire_pack_map(struct craft_wire_buf *b, uint32_t n)
{
    return pack_container(b, 0x80, 0xde, 0xdf, n);
}

int craft_wire_pack_array(struct craft_wire_buf *b, uint32_t n)
{
    return pack_container(b, 0x90, 0xdc, 0xdd, n);
}

int craft_wire_pack_map16(struct craft_wire_buf *b, size_t *at)
{
    *at = b->len;
    return put_tagged(b, 0xde, 0, 2);
}

int craft_wire_pack_array16(struct craft_wire_buf *b, size_t *at)
{
    *at = b->len;
    return put_tagged(b, 0xdc, 0, 2);
}

int craft_wire_pack_patch16(struct craft_wire_buf *b, size_t at, uint32_t n)
{
    if (n > UINT16_MAX || at + 3 > b->len || (b->base[at] != 0xde && b->base[at] != 0xdc)) {
        return CRAFT_EINVAL;
    }
    b->base[at + 1] = (uint8_t)(n >> 8);
    b->base[at + 2] = (uint8_t)n;
    return 0;
}
