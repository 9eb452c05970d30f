/* test_autoscale_extrapolate.c - AutoScale's extrapolation is exact on data that follows the power-law
 * model: loss = sum_i beta_i N_i^-gamma_i, whose DDO optima at geometrically spaced lambda obey
 * N3 = N2^2 / N1, and whose optimum at any budget lies on the continuous form N1 r^t. */
#include "../sm_test.h"
#include "autoscale/sm_extrapolate.h"
#include "autoscale/sm_waterfill.h"

enum { M = 4 };
static const double BETA[M] = {3.0, 1.5, 0.8, 2.2}, GAMMA[M] = {0.3, 0.5, 0.15, 0.7};

/* the unconstrained optimum: beta_i gamma_i N_i^(-gamma_i - 1) = lambda */
static void optimum_at_lambda(double lambda, double *n) {
    for (int i = 0; i < M; i++) n[i] = pow(BETA[i] * GAMMA[i] / lambda, 1 / (GAMMA[i] + 1));
}

static double total(const double *n) {
    double s = 0;
    for (int i = 0; i < M; i++) s += n[i];
    return s;
}

/* the model's optimum at a budget, by bisection on log lambda (independent of the code under test) */
static void optimum_at_budget(double budget, double *n, double *lambda_out) {
    double lo = 1e-30, hi = 1e10;
    for (int it = 0; it < 400; it++) {
        double mid = sqrt(lo * hi);
        optimum_at_lambda(mid, n);
        if (total(n) > budget) lo = mid; else hi = mid;
    }
    *lambda_out = sqrt(lo * hi);
    optimum_at_lambda(*lambda_out, n);
}

static const double LAMBDA1 = 1e-7, Q = 0.25;

TEST(rule_reproduces_third_optimum) {
    double n1[M], n2[M], n3[M], got[M];
    optimum_at_lambda(LAMBDA1, n1);
    optimum_at_lambda(LAMBDA1 * Q, n2);
    optimum_at_lambda(LAMBDA1 * Q * Q, n3);
    CHECK_EQ_INT(sm_ex_steps(M, n1, n2, 1, got, NULL), 0);
    for (int i = 0; i < M; i++) CHECK_NEAR(got[i] / n3[i], 1.0, 1e-13);
    /* k steps: the optimum at lambda1 q^(k+1) */
    for (int k = 2; k <= 5; k++) {
        double want[M];
        optimum_at_lambda(LAMBDA1 * pow(Q, k + 1), want);
        CHECK_EQ_INT(sm_ex_steps(M, n1, n2, k, got, NULL), 0);
        for (int i = 0; i < M; i++) CHECK_NEAR(got[i] / want[i], 1.0, 1e-12);
    }
    /* the tolerance discriminates: a linear extrapolation (2 N2 - N1) misses the third optimum by far */
    double worst = 0;
    for (int i = 0; i < M; i++) worst = fmax(worst, fabs((2 * n2[i] - n1[i]) / n3[i] - 1));
    CHECK(worst > 1e-2);
}

/* The DDO solver itself (water filling with a = 0, b = gamma, B = beta^(1/gamma)) produces the optima. */
TEST(ddo_optima_from_waterfill_extrapolate_exactly) {
    double a[M] = {0}, b[M], B[M], want[3][M], got[3][M];
    for (int i = 0; i < M; i++) { b[i] = GAMMA[i]; B[i] = pow(BETA[i], 1 / GAMMA[i]); }
    for (int k = 0; k < 3; k++) {
        optimum_at_lambda(LAMBDA1 * pow(Q, k), want[k]);
        double minn = INFINITY;
        for (int i = 0; i < M; i++) minn = fmin(minn, want[k][i] / B[i]);
        sm_wf_problem p = {M, a, b, B, minn * 1e-6, total(want[k])};
        double nn[M];
        sm_error e = {0};
        CHECK_MSG(sm_wf_solve(&p, nn, NULL, &e) == 0, "%s", e.msg);
        for (int i = 0; i < M; i++) {
            got[k][i] = nn[i] * B[i];
            CHECK_NEAR(got[k][i] / want[k][i], 1.0, 1e-12);
        }
    }
    double pred[M];
    CHECK_EQ_INT(sm_ex_steps(M, got[0], got[1], 1, pred, NULL), 0);
    for (int i = 0; i < M; i++) CHECK_NEAR(pred[i] / got[2][i], 1.0, 1e-11);
}

