--
-- Retention: jobs.apply_retention() drops whole daily history partitions past
-- retention, deletes older rows elsewhere in bounded batches, removes the
-- jobs' log entries with them, honours a separate retention for failures,
-- never touches in-flight jobs, records its run for jobs.health(), and is
-- for admins only.  (test/pg_jobs.conf sets pg_jobs.retention = 0, so the
-- launcher keeps everything while the suites run; this session sets its own.)
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

SELECT name FROM jobs.register_task_type('ret_task');

-- old_day(n): the history partition of the day n days ago (created if missing)
CREATE FUNCTION old_day(n integer) RETURNS text LANGUAGE plpgsql AS $$
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
-- old_job(task, status, done): a finished job backdated to date_done = done,
-- inserted with the lifecycle triggers off (they would stamp "now"), plus
-- two log entries.
CREATE FUNCTION old_job(tid text, st jobs.status, done timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    jid bigint := nextval('jobs.job_id_seq');
BEGIN
    SET LOCAL session_replication_role = replica;
    INSERT INTO jobs.job (id, task_id, task_type, queue, status, trigger_source, owner, input,
                          priority, run_at, attempts, max_attempts, date_created,
                          date_started, date_done, acknowledged)
    VALUES (jid, tid, 'ret_task', 'default', st, 'manual', NULL, '{}', 2, done - interval '1 hour',
            1, 1, done - interval '1 hour', done - interval '1 minute', done,
            st = 'success');
    INSERT INTO jobs.job_log (job_id, message) VALUES (jid, tid || ' one'), (jid, tid || ' two');
END $$;
-- where each of our jobs is, and how many log entries it has
CREATE FUNCTION jobs_left() RETURNS TABLE (task_id text, status jobs.status, part text, logs bigint)
LANGUAGE sql AS $$
    SELECT j.task_id, j.status,
           CASE WHEN j.tableoid::regclass::text ~ 'job_done_[0-9]{8}$' THEN 'day'
                ELSE j.tableoid::regclass::text END,
           (SELECT count(*) FROM jobs.job_log l WHERE l.job_id = j.id)
    FROM jobs.job j WHERE j.task_type = 'ret_task' ORDER BY j.task_id
$$;
-- a run's outcome without times and names
CREATE FUNCTION outcome(r jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('dropped', jsonb_array_length(r->'partitions_dropped'),
                              'rows', r->'rows_deleted', 'logs', r->'logs_deleted',
                              'more', r->'more', 'error', r->'error')
$$;

SELECT old_day(40) IS NOT NULL AS day40, old_day(20) IS NOT NULL AS day20;
SELECT old_job('a-40-success', 'success', now()::date - 40 + interval '1 hour'),
       old_job('b-40-failure', 'failure', now()::date - 40 + interval '2 hours'),
       old_job('c-20-success', 'success', now()::date - 20 + interval '1 hour'),
       old_job('d-20-revoked', 'revoked', now()::date - 20 + interval '2 hours'),
       old_job('e-50-success', 'success', now() - interval '50 days'),   -- no partition: default
       old_job('f-50-failure', 'failure', now() - interval '50 days'),
       old_job('g-5-success', 'success', now() - interval '5 days');
-- in flight for 100 days, and one finished today through the API
SELECT task_id FROM jobs.enqueue('ret_task', task_id => 'h-pending');
SET session_replication_role = replica;   -- the trigger keeps date_created
UPDATE jobs.job SET date_created = now() - interval '100 days' WHERE task_id = 'h-pending';
RESET session_replication_role;
SELECT jobs.log('waiting', task_id => 'h-pending') > 0 AS logged;
SELECT status FROM jobs.start((jobs.enqueue('ret_task', task_id => 'i-today')).task_id);
SELECT status FROM jobs.succeed('i-today');
SELECT jobs.log('done', task_id => 'i-today') > 0 AS logged;
SELECT * FROM jobs_left();

-- 0 keeps everything
SET pg_jobs.retention = 0;
SELECT outcome(jobs.apply_retention());

-- 30 days (failures too): the day 40 days ago is dropped whole, the 50-day-old
-- rows of the default partition are deleted, logs go with their jobs
SET pg_jobs.retention = '30d';
SHOW pg_jobs.retention_failed;
SELECT outcome(jobs.apply_retention());
SELECT * FROM jobs_left();
SELECT count(*) AS day40_left FROM pg_class WHERE relname = 'job_done_' || to_char(now()::date - 40, 'YYYYMMDD');
SELECT count(*) AS orphan_logs FROM jobs.job_log l
WHERE NOT EXISTS (SELECT 1 FROM jobs.job j WHERE j.id = l.job_id);

-- successes 10 days, failures 25: the day 20 days ago is past only the
-- shorter one, so it stays and only its success is deleted
SET pg_jobs.retention = '10d';
SET pg_jobs.retention_failed = '25d';
SELECT outcome(jobs.apply_retention());
SELECT * FROM jobs_left();
-- failures 15 days: now the whole day is past both and is dropped
SET pg_jobs.retention_failed = '15d';
SELECT outcome(jobs.apply_retention());
SELECT * FROM jobs_left();
-- failures forever: nothing is dropped, old successes still go
SET pg_jobs.retention_failed = 0;
SELECT old_job('j-12-success', 'success', now() - interval '12 days'),
       old_job('k-12-failure', 'failure', now() - interval '12 days');
SELECT outcome(jobs.apply_retention());
SELECT * FROM jobs_left();
-- back to the default (-1): failures follow pg_jobs.retention again
RESET pg_jobs.retention_failed;
SELECT outcome(jobs.apply_retention());

-- bounded: at most max_rows per run, "more" while work is left
SELECT old_job('m-' || i, 'success', now() - interval '60 days') FROM generate_series(1, 5) i;
SELECT outcome(jobs.apply_retention(max_rows => 2));
SELECT outcome(jobs.apply_retention(max_rows => 2));
SELECT outcome(jobs.apply_retention(max_rows => 2));
SELECT count(*) AS m_left FROM jobs.job WHERE task_id LIKE 'm-%';

-- the last run is in jobs.health()
SELECT h ? 'last_retention' AS has_key,
       (h->'last_retention'->>'rows_deleted')::int AS rows_deleted,
       (h->'last_retention'->>'at')::timestamptz <= now() AS at_ok,
       h ?& array['workers', 'queues', 'pending', 'started', 'oldest_pending_seconds', 'running'] AS old_keys
FROM jobs.health() h;

-- admins only
SELECT has_function_privilege('public', 'jobs.apply_retention(integer)', 'EXECUTE') AS public_may;
CREATE ROLE ret_user NOLOGIN;
CREATE ROLE ret_admin NOLOGIN IN ROLE jobs_admin;
SET ROLE ret_user;
SELECT try('SELECT jobs.apply_retention()');
SELECT try('SET pg_jobs.retention = 0');
SELECT jsonb_typeof(jobs.health()->'last_retention') AS user_sees_last_run;
SET ROLE ret_admin;
SELECT outcome(jobs.apply_retention());
RESET ROLE;
SELECT * FROM jobs_left();
RESET pg_jobs.retention;

DELETE FROM jobs.job WHERE task_type = 'ret_task';
DROP ROLE ret_user, ret_admin;
DROP FUNCTION old_day(integer), old_job(text, jobs.status, timestamptz), jobs_left(), outcome(jsonb);

-- The day partitions CREATE EXTENSION made are ordinary tables that retention
-- can drop: none stays a member of the extension (a member cannot be dropped
-- on its own, 2BP01, which rolled back every retention run once the install
-- was older than the retention period).  Checked on a fresh install in a
-- database of its own, where no worker runs: with a retention of one second,
-- yesterday's partition is past it.
\set regress_db :DBNAME
CREATE DATABASE pg_jobs_fresh_install;
\c pg_jobs_fresh_install
SET client_min_messages = warning;
CREATE EXTENSION pg_jobs;
RESET client_min_messages;
SELECT count(*) AS day_partitions,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM pg_depend d
                                      WHERE d.classid = 'pg_class'::regclass AND d.objid = i.inhrelid
                                        AND d.deptype = 'e')) AS extension_members
