--
-- The monitoring API: v10 and v9 task lists, version negotiation, status
-- counts, active, summary (and its window), run, acknowledge, and who sees
-- what through each of them.
--
-- A fresh install, so that ids and counts do not depend on earlier files.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_jobs CASCADE;
RESET client_min_messages;
CREATE EXTENSION pg_jobs;
\set VERBOSITY terse
-- try(sql): run a statement, return "SQLSTATE: message" of its error, or "ok".
CREATE OR REPLACE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
-- backdate(task id, created ago, wait, run): move a job's dates into the
-- past, keeping the wait (created -> started) and run (started -> done)
-- times given.  The lifecycle trigger keeps dates immutable, so this skips
-- triggers (session_replication_role = replica, superuser only).
CREATE FUNCTION backdate(tid text, ago interval, wait interval DEFAULT '0', run interval DEFAULT '0')
RETURNS void LANGUAGE sql SET session_replication_role = replica AS $$
    UPDATE jobs.job SET date_created = now() - ago,
        date_started = CASE WHEN date_started IS NOT NULL THEN now() - ago + wait END,
        date_done = CASE WHEN date_done IS NOT NULL THEN now() - ago + wait + run END
    WHERE task_id = tid;
$$;
-- ids(list): the task ids of a v10 page, in order
CREATE FUNCTION ids(page jsonb) RETURNS text LANGUAGE sql AS $$
    SELECT string_agg(r->>'task_id', ',' ORDER BY n)
    FROM jsonb_array_elements(page->'results') WITH ORDINALITY AS e(r, n);
$$;

CREATE ROLE mon_alice NOLOGIN;
CREATE ROLE mon_bob NOLOGIN;
CREATE ROLE mon_watch NOLOGIN IN ROLE jobs_monitor;
CREATE ROLE mon_pgmon NOLOGIN IN ROLE pg_monitor;
CREATE ROLE mon_boss NOLOGIN IN ROLE jobs_admin;

SELECT count(*) FROM (
    SELECT jobs.register_task_type('consume_file', legacy_name => 'consume_file')
    UNION ALL SELECT jobs.register_task_type('sanity_check', legacy_name => 'check_sanity',
                                             runnable => true, run_input => '{"raise_on_error": false}')
    UNION ALL SELECT jobs.register_task_type('llm_index', display_name => 'LLM Index',
                                             legacy_name => 'llmindex_update')
    UNION ALL SELECT jobs.register_task_type('train_classifier')
    UNION ALL SELECT jobs.register_task_type('heartbeat', tracked => false, runnable => true)
) r;

-- The jobs: alice's, bob's, unowned (system) ones, and two from 400 days ago.
SELECT count(*) FROM (
    SELECT jobs.enqueue('consume_file', '{"filename": "Invoice-2024.pdf"}', 'email_consume', 'mon_alice', task_id => 'c1')
    UNION ALL SELECT jobs.enqueue('consume_file', '{"filename": "scan.pdf"}', 'folder_consume', 'mon_alice', task_id => 'c2')
    UNION ALL SELECT jobs.enqueue('consume_file', '{"filename": "bob.docx"}', 'api_upload', 'mon_bob', task_id => 'c3')
    UNION ALL SELECT jobs.enqueue('sanity_check', '{}', 'scheduled', NULL, task_id => 's1')
    UNION ALL SELECT jobs.enqueue('sanity_check', '{}', 'scheduled', NULL, task_id => 's2')
    UNION ALL SELECT jobs.enqueue('llm_index', '{}', 'manual', 'mon_alice', task_id => 'l1')
    UNION ALL SELECT jobs.enqueue('llm_index', '{}', 'system', 'mon_bob', task_id => 'l2')
    UNION ALL SELECT jobs.enqueue('train_classifier', '{}', 'web_ui', NULL, task_id => 'old1')
    UNION ALL SELECT jobs.enqueue('train_classifier', '{}', 'web_ui', NULL, task_id => 'old2')
) j;
SELECT task_id, status FROM (
    SELECT (jobs.start(t)).* FROM unnest('{c1,c2,c3,s1,l1,old1}'::text[]) t) s ORDER BY id;
