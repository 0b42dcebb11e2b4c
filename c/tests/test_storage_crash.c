/*
 * Crash consistency of the durable store.
 *
 * A crash can stop a write at any byte. These tests make every such state by hand -- the last
 * segment cut at every offset, a hard-state slot torn at every offset, a snapshot cut at every
 * offset -- and check that the store reopens to exactly the old or the new state (for the log:
 * an exact prefix of what was written, never a partial entry), or refuses to open when the
 * state cannot come from a crash. The last test crashes for real: a child process appends and
 * reports what it was acknowledged, and is killed with SIGKILL at random moments.
 */
#include "harness.h"

#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>

#include "craft.h"
#include "craft/store.h"
#include "storage/hard_state.h"

/* --- Helpers ------------------------------------------------------------------------------ */

static size_t payload(craft_index i, uint8_t *buf)
{
    size_t n = (size_t)((i * 37u) % 120u);
    for (size_t k = 0; k < n; k++) {
        buf[k] = (uint8_t)(i * 29u + k * 7u);
    }
    return n;
}

static craft_term term_of(craft_index i)
{
    return 1 + i / 50;
}

static int append_range(struct craft_store *s, craft_index lo, craft_index hi)
{
    size_t n = (size_t)(hi - lo + 1);
    struct craft_entry *es = calloc(n, sizeof *es);
    uint8_t *bufs = malloc(n * 120);
    for (size_t k = 0; k < n; k++) {
        es[k].index = lo + k;
        es[k].term = term_of(lo + k);
        es[k].type = CRAFT_ENTRY_COMMAND;
        es[k].data = bufs + k * 120;
        es[k].size = payload(lo + k, bufs + k * 120);
    }
    int rv = s->append(s->impl, es, n);
    free(es);
    free(bufs);
    return rv;
}

/* Counts the log lines of one event kind. */
struct log_count {
    int torn;
    int other_warn;
    char last[512];
};

static void count_log(void *data, int level, const char *line)
{
    struct log_count *c = data;
    if (strstr(line, "event=torn_tail") != NULL) {
        c->torn++;
    } else if (level >= CRAFT_STORE_LOG_WARN) {
        c->other_warn++;
    }
    snprintf(c->last, sizeof c->last, "%s", line);
}

static int open_store(const char *dir, uint64_t segment_size, bool fsync, struct log_count *lc,
                      struct craft_store **out, char **msg)
{
    struct craft_disk_store_options o;
    craft_disk_store_options_init(&o);
    o.segment_size = segment_size;
    o.fsync = fsync;
    o.log = lc != NULL ? count_log : NULL;
    o.log_data = lc;
    return craft_disk_store_open(dir, &o, NULL, out, msg);
}

/* Checks that the store holds exactly first..last of the sequence written by append_range. */
static void check_log(struct craft_store *s, craft_index first, craft_index last)
{
    craft_index f, l;
    CHECK_OK(s->bounds(s->impl, &f, &l));
    CHECK_EQ(f, first);
    CHECK_EQ(l, last);
    if (last < first) {
        return;
    }
    struct craft_entry *es = NULL;
    size_t n = 0;
    CHECK_OK(s->entries(s->impl, first, last, NULL, &es, &n));
    uint8_t buf[120];
    for (size_t k = 0; k < n; k++) {
        craft_index i = first + k;
        size_t want = payload(i, buf);
        if (es[k].index != i || es[k].term != term_of(i) || es[k].size != want ||
            memcmp(es[k].data, buf, want) != 0) {
            free(es);
            FAIL("entry %llu differs", (unsigned long long)i);
        }
    }
    free(es);
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static int write_file(const char *path, const uint8_t *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        return -1;
    }
    size_t w = fwrite(buf, 1, len, f);
    return fclose(f) == 0 && w == len ? 0 : -1;
}

static void path_join(char *out, size_t size, const char *dir, const char *name)
{
    snprintf(out, size, "%s/%s", dir, name);
}

