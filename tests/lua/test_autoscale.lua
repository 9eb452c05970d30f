-- The AutoScale stages through the Lua library with numbers typed in by hand (as users who train elsewhere
-- do): the measurements below are the demo's DDO runs at 50k tokens, where one domain (docs) came out
-- non-monotone and its fitted curve diverges at the lower bound.
local sm = require "scalemix"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local H = require "harness"
local test = H.test
local function near(a, b, tol, what)
  if not (math.abs(a - b) <= tol) then error(string.format("%s: got %.17g, want %.17g", what, a, b), 2) end
end

local domains = { "books", "code", "docs", "encyclopedia", "legal", "qa", "tex", "web" }
local base_tokens = {}
for _, d in ipairs(domains) do base_tokens[d] = 6272 end
local m = { -- domain = { metric at x = 1216/6272, metric at x = 18752/6272 }
  books = { 2449.0734329856177, 2210.478210166085 }, code = { 2557.0271379868054, 2195.7114531147263 },
  docs = { 2376.075934166706, 2299.744749189381 }, encyclopedia = { 2398.1665197836937, 2168.157523421852 },
  legal = { 2443.2652240908533, 2200.0059096414125 }, qa = { 2487.1153999335256, 2214.4546204822227 },
  tex = { 2519.923298690986, 2249.5444502613404 }, web = { 2575.7874581434094, 2095.6602903740536 },
}
local runs = {}
for _, d in ipairs(domains) do
  runs[#runs + 1] = { domain = d, factor = 1216 / 6272, metric = m[d][1] }
  runs[#runs + 1] = { domain = d, factor = 18752 / 6272, metric = m[d][2] }
end
local spec = { domains = domains, base = { tokens = base_tokens, metric = 2298.8383466060204 }, runs = runs }

test("an unusable domain is held at its base quantity; the rest is optimised", function()
  local fit = sm.fit(spec)
  local sum = 0
  for _, d in ipairs(domains) do sum = sum + fit.weights[d] end
  near(sum, 1, 1e-12, "weights sum")
  near(fit.tokens.docs, 6272, 1e-6, "docs tokens held at base")
  local held = false
  for _, f in ipairs(fit.flags.docs) do held = held or f == "held_at_base" end
  assert(held, "docs is flagged held_at_base")
  assert(#fit.flags.web == 0 or fit.flags.web[1] ~= "held_at_base", "web is optimised")
  assert(fit.weights.web > fit.weights.books, "web gained the most from more data, so it gets more than books")
end)

test("on_bad_fit = fail refuses instead", function()
  local ok, err = pcall(function()
    return sm.stage("fit", { domains = spec.domains, base = spec.base, runs = spec.runs, on_bad_fit = "fail" })
  end)
  assert(not ok and tostring(err):find("domain 'docs'"), tostring(err))
end)

test("extrapolate follows the paper's rule on the fits' tokens", function()
  local f1 = { budget = 100, tokens = { a = 60, b = 40 } }
  local f2 = { budget = 200, tokens = { a = 100, b = 100 } }
  local ex = sm.extrapolate { from = { f1, f2 }, steps = 1 }
  near(ex.tokens.a, 100 * 100 / 60, 1e-9, "N3_a = N2_a^2 / N1_a")
  near(ex.tokens.b, 100 * 100 / 40, 1e-9, "N3_b")
  near(ex.budget, 100 * 100 / 60 + 250, 1e-9, "budget")
end)

test("repeats typed by hand: noise, intervals, replicates, and a flat domain within noise", function()
  -- three domains; "flat" barely moves; the base run repeated three times
  local rs = {
    { domain = "a", factor = 0.2, metric = { 30.1, 30.3 } }, { domain = "a", factor = 3, metric = 26.0 },
    { domain = "b", factor = 0.2, metric = 29.4 }, { domain = "b", factor = 3, metric = 26.9 },
    { domain = "flat", factor = 0.2, metric = 28.15 }, { domain = "flat", factor = 3, metric = 28.05 },
  }
  local f = sm.fit { domains = { "a", "b", "flat" }, base = { tokens = { a = 100, b = 100, flat = 100 }, metric = { 28.1, 28.3, 27.9 } },
                     runs = rs, boot = 100 }
  assert(f.noise_source == "repeats", tostring(f.noise_source))
  assert(f.noise.a > 0 and f.noise.a < 0.02, "noise of a: " .. tostring(f.noise.a))
  local within = false
  for _, fl in ipairs(f.flags.flat) do within = within or fl == "within_noise" end
  assert(within, "flat is within noise")
  near(f.n.flat, 1, 0, "flat held at its base quantity")
  assert(f.snr.a > f.snr.flat, "a's contrasts stand out more than flat's")
  assert(f.ci.a.lo <= f.weights.a and f.weights.a <= f.ci.a.hi, "a's interval holds its estimate")
  assert(#f.boot == 100 and #f.boot[1] == 3, "100 replicates of 3 weights")
  assert(f.other.interpolant == "power" and f.interpolant == "saturating", "the default and the other interpolant")
  -- the same fit is at distance 0 from itself, with an interval from paired replicates
  local d0 = sm.weights_l1(f, f)
  near(d0.value, 0, 0, "L1 to itself")
  near(d0.hi, 0, 0, "paired replicates of the same fit")
  local d1 = sm.weights_l1(f, { weights = { a = 1 / 3, b = 1 / 3, flat = 1 / 3 } })
  assert(d1.value > 0 and d1.lo == nil, "no interval without replicates on both sides")
end)

test("extrapolate carries the fits' replicates to the target", function()
  local base = { tokens = { a = 100, b = 100 }, metric = { 20, 20.2, 19.8 } }
  local function fit(scale, budget)
    return sm.fit { domains = { "a", "b" }, base = { tokens = { a = budget / 2, b = budget / 2 }, metric = base.metric },
                    runs = { { domain = "a", factor = 0.2, metric = 22 * scale }, { domain = "a", factor = 3, metric = 18.5 * scale },
                             { domain = "b", factor = 0.2, metric = 21 * scale }, { domain = "b", factor = 3, metric = 19.4 * scale } },
                    boot = 50 }
  end
  local f1, f2 = fit(1, 1000), fit(0.995, 4000)
  local ex = sm.extrapolate { from = { f1, f2 }, steps = 1 }
  assert(ex.ci and ex.ci.a and ex.ci.a.lo <= ex.ci.a.hi, "an interval for a")
  assert(#ex.boot == 50, "replicates paired: " .. #ex.boot)
  local l1 = sm.weights_l1(ex, f2)
  assert(l1.lo ~= nil and l1.lo <= l1.hi, "paired L1 interval")
end)

test("compare takes repeated train results (the sm.train repeats contract) beside single ones", function()
  -- stand-ins for train results: curves typed here, any stage's result artifact for the lineage input
  local any = sm.fit(spec)
  -- .metric (the final evaluation on the fixed sample) is 0.5 above the curve's end: compare's final is .metric
  local function run(final)
    return { curve = { steps = { 100, 200, 300 }, ppl = { 40, 30, final } }, metric = final + 0.5, tokens_per_step = 64, stage = any.stage }
  end
  local function rep(finals)
    local r = { repeats = {}, metric = {} }
    for i, f in ipairs(finals) do r.repeats[i], r.metric[i] = run(f), f end
    return r
  end
  local c = sm.compare { runs = { autoscale = rep { 20, 20.5, 19.8 }, uniform = rep { 25, 25.4, 24.9 }, tied = rep { 20.3, 19.9, 20.2 },
                                  single = run(22) }, target = "autoscale" }
  assert(c.speedup_ci.uniform.significant == true, "a clear win is significant")
  assert(c.final_diff.tied.verdict == "not significant", tostring(c.final_diff.tied.verdict))
  assert(c.summary.tied:find("not significant"), c.summary.tied)
  assert(not c.summary.uniform:find("not significant"), c.summary.uniform)
  assert(c.summary.single:find("no interval"), c.summary.single)
  near(c.final.autoscale, (20 + 20.5 + 19.8) / 3 + 0.5, 1e-12, "final: the mean final evaluation, not the curve's end")
  near(c.final_diff.uniform.value, (20 + 20.5 + 19.8 - 25 - 25.4 - 24.9) / 3, 1e-12, "final difference")
end)

test("the evaluation error of a contrast pairs the two runs batch by batch on the shared sample", function()
  -- the sample's own luck (batch 2 is hard for both models) cancels; what remains is the spread of the
  -- per-batch differences: code 0.1, 0.3, 0.2 (sd 0.1), web 0, 0, 0
  local a = { val_batch_loss = { code = { 3.1, 5.3, 4.2 }, web = { 2, 2.5, 3 } }, val_loss = { code = 4.2, web = 2.5 },
              val_ppl = { code = math.exp(4.2), web = math.exp(2.5) } }
  local b = { val_batch_loss = { code = { 3.0, 5.0, 4.0 }, web = { 2, 2.5, 3 } }, val_loss = { code = 4.0, web = 2.5 },
              val_ppl = { code = math.exp(4.0), web = math.exp(2.5) } }
  local e = sm.eval_contrast_se(a, b, "ppl")
  near(e.se.code, 0.1 / math.sqrt(3), 1e-12, "code: sd of the differences / sqrt(batches)")
  near(e.se.web, 0, 0, "web: identical per-batch losses")
  local wc = (math.exp(4.2) + math.exp(4.0)) / 2 / ((math.exp(4.2) + math.exp(4.0)) / 2 + math.exp(2.5))
  near(e.log_metric, wc * 0.1 / math.sqrt(3), 1e-12, "log mean perplexity: the delta method, weights ppl_d / sum")
  near(sm.eval_contrast_se(a, b, "loss").log_metric, 0.1 / math.sqrt(3) / (4.1 + 2.5), 1e-12, "log mean loss")
  b.val_batch_loss.code = { 3.0, 5.0 }
  local ok, msg = pcall(sm.eval_contrast_se, a, b, "ppl")
  assert(not ok and tostring(msg):find("not the same validation sample"), tostring(msg))
end)

H.finish()
