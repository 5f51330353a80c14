--
-- Summary from per-day totals: jobs.summary() reads jobs.job_daily for the
-- closed history days that jobs.refresh_summaries() has rolled up, and the
-- rows of everything else.  Whatever is rolled up, it must equal the plain
-- formula over jobs.job (old_summary below), for monitors and under RLS, and
-- stay equal when rows are deleted (admin, retention), inserted into a
-- counted day, or partitions are truncated or dropped.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_jobs;
RESET client_min_messages;
\set VERBOSITY terse
CREATE OR REPLACE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

CREATE ROLE sum_alice NOLOGIN;
CREATE ROLE sum_bob NOLOGIN;
CREATE ROLE sum_watch NOLOGIN IN ROLE jobs_monitor;
SELECT name FROM jobs.register_task_type('sum_a');
SELECT name FROM jobs.register_task_type('sum_b');

-- The definition of the summary: every visible job created in the window,
-- in flight or finished, read row by row (RLS of the caller applies).
CREATE FUNCTION old_summary(days integer) RETURNS SETOF jobs.task_summary
LANGUAGE sql STABLE AS $$
    WITH s AS (SELECT now() - make_interval(days => least(greatest(days, 1), 365)) AS since),
    w AS (
        SELECT j.task_type, j.status, j.date_created, j.date_started, j.date_done
        FROM jobs.job j, s
        WHERE j.status IN ('pending', 'started') AND j.date_created >= s.since
        UNION ALL
        SELECT j.task_type, j.status, j.date_created, j.date_started, j.date_done
        FROM jobs.job j, s
        WHERE j.status IN ('success', 'failure', 'revoked')
          AND j.date_done >= s.since AND j.date_created >= s.since
    )
    SELECT w.task_type, count(*), count(*) FILTER (WHERE w.status IN ('pending', 'started')),
           count(*) FILTER (WHERE w.status = 'success'), count(*) FILTER (WHERE w.status = 'failure'),
           count(*) FILTER (WHERE w.status = 'revoked'),
           avg(date_part('epoch', w.date_done - w.date_started)),
           avg(date_part('epoch', w.date_started - w.date_created)),
           max(w.date_started), max(w.date_done) FILTER (WHERE w.status = 'success'),
           max(w.date_done) FILTER (WHERE w.status = 'failure')
    FROM w GROUP BY w.task_type
$$;
-- The definition over every job (what monitors get): as the superuser.
CREATE FUNCTION old_summary_global(days integer) RETURNS SETOF jobs.task_summary
LANGUAGE sql STABLE SECURITY DEFINER AS $$ SELECT * FROM old_summary(days) $$;
-- Averages are float sums added in a different order (per day, then over
-- days): equal to a relative 1e-12, not bit for bit.  (Rounding both to a
-- fixed number of decimals is not a tolerance: two values 1e-14 apart still
-- round apart when they straddle a rounding boundary.)
CREATE FUNCTION near(a double precision, b double precision) RETURNS boolean
LANGUAGE sql IMMUTABLE
RETURN CASE WHEN a IS NULL OR b IS NULL THEN a IS NULL AND b IS NULL
            ELSE abs(a - b) <= 1e-12 * greatest(1, abs(a), abs(b)) END;
-- The task types whose row in jobs.summary(days) differs from the definition
-- (or is missing on either side).
CREATE FUNCTION summary_diff(days integer, global boolean) RETURNS bigint
LANGUAGE sql STABLE AS $$
    WITH n AS (SELECT * FROM jobs.summary(days)),
         o AS (SELECT * FROM old_summary(days) WHERE NOT global
               UNION ALL
               SELECT * FROM old_summary_global(days) WHERE global)
    SELECT count(*)
    FROM n FULL JOIN o ON o.task_type = n.task_type
    WHERE n.task_type IS NULL OR o.task_type IS NULL
       OR (n.total_count, n.pending_count, n.success_count, n.failure_count, n.revoked_count,
           n.last_run, n.last_success, n.last_failure)
          IS DISTINCT FROM
          (o.total_count, o.pending_count, o.success_count, o.failure_count, o.revoked_count,
           o.last_run, o.last_success, o.last_failure)
       OR NOT near(n.avg_duration_seconds, o.avg_duration_seconds)
       OR NOT near(n.avg_wait_time_seconds, o.avg_wait_time_seconds)
$$;
-- The differences for several windows, as the caller.
CREATE FUNCTION check_all(global boolean) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT string_agg(d || ':' || summary_diff(d, global), ' ' ORDER BY d)
    FROM unnest(ARRAY[1, 2, 3, 5, 10, 20, 29, 30, 31, 365]) d
$$;
-- Is the summary and the definition the same for everyone?  The superuser
-- (global), a monitor (global), and two users who see only their jobs.
CREATE FUNCTION check_everyone() RETURNS TABLE (who text, differences text)
LANGUAGE plpgsql AS $$
BEGIN
    who := 'superuser'; differences := check_all(true); RETURN NEXT;
    SET LOCAL ROLE sum_watch;
    who := 'monitor'; differences := check_all(true); RETURN NEXT;
    SET LOCAL ROLE sum_alice;
    who := 'alice'; differences := check_all(false); RETURN NEXT;
    SET LOCAL ROLE sum_bob;
    who := 'bob'; differences := check_all(false); RETURN NEXT;
    RESET ROLE;
