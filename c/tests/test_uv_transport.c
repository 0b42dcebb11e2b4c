/*
 * The TCP transport (c/src/uv/transport.h) on real sockets: 127.0.0.1, ephemeral ports, one
 * libuv loop per test. Every wait is bounded: a 1 ms repeating timer keeps the loop turning and
 * WAIT gives up at its deadline, so a broken transport fails a CHECK instead of hanging.
 *
 * Hostile peers are raw libuv sockets written here: they send garbage, truncated frames,
 * oversized length prefixes, unknown types, or nothing, and never read (back-pressure).
 * Every allocation of the transports goes through a counting allocator: each test ends with
 * every transport closed, uv_loop_close() succeeding (no handle left open) and 0 live blocks.
 */
#include "harness.h"

#include "transport_fixture.h"

/* ============================================================================================
 * Tests
 * ========================================================================================== */

TEST(transport_addresses)
{
    static const char *good[] = {"127.0.0.1:7001", "0.0.0.0:0",       "[::1]:7001",
                                 "[::]:0",         "localhost:65535", "10.1.2.3:1"};
    static const char *bad[] = {"",
                                "127.0.0.1",
                                "127.0.0.1:",
                                ":80",
                                "1.2.3.4:65536",
                                "127.0.0.1:80x",
                                "::1:80",
                                "[::1]80",
                                "[::1",
                                "example.com:80",
                                "1.2.3:80",
                                "1.2.3.4:-1",
                                "[1.2.3.4]:80"};
    struct sockaddr_storage sa;
    char back[CRAFT_ADDRESS_MAX];

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        CHECK_OK(craft__transport_parse_address(good[i], &sa));
        craft__transport_format_address((const struct sockaddr *)&sa, back, sizeof back);
        if (strncmp(good[i], "localhost", 9) != 0) {
            CHECK_STR_EQ(back, good[i]);
        }
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (craft__transport_parse_address(bad[i], &sa) != CRAFT_EINVAL) {
            FAIL("\"%s\" parsed", bad[i]);
        }
    }
    CHECK_EQ(craft__transport_parse_address(NULL, &sa), CRAFT_EINVAL);
}

TEST(transport_open_errors)
{
    struct craft__transport_options o;
    struct ep a, b;

    fx_init();
    opts_init(&o, 1);
    o.listen_address = "nowhere:1";
    CHECK_EQ(ep_open_opts(&a, &o), CRAFT_EINVAL);
    CHECK(a.t == NULL);
    opts_init(&o, 0);
    CHECK_EQ(ep_open_opts(&a, &o), CRAFT_EINVAL);

    /* A port in use: EADDRINUSE, and the listener that could not bind is freed once the loop
     * runs. */
    CHECK_OK(ep_open(&a, 1));
    opts_init(&o, 2);
    o.listen_address = a.addr;
    CHECK_EQ(ep_open_opts(&b, &o), CRAFT_EADDRINUSE);
    CHECK(b.t == NULL);
    CHECK(strstr(b.logs, "cannot listen") != NULL);

    /* IPv6 loopback, where the machine has it. (Members reach each other from their
     * configured addresses, so both are IPv6 here.) */
    ep_close(&a);
    opts_init(&o, 3);
    o.listen_address = "[::1]:0";
    if (ep_open_opts(&b, &o) == 0) {
        opts_init(&o, 1);
        o.listen_address = "[::1]:0";
        CHECK_OK(ep_open_opts(&a, &o));
        CHECK(strncmp(b.addr, "[::1]:", 6) == 0);
        CHECK_OK(craft__transport_set_peer(a.t, 3, b.addr));
        CHECK_OK(craft__transport_set_peer(b.t, 1, a.addr));
        WAIT(craft__transport_connected(a.t, 3) && craft__transport_connected(b.t, 1), 3000);
        CHECK(craft__transport_connected(a.t, 3));
        CHECK(craft__transport_connected(b.t, 1));
        ep_close(&b);
        ep_close(&a);
    }
    FX_FINI();
}

TEST(transport_backoff)
{
    uint64_t s1 = 7, s2 = 7, s3 = 8;
    unsigned b = 50;
    bool differ = false;

    for (int i = 0; i < 1000; i++) {
        unsigned d = craft__transport_backoff_delay(&s1, 100);
        CHECK(d >= 50 && d <= 100);
        /* Same seed, same sequence; another seed, another sequence. */
        CHECK_EQ(d, craft__transport_backoff_delay(&s2, 100));
        differ = differ || d != craft__transport_backoff_delay(&s3, 100);
    }
    CHECK(differ);
    CHECK_EQ(craft__transport_backoff_delay(&s1, 0), 0);
    CHECK_EQ(craft__transport_backoff_delay(&s1, 1) <= 1, 1);
    b = craft__transport_backoff_next(b, 50, 2000);
    CHECK_EQ(b, 100);
    for (int i = 0; i < 10; i++) {
        b = craft__transport_backoff_next(b, 50, 2000);
    }
    CHECK_EQ(b, 2000);
    CHECK_EQ(craft__transport_backoff_next(UINT32_MAX, 50, UINT32_MAX), UINT32_MAX);
    CHECK_EQ(craft__transport_backoff_next(0, 50, 2000), 50);
    for (int i = 0; i < 1000; i++) {
        double u = craft__transport_rand_unit(&s1);
        unsigned r = craft__transport_rand_range(&s1, 5, 9);
        CHECK(u >= 0.0 && u < 1.0);
        CHECK(r >= 5 && r <= 9);
    }
}

