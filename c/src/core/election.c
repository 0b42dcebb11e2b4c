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

static unsigned majority(const struct craft_node *n)
{
    return craft_configuration_voters(&n->conf) / 2 + 1;
}

/* Counts the votes of the current round; wins or gives up once a majority has spoken. */
static int tally(struct craft_node *n)
{
    unsigned granted = 0, rejected = 0;
    for (unsigned i = 0; i < n->n_progress; i++) {
        const struct craft__progress *p = &n->progress[i];
        if (p->role != CRAFT_VOTER) {
            continue;
        }
        granted += p->vote > 0;
        rejected += p->vote < 0;
    }
    if (granted >= majority(n)) {
        if (n->role == CRAFT_PRE_CANDIDATE) {
            return craft__campaign(n, false);
        }
        return craft__become_leader(n);
    }
    if (rejected >= majority(n)) {
        craft__become_follower(n, n->term, 0);
    }
    return 0;
}

/* Starts a round: a pre-vote when enabled (unless this is a leadership transfer, which must
 * not wait, thesis 3.10), otherwise a real election. */
int craft__campaign(struct craft_node *n, bool transfer)
{
    if (!craft__is_voter(n, n->id)) {
        return 0; /* learners and servers outside the configuration never campaign */
    }
    bool pre = n->cfg.pre_vote && !transfer && n->role != CRAFT_PRE_CANDIDATE;
    craft_term ask;
    if (pre) {
        craft__become_pre_candidate(n);
        ask = n->term + 1;
    } else {
        craft__become_candidate(n);
        ask = n->term;
    }
    struct craft__progress *self = craft__progress_get(n, n->id);
    self->vote = 1;
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

int craft__election_tick(struct craft_node *n)
{
    n->election_elapsed++;
    if (n->election_elapsed < n->randomized_timeout) {
        return 0;
    }
    if (!craft__is_voter(n, n->id)) {
        /* Not a voter in its own configuration: it cannot campaign, but its timer keeps
         * running so that "a leader is alive" (thesis 4.2.3) expires and it grants votes again:
         * the others may count it as a voter (it was just promoted, or a removal it holds was
         * never committed). Resetting it here made such a server ignore every vote request
         * forever (simulator seeds 2781, 3968, ...). Capped to keep the count bounded. */
        n->election_elapsed = n->randomized_timeout;
        return 0;
    }
    /* A pre-candidate whose poll timed out starts a fresh poll, not a real election. */
    if (n->role == CRAFT_PRE_CANDIDATE) {
        n->role = CRAFT_FOLLOWER;
    }
    return craft__campaign(n, false);
}

/* Paper 5.4.1: grant only to a candidate whose log is at least as up to date as ours. */
static bool log_up_to_date(const struct craft_node *n, craft_index index, craft_term term)
{
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
