/* Authenticated clusters as separate processes (issue 13): three craft-counter servers on
 * 127.0.0.1 with mutual TLS (server ids verified) or a cluster secret, and blocking clients
 * (craft_client_open_secure) with and without the right credentials. A client with them is
 * served, through a leader killed with SIGKILL; one without them (no certificate, another CA,
 * an expired certificate, a server's certificate, another secret, plaintext) is refused during
 * the TLS handshake, and the cluster goes on as if it had never come. Certificates are made at
 * test time (tests/tls/make-certs.sh). */
#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <sys/wait.h>

#include "craft/client.h"
#include "uv_fixture.h"

#define N 3

static pid_t pids[N + 1];
static char addrs[N + 1][64];
static char dirs[N + 1][512];
static char peers[512];
static char certs[512];
static char secret[600];
static const char *mode; /* "tls" or "secret" */

static void kill_all(void)
{
    for (int i = 1; i <= N; i++) {
        if (pids[i] > 0) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
            pids[i] = 0;
        }
    }
}

static bool make_certs(void)
{
    static bool made;
    if (!made) {
        char src[1024], cmd[2048];
        snprintf(src, sizeof src, "%s", __FILE__);
        snprintf(certs, sizeof certs, "%s/certs", harness_tmpdir());
        snprintf(cmd, sizeof cmd, "bash '%s/../../tests/tls/make-certs.sh' '%s' 1 2 3",
                 dirname(src), certs);
        made = system(cmd) == 0;
        snprintf(secret, sizeof secret, "%s/cluster.secret", certs);
        made = made && craft_secret_generate(secret) == 0;
    }
    return made;
}

static pid_t spawn(int i)
{
    int fds[2];
    char id[16], cert[600], key[600], ca[600];
    if (pipe(fds) != 0) {
        return -1;
    }
    snprintf(id, sizeof id, "%d", i);
    snprintf(cert, sizeof cert, "%s/server-%d.pem", certs, i);
    snprintf(key, sizeof key, "%s/server-%d.key", certs, i);
    snprintf(ca, sizeof ca, "%s/ca.pem", certs);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        if (strcmp(mode, "tls") == 0) {
            execl("./craft-counter", "craft-counter", "serve", "--id", id, "--address", addrs[i],
                  "--data", dirs[i], "--peers", peers, "--cluster", "9", "--heartbeat", "30",
                  "--election", "300", "--quiet", "--tls-cert", cert, "--tls-key", key,
                  "--tls-ca", ca, "--verify-id", (char *)NULL);
        } else {
            execl("./craft-counter", "craft-counter", "serve", "--id", id, "--address", addrs[i],
                  "--data", dirs[i], "--peers", peers, "--cluster", "9", "--heartbeat", "30",
                  "--election", "300", "--quiet", "--secret-file", secret, (char *)NULL);
        }
        _exit(127);
    }
    close(fds[1]);
    char buf[256];
    size_t got = 0;
    while (got < sizeof buf - 1) {
        ssize_t k = read(fds[0], buf + got, sizeof buf - 1 - got);
        if (k <= 0) {
            break;
        }
        got += (size_t)k;
        buf[got] = '\0';
        if (strchr(buf, '\n') != NULL) {
            break;
        }
    }
    close(fds[0]);
    if (strncmp(buf, "ready ", 6) != 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return pid;
}

static const char *servers[N];

static void start_cluster(const char *m)
{
    static bool registered;
    const char *tmp = harness_tmpdir();
    mode = m;
    if (!registered) {
        atexit(kill_all);
        registered = true;
    }
    peers[0] = '\0';
    for (int i = 1; i <= N; i++) {
        snprintf(addrs[i], sizeof addrs[i], "127.0.0.1:%d", uf_free_port());
        snprintf(dirs[i], sizeof dirs[i], "%s/%s%d", tmp, m, i);
        char item[96];
        snprintf(item, sizeof item, "%s%d=%s", i > 1 ? "," : "", i, addrs[i]);
        strcat(peers, item);
        servers[i - 1] = addrs[i];
    }
    for (int i = 1; i <= N; i++) {
        pids[i] = spawn(i);
        CHECK(pids[i] > 0);
    }
}

static struct craft_security tls_as(const char *name, const char *ca)
{
    static char cert[8][600], key[8][600], cafile[8][600];
    static int k;
    int j = k++ % 8;
    struct craft_security s;
    memset(&s, 0, sizeof s);
    s.mode = CRAFT_SECURITY_TLS;
    snprintf(cert[j], sizeof cert[j], "%s/%s.pem", certs, name);
    snprintf(key[j], sizeof key[j], "%s/%s.key", certs, name);
    snprintf(cafile[j], sizeof cafile[j], "%s/%s", certs, ca);
    s.cert_file = cert[j];
    s.key_file = key[j];
    s.ca_file = cafile[j];
    s.verify_id = true;
    return s;
}

static int inc(const struct craft_security *s, int64_t *value, char *why, size_t why_size)
{
    struct craft_client *c;
    unsigned char cmd[9] = {'i', 1, 0, 0, 0, 0, 0, 0, 0};
    void *result = NULL;
    size_t size = 0;
    int rc = craft_client_open_secure(servers, N, 9, 3000, s, &c, why, why_size);
    if (rc != 0) {
        return rc;
    }
    rc = craft_client_propose(c, cmd, sizeof cmd, &result, &size, NULL);
    if (rc == 0 && size == 8 && value != NULL) {
        *value = (int64_t)uf_get64(result);
    }
    snprintf(why, why_size, "%s", craft_client_error(c));
    craft_free(NULL, result);
    craft_client_close(c);
    return rc;
}