END $$;
GRANT EXECUTE ON FUNCTION old_summary(integer), old_summary_global(integer),
    summary_diff(integer, boolean), check_all(boolean) TO PUBLIC;

-- hist_day(n): the history partition of the day n days ago (created if missing)
CREATE FUNCTION hist_day(n integer) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    d date := now()::date - n;
    part text := 'job_done_' || to_char(d, 'YYYYMMDD');
BEGIN
    IF to_regclass('jobs.' || part) IS NULL THEN
        EXECUTE format('CREATE TABLE jobs.%I PARTITION OF jobs.job_done FOR VALUES FROM (%L) TO (%L)',
                       part, d::timestamptz, (d + 1)::timestamptz);
    END IF;
    RETURN part;
END $$;
-- hist_job(...): a finished job with the given times, inserted with the
-- lifecycle triggers off (they would stamp "now")
CREATE FUNCTION hist_job(tid text, type text, own name, st jobs.status,
                         created timestamptz, started timestamptz, done timestamptz)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    SET LOCAL session_replication_role = replica;
    INSERT INTO jobs.job (id, task_id, task_type, queue, status, trigger_source, owner, input,
                          priority, run_at, attempts, max_attempts, date_created,
                          date_started, date_done)
    VALUES (nextval('jobs.job_id_seq'), tid, type, 'default', st, 'manual', own, '{}', 2,
            created, 1, 1, created, started, done);
    RETURN true;
END $$;
-- Which of our history days are rolled up (counted in jobs.job_daily)?
CREATE FUNCTION rolled_up() RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg((now()::date - d.day::date)::text,
                               ' ' ORDER BY d.day DESC), '-')
    FROM jobs._summary_days() d
    WHERE d.day >= now()::date - 60 AND d.day < now()::date - 1
      AND EXISTS (SELECT 1 FROM jobs.job j WHERE j.task_type IN ('sum_a', 'sum_b')
                  AND j.date_done >= d.day AND j.date_done < d.day_end)
$$;

-- History for the days 3 to 36 ago: three owners, every finished status,
-- jobs done on a later day than they were created (up to 3 days later),
-- jobs that never started (no duration, no wait), and jobs on both sides of
-- the window boundaries (the day "now - 30 days" falls in is counted only
-- from that instant on).
SELECT count(hist_day(n)) AS days FROM generate_series(3, 36) n;
SELECT count(hist_job('sum-' || n || '-' || k,
                      CASE WHEN k % 3 = 0 THEN 'sum_b' ELSE 'sum_a' END,
                      (ARRAY['sum_alice', 'sum_bob', NULL])[1 + k % 3]::name,
                      (ARRAY['success', 'success', 'failure', 'revoked'])[1 + (n + k) % 4]::jobs.status,
                      c, CASE WHEN (n + k) % 7 <> 3 THEN c + k * interval '17 seconds' END,
                      c + k * interval '17 seconds' + (k % 5) * interval '1 second'
                        + (k % 4) * interval '1 day'))
FROM generate_series(3, 36) n, generate_series(1, 12) k,
     LATERAL (SELECT now()::date - n - (k % 4) + interval '3 hours' + k * interval '97 minutes'
                     + 0 * n * interval '1 s' AS c) x;
-- around the 30-day boundary: created just inside and just outside the window
SELECT hist_job('sum-edge-in', 'sum_a', 'sum_alice', 'success',
                now() - interval '30 days' + interval '1 minute',
                now() - interval '30 days' + interval '2 minutes', now()::date - 27 + interval '1 hour'),
       hist_job('sum-edge-out', 'sum_a', 'sum_alice', 'success',
                now() - interval '30 days' - interval '1 minute',
                now() - interval '30 days', now()::date - 27 + interval '2 hours'),
       hist_job('sum-edge-done-before', 'sum_b', NULL, 'failure',
                now() - interval '31 days', now() - interval '31 days', now() - interval '30 days' - interval '1 minute');
-- today: in flight and finished through the API
SET ROLE sum_alice;
SELECT count(jobs.enqueue('sum_a', task_id => 'sum-pending-' || g)) FROM generate_series(1, 3) g;
SELECT status FROM jobs.start('sum-pending-1');
SELECT status FROM jobs.start('sum-pending-2');
SELECT status FROM jobs.succeed('sum-pending-2');
RESET ROLE;
SET ROLE sum_bob;
SELECT status FROM jobs.start((jobs.enqueue('sum_b', task_id => 'sum-today-b')).task_id);
SELECT status FROM jobs.fail('sum-today-b', 'no');
RESET ROLE;

-- Nothing rolled up (the launcher may have counted the empty days already):
-- the summary reads rows.
SELECT * FROM check_everyone();

