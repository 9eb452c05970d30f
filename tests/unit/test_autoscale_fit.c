/* test_autoscale_fit.c - the DDO power law fit recovers known (a, b, c) from synthetic responses. */
#include "../sm_test.h"
#include "autoscale/sm_fit.h"

static const double X3[3] = {0.2, 1.0, 3.0};
static const double X5[5] = {0.2, 0.5, 1.0, 2.0, 3.0};

static void gen(const double *x, size_t n, double a, double b, double c, double *y) {
    for (size_t k = 0; k < n; k++) y[k] = sm_fit_eval(a, b, c, x[k]);
}

/* Three points: the interpolant with the smaller exponent is returned; truths with a small exponent are it. */
TEST(three_points_exact_recovery) {
    static const double truth[][3] = {{0.5, 0.3, 0.2}, {0.05, 0.1, -0.5}, {-0.1, 0.05, 0.1}, {0.0, 0.5, 0.0}, {3.0, 0.2, 0.5}};
    for (size_t t = 0; t < SM_ARRAY_LEN(truth); t++) {
        double y[3];
        gen(X3, 3, truth[t][0], truth[t][1], truth[t][2], y);
        sm_fit_result r;
        sm_error e = {0};
        CHECK_EQ_INT(sm_fit_power_law(X3, y, 3, &r, &e), 0);
        CHECK(r.exact);
        CHECK_EQ_INT(r.flags, 0);
        CHECK_MSG(r.max_abs_resid <= 1e-12, "truth %zu: max residual %g", t, r.max_abs_resid);
        CHECK_NEAR(r.a, truth[t][0], 1e-9);
        CHECK_NEAR(r.b, truth[t][1], 1e-9);
        CHECK_NEAR(r.c, truth[t][2], 1e-9);
    }
}

/* The family has two exact interpolants of generic convex data; a truth with the larger exponent comes back
 * as the alternative, and both curves pass through the points. */
TEST(three_points_second_interpolant) {
    static const double truth[][3] = {{1.35, 1.04, 0.67}, {2.0, 2.0, 0.5}};
    for (size_t t = 0; t < SM_ARRAY_LEN(truth); t++) {
        double y[3];
        gen(X3, 3, truth[t][0], truth[t][1], truth[t][2], y);
        sm_fit_result r;
        CHECK_EQ_INT(sm_fit_power_law(X3, y, 3, &r, NULL), 0);
        CHECK(r.exact && r.has_alt);
        CHECK(r.b < r.alt_b);
        CHECK_NEAR(r.alt_a, truth[t][0], 1e-8);
        CHECK_NEAR(r.alt_b, truth[t][1], 1e-8);
        CHECK_NEAR(r.alt_c, truth[t][2], 1e-8);
        for (int k = 0; k < 3; k++) {
            CHECK_NEAR(sm_fit_eval(r.a, r.b, r.c, X3[k]), y[k], 1e-10);
            CHECK_NEAR(sm_fit_eval(r.alt_a, r.alt_b, r.alt_c, X3[k]), y[k], 1e-10);
        }
    }
}

/* Unsorted input and the paper's factors around a base point at (1, 1). */
TEST(three_points_unsorted_typical) {
    double x[3] = {3.0, 0.2, 1.0}, y[3] = {0.962, 1.081, 1.0};
    sm_fit_result r;
    CHECK_EQ_INT(sm_fit_power_law(x, y, 3, &r, NULL), 0);
    CHECK(r.exact);
    CHECK_EQ_INT(r.flags, 0);
    for (int k = 0; k < 3; k++) CHECK_NEAR(sm_fit_eval(r.a, r.b, r.c, x[k]), y[k], 1e-10);
    CHECK(r.b > 0);
}

TEST(five_points_least_squares_recovery) {
    static const double truth[][3] = {{0.5, 0.3, 0.2}, {1.35, 1.04, 0.67}, {0.05, 0.1, -0.5}, {2.0, 2.0, 0.5},
                                      {-0.1, 0.05, 0.1}, {0.3, 0.8, 0.4}};
    for (size_t t = 0; t < SM_ARRAY_LEN(truth); t++) {
        double y[5];
        gen(X5, 5, truth[t][0], truth[t][1], truth[t][2], y);
        sm_fit_result r;
        CHECK_EQ_INT(sm_fit_power_law(X5, y, 5, &r, NULL), 0);
        CHECK(!r.exact);
        CHECK_MSG(r.flags == 0, "truth %zu: flags %u", t, r.flags);
        CHECK_MSG(r.rmse < 1e-12, "truth %zu: rmse %g", t, r.rmse);
        CHECK_NEAR(r.a, truth[t][0], 1e-7);
        CHECK_NEAR(r.b, truth[t][1], 1e-7);
        CHECK_NEAR(r.c, truth[t][2], 1e-7);
    }
}

/* Noisy data: a least-squares fit with a residual that reflects the noise. */
TEST(noisy_least_squares_reports_residuals) {
    double x[7] = {0.2, 0.33, 0.5, 1, 1.5, 2, 3}, y[7];
    static const double noise[7] = {0.002, -0.0015, 0.001, 0, -0.002, 0.0015, -0.001};
    gen(x, 7, 0.5, 0.3, 0.2, y);
    for (int k = 0; k < 7; k++) y[k] += noise[k];
    sm_fit_result r;
    CHECK_EQ_INT(sm_fit_power_law(x, y, 7, &r, NULL), 0);
    CHECK(r.rmse > 1e-5 && r.rmse < 0.002);
    CHECK(r.max_abs_resid < 0.004);
    CHECK(r.b > 0);
    CHECK_EQ_INT(r.flags, 0);
}

