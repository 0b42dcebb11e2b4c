/* A small synchronous cluster for the core's unit tests: N nodes, a FIFO network that copies
 * every message, per-link cuts, and persistence that is either immediate or held back until
 * the test releases it. Deliberately simpler than the simulator: a unit test states exactly
 * which message goes where. */
#ifndef CRAFT_TEST_CORE_FIXTURE_H
#define CRAFT_TEST_CORE_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "craft.h"

#define FX_MAX 9
#define FX_QUEUE 65536

struct fx_msg {
    struct craft_message m;
    struct craft_entry *entries; /* owned copies */
    void *chunk;                 /* InstallSnapshot data, filled from the sender's snapshot */
    struct craft_server *servers;
};

/* The toy state machine: a hash chain of applied commands, and its snapshots, padded so that a
 * snapshot takes several chunks. */
#define FX_SNAP_SIZE 5000
struct fx_fsm {
    uint64_t count;
    uint64_t hash;
    craft_index index;
};

struct fx {
    int n;
    struct craft_node *node[FX_MAX + 1]; /* by id, 1..n */
    struct craft_config cfg[FX_MAX + 1];
    bool manual_persist[FX_MAX + 1];
    uint64_t last_seq[FX_MAX + 1];
    bool cut[FX_MAX + 1][FX_MAX + 1];
    bool down[FX_MAX + 1];
    struct fx_msg *queue;
    size_t head, tail;
    /* What was applied, per node: index and term of each committed entry handed out. */
    craft_index applied_index[FX_MAX + 1];
    craft_index n_applied[FX_MAX + 1];
    craft_index dropped_from[FX_MAX + 1];
    unsigned role_changes[FX_MAX + 1];
    struct fx_fsm fsm[FX_MAX + 1];
    /* The latest snapshot of each node (FX_SNAP_SIZE bytes) and the one being received. */
    uint8_t snap[FX_MAX + 1][FX_SNAP_SIZE];
    craft_index snap_index[FX_MAX + 1];
    uint8_t recv[FX_MAX + 1][FX_SNAP_SIZE];
    unsigned snapshots_taken[FX_MAX + 1];
    unsigned snapshots_installed[FX_MAX + 1];
    unsigned chunks_received[FX_MAX + 1];
    craft_index compacted[FX_MAX + 1];
    bool no_snapshots[FX_MAX + 1]; /* ignore snapshot_wanted */
    struct craft_read_state reads[FX_MAX + 1][64];
    unsigned n_reads[FX_MAX + 1];
    /* Followers whose log went backwards, as reported by each leader (the last one kept). */
    unsigned n_regressions[FX_MAX + 1];
    struct craft_log_regression regression[FX_MAX + 1];
};

static inline void fx_copy_msg(struct fx *f, struct fx_msg *dst, const struct craft_message *m)
{
    dst->m = *m;
    dst->entries = NULL;
    dst->chunk = NULL;
    dst->servers = NULL;
    if (m->type == CRAFT_MSG_INSTALL_SNAPSHOT) {
        const struct craft_install_snapshot *is = &m->u.install_snapshot;
        dst->chunk = malloc(is->size ? is->size : 1);
        if (is->data == NULL) {
            memcpy(dst->chunk, &f->snap[m->from][is->offset], is->size);
        } else {
            memcpy(dst->chunk, is->data, is->size);
        }
        dst->m.u.install_snapshot.data = dst->chunk;
        unsigned k = is->meta.conf.n;
        dst->servers = calloc(k ? k : 1, sizeof *dst->servers);
        memcpy(dst->servers, is->meta.conf.servers, k * sizeof *dst->servers);
        dst->m.u.install_snapshot.meta.conf.servers = dst->servers;
    }
    if (m->type == CRAFT_MSG_APPEND_ENTRIES && m->u.append_entries.n_entries > 0) {
        size_t k = m->u.append_entries.n_entries;
        dst->entries = calloc(k, sizeof *dst->entries);
        for (size_t i = 0; i < k; i++) {
            dst->entries[i] = m->u.append_entries.entries[i];
            if (dst->entries[i].size > 0) {
                void *p = malloc(dst->entries[i].size);
                memcpy(p, dst->entries[i].data, dst->entries[i].size);
                dst->entries[i].data = p;
            }
        }
        dst->m.u.append_entries.entries = dst->entries;
    }
}

