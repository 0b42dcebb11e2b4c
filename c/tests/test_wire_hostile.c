/* The decoder against hostile input: truncations, bit flips, random garbage, lying length
 * headers and every semantic rule broken one at a time. Whatever the bytes, decoding returns an
 * error or a sane message, never reads outside them (ASan), and never allocates more than a
 * small multiple of their length (a counting allocator). */
#include "harness.h"

#include "wire/internal.h"
#include "wire_util.h"

#define MAX_SAMPLES 64
static struct craft_wire_message samples[MAX_SAMPLES];

/* Encoded bodies (no length prefix) of every sample, made once. */
static struct craft_wire_buf frames[MAX_SAMPLES];
static size_t n_frames;

static void load_frames(void)
{
    if (n_frames > 0) {
        return;
    }
    size_t n = wu_samples(samples, MAX_SAMPLES);
    n = n < MAX_SAMPLES ? n : MAX_SAMPLES;
    for (size_t i = 0; i < n; i++) {
        craft_wire_buf_init(&frames[i], NULL);
        CHECK_OK(craft_wire_encode_message(&frames[i], &samples[i]));
    }
    n_frames = n;
}

static const uint8_t *body_of(size_t i)
{
    return frames[i].base + CRAFT_WIRE_HEADER_SIZE;
}

static size_t body_len(size_t i)
{
    return frames[i].len - CRAFT_WIRE_HEADER_SIZE;
}

/* Decodes len bytes copied to a heap block of exactly that size, so that ASan sees any read
 * past the end. Checks that the result is an error or a sane message whose re-encoding decodes
 * to an equal message, and that no allocation exceeded the proportional bound. Returns the
 * decode's return code. */
static struct wu_alloc_stats stats;
static struct craft_allocator counting;
static struct craft_wire_decoder dec, dec2;
static struct craft_wire_buf rebuf;
static bool fixture_ready;

static void fixture(void)
{
    if (!fixture_ready) {
        counting = wu_allocator(&stats);
        craft_wire_decoder_init(&dec, &counting);
        craft_wire_decoder_init(&dec2, NULL);
        craft_wire_buf_init(&rebuf, NULL);
        fixture_ready = true;
    }
}

/* The checks of decode_checked() on one result (a void helper, so that FAIL can return). */
static void check_result(int rc, const struct craft_wire_message *out, const uint8_t *input,
                         size_t len)
{
    /* Memory proportional to the input: a decoded entry is 40 bytes for at least 4 on the
     * wire; a server (capped at CRAFT_WIRE_MAX_SERVERS) ~140 for 4. Plus the minimum block. */
    size_t bound = 16 * len + 4096 + CRAFT_WIRE_MAX_SERVERS * sizeof(struct craft_server);
    if (stats.max_request > bound) {
        FAIL("allocation of %zu bytes for a %zu-byte frame", stats.max_request, len);
    }
    if (rc != 0) {
        if (rc != CRAFT_EMALFORMED && rc != CRAFT_EVERSION && rc != CRAFT_ETOOBIG) {
            FAIL("decode returned %s", craft_err_name(rc));
        }
        if (dec.error == NULL) {
            FAIL("decode failed (%s) without a reason", craft_err_name(rc));
        }
        return;
    }
    const char *why = wu_insane(out, input, len);
    if (why != NULL) {
        FAIL("decoded an insane message (%s)", why);
    }
    /* decode(encode(decode(x))) == decode(x) */
    craft_wire_buf_reset(&rebuf);
    int erc = craft_wire_encode_message(&rebuf, out);
    if (erc != 0) {
        FAIL("re-encoding a decoded %s failed: %s", craft_wire_type_name(out->type),
             craft_err_name(erc));
    }
    struct craft_wire_message again;
    int drc = craft_wire_decode(&dec2, rebuf.base + 4, rebuf.len - 4, &again);
    if (drc != 0 || !craft__wire_message_equal(out, &again)) {
        FAIL("round trip of a decoded %s changed it", craft_wire_type_name(out->type));
    }
}

static int decode_checked(const uint8_t *bytes, size_t len)
{
    fixture();
    uint8_t *copy = malloc(len > 0 ? len : 1);
    if (copy == NULL) {
        abort();
    }
    if (len > 0) {
        memcpy(copy, bytes, len);
    }
    stats.max_request = 0;
    struct craft_wire_message out;
    int rc = craft_wire_decode(&dec, copy, len, &out);
    check_result(rc, &out, copy, len);
    free(copy);
    return rc;
}