TEST(flags_non_monotone_and_exponent) {
    /* more data of the domain makes its metric worse: non-monotone, exponent not positive */
    double x[3] = {0.2, 1, 3}, y[3] = {0.95, 1.0, 1.03};
    sm_fit_result r;
    CHECK_EQ_INT(sm_fit_power_law(x, y, 3, &r, NULL), 0);
    CHECK(r.flags & SM_FIT_NON_MONOTONE);
    CHECK(r.flags & SM_FIT_NON_POSITIVE_EXP);
    CHECK(r.b <= 0);
    char s[128];
    sm_fit_flags_str(r.flags, s, sizeof s);
    CHECK(strstr(s, "non_monotone") && strstr(s, "non_positive_exponent"));
    /* a bump in the middle */
    double y2[3] = {1.05, 1.0, 1.02};
    CHECK_EQ_INT(sm_fit_power_law(x, y2, 3, &r, NULL), 0);
    CHECK(r.flags & SM_FIT_NON_MONOTONE);
    CHECK(!r.exact);
}

TEST(flags_inexact_concave) {
    /* decreasing but concave: no curve of the (convex) family passes through all three */
    double x[3] = {0.2, 1, 3}, y[3] = {1.01, 1.0, 0.9};
    sm_fit_result r;
    CHECK_EQ_INT(sm_fit_power_law(x, y, 3, &r, NULL), 0);
    CHECK(!r.exact);
    CHECK(r.flags & SM_FIT_INEXACT);
    CHECK(!(r.flags & SM_FIT_NON_MONOTONE));
    CHECK(r.max_abs_resid > 1e-6);
}

TEST(bad_input_errors) {
    double x[3] = {0.2, 1, 3}, y[3] = {1.1, 1, 0.95};
    sm_fit_result r;
    sm_error e = {0};
    CHECK_EQ_INT(sm_fit_power_law(x, y, 2, &r, &e), SM_ERR_ARG);
    CHECK(strstr(e.msg, "at least 3"));
    double xd[3] = {0.2, 1, 1};
    CHECK_EQ_INT(sm_fit_power_law(xd, y, 3, &r, &e), SM_ERR_ARG);
    CHECK(strstr(e.msg, "distinct"));
    double xn[3] = {-0.2, 1, 3};
    CHECK_EQ_INT(sm_fit_power_law(xn, y, 3, &r, &e), SM_ERR_ARG);
    double yn[3] = {NAN, 1, 0.9};
    CHECK_EQ_INT(sm_fit_power_law(x, yn, 3, &r, &e), SM_ERR_ARG);
    /* four points with a duplicated x is a least-squares fit, not an error */
    double x4[4] = {0.2, 1, 1, 3}, y4[4];
    gen(x4, 4, 0.5, 0.3, 0.2, y4);
    CHECK_EQ_INT(sm_fit_power_law(x4, y4, 4, &r, &e), 0);
    CHECK_NEAR(r.b, 0.3, 1e-7);
}

static double rnd(unsigned long long *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*s >> 11) / 9007199254740992.0;
}

/* Many random truths: the three-point fit always interpolates, and the truth is one of the two
 * interpolants; five points recover it. */
TEST(random_truths_stress) {
    unsigned long long seed = 12345;
    int alt_hits = 0;
    for (int t = 0; t < 300; t++) {
        double a = -0.19 + 3.2 * rnd(&seed), b = 0.02 + 2.5 * rnd(&seed), c = -1 + 2 * rnd(&seed);
        double y[5];
        gen(X3, 3, a, b, c, y);
        sm_fit_result r;
        CHECK_EQ_INT(sm_fit_power_law(X3, y, 3, &r, NULL), 0);
        CHECK_MSG(r.max_abs_resid <= 1e-10, "truth (%g, %g, %g): residual %g, flags %u", a, b, c, r.max_abs_resid, r.flags);
        CHECK_MSG(r.flags == 0, "truth (%g, %g, %g): flags %u", a, b, c, r.flags);
        int main_hit = fabs(r.a - a) < 1e-6 * (1 + fabs(a)) && fabs(r.b - b) < 1e-6 * (1 + b);
        int alt_hit = r.has_alt && fabs(r.alt_a - a) < 1e-6 * (1 + fabs(a)) && fabs(r.alt_b - b) < 1e-6 * (1 + b);
        CHECK_MSG(main_hit || alt_hit, "truth (%g, %g, %g) not among (%g, %g, %g) and alt (%g, %g, %g)", a, b, c, r.a, r.b,
                  r.c, r.alt_a, r.alt_b, r.alt_c);
        alt_hits += alt_hit && !main_hit;
        gen(X5, 5, a, b, c, y);
        CHECK_EQ_INT(sm_fit_power_law(X5, y, 5, &r, NULL), 0);
        CHECK_MSG(fabs(r.a - a) < 1e-6 * (1 + fabs(a)) && fabs(r.b - b) < 1e-6 * (1 + b) && fabs(r.c - c) < 1e-6,
                  "5 points, truth (%g, %g, %g): got (%g, %g, %g) rmse %g", a, b, c, r.a, r.b, r.c, r.rmse);
    }
    printf("  random truths: %d of 300 came back as the alternative interpolant\n", alt_hits);
}

int main(void) {
    RUN(three_points_exact_recovery);
    RUN(three_points_second_interpolant);
    RUN(three_points_unsorted_typical);
    RUN(five_points_least_squares_recovery);
    RUN(noisy_least_squares_reports_residuals);
    RUN(flags_non_monotone_and_exponent);
    RUN(flags_inexact_concave);
    RUN(bad_input_errors);
    RUN(random_truths_stress);
    TEST_EXIT();
}