static inline void fx_free_msg(struct fx_msg *f)
{
    free(f->chunk);
    free(f->servers);
    f->chunk = NULL;
    f->servers = NULL;
    if (f->entries != NULL) {
        for (size_t i = 0; i < f->m.u.append_entries.n_entries; i++) {
            free((void *)f->entries[i].data);
        }
        free(f->entries);
    }
    f->entries = NULL;
}

/* Takes every pending update of node id: queues its messages, persists (unless held back) and
 * records what was applied. */
static inline void fx_drain(struct fx *f, craft_id id)
{
    struct craft_node *nd = f->node[id];
    while (nd != NULL && craft_has_update(nd)) {
        struct craft_update u;
        if (craft_take_update(nd, &u) != 0) {
            abort();
        }
        for (size_t i = 0; i < u.n_messages; i++) {
            if (f->tail - f->head >= FX_QUEUE) {
                abort();
            }
            fx_copy_msg(f, &f->queue[f->tail++ % FX_QUEUE], &u.messages[i]);
        }
        if (u.snapshot_chunk != NULL) {
            const struct craft_install_snapshot *is = u.snapshot_chunk;
            memcpy(&f->recv[id][is->offset], is->data, is->size);
            f->chunks_received[id]++;
            if (is->done) {
                memcpy(f->snap[id], f->recv[id], FX_SNAP_SIZE);
                f->snap_index[id] = is->meta.index;
                memcpy(&f->fsm[id], f->snap[id], sizeof f->fsm[id]);
                f->applied_index[id] = is->meta.index;
                f->snapshots_installed[id]++;
            }
        }
        for (size_t i = 0; i < u.n_committed; i++) {
            const struct craft_entry *e = &u.committed[i];
            f->applied_index[id] = e->index;
            f->n_applied[id]++;
            struct fx_fsm *s = &f->fsm[id];
            s->index = e->index;
            if (e->type == CRAFT_ENTRY_COMMAND) {
                s->count++;
                s->hash = s->hash * 1000003u + e->index * 31u + e->term;
                for (size_t b = 0; b < e->size; b++) {
                    s->hash = s->hash * 131u + ((const uint8_t *)e->data)[b];
                }
            }
        }
        if (u.snapshot_wanted != NULL && !f->no_snapshots[id]) {
            memset(f->snap[id], 0xab, FX_SNAP_SIZE);
            memcpy(f->snap[id], &f->fsm[id], sizeof f->fsm[id]);
            f->snap_index[id] = u.snapshot_wanted->index;
            f->snapshots_taken[id]++;
            craft_index upto = 0;
            if (craft_snapshot_taken(nd, u.snapshot_wanted->index, FX_SNAP_SIZE, &upto) != 0) {
                abort();
            }
            if (upto > f->compacted[id]) {
                f->compacted[id] = upto;
            }
        }
        for (size_t i = 0; i < u.n_reads && f->n_reads[id] < 64; i++) {
            f->reads[id][f->n_reads[id]++] = u.reads[i];
        }
        if (u.dropped_from != 0) {
            f->dropped_from[id] = u.dropped_from;
        }
        for (size_t i = 0; i < u.n_regressions; i++) {
            f->regression[id] = u.regressions[i];
            f->n_regressions[id]++;
        }
        f->role_changes[id] += u.role_changed;
        if (u.seq != 0) {
            f->last_seq[id] = u.seq;
            if (!f->manual_persist[id]) {
                craft_persisted(nd, u.seq);
            }
        }
    }
}

