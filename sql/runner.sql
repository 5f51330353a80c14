--
-- The runner protocol: an external runner (Celery, Go, Node) starts a job
-- under its name and a lease, renews it with heartbeat, reports with the
-- attempt it was handed (the fencing token), retries, revokes with a reason,
-- and hears a cancel request.  Also: tracked-only types are never claimed,
-- repeated and late reports follow one rule, errors name the task id.
--
CREATE EXTENSION IF NOT EXISTS pg_jobs;
\set VERBOSITY terse
CREATE FUNCTION rn_try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
CREATE ROLE rn_alice NOLOGIN;
CREATE ROLE rn_mon NOLOGIN;
GRANT UPDATE (acknowledged) ON jobs.job TO rn_mon;

--
-- Tracked-only types: no handler and no queue given -> never claimed
--
SELECT name, queue, claimable FROM jobs.register_task_type('rn_celery', max_attempts => 2);
SELECT name, queue, claimable FROM jobs.register_task_type('rn_ext', queue => 'rn_q');
SELECT name, queue, claimable FROM jobs.register_task_type('rn_forced', claimable => true);
SELECT name, queue, claimable FROM jobs.register_task_type('rn_off', tracked => false);
SELECT jobs.is_tracked('rn_celery') AS celery, jobs.is_tracked('rn_off') AS off,
       jobs.is_tracked('rn_nope') AS unknown;
SELECT task_id FROM jobs.enqueue('rn_celery', task_id => 'c-1');
SELECT task_id FROM jobs.enqueue('rn_forced', task_id => 'f-1');
-- the claimer of queue default gets the explicitly claimable job only
SELECT task_id, worker, attempts FROM jobs.claim('default', 10, 'claimer-1', '1 hour');
SELECT status FROM jobs.job WHERE task_id = 'c-1';
SELECT task_id, attempts FROM jobs.succeed('f-1', '{}', attempt => 1);

--
-- start names the runner and a lease; attempts is the fencing token
--
SELECT rn_try($$SELECT jobs.start('c-1', 'pg_jobs/1')$$);
SELECT rn_try($$SELECT jobs.start('c-1', '')$$);
SELECT rn_try($$SELECT jobs.start('c-1', 'celery@a', '0 s')$$);
SELECT status, worker, lease, attempts,
       lease_until BETWEEN now() + interval '59 min' AND now() + interval '61 min' AS leased
FROM jobs.start('c-1', 'celery@a', '1 hour');
-- a repeated start by the same runner changes nothing; another runner: PT409
SELECT status, worker, attempts FROM jobs.start('c-1', 'celery@a');
SELECT status, worker, attempts FROM jobs.start('c-1');
SELECT rn_try($$SELECT jobs.start('c-1', 'celery@b', '1 hour')$$);
-- heartbeat and progress with the token; a wrong one changes nothing
SELECT status, attempts, cancel_requested FROM jobs.heartbeat('c-1', attempt => 1);
SELECT rn_try($$SELECT jobs.heartbeat('c-1', attempt => 2)$$);
SELECT rn_try($$SELECT jobs.progress('c-1', 1, 2, attempt => 7)$$);
SELECT progress_done FROM jobs.progress('c-1', 1, 2, attempt => 1);

--
-- retry: started -> pending with reason and delay, counted, refused past max_attempts
--
SELECT rn_try($$SELECT jobs.retry('c-1', 'boom', attempt => 2)$$);
SELECT rn_try($$SELECT jobs.retry('c-1', delay => '-1 s')$$);
SELECT status, attempts, worker, lease_until, last_error,
       run_at BETWEEN now() + interval '9 min' AND now() + interval '11 min' AS delayed
FROM jobs.retry('c-1', 'connection reset', '10 minutes', attempt => 1);
SELECT rn_try($$SELECT jobs.retry('c-1', 'again')$$);
-- the old runner's late reports are refused and change nothing
SELECT rn_try($$SELECT jobs.succeed('c-1', '{"late": true}', attempt => 1)$$);
SELECT rn_try($$SELECT jobs.fail('c-1', 'late', attempt => 1)$$);
SELECT rn_try($$SELECT jobs.revoke('c-1', 'late', attempt => 1)$$);
SELECT rn_try($$SELECT jobs.heartbeat('c-1', attempt => 1)$$);
SELECT status, attempts, result FROM jobs.job WHERE task_id = 'c-1';
-- the next start is attempt 2, the last one
SELECT status, worker, attempts FROM jobs.start('c-1', 'celery@b', '1 hour');
SELECT rn_try($$SELECT jobs.succeed('c-1', '{"late": true}', attempt => 1)$$);
SELECT rn_try($$SELECT jobs.retry('c-1', 'once more', attempt => 2)$$);
SELECT status, attempts FROM jobs.job WHERE task_id = 'c-1';
SELECT status, attempts, result FROM jobs.succeed('c-1', '{"ok": true}', attempt => 2);
-- run time over the last attempt, from its start
SELECT date_started > date_created AS restarted FROM jobs.job WHERE task_id = 'c-1';