TEST(every_truncation_fails)
{
    load_frames();
    for (size_t i = 0; i < n_frames; i++) {
        const uint8_t *body = body_of(i);
        size_t len = body_len(i);
        /* The big samples have ~100k prefixes: test a spread of them and all the short ones. */
        size_t step = len > 4096 ? 97 : 1;
        for (size_t cut = 0; cut < len; cut += (cut < 256 ? 1 : step)) {
            int rc = decode_checked(body, cut);
            if (harness_failed()) {
                return;
            }
            if (rc == 0) {
                FAIL("sample %zu decoded from %zu of its %zu bytes", i, cut, len);
                return;
            }
            /* The whole frame cut short is "need more", never a frame. */
            size_t need;
            CHECK_EQ(
                craft_wire_frame_length(frames[i].base, cut + CRAFT_WIRE_HEADER_SIZE, 0, &need),
                CRAFT_WIRE_NEED_MORE);
            CHECK_EQ(need, frames[i].len);
        }
        CHECK_OK(decode_checked(body, len));
    }
}

/* Flips 1 to 4 random bits, or overwrites 1 to 3 random bytes, of a random sample. Whatever
 * decodes must be sane and survive a round trip (decode_checked). */
TEST(random_mutations_never_crash)
{
    load_frames();
    long iters = harness_env_int("CRAFT_WIRE_MUTATIONS", 200000);
    uint64_t seed = 0x5eed;
    size_t small[MAX_SAMPLES], n_small = 0;
    for (size_t i = 0; i < n_frames; i++) {
        if (body_len(i) <= 4096) { /* the big ones are slow to copy 200k times */
            small[n_small++] = i;
        }
    }
    uint8_t buf[4096];
    long decoded = 0;
    for (long it = 0; it < iters; it++) {
        size_t i = small[wu_below(&seed, n_small)];
        size_t len = body_len(i);
        memcpy(buf, body_of(i), len);
        unsigned k = 1 + (unsigned)wu_below(&seed, 4);
        bool bytes = wu_below(&seed, 2) == 0;
        for (unsigned j = 0; j < k; j++) {
            size_t at = (size_t)wu_below(&seed, len);
            if (bytes) {
                buf[at] = (uint8_t)wu_next(&seed);
            } else {
                buf[at] ^= (uint8_t)(1u << wu_below(&seed, 8));
            }
        }
        /* Sometimes also cut or extend. */
        if (wu_below(&seed, 8) == 0) {
            len = (size_t)wu_below(&seed, len + 1);
        } else if (wu_below(&seed, 16) == 0 && len < sizeof buf) {
            buf[len++] = (uint8_t)wu_next(&seed);
        }
        if (decode_checked(buf, len) == 0) {
            decoded++;
        }
        if (harness_failed()) {
            fprintf(stderr, "iteration %ld, sample %zu\n", it, i);
            return;
        }
    }
    fprintf(stderr, "mutations: %ld of %ld decoded\n", decoded, iters);
    /* Some mutations (a changed integer value) still decode: the round-trip check ran. */
    CHECK(iters < 1000 || decoded > 0);
}

/* Random bytes, half of them behind a plausible prefix [1, type, ...] so that the decoder gets
 * past the header. */
TEST(random_garbage_never_crashes)
{
    load_frames();
    long iters = harness_env_int("CRAFT_WIRE_GARBAGE", 200000);
    uint64_t seed = 0xdecaf;
    uint8_t buf[256];
    for (long it = 0; it < iters; it++) {
        size_t len = (size_t)wu_below(&seed, sizeof buf);
        for (size_t j = 0; j < len; j++) {
            buf[j] = (uint8_t)wu_next(&seed);
        }
        if (len >= 3 && (it & 1)) {
            buf[0] = (uint8_t)(0x90 | (5 + wu_below(&seed, 9)));
            buf[1] = 0x01;
            static const uint8_t types[] = {1, 2, 3, 4, 5, 6, 7, 64, 65, 66};
            buf[2] = types[wu_below(&seed, sizeof types)];
        }
        decode_checked(buf, len);
        if (harness_failed()) {
            fprintf(stderr, "iteration %ld\n", it);
            return;
        }
    }
}

