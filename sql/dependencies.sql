--
-- Dependencies (depends_on), children (parent_id), and the queue position
-- and progress fields of v10 rows.
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
-- job ids depend on what ran before: messages show them as N
CREATE OR REPLACE FUNCTION try_n(sql text) RETURNS text LANGUAGE sql
    RETURN regexp_replace(try(sql), '[0-9]+', 'N', 'g');
CREATE OR REPLACE FUNCTION jid(tid text) RETURNS bigint LANGUAGE sql
    RETURN (SELECT id FROM jobs.job WHERE task_id = tid);
-- st(task_id): status, run_at state and result reason of a job
CREATE OR REPLACE FUNCTION st(tid text) RETURNS text LANGUAGE sql
    RETURN (SELECT status || CASE WHEN status = 'pending' AND run_at = jobs._waiting_run_at()
                                  THEN ' (waiting)' ELSE '' END
                   || coalesce(' ' || regexp_replace(result->>'reason', '[0-9]+', 'N', 'g'), '')
            FROM jobs.job WHERE task_id = tid);

-- Types without handler in a queue of our own: the in-database workers
-- leave them alone, jobs.claim() hands them out.
SELECT name FROM jobs.register_task_type('dep_step', queue => 'deps');
SELECT name FROM jobs.register_task_type('dep_urgent', queue => 'deps', priority => 0);

-- A waits for nothing; B waits for A; C waits for A and B.
SELECT status FROM jobs.enqueue('dep_step', task_id => 'A');
SELECT status, run_at = jobs._waiting_run_at() AS waiting
FROM jobs.enqueue('dep_step', task_id => 'B', depends_on => ARRAY[jid('A')]);
SELECT status, run_at = jobs._waiting_run_at() AS waiting
FROM jobs.enqueue('dep_step', task_id => 'C', depends_on => ARRAY[jid('A'), jid('B'), jid('A')]);
SELECT task_id, depends_on_id = jid('A') AS on_a FROM jobs.job_dependency d
JOIN jobs.job j ON j.id = d.job_id ORDER BY d.job_id, d.depends_on_id;

-- Waiting jobs are not claimable: only A is handed out.
SELECT task_id FROM jobs.claim('deps', 10, 'w1');

-- v10 rows say what blocks them; a waiting job has no queue position.
SELECT task_id, status, blocked_by = ARRAY[jid('A')] AS blocked_by_a,
       cardinality(blocked_by) AS n_blocked, queue_position
FROM jobs.task_v10 WHERE queue = 'deps' ORDER BY id;

-- A succeeds: B becomes runnable at once, C still waits for B.
SELECT status FROM jobs.succeed('A');
SELECT st('B') AS b, st('C') AS c;
SELECT task_id, blocked_by = ARRAY[jid('B')] AS blocked_by_b, queue_position
FROM jobs.task_v10 WHERE task_id IN ('B', 'C') ORDER BY id;
SELECT task_id FROM jobs.claim('deps', 10, 'w1');
SELECT status FROM jobs.succeed('B');
SELECT st('C') AS c;
SELECT count(*) AS waits_left FROM jobs.job_dependency;

-- A dependency that already succeeded does not hold a new job back.
SELECT status, run_at = jobs._waiting_run_at() AS waiting
FROM jobs.enqueue('dep_step', task_id => 'D', depends_on => ARRAY[jid('A')]);
-- The requested run_at is kept: a delayed dependent waits for its time too.
SELECT status FROM jobs.enqueue('dep_step', task_id => 'E0');
SELECT status, run_at = jobs._waiting_run_at() AS waiting
FROM jobs.enqueue('dep_step', task_id => 'E', run_at => now() + interval '1 hour',
                  depends_on => ARRAY[jid('E0')]);
SELECT status FROM jobs.start('C');
SELECT status FROM jobs.succeed('C');
SELECT status FROM jobs.start('E0');
SELECT status FROM jobs.succeed('E0');
SELECT st('E') AS e, run_at > now() + interval '59 minutes' AS delayed,
       (SELECT queue_position FROM jobs.task_v10 WHERE task_id = 'E') AS queue_position
FROM jobs.job WHERE task_id = 'E';

