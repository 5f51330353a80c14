--
-- Who may execute what: a catalog audit of every function in schema jobs,
-- then the attacks on internal functions, run as ordinary roles.
--
-- Rules: no internal function (leading underscore) is executable by PUBLIC;
-- a SECURITY DEFINER function is executable only by the roles it serves;
-- every SQL or PL/pgSQL function pins search_path = pg_catalog, pg_temp.
-- The full list below is explicit on purpose: a new function, or a changed
-- grant, shows up in this test's diff and must be looked at.
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
-- executable_by(f): the roles granted EXECUTE on f, besides its owner
CREATE FUNCTION executable_by(f oid) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
                               ' ' ORDER BY a.grantee <> 0, a.grantee::regrole::text), '-')
    FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
    WHERE p.oid = f AND a.grantee <> p.proowner AND a.privilege_type = 'EXECUTE'
$$;

-- Every function of the extension, who may execute it, and whether it runs
-- with its owner's rights.
SELECT p.oid::regprocedure AS function, p.prosecdef AS definer, executable_by(p.oid)
FROM pg_proc p WHERE p.pronamespace = 'jobs'::regnamespace
ORDER BY p.proname COLLATE "C", p.oid::regprocedure::text COLLATE "C";

-- Internal functions executable by PUBLIC: none.
SELECT p.oid::regprocedure AS internal_and_public
FROM pg_proc p WHERE p.pronamespace = 'jobs'::regnamespace AND p.proname LIKE '\_%'
  AND has_function_privilege('public', p.oid, 'EXECUTE')
ORDER BY p.oid::regprocedure::text COLLATE "C";

-- SECURITY DEFINER functions and who may execute them.
SELECT p.oid::regprocedure AS definer_function, executable_by(p.oid)
FROM pg_proc p WHERE p.pronamespace = 'jobs'::regnamespace AND p.prosecdef
ORDER BY p.oid::regprocedure::text COLLATE "C";

-- SECURITY DEFINER, SQL and PL/pgSQL functions without a pinned search_path
-- (none).  C functions name everything schema-qualified instead.
SELECT p.oid::regprocedure AS unpinned, p.proconfig
FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
WHERE p.pronamespace = 'jobs'::regnamespace
  AND (p.prosecdef OR l.lanname IN ('sql', 'plpgsql'))
  AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)
ORDER BY p.oid::regprocedure::text COLLATE "C";

-- Attacks, as ordinary roles ---------------------------------------------
CREATE ROLE audit_user NOLOGIN;
CREATE ROLE audit_other NOLOGIN;
GRANT USAGE ON SCHEMA public TO audit_user, audit_other;
SELECT name FROM jobs.register_task_type('audit_ext', queue => 'audit_q');
SELECT task_id FROM jobs.enqueue('audit_ext', owner => 'audit_other', priority => 0, task_id => 'a-other-0');
SELECT task_id FROM jobs.enqueue('audit_ext', owner => 'audit_other', priority => 1, task_id => 'a-other-1');
SELECT task_id FROM jobs.enqueue('audit_ext', owner => 'audit_user', priority => 1, task_id => 'a-user-1');
SELECT task_id FROM jobs.enqueue('audit_ext', owner => NULL, priority => 3, task_id => 'a-nobody');
SELECT id AS other_id FROM jobs.job WHERE task_id = 'a-other-0' \gset
SELECT id AS user_id FROM jobs.job WHERE task_id = 'a-user-1' \gset
-- report_locks(): the report locks (advisory, field 4 = 0x4A42) this session holds
CREATE FUNCTION report_locks() RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FROM pg_locks
    WHERE locktype = 'advisory' AND objsubid = 19010 AND pid = pg_backend_pid() AND granted
$$;

