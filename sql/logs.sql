--
-- Per-job logs: writing, reading with filters and a cursor, stats, sources,
-- bad input, the per-job cap, following, and who may read, write and follow.
--
SET client_min_messages = warning;       -- quiet whether or not an earlier test created it
CREATE EXTENSION IF NOT EXISTS pg_jobs;
RESET client_min_messages;
\set VERBOSITY terse
-- try(sql): run a statement, return "SQLSTATE: message" of its error, or "ok".
CREATE OR REPLACE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
-- show(task): a job's entries without ids and times, in order.
CREATE FUNCTION show(task text, level text DEFAULT NULL, source text DEFAULT NULL,
                     after_id bigint DEFAULT NULL, max_rows int DEFAULT 1000)
RETURNS TABLE (task_id text, level text, source text, message text, fields jsonb)
LANGUAGE sql AS $$
    SELECT l.task_id, l.level, l.source, l.message, l.fields
    FROM jobs.logs(task, level, source, after_id, max_rows) l
$$;

SELECT name FROM jobs.register_task_type('log_demo');
SELECT task_id FROM jobs.enqueue('log_demo', task_id => 'log-1');
SELECT task_id FROM jobs.enqueue('log_demo', task_id => 'log-2');
SELECT task_id FROM jobs.enqueue('log_demo', task_id => 'log-empty');

-- writing: every level, source and structured fields; the id comes back
SELECT try($$SELECT jobs.log('starting')$$);   -- outside a handler there is no default job
SELECT jobs.current_task_id() IS NULL AS no_running_job;
SELECT jobs.log('starting', task_id => 'log-1') > 0 AS logged;
SELECT jobs.log('loading model', 'debug', 'llm', task_id => 'log-1') > 0 AS logged;
SELECT jobs.log('page 1 of 3', 'info', 'ocr', '{"page": 1, "pages": 3}', 'log-1') > 0 AS logged;
SELECT jobs.log('low confidence', 'notice', 'ocr', '{"page": 2, "confidence": 0.41}', 'log-1') > 0 AS logged;
SELECT jobs.log('page 3 unreadable', 'warning', 'ocr', task_id => 'log-1') > 0 AS logged;
SELECT jobs.log('model timed out', 'error', 'llm', '{"after_s": 30}', 'log-1') > 0 AS logged;
SELECT jobs.log('done', NULL, '', task_id => 'log-1') > 0 AS logged;   -- NULL level = info, '' source = none
SELECT jobs.log('other job', task_id => 'log-2') > 0 AS logged;

-- reading: in order, only this job's entries
SELECT * FROM show('log-1');
SELECT count(*) FROM jobs.logs('log-2');
SELECT count(*) FROM jobs.logs('log-empty');
-- level is "at least this severe"
SELECT level, message FROM show('log-1', level => 'warning');
SELECT level, message FROM show('log-1', level => 'notice');
SELECT count(*) FROM show('log-1', level => 'debug');
-- source is matched exactly
SELECT level, message FROM show('log-1', source => 'ocr');
SELECT level, message FROM show('log-1', level => 'warning', source => 'llm');
SELECT count(*) FROM show('log-1', source => 'nobody');
-- the cursor: after_id and max_rows page through the log without gaps or repeats
SELECT string_agg(message, ', ' ORDER BY id) AS page_1
FROM jobs.logs('log-1', max_rows => 3);
SELECT string_agg(message, ', ' ORDER BY id) AS page_2
FROM jobs.logs('log-1', max_rows => 3,
               after_id => (SELECT max(id) FROM jobs.logs('log-1', max_rows => 3)));
SELECT string_agg(message, ', ' ORDER BY id) AS page_3
FROM jobs.logs('log-1', max_rows => 3,
               after_id => (SELECT max(id) FROM jobs.logs('log-1', max_rows => 6)));
SELECT count(*) AS after_last
FROM jobs.logs('log-1', after_id => (SELECT max(id) FROM jobs.logs('log-1')));
-- the cursor combines with the filters
SELECT message FROM show('log-1', level => 'notice',
                         after_id => (SELECT min(id) FROM jobs.logs('log-1', level => 'notice')));
-- entries are stored with their job, position and time
SELECT l.seq, l.level, l.at <= clock_timestamp() AS stamped
FROM jobs.job_log l JOIN jobs.job j ON j.id = l.job_id
WHERE j.task_id = 'log-1' ORDER BY l.id;

