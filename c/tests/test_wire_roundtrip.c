/* The wire codec's round trips: every message type with edge values encodes, frames and decodes
 * back to an equal message; the bytes are the documented ones; encoding refuses what a decoder
 * would refuse; out-of-memory is reported, not crashed on, and leaks nothing. */
#include "harness.h"

#include "wire/internal.h"
#include "wire_util.h"

#define MAX_SAMPLES 64
static struct craft_wire_message samples[MAX_SAMPLES];

static size_t load_samples(void)
{
    size_t n = wu_samples(samples, MAX_SAMPLES);
    return n < MAX_SAMPLES ? n : MAX_SAMPLES;
}

/* Encodes m alone into b (reset first) and checks the length prefix. */
static void encode_one(struct craft_wire_buf *b, const struct craft_wire_message *m)
{
    craft_wire_buf_reset(b);
    CHECK_OK(craft_wire_encode_message(b, m));
    CHECK(b->len > CRAFT_WIRE_HEADER_SIZE);
    size_t body =
        (size_t)b->base[0] << 24 | (size_t)b->base[1] << 16 | (size_t)b->base[2] << 8 | b->base[3];
    CHECK_EQ(body, b->len - CRAFT_WIRE_HEADER_SIZE);
}

TEST(roundtrip_every_sample)
{
    size_t n = load_samples();
    CHECK(n >= 20);
    struct craft_wire_buf b;
    struct craft_wire_decoder d;
    craft_wire_buf_init(&b, NULL);
    craft_wire_decoder_init(&d, NULL);
    for (size_t i = 0; i < n; i++) {
        encode_one(&b, &samples[i]);
        if (harness_failed()) {
            break;
        }
        struct craft_wire_message out;
        size_t used = 0;
        int rc = craft_wire_decode_frame(&d, b.base, b.len, &used, &out);
        if (rc != 0) {
            FAIL("sample %zu (%s): decode: %s (%s)", i, craft_wire_type_name(samples[i].type),
                 craft_err_name(rc), d.error);
            break;
        }
        CHECK_EQ(used, b.len);
        if (!craft__wire_message_equal(&samples[i], &out)) {
            FAIL("sample %zu (%s) differs after a round trip", i,
                 craft_wire_type_name(samples[i].type));
            break;
        }
        const char *why = wu_insane(&out, b.base, b.len);
        if (why != NULL) {
            FAIL("sample %zu: decoded message insane: %s", i, why);
            break;
        }
    }
    craft_wire_decoder_close(&d);
    craft_wire_buf_close(&b);
}

TEST(raft_encode_equals_generic_encode)
{
    size_t n = load_samples();
    struct craft_wire_buf a, b;
    craft_wire_buf_init(&a, NULL);
    craft_wire_buf_init(&b, NULL);
    for (size_t i = 0; i < n; i++) {
        if (samples[i].type > CRAFT_MSG_TYPE_MAX) {
            continue;
        }
        craft_wire_buf_reset(&a);
        craft_wire_buf_reset(&b);
        CHECK_OK(craft_wire_encode(&a, &samples[i].u.raft));
        CHECK_OK(craft_wire_encode_message(&b, &samples[i]));
        CHECK_EQ(a.len, b.len);
        CHECK(memcmp(a.base, b.base, a.len) == 0);
    }
    craft_wire_buf_close(&a);
    craft_wire_buf_close(&b);
}

/* Many frames appended to one buffer decode in order; the decoder's memory is reused. */
TEST(frames_append_and_decode_in_sequence)
{
    size_t n = load_samples();
    struct craft_wire_buf b;
    struct craft_wire_decoder d;
    craft_wire_buf_init(&b, NULL);
    craft_wire_decoder_init(&d, NULL);
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < n; i++) {
            CHECK_OK(craft_wire_encode_message(&b, &samples[i]));
        }
    }
    size_t off = 0;
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < n; i++) {
            struct craft_wire_message out;
            size_t used = 0;
            CHECK_OK(craft_wire_decode_frame(&d, b.base + off, b.len - off, &used, &out));
            CHECK(craft__wire_message_equal(&samples[i], &out));
            off += used;
        }
    }
    CHECK_EQ(off, b.len);
    craft_wire_decoder_close(&d);
    craft_wire_buf_close(&b);
}

