--
-- The execution engine: handlers run by the background workers as the
-- job's owner, results and errors, retries, timeouts, cancel, and the
-- external worker API (claim, heartbeat, progress, leases).
--
CREATE EXTENSION IF NOT EXISTS pg_jobs;
\set VERBOSITY terse
CREATE OR REPLACE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
-- wait_done(task_id): wait (up to 30 s) until the job has finished
CREATE FUNCTION wait_done(tid text, target text DEFAULT 'finished') RETURNS text LANGUAGE plpgsql AS $$
DECLARE st jobs.status;
BEGIN
    FOR i IN 1..600 LOOP
        SELECT status INTO st FROM jobs.job WHERE task_id = tid;
        IF (target = 'finished' AND st IN ('success', 'failure', 'revoked'))
           OR st::text = target THEN
            RETURN st;
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN 'timed out waiting, status ' || st;
END $$;

-- the workers are up (the launcher connects once the database exists)
DO $$
BEGIN
    FOR i IN 1..600 LOOP
        EXIT WHEN (SELECT count(*) FROM jobs._worker_slots()) = 2;
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
SELECT count(*) AS workers FROM jobs._worker_slots();
SELECT jsonb_array_length(jobs.health()->'workers') AS workers_in_health;

CREATE TABLE effects (task_id text, note text, who name DEFAULT current_user);
GRANT INSERT, SELECT ON effects TO PUBLIC;

-- A handler: its return value becomes the result, its work commits with it.
CREATE FUNCTION h_ok(job jobs.job) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.effects (task_id, note) VALUES (job.task_id, job.input->>'note');
    RETURN jsonb_build_object('document_id', 7, 'attempt', job.attempts, 'ran_as', current_user);
END $$;
SELECT name FROM jobs.register_task_type('ok', 'h_ok(jobs.job)');
SELECT status FROM jobs.enqueue('ok', '{"note": "hello"}', task_id => 'ok-1');
SELECT wait_done('ok-1');
SELECT status, result, attempts, date_started IS NOT NULL AS started, worker LIKE 'pg_jobs/%' AS by_worker
FROM jobs.job WHERE task_id = 'ok-1';
SELECT task_id, note FROM effects WHERE task_id = 'ok-1';

-- An error: failure with the condition name, message and context; the
-- handler's work is rolled back.
CREATE FUNCTION h_err(job jobs.job) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.effects (task_id, note) VALUES (job.task_id, 'must not stay');
    RAISE EXCEPTION 'cannot read %', job.input->>'filename'
        USING ERRCODE = 'invalid_text_representation', HINT = 'Check the file.';
END $$;
SELECT name FROM jobs.register_task_type('err', 'h_err(jobs.job)');
SELECT status FROM jobs.enqueue('err', '{"filename": "x.pdf"}', task_id => 'err-1');
SELECT wait_done('err-1');
SELECT status, result->>'error_type' AS type, result->>'error_message' AS message,
       result->>'traceback' LIKE '%HINT:  Check the file.%' AS has_hint,
       result->>'traceback' LIKE '%function h_err(jobs.job) line 4 at RAISE%' AS has_context
FROM jobs.job WHERE task_id = 'err-1';
SELECT count(*) AS leftovers FROM effects WHERE task_id = 'err-1';

-- A handler that reports a duplicate: recorded as a failure.
CREATE FUNCTION h_dup(job jobs.job) RETURNS jsonb LANGUAGE sql
    RETURN '{"duplicate_of": 3, "reason": "Not consuming: duplicate"}'::jsonb;
SELECT name FROM jobs.register_task_type('dup', 'h_dup(jobs.job)');
SELECT status FROM jobs.enqueue('dup', task_id => 'dup-1');
SELECT wait_done('dup-1');
SELECT status, result FROM jobs.job WHERE task_id = 'dup-1';

-- A handler returning NULL succeeds with a NULL result.
CREATE FUNCTION h_null(job jobs.job) RETURNS jsonb LANGUAGE sql RETURN NULL::jsonb;
SELECT name FROM jobs.register_task_type('nothing', 'h_null(jobs.job)');
SELECT status FROM jobs.enqueue('nothing', task_id => 'null-1');
SELECT wait_done('null-1');
SELECT status, result IS NULL AS no_result FROM jobs.job WHERE task_id = 'null-1';

