/* Driving the core: every input (tick, message, proposal) is followed by craft__uv_drive(),
 * which takes the core's updates and carries them out in the order docs/core.md gives:
 * what to persist goes to the disk queue (merged with what already waits there), messages go
 * to the transport at once, committed entries go to the apply queue, and reads, role changes
 * and dropped proposals go to the request tables.
 *
 * Re-entry. Those last steps, and the apply queue, run the user's callbacks (events, request
 * completions), and a callback may submit a request on the loop thread, which is an input
 * followed by craft__uv_drive() again. Two rules keep that safe:
 *   - an update points into the core and is valid only until the next call into it, so each
 *     update is carried out completely (what it points to copied or queued) before any user
 *     callback runs;
 *   - craft__uv_drive() does not nest: called while it runs (from a callback), it only asks
 *     the running call to go round once more. Otherwise an inner call would take the next
 *     update while the outer one still reads its own, and the apply queue would start a batch
 *     while the outer one is still answering the previous batch's requests (which then saw
 *     later indexes applied first and reported their own proposals as dropped). */
#include <string.h>

#include "uv/node.h"

/* Copies entries into the job that waits: the update points into the core, valid only until the
 * next call into it, while the job runs later on another thread. One growing buffer holds every
 * payload of the job, so a job costs a few allocations, not one per entry. */
static int copy_entries_into(struct craft_uv_node *n, struct craft__job *j,
                             const struct craft_entry *es, size_t count)
{
    if (count == 0) {
        return 0;
    }
    /* A later update may rewrite the tail of what is waiting (a follower's truncation). */
    while (j->n_entries > 0 && j->entries[j->n_entries - 1].index >= es[0].index) {
        j->n_entries--;
        j->payload_len = j->offsets[j->n_entries];
    }
    if (j->n_entries + count > j->cap_entries) {
        size_t cap = j->cap_entries ? j->cap_entries : 64;
        while (cap < j->n_entries + count) {
            cap *= 2;
        }
        struct craft_entry *p = craft_realloc(n->alloc, j->entries, cap * sizeof *p);
        if (p == NULL) {
            return CRAFT_ENOMEM;
        }
        j->entries = p;
        size_t *o = craft_realloc(n->alloc, j->offsets, cap * sizeof *o);
        if (o == NULL) {
            return CRAFT_ENOMEM;
        }
        j->offsets = o;
        j->cap_entries = cap;
    }
    size_t bytes = 0;
    for (size_t k = 0; k < count; k++) {
        bytes += es[k].size;
    }
    if (j->payload_len + bytes > j->payload_cap) {
        size_t cap = j->payload_cap ? j->payload_cap : 4096;
        while (cap < j->payload_len + bytes) {
            cap *= 2;
        }
        unsigned char *p = craft_realloc(n->alloc, j->payload, cap);
        if (p == NULL) {
            return CRAFT_ENOMEM;
        }
        j->payload = p;
        j->payload_cap = cap;
    }
    for (size_t k = 0; k < count; k++) {
        struct craft_entry *e = &j->entries[j->n_entries];
        *e = es[k];
        e->data = NULL; /* set when the job starts (disk.c, job_seal) */
        j->offsets[j->n_entries] = j->payload_len;
        if (es[k].size > 0) {
            memcpy(j->payload + j->payload_len, es[k].data, es[k].size);
            j->payload_len += es[k].size;
        }
        j->n_entries++;
    }
    return 0;
}

