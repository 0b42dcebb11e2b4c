/* craft-counter: a replicated counter, the smallest real service on craft's C runtime.
 *
 *   craft-counter serve --id 1 --address 127.0.0.1:7001 --data /tmp/c1 \
 *                       --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003
 *   craft-counter serve --id 4 --address 127.0.0.1:7004 --data /tmp/c4 --join
 *   craft-counter inc --servers 127.0.0.1:7001,127.0.0.1:7002 [--by 5] [--count 100]
 *   craft-counter get --servers 127.0.0.1:7001
 *
 * The state machine holds one 64-bit counter. Commands: 'i' + 8 bytes (add; returns the new
 * value) and 'g' (returns the value; it goes through the log, so it is linearizable).
 * Options for serve: --cluster N (default 1), --heartbeat MS, --election MS,
 * --snapshot-entries N, --nosync, --quiet. Ctrl-C / SIGTERM stop it gracefully.
 * Security, for serve and the clients alike (docs/security.md; the default is plaintext):
 *   --secret-file FILE                     a cluster secret (make one: craft-counter keygen FILE)
 *   --tls-cert F --tls-key F --tls-ca F    mutual TLS; add --verify-id to require that a
 *                                          server's certificate names its id */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "craft.h"
#include "craft/client.h"
#include "craft/uv.h"

struct counter {
    int64_t value;
    uint64_t applied;
};

static void put64(unsigned char *p, uint64_t v)
{
    for (int k = 0; k < 8; k++) {
        p[k] = (unsigned char)(v >> (8 * k));
    }
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int k = 0; k < 8; k++) {
        v |= (uint64_t)p[k] << (8 * k);
    }
    return v;
}

static int fsm_apply(void *data, struct craft_uv_apply *cmds, size_t n)
{
    struct counter *c = data;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = cmds[i].data;
        if (cmds[i].size == 9 && p[0] == 'i') {
            c->value += (int64_t)get64(p + 1);
        } else if (!(cmds[i].size == 1 && p[0] == 'g')) {
            /* Deterministic failure: every replica refuses it the same way. */
            static const char msg[] = "unknown command";
            cmds[i].error = 1;
            cmds[i].result = craft_malloc(NULL, sizeof msg - 1);
            if (cmds[i].result != NULL) {
                memcpy(cmds[i].result, msg, sizeof msg - 1);
                cmds[i].result_size = sizeof msg - 1;
            }
            continue;
        }
        c->applied = cmds[i].index;
        cmds[i].result = craft_malloc(NULL, 8);
        if (cmds[i].result == NULL) {
            return CRAFT_ENOMEM;
        }
        put64(cmds[i].result, (uint64_t)c->value);
        cmds[i].result_size = 8;
    }
    return 0;
}

static int fsm_snapshot(void *data, craft_uv_write_fn write, void *ctx)
{
    struct counter *c = data;
    unsigned char buf[16];
    put64(buf, (uint64_t)c->value);
    put64(buf + 8, c->applied);
    return write(ctx, buf, sizeof buf);
}

static int fsm_restore(void *data, craft_uv_read_fn read, void *ctx)
{
    struct counter *c = data;
    unsigned char buf[16];
    size_t got = 0;
    while (got < sizeof buf) {
        size_t k = 0;
        int rc = read(ctx, buf + got, sizeof buf - got, &k);
        if (rc != 0) {
            return rc;
        }
        if (k == 0) {
            return CRAFT_ECORRUPT;
        }
        got += k;
    }
    c->value = (int64_t)get64(buf);
    c->applied = get64(buf + 8);
    return 0;
}

static const char *arg(int argc, char **argv, const char *name)
{
    for (int i = 2; i < argc - 1; i++) {
        if (strcmp(argv[i], name) == 0) {
            return argv[i + 1];
        }
    }
    return NULL;
}