TEST(transport_exchange)
{
    static struct craft_wire_message samples[64], to_b[64], to_a[64];
    size_t n = wu_samples(samples, 64), n_raft = 0;
    struct ep a, b;
    struct craft__transport_stats sa, sb;
    bool big = false, snap = false;

    fx_init();
    pair(&a, &b);
    if (harness_failed()) {
        return;
    }
    CHECK_EQ(a.up, 1);
    CHECK_EQ(b.up, 1);
    /* The samples carry terms up to the bound: far ahead of a term of 0. */
    a.term = b.term = CRAFT_TERM_MAX;

    /* Every Raft sample, the 1,000-entry AppendEntries and the snapshot chunk among them. */
    for (size_t i = 0; i < n; i++) {
        if (samples[i].type > CRAFT_WIRE_RAFT_TYPE_MAX) {
            continue;
        }
        to_b[n_raft] = samples[i];
        to_b[n_raft].u.raft.from = 1;
        to_b[n_raft].u.raft.to = 2;
        to_a[n_raft] = samples[i];
        to_a[n_raft].u.raft.from = 2;
        to_a[n_raft].u.raft.to = 1;
        big = big || (samples[i].type == CRAFT_MSG_APPEND_ENTRIES &&
                      samples[i].u.raft.u.append_entries.n_entries == WU_N_BIG);
        snap = snap || (samples[i].type == CRAFT_MSG_INSTALL_SNAPSHOT &&
                        samples[i].u.raft.u.install_snapshot.size > 0);
        n_raft++;
    }
    CHECK(big && snap);
    b.expect = to_b;
    b.n_expect = n_raft;
    a.expect = to_a;
    a.n_expect = n_raft;
    for (size_t i = 0; i < n_raft; i++) {
        CHECK_OK(craft__transport_send(a.t, 2, &to_b[i]));
        CHECK_OK(craft__transport_send(b.t, 1, &to_a[i]));
    }
    WAIT(a.received == (int)n_raft && b.received == (int)n_raft, 5000);
    CHECK_EQ(b.matched, n_raft);
    CHECK_EQ(a.matched, n_raft);
    CHECK_EQ(a.last_from, 2);
    CHECK_EQ(b.last_from, 1);

    /* A burst in one loop iteration: coalesced into few writes, delivered in order. */
    b.expect = NULL;
    b.received = 0;
    b.track_ctx = true;
    for (uint64_t i = 0; i < 2000; i++) {
        struct craft_wire_message m = heartbeat(1, 2, i);
        CHECK_OK(craft__transport_send(a.t, 2, &m));
    }
    WAIT(b.received == 2000, 5000);
    CHECK_EQ(b.received, 2000);
    CHECK_EQ(b.out_of_order, 0);

    /* Every byte a wrote (handshakes included), b read, once the write callbacks ran. */
    WAIT(stats_of(&a).bytes_sent == stats_of(&b).bytes_received, 3000);
    sa = stats_of(&a);
    sb = stats_of(&b);
    CHECK_EQ(sa.msgs_sent, n_raft + 2000);
    CHECK_EQ(sb.msgs_received, n_raft + 2000);
    CHECK_EQ(sa.bytes_sent, sb.bytes_received);
    CHECK(sa.bytes_sent > 1000 * 100);
    CHECK_EQ(sa.bad_frames + sb.bad_frames, 0);
    CHECK_EQ(sa.send_dropped, 0);
    CHECK_EQ(craft__transport_queued_bytes(a.t, 2), 0);
    /* Each side: its outgoing connection and the one the other dialed. */
    CHECK_EQ(sa.connects, 2);
    CHECK_EQ(sb.connects, 2);

    /* A handshake is the transport's own; unknown peers have no connection. */
    struct craft_wire_message hs = handshake(1, 2, 42);
    CHECK_EQ(craft__transport_send(a.t, 2, &hs), CRAFT_EINVAL);
    struct craft_wire_message m = heartbeat(1, 9, 0);
    CHECK_EQ(craft__transport_send(a.t, 9, &m), CRAFT_ENOCONN);

    ep_close(&a);
    CHECK_EQ(a.down, 0); /* no callbacks after close */
    ep_close(&b);
    FX_FINI();
}

TEST(transport_reconnect)
{
    struct ep a, b;
    struct craft__transport_options o;
    char b_addr[CRAFT_ADDRESS_MAX];

    fx_init();
    pair(&a, &b);
    if (harness_failed()) {
        return;
    }
    strcpy(b_addr, b.addr);

    /* b goes away: a notices and keeps redialing with backoff. */
    ep_close(&b);
    WAIT(a.down == 1, 3000);
    CHECK_EQ(a.down, 1);
    CHECK(!craft__transport_connected(a.t, 2));
    WAIT(false, 100);

    /* b comes back on the same port: a reconnects on its own. */
    opts_init(&o, 2);
    o.listen_address = b_addr;
    CHECK_OK(ep_open_opts(&b, &o));
    CHECK_STR_EQ(b.addr, b_addr);
    CHECK_OK(craft__transport_set_peer(b.t, 1, a.addr));
    WAIT(craft__transport_connected(a.t, 2) && craft__transport_connected(b.t, 1), 3000);
    CHECK(craft__transport_connected(a.t, 2));
    CHECK_EQ(a.up, 2);

    struct craft_wire_message m = heartbeat(1, 2, 5);
    CHECK_OK(craft__transport_send(a.t, 2, &m));
    WAIT(b.received == 1, 3000);
    CHECK_EQ(b.received, 1);
    CHECK(stats_of(&a).disconnects >= 1);

    ep_close(&a);
    ep_close(&b);
    FX_FINI();
}

TEST(transport_refuse_cluster)
{
    struct ep a, b;
    struct craft__transport_options o;

    fx_init();
    CHECK_OK(ep_open(&a, 1));
    opts_init(&o, 2);
    o.cluster_id = 43;
    CHECK_OK(ep_open_opts(&b, &o));
    CHECK_OK(craft__transport_set_peer(a.t, 2, b.addr));
    CHECK_OK(craft__transport_set_peer(b.t, 1, a.addr));
    /* Each refuses the other, again and again: the dialers retry after their backoff. */
    WAIT(stats_of(&a).refused_handshakes >= 3 && stats_of(&b).refused_handshakes >= 3, 3000);
    CHECK(stats_of(&a).refused_handshakes >= 3);
    CHECK(stats_of(&b).refused_handshakes >= 3);
    CHECK(!craft__transport_connected(a.t, 2));
    CHECK(!craft__transport_connected(b.t, 1));
    CHECK(strstr(a.logs, "cluster id 0x2b") != NULL);
    CHECK(strstr(b.logs, "ours is 0x2b") != NULL);
    CHECK_EQ(a.up + b.up, 0);
    CHECK_EQ(stats_of(&a).connects, 0);
    ep_close(&a);
    ep_close(&b);
    FX_FINI();
}