/* A client without the cluster's credentials gets nothing through; then one with them
 * finds every earlier increment and nothing else. */
static void strangers_refused(const struct craft_security *good, const struct craft_security *bad,
                              size_t n_bad, const char *const *reasons)
{
    char why[256];
    int64_t before = 0, after = 0;
    CHECK_OK(inc(good, &before, why, sizeof why));
    for (size_t i = 0; i < n_bad; i++) {
        int rc = inc(&bad[i], NULL, why, sizeof why);
        if (rc == 0) {
            FAIL("stranger %zu was served", i);
        }
        if (strstr(why, reasons[i]) == NULL) {
            FAIL("stranger %zu: \"%s\" does not say \"%s\"", i, why, reasons[i]);
        }
        if (getenv("CRAFT_TEST_VERBOSE") != NULL) {
            fprintf(stderr, "stranger %zu refused: %s\n", i, why);
        }
    }
    CHECK_OK(inc(good, &after, why, sizeof why));
    CHECK_EQ(after, before + 1);
}

/* Writes with the right credentials survive the leader's SIGKILL. */
static void survive_kill(const struct craft_security *good)
{
    struct craft_client *c;
    unsigned char cmd[9] = {'i', 1, 0, 0, 0, 0, 0, 0, 0};
    char err[256];
    long acked = 0, unknown = 0;
    CHECK_OK(craft_client_open_secure(servers, N, 9, 8000, good, &c, err, sizeof err));
    int64_t start = 0;
    for (int k = 0; k < 100; k++) {
        if (k == 50) {
            int victim = 0;
            for (int i = 1; i <= N; i++) {
                victim = strcmp(addrs[i], craft_client_server(c)) == 0 ? i : victim;
            }
            CHECK(victim > 0);
            kill(pids[victim], SIGKILL);
            waitpid(pids[victim], NULL, 0);
            pids[victim] = spawn(victim);
            CHECK(pids[victim] > 0);
        }
        void *result = NULL;
        size_t size = 0;
        int rc = craft_client_propose(c, cmd, sizeof cmd, &result, &size, NULL);
        if (rc == 0) {
            if (acked == 0 && size == 8) {
                start = (int64_t)uf_get64(result) - 1;
            }
            acked++;
        } else if (rc == CRAFT_ENOCONN || rc == CRAFT_ETIMEDOUT) {
            unknown++;
        } else {
            FAIL("propose %d: %s (%s)", k, craft_err_name(rc), craft_client_error(c));
        }
        craft_free(NULL, result);
    }
    unsigned char get = 'g';
    void *result = NULL;
    size_t size = 0;
    CHECK_OK(craft_client_propose(c, &get, 1, &result, &size, NULL));
    CHECK_EQ(size, 8);
    int64_t value = (int64_t)uf_get64(result) - start;
    craft_free(NULL, result);
    CHECK(value >= acked && value <= acked + unknown);
    CHECK(acked >= 90);
    craft_client_close(c);
}

TEST(tls_cluster_serves_its_clients_only)
{
    if (access("./craft-counter", X_OK) != 0) {
        SKIP("./craft-counter is not built next to the test");
    }
    if (!make_certs()) {
        SKIP("openssl could not make the test certificates");
    }
    start_cluster("tls");
    if (harness_failed()) {
        return;
    }
    struct craft_security good = tls_as("client", "ca.pem");
    struct craft_security bad[5];
    const char *reasons[5];
    memset(&bad[0], 0, sizeof bad[0]); /* plaintext */
    reasons[0] = "closed the connection during the handshake";
    bad[1] = tls_as("wrong-ca-server-1", "ca.pem");
    reasons[1] = "unknown ca";
    bad[2] = tls_as("expired-server-2", "ca.pem");
    reasons[2] = "certificate expired";
    bad[3] = tls_as("client", "other-ca.pem"); /* does not trust the servers */
    reasons[3] = "certificate verify failed";
    bad[4] = tls_as("new-client", "ca.pem"); /* from a CA the servers do not trust */
    reasons[4] = "unknown ca";
    strangers_refused(&good, bad, 5, reasons);
    survive_kill(&good);
    kill_all();
}

TEST(secret_cluster_serves_its_clients_only)
{
    if (access("./craft-counter", X_OK) != 0) {
        SKIP("./craft-counter is not built next to the test");
    }
    if (!make_certs()) {
        SKIP("openssl could not make the test certificates");
    }
    start_cluster("secret");
    if (harness_failed()) {
        return;
    }
    char other[700];
    snprintf(other, sizeof other, "%s/other.secret", certs);
    CHECK_OK(craft_secret_generate(other));
    struct craft_security good, bad[3];
    const char *reasons[3];
    memset(&good, 0, sizeof good);
    good.mode = CRAFT_SECURITY_SECRET;
    good.secret_file = secret;
    bad[0] = good;
    bad[0].secret_file = other;
    reasons[0] = "handshake failure";
    memset(&bad[1], 0, sizeof bad[1]); /* plaintext */
    reasons[1] = "closed the connection during the handshake";
    bad[2] = tls_as("client", "ca.pem");
    reasons[2] = "handshake failure";
    strangers_refused(&good, bad, 3, reasons);
    survive_kill(&good);
    kill_all();
}

HARNESS_MAIN()