static int queue_write(struct craft_uv_node *n, const struct craft_update *u)
{
    struct craft__job *j;
    if (u->snapshot_chunk != NULL) {
        /* A chunk starts a job of its own, after everything already queued. */
        j = craft_calloc(n->alloc, 1, sizeof *j);
        if (j == NULL) {
            return CRAFT_ENOMEM;
        }
        j->kind = JOB_WRITE;
        craft_configuration_init(&j->meta.conf);
        const struct craft_install_snapshot *c = u->snapshot_chunk;
        j->has_chunk = true;
        j->discard_log = u->snapshot_discard_log;
        j->chunk = *c;
        j->chunk.data = NULL;
        int rc = craft_configuration_copy(&j->chunk.meta.conf, &c->meta.conf, n->alloc);
        void *p = craft_malloc(n->alloc, c->size ? c->size : 1);
        if (rc != 0 || p == NULL) {
            craft_free(n->alloc, p);
            craft__uv_job_free(n, j);
            return CRAFT_ENOMEM;
        }
        if (c->size > 0) {
            memcpy(p, c->data, c->size);
        }
        j->chunk.data = p;
        craft__uv_job_push(n, j);
    } else {
        j = craft__uv_job_tail_write(n);
        if (j == NULL) {
            return CRAFT_ENOMEM;
        }
    }
    j->seq = u->seq;
    if (u->hard_state_changed) {
        j->has_hs = true;
        j->hs = u->hard_state;
    }
    return copy_entries_into(n, j, u->entries, u->n_entries);
}

static void send_messages(struct craft_uv_node *n, const struct craft_update *u)
{
    for (size_t k = 0; k < u->n_messages; k++) {
        const struct craft_message *m = &u->messages[k];
        if (m->type == CRAFT_MSG_INSTALL_SNAPSHOT && m->u.install_snapshot.data == NULL) {
            /* The chunk's bytes come from our snapshot file: read on the disk queue. */
            struct craft__job *j = craft_calloc(n->alloc, 1, sizeof *j);
            if (j == NULL) {
                continue; /* dropped: the core resends a lost chunk */
            }
            j->kind = JOB_READ_CHUNK;
            craft_configuration_init(&j->chunk.meta.conf);
            craft_configuration_init(&j->meta.conf);
            j->msg = *m;
            if (craft_configuration_copy(&j->msg.u.install_snapshot.meta.conf,
                                         &m->u.install_snapshot.meta.conf, n->alloc) != 0) {
                craft_free(n->alloc, j);
                continue;
            }
            craft__uv_job_push(n, j);
            continue;
        }
        struct craft_wire_message wm;
        memset(&wm, 0, sizeof wm);
        wm.type = m->type;
        wm.u.raft = *m;
        craft__transport_send(n->transport, m->to, &wm);
    }
}

/* Role, term or leader changed: an event for the user, then the request tables (forwarded
 * requests whose leader is gone, parked ones that may go now). Runs user callbacks. */
static void note_role(struct craft_uv_node *n, craft_term term, craft_id leader, int role)
{
    if (role == CRAFT_CANDIDATE && n->role != CRAFT_CANDIDATE) {
        n->elections++;
    }
    bool changed = role != n->role || leader != n->leader || term != n->term;
    n->role = role;
    n->term = term;
    n->leader = leader;
    if (!changed) {
        return;
    }
    if (leader != 0 && leader != n->id) {
        n->removed = false; /* a leader replicates to us: we are a member (again) */
    }
    craft__uv_log(n, CRAFT_UV_INFO, "event=role role=%s term=%llu leader=%llu",
                  craft_role_name(role), (unsigned long long)term, (unsigned long long)leader);
    struct craft_uv_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = CRAFT_UV_EVENT_ROLE;
    ev.role = role;
    ev.term = term;
    ev.leader = leader;
    craft__uv_event(n, &ev);
    craft__uv_requests_on_role(n);
}

/* Loudly: Raft assumes a durable log never goes backwards, and entries this follower had
 * acknowledged may have been counted toward a commit (docs/core.md). The core repairs it. */
