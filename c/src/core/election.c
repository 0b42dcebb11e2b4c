/* Leader election (paper 5.2, the election restriction of 5.4.1) with pre-vote (thesis 9.6).
 *
 * A follower that hears from no leader for its randomized timeout first polls the voters with
 * a pre-vote at term + 1, changing nothing; only if a majority would vote for it does it
 * increment its term and ask for real votes. A server partitioned away therefore cannot inflate
 * its term and depose a healthy leader when it comes back. */
#include "core/node.h"

bool craft__is_voter(const struct craft_node *n, craft_id id)
{
    const struct craft_server *s = craft_configuration_get(&n->conf, id);
    return s != NULL && s->role == CRAFT_VOTER;
}

/* Thesis 4.2.2: a server that is not part of its own latest configuration must still start
 * elections while that configuration is uncommitted, without counting its own vote. The case
 * that needs it: leader L of {L, F} appends {F} while F cannot hear it, then loses its
 * leadership (check-quorum or a restart). F still has {L, F} and needs L's vote, which L
 * refuses because its log is longer; only L can win, by the votes of {F}, and commit {F}
 * (after which it steps down, membership.c). The same holds for a leader that demoted itself
 * to a learner (craft_demote): found by the simulator, seed 5002 of the soak with demotions,
 * where {L, F} became {F, learner L}, L crashed before committing it, and F waited forever
 * for L's vote. Any other learner never campaigns: it has never been a voter. */
bool craft__may_campaign(const struct craft_node *n)
{
    if (craft__is_voter(n, n->id)) {
        return true;
    }
    if (n->conf_index <= n->commit || craft_configuration_voters(&n->conf) == 0) {
        return false;
    }
    return craft_configuration_get(&n->conf, n->id) == NULL || n->conf_demoted_self;
}

static int start_round(struct craft_node *n, bool pre, bool transfer);

/* Counts the votes of the current round; wins or gives up once a majority has spoken. */
static int tally(struct craft_node *n)
{
    switch (craft__quorum_vote_result(n)) {
    case CRAFT__VOTE_WON:
        if (n->role == CRAFT_PRE_CANDIDATE) {
            return start_round(n, false, false); /* a majority would vote for us */
        }
        return craft__become_leader(n);
    case CRAFT__VOTE_LOST:
        craft__become_follower(n, n->term, 0);
        return 0;
    default:
        return 0;
    }
}

/* Our own vote in a real election counts only once the hard state that records it (the new
 * term, voted for ourselves) is durable: the same rule as for a vote granted to another
 * (paper Figure 2, "respond to RPCs ... after updating stable storage"). Counted at once, a
 * candidate could win with one other vote, replicate, crash before its hard state reached the
 * disk, restart in the old term and vote for someone else in the same term: two leaders in one
 * term. A pre-vote records nothing, so it counts at once (thesis 9.6). */
static void count_self_vote(struct craft_node *n)
{
    struct craft__progress *self = craft__progress_get(n, n->id);
    if (self == NULL || self->role != CRAFT_VOTER) {
        return; /* not a voter of its own configuration (see craft__may_campaign) */
    }
    if (n->role == CRAFT_PRE_CANDIDATE || n->persisted_seq >= n->vote_seq ||
        n->cfg.unsafe.no_persist_before_vote) {
        self->vote = 1;
    }
}

/* Starts a round: a poll at term + 1 that changes nothing (pre), or a real election. */
static int start_round(struct craft_node *n, bool pre, bool transfer)
{
    if (n->term >= CRAFT__TERM_MAX) {
        return 0; /* overflow guard (issue 13): a term at the bound cannot be incremented */
    }
    craft_term ask;
    if (pre) {
        craft__become_pre_candidate(n);
        ask = n->term + 1;
    } else {
        craft__become_candidate(n);
        ask = n->term;
    }
    count_self_vote(n);
    for (unsigned i = 0; i < n->n_progress; i++) {
        struct craft__progress *p = &n->progress[i];
        if (p->role != CRAFT_VOTER || p->id == n->id) {
            continue;
        }
        struct craft_message m = {0};
        m.type = CRAFT_MSG_REQUEST_VOTE;
        m.to = p->id;
        m.term = ask;
        m.u.request_vote.last_log_index = craft__log_last(&n->log);
        m.u.request_vote.last_log_term = craft__log_last_term(&n->log);
        m.u.request_vote.pre_vote = pre;
        m.u.request_vote.transfer = transfer;
        int rc = craft__send(n, &m, 0, 0);
        if (rc != 0) {
            return rc;
        }
    }
    return tally(n);
}

