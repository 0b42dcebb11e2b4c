/* Requests: the callers' proposals, reads, membership changes and transfers, and the same
 * requests forwarded between nodes.
 *
 * A proposal waits in `proposals`, keyed by the index and term the core gave it; it succeeds
 * when the entry applied at that index has that term, and fails with CRAFT_EDROPPED when a
 * different entry is applied there or the core reports the index dropped (docs/core.md). A
 * local proposal leaves the table with the entries of its index when they are handed to the
 * state machine stream, and is answered there right after they are applied (apply.c, fsm.c);
 * a peer's proposal is answered when the applied entries come back to the loop. A read waits
 * for its read index in `reads`, then in `apply_wait` until the stream has been handed every
 * entry up to it: it is then answered on the stream, behind them. On a follower, with
 * forwarding on, proposals and reads go to the leader as CRAFT_WIRE_REQUEST messages; the
 * leader's response gives the index, and the caller is answered once this node has applied
 * that far too (on the stream, the same way), so that "apply returned" always means "applied
 * here". Every request has a deadline (CRAFT_ETIMEDOUT), until it is handed to the stream. */
#include <stdio.h>
#include <string.h>

#include "uv/node.h"

/* ---- lists ------------------------------------------------------------------------------- */

#define list_push craft__list_push
#define list_remove craft__list_remove

void craft__list_push(struct craft__list *l, struct craft__waiter *w)
{
    w->next = NULL;
    w->prev = l->tail;
    if (l->tail != NULL) {
        l->tail->next = w;
    } else {
        l->head = w;
    }
    l->tail = w;
    l->n++;
}

/* Inserts keeping the list sorted by index (proposals arrive in index order, so this is the
 * tail almost always). */
static void list_insert_sorted(struct craft__list *l, struct craft__waiter *w)
{
    struct craft__waiter *after = l->tail;
    while (after != NULL && after->index > w->index) {
        after = after->prev;
    }
    if (after == l->tail) {
        list_push(l, w);
        return;
    }
    w->prev = after;
    w->next = after != NULL ? after->next : l->head;
    if (after != NULL) {
        after->next = w;
    } else {
        l->head = w;
    }
    w->next->prev = w;
    l->n++;
}

void craft__list_remove(struct craft__list *l, struct craft__waiter *w)
{
    if (w->prev != NULL) {
        w->prev->next = w->next;
    } else {
        l->head = w->next;
    }
    if (w->next != NULL) {
        w->next->prev = w->prev;
    } else {
        l->tail = w->prev;
    }
    w->next = w->prev = NULL;
    l->n--;
}

/* Commands up to this size travel in their waiter's own allocation: a proposal on the hot
 * path costs one allocation here, not two. Larger ones get their own, freed as soon as the
 * core has its copy. */
#define INLINE_PAYLOAD 4096

/* A waiter holding a copy of the command (size bytes at payload); NULL when out of memory. */
static struct craft__waiter *waiter_new(struct craft_uv_node *n, const void *payload, size_t size)
{
    bool inline_ = size > 0 && size <= INLINE_PAYLOAD;
    struct craft__waiter *w = craft_calloc(n->alloc, 1, sizeof *w + (inline_ ? size : 0));
    if (w == NULL) {
        return NULL;
    }
    if (size > 0) {
        w->payload = inline_ ? (void *)(w + 1) : craft_malloc(n->alloc, size);
        if (w->payload == NULL) {
            craft_free(n->alloc, w);
            return NULL;
        }
        w->payload_inline = inline_;
        memcpy(w->payload, payload, size);
        w->size = size;
    }
    return w;
}

/* The command is no longer needed (the core copied it, or the answer came). */
static void payload_release(struct craft_uv_node *n, struct craft__waiter *w)
{
    if (!w->payload_inline) {
        craft_free(n->alloc, w->payload);
    }
    w->payload = NULL;
    w->payload_inline = false;
}

void craft__uv_waiter_free(struct craft_uv_node *n, struct craft__waiter *w)
{
    payload_release(n, w);
    craft_free(n->alloc, w->result);
    craft_free(n->alloc, w);
}

#define waiter_free craft__uv_waiter_free

