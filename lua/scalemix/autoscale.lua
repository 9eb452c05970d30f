-- scalemix.autoscale: the AutoScale stages as plain Lua functions taking option tables.
-- Installed into the `scalemix` module (sm.tokenize, sm.ablate, sm.fit, sm.extrapolate, sm.train,
-- sm.compare, sm.weights_l1, sm.eval_contrast_se, sm.curve_data, sm.plot, sm.export, sm.schedule). Every
-- function returns a plain table; the stage behind it is in .stage (its stage_run_id, reused flag, outputs).
local A = {}

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

local function copy(t)
  if type(t) ~= "table" then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = copy(v) end
  return c
end

function A.install(sm)
  local err = sm.error

  local function need(opts, key, what)
    if opts[key] == nil then err(string.format("%s needs '%s'", what, key)) end
    return opts[key]
  end

  -- Stage options shared by every training run (ablate and train).
  local TRAIN_KEYS = { "model", "batch", "lr", "weight_decay", "grad_clip", "seed", "eval_batches", "threads", "device" }
  -- (repeats, repeat, metric, curve_eval_batches and the mixture are handled by ablate and train themselves)
  local function train_params(opts, extra)
    local p = {}
    for _, k in ipairs(TRAIN_KEYS) do p[k] = opts[k] end
    for k, v in pairs(extra) do p[k] = v end
    return p
  end

  ---------------------------------------------------------------------------------------------------
  -- tokenize{ dir = "corpus" | domains = { name = path or sm.dir(...) }, val_fraction = 0.02, ... }
  -- -> { domains = {names}, shards = {name -> artifact}, manifest = artifact, result = {...}, stage }
  function sm.tokenize(opts)
    opts = opts or {}
    local doms = {}
    if opts.domains then
      for name, v in pairs(opts.domains) do doms[name] = type(v) == "string" and sm.dir(v) or v end
    else
      local dir = need(opts, "dir", "sm.tokenize")
      -- NUL-separated names: any byte but NUL and '/' may be in a folder name (a newline included); the
      -- tokenize stage refuses a name that cannot name its output files, with the name in the message.
      local p = io.popen("find -L '" .. dir:gsub("'", "'\\''") .. "' -mindepth 1 -maxdepth 1 -type d -printf '%f\\0' 2>/dev/null")
      for name in p:read("*a"):gmatch("([^%z]+)%z") do
        if not name:match("^%.") then doms[name] = sm.dir(dir .. "/" .. name) end
      end
      p:close()
      if next(doms) == nil then err(string.format("sm.tokenize: no domain folders under '%s' (run `make corpus`?)", dir)) end
    end
    local s = sm.stage("tokenize", {
      val_fraction = opts.val_fraction, allow_special = opts.allow_special, on_bad_line = opts.on_bad_line,
      max_doc_bytes = opts.max_doc_bytes, vocab = opts.vocab,
    }, { domains = doms }, { name = opts.name or "tokenize" })
    if s.planned then return { domains = sorted_keys(doms), shards = sm.PENDING, result = sm.PENDING, stage = s } end
    local shards, manifest = {}, nil
    for k, a in pairs(s.outputs) do
      if k == "manifest" then manifest = a elseif k ~= "result" then shards[k] = a end
    end
    return { domains = sorted_keys(s.result.domains), shards = shards, manifest = manifest, result = s.result, stage = s }
  end

  ---------------------------------------------------------------------------------------------------
  -- Seeds of a repeated measurement: seed, seed + 1, ..., seed + k - 1 (seed defaults to 1). Seed i gives
  -- the same initialisation and data order whatever the mixture (the loader's common random numbers), so
  -- the i-th runs of two mixtures are paired.
  local function seeds_of(opts, what)
    local k = opts.repeats or 1
    if type(k) ~= "number" or k < 1 or k % 1 ~= 0 then err(string.format("%s: 'repeats' must be a whole number >= 1 (got %s)", what, tostring(k))) end
    local s0 = opts.seed or 1
    local seeds = {}
    for i = 1, k do seeds[i] = s0 + i - 1 end
    return seeds
  end

  -- The metric a DDO run reports to the fit: "ppl" (the paper's mean validation perplexity) or "loss"
  -- (the mean validation loss, which high-perplexity domains dominate less).
  local function metric_of(result, which)
    if which == "loss" then return result.mean_loss end
    return result.metric
  end

  ---------------------------------------------------------------------------------------------------
  -- eval_contrast_se(a, b, metric) -> { se = {[d] = ...}, log_metric = ... }: the evaluation error of the
  -- contrast between two runs (ablate or train stage results), both evaluated on the same fixed validation
  -- sample. Per domain: the standard error of the mean per-batch loss difference (.val_batch_loss; the batches
  -- are paired, so the sample's own luck, common to both runs, cancels); for log(metric) by the delta method
  -- over the domains (independent samples), with weights ppl_d / sum of ppl (metric "ppl", the mean
  -- perplexity) or 1 / sum of losses ("loss", the mean loss). se[d] is nil with one batch, and then so is
  -- log_metric.
  function sm.eval_contrast_se(a, b, metric)
    local la, lb = need(a, "val_batch_loss", "sm.eval_contrast_se"), need(b, "val_batch_loss", "sm.eval_contrast_se")
    local out, doms, total = { se = {} }, {}, 0
    for d in pairs(la) do doms[#doms + 1] = d end
    table.sort(doms)
    for _, d in ipairs(doms) do
      local xa, xb = la[d], lb[d] or err(string.format("sm.eval_contrast_se: the second run has no domain '%s'", d))
      if #xa ~= #xb then
        err(string.format("sm.eval_contrast_se: domain '%s' has %d and %d batches: not the same validation sample", d, #xa, #xb))
      end
      local n, m, v = #xa, 0, 0
      for i = 1, n do m = m + (xa[i] - xb[i]) / n end
      for i = 1, n do v = v + (xa[i] - xb[i] - m) ^ 2 end
      if n > 1 then out.se[d] = math.sqrt(v / (n - 1) / n) end
      total = total + (metric == "loss" and (a.val_loss[d] + b.val_loss[d]) / 2 or (a.val_ppl[d] + b.val_ppl[d]) / 2)
    end
    local var = 0
    for _, d in ipairs(doms) do
      if out.se[d] == nil then return out end
      local w = metric == "loss" and 1 / total or (a.val_ppl[d] + b.val_ppl[d]) / 2 / total
      var = var + (w * out.se[d]) ^ 2
    end
    out.log_metric = math.sqrt(var)
    return out
  end

  ---------------------------------------------------------------------------------------------------
  -- ablate{ corpus = tokenize(...), budget = N, base = weights (default uniform), factors = {0.2, 3},
  --         domains = {...} (default all), model = {...}, batch, lr, seed, threads, device,
  --         repeats = k (seeds for the base run), repeat = "base" | "all" (which runs get them),
  --         metric = "ppl" | "loss", ... }
  -- The 2m+1 DDO runs, concurrently; returns the table sm.fit takes: { domains, budget, base = {tokens,
  -- metric, val_ppl}, runs = { {domain, factor, metric, tokens, val_ppl}, ... } }. A repeated run's metric
  -- is the list of its seeds' metrics ({28.1, 28.3, 27.9}) and .repeats lists their results.
  function sm.ablate(opts)
    local corpus = need(opts, "corpus", "sm.ablate")
    local budget = need(opts, "budget", "sm.ablate")
    local domains = opts.domains or corpus.domains
    local factors = opts.factors or { 0.2, 3 }
    local seeds = seeds_of(opts, "sm.ablate")
    local which = opts["repeat"] or "base"
    if which ~= "base" and which ~= "all" then err(string.format("sm.ablate: 'repeat' is \"base\" or \"all\" (got %s)", tostring(which))) end
    local metric = opts.metric or "ppl"
    if metric ~= "ppl" and metric ~= "loss" then err(string.format("sm.ablate: 'metric' is \"ppl\" or \"loss\" (got %s)", tostring(metric))) end
    local m = #domains
    local base_tokens = {}
    local wsum = 0
    for _, d in ipairs(domains) do wsum = wsum + ((opts.base or {})[d] or (opts.base and 0 or 1)) end
    for _, d in ipairs(domains) do
      local w = opts.base and (opts.base[d] or 0) or 1
      base_tokens[d] = budget * w / wsum
    end
    local label = opts.label or string.format("%.4g", budget)
    -- one future per seed of a run; the first seed keeps the unrepeated run's name
    local function run(name, tokens, nseeds)
      local fs = {}
      for i = 1, nseeds do
        local p = train_params(opts, { domains = domains, tokens = tokens })
        p.seed = seeds[i]
        fs[i] = sm.async("ablate", p, corpus.shards,
                         { name = "ddo/" .. label .. "/" .. name .. (i > 1 and (" seed" .. seeds[i]) or "") })
      end
      return fs
    end
    local groups = { run("base", base_tokens, #seeds) }
    local specs = {}
    for _, d in ipairs(domains) do
      for _, f in ipairs(factors) do
        local t = copy(base_tokens)
        t[d] = base_tokens[d] * f
        groups[#groups + 1] = run(string.format("%s x%g", d, f), t, which == "all" and #seeds or 1)
        specs[#specs + 1] = { domain = d, factor = f }
      end
    end
    local flat = {}
    for _, g in ipairs(groups) do for _, f in ipairs(g) do flat[#flat + 1] = f end end
    sm.all(flat)
    local base = groups[1][1]
    if base.planned then
      return { domains = domains, budget = budget, base = sm.PENDING, runs = sm.PENDING, planned = true }
    end
    -- a run's measurement: its metric (a list when repeated), the first seed's details, every seed's result
    local function measured(g)
      local r = g[1]
      local out = { tokens = r.result.tokens, val_ppl = r.result.val_ppl, val_loss = r.result.val_loss,
                    metric_se = r.result.metric_se, epochs = r.result.epochs, stage_run_id = r.stage_run_id,
                    artifact = r.outputs.result, seeds = {} }
      for i = 1, #g do out.seeds[i] = seeds[i] end
      if #g == 1 then
        out.metric = metric_of(r.result, metric)
      else
        out.metric, out.repeats = {}, {}
        for i, f in ipairs(g) do
          out.metric[i] = metric_of(f.result, metric)
          out.repeats[i] = { seed = seeds[i], result = f.result, stage_run_id = f.stage_run_id, artifact = f.outputs.result }
        end
      end
      return out
    end
    local out = { domains = domains, budget = budget, metric = metric, seeds = seeds, base = measured(groups[1]), runs = {} }
    for i, spec in ipairs(specs) do
      local r = measured(groups[i + 1])
      -- x is measured from the tokens the loader really served (whole sequences), not the requested factor.
      r.domain, r.requested_factor = spec.domain, spec.factor
      r.factor = r.tokens[spec.domain] / out.base.tokens[spec.domain]
      out.runs[i] = r
    end
    -- The evaluation error of each domain's contrasts in log(metric): every perturbed run against the base
    -- run of its seed on the shared validation sample (sm.eval_contrast_se), root mean square over the
    -- domain's runs and seeds; nil with a one-batch sample.
    local sum, cnt = {}, {}
    for i, spec in ipairs(specs) do
      for k, f in ipairs(groups[i + 1]) do
        local se = sm.eval_contrast_se(f.result, groups[1][k].result, metric).log_metric
        if se then sum[spec.domain], cnt[spec.domain] = (sum[spec.domain] or 0) + se * se, (cnt[spec.domain] or 0) + 1 end
      end
    end
    out.eval_noise = {}
    for d, v in pairs(sum) do out.eval_noise[d] = math.sqrt(v / cnt[d]) end
    return out
  end

  ---------------------------------------------------------------------------------------------------
  -- fit{ domains, base = {tokens, metric, seeds}, runs = {{domain, factor, metric, seeds}}, lower, budget,
  --      interpolant, on_bad_fit, noise, noise_pool, on_noise, boot, seed } (or the output of sm.ablate; seeds,
  --      optional, one per metric, pair the contrasts by seed) -> weights, tokens, budget,
  -- params[d] = {a, b, c}, rmse[d], flags[d], other (the other interpolant's params and optimum), and from
  -- repeats (any metric may be a list: base = {metric = {28.1, 28.3}}): noise[d], snr[d], ci[d] = {lo, hi},
  -- boot (weight replicates, in .domains order); eval_noise[d] passed through from sm.ablate.
  -- a measurement's proxy runs as the fit's inputs (every seed's, when repeated), for lineage
  local function add_inputs(inputs, name, r)
    if type(r.repeats) == "table" then
      for _, rep in ipairs(r.repeats) do
        if type(rep.artifact) == "table" then inputs[string.format("%s/seed%d", name, rep.seed)] = rep.artifact end
      end
    elseif type(r.artifact) == "table" then
      inputs[name] = r.artifact
    end
  end
  function sm.fit(opts)
    -- The measurements are parameters; the proxy runs they came from (when known) are inputs, for lineage.
    local runs, inputs = {}, {}
    if type(opts.runs) == "table" then
      for i, r in ipairs(opts.runs) do
        runs[i] = { domain = r.domain, factor = r.factor, metric = r.metric, seeds = r.seeds }
        add_inputs(inputs, string.format("run/%03d", i), r)
      end
    end
    local base = opts.base
    if type(base) == "table" and base ~= sm.PENDING then
      add_inputs(inputs, "base", base)
      base = { tokens = base.tokens, metric = base.metric, seeds = base.seeds }
    end
    local s = sm.stage("fit", { domains = opts.domains, base = base, runs = runs, lower = opts.lower, budget = opts.budget,
                                interpolant = opts.interpolant, on_bad_fit = opts.on_bad_fit, noise = opts.noise,
                                noise_pool = opts.noise_pool, on_noise = opts.on_noise, boot = opts.boot, seed = opts.seed },
                       inputs, { name = opts.name or ("fit/" .. tostring(opts.budget or "base")) })
    if s.planned then return setmetatable({ stage = s, planned = true }, { __index = function() return sm.PENDING end }) end
    local r = s.result
    r.stage = s
    r.eval_noise = opts.eval_noise -- sm.ablate's: the evaluation error of each domain's contrasts, shown beside noise
    return r
  end

  -- extrapolate{ from = { fit1, fit2 } (or {budget, tokens} pairs), budget = N | steps = k,
  --              actual = {tokens} (validation) } -> weights, tokens, budget, t, validation, and when both fits
  -- carry replicates: ci[d] = {lo, hi}, boot; flags[d] ("below_measured_range"), left_measured_range
  function sm.extrapolate(opts)
    local from, inputs = {}, {}
    for i, f in ipairs(need(opts, "from", "sm.extrapolate")) do
      from[i] = { budget = f.budget, tokens = f.tokens, domains = f.domains, boot = f.boot, base_tokens = f.base_tokens,
                  min_factor = f.min_factor }
      if type(f.stage) == "table" and f.stage.outputs then inputs["from/" .. i] = f.stage.outputs.result end
    end
    local actual = opts.actual and { tokens = opts.actual.tokens } or nil
    if opts.actual and type(opts.actual.stage) == "table" then inputs.actual = opts.actual.stage.outputs.result end
    local s = sm.stage("extrapolate", { from = from, budget = opts.budget, steps = opts.steps, actual = actual }, inputs,
                       { name = opts.name or ("extrapolate/" .. tostring(opts.budget or opts.steps)) })
    if s.planned then return setmetatable({ stage = s, planned = true }, { __index = function() return sm.PENDING end }) end
    local r = s.result
    r.stage = s
    return r
  end

  -- weights_l1(a, b) -> { value, lo, hi, n }: the L1 distance sum_d |a.weights[d] - b.weights[d]| of two weight
  -- sets (fit or extrapolate results, or plain {weights = ...}); when both carry replicates (.boot rows in
  -- .domains order) the 90% interval is the 5th-95th percentile of the distance over paired replicates
  -- (replicate i with replicate i; n of them), else lo and hi are nil.
  function sm.weights_l1(a, b)
    local wa, wb = need(a or {}, "weights", "sm.weights_l1"), need(b or {}, "weights", "sm.weights_l1")
    local doms = {}
    for d in pairs(wa) do doms[#doms + 1] = d end
    for d in pairs(wb) do if wa[d] == nil then doms[#doms + 1] = d end end
    table.sort(doms)
    local function dist(x, y)
      local s = 0
      for _, d in ipairs(doms) do s = s + math.abs((x[d] or 0) - (y[d] or 0)) end
      return s
    end
    local out = { value = dist(wa, wb), n = 0 }
    if type(a.boot) ~= "table" or type(b.boot) ~= "table" or type(a.domains) ~= "table" or type(b.domains) ~= "table" then
      return out
    end
    local function row(t, i)
      local w = {}
      for j, d in ipairs(t.domains) do w[d] = t.boot[i][j] end
      return w
    end
    local v = {}
    for i = 1, math.min(#a.boot, #b.boot) do v[i] = dist(row(a, i), row(b, i)) end
    if #v < 2 then return out end
    table.sort(v)
    local function q(p)
      local h = p * (#v - 1) + 1
      local i = math.floor(h)
      return i >= #v and v[#v] or v[i] + (h - i) * (v[i + 1] - v[i])
    end
    out.lo, out.hi, out.n = q(0.05), q(0.95), #v
    return out
  end

  ---------------------------------------------------------------------------------------------------
  -- train{ corpus, name, weights = {...} with budget = N | tokens = {...}, model, batch, lr, eval_every,
  --        checkpoint_every, curve_eval_batches, repeats = k, ... } -> result (val_ppl, metric, curve =
  --        {steps, ppl}, ...), model artifact. With repeats = k: { name, repeats = { k results as above,
  --        seeds seed..seed+k-1, each its own cached stage "train/<name>/seed<s>" }, metric = { k final
  --        metrics }, seeds }.
  function sm.train(opts)
    local corpus = need(opts, "corpus", "sm.train")
    local name = opts.name or "train"
    local p = train_params(opts, { domains = opts.domains or corpus.domains, weights = opts.weights, tokens = opts.tokens,
                                   budget = opts.budget, eval_every = opts.eval_every, checkpoint_every = opts.checkpoint_every,
                                   curve_eval_batches = opts.curve_eval_batches })
    local inputs = corpus.shards
    if type(opts.from) == "table" and type(opts.from.stage) == "table" and opts.from.stage.outputs then
      -- the stage whose result chose this mixture (extrapolate, fit), for lineage
      inputs = copy(corpus.shards)
      inputs.mixture = opts.from.stage.outputs.result
    end
    local function result(s)
      if s.planned then return setmetatable({ stage = s, planned = true }, { __index = function() return sm.PENDING end }) end
      local r = s.result
      r.stage, r.model, r.name = s, s.outputs.model, name
      return r
    end
    if opts.repeats == nil then return result(sm.stage("train", p, inputs, { name = "train/" .. name })) end
    local seeds = seeds_of(opts, "sm.train")
    local futures = {}
    for i, seed in ipairs(seeds) do
      local ps = { seed = seed } -- a shallow copy: a pending value stays sm.PENDING
      for k, v in pairs(p) do if k ~= "seed" then ps[k] = v end end
      futures[i] = sm.async("train", ps, inputs, { name = "train/" .. name .. "/seed" .. seed })
    end
    local out = { name = name, seeds = seeds, repeats = {}, metric = {} }
    for i, s in ipairs(sm.all(futures)) do
      out.repeats[i] = result(s)
      if s.planned then return setmetatable({ planned = true, repeats = out.repeats }, { __index = function() return sm.PENDING end }) end
      out.metric[i] = out.repeats[i].metric
    end
    return out
  end

  -- compare{ runs = { name = train result, ... }, target = "autoscale" } -> speedup[baseline], final[name],
  -- speedup_ci[baseline] and final_diff[baseline] = {value, lo, hi, n, significant, verdict}, summary[baseline].
  -- The speed-up is read off the validation curves; final and final_diff (the verdict) off each run's final
  -- evaluation on the fixed validation sample (.metric, mean perplexity), the figure the report prints.
  -- Contract: each run is an ordinary train result (.curve, .tokens_per_step, .stage) or a repeated one from
  -- sm.train{..., repeats = k}: .repeats = a list of k ordinary results (seed i of every mixture shares its
  -- initialisation, so seeds are paired by position). Intervals (90%, Student t over the paired seeds) need
  -- repeats of both mixtures; "not significant" when the interval includes zero.
  function sm.compare(opts)
    local curves, inputs = {}, {}
    for name, r in pairs(need(opts, "runs", "sm.compare")) do
      local c = sm.curve_data(r)
      if c == sm.PENDING then curves = sm.PENDING break end
      curves[name] = c
      for i, ri in ipairs(r.repeats or { r }) do
        inputs[r.repeats and string.format("%s/%d", name, i) or name] = ri.stage.outputs.result
      end
    end
    local s = sm.stage("compare", { curves = curves, target = opts.target, metric = "perplexity" }, inputs,
                       { name = opts.name or "compare" })
    if s.planned then return setmetatable({ stage = s, planned = true }, { __index = function() return sm.PENDING end }) end
    local r = s.result
    r.stage = s
    return r
  end

  -- curve_data(train result) -> the validation curve as compare and plot take it: {steps, values (perplexity),
  -- tokens_per_step, final (.metric: the final evaluation's mean perplexity on the fixed validation sample)},
  -- or {repeats = {...}} for a repeated result (sm.train{..., repeats = k}); sm.PENDING while planning. One
  -- conversion, so the report's figures show what compare measured.
  function sm.curve_data(r)
    local function one(x)
      if x.planned then return sm.PENDING end
      return { steps = x.curve.steps, values = x.curve.ppl, tokens_per_step = x.tokens_per_step, final = x.metric }
    end
    if r.planned then return sm.PENDING end
    if type(r.repeats) ~= "table" then return one(r) end
    local reps = {}
    for i, ri in ipairs(r.repeats) do
      reps[i] = one(ri)
      if reps[i] == sm.PENDING then return sm.PENDING end
    end
    return { repeats = reps }
  end

  -- plot{ kind = "fit"|"weights"|"loss", title, data, file } -> the SVG artifact
  function sm.plot(opts)
    local s = sm.stage("plot", { kind = opts.kind, title = opts.title, data = opts.data, file = opts.file }, nil,
                       { name = "plot/" .. (opts.file or opts.kind) })
    if s.planned then return sm.PENDING end
    for k, a in pairs(s.outputs) do if k ~= "result" then return a end end
  end

  -- Copies an artifact out of the store to a path a person can open.
  function sm.export(artifact, path)
    if artifact == nil or artifact == sm.PENDING or sm.planning() then return nil end
    local src = assert(io.open(artifact.path, "rb"))
    local data = src:read("*a")
    src:close()
    local dst, e = io.open(path, "wb")
    if not dst then err("cannot write " .. path .. ": " .. tostring(e)) end
    dst:write(data)
    dst:close()
    return path
  end
end

return A
