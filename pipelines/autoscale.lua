-- The AutoScale demo: raw domains in; the mixture optimised for the target budget and models trained on
-- it and on the baselines out, with a report and plots.
--
--   scalemix run pipelines/autoscale.lua [--param key=value ...]
--
-- Steps: tokenize the corpus; DDO (2m+1 proxy runs, power-law fits, the exact KKT optimum) at two small
-- budgets n1 < n2; extrapolate both optima to the target budget (default: the paper's rule, one geometric
-- step: N3_i = N2_i^2 / N1_i); train AutoScale's mixture and the baselines (uniform, proportional to the
-- data, and an optional given mixture) at the target; compare the validation curves (speed-up).
-- Every size is a parameter; the defaults fit 2 CPU cores in about 23 minutes, larger ones apply on a GPU.
local sm = require "scalemix"
local P = sm.params

local gpu = (P.device == nil or P.device == "auto" or P.device == "cuda") and sm.gpus() > 0
local function param(name, cpu_default, gpu_default)
  if P[name] ~= nil then return P[name] end
  if gpu and gpu_default ~= nil then return gpu_default end
  return cpu_default
end

local model = {
  layers = param("layers", 2, 12), heads = param("heads", 2, 12), channels = param("channels", 64, 768), seq = param("seq", 64, 1024),
}
local run_opts = {
  model = model, batch = param("batch", 8, 16), lr = param("lr", 2e-3, 6e-4), seed = param("seed", 1),
  threads = param("threads", 1), device = param("device", "auto"), eval_batches = param("eval_batches", 8, 32),
}
-- Measured on 2 CPU cores: the L2/C64 proxy trains at ~1,450 tokens/s per run, two runs at a time; with these
-- defaults (n1 = 40k) the whole demo took 23 minutes from a fresh clone (16 of them for the 34 DDO runs).
local n1 = param("n1", 40e3, 10e6)
local n2 = param("n2", 2 * n1)
local out_dir = param("out", "autoscale-out")
local corpus_dir = param("corpus", "corpus")
sm.config { parallel = param("parallel", gpu and 4 or 2) }

-- 1. Tokenize every domain folder of the corpus.
local corpus = sm.tokenize { dir = corpus_dir, val_fraction = param("val_fraction", 0.05) }
local domains = corpus.domains

-- 2. DDO at the two small budgets (all 2(2m+1) proxy runs are submitted at once; the engine runs as many as
--    the machine allows), then fit and optimise each.
local function ddo(budget, label)
  local opts = { corpus = corpus, budget = budget, label = label, factors = P.factors and { 0.2, 3 } or nil }
  for k, v in pairs(run_opts) do opts[k] = v end
  return sm.ablate(opts)
end
local ab = sm.all { function() return ddo(n1, "n1") end, function() return ddo(n2, "n2") end }
ab[1].interpolant, ab[2].interpolant = P.interpolant, P.interpolant
local fit1 = sm.fit(ab[1])
local fit2 = sm.fit(ab[2])
-- (P.interpolant = "saturating" picks the other exact 3-point curve; see core/autoscale/README.md)

-- 3. Extrapolate to the target budget.
local ex = sm.extrapolate { from = { fit1, fit2 }, budget = P.target, steps = P.target == nil and 1 or nil }
local target = ex.budget

-- Optional validation of the extrapolation: DDO at the geometric mean of n1 and n2 against the
-- continuous-form prediction there (t = 1/2).
local validation
if P.validate then
  local mid = math.sqrt(n1 * n2)
  local fitm = sm.fit(ddo(mid, "mid"))
  validation = sm.extrapolate { from = { fit1, fit2 }, budget = fitm.budget, actual = fitm, name = "extrapolate/validate" }
end

-- 4. Train at the target budget: AutoScale and the baselines, concurrently.
local uniform, proportional = {}, {}
local total = 0
if sm.is_pending(corpus.result) then -- planning, with the corpus still to tokenize
  uniform, proportional = sm.PENDING, sm.PENDING
