-- The Lua tests' harness (tests/run.sh runs tests/lua/test_*.lua; this file is not one):
-- test(name, fn) runs fn, printing PASS or FAIL with the error; finish() fails the script when any failed.
local H = { failures = 0 }
function H.test(name, fn)
  local ok, err = pcall(fn)
  if ok then print("PASS: " .. name) else print("FAIL: " .. name .. ": " .. tostring(err)); H.failures = H.failures + 1 end
end
function H.finish()
  if H.failures > 0 then error(H.failures .. " Lua test(s) failed", 0) end
end
return H