TEST(continuous_form_hits_any_budget) {
    double n1[M], n2[M];
    optimum_at_lambda(LAMBDA1, n1);
    optimum_at_lambda(LAMBDA1 * Q, n2);
    double b1 = total(n1), b2 = total(n2);
    const double targets[] = {b1 * 1.3, sqrt(b1 * b2), b2 * 1.7, b2 * 10, b2 * 1234.5, b2 * 1e5};
    for (size_t k = 0; k < SM_ARRAY_LEN(targets); k++) {
        double want[M], got[M], lam, t;
        optimum_at_budget(targets[k], want, &lam);
        sm_error e = {0};
        CHECK_MSG(sm_ex_to_budget(M, n1, n2, targets[k], got, &t, &e) == 0, "%s", e.msg);
        CHECK_NEAR(total(got), targets[k], targets[k] * 1e-15);
        for (int i = 0; i < M; i++) CHECK_NEAR(got[i] / want[i], 1.0, 1e-9);
        /* lambda = lambda1 q^t */
        CHECK_NEAR(t, log(lam / LAMBDA1) / log(Q), 1e-8);
    }
    /* integer t reproduces the paper's steps, t = 1/2 the geometric mean */
    double s3[M], c3[M], half[M], t;
    CHECK_EQ_INT(sm_ex_steps(M, n1, n2, 1, s3, NULL), 0);
    CHECK_EQ_INT(sm_ex_to_budget(M, n1, n2, total(s3), c3, &t, NULL), 0);
    CHECK_NEAR(t, 2.0, 1e-12);
    for (int i = 0; i < M; i++) CHECK_NEAR(c3[i] / s3[i], 1.0, 1e-12);
    CHECK_EQ_INT(sm_ex_at(M, n1, n2, 0.5, half, NULL), 0);
    for (int i = 0; i < M; i++) CHECK_NEAR(half[i], sqrt(n1[i] * n2[i]), 1e-12 * half[i]);
}

/* A domain that shrinks as the budget grows: the total is not monotone in t for all t, the growing branch
 * is used, and budgets below its minimum are refused. */
TEST(shrinking_domain_branch) {
    double n1[2] = {1, 4}, n2[2] = {4, 3}, got[2], t;
    CHECK_EQ_INT(sm_ex_to_budget(2, n1, n2, 6, got, &t, NULL), 0);
    CHECK(t > 0 && t < 1);
    CHECK_NEAR(got[0] + got[1], 6, 1e-14);
    CHECK_NEAR(got[0], pow(4, t), 1e-12);
    CHECK_NEAR(got[1], 4 * pow(0.75, t), 1e-12);
    CHECK_EQ_INT(sm_ex_to_budget(2, n1, n2, 100, got, &t, NULL), 0);
    CHECK_NEAR(got[0] + got[1], 100, 1e-12);
    CHECK(got[1] < 3);
    sm_error e = {0};
    CHECK_EQ_INT(sm_ex_to_budget(2, n1, n2, 1, got, &t, &e), SM_ERR_ARG);
    CHECK(strstr(e.msg, "smallest total"));
}

TEST(bad_inputs) {
    double n1[2] = {1, 4}, n2[2] = {0.5, 3}, got[2];
    sm_error e = {0};
    CHECK_EQ_INT(sm_ex_steps(2, n1, n2, 1, got, &e), SM_ERR_ARG);
    CHECK(strstr(e.msg, "smaller budget first"));
    double z[2] = {0, 4};
    CHECK_EQ_INT(sm_ex_steps(2, z, n1, 1, got, &e), SM_ERR_ARG);
    double n3[2] = {2, 5};
    CHECK_EQ_INT(sm_ex_steps(2, n1, n3, 0, got, &e), SM_ERR_ARG);
    CHECK_EQ_INT(sm_ex_to_budget(2, n1, n3, -5, got, NULL, &e), SM_ERR_ARG);
}

TEST(validation_errors_by_hand) {
    double pred[2] = {2, 2}, act[2] = {1, 3}, tr[2], wa[2], wr[2];
    sm_ex_errors s;
    CHECK_EQ_INT(sm_ex_compare(2, pred, act, tr, wa, wr, &s, NULL), 0);
    CHECK_NEAR(tr[0], 1.0, 1e-15);
    CHECK_NEAR(tr[1], -1.0 / 3, 1e-15);
    CHECK_NEAR(wa[0], 0.25, 1e-15);
    CHECK_NEAR(wa[1], -0.25, 1e-15);
    CHECK_NEAR(wr[0], 1.0, 1e-15);
    CHECK_NEAR(s.l1, 0.5, 1e-15);
    CHECK_NEAR(s.max_abs_weight_err, 0.25, 1e-15);
    CHECK_NEAR(s.mean_abs_weight_err, 0.25, 1e-15);
    CHECK_NEAR(s.max_abs_token_rel_err, 1.0, 1e-15);
}

int main(void) {
    RUN(rule_reproduces_third_optimum);
    RUN(ddo_optima_from_waterfill_extrapolate_exactly);
    RUN(continuous_form_hits_any_budget);
    RUN(shrinking_domain_branch);
    RUN(bad_inputs);
    RUN(validation_errors_by_hand);
    TEST_EXIT();
}
