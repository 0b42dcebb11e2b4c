/*
 * The randomized soak (issues 2 and 3): CRAFT_SOAK_SEEDS seeds (default 1000; the ASan build
 * runs 200) of mixed faults -- loss, duplication, reordering, partitions, one-way cuts, crashes
 * and restarts -- with proposals, snapshots and compaction, membership changes (adds of spare
 * or removed servers, with and without auto-promote, promotions, removals of followers,
 * learners and the leader itself), leadership transfers and reads throughout; every safety
 * invariant (configurations, quorums and read linearizability included) is checked after every
 * event, and liveness in the final configuration is required once everything is healed. The same routine is craft-soak's
 * (c/src/sim/soak.c): a failing seed prints its replay command, `craft-soak --seed S --verbose`.
 */
#include "harness.h"

#include <inttypes.h>

#include "sim/soak.h"

static void to_stderr(void *ud, const char *line)
{
    (void)ud;
    fprintf(stderr, "%s\n", line);
}

TEST(soak_mixed_faults)
{
    int seeds = harness_env_int("CRAFT_SOAK_SEEDS", 1000);
    uint64_t events = 0, proposals = 0;
    int failures = 0;
    char first[600] = "";
    for (int k = 1; k <= seeds; k++) {
        struct craft__sim_soak_options o = {.seed = (uint64_t)k};
        /* Only the first failure's report: later ones are usually the same bug again. */
        if (failures == 0) {
            o.line = to_stderr;
        }
        struct craft__sim_soak_result r;
        if (craft__sim_soak_run(&o, &r) != 0) {
            if (failures++ == 0) {
                snprintf(first, sizeof(first),
                         "seed %d: %s (replay: craft-soak --seed %d --verbose)", k, r.error, k);
            }
        }
        events += r.events;
        proposals += r.proposals;
    }
    fprintf(stderr, "soak: %d seeds, %d failed, %" PRIu64 " events, %" PRIu64 " proposals\n",
            seeds, failures, events, proposals);
    if (failures > 0) {
        FAIL("%d of %d seeds failed; the first: %s", failures, seeds, first);
    }
}

HARNESS_MAIN()
