/* sm_test_badabi.c - a plugin built for a future ABI major: the loader must refuse it. */
#include "sm_plugin.h"

static int run(const sm_host_api *api, sm_host *h, const char *p, const char *i, sm_error *err) {
    (void)api; (void)h; (void)p; (void)i; (void)err;
    return SM_OK;
}

static const sm_plugin_desc desc = {
    .struct_size = sizeof(sm_plugin_desc),
    .abi_major = SM_PLUGIN_ABI_MAJOR + 1,
    .abi_minor = 0,
    .name = "sm_test_badabi",
    .version = "9.0.0",
    .run = run,
};

const sm_plugin_desc *sm_plugin_describe(void) { return &desc; }