-- Failure and revoke travel down the chain: F <- G <- H, and F <- I.
SELECT status FROM jobs.enqueue('dep_step', task_id => 'F');
SELECT status FROM jobs.enqueue('dep_step', task_id => 'G', depends_on => ARRAY[jid('F')]);
SELECT status FROM jobs.enqueue('dep_step', task_id => 'H', depends_on => ARRAY[jid('G')]);
SELECT status FROM jobs.enqueue('dep_step', task_id => 'I', depends_on => ARRAY[jid('F'), jid('D')]);
SELECT status FROM jobs.start('F');
SELECT status FROM jobs.fail('F', 'boom');
SELECT st('G') AS g, st('H') AS h, st('I') AS i;
SELECT result->'dependency' = to_jsonb(jid('F')) AS names_f, result->>'dependency_task_id' AS task
FROM jobs.job WHERE task_id = 'G';
SELECT count(*) AS waits_left FROM jobs.job_dependency;

SELECT status FROM jobs.enqueue('dep_step', task_id => 'J');
SELECT status FROM jobs.enqueue('dep_step', task_id => 'K', depends_on => ARRAY[jid('J')]);
SELECT status FROM jobs.cancel('J');
SELECT st('K') AS k;

-- A waiting job revoked by hand stops waiting; its dependency finishing
-- later changes nothing.
SELECT status FROM jobs.enqueue('dep_step', task_id => 'L');
SELECT status FROM jobs.enqueue('dep_step', task_id => 'M', depends_on => ARRAY[jid('L')]);
SELECT status FROM jobs.revoke('M');
SELECT count(*) AS waits_left FROM jobs.job_dependency;
SELECT status FROM jobs.start('L');
SELECT status FROM jobs.succeed('L');
SELECT st('M') AS m;

-- Rejected at enqueue: unknown ids, null ids, a failed or revoked
-- dependency (the job could never run), and a job depending on itself
-- (cycles cannot form: dependencies must exist before their dependents).
SELECT try_n($$SELECT jobs.enqueue('dep_step', depends_on => ARRAY[999999])$$);
SELECT try_n($$SELECT jobs.enqueue('dep_step', depends_on => ARRAY[NULL::bigint])$$);
SELECT try_n(format($$SELECT jobs.enqueue('dep_step', depends_on => ARRAY[%s])$$, jid('F')));
SELECT try_n(format($$SELECT jobs.enqueue('dep_step', depends_on => ARRAY[%s])$$, jid('G')));
SELECT try_n($$SELECT jobs.enqueue('dep_step', depends_on => ARRAY[pg_catalog.currval('jobs.job_id_seq') + 1])$$);
SELECT try_n($$SELECT jobs.enqueue('dep_step', parent_id => 999999)$$);
-- nothing was stored by the rejected enqueues
SELECT count(*) AS waits_left FROM jobs.job_dependency;
-- depends_on is fixed once enqueued
SELECT try_n(format($$UPDATE jobs.job SET depends_on = NULL WHERE id = %s$$, jid('E')));

-- Another role sees neither others' jobs nor their ids as dependencies.
CREATE ROLE dep_user NOLOGIN;
CREATE ROLE dep_other NOLOGIN;
SELECT status FROM jobs.enqueue('dep_step', task_id => 'other-1', owner => 'dep_other');
SELECT jid('other-1') AS other_id \gset
-- (jobs._waiting_run_at() is internal: read it here, before the role changes)
SELECT jobs._waiting_run_at() AS waiting_at \gset
SET ROLE dep_user;
SELECT try_n(format($$SELECT jobs.enqueue('dep_step', depends_on => ARRAY[%s])$$, :other_id));
SELECT status, run_at = :'waiting_at' AS waiting
FROM jobs.enqueue('dep_step', task_id => 'mine-1');
SELECT status, run_at = :'waiting_at' AS waiting
FROM jobs.enqueue('dep_step', task_id => 'mine-2', depends_on => ARRAY[jid('mine-1')]);
SELECT task_id, cardinality(blocked_by) AS n_blocked FROM jobs.task_v10 WHERE queue = 'deps' ORDER BY id;
RESET ROLE;
-- The job of dep_user is released when the admin's report finishes its
-- dependency: the release runs as the extension owner.
SELECT status FROM jobs.claim('deps', 10, 'w1') WHERE task_id = 'mine-1';
SELECT count(*) FROM jobs.claim('deps', 10, 'w1');
SELECT status FROM jobs.succeed('mine-1');
SELECT st('mine-2') AS mine2;

-- Children: parent_id links the jobs a job produced; jobs.children lists them.
SELECT status FROM jobs.enqueue('dep_step', task_id => 'P');
SELECT status FROM jobs.enqueue('dep_step', task_id => 'P-1', parent_id => jid('P'));
SELECT status FROM jobs.enqueue('dep_step', task_id => 'P-2', parent_id => jid('P'),
                                input => '{"finding": "x"}');