/* Bodies whose headers claim far more than they hold. */
TEST(lying_lengths_allocate_nothing)
{
    static const struct {
        const char *what;
        uint8_t bytes[16];
        size_t len;
    } cases[] = {
        {"map32 of 4G entries (msgpack-c asks for 8 GB)", {0xdf, 0xff, 0xff, 0xff, 0xff, 0x00}, 6},
        {"array32 of 4G", {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01}, 6},
        {"array16 of 65535", {0xdc, 0xff, 0xff, 0x01}, 4},
        {"bin32 of 4G", {0xc6, 0xff, 0xff, 0xff, 0xff, 0x00}, 6},
        {"str32 of 4G", {0xdb, 0xff, 0xff, 0xff, 0xff}, 5},
        {"ext32", {0xc9, 0xff, 0xff, 0xff, 0xff, 0x01}, 6},
        {"nil", {0xc0}, 1},
        {"0xc1 (never used)", {0xc1}, 1},
        {"float", {0xca, 0, 0, 0, 0}, 5},
    };
    fixture();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        stats.calls = 0;
        int rc = decode_checked(cases[i].bytes, cases[i].len);
        if (rc != CRAFT_EMALFORMED) {
            FAIL("%s: %s", cases[i].what, craft_err_name(rc));
        }
        CHECK_EQ(stats.calls, 0);
    }

    /* AppendEntries declaring 4G entries, and 65535, in a small body. */
    for (int w = 0; w < 2; w++) {
        struct wu_mp mp = {.n = 0};
        wu_header(&mp, 5, CRAFT_MSG_APPEND_ENTRIES);
        wu_uint(&mp, 0);
        wu_uint(&mp, 0);
        wu_uint(&mp, 0);
        wu_uint(&mp, 0);
        if (w == 0) {
            wu_be(&mp, 0xdd, UINT32_MAX, 4);
        } else {
            wu_be(&mp, 0xdc, UINT16_MAX, 2);
        }
        for (int j = 0; j < 40; j++) { /* a few real entries after the lie */
            wu_arr(&mp, 3);
            wu_uint(&mp, 1);
            wu_uint(&mp, 1);
            wu_bin(&mp, "", 0);
        }
        stats.calls = 0;
        CHECK_EQ(decode_checked(mp.b, mp.n), CRAFT_EMALFORMED);
        CHECK_EQ(stats.calls, 0);
    }

    /* InstallSnapshot whose configuration claims 65535 servers, and a chunk of 4 GB. */
    struct wu_mp mp = {.n = 0};
    wu_header(&mp, 4, CRAFT_MSG_INSTALL_SNAPSHOT);
    wu_arr(&mp, 5);
    wu_uint(&mp, 1);
    wu_uint(&mp, 1);
    wu_uint(&mp, 1);
    wu_uint(&mp, 10);
    wu_be(&mp, 0xdc, UINT16_MAX, 2);
    stats.calls = 0;
    CHECK_EQ(decode_checked(mp.b, mp.n), CRAFT_EMALFORMED);
    CHECK_EQ(stats.calls, 0);
    mp.n -= 3;
    wu_arr(&mp, 0);
    wu_uint(&mp, 0);
    wu_be(&mp, 0xc6, UINT32_MAX, 4);
    wu_raw(&mp, "abc", 3);
    stats.calls = 0;
    CHECK_EQ(decode_checked(mp.b, mp.n), CRAFT_EMALFORMED);
    CHECK_EQ(stats.calls, 0);
}

static void expect_rc(const struct wu_mp *mp, int want, const char *what)
{
    CHECK(mp->n <= sizeof mp->b);
    int rc = decode_checked(mp->b, mp->n);
    if (rc != want) {
        FAIL("%s: got %s, want %s (%s)", what, craft_err_name(rc), craft_err_name(want),
             dec.error ? dec.error : "-");
    }
}

/* A RequestVote with each field choosable. */
static void request_vote(struct wu_mp *mp, uint64_t version, uint64_t type, uint32_t n_fields,
                         uint8_t pre_vote_byte)
{
    mp->n = 0;
    wu_arr(mp, n_fields);
    wu_uint(mp, version);
    wu_uint(mp, type);
    wu_uint(mp, 1);
    wu_uint(mp, 2);
    wu_uint(mp, 3);
    wu_uint(mp, 10);
    wu_uint(mp, 3);
    wu_byte(mp, pre_vote_byte);
    wu_bool(mp, false);
}

