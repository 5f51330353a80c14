--
-- The tracking API: enqueue, enqueue_many, start, succeed, fail, revoke;
-- bad input, dedup, backpressure, task ids, and who may see and do what.
--
CREATE EXTENSION IF NOT EXISTS pg_jobs;
\set VERBOSITY terse
-- try(sql): run a statement, return "SQLSTATE: message" of its error, or "ok".
CREATE OR REPLACE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT name, display_name, queue, priority, max_attempts
FROM jobs.register_task_type('index', queue => 'indexing', priority => 1, max_attempts => 3,
                             display_name => 'LLM Index', legacy_name => 'llmindex_update');
SELECT name, display_name FROM jobs.register_task_type('sanity_check');
SELECT name FROM jobs.register_task_type('thumb', max_pending => 2);
SELECT name FROM jobs.register_task_type('metrics', tracked => false);

-- enqueue: defaults come from the type and the caller
SELECT id > 0 AS has_id, length(task_id) AS uuid_len, task_type, queue, status, trigger_source,
       owner = current_user AS mine, input, priority, max_attempts, attempts, acknowledged
FROM jobs.enqueue('index');
-- every argument, by name
SELECT task_id, input, trigger_source, priority, run_at, dedup_key, depends_on, parent_id
FROM jobs.enqueue('sanity_check', input => '{"filename": "scan.pdf"}', trigger_source => 'email_consume',
                  priority => 0, run_at => '2030-01-01 00:00+00', dedup_key => 'scan.pdf',
                  depends_on => '{1}', parent_id => 1, task_id => 'celery-1');
-- untracked types are ignored: NULL, nothing stored
SELECT jobs.enqueue('metrics') IS NULL AS ignored, to_jsonb(jobs.enqueue('metrics')) AS as_json;
SELECT count(*) FROM jobs.job WHERE task_type = 'metrics';

-- bad input: clear errors, nothing stored
SELECT try($$SELECT jobs.enqueue('unknown_type')$$);
SELECT try($$SELECT jobs.enqueue(NULL)$$);
SELECT try($$SELECT jobs.enqueue('index', NULL)$$);
SELECT try($$SELECT jobs.enqueue('index', '[1, 2]')$$);
SELECT try($$SELECT jobs.enqueue('index', '"text"')$$);
SELECT try($$SELECT jobs.enqueue('index', trigger_source => 'carrier_pigeon')$$);
SELECT trigger_source FROM jobs.enqueue('index', trigger_source => NULL);
SELECT try($$SELECT jobs.enqueue('index', priority => 7)$$);
SELECT try($$SELECT jobs.enqueue('index', priority => -1)$$);
SELECT try($$SELECT jobs.enqueue('index', priority => 100000)$$);   -- beyond smallint: still 22023
SELECT try($$SELECT jobs.enqueue('index', task_id => '')$$);
SELECT try($$SELECT jobs.start(NULL)$$);
SELECT try($$SELECT jobs.start('')$$);
SELECT try($$SELECT jobs.start('no-such-task')$$);
SELECT try($$SELECT jobs.succeed('no-such-task')$$);
SELECT try($$SELECT jobs.fail('no-such-task', 'x')$$);
SELECT try($$SELECT jobs.revoke('no-such-task')$$);
SELECT try($$SELECT jobs.register_task_type(NULL)$$);
SELECT try($$SELECT jobs.register_task_type('')$$);
SELECT try($$SELECT jobs.register_task_type('x', priority => 4)$$);
SELECT try($$SELECT jobs.register_task_type('x', max_attempts => 0)$$);
SELECT try($$SELECT jobs.register_task_type('x', timeout => '-1 second')$$);
SELECT try($$SELECT jobs.register_task_type('x', queue => '')$$);
-- A handler cannot be dropped while a task type uses it (the type would
-- point at a function that no longer exists): 2BP01, by every path
CREATE ROLE handler_owner NOLOGIN;
CREATE SCHEMA handlers AUTHORIZATION handler_owner;
SET ROLE handler_owner;
CREATE FUNCTION handlers.h(job jobs.job) RETURNS jsonb LANGUAGE sql RETURN '{}'::jsonb;
RESET ROLE;
SELECT name, handler FROM jobs.register_task_type('handled', 'handlers.h(jobs.job)');
SET ROLE handler_owner;
\set VERBOSITY default
DROP FUNCTION handlers.h(jobs.job);
\set VERBOSITY terse
RESET ROLE;
SELECT try($$DROP SCHEMA handlers CASCADE$$);
SELECT try($$DROP OWNED BY handler_owner$$);
SELECT handler FROM jobs.task_type WHERE name = 'handled';
-- without a handler, the function may go
SELECT handler FROM jobs.register_task_type('handled', NULL);
DROP SCHEMA handlers CASCADE;
DROP ROLE handler_owner;
DELETE FROM jobs.task_type WHERE name = 'handled';
-- users may add trigger sources
INSERT INTO jobs.trigger_source VALUES ('carrier_pigeon', 'Carrier Pigeon');
SELECT trigger_source FROM jobs.enqueue('index', trigger_source => 'carrier_pigeon');

