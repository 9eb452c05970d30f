-- autoscale_presets: the defaults of pipelines/autoscale.lua, one table per preset, and the starting point of
-- pipelines/noise_study.lua (its "demo" configuration is the cpu preset's DDO run), so a default changes here only.
--
-- The cpu preset follows pipelines/noise_study.lua (README, "Noise study") and the 30-minute limit of
-- `make demo` on 2 cores: the L2/C64 proxy at n1 20k and n2 = 4 n1 (the paper's ratio; there the x3-vs-x0.2
-- contrasts of 8/8 and 7/8 domains stand above their paired noise, but the differences between domains only
-- 1.5 and 3.6 standard errors), a target of 2 n2 (continuous form) rather than the paper's full step to
-- n2^2/n1; every DDO run repeated with 2 seeds (repeat = "all"), so the fit pairs each contrast by seed
-- (common random numbers: the contrast's noise, 0.012-0.014 in log mean perplexity, not the runs', 0.019-0.033)
-- and pools that noise over the 16 perturbed runs (16 degrees of freedom; with the base run alone repeated 3
-- times it had 2, and all 8 domains at n2 counted as within noise); 3 seeds of the target runs (the verdict's
-- t quantile with 2 is 6.31). The validation sample is 8 x 8 rows per domain: its error in a DDO contrast is
-- 0.33 to 0.55 of the contrast's training sd (measured).
return {
  cpu = {
    layers = 2, heads = 2, channels = 64, seq = 64, batch = 8, lr = 2e-3, device = "auto", threads = 1,
    n1 = 20e3, ratio = 4, target = 160e3, repeats = 2, ["repeat"] = "all", train_repeats = 3, metric = "ppl",
    eval_batches = 8, curve_eval_batches = 1, parallel = 2, val_fraction = 0.05,
  },
  -- GPT-2 124M. With validate=true about 125M tokens in all (DDO 19.2 N per budget at 0.5M, 2M and 1M; 3
  -- target mixtures x 2 seeds at ~8M; the validation and optimum runs): ~10 min at an assumed 200k
  -- tokens/s (about 17% of an H200's bf16 peak). Not yet run on a GPU: the throughput is an assumption.
  gpu = {
    layers = 12, heads = 12, channels = 768, seq = 1024, batch = 16, lr = 6e-4, device = "cuda", threads = 1,
    n1 = 0.5e6, ratio = 4, repeats = 2, ["repeat"] = "base", train_repeats = 2, metric = "ppl",
    eval_batches = 2, curve_eval_batches = 1, parallel = 2, val_fraction = 0.05,
  },
}
