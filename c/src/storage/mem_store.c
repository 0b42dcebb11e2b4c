/*
 * The in-memory store: the storage interface of craft.h with nothing on disk. The simulator runs
 * every node on one of these and appends millions of entries, so the log is a growable array
 * with a moving head: compaction advances the head instead of moving the survivors, and the
 * array is slid back only when more than half of it is dead space (amortized O(1) per entry).
 *
 * Snapshots are byte buffers shared by reference count, so that a reader opened on one snapshot
 * keeps reading it even after a newer snapshot was committed (the durable store gets the same
 * behaviour from an open file descriptor on an unlinked file).
 */
#include <stdint.h>
#include <string.h>

#include "craft.h"
#include "storage/log_rules.h"
#include "storage/mem_store.h"

/* One log entry held by the store; the payload is a separate allocation (NULL when empty). */
struct slot {
    craft_term term;
    uint8_t type;
    size_t size;
    void *data;
};

/* A committed snapshot: its metadata and bytes, shared by the store and any open readers. */
struct snap {
    unsigned refs;
    struct craft_snapshot_meta meta; /* meta.conf allocated with the store's allocator */
    uint8_t *bytes;
    size_t size;
};

/* A snapshot being written: the same shape, not yet visible. */
struct writer {
    struct snap *snap;
    size_t cap;
};

struct mem_store {
    struct craft_store iface; /* first: the table handed out is this struct */
    const struct craft_allocator *a;
    struct craft_hard_state hs;
    /* The log holds indexes base+1 .. base+count in slots[head .. head+count). base is the
     * index of the last entry removed by compaction (or covered by the snapshot) and base_term
     * its term, 0 when unknown. */
    craft_index base;
    craft_term base_term;
    struct slot *slots;
    size_t head;
    size_t count;
    size_t cap;
    struct snap *snap; /* the latest committed snapshot, or NULL */
};

static struct slot *slot_at(struct mem_store *s, craft_index i)
{
    return &s->slots[s->head + (size_t)(i - s->base - 1)];
}

static craft_index last_index(const struct mem_store *s)
{
    return s->base + s->count;
}

static void free_slots(struct mem_store *s, size_t from, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        craft_free(s->a, s->slots[from + k].data);
    }
}

/* --- hard state -------------------------------------------------------------------------- */

static int load_hard_state(void *impl, struct craft_hard_state *out)
{
    struct mem_store *s = impl;
    if (out == NULL) {
        return CRAFT_EINVAL;
    }
    *out = s->hs;
    return 0;
}

static int save_hard_state(void *impl, const struct craft_hard_state *hs)
{
    struct mem_store *s = impl;
    if (hs == NULL) {
        return CRAFT_EINVAL;
    }
    s->hs = *hs;
    return 0;
}

/* --- log --------------------------------------------------------------------------------- */

static int bounds(void *impl, craft_index *first, craft_index *last)
{
    struct mem_store *s = impl;
    if (first != NULL) {
        *first = s->base + 1;
    }
    if (last != NULL) {
        *last = last_index(s);
    }
    return 0;
}

/* Makes room for n more slots at the tail, sliding the live slots to the front when the dead
 * head is at least half of the array (so each slot is moved O(1) times on average). */
static int reserve(struct mem_store *s, size_t n)
{
    if (n > SIZE_MAX / 2 - s->count) {
        return CRAFT_ENOMEM;
    }
    if (s->head + s->count + n <= s->cap) {
        return 0;
    }
    if (s->head > 0 && s->head >= s->cap / 2) {
        memmove(s->slots, s->slots + s->head, s->count * sizeof *s->slots);
        s->head = 0;
        if (s->count + n <= s->cap) {
            return 0;
        }
    }
    size_t want = s->head + s->count + n;
    size_t cap = s->cap < 16 ? 16 : s->cap;
    while (cap < want) {
        cap *= 2;
    }
    if (cap > SIZE_MAX / sizeof *s->slots) {
        return CRAFT_ENOMEM;
    }
    struct slot *p = craft_realloc(s->a, s->slots, cap * sizeof *p);
    if (p == NULL) {
        return CRAFT_ENOMEM;
    }
    s->slots = p;
    s->cap = cap;
    return 0;
}

