/*
 * The durable store: craft.h's storage interface over a data directory, built from the lock
 * (lock.c), the hard-state file (hard_state.c), the write-ahead log (wal.c) and snapshot files
 * (snapshot_file.c). This file holds the rules that tie them together:
 *
 *  - The compaction point (base) is written to the hard-state file before any segment below
 *    it is deleted, so recovery can always tell stale segments from a gap.
 *  - A committed snapshot that the log does not continue (Raft paper, Figure 13, steps 6-7)
 *    moves base to the snapshot and drops the log; recovery finishes that job if a crash
 *    interrupted it.
 *  - Open checks everything before it changes anything: a corrupt directory is refused as it
 *    was found, for a person (or craft-dump) to look at.
 *  - After a write failed half-way, every call returns CRAFT_EIO: the process must restart and
 *    recover from the disk rather than go on with a log it no longer knows.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "craft/store.h"
#include "storage/hard_state.h"
#include "storage/lock.h"
#include "storage/log_rules.h"
#include "storage/snapshot_file.h"
#include "storage/wal.h"

struct disk_store {
    struct craft_store iface; /* first: the table handed out is this struct */
    const struct craft_allocator *a;
    struct craft_disk_store_options o;
    int dirfd;
    int lockfd;
    struct craft__hs_file hs; /* hs.cur.base, hs.cur.base_term: the compaction point */
    struct craft__wal wal;
    bool have_snap;
    struct craft_snapshot_meta snap; /* conf allocated with a */
    uint64_t snap_counter;           /* makes temporary snapshot names unique */
    bool broken;
    struct craft__storage_err err;
};

struct reader {
    int fd;
    uint64_t data_offset;
    uint64_t size;
};

#define BASE(s) ((s)->hs.cur.base)
#define BASE_TERM(s) ((s)->hs.cur.base_term)

static void set_broken(struct disk_store *s)
{
    if (!s->broken) {
        s->broken = true;
        craft__storage_logf(s->o.log, s->o.log_data, CRAFT_STORE_LOG_ERROR,
                            "storage: event=store_failed error=\"%s\"", s->err.msg);
    }
}

static int check_usable(struct disk_store *s)
{
    return s->broken ? CRAFT_EIO : 0;
}

/* Ends a call that wrote: a failure that left the disk in an unknown state breaks the store. */
static int after_write(struct disk_store *s, int rv)
{
    if (s->wal.broken && !s->broken) {
        set_broken(s);
    }
    return rv;
}

static craft_index last_index(const struct disk_store *s)
{
    return craft__storage_wal_last(&s->wal);
}

/* The term of the last entry (or of base when the log is empty), 0 if unknown. */
static craft_term last_term(const struct disk_store *s)
{
    craft_term t = 0;
    craft_index last = last_index(s);
    if (last > BASE(s) && craft__storage_wal_term(&s->wal, last, &t)) {
        return t;
    }
    return BASE_TERM(s);
}

/* --- hard state -------------------------------------------------------------------------- */

static int load_hard_state(void *impl, struct craft_hard_state *out)
{
    struct disk_store *s = impl;
    if (out == NULL) {
        return CRAFT_EINVAL;
    }
    *out = s->hs.cur.hs;
    return check_usable(s);
}

static int save_hard_state(void *impl, const struct craft_hard_state *hs)
{
    struct disk_store *s = impl;
    int rv = check_usable(s);
    if (rv != 0 || hs == NULL) {
        return rv != 0 ? rv : CRAFT_EINVAL;
    }
    rv = craft__storage_hs_write(&s->hs, hs, BASE(s), BASE_TERM(s), &s->err);
    if (rv != 0) {
        set_broken(s);
    }
    return rv;
}

/* --- log --------------------------------------------------------------------------------- */

static int bounds(void *impl, craft_index *first, craft_index *last)
{
    struct disk_store *s = impl;
    if (first != NULL) {
        *first = BASE(s) + 1;
    }
    if (last != NULL) {
        *last = last_index(s);
    }
    return check_usable(s);
}

static int append(void *impl, const struct craft_entry *entries, size_t n)
{
    struct disk_store *s = impl;
    int rv = check_usable(s);
    if (rv == 0) {
        rv = craft__storage_check_append(last_index(s), last_term(s), entries, n);
    }
    if (rv != 0 || n == 0) {
        return rv;
    }
    return after_write(s, craft__storage_wal_append(&s->wal, entries, n, &s->err));
}