SELECT task_id, parent_id = jid('P') AS of_p, input_data FROM jobs.children('P');
SELECT count(*) FROM jobs.children('A');
SELECT try_n($$SELECT jobs.children('no-such-task')$$);
SELECT try_n($$SELECT jobs.children(NULL)$$);
SET ROLE dep_user;
SELECT try_n($$SELECT jobs.children('other-1')$$);
RESET ROLE;

-- Queue position: 1 = next to run in its queue, by priority then id; only
-- due pending jobs have one.
SELECT count(*) FROM jobs.claim('deps', 100, 'w1');
SELECT status FROM jobs.enqueue('dep_step', task_id => 'Q1');
SELECT status FROM jobs.enqueue('dep_step', task_id => 'Q2');
SELECT status FROM jobs.enqueue('dep_urgent', task_id => 'Q3');
SELECT status FROM jobs.enqueue('dep_step', task_id => 'Q4', run_at => now() + interval '1 day');
SELECT status FROM jobs.enqueue('dep_step', task_id => 'Q5', depends_on => ARRAY[jid('Q1')]);
SELECT task_id, status, queue_position, cardinality(blocked_by) AS n_blocked
FROM jobs.task_v10 WHERE task_id LIKE 'Q%' ORDER BY id;
-- the same through the v10 list and jobs.active()
SELECT r->>'task_id' AS task_id, r->'queue_position' AS queue_position,
       r->'blocked_by' = jsonb_build_array(jid('Q1')) AS blocked_by_q1
FROM jsonb_array_elements(jobs.tasks(task_type => ARRAY['dep_step', 'dep_urgent'],
                                     status => ARRAY['pending'])->'results') AS r
ORDER BY 1;
SELECT task_id, queue_position FROM jobs.active() WHERE task_id LIKE 'Q%' ORDER BY id;

-- Progress: done, total, percent (rounded; NULL without a total), message.
SELECT task_id FROM jobs.claim('deps', 1, 'w1');
SELECT progress_done, progress_total FROM jobs.progress('Q3', 1, 3, 'one third');
SELECT task_id, status, queue_position, progress_done, progress_total, progress_percent,
       progress_message
FROM jobs.active() WHERE task_id = 'Q3';
SELECT r->'progress_done' AS done, r->'progress_total' AS total,
       r->'progress_percent' AS percent, r->'progress_message' AS message
FROM jsonb_array_elements(jobs.tasks(task_id => 'Q3')->'results') AS r;
SELECT progress_done FROM jobs.progress('Q3', 5, NULL, 'no total');
SELECT progress_done, progress_total, progress_percent, progress_message
FROM jobs.active() WHERE task_id = 'Q3';
SELECT progress_done FROM jobs.progress('Q3', 2, 2);
SELECT progress_percent FROM jobs.active() WHERE task_id = 'Q3';

-- A job with a handler waits for its dependency, then a worker runs it.
CREATE FUNCTION dep_h(job jobs.job) RETURNS jsonb LANGUAGE sql
    RETURN jsonb_build_object('ran', true);
SELECT name FROM jobs.register_task_type('dep_run', 'dep_h(jobs.job)');
-- While it waits the workers keep sleeping and polling (the same processes:
-- its far-future run_at does not upset their sleep computation).
DO $$
BEGIN
    FOR i IN 1..600 LOOP
        EXIT WHEN (SELECT count(*) FROM jobs._worker_slots()) = 2;
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
SELECT array_agg(pid ORDER BY slot) AS pids_before FROM jobs._worker_slots() \gset
SELECT status FROM jobs.enqueue('dep_step', task_id => 'R0');
SELECT status FROM jobs.enqueue('dep_run', task_id => 'R1', depends_on => ARRAY[jid('R0')]);
SELECT pg_sleep(0.5);
SELECT st('R1') AS r1;
SELECT array_agg(pid ORDER BY slot) = :'pids_before' AS same_workers FROM jobs._worker_slots();
SELECT count(*) FROM jobs.claim('deps', 100, 'w1') WHERE task_id = 'R0';
SELECT status FROM jobs.succeed('R0');
DO $$
BEGIN
    FOR i IN 1..600 LOOP
        EXIT WHEN (SELECT status FROM jobs.job WHERE task_id = 'R1') = 'success';
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
SELECT status, result FROM jobs.job WHERE task_id = 'R1';

-- cleanup
DELETE FROM jobs.job WHERE queue = 'deps' OR task_type = 'dep_run';
DROP ROLE dep_user;
DROP ROLE dep_other;