/* ---- answering ----------------------------------------------------------------------------- */

static const char *leader_address(struct craft_uv_node *n, craft_id leader)
{
    if (leader == 0 || n->core == NULL) {
        return "";
    }
    const struct craft_server *s = craft_configuration_get(craft_node_configuration(n->core, NULL),
                                                           leader);
    return s != NULL ? s->address : "";
}

/* With an embedder's stream a local caller is answered on it: the answer is kept in w (the
 * result copied) and queued. */
static void answer_on_stream_later(struct craft_uv_node *n, struct craft__waiter *w, int status,
                                   craft_index index, const void *data, size_t size,
                                   craft_id leader, const char *address)
{
    if (data != w->result) {
        void *copy = NULL;
        if (size > 0) {
            copy = craft_malloc(n->alloc, size);
            if (copy == NULL) {
                size = 0; /* the answer goes without its bytes rather than not at all */
            } else {
                memcpy(copy, data, size);
            }
        }
        craft_free(n->alloc, w->result);
        w->result = copy;
        w->result_size = copy != NULL ? size : 0;
    }
    w->status = status;
    w->index = index;
    w->leader_id = status == CRAFT_ENOTLEADER ? leader : 0;
    snprintf(w->address, sizeof w->address, "%s",
             status == CRAFT_ENOTLEADER && address != NULL ? address : "");
    craft__uv_queue_answer(n, w);
}

/* Answers w (locally through its callback, or remotely on its connection) and frees it; the
 * leader named with CRAFT_ENOTLEADER is the given one, or, when address is NULL, ours. */
static void complete_with(struct craft_uv_node *n, struct craft__waiter *w, int status,
                          craft_index index, const void *data, size_t size, craft_id leader,
                          const char *address)
{
    if (n->dead && status == n->dead_rc && data == NULL) {
        data = n->dead_msg; /* why the node stopped */
        size = strlen(n->dead_msg);
    }
    if (address == NULL) {
        leader = n->leader != n->id ? n->leader : 0;
        address = leader_address(n, leader);
    }
    if (w->req != NULL) {
        if (n->fsm_embedded) {
            answer_on_stream_later(n, w, status, index, data, size, leader, address);
            return;
        }
        struct craft_uv_result r;
        memset(&r, 0, sizeof r);
        r.status = status;
        r.index = index;
        r.data = data;
        r.size = size;
        if (status == CRAFT_ENOTLEADER) {
            r.leader_id = leader;
        }
        r.leader_address = status == CRAFT_ENOTLEADER ? address : "";
        /* The result may live in the waiter (a forwarded proposal's): free it after. */
        w->req->cb(w->req, &r);
        waiter_free(n, w);
        return;
    }
    if (w->conn != NULL && !n->stopping) {
        struct craft_wire_message m;
        memset(&m, 0, sizeof m);
        m.type = CRAFT_WIRE_RESPONSE;
        struct craft_wire_response *rs = &m.u.response;
        rs->from = n->id;
        rs->term = n->term;
        rs->id = w->remote_id;
        rs->error = status;
        rs->index = index;
        if (status == CRAFT_ENOTLEADER) {
            rs->leader_id = leader;
            snprintf(rs->leader_address, sizeof rs->leader_address, "%s", address);
        }
        rs->payload = data;
        rs->size = size;
        craft__transport_reply(n->transport, w->conn, &m);
    }
    waiter_free(n, w);
}

static void complete(struct craft_uv_node *n, struct craft__waiter *w, int status,
                     craft_index index, const void *data, size_t size)
{
    complete_with(n, w, status, index, data, size, 0, NULL);
}

/* On the stream's thread: the answer of a request the stream carries (fsm.c). The waiter stays
 * with its step; the loop frees it. */
void craft__uv_answer_on_stream(struct craft__waiter *w, int status, const void *data,
                                size_t size)
{
    struct craft_uv_result r;
    memset(&r, 0, sizeof r);
    r.status = status;
    r.index = w->index;
    r.data = data;
    r.size = size;
    r.leader_id = status == CRAFT_ENOTLEADER ? w->leader_id : 0;
    r.leader_address = status == CRAFT_ENOTLEADER ? w->address : "";
    w->req->cb(w->req, &r);
}