/* The sorted list of file names of a kind (prefix) in dir; returns how many (at most max). */
static int list_files(const char *dir, const char *prefix, const char *suffix, char names[][64],
                      int max)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d != NULL && (de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name), sl = strlen(suffix);
        if (strncmp(de->d_name, prefix, strlen(prefix)) == 0 && len >= sl &&
            strcmp(de->d_name + len - sl, suffix) == 0 && n < max && len < 64) {
            memcpy(names[n++], de->d_name, len + 1);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    for (int i = 1; i < n; i++) {
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char t[64];
            memcpy(t, names[j], 64);
            memcpy(names[j], names[j - 1], 64);
            memcpy(names[j - 1], t, 64);
        }
    }
    return n;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        if (p[k] != 0) {
            return false;
        }
    }
    return true;
}

/* Record boundaries of a segment image: offsets where whole records end (after the header),
 * up to the preallocated tail of zeros. */
static int record_ends(const uint8_t *seg, size_t len, size_t *ends, int max)
{
    size_t pos = 40;
    int n = 0;
    while (pos + 40 <= len && n < max && !all_zero(seg + pos, 40)) {
        uint32_t size = (uint32_t)seg[pos + 4] | (uint32_t)seg[pos + 5] << 8 |
                        (uint32_t)seg[pos + 6] << 16 | (uint32_t)seg[pos + 7] << 24;
        if (pos + 40 + size > len) {
            break;
        }
        pos += 40 + size;
        ends[n++] = pos;
    }
    return n;
}

/* --- The log cut at every byte of its last segment ----------------------------------------- */

/* Segments are preallocated: the records are followed by zeros up to the file's size. A crash
 * in an append leaves the records written before it, then any prefix of the new bytes, then
 * the zeros that were there (mode 1); a crash between the two steps of a cut (truncation or
 * repair) leaves a file that ends early (mode 0). Both are tried at every byte of the written
 * part, and the file cut anywhere in the zero tail must lose nothing. */
