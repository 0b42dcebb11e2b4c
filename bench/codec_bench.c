/* Benchmark B7: the wire codec alone. Encodes and decodes AppendEntries messages with 1 and
 * 1,000 entries of 100-byte commands (and a 10-byte and 1 KiB variant), in memory: no I/O.
 * Encoding appends a whole frame to a reused buffer; decoding takes the frame body into a
 * reused decoder (zero-copy: entry data points into the frame).
 *
 *   bench-codec [SECONDS_PER_POINT]      default 0.3
 *
 * Each point runs 5 times; the table shows the median ns per message, the throughput in MB/s
 * of frame bytes and in entries/s, and the spread of ns/op (min-max). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "craft.h"
#include "craft/wire.h"

#define RUNS 5

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench-codec: %s: %s\n", what, craft_strerror(rc));
    exit(1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Keeps the compiler from discarding a decode whose result is unused. */
static volatile uint64_t sink;

struct point {
    size_t n_entries;
    size_t payload;
};

/* Runs one operation repeatedly for about `seconds`; returns ns per operation. */
static double time_encode(struct craft_wire_buf *b, const struct craft_message *m, double seconds)
{
    long iters = 0, batch = 16;
    double start = now_s(), t;
    do {
        for (long i = 0; i < batch; i++) {
            craft_wire_buf_reset(b);
            int rc = craft_wire_encode(b, m);
            if (rc != 0) {
                die("encode", rc);
            }
        }
        iters += batch;
        t = now_s() - start;
    } while (t < seconds);
    return t * 1e9 / (double)iters;
}

static double time_decode(struct craft_wire_decoder *d, const struct craft_wire_buf *b,
                          double seconds)
{
    long iters = 0, batch = 16;
    double start = now_s(), t;
    struct craft_wire_message out;
    do {
        for (long i = 0; i < batch; i++) {
            int rc = craft_wire_decode(d, b->base + CRAFT_WIRE_HEADER_SIZE,
                                       b->len - CRAFT_WIRE_HEADER_SIZE, &out);
            if (rc != 0) {
                die("decode", rc);
            }
            sink += out.u.raft.u.append_entries.n_entries;
        }
        iters += batch;
        t = now_s() - start;
    } while (t < seconds);
    return t * 1e9 / (double)iters;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 0.3;
    if (seconds <= 0) {
        seconds = 0.3;
    }
    static const struct point points[] = {
        {1, 100}, {1000, 100}, {1, 10}, {1000, 10}, {1, 1024}, {1000, 1024},
    };
    static uint8_t payload[1024 * 1000];
    for (size_t i = 0; i < sizeof payload; i++) {
        payload[i] = (uint8_t)(i * 131 + 7);
    }
    static struct craft_entry entries[1000];

    printf("B7 codec: AppendEntries encode (frame into a reused buffer) and decode (zero-copy),\n"
           "in memory, median of %d runs of %.1f s; MB/s counts frame bytes\n",
           RUNS, seconds);
    printf("%-8s %-8s %-7s %7s %12s %10s %14s %20s\n", "entries", "payload", "op", "frame B",
           "ns/op", "MB/s", "entries/s", "spread ns/op");

    struct craft_wire_buf b;
    struct craft_wire_decoder d;
    craft_wire_buf_init(&b, NULL);
    craft_wire_decoder_init(&d, NULL);
    for (size_t p = 0; p < sizeof points / sizeof points[0]; p++) {
        size_t n = points[p].n_entries, size = points[p].payload;
        for (size_t i = 0; i < n; i++) {
            entries[i] =
                (struct craft_entry){7, 1001 + i, CRAFT_ENTRY_COMMAND, payload + i * size, size};
        }
        struct craft_message m;
        memset(&m, 0, sizeof m);
        m.type = CRAFT_MSG_APPEND_ENTRIES;
        m.from = 1;
        m.to = 2;
        m.term = 7;
        m.u.append_entries.prev_index = 1000;
        m.u.append_entries.prev_term = 7;
        m.u.append_entries.commit = 990;
        m.u.append_entries.ctx = 12345;
        m.u.append_entries.entries = entries;
        m.u.append_entries.n_entries = n;

        craft_wire_buf_reset(&b);
        int rc = craft_wire_encode(&b, &m);
        if (rc != 0) {
            die("encode", rc);
        }
        size_t frame = b.len;

        for (int op = 0; op < 2; op++) {
            double r[RUNS];
            for (int k = 0; k < RUNS; k++) {
                r[k] = op == 0 ? time_encode(&b, &m, seconds) : time_decode(&d, &b, seconds);
            }
            if (op == 0) { /* time_encode left the frame in b: keep it for decoding */
                craft_wire_buf_reset(&b);
                rc = craft_wire_encode(&b, &m);
                if (rc != 0) {
                    die("encode", rc);
                }
            }
            qsort(r, RUNS, sizeof r[0], cmp_double);
            double ns = r[RUNS / 2];
            printf("%-8zu %-8zu %-7s %7zu %12.0f %10.0f %14.0f %9.0f-%-10.0f\n", n, size,
                   op == 0 ? "encode" : "decode", frame, ns, (double)frame * 1e3 / ns,
                   (double)n * 1e9 / ns, r[0], r[RUNS - 1]);
        }
    }
    craft_wire_decoder_close(&d);
    craft_wire_buf_close(&b);
    return 0;
}
