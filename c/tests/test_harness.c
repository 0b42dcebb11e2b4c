/* Self-tests of harness.h: the checks fail when they should and only then, and the helpers
 * (environment integers, temporary directories) do what the header promises. */
#include "harness.h"

#include <fcntl.h>
#include <stdbool.h>

/* Helpers that run one check, so a test can look at what it recorded. */
static void eq_ll(long long a, long long b)
{
    CHECK_EQ(a, b);
}

static void eq_mixed(int a, uint64_t b)
{
    CHECK_EQ(a, b);
}

static void str_eq(const char *a, const char *b)
{
    CHECK_STR_EQ(a, b);
}

static void ok(int rc)
{
    CHECK_OK(rc);
}

static int positive_or_minus_one(int x)
{
    CHECK_R(x > 0, -1);
    return x;
}

TEST(check_eq_compares_values)
{
    char msg[256];

    eq_ll(7, 7);
    CHECK(!harness__take_failure(NULL, 0));
    eq_ll(-3, 4);
    CHECK(harness__take_failure(msg, sizeof msg));
    CHECK(strstr(msg, "-3 != 4") != NULL);
    CHECK(strstr(msg, "test_harness.c:") != NULL);

    /* -1 and UINT64_MAX share their bits but are different numbers. */
    eq_mixed(-1, UINT64_MAX);
    CHECK(harness__take_failure(msg, sizeof msg));
    CHECK(strstr(msg, "-1 != 18446744073709551615") != NULL);
    eq_mixed(5, 5);
    CHECK(!harness__take_failure(NULL, 0));

    CHECK_EQ((unsigned char)200, 200);
    CHECK_EQ(true, 1);
    CHECK_EQ(INT64_MIN, INT64_MIN);
    CHECK_EQ(UINT64_MAX, UINT64_MAX);
}

TEST(check_str_eq_is_null_safe)
{
    char msg[256];

    str_eq("abc", "abc");
    CHECK(!harness__take_failure(NULL, 0));
    str_eq(NULL, NULL);
    CHECK(!harness__take_failure(NULL, 0));
    str_eq("abc", "abd");
    CHECK(harness__take_failure(msg, sizeof msg));
    CHECK(strstr(msg, "\"abc\" != \"abd\"") != NULL);
    str_eq("abc", NULL);
    CHECK(harness__take_failure(msg, sizeof msg));
    CHECK(strstr(msg, "\"abc\" != NULL") != NULL);
}

TEST(check_ok_prints_the_code)
{
    char msg[256];

    ok(0);
    CHECK(!harness__take_failure(NULL, 0));
    ok(-22);
    CHECK(harness__take_failure(msg, sizeof msg));
    CHECK(strstr(msg, "CHECK_OK(rc): returned -22") != NULL);
}

TEST(check_r_returns_its_value)
{
    CHECK_EQ(positive_or_minus_one(3), 3);
    CHECK_EQ(positive_or_minus_one(0), -1);
    CHECK(harness__take_failure(NULL, 0));
}

TEST(first_failure_is_kept)
{
    char msg[256];

    eq_ll(1, 2);
    eq_ll(3, 4);
    CHECK(harness_failed());
    CHECK(harness__take_failure(msg, sizeof msg));
    CHECK(strstr(msg, "1 != 2") != NULL);
    CHECK(!harness_failed());
}

TEST(env_int_parses)
{
    CHECK_OK(setenv("CRAFT_HARNESS_TEST_INT", "200", 1));
    CHECK_EQ(harness_env_int("CRAFT_HARNESS_TEST_INT", 7), 200);
    CHECK_OK(setenv("CRAFT_HARNESS_TEST_INT", "-5", 1));
    CHECK_EQ(harness_env_int("CRAFT_HARNESS_TEST_INT", 7), -5);
    CHECK_OK(setenv("CRAFT_HARNESS_TEST_INT", "0x10", 1));
    CHECK_EQ(harness_env_int("CRAFT_HARNESS_TEST_INT", 7), 16);
    CHECK_OK(setenv("CRAFT_HARNESS_TEST_INT", "", 1));
    CHECK_EQ(harness_env_int("CRAFT_HARNESS_TEST_INT", 7), 7);
    CHECK_OK(setenv("CRAFT_HARNESS_TEST_INT", "12abc", 1));
    CHECK_EQ(harness_env_int("CRAFT_HARNESS_TEST_INT", 7), 7);
    CHECK_OK(setenv("CRAFT_HARNESS_TEST_INT", "99999999999", 1));
    CHECK_EQ(harness_env_int("CRAFT_HARNESS_TEST_INT", 7), 7);
    CHECK_OK(unsetenv("CRAFT_HARNESS_TEST_INT"));
    CHECK_EQ(harness_env_int("CRAFT_HARNESS_TEST_INT", 7), 7);
}

TEST(tmpdir_is_fresh_and_writable)
{
    char *a = harness_tmpdir();
    char *b = harness_tmpdir();
    char path[4096];
    struct stat st;
    int fd;

    CHECK(a != NULL && b != NULL);
    CHECK(strcmp(a, b) != 0);
    CHECK_OK(stat(a, &st));
    CHECK(S_ISDIR(st.st_mode));

    /* Something nested, for the recursive removal at exit. */
    snprintf(path, sizeof path, "%s/sub", a);
    CHECK_OK(mkdir(path, 0700));
    snprintf(path, sizeof path, "%s/sub/file", a);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    CHECK(fd >= 0);
    CHECK_EQ(write(fd, "craft", 5), 5);
    CHECK_OK(close(fd));
}

TEST(rm_rf_removes_a_tree)
{
    char *dir = harness_tmpdir();
    char path[4096];
    struct stat st;

    snprintf(path, sizeof path, "%s/x", dir);
    CHECK_OK(mkdir(path, 0700));
    snprintf(path, sizeof path, "%s/x/y", dir);
    CHECK_OK(mkdir(path, 0700));
    snprintf(path, sizeof path, "%s/x/y/f", dir);
    CHECK_OK(close(open(path, O_WRONLY | O_CREAT, 0600)));
    snprintf(path, sizeof path, "%s/x", dir);
    CHECK_OK(harness__rm_rf(path));
    CHECK(stat(path, &st) != 0 && errno == ENOENT);
}

TEST(skip_is_not_a_failure)
{
    if (harness_env_int("CRAFT_HARNESS_SKIP_DEMO", 0)) {
        SKIP("CRAFT_HARNESS_SKIP_DEMO is set");
    }
}

HARNESS_MAIN()
