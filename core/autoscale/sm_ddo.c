/* sm_ddo.c - fit every domain, hold the unusable or asked-for ones at base, water-fill the rest. */
#include "sm_ddo.h"

#include <math.h>
#include <stdlib.h>

int sm_ddo_solve(const sm_ddo_problem *p, sm_ddo_solution *s, sm_error *err) {
    size_t m = p->m, mf = 0, nheld = 0;
    double *a = malloc(m * sizeof *a), *b = malloc(m * sizeof *b), *fb = malloc(m * sizeof *fb), *fn = malloc(m * sizeof *fn);
    int rc = SM_OK;
    if (!a || !b || !fb || !fn) { rc = sm_error_set(err, SM_ERR_NOMEM, "fit: out of memory"); goto out; }
    double left = p->budget;
    for (size_t i = 0; i < m; i++) {
        sm_fit_result *fr = &s->fits[i];
        if ((rc = sm_fit_power_law(p->x[i], p->y[i], p->npts[i], fr, err))) {
            sm_error_wrap(err, "fit: domain '%s'", p->domains[i]);
            goto out;
        }
        /* both curves pass through the points; "saturating" uses the second */
        if (p->saturating) sm_fit_use_alt(fr, p->x[i], p->y[i], p->npts[i]);
        s->held[i] = SM_DDO_FREE;
        if (p->hold && p->hold[i]) {
            s->held[i] = SM_DDO_HELD_ASKED;
        } else if (!(p->lower + fr->a > 0) || (fr->flags & SM_FIT_NO_CONVERGENCE) || !isfinite(fr->a) || !isfinite(fr->b)) {
            if (p->fail_bad) {
                rc = sm_error_set(err, SM_ERR_ARG,
                                  "fit: domain '%s': lower bound %g is at or below -a = %g, where its fitted curve diverges, "
                                  "or the fit did not converge; raise 'lower', or set on_bad_fit = \"hold\"",
                                  p->domains[i], p->lower, -fr->a);
                goto out;
            }
            s->held[i] = SM_DDO_HELD_BAD_FIT;
        }
        if (s->held[i]) {
            s->n[i] = 1;
            left -= p->base[i];
            nheld++;
            continue;
        }
        a[mf] = fr->a, b[mf] = fr->b, fb[mf] = p->base[i];
        mf++;
    }
    sm_wf_problem wp = {mf, a, b, fb, p->lower, left};
    s->lambda = s->objective = 0;
    s->kkt = (sm_wf_kkt){0};
    if (mf == 0) {
        /* nothing to optimise: every domain keeps its share of the base run, scaled to the budget */
        for (size_t i = 0; i < m; i++) s->n[i] = p->budget / (p->budget - left);
        goto out;
    }
    if ((rc = sm_wf_solve(&wp, fn, &s->lambda, err))) {
        sm_error_wrap(err, "fit%s", nheld ? " (with some domains held at their base quantity)" : "");
        goto out;
    }
    sm_wf_kkt_check(&wp, fn, s->lambda, &s->kkt);
    s->objective = sm_wf_objective(&wp, fn);
    for (size_t i = 0, j = 0; i < m; i++)
        if (!s->held[i]) s->n[i] = fn[j++];
out:
    free(a); free(b); free(fb); free(fn);
    return rc;
}
