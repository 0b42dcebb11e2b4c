/* The transport's randomness: a seeded PRNG (never rand(): runs must be reproducible from the
 * seed, and several transports in one process must not share state) and the reconnect backoff
 * built on it. */
#include "uv/transport_internal.h"

uint64_t craft__transport_rand(uint64_t *state)
{
    /* splitmix64 (Steele, Lea, Flood 2014): tiny, and every seed, 0 included, is good. */
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

double craft__transport_rand_unit(uint64_t *state)
{
    /* The top 53 bits fill a double's mantissa exactly. */
    return (double)(craft__transport_rand(state) >> 11) * (1.0 / 9007199254740992.0);
}

unsigned craft__transport_rand_range(uint64_t *state, unsigned lo, unsigned hi)
{
    if (hi <= lo) {
        return lo;
    }
    /* The modulo bias over a 64-bit value and a span below 2^32 is under 2^-32: irrelevant for
     * jitter and fault delays. */
    return lo + (unsigned)(craft__transport_rand(state) % ((uint64_t)hi - lo + 1));
}

unsigned craft__transport_backoff_delay(uint64_t *state, unsigned backoff_ms)
{
    return craft__transport_rand_range(state, backoff_ms / 2, backoff_ms);
}

unsigned craft__transport_backoff_next(unsigned backoff_ms, unsigned min_ms, unsigned max_ms)
{
    unsigned next = backoff_ms > max_ms / 2 ? max_ms : backoff_ms * 2;
    if (next < min_ms) {
        next = min_ms;
    }
    return next > max_ms ? max_ms : next;
}
