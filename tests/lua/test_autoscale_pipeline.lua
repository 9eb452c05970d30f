-- pipelines/autoscale.lua passes every option it reads to the stage that uses it. The stages are replaced
-- by recorders; each option the script reads (found in its source, so a new one is covered too) is set
-- alone to a value no default has, and that value (or what the script derives from it) must reach a
-- recorded stage call. A dropped option (as `factors = P.factors and {0.2, 3} or nil` once was) fails.
local sm = require "scalemix"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local path = here .. "/../../pipelines/autoscale.lua"
package.path = here .. "/../../pipelines/?.lua;" .. package.path
package.path = here .. "/?.lua;" .. package.path
local H = require "harness"
local test = H.test

local src = assert(io.open(path)):read("*a")
local options, seen = {}, {}
for pat in ipairs { 1, 2, 3 } do
  local p = ({ 'param%("([%w_]+)"%)', "P%.([%w_]+)", 'P%["([%w_]+)"%]' })[pat]
  for name in src:gmatch(p) do
    if not seen[name] then seen[name] = true options[#options + 1] = name end
  end
end
table.sort(options)
-- Not a stage option: the report's folder, written after the stages (the e2e test checks its files).
local not_stage = { out = true }

-- The recorders.
local calls
local function rec(kind, ret)
  return function(o)
    calls[#calls + 1] = { kind = kind, opts = o }
    return ret(o or {})
  end
end
local weights = { a = 0.25, b = 0.75 }
sm.tokenize = rec("tokenize", function()
  return { domains = { "a", "b" }, shards = {}, result = { domains = { a = { train_tokens = 100 }, b = { train_tokens = 300 } } } }
end)
sm.ablate = rec("ablate", function(o) return { domains = { "a", "b" }, budget = o.budget, label = o.label, base = {}, runs = {} } end)
sm.fit = rec("fit", function(o) return { budget = o.budget, weights = weights, tokens = { a = 1, b = 3 }, params = {} } end)
sm.extrapolate = rec("extrapolate", function(o) return { budget = o.budget or 4242, weights = weights, tokens = { a = 1, b = 3 } } end)
sm.train = rec("train", function() return { metric = { 1 } } end)
sm.compare = rec("compare", function() return {} end)
sm.weights_l1 = function() return { value = 0, lo = 0, hi = 0 } end
sm.config = rec("config", function() end)
sm.planning = function() return true end

local function contains(t, want, depth)
  if depth > 6 then return false end
  if t == want then return true end
  if type(t) == "number" and type(want) == "number" and math.abs(t - want) <= 1e-9 * math.abs(want) then return true end
  if type(t) ~= "table" then return false end
  for k, v in pairs(t) do
    if contains(v, want, depth + 1) or (type(want) == "string" and k == want) then return true end
  end
  return false
end

local function run(params)
  calls = {}
  sm.params = params
  assert(loadfile(path))()
  return calls
end

-- What to set each option to, and what must then reach a stage (default: the value itself). Every value
-- differs from every default.
local n1_default = 20e3
local special = {
  preset = { "gpu", 12 },                        -- the gpu preset's model depth
  factors = { "0.125,4.5", 4.5 },
  mixture = { "a=0.375,b=0.625", 0.375 },
  ratio = { 7, 7 * n1_default },                 -- n2 = ratio x n1
  validate = { true, "mid" },                    -- a third DDO, labelled by where it runs
  validate_at = { "target", "target", { validate = true } },
  target = { 123456, 123456 },
  ["repeat"] = { "all" },
  metric = { "loss" },
  device = { "cpu" },
  interpolant = { "smaller_b" },
  on_noise = { "fit" },
}
test("the option list is read from the script", function()
  assert(#options >= 25, "found only " .. #options .. " options: " .. table.concat(options, ","))
end)
for i, name in ipairs(options) do
  if not not_stage[name] then test("option " .. name .. " reaches a stage", function()
    local s = special[name] or {}
    local value = s[1] ~= nil and s[1] or name == "corpus" and "opt_corpus" or (9000 + i)
    local want = s[2] ~= nil and s[2] or value
    local params = { [name] = value }
    for k, v in pairs(s[3] or {}) do params[k] = v end
    local c = run(params)
    local hit = false
    for _, call in ipairs(c) do hit = hit or contains(call.opts, want, 0) end
    assert(hit, string.format("--param %s=%s: %s never reached a stage", name, tostring(value), tostring(want)))
  end) end
end

test("factors are honoured (not replaced by the default)", function()
  for _, call in ipairs(run { factors = "0.1,0.5,3" }) do
    if call.kind == "ablate" then
      assert(#call.opts.factors == 3 and call.opts.factors[2] == 0.5, "factors " .. table.concat(call.opts.factors, ","))
    end
  end
end)

test("bad option values are refused", function()
  for _, p in ipairs { { preset = "tpu" }, { factors = "0.2,x" }, { validate = true, validate_at = "somewhere" } } do
    local ok, e = pcall(run, p)
    assert(not ok, "accepted " .. next(p))
  end
end)

H.finish()
