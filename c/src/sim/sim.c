/*
 * The simulator proper: options, life cycle, the event loop, and the driver's half of the
 * core's contract -- taking each update and carrying it out (persist asynchronously, send,
 * apply) exactly as a real runtime would, so that what the sim proves holds for drivers that
 * follow the same rules (see docs/simulator.md).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "sim_internal.h"

void craft_sim_options_init(struct craft_sim_options *o)
{
    memset(o, 0, sizeof(*o));
    o->n_nodes = 3;
    o->seed = 1;
    craft_config_init(&o->node, 0);
    o->tick_ms = 10;
    o->tick_jitter_ms = 1;
    o->min_delay_ms = 1;
    o->max_delay_ms = 10;
    o->disk_min_ms = 0;
    o->disk_max_ms = 2;
    o->torn_writes = true;
    o->bootstrap = true;
    o->trace_depth = 64;
}

int craft__sim_fail(struct craft_sim *s, int rc, const char *fmt, ...)
{
    if (s->stop_rc != 0) {
        return s->stop_rc; /* the first failure is the one worth reporting */
    }
    s->stop_rc = rc;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->error, sizeof(s->error), fmt, ap);
    va_end(ap);
    craft__sim_emit_text(s, CRAFT_SIM_EV_VIOLATION, 0, "%s", s->error);
    return rc;
}

int craft__sim_schedule(struct craft_sim *s, uint64_t at, uint8_t kind, unsigned node, void *ptr)
{
    struct craft__sim_item it = {
        .at = at,
        .kind = kind,
        .node = node,
        .incarnation = s->nodes[node].incarnation,
        .ptr = ptr,
    };
    int rc = craft__sim_queue_push(&s->queue, it);
    if (rc != 0) {
        return craft__sim_fail(s, rc, "out of memory scheduling an event");
    }
    return 0;
}

static int schedule_tick(struct craft_sim *s, unsigned i, bool first)
{
    uint64_t at;
    struct craft__sim_node *sn = &s->nodes[i];
    if (sn->clock_ms == 0) {
        return 0; /* a stopped clock (craft_sim_set_clock) */
    }
    if (first) {
        /* A random phase per node and incarnation, so nodes do not tick in lockstep. */
        at = s->now + craft__sim_prng_range(&s->rng, 1, sn->clock_ms);
    } else {
        uint64_t j = s->o.tick_jitter_ms;
        at = s->now + sn->clock_ms - j + craft__sim_prng_range(&s->rng, 0, 2 * j);
    }
    return craft__sim_schedule(s, at, CRAFT__SIM_TICK, i, (void *)(uintptr_t)sn->clock_gen);
}

/* Role, term or leader as an update reports it; emits a ROLE event when something changed. */
static void note_role(struct craft_sim *s, unsigned i, int role, craft_term term,
                      craft_id leader)
{
    struct craft__sim_node *sn = &s->nodes[i];
    if (role == sn->role && term == sn->term && leader == sn->leader) {
        return;
    }
    sn->role = role;
    sn->term = term;
    sn->leader = leader;
    struct craft_sim_event ev;
    craft__sim_event_init(s, &ev, CRAFT_SIM_EV_ROLE, sn->id);
    ev.role = role;
    ev.term = term;
    ev.leader = leader;
    craft__sim_emit(s, &ev);
}

/* Carries out one update, in the order craft.h gives: persistence is queued first (so that a
 * crash after this point loses it only if the disk has not finished), then messages go out,
 * then committed entries are applied. */