else
  for _, d in ipairs(domains) do total = total + corpus.result.domains[d].train_tokens end
  for _, d in ipairs(domains) do
    uniform[d] = 1 / #domains
    proportional[d] = corpus.result.domains[d].train_tokens / total
  end
end
local train_opts = { corpus = corpus, budget = target, eval_every = P.eval_every, checkpoint_every = P.checkpoint_every }
for k, v in pairs(run_opts) do train_opts[k] = v end
train_opts.eval_batches = param("train_eval_batches", 2, 16) -- 20 evaluations per curve
local function train(name, mix, from)
  local o = { name = name, weights = mix, from = from }
  for k, v in pairs(train_opts) do o[k] = v end
  return function() return sm.train(o) end
end
local baselines = { { "uniform", uniform }, { "proportional", proportional } }
if P.mixture then
  local given = {}
  for d, w in tostring(P.mixture):gmatch("([%w_%-]+)=([%d%.eE%-]+)") do given[d] = tonumber(w) end
  baselines[#baselines + 1] = { "given", given }
end
local jobs = { train("autoscale", ex.weights, ex) }
for _, b in ipairs(baselines) do jobs[#jobs + 1] = train(b[1], b[2]) end
local trained = sm.all(jobs)
local runs = { autoscale = trained[1] }
for i, b in ipairs(baselines) do runs[b[1]] = trained[i + 1] end

-- 5. Speed-up of AutoScale over each baseline on the validation-perplexity curves.
local cmp = sm.compare { runs = runs, target = "autoscale" }

-- 6. Plots and the report.
if sm.planning() then return end
os.execute("mkdir -p '" .. out_dir:gsub("'", "'\\''") .. "'")
local plots = {}
local function plot(opts)
  local a = sm.plot(opts)
  plots[#plots + 1] = sm.export(a, out_dir .. "/" .. opts.file)
end
plot { kind = "fit", file = "fit_n1.svg", title = string.format("DDO fits at %.3g tokens (normalised units)", n1),
       data = { params = fit1.params, points = fit1.points, domains = domains, rmse = fit1.rmse, n = fit1.n, alternatives = fit1.alternatives,
                noise = fit1.noise, repeats = fit1.repeats } }
plot { kind = "fit", file = "fit_n2.svg", title = string.format("DDO fits at %.3g tokens (normalised units)", n2),
       data = { params = fit2.params, points = fit2.points, domains = domains, rmse = fit2.rmse, n = fit2.n, alternatives = fit2.alternatives,
                noise = fit2.noise, repeats = fit2.repeats } }
plot { kind = "weights", file = "weights.svg", title = "Mixture weights against budget",
       data = { mixtures = { { budget = fit1.budget, weights = fit1.weights, ci = fit1.ci, label = "DDO n1" },
                             { budget = fit2.budget, weights = fit2.weights, ci = fit2.ci, label = "DDO n2" },
                             { budget = target, weights = ex.weights, ci = ex.ci, label = "AutoScale" } } } }
local curves = {}
for name, r in pairs(runs) do curves[name] = sm.curve_data(r) end
plot { kind = "loss", file = "curves.svg", title = string.format("Validation perplexity at %.3g tokens", target),
       data = { curves = curves, metric = "perplexity" } }

local names = { "autoscale" }
for _, b in ipairs(baselines) do names[#names + 1] = b[1] end
local lines = {}
local function out(fmt, ...) lines[#lines + 1] = string.format(fmt, ...) end
out("AutoScale on %s: %d domains, model L=%d H=%d C=%d T=%d (%s)", corpus_dir, #domains, model.layers, model.heads,
    model.channels, model.seq, runs.autoscale.device)
local function exact_count(f)
  local n = 0
  for _, d in ipairs(domains) do if f.exact[d] then n = n + 1 end end
  return n
end
out("DDO fits: y = (x + a)^-b + c per domain in normalised units; exact through the points for %d/%d domains at n1,"
    .. " %d/%d at n2 (the others: least squares); 3-point interpolant: %s", exact_count(fit1), #domains, exact_count(fit2),
    #domains, tostring(fit1.interpolant))
local flagged = {}
for _, f in ipairs { fit1, fit2 } do
  for d, fl in pairs(f.flags or {}) do
    if #fl > 0 then flagged[#flagged + 1] = string.format("%s@%.3g: %s", d, f.budget, table.concat(fl, ",")) end
  end
end
if #flagged > 0 then out("Flagged fits (the data did not behave as the method assumes): %s", table.concat(flagged, "; ")) end
out("")
out("Mixture weights by budget")
out("%-14s %12s %12s %14s %12s %12s", "domain", string.format("DDO %.3g", fit1.budget), string.format("DDO %.3g", fit2.budget),
    string.format("AutoSc %.3g", target), "uniform", "proportional")
for _, d in ipairs(domains) do
  out("%-14s %12.4f %12.4f %14.4f %12.4f %12.4f", d, fit1.weights[d], fit2.weights[d], ex.weights[d], uniform[d], proportional[d])
end
for _, f in ipairs { fit1, fit2 } do
  if f.noise_source == "unknown" then
    out("Noise at %.3g: unknown (one run per point): no intervals; repeat the base run to measure it", f.budget)
  else
    local parts = {}
    for _, d in ipairs(domains) do
      -- snr is null (infinite) when the repeats agree exactly
      parts[#parts + 1] = string.format("%s %.3g (snr %s)", d, f.noise[d], f.snr[d] and string.format("%.1f", f.snr[d]) or "inf")
    end
    out("Noise at %.3g (sd of log metric, %s): %s; %d domain(s) within noise", f.budget, f.noise_source,
        table.concat(parts, ", "), f.within_noise)
  end
end
if ex.ci and next(ex.ci) then
  out("90%% intervals of the weights (parametric bootstrap over the noise above)")
  for _, d in ipairs(domains) do
    local function iv(f) return f.ci[d] and string.format("[%.4f, %.4f]", f.ci[d].lo, f.ci[d].hi) or "-" end
    out("%-14s DDO n1 %s  DDO n2 %s  AutoScale %s", d, iv(fit1), iv(fit2), iv(ex))
  end
end
if ex.left_measured_range and #ex.left_measured_range > 0 then
  out("The extrapolation left the measured range (weight under the smallest factor x base share) for: %s",
      table.concat(ex.left_measured_range, ", "))
end
out("")
out("Validation perplexity at the target budget (%.3g tokens)", target)
local hdr = string.format("%-14s", "domain")
for _, n in ipairs(names) do hdr = hdr .. string.format(" %12s", n) end
out("%s", hdr)
for _, d in ipairs(domains) do
  local row = string.format("%-14s", d)
  for _, n in ipairs(names) do row = row .. string.format(" %12.2f", runs[n].val_ppl[d]) end
  out("%s", row)
end
local row = string.format("%-14s", "mean")
for _, n in ipairs(names) do row = row .. string.format(" %12.2f", runs[n].metric) end
out("%s", row)
out("")
out("Speed-up of AutoScale (1 - steps to reach the baseline's final perplexity / baseline's steps)")
for i = 2, #names do
  out("  vs %-14s %s", names[i], cmp.summary[names[i]])
end
if validation then
  out("")
  out("Extrapolation check at %.3g tokens: mean |weight error| %.4f, L1 distance %.4f", validation.budget,
      validation.validation.mean_abs_weight_err or 0 / 0, validation.validation.l1 or 0 / 0)
end
out("")
out("Plots: %s", table.concat(plots, ", "))
out("Lineage: run %s (scalemix sql, scalemix history)", sm.run_id())
local report = table.concat(lines, "\n") .. "\n"
io.stdout:write(report)
local f = io.open(out_dir .. "/report.txt", "w")
if f then f:write(report) f:close() end
