/*
 * Snapshots in the simulator (paper section 7): taking one when a core asks, installing the
 * chunks a leader sends, and restoring a state machine from the store at a restart.
 *
 * The simulator's own state machine is the sequence of applied entries, summarised by the hash
 * chain of the checker. A snapshot's data is a header the checker can verify -- a magic
 * number, the index, and the chain up to that index -- then filler derived from the chain (so
 * that a snapshot spans several chunks even in small tests), then the user's state machine's
 * bytes (the snapshot callback), if any. On every restore the header must match the cluster's
 * committed record: a snapshot that does not hold exactly the committed prefix breaks state
 * machine safety just as a wrong applied entry would.
 */
#include <inttypes.h>
#include <string.h>

#include "sim_internal.h"

#define MAGIC 0x6372616674534e50ULL /* "craftSNP" */
#define HEADER 24
#define FILLER 200

static void put64(unsigned char *p, uint64_t v)
{
    for (int k = 0; k < 8; k++) {
        p[k] = (unsigned char)(v >> (8 * k));
    }
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int k = 0; k < 8; k++) {
        v |= (uint64_t)p[k] << (8 * k);
    }
    return v;
}

static void filler(unsigned char *p, uint64_t chain)
{
    uint64_t st = chain;
    for (size_t k = 0; k < FILLER; k += 8) {
        put64(p + k, craft__sim_splitmix(&st));
    }
}

/* Checks a snapshot's data against the committed record and restores the state machine. */
static int restore(struct craft_sim *s, unsigned i, craft_index index, const unsigned char *data,
                   size_t size)
{
    struct craft__sim_node *sn = &s->nodes[i];
    if (size < HEADER + FILLER || get64(data) != MAGIC || get64(data + 8) != index) {
        return craft__sim_fail(s, CRAFT_SIM_EVIOLATION,
                               "snapshot safety: n%u restored a snapshot at %" PRIu64
                               " whose data is not one the simulator took (%zu bytes)",
                               i + 1, index, size);
    }
    uint64_t chain = get64(data + 16), want;
    unsigned char expect[FILLER];
    filler(expect, chain);
    if (memcmp(expect, data + HEADER, FILLER) != 0) {
        return craft__sim_fail(s, CRAFT_SIM_EVIOLATION,
                               "snapshot safety: n%u restored a snapshot at %" PRIu64
                               " whose bytes were corrupted",
                               i + 1, index);
    }
    if (craft__sim_committed_chain(s, index, &want) && want != chain) {
        return craft__sim_fail(s, CRAFT_SIM_EVIOLATION,
                               "state machine safety: n%u restored a snapshot at %" PRIu64
                               " that does not hold the committed entries up to it",
                               i + 1, index);
    }
    /* Before the callback, so that it sees the snapshot's index (craft_sim_status). */
    sn->applied_base = index;
    sn->n_applied = 0;
    if (s->o.restore != NULL) {
        int rc = s->o.restore(s->o.ud, sn->id, data + HEADER + FILLER,
                              size - HEADER - FILLER);
        if (rc != 0) {
            return craft__sim_fail(s, rc, "n%u: the restore callback failed: %s", i + 1,
                                   craft_err_name(rc));
        }
    }
    return 0;
}

int craft__sim_snap_take(struct craft_sim *s, unsigned i, const struct craft_snapshot_meta *m)
{
    struct craft__sim_node *sn = &s->nodes[i];
    struct craft_store *st = sn->store;
    craft_index index = m->index;
    craft_index applied = sn->applied_base + sn->n_applied;
    uint64_t chain;
    if (index != applied || !craft__sim_shadow_chain(s, i, index, &chain)) {
        return craft__sim_fail(s, CRAFT_ESTATE,
                               "n%u asked for a snapshot at %" PRIu64
                               " but its state machine is at %" PRIu64,
                               i + 1, index, applied);
    }
    const void *user = NULL;
    size_t user_size = 0;
    if (s->o.snapshot != NULL) {
        int rc = s->o.snapshot(s->o.ud, sn->id, &user, &user_size);
        if (rc != 0) {
            return craft__sim_fail(s, rc, "n%u: the snapshot callback failed: %s", i + 1,
                                   craft_err_name(rc));
        }
    }
    unsigned char head[HEADER + FILLER];
    put64(head, MAGIC);
    put64(head + 8, index);
    put64(head + 16, chain);
    filler(head + HEADER, chain);

    /* The metadata is the core's, borrowed until the next call into it: copy it first. */
    struct craft_snapshot_meta meta = *m;
    craft_configuration_init(&meta.conf);
    int rc = craft_configuration_copy(&meta.conf, &m->conf, s->alloc);
    if (rc != 0) {
        return craft__sim_fail(s, rc, "n%u: copying snapshot metadata: %s", i + 1,
                               craft_err_name(rc));
    }
    meta.size = sizeof(head) + user_size;
    void *w = NULL;
    rc = st->snapshot_begin(st->impl, &meta, &w);
    if (rc == 0) {
        rc = st->snapshot_write(st->impl, w, head, sizeof(head));
        if (rc == 0 && user_size > 0) {
            rc = st->snapshot_write(st->impl, w, user, user_size);
        }
        if (rc == 0) {
            rc = st->snapshot_commit(st->impl, w);
        } else {
            st->snapshot_abort(st->impl, w);
        }
    }
    craft_configuration_close(&meta.conf, s->alloc);
    if (rc != 0) {
        return craft__sim_fail(s, rc, "n%u: storing a snapshot at %" PRIu64 ": %s", i + 1,
                               index, craft_err_name(rc));
    }
    craft_index upto = 0;
    rc = craft__sim_core_snapshot_taken(s, i, index, sizeof(head) + user_size, &upto);
    if (rc != 0) {
        return craft__sim_fail(s, rc, "n%u: craft_snapshot_taken(%" PRIu64 ") returned %s",
                               i + 1, index, craft_err_name(rc));
    }
    if (upto > 0) {
        rc = st->compact(st->impl, upto);
        if (rc != 0) {
            return craft__sim_fail(s, rc, "n%u: compacting the store up to %" PRIu64 ": %s",
                                   i + 1, upto, craft_err_name(rc));
        }
    }
    craft__sim_emit_text(s, CRAFT_SIM_EV_NOTE, sn->id,
                         "n%u took a snapshot at %" PRIu64 " and compacted its log up to %" PRIu64,
                         i + 1, index, upto);
    return 0;
}

