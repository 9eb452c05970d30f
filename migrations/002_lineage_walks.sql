-- 002: lineage walks. An artifact's producers are the stage runs with an 'out' edge to it (or its
-- produced_by); a stage run's inputs are its 'in' edges. Walks stop at max_depth, which also bounds
-- them should the recorded graph ever contain a cycle.

CREATE VIEW artifact_producers AS
    SELECT artifact_id, stage_run_id FROM stage_io WHERE direction = 'out'
    UNION
    SELECT artifact_id, produced_by FROM artifacts WHERE produced_by IS NOT NULL;

-- Everything upstream of an artifact, itself included at depth 0: each artifact with the stage run that
-- produced it (NULL stage_run_id: came from outside, e.g. a raw corpus file).
CREATE FUNCTION lineage_up(p_artifact_id text, max_depth integer DEFAULT 64)
RETURNS TABLE (depth integer, artifact_id text, kind text, path text, stage_run_id text, run_id text, stage text)
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE walk(depth, artifact_id) AS (
        SELECT 0, p_artifact_id
        UNION
        SELECT w.depth + 1, i.artifact_id
          FROM walk w
          JOIN artifact_producers p ON p.artifact_id = w.artifact_id
          JOIN stage_io i ON i.stage_run_id = p.stage_run_id AND i.direction = 'in'
         WHERE w.depth < max_depth
    ), nearest AS (
        SELECT w.artifact_id, min(w.depth) AS depth FROM walk w GROUP BY w.artifact_id
    )
    SELECT n.depth, n.artifact_id, a.kind, a.path, p.stage_run_id, s.run_id, s.stage
      FROM nearest n
      LEFT JOIN artifacts a ON a.artifact_id = n.artifact_id
      LEFT JOIN artifact_producers p ON p.artifact_id = n.artifact_id
      LEFT JOIN stage_runs s ON s.stage_run_id = p.stage_run_id
     ORDER BY n.depth, n.artifact_id, p.stage_run_id;
$$;

-- Everything downstream of an artifact: each stage run that consumed it or something derived from it
-- (depth 1 = direct consumers), with each artifact that stage run produced (NULL if none).
CREATE FUNCTION lineage_down(p_artifact_id text, max_depth integer DEFAULT 64)
RETURNS TABLE (depth integer, stage_run_id text, run_id text, stage text, artifact_id text, kind text, path text)
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE walk(depth, stage_run_id) AS (
        SELECT 1, i.stage_run_id FROM stage_io i WHERE i.artifact_id = p_artifact_id AND i.direction = 'in'
        UNION
        SELECT w.depth + 1, i.stage_run_id
          FROM walk w
          JOIN artifact_producers p ON p.stage_run_id = w.stage_run_id
          JOIN stage_io i ON i.artifact_id = p.artifact_id AND i.direction = 'in'
         WHERE w.depth < max_depth
    ), nearest AS (
        SELECT w.stage_run_id, min(w.depth) AS depth FROM walk w GROUP BY w.stage_run_id
    )
    SELECT n.depth, n.stage_run_id, s.run_id, s.stage, p.artifact_id, a.kind, a.path
      FROM nearest n
      LEFT JOIN stage_runs s ON s.stage_run_id = n.stage_run_id
      LEFT JOIN artifact_producers p ON p.stage_run_id = n.stage_run_id
      LEFT JOIN artifacts a ON a.artifact_id = p.artifact_id
     ORDER BY n.depth, n.stage_run_id, p.artifact_id;
$$;

-- Upstream of a stage run: lineage_up of each of its inputs (depth 0 = the inputs themselves).
CREATE FUNCTION stage_upstream(p_stage_run_id text, max_depth integer DEFAULT 64)
RETURNS TABLE (depth integer, artifact_id text, kind text, path text, stage_run_id text, run_id text, stage text)
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT ON (u.artifact_id, u.stage_run_id) u.*
      FROM stage_io i CROSS JOIN LATERAL lineage_up(i.artifact_id, max_depth) u
     WHERE i.stage_run_id = p_stage_run_id AND i.direction = 'in'
     ORDER BY u.artifact_id, u.stage_run_id, u.depth;
$$;

-- Upstream of a run: everything its stage runs consumed, and what produced that, across runs.
CREATE FUNCTION run_upstream(p_run_id text, max_depth integer DEFAULT 64)
RETURNS TABLE (depth integer, artifact_id text, kind text, path text, stage_run_id text, run_id text, stage text)
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT ON (u.artifact_id, u.stage_run_id) u.*
      FROM stage_runs s
      JOIN stage_io i ON i.stage_run_id = s.stage_run_id AND i.direction = 'in'
      CROSS JOIN LATERAL lineage_up(i.artifact_id, max_depth) u
     WHERE s.run_id = p_run_id
     ORDER BY u.artifact_id, u.stage_run_id, u.depth;
$$;

-- Downstream of a run: every stage run (in any run) that consumed what this run produced, transitively.
CREATE FUNCTION run_downstream(p_run_id text, max_depth integer DEFAULT 64)
RETURNS TABLE (depth integer, stage_run_id text, run_id text, stage text, artifact_id text, kind text, path text)
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT ON (d.stage_run_id, d.artifact_id) d.*
      FROM stage_runs s
      JOIN artifact_producers p ON p.stage_run_id = s.stage_run_id
      CROSS JOIN LATERAL lineage_down(p.artifact_id, max_depth) d
     WHERE s.run_id = p_run_id
     ORDER BY d.stage_run_id, d.artifact_id, d.depth;
$$;
