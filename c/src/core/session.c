/*
 * The client session table (craft/session.h): exactly-once application of client commands, as
 * the Raft thesis describes it in section 6.3 ("Implementing linearizable semantics"):
 *
 *   "each client is given a unique identifier, and clients assign unique serial numbers to
 *    every command. Each server's state machine maintains a session for each client. The
 *    session tracks the latest serial number processed for the client, along with the
 *    associated response. If a server receives a command whose serial number has already been
 *    executed, it responds immediately without re-executing the request."
 *
 * We keep a result per applied sequence number above the client's ack rather than only the
 * latest one, so a client may have several commands in flight (the thesis's extension: "the
 * client includes the lowest sequence number for which it has not yet received a response, and
 * the state machine then discards all responses for lower sequence numbers"; our ack is that
 * number minus one).
 *
 * The thesis also requires that servers agree on when a session expires, and suggests bounding
 * the number of sessions with a least-recently-used policy. Time is not an
 * input of this module at all: a session's age is the distance, in log indexes, from its last
 * entry, and the LRU victim at max_sessions is the session whose last entry is oldest. Both are
 * functions of the committed log alone, so every replica expires the same sessions at the same
 * entry.
 *
 * Every allocation an entry needs is made before the table is changed, so CRAFT_ENOMEM leaves
 * the table as it was and the driver may retry the same entry.
 */
#include <string.h>

#include "session_internal.h"

#define DEFAULT_MAX_SESSIONS 1024
#define DEFAULT_MAX_CACHED_RESULTS 128
#define MIN_HASH_CAP 16u

void craft_sessions_options_init(struct craft_sessions_options *o)
{
    memset(o, 0, sizeof(*o));
    o->max_sessions = DEFAULT_MAX_SESSIONS;
    o->expire_after = 0;
    o->max_cached_results = DEFAULT_MAX_CACHED_RESULTS;
    o->strict = false;
}

const char *craft_session_outcome_name(int kind)
{
    switch (kind) {
    case CRAFT_SESSION_NONE:
        return "none";
    case CRAFT_SESSION_REGISTERED:
        return "registered";
    case CRAFT_SESSION_APPLY:
        return "apply";
    case CRAFT_SESSION_DUPLICATE:
        return "duplicate";
    case CRAFT_SESSION_UNKNOWN:
        return "unknown";
    case CRAFT_SESSION_STALE:
        return "stale";
    case CRAFT_SESSION_UNREGISTERED:
        return "unregistered";
    case CRAFT_SESSION_MALFORMED:
        return "malformed";
    default:
        return "invalid";
    }
}

/* ------------------------------------------------------------------------------------------
 * The set: hash by client id plus the activity list
 * ---------------------------------------------------------------------------------------- */

/* splitmix64's finalizer: client ids are consecutive-ish log indexes, so spread them. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

void craft__session_set_init(struct craft__session_set *set)
{
    memset(set, 0, sizeof(*set));
}

void craft__session_free(const struct craft_allocator *a, struct craft__session *s)
{
    for (uint32_t i = 0; i < s->n_results; i++) {
        craft_free(a, s->results[i].data);
    }
    craft_free(a, s->results);
    craft_free(a, s);
}

void craft__session_set_clear(struct craft__session_set *set, const struct craft_allocator *a)
{
    struct craft__session *s = set->head;
    while (s != NULL) {
        struct craft__session *next = s->next;
        craft__session_free(a, s);
        s = next;
    }
    craft_free(a, set->slots);
    craft__session_set_init(set);
}

struct craft__session *craft__session_find(const struct craft__session_set *set, uint64_t client)
{
    if (set->cap == 0) {
        return NULL;
    }
    uint32_t mask = set->cap - 1;
    for (uint32_t i = (uint32_t)(mix(client) & mask);; i = (i + 1) & mask) {
        struct craft__session *s = set->slots[i];
        if (s == NULL) {
            return NULL;
        }
        if (s->client == client) {
            return s;
        }
    }
}

static void hash_put(struct craft__session **slots, uint32_t cap, struct craft__session *s)
{
    uint32_t mask = cap - 1;
    uint32_t i = (uint32_t)(mix(s->client) & mask);
    while (slots[i] != NULL) {
        i = (i + 1) & mask;
    }
    slots[i] = s;
}

int craft__session_reserve(struct craft__session_set *set, const struct craft_allocator *a)
{
    /* Load factor at most 1/2 keeps probe sequences short. */
    if ((uint64_t)(set->count + 1) * 2 <= set->cap) {
        return 0;
    }
    uint64_t cap = set->cap ? (uint64_t)set->cap * 2 : MIN_HASH_CAP;
    while ((uint64_t)(set->count + 1) * 2 > cap) {
        cap *= 2;
    }
    if (cap > UINT32_MAX / 2 + 1 || cap > SIZE_MAX / sizeof(*set->slots)) {
        return CRAFT_ENOMEM;
    }
    struct craft__session **slots = craft_calloc(a, (size_t)cap, sizeof(*slots));
    if (slots == NULL) {
        return CRAFT_ENOMEM;
    }
    for (struct craft__session *s = set->head; s != NULL; s = s->next) {
        hash_put(slots, (uint32_t)cap, s);
    }
    craft_free(a, set->slots);
    set->slots = slots;
    set->cap = (uint32_t)cap;
    return 0;
}