static inline void fx_persist(struct fx *f, craft_id id)
{
    craft_persisted(f->node[id], f->last_seq[id]);
    fx_drain(f, id);
}

static inline struct craft_configuration fx_conf(int n, int voters)
{
    struct craft_configuration c;
    craft_configuration_init(&c);
    for (int i = 1; i <= n; i++) {
        char addr[32];
        snprintf(addr, sizeof addr, "127.0.0.1:%d", 9000 + i);
        craft_configuration_add(&c, NULL, (craft_id)i, addr, i <= voters ? CRAFT_VOTER : CRAFT_LEARNER);
    }
    return c;
}

/* Set by a test before fx_init to adjust every node's configuration. */
static void (*fx_tweak)(struct craft_config *c) __attribute__((unused));

/* A new cluster of n servers (the first `voters` voting), all bootstrapped. */
static inline void fx_init_with(struct fx *f, int n, int voters, bool pre_vote, bool check_quorum)
{
    memset(f, 0, sizeof *f);
    f->n = n;
    f->queue = calloc(FX_QUEUE, sizeof *f->queue);
    struct craft_configuration c = fx_conf(n, voters);
    for (int i = 1; i <= n; i++) {
        craft_config_init(&f->cfg[i], (craft_id)i);
        f->cfg[i].pre_vote = pre_vote;
        f->cfg[i].check_quorum = check_quorum;
        if (fx_tweak != NULL) {
            fx_tweak(&f->cfg[i]);
        }
        struct craft_boot b = {0};
        b.bootstrap = &c;
        if (craft_node_new(&f->cfg[i], &b, &f->node[i]) != 0) {
            abort();
        }
        fx_drain(f, (craft_id)i);
    }
    craft_configuration_close(&c, NULL);
}

static inline void fx_init(struct fx *f, int n)
{
    fx_init_with(f, n, n, true, true);
}

/* Replaces node id with one booted from explicit state (for log-shape tests): entry 1 is a
 * configuration of servers 1..n_voters, all voting; entries 2.. have the given terms. */
static inline void fx_boot(struct fx *f, craft_id id, craft_term term, const craft_term *terms,
                           size_t count, int n_voters)
{
    struct craft_configuration c = fx_conf(n_voters, n_voters);
    void *buf;
    size_t size;
    craft_configuration_encode(&c, NULL, &buf, &size);
    struct craft_entry *e = calloc(count + 1, sizeof *e);
    e[0].index = 1;
    e[0].term = 1;
    e[0].type = CRAFT_ENTRY_CONFIG;
    e[0].data = buf;
    e[0].size = size;
    for (size_t i = 0; i < count; i++) {
        e[i + 1].index = i + 2;
        e[i + 1].term = terms[i];
        e[i + 1].type = CRAFT_ENTRY_COMMAND;
        e[i + 1].data = &terms[i];
        e[i + 1].size = sizeof terms[i];
    }
    struct craft_boot b = {0};
    b.hard_state.term = term;
    b.entries = e;
    b.n_entries = count + 1;
    craft_node_free(f->node[id]);
    if (craft_node_new(&f->cfg[id], &b, &f->node[id]) != 0) {
        abort();
    }
    free(e);
    free(buf);
    craft_configuration_close(&c, NULL);
}

/* Restarts node id from its own log as it is in memory (with automatic persistence, what its
 * disk holds), keeping only entries up to keep_last (all of them if keep_last is past the
 * end): a crash, or a disk that lost its tail. Its term and vote are kept unless hs is given.
 * No snapshot may have been taken. */
