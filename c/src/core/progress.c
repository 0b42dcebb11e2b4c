/* The leader's view of each server: how much of the log it holds (match), what to send next
 * (next), and the flow-control mode (thesis 10.2.1 and 10.2.2, named as in etcd-io/raft):
 *
 *   probe      we do not know where the follower's log diverges: one AppendEntries at a time,
 *              each answer moves next back (with the conflict hint) or forward;
 *   replicate  the logs match up to match: AppendEntries are pipelined, up to max_inflight
 *              in flight, next advancing optimistically as they are sent;
 *   snapshot   the follower needs entries that were compacted: a snapshot is in flight.
 *
 * The leader is in the table too, so that quorum arithmetic treats every voter alike; its
 * match is what its own disk holds (craft__progress_self_match). */
#include <string.h>

#include "core/node.h"

struct craft__progress *craft__progress_get(struct craft_node *n, craft_id id)
{
    for (unsigned i = 0; i < n->n_progress; i++) {
        if (n->progress[i].id == id) {
            return &n->progress[i];
        }
    }
    return NULL;
}

static void reset_one(struct craft_node *n, struct craft__progress *p)
{
    p->match = 0;
    p->next = craft__log_last(&n->log) + 1;
    p->mode = CRAFT__PROBE;
    p->probe_sent = false;
    p->recent_active = false;
    p->inflight_head = 0;
    p->inflight_count = 0;
    p->stalls = 0;
    p->vote = 0;
}

void craft__progress_free(struct craft_node *n)
{
    for (unsigned i = 0; i < n->n_progress; i++) {
        craft_free(n->alloc, n->progress[i].inflight);
    }
    craft_free(n->alloc, n->progress);
    craft_free(n->alloc, n->quorum_scratch);
    n->progress = NULL;
    n->quorum_scratch = NULL;
    n->n_progress = 0;
}

/* Makes the table follow the configuration in effect, keeping what is known of servers that
 * stay (a membership change must not forget how far a follower got). */
int craft__progress_rebuild(struct craft_node *n)
{
    unsigned count = n->conf.n;
    struct craft__progress *fresh = craft_calloc(n->alloc, count ? count : 1, sizeof *fresh);
    craft_index *scratch = craft_calloc(n->alloc, count ? count : 1, sizeof *scratch);
    if (fresh == NULL || scratch == NULL) {
        craft_free(n->alloc, fresh);
        craft_free(n->alloc, scratch);
        return CRAFT_ENOMEM;
    }
    for (unsigned i = 0; i < count; i++) {
        const struct craft_server *s = &n->conf.servers[i];
        struct craft__progress *old = craft__progress_get(n, s->id);
        if (old != NULL) {
            fresh[i] = *old;
            old->inflight = NULL; /* moved */
        } else {
            fresh[i].id = s->id;
            reset_one(n, &fresh[i]);
            fresh[i].inflight = craft_calloc(n->alloc, n->cfg.max_inflight, sizeof(craft_index));
            if (fresh[i].inflight == NULL) {
                for (unsigned k = 0; k <= i; k++) {
                    craft_free(n->alloc, fresh[k].inflight);
                }
                craft_free(n->alloc, fresh);
                craft_free(n->alloc, scratch);
                return CRAFT_ENOMEM;
            }
        }
        fresh[i].role = s->role;
    }
    craft__progress_free(n);
    n->progress = fresh;
    n->n_progress = count;
    n->quorum_scratch = scratch;
    return 0;
}

void craft__progress_reset_all(struct craft_node *n)
{
    for (unsigned i = 0; i < n->n_progress; i++) {
        reset_one(n, &n->progress[i]);
    }
}

void craft__progress_become_probe(struct craft__progress *p)
{
    p->mode = CRAFT__PROBE;
    p->probe_sent = false;
    p->inflight_head = 0;
    p->inflight_count = 0;
    p->stalls = 0;
    p->next = p->match + 1;
}

void craft__progress_become_replicate(struct craft__progress *p)
{
    p->mode = CRAFT__REPLICATE;
    p->probe_sent = false;
    p->inflight_head = 0;
    p->inflight_count = 0;
    p->stalls = 0;
    p->next = p->match + 1;
}

bool craft__progress_paused(const struct craft_node *n, const struct craft__progress *p)
{
    switch (p->mode) {
    case CRAFT__PROBE:
        return p->probe_sent;
    case CRAFT__REPLICATE:
        return p->inflight_count >= n->cfg.max_inflight;
    default:
        return true;
    }
}

/* Records an AppendEntries carrying entries up to last. */
void craft__progress_sent(struct craft_node *n, struct craft__progress *p, craft_index last,
                          size_t n_entries)
{
    if (p->mode == CRAFT__REPLICATE) {
        if (n_entries > 0) {
            unsigned slot = (p->inflight_head + p->inflight_count) % n->cfg.max_inflight;
            p->inflight[slot] = last;
            p->inflight_count++;
            p->next = last + 1;
        }
    } else if (p->mode == CRAFT__PROBE) {
        p->probe_sent = true;
    }
}

/* Frees the window slots of every AppendEntries acknowledged up to index. */
void craft__progress_ack(const struct craft_node *n, struct craft__progress *p,
                         craft_index index)
{
    while (p->inflight_count > 0 && p->inflight[p->inflight_head] <= index) {
        p->inflight_count--;
        p->inflight_head = (p->inflight_head + 1) % n->cfg.max_inflight;
    }
}

craft_index craft__progress_self_match(const struct craft_node *n)
{
    return n->persisted_index;
}
