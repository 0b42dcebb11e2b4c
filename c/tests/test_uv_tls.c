/*
 * TLS in the transport (issue 13; craft/security.h, docs/security.md), on real sockets on
 * 127.0.0.1 with certificates made at test time by tests/tls/make-certs.sh (openssl):
 *
 * - mutual TLS between peers, with server ids named by their certificates;
 * - refused before any craft frame is read: a plaintext stranger, a certificate from another
 *   CA, an expired certificate, a certificate for another server id, a client certificate
 *   claiming a server id;
 * - the cluster-secret mode (TLS 1.3 with an external PSK): the same secret connects, another
 *   secret or none is refused;
 * - rotation of a secret and of a CA while connected, through the stages docs/security.md
 *   gives, with messages flowing at every stage.
 */
#include "harness.h"

#include <libgen.h>

#include "transport_fixture.h"
#include "uv/tls.h"

static char certs[512];
static bool certs_made;

/* Makes the certificates once per run: tests/tls/make-certs.sh, found from this file. */
static const char *cert_dir(void)
{
    if (!certs_made) {
        char src[1024], cmd[2048];
        snprintf(src, sizeof src, "%s", __FILE__);
        snprintf(certs, sizeof certs, "%s/certs", harness_tmpdir());
        snprintf(cmd, sizeof cmd, "bash '%s/../../tests/tls/make-certs.sh' '%s' 1 2 3",
                 dirname(src), certs);
        if (system(cmd) != 0) {
            return NULL;
        }
        certs_made = true;
    }
    return certs;
}

static char *path(const char *name)
{
    static char buf[8][1024];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", cert_dir(), name);
    return p;
}

static struct craft__tls_ctx *cert_ctx(const char *name, const char *ca, bool verify_id)
{
    struct craft_security s;
    struct craft__tls_ctx *x = NULL;
    char err[512] = "", cert[64], key[64];
    memset(&s, 0, sizeof s);
    snprintf(cert, sizeof cert, "%s.pem", name);
    snprintf(key, sizeof key, "%s.key", name);
    s.mode = CRAFT_SECURITY_TLS;
    s.cert_file = path(cert);
    s.key_file = path(key);
    s.ca_file = path(ca);
    s.verify_id = verify_id;
    if (craft__tls_ctx_new(&s, 42, &x, err, sizeof err) != 0) {
        fprintf(stderr, "tls context %s: %s\n", name, err);
    }
    return x;
}

static struct craft__tls_ctx *secret_ctx(const char *file, const char *accept)
{
    struct craft_security s;
    struct craft__tls_ctx *x = NULL;
    char err[512] = "";
    memset(&s, 0, sizeof s);
    s.mode = CRAFT_SECURITY_SECRET;
    s.secret_file = file;
    s.accept_secret_file = accept;
    if (craft__tls_ctx_new(&s, 42, &x, err, sizeof err) != 0) {
        fprintf(stderr, "secret context %s: %s\n", file, err);
    }
    return x;
}

/* A secret file in the test's directory. */
static const char *secret_file(const char *name)
{
    static char buf[4][1024];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", cert_dir(), name);
    if (access(p, F_OK) != 0 && craft_secret_generate(p) != 0) {
        return NULL;
    }
    return p;
}

/* Opens endpoint e with id and TLS settings x (the endpoint keeps its own reference). */
static int ep_open_tls(struct ep *e, craft_id id, struct craft__tls_ctx *x)
{
    struct craft__transport_options o;
    int rc;
    opts_init(&o, id);
    o.tls = x;
    rc = ep_open_opts(e, &o);
    craft__tls_ctx_unref(x);
    return rc;
}

/* a and b dial each other; true once both directions are up. */
static bool link_up(struct ep *a, struct ep *b)
{
    craft__transport_set_peer(a->t, b->id, b->addr);
    craft__transport_set_peer(b->t, a->id, a->addr);
    WAIT(craft__transport_connected(a->t, b->id) && craft__transport_connected(b->t, a->id),
         5000);
    return craft__transport_connected(a->t, b->id) && craft__transport_connected(b->t, a->id);
}

