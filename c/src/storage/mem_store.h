/* Internal helpers of the in-memory store (mem_store.c) for the simulator's disk faults. */
#ifndef CRAFT_STORAGE_MEM_STORE_H
#define CRAFT_STORAGE_MEM_STORE_H

#include "craft.h"

/* A copy of an in-memory store (made by craft_mem_store_new) as it is now: hard state, log
 * and latest snapshot (shared, as snapshots are immutable). For the simulator's "an older copy
 * of the data directory was put back". CRAFT_ENOMEM. */
int craft__mem_store_clone(const struct craft_store *src, struct craft_store **out);

#endif
