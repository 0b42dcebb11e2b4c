/* The runtime's structured payloads (docs/wire.md, "Administrative requests"): the arguments
 * of an administrative request round-trip and are decoded totally (every truncation and every
 * wrong type refused with a reason), and the msgpack writer produces the standard encodings. */
#include <stdio.h>
#include <string.h>

#include "craft/wire.h"
#include "harness.h"

TEST(admin_roundtrip)
{
    struct craft_wire_buf b;
    craft_wire_buf_init(&b, NULL);
    struct craft_wire_admin a = {7, "10.0.0.7:7000", true, 30000};
    CHECK_OK(craft_wire_admin_encode(&b, &a));
    struct craft_wire_admin out;
    const char *why = NULL;
    CHECK_OK(craft_wire_admin_decode(b.base, b.len, &out, &why));
    CHECK_EQ(out.server, 7);
    CHECK(strcmp(out.address, "10.0.0.7:7000") == 0);
    CHECK(out.auto_promote);
    CHECK_EQ(out.timeout_ms, 30000);
    /* Every strict prefix is refused, with a reason, and leaves out zeroed. */
    for (size_t k = 0; k < b.len; k++) {
        why = NULL;
        CHECK_EQ(craft_wire_admin_decode(b.base, k, &out, &why), CRAFT_EMALFORMED);
        CHECK(why != NULL);
        CHECK_EQ(out.server, 0);
    }
    /* A byte after it too. */
    CHECK_OK(craft_wire_buf_reserve(&b, 1));
    b.base[b.len++] = 0xc0;
    CHECK_EQ(craft_wire_admin_decode(b.base, b.len, &out, &why), CRAFT_EMALFORMED);
    CHECK(strstr(why, "after") != NULL);
    /* An address that is not terminated is refused by the encoder. */
    memset(a.address, 'x', sizeof a.address);
    CHECK_EQ(craft_wire_admin_encode(&b, &a), CRAFT_EINVAL);
    craft_wire_buf_close(&b);
}

TEST(admin_hostile)
{
    static const struct {
        const char *what;
        uint8_t bytes[16];
        size_t len;
    } cases[] = {
        {"not an array", {0x80}, 1},
        {"array of 3", {0x93, 0x01, 0xa0, 0xc2}, 4},
        {"array of 5", {0x95, 0x01, 0xa0, 0xc2, 0x00, 0x00}, 6},
        {"negative id", {0x94, 0xff, 0xa0, 0xc2, 0x00}, 5},
        {"id as a string", {0x94, 0xa1, 'x', 0xa0, 0xc2, 0x00}, 6},
        {"bool as 1", {0x94, 0x01, 0xa0, 0x01, 0x00}, 5},
        {"address as nil", {0x94, 0x01, 0xc0, 0xc2, 0x00}, 5},
        {"address with a NUL", {0x94, 0x01, 0xa2, 'a', 0x00, 0xc2, 0x00}, 7},
        {"timeout beyond 32 bits", {0x94, 0x01, 0xa0, 0xc2, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0}, 13},
        {"declared string past the end", {0x94, 0x01, 0xdb, 0xff, 0xff, 0xff, 0xff}, 7},
        {"declared array of 4 billion", {0xdd, 0xff, 0xff, 0xff, 0xff, 0x00}, 6},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct craft_wire_admin out;
        const char *why = NULL;
        int rc = craft_wire_admin_decode(cases[i].bytes, cases[i].len, &out, &why);
        if (rc != CRAFT_EMALFORMED || why == NULL) {
            fprintf(stderr, "case %s: rc %d\n", cases[i].what, rc);
        }
        CHECK_EQ(rc, CRAFT_EMALFORMED);
    }
    struct craft_wire_admin out;
    CHECK_EQ(craft_wire_admin_decode(NULL, 0, &out, NULL), CRAFT_EMALFORMED);
}

static int bytes_are(const struct craft_wire_buf *b, const uint8_t *want, size_t n)
{
    return b->len == n && memcmp(b->base, want, n) == 0;
}

TEST(pack_standard_encodings)
{
    struct craft_wire_buf b;
    craft_wire_buf_init(&b, NULL);
    static const struct {
        int64_t v;
        uint8_t bytes[9];
        size_t n;
    } ints[] = {
        {0, {0x00}, 1},
        {127, {0x7f}, 1},
        {128, {0xcc, 0x80}, 2},
        {65535, {0xcd, 0xff, 0xff}, 3},
        {65536, {0xce, 0x00, 0x01, 0x00, 0x00}, 5},
        {-1, {0xff}, 1},
        {-32, {0xe0}, 1},
        {-33, {0xd0, 0xdf}, 2},
        {-129, {0xd1, 0xff, 0x7f}, 3},
        {-40000, {0xd2, 0xff, 0xff, 0x63, 0xc0}, 5},
        {INT64_MIN, {0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}, 9},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        craft_wire_buf_reset(&b);
        CHECK_OK(craft_wire_pack_int(&b, ints[i].v));
        CHECK(bytes_are(&b, ints[i].bytes, ints[i].n));
    }
    craft_wire_buf_reset(&b);
    CHECK_OK(craft_wire_pack_uint(&b, UINT64_MAX));
    CHECK(bytes_are(&b, (const uint8_t[]){0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
                    9));
    craft_wire_buf_reset(&b);
    CHECK_OK(craft_wire_pack_str(&b, "id"));
    CHECK_OK(craft_wire_pack_bool(&b, true));
    CHECK_OK(craft_wire_pack_nil(&b));
    CHECK_OK(craft_wire_pack_double(&b, 1.5));
    CHECK(bytes_are(&b, (const uint8_t[]){0xa2, 'i', 'd', 0xc3, 0xc0, 0xcb, 0x3f, 0xf8, 0, 0, 0,
                                           0, 0, 0},
                    14));
    char long_str[40];
    memset(long_str, 'a', sizeof long_str);
    craft_wire_buf_reset(&b);
    CHECK_OK(craft_wire_pack_strn(&b, long_str, sizeof long_str));
    CHECK_EQ(b.base[0], 0xd9);
    CHECK_EQ(b.base[1], 40);
    CHECK_EQ(b.len, 42);
    craft_wire_buf_reset(&b);
    CHECK_OK(craft_wire_pack_bin(&b, "ab", 2));
    CHECK(bytes_are(&b, (const uint8_t[]){0xc4, 0x02, 'a', 'b'}, 4));
    /* A map whose count is patched once known. */
    craft_wire_buf_reset(&b);
    size_t at;
    CHECK_OK(craft_wire_pack_map16(&b, &at));
    CHECK_OK(craft_wire_pack_str(&b, "k"));
    CHECK_OK(craft_wire_pack_uint(&b, 1));
    CHECK_OK(craft_wire_pack_patch16(&b, at, 1));
    CHECK(bytes_are(&b, (const uint8_t[]){0xde, 0x00, 0x01, 0xa1, 'k', 0x01}, 6));
    CHECK_EQ(craft_wire_pack_patch16(&b, at + 1, 1), CRAFT_EINVAL);
    craft_wire_buf_reset(&b);
    CHECK_OK(craft_wire_pack_array(&b, 20));
    CHECK(bytes_are(&b, (const uint8_t[]){0xdc, 0x00, 0x14}, 3));
    craft_wire_buf_close(&b);
}

HARNESS_MAIN()