-- Handlers must have the right signature.
CREATE FUNCTION h_bad(i int) RETURNS jsonb LANGUAGE sql RETURN '{}'::jsonb;
CREATE FUNCTION h_bad2(job jobs.job) RETURNS text LANGUAGE sql RETURN '';
SELECT try($$SELECT jobs.register_task_type('bad', 'h_bad(int)')$$);
SELECT try($$SELECT jobs.register_task_type('bad', 'h_bad2(jobs.job)')$$);
SELECT try($$SELECT jobs.register_task_type('bad', 'h_ok(jobs.job)', run_as => 'no_such_role')$$);

-- Retries: attempts are counted, the last error is kept, and a later
-- attempt can succeed.
CREATE FUNCTION h_flaky(job jobs.job) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.effects (task_id, note) VALUES (job.task_id, 'attempt ' || job.attempts);
    IF job.attempts < 3 THEN
        RAISE EXCEPTION 'flaky attempt %', job.attempts USING ERRCODE = 'connection_failure';
    END IF;
    RETURN jsonb_build_object('attempt', job.attempts);
END $$;
SELECT name, max_attempts FROM jobs.register_task_type('flaky', 'h_flaky(jobs.job)', max_attempts => 3);
SELECT status FROM jobs.enqueue('flaky', task_id => 'flaky-1');
SELECT wait_done('flaky-1');
SELECT status, attempts, result, last_error->>'error_type' AS last_type,
       last_error->>'error_message' AS last_message
FROM jobs.job WHERE task_id = 'flaky-1';
SELECT note FROM effects WHERE task_id = 'flaky-1' ORDER BY note;   -- only the successful attempt's work
-- out of attempts: the last error is the failure
SELECT name FROM jobs.register_task_type('flaky2', 'h_err(jobs.job)', max_attempts => 2);
SELECT status FROM jobs.enqueue('flaky2', task_id => 'flaky-2');
SELECT wait_done('flaky-2');
SELECT status, attempts, result->>'error_type' AS type, last_error->>'attempt' AS retried_after
FROM jobs.job WHERE task_id = 'flaky-2';

-- Timeouts: the handler is stopped and the failure says after how long.
CREATE FUNCTION h_slow(job jobs.job) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.effects (task_id, note) VALUES (job.task_id, 'must not stay');
    PERFORM pg_sleep((job.input->>'seconds')::float8);
    RETURN '{"finished": true}';
END $$;
SELECT name, timeout FROM jobs.register_task_type('slow', 'h_slow(jobs.job)', timeout => '300 milliseconds');
SELECT status FROM jobs.enqueue('slow', '{"seconds": 30}', task_id => 'slow-1');
SELECT wait_done('slow-1');
SELECT status, result->>'error_type' AS type, result->>'error_message' AS message
FROM jobs.job WHERE task_id = 'slow-1';
SELECT count(*) AS leftovers FROM effects WHERE task_id = 'slow-1';
SELECT name, timeout FROM jobs.register_task_type('slow2', 'h_slow(jobs.job)', timeout => '2 seconds');
SELECT status FROM jobs.enqueue('slow2', '{"seconds": 30}', task_id => 'slow-2');
SELECT wait_done('slow-2');
SELECT result->>'error_message' AS message FROM jobs.job WHERE task_id = 'slow-2';

-- A job due never ('infinity') just waits; the workers keep running.
SELECT array_agg(pid ORDER BY slot) AS pids_before FROM jobs._worker_slots() \gset
SELECT status FROM jobs.enqueue('ok', '{"note": "never"}', run_at => 'infinity', task_id => 'never-1');
SELECT status FROM jobs.enqueue('ok', '{"note": "after never"}', task_id => 'ok-after-never');
SELECT wait_done('ok-after-never');
SELECT status FROM jobs.job WHERE task_id = 'never-1';
SELECT pg_sleep(0.5);   -- the idle workers compute their sleep past the never-due job
SELECT array_agg(pid ORDER BY slot) = :'pids_before' AS same_workers FROM jobs._worker_slots();
SELECT status FROM jobs.cancel('never-1');