static int process(struct craft_sim *s, unsigned i, const struct craft_update *u)
{
    struct craft__sim_node *sn = &s->nodes[i];
    bool leader_before = sn->role == CRAFT_LEADER && !u->role_changed;
    int rc;
    if (u->hard_state_changed && u->hard_state.term > sn->cur_term) {
        sn->cur_term = u->hard_state.term;
    }
    if (u->role_changed) {
        if (u->term > sn->cur_term) {
            sn->cur_term = u->term;
        }
        note_role(s, i, u->role, u->term, u->leader);
        rc = craft__sim_inv_role(s, i, u->role, u->term);
        if (rc == 0 && u->role == CRAFT_LEADER) {
            rc = craft__sim_inv_elected(s, i, u->term);
        }
        if (rc != 0) {
            return rc;
        }
    }
    if (u->snapshot_chunk != NULL) {
        /* Before anything else of the update (craft.h): it replaces the log it extends. */
        rc = craft__sim_snap_chunk(s, i, u->snapshot_chunk, u->snapshot_discard_log);
        if (rc != 0) {
            return rc;
        }
    }
    rc = craft__sim_inv_append(s, i, u->entries, u->n_entries, leader_before);
    /* A leader's own configuration entries: the rules for starting a change. sn->commit is
     * still the commit index observed before the input that produced this update. */
    for (size_t k = 0; rc == 0 && k < u->n_entries && sn->role == CRAFT_LEADER; k++) {
        if (u->entries[k].type == CRAFT_ENTRY_CONFIG && u->entries[k].term == sn->term) {
            rc = craft__sim_inv_conf_append(s, i, &u->entries[k], sn->commit);
        }
    }
    if (rc == 0) {
        rc = craft__sim_disk_write(s, i, u);
    }
    for (size_t k = 0; rc == 0 && k < u->n_messages; k++) {
        rc = craft__sim_net_send(s, i, &u->messages[k]);
    }
    for (size_t k = 0; rc == 0 && k < u->n_committed; k++) {
        rc = craft__sim_inv_apply(s, i, &u->committed[k]);
        if (rc == 0 && s->o.apply != NULL) {
            s->o.apply(s->o.ud, sn->id, &u->committed[k]);
        }
    }
    if (rc == 0 && u->n_reads > 0) {
        rc = craft__sim_reads_reported(s, i, u->reads, u->n_reads);
    }
    for (size_t k = 0; rc == 0 && k < u->n_regressions; k++) {
        const struct craft_log_regression *g = &u->regressions[k];
        s->stats.regressions++;
        craft__sim_emit_text(s, CRAFT_SIM_EV_NOTE, sn->id,
                             "n%u: follower n%" PRIu64 "'s log went backwards: it had "
                             "acknowledged %" PRIu64 ", it now ends at %" PRIu64,
                             i + 1, g->id, g->match, g->last_index);
    }
    if (rc == 0 && u->dropped_from != 0) {
        craft__sim_emit_text(s, CRAFT_SIM_EV_NOTE, sn->id,
                             "n%u dropped its pending proposals from index %" PRIu64, i + 1,
                             u->dropped_from);
    }
    if (rc == 0 && u->snapshot_wanted != NULL) {
        rc = craft__sim_snap_take(s, i, u->snapshot_wanted); /* last: it calls the core */
    }
    return rc;
}

int craft__sim_drain(struct craft_sim *s, unsigned i)
{
    struct craft__sim_node *sn = &s->nodes[i];
    /* What the checker observed before the input this drain follows. */
    bool was_leader = sn->role == CRAFT_LEADER;
    craft_term lead_term = sn->term;
    uint64_t conf_before = sn->conf_voters;
    while (s->stop_rc == 0 && sn->up) {
        struct craft_update u;
        int rc = craft__sim_core_take(s, i, &u);
        if (rc == 0) {
            break;
        }
        if (rc < 0) {
            return craft__sim_fail(s, rc, "n%u: craft_take_update returned %s", i + 1,
                                   craft_err_name(rc));
        }
        rc = process(s, i, &u);
        if (rc != 0) {
            return rc;
        }
    }
    if (s->stop_rc != 0) {
        return s->stop_rc;
    }
    if (!sn->up) {
        return 0;
    }
    int rc = 0;
    struct craft_sim_core_status st;
    craft__sim_core_status(s, i, &st);
    craft_index commit = st.commit;
    if (was_leader && st.term == lead_term && commit > sn->commit) {
        rc = craft__sim_inv_leader_commit(s, i, lead_term, conf_before, commit);
    }
    if (rc == 0) {
        rc = craft__sim_inv_observe(s, i);
    }
    if (rc == 0) {
        sn->conf_voters = craft__sim_core_voters(s, i);
        rc = craft__sim_reads_serve(s, i);
    }
    return rc;
}

/* Boots node i from its store: what a process does when it starts on an existing data
 * directory. The bootstrap configuration is passed only while the store is still empty: a
 * node that crashed before its bootstrap entry became durable is started the same way
 * again, as an operator would re-run the bootstrap command. */
