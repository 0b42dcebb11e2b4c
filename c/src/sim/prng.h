/*
 * The simulator's only source of randomness: xoshiro256** seeded through splitmix64, and the
 * 64-bit hashes used by the invariant checker. Nothing here reads the environment, so a seed
 * replays the same run everywhere (the layer rules forbid rand() and clocks in c/src/sim).
 */
#ifndef CRAFT_SIM_PRNG_H
#define CRAFT_SIM_PRNG_H

#include <stddef.h>
#include <stdint.h>

struct craft__sim_prng {
    uint64_t s[4];
};

/* splitmix64: also a good 64-bit mixer for deriving seeds. */
uint64_t craft__sim_splitmix(uint64_t *state);
/* A seed for a sub-stream or a node, from a seed and two discriminators. */
uint64_t craft__sim_derive(uint64_t seed, uint64_t a, uint64_t b);

void craft__sim_prng_seed(struct craft__sim_prng *p, uint64_t seed);
uint64_t craft__sim_prng_next(struct craft__sim_prng *p);
/* Uniform in [lo, hi] (inclusive); lo when hi <= lo. */
uint64_t craft__sim_prng_range(struct craft__sim_prng *p, uint64_t lo, uint64_t hi);
/* True with probability p (p <= 0: never, p >= 1: always). */
int craft__sim_prng_chance(struct craft__sim_prng *p, double prob);
/* Uniform in [0, 1). */
double craft__sim_prng_unit(struct craft__sim_prng *p);

/* FNV-1a over bytes. */
uint64_t craft__sim_hash_bytes(const void *data, size_t size);
/* Extends a hash chain by one log entry: chain(i) = mix(chain(i - 1), index, term, type,
 * hash(data)). Two logs with equal chains at i hold identical entries 1..i (with
 * overwhelming probability), which makes log matching one comparison per entry. */
uint64_t craft__sim_hash_chain(uint64_t prev, uint64_t index, uint64_t term, uint8_t type,
                               uint64_t data_hash);

#endif /* CRAFT_SIM_PRNG_H */
