/* The in-memory Raft log of a node: the entries after its snapshot point, each owning a copy
 * of its payload, in a ring so that compaction at the front and appends at the back are both
 * cheap. The core keeps its whole uncompacted log in memory (as canonical/raft does); the
 * snapshot threshold bounds how large that gets. */
#ifndef CRAFT_CORE_LOG_H
#define CRAFT_CORE_LOG_H

#include "craft.h"

struct craft__log {
    const struct craft_allocator *alloc;
    struct craft_entry *ring;
    size_t cap;
    size_t head;  /* ring slot of the first entry */
    size_t count; /* entries held */
    craft_index offset;    /* index just before the first entry: the snapshot/compaction point */
    craft_term offset_term; /* term of the entry at offset (0 if offset is 0) */
    uint64_t bytes;         /* payload bytes held */
};

void craft__log_init(struct craft__log *l, const struct craft_allocator *a);
void craft__log_close(struct craft__log *l);

static inline craft_index craft__log_first(const struct craft__log *l)
{
    return l->offset + 1;
}

static inline craft_index craft__log_last(const struct craft__log *l)
{
    return l->offset + l->count;
}

/* The entry at index i, or NULL if it is not held. */
const struct craft_entry *craft__log_get(const struct craft__log *l, craft_index i);
/* Term at i: also known for the offset itself; 0 when unknown. */
craft_term craft__log_term(const struct craft__log *l, craft_index i);
craft_term craft__log_last_term(const struct craft__log *l);
/* Appends a copy of one entry at last + 1 (its index field is overwritten). */
int craft__log_append(struct craft__log *l, craft_term term, uint8_t type, const void *data,
                      size_t size);
/* Removes every entry with index >= from (from > offset). */
void craft__log_truncate(struct craft__log *l, craft_index from);
/* Removes every entry with index <= upto, remembering its term as the new offset term. */
void craft__log_compact(struct craft__log *l, craft_index upto);
/* Drops everything and restarts the log right after a snapshot at (index, term). */
void craft__log_reset(struct craft__log *l, craft_index index, craft_term term);

#endif