static void cut_every_offset(uint64_t segment_size, craft_index total)
{
    char *dir = harness_tmpdir();
    struct craft_store *s = NULL;
    CHECK_OK(open_store(dir, segment_size, false, NULL, &s, NULL));
    /* Batches of 1 to 7 entries: the torn-tail rule works per append. */
    for (craft_index lo = 1; lo <= total;) {
        craft_index hi = lo + (lo * 5) % 7;
        if (hi > total) {
            hi = total;
        }
        CHECK_OK(append_range(s, lo, hi));
        lo = hi + 1;
    }
    craft_store_close(s);

    char names[256][64];
    int nseg = list_files(dir, "wal-", ".seg", names, 256);
    CHECK(nseg >= 1);
    CHECK(total > 100 || nseg == 1); /* the single-segment case is one */
    char path[4200];
    path_join(path, sizeof path, dir, names[nseg - 1]);
    size_t len = 0;
    uint8_t *image = read_file(path, &len);
    CHECK(image != NULL);
    size_t ends[4096];
    int nrec = record_ends(image, len, ends, 4096);
    CHECK(nrec > 0);
    size_t dlen = ends[nrec - 1];
    /* The file has its preallocated size, zeros after the records. */
    CHECK(len >= dlen);
    CHECK_EQ(len, (size_t)(segment_size > dlen ? segment_size : len));
    CHECK(all_zero(image + dlen, len - dlen));
    craft_index seg_first = total - (craft_index)nrec + 1;

    for (size_t cut = 0; cut <= len && !harness_failed();) {
        for (int mode = 0; mode < 2 && !harness_failed(); mode++) {
            if (mode == 1 && cut >= dlen) {
                continue; /* the same as the file as written */
            }
            CHECK_OK(write_file(path, image, cut));
            if (mode == 1) {
                CHECK_OK(truncate(path, (off_t)len)); /* zeros after the cut */
            }
            struct log_count lc;
            memset(&lc, 0, sizeof lc);
            char *msg = NULL;
            int rv = open_store(dir, segment_size, false, &lc, &s, &msg);
            if (cut < 40) {
                /* Segments are created whole under a temporary name and renamed: a segment
                 * with half a header cannot come from a crash. */
                CHECK_EQ(rv, CRAFT_ECORRUPT);
                CHECK(msg != NULL && strstr(msg, names[nseg - 1]) != NULL);
                free(msg);
                continue;
            }
            if (rv != 0) {
                FAIL("cut at %zu (mode %d): open failed: %s", cut, mode, msg != NULL ? msg : "?");
            }
            /* The whole records survive, and nothing else: a record is whole if what it lost
             * was zeros anyway (mode 1) or nothing (mode 0). */
            int whole = 0;
            while (whole < nrec && (ends[whole] <= cut ||
                                    (mode == 1 && all_zero(image + cut, ends[whole] - cut)))) {
                whole++;
            }
            size_t kept = whole > 0 ? ends[whole - 1] : 40;
            /* A torn tail is cut and logged when non-zero bytes of a record were lost. */
            bool torn = cut > kept && !all_zero(image + kept, cut - kept);
            check_log(s, 1, seg_first + (craft_index)whole - 1);
            CHECK_EQ(lc.torn, torn ? 1 : 0);
            CHECK_EQ(lc.other_warn, 0);
            /* The torn bytes are gone from the file, not only from memory: zeros follow. */
            size_t flen = 0;
            uint8_t *now = read_file(path, &flen);
            CHECK(now != NULL && flen >= kept);
            CHECK(now != NULL && memcmp(now, image, kept) == 0 &&
                  all_zero(now + kept, flen - kept));
            free(now);
            /* The log goes on from there, and the next open finds nothing to repair. */
            craft_index last = seg_first + (craft_index)whole - 1;
            CHECK_OK(append_range(s, last + 1, last + 3));
            craft_store_close(s);
            memset(&lc, 0, sizeof lc);
            CHECK_OK(open_store(dir, segment_size, false, &lc, &s, NULL));
            check_log(s, 1, last + 3);
            CHECK_EQ(lc.torn, 0);
            craft_store_close(s);
            if (harness_failed()) {
                fprintf(stderr, "at cut %zu (mode %d)\n", cut, mode);
            }
        }
        /* Every byte of the records; in the zero tail, the places that matter. */
        if (cut < dlen + 41) {
            cut++;
        } else if (cut < len && len - cut > 512) {
            cut = (cut | 511) + 1;
        } else {
            cut = cut < len - 1 ? len - 1 : cut + 1;
        }
    }
    free(image);
}

TEST(log_cut_at_every_offset_of_a_single_segment)
{
    /* 60 entries take about 6 KiB: one segment of 8 KiB with a zero tail of about 2 KiB (a
     * bigger one costs every iteration a free and a reallocation of its blocks). */
    cut_every_offset(8192, 60);
}

TEST(log_cut_at_every_offset_of_the_last_of_many_segments)
{
    cut_every_offset(4096, 200);
}

/* --- Truncation and the preallocated tail ----------------------------------------------------- */

static size_t file_size_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

/* Truncation zeros what follows the new end, durably: records it removed must never come back,
 * neither after a crash nor when later appends stop short of where they were. */