static void follower_log_lost(struct craft_uv_node *n, const struct craft_log_regression *g)
{
    craft__uv_log(n, CRAFT_UV_ERROR,
                  "event=follower_log_lost follower=%llu acknowledged=%llu last=%llu "
                  "reason=\"its data directory lost entries it had acknowledged (cut, wiped or "
                  "restored from an older copy); re-replicating. Committed entries may be on "
                  "fewer servers than Raft assumes until it catches up: remove and re-add a "
                  "server instead of restoring or wiping its directory in place\"",
                  (unsigned long long)g->id, (unsigned long long)g->match,
                  (unsigned long long)g->last_index);
    struct craft_uv_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = CRAFT_UV_EVENT_FOLLOWER_LOG_LOST;
    ev.leader = g->id;
    ev.index = g->last_index;
    ev.match = g->match;
    ev.term = n->term;
    craft__uv_event(n, &ev);
}

/* Takes one update and carries it out: first everything that reads it (writes, messages,
 * committed entries, the read results copied out), then what calls the user back. Returns 0, or
 * an error after which the node is dead. */
static int take_one(struct craft_uv_node *n)
{
    struct craft_update u;
    int rc = craft_take_update(n->core, &u);
    if (rc == 0 && (u.seq != 0 || u.snapshot_chunk != NULL)) {
        rc = queue_write(n, &u);
    }
    if (rc != 0) {
        craft__uv_fatal(n, rc, "taking the core's update");
        return rc;
    }
    craft__uv_metrics_update(n, &u);
    send_messages(n, &u);
    if (u.snapshot_chunk != NULL && u.snapshot_chunk->done) {
        /* Restore the state machine after the chunk's write, before what follows. */
        rc = craft__uv_queue_item(n, ITEM_RESTORE, &u.snapshot_chunk->meta);
    }
    for (size_t k = 0; rc == 0 && k < u.n_committed; k++) {
        rc = craft__uv_queue_entry(n, &u.committed[k]);
    }
    if (rc == 0 && u.snapshot_wanted != NULL) {
        rc = craft__uv_queue_item(n, ITEM_SNAPSHOT, u.snapshot_wanted);
    }
    if (rc == 0 && u.n_reads > n->cap_read_out) {
        size_t cap = n->cap_read_out ? n->cap_read_out : 16;
        while (cap < u.n_reads) {
            cap *= 2;
        }
        struct craft_read_state *p = craft_realloc(n->alloc, n->read_out, cap * sizeof *p);
        if (p == NULL) {
            rc = CRAFT_ENOMEM;
        } else {
            n->read_out = p;
            n->cap_read_out = cap;
        }
    }
    /* Followers whose log went backwards (rare): copied out before any callback runs. */
    struct craft_log_regression *lost = NULL;
    size_t n_lost = u.n_regressions;
    if (rc == 0 && n_lost > 0) {
        lost = craft_malloc(n->alloc, n_lost * sizeof *lost);
        if (lost == NULL) {
            rc = CRAFT_ENOMEM;
        } else {
            memcpy(lost, u.regressions, n_lost * sizeof *lost);
        }
    }
    if (rc != 0) {
        craft__uv_fatal(n, rc, "queueing committed entries");
        return rc;
    }
    size_t n_reads = u.n_reads;
    if (n_reads > 0) {
        memcpy(n->read_out, u.reads, n_reads * sizeof *u.reads);
    }
    /* From here on the update is not read again: user callbacks may call into the core. */
    if (u.role_changed) {
        note_role(n, u.term, u.leader, u.role);
    }
    if (u.dropped_from != 0) {
        craft__uv_requests_on_dropped(n, u.dropped_from);
    }
    for (size_t k = 0; k < n_reads && !n->dead; k++) {
        craft__uv_requests_on_read(n, &n->read_out[k]);
    }
    for (size_t k = 0; k < n_lost && !n->dead; k++) {
        follower_log_lost(n, &lost[k]);
    }
    craft_free(n->alloc, lost);
    return 0;
}

/* Rounds of taking updates and applying in one call, before the rest of the loop gets a turn
 * (callbacks that keep submitting requests that complete at once could otherwise hold it
 * forever); what is left is taken on the next turn of the loop. */
#define MAX_ROUNDS 1000