/* Sends n heartbeats each way and waits for them: the link carries messages. */
static void exchange(struct ep *a, struct ep *b, int n)
{
    int ra = a->raft_received, rb = b->raft_received;
    for (int i = 0; i < n; i++) {
        struct craft_wire_message m = heartbeat(a->id, b->id, (uint64_t)i);
        CHECK_OK(craft__transport_send(a->t, b->id, &m));
        m = heartbeat(b->id, a->id, (uint64_t)i);
        CHECK_OK(craft__transport_send(b->t, a->id, &m));
    }
    WAIT(a->raft_received == ra + n && b->raft_received == rb + n, 5000);
    CHECK_EQ(a->raft_received, ra + n);
    CHECK_EQ(b->raft_received, rb + n);
}

TEST(tls_peers_exchange_messages)
{
    static struct craft_entry entry;
    static uint8_t data[1 << 20];
    struct ep a, b;

    if (cert_dir() == NULL) {
        SKIP("openssl could not make the test certificates");
    }
    fx_init();
    CHECK_OK(ep_open_tls(&a, 1, cert_ctx("server-1", "ca.pem", true)));
    CHECK_OK(ep_open_tls(&b, 2, cert_ctx("server-2", "ca.pem", true)));
    CHECK(strstr(a.logs, "TLS 1.3 with certificates, server ids verified") != NULL);
    CHECK(link_up(&a, &b));
    exchange(&a, &b, 200);
    /* A megabyte in one message: many TLS records, reassembled into one frame. */
    for (size_t i = 0; i < sizeof data; i++) {
        data[i] = (uint8_t)(i * 7);
    }
    entry = (struct craft_entry){1, 1, CRAFT_ENTRY_COMMAND, data, sizeof data};
    struct craft_wire_message m = heartbeat(1, 2, 0);
    m.u.raft.u.append_entries.entries = &entry;
    m.u.raft.u.append_entries.n_entries = 1;
    b.expect = &m;
    b.n_expect = 1;
    b.received = 0;
    CHECK_OK(craft__transport_send(a.t, 2, &m));
    WAIT(b.received == 1, 5000);
    CHECK_EQ(b.matched, 1);
    struct craft__transport_stats s = stats_of(&a);
    CHECK_EQ(s.bad_frames + s.refused_handshakes, 0);
    /* The bytes on the wire are ciphertext: more than the frames themselves. */
    CHECK(s.bytes_sent > sizeof data);
    ep_close(&a);
    ep_close(&b);
    FX_FINI();
}

/* A peer that tries with settings b_ctx, as server b_id: nothing reaches a. */
static void expect_refused(struct craft__tls_ctx *b_ctx, craft_id b_id, const char *a_log)
{
    struct ep a, b;
    fx_init();
    CHECK_OK(ep_open_tls(&a, 1, cert_ctx("server-1", "ca.pem", true)));
    CHECK_OK(ep_open_tls(&b, b_id, b_ctx));
    craft__transport_set_peer(b.t, 1, a.addr);
    craft__transport_set_peer(a.t, b_id, b.addr);
    WAIT(stats_of(&a).refused_handshakes >= 2, 5000);
    CHECK(stats_of(&a).refused_handshakes >= 2);
    if (strstr(a.logs, a_log) == NULL) {
        FAIL("a's log lacks \"%s\":\n%s", a_log, a.logs);
    }
    CHECK(!craft__transport_connected(a.t, b_id));
    CHECK(!craft__transport_connected(b.t, 1));
    CHECK_EQ(a.received, 0);
    CHECK_EQ(b.received, 0);
    ep_close(&a);
    ep_close(&b);
    FX_FINI();
}

TEST(tls_refuses_another_ca)
{
    if (cert_dir() == NULL) {
        SKIP("openssl could not make the test certificates");
    }
    expect_refused(cert_ctx("wrong-ca-server-2", "other-ca.pem", true), 2,
                   "certificate verify failed");
}

