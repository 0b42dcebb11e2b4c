/* Role changes. Every legal transition (paper Figure 4, plus the pre-candidate of thesis 9.6):
 *
 *   follower      -> pre-candidate (election timeout, pre-vote on)
 *   follower      -> candidate     (election timeout, pre-vote off, or TimeoutNow)
 *   pre-candidate -> candidate     (a majority would vote for it)
 *   candidate     -> leader        (a majority voted for it)
 *   any           -> follower      (a higher term, a current leader, a lost election, or a
 *                                   leader that lost its quorum)
 *   candidate/pre-candidate -> pre-candidate/candidate (a new round after a timeout)
 *   pre-candidate -> pre-candidate (a poll that timed out polls again: no role change) */
#include <assert.h>

#include "core/node.h"

void craft__reset_election_timer(struct craft_node *n)
{
    /* Randomized in [election_ticks, 2 * election_ticks) so that split votes are rare
     * (paper 5.2). */
    n->election_elapsed = 0;
    n->randomized_timeout =
        n->cfg.election_ticks + (unsigned)(craft__rand(n) % n->cfg.election_ticks);
}

static void set_role(struct craft_node *n, int role)
{
    assert(role == CRAFT_FOLLOWER || role == CRAFT_PRE_CANDIDATE || role == CRAFT_CANDIDATE ||
           role == CRAFT_LEADER);
    assert(role != CRAFT_LEADER || n->role == CRAFT_CANDIDATE);
    assert(role != CRAFT_CANDIDATE || n->role != CRAFT_LEADER);
    assert(role != CRAFT_PRE_CANDIDATE || n->role != CRAFT_LEADER);
    if (n->role != role) {
        n->role_changed = true;
    }
    n->role = role;
}

static void set_term(struct craft_node *n, craft_term term)
{
    if (term != n->term) {
        n->term = term;
        n->vote = 0;
        craft__mark_hard_state(n);
    }
}

void craft__become_follower(struct craft_node *n, craft_term term, craft_id leader)
{
    if (n->role == CRAFT_LEADER) {
        craft__reads_fail_all(n);
        craft__transfer_clear(n);
    }
    set_term(n, term);
    set_role(n, CRAFT_FOLLOWER);
    if (leader != n->leader) {
        n->role_changed = true;
    }
    n->leader = leader;
    craft__reset_election_timer(n);
}

void craft__become_pre_candidate(struct craft_node *n)
{
    /* A pre-candidate keeps its term and vote: it only asks whether it could win. */
    set_role(n, CRAFT_PRE_CANDIDATE);
    n->leader = 0;
    craft__reset_election_timer(n);
    for (unsigned i = 0; i < n->n_progress; i++) {
        n->progress[i].vote = 0;
    }
}

void craft__become_candidate(struct craft_node *n)
{
    set_term(n, n->term + 1);
    n->vote = n->id;
    craft__mark_hard_state(n);
    /* The ticket the next update takes holds this term and vote (update.c): our own vote
     * counts once it is persisted (election.c). */
    n->vote_seq = n->last_seq + 1;
    set_role(n, CRAFT_CANDIDATE);
    n->leader = 0;
    craft__reset_election_timer(n);
    for (unsigned i = 0; i < n->n_progress; i++) {
        n->progress[i].vote = 0;
    }
}

int craft__become_leader(struct craft_node *n)
{
    set_role(n, CRAFT_LEADER);
    n->leader = n->id;
    n->heartbeat_elapsed = 0;
    n->quorum_elapsed = 0;
    craft__progress_reset_all(n);
    for (unsigned i = 0; i < n->n_progress; i++) {
        n->progress[i].recent_active = n->progress[i].id == n->id;
    }
    /* A new leader commits entries of earlier terms only by committing one of its own (paper
     * 5.4.2): a no-op barrier gets there without waiting for a client. */
    int rc = craft__append_local(n, CRAFT_ENTRY_BARRIER, NULL, 0);
    if (rc != 0) {
        return rc;
    }
    n->term_start = craft__log_last(&n->log);
    n->lease_lost = false;
    for (unsigned i = 0; i < n->n_progress; i++) {
        n->progress[i].ack_ctx = 0;
    }
    craft__transfer_clear(n);
    rc = craft__broadcast_append(n);
    if (rc != 0) {
        return rc;
    }
    return craft__maybe_commit(n); /* a single voter commits its barrier alone */
}
