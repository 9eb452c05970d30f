/* train.c - full training at the target budget on a mixture: per-domain validation every eval_every steps
 * (the curve the compare stage reads), resume files every checkpoint_every steps in the stage's scratch
 * folder (a killed run resumes bit for bit), and the final model as an llm.c checkpoint artifact. */
#include "sm_plugin.h"
#include "stages/sm_trainjob.h"

static int run(const sm_host_api *api, sm_host *h, const char *params_json, const char *inputs_json, sm_error *err) {
    return sm_trainjob_run(api, h, params_json, inputs_json, 1, err);
}

static const sm_plugin_desc desc = {
    .struct_size = sizeof(sm_plugin_desc),
    .abi_major = SM_PLUGIN_ABI_MAJOR,
    .abi_minor = SM_PLUGIN_ABI_MINOR,
    .name = "train",
    .version = "1.2.0",
    .cache_salt = "",
    .description = "full training on a mixture with a validation curve, checkpoints and the final model",
    .params_schema = "{" SM_TRAINJOB_SCHEMA_COMMON ","
                     "\"curve_eval_batches\": {\"type\": \"integer\", \"default\": null, \"doc\": \"validation batches per domain at each curve point (default: eval_batches)\"},"
                     "\"eval_every\": {\"type\": \"integer\", \"default\": 0, \"doc\": \"steps between evaluations (0: 20 per run)\"},"
                     "\"checkpoint_every\": {\"type\": \"integer\", \"default\": 100, \"doc\": \"steps between resume files\"}}",
    .resources = sm_trainjob_resources,
    .run = run,
};

const sm_plugin_desc *sm_plugin_describe(void) { return &desc; }
