/* The state machine stream, loop side: what the loop hands to the stream, in order, and what it
 * does with the steps that come back (fsm.c runs them).
 *
 *   STEP_APPLY     committed entries, up to CRAFT__FSM_BATCH per step; the local proposals of
 *                  those entries go with them and are answered right after the apply;
 *   STEP_SNAPSHOT  the core asked for a snapshot at this point of the log;
 *   STEP_RESTORE   a snapshot from the leader was installed: the state is replaced at this
 *                  point. It is not ready (and holds back every step after it) until the disk
 *                  write that stored the snapshot is done (job JOB_RESTORE_READY);
 *   STEP_ANSWER    requests answered on the stream: a read once the stream has been handed
 *                  every entry up to its read index, a forwarded proposal once this node has
 *                  applied as far as the leader did; with an embedder's stream, every answer;
 *   STEP_EVENT     with an embedder's stream, an event.
 *
 * Order is the whole point: the stream runs the steps one after the other, so a read answered
 * at its place sees every entry up to its index applied and none being applied, and a
 * snapshot sees exactly the state at its index, without the loop ever waiting for the state
 * machine. Steps wait in `pending` until the loop hands them over (craft__uv_apply_pump, at the
 * end of every craft__uv_drive and before the loop blocks), so that the entries of one turn of
 * the loop reach the stream together; the stream takes every apply step that is ready into one
 * call of apply. */
#include <stdio.h>
#include <string.h>

#include "uv/node.h"

/* Spare steps kept with their buffers, so that the steady state allocates nothing here. */
#define MAX_SPARE 16

static bool is_work(int kind)
{
    return kind == STEP_APPLY || kind == STEP_SNAPSHOT || kind == STEP_RESTORE;
}

void craft__uv_step_free(struct craft_uv_node *n, struct craft__step *s)
{
    for (size_t k = 0; k < s->n_entries; k++) {
        craft_free(NULL, s->entries[k].result);
    }
    struct craft__waiter *w;
    while ((w = s->answers.head) != NULL) {
        craft__list_remove(&s->answers, w);
        craft__uv_waiter_free(n, w);
    }
    craft_configuration_close(&s->meta.conf, n->alloc);
    craft_free(n->alloc, s->data);
    craft_free(n->alloc, s->message);
    craft_free(n->alloc, s->entries);
    craft_free(n->alloc, s->arena);
    craft_free(n->alloc, s);
}

void craft__uv_steps_free(struct craft_uv_node *n, struct craft__step *s)
{
    while (s != NULL) {
        struct craft__step *next = s->next;
        craft__uv_step_free(n, s);
        s = next;
    }
}

/* Loop thread: a step is done with; an apply step's buffers are kept for the next one. */
static void step_release(struct craft_uv_node *n, struct craft__step *s)
{
    if (s->kind != STEP_APPLY || n->n_spare >= MAX_SPARE) {
        craft__uv_step_free(n, s);
        return;
    }
    for (size_t k = 0; k < s->n_entries; k++) {
        craft_free(NULL, s->entries[k].result);
    }
    struct craft__waiter *w;
    while ((w = s->answers.head) != NULL) { /* answered on the stream */
        craft__list_remove(&s->answers, w);
        craft__uv_waiter_free(n, w);
    }
    struct craft__step keep = *s;
    memset(s, 0, sizeof *s);
    s->entries = keep.entries;
    s->cap_entries = keep.cap_entries;
    s->arena = keep.arena;
    s->arena_cap = keep.arena_cap;
    s->next = n->spare;
    n->spare = s;
    n->n_spare++;
}

static struct craft__step *step_new(struct craft_uv_node *n, int kind)
{
    struct craft__step *s = NULL;
    if (kind == STEP_APPLY && n->spare != NULL) {
        s = n->spare;
        n->spare = s->next;
        n->n_spare--;
        s->next = NULL;
    } else {
        s = craft_calloc(n->alloc, 1, sizeof *s);
        if (s == NULL) {
            return NULL;
        }
    }
    s->kind = kind;
    s->ready = kind != STEP_RESTORE; /* a restore waits for its write (craft__uv_queue_item) */
    craft_configuration_init(&s->meta.conf);
    return s;
}

static void pending_push(struct craft_uv_node *n, struct craft__step *s)
{
    s->next = NULL;
    if (n->pending_tail != NULL) {
        n->pending_tail->next = s;
    } else {
        n->pending = s;
    }
    n->pending_tail = s;
}