void craft__uv_requests_fail_list(struct craft_uv_node *n, struct craft__list *l, int status)
{
    struct craft__waiter *w;
    while ((w = l->head) != NULL) {
        list_remove(l, w);
        craft_free(n->alloc, w->result); /* never delivered */
        w->result = NULL;
        w->result_size = 0;
        complete(n, w, status, 0, NULL, 0);
    }
}

static void complete_from(struct craft_uv_node *n, struct craft__list *l, struct craft__waiter *w,
                          int status)
{
    list_remove(l, w);
    complete(n, w, status, 0, NULL, 0);
}

/* Moves w from l to the caller's list of waiters to answer, with this status. Loops that answer
 * several waiters first move them all out, then answer them (answer_all): an answer runs the
 * caller's callback, which may submit a request and so change any list of the node, the
 * waiter a loop would visit next included. */
static void detach(struct craft__list *l, struct craft__waiter *w, struct craft__list *out,
                   int status)
{
    list_remove(l, w);
    w->status = status;
    list_push(out, w);
}

static void answer_all(struct craft_uv_node *n, struct craft__list *l)
{
    struct craft__waiter *w;
    while ((w = l->head) != NULL) {
        list_remove(l, w);
        complete(n, w, w->status, w->index, w->result, w->result_size);
    }
}

/* ---- carrying out a request ---------------------------------------------------------------- */

static uint64_t deadline(struct craft_uv_node *n, unsigned timeout_ms)
{
    return uv_now(n->loop) + (timeout_ms ? timeout_ms : n->cfg.default_timeout_ms);
}

static bool forward(struct craft_uv_node *n, struct craft__waiter *w, uint8_t kind)
{
    if (w->req == NULL || !n->cfg.forward || n->leader == 0 || n->leader == n->id ||
        !craft__transport_reachable(n->transport, n->leader)) {
        return false;
    }
    struct craft_wire_message m;
    memset(&m, 0, sizeof m);
    m.type = CRAFT_WIRE_REQUEST;
    struct craft_wire_request *rq = &m.u.request;
    rq->from = n->id;
    rq->to = n->leader;
    rq->term = n->term;
    rq->id = ++n->next_forward_id;
    rq->kind = kind;
    rq->payload = w->payload;
    rq->size = w->size;
    if (craft__transport_send(n->transport, n->leader, &m) != 0) {
        return false;
    }
    w->read_id = rq->id;
    w->target = n->leader;
    n->forwarded_count++;
    list_push(&n->forwarded, w);
    return true;
}

/* No leader to forward to right now (an election is under way, or its connection is not up
 * yet): a local caller with forwarding on waits for one, until its deadline; callers never
 * have to find the leader themselves. Otherwise: CRAFT_ENOTLEADER with the hint we have. */
static void park_or_refuse(struct craft_uv_node *n, struct craft__waiter *w)
{
    if (w->req != NULL && n->cfg.forward) {
        list_push(&n->parked, w);
        return;
    }
    complete(n, w, CRAFT_ENOTLEADER, 0, NULL, 0);
}

static void process(struct craft_uv_node *n, struct craft__waiter *w);

/* A leader may be known now: try the parked requests again. */
static void unpark(struct craft_uv_node *n)
{
    if (n->parked.head == NULL) {
        return;
    }
    bool leader = craft_node_role(n->core) == CRAFT_LEADER;
    if (!leader && (n->leader == 0 || n->leader == n->id ||
                    !craft__transport_reachable(n->transport, n->leader))) {
        return;
    }
    struct craft__list l = n->parked;
    memset(&n->parked, 0, sizeof n->parked);
    while (l.head != NULL) {
        struct craft__waiter *w = l.head;
        list_remove(&l, w);
        process(n, w);
    }
}