TEST(semantic_rules_on_decode)
{
    struct wu_mp mp;
    request_vote(&mp, 1, CRAFT_MSG_REQUEST_VOTE, 9, 0xc3);
    expect_rc(&mp, 0, "a valid RequestVote");
    request_vote(&mp, 2, CRAFT_MSG_REQUEST_VOTE, 9, 0xc3);
    expect_rc(&mp, CRAFT_EVERSION, "version 2");
    request_vote(&mp, 0, CRAFT_MSG_REQUEST_VOTE, 9, 0xc3);
    expect_rc(&mp, CRAFT_EVERSION, "version 0");
    request_vote(&mp, 1, CRAFT_MSG_REQUEST_VOTE, 8, 0xc3);
    expect_rc(&mp, CRAFT_EMALFORMED, "one field too few");
    request_vote(&mp, 1, CRAFT_MSG_REQUEST_VOTE, 10, 0xc3);
    expect_rc(&mp, CRAFT_EMALFORMED, "one field too many");
    request_vote(&mp, 1, CRAFT_MSG_REQUEST_VOTE, 9, 0x01);
    expect_rc(&mp, CRAFT_EMALFORMED, "bool as 1");
    request_vote(&mp, 1, CRAFT_MSG_REQUEST_VOTE, 9, 0xc0);
    expect_rc(&mp, CRAFT_EMALFORMED, "bool as nil");
    static const uint64_t bad_types[] = {0, 8, 63, 67, 127, 128, 255, 256, UINT64_MAX};
    for (size_t i = 0; i < sizeof bad_types / sizeof bad_types[0]; i++) {
        request_vote(&mp, 1, bad_types[i], 9, 0xc3);
        expect_rc(&mp, CRAFT_EMALFORMED, "unknown type");
    }
    request_vote(&mp, 1, CRAFT_MSG_REQUEST_VOTE, 9, 0xc3);
    wu_byte(&mp, 0x00);
    expect_rc(&mp, CRAFT_EMALFORMED, "a trailing byte");
    mp.n = 0;
    wu_arr(&mp, 0);
    expect_rc(&mp, CRAFT_EMALFORMED, "empty array");
    mp.n = 0;
    wu_arr(&mp, 1);
    wu_uint(&mp, 1);
    expect_rc(&mp, CRAFT_EMALFORMED, "version alone");
    mp.n = 0;
    wu_arr(&mp, 1);
    wu_uint(&mp, 9);
    expect_rc(&mp, CRAFT_EVERSION, "another version alone");

    /* Header fields: negative or non-integer ids. */
    mp.n = 0;
    wu_arr(&mp, 5);
    wu_uint(&mp, 1);
    wu_uint(&mp, CRAFT_MSG_TIMEOUT_NOW);
    wu_byte(&mp, 0xff); /* -1 */
    wu_uint(&mp, 2);
    wu_uint(&mp, 3);
    expect_rc(&mp, CRAFT_EMALFORMED, "negative from");
    mp.n = 0;
    wu_arr(&mp, 5);
    wu_uint(&mp, 1);
    wu_uint(&mp, CRAFT_MSG_TIMEOUT_NOW);
    wu_uint(&mp, 1);
    wu_uint(&mp, 0);
    wu_uint(&mp, 3);
    expect_rc(&mp, CRAFT_EMALFORMED, "to 0");

    /* AppendEntries entry rules. */
    struct {
        uint64_t term, type;
        const char *what;
        int want;
    } entry_cases[] = {
        {3, 1, "a valid entry", 0},
        {3, 0, "entry type 0", CRAFT_EMALFORMED},
        {3, 4, "entry type 4", CRAFT_EMALFORMED},
        {3, 257, "entry type 257", CRAFT_EMALFORMED},
        {8, 1, "entry term above message term", CRAFT_EMALFORMED},
        {1, 1, "entry terms decrease", CRAFT_EMALFORMED},
    };
    for (size_t i = 0; i < sizeof entry_cases / sizeof entry_cases[0]; i++) {
        mp.n = 0;
        wu_header(&mp, 5, CRAFT_MSG_APPEND_ENTRIES); /* term 7 */
        wu_uint(&mp, 10);
        wu_uint(&mp, 2);
        wu_uint(&mp, 0);
        wu_uint(&mp, 0);
        wu_arr(&mp, 2);
        wu_arr(&mp, 3);
        wu_uint(&mp, 3);
        wu_uint(&mp, 1);
        wu_bin(&mp, "a", 1);
        wu_arr(&mp, 3);
        wu_uint(&mp, entry_cases[i].term);
        wu_uint(&mp, entry_cases[i].type);
        wu_str(&mp, "b", 1);
        expect_rc(&mp, entry_cases[i].want, entry_cases[i].what);
    }
    /* The first entry's term below prev_term. */
    mp.n = 0;
    wu_header(&mp, 5, CRAFT_MSG_APPEND_ENTRIES);
    wu_uint(&mp, 10);
    wu_uint(&mp, 4);
    wu_uint(&mp, 0);
    wu_uint(&mp, 0);
    wu_arr(&mp, 1);
    wu_arr(&mp, 3);
    wu_uint(&mp, 3);
    wu_uint(&mp, 1);
    wu_bin(&mp, "", 0);
    expect_rc(&mp, CRAFT_EMALFORMED, "entry term below prev_term");
    /* Entry indexes past 2^64 - 1. */
    mp.n = 0;
    wu_header(&mp, 5, CRAFT_MSG_APPEND_ENTRIES);
    wu_uint(&mp, UINT64_MAX);
    wu_uint(&mp, 0);
    wu_uint(&mp, 0);
    wu_uint(&mp, 0);
    wu_arr(&mp, 1);
    wu_arr(&mp, 3);
    wu_uint(&mp, 1);
    wu_uint(&mp, 1);
    wu_bin(&mp, "", 0);
    expect_rc(&mp, CRAFT_EMALFORMED, "entry index overflow");
    /* An entry that is not a 3-array. */
    mp.n = 0;
    wu_header(&mp, 5, CRAFT_MSG_APPEND_ENTRIES);
    wu_uint(&mp, 0);
    wu_uint(&mp, 0);
    wu_uint(&mp, 0);
    wu_uint(&mp, 0);
    wu_arr(&mp, 1);
    wu_arr(&mp, 4);
    wu_uint(&mp, 1);
    wu_uint(&mp, 6);
    wu_uint(&mp, 1);
    wu_bin(&mp, "", 0);
    expect_rc(&mp, CRAFT_EMALFORMED, "entry with an index field");

    /* Configuration rules, in InstallSnapshot. */
    struct {
        uint64_t id1, id2, role;
        size_t addr_len;
        bool nul;
        const char *what;
        int want;
    } conf_cases[] = {
        {1, 2, 1, 10, false, "a valid configuration", 0},
        {1, 2, 2, CRAFT_ADDRESS_MAX - 1, false, "longest address", 0},
        {1, 2, 1, CRAFT_ADDRESS_MAX, false, "address too long", CRAFT_EMALFORMED},
        {1, 2, 1, 10, true, "NUL in an address", CRAFT_EMALFORMED},
        {1, 1, 1, 10, false, "duplicate id", CRAFT_EMALFORMED},
        {1, 0, 1, 10, false, "id 0", CRAFT_EMALFORMED},
        {1, 2, 0, 10, false, "role 0", CRAFT_EMALFORMED},
        {1, 2, 3, 10, false, "role 3", CRAFT_EMALFORMED},
    };
    char addr[CRAFT_ADDRESS_MAX + 1];
    for (size_t i = 0; i < sizeof conf_cases / sizeof conf_cases[0]; i++) {
        memset(addr, 'h', sizeof addr);
        if (conf_cases[i].nul) {
            addr[3] = '\0';
        }
        mp.n = 0;
        wu_header(&mp, 4, CRAFT_MSG_INSTALL_SNAPSHOT);
        wu_arr(&mp, 5);
        wu_uint(&mp, 100);
        wu_uint(&mp, 7);
        wu_uint(&mp, 50);
        wu_uint(&mp, 3);
        wu_arr(&mp, 2);
        wu_arr(&mp, 3);
        wu_uint(&mp, conf_cases[i].id1);
        wu_uint(&mp, 1);
        wu_str(&mp, "x:1", 3);
        wu_arr(&mp, 3);
        wu_uint(&mp, conf_cases[i].id2);
        wu_uint(&mp, conf_cases[i].role);
        wu_str(&mp, addr, conf_cases[i].addr_len);
        wu_uint(&mp, 0);
        wu_bin(&mp, "abc", 3);
        wu_bool(&mp, true);
        expect_rc(&mp, conf_cases[i].want, conf_cases[i].what);
    }
    /* Chunk ranges: snapshot of 3 bytes. */
    struct {
        uint64_t offset;
        size_t size;
        const char *what;
        int want;
    } chunk_cases[] = {
        {0, 3, "whole", 0},
        {3, 0, "empty at the end", 0},
        {1, 3, "one past the end", CRAFT_EMALFORMED},
        {4, 0, "offset past the end", CRAFT_EMALFORMED},
        {UINT64_MAX, 3, "offset overflow", CRAFT_EMALFORMED},
    };
    for (size_t i = 0; i < sizeof chunk_cases / sizeof chunk_cases[0]; i++) {
        mp.n = 0;
        wu_header(&mp, 4, CRAFT_MSG_INSTALL_SNAPSHOT);
        wu_arr(&mp, 5);
        wu_uint(&mp, 100);
        wu_uint(&mp, 7);
        wu_uint(&mp, 50);
        wu_uint(&mp, 3);
        wu_arr(&mp, 0);
        wu_uint(&mp, chunk_cases[i].offset);
        wu_bin(&mp, "abc", chunk_cases[i].size);
        wu_bool(&mp, false);
        expect_rc(&mp, chunk_cases[i].want, chunk_cases[i].what);
    }

    /* Runtime messages. */
    for (uint64_t kind = 0; kind < CRAFT_WIRE_REQUEST_KIND_MAX + 3; kind++) {
        mp.n = 0;
        wu_header(&mp, 3, CRAFT_WIRE_REQUEST);
        wu_uint(&mp, 1);
        wu_uint(&mp, kind);
        wu_bin(&mp, "p", 1);
        expect_rc(&mp, kind >= 1 && kind <= CRAFT_WIRE_REQUEST_KIND_MAX ? 0 : CRAFT_EMALFORMED,
                  "request kind");
    }
    static const struct {
        uint8_t bytes[9];
        size_t len;
        int want;
    } errors[] = {
        {{0x00}, 1, 0},
        {{0xe0}, 1, 0},                         /* -32 */
        {{0xd2, 0x80, 0x00, 0x00, 0x00}, 5, 0}, /* INT32_MIN */
        {{0xd3, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff}, 9, CRAFT_EMALFORMED},
        {{0x01}, 1, CRAFT_EMALFORMED}, /* positive */
        {{0xc2}, 1, CRAFT_EMALFORMED}, /* not an integer */
    };
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++) {
        mp.n = 0;
        wu_header(&mp, 6, CRAFT_WIRE_RESPONSE);
        wu_uint(&mp, 1);
        wu_raw(&mp, errors[i].bytes, errors[i].len);
        wu_uint(&mp, 0);
        wu_uint(&mp, 0);
        wu_str(&mp, "", 0);
        wu_bin(&mp, "", 0);
        expect_rc(&mp, errors[i].want, "response error code");
    }
    mp.n = 0;
    wu_header(&mp, 3, CRAFT_WIRE_HANDSHAKE);
    wu_uint(&mp, 1);
    wu_uint(&mp, 0);
    wu_str(&mp, addr, CRAFT_ADDRESS_MAX);
    expect_rc(&mp, CRAFT_EMALFORMED, "handshake address too long");
}