/* ---- queueing ------------------------------------------------------------------------------ */

int craft__uv_queue_entry(struct craft_uv_node *n, const struct craft_entry *e)
{
    struct craft__step *s = n->pending_tail;
    if (s == NULL || s->kind != STEP_APPLY || s->n_entries >= CRAFT__FSM_BATCH) {
        s = step_new(n, STEP_APPLY);
        if (s == NULL) {
            return CRAFT_ENOMEM;
        }
        pending_push(n, s);
    }
    if (s->n_entries == s->cap_entries) {
        size_t cap = s->cap_entries ? s->cap_entries * 2 : 16;
        struct craft__fsm_entry *p = craft_realloc(n->alloc, s->entries, cap * sizeof *p);
        if (p == NULL) {
            return CRAFT_ENOMEM;
        }
        s->entries = p;
        s->cap_entries = cap;
    }
    if (s->arena_len + e->size > s->arena_cap) {
        size_t cap = s->arena_cap ? s->arena_cap : 4096;
        while (cap < s->arena_len + e->size) {
            cap *= 2;
        }
        char *p = craft_realloc(n->alloc, s->arena, cap);
        if (p == NULL) {
            return CRAFT_ENOMEM;
        }
        s->arena = p;
        s->arena_cap = cap;
    }
    struct craft__fsm_entry *fe = &s->entries[s->n_entries++];
    memset(fe, 0, sizeof *fe);
    fe->index = e->index;
    fe->term = e->term;
    fe->type = e->type;
    fe->off = s->arena_len;
    fe->size = e->size;
    if (e->size > 0) {
        memcpy(s->arena + s->arena_len, e->data, e->size);
        s->arena_len += e->size;
    }
    s->n_commands += e->type == CRAFT_ENTRY_COMMAND;
    return 0;
}

int craft__uv_queue_item(struct craft_uv_node *n, int kind, const struct craft_snapshot_meta *m)
{
    struct craft__step *s = step_new(n, kind);
    if (s == NULL) {
        return CRAFT_ENOMEM;
    }
    s->meta = *m;
    craft_configuration_init(&s->meta.conf);
    int rc = craft_configuration_copy(&s->meta.conf, &m->conf, n->alloc);
    struct craft__job *j = NULL;
    if (rc == 0 && kind == STEP_RESTORE) {
        /* Queued behind the write that stores the snapshot (the update's, already queued): once
         * it is done the restore may run. */
        j = craft_calloc(n->alloc, 1, sizeof *j);
        if (j == NULL) {
            rc = CRAFT_ENOMEM;
        } else {
            s->id = ++n->next_step_id;
            j->kind = JOB_RESTORE_READY;
            j->step_id = s->id;
            craft_configuration_init(&j->chunk.meta.conf);
            craft_configuration_init(&j->meta.conf);
            craft__uv_job_push(n, j);
        }
    }
    if (rc != 0) {
        craft__uv_step_free(n, s);
        return rc;
    }
    pending_push(n, s);
    return 0;
}

void craft__uv_queue_answer(struct craft_uv_node *n, struct craft__waiter *w)
{
    struct craft__step *s = n->pending_tail;
    if (s == NULL || s->kind != STEP_ANSWER) {
        s = step_new(n, STEP_ANSWER);
        if (s == NULL) {
            /* Nothing else can carry the answer: the caller is never answered and times out
             * on its side. Out of memory, as loud as it gets. */
            craft__uv_log(n, CRAFT_UV_ERROR, "event=answer_lost reason=\"out of memory\"");
            craft__uv_waiter_free(n, w);
            return;
        }
        pending_push(n, s);
    }
    craft__list_push(&s->answers, w);
}

void craft__uv_queue_event(struct craft_uv_node *n, const struct craft_uv_event *e)
{
    struct craft__step *s = step_new(n, STEP_EVENT);
    if (s == NULL) {
        craft__uv_log(n, CRAFT_UV_ERROR, "event=event_lost type=%d reason=\"out of memory\"",
                      e->type);
        return;
    }
    s->event = *e;
    if (e->message != NULL) {
        size_t len = strlen(e->message);
        s->message = craft_malloc(n->alloc, len + 1);
        if (s->message != NULL) {
            memcpy(s->message, e->message, len + 1);
        }
    }
    s->event.message = s->message != NULL ? s->message : "";
    pending_push(n, s);
}

/* ---- handing steps to the stream ------------------------------------------------------------ */