-- Roll up the closed days (the launcher does it every maintenance interval,
-- a few days per round; a call waits for a round in progress).
SELECT r->'horizon' IS NOT NULL AS closed, r->'busy' AS busy
FROM jobs.refresh_summaries(366) r;
SELECT rolled_up();
-- again: nothing new to do
SELECT jsonb_array_length(r->'days_rolled_up') AS rolled_up_now FROM jobs.refresh_summaries(366) r;
-- the totals: one row per day, created day, type, owner and status
SELECT count(*) > 0 AS some, count(DISTINCT created_day) > count(DISTINCT day) AS created_days_differ
FROM jobs.job_daily WHERE task_type IN ('sum_a', 'sum_b');
SELECT * FROM check_everyone();
-- not trivially equal: everything of ours is in the 365-day window
SELECT task_type, total_count, pending_count, success_count, failure_count, revoked_count
FROM jobs.summary(365) WHERE task_type LIKE 'sum\_%' ORDER BY 1;
-- and they were used: the 30-day window reads the rolled-up days from totals
SELECT count(*) > 0 AS used FROM jobs.job_daily r
WHERE r.task_type = 'sum_a' AND r.created_day >= now() - interval '30 days'
  AND r.day IN (SELECT day FROM jobs._summary_days());

-- RLS on the totals: users see the totals of the jobs they can see
SET ROLE sum_alice;
SELECT DISTINCT owner FROM jobs.job_daily WHERE task_type IN ('sum_a', 'sum_b') ORDER BY 1;
SELECT try($$SELECT jobs.refresh_summaries()$$);
SELECT try($$SELECT jobs._summary_forget(1)$$);
SELECT try($$DELETE FROM jobs.job_daily$$);
RESET ROLE;
-- (a monitor reading the table itself is limited like on jobs.job; its
-- global summary goes through the definer jobs._summary_global)
SET ROLE sum_watch;
SELECT count(DISTINCT owner) AS owners FROM jobs.job_daily WHERE task_type IN ('sum_a', 'sum_b');
RESET ROLE;

-- Only rolled-up (closed) days carry the trigger: finishing a job today does
-- no extra work.
SELECT count(*) AS triggers_today FROM pg_trigger t
WHERE t.tgname = 'job_daily_stale'
  AND t.tgrelid = ('jobs.job_done_' || to_char(now(), 'YYYYMMDD'))::regclass;
SELECT count(*) AS open_days_rolled_up FROM jobs.job_daily_done d
WHERE d.day_end > now() - interval '10 minutes';

-- An admin deletes finished jobs of a counted day: the day is forgotten in
-- the same transaction, the summary stays right, a refresh counts it again.
BEGIN;
DELETE FROM jobs.job WHERE task_id IN ('sum-10-1', 'sum-10-2', 'sum-10-3');
SELECT rolled_up() !~ '(^| )10( |$)' AS day10_forgotten;
SELECT * FROM check_everyone();
COMMIT;
SELECT * FROM check_everyone();
SELECT r->'busy' AS busy FROM jobs.refresh_summaries(366) r;
SELECT rolled_up();
SELECT * FROM check_everyone();

-- A row inserted into a counted day (a backfill, triggers off): forgotten too.
BEGIN;
SELECT hist_job('sum-late', 'sum_b', 'sum_bob', 'success',
                now()::date - 12 + interval '1 hour', now()::date - 12 + interval '2 hours',
                now()::date - 12 + interval '3 hours');
SELECT rolled_up() !~ '(^| )12( |$)' AS day12_forgotten;
SELECT * FROM check_everyone();
COMMIT;
SELECT * FROM check_everyone();
SELECT r->'busy' AS busy FROM jobs.refresh_summaries(366) r;
SELECT rolled_up();
SELECT * FROM check_everyone();

-- A truncated day: its totals no longer count (checked on every summary),
-- and the next refresh forgets them and counts the empty day.
SELECT hist_day(14) AS part \gset
BEGIN;
TRUNCATE jobs.:part;
SELECT rolled_up() !~ '(^| )14( |$)' AS day14_not_counted;
SELECT * FROM check_everyone();
COMMIT;
SELECT r->'busy' AS busy FROM jobs.refresh_summaries(366) r;
SELECT count(*) AS stale_records FROM jobs.job_daily_done d
WHERE NOT EXISTS (SELECT 1 FROM jobs._summary_days() v WHERE v.day = d.day);
SELECT * FROM check_everyone();

-- Retention: deleted rows of a counted day (successes past 8 days,
-- failures kept 33 days) and dropped days (past both: older than 33 days).
SET pg_jobs.retention = '8d';
SET pg_jobs.retention_failed = '33d';
SELECT r->'rows_deleted' > '0' AS rows_deleted, jsonb_array_length(r->'partitions_dropped') > 0 AS dropped
FROM jobs.apply_retention() r;
RESET pg_jobs.retention;
RESET pg_jobs.retention_failed;
SELECT count(*) AS totals_of_dropped_days FROM jobs.job_daily_done d
WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = d.relid);
SELECT * FROM check_everyone();
SELECT r->'busy' AS busy FROM jobs.refresh_summaries(366) r;
SELECT * FROM check_everyone();
