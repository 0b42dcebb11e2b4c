/*
 * One randomized soak run: a cluster whose size (voters and spare servers), protocol options,
 * snapshot thresholds, network and disk are drawn from the seed, driven through a fault
 * schedule (loss, duplication, reordering, partitions, one-way cuts, crashes and restarts)
 * mixed with proposals, membership changes (adds of spare or removed servers as learners, with
 * and without auto-promotion, promotions, removals of followers, learners and the leader
 * itself), leadership transfers and ReadIndex reads; then healed, after which a leader must
 * emerge among the voters of the final configuration, and a final proposal must be applied on
 * every server of that configuration and a final read served. Shared by craft-soak
 * (c/tools/craft_soak.c) and the soak test (c/tests/test_sim_soak.c).
 */
#ifndef CRAFT_SIM_SOAK_H
#define CRAFT_SIM_SOAK_H

#include "craft/sim.h"

struct craft__sim_soak_options {
    uint64_t seed;
    bool verbose; /* every event goes to line() as it happens */
    /* Output: the verbose trace and, on failure, the report (seed, what failed, the last
     * events, the replay command). NULL: silent. */
    void (*line)(void *ud, const char *line);
    void *ud;
    unsigned trace_depth; /* events shown on failure; 0: 60 */
};

struct craft__sim_soak_result {
    int rc; /* 0; CRAFT_SIM_EVIOLATION; CRAFT_ETIMEDOUT when liveness failed; another error */
    char error[512];
    unsigned n_nodes;
    uint64_t virtual_ms;
    uint64_t events;
    uint64_t proposals; /* accepted by a leader */
    craft_index committed;
    uint64_t crashes;
    uint64_t messages;
    uint64_t changes;   /* membership changes accepted by a leader */
    uint64_t transfers; /* leadership transfers accepted */
    uint64_t reads;     /* reads served */
};

/* Runs the soak for o->seed; returns r->rc. */
int craft__sim_soak_run(const struct craft__sim_soak_options *o,
                        struct craft__sim_soak_result *r);

#endif /* CRAFT_SIM_SOAK_H */
