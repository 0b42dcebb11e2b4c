/* Operators' features of the runtime (issue 15), on real clusters: the status, membership,
 * transfer and snapshot requests of the client protocol (craft/client.h, as the `craft`
 * command line sends them), the extended status, follower lag events, and GET /metrics over
 * HTTP, with requests a monitoring system sends and requests nobody should. The blocking
 * client runs on a thread of its own while the loop runs here. */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/time.h>

#include "craft/client.h"
#include "craft/wire.h"
#include "uv_fixture.h"

/* ---- a client thread ------------------------------------------------------------------------ */

struct job {
    void (*fn)(struct job *);
    struct uf *f;
    atomic_bool finished;
    int failures;
    char why[512];
};

static void *job_main(void *p)
{
    struct job *j = p;
    j->fn(j);
    atomic_store(&j->finished, true);
    return NULL;
}

static bool job_done(struct uf *f, void *arg)
{
    (void)f;
    return atomic_load(&((struct job *)arg)->finished);
}

/* Runs fn on a thread while the loop runs, at most ms. */
static void run_job(struct uf *f, struct job *j, void (*fn)(struct job *), unsigned ms)
{
    memset(j, 0, sizeof *j);
    j->fn = fn;
    j->f = f;
    pthread_t t;
    pthread_create(&t, NULL, job_main, j);
    bool finished = uf_run_until(f, job_done, j, ms);
    if (!finished) {
        fprintf(stderr, "the client thread did not finish in %u ms\n", ms);
        abort(); /* a thread blocked in a client call cannot be joined */
    }
    pthread_join(t, NULL);
    if (j->failures > 0) {
        fprintf(stderr, "client thread: %s\n", j->why);
    }
}

#define JCHECK(j, cond)                                                                          \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            (j)->failures++;                                                                   \
            snprintf((j)->why, sizeof (j)->why, "line %d: %s", __LINE__, #cond);                \
            return;                                                                            \
        }                                                                                      \
    } while (0)

static struct craft_client *open_one(const char *address)
{
    struct craft_client *c = NULL;
    const char *servers[1] = {address};
    if (craft_client_open(servers, 1, 7, 8000, &c) != 0) {
        return NULL;
    }
    return c;
}

static bool has_key(const void *map, size_t n, const char *key)
{
    /* A key is a fixstr: its length byte, then its bytes. */
    char pattern[64];
    size_t k = strlen(key);
    pattern[0] = (char)(0xa0 | k);
    memcpy(pattern + 1, key, k);
    return memmem(map, n, pattern, k + 1) != NULL;
}

/* ---- status, membership, transfer and snapshots over the network ---------------------------- */

