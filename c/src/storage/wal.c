/*
 * The write-ahead log over its segments (see wal.h): load and repair on open, group-commit
 * append, crash-safe truncation and compaction, and reads.
 *
 * A failure in the middle of a write leaves the files in a state this process no longer knows
 * (after a failed fdatasync, Linux may even have dropped the dirty pages), so such failures
 * return CRAFT_EIO and the store above stops accepting calls: the node must restart and
 * recover from what is on disk. That is the "a store that lost a write cannot be trusted"
 * rule of DESIGN.md.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "storage/crc32c.h"
#include "storage/format.h"
#include "storage/wal.h"

void craft__storage_wal_init(struct craft__wal *w, const struct craft_allocator *a, int dirfd,
                             const struct craft_disk_store_options *o)
{
    memset(w, 0, sizeof *w);
    w->a = a;
    w->dirfd = dirfd;
    w->sync = o->fsync;
    w->segment_size = o->segment_size;
    w->log = o->log;
    w->log_data = o->log_data;
    w->next_seq = 1;
}

static craft_index seg_last(const struct craft__wal_seg *s)
{
    return s->first + s->n - 1; /* first - 1 when empty */
}

craft_index craft__storage_wal_last(const struct craft__wal *w)
{
    if (w->n_segs == 0) {
        return w->base;
    }
    craft_index l = seg_last(&w->segs[w->n_segs - 1]);
    return l > w->base ? l : w->base;
}

/* The segment holding index i (which must be physically present). */
static struct craft__wal_seg *find_seg(const struct craft__wal *w, craft_index i)
{
    size_t lo = 0, hi = w->n_segs;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (w->segs[mid].first <= i) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return &w->segs[lo];
}

bool craft__storage_wal_term(const struct craft__wal *w, craft_index i, craft_term *t)
{
    if (w->n_segs == 0 || i == 0 || i < w->segs[0].first ||
        i > seg_last(&w->segs[w->n_segs - 1])) {
        return false;
    }
    const struct craft__wal_seg *s = find_seg(w, i);
    if (i > seg_last(s)) {
        return false;
    }
    *t = craft__storage_seg_term(s, i);
    return true;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The sequence numbers of the directory's segment files, sorted. */
static int list_segments(struct craft__wal *w, uint64_t **seqs, size_t *n,
                         struct craft__storage_err *err)
{
    int fd = dup(w->dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
        }
        return craft__storage_errf(err, CRAFT_EIO, "list directory: %s", strerror(e));
    }
    rewinddir(d);
    uint64_t *v = NULL;
    size_t len = 0, cap = 0;
    int rv = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t seq;
        if (!craft__storage_seg_parse_name(de->d_name, &seq)) {
            continue;
        }
        if (len == cap) {
            cap = cap == 0 ? 16 : cap * 2;
            uint64_t *p = craft_realloc(w->a, v, cap * sizeof *p);
            if (p == NULL) {
                rv = CRAFT_ENOMEM;
                break;
            }
            v = p;
        }
        v[len++] = seq;
    }
    closedir(d);
    if (rv != 0) {
        craft_free(w->a, v);
        return rv;
    }
    if (len > 0) {
        qsort(v, len, sizeof *v, cmp_u64);
    }
    *seqs = v;
    *n = len;
    return 0;
}

static int push_seg(struct craft__wal *w, const struct craft__wal_seg *seg)
{
    if (w->n_segs == w->segs_cap) {
        size_t cap = w->segs_cap == 0 ? 8 : w->segs_cap * 2;
        struct craft__wal_seg *p = craft_realloc(w->a, w->segs, cap * sizeof *p);
        if (p == NULL) {
            return CRAFT_ENOMEM;
        }
        w->segs = p;
        w->segs_cap = cap;
    }
    w->segs[w->n_segs++] = *seg;
    return 0;
}

