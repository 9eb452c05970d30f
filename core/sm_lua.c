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
#include <errno.h>

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

/* The bytes of the file at path (NUL-terminated, *n without it), or NULL with err filled. */
static char *read_whole(const char *path, size_t *n, sm_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        sm_error_set(err, SM_ERR_IO, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0, got;
    do {
        if (len + 4096 + 1 > cap) {
            char *nb = realloc(buf, cap = 2 * cap + 8192);
            if (!nb) {
                free(buf);
                fclose(f);
                sm_error_set(err, SM_ERR_NOMEM, "out of memory reading %s", path);
                return NULL;
            }
            buf = nb;
        }
        got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
    } while (got > 0);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        sm_error_set(err, SM_ERR_IO, "cannot read %s", path);
        return NULL;
    }
    buf[len] = 0;
    *n = len;
    return buf;
}

/* Loads Lua source from the bytes given as chunk "@path", skipping a first line starting with '#' as
 * luaL_loadfile does (its newline is kept, so line numbers stay right). */
static int load_bytes(lua_State *L, const char *buf, size_t n, const char *path) {
    size_t skip = 0;
    if (n && buf[0] == '#')
        while (skip < n && buf[skip] != '\n') skip++;
    char chunk[PATH_MAX + 2];
    snprintf(chunk, sizeof chunk, "@%s", path);
    return luaL_loadbuffer(L, buf + skip, n - skip, chunk);
}

/* package.loaders' Lua-file searcher, replaced: finds the module on package.path as Lua's does, hashes the
 * very bytes it loads, and notes the module in the run's lineage (the script's digest does not cover it). */
static int module_loader(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchpath");
    lua_pushstring(L, name);
    lua_getfield(L, -3, "path");
    lua_call(L, 2, 2);
    if (lua_isnil(L, -2)) return 1; /* searchpath's "no file ..." list, as Lua's own searcher returns it */
    const char *path = lua_tostring(L, -2);
    sm_error err = {0};
    size_t n;
    char *buf = read_whole(path, &n, &err);
    if (!buf) return luaL_error(L, "error loading module '%s': %s", name, err.msg);
    char sha[65];
    sm_sha256_hex(buf, n, sha);
    int rc = load_bytes(L, buf, n, path);
    free(buf);
    if (rc != 0) return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", name, path, lua_tostring(L, -1));
    char abs[PATH_MAX];
    sm_engine_note_module(current, name, realpath(path, abs) ? abs : path, sha);
    return 1;
}

int sm_lua_run(sm_engine *e, const char *path, const char *sha256, json_t *params, int *exit_code_out, sm_error *err) {
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
    lua_getfield(L, -1, "loaders");
    lua_pushcfunction(L, module_loader);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 2);

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
    /* The bytes hashed are the bytes run: a script changed after its digest was taken is refused. */
    size_t n;
    char *src = read_whole(path, &n, err);
    if (!src) {
        rc = err ? err->code : SM_ERR_IO;
        goto out;
    }
    char got[65];
    sm_sha256_hex(src, n, got);
    if (sha256 && strcmp(got, sha256)) {
        free(src);
        rc = sm_error_set(err, SM_ERR_PLUGIN, "refused: script %s changed while the run started (its sha256 is now %s, "
                          "was %s); nothing of it ran", path, got, sha256);
        goto out;
    }
    int loaded = load_bytes(L, src, n, path);
    free(src);
    if (loaded != 0) {
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
    int lib = lua_gettop(L);
    lua_getfield(L, lib, "_main");
    lua_pushvalue(L, script);
    if (lua_pcall(L, 1, 0, tb) != 0) {
        const char *msg = lua_tostring(L, -1);
        lua_getfield(L, lib, "_usage_error"); /* the library's verdict: the run ended on a refused stage call */
        int usage = lua_toboolean(L, -1);
        rc = sm_error_set(err, sm_engine_cancelled(e) ? SM_ERR_CANCELLED : usage ? SM_ERR_ARG : SM_ERR_PLUGIN, "%s",
                          msg ? msg : "(no message)");
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