TEST(transport_refuse_id)
{
    struct ep a, b;
    struct fake f;
    struct craft_wire_message hs = handshake(7, 1, 42);

    fx_init();
    CHECK_OK(ep_open(&a, 1));
    CHECK_OK(ep_open(&b, 2));

    /* a believes server 5 is at b's address; b is 2 and refuses. */
    CHECK_OK(craft__transport_set_peer(a.t, 5, b.addr));
    WAIT(stats_of(&b).refused_handshakes >= 1, 3000);
    CHECK(stats_of(&b).refused_handshakes >= 1);
    CHECK(strstr(b.logs, "wants server 5, we are 2") != NULL);
    CHECK(!craft__transport_connected(a.t, 5));

    /* A server that answers as 7 when a dialed 3: a refuses. */
    fake_open(&f, &hs, false);
    CHECK_OK(craft__transport_set_peer(a.t, 3, f.addr));
    WAIT(stats_of(&a).refused_handshakes >= 1, 3000);
    CHECK(stats_of(&a).refused_handshakes >= 1);
    CHECK(strstr(a.logs, "it is server 7, we dialed server 3") != NULL);
    CHECK(!craft__transport_connected(a.t, 3));
    CHECK_EQ(a.up, 0);

    ep_close(&a);
    ep_close(&b);
    fake_close(&f);
    FX_FINI();
}

/* docs/wire.md: a connection claiming a member's id is accepted only from that member's
 * address. Issue 13 found a handshake claiming a member's id from elsewhere accepted. */
TEST(transport_member_address)
{
    struct ep a, b;
    struct raw *r[5];
    struct craft_wire_message m;

    fx_init();
    CHECK_OK(ep_open(&a, 1));
    CHECK_OK(ep_open(&b, 2));
    CHECK_OK(craft__transport_set_peer(a.t, 2, b.addr));
    WAIT(craft__transport_connected(a.t, 2), 3000);
    for (int i = 0; i < 5; i++) {
        r[i] = raw_new();
    }
    /* 0: server 2 from another IP, announcing 2's address. */
    m = handshake(2, 1, 42);
    strcpy(m.u.handshake.address, b.addr);
    raw_add_msg(r[0], &m);
    raw_connect_from(r[0], a.addr, "127.0.0.2:0");
    WAIT(r[0]->eof, 3000);
    CHECK(r[0]->eof);
    CHECK(strstr(a.logs, "it claims to be server 2") != NULL);
    /* 1: server 2 from the right IP announcing another address. */
    strcpy(m.u.handshake.address, "127.0.0.1:1");
    raw_add_msg(r[1], &m);
    raw_connect(r[1], a.addr);
    WAIT(r[1]->eof, 3000);
    CHECK(r[1]->eof);
    CHECK(strstr(a.logs, "server 2 announces address \"127.0.0.1:1\"") != NULL);
    /* 2: server 2 announcing nothing. */
    m.u.handshake.address[0] = '\0';
    raw_add_msg(r[2], &m);
    raw_connect(r[2], a.addr);
    WAIT(r[2]->eof, 3000);
    CHECK(r[2]->eof);
    CHECK_EQ(stats_of(&a).refused_handshakes, 3);
    CHECK_EQ(a.received, 0);

    /* 3: a server a does not know (one joining empty is contacted this way): accepted, and its
     * Raft messages are delivered, but a term absurdly far ahead of a's is refused at decode. */
    m = handshake(9, 1, 42);
    raw_add_msg(r[3], &m);
    m = heartbeat(9, 1, 0);
    m.u.raft.term = 5;
    raw_add_msg(r[3], &m);
    a.term = 3;
    m.u.raft.term = 3 + CRAFT_WIRE_TERM_AHEAD_MAX + 1;
    raw_add_msg(r[3], &m);
    raw_connect(r[3], a.addr);
    WAIT(r[3]->eof, 3000);
    CHECK(r[3]->eof);
    CHECK_EQ(a.raft_received, 1);
    CHECK(strstr(a.logs, "server 9 at 127.0.0.1:") != NULL);
    CHECK(strstr(a.logs, "term too far ahead") != NULL);

    /* 4: server 2 itself (its address, its IP): accepted as a member; when b connects for
     * real, the newer connection replaces it. */
    m = handshake(2, 1, 42);
    strcpy(m.u.handshake.address, b.addr);
    raw_add_msg(r[4], &m);
    raw_connect(r[4], a.addr);
    WAIT(r[4]->n_in > 0, 3000);
    CHECK(!r[4]->eof);
    CHECK_OK(craft__transport_set_peer(b.t, 1, a.addr));
    WAIT(r[4]->eof, 3000);
    CHECK(r[4]->eof);
    CHECK(strstr(a.logs, "server 2 connected again") != NULL);
    WAIT(craft__transport_connected(b.t, 1), 3000);
    m = heartbeat(2, 1, 7);
    CHECK_OK(craft__transport_send(b.t, 1, &m));
    WAIT(a.raft_received == 2, 3000);
    CHECK_EQ(a.raft_received, 2);
    CHECK_EQ(stats_of(&a).refused_handshakes, 3);

    for (int i = 0; i < 5; i++) {
        raw_free(r[i]);
    }
    ep_close(&a);
    ep_close(&b);
    FX_FINI();
}