/* An AppendEntries from 1 to 2 with the given header term, prev_index and commit, and one
 * entry of term entry_term (none when entry_term is 0). */
static void append_entries(struct wu_mp *mp, uint64_t term, uint64_t prev_index, uint64_t commit,
                           uint64_t entry_term)
{
    mp->n = 0;
    wu_arr(mp, 10);
    wu_uint(mp, CRAFT_WIRE_VERSION);
    wu_uint(mp, CRAFT_MSG_APPEND_ENTRIES);
    wu_uint(mp, 1);
    wu_uint(mp, 2);
    wu_uint(mp, term);
    wu_uint(mp, prev_index);
    wu_uint(mp, 0);
    wu_uint(mp, commit);
    wu_uint(mp, 0);
    if (entry_term == 0) {
        wu_arr(mp, 0);
        return;
    }
    wu_arr(mp, 1);
    wu_arr(mp, 3);
    wu_uint(mp, entry_term);
    wu_uint(mp, CRAFT_ENTRY_COMMAND);
    wu_bin(mp, "x", 1);
}

/* Issue 13: one AppendEntries of term 2^64 - 1 was stored and stopped the cluster for good
 * (term + 1 overflowed). Terms and indexes are bounded at decode; the reason is given. */
TEST(terms_and_indexes_are_bounded)
{
    fixture();
    struct wu_mp mp;
    append_entries(&mp, UINT64_MAX, 0, 0, 0);
    expect_rc(&mp, CRAFT_EMALFORMED, "term 2^64 - 1");
    CHECK(dec.error != NULL && strstr(dec.error, "term bound") != NULL);
    append_entries(&mp, UINT64_MAX, 0, 0, UINT64_MAX);
    expect_rc(&mp, CRAFT_EMALFORMED, "term 2^64 - 1 with an entry of that term");
    append_entries(&mp, (uint64_t)CRAFT_TERM_MAX + 1, 0, 0, 0);
    expect_rc(&mp, CRAFT_EMALFORMED, "term bound + 1");
    append_entries(&mp, CRAFT_TERM_MAX, 0, 0, CRAFT_TERM_MAX);
    expect_rc(&mp, 0, "term at the bound");
    append_entries(&mp, 5, (uint64_t)CRAFT_INDEX_MAX + 1, 0, 0);
    expect_rc(&mp, CRAFT_EMALFORMED, "prev_index beyond the bound");
    CHECK(dec.error != NULL && strstr(dec.error, "index bound") != NULL);
    append_entries(&mp, 5, CRAFT_INDEX_MAX, 0, 5);
    expect_rc(&mp, CRAFT_EMALFORMED, "an entry past the index bound");
    append_entries(&mp, 5, CRAFT_INDEX_MAX - 1, 0, 5);
    expect_rc(&mp, 0, "an entry at the index bound");
    append_entries(&mp, 5, 0, UINT64_MAX, 0);
    expect_rc(&mp, CRAFT_EMALFORMED, "commit 2^64 - 1");

    /* RequestVote's last_log_index, the result's indexes, a Response's index. */
    mp.n = 0;
    wu_header(&mp, 4, CRAFT_MSG_REQUEST_VOTE);
    wu_uint(&mp, UINT64_MAX);
    wu_uint(&mp, 0);
    wu_bool(&mp, false);
    wu_bool(&mp, false);
    expect_rc(&mp, CRAFT_EMALFORMED, "last_log_index 2^64 - 1");
    mp.n = 0;
    wu_header(&mp, 6, CRAFT_MSG_APPEND_ENTRIES_RESULT);
    wu_bool(&mp, true);
    wu_uint(&mp, 1);
    wu_uint(&mp, 1);
    wu_uint(&mp, UINT64_MAX);
    wu_uint(&mp, 1);
    wu_uint(&mp, 0);
    expect_rc(&mp, CRAFT_EMALFORMED, "hint_term 2^64 - 1");
    mp.n = 0;
    wu_header(&mp, 4, CRAFT_MSG_INSTALL_SNAPSHOT_RESULT);
    wu_uint(&mp, UINT64_MAX);
    wu_uint(&mp, 0);
    wu_bool(&mp, false);
    wu_bool(&mp, false);
    expect_rc(&mp, CRAFT_EMALFORMED, "snapshot result index 2^64 - 1");

    /* The encoder refuses what a decoder would: craft never sends it. */
    struct craft_wire_message m;
    memset(&m, 0, sizeof m);
    m.type = CRAFT_MSG_TIMEOUT_NOW;
    m.u.raft.type = CRAFT_MSG_TIMEOUT_NOW;
    m.u.raft.from = 1;
    m.u.raft.to = 2;
    m.u.raft.term = UINT64_MAX;
    struct craft_wire_buf b;
    craft_wire_buf_init(&b, NULL);
    CHECK_EQ(craft_wire_encode_message(&b, &m), CRAFT_EINVAL);
    craft_wire_buf_close(&b);
}