static craft_index last_index(const struct craft__step *s)
{
    return s->n_entries > 0 ? s->entries[s->n_entries - 1].index : 0;
}

/* Takes the pending steps out of the stream that a dead node must not run; their requests fail
 * with status. Answers and events stay when the embedder delivers every answer (keep_notices). */
static void drop_work(struct craft__step **head, struct craft__step **tail, bool keep_notices,
                      struct craft__step **out)
{
    struct craft__step *kept = NULL, *kept_tail = NULL, *s = *head;
    while (s != NULL) {
        struct craft__step *next = s->next;
        s->next = NULL;
        if (is_work(s->kind) || (!keep_notices && s->kind == STEP_ANSWER)) {
            s->next = *out;
            *out = s;
        } else {
            if (kept_tail != NULL) {
                kept_tail->next = s;
            } else {
                kept = s;
            }
            kept_tail = s;
        }
        s = next;
    }
    *head = kept;
    *tail = kept_tail;
}

static void fail_steps(struct craft_uv_node *n, struct craft__step *s, int status)
{
    while (s != NULL) {
        struct craft__step *next = s->next;
        craft__uv_requests_fail_list(n, &s->answers, status);
        craft__uv_step_free(n, s);
        s = next;
    }
}

void craft__uv_fsm_cancel(struct craft_uv_node *n, int status)
{
    struct craft__step *out = NULL;
    drop_work(&n->pending, &n->pending_tail, n->fsm_embedded, &out);
    uv_mutex_lock(&n->fsm_lock);
    drop_work(&n->fsm_head, &n->fsm_tail, n->fsm_embedded, &out);
    uv_mutex_unlock(&n->fsm_lock);
    /* Dropped in reverse; their requests fail in index order. */
    struct craft__step *ordered = NULL;
    while (out != NULL) {
        struct craft__step *next = out->next;
        out->next = ordered;
        ordered = out;
        out = next;
    }
    fail_steps(n, ordered, status);
    if (n->fsm_embedded) {
        /* What stays (answers, events) may have been held back behind dropped work. */
        craft__uv_fsm_wake(n, true);
    }
}

void craft__uv_apply_pump(struct craft_uv_node *n)
{
    if (n->dead) {
        craft__uv_fsm_cancel(n, n->dead_rc);
    }
    craft__uv_requests_check_applied(n);
    struct craft__step *head = NULL, *tail = NULL;
    while (n->pending != NULL && n->pending->ready) {
        struct craft__step *s = n->pending;
        n->pending = s->next;
        if (n->pending == NULL) {
            n->pending_tail = NULL;
        }
        s->next = NULL;
        if (s->kind == STEP_APPLY) {
            craft__uv_requests_take_proposals(n, s);
            n->queued = last_index(s);
        } else if (s->kind == STEP_RESTORE && s->meta.index > n->queued) {
            n->queued = s->meta.index;
        }
        if (tail != NULL) {
            tail->next = s;
        } else {
            head = s;
        }
        tail = s;
        if (s->kind == STEP_APPLY || s->kind == STEP_RESTORE) {
            craft__uv_requests_check_applied(n); /* reads up to the new index: right behind */
        }
    }
    if (head == NULL) {
        return;
    }
    uv_mutex_lock(&n->fsm_lock);
    bool was_empty = n->fsm_head == NULL;
    if (n->fsm_tail != NULL) {
        n->fsm_tail->next = head;
    } else {
        n->fsm_head = head;
    }
    n->fsm_tail = tail;
    if (!n->fsm_embedded) {
        uv_cond_signal(&n->fsm_cond);
    }
    uv_mutex_unlock(&n->fsm_lock);
    if (n->fsm_embedded) {
        craft__uv_fsm_wake(n, was_empty);
    }
}

bool craft__uv_fsm_idle(struct craft_uv_node *n)
{
    uv_mutex_lock(&n->fsm_lock);
    bool idle = n->fsm_head == NULL && !n->fsm_busy && n->fsm_done == NULL;
    uv_mutex_unlock(&n->fsm_lock);
    return idle && n->pending == NULL;
}

/* The job that makes a restore step ready is done: with an embedder's stream it read the
 * snapshot into memory (the stream never waits for the store there). */
