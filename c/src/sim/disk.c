/*
 * The virtual disks. Each update's hard state and entries are queued as one write that
 * completes after a random latency, never before the writes queued ahead of it (a log device
 * completes in order). On completion the write goes into the node's in-memory store and the
 * core hears craft_persisted(seq). A crash discards the queue: that is the "lost what it had not
 * persisted" of a real crash, and why the core may only acknowledge what was persisted.
 */
#include <string.h>

#include "sim_internal.h"

static void write_free(struct craft_sim *s, struct craft__sim_write *w)
{
    if (w->has_chunk) {
        craft_free(s->alloc, (void *)w->chunk.data);
        craft_configuration_close(&w->chunk.meta.conf, s->alloc);
    }
    craft_free(s->alloc, w->entries);
    craft_free(s->alloc, w);
}

int craft__sim_disk_write(struct craft_sim *s, unsigned i, const struct craft_update *u)
{
    if (u->seq == 0 && !u->hard_state_changed && u->n_entries == 0 &&
        u->snapshot_chunk == NULL) {
        return 0;
    }
    struct craft__sim_node *sn = &s->nodes[i];
    struct craft__sim_write *w = craft_calloc(s->alloc, 1, sizeof(*w));
    if (w == NULL) {
        return craft__sim_fail(s, CRAFT_ENOMEM, "n%u: out of memory queueing a write", i + 1);
    }
    w->seq = u->seq;
    w->has_hard_state = u->hard_state_changed;
    w->hard_state = u->hard_state;
    if (u->snapshot_chunk != NULL) {
        const struct craft_install_snapshot *c = u->snapshot_chunk;
        w->has_chunk = true;
        w->discard_log = u->snapshot_discard_log;
        w->chunk = *c;
        w->chunk.data = NULL;
        craft_configuration_init(&w->chunk.meta.conf);
        void *data = c->size ? craft_malloc(s->alloc, c->size) : NULL;
        int rc = craft_configuration_copy(&w->chunk.meta.conf, &c->meta.conf, s->alloc);
        if ((c->size && data == NULL) || rc != 0) {
            craft_free(s->alloc, data);
            write_free(s, w);
            return craft__sim_fail(s, CRAFT_ENOMEM, "n%u: out of memory queueing a write",
                                   i + 1);
        }
        if (c->size) {
            memcpy(data, c->data, c->size);
        }
        w->chunk.data = data;
    }
    if (u->n_entries > 0) {
        size_t total = u->n_entries * sizeof(struct craft_entry);
        for (size_t k = 0; k < u->n_entries; k++) {
            total += u->entries[k].size;
        }
        w->entries = craft_malloc(s->alloc, total);
        if (w->entries == NULL) {
            write_free(s, w);
            return craft__sim_fail(s, CRAFT_ENOMEM, "n%u: out of memory queueing a write",
                                   i + 1);
        }
        char *payload = (char *)(w->entries + u->n_entries);
        for (size_t k = 0; k < u->n_entries; k++) {
            w->entries[k] = u->entries[k];
            w->entries[k].data = NULL;
            if (u->entries[k].size > 0) {
                memcpy(payload, u->entries[k].data, u->entries[k].size);
                w->entries[k].data = payload;
                payload += u->entries[k].size;
            }
        }
        w->n_entries = u->n_entries;
    }
    uint64_t done = s->now + craft__sim_prng_range(&s->rng, s->o.disk_min_ms, s->o.disk_max_ms);
    if (done < sn->disk.busy_until) {
        done = sn->disk.busy_until;
    }
    sn->disk.busy_until = done;
    int rc = craft__sim_schedule(s, done, CRAFT__SIM_DISK, i, NULL);
    if (rc != 0) {
        write_free(s, w);
        return rc;
    }
    if (sn->disk.tail) {
        sn->disk.tail->next = w;
    } else {
        sn->disk.head = w;
    }
    sn->disk.tail = w;
    return 0;
}

/* Carries out w on node i's store in the driver contract's order (the runtime's too). With
 * crash armed, only a prefix of its store operations completes. */