static int append(void *impl, const struct craft_entry *entries, size_t n)
{
    struct mem_store *s = impl;
    int rv = craft__storage_check_append(last_index(s),
                                         s->count > 0 ? slot_at(s, last_index(s))->term
                                                      : s->base_term,
                                         entries, n);
    if (rv != 0 || n == 0) {
        return rv;
    }
    rv = reserve(s, n);
    if (rv != 0) {
        return rv;
    }
    /* Copy every payload before touching the log, so a failure leaves it as it was. */
    struct slot *dst = &s->slots[s->head + s->count];
    for (size_t k = 0; k < n; k++) {
        dst[k].term = entries[k].term;
        dst[k].type = entries[k].type;
        dst[k].size = entries[k].size;
        dst[k].data = NULL;
        if (entries[k].size > 0) {
            dst[k].data = craft_malloc(s->a, entries[k].size);
            if (dst[k].data == NULL) {
                free_slots(s, s->head + s->count, k);
                return CRAFT_ENOMEM;
            }
            memcpy(dst[k].data, entries[k].data, entries[k].size);
        }
    }
    s->count += n;
    return 0;
}

static int truncate_log(void *impl, craft_index from)
{
    struct mem_store *s = impl;
    if (from == 0) {
        return CRAFT_EINVAL;
    }
    if (from <= s->base) {
        return CRAFT_ECOMPACTED;
    }
    if (from > last_index(s)) {
        return 0;
    }
    size_t keep = (size_t)(from - s->base - 1);
    free_slots(s, s->head + keep, s->count - keep);
    s->count = keep;
    return 0;
}

static int compact(void *impl, craft_index upto)
{
    struct mem_store *s = impl;
    if (upto <= s->base) {
        return 0;
    }
    if (upto >= last_index(s)) {
        /* Everything goes; the log now starts after upto (e.g. after installing a snapshot
         * that is ahead of the log). Its term is known only if it was in the log or is the
         * snapshot's. */
        craft_term t = 0;
        if (upto == last_index(s) && s->count > 0) {
            t = slot_at(s, upto)->term;
        } else if (s->snap != NULL && s->snap->meta.index == upto) {
            t = s->snap->meta.term;
        }
        free_slots(s, s->head, s->count);
        s->head = 0;
        s->count = 0;
        s->base = upto;
        s->base_term = t;
        return 0;
    }
    size_t drop = (size_t)(upto - s->base);
    s->base_term = slot_at(s, upto)->term;
    free_slots(s, s->head, drop);
    s->head += drop;
    s->count -= drop;
    s->base = upto;
    if (s->count == 0) {
        s->head = 0;
    }
    return 0;
}

static int entries(void *impl, craft_index lo, craft_index hi, const struct craft_allocator *a,
                   struct craft_entry **out, size_t *n)
{
    struct mem_store *s = impl;
    if (out == NULL || n == NULL) {
        return CRAFT_EINVAL;
    }
    *out = NULL;
    *n = 0;
    int rv = craft__storage_check_range(s->base + 1, last_index(s), lo, hi);
    if (rv != 0 || lo > hi) {
        return rv;
    }
    size_t count = (size_t)(hi - lo + 1);
    size_t total = count * sizeof(struct craft_entry);
    for (craft_index i = lo; i <= hi; i++) {
        size_t sz = slot_at(s, i)->size;
        if (sz > SIZE_MAX - total) {
            return CRAFT_ETOOBIG;
        }
        total += sz;
    }
    struct craft_entry *arr = craft_malloc(a, total);
    if (arr == NULL) {
        return CRAFT_ENOMEM;
    }
    uint8_t *payload = (uint8_t *)(arr + count);
    for (size_t k = 0; k < count; k++) {
        const struct slot *sl = slot_at(s, lo + k);
        arr[k].term = sl->term;
        arr[k].index = lo + k;
        arr[k].type = sl->type;
        arr[k].size = sl->size;
        arr[k].data = payload;
        if (sl->size > 0) {
            memcpy(payload, sl->data, sl->size);
            payload += sl->size;
        }
    }
    *out = arr;
    *n = count;
    return 0;
}

