-- sm.ablate and sm.train with repeats, against recorded stage submissions: one stage per seed (seeds
-- seed..seed+k-1, paired: the same parameters but the seed), the unrepeated stage names kept for seed 1
-- of DDO, lists of metrics where the fit takes them, and train's contract ({repeats, metric}).
local sm = require "scalemix"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local H = require "harness"
local test = H.test

local submitted
local function fake(plugin, params, inputs, opts)
  local served = {}
  for d, t in pairs(params.tokens or {}) do served[d] = t end
  -- a metric that depends on the seed and the mixture, so lists can be checked
  local metric = 100 + (params.seed or 1) + (params.tokens and params.tokens.a or 0) / 1000
  -- per-batch losses of the shared validation sample: batch 2 moves with the mixture, the others do not
  local shift = (params.tokens and params.tokens.a or 0) / 1e5
  local bl = { a = { 4, 4.5 + shift, 5 }, b = { 3, 3.5, 4 } }
  local s = { name = opts.name, plugin = plugin, params = params, stage_run_id = "sr-" .. #submitted,
              result = { metric = metric, mean_loss = math.log(metric), tokens = served, val_ppl = { a = 90, b = 30 },
                         val_loss = { a = 4.5, b = 3.5 }, val_batch_loss = bl, metric_se = 0.5, epochs = {} },
              outputs = { result = { path = "/x" }, model = { path = "/m" } } }
  function s.wait(self) return self end
  submitted[#submitted + 1] = s
  return s
end
sm.async = fake
sm.stage = function(...) return fake(...):wait() end
local corpus = { domains = { "a", "b" }, shards = {} }

local function by_name()
  local t = {}
  for _, s in ipairs(submitted) do t[s.name] = s end
  return t
end

test("ablate repeats the base run with paired seeds; the fit gets a list", function()
  submitted = {}
  local ab = sm.ablate { corpus = corpus, budget = 4000, label = "n1", repeats = 3, seed = 5 }
  local n = by_name()
  assert(#submitted == 3 + 4, "3 base seeds + 4 perturbed runs, got " .. #submitted)
  assert(n["ddo/n1/base"] and n["ddo/n1/base seed6"] and n["ddo/n1/base seed7"], "seed names")
  assert(n["ddo/n1/base"].params.seed == 5 and n["ddo/n1/base seed7"].params.seed == 7, "seeds 5..7")
  for _, k in ipairs { "a x3", "b x0.2" } do assert(n["ddo/n1/" .. k].params.seed == 5, "perturbed runs use the first seed") end
  assert(n["ddo/n1/base seed6"].params.tokens.a == n["ddo/n1/base"].params.tokens.a, "same mixture for every seed")
  assert(type(ab.base.metric) == "table" and #ab.base.metric == 3 and ab.base.metric[3] == 107 + 2, "base metric list")
  assert(#ab.base.repeats == 3 and ab.base.repeats[2].seed == 6, "base repeats")
  assert(type(ab.runs[1].metric) == "number", "perturbed runs: one number")
  assert(table.concat(ab.base.seeds, ",") == "5,6,7" and table.concat(ab.runs[1].seeds, ",") == "5", "seeds per measurement")
end)

test("fit receives each measurement's seeds, so it can pair the contrasts by seed", function()
  submitted = {}
  local ab = sm.ablate { corpus = corpus, budget = 4000, label = "n2", repeats = 2, ["repeat"] = "all", seed = 3 }
  sm.fit(ab)
  local fit = submitted[#submitted]
  assert(fit.plugin == "fit", "the last stage is the fit")
  assert(table.concat(fit.params.base.seeds, ",") == "3,4", "base seeds")
  for i, r in ipairs(fit.params.runs) do
    assert(table.concat(r.seeds, ",") == "3,4", "run " .. i .. " seeds")
    assert(#r.metric == 2, "run " .. i .. " metric list")
  end
  sm.fit { domains = { "a" }, base = { tokens = { a = 1 }, metric = 20 }, runs = {}, noise_pool = "domain" }
  assert(submitted[#submitted].params.noise_pool == "domain", "noise_pool reaches the stage")
end)

test("ablate repeat = all repeats every run; metric = loss reports the mean loss", function()
  submitted = {}
  local ab = sm.ablate { corpus = corpus, budget = 4000, label = "n2", repeats = 2, ["repeat"] = "all", metric = "loss" }
  assert(#submitted == 2 * 5, "5 runs x 2 seeds, got " .. #submitted)
  for _, r in ipairs(ab.runs) do assert(type(r.metric) == "table" and #r.metric == 2, "a list per run") end
  assert(math.abs(ab.base.metric[1] - math.log(103)) < 1e-12, "mean loss of seed 1")
  -- the evaluation error of a's contrasts: x0.2 and x3 move batch 2 by -0.016 and +0.04 (a = 2000 tokens at base),
  -- so each contrast's per-batch differences are (0, d, 0), se = |d| / 3; log mean loss weights 1 / (4.5 + 3.5)
  local se2 = ((0.016 / 3) ^ 2 + (0.04 / 3) ^ 2) / 2 / 8 ^ 2
  assert(math.abs(ab.eval_noise.a - math.sqrt(se2)) < 1e-12, "eval noise of a: " .. tostring(ab.eval_noise.a))
  assert(ab.eval_noise.b == 0, "b's runs do not move a's batches: " .. tostring(ab.eval_noise.b))
end)

test("ablate refuses bad repeats, repeat and metric", function()
  for _, o in ipairs { { repeats = 0 }, { repeats = 1.5 }, { ["repeat"] = "some" }, { metric = "acc" } } do
    o.corpus, o.budget = corpus, 4000
    submitted = {}
    assert(not pcall(sm.ablate, o), "accepted a bad option")
  end
end)

test("train repeats: k ordinary results and the list of metrics, seeds 1..k", function()
  submitted = {}
  local r = sm.train { corpus = corpus, name = "uniform", weights = { a = 0.5, b = 0.5 }, budget = 4000, repeats = 2 }
  local n = by_name()
  assert(n["train/uniform/seed1"] and n["train/uniform/seed2"], "one stage per seed")
  assert(#r.repeats == 2 and r.repeats[2].metric == 102 and r.repeats[1].name == "uniform", "ordinary results")
  assert(r.metric[1] == 101 and r.metric[2] == 102, "metric list")
  local p1, p2 = n["train/uniform/seed1"].params, n["train/uniform/seed2"].params
  for k, v in pairs(p1) do if k ~= "seed" then assert(p2[k] == v, "paired: " .. k) end end
  submitted = {}
  local one = sm.train { corpus = corpus, name = "uniform", weights = { a = 0.5, b = 0.5 }, budget = 4000 }
  assert(one.metric == 101 and submitted[1].name == "train/uniform", "without repeats: one run, as before")
end)

H.finish()