void craft__uv_fsm_restore_ready(struct craft_uv_node *n, struct craft__job *j)
{
    for (struct craft__step *s = n->pending; s != NULL; s = s->next) {
        if (s->kind == STEP_RESTORE && s->id == j->step_id) {
            s->ready = true;
            if (j->data != NULL || n->fsm_embedded) {
                s->data = j->data;
                s->data_len = j->data_len;
                j->data = NULL;
                s->meta.index = j->meta.index;
            }
            return;
        }
    }
}

/* ---- what comes back ------------------------------------------------------------------------ */

static void applied(struct craft_uv_node *n, struct craft__step *s)
{
    if (s->rc != 0) {
        if (!n->dead) {
            craft__uv_fatal(n, s->rc, "%s", s->err);
        }
        /* Not answered on the stream: the node stopped at this batch. */
        craft__uv_requests_fail_list(n, &s->answers, n->dead_rc);
        return;
    }
    for (size_t k = 0; k < s->n_entries; k++) {
        const struct craft__fsm_entry *e = &s->entries[k];
        n->applied = e->index;
        if (e->type == CRAFT_ENTRY_COMMAND && !e->skipped) {
            n->entries_applied++;
        } else if (e->type == CRAFT_ENTRY_CONFIG) {
            struct craft_uv_event ev;
            memset(&ev, 0, sizeof ev);
            ev.type = CRAFT_UV_EVENT_MEMBERSHIP;
            ev.index = e->index;
            craft__uv_event(n, &ev);
        }
    }
    craft__uv_requests_on_applied(n, s);
}

static void restored(struct craft_uv_node *n, struct craft__step *s)
{
    if (s->rc != 0) {
        if (!n->dead) {
            craft__uv_fatal(n, s->rc, "%s", s->err);
        }
        return;
    }
    if (s->meta.index > n->applied) {
        n->applied = s->meta.index;
    }
    if (s->meta.index > n->snapshot_index) {
        n->snapshot_index = s->meta.index;
    }
    craft__uv_log(n, CRAFT_UV_INFO, "event=snapshot_installed index=%llu",
                  (unsigned long long)s->meta.index);
    struct craft_uv_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = CRAFT_UV_EVENT_SNAPSHOT;
    ev.index = s->meta.index;
    ev.installed = true;
    craft__uv_event(n, &ev);
}

/* A snapshot the state machine wrote: stored already (the runtime's stream), or, written into
 * memory by an embedder's stream, stored now by the disk queue. */
static void snapshotted(struct craft_uv_node *n, struct craft__step *s)
{
    if (n->dead) {
        return;
    }
    if (!n->fsm_embedded || s->rc != 0) {
        craft__uv_snapshot_done(n, s->rc, s->err, s->meta.index, s->size, s->obsolete);
        return;
    }
    struct craft__job *j = craft_calloc(n->alloc, 1, sizeof *j);
    if (j == NULL) {
        craft__uv_snapshot_done(n, CRAFT_ENOMEM, "out of memory storing a snapshot",
                                s->meta.index, 0, false);
        return;
    }
    j->kind = JOB_STORE_SNAPSHOT;
    craft_configuration_init(&j->chunk.meta.conf);
    j->meta = s->meta; /* takes the configuration */
    craft_configuration_init(&s->meta.conf);
    j->data = s->data;
    j->data_len = s->data_len;
    s->data = NULL;
    craft__uv_job_push(n, j);
    craft__uv_disk_kick(n);
}

void craft__uv_fsm_async_cb(uv_async_t *h)
{
    struct craft_uv_node *n = h->data;
    uv_mutex_lock(&n->fsm_lock);
    struct craft__step *s = n->fsm_done;
    n->fsm_done = n->fsm_done_tail = NULL;
    uv_mutex_unlock(&n->fsm_lock);
    /* The answers and events below run user callbacks that may submit requests on this
     * thread: as inside craft__uv_drive, those are taken by the drive that follows. */
    bool was_driving = n->driving;
    n->driving = true;
    while (s != NULL) {
        struct craft__step *next = s->next;
        switch (s->kind) {
        case STEP_APPLY:
            applied(n, s);
            break;
        case STEP_SNAPSHOT:
            snapshotted(n, s);
            break;
        case STEP_RESTORE:
            restored(n, s);
            break;
        default:
            break; /* answers and events: delivered on the stream */
        }
        step_release(n, s);
        s = next;
    }
    n->driving = was_driving;
    craft__uv_drive(n); /* the core may have work now (a snapshot taken), and it pumps */
    craft__uv_apply_pump(n);
    craft__uv_maybe_publish_status(n);
    craft__uv_maybe_finish_stop(n);
}