static void list_append(struct craft__session_set *set, struct craft__session *s)
{
    s->prev = set->tail;
    s->next = NULL;
    if (set->tail != NULL) {
        set->tail->next = s;
    } else {
        set->head = s;
    }
    set->tail = s;
}

static void list_unlink(struct craft__session_set *set, struct craft__session *s)
{
    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else {
        set->head = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    } else {
        set->tail = s->prev;
    }
    s->prev = s->next = NULL;
}

void craft__session_insert(struct craft__session_set *set, struct craft__session *s)
{
    hash_put(set->slots, set->cap, s);
    list_append(set, s);
    set->count++;
}

/* Removes s from the hash by backward-shift deletion (no tombstones, so lookups stay short
 * however many sessions come and go). */
static void hash_del(struct craft__session_set *set, struct craft__session *s)
{
    uint32_t mask = set->cap - 1;
    uint32_t i = (uint32_t)(mix(s->client) & mask);
    while (set->slots[i] != s) {
        i = (i + 1) & mask;
    }
    set->slots[i] = NULL;
    for (uint32_t j = (i + 1) & mask; set->slots[j] != NULL; j = (j + 1) & mask) {
        uint32_t home = (uint32_t)(mix(set->slots[j]->client) & mask);
        /* The entry at j may move to the hole at i unless its home lies cyclically in (i, j]. */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            set->slots[i] = set->slots[j];
            set->slots[j] = NULL;
            i = j;
        }
    }
}

void craft__session_remove(struct craft__session_set *set, const struct craft_allocator *a,
                           struct craft__session *s)
{
    hash_del(set, s);
    list_unlink(set, s);
    set->count--;
    craft__session_free(a, s);
}

/* ------------------------------------------------------------------------------------------
 * Cached results of one session
 * ---------------------------------------------------------------------------------------- */

/* The position of seq in s->results, or where it would go; *found says which. */
static uint32_t result_search(const struct craft__session *s, uint64_t seq, bool *found)
{
    uint32_t lo = 0, hi = s->n_results;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->results[mid].seq < seq) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *found = lo < s->n_results && s->results[lo].seq == seq;
    return lo;
}

void craft__session_drop_result(const struct craft_allocator *a, struct craft__session *s,
                                uint32_t i)
{
    if (s->results[i].seq > s->floor) {
        s->floor = s->results[i].seq;
    }
    craft_free(a, s->results[i].data);
    memmove(&s->results[i], &s->results[i + 1], (s->n_results - i - 1) * sizeof(*s->results));
    s->n_results--;
}

void craft__session_raise_floor(const struct craft_allocator *a, struct craft__session *s,
                                uint64_t floor)
{
    if (floor <= s->floor) {
        return;
    }
    s->floor = floor;
    uint32_t k = 0;
    while (k < s->n_results && s->results[k].seq <= floor) {
        craft_free(a, s->results[k].data);
        k++;
    }
    memmove(&s->results[0], &s->results[k], (s->n_results - k) * sizeof(*s->results));
    s->n_results -= k;
}

