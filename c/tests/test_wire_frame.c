/* Framing: craft_wire_frame_length() finds frame boundaries in a byte stream however the bytes
 * are split into reads, says how much more it needs, and refuses a bad prefix at once. */
#include "harness.h"

#include "wire/internal.h"
#include "wire_util.h"

#define MAX_SAMPLES 64
static struct craft_wire_message samples[MAX_SAMPLES];

TEST(frame_length_basics)
{
    uint8_t b[8] = {0, 0, 0, 3, 0x93, 1, 2, 3};
    size_t n = 99;
    CHECK_EQ(craft_wire_frame_length(b, 0, 0, &n), CRAFT_WIRE_NEED_MORE);
    CHECK_EQ(n, 4);
    CHECK_EQ(craft_wire_frame_length(b, 3, 0, &n), CRAFT_WIRE_NEED_MORE);
    CHECK_EQ(n, 4);
    CHECK_EQ(craft_wire_frame_length(b, 4, 0, &n), CRAFT_WIRE_NEED_MORE);
    CHECK_EQ(n, 7);
    CHECK_EQ(craft_wire_frame_length(b, 6, 0, &n), CRAFT_WIRE_NEED_MORE);
    CHECK_EQ(n, 7);
    CHECK_EQ(craft_wire_frame_length(b, 7, 0, &n), 0);
    CHECK_EQ(n, 7);
    CHECK_EQ(craft_wire_frame_length(b, 8, 0, &n), 0); /* the next frame's first byte */
    CHECK_EQ(n, 7);

    /* Limits: the prefix alone decides. */
    CHECK_EQ(craft_wire_frame_length(b, 4, 2, &n), CRAFT_ETOOBIG);
    CHECK_EQ(craft_wire_frame_length(b, 4, 3, &n), CRAFT_WIRE_NEED_MORE);
    uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
    CHECK_EQ(craft_wire_frame_length(huge, 4, 0, &n), CRAFT_ETOOBIG);
    uint8_t at_default[4] = {0x04, 0x00, 0x00, 0x00}; /* exactly 64 MiB */
    CHECK_EQ(craft_wire_frame_length(at_default, 4, 0, &n), CRAFT_WIRE_NEED_MORE);
    CHECK_EQ(n, 4 + (size_t)CRAFT_WIRE_MAX_FRAME_DEFAULT);
    uint8_t over_default[4] = {0x04, 0x00, 0x00, 0x01};
    CHECK_EQ(craft_wire_frame_length(over_default, 4, 0, &n), CRAFT_ETOOBIG);
    CHECK_EQ(craft_wire_frame_length(over_default, 4, UINT32_MAX, &n), CRAFT_WIRE_NEED_MORE);

    /* An empty body, or one that does not start with an array. */
    uint8_t empty[4] = {0, 0, 0, 0};
    CHECK_EQ(craft_wire_frame_length(empty, 4, 0, &n), CRAFT_EMALFORMED);
    uint8_t not_array[5] = {0, 0, 0, 1, 0x01};
    CHECK_EQ(craft_wire_frame_length(not_array, 5, 0, &n), CRAFT_EMALFORMED);
    uint8_t http[8] = {'G', 'E', 'T', ' ', '/', ' ', 'H', 'T'};
    CHECK_EQ(craft_wire_frame_length(http, 8, 0, &n), CRAFT_ETOOBIG);
    static const uint8_t array_heads[] = {0x90, 0x9f, 0xdc, 0xdd};
    for (size_t i = 0; i < sizeof array_heads; i++) {
        uint8_t a[5] = {0, 0, 0, 9, array_heads[i]};
        CHECK_EQ(craft_wire_frame_length(a, 5, 0, &n), CRAFT_WIRE_NEED_MORE);
    }
}

/* A stream of every sample, three times over, delivered in random-sized reads (1 byte to a few
 * KiB) into a reassembly buffer, the way a transport will: each frame decodes, in order. */
TEST(split_streams)
{
    size_t ns = wu_samples(samples, MAX_SAMPLES);
    ns = ns < MAX_SAMPLES ? ns : MAX_SAMPLES;
    struct craft_wire_buf stream;
    craft_wire_buf_init(&stream, NULL);
    size_t order[3 * MAX_SAMPLES], n_order = 0;
    for (int r = 0; r < 3; r++) {
        for (size_t i = 0; i < ns; i++) {
            CHECK_OK(craft_wire_encode_message(&stream, &samples[i]));
            order[n_order++] = i;
        }
    }

    struct craft_wire_decoder d;
    craft_wire_decoder_init(&d, NULL);
    uint64_t seed = 42;
    for (int trial = 0; trial < 20; trial++) {
        struct craft_wire_buf in; /* what the transport has received and not consumed */
        craft_wire_buf_init(&in, NULL);
        size_t sent = 0, got = 0;
        unsigned max_read = trial == 0 ? 1 : 1u << (1 + trial % 14);
        while (sent < stream.len || in.len > 0) {
            size_t chunk = 1 + (size_t)wu_below(&seed, max_read);
            if (chunk > stream.len - sent) {
                chunk = stream.len - sent;
            }
            CHECK_OK(craft_wire_buf_reserve(&in, chunk));
            memcpy(in.base + in.len, stream.base + sent, chunk);
            in.len += chunk;
            sent += chunk;
            /* Consume every whole frame now in the buffer. */
            size_t off = 0;
            for (;;) {
                size_t used = 0;
                struct craft_wire_message out;
                int rc = craft_wire_decode_frame(&d, in.base + off, in.len - off, &used, &out);
                if (rc == CRAFT_WIRE_NEED_MORE) {
                    break;
                }
                if (rc != 0) {
                    FAIL("trial %d frame %zu: %s (%s)", trial, got, craft_err_name(rc), d.error);
                    break;
                }
                CHECK(got < n_order);
                if (!craft__wire_message_equal(&samples[order[got]], &out)) {
                    FAIL("trial %d frame %zu differs", trial, got);
                    break;
                }
                got++;
                off += used;
            }
            if (harness_failed()) {
                break;
            }
            memmove(in.base, in.base + off, in.len - off);
            in.len -= off;
            if (sent == stream.len && in.len > 0) {
                FAIL("trial %d: %zu bytes left over", trial, in.len);
                break;
            }
        }
        craft_wire_buf_close(&in);
        if (harness_failed()) {
            break;
        }
        CHECK_EQ(got, n_order);
    }
    craft_wire_decoder_close(&d);
    craft_wire_buf_close(&stream);
}

/* A stream that goes bad after good frames: the good ones decode, then the error is reported
 * (a transport closes the connection there). */
TEST(stream_with_a_bad_frame)
{
    size_t ns = wu_samples(samples, MAX_SAMPLES);
    CHECK(ns > 2);
    struct craft_wire_buf s;
    craft_wire_buf_init(&s, NULL);
    CHECK_OK(craft_wire_encode_message(&s, &samples[0]));
    size_t first = s.len;
    CHECK_OK(craft_wire_encode_message(&s, &samples[2]));
    s.base[first + 5] = 9; /* the second frame's version */
    struct craft_wire_decoder d;
    craft_wire_decoder_init(&d, NULL);
    struct craft_wire_message out;
    size_t used;
    CHECK_OK(craft_wire_decode_frame(&d, s.base, s.len, &used, &out));
    CHECK_EQ(used, first);
    CHECK_EQ(craft_wire_decode_frame(&d, s.base + used, s.len - used, &used, &out), CRAFT_EVERSION);
    CHECK(d.error != NULL);
    craft_wire_decoder_close(&d);
    craft_wire_buf_close(&s);
}

HARNESS_MAIN()
