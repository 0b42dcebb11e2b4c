/*
 * One randomized soak run: a cluster whose size (voters and spare servers), protocol options,
 * snapshot thresholds, network and disk are drawn from the seed, driven through a fault
 * schedule (loss, duplication, reordering, partitions, one-way cuts, crashes and restarts)
 * mixed with proposals, membership changes (adds of spare or removed servers as learners, with
 * and without auto-promotion, promotions, removals of followers, learners and the leader
 * itself, down to one voter, the removed leader often crashing right after), leadership
 * transfers and ReadIndex reads, disks fast or slower than the network, crashes that tear the
 * write in progress, and disk losses within Raft's fault model (a cut tail, an older copy put
 * back, a wiped non-member); then healed, after which a leader must
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
    /* Teaching only ("break it", docs/lab.md): safety rules switched off in every node. */
    struct craft_unsafe unsafe;
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
    uint64_t disk_losses; /* wiped, cut or rolled-back disks (within Raft's fault model) */
    uint64_t regressions; /* followers found with a log gone backwards, and repaired */
    uint64_t torn_writes; /* crashes that tore the write in progress */
};

/* Runs the soak for o->seed; returns r->rc. */
int craft__sim_soak_run(const struct craft__sim_soak_options *o,
                        struct craft__sim_soak_result *r);

#endif /* CRAFT_SIM_SOAK_H */