/* The bytes of two messages, fixed: docs/wire.md shows them as examples, and any change to the
 * encoding breaks compatibility with other implementations. */
TEST(golden_bytes)
{
    static const struct craft_entry e[1] = {{2, 6, CRAFT_ENTRY_COMMAND, "hi", 2}};
    struct craft_message m;
    memset(&m, 0, sizeof m);
    m.type = CRAFT_MSG_APPEND_ENTRIES;
    m.from = 1;
    m.to = 2;
    m.term = 3;
    m.u.append_entries.prev_index = 5;
    m.u.append_entries.prev_term = 2;
    m.u.append_entries.commit = 4;
    m.u.append_entries.ctx = 300;
    m.u.append_entries.entries = e;
    m.u.append_entries.n_entries = 1;
    static const uint8_t want[] = {
        0x00, 0x00, 0x00, 0x14,                       /* body: 20 bytes */
        0x9a, 0x01, 0x03, 0x01, 0x02, 0x03,           /* [1, 3, 1, 2, 3, */
        0x05, 0x02, 0x04, 0xcd, 0x01, 0x2c,           /*  5, 2, 4, 300, */
        0x91, 0x93, 0x02, 0x01, 0xc4, 0x02, 'h', 'i', /*  [[2, 1, bin "hi"]]] */
    };
    struct craft_wire_buf b;
    craft_wire_buf_init(&b, NULL);
    CHECK_OK(craft_wire_encode(&b, &m));
    CHECK_EQ(b.len, sizeof want);
    CHECK(memcmp(b.base, want, sizeof want) == 0);

    struct craft_wire_message h;
    memset(&h, 0, sizeof h);
    h.type = CRAFT_WIRE_HANDSHAKE;
    h.u.handshake.from = 1;
    h.u.handshake.cluster_id = 7;
    strcpy(h.u.handshake.address, "a:1");
    static const uint8_t want_h[] = {
        0x00, 0x00, 0x00, 0x0c, 0x98, 0x01, 0x40, 0x01, 0x00, 0x00, 0x07, 0x00, 0xa3, 'a', ':', '1',
    };
    craft_wire_buf_reset(&b);
    CHECK_OK(craft_wire_encode_message(&b, &h));
    CHECK_EQ(b.len, sizeof want_h);
    CHECK(memcmp(b.base, want_h, sizeof want_h) == 0);
    craft_wire_buf_close(&b);
}

/* Other implementations may write integers in longer formats than needed, or byte strings as
 * str: a decoder accepts both. */
TEST(decoder_accepts_non_minimal_encodings)
{
    struct wu_mp mp = {.n = 0};
    wu_be(&mp, 0xdc, 10, 2);  /* array16 of 10 */
    wu_be(&mp, 0xcf, 1, 8);   /* version as uint64 */
    wu_be(&mp, 0xd0, 3, 1);   /* type as int8 */
    wu_be(&mp, 0xcc, 1, 1);   /* from as uint8 */
    wu_be(&mp, 0xd3, 2, 8);   /* to as int64 */
    wu_be(&mp, 0xce, 3, 4);   /* term as uint32 */
    wu_uint(&mp, 5);          /* prev_index */
    wu_uint(&mp, 2);          /* prev_term */
    wu_uint(&mp, 4);          /* commit */
    wu_be(&mp, 0xd1, 300, 2); /* ctx as int16 */
    wu_be(&mp, 0xdd, 1, 4);   /* array32 of 1 entry */
    wu_arr(&mp, 3);
    wu_uint(&mp, 2);
    wu_uint(&mp, 1);
    wu_be(&mp, 0xdb, 2, 4); /* str32 "hi" */
    wu_raw(&mp, "hi", 2);

    struct craft_wire_decoder d;
    craft_wire_decoder_init(&d, NULL);
    struct craft_wire_message out;
    int rc = craft_wire_decode(&d, mp.b, mp.n, &out);
    if (rc != 0) {
        FAIL("decode: %s (%s)", craft_err_name(rc), d.error);
    } else {
        CHECK_EQ(out.type, CRAFT_MSG_APPEND_ENTRIES);
        CHECK_EQ(out.u.raft.u.append_entries.ctx, 300);
        CHECK_EQ(out.u.raft.u.append_entries.n_entries, 1);
        CHECK_EQ(out.u.raft.u.append_entries.entries[0].index, 6);
        CHECK_EQ(out.u.raft.u.append_entries.entries[0].size, 2);
        CHECK(memcmp(out.u.raft.u.append_entries.entries[0].data, "hi", 2) == 0);
    }
    craft_wire_decoder_close(&d);
}