static void truncation_then_crash(bool fs)
{
    char *dir = harness_tmpdir();
    struct craft_store *s = NULL;
    struct log_count lc;
    CHECK_OK(open_store(dir, 1 << 20, fs, NULL, &s, NULL));
    for (craft_index lo = 1; lo <= 100; lo += 10) {
        CHECK_OK(append_range(s, lo, lo + 9));
    }
    /* Cut in the middle of an append. */
    CHECK_OK(s->truncate(s->impl, 65));
    check_log(s, 1, 64);
    /* "Crash" right after the truncation returned: a copy of the directory as it is. */
    char cmd[9000], crashed[4200];
    snprintf(crashed, sizeof crashed, "%s.crashed", dir);
    snprintf(cmd, sizeof cmd, "rm -rf %s && cp -r %s/. %s", crashed, dir, crashed);
    CHECK_EQ(system(cmd), 0);
    struct craft_store *c = NULL;
    memset(&lc, 0, sizeof lc);
    CHECK_OK(open_store(crashed, 1 << 20, fs, &lc, &c, NULL));
    check_log(c, 1, 64);
    CHECK_EQ(lc.torn, 0);
    CHECK_EQ(lc.other_warn, 0);
    /* Fewer entries than were removed: the old 68..100 must not reappear after them. */
    CHECK_OK(append_range(c, 65, 67));
    craft_store_close(c);
    memset(&lc, 0, sizeof lc);
    CHECK_OK(open_store(crashed, 1 << 20, fs, &lc, &c, NULL));
    check_log(c, 1, 67);
    CHECK_EQ(lc.torn, 0);
    CHECK_EQ(lc.other_warn, 0);
    craft_store_close(c);
    /* The file kept its preallocated size, zeros after the records. */
    char names[8][64], path[4200];
    CHECK_EQ(list_files(dir, "wal-", ".seg", names, 8), 1);
    path_join(path, sizeof path, dir, names[0]);
    CHECK_EQ(file_size_of(path), (size_t)1 << 20);
    size_t len = 0;
    uint8_t *img = read_file(path, &len);
    size_t ends[256];
    int n = record_ends(img, len, ends, 256);
    CHECK_EQ(n, 64);
    CHECK(all_zero(img + ends[n - 1], len - ends[n - 1]));
    free(img);
    craft_store_close(s);
    snprintf(cmd, sizeof cmd, "rm -rf %s", crashed);
    CHECK_EQ(system(cmd), 0);

    /* Across segments: later segments go, the one holding from is cut and zeroed. */
    char *dir2 = harness_tmpdir();
    CHECK_OK(open_store(dir2, 4096, fs, NULL, &s, NULL));
    CHECK_OK(append_range(s, 1, 200));
    for (craft_index lo = 201; lo <= 300; lo += 5) {
        CHECK_OK(append_range(s, lo, lo + 4));
    }
    CHECK_OK(s->truncate(s->impl, 230));
    CHECK_OK(append_range(s, 230, 231));
    craft_store_close(s);
    memset(&lc, 0, sizeof lc);
    CHECK_OK(open_store(dir2, 4096, fs, &lc, &s, NULL));
    check_log(s, 1, 231);
    CHECK_EQ(lc.torn, 0);
    CHECK_EQ(lc.other_warn, 0);
    craft_store_close(s);
}

TEST(truncated_suffix_never_comes_back_after_a_crash)
{
    /* With fsync the zeros are allocated (fallocate), without it they are sparse. */
    truncation_then_crash(false);
    truncation_then_crash(true);
}

/* A clean shutdown leaves the last segment with its zero tail: the next open reads it as the
 * end of the log, reports nothing, changes nothing, and appends continue in the same file. */
static void reopen_after_clean_shutdown(bool fs)
{
    char *dir = harness_tmpdir();
    struct craft_store *s = NULL;
    struct log_count lc;
    CHECK_OK(open_store(dir, 1 << 20, fs, NULL, &s, NULL));
    CHECK_OK(append_range(s, 1, 50));
    craft_store_close(s);
    char names[8][64], path[4200];
    CHECK_EQ(list_files(dir, "wal-", ".seg", names, 8), 1);
    path_join(path, sizeof path, dir, names[0]);
    size_t len_a = 0, len_b = 0;
    uint8_t *img_a = read_file(path, &len_a);
    CHECK_EQ(len_a, (size_t)1 << 20);
    for (int round = 0; round < 3; round++) {
        memset(&lc, 0, sizeof lc);
        CHECK_OK(open_store(dir, 1 << 20, fs, &lc, &s, NULL));
        check_log(s, 1, 50);
        CHECK_EQ(lc.torn, 0);
        CHECK_EQ(lc.other_warn, 0);
        craft_store_close(s);
    }
    uint8_t *img_b = read_file(path, &len_b);
    CHECK_EQ(len_b, len_a);
    CHECK(memcmp(img_a, img_b, len_a) == 0);
    free(img_a);
    free(img_b);
    CHECK_OK(open_store(dir, 1 << 20, fs, NULL, &s, NULL));
    CHECK_OK(append_range(s, 51, 60));
    craft_store_close(s);
    memset(&lc, 0, sizeof lc);
    CHECK_OK(open_store(dir, 1 << 20, fs, &lc, &s, NULL));
    check_log(s, 1, 60);
    CHECK_EQ(lc.torn, 0);
    craft_store_close(s);
    CHECK_EQ(list_files(dir, "wal-", ".seg", names, 8), 1);
    CHECK_EQ(file_size_of(path), (size_t)1 << 20);
}

