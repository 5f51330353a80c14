--
-- The job lifecycle, enforced by C triggers for every client: the
-- transition matrix, stamps, immutability of finished jobs, duplicates
-- recorded as failures, and plain UPDATEs that try to break the rules.
--
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

SELECT name, queue, priority, tracked FROM jobs.register_task_type('consume', display_name => 'Consume File');
SELECT name, tracked FROM jobs.register_task_type('metrics', tracked => false);

-- Drive a job into a given state through the API.
CREATE FUNCTION make_job(tid text, st jobs.status) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM jobs.enqueue('consume', task_id => tid);
    IF st <> 'pending' THEN
        PERFORM jobs.start(tid);
    END IF;
    IF st = 'success' THEN PERFORM jobs.succeed(tid, '{}');
    ELSIF st = 'failure' THEN PERFORM jobs.fail(tid, 'boom');
    ELSIF st = 'revoked' THEN PERFORM jobs.revoke(tid);
    END IF;
    RETURN tid;
END $$;

-- The whole matrix, tried with plain UPDATEs: "ok" or the SQLSTATE raised.
CREATE TEMP TABLE matrix (from_status jobs.status, to_status jobs.status, outcome text);
DO $$
DECLARE
    f jobs.status; t jobs.status; tid text; n int := 0;
BEGIN
    FOR f IN SELECT unnest(enum_range(NULL::jobs.status)) LOOP
        FOR t IN SELECT unnest(enum_range(NULL::jobs.status)) LOOP
            n := n + 1;
            tid := make_job('m' || n, f);
            BEGIN
                UPDATE jobs.job SET status = t, result = '{"x":1}' WHERE task_id = tid;
                INSERT INTO matrix SELECT f, t, 'ok -> ' || status FROM jobs.job WHERE task_id = tid;
            EXCEPTION WHEN OTHERS THEN
                INSERT INTO matrix VALUES (f, t, SQLSTATE);
            END;
        END LOOP;
    END LOOP;
END $$;
SELECT * FROM matrix ORDER BY 1, 2;

-- The PT409 message names both states.
SELECT make_job('named', 'success');
SELECT try($$UPDATE jobs.job SET status = 'revoked' WHERE task_id = 'named'$$);
SELECT make_job('named2', 'pending');
SELECT try($$UPDATE jobs.job SET status = 'success' WHERE task_id = 'named2'$$);

-- Stamps: created on insert; started and attempts on start; done on finish.
SELECT make_job('t1', 'pending');
SELECT status, attempts, date_created IS NOT NULL AS created, date_started IS NULL AS not_started,
       date_done IS NULL AS not_done, run_at = date_created AS runs_now
FROM jobs.job WHERE task_id = 't1';
SELECT pg_sleep(0.05);
SELECT status, attempts, date_started > date_created AS started_after_created,
       jobs.wait_time_seconds(j) > 0 AS waited, jobs.duration_seconds(j) IS NULL AS no_duration
FROM jobs.start('t1') j;
SELECT pg_sleep(0.05);
SELECT status, date_done > date_started AS done_after_started,
       jobs.duration_seconds(j) > 0 AS ran, jobs.wait_time_seconds(j) > 0 AS waited
FROM jobs.succeed('t1', '{"document_id": 7}') j;
-- finished jobs live in the history partitions
SELECT tableoid::regclass::text LIKE 'jobs.job_done_%' AS in_history FROM jobs.job WHERE task_id = 't1';

-- Clients cannot forge the stamps or attempts.
SELECT make_job('forge', 'pending');
UPDATE jobs.job SET status = 'started', attempts = 42, date_started = '2000-01-01',
                    date_done = '2000-01-02' WHERE task_id = 'forge';
SELECT status, attempts, date_started > '2020-01-01' AS real_start, date_done IS NULL AS not_done
FROM jobs.job WHERE task_id = 'forge';
-- Immutable identity columns.
SELECT try($$UPDATE jobs.job SET task_type = 'metrics' WHERE task_id = 'forge'$$);
SELECT try($$UPDATE jobs.job SET task_id = 'other' WHERE task_id = 'forge'$$);
SELECT try($$UPDATE jobs.job SET date_created = now() - interval '1 day' WHERE task_id = 'forge'$$);
-- Retry: started -> pending clears date_started and keeps the attempt count.
UPDATE jobs.job SET status = 'pending' WHERE task_id = 'forge';
SELECT status, attempts, date_started IS NULL AS cleared FROM jobs.job WHERE task_id = 'forge';
UPDATE jobs.job SET status = 'started' WHERE task_id = 'forge';
SELECT status, attempts FROM jobs.job WHERE task_id = 'forge';

