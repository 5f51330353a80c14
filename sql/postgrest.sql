--
-- PostgREST replay: every monitoring endpoint for an anonymous role, a plain
-- user, a user with the change permission, a monitor and an admin.
--
-- No PostgREST binary can be installed here, so request() sends what
-- PostgREST sends for GET/POST /rpc/<fn>, over a separate connection (dblink)
-- as the authenticator role of the documented deployment:
--   BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY      (GET; READ WRITE for POST)
--   select set_config('search_path', ...), set_config('role', <role>, true),
--          set_config('request.jwt.claims', <claims>, true),
--          set_config('request.headers', <lower-cased headers>, true), ...
--   SELECT ... FROM "jobs"."fn"("arg" := $1::type, ...)
--   COMMIT (ROLLBACK on error)
-- and answers with the HTTP status PostgREST derives from the SQLSTATE.
--
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_jobs CASCADE;
RESET client_min_messages;
CREATE EXTENSION pg_jobs;
CREATE EXTENSION IF NOT EXISTS dblink;
\set VERBOSITY terse

-- The deployment of the README: a LOGIN authenticator that can only switch
-- to the NOLOGIN roles PostgREST serves.
CREATE ROLE rest_authenticator LOGIN NOINHERIT;
CREATE ROLE rest_anon NOLOGIN;                                  -- db-anon-role
CREATE ROLE rest_user NOLOGIN;                                  -- a plain user
CREATE ROLE rest_acker NOLOGIN;                                 -- with the change permission
CREATE ROLE rest_monitor NOLOGIN IN ROLE jobs_monitor;          -- system monitoring
CREATE ROLE rest_admin NOLOGIN IN ROLE jobs_admin;              -- staff
GRANT rest_anon, rest_user, rest_acker, rest_monitor, rest_admin TO rest_authenticator;
GRANT UPDATE (acknowledged) ON jobs.job TO rest_acker;

-- http_status(sqlstate, authenticated): PostgREST's mapping (Error.hs); NULL = no error.
CREATE FUNCTION http_status(state text, authenticated boolean) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN state IS NULL THEN 200
        WHEN state = '42501' THEN CASE WHEN authenticated THEN 403 ELSE 401 END
        WHEN state ~ '^PT[0-9]{3}$' THEN substr(state, 3)::integer
        WHEN state IN ('23503', '23505') THEN 409
        WHEN state = '25006' THEN 405
        WHEN state IN ('42883', '42P01') THEN 404
        WHEN state = 'P0001' THEN 400
        WHEN state = '53400' THEN 500
        WHEN left(state, 2) IN ('0L', '0P', '28') THEN 403
        WHEN left(state, 2) IN ('08', '53') THEN 503
        WHEN left(state, 2) = '54' THEN 413
        WHEN left(state, 2) IN ('09', '25', '2D', '38', '39', '3B', '40', '55', '57', '58',
                                'F0', 'HV', 'P0', 'XX') THEN 500
        ELSE 400
    END
$$;