static void expect_einval(const struct craft_wire_message *m, const char *what)
{
    struct craft_wire_buf b;
    craft_wire_buf_init(&b, NULL);
    CHECK_OK(craft_wire_buf_reserve(&b, 8));
    b.len = 3; /* earlier contents that a failed encode must leave alone */
    int rc = craft_wire_encode_message(&b, m);
    size_t len = b.len;
    craft_wire_buf_close(&b);
    if (rc != CRAFT_EINVAL) {
        FAIL("%s: encode returned %s, not CRAFT_EINVAL", what, craft_err_name(rc));
    }
    CHECK_EQ(len, 3);
}

TEST(encoder_refuses_invalid_messages)
{
    load_samples();
    struct craft_wire_message m;
    struct craft_entry es[3];

    m = samples[0];
    m.type = 0;
    m.u.raft.type = 0;
    expect_einval(&m, "type 0");
    m.type = 8;
    m.u.raft.type = 8;
    expect_einval(&m, "type 8");
    m.type = 67;
    expect_einval(&m, "type 67");
    m = samples[0];
    m.u.raft.type = 2;
    expect_einval(&m, "type differs");
    m = samples[0];
    m.u.raft.from = 0;
    expect_einval(&m, "from 0");
    m = samples[0];
    m.u.raft.to = 0;
    expect_einval(&m, "to 0");
    m = samples[0];
    m.u.raft.u.request_vote.last_log_term = m.u.raft.term + 1;
    expect_einval(&m, "last_log_term above term");

    /* AppendEntries: samples[5] holds three entries at 11..13. */
    m = samples[5];
    CHECK_EQ(m.u.raft.u.append_entries.n_entries, 3);
    memcpy(es, m.u.raft.u.append_entries.entries, sizeof es);
    m.u.raft.u.append_entries.entries = es;
    es[1].index = 13;
    expect_einval(&m, "indexes not contiguous");
    es[1].index = 12;
    es[0].index = 10;
    expect_einval(&m, "first index is not prev_index + 1");
    es[0].index = 11;
    es[2].type = 0;
    expect_einval(&m, "entry type 0");
    es[2].type = 4;
    expect_einval(&m, "entry type 4");
    es[2].type = CRAFT_ENTRY_CONFIG;
    es[2].term = 2;
    expect_einval(&m, "decreasing terms");
    es[2].term = 5;
    expect_einval(&m, "entry term above message term");
    es[2].term = 4;
    es[1].data = NULL;
    expect_einval(&m, "NULL data with size");
    es[1].data = wu_payload;
    m.u.raft.u.append_entries.prev_term = 4;
    expect_einval(&m, "entry term below prev_term");
    m.u.raft.u.append_entries.prev_term = 2;
    m.u.raft.u.append_entries.prev_index = UINT64_MAX - 1;
    expect_einval(&m, "indexes overflow");

    /* InstallSnapshot: samples[10]. */
    m = samples[10];
    CHECK_EQ(m.type, CRAFT_MSG_INSTALL_SNAPSHOT);
    struct craft_server ss[3];
    memcpy(ss, m.u.raft.u.install_snapshot.meta.conf.servers, sizeof ss);
    m.u.raft.u.install_snapshot.meta.conf.servers = ss;
    ss[2].id = 1;
    expect_einval(&m, "duplicate server id");
    ss[2].id = 0;
    expect_einval(&m, "server id 0");
    ss[2].id = 3;
    ss[2].role = 3;
    expect_einval(&m, "role 3");
    ss[2].role = CRAFT_VOTER;
    memset(ss[2].address, 'x', CRAFT_ADDRESS_MAX);
    expect_einval(&m, "unterminated address");
    ss[2].address[0] = '\0';
    m.u.raft.u.install_snapshot.offset = m.u.raft.u.install_snapshot.meta.size - 1;
    expect_einval(&m, "chunk past the end");
    m.u.raft.u.install_snapshot.offset = 0;
    m.u.raft.u.install_snapshot.meta.conf_index = m.u.raft.u.install_snapshot.meta.index + 1;
    expect_einval(&m, "conf_index past index");

    memset(&m, 0, sizeof m);
    m.type = CRAFT_WIRE_REQUEST;
    expect_einval(&m, "request kind 0");
    m.u.request.kind = CRAFT_WIRE_REQUEST_KIND_MAX + 1;
    expect_einval(&m, "request kind 11");
    memset(&m, 0, sizeof m);
    m.type = CRAFT_WIRE_RESPONSE;
    m.u.response.error = 1;
    expect_einval(&m, "positive error");
    memset(&m, 0, sizeof m);
    m.type = CRAFT_WIRE_HANDSHAKE;
    memset(m.u.handshake.address, 'x', CRAFT_ADDRESS_MAX);
    expect_einval(&m, "handshake address");
}