static void process(struct craft_uv_node *n, struct craft__waiter *w)
{
    if (n->dead || n->stopping) {
        complete(n, w, n->dead ? n->dead_rc : CRAFT_ESHUTDOWN, 0, NULL, 0);
        return;
    }
    /* The core learns how much time has passed before it judges the request: a lease read that
     * waited out a stall of the loop in the submit queue must find the lease run out. */
    int rc = craft__uv_clock_feed(n);
    if (rc != 0) {
        craft__uv_fatal(n, rc, "craft_tick failed");
        complete(n, w, n->dead_rc, 0, NULL, 0);
        return;
    }
    bool leader = craft_node_role(n->core) == CRAFT_LEADER;
    switch (w->op) {
    case CRAFT_UV_PROPOSE:
        if (w->size > craft_uv_max_command(n->cfg.max_frame)) {
            /* Forwarded by a peer whose max_frame is larger than ours: it would not fit in a
             * frame our followers accept. */
            complete(n, w, CRAFT_ETOOBIG, 0, NULL, 0);
            return;
        }
        if (!leader) {
            if (!forward(n, w, CRAFT_WIRE_PROPOSE)) {
                park_or_refuse(n, w);
            }
            return;
        }
        rc = craft_propose(n->core, w->payload, w->size, &w->index, &w->term);
        payload_release(n, w); /* the core copied it */
        if (rc != 0) {
            complete(n, w, rc, 0, NULL, 0);
            return;
        }
        list_insert_sorted(&n->proposals, w);
        return;
    case CRAFT_UV_READ:
    case CRAFT_UV_READ_LEASE:
        if (!leader) {
            if (!forward(n, w, CRAFT_WIRE_READ)) {
                park_or_refuse(n, w);
            }
            return;
        }
        w->read_id = ++n->next_read_id;
        rc = craft_read_index(n->core, w->read_id,
                              w->op == CRAFT_UV_READ ? CRAFT_READ_INDEX : CRAFT_READ_LEASE);
        if (rc != 0) {
            complete(n, w, rc, 0, NULL, 0);
            return;
        }
        list_push(&n->reads, w);
        return;
    case CRAFT_UV_ADD:
    case CRAFT_UV_PROMOTE:
    case CRAFT_UV_DEMOTE:
    case CRAFT_UV_REMOVE:
        if (!leader) {
            complete(n, w, CRAFT_ENOTLEADER, 0, NULL, 0);
            return;
        }
        if (w->op == CRAFT_UV_ADD) {
            rc = craft_add_server(n->core, w->target, w->address, w->status != 0, &w->index);
            if (rc == 0) {
                w->status = 0; /* it carried auto_promote; from here on it is the status */
            }
        } else if (w->op == CRAFT_UV_PROMOTE) {
            rc = craft_promote(n->core, w->target, &w->index);
        } else if (w->op == CRAFT_UV_DEMOTE) {
            rc = craft_demote(n->core, w->target, &w->index);
        } else {
            rc = craft_remove_server(n->core, w->target, &w->index);
        }
        if (rc == CRAFT_EBUSY && (w->req != NULL || w->conn != NULL)) {
            /* Transient: the new leader has not committed an entry of its term yet, or another
             * change is being committed. Try again at the next tick, until the deadline (an
             * operator's change from the network too). */
            list_push(&n->parked, w);
            return;
        }
        if (rc != 0) {
            complete(n, w, rc, 0, NULL, 0);
            return;
        }
        w->term = craft_node_term(n->core);
        list_insert_sorted(&n->proposals, w);
        return;
    case CRAFT_UV_TRANSFER:
        if (!leader) {
            complete(n, w, CRAFT_ENOTLEADER, 0, NULL, 0);
            return;
        }
        if (w->target == craft_node_id(n->core)) {
            /* It leads already: nothing to hand over, and no error (etcd ignores it too), so
             * that "make sure server N leads" can be run twice. */
            complete(n, w, 0, 0, NULL, 0);
            return;
        }
        rc = craft_transfer_leadership(n->core, w->target);
        if (rc != 0) {
            complete(n, w, rc, 0, NULL, 0);
            return;
        }
        list_push(&n->transfers, w);
        return;
    case CRAFT_UV_SNAPSHOT:
        craft__uv_admin_snapshot(n, w); /* this node's own: never forwarded */
        return;
    default:
        complete(n, w, CRAFT_EINVAL, 0, NULL, 0);
    }
}