TEST(reopen_after_clean_shutdown_with_a_preallocated_tail)
{
    reopen_after_clean_shutdown(false);
    reopen_after_clean_shutdown(true);
}

/* --- The hard state torn at every offset ----------------------------------------------------- */

TEST(hard_state_torn_at_every_offset)
{
    char *dir = harness_tmpdir();
    char path[4200];
    path_join(path, sizeof path, dir, "state");
    struct craft_store *s = NULL;
    struct craft_hard_state a = {0, 0, 0}, b;
    CHECK_OK(open_store(dir, 1 << 20, false, NULL, &s, NULL));
    craft_store_close(s);
    for (int round = 0; round < 4 && !harness_failed(); round++) {
        /* Before: a; after: b. Every state in between must read as one of them. */
        size_t len_a = 0, len_b = 0;
        uint8_t *img_a = read_file(path, &len_a);
        b.term = a.term + 1 + (uint64_t)round;
        b.vote = (uint64_t)round % 3 + 1;
        b.commit = a.commit + 10;
        CHECK_OK(open_store(dir, 1 << 20, false, NULL, &s, NULL));
        CHECK_OK(s->save_hard_state(s->impl, &b));
        craft_store_close(s);
        uint8_t *img_b = read_file(path, &len_b);
        CHECK_EQ(len_a, 1024);
        CHECK_EQ(len_b, 1024);
        /* Exactly one slot changed. */
        size_t lo = 1024, hi = 0;
        for (size_t k = 0; k < 1024; k++) {
            if (img_a[k] != img_b[k]) {
                lo = k < lo ? k : lo;
                hi = k + 1;
            }
        }
        CHECK(lo < hi);
        CHECK(hi - lo <= 68);
        size_t slot = lo < 512 ? 0 : 512;
        uint8_t img[1024];
        for (size_t cut = 0; cut <= 512 && !harness_failed(); cut++) {
            for (int zeros = 0; zeros < 2; zeros++) {
                /* The new bytes up to cut; after it the old ones, or zeros (a sector the
                 * device had cleared). */
                memcpy(img, img_a, 1024);
                memcpy(img + slot, img_b + slot, cut);
                if (zeros) {
                    memset(img + slot + cut, 0, 512 - cut);
                }
                CHECK_OK(write_file(path, img, 1024));
                struct craft_hard_state got;
                CHECK_OK(open_store(dir, 1 << 20, false, NULL, &s, NULL));
                CHECK_OK(s->load_hard_state(s->impl, &got));
                craft_store_close(s);
                bool is_a = got.term == a.term && got.vote == a.vote && got.commit == a.commit;
                bool is_b = got.term == b.term && got.vote == b.vote && got.commit == b.commit;
                if (!(is_a || is_b) || (cut >= 68 && !is_b)) {
                    FAIL("slot %zu cut at %zu (zeros %d): got term %llu", slot, cut, zeros,
                         (unsigned long long)got.term);
                }
            }
        }
        CHECK_OK(write_file(path, img_b, 1024));
        free(img_a);
        free(img_b);
        a = b;
    }
}

TEST(hard_state_with_both_slots_bad_is_refused)
{
    char *dir = harness_tmpdir();
    char path[4200];
    path_join(path, sizeof path, dir, "state");
    struct craft_store *s = NULL;
    CHECK_OK(open_store(dir, 1 << 20, false, NULL, &s, NULL));
    struct craft_hard_state hs = {3, 1, 0};
    CHECK_OK(s->save_hard_state(s->impl, &hs));
    craft_store_close(s);
    size_t len;
    uint8_t *img = read_file(path, &len);
    img[30] ^= 1;
    img[512 + 30] ^= 1;
    CHECK_OK(write_file(path, img, len));
    free(img);
    char *msg = NULL;
    CHECK_EQ(open_store(dir, 1 << 20, false, NULL, &s, &msg), CRAFT_ECORRUPT);
    CHECK(msg != NULL && strstr(msg, "state") != NULL);
    free(msg);
}

