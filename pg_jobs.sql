/*
 * pg_jobs install script (source; make copies it to pg_jobs--<version>.sql).
 *
 * Layout of this file:
 *   1. roles and schema settings
 *   2. C support functions (visibility, locking, triggers)
 *   3. registry tables: trigger sources, task types
 *   4. jobs.job: hot partition for pending/started rows, history partitioned
 *      by day of completion so retention drops whole partitions
 *   5. lifecycle triggers
 *   6. row-level security and grants
 *   7. the tracking API
 *
 * Every function pins search_path and schema-qualifies what it uses.
 */

\echo Use "CREATE EXTENSION pg_jobs" to load this file. \quit

SET LOCAL search_path TO pg_catalog, pg_temp;

-- 1. Roles --------------------------------------------------------------

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'jobs_admin') THEN
        CREATE ROLE jobs_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'jobs_monitor') THEN
        CREATE ROLE jobs_monitor NOLOGIN;
    END IF;
END
$roles$;

COMMENT ON SCHEMA jobs IS 'pg_jobs: background jobs tracked, run and monitored inside PostgreSQL';

-- 2. C support functions ------------------------------------------------

CREATE FUNCTION jobs._is_admin() RETURNS boolean
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pg_jobs_is_admin';
COMMENT ON FUNCTION jobs._is_admin() IS
    'True when the current role is a superuser or a member of jobs_admin.';

CREATE FUNCTION jobs._visible(owner name) RETURNS boolean
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pg_jobs_visible';
COMMENT ON FUNCTION jobs._visible(name) IS
    'Row visibility rule: unowned jobs, jobs owned by a role the current role is a member of, and every job for admins.';

CREATE FUNCTION jobs._may_act_for(owner name) RETURNS boolean
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pg_jobs_may_act_for';
COMMENT ON FUNCTION jobs._may_act_for(name) IS
    'Write rule: admins act for anyone; others only for roles they are members of (never for unowned jobs).';

CREATE FUNCTION jobs._lock_job(job_id bigint) RETURNS void
    LANGUAGE c VOLATILE STRICT
    AS 'MODULE_PATHNAME', 'pg_jobs_lock_job';
COMMENT ON FUNCTION jobs._lock_job(bigint) IS
    'Takes the transaction-scoped lock that serialises lifecycle reports on one job.';

CREATE FUNCTION jobs._job_before_insert() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_jobs_job_before_insert';
CREATE FUNCTION jobs._job_before_update() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_jobs_job_before_update';

-- 3. Registry -----------------------------------------------------------

CREATE TABLE jobs.trigger_source (
    name            text PRIMARY KEY CHECK (name <> ''),
    display_name    text NOT NULL
);
COMMENT ON TABLE jobs.trigger_source IS
    'What can start a job (manual, scheduled, email_consume, ...). Admins may add their own.';

INSERT INTO jobs.trigger_source (name, display_name) VALUES
    ('manual', 'Manual'),
    ('scheduled', 'Scheduled'),
    ('web_ui', 'Web UI'),
    ('api_upload', 'API Upload'),
    ('folder_consume', 'Folder Consume'),
    ('email_consume', 'Email Consume'),
    ('system', 'System');

CREATE TYPE jobs.status AS ENUM ('pending', 'started', 'success', 'failure', 'revoked');
COMMENT ON TYPE jobs.status IS
    'Job lifecycle: pending -> started -> success | failure | revoked (see the README).';

CREATE FUNCTION jobs.status_display(status jobs.status) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN CASE status
        WHEN 'pending' THEN 'Pending'
        WHEN 'started' THEN 'Started'
        WHEN 'success' THEN 'Success'
        WHEN 'failure' THEN 'Failure'
        WHEN 'revoked' THEN 'Revoked'
    END;
COMMENT ON FUNCTION jobs.status_display(jobs.status) IS 'Display label of a status ("Success").';

