/* The in-memory log (see log.h). */
#include <string.h>

#include "core/log.h"

void craft__log_init(struct craft__log *l, const struct craft_allocator *a)
{
    memset(l, 0, sizeof *l);
    l->alloc = a;
}

static struct craft_entry *slot(const struct craft__log *l, size_t k)
{
    size_t pos = l->head + k;
    if (pos >= l->cap) {
        pos -= l->cap;
    }
    return &l->ring[pos];
}

static void release(struct craft__log *l, struct craft_entry *e)
{
    l->bytes -= e->size;
    craft_free(l->alloc, (void *)e->data);
    e->data = NULL;
    e->size = 0;
}

void craft__log_close(struct craft__log *l)
{
    for (size_t k = 0; k < l->count; k++) {
        release(l, slot(l, k));
    }
    craft_free(l->alloc, l->ring);
    l->ring = NULL;
    l->cap = l->count = l->head = 0;
}

const struct craft_entry *craft__log_get(const struct craft__log *l, craft_index i)
{
    if (i <= l->offset || i > l->offset + l->count) {
        return NULL;
    }
    return slot(l, (size_t)(i - l->offset - 1));
}

craft_term craft__log_term(const struct craft__log *l, craft_index i)
{
    if (i == l->offset) {
        return l->offset_term;
    }
    const struct craft_entry *e = craft__log_get(l, i);
    return e != NULL ? e->term : 0;
}

craft_term craft__log_last_term(const struct craft__log *l)
{
    return craft__log_term(l, craft__log_last(l));
}

static int grow(struct craft__log *l)
{
    size_t cap = l->cap == 0 ? 64 : l->cap * 2;
    struct craft_entry *ring = craft_malloc(l->alloc, cap * sizeof *ring);
    if (ring == NULL) {
        return CRAFT_ENOMEM;
    }
    for (size_t k = 0; k < l->count; k++) {
        ring[k] = *slot(l, k);
    }
    craft_free(l->alloc, l->ring);
    l->ring = ring;
    l->cap = cap;
    l->head = 0;
    return 0;
}

int craft__log_append(struct craft__log *l, craft_term term, uint8_t type, const void *data,
                      size_t size)
{
    /* Overflow guard (issue 13): no index beyond CRAFT_INDEX_MAX, so last + 1 never wraps. */
    if (l->offset + l->count >= CRAFT_INDEX_MAX) {
        return CRAFT_ETOOBIG;
    }
    if (l->count == l->cap) {
        int rc = grow(l);
        if (rc != 0) {
            return rc;
        }
    }
    void *copy = NULL;
    if (size > 0) {
        copy = craft_malloc(l->alloc, size);
        if (copy == NULL) {
            return CRAFT_ENOMEM;
        }
        memcpy(copy, data, size);
    }
    struct craft_entry *e = slot(l, l->count);
    e->term = term;
    e->index = l->offset + l->count + 1;
    e->type = type;
    e->data = copy;
    e->size = size;
    l->count++;
    l->bytes += size;
    return 0;
}

void craft__log_truncate(struct craft__log *l, craft_index from)
{
    while (l->count > 0 && l->offset + l->count >= from) {
        release(l, slot(l, l->count - 1));
        l->count--;
    }
}

void craft__log_compact(struct craft__log *l, craft_index upto)
{
    if (upto <= l->offset) {
        return;
    }
    if (upto > craft__log_last(l)) {
        upto = craft__log_last(l);
    }
    craft_term term = craft__log_term(l, upto);
    while (l->offset < upto) {
        release(l, slot(l, 0));
        l->head = l->head + 1 == l->cap ? 0 : l->head + 1;
        l->count--;
        l->offset++;
    }
    l->offset_term = term;
}

void craft__log_reset(struct craft__log *l, craft_index index, craft_term term)
{
    craft__log_truncate(l, l->offset + 1);
    l->head = 0;
    l->offset = index;
    l->offset_term = term;
}
