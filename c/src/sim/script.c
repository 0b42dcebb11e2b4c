/*
 * Transcripts: a consensus scenario written as text, the way etcd-io/raft writes its
 * datadriven testdata files. Each command is one line, followed by "----" and the output it
 * gives; running a transcript compares, and --rewrite records. The interpreter is here, in C,
 * so that Python (craft.sim.run_transcript, python -m craft.sim run), Lua
 * (raft.sim.run_transcript) and C tests run one implementation and agree on every byte.
 *
 * The cluster starts with every clock stopped, every message held and instant disks: nothing
 * happens until a command says so (campaign, deliver-msgs, tick, run), and a command's output
 * is the events it caused, as trace lines without their time. After every command the events
 * due at the current virtual time run (disk writes of 0 ms complete), so a transcript reads as
 * a sequence of steps. docs/simulator.md lists the commands.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim_internal.h"

/* ---- growable text ------------------------------------------------------------------------ */

struct buf {
    char *p;
    size_t n, cap;
    bool oom;
};

static void put(struct buf *b, const char *s, size_t len)
{
    if (b->oom) {
        return;
    }
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + len + 1) {
            cap *= 2;
        }
        char *p = craft_realloc(NULL, b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = '\0';
}

static void puts_(struct buf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void printf_(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void printf_(struct buf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (k > 0) {
        put(b, tmp, (size_t)k < sizeof(tmp) ? (size_t)k : sizeof(tmp) - 1);
    }
}

/* ---- the interpreter's state -------------------------------------------------------------- */

#define MAX_ARGS 32

struct script {
    struct craft_sim *sim;
    unsigned n;
    struct buf out; /* the current command's output */
    bool manual;    /* every message held (the default) */
    uint64_t hold_rule;
    uint64_t read_id;
    int argc;
    char *argv[MAX_ARGS];
};

/* The events a command causes are its output: trace lines without the time. */
static void on_event(void *ud, const struct craft_sim_event *ev)
{
    struct script *sc = ud;
    char line[512];
    craft_sim_event_format(ev, line, sizeof(line));
    const char *p = line;
    if (strncmp(p, "t=", 2) == 0) {
        const char *sp = strchr(p, ' ');
        p = sp != NULL ? sp + 1 : p;
    }
    puts_(&sc->out, p);
    puts_(&sc->out, "\n");
}

static void error_(struct script *sc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void error_(struct script *sc, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    printf_(&sc->out, "error: %s\n", tmp);
}

/* An error code from the simulator, said plainly. */
static void rc_error(struct script *sc, int rc)
{
    if (rc == 0) {
        return;
    }
    const char *e = sc->sim != NULL ? craft_sim_error(sc->sim) : NULL;
    if (e != NULL) {
        error_(sc, "the simulator stopped: %s", e);
    } else {
        error_(sc, "%s", craft_err_name(rc));
    }
}

/* Runs what is due now (a disk write of 0 ms, a message injected now). */
static void settle(struct script *sc)
{
    if (sc->sim != NULL && craft_sim_error(sc->sim) == NULL) {
        int rc = craft_sim_run_for(sc->sim, 0);
        if (rc != 0 && rc != CRAFT_SIM_EVIOLATION) {
            rc_error(sc, rc);
        }
    }
}

/* ---- argument parsing --------------------------------------------------------------------- */

/* The value of key=value among the arguments, or NULL. */
static const char *opt(struct script *sc, const char *key)
{
    size_t k = strlen(key);
    for (int i = 1; i < sc->argc; i++) {
        if (strncmp(sc->argv[i], key, k) == 0 && sc->argv[i][k] == '=') {
            return sc->argv[i] + k + 1;
        }
    }
    return NULL;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (s == NULL || *s == '\0') {
        return false;
    }
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || s[0] == '-') {
        return false;
    }
    *out = v;
    return true;
}

static bool opt_u64(struct script *sc, const char *key, uint64_t *out)
{
    const char *v = opt(sc, key);
    if (v == NULL) {
        return true;
    }
    if (!parse_u64(v, out)) {
        error_(sc, "%s=%s: a non-negative integer expected", key, v);
        return false;
    }
    return true;
}

static bool opt_bool(struct script *sc, const char *key, bool *out)
{
    const char *v = opt(sc, key);
    if (v == NULL) {
        return true;
    }
    if (strcmp(v, "true") == 0 || strcmp(v, "on") == 0) {
        *out = true;
    } else if (strcmp(v, "false") == 0 || strcmp(v, "off") == 0) {
        *out = false;
    } else {
        error_(sc, "%s=%s: true or false expected", key, v);
        return false;
    }
    return true;
}

/* lo..hi */
static bool opt_range(struct script *sc, const char *key, unsigned *lo, unsigned *hi)
{
    const char *v = opt(sc, key);
    if (v == NULL) {
        return true;
    }
    unsigned a, b;
    char tail;
    if (sscanf(v, "%u..%u%c", &a, &b, &tail) == 2 && a <= b) {
        *lo = a;
        *hi = b;
        return true;
    }
    if (sscanf(v, "%u%c", &a, &tail) == 1) {
        *lo = *hi = a;
        return true;
    }
    error_(sc, "%s=%s: LO..HI expected", key, v);
    return false;
}

/* A server id argument (positional). */
static bool node_arg(struct script *sc, int i, craft_id *id)
{
    uint64_t v;
    const char *a = i < sc->argc ? sc->argv[i] : NULL;
    if (a != NULL && a[0] == 'n') {
        a++;
    }
    if (a == NULL || !parse_u64(a, &v) || v < 1 || v > sc->n) {
        error_(sc, "%s: a server 1..%u expected", i < sc->argc ? sc->argv[i] : "(missing)",
               sc->n);
        return false;
    }
    *id = v;
    return true;
}

/* Positional server ids from argument i on ("all" or none: every server) as a mask. */
static bool nodes_arg(struct script *sc, int i, uint64_t *mask)
{
    *mask = 0;
    bool any = false;
    for (; i < sc->argc; i++) {
        if (strchr(sc->argv[i], '=') != NULL) {
            continue;
        }
        any = true;
        if (strcmp(sc->argv[i], "all") == 0) {
            *mask = ~0ull;
            continue;
        }
        craft_id id;
        if (!node_arg(sc, i, &id)) {
            return false;
        }
        *mask |= 1ull << (id - 1);
    }
    if (!any) {
        *mask = ~0ull;
    }
    if (sc->n < 64) {
        *mask &= (1ull << sc->n) - 1;
    }
    return true;
}

/* from=, to=, type= into a selection. */
static bool match_args(struct script *sc, struct craft_sim_match *m)
{
    memset(m, 0, sizeof(*m));
    const char *from = opt(sc, "from"), *to = opt(sc, "to"), *type = opt(sc, "type");
    uint64_t v;
    if (from != NULL) {
        if (!parse_u64(from, &v) || v < 1 || v > sc->n) {
            error_(sc, "from=%s: a server 1..%u expected", from, sc->n);
            return false;
        }
        m->from = v;
    }
    if (to != NULL) {
        if (!parse_u64(to, &v) || v < 1 || v > sc->n) {
            error_(sc, "to=%s: a server 1..%u expected", to, sc->n);
            return false;
        }
        m->to = v;
    }
    if (type != NULL) {
        /* A comma-separated list of names. */
        char tmp[256];
        snprintf(tmp, sizeof(tmp), "%s", type);
        for (char *save = NULL, *t = strtok_r(tmp, ",", &save); t != NULL;
             t = strtok_r(NULL, ",", &save)) {
            int found = 0;
            for (int k = 1; k <= CRAFT_MSG_TYPE_MAX; k++) {
                if (strcmp(t, craft_message_type_name(k)) == 0) {
                    found = k;
                }
            }
            if (!found) {
                error_(sc, "type=%s: a message type expected (RequestVote, RequestVoteResult, "
                           "AppendEntries, AppendEntriesResult, InstallSnapshot, "
                           "InstallSnapshotResult, TimeoutNow)", t);
                return false;
            }
            m->types |= 1u << found;
        }
    }
    return true;
}

/* ---- printing state ----------------------------------------------------------------------- */

static void put_mask(struct buf *b, uint64_t mask)
{
    char tmp[256];
    craft__sim_mask_format(mask, tmp, sizeof(tmp));
    puts_(b, tmp);
}

static void put_data(struct buf *b, const void *data, size_t size)
{
    const unsigned char *p = data;
    bool printable = size > 0 && size <= 40;
    for (size_t k = 0; printable && k < size; k++) {
        printable = p[k] > 32 && p[k] < 127 && p[k] != ',' && p[k] != ';';
    }
    if (printable) {
        put(b, data, size);
    } else {
        printf_(b, "<%zu bytes>", size);
    }
}

static void put_entry(struct buf *b, const struct craft_entry *e)
{
    printf_(b, "%" PRIu64 "/%" PRIu64 " ", e->index, e->term);
    if (e->type == CRAFT_ENTRY_BARRIER) {
        puts_(b, "noop");
    } else if (e->type == CRAFT_ENTRY_CONFIG) {
        struct craft_configuration c;
        if (craft_configuration_decode(e->data, e->size, NULL, &c) == 0) {
            puts_(b, "conf v");
            put_mask(b, craft__sim_voters_of(&c));
            uint64_t learners = 0;
            for (unsigned k = 0; k < c.n; k++) {
                if (c.servers[k].role == CRAFT_LEARNER && c.servers[k].id <= 64) {
                    learners |= 1ull << (c.servers[k].id - 1);
                }
            }
            if (learners) {
                puts_(b, " l");
                put_mask(b, learners);
            }
            craft_configuration_close(&c, NULL);
        } else {
            puts_(b, "conf ?");
        }
    } else {
        put_data(b, e->data, e->size);
    }
}

static const char *const modes[] = {"?", "probe", "replicate", "snapshot"};

static void cmd_status(struct script *sc)
{
    uint64_t mask;
    if (!nodes_arg(sc, 1, &mask)) {
        return;
    }
    for (craft_id id = 1; id <= sc->n; id++) {
        if (!(mask & (1ull << (id - 1)))) {
            continue;
        }
        struct craft_sim_node_status st;
        craft_sim_status(sc->sim, id, &st);
        if (!st.up) {
            printf_(&sc->out, "n%" PRIu64 ": down applied=%" PRIu64 "\n", id, st.applied);
            continue;
        }
        printf_(&sc->out,
                "n%" PRIu64 ": %s term=%" PRIu64 " vote=%" PRIu64 " leader=%" PRIu64
                " commit=%" PRIu64 " applied=%" PRIu64 " last=%" PRIu64 "/%" PRIu64 " voters=",
                id, craft_role_name(st.role), st.term, st.vote, st.leader, st.commit,
                st.applied, st.last_index, st.last_term);
        put_mask(&sc->out, st.voters);
        if (st.learners) {
            puts_(&sc->out, " learners=");
            put_mask(&sc->out, st.learners);
        }
        puts_(&sc->out, "\n");
        struct craft_progress_info p[CRAFT_SIM_MAX_NODES];
        unsigned n = craft_sim_progress(sc->sim, id, p, CRAFT_SIM_MAX_NODES);
        for (unsigned k = 0; k < n && k < CRAFT_SIM_MAX_NODES; k++) {
            if (p[k].id == id) {
                continue;
            }
            printf_(&sc->out,
                    "  n%" PRIu64 ": %s match=%" PRIu64 " next=%" PRIu64 " inflight=%u%s\n",
                    p[k].id, p[k].mode <= 3 ? modes[p[k].mode] : "?", p[k].match, p[k].next,
                    p[k].inflight, p[k].role == CRAFT_LEARNER ? " learner" : "");
        }
    }
}

static void put_entries(struct buf *b, const struct craft_entry *e, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        puts_(b, k ? ", " : " ");
        put_entry(b, &e[k]);
    }
    if (n == 0) {
        puts_(b, " (empty)");
    }
}

static void cmd_log(struct script *sc)
{
    uint64_t mask;
    if (!nodes_arg(sc, 1, &mask)) {
        return;
    }
    for (craft_id id = 1; id <= sc->n; id++) {
        if (!(mask & (1ull << (id - 1)))) {
            continue;
        }
        const struct craft_node *c = craft_sim_node(sc->sim, id);
        if (c == NULL) {
            printf_(&sc->out, "n%" PRIu64 ": down\n", id);
            continue;
        }
        craft_index first = craft_node_first_index(c), last = craft_node_last_index(c);
        printf_(&sc->out, "n%" PRIu64 " (commit=%" PRIu64 "):", id, craft_node_commit(c));
        if (first > 1) {
            printf_(&sc->out, " [snapshot %" PRIu64 "/%" PRIu64 "]", first - 1,
                    craft_node_term_at(c, first - 1));
        }
        size_t k = 0;
        for (craft_index i = first; i <= last && i != 0; i++, k++) {
            const struct craft_entry *e = craft_node_entry(c, i);
            puts_(&sc->out, k ? ", " : " ");
            if (e != NULL) {
                put_entry(&sc->out, e);
            }
        }
        if (k == 0) {
            puts_(&sc->out, " (empty)");
        }
        puts_(&sc->out, "\n");
    }
}

static void cmd_durable(struct script *sc)
{
    uint64_t mask;
    if (!nodes_arg(sc, 1, &mask)) {
        return;
    }
    for (craft_id id = 1; id <= sc->n; id++) {
        if (!(mask & (1ull << (id - 1)))) {
            continue;
        }
        struct craft_sim_durable d;
        int rc = craft_sim_durable(sc->sim, id, &d);
        if (rc != 0) {
            rc_error(sc, rc);
            return;
        }
        printf_(&sc->out, "n%" PRIu64 " disk: term=%" PRIu64 " vote=%" PRIu64, id,
                d.hard_state.term, d.hard_state.vote);
        if (d.has_snapshot) {
            printf_(&sc->out, " snapshot=%" PRIu64 "/%" PRIu64, d.snapshot_index,
                    d.snapshot_term);
        }
        puts_(&sc->out, " log:");
        const struct craft_store *st = craft_sim_store(sc->sim, id);
        struct craft_entry *e = NULL;
        size_t n = 0;
        if (d.last_index >= d.first_index &&
            st->entries(st->impl, d.first_index, d.last_index, NULL, &e, &n) != 0) {
            n = 0;
        }
        put_entries(&sc->out, e, n);
        craft_free(NULL, e);
        puts_(&sc->out, "\n");
    }
}

/* A message as a trace line without the time: "n1 -> n2 AppendEntries term=...". */
static void put_msg(struct buf *b, const struct craft_message *m)
{
    struct craft_sim_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.kind = CRAFT_SIM_EV_SEND;
    ev.node = m->from;
    ev.peer = m->to;
    ev.msg = *m;
    char line[512];
    craft_sim_event_format(&ev, line, sizeof(line));
    const char *sp = strchr(line, ' ');
    puts_(b, sp != NULL ? sp + 1 : line);
    if (m->type == CRAFT_MSG_APPEND_ENTRIES && m->u.append_entries.n_entries > 0 &&
        m->u.append_entries.entries != NULL) {
        puts_(b, " [");
        for (size_t k = 0; k < m->u.append_entries.n_entries; k++) {
            puts_(b, k ? ", " : "");
            put_entry(b, &m->u.append_entries.entries[k]);
        }
        puts_(b, "]");
    }
    puts_(b, "\n");
}

static void cmd_held(struct script *sc)
{
    struct craft_sim_match m;
    if (!match_args(sc, &m)) {
        return;
    }
    size_t n = craft_sim_held(sc->sim, &m, NULL, 0);
    struct craft_sim_held *h = craft_calloc(NULL, n ? n : 1, sizeof(*h));
    if (h == NULL) {
        sc->out.oom = true;
        return;
    }
    n = craft_sim_held(sc->sim, &m, h, n);
    for (size_t k = 0; k < n; k++) {
        put_msg(&sc->out, h[k].msg);
    }
    if (n == 0) {
        puts_(&sc->out, "no messages held\n");
    }
    craft_free(NULL, h);
}

/* ---- commands that change the simulation -------------------------------------------------- */

static void cmd_add_nodes(struct script *sc)
{
    if (sc->sim != NULL) {
        error_(sc, "add-nodes: the cluster exists already (one per transcript)");
        return;
    }
    uint64_t n;
    if (sc->argc < 2 || !parse_u64(sc->argv[1], &n) || n < 1 || n > CRAFT_SIM_MAX_NODES) {
        error_(sc, "add-nodes N: 1..%d servers", CRAFT_SIM_MAX_NODES);
        return;
    }
    static const char *const known[] = {
        "voters", "seed", "election-ticks", "heartbeat-ticks", "snapshot-entries",
        "snapshot-trailing", "snapshot-chunk", "max-inflight", "max-batch", "trace-depth",
        "pre-vote", "check-quorum", "lease-reads", "torn-writes", "disk", "delay", "network",
        "clock", "unsafe", NULL};
    for (int i = 2; i < sc->argc; i++) {
        const char *eq = strchr(sc->argv[i], '=');
        bool found = false;
        for (int k = 0; eq != NULL && known[k] != NULL; k++) {
            found |= strlen(known[k]) == (size_t)(eq - sc->argv[i]) &&
                     strncmp(sc->argv[i], known[k], (size_t)(eq - sc->argv[i])) == 0;
        }
        if (!found) {
            error_(sc, "add-nodes: unknown option %s", sc->argv[i]);
            return;
        }
    }
    struct craft_sim_options o;
    craft_sim_options_init(&o);
    o.n_nodes = (unsigned)n;
    o.disk_min_ms = o.disk_max_ms = 0;
    uint64_t v;
    bool ok = true;
#define U(key, field)                                                                          \
    v = (uint64_t)(field);                                                                     \
    ok = ok && opt_u64(sc, key, &v);                                                           \
    field = (__typeof__(field))v;
    U("voters", o.n_voters);
    U("seed", o.seed);
    U("election-ticks", o.node.election_ticks);
    U("heartbeat-ticks", o.node.heartbeat_ticks);
    U("snapshot-entries", o.node.snapshot_entries);
    U("snapshot-trailing", o.node.snapshot_trailing);
    U("snapshot-chunk", o.node.snapshot_chunk_bytes);
    U("max-inflight", o.node.max_inflight);
    U("max-batch", o.node.max_batch_entries);
    U("trace-depth", o.trace_depth);
#undef U
    ok = ok && opt_bool(sc, "pre-vote", &o.node.pre_vote);
    ok = ok && opt_bool(sc, "check-quorum", &o.node.check_quorum);
    ok = ok && opt_bool(sc, "lease-reads", &o.node.lease_reads);
    ok = ok && opt_bool(sc, "torn-writes", &o.torn_writes);
    ok = ok && opt_range(sc, "disk", &o.disk_min_ms, &o.disk_max_ms);
    ok = ok && opt_range(sc, "delay", &o.min_delay_ms, &o.max_delay_ms);
    const char *unsafe = opt(sc, "unsafe");
    if (unsafe != NULL) {
        /* Teaching only: safety rules switched off in every node (docs/lab.md, "Break it"). */
        char tmp[256];
        snprintf(tmp, sizeof(tmp), "%s", unsafe);
        for (char *save = NULL, *t = strtok_r(tmp, ",", &save); ok && t != NULL;
             t = strtok_r(NULL, ",", &save)) {
            if (strcmp(t, "no-commit-rule") == 0) {
                o.node.unsafe.no_commit_rule = true;
            } else if (strcmp(t, "no-election-restriction") == 0) {
                o.node.unsafe.no_election_restriction = true;
            } else if (strcmp(t, "no-persist-before-vote") == 0) {
                o.node.unsafe.no_persist_before_vote = true;
            } else {
                error_(sc, "unsafe=%s: no-commit-rule, no-election-restriction or "
                           "no-persist-before-vote", t);
                ok = false;
            }
        }
    }
    const char *network = opt(sc, "network");
    if (network != NULL && strcmp(network, "manual") != 0 && strcmp(network, "auto") != 0) {
        error_(sc, "network=%s: manual or auto", network);
        ok = false;
    }
    if (!ok) {
        return;
    }
    o.event = on_event;
    o.ud = sc;
    int rc = craft_sim_new(&o, &sc->sim);
    if (rc != 0) {
        sc->sim = NULL;
        error_(sc, "add-nodes: %s (voters <= N, heartbeat-ticks < election-ticks)",
               craft_err_name(rc));
        return;
    }
    sc->n = (unsigned)n;
    uint64_t clock = 0;
    if (!opt_u64(sc, "clock", &clock)) {
        return;
    }
    craft_sim_set_clock(sc->sim, 0, (unsigned)clock);
    sc->manual = network == NULL || strcmp(network, "manual") == 0;
    if (sc->manual) {
        struct craft_sim_rule r = {.action = CRAFT_SIM_HOLD};
        craft_sim_rule_add(sc->sim, &r, &sc->hold_rule);
    }
    settle(sc);
}

static void cmd_network(struct script *sc)
{
    const char *mode = sc->argc > 1 ? sc->argv[1] : "";
    if (strcmp(mode, "manual") == 0) {
        if (!sc->manual) {
            struct craft_sim_rule r = {.action = CRAFT_SIM_HOLD};
            craft_sim_rule_add(sc->sim, &r, &sc->hold_rule);
            sc->manual = true;
        }
        return;
    }
    if (strcmp(mode, "auto") == 0) {
        if (sc->manual) {
            craft_sim_rule_remove(sc->sim, sc->hold_rule);
            sc->manual = false;
        }
        /* What is held goes out too, as if the network had just been plugged in. */
        rc_error(sc, craft_sim_deliver(sc->sim, NULL, 0, NULL));
        return;
    }
    double drop = 0, dup = 0;
    unsigned lo = 1, hi = 10;
    const char *d = opt(sc, "drop"), *u = opt(sc, "dup");
    if (strcmp(mode, "faults") != 0 || !opt_range(sc, "delay", &lo, &hi)) {
        if (strcmp(mode, "faults") != 0) {
            error_(sc, "network manual|auto|faults [drop=P] [dup=P] [delay=LO..HI]");
        }
        return;
    }
    if (d != NULL) {
        drop = strtod(d, NULL);
    }
    if (u != NULL) {
        dup = strtod(u, NULL);
    }
    int rc = craft_sim_set_network(sc->sim, drop, dup, lo, hi);
    if (rc != 0) {
        error_(sc, "network faults: probabilities in [0, 1], delay LO <= HI");
    }
}

static void cmd_deliver(struct script *sc)
{
    struct craft_sim_match m;
    uint64_t max = 0;
    if (!match_args(sc, &m) || !opt_u64(sc, "max", &max)) {
        return;
    }
    size_t n = 0;
    int rc = craft_sim_deliver(sc->sim, &m, (size_t)max, &n);
    if (rc == 0 && n == 0) {
        puts_(&sc->out, "no messages held\n");
    }
    rc_error(sc, rc == CRAFT_SIM_EVIOLATION ? 0 : rc);
}

/* Delivers everything held, again and again, until nothing is held (at most rounds times). */
static void cmd_stabilize(struct script *sc)
{
    uint64_t rounds = 100;
    if (!opt_u64(sc, "rounds", &rounds)) {
        return;
    }
    for (uint64_t k = 0; k < rounds; k++) {
        size_t n = 0;
        int rc = craft_sim_deliver(sc->sim, NULL, 0, &n);
        if (rc != 0) {
            rc_error(sc, rc == CRAFT_SIM_EVIOLATION ? 0 : rc);
            return;
        }
        settle(sc);
        if (n == 0 && craft_sim_held(sc->sim, NULL, NULL, 0) == 0) {
            return;
        }
    }
    error_(sc, "stabilize: messages still held after %" PRIu64 " rounds", rounds);
}

static void cmd_drop(struct script *sc)
{
    struct craft_sim_match m;
    if (!match_args(sc, &m)) {
        return;
    }
    size_t n = 0;
    craft_sim_discard(sc->sim, &m, &n);
    if (n == 0) {
        puts_(&sc->out, "no messages held\n");
    }
}

static void cmd_tick(struct script *sc)
{
    uint64_t mask, n = 1;
    if (!nodes_arg(sc, 1, &mask) || !opt_u64(sc, "n", &n)) {
        return;
    }
    for (uint64_t k = 0; k < n; k++) {
        for (craft_id id = 1; id <= sc->n; id++) {
            if ((mask & (1ull << (id - 1))) && craft_sim_is_up(sc->sim, id)) {
                int rc = craft_sim_tick(sc->sim, id, 1);
                if (rc != 0) {
                    rc_error(sc, rc == CRAFT_SIM_EVIOLATION ? 0 : rc);
                    return;
                }
            }
        }
    }
}

static void cmd_run(struct script *sc)
{
    uint64_t ms;
    if (sc->argc < 2 || !parse_u64(sc->argv[1], &ms)) {
        error_(sc, "run MS: virtual milliseconds");
        return;
    }
    int rc = craft_sim_run_for(sc->sim, ms);
    rc_error(sc, rc == CRAFT_SIM_EVIOLATION ? 0 : rc);
}

static void cmd_clock(struct script *sc)
{
    uint64_t mask, ms = 0;
    const char *v = sc->argc > 2 ? sc->argv[sc->argc - 1] : NULL;
    if (v == NULL || (strcmp(v, "stop") != 0 && !parse_u64(v, &ms))) {
        error_(sc, "clock NODES|all MS|stop");
        return;
    }
    sc->argc--; /* the last argument is not a node */
    bool ok = nodes_arg(sc, 1, &mask);
    sc->argc++;
    if (!ok) {
        return;
    }
    for (craft_id id = 1; id <= sc->n; id++) {
        if ((mask & (1ull << (id - 1))) && craft_sim_set_clock(sc->sim, id, (unsigned)ms) != 0) {
            error_(sc, "clock: a tick interval above the jitter (1 ms), or stop");
            return;
        }
    }
}

static void cmd_partition(struct script *sc)
{
    unsigned group_of[CRAFT_SIM_MAX_NODES];
    memset(group_of, 0, sizeof(group_of));
    unsigned g = 0;
    for (int i = 1; i < sc->argc; i++) {
        g++;
        char tmp[256];
        snprintf(tmp, sizeof(tmp), "%s", sc->argv[i]);
        for (char *save = NULL, *t = strtok_r(tmp, ",", &save); t != NULL;
             t = strtok_r(NULL, ",", &save)) {
            uint64_t id;
            if (t[0] == 'n') {
                t++;
            }
            if (!parse_u64(t, &id) || id < 1 || id > sc->n || group_of[id - 1] != 0) {
                error_(sc, "partition 1,2 3,4,5: each server 1..%u in at most one group", sc->n);
                return;
            }
            group_of[id - 1] = g;
        }
    }
    for (unsigned i = 0; i < sc->n; i++) {
        if (group_of[i] == 0) {
            group_of[i] = ++g; /* a server in no group is alone */
        }
    }
    craft_sim_partition(sc->sim, group_of);
}

static void cmd_node_op(struct script *sc, int (*fn)(struct craft_sim *, craft_id))
{
    craft_id id;
    if (!node_arg(sc, 1, &id)) {
        return;
    }
    int rc = fn(sc->sim, id);
    rc_error(sc, rc == CRAFT_SIM_EVIOLATION ? 0 : rc);
}

static void cmd_propose(struct script *sc)
{
    craft_id id = 0;
    if (sc->argc < 3) {
        error_(sc, "propose NODE|leader DATA");
        return;
    }
    if (strcmp(sc->argv[1], "leader") != 0 && !node_arg(sc, 1, &id)) {
        return;
    }
    const char *data = sc->argv[2];
    int rc = craft_sim_propose(sc->sim, id, data, strlen(data), NULL, NULL);
    (void)rc; /* the event says what happened */
}

static void cmd_read(struct script *sc)
{
    craft_id id;
    if (!node_arg(sc, 1, &id)) {
        return;
    }
    bool lease = false;
    if (!opt_bool(sc, "lease", &lease)) {
        return;
    }
    uint64_t rid = ++sc->read_id;
    int rc = craft_sim_read_mode(sc->sim, id, rid, lease ? CRAFT_READ_LEASE : CRAFT_READ_INDEX);
    (void)rc; /* the event says what happened */
}

static void cmd_membership(struct script *sc, const char *verb)
{
    craft_id id = 0;
    if (strcmp(verb, "transfer") == 0 && sc->argc < 2) {
        craft_sim_transfer(sc->sim, 0); /* the event says what happened */
        return;
    }
    if (!node_arg(sc, 1, &id)) {
        return;
    }
    craft_index index;
    int rc;
    if (strcmp(verb, "add-server") == 0) {
        bool autop = sc->argc > 2 && strcmp(sc->argv[2], "auto") == 0;
        rc = craft_sim_add_server(sc->sim, id, autop, &index);
    } else if (strcmp(verb, "promote") == 0) {
        rc = craft_sim_promote(sc->sim, id, &index);
    } else if (strcmp(verb, "remove-server") == 0) {
        rc = craft_sim_remove_server(sc->sim, id, &index);
    } else if (strcmp(verb, "demote") == 0) {
        rc = craft_sim_demote(sc->sim, id, &index);
    } else {
        rc = craft_sim_transfer(sc->sim, id);
    }
    (void)rc; /* the event says what happened */
}

static void cmd_disk(struct script *sc, bool save)
{
    craft_id id;
    if (!node_arg(sc, 1, &id)) {
        return;
    }
    int rc;
    if (save) {
        rc = craft_sim_disk_save(sc->sim, id);
        if (rc == 0) {
            printf_(&sc->out, "n%" PRIu64 "'s disk saved\n", id);
        }
    } else {
        const char *how = sc->argc > 2 ? sc->argv[2] : "";
        uint64_t n = 0;
        int kind = strcmp(how, "wipe") == 0       ? CRAFT_SIM_DISK_WIPE
                   : strcmp(how, "rollback") == 0 ? CRAFT_SIM_DISK_ROLLBACK
                   : strncmp(how, "cut=", 4) == 0 && parse_u64(how + 4, &n) ? CRAFT_SIM_DISK_CUT_TAIL
                                                                          : 0;
        if (kind == 0) {
            error_(sc, "disk-lose NODE wipe|cut=N|rollback");
            return;
        }
        bool safe = craft_sim_disk_loss_safe(sc->sim, id, kind, n);
        rc = craft_sim_disk_lose(sc->sim, id, kind, n);
        if (rc == 0) {
            printf_(&sc->out, "n%" PRIu64 " lost %s (%s Raft's fault model)\n", id, how,
                    safe ? "within" : "beyond");
        }
    }
    rc_error(sc, rc);
}

/* "I/T" */
static bool parse_pair(const char *s, uint64_t *a, uint64_t *b)
{
    unsigned long long x, y;
    char tail;
    if (s == NULL || sscanf(s, "%llu/%llu%c", &x, &y, &tail) != 2) {
        return false;
    }
    *a = x;
    *b = y;
    return true;
}

/* inject TYPE from=N to=M term=T [prev=I/T commit=C entries=I/T:data,...] [last=I/T pre=B
 * transfer=B] [granted=B] [rejected=B index=I] [delay=MS]: a message built by hand. */
static void cmd_inject(struct script *sc)
{
    struct craft_message m;
    memset(&m, 0, sizeof(m));
    const char *type = sc->argc > 1 ? sc->argv[1] : "";
    for (int k = 1; k <= CRAFT_MSG_TYPE_MAX; k++) {
        if (strcmp(type, craft_message_type_name(k)) == 0) {
            m.type = (uint8_t)k;
        }
    }
    if (m.type == 0 || m.type == CRAFT_MSG_INSTALL_SNAPSHOT ||
        m.type == CRAFT_MSG_INSTALL_SNAPSHOT_RESULT) {
        error_(sc, "inject TYPE from=N to=M term=T ...: RequestVote, RequestVoteResult, "
                   "AppendEntries, AppendEntriesResult or TimeoutNow");
        return;
    }
    uint64_t delay = 0;
    bool ok = opt_u64(sc, "from", &m.from) && opt_u64(sc, "to", &m.to) &&
              opt_u64(sc, "term", &m.term) && opt_u64(sc, "delay", &delay);
    struct craft_entry entries[64];
    char data[64][32];
    if (ok && m.type == CRAFT_MSG_APPEND_ENTRIES) {
        struct craft_append_entries *ae = &m.u.append_entries;
        const char *prev = opt(sc, "prev");
        if (prev != NULL && !parse_pair(prev, &ae->prev_index, &ae->prev_term)) {
            error_(sc, "prev=%s: I/T expected", prev);
            return;
        }
        ok = opt_u64(sc, "commit", &ae->commit);
        const char *list = opt(sc, "entries");
        char tmp[1024];
        snprintf(tmp, sizeof(tmp), "%s", list != NULL ? list : "");
        size_t n = 0;
        for (char *save = NULL, *t = strtok_r(tmp, ",", &save); ok && t != NULL;
             t = strtok_r(NULL, ",", &save)) {
            char *colon = strchr(t, ':');
            if (colon != NULL) {
                *colon = '\0';
            }
            if (n == 64 || !parse_pair(t, &entries[n].index, &entries[n].term)) {
                error_(sc, "entries=I/T:data,...: at most 64 entries");
                return;
            }
            const char *d = colon != NULL ? colon + 1 : "";
            entries[n].type = strcmp(d, "noop") == 0 ? CRAFT_ENTRY_BARRIER : CRAFT_ENTRY_COMMAND;
            snprintf(data[n], sizeof(data[n]), "%s", d);
            entries[n].data = entries[n].type == CRAFT_ENTRY_COMMAND ? data[n] : NULL;
            entries[n].size = entries[n].type == CRAFT_ENTRY_COMMAND ? strlen(data[n]) : 0;
            n++;
        }
        ae->entries = n ? entries : NULL;
        ae->n_entries = n;
    } else if (ok && m.type == CRAFT_MSG_REQUEST_VOTE) {
        const char *last = opt(sc, "last");
        if (last != NULL &&
            !parse_pair(last, &m.u.request_vote.last_log_index, &m.u.request_vote.last_log_term)) {
            error_(sc, "last=%s: I/T expected", last);
            return;
        }
        ok = opt_bool(sc, "pre", &m.u.request_vote.pre_vote) &&
             opt_bool(sc, "transfer", &m.u.request_vote.transfer);
    } else if (ok && m.type == CRAFT_MSG_REQUEST_VOTE_RESULT) {
        ok = opt_bool(sc, "granted", &m.u.request_vote_result.granted) &&
             opt_bool(sc, "pre", &m.u.request_vote_result.pre_vote);
    } else if (ok && m.type == CRAFT_MSG_APPEND_ENTRIES_RESULT) {
        ok = opt_bool(sc, "rejected", &m.u.append_entries_result.rejected) &&
             opt_u64(sc, "index", &m.u.append_entries_result.index) &&
             opt_u64(sc, "last-index", &m.u.append_entries_result.last_index);
    }
    if (!ok) {
        return;
    }
    int rc = craft_sim_inject(sc->sim, &m, delay);
    if (rc == CRAFT_EINVAL) {
        error_(sc, "inject: from and to are two different servers 1..%u", sc->n);
    } else {
        rc_error(sc, rc);
    }
}

static void cmd_check(struct script *sc)
{
    int rc = craft_sim_check(sc->sim);
    if (rc == 0) {
        puts_(&sc->out, "every invariant holds\n");
    } else if (craft_sim_error(sc->sim) != NULL) {
        printf_(&sc->out, "violation: %s\n", craft_sim_error(sc->sim));
    } else {
        rc_error(sc, rc);
    }
}

/* Runs one command line; its output goes to sc->out. */
static void run_command(struct script *sc, char *line)
{
    sc->argc = 0;
    for (char *save = NULL, *t = strtok_r(line, " \t", &save); t != NULL && sc->argc < MAX_ARGS;
         t = strtok_r(NULL, " \t", &save)) {
        sc->argv[sc->argc++] = t;
    }
    if (sc->argc == 0) {
        return;
    }
    const char *verb = sc->argv[0];
    if (strcmp(verb, "add-nodes") == 0) {
        cmd_add_nodes(sc);
        return;
    }
    if (sc->sim == NULL) {
        error_(sc, "no cluster yet: the transcript starts with add-nodes N");
        return;
    }
    if (craft_sim_error(sc->sim) != NULL && strcmp(verb, "status") != 0 &&
        strcmp(verb, "log") != 0 && strcmp(verb, "durable") != 0 && strcmp(verb, "check") != 0) {
        error_(sc, "the simulator stopped: %s", craft_sim_error(sc->sim));
        return;
    }
    if (strcmp(verb, "status") == 0) {
        cmd_status(sc);
    } else if (strcmp(verb, "log") == 0) {
        cmd_log(sc);
    } else if (strcmp(verb, "durable") == 0) {
        cmd_durable(sc);
    } else if (strcmp(verb, "held") == 0) {
        cmd_held(sc);
    } else if (strcmp(verb, "check") == 0) {
        cmd_check(sc);
        return;
    } else if (strcmp(verb, "campaign") == 0) {
        cmd_node_op(sc, craft_sim_campaign);
    } else if (strcmp(verb, "crash") == 0) {
        cmd_node_op(sc, craft_sim_crash);
    } else if (strcmp(verb, "restart") == 0) {
        cmd_node_op(sc, craft_sim_restart);
    } else if (strcmp(verb, "propose") == 0) {
        cmd_propose(sc);
    } else if (strcmp(verb, "deliver-msgs") == 0) {
        cmd_deliver(sc);
    } else if (strcmp(verb, "stabilize") == 0) {
        cmd_stabilize(sc);
    } else if (strcmp(verb, "drop") == 0) {
        cmd_drop(sc);
    } else if (strcmp(verb, "tick") == 0) {
        cmd_tick(sc);
    } else if (strcmp(verb, "run") == 0) {
        cmd_run(sc);
    } else if (strcmp(verb, "clock") == 0) {
        cmd_clock(sc);
    } else if (strcmp(verb, "network") == 0) {
        cmd_network(sc);
    } else if (strcmp(verb, "partition") == 0) {
        cmd_partition(sc);
    } else if (strcmp(verb, "cut") == 0) {
        craft_id a, b;
        if (node_arg(sc, 1, &a) && node_arg(sc, 2, &b)) {
            craft_sim_cut(sc->sim, a, b);
        }
    } else if (strcmp(verb, "heal") == 0) {
        craft_sim_heal(sc->sim);
    } else if (strcmp(verb, "read") == 0) {
        cmd_read(sc);
    } else if (strcmp(verb, "add-server") == 0 || strcmp(verb, "promote") == 0 ||
               strcmp(verb, "demote") == 0 ||
               strcmp(verb, "remove-server") == 0 || strcmp(verb, "transfer") == 0) {
        cmd_membership(sc, verb);
    } else if (strcmp(verb, "disk-save") == 0) {
        cmd_disk(sc, true);
    } else if (strcmp(verb, "disk-lose") == 0) {
        cmd_disk(sc, false);
    } else if (strcmp(verb, "inject") == 0) {
        cmd_inject(sc);
    } else if (strcmp(verb, "note") == 0) {
        char text[CRAFT_SIM_TEXT_MAX] = "";
        size_t pos = 0;
        for (int i = 1; i < sc->argc && pos < sizeof(text); i++) {
            int k = snprintf(text + pos, sizeof(text) - pos, "%s%s", i > 1 ? " " : "",
                             sc->argv[i]);
            pos += k > 0 ? (size_t)k : 0;
        }
        craft_sim_note(sc->sim, text);
    } else {
        error_(sc, "unknown command '%s'", verb);
        return;
    }
    settle(sc);
}

/* ---- the file ----------------------------------------------------------------------------- */

/* The next line of text (without its newline) into [*line, *line + *len); false at the end. */
static bool next_line(const char *text, size_t len, size_t *pos, const char **line, size_t *n)
{
    if (*pos >= len) {
        return false;
    }
    const char *start = text + *pos;
    const char *nl = memchr(start, '\n', len - *pos);
    *line = start;
    *n = nl != NULL ? (size_t)(nl - start) : len - *pos;
    *pos += *n + (nl != NULL ? 1 : 0);
    if (*n > 0 && start[*n - 1] == '\r') {
        (*n)--;
    }
    return true;
}

static bool blank(const char *s, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        if (s[k] != ' ' && s[k] != '\t') {
            return false;
        }
    }
    return true;
}