/* --- Snapshots cut at every offset ------------------------------------------------------------ */

/* Writes a snapshot of size bytes; commits it unless left is not NULL, in which case the
 * writer is handed back unfinished (the test "crashes" there). */
static int write_snapshot(struct craft_store *s, craft_index index, craft_term term,
                          size_t size, uint8_t seed, void **left)
{
    struct craft_snapshot_meta m;
    memset(&m, 0, sizeof m);
    m.index = index;
    m.term = term;
    m.conf_index = 1;
    craft_configuration_init(&m.conf);
    craft_configuration_add(&m.conf, NULL, 1, "10.0.0.1:7000", CRAFT_VOTER);
    void *w = NULL;
    int rv = s->snapshot_begin(s->impl, &m, &w);
    craft_configuration_close(&m.conf, NULL);
    if (rv != 0) {
        return rv;
    }
    uint8_t buf[97];
    for (size_t off = 0; off < size; off += sizeof buf) {
        size_t n = size - off < sizeof buf ? size - off : sizeof buf;
        for (size_t k = 0; k < n; k++) {
            buf[k] = (uint8_t)(seed + off + k);
        }
        rv = s->snapshot_write(s->impl, w, buf, n);
        if (rv != 0) {
            s->snapshot_abort(s->impl, w);
            return rv;
        }
    }
    if (left != NULL) {
        *left = w;
        return 0;
    }
    return s->snapshot_commit(s->impl, w);
}

static void check_snapshot(struct craft_store *s, craft_index index, size_t size, uint8_t seed)
{
    struct craft_snapshot_meta m;
    CHECK_OK(s->snapshot_meta(s->impl, NULL, &m));
    craft_configuration_close(&m.conf, NULL);
    CHECK_EQ(m.index, index);
    CHECK_EQ(m.size, size);
    void *r;
    CHECK_OK(s->snapshot_open(s->impl, &r));
    uint8_t *buf = malloc(size + 1);
    size_t n = 0;
    int rv = s->snapshot_read(s->impl, r, 0, buf, size + 1, &n);
    s->snapshot_close(s->impl, r);
    bool same = rv == 0 && n == size;
    for (size_t k = 0; same && k < size; k++) {
        same = buf[k] == (uint8_t)(seed + k);
    }
    free(buf);
    CHECK(same);
}

TEST(snapshot_cut_at_every_offset)
{
    char *dir = harness_tmpdir();
    struct craft_store *s = NULL;
    CHECK_OK(open_store(dir, 1 << 20, false, NULL, &s, NULL));
    CHECK_OK(append_range(s, 1, 40));
    CHECK_OK(write_snapshot(s, 10, term_of(10), 500, 1, NULL));
    CHECK_OK(write_snapshot(s, 20, term_of(20), 700, 2, NULL));
    craft_store_close(s);
    char names[8][64];
    CHECK_EQ(list_files(dir, "snap-", ".snap", names, 8), 1);
    char path[4200], tmp[4200];
    path_join(path, sizeof path, dir, names[0]);
    size_t len;
    uint8_t *image = read_file(path, &len);
    CHECK(image != NULL);
    /* A crash before the rename leaves a temporary file of any length: the snapshot before it
     * stays the latest and the temporary file goes. */
    path_join(tmp, sizeof tmp, dir, "snap-0000000000000030-7.tmp");
    for (size_t cut = 0; cut <= len && !harness_failed(); cut += 7) {
        CHECK_OK(write_file(tmp, image, cut));
        CHECK_OK(open_store(dir, 1 << 20, false, NULL, &s, NULL));
        check_snapshot(s, 20, 700, 2);
        craft_store_close(s);
        CHECK(access(tmp, F_OK) != 0);
    }
    /* A snapshot under its real name is always whole (it was synced before the rename): one
     * cut short is corruption, and open says which file. */
    for (size_t cut = 0; cut < len && !harness_failed(); cut++) {
        CHECK_OK(write_file(path, image, cut));
        char *msg = NULL;
        int rv = open_store(dir, 1 << 20, false, NULL, &s, &msg);
        CHECK_EQ(rv, CRAFT_ECORRUPT);
        CHECK(msg != NULL && strstr(msg, names[0]) != NULL);
        free(msg);
    }
    CHECK_OK(write_file(path, image, len));
    CHECK_OK(open_store(dir, 1 << 20, false, NULL, &s, NULL));
    check_snapshot(s, 20, 700, 2);
    check_log(s, 1, 40);
    craft_store_close(s);
    free(image);
}