TEST(tls_refuses_an_expired_certificate)
{
    if (cert_dir() == NULL) {
        SKIP("openssl could not make the test certificates");
    }
    expect_refused(cert_ctx("expired-server-2", "ca.pem", true), 2, "certificate has expired");
}

TEST(tls_refuses_a_certificate_for_another_id)
{
    if (cert_dir() == NULL) {
        SKIP("openssl could not make the test certificates");
    }
    /* Server 3's certificate, presented by a transport that says it is server 2. */
    expect_refused(cert_ctx("server-3", "ca.pem", true), 2,
                   "claims to be server 2 with a certificate for server 3");
}

TEST(tls_refuses_a_client_certificate_claiming_a_server)
{
    if (cert_dir() == NULL) {
        SKIP("openssl could not make the test certificates");
    }
    expect_refused(cert_ctx("client", "ca.pem", true), 2,
                   "claims to be server 2 with a certificate that names no server id");
}

TEST(tls_refuses_a_secret_where_certificates_are_expected)
{
    if (cert_dir() == NULL) {
        SKIP("openssl could not make the test certificates");
    }
    expect_refused(secret_ctx(secret_file("s1"), NULL), 2, "TLS handshake failed");
}

TEST(tls_names_by_common_name)
{
    struct ep a, b;
    if (cert_dir() == NULL) {
        SKIP("openssl could not make the test certificates");
    }
    fx_init();
    CHECK_OK(ep_open_tls(&a, 1, cert_ctx("server-1", "ca.pem", true)));
    CHECK_OK(ep_open_tls(&b, 2, cert_ctx("cn-server-2", "ca.pem", true)));
    CHECK(link_up(&a, &b));
    exchange(&a, &b, 10);
    ep_close(&a);
    ep_close(&b);
    FX_FINI();
}

/* Plaintext strangers on a TLS port: the frames they send are never parsed as craft frames,
 * whatever they claim. */
TEST(tls_refuses_plaintext_strangers)
{
    struct ep a;
    struct raw *r[3];
    struct craft_wire_message m;
    if (cert_dir() == NULL) {
        SKIP("openssl could not make the test certificates");
    }
    fx_init();
    CHECK_OK(ep_open_tls(&a, 1, cert_ctx("server-1", "ca.pem", true)));
    for (int i = 0; i < 3; i++) {
        r[i] = raw_new();
    }
    /* A forged TimeoutNow "from server 2". */
    m = handshake(2, 1, 42);
    raw_add_msg(r[0], &m);
    m = heartbeat(2, 1, 0);
    m.type = m.u.raft.type = CRAFT_MSG_TIMEOUT_NOW;
    raw_add_msg(r[0], &m);
    /* A client's handshake and request. */
    m = handshake(0, 1, 42);
    raw_add_msg(r[1], &m);
    /* Garbage. */
    static const char garbage[] = "\x16\x03\x01\xff\xff garbage";
    raw_add(r[2], garbage, sizeof garbage - 1);
    for (int i = 0; i < 3; i++) {
        raw_connect(r[i], a.addr);
    }
    WAIT(r[0]->eof && r[1]->eof && r[2]->eof, 5000);
    CHECK(r[0]->eof && r[1]->eof && r[2]->eof);
    CHECK_EQ(a.received, 0);
    CHECK_EQ(stats_of(&a).refused_handshakes, 3);
    CHECK(strstr(a.logs, "TLS handshake failed") != NULL);
    for (int i = 0; i < 3; i++) {
        raw_free(r[i]);
    }
    ep_close(&a);
    FX_FINI();
}