-- register_task_type updates in place
SELECT name, queue, priority FROM jobs.register_task_type('sanity_check', queue => 'maintenance', priority => 3);
SELECT count(*) FROM jobs.task_type WHERE name = 'sanity_check';

-- A Celery-style run: publish -> prerun -> success
SELECT status FROM jobs.enqueue('index', '{"document_id": 9}', 'folder_consume', task_id => 'c-ok');
SELECT status, attempts FROM jobs.start('c-ok');
SELECT status, attempts FROM jobs.start('c-ok');          -- a duplicate prerun changes nothing
SELECT status, result FROM jobs.succeed('c-ok', '{"document_id": 9, "reason": "done"}');
-- publish -> prerun -> failure, with an oversized traceback
SELECT status FROM jobs.enqueue('index', task_id => 'c-fail');
SELECT status FROM jobs.start('c-fail');
SELECT status, result->>'error_type' AS type, result->>'error_message' AS msg,
       length(result->>'traceback') AS tb_len, jsonb_typeof(result) AS kind
FROM jobs.fail('c-fail', 'disk full', 'OSError', repeat('frame\n', 2000));
-- failure without type or traceback keeps the three keys
SELECT result FROM jobs.fail((jobs.enqueue('index', task_id => 'c-fail2')).task_id, 'no start');
-- revocation of a pending and of a started job
SELECT status, date_started IS NULL AS never_started, date_done IS NOT NULL AS done
FROM jobs.revoke((jobs.enqueue('index', task_id => 'c-rev1')).task_id);
SELECT status FROM jobs.start((jobs.enqueue('index', task_id => 'c-rev2')).task_id);
SELECT status, date_started IS NOT NULL AS started FROM jobs.revoke('c-rev2');

-- enqueue_many: one statement, one job per element, in order
SELECT task_type, input->>'n' AS n, trigger_source
FROM jobs.enqueue_many('index', '[{"n": 1}, {"n": 2}, {"n": 3}]', 'system') ORDER BY id;
SELECT count(*) FROM jobs.enqueue_many('index', '[]');
SELECT count(*) FROM jobs.enqueue_many('metrics', '[{}, {}]');
SELECT try($$SELECT jobs.enqueue_many('index', '{"n": 1}')$$);
SELECT try($$SELECT jobs.enqueue_many('index', NULL)$$);
SELECT try($$SELECT jobs.enqueue_many('index', '[{"n": 1}, 5]')$$);
SELECT count(*) FROM jobs.job WHERE input ? 'n';

-- enqueue_many: the checks of the lifecycle trigger apply to every element
SELECT try($$SELECT jobs.enqueue_many('index', '5')$$);
SELECT try($$SELECT jobs.enqueue_many('index', '"text"')$$);
SELECT try($$SELECT jobs.enqueue_many('unknown_type', '[{}]')$$);
SELECT try($$SELECT jobs.enqueue_many('index', '[{}]', 'no_such_source')$$);
SELECT try($$SELECT jobs.enqueue_many('index', '[{}]', priority => 9)$$);
SELECT try($$SELECT jobs.enqueue_many('index', '[{}, {}]', priority => 100000)$$);
BEGIN;
SELECT task_type, queue, input, priority, run_at, trigger_source, owner = current_user AS mine
FROM jobs.enqueue_many('index', '[{"m": 2}, {"m": 1}]', priority => 3, run_at => '2030-01-01 00:00+00');
-- generated task ids: time-ordered (version 7) UUIDs, distinct
SELECT count(DISTINCT task_id) AS distinct_ids,
       bool_and(task_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$') AS uuid_v7
FROM jobs.enqueue_many('index', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 200)));
ROLLBACK;
-- a read-only transaction cannot enqueue (PostgREST: 405)
BEGIN READ ONLY;
SELECT try($$SELECT jobs.enqueue('index')$$);
SELECT try($$SELECT count(*) FROM jobs.enqueue_many('index', '[{}]')$$);
ROLLBACK;