--
-- Repeated and late reports: a repeat returns the job unchanged, so does a
-- success after a failure (the failure path owns failures); anything else on
-- a finished job is PT409
--
SELECT status, result FROM jobs.succeed('c-1', '{"again": true}');
SELECT status, result FROM jobs.succeed('c-1', '{"again": true}', attempt => 2);
SELECT rn_try($$SELECT jobs.succeed('c-1', '{}', attempt => 1)$$);
SELECT rn_try($$SELECT jobs.fail('c-1', 'x')$$);
SELECT rn_try($$SELECT jobs.start('c-1')$$);
SELECT task_id FROM jobs.enqueue('rn_celery', task_id => 'c-2');
SELECT status FROM jobs.fail('c-2', 'broken', 'ValueError');
SELECT status, result->>'error_message' AS msg FROM jobs.fail('c-2', 'other');
SELECT status, result->>'error_message' AS msg FROM jobs.succeed('c-2');
SELECT rn_try($$SELECT jobs.revoke('c-2')$$);
SELECT rn_try($$SELECT jobs.start('rn-unknown')$$);
-- an in-flight task id enqueued again: the error names the task id
SELECT task_id FROM jobs.enqueue('rn_celery', task_id => 'c-3');
SELECT rn_try($$SELECT jobs.enqueue('rn_celery', task_id => 'c-3')$$);
SELECT rn_try($$SELECT jobs.enqueue('rn_celery', task_id => 'c-2')$$);

--
-- revoke with a reason
--
SELECT status, result FROM jobs.revoke('c-3', 'expired');
SELECT status, result FROM jobs.revoke('c-3', 'terminated');
SELECT task_id FROM jobs.enqueue('rn_celery', task_id => 'c-4');
SELECT status, result FROM jobs.revoke('c-4');

--
-- Cancel reaches the runner: a leased job run outside the database is asked
-- to stop (heartbeat answers; a NOTIFY on its channel, see
-- test/specs/runner_fence.spec); its report is the outcome
--
SELECT jobs.cancel_channel('celery@a') AS short,
       jobs.cancel_channel(repeat('w', 60)) = 'pg_jobs_cancel_' || md5(repeat('w', 60)) AS long,
       length(jobs.cancel_channel(repeat('w', 48))) AS at_limit;
SELECT task_id FROM jobs.enqueue('rn_celery', task_id => 'k-1');
SELECT attempts FROM jobs.start('k-1', 'celery@a', '1 hour');
SELECT rn_try($$SELECT jobs.cancel('k-1')$$);
SELECT status, cancel_requested IS NOT NULL AS requested FROM jobs.cancel('k-1', force => true);
SELECT status, cancel_requested IS NOT NULL AS requested FROM jobs.heartbeat('k-1', 1);
SELECT rn_try($$SELECT jobs.retry('k-1')$$);
SELECT status, result FROM jobs.revoke('k-1', 'cancelled', attempt => 1);
-- the runner may also finish first: its success is the outcome
SELECT task_id FROM jobs.enqueue('rn_celery', task_id => 'k-2');
SELECT attempts FROM jobs.start('k-2', 'celery@a', '1 hour');
SELECT status FROM jobs.cancel('k-2', true);
SELECT status, result FROM jobs.succeed('k-2', '{"done": 1}', 1);
-- a runner that is gone: the launcher's reconciliation revokes, never requeues
SELECT task_id FROM jobs.enqueue('rn_celery', task_id => 'k-3');
SELECT attempts FROM jobs.start('k-3', 'celery@gone', '1 hour');
SELECT status FROM jobs.cancel('k-3', true);
SELECT jobs._reconcile(id, 'celery@gone', 'LeaseExpired', 'the lease expired') FROM jobs.job WHERE task_id = 'k-3';
SELECT status, result FROM jobs.job WHERE task_id = 'k-3';
-- a job started without a lease cannot be reached: revoked at once, as before
SELECT task_id FROM jobs.enqueue('rn_celery', task_id => 'k-4');
SELECT attempts FROM jobs.start('k-4');
SELECT status, cancel_requested FROM jobs.cancel('k-4', true);
-- an expired lease without a cancel request requeues, and clears the runner
SELECT task_id FROM jobs.enqueue('rn_celery', task_id => 'k-5');
SELECT attempts FROM jobs.start('k-5', 'celery@gone', '1 hour');
SELECT jobs._reconcile(id, 'celery@gone', 'LeaseExpired', 'the lease expired') FROM jobs.job WHERE task_id = 'k-5';
SELECT status, attempts, worker, lease_until FROM jobs.job WHERE task_id = 'k-5';
SELECT rn_try($$SELECT jobs.succeed('k-5', '{}', attempt => 1)$$);

--
-- run_at is the lifecycle's: only a retry moves it (a waiting job's run_at
-- holds it back for its dependencies)
--
SELECT task_id FROM jobs.enqueue('rn_celery', owner => 'rn_alice', task_id => 'a-1');
SET ROLE rn_alice;
SELECT rn_try($$UPDATE jobs.job SET run_at = now() WHERE task_id = 'a-1'$$);
SELECT attempts FROM jobs.start('a-1', 'celery@a', '1 hour');
SELECT status FROM jobs.retry('a-1', 'wait', '1 hour', 1);
RESET ROLE;

--
-- acknowledge(all): every visible unacknowledged job, in flight and unowned
-- too, for a holder of the change permission, who still changes nothing else
--
UPDATE jobs.job SET acknowledged = true WHERE NOT acknowledged;
SELECT task_id FROM jobs.enqueue('rn_celery', owner => NULL, task_id => 'u-1');
SELECT task_id FROM jobs.enqueue('rn_celery', owner => NULL, task_id => 'u-2');
SELECT attempts FROM jobs.start('u-2', 'celery@a', '1 hour');
SELECT task_id FROM jobs.enqueue('rn_celery', owner => 'rn_alice', task_id => 'a-2');
SET ROLE rn_mon;
SELECT rn_try($$UPDATE jobs.job SET status = 'revoked' WHERE task_id = 'u-1'$$);
SELECT rn_try($$UPDATE jobs.job SET acknowledged = true, result = '{"x": 1}' WHERE task_id = 'u-2'$$);
SELECT jobs.acknowledge("all" => true);
RESET ROLE;
SELECT task_id, status, acknowledged FROM jobs.job WHERE task_id IN ('u-1', 'u-2', 'a-2') ORDER BY task_id;
