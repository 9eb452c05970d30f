-- 015: indexes for the runs page of `scalemix serve` (core/web): newest first, paged by keyset on
-- (start, run_id), with or without a status or pipeline filter, stays an index scan at any depth.
CREATE INDEX runs_page_idx ON runs ((coalesce(started_at, '-infinity'::timestamptz)), run_id);
CREATE INDEX runs_status_page_idx ON runs (status, (coalesce(started_at, '-infinity'::timestamptz)), run_id);
CREATE INDEX runs_pipeline_page_idx ON runs (pipeline, (coalesce(started_at, '-infinity'::timestamptz)), run_id);