/* An election timeout (or a TimeoutNow): a pre-vote when enabled, unless this is a leadership
 * transfer, which must not wait (thesis 3.10). A pre-candidate whose poll timed out polls
 * again. */
int craft__campaign(struct craft_node *n, bool transfer)
{
    if (!craft__may_campaign(n)) {
        return 0; /* learners and servers outside the configuration never campaign */
    }
    return start_round(n, n->cfg.pre_vote && !transfer, transfer);
}

/* The driver confirmed persistence: a candidate's own vote may now be durable. */
int craft__election_persisted(struct craft_node *n)
{
    if (n->role != CRAFT_CANDIDATE || n->persisted_seq < n->vote_seq) {
        return 0;
    }
    struct craft__progress *self = craft__progress_get(n, n->id);
    if (self == NULL || self->role != CRAFT_VOTER || self->vote != 0) {
        return 0;
    }
    self->vote = 1;
    return tally(n);
}

int craft__election_tick(struct craft_node *n)
{
    n->election_elapsed++;
    if (n->election_elapsed < n->randomized_timeout) {
        return 0;
    }
    if (!craft__may_campaign(n)) {
        /* Not a voter in its own configuration: it cannot campaign, but its timer keeps
         * running so that "a leader is alive" (thesis 4.2.3) expires and it grants votes again:
         * the others may count it as a voter (it was just promoted, or a removal it holds was
         * never committed). Resetting it here made such a server ignore every vote request
         * forever (simulator seeds 2781, 3968, ...). Capped to keep the count bounded. */
        n->election_elapsed = n->randomized_timeout;
        return 0;
    }
    return craft__campaign(n, false);
}

/* Paper 5.4.1: grant only to a candidate whose log is at least as up to date as ours. */
static bool log_up_to_date(const struct craft_node *n, craft_index index, craft_term term)
{
    if (n->cfg.unsafe.no_election_restriction) {
        return true;
    }
    craft_term last_term = craft__log_last_term(&n->log);
    return term > last_term || (term == last_term && index >= craft__log_last(&n->log));
}

int craft__recv_request_vote(struct craft_node *n, const struct craft_message *m)
{
    const struct craft_request_vote *rv = &m->u.request_vote;
    struct craft_message r = {0};
    r.type = CRAFT_MSG_REQUEST_VOTE_RESULT;
    r.to = m->from;
    r.u.request_vote_result.pre_vote = rv->pre_vote;

    /* One vote per term (paper Figure 2); a pre-vote for a later term binds nothing. */
    bool can_vote = n->vote == m->from || (n->vote == 0 && n->leader == 0) ||
                    (rv->pre_vote && m->term > n->term);
    if (m->term >= n->term && can_vote &&
        log_up_to_date(n, rv->last_log_index, rv->last_log_term)) {
        r.term = m->term;
        r.u.request_vote_result.granted = true;
        if (rv->pre_vote) {
            return craft__send(n, &r, 0, 0);
        }
        if (n->vote != m->from) {
            n->vote = m->from;
            craft__mark_hard_state(n);
        }
        n->election_elapsed = 0;
        /* The grant may only leave once the vote is durable. */
        if (n->cfg.unsafe.no_persist_before_vote) {
            return craft__send(n, &r, 0, 0);
        }
        return craft__send_after_persist(n, &r);
    }
    r.term = n->term;
    r.u.request_vote_result.granted = false;
    return craft__send(n, &r, 0, 0);
}

int craft__recv_request_vote_result(struct craft_node *n, const struct craft_message *m)
{
    const struct craft_request_vote_result *res = &m->u.request_vote_result;
    if (res->pre_vote ? n->role != CRAFT_PRE_CANDIDATE : n->role != CRAFT_CANDIDATE) {
        return 0;
    }
    craft_term expect = res->pre_vote ? n->term + 1 : n->term;
    if (res->granted && m->term != expect) {
        return 0; /* an answer to an older round */
    }
    struct craft__progress *p = craft__progress_get(n, m->from);
    if (p == NULL || p->role != CRAFT_VOTER) {
        return 0;
    }
    p->vote = res->granted ? 1 : -1;
    return tally(n);
}
