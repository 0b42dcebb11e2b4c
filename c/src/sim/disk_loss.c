/*
 * Disk loss (craft_sim_disk_lose): what operators and failing disks do to a data directory
 * while its server is down -- wipe it, cut its log short (a torn segment cut back at recovery),
 * or put back an older copy. Raft assumes none of this happens; a leader must still notice a
 * follower whose log went backwards and repair it (docs/core.md), and the checker must say
 * which losses stay within what Raft tolerates (craft_sim_disk_loss_safe), so that a soak can
 * mix them in and still demand every invariant.
 */
#include <inttypes.h>

#include "sim_internal.h"
#include "storage/mem_store.h"

static struct craft__sim_node *down_node(struct craft_sim *s, craft_id id, int *rc)
{
    if (id == 0 || id > s->n) {
        *rc = CRAFT_EINVAL;
        return NULL;
    }
    struct craft__sim_node *sn = &s->nodes[id - 1];
    *rc = s->stop_rc != 0 ? s->stop_rc : sn->up ? CRAFT_ESTATE : 0;
    return *rc == 0 ? sn : NULL;
}

int craft_sim_disk_save(struct craft_sim *s, craft_id id)
{
    if (id == 0 || id > s->n) {
        return CRAFT_EINVAL;
    }
    struct craft__sim_node *sn = &s->nodes[id - 1];
    struct craft_store *copy = NULL;
    int rc = craft__mem_store_clone(sn->store, &copy);
    if (rc != 0) {
        return rc;
    }
    craft_store_close(sn->saved);
    sn->saved = copy;
    return 0;
}

/* The first index a cut of the last n entries removes: never at or below the snapshot (the
 * snapshot file is separate from the log's tail). Past last when nothing can be cut. */
static craft_index cut_start(struct craft_sim *s, struct craft_store *st, uint64_t n,
                             craft_index *last_out)
{
    craft_index first = 1, last = 0;
    st->bounds(st->impl, &first, &last);
    struct craft_snapshot_meta m;
    if (st->snapshot_meta(st->impl, s->alloc, &m) == 0) {
        craft_configuration_close(&m.conf, s->alloc);
        if (m.index + 1 > first) {
            first = m.index + 1;
        }
    }
    *last_out = last;
    if (first > last) {
        return last + 1;
    }
    return last - first + 1 > n ? last - n + 1 : first;
}

/* The voters of the configuration node j would boot with from store st: the last
 * configuration entry of its log (below `below` if not 0), else its snapshot's; a founding
 * voter with neither bootstraps the original configuration again, as its unchanged command
 * line would make it. */
static uint64_t store_voters(struct craft_sim *s, unsigned j, struct craft_store *st,
                             craft_index below)
{
    craft_index first = 1, last = 0;
    if (st != NULL) {
        st->bounds(st->impl, &first, &last);
    }
    if (below != 0 && below - 1 < last) {
        last = below - 1;
    }
    for (craft_index i = last; i >= first && i > 0; i--) {
        struct craft_entry *e = NULL;
        size_t n = 0;
        if (st->entries(st->impl, i, i, s->alloc, &e, &n) != 0) {
            break;
        }
        uint64_t voters = 0;
        bool conf = n == 1 && e[0].type == CRAFT_ENTRY_CONFIG;
        if (conf) {
            struct craft_configuration c;
            if (craft_configuration_decode(e[0].data, e[0].size, s->alloc, &c) == 0) {
                voters = craft__sim_voters_of(&c);
                craft_configuration_close(&c, s->alloc);
            }
        }
        craft_free(s->alloc, e);
        if (conf) {
            return voters;
        }
    }
    struct craft_snapshot_meta m;
    if (st == NULL || st->snapshot_meta(st->impl, s->alloc, &m) != 0) {
        bool founder = s->o.bootstrap && j < s->o.n_voters;
        return founder ? craft__sim_voters_of(&s->bootstrap) : 0;
    }
    uint64_t voters = craft__sim_voters_of(&m.conf);
    craft_configuration_close(&m.conf, s->alloc);
    return voters;
}