static bool on_loop_thread(struct craft_uv_node *n)
{
    uv_thread_t self = uv_thread_self();
    return uv_thread_equal(&self, &n->loop_thread);
}

int craft_uv_submit(struct craft_uv_node *n, struct craft_uv_request *req)
{
    if (n == NULL || req == NULL || req->cb == NULL || req->op < CRAFT_UV_PROPOSE ||
        req->op > CRAFT_UV_SNAPSHOT || (req->size > 0 && req->payload == NULL) ||
        (req->op == CRAFT_UV_ADD && (req->address == NULL ||
                                     strlen(req->address) >= CRAFT_ADDRESS_MAX ||
                                     req->server == 0))) {
        return CRAFT_EINVAL;
    }
    if (req->op == CRAFT_UV_PROPOSE && req->size > craft_uv_max_command(n->cfg.max_frame)) {
        return CRAFT_ETOOBIG; /* at once: it could never be replicated */
    }
    struct craft__waiter *w = waiter_new(n, req->payload, req->size);
    if (w == NULL) {
        return CRAFT_ENOMEM;
    }
    w->op = req->op;
    w->req = req;
    w->target = req->server;
    w->status = req->auto_promote; /* ADD: carried until used */
    if (req->op == CRAFT_UV_ADD) {
        strcpy(w->address, req->address);
    }
    req->internal[0] = NULL;
    req->internal[1] = w;
    if (on_loop_thread(n)) {
        if (n->stopping) {
            waiter_free(n, w);
            return CRAFT_ESHUTDOWN;
        }
        w->deadline = deadline(n, req->timeout_ms);
        process(n, w);
        craft__uv_drive(n);
        return 0;
    }
    uv_mutex_lock(&n->lock);
    if (n->stopping) {
        uv_mutex_unlock(&n->lock);
        waiter_free(n, w);
        return CRAFT_ESHUTDOWN;
    }
    if (n->sub_tail != NULL) {
        n->sub_tail->internal[0] = req;
    } else {
        n->sub_head = req;
    }
    n->sub_tail = req;
    /* Woken under the lock: craft_uv_node_stop sets `stopping` under it before the handle is
     * closed, so no wake-up can reach a closed (or freed) handle. */
    uv_async_send(&n->async);
    uv_mutex_unlock(&n->lock);
    return 0;
}

int craft_uv_set_faults(struct craft_uv_node *n, craft_id to, double drop,
                        unsigned delay_min_ms, unsigned delay_max_ms, bool block)
{
    if (n == NULL || to == 0 || !(drop >= 0.0 && drop <= 1.0) || delay_min_ms > delay_max_ms) {
        return CRAFT_EINVAL;
    }
    uv_mutex_lock(&n->lock);
    if (n->stopping) {
        uv_mutex_unlock(&n->lock);
        return CRAFT_ESHUTDOWN;
    }
    /* The latest setting for a server wins; applied on the loop thread. */
    unsigned k = 0;
    while (k < n->n_faults && n->faults[k].to != to) {
        k++;
    }
    if (k == n->n_faults) {
        if (n->n_faults == sizeof n->faults / sizeof n->faults[0]) {
            uv_mutex_unlock(&n->lock);
            return CRAFT_EBUSY;
        }
        n->n_faults++;
    }
    n->faults[k].to = to;
    n->faults[k].drop = drop;
    n->faults[k].delay_min_ms = delay_min_ms;
    n->faults[k].delay_max_ms = delay_max_ms;
    n->faults[k].block = block;
    uv_async_send(&n->async); /* under the lock, as in craft_uv_submit */
    uv_mutex_unlock(&n->lock);
    return 0;
}