CREATE TABLE jobs.task_type (
    name            text PRIMARY KEY CHECK (name <> ''),
    display_name    text NOT NULL,
    legacy_name     text,
    run_input       jsonb NOT NULL DEFAULT '{}',
    handler         regprocedure,
    queue           text NOT NULL DEFAULT 'default' CHECK (queue <> ''),
    tracked         boolean NOT NULL DEFAULT true,
    runnable        boolean NOT NULL DEFAULT false,
    priority        smallint NOT NULL DEFAULT 2 CHECK (priority BETWEEN 0 AND 3),
    max_attempts    integer NOT NULL DEFAULT 1 CHECK (max_attempts >= 1),
    timeout         interval CHECK (timeout > interval '0'),
    max_pending     integer CHECK (max_pending >= 0),
    run_as          name,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE jobs.task_type IS
    'Registry of task types: label, legacy (v9) name, queue, handler, defaults and limits. Change it with jobs.register_task_type().';

-- 4. Jobs ---------------------------------------------------------------

CREATE SEQUENCE jobs.job_id_seq AS bigint;

/*
 * One row per job.  The table is partitioned by lifecycle: pending and
 * started rows live in the small, heavily updated jobs.job_hot partition
 * that claims scan; finished rows move (on the transition) into jobs.job_done,
 * which is partitioned by day of completion so that retention drops whole
 * partitions instead of deleting rows.  Ids come from jobs.job_id_seq and
 * task ids are checked for uniqueness by the insert trigger, since a
 * partitioned table cannot carry a unique index without its partition key.
 */
CREATE TABLE jobs.job (
    id              bigint NOT NULL DEFAULT pg_catalog.nextval('jobs.job_id_seq'),
    task_id         text NOT NULL,
    task_type       text NOT NULL,
    queue           text NOT NULL,
    status          jobs.status NOT NULL DEFAULT 'pending',
    trigger_source  text NOT NULL DEFAULT 'manual',
    owner           name DEFAULT CURRENT_USER,
    input           jsonb NOT NULL DEFAULT '{}',
    result          jsonb,
    priority        smallint NOT NULL,
    run_at          timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL,
    date_created    timestamptz NOT NULL,
    date_started    timestamptz,
    date_done       timestamptz,
    acknowledged    boolean NOT NULL DEFAULT false,
    dedup_key       text,
    depends_on      bigint[],
    parent_id       bigint,
    progress_done   bigint,
    progress_total  bigint,
    progress_message text,
    worker          text,
    lease           interval,
    lease_until     timestamptz,
    last_error      jsonb
) PARTITION BY LIST (status);

COMMENT ON TABLE jobs.job IS
    'One row per job. Lifecycle enforced by triggers for every client; visibility by row-level security.';
COMMENT ON COLUMN jobs.job.task_id IS 'External id (e.g. a Celery task UUID); generated when not given.';
COMMENT ON COLUMN jobs.job.owner IS 'Role the job belongs to; NULL = unowned (visible to everyone).';
COMMENT ON COLUMN jobs.job.attempts IS 'How many times the job has been started.';
COMMENT ON COLUMN jobs.job.run_at IS 'Earliest time the job may start.';
COMMENT ON COLUMN jobs.job.worker IS 'Who runs the started job: a pg_jobs worker identity, or the name an external claimer gave.';
COMMENT ON COLUMN jobs.job.lease_until IS 'An external claim expires then unless renewed by jobs.heartbeat().';
COMMENT ON COLUMN jobs.job.last_error IS 'The error of the last failed attempt of a job that was retried.';

CREATE TABLE jobs.job_hot PARTITION OF jobs.job
    FOR VALUES IN ('pending', 'started')
    WITH (fillfactor = 70);
COMMENT ON TABLE jobs.job_hot IS 'Partition of jobs.job holding the pending and started jobs (internal).';

CREATE UNIQUE INDEX job_hot_id ON jobs.job_hot (id);
CREATE UNIQUE INDEX job_hot_task_id ON jobs.job_hot (task_id);
CREATE UNIQUE INDEX job_hot_dedup ON jobs.job_hot (task_type, dedup_key);
-- in-database workers take the next job of any queue; external claimers one queue
CREATE INDEX job_hot_next ON jobs.job_hot (priority, id) WHERE status = 'pending';
CREATE INDEX job_hot_claim ON jobs.job_hot (queue, priority, id) WHERE status = 'pending';
CREATE INDEX job_hot_started ON jobs.job_hot (lease_until) WHERE status = 'started';
CREATE INDEX job_hot_type_pending ON jobs.job_hot (task_type)
    WHERE status = 'pending';

CREATE TABLE jobs.job_done PARTITION OF jobs.job
    FOR VALUES IN ('success', 'failure', 'revoked')
    PARTITION BY RANGE (date_done);
COMMENT ON TABLE jobs.job_done IS
    'Partition of jobs.job holding finished jobs, one sub-partition per day of completion (internal).';

CREATE INDEX job_done_id ON jobs.job_done (id);
CREATE INDEX job_done_task_id ON jobs.job_done (task_id);
CREATE INDEX job_done_created ON jobs.job_done (date_created);

CREATE TABLE jobs.job_done_default PARTITION OF jobs.job_done DEFAULT;

/*
 * Create the daily history partitions from yesterday up to `days_ahead`
 * days from now.  A day whose rows already sit in the default partition is
 * left there (PostgreSQL refuses to create such a partition); those rows are
 * still found through jobs.job.  Returns how many partitions were created.
 */
CREATE FUNCTION jobs.ensure_partitions(days_ahead integer DEFAULT 7) RETURNS integer
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    d       date;
    part    text;
    created integer := 0;
BEGIN
    IF days_ahead IS NULL OR days_ahead < 0 OR days_ahead > 366 THEN
        RAISE EXCEPTION 'days_ahead must be between 0 and 366'
            USING ERRCODE = '22023';
    END IF;
    FOR d IN SELECT g::date
             FROM pg_catalog.generate_series(pg_catalog.now()::date - 1,
                                             pg_catalog.now()::date + days_ahead,
                                             interval '1 day') AS g
    LOOP
        part := 'job_done_' || pg_catalog.to_char(d, 'YYYYMMDD');
        CONTINUE WHEN pg_catalog.to_regclass(pg_catalog.format('jobs.%I', part)) IS NOT NULL;
        CONTINUE WHEN EXISTS (SELECT 1 FROM jobs.job_done_default
                              WHERE date_done >= d AND date_done < d + 1);
        EXECUTE pg_catalog.format(
            'CREATE TABLE jobs.%I PARTITION OF jobs.job_done FOR VALUES FROM (%L) TO (%L)',
            part, d::timestamptz, (d + 1)::timestamptz);
        EXECUTE pg_catalog.format('REVOKE ALL ON jobs.%I FROM PUBLIC', part);
        created := created + 1;
    END LOOP;
    RETURN created;
END
$fn$;
COMMENT ON FUNCTION jobs.ensure_partitions(integer) IS
    'Creates the daily history partitions of jobs.job_done up to days_ahead days from now; returns how many it created.';
REVOKE ALL ON FUNCTION jobs.ensure_partitions(integer) FROM PUBLIC;

SELECT jobs.ensure_partitions();

CREATE FUNCTION jobs.wait_time_seconds(job jobs.job) RETURNS double precision
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN pg_catalog.date_part('epoch', job.date_started - job.date_created);
COMMENT ON FUNCTION jobs.wait_time_seconds(jobs.job) IS
    'Seconds the job waited in the queue: date_started - date_created (NULL until started).';

CREATE FUNCTION jobs.duration_seconds(job jobs.job) RETURNS double precision
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN pg_catalog.date_part('epoch', job.date_done - job.date_started);
COMMENT ON FUNCTION jobs.duration_seconds(jobs.job) IS
    'Seconds the job ran: date_done - date_started (NULL until finished, or when it never started).';

CREATE TABLE jobs.job_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      bigint NOT NULL,
    at          timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    level       text NOT NULL DEFAULT 'info'
                CHECK (level IN ('debug', 'info', 'notice', 'warning', 'error')),
    source      text,
    message     text NOT NULL,
    fields      jsonb
);
CREATE INDEX job_log_job ON jobs.job_log (job_id, id);
COMMENT ON TABLE jobs.job_log IS 'Per-job structured log entries.';