TEST(transport_bad_input)
{
    enum { N = 9 };
    struct raw *r[N];
    struct ep a, b;
    struct craft__transport_options o;
    struct craft_wire_message m;
    struct wu_mp body;
    int closed = 0;

    fx_init();
    opts_init(&o, 1);
    o.handshake_timeout_ms = 300;
    CHECK_OK(ep_open_opts(&a, &o));
    CHECK_OK(ep_open(&b, 2));
    CHECK_OK(craft__transport_set_peer(a.t, 2, b.addr));
    CHECK_OK(craft__transport_set_peer(b.t, 1, a.addr));
    WAIT(craft__transport_connected(a.t, 2) && craft__transport_connected(b.t, 1), 3000);
    CHECK(craft__transport_connected(a.t, 2));

    for (int i = 0; i < N; i++) {
        r[i] = raw_new();
    }
    /* 0: a small frame whose body is not a message array. */
    raw_add(r[0], "\0\0\0\x05hello", 9);
    /* 1: a length prefix of 4 GB, then some bytes: refused on the prefix. */
    raw_add(r[1], "\xff\xff\xff\xff", 4);
    raw_add(r[1], "\x95\x01\x02\x03\x04", 5);
    /* 2: half a handshake, then the end of the stream. */
    m = handshake(9, 1, 42);
    raw_add_msg(r[2], &m);
    r[2]->n_out /= 2;
    r[2]->shutdown_after = true;
    /* 3: a message of an unknown type (99). */
    memset(&body, 0, sizeof body);
    wu_header(&body, 0, 99);
    raw_add_body(r[3], body.b, body.n);
    /* 4: nothing at all. */
    /* 5: a Raft message before any handshake. */
    m = heartbeat(2, 1, 0);
    raw_add_msg(r[5], &m);
    /* 6: a client (from 0) that sends a Raft message. */
    m = handshake(0, 1, 42);
    raw_add_msg(r[6], &m);
    m = heartbeat(2, 1, 0);
    raw_add_msg(r[6], &m);
    /* 7: a server 9 whose message says it is from 3. */
    m = handshake(9, 1, 42);
    raw_add_msg(r[7], &m);
    m = heartbeat(3, 1, 0);
    raw_add_msg(r[7], &m);
    /* 8: an array header declaring 4 billion elements in a 5-byte body. */
    raw_add_body(r[8], "\xdd\xff\xff\xff\xff", 5);

    for (int i = 0; i < N; i++) {
        raw_connect(r[i], a.addr);
    }
    /* Meanwhile the good peer keeps talking. */
    b.track_ctx = true;
    for (uint64_t i = 0; i < 100; i++) {
        m = heartbeat(1, 2, i);
        CHECK_OK(craft__transport_send(a.t, 2, &m));
    }
    for (int round = 0; round < 3000 && closed < N; round++) {
        closed = 0;
        for (int i = 0; i < N; i++) {
            closed += r[i]->eof;
        }
        spin(now_ms() + 10);
    }
    CHECK_EQ(closed, N);

    struct craft__transport_stats s = stats_of(&a);
    CHECK_EQ(s.bad_frames, N - 1);
    CHECK_EQ(s.handshake_timeouts, 1);
    CHECK_EQ(s.refused_handshakes, 0);
    CHECK(strstr(a.logs, "bad frame header") != NULL);
    CHECK(strstr(a.logs, "frame of 4294967295 bytes, the maximum before the handshake is 1024") !=
          NULL);
    CHECK(strstr(a.logs, "middle of a frame") != NULL);
    CHECK(strstr(a.logs, "unknown message type") != NULL);
    CHECK(strstr(a.logs, "no handshake within 300 ms") != NULL);
    CHECK(strstr(a.logs, "AppendEntries before the handshake") != NULL);
    CHECK(strstr(a.logs, "AppendEntries from a client") != NULL);
    CHECK(strstr(a.logs, "AppendEntries from 3 to 1 on a connection between 9 and 1") != NULL);
    /* Nobody but b got a message through to a's node. */
    CHECK_EQ(a.received, 0);

    /* And the good peer was served throughout. */
    WAIT(b.received == 100, 3000);
    CHECK_EQ(b.received, 100);
    CHECK_EQ(b.out_of_order, 0);
    CHECK(craft__transport_connected(a.t, 2));
    m = heartbeat(2, 1, 0);
    CHECK_OK(craft__transport_send(b.t, 1, &m));
    WAIT(a.received == 1, 3000);
    CHECK_EQ(a.received, 1);
    CHECK_EQ(a.down, 0);

    for (int i = 0; i < N; i++) {
        raw_free(r[i]);
    }
    ep_close(&a);
    ep_close(&b);
    FX_FINI();
}

TEST(transport_limits)
{
    struct ep a;
    struct craft__transport_options o;
    struct craft_wire_message m;
    struct raw *big, *over, *r[5], *q;
    uint8_t prefix[5] = {0x00, 0x07, 0x00, 0x00, 0x95};      /* 458,752 bytes announced, 1 sent */
    uint8_t over_prefix[5] = {0x00, 0x10, 0x00, 0x00, 0x95}; /* 1 MiB, above max_frame */

    fx_init();
    opts_init(&o, 1);
    o.max_pending = 4;
    o.max_frame = 512 * 1024;
    o.handshake_timeout_ms = 5000;
    CHECK_OK(ep_open_opts(&a, &o));

    /* A client announces a frame within max_frame and sends a few bytes of it: what it costs
     * follows what it sent, not what it announced. */
    big = raw_new();
    m = handshake(0, 1, 42);
    raw_add_msg(big, &m);
    raw_add(big, prefix, sizeof prefix);
    raw_connect(big, a.addr);
    /* After the handshake, a frame above max_frame is refused on its prefix. */
    over = raw_new();
    raw_add_msg(over, &m);
    raw_add(over, over_prefix, sizeof over_prefix);
    raw_connect(over, a.addr);
    WAIT(over->eof, 3000);
    CHECK(over->eof);
    CHECK(strstr(a.logs, "frame of 1048576 bytes, the maximum is 524288") != NULL);
    WAIT(false, 50);
    CHECK(!big->eof);
    CHECK(F->mem.max_request <= 2 * CRAFT__READ_CHUNK);

    /* max_pending = 4: five connections that say nothing; the fifth evicts the oldest. */
    for (int i = 0; i < 5; i++) {
        r[i] = raw_new();
        raw_connect(r[i], a.addr);
        /* One at a time, so that the accept order is the connect order. */
        WAIT(a.t->n_pending == (unsigned)(i < 4 ? i + 1 : 4) && a.t->next_seq == (uint64_t)i + 3,
             3000);
    }
    WAIT(r[0]->eof, 3000);
    CHECK(r[0]->eof);
    WAIT(false, 50);
    CHECK(!r[1]->eof && !r[2]->eof && !r[3]->eof && !r[4]->eof);
    CHECK(strstr(a.logs, "more than 4 connections without a handshake") != NULL);
    /* A client from another address gets in: it evicts the oldest of the crowded address. */
    q = raw_new();
    raw_add_msg(q, &m);
    raw_connect_from(q, a.addr, "127.0.0.2:0");
    WAIT(r[1]->eof && q->n_in > 0, 3000);
    CHECK(r[1]->eof);
    CHECK(q->n_in > 0 && !q->eof);
    CHECK_EQ(stats_of(&a).evicted, 2);

    /* big gives up half-way through its frame. */
    raw_free(big);
    WAIT(strstr(a.logs, "middle of a frame") != NULL, 3000);
    CHECK_EQ(stats_of(&a).bad_frames, 2);
    for (int i = 0; i < 5; i++) {
        raw_free(r[i]);
    }
    raw_free(q);
    raw_free(over);
    ep_close(&a);
    FX_FINI();
}

