/* sm_commands.h - the CLI subcommands. Each takes the arguments after the command name
 * (argv[0] is the command name) and returns the process exit code: 0 success, 1 the work failed,
 * 2 a usage error. Each prints its own usage on --help. */
#ifndef SM_COMMANDS_H
#define SM_COMMANDS_H

int sm_cmd_run(int argc, char **argv);      /* core/sm_cli_run.c: run and plan */
int sm_cmd_plan(int argc, char **argv);
int sm_cmd_encode(int argc, char **argv);   /* core/tok: text -> ids */
int sm_cmd_decode(int argc, char **argv);   /* core/tok: ids -> text */
int sm_cmd_eval(int argc, char **argv);     /* core/model: checkpoint loss on a shard */
int sm_cmd_sql(int argc, char **argv);      /* core/db: psql with the read-only role */
int sm_cmd_history(int argc, char **argv);  /* core/db: recent runs as a table */
int sm_cmd_db(int argc, char **argv);       /* core/db: status|start|stop|migrate|dsn */
int sm_cmd_schedule(int argc, char **argv); /* core/sched: add|list|pause|resume|remove|next|backfill */
int sm_cmd_daemon(int argc, char **argv);   /* core/sched: the scheduling daemon */
int sm_cmd_verify(int argc, char **argv);   /* core/sm_cli_verify.c: check the store's objects */
int sm_cmd_serve(int argc, char **argv);    /* core/web: the status pages */
int sm_cmd_stage_exec(int argc, char **argv); /* core/engine/sm_stage_exec.c: one stage in a process of its own (internal) */

#endif