static int results_reserve(const struct craft_allocator *a, struct craft__session *s, uint32_t want)
{
    if (want <= s->cap_results) {
        return 0;
    }
    uint32_t cap = s->cap_results ? s->cap_results : 4;
    while (cap < want) {
        cap = cap > UINT32_MAX / 2 ? UINT32_MAX : cap * 2;
    }
    struct craft__session_result *r = craft_realloc(a, s->results, (size_t)cap * sizeof(*r));
    if (r == NULL) {
        return CRAFT_ENOMEM;
    }
    s->results = r;
    s->cap_results = cap;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * The table
 * ---------------------------------------------------------------------------------------- */

int craft_sessions_new(const struct craft_allocator *a,
                       const struct craft_sessions_options *options, struct craft_sessions **out)
{
    if (out == NULL) {
        return CRAFT_EINVAL;
    }
    struct craft_sessions_options o;
    if (options != NULL) {
        o = *options;
    } else {
        craft_sessions_options_init(&o);
    }
    if (o.max_sessions == 0 || o.max_cached_results == 0) {
        return CRAFT_EINVAL;
    }
    struct craft_sessions *s = craft_calloc(a, 1, sizeof(*s));
    if (s == NULL) {
        return CRAFT_ENOMEM;
    }
    s->alloc = a;
    s->o = o;
    craft__session_set_init(&s->set);
    *out = s;
    return 0;
}

void craft_sessions_free(struct craft_sessions *s)
{
    if (s == NULL) {
        return;
    }
    craft__session_set_clear(&s->set, s->alloc);
    craft_free(s->alloc, s);
}

uint32_t craft_sessions_count(const struct craft_sessions *s)
{
    return s->set.count;
}

craft_index craft_sessions_last_index(const struct craft_sessions *s)
{
    return s->set.last_index;
}

bool craft_sessions_contains(const struct craft_sessions *s, uint64_t client)
{
    return craft__session_find(&s->set, client) != NULL;
}

/* Expires, from the least recently active end, every session whose last entry is more than
 * expire_after entries before index. */
static uint32_t expire(struct craft_sessions *s, craft_index index)
{
    uint32_t n = 0;
    if (s->o.expire_after == 0) {
        return 0;
    }
    while (s->set.head != NULL && index - s->set.head->last_active > s->o.expire_after) {
        craft__session_remove(&s->set, s->alloc, s->set.head);
        n++;
    }
    return n;
}

static void touch(struct craft_sessions *s, struct craft__session *sess, craft_index index)
{
    sess->last_active = index;
    if (s->set.tail != sess) {
        list_unlink(&s->set, sess);
        list_append(&s->set, sess);
    }
}

/* Classifies the entry: sets out->kind to NONE or MALFORMED (final), or returns the envelope
 * kind in *cmd (REGISTER, COMMAND, UNREGISTER) with h filled. */
static void classify(const struct craft_sessions *s, const struct craft_entry *e,
                     struct craft_session_header *h, int *cmd, struct craft_session_outcome *out)
{
    *cmd = -1;
    out->kind = CRAFT_SESSION_NONE;
    if (e->type != CRAFT_ENTRY_COMMAND) {
        return;
    }
    int rc = craft_session_parse(e->data, e->size, h);
    if (rc == CRAFT_ENOTFOUND) {
        if (s->o.strict) {
            out->kind = CRAFT_SESSION_MALFORMED;
            out->error = CRAFT_EMALFORMED;
        } else {
            out->payload = e->data;
            out->payload_len = e->size;
        }
        return;
    }
    if (rc != 0) {
        out->kind = CRAFT_SESSION_MALFORMED;
        out->error = rc;
        return;
    }
    if (h->kind == CRAFT_SESSION_CMD_PLAIN) {
        out->payload = h->payload;
        out->payload_len = h->payload_len;
        return;
    }
    *cmd = h->kind;
    out->client = h->client;
    out->seq = h->seq;
}

static void command(struct craft_sessions *s, struct craft__session *sess,
                    const struct craft_session_header *h, craft_index index,
                    struct craft_session_outcome *out)
{
    const struct craft_allocator *a = s->alloc;
    /* A command is activity even when it is a retry: the client is alive. */
    touch(s, sess, index);
    /* The client has every result up to ack: those need not be kept (thesis 6.3). */
    craft__session_raise_floor(a, sess, h->ack);

    bool found;
    uint32_t at = result_search(sess, h->seq, &found);
    if (found) {
        out->kind = CRAFT_SESSION_DUPLICATE;
        out->result = sess->results[at].data;
        out->result_len = sess->results[at].len;
        return;
    }
    if (h->seq <= sess->floor) {
        /* Acknowledged or dropped: whether it was ever applied is no longer known, so the only
         * safe answer is a refusal (at most once beats a second application). */
        out->kind = CRAFT_SESSION_STALE;
        return;
    }
    out->kind = CRAFT_SESSION_APPLY;
    out->payload = h->payload;
    out->payload_len = h->payload_len;
    s->pending = true;
    s->pending_client = h->client;
    s->pending_seq = h->seq;
    if (sess->n_results == s->o.max_cached_results) {
        if (at == 0) {
            /* Below every cached result: it would be the one dropped at once. It is applied
             * but not kept, and counts as discarded from now on. */
            sess->floor = h->seq;
            return;
        }
        craft__session_drop_result(a, sess, 0);
        at--;
    }
    memmove(&sess->results[at + 1], &sess->results[at],
            (sess->n_results - at) * sizeof(*sess->results));
    sess->results[at].seq = h->seq;
    sess->results[at].data = NULL;
    sess->results[at].len = 0;
    sess->n_results++;
}

int craft_sessions_apply(struct craft_sessions *s, const struct craft_entry *e,
                         struct craft_session_outcome *out)
{
    if (s == NULL || e == NULL || out == NULL || (e->data == NULL && e->size != 0)) {
        return CRAFT_EINVAL;
    }
    if (s->pending) {
        return CRAFT_ESTATE;
    }
    if (e->index <= s->set.last_index) {
        return CRAFT_EINVAL;
    }
    const struct craft_allocator *a = s->alloc;
    struct craft_session_outcome o;
    memset(&o, 0, sizeof(o));
    struct craft_session_header h;
    int cmd;
    classify(s, e, &h, &cmd, &o);

    /* Allocate first, change the table after: an out-of-memory error leaves it untouched. */
    struct craft__session *fresh = NULL;
    if (cmd == CRAFT_SESSION_CMD_REGISTER) {
        int rc = craft__session_reserve(&s->set, a);
        if (rc != 0) {
            return rc;
        }
        fresh = craft_calloc(a, 1, sizeof(*fresh));
        if (fresh == NULL) {
            return CRAFT_ENOMEM;
        }
    } else if (cmd == CRAFT_SESSION_CMD_COMMAND) {
        struct craft__session *sess = craft__session_find(&s->set, h.client);
        if (sess != NULL) {
            uint32_t want = sess->n_results + 1;
            if (want > s->o.max_cached_results) {
                want = s->o.max_cached_results;
            }
            int rc = results_reserve(a, sess, want);
            if (rc != 0) {
                return rc;
            }
        }
    }

    o.expired = expire(s, e->index);

    switch (cmd) {
    case CRAFT_SESSION_CMD_REGISTER:
        if (s->set.count >= s->o.max_sessions) {
            /* Thesis 6.3: bound the number of sessions and drop the least recently used. */
            craft__session_remove(&s->set, a, s->set.head);
            o.expired++;
        }
        fresh->client = e->index;
        fresh->last_active = e->index;
        craft__session_insert(&s->set, fresh);
        o.kind = CRAFT_SESSION_REGISTERED;
        o.client = e->index;
        break;
    case CRAFT_SESSION_CMD_COMMAND: {
        struct craft__session *sess = craft__session_find(&s->set, h.client);
        if (sess == NULL) {
            o.kind = CRAFT_SESSION_UNKNOWN;
        } else {
            command(s, sess, &h, e->index, &o);
        }
        break;
    }
    case CRAFT_SESSION_CMD_UNREGISTER: {
        struct craft__session *sess = craft__session_find(&s->set, h.client);
        if (sess == NULL) {
            o.kind = CRAFT_SESSION_UNKNOWN;
        } else {
            craft__session_remove(&s->set, a, sess);
            o.kind = CRAFT_SESSION_UNREGISTERED;
        }
        break;
    }
    default:
        break; /* NONE or MALFORMED, already set */
    }
    s->set.last_index = e->index;
    *out = o;
    return 0;
}

int craft_sessions_record(struct craft_sessions *s, uint64_t client, uint64_t seq,
                          const void *result, size_t len)
{
    if (s == NULL || (result == NULL && len != 0)) {
        return CRAFT_EINVAL;
    }
    if (!s->pending || s->pending_client != client || s->pending_seq != seq) {
        return CRAFT_ESTATE;
    }
    if (len > UINT32_MAX) {
        return CRAFT_ETOOBIG;
    }
    struct craft__session *sess = craft__session_find(&s->set, client);
    bool found = false;
    uint32_t at = sess != NULL ? result_search(sess, seq, &found) : 0;
    if (found && len > 0) {
        uint8_t *copy = craft_malloc(s->alloc, len);
        if (copy == NULL) {
            return CRAFT_ENOMEM;
        }
        memcpy(copy, result, len);
        sess->results[at].data = copy;
        sess->results[at].len = len;
    }
    s->pending = false;
    return 0;
}
