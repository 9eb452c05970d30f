/* ablate.c - one DDO proxy run: train GPT-2 on a mixture given as per-domain token counts, then evaluate
 * on every domain's validation shards. The Lua library issues the 2m+1 runs of DDO (base and perturbed)
 * as separate stage runs, so each is cached on its own and runs in parallel as resources allow. */
#include "sm_plugin.h"
#include "stages/sm_trainjob.h"

static int run(const sm_host_api *api, sm_host *h, const char *params_json, const char *inputs_json, sm_error *err) {
    return sm_trainjob_run(api, h, params_json, inputs_json, 0, err);
}

static const sm_plugin_desc desc = {
    .struct_size = sizeof(sm_plugin_desc),
    .abi_major = SM_PLUGIN_ABI_MAJOR,
    .abi_minor = SM_PLUGIN_ABI_MINOR,
    .name = "ablate",
    .version = "1.2.0",
    .cache_salt = "",
    .description = "one DDO proxy run: train on a mixture, evaluate per domain",
    .params_schema = "{" SM_TRAINJOB_SCHEMA_COMMON "}",
    .resources = sm_trainjob_resources,
    .run = run,
};

const sm_plugin_desc *sm_plugin_describe(void) { return &desc; }
