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
    lease_until     timestamptz
) PARTITION BY LIST (status);

COMMENT ON TABLE jobs.job IS
    'One row per job. Lifecycle enforced by triggers for every client; visibility by row-level security.';
COMMENT ON COLUMN jobs.job.task_id IS 'External id (e.g. a Celery task UUID); generated when not given.';
COMMENT ON COLUMN jobs.job.owner IS 'Role the job belongs to; NULL = unowned (visible to everyone).';
COMMENT ON COLUMN jobs.job.attempts IS 'How many times the job has been started.';
COMMENT ON COLUMN jobs.job.run_at IS 'Earliest time the job may start.';

CREATE TABLE jobs.job_hot PARTITION OF jobs.job
    FOR VALUES IN ('pending', 'started')
    WITH (fillfactor = 70);
COMMENT ON TABLE jobs.job_hot IS 'Partition of jobs.job holding the pending and started jobs (internal).';

CREATE UNIQUE INDEX job_hot_id ON jobs.job_hot (id);
CREATE UNIQUE INDEX job_hot_task_id ON jobs.job_hot (task_id);
CREATE UNIQUE INDEX job_hot_dedup ON jobs.job_hot (task_type, dedup_key);
CREATE INDEX job_hot_claim ON jobs.job_hot (queue, priority, run_at, id)
    WHERE status = 'pending';
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
GRANT UPDATE (status, result, progress_done, progress_total, progress_message)
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
    run_input jsonb DEFAULT '{}')
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

    INSERT INTO jobs.task_type AS t (name, display_name, legacy_name, run_input, handler,
                                     queue, tracked, runnable, priority, max_attempts,
                                     timeout, max_pending)
    VALUES (register_task_type.name,
            coalesce(register_task_type.display_name,
                     pg_catalog.initcap(pg_catalog.replace(register_task_type.name, '_', ' '))),
            register_task_type.legacy_name,
            coalesce(register_task_type.run_input, '{}'),
            register_task_type.handler, register_task_type.queue,
            coalesce(register_task_type.tracked, true),
            coalesce(register_task_type.runnable, false),
            register_task_type.priority, register_task_type.max_attempts,
            register_task_type.timeout, register_task_type.max_pending)
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
            updated_at = pg_catalog.now()
    RETURNING t.* INTO r;
    RETURN r;
END
$fn$;
COMMENT ON FUNCTION jobs.register_task_type(text, regprocedure, text, text, boolean, boolean,
    integer, integer, interval, integer, text, jsonb) IS
    'Creates or replaces a task type (admins only). display_name defaults to the name in title case.';

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
                            integer, interval, integer, text, jsonb),
    jobs.enqueue(text, jsonb, text, name, integer, timestamptz, text, bigint[], bigint, text),
    jobs.enqueue_many(text, jsonb, text, name, integer, timestamptz),
    jobs._report(text, jobs.status, jsonb),
    jobs.start(text), jobs.succeed(text, jsonb), jobs.fail(text, text, text, text),
    jobs.revoke(text)
    TO PUBLIC;

-- 8. Execution engine (workers, claiming, leases, cancel, health) -------


-- 9. Monitoring API (v10 and v9 lists, summary, counts, run, acknowledge) --


-- 10. Per-job logs ------------------------------------------------------

/*
 * Entries are written only through jobs.log() (or jobs._log_write() by job
 * id, for admins and the engine): both end in PgJobsLogWrite (src/logs.c),
 * which applies the per-job cap (pg_jobs.log_max_entries) and notifies
 * followers.  Nobody but admins holds INSERT on jobs.job_log.
 *
 * Storage: jobs.job_log stays one table, clustered by the index
 * (job_id, id): every read is "one job's entries in order" and every write
 * appends at the end of one job's range.  It is not partitioned by time
 * because one job's entries span days and history partitions are cut by
 * date_done, which is unknown while entries are written; when retention
 * drops a day of history it deletes that day's jobs' entries through the
 * (job_id, id) index (jobs._purge_logs).  seq is the entry's position in
 * its job's log, so the cap costs one index probe instead of a count.
 */
ALTER TABLE jobs.job_log ADD COLUMN seq integer;
COMMENT ON COLUMN jobs.job_log.seq IS
    'Position of the entry in its job''s log (1, 2, ...); used for the per-job cap. Concurrent writers to one job may share a value.';
COMMENT ON COLUMN jobs.job_log.source IS
    'Component that wrote the entry (a plugin, a subsystem); "pg_jobs" for notes of the extension itself.';
COMMENT ON COLUMN jobs.job_log.fields IS 'Structured context of the entry (a JSON object).';

/*
 * Live followers: one row per (session, filter), keyed by a random channel
 * name.  Unlogged: followers are sessions, which a restart ends anyway.
 * Readable by nobody but the owner, so channel names stay secret.
 */
