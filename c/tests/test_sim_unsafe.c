/*
 * "Break it" (docs/lab.md): each unsafe flag of craft_config switches off one safety rule of
 * Raft in every node, and the simulator's checker must catch what follows within a bounded
 * number of soak seeds, naming the invariant -- the proof that the checker would catch a core
 * (or a student's Raft) that gets the rule wrong. Without the flags the same seeds pass (the
 * soak test runs them).
 */
#include "harness.h"

#include <inttypes.h>

#include "craft/sim.h"
#include "sim/soak.h"

#define MAX_SEEDS 40

/* The first seed of 1..MAX_SEEDS whose run breaks an invariant with these flags, or 0. */
static uint64_t first_violation(struct craft_unsafe u, char *error, size_t len)
{
    for (uint64_t seed = 1; seed <= MAX_SEEDS; seed++) {
        struct craft__sim_soak_options o = {.seed = seed, .unsafe = u};
        struct craft__sim_soak_result r;
        if (craft__sim_soak_run(&o, &r) == CRAFT_SIM_EVIOLATION) {
            snprintf(error, len, "%s", r.error);
            return seed;
        }
    }
    return 0;
}

TEST(no_commit_rule_is_caught_by_the_commit_rule_check)
{
    char e[512];
    struct craft_unsafe u = {.no_commit_rule = true};
    uint64_t seed = first_violation(u, e, sizeof(e));
    CHECK(seed != 0);
    CHECK(strstr(e, "commit rule (Figure 8)") != NULL);
}

TEST(no_election_restriction_is_caught_by_leader_completeness)
{
    char e[512];
    struct craft_unsafe u = {.no_election_restriction = true};
    uint64_t seed = first_violation(u, e, sizeof(e));
    CHECK(seed != 0);
    CHECK(strstr(e, "leader completeness") != NULL || strstr(e, "state machine safety") != NULL);
}

TEST(no_persist_before_vote_is_caught_by_the_election_checks)
{
    char e[512];
    struct craft_unsafe u = {.no_persist_before_vote = true};
    uint64_t seed = first_violation(u, e, sizeof(e));
    CHECK(seed != 0);
    CHECK(strstr(e, "election") != NULL);
}

HARNESS_MAIN()