/* A client connection with a Request of `size` bytes announced and its first bytes sent. */
static struct raw *partial_request(const char *to, const char *from, size_t size)
{
    struct raw *r = raw_new();
    struct craft_wire_message m = handshake(0, 1, 42);
    struct wu_mp body;
    raw_add_msg(r, &m);
    memset(&body, 0, sizeof body);
    wu_arr(&body, 8);
    wu_uint(&body, CRAFT_WIRE_VERSION);
    wu_uint(&body, CRAFT_WIRE_REQUEST);
    wu_uint(&body, 0);
    wu_uint(&body, 1);
    wu_uint(&body, 0);
    wu_uint(&body, 1);
    wu_uint(&body, CRAFT_WIRE_PROPOSE);
    size_t payload = size - body.n - 5;
    wu_be(&body, 0xc6, payload, 4);
    uint8_t hdr[4] = {(uint8_t)(size >> 24), (uint8_t)(size >> 16), (uint8_t)(size >> 8),
                      (uint8_t)size};
    raw_add(r, hdr, 4);
    raw_add(r, body.b, body.n);
    if (from != NULL) {
        raw_connect_from(r, to, from);
    } else {
        raw_connect(r, to);
    }
    return r;
}

/* Writes n more bytes of zeros on a connected raw socket. */
static void raw_write_zeros(struct raw *r, size_t n)
{
    static uint8_t zeros[1 << 20];
    static uv_write_t reqs[64];
    static int k;
    while (n > 0) {
        size_t chunk = n < sizeof zeros ? n : sizeof zeros;
        uv_buf_t b = uv_buf_init((char *)zeros, (unsigned)chunk);
        uv_write(&reqs[k++ % 64], (uv_stream_t *)&r->tcp, &b, 1, raw_written);
        n -= chunk;
    }
}

TEST(transport_client_quotas)
{
    struct ep a, b;
    struct craft__transport_options o;
    struct craft_wire_message m = handshake(0, 1, 42);
    struct raw *c[7];
    const char *from[7] = {"127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0",
                           "127.0.0.2:0", "127.0.0.2:0", "127.0.0.2:0"};

    fx_init();
    opts_init(&o, 1);
    o.max_clients = 5;
    o.max_clients_per_ip = 3;
    CHECK_OK(ep_open_opts(&a, &o));
    CHECK_OK(ep_open(&b, 2));
    /* Three clients from 127.0.0.1 get in, the fourth does not; two from 127.0.0.2 get in
     * (five in all), the third does not. */
    for (int i = 0; i < 7; i++) {
        c[i] = raw_new();
        raw_add_msg(c[i], &m);
        raw_connect_from(c[i], a.addr, from[i]);
        WAIT(c[i]->n_in > 0 || c[i]->eof, 3000);
    }
    CHECK(!c[0]->eof && !c[1]->eof && !c[2]->eof && c[3]->eof);
    CHECK(!c[4]->eof && !c[5]->eof && c[6]->eof);
    CHECK_EQ(stats_of(&a).refused_clients, 2);
    CHECK(strstr(a.logs, "too many client connections from its address") != NULL);
    CHECK(strstr(a.logs, "too many client connections (max_clients)") != NULL);
    /* A member still connects: peers are not clients. */
    CHECK_OK(craft__transport_set_peer(a.t, 2, b.addr));
    CHECK_OK(craft__transport_set_peer(b.t, 1, a.addr));
    WAIT(craft__transport_connected(a.t, 2) && craft__transport_connected(b.t, 1), 3000);
    CHECK(craft__transport_connected(b.t, 1));
    /* A client that leaves makes room. */
    raw_free(c[0]);
    WAIT(stats_of(&a).disconnects >= 1, 3000);
    struct raw *late = raw_new();
    raw_add_msg(late, &m);
    raw_connect(late, a.addr);
    WAIT(late->n_in > 0 || late->eof, 3000);
    CHECK(late->n_in > 0 && !late->eof);
    for (int i = 1; i < 7; i++) {
        raw_free(c[i]);
    }
    raw_free(late);
    ep_close(&a);
    ep_close(&b);
    FX_FINI();
}

TEST(transport_client_idle_and_requests)
{
    struct ep a;
    struct craft__transport_options o;
    struct craft_wire_message m = handshake(0, 1, 42), got[8];
    struct raw *idle, *busy;
    char payload[16];

    fx_init();
    opts_init(&o, 1);
    o.client_idle_timeout_ms = 200;
    o.max_client_requests = 2;
    CHECK_OK(ep_open_opts(&a, &o));
    /* idle handshakes and says nothing more; busy has requests nobody answers. */
    idle = raw_new();
    raw_add_msg(idle, &m);
    busy = raw_new();
    raw_add_msg(busy, &m);
    for (uint64_t id = 1; id <= 3; id++) {
        struct craft_wire_message rq;
        memset(&rq, 0, sizeof rq);
        rq.type = CRAFT_WIRE_REQUEST;
        rq.u.request.id = id;
        rq.u.request.kind = CRAFT_WIRE_READ;
        raw_add_msg(busy, &rq);
    }
    raw_connect(idle, a.addr);
    raw_connect(busy, a.addr);
    WAIT(idle->eof, 5000);
    CHECK(idle->eof);
    CHECK_EQ(stats_of(&a).idle_closed, 1);
    CHECK(strstr(a.logs, "idle for 200 ms") != NULL);
    /* Two requests reached the node; the third was answered EBUSY by the transport. */
    CHECK(!busy->eof);
    CHECK_EQ(a.requests, 2);
    CHECK_EQ(stats_of(&a).requests_refused, 1);
    size_t n = decode_all(busy, got, 8, payload, sizeof payload);
    CHECK_EQ(n, 2);
    CHECK_EQ(got[1].type, CRAFT_WIRE_RESPONSE);
    CHECK_EQ(got[1].u.response.id, 3);
    CHECK_EQ(got[1].u.response.error, CRAFT_EBUSY);
    raw_free(idle);
    raw_free(busy);
    ep_close(&a);
    FX_FINI();
}