static int truncate_log(void *impl, craft_index from)
{
    struct disk_store *s = impl;
    int rv = check_usable(s);
    if (rv != 0) {
        return rv;
    }
    if (from == 0) {
        return CRAFT_EINVAL;
    }
    if (from <= BASE(s)) {
        return CRAFT_ECOMPACTED;
    }
    if (from > last_index(s)) {
        return 0;
    }
    return after_write(s, craft__storage_wal_truncate(&s->wal, from, &s->err));
}

/* Moves the compaction point to upto (durably first, then the segments go). */
static int move_base(struct disk_store *s, craft_index upto, craft_term upto_term)
{
    int rv = craft__storage_hs_write(&s->hs, &s->hs.cur.hs, upto, upto_term, &s->err);
    if (rv != 0) {
        set_broken(s);
        return rv;
    }
    rv = craft__storage_wal_compact(&s->wal, upto, &s->err);
    if (rv != 0) {
        /* The compaction point is durable; a segment left behind is removed on the next open. */
        craft__storage_logf(s->o.log, s->o.log_data, CRAFT_STORE_LOG_WARN,
                            "storage: event=segment_remove_failed error=\"%s\"", s->err.msg);
    }
    return 0;
}

static int compact(void *impl, craft_index upto)
{
    struct disk_store *s = impl;
    int rv = check_usable(s);
    if (rv != 0 || upto <= BASE(s)) {
        return rv;
    }
    craft_term t = 0;
    if (!craft__storage_wal_term(&s->wal, upto, &t) && s->have_snap &&
        s->snap.index == upto) {
        t = s->snap.term;
    }
    return move_base(s, upto, t);
}

static int entries(void *impl, craft_index lo, craft_index hi, const struct craft_allocator *a,
                   struct craft_entry **out, size_t *n)
{
    struct disk_store *s = impl;
    if (out == NULL || n == NULL) {
        return CRAFT_EINVAL;
    }
    *out = NULL;
    *n = 0;
    int rv = check_usable(s);
    if (rv == 0) {
        rv = craft__storage_check_range(BASE(s) + 1, last_index(s), lo, hi);
    }
    if (rv != 0 || lo > hi) {
        return rv;
    }
    rv = craft__storage_wal_read(&s->wal, lo, hi, a, out, &s->err);
    if (rv == 0) {
        *n = (size_t)(hi - lo + 1);
    }
    return rv;
}

static int term(void *impl, craft_index i, craft_term *out)
{
    struct disk_store *s = impl;
    int rv = check_usable(s);
    if (rv != 0 || out == NULL) {
        return rv != 0 ? rv : CRAFT_EINVAL;
    }
    if (i > last_index(s)) {
        return CRAFT_EUNAVAILABLE;
    }
    if (i == 0) {
        *out = 0;
        return 0;
    }
    if (i > BASE(s)) {
        return craft__storage_wal_term(&s->wal, i, out) ? 0 : CRAFT_EIO;
    }
    if (i == BASE(s) && BASE_TERM(s) != 0) {
        *out = BASE_TERM(s);
        return 0;
    }
    return CRAFT_ECOMPACTED;
}

/* --- snapshots --------------------------------------------------------------------------- */

static int snapshot_begin(void *impl, const struct craft_snapshot_meta *meta, void **writer)
{
    struct disk_store *s = impl;
    int rv = check_usable(s);
    if (rv != 0) {
        return rv;
    }
    if (meta == NULL || writer == NULL || meta->index == 0 ||
        (s->have_snap && meta->index < s->snap.index)) {
        return CRAFT_EINVAL;
    }
    struct craft__snap_writer *w = NULL;
    rv = craft__storage_snap_begin(s->dirfd, s->a, s->snap_counter++, meta, &w, &s->err);
    if (rv == 0) {
        *writer = w;
    }
    return rv;
}

static int snapshot_write(void *impl, void *writer, const void *buf, size_t len)
{
    struct disk_store *s = impl;
    int rv = check_usable(s);
    if (rv != 0) {
        return rv;
    }
    if (writer == NULL || (buf == NULL && len > 0)) {
        return CRAFT_EINVAL;
    }
    return craft__storage_snap_write(writer, buf, len, &s->err);
}

