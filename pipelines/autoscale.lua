-- The AutoScale demo: raw domains in; the mixture optimised for the target budget and models trained on
-- it and on the baselines out, with a report and plots.
--
--   scalemix run pipelines/autoscale.lua [--param key=value ...]
--
-- Steps: tokenize the corpus; DDO (2m+1 proxy runs, power-law fits, the exact KKT optimum) at two small
-- budgets n1 < n2 = ratio * n1, the runs repeated with `repeats` seeds (`repeat`: "all" runs, so each
-- contrast is paired by seed, or only the "base" run) so the fits know the noise;
-- extrapolate both optima to the target budget (default: the paper's rule, one geometric step:
-- N3_i = N2_i^2 / N1_i); train AutoScale's mixture and the baselines (uniform, proportional to the data,
-- and an optional given mixture) at the target with `train_repeats` seeds; compare the validation curves
-- (speed-up) and the final metrics. validate=true also runs DDO directly at a third budget and checks the
-- extrapolation and the fit's own prediction there.
-- Every run shares the loader's common random numbers (seed i: the same initialisation and data order
-- whatever the mixture) and one fixed validation sample per domain (eval_batches x batch rows of seq
-- tokens, spread over the whole validation shard).
-- Every size is a parameter; `preset` picks the defaults (cpu: 2 cores; gpu: GPT-2 124M proxies sized for
-- about 10 minutes on one H200 -- see the README; not yet run on a GPU).
local sm = require "scalemix"
local P = sm.params

-- The defaults, one place per preset: pipelines/autoscale_presets.lua (the noise study starts from them too).
local PRESETS = require "autoscale_presets"
local preset_name = P.preset or "cpu"
local D = PRESETS[preset_name]
if not D then sm.error(string.format("unknown preset '%s' (cpu or gpu)", tostring(preset_name))) end
local function param(name)
  if P[name] ~= nil then return P[name] end
  return D[name]
end
-- "0.2,3" -> {0.2, 3}
local function number_list(name, text)
  if text == nil then return nil end
  local t = {}
  for x in tostring(text):gmatch("[^,%s]+") do
    local v = tonumber(x)
    if not v or v <= 0 then sm.error(string.format("--param %s=%s: a comma-separated list of positive numbers", name, tostring(text))) end
    t[#t + 1] = v
  end
  if #t == 0 then sm.error(string.format("--param %s is empty", name)) end
  return t
end

local model = { layers = param("layers"), heads = param("heads"), channels = param("channels"), seq = param("seq") }
local run_opts = {
  model = model, batch = param("batch"), lr = param("lr"), seed = param("seed"), threads = param("threads"),
  device = param("device"), eval_batches = param("eval_batches"),
}
local n1 = param("n1")
local n2 = param("n2") or param("ratio") * n1
local out_dir = param("out") or "autoscale-out"
local corpus_dir = param("corpus") or "corpus"
local factors = number_list("factors", P.factors)
local repeats = param("repeats")
local train_repeats = param("train_repeats")
sm.config { parallel = param("parallel") }

-- 1. Tokenize every domain folder of the corpus.
local corpus = sm.tokenize { dir = corpus_dir, val_fraction = param("val_fraction") }
local domains = corpus.domains

-- 2. DDO at the two small budgets (all proxy runs are submitted at once; the engine runs as many as the
--    machine allows), then fit and optimise each.
local function ddo(budget, label)
  local opts = { corpus = corpus, budget = budget, label = label, factors = factors, repeats = repeats,
                 ["repeat"] = param("repeat"), metric = param("metric") }
  for k, v in pairs(run_opts) do opts[k] = v end
  return sm.ablate(opts)
end
local function fit(ab)
  ab.interpolant, ab.on_noise, ab.noise_pool = P.interpolant, P.on_noise, P.noise_pool
  return sm.fit(ab)
end
local ab = sm.all { function() return ddo(n1, "n1") end, function() return ddo(n2, "n2") end }
local fit1, fit2 = fit(ab[1]), fit(ab[2])

-- 3. Extrapolate to the target budget.
local ex = sm.extrapolate { from = { fit1, fit2 }, budget = param("target"), steps = param("target") == nil and 1 or nil }
local target = ex.budget

-- 4. Train at the target budget: AutoScale and the baselines, concurrently, each with train_repeats seeds.
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
local train_opts = { corpus = corpus, eval_every = P.eval_every, checkpoint_every = P.checkpoint_every,
                     curve_eval_batches = param("curve_eval_batches"), repeats = train_repeats }
for k, v in pairs(run_opts) do train_opts[k] = v end
local function train(name, mix, budget, from)
  local o = { name = name, from = from }
  for k, v in pairs(train_opts) do o[k] = v end
  if budget then o.weights, o.budget = mix, budget else o.tokens = mix end
  return function() return sm.train(o) end
end
local baselines = { { "uniform", uniform }, { "proportional", proportional } }
if P.mixture then
  local given = {}
  for d, w in tostring(P.mixture):gmatch("([%w_%-]+)=([%d%.eE%-]+)") do given[d] = tonumber(w) end
  baselines[#baselines + 1] = { "given", given }
end
local jobs = { train("autoscale", ex.weights, target, ex) }
for _, b in ipairs(baselines) do jobs[#jobs + 1] = train(b[1], b[2], target) end

-- Optional validation: DDO directly at a third budget (the geometric mean of n1 and n2, as the authors
-- did at 0.6B, or the target), the extrapolation's prediction there, both mixtures trained there; and
-- the n2 fit's predicted metric at its optimum against a run at that optimum.
local validate_at = param("validate_at") or "mid"
if validate_at ~= "mid" and validate_at ~= "target" then sm.error("--param validate_at is mid or target") end
local v = {}
if P.validate then
  v.budget = validate_at == "mid" and math.sqrt(n1 * n2) or target
  v.fit = fit(ddo(v.budget, validate_at))
  v.ex = sm.extrapolate { from = { fit1, fit2 }, budget = v.fit.budget, actual = v.fit, name = "extrapolate/validate" }
  jobs[#jobs + 1] = train("validate/predicted", v.ex.weights, v.fit.budget, v.ex)
  jobs[#jobs + 1] = train("validate/direct", v.fit.weights, v.fit.budget, v.fit)
  jobs[#jobs + 1] = train("optimum/n2", fit2.tokens, nil, fit2)
end
local trained = sm.all(jobs)
local runs = { autoscale = trained[1] }
for i, b in ipairs(baselines) do runs[b[1]] = trained[i + 1] end
if P.validate then
  local k = #baselines + 2
  v.predicted, v.direct, v.optimum = trained[k], trained[k + 1], trained[k + 2]
end

-- 5. Speed-up of AutoScale over each baseline on the validation-perplexity curves, with intervals.
local cmp = sm.compare { runs = runs, target = "autoscale" }

-- 6. Plots and the report.
if sm.planning() then return end
if P.validate then v.l1 = sm.weights_l1(v.ex, v.fit) end -- predicted vs directly optimised, with its interval
os.execute("mkdir -p '" .. out_dir:gsub("'", "'\\''") .. "'")
local report = require("autoscale_report")
report.write {
  out_dir = out_dir, corpus_dir = corpus_dir, preset = preset_name, model = model, domains = domains, n1 = n1, n2 = n2,
  ab = ab, fit1 = fit1, fit2 = fit2, ex = ex, target = target, runs = runs, baselines = baselines,
  uniform = uniform, proportional = proportional, cmp = cmp, validation = P.validate and v or nil, factors = factors or { 0.2, 3 },
}