static int boot(struct craft_sim *s, unsigned i)
{
    struct craft__sim_node *sn = &s->nodes[i];
    struct craft_store *st = sn->store;
    struct craft_boot b;
    memset(&b, 0, sizeof(b));
    struct craft_snapshot_meta meta;
    memset(&meta, 0, sizeof(meta));
    craft_configuration_init(&meta.conf);
    bool has_snapshot = false;
    struct craft_entry *entries = NULL;
    size_t n = 0;
    craft_index first = 0, last = 0;
    const char *what = "load_hard_state";

    int rc = st->load_hard_state(st->impl, &b.hard_state);
    if (rc == 0) {
        what = "snapshot_meta";
        rc = st->snapshot_meta(st->impl, s->alloc, &meta);
        has_snapshot = rc == 0;
        if (rc == CRAFT_ENOTFOUND) {
            rc = 0;
        }
    }
    if (rc == 0) {
        what = "bounds";
        rc = st->bounds(st->impl, &first, &last);
    }
    if (rc == 0 && last >= first) {
        what = "entries";
        rc = st->entries(st->impl, first, last, s->alloc, &entries, &n);
    }
    if (rc != 0) {
        craft_configuration_close(&meta.conf, s->alloc);
        return craft__sim_fail(s, rc, "n%u: store %s failed at boot: %s", i + 1, what,
                               craft_err_name(rc));
    }
    b.snapshot = has_snapshot ? &meta : NULL;
    b.entries = entries;
    b.n_entries = n;
    bool empty = n == 0 && !has_snapshot; /* a torn bootstrap write may have left a term */
    if (s->o.bootstrap && empty && sn->id <= s->o.n_voters) {
        b.bootstrap = &s->bootstrap;
    }

    struct craft_config c = sn->has_config ? sn->config : s->o.node;
    c.id = sn->id;
    c.seed = craft__sim_derive(s->o.seed, sn->id, sn->incarnation);
    c.alloc = s->alloc;
    rc = craft__sim_core_new(s, i, &c, &b);
    if (rc == 0) {
        /* The store may keep entries below its snapshot's index (a trailing window). */
        craft_index base = n ? entries[0].index - 1 : (has_snapshot ? meta.index : last);
        craft_term base_term = has_snapshot && base == meta.index ? meta.term : 0;
        rc = craft__sim_shadow_reset(s, i, base, base_term, entries, n);
        if (rc == 0) {
            rc = craft__sim_snap_boot(s, i, has_snapshot, &meta);
        }
    } else {
        rc = craft__sim_fail(s, rc, "n%u: craft_node_new failed: %s", i + 1,
                             craft_err_name(rc));
    }
    craft_free(s->alloc, entries);
    craft_configuration_close(&meta.conf, s->alloc);
    if (rc != 0) {
        return rc;
    }
    sn->up = true;
    sn->durable = b.hard_state;
    sn->role = 0;
    sn->term = 0;
    sn->leader = 0;
    sn->commit = 0;
    sn->cur_term = b.hard_state.term;
    sn->grant_term = 0;
    sn->grant_mask = 0;
    sn->conf_voters = 0;
    if (sn->started) {
        struct craft_sim_event ev;
        craft__sim_event_init(s, &ev, CRAFT_SIM_EV_RESTART, sn->id);
        ev.term = b.hard_state.term;
        ev.leader = b.hard_state.vote;
        ev.index = last;
        craft__sim_emit(s, &ev);
    }
    sn->started = true;
    rc = craft__sim_drain(s, i);
    if (rc == 0) {
        rc = schedule_tick(s, i, true);
    }
    return rc;
}

static int check_options(const struct craft_sim_options *o)
{
    if (o->n_nodes < 1 || o->n_nodes > CRAFT_SIM_MAX_NODES || o->n_voters > o->n_nodes ||
        o->tick_ms == 0 ||
        o->tick_jitter_ms >= o->tick_ms || o->min_delay_ms > o->max_delay_ms ||
        o->disk_min_ms > o->disk_max_ms || !(o->drop_rate >= 0.0 && o->drop_rate <= 1.0) ||
        !(o->dup_rate >= 0.0 && o->dup_rate <= 1.0)) {
        return CRAFT_EINVAL;
    }
    const struct craft_sim_core *c = o->core;
    if (c != NULL && (c->create == NULL || c->destroy == NULL || c->step == NULL ||
                      c->tick == NULL || c->propose == NULL || c->take_update == NULL ||
                      c->persisted == NULL || c->snapshot_taken == NULL || c->status == NULL ||
                      c->term_at == NULL)) {
        return CRAFT_EINVAL;
    }
    return 0;
}

