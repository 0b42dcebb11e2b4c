/* A node's life: created from its store (state machine restored from the latest snapshot),
 * started (ticking, connecting), stopped gracefully (what was being written is flushed), or
 * stopped by a fatal error (a store or state machine failure: the node refuses everything,
 * loudly, rather than go on with a log it cannot trust). */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "craft/store.h"
#include "uv/node.h"
#include "uv/security.h"

int craft__uv_restore_fsm(struct craft_uv_node *n); /* disk.c */

static __thread char last_error[512];
static __thread char fsm_error[320];

const char *craft_uv_last_error(void)
{
    return last_error;
}

void craft_uv_fsm_error(const char *reason)
{
    snprintf(fsm_error, sizeof fsm_error, "%s", reason != NULL ? reason : "");
}

const char *craft__uv_take_fsm_error(int rc, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", fsm_error[0] != '\0' ? fsm_error : craft_strerror(rc));
    fsm_error[0] = '\0';
    return buf;
}

static void set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
}

void craft__uv_set_last_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
}

void craft_uv_config_init(struct craft_uv_config *c, craft_id id)
{
    memset(c, 0, sizeof *c);
    c->id = id;
    c->heartbeat_ms = 50;
    c->election_timeout_ms = 500;
    c->pre_vote = true;
    c->check_quorum = true;
    c->snapshot_entries = 16384;
    c->snapshot_bytes = 64 * 1024 * 1024;
    c->snapshot_trailing = 1024;
    c->fsync = true;
    c->write_on_loop = true;
    c->forward = true;
    c->max_frame = CRAFT_WIRE_MAX_FRAME_DEFAULT;
    c->default_timeout_ms = 10000;
    c->log_level = CRAFT_UV_INFO;
    c->lag_threshold = 1000;
}

void craft__uv_log(struct craft_uv_node *n, int level, const char *fmt, ...)
{
    if (n->cfg.log == NULL || level < n->cfg.log_level) {
        return;
    }
    char line[1024];
    int k = snprintf(line, sizeof line, "node=%llu ", (unsigned long long)n->id);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + k, sizeof line - (size_t)k, fmt, ap);
    va_end(ap);
    n->cfg.log(n->cfg.log_data, level, line);
}

void craft__uv_event(struct craft_uv_node *n, const struct craft_uv_event *e)
{
    craft__uv_admin_event(n, e); /* metrics and snapshot waiters, on the loop */
    if (n->cfg.event == NULL) {
        return;
    }
    if (n->fsm_embedded) {
        craft__uv_queue_event(n, e); /* delivered on the embedder's stream */
        return;
    }
    n->cfg.event(n->cfg.event_data, e);
}

void craft__uv_fatal(struct craft_uv_node *n, int rc, const char *fmt, ...)
{
    if (n->dead) {
        return;
    }
    char msg[480];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    n->dead = true;
    /* Requests fail with the storage's own error when the store failed (StorageError in
     * Python), and as closed when the state machine stopped the node: its disk is fine. */
    n->dead_rc = rc == CRAFT_ENOMEM || rc == CRAFT_EIO || rc == CRAFT_ECORRUPT ? rc
                                                                               : CRAFT_ESHUTDOWN;
    snprintf(n->dead_msg, sizeof n->dead_msg, "the node stopped: %s", msg);
    craft__uv_publish_status(n); /* stopped before anyone hears of it */
    craft__uv_log(n, CRAFT_UV_ERROR, "event=fatal rc=%s reason=\"%s\" (the node has stopped)",
                  craft_err_name(rc), msg);
    struct craft_uv_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = CRAFT_UV_EVENT_STOPPED;
    ev.error = rc;
    ev.message = msg;
    craft__uv_event(n, &ev);
    uv_timer_stop(&n->tick);
    craft__uv_requests_fail_all(n, n->dead_rc);
    craft__uv_fsm_cancel(n, n->dead_rc);
    craft__uv_apply_pump(n);
    craft__uv_publish_status(n);
}

static void transport_log(void *data, int level, const char *line)
{
    struct craft_uv_node *n = data;
    craft__uv_log(n, level, "%s", line);
}

/* For the transport's decode bound: a message far ahead of our term is refused. */
static craft_term transport_term(void *data)
{
    struct craft_uv_node *n = data;
    return n->core != NULL ? craft_node_term(n->core) : 0;
}

