-- The noise study behind the demo's defaults: for each configuration, one DDO matrix (base and every
-- domain x each factor, 0.2 and 3) with EVERY run repeated over `repeats` seeds, and from it the numbers
-- that decide whether DDO can tell the domains apart at that size (all in log(metric) units, i.e. relative):
--   base sd      sd over seeds of the base run (the run-to-run noise a single run has)
--   contrast sd  sd over seeds of log m(perturbed) - log m(base) with the same seed, pooled over domains and
--                factors: the noise of DDO's contrasts WITH common random numbers (seed i gives every
--                mixture the same initialisation and data order)
--   unpaired sd  the same against the base run of the next seed (i+1, cyclically): runs that share neither
--                initialisation nor data order, i.e. the contrast noise WITHOUT common random numbers
--   eval se      the evaluation error of a contrast: both runs are evaluated on the same fixed validation
--                sample, so it is the standard error of the per-batch loss differences (sm.eval_contrast_se),
--                root mean square over the contrasts; eval se / contrast sd is its share of the noise
--   spread       sd across domains of each domain's mean contrast x3 vs x0.2: the differences between
--                domains that set the weights, the signal DDO needs
--   snr          spread / the standard error of one domain's mean x3-vs-x0.2 contrast (pooled over domains)
--   above        domains whose mean x3-vs-x0.2 contrast differs from zero at two-sided 95% (Student t on that
--                pooled standard error)
--   fit above    domains the fit itself (sm.fit on the same runs, contrasts paired by seed, noise pooled over
--                the domains) finds above the noise, i.e. not `within_noise`: what the demo's report says
-- for the target metric mean perplexity ("ppl") and mean loss ("loss"), from the same runs; and, per domain,
-- the same figures for the first configuration named (the demo's, by default).
--
--   scalemix run pipelines/noise_study.lua [--param configs=NAME,NAME,...] [--param out=noise-study.md]
--
-- Configurations are named below; "demo" is the cpu preset's DDO run at n1 (pipelines/autoscale_presets.lua:
-- shape, batch, learning rate, validation sample, 8 domains) and each other one changes one thing from it.
-- The learning-rate schedule is tied to each run's own steps (10% warm-up, cosine decay) in all of them, so
-- the budgets also change the schedule's length. The budget ratio n2/n1 does not change the noise at one
-- budget: it is studied through the budgets (n1 and the n2 of ratio 2 and of ratio 4).
local sm = require "scalemix"
local P = sm.params
local preset = require("autoscale_presets").cpu

local demo = { layers = preset.layers, heads = preset.heads, channels = preset.channels, seq = preset.seq, batch = preset.batch,
               lr = preset.lr, n = preset.n1, domains = 8, repeats = 2, eval_batches = preset.eval_batches }
local function variant(changes)
  local c = {}
  for k, v in pairs(demo) do c[k] = v end
  for k, v in pairs(changes) do c[k] = v end
  return c
