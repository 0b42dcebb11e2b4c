/*
 * craft-demo: a simulated five-node Raft cluster, narrated for a person.
 *
 * It starts a new cluster, shows the first election (who timed out, who voted, who won in which
 * term), replicates and commits a few commands, crashes the leader, shows the re-election and
 * more writes, then restarts the old leader and shows it catching up. Everything runs in the
 * deterministic simulator (virtual time, seeded randomness), so the story is the same on every
 * run for a given seed; every Raft safety invariant is checked after each event meanwhile.
 *
 * Usage: craft-demo [--seed S] [--trace]   (--trace prints every simulator event as well)
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "craft/sim.h"

#define N_NODES 5

enum phase { QUIET, ELECTION, REPLICATION };

struct demo {
    struct craft_sim *sim;
    enum phase phase;
    int narrated; /* lines narrated in this phase, to keep a split vote from flooding */
    bool trace;
};

static void say_at(uint64_t t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say_at(uint64_t t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("  %6" PRIu64 " ms  ", t);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

/* The narrator: turns simulator events into sentences, depending on the phase. */
static void on_event(void *ud, const struct craft_sim_event *ev)
{
    struct demo *d = ud;
    if (d->trace) {
        char line[256];
        craft_sim_event_format(ev, line, sizeof(line));
        printf("          | %s\n", line);
    }
    if (d->phase == QUIET || d->narrated >= 24) {
        return;
    }
    switch (ev->kind) {
        case CRAFT_SIM_EV_ROLE:
            if (d->phase != ELECTION) {
                return;
            }
            if (ev->role == CRAFT_PRE_CANDIDATE) {
                say_at(ev->time, "n%" PRIu64 " heard no leader for its election timeout: it "
                       "asks the others whether they would vote for it (pre-vote)", ev->node);
            } else if (ev->role == CRAFT_CANDIDATE) {
                say_at(ev->time, "n%" PRIu64 " becomes a candidate for term %" PRIu64
                       ", votes for itself and asks for votes", ev->node, ev->term);
            } else if (ev->role == CRAFT_LEADER) {
                say_at(ev->time, "n%" PRIu64 " has a majority: it is the LEADER of term %"
                       PRIu64, ev->node, ev->term);
            } else {
                return;
            }
            break;
        case CRAFT_SIM_EV_DELIVER:
            if (d->phase != ELECTION || ev->msg.type != CRAFT_MSG_REQUEST_VOTE_RESULT) {
                return;
            }
            say_at(ev->time, "  n%" PRIu64 " %s n%" PRIu64 " %s (term %" PRIu64 ")", ev->node,
                   ev->msg.u.request_vote_result.granted ? "grants" : "refuses", ev->peer,
                   ev->msg.u.request_vote_result.pre_vote ? "a pre-vote" : "its vote",
                   ev->msg.term);
            break;
        case CRAFT_SIM_EV_PROPOSE:
            if (ev->rc == 0) {
                say_at(ev->time, "the leader n%" PRIu64 " appends the command at index %" PRIu64
                       " (term %" PRIu64 ") and replicates it", ev->node, ev->index, ev->term);
            }
            break;
        case CRAFT_SIM_EV_COMMIT:
            if (d->phase != REPLICATION || craft_sim_leader(d->sim) != ev->node) {
                return;
            }
            say_at(ev->time, "n%" PRIu64 " (leader) commits up to index %" PRIu64
                   ": a majority has stored it", ev->node, ev->index);
            break;
        case CRAFT_SIM_EV_RESTART:
            say_at(ev->time, "n%" PRIu64 " restarts from its disk: term %" PRIu64
                   ", voted for n%" PRIu64 ", log up to index %" PRIu64, ev->node, ev->term,
                   ev->leader, ev->index);
            break;
        default:
            return;
    }
    d->narrated++;
}

static const char *role_word(const struct craft_node *n)
{
    if (n == NULL) {
        return "DOWN";
    }
    switch (craft_node_role(n)) {
        case CRAFT_LEADER:
            return "leader";
        case CRAFT_CANDIDATE:
            return "candidate";
        case CRAFT_PRE_CANDIDATE:
            return "pre-cand.";
        default:
            return "follower";
    }
}

/* One line per node: role, term, commit index and the log itself (read from the node, or from
 * its disk while it is down). */
static void show_cluster(struct demo *d, const char *title)
{
    printf("\n  %s\n", title);
    printf("    node  role       term  commit  log (index/term: entry)\n");
    for (craft_id id = 1; id <= N_NODES; id++) {
        const struct craft_node *n = craft_sim_node(d->sim, id);
        char log[200];
        size_t pos = 0;
        log[0] = '\0';
        const struct craft_store *st = craft_sim_store(d->sim, id);
        craft_index first, last;
        st->bounds(st->impl, &first, &last);
        if (n != NULL) {
            first = craft_node_first_index(n);
            last = craft_node_last_index(n);
        }
        for (craft_index i = first; i <= last && pos < sizeof(log) - 40; i++) {
            struct craft_entry *e = NULL;
            size_t cnt = 0;
            const struct craft_entry *ent = NULL;
            if (n != NULL) {
                ent = craft_node_entry(n, i);
            } else if (st->entries(st->impl, i, i, NULL, &e, &cnt) == 0) {
                ent = e;
            }
            if (ent == NULL) {
                continue;
            }
            char what[24];
            if (ent->type == CRAFT_ENTRY_CONFIG) {
                snprintf(what, sizeof(what), "config");
            } else if (ent->type == CRAFT_ENTRY_BARRIER) {
                snprintf(what, sizeof(what), "no-op");
            } else {
                snprintf(what, sizeof(what), "%.*s", (int)(ent->size < 12 ? ent->size : 12),
                         (const char *)ent->data);
            }
            int k = snprintf(log + pos, sizeof(log) - pos, "%s%" PRIu64 "/%" PRIu64 ":%s",
                             pos ? " " : "", ent->index, ent->term, what);
            pos += k > 0 ? (size_t)k : 0;
            free(e);
        }
        if (n != NULL) {
            printf("    n%-4" PRIu64 "%-10s %4" PRIu64 "  %6" PRIu64 "  %s\n", id, role_word(n),
                   craft_node_term(n), craft_node_commit(n), log);
        } else {
            printf("    n%-4" PRIu64 "%-10s %4s  %6s  %s (on disk)\n", id, "DOWN", "-", "-",
                   log);
        }
    }
    printf("\n");
}

static bool has_leader(struct craft_sim *sim, void *ud)
{
    (void)ud;
    return craft_sim_leader(sim) != 0;
}

/* True when every live node has applied at least *ud. */
static bool applied_upto(struct craft_sim *sim, void *ud)
{
    craft_index want = *(const craft_index *)ud;
    for (craft_id id = 1; id <= N_NODES; id++) {
        const struct craft_node *n = craft_sim_node(sim, id);
        if (n != NULL && craft_node_applied(n) < want) {
            return false;
        }
    }
    return true;
}

static void die(struct demo *d, const char *what, int rc)
{
    fprintf(stderr, "craft-demo: %s: %s\n", what, craft_strerror(rc));
    if (d->sim && craft_sim_error(d->sim)) {
        fprintf(stderr, "craft-demo: %s\n", craft_sim_error(d->sim));
    }
    exit(1);
}

static void elect(struct demo *d)
{
    d->phase = ELECTION;
    d->narrated = 0;
    int rc = craft_sim_run_until(d->sim, has_leader, NULL, 10000);
    if (rc != 0) {
        die(d, "no leader was elected", rc);
    }
    d->phase = QUIET;
    /* Let the new leader's first heartbeat tell everyone who leads. */
    rc = craft_sim_run_for(d->sim, 30);
    if (rc != 0) {
        die(d, "running", rc);
    }
}

static void write_commands(struct demo *d, const char *const *cmds, int count)
{
    d->phase = REPLICATION;
    d->narrated = 0;
    craft_index last = 0;
    for (int k = 0; k < count; k++) {
        printf("  client: \"%s\"\n", cmds[k]);
        int rc = craft_sim_propose(d->sim, 0, cmds[k], strlen(cmds[k]), &last, NULL);
        if (rc != 0) {
            die(d, "propose", rc);
        }
    }
    int rc = craft_sim_run_until(d->sim, applied_upto, &last, 10000);
    if (rc != 0) {
        die(d, "the commands were not applied everywhere", rc);
    }
    d->phase = QUIET;
    say_at(craft_sim_now(d->sim), "every live node has applied up to index %" PRIu64, last);
}

int main(int argc, char **argv)
{
    struct demo d = {0};
    uint64_t seed = 42;
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--seed") == 0 && a + 1 < argc) {
            seed = strtoull(argv[++a], NULL, 10);
        } else if (strcmp(argv[a], "--trace") == 0) {
            d.trace = true;
        } else {
            fprintf(stderr, "usage: craft-demo [--seed S] [--trace]\n");
            return 2;
        }
    }
    struct craft_sim_options o;
    craft_sim_options_init(&o);
    o.n_nodes = N_NODES;
    o.seed = seed;
    o.event = on_event;
    o.ud = &d;

    printf("craft demo: a five-node Raft cluster in the deterministic simulator (seed %" PRIu64
           ")\n\n", seed);
    printf("Virtual time: a tick every %u ms; an election timeout is %u to %u ticks; messages\n"
           "take %u to %u ms; disk writes %u to %u ms. Safety is checked after every event.\n",
           o.tick_ms, o.node.election_ticks, 2 * o.node.election_ticks - 1, o.min_delay_ms,
           o.max_delay_ms, o.disk_min_ms, o.disk_max_ms);

    printf("\n1. Startup\n");
    int rc = craft_sim_new(&o, &d.sim);
    if (rc != 0) {
        die(&d, "craft_sim_new", rc);
    }
    printf("  n1..n5 boot with the same configuration (entry 1, term 1: all five vote).\n"
           "  No one is leader; each waits for its own random election timeout.\n");

    printf("\n2. The first election\n");
    elect(&d);
    show_cluster(&d, "The cluster after the election (the leader's no-op entry marks its term):");

    printf("3. Replication: the client writes three commands\n");
    static const char *const first[] = {"set x=1", "set y=2", "set z=3"};
    write_commands(&d, first, 3);
    show_cluster(&d, "Every node holds the same log and has committed it:");

    craft_id old = craft_sim_leader(d.sim);
    printf("4. The leader n%" PRIu64 " crashes\n", old);
    rc = craft_sim_crash(d.sim, old);
    if (rc != 0) {
        die(&d, "crash", rc);
    }
    say_at(craft_sim_now(d.sim), "n%" PRIu64 " is gone; the others stop hearing heartbeats",
           old);
    elect(&d);

    printf("\n5. The new leader n%" PRIu64 " takes two more writes (four of five are up)\n",
           craft_sim_leader(d.sim));
    static const char *const second[] = {"set x=10", "del y"};
    write_commands(&d, second, 2);
    char title[80];
    snprintf(title, sizeof(title), "Committed by a majority while n%" PRIu64 " is down:", old);
    show_cluster(&d, title);

    printf("6. n%" PRIu64 " comes back\n", old);
    d.phase = REPLICATION;
    d.narrated = 0;
    rc = craft_sim_restart(d.sim, old);
    if (rc != 0) {
        die(&d, "restart", rc);
    }
    craft_index target = craft_node_commit(craft_sim_node(d.sim, craft_sim_leader(d.sim)));
    rc = craft_sim_run_until(d.sim, applied_upto, &target, 10000);
    if (rc != 0) {
        die(&d, "the old leader did not catch up", rc);
    }
    d.phase = QUIET;
    say_at(craft_sim_now(d.sim), "n%" PRIu64 " learned the new term from the leader, became a "
           "follower, received the missing entries and applied up to %" PRIu64, old, target);
    rc = craft_sim_run_for(d.sim, 50);
    if (rc == 0) {
        rc = craft_sim_check(d.sim);
    }
    if (rc != 0) {
        die(&d, "final check", rc);
    }
    show_cluster(&d, "All five agree again:");

    struct craft_sim_stats st;
    craft_sim_stats(d.sim, &st);
    printf("7. Summary after %" PRIu64 " ms of virtual time: %" PRIu64
           " events, every safety invariant held.\n   Messages sent:",
           craft_sim_now(d.sim), st.events);
    static const char *const names[] = {"", "RequestVote", "RequestVoteResult",
                                        "AppendEntries", "AppendEntriesResult"};
    for (int t = 1; t <= 4; t++) {
        printf("%s %" PRIu64 " %s", t > 1 ? "," : "", st.sent[t], names[t]);
    }
    printf(".\n");
    craft_sim_free(d.sim);
    return 0;
}
