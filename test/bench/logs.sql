-- Bench: log entries per second written by one session, next to the same
-- number of single-row INSERTs into a plain table.  No asserts: it prints.
--
--   psql -X -q -v n=20000 -f test/bench/logs.sql      (in a database with pg_jobs)
--   bash test/bench/logs                               (throw-away cluster)
--
-- Each row of the result is one way of writing n rows:
--   batched    - n writes in one transaction (what a buffered flush costs)
--   committed  - one transaction per write (an external runner logging as it goes)
-- and, for jobs.log, with nobody following, with a follower whose filter does
-- not match (the cheap check only), and with one that matches every entry
-- (a NOTIFY per entry); and jobs._log_write, the engine's path by job id.
\if :{?n}
\else
\set n 20000
\endif
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_jobs;
RESET client_min_messages;
SET pg_jobs.log_max_entries = 0;
SELECT jobs.register_task_type('bench_logs') \gset
SELECT task_id AS bench_task FROM jobs.enqueue('bench_logs', task_id => 'bench-logs-' || pg_backend_pid()) \gset
CREATE TEMP TABLE bench (way text, commits text, rows int, seconds float8);
-- the reference: a plain, logged table shaped like jobs.job_log (a temp
-- table would skip WAL and flatter it)
CREATE TABLE bench_plain_log (id bigserial PRIMARY KEY, job_id bigint,
                                      at timestamptz DEFAULT clock_timestamp(),
                                      level text, source text, message text, fields jsonb);
CREATE INDEX ON bench_plain_log (job_id, id);

CREATE PROCEDURE pg_temp.run(way text, n int, per_commit boolean, task text)
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    job bigint := (SELECT j.id FROM jobs.job j WHERE j.task_id = task);
BEGIN
    t0 := clock_timestamp();
    FOR i IN 1..n LOOP
        IF way = 'insert' THEN
            INSERT INTO bench_plain_log (job_id, level, source, message)
            VALUES (1, 'info', 'bench', 'entry ' || i);
        ELSIF way = 'jobs._log_write' THEN
            PERFORM jobs._log_write(job, 'entry ' || i, 'info', 'bench');
        ELSE
            PERFORM jobs.log('entry ' || i, 'info', 'bench', task_id => task);
        END IF;
        IF per_commit THEN
            COMMIT;
        END IF;
    END LOOP;
    INSERT INTO bench VALUES (way, CASE WHEN per_commit THEN 'one per row' ELSE 'one for all' END,
                              n, extract(epoch FROM clock_timestamp() - t0));
    COMMIT;
END $$;

CALL pg_temp.run('insert', :n, false, NULL);
CALL pg_temp.run('jobs.log', :n, false, :'bench_task');
CALL pg_temp.run('jobs._log_write', :n, false, :'bench_task');
CALL pg_temp.run('insert', :n, true, NULL);
CALL pg_temp.run('jobs.log', :n, true, :'bench_task');
-- a follower whose filter never matches: the writer only pays the check
SELECT jobs.follow(:'bench_task', 'error') IS NOT NULL AS following \gset
CALL pg_temp.run('jobs.log, follower not matching', :n, false, :'bench_task');
CALL pg_temp.run('jobs.log, follower not matching', :n, true, :'bench_task');
SELECT jobs.unfollow() \gset
-- a follower that matches every entry: one NOTIFY per entry.  This session
-- stops listening so that it does not print them; the writer's cost is the same.
SELECT jobs.follow(:'bench_task') IS NOT NULL AS following \gset
UNLISTEN *;
CALL pg_temp.run('jobs.log, follower matching', :n, false, :'bench_task');
CALL pg_temp.run('jobs.log, follower matching', :n, true, :'bench_task');
SELECT jobs.unfollow() \gset

SELECT way, commits, rows, round(seconds::numeric, 3) AS seconds,
       round(rows / nullif(seconds, 0)) AS rows_per_second
FROM bench ORDER BY commits, way DESC;

DROP TABLE bench_plain_log;
SELECT jobs._purge_logs(ARRAY(SELECT id FROM jobs.job WHERE task_id = :'bench_task')) AS purged \gset
SELECT jobs.revoke(:'bench_task') \gset
