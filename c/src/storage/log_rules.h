/*
 * Argument rules of the storage interface that every store enforces the same way (the in-memory
 * store, the durable store, and the conformance suite that checks both): what append accepts and
 * what a read of a range of entries returns at the edges of the log.
 */
#ifndef CRAFT_STORAGE_LOG_RULES_H
#define CRAFT_STORAGE_LOG_RULES_H

#include <stddef.h>

#include "craft.h"

/* Checks a batch for a log whose last entry is last (with term last_term, 0 if unknown):
 * entries[0].index must be last + 1, indexes contiguous, terms non-zero and never decreasing
 * (a Raft log's terms only grow), payload pointers present. 0 or CRAFT_EINVAL; n == 0 is 0. */
int craft__storage_check_append(craft_index last, craft_term last_term,
                                const struct craft_entry *entries, size_t n);

/* Checks a read of [lo, hi] from a log holding [first, last]: 0 when the whole range is there
 * (or the range is empty, lo == hi + 1), CRAFT_ECOMPACTED when lo is below first,
 * CRAFT_EUNAVAILABLE when hi is past last, CRAFT_EINVAL for lo == 0 or lo > hi + 1. */
int craft__storage_check_range(craft_index first, craft_index last, craft_index lo,
                               craft_index hi);

#endif