static void store_log(void *data, int level, const char *line)
{
    struct craft_uv_node *n = data;
    craft__uv_log(n, level == CRAFT_STORE_LOG_ERROR  ? CRAFT_UV_ERROR
                     : level == CRAFT_STORE_LOG_WARN ? CRAFT_UV_WARN
                                                     : CRAFT_UV_INFO,
                  "%s", line);
}

/* mkdir -p: a data directory whose parents do not exist yet is created with them. */
static int make_dirs(const char *path)
{
    char buf[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                return -1;
            }
            buf[i] = c;
        }
    }
    return 0;
}

/* Builds the core from what the store holds. */
static int boot_core(struct craft_uv_node *n)
{
    struct craft_store *s = n->store;
    struct craft_boot b;
    memset(&b, 0, sizeof b);
    struct craft_snapshot_meta meta;
    memset(&meta, 0, sizeof meta);
    craft_configuration_init(&meta.conf);
    struct craft_entry *entries = NULL;
    size_t count = 0;
    int rc = s->load_hard_state(s->impl, &b.hard_state);
    if (rc != 0) {
        set_error("reading the hard state: %s", craft_strerror(rc));
        return rc;
    }
    rc = s->snapshot_meta(s->impl, n->alloc, &meta);
    if (rc == 0) {
        b.snapshot = &meta;
    } else if (rc != CRAFT_ENOTFOUND) {
        set_error("reading the snapshot metadata: %s", craft_strerror(rc));
        return rc;
    }
    craft_index first, last;
    rc = s->bounds(s->impl, &first, &last);
    if (rc == 0 && last >= first) {
        rc = s->entries(s->impl, first, last, n->alloc, &entries, &count);
    }
    if (rc != 0) {
        set_error("reading the log: %s", craft_strerror(rc));
        craft_configuration_close(&meta.conf, n->alloc);
        return rc;
    }
    b.entries = entries;
    b.n_entries = count;
    b.bootstrap = n->cfg.bootstrap;

    struct craft_config cc;
    craft_config_init(&cc, n->id);
    cc.election_ticks = n->cfg.election_timeout_ms / n->cfg.heartbeat_ms;
    if (cc.election_ticks < 3) {
        cc.election_ticks = 3;
    }
    n->election_ticks = cc.election_ticks;
    cc.heartbeat_ticks = 1;
    cc.pre_vote = n->cfg.pre_vote;
    cc.check_quorum = n->cfg.check_quorum;
    /* CRAFT_UV_READ_LEASE asks for a lease read; CRAFT_UV_READ never uses one. */
    cc.lease_reads = true;
    cc.snapshot_entries = n->cfg.snapshot_entries;
    cc.snapshot_bytes = n->cfg.snapshot_bytes;
    cc.snapshot_trailing = n->cfg.snapshot_trailing;
    /* No message may exceed the frame a follower accepts (it would close the connection, and
     * the leader would send the same message again, forever): AppendEntries carry at most
     * max_batch_entries entries, each with its own fields, so their payload bytes get what is
     * left of the frame; a single entry above that is refused at submit (craft_uv_max_command).
     * A snapshot chunk leaves half the frame to its metadata (the configuration). */
    size_t budget = n->cfg.max_frame - CRAFT__UV_FRAME_RESERVE -
                    (size_t)cc.max_batch_entries * CRAFT__UV_ENTRY_RESERVE;
    if (cc.max_batch_bytes > budget) {
        cc.max_batch_bytes = budget;
    }
    if (cc.snapshot_chunk_bytes > n->cfg.max_frame / 2) {
        cc.snapshot_chunk_bytes = n->cfg.max_frame / 2;
    }
    if (n->cfg.fsm.snapshot == NULL) {
        cc.snapshot_entries = 0; /* nothing to take a snapshot with: never ask */
        cc.snapshot_bytes = 0;
    }
    cc.seed = n->cfg.seed != 0 ? n->cfg.seed : (n->id * 0x9E3779B97F4A7C15ull) ^ uv_hrtime();
    cc.alloc = n->alloc;
    rc = craft_node_new(&cc, &b, &n->core);
    if (rc != 0) {
        set_error("starting the protocol core from the stored state: %s", craft_strerror(rc));
    } else if (b.snapshot != NULL) {
        rc = craft__uv_restore_fsm(n);
        if (rc != 0) {
            char why[320];
            set_error("restoring the state machine from the snapshot at %llu: %s",
                      (unsigned long long)meta.index, craft__uv_take_fsm_error(rc, why, sizeof why));
        }
        n->applied = meta.index;
        n->snapshot_index = meta.index;
        n->fsm_applied = meta.index;
        n->queued = meta.index;
    }
    craft_free(n->alloc, entries);
    craft_configuration_close(&meta.conf, n->alloc);
    return rc;
}

