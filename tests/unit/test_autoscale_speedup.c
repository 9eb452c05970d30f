/* test_autoscale_speedup.c - the paper's speed-up on hand-made curves. */
#include "../sm_test.h"
#include "autoscale/sm_speedup.h"

TEST(interpolated_reach_step) {
    /* baseline ends at perplexity 20 at step 1000; the target crosses 20 between steps 500 (22) and 600 (18):
     * halfway, step 550, so the speed-up is 1 - 550/1000 = 0.45 */
    double bs[4] = {250, 500, 750, 1000}, bv[4] = {40, 30, 24, 20};
    double ts[4] = {200, 400, 500, 600}, tv[4] = {35, 25, 22, 18};
    sm_curve b = {bs, bv, 4, 0}, t = {ts, tv, 4, 0};
    double s, r;
    int reached;
    CHECK_EQ_INT(sm_speedup(&t, &b, &s, &r, &reached, NULL), 0);
    CHECK(reached);
    CHECK_NEAR(r, 550, 1e-12);
    CHECK_NEAR(s, 0.45, 1e-15);
}

TEST(exact_hit_and_first_point) {
    double bs[2] = {100, 200}, bv[2] = {10, 8};
    double ts[3] = {50, 150, 200}, tv[3] = {9, 8, 7};
    sm_curve b = {bs, bv, 2, 0}, t = {ts, tv, 3, 0};
    double s, r;
    int reached;
    CHECK_EQ_INT(sm_speedup(&t, &b, &s, &r, &reached, NULL), 0);
    CHECK_NEAR(r, 150, 0); /* hits 8 exactly at step 150 */
    CHECK_NEAR(s, 0.25, 1e-15);
    /* already below at the first eval point: that point's step */
    double tv2[3] = {7.5, 7, 6};
    sm_curve t2 = {ts, tv2, 3, 0};
    CHECK_EQ_INT(sm_speedup(&t2, &b, &s, &r, &reached, NULL), 0);
    CHECK_NEAR(r, 50, 0);
    CHECK_NEAR(s, 0.75, 1e-15);
}

TEST(never_reaches_and_slower) {
    double bs[2] = {100, 200}, bv[2] = {10, 8};
    double ts[2] = {100, 200}, tv[2] = {11, 8.5};
    sm_curve b = {bs, bv, 2, 0}, t = {ts, tv, 2, 0};
    double s, r = -1;
    int reached = 1;
    CHECK_EQ_INT(sm_speedup(&t, &b, &s, &r, &reached, NULL), 0);
    CHECK(!reached);
    CHECK(isnan(s));
    /* the baseline against the target: reaches 8.5 between 100 (10) and 200 (8): step 175, speed-up 1 - 175/200 */
    CHECK_EQ_INT(sm_speedup(&b, &t, &s, &r, &reached, NULL), 0);
    CHECK(reached);
    CHECK_NEAR(r, 175, 1e-12);
    CHECK_NEAR(s, 0.125, 1e-15);
    /* a target that needs longer than the baseline: negative speed-up */
    double ts3[3] = {100, 200, 300}, tv3[3] = {12, 9, 7};
    sm_curve t3 = {ts3, tv3, 3, 0};
    CHECK_EQ_INT(sm_speedup(&t3, &b, &s, &r, &reached, NULL), 0);
    CHECK_NEAR(r, 250, 1e-12);
    CHECK_NEAR(s, -0.25, 1e-15);
}

TEST(tokens_per_step_converts) {
    /* the target's steps are twice as large: reach at step 100 is 100 * 2048 tokens vs 400 * 1024 */
    double bs[2] = {200, 400}, bv[2] = {10, 8};
    double ts[2] = {50, 100}, tv[2] = {9, 8};
    sm_curve b = {bs, bv, 2, 1024}, t = {ts, tv, 2, 2048};
    double s, r;
    int reached;
    CHECK_EQ_INT(sm_speedup(&t, &b, &s, &r, &reached, NULL), 0);
    CHECK_NEAR(s, 0.5, 1e-15);
    t.tokens_per_step = 0; /* unknown on one side: steps compare directly */
    CHECK_EQ_INT(sm_speedup(&t, &b, &s, &r, &reached, NULL), 0);
    CHECK_NEAR(s, 0.75, 1e-15);
}

TEST(bad_curves) {
    double s1[3] = {1, 3, 2}, v1[3] = {3, 2, 1};
    double s2[2] = {1, 2}, v2[2] = {3, NAN};
    sm_curve bad = {s1, v1, 3, 0}, nanc = {s2, v2, 2, 0}, ok = {s2, v1, 2, 0}, empty = {s2, v1, 0, 0};
    double s, r;
    int reached;
    sm_error e = {0};
    CHECK_EQ_INT(sm_speedup(&bad, &ok, &s, &r, &reached, &e), SM_ERR_ARG);
    CHECK(strstr(e.msg, "strictly increase"));
    CHECK_EQ_INT(sm_speedup(&ok, &nanc, &s, &r, &reached, &e), SM_ERR_ARG);
    CHECK_EQ_INT(sm_speedup(&empty, &ok, &s, &r, &reached, &e), SM_ERR_ARG);
}

int main(void) {
    RUN(interpolated_reach_step);
    RUN(exact_hit_and_first_point);
    RUN(never_reaches_and_slower);
    RUN(tokens_per_step_converts);
    RUN(bad_curves);
    TEST_EXIT();
}
