/*
 * One segment file of the write-ahead log: creating it, and scanning it on open. The scan is
 * where torn writes are told apart from corruption (see seg_scan below); everything else about
 * segments is bookkeeping of the offsets and term runs kept in memory.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* SEEK_DATA, SEEK_HOLE */
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "storage/crc32c.h"
#include "storage/format.h"
#include "storage/wal.h"

void craft__storage_seg_name(uint64_t seq, char *name)
{
    snprintf(name, 32, "wal-%016" PRIx64 ".seg", seq);
}

bool craft__storage_seg_parse_name(const char *name, uint64_t *seq)
{
    if (strlen(name) != 24 || strncmp(name, "wal-", 4) != 0 || strcmp(name + 20, ".seg") != 0) {
        return false;
    }
    uint64_t v = 0;
    for (int k = 4; k < 20; k++) {
        char c = name[k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) {
            return false;
        }
        v = v << 4 | (uint64_t)d;
    }
    *seq = v;
    return true;
}

static void seg_init(struct craft__wal_seg *seg, uint64_t seq, int fd, craft_index first)
{
    memset(seg, 0, sizeof *seg);
    seg->seq = seq;
    seg->fd = fd;
    seg->first = first;
}

int craft__storage_seg_reserve(struct craft__wal *w, struct craft__wal_seg *seg, size_t n)
{
    if (seg->n + 1 + n > seg->offs_cap) {
        size_t cap = seg->offs_cap < 64 ? 64 : seg->offs_cap;
        while (cap < seg->n + 1 + n) {
            cap *= 2;
        }
        uint32_t *p = craft_realloc(w->a, seg->offs, cap * sizeof *p);
        if (p == NULL) {
            return CRAFT_ENOMEM;
        }
        seg->offs = p;
        seg->offs_cap = cap;
    }
    /* A batch can start at most n new runs. */
    if (seg->n_runs + n > seg->runs_cap) {
        size_t cap = seg->runs_cap < 4 ? 4 : seg->runs_cap;
        while (cap < seg->n_runs + n) {
            cap *= 2;
        }
        struct craft__wal_run *p = craft_realloc(w->a, seg->runs, cap * sizeof *p);
        if (p == NULL) {
            return CRAFT_ENOMEM;
        }
        seg->runs = p;
        seg->runs_cap = cap;
    }
    return 0;
}

void craft__storage_seg_push(struct craft__wal_seg *seg, uint32_t end, craft_term t)
{
    if (seg->n_runs == 0 || seg->runs[seg->n_runs - 1].term != t) {
        seg->runs[seg->n_runs].index = seg->first + seg->n;
        seg->runs[seg->n_runs].term = t;
        seg->n_runs++;
    }
    seg->n++;
    seg->offs[seg->n] = end;
}

void craft__storage_seg_cut(struct craft__wal_seg *seg, size_t k)
{
    seg->n = k;
    while (seg->n_runs > 0 && seg->runs[seg->n_runs - 1].index >= seg->first + k) {
        seg->n_runs--;
    }
}

craft_term craft__storage_seg_term(const struct craft__wal_seg *seg, craft_index i)
{
    /* The last run starting at or before i. */
    size_t lo = 0, hi = seg->n_runs;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (seg->runs[mid].index <= i) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return seg->runs[lo].term;
}

void craft__storage_seg_free(struct craft__wal *w, struct craft__wal_seg *seg)
{
    if (seg->fd >= 0) {
        close(seg->fd);
        seg->fd = -1;
    }
    craft_free(w->a, seg->offs);
    craft_free(w->a, seg->runs);
    seg->offs = NULL;
    seg->runs = NULL;
}

uint64_t craft__storage_seg_prealloc_size(const struct craft__wal *w)
{
    uint64_t size = (w->segment_size + 4095) & ~(uint64_t)4095;
    return size < ((uint64_t)1 << 30) ? size : (uint64_t)1 << 30;
}

int craft__storage_seg_zero_from(struct craft__wal *w, int fd, uint64_t off)
{
    int rv = ftruncate(fd, (off_t)off) != 0 ? -errno : 0;
    if (rv == 0) {
        rv = craft__storage_datasync(fd, w->sync);
    }
    if (rv == 0) {
        rv = craft__storage_preallocate(fd, craft__storage_seg_prealloc_size(w), w->sync);
        if (rv == -ENOSPC || rv == -EDQUOT) {
            rv = 0; /* a segment shorter than its preallocated size is still valid */
        }
        if (rv == 0) {
            rv = craft__storage_datasync(fd, w->sync);
        }
    }
    return rv;
}