void craft__uv_removed(struct craft_uv_node *n, craft_id by, craft_index index)
{
    if (n->removed || n->dead) {
        return;
    }
    if (craft_node_role(n->core) == CRAFT_LEADER) {
        return; /* a leader of its own configuration: a stale notice */
    }
    n->removed = true;
    craft__uv_log(n, CRAFT_UV_WARN,
                  "event=removed by=%llu conf_index=%llu reason=\"this node is no longer a member "
                  "of the cluster: its configuration (index %llu) lacks it. Stop it; to bring it "
                  "back, move its data directory aside and add it again from the leader "
                  "(add_server)\"",
                  (unsigned long long)by, (unsigned long long)index, (unsigned long long)index);
    struct craft_uv_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = CRAFT_UV_EVENT_REMOVED;
    ev.leader = by;
    ev.index = index;
    craft__uv_event(n, &ev);
    craft__uv_publish_status(n);
}

/* Frees everything but the node itself, its locks and the state machine stream (see
 * handle_closed). */
static void node_release(struct craft_uv_node *n)
{
    while (n->jobs != NULL) {
        struct craft__job *j = n->jobs;
        n->jobs = j->next;
        craft__uv_job_free(n, j);
    }
    craft__uv_job_free(n, n->spare_job);
    n->spare_job = NULL;
    if (n->store != NULL) {
        craft__snap_rx_abort(n->store, &n->rx);
        craft_store_close(n->store);
        n->store = NULL;
    }
    craft_node_free(n->core);
    n->core = NULL;
    craft_free(n->alloc, n->read_out);
    n->read_out = NULL;
    craft_free(n->alloc, n->data_dir);
    n->data_dir = NULL;
}

/* The node's own memory: what is left of the stream, the locks, the node. On the loop thread,
 * or, with an embedder's stream, on the embedder's in its last step (fsm.c). */
void craft__uv_node_free_memory(struct craft_uv_node *n)
{
    craft__uv_steps_free(n, n->fsm_done);
    craft__uv_steps_free(n, n->fsm_head);
    craft__uv_steps_free(n, n->pending);
    craft__uv_steps_free(n, n->spare);
    craft_free(n->alloc, n->fsm_cmds);
    craft_free(n->alloc, n->fsm_map);
    uv_mutex_destroy(&n->fsm_lock);
    uv_cond_destroy(&n->fsm_cond);
    uv_mutex_destroy(&n->store_lock);
    uv_mutex_destroy(&n->lock);
    craft_free(n->alloc, n);
}

static void node_free(struct craft_uv_node *n)
{
    craft__uv_fsm_join(n);
    node_release(n);
    craft__uv_node_free_memory(n);
}

static void prepare_cb(uv_prepare_t *p);

/* libuv writes to sockets with write(2): a peer that went away raises SIGPIPE, whose default
 * action kills the process without a word (seen with standalone Lua hosts). Ignore it unless
 * the program installed a handler of its own; the write then fails with EPIPE and the
 * transport closes the connection. */
static void ignore_sigpipe(void)
{
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        signal(SIGPIPE, SIG_IGN);
    }
}

