/* test_autoscale_waterfill.c - the exact KKT optimum against brute force over the simplex, against
 * projected gradient descent, and the KKT conditions themselves. */
#include "../sm_test.h"
#include "autoscale/sm_waterfill.h"

/* Brute force for 3 domains: a grid over (n1, n2) with n3 from the budget, zoomed in around the best
 * point. It knows nothing of the KKT conditions. */
static double brute3(const sm_wf_problem *p, double best_n[3]) {
    const double *B = p->base;
    double L = p->lower, N = p->budget;
    double lo1 = L, hi1 = (N - L * (B[1] + B[2])) / B[0], lo2 = L, hi2 = (N - L * (B[0] + B[2])) / B[1];
    double best = INFINITY, c1 = NAN, c2 = NAN;
    enum { G = 400 };
    for (int level = 0; level < 9; level++) {
        for (int i = 0; i <= G; i++) {
            double n1 = lo1 + (hi1 - lo1) * i / G;
            for (int j = 0; j <= G; j++) {
                double n2 = lo2 + (hi2 - lo2) * j / G;
                double n3 = (N - n1 * B[0] - n2 * B[1]) / B[2];
                if (n3 < L) continue;
                double n[3] = {n1, n2, n3}, f = sm_wf_objective(p, n);
                if (f < best) { best = f; c1 = n1; c2 = n2; best_n[0] = n1; best_n[1] = n2; best_n[2] = n3; }
            }
        }
        if (isnan(c1)) return best;
        double w1 = (hi1 - lo1) / 20, w2 = (hi2 - lo2) / 20;
        lo1 = fmax(L, c1 - w1); hi1 = c1 + w1;
        lo2 = fmax(L, c2 - w2); hi2 = c2 + w2;
    }
    return best;
}

typedef struct prob3 { double a[3], b[3], base[3], lower, budget; } prob3;

static const prob3 P3[] = {
    {{0.5, 0.1, 1.2}, {0.3, 0.6, 1.1}, {1e6, 1e6, 1e6}, 0.2, 3e6},       /* interior */
    {{0.5, 0.1, 1.2}, {0.3, 0.6, 1.1}, {2e6, 5e5, 1e6}, 0.2, 2.5e6},     /* unequal bases */
    {{0.1, 0.0, 0.05}, {0.02, 0.9, 1.5}, {1e6, 1e6, 1e6}, 0.2, 4e6},     /* a weak domain sits at its bound */
    {{0.8, 0.3, 0.1}, {0.2, 0.25, 0.3}, {3e5, 1e6, 7e5}, 0.2, 8e6},      /* larger budget than the base total */
};

TEST(exact_vs_brute_force_simplex) {
    for (size_t t = 0; t < SM_ARRAY_LEN(P3); t++) {
        const prob3 *q = &P3[t];
        sm_wf_problem p = {3, q->a, q->b, q->base, q->lower, q->budget};
        double n[3], lam, bn[3];
        sm_error e = {0};
        CHECK_EQ_INT(sm_wf_solve(&p, n, &lam, &e), 0);
        double fb = brute3(&p, bn), fe = sm_wf_objective(&p, n);
        CHECK_MSG(fe <= fb + 1e-14, "problem %zu: exact %.17g worse than brute force %.17g", t, fe, fb);
        CHECK_MSG(fb - fe < 1e-13, "problem %zu: brute force %.17g far from exact %.17g", t, fb, fe);
        for (int i = 0; i < 3; i++) CHECK_NEAR(n[i], bn[i], 1e-6 * fmax(1, n[i]));
    }
}