static int store_write(struct craft_sim *s, unsigned i, const struct craft__sim_write *w,
                       struct craft__crash_point *crash)
{
    struct craft__sim_node *sn = &s->nodes[i];
    struct craft__persist_job j = {
        .has_hard_state = w->has_hard_state,
        .hard_state = w->hard_state,
        .chunk = w->has_chunk ? &w->chunk : NULL,
        .discard_log = w->discard_log,
        .entries = w->entries,
        .n_entries = w->n_entries,
    };
    const char *what = "";
    int rc = craft__persist(sn->store, &sn->rx_store, &j, crash, &what);
    if (rc == CRAFT__PERSIST_CRASHED) {
        return rc;
    }
    if (rc != 0) {
        return craft__sim_fail(s, rc, "n%u: %s failed: %s", i + 1, what, craft_err_name(rc));
    }
    return 0;
}

int craft__sim_disk_complete(struct craft_sim *s, unsigned i)
{
    struct craft__sim_node *sn = &s->nodes[i];
    struct craft__sim_write *w = sn->disk.head;
    if (w == NULL) {
        return craft__sim_fail(s, CRAFT_ESTATE, "n%u: disk completion with nothing queued",
                               i + 1);
    }
    sn->disk.head = w->next;
    if (sn->disk.head == NULL) {
        sn->disk.tail = NULL;
    }
    int rc = 0;
    if (w->has_hard_state) {
        rc = craft__sim_inv_durable(s, i, &w->hard_state);
    }
    if (rc == 0) {
        rc = store_write(s, i, w, NULL);
    }
    if (rc == 0) {
        s->stats.disk_writes++;
        struct craft_sim_event ev;
        craft__sim_event_init(s, &ev, CRAFT_SIM_EV_PERSIST, sn->id);
        ev.seq = w->seq;
        ev.term = sn->durable.term;
        ev.leader = sn->durable.vote;
        ev.index = w->n_entries ? w->entries[w->n_entries - 1].index : 0;
        craft__sim_emit(s, &ev);
        if (w->seq != 0) {
            rc = craft__sim_core_persisted(s, i, w->seq);
            if (rc != 0) {
                rc = craft__sim_fail(s, rc, "n%u: craft_persisted(%llu) returned %s", i + 1,
                                     (unsigned long long)w->seq, craft_err_name(rc));
            }
        }
    }
    write_free(s, w);
    if (rc == 0) {
        rc = craft__sim_drain(s, i);
    }
    return rc;
}

int craft__sim_disk_crash(struct craft_sim *s, unsigned i)
{
    struct craft__sim_node *sn = &s->nodes[i];
    struct craft__sim_write *w = sn->disk.head;
    int rc = 0;
    /* The write at the head of the queue is the one the disk is working on: half the time
     * the crash tears it, after a random number of its store operations (any point between
     * two of them, including none and the middle of an append). The rest never started. */
    if (w != NULL && s->o.torn_writes && craft__sim_prng_chance(&s->rng, 0.5)) {
        unsigned ops = (unsigned)(w->has_hard_state + (w->has_chunk ? 3 : 0) + 1 + w->n_entries);
        struct craft__crash_point crash = {
            .armed = true,
            .ops_left = (unsigned)craft__sim_prng_range(&s->rng, 0, ops - 1),
        };
        unsigned planned = crash.ops_left;
        s->stats.torn_writes++;
        rc = store_write(s, i, w, &crash);
        if (rc == 0 || rc == CRAFT__PERSIST_CRASHED) {
            rc = 0;
            struct craft_hard_state hs;
            if (sn->store->load_hard_state(sn->store->impl, &hs) == 0 &&
                (hs.term != sn->durable.term || hs.vote != sn->durable.vote)) {
                rc = craft__sim_inv_durable(s, i, &hs);
            }
            craft__sim_emit_text(s, CRAFT_SIM_EV_NOTE, sn->id,
                                 "n%u crashed in the middle of a write: %u of its store "
                                 "operations done",
                                 i + 1, planned - crash.ops_left);
        }
    }
    craft__sim_disk_discard(s, i);
    return rc;
}

void craft__sim_disk_discard(struct craft_sim *s, unsigned i)
{
    struct craft__sim_node *sn = &s->nodes[i];
    struct craft__sim_write *w = sn->disk.head;
    while (w != NULL) {
        struct craft__sim_write *next = w->next;
        write_free(s, w);
        w = next;
    }
    sn->disk.head = sn->disk.tail = NULL;
    sn->disk.busy_until = 0;
}
