/* The event queue: a binary heap over (at, order). */
#include "events.h"

static int before(const struct craft__sim_item *a, const struct craft__sim_item *b)
{
    if (a->at != b->at) {
        return a->at < b->at;
    }
    return a->order < b->order;
}

static void swap(struct craft__sim_item *a, struct craft__sim_item *b)
{
    struct craft__sim_item t = *a;
    *a = *b;
    *b = t;
}

void craft__sim_queue_init(struct craft__sim_queue *q, const struct craft_allocator *a)
{
    q->alloc = a;
    q->items = NULL;
    q->n = 0;
    q->cap = 0;
    q->next_order = 0;
}

void craft__sim_queue_close(struct craft__sim_queue *q)
{
    craft_free(q->alloc, q->items);
    q->items = NULL;
    q->n = q->cap = 0;
}

int craft__sim_queue_push(struct craft__sim_queue *q, struct craft__sim_item item)
{
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 64;
        struct craft__sim_item *items = craft_realloc(q->alloc, q->items, cap * sizeof(*items));
        if (items == NULL) {
            return CRAFT_ENOMEM;
        }
        q->items = items;
        q->cap = cap;
    }
    item.order = q->next_order++;
    size_t i = q->n++;
    q->items[i] = item;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(&q->items[i], &q->items[parent])) {
            break;
        }
        swap(&q->items[i], &q->items[parent]);
        i = parent;
    }
    return 0;
}

const struct craft__sim_item *craft__sim_queue_peek(const struct craft__sim_queue *q)
{
    return q->n ? &q->items[0] : NULL;
}

int craft__sim_queue_pop(struct craft__sim_queue *q, struct craft__sim_item *out)
{
    if (q->n == 0) {
        return 0;
    }
    *out = q->items[0];
    q->items[0] = q->items[--q->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < q->n && before(&q->items[l], &q->items[m])) {
            m = l;
        }
        if (r < q->n && before(&q->items[r], &q->items[m])) {
            m = r;
        }
        if (m == i) {
            break;
        }
        swap(&q->items[i], &q->items[m]);
        i = m;
    }
    return 1;
}

size_t craft__sim_queue_len(const struct craft__sim_queue *q)
{
    return q->n;
}

struct craft__sim_item *craft__sim_queue_at(struct craft__sim_queue *q, size_t i)
{
    return &q->items[i];
}