int craft__storage_wal_load(struct craft__wal *w, craft_index base,
                            struct craft__storage_err *err)
{
    uint64_t *seqs = NULL;
    size_t n = 0;
    int rv = list_segments(w, &seqs, &n, err);
    if (rv != 0) {
        return rv;
    }
    w->base = base;
    craft_term term = 0;
    for (size_t k = 0; k < n; k++) {
        struct craft__wal_seg seg;
        struct craft__seg_scan res;
        rv = craft__storage_seg_scan(w, seqs[k], k + 1 == n, term, &seg, &res, err);
        if (rv != 0) {
            break;
        }
        if (w->n_segs > 0) {
            const struct craft__wal_seg *prev = &w->segs[w->n_segs - 1];
            if (seg.first != seg_last(prev) + 1) {
                char a[32], b[32];
                craft__storage_seg_name(prev->seq, a);
                craft__storage_seg_name(seg.seq, b);
                rv = craft__storage_errf(err, CRAFT_ECORRUPT,
                                         "%s: starts at index %" PRIu64 " but %s ends at %" PRIu64
                                         " (a gap or an overlap in the log)",
                                         b, seg.first, a, seg_last(prev));
                craft__storage_seg_free(w, &seg);
                break;
            }
        }
        if (seg.n > 0) {
            term = seg.runs[seg.n_runs - 1].term;
        }
        rv = push_seg(w, &seg);
        if (rv != 0) {
            craft__storage_seg_free(w, &seg);
            break;
        }
        if (res.torn) {
            w->torn = true;
            w->tail = res;
        }
        if (k + 1 == n) {
            w->tail_size = res.file_size;
        }
    }
    if (n > 0) {
        w->next_seq = seqs[n - 1] + 1;
    }
    craft_free(w->a, seqs);
    /* The scan read whole (preallocated) segments into the scratch buffer: appends need far
     * less, so let it grow again from nothing. */
    if (w->buf_cap > ((size_t)1 << 20)) {
        craft_free(w->a, w->buf);
        w->buf = NULL;
        w->buf_cap = 0;
    }
    return rv;
}

/* Removes the file of segment k and forgets it (k is the first or the last). */
static int drop_seg(struct craft__wal *w, size_t k, bool sync_dir, struct craft__storage_err *err)
{
    char name[32];
    craft__storage_seg_name(w->segs[k].seq, name);
    craft__storage_seg_free(w, &w->segs[k]);
    memmove(&w->segs[k], &w->segs[k + 1], (w->n_segs - k - 1) * sizeof *w->segs);
    w->n_segs--;
    if (unlinkat(w->dirfd, name, 0) != 0 && errno != ENOENT) {
        return craft__storage_errf(err, CRAFT_EIO, "remove %s: %s", name, strerror(errno));
    }
    int rv = sync_dir ? craft__storage_syncdir(w->dirfd, w->sync) : 0;
    if (rv != 0) {
        return craft__storage_errf(err, CRAFT_EIO, "sync directory: %s", strerror(-rv));
    }
    return 0;
}

/* Deletes the leading segments that hold nothing above base. Their removal need not be durable
 * before anything else: base is already durable, and a segment that comes back after a power
 * loss is below base and removed again on the next open. */
static int drop_compacted(struct craft__wal *w, struct craft__storage_err *err)
{
    while (w->n_segs > 0 && seg_last(&w->segs[0]) <= w->base &&
           (w->n_segs > 1 || w->segs[0].n > 0 || w->segs[0].first <= w->base)) {
        char name[32];
        craft__storage_seg_name(w->segs[0].seq, name);
        craft_index last = seg_last(&w->segs[0]);
        int rv = drop_seg(w, 0, false, err);
        if (rv != 0) {
            return rv;
        }
        craft__storage_logf(w->log, w->log_data, CRAFT_STORE_LOG_INFO,
                            "storage: event=segment_removed file=%s last_index=%" PRIu64
                            " base=%" PRIu64,
                            name, last, w->base);
    }
    return 0;
}