static int term(void *impl, craft_index i, craft_term *out)
{
    struct mem_store *s = impl;
    if (out == NULL) {
        return CRAFT_EINVAL;
    }
    if (i > last_index(s)) {
        return CRAFT_EUNAVAILABLE;
    }
    if (i > s->base) {
        *out = slot_at(s, i)->term;
        return 0;
    }
    if (i == 0) {
        *out = 0;
        return 0;
    }
    if (i == s->base && s->base_term != 0) {
        *out = s->base_term;
        return 0;
    }
    return CRAFT_ECOMPACTED;
}

/* --- snapshots --------------------------------------------------------------------------- */

static void snap_unref(const struct craft_allocator *a, struct snap *sn)
{
    if (sn == NULL || --sn->refs > 0) {
        return;
    }
    craft_configuration_close(&sn->meta.conf, a);
    craft_free(a, sn->bytes);
    craft_free(a, sn);
}

static int snapshot_begin(void *impl, const struct craft_snapshot_meta *meta, void **writer)
{
    struct mem_store *s = impl;
    if (meta == NULL || writer == NULL || meta->index == 0) {
        return CRAFT_EINVAL;
    }
    if (s->snap != NULL && meta->index < s->snap->meta.index) {
        return CRAFT_EINVAL;
    }
    struct writer *w = craft_calloc(s->a, 1, sizeof *w);
    struct snap *sn = craft_calloc(s->a, 1, sizeof *sn);
    if (w == NULL || sn == NULL) {
        craft_free(s->a, w);
        craft_free(s->a, sn);
        return CRAFT_ENOMEM;
    }
    sn->refs = 1;
    sn->meta = *meta;
    craft_configuration_init(&sn->meta.conf);
    int rv = craft_configuration_copy(&sn->meta.conf, &meta->conf, s->a);
    if (rv != 0) {
        craft_free(s->a, w);
        craft_free(s->a, sn);
        return rv;
    }
    w->snap = sn;
    *writer = w;
    return 0;
}

static int snapshot_write(void *impl, void *writer, const void *buf, size_t len)
{
    struct mem_store *s = impl;
    struct writer *w = writer;
    if (w == NULL || (buf == NULL && len > 0)) {
        return CRAFT_EINVAL;
    }
    struct snap *sn = w->snap;
    if (len > SIZE_MAX / 2 - sn->size) {
        return CRAFT_ETOOBIG;
    }
    if (sn->size + len > w->cap) {
        size_t cap = w->cap < 4096 ? 4096 : w->cap;
        while (cap < sn->size + len) {
            cap *= 2;
        }
        uint8_t *p = craft_realloc(s->a, sn->bytes, cap);
        if (p == NULL) {
            return CRAFT_ENOMEM;
        }
        sn->bytes = p;
        w->cap = cap;
    }
    if (len > 0) {
        memcpy(sn->bytes + sn->size, buf, len);
    }
    sn->size += len;
    return 0;
}

static void snapshot_abort(void *impl, void *writer)
{
    struct mem_store *s = impl;
    struct writer *w = writer;
    if (w == NULL) {
        return;
    }
    snap_unref(s->a, w->snap);
    craft_free(s->a, w);
}

