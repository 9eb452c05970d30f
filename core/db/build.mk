# core/db: embeds migrations/*.sql into the library, and builds the db command driver used by the
# integration tests until the CLI dispatches to sm_cmd_db/sql/history.
SM_DB_MIGRATIONS := $(sort $(wildcard migrations/[0-9][0-9][0-9]_*.sql))
SM_DB_GEN := $(BUILD)/gen/sm_db_migrations.c

# Always regenerated (cheap); the script rewrites the file only when the set or a file's text changed.
$(SM_DB_GEN): FORCE_SM_DB_GEN core/db/gen_migrations.sh
	@mkdir -p $(dir $@)
	@sh core/db/gen_migrations.sh $@ $(SM_DB_MIGRATIONS)
.PHONY: FORCE_SM_DB_GEN
FORCE_SM_DB_GEN:

$(BUILD)/obj/gen/sm_db_migrations.o: $(SM_DB_GEN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(BUILD)/obj/gen/sm_db_migrations.o

$(BUILD)/tests/sm_db_cli: $(BUILD)/obj/core/db/tool/sm_db_cli_main.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< -Wl,--whole-archive $(LIB) -Wl,--no-whole-archive $(LDLIBS)

TEST_EXTRA += $(BUILD)/tests/sm_db_cli