static bool flag(int argc, char **argv, const char *name)
{
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], name) == 0) {
            return true;
        }
    }
    return false;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: craft-counter serve --id N --address HOST:PORT --data DIR "
            "(--peers ID=HOST:PORT,... | --join) [--cluster N] [--nosync] [--quiet]\n"
            "       craft-counter inc|get --servers HOST:PORT,... [--by N] [--count N]\n"
            "       craft-counter keygen FILE\n"
            "security (serve, inc, get): [--secret-file FILE | --tls-cert FILE --tls-key FILE "
            "--tls-ca FILE [--verify-id]]\n");
    return 2;
}

/* The security options, shared by the server and the clients. */
static void security_from_args(int argc, char **argv, struct craft_security *s)
{
    memset(s, 0, sizeof *s);
    if (arg(argc, argv, "--secret-file") != NULL) {
        s->mode = CRAFT_SECURITY_SECRET;
        s->secret_file = arg(argc, argv, "--secret-file");
    } else if (arg(argc, argv, "--tls-cert") != NULL) {
        s->mode = CRAFT_SECURITY_TLS;
        s->cert_file = arg(argc, argv, "--tls-cert");
        s->key_file = arg(argc, argv, "--tls-key");
        s->ca_file = arg(argc, argv, "--tls-ca");
        s->verify_id = flag(argc, argv, "--verify-id");
    }
}

static uv_loop_t *g_loop;
static struct craft_uv_node *g_node;
static uv_signal_t g_sigint, g_sigterm;
static bool g_quiet;

static void on_log(void *data, int level, const char *line)
{
    (void)data;
    if (!g_quiet || level >= CRAFT_UV_WARN) {
        fprintf(stderr, "%s\n", line);
    }
}

static void stopped(void *data)
{
    (void)data;
    uv_close((uv_handle_t *)&g_sigint, NULL);
    uv_close((uv_handle_t *)&g_sigterm, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
    if (g_node != NULL) {
        struct craft_uv_node *n = g_node;
        g_node = NULL;
        craft_uv_node_stop(n, stopped, NULL);
    }
}

static int parse_peers(const char *spec, struct craft_configuration *conf)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *tok = strtok(buf, ","); tok != NULL; tok = strtok(NULL, ",")) {
        char *eq = strchr(tok, '=');
        if (eq == NULL) {
            return CRAFT_EINVAL;
        }
        *eq = '\0';
        int rc = craft_configuration_add(conf, NULL, strtoull(tok, NULL, 10), eq + 1, CRAFT_VOTER);
        if (rc != 0) {
            return rc;
        }
    }
    return conf->n > 0 ? 0 : CRAFT_EINVAL;
}

static int serve(int argc, char **argv)
{
    const char *id = arg(argc, argv, "--id"), *address = arg(argc, argv, "--address");
    const char *data = arg(argc, argv, "--data"), *peers = arg(argc, argv, "--peers");
    if (id == NULL || address == NULL || data == NULL || (peers == NULL && !flag(argc, argv, "--join"))) {
        return usage();
    }
    g_quiet = flag(argc, argv, "--quiet");
    struct counter state = {0, 0};
    struct craft_configuration conf;
    craft_configuration_init(&conf);
    if (peers != NULL && parse_peers(peers, &conf) != 0) {
        fprintf(stderr, "craft-counter: bad --peers (want ID=HOST:PORT,...)\n");
        return 2;
    }
    struct craft_uv_config c;
    craft_uv_config_init(&c, strtoull(id, NULL, 10));
    c.address = address;
    c.data_dir = data;
    c.bootstrap = peers != NULL ? &conf : NULL;
    c.cluster_id = arg(argc, argv, "--cluster") ? strtoull(arg(argc, argv, "--cluster"), NULL, 10) : 1;
    if (arg(argc, argv, "--heartbeat")) {
        c.heartbeat_ms = (unsigned)atoi(arg(argc, argv, "--heartbeat"));
    }
    if (arg(argc, argv, "--election")) {
        c.election_timeout_ms = (unsigned)atoi(arg(argc, argv, "--election"));
    }
    if (arg(argc, argv, "--snapshot-entries")) {
        c.snapshot_entries = strtoull(arg(argc, argv, "--snapshot-entries"), NULL, 10);
        c.snapshot_trailing = c.snapshot_entries / 4;
    }
    c.fsync = !flag(argc, argv, "--nosync");
    /* WAL segments are preallocated: 1 MiB keeps a demo's three servers small on disk (the
     * default, 64 MiB, is for servers that write a lot). */
    c.segment_size = 1 << 20;
    security_from_args(argc, argv, &c.security);
    c.fsm.data = &state;
    c.fsm.apply = fsm_apply;
    c.fsm.snapshot = fsm_snapshot;
    c.fsm.restore = fsm_restore;
    c.log = on_log;
    g_loop = uv_default_loop();
    int rc = craft_uv_node_new(g_loop, &c, &g_node);
    craft_configuration_close(&conf, NULL);
    if (rc != 0) {
        fprintf(stderr, "craft-counter: %s (%s)\n", craft_uv_last_error(), craft_err_name(rc));
        return 1;
    }
    uv_signal_init(g_loop, &g_sigint);
    uv_signal_init(g_loop, &g_sigterm);
    uv_signal_start(&g_sigint, on_signal, SIGINT);
    uv_signal_start(&g_sigterm, on_signal, SIGTERM);
    craft_uv_node_start(g_node);
    /* Tell a supervisor (or a test) the node is up and where. */
    printf("ready %s\n", craft_uv_node_address(g_node));
    fflush(stdout);
    uv_run(g_loop, UV_RUN_DEFAULT);
    uv_loop_close(g_loop);
    return 0;
}

