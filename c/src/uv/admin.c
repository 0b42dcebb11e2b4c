/* Operators' requests and what the runtime watches for them (issue 15):
 *
 *   - requests from the network (docs/wire.md, "Administrative requests"), which the `craft`
 *     command line sends: STATUS and METRICS answered at once from this node; ADD, REMOVE,
 *     PROMOTE, DEMOTE and TRANSFER carried out like a local caller's (requests.c: on the
 *     leader, answered once the change is applied; elsewhere CRAFT_ENOTLEADER with the leader's
 *     address, which the client follows); SNAPSHOT taken on this node;
 *   - snapshots on request (CRAFT_UV_SNAPSHOT): the core is asked for one now, and the request
 *     waits until a snapshot covering its index is taken (or installed), or one fails;
 *   - every event, before the user sees it: the metrics that count events;
 *   - every tick, on the leader: followers that fell more than lag_threshold entries behind
 *     (CRAFT_UV_EVENT_FOLLOWER_LAGGING, then _CAUGHT_UP). */
#include <stdio.h>
#include <string.h>

#include "uv/node.h"

/* ---- answering at once ------------------------------------------------------------------- */

static void reply(struct craft_uv_node *n, struct craft__conn *conn, uint64_t id, int error,
                  craft_index index, const void *payload, size_t size)
{
    if (n->transport == NULL || n->stopping) {
        return;
    }
    struct craft_wire_message m;
    memset(&m, 0, sizeof m);
    m.type = CRAFT_WIRE_RESPONSE;
    m.u.response.from = n->id;
    m.u.response.term = n->term;
    m.u.response.id = id;
    m.u.response.error = error;
    m.u.response.index = index;
    m.u.response.payload = payload;
    m.u.response.size = size;
    craft__transport_reply(n->transport, conn, &m);
}

static void reply_text(struct craft_uv_node *n, struct craft__conn *conn, uint64_t id, int error,
                       const char *why)
{
    reply(n, conn, id, error, 0, why, strlen(why));
}

static void answer_status(struct craft_uv_node *n, struct craft__conn *conn, uint64_t id)
{
    craft__uv_publish_status(n); /* fresh: this very moment's */
    struct craft_wire_buf b;
    craft_wire_buf_init(&b, n->alloc);
    int rc = craft__uv_status_encode(&n->status, &b);
    if (rc == 0) {
        reply(n, conn, id, 0, n->status.commit, b.base, b.len);
    } else {
        reply_text(n, conn, id, rc, "out of memory encoding the status");
    }
    craft_wire_buf_close(&b);
}

static void answer_metrics(struct craft_uv_node *n, struct craft__conn *conn, uint64_t id)
{
    craft__uv_publish_status(n);
    struct craft_wire_buf b;
    craft_wire_buf_init(&b, n->alloc);
    int rc = craft__uv_metrics_render(n, &n->status, false, &b);
    if (rc == 0) {
        reply(n, conn, id, 0, 0, b.base, b.len);
    } else {
        reply_text(n, conn, id, rc, "out of memory rendering the metrics");
    }
    craft_wire_buf_close(&b);
}

/* ---- requests from the network ------------------------------------------------------------- */

static int op_of(uint8_t kind)
{
    switch (kind) {
    case CRAFT_WIRE_ADD:
        return CRAFT_UV_ADD;
    case CRAFT_WIRE_REMOVE:
        return CRAFT_UV_REMOVE;
    case CRAFT_WIRE_PROMOTE:
        return CRAFT_UV_PROMOTE;
    case CRAFT_WIRE_DEMOTE:
        return CRAFT_UV_DEMOTE;
    case CRAFT_WIRE_TRANSFER:
        return CRAFT_UV_TRANSFER;
    case CRAFT_WIRE_SNAPSHOT:
        return CRAFT_UV_SNAPSHOT;
    default:
        return 0;
    }
}

