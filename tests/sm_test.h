/* sm_test.h - the unit test harness. A test file defines TEST(name) functions and lists them in
 * main() with RUN(name); each prints "PASS: name", "FAIL: name" or "SKIP: name (why)" and tests/run.sh
 * counts those lines. CHECK failures print file, line and the expression, and end the test. */
#ifndef SM_TEST_H
#define SM_TEST_H

#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static jmp_buf sm_test_jmp;
static int sm_test_failed_count, sm_test_skipped;
static char sm_test_skip_why[256];

#define TEST(name) static void name(void)
#define FAILF(...) do { fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); \
    fprintf(stderr, "\n"); longjmp(sm_test_jmp, 1); } while (0)
#define CHECK(cond) do { if (!(cond)) FAILF("CHECK(%s) failed", #cond); } while (0)
#define CHECK_MSG(cond, ...) do { if (!(cond)) FAILF(__VA_ARGS__); } while (0)
#define CHECK_EQ_INT(a, b) do { long long _a = (long long)(a), _b = (long long)(b); \
    if (_a != _b) FAILF("%s == %s: %lld != %lld", #a, #b, _a, _b); } while (0)
#define CHECK_EQ_STR(a, b) do { const char *_a = (a), *_b = (b); \
    if (!_a || !_b || strcmp(_a, _b)) FAILF("%s == %s: \"%s\" != \"%s\"", #a, #b, _a ? _a : "(null)", _b ? _b : "(null)"); } while (0)
#define CHECK_NEAR(a, b, tol) do { double _a = (a), _b = (b); \
    if (!(fabs(_a - _b) <= (tol))) FAILF("%s ~ %s: %.17g vs %.17g (tol %g)", #a, #b, _a, _b, (double)(tol)); } while (0)
#define SKIP(...) do { snprintf(sm_test_skip_why, sizeof sm_test_skip_why, __VA_ARGS__); sm_test_skipped = 1; \
    longjmp(sm_test_jmp, 1); } while (0)

#define RUN(name) do { sm_test_skipped = 0; fflush(stdout); \
    if (setjmp(sm_test_jmp) == 0) { name(); printf("PASS: %s\n", #name); } \
    else if (sm_test_skipped) printf("SKIP: %s (%s)\n", #name, sm_test_skip_why); \
    else { printf("FAIL: %s\n", #name); sm_test_failed_count++; } fflush(stdout); } while (0)
#define TEST_EXIT() return sm_test_failed_count ? 1 : 0

#endif