/* The receiver's own term bounds how far ahead a Raft message may be (max_term); runtime
 * messages carry an informational term and are judged by the absolute bound only. */
TEST(term_far_ahead_of_the_receiver_is_refused)
{
    struct craft_wire_decoder d;
    craft_wire_decoder_init(&d, NULL);
    struct wu_mp mp;
    struct craft_wire_message out;
    d.max_term = 7 + CRAFT_WIRE_TERM_AHEAD_MAX;
    append_entries(&mp, 7 + CRAFT_WIRE_TERM_AHEAD_MAX, 0, 0, 0);
    CHECK_OK(craft_wire_decode(&d, mp.b, mp.n, &out));
    append_entries(&mp, 8 + CRAFT_WIRE_TERM_AHEAD_MAX, 0, 0, 0);
    CHECK_EQ(craft_wire_decode(&d, mp.b, mp.n, &out), CRAFT_EMALFORMED);
    CHECK(d.error != NULL && strstr(d.error, "too far ahead") != NULL);
    mp.n = 0;
    wu_arr(&mp, 8);
    wu_uint(&mp, CRAFT_WIRE_VERSION);
    wu_uint(&mp, CRAFT_WIRE_HANDSHAKE);
    wu_uint(&mp, 1);
    wu_uint(&mp, 0);
    wu_uint(&mp, 9 + CRAFT_WIRE_TERM_AHEAD_MAX);
    wu_uint(&mp, 0);
    wu_uint(&mp, 0);
    wu_str(&mp, "", 0);
    CHECK_OK(craft_wire_decode(&d, mp.b, mp.n, &out));
    craft_wire_decoder_close(&d);
}