void craft__uv_admin_request(struct craft_uv_node *n, struct craft__conn *conn,
                             const struct craft_wire_request *rq)
{
    if (rq->kind == CRAFT_WIRE_STATUS) {
        answer_status(n, conn, rq->id);
        return;
    }
    if (rq->kind == CRAFT_WIRE_METRICS) {
        answer_metrics(n, conn, rq->id);
        return;
    }
    int op = op_of(rq->kind);
    struct craft_wire_admin a;
    const char *why = NULL;
    if (op == 0) {
        reply_text(n, conn, rq->id, CRAFT_EINVAL, "unknown request kind");
        return;
    }
    if (craft_wire_admin_decode(rq->payload, rq->size, &a, &why) != 0) {
        char text[160];
        snprintf(text, sizeof text, "malformed arguments: %s", why);
        reply_text(n, conn, rq->id, CRAFT_EMALFORMED, text);
        craft__uv_log(n, CRAFT_UV_WARN, "event=bad_admin_request kind=%u reason=\"%s\"",
                      (unsigned)rq->kind, why);
        return;
    }
    if ((op == CRAFT_UV_ADD && (a.server == 0 || a.address[0] == '\0')) ||
        ((op == CRAFT_UV_REMOVE || op == CRAFT_UV_PROMOTE || op == CRAFT_UV_DEMOTE) &&
         a.server == 0)) {
        reply_text(n, conn, rq->id, CRAFT_EINVAL,
                   op == CRAFT_UV_ADD ? "add needs a server id > 0 and an address"
                                      : "a server id > 0 is needed");
        return;
    }
    struct craft__waiter *w = craft_calloc(n->alloc, 1, sizeof *w);
    if (w == NULL) {
        reply_text(n, conn, rq->id, CRAFT_ENOMEM, "out of memory");
        return;
    }
    w->conn = conn;
    w->remote_id = rq->id;
    w->op = op;
    w->target = a.server;
    w->status = a.auto_promote; /* ADD: carried until used, as for a local caller */
    snprintf(w->address, sizeof w->address, "%s", a.address);
    w->deadline =
        uv_now(n->loop) + (a.timeout_ms != 0 ? a.timeout_ms : n->cfg.default_timeout_ms);
    craft__uv_log(n, CRAFT_UV_INFO, "event=admin_request kind=%u server=%llu address=%s",
                  (unsigned)rq->kind, (unsigned long long)a.server, a.address);
    craft__uv_request_process(n, w);
}

/* ---- snapshots on request ----------------------------------------------------------------- */

static void list_push(struct craft__list *l, struct craft__waiter *w)
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

static void list_remove(struct craft__list *l, struct craft__waiter *w)
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

void craft__uv_admin_snapshot(struct craft_uv_node *n, struct craft__waiter *w)
{
    if (n->user_fsm.snapshot == NULL) {
        static const char why[] = "this node's state machine takes no snapshots";
        craft__uv_request_complete(n, w, CRAFT_EINVAL, 0, why, sizeof why - 1);
        return;
    }
    craft_index at = 0;
    int rc = craft_snapshot_request(n->core, &at);
    if (rc != 0) {
        craft__uv_request_complete(n, w, rc, 0, NULL, 0);
        return;
    }
    craft__count(&n->metrics.snapshot_requests, 1);
    if (at == 0) {
        /* The latest snapshot covers everything applied: it is the answer. */
        craft__uv_request_complete(n, w, 0, craft_node_snapshot(n->core, NULL, NULL), NULL, 0);
        return;
    }
    w->index = at;
    list_push(&n->snapshot_waits, w);
    craft__uv_log(n, CRAFT_UV_INFO, "event=snapshot_requested index=%llu",
                  (unsigned long long)at);
}

/* A snapshot was taken or installed at index, or one failed (status != 0, why): answers the
 * waiters it settles. Moved out of the list before any is answered (an answer runs a callback
 * that may submit another request). */
static void settle_snapshots(struct craft_uv_node *n, craft_index index, int status,
                             const char *why)
{
    struct craft__list done = {0};
    struct craft__waiter *w = n->snapshot_waits.head;
    while (w != NULL) {
        struct craft__waiter *next = w->next;
        if (status != 0 || w->index <= index) {
            list_remove(&n->snapshot_waits, w);
            list_push(&done, w);
        }
        w = next;
    }
    while ((w = done.head) != NULL) {
        list_remove(&done, w);
        craft__uv_request_complete(n, w, status, status == 0 ? index : 0, why,
                                   why != NULL ? strlen(why) : 0);
    }
}

/* ---- events ---------------------------------------------------------------------------------- */

