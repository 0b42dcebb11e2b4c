/*
 * Snapshot files: "snap-<index, 16 hex digits>.snap", a header (metadata, configuration, CRCs;
 * layout in format.h) followed by the state machine's bytes. They are written as a stream to a
 * temporary file, the header last (it holds the data's size and CRC), then synced, renamed
 * into place and the directory synced: a crash leaves either no new snapshot or a whole one.
 * Loading checks everything, including the data's CRC, before the snapshot is trusted.
 */
#ifndef CRAFT_STORAGE_SNAPSHOT_FILE_H
#define CRAFT_STORAGE_SNAPSHOT_FILE_H

#include <stdbool.h>
#include <stdint.h>

#include "craft.h"
#include "storage/format.h"
#include "storage/fs.h"

struct craft__snap_writer {
    int fd;
    char tmp[64];                    /* temporary file name */
    struct craft__snap_header h;     /* size and data_crc filled as data arrives */
    uint8_t *hdr;                    /* h.header_size bytes, the configuration encoded in */
    void *conf_buf;                  /* the encoded configuration */
    struct craft_snapshot_meta meta; /* conf copied with the store's allocator */
    uint64_t want_size;              /* the caller's size, 0 if not given */
};

/* "snap-<index as 16 hex digits>.snap" into name (at least 32 bytes). */
void craft__storage_snap_name(craft_index index, char *name);
bool craft__storage_snap_parse_name(const char *name, craft_index *index);

/* Starts a snapshot: allocates *out with a and creates its temporary file (unique per
 * counter value). */
int craft__storage_snap_begin(int dirfd, const struct craft_allocator *a, uint64_t counter,
                              const struct craft_snapshot_meta *meta,
                              struct craft__snap_writer **out, struct craft__storage_err *err);
int craft__storage_snap_write(struct craft__snap_writer *w, const void *buf, size_t len,
                              struct craft__storage_err *err);
/* Writes the header, syncs, renames into place, syncs the directory. On success the writer's
 * meta (with its size set) is moved to *meta and the writer freed; on failure the temporary
 * file is removed and the writer freed too. */
int craft__storage_snap_commit(int dirfd, bool sync, const struct craft_allocator *a,
                               struct craft__snap_writer *w, struct craft_snapshot_meta *meta,
                               struct craft__storage_err *err);
void craft__storage_snap_abort(int dirfd, const struct craft_allocator *a,
                               struct craft__snap_writer *w);

/* Opens and checks the snapshot file name: metadata (conf allocated with a) into *meta, the
 * offset of the data into *data_offset. CRAFT_ECORRUPT names the file and the offset at
 * fault; CRAFT_EVERSION; CRAFT_EIO. When check_data is false the data's CRC is not verified
 * (for craft-dump's quick mode). */
int craft__storage_snap_load(int dirfd, const char *name, const struct craft_allocator *a,
                             bool check_data, struct craft_snapshot_meta *meta,
                             uint64_t *data_offset, struct craft__storage_err *err);

#endif
