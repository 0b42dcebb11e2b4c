/*
 * bench-storage: the durable store against the disk it runs on.
 *
 *   bench-storage [-d DIR] [-s SECONDS] [-r REOPEN_MIB]
 *
 *   -d DIR         where to write (default $TMPDIR or /tmp); a fresh subdirectory is made and
 *                  removed afterwards. Point it at the disk you care about: /dev/shm measures
 *                  nothing but the code.
 *   -s SECONDS     how long each timed phase runs (default 2)
 *   -r REOPEN_MIB  size of the log built for the reopen measurement (default 256 MiB, so that
 *                  a quick run stays quick; the figure is -r 1024)
 *
 * Phases:
 *  1. raw: 4 KiB appended to a plain file then fdatasync, repeatedly: the disk's sync latency
 *     (p50, p99) and rate, the ceiling for any log that syncs every write;
 *  2. one entry per append: 100-byte entries, one append() (one write + one fdatasync) each;
 *     the target is at least 80% of the raw rate;
 *  3. batches of 1000: 100-byte entries, 1000 per append(): group commit, bound by bandwidth;
 *  4. reopen: a log of REOPEN_MIB of 100-byte entries (written without fsync), closed and
 *     opened again; open reads and checks the CRC of every record. The page cache is warm
 *     (it holds what was just written), so this measures the scan, not the disk.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "craft.h"
#include "craft/store.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Latencies collected by a phase, in seconds. */
struct samples {
    double *v;
    size_t n, cap;
};

static void add(struct samples *s, double x)
{
    if (s->n == s->cap) {
        s->cap = s->cap == 0 ? 4096 : s->cap * 2;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (s->v == NULL) {
            perror("realloc");
            exit(1);
        }
    }
    s->v[s->n++] = x;
}

static double pct(struct samples *s, double p)
{
    if (s->n == 0) {
        return 0;
    }
    qsort(s->v, s->n, sizeof *s->v, cmp_double);
    size_t k = (size_t)(p * (double)(s->n - 1));
    return s->v[k];
}

static void die(const char *what, int rv, const char *msg)
{
    fprintf(stderr, "bench-storage: %s: %s%s%s\n", what, craft_strerror(rv),
            msg != NULL ? ": " : "", msg != NULL ? msg : "");
    exit(1);
}

static struct craft_store *open_store(const char *dir, bool fsync)
{
    struct craft_disk_store_options o;
    craft_disk_store_options_init(&o);
    o.fsync = fsync;
    struct craft_store *s = NULL;
    char *msg = NULL;
    int rv = craft_disk_store_open(dir, &o, NULL, &s, &msg);
    if (rv != 0) {
        die("open", rv, msg);
    }
    return s;
}

static void rm_rf(const char *dir)
{
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "bench-storage: could not remove %s\n", dir);
    }
}

/* Phase 1: raw fdatasync of 4 KiB appends to fd, for a slice of time. */
static void raw_slice(int fd, double seconds, struct samples *lat, double *busy)
{
    char buf[4096];
    memset(buf, 'r', sizeof buf);
    double start = now(), t = start;
    while (t - start < seconds) {
        if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf || fdatasync(fd) != 0) {
            perror("raw write");
            exit(1);
        }
        double t2 = now();
        add(lat, t2 - t);
        t = t2;
    }
    *busy += t - start;
}

/* Phases 2 and 3: appends of batch entries of 100 bytes each (fsync on), for a slice of
 * time; *next is the next index. */
static void append_slice(struct craft_store *s, size_t batch, double seconds, craft_index *next,
                         struct samples *lat, double *busy)
{
    struct craft_entry *es = calloc(batch, sizeof *es);
    char payload[100];
    memset(payload, 'p', sizeof payload);
    double start = now(), t = start;
    while (t - start < seconds) {
        for (size_t k = 0; k < batch; k++) {
            es[k].index = *next + k;
            es[k].term = 1;
            es[k].type = CRAFT_ENTRY_COMMAND;
            es[k].data = payload;
            es[k].size = sizeof payload;
        }
        int rv = s->append(s->impl, es, batch);
        if (rv != 0) {
            die("append", rv, craft_disk_store_errmsg(s));
        }
        *next += batch;
        double t2 = now();
        add(lat, t2 - t);
        t = t2;
    }
    *busy += t - start;
    free(es);
}

