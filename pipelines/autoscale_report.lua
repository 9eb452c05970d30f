-- autoscale_report: the plots and the text report of pipelines/autoscale.lua (written to out_dir/report.txt
-- and stdout). Every number printed is a measurement or a stage's result; intervals are 90%.
local sm = require "scalemix"
local R = {}

-- mean and sample sd (nil with one value) of a list
local function summary(xs)
  local n, s = #xs, 0
  for _, x in ipairs(xs) do s = s + x end
  local mean = s / n
  if n < 2 then return mean end
  local ss = 0
  for _, x in ipairs(xs) do ss = ss + (x - mean) ^ 2 end
  return mean, math.sqrt(ss / (n - 1))
end

-- A train result, repeated or not, as its list of single-seed results.
local function seeds(r) return r.repeats or { r } end
local function metrics(r)
  local t = {}
  for i, x in ipairs(seeds(r)) do t[i] = x.metric end
  return t
end

local function iv(ci, fmt)
  if type(ci) ~= "table" then return "" end
  return string.format(" [" .. fmt .. ", " .. fmt .. "]", ci[1] or ci.lo, ci[2] or ci.hi)
end

function R.write(o)
  local domains, runs, cmp = o.domains, o.runs, o.cmp
  local plots = {}
  local function plot(opts)
    plots[#plots + 1] = sm.export(sm.plot(opts), o.out_dir .. "/" .. opts.file)
  end
  for i, f in ipairs { o.fit1, o.fit2 } do
    plot { kind = "fit", file = "fit_n" .. i .. ".svg", title = string.format("DDO fits at %.3g tokens (normalised units)", f.budget),
           data = { params = f.params, points = f.points, domains = domains, rmse = f.rmse, n = f.n, alternatives = f.alternatives,
                    ci = f.ci, noise = f.noise, repeats = f.repeats } }
  end
  plot { kind = "weights", file = "weights.svg", title = "Mixture weights against budget",
         data = { mixtures = { { budget = o.fit1.budget, weights = o.fit1.weights, ci = o.fit1.ci, label = "DDO n1" },
                               { budget = o.fit2.budget, weights = o.fit2.weights, ci = o.fit2.ci, label = "DDO n2" },
                               { budget = o.target, weights = o.ex.weights, ci = o.ex.ci, label = "AutoScale" } } } }
  local curves = {}
  for name, r in pairs(runs) do curves[name] = sm.curve_data(r) end -- mean and band over seeds
  plot { kind = "loss", file = "curves.svg", title = string.format("Validation perplexity at %.3g tokens", o.target),
         data = { curves = curves, metric = "perplexity" } }

  local names = { "autoscale" }
  for _, b in ipairs(o.baselines) do names[#names + 1] = b[1] end
  local lines = {}
  local function out(fmt, ...) lines[#lines + 1] = string.format(fmt, ...) end
  local first = seeds(runs.autoscale)[1]
  out("AutoScale on %s (preset %s): %d domains, model L=%d H=%d C=%d T=%d (%s); budgets n1 %.3g, n2 %.3g, target %.3g tokens",
      o.corpus_dir, o.preset, #domains, o.model.layers, o.model.heads, o.model.channels, o.model.seq, first.device, o.n1, o.n2, o.target)

  -- Noise: training noise from the repeated base runs; the evaluation error of the DDO contrasts, paired on
  -- the fixed validation sample (sm.eval_contrast_se); per domain the fit's noise and signal-to-noise.
  out("")
  out("Noise of the DDO runs (log-metric units, i.e. relative)")
  for i, a in ipairs(o.ab) do
    local ms = type(a.base.metric) == "table" and a.base.metric or { a.base.metric }
    local logs = {}
    for k, m in ipairs(ms) do logs[k] = math.log(m) end
    local _, sd = summary(logs)
    out("  n%d (%.3g tokens): base run over %d seeds: training sd %s", i, a.budget, #ms, sd and string.format("%.4f", sd) or "(one seed)")
  end
  local function fitline(f, a, tag)
    local df = f.noise_df and f.noise_df[domains[1]]
    out("  per domain at %s: the fit's noise (sd of %s; %s, %s degrees of freedom) / the domain's own estimate / evaluation error of its contrasts (the same sample) / signal-to-noise",
        tag, f.paired and "one seed's contrast, paired by seed" or "one run", f.noise_pool == "all" and "pooled over the domains" or "per domain",
        df and string.format("%g", df) or "-")
    for _, d in ipairs(domains) do
      local fl = table.concat((f.flags or {})[d] or {}, ",")
      local function num(t, fmt) return t and t[d] and string.format(fmt, t[d]) or "-" end
      out("    %-13s %s / %s / %s / %s%s", d, num(f.noise, "%.4f"), num(f.noise_domain, "%.4f"), num(a.eval_noise, "%.4f"),
          num(f.snr, "%.2f"), fl:find("within_noise") and "  (within noise)" or "")
    end
    if f.noise_source ~= "unknown" then
      out("  at %s, %d of %d domains' contrasts stand above the noise (two-sided 95%%); the rest are held at their base share",
          tag, #domains - (f.within_noise or 0), #domains)
    end
  end
  fitline(o.fit1, o.ab[1], "n1")
  fitline(o.fit2, o.ab[2], "n2")

  local flagged = {}
  for _, f in ipairs { o.fit1, o.fit2 } do
    for d, fl in pairs(f.flags or {}) do
      if #fl > 0 then flagged[#flagged + 1] = string.format("%s@%.3g: %s", d, f.budget, table.concat(fl, ",")) end
    end
  end
  if #flagged > 0 then out("Flagged fits: %s", table.concat(flagged, "; ")) end

  out("")
  out("Mixture weights by budget (90%% intervals)")
  out("%-13s %24s %24s %24s %9s %9s", "domain", string.format("DDO %.3g", o.fit1.budget), string.format("DDO %.3g", o.fit2.budget),
      string.format("AutoScale %.3g", o.target), "uniform", "proport.")
  for _, d in ipairs(domains) do
    out("%-13s %24s %24s %24s %9.4f %9.4f", d, string.format("%.4f", o.fit1.weights[d]) .. iv((o.fit1.ci or {})[d], "%.3f"),
        string.format("%.4f", o.fit2.weights[d]) .. iv((o.fit2.ci or {})[d], "%.3f"),
        string.format("%.4f", o.ex.weights[d]) .. iv((o.ex.ci or {})[d], "%.3f"), o.uniform[d], o.proportional[d])
  end
  -- extrapolate flags a weight under the smallest factor times the base share: the range DDO measured
  local below = o.ex.left_measured_range or {}
  if #below > 0 then
    out("Extrapolated below the measured range (the extrapolation left the range DDO measured): %s", table.concat(below, ", "))
  end

  -- Data repetition: any run that had to serve a domain's data more than once.
  local rep = {}
  local function note_epochs(label, res)
    for _, d in ipairs(domains) do
      local e = (res.epochs or {})[d]
      if e and e > 0 then rep[#rep + 1] = string.format("%s %s %.2f", label, d, e) end
    end
  end
  for _, n in ipairs(names) do note_epochs(n, seeds(runs[n])[1]) end
  for i, a in ipairs(o.ab) do
    note_epochs("DDO n" .. i .. " base", a.base)
    for _, r in ipairs(a.runs) do note_epochs(string.format("DDO n%d %s x%.2g", i, r.domain, r.factor), r) end
  end
  out("Data repeated (extra epochs over a domain's training data): %s", #rep > 0 and table.concat(rep, "; ") or "none")

  out("")
  out("Validation perplexity at the target budget (%.3g tokens), first seed; the fixed validation sample", o.target)
  local hdr = string.format("%-13s", "domain")
  for _, n in ipairs(names) do hdr = hdr .. string.format(" %12s", n) end
  out("%s", hdr)
  for _, d in ipairs(domains) do
    local row = string.format("%-13s", d)
    for _, n in ipairs(names) do row = row .. string.format(" %12.2f", seeds(runs[n])[1].val_ppl[d]) end
    out("%s", row)
  end
  out("")
  out("Mean validation perplexity by seed (seeds are paired: the same initialisation and data order)")
  for _, n in ipairs(names) do
    local ms = metrics(runs[n])
    local parts = {}
    for i, m in ipairs(ms) do parts[i] = string.format("%.2f", m) end
    out("  %-14s %s", n, table.concat(parts, "  "))
  end
  out("")
  -- the verdict is compare's (one figure: the final evaluations on the fixed validation sample, paired seeds)
  out("Verdict at the target: AutoScale minus each baseline, mean validation perplexity (paired by seed, 90%% t interval)")
  for i = 2, #names do
    local f = cmp.final_diff[names[i]]
    local sig = f.significant == nil and "one seed: no interval" or not f.significant and "not significant"
      or f.value < 0 and "AutoScale better" or "AutoScale worse"
    out("  vs %-14s %+.2f%s  %s", names[i], f.value, f.significant ~= nil and string.format(" [%+.2f, %+.2f]", f.lo, f.hi) or "", sig)
  end
  out("")
  out("Speed-up of AutoScale on the validation curves (1 - steps to reach the end of the baseline's curve / baseline's steps)")
  for i = 2, #names do out("  vs %-14s %s", names[i], cmp.summary[names[i]]) end
  local v = o.validation
  if v then
    out("")
    out("Extrapolation check at %.3g tokens (DDO run directly there)", v.fit.budget)
    local l1 = v.l1
    out("  predicted vs directly optimised weights: L1 %.4f [%.4f, %.4f]; mean |weight error| %.4f", l1.value or l1[1],
        l1.lo or l1[2], l1.hi or l1[3], v.ex.validation.mean_abs_weight_err)
    out("  %-13s %10s %10s", "domain", "predicted", "direct")
    for _, d in ipairs(domains) do out("  %-13s %10.4f %10.4f", d, v.ex.weights[d], v.fit.weights[d]) end
    local function ms(r)
      local mean, sd = summary(metrics(r))
      return string.format("%.2f%s", mean, sd and string.format(" (sd %.2f, %d seeds)", sd, #metrics(r)) or "")
    end
    out("  measured mean validation perplexity there: predicted mixture %s; directly optimised %s", ms(v.predicted), ms(v.direct))
    -- the n2 fit's prediction at its optimum (separable model: base metric x (1 + sum of each domain's
    -- change along its own curve)) against a run at that optimum
    local f, base = o.fit2, o.ab[2].base
    local base_metric = summary(type(base.metric) == "table" and base.metric or { base.metric })
    local y = 1
    for _, d in ipairs(domains) do
      local p, x = f.params[d], f.tokens[d] / base.tokens[d]
      if p and p.a and p.b then y = y + (x + p.a) ^ (-p.b) - (1 + p.a) ^ (-p.b) end -- (a held domain stays at x = 1)
    end
    out("  n2 fit at its optimum: predicted metric %.2f, measured %s (base run %.2f)", base_metric * y, ms(v.optimum), base_metric)
  end
  out("")
  out("Plots: %s", table.concat(plots, ", "))
  out("Lineage: run %s (scalemix sql, scalemix history)", sm.run_id())
  local text = table.concat(lines, "\n") .. "\n"
  io.stdout:write(text)
  local fh = io.open(o.out_dir .. "/report.txt", "w")
  if fh then fh:write(text) fh:close() end
  return text
end

return R
