/* A free port on 127.0.0.1 for a test or benchmark node, taken from below the kernel's
 * ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by default).
 *
 * Why not bind to port 0 and let the kernel choose: the kernel chooses from the ephemeral range,
 * the same range it gives the local end of every outgoing connection. Between our probe and the
 * node's listen, and while a node is down for a restart, another node's connect() can be handed
 * that very port, and the node then fails with EADDRINUSE (seen in CI: test_uv_fsm and a
 * restarted node of test_operations). Ports below the range are never handed out by connect().
 *
 * One cursor per process, started at a random place and moving on by one, so that two calls in a
 * process never return the same port and two processes rarely start at the same place; every
 * port returned was free a moment ago (bound without SO_REUSEADDR, so one in TIME_WAIT is
 * skipped too). The Python twin is tests/free_ports.py, the Lua one spec/support.lua. */
#ifndef CRAFT_TEST_FREE_PORT_H
#define CRAFT_TEST_FREE_PORT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FREE_PORT_LOWEST 10000

/* The lowest ephemeral port, or 32768 when /proc does not say. */
static inline int free_port__ephemeral_low(void)
{
    int lo = 32768, hi = 60999; /* hi is read only to check the line's shape */
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f != NULL) {
        if (fscanf(f, "%d %d", &lo, &hi) != 2) {
            lo = 32768;
        }
        fclose(f);
    }
    return lo > FREE_PORT_LOWEST + 1000 ? lo : 32768;
}

static inline int free_port__try(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return 0;
    }
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* A free port, or -1 when none below the ephemeral range is free. */
static inline int free_port(void)
{
    static int cursor = -1;
    int lo = free_port__ephemeral_low();
    int span = lo - FREE_PORT_LOWEST;
    if (cursor < 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        cursor = (int)(((unsigned)getpid() * 2654435761u ^ (unsigned)ts.tv_nsec) % (unsigned)span);
    }
    for (int tries = 0; tries < span; tries++) {
        int port = FREE_PORT_LOWEST + cursor;
        cursor = (cursor + 1) % span;
        if (free_port__try(port)) {
            return port;
        }
    }
    return -1;
}

#endif
