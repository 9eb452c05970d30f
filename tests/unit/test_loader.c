/* test_loader.c - the mixture data loader: exact per-domain counts, determinism, permuted windows,
 * epochs, seek, common random numbers across mixtures, the spread validation sample, validation reads,
 * and rejection of bad shards and mixtures. */
#include "../sm_test.h"
#include "model/sm_loader.h"
#include "model/sm_shard.h"

#include <stdint.h>
#include <unistd.h>

static char tmpdir[256];

static const char *tpath(const char *name) {
    static char buf[16][512];
    static int k;
    k = (k + 1) % 16;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

/* A shard whose token i is base + i (mod 50000): a window's position is visible in its tokens. */
static void write_seq_shard(const char *path, uint32_t base, size_t n) {
    uint32_t *t = malloc(n * 4);
    for (size_t i = 0; i < n; i++) t[i] = (uint32_t)((base + i) % 50000);
    sm_shard_writer w;
    sm_error e = {0};
    CHECK(sm_shard_writer_open(&w, path, &e) == 0);
    CHECK(sm_shard_writer_append(&w, t, n, &e) == 0);
    CHECK(sm_shard_writer_close(&w, &e) == 0);
    free(t);
}

/* domains: a = 2 shards (1000 + 1000 tokens from 0), b = 10000.., c = 20000.. (small: 200 tokens) */
static sm_loader *open3(void) {
    static const char *a_tr[2], *b_tr[1], *c_tr[1], *a_va[1], *b_va[2], *c_va[1];
    a_tr[0] = tpath("a0.bin"); a_tr[1] = tpath("a1.bin");
    b_tr[0] = tpath("b0.bin"); c_tr[0] = tpath("c0.bin");
    a_va[0] = tpath("av.bin"); b_va[0] = tpath("bv0.bin"); b_va[1] = tpath("bv1.bin"); c_va[0] = tpath("cv.bin");
    sm_loader_domain d[3] = {
        {.name = "a", .train_paths = a_tr, .ntrain = 2, .val_paths = a_va, .nval = 1},
        {.name = "b", .train_paths = b_tr, .ntrain = 1, .val_paths = b_va, .nval = 2},
        {.name = "c", .train_paths = c_tr, .ntrain = 1, .val_paths = c_va, .nval = 1},
    };
    sm_loader *ld = NULL;
    sm_error e = {0};
    int rc = sm_loader_open(&ld, d, 3, &e);
    if (rc) fprintf(stderr, "  %s\n", e.msg);
    return ld;
}

static void setup(void) {
    write_seq_shard(tpath("a0.bin"), 0, 1000);
    write_seq_shard(tpath("a1.bin"), 1000, 1000);
    write_seq_shard(tpath("b0.bin"), 10000, 5000);
    write_seq_shard(tpath("c0.bin"), 20000, 200);
    write_seq_shard(tpath("av.bin"), 30000, 300);
    write_seq_shard(tpath("bv0.bin"), 40000, 100);
    write_seq_shard(tpath("bv1.bin"), 40100, 100);
    write_seq_shard(tpath("cv.bin"), 45000, 50);
}

static int domain_of(int32_t tok) { return tok < 10000 ? 0 : tok < 20000 ? 1 : 2; }

TEST(exact_counts_and_windows) {
    sm_loader *ld = open3();
    CHECK(ld);
    CHECK_EQ_INT(sm_loader_num_domains(ld), 3);
    CHECK_EQ_STR(sm_loader_domain_name(ld, 1), "b");
    CHECK_EQ_INT(sm_loader_train_tokens(ld, 0), 2000);
    sm_error e = {0};
    int B = 3, T = 10;
    /* 1/3 each of 900 tokens = 90 sequences of 10: 30 each exactly */
    CHECK_MSG(sm_loader_set_tokens(ld, (double[]){300, 300, 300}, B, T, 5, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(sm_loader_num_batches(ld), 30);
    uint64_t planned[3];
    sm_loader_planned(ld, planned);
    CHECK(planned[0] == 30 && planned[1] == 30 && planned[2] == 30);
    /* weights 0.5/0.3/0.2 of 3150 tokens: 105 batches of 3 = 315 sequences; quotas 157.5, 94.5, 63;
     * largest remainder gives the one spare sequence to the lower index of the tie */
    CHECK(sm_loader_set_weights(ld, (double[]){5, 3, 2}, 3150, B, T, 5, &e) == 0);
    CHECK_EQ_INT(sm_loader_num_batches(ld), 105);
    sm_loader_planned(ld, planned);
    CHECK_EQ_INT(planned[0] + planned[1] + planned[2], 315);
    CHECK_EQ_INT(planned[0], 158); /* 157.5 -> 158 (tie, lower index) */
    CHECK_EQ_INT(planned[1], 94);  /* 94.5 -> 94 */
    CHECK_EQ_INT(planned[2], 63);
    int32_t in[30], tg[30];
    uint64_t count[3] = {0};
    int64_t win[3][200];
    for (int bi = 0; bi < 105; bi++) {
        CHECK_MSG(sm_loader_next(ld, in, tg, &e) == 0, "%s", e.msg);
        for (int r = 0; r < B; r++) {
            int d = domain_of(in[r * T]);
            uint32_t base = d == 0 ? 0 : d == 1 ? 10000 : 20000;
            /* whole windows of T+1 (stride T) */
            CHECK_EQ_INT((in[r * T] - base) % T, 0);
            for (int t = 0; t < T; t++) {
                CHECK_EQ_INT(in[r * T + t], in[r * T] + t);
                CHECK_EQ_INT(tg[r * T + t], in[r * T + t] + 1);
            }
            win[d][count[d]++] = (in[r * T] - base) / T;
        }
    }
    CHECK(count[0] == 158 && count[1] == 94 && count[2] == 63);
    /* each domain's windows come in a permuted order: no window twice before all were served, then the
     * same order again (domain c has 19 windows and is asked for 63 sequences) */
    for (int d = 0; d < 3; d++) {
        uint64_t windows = d == 0 ? 199 : d == 1 ? 499 : 19;
        for (uint64_t i = 0; i < count[d]; i++)
            for (uint64_t k = 0; k < i; k++)
                if (i - k < windows) CHECK(win[d][i] != win[d][k]);
                else if (i - k == windows) CHECK_EQ_INT(win[d][i], win[d][k]);
    }
    /* spread over the domain, not its first windows: domain b's first 8 sequences span most of its 499 */
    int64_t lo = win[1][0], hi = win[1][0];
    for (int i = 1; i < 8; i++) {
        lo = win[1][i] < lo ? win[1][i] : lo;
        hi = win[1][i] > hi ? win[1][i] : hi;
    }
    CHECK_MSG(hi - lo > 250, "domain b's first 8 windows span %lld..%lld", (long long)lo, (long long)hi);
    CHECK(sm_loader_next(ld, in, tg, &e) == SM_ERR_ARG); /* exhausted */
    uint64_t served[3];
    double ep[3];
    sm_loader_served(ld, served, ep);
    CHECK(served[0] == 1580 && served[1] == 940 && served[2] == 630);
    CHECK_NEAR(ep[0], 0.0, 0);
    CHECK_NEAR(ep[1], 0.0, 0);
    CHECK_NEAR(ep[2], 63.0 / 19 - 1, 1e-12); /* domain c repeated */
    sm_loader_free(ld);
}

TEST(deterministic_from_seed_and_seekable) {
    sm_loader *l1 = open3(), *l2 = open3();
    CHECK(l1 && l2);
    sm_error e = {0};
    double tok[3] = {2000, 3000, 1000};
    CHECK(sm_loader_set_tokens(l1, tok, 2, 8, 77, &e) == 0);
    CHECK(sm_loader_set_tokens(l2, tok, 2, 8, 77, &e) == 0);
    int64_t nb = sm_loader_num_batches(l1);
    CHECK_EQ_INT(nb, 375);
    int32_t *all = malloc((size_t)nb * 16 * 4), in[16], tg[16];
    for (int64_t i = 0; i < nb; i++) {
        CHECK(sm_loader_next(l1, all + i * 16, tg, &e) == 0);
        CHECK(sm_loader_next(l2, in, tg, &e) == 0);
        CHECK(memcmp(in, all + i * 16, sizeof in) == 0);
    }
    /* another seed: same counts, another order */
    CHECK(sm_loader_set_tokens(l2, tok, 2, 8, 78, &e) == 0);
    int differ = 0;
    for (int64_t i = 0; i < nb; i++) {
        CHECK(sm_loader_next(l2, in, tg, &e) == 0);
        differ |= memcmp(in, all + i * 16, sizeof in) != 0;
    }
    CHECK(differ);
    /* seek reproduces the stream and the served counts from any position */
    CHECK(sm_loader_set_tokens(l2, tok, 2, 8, 77, &e) == 0);
    uint64_t s1[3], s2[3];
    CHECK(sm_loader_set_tokens(l1, tok, 2, 8, 77, &e) == 0);
    for (int i = 0; i < 100; i++) CHECK(sm_loader_next(l1, in, tg, &e) == 0);
    CHECK(sm_loader_seek(l2, 100, &e) == 0);
    CHECK_EQ_INT(sm_loader_position(l2), 100);
    sm_loader_served(l1, s1, NULL);
    sm_loader_served(l2, s2, NULL);
    CHECK(memcmp(s1, s2, sizeof s1) == 0);
    CHECK(sm_loader_next(l2, in, tg, &e) == 0);
    CHECK(memcmp(in, all + 100 * 16, sizeof in) == 0);
    CHECK(sm_loader_seek(l2, (uint64_t)nb + 1, &e) == SM_ERR_ARG);
    free(all);
    sm_loader_free(l1);
    sm_loader_free(l2);
}

/* The stream of set_tokens as (domain, window) per sequence. */
static int64_t stream(sm_loader *ld, const double *tok, uint64_t seed, int *dom, int64_t *win) {
    sm_error e = {0};
    int B = 2, T = 8;
    CHECK_MSG(sm_loader_set_tokens(ld, tok, B, T, seed, &e) == 0, "%s", e.msg);
    int64_t nb = sm_loader_num_batches(ld), n = 0;
    int32_t in[16], tg[16];
    for (int64_t i = 0; i < nb; i++) {
        CHECK(sm_loader_next(ld, in, tg, &e) == 0);
        for (int r = 0; r < B; r++, n++) {
            dom[n] = domain_of(in[r * T]);
            win[n] = (in[r * T] - (dom[n] == 0 ? 0 : dom[n] == 1 ? 10000 : 20000)) / T;
        }
    }
    return n;
}

/* Is the subsequence of (dom, win) over domains in `keep` (a bit mask) of one stream a prefix of the other's? */
static int restricted_prefix(const int *d1, const int64_t *w1, int64_t n1, const int *d2, const int64_t *w2, int64_t n2, int keep) {
    int64_t i = 0, k = 0;
    for (;;) {
        while (i < n1 && !(keep >> d1[i] & 1)) i++;
        while (k < n2 && !(keep >> d2[k] & 1)) k++;
        if (i == n1 || k == n2) return 1;
        if (d1[i] != d2[k] || w1[i] != w2[k]) return 0;
        i++;
        k++;
    }
}

TEST(common_random_numbers_across_mixtures) {
    sm_loader *ld = open3();
    CHECK(ld);
    enum { CAP = 4000 };
    static int d0[CAP], d1[CAP];
    static int64_t w0[CAP], w1[CAP];
    const double base[3] = {2000, 3000, 1000};
    int64_t n0 = stream(ld, base, 77, d0, w0);
    /* each domain perturbed up (x3) and down (x0.2), as DDO does: every domain's own sequence of windows is
     * a prefix or an extension of the base run's, and the other domains' interleaving is unchanged */
    for (int p = 0; p < 3; p++) {
        for (int up = 0; up < 2; up++) {
            double tok[3] = {base[0], base[1], base[2]};
            tok[p] *= up ? 3.0 : 0.2;
            int64_t n1 = stream(ld, tok, 77, d1, w1);
            for (int d = 0; d < 3; d++)
                CHECK_MSG(restricted_prefix(d0, w0, n0, d1, w1, n1, 1 << d), "domain %d, perturbing %d x%s", d, p, up ? "3" : "0.2");
            CHECK_MSG(restricted_prefix(d0, w0, n0, d1, w1, n1, 7 & ~(1 << p)), "others' order, perturbing %d", p);
        }
    }
    /* another seed orders domain a's windows differently: the check above can tell two orders apart */
    int64_t n1 = stream(ld, base, 78, d1, w1);
    CHECK(!restricted_prefix(d0, w0, n0, d1, w1, n1, 1));
    sm_loader_free(ld);
}

TEST(validation_sample_spread_and_fixed) {
    sm_loader *l1 = open3(), *l2 = open3();
    CHECK(l1 && l2);
    sm_error e = {0};
    int T = 10;
    CHECK_EQ_INT(sm_loader_val_rows(l1, 0, T), 29); /* 300 tokens */
    /* a sample of 5 of 29 rows: the middle row of each fifth (2, 8, 14, 20, 26), not the first rows */
    int32_t in[50], tg[50], in2[50], tg2[50];
    CHECK_MSG(sm_loader_val_batch(l1, 0, T, 5, 0, 5, in, tg, &e) == 0, "%s", e.msg);
    const int want[5] = {2, 8, 14, 20, 26};
    for (int r = 0; r < 5; r++)
        for (int t = 0; t < T; t++) {
            CHECK_EQ_INT(in[r * T + t], 30000 + want[r] * T + t);
            CHECK_EQ_INT(tg[r * T + t], in[r * T + t] + 1);
        }
    /* rows 3..4 alone are the same rows; the sample does not depend on the training mixture or seed */
    CHECK(sm_loader_set_tokens(l2, (double[]){100, 3000, 50}, 1, T, 9, &e) == 0);
    CHECK(sm_loader_val_batch(l2, 0, T, 5, 3, 2, in2, tg2, &e) == 0);
    CHECK(memcmp(in2, in + 3 * T, 2 * T * sizeof(int32_t)) == 0);
    /* across a domain's two shards (b: 200 tokens, 19 rows): the sample reaches into the second shard */
    CHECK(sm_loader_val_batch(l1, 1, T, 4, 0, 4, in, tg, &e) == 0);
    CHECK(in[3 * T] >= 40100);
    /* a sample larger than the shard is all rows in order */
    CHECK(sm_loader_val_batch(l1, 2, T, 100, 0, 4, in, tg, &e) == 0); /* c: 50 tokens, 4 rows */
    for (int r = 0; r < 4; r++) CHECK_EQ_INT(in[r * T], 45000 + r * T);
    CHECK(sm_loader_val_batch(l1, 2, T, 100, 2, 3, in, tg, &e) == SM_ERR_ARG);
    CHECK(strstr(e.msg, "domain c"));
    CHECK(sm_loader_val_batch(l1, 7, T, 1, 0, 1, in, tg, &e) == SM_ERR_ARG);
    sm_loader_free(l1);
    sm_loader_free(l2);
}

TEST(validation_reads_span_shards) {
    sm_loader *ld = open3();
    CHECK(ld);
    sm_error e = {0};
    CHECK_EQ_INT(sm_loader_val_tokens(ld, 1), 200);
    int32_t buf[20];
    CHECK(sm_loader_val_read(ld, 1, 90, 20, buf, &e) == 0);
    for (int i = 0; i < 20; i++) CHECK_EQ_INT(buf[i], 40090 + i);
    CHECK(sm_loader_val_read(ld, 1, 190, 11, buf, &e) == SM_ERR_ARG);
    CHECK(sm_loader_val_read(ld, 5, 0, 1, buf, &e) == SM_ERR_ARG);
    sm_loader_free(ld);
}

TEST(bad_inputs_rejected) {
    sm_error e = {0};
    sm_loader *ld = NULL;
    /* truncated shard */
    write_seq_shard(tpath("t.bin"), 0, 100);
    FILE *f = fopen(tpath("t.bin"), "r+b");
    CHECK(f && ftruncate(fileno(f), 1024 + 150) == 0);
    fclose(f);
    const char *tr[1] = {tpath("t.bin")}, *va[1] = {tpath("av.bin")};
    sm_loader_domain d = {.name = "t", .train_paths = tr, .ntrain = 1, .val_paths = va, .nval = 1};
    CHECK(sm_loader_open(&ld, &d, 1, &e) == SM_ERR_FORMAT);
    CHECK(strstr(e.msg, tpath("t.bin")) && strstr(e.msg, "domain t"));
    /* foreign file */
    f = fopen(tpath("foreign.bin"), "wb");
    for (int i = 0; i < 2000; i++) fputc('x', f);
    fclose(f);
    tr[0] = tpath("foreign.bin");
    CHECK(sm_loader_open(&ld, &d, 1, &e) == SM_ERR_FORMAT);
    tr[0] = tpath("nope.bin");
    CHECK(sm_loader_open(&ld, &d, 1, &e) == SM_ERR_IO);
    CHECK(sm_loader_open(&ld, &d, 0, &e) == SM_ERR_ARG);
    /* mixtures */
    ld = open3();
    CHECK(ld);
    int32_t in[8], tg[8];
    CHECK(sm_loader_next(ld, in, tg, &e) == SM_ERR_ARG); /* no mixture yet */
    CHECK(sm_loader_set_tokens(ld, (double[]){-1, 10, 10}, 1, 8, 1, &e) == SM_ERR_ARG);
    CHECK(sm_loader_set_tokens(ld, (double[]){0, 0, 0}, 1, 8, 1, &e) == SM_ERR_ARG);
    CHECK(sm_loader_set_weights(ld, (double[]){0, 0, 0}, 100, 1, 8, 1, &e) == SM_ERR_ARG);
    CHECK(sm_loader_set_weights(ld, (double[]){1, NAN, 0}, 100, 1, 8, 1, &e) == SM_ERR_ARG);
    /* a domain too small for one sequence, when it is asked for */
    CHECK(sm_loader_set_tokens(ld, (double[]){0, 0, 1000}, 1, 250, 1, &e) == SM_ERR_ARG);
    CHECK(strstr(e.msg, "domain c"));
    CHECK(sm_loader_set_tokens(ld, (double[]){1000, 0, 0}, 1, 250, 1, &e) == 0);
    sm_loader_free(ld);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sm-test-loader.XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    setup();
    RUN(exact_counts_and_windows);
    RUN(deterministic_from_seed_and_seekable);
    RUN(common_random_numbers_across_mixtures);
    RUN(validation_sample_spread_and_fixed);
    RUN(validation_reads_span_shards);
    RUN(bad_inputs_rejected);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", tmpdir);
    TEST_EXIT();
}