/* The voters of every configuration that could decide something: the last committed one, the
 * one each running server uses (a candidate counts votes in its own), the one each server
 * that is down would boot with, and the one id would boot with after the loss (a server that
 * lost the entries removing it is a voter again in its own eyes). */
static void deciding_confs(struct craft_sim *s, craft_id id, struct craft_store *after,
                           craft_index cut_from, uint64_t *confs, unsigned *n)
{
    *n = 0;
    confs[(*n)++] = s->committed_voters;
    for (unsigned j = 0; j < s->n; j++) {
        const struct craft__sim_node *o = &s->nodes[j];
        if (o->up) {
            confs[(*n)++] = craft__sim_core_voters(s, j);
        } else if (j != id - 1) {
            confs[(*n)++] = store_voters(s, j, o->store, 0);
        }
    }
    confs[(*n)++] = store_voters(s, (unsigned)(id - 1), after, cut_from); /* NULL: wiped */
}

/* Whether store st holds the committed entry at index (or a snapshot covering it). */
static bool holds(struct craft_store *st, craft_index index, craft_term term)
{
    if (st == NULL) {
        return false;
    }
    craft_term t = 0;
    int rc = st->term(st->impl, index, &t);
    return (rc == 0 && t == term) || rc == CRAFT_ECOMPACTED;
}

bool craft_sim_disk_loss_safe(struct craft_sim *s, craft_id id, int kind, uint64_t n)
{
    if (id == 0 || id > s->n || s->stop_rc != 0) {
        return false;
    }
    struct craft__sim_node *sn = &s->nodes[id - 1];
    struct craft_store *after = NULL; /* what id's store holds after the loss (NULL: nothing) */
    craft_index cut_from = 0;         /* CUT_TAIL: the first index lost */
    switch (kind) {
    case CRAFT_SIM_DISK_WIPE:
        break;
    case CRAFT_SIM_DISK_CUT_TAIL: {
        craft_index last;
        after = sn->store;
        cut_from = cut_start(s, sn->store, n, &last);
        break;
    }
    case CRAFT_SIM_DISK_ROLLBACK:
        if (sn->saved == NULL) {
            return false;
        }
        after = sn->saved;
        break;
    default:
        return false;
    }
    uint64_t confs[CRAFT_SIM_MAX_NODES + 2];
    unsigned n_confs;
    deciding_confs(s, id, after, cut_from, confs, &n_confs);
    uint64_t me = 1ull << (id - 1);

    /* Votes: a node that lost its term or vote could vote twice in a term, unless it is a
     * voter of no configuration that could count it. */
    if (kind != CRAFT_SIM_DISK_CUT_TAIL) {
        struct craft_hard_state hs = {0};
        if (after != NULL) {
            after->load_hard_state(after->impl, &hs);
        }
        bool same = hs.term == sn->durable.term && hs.vote == sn->durable.vote;
        for (unsigned c = 0; c < n_confs && !same; c++) {
            if (confs[c] & me) {
                return false;
            }
        }
    }
    /* Entries: every committed entry must still be stored by a majority of the voters of
     * every deciding configuration, counting id only where it keeps the entry. An entry that
     * id loses and others hold may have been counted as id's by a leader (an acknowledgement
     * cannot be taken back): it must be on such a majority without id too. One that nobody
     * else holds was never counted by anyone. */
    craft_index old_last = 0, old_first = 1;
    sn->store->bounds(sn->store->impl, &old_first, &old_last);
    craft_index top = s->n_committed > old_last ? s->n_committed : old_last;
    for (craft_index i = 1; i <= top; i++) {
        /* A new cluster's first configuration is committed from the start, on every founding
         * server (it needs no election). */
        bool committed = i <= s->n_committed || (i == 1 && s->o.bootstrap);
        craft_term term = 0;
        if (i <= s->n_committed) {
            term = s->committed[i - 1].term;
        } else if (committed) {
            term = 1;
        } else if (sn->store->term(sn->store->impl, i, &term) != 0) {
            continue;
        }
        struct craft_store *mine = (cut_from != 0 && i >= cut_from) ? NULL : after;
        bool kept = holds(mine, i, term);
        /* Others that hold it durably, and those a leader could count once their own write
         * lands (a running server's log in memory). */
        uint64_t others = 0, known = 0;
        for (unsigned j = 0; j < s->n && j < 64; j++) {
            const struct craft__sim_node *o = &s->nodes[j];
            if (j == id - 1) {
                continue;
            }
            if (holds(o->store, i, term)) {
                others |= 1ull << j;
            }
            if (o->up && craft__sim_core_term_at(s, j, i) == term) {
                known |= 1ull << j;
            }
        }
        if (!committed && (kept || !holds(sn->store, i, term) || (others | known) == 0)) {
            continue;
        }
        uint64_t have = others | (kept ? me : 0);
        for (unsigned c = 0; c < n_confs; c++) {
            unsigned voters = (unsigned)__builtin_popcountll(confs[c]);
            if (voters > 0 && 2 * (unsigned)__builtin_popcountll(have & confs[c]) <= voters) {
                return false;
            }
        }
    }
    return true;
}