-- run_at delays a job.
SELECT status FROM jobs.enqueue('ok', '{"note": "later"}', run_at => clock_timestamp() + interval '1 second',
                                task_id => 'later-1');
SELECT pg_sleep(0.3);
SELECT status FROM jobs.job WHERE task_id = 'later-1';
SELECT wait_done('later-1');
SELECT date_started >= run_at AS waited_for_run_at FROM jobs.job WHERE task_id = 'later-1';

-- Handlers run as the job's owner: RLS applies to them, and they cannot
-- SET ROLE or RESET ROLE their way to more rights.
CREATE ROLE carol NOLOGIN;
CREATE ROLE dave NOLOGIN;
CREATE ROLE svc NOLOGIN;
GRANT USAGE ON SCHEMA public TO carol, dave, svc;
CREATE FUNCTION h_whoami(job jobs.job) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    attempts jsonb := '{}';
    cmd text;
BEGIN
    FOREACH cmd IN ARRAY ARRAY['RESET ROLE', 'SET ROLE postgres', 'SET SESSION AUTHORIZATION postgres',
                               'SELECT set_config(''role'', ''postgres'', false)',
                               'CREATE TEMP TABLE t (i int)'] LOOP
        BEGIN
            EXECUTE cmd;
            attempts := attempts || jsonb_build_object(cmd, 'allowed');
        EXCEPTION WHEN OTHERS THEN
            attempts := attempts || jsonb_build_object(cmd, SQLSTATE);
        END;
    END LOOP;
    RETURN jsonb_build_object(
        'current_user', current_user,
        'visible_jobs', (SELECT array_agg(DISTINCT coalesce(owner, '-') ORDER BY coalesce(owner, '-'))
                         FROM jobs.job WHERE task_id LIKE 'who-%'),
        'search_path', current_setting('search_path'),
        'escalation', attempts);
END $$;
SELECT name FROM jobs.register_task_type('whoami', 'h_whoami(jobs.job)');
SELECT status FROM jobs.enqueue('whoami', owner => 'dave', task_id => 'who-dave');
SELECT status FROM jobs.enqueue('whoami', owner => 'carol', task_id => 'who-carol');
SELECT wait_done('who-carol'), wait_done('who-dave');
SELECT jsonb_pretty(result) FROM jobs.job WHERE task_id = 'who-carol';
SELECT result->>'current_user' AS ran_as, result->'visible_jobs' AS saw FROM jobs.job WHERE task_id = 'who-dave';
-- an unowned job runs as the type's run_as role, or not at all
SELECT status FROM jobs.enqueue('whoami', owner => NULL, task_id => 'who-nobody');
SELECT wait_done('who-nobody');
SELECT status, result->>'error_type' AS type, result->>'error_message' AS message
FROM jobs.job WHERE task_id = 'who-nobody';
SELECT name, run_as FROM jobs.register_task_type('whoami_svc', 'h_whoami(jobs.job)', run_as => 'svc');
SELECT status FROM jobs.enqueue('whoami_svc', owner => NULL, task_id => 'who-svc');
SELECT wait_done('who-svc');
SELECT status, result->>'current_user' AS ran_as FROM jobs.job WHERE task_id = 'who-svc';

