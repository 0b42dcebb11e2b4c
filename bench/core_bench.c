/* Benchmark B8: the protocol core alone. Three nodes in one process, no I/O: every message is
 * handed straight to its destination and every write is "persisted" at once, so what is
 * measured is the core's own cost per committed entry (appending, batching into
 * AppendEntries, acknowledging, counting the quorum, handing out committed entries).
 *
 *   bench-core [ENTRIES] [BATCH] [PAYLOAD]     defaults: 2000000 entries, 256, 64 bytes
 *
 * Prints a table with the median of 5 runs and the spread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "craft.h"

#define NODES 3

struct cluster {
    struct craft_node *node[NODES + 1];
    struct craft_message *queue; /* messages without entries (results), copied */
    size_t n_queue, cap_queue;
    uint64_t applied;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench-core: %s: %s\n", what, craft_strerror(rc));
    exit(1);
}

/* Takes node id's update: messages with entries go to their destination at once (their
 * pointers die with the next call into id), the rest are queued. */
static void pump(struct cluster *c, craft_id id)
{
    struct craft_node *n = c->node[id];
    while (craft_has_update(n)) {
        struct craft_update u;
        int rc = craft_take_update(n, &u);
        if (rc != 0) {
            die("take_update", rc);
        }
        if (id == 1) {
            c->applied += u.n_committed;
        }
        for (size_t i = 0; i < u.n_messages; i++) {
            const struct craft_message *m = &u.messages[i];
            if (m->type == CRAFT_MSG_APPEND_ENTRIES && m->to != id) {
                rc = craft_step(c->node[m->to], m);
                if (rc != 0) {
                    die("step", rc);
                }
            } else {
                if (c->n_queue == c->cap_queue) {
                    c->cap_queue = c->cap_queue ? c->cap_queue * 2 : 1024;
                    c->queue = realloc(c->queue, c->cap_queue * sizeof *c->queue);
                }
                c->queue[c->n_queue++] = *m;
            }
        }
        if (u.seq != 0) {
            craft_persisted(n, u.seq);
        }
    }
}

static void settle(struct cluster *c)
{
    for (int round = 0; round < 1000; round++) {
        bool any = false;
        for (craft_id id = 1; id <= NODES; id++) {
            if (craft_has_update(c->node[id])) {
                pump(c, id);
                any = true;
            }
        }
        size_t k = c->n_queue;
        for (size_t i = 0; i < k; i++) {
            struct craft_message m = c->queue[i];
            int rc = craft_step(c->node[m.to], &m);
            if (rc != 0) {
                die("step", rc);
            }
        }
        memmove(c->queue, c->queue + k, (c->n_queue - k) * sizeof *c->queue);
        c->n_queue -= k;
        if (!any && k == 0) {
            return;
        }
    }
}

static double run(uint64_t entries, size_t batch, size_t payload)
{
    struct cluster c = {0};
    struct craft_configuration conf;
    craft_configuration_init(&conf);
    for (craft_id id = 1; id <= NODES; id++) {
        craft_configuration_add(&conf, NULL, id, "", CRAFT_VOTER);
    }
    for (craft_id id = 1; id <= NODES; id++) {
        struct craft_config cfg;
        craft_config_init(&cfg, id);
        cfg.max_batch_entries = 4096;
        cfg.max_inflight = 1024;
        struct craft_boot b = {0};
        b.bootstrap = &conf;
        int rc = craft_node_new(&cfg, &b, &c.node[id]);
        if (rc != 0) {
            die("node_new", rc);
        }
    }
    craft_configuration_close(&conf, NULL);
    for (int t = 0; t < 100 && craft_node_role(c.node[1]) != CRAFT_LEADER; t++) {
        craft_tick(c.node[1]);
        settle(&c);
    }
    if (craft_node_role(c.node[1]) != CRAFT_LEADER) {
        die("election", CRAFT_ESTATE);
    }
    char *data = calloc(1, payload);
    struct craft_buf *bufs = calloc(batch, sizeof *bufs);
    for (size_t i = 0; i < batch; i++) {
        bufs[i].base = data;
        bufs[i].len = payload;
    }
    c.applied = 0;
    uint64_t base = craft_node_applied(c.node[1]);
    double t0 = now_s();
    uint64_t proposed = 0;
    while (proposed < entries) {
        int rc = craft_propose_batch(c.node[1], bufs, batch, NULL, NULL);
        if (rc != 0) {
            die("propose", rc);
        }
        proposed += batch;
        settle(&c);
    }
    double dt = now_s() - t0;
    uint64_t committed = craft_node_applied(c.node[1]) - base;
    if (committed < proposed) {
        fprintf(stderr, "bench-core: only %llu of %llu committed\n",
                (unsigned long long)committed, (unsigned long long)proposed);
        exit(1);
    }
    for (craft_id id = 1; id <= NODES; id++) {
        craft_node_free(c.node[id]);
    }
    free(c.queue);
    free(data);
    free(bufs);
    return (double)committed / dt;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    uint64_t entries = argc > 1 ? strtoull(argv[1], NULL, 10) : 2000000;
    size_t payload = argc > 3 ? strtoul(argv[3], NULL, 10) : 64;
    size_t batches[] = {1, 16, 256, 1024};
    size_t only = argc > 2 ? strtoul(argv[2], NULL, 10) : 0;
    printf("B8 core alone: 3 nodes in one process, no I/O, %zu-byte commands, median of 5\n",
           payload);
    printf("%-8s %14s %12s %18s\n", "batch", "entries/s", "ns/entry", "spread (min-max)");
    for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
        size_t batch = only ? only : batches[b];
        uint64_t n = batch == 1 ? entries / 10 : entries;
        double r[5];
        for (int k = 0; k < 5; k++) {
            r[k] = run(n, batch, payload);
        }
        qsort(r, 5, sizeof r[0], cmp);
        printf("%-8zu %14.0f %12.0f %8.0f-%-9.0f\n", batch, r[2], 1e9 / r[2], r[0], r[4]);
        if (only) {
            break;
        }
    }
    return 0;
}