TEST(transport_read_budget)
{
    static struct craft_entry entry;
    static uint8_t data[300 * 1024];
    struct ep a, b;
    struct craft__transport_options o;
    struct raw *x, *y, *z;
    struct craft_wire_message m;
    uint8_t ae_prefix[7] = {0x00, 0x07, 0x00, 0x00, 0x9a, 0x01, 0x03}; /* AppendEntries */

    fx_init();
    opts_init(&o, 1);
    o.max_frame = 512 * 1024;
    o.read_budget = 256 * 1024;
    CHECK_OK(ep_open_opts(&a, &o));
    CHECK_OK(ep_open(&b, 2));
    /* x holds 200 KiB of a 400 KiB Request: within the budget. */
    x = partial_request(a.addr, NULL, 400 * 1024);
    WAIT(x->connected, 3000);
    raw_write_zeros(x, 200 * 1024);
    WAIT(a.t->read_bytes >= 200 * 1024, 3000);
    CHECK(a.t->read_bytes >= 200 * 1024 && a.t->read_bytes <= 256 * 1024);
    /* y wants 100 KiB more: over the budget, y goes (x stays). */
    y = partial_request(a.addr, "127.0.0.2:0", 400 * 1024);
    WAIT(y->connected, 3000);
    raw_write_zeros(y, 100 * 1024);
    WAIT(y->eof, 3000);
    CHECK(y->eof);
    CHECK(!x->eof);
    CHECK(strstr(a.logs, "would exceed the read budget of 262144 bytes") != NULL);
    /* A client may only send Requests: a big AppendEntries is refused on its first bytes. */
    z = raw_new();
    m = handshake(0, 1, 42);
    raw_add_msg(z, &m);
    raw_add(z, ae_prefix, sizeof ae_prefix);
    raw_connect(z, a.addr);
    WAIT(z->eof, 3000);
    CHECK(z->eof);
    CHECK(strstr(a.logs, "AppendEntries from a client") != NULL);
    /* A member needs 300 KiB: the client holding the budget is evicted for it. */
    CHECK_OK(craft__transport_set_peer(b.t, 1, a.addr));
    CHECK_OK(craft__transport_set_peer(a.t, 2, b.addr));
    WAIT(craft__transport_connected(b.t, 1) && craft__transport_connected(a.t, 2), 3000);
    entry = (struct craft_entry){1, 1, CRAFT_ENTRY_COMMAND, data, sizeof data};
    m = heartbeat(2, 1, 0);
    m.u.raft.u.append_entries.entries = &entry;
    m.u.raft.u.append_entries.n_entries = 1;
    CHECK_OK(craft__transport_send(b.t, 1, &m));
    WAIT(a.raft_received == 1, 3000);
    CHECK_EQ(a.raft_received, 1);
    WAIT(x->eof, 3000);
    CHECK(x->eof);
    CHECK(strstr(a.logs, "is needed by server 2") != NULL);
    CHECK_EQ(stats_of(&a).evicted, 2);
    raw_free(x);
    raw_free(y);
    raw_free(z);
    ep_close(&a);
    ep_close(&b);
    FX_FINI();
}

TEST(transport_client_request)
{
    struct ep a;
    struct raw *r;
    struct craft_wire_message m, got[4];
    char payload[64];
    size_t n = 0;

    fx_init();
    CHECK_OK(ep_open(&a, 1));
    a.reply_requests = true;
    r = raw_new();
    m = handshake(0, 1, 42);
    raw_add_msg(r, &m);
    memset(&m, 0, sizeof m);
    m.type = CRAFT_WIRE_REQUEST;
    m.u.request.id = 77;
    m.u.request.kind = CRAFT_WIRE_PROPOSE;
    m.u.request.payload = "ping";
    m.u.request.size = 4;
    raw_add_msg(r, &m);
    raw_connect(r, a.addr);

    WAIT((n = decode_all(r, got, 4, payload, sizeof payload)) >= 2, 3000);
    CHECK_EQ(n, 2);
    CHECK_EQ(got[0].type, CRAFT_WIRE_HANDSHAKE);
    CHECK_EQ(got[0].u.handshake.from, 1);
    CHECK_EQ(got[0].u.handshake.to, 0);
    CHECK_EQ(got[0].u.handshake.cluster_id, 42);
    CHECK_STR_EQ(got[0].u.handshake.address, a.addr);
    CHECK_EQ(got[1].type, CRAFT_WIRE_RESPONSE);
    CHECK_EQ(got[1].u.response.id, 77);
    CHECK_EQ(got[1].u.response.index, 1234);
    CHECK_STR_EQ(payload, "ping");
    CHECK_EQ(a.requests, 1);
    CHECK_EQ(a.last_from, 0);
    CHECK_EQ(stats_of(&a).bad_frames, 0);

    /* When the client goes, the node hears that its connection closed. */
    raw_free(r);
    WAIT(a.conns_closed == 1, 3000);
    CHECK_EQ(a.conns_closed, 1);
    ep_close(&a);
    FX_FINI();
}