void craft__uv_drive(struct craft_uv_node *n)
{
    if (n->dead || n->core == NULL) {
        return;
    }
    if (n->driving) {
        n->drive_again = true; /* a callback's request: the running call takes it */
        return;
    }
    n->driving = true;
    unsigned rounds = 0;
    bool more = false;
    do {
        n->drive_again = false;
        while (!n->dead && rounds < MAX_ROUNDS && craft_has_update(n->core)) {
            rounds++;
            if (take_one(n) != 0) {
                break;
            }
        }
        if (n->dead) {
            break;
        }
        craft__uv_disk_kick(n);
        craft__uv_apply_pump(n);
        more = !n->dead && (n->drive_again || craft_has_update(n->core));
    } while (more && ++rounds < MAX_ROUNDS);
    n->driving = false;
    if (more && !n->dead && !n->closing) {
        uv_async_send(&n->async); /* the rest on the next turn: craft__uv_async_cb drives */
    }
    craft__uv_maybe_publish_status(n);
}

/* A server that was removed from the configuration never receives the entry that removes it
 * (a leader replicates to the servers of the new configuration only), so it goes on asking for
 * votes, knowing nothing. A node whose committed configuration lacks the sender tells it so: a
 * response with request id 0 (never a real request's) and CRAFT_ENOTFOUND. The removed server
 * then reports itself removed (craft__uv_on_response). */
static void tell_if_removed(struct craft_uv_node *n, struct craft__conn *conn, craft_id from)
{
    craft_index conf_index = 0;
    const struct craft_configuration *conf = craft_node_configuration(n->core, &conf_index);
    if (conf->n == 0 || conf_index == 0 || conf_index > craft_node_commit(n->core) ||
        craft_configuration_get(conf, from) != NULL) {
        return;
    }
    struct craft_wire_message rm;
    memset(&rm, 0, sizeof rm);
    rm.type = CRAFT_WIRE_RESPONSE;
    rm.u.response.from = n->id;
    rm.u.response.to = from;
    rm.u.response.term = n->term;
    rm.u.response.id = 0;
    rm.u.response.error = CRAFT_ENOTFOUND;
    rm.u.response.index = conf_index;
    craft__transport_reply(n->transport, conn, &rm);
}

/* A message from the transport. */
void craft__uv_recv(void *data, struct craft__conn *conn, craft_id from,
                    const struct craft_wire_message *m)
{
    struct craft_uv_node *n = data;
    if (n->dead || n->stopping) {
        return;
    }
    /* The core learns how much time has passed before it sees the message. */
    int rc = craft__uv_clock_feed(n);
    if (rc != 0) {
        craft__uv_fatal(n, rc, "craft_tick failed");
        return;
    }
    if (m->type >= 1 && m->type <= CRAFT_MSG_TYPE_MAX) {
        if (from != 0 && m->u.raft.from == from) {
            tell_if_removed(n, conn, from);
        }
        if (from == 0 || m->u.raft.from != from) {
            craft__uv_log(n, CRAFT_UV_WARN,
                          "event=bad_message reason=sender_mismatch conn_id=%llu msg_from=%llu",
                          (unsigned long long)from, (unsigned long long)m->u.raft.from);
            return;
        }
        rc = craft_step(n->core, &m->u.raft);
        if (rc != 0) {
            craft__uv_log(n, CRAFT_UV_WARN, "event=bad_message from=%llu type=%s rc=%s",
                          (unsigned long long)from, craft_message_type_name(m->type),
                          craft_err_name(rc));
            if (rc == CRAFT_ENOMEM) {
                craft__uv_fatal(n, rc, "out of memory stepping a message");
                return;
            }
        }
    } else if (m->type == CRAFT_WIRE_REQUEST) {
        craft__uv_on_request(n, conn, &m->u.request);
    } else if (m->type == CRAFT_WIRE_RESPONSE) {
        craft__uv_on_response(n, &m->u.response);
    }
    craft__uv_drive(n);
}
