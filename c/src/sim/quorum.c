/*
 * The checker's configuration and quorum rules (thesis chapter 4). Raft's safety rests on any
 * two quorums that decide something -- an election, a commit -- sharing a server. With a fixed
 * membership that is arithmetic; with membership changes it holds only if every configuration
 * differs from the one before it by at most one voter, a leader has only one change in flight,
 * and a leader starts a change only after committing an entry of its own term (Ongaro's 2015
 * correction, "bug in single-server membership changes", raft-dev). Without the last rule a
 * change appended by a deposed leader and a change of the next leader can yield two disjoint
 * majorities. So the checker, never taking a core's word for it:
 *
 * - Election quorum: a new leader must have received granted votes (counted from the messages
 *   the network delivered to it) from a majority of the voters of its configuration, itself
 *   included only if its own vote (its term and vote for itself) was durable when it won: a
 *   vote that a crash can take back is no vote. Recorded per term with that configuration.
 * - Commit quorum: when a leader's commit index advances, the entry there must be of the
 *   leader's term (paper Figure 8: earlier entries are committed only indirectly) and a
 *   majority of the voters of its configuration (before or after the input) must hold it in
 *   their stores -- durably, since an acknowledgement must follow persistence.
 * - One change at a time: when a leader appends a configuration entry, the previous one in its
 *   log must be committed, the leader must have committed an entry of its term, and the voters
 *   change by at most one.
 * - The committed log: consecutive configuration entries differ by at most one voter.
 *
 * A set of servers is a 64-bit mask (bit i for server i + 1).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "sim_internal.h"

static unsigned count(uint64_t m)
{
    return (unsigned)__builtin_popcountll(m);
}

static uint64_t bit(craft_id id)
{
    return id >= 1 && id <= 64 ? 1ull << (id - 1) : 0;
}

static bool majority_of(uint64_t have, uint64_t voters)
{
    return 2 * count(have & voters) > count(voters);
}

uint64_t craft__sim_voters_of(const struct craft_configuration *c)
{
    uint64_t m = 0;
    for (unsigned k = 0; k < c->n; k++) {
        if (c->servers[k].role == CRAFT_VOTER) {
            m |= bit(c->servers[k].id);
        }
    }
    return m;
}

void craft__sim_mask_format(uint64_t mask, char *buf, size_t len)
{
    size_t pos = 0;
    if (len == 0) {
        return;
    }
    buf[0] = '\0';
    int k = snprintf(buf, len, "{");
    pos = k > 0 ? (size_t)k : 0;
    bool first = true;
    for (unsigned i = 0; i < 64 && pos < len; i++) {
        if (mask & (1ull << i)) {
            k = snprintf(buf + pos, len - pos, "%s%u", first ? "" : ",", i + 1);
            pos += k > 0 ? (size_t)k : 0;
            first = false;
        }
    }
    if (pos < len) {
        snprintf(buf + pos, len - pos, "}");
    }
}

static int violation(struct craft_sim *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int violation(struct craft_sim *s, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return craft__sim_fail(s, CRAFT_SIM_EVIOLATION, "%s", msg);
}

void craft__sim_inv_grant(struct craft_sim *s, unsigned i, craft_id from, craft_term term)
{
    struct craft__sim_node *sn = &s->nodes[i];
    if (term < sn->grant_term) {
        return; /* a late answer from an older election (the core ignores it too) */
    }
    if (sn->grant_term != term) {
        sn->grant_term = term;
        sn->grant_mask = 0;
    }
    sn->grant_mask |= bit(from);
}

int craft__sim_inv_elected(struct craft_sim *s, unsigned i, craft_term term)
{
    struct craft__sim_node *sn = &s->nodes[i];
    if (term >= s->n_terms || s->terms[term].elected_conf != 0 || !sn->up) {
        return 0; /* recorded already (the term table is grown by craft__sim_inv_role) */
    }
    uint64_t voters = craft__sim_core_voters(s, i);
    /* Its own vote counts only if it is durable (paper Figure 2; the core waits for it too):
     * a vote that a crash can take back lets the same server vote again in this term. */
    bool self_durable = sn->durable.term == term && sn->durable.vote == sn->id;
    uint64_t quorum = (self_durable ? bit(sn->id) : 0) |
                      (sn->grant_term == term ? sn->grant_mask : 0);
    if (!majority_of(quorum, voters)) {
        char q[200], v[200];
        craft__sim_mask_format(quorum & voters, q, sizeof(q));
        craft__sim_mask_format(voters, v, sizeof(v));
        return violation(s,
                         "election quorum: n%u became leader of term %" PRIu64
                         " with the votes of %s, not a majority of its configuration's "
                         "voters %s",
                         i + 1, term, q, v);
    }
    s->terms[term].elected_by = quorum;
    s->terms[term].elected_conf = voters;
    return 0;
}

/* The voters of conf that durably store the entry (index, term): their store holds it, or
 * holds a snapshot that covers it (a snapshot covers only committed entries). */
