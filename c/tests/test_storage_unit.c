/*
 * Unit tests of the durable store's parts: the CRC32C implementations, the record and header
 * encodings, segment rolling and deletion, and the log lines and error messages the store
 * gives to its caller.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* fallocate */
#endif
#include "harness.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>

#include "craft.h"
#include "craft/store.h"
#include "storage/crc32c.h"
#include "storage/format.h"

TEST(crc32c_known_values)
{
    /* RFC 3720 (iSCSI), appendix B.4, and the usual check value. */
    uint8_t zeros[32], ones[32], inc[32];
    memset(zeros, 0, sizeof zeros);
    memset(ones, 0xff, sizeof ones);
    for (int k = 0; k < 32; k++) {
        inc[k] = (uint8_t)k;
    }
    CHECK_EQ(craft__storage_crc32c(0, "123456789", 9), 0xe3069283u);
    CHECK_EQ(craft__storage_crc32c(0, zeros, 32), 0x8a9136aau);
    CHECK_EQ(craft__storage_crc32c(0, ones, 32), 0x62a8ab43u);
    CHECK_EQ(craft__storage_crc32c(0, inc, 32), 0x46dd794eu);
    CHECK_EQ(craft__storage_crc32c_sw(0, "123456789", 9), 0xe3069283u);
    CHECK_EQ(craft__storage_crc32c_sw(0, inc, 32), 0x46dd794eu);
}

TEST(crc32c_hardware_and_software_agree_at_every_alignment_and_split)
{
    uint8_t buf[2048];
    uint64_t x = 1;
    for (size_t k = 0; k < sizeof buf; k++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        buf[k] = (uint8_t)(x >> 56);
    }
    for (size_t off = 0; off < 16; off++) {
        for (size_t len = 0; len + off <= sizeof buf; len += 61) {
            uint32_t sw = craft__storage_crc32c_sw(0, buf + off, len);
            CHECK_EQ(craft__storage_crc32c(0, buf + off, len), sw);
            /* Extending a CRC chunk by chunk gives the CRC of the whole. */
            size_t half = len / 3;
            uint32_t inc = craft__storage_crc32c(0, buf + off, half);
            CHECK_EQ(craft__storage_crc32c(inc, buf + off + half, len - half), sw);
        }
    }
}

TEST(record_header_roundtrip_and_checks)
{
    struct craft__rec_header h = {77, 12345, 9, 12340, CRAFT_ENTRY_CONFIG, CRAFT__REC_FLAG_END,
                                  0xdeadbeef};
    uint8_t buf[CRAFT__REC_HEADER_SIZE];
    craft__rec_header_encode(&h, buf);
    struct craft__rec_header g;
    CHECK(craft__rec_header_decode(buf, &g));
    CHECK_EQ(g.size, 77);
    CHECK_EQ(g.index, 12345);
    CHECK_EQ(g.term, 9);
    CHECK_EQ(g.batch, 12340);
    CHECK_EQ(g.type, CRAFT_ENTRY_CONFIG);
    CHECK_EQ(g.flags, CRAFT__REC_FLAG_END);
    CHECK_EQ(g.payload_crc, 0xdeadbeefu);
    /* Every single-bit flip is caught. */
    for (size_t bit = 0; bit < 8 * sizeof buf; bit++) {
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        CHECK(!craft__rec_header_decode(buf, &g));
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    /* Little-endian on every machine. */
    CHECK_EQ(buf[4], 77);
    CHECK_EQ(buf[8], 12345 & 0xff);
    CHECK_EQ(buf[9], 12345 >> 8);
}

TEST(segment_header_roundtrip_and_version)
{
    struct craft__seg_header h = {5, 1000}, g;
    uint8_t buf[CRAFT__SEG_HEADER_SIZE];
    craft__seg_header_encode(&h, buf);
    CHECK(memcmp(buf, "CRAFTWAL", 8) == 0);
    CHECK_OK(craft__seg_header_decode(buf, sizeof buf, &g));
    CHECK_EQ(g.seq, 5);
    CHECK_EQ(g.first, 1000);
    CHECK_EQ(craft__seg_header_decode(buf, sizeof buf - 1, &g), CRAFT_ECORRUPT);
    buf[20] ^= 1;
    CHECK_EQ(craft__seg_header_decode(buf, sizeof buf, &g), CRAFT_ECORRUPT);
}

/* --- The store as a whole -------------------------------------------------------------------- */

struct lines {
    int n;
    char all[8192];
};

static void collect(void *data, int level, const char *line)
{
    struct lines *l = data;
    (void)level;
    size_t used = strlen(l->all);
    snprintf(l->all + used, sizeof l->all - used, "%s\n", line);
    l->n++;
}

static int count_segments(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d != NULL && (de = readdir(d)) != NULL) {
        n += strncmp(de->d_name, "wal-", 4) == 0;
    }
    if (d != NULL) {
        closedir(d);
    }
    return n;
}

