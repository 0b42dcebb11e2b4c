/* The state machine stream where it runs: on a thread of the runtime's (one per node), or on
 * the embedder's thread through craft_uv_fsm_run (craft/uv.h, fsm_wake). apply.c queues the
 * steps on the loop; this file takes them in order, runs the user's code, and hands them back
 * to the loop (one uv_async_send per run of steps).
 *
 * What a run is: every apply step that is ready, up to CRAFT__FSM_BATCH commands, becomes one
 * call of the state machine's apply, followed by the callbacks of the local proposals of those
 * entries (so a proposal's caller hears its result without another hop through the loop);
 * any other step runs alone. Nothing else of the stream runs during a step, which is what
 * makes a read answered on the stream see a state at or after its read index with no apply in
 * progress, and a snapshot see exactly the state at its index.
 *
 * The store. Snapshots and restores read and write the store, which allows no concurrent calls
 * (craft.h). On the runtime's thread every store call takes store_lock, which the disk queue's
 * jobs also hold (disk.c): the loop never takes it, so a slow snapshot delays the disk by at
 * most one store call at a time, never the network. An embedder's thread never waits for the
 * store at all (in the Lua binding the same thread serves a log store written in Lua, which
 * would deadlock): its snapshot is written into memory and stored by the disk queue afterwards
 * (JOB_STORE_SNAPSHOT), and its restore reads a snapshot the disk queue read into memory
 * before the step became ready (JOB_RESTORE_READY).
 *
 * Snapshots and restores that cross. A snapshot from the leader may be installed (by the disk
 * queue) while the stream writes a snapshot of its own, older one: committing that one would
 * put the store's latest snapshot back, so it is dropped as obsolete. A restore reads whatever
 * snapshot is the latest when it runs, which may be newer than the one it was queued for; the
 * stream keeps the index its state reflects (fsm_applied) and skips entries at or below it. */
#include <stdio.h>
#include <string.h>

#include "uv/node.h"

/* Runs of steps per craft_uv_fsm_run call before it returns 1 (the embedder's loop gets a turn
 * between them). */
#define RUNS_PER_CALL 64

static bool is_work(int kind)
{
    return kind == STEP_APPLY || kind == STEP_SNAPSHOT || kind == STEP_RESTORE;
}

/* Under fsm_lock: takes the next run of steps off the stream, or returns NULL. After a failed
 * step (halted) no state machine work starts: the loop stops the node and drops it. */
static struct craft__step *take_run(struct craft_uv_node *n)
{
    struct craft__step *s = n->fsm_head;
    if (s == NULL || s->kind == STEP_STOP || (n->fsm_halted && is_work(s->kind))) {
        return NULL;
    }
    struct craft__step *last = s;
    if (s->kind == STEP_APPLY) {
        size_t commands = s->n_commands;
        while (last->next != NULL && last->next->kind == STEP_APPLY &&
               commands + last->next->n_commands <= CRAFT__FSM_BATCH) {
            last = last->next;
            commands += last->n_commands;
        }
    }
    n->fsm_head = last->next;
    if (n->fsm_head == NULL) {
        n->fsm_tail = NULL;
    }
    last->next = NULL;
    n->fsm_busy = true;
    return s;
}

/* Under fsm_lock: the run is done; the loop takes it from fsm_done. */
static void give_back(struct craft_uv_node *n, struct craft__step *run)
{
    struct craft__step *last = run;
    bool failed = false;
    for (struct craft__step *s = run; s != NULL; s = s->next) {
        failed = failed || s->rc != 0;
        last = s;
    }
    if (n->fsm_done_tail != NULL) {
        n->fsm_done_tail->next = run;
    } else {
        n->fsm_done = run;
    }
    n->fsm_done_tail = last;
    n->fsm_busy = false;
    /* A failed restore or apply leaves a state machine nobody can trust. (A failed snapshot
     * loses nothing: it is tried again later.) */
    if (failed && run->kind != STEP_SNAPSHOT) {
        n->fsm_halted = true;
    }
    if (!n->fsm_async_closed) {
        uv_async_send(&n->fsm_async);
    }
}

