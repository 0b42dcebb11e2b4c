/*
 * Hooks for c/tests/test_sim_invariants.c: they feed the invariant checker fabricated
 * observations (a second leader in a term, an applied entry that differs, ...) through the same
 * functions the driver path uses, so the tests prove the checker can fail. Never used outside
 * tests. Ids are server ids; each returns what the checker returns (0 or
 * CRAFT_SIM_EVIOLATION).
 */
#ifndef CRAFT_SIM_TESTING_H
#define CRAFT_SIM_TESTING_H

#include "craft/sim.h"

int craft__sim_test_fake_leader(struct craft_sim *s, craft_id id, craft_term term);
/* As if node id's update handed out these entries (leader_before: it was leader already). */
int craft__sim_test_fake_append(struct craft_sim *s, craft_id id, const struct craft_entry *e,
                                size_t n, bool leader_before);
int craft__sim_test_fake_apply(struct craft_sim *s, craft_id id, const struct craft_entry *e);
int craft__sim_test_fake_commit(struct craft_sim *s, craft_id id, craft_index commit,
                                craft_term term);
int craft__sim_test_fake_durable(struct craft_sim *s, craft_id id,
                                 const struct craft_hard_state *hs);
/* As if node id, leader, appended configuration entry e (CRAFT_ENTRY_CONFIG, encoded with
 * craft_configuration_encode) with commit index commit_before before the input. */
int craft__sim_test_fake_conf_append(struct craft_sim *s, craft_id id, const struct craft_entry *e,
                                     craft_index commit_before);

#endif /* CRAFT_SIM_TESTING_H */