FROM pg_inherits i
WHERE i.inhparent = 'jobs.job_done'::regclass AND i.inhrelid::regclass::text ~ 'job_done_[0-9]{8}$';
SELECT format('jobs.job_done_%s', to_char(now()::date - 1, 'YYYYMMDD')) AS yesterday \gset
SET pg_jobs.retention = 1;
SELECT r->'partitions_dropped' = jsonb_build_array(substr(:'yesterday', 6)) AS dropped_yesterday,
       r->'error' AS error
FROM jobs.apply_retention() r;
SELECT to_regclass(:'yesterday') IS NULL AS yesterday_gone;
-- an install of an earlier build still has member partitions: retention
-- releases one from the extension before dropping it
SELECT format('jobs.job_done_%s', to_char(now()::date, 'YYYYMMDD')) AS today \gset
CREATE TABLE jobs.job_done_20000101 PARTITION OF jobs.job_done
    FOR VALUES FROM ('2000-01-01') TO ('2000-01-02');
ALTER EXTENSION pg_jobs ADD TABLE jobs.job_done_20000101;
SELECT r->'partitions_dropped' AS dropped, r->'error' AS error FROM jobs.apply_retention() r;
SELECT to_regclass('jobs.job_done_20000101') IS NULL AS old_day_gone,
       to_regclass(:'today') IS NOT NULL AS today_kept;
\c :regress_db
DROP DATABASE pg_jobs_fresh_install;