int craft_sim_new(const struct craft_sim_options *o, struct craft_sim **out)
{
    *out = NULL;
    int rc = check_options(o);
    if (rc != 0) {
        return rc;
    }
    struct craft_sim *s = craft_calloc(o->alloc, 1, sizeof(*s));
    if (s == NULL) {
        return CRAFT_ENOMEM;
    }
    s->o = *o;
    if (s->o.n_voters == 0) {
        s->o.n_voters = o->n_nodes;
    }
    s->alloc = o->alloc;
    s->n = o->n_nodes;
    craft__sim_prng_seed(&s->rng, craft__sim_derive(o->seed, 0, 0x5eed));
    craft__sim_queue_init(&s->queue, s->alloc);
    craft_configuration_init(&s->bootstrap);
    s->nodes = craft_calloc(s->alloc, s->n, sizeof(*s->nodes));
    s->group_of = craft_calloc(s->alloc, s->n, sizeof(*s->group_of));
    s->cut = craft_calloc(s->alloc, (size_t)s->n * s->n, sizeof(*s->cut));
    s->links = craft_calloc(s->alloc, (size_t)s->n * s->n, sizeof(*s->links));
    if (o->trace_depth > 0) {
        s->ring = craft_calloc(s->alloc, o->trace_depth, sizeof(*s->ring));
    }
    if (s->nodes == NULL || s->group_of == NULL || s->cut == NULL || s->links == NULL ||
        (o->trace_depth > 0 && s->ring == NULL)) {
        craft_sim_free(s);
        return CRAFT_ENOMEM;
    }
    for (unsigned i = 0; i < s->n; i++) {
        char address[32];
        snprintf(address, sizeof(address), "sim-%u", i + 1);
        s->nodes[i].id = i + 1;
        s->nodes[i].rx_store.alloc = s->alloc;
        s->nodes[i].clock_ms = o->tick_ms;
        rc = 0;
        if (i < s->o.n_voters) {
            rc = craft_configuration_add(&s->bootstrap, s->alloc, i + 1, address, CRAFT_VOTER);
        }
        if (rc == 0) {
            rc = craft_mem_store_new(s->alloc, &s->nodes[i].store);
        }
        if (rc != 0) {
            craft_sim_free(s);
            return rc;
        }
    }
    s->committed_voters = craft__sim_voters_of(&s->bootstrap);
    s->conf_known = s->o.bootstrap;
    for (unsigned i = 0; i < s->n; i++) {
        rc = boot(s, i);
        if (rc != 0) {
            craft_sim_free(s);
            return rc;
        }
    }
    *out = s;
    return 0;
}

static void node_close(struct craft_sim *s, struct craft__sim_node *sn, unsigned i)
{
    craft__sim_core_free(s, i);
    craft__sim_disk_discard(s, i);
    craft__sim_snap_crash(s, i);
    craft__sim_shadow_close(s, &sn->log);
    craft_free(s->alloc, sn->applied);
    sn->applied = NULL;
    craft_free(s->alloc, sn->rx);
    sn->rx = NULL;
    craft_store_close(sn->store);
    sn->store = NULL;
    craft_store_close(sn->saved);
    sn->saved = NULL;
}

void craft_sim_free(struct craft_sim *s)
{
    if (s == NULL) {
        return;
    }
    for (size_t k = 0; k < craft__sim_queue_len(&s->queue); k++) {
        struct craft__sim_item *it = craft__sim_queue_at(&s->queue, k);
        if (it->kind == CRAFT__SIM_DELIVER) {
            craft__sim_packet_free(s, it->ptr);
        }
    }
    craft__sim_queue_close(&s->queue);
    if (s->nodes != NULL) {
        for (unsigned i = 0; i < s->n; i++) {
            node_close(s, &s->nodes[i], i);
        }
    }
    craft__sim_inv_close(s);
    craft__sim_reads_close(s);
    craft__sim_control_close(s);
    craft_configuration_close(&s->bootstrap, s->alloc);
    craft_free(s->alloc, s->nodes);
    craft_free(s->alloc, s->group_of);
    craft_free(s->alloc, s->cut);
    craft_free(s->alloc, s->ring);
    craft_free(s->alloc, s);
}