static void snapshot_abort(void *impl, void *writer)
{
    struct disk_store *s = impl;
    if (writer != NULL) {
        craft__storage_snap_abort(s->dirfd, s->a, writer);
    }
}

/* Removes snapshot files older than the latest, and leftover temporary files. Best effort: an
 * old file that stays is ignored and removed on the next open. */
static void remove_old_files(struct disk_store *s)
{
    int fd = dup(s->dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0) {
            close(fd);
        }
        return;
    }
    rewinddir(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        craft_index idx;
        size_t len = strlen(de->d_name);
        bool old_snap = craft__storage_snap_parse_name(de->d_name, &idx) &&
                        (!s->have_snap || idx < s->snap.index);
        bool tmp = len > 4 && strcmp(de->d_name + len - 4, ".tmp") == 0;
        if (old_snap || tmp) {
            if (unlinkat(s->dirfd, de->d_name, 0) == 0) {
                craft__storage_logf(s->o.log, s->o.log_data, CRAFT_STORE_LOG_INFO,
                                    "storage: event=file_removed file=%s", de->d_name);
            }
        }
    }
    closedir(d);
}

/* Raft paper, Figure 13, steps 6 and 7: if the log holds the snapshot's last entry with the
 * same term, it continues from the snapshot and stays; otherwise it is dropped whole and
 * continues at the snapshot's index + 1. */
static int follow_snapshot(struct disk_store *s)
{
    craft_index si = s->snap.index;
    if (si < BASE(s)) {
        return 0;
    }
    if (si == BASE(s)) {
        if (BASE_TERM(s) == 0) {
            s->hs.cur.base_term = s->snap.term; /* derivable from the snapshot on open */
        }
        return 0;
    }
    craft_term t = 0;
    if (si <= last_index(s) && craft__storage_wal_term(&s->wal, si, &t) && t == s->snap.term) {
        return 0;
    }
    /* The new compaction point is made durable first: if the process stops before the
     * segments are gone, open sees entries that do not match it and finishes the job. */
    craft_index old_base = BASE(s);
    int rv = craft__storage_hs_write(&s->hs, &s->hs.cur.hs, si, s->snap.term, &s->err);
    if (rv == 0 && last_index(s) > old_base) {
        rv = craft__storage_wal_truncate(&s->wal, old_base + 1, &s->err);
    }
    if (rv != 0) {
        set_broken(s);
        return rv;
    }
    craft__storage_logf(s->o.log, s->o.log_data, CRAFT_STORE_LOG_INFO,
                        "storage: event=log_discarded snapshot_index=%" PRIu64
                        " snapshot_term=%" PRIu64,
                        si, s->snap.term);
    if (craft__storage_wal_compact(&s->wal, si, &s->err) != 0) {
        craft__storage_logf(s->o.log, s->o.log_data, CRAFT_STORE_LOG_WARN,
                            "storage: event=segment_remove_failed error=\"%s\"", s->err.msg);
    }
    return 0;
}

static int snapshot_commit(void *impl, void *writer)
{
    struct disk_store *s = impl;
    if (writer == NULL) {
        return CRAFT_EINVAL;
    }
    int rv = check_usable(s);
    if (rv != 0) {
        craft__storage_snap_abort(s->dirfd, s->a, writer);
        return rv;
    }
    struct craft_snapshot_meta meta;
    rv = craft__storage_snap_commit(s->dirfd, s->o.fsync, s->a, writer, &meta, &s->err);
    if (rv != 0) {
        return rv;
    }
    if (s->have_snap) {
        craft_configuration_close(&s->snap.conf, s->a);
    }
    s->snap = meta;
    s->have_snap = true;
    rv = follow_snapshot(s);
    if (rv == 0) {
        remove_old_files(s);
    }
    return rv;
}

static int snapshot_meta(void *impl, const struct craft_allocator *a,
                         struct craft_snapshot_meta *out)
{
    struct disk_store *s = impl;
    int rv = check_usable(s);
    if (rv != 0 || out == NULL) {
        return rv != 0 ? rv : CRAFT_EINVAL;
    }
    if (!s->have_snap) {
        return CRAFT_ENOTFOUND;
    }
    struct craft_snapshot_meta m = s->snap;
    craft_configuration_init(&m.conf);
    rv = craft_configuration_copy(&m.conf, &s->snap.conf, a);
    if (rv != 0) {
        return rv;
    }
    *out = m;
    return 0;
}

