--
-- Schedules through pg_cron: schedule, update, unschedule; bad input; who
-- may schedule and who may create jobs with trigger source "scheduled"; a
-- run of a schedule (what pg_cron executes) is a scheduled job owned by the
-- scheduling role that names its schedule; without pg_cron: 55000.
-- (test/pg_jobs.conf preloads pg_cron with cron.database_name =
-- contrib_regression; the schedules below never fire: 29 February, 2026 is
-- no leap year.  TAP 003 waits for real pg_cron runs.)
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_jobs;
CREATE EXTENSION pg_cron;
RESET client_min_messages;
\set VERBOSITY terse
CREATE OR REPLACE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT name FROM jobs.register_task_type('report');
SELECT name FROM jobs.register_task_type('ignored', tracked => false);
CREATE ROLE sched_alice NOLOGIN IN ROLE jobs_scheduler;
CREATE ROLE sched_bob NOLOGIN;
CREATE ROLE sched_admin NOLOGIN IN ROLE jobs_admin;
-- pg_cron's own permission, given to the schedulers
GRANT USAGE ON SCHEMA cron TO jobs_scheduler;
SELECT rolcanlogin FROM pg_roles WHERE rolname = 'jobs_scheduler';

-- alice schedules a report; pg_cron holds a tiny, quoted command
SET ROLE sched_alice;
SELECT jobs.schedule('nightly', '0 3 29 2 *', 'report', '{"kind": "full"}') > 0 AS scheduled;
SELECT owner, name, cron, task_type, input, cron_job_id IS NOT NULL AS has_cron_job FROM jobs.schedule;
SELECT jobname, schedule, command, username FROM cron.job ORDER BY jobid;
-- the same name again updates it (one pg_cron job, same id)
SELECT jobs.schedule('nightly', '30 4 29 2 *', 'report', '{"kind": "delta"}') = cron_job_id AS same_job
FROM jobs.schedule WHERE name = 'nightly';
SELECT owner, name, cron, task_type, input FROM jobs.schedule;
SELECT jobname, schedule, command FROM cron.job ORDER BY jobid;
-- a name that needs quoting stays one literal
SELECT jobs.schedule('it''s; DROP TABLE x', '@daily', 'report') > 0 AS scheduled;
SELECT command FROM cron.job WHERE jobname = 'pg_jobs:it''s; DROP TABLE x';

-- bad input
SELECT try($$SELECT jobs.schedule('bad', 'every minute', 'report')$$);
SELECT try($$SELECT jobs.schedule('bad', '10 seconds', 'report')$$);
SELECT try($$SELECT jobs.schedule('bad', '0 3 * * *', 'no_such_type')$$);
SELECT try($$SELECT jobs.schedule('bad', '0 3 * * *', 'ignored')$$);
SELECT try($$SELECT jobs.schedule('', '0 3 * * *', 'report')$$);
SELECT try($$SELECT jobs.schedule('bad', '', 'report')$$);
SELECT try($$SELECT jobs.schedule('bad', '0 3 * * *', 'report', '[1]')$$);
-- names longer than 55 bytes would be cut in pg_cron's job name (63 bytes
-- with the "pg_jobs:" prefix) and two of them could become one job
SELECT try(format('SELECT jobs.schedule(%L, %L, %L)', repeat('b', 56), '@daily', 'report'));
SELECT try(format('SELECT jobs.schedule(%L, %L, %L)', repeat('é', 28), '@daily', 'report'));
SELECT jobs.schedule(repeat('b', 55), '@daily', 'report') > 0 AS longest_scheduled;
SELECT jobname = 'pg_jobs:' || repeat('b', 55) AS whole_name FROM cron.job WHERE jobname LIKE 'pg_jobs:bbb%';
SELECT jobs.unschedule(repeat('b', 55));
SELECT count(*) AS nothing_stored FROM jobs.schedule WHERE name = 'bad';

-- a run: what pg_cron executes, as alice
SELECT trigger_source, owner, task_type, input, status FROM jobs._scheduled_enqueue('nightly');
SELECT try($$SELECT jobs._scheduled_enqueue('no_such_schedule')$$);
-- schedulers may also enqueue scheduled jobs directly
SELECT trigger_source, owner FROM jobs.enqueue('report', trigger_source => 'scheduled');
RESET ROLE;

-- bob is no scheduler: he cannot schedule, nor create scheduled jobs by any
-- path, nor run or see alice's schedules; manual jobs are fine
SET ROLE sched_bob;
SELECT try($$SELECT jobs.schedule('mine', '0 3 * * *', 'report')$$);
SELECT try($$SELECT jobs.enqueue('report', trigger_source => 'scheduled')$$);
SELECT try($$SELECT jobs.enqueue_many('report', '[{}, {}]', 'scheduled')$$);
SELECT try($$INSERT INTO jobs.job (task_type, trigger_source) VALUES ('report', 'scheduled')$$);
SELECT try($$SELECT jobs._scheduled_enqueue('nightly')$$);
SELECT trigger_source, owner FROM jobs.enqueue('report');
SELECT count(*) AS schedules_bob_sees FROM jobs.schedule;
SELECT jobs.unschedule('nightly') AS removed;          -- not his: nothing happens
SELECT try($$DELETE FROM jobs.schedule$$);
SELECT try($$UPDATE jobs.schedule SET cron = '* * * * *'$$);
RESET ROLE;

-- an admin sees every schedule; scheduling also needs pg_cron's USAGE
SET ROLE sched_admin;
SELECT owner, name FROM jobs.schedule ORDER BY name;
SELECT try($$SELECT jobs.schedule('admin', '0 3 29 2 *', 'report')$$);
SELECT trigger_source, owner FROM jobs.enqueue('report', trigger_source => 'scheduled');
RESET ROLE;

-- unschedule removes the row and the pg_cron job; again: false
SET ROLE sched_alice;
SELECT jobs.unschedule('nightly') AS removed;
SELECT jobs.unschedule('nightly') AS removed_again;
SELECT jobs.unschedule('it''s; DROP TABLE x') AS removed;
-- a pg_cron job whose row was deleted by hand is removed too
SELECT jobs.schedule('by-hand', '0 3 29 2 *', 'report') > 0 AS scheduled;
DELETE FROM jobs.schedule WHERE name = 'by-hand';
SELECT jobs.unschedule('by-hand') AS removed;
SELECT count(*) AS schedules FROM jobs.schedule;
SELECT count(*) AS cron_jobs FROM cron.job;
RESET ROLE;

-- without pg_cron: 55000 with a hint
DROP EXTENSION pg_cron;
SET ROLE sched_alice;
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT jobs.schedule('nightly', '0 3 * * *', 'report');
SELECT jobs.unschedule('nightly');
\set VERBOSITY terse
RESET ROLE;

DELETE FROM jobs.job WHERE task_type = 'report';
DROP ROLE sched_alice, sched_bob, sched_admin;
