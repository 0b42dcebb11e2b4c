/*
 * Client sessions in the simulator (thesis 6.3): clients send numbered commands through a
 * cluster whose leaders crash and whose network partitions, drops and duplicates; they retry
 * on timeouts, after lost proposals, and sometimes for no reason at all (as an impatient client
 * would). Each node's apply callback feeds its own craft_sessions table and a counter state
 * machine, exactly as a driver does (docs/sessions.md). Checked:
 *
 *   - every command is applied at most once on every node, however often it was committed;
 *   - every command a client saw answered was applied exactly once, and every answer it got
 *     for one command (first application or duplicate) is the same result;
 *   - at the end every node has applied the same commands and holds a byte-identical table;
 *   - restoring a node's table from its own snapshot bytes mid-run changes nothing.
 *
 * The sim's own invariant checker runs after every event as well.
 */
#include "harness.h"

#include <inttypes.h>

#include "craft/session.h"
#include "craft/sim.h"

#define N_NODES 5
#define N_CLIENTS 4
#define N_CMDS 40       /* per client */
#define MAX_ATTEMPTS 16 /* proposals a client remembers */
#define CLIENT_TIMEOUT_MS 300
#define STEP_MS 10
#define RUN_LIMIT_MS 240000

struct node_fsm {
    struct craft_sessions *t;
    uint64_t counter;
    uint8_t applied[N_CLIENTS][N_CMDS + 1];
    char result[N_CLIENTS][N_CMDS + 1][24];
};

/* A proposal a client made and is waiting to hear about: the answer comes from the node it was
 * proposed at, when that node applies the entry at index (if it still has term there). */
struct attempt {
    bool live;
    craft_id node;
    craft_index index;
    craft_term term;
    uint64_t seq; /* 0: a registration */
};

struct client {
    uint64_t id;  /* 0 until registered */
    uint64_t seq; /* the command being sent, 1..N_CMDS; N_CMDS + 1 when done */
    struct attempt att[MAX_ATTEMPTS];
    unsigned next_att;
    uint64_t sent_at;
    uint64_t think_until;        /* a pause before each new command (0: not chosen yet) */
    char answer[N_CMDS + 1][24]; /* first answer per seq, "" if none yet */
};

struct world {
    struct craft_sim *sim;
    struct craft_sessions_options opts;
    struct node_fsm node[N_NODES];
    struct client cl[N_CLIENTS];
    uint64_t rng;
    char error[256];     /* the first error seen in a callback */
    uint64_t duplicates; /* DUPLICATE outcomes, all nodes */
    uint64_t answers_again;
    uint64_t restores;
};