/* Large configurations take the sorting path of the duplicate check; the cap holds. */
TEST(large_configurations)
{
    load_samples();
    static struct craft_server ss[CRAFT_WIRE_MAX_SERVERS + 1];
    for (size_t i = 0; i < sizeof ss / sizeof ss[0]; i++) {
        ss[i].id = 1000 - i; /* descending: the sort has work to do */
        ss[i].role = i % 3 == 0 ? CRAFT_LEARNER : CRAFT_VOTER;
        snprintf(ss[i].address, sizeof ss[i].address, "10.0.%zu.%zu:7000", i / 256, i % 256);
    }
    struct craft_wire_message m = samples[10];
    CHECK_EQ(m.type, CRAFT_MSG_INSTALL_SNAPSHOT);
    m.u.raft.u.install_snapshot.meta.conf.servers = ss;
    m.u.raft.u.install_snapshot.meta.conf.n = 100;

    struct craft_wire_buf b;
    struct craft_wire_decoder d;
    craft_wire_buf_init(&b, NULL);
    craft_wire_decoder_init(&d, NULL);
    struct craft_wire_message out;
    CHECK_OK(craft_wire_encode_message(&b, &m));
    CHECK_OK(craft_wire_decode(&d, b.base + 4, b.len - 4, &out));
    CHECK(craft__wire_message_equal(&m, &out));

    ss[77].id = ss[3].id;
    expect_einval(&m, "duplicate among 100 servers");
    ss[77].id = 1000 - 77;
    for (size_t i = 0; i < sizeof ss / sizeof ss[0]; i++) {
        ss[i].id = i + 1;
    }
    m.u.raft.u.install_snapshot.meta.conf.n = CRAFT_WIRE_MAX_SERVERS;
    craft_wire_buf_reset(&b);
    CHECK_OK(craft_wire_encode_message(&b, &m));
    CHECK_OK(craft_wire_decode(&d, b.base + 4, b.len - 4, &out));
    CHECK(craft__wire_message_equal(&m, &out));
    m.u.raft.u.install_snapshot.meta.conf.n = CRAFT_WIRE_MAX_SERVERS + 1;
    expect_einval(&m, "one server over the cap");
    craft_wire_decoder_close(&d);
    craft_wire_buf_close(&b);
}

/* craft_wire_encode() takes Raft messages only. */
TEST(raft_encode_refuses_runtime_tags)
{
    load_samples();
    struct craft_message m = samples[0].u.raft;
    struct craft_wire_buf b;
    craft_wire_buf_init(&b, NULL);
    m.type = CRAFT_WIRE_HANDSHAKE;
    CHECK_EQ(craft_wire_encode(&b, &m), CRAFT_EINVAL);
    m.type = 0;
    CHECK_EQ(craft_wire_encode(&b, &m), CRAFT_EINVAL);
    CHECK_EQ(b.len, 0);
    craft_wire_buf_close(&b);
}

