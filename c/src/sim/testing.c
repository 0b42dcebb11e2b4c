/* Test hooks into the invariant checker (see testing.h). */
#include "testing.h"

#include "sim_internal.h"

static int bad_id(const struct craft_sim *s, craft_id id)
{
    return id == 0 || id > s->n;
}

int craft__sim_test_fake_leader(struct craft_sim *s, craft_id id, craft_term term)
{
    if (bad_id(s, id)) {
        return CRAFT_EINVAL;
    }
    return craft__sim_inv_role(s, (unsigned)(id - 1), CRAFT_LEADER, term);
}

int craft__sim_test_fake_append(struct craft_sim *s, craft_id id, const struct craft_entry *e,
                                size_t n, bool leader_before)
{
    if (bad_id(s, id)) {
        return CRAFT_EINVAL;
    }
    return craft__sim_inv_append(s, (unsigned)(id - 1), e, n, leader_before);
}

int craft__sim_test_fake_apply(struct craft_sim *s, craft_id id, const struct craft_entry *e)
{
    if (bad_id(s, id)) {
        return CRAFT_EINVAL;
    }
    return craft__sim_inv_apply(s, (unsigned)(id - 1), e);
}

int craft__sim_test_fake_commit(struct craft_sim *s, craft_id id, craft_index commit,
                                craft_term term)
{
    if (bad_id(s, id)) {
        return CRAFT_EINVAL;
    }
    return craft__sim_inv_commit(s, (unsigned)(id - 1), commit, term);
}

int craft__sim_test_fake_durable(struct craft_sim *s, craft_id id,
                                 const struct craft_hard_state *hs)
{
    if (bad_id(s, id)) {
        return CRAFT_EINVAL;
    }
    return craft__sim_inv_durable(s, (unsigned)(id - 1), hs);
}

int craft__sim_test_fake_conf_append(struct craft_sim *s, craft_id id, const struct craft_entry *e,
                                     craft_index commit_before)
{
    if (bad_id(s, id)) {
        return CRAFT_EINVAL;
    }
    unsigned i = (unsigned)(id - 1);
    int rc = craft__sim_inv_append(s, i, e, 1, true);
    if (rc == 0) {
        rc = craft__sim_inv_conf_append(s, i, e, commit_before);
    }
    return rc;
}
