-- pipelines/noise_study.lua's figures on a synthetic DDO matrix with known parts (sm.ablate replaced by a
-- table): 2 domains, 2 seeds; log metric = log 100 + seed effect {0, 0.1} (shared by every mixture of a
-- seed: common random numbers) + the domain's effect + run noise +-0.01 (sign flipped between x0.2 and x3);
-- domain a's first validation batch is 0.02 nats worse in every perturbed run than in the base run (and b's
-- batches equal), so every contrast has the same evaluation error.
local sm = require "scalemix"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/../../pipelines/?.lua;" .. package.path
package.path = here .. "/?.lua;" .. package.path
local H = require "harness"
local test = H.test

local seed_effect = { 0, 0.1 }
local effect = { a = { [0.2] = 0.1, [3] = -0.1 }, b = { [0.2] = 0.02, [3] = -0.03 } }
local function result(logm, worse_a)
  return { metric = math.exp(logm), mean_loss = logm / 2, seconds = 1, val_ppl = { a = 50, b = 50 }, val_loss = { a = 4, b = 4 },
           val_batch_loss = { a = { 4 + (worse_a and 0.02 or 0), 4 }, b = { 4, 4 } } }
end
local seen
sm.tokenize = function() return { domains = { "a", "b" }, shards = {} } end
sm.config = function() end
sm.planning = function() return false end
sm.ablate = function(o)
  seen = o
  local base = { repeats = {}, seeds = { 1, 2 }, tokens = { a = 1000, b = 1000 } }
  for i = 1, 2 do base.repeats[i] = { result = result(math.log(100) + seed_effect[i]) } end
  local runs = {}
  for _, d in ipairs { "a", "b" } do
    for _, f in ipairs { 0.2, 3 } do
      local r = { domain = d, factor = f, repeats = {}, seeds = { 1, 2 } }
      for i = 1, 2 do
        local noise = (i == 1 and 0.01 or -0.01) * (f == 3 and 1 or -1)
        r.repeats[i] = { result = result(math.log(100) + seed_effect[i] + effect[d][f] + noise, true) }
      end
      runs[#runs + 1] = r
    end
  end
  return { base = base, runs = runs }
end
local fits = {}
sm.fit = function(o)
  fits[#fits + 1] = o
  return { within_noise = 1 }
end

test("the demo configuration's figures, pooled and per domain", function()
  local out = os.tmpname()
  sm.params = { configs = "demo", out = out }
  assert(loadfile(here .. "/../../pipelines/noise_study.lua"))()
  local text = assert(io.open(out)):read("*a")
  os.remove(out)
  local preset = require("autoscale_presets").cpu
  assert(seen["repeat"] == "all" and seen.repeats == 2 and seen.budget == preset.n1 and seen.eval_batches == preset.eval_batches,
         "the demo's DDO run, every run repeated")
  -- base sd 0.1/sqrt 2; contrast sd (CRN) 0.01 sqrt 2 (the seed effect cancels); unpaired: the seed effect
  -- does not cancel, per-seed contrasts e -+ 0.09 (x3) and e -+ 0.11 (x0.2) -> sqrt((0.09^2 + 0.11^2) / 2 x 2);
  -- eval se: a's per-batch differences (0.02, 0) -> se 0.01, weight 1/2 in log mean perplexity -> 0.005 for
  -- every contrast; x3 - x0.2: a -0.2, b -0.05, each +-0.02 over seeds -> pooled se 0.02, t(2 dof) 4.303: a
  -- above, b not; spread 0.15/sqrt 2, snr 0.1061 / 0.02
  local row = "| demo | 2/64/64 | 8 | 0.002 | 2e+04 | 2 | 2 | 10 | 10 | ppl | 0.0707 | 0.0141 | 0.1421 | 0.0050 | 0.1061 | 5.3 | 1/2 | 1/2 |"
  assert(text:find(row, 1, true), "pooled row:\n" .. text)
  -- the fit sees every seed's metric with its seed, per metric: ppl the runs' metric, loss their mean loss
  assert(#fits == 2 and fits[1].boot == 0, "one fit per metric, no bootstrap")
  assert(table.concat(fits[1].base.seeds, ",") == "1,2" and table.concat(fits[1].runs[4].seeds, ",") == "1,2", "seeds")
  assert(math.abs(fits[1].base.metric[2] - 100 * math.exp(0.1)) < 1e-9, "ppl: the runs' metric")
  assert(math.abs(fits[2].runs[1].metric[1] - (math.log(100) + 0.1 - 0.01) / 2) < 1e-12, "loss: the runs' mean loss")
  assert(text:find("| a | ppl | 0.0141 | 0.1421 | 0.0050 | +0.1000 | -0.1000 | -0.2000 | yes |", 1, true), "domain a:\n" .. text)
  assert(text:find("| b | ppl | 0.0141 | 0.1421 | 0.0050 | +0.0200 | -0.0300 | -0.0500 | no |", 1, true), "domain b:\n" .. text)
end)

H.finish()
