/*
 * harness.h: craft's single-header C test harness. No dependencies beyond libc and POSIX.
 *
 *     #include "harness.h"
 *
 *     TEST(election_basic)
 *     {
 *         CHECK(cond);
 *         CHECK_EQ(a, b);          integers; signed and unsigned compared by value, both printed
 *         CHECK_STR_EQ(s1, s2);    NULL-safe
 *         CHECK_OK(rc);            rc == 0; prints rc otherwise
 *         FAIL("fmt %d", x);       fails unconditionally
 *         SKIP("no netns here");   ends the test as skipped
 *     }
 *
 *     HARNESS_MAIN()
 *
 * The program runs every TEST in source order, or only those whose name contains argv[1]. It
 * prints `ok NAME`, `skip NAME: reason` or `FAIL NAME: FILE:LINE: message` per test, then
 * `N passed, N failed` (`, N skipped` when some were), and exits 1 if any test failed, 77 if
 * every test that ran was skipped (ctest's SKIP_RETURN_CODE), 0 otherwise.
 *
 * A failed check records the first failure of the test and returns from the enclosing function,
 * so CHECK, CHECK_EQ, ... belong in a TEST body or in a helper returning void; a helper that
 * returns a value uses CHECK_R(cond, value) or CHECK_EQ_R(a, b, value). After calling a helper,
 * `if (harness_failed()) return;` stops the test early.
 *
 * harness_env_int(name, default) reads an integer from the environment (CRAFT_SOAK_SEEDS, ...).
 * harness_tmpdir() makes a fresh directory under $TMPDIR or /tmp; all of them are removed at
 * exit when every test passed, and kept (and named on stderr) otherwise.
 *
 * One test program is one C file: all state here is static to that file.
 */
#ifndef CRAFT_TEST_HARNESS_H
#define CRAFT_TEST_HARNESS_H

/* Under strict -std=c11 glibc hides POSIX (mkdtemp, lstat, sigaction): ask for POSIX 2008 when the
 * file has not chosen. This works only when harness.h is the first include, so include it first. */
#if defined(__STRICT_ANSI__) && !defined(_POSIX_C_SOURCE) && !defined(_XOPEN_SOURCE) &&            \
    !defined(_GNU_SOURCE) && !defined(_DEFAULT_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HARNESS_MAX_TESTS 4096
#define HARNESS_MAX_TMPDIRS 1024
#define HARNESS_SKIP_EXIT 77 /* exit status when every test that ran was skipped */

#define HARNESS__UNUSED __attribute__((unused))
#define HARNESS__PRINTF(f, a) __attribute__((format(printf, f, a)))

/* --- Registration -------------------------------------------------------------------------- */

struct harness__test {
    const char *name;
    void (*fn)(void);
    int line;
};

static struct harness__test harness__tests[HARNESS_MAX_TESTS];
static int harness__ntests;
static int harness__overflow;

/* The test that is running and the outcome recorded so far. */
static const char *harness__current;
static int harness__cur_failed;
static int harness__cur_skipped;
static char harness__cur_msg[2048];

static char *harness__tmpdirs[HARNESS_MAX_TMPDIRS];
static int harness__ntmpdirs;

HARNESS__UNUSED static void harness__register(const char *name, void (*fn)(void), int line)
{
    if (harness__ntests == HARNESS_MAX_TESTS) {
        harness__overflow = 1;
        return;
    }
    harness__tests[harness__ntests].name = name;
    harness__tests[harness__ntests].fn = fn;
    harness__tests[harness__ntests].line = line;
    harness__ntests++;
}

#define TEST(name)                                                                                 \
    static void harness__test_##name(void);                                                        \
    __attribute__((constructor)) static void harness__register_##name(void)                        \
    {                                                                                              \
        harness__register(#name, harness__test_##name, __LINE__);                                  \
    }                                                                                              \
    static void harness__test_##name(void)

/* --- Recording failures -------------------------------------------------------------------- */

HARNESS__UNUSED HARNESS__PRINTF(3, 4) static void harness__fail(const char *file, int line,
                                                                const char *fmt, ...)
{
    va_list ap;
    int n;

    if (harness__cur_failed) {
        return; /* keep the first failure: later ones are usually its consequences */
    }
    harness__cur_failed = 1;
    n = snprintf(harness__cur_msg, sizeof harness__cur_msg, "%s:%d: ", file, line);
    if (n < 0 || (size_t)n >= sizeof harness__cur_msg) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(harness__cur_msg + n, sizeof harness__cur_msg - (size_t)n, fmt, ap);
    va_end(ap);
}

HARNESS__UNUSED HARNESS__PRINTF(1, 2) static void harness__skip(const char *fmt, ...)
{
    va_list ap;

    if (harness__cur_failed || harness__cur_skipped) {
        return;
    }
    harness__cur_skipped = 1;
    va_start(ap, fmt);
    vsnprintf(harness__cur_msg, sizeof harness__cur_msg, fmt, ap);
    va_end(ap);
}

/* Whether the running test has failed so far (after calling a helper that checks). */
HARNESS__UNUSED static int harness_failed(void)
{
    return harness__cur_failed;
}

/* For the harness's own tests: takes the recorded failure back, copying its message. */
HARNESS__UNUSED static int harness__take_failure(char *buf, size_t size)
{
    int failed = harness__cur_failed;

    if (failed && buf != NULL && size > 0) {
        size_t n = strlen(harness__cur_msg);

        n = n < size - 1 ? n : size - 1;
        memcpy(buf, harness__cur_msg, n);
        buf[n] = '\0';
    }
    harness__cur_failed = 0;
    harness__cur_msg[0] = '\0';
    return failed;
}

/* --- Checks -------------------------------------------------------------------------------- */

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            harness__fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                                 \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define CHECK_R(cond, retval)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            harness__fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                                 \
            return (retval);                                                                       \
        }                                                                                          \
    } while (0)

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        harness__fail(__FILE__, __LINE__, __VA_ARGS__);                                            \
        return;                                                                                    \
    } while (0)