static void admin_job(struct job *j)
{
    struct uf *f = j->f;
    /* Status: every node answers for itself, a map with the keys of docs/wire.md. */
    for (int i = 1; i <= 3; i++) {
        struct craft_client *c = open_one(f->node[i].address);
        JCHECK(j, c != NULL);
        void *p = NULL;
        size_t n = 0;
        int rc = craft_client_status(c, &p, &n);
        craft_client_close(c);
        JCHECK(j, rc == 0 && n > 0);
        JCHECK(j, ((unsigned char *)p)[0] == 0xde); /* map16 */
        static const char *const keys[] = {"id", "role", "term", "leader", "commit", "applied",
                                           "last_index", "snapshot_index", "voters", "learners",
                                           "peers", "has_quorum", "conf_committed", "uptime_ms",
                                           "fsync_p99_us", "lag", "inflight", "last_contact_ms"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            JCHECK(j, has_key(p, n, keys[k]));
        }
        craft_free(NULL, p);
    }
    /* Membership through any node: the client follows the leader hint. */
    const char *all[3] = {f->node[1].address, f->node[2].address, f->node[3].address};
    struct craft_client *c = NULL;
    JCHECK(j, craft_client_open(all, 3, 7, 8000, &c) == 0);
    craft_index index = 0;
    JCHECK(j, craft_client_change(c, CRAFT_WIRE_ADD, 4, f->node[4].address, false, &index) == 0);
    JCHECK(j, index > 0);
    JCHECK(j, craft_client_change(c, CRAFT_WIRE_ADD, 4, f->node[4].address, false, &index) ==
                  CRAFT_EEXISTS);
    /* A learner is promoted once caught up (CRAFT_ESTATE until then). */
    int rc = CRAFT_ESTATE;
    for (int k = 0; k < 100 && rc == CRAFT_ESTATE; k++) {
        rc = craft_client_change(c, CRAFT_WIRE_PROMOTE, 4, NULL, false, &index);
        if (rc == CRAFT_ESTATE) {
            usleep(50 * 1000);
        }
    }
    JCHECK(j, rc == 0);
    JCHECK(j, craft_client_change(c, CRAFT_WIRE_DEMOTE, 4, NULL, false, &index) == 0);
    /* Refusals say why. */
    JCHECK(j, craft_client_change(c, CRAFT_WIRE_DEMOTE, 4, NULL, false, &index) == CRAFT_EINVAL);
    JCHECK(j, craft_client_change(c, CRAFT_WIRE_REMOVE, 9, NULL, false, &index) ==
                  CRAFT_ENOTFOUND);
    JCHECK(j, craft_client_change(c, CRAFT_WIRE_REMOVE, 4, NULL, false, &index) == 0);
    JCHECK(j, craft_client_change(c, CRAFT_WIRE_TRANSFER, 2, NULL, false, &index) == 0);
    JCHECK(j, craft_client_change(c, CRAFT_WIRE_ADD, 0, "x:1", false, &index) == CRAFT_EINVAL);
    craft_client_close(c);
    /* A snapshot now, on node 3, answered once stored; again: one at least as recent (the
     * same when nothing was applied since; the new leader's no-op may have been). */
    c = open_one(f->node[3].address);
    JCHECK(j, c != NULL);
    craft_index snap = 0, again = 0;
    JCHECK(j, craft_client_snapshot(c, &snap) == 0 && snap > 0);
    JCHECK(j, craft_client_snapshot(c, &again) == 0 && again >= snap);
    char *text = NULL;
    JCHECK(j, craft_client_metrics(c, &text, NULL) == 0);
    JCHECK(j, strstr(text, "\ncraft_snapshots_taken_total ") != NULL);
    JCHECK(j, strstr(text, "\ncraft_snapshots_taken_total 0\n") == NULL);
    craft_free(NULL, text);
    craft_client_close(c);
}

TEST(status_membership_transfer_and_snapshots_over_the_network)
{
    struct uf f;
    uf_init(&f, 3);
    f.node[4].join = true;
    CHECK_OK(uf_start(&f));
    CHECK_OK(uf_open(&f, 4));
    CHECK(uf_run_until(&f, uf_has_leader, NULL, 5000));
    for (int k = 0; k < 20; k++) {
        CHECK_OK(uf_propose(&f, 1, 1));
    }
    CHECK(uf_wait_done(&f, 20, 8000));
    struct job j;
    run_job(&f, &j, admin_job, 60000);
    CHECK_EQ(j.failures, 0);
    /* Node 2 leads now; 4 is gone from the configuration; 3 took one snapshot. */
    CHECK_EQ(uf_leader(&f), 2);
    struct craft_uv_status s;
    CHECK_OK(craft_uv_status(f.node[2].n, &s));
    CHECK_EQ(s.voters, 3);
    CHECK_EQ(s.learners, 0);
    CHECK(s.conf_committed);
    CHECK(s.has_quorum);
    CHECK_OK(craft_uv_status(f.node[3].n, &s));
    CHECK(s.snapshot_index > 0 && s.snapshot_size == 8); /* the counter: 8 bytes */
    CHECK(f.node[3].snapshots >= 1);
    uf_close(&f);
}

/* ---- the leader's view of its followers, and lag events ----------------------------------- */

static bool lagging_seen(struct uf *f, void *arg)
{
    int leader = *(int *)arg;
    return f->node[leader].lagging > 0;
}