/* ---- apply ------------------------------------------------------------------------------- */

static void run_apply(struct craft_uv_node *n, struct craft__step *run)
{
    struct craft_uv_apply *cmds = n->fsm_cmds;
    size_t count = 0;
    craft_index last = n->fsm_applied;
    for (struct craft__step *s = run; s != NULL; s = s->next) {
        for (size_t k = 0; k < s->n_entries; k++) {
            struct craft__fsm_entry *e = &s->entries[k];
            if (e->index <= n->fsm_applied) {
                e->skipped = true; /* in the snapshot the state was restored from */
                continue;
            }
            last = e->index;
            if (e->type != CRAFT_ENTRY_COMMAND) {
                continue; /* barriers and configurations: nothing for the state machine */
            }
            memset(&cmds[count], 0, sizeof cmds[count]);
            cmds[count].index = e->index;
            cmds[count].term = e->term;
            cmds[count].data = e->size > 0 ? s->arena + e->off : NULL;
            cmds[count].size = e->size;
            n->fsm_map[count] = e;
            count++;
        }
    }
    int rc = count > 0 && n->cfg.fsm.apply != NULL ? n->cfg.fsm.apply(n->cfg.fsm.data, cmds, count)
                                                   : 0;
    if (rc != 0) {
        /* The reason, when the state machine gave one: the result of the last command it
         * marked as failed (craft/uv.h). */
        size_t at = count;
        for (size_t k = 0; k < count; k++) {
            if (cmds[k].error != 0 && cmds[k].result != NULL) {
                at = k;
            }
        }
        if (at < count) {
            snprintf(run->err, sizeof run->err, "the state machine stopped at index %llu: %.*s",
                     (unsigned long long)cmds[at].index,
                     (int)(cmds[at].result_size < 300 ? cmds[at].result_size : 300),
                     (const char *)cmds[at].result);
        } else {
            snprintf(run->err, sizeof run->err,
                     "the state machine's apply failed at index %llu: %s",
                     (unsigned long long)cmds[0].index, craft_strerror(rc));
        }
        for (size_t k = 0; k < count; k++) {
            craft_free(NULL, cmds[k].result);
        }
        for (struct craft__step *s = run; s != NULL; s = s->next) {
            s->rc = rc;
        }
        return;
    }
    for (size_t k = 0; k < count; k++) {
        struct craft__fsm_entry *e = n->fsm_map[k];
        e->result = cmds[k].result;
        e->result_size = cmds[k].result != NULL ? cmds[k].result_size : 0;
        e->error = cmds[k].error;
    }
    n->fsm_applied = last;
    /* The proposals of these entries, right after their apply. */
    for (struct craft__step *s = run; s != NULL; s = s->next) {
        for (struct craft__waiter *w = s->answers.head; w != NULL; w = w->next) {
            const struct craft__fsm_entry *e = NULL;
            if (s->n_entries > 0 && w->index >= s->entries[0].index &&
                w->index - s->entries[0].index < s->n_entries) {
                e = &s->entries[w->index - s->entries[0].index];
            }
            int status = w->status;
            if (status == 0 && (e == NULL || e->skipped)) {
                status = CRAFT_EDROPPED;
            }
            if (status != 0) {
                w->index = 0;
                craft__uv_answer_on_stream(w, status, NULL, 0);
                continue;
            }
            craft__uv_answer_on_stream(w, e->error != 0 ? CRAFT_EAPPLY : 0, e->result,
                                       e->result_size);
        }
    }
}

/* ---- snapshots on the runtime's thread: the store, one call at a time ------------------------ */

struct locked_writer {
    struct craft_uv_node *n;
    void *w;
    uint64_t size;
};

static int locked_write(void *ctx, const void *buf, size_t len)
{
    struct locked_writer *lw = ctx;
    struct craft_store *st = lw->n->store;
    if (len == 0) {
        return 0;
    }
    uv_mutex_lock(&lw->n->store_lock);
    int rc = st->snapshot_write(st->impl, lw->w, buf, len);
    uv_mutex_unlock(&lw->n->store_lock);
    if (rc == 0) {
        lw->size += len;
    }
    return rc;
}

