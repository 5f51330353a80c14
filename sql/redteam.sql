--
-- Red team: attacks on pg_jobs by ordinary roles.  Every attack must fail:
-- no role gains a right (rolsuper and rolcreaterole unchanged, no trojan
-- ever runs as anyone but its author) and no other role's jobs change.
-- The workers' paths run for real (pg_jobs.workers serves this database).
--
CREATE EXTENSION IF NOT EXISTS pg_jobs;
\set VERBOSITY terse
-- sqlstate(sql): run sql, answer 'ok' or its SQLSTATE (task ids vary).  No
-- SET search_path: the attacks must run under the attacker's own path.
CREATE FUNCTION public.sqlstate(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
GRANT EXECUTE ON FUNCTION public.sqlstate(text) TO PUBLIC;
CREATE FUNCTION public.rt_wait(tid text) RETURNS text LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE st jobs.status;
BEGIN
    FOR i IN 1..600 LOOP
        SELECT j.status INTO st FROM jobs.job j WHERE j.task_id = tid;
        IF st IN ('success', 'failure', 'revoked') THEN RETURN st; END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN 'timed out waiting, status ' || st;
END $$;
-- what the trojans saw: who ran them
CREATE TABLE public.trojan_ran (who name, what text);
GRANT INSERT, SELECT ON public.trojan_ran TO PUBLIC;

CREATE ROLE mallory LOGIN;                       -- no grants at all
CREATE ROLE rt_alice NOLOGIN;
CREATE ROLE rt_bob NOLOGIN;
CREATE ROLE rt_admin NOLOGIN IN ROLE jobs_admin;  -- trusted with jobs, not with the server
CREATE ROLE rt_creator NOLOGIN CREATEROLE;       -- can become superuser-equivalent on PG 15
GRANT rt_alice TO mallory;                       -- mallory acts for rt_alice's jobs only

CREATE FUNCTION public.rt_ok(job jobs.job) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT '{"ok": true}'::jsonb $$;
SELECT name FROM jobs.register_task_type('rt_work', 'public.rt_ok(jobs.job)');
SELECT name FROM jobs.register_task_type('rt_track');

CREATE VIEW public.rt_rights AS
    SELECT rolname, rolsuper, rolcreaterole FROM pg_roles
    WHERE rolname IN ('mallory', 'rt_alice', 'rt_bob', 'rt_admin', 'rt_creator') ORDER BY rolname;

--
-- 1. Name resolution in privileged code.  A pg_temp domain over "text"
--    whose check, run as anyone but mallory, would make mallory superuser.
--    Every API path that switches user or reaches a trigger is called.
--
SET ROLE mallory;
CREATE FUNCTION pg_temp.evil(t pg_catalog.text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.trojan_ran VALUES (current_user, 'domain');
    IF current_user <> 'mallory' THEN
        EXECUTE 'ALTER ROLE mallory SUPERUSER';
    END IF;
    RETURN true;
END $$;
CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.evil(VALUE));
CREATE FUNCTION pg_temp.evil_eq(a jobs.status, b jobs.status) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.trojan_ran VALUES (current_user, 'operator');
    IF current_user <> 'mallory' THEN
        EXECUTE 'ALTER ROLE mallory SUPERUSER';
    END IF;
    RETURN a::pg_catalog.text OPERATOR(pg_catalog.=) b::pg_catalog.text;
END $$;
CREATE OPERATOR pg_temp.= (LEFTARG = jobs.status, RIGHTARG = jobs.status, FUNCTION = pg_temp.evil_eq);
SET search_path = pg_temp, public, pg_catalog;
SELECT sqlstate($$SELECT jobs.enqueue('rt_track', owner => 'rt_alice', task_id => 'rt-dep-1')$$) AS dep;
SELECT sqlstate($$SELECT jobs.enqueue('rt_track', owner => 'rt_alice', task_id => 'rt-1',
                                      dedup_key => 'k1', depends_on => ARRAY[(SELECT id FROM jobs.job WHERE task_id = 'rt-dep-1')])$$) AS enqueue_with_dependency;
SELECT sqlstate($$SELECT jobs.start('rt-dep-1')$$) AS start;
SELECT sqlstate($$SELECT jobs.succeed('rt-dep-1', '{}')$$) AS succeed_releases_dependent;
SELECT sqlstate($$SELECT jobs.cancel('rt-1')$$) AS cancel;
SELECT sqlstate($$SELECT jobs.enqueue('rt_track', owner => 'rt_alice', dedup_key => 'k2')$$) AS dedup_first;
SELECT sqlstate($$SELECT jobs.enqueue('rt_track', owner => 'rt_alice', dedup_key => 'k2')$$) AS dedup_conflict;
SELECT sqlstate($$SELECT jobs.enqueue('rt_track', owner => 'rt_alice', trigger_source => 'web_ui')$$) AS trigger_source;
SELECT sqlstate($$SELECT jobs.tasks()$$) AS tasks;
SELECT sqlstate($$SELECT jobs.claim('default', 5, 'mallory-runner')$$) AS claim;
SELECT sqlstate($$SELECT jobs.unfollow()$$) AS unfollow;
-- a handler job: its owner's search_path does not reach the worker
SELECT sqlstate($$SELECT jobs.enqueue('rt_work', owner => 'rt_alice', task_id => 'rt-work-1')$$) AS handler_job;
SELECT rt_wait('rt-work-1') AS handler_job_outcome;
DROP OPERATOR pg_temp.= (jobs.status, jobs.status);
DROP DOMAIN pg_temp.text;
RESET search_path;
RESET ROLE;
SELECT * FROM rt_rights;
SELECT DISTINCT who FROM trojan_ran WHERE who <> 'mallory';

--
-- 2. An operator on jobs.status in a schema the workers and the launcher
--    might search: public, writable here as in a database from before 15.
--
GRANT CREATE ON SCHEMA public TO mallory;
SET ROLE mallory;
CREATE FUNCTION public.evil_eq(a jobs.status, b jobs.status) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.trojan_ran VALUES (current_user, 'public operator');
    IF current_user <> 'mallory' THEN
        EXECUTE 'ALTER ROLE mallory SUPERUSER';
    END IF;
    RETURN a::pg_catalog.text OPERATOR(pg_catalog.=) b::pg_catalog.text;
END $$;
CREATE OPERATOR public.= (LEFTARG = jobs.status, RIGHTARG = jobs.status, FUNCTION = public.evil_eq);
RESET ROLE;
-- the workers claim, run and finish jobs; the launcher reconciles
SELECT task_id AS t1 FROM jobs.enqueue('rt_work', owner => 'rt_alice', task_id => 'rt-work-2') \gset
SELECT task_id AS t2 FROM jobs.enqueue('rt_work', owner => 'rt_bob', task_id => 'rt-work-3') \gset
SELECT rt_wait(:'t1') AS a, rt_wait(:'t2') AS b;
SELECT pg_sleep(0.3);  -- a few launcher rounds
SELECT * FROM rt_rights;
SELECT DISTINCT who FROM trojan_ran WHERE who <> 'mallory';
DROP OPERATOR public.= (jobs.status, jobs.status);
DROP FUNCTION public.evil_eq(jobs.status, jobs.status);
REVOKE CREATE ON SCHEMA public FROM mallory;

--
-- 3. Who a handler may run as.  jobs_admin manages jobs; it must not reach
--    superuser (or a role that can become one) through them.
--
CREATE FUNCTION public.rt_admin_fn(job jobs.job) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.trojan_ran VALUES (current_user, 'admin handler');
    IF current_user <> 'rt_admin' THEN
        EXECUTE 'ALTER ROLE rt_admin SUPERUSER';
    END IF;
    RETURN '{}';
END $$;
ALTER FUNCTION public.rt_admin_fn(jobs.job) OWNER TO rt_admin;
SET ROLE rt_admin;
CREATE FUNCTION pg_temp.h(job jobs.job) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
SELECT sqlstate($$SELECT jobs.register_task_type('rt_temp', 'pg_temp.h(jobs.job)')$$) AS temp_handler;
SELECT sqlstate($$SELECT jobs.register_task_type('rt_evil', 'public.rt_admin_fn(jobs.job)')$$) AS own_handler;
SELECT sqlstate($$SELECT jobs.enqueue('rt_evil', owner => 'postgres')$$) AS owner_superuser;
SELECT sqlstate($$SELECT jobs.enqueue('rt_evil', owner => 'rt_creator')$$) AS owner_createrole;
SELECT sqlstate($$SELECT jobs.register_task_type('rt_evil', 'public.rt_admin_fn(jobs.job)', run_as => 'postgres')$$) AS run_as_superuser;
SELECT sqlstate($$UPDATE jobs.task_type SET run_as = 'postgres' WHERE name = 'rt_evil'$$) AS update_run_as;
SELECT sqlstate($$INSERT INTO jobs.task_type (name, display_name, handler, run_as)
                  VALUES ('rt_evil2', 'x', 'public.rt_admin_fn(jobs.job)', 'postgres')$$) AS insert_run_as;
SELECT sqlstate($$UPDATE jobs.task_type SET handler = 'pg_temp.h(jobs.job)' WHERE name = 'rt_evil'$$) AS update_temp_handler;
DROP FUNCTION pg_temp.h(jobs.job);
RESET ROLE;
-- a pending job of a superuser: the admin may not hand it to a superuser either
SELECT id AS pend FROM jobs.enqueue('rt_track', owner => 'rt_alice', run_at => now() + interval '1 hour') \gset
SET ROLE rt_admin;
SELECT sqlstate(format($$UPDATE jobs.job SET owner = 'postgres' WHERE id = %s$$, :pend)) AS give_to_superuser;
SELECT sqlstate(format($$UPDATE jobs.job SET owner = 'rt_bob' WHERE id = %s$$, :pend)) AS give_to_bob;
RESET ROLE;
-- a superuser's run_as with a handler written by the admin: refused at run time
SELECT name FROM jobs.register_task_type('rt_priv', 'public.rt_admin_fn(jobs.job)', run_as => 'postgres');
SELECT task_id AS t3 FROM jobs.enqueue('rt_priv', owner => NULL) \gset
SELECT rt_wait(:'t3') AS status;
SELECT result->>'error_type' AS error_type, result->>'error_message' AS error_message FROM jobs.job WHERE task_id = :'t3';
-- a superuser's own job whose handler the admin swapped afterwards: refused too
SELECT name FROM jobs.register_task_type('rt_swap', 'public.rt_ok(jobs.job)');
SELECT task_id AS t4 FROM jobs.enqueue('rt_swap', owner => 'postgres', run_at => now() + interval '1 second') \gset
SET ROLE rt_admin;
SELECT sqlstate($$UPDATE jobs.task_type SET handler = 'public.rt_admin_fn(jobs.job)' WHERE name = 'rt_swap'$$) AS swap_handler;
RESET ROLE;
SELECT rt_wait(:'t4') AS status;
SELECT result->>'error_type' AS error_type, result->>'error_message' AS error_message FROM jobs.job WHERE task_id = :'t4';
SELECT * FROM rt_rights;
SELECT DISTINCT who FROM trojan_ran WHERE what = 'admin handler';

--
-- 4. A job runs only if its role may execute the handler; enqueue says so
--    at once, the worker checks again before it runs.
--
CREATE FUNCTION public.rt_private(job jobs.job) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT '{"private": true}'::jsonb $$;
REVOKE EXECUTE ON FUNCTION public.rt_private(jobs.job) FROM PUBLIC;
SELECT name FROM jobs.register_task_type('rt_private', 'public.rt_private(jobs.job)', runnable => true);
SET ROLE mallory;
SELECT sqlstate($$SELECT jobs.enqueue('rt_private', owner => 'rt_alice')$$) AS enqueue_without_execute;
SELECT sqlstate($$SELECT jobs.run('rt_private')$$) AS run_needs_admin;
RESET ROLE;
GRANT EXECUTE ON FUNCTION public.rt_private(jobs.job) TO rt_alice;
SELECT task_id AS t5 FROM jobs.enqueue('rt_private', owner => 'rt_alice', run_at => now() + interval '1 second') \gset
REVOKE EXECUTE ON FUNCTION public.rt_private(jobs.job) FROM rt_alice;
SELECT rt_wait(:'t5') AS status;
SELECT result->>'error_type' AS error_type, result->>'error_message' AS error_message FROM jobs.job WHERE task_id = :'t5';

--
-- 5. Leaks through errors: a dedup conflict does not name a job the caller
--    cannot see.
--
SET ROLE rt_bob;
SELECT task_id FROM jobs.enqueue('rt_track', dedup_key => 'shared-key', task_id => 'bobs-secret-task');
SET ROLE mallory;
\set VERBOSITY default
SELECT jobs.enqueue('rt_track', owner => 'rt_alice', dedup_key => 'shared-key');
\set VERBOSITY terse
RESET ROLE;

--
-- 6. Bad input: limits with a documented SQLSTATE, not 54000 from an index.
--
SELECT sqlstate(format($$SELECT jobs.enqueue('rt_track', task_id => %L)$$, repeat('x', 256))) AS task_id_256;
SELECT sqlstate(format($$SELECT jobs.enqueue('rt_track', task_id => %L)$$, repeat('x', 255))) AS task_id_255;
SELECT sqlstate(format($$SELECT jobs.enqueue('rt_track', dedup_key => %L)$$, repeat('x', 1025))) AS dedup_key_1025;
SELECT sqlstate(format($$SELECT jobs.enqueue('rt_track', dedup_key => %L)$$, repeat('x', 3000))) AS dedup_key_3000;

-- nobody gained anything
SELECT * FROM rt_rights;
SELECT DISTINCT who FROM trojan_ran WHERE who NOT IN ('mallory', 'rt_admin');