-- The report lock: anyone could take it on any job id, existing or future,
-- and hold it in an idle transaction against every report, claim and
-- worker on that job.  Now only on in-flight jobs one may change.
SET ROLE audit_user;
BEGIN;
SELECT try(format('SELECT jobs._lock_job(%s)', :other_id)) AS lock_any_id;
ROLLBACK;
BEGIN;
SELECT jobs.lock_jobs(ARRAY['a-other-0', 'a-nobody', 'not-yet-a-job']) AS locked_others;
SELECT report_locks() AS held;
ROLLBACK;
BEGIN;
SELECT jobs.lock_jobs(ARRAY['a-user-1']) = ARRAY[:user_id]::bigint[] AS locked_own;
SELECT report_locks() AS held;
ROLLBACK;
RESET ROLE;

-- The queue position: the old helper answered for any (queue, priority, id)
-- and so told the ids, queues and priorities of others' jobs.  Now it
-- answers only for a job the caller can see, counting every job ahead.
SET ROLE audit_user;
SELECT try($$SELECT jobs._queue_position('audit_q', 0::smallint, 999999999)$$) AS old_helper;
SELECT try(format('SELECT jobs._queue_ahead(%s)', :other_id)) AS count_helper;
SELECT task_id, jobs.queue_position(task_id) AS queue_position
FROM (VALUES ('a-user-1'), ('a-nobody'), ('a-other-0'), ('no-such')) v(task_id);
SELECT task_id, queue_position FROM jobs.task_v10 WHERE queue = 'audit_q' ORDER BY id;
RESET ROLE;
SELECT task_id, queue_position FROM jobs.task_v10 WHERE queue = 'audit_q' ORDER BY id;

-- Worker slots named every running job; jobs.workers() names only the jobs
-- the caller can see, and jobs.health() uses it.
CREATE FUNCTION audit_sleep(job jobs.job) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(30);
    RETURN '{}';
END $$;
SELECT name FROM jobs.register_task_type('audit_run', 'audit_sleep(jobs.job)');
SELECT task_id FROM jobs.enqueue('audit_run', owner => 'audit_other', task_id => 'a-running');
DO $$
BEGIN
    FOR i IN 1..600 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM jobs.workers() w WHERE w.task_id = 'a-running');
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
SET ROLE audit_user;
SELECT try($$SELECT job_id FROM jobs._worker_slots()$$) AS slots;
SELECT count(*) FILTER (WHERE state = 'running') AS running, count(task_id) AS named
FROM jobs.workers();
SELECT (SELECT count(*) FROM jsonb_array_elements(h->'workers') w WHERE w->>'state' = 'running') AS running,
       (SELECT count(*) FROM jsonb_array_elements(h->'workers') w WHERE w->>'task_id' IS NOT NULL) AS named
FROM jobs.health() h;
SET ROLE audit_other;
SELECT task_id FROM jobs.workers() WHERE state = 'running';
RESET ROLE;
CREATE ROLE audit_monitor NOLOGIN IN ROLE jobs_monitor;
SET ROLE audit_monitor;
SELECT count(job_id) AS running_job_ids FROM jobs._worker_slots() WHERE state = 'running';
RESET ROLE;
SELECT status FROM jobs.cancel('a-running', force => true);

-- The internal writers by job id and the run of a schedule are for their
-- roles only.
SET ROLE audit_user;
SELECT try(format('SELECT jobs._log_write(%s, %L)', :other_id, 'forged')) AS log_write;
SELECT try(format('SELECT jobs._purge_logs(ARRAY[%s]::bigint[])', :other_id)) AS purge_logs;
SELECT try($$SELECT jobs._scheduled_enqueue('x')$$) AS scheduled_enqueue;
SELECT try($$SELECT jobs._summary_global(30)$$) AS summary_global;
SELECT try($$SELECT jobs._document_for_admin(1)$$) AS document_for_admin;
RESET ROLE;

DELETE FROM jobs.job WHERE task_type IN ('audit_ext', 'audit_run');
DELETE FROM jobs.task_type WHERE name IN ('audit_ext', 'audit_run');
DROP FUNCTION audit_sleep(jobs.job), report_locks(), executable_by(oid);
DROP OWNED BY audit_user, audit_other, audit_monitor;
DROP ROLE audit_user, audit_other, audit_monitor;