uint64_t craft_sim_now(const struct craft_sim *s)
{
    return s->now;
}

uint64_t craft_sim_seed(const struct craft_sim *s)
{
    return s->o.seed;
}

unsigned craft_sim_n_nodes(const struct craft_sim *s)
{
    return s->n;
}

static int run_tick(struct craft_sim *s, unsigned i)
{
    s->stats.ticks++;
    int rc = craft__sim_core_tick(s, i);
    if (rc != 0) {
        return craft__sim_fail(s, rc, "n%u: craft_tick returned %s", i + 1, craft_err_name(rc));
    }
    rc = craft__sim_drain(s, i);
    if (rc == 0) {
        rc = schedule_tick(s, i, false);
    }
    return rc;
}

/* Runs the earliest event. */
static int run_one(struct craft_sim *s)
{
    struct craft__sim_item it;
    if (!craft__sim_queue_pop(&s->queue, &it)) {
        return CRAFT_ENOTFOUND;
    }
    s->now = it.at;
    s->stats.events++;
    struct craft__sim_node *sn = &s->nodes[it.node];
    bool current = sn->up && sn->incarnation == it.incarnation;
    int rc = 0;
    switch (it.kind) {
        case CRAFT__SIM_TICK:
            if (current && (uintptr_t)it.ptr == sn->clock_gen) {
                rc = run_tick(s, it.node);
            }
            break;
        case CRAFT__SIM_DELIVER:
            rc = craft__sim_net_deliver(s, it.ptr);
            craft__sim_packet_free(s, it.ptr);
            break;
        case CRAFT__SIM_DISK:
            if (current) {
                rc = craft__sim_disk_complete(s, it.node);
            }
            break;
        default:
            break;
    }
    return rc;
}

int craft_sim_step(struct craft_sim *s)
{
    if (s->stop_rc != 0) {
        return s->stop_rc;
    }
    return run_one(s);
}

int craft_sim_run_for(struct craft_sim *s, uint64_t ms)
{
    int rc = craft_sim_run_until(s, NULL, NULL, ms);
    return rc == CRAFT_ETIMEDOUT ? 0 : rc;
}

int craft_sim_run_until(struct craft_sim *s, craft_sim_pred pred, void *ud, uint64_t max_ms)
{
    if (s->stop_rc != 0) {
        return s->stop_rc;
    }
    uint64_t end = s->now + max_ms;
    if (pred != NULL && pred(s, ud)) {
        return 0;
    }
    for (;;) {
        const struct craft__sim_item *next = craft__sim_queue_peek(&s->queue);
        if (next == NULL || next->at > end) {
            break;
        }
        int rc = run_one(s);
        if (rc != 0) {
            return rc;
        }
        if (pred != NULL && pred(s, ud)) {
            return 0;
        }
    }
    s->now = end;
    return CRAFT_ETIMEDOUT;
}

static struct craft__sim_node *node_of(const struct craft_sim *s, craft_id id)
{
    if (id == 0 || id > s->n) {
        return NULL;
    }
    return &s->nodes[id - 1];
}

int craft_sim_propose(struct craft_sim *s, craft_id id, const void *data, size_t size,
                      craft_index *index, craft_term *term)
{
    if (s->stop_rc != 0) {
        return s->stop_rc;
    }
    if (id == 0) {
        id = craft_sim_leader(s);
    }
    struct craft_sim_event ev;
    craft__sim_event_init(s, &ev, CRAFT_SIM_EV_PROPOSE, id);
    int rc;
    craft_index idx = 0;
    craft_term t = 0;
    struct craft__sim_node *sn = node_of(s, id);
    if (id == 0) {
        rc = CRAFT_ENOTLEADER;
    } else if (sn == NULL) {
        return CRAFT_EINVAL;
    } else if (!sn->up) {
        rc = CRAFT_ESTATE;
    } else {
        rc = craft__sim_core_propose(s, (unsigned)(id - 1), data, size, &idx, &t);
    }
    ev.rc = rc;
    ev.index = idx;
    ev.term = t;
    craft__sim_emit(s, &ev);
    if (index != NULL) {
        *index = idx;
    }
    if (term != NULL) {
        *term = t;
    }
    if (rc != 0) {
        return rc;
    }
    return craft__sim_drain(s, (unsigned)(id - 1));
}

