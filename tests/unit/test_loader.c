/* test_loader.c - the mixture data loader: exact per-domain counts, determinism, sequential windows,
 * epochs, seek, validation reads, and rejection of bad shards and mixtures. */
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
    uint64_t next_window[3] = {0};
    for (int bi = 0; bi < 105; bi++) {
        CHECK_MSG(sm_loader_next(ld, in, tg, &e) == 0, "%s", e.msg);
        for (int r = 0; r < B; r++) {
            int d = domain_of(in[r * T]);
            count[d]++;
            uint64_t windows = d == 0 ? 199 : d == 1 ? 499 : 19;
            uint32_t base = d == 0 ? 0 : d == 1 ? 10000 : 20000;
            /* sequential windows of T+1 (stride T), wrapping */
            uint64_t w = next_window[d]++ % windows;
            for (int t = 0; t < T; t++) {
                CHECK_EQ_INT(in[r * T + t], base + w * T + t);
                CHECK_EQ_INT(tg[r * T + t], in[r * T + t] + 1);
            }
        }
    }
    CHECK(count[0] == 158 && count[1] == 94 && count[2] == 63);
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
    RUN(validation_reads_span_shards);
    RUN(bad_inputs_rejected);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", tmpdir);
    TEST_EXIT();
}
