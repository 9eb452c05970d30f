-- 004: lineage_events stays append-only against TRUNCATE too (row triggers do not see it).
CREATE TRIGGER lineage_events_no_truncate BEFORE TRUNCATE ON lineage_events
    FOR EACH STATEMENT EXECUTE FUNCTION sm_forbid_change();
