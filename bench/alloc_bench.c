/*
 * bench-alloc: allocations per proposal on the hot path (issue 17, "a hot path without waste").
 *
 * Three nodes of the libuv runtime in one process, on 127.0.0.1 with real sockets and real
 * files (fsync off: this counts work, not disk time), each node with a counting allocator of its
 * own (every allocation craft makes goes through craft_uv_config.alloc: the core, the disk
 * store, the transport and the runtime). Proposals of 100 bytes are kept W in flight from the
 * leader's loop; after a warm-up, the allocations each node made are divided by the proposals
 * committed. The state machine's own result buffer (one craft_malloc(NULL) per command here) is
 * the user's and is not counted. Printed as a table per window; counts are exact, not timings,
 * so one run is enough.
 *
 *   bench-alloc [--proposals N] [--windows 1,16,256]
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "craft.h"
#include "craft/uv.h"

struct counting {
    atomic_ullong mallocs, callocs, reallocs, frees;
};

static void *c_malloc(void *d, size_t n)
{
    atomic_fetch_add(&((struct counting *)d)->mallocs, 1);
    return malloc(n);
}
static void *c_calloc(void *d, size_t k, size_t n)
{
    atomic_fetch_add(&((struct counting *)d)->callocs, 1);
    return calloc(k, n);
}
static void *c_realloc(void *d, void *p, size_t n)
{
    atomic_fetch_add(&((struct counting *)d)->reallocs, 1);
    return realloc(p, n);
}
static void c_free(void *d, void *p)
{
    if (p != NULL) {
        atomic_fetch_add(&((struct counting *)d)->frees, 1);
    }
    free(p);
}

static unsigned long long total(struct counting *c)
{
    return atomic_load(&c->mallocs) + atomic_load(&c->callocs) + atomic_load(&c->reallocs);
}

#define N 3
static struct {
    uv_loop_t loop;
    struct craft_uv_node *node[N + 1];
    struct counting count[N + 1];
    struct craft_allocator alloc[N + 1];
    char dir[N + 1][256];
    char address[N + 1][64];
    unsigned long long done, submitted, target;
    int leader;
    unsigned window;
    unsigned char payload[100];
    bool stopped[N + 1];
    /* Answers come on the leader's state machine thread (the runtime answers an applied
     * proposal there): they reach the loop, which submits the next ones, through a queue. */
    uv_mutex_t mu;
    uv_async_t done_async;
    unsigned long long answered;
    int failed;
} B;

static int fsm_apply(void *data, struct craft_uv_apply *cmds, size_t n)
{
    (void)data;
    for (size_t i = 0; i < n; i++) {
        cmds[i].result = craft_malloc(NULL, 8);
        if (cmds[i].result == NULL) {
            return CRAFT_ENOMEM;
        }
        memset(cmds[i].result, 0, 8);
        cmds[i].result_size = 8;
    }
    return 0;
}

static int fsm_snapshot(void *data, craft_uv_write_fn write, void *ctx)
{
    (void)data;
    return write(ctx, "s", 1);
}

static int fsm_restore(void *data, craft_uv_read_fn read, void *ctx)
{
    (void)data;
    unsigned char b[64];
    size_t got = 0;
    do {
        int rc = read(ctx, b, sizeof b, &got);
        if (rc != 0) {
            return rc;
        }
    } while (got > 0);
    return 0;
}

static struct craft_uv_request *reqs;

static void submit_one(void);

static void on_done(struct craft_uv_request *req, const struct craft_uv_result *r)
{
    (void)req;
    uv_mutex_lock(&B.mu);
    B.answered++;
    if (r->status != 0 && B.failed == 0) {
        B.failed = r->status;
    }
    uv_mutex_unlock(&B.mu);
    uv_async_send(&B.done_async);
}

/* On the loop: the answers that arrived, and as many new proposals. */
static void on_answers(uv_async_t *h)
{
    (void)h;
    uv_mutex_lock(&B.mu);
    unsigned long long k = B.answered - B.done;
    int failed = B.failed;
    uv_mutex_unlock(&B.mu);
    if (failed != 0) {
        fprintf(stderr, "bench-alloc: a proposal failed: %s\n", craft_err_name(failed));
        exit(1);
    }
    B.done += k;
    while (k-- > 0 && B.submitted < B.target) {
        submit_one();
    }
}

static void submit_one(void)
{
    struct craft_uv_request *req = &reqs[B.submitted % B.window];
    memset(req, 0, sizeof *req);
    req->op = CRAFT_UV_PROPOSE;
    req->payload = B.payload;
    req->size = sizeof B.payload;
    req->cb = on_done;
    B.submitted++;
    if (craft_uv_submit(B.node[B.leader], req) != 0) {
        fprintf(stderr, "bench-alloc: submit failed\n");
        exit(1);
    }
}

static void run_until_done(void)
{
    while (B.done < B.submitted) {
        uv_run(&B.loop, UV_RUN_ONCE);
    }
}

static int find_leader(void)
{
    for (int i = 1; i <= N; i++) {
        struct craft_uv_status s;
        craft_uv_status(B.node[i], &s);
        if (s.role == CRAFT_LEADER) {
            return i;
        }
    }
    return 0;
}