static int snapshot_open(void *impl, void **reader)
{
    struct disk_store *s = impl;
    int rv = check_usable(s);
    if (rv != 0 || reader == NULL) {
        return rv != 0 ? rv : CRAFT_EINVAL;
    }
    if (!s->have_snap) {
        return CRAFT_ENOTFOUND;
    }
    char name[32];
    craft__storage_snap_name(s->snap.index, name);
    struct reader *r = craft_malloc(s->a, sizeof *r);
    if (r == NULL) {
        return CRAFT_ENOMEM;
    }
    /* An open descriptor keeps reading this snapshot even after a newer one replaces it. */
    r->fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        rv = craft__storage_errf(&s->err, CRAFT_EIO, "open %s: %s", name, strerror(errno));
        craft_free(s->a, r);
        return rv;
    }
    r->size = s->snap.size;
    uint64_t file_size = 0;
    rv = craft__storage_file_size(r->fd, &file_size);
    if (rv != 0 || file_size < r->size) {
        close(r->fd);
        craft_free(s->a, r);
        return craft__storage_errf(&s->err, CRAFT_EIO, "stat %s: %s", name,
                                   rv != 0 ? strerror(-rv) : "shorter than its header says");
    }
    r->data_offset = file_size - r->size;
    *reader = r;
    return 0;
}

static int snapshot_read(void *impl, void *reader, uint64_t offset, void *buf, size_t len,
                         size_t *n)
{
    struct disk_store *s = impl;
    struct reader *r = reader;
    if (r == NULL || n == NULL || (buf == NULL && len > 0) || offset > r->size) {
        return CRAFT_EINVAL;
    }
    uint64_t avail = r->size - offset;
    size_t want = avail < len ? (size_t)avail : len;
    size_t got = 0;
    int rv = craft__storage_pread_all(r->fd, buf, want, r->data_offset + offset, &got);
    if (rv != 0 || got != want) {
        return craft__storage_errf(&s->err, CRAFT_EIO, "read snapshot: %s",
                                   rv != 0 ? strerror(-rv) : "short read");
    }
    *n = got;
    return 0;
}

static void snapshot_close(void *impl, void *reader)
{
    struct disk_store *s = impl;
    struct reader *r = reader;
    if (r != NULL) {
        close(r->fd);
        craft_free(s->a, r);
    }
}

/* --- open and close ---------------------------------------------------------------------- */

static void close_store(void *impl)
{
    struct disk_store *s = impl;
    craft__storage_wal_close(&s->wal);
    craft__storage_hs_close(&s->hs);
    if (s->have_snap) {
        craft_configuration_close(&s->snap.conf, s->a);
    }
    if (s->dirfd >= 0) {
        close(s->dirfd);
    }
    craft__storage_unlock(s->lockfd);
    craft_free(s->a, s);
}

void craft_disk_store_options_init(struct craft_disk_store_options *o)
{
    memset(o, 0, sizeof *o);
    o->segment_size = (uint64_t)64 << 20;
    o->fsync = true;
}

const char *craft_disk_store_errmsg(const struct craft_store *s)
{
    if (s == NULL || s->close != close_store) {
        return "";
    }
    return ((const struct disk_store *)s->impl)->err.msg;
}

/* What the directory holds besides segments: whether any data files exist, and the newest
 * snapshot's index. */
static int survey(struct disk_store *s, bool *any_data, craft_index *newest_snap)
{
    int fd = dup(s->dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
        }
        return craft__storage_errf(&s->err, CRAFT_EIO, "list directory: %s", strerror(e));
    }
    rewinddir(d);
    *any_data = false;
    *newest_snap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        craft_index idx;
        uint64_t seq;
        if (craft__storage_snap_parse_name(de->d_name, &idx)) {
            *any_data = true;
            if (idx > *newest_snap) {
                *newest_snap = idx;
            }
        } else if (craft__storage_seg_parse_name(de->d_name, &seq)) {
            *any_data = true;
        }
    }
    closedir(d);
    return 0;
}

/* Checks the directory and loads it; changes nothing on disk. *discard is set when the log
 * must be dropped to follow the snapshot (an interrupted snapshot commit). */