int craft_uv_node_new(uv_loop_t *loop, const struct craft_uv_config *c,
                      struct craft_uv_node **out)
{
    last_error[0] = '\0';
    ignore_sigpipe();
    const char *bad = NULL;
    if (loop == NULL || c == NULL || out == NULL) {
        bad = "craft_uv_node_new needs a loop, a configuration and an out pointer";
    } else if (c->id == 0) {
        bad = "id must be above 0";
    } else if (c->address == NULL || strlen(c->address) >= CRAFT_ADDRESS_MAX) {
        bad = "address must be \"host:port\", shorter than 64 bytes";
    } else if (c->heartbeat_ms == 0) {
        bad = "heartbeat_ms must be above 0";
    } else if (c->election_timeout_ms < 2 * c->heartbeat_ms) {
        bad = "election_timeout_ms must be at least twice heartbeat_ms";
    } else if (c->store == NULL && c->data_dir == NULL) {
        bad = "give data_dir, or a store";
    }
    if (bad != NULL) {
        set_error("%s", bad);
        craft_store_close(c != NULL ? c->store : NULL);
        return CRAFT_EINVAL;
    }
    if (c->max_frame != 0 && c->max_frame < CRAFT_UV_MAX_FRAME_MIN) {
        set_error("max_frame must be at least %u bytes (64 KiB), not %u", CRAFT_UV_MAX_FRAME_MIN,
                  (unsigned)c->max_frame);
        craft_store_close(c->store);
        return CRAFT_EINVAL;
    }
    struct craft_uv_node *n = craft_calloc(c->alloc, 1, sizeof *n);
    if (n == NULL) {
        craft_store_close(c->store);
        return CRAFT_ENOMEM;
    }
    n->loop = loop;
    n->cfg = *c;
    n->alloc = c->alloc;
    n->rx.alloc = c->alloc;
    n->id = c->id;
    n->role = CRAFT_FOLLOWER;
    n->loop_thread = uv_thread_self();
    strcpy(n->address, c->address);
    n->cfg.address = n->address;
    if (n->cfg.max_frame == 0) {
        n->cfg.max_frame = CRAFT_WIRE_MAX_FRAME_DEFAULT;
    }
    uv_mutex_init(&n->lock);
    uv_mutex_init(&n->fsm_lock);
    uv_cond_init(&n->fsm_cond);
    uv_mutex_init(&n->store_lock);
    n->fsm_embedded = c->fsm_wake != NULL;
    int rc = 0;
    if (c->data_dir != NULL) {
        n->data_dir = craft_malloc(n->alloc, strlen(c->data_dir) + 1);
        if (n->data_dir == NULL) {
            rc = CRAFT_ENOMEM;
        } else {
            strcpy(n->data_dir, c->data_dir);
        }
        n->cfg.data_dir = n->data_dir;
    }
    n->store = c->store;
    n->cfg.store = NULL;
    n->cfg.metrics_address = NULL; /* the caller's string: opened below, not kept */
    craft__uv_metrics_init(n);
    if (rc == 0 && n->store == NULL && make_dirs(n->data_dir) != 0) {
        set_error("creating the data directory %s: %s", n->data_dir, strerror(errno));
        rc = CRAFT_EIO;
    }
    if (rc == 0 && n->store == NULL) {
        struct craft_disk_store_options so;
        craft_disk_store_options_init(&so);
        so.fsync = c->fsync;
        if (c->segment_size != 0) {
            so.segment_size = c->segment_size;
        }
        so.log = store_log;
        so.log_data = n;
        char *msg = NULL;
        rc = craft_disk_store_open(n->data_dir, &so, n->alloc, &n->store, &msg);
        if (rc != 0) {
            set_error("opening the data directory %s: %s", n->data_dir,
                      msg != NULL ? msg : craft_strerror(rc));
            craft_free(n->alloc, msg);
        }
    }
    if (rc == 0) {
        char why[400] = "";
        rc = craft__uv_cluster_id(c, c->store == NULL ? n->data_dir : NULL, &n->cluster_id, why,
                                  sizeof why);
        if (rc != 0) {
            set_error("%s", why);
        }
    }
    if (rc == 0) {
        rc = boot_core(n);
    }
    if (rc == 0) {
        rc = craft__uv_fsm_start(n);
        if (rc != 0) {
            set_error("starting the state machine's thread: %s", craft_strerror(rc));
        }
    }
    struct craft__tls_ctx *tls = NULL;
    if (rc == 0) {
        char err[512] = "";
        rc = craft__uv_security_ctx(n->id, c->cluster_id, &c->security, &tls, err, sizeof err);
        if (rc != 0) {
            set_error("security settings: %s", err[0] != '\0' ? err : craft_strerror(rc));
        }
        /* The paths were the caller's: read now, not kept. */
        memset(&n->cfg.security, 0, sizeof n->cfg.security);
        n->cfg.security.mode = c->security.mode;
    }
    if (rc == 0) {
        struct craft__transport_options to;
        craft__transport_options_init(&to);
        to.id = n->id;
        to.cluster_id = n->cluster_id;
        to.listen_address = n->address;
        to.max_frame = c->max_frame;
        to.max_pending = c->limits.max_pending;
        to.max_clients = c->limits.max_clients;
        to.max_clients_per_ip = c->limits.max_clients_per_ip;
        to.client_idle_timeout_ms = c->limits.client_idle_timeout_ms;
        to.max_client_requests = c->limits.max_client_requests;
        to.read_budget = c->limits.read_budget;
        to.tls = tls;
        to.traffic = &n->metrics.traffic;
        to.seed = n->id ^ uv_hrtime();
        to.alloc = n->alloc;
        struct craft__transport_callbacks cb = {n, craft__uv_recv, craft__uv_on_peer_state,
                                                craft__uv_on_conn_closed, transport_log,
                                                transport_term};
        rc = craft__transport_open(loop, &to, &cb, &n->transport);
        if (rc == CRAFT_EADDRINUSE) {
            set_error("the address %s is already in use (another node or program listens "
                      "there): stop it, or give this node another address, then start it "
                      "again; nothing was changed",
                      n->address);
        } else if (rc != 0) {
            set_error("listening on %s: %s", n->address, craft_strerror(rc));
        }
    }
    craft__tls_ctx_unref(tls); /* the transport holds its own reference */
    if (rc == 0 && c->metrics_address != NULL) {
        char why[400] = "";
        rc = craft__metrics_http_open(n, c->metrics_address, &n->http, why, sizeof why);
        if (rc != 0) {
            set_error("metrics_address: %s", why);
            /* The transport's listener closes asynchronously, like a failed bind: its memory
             * is released once the loop runs (craft__transport_close). */
            craft__transport_close(n->transport, NULL, NULL);
            n->transport = NULL;
        }
    }
    if (rc != 0) {
        node_free(n);
        return rc;
    }
    uv_timer_init(loop, &n->tick);
    n->tick.data = n;
    uv_async_init(loop, &n->async, craft__uv_async_cb);
    n->async.data = n;
    uv_prepare_init(loop, &n->prepare);
    n->prepare.data = n;
    uv_prepare_start(&n->prepare, prepare_cb);
    uv_unref((uv_handle_t *)&n->prepare); /* it must not keep the loop alive */
    uv_idle_init(loop, &n->write_idle);
    n->write_idle.data = n;
    uv_async_init(loop, &n->fsm_async, craft__uv_fsm_async_cb);
    n->fsm_async.data = n;
    n->open_handles = 5;
    craft__uv_log(n, CRAFT_UV_INFO, "event=open address=%s term=%llu last_index=%llu",
                  craft__transport_address(n->transport),
                  (unsigned long long)craft_node_term(n->core),
                  (unsigned long long)craft_node_last_index(n->core));
    craft__uv_publish_status(n);
    *out = n;
    return 0;
}