CREATE UNLOGGED TABLE jobs.log_follower (
    channel     text PRIMARY KEY CHECK (channel ~ '^pg_jobs_log_[0-9a-f]{32}$'),
    job_id      bigint NOT NULL,
    task_id     text NOT NULL,
    owner       name,
    roleid      oid NOT NULL,
    pid         integer NOT NULL,
    min_level   smallint NOT NULL CHECK (min_level BETWEEN 0 AND 4),
    source      text,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX log_follower_job ON jobs.log_follower (job_id);
COMMENT ON TABLE jobs.log_follower IS
    'Sessions following job logs (jobs.follow()): job, minimum level, source and the channel they LISTEN on (internal).';
REVOKE ALL ON jobs.log_follower FROM PUBLIC;

CREATE TYPE jobs.log_entry AS (
    id          bigint,
    task_id     text,
    at          timestamptz,
    level       text,
    source      text,
    message     text,
    fields      jsonb
);
COMMENT ON TYPE jobs.log_entry IS 'One log entry as jobs.logs() returns it; id is the cursor for after_id.';

CREATE TYPE jobs.log_stat AS (
    task_id     text,
    entries     bigint,
    debug       bigint,
    info        bigint,
    notice      bigint,
    warning     bigint,
    error       bigint,
    first_at    timestamptz,
    last_at     timestamptz,
    capped      boolean
);
COMMENT ON TYPE jobs.log_stat IS
    'Summary of one job''s log: entries per level, first and last entry time, and whether the cap dropped entries.';

CREATE TYPE jobs.log_source AS (
    source      text,
    entries     bigint,
    first_at    timestamptz,
    last_at     timestamptz
);
COMMENT ON TYPE jobs.log_source IS 'One source of a job''s log entries with its count.';

CREATE FUNCTION jobs._current_task_id() RETURNS text
    LANGUAGE c STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'pg_jobs_current_task_id';
COMMENT ON FUNCTION jobs._current_task_id() IS
    'Task id of the job whose handler runs in this session, NULL elsewhere (jobs.log() defaults to it).';

CREATE FUNCTION jobs.log(message text, level text DEFAULT 'info', source text DEFAULT NULL,
                         fields jsonb DEFAULT NULL, task_id text DEFAULT NULL)
    RETURNS bigint
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'pg_jobs_log';
COMMENT ON FUNCTION jobs.log(text, text, text, jsonb, text) IS
    'Appends an entry to a job''s log (levels debug, info, notice, warning, error) and returns its id; NULL when the per-job cap dropped it. task_id defaults to the running job inside a handler.';

CREATE FUNCTION jobs._log_write(job_id bigint, message text, level text DEFAULT 'info',
                                source text DEFAULT NULL, fields jsonb DEFAULT NULL,
                                at timestamptz DEFAULT NULL)
    RETURNS bigint
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'pg_jobs_log_write';
COMMENT ON FUNCTION jobs._log_write(bigint, text, text, text, jsonb, timestamptz) IS
    'Internal: appends an entry by job id (admins and the engine; the job is not looked up). Same cap and notifications as jobs.log().';

CREATE FUNCTION jobs.follow(task_id text, level text DEFAULT NULL, source text DEFAULT NULL)
    RETURNS text
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'pg_jobs_follow';
COMMENT ON FUNCTION jobs.follow(text, text, text) IS
    'Follows a visible job''s log: LISTENs on a new channel that receives one notification per new entry at least as severe as level and from source (NULL = any); returns the channel. Effective at commit.';

CREATE FUNCTION jobs.unfollow(channel text DEFAULT NULL) RETURNS integer
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'pg_jobs_unfollow';
COMMENT ON FUNCTION jobs.unfollow(text) IS
    'Stops following one channel of this session (all when NULL) and UNLISTENs; returns how many were removed.';

/*
 * The levels at least as severe as min_level (NULL: no filter); 22023 for
 * an unknown level.
 */
CREATE FUNCTION jobs._log_levels(min_level text) RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    all_levels CONSTANT text[] := '{debug,info,notice,warning,error}';
    pos integer;
BEGIN
    IF min_level IS NULL THEN
        RETURN NULL;
    END IF;
    pos := pg_catalog.array_position(all_levels, min_level);
    IF pos IS NULL THEN
        RAISE EXCEPTION 'unknown log level "%"', min_level
            USING ERRCODE = '22023', HINT = 'Use debug, info, notice, warning or error.';
    END IF;
    RETURN all_levels[pos:];
END
$fn$;
COMMENT ON FUNCTION jobs._log_levels(text) IS
    'The log levels at least as severe as the given one (NULL for NULL).';

/*
 * The id of a job the caller can see, by task id: 22023 when empty, PT404
 * when unknown or invisible (row-level security decides).
 */
CREATE FUNCTION jobs._log_job(task_id text) RETURNS bigint
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    jid bigint;
BEGIN
    IF task_id IS NULL OR task_id = '' THEN
        RAISE EXCEPTION 'task id must not be empty' USING ERRCODE = '22023';
    END IF;
    SELECT j.id INTO jid FROM jobs.job j WHERE j.task_id = _log_job.task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % does not exist', task_id
            USING ERRCODE = 'PT404',
                  HINT = 'The task id is unknown, or the job belongs to another role.';
    END IF;
    RETURN jid;
END
$fn$;
COMMENT ON FUNCTION jobs._log_job(text) IS
    'Id of a visible job by task id (22023 when empty, PT404 when unknown or invisible).';

CREATE FUNCTION jobs.logs(task_id text, level text DEFAULT NULL, source text DEFAULT NULL,
                          after_id bigint DEFAULT NULL, max_rows integer DEFAULT 1000)
    RETURNS SETOF jobs.log_entry
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    jid     bigint := jobs._log_job(logs.task_id);
    levels  text[] := jobs._log_levels(logs.level);
BEGIN
    IF max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'max_rows must be at least 1' USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    SELECT l.id, logs.task_id, l.at, l.level, l.source, l.message, l.fields
    FROM jobs.job_log l
    WHERE l.job_id = jid
      AND (logs.after_id IS NULL OR l.id > logs.after_id)
      AND (levels IS NULL OR l.level = ANY (levels))
      AND (logs.source IS NULL OR l.source = logs.source)
    ORDER BY l.id
    LIMIT least(logs.max_rows, 10000);
END
$fn$;
COMMENT ON FUNCTION jobs.logs(text, text, text, bigint, integer) IS
    'A job''s log entries in order: level = at least this severe, source = exactly this one, after_id = entries after this id (the cursor), at most max_rows (capped at 10000).';

CREATE FUNCTION jobs.log_stats(task_id text) RETURNS jobs.log_stat
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    jid bigint := jobs._log_job(log_stats.task_id);
    r   jobs.log_stat;
BEGIN
    SELECT log_stats.task_id, count(*),
           count(*) FILTER (WHERE l.level = 'debug'),
           count(*) FILTER (WHERE l.level = 'info'),
           count(*) FILTER (WHERE l.level = 'notice'),
           count(*) FILTER (WHERE l.level = 'warning'),
           count(*) FILTER (WHERE l.level = 'error'),
           min(l.at), max(l.at),
           coalesce(bool_or(l.source = 'pg_jobs' AND l.fields ? 'max_entries'), false)
    INTO r
    FROM jobs.job_log l
    WHERE l.job_id = jid;
    RETURN r;
END
$fn$;
COMMENT ON FUNCTION jobs.log_stats(text) IS
    'Summary of a job''s log: entries in all and per level, first and last entry time, capped = the cap dropped entries.';

CREATE FUNCTION jobs.log_sources(task_id text) RETURNS SETOF jobs.log_source
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    jid bigint := jobs._log_job(log_sources.task_id);
BEGIN
    RETURN QUERY
    SELECT l.source, count(*), min(l.at), max(l.at)
    FROM jobs.job_log l
    WHERE l.job_id = jid
    GROUP BY l.source
    ORDER BY l.source NULLS LAST;
END
$fn$;
COMMENT ON FUNCTION jobs.log_sources(text) IS
    'Each source of a job''s log entries (NULL = none given) with its count and first and last entry time.';

/*
 * Retention hook: deletes the log entries of the given jobs through the
 * (job_id, id) index; run it on a history partition's ids before dropping
 * the partition.  Admins only.
 */
CREATE FUNCTION jobs._purge_logs(job_ids bigint[]) RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    n bigint;
BEGIN
    IF NOT jobs._is_admin() THEN
        RAISE EXCEPTION 'permission denied to purge job logs'
            USING ERRCODE = '42501',
                  HINT = 'Only superusers and members of jobs_admin may purge logs.';
    END IF;
    DELETE FROM jobs.job_log l WHERE l.job_id = ANY (job_ids);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$fn$;
COMMENT ON FUNCTION jobs._purge_logs(bigint[]) IS
    'Internal (retention): deletes the log entries of the given jobs; returns how many. Admins only.';

-- Admins delete entries (retention); inserts go through jobs.log().
CREATE POLICY job_log_delete ON jobs.job_log FOR DELETE
    USING (jobs._is_admin());

-- Everyone may call the log API: jobs.log checks who may write to which job,
-- the read functions run as the caller under row-level security, follow
-- checks visibility, and the internal helpers check for admins themselves.
GRANT EXECUTE ON FUNCTION
    jobs._current_task_id(), jobs.log(text, text, text, jsonb, text),
    jobs._log_write(bigint, text, text, text, jsonb, timestamptz),
    jobs.follow(text, text, text), jobs.unfollow(text),
    jobs._log_levels(text), jobs._log_job(text),
    jobs.logs(text, text, text, bigint, integer), jobs.log_stats(text),
    jobs.log_sources(text), jobs._purge_logs(bigint[])
    TO PUBLIC;

-- User data: keep it in pg_dump output.
SELECT pg_catalog.pg_extension_config_dump('jobs.task_type', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.trigger_source', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.job_id_seq', '');

NOTIFY pgrst, 'reload schema';