int craft_sim_disk_lose(struct craft_sim *s, craft_id id, int kind, uint64_t n)
{
    int rc;
    struct craft__sim_node *sn = down_node(s, id, &rc);
    if (sn == NULL) {
        return rc;
    }
    unsigned i = (unsigned)(id - 1);
    struct craft_store *st = sn->store;
    switch (kind) {
    case CRAFT_SIM_DISK_WIPE: {
        struct craft_store *fresh = NULL;
        rc = craft_mem_store_new(s->alloc, &fresh);
        if (rc != 0) {
            return rc;
        }
        craft_store_close(sn->store);
        sn->store = fresh;
        craft__sim_emit_text(s, CRAFT_SIM_EV_NOTE, id, "n%u's data directory was wiped", i + 1);
        break;
    }
    case CRAFT_SIM_DISK_CUT_TAIL: {
        craft_index last;
        craft_index from = cut_start(s, st, n, &last);
        if (from <= last) {
            rc = st->truncate(st->impl, from);
            if (rc != 0) {
                return rc;
            }
        }
        craft__sim_emit_text(s, CRAFT_SIM_EV_NOTE, id,
                             "n%u's log lost its tail: %" PRIu64 "..%" PRIu64, i + 1, from,
                             last);
        break;
    }
    case CRAFT_SIM_DISK_ROLLBACK: {
        if (sn->saved == NULL) {
            return CRAFT_ENOTFOUND;
        }
        struct craft_store *copy = NULL;
        rc = craft__mem_store_clone(sn->saved, &copy);
        if (rc != 0) {
            return rc;
        }
        craft_store_close(sn->store);
        sn->store = copy;
        craft__sim_emit_text(s, CRAFT_SIM_EV_NOTE, id,
                             "n%u's data directory was replaced by an older copy", i + 1);
        break;
    }
    default:
        return CRAFT_EINVAL;
    }
    /* The node's durable promises went with its disk: the checker's record of them restarts
     * from what the store now holds, and so does the mirror of its log. */
    rc = sn->store->load_hard_state(sn->store->impl, &sn->durable);
    if (rc != 0) {
        return craft__sim_fail(s, rc, "n%u: reading the hard state after a disk loss", i + 1);
    }
    struct craft_entry *entries = NULL;
    size_t count = 0;
    craft_index first, last;
    rc = sn->store->bounds(sn->store->impl, &first, &last);
    if (rc == 0 && last >= first) {
        rc = sn->store->entries(sn->store->impl, first, last, s->alloc, &entries, &count);
    }
    craft_term base_term = 0;
    if (rc == 0 && first > 1) {
        sn->store->term(sn->store->impl, first - 1, &base_term);
    }
    if (rc == 0) {
        rc = craft__sim_shadow_reset(s, i, first - 1, base_term, entries, count);
    }
    craft_free(s->alloc, entries);
    s->stats.disk_losses++;
    return rc;
}
