/*
 * A bounds-checked msgpack reader for the subset of msgpack the wire format uses: integers,
 * booleans, bin/str and array headers. It exists because msgpack-c's unpacker trusts the
 * lengths the input declares (six bytes can make it ask for 8 GB); here every declared length
 * is compared with the bytes that are really left before anything uses it, and nothing is
 * allocated at all. Integers are accepted in any msgpack format, minimal or not, because other
 * implementations (Lua's, Python's) do not always pick the shortest one.
 */
#include <string.h>

#include "wire/internal.h"

static int fail(struct craft__wire_reader *r, const char *why)
{
    r->error = why;
    return CRAFT_EMALFORMED;
}

static size_t left(const struct craft__wire_reader *r)
{
    return (size_t)(r->end - r->p);
}

/* Big-endian loads of n = 1, 2, 4 or 8 bytes; the caller checked that they are there. */
static uint64_t load_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* Reads the payload of the fixed-width integer format whose first byte c (0xcc..0xd3) was
 * already consumed. Unsigned formats (uint8..uint64) set *u, signed ones (int8..int64) set *s;
 * *is_signed says which. */
static int read_fixed_int(struct craft__wire_reader *r, uint8_t c, uint64_t *u, int64_t *s,
                          bool *is_signed)
{
    static const uint8_t widths[8] = {1, 2, 4, 8, 1, 2, 4, 8};
    size_t w = widths[c - 0xcc];
    if (left(r) < w) {
        return fail(r, "truncated integer");
    }
    uint64_t raw = load_be(r->p, w);
    r->p += w;
    if (c <= 0xcf) {
        *u = raw;
        *is_signed = false;
        return 0;
    }
    /* Sign-extend from w bytes without relying on implementation-defined conversions. */
    unsigned bits = (unsigned)w * 8;
    if (bits < 64 && (raw >> (bits - 1)) != 0) {
        raw |= ~UINT64_C(0) << bits;
    }
    if (raw >> 63) {
        *s = -(int64_t)(~raw) - 1; /* two's complement without overflow */
    } else {
        *s = (int64_t)raw;
    }
    *is_signed = true;
    return 0;
}

int craft__wire_read_uint(struct craft__wire_reader *r, uint64_t *out)
{
    if (r->p >= r->end) {
        return fail(r, "truncated: expected an integer");
    }
    uint8_t c = *r->p++;
    if (c <= 0x7f) {
        *out = c;
        return 0;
    }
    if (c < 0xcc || c > 0xd3) {
        return fail(r, "expected an unsigned integer");
    }
    uint64_t u = 0;
    int64_t s = 0;
    bool is_signed;
    int rc = read_fixed_int(r, c, &u, &s, &is_signed);
    if (rc != 0) {
        return rc;
    }
    if (is_signed) {
        if (s < 0) {
            return fail(r, "negative integer where an unsigned one is expected");
        }
        u = (uint64_t)s;
    }
    *out = u;
    return 0;
}

int craft__wire_read_int(struct craft__wire_reader *r, int64_t *out)
{
    if (r->p >= r->end) {
        return fail(r, "truncated: expected an integer");
    }
    uint8_t c = *r->p++;
    if (c <= 0x7f) {
        *out = c;
        return 0;
    }
    if (c >= 0xe0) {
        *out = (int64_t)c - 256; /* negative fixint: -32..-1 */
        return 0;
    }
    if (c < 0xcc || c > 0xd3) {
        return fail(r, "expected an integer");
    }
    uint64_t u = 0;
    int64_t s = 0;
    bool is_signed;
    int rc = read_fixed_int(r, c, &u, &s, &is_signed);
    if (rc != 0) {
        return rc;
    }
    if (!is_signed) {
        if (u > (uint64_t)INT64_MAX) {
            return fail(r, "integer out of range");
        }
        s = (int64_t)u;
    }
    *out = s;
    return 0;
}

int craft__wire_read_bool(struct craft__wire_reader *r, bool *out)
{
    if (r->p >= r->end) {
        return fail(r, "truncated: expected a boolean");
    }
    uint8_t c = *r->p++;
    if (c == 0xc2 || c == 0xc3) {
        *out = c == 0xc3;
        return 0;
    }
    return fail(r, "expected a boolean");
}

int craft__wire_read_bytes(struct craft__wire_reader *r, const void **data, size_t *size)
{
    if (r->p >= r->end) {
        return fail(r, "truncated: expected bytes");
    }
    uint8_t c = *r->p++;
    size_t w; /* width of the length field */
    uint64_t n;
    if (c >= 0xa0 && c <= 0xbf) {
        w = 0;
        n = c & 0x1f;
    } else if (c == 0xc4 || c == 0xd9) {
        w = 1;
    } else if (c == 0xc5 || c == 0xda) {
        w = 2;
    } else if (c == 0xc6 || c == 0xdb) {
        w = 4;
    } else {
        return fail(r, "expected bin or str");
    }
    if (w > 0) {
        if (left(r) < w) {
            return fail(r, "truncated length of bin or str");
        }
        n = load_be(r->p, w);
        r->p += w;
    }
    if (n > left(r)) {
        return fail(r, "bin or str longer than the bytes left");
    }
    *data = r->p;
    *size = (size_t)n;
    r->p += n;
    return 0;
}

int craft__wire_read_array(struct craft__wire_reader *r, size_t min_size, uint32_t *n)
{
    if (r->p >= r->end) {
        return fail(r, "truncated: expected an array");
    }
    uint8_t c = *r->p++;
    uint64_t count;
    if (c >= 0x90 && c <= 0x9f) {
        count = c & 0x0f;
    } else if (c == 0xdc || c == 0xdd) {
        size_t w = c == 0xdc ? 2 : 4;
        if (left(r) < w) {
            return fail(r, "truncated array header");
        }
        count = load_be(r->p, w);
        r->p += w;
    } else {
        return fail(r, "expected an array");
    }
    /* Division, not multiplication: no overflow whatever the count. */
    if (min_size > 0 && count > left(r) / min_size) {
        return fail(r, "array longer than the bytes left");
    }
    *n = (uint32_t)count;
    return 0;
}

int craft__wire_expect_array(struct craft__wire_reader *r, uint32_t n)
{
    uint32_t got;
    int rc = craft__wire_read_array(r, 1, &got);
    if (rc != 0) {
        return rc;
    }
    if (got != n) {
        return fail(r, "wrong number of fields");
    }
    return 0;
}

int craft__wire_read_address(struct craft__wire_reader *r, char out[CRAFT_ADDRESS_MAX])
{
    const void *data;
    size_t size;
    int rc = craft__wire_read_bytes(r, &data, &size);
    if (rc != 0) {
        return rc;
    }
    if (size >= CRAFT_ADDRESS_MAX) {
        return fail(r, "address too long");
    }
    if (size > 0 && memchr(data, 0, size) != NULL) {
        return fail(r, "NUL byte in an address");
    }
    if (size > 0) {
        memcpy(out, data, size);
    }
    out[size] = '\0';
    return 0;
}