/* A receiver judges a frame by its type before the body arrives (a client may only send
 * Requests): the version and type are read from the first bytes, whatever integer formats. */
TEST(peek_type_on_partial_bodies)
{
    uint64_t type = 0;
    static const uint8_t fix[] = {0x98, 0x01, 0x41};
    static const uint8_t wide[] = {0xdd, 0, 0, 0, 8, 0xcc, 0x01, 0xcf, 0, 0, 0, 0, 0, 0, 0, 0x03};
    static const uint8_t v2[] = {0x98, 0x02, 0x41};
    static const uint8_t neg[] = {0x98, 0x01, 0xff};
    CHECK_EQ(craft_wire_peek_type(fix, 0, &type), CRAFT_WIRE_NEED_MORE);
    CHECK_EQ(craft_wire_peek_type(fix, 2, &type), CRAFT_WIRE_NEED_MORE);
    CHECK_OK(craft_wire_peek_type(fix, 3, &type));
    CHECK_EQ(type, CRAFT_WIRE_REQUEST);
    for (size_t n = 0; n < sizeof wide; n++) {
        CHECK_EQ(craft_wire_peek_type(wide, n, &type), CRAFT_WIRE_NEED_MORE);
    }
    CHECK_OK(craft_wire_peek_type(wide, sizeof wide, &type));
    CHECK_EQ(type, CRAFT_MSG_APPEND_ENTRIES);
    CHECK_EQ(craft_wire_peek_type(v2, 3, &type), CRAFT_EVERSION);
    CHECK_EQ(craft_wire_peek_type(neg, 3, &type), CRAFT_EMALFORMED);
    CHECK_EQ(craft_wire_peek_type("\x05", 1, &type), CRAFT_EMALFORMED);
    CHECK_EQ(craft_wire_peek_type("\x91\xc0", 2, &type), CRAFT_EMALFORMED);
}