static int snapshot_commit(void *impl, void *writer)
{
    struct mem_store *s = impl;
    struct writer *w = writer;
    if (w == NULL) {
        return CRAFT_EINVAL;
    }
    struct snap *sn = w->snap;
    /* The commit consumes the writer whatever happens. */
    if (sn->meta.size != 0 && sn->meta.size != sn->size) {
        snapshot_abort(impl, writer);
        return CRAFT_EINVAL;
    }
    sn->meta.size = sn->size;
    craft_free(s->a, w);
    snap_unref(s->a, s->snap);
    s->snap = sn;

    /* Keep the log consistent with the snapshot (paper Figure 13, steps 6 and 7): if the log
     * does not hold the snapshot's last entry with the same term, discard it entirely. */
    craft_index si = sn->meta.index;
    if (si > s->base) {
        bool matches = si <= last_index(s) && slot_at(s, si)->term == sn->meta.term;
        if (!matches) {
            free_slots(s, s->head, s->count);
            s->head = 0;
            s->count = 0;
            s->base = si;
            s->base_term = sn->meta.term;
        }
    } else if (si == s->base && s->base_term == 0) {
        s->base_term = sn->meta.term;
    }
    return 0;
}

static int snapshot_meta(void *impl, const struct craft_allocator *a,
                         struct craft_snapshot_meta *out)
{
    struct mem_store *s = impl;
    if (out == NULL) {
        return CRAFT_EINVAL;
    }
    if (s->snap == NULL) {
        return CRAFT_ENOTFOUND;
    }
    struct craft_snapshot_meta m = s->snap->meta;
    craft_configuration_init(&m.conf);
    int rv = craft_configuration_copy(&m.conf, &s->snap->meta.conf, a);
    if (rv != 0) {
        return rv;
    }
    *out = m;
    return 0;
}

static int snapshot_open(void *impl, void **reader)
{
    struct mem_store *s = impl;
    if (reader == NULL) {
        return CRAFT_EINVAL;
    }
    if (s->snap == NULL) {
        return CRAFT_ENOTFOUND;
    }
    s->snap->refs++;
    *reader = s->snap;
    return 0;
}

static int snapshot_read(void *impl, void *reader, uint64_t offset, void *buf, size_t len,
                         size_t *n)
{
    (void)impl;
    struct snap *sn = reader;
    if (sn == NULL || n == NULL || (buf == NULL && len > 0) || offset > sn->size) {
        return CRAFT_EINVAL;
    }
    size_t avail = sn->size - (size_t)offset;
    size_t k = len < avail ? len : avail;
    if (k > 0) {
        memcpy(buf, sn->bytes + offset, k);
    }
    *n = k;
    return 0;
}

static void snapshot_close(void *impl, void *reader)
{
    struct mem_store *s = impl;
    snap_unref(s->a, reader);
}

static void close_store(void *impl)
{
    struct mem_store *s = impl;
    free_slots(s, s->head, s->count);
    craft_free(s->a, s->slots);
    snap_unref(s->a, s->snap);
    craft_free(s->a, s);
}

int craft_mem_store_new(const struct craft_allocator *a, struct craft_store **out)
{
    if (out == NULL) {
        return CRAFT_EINVAL;
    }
    struct mem_store *s = craft_calloc(a, 1, sizeof *s);
    if (s == NULL) {
        return CRAFT_ENOMEM;
    }
    s->a = a;
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
    *out = &s->iface;
    return 0;
}

int craft__mem_store_clone(const struct craft_store *src, struct craft_store **out)
{
    const struct mem_store *from = src->impl;
    int rv = craft_mem_store_new(from->a, out);
    if (rv != 0) {
        return rv;
    }
    struct mem_store *s = (*out)->impl;
    s->hs = from->hs;
    s->base = from->base;
    s->base_term = from->base_term;
    rv = reserve(s, from->count);
    for (size_t k = 0; rv == 0 && k < from->count; k++) {
        const struct slot *f = &from->slots[from->head + k];
        struct slot *d = &s->slots[k];
        *d = *f;
        d->data = NULL;
        if (f->size > 0) {
            d->data = craft_malloc(s->a, f->size);
            if (d->data == NULL) {
                rv = CRAFT_ENOMEM;
                break;
            }
            memcpy(d->data, f->data, f->size);
        }
        s->count++;
    }
    if (rv != 0) {
        close_store(s);
        *out = NULL;
        return rv;
    }
    s->snap = from->snap;
    if (s->snap != NULL) {
        s->snap->refs++;
    }
    return 0;
}