int craft_sim_script_run(const char *text, size_t len, struct craft_sim_script_result *r)
{
    memset(r, 0, sizeof(*r));
    struct script sc;
    memset(&sc, 0, sizeof(sc));
    struct buf out = {0}, report = {0}, expected = {0};
    size_t pos = 0, lineno = 0;
    const char *line;
    size_t n;
    bool have = next_line(text, len, &pos, &line, &n);
    if (have) {
        lineno = 1;
    }
    while (have) {
        if (blank(line, n) || line[0] == '#') {
            put(&out, line, n);
            puts_(&out, "\n");
            have = next_line(text, len, &pos, &line, &n);
            lineno++;
            continue;
        }
        /* A command, then "----" and the expected output up to a blank line. */
        size_t cmd_line = lineno;
        char cmd[1024];
        snprintf(cmd, sizeof(cmd), "%.*s", (int)(n < sizeof(cmd) ? n : sizeof(cmd) - 1), line);
        put(&out, line, n);
        puts_(&out, "\n----\n");
        expected.n = 0;
        if (expected.p != NULL) {
            expected.p[0] = '\0';
        }
        bool has_expected = false;
        have = next_line(text, len, &pos, &line, &n);
        lineno++;
        if (have && n == 4 && memcmp(line, "----", 4) == 0) {
            has_expected = true;
            have = next_line(text, len, &pos, &line, &n);
            lineno++;
            while (have && !blank(line, n)) {
                put(&expected, line, n);
                puts_(&expected, "\n");
                have = next_line(text, len, &pos, &line, &n);
                lineno++;
            }
        }
        char work[1024];
        memcpy(work, cmd, sizeof(work));
        sc.out.n = 0;
        if (sc.out.p != NULL) {
            sc.out.p[0] = '\0';
        }
        run_command(&sc, work);
        if (sc.out.n == 0) {
            puts_(&sc.out, "ok\n");
        }
        put(&out, sc.out.p, sc.out.n);
        r->commands++;
        const char *exp = expected.p != NULL ? expected.p : "";
        if (!has_expected || strcmp(exp, sc.out.p) != 0) {
            r->mismatches++;
            printf_(&report, "line %zu: %s\n", cmd_line, cmd);
            puts_(&report, has_expected ? "  expected:\n" : "  expected: (no ---- block)\n");
            for (const char *p = exp; *p != '\0';) {
                const char *e = strchr(p, '\n');
                size_t k = e != NULL ? (size_t)(e - p) : strlen(p);
                puts_(&report, "    ");
                put(&report, p, k);
                puts_(&report, "\n");
                p += k + (e != NULL ? 1 : 0);
            }
            puts_(&report, "  got:\n");
            for (const char *p = sc.out.p; *p != '\0';) {
                const char *e = strchr(p, '\n');
                size_t k = e != NULL ? (size_t)(e - p) : strlen(p);
                puts_(&report, "    ");
                put(&report, p, k);
                puts_(&report, "\n");
                p += k + (e != NULL ? 1 : 0);
            }
        }
    }
    craft_sim_free(sc.sim);
    craft_free(NULL, sc.out.p);
    craft_free(NULL, expected.p);
    bool oom = out.oom || report.oom || sc.out.oom || expected.oom;
    if (out.p == NULL && !oom) {
        puts_(&out, "");
    }
    if (report.p == NULL && !oom) {
        puts_(&report, "");
    }
    if (oom || out.p == NULL || report.p == NULL) {
        craft_free(NULL, out.p);
        craft_free(NULL, report.p);
        return CRAFT_ENOMEM;
    }
    r->output = out.p;
    r->output_len = out.n;
    r->report = report.p;
    return 0;
}

void craft_sim_script_result_free(struct craft_sim_script_result *r)
{
    craft_free(NULL, r->output);
    craft_free(NULL, r->report);
    r->output = r->report = NULL;
}