int craft__storage_wal_repair(struct craft__wal *w, struct craft__storage_err *err)
{
    if (w->torn) {
        struct craft__wal_seg *s = &w->segs[w->n_segs - 1];
        char name[32];
        craft__storage_seg_name(s->seq, name);
        /* Zeros from the cut on, durably: the torn bytes must not be read again. */
        int rv = craft__storage_seg_zero_from(w, s->fd, w->tail.cut);
        if (rv != 0) {
            return craft__storage_errf(err, CRAFT_EIO, "cut torn tail of %s: %s", name,
                                       strerror(-rv));
        }
        craft__storage_logf(w->log, w->log_data, CRAFT_STORE_LOG_WARN,
              "storage: event=torn_tail file=%s offset=%" PRIu64 " cut_bytes=%" PRIu64
              " last_index=%" PRIu64 " reason=\"%s\"",
              name, w->tail.cut, w->tail.end - w->tail.cut, seg_last(s), w->tail.why);
        w->torn = false;
    } else if (w->n_segs > 0 && w->tail_size < craft__storage_seg_prealloc_size(w)) {
        /* A last segment shorter than its preallocated size (written past by a big append,
         * or cut by a crash between a truncation's two steps): give it its size back, so that
         * appends overwrite. Only zeros are added; a failure changes nothing. */
        struct craft__wal_seg *s = &w->segs[w->n_segs - 1];
        if (s->offs[s->n] < w->segment_size &&
            craft__storage_preallocate(s->fd, craft__storage_seg_prealloc_size(w), w->sync) == 0) {
            (void)craft__storage_datasync(s->fd, w->sync);
        }
    }
    return drop_compacted(w, err);
}

/* Makes sure w->buf holds at least size bytes. */
static int grow_buf(struct craft__wal *w, size_t size)
{
    if (size <= w->buf_cap) {
        return 0;
    }
    size_t cap = w->buf_cap < 4096 ? 4096 : w->buf_cap;
    while (cap < size) {
        cap *= 2;
    }
    uint8_t *p = craft_realloc(w->a, w->buf, cap);
    if (p == NULL) {
        return CRAFT_ENOMEM;
    }
    w->buf = p;
    w->buf_cap = cap;
    return 0;
}