-- 5. Lifecycle triggers -------------------------------------------------

CREATE TRIGGER job_before_insert BEFORE INSERT ON jobs.job
    FOR EACH ROW EXECUTE FUNCTION jobs._job_before_insert();
CREATE TRIGGER job_before_update BEFORE UPDATE ON jobs.job
    FOR EACH ROW EXECUTE FUNCTION jobs._job_before_update();

-- 6. Row-level security and grants --------------------------------------

ALTER TABLE jobs.job ENABLE ROW LEVEL SECURITY;
CREATE POLICY job_select ON jobs.job FOR SELECT
    USING (jobs._visible(owner));
CREATE POLICY job_insert ON jobs.job FOR INSERT
    WITH CHECK (jobs._may_act_for(owner));
CREATE POLICY job_update ON jobs.job FOR UPDATE
    USING (jobs._may_act_for(owner))
    WITH CHECK (jobs._may_act_for(owner));
CREATE POLICY job_delete ON jobs.job FOR DELETE
    USING (jobs._is_admin());

ALTER TABLE jobs.job_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY job_log_select ON jobs.job_log FOR SELECT
    USING (EXISTS (SELECT 1 FROM jobs.job j WHERE j.id OPERATOR(pg_catalog.=) job_log.job_id));

-- Everyone may use the API; what a role sees and may change is decided by
-- row-level security and the checks inside the functions.
GRANT USAGE ON SCHEMA jobs TO PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA jobs FROM PUBLIC;
-- The policy helpers must be callable by every role that queries jobs.job.
GRANT EXECUTE ON FUNCTION jobs._is_admin(), jobs._visible(name), jobs._may_act_for(name),
    jobs._lock_job(bigint), jobs.status_display(jobs.status),
    jobs.wait_time_seconds(jobs.job), jobs.duration_seconds(jobs.job) TO PUBLIC;
-- The registry is public knowledge; only admins change it.
GRANT SELECT ON jobs.trigger_source, jobs.task_type TO PUBLIC;
GRANT INSERT, UPDATE, DELETE ON jobs.trigger_source, jobs.task_type TO jobs_admin;
-- Rows are filtered by RLS; inserts and lifecycle updates are checked by the
-- triggers.  Only the columns a client legitimately sets are grantable.
GRANT SELECT ON jobs.job TO PUBLIC;
GRANT INSERT (task_id, task_type, trigger_source, owner, input, priority, run_at,
              dedup_key, depends_on, parent_id) ON jobs.job TO PUBLIC;
GRANT UPDATE (status, result, progress_done, progress_total, progress_message,
              worker, lease, lease_until)
    ON jobs.job TO PUBLIC;
