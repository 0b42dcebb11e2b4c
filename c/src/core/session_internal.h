/*
 * session_internal.h: the data structures of the client session table (craft/session.h), shared
 * by session.c (the table and its apply rules, thesis 6.3) and session_codec.c (the command
 * envelope and the snapshot format).
 *
 * A table holds its sessions twice: in an open-addressing hash keyed by client id, for lookup,
 * and in a doubly linked list ordered by last activity (least recent first). Activity is always
 * the index of the entry being applied, which only grows, so moving a touched session to the
 * tail keeps the list sorted: expiry by distance pops from the head, and so does the eviction
 * of the least recently active session at max_sessions. Nothing depends on addresses or on the
 * hash's layout, so every replica makes the same decisions.
 */
#ifndef CRAFT_SESSION_INTERNAL_H
#define CRAFT_SESSION_INTERNAL_H

#include "craft/session.h"

/* One cached result. Results of a session are kept sorted by seq, all above its floor. */
struct craft__session_result {
    uint64_t seq;
    uint8_t *data; /* NULL when len is 0 */
    size_t len;
};

struct craft__session {
    uint64_t client;      /* the index of the REGISTER entry */
    uint64_t last_active; /* index of the last entry of this session */
    /* Every seq <= floor is discarded: acknowledged by the client, or dropped from a full
     * cache. A command at or below it is STALE. Every cached result has seq > floor. */
    uint64_t floor;
    struct craft__session_result *results;
    uint32_t n_results;
    uint32_t cap_results;
    struct craft__session *prev, *next; /* activity order */
};

/* The sessions proper; craft_sessions_decode builds a fresh one and swaps it in. */
struct craft__session_set {
    struct craft__session **slots; /* hash; NULL = empty; cap is a power of two */
    uint32_t cap;
    uint32_t count;
    struct craft__session *head, *tail; /* least and most recently active */
    craft_index last_index;
};

struct craft_sessions {
    const struct craft_allocator *alloc;
    struct craft_sessions_options o;
    struct craft__session_set set;
    /* Between an APPLY outcome and craft_sessions_record: the command waiting for its
     * result. Its slot may be absent (a full cache that dropped it at once). */
    bool pending;
    uint64_t pending_client;
    uint64_t pending_seq;
};

/* Set operations (session.c). */
void craft__session_set_init(struct craft__session_set *set);
void craft__session_set_clear(struct craft__session_set *set, const struct craft_allocator *a);
struct craft__session *craft__session_find(const struct craft__session_set *set, uint64_t client);
/* Makes room in the hash for one more session. */
int craft__session_reserve(struct craft__session_set *set, const struct craft_allocator *a);
/* Inserts s (allocated with a) at the tail of the activity list; room must be reserved. */
void craft__session_insert(struct craft__session_set *set, struct craft__session *s);
/* Unlinks s and frees it. */
void craft__session_remove(struct craft__session_set *set, const struct craft_allocator *a,
                           struct craft__session *s);
void craft__session_free(const struct craft_allocator *a, struct craft__session *s);
/* Drops the cached result at position i (and raises the floor to its seq). */
void craft__session_drop_result(const struct craft_allocator *a, struct craft__session *s,
                                uint32_t i);
/* Discards everything at or below floor. */
void craft__session_raise_floor(const struct craft_allocator *a, struct craft__session *s,
                                uint64_t floor);

#endif /* CRAFT_SESSION_INTERNAL_H */
