/* test_autoscale_svg.c - the SVG chart writer produces well-formed SVG holding every series. */
#include "../sm_test.h"
#include "autoscale/sm_svg.h"
#include "test_autoscale_xml.h"
#include <unistd.h>

TEST(xml_checker_catches_errors) {
    CHECK(xml_check("<svg><g></g></svg>", "svg") == NULL);
    CHECK(xml_check("<svg><g></svg>", "svg") != NULL);
    CHECK(xml_check("<svg a=\"<\"/>", "svg") != NULL);
    CHECK(xml_check("<svg>&nbsp;</svg>", "svg") != NULL);
    CHECK(xml_check("<svg/><svg/>", "svg") != NULL);
    CHECK(xml_check("<html/>", "svg") != NULL);
}

TEST(chart_with_lines_scatter_and_log_axis) {
    sm_svg *s = sm_svg_new("Weights <vs> budget & more", 2, 1);
    CHECK(s);
    double x[5] = {1e6, 3e6, 1e7, 3e7, 1e8}, y1[5] = {0.1, 0.15, 0.2, 0.25, 0.3}, y2[5] = {0.9, 0.85, 0.8, 0.75, 0.7};
    CHECK_EQ_INT(sm_svg_panel(s, 0, "left \"panel\"", "token budget", "weight", 1, 0), 0);
    CHECK_EQ_INT(sm_svg_add(s, 0, "code", x, y1, 5, SM_SVG_LINE | SM_SVG_MARKERS, -1), 0);
    CHECK_EQ_INT(sm_svg_add(s, 0, "books", x, y2, 5, SM_SVG_LINE | SM_SVG_DASHED, -1), 0);
    double sx[3] = {0.2, 1, 3}, sy[3] = {1.08, 1.0, NAN};
    CHECK_EQ_INT(sm_svg_panel(s, 1, "right", "x", "y", 0, 0), 0);
    CHECK_EQ_INT(sm_svg_add(s, 1, "runs", sx, sy, 3, SM_SVG_MARKERS, -1), 0);
    CHECK_EQ_INT(sm_svg_add(s, 1, NULL, sx, sy, 2, SM_SVG_RING, 3), 0);
    CHECK(sm_svg_add(s, 2, "oops", sx, sy, 3, SM_SVG_LINE, -1) != 0);
    char *out = sm_svg_render(s);
    CHECK(out);
    const char *why = xml_check(out, "svg");
    CHECK_MSG(why == NULL, "not well-formed: %s", why);
    CHECK(strstr(out, "xmlns=\"http://www.w3.org/2000/svg\""));
    CHECK(strstr(out, "Weights &lt;vs&gt; budget &amp; more"));
    CHECK(strstr(out, "left &quot;panel&quot;"));
    CHECK_EQ_INT(count_substr(out, "class=\"series\""), 4);
    CHECK(strstr(out, "data-name=\"code\"") && strstr(out, "data-name=\"books\"") && strstr(out, "data-name=\"runs\""));
    CHECK_EQ_INT(count_substr(out, "<polyline"), 2);
    CHECK(strstr(out, "stroke-dasharray"));
    /* 5 markers for code, 2 finite ones for runs (the NaN is skipped), 2 rings; legend markers add 2 */
    CHECK_EQ_INT(count_substr(out, "r=\"3.5\""), 5 + 2 + 2);
    CHECK_EQ_INT(count_substr(out, "r=\"7\""), 2);
    /* decade ticks on the log axis, named as such */
    CHECK(strstr(out, ">1e6<") && strstr(out, ">1e7<") && strstr(out, ">1e8<"));
    CHECK(strstr(out, "token budget (log scale)"));
    /* legend lists named series only */
    CHECK_EQ_INT(count_substr(out, "class=\"legend\""), 2);
    free(out);
    sm_error e = {0};
    CHECK_EQ_INT(sm_svg_write(s, "/nonexistent-dir/x.svg", &e), SM_ERR_IO);
    char path[] = "/tmp/sm-svg-test-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK_EQ_INT(sm_svg_write(s, path, &e), 0);
    FILE *f = fopen(path, "rb");
    CHECK(f);
    char head[64] = {0};
    CHECK(fread(head, 1, 20, f) == 20);
    fclose(f);
    unlink(path);
    CHECK(!strncmp(head, "<?xml", 5));
    sm_svg_free(s);
}

TEST(degenerate_ranges_render) {
    sm_svg *s = sm_svg_new(NULL, 1, 1);
    double x[1] = {5}, y[1] = {5};
    CHECK_EQ_INT(sm_svg_add(s, 0, "one point", x, y, 1, SM_SVG_MARKERS, -1), 0);
    CHECK_EQ_INT(sm_svg_add(s, 0, "empty", x, y, 0, SM_SVG_LINE, -1), 0);
    char *out = sm_svg_render(s);
    CHECK(out && xml_check(out, "svg") == NULL);
    CHECK(!strstr(out, "nan") && !strstr(out, "inf"));
    free(out);
    sm_svg_free(s);
    CHECK(sm_svg_new("x", 0, 1) == NULL);
}

int main(void) {
    RUN(xml_checker_catches_errors);
    RUN(chart_with_lines_scatter_and_log_axis);
    RUN(degenerate_ranges_render);
    TEST_EXIT();
}