TEST(transport_backpressure)
{
    static struct craft_entry entry;
    static uint8_t data[64 * 1024];
    struct ep a;
    struct fake f;
    struct craft__transport_options o;
    struct craft_wire_message hs = handshake(9, 1, 42), m;
    int rc = 0;
    long sent = 0;

    fx_init();
    opts_init(&o, 1);
    o.max_queue_bytes = 256 * 1024;
    CHECK_OK(ep_open_opts(&a, &o));
    fake_open(&f, &hs, true);
    CHECK_OK(craft__transport_set_peer(a.t, 9, f.addr));
    WAIT(craft__transport_connected(a.t, 9), 3000);
    CHECK(craft__transport_connected(a.t, 9));

    entry = (struct craft_entry){1, 1, CRAFT_ENTRY_COMMAND, data, sizeof data};
    m = heartbeat(1, 9, 0);
    m.u.raft.u.append_entries.entries = &entry;
    m.u.raft.u.append_entries.n_entries = 1;
    /* The peer never reads: once the kernel's buffers are full, the queue fills and sends are
     * refused instead of growing without bound. */
    uint64_t deadline = now_ms() + 8000;
    while (rc == 0 && spin(deadline)) {
        /* Two per loop iteration: the queue only fills if the socket stops taking bytes. */
        for (int i = 0; i < 2 && rc == 0; i++) {
            rc = craft__transport_send(a.t, 9, &m);
            sent += rc == 0;
            CHECK(craft__transport_queued_bytes(a.t, 9) <= o.max_queue_bytes);
        }
    }
    CHECK_EQ(rc, CRAFT_EBUSY);
    CHECK(sent > 16); /* more than the queue holds went out to the kernel first */
    fprintf(stderr, "backpressure: %ld messages of 64 KiB before CRAFT_EBUSY\n", sent);
    CHECK(stats_of(&a).send_dropped >= 1);
    CHECK(craft__transport_queued_bytes(a.t, 9) > o.max_queue_bytes - sizeof data - 1024);
    CHECK(craft__transport_connected(a.t, 9));
    /* Small messages fill what room is left, then are refused too. */
    m = heartbeat(1, 9, 1);
    sent = 0;
    while ((rc = craft__transport_send(a.t, 9, &m)) == 0 && sent < 100000) {
        sent++;
    }
    CHECK_EQ(rc, CRAFT_EBUSY);
    CHECK(sent < (long)sizeof data);
    CHECK(craft__transport_queued_bytes(a.t, 9) <= o.max_queue_bytes);

    /* Close with megabytes queued in libuv: every buffer is freed (FX_FINI counts). */
    ep_close(&a);
    fake_close(&f);
    FX_FINI();
}

TEST(transport_faults)
{
    struct ep a, b;
    struct craft_wire_message m;
    struct craft__transport_stats s;

    fx_init();
    pair(&a, &b);
    if (harness_failed()) {
        return;
    }

    /* drop = 1: everything a sends to b is lost; b to a still flows. */
    craft__transport_set_faults(a.t, 2, 1.0, 0, 0, false);
    for (int i = 0; i < 100; i++) {
        m = heartbeat(1, 2, 0);
        CHECK_OK(craft__transport_send(a.t, 2, &m));
        m = heartbeat(2, 1, 0);
        CHECK_OK(craft__transport_send(b.t, 1, &m));
    }
    WAIT(a.received == 100, 3000);
    WAIT(false, 50);
    CHECK_EQ(a.received, 100);
    CHECK_EQ(b.received, 0);
    CHECK_EQ(stats_of(&a).fault_dropped, 100);

    /* Cleared: messages flow again. */
    craft__transport_set_faults(a.t, 2, 0, 0, 0, false);
    m = heartbeat(1, 2, 0);
    CHECK_OK(craft__transport_send(a.t, 2, &m));
    WAIT(b.received == 1, 3000);
    CHECK_EQ(b.received, 1);

    /* A one-way block on a: a -> b is cut, b -> a is not. */
    craft__transport_set_faults(a.t, 2, 0, 0, 0, true);
    for (int i = 0; i < 50; i++) {
        m = heartbeat(1, 2, 0);
        CHECK_OK(craft__transport_send(a.t, 2, &m));
        m = heartbeat(2, 1, 0);
        CHECK_OK(craft__transport_send(b.t, 1, &m));
    }
    WAIT(a.received == 150, 3000);
    WAIT(false, 50);
    CHECK_EQ(a.received, 150);
    CHECK_EQ(b.received, 1);
    CHECK(craft__transport_connected(a.t, 2)); /* the connection itself stays up */
    craft__transport_set_faults(a.t, 2, 0, 0, 0, false);

    /* drop = 0.5: about half of 2,000 (seeded, so always the same count). */
    craft__transport_set_faults(a.t, 2, 0.5, 0, 0, false);
    for (int i = 0; i < 2000; i++) {
        m = heartbeat(1, 2, 0);
        CHECK_OK(craft__transport_send(a.t, 2, &m));
    }
    s = stats_of(&a);
    CHECK(s.fault_dropped - 100 - 50 > 850 && s.fault_dropped - 150 < 1150);
    WAIT(b.received == 1 + 2000 - (int)(s.fault_dropped - 150), 3000);
    CHECK_EQ(b.received, 1 + 2000 - (int)(s.fault_dropped - 150));
    craft__transport_set_faults(a.t, 2, 0, 0, 0, false);

    /* Delays of 5 to 40 ms: everything arrives, late and reordered. */
    b.received = 0;
    b.track_ctx = true;
    craft__transport_set_faults(a.t, 2, 0, 5, 40, false);
    uint64_t t0 = now_ms();
    for (uint64_t i = 0; i < 200; i++) {
        m = heartbeat(1, 2, i);
        CHECK_OK(craft__transport_send(a.t, 2, &m));
    }
    WAIT(b.received == 200, 3000);
    CHECK_EQ(b.received, 200);
    CHECK(now_ms() - t0 >= 5);
    CHECK(b.out_of_order > 0);
    craft__transport_set_faults(a.t, 2, 0, 0, 0, false);

    /* Delayed messages still pending at close are freed with it. */
    craft__transport_set_faults(a.t, 2, 0, 1000, 1000, false);
    m = heartbeat(1, 2, 0);
    CHECK_OK(craft__transport_send(a.t, 2, &m));
    ep_close(&a);
    ep_close(&b);
    FX_FINI();
}