/* FAIL in a helper that returns a value. */
#define FAIL_R(retval, ...)                                                                        \
    do {                                                                                           \
        harness__fail(__FILE__, __LINE__, __VA_ARGS__);                                            \
        return (retval);                                                                           \
    } while (0)

#define SKIP(...)                                                                                  \
    do {                                                                                           \
        harness__skip(__VA_ARGS__);                                                                \
        return;                                                                                    \
    } while (0)

/* 1 when the type of x is a signed integer type (enums with negative values are int). */
/* clang-format off */
#define HARNESS__SIGNED(x)                                                                         \
    _Generic((x),                                                                                  \
        char: (CHAR_MIN < 0),                                                                      \
        signed char: 1,                                                                            \
        short: 1,                                                                                  \
        int: 1,                                                                                    \
        long: 1,                                                                                   \
        long long: 1,                                                                              \
        default: 0)
/* clang-format on */

/* An integer with its signedness, so that -1 and UINT64_MAX are different values. */
struct harness__int {
    uint64_t bits;
    int is_signed;
};

HARNESS__UNUSED static int harness__int_negative(struct harness__int v)
{
    return v.is_signed && (v.bits >> 63) != 0;
}

HARNESS__UNUSED static int harness__int_eq(struct harness__int a, struct harness__int b)
{
    return a.bits == b.bits && harness__int_negative(a) == harness__int_negative(b);
}

HARNESS__UNUSED static const char *harness__int_str(struct harness__int v, char *buf, size_t size)
{
    if (harness__int_negative(v)) {
        snprintf(buf, size, "%lld", (long long)v.bits);
    } else {
        snprintf(buf, size, "%llu", (unsigned long long)v.bits);
    }
    return buf;
}

#define HARNESS__INT(x) ((struct harness__int){(uint64_t)(x), HARNESS__SIGNED(x)})

#define HARNESS__CHECK_EQ(a, b, ret_stmt)                                                          \
    do {                                                                                           \
        struct harness__int harness__a = HARNESS__INT(a);                                          \
        struct harness__int harness__b = HARNESS__INT(b);                                          \
        if (!harness__int_eq(harness__a, harness__b)) {                                            \
            char harness__sa[32], harness__sb[32];                                                 \
            harness__fail(__FILE__, __LINE__, "CHECK_EQ(%s, %s): %s != %s", #a, #b,                \
                          harness__int_str(harness__a, harness__sa, sizeof harness__sa),           \
                          harness__int_str(harness__b, harness__sb, sizeof harness__sb));          \
            ret_stmt;                                                                              \
        }                                                                                          \
    } while (0)

