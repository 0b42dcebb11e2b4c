/*
 * The write-ahead log: a sequence of segment files (wal_segment.c) that together hold the
 * entries base+1 .. last. Appends go to the last segment, one write and one fdatasync per call
 * (group commit), and a new segment is started once the last one has reached the configured
 * size. In memory the log keeps, per segment, the byte offset of every record (4 bytes per
 * entry) and the runs of equal terms, so that term() needs no I/O and entries() one pread per
 * segment touched; payloads stay on disk and are checked against their CRC on every read.
 *
 * The compaction point (base) is owned by the caller, which makes it durable in the hard-state
 * file before telling the log: the log only forgets and deletes what is below it.
 */
#ifndef CRAFT_STORAGE_WAL_H
#define CRAFT_STORAGE_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "craft.h"
#include "craft/store.h"
#include "storage/fs.h"

/* From this index on, entries have this term (until the next run). */
struct craft__wal_run {
    craft_index index;
    craft_term term;
};

/* One segment file and what the log knows of it. */
struct craft__wal_seg {
    uint64_t seq;
    int fd;
    craft_index first; /* index of the first record (also when the file holds none yet) */
    size_t n;          /* records in the file */
    uint32_t *offs;    /* n + 1 offsets: record k starts at offs[k]; offs[n] ends the data */
    size_t offs_cap;
    struct craft__wal_run *runs;
    size_t n_runs;
    size_t runs_cap;
};

/* What scanning a segment found at its end. Segments are preallocated: after the written
 * records comes a tail of zeros, up to the file's size. */
struct craft__seg_scan {
    uint64_t file_size;
    uint64_t cut;      /* where the valid records end (where the zero tail begins) */
    uint64_t end;      /* after the last non-zero byte: > cut when a torn tail was found */
    bool torn;         /* non-zero bytes after cut: a torn tail, to be zeroed from cut */
    char why[128];     /* what was wrong at cut, when torn */
};

struct craft__wal {
    const struct craft_allocator *a;
    int dirfd;
    bool sync;
    uint64_t segment_size;
    craft_store_log_fn log;
    void *log_data;
    struct craft__wal_seg *segs;
    size_t n_segs;
    size_t segs_cap;
    uint64_t next_seq;
    craft_index base; /* the log holds base+1 .. last */
    uint8_t *buf;     /* scratch for encoding batches and reading records */
    size_t buf_cap;
    /* Set when a write failed half-way: what is on disk is no longer known (see wal.c). */
    bool broken;
    /* Set by load when the last segment ends in a torn tail, for repair to cut. */
    bool torn;
    struct craft__seg_scan tail;
    uint64_t tail_size; /* the size of the last segment's file when it was loaded */
};

/* --- One segment (wal_segment.c) --- */

/* "wal-<seq as 16 hex digits>.seg" into name (at least 32 bytes). */
void craft__storage_seg_name(uint64_t seq, char *name);
/* Parses a segment file name: true and *seq if name is one. */
bool craft__storage_seg_parse_name(const char *name, uint64_t *seq);
/* Creates an empty segment (header, then zeros up to the preallocated size) through a
 * temporary name, synced and renamed, so a segment file under its real name always has a whole
 * header. */
int craft__storage_seg_create(struct craft__wal *w, uint64_t seq, craft_index first,
                              struct craft__wal_seg *seg, struct craft__storage_err *err);
/* Opens and checks the segment with sequence seq, filling seg. Records must start at the
 * header's first index, be contiguous, and have terms not below prev_term; they end at the
 * first record boundary followed only by zeros (the preallocated tail), or at the end of the
 * file. In the last segment, damage confined to the last append is a torn tail: res->torn,
 * and res->cut says where the zeros must begin. Anything else is CRAFT_ECORRUPT with a
 * message naming the file and the offset. */
int craft__storage_seg_scan(struct craft__wal *w, uint64_t seq, bool last, craft_term prev_term,
                            struct craft__wal_seg *seg, struct craft__seg_scan *res,
                            struct craft__storage_err *err);
/* The size segments are preallocated to: segment_size rounded up to 4 KiB, at most 1 GiB. */
uint64_t craft__storage_seg_prealloc_size(const struct craft__wal *w);
/* Cuts the file back to off and gives it its preallocated size again (zeros after off), synced
 * step by step: the cut is durable before the zeros are extended, so stale bytes after off
 * never come back. */
int craft__storage_seg_zero_from(struct craft__wal *w, int fd, uint64_t off);
/* Makes room for n more records in seg's arrays. */
int craft__storage_seg_reserve(struct craft__wal *w, struct craft__wal_seg *seg, size_t n);
/* Records one more record ending at end with term t (room reserved beforehand). */
void craft__storage_seg_push(struct craft__wal_seg *seg, uint32_t end, craft_term t);
/* Forgets records from position k on (the file is cut by the caller). */
void craft__storage_seg_cut(struct craft__wal_seg *seg, size_t k);
/* The term of the record with index i, which the segment holds. */
craft_term craft__storage_seg_term(const struct craft__wal_seg *seg, craft_index i);
/* Closes the file and frees the arrays. */
void craft__storage_seg_free(struct craft__wal *w, struct craft__wal_seg *seg);

/* --- The log (wal.c) --- */

void craft__storage_wal_init(struct craft__wal *w, const struct craft_allocator *a, int dirfd,
                             const struct craft_disk_store_options *o);
/* Reads every segment of the directory and checks them (nothing is changed on disk yet).
 * base is the compaction point from the hard-state file. */
int craft__storage_wal_load(struct craft__wal *w, craft_index base,
                            struct craft__storage_err *err);
/* After a successful load and the caller's own checks: cuts a torn tail found by load and
 * deletes segments wholly at or below base. */
int craft__storage_wal_repair(struct craft__wal *w, struct craft__storage_err *err);
/* The last index physically present (at or below base when the log is empty). */
craft_index craft__storage_wal_last(const struct craft__wal *w);
/* Whether the record with index i is physically present, and its term. */
bool craft__storage_wal_term(const struct craft__wal *w, craft_index i, craft_term *t);
int craft__storage_wal_append(struct craft__wal *w, const struct craft_entry *entries, size_t n,
                              struct craft__storage_err *err);
/* Removes entries from..last (from > base); later segments are deleted, the one holding from
 * is cut, each step made durable before the next, so a crash leaves a prefix. */
int craft__storage_wal_truncate(struct craft__wal *w, craft_index from,
                                struct craft__storage_err *err);
/* Moves base up to upto (already durable in the hard state) and deletes the segments wholly
 * at or below it. */
int craft__storage_wal_compact(struct craft__wal *w, craft_index upto,
                               struct craft__storage_err *err);
/* Reads [lo, hi] (all live) into one allocation from a, checking every CRC. */
int craft__storage_wal_read(struct craft__wal *w, craft_index lo, craft_index hi,
                            const struct craft_allocator *a, struct craft_entry **out,
                            struct craft__storage_err *err);
void craft__storage_wal_close(struct craft__wal *w);

#endif