GRANT USAGE ON SEQUENCE jobs.job_id_seq TO PUBLIC;
-- Acknowledging (UPDATE of acknowledged) is the "change permission"; admins
-- have it and may grant it to others.
GRANT SELECT, INSERT, UPDATE, DELETE ON jobs.job TO jobs_admin;
GRANT SELECT ON jobs.job_log TO PUBLIC;
GRANT SELECT, INSERT, DELETE ON jobs.job_log TO jobs_admin;
-- Partitions are reached only through jobs.job, where RLS applies.
REVOKE ALL ON jobs.job_hot, jobs.job_done, jobs.job_done_default FROM PUBLIC;

-- 7. Tracking API -------------------------------------------------------

CREATE FUNCTION jobs.register_task_type(
    name text,
    handler regprocedure DEFAULT NULL,
    queue text DEFAULT 'default',
    legacy_name text DEFAULT NULL,
    tracked boolean DEFAULT true,
    runnable boolean DEFAULT false,
    priority integer DEFAULT 2,
    max_attempts integer DEFAULT 1,
    timeout interval DEFAULT NULL,
    max_pending integer DEFAULT NULL,
    display_name text DEFAULT NULL,
    run_input jsonb DEFAULT '{}',
    run_as name DEFAULT NULL)
    RETURNS jobs.task_type
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r jobs.task_type;
BEGIN
    IF NOT jobs._is_admin() THEN
        RAISE EXCEPTION 'permission denied to register task types'
            USING ERRCODE = '42501',
                  HINT = 'Only superusers and members of jobs_admin may change the task type registry.';
    END IF;
    IF name IS NULL OR pg_catalog.btrim(name) = '' THEN
        RAISE EXCEPTION 'task type name must not be empty' USING ERRCODE = '22023';
    END IF;
    IF priority IS NULL OR priority NOT BETWEEN 0 AND 3 THEN
        RAISE EXCEPTION 'priority must be between 0 (urgent) and 3 (low), not %', coalesce(priority::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    IF max_attempts IS NULL OR max_attempts < 1 THEN
        RAISE EXCEPTION 'max_attempts must be at least 1' USING ERRCODE = '22023';
    END IF;
    IF timeout IS NOT NULL AND timeout <= interval '0' THEN
        RAISE EXCEPTION 'timeout must be positive' USING ERRCODE = '22023';
    END IF;
    IF max_pending IS NOT NULL AND max_pending < 0 THEN
        RAISE EXCEPTION 'max_pending must not be negative' USING ERRCODE = '22023';
    END IF;
    IF queue IS NULL OR queue = '' THEN
        RAISE EXCEPTION 'queue must not be empty' USING ERRCODE = '22023';
    END IF;
    IF handler IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM pg_catalog.pg_proc p
            WHERE p.oid OPERATOR(pg_catalog.=) handler
              AND p.pronargs OPERATOR(pg_catalog.=) 1
              AND p.proargtypes[0] OPERATOR(pg_catalog.=) 'jobs.job'::pg_catalog.regtype
              AND p.prorettype OPERATOR(pg_catalog.=) 'pg_catalog.jsonb'::pg_catalog.regtype
              AND p.prokind OPERATOR(pg_catalog.=) 'f' AND NOT p.proretset) THEN
        RAISE EXCEPTION 'handler % must be a function (job jobs.job) RETURNS jsonb', handler
            USING ERRCODE = '22023',
                  HINT = 'Declare it as CREATE FUNCTION f(job jobs.job) RETURNS jsonb.';
    END IF;
    IF run_as IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles ro
                                          WHERE ro.rolname OPERATOR(pg_catalog.=) run_as) THEN
        RAISE EXCEPTION 'run_as names no existing role: %', run_as USING ERRCODE = '22023';
    END IF;

    INSERT INTO jobs.task_type AS t (name, display_name, legacy_name, run_input, handler,
                                     queue, tracked, runnable, priority, max_attempts,
                                     timeout, max_pending, run_as)
    VALUES (register_task_type.name,
            coalesce(register_task_type.display_name,
                     pg_catalog.initcap(pg_catalog.replace(register_task_type.name, '_', ' '))),
            register_task_type.legacy_name,
            coalesce(register_task_type.run_input, '{}'),
            register_task_type.handler, register_task_type.queue,
            coalesce(register_task_type.tracked, true),
            coalesce(register_task_type.runnable, false),
            register_task_type.priority, register_task_type.max_attempts,
            register_task_type.timeout, register_task_type.max_pending,
            register_task_type.run_as)
    ON CONFLICT ON CONSTRAINT task_type_pkey DO UPDATE
        SET display_name = excluded.display_name,
            legacy_name = excluded.legacy_name,
            run_input = excluded.run_input,
            handler = excluded.handler,
            queue = excluded.queue,
            tracked = excluded.tracked,
            runnable = excluded.runnable,
            priority = excluded.priority,
            max_attempts = excluded.max_attempts,
            timeout = excluded.timeout,
            max_pending = excluded.max_pending,
            run_as = excluded.run_as,
            updated_at = pg_catalog.now()
    RETURNING t.* INTO r;
    RETURN r;
