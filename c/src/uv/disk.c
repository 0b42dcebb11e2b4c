/* The disk queue. Every store call of a running node happens here, on libuv's thread pool, one
 * job at a time (the storage interface allows no concurrent calls), in FIFO order:
 *
 *   JOB_WRITE          the hard state, a snapshot chunk and entries of one or more updates, in
 *                      the driver contract's order, then craft_persisted(seq) on the loop. Updates taken while a write runs are
 *                      merged into the job waiting behind it: one append and one fdatasync for
 *                      all of them (group commit). A chunk is never merged with what follows it,
 *                      because installing a snapshot must come before the entries after it.
 *   JOB_READ_CHUNK     reads a chunk of our snapshot for an InstallSnapshot to send.
 *   JOB_TAKE_SNAPSHOT  runs the state machine's snapshot callback into a new snapshot file.
 *   JOB_RESTORE        runs the state machine's restore callback from the latest snapshot.
 *   JOB_COMPACT        compacts the store after a snapshot.
 *
 * While the disk works the loop keeps serving the network; the leader's own write of new
 * entries proceeds in parallel with sending them (thesis 10.2.1). */
#include <stdio.h>
#include <string.h>

#include "uv/node.h"

void craft__uv_job_free(struct craft_uv_node *n, struct craft__job *j)
{
    if (j == NULL) {
        return;
    }
    craft_free(n->alloc, j->entries);
    craft_free(n->alloc, j->offsets);
    craft_free(n->alloc, j->payload);
    craft_free(n->alloc, (void *)j->chunk.data);
    craft_configuration_close(&j->chunk.meta.conf, n->alloc);
    craft_free(n->alloc, (void *)j->msg.u.install_snapshot.data);
    if (j->kind == JOB_READ_CHUNK) {
        craft_configuration_close(&j->msg.u.install_snapshot.meta.conf, n->alloc);
    }
    craft_configuration_close(&j->meta.conf, n->alloc);
    craft_free(n->alloc, j);
}

/* A job about to run takes no more updates: its payload buffer stops moving, so the entries
 * can point into it. */
static void job_seal(struct craft__job *j)
{
    for (size_t k = 0; k < j->n_entries; k++) {
        j->entries[k].data = j->entries[k].size > 0 ? j->payload + j->offsets[k] : NULL;
    }
}

void craft__uv_job_push(struct craft_uv_node *n, struct craft__job *j)
{
    j->next = NULL;
    if (n->jobs_tail != NULL) {
        n->jobs_tail->next = j;
    } else {
        n->jobs = j;
    }
    n->jobs_tail = j;
}

/* A finished job: a plain write job is kept, with the capacity of its arrays and payload
 * buffer, for the next one (one at a time runs, so one spare is enough: in steady state the
 * disk queue then allocates nothing per write). */
static void job_done(struct craft_uv_node *n, struct craft__job *j)
{
    if (j->kind != JOB_WRITE || j->has_chunk || n->spare_job != NULL || n->dead) {
        craft__uv_job_free(n, j);
        return;
    }
    j->next = NULL;
    j->started = false;
    j->rc = 0;
    j->err[0] = '\0';
    j->seq = 0;
    j->has_hs = false;
    j->n_entries = 0;
    j->payload_len = 0;
    n->spare_job = j;
}

/* The write job that new updates may still be merged into, or a new one. */
struct craft__job *craft__uv_job_tail_write(struct craft_uv_node *n)
{
    struct craft__job *t = n->jobs_tail;
    if (t != NULL && t->kind == JOB_WRITE && !t->started && !t->has_chunk) {
        return t;
    }
    if (n->spare_job != NULL) {
        t = n->spare_job;
        n->spare_job = NULL;
        craft__uv_job_push(n, t);
        return t;
    }
    t = craft_calloc(n->alloc, 1, sizeof *t);
    if (t == NULL) {
        return NULL;
    }
    t->kind = JOB_WRITE;
    craft_configuration_init(&t->chunk.meta.conf);
    craft_configuration_init(&t->meta.conf);
    craft__uv_job_push(n, t);
    return t;
}

