/* sm_wire.h - host call messages as JSON lines: the codec of the pipe and file transports. Every message
 * is one JSON object with "t" naming it, on one line ending in '\n':
 *   {"t":"log","level":L,"msg":S}              {"t":"progress","done":D,"total":T,"unit":U}
 *   {"t":"output","name","digest","path","kind","bytes","meta"}   {"t":"metric","name","step","domain","value"}
 *   {"t":"result","json":{...}}  {"t":"f64","name","values":[...]}  {"t":"fit","domain","a","b","c","rmse"}
 *   {"t":"mixture","method","budget","domains":[...],"weights":[...],"tokens":[...]}
 *   {"t":"done","rc":RC,"msg":S}   (the stage's final status: last)
 * sm_host.c builds them, sm_host_calls.c (SM_HOST_CALLS) handles them on the engine's side. */
#ifndef SM_WIRE_H
#define SM_WIRE_H

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include "sm_common.h"

/* Writes msg as one line to fd (a pipe, or a file opened O_APPEND), whole, under mu (may be NULL). */
int sm_wire_write(int fd, pthread_mutex_t *mu, const json_t *msg);
/* Decodes every complete line of buf[0..len) and calls fn(ctx, msg) (borrowed) for each JSON object;
 * returns the bytes consumed (through the last '\n'); a partial last line is left for later. */
size_t sm_wire_lines(const char *buf, size_t len, void (*fn)(void *ctx, const json_t *msg), void *ctx);
/* Reads the file at path from *offset, handles every complete line as sm_wire_lines does and moves *offset
 * past them: reading again from the same offset gives the same messages, each line is handled once per
 * offset. SM_ERR_NOTFOUND when the file does not exist (yet). */
int sm_wire_tail(const char *path, uint64_t *offset, void (*fn)(void *ctx, const json_t *msg), void *ctx,
                 sm_error *err);

#endif
