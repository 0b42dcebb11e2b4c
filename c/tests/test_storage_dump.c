/*
 * craft-dump against real directories: exit status 0 for a sound one, 1 when a CRC fails, and
 * the output names the segments and their entry ranges. Runs the craft-dump built next to this
 * test (ctest runs tests in the build directory); skipped when it is not there.
 */
#include "harness.h"

#include <stdbool.h>
#include <sys/wait.h>

#include "craft.h"
#include "craft/store.h"

static int run_dump(const char *dir, char *out, size_t size)
{
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "./craft-dump %s 2>&1", dir);
    FILE *p = popen(cmd, "r");
    if (p == NULL) {
        return -1;
    }
    size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void make_dir(const char *dir)
{
    struct craft_disk_store_options o;
    craft_disk_store_options_init(&o);
    o.segment_size = 4096;
    o.fsync = false;
    struct craft_store *s = NULL;
    CHECK_OK(craft_disk_store_open(dir, &o, NULL, &s, NULL));
    char buf[100];
    memset(buf, 'x', sizeof buf);
    for (craft_index i = 1; i <= 100; i++) {
        struct craft_entry e = {1 + i / 30, i, CRAFT_ENTRY_COMMAND, buf, sizeof buf};
        CHECK_OK(s->append(s->impl, &e, 1));
    }
    struct craft_hard_state hs = {4, 1, 90};
    CHECK_OK(s->save_hard_state(s->impl, &hs));
    craft_store_close(s);
}

TEST(dump_of_a_sound_directory_exits_0)
{
    if (access("./craft-dump", X_OK) != 0) {
        SKIP("./craft-dump not built here");
    }
    char *dir = harness_tmpdir();
    make_dir(dir);
    static char out[65536];
    CHECK_EQ(run_dump(dir, out, sizeof out), 0);
    CHECK(strstr(out, "state: term=4 vote=1 commit=90") != NULL);
    CHECK(strstr(out, "wal-0000000000000001.seg: entries 1..29 (29)") != NULL);
    /* The last segment is preallocated: its records end before the file does. */
    CHECK(strstr(out, "wal-0000000000000004.seg: entries 88..100 (13), 1860 bytes (file 4096)") !=
          NULL);
    CHECK(strstr(out, "result: ok") != NULL);
}

TEST(dump_of_a_corrupt_directory_exits_1_and_names_the_place)
{
    if (access("./craft-dump", X_OK) != 0) {
        SKIP("./craft-dump not built here");
    }
    char *dir = harness_tmpdir();
    make_dir(dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/wal-0000000000000001.seg", dir);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    fseek(f, 300, SEEK_SET);
    fputc(0x55, f);
    fclose(f);
    static char out[65536];
    CHECK_EQ(run_dump(dir, out, sizeof out), 1);
    CHECK(strstr(out, "wal-0000000000000001.seg: CRAFT_ECORRUPT") != NULL);
    CHECK(strstr(out, "offset 180") != NULL);
    CHECK(strstr(out, "result: CORRUPT") != NULL);
}

TEST(dump_usage_error_exits_2)
{
    if (access("./craft-dump", X_OK) != 0) {
        SKIP("./craft-dump not built here");
    }
    static char out[4096];
    CHECK_EQ(run_dump("/nonexistent/craft/dir", out, sizeof out), 2);
}

HARNESS_MAIN()