TEST(transport_peer_changes)
{
    struct ep a, b;
    struct craft_wire_message m;

    fx_init();
    CHECK_OK(ep_open(&a, 1));
    CHECK_OK(ep_open(&b, 2));
    CHECK_EQ(craft__transport_set_peer(a.t, 0, b.addr), CRAFT_EINVAL);
    CHECK_EQ(craft__transport_set_peer(a.t, 2, "b:1"), CRAFT_EINVAL);
    CHECK_OK(craft__transport_set_peer(a.t, 1, a.addr)); /* ourselves: ignored */
    CHECK(!craft__transport_connected(a.t, 1));

    /* Nobody listens on port 1: a keeps failing... */
    CHECK_OK(craft__transport_set_peer(a.t, 2, "127.0.0.1:1"));
    WAIT(false, 100);
    CHECK(!craft__transport_connected(a.t, 2));
    /* ...until it learns the right address. */
    CHECK_OK(craft__transport_set_peer(a.t, 2, b.addr));
    WAIT(craft__transport_connected(a.t, 2), 3000);
    CHECK(craft__transport_connected(a.t, 2));
    CHECK_OK(craft__transport_set_peer(a.t, 2, b.addr)); /* unchanged: stays up */
    CHECK(craft__transport_connected(a.t, 2));

    /* b answers a's message, so a's node has seen that connection. */
    m = heartbeat(1, 2, 0);
    CHECK_OK(craft__transport_send(a.t, 2, &m));
    WAIT(b.received == 1, 3000);
    CHECK_EQ(b.received, 1);

    /* Removed: the connection goes, with no peer_state callback; b sees it close. */
    craft__transport_remove_peer(a.t, 2);
    CHECK(!craft__transport_connected(a.t, 2));
    CHECK_EQ(craft__transport_send(a.t, 2, &m), CRAFT_ENOCONN);
    WAIT(b.conns_closed == 1, 3000);
    CHECK_EQ(b.conns_closed, 1);
    CHECK_EQ(a.down, 0);
    craft__transport_remove_peer(a.t, 2); /* twice: nothing */
    WAIT(false, 100);
    CHECK(!craft__transport_connected(a.t, 2));

    ep_close(&a);
    ep_close(&b);
    FX_FINI();
}

TEST(transport_close_busy)
{
    struct ep a, b;
    struct raw *silent, *partial;
    struct craft_wire_message samples[64], m;
    size_t n = wu_samples(samples, 64);

    fx_init();
    pair(&a, &b);
    if (harness_failed()) {
        return;
    }
    /* A connection mid-handshake, one mid-frame, a peer that cannot be reached (its redial
     * timer pending), a delayed message, and megabytes queued: then close both at once. */
    silent = raw_new();
    raw_connect(silent, a.addr);
    partial = raw_new();
    m = handshake(0, 1, 42);
    raw_add_msg(partial, &m);
    partial->n_out -= 3;
    raw_connect(partial, a.addr);
    CHECK_OK(craft__transport_set_peer(a.t, 7, "127.0.0.1:1"));
    WAIT(silent->connected && partial->connected, 3000);
    WAIT(false, 20);
    craft__transport_set_faults(b.t, 1, 0, 500, 500, false);
    m = heartbeat(2, 1, 0);
    CHECK_OK(craft__transport_send(b.t, 1, &m));
    for (int k = 0; k < 20; k++) {
        for (size_t i = 0; i < n; i++) {
            if (samples[i].type == CRAFT_MSG_APPEND_ENTRIES &&
                samples[i].u.raft.u.append_entries.n_entries == WU_N_BIG) {
                m = samples[i];
                m.u.raft.from = 1;
                m.u.raft.to = 2;
                CHECK_OK(craft__transport_send(a.t, 2, &m));
            }
        }
    }
    /* Let part of it leave so that writes are in flight, then close mid-write. */
    uv_run(&F->loop, UV_RUN_NOWAIT);
    craft__transport_close(a.t, ep_closed, &a);
    craft__transport_close(b.t, ep_closed, &b);
    WAIT(a.closed && b.closed, 3000);
    CHECK(a.closed && b.closed);
    CHECK_EQ(a.down + b.down + a.conns_closed + b.conns_closed, 0);
    WAIT(silent->eof && partial->eof, 3000);
    CHECK(silent->eof && partial->eof);
    raw_free(silent);
    raw_free(partial);
    FX_FINI();
}

TEST(transport_close_in_callback)
{
    struct ep a, b;
    struct craft_wire_message m;

    fx_init();
    pair(&a, &b);
    if (harness_failed()) {
        return;
    }
    /* b closes itself while a's burst is being delivered to it. */
    b.close_on_recv = true;
    for (uint64_t i = 0; i < 100; i++) {
        m = heartbeat(1, 2, i);
        CHECK_OK(craft__transport_send(a.t, 2, &m));
    }
    WAIT(b.closed, 3000);
    CHECK(b.closed);
    CHECK_EQ(b.received, 1); /* nothing delivered after close */
    WAIT(a.down == 1, 3000);
    CHECK_EQ(a.down, 1);
    ep_close(&a);
    FX_FINI();
}

/* Out of memory at every allocation in turn (and from then on): open, dial, accept,
 * handshake, send, read. Whatever fails, nothing crashes, nothing leaks, close completes. */
TEST(transport_out_of_memory)
{
    long calls = 0;

    for (long k = 0; k < 400; k++) {
        struct ep a, b;
        bool a_ok, b_ok;

        fx_init();
        F->mem.fail_after = k;
        a_ok = ep_open(&a, 1) == 0;
        b_ok = ep_open(&b, 2) == 0;
        if (a_ok && b_ok) {
            craft__transport_set_peer(a.t, 2, b.addr);
            craft__transport_set_peer(b.t, 1, a.addr);
            WAIT(craft__transport_connected(a.t, 2) && craft__transport_connected(b.t, 1), 30);
            for (uint64_t i = 0; i < 5; i++) {
                struct craft_wire_message m = heartbeat(1, 2, i);
                craft__transport_send(a.t, 2, &m);
                m = heartbeat(2, 1, i);
                craft__transport_send(b.t, 1, &m);
            }
            WAIT(a.received == 5 && b.received == 5, 30);
        }
        calls = F->mem.calls;
        if (a_ok) {
            ep_close(&a);
        }
        if (b_ok) {
            ep_close(&b);
        }
        FX_FINI();
        if (harness_failed()) {
            FAIL("with allocation %ld failing", k);
        }
        if (calls <= k) {
            /* Every allocation of the scenario succeeded: each failure point was covered. */
            fprintf(stderr, "out of memory: %ld failure points\n", k);
            break;
        }
    }
    CHECK(calls > 0);
    CHECK(calls < 400);
}

HARNESS_MAIN()
