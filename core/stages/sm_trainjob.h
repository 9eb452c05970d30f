/* sm_trainjob.h - a GPT-2 training run described by stage parameters and tokenized shards: the shared body
 * of the ablate stage (one DDO proxy run) and the train stage (full training with curves and checkpoints). */
#ifndef SM_TRAINJOB_H
#define SM_TRAINJOB_H

#include "../sm_plugin.h"

/* The parameters both stages accept (JSON schema text, see sm_plugin.h). */
#define SM_TRAINJOB_SCHEMA_COMMON                                                                                          \
    "\"domains\": {\"type\": \"array\", \"required\": true, \"doc\": \"domain names, in order\"},"                         \
    "\"tokens\": {\"type\": \"object\", \"default\": null, \"doc\": \"training tokens per domain (the mixture)\"},"          \
    "\"weights\": {\"type\": \"object\", \"default\": null, \"doc\": \"mixture weights per domain (with budget)\"},"         \
    "\"budget\": {\"type\": \"number\", \"default\": null, \"doc\": \"total training tokens (with weights)\"},"              \
    "\"model\": {\"type\": \"object\", \"default\": {\"layers\": 2, \"heads\": 2, \"channels\": 64, \"seq\": 64},"           \
    " \"doc\": \"GPT-2 shape: layers, heads, channels, seq (context), vocab (50257)\"},"                                   \
    "\"batch\": {\"type\": \"integer\", \"default\": 8, \"doc\": \"sequences per step\"},"                                  \
    "\"lr\": {\"type\": \"number\", \"default\": 0.002, \"doc\": \"peak learning rate (cosine decay, 10% warmup)\"},"       \
    "\"weight_decay\": {\"type\": \"number\", \"default\": 0.1},"                                                          \
    "\"grad_clip\": {\"type\": \"number\", \"default\": 1.0},"                                                             \
    "\"seed\": {\"type\": \"integer\", \"default\": 1, \"doc\": \"model initialisation and data order\"},"                  \
    "\"eval_batches\": {\"type\": \"integer\", \"default\": 16, \"doc\": \"the final evaluation's fixed validation sample:"       \
    " batches of batch x seq per domain, spread over the whole validation shard (runs to compare share it)\"},"           \
    "\"threads\": {\"type\": \"integer\", \"default\": 1, \"doc\": \"CPU threads for this run\"},"                          \
    "\"device\": {\"type\": \"string\", \"default\": \"auto\", \"doc\": \"cpu, cuda or auto\"}"

/* Both stages: train on the shards in inputs_json ("train/<domain>/NNNN" and "val/<domain>/NNNN" artifacts)
 * with the mixture of params, evaluate per domain, report metrics and the result. full = 1 adds periodic
 * evaluation (eval_every), resume files in the scratch folder (checkpoint_every) and the final model as
 * an llm.c checkpoint output "model". */
int sm_trainjob_run(const sm_host_api *api, sm_host *h, const char *params_json, const char *inputs_json, int full,
                    sm_error *err);
/* Resources of a run with these parameters (threads; GPU memory when the device is cuda). */
int sm_trainjob_resources(const char *params_json, const char *inputs_json, sm_resources *out, sm_error *err);

#endif