end
local CONFIGS = {
  demo = variant {},
  n2r2 = variant { n = 2 * preset.n1 },           -- n2 with the budget ratio 2
  n2r4 = variant { n = 4 * preset.n1 },           -- n2 with the paper's ratio 4 (the demo's n2)
  r3 = variant { repeats = 3 },                   -- a third seed
  eval32 = variant { eval_batches = 32 },         -- a 4x larger validation sample
  batch4 = variant { batch = 4 },                 -- batch size (twice the steps at the same budget)
  batch16 = variant { batch = 16 },
  lr6e3 = variant { lr = 6e-3 },                  -- the schedule's peak learning rate
  lr1e3 = variant { lr = 1e-3 },
  wide = variant { channels = 128, heads = 4 },   -- proxy shape
  deep = variant { layers = 4 },
  d4 = variant { domains = 4 },                   -- number of domains (the first four, by name)
}
local names = {}
for n in tostring(P.configs or "demo"):gmatch("[^,%s]+") do
  if not CONFIGS[n] then
    local known = {}
    for k in pairs(CONFIGS) do known[#known + 1] = k end
    table.sort(known)
    sm.error(string.format("noise study: no configuration '%s' (known: %s)", n, table.concat(known, ", ")))
  end
  names[#names + 1] = n
end
sm.config { parallel = P.parallel or preset.parallel }
local corpus = sm.tokenize { dir = P.corpus or "corpus", val_fraction = P.val_fraction or preset.val_fraction }

-- Two-sided 95% Student t quantiles by degrees of freedom (1..30; beyond: the normal's 1.96).
local T95 = { 12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
              2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042 }

local function mean(xs)
  local s = 0
  for _, x in ipairs(xs) do s = s + x end
  return s / #xs
end
local function ss(xs) -- sum of squared deviations from the mean
  local m, s = mean(xs), 0
  for _, x in ipairs(xs) do s = s + (x - m) ^ 2 end
  return s
end

-- The figures of one metric ("ppl" or "loss") from one repeated DDO matrix.
local function figures(ab, doms, k, which)
  local function res(r, i) return r.repeats[i].result end
  local function logm(r, i) return which == "ppl" and math.log(res(r, i).metric) or math.log(res(r, i).mean_loss) end
  local xs = {}
  for i = 1, k do xs[i] = logm(ab.base, i) end
  local f = { base_sd = math.sqrt(ss(xs) / (k - 1)), dom = {} }
  local pooled, upooled, dof, esum, en = 0, 0, 0, 0, 0
  local by = {}
  for _, r in ipairs(ab.runs) do
    local d = by[r.domain] or { runs = {}, pooled = 0, upooled = 0, dof = 0, esum = 0, en = 0 }
    by[r.domain] = d
    local cs, us = {}, {}
    for i = 1, k do
      cs[i] = logm(r, i) - logm(ab.base, i)
      us[i] = logm(r, i) - logm(ab.base, i % k + 1)
      local e = sm.eval_contrast_se(res(r, i), res(ab.base, i), which).log_metric
      if e then esum, en, d.esum, d.en = esum + e * e, en + 1, d.esum + e * e, d.en + 1 end
    end
    d.runs[#d.runs + 1] = { factor = r.factor, per_seed = cs }
    d.pooled, d.upooled, d.dof = d.pooled + ss(cs), d.upooled + ss(us), d.dof + k - 1
    pooled, upooled, dof = pooled + ss(cs), upooled + ss(us), dof + k - 1
  end
  f.contrast_sd, f.unpaired_sd = math.sqrt(pooled / dof), math.sqrt(upooled / dof)
  f.eval_se = en > 0 and math.sqrt(esum / en) or nil
  -- each domain's x3-vs-x0.2 contrast per seed; its standard error pooled over the domains
  local means, hl_ss, hl_dof = {}, 0, 0
  for _, dname in ipairs(doms) do
    local d = by[dname]
    local lo, hi = d.runs[1], d.runs[1]
    for _, e in ipairs(d.runs) do
      if e.factor < lo.factor then lo = e end
      if e.factor > hi.factor then hi = e end
    end
    local hl = {}
    for i = 1, k do hl[i] = hi.per_seed[i] - lo.per_seed[i] end
    d.hl, d.lo_mean, d.hi_mean = mean(hl), mean(lo.per_seed), mean(hi.per_seed)
    hl_ss, hl_dof = hl_ss + ss(hl), hl_dof + k - 1
    means[#means + 1] = d.hl
  end
  local se = math.sqrt(hl_ss / hl_dof / k)
  local t = T95[hl_dof] or 1.96
  f.spread = math.sqrt(ss(means) / (#means - 1))
  f.snr, f.above = f.spread / se, 0
  for _, dname in ipairs(doms) do
    local d = by[dname]
    local above = math.abs(d.hl) > t * se
    if above then f.above = f.above + 1 end
    f.dom[dname] = { contrast_sd = math.sqrt(d.pooled / d.dof), unpaired_sd = math.sqrt(d.upooled / d.dof), lo = d.lo_mean,
                     hi = d.hi_mean, hl = d.hl, eval_se = d.en > 0 and math.sqrt(d.esum / d.en) or nil, above = above }
  end
  f.hl_se = se
  return f
end

-- How many domains sm.fit finds above the noise on these runs, for one metric ("ppl": the runs' metric;
-- "loss": their mean loss). No bootstrap: only the noise test is used.
local function fit_above(ab, doms, k, which, name)
  local function metrics(r)
    local t = {}
    for i = 1, k do
      local res = r.repeats[i].result
      t[i] = which == "ppl" and res.metric or res.mean_loss
    end
    return t
  end
  local runs = {}
  for i, r in ipairs(ab.runs) do runs[i] = { domain = r.domain, factor = r.factor, metric = metrics(r), seeds = r.seeds } end
  local f = sm.fit { domains = doms, base = { tokens = ab.base.tokens, metric = metrics(ab.base), seeds = ab.base.seeds },
                     runs = runs, boot = 0, name = "fit/noise/" .. name .. "/" .. which }
  return #doms - f.within_noise
end

local function measure(name)
  local c = CONFIGS[name]
  local doms = {}
  for i = 1, math.min(c.domains, #corpus.domains) do doms[i] = corpus.domains[i] end
  local ab = sm.ablate { corpus = corpus, budget = c.n, label = "noise/" .. name, domains = doms, repeats = c.repeats,
                         ["repeat"] = "all", model = { layers = c.layers, heads = c.heads, channels = c.channels, seq = c.seq },
                         batch = c.batch, lr = c.lr, eval_batches = c.eval_batches, device = P.device or preset.device,
                         threads = preset.threads }
  if ab.planned then return nil end
  local row = { name = name, c = c, doms = doms, ppl = figures(ab, doms, c.repeats, "ppl"), loss = figures(ab, doms, c.repeats, "loss") }
  for _, which in ipairs { "ppl", "loss" } do row[which].fit_above = fit_above(ab, doms, c.repeats, which, name) end
  row.seconds = 0
  local all = { ab.base }
  for _, r in ipairs(ab.runs) do all[#all + 1] = r end
  for _, r in ipairs(all) do
    for i = 1, c.repeats do row.seconds = row.seconds + r.repeats[i].result.seconds end
  end
  return row
end

local rows = {}
for _, n in ipairs(names) do rows[#rows + 1] = measure(n) end
if sm.planning() then return end

local lines = {}
local function out(fmt, ...) lines[#lines + 1] = string.format(fmt, ...) end
local function num(x, fmt) return x and string.format(fmt, x) or "-" end
out("| config | L/C/T | batch | lr | tokens | domains | seeds | runs | run s (sum) | metric | base sd | contrast sd (CRN) | unpaired sd (no CRN) | eval se (paired) | spread | snr | above | fit above |")
out("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for _, r in ipairs(rows) do
  local c = r.c
  for _, which in ipairs { "ppl", "loss" } do
    local f = r[which]
    out("| %s | %d/%d/%d | %d | %g | %.3g | %d | %d | %d | %.0f | %s | %.4f | %.4f | %.4f | %s | %.4f | %.1f | %d/%d | %d/%d |", r.name,
        c.layers, c.channels, c.seq, c.batch, c.lr, c.n, #r.doms, c.repeats, (2 * #r.doms + 1) * c.repeats, r.seconds, which,
        f.base_sd, f.contrast_sd, f.unpaired_sd, num(f.eval_se, "%.4f"), f.spread, f.snr, f.above, #r.doms, f.fit_above, #r.doms)
  end
end
local first = rows[1]
out("")
out("Per domain, configuration %s (%d seeds; log units): contrasts against the base run of the same seed", first.name, first.c.repeats)
out("")
out("| domain | metric | contrast sd (CRN) | unpaired sd (no CRN) | eval se (paired) | x0.2 | x3 | x3 - x0.2 | above |")
out("|---|---|---:|---:|---:|---:|---:|---:|---|")
for _, which in ipairs { "ppl", "loss" } do
  for _, d in ipairs(first.doms) do
    local x = first[which].dom[d]
    out("| %s | %s | %.4f | %.4f | %s | %+.4f | %+.4f | %+.4f | %s |", d, which, x.contrast_sd, x.unpaired_sd, num(x.eval_se, "%.4f"),
        x.lo, x.hi, x.hl, x.above and "yes" or "no")
  end
end
local text = table.concat(lines, "\n") .. "\n"
io.stdout:write(text)
local f = io.open(P.out or "noise-study.md", "w")
if f then f:write(text) f:close() end
