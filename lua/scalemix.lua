-- scalemix: the Lua library pipeline scripts `require "scalemix"`.
--
-- A script reads as straight-line code: sm.stage(...) returns when the stage is done. Underneath, the
-- script runs in a coroutine; a stage call submits the stage to the engine (C, through the FFI) and
-- yields; the scheduler below turns the engine's libuv loop (sm_api_wait) until some stage completes and
-- resumes whoever waits for it. C never calls into Lua.
local ffi = require "ffi"
local cjson = require "cjson"

ffi.cdef [[
int sm_api_submit(const char *plugin, const char *stage_name, const char *params_json, const char *inputs_json,
                  const char *executor);
int sm_api_wait(void);
int sm_api_status(int handle);
const char *sm_api_reason(int handle);
const char *sm_api_stage_error(int handle);
const char *sm_api_stage_run_id(int handle);
const char *sm_api_result(int handle);
const char *sm_api_outputs(int handle);
const double *sm_api_result_f64(int handle, const char *name, size_t *n);
const char *sm_api_input(const char *path, int is_dir);
const char *sm_api_error(void);
int sm_api_error_is_usage(void);
int sm_api_check(const char *plugin, const char *params_json);
int sm_api_planning(void);
int sm_api_cancelled(void);
void sm_api_set_parallel(int n);
void sm_api_log(int level, const char *msg);
const char *sm_api_run_id(void);
const char *sm_api_workspace(void);
const char *sm_api_dsn(void);
int sm_api_gpu_devices(void);
int sm_api_schedule_declare(const char *spec_json);
]]
local C = ffi.C

local M = {}
M.params = rawget(_G, "params") or {}
M.LOG_ERROR, M.LOG_WARN, M.LOG_INFO, M.LOG_DEBUG = 0, 1, 2, 3

local STATUS = { [0] = "queued", "running", "succeeded", "reused", "failed", "cancelled", "planned" }

---------------------------------------------------------------------------------------------------
-- Errors that name the script's file and line

local function is_library(src)
  return src:find("/lua/scalemix", 1, true) or src:find("^@?scalemix") or src == "=[C]"
end

-- The first stack frame outside this library: where the user's script called us.
local function caller_position()
  for level = 2, 40 do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    if info.what ~= "C" and not is_library(info.source) then
      return info.short_src, info.currentline
    end
  end
  return "?", 0
end

local function user_error(msg)
  local src, line = caller_position()
  error(string.format("%s:%d: %s", src, line, msg), 0)
end
M.error = user_error

-- Usage errors: a stage the engine refused at submission (a parameter of the wrong type, unknown, or out of
-- range). The messages raised are remembered, so that a run ending on one exits 2 like a bad command-line
-- option (M._usage_error, read by the host), whereas a stage that fails at work exits 1.
local usage_errors = {}
local function raise_usage(positioned_msg)
  usage_errors[positioned_msg] = true
  error(positioned_msg, 0)
end
local function usage_error(msg)
  local src, line = caller_position()
  raise_usage(string.format("%s:%d: %s", src, line, msg))
end

---------------------------------------------------------------------------------------------------
-- Plan mode: results of stages that would run are "pending" stand-ins that absorb any use.

local pending_mt = {}
local PENDING = setmetatable({}, pending_mt)
pending_mt.__index = function() return PENDING end
pending_mt.__call = function() return PENDING end
pending_mt.__tostring = function() return "<pending>" end
pending_mt.__concat = function() return "<pending>" end
pending_mt.__len = function() return 0 end
for _, op in ipairs { "__add", "__sub", "__mul", "__div", "__mod", "__pow", "__unm" } do
  pending_mt[op] = function() return PENDING end
end
pending_mt.__lt = function() return false end
pending_mt.__le = function() return false end
M.PENDING = PENDING

function M.is_pending(v) return v == PENDING end