/* Submissions from other threads, on the loop thread. */
void craft__uv_async_cb(uv_async_t *h)
{
    struct craft_uv_node *n = h->data;
    struct craft__fault_setting faults[16];
    uv_mutex_lock(&n->lock);
    struct craft_uv_request *req = n->sub_head;
    n->sub_head = n->sub_tail = NULL;
    unsigned n_faults = n->n_faults;
    memcpy(faults, n->faults, n_faults * sizeof faults[0]);
    n->n_faults = 0;
    uv_mutex_unlock(&n->lock);
    for (unsigned k = 0; k < n_faults && n->transport != NULL && !n->closing; k++) {
        craft__transport_set_faults(n->transport, faults[k].to, faults[k].drop,
                                    faults[k].delay_min_ms, faults[k].delay_max_ms,
                                    faults[k].block);
        craft__uv_log(n, CRAFT_UV_INFO,
                      "event=faults to=%llu drop=%.3f delay=%u-%ums block=%d",
                      (unsigned long long)faults[k].to, faults[k].drop, faults[k].delay_min_ms,
                      faults[k].delay_max_ms, faults[k].block);
    }
    while (req != NULL) {
        struct craft_uv_request *next = req->internal[0];
        struct craft__waiter *w = req->internal[1];
        w->deadline = deadline(n, req->timeout_ms);
        process(n, w);
        req = next;
    }
    craft__uv_drive(n);
}

/* A request forwarded by a peer (we are, or were, its leader). */
void craft__uv_on_request(struct craft_uv_node *n, struct craft__conn *conn,
                          const struct craft_wire_request *rq)
{
    if (rq->kind != CRAFT_WIRE_PROPOSE && rq->kind != CRAFT_WIRE_READ) {
        craft__uv_admin_request(n, conn, rq); /* an operator's (admin.c) */
        return;
    }
    struct craft__waiter *w = waiter_new(n, rq->payload, rq->size);
    if (w == NULL) {
        return; /* the caller times out */
    }
    w->conn = conn;
    w->remote_id = rq->id;
    w->op = rq->kind == CRAFT_WIRE_PROPOSE ? CRAFT_UV_PROPOSE : CRAFT_UV_READ;
    w->deadline = deadline(n, 0);
    process(n, w); /* never forwarded again: w->req is NULL */
}

/* The leader answered a request we forwarded. */
void craft__uv_on_response(struct craft_uv_node *n, const struct craft_wire_response *rs)
{
    if (rs->id == 0 && rs->error == CRAFT_ENOTFOUND) {
        craft__uv_removed(n, rs->from, rs->index);
        return;
    }
    struct craft__waiter *w = n->forwarded.head;
    while (w != NULL && w->read_id != rs->id) {
        w = w->next;
    }
    if (w == NULL) {
        return; /* timed out meanwhile */
    }
    list_remove(&n->forwarded, w);
    if (rs->error != 0 && rs->error != CRAFT_EAPPLY) {
        if (rs->error == CRAFT_ENOTLEADER && w->req != NULL) {
            complete_with(n, w, rs->error, 0, NULL, 0, rs->leader_id, rs->leader_address);
            return;
        }
        /* The leader is closing or stopped: for this node it is a leader that went away, and
         * the outcome is unknown (it may have appended the command): a caller retries through
         * another leader (a session does so on its own). Its reason stays in the message. */
        int status = rs->error == CRAFT_ESHUTDOWN ? CRAFT_ENOCONN : rs->error;
        complete(n, w, status, 0, rs->payload, rs->size);
        return;
    }
    /* Answer once this node has applied as far as the leader did. */
    w->status = rs->error;
    w->index = rs->index;
    payload_release(n, w);
    if (rs->size > 0) {
        w->result = craft_malloc(n->alloc, rs->size);
        if (w->result == NULL) {
            complete(n, w, CRAFT_ENOMEM, 0, NULL, 0);
            return;
        }
        memcpy(w->result, rs->payload, rs->size);
        w->result_size = rs->size;
    }
    list_push(&n->apply_wait, w);
    craft__uv_requests_check_applied(n);
}

/* ---- events from the core and the apply queue ---------------------------------------------- */

/* The entry of s at index, or NULL (the indexes of a step are contiguous). */
static const struct craft__fsm_entry *entry_at(const struct craft__step *s, craft_index index)
{
    if (s->n_entries == 0 || index < s->entries[0].index) {
        return NULL;
    }
    craft_index k = index - s->entries[0].index;
    if (k >= s->n_entries || s->entries[k].index != index) {
        return NULL;
    }
    return &s->entries[k];
}