TEST(secret_peers_connect_and_strangers_do_not)
{
    struct ep a, b, c;
    const char *s1, *s2;
    if (cert_dir() == NULL) {
        SKIP("openssl could not make the test certificates");
    }
    s1 = secret_file("cluster.secret");
    s2 = secret_file("other.secret");
    CHECK(s1 != NULL && s2 != NULL);
    fx_init();
    CHECK_OK(ep_open_tls(&a, 1, secret_ctx(s1, NULL)));
    CHECK_OK(ep_open_tls(&b, 2, secret_ctx(s1, NULL)));
    CHECK(strstr(a.logs, "TLS 1.3 with a cluster secret") != NULL);
    CHECK(link_up(&a, &b));
    exchange(&a, &b, 100);
    /* c has another secret: a refuses it before any frame. */
    CHECK_OK(ep_open_tls(&c, 3, secret_ctx(s2, NULL)));
    craft__transport_set_peer(c.t, 1, a.addr);
    WAIT(stats_of(&a).refused_handshakes >= 1, 5000);
    CHECK(stats_of(&a).refused_handshakes >= 1);
    CHECK(strstr(a.logs, "no known cluster secret was offered") != NULL);
    CHECK(!craft__transport_connected(c.t, 1));
    CHECK_EQ(a.raft_received, 100);
    ep_close(&c);
    ep_close(&a);
    ep_close(&b);
    FX_FINI();
}

TEST(secret_from_a_passphrase)
{
    struct ep a, b;
    struct craft_security s;
    struct craft__tls_ctx *x, *y;
    char err[256];
    fx_init();
    memset(&s, 0, sizeof s);
    s.mode = CRAFT_SECURITY_SECRET;
    s.passphrase = "correct horse battery staple";
    CHECK_OK(craft__tls_ctx_new(&s, 42, &x, err, sizeof err));
    CHECK_OK(craft__tls_ctx_new(&s, 42, &y, err, sizeof err));
    CHECK_OK(ep_open_tls(&a, 1, x));
    CHECK_OK(ep_open_tls(&b, 2, y));
    CHECK(link_up(&a, &b));
    exchange(&a, &b, 10);
    ep_close(&a);
    ep_close(&b);
    /* Settings that cannot work are refused with a reason. */
    s.passphrase = "short";
    CHECK_EQ(craft__tls_ctx_new(&s, 42, &x, err, sizeof err), CRAFT_EINVAL);
    CHECK(strstr(err, "at least 8") != NULL);
    s.passphrase = NULL;
    s.secret_file = "/nonexistent/secret";
    CHECK_EQ(craft__tls_ctx_new(&s, 42, &x, err, sizeof err), CRAFT_EINVAL);
    CHECK(strstr(err, "cannot read the secret file") != NULL);
    FX_FINI();
}

/* Rotating the cluster secret on live transports, in the three stages of docs/security.md;
 * the link carries messages at every stage, and at the end nothing authenticated with the old
 * secret is left. */
TEST(secret_rotation_keeps_the_link)
{
    struct ep a, b;
    const char *old_s, *new_s;
    if (cert_dir() == NULL) {
        SKIP("openssl could not make the test certificates");
    }
    old_s = secret_file("old.secret");
    new_s = secret_file("new.secret");
    fx_init();
    CHECK_OK(ep_open_tls(&a, 1, secret_ctx(old_s, NULL)));
    CHECK_OK(ep_open_tls(&b, 2, secret_ctx(old_s, NULL)));
    CHECK(link_up(&a, &b));
    exchange(&a, &b, 20);
    /* 1: everyone accepts the new secret, still connecting with the old. */
    struct craft__tls_ctx *x = secret_ctx(old_s, new_s);
    craft__transport_set_security(a.t, x);
    craft__transport_set_security(b.t, x);
    craft__tls_ctx_unref(x);
    exchange(&a, &b, 20);
    CHECK_EQ(stats_of(&a).disconnects + stats_of(&b).disconnects, 0);
    /* 2: everyone connects with the new one, still accepting the old. */
    x = secret_ctx(new_s, old_s);
    craft__transport_set_security(a.t, x);
    craft__transport_set_security(b.t, x);
    craft__tls_ctx_unref(x);
    exchange(&a, &b, 20);
    CHECK_EQ(stats_of(&a).disconnects + stats_of(&b).disconnects, 0);
    /* 3: the old secret is dropped: the connections made with it close, and are made again
     * with the new one. */
    x = secret_ctx(new_s, NULL);
    craft__transport_set_security(a.t, x);
    craft__transport_set_security(b.t, x);
    craft__tls_ctx_unref(x);
    CHECK(strstr(a.logs, "the cluster secret it used is no longer accepted") != NULL);
    CHECK(link_up(&a, &b));
    exchange(&a, &b, 20);
    CHECK_EQ(stats_of(&a).refused_handshakes + stats_of(&b).refused_handshakes, 0);
    ep_close(&a);
    ep_close(&b);
    FX_FINI();
}