int craft__storage_seg_create(struct craft__wal *w, uint64_t seq, craft_index first,
                              struct craft__wal_seg *seg, struct craft__storage_err *err)
{
    char name[32], tmp[40];
    craft__storage_seg_name(seq, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", name);
    uint8_t hdr[CRAFT__SEG_HEADER_SIZE];
    struct craft__seg_header h = {seq, first};
    craft__seg_header_encode(&h, hdr);

    seg_init(seg, seq, -1, first);
    int rv = craft__storage_seg_reserve(w, seg, 0);
    if (rv != 0) {
        return rv;
    }
    seg->offs[0] = CRAFT__SEG_HEADER_SIZE;
    int fd = openat(w->dirfd, tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rv = -errno;
    } else {
        rv = craft__storage_pwrite_all(fd, hdr, sizeof hdr, 0);
        /* The whole size now, as allocated zeros: appends then overwrite blocks of a file
         * whose size does not change, and their fdatasync has no inode to write. Without
         * fsync there is no sync to spare, and allocating up front would only cost (on tmpfs,
         * 64 MiB of memory zeroed at once): the size is given sparsely. */
        if (rv == 0) {
            rv = craft__storage_preallocate(fd, craft__storage_seg_prealloc_size(w), w->sync);
        }
        if (rv == 0) {
            rv = craft__storage_datasync(fd, w->sync);
        }
        if (rv == 0 && renameat(w->dirfd, tmp, w->dirfd, name) != 0) {
            rv = -errno;
        }
        if (rv == 0) {
            rv = craft__storage_syncdir(w->dirfd, w->sync);
        }
    }
    if (rv != 0) {
        if (fd >= 0) {
            close(fd);
            unlinkat(w->dirfd, tmp, 0);
        }
        craft__storage_seg_free(w, seg);
        return craft__storage_errf(err, CRAFT_EIO, "create %s: %s", name, strerror(-rv));
    }
    seg->fd = fd;
    return 0;
}

/* Whether a record header that checks sits at pos, written by an append other than batch (or
 * batch2: the damaged record may also have begun a new append, if a truncation cut the one
 * before it short). Used
 * after damage in the last segment: finding one means the damage is not confined to the last
 * append. Fields are tested before the CRC because almost every position fails them. */
static bool later_batch_at(const uint8_t *buf, size_t len, size_t pos, craft_index after,
                           craft_index batch, craft_index batch2, size_t *next)
{
    if (len - pos < CRAFT__REC_HEADER_SIZE) {
        return false;
    }
    craft_index index = craft__get64(buf + pos + 8);
    craft_index b = craft__get64(buf + pos + 24);
    if (index <= after || b > index || b == 0) {
        return false;
    }
    struct craft__rec_header h;
    if (!craft__rec_header_decode(buf + pos, &h)) {
        return false;
    }
    if (h.batch != batch && h.batch != batch2) {
        return true;
    }
    *next = pos + CRAFT__REC_HEADER_SIZE + h.size; /* same append: step over it */
    return false;
}

/* The first non-zero byte of buf[from, len), or len. */
static size_t next_nonzero(const uint8_t *buf, size_t from, size_t len)
{
    size_t k = from;
    while (k < len && (k & 7) != 0) {
        if (buf[k] != 0) {
            return k;
        }
        k++;
    }
    while (len - k >= 8) {
        uint64_t v;
        memcpy(&v, buf + k, 8);
        if (v != 0) {
            break;
        }
        k += 8;
    }
    while (k < len && buf[k] == 0) {
        k++;
    }
    return k;
}

/* Just after the last non-zero byte of buf[from, len), or from. */
static size_t end_nonzero(const uint8_t *buf, size_t from, size_t len)
{
    size_t k = len;
    while (k > from && (k & 7) != 0) {
        if (buf[k - 1] != 0) {
            return k;
        }
        k--;
    }
    while (k - from >= 8) {
        uint64_t v;
        memcpy(&v, buf + k - 8, 8);
        if (v != 0) {
            break;
        }
        k -= 8;
    }
    while (k > from && buf[k - 1] == 0) {
        k--;
    }
    return k;
}

/* Where the file's last region of data ends (holes read as zeros, and a preallocated tail
 * that was never written is one: fallocate's unwritten extents or a sparse extension), plus
 * a margin of zeros; the file size if the file system cannot tell. */
static uint64_t data_limit(int fd, uint64_t size)
{
#ifdef SEEK_HOLE
    uint64_t off = 0, end = 0;
    for (;;) {
        off_t d = lseek(fd, (off_t)off, SEEK_DATA);
        if (d < 0) {
            if (errno != ENXIO) {
                return size; /* cannot tell: read everything */
            }
            break; /* no data after off */
        }
        off_t h = lseek(fd, d, SEEK_HOLE);
        if (h < 0) {
            return size;
        }
        end = (uint64_t)h;
        if (end >= size) {
            return size;
        }
        off = end;
    }
    end += 4096; /* margin: a record header torn at the edge still reads as zeros after it */
    return end < size ? end : size;
#else
    (void)fd;
    return size;
#endif
}

/* Reads the file into w->buf: up to its size if whole, else up to the end of its last data
 * region plus a margin when only holes (zeros) follow; *file_size is the file's size. */
static int read_file(struct craft__wal *w, int fd, const char *name, bool whole, size_t *len,
                     uint64_t *file_size, struct craft__storage_err *err)
{
    uint64_t size;
    int rv = craft__storage_file_size(fd, &size);
    if (rv != 0) {
        return craft__storage_errf(err, CRAFT_EIO, "stat %s: %s", name, strerror(-rv));
    }
    if (size > UINT32_MAX) {
        return craft__storage_errf(err, CRAFT_ECORRUPT, "%s: %" PRIu64 " bytes, above 4 GiB",
                                   name, size);
    }
    *file_size = size;
    if (!whole) {
        size = data_limit(fd, size);
    }
    if (size > w->buf_cap) {
        uint8_t *p = craft_realloc(w->a, w->buf, (size_t)size);
        if (p == NULL) {
            return CRAFT_ENOMEM;
        }
        w->buf = p;
        w->buf_cap = (size_t)size;
    }
    size_t got = 0;
    rv = craft__storage_pread_all(fd, w->buf, (size_t)size, 0, &got);
    if (rv != 0 || got != size) {
        return craft__storage_errf(err, CRAFT_EIO, "read %s: %s", name,
                                   rv != 0 ? strerror(-rv) : "short read");
    }
    *len = (size_t)size;
    return 0;
}

int craft__storage_seg_scan(struct craft__wal *w, uint64_t seq, bool last, craft_term prev_term,
                            struct craft__wal_seg *seg, struct craft__seg_scan *res,
                            struct craft__storage_err *err)
{
    char name[32];
    craft__storage_seg_name(seq, name);
    seg_init(seg, seq, -1, 0);
    memset(res, 0, sizeof *res);
    int fd = openat(w->dirfd, name, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        return craft__storage_errf(err, CRAFT_EIO, "open %s: %s", name, strerror(errno));
    }
    seg->fd = fd;
    bool whole = false; /* read up to the file's size, not only to its last data */
reread:;
    size_t len = 0;
    uint64_t file_size = 0;
    int rv = read_file(w, fd, name, whole, &len, &file_size, err);
    if (rv != 0) {
        goto fail;
    }
    const uint8_t *buf = w->buf;
    res->file_size = file_size;