void craft__uv_requests_take_proposals(struct craft_uv_node *n, struct craft__step *s)
{
    if (s->n_entries == 0) {
        return;
    }
    craft_index last = s->entries[s->n_entries - 1].index;
    struct craft__waiter *w = n->proposals.head;
    while (w != NULL && w->index <= last) {
        struct craft__waiter *next = w->next;
        if (w->req != NULL && w->op == CRAFT_UV_PROPOSE) {
            const struct craft__fsm_entry *e = entry_at(s, w->index);
            list_remove(&n->proposals, w);
            w->status = e != NULL && e->term == w->term ? 0 : CRAFT_EDROPPED;
            list_push(&s->answers, w);
        }
        w = next;
    }
}

void craft__uv_requests_on_applied(struct craft_uv_node *n, const struct craft__step *s)
{
    if (s->n_entries == 0) {
        return;
    }
    craft_index last = s->entries[s->n_entries - 1].index;
    struct craft__list done = {0};
    struct craft__waiter *w;
    while ((w = n->proposals.head) != NULL && w->index <= last) {
        const struct craft__fsm_entry *e = entry_at(s, w->index);
        int status = e == NULL || e->term != w->term || e->skipped ? CRAFT_EDROPPED
                     : e->error != 0                                ? CRAFT_EAPPLY
                                                                     : 0;
        if (w->req == NULL) {
            /* A peer's: answered on its connection; no callback runs here. */
            list_remove(&n->proposals, w);
            complete(n, w, status, status == CRAFT_EDROPPED ? 0 : w->index,
                     status == CRAFT_EDROPPED ? NULL : e->result,
                     status == CRAFT_EDROPPED ? 0 : e->result_size);
            continue;
        }
        /* A membership change of ours: its callback runs once the loop is done here. */
        w->index = status == CRAFT_EDROPPED ? 0 : w->index;
        detach(&n->proposals, w, &done, status);
    }
    answer_all(n, &done);
}

void craft__uv_requests_on_dropped(struct craft_uv_node *n, craft_index from)
{
    struct craft__waiter *w;
    while ((w = n->proposals.tail) != NULL && w->index >= from) {
        complete_from(n, &n->proposals, w, CRAFT_EDROPPED);
    }
}

void craft__uv_requests_on_read(struct craft_uv_node *n, const struct craft_read_state *r)
{
    struct craft__waiter *w = n->reads.head;
    while (w != NULL && w->read_id != r->id) {
        w = w->next;
    }
    if (w == NULL) {
        return;
    }
    list_remove(&n->reads, w);
    if (r->status != 0) {
        complete(n, w, r->status, 0, NULL, 0);
        return;
    }
    w->index = r->index;
    if (w->conn != NULL) {
        /* A follower's read: the follower waits for its own apply. */
        complete(n, w, 0, r->index, NULL, 0);
        return;
    }
    list_push(&n->apply_wait, w);
}

void craft__uv_requests_check_applied(struct craft_uv_node *n)
{
    struct craft__waiter *w = n->apply_wait.head;
    while (w != NULL) {
        struct craft__waiter *next = w->next;
        if (w->index <= n->queued) {
            list_remove(&n->apply_wait, w);
            craft__uv_queue_answer(n, w);
        }
        w = next;
    }
}

void craft__uv_requests_on_role(struct craft_uv_node *n)
{
    /* Requests forwarded to a leader that is no longer the leader: their outcome is unknown
     * (the old leader may have appended them), so say so now rather than at the deadline, and
     * let the caller retry (with a session, safely). */
    struct craft__list gone = {0};
    struct craft__waiter *f = n->forwarded.head;
    while (f != NULL) {
        struct craft__waiter *next = f->next;
        if (f->target != n->leader) {
            f->index = 0;
            detach(&n->forwarded, f, &gone, CRAFT_ENOCONN);
        }
        f = next;
    }
    answer_all(n, &gone);
    unpark(n);
    if (n->role != CRAFT_LEADER) {
        /* A transfer is done once we no longer lead. */
        while (n->transfers.head != NULL) {
            struct craft__waiter *w = n->transfers.head;
            list_remove(&n->transfers, w);
            complete(n, w, 0, 0, NULL, 0);
        }
    }
}