int craft__storage_wal_append(struct craft__wal *w, const struct craft_entry *entries, size_t n,
                              struct craft__storage_err *err)
{
    size_t total = 0;
    for (size_t k = 0; k < n; k++) {
        if (entries[k].size > CRAFT__REC_MAX_PAYLOAD) {
            return craft__storage_errf(err, CRAFT_ETOOBIG, "entry %" PRIu64 " is %zu bytes",
                                       entries[k].index, entries[k].size);
        }
        total += CRAFT__REC_HEADER_SIZE + entries[k].size;
        if (total > UINT32_MAX / 2) {
            return craft__storage_errf(err, CRAFT_ETOOBIG, "append of more than 2 GiB");
        }
    }
    /* One append goes to one segment: start a new one when the last is full (or there is
     * none, or the batch would push its offsets past 32 bits). */
    struct craft__wal_seg *s = w->n_segs > 0 ? &w->segs[w->n_segs - 1] : NULL;
    if (s == NULL || s->offs[s->n] >= w->segment_size ||
        (uint64_t)s->offs[s->n] + total > UINT32_MAX) {
        struct craft__wal_seg fresh;
        int rv = craft__storage_seg_create(w, w->next_seq, entries[0].index, &fresh, err);
        if (rv != 0) {
            return rv;
        }
        rv = push_seg(w, &fresh);
        if (rv != 0) {
            char name[32];
            craft__storage_seg_name(fresh.seq, name);
            craft__storage_seg_free(w, &fresh);
            unlinkat(w->dirfd, name, 0);
            return rv;
        }
        w->next_seq++;
        s = &w->segs[w->n_segs - 1];
    }
    /* Everything that can fail for lack of memory happens before the write, so a write that
     * succeeded is always recorded. */
    int rv = craft__storage_seg_reserve(w, s, n);
    if (rv == 0) {
        rv = grow_buf(w, total);
    }
    if (rv != 0) {
        return rv;
    }
    uint8_t *p = w->buf;
    for (size_t k = 0; k < n; k++) {
        const struct craft_entry *e = &entries[k];
        struct craft__rec_header h;
        h.size = (uint32_t)e->size;
        h.index = e->index;
        h.term = e->term;
        h.batch = entries[0].index;
        h.type = e->type;
        h.flags = k + 1 == n ? CRAFT__REC_FLAG_END : 0;
        h.payload_crc = craft__storage_crc32c(0, e->data, e->size);
        craft__rec_header_encode(&h, p);
        if (e->size > 0) {
            memcpy(p + CRAFT__REC_HEADER_SIZE, e->data, e->size);
        }
        p += CRAFT__REC_HEADER_SIZE + e->size;
    }
    uint32_t start = s->offs[s->n];
    char name[32];
    craft__storage_seg_name(s->seq, name);
    rv = craft__storage_pwrite_all(s->fd, w->buf, total, start);
    if (rv != 0) {
        /* Put the file back as it was (zeros from start), so that a transient error (ENOSPC)
         * leaves a usable log. If even that fails, the caller gives up on the store. The
         * zeros need not be extended again: a segment shorter than its preallocation is
         * valid. */
        if (ftruncate(s->fd, start) != 0) {
            w->broken = true;
        } else {
            (void)craft__storage_preallocate(s->fd, craft__storage_seg_prealloc_size(w),
                                             w->sync);
        }
        return craft__storage_errf(err, CRAFT_EIO, "write %s at offset %" PRIu32 ": %s", name,
                                   start, strerror(-rv));
    }
    rv = craft__storage_datasync(s->fd, w->sync);
    if (rv != 0) {
        w->broken = true; /* after a failed fdatasync the file's contents are unknown */
        return craft__storage_errf(err, CRAFT_EIO, "fdatasync %s: %s", name, strerror(-rv));
    }
    uint32_t end = start;
    for (size_t k = 0; k < n; k++) {
        end += (uint32_t)(CRAFT__REC_HEADER_SIZE + entries[k].size);
        craft__storage_seg_push(s, end, entries[k].term);
    }
    return 0;
}

int craft__storage_wal_truncate(struct craft__wal *w, craft_index from,
                                struct craft__storage_err *err)
{
    /* Whole segments from the end first, each removal made durable before the next, so that a
     * crash leaves the log a prefix of what it was: never a hole in the middle. */
    while (w->n_segs > 0 && w->segs[w->n_segs - 1].first >= from) {
        int rv = drop_seg(w, w->n_segs - 1, true, err);
        if (rv != 0) {
            w->broken = true;
            return rv;
        }
    }
    if (w->n_segs == 0) {
        return 0;
    }
    struct craft__wal_seg *s = &w->segs[w->n_segs - 1];
    if (from > seg_last(s)) {
        return 0;
    }
    size_t k = (size_t)(from - s->first);
    char name[32];
    craft__storage_seg_name(s->seq, name);
    /* The records from offs[k] on become zeros, durably (cut, synced, then the preallocated
     * zeros extended again, synced): a crash leaves the old records or zeros, never stale
     * records after zeros. */
    int rv = craft__storage_seg_zero_from(w, s->fd, s->offs[k]);
    if (rv != 0) {
        w->broken = true;
        return craft__storage_errf(err, CRAFT_EIO, "truncate %s at offset %" PRIu32 ": %s",
                                   name, s->offs[k], strerror(-rv));
    }
    craft__storage_seg_cut(s, k);
    return 0;
}

int craft__storage_wal_compact(struct craft__wal *w, craft_index upto,
                               struct craft__storage_err *err)
{
    if (upto > w->base) {
        w->base = upto;
    }
    /* When everything is gone, the next append starts a fresh segment at base + 1; the last
     * segment, even if empty, would start at the wrong index. */
    if (craft__storage_wal_last(w) == w->base) {
        while (w->n_segs > 0) {
            int rv = drop_seg(w, 0, false, err);
            if (rv != 0) {
                return rv;
            }
        }
        return 0;
    }
    return drop_compacted(w, err);
}