-- stats: counts per level, first and last entry time
SELECT task_id, entries, debug, info, notice, warning, error, first_at <= last_at AS ordered, capped
FROM jobs.log_stats('log-1');
SELECT task_id, entries, debug, info, notice, warning, error, first_at, last_at, capped
FROM jobs.log_stats('log-empty');
-- sources, each with its count (entries without a source last)
SELECT source, entries, first_at <= last_at AS ordered FROM jobs.log_sources('log-1');
SELECT count(*) FROM jobs.log_sources('log-empty');

-- bad input: clear errors, nothing stored
SELECT try($$SELECT jobs.log('x', 'fatal', task_id => 'log-1')$$);
SELECT try($$SELECT jobs.log('x', 'INFO', task_id => 'log-1')$$);
SELECT try($$SELECT jobs.log(NULL, task_id => 'log-1')$$);
SELECT try($$SELECT jobs.log('', task_id => 'log-1')$$);
SELECT try($$SELECT jobs.log('x', fields => '[1, 2]', task_id => 'log-1')$$);
SELECT try($$SELECT jobs.log('x', fields => '"text"', task_id => 'log-1')$$);
SELECT try($$SELECT jobs.log('x', task_id => 'no-such-task')$$);
SELECT try($$SELECT jobs.log('x', task_id => '')$$);
SELECT try($$SELECT jobs.logs('log-1', level => 'fatal')$$);
SELECT try($$SELECT jobs.logs('log-1', max_rows => 0)$$);
SELECT try($$SELECT jobs.logs('log-1', max_rows => NULL)$$);
SELECT try($$SELECT jobs.logs('no-such-task')$$);
SELECT try($$SELECT jobs.logs(NULL)$$);
SELECT try($$SELECT jobs.log_stats('no-such-task')$$);
SELECT try($$SELECT jobs.log_sources('')$$);
SELECT try($$SELECT jobs.follow('no-such-task')$$);
SELECT try($$SELECT jobs.follow('log-1', 'loud')$$);
SELECT try($$SELECT jobs.follow(NULL)$$);
SELECT count(*) AS still_7 FROM jobs.logs('log-1');

-- the per-job cap: entries beyond it are dropped, noted once
SHOW pg_jobs.log_max_entries;
SET pg_jobs.log_max_entries = 3;
SELECT task_id FROM jobs.enqueue('log_demo', task_id => 'log-runaway');
SELECT n, jobs.log('line ' || n, task_id => 'log-runaway') IS NOT NULL AS kept
FROM generate_series(1, 6) n;
SELECT * FROM show('log-runaway');
SELECT entries, warning, capped FROM jobs.log_stats('log-runaway');
-- other jobs are not affected
SELECT jobs.log('still fine', task_id => 'log-2') IS NOT NULL AS kept;
-- a lower cap on a longer log drops from then on, with its own note
SET pg_jobs.log_max_entries = 2;
SELECT jobs.log('one more', task_id => 'log-1') IS NOT NULL AS kept;
SELECT level, source, message FROM show('log-1', after_id => (SELECT max(id) - 1 FROM jobs.logs('log-1')));
-- 0 means no cap
SET pg_jobs.log_max_entries = 0;
SELECT jobs.log('uncapped', task_id => 'log-runaway') IS NOT NULL AS kept;
RESET pg_jobs.log_max_entries;
SELECT try($$SET pg_jobs.log_max_entries = -1$$);

-- the internal path by job id (admins and the engine), with a given time
SELECT jobs._log_write(j.id, 'buffered', 'warning', 'handler', '{"line": 7}',
                       '2030-01-01 00:00+00') IS NOT NULL AS written
FROM jobs.job j WHERE j.task_id = 'log-2';
SELECT level, source, message, fields, at = '2030-01-01 00:00+00' AS kept_time
FROM jobs.logs('log-2', source => 'handler');
SELECT try($$SELECT jobs._log_write(NULL, 'x')$$);
SELECT try($$SELECT jobs._log_write(1, 'x', 'fatal')$$);

