-- The main job, shown on a throw-away cluster (run by test/demo).
\set ON_ERROR_STOP on
\pset footer off
CREATE EXTENSION IF NOT EXISTS pg_cron;
CREATE EXTENSION pg_jobs;

\echo
\echo '== the task type registry'
\o /dev/null
SELECT (jobs.register_task_type('consume_file', display_name => 'Consume File', max_attempts => 3)).name;
SELECT (jobs.register_task_type('sanity_check', legacy_name => 'check_sanity', runnable => true,
                                 run_input => '{"raise_on_error": false}', queue => 'maintenance')).name;
SELECT (jobs.register_task_type('llm_index', display_name => 'LLM Index', legacy_name => 'llmindex_update')).name;
SELECT (jobs.register_task_type('celery_heartbeat', tracked => false)).name;
\o
SELECT name, display_name, coalesce(legacy_name, name) AS v9_name, queue, priority, tracked
FROM jobs.task_type ORDER BY name;

\echo '== an application publishes jobs (what a Celery before_task_publish hook calls)'
SELECT task_id, task_type, trigger_source, status
FROM jobs.enqueue('consume_file', '{"filename": "invoice-2026-11.pdf"}', 'folder_consume', task_id => 'celery-1001')
UNION ALL
SELECT task_id, task_type, trigger_source, status
FROM jobs.enqueue('consume_file', '{"filename": "scan-0042.pdf"}', 'email_consume', task_id => 'celery-1002')
UNION ALL
SELECT task_id, task_type, trigger_source, status
FROM jobs.enqueue('consume_file', '{"filename": "scan-0042.pdf"}', 'web_ui', task_id => 'celery-1003')
UNION ALL
SELECT task_id, task_type, trigger_source, status
FROM jobs.enqueue('sanity_check', '{"raise_on_error": false}', 'scheduled', task_id => 'celery-1004')
UNION ALL
SELECT task_id, task_type, trigger_source, status
FROM jobs.enqueue('llm_index', task_id => 'celery-1005');
SELECT jobs.enqueue('celery_heartbeat') IS NULL AS "untracked type ignored";

\echo '== workers report progress (task_prerun, task_success, task_failure, revoke)'
SELECT pg_sleep(0.2) \g /dev/null
SELECT task_id, status, attempts FROM jobs.start('celery-1001');
SELECT task_id, status, attempts FROM jobs.start('celery-1002');
SELECT task_id, status, attempts FROM jobs.start('celery-1003');
SELECT pg_sleep(0.3) \g /dev/null
SELECT task_id, status, result FROM jobs.succeed('celery-1001', '{"document_id": 17}');
SELECT task_id, status, result FROM jobs.succeed('celery-1002', '{"document_id": 18}');
-- the same file again: a success that is a duplicate is recorded as a failure
SELECT task_id, status, result FROM jobs.succeed('celery-1003', '{"duplicate_of": 18, "reason": "It is a duplicate of scan-0042.pdf"}');
SELECT task_id, status FROM jobs.revoke('celery-1005');

\echo '== the lifecycle is enforced for every client, plain UPDATEs included'
\set ON_ERROR_STOP off
UPDATE jobs.job SET status = 'pending' WHERE task_id = 'celery-1001';
\set ON_ERROR_STOP on

\echo '== the background workers run jobs inside Postgres: SQL handlers, as the job owner'
CREATE TABLE public.document (id serial PRIMARY KEY, title text NOT NULL, pages int);
CREATE FUNCTION public.index_document(job jobs.job) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    doc_id int;
BEGIN
    RAISE NOTICE 'indexing %', job.input->>'filename';
    PERFORM jobs.progress(job.task_id, 1, 2, 'parsed');
    IF job.input->>'filename' LIKE '%.exe' THEN
        RAISE EXCEPTION 'unsupported file type: %', job.input->>'filename'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Only documents are indexed.';
    END IF;
    INSERT INTO public.document (title, pages) VALUES (job.input->>'filename', 3) RETURNING id INTO doc_id;
    PERFORM jobs.log('stored', 'info', 'indexer', jsonb_build_object('document_id', doc_id));
    RETURN jsonb_build_object('document_id', doc_id);
END $$;
\o /dev/null
SELECT jobs.register_task_type('index_document', 'public.index_document(jobs.job)',
                               display_name => 'Index Document', timeout => '30 seconds');
\o
SELECT task_id, status FROM jobs.enqueue_many('index_document',
    '[{"filename": "contract.pdf"}, {"filename": "photo.png"}, {"filename": "setup.exe"}]', 'api_upload');
SELECT pg_sleep(0.5) \g /dev/null
SELECT j.task_id, j.status, j.attempts, j.result, round(jobs.wait_time_seconds(j)::numeric * 1000, 1) AS wait_ms
FROM jobs.job j WHERE task_type = 'index_document' ORDER BY id;
SELECT id, title FROM public.document ORDER BY id;
\echo '== a failed handler: its work rolled back, its log kept (RAISE messages, jobs.log() calls, the error)'
SELECT level, source, message FROM jobs.logs((SELECT task_id FROM jobs.job WHERE input->>'filename' = 'setup.exe'));
\echo '== health: the workers and the queues'
SELECT jsonb_pretty(jobs.health() - 'running');

\echo '== the jobs table'
SELECT id, task_id, tt.display_name AS type, ts.display_name AS source,
       jobs.status_display(j.status) AS status, attempts,
       round(jobs.wait_time_seconds(j)::numeric, 2) AS wait_s,
       round(jobs.duration_seconds(j)::numeric, 2) AS run_s,
       coalesce(result->>'document_id', result->>'duplicate_of', result->>'error_message') AS result
FROM jobs.job j
JOIN jobs.task_type tt ON tt.name = j.task_type
JOIN jobs.trigger_source ts ON ts.name = j.trigger_source
ORDER BY id;

\echo '== where the rows live: the hot partition holds only unfinished jobs'
SELECT tableoid::regclass AS partition, count(*) FROM jobs.job GROUP BY 1 ORDER BY 1;

\echo '== monitoring: the v10 task list (page 1 of 2), as PostgREST serves GET /rpc/tasks'
SELECT jsonb_pretty(jsonb_set(p, '{results}', (SELECT jsonb_agg(r - '{input_data,date_created,date_started,date_done}'::text[])
                                               FROM jsonb_array_elements(p->'results') r)))
FROM jobs.tasks(page_size => 2) p;
\echo '== monitoring: status counts, active jobs, summary of the last 7 days'
SELECT jobs.status_counts();
SELECT task_id, task_type_display, status_display FROM jobs.active();
SELECT task_type, total_count, pending_count, success_count, failure_count,
       round(avg_duration_seconds::numeric, 2) AS avg_run_s, round(avg_wait_time_seconds::numeric, 2) AS avg_wait_s
FROM jobs.summary(7);
\echo '== monitoring: the legacy v9 list (Accept: application/json; version=9)'
SELECT id, task_id, task_name, type, status, result, related_document FROM jobs.tasks_v9();
\echo '== monitoring: acknowledge every job (the change permission: UPDATE on jobs.job.acknowledged)'
SELECT jobs.acknowledge("all" => true);
