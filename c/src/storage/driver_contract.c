/* The driver contract's store operations, in their order (see driver_contract.h for why each
 * crash point between them is safe). */
#include "storage/driver_contract.h"

/* One more store operation may complete; false once the simulated crash happens. */
static bool op(struct craft__crash_point *c)
{
    if (c == NULL || !c->armed) {
        return true;
    }
    if (c->ops_left == 0) {
        return false;
    }
    c->ops_left--;
    return true;
}

craft_index craft__persist_commit_hint(const struct craft__persist_job *j, craft_index commit)
{
    craft_index floor = commit;
    if (j->n_entries > 0 && j->entries[0].index - 1 < floor) {
        floor = j->entries[0].index - 1;
    }
    if (j->chunk != NULL && j->chunk->done) {
        /* Kept entries match up to the snapshot's index; a discarded log matched nowhere. */
        craft_index keep = j->discard_log ? 0 : j->chunk->meta.index;
        if (keep < floor) {
            floor = keep;
        }
    }
    return floor;
}

void craft__snap_rx_abort(struct craft_store *s, struct craft__snap_rx *rx)
{
    if (rx->writer != NULL) {
        s->snapshot_abort(s->impl, rx->writer);
        rx->writer = NULL;
    }
    rx->index = 0;
    rx->skip = false;
}

/* A chunk of a snapshot from the leader (paper section 7). Offset 0 starts a transfer. The
 * node may have taken a newer snapshot of its own since the core handed the chunk out
 * (snapshots it takes are stored at once, chunks in disk order): a store never goes back to an
 * older snapshot, and the core will not install this one, so its chunks are skipped. */
static int store_chunk(struct craft_store *s, struct craft__snap_rx *rx,
                       const struct craft_install_snapshot *c, bool discard_log,
                       struct craft__crash_point *crash, const char **what)
{
    int rc = 0;
    if (c->offset == 0) {
        craft__snap_rx_abort(s, rx);
        rx->index = c->meta.index;
        struct craft_snapshot_meta cur;
        *what = "reading the latest snapshot's metadata";
        rc = s->snapshot_meta(s->impl, rx->alloc, &cur);
        if (rc == 0) {
            craft_configuration_close(&cur.conf, rx->alloc);
            rx->skip = cur.index >= c->meta.index;
        } else if (rc != CRAFT_ENOTFOUND) {
            return rc;
        }
        if (rx->skip) {
            return 0;
        }
        *what = "starting to store a received snapshot";
        rc = s->snapshot_begin(s->impl, &c->meta, &rx->writer);
        if (rc != 0) {
            return rc;
        }
    } else if (rx->index == c->meta.index && rx->skip) {
        return 0;
    } else if (rx->writer == NULL || rx->index != c->meta.index) {
        *what = "storing a received snapshot (a chunk without its start)";
        return CRAFT_ESTATE;
    }
    if (!op(crash)) {
        return CRAFT__PERSIST_CRASHED; /* nothing of an uncommitted snapshot is durable */
    }
    if (c->size > 0) {
        *what = "writing a received snapshot";
        rc = s->snapshot_write(s->impl, rx->writer, c->data, c->size);
        if (rc != 0) {
            return rc;
        }
    }
    if (!c->done) {
        return 0;
    }
    if (!op(crash)) {
        return CRAFT__PERSIST_CRASHED;
    }
    *what = "committing a received snapshot";
    rc = s->snapshot_commit(s->impl, rx->writer);
    rx->writer = NULL;
    if (rc != 0) {
        return rc;
    }
    if (!op(crash)) {
        return CRAFT__PERSIST_CRASHED;
    }
    craft_index first, last;
    *what = "reading the log's bounds";
    rc = s->bounds(s->impl, &first, &last);
    if (rc != 0) {
        return rc;
    }
    if (discard_log && last >= first) {
        /* The log did not match the snapshot's last entry: none of it can be trusted. */
        *what = "discarding the log replaced by a received snapshot";
        return s->truncate(s->impl, first);
    }
    if (!discard_log && first <= c->meta.index) {
        *what = "compacting the log under a received snapshot";
        return s->compact(s->impl, c->meta.index < last ? c->meta.index : last);
    }
    return 0;
}

int craft__persist(struct craft_store *s, struct craft__snap_rx *rx,
                   const struct craft__persist_job *j, struct craft__crash_point *crash,
                   const char **what)
{
    static const char *unused;
    int rc;
    if (what == NULL) {
        what = &unused;
    }
    if (j->has_hard_state) {
        if (!op(crash)) {
            return CRAFT__PERSIST_CRASHED;
        }
        struct craft_hard_state hs = j->hard_state;
        hs.commit = craft__persist_commit_hint(j, hs.commit);
        *what = "saving the hard state";
        rc = s->save_hard_state(s->impl, &hs);
        if (rc != 0) {
            return rc;
        }
    }
    if (j->chunk != NULL) {
        rc = store_chunk(s, rx, j->chunk, j->discard_log, crash, what);
        if (rc != 0) {
            return rc;
        }
    }
    if (j->n_entries == 0) {
        return 0;
    }
    craft_index first, last;
    *what = "reading the log's bounds";
    rc = s->bounds(s->impl, &first, &last);
    if (rc != 0) {
        return rc;
    }
    if (j->entries[0].index <= last) {
        /* A follower's conflicting suffix (paper section 5.3): the update replaces it. */
        if (!op(crash)) {
            return CRAFT__PERSIST_CRASHED;
        }
        *what = "removing a conflicting suffix of the log";
        rc = s->truncate(s->impl, j->entries[0].index);
        if (rc != 0) {
            return rc;
        }
    }
    size_t n = j->n_entries;
    if (crash != NULL && crash->armed && crash->ops_left < n) {
        n = crash->ops_left; /* a torn tail: a prefix of the append survives */
        crash->ops_left = 0;
    } else if (crash != NULL && crash->armed) {
        crash->ops_left -= (unsigned)n;
    }
    if (n > 0) {
        *what = "appending to the log";
        rc = s->append(s->impl, j->entries, n);
        if (rc != 0) {
            return rc;
        }
    }
    return n < j->n_entries ? CRAFT__PERSIST_CRASHED : 0;
}