static bool caught_up_seen(struct uf *f, void *arg)
{
    int leader = *(int *)arg;
    return f->node[leader].caught_up > 0;
}

TEST(follower_status_and_lag_events)
{
    struct uf f;
    uf_init(&f, 3);
    f.base.lag_threshold = 10;
    CHECK_OK(uf_start(&f));
    CHECK(uf_run_until(&f, uf_has_leader, NULL, 5000));
    int leader = uf_leader(&f);
    int slow = leader == 3 ? 2 : 3;
    uf_run_for(&f, 300);
    struct craft_uv_status s;
    CHECK_OK(craft_uv_status(f.node[leader].n, &s));
    CHECK(s.has_quorum);
    CHECK_EQ(s.n_peers, 3);
    for (unsigned i = 0; i < s.n_peers; i++) {
        const struct craft_uv_peer_status *p = &s.peers[i];
        if (p->id == (craft_id)leader) {
            CHECK_EQ(p->state, CRAFT_UV_PEER_SELF);
            continue;
        }
        CHECK_EQ(p->state, CRAFT_UV_PEER_REPLICATE);
        CHECK_EQ(p->lag, 0);
        CHECK_EQ(p->next, s.last_index + 1);
        CHECK(p->last_contact_ms >= 0 && p->last_contact_ms < 1000);
    }
    /* Cut the leader off from one follower: it falls behind, and the event says so. */
    CHECK_OK(craft_uv_set_faults(f.node[leader].n, (craft_id)slow, 0, 0, 0, true));
    uf_run_for(&f, 100); /* faults are applied by the loop, after this returns */
    for (int k = 0; k < 30; k++) {
        CHECK_OK(uf_propose(&f, leader, 1));
    }
    CHECK(uf_wait_done(&f, 30, 8000));
    CHECK(uf_run_until(&f, lagging_seen, &leader, 3000));
    CHECK_EQ(f.node[leader].lagging_id, (craft_id)slow);
    CHECK_OK(craft_uv_status(f.node[leader].n, &s));
    for (unsigned i = 0; i < s.n_peers; i++) {
        if (s.peers[i].id == (craft_id)slow) {
            CHECK(s.peers[i].lag >= 30);
        }
    }
    /* A follower's view: it heard from the leader lately. */
    int other = 6 - leader - slow;
    CHECK_OK(craft_uv_status(f.node[other].n, &s));
    CHECK(s.has_quorum);
    CHECK(s.leader_contact_ms >= 0 && s.leader_contact_ms < 1000);
    CHECK_OK(craft_uv_set_faults(f.node[leader].n, (craft_id)slow, 0, 0, 0, false));
    CHECK(uf_run_until(&f, caught_up_seen, &leader, 5000));
    CHECK_EQ(f.node[leader].lagging, 1);
    uf_close(&f);
}

/* ---- GET /metrics --------------------------------------------------------------------------- */

static int dial(const char *address)
{
    char host[CRAFT_ADDRESS_MAX];
    snprintf(host, sizeof host, "%s", address);
    char *colon = strrchr(host, ':');
    *colon = '\0';
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)atoi(colon + 1));
    inet_pton(AF_INET, host, &a.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {15, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends req (len bytes) and reads the whole answer (the server closes) into out. */
static size_t http(const char *address, const char *req, size_t len, char *out, size_t cap)
{
    int fd = dial(address);
    if (fd < 0) {
        return 0;
    }
    if (len > 0 && send(fd, req, len, MSG_NOSIGNAL) != (ssize_t)len) {
        close(fd);
        return 0;
    }
    size_t got = 0;
    ssize_t k;
    while (got + 1 < cap && (k = recv(fd, out + got, cap - 1 - got, 0)) > 0) {
        got += (size_t)k;
    }
    out[got] = '\0';
    close(fd);
    return got;
}

static char metrics_address[CRAFT_ADDRESS_MAX];
static char answer[1 << 20];

/* The value of the sample `name` (with its labels, if any) in Prometheus text; -1 if absent. */
static double sample(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, name, n) == 0 && p[n] == ' ') {
            return strtod(p + n + 1, NULL);
        }
        p = strchr(p, '\n');
        p = p != NULL ? p + 1 : NULL;
    }
    return -1;
}

