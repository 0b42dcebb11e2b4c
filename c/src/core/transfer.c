/* Leadership transfer (thesis 3.10). The leader stops accepting proposals, brings the target's
 * log up to date, and sends it TimeoutNow; the target starts an election at once, without
 * pre-vote, and its vote requests carry the transfer flag so that voters who still hear from us
 * do not ignore them (thesis 4.2.3). If the target has not taken over within an election
 * timeout, the transfer is abandoned and proposals are accepted again. */
#include "core/node.h"

void craft__transfer_clear(struct craft_node *n)
{
    n->transfer_target = 0;
    n->transfer_elapsed = 0;
    n->transfer_sent = false;
}

static int send_timeout_now(struct craft_node *n, craft_id to)
{
    struct craft_message m = {0};
    m.type = CRAFT_MSG_TIMEOUT_NOW;
    m.to = to;
    m.term = n->term;
    n->transfer_sent = true;
    /* The target's vote requests skip the leader-alive check that a lease relies on: from now
     * on another leader may be elected at any time (simulator: lease read after transfer). */
    n->lease_lost = true;
    return craft__send(n, &m, 0, 0);
}

int craft_transfer_leadership(struct craft_node *n, craft_id target)
{
    if (n == NULL) {
        return CRAFT_EINVAL;
    }
    if (n->role != CRAFT_LEADER) {
        return CRAFT_ENOTLEADER;
    }
    if (n->transfer_target != 0) {
        return CRAFT_EBUSY;
    }
    if (target == 0) {
        craft_index best = 0;
        for (unsigned i = 0; i < n->n_progress; i++) {
            const struct craft__progress *p = &n->progress[i];
            if (p->id != n->id && p->role == CRAFT_VOTER && (target == 0 || p->match > best)) {
                target = p->id;
                best = p->match;
            }
        }
        if (target == 0) {
            return CRAFT_ENOTFOUND;
        }
    }
    if (target == n->id || !craft__is_voter(n, target)) {
        return CRAFT_EINVAL;
    }
    n->transfer_target = target;
    n->transfer_elapsed = 0;
    n->transfer_sent = false;
    return craft__transfer_progress(n, craft__progress_get(n, target));
}

/* The target made progress (or the transfer just started): once its log matches ours, tell it
 * to campaign; until then keep sending it what it lacks. */
int craft__transfer_progress(struct craft_node *n, struct craft__progress *p)
{
    if (p == NULL || p->id != n->transfer_target || n->transfer_sent) {
        return 0;
    }
    if (p->match == craft__log_last(&n->log)) {
        return send_timeout_now(n, p->id);
    }
    return craft__send_append(n, p, false);
}

void craft__transfer_tick(struct craft_node *n)
{
    if (n->transfer_target != 0 && ++n->transfer_elapsed >= n->cfg.election_ticks) {
        craft__transfer_clear(n);
    }
}

craft_id craft_node_transfer_target(const struct craft_node *n)
{
    return n->transfer_target;
}