static uint64_t rnd(struct world *w)
{
    uint64_t z = (w->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static bool chance(struct world *w, unsigned percent_x10)
{
    return rnd(w) % 1000 < percent_x10;
}

static void fail_once(struct world *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail_once(struct world *w, const char *fmt, ...)
{
    if (w->error[0] != '\0') {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->error, sizeof(w->error), fmt, ap);
    va_end(ap);
}

static void fsm_reset(struct world *w, unsigned i)
{
    struct node_fsm *f = &w->node[i];
    craft_sessions_free(f->t);
    memset(f, 0, sizeof(*f));
    if (craft_sessions_new(NULL, &w->opts, &f->t) != 0) {
        fail_once(w, "craft_sessions_new failed");
    }
}

/* The client whose attempt this entry answers, if any. */
static void deliver(struct world *w, craft_id node, const struct craft_entry *e,
                    const struct craft_session_outcome *o, const char *result)
{
    for (unsigned k = 0; k < N_CLIENTS; k++) {
        struct client *c = &w->cl[k];
        for (unsigned j = 0; j < MAX_ATTEMPTS; j++) {
            struct attempt *a = &c->att[j];
            if (!a->live || a->node != node || a->index != e->index) {
                continue;
            }
            a->live = false;
            if (a->term != e->term) {
                continue; /* the proposal was lost to a leader change: the client retries */
            }
            if (a->seq == 0) {
                if (o->kind != CRAFT_SESSION_REGISTERED) {
                    fail_once(w, "registration at %" PRIu64 " gave %s", e->index,
                              craft_session_outcome_name(o->kind));
                } else if (c->id == 0) {
                    c->id = o->client;
                    c->seq = 1;
                    c->sent_at = 0;
                }
                continue;
            }
            if (o->kind == CRAFT_SESSION_STALE && a->seq < c->seq) {
                continue; /* a late retry of an acknowledged command: refused, fine */
            }
            if (o->kind != CRAFT_SESSION_APPLY && o->kind != CRAFT_SESSION_DUPLICATE) {
                fail_once(w, "client %u seq %" PRIu64 " at %" PRIu64 ": %s", k, a->seq, e->index,
                          craft_session_outcome_name(o->kind));
                continue;
            }
            char *first = c->answer[a->seq];
            if (first[0] == '\0') {
                snprintf(first, 24, "%s", result);
            } else {
                w->answers_again++;
                if (strcmp(first, result) != 0) {
                    fail_once(w, "client %u seq %" PRIu64 ": answered %s, then %s", k, a->seq,
                              first, result);
                }
            }
            if (a->seq == c->seq) {
                c->seq++; /* answered: on to the next command, after a pause */
                c->sent_at = 0;
            }
        }
    }
}

static void on_apply(void *ud, craft_id node, const struct craft_entry *e)
{
    struct world *w = ud;
    struct node_fsm *f = &w->node[node - 1];
    struct craft_session_outcome o;
    int rc = craft_sessions_apply(f->t, e, &o);
    if (rc != 0) {
        fail_once(w, "n%" PRIu64 " apply %" PRIu64 ": %s", node, e->index, craft_err_name(rc));
        return;
    }
    char result[24] = "";
    if (o.kind == CRAFT_SESSION_APPLY) {
        unsigned k;
        unsigned long long seq;
        char text[32];
        snprintf(text, sizeof(text), "%.*s", (int)(o.payload_len < 31 ? o.payload_len : 31),
                 (const char *)o.payload);
        if (sscanf(text, "c%u.%llu", &k, &seq) != 2 || k >= N_CLIENTS || seq == 0 || seq > N_CMDS ||
            o.seq != seq) {
            fail_once(w, "bad payload at %" PRIu64, e->index);
            return;
        }
        /* The state machine proper: a counter. */
        f->counter++;
        if (++f->applied[k][seq] > 1) {
            fail_once(w, "n%" PRIu64 " applied client %u seq %llu twice (index %" PRIu64 ")", node,
                      k, seq, e->index);
        }
        snprintf(result, sizeof(result), "n=%" PRIu64, f->counter);
        snprintf(f->result[k][seq], sizeof(f->result[k][seq]), "%s", result);
        rc = craft_sessions_record(f->t, o.client, o.seq, result, strlen(result));
        if (rc != 0) {
            fail_once(w, "record: %s", craft_err_name(rc));
        }
    } else if (o.kind == CRAFT_SESSION_DUPLICATE) {
        w->duplicates++;
        snprintf(result, sizeof(result), "%.*s", (int)o.result_len, (const char *)o.result);
    }
    deliver(w, node, e, &o, result);

    /* Now and then, replace the table by what its snapshot bytes restore (as installing a
     * snapshot does): nothing may change. */
    if (e->index % 37 == (node * 7) % 37) {
        void *buf;
        size_t size;
        struct craft_sessions *t2;
        if (craft_sessions_encode(f->t, &buf, &size) != 0 ||
            craft_sessions_new(NULL, &w->opts, &t2) != 0) {
            fail_once(w, "encode/new failed");
            return;
        }
        rc = craft_sessions_decode(t2, buf, size);
        craft_free(NULL, buf);
        if (rc != 0) {
            fail_once(w, "decode of a fresh encoding: %s", craft_err_name(rc));
            craft_sessions_free(t2);
            return;
        }
        craft_sessions_free(f->t);
        f->t = t2;
        w->restores++;
    }
}

/* A crashed node restarts as a fresh state machine and applies its log from the start. */
static void on_event(void *ud, const struct craft_sim_event *ev)
{
    struct world *w = ud;
    if (ev->kind == CRAFT_SIM_EV_CRASH && ev->node >= 1 && ev->node <= N_NODES) {
        fsm_reset(w, (unsigned)(ev->node - 1));
    }
}

static void client_act(struct world *w, unsigned k)
{
    struct client *c = &w->cl[k];
    uint64_t now = craft_sim_now(w->sim);
    if (c->seq > N_CMDS) {
        return;
    }
    bool waiting = c->sent_at != 0;
    if (!waiting) {
        if (c->think_until == 0) {
            c->think_until = now + 1 + rnd(w) % 150;
        }
        if (now < c->think_until) {
            return;
        }
    }
    bool timed_out = waiting && now - c->sent_at >= CLIENT_TIMEOUT_MS;
    bool impatient = waiting && chance(w, 15); /* retry though the first may still land */
    bool lost = true;
    for (unsigned j = 0; j < MAX_ATTEMPTS; j++) {
        lost = lost && !c->att[j].live;
    }
    if (waiting && !timed_out && !impatient && !lost) {
        return;
    }
    craft_id leader = craft_sim_leader(w->sim);
    if (leader == 0) {
        return;
    }
    void *buf;
    size_t size;
    char payload[32];
    uint64_t seq = c->id == 0 ? 0 : c->seq;
    int rc;
    if (seq == 0) {
        rc = craft_session_encode_register(NULL, &buf, &size);
    } else {
        snprintf(payload, sizeof(payload), "c%u.%" PRIu64, k, seq);
        rc = craft_session_encode_command(NULL, c->id, seq, seq - 1, payload, strlen(payload), &buf,
                                          &size);
    }
    if (rc != 0) {
        fail_once(w, "encode: %s", craft_err_name(rc));
        return;
    }
    struct attempt a = {true, leader, 0, 0, seq};
    rc = craft_sim_propose(w->sim, leader, buf, size, &a.index, &a.term);
    craft_free(NULL, buf);
    if (rc == 0) {
        c->att[c->next_att] = a;
        c->next_att = (c->next_att + 1) % MAX_ATTEMPTS;
        c->sent_at = now;
        c->think_until = 0;
    }
}

static void faults(struct world *w, unsigned *down)
{
    struct craft_sim *s = w->sim;
    if (chance(w, 20) && *down < 2) {
        craft_id l = craft_sim_leader(s);
        if (l != 0 && craft_sim_crash(s, l) == 0) {
            (*down)++;
        }
    }
    if (*down > 0 && chance(w, 40)) {
        for (craft_id id = 1; id <= N_NODES; id++) {
            if (!craft_sim_is_up(s, id) && craft_sim_restart(s, id) == 0) {
                (*down)--;
                break;
            }
        }
    }
    if (chance(w, 15)) {
        unsigned groups[N_NODES];
        for (unsigned i = 0; i < N_NODES; i++) {
            groups[i] = (unsigned)(rnd(w) % 2);
        }
        craft_sim_partition(s, groups);
    }
    if (chance(w, 40)) {
        craft_sim_heal(s);
    }
}

struct probe {
    craft_index index;
    craft_term term;
};

static bool all_applied(struct craft_sim *s, void *ud)
{
    const struct probe *p = ud;
    for (craft_id id = 1; id <= craft_sim_n_nodes(s); id++) {
        const struct craft_sim_applied *a;
        size_t n;
        if (craft_sim_applied(s, id, &a, &n) != 0 || n == 0 || a[n - 1].index < p->index) {
            return false;
        }
    }
    return true;
}

static bool clients_done(struct craft_sim *s, void *ud)
{
    (void)s;
    const struct world *w = ud;
    for (unsigned k = 0; k < N_CLIENTS; k++) {
        if (w->cl[k].seq <= N_CMDS) {
            return false;
        }
    }
    return true;
}

static void dump(void *ud, const char *line)
{
    (void)ud;
    fprintf(stderr, "  %s\n", line);
}

static void run_seed(uint64_t seed, uint64_t *duplicates, uint64_t *answers_again,
                     uint64_t *restores)
{
    struct world *w = calloc(1, sizeof(*w));
    CHECK(w != NULL);
    w->rng = seed * 1000003;
    craft_sessions_options_init(&w->opts);
    w->opts.max_sessions = 64;
    w->opts.expire_after = 1000000;
    w->opts.max_cached_results = 4;
    for (unsigned i = 0; i < N_NODES; i++) {
        fsm_reset(w, i);
    }
    struct craft_sim_options o;
    craft_sim_options_init(&o);
    o.n_nodes = N_NODES;
    o.seed = seed;
    o.drop_rate = 0.03;
    o.dup_rate = 0.03;
    o.max_delay_ms = 20;
    o.apply = on_apply;
    o.event = on_event;
    o.ud = w;
    CHECK_OK(craft_sim_new(&o, &w->sim));
    struct craft_sim *s = w->sim;

    unsigned down = 0;
    int rc = 0;
    while (!clients_done(s, w) && craft_sim_now(s) < RUN_LIMIT_MS && w->error[0] == '\0') {
        rc = craft_sim_run_for(s, STEP_MS);
        if (rc != 0) {
            break;
        }
        if (craft_sim_now(s) < RUN_LIMIT_MS / 2) {
            faults(w, &down);
        } else {
            craft_sim_heal(s); /* give the clients a calm second half to finish */
        }
        for (unsigned k = 0; k < N_CLIENTS; k++) {
            client_act(w, k);
        }
    }
    if (rc != 0) {
        craft_sim_dump_trace(s, dump, NULL);
        FAIL("seed %" PRIu64 ": sim stopped: %s (%s)", seed, craft_err_name(rc),
             craft_sim_error(s) ? craft_sim_error(s) : "");
    }
    if (w->error[0] != '\0') {
        FAIL("seed %" PRIu64 ": %s", seed, w->error);
    }
    if (!clients_done(s, w)) {
        FAIL("seed %" PRIu64 ": clients not done by %" PRIu64 " ms", seed, craft_sim_now(s));
    }

    /* Bring everyone back and let every node apply the same log. */
    craft_sim_heal(s);
    for (craft_id id = 1; id <= N_NODES; id++) {
        if (!craft_sim_is_up(s, id)) {
            CHECK_OK(craft_sim_restart(s, id));
        }
    }
    struct probe p = {0, 0};
    for (int tries = 0; tries < 50 && p.index == 0; tries++) {
        if (craft_sim_propose(s, 0, "end", 3, &p.index, &p.term) != 0) {
            p.index = 0;
            CHECK_OK(craft_sim_run_for(s, 100));
        }
    }
    CHECK(p.index != 0);
    rc = craft_sim_run_until(s, all_applied, &p, 60000);
    if (rc != 0) {
        FAIL("seed %" PRIu64 ": not every node applied %" PRIu64 ": %s", seed, p.index,
             craft_err_name(rc));
    }
    if (w->error[0] != '\0') {
        FAIL("seed %" PRIu64 ": %s", seed, w->error);
    }

    /* Exactly once, everywhere, with the answers the clients saw. */
    void *ref;
    size_t ref_size;
    CHECK_OK(craft_sessions_encode(w->node[0].t, &ref, &ref_size));
    for (unsigned i = 0; i < N_NODES; i++) {
        struct node_fsm *f = &w->node[i];
        CHECK_EQ(craft_sessions_last_index(f->t), p.index);
        CHECK_EQ(f->counter, (uint64_t)N_CLIENTS * N_CMDS);
        for (unsigned k = 0; k < N_CLIENTS; k++) {
            for (unsigned q = 1; q <= N_CMDS; q++) {
                if (f->applied[k][q] != 1) {
                    FAIL("seed %" PRIu64 ": n%u applied client %u seq %u %u times", seed, i + 1, k,
                         q, f->applied[k][q]);
                }
                CHECK_STR_EQ(f->result[k][q], w->node[0].result[k][q]);
                CHECK_STR_EQ(w->cl[k].answer[q], f->result[k][q]);
            }
        }
        void *buf;
        size_t size;
        CHECK_OK(craft_sessions_encode(f->t, &buf, &size));
        if (size != ref_size || memcmp(buf, ref, size) != 0) {
            FAIL("seed %" PRIu64 ": n%u's session table differs from n1's", seed, i + 1);
        }
        craft_free(NULL, buf);
    }
    craft_free(NULL, ref);
    *duplicates += w->duplicates;
    *answers_again += w->answers_again;
    *restores += w->restores;
    craft_sim_free(s);
    for (unsigned i = 0; i < N_NODES; i++) {
        craft_sessions_free(w->node[i].t);
    }
    free(w);
}

TEST(exactly_once_through_crashes_and_partitions)
{
    uint64_t seeds = (uint64_t)harness_env_int("CRAFT_SESSION_SEEDS", 20);
    uint64_t duplicates = 0, answers_again = 0, restores = 0;
    for (uint64_t seed = 1; seed <= seeds; seed++) {
        run_seed(seed, &duplicates, &answers_again, &restores);
        if (harness_failed()) {
            return;
        }
    }
    /* The runs did exercise what they claim to: retried commands committed more than once,
     * clients answered more than once for one command, tables restored from bytes. */
    fprintf(stderr,
            "  %" PRIu64 " seeds: %" PRIu64 " duplicates filtered, %" PRIu64
            " repeated answers, %" PRIu64 " table restores\n",
            seeds, duplicates, answers_again, restores);
    CHECK(duplicates > 0);
    CHECK(answers_again > 0);
    CHECK(restores > 0);
}

HARNESS_MAIN()
