/*
 * The transcript corpus (the .txt files of tests/transcripts; docs/simulator.md, "Transcripts")
 * through the C interpreter: every command of every file must give the output recorded under it. The same
 * files run from Python (python/tests/test_transcripts.py, python -m craft.sim run) and Lua
 * (spec/transcripts_spec.lua), through this one interpreter. Also: the interpreter reports a
 * changed output with its line, rewrites a file to itself, and turns script errors into output.
 */
#include "harness.h"

#include <dirent.h>
#include <limits.h>

#include "craft/sim.h"

/* The repository root, from this file's path (c/tests/test_sim_transcripts.c). */
static void corpus_dir(char *out, size_t len)
{
    snprintf(out, len, "%s", __FILE__);
    char *p = strstr(out, "c/tests/test_sim_transcripts.c");
    if (p != NULL) {
        snprintf(p, len - (size_t)(p - out), "tests/transcripts");
    }
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf != NULL) {
        buf[n] = '\0';
        *len = (size_t)n;
    }
    return buf;
}

TEST(every_transcript_of_the_corpus_gives_its_recorded_output)
{
    char dir[PATH_MAX];
    corpus_dir(dir, sizeof(dir));
    DIR *d = opendir(dir);
    if (d == NULL) {
        SKIP("no corpus at %s (a build outside the source tree)", dir);
    }
    int files = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t k = strlen(e->d_name);
        if (k < 5 || strcmp(e->d_name + k - 4, ".txt") != 0) {
            continue;
        }
        char path[2 * PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        size_t len = 0;
        char *text = slurp(path, &len);
        CHECK(text != NULL);
        struct craft_sim_script_result r;
        CHECK_OK(craft_sim_script_run(text, len, &r));
        if (r.mismatches != 0) {
            fprintf(stderr, "%s:\n%s", path, r.report);
        }
        CHECK_EQ(r.mismatches, 0u);
        CHECK(r.commands > 0);
        CHECK_EQ(r.output_len, len); /* a passing file rewrites to itself */
        CHECK(memcmp(r.output, text, len) == 0);
        craft_sim_script_result_free(&r);
        free(text);
        files++;
    }
    closedir(d);
    CHECK(files >= 8);
}

TEST(a_changed_output_is_reported_with_its_line_and_rewritten)
{
    const char *text = "add-nodes 3\n----\nok\n\n# a comment\nstatus 1\n----\nn1: nonsense\n";
    struct craft_sim_script_result r;
    CHECK_OK(craft_sim_script_run(text, strlen(text), &r));
    CHECK_EQ(r.commands, 2u);
    CHECK_EQ(r.mismatches, 2u);
    CHECK(strstr(r.report, "line 6: status 1") != NULL);
    CHECK(strstr(r.report, "n1: nonsense") != NULL);
    CHECK(strstr(r.output, "# a comment\nstatus 1\n----\nn1: follower term=1") != NULL);
    /* The rewritten text passes. */
    struct craft_sim_script_result again;
    CHECK_OK(craft_sim_script_run(r.output, r.output_len, &again));
    CHECK_EQ(again.mismatches, 0u);
    craft_sim_script_result_free(&again);
    craft_sim_script_result_free(&r);
}

TEST(script_errors_are_output_not_crashes)
{
    const char *text = "status\n----\n\nadd-nodes 99\n----\n\nadd-nodes 3 bogus=1\n----\n\n"
                       "add-nodes 3 pre-vote=maybe\n----\n\nadd-nodes 3\n----\n\ncampaign 7\n----\n\npartition 1,1\n----\n\n"
                       "frobnicate\n----\n\ninject Nope from=1 to=2\n----\n";
    struct craft_sim_script_result r;
    CHECK_OK(craft_sim_script_run(text, strlen(text), &r));
    CHECK(strstr(r.output, "error: no cluster yet") != NULL);
    CHECK(strstr(r.output, "error: add-nodes N: 1..64 servers") != NULL);
    CHECK(strstr(r.output, "error: add-nodes: unknown option bogus=1") != NULL);
    CHECK(strstr(r.output, "error: pre-vote=maybe: true or false expected") != NULL);
    CHECK(strstr(r.output, "error: 7: a server 1..3 expected") != NULL);
    CHECK(strstr(r.output, "error: partition 1,2 3,4,5") != NULL);
    CHECK(strstr(r.output, "error: unknown command 'frobnicate'") != NULL);
    CHECK(strstr(r.output, "error: inject TYPE") != NULL);
    craft_sim_script_result_free(&r);
}

HARNESS_MAIN()
