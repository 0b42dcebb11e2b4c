/*
 * The simulator's event queue: a binary min-heap ordered by virtual time, ties broken by the
 * order of insertion. The tie-break is what makes runs deterministic: two events due at the
 * same millisecond always run in the order they were scheduled.
 */
#ifndef CRAFT_SIM_EVENTS_H
#define CRAFT_SIM_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "craft.h"

enum craft__sim_item_kind {
    CRAFT__SIM_TICK = 1, /* node's timer fired */
    CRAFT__SIM_DELIVER,  /* ptr is a struct craft__sim_packet arriving at its destination */
    CRAFT__SIM_DISK      /* node's oldest disk write completes */
};

struct craft__sim_item {
    uint64_t at;    /* virtual ms */
    uint64_t order; /* insertion number: the tie-break */
    uint8_t kind;
    uint32_t node;        /* index of the node concerned (0-based) */
    uint32_t incarnation; /* the node's incarnation when scheduled: stale items are ignored */
    void *ptr;
};

struct craft__sim_queue {
    const struct craft_allocator *alloc;
    struct craft__sim_item *items;
    size_t n, cap;
    uint64_t next_order;
};

void craft__sim_queue_init(struct craft__sim_queue *q, const struct craft_allocator *a);
/* Frees the heap only: the caller releases what the items point to (see _at()). */
void craft__sim_queue_close(struct craft__sim_queue *q);
/* CRAFT_ENOMEM or 0; item->order is assigned here. */
int craft__sim_queue_push(struct craft__sim_queue *q, struct craft__sim_item item);
/* The earliest item, or NULL when empty. */
const struct craft__sim_item *craft__sim_queue_peek(const struct craft__sim_queue *q);
/* Removes the earliest item into *out; 0 when the queue was empty, 1 otherwise. */
int craft__sim_queue_pop(struct craft__sim_queue *q, struct craft__sim_item *out);
/* Item i in heap order (for releasing every pending item on free). */
size_t craft__sim_queue_len(const struct craft__sim_queue *q);
struct craft__sim_item *craft__sim_queue_at(struct craft__sim_queue *q, size_t i);

#endif /* CRAFT_SIM_EVENTS_H */