static int load(struct disk_store *s, bool *discard)
{
    bool any_data = false;
    craft_index newest = 0;
    int rv = survey(s, &any_data, &newest);
    if (rv != 0) {
        return rv;
    }
    rv = craft__storage_hs_open(s->dirfd, s->o.fsync, &s->hs, &s->err);
    if (rv == CRAFT_ENOTFOUND) {
        if (any_data) {
            return craft__storage_errf(&s->err, CRAFT_ECORRUPT,
                                       "state: missing, but the directory holds log segments "
                                       "or snapshots");
        }
        rv = craft__storage_hs_create(s->dirfd, s->o.fsync, &s->err);
        if (rv == 0) {
            rv = craft__storage_hs_open(s->dirfd, s->o.fsync, &s->hs, &s->err);
        }
    }
    if (rv != 0) {
        return rv;
    }
    if (s->hs.bad_slot >= 0) {
        craft__storage_logf(s->o.log, s->o.log_data, CRAFT_STORE_LOG_WARN,
                            "storage: event=hard_state_slot_invalid file=state offset=%u "
                            "(an interrupted write; the other slot is used)",
                            (unsigned)s->hs.bad_slot * CRAFT__HS_SLOT_STRIDE);
    }
    if (newest > 0) {
        char name[32];
        uint64_t off;
        craft__storage_snap_name(newest, name);
        rv = craft__storage_snap_load(s->dirfd, name, s->a, true, &s->snap, &off, &s->err);
        if (rv != 0) {
            return rv;
        }
        s->have_snap = true;
    }
    rv = craft__storage_wal_load(&s->wal, BASE(s), &s->err);
    if (rv != 0) {
        return rv;
    }
    const struct craft__wal *w = &s->wal;
    if (w->n_segs > 0 && w->segs[0].first > BASE(s) + 1) {
        char name[32];
        craft__storage_seg_name(w->segs[0].seq, name);
        return craft__storage_errf(&s->err, CRAFT_ECORRUPT,
                                   "%s: the log starts at index %" PRIu64
                                   " but the compaction point in state is %" PRIu64 " (a gap)",
                                   name, w->segs[0].first, BASE(s));
    }
    /* The commit hint in state names entries that were synced before it was written (the
     * driver contract caps it below what its job changes), so a log that ends before it, and
     * no snapshot that covers it, lost synced entries: a segment file removed or cut short
     * (a removed middle segment is the gap above). */
    craft_index end = craft__storage_wal_last(w);
    if (s->have_snap && s->snap.index > end) {
        end = s->snap.index;
    }
    craft_index hint = s->hs.cur.hs.commit;
    if (hint > end) {
        if (s->o.fsync) {
            return craft__storage_errf(&s->err, CRAFT_ECORRUPT,
                                       "the log ends at index %" PRIu64
                                       " but state records index %" PRIu64
                                       " as committed and synced: entries %" PRIu64
                                       "..%" PRIu64 " are missing (a log segment removed or "
                                       "cut short)",
                                       end, hint, end + 1, hint);
        }
        /* Without fsync a machine crash may lose what was written: nothing was promised. */
        craft__storage_logf(s->o.log, s->o.log_data, CRAFT_STORE_LOG_WARN,
                            "storage: event=log_behind_commit last=%" PRIu64 " commit=%" PRIu64
                            " (fsync is off: entries written before a machine crash are lost)",
                            end, hint);
    }
    /* The entry at base, if still on disk, must have the term recorded with base; if not, the
     * log beyond it was being dropped for a snapshot when the process stopped. */
    craft_term t;
    *discard = false;
    if (BASE(s) > 0 && BASE_TERM(s) != 0 && craft__storage_wal_term(w, BASE(s), &t) &&
        t != BASE_TERM(s)) {
        if (!s->have_snap || s->snap.index != BASE(s) || s->snap.term != BASE_TERM(s)) {
            return craft__storage_errf(&s->err, CRAFT_ECORRUPT,
                                       "state: the compaction point %" PRIu64 " has term %" PRIu64
                                       " but the log holds term %" PRIu64 " there",
                                       BASE(s), BASE_TERM(s), t);
        }
        *discard = true;
    }
    return 0;
}