/* Every allocation failing in turn: encode and decode report CRAFT_ENOMEM and leak nothing. */
TEST(out_of_memory_everywhere)
{
    size_t n = load_samples();
    struct wu_alloc_stats st;
    struct craft_allocator a = wu_allocator(&st);
    for (size_t i = 0; i < n; i++) {
        /* Encoding. */
        for (long k = 0;; k++) {
            struct craft_wire_buf b;
            craft_wire_buf_init(&b, &a);
            st.calls = 0;
            st.fail_after = k;
            int rc = craft_wire_encode_message(&b, &samples[i]);
            craft_wire_buf_close(&b);
            CHECK_EQ(st.live, 0);
            if (rc == 0) {
                break;
            }
            CHECK_EQ(rc, CRAFT_ENOMEM);
        }
        /* Decoding (with an encoding made with working memory). */
        struct craft_wire_buf b;
        craft_wire_buf_init(&b, NULL);
        CHECK_OK(craft_wire_encode_message(&b, &samples[i]));
        for (long k = 0;; k++) {
            struct craft_wire_decoder d;
            craft_wire_decoder_init(&d, &a);
            st.calls = 0;
            st.fail_after = k;
            struct craft_wire_message out;
            int rc = craft_wire_decode(&d, b.base + 4, b.len - 4, &out);
            bool equal = rc == 0 && craft__wire_message_equal(&samples[i], &out);
            craft_wire_decoder_close(&d);
            CHECK_EQ(st.live, 0);
            if (rc == 0) {
                CHECK(equal);
                break;
            }
            CHECK_EQ(rc, CRAFT_ENOMEM);
        }
        craft_wire_buf_close(&b);
        if (harness_failed()) {
            return;
        }
    }
    st.fail_after = -1;
}

/* A decoder that met a large message keeps memory for it and then decodes without calling the
 * allocator again. */
TEST(decoder_reuses_its_memory)
{
    size_t n = load_samples();
    struct wu_alloc_stats st;
    struct craft_allocator a = wu_allocator(&st);
    struct craft_wire_buf b;
    craft_wire_buf_init(&b, NULL);
    size_t big = n;
    for (size_t i = 0; i < n; i++) {
        if (samples[i].type == CRAFT_MSG_APPEND_ENTRIES &&
            samples[i].u.raft.u.append_entries.n_entries == WU_N_BIG) {
            big = i;
        }
    }
    CHECK(big < n);
    CHECK_OK(craft_wire_encode_message(&b, &samples[big]));
    struct craft_wire_decoder d;
    craft_wire_decoder_init(&d, &a);
    struct craft_wire_message out;
    CHECK_OK(craft_wire_decode(&d, b.base + 4, b.len - 4, &out));
    CHECK_OK(craft_wire_decode(&d, b.base + 4, b.len - 4, &out));
    long calls = st.calls;
    for (int i = 0; i < 10; i++) {
        CHECK_OK(craft_wire_decode(&d, b.base + 4, b.len - 4, &out));
    }
    CHECK_EQ(st.calls, calls);
    CHECK(craft__wire_message_equal(&samples[big], &out));
    craft_wire_decoder_close(&d);
    CHECK_EQ(st.live, 0);
    craft_wire_buf_close(&b);
}

TEST(type_names)
{
    CHECK_STR_EQ(craft_wire_type_name(CRAFT_MSG_APPEND_ENTRIES), "AppendEntries");
    CHECK_STR_EQ(craft_wire_type_name(CRAFT_WIRE_HANDSHAKE), "Handshake");
    CHECK_STR_EQ(craft_wire_type_name(CRAFT_WIRE_REQUEST), "Request");
    CHECK_STR_EQ(craft_wire_type_name(CRAFT_WIRE_RESPONSE), "Response");
    CHECK_STR_EQ(craft_wire_type_name(200), "Unknown");
}

HARNESS_MAIN()
