/* A follower whose data directory went backwards while it was down -- cut short, wiped, or an
 * older copy put back, as disks and operators do -- is repaired by the leader it comes back to
 * (issue 11, defect 3). The leader used to drop the follower's rejections as stale and never
 * re-replicate below the follower's old match: its commit stayed behind, and reads through it
 * timed out, until the leader changed. Real files, real sockets, one process. */
#include "uv_fixture.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <stdarg.h>

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd) == 0 ? 0 : -1;
}

/* Cuts the data of the newest segment file of dir in half: recovery then finds a torn record
 * and cuts the log back there. */
static int cut_last_segment(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return -1;
    }
    char last[256] = "";
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "wal-", 4) == 0 && strcmp(e->d_name, last) > 0) {
            snprintf(last, sizeof last, "%s", e->d_name);
        }
    }
    closedir(d);
    if (last[0] == '\0') {
        return -1;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, last);
    int fd = open(path, O_RDWR);
    if (fd < 0) {
        return -1;
    }
    struct stat st;
    fstat(fd, &st);
    unsigned char *buf = malloc((size_t)st.st_size);
    ssize_t got = pread(fd, buf, (size_t)st.st_size, 0);
    off_t end = got > 0 ? got : 0;
    while (end > 0 && buf[end - 1] == 0) {
        end--; /* preallocated: the data ends where the zeros start */
    }
    free(buf);
    int rc = ftruncate(fd, end / 2 + 17);
    close(fd);
    return rc;
}

/* The leader counts the victim's acknowledgement of everything it has: what the victim then
 * loses is what it had promised to keep. */
struct acked {
    int leader, victim;
};

static bool leader_counts_all(struct uf *f, void *arg)
{
    const struct acked *a = arg;
    struct craft_uv_status s;
    craft_uv_status(f->node[a->leader].n, &s);
    for (unsigned k = 0; k < s.n_peers && k < CRAFT_UV_STATUS_PEERS; k++) {
        if (s.peers[k].id == (craft_id)a->victim) {
            return s.peers[k].match >= s.last_index;
        }
    }
    return false;
}

static bool caught_up(struct uf *f, void *arg)
{
    int who = *(int *)arg;
    int l = uf_leader(f);
    return l != 0 && l != who && uf_applied(f, who) >= uf_applied(f, l) &&
           f->node[l].logs_lost > 0;
}

enum loss { CUT, WIPE, OLDER_COPY };

static void loss_case(enum loss kind)
{
    struct uf f;
    uf_init(&f, 3);
    CHECK_OK(uf_start(&f));
    CHECK(uf_run_until(&f, uf_has_leader, NULL, 8000));
    int l = uf_leader(&f);
    int v = l == 3 ? 2 : 3; /* the victim, a follower */
    char copy[600];
    snprintf(copy, sizeof copy, "%s.copy", f.node[v].dir);
    unsigned done = 0;
    for (int round = 0; round < 2; round++) {
        for (int k = 0; k < 30; k++) {
            CHECK_OK(uf_propose(&f, l, 1));
        }
        done += 30;
        CHECK(uf_wait_done(&f, done, 10000));
        struct uf_applied_arg a = {v, uf_applied(&f, l)};
        CHECK(uf_run_until(&f, uf_applied_reached, &a, 5000));
        struct acked ack = {l, v};
        CHECK(uf_run_until(&f, leader_counts_all, &ack, 5000));
        if (kind == OLDER_COPY && round == 0) {
            uf_stop(&f, v);
            CHECK_OK(sh("rm -rf '%s' && cp -a '%s' '%s'", copy, f.node[v].dir, copy));
            CHECK_OK(uf_open(&f, v));
        }
    }
    uf_stop(&f, v);
    switch (kind) {
    case CUT:
        CHECK_OK(cut_last_segment(f.node[v].dir));
        break;
    case WIPE:
        CHECK_OK(sh("rm -rf '%s'", f.node[v].dir));
        break;
    case OLDER_COPY:
        CHECK_OK(sh("rm -rf '%s' && mv '%s' '%s'", f.node[v].dir, copy, f.node[v].dir));
        break;
    }
    CHECK_OK(uf_open(&f, v));
    CHECK_EQ(uf_leader(&f), l);
    if (!uf_run_until(&f, caught_up, &v, 10000)) {
        FAIL("the follower stayed behind: applied %llu, leader %llu, reports %u",
             (unsigned long long)uf_applied(&f, v), (unsigned long long)uf_applied(&f, l),
             f.node[l].logs_lost);
    }
    /* And it serves: a write through it is applied everywhere. */
    CHECK_OK(uf_propose(&f, v, 1));
    CHECK(uf_wait_done(&f, done + 1, 10000));
    CHECK_EQ(f.last_status, 0);
    CHECK(uf_consistent(&f));
    uf_close(&f);
}

TEST(follower_with_its_last_segment_cut_short_is_repaired)
{
    loss_case(CUT);
}

TEST(follower_with_a_wiped_directory_is_repaired)
{
    loss_case(WIPE);
}

TEST(follower_with_an_older_copy_put_back_is_repaired)
{
    loss_case(OLDER_COPY);
}

HARNESS_MAIN()