/* Writes into the step's memory (an embedder's stream). */
struct spool {
    struct craft_uv_node *n;
    struct craft__step *s;
};

static int spool_write(void *ctx, const void *buf, size_t len)
{
    struct spool *sp = ctx;
    struct craft__step *s = sp->s;
    if (s->data_len + len > s->data_cap) {
        size_t cap = s->data_cap ? s->data_cap : 4096;
        while (cap < s->data_len + len) {
            cap *= 2;
        }
        char *p = craft_realloc(sp->n->alloc, s->data, cap);
        if (p == NULL) {
            return CRAFT_ENOMEM;
        }
        s->data = p;
        s->data_cap = cap;
    }
    if (len > 0) {
        memcpy(s->data + s->data_len, buf, len);
        s->data_len += len;
    }
    return 0;
}

static void snapshot_error(struct craft__step *s, int rc, const char *what)
{
    s->rc = rc;
    snprintf(s->err, sizeof s->err, "%s: %s", what, craft_strerror(rc));
}

static void run_snapshot(struct craft_uv_node *n, struct craft__step *s)
{
    if (n->cfg.fsm.snapshot == NULL) {
        s->rc = CRAFT_EINVAL;
        snprintf(s->err, sizeof s->err, "the state machine has no snapshot callback");
        return;
    }
    int rc;
    char why[320];
    if (n->fsm_embedded) {
        struct spool sp = {n, s};
        rc = n->cfg.fsm.snapshot(n->cfg.fsm.data, spool_write, &sp);
        if (rc != 0) {
            s->rc = rc;
            snprintf(s->err, sizeof s->err, "the state machine's snapshot failed: %s",
                     craft__uv_take_fsm_error(rc, why, sizeof why));
            craft_free(n->alloc, s->data);
            s->data = NULL;
            s->data_len = s->data_cap = 0;
        }
        s->size = s->data_len;
        return; /* stored by the disk queue (apply.c) */
    }
    struct craft_store *st = n->store;
    struct locked_writer lw = {n, NULL, 0};
    struct craft_snapshot_meta m = s->meta;
    m.size = 0;
    uv_mutex_lock(&n->store_lock);
    rc = st->snapshot_begin(st->impl, &m, &lw.w);
    uv_mutex_unlock(&n->store_lock);
    if (rc != 0) {
        snapshot_error(s, rc, "starting a snapshot");
        return;
    }
    rc = n->cfg.fsm.snapshot(n->cfg.fsm.data, locked_write, &lw);
    uv_mutex_lock(&n->store_lock);
    if (rc != 0) {
        st->snapshot_abort(st->impl, lw.w);
        uv_mutex_unlock(&n->store_lock);
        s->rc = rc;
        snprintf(s->err, sizeof s->err, "the state machine's snapshot failed: %s",
                 craft__uv_take_fsm_error(rc, why, sizeof why));
        return;
    }
    struct craft_snapshot_meta latest;
    if (st->snapshot_meta(st->impl, n->alloc, &latest) == 0) {
        craft_configuration_close(&latest.conf, n->alloc);
        s->obsolete = latest.index >= s->meta.index;
    }
    if (s->obsolete) {
        st->snapshot_abort(st->impl, lw.w);
    } else {
        rc = st->snapshot_commit(st->impl, lw.w);
    }
    uv_mutex_unlock(&n->store_lock);
    if (rc != 0) {
        snapshot_error(s, rc, "committing a snapshot");
        return;
    }
    s->size = lw.size;
}

/* ---- restores ------------------------------------------------------------------------------ */

struct locked_reader {
    struct craft_uv_node *n;
    void *r;
    uint64_t offset;
};

static int locked_read(void *ctx, void *buf, size_t cap, size_t *got)
{
    struct locked_reader *lr = ctx;
    struct craft_store *st = lr->n->store;
    uv_mutex_lock(&lr->n->store_lock);
    int rc = st->snapshot_read(st->impl, lr->r, lr->offset, buf, cap, got);
    uv_mutex_unlock(&lr->n->store_lock);
    if (rc == 0) {
        lr->offset += *got;
    }
    return rc;
}

