/*
 * craft-dump DIR: prints what a durable store's data directory holds -- the hard state, every
 * segment with its entry range and terms, every snapshot -- and checks every CRC on the way.
 * It reads only: it neither takes the directory's lock nor repairs anything, so it can look at
 * the directory of a node that refuses to start (or of one that is running).
 *
 * With --entries, every entry of the log follows, one line each, in a form for programs
 * (`craft dump --decode msgpack` decodes the payloads):
 *
 *     entry INDEX TERM TYPE SIZE HEX          TYPE: command, barrier or config
 *
 * and, after a configuration's hex, its servers: `servers: 1=HOST:PORT(voter) ...`.
 *
 * Exit status: 0 if everything checks (a torn tail, which the next open cuts, is reported but
 * is not an error), 1 if anything is corrupt, 2 for a usage or I/O error.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "craft.h"
#include "craft/store.h"
#include "storage/hard_state.h"
#include "storage/snapshot_file.h"
#include "storage/wal.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Collects the numbers of the files of one kind in dir, sorted, into *out (malloc'd). */
static size_t list(const char *dir, bool (*parse)(const char *, uint64_t *), uint64_t **out)
{
    DIR *d = opendir(dir);
    size_t n = 0, cap = 0;
    struct dirent *de;
    *out = NULL;
    while (d != NULL && (de = readdir(d)) != NULL) {
        uint64_t v;
        if (!parse(de->d_name, &v)) {
            continue;
        }
        if (n == cap) {
            cap = cap == 0 ? 64 : cap * 2;
            uint64_t *p = realloc(*out, cap * sizeof *p);
            if (p == NULL) {
                break;
            }
            *out = p;
        }
        (*out)[n++] = v;
    }
    if (d != NULL) {
        closedir(d);
    }
    if (n > 0) {
        qsort(*out, n, sizeof **out, cmp_u64);
    }
    return n;
}

static bool parse_snap(const char *name, uint64_t *v)
{
    return craft__storage_snap_parse_name(name, v);
}

static craft_index state_base; /* the compaction point the hard state names */

static int dump_state(int dirfd)
{
    struct craft__hs_file f;
    struct craft__storage_err err = {{0}};
    int rv = craft__storage_hs_open(dirfd, false, &f, &err);
    if (rv == CRAFT_ENOTFOUND) {
        printf("state: (none)\n");
        return 0;
    }
    if (rv != 0) {
        printf("state: %s  [%s]\n", craft_err_name(rv), err.msg);
        return rv == CRAFT_EIO ? 2 : 1;
    }
    printf("state: term=%" PRIu64 " vote=%" PRIu64 " commit=%" PRIu64 " base=%" PRIu64
           " base_term=%" PRIu64 " (slot %d, seq %" PRIu64 ")\n",
           f.cur.hs.term, f.cur.hs.vote, f.cur.hs.commit, f.cur.base, f.cur.base_term,
           f.cur_slot, f.cur.seq);
    if (f.bad_slot >= 0) {
        printf("state: slot %d does not check (an interrupted write; the other slot is used)\n",
               f.bad_slot);
    }
    state_base = f.cur.base;
    craft__storage_hs_close(&f);
    return 0;
}

static const char *entry_type(int type)
{
    return type == CRAFT_ENTRY_COMMAND   ? "command"
           : type == CRAFT_ENTRY_BARRIER ? "barrier"
           : type == CRAFT_ENTRY_CONFIG  ? "config"
                                         : "unknown";
}

/* Every live entry of the log, read as the store reads it (every CRC checked). */
static int dump_entries(int dirfd)
{
    struct craft_disk_store_options o;
    craft_disk_store_options_init(&o);
    struct craft__wal w;
    craft__storage_wal_init(&w, NULL, dirfd, &o);
    struct craft__storage_err err = {{0}};
    int rv = craft__storage_wal_load(&w, state_base, &err);
    craft_index last = rv == 0 ? craft__storage_wal_last(&w) : 0;
    int status = 0;
    /* In slices, so that a long log does not need its whole size in memory at once. */
    for (craft_index lo = state_base + 1; rv == 0 && lo <= last;) {
        craft_index hi = last - lo >= 1024 ? lo + 1023 : last;
        struct craft_entry *es = NULL;
        rv = craft__storage_wal_read(&w, lo, hi, NULL, &es, &err);
        for (craft_index i = 0; rv == 0 && i <= hi - lo; i++) {
            const struct craft_entry *e = &es[i];
            printf("entry %" PRIu64 " %" PRIu64 " %s %zu ", e->index, e->term, entry_type(e->type),
                   e->size);
            for (size_t k = 0; k < e->size; k++) {
                printf("%02x", ((const unsigned char *)e->data)[k]);
            }
            struct craft_configuration conf;
            if (e->type == CRAFT_ENTRY_CONFIG &&
                craft_configuration_decode(e->data, e->size, NULL, &conf) == 0) {
                printf(" servers:");
                for (unsigned s = 0; s < conf.n; s++) {
                    printf(" %" PRIu64 "=%s(%s)", conf.servers[s].id, conf.servers[s].address,
                           conf.servers[s].role == CRAFT_VOTER ? "voter" : "learner");
                }
                craft_configuration_close(&conf, NULL);
            }
            printf("\n");
        }
        free(es);
        lo = hi + 1;
    }
    if (rv != 0) {
        printf("entries: %s  [%s]\n", craft_err_name(rv), err.msg);
        status = rv == CRAFT_EIO ? 2 : 1;
    }
    craft__storage_wal_close(&w);
    return status;
}