static int open_store(struct disk_store *s, const char *dir)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        return craft__storage_errf(&s->err, CRAFT_EIO, "create directory: %s", strerror(errno));
    }
    /* The directory's own name must be durable before anything in it is: what the store syncs
     * inside would otherwise vanish with it at a power cut, term, vote and log, and the node
     * come back empty. Found by the power-loss tests (tests/powerloss). Every open syncs the
     * parent: the directory may have been created by someone else (mkdir -p in the runtime)
     * and a sync of a directory that changed nothing costs little. */
    int prv = craft__storage_sync_parent(dir, s->o.fsync);
    if (prv != 0) {
        return craft__storage_errf(&s->err, CRAFT_EIO, "sync the directory holding %s: %s", dir,
                                   strerror(-prv));
    }
    s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        return craft__storage_errf(&s->err, CRAFT_EIO, "open directory: %s", strerror(errno));
    }
    int rv = craft__storage_lock(s->dirfd, dir, &s->lockfd, &s->err);
    if (rv != 0) {
        return rv;
    }
    craft__storage_wal_init(&s->wal, s->a, s->dirfd, &s->o);
    bool discard = false;
    rv = load(s, &discard);
    if (rv != 0) {
        craft__storage_logf(s->o.log, s->o.log_data, CRAFT_STORE_LOG_ERROR,
                            "storage: event=open_failed dir=%s error=\"%s\"", dir, s->err.msg);
        return rv;
    }
    /* Everything checked: now repair what a crash left behind. */
    rv = craft__storage_wal_repair(&s->wal, &s->err);
    if (rv == 0 && discard) {
        craft__storage_logf(s->o.log, s->o.log_data, CRAFT_STORE_LOG_WARN,
                            "storage: event=log_discard_resumed base=%" PRIu64, BASE(s));
        rv = craft__storage_wal_truncate(&s->wal, s->wal.segs[0].first, &s->err);
    }
    if (rv == 0 && s->have_snap) {
        rv = follow_snapshot(s);
    }
    if (rv == 0 && s->broken) {
        rv = CRAFT_EIO;
    }
    if (rv == 0) {
        remove_old_files(s);
    }
    return rv;
}

int craft_disk_store_open(const char *dir, const struct craft_disk_store_options *o,
                          const struct craft_allocator *a, struct craft_store **out,
                          char **errmsg)
{
    if (errmsg != NULL) {
        *errmsg = NULL;
    }
    if (dir == NULL || out == NULL || (o != NULL && o->segment_size < 4096)) {
        return CRAFT_EINVAL;
    }
    struct disk_store *s = craft_calloc(a, 1, sizeof *s);
    if (s == NULL) {
        return CRAFT_ENOMEM;
    }
    s->a = a;
    s->dirfd = -1;
    s->lockfd = -1;
    s->hs.fd = -1;
    if (o != NULL) {
        s->o = *o;
    } else {
        craft_disk_store_options_init(&s->o);
    }
    int rv = open_store(s, dir);
    if (rv != 0) {
        if (errmsg != NULL) {
            size_t need = strlen(dir) + strlen(s->err.msg) + 3;
            *errmsg = craft_malloc(a, need);
            if (*errmsg != NULL) {
                snprintf(*errmsg, need, "%s: %s", dir,
                         s->err.msg[0] != '\0' ? s->err.msg : craft_strerror(rv));
            }
        }
        close_store(s);
        return rv;
    }
    s->iface.version = CRAFT_STORE_VERSION;
    s->iface.impl = s;
    s->iface.load_hard_state = load_hard_state;
    s->iface.save_hard_state = save_hard_state;
    s->iface.bounds = bounds;
    s->iface.append = append;
    s->iface.truncate = truncate_log;
    s->iface.compact = compact;
    s->iface.entries = entries;
    s->iface.term = term;
    s->iface.snapshot_begin = snapshot_begin;
    s->iface.snapshot_write = snapshot_write;
    s->iface.snapshot_commit = snapshot_commit;
    s->iface.snapshot_abort = snapshot_abort;
    s->iface.snapshot_meta = snapshot_meta;
    s->iface.snapshot_open = snapshot_open;
    s->iface.snapshot_read = snapshot_read;
    s->iface.snapshot_close = snapshot_close;
    s->iface.close = close_store;
    s->err.msg[0] = '\0';
    *out = &s->iface;
    return 0;
}