struct memory_reader {
    const char *data;
    size_t len, offset;
};

static int memory_read(void *ctx, void *buf, size_t cap, size_t *got)
{
    struct memory_reader *mr = ctx;
    size_t k = mr->len - mr->offset < cap ? mr->len - mr->offset : cap;
    if (k > 0) {
        memcpy(buf, mr->data + mr->offset, k);
    }
    mr->offset += k;
    *got = k;
    return 0;
}

static void run_restore(struct craft_uv_node *n, struct craft__step *s)
{
    int rc;
    char why[320];
    if (n->cfg.fsm.restore == NULL) {
        s->rc = CRAFT_EINVAL;
        snprintf(s->err, sizeof s->err,
                 "restoring the state machine: it has no restore callback");
        return;
    }
    if (n->fsm_embedded) {
        struct memory_reader mr = {s->data != NULL ? s->data : "", s->data_len, 0};
        rc = n->cfg.fsm.restore(n->cfg.fsm.data, memory_read, &mr);
    } else {
        struct craft_store *st = n->store;
        struct locked_reader lr = {n, NULL, 0};
        struct craft_snapshot_meta m;
        uv_mutex_lock(&n->store_lock);
        rc = st->snapshot_meta(st->impl, n->alloc, &m);
        if (rc == 0) {
            craft_configuration_close(&m.conf, n->alloc);
            s->meta.index = m.index; /* the latest: maybe newer than the one queued */
            rc = st->snapshot_open(st->impl, &lr.r);
        }
        uv_mutex_unlock(&n->store_lock);
        if (rc != 0) {
            s->rc = rc;
            snprintf(s->err, sizeof s->err,
                     "restoring the state machine: opening the snapshot: %s",
                     craft_strerror(rc));
            return;
        }
        rc = n->cfg.fsm.restore(n->cfg.fsm.data, locked_read, &lr);
        uv_mutex_lock(&n->store_lock);
        st->snapshot_close(st->impl, lr.r);
        uv_mutex_unlock(&n->store_lock);
    }
    if (rc != 0) {
        s->rc = rc;
        snprintf(s->err, sizeof s->err, "restoring the state machine: %s",
                 craft__uv_take_fsm_error(rc, why, sizeof why));
        return;
    }
    n->fsm_applied = s->meta.index;
}

/* ---- running ------------------------------------------------------------------------------- */

static void run_steps(struct craft_uv_node *n, struct craft__step *run)
{
    switch (run->kind) {
    case STEP_APPLY:
        run_apply(n, run);
        break;
    case STEP_SNAPSHOT:
        run_snapshot(n, run);
        break;
    case STEP_RESTORE:
        run_restore(n, run);
        break;
    case STEP_ANSWER:
        for (struct craft__waiter *w = run->answers.head; w != NULL; w = w->next) {
            craft__uv_answer_on_stream(w, w->status, w->result, w->result_size);
        }
        break;
    case STEP_EVENT:
        if (n->cfg.event != NULL) {
            n->cfg.event(n->cfg.event_data, &run->event);
        }
        break;
    default:
        break;
    }
    if (n->cfg.fsm.step_done != NULL) {
        n->cfg.fsm.step_done(n->cfg.fsm.data);
    }
}

/* Called and returning with fsm_lock held: the user's callbacks run without it (the loop takes
 * it to hand over new runs), and the finished run goes back under it. */
static void run_unlocked(struct craft_uv_node *n, struct craft__step *run)
{
    uv_mutex_unlock(&n->fsm_lock);
    run_steps(n, run);
    uv_mutex_lock(&n->fsm_lock);
    give_back(n, run);
}

static void thread_main(void *arg)
{
    struct craft_uv_node *n = arg;
    if (n->cfg.fsm.thread_start != NULL) {
        n->cfg.fsm.thread_start(n->cfg.fsm.data);
    }
    uv_mutex_lock(&n->fsm_lock);
    for (;;) {
        struct craft__step *run = NULL;
        while (!n->fsm_quit && (run = take_run(n)) == NULL) {
            uv_cond_wait(&n->fsm_cond, &n->fsm_lock);
        }
        if (run == NULL) {
            break;
        }
        run_unlocked(n, run);
    }
    uv_mutex_unlock(&n->fsm_lock);
    if (n->cfg.fsm.thread_stop != NULL) {
        n->cfg.fsm.thread_stop(n->cfg.fsm.data);
    }
}