TEST(max_frame_is_enforced)
{
    load_frames();
    fixture();
    size_t big = 0;
    for (size_t i = 0; i < n_frames; i++) {
        if (body_len(i) > body_len(big)) {
            big = i;
        }
    }
    struct craft_wire_decoder d;
    craft_wire_decoder_init(&d, NULL);
    d.max_frame = (uint32_t)body_len(big) - 1;
    struct craft_wire_message out;
    CHECK_EQ(craft_wire_decode(&d, body_of(big), body_len(big), &out), CRAFT_ETOOBIG);
    size_t used;
    CHECK_EQ(craft_wire_decode_frame(&d, frames[big].base, frames[big].len, &used, &out),
             CRAFT_ETOOBIG);
    /* Judged from the prefix alone, before the body arrives. */
    CHECK_EQ(craft_wire_decode_frame(&d, frames[big].base, 4, &used, &out), CRAFT_ETOOBIG);
    d.max_frame = (uint32_t)body_len(big);
    CHECK_OK(craft_wire_decode_frame(&d, frames[big].base, frames[big].len, &used, &out));
    craft_wire_decoder_close(&d);
}

TEST(cleanup)
{
    for (size_t i = 0; i < n_frames; i++) {
        craft_wire_buf_close(&frames[i]);
    }
    n_frames = 0;
    if (fixture_ready) {
        craft_wire_decoder_close(&dec);
        craft_wire_decoder_close(&dec2);
        craft_wire_buf_close(&rebuf);
        CHECK_EQ(stats.live, 0);
        fixture_ready = false;
    }
}

HARNESS_MAIN()
