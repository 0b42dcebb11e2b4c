/* User callbacks that call back into the runtime from the loop thread. The state machine
 * streams run on the test's thread here (uf_embed: the embedder's stream, craft_uv_fsm_run), so
 * that a request's completion, an event (a role change), a dropped proposal or a failed read
 * all run on the loop's thread, some inside the runtime's own frames (craft__uv_drive, the
 * stream's results coming back); a callback that submits a new request there must neither
 * disturb what those frames are still doing (the core's update, the batch being applied) nor be
 * lost. The state machine here checks that every command is applied once, in log order, and
 * every completion is checked against it. */
#include "harness.h"

#include <pthread.h>

#include "uv_fixture.h"

struct chain {
    struct uf *f;
    int node;
    unsigned submitted, completed, ok, dropped, other;
    unsigned limit;   /* completions go on submitting until this many were submitted */
    unsigned fanout;  /* each completion submits this many */
    unsigned wrong_results;
};

/* A strict state machine: indexes strictly increase, each command adds its 8 bytes. */
struct strict {
    int64_t value;
    craft_index last;
    unsigned out_of_order;
    unsigned applied;
};

static struct strict strict[UF_MAX + 1];

static int strict_apply(void *data, struct craft_uv_apply *cmds, size_t n)
{
    struct strict *s = data;
    for (size_t i = 0; i < n; i++) {
        if (cmds[i].index <= s->last) {
            s->out_of_order++;
        }
        s->last = cmds[i].index;
        if (cmds[i].size == 8) {
            s->value += (int64_t)uf_get64(cmds[i].data);
        }
        s->applied++;
        cmds[i].result = craft_malloc(NULL, 8);
        memcpy(cmds[i].result, &cmds[i].index, 8);
        cmds[i].result_size = 8;
    }
    return 0;
}

static int strict_open(struct uf *f, int i)
{
    struct uf_node *u = &f->node[i];
    struct craft_uv_config c = f->base;
    c.id = u->id;
    c.address = u->address;
    c.data_dir = u->dir;
    c.bootstrap = &f->conf;
    memset(&strict[i], 0, sizeof strict[i]);
    c.fsm.data = &strict[i];
    c.fsm.apply = strict_apply;
    c.seed = (uint64_t)i * 7919;
    int rc = craft_uv_node_new(&f->loop, &c, &u->n);
    if (rc != 0) {
        fprintf(stderr, "strict_open(%d): %s\n", i, craft_uv_last_error());
        return rc;
    }
    u->up = true;
    return craft_uv_node_start(u->n);
}

static int64_t one = 1;

static void chain_cb(struct craft_uv_request *req, const struct craft_uv_result *r);

static int chain_submit(struct chain *c)
{
    struct craft_uv_request *req = calloc(1, sizeof *req);
    req->op = CRAFT_UV_PROPOSE;
    req->payload = &one;
    req->size = 8;
    req->cb = chain_cb;
    req->data = c;
    int rc = craft_uv_submit(c->f->node[c->node].n, req);
    if (rc != 0) {
        free(req);
        return rc;
    }
    c->submitted++;
    return 0;
}

/* Runs inside the runtime (the apply queue's frames): submits more on the loop thread. */
static void chain_cb(struct craft_uv_request *req, const struct craft_uv_result *r)
{
    struct chain *c = req->data;
    c->completed++;
    if (r->status == 0) {
        c->ok++;
        craft_index at;
        if (r->size != 8) {
            c->wrong_results++;
        } else {
            memcpy(&at, r->data, 8);
            c->wrong_results += at != r->index;
        }
    } else if (r->status == CRAFT_EDROPPED) {
        c->dropped++;
    } else {
        c->other++;
    }
    free(req);
    for (unsigned k = 0; k < c->fanout && c->submitted < c->limit; k++) {
        chain_submit(c);
    }
}

static bool chain_done(struct uf *f, void *arg)
{
    (void)f;
    struct chain *c = arg;
    return c->completed == c->submitted && c->submitted >= c->limit;
}

/* Completions that submit again, from inside a batch of applied commands: each command's
 * proposal succeeds with its own index, none is reported dropped, and the state machine sees
 * every index once, in order. */
