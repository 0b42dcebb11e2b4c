/* The apply queue: committed entries on their way to the state machine, and the two points in
 * that stream where the state machine is replaced or copied:
 *
 *   ITEM_ENTRY     a committed entry; commands are applied in batches (one callback for every
 *                  command that is ready), barriers and configurations are consumed here;
 *   ITEM_SNAPSHOT  the core asked for a snapshot at this point: applying pauses while the
 *                  snapshot callback runs on the disk queue, then resumes;
 *   ITEM_RESTORE   a snapshot from the leader was installed: applying pauses until the restore
 *                  callback has replaced the state (it runs after the write that stored it).
 *
 * Snapshots and restores run on a worker thread; pausing the queue is what keeps the state
 * machine from being applied to and copied at the same time, without blocking the loop. */
#include <string.h>

#include "uv/node.h"

#define MAX_BATCH 1024

static void item_free(struct craft_uv_node *n, struct craft__item *it)
{
    /* An entry's payload lives in the same allocation as its item. */
    craft_configuration_close(&it->meta.conf, n->alloc);
    craft_free(n->alloc, it);
}

void craft__uv_items_free(struct craft_uv_node *n)
{
    while (n->items != NULL) {
        struct craft__item *it = n->items;
        n->items = it->next;
        item_free(n, it);
    }
    n->items_tail = NULL;
}

static void push(struct craft_uv_node *n, struct craft__item *it)
{
    it->next = NULL;
    if (n->items_tail != NULL) {
        n->items_tail->next = it;
    } else {
        n->items = it;
    }
    n->items_tail = it;
}

int craft__uv_queue_entry(struct craft_uv_node *n, const struct craft_entry *e)
{
    /* One allocation per committed entry: the item, then its payload. */
    struct craft__item *it = craft_calloc(n->alloc, 1, sizeof *it + e->size);
    if (it == NULL) {
        return CRAFT_ENOMEM;
    }
    it->kind = ITEM_ENTRY;
    it->e = *e;
    it->e.data = NULL;
    if (e->size > 0) {
        memcpy(it + 1, e->data, e->size);
        it->e.data = it + 1;
    }
    push(n, it);
    return 0;
}

int craft__uv_queue_item(struct craft_uv_node *n, int kind, const struct craft_snapshot_meta *m)
{
    struct craft__item *it = craft_calloc(n->alloc, 1, sizeof *it);
    if (it == NULL) {
        return CRAFT_ENOMEM;
    }
    it->kind = kind;
    it->meta = *m;
    int rc = craft_configuration_copy(&it->meta.conf, &m->conf, n->alloc);
    if (rc != 0) {
        craft_free(n->alloc, it);
        return rc;
    }
    push(n, it);
    return 0;
}

static void apply_commands(struct craft_uv_node *n, struct craft__item **batch, size_t count)
{
    struct craft_uv_apply cmds[MAX_BATCH];
    memset(cmds, 0, count * sizeof cmds[0]);
    for (size_t k = 0; k < count; k++) {
        cmds[k].index = batch[k]->e.index;
        cmds[k].term = batch[k]->e.term;
        cmds[k].data = batch[k]->e.data;
        cmds[k].size = batch[k]->e.size;
    }
    int rc = n->cfg.fsm.apply != NULL ? n->cfg.fsm.apply(n->cfg.fsm.data, cmds, count) : 0;
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
            craft__uv_fatal(n, rc, "the state machine stopped at index %llu: %.*s",
                            (unsigned long long)cmds[at].index,
                            (int)(cmds[at].result_size < 400 ? cmds[at].result_size : 400),
                            (const char *)cmds[at].result);
        } else {
            craft__uv_fatal(n, rc, "the state machine's apply failed at index %llu: %s",
                            (unsigned long long)cmds[0].index, craft_strerror(rc));
        }
        for (size_t k = 0; k < count; k++) {
            craft_free(NULL, cmds[k].result);
        }
        return;
    }
    for (size_t k = 0; k < count; k++) {
        n->applied = cmds[k].index;
        n->entries_applied++;
        craft__uv_requests_on_applied(n, &cmds[k], &batch[k]->e);
        craft_free(NULL, cmds[k].result);
    }
}

static void start_job(struct craft_uv_node *n, int kind, struct craft_snapshot_meta *meta)
{
    struct craft__job *j = craft_calloc(n->alloc, 1, sizeof *j);
    if (j == NULL) {
        craft__uv_fatal(n, CRAFT_ENOMEM, "out of memory queueing a snapshot job");
        return;
    }
    j->kind = kind;
    craft_configuration_init(&j->chunk.meta.conf);
    j->meta = *meta; /* takes the configuration */
    craft_configuration_init(&meta->conf);
    n->fsm_busy = true;
    craft__uv_job_push(n, j);
    craft__uv_disk_kick(n);
}