-- following: a filter per session under a random channel, effective at commit
BEGIN;
SELECT jobs.follow('log-1', 'warning', 'ocr') ~ '^pg_jobs_log_[0-9a-f]{32}$' AS channel;
SELECT jobs.follow('log-2') ~ '^pg_jobs_log_[0-9a-f]{32}$' AS channel;
SELECT task_id, min_level, source, pid = pg_backend_pid() AS mine
FROM jobs.log_follower ORDER BY task_id;
SELECT count(*) AS listening FROM pg_listening_channels();
SELECT jobs.unfollow((SELECT channel FROM jobs.log_follower WHERE task_id = 'log-2'));
SELECT task_id FROM jobs.log_follower;
SELECT jobs.unfollow();
SELECT count(*) FROM jobs.log_follower;
-- at most 100 filters per session
SELECT count(jobs.follow('log-1')) FROM generate_series(1, 100);
SELECT try($$SELECT jobs.follow('log-1')$$);
ROLLBACK;
SELECT jobs.unfollow('pg_jobs_log_00000000000000000000000000000000');
-- a followed entry's NOTIFY payload stays under NOTIFY's 8000-byte limit
-- after JSON escaping, whatever its task id, message, source and fields
-- (test/t/005_logs_follow.pl reads the payloads with a real follower): a
-- task id of 255 bytes that escape to six each, with a message of quotes,
-- a source of backslashes and fields of 2999 bytes; a message of 3000
-- control characters
BEGIN;
SELECT length(task_id) FROM jobs.enqueue('log_demo', task_id => 'log-ctl-' || repeat(E'\x01', 247));
SELECT jobs.follow('log-ctl-' || repeat(E'\x01', 247)) IS NOT NULL AS following;
SELECT jobs.follow('log-1') IS NOT NULL AS following;
SELECT try($$SELECT jobs.log(repeat('"', 3000), 'warning', repeat('\', 300),
                                jsonb_build_object('k', repeat('x', 2990)),
                                'log-ctl-' || repeat(E'\x01', 247))$$);
SELECT try($$SELECT jobs.log(repeat(E'\x01', 3000), 'error', task_id => 'log-1')$$);
SELECT count(*) AS written FROM jobs.logs('log-ctl-' || repeat(E'\x01', 247));
ROLLBACK;

--
-- Roles: logs are visible exactly as their jobs are
--
CREATE ROLE log_alice NOLOGIN;
CREATE ROLE log_bob NOLOGIN;
CREATE ROLE log_boss NOLOGIN IN ROLE jobs_admin;
SELECT (jobs.enqueue('log_demo', owner => 'log_alice', task_id => 'log-a')).task_id;
SELECT (jobs.enqueue('log_demo', owner => 'log_bob', task_id => 'log-b')).task_id;
SELECT (jobs.enqueue('log_demo', owner => NULL, task_id => 'log-sys')).task_id;
SELECT jobs.log('alice''s secret', task_id => 'log-a') IS NOT NULL AS logged;
SELECT jobs.log('bob''s secret', 'error', 'vault', task_id => 'log-b') IS NOT NULL AS logged;
SELECT jobs.log('system note', task_id => 'log-sys') IS NOT NULL AS logged;

SET ROLE log_alice;
-- alice reads her jobs' logs and unowned ones; bob's do not exist for her
SELECT task_id, message FROM show('log-a');
SELECT task_id, message FROM show('log-sys');
SELECT try($$SELECT jobs.logs('log-b')$$);
SELECT try($$SELECT jobs.log_stats('log-b')$$);
SELECT try($$SELECT jobs.log_sources('log-b')$$);
SELECT l.message FROM jobs.job_log l
WHERE l.message LIKE '%secret' OR l.message = 'system note' ORDER BY l.id;
-- she writes to her own jobs only; unowned jobs belong to admins
SELECT jobs.log('alice was here', task_id => 'log-a') IS NOT NULL AS logged;
SELECT try($$SELECT jobs.log('planted', task_id => 'log-b')$$);
SELECT try($$SELECT jobs.log('planted', task_id => 'log-sys')$$);
SELECT try($$SELECT jobs._log_write((SELECT id FROM jobs.job WHERE task_id = 'log-a'), 'by id')$$);
SELECT try($$INSERT INTO jobs.job_log (job_id, message) SELECT id, 'direct' FROM jobs.job WHERE task_id = 'log-a'$$);
SELECT try($$DELETE FROM jobs.job_log$$);
SELECT try($$SELECT jobs._purge_logs('{1}')$$);
SELECT try($$SET pg_jobs.log_max_entries = 0$$);
-- she follows what she can see, never bob's jobs, and cannot read the channels
SELECT try($$SELECT jobs.follow('log-b')$$);
BEGIN;
SELECT jobs.follow('log-a', 'info') IS NOT NULL AS following;
SELECT try($$SELECT * FROM jobs.log_follower$$);
ROLLBACK;
RESET ROLE;

SET ROLE log_bob;
SELECT task_id, level, source, message FROM show('log-b');
SELECT try($$SELECT jobs.logs('log-a')$$);
SELECT count(*) AS alice_entries_seen FROM jobs.job_log l
WHERE l.message LIKE 'alice%';
RESET ROLE;

-- admins read and write every job's log
SET ROLE log_boss;
SELECT task_id, message FROM show('log-a');
SELECT task_id, message FROM show('log-b');
SELECT jobs.log('reviewed', task_id => 'log-b') IS NOT NULL AS logged;
SELECT jobs.log('reviewed', task_id => 'log-sys') IS NOT NULL AS logged;
SELECT entries FROM jobs.log_stats('log-b');
RESET ROLE;

-- retention: an admin purges the entries of given jobs
SELECT jobs._purge_logs(ARRAY(SELECT id FROM jobs.job WHERE task_id IN ('log-a', 'log-b')));
SELECT count(*) FROM jobs.logs('log-a');

-- logs go with their job through its lifecycle
SELECT status FROM jobs.start('log-2');
SELECT jobs.log('working', task_id => 'log-2') IS NOT NULL AS logged;
SELECT status FROM jobs.succeed('log-2');
SELECT message FROM show('log-2', level => 'info', after_id => 0);

-- the log API as granted, and reads are STABLE (PostgREST GET), writes VOLATILE
SELECT p.proname, p.provolatile, p.prosecdef
FROM pg_proc p WHERE p.pronamespace = 'jobs'::regnamespace
  AND p.proname IN ('log', 'logs', 'log_stats', 'log_sources', 'follow', 'unfollow',
                    '_log_write', 'current_task_id', '_purge_logs')
ORDER BY 1;
SELECT has_table_privilege('public', 'jobs.job_log', 'INSERT') AS public_inserts,
       has_table_privilege('public', 'jobs.log_follower', 'SELECT') AS public_reads_followers;

--
-- Name resolution: a caller's trojans never run with other rights.  A plain
-- LOGIN role plants, in pg_temp (searched first for types unless the path
-- lists it), a domain over every type the log functions' SQL uses, and in a
-- schema of her own that she puts before pg_catalog, operators on the types
-- they compare; each trojan makes her a superuser if it runs as one.  Every
-- log function works as usual for her, and her role keeps its rights.
--
CREATE ROLE log_mallory LOGIN;
CREATE SCHEMA log_mallory_ns AUTHORIZATION log_mallory;
SELECT (jobs.enqueue('log_demo', owner => 'log_mallory', task_id => 'log-m')).task_id;
SET ROLE log_mallory;
CREATE FUNCTION pg_temp.evil(t pg_catalog.text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    su boolean := (SELECT r.rolsuper FROM pg_catalog.pg_roles r
                   WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER);
BEGIN
    RAISE NOTICE 'trojan ran (as a superuser: %)', su;
    IF su THEN
        EXECUTE 'ALTER ROLE log_mallory SUPERUSER CREATEROLE';
    END IF;
    RETURN true;
END $$;
CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.evil(VALUE));
CREATE DOMAIN pg_temp.name AS pg_catalog.name CHECK (pg_temp.evil(VALUE::pg_catalog.text));
CREATE DOMAIN pg_temp.int2 AS pg_catalog.int2 CHECK (pg_temp.evil(VALUE::pg_catalog.text));
CREATE DOMAIN pg_temp.int4 AS pg_catalog.int4 CHECK (pg_temp.evil(VALUE::pg_catalog.text));
CREATE DOMAIN pg_temp.int8 AS pg_catalog.int8 CHECK (pg_temp.evil(VALUE::pg_catalog.text));
CREATE DOMAIN pg_temp.oid AS pg_catalog.oid CHECK (pg_temp.evil(VALUE::pg_catalog.text));
CREATE DOMAIN pg_temp.jsonb AS pg_catalog.jsonb CHECK (pg_temp.evil(VALUE::pg_catalog.text));
CREATE DOMAIN pg_temp.timestamptz AS pg_catalog.timestamptz
    CHECK (pg_temp.evil(VALUE::pg_catalog.text));
CREATE DOMAIN pg_temp.bool AS pg_catalog.bool CHECK (pg_temp.evil(VALUE::pg_catalog.text));
CREATE FUNCTION log_mallory_ns.cmp(a pg_catalog.text, b pg_catalog.text) RETURNS boolean
    LANGUAGE sql AS 'SELECT pg_temp.evil(a)';
CREATE FUNCTION log_mallory_ns.cmp(a pg_catalog.name, b pg_catalog.name) RETURNS boolean
    LANGUAGE sql AS 'SELECT pg_temp.evil(a::pg_catalog.text)';
CREATE FUNCTION log_mallory_ns.cmp(a pg_catalog.int8, b pg_catalog.int8) RETURNS boolean
    LANGUAGE sql AS 'SELECT pg_temp.evil(a::pg_catalog.text)';
CREATE FUNCTION log_mallory_ns.cmp(a pg_catalog.int4, b pg_catalog.int4) RETURNS boolean
    LANGUAGE sql AS 'SELECT pg_temp.evil(a::pg_catalog.text)';
CREATE FUNCTION log_mallory_ns.cmp(a pg_catalog.jsonb, b pg_catalog.text) RETURNS boolean
    LANGUAGE sql AS 'SELECT pg_temp.evil(b)';
CREATE OPERATOR log_mallory_ns.= (FUNCTION = log_mallory_ns.cmp, LEFTARG = pg_catalog.text,
    RIGHTARG = pg_catalog.text);
CREATE OPERATOR log_mallory_ns.= (FUNCTION = log_mallory_ns.cmp, LEFTARG = pg_catalog.name,
    RIGHTARG = pg_catalog.name);
CREATE OPERATOR log_mallory_ns.= (FUNCTION = log_mallory_ns.cmp, LEFTARG = pg_catalog.int8,
    RIGHTARG = pg_catalog.int8);
CREATE OPERATOR log_mallory_ns.= (FUNCTION = log_mallory_ns.cmp, LEFTARG = pg_catalog.int4,
    RIGHTARG = pg_catalog.int4);
CREATE OPERATOR log_mallory_ns.> (FUNCTION = log_mallory_ns.cmp, LEFTARG = pg_catalog.int8,
    RIGHTARG = pg_catalog.int8);
CREATE OPERATOR log_mallory_ns.< (FUNCTION = log_mallory_ns.cmp, LEFTARG = pg_catalog.int4,
    RIGHTARG = pg_catalog.int4);
CREATE OPERATOR log_mallory_ns.~~ (FUNCTION = log_mallory_ns.cmp, LEFTARG = pg_catalog.text,
    RIGHTARG = pg_catalog.text);
CREATE OPERATOR log_mallory_ns.? (FUNCTION = log_mallory_ns.cmp, LEFTARG = pg_catalog.jsonb,
    RIGHTARG = pg_catalog.text);
SET search_path = log_mallory_ns, pg_catalog;
-- the trojans are armed: her own statements run them, as her
SELECT 'a'::text = 'b' AS trojan_equal;
-- the attack of issue 12, then every log function with the trojans in place
SELECT jobs.unfollow();
SELECT jobs.unfollow('pg_jobs_log_00000000000000000000000000000000');
SELECT jobs.log('m1', 'warning', 'src', '{"k": 1}', 'log-m') IS NOT NULL AS logged;
BEGIN;
SELECT jobs.follow('log-m', 'info', 'src') IS NOT NULL AS following;
SELECT jobs.log('m2 followed', 'error', 'src', '{"k": 2}', 'log-m') IS NOT NULL AS logged;
SELECT jobs.unfollow();
COMMIT;
SELECT message, fields FROM jobs.logs('log-m', 'info', 'src', 0, 10);
SELECT entries, warning, error, capped FROM jobs.log_stats('log-m');
SELECT source, entries FROM jobs.log_sources('log-m');
SELECT public.try($$SELECT jobs.logs('log-b')$$);
RESET search_path;
DISCARD TEMP;
DROP SCHEMA log_mallory_ns CASCADE;
RESET ROLE;
SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = 'log_mallory';