static uint64_t stored_by(struct craft_sim *s, uint64_t conf, craft_index index, craft_term term)
{
    uint64_t have = 0;
    for (unsigned j = 0; j < s->n && j < 64; j++) {
        if (!(conf & (1ull << j))) {
            continue;
        }
        struct craft_store *st = s->nodes[j].store;
        craft_term t = 0;
        int rc = st->term(st->impl, index, &t);
        if ((rc == 0 && t == term) || rc == CRAFT_ECOMPACTED) {
            have |= 1ull << j;
        }
    }
    return have;
}

int craft__sim_inv_leader_commit(struct craft_sim *s, unsigned i, craft_term term,
                                 uint64_t conf_before, craft_index commit)
{
    struct craft__sim_node *sn = &s->nodes[i];
    struct craft__sim_shadow *l = &sn->log;
    if (commit <= l->base || commit > l->base + l->n) {
        return 0; /* not in the mirror: record_committed reports a commit beyond the log */
    }
    craft_term t = l->v[commit - l->base - 1].term;
    if (t != term) {
        return violation(s,
                         "commit rule (Figure 8): n%u, leader of term %" PRIu64
                         ", committed index %" PRIu64 " of term %" PRIu64 " by counting replicas",
                         i + 1, term, commit, t);
    }
    uint64_t conf_now = craft__sim_core_voters(s, i);
    uint64_t before = stored_by(s, conf_before, commit, t);
    uint64_t now = conf_now == conf_before ? before : stored_by(s, conf_now, commit, t);
    if (majority_of(before, conf_before) || majority_of(now, conf_now)) {
        return 0;
    }
    char h[200], v[200];
    craft__sim_mask_format(now, h, sizeof(h));
    craft__sim_mask_format(conf_now, v, sizeof(v));
    return violation(s,
                     "commit quorum: n%u, leader of term %" PRIu64 ", committed %" PRIu64
                     "/%" PRIu64 " but only %s of its configuration's voters %s store it",
                     i + 1, term, commit, t, h, v);
}

int craft__sim_inv_conf_append(struct craft_sim *s, unsigned i, const struct craft_entry *e,
                               craft_index commit_before)
{
    struct craft__sim_node *sn = &s->nodes[i];
    struct craft__sim_shadow *l = &sn->log;
    if (e->index <= l->base || e->index > l->base + l->n) {
        return 0;
    }
    const struct craft__sim_slot *mine = &l->v[e->index - l->base - 1];
    char v[80], ln[80];
    struct craft_configuration c;
    uint64_t learners = 0;
    if (craft_configuration_decode(e->data, e->size, s->alloc, &c) == 0) {
        for (unsigned k = 0; k < c.n; k++) {
            if (c.servers[k].role == CRAFT_LEARNER) {
                learners |= bit(c.servers[k].id);
            }
        }
        craft_configuration_close(&c, s->alloc);
    }
    craft__sim_mask_format(mine->voters, v, sizeof(v));
    craft__sim_mask_format(learners, ln, sizeof(ln));
    craft__sim_emit_text(s, CRAFT_SIM_EV_MEMBERSHIP, sn->id,
                         "configuration %" PRIu64 "/%" PRIu64 ": voters %.60s learners %.60s",
                         e->index, e->term, v, ln);

    /* The 2015 correction: an entry of the leader's own term committed first. */
    if (commit_before <= l->base || commit_before > l->base + l->n ||
        l->v[commit_before - l->base - 1].term != e->term) {
        return violation(s,
                         "membership: n%u, leader of term %" PRIu64
                         ", appended configuration %" PRIu64
                         " before committing an entry of its term (commit %" PRIu64 ")",
                         i + 1, e->term, e->index, commit_before);
    }
    for (craft_index p = e->index - 1; p > l->base; p--) {
        const struct craft__sim_slot *prev = &l->v[p - l->base - 1];
        if (prev->type != CRAFT_ENTRY_CONFIG) {
            continue;
        }
        if (p > commit_before) {
            return violation(s,
                             "membership: n%u, leader of term %" PRIu64
                             ", appended configuration %" PRIu64 " while the previous one (%" PRIu64
                             ") was not committed (commit %" PRIu64 ")",
                             i + 1, e->term, e->index, p, commit_before);
        }
        if (count(prev->voters ^ mine->voters) > 1) {
            char pv[80];
            craft__sim_mask_format(prev->voters, pv, sizeof(pv));
            return violation(s,
                             "membership: n%u appended configuration %" PRIu64
                             " with voters %s after %s: more than one voter changed",
                             i + 1, e->index, v, pv);
        }
        break;
    }
    return 0;
}

int craft__sim_inv_conf_committed(struct craft_sim *s, craft_index index,
                                  const struct craft__sim_slot *sl)
{
    if (s->conf_known && count(s->committed_voters ^ sl->voters) > 1) {
        char a[80], b[80];
        craft__sim_mask_format(s->committed_voters, a, sizeof(a));
        craft__sim_mask_format(sl->voters, b, sizeof(b));
        return violation(s,
                         "membership: the committed configuration at %" PRIu64
                         " has voters %s, the previous committed one %s: more than one voter "
                         "changed",
                         index, b, a);
    }
    s->committed_voters = sl->voters;
    s->conf_known = true;
    return 0;
}