static int append_n(struct craft_store *s, craft_index lo, craft_index n, size_t size)
{
    uint8_t *buf = calloc(1, size + 1);
    struct craft_entry *es = calloc(n, sizeof *es);
    for (craft_index k = 0; k < n; k++) {
        es[k].index = lo + k;
        es[k].term = 1;
        es[k].type = CRAFT_ENTRY_COMMAND;
        es[k].data = buf;
        es[k].size = size;
    }
    int rv = s->append(s->impl, es, n);
    free(es);
    free(buf);
    return rv;
}

TEST(segments_roll_at_the_size_and_go_with_compaction)
{
    char *dir = harness_tmpdir();
    struct lines l;
    memset(&l, 0, sizeof l);
    struct craft_disk_store_options o;
    craft_disk_store_options_init(&o);
    CHECK_EQ(o.segment_size, 64u << 20);
    CHECK(o.fsync);
    o.segment_size = 8192;
    o.fsync = false;
    o.log = collect;
    o.log_data = &l;
    struct craft_store *s = NULL;
    CHECK_OK(craft_disk_store_open(dir, &o, NULL, &s, NULL));
    /* 100 appends of one 960-byte entry (1000 bytes with the record header): a segment takes
     * 9 of them (the last crossing 8 KiB), so 12 segments. */
    for (craft_index i = 1; i <= 100; i++) {
        CHECK_OK(append_n(s, i, 1, 960));
    }
    CHECK_EQ(count_segments(dir), 12);
    /* Compaction deletes whole segments only: the one holding 50 stays. */
    CHECK_OK(s->compact(s->impl, 50));
    CHECK_EQ(count_segments(dir), 7);
    CHECK(strstr(l.all, "event=segment_removed file=wal-0000000000000001.seg") != NULL);
    craft_store_close(s);
    CHECK_OK(craft_disk_store_open(dir, &o, NULL, &s, NULL));
    craft_index f, la;
    CHECK_OK(s->bounds(s->impl, &f, &la));
    CHECK_EQ(f, 51);
    CHECK_EQ(la, 100);
    /* One big append goes whole into the last segment, even past the size; the next one
     * starts a new segment. */
    CHECK_OK(append_n(s, 101, 20, 960));
    CHECK_EQ(count_segments(dir), 7);
    CHECK_OK(append_n(s, 121, 1, 960));
    CHECK_EQ(count_segments(dir), 8);
    craft_store_close(s);
}