/* Rotating to a new CA: trust both, switch certificates, trust only the new one. */
TEST(certificate_rotation_keeps_the_link)
{
    struct ep a, b;
    if (cert_dir() == NULL) {
        SKIP("openssl could not make the test certificates");
    }
    fx_init();
    CHECK_OK(ep_open_tls(&a, 1, cert_ctx("server-1", "ca.pem", true)));
    CHECK_OK(ep_open_tls(&b, 2, cert_ctx("server-2", "ca.pem", true)));
    CHECK(link_up(&a, &b));
    exchange(&a, &b, 20);
    /* 1: both CAs trusted. */
    struct craft__tls_ctx *x = cert_ctx("server-1", "ca-bundle.pem", true);
    struct craft__tls_ctx *y = cert_ctx("server-2", "ca-bundle.pem", true);
    craft__transport_set_security(a.t, x);
    craft__transport_set_security(b.t, y);
    craft__tls_ctx_unref(x);
    craft__tls_ctx_unref(y);
    exchange(&a, &b, 20);
    CHECK_EQ(stats_of(&a).disconnects + stats_of(&b).disconnects, 0);
    /* 2: new certificates, from the new CA. */
    x = cert_ctx("new-server-1", "ca-bundle.pem", true);
    y = cert_ctx("new-server-2", "ca-bundle.pem", true);
    craft__transport_set_security(a.t, x);
    craft__transport_set_security(b.t, y);
    craft__tls_ctx_unref(x);
    craft__tls_ctx_unref(y);
    exchange(&a, &b, 20);
    /* 3: only the new CA: the connections made with the old certificates go, and come back
     * with the new ones. */
    x = cert_ctx("new-server-1", "new-ca.pem", true);
    y = cert_ctx("new-server-2", "new-ca.pem", true);
    craft__transport_set_security(a.t, x);
    craft__transport_set_security(b.t, y);
    craft__tls_ctx_unref(x);
    craft__tls_ctx_unref(y);
    CHECK(strstr(a.logs, "its certificate is no longer trusted") != NULL);
    CHECK(link_up(&a, &b));
    exchange(&a, &b, 20);
    CHECK_EQ(stats_of(&a).refused_handshakes + stats_of(&b).refused_handshakes, 0);
    ep_close(&a);
    ep_close(&b);
    FX_FINI();
}

TEST(mode_change_reconnects_everything)
{
    struct ep a, b;
    const char *s1;
    if (cert_dir() == NULL) {
        SKIP("openssl could not make the test certificates");
    }
    s1 = secret_file("cluster.secret");
    fx_init();
    CHECK_OK(ep_open(&a, 1));
    CHECK_OK(ep_open(&b, 2));
    CHECK(strstr(a.logs, "PLAINTEXT") != NULL);
    CHECK(link_up(&a, &b));
    exchange(&a, &b, 10);
    struct craft__tls_ctx *x = secret_ctx(s1, NULL);
    craft__transport_set_security(a.t, x);
    craft__transport_set_security(b.t, x);
    craft__tls_ctx_unref(x);
    CHECK(strstr(a.logs, "the security mode changed from plaintext to secret") != NULL);
    CHECK(link_up(&a, &b));
    exchange(&a, &b, 10);
    ep_close(&a);
    ep_close(&b);
    FX_FINI();
}

HARNESS_MAIN()