static inline void fx_restart_prefix(struct fx *f, craft_id id, craft_index keep_last,
                                     const struct craft_hard_state *hs)
{
    struct craft_node *old = f->node[id];
    craft_index last = craft_node_last_index(old);
    if (keep_last > last) {
        keep_last = last;
    }
    struct craft_entry *e = calloc(keep_last ? keep_last : 1, sizeof *e);
    for (craft_index i = 1; i <= keep_last; i++) {
        const struct craft_entry *src = craft_node_entry(old, i);
        if (src == NULL) {
            abort(); /* compacted: this helper needs the whole log */
        }
        e[i - 1] = *src;
        if (src->size > 0) {
            void *p = malloc(src->size);
            memcpy(p, src->data, src->size);
            e[i - 1].data = p;
        }
    }
    struct craft_boot b = {0};
    b.hard_state.term = craft_node_term(old);
    b.hard_state.vote = craft_node_vote(old);
    if (hs != NULL) {
        b.hard_state = *hs;
    }
    b.entries = e;
    b.n_entries = keep_last;
    craft_node_free(old);
    if (craft_node_new(&f->cfg[id], &b, &f->node[id]) != 0) {
        abort();
    }
    for (craft_index i = 0; i < keep_last; i++) {
        free((void *)e[i].data);
    }
    free(e);
    fx_drain(f, id);
}

/* Replaces node id with an empty one that has no bootstrap configuration: it waits to be added. */
static inline void fx_empty(struct fx *f, craft_id id)
{
    craft_node_free(f->node[id]);
    if (craft_node_new(&f->cfg[id], NULL, &f->node[id]) != 0) {
        abort();
    }
}

static inline bool fx_link_ok(const struct fx *f, craft_id from, craft_id to)
{
    return !f->cut[from][to] && !f->down[from] && !f->down[to] && to >= 1 && to <= (craft_id)f->n;
}

/* Delivers one queued message; returns false when the queue is empty. */
static inline bool fx_deliver_one(struct fx *f, struct craft_message *seen)
{
    if (f->head == f->tail) {
        return false;
    }
    struct fx_msg *q = &f->queue[f->head++ % FX_QUEUE];
    if (seen != NULL) {
        *seen = q->m;
    }
    if (fx_link_ok(f, q->m.from, q->m.to)) {
        craft_step(f->node[q->m.to], &q->m);
        fx_drain(f, q->m.to);
    }
    fx_free_msg(q);
    return true;
}

static inline void fx_deliver_all(struct fx *f)
{
    for (int guard = 0; guard < 1000000 && fx_deliver_one(f, NULL); guard++) {
    }
}

/* Drops every queued message. */
static inline void fx_flush(struct fx *f)
{
    while (f->head != f->tail) {
        fx_free_msg(&f->queue[f->head++ % FX_QUEUE]);
    }
}

static inline void fx_tick(struct fx *f, craft_id id, unsigned k)
{
    for (unsigned i = 0; i < k; i++) {
        if (!f->down[id]) {
            craft_tick(f->node[id]);
            fx_drain(f, id);
        }
    }
}

/* Ticks node id until it campaigns, then delivers everything. */
static inline void fx_elect(struct fx *f, craft_id id)
{
    for (unsigned i = 0; i < 2 * f->cfg[id].election_ticks + 1; i++) {
        fx_tick(f, id, 1);
        if (craft_node_role(f->node[id]) != CRAFT_FOLLOWER) {
            break;
        }
    }
    fx_deliver_all(f);
}

/* Ticks every node once and delivers everything, rounds times. */
static inline void fx_rounds(struct fx *f, unsigned rounds)
{
    for (unsigned r = 0; r < rounds; r++) {
        for (int i = 1; i <= f->n; i++) {
            fx_tick(f, (craft_id)i, 1);
        }
        fx_deliver_all(f);
    }
}

static inline void fx_close(struct fx *f)
{
    fx_flush(f);
    for (int i = 1; i <= f->n; i++) {
        craft_node_free(f->node[i]);
    }
    free(f->queue);
}

static inline int fx_propose(struct fx *f, craft_id id, const char *s)
{
    int rc = craft_propose(f->node[id], s, strlen(s), NULL, NULL);
    fx_drain(f, id);
    return rc;
}

#endif