TEST(torn_tail_log_line_names_file_and_offset)
{
    char *dir = harness_tmpdir();
    struct lines l;
    memset(&l, 0, sizeof l);
    struct craft_disk_store_options o;
    craft_disk_store_options_init(&o);
    o.fsync = false;
    o.log = collect;
    o.log_data = &l;
    struct craft_store *s = NULL;
    CHECK_OK(craft_disk_store_open(dir, &o, NULL, &s, NULL));
    CHECK_OK(append_n(s, 1, 3, 10));
    craft_store_close(s);
    /* Three records of 50 bytes after the 40-byte header: the third torn after 20 bytes, the
     * preallocated zeros after them. cut_bytes counts up to the last non-zero byte: byte 16
     * of the third header, the low byte of its term (1). */
    char path[4200];
    snprintf(path, sizeof path, "%s/wal-0000000000000001.seg", dir);
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0);
    uint8_t zeros[30] = {0};
    CHECK_EQ(pwrite(fd, zeros, sizeof zeros, 40 + 50 + 50 + 20), (ssize_t)sizeof zeros);
    close(fd);
    CHECK_OK(craft_disk_store_open(dir, &o, NULL, &s, NULL));
    CHECK(strstr(l.all, "event=torn_tail file=wal-0000000000000001.seg offset=140 cut_bytes=17 "
                        "last_index=2") != NULL);
    CHECK_STR_EQ(craft_disk_store_errmsg(s), "");
    craft_store_close(s);
}

/* Open reads a segment only up to its last data (the preallocated tail is a hole or unwritten
 * extents) and looks again at the whole file when a record reaches past that: a record whose
 * last blocks are zeros that the file system keeps as a hole (ZFS with compression does) is
 * whole, not torn. */
TEST(a_record_ending_in_a_hole_is_read_whole)
{
    char *dir = harness_tmpdir();
    struct craft_disk_store_options o;
    craft_disk_store_options_init(&o);
    o.segment_size = 1 << 20;
    o.fsync = false;
    struct lines l;
    memset(&l, 0, sizeof l);
    o.log = collect;
    o.log_data = &l;
    struct craft_store *s = NULL;
    CHECK_OK(craft_disk_store_open(dir, &o, NULL, &s, NULL));
    size_t size = 40000;
    uint8_t *buf = calloc(1, size);
    memset(buf, 'x', 1000); /* then 39000 zeros */
    struct craft_entry e = {1, 1, CRAFT_ENTRY_COMMAND, buf, size};
    CHECK_OK(s->append(s->impl, &e, 1));
    craft_store_close(s);
    char path[4200];
    snprintf(path, sizeof path, "%s/wal-0000000000000001.seg", dir);
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 8192, 32768) != 0) {
        close(fd);
        free(buf);
        SKIP("no hole punching here");
    }
    close(fd);
    CHECK_OK(craft_disk_store_open(dir, &o, NULL, &s, NULL));
    craft_index f, la;
    CHECK_OK(s->bounds(s->impl, &f, &la));
    CHECK_EQ(la, 1);
    struct craft_entry *out = NULL;
    size_t n = 0;
    CHECK_OK(s->entries(s->impl, 1, 1, NULL, &out, &n));
    CHECK(n == 1 && out[0].size == size && memcmp(out[0].data, buf, size) == 0);
    free(out);
    CHECK(strstr(l.all, "torn_tail") == NULL);
    craft_store_close(s);
    free(buf);
}

TEST(errmsg_of_other_stores_is_empty)
{
    struct craft_store *s = NULL;
    CHECK_OK(craft_mem_store_new(NULL, &s));
    CHECK_STR_EQ(craft_disk_store_errmsg(s), "");
    CHECK_STR_EQ(craft_disk_store_errmsg(NULL), "");
    craft_store_close(s);
    craft_store_close(NULL);
}

TEST(open_rejects_bad_options)
{
    char *dir = harness_tmpdir();
    struct craft_disk_store_options o;
    craft_disk_store_options_init(&o);
    o.segment_size = 100;
    struct craft_store *s = NULL;
    CHECK_EQ(craft_disk_store_open(dir, &o, NULL, &s, NULL), CRAFT_EINVAL);
    CHECK_EQ(craft_disk_store_open(NULL, NULL, NULL, &s, NULL), CRAFT_EINVAL);
    char *msg = NULL;
    CHECK_EQ(craft_disk_store_open("/proc/no/such/dir", NULL, NULL, &s, &msg), CRAFT_EIO);
    CHECK(msg != NULL && strstr(msg, "/proc/no/such/dir") != NULL);
    free(msg);
}

HARNESS_MAIN()