TEST(exact_vs_projected_gradient) {
    for (size_t t = 0; t < SM_ARRAY_LEN(P3); t++) {
        const prob3 *q = &P3[t];
        sm_wf_problem p = {3, q->a, q->b, q->base, q->lower, q->budget};
        double n[3], g[3];
        int iters = 0;
        CHECK_EQ_INT(sm_wf_solve(&p, n, NULL, NULL), 0);
        CHECK_EQ_INT(sm_wf_solve_pgd(&p, g, 200000, 1e-15, &iters, NULL), 0);
        for (int i = 0; i < 3; i++) CHECK_MSG(fabs(n[i] - g[i]) <= 1e-9 * fmax(1, n[i]),
                                              "problem %zu domain %d: exact %.17g, gradient %.17g (%d steps)", t, i, n[i], g[i], iters);
    }
    /* seven domains, RedPajama-like bases */
    double a[7] = {0.3, 0.1, 0.6, 0.2, 0.05, 0.4, 0.15}, b[7] = {0.35, 0.5, 0.2, 0.8, 0.3, 0.6, 0.45};
    double base[7] = {4e6, 2e6, 5e5, 5e5, 5e5, 3e5, 2e5}, n[7], g[7];
    sm_wf_problem p = {7, a, b, base, 0.2, 9e6};
    CHECK_EQ_INT(sm_wf_solve(&p, n, NULL, NULL), 0);
    CHECK_EQ_INT(sm_wf_solve_pgd(&p, g, 500000, 1e-15, NULL, NULL), 0);
    for (int i = 0; i < 7; i++) CHECK_NEAR(n[i], g[i], 1e-9 * fmax(1, n[i]));
}

TEST(kkt_conditions_hold) {
    double a[5] = {0.3, 0.1, 0.6, 0.01, 0.05}, b[5] = {0.35, 0.5, 0.2, 0.01, 1.2};
    double base[5] = {1e6, 2e6, 5e5, 1e6, 5e5}, n[5], lam;
    sm_wf_problem p = {5, a, b, base, 0.2, 6e6};
    CHECK_EQ_INT(sm_wf_solve(&p, n, &lam, NULL), 0);
    sm_wf_kkt k;
    sm_wf_kkt_check(&p, n, lam, &k);
    CHECK_MSG(k.max_violation < 1e-12, "violation %g (stat %g compl %g bound %g budget %g)", k.max_violation, k.stationarity,
              k.complementarity, k.bound, k.budget);
    /* the weak domain 3 sits at the bound, the others are free with equal marginal gain per token */
    CHECK_EQ_INT(n[3] == 0.2, 1);
    int free_count = 0;
    double g0 = NAN;
    double s = 0;
    for (int i = 0; i < 5; i++) {
        s += n[i] * base[i];
        CHECK(n[i] >= 0.2);
        if (n[i] > 0.2) {
            double g = b[i] * pow(n[i] + a[i], -b[i] - 1) / base[i];
            if (free_count++ == 0) g0 = g;
            CHECK_NEAR(g / g0, 1.0, 1e-12);
        } else {
            CHECK(b[i] * pow(n[i] + a[i], -b[i] - 1) / base[i] <= lam * (1 + 1e-12));
        }
    }
    CHECK(free_count == 4);
    CHECK_NEAR(s, 6e6, 6e6 * 1e-15);
    /* and a perturbed point violates them: the check can fail */
    n[0] *= 1.001;
    sm_wf_kkt_check(&p, n, lam, &k);
    CHECK(k.max_violation > 1e-5);
}

TEST(nonpositive_exponent_stays_at_bound) {
    double a[3] = {0.3, 0.1, 0.5}, b[3] = {0.35, -0.1, 0.0}, base[3] = {1e6, 1e6, 1e6}, n[3], lam;
    sm_wf_problem p = {3, a, b, base, 0.2, 3e6};
    CHECK_EQ_INT(sm_wf_solve(&p, n, &lam, NULL), 0);
    CHECK_EQ_INT(n[1] == 0.2 && n[2] == 0.2, 1);
    CHECK_NEAR(n[0], 2.6, 1e-12);
}