static void stopped_cb(void *data)
{
    B.stopped[(intptr_t)data] = true;
}

/* Runs `count` proposals at B.window in flight. */
static void burst(unsigned long long count)
{
    B.target = B.submitted + count;
    unsigned long long start = B.submitted;
    while (B.submitted < B.target && B.submitted - start < B.window) {
        submit_one();
    }
    run_until_done();
}

int main(int argc, char **argv)
{
    unsigned long long proposals = 20000;
    const char *windows = "1,16,256";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--proposals") == 0 && i + 1 < argc) {
            proposals = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--windows") == 0 && i + 1 < argc) {
            windows = argv[++i];
        } else {
            fprintf(stderr, "usage: bench-alloc [--proposals N] [--windows 1,16,256]\n");
            return 2;
        }
    }
    memset(B.payload, 'p', sizeof B.payload);
    reqs = calloc(4096, sizeof *reqs);
    printf("bench-alloc: allocations per committed 100-byte proposal, by node (craft's own "
           "allocations through craft_uv_config.alloc; the state machine's result is not "
           "counted); %llu proposals per point after 1,000 of warm-up\n\n",
           proposals);
    printf("| in flight | leader | each follower | cluster |\n|---|---|---|---|\n");

    char *list = strdup(windows);
    for (char *tok = strtok(list, ","); tok != NULL; tok = strtok(NULL, ",")) {
        unsigned w = (unsigned)atoi(tok);
        if (w == 0 || w > 4096) {
            continue;
        }
        memset(&B.count, 0, sizeof B.count);
        B.done = B.submitted = 0;
        B.window = w;
        B.answered = 0;
        B.failed = 0;
        uv_loop_init(&B.loop);
        uv_mutex_init(&B.mu);
        uv_async_init(&B.loop, &B.done_async, on_answers);
        char base[] = "/tmp/craft-alloc-XXXXXX";
        if (mkdtemp(base) == NULL) {
            perror("mkdtemp");
            return 1;
        }
        struct craft_configuration conf;
        craft_configuration_init(&conf);
        for (int i = 1; i <= N; i++) {
            snprintf(B.dir[i], sizeof B.dir[i], "%s/n%d", base, i);
            snprintf(B.address[i], sizeof B.address[i], "127.0.0.1:%d",
                     20000 + (int)(getpid() % 20000) + i * 7 + (int)w);
            craft_configuration_add(&conf, NULL, (craft_id)i, B.address[i], CRAFT_VOTER);
        }
        for (int i = 1; i <= N; i++) {
            B.alloc[i] = (struct craft_allocator){&B.count[i], c_malloc, c_calloc, c_realloc,
                                                  c_free};
            struct craft_uv_config c;
            craft_uv_config_init(&c, (craft_id)i);
            c.address = B.address[i];
            c.data_dir = B.dir[i];
            c.bootstrap = &conf;
            c.fsync = false;
            c.segment_size = 64u << 20;
            c.snapshot_entries = 1u << 30; /* no snapshot inside a point */
            c.alloc = &B.alloc[i];
            c.seed = (uint64_t)i;
            c.log_level = CRAFT_UV_WARN;
            c.fsm.apply = fsm_apply;
            c.fsm.snapshot = fsm_snapshot;
            c.fsm.restore = fsm_restore;
            if (craft_uv_node_new(&B.loop, &c, &B.node[i]) != 0 ||
                craft_uv_node_start(B.node[i]) != 0) {
                fprintf(stderr, "bench-alloc: node %d: %s\n", i, craft_uv_last_error());
                return 1;
            }
        }
        craft_configuration_close(&conf, NULL);
        while ((B.leader = find_leader()) == 0) {
            uv_run(&B.loop, UV_RUN_ONCE);
        }
        burst(1000);
        unsigned long long before[N + 1];
        for (int i = 1; i <= N; i++) {
            before[i] = total(&B.count[i]);
        }
        burst(proposals);
        double leader = 0, follower = 0, cluster = 0;
        for (int i = 1; i <= N; i++) {
            double per = (double)(total(&B.count[i]) - before[i]) / (double)proposals;
            cluster += per;
            if (i == B.leader) {
                leader = per;
            } else {
                follower += per / (N - 1);
            }
        }
        printf("| %u | %.2f | %.2f | %.2f |\n", w, leader, follower, cluster);
        fflush(stdout);
        for (int i = 1; i <= N; i++) {
            B.stopped[i] = false;
            craft_uv_node_stop(B.node[i], stopped_cb, (void *)(intptr_t)i);
        }
        for (int i = 1; i <= N; i++) {
            while (!B.stopped[i]) {
                uv_run(&B.loop, UV_RUN_ONCE);
            }
        }
        uv_close((uv_handle_t *)&B.done_async, NULL);
        uv_run(&B.loop, UV_RUN_DEFAULT);
        uv_loop_close(&B.loop);
        uv_mutex_destroy(&B.mu);
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
        if (system(cmd) != 0) {
            fprintf(stderr, "bench-alloc: could not remove %s\n", base);
        }
    }
    free(list);
    free(reqs);
    return 0;
}
