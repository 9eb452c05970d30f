-- Lua-level tests of the scalemix library (run by tests/run.sh through `scalemix run`).
local sm = require "scalemix"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local H = require "harness"
local test = H.test
local function eq(a, b, what)
  if a ~= b then error(string.format("%s: got %s, want %s", what or "value", tostring(a), tostring(b)), 2) end
end

test("json encodes numbers exactly", function()
  eq(sm.json_encode(1e15), "1000000000000000")
  eq(sm.json_encode(-3), "-3")
  local third = sm.json_decode(sm.json_encode(1 / 3))
  eq(third, 1 / 3, "1/3 round trip")
  eq(sm.json_decode(sm.json_encode(6e-4)), 6e-4)
  eq(sm.json_encode(2 ^ 60), "1.152921504606847e+18")
end)

test("json arrays, objects, strings", function()
  eq(sm.json_encode({ 1, 2, { a = true } }), '[1,2,{"a":true}]')
  eq(sm.json_encode({ b = 1, a = "x\n\"" }), '{"a":"x\\n\\"","b":1}')
  eq(sm.json_encode({}), "{}")
  local ok, err = pcall(sm.json_encode, { f = print })
  eq(ok, false, "a function is refused")
  assert(tostring(err):find("cannot be a stage parameter"), err)
  ok, err = pcall(sm.json_encode, { x = 0 / 0 })
  eq(ok, false, "NaN is refused")
end)

test("stage results, outputs and zero-copy arrays", function()
  local s = sm.stage("sm_test_echo", { value = 2.5, text = "abc" }, nil, { name = "lua-echo" })
  eq(s.result.double, 5)
  eq(s.outputs.text.kind, "text")
  eq(#s.outputs.text.digest, 64)
  local v = s:f64("triple")
  eq(v.n, 3)
  eq(v[1], 2.5); eq(v[3], 7.5); eq(v[4], nil)
  eq(s:f64("absent"), nil)
  local t = v:totable()
  eq(#t, 3)
  local s2 = sm.stage("sm_test_echo", { value = 1 }, { x = s.outputs.text })
  eq(s2.result.input_bytes, 3, "the output reached the next stage")
end)

test("spawned tasks run concurrently and return values", function()
  local t0 = os.time()
  local a = sm.spawn(function(x) return sm.stage("sm_test_echo", { value = x, sleep_ms = 300 }).result.double, "extra" end, 10)
  local b = sm.spawn(function(x) return sm.stage("sm_test_echo", { value = x, sleep_ms = 300 }).result.double end, 20)
  local ra, extra = a:wait()
  eq(ra, 20); eq(extra, "extra"); eq(b:wait(), 40)
  local rs = sm.all { function() return 1 end, function() return 2 end, sm.async("sm_test_echo", { value = 3 }) }
  eq(rs[1], 1); eq(rs[2], 2); eq(rs[3]:wait().result.double, 6)
end)

test("a failing stage raises an error naming this file", function()
  local ok, err = pcall(sm.stage, "sm_test_echo", { value = 1, fail = true })
  eq(ok, false)
  assert(tostring(err):find("test_library.lua:%d+: stage sm_test_echo@test_library.lua:%d+ failed: asked to fail"), err)
  local t = sm.spawn(function() error("boom") end)
  ok, err = pcall(t.wait, t)
  eq(ok, false)
  assert(tostring(err):find("boom"), err)
end)

test("folder inputs are content digests", function()
  local base = os.tmpname()
  os.remove(base)
  os.execute("mkdir -p " .. base .. "/a " .. base .. "/b && echo same > " .. base .. "/a/f && echo same > " .. base .. "/b/f")
  local a, b = sm.dir(base .. "/a"), sm.dir(base .. "/b")
  eq(a.digest, b.digest, "same content, same digest")
  eq(a.kind, "dir")
  local ok, err = pcall(sm.dir, base .. "/missing")
  eq(ok, false)
  assert(tostring(err):find("test_library.lua"), err)
  os.execute("rm -rf " .. base)
end)

test("pending placeholders absorb use", function()
  local p = sm.PENDING
  assert(sm.is_pending(p.x.y + 1))
  eq(tostring(p * 2), "<pending>")
  eq(p .. "x", "<pending>")
end)

H.finish()