-- Cancel: pending -> revoked; running without force -> PT409; with force
-- the handler is interrupted and its work rolled back; finished -> PT410.
SELECT name FROM jobs.register_task_type('remote', queue => 'remote', max_attempts => 2);
SELECT status FROM jobs.enqueue('remote', task_id => 'c-pending');
SELECT status, result FROM jobs.cancel('c-pending');
SELECT try($$SELECT jobs.cancel('c-pending')$$);
SELECT try($$SELECT jobs.cancel('no-such')$$);
SELECT try($$SELECT jobs.cancel('')$$);
SELECT try($$SELECT jobs.cancel(NULL)$$);
SELECT status FROM jobs.enqueue('slow2', '{"seconds": 30}', task_id => 'c-running');
SELECT wait_done('c-running', 'started');
SELECT pg_sleep(0.2);
SELECT try($$SELECT jobs.cancel('c-running')$$);
SELECT status FROM jobs.cancel('c-running', force => true);
SELECT pg_sleep(0.5);
SELECT status, result->>'reason' AS reason FROM jobs.job WHERE task_id = 'c-running';
SELECT count(*) AS leftovers FROM effects WHERE task_id = 'c-running';
-- the worker is free again and runs the next job
SELECT status FROM jobs.enqueue('ok', '{"note": "after cancel"}', task_id => 'ok-2');
SELECT wait_done('ok-2');
-- others may not cancel a job they cannot see or change
SELECT status FROM jobs.enqueue('remote', owner => 'dave', task_id => 'c-dave');
SET ROLE carol;
SELECT try($$SELECT jobs.cancel('c-dave')$$);
RESET ROLE;
SELECT status FROM jobs.cancel('c-dave');

-- A worker is interrupted only by a revoke that commits.  (An interrupt
-- asked for without one made the worker abandon the job, which then stayed
-- started forever.)  Nobody may ask for one directly: there is no SQL
-- function for it.  A forced cancel rolled back to a savepoint, by the
-- job's owner, leaves the handler running and the job finishes.
SELECT count(*) AS interrupt_functions FROM pg_proc
WHERE pronamespace = 'jobs'::regnamespace AND proname LIKE '%interrupt%';
SELECT name FROM jobs.register_task_type('slow3', 'h_slow(jobs.job)');
SELECT status FROM jobs.enqueue('slow3', '{"seconds": 1.5}', owner => 'dave', task_id => 'i-dave');
SELECT wait_done('i-dave', 'started');
SET ROLE dave;
BEGIN;
SAVEPOINT before_cancel;
SELECT status FROM jobs.cancel('i-dave', force => true);
ROLLBACK TO SAVEPOINT before_cancel;
COMMIT;
RESET ROLE;
SELECT wait_done('i-dave');
SELECT status, result FROM jobs.job WHERE task_id = 'i-dave';
-- jobs.revoke() of a job a worker runs interrupts it as a forced cancel
-- does: the worker is free at once, the handler's work rolled back
SELECT status FROM jobs.enqueue('slow3', '{"seconds": 30}', task_id => 'i-revoke');
SELECT wait_done('i-revoke', 'started');
SELECT status FROM jobs.revoke('i-revoke');
DO $$
BEGIN
    FOR i IN 1..200 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM jobs._worker_slots() w JOIN jobs.job j ON j.id = w.job_id
                              WHERE j.task_id = 'i-revoke');
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
SELECT count(*) AS still_running FROM jobs._worker_slots() w JOIN jobs.job j ON j.id = w.job_id
WHERE j.task_id = 'i-revoke';
SELECT status, result FROM jobs.job WHERE task_id = 'i-revoke';
SELECT count(*) AS leftovers FROM effects WHERE task_id = 'i-revoke';