static void fail(struct craft__job *j, int rc, const char *what, struct craft_store *s)
{
    (void)s;
    j->rc = rc;
    snprintf(j->err, sizeof j->err, "%s: %s", what, craft_strerror(rc));
}

/* The store operations of a write job, in the order of the driver contract shared with the
 * simulator (storage/driver_contract.h says why each crash point between them is safe). */
static void do_write(struct craft_uv_node *n, struct craft__job *j)
{
    struct craft__persist_job pj = {
        .has_hard_state = j->has_hs,
        .hard_state = j->hs,
        .chunk = j->has_chunk ? &j->chunk : NULL,
        .discard_log = j->discard_log,
        .entries = j->entries,
        .n_entries = j->n_entries,
    };
    const char *what = "writing";
    int rc = craft__persist(n->store, &n->rx, &pj, NULL, &what);
    if (rc != 0) {
        fail(j, rc, what, n->store);
    }
}

static void do_read_chunk(struct craft_uv_node *n, struct craft__job *j)
{
    struct craft_store *s = n->store;
    struct craft_install_snapshot *is = &j->msg.u.install_snapshot;
    void *reader = NULL;
    int rc = s->snapshot_open(s->impl, &reader);
    if (rc != 0) {
        fail(j, rc, "opening the snapshot to send", s);
        return;
    }
    struct craft_snapshot_meta m;
    rc = s->snapshot_meta(s->impl, n->alloc, &m);
    if (rc == 0) {
        craft_configuration_close(&m.conf, n->alloc);
        if (m.index != is->meta.index) {
            rc = CRAFT_ENOTFOUND; /* replaced meanwhile: the core will send the new one */
        }
    }
    void *buf = rc == 0 ? craft_malloc(n->alloc, is->size ? is->size : 1) : NULL;
    if (rc == 0 && buf == NULL) {
        rc = CRAFT_ENOMEM;
    }
    size_t got = 0;
    while (rc == 0 && got < is->size) {
        size_t k = 0;
        rc = s->snapshot_read(s->impl, reader, is->offset + got, (char *)buf + got,
                              is->size - got, &k);
        if (rc == 0 && k == 0) {
            rc = CRAFT_ECORRUPT; /* shorter than its metadata says */
        }
        got += k;
    }
    s->snapshot_close(s->impl, reader);
    if (rc != 0) {
        craft_free(n->alloc, buf);
        j->rc = rc;
        return;
    }
    is->data = buf;
}

struct snap_writer {
    struct craft_store *s;
    void *w;
    uint64_t size;
};

static int snap_write(void *ctx, const void *buf, size_t len)
{
    struct snap_writer *sw = ctx;
    int rc = len > 0 ? sw->s->snapshot_write(sw->s->impl, sw->w, buf, len) : 0;
    if (rc == 0) {
        sw->size += len;
    }
    return rc;
}

static void do_take_snapshot(struct craft_uv_node *n, struct craft__job *j)
{
    struct craft_store *s = n->store;
    struct snap_writer sw = {s, NULL, 0};
    struct craft_snapshot_meta m = j->meta;
    m.size = 0;
    int rc = s->snapshot_begin(s->impl, &m, &sw.w);
    if (rc != 0) {
        fail(j, rc, "starting a snapshot", s);
        return;
    }
    rc = n->cfg.fsm.snapshot != NULL ? n->cfg.fsm.snapshot(n->cfg.fsm.data, snap_write, &sw)
                                     : CRAFT_EINVAL;
    if (rc != 0) {
        char why[320];
        s->snapshot_abort(s->impl, sw.w);
        j->rc = rc;
        snprintf(j->err, sizeof j->err, "the state machine's snapshot failed: %s",
                 craft__uv_take_fsm_error(rc, why, sizeof why));
        return;
    }
    rc = s->snapshot_commit(s->impl, sw.w);
    if (rc != 0) {
        fail(j, rc, "committing a snapshot", s);
        return;
    }
    j->size = sw.size;
}

struct snap_reader {
    struct craft_store *s;
    void *r;
    uint64_t offset;
};