static void http_job(struct job *j)
{
    static const char get[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    size_t n = http(metrics_address, get, sizeof get - 1, answer, sizeof answer);
    JCHECK(j, n > 0 && strncmp(answer, "HTTP/1.1 200 OK\r\n", 17) == 0);
    JCHECK(j, strstr(answer, "Content-Type: text/plain; version=0.0.4") != NULL);
    const char *body = strstr(answer, "\r\n\r\n");
    JCHECK(j, body != NULL);
    body += 4;
    /* Every line is a comment or "name{labels} value"; every family has HELP and TYPE. */
    unsigned samples = 0;
    for (const char *p = body; *p != '\0';) {
        const char *eol = strchr(p, '\n');
        JCHECK(j, eol != NULL);
        if (*p != '#') {
            const char *sp = memchr(p, ' ', (size_t)(eol - p));
            JCHECK(j, sp != NULL);
            char *end;
            strtod(sp + 1, &end);
            JCHECK(j, end == eol);
            samples++;
        }
        p = eol + 1;
    }
    JCHECK(j, samples > 50);
    JCHECK(j, sample(body, "craft_is_leader") == 1);
    JCHECK(j, sample(body, "craft_proposals_total") >= 10);
    JCHECK(j, sample(body, "craft_fsync_seconds_count") > 0);
    JCHECK(j, sample(body, "craft_commit_latency_seconds_count") > 0);
    JCHECK(j, sample(body, "craft_apply_batch_seconds_count") > 0);
    JCHECK(j, sample(body, "craft_elections_won_total") == 1);
    JCHECK(j, strstr(body, "craft_messages_sent_total{peer=\"2\",type=\"AppendEntries\"}") != NULL);
    JCHECK(j, strstr(body, "# TYPE craft_fsync_seconds histogram") != NULL);
    JCHECK(j, strstr(body, "craft_fsync_seconds_bucket{le=\"+Inf\"}") != NULL);
    /* OpenMetrics when asked for. */
    static const char om[] = "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; "
                             "version=1.0.0\r\n\r\n";
    n = http(metrics_address, om, sizeof om - 1, answer, sizeof answer);
    JCHECK(j, strstr(answer, "application/openmetrics-text") != NULL);
    JCHECK(j, n > 6 && strcmp(answer + n - 6, "# EOF\n") == 0);
    JCHECK(j, strstr(answer, "# TYPE craft_proposals counter") != NULL);
    /* HEAD: the headers alone. */
    static const char head[] = "HEAD /metrics HTTP/1.0\r\n\r\n";
    n = http(metrics_address, head, sizeof head - 1, answer, sizeof answer);
    JCHECK(j, strncmp(answer, "HTTP/1.1 200", 12) == 0 && strstr(answer, "\r\n\r\n")[4] == '\0');
    /* What is not a scrape. */
    static const struct {
        const char *req;
        size_t len;
        const char *status;
    } bad[] = {
        {"POST /metrics HTTP/1.1\r\n\r\n", 0, "HTTP/1.1 405"},
        {"GET /secrets HTTP/1.1\r\n\r\n", 0, "HTTP/1.1 404"},
        {"GET /metricsX HTTP/1.1\r\n\r\n", 0, "HTTP/1.1 404"},
        {"GET /metrics\r\n\r\n", 0, "HTTP/1.1 400"},
        /* A TLS ClientHello's first bytes, NULs included. */
        {"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\n", 13, "HTTP/1.1 400"},
        {"GET /metrics SPDY/3\r\n\r\n", 0, "HTTP/1.1 400"},
        {"\r\n\r\n", 0, "HTTP/1.1 400"},
        {"GET  HTTP/1.1\r\n\r\n", 0, "HTTP/1.1 400"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        size_t len = bad[k].len != 0 ? bad[k].len : strlen(bad[k].req);
        http(metrics_address, bad[k].req, len, answer, sizeof answer);
        if (strncmp(answer, bad[k].status, strlen(bad[k].status)) != 0) {
            snprintf(j->why, sizeof j->why, "request %zu: got %.40s", k, answer);
            j->failures++;
            return;
        }
    }
    /* Headers that never end: 431 once the request is too large. */
    static char big[20000];
    memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
    memset(big + 26, 'a', sizeof big - 26);
    http(metrics_address, big, sizeof big, answer, sizeof answer);
    JCHECK(j, strncmp(answer, "HTTP/1.1 431", 12) == 0);
    /* A client that sends half a request and then nothing is answered 408 and closed (after
     * the 10 s the server gives a whole exchange). */
    static const char half[] = "GET /metr";
    http(metrics_address, half, sizeof half - 1, answer, sizeof answer);
    JCHECK(j, strncmp(answer, "HTTP/1.1 408", 12) == 0);
    /* Idle clients holding every slot do not keep a scrape out: the oldest make room. */
    int idle[24];
    for (int k = 0; k < 24; k++) {
        idle[k] = dial(metrics_address);
        JCHECK(j, idle[k] >= 0);
    }
    usleep(100 * 1000);
    n = http(metrics_address, get, sizeof get - 1, answer, sizeof answer);
    JCHECK(j, strncmp(answer, "HTTP/1.1 200 OK", 15) == 0);
    for (int k = 0; k < 24; k++) {
        close(idle[k]);
    }
}

TEST(metrics_over_http)
{
    struct uf f;
    uf_init(&f, 3);
    f.base.metrics_address = "127.0.0.1:0";
    CHECK_OK(uf_start(&f));
    CHECK(uf_run_until(&f, uf_has_leader, NULL, 5000));
    int leader = uf_leader(&f);
    for (int k = 0; k < 10; k++) {
        CHECK_OK(uf_propose(&f, leader, 1));
    }
    CHECK(uf_wait_done(&f, 10, 8000));
    uf_run_for(&f, 200);
    struct craft_uv_status s;
    CHECK_OK(craft_uv_status(f.node[leader].n, &s));
    CHECK(strncmp(s.metrics_address, "127.0.0.1:", 10) == 0);
    snprintf(metrics_address, sizeof metrics_address, "%s", s.metrics_address);
    struct job j;
    run_job(&f, &j, http_job, 60000);
    CHECK_EQ(j.failures, 0);
    /* The same text from any thread, without HTTP. */
    char *text = NULL;
    size_t len = 0;
    CHECK_OK(craft_uv_metrics(f.node[leader].n, false, &text, &len));
    CHECK(len == strlen(text) && strstr(text, "craft_term ") != NULL);
    craft_free(NULL, text);
    /* A metrics address in use: the node does not start, and says why. */
    struct craft_uv_config c = f.base;
    c.id = 5;
    c.address = f.node[5].address;
    c.data_dir = f.node[5].dir;
    struct craft_configuration alone;
    craft_configuration_init(&alone);
    craft_configuration_add(&alone, NULL, 5, f.node[5].address, CRAFT_VOTER);
    c.bootstrap = &alone;
    c.metrics_address = metrics_address;
    c.fsm.apply = uf_apply;
    c.fsm.data = &f.node[5];
    struct craft_uv_node *extra = NULL;
    int rc = craft_uv_node_new(&f.loop, &c, &extra);
    if (rc != CRAFT_EADDRINUSE) {
        fprintf(stderr, "%s: %s\n", craft_err_name(rc), craft_uv_last_error());
    }
    CHECK_EQ(rc, CRAFT_EADDRINUSE);
    CHECK(strstr(craft_uv_last_error(), "metrics_address") != NULL);
    craft_configuration_close(&alone, NULL);
    uf_close(&f);
}

HARNESS_MAIN()