-- The registry is cached per backend: a change is seen by the next
-- statement, in the same transaction too, and a rollback undoes it.
BEGIN;
SELECT queue, priority FROM jobs.enqueue('sanity_check');
SELECT queue FROM jobs.register_task_type('sanity_check', queue => 'elsewhere', priority => 0);
SELECT queue, priority FROM jobs.enqueue('sanity_check');
SELECT count(*) FROM jobs.enqueue_many('sanity_check', '[{}]', 'carrier_pigeon');
DELETE FROM jobs.trigger_source WHERE name = 'carrier_pigeon';
SELECT try($$SELECT jobs.enqueue('sanity_check', trigger_source => 'carrier_pigeon')$$);
UPDATE jobs.task_type SET tracked = false WHERE name = 'sanity_check';
SELECT jobs.enqueue('sanity_check') IS NULL AS ignored;
-- also when the change bypasses ordinary triggers (as logical replication does)
SET LOCAL session_replication_role = replica;
UPDATE jobs.task_type SET tracked = true, queue = 'replicated' WHERE name = 'sanity_check';
SET LOCAL session_replication_role = origin;
SELECT queue FROM jobs.enqueue('sanity_check');
ROLLBACK;
BEGIN;
SELECT queue, priority, trigger_source FROM jobs.enqueue('sanity_check', trigger_source => 'carrier_pigeon');
ROLLBACK;

-- job_hot_dedup serves the dedup lookup, job_hot_type_next the max_pending
-- count (with pending jobs of another type in the same queue, analyzed, so
-- that the plan does not depend on what earlier tests left in the table)
BEGIN;
SELECT count(*) FROM jobs.enqueue_many('sanity_check', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 500))) \g /dev/null
ANALYZE jobs.job_hot;
SET LOCAL enable_seqscan = off;
SET LOCAL enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT task_id FROM jobs.job_hot WHERE task_type = 'x' AND dedup_key = 'k';
EXPLAIN (COSTS OFF) SELECT 1 FROM jobs.job_hot WHERE task_type = 'x' AND status = 'pending' LIMIT 3;
ROLLBACK;

-- task ids are unique, in flight and finished
SELECT try($$SELECT jobs.enqueue('index', task_id => 'celery-1')$$);
SELECT try($$SELECT jobs.enqueue('index', task_id => 'c-ok')$$);

-- dedup: one in-flight job per (task type, key); free again once finished
SELECT status FROM jobs.enqueue('index', dedup_key => '/in/a.pdf', task_id => 'd1');
SELECT try($$SELECT jobs.enqueue('index', dedup_key => '/in/a.pdf')$$);
SELECT status FROM jobs.enqueue('sanity_check', dedup_key => '/in/a.pdf', task_id => 'd-other-type');
SELECT status FROM jobs.start('d1');
SELECT try($$SELECT jobs.enqueue('index', dedup_key => '/in/a.pdf')$$);
SELECT status FROM jobs.succeed('d1');
SELECT status FROM jobs.enqueue('index', dedup_key => '/in/a.pdf', task_id => 'd2');

-- backpressure: at most max_pending pending jobs; nothing partial is stored
SELECT status FROM jobs.enqueue('thumb', task_id => 'b1');
SELECT status FROM jobs.enqueue('thumb', task_id => 'b2');
SELECT try($$SELECT jobs.enqueue('thumb', task_id => 'b3')$$);
SELECT try($$SELECT count(*) FROM jobs.enqueue_many('thumb', '[{}, {}]')$$);
SELECT count(*) FROM jobs.job WHERE task_type = 'thumb';
SELECT status FROM jobs.start('b1');                      -- a started job leaves room
SELECT status FROM jobs.enqueue('thumb', task_id => 'b3');

--
-- Roles: visibility and who may act for whom
--
CREATE ROLE alice NOLOGIN;
CREATE ROLE bob NOLOGIN;
CREATE ROLE team NOLOGIN;
GRANT team TO alice;
CREATE ROLE boss NOLOGIN IN ROLE jobs_admin;

SELECT (jobs.enqueue('sanity_check', owner => 'alice', task_id => 'a1')).task_id;
SELECT (jobs.enqueue('sanity_check', owner => 'bob', task_id => 'b-1')).task_id;
SELECT (jobs.enqueue('sanity_check', owner => 'team', task_id => 't-1')).task_id;
SELECT (jobs.enqueue('sanity_check', owner => NULL, task_id => 'sys-1')).task_id;

