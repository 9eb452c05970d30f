# core/sched: scalemix-sched, a driver with only the schedule and daemon commands, used by the scheduler's
# integration tests (tests/integration/test_sched*.sh, test_daemon*.sh) whatever the state of main.c.
$(BUILD)/sched/scalemix-sched: $(BUILD)/obj/core/sched/tools/sm_sched_main.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -rdynamic -o $@ $< -Wl,--whole-archive $(LIB) -Wl,--no-whole-archive $(LDLIBS)

TEST_EXTRA += $(BUILD)/sched/scalemix-sched
