/*
 * The randomized soak (see soak.h). Everything, including the cluster's shape, comes from the
 * seed through a PRNG stream of its own, so `craft-soak --seed S` replays a run exactly.
 */
#include "soak.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "prng.h"

#define FINAL_BOUND_MS 30000 /* virtual time allowed for recovery after healing */

struct soak {
    const struct craft__sim_soak_options *o;
    struct craft__sim_soak_result *r;
    struct craft__sim_prng p;
    struct craft_sim *sim;
    unsigned n;      /* servers, spares included */
    unsigned voters; /* the bootstrap configuration's voters */
    uint64_t counter;
    uint64_t read_id;
    /* What this run mixes in besides faults and proposals. */
    bool membership, transfers, reads, disk_loss;
    unsigned disk_profile;
};

static void say(struct soak *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct soak *k, const char *fmt, ...)
{
    if (k->o->line == NULL) {
        return;
    }
    char buf[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    k->o->line(k->o->ud, buf);
}

static void trace_line(void *ud, const char *line)
{
    struct soak *k = ud;
    k->o->line(k->o->ud, line);
}

static unsigned pick_size(struct craft__sim_prng *p)
{
    uint64_t r = craft__sim_prng_range(p, 0, 19);
    if (r == 0) {
        return 1;
    }
    if (r == 1) {
        return 2;
    }
    if (r == 2) {
        return 4;
    }
    return r < 11 ? 3 : 5;
}

/* The disk latency of a profile: 0 fast, 1 ordinary, 2 slower than the network. */
static void disk_range(struct soak *k, unsigned profile, unsigned *lo, unsigned *hi)
{
    struct craft__sim_prng *p = &k->p;
    switch (profile) {
    case 0:
        *lo = 0;
        *hi = (unsigned)craft__sim_prng_range(p, 0, 3);
        break;
    case 1:
        *lo = 0;
        *hi = (unsigned)craft__sim_prng_range(p, 2, 15);
        break;
    default:
        *lo = (unsigned)craft__sim_prng_range(p, 5, 25);
        *hi = *lo + (unsigned)craft__sim_prng_range(p, 20, 120);
        break;
    }
}

static void set_disk_profile(struct soak *k, struct craft_sim_options *so)
{
    disk_range(k, k->disk_profile, &so->disk_min_ms, &so->disk_max_ms);
}

static void configure(struct soak *k, struct craft_sim_options *so)
{
    struct craft__sim_prng *p = &k->p;
    craft_sim_options_init(so);
    so->seed = k->o->seed;
    k->voters = pick_size(p);
    /* Spare servers, started empty in join mode, for the membership changes to add. */
    unsigned spares = craft__sim_prng_chance(p, 0.6) ? (unsigned)craft__sim_prng_range(p, 1, 2)
                                                     : 0;
    so->n_nodes = k->n = k->voters + spares;
    so->n_voters = k->voters;
    k->membership = craft__sim_prng_chance(p, 0.75);
    k->transfers = craft__sim_prng_chance(p, 0.6);
    k->reads = craft__sim_prng_chance(p, 0.7);
    k->disk_loss = craft__sim_prng_chance(p, 0.6);
    so->node.pre_vote = craft__sim_prng_chance(p, 0.7);
    so->node.check_quorum = craft__sim_prng_chance(p, 0.7);
    so->node.unsafe = k->o->unsafe;
    so->node.election_ticks = 10;
    so->node.heartbeat_ticks = (unsigned)craft__sim_prng_range(p, 1, 3);
    static const unsigned batch[] = {1, 4, 64};
    so->node.max_batch_entries = batch[craft__sim_prng_range(p, 0, 2)];
    so->node.max_inflight = batch[craft__sim_prng_range(p, 0, 2)];
    /* Snapshots: often small and frequent, in small chunks, so that followers that fall
     * behind catch up by InstallSnapshot. */
    static const uint64_t every[] = {0, 8, 32};
    static const uint64_t trailing[] = {0, 2, 16};
    static const size_t chunk[] = {16, 64, 4096};
    so->node.snapshot_entries = every[craft__sim_prng_range(p, 0, 2)];
    so->node.snapshot_trailing = trailing[craft__sim_prng_range(p, 0, 2)];
    so->node.snapshot_chunk_bytes = chunk[craft__sim_prng_range(p, 0, 2)];
    /* Promotion: a learner may be promoted when within 4 or 64 entries of the leader. */
    so->node.promote_distance = craft__sim_prng_chance(p, 0.5) ? 4 : 64;
    so->node.promote_rounds = (unsigned)craft__sim_prng_range(p, 1, 3);
    so->tick_ms = 10;
    so->tick_jitter_ms = (unsigned)craft__sim_prng_range(p, 0, 3);
    so->min_delay_ms = (unsigned)craft__sim_prng_range(p, 0, 5);
    so->max_delay_ms = so->min_delay_ms + (unsigned)craft__sim_prng_range(p, 0, 40);
    so->drop_rate = craft__sim_prng_unit(p) * 0.2;
    so->dup_rate = craft__sim_prng_unit(p) * 0.1;
    /* Disks, drawn independently of the network: fast, ordinary, or slower than a round trip
     * (then a vote granted by a peer usually comes back before the candidate's own write
     * lands, and an acknowledgement before the leader's own append). */
    k->disk_profile = (unsigned)craft__sim_prng_range(p, 0, 2);
    set_disk_profile(k, so);
    so->trace_depth = k->o->trace_depth ? k->o->trace_depth : 60;
    if (k->o->verbose && k->o->line != NULL) {
        so->trace = trace_line;
        so->ud = k;
    }
}

static craft_id random_node(struct soak *k, bool up)
{
    craft_id ids[CRAFT_SIM_MAX_NODES];
    unsigned m = 0;
    for (craft_id id = 1; id <= k->n; id++) {
        if (craft_sim_is_up(k->sim, id) == up) {
            ids[m++] = id;
        }
    }
    return m ? ids[craft__sim_prng_range(&k->p, 0, m - 1)] : 0;
}

/* A command with a recognisable, seed-specific payload of random length. */
static int propose(struct soak *k, craft_id at, craft_index *index, craft_term *term)
{
    char data[96];
    int len = snprintf(data, sizeof(data), "s%" PRIu64 "-c%" PRIu64 "-", k->o->seed,
                       k->counter++);
    size_t size = (size_t)len + craft__sim_prng_range(&k->p, 0, 48);
    memset(data + len, 'x', size - (size_t)len);
    int rc = craft_sim_propose(k->sim, at, data, size, index, term);
    if (rc == 0) {
        k->r->proposals++;
    }
    return rc;
}

/* Errors a proposal may legitimately meet in a faulty cluster. */
static bool benign(int rc)
{
    return rc == 0 || rc == CRAFT_ENOTLEADER || rc == CRAFT_EBUSY || rc == CRAFT_ESTATE ||
           rc == CRAFT_EDROPPED;
}

/* The servers of the leader's configuration: members (voters and learners), voters,
 * learners. False when there is no leader. */
static bool leader_conf(struct soak *k, craft_id *leader, uint64_t *members, uint64_t *voters,
                        uint64_t *learners)
{
    *leader = craft_sim_leader(k->sim);
    const struct craft_node *n = craft_sim_node(k->sim, *leader);
    if (n == NULL) {
        return false;
    }
    const struct craft_configuration *c = craft_node_configuration(n, NULL);
    *members = *voters = *learners = 0;
    for (unsigned j = 0; j < c->n; j++) {
        uint64_t b = 1ull << (c->servers[j].id - 1);
        *members |= b;
        if (c->servers[j].role == CRAFT_VOTER) {
            *voters |= b;
        } else {
            *learners |= b;
        }
    }
    return true;
}

/* A random server of the simulation in mask (0 if none). */
static craft_id random_in(struct soak *k, uint64_t mask)
{
    craft_id ids[CRAFT_SIM_MAX_NODES];
    unsigned m = 0;
    for (craft_id id = 1; id <= k->n; id++) {
        if (mask & (1ull << (id - 1))) {
            ids[m++] = id;
        }
    }
    return m ? ids[craft__sim_prng_range(&k->p, 0, m - 1)] : 0;
}

/* One membership change at the leader: add a server outside the configuration (a spare, or
 * one removed earlier), promote a learner, or remove a member (a follower, a learner, or the
 * leader itself). Refusals (EBUSY while a change is in flight or before the leader committed
 * an entry of its term, ESTATE for a learner not caught up, ...) are normal outcomes. */
static int membership_step(struct soak *k)
{
    struct craft__sim_prng *p = &k->p;
    craft_id leader;
    uint64_t members, voters, learners;
    if (!leader_conf(k, &leader, &members, &voters, &learners)) {
        return 0;
    }
    uint64_t all = k->n == 64 ? ~0ull : (1ull << k->n) - 1;
    uint64_t r = craft__sim_prng_range(p, 0, 99);
    craft_id id;
    int rc = CRAFT_ENOTFOUND;
    if (r < 45 && (id = random_in(k, all & ~members)) != 0) {
        rc = craft_sim_add_server(k->sim, id, craft__sim_prng_chance(p, 0.5), NULL);
    } else if (r < 65 && (id = random_in(k, learners)) != 0) {
        rc = craft_sim_promote(k->sim, id, NULL);
    } else if (r >= 65) {
        /* Voters down to the last one; the leader itself a third of the time (thesis
         * 4.2.2), and then, often, the removed leader crashes before its removal commits,
         * or a little after. */
        uint64_t removable = learners | (__builtin_popcountll(voters) > 1 ? voters : 0);
        bool self = craft__sim_prng_chance(p, 0.33) && (removable & (1ull << (leader - 1)));
        id = self ? leader : random_in(k, removable);
        /* A voter is demoted to a learner instead, a quarter of the time: the same
         * one-server change of the voting set (thesis 4.2), the leader included. */
        bool demote = id != 0 && (voters & (1ull << (id - 1))) && craft__sim_prng_chance(p, 0.25);
        if (demote) {
            rc = craft_sim_demote(k->sim, id, NULL);
        } else if (id != 0) {
            rc = craft_sim_remove_server(k->sim, id, NULL);
        }
        if (rc == 0 && self && craft__sim_prng_chance(p, 0.4)) {
            rc = craft_sim_run_for(k->sim, craft__sim_prng_range(p, 0, 40));
            if (rc == 0 && craft_sim_is_up(k->sim, leader)) {
                rc = craft_sim_crash(k->sim, leader);
            }
            if (rc == 0) {
                k->r->changes++;
            }
            return rc;
        }
    }
    if (rc == 0) {
        k->r->changes++;
    }
    return rc == 0 || rc == CRAFT_EBUSY || rc == CRAFT_ENOTLEADER || rc == CRAFT_EEXISTS ||
                   rc == CRAFT_ENOTFOUND || rc == CRAFT_ESTATE
               ? 0
               : rc;
}

static int transfer_step(struct soak *k)
{
    craft_id leader;
    uint64_t members, voters, learners;
    if (!leader_conf(k, &leader, &members, &voters, &learners)) {
        return 0;
    }
    craft_id target = 0;
    if (craft__sim_prng_chance(&k->p, 0.7)) {
        target = random_in(k, voters & ~(1ull << (leader - 1)));
        if (target == 0) {
            return 0;
        }
    }
    int rc = craft_sim_transfer(k->sim, target);
    if (rc == 0) {
        k->r->transfers++;
    }
    return rc == 0 || rc == CRAFT_EBUSY || rc == CRAFT_ENOTLEADER || rc == CRAFT_ENOTFOUND ? 0
                                                                                           : rc;
}

static int read_step(struct soak *k)
{
    unsigned count = (unsigned)craft__sim_prng_range(&k->p, 1, 3);
    for (unsigned c = 0; c < count; c++) {
        /* Mostly at the leader, sometimes at a random server (which refuses unless leader). */
        craft_id at = craft__sim_prng_chance(&k->p, 0.8) ? craft_sim_leader(k->sim)
                                                         : random_node(k, true);
        if (at == 0) {
            return 0;
        }
        int rc = craft_sim_read(k->sim, at, ++k->read_id);
        if (rc != 0 && rc != CRAFT_ENOTLEADER && rc != CRAFT_ESTATE) {
            return rc;
        }
    }
    return 0;
}

/* A down server's disk: a backup taken, or a loss that stays within what Raft tolerates
 * (craft_sim_disk_loss_safe): a cut tail, an older copy put back, a wipe of a server that is
 * no longer a member. The leader must notice and repair the follower (liveness is checked in
 * the final phase). */
static int disk_loss_on(struct soak *k, craft_id id)
{
    struct craft__sim_prng *p = &k->p;
    uint64_t r = craft__sim_prng_range(p, 0, 5);
    if (r == 0) {
        return craft_sim_disk_save(k->sim, id);
    }
    int kind = r <= 2 ? CRAFT_SIM_DISK_CUT_TAIL : r <= 4 ? CRAFT_SIM_DISK_ROLLBACK
                                                         : CRAFT_SIM_DISK_WIPE;
    uint64_t n = craft__sim_prng_chance(p, 0.7) ? craft__sim_prng_range(p, 1, 6)
                                                : craft__sim_prng_range(p, 7, 60);
    if (!craft_sim_disk_loss_safe(k->sim, id, kind, n)) {
        return 0;
    }
    k->r->disk_losses++;
    return craft_sim_disk_lose(k->sim, id, kind, n);
}

static int disk_loss_step(struct soak *k)
{
    craft_id id = random_node(k, false);
    return id != 0 ? disk_loss_on(k, id) : 0;
}

static int fault_step(struct soak *k)
{
    struct craft__sim_prng *p = &k->p;
    struct craft_sim *sim = k->sim;
    uint64_t a = craft__sim_prng_range(p, 0, 139);
    int rc = 0;
    if (a < 40) {
        unsigned count = (unsigned)craft__sim_prng_range(p, 1, 5);
        /* Mostly at the leader, sometimes at a random node (which refuses unless leader). */
        craft_id at = craft__sim_prng_chance(p, 0.8) ? 0 : random_node(k, true);
        for (unsigned c = 0; c < count && rc == 0; c++) {
            rc = propose(k, at, NULL, NULL);
            rc = benign(rc) ? 0 : rc;
        }
    } else if (a < 50) {
        craft_id id = random_node(k, true);
        if (id != 0) {
            rc = craft_sim_crash(sim, id);
            /* Often the disk of a server that just went down is the one that suffers. */
            if (rc == 0 && k->disk_loss && craft__sim_prng_chance(p, 0.4)) {
                rc = disk_loss_on(k, id);
            }
        }
    } else if (a < 60) {
        craft_id id = random_node(k, false);
        if (id != 0) {
            rc = craft_sim_restart(sim, id);
        }
    } else if (a < 68) {
        unsigned groups[CRAFT_SIM_MAX_NODES];
        for (unsigned i = 0; i < k->n; i++) {
            groups[i] = (unsigned)craft__sim_prng_range(p, 0, 2);
        }
        rc = craft_sim_partition(sim, groups);
    } else if (a < 75) {
        if (k->n > 1) {
            craft_id from = craft__sim_prng_range(p, 1, k->n);
            craft_id to = craft__sim_prng_range(p, 1, k->n - 1);
            to += to >= from;
            rc = craft_sim_cut(sim, from, to);
        }
    } else if (a < 83) {
        rc = craft_sim_heal(sim);
    } else if (a < 88) {
        unsigned lo = (unsigned)craft__sim_prng_range(p, 0, 5);
        rc = craft_sim_set_network(sim, craft__sim_prng_unit(p) * 0.3,
                                   craft__sim_prng_unit(p) * 0.1, lo,
                                   lo + (unsigned)craft__sim_prng_range(p, 0, 60));
    } else if (a < 90) {
        unsigned lo, hi;
        disk_range(k, (unsigned)craft__sim_prng_range(p, 0, 2), &lo, &hi);
        rc = craft_sim_set_disk(sim, lo, hi);
    } else if (a < 100) {
        /* nothing: just run */
    } else if (a < 118) {
        if (k->membership) {
            rc = membership_step(k);
        }
    } else if (a < 121) {
        if (k->transfers) {
            rc = transfer_step(k);
        }
    } else if (a < 130) {
        if (k->reads) {
            rc = read_step(k);
        }
    } else if (k->disk_loss) {
        rc = disk_loss_step(k);
    }
    if (rc == CRAFT_ESTATE) {
        rc = 0;
    }
    if (rc == 0) {
        rc = craft_sim_run_for(sim, craft__sim_prng_range(p, 5, 60));
    }
    return rc;
}

struct applied_probe {
    struct soak *k;
    craft_index index;
    craft_term term;
    bool lost; /* some server applied another entry at index: propose again */
};

/* The final proposal is applied on every server of the leader's configuration (voters and
 * learners; servers removed for good need not follow). */
static bool applied_everywhere(struct craft_sim *sim, void *ud)
{
    struct applied_probe *pr = ud;
    craft_id leader;
    uint64_t members, voters, learners;
    if (!leader_conf(pr->k, &leader, &members, &voters, &learners)) {
        return false;
    }
    /* A leader of a later term without the entry means it can never commit. */
    const struct craft_node *ln = craft_sim_node(sim, leader);
    if (craft_node_term(ln) > pr->term && craft_node_term_at(ln, pr->index) != pr->term) {
        pr->lost = true;
        return true;
    }
    for (craft_id id = 1; id <= pr->k->n; id++) {
        if (!(members & (1ull << (id - 1)))) {
            continue;
        }
        const struct craft_sim_applied *a;
        size_t n;
        craft_sim_applied(sim, id, &a, &n);
        if (craft_sim_applied_index(sim, id) < pr->index) {
            return false;
        }
        if (n == 0 || pr->index < a[0].index) {
            continue; /* covered by the snapshot the state machine was restored from */
        }
        const struct craft_sim_applied *e = &a[pr->index - a[0].index];
        if (e->term != pr->term) {
            pr->lost = true;
            return true;
        }
    }
    return true;
}

static bool read_done(struct craft_sim *sim, void *ud)
{
    struct craft_sim_read r;
    return craft_sim_read_result(sim, *(const uint64_t *)ud, &r) == 0 &&
           (r.state == CRAFT_SIM_READ_SERVED || r.state == CRAFT_SIM_READ_FAILED);
}

static bool has_leader(struct craft_sim *sim, void *ud)
{
    (void)ud;
    return craft_sim_leader(sim) != 0;
}

/* For a liveness failure: where every node stands, and the leader's view of its followers. */
static void describe_cluster(struct soak *k)
{
    static const char *const modes[] = {"?", "probe", "replicate", "snapshot"};
    for (craft_id id = 1; id <= k->n; id++) {
        const struct craft_node *n = craft_sim_node(k->sim, id);
        if (n == NULL) {
            continue;
        }
        craft_index ci = 0;
        const struct craft_configuration *c = craft_node_configuration(n, &ci);
        char conf[200];
        size_t pos = 0;
        conf[0] = '\0';
        for (unsigned j = 0; j < c->n && pos < sizeof(conf); j++) {
            int w = snprintf(conf + pos, sizeof(conf) - pos, "%s%" PRIu64 "%s", j ? "," : "",
                             c->servers[j].id, c->servers[j].role == CRAFT_VOTER ? "" : "L");
            pos += w > 0 ? (size_t)w : 0;
        }
        say(k,
            "n%" PRIu64 ": %s term=%" PRIu64 " leader=n%" PRIu64 " last=%" PRIu64
            " commit=%" PRIu64 " applied=%" PRIu64 " configuration@%" PRIu64 "={%s}",
            id, craft_role_name(craft_node_role(n)), craft_node_term(n), craft_node_leader(n),
            craft_node_last_index(n), craft_node_commit(n), craft_node_applied(n), ci, conf);
        struct craft_progress_info pi[CRAFT_SIM_MAX_NODES];
        unsigned m = craft_node_progress(n, pi, CRAFT_SIM_MAX_NODES);
        for (unsigned j = 0; j < m && j < CRAFT_SIM_MAX_NODES; j++) {
            say(k,
                "    progress n%" PRIu64 ": mode=%s match=%" PRIu64 " next=%" PRIu64
                " inflight=%u recent_active=%d",
                pi[j].id, modes[pi[j].mode <= 3 ? pi[j].mode : 0], pi[j].match, pi[j].next,
                pi[j].inflight, pi[j].recent_active);
        }
    }
}

/* After healing: a leader must emerge and a proposal must be applied on every node. */
static int final_phase(struct soak *k)
{
    struct craft_sim *sim = k->sim;
    int rc = craft_sim_heal(sim);
    for (craft_id id = 1; rc == 0 && id <= k->n; id++) {
        if (!craft_sim_is_up(sim, id)) {
            rc = craft_sim_restart(sim, id);
        }
    }
    if (rc == 0) {
        rc = craft_sim_set_network(sim, 0.0, 0.0, 1, 10);
    }
    if (rc == 0) {
        unsigned lo, hi;
        disk_range(k, k->disk_profile, &lo, &hi);
        rc = craft_sim_set_disk(sim, lo, hi);
    }
    if (rc != 0) {
        return rc;
    }
    craft_sim_note(sim, "final phase: healed and restarted; a leader must commit everywhere");
    uint64_t deadline = craft_sim_now(sim) + FINAL_BOUND_MS;
    bool applied = false;
    const char *what = "no leader emerged";
    while (craft_sim_now(sim) < deadline) {
        rc = craft_sim_run_until(sim, has_leader, NULL, deadline - craft_sim_now(sim));
        if (rc != 0) {
            break;
        }
        if (applied) {
            /* Then a read at the leader must be served. */
            what = "the final read was not served";
            uint64_t id = ++k->read_id;
            rc = craft_sim_read(sim, craft_sim_leader(sim), id);
            if (rc == 0) {
                rc = craft_sim_run_until(sim, read_done, &id, deadline - craft_sim_now(sim));
            }
            struct craft_sim_read r;
            if (rc == 0 && craft_sim_read_result(sim, id, &r) == 0 &&
                r.state == CRAFT_SIM_READ_SERVED) {
                return 0;
            }
            if (rc == CRAFT_ENOTLEADER || rc == 0) {
                rc = craft_sim_run_for(sim, 10); /* deposed meanwhile: ask the next leader */
            }
            if (rc != 0) {
                break;
            }
            continue;
        }
        what = "the final proposal was not applied on every server of the configuration";
        struct applied_probe pr = {.k = k};
        rc = propose(k, 0, &pr.index, &pr.term);
        if (rc == CRAFT_ENOTLEADER || rc == CRAFT_EBUSY) {
            rc = craft_sim_run_for(sim, 10);
            if (rc != 0) {
                return rc;
            }
            continue;
        }
        if (rc != 0) {
            return rc;
        }
        /* Bounded by the remaining time: a re-election can lose the entry, then try again. */
        rc = craft_sim_run_until(sim, applied_everywhere, &pr, deadline - craft_sim_now(sim));
        if (rc == 0 && !pr.lost) {
            applied = true;
            continue;
        }
        if (rc != 0) {
            break;
        }
    }
    if (rc == CRAFT_ETIMEDOUT || rc == 0) {
        char msg[200];
        craft_id leader = craft_sim_leader(sim);
        snprintf(msg, sizeof(msg),
                 "liveness: %s within %ums of virtual time after healing (leader n%" PRIu64 ")",
                 leader ? what : "no leader emerged", FINAL_BOUND_MS, leader);
        snprintf(k->r->error, sizeof(k->r->error), "%s", msg);
        craft_sim_note(sim, msg);
        return CRAFT_ETIMEDOUT;
    }
    return rc;
}

static void dump_line(void *ud, const char *line)
{
    struct soak *k = ud;
    say(k, "  %s", line);
}

int craft__sim_soak_run(const struct craft__sim_soak_options *o,
                        struct craft__sim_soak_result *r)
{
    memset(r, 0, sizeof(*r));
    struct soak k = {.o = o, .r = r};
    craft__sim_prng_seed(&k.p, craft__sim_derive(o->seed, 0x50a4, 1));
    struct craft_sim_options so;
    configure(&k, &so);
    r->n_nodes = k.n;
    int rc = craft_sim_new(&so, &k.sim);
    if (rc != 0) {
        r->rc = rc;
        snprintf(r->error, sizeof(r->error), "craft_sim_new: %s", craft_err_name(rc));
        say(&k, "seed %" PRIu64 ": %s", o->seed, r->error);
        return rc;
    }
    if (o->verbose) {
        say(&k,
            "seed %" PRIu64 ": %u nodes (%u voters), membership=%d transfers=%d reads=%d "
            "disk_loss=%d "
            "promote_distance=%" PRIu64 " pre_vote=%d check_quorum=%d heartbeat=%u batch=%u "
            "inflight=%u snapshot_entries=%" PRIu64 " trailing=%" PRIu64 " chunk=%zu "
            "drop=%.3f dup=%.3f delay=%u..%ums disk<=%ums",
            o->seed, k.n, k.voters, k.membership, k.transfers, k.reads, k.disk_loss,
            so.node.promote_distance, so.node.pre_vote, so.node.check_quorum, so.node.heartbeat_ticks,
            so.node.max_batch_entries, so.node.max_inflight, so.node.snapshot_entries,
            so.node.snapshot_trailing, so.node.snapshot_chunk_bytes, so.drop_rate, so.dup_rate,
            so.min_delay_ms, so.max_delay_ms, so.disk_max_ms);
        say(&k, "disk %u..%ums", so.disk_min_ms, so.disk_max_ms);
    }
    uint64_t fault_ms = craft__sim_prng_range(&k.p, 2000, 5000);
    /* Let the first election happen on a quiet network most of the time. */
    rc = craft_sim_run_for(k.sim, craft__sim_prng_range(&k.p, 0, 500));
    while (rc == 0 && craft_sim_now(k.sim) < fault_ms) {
        rc = fault_step(&k);
    }
    if (rc == 0) {
        rc = final_phase(&k);
    }
    if (rc == 0) {
        rc = craft_sim_check(k.sim);
    }
    if (rc != 0 && rc != CRAFT_ETIMEDOUT) {
        const char *err = craft_sim_error(k.sim);
        snprintf(r->error, sizeof(r->error), "%s", err ? err : craft_err_name(rc));
    }
    struct craft_sim_stats st;
    craft_sim_stats(k.sim, &st);
    r->rc = rc;
    r->virtual_ms = craft_sim_now(k.sim);
    r->events = st.events;
    r->crashes = st.crashes;
    for (int t = 0; t <= CRAFT_MSG_TYPE_MAX; t++) {
        r->messages += st.sent[t];
    }
    r->committed = craft_sim_committed(k.sim);
    r->changes = st.changes;
    r->transfers = st.transfers;
    r->reads = st.reads_served;
    r->regressions = st.regressions;
    r->torn_writes = st.torn_writes;
    if (rc != 0) {
        say(&k, "FAILED seed %" PRIu64 " (%u nodes, t=%" PRIu64 "ms): %s", o->seed, k.n,
            r->virtual_ms, r->error);
        if (rc == CRAFT_ETIMEDOUT) {
            describe_cluster(&k);
        }
        say(&k, "last events:");
        craft_sim_dump_trace(k.sim, dump_line, &k);
        const struct craft_unsafe *u = &o->unsafe;
        say(&k, "replay: craft-soak --seed %" PRIu64 " --verbose%s%s%s", o->seed,
            u->no_commit_rule ? " --unsafe no-commit-rule" : "",
            u->no_election_restriction ? " --unsafe no-election-restriction" : "",
            u->no_persist_before_vote ? " --unsafe no-persist-before-vote" : "");
    }
    craft_sim_free(k.sim);
    return rc;
}
