/* craft_step(): the rules every message passes before its handler (paper Figure 2, "Rules for
 * Servers, All Servers"), then dispatch by type.
 *
 *  - A message with a higher term makes us a follower of that term (paper 5.1), with three
 *    exceptions: a pre-vote request or a granted pre-vote answer carries a term nobody has
 *    entered yet (thesis 9.6); and a vote request while we know a live leader is ignored
 *    (thesis 4.2.3), so a server removed from the configuration, or one that was partitioned,
 *    cannot depose a working leader.
 *  - A message with a lower term is stale. If it is an AppendEntries, an InstallSnapshot or a
 *    vote request, we answer with our term so that the sender catches up (a deposed leader
 *    steps down, a candidate learns the term); everything else is dropped. */
#include "core/node.h"

/* Thesis 4.2.3: a server that heard from a leader within the minimum election timeout does not
 * grant votes, nor update its term, on a vote request. */
static bool leader_alive(const struct craft_node *n)
{
    if (n->role == CRAFT_LEADER) {
        return true;
    }
    return n->leader != 0 && n->election_elapsed < n->cfg.election_ticks;
}

static int answer_stale(struct craft_node *n, const struct craft_message *m)
{
    struct craft_message r = {0};
    r.to = m->from;
    r.term = n->term;
    if (m->type == CRAFT_MSG_APPEND_ENTRIES) {
        r.type = CRAFT_MSG_APPEND_ENTRIES_RESULT;
        r.u.append_entries_result.rejected = true;
        r.u.append_entries_result.index = m->u.append_entries.prev_index;
        r.u.append_entries_result.last_index = craft__log_last(&n->log);
        return craft__send(n, &r, 0, 0);
    }
    if (m->type == CRAFT_MSG_INSTALL_SNAPSHOT) {
        /* Answered in kind (an InstallSnapshot has no prev_index to echo): the term is what
         * makes the deposed sender step down. */
        r.type = CRAFT_MSG_INSTALL_SNAPSHOT_RESULT;
        r.u.install_snapshot_result.index = m->u.install_snapshot.meta.index;
        r.u.install_snapshot_result.offset = 0;
        r.u.install_snapshot_result.rejected = true;
        return craft__send(n, &r, 0, 0);
    }
    if (m->type == CRAFT_MSG_REQUEST_VOTE) {
        /* Figure 2: "Reply false if term < currentTerm" -- with our term, so that the
         * candidate catches up. Dropping it silently can deadlock a membership change: a
         * candidate that needs our vote, whose term is behind ours, and whom we never contact
         * because it is only a learner in our configuration (simulator seed 2663). */
        r.type = CRAFT_MSG_REQUEST_VOTE_RESULT;
        r.u.request_vote_result.pre_vote = m->u.request_vote.pre_vote;
        r.u.request_vote_result.granted = false;
        return craft__send(n, &r, 0, 0);
    }
    return 0;
}

int craft_step(struct craft_node *n, const struct craft_message *m)
{
    if (n == NULL || m == NULL) {
        return CRAFT_EINVAL;
    }
    if (m->type < 1 || m->type > CRAFT_MSG_TYPE_MAX || m->from == 0 || m->from == n->id ||
        (m->to != 0 && m->to != n->id)) {
        return CRAFT_EMALFORMED;
    }

    if (m->term > n->term) {
        bool vote_req = m->type == CRAFT_MSG_REQUEST_VOTE;
        if (vote_req && !m->u.request_vote.transfer && leader_alive(n)) {
            return 0;
        }
        if (vote_req && m->u.request_vote.pre_vote) {
            /* keep our term: answered below without changing state */
        } else if (m->type == CRAFT_MSG_REQUEST_VOTE_RESULT &&
                   m->u.request_vote_result.pre_vote && m->u.request_vote_result.granted) {
            /* the future term we asked about */
        } else {
            bool from_leader = m->type == CRAFT_MSG_APPEND_ENTRIES ||
                               m->type == CRAFT_MSG_INSTALL_SNAPSHOT ||
                               m->type == CRAFT_MSG_TIMEOUT_NOW;
            craft__become_follower(n, m->term, from_leader ? m->from : 0);
        }
    } else if (m->term < n->term) {
        return answer_stale(n, m);
    }

    switch (m->type) {
    case CRAFT_MSG_REQUEST_VOTE:
        return craft__recv_request_vote(n, m);
    case CRAFT_MSG_REQUEST_VOTE_RESULT:
        return craft__recv_request_vote_result(n, m);
    case CRAFT_MSG_APPEND_ENTRIES:
        if (n->role == CRAFT_LEADER) {
            return 0; /* two leaders in one term cannot happen; never trust such a message */
        }
        return craft__recv_append_entries(n, m);
    case CRAFT_MSG_APPEND_ENTRIES_RESULT:
        if (n->role != CRAFT_LEADER) {
            return 0;
        }
        return craft__recv_append_entries_result(n, m);
    case CRAFT_MSG_TIMEOUT_NOW:
        /* Thesis 3.10: the leader asks us to start an election at once, skipping pre-vote. */
        if (n->role == CRAFT_LEADER) {
            return 0;
        }
        return craft__campaign(n, true);
    case CRAFT_MSG_INSTALL_SNAPSHOT:
        if (n->role == CRAFT_LEADER) {
            return 0;
        }
        return craft__recv_install_snapshot(n, m);
    case CRAFT_MSG_INSTALL_SNAPSHOT_RESULT:
        if (n->role != CRAFT_LEADER) {
            return 0;
        }
        return craft__recv_install_snapshot_result(n, m);
    default:
        return 0;
    }
}

int craft_tick(struct craft_node *n)
{
    if (n == NULL) {
        return CRAFT_EINVAL;
    }
    n->ticks++;
    if (n->role == CRAFT_LEADER) {
        return craft__heartbeat_tick(n);
    }
    return craft__election_tick(n);
}
