/*
 * craft/store.h: the durable store, craft's default log store for real nodes.
 *
 * It implements the storage interface of craft.h (struct craft_store) over a data directory:
 * a segmented write-ahead log with a CRC32C per record, the hard state in two alternating
 * checksummed slots, and snapshot files written under a temporary name and renamed into place.
 * The on-disk format and what survives a crash are described in docs/storage.md.
 *
 * Beyond craft.h's rules, both stores (this one and craft_mem_store_new's) behave as follows:
 *  - append() also refuses (CRAFT_EINVAL) a batch whose indexes are not contiguous, an entry of
 *    term 0, and a term lower than the entry before it: a Raft log's terms never decrease.
 *  - truncate(from) with from past the last index does nothing; with from at or below the
 *    compaction point it returns CRAFT_ECOMPACTED; from == 0 is CRAFT_EINVAL.
 *  - compact(upto) at or below the compaction point does nothing; past the last index it
 *    empties the log, which then continues at upto + 1.
 *  - term(i) knows the term of the last compacted entry (and of the snapshot's last entry),
 *    and returns 0 for index 0; CRAFT_ECOMPACTED below that, CRAFT_EUNAVAILABLE past the last.
 *  - entries() of an empty range (lo == hi + 1) returns *out = NULL, *n = 0; in a returned
 *    array, data is never NULL, even for an empty payload.
 *  - snapshot_begin() refuses a snapshot older than the latest one (CRAFT_EINVAL). The size in
 *    the metadata is the number of bytes written; if the caller gave a non-zero size, the
 *    commit fails with CRAFT_EINVAL unless exactly that many bytes were written.
 *    snapshot_commit() consumes the writer whether it succeeds or not.
 *  - snapshot_commit() keeps the log consistent with the snapshot (Raft paper, Figure 13,
 *    steps 6 and 7): if the log does not hold the snapshot's last entry with the snapshot's
 *    term, the whole log is discarded and continues at index + 1. It never compacts a log that
 *    does hold it: the caller decides how many entries to keep for slow followers.
 *  - A reader opened with snapshot_open() keeps reading the snapshot it opened even after a
 *    newer one is committed. Every reader and writer is closed before the store is.
 *  - The allocator given when creating a store must outlive it.
 */
#ifndef CRAFT_STORE_H
#define CRAFT_STORE_H

#include "craft.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Levels of the store's log lines. */
enum craft_store_log_level {
    CRAFT_STORE_LOG_INFO = 1,  /* e.g. segments removed after a compaction */
    CRAFT_STORE_LOG_WARN = 2,  /* e.g. a torn tail cut back on open */
    CRAFT_STORE_LOG_ERROR = 3  /* e.g. the corruption that made open fail */
};

/* Receives one structured line, "storage: event=torn_tail file=... offset=... ...": key=value
 * pairs after the event name, so it can be grepped and parsed. Called on the caller's thread,
 * inside the store call that caused it; the line is borrowed for the duration of the call. */
typedef void (*craft_store_log_fn)(void *data, int level, const char *line);

struct craft_disk_store_options {
    /* A segment file is closed and a new one started once it holds at least this many bytes
     * (one append is never split across segments). Default 64 MiB; minimum 4 KiB. */
    uint64_t segment_size;
    /* fdatasync every write and fsync the directory after creating, renaming or removing a
     * file. Default true. Turning it off keeps everything but the durability of a machine
     * crash: for tests and benchmarks on a RAM disk. A process crash (kill -9) loses nothing
     * either way, since everything is written before a call returns. */
    bool fsync;
    /* Optional; NULL drops the lines. */
    craft_store_log_fn log;
    void *log_data;
};

/* Fills o with the defaults above. */
CRAFT_API void craft_disk_store_options_init(struct craft_disk_store_options *o);

/* Opens (creating it if needed) the data directory dir, locks it against other processes
 * (flock; CRAFT_ELOCKED if another holder has it) and recovers it: a record cut short at the
 * end of the last segment by a crash is cut away and logged; anything else that is wrong --
 * a bad checksum, a gap in the indexes, a bad header, a snapshot that does not check --
 * makes open fail with CRAFT_ECORRUPT (CRAFT_EVERSION for a format version this build does not
 * know), and nothing is changed on disk.
 *
 * o may be NULL for the defaults; a may be NULL for the C library's allocator. On failure, if
 * errmsg is not NULL, *errmsg receives a message naming the file and byte offset at fault,
 * allocated with a (release it with craft_free(a, msg)); it may be NULL if even that
 * allocation failed. On success *errmsg is set to NULL. */
CRAFT_API int craft_disk_store_open(const char *dir, const struct craft_disk_store_options *o,
                                    const struct craft_allocator *a, struct craft_store **out,
                                    char **errmsg);

/* The message of the last failed call on a durable store (e.g. "write 0000000000000001.wal:
 * No space left on device"), or "" if none; borrowed until the next call on the store. For a
 * store that did not come from craft_disk_store_open, returns "". */
CRAFT_API const char *craft_disk_store_errmsg(const struct craft_store *s);

#ifdef __cplusplus
}
#endif

#endif /* CRAFT_STORE_H */
