/* sm_lua.c - the LuaJIT host. C never calls into Lua while a stage runs: the Lua scheduler calls
 * sm_api_wait, which turns the libuv loop until a stage completes, and resumes its coroutines itself. */
#include "sm_lua.h"

#include "sm_display.h"

#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static sm_engine *current;
static int exit_code = -1; /* set by os.exit */

/* Lua instructions between two looks at the engine's loop (signals) while the script computes. */
#define SM_LUA_CHECK_EVERY 100000

sm_engine *sm_lua_engine(void) { return current; }

const char *sm_lua_library_dir(void) {
    static char dir[PATH_MAX];
    const char *env = getenv("SCALEMIX_LUA_PATH");
    if (env && *env) snprintf(dir, sizeof dir, "%s", env);
    else {
        char p[PATH_MAX + 16];
        snprintf(p, sizeof p, "%s/../lua", sm_build_dir());
        if (!realpath(p, dir) && snprintf(dir, sizeof dir, "%s", p) >= (int)sizeof dir) dir[0] = 0;
    }
    return dir;
}

static void push_json(lua_State *L, json_t *v) {
    switch (json_typeof(v)) {
    case JSON_STRING: lua_pushstring(L, json_string_value(v)); break;
    case JSON_INTEGER: lua_pushnumber(L, (lua_Number)json_integer_value(v)); break;
    case JSON_REAL: lua_pushnumber(L, json_real_value(v)); break;
    case JSON_TRUE: lua_pushboolean(L, 1); break;
    case JSON_FALSE: lua_pushboolean(L, 0); break;
    default: lua_pushnil(L); break;
    }
}

/* Errors already name the script's file and line; the Lua traceback is added only with --verbose. */
static int traceback(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (sm_display_verbosity() >= 2) luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
    else lua_pushstring(L, msg ? msg : "(error object is not a string)");
    return 1;
}

/* The count hook: lets the loop deliver signals, and once the run is cancelled raises in the script. */
static void cancel_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    sm_engine_poll(current);
    if (exit_code >= 0) {
        lua_pushfstring(L, "os.exit(%d)", exit_code);
        lua_error(L);
    }
    if (!sm_engine_cancelled(current)) return;
    luaL_where(L, 1);
    lua_pushstring(L, "stopped by Ctrl-C or SIGTERM while the script was computing");
    lua_concat(L, 2);
    lua_error(L);
}

/* os.exit([code]) in a script: stops the script (see sm_lua.h); the caller records the run's end. */
static int script_exit(lua_State *L) {
    exit_code = lua_isnoneornil(L, 1) ? 0 : lua_isboolean(L, 1) ? !lua_toboolean(L, 1) : (int)luaL_checkinteger(L, 1);
    if (exit_code < 0) exit_code = 1;
    sm_engine_cancel(current); /* a stage the script waits on stops, so that the wait returns */
    lua_pushfstring(L, "os.exit(%d)", exit_code);
    return lua_error(L);
}

int sm_lua_run(sm_engine *e, const char *path, json_t *params, int *exit_code_out, sm_error *err) {
    lua_State *L = luaL_newstate();
    if (!L) return sm_error_set(err, SM_ERR_NOMEM, "cannot create a Lua state");
    luaL_openlibs(L);
    current = e;
    exit_code = -1;
    if (exit_code_out) *exit_code_out = -1;
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    lua_sethook(L, cancel_hook, LUA_MASKCOUNT, SM_LUA_CHECK_EVERY);
    if (exit_code_out) {
        lua_getglobal(L, "os");
        lua_pushcfunction(L, script_exit);
        lua_setfield(L, -2, "exit");
        lua_pop(L, 1);
    }
    /* package.path: the library first, then the script's folder. */
    char dir[4 * PATH_MAX], script_dir[PATH_MAX];
    snprintf(script_dir, sizeof script_dir, "%s", path);
    char *slash = strrchr(script_dir, '/');
    if (slash) *slash = 0;
    else snprintf(script_dir, sizeof script_dir, ".");
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    if (snprintf(dir, sizeof dir, "%s/?.lua;%s/?/init.lua;%s/?.lua;%s", sm_lua_library_dir(), sm_lua_library_dir(), script_dir,
                 lua_tostring(L, -1)) >= (int)sizeof dir)
        dir[sizeof dir - 1] = 0;
    lua_pop(L, 1);
    lua_pushstring(L, dir);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);

    lua_newtable(L);
    const char *k;
    json_t *v;
    if (params) json_object_foreach(params, k, v) {
            push_json(L, v);
            lua_setfield(L, -2, k);
        }
    lua_setglobal(L, "params");

    int rc = SM_OK;
    lua_pushcfunction(L, traceback);
    int tb = lua_gettop(L);
    char chunk[PATH_MAX + 2];
    snprintf(chunk, sizeof chunk, "@%s", path);
    FILE *f = fopen(path, "r");
    if (!f) {
        rc = sm_error_set(err, SM_ERR_ARG, "cannot open script %s", path);
        goto out;
    }
    fclose(f);
    if (luaL_loadfile(L, path) != 0) {
        rc = sm_error_set(err, SM_ERR_PLUGIN, "%s", lua_tostring(L, -1));
        goto out;
    }
    int script = lua_gettop(L);
    lua_getglobal(L, "require");
    lua_pushstring(L, "scalemix");
    if (lua_pcall(L, 1, 1, tb) != 0) {
        rc = sm_error_set(err, SM_ERR_PLUGIN, "loading the scalemix Lua library from %s: %s", sm_lua_library_dir(),
                          lua_tostring(L, -1));
        goto out;
    }
    lua_getfield(L, -1, "_main");
    lua_pushvalue(L, script);
    if (lua_pcall(L, 1, 0, tb) != 0) {
        const char *msg = lua_tostring(L, -1);
        rc = sm_error_set(err, sm_engine_cancelled(e) ? SM_ERR_CANCELLED : SM_ERR_PLUGIN, "%s", msg ? msg : "(no message)");
    } else if (sm_engine_cancelled(e)) {
        rc = sm_error_set(err, SM_ERR_CANCELLED, "the script finished after the run was cancelled (it caught the cancellation)");
    }
    if (exit_code >= 0 && exit_code_out) {
        *exit_code_out = exit_code;
        rc = exit_code == 0 ? SM_OK : sm_error_set(err, SM_ERR_PLUGIN, "the script called os.exit(%d)", exit_code);
    }
out:
    lua_close(L);
    current = NULL;
    return rc;
}