/* clang-format off */
#define CHECK_EQ(a, b) HARNESS__CHECK_EQ(a, b, return)
#define CHECK_EQ_R(a, b, retval) HARNESS__CHECK_EQ(a, b, return (retval))
/* clang-format on */

#define CHECK_OK(expr)                                                                             \
    do {                                                                                           \
        long long harness__rc = (long long)(expr);                                                 \
        if (harness__rc != 0) {                                                                    \
            harness__fail(__FILE__, __LINE__, "CHECK_OK(%s): returned %lld", #expr, harness__rc);  \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define CHECK_STR_EQ(s1, s2)                                                                       \
    do {                                                                                           \
        const char *harness__s1 = (s1);                                                            \
        const char *harness__s2 = (s2);                                                            \
        if ((harness__s1 == NULL || harness__s2 == NULL)                                           \
                ? harness__s1 != harness__s2                                                       \
                : strcmp(harness__s1, harness__s2) != 0) {                                         \
            harness__fail(__FILE__, __LINE__, "CHECK_STR_EQ(%s, %s): %s%s%s != %s%s%s", #s1, #s2,  \
                          harness__s1 ? "\"" : "", harness__s1 ? harness__s1 : "NULL",             \
                          harness__s1 ? "\"" : "", harness__s2 ? "\"" : "",                        \
                          harness__s2 ? harness__s2 : "NULL", harness__s2 ? "\"" : "");            \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* --- Environment and temporary directories ------------------------------------------------- */

/* The integer in environment variable `name`, or `def` when it is unset, empty or not an
 * integer (the last with a warning on stderr). */
HARNESS__UNUSED static int harness_env_int(const char *name, int def)
{
    const char *s = getenv(name);
    char *end;
    long long v;

    if (s == NULL || *s == '\0') {
        return def;
    }
    errno = 0;
    v = strtoll(s, &end, 0);
    while (*end == ' ' || *end == '\t' || *end == '\n') {
        end++;
    }
    if (errno != 0 || end == s || *end != '\0' || v < INT_MIN || v > INT_MAX) {
        fprintf(stderr, "harness: ignoring %s=\"%s\" (not an int), using %d\n", name, s, def);
        return def;
    }
    return (int)v;
}

HARNESS__UNUSED static int harness__rm_rf(const char *path)
{
    struct stat st;
    DIR *dir;
    struct dirent *e;
    char child[4096];
    int rc = 0;

    if (lstat(path, &st) != 0) {
        return errno == ENOENT ? 0 : -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        return unlink(path);
    }
    dir = opendir(path);
    if (dir == NULL) {
        return -1;
    }
    while ((e = readdir(dir)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        if ((size_t)snprintf(child, sizeof child, "%s/%s", path, e->d_name) >= sizeof child) {
            rc = -1;
            continue;
        }
        if (harness__rm_rf(child) != 0) {
            rc = -1;
        }
    }
    closedir(dir);
    return rmdir(path) == 0 ? rc : -1;
}

/* A fresh, empty directory (mkdtemp) under $TMPDIR or /tmp. The string stays valid until the
 * program exits. Aborts the program if no directory can be made. */
HARNESS__UNUSED static char *harness_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    char *dir;
    size_t len;

    if (base == NULL || *base == '\0') {
        base = "/tmp";
    }
    len = strlen(base);
    while (len > 1 && base[len - 1] == '/') {
        len--;
    }
    if ((size_t)snprintf(tmpl, sizeof tmpl, "%.*s/craft-test-XXXXXX", (int)len, base) >=
        sizeof tmpl) {
        fprintf(stderr, "harness: TMPDIR too long\n");
        abort();
    }
    if (harness__ntmpdirs == HARNESS_MAX_TMPDIRS) {
        fprintf(stderr, "harness: more than %d tmpdirs\n", HARNESS_MAX_TMPDIRS);
        abort();
    }
    if (mkdtemp(tmpl) == NULL) {
        fprintf(stderr, "harness: mkdtemp(%s): %s\n", tmpl, strerror(errno));
        abort();
    }
    dir = strdup(tmpl);
    if (dir == NULL) {
        fprintf(stderr, "harness: out of memory\n");
        abort();
    }
    harness__tmpdirs[harness__ntmpdirs++] = dir;
    return dir;
}

HARNESS__UNUSED static void harness__cleanup_tmpdirs(int keep)
{
    for (int i = 0; i < harness__ntmpdirs; i++) {
        /* Never NULL; the test tells gcc so in programs that make no tmpdir (-Wformat-overflow). */
        if (harness__tmpdirs[i] == NULL) {
            continue;
        }
        if (keep) {
            fprintf(stderr, "harness: kept %s\n", harness__tmpdirs[i]);
        } else if (harness__rm_rf(harness__tmpdirs[i]) != 0) {
            fprintf(stderr, "harness: could not remove %s: %s\n", harness__tmpdirs[i],
                    strerror(errno));
        }
        free(harness__tmpdirs[i]);
    }
    harness__ntmpdirs = 0;
}

/* --- Running ------------------------------------------------------------------------------- */

/* On a crash, say which test was running before the default action (core dump) happens. Not
 * installed for SIGSEGV/SIGBUS/SIGFPE under AddressSanitizer, whose own report is better. */
HARNESS__UNUSED static void harness__on_signal(int sig)
{
    static const char pre[] = "FAIL ";
    static const char mid[] = ": crashed with signal ";
    char num[3];
    size_t n = 0;
    const char *name = harness__current ? harness__current : "(no test)";

    (void)!write(STDOUT_FILENO, pre, sizeof pre - 1);
    (void)!write(STDOUT_FILENO, name, strlen(name));
    (void)!write(STDOUT_FILENO, mid, sizeof mid - 1);
    if (sig >= 10) {
        num[n++] = (char)('0' + sig / 10 % 10);
    }
    num[n++] = (char)('0' + sig % 10);
    num[n++] = '\n';
    (void)!write(STDOUT_FILENO, num, n);
    signal(sig, SIG_DFL);
    raise(sig);
}

#if defined(__SANITIZE_ADDRESS__)
#define HARNESS__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HARNESS__ASAN 1
#endif
#endif

HARNESS__UNUSED static void harness__install_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = harness__on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGABRT, &sa, NULL);
#ifndef HARNESS__ASAN
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGFPE, &sa, NULL);
    sigaction(SIGILL, &sa, NULL);
#endif
}

HARNESS__UNUSED static int harness__by_line(const void *a, const void *b)
{
    const struct harness__test *x = a;
    const struct harness__test *y = b;

    return (x->line > y->line) - (x->line < y->line);
}

HARNESS__UNUSED static int harness__main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    int passed = 0, failed = 0, skipped = 0;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (harness__overflow) {
        fprintf(stderr, "harness: more than %d tests in one program\n", HARNESS_MAX_TESTS);
        return 1;
    }
    harness__install_signals();
    /* Constructors run in an order the toolchain picks: run tests in source order instead. */
    qsort(harness__tests, (size_t)harness__ntests, sizeof harness__tests[0], harness__by_line);

    for (int i = 0; i < harness__ntests; i++) {
        const struct harness__test *t = &harness__tests[i];

        if (filter != NULL && strstr(t->name, filter) == NULL) {
            continue;
        }
        harness__current = t->name;
        harness__cur_failed = 0;
        harness__cur_skipped = 0;
        harness__cur_msg[0] = '\0';
        t->fn();
        fflush(stderr);
        if (harness__cur_failed) {
            printf("FAIL %s: %s\n", t->name, harness__cur_msg);
            failed++;
        } else if (harness__cur_skipped) {
            printf("skip %s: %s\n", t->name, harness__cur_msg);
            skipped++;
        } else {
            printf("ok %s\n", t->name);
            passed++;
        }
    }
    harness__current = NULL;

    if (filter != NULL && passed + failed + skipped == 0) {
        fprintf(stderr, "harness: no test name contains \"%s\"\n", filter);
        printf("0 passed, 0 failed\n");
        harness__cleanup_tmpdirs(0);
        return 1;
    }
    harness__cleanup_tmpdirs(failed > 0);
    if (skipped > 0) {
        printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    } else {
        printf("%d passed, %d failed\n", passed, failed);
    }
    if (failed > 0) {
        return 1;
    }
    /* Every test skipped (no root, no network namespaces, ...): ctest shows the program as
     * skipped through its SKIP_RETURN_CODE. */
    return passed == 0 && skipped > 0 ? HARNESS_SKIP_EXIT : 0;
}

#define HARNESS_MAIN()                                                                             \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        return harness__main(argc, argv);                                                          \
    }

#endif /* CRAFT_TEST_HARNESS_H */