/* ---- snapshots ------------------------------------------------------------------------------ */

/* A snapshot failed: nothing is lost (the log holds every entry), so the node keeps serving
 * and tries again after a backoff, 1 s doubling to 60 s. Until then the core's request stays
 * unanswered, so that it asks for no other: answered at once, it would ask again at the very
 * next entry, and a state machine whose snapshot always fails was called (and logged its
 * failure) once per entry. One log line and one event per attempt. */
#define SNAPSHOT_RETRY_MIN_MS 1000u
#define SNAPSHOT_RETRY_MAX_MS 60000u

static void snapshot_failed(struct craft_uv_node *n, int rc, const char *err, craft_index index)
{
    n->snap_failures++;
    uint64_t wait = SNAPSHOT_RETRY_MIN_MS;
    for (unsigned k = 1; k < n->snap_failures && wait < SNAPSHOT_RETRY_MAX_MS; k++) {
        wait *= 2;
    }
    if (wait > SNAPSHOT_RETRY_MAX_MS) {
        wait = SNAPSHOT_RETRY_MAX_MS;
    }
    n->snap_retry_at = uv_now(n->loop) + wait;
    n->snap_parked = true;
    snprintf(n->snap_error, sizeof n->snap_error, "%s", err);
    craft__uv_log(n, CRAFT_UV_WARN,
                  "event=snapshot_failed index=%llu attempt=%u retry_in_ms=%llu reason=\"%s\" "
                  "(the node keeps serving; the log keeps every entry until a snapshot succeeds)",
                  (unsigned long long)index, n->snap_failures, (unsigned long long)wait, err);
    struct craft_uv_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = CRAFT_UV_EVENT_SNAPSHOT_FAILED;
    ev.index = index;
    ev.error = rc;
    ev.message = err;
    craft__uv_event(n, &ev);
}

/* On every tick: once the backoff is over, the parked request is answered as failed, and the
 * core asks for a snapshot of its state then. */
void craft__uv_snapshot_retry(struct craft_uv_node *n)
{
    if (n->snap_parked && uv_now(n->loop) >= n->snap_retry_at) {
        n->snap_parked = false;
        craft_index upto = 0;
        (void)craft_snapshot_taken(n->core, 0, 0, &upto);
    }
}

void craft__uv_snapshot_done(struct craft_uv_node *n, int rc, const char *err,
                             craft_index index, uint64_t size, bool obsolete)
{
    craft_index upto = 0;
    if (rc != 0) {
        snapshot_failed(n, rc, err, index);
        return;
    }
    if (obsolete) {
        /* A snapshot from the leader newer than this one was installed while it was written:
         * it was not stored (that would have put the store's state back). The core asks again
         * once the log has grown past the new one. */
        craft__uv_log(n, CRAFT_UV_INFO, "event=snapshot_obsolete index=%llu",
                      (unsigned long long)index);
        (void)craft_snapshot_taken(n->core, 0, 0, &upto);
        return;
    }
    n->snap_failures = 0;
    n->snap_error[0] = '\0';
    rc = craft_snapshot_taken(n->core, index, size, &upto);
    if (rc != 0) {
        craft__uv_log(n, CRAFT_UV_WARN, "event=snapshot_rejected index=%llu rc=%s",
                      (unsigned long long)index, craft_err_name(rc));
    } else {
        n->snapshots++;
        if (index > n->snapshot_index) {
            n->snapshot_index = index;
        }
        craft__uv_log(n, CRAFT_UV_INFO, "event=snapshot_taken index=%llu bytes=%llu compact=%llu",
                      (unsigned long long)index, (unsigned long long)size,
                      (unsigned long long)upto);
        struct craft_uv_event ev;
        memset(&ev, 0, sizeof ev);
        ev.type = CRAFT_UV_EVENT_SNAPSHOT;
        ev.index = index;
        craft__uv_event(n, &ev);
    }
    if (upto > 0) {
        struct craft__job *c = craft_calloc(n->alloc, 1, sizeof *c);
        if (c == NULL) {
            craft__uv_fatal(n, CRAFT_ENOMEM, "out of memory queueing a compaction");
            return;
        }
        c->kind = JOB_COMPACT;
        c->upto = upto;
        craft_configuration_init(&c->chunk.meta.conf);
        craft_configuration_init(&c->meta.conf);
        craft__uv_job_push(n, c);
        craft__uv_disk_kick(n);
    }
}