-- External workers: claim in priority then FIFO order, under a lease.
SELECT status FROM jobs.enqueue('remote', '{"n": 1}', priority => 2, task_id => 'r1');
SELECT status FROM jobs.enqueue('remote', '{"n": 2}', priority => 0, task_id => 'r2');
SELECT status FROM jobs.enqueue('remote', '{"n": 3}', priority => 2, task_id => 'r3');
SELECT status FROM jobs.enqueue('remote', '{"n": 4}', priority => 3, task_id => 'r4');
SELECT status FROM jobs.enqueue('remote', '{"n": 5}', priority => 0, run_at => now() + interval '1 hour', task_id => 'r5');
SELECT task_id, status, worker, lease, attempts FROM jobs.claim('remote', 2, 'celery@host1', '1 minute') ORDER BY priority, id;
SELECT task_id, worker FROM jobs.claim('remote', 10, 'celery@host2') ORDER BY priority, id;
SELECT count(*) FROM jobs.claim('remote', 10);             -- r5 is not due; in-db types are never handed out
SELECT try($$SELECT jobs.claim('remote', 0)$$);
SELECT try($$SELECT jobs.claim('remote', 1, lease => '0 seconds')$$);
SELECT try($$SELECT jobs.claim('remote', 1, 'pg_jobs/forged')$$);
SELECT try($$SELECT jobs.claim(NULL)$$);
-- heartbeat renews the lease; progress is recorded
UPDATE jobs.job SET lease_until = now() + interval '1 second' WHERE task_id = 'r2';
SELECT lease_until >= now() + interval '59 seconds' AS renewed FROM jobs.heartbeat('r2');
SELECT progress_done, progress_total, progress_message FROM jobs.progress('r2', 3, 10, 'page 3 of 10');
SELECT try($$SELECT jobs.progress('r2', 11, 10)$$);
SELECT try($$SELECT jobs.progress('r2', -1)$$);
SELECT try($$SELECT jobs.heartbeat('r5')$$);               -- pending: holds no lease
SELECT try($$SELECT jobs.heartbeat('no-such')$$);
SELECT try($$SELECT jobs.heartbeat(NULL)$$);
SELECT try($$SELECT jobs.progress(NULL, 1)$$);
-- a job one can see but may not change (unowned: admins only) is 42501
SELECT status FROM jobs.enqueue('remote', owner => NULL, task_id => 'r-unowned');
SELECT status FROM jobs.start('r-unowned');
SET ROLE carol;
SELECT status FROM jobs.job WHERE task_id = 'r-unowned';
SELECT try($$SELECT jobs.heartbeat('r-unowned')$$);
SELECT try($$SELECT jobs.progress('r-unowned', 1, 2)$$);
RESET ROLE;
SELECT status, progress_done FROM jobs.revoke('r-unowned');
SELECT status FROM jobs.succeed('r2', '{"ok": true}');
SELECT try($$SELECT jobs.progress('r2', 10, 10)$$);
-- a lease that expires without a heartbeat: the launcher requeues the job,
-- and a late report from the worker that lost it changes nothing
UPDATE jobs.job SET lease_until = now() - interval '1 second' WHERE task_id = 'r1';
SELECT wait_done('r1', 'pending');
SELECT status, attempts, worker, last_error->>'error_type' AS why FROM jobs.job WHERE task_id = 'r1';
SELECT try($$SELECT jobs.succeed('r1', '{"late": true}')$$);
SELECT status, result FROM jobs.job WHERE task_id = 'r1';
-- claimed again (after its backoff), its lease expires again: out of attempts, it fails
SELECT pg_sleep(0.2);
SELECT task_id, attempts FROM jobs.claim('remote', 1, 'celery@host3');
UPDATE jobs.job SET lease_until = now() - interval '1 second' WHERE task_id = 'r1';
SELECT wait_done('r1');
SELECT status, attempts, result->>'error_type' AS type FROM jobs.job WHERE task_id = 'r1';

-- One transaction per job for external workers: report and claim the next.
SELECT name FROM jobs.register_task_type('fast', queue => 'fast');
SELECT count(*) FROM jobs.enqueue_many('fast', '[{"n": 1}, {"n": 2}, {"n": 3}]');
SELECT task_id AS f1 FROM jobs.succeed_and_claim(NULL, queue => 'fast', worker => 'w9') \gset
SELECT input->>'n' AS n, status FROM jobs.succeed_and_claim(:'f1', '{"done": 1}', 'fast', 5, 'w9');
SELECT input->>'n' AS n, status, result FROM jobs.job WHERE task_type = 'fast' ORDER BY id;
-- many outcomes in one statement
SELECT count(*) AS reported FROM jobs.succeed_many(
    (SELECT array_agg(task_id ORDER BY id) FROM jobs.job WHERE task_type = 'fast' AND status = 'started'),
    '[{"n": 2}, {"n": 3}]');
SELECT input->>'n' AS n, status, result FROM jobs.job WHERE task_type = 'fast' ORDER BY id;
SELECT count(*) AS skipped_finished FROM jobs.succeed_many(ARRAY[:'f1', 'no-such']);
SELECT try($$SELECT jobs.succeed_many(NULL)$$);
SELECT try($$SELECT jobs.succeed_many(ARRAY['a', 'b'], '[{}]')$$);