    struct craft__seg_header sh;
    rv = craft__seg_header_decode(buf, len, &sh);
    if (rv != 0 && !whole && len < file_size) {
        whole = true;
        goto reread;
    }
    if (rv == CRAFT_EVERSION) {
        craft__storage_errf(err, rv, "%s: unsupported format version %" PRIu32, name,
                            craft__get32(buf + 8));
        goto fail;
    }
    if (rv != 0 || sh.seq != seq) {
        rv = craft__storage_errf(err, CRAFT_ECORRUPT, "%s: bad segment header at offset 0",
                                 name);
        goto fail;
    }
    seg->first = sh.first;
    rv = craft__storage_seg_reserve(w, seg, 0);
    if (rv != 0) {
        goto fail;
    }
    seg->offs[0] = CRAFT__SEG_HEADER_SIZE;

    size_t pos = CRAFT__SEG_HEADER_SIZE;
    craft_term term = prev_term;
    craft_index batch = 0;
    bool batch_ended = true; /* an append never spans two segments */
    const char *why = NULL;
    size_t skip_to = 0; /* after damage: where the next record would start, if known */
    while (pos < len) {
        craft_index want = seg->first + seg->n;
        struct craft__rec_header h;
        size_t avail = len - pos < CRAFT__REC_HEADER_SIZE ? len - pos : CRAFT__REC_HEADER_SIZE;
        if (next_nonzero(buf, pos, pos + avail) == pos + avail) {
            /* Zeros at a record boundary (a record header is never all zeros: its index is
             * not 0): the end of the written log if only zeros follow, the preallocated tail;
             * damage if anything else does. */
            if (next_nonzero(buf, pos + avail, len) == len) {
                break;
            }
            why = "zeroed record header before more data";
            break;
        }
        if (avail < CRAFT__REC_HEADER_SIZE) {
            why = "record header cut short";
            break;
        }
        if (!craft__rec_header_decode(buf + pos, &h)) {
            why = "bad record header checksum";
            break;
        }
        if (len - pos - CRAFT__REC_HEADER_SIZE < h.size) {
            why = "record payload cut short";
            break;
        }
        if (craft__storage_crc32c(0, buf + pos + CRAFT__REC_HEADER_SIZE, h.size) !=
            h.payload_crc) {
            why = "bad record payload checksum";
            skip_to = pos + CRAFT__REC_HEADER_SIZE + h.size;
            break;
        }
        /* A record that checks but does not follow is never a torn write: the bytes are what
         * some write put there. */
        /* A record continues the append before it or starts a new one; after a truncation
         * the last record kept need not end its append. */
        if (h.index != want || h.term < term ||
            (h.batch != want && (batch_ended || h.batch != batch))) {
            rv = craft__storage_errf(
                err, CRAFT_ECORRUPT,
                "%s: record at offset %zu has index %" PRIu64 " term %" PRIu64 " batch %" PRIu64
                ", expected index %" PRIu64 " (term >= %" PRIu64 ")",
                name, pos, h.index, h.term, h.batch, want, term);
            goto fail;
        }
        size_t end = pos + CRAFT__REC_HEADER_SIZE + h.size;
        rv = craft__storage_seg_reserve(w, seg, 1);
        if (rv != 0) {
            goto fail;
        }
        craft__storage_seg_push(seg, (uint32_t)end, h.term);
        term = h.term;
        batch = h.batch;
        batch_ended = (h.flags & CRAFT__REC_FLAG_END) != 0;
        pos = end;
    }
    /* Something reaches past what was read, into the holes: read everything and look again
     * (holes read as zeros, so this only matters to records whose last blocks are holes). */
    if (why != NULL && !whole && len < file_size &&
        (strcmp(why, "record header cut short") == 0 ||
         strcmp(why, "record payload cut short") == 0)) {
        whole = true;
        seg->n = 0;
        seg->n_runs = 0;
        goto reread;
    }
    res->cut = pos;
    res->end = pos;
    if (why == NULL) {
        return 0;
    }
    /* Past the last non-zero byte there is nothing but the preallocated tail. */
    size_t data_end = end_nonzero(buf, pos, len);
    res->end = data_end;
    craft_index next = seg->first + seg->n;
    if (!last) {
        /* Segments before the last were complete before the next one was begun. */
        rv = craft__storage_errf(err, CRAFT_ECORRUPT,
                                 "%s: %s at offset %zu (index %" PRIu64 "), not in the last segment",
                                 name, why, pos, next);
        goto fail;
    }
    /* In the last segment: the damage is a torn write only if nothing written by a later
     * append follows it. An append is acknowledged only after its fdatasync, and the next
     * append starts after that, so bytes of a later append after the damage prove that the
     * damaged append had been acknowledged: that is corruption, not a crash. */
    craft_index damaged_batch = batch_ended ? next : batch;
    size_t q = skip_to > pos ? skip_to : pos + 1;
    while (q < data_end) {
        /* A record header holds a non-zero byte within its 40 bytes: skip runs of zeros. */
        size_t z = next_nonzero(buf, q, data_end);
        if (z >= q + CRAFT__REC_HEADER_SIZE) {
            q = z - (CRAFT__REC_HEADER_SIZE - 1);
        }
        size_t step = q + 1;
        if (later_batch_at(buf, len, q, next - 1, damaged_batch, next, &step)) {
            rv = craft__storage_errf(err, CRAFT_ECORRUPT,
                                     "%s: %s at offset %zu (index %" PRIu64
                                     "), followed by a later write at offset %zu",
                                     name, why, pos, next, q);
            goto fail;
        }
        q = step > q ? step : q + 1;
    }
    res->torn = true;
    snprintf(res->why, sizeof res->why, "%s", why);
    return 0;

fail:
    craft__storage_seg_free(w, seg);
    return rv;
}
