/* The disk queue. Every store call of a running node happens here, on libuv's thread pool, one
 * job at a time (the storage interface allows no concurrent calls), in FIFO order:
 *
 *   JOB_WRITE          the hard state, a snapshot chunk and entries of one or more updates, in
 *                      the driver contract's order, then craft_persisted(seq) on the loop. Updates taken while a write runs are
 *                      merged into the job waiting behind it: one append and one fdatasync for
 *                      all of them (group commit). A chunk is never merged with what follows it,
 *                      because installing a snapshot must come before the entries after it.
 *   JOB_READ_CHUNK     reads a chunk of our snapshot for an InstallSnapshot to send.
 *   JOB_STORE_SNAPSHOT stores a snapshot an embedder's state machine stream wrote into memory.
 *   JOB_RESTORE_READY  behind the write that installed a snapshot from the leader: the restore
 *                      step of the state machine stream may run (with an embedder's stream, the
 *                      snapshot is read into memory for it here).
 *   JOB_COMPACT        compacts the store after a snapshot.
 *
 * While the disk works the loop keeps serving the network; the leader's own write of new
 * entries proceeds in parallel with sending them (thesis 10.2.1). The state machine stream
 * (fsm.c) also calls the store, for its snapshots and restores: every job holds store_lock
 * while it runs, and so does each of the stream's store calls. */
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
    craft_free(n->alloc, j->data);
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
    j->on_pool = false;
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

/* A snapshot written into memory by an embedder's state machine stream. A snapshot from the
 * leader installed meanwhile may be newer: this one is then not stored (it would put the store
 * back), and reported obsolete. */
static void do_store_snapshot(struct craft_uv_node *n, struct craft__job *j)
{
    struct craft_store *s = n->store;
    struct craft_snapshot_meta latest;
    if (s->snapshot_meta(s->impl, n->alloc, &latest) == 0) {
        craft_configuration_close(&latest.conf, n->alloc);
        if (latest.index >= j->meta.index) {
            j->obsolete = true;
            return;
        }
    }
    void *w = NULL;
    struct craft_snapshot_meta m = j->meta;
    m.size = 0;
    int rc = s->snapshot_begin(s->impl, &m, &w);
    if (rc != 0) {
        fail(j, rc, "starting a snapshot", s);
        return;
    }
    rc = j->data_len > 0 ? s->snapshot_write(s->impl, w, j->data, j->data_len) : 0;
    if (rc != 0) {
        s->snapshot_abort(s->impl, w);
        fail(j, rc, "writing a snapshot", s);
        return;
    }
    rc = s->snapshot_commit(s->impl, w);
    if (rc != 0) {
        fail(j, rc, "committing a snapshot", s);
        return;
    }
    j->size = j->data_len;
}

/* With an embedder's stream: the latest snapshot, whole, for a restore step. */
static void do_read_snapshot(struct craft_uv_node *n, struct craft__job *j)
{
    struct craft_store *s = n->store;
    struct craft_snapshot_meta m;
    int rc = s->snapshot_meta(s->impl, n->alloc, &m);
    if (rc != 0) {
        fail(j, rc, "restoring the state machine: reading the snapshot's metadata", s);
        return;
    }
    craft_configuration_close(&m.conf, n->alloc);
    j->meta.index = m.index;
    void *reader = NULL;
    rc = s->snapshot_open(s->impl, &reader);
    if (rc != 0) {
        fail(j, rc, "restoring the state machine: opening the snapshot", s);
        return;
    }
    size_t cap = m.size > 0 && m.size < ((uint64_t)1 << 40) ? (size_t)m.size : 65536;
    j->data = craft_malloc(n->alloc, cap > 0 ? cap : 1);
    rc = j->data != NULL ? 0 : CRAFT_ENOMEM;
    while (rc == 0) {
        if (j->data_len == cap) {
            char *p = craft_realloc(n->alloc, j->data, cap * 2);
            if (p == NULL) {
                rc = CRAFT_ENOMEM;
                break;
            }
            j->data = p;
            cap *= 2;
        }
        size_t k = 0;
        rc = s->snapshot_read(s->impl, reader, j->data_len, j->data + j->data_len,
                              cap - j->data_len, &k);
        if (rc != 0 || k == 0) {
            break;
        }
        j->data_len += k;
    }
    s->snapshot_close(s->impl, reader);
    if (rc != 0) {
        fail(j, rc, "restoring the state machine: reading the snapshot", s);
    }
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

/* The head job's store calls; the caller holds store_lock. */
static void job_run(struct craft_uv_node *n)
{
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
    case JOB_STORE_SNAPSHOT:
        do_store_snapshot(n, j);
        break;
    case JOB_RESTORE_READY:
        if (n->fsm_embedded) {
            do_read_snapshot(n, j);
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

static void work_cb(uv_work_t *w)
{
    struct craft_uv_node *n = w->data;
    uv_mutex_lock(&n->store_lock); /* the state machine stream's store calls wait (fsm.c) */
    job_run(n);
    uv_mutex_unlock(&n->store_lock);
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

    if (j->rc != 0 && j->kind != JOB_READ_CHUNK && j->kind != JOB_STORE_SNAPSHOT && !n->dead) {
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
        case JOB_STORE_SNAPSHOT:
            craft__uv_snapshot_done(n, j->rc, j->err, j->meta.index, j->size, j->obsolete);
            break;
        case JOB_RESTORE_READY:
            craft__uv_fsm_restore_ready(n, j);
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
    return n->cfg.write_on_loop && j->kind == JOB_WRITE && !j->has_chunk && !j->on_pool &&
           !n->stopping &&
           j->payload_len <= LOOP_WRITE_MAX_BYTES && uv_now(n->loop) >= n->loop_writes_off_until;
}

/* The caller holds store_lock; it is released before the results are handed on. */
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
    job_run(n);
    uv_mutex_unlock(&n->store_lock);
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
        /* The state machine stream may be inside a store call (a snapshot or a restore): the
         * loop never waits for it; the pool does. */
        if (uv_mutex_trylock(&n->store_lock) == 0) {
            run_on_loop(n);
        } else {
            n->jobs->on_pool = true;
            n->loop_writes_busy++;
        }
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
