/* sm_lua.h - the embedded LuaJIT that runs pipeline scripts. */
#ifndef SM_LUA_H
#define SM_LUA_H

#include <jansson.h>
#include "sm_engine.h"

/* Runs the script at path with the global table `params` (from params, an object of strings/numbers/
 * booleans) against engine e: the script's main function runs as a coroutine under the library's
 * scheduler (lua/scalemix.lua), which waits on stages through sm_api_wait. On failure err holds the
 * message naming the script's file and line; returns SM_OK, SM_ERR_CANCELLED or SM_ERR_PLUGIN (the
 * pipeline failed). */
typedef void (*sm_lua_exit_fn)(sm_engine *e, int code);
/* The script runs with LuaJIT's compiler off and a count hook that turns the engine's loop, so that
 * Ctrl-C/SIGTERM reach a script computing in pure Lua (compiled loops run no hooks): once the run is
 * cancelled every hook raises "cancelled", and the result is SM_ERR_CANCELLED even if the script caught it.
 * os.exit(code) calls on_exit(e, code) (unless NULL), which records the run's end and does not return. */
int sm_lua_run(sm_engine *e, const char *path, json_t *params, sm_lua_exit_fn on_exit, sm_error *err);
/* The engine of the run in progress (for sm_api.c). */
sm_engine *sm_lua_engine(void);
/* The folder holding the Lua library (lua/): $SCALEMIX_LUA_PATH or <build>/../lua. */
const char *sm_lua_library_dir(void);

#endif