static int snap_read(void *ctx, void *buf, size_t cap, size_t *got)
{
    struct snap_reader *sr = ctx;
    int rc = sr->s->snapshot_read(sr->s->impl, sr->r, sr->offset, buf, cap, got);
    if (rc == 0) {
        sr->offset += *got;
    }
    return rc;
}

/* Also used at start (node.c) on the caller's thread. */
int craft__uv_restore_fsm(struct craft_uv_node *n);
int craft__uv_restore_fsm(struct craft_uv_node *n)
{
    struct craft_store *s = n->store;
    struct snap_reader sr = {s, NULL, 0};
    int rc = s->snapshot_open(s->impl, &sr.r);
    if (rc != 0) {
        return rc;
    }
    rc = n->cfg.fsm.restore != NULL ? n->cfg.fsm.restore(n->cfg.fsm.data, snap_read, &sr)
                                    : CRAFT_EINVAL;
    s->snapshot_close(s->impl, sr.r);
    return rc;
}

static void work_cb(uv_work_t *w)
{
    struct craft_uv_node *n = w->data;
    struct craft__job *j = n->jobs;
    switch (j->kind) {
    case JOB_WRITE: {
        uint64_t t0 = uv_hrtime();
        do_write(n, j);
        j->took_us = (uv_hrtime() - t0) / 1000; /* metrics: fsync latency */
        break;
    }
    case JOB_READ_CHUNK:
        do_read_chunk(n, j);
        break;
    case JOB_TAKE_SNAPSHOT:
        do_take_snapshot(n, j);
        break;
    case JOB_RESTORE:
        j->rc = craft__uv_restore_fsm(n);
        if (j->rc != 0) {
            char why[320];
            snprintf(j->err, sizeof j->err, "restoring the state machine: %s",
                     craft__uv_take_fsm_error(j->rc, why, sizeof why));
        }
        break;
    case JOB_COMPACT:
        j->rc = n->store->compact(n->store->impl, j->upto);
        if (j->rc != 0) {
            snprintf(j->err, sizeof j->err, "compacting the log: %s", craft_strerror(j->rc));
        }
        break;
    }
}

/* The head job finished (on the worker, or on the loop for a write done there): its results
 * handed to the core and the requests. */
static void job_finished(struct craft_uv_node *n)
{
    struct craft__job *j = n->jobs;
    n->jobs = j->next;
    if (n->jobs == NULL) {
        n->jobs_tail = NULL;
    }
    n->job_running = false;

    if (j->rc != 0 && j->kind != JOB_READ_CHUNK && j->kind != JOB_TAKE_SNAPSHOT && !n->dead) {
        /* A store that lost a write cannot be trusted (DESIGN.md): stop, loudly. A snapshot
         * that could not be taken loses nothing (the log still holds everything): it is logged
         * and asked for again later; a chunk that could not be read is resent by the core. */
        craft__uv_fatal(n, j->rc, "%s", j->err);
    } else if (!n->dead) {
        switch (j->kind) {
        case JOB_WRITE:
            craft__uv_metrics_write(n, j);
            n->fsyncs += (j->n_entries > 0) + j->has_hs;
            n->entries_appended += j->n_entries;
            if (j->seq != 0) {
                int rc = craft_persisted(n->core, j->seq);
                if (rc != 0) {
                    craft__uv_fatal(n, rc, "craft_persisted(%llu) failed",
                                    (unsigned long long)j->seq);
                }
            }
            break;
        case JOB_READ_CHUNK:
            if (j->rc == 0 && !n->stopping) {
                struct craft_wire_message wm;
                memset(&wm, 0, sizeof wm);
                wm.type = j->msg.type;
                wm.u.raft = j->msg;
                craft__transport_send(n->transport, j->msg.to, &wm);
            }
            break;
        case JOB_TAKE_SNAPSHOT:
            craft__uv_snapshot_done(n, j);
            break;
        case JOB_RESTORE:
            craft__uv_restore_done(n, j);
            break;
        default:
            break;
        }
    }
    job_done(n, j);
}