/* Tells the transport about every server of the configuration in effect, and forgets the
 * servers that left it (a removed server is no longer dialed; if it dials us, it is still
 * answered on its own connection). */
static void sync_peers(struct craft_uv_node *n)
{
    const struct craft_configuration *conf = craft_node_configuration(n->core, NULL);
    unsigned kept = 0;
    for (unsigned k = 0; k < n->n_dialed; k++) {
        if (craft_configuration_get(conf, n->dialed[k]) != NULL) {
            n->dialed[kept++] = n->dialed[k];
        } else {
            craft__transport_remove_peer(n->transport, n->dialed[k]);
        }
    }
    n->n_dialed = kept;
    for (unsigned i = 0; i < conf->n; i++) {
        craft_id id = conf->servers[i].id;
        if (id == n->id) {
            continue;
        }
        craft__transport_set_peer(n->transport, id, conf->servers[i].address);
        bool known = false;
        for (unsigned k = 0; k < n->n_dialed && !known; k++) {
            known = n->dialed[k] == id;
        }
        if (!known && n->n_dialed < sizeof n->dialed / sizeof n->dialed[0]) {
            n->dialed[n->n_dialed++] = id;
        }
    }
}

int craft_uv_node_start(struct craft_uv_node *n)
{
    if (n == NULL || n->started) {
        return CRAFT_EINVAL;
    }
    n->started = true;
    n->started_ms = uv_now(n->loop);
    craft__uv_check_peers(n);
    sync_peers(n);
    craft__uv_clock_start(n);
    craft__uv_drive(n);
    return 0;
}

size_t craft_uv_max_command(uint32_t max_frame)
{
    if (max_frame == 0) {
        max_frame = CRAFT_WIRE_MAX_FRAME_DEFAULT;
    }
    size_t reserve = CRAFT__UV_FRAME_RESERVE + CRAFT__UV_ENTRY_RESERVE;
    return max_frame > reserve ? max_frame - reserve : 0;
}

const char *craft_uv_node_address(const struct craft_uv_node *n)
{
    return craft__transport_address(n->transport);
}

craft_id craft_uv_node_id(const struct craft_uv_node *n)
{
    return n->id;
}