void craft__uv_admin_event(struct craft_uv_node *n, const struct craft_uv_event *e)
{
    struct craft__metrics *m = &n->metrics;
    switch (e->type) {
    case CRAFT_UV_EVENT_ROLE:
        if (e->role == CRAFT_CANDIDATE && m->last_role != CRAFT_CANDIDATE) {
            craft__count(&m->elections_started, 1);
        }
        if (e->role == CRAFT_LEADER && m->last_role != CRAFT_LEADER) {
            craft__count(&m->elections_won, 1);
        }
        if (e->leader != 0 && e->leader != m->last_leader) {
            craft__count(&m->leader_changes, 1);
        }
        if (e->leader != 0) {
            m->last_leader = e->leader;
        }
        m->last_role = e->role;
        if (e->role != CRAFT_LEADER) {
            n->n_lagging = 0; /* a follower tracks no one */
        }
        break;
    case CRAFT_UV_EVENT_MEMBERSHIP:
        craft__count(&m->membership_changes, 1);
        break;
    case CRAFT_UV_EVENT_SNAPSHOT:
        craft__count(e->installed ? &m->snapshots_installed : &m->snapshots_taken, 1);
        craft__uv_publish_status(n); /* a caller answered next reads the new snapshot there */
        settle_snapshots(n, e->index, 0, NULL);
        break;
    case CRAFT_UV_EVENT_SNAPSHOT_FAILED:
        craft__count(&m->snapshots_failed, 1);
        settle_snapshots(n, 0, e->error != 0 ? e->error : CRAFT_EIO, e->message);
        break;
    case CRAFT_UV_EVENT_FOLLOWER_LAGGING:
        craft__count(&m->lagging_events, 1);
        break;
    default:
        break;
    }
}

/* ---- followers falling behind ---------------------------------------------------------------- */

static bool flagged(const struct craft_uv_node *n, craft_id id, unsigned *at)
{
    for (unsigned k = 0; k < n->n_lagging; k++) {
        if (n->lagging[k] == id) {
            *at = k;
            return true;
        }
    }
    return false;
}

static void lag_event(struct craft_uv_node *n, int type, craft_id id, craft_index last,
                      craft_index match)
{
    craft__uv_log(n, type == CRAFT_UV_EVENT_FOLLOWER_LAGGING ? CRAFT_UV_WARN : CRAFT_UV_INFO,
                  "event=%s follower=%llu match=%llu last=%llu lag=%llu",
                  type == CRAFT_UV_EVENT_FOLLOWER_LAGGING ? "follower_lagging"
                                                          : "follower_caught_up",
                  (unsigned long long)id, (unsigned long long)match, (unsigned long long)last,
                  (unsigned long long)(last > match ? last - match : 0));
    struct craft_uv_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = type;
    ev.leader = id;
    ev.index = last;
    ev.match = match;
    ev.term = n->term;
    craft__uv_event(n, &ev);
}

void craft__uv_admin_tick(struct craft_uv_node *n)
{
    uint64_t threshold = n->cfg.lag_threshold;
    if (n->dead || n->core == NULL || threshold == 0 || craft_node_role(n->core) != CRAFT_LEADER) {
        return;
    }
    struct craft_progress_info pi[CRAFT_UV_STATUS_PEERS];
    unsigned np = craft_node_progress(n->core, pi, CRAFT_UV_STATUS_PEERS);
    craft_index last = craft_node_last_index(n->core);
    /* Events are raised after the scan, from copies: a callback may change anything. */
    struct {
        int type;
        craft_id id;
        craft_index match;
    } raise[CRAFT_UV_STATUS_PEERS * 2];
    unsigned n_raise = 0;
    for (unsigned i = 0; i < np && i < CRAFT_UV_STATUS_PEERS; i++) {
        if (pi[i].id == n->id) {
            continue;
        }
        uint64_t lag = last > pi[i].match ? last - pi[i].match : 0;
        unsigned at;
        bool was = flagged(n, pi[i].id, &at);
        if (!was && lag > threshold && n->n_lagging < CRAFT_UV_STATUS_PEERS) {
            n->lagging[n->n_lagging++] = pi[i].id;
            raise[n_raise].type = CRAFT_UV_EVENT_FOLLOWER_LAGGING;
            raise[n_raise].id = pi[i].id;
            raise[n_raise++].match = pi[i].match;
        } else if (was && lag <= threshold / 2) {
            n->lagging[at] = n->lagging[--n->n_lagging];
            raise[n_raise].type = CRAFT_UV_EVENT_FOLLOWER_CAUGHT_UP;
            raise[n_raise].id = pi[i].id;
            raise[n_raise++].match = pi[i].match;
        }
    }
    /* Flagged followers that left the configuration: the episode is over. */
    for (unsigned k = 0; k < n->n_lagging;) {
        bool member = false;
        for (unsigned i = 0; i < np && i < CRAFT_UV_STATUS_PEERS && !member; i++) {
            member = pi[i].id == n->lagging[k];
        }
        if (member) {
            k++;
            continue;
        }
        raise[n_raise].type = CRAFT_UV_EVENT_FOLLOWER_CAUGHT_UP;
        raise[n_raise].id = n->lagging[k];
        raise[n_raise++].match = 0;
        n->lagging[k] = n->lagging[--n->n_lagging];
    }
    for (unsigned k = 0; k < n_raise && !n->dead; k++) {
        lag_event(n, raise[k].type, raise[k].id, last, raise[k].match);
    }
}