void craft__uv_apply_pump(struct craft_uv_node *n)
{
    while (!n->fsm_busy && !n->dead && n->items != NULL) {
        struct craft__item *it = n->items;
        if (it->kind == ITEM_ENTRY && it->e.type == CRAFT_ENTRY_COMMAND) {
            struct craft__item *batch[MAX_BATCH];
            size_t count = 0;
            while (n->items != NULL && count < MAX_BATCH && n->items->kind == ITEM_ENTRY &&
                   n->items->e.type == CRAFT_ENTRY_COMMAND) {
                batch[count++] = n->items;
                n->items = n->items->next;
            }
            if (n->items == NULL) {
                n->items_tail = NULL;
            }
            apply_commands(n, batch, count);
            for (size_t k = 0; k < count; k++) {
                item_free(n, batch[k]);
            }
            continue;
        }
        n->items = it->next;
        if (n->items == NULL) {
            n->items_tail = NULL;
        }
        if (it->kind == ITEM_ENTRY) {
            /* A barrier or a configuration: nothing for the state machine. */
            n->applied = it->e.index;
            struct craft_uv_apply a;
            memset(&a, 0, sizeof a);
            a.index = it->e.index;
            a.term = it->e.term;
            craft__uv_requests_on_applied(n, &a, &it->e);
            if (it->e.type == CRAFT_ENTRY_CONFIG) {
                struct craft_uv_event ev;
                memset(&ev, 0, sizeof ev);
                ev.type = CRAFT_UV_EVENT_MEMBERSHIP;
                ev.index = it->e.index;
                craft__uv_event(n, &ev);
            }
        } else if (it->kind == ITEM_SNAPSHOT) {
            start_job(n, JOB_TAKE_SNAPSHOT, &it->meta);
        } else if (it->kind == ITEM_RESTORE) {
            start_job(n, JOB_RESTORE, &it->meta);
        }
        item_free(n, it);
    }
    craft__uv_requests_check_applied(n);
}

/* A snapshot failed: nothing is lost (the log holds every entry), so the node keeps serving
 * and tries again after a backoff, 1 s doubling to 60 s. Until then the core's request stays
 * unanswered, so that it asks for no other: answered at once, it would ask again at the very
 * next entry, and a state machine whose snapshot always fails was called (and logged its
 * failure) once per entry. One log line and one event per attempt. */
#define SNAPSHOT_RETRY_MIN_MS 1000u
#define SNAPSHOT_RETRY_MAX_MS 60000u

static void snapshot_failed(struct craft_uv_node *n, struct craft__job *j)
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
    snprintf(n->snap_error, sizeof n->snap_error, "%s", j->err);
    craft__uv_log(n, CRAFT_UV_WARN,
                  "event=snapshot_failed index=%llu attempt=%u retry_in_ms=%llu reason=\"%s\" "
                  "(the node keeps serving; the log keeps every entry until a snapshot succeeds)",
                  (unsigned long long)j->meta.index, n->snap_failures, (unsigned long long)wait,
                  j->err);
    struct craft_uv_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = CRAFT_UV_EVENT_SNAPSHOT_FAILED;
    ev.index = j->meta.index;
    ev.error = j->rc;
    ev.message = j->err;
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

void craft__uv_snapshot_done(struct craft_uv_node *n, struct craft__job *j)
{
    n->fsm_busy = false;
    craft_index upto = 0;
    if (j->rc != 0) {
        snapshot_failed(n, j);
        return; /* applying resumes in the craft__uv_drive() that follows every job */
    }
    n->snap_failures = 0;
    n->snap_error[0] = '\0';
    int rc = craft_snapshot_taken(n->core, j->meta.index, j->size, &upto);
    if (rc != 0) {
        craft__uv_log(n, CRAFT_UV_WARN, "event=snapshot_rejected index=%llu rc=%s",
                      (unsigned long long)j->meta.index, craft_err_name(rc));
    } else {
        n->snapshots++;
        if (j->meta.index > n->snapshot_index) {
            n->snapshot_index = j->meta.index;
        }
        craft__uv_log(n, CRAFT_UV_INFO, "event=snapshot_taken index=%llu bytes=%llu compact=%llu",
                      (unsigned long long)j->meta.index, (unsigned long long)j->size,
                      (unsigned long long)upto);
        struct craft_uv_event ev;
        memset(&ev, 0, sizeof ev);
        ev.type = CRAFT_UV_EVENT_SNAPSHOT;
        ev.index = j->meta.index;
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
    }
    /* Applying resumes in the craft__uv_drive() that follows every finished job. */
}

void craft__uv_restore_done(struct craft_uv_node *n, struct craft__job *j)
{
    n->fsm_busy = false;
    n->applied = j->meta.index;
    if (j->meta.index > n->snapshot_index) {
        n->snapshot_index = j->meta.index;
    }
    craft__uv_log(n, CRAFT_UV_INFO, "event=snapshot_installed index=%llu",
                  (unsigned long long)j->meta.index);
    struct craft_uv_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = CRAFT_UV_EVENT_SNAPSHOT;
    ev.index = j->meta.index;
    ev.installed = true;
    craft__uv_event(n, &ev);
    /* Applying resumes in the craft__uv_drive() that follows every finished job. */
}