SELECT task_id, status FROM jobs.succeed('c1', '{"document_id": 11}');
SELECT task_id, status FROM jobs.succeed('c2', '{"duplicate_of": 11, "reason": null}');
SELECT task_id, status FROM jobs.fail('c3', 'Unsupported file type .docx', 'UnsupportedTypeError');
SELECT task_id, status FROM jobs.succeed('s1', '{"reason": "No issues detected"}');
SELECT task_id, status FROM jobs.revoke('l2');
SELECT task_id, status FROM jobs.succeed('old1');
SELECT count(*) FROM (
    SELECT backdate('c1', '3 days', '5 seconds', '20 seconds')
    UNION ALL SELECT backdate('c2', '2 days 1 hour', '1 second', '2 seconds')
    UNION ALL SELECT backdate('c3', '1 day 1 minute', '3 seconds', '10 seconds')
    UNION ALL SELECT backdate('s1', '5 hours', '10 seconds', '60 seconds')
    UNION ALL SELECT backdate('s2', '1 hour')
    UNION ALL SELECT backdate('l1', '30 minutes', '2 seconds')
    UNION ALL SELECT backdate('l2', '20 minutes', '0', '7 seconds')
    UNION ALL SELECT backdate('old1', '400 days', '1 second', '1 second')
    UNION ALL SELECT backdate('old2', '400 days')
) b;
SELECT task_id, status, date_done IS NOT NULL AS done,
       jobs.wait_time_seconds(j) AS wait, jobs.duration_seconds(j) AS run
FROM jobs.job j ORDER BY date_created DESC;

--
-- v10 list
--
-- the shape of one result (every field of the contract), c1 as alice sees it
SET ROLE mon_alice;
SELECT jsonb_pretty(r - '{date_created,date_started,date_done}'::text[]) AS c1,
       jsonb_typeof(r->'date_created') AS created, jsonb_typeof(r->'date_started') AS started,
       jsonb_typeof(r->'date_done') AS done
FROM jsonb_array_elements((jobs.tasks(task_id => 'c1'))->'results') r;
-- newest first; alice sees hers and the unowned ones, never bob's
SELECT p->'count' AS count, p->'next' AS next, p->'previous' AS previous, ids(p) FROM jobs.tasks() p;
RESET ROLE;
SET ROLE mon_bob;
SELECT p->'count' AS count, ids(p) FROM jobs.tasks() p;
RESET ROLE;
-- admins see every job
SET ROLE mon_boss;
SELECT p->'count' AS count, ids(p) FROM jobs.tasks() p;
RESET ROLE;
-- the table itself, the view and the v9 list agree (RLS applies on every path)
SET ROLE mon_alice;
SELECT (SELECT string_agg(task_id, ',' ORDER BY task_id) FROM jobs.job) AS job_table,
       (SELECT string_agg(task_id, ',' ORDER BY task_id) FROM jobs.task_v10) AS v10_view,
       (SELECT string_agg(task_id, ',' ORDER BY task_id) FROM jobs.tasks_v9()) AS v9;
RESET ROLE;

-- pagination: page_size, next, previous, out of range
SELECT p->'count' AS count, p->'next' AS next, p->'previous' AS previous, ids(p)
FROM jobs.tasks(page_size => 4) p;
SELECT p->'count' AS count, p->'next' AS next, p->'previous' AS previous, ids(p)
FROM jobs.tasks(page => 2, page_size => 4) p;
SELECT p->'count' AS count, p->'next' AS next, p->'previous' AS previous, ids(p)
FROM jobs.tasks(page => 3, page_size => 4) p;
SELECT try($$SELECT jobs.tasks(page => 4, page_size => 4)$$);
SELECT try($$SELECT jobs.tasks(page => 0)$$);
SELECT try($$SELECT jobs.tasks(page => NULL)$$);
SELECT try($$SELECT jobs.tasks(page_size => 0)$$);
SELECT try($$SELECT jobs.tasks(page_size => -5)$$);
-- page 1 of nothing is an empty page, not an error
SELECT jobs.tasks(task_id => 'no-such-task');

