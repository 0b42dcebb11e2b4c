/*
 * The data directory's lock: a file named LOCK held with flock(LOCK_EX), so that two processes
 * (or two opens in one process) never write the same log. The lock goes with the descriptor:
 * a process killed with SIGKILL releases it without cleanup.
 */
#ifndef CRAFT_STORAGE_LOCK_H
#define CRAFT_STORAGE_LOCK_H

#include "storage/fs.h"

/* Takes the lock of the directory open at dirfd (named dir in messages): 0 with the lock's
 * descriptor in *fd, CRAFT_ELOCKED if someone holds it, CRAFT_EIO. */
int craft__storage_lock(int dirfd, const char *dir, int *fd, struct craft__storage_err *err);
/* Releases it (closing the descriptor is enough; -1 is ignored). */
void craft__storage_unlock(int fd);

#endif