const char *craft__uv_address(const struct craft_uv_node *n)
{
    return n->transport != NULL ? craft__transport_address(n->transport) : n->address;
}

/* ms since peer was last heard from; -1 if never. */
static int64_t contact_ms(struct craft_uv_node *n, craft_id peer, uint64_t now)
{
    uint64_t at = craft__traffic_last_heard(&n->metrics.traffic, peer);
    return at == 0 ? -1 : now >= at ? (int64_t)(now - at) : 0;
}

static size_t pending_requests(const struct craft_uv_node *n)
{
    return n->proposals.n + n->reads.n + n->apply_wait.n + n->forwarded.n + n->transfers.n +
           n->parked.n + n->snapshot_waits.n;
}

/* What the status adds for operators (issue 15): per peer, what the leader knows of its
 * replication and when it was last heard from; whether this node has a quorum; the
 * configuration in effect; the latest snapshot; the disk's latency over the last minute. */
static void status_operations(struct craft_uv_node *n, struct craft_uv_status *s)
{
    uint64_t now = uv_now(n->loop);
    snprintf(s->address, sizeof s->address, "%s", craft__uv_address(n));
    snprintf(s->metrics_address, sizeof s->metrics_address, "%s",
             craft__metrics_http_address(n->http));
    s->uptime_ms = n->started ? now - n->started_ms : 0;
    s->leader_contact_ms = -1;
    s->pending_requests = pending_requests(n);
    for (const struct craft__job *j = n->jobs; j != NULL; j = j->next) {
        s->pending_jobs++;
    }
    if (n->core != NULL) {
        craft_index conf_index = 0;
        const struct craft_configuration *conf = craft_node_configuration(n->core, &conf_index);
        s->conf_index = conf_index;
        s->conf_committed = conf_index <= s->commit;
        s->voters = craft_configuration_voters(conf);
        s->learners = conf->n - s->voters;
        craft_node_snapshot(n->core, &s->snapshot_term, &s->snapshot_size);
        struct craft_progress_info pi[CRAFT_UV_STATUS_PEERS];
        unsigned np = craft_node_progress(n->core, pi, CRAFT_UV_STATUS_PEERS);
        bool leader = s->role == CRAFT_LEADER;
        unsigned heard = 0, need = s->voters / 2 + 1;
        for (unsigned i = 0; i < s->n_peers; i++) {
            struct craft_uv_peer_status *p = &s->peers[i];
            p->last_contact_ms = p->id == n->id ? 0 : contact_ms(n, p->id, now);
            for (unsigned k = 0; leader && k < np && k < CRAFT_UV_STATUS_PEERS; k++) {
                if (pi[k].id == p->id) {
                    p->next = pi[k].next;
                    p->inflight = pi[k].inflight;
                    p->state = pi[k].mode;
                    p->lag = s->last_index > pi[k].match ? s->last_index - pi[k].match : 0;
                }
            }
            if (p->id == n->id) {
                p->state = CRAFT_UV_PEER_SELF;
                p->lag = 0;
                p->inflight = 0;
            }
            bool recent = p->last_contact_ms >= 0 &&
                          (uint64_t)p->last_contact_ms <= n->cfg.election_timeout_ms;
            heard += p->role == CRAFT_VOTER && (p->id == n->id || recent);
        }
        if (leader) {
            s->has_quorum = heard >= need;
        } else if (s->leader != 0 && s->leader != n->id) {
            s->leader_contact_ms = contact_ms(n, s->leader, now);
            s->has_quorum = s->leader_contact_ms >= 0 &&
                            (uint64_t)s->leader_contact_ms <= n->cfg.election_timeout_ms;
        }
    }
    /* The percentiles sort up to 2048 samples: once a second is plenty, except while there
     * are few (a young node), when sorting costs nothing and a status should be current. */
    const struct craft__window *fw = &n->metrics.fsync_window;
    bool fresh = fw->added != n->percentiles_added && n->status.fsync_count_1m < 64;
    if (n->percentiles_at_ms == 0 || now >= n->percentiles_at_ms + 1000 || fresh) {
        n->percentiles_at_ms = now;
        n->percentiles_added = fw->added;
        craft__window_percentiles(&n->metrics.fsync_window, now, 60000, &s->fsync_p50_us,
                                  &s->fsync_p99_us, &s->fsync_count_1m);
    } else {
        s->fsync_p50_us = n->status.fsync_p50_us; /* our own last copy (loop thread) */
        s->fsync_p99_us = n->status.fsync_p99_us;
        s->fsync_count_1m = n->status.fsync_count_1m;
    }
    struct craft__metrics *m = &n->metrics;
    s->elections_won = craft__value(&m->elections_won);
    s->leader_changes = craft__value(&m->leader_changes);
    s->proposals = craft__value(&m->proposals);
    s->entries_committed = craft__value(&m->entries_committed);
    s->snapshots_installed = craft__value(&m->snapshots_installed);
    s->snapshots_failed = craft__value(&m->snapshots_failed);
}

