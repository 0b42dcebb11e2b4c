/* xoshiro256** (Blackman and Vigna, 2018) seeded with splitmix64, and FNV-1a. */
#include "prng.h"

uint64_t craft__sim_splitmix(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t craft__sim_derive(uint64_t seed, uint64_t a, uint64_t b)
{
    uint64_t st = seed;
    uint64_t x = craft__sim_splitmix(&st);
    st = x ^ (a * 0xd6e8feb86659fd93ULL);
    x = craft__sim_splitmix(&st);
    st = x ^ (b * 0xa0761d6478bd642fULL);
    return craft__sim_splitmix(&st);
}

void craft__sim_prng_seed(struct craft__sim_prng *p, uint64_t seed)
{
    uint64_t st = seed;
    for (int i = 0; i < 4; i++) {
        p->s[i] = craft__sim_splitmix(&st);
    }
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t craft__sim_prng_next(struct craft__sim_prng *p)
{
    uint64_t *s = p->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t craft__sim_prng_range(struct craft__sim_prng *p, uint64_t lo, uint64_t hi)
{
    if (hi <= lo) {
        return lo;
    }
    uint64_t span = hi - lo + 1;
    if (span == 0) { /* the full 64-bit range */
        return craft__sim_prng_next(p);
    }
    /* Rejection sampling keeps the distribution exactly uniform. */
    uint64_t limit = UINT64_MAX - (UINT64_MAX % span);
    uint64_t x;
    do {
        x = craft__sim_prng_next(p);
    } while (x >= limit);
    return lo + x % span;
}

double craft__sim_prng_unit(struct craft__sim_prng *p)
{
    /* 53 random bits: exact in a double, the same result on every IEEE 754 machine. */
    return (double)(craft__sim_prng_next(p) >> 11) * (1.0 / 9007199254740992.0);
}

int craft__sim_prng_chance(struct craft__sim_prng *p, double prob)
{
    if (prob <= 0.0) {
        return 0; /* draw nothing: a fault-free run does not depend on these calls */
    }
    if (prob >= 1.0) {
        return 1;
    }
    return craft__sim_prng_unit(p) < prob;
}

uint64_t craft__sim_hash_bytes(const void *data, size_t size)
{
    const unsigned char *b = data;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < size; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t craft__sim_hash_chain(uint64_t prev, uint64_t index, uint64_t term, uint8_t type,
                               uint64_t data_hash)
{
    uint64_t st = prev ^ (index * 0x9e3779b97f4a7c15ULL);
    uint64_t x = craft__sim_splitmix(&st);
    st = x ^ term ^ ((uint64_t)type << 56);
    x = craft__sim_splitmix(&st);
    st = x ^ data_hash;
    return craft__sim_splitmix(&st);
}