/* Phase 4: build a log of mib MiB, then time a reopen. */
static void reopen(const char *dir, uint64_t mib, double *seconds, craft_index *entries,
                   double *write_mib_s)
{
    struct craft_store *s = open_store(dir, false);
    const size_t batch = 10000;
    struct craft_entry *es = calloc(batch, sizeof *es);
    char payload[100];
    memset(payload, 'q', sizeof payload);
    uint64_t want = mib << 20, bytes = 0;
    craft_index next = 1;
    double t0 = now();
    while (bytes < want) {
        for (size_t k = 0; k < batch; k++) {
            es[k].index = next + k;
            es[k].term = 1 + (next + k) / 1000000;
            es[k].type = CRAFT_ENTRY_COMMAND;
            es[k].data = payload;
            es[k].size = sizeof payload;
        }
        int rv = s->append(s->impl, es, batch);
        if (rv != 0) {
            die("append", rv, craft_disk_store_errmsg(s));
        }
        next += batch;
        bytes += batch * (100 + 40);
    }
    *write_mib_s = (double)bytes / (1 << 20) / (now() - t0);
    craft_store_close(s);
    free(es);
    double t1 = now();
    s = open_store(dir, true);
    *seconds = now() - t1;
    craft_index first, last;
    s->bounds(s->impl, &first, &last);
    *entries = last;
    craft_store_close(s);
}

int main(int argc, char **argv)
{
    const char *base = getenv("TMPDIR");
    if (base == NULL || *base == '\0') {
        base = "/tmp";
    }
    double seconds = 2;
    uint64_t reopen_mib = 256;
    int opt;
    while ((opt = getopt(argc, argv, "d:s:r:h")) != -1) {
        switch (opt) {
        case 'd':
            base = optarg;
            break;
        case 's':
            seconds = atof(optarg);
            break;
        case 'r':
            reopen_mib = strtoull(optarg, NULL, 10);
            break;
        default:
            fprintf(stderr, "usage: bench-storage [-d DIR] [-s SECONDS] [-r REOPEN_MIB]\n");
            return opt == 'h' ? 0 : 2;
        }
    }
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/craft-bench-XXXXXX", base);
    if (mkdtemp(dir) == NULL) {
        perror(dir);
        return 1;
    }
    char sub[4300];

    /* The raw and the one-entry phases alternate in short slices, so that both see the same
     * disk (a shared machine's sync latency drifts by a factor of two within seconds). */
    struct samples raw = {0}, one = {0}, thousand = {0};
    double raw_busy = 0, one_busy = 0, thousand_busy = 0;
    char path[4300];
    snprintf(path, sizeof path, "%s/raw", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    snprintf(sub, sizeof sub, "%s/one", dir);
    struct craft_store *s = open_store(sub, true);
    craft_index next = 1;
    const int slices = 10;
    for (int k = 0; k < slices; k++) {
        raw_slice(fd, seconds / slices, &raw, &raw_busy);
        append_slice(s, 1, seconds / slices, &next, &one, &one_busy);
    }
    close(fd);
    craft_store_close(s);
    snprintf(sub, sizeof sub, "%s/batch", dir);
    s = open_store(sub, true);
    next = 1;
    append_slice(s, 1000, seconds, &next, &thousand, &thousand_busy);
    craft_store_close(s);
    double raw_rate = (double)raw.n / raw_busy;
    double one_rate = (double)one.n / one_busy;
    double thousand_rate = (double)thousand.n * 1000 / thousand_busy;
    double reopen_s = 0, write_rate = 0;
    craft_index reopen_entries = 0;
    snprintf(sub, sizeof sub, "%s/reopen", dir);
    reopen(sub, reopen_mib, &reopen_s, &reopen_entries, &write_rate);
    rm_rf(dir);

    printf("bench-storage: %s, %.1f s per phase\n\n", base, seconds);
    printf("| phase | ops/s | entries/s | MiB/s | p50 ms | p99 ms |\n");
    printf("|---|---:|---:|---:|---:|---:|\n");
    printf("| raw fdatasync, 4 KiB appends | %.0f | - | %.1f | %.3f | %.3f |\n", raw_rate,
           raw_rate * 4096 / (1 << 20), pct(&raw, 0.5) * 1e3, pct(&raw, 0.99) * 1e3);
    printf("| append, 1 x 100 B entry per sync | %.0f | %.0f | %.2f | %.3f | %.3f |\n",
           one_rate, one_rate, one_rate * 140 / (1 << 20), pct(&one, 0.5) * 1e3,
           pct(&one, 0.99) * 1e3);
    printf("| append, 1000 x 100 B entries per sync | %.0f | %.0f | %.1f | %.3f | %.3f |\n",
           thousand_rate / 1000, thousand_rate, thousand_rate * 140 / (1 << 20),
           pct(&thousand, 0.5) * 1e3, pct(&thousand, 0.99) * 1e3);
    printf("\none entry per sync reaches %.0f%% of the raw sync rate (target >= 80%%)\n",
           100 * one_rate / raw_rate);
    printf("reopen of a %llu MiB log (%llu entries, page cache warm): %.3f s (%.0f MiB/s); "
           "written without fsync at %.0f MiB/s\n",
           (unsigned long long)reopen_mib, (unsigned long long)reopen_entries, reopen_s,
           (double)reopen_mib / reopen_s, write_rate);
    free(raw.v);
    free(one.v);
    free(thousand.v);
    return 0;
}