static int client(int argc, char **argv, const char *cmd)
{
    const char *servers = arg(argc, argv, "--servers");
    if (servers == NULL) {
        return usage();
    }
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", servers);
    const char *list[64];
    unsigned n = 0;
    for (char *tok = strtok(buf, ","); tok != NULL && n < 64; tok = strtok(NULL, ",")) {
        list[n++] = tok;
    }
    uint64_t cluster = arg(argc, argv, "--cluster") ? strtoull(arg(argc, argv, "--cluster"), NULL, 10) : 1;
    struct craft_client *cl;
    struct craft_security sec;
    char err[256] = "";
    security_from_args(argc, argv, &sec);
    int rc = craft_client_open_secure(list, n, cluster, 10000, &sec, &cl, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "craft-counter: %s\n", err[0] != '\0' ? err : craft_strerror(rc));
        return 1;
    }
    unsigned char command[9];
    size_t len = 1;
    long count = 1;
    if (strcmp(cmd, "inc") == 0) {
        command[0] = 'i';
        put64(command + 1, (uint64_t)(arg(argc, argv, "--by") ? atoll(arg(argc, argv, "--by")) : 1));
        len = 9;
        count = arg(argc, argv, "--count") ? atol(arg(argc, argv, "--count")) : 1;
    } else if (strcmp(cmd, "get") == 0) {
        command[0] = 'g';
    } else {
        craft_client_close(cl);
        return usage();
    }
    int status = 0;
    for (long k = 0; k < count; k++) {
        void *result = NULL;
        size_t size = 0;
        craft_index index = 0;
        rc = craft_client_propose(cl, command, len, &result, &size, &index);
        if (rc != 0) {
            fprintf(stderr, "craft-counter: %s: %s%s%s\n", cmd, craft_strerror(rc),
                    craft_client_error(cl)[0] != '\0' ? ": " : "", craft_client_error(cl));
            status = 1;
            craft_free(NULL, result);
            break;
        }
        if (k == count - 1 && size == 8) {
            printf("%" PRId64 " (index %" PRIu64 ", via %s)\n", (int64_t)get64(result), index,
                   craft_client_server(cl));
        }
        craft_free(NULL, result);
    }
    craft_client_close(cl);
    return status;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        return usage();
    }
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(argv[1], "keygen") == 0 && argc == 3) {
        int rc = craft_secret_generate(argv[2]);
        if (rc != 0) {
            fprintf(stderr, "craft-counter: keygen %s: %s\n", argv[2], craft_strerror(rc));
            return 1;
        }
        return 0;
    }
    if (strcmp(argv[1], "serve") == 0) {
        return serve(argc, argv);
    }
    if (strcmp(argv[1], "inc") == 0 || strcmp(argv[1], "get") == 0) {
        return client(argc, argv, argv[1]);
    }
    return usage();
}