void craft__uv_on_conn_closed(void *data, struct craft__conn *conn)
{
    struct craft_uv_node *n = data;
    /* Operators' requests from the network wait in transfers, parked and snapshot_waits. */
    struct craft__list *lists[] = {&n->proposals, &n->reads,  &n->apply_wait,
                                   &n->transfers, &n->parked, &n->snapshot_waits};
    for (size_t k = 0; k < sizeof lists / sizeof lists[0]; k++) {
        for (struct craft__waiter *w = lists[k]->head; w != NULL; w = w->next) {
            if (w->conn == conn) {
                w->conn = NULL; /* nobody to answer; the entry still commits */
            }
        }
    }
}

void craft__uv_on_peer_state(void *data, craft_id id, bool connected)
{
    struct craft_uv_node *n = data;
    craft__uv_log(n, CRAFT_UV_INFO, "event=peer peer=%llu state=%s", (unsigned long long)id,
                  connected ? "connected" : "disconnected");
    if (connected) {
        unpark(n);
        return;
    }
    /* Requests forwarded to a leader we lost: they may or may not have taken effect. */
    struct craft__list gone = {0};
    struct craft__waiter *w = n->forwarded.head;
    while (w != NULL) {
        struct craft__waiter *next = w->next;
        if (w->target == id) {
            w->index = 0;
            detach(&n->forwarded, w, &gone, CRAFT_ENOCONN);
        }
        w = next;
    }
    answer_all(n, &gone);
}

void craft__uv_requests_tick(struct craft_uv_node *n)
{
    unpark(n);
    uint64_t now = uv_now(n->loop);
    struct craft__list *lists[] = {&n->proposals, &n->reads,  &n->apply_wait,    &n->forwarded,
                                   &n->transfers, &n->parked, &n->snapshot_waits};
    struct craft__list over = {0};
    for (size_t k = 0; k < sizeof lists / sizeof lists[0]; k++) {
        struct craft__waiter *w = lists[k]->head;
        while (w != NULL) {
            struct craft__waiter *next = w->next;
            bool expired = w->deadline != 0 && now >= w->deadline;
            bool abandoned = lists[k] == &n->transfers && n->role == CRAFT_LEADER &&
                             craft_node_transfer_target(n->core) == 0;
            if (expired || abandoned) {
                /* A parked request never found a leader (or, for a membership change, never
                 * found the leader ready): say so. */
                int status = CRAFT_ETIMEDOUT;
                if (lists[k] == &n->parked) {
                    status = w->op == CRAFT_UV_PROPOSE || w->op == CRAFT_UV_READ ||
                                     w->op == CRAFT_UV_READ_LEASE
                                 ? CRAFT_ENOTLEADER
                                 : CRAFT_EBUSY;
                }
                w->index = 0;
                craft_free(n->alloc, w->result); /* a forwarded result, never delivered */
                w->result = NULL;
                w->result_size = 0;
                detach(lists[k], w, &over, status);
            }
            w = next;
        }
    }
    answer_all(n, &over);
}

void craft__uv_requests_fail_all(struct craft_uv_node *n, int status)
{
    struct craft__list *lists[] = {&n->proposals, &n->reads,  &n->apply_wait,    &n->forwarded,
                                   &n->transfers, &n->parked, &n->snapshot_waits};
    for (size_t k = 0; k < sizeof lists / sizeof lists[0]; k++) {
        while (lists[k]->head != NULL) {
            complete_from(n, lists[k], lists[k]->head, status);
        }
    }
    uv_mutex_lock(&n->lock);
    struct craft_uv_request *req = n->sub_head;
    n->sub_head = n->sub_tail = NULL;
    uv_mutex_unlock(&n->lock);
    while (req != NULL) {
        struct craft_uv_request *next = req->internal[0];
        complete(n, req->internal[1], status, 0, NULL, 0);
        req = next;
    }
}

void craft__uv_request_process(struct craft_uv_node *n, struct craft__waiter *w)
{
    process(n, w);
}

void craft__uv_request_complete(struct craft_uv_node *n, struct craft__waiter *w, int status,
                                craft_index index, const void *data, size_t size)
{
    complete(n, w, status, index, data, size);
}