END
$fn$;
COMMENT ON FUNCTION jobs.register_task_type(text, regprocedure, text, text, boolean, boolean,
    integer, integer, interval, integer, text, jsonb, name) IS
    'Creates or replaces a task type (admins only). display_name defaults to the name in title case; run_as is the role that runs handlers of unowned jobs.';

CREATE FUNCTION jobs.enqueue(
    task_type text,
    input jsonb DEFAULT '{}',
    trigger_source text DEFAULT 'manual',
    owner name DEFAULT CURRENT_USER,
    priority integer DEFAULT NULL,
    run_at timestamptz DEFAULT NULL,
    dedup_key text DEFAULT NULL,
    depends_on bigint[] DEFAULT NULL,
    parent_id bigint DEFAULT NULL,
    task_id text DEFAULT NULL)
    RETURNS jobs.job
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    INSERT INTO jobs.job (task_type, input, trigger_source, owner, priority, run_at,
                          dedup_key, depends_on, parent_id, task_id)
    VALUES (enqueue.task_type, enqueue.input, enqueue.trigger_source, enqueue.owner,
            enqueue.priority, enqueue.run_at, enqueue.dedup_key, enqueue.depends_on,
            enqueue.parent_id, enqueue.task_id)
    RETURNING *;
END;
COMMENT ON FUNCTION jobs.enqueue(text, jsonb, text, name, integer, timestamptz, text,
    bigint[], bigint, text) IS
    'Creates a pending job and returns it; NULL when the task type is not tracked.';

CREATE FUNCTION jobs.enqueue_many(
    task_type text,
    inputs jsonb,
    trigger_source text DEFAULT 'manual',
    owner name DEFAULT CURRENT_USER,
    priority integer DEFAULT NULL,
    run_at timestamptz DEFAULT NULL)
    RETURNS SETOF jobs.job
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF inputs IS NULL OR pg_catalog.jsonb_typeof(inputs) <> 'array' THEN
        RAISE EXCEPTION 'inputs must be a JSON array of job inputs'
            USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    INSERT INTO jobs.job (task_type, input, trigger_source, owner, priority, run_at)
    SELECT enqueue_many.task_type, e.value, enqueue_many.trigger_source, enqueue_many.owner,
           enqueue_many.priority, enqueue_many.run_at
    FROM pg_catalog.jsonb_array_elements(inputs) WITH ORDINALITY AS e(value, n)
    ORDER BY e.n
    RETURNING *;
END
$fn$;
COMMENT ON FUNCTION jobs.enqueue_many(text, jsonb, text, name, integer, timestamptz) IS
    'Creates one pending job per element of the JSON array inputs, in one statement.';

/*
 * Moves a job to a new state on behalf of an external runner.  The job is
 * looked up through RLS (PT404 when invisible), then the per-job lock is
 * taken, so concurrent reports on one job run one after the other and each
 * sees the committed outcome of the one before; the UPDATE itself is a
 * compare-and-set on the in-flight states, and the trigger enforces the
 * transition matrix.
 */
CREATE FUNCTION jobs._report(p_task_id text, p_status jobs.status, p_result jsonb)
    RETURNS jobs.job
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    jid bigint;
    r   jobs.job;
BEGIN
    IF p_task_id IS NULL OR p_task_id = '' THEN
        RAISE EXCEPTION 'task id must not be empty' USING ERRCODE = '22023';
    END IF;

    SELECT j.id INTO jid FROM jobs.job j
    WHERE j.task_id = p_task_id AND j.status IN ('pending', 'started');
    IF FOUND THEN
        PERFORM jobs._lock_job(jid);
        -- A new statement: its snapshot sees whatever a report that held
        -- the lock before us committed.
        UPDATE jobs.job j
           SET status = p_status,
               result = CASE WHEN p_status = 'started' THEN j.result ELSE p_result END
         WHERE j.id = jid AND j.status IN ('pending', 'started')
           AND NOT (j.status = 'started' AND p_status = 'started')
        RETURNING j.* INTO r;
        IF FOUND THEN
            RETURN r;
        END IF;
    END IF;

    SELECT j.* INTO r FROM jobs.job j WHERE j.task_id = p_task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % does not exist', p_task_id
            USING ERRCODE = 'PT404',
                  HINT = 'The task id is unknown, or the job belongs to another role.';
    END IF;
    IF r.status = 'started' AND p_status = 'started' THEN
        RETURN r;           -- a duplicate start report changes nothing
    END IF;
    IF r.status IN ('pending', 'started') THEN
        RAISE EXCEPTION 'permission denied to report on task %', p_task_id
            USING ERRCODE = '42501',
                  HINT = 'Only admins and members of the owning role may change a job.';
    END IF;
    IF r.status = 'failure' AND p_status = 'success' THEN
        RETURN r;           -- the failure path owns failures
    END IF;
    RAISE EXCEPTION 'task % cannot go from % to %', p_task_id, r.status, p_status
        USING ERRCODE = 'PT409',
              DETAIL = pg_catalog.format('The job finished as %s at %s.', r.status, r.date_done);
