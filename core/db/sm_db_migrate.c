/* sm_db_migrate.c - applies the embedded migrations (migrations/NNN_name.sql) in order, each in its
 * own transaction, under a session advisory lock so that engines starting together migrate once. */
#include "db/sm_db_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* pg_advisory_lock key: "smdb" in ASCII. */
#define MIGRATE_LOCK_KEY "1936548962"

int sm_db_schema_version_supported(void) {
    return sm_db_migration_count ? sm_db_migrations[sm_db_migration_count - 1].version : 0;
}

static int q_ok(PGconn *c, PGresult *r, const char *what, sm_error *err) {
    ExecStatusType s = PQresultStatus(r);
    if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) return SM_OK;
    const char *m = PQresultErrorMessage(r);
    if (!m || !*m) m = PQerrorMessage(c);
    size_t ml = strlen(m);
    while (ml && m[ml - 1] == '\n') ml--;
    return sm_error_set(err, SM_ERR_DB, "%s: %.*s", what, (int)ml, m);
}

static int exec_simple(PGconn *c, const char *sql, const char *what, sm_error *err) {
    PGresult *r = PQexec(c, sql);
    int rc = q_ok(c, r, what, err);
    PQclear(r);
    return rc;
}

static void sha_hex(const char *s, char hex[65]) { sm_sha256_hex(s, strlen(s), hex); }

static int migrate_locked(PGconn *c, int *applied, sm_error *err) {
    int rc = exec_simple(c,
                         "CREATE TABLE IF NOT EXISTS schema_migrations ("
                         " version integer PRIMARY KEY, name text NOT NULL, sha256 text NOT NULL,"
                         " applied_at timestamptz NOT NULL DEFAULT now())",
                         "creating schema_migrations", err);
    if (rc) return rc;
    PGresult *r = PQexec(c, "SELECT version, name, sha256 FROM schema_migrations ORDER BY version");
    if ((rc = q_ok(c, r, "reading schema_migrations", err))) { PQclear(r); return rc; }
    int n = PQntuples(r), db_max = 0, supported = sm_db_schema_version_supported();
    char *have = calloc((size_t)supported + 1, 1);
    if (!have) { PQclear(r); return sm_error_set(err, SM_ERR_NOMEM, "out of memory"); }
    for (int i = 0; i < n; i++) {
        int v = atoi(PQgetvalue(r, i, 0));
        if (v > db_max) db_max = v;
        if (v >= 0 && v <= supported) have[v] = 1;
        for (int j = 0; j < sm_db_migration_count; j++) {
            char hex[65];
            if (sm_db_migrations[j].version != v) continue;
            sha_hex(sm_db_migrations[j].sql, hex);
            if (strcmp(hex, PQgetvalue(r, i, 2)))
                sm_log(SM_LOG_WARN, "db: migration %s was applied with different text than this binary carries; "
                       "the schema may differ from what this version expects", sm_db_migrations[j].name);
        }
    }
    if (db_max > supported) {
        char newest[256] = "?";
        for (int i = 0; i < n; i++)
            if (atoi(PQgetvalue(r, i, 0)) == db_max) snprintf(newest, sizeof newest, "%s", PQgetvalue(r, i, 1));
        PQclear(r);
        free(have);
        return sm_error_set(err, SM_ERR_DB, "the lineage database is at schema version %d (%s) but this scalemix "
                            "knows versions up to %d: it was migrated by a newer scalemix. Upgrade scalemix, or "
                            "use another database (--db DSN, or a fresh SCALEMIX_HOME)", db_max, newest, supported);
    }
    PQclear(r);
    int count = 0;
    for (int j = 0; j < sm_db_migration_count && !rc; j++) {
        const sm_db_migration *m = &sm_db_migrations[j];
        if (have[m->version]) continue;
        char what[300], hex[65], ver[16];
        snprintf(what, sizeof what, "migration %s", m->name);
        sha_hex(m->sql, hex);
        snprintf(ver, sizeof ver, "%d", m->version);
        rc = exec_simple(c, "BEGIN", what, err);
        if (!rc) rc = exec_simple(c, m->sql, what, err);
        if (!rc) {
            const char *vals[] = {ver, m->name, hex};
            r = PQexecParams(c, "INSERT INTO schema_migrations (version, name, sha256) VALUES ($1, $2, $3)",
                             3, NULL, vals, NULL, NULL, 0);
            rc = q_ok(c, r, what, err);
            PQclear(r);
        }
        if (!rc) rc = exec_simple(c, "COMMIT", what, err);
        if (rc) {
            PQclear(PQexec(c, "ROLLBACK"));
            sm_error_wrap(err, "the database was left at the previous version; fix and retry");
        } else {
            count++;
            sm_log(SM_LOG_INFO, "db: applied migration %s", m->name);
        }
    }
    free(have);
    if (!rc && count) {
        /* The read-only role reads everything; it may not exist on a server given by DSN. */
        r = PQexec(c, "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'scalemix_ro') THEN "
                      "GRANT USAGE ON SCHEMA public TO scalemix_ro; "
                      "GRANT SELECT ON ALL TABLES IN SCHEMA public TO scalemix_ro; END IF; END $$");
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            sm_log(SM_LOG_WARN, "db: could not grant the read-only role scalemix_ro: %s", PQresultErrorMessage(r));
        PQclear(r);
    }
    if (applied) *applied = count;
    return rc;
}

int sm_db_migrate(const char *dsn, int *applied, sm_error *err) {
    if (applied) *applied = 0;
    PGconn *c = sm_db_connect(dsn, "scalemix-migrate", 10, err);
    if (!c) return SM_ERR_DB;
    int rc = exec_simple(c, "SET client_min_messages = warning", "session setup", err);
    if (!rc) rc = exec_simple(c, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", "taking the migration lock", err);
    if (!rc) {
        rc = migrate_locked(c, applied, err);
        PQclear(PQexec(c, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")"));
    }
    if (rc) sm_error_wrap(err, "migrating the lineage database");
    PQfinish(c);
    return rc;
}

int sm_db_schema_version(const char *dsn, int *version, sm_error *err) {
    *version = 0;
    PGconn *c = sm_db_connect(dsn, "scalemix", 10, err);
    if (!c) return SM_ERR_DB;
    PGresult *r = PQexec(c, "SELECT coalesce(max(version), 0) FROM schema_migrations");
    int rc = SM_OK;
    if (PQresultStatus(r) == PGRES_TUPLES_OK) *version = atoi(PQgetvalue(r, 0, 0));
    else if (strcmp(PQresultErrorField(r, PG_DIAG_SQLSTATE) ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : "", "42P01"))
        rc = q_ok(c, r, "reading schema_migrations", err);
    PQclear(r);
    PQfinish(c);
    return rc;
}
