--
-- The handler sandbox: what one handler does to its session does not reach
-- the next job on the same worker, and a handler that will not stop is
-- stopped without losing or repeating the other jobs of its batch.
-- One worker, so that every job here runs on the same process.
--
CREATE EXTENSION IF NOT EXISTS pg_jobs;
\set VERBOSITY terse
ALTER SYSTEM SET pg_jobs.workers = 1;
ALTER SYSTEM SET pg_jobs.interrupt_grace = '500ms';
SELECT pg_reload_conf();
CREATE FUNCTION public.wait_for(cond text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE ok boolean;
BEGIN
    FOR i IN 1..600 LOOP
        EXECUTE 'SELECT ' || cond INTO ok;
        IF ok THEN RETURN true; END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN false;
END $$;
SELECT wait_for($$(SELECT count(*) = 1 FROM jobs._worker_slots())$$) AS one_worker;
-- finished(task_id): its final status, once it has one (a new snapshot each time)
CREATE FUNCTION public.finished(tid text) RETURNS jobs.status LANGUAGE plpgsql AS $$
DECLARE st jobs.status;
BEGIN
    FOR i IN 1..600 LOOP
        SELECT status INTO st FROM jobs.job WHERE task_id = tid;
        IF st NOT IN ('pending', 'started') THEN RETURN st; END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN NULL;
END $$;
CREATE ROLE sb_alice NOLOGIN;
CREATE ROLE sb_bob NOLOGIN;

-- what a handler sees of its session
CREATE FUNCTION public.sb_look(job jobs.job) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object(
        'row_security', current_setting('row_security'),
        'TimeZone', current_setting('TimeZone'),
        'default_transaction_isolation', current_setting('default_transaction_isolation'),
        'statement_timeout', current_setting('statement_timeout'),
        'search_path', current_setting('search_path'),
        'work_mem', current_setting('work_mem'),
        'custom', nullif(current_setting('sb.custom', true), ''),  -- a placeholder stays defined, empty
        'advisory_locks', (SELECT count(*) FROM pg_locks
                           WHERE locktype = 'advisory' AND pid = pg_backend_pid()),
        'can_read_jobs', (SELECT count(*) >= 0 FROM jobs.job))
$$;
-- a handler that changes every kind of session state it can
CREATE FUNCTION public.sb_dirty(job jobs.job) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE temp_table text;
BEGIN
    SET row_security = off;
    SET TimeZone = 'Pacific/Apia';
    SET default_transaction_isolation = 'serializable';
    SET statement_timeout = '1ms';
    SET search_path = public, pg_temp;
    PERFORM set_config('work_mem', '1MB', false);
    PERFORM set_config('sb.custom', 'dirty', false);
    PERFORM pg_advisory_lock(4242);
    BEGIN
        CREATE TEMP TABLE sb_left_behind (x int);
        temp_table := 'created';
    EXCEPTION WHEN OTHERS THEN
        temp_table := SQLSTATE;
    END;
    RETURN jsonb_build_object('temp_table', temp_table);
END $$;
SELECT name FROM jobs.register_task_type('sb_look', 'public.sb_look(jobs.job)');
SELECT name FROM jobs.register_task_type('sb_dirty', 'public.sb_dirty(jobs.job)');

SELECT task_id AS before FROM jobs.enqueue('sb_look', owner => 'sb_bob') \gset
SELECT finished(:'before');
SELECT task_id AS dirty FROM jobs.enqueue('sb_dirty', owner => 'sb_alice') \gset
SELECT finished(:'dirty');
SELECT result AS dirty_result FROM jobs.job WHERE task_id = :'dirty';
-- the same once more, failing after the changes: a rollback must not keep them either
CREATE FUNCTION public.sb_dirty_fail(job jobs.job) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.sb_dirty(job);
    RAISE EXCEPTION 'failing after dirtying the session';
END $$;
SELECT name FROM jobs.register_task_type('sb_dirty_fail', 'public.sb_dirty_fail(jobs.job)');
SELECT task_id AS dirty2 FROM jobs.enqueue('sb_dirty_fail', owner => 'sb_alice') \gset
SELECT finished(:'dirty2');
SELECT task_id AS after FROM jobs.enqueue('sb_look', owner => 'sb_bob') \gset
SELECT finished(:'after');
SELECT a.result = b.result AS next_job_sees_the_same_session,
       b.result->>'advisory_locks' AS advisory_locks_left,
       b.result->>'custom' AS custom_setting_left
FROM jobs.job a, jobs.job b WHERE a.task_id = :'before' AND b.task_id = :'after';
SELECT count(DISTINCT worker) AS workers_used FROM jobs.job
WHERE task_id IN (:'before', :'dirty', :'dirty2', :'after');

--
-- A handler that swallows the cancel of its timeout: it ends as a failure
-- "timed out" within its timeout plus pg_jobs.interrupt_grace (its worker
-- is ended); the jobs batched with it are requeued, not lost, and run once.
--
CREATE FUNCTION public.sb_stubborn(job jobs.job) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF job.input ? 'train' THEN
        RETURN '{}';    -- quick: teaches the worker that this type is fast
    END IF;
    LOOP
        BEGIN
            PERFORM pg_sleep(10);
        EXCEPTION WHEN query_canceled THEN
            NULL;   -- keep going
        END;
    END LOOP;
END $$;
CREATE FUNCTION public.sb_swallow(job jobs.job) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(10);
    RETURN '{"finished": true}';
EXCEPTION WHEN query_canceled THEN
    RETURN '{"swallowed": true}';
END $$;
CREATE TABLE public.sb_runs (task_id text);
GRANT INSERT ON public.sb_runs TO PUBLIC;
CREATE FUNCTION public.sb_count(job jobs.job) RETURNS jsonb LANGUAGE sql AS $$
    INSERT INTO public.sb_runs VALUES (job.task_id) RETURNING '{}'::jsonb
$$;
SELECT name FROM jobs.register_task_type('sb_stubborn', 'public.sb_stubborn(jobs.job)', timeout => '1 second');
SELECT name FROM jobs.register_task_type('sb_stubborn_forever', 'public.sb_stubborn(jobs.job)');
SELECT name FROM jobs.register_task_type('sb_swallow', 'public.sb_swallow(jobs.job)', timeout => '300 ms');
SELECT name FROM jobs.register_task_type('sb_count', 'public.sb_count(jobs.job)');

-- returns after the cancel: not a success
SELECT task_id AS sw FROM jobs.enqueue('sb_swallow', owner => 'sb_alice') \gset
SELECT finished(:'sw');
SELECT result->>'error_type' AS error_type, result->>'error_message' AS error_message
FROM jobs.job WHERE task_id = :'sw';

-- One stubborn job claimed in a batch with quick ones: jobs of both types
-- have run quickly before (the worker claims a batch only of work it
-- expects to be short) and the batch size has grown.
BEGIN;
SELECT count(*) FROM jobs.enqueue_many('sb_count', (SELECT jsonb_agg(jsonb_build_object('n', i)) FROM generate_series(1, 4) i),
                                       owner => 'sb_alice');
SELECT count(*) FROM jobs.enqueue_many('sb_stubborn', '[{"train": 1}, {"train": 2}, {"train": 3}]', owner => 'sb_alice');
SELECT task_id AS stubborn FROM jobs.enqueue('sb_stubborn', owner => 'sb_alice') \gset
SELECT count(*) FROM jobs.enqueue_many('sb_count', (SELECT jsonb_agg(jsonb_build_object('n', i)) FROM generate_series(5, 12) i),
                                       owner => 'sb_alice');
COMMIT;
SELECT finished(:'stubborn');
SELECT result->>'error_type' AS error_type, result->>'error_message' AS error_message,
       date_done - date_started < interval '10 seconds' AS stopped_in_time
FROM jobs.job WHERE task_id = :'stubborn';
SELECT wait_for($$(SELECT count(*) = 12 FROM jobs.job WHERE task_type = 'sb_count' AND status = 'success')$$) AS quick_jobs_all_succeeded;
SELECT count(*) AS runs, count(DISTINCT task_id) AS jobs FROM public.sb_runs;
SELECT count(*) AS over_max_attempts FROM jobs.job WHERE task_type = 'sb_count' AND attempts > max_attempts;
-- they were requeued without being charged an attempt
SELECT count(*) >= 1 AS some_were_requeued_with_the_stubborn_one FROM jobs.job
WHERE task_type = 'sb_count' AND last_error->>'error_type' = 'worker_stopped';

-- a forced cancel of a handler without a timeout that will not stop
SELECT task_id AS forever FROM jobs.enqueue('sb_stubborn_forever', owner => 'sb_alice') \gset
SELECT wait_for(format($$(SELECT status = 'started' FROM jobs.job WHERE task_id = %L)$$, :'forever')) AS started;
SELECT pg_sleep(0.2);
SELECT status FROM jobs.cancel(:'forever', force => true);
SELECT task_id AS next FROM jobs.enqueue('sb_look', owner => 'sb_bob') \gset
SELECT finished(:'next') AS next_job_after_forced_cancel;
SELECT status FROM jobs.job WHERE task_id = :'forever';

--
-- A forced cancel of a job waiting behind others in the worker's claimed
-- batch: its handler never runs, and nothing waits behind it.
--
CREATE SEQUENCE public.sb_forever_ran;
GRANT USAGE ON SEQUENCE public.sb_forever_ran TO PUBLIC;
CREATE FUNCTION public.sb_forever(job jobs.job) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF job.input ? 'train' THEN
        RETURN '{}';
    ELSIF job.input ? 'sleep' THEN
        -- held until the test releases it: F stays waiting in the batch
        -- however slow the machine (valgrind)
        PERFORM pg_advisory_xact_lock_shared(4711);
        PERFORM pg_sleep(0.1);
        RETURN '{}';
    END IF;
    PERFORM nextval('public.sb_forever_ran');  -- not undone by a rollback
    LOOP
        PERFORM pg_sleep(10);
    END LOOP;
END $$;
SELECT name FROM jobs.register_task_type('sb_forever', 'public.sb_forever(jobs.job)');
-- quick runs of the type first (the worker then expects it to be short, and
-- its batch size grows), then ten sleepers and F in one claimed batch; the
-- sleepers wait for this session's advisory lock
SELECT pg_advisory_lock(4711);
BEGIN;
SELECT count(*) FROM jobs.enqueue_many('sb_forever', (SELECT jsonb_agg(jsonb_build_object('train', i)) FROM generate_series(1, 31) i),
                                       owner => 'sb_alice');
SELECT count(*) FROM jobs.enqueue_many('sb_forever', (SELECT jsonb_agg(jsonb_build_object('sleep', i)) FROM generate_series(1, 10) i),
                                       owner => 'sb_alice');
SELECT task_id AS f FROM jobs.enqueue('sb_forever', owner => 'sb_alice') \gset
SELECT count(*) FROM jobs.enqueue_many('sb_count', (SELECT jsonb_agg(jsonb_build_object('n', i)) FROM generate_series(1, 5) i),
                                       owner => 'sb_alice', priority => 3);
COMMIT;
-- F is claimed (started) while the sleepers before it run
SELECT wait_for(format($$(SELECT status = 'started' FROM jobs.job WHERE task_id = %L)$$, :'f')) AS f_claimed;
SELECT (SELECT count(*) FROM jobs.job WHERE input ? 'sleep' AND status = 'success') = 0 AS sleepers_still_waiting;
-- claimed, but not the job its worker runs
SELECT j.status, j.worker IS NOT NULL AS claimed,
       NOT EXISTS (SELECT 1 FROM jobs._worker_slots() w WHERE w.job_id = j.id) AS not_running
FROM jobs.job j WHERE j.task_id = :'f';
SELECT status FROM jobs.cancel(:'f', force => true);
SELECT pg_advisory_unlock(4711);
SELECT wait_for($$(SELECT count(*) = 0 FROM jobs.job WHERE task_type IN ('sb_forever', 'sb_count') AND status IN ('pending', 'started'))$$)
       AS nothing_waits_behind_it;
SELECT status FROM jobs.job WHERE task_id = :'f';
SELECT is_called AS handler_ran FROM public.sb_forever_ran;
-- the sleepers' date_started is when each handler was called: 0.1 s apart
SELECT min(gap) >= interval '90 ms' AS started_when_called
FROM (SELECT date_started - lag(date_started) OVER (ORDER BY date_started) AS gap
      FROM jobs.job WHERE input ? 'sleep') g;

ALTER SYSTEM RESET pg_jobs.workers;
ALTER SYSTEM RESET pg_jobs.interrupt_grace;
SELECT pg_reload_conf();
SELECT wait_for($$(SELECT count(*) = 2 FROM jobs._worker_slots())$$) AS two_workers_again;

CREATE FUNCTION public.sb_sleep(job jobs.job) RETURNS jsonb LANGUAGE sql AS $$
    SELECT '{}'::jsonb FROM pg_sleep(0.1)
$$;
SELECT name FROM jobs.register_task_type('sb_sleep', 'public.sb_sleep(jobs.job)');

--
-- Claims stay within a short budget of expected work: slow jobs behind a
-- burst of quick ones are spread over the idle workers, not hoarded by the
-- worker whose batch had grown on the quick ones.
--
BEGIN;
SELECT count(*) FROM jobs.enqueue_many('sb_count', (SELECT jsonb_agg(jsonb_build_object('n', i)) FROM generate_series(1, 300) i),
                                       owner => 'sb_alice');
SELECT count(*) FROM jobs.enqueue_many('sb_sleep', (SELECT jsonb_agg(jsonb_build_object('spread', i)) FROM generate_series(1, 40) i),
                                       owner => 'sb_alice');
COMMIT;
SELECT wait_for($$(SELECT count(*) = 0 FROM jobs.job WHERE task_type IN ('sb_sleep', 'sb_count') AND status IN ('pending', 'started'))$$) AS drained;
SELECT count(DISTINCT worker) AS workers, min(n) >= 10 AS each_ran_its_share
FROM (SELECT worker, count(*) AS n FROM jobs.job
      WHERE task_type = 'sb_sleep' AND input ? 'spread' GROUP BY worker) w;