-- filters: lists are "any of"; empty lists and blank searches filter nothing
SELECT ids(jobs.tasks(task_type => '{llm_index,sanity_check}'));
SELECT ids(jobs.tasks(task_type => '{}'));
SELECT ids(jobs.tasks(status => '{failure,revoked}'));
SELECT ids(jobs.tasks(status => '{SUCCESS}'));
SELECT try($$SELECT jobs.tasks(status => '{finished}')$$);
SELECT try($$SELECT jobs.tasks(status => '{success,NULL}')$$);
SELECT ids(jobs.tasks(trigger_source => '{scheduled,email_consume}'));
SELECT ids(jobs.tasks(is_complete => true));
SELECT ids(jobs.tasks(is_complete => false));
SELECT ids(jobs.tasks(is_complete => false, status => '{success,started}'));
SELECT ids(jobs.tasks(task_id => 'c2'));
SELECT ids(jobs.tasks(owner => 'mon_bob'));
SELECT ids(jobs.tasks(date_created_after => now() - interval '2 days 2 hours'));
SELECT ids(jobs.tasks(date_created_before => now() - interval '1 day', date_created_after => now() - interval '10 days'));
-- name: the input's filename, or a task type / trigger source label, case-insensitive
SELECT ids(jobs.tasks(name => 'sanity'));
SELECT ids(jobs.tasks(name => 'EMAIL'));
SELECT ids(jobs.tasks(name => 'invoice'));
SELECT ids(jobs.tasks(name => 'llm index'));
SELECT ids(jobs.tasks(name => '%'));
SELECT jobs.tasks(name => '  ')->'count' AS blank_name;
-- result: reason or error_message, a document number, or "duplicate"
SELECT ids(jobs.tasks(result => 'no issues'));
SELECT ids(jobs.tasks(result => 'unsupported'));
SELECT ids(jobs.tasks(result => '11'));
SELECT ids(jobs.tasks(result => 'Duplicate'));
SELECT ids(jobs.tasks(result => '12'));
SELECT jobs.tasks(result => '')->'count' AS empty_result;
-- acknowledged
SELECT ids(jobs.tasks(acknowledged => true));

-- ordering: six columns, "-" for descending, nulls last, anything else 22023
SELECT o, ids(jobs.tasks(ordering => o))
FROM unnest('{date_created,-date_created,date_done,-date_done,status,-status,task_type,-task_type,duration_seconds,-duration_seconds,wait_time_seconds,-wait_time_seconds}'::text[]) o;
SELECT try($$SELECT jobs.tasks(ordering => 'owner')$$);
SELECT try($$SELECT jobs.tasks(ordering => '-')$$);
SELECT try($$SELECT jobs.tasks(ordering => 'date_created; DROP TABLE jobs.job')$$);

-- related_document_ids: [document_id], else [duplicate_of], else []
SELECT r->>'task_id' AS task_id, r->'related_document_ids' AS related
FROM jsonb_array_elements(jobs.tasks(ordering => 'date_created')->'results') r;

--
-- v9 list
--
SELECT id, task_id, task_name, task_file_name, type, status, result, acknowledged,
       related_document, duplicate_documents, owner, date_created IS NOT NULL AS created,
       date_done IS NOT NULL AS done
FROM jobs.tasks_v9();
SELECT task_id FROM jobs.tasks_v9(task_name => 'check_sanity');
SELECT task_id FROM jobs.tasks_v9(task_name => 'llmindex_update');
SELECT task_id FROM jobs.tasks_v9(task_name => 'llm_index');           -- v9 knows the legacy name only
SELECT task_id FROM jobs.tasks_v9(type => 'auto_task');
SELECT task_id FROM jobs.tasks_v9(type => 'scheduled_task');
SELECT task_id FROM jobs.tasks_v9(type => 'manual_task');
SELECT task_id FROM jobs.tasks_v9(type => 'scheduled_task', task_id => 's2');
SELECT try($$SELECT jobs.tasks_v9(type => 'cron_task')$$);
-- integers and a JSON array, as v9 clients expect
SELECT pg_typeof(id) AS id, pg_typeof(related_document) AS related, pg_typeof(duplicate_documents) AS dups
FROM jobs.tasks_v9(task_id => 'c2');

