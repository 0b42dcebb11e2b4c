/* Addresses as configured and exchanged in handshakes: "host:port" with a numeric IPv4 host,
 * "[v6]:port", or "localhost:port". Resolving names would need an asynchronous getaddrinfo
 * on every dial; cluster configurations name servers by address, so we do not. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uv/transport_internal.h"

static int parse_port(const char *s, int *port)
{
    long v = 0;
    if (*s == '\0') {
        return CRAFT_EINVAL;
    }
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9') {
            return CRAFT_EINVAL;
        }
        v = v * 10 + (*s - '0');
        if (v > 65535) {
            return CRAFT_EINVAL;
        }
    }
    *port = (int)v;
    return 0;
}

int craft__transport_parse_address(const char *s, struct sockaddr_storage *out)
{
    char host[CRAFT_ADDRESS_MAX];
    const char *port_s;
    size_t n;
    int port;

    if (s == NULL || strlen(s) >= CRAFT_ADDRESS_MAX) {
        return CRAFT_EINVAL;
    }
    memset(out, 0, sizeof *out);
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':') {
            return CRAFT_EINVAL;
        }
        n = (size_t)(close - (s + 1));
        memcpy(host, s + 1, n);
        host[n] = '\0';
        port_s = close + 2;
        if (parse_port(port_s, &port) != 0 ||
            uv_ip6_addr(host, port, (struct sockaddr_in6 *)out) != 0) {
            return CRAFT_EINVAL;
        }
        return 0;
    }
    port_s = strrchr(s, ':');
    if (port_s == NULL || port_s == s) {
        return CRAFT_EINVAL;
    }
    n = (size_t)(port_s - s);
    memcpy(host, s, n);
    host[n] = '\0';
    port_s++;
    if (strchr(host, ':') != NULL || parse_port(port_s, &port) != 0) {
        return CRAFT_EINVAL; /* an IPv6 address needs its brackets */
    }
    if (strcmp(host, "localhost") == 0) {
        strcpy(host, "127.0.0.1");
    }
    /* uv_ip4_addr (inet_pton) takes only the four-part dotted form. */
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)out) != 0) {
        return CRAFT_EINVAL;
    }
    return 0;
}

void craft__transport_format_address(const struct sockaddr *sa, char *buf, size_t size)
{
    char ip[64];

    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        if (uv_ip6_name(a, ip, sizeof ip) != 0) {
            strcpy(ip, "?");
        }
        snprintf(buf, size, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        if (uv_ip4_name(a, ip, sizeof ip) != 0) {
            strcpy(ip, "?");
        }
        snprintf(buf, size, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
    } else {
        snprintf(buf, size, "?");
    }
}

/* The 16 bytes of an IP address, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d), so that a dual-stack
 * listener's view of an IPv4 peer compares equal to the IPv4 address it was configured with. */
static bool ip_bytes(const struct sockaddr *sa, uint8_t out[16])
{
    if (sa->sa_family == AF_INET) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return true;
    }
    return false;
}

bool craft__transport_same_host(const struct sockaddr *a, const struct sockaddr *b)
{
    uint8_t x[16], y[16];
    return ip_bytes(a, x) && ip_bytes(b, y) && memcmp(x, y, 16) == 0;
}

bool craft__transport_is_wildcard(const struct sockaddr *sa)
{
    static const uint8_t any6[16] = {0};
    static const uint8_t any4[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0};
    uint8_t x[16];
    return ip_bytes(sa, x) && (memcmp(x, any6, 16) == 0 || memcmp(x, any4, 16) == 0);
}

unsigned craft__transport_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    }
    if (sa->sa_family == AF_INET6) {
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    }
    return 0;
}

void craft__transport_ip_key(const struct sockaddr *sa, uint8_t key[16])
{
    if (!ip_bytes(sa, key)) {
        memset(key, 0, 16);
    }
}