TEST(snapshot_writer_left_open_by_a_crash)
{
    char *dir = harness_tmpdir();
    char path[4200];
    path_join(path, sizeof path, dir, "copy");
    struct craft_store *s = NULL;
    CHECK_OK(open_store(dir, 1 << 20, false, NULL, &s, NULL));
    CHECK_OK(append_range(s, 1, 40));
    CHECK_OK(write_snapshot(s, 10, term_of(10), 300, 5, NULL));
    /* Start another and never finish it; "crash" by copying the directory as it is. */
    void *w = NULL;
    CHECK_OK(write_snapshot(s, 30, term_of(30), 1000, 6, &w));
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "cp -r %s/. %s.crashed", dir, dir);
    CHECK_EQ(system(cmd), 0);
    char crashed[4200];
    snprintf(crashed, sizeof crashed, "%s.crashed", dir);
    struct craft_store *c = NULL;
    CHECK_OK(open_store(crashed, 1 << 20, false, NULL, &c, NULL));
    check_snapshot(c, 10, 300, 5);
    check_log(c, 1, 40);
    char names[8][64];
    CHECK_EQ(list_files(crashed, "snap-", ".tmp", names, 8), 0);
    craft_store_close(c);
    snprintf(cmd, sizeof cmd, "rm -rf %s", crashed);
    CHECK_EQ(system(cmd), 0);
    s->snapshot_abort(s->impl, w);
    craft_store_close(s);
}

/* A crash between a snapshot's rename and the drop of a log that does not continue it: open
 * finishes the job (Raft paper, Figure 13, step 7). */
TEST(interrupted_log_discard_is_finished_on_open)
{
    char *dir = harness_tmpdir();
    char *other = harness_tmpdir();
    struct craft_store *s = NULL;
    CHECK_OK(open_store(dir, 4096, false, NULL, &s, NULL));
    CHECK_OK(append_range(s, 1, 120));
    craft_store_close(s);
    /* The snapshot, from elsewhere, at index 100 in a term the log does not have there. */
    CHECK_OK(open_store(other, 4096, false, NULL, &s, NULL));
    CHECK_OK(write_snapshot(s, 100, 9, 64, 3, NULL));
    craft_store_close(s);
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "cp %s/snap-*.snap %s/", other, dir);
    CHECK_EQ(system(cmd), 0);
    /* Case 1: the state file was not updated yet. */
    CHECK_OK(open_store(dir, 4096, false, NULL, &s, NULL));
    check_log(s, 101, 100);
    craft_term t = 0;
    CHECK_OK(s->term(s->impl, 100, &t));
    CHECK_EQ(t, 9);
    /* The log continues from the snapshot, and a term below the snapshot's is refused. */
    struct craft_entry e = {9, 101, CRAFT_ENTRY_BARRIER, NULL, 0};
    CHECK_EQ(append_range(s, 101, 110), CRAFT_EINVAL);
    CHECK_OK(s->append(s->impl, &e, 1));
    craft_store_close(s);

    /* Case 2: the state file says base 100 (term 9) but the old segments are still there. */
    char *dir2 = harness_tmpdir();
    CHECK_OK(open_store(dir2, 4096, false, NULL, &s, NULL));
    CHECK_OK(append_range(s, 1, 120));
    craft_store_close(s);
    snprintf(cmd, sizeof cmd, "cp %s/snap-*.snap %s/", other, dir2);
    CHECK_EQ(system(cmd), 0);
    int dfd = open(dir2, O_RDONLY | O_DIRECTORY);
    struct craft__hs_file hf;
    CHECK_OK(craft__storage_hs_open(dfd, false, &hf, NULL));
    CHECK_OK(craft__storage_hs_write(&hf, &hf.cur.hs, 100, 9, NULL));
    craft__storage_hs_close(&hf);
    close(dfd);
    struct log_count lc;
    memset(&lc, 0, sizeof lc);
    CHECK_OK(open_store(dir2, 4096, false, &lc, &s, NULL));
    check_log(s, 101, 100);
    CHECK(lc.other_warn >= 1);
    craft_store_close(s);
    char names[64][64];
    CHECK_EQ(list_files(dir2, "wal-", ".seg", names, 64), 0);
}