static int dump_segments(const char *dir, int dirfd)
{
    uint64_t *seqs;
    size_t n = list(dir, craft__storage_seg_parse_name, &seqs);
    struct craft_disk_store_options o;
    craft_disk_store_options_init(&o);
    struct craft__wal w;
    craft__storage_wal_init(&w, NULL, dirfd, &o);
    int status = 0;
    craft_index expect = 0;
    craft_term term = 0;
    for (size_t k = 0; k < n; k++) {
        char name[32];
        craft__storage_seg_name(seqs[k], name);
        struct craft__wal_seg seg;
        struct craft__seg_scan res;
        struct craft__storage_err err = {{0}};
        int rv = craft__storage_seg_scan(&w, seqs[k], k + 1 == n, term, &seg, &res, &err);
        if (rv != 0) {
            printf("%s: %s  [%s]\n", name, craft_err_name(rv), err.msg);
            status = rv == CRAFT_EIO ? 2 : 1;
            expect = 0;
            continue;
        }
        /* Segments are preallocated: the records end where the zero tail begins. */
        printf("%s: entries %" PRIu64 "..%" PRIu64 " (%zu), %" PRIu64 " bytes (file %" PRIu64
               "), terms",
               name, seg.first, seg.first + seg.n - 1, seg.n, res.cut, res.file_size);
        for (size_t r = 0; r < seg.n_runs; r++) {
            printf(" %" PRIu64 "@%" PRIu64, seg.runs[r].term, seg.runs[r].index);
        }
        printf("%s\n", seg.n == 0 ? " (empty)" : "");
        if (res.torn) {
            printf("%s: torn tail at offset %" PRIu64 " (%s): %" PRIu64
                   " bytes the next open cuts\n",
                   name, res.cut, res.why, res.end - res.cut);
        }
        if (expect != 0 && seg.first != expect) {
            printf("%s: CRAFT_ECORRUPT  [starts at index %" PRIu64 ", expected %" PRIu64
                   " (a gap)]\n",
                   name, seg.first, expect);
            status = 1;
        }
        expect = seg.first + seg.n;
        if (seg.n > 0) {
            term = seg.runs[seg.n_runs - 1].term;
        }
        craft__storage_seg_free(&w, &seg);
    }
    if (n == 0) {
        printf("segments: (none)\n");
    }
    craft__storage_wal_close(&w);
    free(seqs);
    return status;
}

static int dump_snapshots(const char *dir, int dirfd)
{
    uint64_t *idx;
    size_t n = list(dir, parse_snap, &idx);
    int status = 0;
    for (size_t k = 0; k < n; k++) {
        char name[32];
        craft__storage_snap_name(idx[k], name);
        struct craft_snapshot_meta m;
        uint64_t off = 0;
        struct craft__storage_err err = {{0}};
        int rv = craft__storage_snap_load(dirfd, name, NULL, true, &m, &off, &err);
        if (rv != 0) {
            printf("%s: %s  [%s]\n", name, craft_err_name(rv), err.msg);
            status = rv == CRAFT_EIO ? 2 : 1;
            continue;
        }
        printf("%s: index=%" PRIu64 " term=%" PRIu64 " size=%" PRIu64 " data_offset=%" PRIu64
               " conf_index=%" PRIu64 " servers:",
               name, m.index, m.term, m.size, off, m.conf_index);
        for (unsigned s = 0; s < m.conf.n; s++) {
            printf(" %" PRIu64 "=%s(%s)", m.conf.servers[s].id, m.conf.servers[s].address,
                   m.conf.servers[s].role == CRAFT_VOTER ? "voter" : "learner");
        }
        printf("%s\n", k + 1 < n ? "  (older: removed on the next open)" : "");
        craft_configuration_close(&m.conf, NULL);
    }
    if (n == 0) {
        printf("snapshots: (none)\n");
    }
    free(idx);
    return status;
}

int main(int argc, char **argv)
{
    bool entries = argc == 3 && strcmp(argv[1], "--entries") == 0;
    if ((argc != 2 && !entries) || strcmp(argv[argc - 1], "-h") == 0 ||
        strcmp(argv[argc - 1], "--help") == 0) {
        fprintf(stderr, "usage: craft-dump DIR\n"
                        "       craft-dump --entries DIR\n"
                        "Prints a craft data directory (hard state, log segments, snapshots)\n"
                        "and checks every CRC; --entries also prints every entry of the log\n"
                        "(entry INDEX TERM TYPE SIZE HEX). Exit status 0 if all is well, 1 on\n"
                        "corruption, 2 on a usage or I/O error. Reads only; takes no lock.\n");
        return 2;
    }
    const char *dir = argv[argc - 1];
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        fprintf(stderr, "craft-dump: %s: %s\n", dir, strerror(errno));
        return 2;
    }
    printf("directory: %s\n", dir);
    int worst = 0;
    int rv = dump_state(dirfd);
    worst = rv > worst ? rv : worst;
    rv = dump_segments(dir, dirfd);
    worst = rv > worst ? rv : worst;
    rv = dump_snapshots(dir, dirfd);
    worst = rv > worst ? rv : worst;
    if (entries && worst == 0) {
        rv = dump_entries(dirfd);
        worst = rv > worst ? rv : worst;
    }
    close(dirfd);
    printf("%s\n", worst == 0 ? "result: ok" : worst == 1 ? "result: CORRUPT" : "result: error");
    return worst;
}
