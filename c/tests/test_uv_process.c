/* The runtime as separate processes: three (and five) craft-counter servers on 127.0.0.1, a blocking
 * client writing through them, the leader killed with SIGKILL (no chance to flush anything) and
 * restarted. Every acknowledged increment must be in the final value; an increment whose outcome
 * the client could not learn may or may not be. */
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>

#include "craft/client.h"
#include "uv_fixture.h"

#define MAXN 5

struct proc {
    pid_t pid;
    char address[64];
    char dir[512];
};

static struct proc procs[MAXN + 1];
static int N;
static char peers[1024];

/* A failed check returns early: never leave servers behind. */
static void kill_all(void)
{
    for (int i = 1; i <= MAXN; i++) {
        if (procs[i].pid > 0) {
            kill(procs[i].pid, SIGKILL);
            waitpid(procs[i].pid, NULL, 0);
            procs[i].pid = 0;
        }
    }
}

static pid_t spawn(int i)
{
    int fds[2];
    if (pipe(fds) != 0) {
        return -1;
    }
    char id[16];
    snprintf(id, sizeof id, "%d", i);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl("./craft-counter", "craft-counter", "serve", "--id", id, "--address",
              procs[i].address, "--data", procs[i].dir, "--peers", peers, "--cluster", "9",
              "--heartbeat", "30", "--election", "300", "--quiet", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    /* Wait for "ready". */
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

static void put64(unsigned char *p, uint64_t v)
{
    for (int k = 0; k < 8; k++) {
        p[k] = (unsigned char)(v >> (8 * k));
    }
}

static int which(const char *address)
{
    for (int i = 1; i <= N; i++) {
        if (strcmp(procs[i].address, address) == 0) {
            return i;
        }
    }
    return 0;
}

static bool registered;

static void run(int n)
{
    N = n;
    const char *tmp = harness_tmpdir();
    if (!registered) {
        atexit(kill_all);
        registered = true;
    }
    peers[0] = '\0';
    for (int i = 1; i <= N; i++) {
        snprintf(procs[i].address, sizeof procs[i].address, "127.0.0.1:%d", uf_free_port());
        snprintf(procs[i].dir, sizeof procs[i].dir, "%s/p%d", tmp, i);
        char item[96];
        snprintf(item, sizeof item, "%s%d=%s", i > 1 ? "," : "", i, procs[i].address);
        strcat(peers, item);
    }
    for (int i = 1; i <= N; i++) {
        procs[i].pid = spawn(i);
        CHECK(procs[i].pid > 0);
    }
    const char *servers[MAXN];
    for (int i = 0; i < N; i++) {
        servers[i] = procs[i + 1].address;
    }
    struct craft_client *c;
    CHECK_OK(craft_client_open(servers, N, 9, 8000, &c));
    unsigned char inc[9] = {'i'};
    put64(inc + 1, 1);
    long acked = 0, unknown = 0;
    int killed = 0;
    for (int k = 0; k < 300; k++) {
        if (k == 150) {
            killed = which(craft_client_server(c));
            CHECK(killed > 0);
            kill(procs[killed].pid, SIGKILL);
            waitpid(procs[killed].pid, NULL, 0);
        }
        if (k == 225) {
            procs[killed].pid = spawn(killed);
            CHECK(procs[killed].pid > 0);
        }
        int rc = craft_client_propose(c, inc, sizeof inc, NULL, NULL, NULL);
        if (rc == 0) {
            acked++;
        } else if (rc == CRAFT_ENOCONN || rc == CRAFT_ETIMEDOUT) {
            unknown++;
        } else {
            FAIL("propose %d: %s", k, craft_err_name(rc));
        }
    }
    unsigned char get = 'g';
    void *result = NULL;
    size_t size = 0;
    CHECK_OK(craft_client_propose(c, &get, 1, &result, &size, NULL));
    CHECK_EQ(size, 8);
    int64_t value = (int64_t)uf_get64(result);
    craft_free(NULL, result);
    CHECK(value >= acked);
    CHECK(value <= acked + unknown);
    CHECK(acked >= 250);
    craft_client_close(c);
    for (int i = 1; i <= N; i++) {
        kill(procs[i].pid, SIGTERM);
        waitpid(procs[i].pid, NULL, 0);
        procs[i].pid = 0;
    }
}

TEST(three_processes_leader_killed_no_acknowledged_write_lost)
{
    if (access("./craft-counter", X_OK) != 0) {
        SKIP("./craft-counter is not built next to the test");
    }
    run(3);
}

TEST(five_processes_leader_killed_no_acknowledged_write_lost)
{
    if (access("./craft-counter", X_OK) != 0) {
        SKIP("./craft-counter is not built next to the test");
    }
    run(5);
}

HARNESS_MAIN()