/* --- A real crash: SIGKILL at random moments ------------------------------------------------ */

/* The child: appends batches forever, reporting each acknowledged last index (and the term it
 * saved in the hard state) on fd. */
static void child_append(const char *dir, int fd)
{
    struct craft_store *s = NULL;
    if (open_store(dir, 64 * 1024, true, NULL, &s, NULL) != 0) {
        _exit(2);
    }
    craft_index first, last;
    s->bounds(s->impl, &first, &last);
    struct craft_hard_state hs;
    s->load_hard_state(s->impl, &hs);
    for (uint64_t round = 0;; round++) {
        craft_index n = 1 + (last * 7 + round) % 40;
        if (append_range(s, last + 1, last + n) != 0) {
            _exit(3);
        }
        last += n;
        hs.term++;
        if (round % 5 == 0) {
            hs.commit = last;
            if (s->save_hard_state(s->impl, &hs) != 0) {
                _exit(4);
            }
        }
        if (round % 50 == 49 && last > 500) {
            if (s->compact(s->impl, last - 400) != 0) {
                _exit(5);
            }
        }
        uint64_t report[2] = {last, hs.commit};
        if (write(fd, report, sizeof report) != (ssize_t)sizeof report) {
            _exit(6);
        }
    }
}

TEST(sigkill_at_random_moments_loses_nothing_acknowledged)
{
    char *dir = harness_tmpdir();
    int rounds = harness_env_int("CRAFT_CRASH_ROUNDS", 20);
    uint64_t rng = 0x2545f4914f6cdd1dull;
    craft_index acked_max = 0;
    craft_index commit_max = 0;
    for (int round = 0; round < rounds && !harness_failed(); round++) {
        int p[2];
        CHECK_OK(pipe(p));
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            child_append(dir, p[1]);
            _exit(0);
        }
        close(p[1]);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        struct timespec ts = {0, (long)(20 + rng % 180) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        uint64_t report[2];
        ssize_t r;
        while ((r = read(p[0], report, sizeof report)) == (ssize_t)sizeof report) {
            acked_max = report[0] > acked_max ? report[0] : acked_max;
            commit_max = report[1] > commit_max ? report[1] : commit_max;
        }
        close(p[0]);
        int status = 0;
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        /* Everything acknowledged is there, intact. */
        struct craft_store *s = NULL;
        char *msg = NULL;
        int rv = open_store(dir, 64 * 1024, true, NULL, &s, &msg);
        if (rv != 0) {
            FAIL("round %d: open: %s", round, msg != NULL ? msg : "?");
        }
        craft_index first, last;
        CHECK_OK(s->bounds(s->impl, &first, &last));
        if (last < acked_max) {
            craft_store_close(s);
            FAIL("round %d: last index %llu, but %llu was acknowledged", round,
                 (unsigned long long)last, (unsigned long long)acked_max);
        }
        check_log(s, first, last);
        struct craft_hard_state hs;
        CHECK_OK(s->load_hard_state(s->impl, &hs));
        CHECK(hs.commit >= commit_max);
        craft_store_close(s);
        acked_max = last;
    }
    CHECK(acked_max > 0);
}

HARNESS_MAIN()
