/*
 * craft-soak: randomized simulator runs with mixed faults, one per seed.
 *
 *   craft-soak [N_SEEDS] [--from S0]     seeds S0 .. S0 + N_SEEDS - 1 (default 1000 from 1)
 *   craft-soak --seed S [--verbose]      one seed; --verbose prints every event
 *   craft-soak N --keep-going            run every seed; one line per failure, then a count
 *
 * Each run draws the cluster (1 to 5 voters and up to 2 spare servers, pre-vote and
 * check-quorum on or off, batching, snapshot thresholds), the network and the disks from its
 * seed, drives them through losses, duplicates, reordering, partitions, one-way cuts, crashes,
 * restarts, proposals, membership changes, leadership transfers and reads for a few virtual
 * seconds, then heals everything and requires a leader among the final configuration's
 * voters, a final proposal applied on every server of that configuration and a read served.
 * Every Raft safety invariant (configurations, quorums and reads included) is checked after
 * every event. The first failure prints the seed, what
 * failed, the last events and the command that replays it; the exit status is then 1.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/soak.h"

static void print_line(void *ud, const char *line)
{
    (void)ud;
    printf("%s\n", line);
}

static int usage(void)
{
    fprintf(stderr, "usage: craft-soak [N_SEEDS] [--from S0] [--keep-going] | "
                    "craft-soak --seed S [--verbose]\n"
                    "       [--unsafe no-commit-rule|no-election-restriction|"
                    "no-persist-before-vote] (teaching: a safety rule off)\n");
    return 2;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (s == NULL || *s == '\0') {
        return false;
    }
    *out = strtoull(s, &end, 10);
    return *end == '\0';
}

int main(int argc, char **argv)
{
    uint64_t n_seeds = 1000, from = 1, seed = 0;
    bool one = false, verbose = false, keep_going = false;
    uint64_t failed = 0;
    struct craft_unsafe unsafe = {false, false, false};
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--seed") == 0) {
            if (a + 1 >= argc || !parse_u64(argv[++a], &seed)) {
                return usage();
            }
            one = true;
        } else if (strcmp(argv[a], "--from") == 0) {
            if (a + 1 >= argc || !parse_u64(argv[++a], &from)) {
                return usage();
            }
        } else if (strcmp(argv[a], "--keep-going") == 0 || strcmp(argv[a], "-k") == 0) {
            keep_going = true;
        } else if (strcmp(argv[a], "--unsafe") == 0) {
            /* Teaching only: a safety rule switched off (docs/lab.md, "Break it"). */
            const char *f = a + 1 < argc ? argv[++a] : "";
            if (strcmp(f, "no-commit-rule") == 0) {
                unsafe.no_commit_rule = true;
            } else if (strcmp(f, "no-election-restriction") == 0) {
                unsafe.no_election_restriction = true;
            } else if (strcmp(f, "no-persist-before-vote") == 0) {
                unsafe.no_persist_before_vote = true;
            } else {
                return usage();
            }
        } else if (strcmp(argv[a], "--verbose") == 0 || strcmp(argv[a], "-v") == 0) {
            verbose = true;
        } else if (!parse_u64(argv[a], &n_seeds)) {
            return usage();
        }
    }
    if (one) {
        from = seed;
        n_seeds = 1;
    }

    struct craft__sim_soak_options o = {.line = print_line, .verbose = verbose && one,
                                        .unsafe = unsafe};
    uint64_t events = 0, virtual_ms = 0, proposals = 0, messages = 0, crashes = 0;
    uint64_t changes = 0, transfers = 0, reads = 0, losses = 0, regressions = 0, torn = 0;
    for (uint64_t k = 0; k < n_seeds; k++) {
        struct craft__sim_soak_result r;
        o.seed = from + k;
        o.line = keep_going && !one ? NULL : print_line;
        int rc = craft__sim_soak_run(&o, &r);
        events += r.events;
        virtual_ms += r.virtual_ms;
        proposals += r.proposals;
        messages += r.messages;
        crashes += r.crashes;
        changes += r.changes;
        transfers += r.transfers;
        reads += r.reads;
        losses += r.disk_losses;
        regressions += r.regressions;
        torn += r.torn_writes;
        if (rc != 0 && keep_going && !one) {
            printf("FAILED seed %" PRIu64 " (%u nodes): %s\n", o.seed, r.n_nodes, r.error);
            failed++;
            continue;
        }
        if (rc != 0) {
            printf("craft-soak: seed %" PRIu64 " FAILED after %" PRIu64 " good seeds\n", o.seed,
                   k);
            return 1;
        }
        if (one) {
            printf("seed %" PRIu64 ": ok (%u nodes, %" PRIu64 " ms virtual, %" PRIu64
                   " events, %" PRIu64 " proposals, %" PRIu64 " membership changes, %" PRIu64
                   " transfers, %" PRIu64 " reads served, committed up to %" PRIu64 ")\n",
                   o.seed, r.n_nodes, r.virtual_ms, r.events, r.proposals, r.changes,
                   r.transfers, r.reads, r.committed);
        } else if ((k + 1) % 1000 == 0) {
            printf("... %" PRIu64 " seeds ok\n", k + 1);
            fflush(stdout);
        }
    }
    if (failed > 0) {
        printf("craft-soak: %" PRIu64 " of %" PRIu64 " seeds from %" PRIu64 " FAILED\n", failed,
               n_seeds, from);
    }
    printf("craft-soak: %" PRIu64 " seeds from %" PRIu64 " %s: %" PRIu64
           " s of virtual time, %" PRIu64 " events, %" PRIu64 " messages, %" PRIu64
           " proposals, %" PRIu64 " crashes, %" PRIu64 " membership changes, %" PRIu64
           " leadership transfers, %" PRIu64 " reads served, %" PRIu64 " torn writes, %" PRIu64
           " disk losses, %" PRIu64 " logs gone backwards repaired%s\n",
           n_seeds, from, failed ? "run" : "passed", virtual_ms / 1000, events, messages,
           proposals, crashes, changes, transfers, reads, torn, losses, regressions,
           failed ? "" : "; every invariant held and every run recovered");
    return failed ? 1 : 0;
}