int craft__uv_fsm_start(struct craft_uv_node *n)
{
    n->fsm_cmds = craft_calloc(n->alloc, CRAFT__FSM_BATCH, sizeof *n->fsm_cmds);
    n->fsm_map = craft_calloc(n->alloc, CRAFT__FSM_BATCH, sizeof *n->fsm_map);
    if (n->fsm_cmds == NULL || n->fsm_map == NULL) {
        return CRAFT_ENOMEM;
    }
    if (n->fsm_embedded) {
        return 0;
    }
    if (uv_thread_create(&n->fsm_thread, thread_main, n) != 0) {
        return CRAFT_ENOMEM;
    }
    n->fsm_has_thread = true;
    return 0;
}

void craft__uv_fsm_wake(struct craft_uv_node *n, bool was_empty)
{
    if (was_empty && n->cfg.fsm_wake != NULL) {
        n->cfg.fsm_wake(n->cfg.fsm_wake_data);
    }
}

/* The runtime's thread: told to end once idle, and joined (it ends at once: nothing runs). */
void craft__uv_fsm_join(struct craft_uv_node *n)
{
    if (!n->fsm_has_thread) {
        return;
    }
    uv_mutex_lock(&n->fsm_lock);
    n->fsm_quit = true;
    uv_cond_signal(&n->fsm_cond);
    uv_mutex_unlock(&n->fsm_lock);
    uv_thread_join(&n->fsm_thread);
    n->fsm_has_thread = false;
}

void craft__uv_fsm_push_stop(struct craft_uv_node *n)
{
    struct craft__step *s = craft_calloc(n->alloc, 1, sizeof *s);
    void (*wake)(void *) = n->cfg.fsm_wake;
    void *data = n->cfg.fsm_wake_data;
    if (s == NULL) {
        /* Without the step the embedder would never hear of the stop: call it here. */
        if (n->stop_cb != NULL) {
            n->stop_cb(n->stop_data);
        }
        craft__uv_node_free_memory(n);
        return;
    }
    s->kind = STEP_STOP;
    craft_configuration_init(&s->meta.conf);
    uv_mutex_lock(&n->fsm_lock);
    bool was_empty = n->fsm_head == NULL;
    if (n->fsm_tail != NULL) {
        n->fsm_tail->next = s;
    } else {
        n->fsm_head = s;
    }
    n->fsm_tail = s;
    uv_mutex_unlock(&n->fsm_lock);
    /* From here on the embedder may run the step and free n at any moment. */
    if (was_empty) {
        wake(data);
    }
}

int craft_uv_fsm_run(struct craft_uv_node *n)
{
    if (n == NULL || !n->fsm_embedded) {
        return CRAFT_EINVAL;
    }
    unsigned runs = 0;
    uv_mutex_lock(&n->fsm_lock);
    for (;;) {
        struct craft__step *s = n->fsm_head;
        if (s != NULL && s->kind == STEP_STOP) {
            /* The last step of a node: everything before it was delivered. */
            n->fsm_head = s->next;
            if (n->fsm_head == NULL) {
                n->fsm_tail = NULL;
            }
            uv_mutex_unlock(&n->fsm_lock);
            craft_free(n->alloc, s);
            if (n->stop_cb != NULL) {
                n->stop_cb(n->stop_data);
            }
            craft__uv_node_free_memory(n);
            return CRAFT_ESHUTDOWN;
        }
        if (runs >= RUNS_PER_CALL) {
            break;
        }
        struct craft__step *run = take_run(n);
        if (run == NULL) {
            break;
        }
        run_unlocked(n, run);
        runs++;
    }
    struct craft__step *h = n->fsm_head;
    bool more = h != NULL && (h->kind == STEP_STOP || !(n->fsm_halted && is_work(h->kind)));
    uv_mutex_unlock(&n->fsm_lock);
    return more ? 1 : 0;
}
