/* Messages and bytes per peer and message type (craft_messages_sent_total{peer,type} and the
 * others of docs/metrics.md), and when each peer was last heard from (the status's
 * last_contact_ms). The transport counts a message when it is queued for sending (its encoded
 * frame length, prefix included) and when a frame is decoded (the same); written on the loop
 * thread only, read by any (metrics.h says how).
 *
 * A row is claimed the first time an id appears and never given back, so a counter never goes
 * backwards while the node lives; all clients (id 0) share a row; ids beyond the table share
 * the last one ("other"). */
#include "uv/metrics.h"

static const int type_tags[CRAFT__TRAFFIC_TYPES] = {1, 2, 3, 4, 5, 6, 7, 64, 65, 66};

int craft__traffic_type_tag(unsigned k)
{
    return k < CRAFT__TRAFFIC_TYPES ? type_tags[k] : 0;
}

static int type_index(int type)
{
    if (type >= 1 && type <= 7) {
        return type - 1;
    }
    if (type >= 64 && type <= 66) {
        return 7 + (type - 64);
    }
    return -1;
}

/* The row of peer (claimed when new), or the "other" row. */
static struct craft__traffic_row *row_of(struct craft__traffic *t, craft_id peer, bool claim)
{
    const unsigned last = CRAFT__TRAFFIC_ROWS - 1;
    for (unsigned i = 0; i < last; i++) {
        struct craft__traffic_row *r = &t->rows[i];
        if (!atomic_load_explicit(&r->used, memory_order_acquire)) {
            if (!claim) {
                return NULL;
            }
            atomic_store_explicit(&r->id, peer, memory_order_relaxed);
            /* Readers that see used also see the id (release / acquire). */
            atomic_store_explicit(&r->used, true, memory_order_release);
            return r;
        }
        if (atomic_load_explicit(&r->id, memory_order_relaxed) == peer) {
            return r;
        }
    }
    if (claim && !atomic_load_explicit(&t->rows[last].used, memory_order_acquire)) {
        atomic_store_explicit(&t->rows[last].id, UINT64_MAX, memory_order_relaxed);
        atomic_store_explicit(&t->rows[last].used, true, memory_order_release);
    }
    return claim ? &t->rows[last] : NULL;
}

void craft__traffic_sent(struct craft__traffic *t, craft_id peer, int type, size_t bytes)
{
    int k = type_index(type);
    if (t == NULL || k < 0) {
        return;
    }
    struct craft__traffic_row *r = row_of(t, peer, true);
    craft__count(&r->sent_msgs[k], 1);
    craft__count(&r->sent_bytes[k], bytes);
}

void craft__traffic_received(struct craft__traffic *t, craft_id peer, int type, size_t bytes,
                             uint64_t now_ms)
{
    int k = type_index(type);
    if (t == NULL || k < 0) {
        return;
    }
    struct craft__traffic_row *r = row_of(t, peer, true);
    craft__count(&r->recv_msgs[k], 1);
    craft__count(&r->recv_bytes[k], bytes);
    craft__gauge_set(&r->last_recv_ms, now_ms != 0 ? now_ms : 1);
}

uint64_t craft__traffic_last_heard(struct craft__traffic *t, craft_id peer)
{
    struct craft__traffic_row *r = row_of(t, peer, false);
    return r != NULL && peer != 0 ? craft__value(&r->last_recv_ms) : 0;
}