int craft__storage_wal_read(struct craft__wal *w, craft_index lo, craft_index hi,
                            const struct craft_allocator *a, struct craft_entry **out,
                            struct craft__storage_err *err)
{
    size_t count = (size_t)(hi - lo + 1);
    size_t total = count * sizeof(struct craft_entry);
    for (craft_index i = lo; i <= hi;) {
        const struct craft__wal_seg *s = find_seg(w, i);
        craft_index upto = seg_last(s) < hi ? seg_last(s) : hi;
        size_t k0 = (size_t)(i - s->first), k1 = (size_t)(upto - s->first);
        size_t bytes = (size_t)(s->offs[k1 + 1] - s->offs[k0]) -
                       (k1 - k0 + 1) * CRAFT__REC_HEADER_SIZE;
        if (bytes > SIZE_MAX - total) {
            return CRAFT_ETOOBIG;
        }
        total += bytes;
        i = upto + 1;
    }
    struct craft_entry *arr = craft_malloc(a, total);
    if (arr == NULL) {
        return CRAFT_ENOMEM;
    }
    uint8_t *payload = (uint8_t *)(arr + count);
    size_t out_k = 0;
    /* Read whole records in chunks of up to 1 MiB (more when one record is bigger). */
    const size_t chunk = (size_t)1 << 20;
    for (craft_index i = lo; i <= hi;) {
        const struct craft__wal_seg *s = find_seg(w, i);
        craft_index upto = seg_last(s) < hi ? seg_last(s) : hi;
        size_t k0 = (size_t)(i - s->first), k1 = k0;
        while (k1 < (size_t)(upto - s->first) && s->offs[k1 + 2] - s->offs[k0] <= chunk) {
            k1++;
        }
        size_t len = s->offs[k1 + 1] - s->offs[k0];
        char name[32];
        craft__storage_seg_name(s->seq, name);
        int rv = grow_buf(w, len);
        size_t got = 0;
        if (rv == 0) {
            rv = craft__storage_pread_all(s->fd, w->buf, len, s->offs[k0], &got);
            if (rv != 0 || got != len) {
                craft__storage_errf(err, CRAFT_EIO, "read %s at offset %" PRIu32 ": %s", name,
                                    s->offs[k0], rv != 0 ? strerror(-rv) : "short read");
                rv = CRAFT_EIO;
            }
        }
        for (size_t k = k0; rv == 0 && k <= k1; k++) {
            const uint8_t *rec = w->buf + (s->offs[k] - s->offs[k0]);
            size_t size = s->offs[k + 1] - s->offs[k] - CRAFT__REC_HEADER_SIZE;
            struct craft__rec_header h;
            if (!craft__rec_header_decode(rec, &h) || h.index != s->first + k ||
                h.size != size ||
                craft__storage_crc32c(0, rec + CRAFT__REC_HEADER_SIZE, size) != h.payload_crc) {
                rv = craft__storage_errf(err, CRAFT_ECORRUPT,
                                         "%s: bad record at offset %" PRIu32 " (index %" PRIu64
                                         ") on read",
                                         name, s->offs[k], s->first + k);
                break;
            }
            struct craft_entry *e = &arr[out_k++];
            e->index = h.index;
            e->term = h.term;
            e->type = h.type;
            e->size = size;
            e->data = payload;
            if (size > 0) {
                memcpy(payload, rec + CRAFT__REC_HEADER_SIZE, size);
                payload += size;
            }
        }
        if (rv != 0) {
            craft_free(a, arr);
            return rv;
        }
        i = s->first + k1 + 1;
    }
    *out = arr;
    return 0;
}

void craft__storage_wal_close(struct craft__wal *w)
{
    for (size_t k = 0; k < w->n_segs; k++) {
        craft__storage_seg_free(w, &w->segs[k]);
    }
    craft_free(w->a, w->segs);
    craft_free(w->a, w->buf);
    w->segs = NULL;
    w->n_segs = 0;
    w->buf = NULL;
}