-- duplicate_documents: looked up in the configured relation, as the caller
CREATE TABLE docs (id integer PRIMARY KEY, title text NOT NULL, deleted_at timestamptz, secret text);
INSERT INTO docs VALUES (11, 'Invoice 2024', NULL, 'x'), (12, 'Old letter', '2020-01-01 00:00+00', 'y');
SELECT jobs.set_documents_relation('docs');
SELECT value FROM jobs.setting;
SET ROLE mon_alice;
SELECT duplicate_documents FROM jobs.tasks_v9(task_id => 'c2');      -- no grant: []
RESET ROLE;
GRANT SELECT (id, title) ON docs TO mon_alice;
SET ROLE mon_alice;
SELECT duplicate_documents FROM jobs.tasks_v9(task_id => 'c2');      -- no deleted_at grant: null
RESET ROLE;
GRANT SELECT ON docs TO mon_alice;
ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
CREATE POLICY docs_alice ON docs FOR SELECT TO mon_alice USING (id <> 11);
SET ROLE mon_alice;
SELECT duplicate_documents FROM jobs.tasks_v9(task_id => 'c2');      -- RLS hides it: []
RESET ROLE;
DROP POLICY docs_alice ON docs;
CREATE POLICY docs_alice ON docs FOR SELECT TO mon_alice USING (true);
SET ROLE mon_alice;
SELECT duplicate_documents FROM jobs.tasks_v9(task_id => 'c2');
RESET ROLE;
-- admins always see it, grants or not
SET ROLE mon_boss;
SELECT has_table_privilege('docs', 'SELECT') AS boss_may_read, duplicate_documents
FROM jobs.tasks_v9(task_id => 'c2');
RESET ROLE;
-- a view without deleted_at
CREATE VIEW doc_titles AS SELECT id, title FROM docs;
SELECT jobs.set_documents_relation('doc_titles');
SELECT duplicate_documents FROM jobs.tasks_v9(task_id => 'c2');
-- the owner-rights lookup of admins is for plain tables only (a view could
-- run its owner's code); through a view admins read with their own rights
SET ROLE mon_boss;
SELECT duplicate_documents FROM jobs.tasks_v9(task_id => 'c2');
RESET ROLE;
GRANT SELECT ON doc_titles TO mon_boss;
SET ROLE mon_boss;
SELECT duplicate_documents FROM jobs.tasks_v9(task_id => 'c2');
RESET ROLE;
-- bad relations and callers
CREATE TABLE not_docs (id text, name text);
SELECT try($$SELECT jobs.set_documents_relation('not_docs')$$);
SELECT try($$SELECT jobs.set_documents_relation('no_such_table')$$);
SELECT try($$SELECT jobs.set_documents_relation('docs_pkey')$$);
CREATE TYPE mood AS ENUM ('fine');
CREATE TABLE odd_docs (id integer, title mood);
SELECT try($$SELECT jobs.set_documents_relation('odd_docs')$$);
SET ROLE mon_alice;
SELECT try($$SELECT jobs.set_documents_relation('docs')$$);
RESET ROLE;
SET ROLE mon_boss;
SELECT try($$SELECT jobs.set_documents_relation('docs')$$);         -- cannot read it himself
RESET ROLE;
SELECT jobs.set_documents_relation('docs');
-- unset: no lookups at all
SELECT jobs.set_documents_relation(NULL) IS NULL AS unset, (SELECT count(*) FROM jobs.setting) AS settings;
SELECT duplicate_documents FROM jobs.tasks_v9(task_id => 'c2');
SELECT jobs.set_documents_relation('docs');

--
-- Version negotiation: Accept: application/json; version=9 through PostgREST
--
SELECT set_config('request.headers', '{"accept": "application/json; version=9"}', false);
SELECT jsonb_typeof(jobs.tasks()) AS kind, jsonb_array_length(jobs.tasks()) AS n,
       jobs.tasks()->0->>'task_name' AS first_name, jobs.tasks()->0->>'status' AS first_status;
SELECT jobs.tasks(task_id => 'c1')->0->>'result' AS c1_result,
       jsonb_array_length(jobs.tasks(acknowledged => true)) AS acknowledged;
SELECT set_config('request.headers', '{"accept": "application/json;version=\"8\""}', false);
SELECT jsonb_typeof(jobs.tasks()) AS v8;
SELECT set_config('request.headers', '{"accept": "application/json; version=10"}', false);
SELECT jsonb_typeof(jobs.tasks()) AS v10, jobs.tasks()->'count' AS count;
SELECT set_config('request.headers', '{"accept": "application/json"}', false);
SELECT jsonb_typeof(jobs.tasks()) AS none;
SELECT set_config('request.headers', '{"accept": "application/json; version=11"}', false);
SELECT try($$SELECT jobs.tasks()$$);
SELECT set_config('request.headers', '{"accept": "application/json; version=nine"}', false);
SELECT try($$SELECT jobs.tasks()$$);
SELECT set_config('request.headers', '', false);
SELECT jsonb_typeof(jobs.tasks()) AS no_headers;

--
-- Status counts: sections by status, the other filters apply
--
SELECT jobs.status_counts();
SELECT jobs.status_counts(task_type => '{consume_file}');
SELECT jobs.status_counts(status => '{success}', is_complete => false);   -- accepted, ignored
SELECT jobs.status_counts(status => '{bogus}');                            -- ignored, so no error
SELECT jobs.status_counts(name => 'sanity', owner => NULL);
SELECT jobs.status_counts(date_created_after => now() - interval '1 day 1 hour');
SET ROLE mon_alice;
SELECT jobs.status_counts();
RESET ROLE;

--
-- Active: pending and started only, newest first
--
SELECT task_id, status, task_type_display FROM jobs.active();
SET ROLE mon_bob;
SELECT task_id, status FROM jobs.active();
RESET ROLE;

--
-- Summary: per task type, over the jobs created in the window
--
SELECT task_type, total_count, pending_count, success_count, failure_count,
       avg_duration_seconds, avg_wait_time_seconds, last_run IS NOT NULL AS ran,
       last_success IS NOT NULL AS succeeded, last_failure IS NOT NULL AS failed
FROM jobs.summary();
-- last_* are the latest start, success and failure
SELECT s.last_run = max(j.date_started) AS last_run, s.last_success = (SELECT date_done FROM jobs.job WHERE task_id = 'c1') AS last_success,
       s.last_failure = (SELECT max(date_done) FROM jobs.job WHERE task_id IN ('c2', 'c3')) AS last_failure
FROM jobs.summary() s JOIN jobs.job j ON j.task_type = s.task_type
WHERE s.task_type = 'consume_file' GROUP BY s.last_run, s.last_success, s.last_failure;
-- the window: days clamps to [1, 365]; 400-day-old jobs never appear
SELECT task_type, total_count FROM jobs.summary(10000);
SELECT task_type, total_count FROM jobs.summary(1);
SELECT task_type, total_count FROM jobs.summary(0);
SELECT task_type, total_count FROM jobs.summary(-3);
SELECT task_type, total_count FROM jobs.summary(2);
SELECT try($$SELECT * FROM jobs.summary(NULL)$$);
SELECT try($$SELECT * FROM jobs.summary('many')$$);
-- global statistics for monitors; others get what they can see
SET ROLE mon_alice;
SELECT task_type, total_count, success_count, failure_count FROM jobs.summary();
RESET ROLE;
SET ROLE mon_bob;
SELECT task_type, total_count, pending_count, failure_count FROM jobs.summary();
RESET ROLE;
SET ROLE mon_watch;
SELECT count(*) AS jobs_visible FROM jobs.job;
SELECT task_type, total_count FROM jobs.summary();
RESET ROLE;
SET ROLE mon_pgmon;
SELECT sum(total_count) AS total FROM jobs.summary();
RESET ROLE;
SET ROLE mon_boss;
SELECT sum(total_count) AS total FROM jobs.summary();
RESET ROLE;
-- and only they may call the global helper
SET ROLE mon_alice;
SELECT try($$SELECT * FROM jobs._summary_global(30)$$);
SELECT try($$SELECT jobs._document_for_admin(11)$$);
RESET ROLE;

--
-- Run: admins only, allowlisted types only, input preset, owned by the caller
--
SET ROLE mon_alice;
SELECT try($$SELECT jobs.run('sanity_check')$$);
RESET ROLE;
SET ROLE mon_boss;
SELECT jsonb_typeof(jobs.run('sanity_check')->'task_id') AS task_id;
SELECT try($$SELECT jobs.run('train_classifier')$$);
SELECT try($$SELECT jobs.run('no_such_type')$$);
SELECT try($$SELECT jobs.run('heartbeat')$$);
SELECT try($$SELECT jobs.run(NULL)$$);
RESET ROLE;
SELECT task_type, status, trigger_source, input, owner
FROM jobs.job WHERE task_type = 'sanity_check' AND owner = 'mon_boss';
SELECT (SELECT task_id FROM jobs.job WHERE owner = 'mon_boss') = jobs.tasks(owner => 'mon_boss')->'results'->0->>'task_id' AS same_task;

--
-- Acknowledge: the change permission, exactly one of tasks/all, ids visible and listed once
--
SET ROLE mon_alice;
SELECT try($$SELECT jobs.acknowledge('{1}')$$);
RESET ROLE;
GRANT UPDATE (acknowledged) ON jobs.job TO mon_alice;
SET ROLE mon_alice;
SELECT try($$SELECT jobs.acknowledge()$$);
SELECT try($$SELECT jobs.acknowledge('{1}', "all" => true)$$);
SELECT try($$SELECT jobs.acknowledge('{}')$$);
SELECT try($$SELECT jobs.acknowledge('{1,NULL}')$$);
SELECT try($$SELECT jobs.acknowledge('{1,2,1}')$$);
-- c3 is bob's: invisible, so an error and nothing changed
SELECT try(format('SELECT jobs.acknowledge(%L)', ARRAY[(SELECT id FROM jobs.job WHERE task_id = 'c1'), 3, 999]));
SELECT count(*) AS acknowledged FROM jobs.job WHERE acknowledged;
-- her own job and a visible unowned finished one (s1)
SELECT jobs.acknowledge(ARRAY(SELECT id FROM jobs.job WHERE task_id IN ('c1', 's1')));
SELECT jobs.acknowledge(ARRAY(SELECT id FROM jobs.job WHERE task_id IN ('c1', 's1')));   -- already: 0
-- all: every visible unacknowledged job, unowned in-flight ones too (paperless' dismiss all)
SELECT jobs.acknowledge("all" => true);
SELECT task_id, acknowledged FROM jobs.job ORDER BY id;
SELECT ids(jobs.tasks(acknowledged => false));
RESET ROLE;
SELECT task_id, owner FROM jobs.job WHERE NOT acknowledged AND owner IS DISTINCT FROM 'mon_boss' ORDER BY id;
-- a plain role still has no direct way around it
SET ROLE mon_bob;
SELECT try($$UPDATE jobs.job SET acknowledged = true$$);
RESET ROLE;
-- the policy lets nothing but acknowledged change on a visible unowned job, finished or in flight
SET ROLE mon_alice;
SELECT try($$UPDATE jobs.job SET status = 'pending' WHERE task_id = 's1'$$);
SELECT try($$UPDATE jobs.job SET result = '{"forged": true}' WHERE task_id = 's1'$$);
SELECT try($$UPDATE jobs.job SET status = 'revoked' WHERE task_id = 's2'$$);
RESET ROLE;
SELECT task_id, status, result FROM jobs.job WHERE task_id IN ('s1', 's2') ORDER BY task_id;
SET ROLE mon_boss;
SELECT jobs.acknowledge("all" => true);
RESET ROLE;

--
-- Page size cap and the active limit
--
SELECT count(*) FROM jobs.enqueue_many('train_classifier', (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, 120) g), owner => NULL);
SELECT jsonb_array_length(p->'results') AS results, p->'next' AS next, p->'count' AS count
FROM jobs.tasks(page_size => 500, task_type => '{train_classifier}') p;
SELECT jsonb_array_length(p->'results') AS results, p->'next' AS next, p->'previous' AS previous
FROM jobs.tasks(page => 2, page_size => 500, task_type => '{train_classifier}') p;
SELECT count(*) AS active FROM jobs.active();

--
-- How the API is declared: reads STABLE (PostgREST GET), writes VOLATILE
-- (POST), invoker rights except the two guarded helpers.
--
SELECT p.oid::regprocedure AS function, p.provolatile AS volatility, p.prosecdef AS definer
FROM pg_proc p WHERE p.pronamespace = 'jobs'::regnamespace
  AND p.proname IN ('tasks', 'tasks_v9', 'summary', 'status_counts', 'active', 'run', 'acknowledge',
                    'set_documents_relation', '_summary_global', '_document_for_admin')
ORDER BY p.proname;
SELECT p.oid::regprocedure AS definer_function,
       (SELECT string_agg(a.grantee::regrole::text, ' ' ORDER BY a.grantee::regrole::text)
        FROM aclexplode(p.proacl) a WHERE a.grantee <> p.proowner) AS executable_by
FROM pg_proc p WHERE p.pronamespace = 'jobs'::regnamespace AND p.prosecdef ORDER BY 1;
SELECT c.relname, c.reloptions FROM pg_class c
WHERE c.relnamespace = 'jobs'::regnamespace AND c.relkind = 'v' ORDER BY 1;