void craft__uv_publish_status(struct craft_uv_node *n)
{
    struct craft_uv_status s;
    memset(&s, 0, sizeof s);
    s.id = n->id;
    if (n->core != NULL) {
        s.role = craft_node_role(n->core);
        s.term = craft_node_term(n->core);
        s.leader = craft_node_leader(n->core);
        s.commit = craft_node_commit(n->core);
        s.first_index = craft_node_first_index(n->core);
        s.last_index = craft_node_last_index(n->core);
        const struct craft_configuration *conf = craft_node_configuration(n->core, NULL);
        struct craft_progress_info pi[CRAFT_UV_STATUS_PEERS];
        unsigned np = craft_node_progress(n->core, pi, CRAFT_UV_STATUS_PEERS);
        for (unsigned i = 0; i < conf->n && s.n_peers < CRAFT_UV_STATUS_PEERS; i++) {
            struct craft_uv_peer_status *p = &s.peers[s.n_peers++];
            p->id = conf->servers[i].id;
            p->role = conf->servers[i].role;
            memcpy(p->address, conf->servers[i].address, CRAFT_ADDRESS_MAX);
            p->connected = p->id == n->id ||
                           (n->transport != NULL && craft__transport_connected(n->transport, p->id));
            for (unsigned k = 0; k < np && k < CRAFT_UV_STATUS_PEERS; k++) {
                if (pi[k].id == p->id) {
                    p->match = pi[k].match;
                }
            }
            if (p->id == s.leader) {
                memcpy(s.leader_address, p->address, CRAFT_ADDRESS_MAX);
            }
        }
        craft_index conf_index;
        craft_node_configuration(n->core, &conf_index);
        if (n->transport != NULL && n->started && conf_index != n->synced_conf) {
            sync_peers(n); /* membership changed */
            n->synced_conf = conf_index;
        }
    }
    s.applied = n->applied;
    s.snapshot_index = n->snapshot_index;
    s.entries_appended = n->entries_appended;
    s.entries_applied = n->entries_applied;
    s.fsyncs = n->fsyncs;
    s.elections = n->elections;
    s.snapshots = n->snapshots;
    s.forwarded = n->forwarded_count;
    if (n->transport != NULL) {
        struct craft__transport_stats ts;
        craft__transport_stats(n->transport, &ts);
        s.msgs_sent = ts.msgs_sent;
        s.msgs_received = ts.msgs_received;
        s.bytes_sent = ts.bytes_sent;
        s.bytes_received = ts.bytes_received;
        s.bad_frames = ts.bad_frames;
        s.refused_handshakes = ts.refused_handshakes;
        s.send_dropped = ts.send_dropped;
        s.fault_dropped = ts.fault_dropped;
        s.connects = ts.connects;
        s.disconnects = ts.disconnects;
    }
    s.stopped = n->dead;
    s.removed = n->removed;
    s.cluster_id = n->cluster_id;
    if (n->dead || n->removed) {
        /* A stopped node leads nothing, whatever its core last said; a removed one follows no
         * one (nobody leads it any more). */
        s.role = n->dead ? 0 : s.role;
        s.leader = 0;
        s.leader_address[0] = '\0';
    }
    if (n->dead) {
        snprintf(s.stop_reason, sizeof s.stop_reason, "%s", n->dead_msg);
    }
    s.snapshot_failures = n->snap_failures;
    snprintf(s.snapshot_error, sizeof s.snapshot_error, "%s", n->snap_error);
    status_operations(n, &s);
    if (n->dead || n->removed) {
        s.has_quorum = false;
        s.leader_contact_ms = -1;
    }
    n->status_dirty = false;
    uv_mutex_lock(&n->lock);
    n->status = s;
    uv_mutex_unlock(&n->lock);
}

/* After every input: the copy is marked stale and refreshed once, just before the loop next
 * waits for I/O (a busy leader takes many inputs per loop iteration; a profile showed the copy as
 * the runtime's most expensive function when it was refreshed after each). A role or leader
 * change refreshes it at once. */