static void after_work_cb(uv_work_t *w, int status)
{
    struct craft_uv_node *n = w->data;
    (void)status;
    job_finished(n);
    if (!n->dead) {
        craft__uv_drive(n);
    }
    craft__uv_disk_kick(n);
    craft__uv_maybe_finish_stop(n);
}

/* Writing on the loop. A write handed to the worker costs two thread hops (out, and back
 * through the loop's wakeup), each a cross-CPU wakeup of 70-90 us on the small machines craft
 * is measured on: more than a fast fdatasync itself. So when the disk is idle and the write is
 * small, the loop does it itself, after sending what waits (the followers' writes, and the
 * leader's own, still overlap: thesis 10.2.1). The loop is blocked meanwhile, which costs nothing
 * while nothing else waits, and is bounded: a write that took longer than LOOP_WRITE_SLOW_NS
 * sends the following ones to the worker for LOOP_WRITE_BACKOFF_MS, so that a slow disk never
 * holds up heartbeats. Under load writes queue up behind a running one and take the worker
 * (with group commit), where the loop's parallelism matters. */
#define LOOP_WRITE_MAX_BYTES (256u * 1024u)
#define LOOP_WRITE_SLOW_NS (2u * 1000u * 1000u)
#define LOOP_WRITE_BACKOFF_MS 2000u

static bool write_on_loop(struct craft_uv_node *n, const struct craft__job *j)
{
    return n->cfg.write_on_loop && j->kind == JOB_WRITE && !j->has_chunk && !n->stopping &&
           j->payload_len <= LOOP_WRITE_MAX_BYTES && uv_now(n->loop) >= n->loop_writes_off_until;
}

static void run_on_loop(struct craft_uv_node *n)
{
    struct craft__job *j = n->jobs;
    j->started = true;
    job_seal(j);
    n->job_running = true;
    n->work.data = n;
    /* What the core sent with this write leaves first, so the followers write in parallel. */
    craft__transport_flush(n->transport);
    uint64_t t0 = uv_hrtime();
    work_cb(&n->work);
    uint64_t took = uv_hrtime() - t0;
    if (took > LOOP_WRITE_SLOW_NS) {
        uv_update_time(n->loop);
        n->loop_writes_off_until = uv_now(n->loop) + LOOP_WRITE_BACKOFF_MS;
    }
    n->loop_writes++;
    job_finished(n);
    if (!n->dead) {
        craft__uv_drive(n); /* its acknowledgements and commits */
    }
}

/* The loop's write runs from an idle callback: in the next loop turn, before the loop polls,
 * never inside the call that queued it (a request submitted on the loop thread must not be
 * answered before craft_uv_submit returns), and updates taken meanwhile still merge into it. */
void craft__uv_loop_write_cb(uv_idle_t *h)
{
    struct craft_uv_node *n = h->data;
    uv_idle_stop(h);
    if (!n->job_running && n->jobs != NULL && !n->dead && write_on_loop(n, n->jobs)) {
        run_on_loop(n);
    }
    craft__uv_disk_kick(n);
    craft__uv_maybe_finish_stop(n);
}

/* Starts the next job if none runs. While stopping, only writes are still carried out (what
 * was promised durable is flushed); the rest is dropped. */
void craft__uv_disk_kick(struct craft_uv_node *n)
{
    while (!n->job_running && n->jobs != NULL) {
        struct craft__job *j = n->jobs;
        if ((n->stopping && j->kind != JOB_WRITE) || n->dead) {
            n->jobs = j->next;
            if (n->jobs == NULL) {
                n->jobs_tail = NULL;
            }
            craft__uv_job_free(n, j);
            continue;
        }
        if (write_on_loop(n, j)) {
            uv_idle_start(&n->write_idle, craft__uv_loop_write_cb);
            return;
        }
        j->started = true;
        job_seal(j);
        n->job_running = true;
        n->work.data = n;
        int rc = uv_queue_work(n->loop, &n->work, work_cb, after_work_cb);
        if (rc != 0) {
            n->job_running = false;
            craft__uv_fatal(n, CRAFT_EIO, "uv_queue_work: %s", uv_strerror(rc));
        }
        return;
    }
}
