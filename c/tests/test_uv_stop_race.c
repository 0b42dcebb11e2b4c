/* Other threads calling craft_uv_submit, craft_uv_set_faults and craft_uv_status while the loop
 * thread stops the node. The contract (craft/uv.h): such calls may overlap the whole stop, until
 * the stop callback returns; once the stop has begun they return CRAFT_ESHUTDOWN and touch
 * nothing the stop closes or frees. Run it in the ASan build: a call that wakes the loop through
 * a handle already closed and freed is a use after free there. Bounded in count and time. */
#include "harness.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#include "uv_fixture.h"

#define THREADS 6

struct race {
    struct craft_uv_node *n;
    atomic_bool stop_flag;  /* no new call starts once set */
    atomic_int inflight;    /* calls begun and not returned */
    atomic_uint submitted;  /* submits that returned 0: each must be answered once */
    atomic_uint answered;
    atomic_uint refused;    /* CRAFT_ESHUTDOWN */
    atomic_uint unexpected; /* any other error */
    atomic_uint seed;
    bool stopped;
    bool drained; /* every call had returned when the stop callback ran */
};

static void race_cb(struct craft_uv_request *req, const struct craft_uv_result *r)
{
    struct race *x = req->data;
    (void)r;
    atomic_fetch_add(&x->answered, 1);
    free(req);
}

static int one_call(struct race *x, unsigned *seed)
{
    static const int64_t one = 1;
    switch (rand_r(seed) % 4) {
    case 0:
    case 1: {
        struct craft_uv_request *req = calloc(1, sizeof *req);
        req->op = rand_r(seed) % 2 ? CRAFT_UV_PROPOSE : CRAFT_UV_READ;
        req->payload = &one;
        req->size = req->op == CRAFT_UV_PROPOSE ? 8 : 0;
        req->cb = race_cb;
        req->data = x;
        req->timeout_ms = 2000;
        int rc = craft_uv_submit(x->n, req);
        if (rc != 0) {
            free(req);
        } else {
            atomic_fetch_add(&x->submitted, 1);
        }
        return rc;
    }
    case 2:
        return craft_uv_set_faults(x->n, 2, 0.0, 0, 0, rand_r(seed) % 2);
    default: {
        struct craft_uv_status s;
        return craft_uv_status(x->n, &s);
    }
    }
}

static void *caller(void *p)
{
    struct race *x = p;
    unsigned seed = atomic_fetch_add(&x->seed, 7919);
    for (;;) {
        atomic_fetch_add(&x->inflight, 1);
        if (atomic_load(&x->stop_flag)) {
            atomic_fetch_sub(&x->inflight, 1);
            return NULL;
        }
        int rc = one_call(x, &seed);
        atomic_fetch_sub(&x->inflight, 1);
        if (rc == CRAFT_ESHUTDOWN) {
            atomic_fetch_add(&x->refused, 1);
            return NULL;
        }
        if (rc != 0) {
            atomic_fetch_add(&x->unexpected, 1);
        }
        if (rand_r(&seed) % 8 == 0) {
            sched_yield();
        }
    }
}

/* The stop callback: the node still exists until it returns, so it waits (bounded) for the
 * calls still in progress, as an owner of such threads must. */
static void race_stopped(void *data)
{
    struct race *x = data;
    /* No call may start from now on (a thread between two calls would otherwise start one on
     * a freed node once this returns), then the ones in progress finish. */
    atomic_store(&x->stop_flag, true);
    for (int k = 0; k < 2000000 && atomic_load(&x->inflight) > 0; k++) {
        sched_yield();
    }
    x->drained = atomic_load(&x->inflight) == 0;
    x->stopped = true;
}

static bool race_is_stopped(struct uf *f, void *arg)
{
    (void)f;
    return ((struct race *)arg)->stopped;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

TEST(calls_from_other_threads_race_stop)
{
    int iterations = harness_env_int("CRAFT_STOP_RACE_ITERATIONS", 150);
    uint64_t deadline = now_ms() + (uint64_t)harness_env_int("CRAFT_STOP_RACE_SECONDS", 40) * 1000;
    unsigned seed = 12345;
    int done = 0;
    for (int it = 0; it < iterations && now_ms() < deadline; it++, done++) {
        struct uf f;
        uf_init(&f, 1);
        f.base.default_timeout_ms = 2000;
        CHECK_OK(uf_start(&f));
        struct race x;
        memset(&x, 0, sizeof x);
        x.n = f.node[1].n;
        atomic_init(&x.seed, (unsigned)it * 31 + 1);
        pthread_t t[THREADS];
        for (int k = 0; k < THREADS; k++) {
            pthread_create(&t[k], NULL, caller, &x);
        }
        /* Serve the calls for a moment (none to a few loop turns), then stop under them. */
        int turns = rand_r(&seed) % 20;
        for (int k = 0; k < turns; k++) {
            uv_run(&f.loop, UV_RUN_NOWAIT);
        }
        if (it % 2 == 0) {
            atomic_store(&x.stop_flag, true); /* half the time, calls stop starting first */
        }
        craft_uv_node_stop(x.n, race_stopped, &x);
        f.node[1].up = false;
        CHECK(uf_run_until(&f, race_is_stopped, &x, 10000));
        atomic_store(&x.stop_flag, true);
        for (int k = 0; k < THREADS; k++) {
            pthread_join(t[k], NULL);
        }
        CHECK(x.drained);
        CHECK_EQ(atomic_load(&x.unexpected), 0);
        /* Every accepted request was answered exactly once (the rest failed at stop). */
        CHECK_EQ(atomic_load(&x.answered), atomic_load(&x.submitted));
        uf_close(&f);
        if (harness_failed()) {
            return;
        }
    }
    CHECK(done > 0);
}

HARNESS_MAIN()