void craft__uv_maybe_publish_status(struct craft_uv_node *n)
{
    if (n->status.role != n->role || n->status.leader != n->leader ||
        n->status.term != n->term) {
        craft__uv_publish_status(n);
        return;
    }
    n->status_dirty = true;
}

static void prepare_cb(uv_prepare_t *p)
{
    struct craft_uv_node *n = p->data;
    /* What the loop queued for the state machine stream outside craft__uv_drive (answers to
     * requests that failed, events with an embedder's stream) goes before the loop blocks. */
    craft__uv_apply_pump(n);
    if (n->status_dirty) {
        craft__uv_publish_status(n);
    }
}

int craft_uv_status(struct craft_uv_node *n, struct craft_uv_status *out)
{
    if (n == NULL || out == NULL) {
        return CRAFT_EINVAL;
    }
    uv_mutex_lock(&n->lock);
    *out = n->status;
    uv_mutex_unlock(&n->lock);
    return 0;
}

/* ---- stopping ---------------------------------------------------------------------------- */

/* The last handle closed: the node is released, then the stop callback runs, and only then
 * are the node's memory and lock freed. Other threads may still be inside craft_uv_submit,
 * craft_uv_set_faults or craft_uv_status (they return CRAFT_ESHUTDOWN, or a status, without
 * touching anything released): until the callback has returned, that is safe, and the
 * callback is where their owner makes sure no more calls come. */
static void handle_closed(uv_handle_t *h)
{
    struct craft_uv_node *n = h->data;
    if (--n->open_handles == 0) {
        node_release(n);
        if (n->fsm_embedded) {
            /* The embedder calls the stop callback and frees the node in the stream's last
             * step, after every answer and event queued before it. */
            craft__uv_fsm_push_stop(n);
            return;
        }
        if (n->stop_cb != NULL) {
            n->stop_cb(n->stop_data);
        }
        craft__uv_node_free_memory(n);
    }
}

static void close_handles(void *data)
{
    struct craft_uv_node *n = data;
    n->http = NULL;
    uv_mutex_lock(&n->fsm_lock);
    n->fsm_async_closed = true; /* the stream sends no more wake-ups to the loop */
    uv_mutex_unlock(&n->fsm_lock);
    uv_close((uv_handle_t *)&n->tick, handle_closed);
    uv_close((uv_handle_t *)&n->async, handle_closed);
    uv_close((uv_handle_t *)&n->prepare, handle_closed);
    uv_close((uv_handle_t *)&n->write_idle, handle_closed);
    uv_close((uv_handle_t *)&n->fsm_async, handle_closed);
}

static void transport_closed(void *data)
{
    struct craft_uv_node *n = data;
    n->transport = NULL;
    if (n->http != NULL) {
        craft__metrics_http_close(n->http, close_handles, n); /* then the node's handles */
        return;
    }
    close_handles(n);
}

/* Once the disk and the state machine stream are idle (the stream finished the step it was
 * running; what was queued behind it was dropped, or, answers and events, delivered): end the
 * stream's thread, close the transport, then the handles, then free. */
void craft__uv_maybe_finish_stop(struct craft_uv_node *n)
{
    if (!n->stopping || n->closing || n->job_running || n->jobs != NULL) {
        return;
    }
    craft__uv_apply_pump(n);
    if (!craft__uv_fsm_idle(n)) {
        return; /* craft__uv_fsm_async_cb calls again */
    }
    craft__uv_fsm_join(n);
    n->closing = true;
    craft__transport_close(n->transport, transport_closed, n);
}

void craft_uv_node_stop(struct craft_uv_node *n, void (*cb)(void *data), void *data)
{
    if (n == NULL || n->stopping) {
        return;
    }
    craft__uv_log(n, CRAFT_UV_INFO, "event=stop");
    uv_mutex_lock(&n->lock);
    n->stopping = true;
    uv_mutex_unlock(&n->lock);
    n->stop_cb = cb;
    n->stop_data = data;
    uv_timer_stop(&n->tick);
    craft__uv_requests_fail_all(n, CRAFT_ESHUTDOWN);
    /* Not applied: a restart re-applies them from the log. */
    craft__uv_fsm_cancel(n, CRAFT_ESHUTDOWN);
    craft__uv_apply_pump(n);
    craft__uv_disk_kick(n);  /* drops all but the writes, which are flushed */
    craft__uv_maybe_finish_stop(n);
}
