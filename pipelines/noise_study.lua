-- The noise study behind the demo's defaults: for each configuration, one DDO matrix (base and every
-- domain x each factor) repeated with `repeats` seeds for every run, and from it the numbers that decide
-- whether DDO can tell the domains apart at that size:
--   base sd      sd over seeds of log(metric) of the base run (the run-to-run noise a single run has)
--   contrast sd  sd over seeds of log(metric of a perturbed run) - log(metric of the base run) with the same
--                seed, pooled over domains and factors (the noise DDO's contrasts have under common random
--                numbers: the same initialisation and data order for every mixture of a seed)
--   unpaired sd  the same with the base run of the next seed (i+1, cyclically): a contrast between runs
--                that share neither initialisation nor data order, what CRN removes
--   eval se      the final evaluation's standard error on the fixed validation sample, log units (mean over runs)
--   effect       mean over domains of |log m(x_hi) - log m(x_lo)| (the seeds' mean; mostly the common effect
--                of the total changing with the domain's quantity)
--   spread       sd over domains of log m(x_hi) - log m(x_lo): the differences between domains that set the
--                weights, the signal DDO needs; spread / contrast sd is its signal-to-noise
--   above        domains whose mean contrast x_hi vs x_lo exceeds 2 standard errors of that mean
-- for the target metric mean perplexity ("ppl") and mean loss ("loss"), from the same runs.
--
--   scalemix run pipelines/noise_study.lua [--param configs=NAME,NAME,...] [--param out=noise-study.md]
--
-- Configurations are named below; each changes one thing from "base" (the cpu preset's proxy). The
-- learning-rate schedule is tied to each run's own steps (10% warm-up, cosine decay) in every
-- configuration. The budget ratio n2/n1 does not change the noise at one budget; it is studied through
-- the budgets themselves (n and 4n).
local sm = require "scalemix"
local P = sm.params

local base = { layers = 2, heads = 2, channels = 64, seq = 64, batch = 8, lr = 2e-3, n = 20e3, domains = 8, repeats = 3,
               eval_batches = 32 }
local function variant(changes)
  local c = {}
  for k, v in pairs(base) do c[k] = v end
  for k, v in pairs(changes) do c[k] = v end
  return c
end
local CONFIGS = {
  base = variant {},
  n80k = variant { n = 80e3 },                          -- n2 = 4 n1 (the paper's ratio)
  n5k = variant { n = 5e3 },
  wide = variant { channels = 128, heads = 4 },         -- proxy shape
  deep = variant { layers = 4 },
  batch4 = variant { batch = 4 },
  lr6e3 = variant { lr = 6e-3 },
  d4 = variant { domains = 4 },                         -- number of domains (the first four, by name)
  d4r2 = variant { domains = 4, repeats = 2 },          -- the same, two seeds (what a loaded machine allowed)
  eval8 = variant { eval_batches = 8 },                 -- a smaller validation sample
  r2 = variant { repeats = 2 },
}
local names = {}
for n in tostring(P.configs or "base"):gmatch("[^,%s]+") do
  if not CONFIGS[n] then
    local known = {}
    for k in pairs(CONFIGS) do known[#known + 1] = k end
    table.sort(known)
    sm.error(string.format("noise study: no configuration '%s' (known: %s)", n, table.concat(known, ", ")))
  end
  names[#names + 1] = n
end
sm.config { parallel = P.parallel or 2 }
local corpus = sm.tokenize { dir = P.corpus or "corpus", val_fraction = P.val_fraction or 0.05 }

local function measure(name)
  local c = CONFIGS[name]
  local doms = {}
  for i = 1, math.min(c.domains, #corpus.domains) do doms[i] = corpus.domains[i] end
  local ab = sm.ablate { corpus = corpus, budget = c.n, label = "noise/" .. name, domains = doms, repeats = c.repeats,
                         ["repeat"] = "all", model = { layers = c.layers, heads = c.heads, channels = c.channels, seq = c.seq },
                         batch = c.batch, lr = c.lr, eval_batches = c.eval_batches, device = P.device or "cpu" }
  if ab.planned then return nil end
  local row = { name = name, c = c, ndomains = #doms }
  local all = { ab.base }
  for _, r in ipairs(ab.runs) do all[#all + 1] = r end
  for _, which in ipairs { "ppl", "loss" } do
    local function logm(r, k)
      local res = r.repeats[k].result
      return which == "ppl" and math.log(res.metric) or math.log(res.mean_loss)
    end
    local k = c.repeats
    -- base sd
    local xs, s = {}, 0
    for i = 1, k do xs[i] = logm(ab.base, i) s = s + xs[i] end
    local mb, ss = s / k, 0
    for i = 1, k do ss = ss + (xs[i] - mb) ^ 2 end
    local base_sd = math.sqrt(ss / (k - 1))
    -- contrast sd (pooled), effect and the domains above noise
    local pooled, upooled, dof, effect, above = 0, 0, 0, 0, 0
    local by = {}
    for _, r in ipairs(ab.runs) do
      local cs, us, m, um = {}, {}, 0, 0
      for i = 1, k do
        cs[i] = logm(r, i) - logm(ab.base, i)
        us[i] = logm(r, i) - logm(ab.base, i % k + 1)
        m, um = m + cs[i] / k, um + us[i] / k
      end
      for i = 1, k do pooled, upooled = pooled + (cs[i] - m) ^ 2, upooled + (us[i] - um) ^ 2 end
      dof = dof + k - 1
      by[r.domain] = by[r.domain] or {}
      table.insert(by[r.domain], { factor = r.factor, per_seed = cs })
    end
    local contrast_sd = math.sqrt(pooled / dof)
    local means = {}
    for _, d in ipairs(doms) do
      local lo, hi = by[d][1], by[d][1]
      for _, e in ipairs(by[d]) do
        if e.factor < lo.factor then lo = e end
        if e.factor > hi.factor then hi = e end
      end
      local diffs, m = {}, 0
      for i = 1, k do diffs[i] = hi.per_seed[i] - lo.per_seed[i] m = m + diffs[i] / k end
      local v = 0
      for i = 1, k do v = v + (diffs[i] - m) ^ 2 end
      local se = math.sqrt(v / (k - 1) / k)
      effect = effect + math.abs(m) / #doms
      means[#means + 1] = m
      if math.abs(m) > 2 * se then above = above + 1 end
    end
    local mm, sv = 0, 0
    for _, x in ipairs(means) do mm = mm + x / #means end
    for _, x in ipairs(means) do sv = sv + (x - mm) ^ 2 end
    local spread = math.sqrt(sv / (#means - 1))
    row[which] = { base_sd = base_sd, contrast_sd = contrast_sd, unpaired_sd = math.sqrt(upooled / dof), effect = effect,
                   spread = spread, above = above }
  end
  local se, n = 0, 0
  for _, r in ipairs(all) do
    for i = 1, c.repeats do
      local res = r.repeats[i].result
      if res.metric_se then se = se + res.metric_se / res.metric n = n + 1 end
    end
  end
  row.eval_se = n > 0 and se / n or nil
  row.seconds = 0
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
out("| config | shape L/C/T | batch | lr | tokens | domains | seeds | runs | train s (sum) | eval se | ppl: base sd | ppl: unpaired sd | ppl: contrast sd | ppl: effect | ppl: spread | ppl: above | loss: contrast sd | loss: effect | loss: spread | loss: above |")
out("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for _, r in ipairs(rows) do
  local c = r.c
  out("| %s | %d/%d/%d | %d | %g | %.3g | %d | %d | %d | %.0f | %s | %.4f | %.4f | %.4f | %.4f | %.4f | %d/%d | %.4f | %.4f | %.4f | %d/%d |",
      r.name, c.layers, c.channels, c.seq, c.batch, c.lr, c.n, r.ndomains, c.repeats, (2 * r.ndomains + 1) * c.repeats, r.seconds,
      r.eval_se and string.format("%.4f", r.eval_se) or "-", r.ppl.base_sd, r.ppl.unpaired_sd, r.ppl.contrast_sd, r.ppl.effect,
      r.ppl.spread, r.ppl.above, r.ndomains, r.loss.contrast_sd, r.loss.effect, r.loss.spread, r.loss.above, r.ndomains)
end
local text = table.concat(lines, "\n") .. "\n"
io.stdout:write(text)
local f = io.open(P.out or "noise-study.md", "w")
if f then f:write(text) f:close() end