int craft_sim_crash(struct craft_sim *s, craft_id id)
{
    struct craft__sim_node *sn = node_of(s, id);
    if (sn == NULL) {
        return CRAFT_EINVAL;
    }
    if (s->stop_rc != 0) {
        return s->stop_rc;
    }
    if (!sn->up) {
        return CRAFT_ESTATE;
    }
    unsigned i = (unsigned)(id - 1);
    craft__sim_core_free(s, i);
    sn->up = false;
    /* Stale ticks, disk completions and messages addressed to the old process all carry the
     * old incarnation and are ignored. */
    sn->incarnation++;
    int rc = craft__sim_disk_crash(s, i);
    craft__sim_snap_crash(s, i);
    craft__sim_reads_crash(s, i);
    s->stats.crashes++;
    if (rc != 0) {
        return rc;
    }
    struct craft_sim_event ev;
    craft__sim_event_init(s, &ev, CRAFT_SIM_EV_CRASH, id);
    craft__sim_emit(s, &ev);

    /* While down, the node's log is what its disk holds: keep checking log matching on it. */
    struct craft_store *st = sn->store;
    craft_index first, last;
    struct craft_entry *entries = NULL;
    size_t n = 0;
    rc = st->bounds(st->impl, &first, &last);
    if (rc == 0 && last >= first) {
        rc = st->entries(st->impl, first, last, s->alloc, &entries, &n);
    }
    if (rc != 0) {
        return craft__sim_fail(s, rc, "n%" PRIu64 ": reading the store after a crash: %s", id,
                               craft_err_name(rc));
    }
    craft_term base_term = 0;
    if (first > 1) {
        st->term(st->impl, first - 1, &base_term);
    }
    rc = craft__sim_shadow_reset(s, i, first - 1, base_term, entries, n);
    craft_free(s->alloc, entries);
    return rc;
}

int craft_sim_restart(struct craft_sim *s, craft_id id)
{
    struct craft__sim_node *sn = node_of(s, id);
    if (sn == NULL) {
        return CRAFT_EINVAL;
    }
    if (s->stop_rc != 0) {
        return s->stop_rc;
    }
    if (sn->up) {
        return CRAFT_ESTATE;
    }
    sn->incarnation++;
    s->stats.restarts++;
    return boot(s, (unsigned)(id - 1));
}

int craft_sim_partition(struct craft_sim *s, const unsigned *group_of)
{
    char text[CRAFT_SIM_TEXT_MAX];
    size_t pos = 0;
    bool *seen = craft_calloc(s->alloc, s->n, sizeof(*seen));
    if (seen == NULL) {
        return CRAFT_ENOMEM;
    }
    /* Describe the groups as "{1,2} {3,4,5}", in order of first member. */
    text[0] = '\0';
    for (unsigned i = 0; i < s->n; i++) {
        if (seen[i]) {
            continue;
        }
        for (unsigned j = i; j < s->n; j++) {
            if (group_of[j] != group_of[i]) {
                continue;
            }
            seen[j] = true;
            if (pos < sizeof(text)) {
                int k = snprintf(text + pos, sizeof(text) - pos, "%s%u", j == i ? "{" : ",",
                                 j + 1);
                pos += k > 0 ? (size_t)k : 0;
            }
        }
        if (pos < sizeof(text)) {
            int k = snprintf(text + pos, sizeof(text) - pos, "} ");
            pos += k > 0 ? (size_t)k : 0;
        }
    }
    craft_free(s->alloc, seen);
    memcpy(s->group_of, group_of, s->n * sizeof(*group_of));
    craft__sim_emit_text(s, CRAFT_SIM_EV_PARTITION, 0, "%s", text);
    return 0;
}

int craft_sim_cut(struct craft_sim *s, craft_id from, craft_id to)
{
    if (node_of(s, from) == NULL || node_of(s, to) == NULL) {
        return CRAFT_EINVAL;
    }
    s->cut[(from - 1) * s->n + (to - 1)] = true;
    struct craft_sim_event ev;
    craft__sim_event_init(s, &ev, CRAFT_SIM_EV_CUT, from);
    ev.peer = to;
    craft__sim_emit(s, &ev);
    return 0;
}