-- Finished rows are immutable except acknowledged.
SELECT make_job('fin', 'success');
SELECT try($$UPDATE jobs.job SET result = '{"tampered": true}' WHERE task_id = 'fin'$$);
SELECT try($$UPDATE jobs.job SET input = '{"tampered": true}' WHERE task_id = 'fin'$$);
SELECT try($$UPDATE jobs.job SET owner = NULL WHERE task_id = 'fin'$$);
UPDATE jobs.job SET acknowledged = true WHERE task_id = 'fin';
SELECT status, acknowledged, result FROM jobs.job WHERE task_id = 'fin';
-- a no-op update of a finished row is fine
UPDATE jobs.job SET status = 'success' WHERE task_id = 'fin';

-- A success whose result names a duplicate is recorded as a failure,
-- through the API and through a plain UPDATE.
SELECT make_job('dup1', 'started');
SELECT status, result FROM jobs.succeed('dup1', '{"duplicate_of": 12, "reason": "It is a duplicate"}');
SELECT make_job('dup2', 'started');
UPDATE jobs.job SET status = 'success', result = '{"duplicate_of": 3}' WHERE task_id = 'dup2';
SELECT status FROM jobs.job WHERE task_id = 'dup2';
-- "duplicate_of" nested deeper, or a non-object result, is an ordinary success
SELECT make_job('dup3', 'started');
SELECT status FROM jobs.succeed('dup3', '{"meta": {"duplicate_of": 1}}');
SELECT make_job('dup4', 'started');
SELECT status, result FROM jobs.succeed('dup4', '[1,2]');

-- The failure path owns failures: a late success changes nothing and raises
-- nothing (the API contract), a plain UPDATE is skipped silently.  A repeated
-- fail returns the job as it is (the first report stands).
SELECT make_job('late', 'failure');
SELECT status, result->>'error_message' AS msg FROM jobs.succeed('late', '{"document_id": 1}');
UPDATE jobs.job SET status = 'success' WHERE task_id = 'late';
SELECT status, result->>'error_message' AS msg FROM jobs.job WHERE task_id = 'late';
-- other reports on finished jobs raise PT409; a repeated fail returns the job unchanged
SELECT try($$SELECT jobs.fail('late', 'again')$$);
SELECT try($$SELECT jobs.revoke('late')$$);
SELECT try($$SELECT jobs.start('late')$$);
SELECT try($$SELECT jobs.succeed((SELECT make_job('late2', 'revoked')))$$);

-- New jobs must be pending; a plain INSERT gets the same treatment as enqueue.
SELECT try($$INSERT INTO jobs.job (task_type, status) VALUES ('consume', 'success')$$);
SELECT try($$INSERT INTO jobs.job (task_type, status) VALUES ('consume', 'started')$$);
INSERT INTO jobs.job (task_type, task_id) VALUES ('consume', 'plain');
SELECT status, queue, priority, attempts, max_attempts, trigger_source, owner, input
FROM jobs.job WHERE task_id = 'plain';
-- the lifecycle columns are the trigger's, whatever the client sends
INSERT INTO jobs.job (task_type, task_id, attempts, date_started, result, acknowledged)
VALUES ('consume', 'plain2', 5, now(), '{"x":1}', true);
SELECT attempts, date_started, result, acknowledged FROM jobs.job WHERE task_id = 'plain2';
INSERT INTO jobs.job (task_type) VALUES ('metrics');     -- untracked: nothing stored
SELECT try($$INSERT INTO jobs.job (task_type) VALUES ('nope')$$);
SELECT count(*) FROM jobs.job WHERE task_type = 'metrics';

-- The trigger functions refuse to be used elsewhere.
CREATE TABLE not_jobs (id int);
CREATE TRIGGER t AFTER INSERT ON not_jobs FOR EACH ROW EXECUTE FUNCTION jobs._job_before_insert();
SELECT try($$INSERT INTO not_jobs VALUES (1)$$);
CREATE TRIGGER t2 BEFORE INSERT ON not_jobs FOR EACH ROW EXECUTE FUNCTION jobs._job_before_insert();
SELECT try($$INSERT INTO not_jobs VALUES (1)$$);
SELECT try($$SELECT jobs._job_before_update()$$);