END
$fn$;

CREATE FUNCTION jobs.start(task_id text) RETURNS jobs.job
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
    RETURN jobs._report(start.task_id, 'started', NULL);
COMMENT ON FUNCTION jobs.start(text) IS
    'Reports that a job has started (pending -> started). A repeated report changes nothing.';

CREATE FUNCTION jobs.succeed(task_id text, result jsonb DEFAULT NULL) RETURNS jobs.job
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
    RETURN jobs._report(succeed.task_id, 'success', succeed.result);
COMMENT ON FUNCTION jobs.succeed(text, jsonb) IS
    'Reports success with a result. A result with duplicate_of is recorded as a failure; on a failed job it changes nothing.';

CREATE FUNCTION jobs.fail(task_id text, error_message text, error_type text DEFAULT NULL,
                          traceback text DEFAULT NULL) RETURNS jobs.job
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
    RETURN jobs._report(fail.task_id, 'failure',
                        pg_catalog.jsonb_build_object(
                            'error_type', fail.error_type,
                            'error_message', fail.error_message,
                            'traceback', pg_catalog.left(fail.traceback, 5000)));
COMMENT ON FUNCTION jobs.fail(text, text, text, text) IS
    'Reports failure; the result becomes {"error_type","error_message","traceback"} with the traceback cut to 5000 characters.';

CREATE FUNCTION jobs.revoke(task_id text) RETURNS jobs.job
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
    RETURN jobs._report(revoke.task_id, 'revoked', NULL);
COMMENT ON FUNCTION jobs.revoke(text) IS 'Reports that a pending or started job was revoked.';

GRANT EXECUTE ON FUNCTION
    jobs.register_task_type(text, regprocedure, text, text, boolean, boolean, integer,
                            integer, interval, integer, text, jsonb, name),
    jobs.enqueue(text, jsonb, text, name, integer, timestamptz, text, bigint[], bigint, text),
    jobs.enqueue_many(text, jsonb, text, name, integer, timestamptz),
    jobs._report(text, jobs.status, jsonb),
    jobs.start(text), jobs.succeed(text, jsonb), jobs.fail(text, text, text, text),
    jobs.revoke(text)
    TO PUBLIC;

-- 8. Execution engine (workers, claiming, leases, cancel, health) -------

CREATE FUNCTION jobs._worker_slots(OUT slot integer, OUT pid integer, OUT state text,
                                   OUT job_id bigint, OUT since timestamptz, OUT identity text)
    RETURNS SETOF record
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'pg_jobs_worker_slots';
COMMENT ON FUNCTION jobs._worker_slots() IS
    'The in-database workers as shared memory knows them (no rows unless pg_jobs is preloaded).';

CREATE FUNCTION jobs._interrupt(job_id bigint) RETURNS boolean
    LANGUAGE c VOLATILE STRICT
    AS 'MODULE_PATHNAME', 'pg_jobs_interrupt';
COMMENT ON FUNCTION jobs._interrupt(bigint) IS
    'At commit, interrupts the in-database worker running the job (its handler''s work is rolled back).';

/*
 * Backoff before retry number attempts + 1: pg_jobs.retry_base_delay (1 s)
 * doubled per attempt, capped at one hour, with +-25 % jitter so that the
 * retries of a burst of failures spread out.
 */
CREATE FUNCTION jobs._retry_delay(attempts integer) RETURNS interval
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
    RETURN LEAST(coalesce(pg_catalog.current_setting('pg_jobs.retry_base_delay', true), '1s')::interval
                 * pg_catalog.power(2, LEAST(GREATEST(attempts, 1) - 1, 30)),
                 interval '1 hour')
           * (0.75 + 0.5 * pg_catalog.random());
COMMENT ON FUNCTION jobs._retry_delay(integer) IS
    'Exponential backoff with jitter before the next attempt of a failed job.';

/*
 * Requeue (attempts left) or fail (none left) a started job whose runner is
 * gone.  Called by the launcher; a no-op unless the job is still started by
 * the same runner, so a late call changes nothing.
 */
CREATE FUNCTION jobs._reconcile(job_id bigint, runner text, error_type text, message text)
    RETURNS jobs.status
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    st jobs.status;
BEGIN
    PERFORM jobs._lock_job(job_id);
    UPDATE jobs.job j
       SET status = CASE WHEN j.attempts < j.max_attempts THEN 'pending' ELSE 'failure' END::jobs.status,
           run_at = CASE WHEN j.attempts < j.max_attempts
                         THEN pg_catalog.now() + jobs._retry_delay(j.attempts) ELSE j.run_at END,
           last_error = pg_catalog.jsonb_build_object('error_type', error_type,
                                                      'error_message', message,
                                                      'attempt', j.attempts),
           result = CASE WHEN j.attempts < j.max_attempts THEN NULL
                         ELSE pg_catalog.jsonb_build_object('error_type', error_type,
                                                            'error_message', message,
                                                            'traceback', NULL) END
     WHERE j.id = _reconcile.job_id AND j.status = 'started'
       AND j.worker IS NOT DISTINCT FROM runner
    RETURNING j.status INTO st;
    RETURN st;