int craft__sim_snap_chunk(struct craft_sim *s, unsigned i, const struct craft_install_snapshot *c,
                          bool discard_log)
{
    struct craft__sim_node *sn = &s->nodes[i];
    if (c->offset == 0) {
        sn->rx_len = 0;
    }
    if (c->offset > sn->rx_len) {
        return craft__sim_fail(s, CRAFT_ESTATE,
                               "n%u was handed a snapshot chunk at offset %" PRIu64
                               " after %zu bytes",
                               i + 1, c->offset, sn->rx_len);
    }
    size_t need = (size_t)c->offset + c->size;
    if (need > sn->rx_cap) {
        size_t cap = sn->rx_cap ? sn->rx_cap : 256;
        while (cap < need) {
            cap *= 2;
        }
        unsigned char *p = craft_realloc(s->alloc, sn->rx, cap);
        if (p == NULL) {
            return craft__sim_fail(s, CRAFT_ENOMEM, "out of memory receiving a snapshot");
        }
        sn->rx = p;
        sn->rx_cap = cap;
    }
    if (c->size > 0) {
        memcpy(sn->rx + c->offset, c->data, c->size);
    }
    sn->rx_len = need;
    if (!c->done) {
        return 0;
    }
    /* The core has replaced its state machine and log: so does the mirror. */
    if (c->meta.index < sn->applied_base + sn->n_applied) {
        return craft__sim_fail(s, CRAFT_SIM_EVIOLATION,
                               "state machine safety: n%u installed a snapshot at %" PRIu64
                               " after applying up to %" PRIu64 " (its state would go back)",
                               i + 1, c->meta.index, sn->applied_base + sn->n_applied);
    }
    int rc = restore(s, i, c->meta.index, sn->rx, sn->rx_len);
    if (rc == 0) {
        rc = craft__sim_shadow_rebase(s, i, c->meta.index, c->meta.term, discard_log);
    }
    craft__sim_emit_text(s, CRAFT_SIM_EV_NOTE, sn->id,
                         "n%u installed a snapshot at %" PRIu64 "/%" PRIu64 "%s", i + 1,
                         c->meta.index, c->meta.term, discard_log ? " (log discarded)" : "");
    return rc;
}

int craft__sim_snap_boot(struct craft_sim *s, unsigned i, bool has_snapshot,
                         const struct craft_snapshot_meta *meta)
{
    struct craft__sim_node *sn = &s->nodes[i];
    if (!has_snapshot) {
        sn->applied_base = 0;
        sn->n_applied = 0;
        if (s->o.restore != NULL) {
            int rc = s->o.restore(s->o.ud, sn->id, NULL, 0);
            if (rc != 0) {
                return craft__sim_fail(s, rc, "n%u: the restore callback failed: %s", i + 1,
                                       craft_err_name(rc));
            }
        }
        return 0;
    }
    struct craft_store *st = sn->store;
    size_t size = (size_t)meta->size;
    unsigned char *data = craft_malloc(s->alloc, size ? size : 1);
    if (data == NULL) {
        return craft__sim_fail(s, CRAFT_ENOMEM, "out of memory reading a snapshot");
    }
    void *reader = NULL;
    int rc = st->snapshot_open(st->impl, &reader);
    size_t got = 0;
    while (rc == 0 && got < size) {
        size_t k = 0;
        rc = st->snapshot_read(st->impl, reader, got, data + got, size - got, &k);
        if (rc == 0 && k == 0) {
            rc = CRAFT_ECORRUPT; /* shorter than its metadata says */
        }
        got += k;
    }
    if (reader != NULL) {
        st->snapshot_close(st->impl, reader);
    }
    if (rc == 0) {
        rc = restore(s, i, meta->index, data, size);
    } else {
        rc = craft__sim_fail(s, rc, "n%u: reading its snapshot at boot: %s", i + 1,
                             craft_err_name(rc));
    }
    craft_free(s->alloc, data);
    return rc;
}

void craft__sim_snap_crash(struct craft_sim *s, unsigned i)
{
    struct craft__sim_node *sn = &s->nodes[i];
    craft__snap_rx_abort(sn->store, &sn->rx_store);
    sn->rx_len = 0;
}