int craft_sim_heal(struct craft_sim *s)
{
    memset(s->group_of, 0, s->n * sizeof(*s->group_of));
    memset(s->cut, 0, (size_t)s->n * s->n * sizeof(*s->cut));
    struct craft_sim_event ev;
    craft__sim_event_init(s, &ev, CRAFT_SIM_EV_HEAL, 0);
    craft__sim_emit(s, &ev);
    return 0;
}

int craft_sim_set_network(struct craft_sim *s, double drop_rate, double dup_rate,
                          unsigned min_delay_ms, unsigned max_delay_ms)
{
    if (!(drop_rate >= 0.0 && drop_rate <= 1.0) || !(dup_rate >= 0.0 && dup_rate <= 1.0) ||
        min_delay_ms > max_delay_ms) {
        return CRAFT_EINVAL;
    }
    s->o.drop_rate = drop_rate;
    s->o.dup_rate = dup_rate;
    s->o.min_delay_ms = min_delay_ms;
    s->o.max_delay_ms = max_delay_ms;
    craft__sim_emit_text(s, CRAFT_SIM_EV_NETWORK, 0, "drop=%.3f dup=%.3f delay=%u..%ums",
                         drop_rate, dup_rate, min_delay_ms, max_delay_ms);
    return 0;
}

int craft_sim_set_disk(struct craft_sim *s, unsigned min_ms, unsigned max_ms)
{
    if (min_ms > max_ms) {
        return CRAFT_EINVAL;
    }
    s->o.disk_min_ms = min_ms;
    s->o.disk_max_ms = max_ms;
    craft__sim_emit_text(s, CRAFT_SIM_EV_NETWORK, 0, "disk=%u..%ums", min_ms, max_ms);
    return 0;
}

craft_id craft_sim_leader(const struct craft_sim *s)
{
    craft_id best = 0;
    craft_term best_term = 0;
    bool tie = false;
    for (unsigned i = 0; i < s->n; i++) {
        const struct craft__sim_node *sn = &s->nodes[i];
        if (!sn->up) {
            continue;
        }
        struct craft_sim_core_status st;
        craft__sim_core_status(s, i, &st);
        if (st.role != CRAFT_LEADER) {
            continue;
        }
        craft_term t = st.term;
        if (best == 0 || t > best_term) {
            best = sn->id;
            best_term = t;
            tie = false;
        } else if (t == best_term) {
            tie = true;
        }
    }
    return tie ? 0 : best;
}

bool craft_sim_is_up(const struct craft_sim *s, craft_id id)
{
    const struct craft__sim_node *sn = node_of(s, id);
    return sn != NULL && sn->up;
}

const struct craft_node *craft_sim_node(const struct craft_sim *s, craft_id id)
{
    const struct craft__sim_node *sn = node_of(s, id);
    return sn != NULL && sn->up ? sn->core : NULL;
}

const struct craft_store *craft_sim_store(const struct craft_sim *s, craft_id id)
{
    const struct craft__sim_node *sn = node_of(s, id);
    return sn != NULL ? sn->store : NULL;
}

int craft_sim_applied(const struct craft_sim *s, craft_id id,
                      const struct craft_sim_applied **out, size_t *n)
{
    const struct craft__sim_node *sn = node_of(s, id);
    if (sn == NULL) {
        return CRAFT_EINVAL;
    }
    *out = sn->applied;
    *n = sn->n_applied;
    return 0;
}

craft_index craft_sim_applied_index(const struct craft_sim *s, craft_id id)
{
    const struct craft__sim_node *sn = node_of(s, id);
    return sn != NULL ? sn->applied_base + sn->n_applied : 0;
}

uint64_t craft_sim_hash(const void *data, size_t size)
{
    return craft__sim_hash_bytes(data, size);
}

craft_index craft_sim_committed(const struct craft_sim *s)
{
    return s->n_committed;
}

void craft_sim_stats(const struct craft_sim *s, struct craft_sim_stats *out)
{
    *out = s->stats;
}

int craft_sim_check(struct craft_sim *s)
{
    if (s->stop_rc != 0) {
        return s->stop_rc;
    }
    return craft__sim_inv_check_all(s);
}

const char *craft_sim_error(const struct craft_sim *s)
{
    return s->stop_rc != 0 ? s->error : NULL;
}