END
$fn$;
COMMENT ON FUNCTION jobs._reconcile(bigint, text, text, text) IS
    'Requeues or fails a started job whose worker died or whose lease expired (launcher).';

CREATE FUNCTION jobs.claim(queue text DEFAULT 'default', max_jobs integer DEFAULT 1,
                           worker text DEFAULT NULL, lease interval DEFAULT '5 minutes')
    RETURNS SETOF jobs.job
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF queue IS NULL OR queue = '' THEN
        RAISE EXCEPTION 'queue must not be empty' USING ERRCODE = '22023';
    END IF;
    IF max_jobs IS NULL OR max_jobs < 1 OR max_jobs > 10000 THEN
        RAISE EXCEPTION 'max_jobs must be between 1 and 10000' USING ERRCODE = '22023';
    END IF;
    IF lease IS NULL OR lease <= interval '0' THEN
        RAISE EXCEPTION 'lease must be a positive interval' USING ERRCODE = '22023';
    END IF;
    IF worker LIKE 'pg_jobs/%' THEN
        RAISE EXCEPTION 'worker names starting with "pg_jobs/" are reserved for in-database workers'
            USING ERRCODE = '22023';
    END IF;

    -- The candidates are chosen and locked once (a materialised CTE): a
    -- LIMIT subquery joined to the UPDATE could be rescanned.
    RETURN QUERY
    WITH n AS MATERIALIZED (
        SELECT c.id FROM jobs.job c
         WHERE c.status = 'pending' AND c.queue = claim.queue
           AND c.run_at <= pg_catalog.now()
           AND NOT EXISTS (SELECT 1 FROM jobs.task_type t
                            WHERE t.name = c.task_type AND t.handler IS NOT NULL)
         ORDER BY c.priority, c.id
         LIMIT max_jobs
         FOR UPDATE OF c SKIP LOCKED)
    UPDATE jobs.job j
       SET status = 'started',
           worker = coalesce(claim.worker, 'external'),
           lease = claim.lease,
           lease_until = pg_catalog.now() + claim.lease
      FROM n
     WHERE j.id = n.id AND j.status = 'pending'
    RETURNING j.*;
END
$fn$;
COMMENT ON FUNCTION jobs.claim(text, integer, text, interval) IS
    'External workers: claims up to max_jobs due pending jobs of a queue (highest priority first, FIFO within a priority) under a lease; never hands one job to two claimers.';

CREATE FUNCTION jobs.heartbeat(task_id text) RETURNS jobs.job
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r jobs.job;
BEGIN
    UPDATE jobs.job j
       SET lease_until = pg_catalog.now() + coalesce(j.lease, interval '5 minutes')
     WHERE j.task_id = heartbeat.task_id AND j.status = 'started'
    RETURNING j.* INTO r;
    IF FOUND THEN
        RETURN r;
    END IF;
    SELECT j.* INTO r FROM jobs.job j WHERE j.task_id = heartbeat.task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % does not exist', task_id USING ERRCODE = 'PT404';
    END IF;
    RAISE EXCEPTION 'task % is % and holds no lease', task_id, r.status
        USING ERRCODE = 'PT409',
              HINT = 'Its lease may have expired and the job been requeued: stop working on it.';
END
$fn$;
COMMENT ON FUNCTION jobs.heartbeat(text) IS
    'Renews the lease of a claimed job by its lease length; PT409 when the job is no longer started.';

CREATE FUNCTION jobs.progress(task_id text, done bigint, total bigint DEFAULT NULL,
                              message text DEFAULT NULL) RETURNS jobs.job
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r jobs.job;
BEGIN
    IF done IS NULL OR done < 0 OR (total IS NOT NULL AND (total < 0 OR done > total)) THEN
        RAISE EXCEPTION 'progress must satisfy 0 <= done <= total' USING ERRCODE = '22023';
    END IF;
    UPDATE jobs.job j
       SET progress_done = progress.done, progress_total = progress.total,
           progress_message = progress.message
     WHERE j.task_id = progress.task_id AND j.status IN ('pending', 'started')
    RETURNING j.* INTO r;
    IF FOUND THEN
        RETURN r;
    END IF;
    SELECT j.* INTO r FROM jobs.job j WHERE j.task_id = progress.task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % does not exist', task_id USING ERRCODE = 'PT404';
    END IF;
    RAISE EXCEPTION 'task % has finished; its progress cannot change', task_id USING ERRCODE = 'PT409';
END
$fn$;
COMMENT ON FUNCTION jobs.progress(text, bigint, bigint, text) IS
    'Records how far an unfinished job has got (from a handler or an external worker).';

CREATE FUNCTION jobs.cancel(task_id text, force boolean DEFAULT false) RETURNS jobs.job
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r    jobs.job;
    seen jobs.status;
