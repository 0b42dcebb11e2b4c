/*
 * The hard-state file "state": term, vote, commit hint and the log's compaction point, written
 * so that a crash at any moment leaves either the old or the new value (two slots, alternately
 * overwritten, each with a sequence number and a CRC; see format.h for the layout).
 *
 * The compaction point lives here, next to the vote, because it has the same need: it must
 * change atomically and durably before the segments below it are deleted.
 */
#ifndef CRAFT_STORAGE_HARD_STATE_H
#define CRAFT_STORAGE_HARD_STATE_H

#include <stdbool.h>

#include "storage/format.h"
#include "storage/fs.h"

struct craft__hs_file {
    int fd;
    bool sync;
    struct craft__hs_slot cur; /* the newest valid value */
    int cur_slot;              /* where it is (0 or 1) */
    int bad_slot;              /* after open: the slot that did not check (-1 if none) */
};

/* Opens "state" in dirfd and loads the newest valid slot. CRAFT_ENOTFOUND if the file does not
 * exist; CRAFT_ECORRUPT (message names the file) if it has the wrong size or neither slot
 * checks; CRAFT_EVERSION; CRAFT_EIO. */
int craft__storage_hs_open(int dirfd, bool sync, struct craft__hs_file *f,
                           struct craft__storage_err *err);
/* Creates "state" holding zeros, through a temporary file renamed into place, so that a crash
 * never leaves a half-made file under the real name. The caller then opens it. */
int craft__storage_hs_create(int dirfd, bool sync, struct craft__storage_err *err);
/* Durably replaces the value (cur.seq is advanced here). CRAFT_EIO on failure, after which
 * the file's state is unknown until it is opened again. */
int craft__storage_hs_write(struct craft__hs_file *f, const struct craft_hard_state *hs,
                            craft_index base, craft_term base_term,
                            struct craft__storage_err *err);
void craft__storage_hs_close(struct craft__hs_file *f);

#endif