---------------------------------------------------------------------------------------------------
-- JSON. Decoding is lua-cjson's; encoding is ours because cjson keeps only 14 significant digits and
-- cache keys and token counts need every bit.

local function strip_null(v)
  if v == cjson.null then return nil end
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = strip_null(x) end
  end
  return v
end

function M.json_decode(s) return strip_null(cjson.decode(s)) end

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function is_array(t)
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k % 1 ~= 0 then return false end
    n = n + 1
  end
  for i = 1, n do if t[i] == nil then return false end end
  return n > 0
end

local encode_value
encode_value = function(v, out, path, seen)
  local t = type(v)
  if v == nil or v == cjson.null then
    out[#out + 1] = "null"
  elseif v == PENDING then
    out[#out + 1] = '"<pending>"'
  elseif t == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      user_error(string.format("%s is %s, which JSON cannot carry", path, tostring(v)))
    end
    if v % 1 == 0 and math.abs(v) < 2 ^ 53 then
      out[#out + 1] = string.format("%d", v)
    else
      out[#out + 1] = string.format("%.17g", v)
    end
  elseif t == "string" then
    out[#out + 1] = encode_string(v)
  elseif t == "table" then
    if seen[v] then user_error(path .. " contains itself") end
    seen[v] = true
    local mt = getmetatable(v)
    if mt and mt.__tojson then
      encode_value(mt.__tojson(v), out, path, seen)
    elseif is_array(v) then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        encode_value(v[i], out, path .. "[" .. i .. "]", seen)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do
        if type(k) ~= "string" and type(k) ~= "number" then
          user_error(string.format("%s has a %s key; use strings", path, type(k)))
        end
        keys[#keys + 1] = tostring(k)
      end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = encode_string(k)
        out[#out + 1] = ":"
        local x = v[k]
        if x == nil then x = v[tonumber(k)] end
        encode_value(x, out, path .. "." .. k, seen)
      end
      out[#out + 1] = "}"
    end
    seen[v] = nil
  else
    user_error(string.format("%s is a %s, which cannot be a stage parameter", path, t))
  end
end

function M.json_encode(v, what)
  local out = {}
  encode_value(v, out, what or "value", {})
  return table.concat(out)
end

local function contains_pending(v, depth)
  if v == PENDING then return true end
  if type(v) ~= "table" or (depth or 0) > 50 then return false end
  for k, x in pairs(v) do
    if contains_pending(x, (depth or 0) + 1) then return true end
  end
  return false
end

---------------------------------------------------------------------------------------------------
-- The scheduler: coroutines waiting for stage handles or for other tasks.

local ready = {}       -- coroutines to resume, in order
local waiting = {}     -- handle -> { coroutine, ... }
local done = {}        -- handle -> true once the engine reported it
local tasks = {}       -- coroutine -> task
local live_tasks = 0
local all_tasks = {}   -- every task, to find errors nobody awaited
local submitted = {}   -- every stage submitted, to find failures nobody awaited

local function wake(co) ready[#ready + 1] = co end

local function current_task()
  local co = coroutine.running()
  return co and tasks[co]
end

-- Suspends the calling task until `handle` is done.
local function await_handle(h)
  if done[h] then return end
  local co = coroutine.running()
  if not co or not tasks[co] then user_error("stages can only be awaited inside a pipeline script") end
  local list = waiting[h] or {}
  list[#list + 1] = co
  waiting[h] = list
  coroutine.yield()
end

local Task = {}
Task.__index = Task

local function new_task(fn, ...)
  local args, nargs = { ... }, select("#", ...)
  local task = setmetatable({ done = false, waiters = {} }, Task)
  task.co = coroutine.create(function()
    return fn(unpack(args, 1, nargs))
  end)
  tasks[task.co] = task
  all_tasks[#all_tasks + 1] = task
  live_tasks = live_tasks + 1
  wake(task.co)
  return task
end

function Task:wait()
  if not self.done then
    local co = coroutine.running()
    if not co or not tasks[co] then user_error("tasks can only be awaited inside a pipeline script") end
    self.waiters[#self.waiters + 1] = co
    coroutine.yield()
  end
  self.awaited = true
  if self.failed then error(self.err, 0) end
  return unpack(self.results, 1, self.nresults)
end

-- The message of a task's error: a string as raised (it names file:line); any other value (error(nil),
-- error(false), a table) as what it is and where the task raised it, so that no error is ever silent.
local function error_message(err, co)
  if type(err) == "string" then return err end
  local what = string.format("error(%s)", type(err) == "table" and "a table" or tostring(err))
  for level = 0, 40 do
    local info = debug.getinfo(co, level, "Sl")
    if not info then break end
    if info.what ~= "C" and not is_library(info.source) then
      return string.format("%s:%d: %s raised", info.short_src, info.currentline, what)
    end
  end
  return what .. " raised"
end

local function step(co)
  local task = tasks[co]
  local res = { coroutine.resume(co) }
  if coroutine.status(co) ~= "dead" then return end
  task.done = true
  live_tasks = live_tasks - 1
  if res[1] then
    task.results, task.nresults = { unpack(res, 2) }, #res - 1
  else
    task.failed, task.err = true, error_message(res[2], co)
  end
  for _, w in ipairs(task.waiters) do wake(w) end
  tasks[co] = nil
end

-- Runs the script's main chunk; returns when it and every task it started have finished.
function M._main(chunk)
  local main = new_task(chunk)
  main.awaited = true
  local unawaited_errors = {}
  while true do
    while #ready > 0 do
      local batch = ready
      ready = {}
      for _, co in ipairs(batch) do step(co) end
    end
    if live_tasks == 0 then break end
    local h = C.sm_api_wait()
    if h == 0 then
      error("pipeline deadlock: tasks wait for something that will never finish", 0)
    end
    done[h] = true
    local list = waiting[h]
    waiting[h] = nil
    if list then for _, co in ipairs(list) do wake(co) end end
  end
  if main.failed then
    M._usage_error = usage_errors[main.err] == true
    error(main.err, 0)
  end
  -- Stages nobody waited for belong to the run too: let them finish, then fail the run on any error that
  -- nobody saw (a spawned task that raised, a stage that failed) rather than report success.
  while C.sm_api_wait() ~= 0 do end
  local unseen, all_usage = {}, true
  for _, t in ipairs(all_tasks) do
    if t.failed and not t.awaited then
      unseen[#unseen + 1] = t.err .. " (in a task nobody waited for)"
      all_usage = all_usage and usage_errors[t.err] == true
    end
  end
  for _, st in ipairs(submitted) do
    local status = not st.status and STATUS[C.sm_api_status(st.handle)]
    if status == "failed" or status == "cancelled" then
      all_usage = false
      unseen[#unseen + 1] = string.format("%s:%d: stage %s %s%s (nobody waited for it)", st.src, st.line, st.name, status,
        status == "failed" and ": " .. ffi.string(C.sm_api_stage_error(st.handle)) or "")
    end
  end
  if #unseen > 0 then
    M._usage_error = all_usage
    error(table.concat(unseen, "\n"), 0)
  end
end

---------------------------------------------------------------------------------------------------
-- Stages

local Stage = {}
Stage.__index = Stage

local call_sites = {}

local function default_name(plugin)
  local src, line = caller_position()
  local site = string.format("%s@%s:%d", plugin, src:match("[^/]*$"), line)
  local n = (call_sites[site] or 0) + 1
  call_sites[site] = n
  return n == 1 and site or (site .. "#" .. n)
end

local function planning() return C.sm_api_planning() ~= 0 end
M.planning = planning

-- Submits a stage and returns a future (a Stage); :wait() returns the stage's result.
-- opts: name (stable name for `plan` explanations; default: plugin@file:line); executor ("local", "slurm";
-- default: sm.config's, else the command line's --executor).
local default_executor = nil
function M.submit(plugin, params, inputs, opts)
  opts = opts or {}
  if type(plugin) ~= "string" then user_error("sm.stage: the first argument is the stage's plugin name") end
  if opts.executor ~= nil and type(opts.executor) ~= "string" then user_error("sm.stage: the executor option is a name (\"local\", \"slurm\")") end
  local name = opts.name or default_name(plugin)
  local function encode(v, what) -- a value JSON cannot carry is a usage error too
    local ok, j = pcall(M.json_encode, v or {}, what .. name)
    if not ok then raise_usage(j) end
    return j
  end
  local function refused()
    local msg = ffi.string(C.sm_api_error())
    if C.sm_api_error_is_usage() ~= 0 then usage_error(msg) else user_error(msg) end
  end
  if planning() and (contains_pending(params) or contains_pending(inputs)) then
    -- the parameters are checked now when they are known, so that plan reports what run would refuse
    if not contains_pending(params) and C.sm_api_check(plugin, encode(params, "parameters of ")) ~= 0 then refused() end
    io.stdout:write(string.format("run    %-36s an input or parameter comes from a stage that will run\n", name))
    return setmetatable({ name = name, planned = true, plugin = plugin }, Stage)
  end
  local pj = encode(params, "parameters of ")
  local ij = encode(inputs, "inputs of ")
  if opts.executor ~= nil and type(opts.executor) ~= "string" then user_error("sm.stage: opts.executor must be a string") end
  local h = C.sm_api_submit(plugin, name, pj, ij, opts.executor or default_executor)
  if h < 0 then refused() end
  local src, line = caller_position()
  local st = setmetatable({ handle = h, name = name, plugin = plugin, src = src, line = line }, Stage)
  submitted[#submitted + 1] = st
  return st
end
M.async = M.submit

local Artifact = {}
Artifact.__index = Artifact
Artifact.__tostring = function(a) return string.format("artifact %s %s (%s)", a.kind or "?", a.name or "", (a.digest or ""):sub(1, 12)) end
Artifact.__tojson = function(a) return { digest = a.digest, path = a.path, kind = a.kind, name = a.name, bytes = a.bytes } end

local function artifacts(t)
  for k, v in pairs(t) do t[k] = setmetatable(v, Artifact) end
  return t
end

-- Zero-copy view of a double array of a stage result: v[i] (1-based), v.n (its length), v.ptr (const double*).
-- (LuaJIT does not honour __len on tables, so use v.n rather than #v.)
local F64 = {}
F64.__index = function(v, i)
  if type(i) == "number" then
    if i < 1 or i > v.n then return nil end
    return v.ptr[i - 1]
  end
  return rawget(F64, i)
end
F64.__len = function(v) return v.n end
function F64.totable(v)
  local t = {}
  for i = 1, v.n do t[i] = v.ptr[i - 1] end
  return t
end

function Stage:wait()
  if self.planned then
    self.status, self.result, self.outputs = "planned", PENDING, PENDING
    return self
  end
  if self.status then return self end
  await_handle(self.handle)
  local h = self.handle
  self.status = STATUS[C.sm_api_status(h)] or "unknown"
  if self.status == "cancelled" then
    user_error(string.format("stage %s cancelled", self.name))
  elseif self.status == "failed" then
    user_error(string.format("stage %s failed: %s", self.name, ffi.string(C.sm_api_stage_error(h))))
  end
  self.stage_run_id = ffi.string(C.sm_api_stage_run_id(h))
  self.reason = ffi.string(C.sm_api_reason(h))
  self.reused = self.status == "reused"
  if self.status == "planned" then
    self.planned, self.result, self.outputs = true, PENDING, PENDING
  else
    self.result = M.json_decode(ffi.string(C.sm_api_result(h)))
    self.outputs = artifacts(M.json_decode(ffi.string(C.sm_api_outputs(h))))
  end
  return self
end

function Stage:f64(name)
  self:wait()
  if self.planned then return PENDING end
  local n = ffi.new("size_t[1]")
  local ptr = C.sm_api_result_f64(self.handle, name, n)
  if ptr == nil then return nil end
  return setmetatable({ ptr = ptr, n = tonumber(n[0]) }, F64)
end

-- Runs a stage and returns it when done: s.result (table), s.outputs (name -> artifact), s:f64(name).
function M.stage(plugin, params, inputs, opts)
  return M.submit(plugin, params, inputs, opts):wait()
end

-- Starts fn(...) as a concurrent task; returns a future whose :wait() gives fn's results.
function M.spawn(fn, ...)
  if type(fn) ~= "function" then user_error("sm.spawn wants a function") end
  return new_task(fn, ...)
end

-- Waits for every element (futures, or functions run as tasks) and returns their results in order.
function M.all(list)
  local futures = {}
  for i, x in ipairs(list) do
    futures[i] = type(x) == "function" and new_task(x) or x
  end
  local results = {}
  local first_err
  for i, f in ipairs(futures) do
    local ok, r = pcall(f.wait, f)
    if ok then results[i] = r elseif not first_err then first_err = r end
  end
  if first_err then error(first_err, 0) end
  return results
end

-- A folder (or file) outside the workspace as a stage input, identified by the digest of its contents.
local function input(path, is_dir)
  if type(path) ~= "string" then user_error("expected a path string") end
  local ref = C.sm_api_input(path, is_dir and 1 or 0)
  if ref == nil then user_error(ffi.string(C.sm_api_error())) end
  return setmetatable(M.json_decode(ffi.string(ref)), Artifact)
end
function M.dir(path) return input(path, true) end
function M.file(path) return input(path, false) end

function M.config(t)
  if t.parallel then C.sm_api_set_parallel(t.parallel) end
  if t.executor ~= nil then
    if type(t.executor) ~= "string" then user_error("sm.config: executor is a name (\"local\", \"slurm\")") end
    default_executor = t.executor
  end
end

function M.log(fmt, ...)
  C.sm_api_log(M.LOG_INFO, select("#", ...) > 0 and string.format(fmt, ...) or tostring(fmt))
end
function M.warn(fmt, ...)
  C.sm_api_log(M.LOG_WARN, select("#", ...) > 0 and string.format(fmt, ...) or tostring(fmt))
end

function M.run_id() return ffi.string(C.sm_api_run_id()) end
function M.workspace() return ffi.string(C.sm_api_workspace()) end
function M.dsn()
  local d = C.sm_api_dsn()
  return d ~= nil and ffi.string(d) or nil
end
function M.cancelled() return C.sm_api_cancelled() ~= 0 end
function M.gpus() return C.sm_api_gpu_devices() end

-- Declares (creates or updates by name) a recurring run in the lineage database; see `scalemix help schedule`.
-- spec: { name, cron, tz, pipeline, params, overlap, catchup, catchup_window, when_changed, paused }.
function M.schedule(spec)
  if planning() then return end
  if type(spec) ~= "table" or not spec.name or not spec.cron or not spec.pipeline then
    user_error("sm.schedule needs a table with name, cron and pipeline")
  end
  if C.sm_api_schedule_declare(M.json_encode(spec, "schedule")) ~= 0 then user_error(ffi.string(C.sm_api_error())) end
end

-- Printed to stdout so that a pipeline's final report can be piped; nothing in plan mode.
function M.print(...)
  if not planning() then print(...) end
end

-- The AutoScale stages and helpers (sm.tokenize, sm.ablate, sm.fit, ...).
local ok, autoscale = pcall(require, "scalemix.autoscale")
if ok then
  autoscale.install(M)
elseif not tostring(autoscale):find("module 'scalemix.autoscale' not found", 1, true) then
  error(autoscale, 0)
end

return M