BEGIN
    IF task_id IS NULL OR task_id = '' THEN
        RAISE EXCEPTION 'task id must not be empty' USING ERRCODE = '22023';
    END IF;
    SELECT j.* INTO r FROM jobs.job j WHERE j.task_id = cancel.task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % does not exist', task_id
            USING ERRCODE = 'PT404',
                  HINT = 'The task id is unknown, or the job belongs to another role.';
    END IF;
    IF r.status IN ('pending', 'started') THEN
        PERFORM jobs._lock_job(r.id);
    END IF;
    -- A claim does not take the report lock: if one moves the job on
    -- between our read and our update, read again and decide again.
    LOOP
        SELECT j.* INTO r FROM jobs.job j WHERE j.id = r.id AND j.task_id = cancel.task_id;
        IF r.status IN ('success', 'failure', 'revoked') THEN
            RAISE EXCEPTION 'task % has already finished (%)', task_id, r.status
                USING ERRCODE = 'PT410';
        END IF;
        IF r.status = 'started' AND NOT coalesce(force, false) THEN
            RAISE EXCEPTION 'task % is running', task_id
                USING ERRCODE = 'PT409',
                      HINT = 'Pass force => true to interrupt it; its work is rolled back.';
        END IF;
        seen := r.status;
        UPDATE jobs.job j
           SET status = 'revoked',
               result = pg_catalog.jsonb_build_object('reason', 'cancelled by ' || current_user)
         WHERE j.id = r.id AND j.status = seen
        RETURNING j.* INTO r;
        EXIT WHEN FOUND;
        SELECT j.* INTO r FROM jobs.job j WHERE j.task_id = cancel.task_id;
        IF r.status = seen THEN
            RAISE EXCEPTION 'permission denied to cancel task %', task_id
                USING ERRCODE = '42501',
                      HINT = 'Only admins and members of the owning role may cancel a job.';
        END IF;
    END LOOP;
    IF r.worker LIKE 'pg_jobs/%' THEN
        PERFORM jobs._interrupt(r.id);
    END IF;
    RETURN r;
END
$fn$;
COMMENT ON FUNCTION jobs.cancel(text, boolean) IS
    'Revokes a pending job; with force also a running one, interrupting its handler (work rolled back). PT409 running without force, PT410 finished, PT404 unknown.';

CREATE FUNCTION jobs.health() RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT pg_catalog.jsonb_build_object(
        'workers', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                        'slot', w.slot, 'pid', w.pid, 'state', w.state,
                        'task_id', (SELECT j.task_id FROM jobs.job j
                                    WHERE j.id = w.job_id AND j.status = 'started'),
                        'since', w.since) ORDER BY w.slot), '[]')
                    FROM jobs._worker_slots() w),
        'queues', (SELECT coalesce(pg_catalog.jsonb_object_agg(q.queue, pg_catalog.jsonb_build_object(
                        'pending', q.pending, 'started', q.started,
                        'oldest_pending_seconds', q.oldest)), '{}')
                   FROM (SELECT j.queue,
                                count(*) FILTER (WHERE j.status = 'pending') AS pending,
                                count(*) FILTER (WHERE j.status = 'started') AS started,
                                pg_catalog.date_part('epoch', pg_catalog.now()
                                    - min(j.date_created) FILTER (WHERE j.status = 'pending')) AS oldest
                         FROM jobs.job j WHERE j.status IN ('pending', 'started')
                         GROUP BY j.queue) q),
        'pending', (SELECT count(*) FROM jobs.job j WHERE j.status = 'pending'),
        'started', (SELECT count(*) FROM jobs.job j WHERE j.status = 'started'),
        'oldest_pending_seconds', (SELECT pg_catalog.date_part('epoch', pg_catalog.now() - min(j.date_created))
                                   FROM jobs.job j WHERE j.status = 'pending'),
        'running', (SELECT coalesce(pg_catalog.jsonb_agg(j.task_id ORDER BY j.id), '[]')
                    FROM jobs.job j WHERE j.status = 'started'));
END;
COMMENT ON FUNCTION jobs.health() IS
    'Workers (pid, state, current task, since), pending/started counts per queue, oldest pending age, running task ids.';

-- Only the launcher and workers (superuser) reconcile and compute backoff.
REVOKE ALL ON FUNCTION jobs._retry_delay(integer), jobs._reconcile(bigint, text, text, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    jobs._worker_slots(), jobs._interrupt(bigint),
    jobs.claim(text, integer, text, interval), jobs.heartbeat(text),
    jobs.progress(text, bigint, bigint, text), jobs.cancel(text, boolean), jobs.health()
    TO PUBLIC;


-- 9. Monitoring API (v10 and v9 lists, summary, counts, run, acknowledge) --


-- 10. Per-job logs ------------------------------------------------------


-- User data: keep it in pg_dump output.
SELECT pg_catalog.pg_extension_config_dump('jobs.task_type', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.trigger_source', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.job_id_seq', '');

NOTIFY pgrst, 'reload schema';