SET ROLE alice;
-- alice sees her jobs, her team's and unowned ones; never bob's
SELECT task_id, owner FROM jobs.job WHERE task_id IN ('a1', 'b-1', 't-1', 'sys-1') ORDER BY task_id;
SELECT try($$SELECT jobs.start('b-1')$$);                 -- invisible: PT404
SELECT try($$SELECT jobs.fail('b-1', 'sabotage')$$);
SELECT try($$SELECT jobs.start('sys-1')$$);               -- visible, but not hers
SELECT status FROM jobs.start('a1');
SELECT status FROM jobs.start('t-1');
-- she cannot plant jobs in someone else's name, or unowned ones
SELECT try($$SELECT jobs.enqueue('sanity_check', owner => 'bob')$$);
SELECT try($$SELECT jobs.enqueue('sanity_check', owner => NULL)$$);
SELECT try($$INSERT INTO jobs.job (task_type, owner) VALUES ('sanity_check', 'bob')$$);
SELECT try($$SELECT count(*) FROM jobs.enqueue_many('sanity_check', '[{}]', owner => 'bob')$$);
SELECT try($$SELECT count(*) FROM jobs.enqueue_many('sanity_check', '[{}]', owner => NULL)$$);
SELECT try($$SELECT count(*) FROM jobs.enqueue_many('sanity_check', '[{}]', 'scheduled')$$);
SELECT owner FROM jobs.enqueue('sanity_check', owner => 'team', task_id => 't-2');
SELECT owner FROM jobs.enqueue('sanity_check', task_id => 'a2');
-- no changes behind the API's back either
UPDATE jobs.job SET status = 'revoked' WHERE task_id = 'b-1';
SELECT try($$UPDATE jobs.job SET owner = 'bob' WHERE task_id = 'a2'$$);
SELECT try($$UPDATE jobs.job SET acknowledged = true WHERE task_id = 'a2'$$);
SELECT try($$DELETE FROM jobs.job WHERE task_id = 'a2'$$);
SELECT try($$SELECT jobs.register_task_type('evil')$$);
SELECT try($$INSERT INTO jobs.trigger_source VALUES ('evil', 'Evil')$$);
SELECT try($$SELECT count(*) FROM jobs.job_hot$$);
RESET ROLE;

SET ROLE bob;
SELECT task_id FROM jobs.job WHERE task_id IN ('a1', 'a2', 'b-1', 't-1', 't-2', 'sys-1') ORDER BY task_id;
SELECT try($$SELECT jobs.succeed('a1')$$);
RESET ROLE;

-- admins see and manage everything
SET ROLE boss;
SELECT count(*) FILTER (WHERE owner IS NULL) AS unowned, count(*) FILTER (WHERE owner = 'bob') AS bobs
FROM jobs.job WHERE task_id IN ('a1', 'a2', 'b-1', 't-1', 't-2', 'sys-1');
SELECT status FROM jobs.start('sys-1');
SELECT status FROM jobs.succeed('sys-1');
SELECT owner FROM jobs.enqueue('sanity_check', owner => 'bob', task_id => 'b-2');
SELECT owner IS NULL AS unowned FROM jobs.enqueue('sanity_check', owner => NULL, task_id => 'sys-2');
UPDATE jobs.job SET acknowledged = true WHERE task_id = 'sys-1';
SELECT name FROM jobs.register_task_type('boss_type');
RESET ROLE;

-- The API and the tables as granted: nothing more for PUBLIC.
SELECT p.oid::regprocedure AS function_not_public
FROM pg_proc p WHERE p.pronamespace = 'jobs'::regnamespace
  AND NOT has_function_privilege('public', p.oid, 'EXECUTE')
ORDER BY 1;
SELECT has_table_privilege('public', 'jobs.job_hot', 'SELECT') AS hot_readable,
       has_column_privilege('public', 'jobs.job', 'acknowledged', 'UPDATE') AS can_ack,
       has_column_privilege('public', 'jobs.job', 'owner', 'UPDATE') AS can_reown,
       has_table_privilege('public', 'jobs.task_type', 'INSERT') AS can_register;
-- every function pins its search_path
SELECT p.oid::regprocedure AS unpinned
FROM pg_proc p WHERE p.pronamespace = 'jobs'::regnamespace AND p.prolang <> 13
  AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%');
