/*
 * libFuzzer target for the wire codec (scripts/fuzz.sh builds and runs it).
 *
 * Each input is used twice: as one frame body for craft_wire_decode(), and as a byte stream
 * cut into frames by craft_wire_decode_frame() the way the transport reads a connection. For
 * everything that decodes, the target checks what the unit tests check: the message is sane
 * (c/tests/wire_util.h), its byte strings lie inside the input, and encoding it and decoding
 * that gives an equal message: decode(encode(decode(x))) == decode(x). Every allocation goes
 * through a counting allocator that traps on a request out of proportion to the input.
 *
 * With CRAFT_FUZZ_WRITE_CORPUS=DIR in the environment it writes a seed corpus of valid frames
 * of every message type into DIR and exits instead of fuzzing.
 */
#include <stdio.h>
#include <stdlib.h>

#include "wire/internal.h"

#include "../tests/wire_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct wu_alloc_stats stats;
static struct craft_allocator counting;
static struct craft_wire_decoder dec, dec2;
static struct craft_wire_buf rebuf;

/* A failed property: report it and crash, which is what libFuzzer records. */
static void broken(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_frame: %s: %s\n", what, detail != NULL ? detail : "");
    abort();
}

static void write_corpus(const char *dir)
{
    static struct craft_wire_message samples[64];
    size_t n = wu_samples(samples, 64);
    n = n < 64 ? n : 64;
    struct craft_wire_buf b, stream;
    craft_wire_buf_init(&b, NULL);
    craft_wire_buf_init(&stream, NULL);
    size_t written = 0;
    for (size_t i = 0; i < n; i++) {
        craft_wire_buf_reset(&b);
        if (craft_wire_encode_message(&b, &samples[i]) != 0) {
            broken("encoding a sample failed", craft_wire_type_name(samples[i].type));
        }
        /* Big samples slow every execution down for little new coverage. */
        if (b.len > 8192) {
            continue;
        }
        if (craft_wire_encode_message(&stream, &samples[i]) != 0) {
            broken("encoding a sample failed", craft_wire_type_name(samples[i].type));
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/seed-%02zu-%s", dir, i,
                 craft_wire_type_name(samples[i].type));
        FILE *f = fopen(path, "wb");
        if (f == NULL || fwrite(b.base, 1, b.len, f) != b.len || fclose(f) != 0) {
            broken("cannot write", path);
        }
        written++;
    }
    /* One stream of several frames back to back. */
    char path[4096];
    snprintf(path, sizeof path, "%s/seed-stream", dir);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(stream.base, 1, stream.len, f) != stream.len || fclose(f) != 0) {
        broken("cannot write", path);
    }
    craft_wire_buf_close(&b);
    craft_wire_buf_close(&stream);
    fprintf(stderr, "fuzz_frame: wrote %zu seeds to %s\n", written + 1, dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = getenv("CRAFT_FUZZ_WRITE_CORPUS");
    if (dir != NULL && dir[0] != '\0') {
        write_corpus(dir);
        exit(0);
    }
    counting = wu_allocator(&stats);
    /* The decoders live across inputs, so that reusing their memory is fuzzed too. */
    craft_wire_decoder_init(&dec, &counting);
    craft_wire_decoder_init(&dec2, NULL);
    craft_wire_buf_init(&rebuf, NULL);
    return 0;
}

static void check(int rc, const struct craft_wire_message *m, const uint8_t *input, size_t len)
{
    /* See test_wire_hostile.c: 40 bytes per entry of at least 4, servers capped. */
    size_t bound = 16 * len + 4096 + CRAFT_WIRE_MAX_SERVERS * sizeof(struct craft_server);
    if (stats.max_request > bound) {
        broken("allocation out of proportion to the frame", NULL);
    }
    if (rc != 0) {
        if (rc != CRAFT_EMALFORMED && rc != CRAFT_EVERSION && rc != CRAFT_ETOOBIG &&
            rc != CRAFT_ENOMEM) {
            broken("unexpected return code", craft_err_name(rc));
        }
        if (dec.error == NULL) {
            broken("failure without a reason", craft_err_name(rc));
        }
        return;
    }
    const char *why = wu_insane(m, input, len);
    if (why != NULL) {
        broken("decoded an insane message", why);
    }
    craft_wire_buf_reset(&rebuf);
    int erc = craft_wire_encode_message(&rebuf, m);
    if (erc != 0) {
        broken("re-encoding a decoded message failed", craft_err_name(erc));
    }
    struct craft_wire_message again;
    int drc = craft_wire_decode(&dec2, rebuf.base + CRAFT_WIRE_HEADER_SIZE,
                                rebuf.len - CRAFT_WIRE_HEADER_SIZE, &again);
    if (drc != 0) {
        broken("decoding a re-encoded message failed", dec2.error);
    }
    if (!craft__wire_message_equal(m, &again)) {
        broken("decode(encode(decode(x))) != decode(x)", craft_wire_type_name(m->type));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct craft_wire_message m;

    /* The whole input as one body. */
    stats.max_request = 0;
    int rc = craft_wire_decode(&dec, data, size, &m);
    check(rc, &m, data, size);

    /* The input as a stream of frames, until one is incomplete or bad. */
    size_t off = 0;
    while (off < size) {
        size_t used = 0;
        stats.max_request = 0;
        rc = craft_wire_decode_frame(&dec, data + off, size - off, &used, &m);
        if (rc == CRAFT_WIRE_NEED_MORE) {
            break;
        }
        check(rc, &m, data + off, size - off);
        if (rc != 0) {
            break;
        }
        if (used <= CRAFT_WIRE_HEADER_SIZE || used > size - off) {
            broken("frame length out of range", NULL);
        }
        off += used;
    }
    return 0;
}