-- request(verb, role, fn, args, accept): one PostgREST request to /rpc/fn.
-- args are the query string (GET) or body (POST) parameters, as text;
-- role NULL is the anonymous role (no JWT).
CREATE FUNCTION request(verb text, role text, fn text, args jsonb DEFAULT '{}',
                        accept text DEFAULT 'application/json',
                        OUT status integer, OUT body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    f       record;
    arg     record;
    calls   text[] := '{}';
    vals    text[] := '{}';
    call    text;
    result  text;
    state   text;
    n       integer := 0;
    db_role text := coalesce(role, 'rest_anon');
    claims  jsonb := CASE WHEN role IS NULL THEN '{}' ELSE jsonb_build_object('role', role) END;
BEGIN
    SELECT p.proname, p.proargnames, p.proargtypes, p.proretset INTO f
    FROM pg_proc p WHERE p.pronamespace = 'jobs'::regnamespace AND p.proname = fn;
    IF NOT FOUND THEN           -- PostgREST answers this itself (PGRST202)
        status := 404;
        body := jsonb_build_object('code', 'PGRST202', 'message', 'Could not find the function jobs.' || fn);
        RETURN;
    END IF;
    FOR arg IN SELECT key, value FROM jsonb_each_text(args) ORDER BY key LOOP
        n := n + 1;
        calls := calls || format('%I := $%s::%s', arg.key, n,
                                 format_type(f.proargtypes[array_position(f.proargnames, arg.key) - 1], NULL));
        vals := vals || quote_nullable(arg.value);
    END LOOP;
    call := format('"jobs".%I(%s)', fn, array_to_string(calls, ', '));
    IF f.proretset THEN
        call := format('SELECT coalesce(json_agg(_pgrst_t), ''[]'')::text FROM %s _pgrst_t', call);
    ELSE
        call := format('SELECT to_json(_pgrst_t.pgrst_scalar)::text FROM (SELECT %s AS pgrst_scalar) _pgrst_t', call);
    END IF;

    PERFORM dblink_connect('pgrst', format('host=%s port=%s dbname=%s user=rest_authenticator',
                                           split_part(current_setting('unix_socket_directories'), ',', 1),
                                           current_setting('port'), current_database()));
    BEGIN
        PERFORM dblink_exec('pgrst', CASE verb WHEN 'GET'
                                     THEN 'BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY'
                                     ELSE 'BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE' END);
        PERFORM * FROM dblink('pgrst', format(
            'select set_config(''search_path'', %L, true), set_config(''role'', %L, true), '
            'set_config(''request.jwt.claims'', %L, true), set_config(''request.headers'', %L, true), '
            'set_config(''request.method'', %L, true), set_config(''request.path'', %L, true)',
            '"jobs", "public"', db_role, claims::text,
            jsonb_build_object('accept', accept, 'user-agent', 'pg_jobs-replay')::text,
            verb, '/rpc/' || fn)) AS t(a text, b text, c text, d text, e text, f text);
        PERFORM dblink_exec('pgrst', 'PREPARE pgrst_call AS ' || call);
        SELECT t.body INTO result
        FROM dblink('pgrst', CASE WHEN n = 0 THEN 'EXECUTE pgrst_call'
                                  ELSE format('EXECUTE pgrst_call(%s)', array_to_string(vals, ', ')) END)
             AS t(body text);
        PERFORM dblink_exec('pgrst', 'COMMIT');
        body := result::jsonb;
    EXCEPTION WHEN OTHERS THEN
        state := SQLSTATE;
        body := jsonb_build_object('code', state, 'message', SQLERRM);
        PERFORM dblink_exec('pgrst', 'ROLLBACK', false);
    END;
    PERFORM dblink_disconnect('pgrst');
    status := http_status(state, role IS NOT NULL);
END
$$;

-- list(body, key): the key of each element of a JSON array body (or of a
-- v10 page's results), comma-separated; an error body gives its code.
CREATE FUNCTION list(body jsonb, key text DEFAULT 'task_id') RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN jsonb_typeof(body) = 'array' THEN
            (SELECT string_agg(x->>key, ',') FROM jsonb_array_elements(body) x)
        WHEN body ? 'results' THEN
            (SELECT string_agg(x->>key, ',') FROM jsonb_array_elements(body->'results') x)
        ELSE body->>'code'
    END
$$;

-- The data: each user's jobs and two unowned (system) ones.
SELECT count(*) FROM (
    SELECT jobs.register_task_type('consume_file')
    UNION ALL SELECT jobs.register_task_type('sanity_check', legacy_name => 'check_sanity',
                                             runnable => true, run_input => '{"raise_on_error": false}')
) t;
SELECT count(*) FROM (
    SELECT jobs.enqueue('consume_file', '{"filename": "a.pdf"}', 'web_ui', 'rest_user', task_id => 'u1', dedup_key => 'a.pdf')
    UNION ALL SELECT jobs.enqueue('consume_file', '{"filename": "b.pdf"}', 'folder_consume', 'rest_user', task_id => 'u2')
    UNION ALL SELECT jobs.enqueue('consume_file', '{"filename": "c.pdf"}', 'api_upload', 'rest_acker', task_id => 'k1')
    UNION ALL SELECT jobs.enqueue('sanity_check', '{}', 'scheduled', NULL, task_id => 'sys1')
    UNION ALL SELECT jobs.enqueue('sanity_check', '{}', 'scheduled', NULL, task_id => 'sys2')
) j;
SELECT task_id, status FROM jobs.start('u2');
SELECT task_id, status FROM jobs.succeed('u2', '{"duplicate_of": 1}');
SELECT task_id, status FROM jobs.start('k1');
SELECT task_id, status FROM jobs.fail('k1', 'broken');
SELECT task_id, status FROM jobs.start('sys1');
SELECT task_id, status FROM jobs.succeed('sys1', '{"reason": "No issues detected"}');

CREATE TEMP TABLE who (role text, name text);
INSERT INTO who VALUES (NULL, 'anonymous'), ('rest_user', 'user'), ('rest_acker', 'change permission'),
                       ('rest_monitor', 'monitor'), ('rest_admin', 'admin');

--
-- GET endpoints, every role
--
-- GET /rpc/tasks: RLS decides; anonymous sees the unowned jobs only
SELECT w.name, r.status, r.body->'count' AS count, list(r.body) AS tasks
FROM who w, request('GET', w.role, 'tasks') r;
-- GET /rpc/tasks?status={failure}&ordering=task_type&page_size=1
SELECT w.name, r.status, r.body->'count' AS count, r.body->'next' AS next,
       r.body->'results'->0->>'task_id' AS first
FROM who w, request('GET', w.role, 'tasks', '{"status": "{failure}", "ordering": "task_type", "page_size": "1"}') r;
-- Accept: application/json; version=9 turns it into the v9 list
SELECT w.name, r.status, jsonb_typeof(r.body) AS kind, list(r.body) AS tasks,
       list(r.body, 'task_name') AS names, list(r.body, 'status') AS statuses
FROM who w, request('GET', w.role, 'tasks', '{}', 'application/json; version=9') r;
-- GET /rpc/tasks_v9?type=scheduled_task
SELECT w.name, r.status, list(r.body) AS tasks
FROM who w, request('GET', w.role, 'tasks_v9', '{"type": "scheduled_task"}') r;
-- GET /rpc/status_counts
SELECT w.name, r.status, r.body FROM who w, request('GET', w.role, 'status_counts') r;
-- GET /rpc/active
SELECT w.name, r.status, list(r.body) AS tasks
FROM who w, request('GET', w.role, 'active') r;
-- GET /rpc/summary?days=7: global for the monitor and the admin
SELECT w.name, r.status, list(r.body, 'task_type') AS task_types, list(r.body, 'total_count') AS totals
FROM who w, request('GET', w.role, 'summary', '{"days": "7"}') r;

--
-- POST endpoints, every role
--
-- POST /rpc/run {"task_type": "sanity_check"}: admins only (401 without a JWT)
SELECT w.name, r.status, jsonb_typeof(r.body->'task_id') AS task_id, r.body->>'code' AS code
FROM who w, request('POST', w.role, 'run', '{"task_type": "sanity_check"}') r;
SELECT owner, trigger_source, input FROM jobs.job WHERE owner = 'rest_admin';
-- POST /rpc/acknowledge {"tasks": [<k1>]}: the change permission
SELECT w.name, r.status, r.body FROM who w,
    request('POST', w.role, 'acknowledge', jsonb_build_object('tasks', (SELECT '{' || id || '}' FROM jobs.job WHERE task_id = 'k1'))) r;
-- POST /rpc/acknowledge {"all": true}: every visible unacknowledged job
SELECT w.name, r.status, r.body FROM who w, request('POST', w.role, 'acknowledge', '{"all": "true"}') r;
SELECT task_id, acknowledged FROM jobs.job WHERE task_id IN ('u1', 'u2', 'k1', 'sys1', 'sys2') ORDER BY id;
-- POST /rpc/set_documents_relation: admins only
CREATE TABLE rest_docs (id integer PRIMARY KEY, title text);
GRANT SELECT ON rest_docs TO rest_admin;
SELECT w.name, r.status, r.body FROM who w, request('POST', w.role, 'set_documents_relation', '{"relation": "rest_docs"}') r;

--
-- Failures: 400, 403, 404, 405, 409
--
SELECT 'page=0' AS request, status, body->>'code' AS code, body->>'message' AS message
FROM request('GET', 'rest_user', 'tasks', '{"page": "0"}')
UNION ALL
SELECT 'page_size=1000', status, NULL, 'results: ' || jsonb_array_length(body->'results')
FROM request('GET', 'rest_user', 'tasks', '{"page_size": "1000"}')
UNION ALL
SELECT 'ordering=owner', status, body->>'code', body->>'message'
FROM request('GET', 'rest_user', 'tasks', '{"ordering": "owner"}')
UNION ALL
SELECT 'status={done}', status, body->>'code', body->>'message'
FROM request('GET', 'rest_user', 'tasks', '{"status": "{done}"}')
UNION ALL
SELECT 'Accept version=11', status, body->>'code', body->>'message'
FROM request('GET', 'rest_user', 'tasks', '{}', 'application/json; version=11')
UNION ALL
SELECT 'tasks_v9 type=x', status, body->>'code', body->>'message'
FROM request('GET', 'rest_user', 'tasks_v9', '{"type": "x"}')
UNION ALL
SELECT 'summary days=many', status, body->>'code', body->>'message'
FROM request('GET', 'rest_monitor', 'summary', '{"days": "many"}')
UNION ALL
SELECT 'summary days=null', status, body->>'code', body->>'message'
FROM request('GET', 'rest_monitor', 'summary', '{"days": null}')
UNION ALL
SELECT 'run unknown type', status, body->>'code', body->>'message'
FROM request('POST', 'rest_admin', 'run', '{"task_type": "nope"}')
UNION ALL
SELECT 'run not allowlisted', status, body->>'code', body->>'message'
FROM request('POST', 'rest_admin', 'run', '{"task_type": "consume_file"}')
UNION ALL
SELECT 'acknowledge both', status, body->>'code', body->>'message'
FROM request('POST', 'rest_acker', 'acknowledge', '{"tasks": "{1}", "all": "true"}')
UNION ALL
SELECT 'acknowledge twice', status, body->>'code', body->>'message'
FROM request('POST', 'rest_acker', 'acknowledge', '{"tasks": "{3,3}"}')
UNION ALL
SELECT 'acknowledge invisible', status, body->>'code', body->>'message'
FROM request('POST', 'rest_acker', 'acknowledge', '{"tasks": "{1}"}')
UNION ALL
SELECT 'set_documents_relation x', status, body->>'code', body->>'message'
FROM request('POST', 'rest_admin', 'set_documents_relation', '{"relation": "jobs.trigger_source"}')
UNION ALL
SELECT 'GET run (volatile)', status, body->>'code', body->>'message'
FROM request('GET', 'rest_admin', 'run', '{"task_type": "sanity_check"}')
UNION ALL
SELECT 'GET acknowledge (volatile)', status, body->>'code', body->>'message'
FROM request('GET', 'rest_acker', 'acknowledge', '{"all": "true"}')
UNION ALL
SELECT 'no such function', status, body->>'code', body->>'message'
FROM request('GET', 'rest_user', 'no_such_function')
UNION ALL
SELECT 'succeed invisible', status, body->>'code', body->>'message'
FROM request('POST', 'rest_user', 'succeed', '{"task_id": "k1"}')
UNION ALL
SELECT 'fail finished', status, body->>'code', body->>'message'
FROM request('POST', 'rest_acker', 'fail', '{"task_id": "k1", "error_message": "again"}')
UNION ALL
SELECT 'enqueue dedup', status, body->>'code', body->>'message'
FROM request('POST', 'rest_user', 'enqueue', '{"task_type": "consume_file", "dedup_key": "a.pdf"}')
UNION ALL
SELECT 'enqueue for another', status, body->>'code', body->>'message'
FROM request('POST', 'rest_user', 'enqueue', '{"task_type": "consume_file", "owner": "rest_admin"}');
-- the failures changed nothing: the five jobs, the admin's run, the one setting
SELECT count(*) AS jobs, count(*) FILTER (WHERE owner = 'rest_admin') AS runs FROM jobs.job;
SELECT name, value FROM jobs.setting;
