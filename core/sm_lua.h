/* sm_lua.h - the embedded LuaJIT that runs pipeline scripts. */
#ifndef SM_LUA_H
#define SM_LUA_H

#include <jansson.h>
#include "sm_engine.h"

/* Runs the script at path with the global table `params` (from params, an object of strings/numbers/
 * booleans) against engine e: the script's main function runs as a coroutine under the library's
 * scheduler (lua/scalemix.lua), which waits on stages through sm_api_wait. The script's bytes are read
 * once; with sha256 (else NULL) they must hash to it, or nothing runs (SM_ERR_PLUGIN "refused: ..."). Every
 * module `require` loads from a file is hashed as loaded and noted with sm_engine_note_module. On failure
 * err holds the message naming the script's file and line; returns SM_OK, SM_ERR_CANCELLED, SM_ERR_ARG (the
 * run ended on a stage call refused as a usage error: a parameter of the wrong type, unknown or out of
 * range) or SM_ERR_PLUGIN (the pipeline failed). */
/* The script runs with LuaJIT's compiler off and a count hook that turns the engine's loop, so that
 * Ctrl-C/SIGTERM reach a script computing in pure Lua (compiled loops run no hooks): once the run is
 * cancelled every hook raises "cancelled", and the result is SM_ERR_CANCELLED even if the script caught it.
 * With exit_code (else NULL: os.exit is Lua's), os.exit(code) ends the script as an error that every later hook
 * raises again (so a pcall cannot keep it going), running stages are cancelled, and *exit_code is set (0 for
 * no argument or true, 1 for false); then SM_OK for 0, else SM_ERR_PLUGIN "the script called os.exit(N)".
 * *exit_code stays -1 when the script did not call it. */
int sm_lua_run(sm_engine *e, const char *path, const char *sha256, json_t *params, int *exit_code, sm_error *err);
/* The engine of the run in progress (for sm_api.c). */
sm_engine *sm_lua_engine(void);
/* The folder holding the Lua library (lua/): $SCALEMIX_LUA_PATH or <build>/../lua. */
const char *sm_lua_library_dir(void);

#endif
