/* sm_db_internal.h - shared between the files of core/db only. */
#ifndef SM_DB_INTERNAL_H
#define SM_DB_INTERNAL_H

#include <libpq-fe.h>
#include "db/sm_db.h"

typedef struct sm_db_migration {
    int version;
    const char *name;
    const char *sql;
} sm_db_migration;

/* Generated at build time from migrations/NNN_name.sql (core/db/gen_migrations.sh), sorted by version. */
extern const sm_db_migration sm_db_migrations[];
extern const int sm_db_migration_count;

#define SM_DB_NAME "scalemix"
#define SM_DB_WRITER "scalemix"
#define SM_DB_READER "scalemix_ro"
#define SM_DB_ADMIN "scalemix_admin"

/* Appends key='value' (libpq conninfo quoting) to buf. */
void sm_db_conninfo_add(char *buf, size_t n, const char *key, const char *value);
/* Blocking connect with a timeout and application_name; NULL and err set on failure. The message never
 * contains the password. */
PGconn *sm_db_connect(const char *dsn, const char *app, int timeout_s, sm_error *err);

/* The embedded server's credentials (sm_db_auth.c). The passfile of role under workspace. */
void sm_db_auth_passfile(const char *workspace, const char *role, char *out, size_t n);
/* Creates <workspace>/pg/auth (0700), its key and one passfile per role (0600) if missing or different. */
int sm_db_auth_prepare(const char *workspace, sm_error *err);
/* pg_hba.conf: setup 1 lets the admin role in without a password (while the passwords are set), 0 is the
 * final one (every role with its password). */
const char *sm_db_auth_hba(int setup);
/* Sets each role's password (as a SCRAM verifier computed client-side) through an admin connection. */
int sm_db_auth_set_passwords(PGconn *admin, const char *workspace, sm_error *err);

#endif