-- A handler's log: its RAISE messages and jobs.log() calls are captured
-- (level mapped, source "handler" unless given), kept even when the handler
-- fails and its work is rolled back, with the final error last.
CREATE FUNCTION h_chatty(job jobs.job) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.effects (task_id, note) VALUES (job.task_id, 'rolled back on failure');
    RAISE DEBUG 'looking at %', job.input->>'filename';
    RAISE LOG 'a log line';
    RAISE INFO 'an info line';
    RAISE NOTICE 'page % of %', 1, 2;
    RAISE WARNING 'low contrast';
    PERFORM jobs.log('from the API', 'info', 'ocr', '{"page": 2}');
    IF (job.input->>'fail')::boolean THEN
        RAISE EXCEPTION 'ocr engine crashed' USING ERRCODE = 'external_routine_exception';
    END IF;
    RETURN jsonb_build_object('logged_id', jobs.log('last words'));
END $$;
SELECT name FROM jobs.register_task_type('chatty', 'h_chatty(jobs.job)');
SELECT status FROM jobs.enqueue('chatty', '{"filename": "a.pdf", "fail": true}', task_id => 'chatty-fail');
SELECT wait_done('chatty-fail');
SELECT level, source, message, fields - 'context' AS fields FROM jobs.logs('chatty-fail') ORDER BY id;
SELECT count(*) AS leftovers FROM effects WHERE task_id = 'chatty-fail';
SELECT status FROM jobs.enqueue('chatty', '{"filename": "b.pdf", "fail": false}', task_id => 'chatty-ok');
SELECT wait_done('chatty-ok');
SELECT status, result FROM jobs.job WHERE task_id = 'chatty-ok';   -- inside a handler log() buffers: no id yet
SELECT level, source, message FROM jobs.logs('chatty-ok', level => 'notice') ORDER BY id;
SELECT source, entries FROM jobs.log_sources('chatty-ok') ORDER BY 1;
-- the log is complete as soon as the outcome is visible
SELECT (SELECT count(*) FROM jobs.logs('chatty-ok')) AS entries;

-- Batches: a worker claims more jobs at a time while they are short, runs
-- each in its own subtransaction and commits their outcomes together; a
-- failing job in a batch affects no other, and each job takes effect once.
CREATE FUNCTION h_batch(job jobs.job) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.effects (task_id, note) VALUES (job.task_id, 'batch');
    IF (job.input->>'n')::int % 10 = 0 THEN
        RAISE EXCEPTION 'job % fails', job.input->>'n';
    END IF;
    RETURN jsonb_build_object('n', job.input->'n');
END $$;
SELECT name FROM jobs.register_task_type('batchy', 'h_batch(jobs.job)');
SELECT count(*) FROM jobs.enqueue_many('batchy',
    (SELECT jsonb_agg(jsonb_build_object('n', i)) FROM generate_series(1, 500) i));
DO $$
BEGIN
    FOR i IN 1..600 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM jobs.job WHERE task_type = 'batchy'
                              AND status IN ('pending', 'started'));
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
SELECT status, count(*), min(attempts) AS min_attempts, max(attempts) AS max_attempts
FROM jobs.job WHERE task_type = 'batchy' GROUP BY status ORDER BY status;
-- exactly the successful jobs left their work, once each
SELECT count(*) AS effects, count(DISTINCT e.task_id) AS distinct_jobs,
       bool_and(j.status = 'success') AS all_from_successes
FROM effects e JOIN jobs.job j ON j.task_id = e.task_id WHERE j.task_type = 'batchy';
SELECT count(*) AS failures_with_their_error FROM jobs.job
WHERE task_type = 'batchy' AND status = 'failure'
  AND result->>'error_message' = 'job ' || (input->>'n') || ' fails';

-- health() reports workers, counts and running ids
SELECT h ? 'workers' AS w, h ? 'queues' AS q, h ? 'pending' AS p, h ? 'started' AS s,
       h ? 'oldest_pending_seconds' AS o, h ? 'running' AS r,
       (h->'queues'->'remote'->>'pending')::int AS remote_pending,
       h->'running' ? 'r3' AS r3_running
FROM jobs.health() h;