TEST(infeasible_inputs_are_errors) {
    double a[2] = {0.3, -0.25}, b[2] = {0.35, 0.5}, base[2] = {1e6, 1e6}, n[2];
    sm_error e = {0};
    sm_wf_problem p = {2, a, b, base, 0.2, 3e6};
    CHECK_EQ_INT(sm_wf_solve(&p, n, NULL, &e), SM_ERR_ARG);
    CHECK(strstr(e.msg, "diverges"));
    a[1] = 0.1;
    p.budget = 1e5;
    CHECK_EQ_INT(sm_wf_solve(&p, n, NULL, &e), SM_ERR_ARG);
    CHECK(strstr(e.msg, "below the lower bound"));
    double bneg[2] = {-0.1, 0.0};
    sm_wf_problem q = {2, a, bneg, base, 0.2, 3e6};
    CHECK_EQ_INT(sm_wf_solve(&q, n, NULL, &e), SM_ERR_ARG);
    CHECK(strstr(e.msg, "positive fitted exponent"));
}

TEST(projection_is_feasible_and_idempotent) {
    double a[3] = {0, 0, 0}, b[3] = {1, 1, 1}, base[3] = {1, 2, 3};
    sm_wf_problem p = {3, a, b, base, 0.5, 10};
    double v[3] = {5, -3, 2}, q[3], q2[3];
    sm_wf_project(&p, v, q);
    CHECK_NEAR(q[0] * 1 + q[1] * 2 + q[2] * 3, 10, 1e-12);
    for (int i = 0; i < 3; i++) CHECK(q[i] >= 0.5);
    sm_wf_project(&p, q, q2);
    for (int i = 0; i < 3; i++) CHECK_NEAR(q[i], q2[i], 1e-12);
}

static double rnd(unsigned long long *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*s >> 11) / 9007199254740992.0;
}

/* Random problems of 2 to 8 domains: exact and projected gradient agree, KKT holds. */
TEST(random_problems_exact_vs_gradient) {
    unsigned long long seed = 777;
    int at_bound = 0;
    double worst = 0;
    for (int t = 0; t < 60; t++) {
        size_t m = 2 + (size_t)(rnd(&seed) * 7);
        double a[8], b[8], base[8], n[8], g[8], lam, total = 0;
        for (size_t i = 0; i < m; i++) {
            a[i] = -0.15 + 2 * rnd(&seed);
            b[i] = 0.05 + 1.5 * rnd(&seed);
            base[i] = 1e5 * (1 + 20 * rnd(&seed));
            total += base[i];
        }
        sm_wf_problem p = {m, a, b, base, 0.2, total * (0.5 + 4 * rnd(&seed))};
        sm_error e = {0};
        CHECK_MSG(sm_wf_solve(&p, n, &lam, &e) == 0, "%s", e.msg);
        sm_wf_kkt k;
        sm_wf_kkt_check(&p, n, lam, &k);
        CHECK_MSG(k.max_violation < 1e-11, "problem %d: KKT violation %g", t, k.max_violation);
        int iters = 0;
        CHECK_EQ_INT(sm_wf_solve_pgd(&p, g, 2000000, 1e-15, &iters, NULL), 0);
        for (size_t i = 0; i < m; i++) {
            worst = fmax(worst, fabs(n[i] - g[i]) / fmax(1, n[i]));
            CHECK_MSG(fabs(n[i] - g[i]) <= 1e-10 * fmax(1, n[i]), "problem %d domain %zu: exact %.17g, gradient %.17g (%d steps)",
                      t, i, n[i], g[i], iters);
            at_bound += n[i] == 0.2;
        }
        CHECK(sm_wf_objective(&p, n) <= sm_wf_objective(&p, g) + 1e-14);
    }
    CHECK(at_bound > 0); /* the sample exercises the bound */
    printf("  60 random problems: max |exact - gradient| / max(1, n) = %.3g\n", worst);
}

int main(void) {
    RUN(exact_vs_brute_force_simplex);
    RUN(exact_vs_projected_gradient);
    RUN(kkt_conditions_hold);
    RUN(nonpositive_exponent_stays_at_bound);
    RUN(infeasible_inputs_are_errors);
    RUN(projection_is_feasible_and_idempotent);
    RUN(random_problems_exact_vs_gradient);
    TEST_EXIT();
}