TEST(completion_callbacks_submit_on_the_loop_thread)
{
    struct uf f;
    uf_init(&f, 1);
    uf_embed(&f);
    CHECK_OK(strict_open(&f, 1));
    CHECK(uf_run_until(&f, uf_has_leader, NULL, 5000));
    /* More commands at once than one batch takes, so that a batch's answers run while more
     * committed commands wait behind it. */
    struct chain c = {.f = &f, .node = 1, .limit = 6000, .fanout = 1};
    for (int k = 0; k < 3000; k++) {
        CHECK_OK(chain_submit(&c));
    }
    CHECK(uf_run_until(&f, chain_done, &c, 30000));
    CHECK_EQ(c.dropped, 0);
    CHECK_EQ(c.other, 0);
    CHECK_EQ(c.wrong_results, 0);
    CHECK_EQ(c.ok, c.limit);
    CHECK_EQ(strict[1].out_of_order, 0);
    CHECK_EQ(strict[1].value, (int64_t)c.limit);
    uf_close(&f);
}


static int strict_start(struct uf *f)
{
    for (int i = 1; i <= f->n; i++) {
        int rc = strict_open(f, i);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* The same through a follower: its proposals are forwarded, and answered when the leader's
 * response arrives and the follower has applied that far (outside the driving of the core). */
TEST(forwarded_completions_submit_on_the_loop_thread)
{
    struct uf f;
    uf_init(&f, 3);
    uf_embed(&f);
    CHECK_OK(strict_start(&f));
    CHECK(uf_run_until(&f, uf_has_leader, NULL, 5000));
    int l = uf_leader(&f);
    int follower = l % 3 + 1;
    struct chain c = {.f = &f, .node = follower, .limit = 3000, .fanout = 2};
    for (int k = 0; k < 200; k++) {
        CHECK_OK(chain_submit(&c));
    }
    CHECK(uf_run_until(&f, chain_done, &c, 60000));
    CHECK_EQ(c.other + c.dropped, 0);
    CHECK_EQ(c.wrong_results, 0);
    CHECK_EQ(c.ok, c.limit);
    for (int i = 1; i <= 3; i++) {
        CHECK_EQ(strict[i].out_of_order, 0);
    }
    uf_close(&f);
}

/* Requests submitted from an event callback: every time a node becomes leader, and every time a
 * node learns of a new leader, it submits a proposal and a read from inside the event; the
 * answers submit again (a read that failed is retried, a dropped proposal is proposed again).
 * Leadership moves around meanwhile. Every request is answered exactly once, every node applies
 * every index once and in order, and the replicas agree. */
struct tracked {
    struct craft_uv_request req;
    struct uf *f;
    int node;
    unsigned answers;
    int retries;
};

static unsigned ev_submitted, ev_answered, ev_twice, ev_ok;
static struct uf *ev_f;

static void tracked_cb(struct craft_uv_request *req, const struct craft_uv_result *r);

static void tracked_submit(struct uf *f, int node, int op, int retries)
{
    if (!f->node[node].up) {
        return;
    }
    struct tracked *t = calloc(1, sizeof *t);
    t->req.op = op;
    t->req.payload = op == CRAFT_UV_PROPOSE ? &one : NULL;
    t->req.size = op == CRAFT_UV_PROPOSE ? 8 : 0;
    t->req.cb = tracked_cb;
    t->req.timeout_ms = 3000;
    t->f = f;
    t->node = node;
    t->retries = retries;
    if (craft_uv_submit(f->node[node].n, &t->req) != 0) {
        free(t);
        return;
    }
    ev_submitted++;
}

static void tracked_cb(struct craft_uv_request *req, const struct craft_uv_result *r)
{
    struct tracked *t = (struct tracked *)req;
    t->answers++;
    if (t->answers > 1) {
        ev_twice++; /* never freed then: an answer after the first would be a use after free */
        return;
    }
    ev_answered++;
    ev_ok += r->status == 0;
    /* A failed read, a dropped or unsure proposal: submit again from inside the callback. */
    if (r->status != 0 && r->status != CRAFT_ESHUTDOWN && t->retries > 0) {
        tracked_submit(t->f, t->node, req->op, t->retries - 1);
    }
    free(t);
}

static void ev_event(void *data, const struct craft_uv_event *e)
{
    struct uf_node *u = data;
    if (e->type != CRAFT_UV_EVENT_ROLE || ev_f == NULL || !u->up) {
        return;
    }
    if (e->role == CRAFT_LEADER || e->leader != 0) {
        tracked_submit(ev_f, (int)u->id, CRAFT_UV_PROPOSE, 3);
        tracked_submit(ev_f, (int)u->id, CRAFT_UV_READ, 3);
    }
}

static bool ev_all_answered(struct uf *f, void *arg)
{
    (void)f;
    (void)arg;
    return ev_answered == ev_submitted;
}

static bool all_caught_up(struct uf *f, void *arg)
{
    (void)arg;
    struct craft_uv_status s[4];
    for (int i = 1; i <= 3; i++) {
        craft_uv_status(f->node[i].n, &s[i]);
    }
    return s[1].applied == s[2].applied && s[2].applied == s[3].applied &&
           s[1].applied == s[1].commit && s[1].commit > 0;
}

TEST(event_callbacks_submit_on_the_loop_thread)
{
    struct uf f;
    uf_init(&f, 3);
    uf_embed(&f);
    ev_f = &f;
    for (int i = 1; i <= 3; i++) {
        struct uf_node *u = &f.node[i];
        struct craft_uv_config c = f.base;
        c.id = u->id;
        c.address = u->address;
        c.data_dir = u->dir;
        c.bootstrap = &f.conf;
        memset(&strict[i], 0, sizeof strict[i]);
        c.fsm.data = &strict[i];
        c.fsm.apply = strict_apply;
        c.event = ev_event;
        c.event_data = u;
        c.seed = (uint64_t)i * 104729;
        CHECK_OK(craft_uv_node_new(&f.loop, &c, &u->n));
        u->up = true;
        CHECK_OK(craft_uv_node_start(u->n));
    }
    CHECK(uf_run_until(&f, uf_has_leader, NULL, 5000));
    /* Move leadership around: transfers, and a leader cut off until it steps down. */
    for (int round = 0; round < 6; round++) {
        int l = uf_leader(&f);
        if (l == 0) {
            uf_run_for(&f, 300);
            continue;
        }
        for (int k = 0; k < 20; k++) {
            tracked_submit(&f, 1 + k % 3, k % 2 ? CRAFT_UV_READ : CRAFT_UV_PROPOSE, 3);
        }
        if (round % 2 == 0) {
            struct craft_uv_request *req = calloc(1, sizeof *req);
            req->op = CRAFT_UV_TRANSFER;
            req->server = (craft_id)(l % 3 + 1);
            req->cb = uf_done_cb;
            req->data = &f;
            if (craft_uv_submit(f.node[l].n, req) != 0) {
                free(req);
            }
            uf_run_for(&f, 400);
        } else {
            for (int i = 1; i <= 3; i++) {
                if (i != l) {
                    CHECK_OK(craft_uv_set_faults(f.node[l].n, (craft_id)i, 0, 0, 0, true));
                    CHECK_OK(craft_uv_set_faults(f.node[i].n, (craft_id)l, 0, 0, 0, true));
                }
            }
            uf_run_for(&f, 800);
            for (int i = 1; i <= 3; i++) {
                if (i != l) {
                    CHECK_OK(craft_uv_set_faults(f.node[l].n, (craft_id)i, 0, 0, 0, false));
                    CHECK_OK(craft_uv_set_faults(f.node[i].n, (craft_id)l, 0, 0, 0, false));
                }
            }
            uf_run_for(&f, 300);
        }
    }
    CHECK(uf_run_until(&f, ev_all_answered, NULL, 30000));
    ev_f = NULL;
    CHECK_EQ(ev_twice, 0);
    CHECK(ev_ok > 0);
    /* Every node catches up with the leader; each applied every index once, in order. */
    CHECK(uf_run_until(&f, all_caught_up, NULL, 10000));
    int64_t values[4];
    for (int i = 1; i <= 3; i++) {
        CHECK_EQ(strict[i].out_of_order, 0);
        values[i] = strict[i].value;
    }
    CHECK(values[1] == values[2] && values[2] == values[3]);
    uf_close(&f);
}

HARNESS_MAIN()
