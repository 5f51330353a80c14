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

/*
 * The access rules (src/access.c).  The row-level security policies call
 * them as the querying role, so every role may execute them; they answer
 * only about the current role's own rights.
 */
CREATE FUNCTION jobs.is_admin() RETURNS boolean
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pg_jobs_is_admin';
COMMENT ON FUNCTION jobs.is_admin() IS
    'True when the current role is a superuser or a member of jobs_admin.';

CREATE FUNCTION jobs.visible(owner name) RETURNS boolean
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pg_jobs_visible';
COMMENT ON FUNCTION jobs.visible(name) IS
    'Row visibility rule: may the current role see a job of this owner? Unowned jobs (NULL), jobs owned by a role the current role is a member of, and every job for admins.';

CREATE FUNCTION jobs.may_act_for(owner name) RETURNS boolean
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pg_jobs_may_act_for';
COMMENT ON FUNCTION jobs.may_act_for(name) IS
    'Write rule: may the current role change a job of this owner? Admins act for anyone; others only for roles they are members of (never for unowned jobs).';

/*
 * The per-job report lock (src/access.c).  jobs._lock_job() takes it on any
 * id and is for the launcher only; everyone else goes through
 * jobs.lock_jobs() (src/guarded.c), which locks only in-flight jobs the
 * caller may change.
 */
CREATE FUNCTION jobs._lock_job(job_id bigint) RETURNS void
    LANGUAGE c VOLATILE STRICT
    AS 'MODULE_PATHNAME', 'pg_jobs_lock_job';
COMMENT ON FUNCTION jobs._lock_job(bigint) IS
    'Takes the transaction-scoped lock that serialises lifecycle reports on one job, whatever the job (internal; the launcher''s reconciliation).';

CREATE FUNCTION jobs.lock_jobs(task_ids text[]) RETURNS bigint[]
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'pg_jobs_lock_jobs';
COMMENT ON FUNCTION jobs.lock_jobs(text[]) IS
    'Takes, in id order and until the end of the transaction, the report locks of the pending or started jobs among task_ids that the caller may change; returns their ids. Reports on those jobs wait meanwhile.';

CREATE FUNCTION jobs._job_before_insert() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_jobs_job_before_insert';
CREATE FUNCTION jobs._job_before_update() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_jobs_job_before_update';
CREATE FUNCTION jobs._job_finished() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_jobs_job_finished';
CREATE FUNCTION jobs._registry_changed() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_jobs_registry_changed';

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
    claimable       boolean NOT NULL DEFAULT true,
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
COMMENT ON COLUMN jobs.task_type.claimable IS
    'Whether jobs.claim() may hand out its jobs (types without a handler only). False for a tracked-only type: an external runner reports its jobs with jobs.start() and friends.';

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
    last_error      jsonb,
    cancel_requested timestamptz
) PARTITION BY LIST (status);

COMMENT ON TABLE jobs.job IS
    'One row per job. Lifecycle enforced by triggers for every client; visibility by row-level security.';
COMMENT ON COLUMN jobs.job.task_id IS 'External id (e.g. a Celery task UUID); generated when not given.';
COMMENT ON COLUMN jobs.job.owner IS 'Role the job belongs to; NULL = unowned (visible to everyone).';
COMMENT ON COLUMN jobs.job.run_at IS 'Earliest time the job may start.';
COMMENT ON COLUMN jobs.job.worker IS 'Who runs the started job: a pg_jobs worker identity, or the name an external claimer gave.';
COMMENT ON COLUMN jobs.job.lease_until IS 'An external claim expires then unless renewed by jobs.heartbeat().';
COMMENT ON COLUMN jobs.job.last_error IS 'The error of the last failed attempt of a job that was retried.';
COMMENT ON COLUMN jobs.job.attempts IS
    'How many times the job has been started; the current attempt of a started job is the fencing token its runner passes to its reports.';
COMMENT ON COLUMN jobs.job.cancel_requested IS
    'When jobs.cancel(force => true) asked the external runner of this started job to stop (NULL: no request); the runner sees it in jobs.heartbeat() and on its cancel channel, and its report ends the job.';

-- Every job passes through here once; vacuum it early and without pauses
-- so the dead rows left by finished jobs are reclaimed and it stays small.
-- No truncation: it would take an ACCESS EXCLUSIVE lock that stalls every
-- claim and report while it scans, for space the next burst needs again.
CREATE TABLE jobs.job_hot PARTITION OF jobs.job
    FOR VALUES IN ('pending', 'started')
    WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0,
          autovacuum_vacuum_threshold = 5000, autovacuum_vacuum_cost_delay = 0,
          autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 5000,
          vacuum_truncate = false);
COMMENT ON TABLE jobs.job_hot IS 'Partition of jobs.job holding the pending and started jobs (internal).';

CREATE UNIQUE INDEX job_hot_id ON jobs.job_hot (id);
CREATE UNIQUE INDEX job_hot_task_id ON jobs.job_hot (task_id);
-- The in-flight job with a dedup key (the uniqueness of the key); jobs
-- without a key, most of them, need no entry.
CREATE UNIQUE INDEX job_hot_dedup ON jobs.job_hot (task_type, dedup_key)
    WHERE dedup_key IS NOT NULL;
-- In-database workers take the next job of the task types with a handler,
-- read per type so that the pending jobs of other types are never stepped
-- over; the same index counts a type's pending jobs for max_pending.
-- External claimers take the next job of one queue.
CREATE INDEX job_hot_type_next ON jobs.job_hot (task_type, priority, id) WHERE status = 'pending';
CREATE INDEX job_hot_claim ON jobs.job_hot (queue, priority, id) WHERE status = 'pending';
-- Indexes for the launcher's reconciliation.  Their predicates name lease_until
-- and worker, so the per-job lookups by id (status = 'started' alone) can
-- never pick them over the unique index on id.
CREATE INDEX job_hot_leased ON jobs.job_hot (lease_until)
    WHERE status = 'started' AND lease_until IS NOT NULL;
CREATE INDEX job_hot_running ON jobs.job_hot (worker)
    WHERE status = 'started' AND worker LIKE 'pg_jobs/%';

CREATE TABLE jobs.job_done PARTITION OF jobs.job
    FOR VALUES IN ('success', 'failure', 'revoked')
    PARTITION BY RANGE (date_done);
COMMENT ON TABLE jobs.job_done IS
    'Partition of jobs.job holding finished jobs, one sub-partition per day of completion (internal).';

/*
 * The history partitions carry their indexes themselves, not through
 * partitioned indexes on jobs.job_done: a restore attaches the day
 * partitions of a dump to the jobs.job_done that CREATE EXTENSION made, and
 * a partitioned index there would give each of them an index at once that
 * the dump then creates a second time (see "Backup and restore" in the
 * README).  jobs.ensure_partitions() indexes every day it creates.
 */
CREATE TABLE jobs.job_done_default PARTITION OF jobs.job_done DEFAULT;
CREATE INDEX job_done_default_id ON jobs.job_done_default (id);
CREATE INDEX job_done_default_task_id ON jobs.job_done_default (task_id);
CREATE INDEX job_done_default_created ON jobs.job_done_default (date_created);
CREATE INDEX job_done_default_parent ON jobs.job_done_default (parent_id)
    WHERE parent_id IS NOT NULL;

/*
 * Create the daily history partitions from yesterday up to `days_ahead`
 * days from now.  A day whose rows already sit in the default partition is
 * left there (PostgreSQL refuses to create such a partition); those rows are
 * still found through jobs.job.  Returns how many partitions were created.
 *
 * A table created while CREATE EXTENSION (or ALTER EXTENSION UPDATE) runs
 * this function becomes a member of the extension, and a member cannot be
 * dropped on its own: retention would fail on it once the install is older
 * than the retention period.  A day partition is data, not part of the
 * extension, so it is released from the extension at once, like the ones
 * the launcher creates later.
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
        EXECUTE pg_catalog.format('CREATE INDEX %I ON jobs.%I (id)', part || '_id', part);
        EXECUTE pg_catalog.format('CREATE INDEX %I ON jobs.%I (task_id)', part || '_task_id', part);
        EXECUTE pg_catalog.format('CREATE INDEX %I ON jobs.%I (date_created)', part || '_created', part);
        EXECUTE pg_catalog.format('CREATE INDEX %I ON jobs.%I (parent_id) WHERE parent_id IS NOT NULL',
                                  part || '_parent', part);
        EXECUTE pg_catalog.format('REVOKE ALL ON jobs.%I FROM PUBLIC', part);
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_depend dep
                   WHERE dep.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                     AND dep.objid = pg_catalog.format('jobs.%I', part)::pg_catalog.regclass
                     AND dep.deptype = 'e') THEN
            EXECUTE pg_catalog.format('ALTER EXTENSION pg_jobs DROP TABLE jobs.%I', part);
        END IF;
        created := created + 1;
    END LOOP;
    RETURN created;
END
$fn$;
COMMENT ON FUNCTION jobs.ensure_partitions(integer) IS
    'Creates the daily history partitions of jobs.job_done up to days_ahead days from now; returns how many it created.';
REVOKE ALL ON FUNCTION jobs.ensure_partitions(integer) FROM PUBLIC;

-- Not during a restore: pg_dump's scripts run CREATE EXTENSION with
-- row_security = off and then create the day partitions of the dump, which
-- would clash with the same days made here.  The launcher creates the
-- missing days within a maintenance round.
SELECT jobs.ensure_partitions()
WHERE pg_catalog.current_setting('row_security')::pg_catalog.bool;

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

/*
 * The run_at of a job waiting for its dependencies: far in the future, so
 * no claim takes it.  Not 'infinity': the workers compute how long to sleep
 * from min(run_at) - now().  Must equal PGJOBS_WAITING_RUN_AT_SQL (pg_jobs.h).
 */
CREATE FUNCTION jobs._waiting_run_at() RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN '9999-12-31 00:00:00+00'::timestamptz;
COMMENT ON FUNCTION jobs._waiting_run_at() IS
    'run_at of a job waiting for its dependencies (internal).';

-- children are listed by parent (jobs.children()); the history partitions
-- have the same index each
CREATE INDEX job_hot_parent ON jobs.job_hot (parent_id) WHERE parent_id IS NOT NULL;

/*
 * The unfinished dependencies of waiting jobs: job_id waits for
 * depends_on_id; run_at is the time job_id asked to run at.  A job with rows
 * here is pending with run_at = jobs._waiting_run_at() (unclaimable); when its last
 * dependency succeeds it gets its run_at back, when one fails or is revoked
 * it is revoked.  Maintained by the C triggers only (src/dependencies.c).
 */
CREATE TABLE jobs.job_dependency (
    job_id          bigint NOT NULL,
    depends_on_id   bigint NOT NULL,
    run_at          timestamptz NOT NULL,
    PRIMARY KEY (job_id, depends_on_id)
);
CREATE INDEX job_dependency_depends_on ON jobs.job_dependency (depends_on_id);
COMMENT ON TABLE jobs.job_dependency IS
    'Unfinished dependencies of waiting jobs (internal; maintained by the lifecycle triggers).';

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
-- A row inserted into job_done is a job that has just finished (moved there):
-- release or revoke the jobs waiting for it.
CREATE TRIGGER job_finished AFTER INSERT ON jobs.job_done
    FOR EACH ROW EXECUTE FUNCTION jobs._job_finished();
-- The insert trigger caches the registry per backend; a change to it tells
-- every backend to drop that cache (src/lifecycle.c).  Row triggers (and
-- statement triggers for TRUNCATE), enabled ALWAYS, so that changes applied
-- by logical replication or with session_replication_role = replica are
-- seen too.
CREATE TRIGGER task_type_changed AFTER INSERT OR UPDATE OR DELETE
    ON jobs.task_type FOR EACH ROW EXECUTE FUNCTION jobs._registry_changed();
CREATE TRIGGER task_type_truncated AFTER TRUNCATE
    ON jobs.task_type FOR EACH STATEMENT EXECUTE FUNCTION jobs._registry_changed();
CREATE TRIGGER trigger_source_changed AFTER INSERT OR UPDATE OR DELETE
    ON jobs.trigger_source FOR EACH ROW EXECUTE FUNCTION jobs._registry_changed();
CREATE TRIGGER trigger_source_truncated AFTER TRUNCATE
    ON jobs.trigger_source FOR EACH STATEMENT EXECUTE FUNCTION jobs._registry_changed();
ALTER TABLE jobs.task_type ENABLE ALWAYS TRIGGER task_type_changed,
    ENABLE ALWAYS TRIGGER task_type_truncated;
ALTER TABLE jobs.trigger_source ENABLE ALWAYS TRIGGER trigger_source_changed,
    ENABLE ALWAYS TRIGGER trigger_source_truncated;

-- 6. Row-level security and grants --------------------------------------

ALTER TABLE jobs.job ENABLE ROW LEVEL SECURITY;
CREATE POLICY job_select ON jobs.job FOR SELECT
    USING (jobs.visible(owner));
CREATE POLICY job_insert ON jobs.job FOR INSERT
    WITH CHECK (jobs.may_act_for(owner));
CREATE POLICY job_update ON jobs.job FOR UPDATE
    USING (jobs.may_act_for(owner))
    WITH CHECK (jobs.may_act_for(owner));
CREATE POLICY job_delete ON jobs.job FOR DELETE
    USING (jobs.is_admin());

-- The waits of a job are as visible as the job (blocked_by in v10 rows);
-- only waiting (pending) jobs have any.
ALTER TABLE jobs.job_dependency ENABLE ROW LEVEL SECURITY;
CREATE POLICY job_dependency_select ON jobs.job_dependency FOR SELECT
    USING (EXISTS (SELECT 1 FROM jobs.job j
                   WHERE j.id OPERATOR(pg_catalog.=) job_dependency.job_id
                     AND j.status OPERATOR(pg_catalog.=) 'pending'));

ALTER TABLE jobs.job_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY job_log_select ON jobs.job_log FOR SELECT
    USING (EXISTS (SELECT 1 FROM jobs.job j WHERE j.id OPERATOR(pg_catalog.=) job_log.job_id));

-- Everyone may use the API; what a role sees and may change is decided by
-- row-level security and the checks inside the functions.
GRANT USAGE ON SCHEMA jobs TO PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA jobs FROM PUBLIC;
-- The access rules must be callable by every role that queries jobs.job
-- (the policies run them as that role); lock_jobs checks its caller.
GRANT EXECUTE ON FUNCTION jobs.is_admin(), jobs.visible(name), jobs.may_act_for(name),
    jobs.lock_jobs(text[]), jobs.status_display(jobs.status),
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
              worker, lease, lease_until, run_at, last_error, cancel_requested)
    ON jobs.job TO PUBLIC;
GRANT USAGE ON SEQUENCE jobs.job_id_seq TO PUBLIC;
-- Acknowledging (UPDATE of acknowledged) is the "change permission"; admins
-- have it and may grant it to others.
GRANT SELECT, INSERT, UPDATE, DELETE ON jobs.job TO jobs_admin;
GRANT SELECT ON jobs.job_log TO PUBLIC;
GRANT SELECT, INSERT, DELETE ON jobs.job_log TO jobs_admin;
-- Read through RLS for blocked_by; written only by the triggers (as owner).
REVOKE ALL ON jobs.job_dependency FROM PUBLIC;
GRANT SELECT ON jobs.job_dependency TO PUBLIC;
-- Partitions are reached only through jobs.job, where RLS applies.
REVOKE ALL ON jobs.job_hot, jobs.job_done, jobs.job_done_default FROM PUBLIC;

-- 7. Tracking API -------------------------------------------------------

CREATE FUNCTION jobs.register_task_type(
    name text,
    handler regprocedure DEFAULT NULL,
    queue text DEFAULT NULL,
    legacy_name text DEFAULT NULL,
    tracked boolean DEFAULT true,
    runnable boolean DEFAULT false,
    priority integer DEFAULT 2,
    max_attempts integer DEFAULT 1,
    timeout interval DEFAULT NULL,
    max_pending integer DEFAULT NULL,
    display_name text DEFAULT NULL,
    run_input jsonb DEFAULT '{}',
    run_as name DEFAULT NULL,
    claimable boolean DEFAULT NULL)
    RETURNS jobs.task_type
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r jobs.task_type;
BEGIN
    IF NOT jobs.is_admin() THEN
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
    IF queue = '' THEN
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

    -- A type without a handler registered without a queue is tracked-only:
    -- an external runner (Celery) reports its jobs, and no jobs.claim() worker
    -- of queue 'default' may take them from under it.
    INSERT INTO jobs.task_type AS t (name, display_name, legacy_name, run_input, handler,
                                     queue, tracked, runnable, claimable, priority, max_attempts,
                                     timeout, max_pending, run_as)
    VALUES (register_task_type.name,
            coalesce(register_task_type.display_name,
                     pg_catalog.initcap(pg_catalog.replace(register_task_type.name, '_', ' '))),
            register_task_type.legacy_name,
            coalesce(register_task_type.run_input, '{}'),
            register_task_type.handler, coalesce(register_task_type.queue, 'default'),
            coalesce(register_task_type.tracked, true),
            coalesce(register_task_type.runnable, false),
            coalesce(register_task_type.claimable,
                     register_task_type.handler IS NULL AND register_task_type.queue IS NOT NULL),
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
            claimable = excluded.claimable,
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
/*
 * A handler is stored as a regprocedure, which records no dependency: a
 * DROP of the function would leave the task type pointing at a function
 * that no longer exists, and its jobs failing with an internal error.  This
 * event trigger runs at the end of every DROP (including those cascading
 * from DROP SCHEMA, DROP OWNED, DROP TYPE) and raises when a handler is
 * among the dropped objects, which undoes the whole command.  Called by the
 * event trigger machinery, it needs no EXECUTE grant.
 */
CREATE FUNCTION jobs._handler_dropped() RETURNS event_trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    fn      text;
    types   text;
    n       bigint;
BEGIN
    -- DROP EXTENSION pg_jobs drops the registry along with this trigger
    IF pg_catalog.to_regclass('jobs.task_type') IS NULL THEN
        RETURN;
    END IF;
    SELECT d.object_identity,
           pg_catalog.string_agg(pg_catalog.format('"%s"', t.name), ', ' ORDER BY t.name),
           pg_catalog.count(*)
      INTO fn, types, n
      FROM pg_catalog.pg_event_trigger_dropped_objects() d
      JOIN jobs.task_type t ON t.handler::pg_catalog.oid = d.objid
     WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
     GROUP BY d.object_identity
     ORDER BY d.object_identity
     LIMIT 1;
    IF types IS NOT NULL THEN
        RAISE EXCEPTION 'cannot drop function % because it is the handler of a task type', fn
            USING ERRCODE = '2BP01',
                  DETAIL = CASE WHEN n = 1 THEN pg_catalog.format('Task type %s uses it.', types)
                                ELSE pg_catalog.format('Task types %s use it.', types) END,
                  HINT = 'Register the task type with another handler or without one (jobs.register_task_type(name, handler => NULL)), or delete the task type, first.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION jobs._handler_dropped() IS
    'Event trigger (sql_drop): refuses to drop a function that is the handler of a task type (internal).';
REVOKE ALL ON FUNCTION jobs._handler_dropped() FROM PUBLIC;
CREATE EVENT TRIGGER pg_jobs_handler_dropped ON sql_drop
    EXECUTE FUNCTION jobs._handler_dropped();
COMMENT ON EVENT TRIGGER pg_jobs_handler_dropped IS
    'pg_jobs: refuses (2BP01) to drop a function that is the handler of a task type.';

COMMENT ON FUNCTION jobs.register_task_type(text, regprocedure, text, text, boolean, boolean,
    integer, integer, interval, integer, text, jsonb, name, boolean) IS
    'Creates or replaces a task type (admins only). display_name defaults to the name in title case; run_as is the role that runs handlers of unowned jobs; queue defaults to "default"; claimable (may jobs.claim() hand out its jobs) defaults to true for a type without handler registered with an explicit queue, else false (tracked-only).';

/*
 * Is a task type tracked?  For a runner's hooks, before they enqueue: one
 * primary-key lookup, inlined into the caller's query.
 */
CREATE FUNCTION jobs.is_tracked(task_type text) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT t.tracked FROM jobs.task_type t WHERE t.name OPERATOR(pg_catalog.=) is_tracked.task_type);
COMMENT ON FUNCTION jobs.is_tracked(text) IS
    'True when the task type is registered and tracked (jobs.enqueue() stores its jobs), false when registered untracked, NULL when unknown.';

/*
 * enqueue and enqueue_many are C (src/enqueue.c): one INSERT into jobs.job
 * as the caller, so privileges, row-level security and the lifecycle
 * trigger check it like any client's INSERT.  No SET search_path: the C
 * code names everything schema-qualified, and the INSERT resolves nothing
 * through the search_path.
 */
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
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'pg_jobs_enqueue';
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
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'pg_jobs_enqueue_many';
COMMENT ON FUNCTION jobs.enqueue_many(text, jsonb, text, name, integer, timestamptz) IS
    'Creates one pending job per element of the JSON array inputs, in one statement.';

/*
 * Moves a job to a new state on behalf of an external runner.  The job is
 * looked up through RLS (PT404 when invisible), then the per-job lock is
 * taken (when the caller may change the job; otherwise the UPDATE finds
 * nothing and the answer is 42501), so concurrent reports on one job run
 * one after the other and each sees the committed outcome of the one
 * before; the UPDATE itself is a compare-and-set on the in-flight states
 * (and, with p_attempt, on the attempt of a started job: the fencing
 * token), and the trigger enforces the transition matrix.  A start records
 * the runner (p_worker) and its lease (p_lease), which the launcher
 * reconciles as it does a claim's.
 *
 * When nothing changes, the answer follows one rule (README "Repeated and
 * late reports"): a report whose attempt is not the current attempt of a
 * started job is stale (PT409, naming both); a report of the state the job
 * is already in (start on started by the same runner, succeed on success,
 * fail on failure, revoke on revoked) returns the job unchanged; any other
 * report on a finished job is PT409 naming both states.
 */
/*
 * The fencing-token rule of every report, in one place: a report that
 * names an attempt other than the job's current one (or names one while the
 * job is not running it) is stale, PT409, and changes nothing.  For a
 * finished job the report functions let the repeated-report rule answer, so
 * only a pending job counts there (finished_counts).  Reads nothing: it
 * judges the row it is given, so every role may call it.
 */
CREATE FUNCTION jobs.check_attempt(job jobs.job, attempt integer, finished_counts boolean DEFAULT false)
    RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF attempt IS NOT NULL
       AND (job.attempts <> attempt
            OR CASE WHEN finished_counts THEN job.status = 'pending' ELSE job.status <> 'started' END) THEN
        RAISE EXCEPTION 'stale report on task %: attempt % is not the current attempt', job.task_id, attempt
            USING ERRCODE = 'PT409',
                  DETAIL = pg_catalog.format('The job is %s at attempt %s%s.', job.status, job.attempts,
                                             CASE WHEN job.worker IS NULL THEN ''
                                                  ELSE pg_catalog.format(' by runner "%s"', job.worker) END),
                  HINT = 'Its lease expired or it was retried, and another attempt owns it now: stop working on it.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION jobs.check_attempt(jobs.job, integer, boolean) IS
    'Raises PT409 when a report naming attempt is stale for the given job row (the fencing-token rule of start/succeed/fail/revoke/retry/heartbeat/progress).';

CREATE FUNCTION jobs._report_checked(p_task_id text, p_status jobs.status, p_result jsonb,
                                     p_attempt integer, p_worker text, p_lease interval)
    RETURNS jobs.job
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    jid bigint;
    r   jobs.job;
BEGIN
    IF p_task_id IS NULL THEN
        RAISE EXCEPTION 'task id must not be null' USING ERRCODE = '22004';
    ELSIF p_task_id = '' THEN
        RAISE EXCEPTION 'task id must not be empty' USING ERRCODE = '22023';
    END IF;

    SELECT j.id INTO jid FROM jobs.job j
    WHERE j.task_id = p_task_id AND j.status IN ('pending', 'started');
    IF FOUND THEN
        PERFORM jobs.lock_jobs(ARRAY[p_task_id]);
        -- A new statement: its snapshot sees whatever a report that held
        -- the lock before us committed.
        UPDATE jobs.job j
           SET status = p_status,
               result = CASE WHEN p_status = 'started' THEN j.result ELSE p_result END,
               worker = CASE WHEN p_status = 'started' THEN p_worker ELSE j.worker END,
               lease = CASE WHEN p_status = 'started' THEN p_lease ELSE j.lease END,
               lease_until = CASE WHEN p_status = 'started'
                                  THEN pg_catalog.now() + p_lease ELSE j.lease_until END
         WHERE j.id = jid AND j.status IN ('pending', 'started')
           AND NOT (j.status = 'started' AND p_status = 'started')
           AND (p_attempt IS NULL OR (j.status = 'started' AND j.attempts = p_attempt))
        RETURNING j.* INTO r;
        IF FOUND THEN
            RETURN r;
        END IF;
    END IF;

    SELECT j.* INTO r FROM jobs.job j WHERE j.task_id = p_task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % does not exist', p_task_id
            USING ERRCODE = 'PT404',
                  HINT = 'The task id is unknown, the job belongs to another role, or its task type is not tracked (jobs.is_tracked()).';
    END IF;
    IF r.status IN ('pending', 'started') AND NOT jobs.may_act_for(r.owner) THEN
        RAISE EXCEPTION 'permission denied to report on task %', p_task_id
            USING ERRCODE = '42501',
                  HINT = 'Only admins and members of the owning role may change a job.';
    END IF;
    PERFORM jobs.check_attempt(r, p_attempt, finished_counts => true);
    IF r.status = 'started' AND p_status = 'started' THEN
        IF p_worker IS NOT NULL AND r.worker IS DISTINCT FROM p_worker THEN
            RAISE EXCEPTION 'task % is already started by another runner', p_task_id
                USING ERRCODE = 'PT409',
                      DETAIL = pg_catalog.format('Attempt %s runs on runner "%s" since %s.',
                                                 r.attempts, coalesce(r.worker, '(unnamed)'), r.date_started),
                      HINT = 'Start it once its lease has expired and the launcher has requeued it.';
        END IF;
        RETURN r;           -- a repeated start changes nothing
    END IF;
    IF r.status = p_status THEN
        RETURN r;           -- a repeated report: the first one stands
    END IF;
    IF r.status = 'failure' AND p_status = 'success' THEN
        RETURN r;           -- the failure path owns failures: a late success changes nothing
    END IF;
    RAISE EXCEPTION 'task % cannot go from % to %', p_task_id, r.status, p_status
        USING ERRCODE = 'PT409',
              DETAIL = pg_catalog.format('The job finished as %s at %s.', r.status, r.date_done);
END
$fn$;

/*
 * The report functions run the common case in C (src/report.c): the lookup,
 * the report lock and the UPDATE of _report_checked() above, through kept
 * plans, as the caller; when that changes nothing, _report_checked() runs
 * and answers.  jobs.report() is the one for any status (jobs.fail() builds
 * its result and calls it).  attempt, where accepted, is the fencing token
 * (the attempts of the job its start or claim returned).
 */
CREATE FUNCTION jobs.report(task_id text, status jobs.status, result jsonb DEFAULT NULL,
                            attempt integer DEFAULT NULL)
    RETURNS jobs.job
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'pg_jobs_report';
COMMENT ON FUNCTION jobs._report_checked(text, jobs.status, jsonb, integer, text, interval) IS
    'Reports a state change of a job, or raises why it cannot happen (internal; the report functions hand it the calls that change nothing).';
COMMENT ON FUNCTION jobs.report(text, jobs.status, jsonb, integer) IS
    'Reports that a job moved to status (started, success, failure, revoked) with result, as start(), succeed(), fail() and revoke() do; with attempt, only for that attempt (PT409 when stale).';

CREATE FUNCTION jobs.start(task_id text, worker text DEFAULT NULL, lease interval DEFAULT NULL)
    RETURNS jobs.job
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'pg_jobs_start';
COMMENT ON FUNCTION jobs.start(text, text, interval) IS
    'Reports that a job has started (pending -> started) on runner worker, under a lease renewed by jobs.heartbeat() (without one, nothing recovers the job if the runner dies); returns the job, whose attempts is the fencing token of this run. A repeated start by the same runner changes nothing; by another runner PT409.';

CREATE FUNCTION jobs.succeed(task_id text, result jsonb DEFAULT NULL, attempt integer DEFAULT NULL)
    RETURNS jobs.job
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'pg_jobs_succeed';
COMMENT ON FUNCTION jobs.succeed(text, jsonb, integer) IS
    'Reports success with a result (a result with duplicate_of is recorded as a failure); with attempt, only for that attempt (PT409 when stale). A repeat changes nothing; on a job that finished otherwise PT409.';

CREATE FUNCTION jobs.fail(task_id text, error_message text, error_type text DEFAULT NULL,
                          traceback text DEFAULT NULL, attempt integer DEFAULT NULL)
    RETURNS jobs.job
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RETURN jobs.report(fail.task_id, 'failure',
                        pg_catalog.jsonb_build_object(
                            'error_type', fail.error_type,
                            'error_message', fail.error_message,
                            'traceback', pg_catalog.left(fail.traceback, 5000)),
                        fail.attempt);
END
$fn$;
COMMENT ON FUNCTION jobs.fail(text, text, text, text, integer) IS
    'Reports failure; the result becomes {"error_type","error_message","traceback"} with the traceback cut to 5000 characters; with attempt, only for that attempt (PT409 when stale).';

CREATE FUNCTION jobs.revoke(task_id text, reason text DEFAULT NULL, attempt integer DEFAULT NULL)
    RETURNS jobs.job
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'pg_jobs_revoke';
COMMENT ON FUNCTION jobs.revoke(text, text, integer) IS
    'Reports that a pending or started job was revoked; the result becomes {"reason": reason} when a reason is given; with attempt, only for that attempt (PT409 when stale).';

GRANT EXECUTE ON FUNCTION
    jobs.register_task_type(text, regprocedure, text, text, boolean, boolean, integer,
                            integer, interval, integer, text, jsonb, name, boolean),
    jobs.is_tracked(text),
    jobs.enqueue(text, jsonb, text, name, integer, timestamptz, text, bigint[], bigint, text),
    jobs.enqueue_many(text, jsonb, text, name, integer, timestamptz),
    jobs.report(text, jobs.status, jsonb, integer),
    jobs.start(text, text, interval), jobs.succeed(text, jsonb, integer),
    jobs.fail(text, text, text, text, integer),
    jobs.revoke(text, text, integer)
    TO PUBLIC;
-- jobs._report_checked() is granted to nobody: src/report.c calls it through
-- fmgr, as the caller, when a report changes nothing.
REVOKE ALL ON FUNCTION jobs._report_checked(text, jobs.status, jsonb, integer, text, interval) FROM PUBLIC;

-- 8. Execution engine (workers, claiming, leases, cancel, health) -------

CREATE FUNCTION jobs._worker_slots(OUT slot integer, OUT pid integer, OUT state text,
                                   OUT job_id bigint, OUT since timestamptz, OUT identity text)
    RETURNS SETOF record
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'pg_jobs_worker_slots';
COMMENT ON FUNCTION jobs._worker_slots() IS
    'The in-database workers as shared memory knows them, with the id of every running job (admins and monitors; no rows unless pg_jobs is preloaded).';

CREATE FUNCTION jobs.workers(OUT slot integer, OUT pid integer, OUT state text,
                             OUT task_id text, OUT since timestamptz)
    RETURNS SETOF record
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'pg_jobs_worker_list';
COMMENT ON FUNCTION jobs.workers() IS
    'The in-database workers: slot, pid, state (idle, claiming, running, stopping), the task id of the running job when the caller can see it, and since when (no rows unless pg_jobs is preloaded).';

/*
 * A job an in-database worker runs is interrupted when it is revoked: a
 * forced cancel, jobs.revoke(), an admin's UPDATE.  Revoking moves the row
 * into jobs.job_done, where this trigger asks for the interrupt; the worker
 * is told when the revoking transaction commits (src/shmem.c), and never
 * for a revoke that was rolled back.
 */
CREATE FUNCTION jobs._job_revoked() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_jobs_job_revoked';
COMMENT ON FUNCTION jobs._job_revoked() IS
    'Trigger of jobs.job_done: at commit, interrupts the in-database worker running a job just revoked (internal).';
CREATE TRIGGER job_revoked AFTER INSERT ON jobs.job_done
    FOR EACH ROW WHEN (NEW.status = 'revoked' AND NEW.worker LIKE 'pg_jobs/%')
    EXECUTE FUNCTION jobs._job_revoked();
COMMENT ON TRIGGER job_revoked ON jobs.job_done IS
    'Interrupts, at commit, the in-database worker running a job that was just revoked.';

/*
 * Backoff before retry number attempts + 1: pg_jobs.retry_base_delay (1 s)
 * doubled per attempt, capped at one hour, with +-25 % jitter so that the
 * retries of a burst of failures spread out.
 */
CREATE FUNCTION jobs._retry_delay(attempts integer) RETURNS interval
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RETURN LEAST(coalesce(pg_catalog.current_setting('pg_jobs.retry_base_delay', true), '1s')::interval
                 * pg_catalog.power(2, LEAST(GREATEST(attempts, 1) - 1, 30)),
                 interval '1 hour')
           * (0.75 + 0.5 * pg_catalog.random());
END
$fn$;
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
    -- A job whose cancel was requested (jobs.cancel()) and whose runner is
    -- gone before it reported ends revoked: it is not run again.
    UPDATE jobs.job j
       SET status = CASE WHEN j.cancel_requested IS NOT NULL THEN 'revoked'
                         WHEN j.attempts < j.max_attempts THEN 'pending'
                         ELSE 'failure' END::jobs.status,
           run_at = CASE WHEN j.cancel_requested IS NULL AND j.attempts < j.max_attempts
                         THEN pg_catalog.now() + jobs._retry_delay(j.attempts) ELSE j.run_at END,
           last_error = pg_catalog.jsonb_build_object('error_type', error_type,
                                                      'error_message', message,
                                                      'attempt', j.attempts),
           result = CASE WHEN j.cancel_requested IS NOT NULL
                         THEN pg_catalog.jsonb_build_object('reason', 'cancelled; ' || message)
                         WHEN j.attempts < j.max_attempts THEN NULL
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
    'Requeues or fails (revokes, when its cancel was requested) a started job whose worker died or whose lease expired (launcher).';

CREATE FUNCTION jobs.claim(queue text DEFAULT 'default', max_jobs integer DEFAULT 1,
                           worker text DEFAULT NULL, lease interval DEFAULT '5 minutes')
    RETURNS SETOF jobs.job
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    -- Never a sort: read the head of the (queue, priority, id) index.  After
    -- a burst of enqueues, statistics that still count few pending jobs would
    -- otherwise make fetching and sorting all of them look cheaper.
    SET enable_sort = off
    -- a plan priced with disabled sorts would otherwise be JIT-compiled
    SET jit = off
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
    -- LIMIT subquery joined to the UPDATE could be rescanned.  The UPDATE
    -- takes their ids as an array, an index lookup by id whatever the
    -- statistics say (as a join, stale statistics could make it loop over
    -- every pending job for each claimed one); its status test names both
    -- states of job_hot, so that it prunes to job_hot without implying the
    -- partial indexes on pending jobs (read whole, they would be filtered by
    -- id).  The CTE locked the rows as pending: they cannot change before.  One job at a
    -- time, the common case, uses a constant LIMIT so that its cached plan
    -- reads the head of the (queue, priority, id) index; for more, the
    -- statement is planned for the actual LIMIT each time (a generic plan
    -- cannot see it and may sort the whole queue).
    IF max_jobs = 1 THEN
        RETURN QUERY
        WITH n AS MATERIALIZED (
            SELECT c.id FROM jobs.job c
             WHERE c.status = 'pending' AND c.queue = claim.queue
               AND c.run_at <= pg_catalog.now()
               AND EXISTS (SELECT 1 FROM jobs.task_type t
                            WHERE t.name = c.task_type AND t.claimable AND t.handler IS NULL)
             ORDER BY c.priority, c.id
             LIMIT 1
             FOR UPDATE OF c SKIP LOCKED)
        UPDATE jobs.job j
           SET status = 'started',
               worker = coalesce(claim.worker, 'external'),
               lease = claim.lease,
               lease_until = pg_catalog.now() + claim.lease
         WHERE j.id = ANY (ARRAY(SELECT n.id FROM n)) AND j.status IN ('pending', 'started')
        RETURNING j.*;
    ELSE
        RETURN QUERY EXECUTE pg_catalog.format($q$
        WITH n AS MATERIALIZED (
            SELECT c.id FROM jobs.job c
             WHERE c.status = 'pending' AND c.queue = $1
               AND c.run_at <= pg_catalog.now()
               AND EXISTS (SELECT 1 FROM jobs.task_type t
                            WHERE t.name = c.task_type AND t.claimable AND t.handler IS NULL)
             ORDER BY c.priority, c.id
             LIMIT %s
             FOR UPDATE OF c SKIP LOCKED)
        UPDATE jobs.job j
           SET status = 'started',
               worker = coalesce($2, 'external'),
               lease = $3,
               lease_until = pg_catalog.now() + $3
         WHERE j.id = ANY (ARRAY(SELECT n.id FROM n)) AND j.status IN ('pending', 'started')
        RETURNING j.*$q$, max_jobs)
        USING claim.queue, claim.worker, claim.lease;
    END IF;
END
$fn$;
COMMENT ON FUNCTION jobs.claim(text, integer, text, interval) IS
    'External workers: claims up to max_jobs due pending jobs of a queue (claimable task types only: no handler, not tracked-only; highest priority first, FIFO within a priority) under a lease; never hands one job to two claimers. Each job''s attempts is the fencing token of this run.';

/*
 * Report the success of one claimed job and claim the next ones, in one
 * transaction: an external worker's loop costs one commit per job instead
 * of two.
 */
CREATE FUNCTION jobs.succeed_and_claim(task_id text, result jsonb DEFAULT NULL,
                                       queue text DEFAULT 'default', max_jobs integer DEFAULT 1,
                                       worker text DEFAULT NULL, lease interval DEFAULT '5 minutes')
    RETURNS SETOF jobs.job
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF task_id IS NOT NULL THEN
        PERFORM jobs.succeed(succeed_and_claim.task_id, succeed_and_claim.result);
    END IF;
    RETURN QUERY SELECT * FROM jobs.claim(succeed_and_claim.queue, succeed_and_claim.max_jobs,
                                          succeed_and_claim.worker, succeed_and_claim.lease);
END
$fn$;
COMMENT ON FUNCTION jobs.succeed_and_claim(text, jsonb, text, integer, text, interval) IS
    'External workers: reports the success of task_id (when not NULL) and claims the next jobs, in one transaction.';

/*
 * Report the success of many claimed jobs in one statement (with the
 * result of each, or one result for all).  The per-job report locks are
 * taken in id order (jobs.lock_jobs()), so two such calls cannot deadlock.
 */
CREATE FUNCTION jobs.succeed_many(task_ids text[], results jsonb DEFAULT NULL)
    RETURNS SETOF jobs.job
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF task_ids IS NULL THEN
        RAISE EXCEPTION 'task_ids must not be null' USING ERRCODE = '22004';
    END IF;
    IF results IS NOT NULL AND pg_catalog.jsonb_typeof(results) = 'array'
       AND pg_catalog.jsonb_array_length(results) <> pg_catalog.cardinality(task_ids) THEN
        RAISE EXCEPTION 'results must have one element per task id'
            USING ERRCODE = '22023',
                  HINT = 'Pass an array of the same length, or one object for every job.';
    END IF;
    PERFORM jobs.lock_jobs(task_ids);
    -- Looked up by task id (no join, whose order stale statistics could get
    -- wrong); each job's result is found by its position in the array.
    RETURN QUERY
    UPDATE jobs.job j
       SET status = 'success',
           result = CASE WHEN pg_catalog.jsonb_typeof(results) = 'array'
                         THEN results -> (pg_catalog.array_position(task_ids, j.task_id) - 1)
                         ELSE results END
     WHERE j.task_id = ANY (task_ids) AND j.status = 'started'
    RETURNING j.*;
END
$fn$;
COMMENT ON FUNCTION jobs.succeed_many(text[], jsonb) IS
    'Reports the success of many started jobs in one statement; returns the jobs it changed (others are skipped: unknown, invisible, not started).';

CREATE FUNCTION jobs.heartbeat(task_id text, attempt integer DEFAULT NULL) RETURNS jobs.job
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r jobs.job;
BEGIN
    IF task_id IS NULL THEN
        RAISE EXCEPTION 'task id must not be null' USING ERRCODE = '22004';
    END IF;
    UPDATE jobs.job j
       SET lease_until = pg_catalog.now() + coalesce(j.lease, interval '5 minutes')
     WHERE j.task_id = heartbeat.task_id AND j.status = 'started'
       AND (heartbeat.attempt IS NULL OR j.attempts = heartbeat.attempt)
    RETURNING j.* INTO r;
    IF FOUND THEN
        RETURN r;           -- cancel_requested tells the runner to stop
    END IF;
    SELECT j.* INTO r FROM jobs.job j WHERE j.task_id = heartbeat.task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % does not exist', task_id
            USING ERRCODE = 'PT404',
                  HINT = 'The task id is unknown, or the job belongs to another role.';
    END IF;
    IF NOT jobs.may_act_for(r.owner) THEN
        RAISE EXCEPTION 'permission denied to heartbeat task %', task_id
            USING ERRCODE = '42501',
                  HINT = 'Only admins and members of the owning role may change a job.';
    END IF;
    PERFORM jobs.check_attempt(r, heartbeat.attempt);
    RAISE EXCEPTION 'task % is % and holds no lease', task_id, r.status
        USING ERRCODE = 'PT409',
              HINT = 'Its lease may have expired and the job been requeued: stop working on it.';
END
$fn$;
COMMENT ON FUNCTION jobs.heartbeat(text, integer) IS
    'Renews the lease of a started job by its lease length and returns it: a non-NULL cancel_requested asks the runner to stop and report. With attempt, only for that attempt. PT409 when the job is no longer started or the attempt is stale, 42501 when the caller may not change it.';

/*
 * An explicit retry by an external runner: the started job goes back to
 * pending, due after delay (default: the backoff of jobs._retry_delay()),
 * with the reason in last_error.  The attempt it used stays counted; the
 * next start is the next attempt.  Refused (PT409, nothing changed) when
 * the job has used all its attempts, when its cancel was requested, or when
 * attempt is stale: the runner then reports the outcome with fail() or
 * revoke().
 */
CREATE FUNCTION jobs.retry(task_id text, reason text DEFAULT NULL, delay interval DEFAULT NULL,
                           attempt integer DEFAULT NULL) RETURNS jobs.job
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r jobs.job;
BEGIN
    IF task_id IS NULL THEN
        RAISE EXCEPTION 'task id must not be null' USING ERRCODE = '22004';
    END IF;
    IF delay < interval '0' THEN
        RAISE EXCEPTION 'delay must not be negative' USING ERRCODE = '22023';
    END IF;
    PERFORM jobs.lock_jobs(ARRAY[task_id]);
    UPDATE jobs.job j
       SET status = 'pending',
           -- the backoff of jobs._retry_delay(), which is not open to PUBLIC
           run_at = pg_catalog.now() + coalesce(retry.delay,
               LEAST(coalesce(pg_catalog.current_setting('pg_jobs.retry_base_delay', true), '1s')::interval
                     * pg_catalog.power(2, LEAST(GREATEST(j.attempts, 1) - 1, 30)),
                     interval '1 hour') * (0.75 + 0.5 * pg_catalog.random())),
           last_error = pg_catalog.jsonb_build_object('error_type', 'Retry',
                                                      'error_message', retry.reason,
                                                      'attempt', j.attempts)
     WHERE j.task_id = retry.task_id AND j.status = 'started'
       AND j.attempts < j.max_attempts AND j.cancel_requested IS NULL
       AND (j.worker IS NULL OR j.worker NOT LIKE 'pg_jobs/%')
       AND (retry.attempt IS NULL OR j.attempts = retry.attempt)
    RETURNING j.* INTO r;
    IF FOUND THEN
        RETURN r;
    END IF;
    SELECT j.* INTO r FROM jobs.job j WHERE j.task_id = retry.task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % does not exist', task_id
            USING ERRCODE = 'PT404',
                  HINT = 'The task id is unknown, or the job belongs to another role.';
    END IF;
    IF r.status IN ('pending', 'started') AND NOT jobs.may_act_for(r.owner) THEN
        RAISE EXCEPTION 'permission denied to retry task %', task_id
            USING ERRCODE = '42501',
                  HINT = 'Only admins and members of the owning role may change a job.';
    END IF;
    PERFORM jobs.check_attempt(r, retry.attempt);
    IF r.status <> 'started' THEN
        RAISE EXCEPTION 'task % is %, not started', task_id, r.status
            USING ERRCODE = 'PT409',
                  HINT = 'Only a started job can be retried.';
    END IF;
    IF r.worker LIKE 'pg_jobs/%' THEN
        RAISE EXCEPTION 'task % is run by an in-database worker', task_id
            USING ERRCODE = 'PT409',
                  HINT = 'Its handler retries by raising an error (the task type''s max_attempts).';
    END IF;
    IF r.cancel_requested IS NOT NULL THEN
        RAISE EXCEPTION 'task % cannot be retried: its cancel was requested', task_id
            USING ERRCODE = 'PT409',
                  DETAIL = pg_catalog.format('jobs.cancel() asked its runner to stop at %s.', r.cancel_requested),
                  HINT = 'Report the cancel with jobs.revoke().';
    END IF;
    RAISE EXCEPTION 'task % has used all % attempts', task_id, r.max_attempts
        USING ERRCODE = 'PT409',
              DETAIL = pg_catalog.format('Attempt %s of %s has run; nothing was changed.', r.attempts, r.max_attempts),
              HINT = 'Report the outcome with jobs.fail(), or register the task type with a higher max_attempts.';
END
$fn$;
COMMENT ON FUNCTION jobs.retry(text, text, interval, integer) IS
    'External runners: started -> pending, due after delay (default: exponential backoff), reason recorded in last_error; the used attempt stays counted. PT409 past max_attempts, after a cancel request, when not started or the attempt is stale (nothing changed).';

/*
 * The LISTEN channel on which the runner named worker hears cancel
 * requests for its jobs: 'pg_jobs_cancel_' followed by the name, or by its
 * md5 when the name is longer than 48 bytes (a channel name has at most 63).
 */
CREATE FUNCTION jobs.cancel_channel(worker text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    SET search_path = pg_catalog, pg_temp
    RETURN 'pg_jobs_cancel_' OPERATOR(pg_catalog.||)
           CASE WHEN pg_catalog.octet_length(worker) OPERATOR(pg_catalog.<=) 48 THEN worker
                ELSE pg_catalog.md5(worker) END;
COMMENT ON FUNCTION jobs.cancel_channel(text) IS
    'LISTEN channel of the runner named worker: pg_jobs_cancel_<worker> (the md5 of the name when longer than 48 bytes). A cancel request notifies it at commit with {"task_id","attempt"}.';

CREATE FUNCTION jobs.progress(task_id text, done bigint, total bigint DEFAULT NULL,
                              message text DEFAULT NULL, attempt integer DEFAULT NULL)
    RETURNS jobs.job
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r jobs.job;
BEGIN
    IF task_id IS NULL THEN
        RAISE EXCEPTION 'task id must not be null' USING ERRCODE = '22004';
    END IF;
    IF done IS NULL OR done < 0 OR (total IS NOT NULL AND (total < 0 OR done > total)) THEN
        RAISE EXCEPTION 'progress must satisfy 0 <= done <= total' USING ERRCODE = '22023';
    END IF;
    UPDATE jobs.job j
       SET progress_done = progress.done, progress_total = progress.total,
           progress_message = progress.message
     WHERE j.task_id = progress.task_id AND j.status IN ('pending', 'started')
       AND (progress.attempt IS NULL
            OR (j.status = 'started' AND j.attempts = progress.attempt))
    RETURNING j.* INTO r;
    IF FOUND THEN
        RETURN r;
    END IF;
    SELECT j.* INTO r FROM jobs.job j WHERE j.task_id = progress.task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % does not exist', task_id
            USING ERRCODE = 'PT404',
                  HINT = 'The task id is unknown, or the job belongs to another role.';
    END IF;
    IF NOT jobs.may_act_for(r.owner) THEN
        RAISE EXCEPTION 'permission denied to record progress of task %', task_id
            USING ERRCODE = '42501',
                  HINT = 'Only admins and members of the owning role may change a job.';
    END IF;
    PERFORM jobs.check_attempt(r, progress.attempt);
    RAISE EXCEPTION 'task % has finished; its progress cannot change', task_id USING ERRCODE = 'PT409';
END
$fn$;
COMMENT ON FUNCTION jobs.progress(text, bigint, bigint, text, integer) IS
    'Records how far an unfinished job has got (from a handler or an external worker); with attempt, only for that attempt; PT409 when it has finished or the attempt is stale, 42501 when the caller may not change it.';

CREATE FUNCTION jobs.cancel(task_id text, force boolean DEFAULT false) RETURNS jobs.job
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r    jobs.job;
    seen jobs.status;
BEGIN
    IF task_id IS NULL THEN
        RAISE EXCEPTION 'task id must not be null' USING ERRCODE = '22004';
    ELSIF task_id = '' THEN
        RAISE EXCEPTION 'task id must not be empty' USING ERRCODE = '22023';
    END IF;
    SELECT j.* INTO r FROM jobs.job j WHERE j.task_id = cancel.task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % does not exist', task_id
            USING ERRCODE = 'PT404',
                  HINT = 'The task id is unknown, or the job belongs to another role.';
    END IF;
    IF r.status IN ('pending', 'started') THEN
        PERFORM jobs.lock_jobs(ARRAY[r.task_id]);
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
                      HINT = CASE WHEN r.lease_until IS NOT NULL AND r.worker NOT LIKE 'pg_jobs/%'
                                  THEN 'Pass force => true to ask its runner to stop.'
                                  ELSE 'Pass force => true to interrupt it; its work is rolled back.' END;
        END IF;
        -- A job run outside the database under a lease: ask its runner to
        -- stop.  The job stays started; the runner's report (revoke, fail
        -- or succeed) is its outcome, and if the runner is gone the launcher
        -- revokes it when the lease expires (jobs._reconcile()).
        IF r.status = 'started' AND r.lease_until IS NOT NULL
           AND (r.worker IS NULL OR r.worker NOT LIKE 'pg_jobs/%') THEN
            UPDATE jobs.job j
               SET cancel_requested = coalesce(j.cancel_requested, pg_catalog.now())
             WHERE j.id = r.id AND j.status = 'started'
            RETURNING j.* INTO r;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'permission denied to cancel task %', task_id
                    USING ERRCODE = '42501',
                          HINT = 'Only admins and members of the owning role may cancel a job.';
            END IF;
            IF r.worker IS NOT NULL THEN
                PERFORM pg_catalog.pg_notify(jobs.cancel_channel(r.worker),
                                             pg_catalog.jsonb_build_object('task_id', r.task_id,
                                                                           'attempt', r.attempts)::text);
            END IF;
            RETURN r;
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
    -- a running in-database job: the trigger job_revoked interrupts its worker at commit
    RETURN r;
END
$fn$;
COMMENT ON FUNCTION jobs.cancel(text, boolean) IS
    'Revokes a pending job; with force also a running one, interrupting its handler (work rolled back). A job started outside the database under a lease is not revoked but marked cancel_requested, and its runner notified on jobs.cancel_channel(worker); its report ends it. PT409 running without force, PT410 finished, PT404 unknown.';


-- Only the launcher and workers (superuser) reconcile and compute backoff.
REVOKE ALL ON FUNCTION jobs._retry_delay(integer), jobs._reconcile(bigint, text, text, text),
    jobs._worker_slots(), jobs._job_revoked()
    FROM PUBLIC;
-- Worker slots name every running job: for those who see every job or
-- watch the system.  Everyone else reads jobs.workers().
GRANT EXECUTE ON FUNCTION jobs._worker_slots() TO jobs_admin, jobs_monitor, pg_monitor;
GRANT EXECUTE ON FUNCTION
    jobs.workers(),
    jobs.claim(text, integer, text, interval), jobs.heartbeat(text, integer),
    jobs.succeed_and_claim(text, jsonb, text, integer, text, interval),
    jobs.succeed_many(text[], jsonb),
    jobs.progress(text, bigint, bigint, text, integer), jobs.cancel(text, boolean),
    jobs.retry(text, text, interval, integer), jobs.cancel_channel(text)
    TO PUBLIC;


-- 9. Monitoring API (v10 and v9 lists, summary, counts, run, acknowledge) --

/*
 * What PostgREST serves to dashboards and to paperless-ngx style clients.
 * List and read functions are SECURITY INVOKER and STABLE (PostgREST GET),
 * so row-level security on jobs.job decides what each caller sees; the
 * writing ones (run, acknowledge, set_documents_relation) are VOLATILE
 * (POST).  The helpers they call as the caller are public functions too
 * (document_id, document, queue_position, task_filter, task_filter_clause):
 * each answers only from what the caller may read.  Three SECURITY DEFINER
 * helpers exist, each executable only by the roles it serves: global
 * statistics for monitors, document titles for admins, and the count of the
 * jobs ahead in a queue, which nobody is granted (src/guarded.c reaches it
 * after checking the caller).
 */

-- Small key/value settings of the extension (the v9 documents relation).
CREATE TABLE jobs.setting (
    name    text PRIMARY KEY CHECK (name <> ''),
    value   text NOT NULL
);
COMMENT ON TABLE jobs.setting IS
    'Settings of pg_jobs kept in the database (e.g. documents_relation). Change them through the API functions.';
SELECT pg_catalog.pg_extension_config_dump('jobs.setting', '');

-- The documents relation may be read by everyone's lookups; admins change it.
REVOKE ALL ON jobs.setting FROM PUBLIC;
GRANT SELECT ON jobs.setting TO PUBLIC;
GRANT INSERT, UPDATE, DELETE ON jobs.setting TO jobs_admin;

/*
 * Acknowledging jobs one can see.  The job_update policy lets non-admins
 * change only jobs of roles they belong to, so a user holding the change
 * permission could not acknowledge a visible unowned job.  This permissive
 * policy adds exactly that, for holders of the change permission: visible
 * rows, finished or in flight (paperless' "dismiss all").  It widens
 * nothing else: the lifecycle trigger lets a
 * caller who may not act for a job's owner change "acknowledged" only
 * (finished rows are immutable but for it anyway), and UPDATE
 * (acknowledged) is granted to nobody but admins unless an admin grants it.
 */
CREATE POLICY job_acknowledge ON jobs.job FOR UPDATE
    USING (jobs.visible(owner)
           AND pg_catalog.has_column_privilege('jobs.job'::pg_catalog.regclass,
                                               'acknowledged'::pg_catalog.text, 'UPDATE'::pg_catalog.text))
    WITH CHECK (jobs.visible(owner));

-- Document id in a JSON value: a non-negative integer, as number or string.
CREATE FUNCTION jobs.document_id(value jsonb) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN CASE WHEN pg_catalog.jsonb_typeof(value) IN ('number', 'string')
                     AND (value #>> '{}') ~ '^[0-9]{1,18}$'
                THEN (value #>> '{}')::bigint END;
COMMENT ON FUNCTION jobs.document_id(jsonb) IS
    'The document id in a JSON value of a result (document_id, duplicate_of): a non-negative integer as a number or a numeric string, else NULL.';

/*
 * Place of a due pending job in its queue: 1 = next to run.  Jobs ahead are
 * the due pending jobs of the same queue with a higher priority, or the same
 * priority and a smaller id (the order claims take them in).  Counted over
 * every job, not only those the caller may see, so the position is the real
 * one; one range scan of the claim index.  Nobody may execute
 * jobs._queue_ahead(): jobs.queue_position() (src/guarded.c) calls it for a
 * job the caller can see, so it reveals a count, never a job.
 */
CREATE FUNCTION jobs._queue_ahead(job_id bigint) RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT (SELECT pg_catalog.count(*) FROM jobs.job_hot h
                    WHERE h.status = 'pending' AND h.queue = me.queue
                      AND (h.priority, h.id) < (me.priority, me.id)
                      AND h.run_at <= pg_catalog.now()) + 1
            FROM jobs.job_hot me
            WHERE me.id = _queue_ahead.job_id AND me.status = 'pending');
COMMENT ON FUNCTION jobs._queue_ahead(bigint) IS
    'Position of a due pending job in its queue, counted over every job, 1 = next; NULL when it is not pending (internal; executable by nobody, see jobs.queue_position()).';

-- PARALLEL RESTRICTED: it runs a query of its own, in the leader only.
CREATE FUNCTION jobs.queue_position(task_id text) RETURNS bigint
    LANGUAGE c STABLE STRICT PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'pg_jobs_queue_position';
COMMENT ON FUNCTION jobs.queue_position(text) IS
    'Place of a due pending job the caller can see in its queue, 1 = next to run, counting every job ahead (visible or not); NULL for any other task id.';

/*
 * The v10 row of a job: the fields of the paperless-ngx tasks API, with the
 * display labels joined in.  security_invoker, so the caller's RLS applies;
 * the functions it calls are therefore executable by everyone.  Related
 * documents: [document_id] if present, else [duplicate_of] if present,
 * else [].
 * Beyond the paperless fields: the queue position of a due pending job
 * (NULL for others, including waiting and delayed ones), the dependencies
 * still blocking a waiting job, the parent, and progress.
 */
CREATE VIEW jobs.task_v10 WITH (security_invoker = true) AS
SELECT j.id,
       j.task_id,
       j.task_type,
       COALESCE(tt.display_name, j.task_type) AS task_type_display,
       j.trigger_source,
       COALESCE(ts.display_name, j.trigger_source) AS trigger_source_display,
       j.status,
       jobs.status_display(j.status) AS status_display,
       j.date_created,
       j.date_started,
       j.date_done,
       pg_catalog.date_part('epoch', j.date_done - j.date_started) AS duration_seconds,
       pg_catalog.date_part('epoch', j.date_started - j.date_created) AS wait_time_seconds,
       j.input AS input_data,
       j.result AS result_data,
       CASE WHEN jobs.document_id(j.result -> 'document_id') IS NOT NULL
                THEN ARRAY[jobs.document_id(j.result -> 'document_id')]
            WHEN jobs.document_id(j.result -> 'duplicate_of') IS NOT NULL
                THEN ARRAY[jobs.document_id(j.result -> 'duplicate_of')]
            ELSE '{}'::bigint[]
       END AS related_document_ids,
       j.acknowledged,
       j.owner,
       j.queue,
       j.priority,
       CASE WHEN j.status = 'pending' AND j.run_at <= pg_catalog.now()
            THEN jobs.queue_position(j.task_id) END AS queue_position,
       j.parent_id,
       j.depends_on,
       -- the run_at of a waiting job, jobs._waiting_run_at()
       CASE WHEN j.status = 'pending' AND j.run_at = '9999-12-31 00:00:00+00'::timestamptz
            THEN NULLIF(ARRAY(SELECT d.depends_on_id FROM jobs.job_dependency d
                              WHERE d.job_id = j.id ORDER BY d.depends_on_id),
                        '{}') END AS blocked_by,
       j.progress_done,
       j.progress_total,
       CASE WHEN j.progress_total > 0
            THEN pg_catalog.round(100.0 * j.progress_done / j.progress_total)::integer
       END AS progress_percent,
       j.progress_message
FROM jobs.job j
LEFT JOIN jobs.task_type tt ON tt.name = j.task_type
LEFT JOIN jobs.trigger_source ts ON ts.name = j.trigger_source;
COMMENT ON VIEW jobs.task_v10 IS
    'Every job the caller may see, as a v10 task row (labels, timings, related documents). What jobs.tasks() pages through.';

/*
 * The WHERE clause shared by jobs.tasks() and jobs.status_counts(), over
 * jobs.task_v10 t.  It is constant text: the values come in as parameters
 * $1..$12 of EXECUTE ... USING, already validated and normalised by
 * jobs.task_filter(), in the order of its fields; a NULL parameter filters
 * nothing.
 */
CREATE FUNCTION jobs.task_filter_clause() RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN $where$
        ($1 IS NULL OR t.task_type = ANY ($1))
    AND ($2 IS NULL OR t.status = ANY ($2))
    AND ($3 IS NULL OR t.trigger_source = ANY ($3))
    AND ($4 IS NULL OR t.acknowledged = $4)
    AND ($5 IS NULL OR t.task_id = $5)
    AND ($6 IS NULL
         OR pg_catalog.strpos(pg_catalog.lower(t.input_data ->> 'filename'), $6) > 0
         OR pg_catalog.strpos(pg_catalog.lower(t.task_type_display), $6) > 0
         OR pg_catalog.strpos(pg_catalog.lower(t.trigger_source_display), $6) > 0)
    AND ($7 IS NULL
         OR pg_catalog.strpos(pg_catalog.lower(t.result_data ->> 'reason'), $7) > 0
         OR pg_catalog.strpos(pg_catalog.lower(t.result_data ->> 'error_message'), $7) > 0
         OR jobs.document_id(t.result_data -> 'document_id') = $8
         OR jobs.document_id(t.result_data -> 'duplicate_of') = $8
         OR ($9 AND t.result_data ? 'duplicate_of'))
    AND ($10 IS NULL OR t.owner = $10)
    AND ($11 IS NULL OR t.date_created >= $11)
    AND ($12 IS NULL OR t.date_created <= $12)
$where$;
COMMENT ON FUNCTION jobs.task_filter_clause() IS
    'The WHERE clause that jobs.tasks() and jobs.status_counts() apply over jobs.task_v10 t: parameters $1..$12 are the fields of a jobs.task_filter, in order.';

-- The normalised filter values, in the order of the parameters of jobs.task_filter_clause().
CREATE TYPE jobs.task_filter AS (
    task_type       text[],
    status          jobs.status[],
    trigger_source  text[],
    acknowledged    boolean,
    task_id         text,
    name            text,
    result          text,
    result_number   bigint,
    result_duplicate boolean,
    owner           name,
    created_after   timestamptz,
    created_before  timestamptz
);
COMMENT ON TYPE jobs.task_filter IS 'Validated, normalised filters of jobs.tasks() and jobs.status_counts().';

/*
 * Validate and normalise the filters of the task list.  Empty lists and
 * blank searches filter nothing; statuses are checked (22023) and narrowed
 * by is_complete; searches are lower-cased for a case-insensitive match.
 */
CREATE FUNCTION jobs.task_filter(
    task_type text[] DEFAULT NULL, status text[] DEFAULT NULL, trigger_source text[] DEFAULT NULL,
    acknowledged boolean DEFAULT NULL, is_complete boolean DEFAULT NULL, task_id text DEFAULT NULL,
    name text DEFAULT NULL, result text DEFAULT NULL, owner name DEFAULT NULL,
    date_created_after timestamptz DEFAULT NULL, date_created_before timestamptz DEFAULT NULL)
    RETURNS jobs.task_filter
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    a       jobs.task_filter;
    bad     text;
    term    text;
BEGIN
    a.task_type := CASE WHEN pg_catalog.cardinality(task_type) > 0 THEN task_type END;
    a.trigger_source := CASE WHEN pg_catalog.cardinality(trigger_source) > 0 THEN trigger_source END;

    IF pg_catalog.cardinality(status) > 0 THEN
        SELECT s INTO bad FROM pg_catalog.unnest(status) AS s
        WHERE s IS NULL OR pg_catalog.lower(s) NOT IN ('pending', 'started', 'success', 'failure', 'revoked')
        LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'invalid status "%"', coalesce(bad, 'NULL')
                USING ERRCODE = '22023',
                      HINT = 'A status is one of pending, started, success, failure and revoked.';
        END IF;
        a.status := ARRAY(SELECT DISTINCT pg_catalog.lower(s)::jobs.status
                          FROM pg_catalog.unnest(status) AS s);
    END IF;
    IF is_complete IS NOT NULL THEN
        a.status := ARRAY(SELECT s FROM pg_catalog.unnest(
                              coalesce(a.status, pg_catalog.enum_range(NULL::jobs.status))) AS s
                          WHERE (s IN ('success', 'failure', 'revoked')) = is_complete);
    END IF;

    a.acknowledged := acknowledged;
    a.task_id := task_id;
    a.owner := owner;
    a.created_after := date_created_after;
    a.created_before := date_created_before;
    a.name := pg_catalog.lower(NULLIF(pg_catalog.btrim(name), ''));

    term := NULLIF(pg_catalog.btrim(result), '');
    IF term IS NOT NULL THEN
        a.result := pg_catalog.lower(term);
        a.result_duplicate := pg_catalog.strpos(a.result, 'duplicate') > 0;
        IF term ~ '^[0-9]{1,18}$' THEN
            a.result_number := term::bigint;
        END IF;
    END IF;
    RETURN a;
END
$fn$;
COMMENT ON FUNCTION jobs.task_filter(text[], text[], text[], boolean, boolean, text, text, text,
    name, timestamptz, timestamptz) IS
    'The filters of jobs.tasks() as they are applied: validated (22023 for an unknown status) and normalised (empty lists filter nothing, searches lower-cased, status narrowed by is_complete).';

CREATE FUNCTION jobs.tasks(
    page integer DEFAULT 1,
    page_size integer DEFAULT 25,
    task_type text[] DEFAULT NULL,
    status text[] DEFAULT NULL,
    trigger_source text[] DEFAULT NULL,
    acknowledged boolean DEFAULT NULL,
    is_complete boolean DEFAULT NULL,
    task_id text DEFAULT NULL,
    name text DEFAULT NULL,
    result text DEFAULT NULL,
    owner name DEFAULT NULL,
    date_created_after timestamptz DEFAULT NULL,
    date_created_before timestamptz DEFAULT NULL,
    ordering text DEFAULT '-date_created')
    RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    a       jobs.task_filter;
    size    integer;
    total   bigint;
    ord     text := coalesce(NULLIF(pg_catalog.btrim(ordering), ''), '-date_created');
    col     text;
    dir     text := 'ASC';
    results jsonb;
    headers text := pg_catalog.current_setting('request.headers', true);
    version text;
BEGIN
    -- The API version the client asked for, from the Accept header PostgREST
    -- passes in request.headers ("application/json; version=9").  None: 10.
    -- Versions 1 to 9 are the legacy list (their task format is the same).
    IF headers IS NOT NULL AND headers <> '' THEN
        version := pg_catalog.substring(pg_catalog.lower(headers::jsonb ->> 'accept'),
                                        'version\s*=\s*"?([^";,[:space:]]*)');
        IF version IS NOT NULL
           AND (version !~ '^[0-9]{1,4}$' OR version::integer NOT BETWEEN 1 AND 10) THEN
            RAISE EXCEPTION 'unsupported API version "%"', version
                USING ERRCODE = '22023',
                      HINT = 'Ask for version=10 (the default) or version=9 (the legacy task list) in the Accept header.';
        END IF;
    END IF;
    IF version IS NOT NULL AND version::integer < 10 THEN
        -- the legacy list: unpaginated, legacy fields
        RETURN (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(v)
                                                      ORDER BY v.date_created DESC, v.id DESC), '[]')
                FROM jobs.tasks_v9(task_id => tasks.task_id) AS v
                WHERE tasks.acknowledged IS NULL OR v.acknowledged = tasks.acknowledged);
    END IF;

    IF page IS NULL OR page < 1 THEN
        RAISE EXCEPTION 'page must be 1 or more, not %', coalesce(page::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    IF page_size IS NULL OR page_size < 1 THEN
        RAISE EXCEPTION 'page_size must be 1 or more, not %', coalesce(page_size::text, 'NULL')
            USING ERRCODE = '22023',
                  HINT = 'Page sizes above 100 are capped at 100.';
    END IF;
    size := least(page_size, 100);

    IF pg_catalog.left(ord, 1) = '-' THEN
        dir := 'DESC';
        col := pg_catalog.substr(ord, 2);
    ELSE
        col := ord;
    END IF;
    IF col NOT IN ('date_created', 'date_done', 'status', 'task_type', 'duration_seconds',
                   'wait_time_seconds') THEN
        RAISE EXCEPTION 'invalid ordering "%"', ordering
            USING ERRCODE = '22023',
                  HINT = 'Order by date_created, date_done, status, task_type, duration_seconds or wait_time_seconds, with a leading "-" for descending order.';
    END IF;

    a := jobs.task_filter(task_type, status, trigger_source, acknowledged, is_complete, task_id,
                          name, result, owner, date_created_after, date_created_before);

    EXECUTE 'SELECT pg_catalog.count(*) FROM jobs.task_v10 t WHERE ' || jobs.task_filter_clause()
        INTO total
        USING a.task_type, a.status, a.trigger_source, a.acknowledged, a.task_id, a.name,
              a.result, a.result_number, a.result_duplicate, a.owner, a.created_after,
              a.created_before;

    IF page > 1 AND (page - 1)::bigint * size >= total THEN
        RAISE EXCEPTION 'page % is out of range', page
            USING ERRCODE = '22023',
                  DETAIL = pg_catalog.format('%s tasks match, %s per page.', total, size),
                  HINT = 'Ask for a page between 1 and the last one.';
    END IF;

    -- col is one of the names checked above; dir is ASC or DESC.
    EXECUTE pg_catalog.format(
        'SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(p) - %L ORDER BY p.pgjobs_n), %L) '
        'FROM (SELECT t.*, pg_catalog.row_number() OVER (ORDER BY t.%I %s NULLS LAST, t.id %s) AS pgjobs_n '
        '      FROM jobs.task_v10 t WHERE %s '
        '      ORDER BY t.%I %s NULLS LAST, t.id %s LIMIT $13 OFFSET $14) p',
        'pgjobs_n', '[]', col, dir, dir, jobs.task_filter_clause(), col, dir, dir)
        INTO results
        USING a.task_type, a.status, a.trigger_source, a.acknowledged, a.task_id, a.name,
              a.result, a.result_number, a.result_duplicate, a.owner, a.created_after,
              a.created_before, size, (page - 1)::bigint * size;

    RETURN pg_catalog.jsonb_build_object(
        'count', total,
        'next', CASE WHEN page::bigint * size < total THEN page + 1 END,
        'previous', CASE WHEN page > 1 THEN page - 1 END,
        'results', results);
END
$fn$;
COMMENT ON FUNCTION jobs.tasks(integer, integer, text[], text[], text[], boolean, boolean, text,
    text, text, name, timestamptz, timestamptz, text) IS
    'The task list (v10): {"count","next","previous","results"}, newest first, filtered and paginated (page_size capped at 100). With Accept: application/json; version=9 through PostgREST, the legacy v9 list.';

CREATE FUNCTION jobs.status_counts(
    task_type text[] DEFAULT NULL,
    status text[] DEFAULT NULL,
    trigger_source text[] DEFAULT NULL,
    acknowledged boolean DEFAULT NULL,
    is_complete boolean DEFAULT NULL,
    task_id text DEFAULT NULL,
    name text DEFAULT NULL,
    result text DEFAULT NULL,
    owner name DEFAULT NULL,
    date_created_after timestamptz DEFAULT NULL,
    date_created_before timestamptz DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    a       jobs.task_filter;
    counts  jsonb;
BEGIN
    -- the sections are statuses: the status and is_complete filters are ignored
    a := jobs.task_filter(task_type, NULL, trigger_source, acknowledged, NULL, task_id,
                          name, result, owner, date_created_after, date_created_before);
    EXECUTE 'SELECT pg_catalog.jsonb_build_object('
            '''all'', pg_catalog.count(*), '
            '''needs_attention'', pg_catalog.count(*) FILTER (WHERE t.status IN (''failure'', ''revoked'')), '
            '''in_progress'', pg_catalog.count(*) FILTER (WHERE t.status IN (''pending'', ''started'')), '
            '''completed'', pg_catalog.count(*) FILTER (WHERE t.status = ''success'')) '
            'FROM jobs.task_v10 t WHERE ' || jobs.task_filter_clause()
        INTO counts
        USING a.task_type, a.status, a.trigger_source, a.acknowledged, a.task_id, a.name,
              a.result, a.result_number, a.result_duplicate, a.owner, a.created_after,
              a.created_before;
    RETURN counts;
END
$fn$;
COMMENT ON FUNCTION jobs.status_counts(text[], text[], text[], boolean, boolean, text, text, text,
    name, timestamptz, timestamptz) IS
    'Counts of the visible tasks by section: {"all","needs_attention","in_progress","completed"}; the filters of jobs.tasks() apply except status and is_complete.';

CREATE FUNCTION jobs.active() RETURNS SETOF jobs.task_v10
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT t.* FROM jobs.task_v10 t
    WHERE t.status IN ('pending', 'started')
    ORDER BY t.date_created DESC, t.id DESC
    LIMIT 50
$fn$;
COMMENT ON FUNCTION jobs.active() IS
    'The pending and started tasks the caller may see, newest first, at most 50 (v10 rows).';

CREATE FUNCTION jobs.children(task_id text) RETURNS SETOF jobs.task_v10
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    parent bigint;
BEGIN
    IF task_id IS NULL THEN
        RAISE EXCEPTION 'task id must not be null' USING ERRCODE = '22004';
    END IF;
    SELECT j.id INTO parent FROM jobs.job j WHERE j.task_id = children.task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % does not exist', task_id
            USING ERRCODE = 'PT404',
                  HINT = 'The task id is unknown, or the job belongs to another role.';
    END IF;
    RETURN QUERY
    SELECT t.* FROM jobs.task_v10 t WHERE t.parent_id = parent ORDER BY t.id;
END
$fn$;
COMMENT ON FUNCTION jobs.children(text) IS
    'The jobs the caller may see whose parent_id is the given task''s job, oldest first (v10 rows); PT404 when the parent is unknown or invisible.';

-- v9: the legacy, unpaginated list ----------------------------------------

CREATE TYPE jobs.task_v9 AS (
    id                  integer,
    task_id             text,
    task_name           text,
    task_file_name      text,
    type                text,
    status              text,
    date_created        timestamptz,
    date_done           timestamptz,
    result              text,
    acknowledged        boolean,
    related_document    integer,
    duplicate_documents jsonb,
    owner               name
);
COMMENT ON TYPE jobs.task_v9 IS
    'A task in the legacy (v9) format: legacy task names, types and upper-case statuses, the result as text.';

/*
 * One document of the relation set with jobs.set_documents_relation(), as
 * {"id","title","deleted_at"}, read with the privileges of the current user
 * (their GRANTs and RLS decide), or NULL when they may not read it, it does
 * not exist or no relation is set.  deleted_at is NULL when the relation has
 * no such column.  Only columns of built-in types are read (an integer id),
 * so that reading a document runs no user-defined cast or output function.
 */
CREATE FUNCTION jobs.document(doc_id bigint) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    relation    regclass := (SELECT pg_catalog.to_regclass(s.value) FROM jobs.setting s
                             WHERE s.name = 'documents_relation');
    id_type     regtype;
    title_type  regtype;
    del_type    regtype;
    deleted     text := 'NULL';
    doc         jsonb;
BEGIN
    IF relation IS NULL OR doc_id IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT pg_catalog.max(a.atttypid) FILTER (WHERE a.attname = 'id'),
           pg_catalog.max(a.atttypid) FILTER (WHERE a.attname = 'title'),
           pg_catalog.max(a.atttypid) FILTER (WHERE a.attname = 'deleted_at')
      INTO id_type, title_type, del_type
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = relation AND a.attnum > 0 AND NOT a.attisdropped;
    IF id_type IS NULL OR id_type NOT IN ('smallint', 'integer', 'bigint')
       OR title_type IS NULL OR title_type::oid >= 16384
       OR NOT pg_catalog.has_column_privilege(relation, 'id', 'SELECT')
       OR NOT pg_catalog.has_column_privilege(relation, 'title', 'SELECT') THEN
        RETURN NULL;
    END IF;
    IF del_type IS NOT NULL AND del_type::oid < 16384
       AND pg_catalog.has_column_privilege(relation, 'deleted_at', 'SELECT') THEN
        deleted := 'd.deleted_at';
    END IF;
    EXECUTE pg_catalog.format(
        'SELECT pg_catalog.jsonb_build_object(''id'', d.id, ''title'', d.title, ''deleted_at'', %s) '
        'FROM %s AS d WHERE d.id OPERATOR(pg_catalog.=) $1 LIMIT 1', deleted, relation)
        INTO doc USING doc_id;
    RETURN doc;
END
$fn$;
COMMENT ON FUNCTION jobs.document(bigint) IS
    'One document of the documents relation (see jobs.set_documents_relation()) as {"id","title","deleted_at"}, read with the caller''s privileges; NULL when it is not readable, missing, or no relation is set.';

/*
 * Admins see every document: for them the lookup runs as the extension
 * owner.  Only when the documents relation is a plain table (or a
 * partitioned table of plain tables): reading a view, a foreign table or an
 * inheritance child could run code chosen by the relation's owner with the
 * extension owner's rights.  For anything else, NULL, and admins read with
 * their own privileges like everyone else.
 */
CREATE FUNCTION jobs._document_for_admin(doc_id bigint) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT jobs.document(doc_id)
    FROM pg_catalog.pg_class c
    WHERE c.oid = (SELECT pg_catalog.to_regclass(s.value) FROM jobs.setting s
                   WHERE s.name = 'documents_relation')
      AND CASE c.relkind
              WHEN 'r' THEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i
                                        WHERE i.inhparent = c.oid)
              WHEN 'p' THEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_partition_tree(c.oid) t
                                        JOIN pg_catalog.pg_class l ON l.oid = t.relid
                                        WHERE t.isleaf AND l.relkind <> 'r')
              ELSE false
          END
$fn$;
COMMENT ON FUNCTION jobs._document_for_admin(bigint) IS
    'One document of the configured documents relation (a plain table), read as the extension owner; executable by jobs_admin only (internal).';

/*
 * The legacy list.  type: scheduled -> scheduled_task; system,
 * email_consume, folder_consume -> auto_task; others -> manual_task.  result:
 * the v9 text rebuilt from the structured result.  duplicate_documents: the
 * document named by duplicate_of, if the caller may read it (admins through
 * jobs._document_for_admin()), else [].
 */
CREATE FUNCTION jobs.tasks_v9(task_name text DEFAULT NULL, type text DEFAULT NULL,
                              task_id text DEFAULT NULL)
    RETURNS SETOF jobs.task_v9
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    admin   boolean := jobs.is_admin();
    v       record;
    r       jobs.task_v9;
    doc     jsonb;
BEGIN
    IF tasks_v9.type IS NOT NULL
       AND tasks_v9.type NOT IN ('auto_task', 'scheduled_task', 'manual_task') THEN
        RAISE EXCEPTION 'invalid task type "%"', tasks_v9.type
            USING ERRCODE = '22023',
                  HINT = 'The v9 type is one of auto_task, scheduled_task and manual_task.';
    END IF;
    FOR v IN
        SELECT j.id, j.task_id, COALESCE(tt.legacy_name, j.task_type) AS legacy_name,
               j.input ->> 'filename' AS file_name, k.v9_type, j.status, j.date_created,
               j.date_done, j.result, j.acknowledged, j.owner,
               coalesce(jobs.document_id(j.result -> 'document_id'),
                        jobs.document_id(j.result -> 'duplicate_of')) AS related,
               jobs.document_id(j.result -> 'duplicate_of') AS duplicate_of
        FROM jobs.job j
        LEFT JOIN jobs.task_type tt ON tt.name = j.task_type
        CROSS JOIN LATERAL (SELECT CASE
                                WHEN j.trigger_source = 'scheduled' THEN 'scheduled_task'
                                WHEN j.trigger_source IN ('system', 'email_consume', 'folder_consume')
                                    THEN 'auto_task'
                                ELSE 'manual_task'
                            END AS v9_type) k
        WHERE (tasks_v9.task_name IS NULL OR COALESCE(tt.legacy_name, j.task_type) = tasks_v9.task_name)
          AND (tasks_v9.type IS NULL OR k.v9_type = tasks_v9.type)
          AND (tasks_v9.task_id IS NULL OR j.task_id = tasks_v9.task_id)
        ORDER BY j.date_created DESC, j.id DESC
    LOOP
        doc := NULL;
        IF v.duplicate_of IS NOT NULL THEN
            IF admin THEN
                doc := jobs._document_for_admin(v.duplicate_of);
            END IF;
            IF doc IS NULL THEN
                doc := jobs.document(v.duplicate_of);
            END IF;
        END IF;
        r.id := v.id;
        r.task_id := v.task_id;
        r.task_name := v.legacy_name;
        r.task_file_name := v.file_name;
        r.type := v.v9_type;
        r.status := pg_catalog.upper(v.status::text);
        r.date_created := v.date_created;
        r.date_done := v.date_done;
        r.result := CASE
            WHEN pg_catalog.jsonb_typeof(v.result) IS DISTINCT FROM 'object' THEN NULL
            WHEN v.result ->> 'document_id' IS NOT NULL
                THEN 'Success. New document id ' || (v.result ->> 'document_id') || ' created'
            WHEN v.result ->> 'reason' IS NOT NULL THEN v.result ->> 'reason'
            WHEN v.result ->> 'duplicate_of' IS NOT NULL
                THEN 'Not consuming: It is a duplicate of document #' || (v.result ->> 'duplicate_of')
            WHEN v.result ->> 'error_message' IS NOT NULL THEN v.result ->> 'error_message'
        END;
        r.acknowledged := v.acknowledged;
        r.related_document := v.related;
        r.duplicate_documents := CASE WHEN doc IS NULL THEN '[]'::jsonb
                                      ELSE pg_catalog.jsonb_build_array(doc) END;
        r.owner := v.owner;
        RETURN NEXT r;
    END LOOP;
END
$fn$;
COMMENT ON FUNCTION jobs.tasks_v9(text, text, text) IS
    'The legacy (v9) task list, unpaginated, newest first; filters task_name (legacy name), type (auto_task, scheduled_task, manual_task) and task_id.';

CREATE FUNCTION jobs.set_documents_relation(relation regclass) RETURNS regclass
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    idtype      regtype;
    title_type  regtype;
BEGIN
    IF NOT jobs.is_admin() THEN
        RAISE EXCEPTION 'permission denied to set the documents relation'
            USING ERRCODE = '42501',
                  HINT = 'Only superusers and members of jobs_admin may configure pg_jobs.';
    END IF;
    IF relation IS NULL THEN
        DELETE FROM jobs.setting s WHERE s.name = 'documents_relation';
        RETURN NULL;
    END IF;
    IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = relation)
       NOT IN ('r', 'p', 'v', 'm', 'f') THEN
        RAISE EXCEPTION '"%" is not a table or view', relation
            USING ERRCODE = '22023';
    END IF;
    SELECT pg_catalog.max(a.atttypid) FILTER (WHERE a.attname = 'id'),
           pg_catalog.max(a.atttypid) FILTER (WHERE a.attname = 'title')
      INTO idtype, title_type
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = relation AND a.attnum > 0 AND NOT a.attisdropped;
    IF idtype IS NULL OR idtype NOT IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype) THEN
        RAISE EXCEPTION 'relation "%" has no integer column "id"', relation
            USING ERRCODE = '22023',
                  HINT = 'The documents relation needs columns id (an integer) and title, and may have deleted_at.';
    END IF;
    IF title_type IS NULL THEN
        RAISE EXCEPTION 'relation "%" has no column "title"', relation
            USING ERRCODE = '22023',
                  HINT = 'The documents relation needs columns id (an integer) and title, and may have deleted_at.';
    END IF;
    IF title_type::oid >= 16384 THEN
        RAISE EXCEPTION 'column "title" of relation "%" must have a built-in type, not %',
                        relation, title_type
            USING ERRCODE = '22023',
                  HINT = 'Use text or varchar, or a view that casts the column.';
    END IF;
    -- Admins' lookups run as the extension owner: only a relation the admin
    -- can read may be configured, so that this reveals nothing new to them.
    IF NOT pg_catalog.has_column_privilege(relation, 'id', 'SELECT')
       OR NOT pg_catalog.has_column_privilege(relation, 'title', 'SELECT') THEN
        RAISE EXCEPTION 'permission denied for relation %', relation
            USING ERRCODE = '42501',
                  HINT = 'You must be allowed to read the id and title columns of the documents relation yourself.';
    END IF;
    INSERT INTO jobs.setting AS s (name, value) VALUES ('documents_relation', relation::text)
    ON CONFLICT ON CONSTRAINT setting_pkey DO UPDATE SET value = excluded.value;
    RETURN relation;
END
$fn$;
COMMENT ON FUNCTION jobs.set_documents_relation(regclass) IS
    'Sets the table or view of documents (id, title, optional deleted_at) that v9 duplicate_documents looks up as the caller (admins only; NULL unsets it).';

-- Summary ------------------------------------------------------------------

CREATE TYPE jobs.task_summary AS (
    task_type               text,
    total_count             bigint,
    pending_count           bigint,
    success_count           bigint,
    failure_count           bigint,
    revoked_count           bigint,
    avg_duration_seconds    double precision,
    avg_wait_time_seconds   double precision,
    last_run                timestamptz,
    last_success            timestamptz,
    last_failure            timestamptz
);
COMMENT ON TYPE jobs.task_summary IS 'Per task type statistics returned by jobs.summary().';

/*
 * Per-day totals of finished jobs, so that jobs.summary() does not read every
 * row of its window.
 *
 * A daily partition of jobs.job_done is rolled up once, by
 * jobs.refresh_summaries() (the launcher runs it every
 * pg_jobs.maintenance_interval), into jobs.job_daily: one row per
 * (day, created_day, task_type, owner, status) with mergeable aggregates
 * (counts, sums and counts of the non-null durations and waits, latest start
 * and finish).  jobs.job_daily_done records which partitions are rolled up.
 * Finishing a job does no extra work: the totals are computed afterwards,
 * from partitions that no longer change.
 *
 * When a day is closed.  date_done is stamped by the lifecycle trigger with
 * the clock (GetCurrentTimestamp() in src/lifecycle.c, not the transaction
 * start), so a row whose date_done falls in day D was stamped before D ended,
 * by a transaction that started before D ended, and is visible once that
 * transaction has committed.  A day is therefore closed when its end is older
 * than the start of every transaction still running (pg_stat_activity
 * xact_start of every other backend but autovacuum; a backend in a writing
 * transaction whose start is not reported counts as "started at -infinity")
 * and than every prepared transaction, minus a margin of 10 minutes for
 * clock adjustments and the instant between the stamp and the row's xid.
 * See jobs._summary_horizon().
 *
 * Keeping the totals right when rows change anyway.  Finished rows are
 * immutable but for "acknowledged", which the summary does not use.  Rows can
 * still be deleted (retention, an admin), inserted with the triggers off
 * (backfills with session_replication_role = replica), or whole partitions
 * truncated, detached or dropped:
 *   - a rolled-up partition gets a row trigger job_daily_stale, AFTER INSERT
 *     OR DELETE and ENABLE ALWAYS (it fires in replica mode too), that forgets
 *     the day's totals in the same transaction; jobs.refresh_summaries() rolls
 *     the day up again on its next run.  It fires only for rows that land in
 *     or leave a closed day, never when a job finishes;
 *   - the rollup reads a partition under a SHARE lock, so no write to it can
 *     be in flight while it is counted;
 *   - a day's totals count only while its partition exists, is still a
 *     partition, and has the relfilenode it had when it was counted
 *     (TRUNCATE, VACUUM FULL, DROP, DETACH: checked by jobs._summary_days()
 *     on every summary); retention also forgets the days it drops.
 * The default partition is never rolled up: its rows are always read.
 */
CREATE TABLE jobs.job_daily (
    day             timestamptz NOT NULL,
    created_day     timestamptz NOT NULL,
    task_type       text NOT NULL,
    owner           name,
    status          jobs.status NOT NULL,
    jobs            bigint NOT NULL,
    duration_sum    double precision,
    duration_count  bigint NOT NULL,
    wait_sum        double precision,
    wait_count      bigint NOT NULL,
    last_started    timestamptz,
    last_done       timestamptz
);
CREATE INDEX job_daily_day ON jobs.job_daily (day);
COMMENT ON TABLE jobs.job_daily IS
    'Totals of finished jobs per history day (lower bound of the job_done partition), UTC day of creation, task type, owner and status (internal; see jobs.summary()).';
COMMENT ON COLUMN jobs.job_daily.duration_sum IS 'Sum of the non-null date_done - date_started in seconds; duration_count counts them.';
COMMENT ON COLUMN jobs.job_daily.wait_sum IS 'Sum of the non-null date_started - date_created in seconds; wait_count counts them.';

CREATE TABLE jobs.job_daily_done (
    day             timestamptz PRIMARY KEY,
    day_end         timestamptz NOT NULL,
    relid           oid NOT NULL UNIQUE,
    relfilenode     oid NOT NULL,
    rolled_up_at    timestamptz NOT NULL
);
COMMENT ON TABLE jobs.job_daily_done IS
    'The history partitions whose jobs are counted in jobs.job_daily (internal; see jobs.refresh_summaries()).';

-- Totals are as visible as the jobs they count: the job_select rule on owner.
ALTER TABLE jobs.job_daily ENABLE ROW LEVEL SECURITY;
CREATE POLICY job_daily_select ON jobs.job_daily FOR SELECT
    USING (jobs.visible(owner));
REVOKE ALL ON jobs.job_daily, jobs.job_daily_done FROM PUBLIC;
GRANT SELECT ON jobs.job_daily, jobs.job_daily_done TO PUBLIC;

-- UTC midnight starting the day of a timestamp: the created_day of jobs.job_daily.
CREATE FUNCTION jobs._utc_day(t timestamptz) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN pg_catalog.date_trunc('day', t AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';

/*
 * The rolled-up days whose totals are valid now: the partition counted is
 * still there, still a partition, with the same storage.  (Row changes are
 * handled by the job_daily_stale trigger, which deletes the day's record.)
 */
CREATE FUNCTION jobs._summary_days() RETURNS TABLE (day timestamptz, day_end timestamptz)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT d.day, d.day_end
    FROM jobs.job_daily_done d
    JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) d.relid
    WHERE c.relfilenode OPERATOR(pg_catalog.=) d.relfilenode AND c.relispartition
$fn$;
COMMENT ON FUNCTION jobs._summary_days() IS
    'Days of history whose totals in jobs.job_daily are valid (internal).';

/*
 * The closure horizon: a history day that ended before this time can no
 * longer receive rows from a job finishing (see the comment on
 * jobs.job_daily).  Needs to see every backend's xact_start, hence
 * pg_read_all_stats (or superuser); without it, NULL (nothing is closed).
 */
CREATE FUNCTION jobs._summary_horizon() RETURNS timestamptz
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE WHEN pg_catalog.pg_has_role('pg_read_all_stats', 'MEMBER') THEN
        LEAST(pg_catalog.clock_timestamp(),
              (SELECT pg_catalog.min(coalesce(a.xact_start, '-infinity'))
               FROM pg_catalog.pg_stat_activity a
               WHERE a.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()
                 AND (a.xact_start IS NOT NULL OR a.backend_xid IS NOT NULL)
                 AND a.backend_type NOT IN ('autovacuum worker', 'autovacuum launcher')),
              (SELECT pg_catalog.min(p.prepared) FROM pg_catalog.pg_prepared_xacts p))
        OPERATOR(pg_catalog.-) interval '10 minutes'
    END
$fn$;
COMMENT ON FUNCTION jobs._summary_horizon() IS
    'History days that ended before this time are closed: no running or prepared transaction can still add jobs to them (internal).';

-- The row trigger of rolled-up partitions (src/summary.c): a row arriving in
-- or leaving a counted day makes its totals stale; they are forgotten here
-- (and rolled up again by the next jobs.refresh_summaries()).
CREATE FUNCTION jobs._summary_forget(relid oid) RETURNS boolean
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
    WITH d AS (DELETE FROM jobs.job_daily_done d
               WHERE d.relid OPERATOR(pg_catalog.=) _summary_forget.relid
               RETURNING d.day),
         r AS (DELETE FROM jobs.job_daily r USING d
               WHERE r.day OPERATOR(pg_catalog.=) d.day)
    SELECT EXISTS (SELECT FROM d)
$fn$;
COMMENT ON FUNCTION jobs._summary_forget(oid) IS
    'Forgets the totals of the rolled-up history partition relid; true when it had some (internal).';
CREATE FUNCTION jobs._job_daily_stale() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_jobs_job_daily_stale';
COMMENT ON FUNCTION jobs._job_daily_stale() IS
    'Trigger of rolled-up history partitions: forgets the day''s totals when rows are inserted into or deleted from it (internal).';

/*
 * Roll up the closed history days not yet rolled up, oldest first, at most
 * max_days of them (the launcher calls it every maintenance interval; each
 * day is read once).  Idempotent; concurrent calls are serialised by an
 * advisory lock: a caller waits for the run in progress, or with wait =>
 * false (the launcher) returns {"busy": true} at once.  A day whose
 * partition is being written (an acknowledge, a backfill, a delete) is
 * skipped at once (LOCK ... NOWAIT) and tried on the next run; creating the
 * trigger of a newly counted day waits at most lock_timeout.  Returns
 * {"days_rolled_up": [...], "days_busy": [...], "days_forgotten": n, "more": bool}.
 */
CREATE FUNCTION jobs.refresh_summaries(max_days integer DEFAULT 7, wait boolean DEFAULT true)
    RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '100ms'
AS $fn$
DECLARE
    horizon   timestamptz;
    p         record;
    rolled    text[] := '{}';
    busy      text[] := '{}';
    forgotten bigint;
    budget    integer := greatest(coalesce(max_days, 7), 1);
    more      boolean := false;
BEGIN
    -- 'pg_j' 'summ' as the two halves of the key
    IF wait THEN
        -- the run in progress may take longer than the lock_timeout meant
        -- for partition locks: wait for it as long as it takes
        PERFORM pg_catalog.set_config('lock_timeout', '0', true);
        PERFORM pg_catalog.pg_advisory_xact_lock(1886937898, 1937075565);
        PERFORM pg_catalog.set_config('lock_timeout', '100ms', true);
    ELSIF NOT pg_catalog.pg_try_advisory_xact_lock(1886937898, 1937075565) THEN
        RETURN pg_catalog.jsonb_build_object('busy', true);
    END IF;

    -- forget days whose partition was dropped, detached, truncated or rewritten
    WITH gone AS (
        DELETE FROM jobs.job_daily_done d
        WHERE NOT EXISTS (SELECT 1 FROM jobs._summary_days() v WHERE v.day = d.day)
        RETURNING d.day),
    r AS (DELETE FROM jobs.job_daily r USING gone WHERE r.day = gone.day)
    SELECT pg_catalog.count(*) INTO forgotten FROM gone;

    horizon := jobs._summary_horizon();

    FOR p IN SELECT c.oid, c.relname, b.bounds[1]::timestamptz AS lo, b.bounds[2]::timestamptz AS hi
             FROM pg_catalog.pg_inherits i
             JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid,
             LATERAL pg_catalog.regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                 $re$^FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)$$re$) AS b(bounds)
             WHERE i.inhparent = 'jobs.job_done'::pg_catalog.regclass
               AND b.bounds[2]::timestamptz <= horizon
               AND NOT EXISTS (SELECT 1 FROM jobs.job_daily_done d WHERE d.relid = c.oid)
             ORDER BY 3
    LOOP
        IF budget <= 0 THEN
            more := true;
            EXIT;
        END IF;
        BEGIN
            -- no writer in flight while the day is counted; never wait for one
            EXECUTE pg_catalog.format('LOCK TABLE jobs.%I IN SHARE MODE NOWAIT', p.relname);
            IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                           WHERE t.tgrelid = p.oid AND t.tgname = 'job_daily_stale') THEN
                EXECUTE pg_catalog.format(
                    'CREATE TRIGGER job_daily_stale AFTER INSERT OR DELETE ON jobs.%I '
                    'FOR EACH ROW EXECUTE FUNCTION jobs._job_daily_stale()', p.relname);
                EXECUTE pg_catalog.format(
                    'ALTER TABLE jobs.%I ENABLE ALWAYS TRIGGER job_daily_stale', p.relname);
            END IF;
            DELETE FROM jobs.job_daily r WHERE r.day = p.lo;
            EXECUTE pg_catalog.format($q$
                INSERT INTO jobs.job_daily
                SELECT $1, jobs._utc_day(d.date_created), d.task_type, d.owner, d.status,
                       pg_catalog.count(*),
                       pg_catalog.sum(pg_catalog.date_part('epoch', d.date_done - d.date_started)),
                       pg_catalog.count(d.date_done - d.date_started),
                       pg_catalog.sum(pg_catalog.date_part('epoch', d.date_started - d.date_created)),
                       pg_catalog.count(d.date_started - d.date_created),
                       pg_catalog.max(d.date_started), pg_catalog.max(d.date_done)
                FROM jobs.%I d
                GROUP BY 2, 3, 4, 5$q$, p.relname)
            USING p.lo;
            INSERT INTO jobs.job_daily_done (day, day_end, relid, relfilenode, rolled_up_at)
            SELECT p.lo, p.hi, p.oid, c.relfilenode, pg_catalog.clock_timestamp()
            FROM pg_catalog.pg_class c WHERE c.oid = p.oid;
            rolled := rolled || p.relname::text;
        EXCEPTION WHEN lock_not_available THEN
            busy := busy || p.relname::text;
        END;
        budget := budget - 1;
    END LOOP;

    RETURN pg_catalog.jsonb_build_object(
        'horizon', horizon,     -- NULL: the owner lacks pg_read_all_stats
        'days_rolled_up', pg_catalog.to_jsonb(rolled),
        'days_busy', pg_catalog.to_jsonb(busy),
        'days_forgotten', forgotten,
        'more', more);
END
$fn$;
COMMENT ON FUNCTION jobs.refresh_summaries(integer, boolean) IS
    'Rolls up (at most max_days) closed history days into jobs.job_daily for jobs.summary(); run by the launcher every maintenance interval. Returns {"days_rolled_up","days_busy","days_forgotten","more",...}. Superusers and jobs_admin only.';
REVOKE ALL ON FUNCTION jobs.refresh_summaries(integer, boolean), jobs._job_daily_stale(),
    jobs._summary_forget(oid), jobs._summary_horizon() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs.refresh_summaries(integer, boolean) TO jobs_admin;
REVOKE ALL ON FUNCTION jobs._summary_days(), jobs._utc_day(timestamptz) FROM PUBLIC;

/*
 * Statistics per task type over the jobs created in the last `days` days
 * (clamped to [1, 365]) that the current user can see, i.e. the aggregates
 * of (in-flight jobs created since `since`) + (finished jobs with date_created
 * and date_done since `since`), computed from three parts:
 *   - the totals of jobs.job_daily for the rolled-up days that start at or
 *     after `since`, restricted to created days that start at or after `since`
 *     (whole days inside the window);
 *   - every other row, read from jobs.job: in-flight jobs (job_hot), finished
 *     jobs in the days not rolled up (the open days, the day `since` falls in,
 *     the default partition), listed as date_done ranges so that partitions
 *     are pruned at planning;
 *   - and, in the rolled-up days, the jobs created on the UTC day that
 *     `since` falls in, from `since` on (through the date_created index).
 * RLS applies to jobs.job and jobs.job_daily alike (same rule on owner), so
 * a non-monitor gets the totals of the jobs it can see.  The averages are
 * sums over counts of the non-null values, as avg() computes them.
 *
 * Monitors (jobs_monitor, pg_monitor, jobs_admin) get global statistics:
 * RLS would narrow what they read, so they go through
 * jobs._summary_global(), a security definer that runs this function again
 * as the extension owner, to whom RLS does not apply (row_security_active()
 * is false there, so it computes instead of recursing).  Superusers and the
 * owner compute directly: RLS does not narrow them either.
 */
CREATE FUNCTION jobs.summary(days integer DEFAULT 30) RETURNS SETOF jobs.task_summary
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    since      timestamptz;
    next_day   timestamptz;     -- the first created_day that starts at or after since
    d          record;
    pos        timestamptz;
    run_lo     timestamptz;
    run_hi     timestamptz;
    used       timestamptz[] := '{}';
    live       text[] := '{}';  -- date_done ranges read row by row
    counted    text[] := '{}';  -- date_done ranges of the rolled-up days
BEGIN
    IF pg_catalog.row_security_active('jobs.job')
       AND pg_catalog.has_function_privilege('jobs._summary_global(integer)', 'EXECUTE') THEN
        RETURN QUERY SELECT * FROM jobs._summary_global(days);
        RETURN;
    END IF;
    IF days IS NULL THEN
        RAISE EXCEPTION 'days must not be null'
            USING ERRCODE = '22023',
                  HINT = 'Pass a number of days between 1 and 365.';
    END IF;
    since := pg_catalog.now() - pg_catalog.make_interval(days => least(greatest(days, 1), 365));
    next_day := pg_catalog.date_trunc('day', since AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'; -- jobs._utc_day()
    IF next_day < since THEN
        next_day := next_day + interval '1 day';
    END IF;

    pos := since;
    -- the valid rolled-up days, as jobs._summary_days() lists them
    FOR d IN SELECT s.day, s.day_end FROM jobs.job_daily_done s
             JOIN pg_catalog.pg_class c ON c.oid = s.relid
             WHERE c.relfilenode = s.relfilenode AND c.relispartition
               AND s.day >= since ORDER BY s.day
    LOOP
        IF d.day > pos THEN
            live := live || pg_catalog.format('(j.date_done >= %L AND j.date_done < %L)', pos, d.day);
        END IF;
        pos := d.day_end;
        used := used || d.day;
        IF run_hi IS NOT NULL AND run_hi = d.day THEN
            run_hi := d.day_end;
        ELSE
            IF run_hi IS NOT NULL THEN
                counted := counted || pg_catalog.format('(j.date_done >= %L AND j.date_done < %L)', run_lo, run_hi);
            END IF;
            run_lo := d.day;
            run_hi := d.day_end;
        END IF;
    END LOOP;
    live := live || pg_catalog.format('j.date_done >= %L', pos);
    IF run_hi IS NOT NULL THEN
        counted := counted || pg_catalog.format('(j.date_done >= %L AND j.date_done < %L)', run_lo, run_hi);
    END IF;

    RETURN QUERY EXECUTE pg_catalog.format($q$
    WITH w AS (
        SELECT j.task_type, j.status, j.date_created, j.date_started, j.date_done
        FROM jobs.job j
        WHERE j.status IN ('pending', 'started') AND j.date_created >= $1
        UNION ALL
        SELECT j.task_type, j.status, j.date_created, j.date_started, j.date_done
        FROM jobs.job j
        WHERE j.status IN ('success', 'failure', 'revoked')
          AND j.date_done >= $1 AND j.date_created >= $1
          AND (%s)
        UNION ALL
        SELECT j.task_type, j.status, j.date_created, j.date_started, j.date_done
        FROM jobs.job j
        WHERE %s
          AND j.status IN ('success', 'failure', 'revoked')
          AND j.date_done >= $1 AND j.date_created >= $1 AND j.date_created < $2
          AND (%s)
    ),
    p AS (
        SELECT w.task_type,
               pg_catalog.count(*) AS total,
               pg_catalog.count(*) FILTER (WHERE w.status IN ('pending', 'started')) AS in_flight,
               pg_catalog.count(*) FILTER (WHERE w.status = 'success') AS success,
               pg_catalog.count(*) FILTER (WHERE w.status = 'failure') AS failure,
               pg_catalog.count(*) FILTER (WHERE w.status = 'revoked') AS revoked,
               pg_catalog.sum(pg_catalog.date_part('epoch', w.date_done - w.date_started)) AS dur_sum,
               pg_catalog.count(w.date_done - w.date_started) AS dur_n,
               pg_catalog.sum(pg_catalog.date_part('epoch', w.date_started - w.date_created)) AS wait_sum,
               pg_catalog.count(w.date_started - w.date_created) AS wait_n,
               pg_catalog.max(w.date_started) AS last_run,
               pg_catalog.max(w.date_done) FILTER (WHERE w.status = 'success') AS last_success,
               pg_catalog.max(w.date_done) FILTER (WHERE w.status = 'failure') AS last_failure
        FROM w
        GROUP BY w.task_type
        UNION ALL
        SELECT r.task_type,
               pg_catalog.sum(r.jobs)::bigint,
               0,
               coalesce(pg_catalog.sum(r.jobs) FILTER (WHERE r.status = 'success'), 0)::bigint,
               coalesce(pg_catalog.sum(r.jobs) FILTER (WHERE r.status = 'failure'), 0)::bigint,
               coalesce(pg_catalog.sum(r.jobs) FILTER (WHERE r.status = 'revoked'), 0)::bigint,
               pg_catalog.sum(r.duration_sum),
               pg_catalog.sum(r.duration_count)::bigint,
               pg_catalog.sum(r.wait_sum),
               pg_catalog.sum(r.wait_count)::bigint,
               pg_catalog.max(r.last_started),
               pg_catalog.max(r.last_done) FILTER (WHERE r.status = 'success'),
               pg_catalog.max(r.last_done) FILTER (WHERE r.status = 'failure')
        FROM jobs.job_daily r
        WHERE r.day = ANY ($3) AND r.created_day >= $1
        GROUP BY r.task_type
    )
    SELECT p.task_type,
           pg_catalog.sum(p.total)::bigint,
           pg_catalog.sum(p.in_flight)::bigint,
           pg_catalog.sum(p.success)::bigint,
           pg_catalog.sum(p.failure)::bigint,
           pg_catalog.sum(p.revoked)::bigint,
           pg_catalog.sum(p.dur_sum) / NULLIF(pg_catalog.sum(p.dur_n)::double precision, 0),
           pg_catalog.sum(p.wait_sum) / NULLIF(pg_catalog.sum(p.wait_n)::double precision, 0),
           pg_catalog.max(p.last_run),
           pg_catalog.max(p.last_success),
           pg_catalog.max(p.last_failure)
    FROM p
    GROUP BY p.task_type
    ORDER BY p.task_type$q$,
        pg_catalog.array_to_string(live, ' OR '),
        CASE WHEN pg_catalog.cardinality(counted) > 0 AND next_day > since THEN 'true' ELSE 'false' END,
        CASE WHEN pg_catalog.cardinality(counted) > 0
             THEN pg_catalog.array_to_string(counted, ' OR ') ELSE 'false' END)
    USING since, next_day, used;
END
$fn$;
COMMENT ON FUNCTION jobs.summary(integer) IS
    'Per task type: total, pending (incl. started), success, failure and revoked counts, average duration and wait, last run, success and failure, over the jobs created in the last days days (1 to 365). Global for monitors (jobs_monitor, pg_monitor, admins), else over the jobs the caller can see.';

-- Global statistics: run as the extension owner, so RLS does not narrow them.
CREATE FUNCTION jobs._summary_global(days integer) RETURNS SETOF jobs.task_summary
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT * FROM jobs.summary(days)
$fn$;
COMMENT ON FUNCTION jobs._summary_global(integer) IS
    'Per task type statistics over every job; executable by jobs_monitor, pg_monitor and jobs_admin only (internal).';

-- Run and acknowledge ------------------------------------------------------

CREATE FUNCTION jobs.run(task_type text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    tt  jobs.task_type;
    j   jobs.job;
BEGIN
    IF NOT jobs.is_admin() THEN
        RAISE EXCEPTION 'permission denied to trigger tasks manually'
            USING ERRCODE = '42501',
                  HINT = 'Only superusers and members of jobs_admin may use jobs.run().';
    END IF;
    SELECT t.* INTO tt FROM jobs.task_type t WHERE t.name = run.task_type;
    IF NOT FOUND OR NOT tt.runnable OR NOT tt.tracked THEN
        RAISE EXCEPTION 'Task type ''%'' cannot be manually triggered', coalesce(run.task_type, 'NULL')
            USING ERRCODE = '22023',
                  DETAIL = CASE WHEN tt.name IS NULL THEN 'The task type is not registered.'
                                WHEN NOT tt.runnable THEN 'The task type is not in the allowlist.'
                                ELSE 'The task type is not tracked, so no job would be stored.' END,
                  HINT = 'Admins allow it with jobs.register_task_type(..., runnable => true).';
    END IF;
    j := jobs.enqueue(tt.name, tt.run_input, 'manual', CURRENT_USER);
    RETURN pg_catalog.jsonb_build_object('task_id', j.task_id);
END
$fn$;
COMMENT ON FUNCTION jobs.run(text) IS
    'Triggers an allowlisted (runnable) task type now with its run_input, owned by the caller; returns {"task_id": ...} (admins only).';

/*
 * Mark jobs as acknowledged (dismissed from the task list).  An UPDATE that
 * meets a job a concurrent report is moving into history fails with
 * PostgreSQL's serialization error (the row moved to another partition); the
 * statement is then retried with a new snapshot, which sees the finished row.
 */
CREATE FUNCTION jobs.acknowledge(tasks bigint[] DEFAULT NULL, "all" boolean DEFAULT false)
    RETURNS jsonb
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    every   boolean := coalesce(acknowledge."all", false);
    bad     text;
    changed bigint;
    tries   integer := 0;
BEGIN
    IF NOT pg_catalog.has_column_privilege('jobs.job', 'acknowledged', 'UPDATE') THEN
        RAISE EXCEPTION 'permission denied to acknowledge tasks'
            USING ERRCODE = '42501',
                  HINT = 'Acknowledging needs the change permission: UPDATE on column acknowledged of jobs.job.';
    END IF;
    IF tasks IS NOT NULL AND every THEN
        RAISE EXCEPTION 'pass either tasks or all => true, not both'
            USING ERRCODE = '22023';
    END IF;
    IF tasks IS NULL AND NOT every THEN
        RAISE EXCEPTION 'nothing to acknowledge'
            USING ERRCODE = '22023',
                  HINT = 'Pass the ids of the tasks to acknowledge, or all => true.';
    END IF;
    IF NOT every THEN
        IF pg_catalog.cardinality(tasks) = 0 THEN
            RAISE EXCEPTION 'tasks must list at least one task id'
                USING ERRCODE = '22023';
        END IF;
        IF pg_catalog.array_position(tasks, NULL) IS NOT NULL THEN
            RAISE EXCEPTION 'task ids must not be null'
                USING ERRCODE = '22023';
        END IF;
        SELECT pg_catalog.string_agg(d.id::text, ', ' ORDER BY d.id) INTO bad
        FROM (SELECT u.id FROM pg_catalog.unnest(tasks) AS u(id)
              GROUP BY u.id HAVING pg_catalog.count(*) > 1) d;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION 'task ids must be listed once'
                USING ERRCODE = '22023',
                      DETAIL = pg_catalog.format('Listed more than once: %s.', bad);
        END IF;
        SELECT pg_catalog.string_agg(u.id::text, ', ' ORDER BY u.id) INTO bad
        FROM pg_catalog.unnest(tasks) AS u(id)
        WHERE NOT EXISTS (SELECT 1 FROM jobs.job j WHERE j.id = u.id);
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION 'unknown task ids: %', bad
                USING ERRCODE = '22023',
                      HINT = 'The ids are unknown, or of jobs that belong to another role; nothing was acknowledged.';
        END IF;
    END IF;

    LOOP
        BEGIN
            UPDATE jobs.job j SET acknowledged = true
            WHERE (every OR j.id = ANY (tasks)) AND NOT j.acknowledged;
            GET DIAGNOSTICS changed = ROW_COUNT;
            EXIT;
        EXCEPTION WHEN serialization_failure THEN
            tries := tries + 1;
            IF tries >= 10 THEN
                RAISE;
            END IF;
        END;
    END LOOP;
    RETURN pg_catalog.jsonb_build_object('result', changed);
END
$fn$;
COMMENT ON FUNCTION jobs.acknowledge(bigint[], boolean) IS
    'Acknowledges the listed tasks (each visible, listed once) or all visible unacknowledged ones; returns {"result": rows changed}. Needs UPDATE on jobs.job(acknowledged).';

-- Grants: the API is for everyone (RLS and the checks inside decide),
-- helpers the view and the list functions call as the caller included; the
-- definer helpers only for the roles they serve.
REVOKE ALL ON FUNCTION
    jobs.document_id(jsonb), jobs.queue_position(text), jobs._queue_ahead(bigint),
    jobs.task_filter_clause(),
    jobs.task_filter(text[], text[], text[], boolean, boolean, text, text, text, name,
                     timestamptz, timestamptz),
    jobs.tasks(integer, integer, text[], text[], text[], boolean, boolean, text, text, text,
               name, timestamptz, timestamptz, text),
    jobs.status_counts(text[], text[], text[], boolean, boolean, text, text, text, name,
                       timestamptz, timestamptz),
    jobs.active(), jobs.document(bigint), jobs._document_for_admin(bigint),
    jobs.tasks_v9(text, text, text), jobs.set_documents_relation(regclass),
    jobs._summary_global(integer), jobs.summary(integer),
    jobs.run(text), jobs.acknowledge(bigint[], boolean), jobs.children(text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    jobs.document_id(jsonb), jobs.queue_position(text), jobs.task_filter_clause(),
    jobs.task_filter(text[], text[], text[], boolean, boolean, text, text, text, name,
                     timestamptz, timestamptz),
    jobs.tasks(integer, integer, text[], text[], text[], boolean, boolean, text, text, text,
               name, timestamptz, timestamptz, text),
    jobs.status_counts(text[], text[], text[], boolean, boolean, text, text, text, name,
                       timestamptz, timestamptz),
    jobs.active(), jobs.document(bigint), jobs.tasks_v9(text, text, text),
    jobs.set_documents_relation(regclass), jobs.summary(integer),
    jobs.run(text), jobs.acknowledge(bigint[], boolean), jobs.children(text)
    TO PUBLIC;
-- Global statistics are for system monitoring; admins see everything anyway.
GRANT EXECUTE ON FUNCTION jobs._summary_global(integer) TO jobs_monitor, pg_monitor, jobs_admin;
-- Admins see every document (see jobs.tasks_v9()).
GRANT EXECUTE ON FUNCTION jobs._document_for_admin(bigint) TO jobs_admin;
-- jobs._queue_ahead(): nobody (src/guarded.c calls it after checking the caller).
-- The v10 rows are every visible job (security_invoker: RLS of the caller).
GRANT SELECT ON jobs.task_v10 TO PUBLIC;


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

CREATE FUNCTION jobs.current_task_id() RETURNS text
    LANGUAGE c STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'pg_jobs_current_task_id';
COMMENT ON FUNCTION jobs.current_task_id() IS
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
    'Internal: appends an entry by job id (admins and the engine; the job is not looked up). Same cap and notifications as jobs.log(). Executable by jobs_admin.';

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
 * The id of a job the caller can see, by task id: 22004 when NULL, 22023
 * when empty, PT404 when unknown or invisible (row-level security decides).
 */
CREATE FUNCTION jobs.job_id(task_id text) RETURNS bigint
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    jid bigint;
BEGIN
    IF task_id IS NULL THEN
        RAISE EXCEPTION 'task id must not be null' USING ERRCODE = '22004';
    ELSIF task_id = '' THEN
        RAISE EXCEPTION 'task id must not be empty' USING ERRCODE = '22023';
    END IF;
    SELECT j.id INTO jid FROM jobs.job j WHERE j.task_id = job_id.task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % does not exist', task_id
            USING ERRCODE = 'PT404',
                  HINT = 'The task id is unknown, or the job belongs to another role.';
    END IF;
    RETURN jid;
END
$fn$;
COMMENT ON FUNCTION jobs.job_id(text) IS
    'The id of a job the caller can see, by task id (22004 when NULL, 22023 when empty, PT404 when unknown or invisible).';

CREATE FUNCTION jobs.logs(task_id text, level text DEFAULT NULL, source text DEFAULT NULL,
                          after_id bigint DEFAULT NULL, max_rows integer DEFAULT 1000)
    RETURNS SETOF jobs.log_entry
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    jid     bigint := jobs.job_id(logs.task_id);
    all_levels CONSTANT text[] := '{debug,info,notice,warning,error}';
    pos     integer := pg_catalog.array_position(all_levels, logs.level);
    levels  text[];     -- at least as severe as level; NULL: no filter
BEGIN
    IF logs.level IS NOT NULL THEN
        IF pos IS NULL THEN
            RAISE EXCEPTION 'unknown log level "%"', logs.level
                USING ERRCODE = '22023', HINT = 'Use debug, info, notice, warning or error.';
        END IF;
        levels := all_levels[pos:];
    END IF;
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
    jid bigint := jobs.job_id(log_stats.task_id);
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
    jid bigint := jobs.job_id(log_sources.task_id);
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
    IF NOT jobs.is_admin() THEN
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
    'Internal (retention): deletes the log entries of the given jobs; returns how many. Executable by jobs_admin.';

-- Admins delete entries (retention); inserts go through jobs.log().
CREATE POLICY job_log_delete ON jobs.job_log FOR DELETE
    USING (jobs.is_admin());

-- Everyone may call the log API: jobs.log checks who may write to which job,
-- the read functions run as the caller under row-level security, follow
-- checks visibility.  The internal writers by job id are for admins (and
-- check for them themselves too).
REVOKE ALL ON FUNCTION
    jobs._log_write(bigint, text, text, text, jsonb, timestamptz), jobs._purge_logs(bigint[])
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    jobs._log_write(bigint, text, text, text, jsonb, timestamptz), jobs._purge_logs(bigint[])
    TO jobs_admin;
GRANT EXECUTE ON FUNCTION
    jobs.current_task_id(), jobs.log(text, text, text, jsonb, text),
    jobs.follow(text, text, text), jobs.unfollow(text), jobs.job_id(text),
    jobs.logs(text, text, text, bigint, integer), jobs.log_stats(text),
    jobs.log_sources(text)
    TO PUBLIC;

-- 11. Retention ---------------------------------------------------------

/*
 * Finished jobs older than pg_jobs.retention (success) and
 * pg_jobs.retention_failed (failure, revoked) are removed with their log
 * entries by jobs.apply_retention(), which the launcher runs every ten
 * minutes.  Cheap by construction:
 *   - a daily partition of jobs.job_done whose whole day is past both
 *     retentions is dropped (its jobs' log entries are deleted first, through
 *     the (job_id, id) index): no dead rows, no vacuum debt;
 *   - rows past retention elsewhere (jobs.job_done_default, or a day that is
 *     past only the shorter of two different retentions) are deleted in
 *     batches of 1000, at most max_rows per run; the launcher runs again at
 *     once while a run reports "more".
 * Dropping a partition needs a brief ACCESS EXCLUSIVE lock on jobs.job_done;
 * it waits at most one second (lock_timeout) and is otherwise retried on the
 * next run.  In-flight jobs live in jobs.job_hot, which is never touched;
 * acknowledged or not does not matter.
 */
CREATE TABLE jobs.maintenance_state (
    name        text PRIMARY KEY CHECK (name <> ''),
    last_run    timestamptz NOT NULL,
    result      jsonb NOT NULL
);
COMMENT ON TABLE jobs.maintenance_state IS
    'Outcome of the last run of each maintenance task (e.g. retention), shown by jobs.health().';
-- Counts and times only: readable by everyone (jobs.health() runs as the caller).
REVOKE ALL ON jobs.maintenance_state FROM PUBLIC;
GRANT SELECT ON jobs.maintenance_state TO PUBLIC;

-- A retention setting in seconds as an interval; NULL = keep forever.
CREATE FUNCTION jobs._retention(setting text) RETURNS interval
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT CASE WHEN v.secs > 0 THEN pg_catalog.justify_hours(pg_catalog.make_interval(secs => v.secs)) END
            FROM (SELECT coalesce((SELECT s.setting::bigint FROM pg_catalog.pg_settings s
                                   WHERE s.name OPERATOR(pg_catalog.=) _retention.setting),
                                  2592000) AS secs) v);
COMMENT ON FUNCTION jobs._retention(text) IS
    'A retention setting (seconds) as an interval; NULL when it is 0 (keep forever).';

CREATE FUNCTION jobs.apply_retention(max_rows integer DEFAULT 100000) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '1s'
AS $fn$
DECLARE
    keep_s    interval;
    keep_f    interval;
    cut_s     timestamptz;
    cut_f     timestamptz;
    drop_cut  timestamptz;
    p         record;
    b         text[];
    dropped   text[] := '{}';
    skipped   text[] := '{}';
    rows_del  bigint := 0;
    logs_del  bigint := 0;
    n_rows    bigint;
    n_logs    bigint;
    budget    bigint := greatest(coalesce(max_rows, 100000), 1);
    more      boolean := false;
    outcome   jsonb;
BEGIN
    -- the settings are defined once the library is loaded
    PERFORM jobs.is_admin();
    keep_s := jobs._retention('pg_jobs.retention');
    IF (SELECT s.setting::integer FROM pg_catalog.pg_settings s
        WHERE s.name = 'pg_jobs.retention_failed') >= 0 THEN
        keep_f := jobs._retention('pg_jobs.retention_failed');
    ELSE
        keep_f := keep_s;
    END IF;
    cut_s := pg_catalog.now() - keep_s;
    cut_f := pg_catalog.now() - keep_f;
    IF cut_s IS NOT NULL AND cut_f IS NOT NULL THEN
        drop_cut := LEAST(cut_s, cut_f);
    END IF;

    BEGIN
        -- Row deletes first, partition drops last: the exclusive lock a drop
        -- takes is then held only until the caller commits.
        FOR p IN SELECT c.relname,
                        pg_catalog.regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                            $re$^FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)$$re$) AS bounds
                 FROM pg_catalog.pg_inherits i
                 JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'jobs.job_done'::pg_catalog.regclass
                 ORDER BY c.relname
        LOOP
            b := p.bounds;
            CONTINUE WHEN b IS NOT NULL AND drop_cut IS NOT NULL
                          AND b[2]::timestamptz <= drop_cut;     -- dropped below
            CONTINUE WHEN b IS NOT NULL
                          AND b[1]::timestamptz >= GREATEST(cut_s, cut_f); -- all recent
            CONTINUE WHEN cut_s IS NULL AND cut_f IS NULL;
            LOOP
                EXIT WHEN budget <= 0;
                EXECUTE pg_catalog.format($q$
                    WITH v AS (SELECT d.id FROM jobs.%1$I d
                               WHERE (d.status = 'success' AND d.date_done < $1)
                                  OR (d.status <> 'success' AND d.date_done < $2)
                               LIMIT $3),
                         l AS (DELETE FROM jobs.job_log g USING v
                               WHERE g.job_id = v.id RETURNING 1),
                         j AS (DELETE FROM jobs.%1$I d USING v
                               WHERE d.id = v.id RETURNING 1)
                    SELECT (SELECT pg_catalog.count(*) FROM j), (SELECT pg_catalog.count(*) FROM l)$q$,
                    p.relname)
                INTO n_rows, n_logs
                USING cut_s, cut_f, LEAST(budget, 1000);
                rows_del := rows_del + n_rows;
                logs_del := logs_del + n_logs;
                budget := budget - n_rows;
                EXIT WHEN n_rows < LEAST(budget + n_rows, 1000);
            END LOOP;
            IF budget <= 0 THEN
                more := true;
                EXIT;
            END IF;
        END LOOP;

        IF drop_cut IS NOT NULL THEN
            FOR p IN SELECT c.relname,
                            pg_catalog.regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                                $re$^FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)$$re$) AS bounds
                     FROM pg_catalog.pg_inherits i
                     JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
                     WHERE i.inhparent = 'jobs.job_done'::pg_catalog.regclass
                     ORDER BY c.relname
            LOOP
                CONTINUE WHEN p.bounds IS NULL OR p.bounds[2]::timestamptz > drop_cut;
                BEGIN
                    EXECUTE pg_catalog.format(
                        'DELETE FROM jobs.job_log g USING jobs.%I d WHERE g.job_id = d.id',
                        p.relname);
                    GET DIAGNOSTICS n_logs = ROW_COUNT;
                    EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) FROM jobs.%I', p.relname)
                        INTO n_rows;
                    -- the day's totals for jobs.summary() go with it
                    PERFORM jobs._summary_forget(
                        pg_catalog.format('jobs.%I', p.relname)::pg_catalog.regclass);
                    EXECUTE pg_catalog.format('ALTER TABLE jobs.job_done DETACH PARTITION jobs.%I',
                                              p.relname);
                    -- A partition still a member of the extension (made by
                    -- the install script of an earlier build) cannot be
                    -- dropped on its own (2BP01): release it first.
                    IF EXISTS (SELECT 1 FROM pg_catalog.pg_depend dep
                               WHERE dep.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                                 AND dep.objid = pg_catalog.format('jobs.%I', p.relname)::pg_catalog.regclass
                                 AND dep.deptype = 'e') THEN
                        EXECUTE pg_catalog.format('ALTER EXTENSION pg_jobs DROP TABLE jobs.%I',
                                                  p.relname);
                    END IF;
                    EXECUTE pg_catalog.format('DROP TABLE jobs.%I', p.relname);
                    dropped := dropped || p.relname::text;
                    rows_del := rows_del + n_rows;
                    logs_del := logs_del + n_logs;
                EXCEPTION WHEN lock_not_available THEN
                    -- busy: try again on the next run
                    skipped := skipped || p.relname::text;
                END;
            END LOOP;
        END IF;

        outcome := pg_catalog.jsonb_build_object(
            'at', pg_catalog.now(),
            'retention', keep_s, 'retention_failed', keep_f,
            'partitions_dropped', pg_catalog.to_jsonb(dropped),
            'partitions_busy', pg_catalog.to_jsonb(skipped),
            'rows_deleted', rows_del, 'logs_deleted', logs_del,
            'more', more);
    EXCEPTION WHEN OTHERS THEN
        -- Recorded, not raised: the launcher's other work must go on.
        outcome := pg_catalog.jsonb_build_object(
            'at', pg_catalog.now(), 'error', SQLERRM, 'sqlstate', SQLSTATE, 'more', false);
        RAISE WARNING 'pg_jobs: retention failed: %', SQLERRM;
    END;

    INSERT INTO jobs.maintenance_state AS m (name, last_run, result)
    VALUES ('retention', pg_catalog.now(), outcome)
    ON CONFLICT (name) DO UPDATE SET last_run = excluded.last_run, result = excluded.result;
    RETURN outcome;
END
$fn$;
COMMENT ON FUNCTION jobs.apply_retention(integer) IS
    'Removes finished jobs (and their logs) older than pg_jobs.retention / pg_jobs.retention_failed: drops whole daily history partitions, deletes other rows in batches (at most max_rows). Returns {"partitions_dropped","rows_deleted","logs_deleted","more",...}. Run by the launcher; superusers and jobs_admin only.';
-- Security definer because dropping a partition needs its owner; so only the
-- roles that may remove history can run it.
REVOKE ALL ON FUNCTION jobs.apply_retention(integer), jobs._retention(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs.apply_retention(integer) TO jobs_admin;

/*
 * Whether pg_jobs' own workers run the jobs of this database.  Without
 * shared_preload_libraries the SQL API works but no worker runs handlers;
 * jobs.engine() (in jobs.health()) says so, and so do warnings when the
 * extension is created and when a handler is registered where no worker
 * will run it.
 */
CREATE FUNCTION jobs.engine() RETURNS jsonb
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'pg_jobs_engine';
COMMENT ON FUNCTION jobs.engine() IS
    'Whether pg_jobs workers run the jobs of this database: {"preloaded","serves_this_database","databases","workers","reason","hint"}; reason and hint say why not and what to do.';
-- Settings and database names, which everyone may read anyway.
GRANT EXECUTE ON FUNCTION jobs.engine() TO PUBLIC;

CREATE FUNCTION jobs._installed() RETURNS void
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'pg_jobs_installed';
COMMENT ON FUNCTION jobs._installed() IS
    'Called once by CREATE EXTENSION: warns when no worker will run this database''s jobs (internal).';
REVOKE ALL ON FUNCTION jobs._installed() FROM PUBLIC;
SELECT jobs._installed();

CREATE FUNCTION jobs._handler_registered() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_jobs_handler_registered';
COMMENT ON FUNCTION jobs._handler_registered() IS
    'Trigger of jobs.task_type: warns when a handler is registered where no worker will run it (internal).';
REVOKE ALL ON FUNCTION jobs._handler_registered() FROM PUBLIC;
CREATE TRIGGER handler_registered AFTER INSERT OR UPDATE OF handler ON jobs.task_type
    FOR EACH ROW WHEN (NEW.handler IS NOT NULL)
    EXECUTE FUNCTION jobs._handler_registered();
COMMENT ON TRIGGER handler_registered ON jobs.task_type IS
    'Warns when a handler is registered in a database whose jobs no pg_jobs worker runs.';

CREATE FUNCTION jobs.health() RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT pg_catalog.jsonb_build_object(
        'engine', jobs.engine(),
        'workers', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                        'slot', w.slot, 'pid', w.pid, 'state', w.state,
                        'task_id', w.task_id, 'since', w.since) ORDER BY w.slot), '[]')
                    FROM jobs.workers() w),
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
                    FROM jobs.job j WHERE j.status = 'started'),
        'last_retention', (SELECT m.result FROM jobs.maintenance_state m
                           WHERE m.name = 'retention'));
END;
COMMENT ON FUNCTION jobs.health() IS
    'Whether workers run this database''s jobs and why not (jobs.engine()), workers (pid, state, current task when the caller can see it, since), pending/started counts per queue, oldest pending age, running task ids, and the last retention run, over the jobs the caller can see.';
-- Counts, pids and task ids the caller may see anyway: everyone may call it.
GRANT EXECUTE ON FUNCTION jobs.health() TO PUBLIC;

-- 12. Schedules (pg_cron) -----------------------------------------------

/*
 * jobs.schedule() stores a schedule in jobs.schedule and registers a pg_cron
 * job named "pg_jobs:<name>" whose command is only
 *     SELECT jobs._scheduled_enqueue('<name>')
 * (quoted with %L), so the definition lives here and the command is tiny and
 * quoting-safe.  pg_cron runs the command as the role that scheduled it,
 * which makes that role the owner of each run; the run's input carries
 * "_schedule": <name> so the job says which schedule produced it.  Every
 * function here is SECURITY INVOKER: pg_cron's own permissions (USAGE on
 * schema cron) and ours both apply to the caller.  Schedules are per role,
 * like pg_cron's job names: (owner, name) is the key.
 *
 * Who may create jobs with trigger source "scheduled": admins and members of
 * jobs_scheduler.  That is enforced for every client (jobs.enqueue, direct
 * INSERTs) by a restrictive row-level security policy on jobs.job whose
 * check is evaluated only for that trigger source.
 */
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'jobs_scheduler') THEN
        CREATE ROLE jobs_scheduler NOLOGIN;
    END IF;
END
$roles$;

/*
 * May the current role schedule jobs?  With raise_error, false becomes an
 * error that says why: the row-level security policy below uses it so, as a
 * bare policy violation would not.
 */
CREATE FUNCTION jobs.may_schedule(raise_error boolean DEFAULT false) RETURNS boolean
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF jobs.is_admin() OR pg_catalog.pg_has_role('jobs_scheduler', 'MEMBER') THEN
        RETURN true;
    END IF;
    IF raise_error THEN
        RAISE EXCEPTION 'permission denied to create jobs with trigger source "scheduled"'
            USING ERRCODE = '42501',
                  HINT = 'Only superusers and members of jobs_admin or jobs_scheduler may; use jobs.schedule().';
    END IF;
    RETURN false;
END
$fn$;
COMMENT ON FUNCTION jobs.may_schedule(boolean) IS
    'True when the current role may schedule jobs and create jobs with trigger source scheduled: a superuser, a member of jobs_admin or of jobs_scheduler. With raise_error => true, 42501 instead of false.';

CREATE POLICY job_insert_scheduled ON jobs.job AS RESTRICTIVE FOR INSERT
    WITH CHECK (trigger_source OPERATOR(pg_catalog.<>) 'scheduled'
                OR jobs.may_schedule(raise_error => true));

CREATE TABLE jobs.schedule (
    owner       name NOT NULL DEFAULT CURRENT_USER,
    name        text NOT NULL CHECK (name <> ''),
    cron        text NOT NULL,
    task_type   text NOT NULL,
    input       jsonb NOT NULL DEFAULT '{}',
    cron_job_id bigint,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (owner, name)
);
COMMENT ON TABLE jobs.schedule IS
    'Recurring jobs: each row is a pg_cron job "pg_jobs:<name>" of its owner that enqueues task_type with input (trigger source scheduled). Change it with jobs.schedule() / jobs.unschedule().';

ALTER TABLE jobs.schedule ENABLE ROW LEVEL SECURITY;
-- Everyone sees the schedules of roles they belong to (admins all), and
-- changes only their own (pg_cron jobs belong to the role that made them).
CREATE POLICY schedule_select ON jobs.schedule FOR SELECT
    USING (jobs.visible(owner));
CREATE POLICY schedule_write ON jobs.schedule FOR ALL
    USING (owner OPERATOR(pg_catalog.=) CURRENT_USER)
    WITH CHECK (owner OPERATOR(pg_catalog.=) CURRENT_USER);
REVOKE ALL ON jobs.schedule FROM PUBLIC;
GRANT SELECT, DELETE ON jobs.schedule TO PUBLIC;       -- RLS: own rows; unschedule needs no role
GRANT INSERT, UPDATE ON jobs.schedule TO jobs_scheduler, jobs_admin;

CREATE FUNCTION jobs.schedule(name text, cron text, task_type text, input jsonb DEFAULT '{}')
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    tt  jobs.task_type;
    jid bigint;
BEGIN
    IF NOT jobs.may_schedule() THEN
        RAISE EXCEPTION 'permission denied to schedule jobs'
            USING ERRCODE = '42501',
                  HINT = 'Only superusers and members of jobs_admin or jobs_scheduler may schedule jobs.';
    END IF;
    IF name IS NULL OR pg_catalog.btrim(name) = '' THEN
        RAISE EXCEPTION 'schedule name must not be empty' USING ERRCODE = '22023';
    END IF;
    -- pg_cron keeps "pg_jobs:<name>" in a column of type name (63 bytes):
    -- a longer name would be cut there and collide with others.
    IF pg_catalog.octet_length(name) > 55 THEN
        RAISE EXCEPTION 'schedule name is too long'
            USING ERRCODE = '22023',
                  DETAIL = pg_catalog.format('The name has %s bytes; at most 55 are allowed.',
                                             pg_catalog.octet_length(name)),
                  HINT = 'pg_cron names the job "pg_jobs:<name>" in at most 63 bytes; choose a shorter name.';
    END IF;
    IF cron IS NULL OR pg_catalog.btrim(cron) = '' THEN
        RAISE EXCEPTION 'cron schedule must not be empty'
            USING ERRCODE = '22023', HINT = 'Use cron syntax, e.g. ''0 3 * * *'' (03:00 GMT daily).';
    END IF;
    IF input IS NULL OR pg_catalog.jsonb_typeof(input) <> 'object' THEN
        RAISE EXCEPTION 'job input must be a JSON object' USING ERRCODE = '22023';
    END IF;
    SELECT t.* INTO tt FROM jobs.task_type t WHERE t.name = schedule.task_type;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown task type "%"', task_type
            USING ERRCODE = '22023', HINT = 'Register it with jobs.register_task_type().';
    END IF;
    IF NOT tt.tracked THEN
        RAISE EXCEPTION 'task type "%" is not tracked, so its scheduled runs would store nothing', task_type
            USING ERRCODE = '22023';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in database "%"', pg_catalog.current_database()
            USING ERRCODE = '55000',
                  DETAIL = 'Schedules of pg_jobs are run by pg_cron.',
                  HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database, and run CREATE EXTENSION pg_cron.';
    END IF;
    IF NOT pg_catalog.has_schema_privilege('cron', 'USAGE') THEN
        RAISE EXCEPTION 'permission denied for schema cron'
            USING ERRCODE = '42501',
                  HINT = 'An administrator must GRANT USAGE ON SCHEMA cron to the role (or to jobs_scheduler).';
    END IF;

    INSERT INTO jobs.schedule AS s (owner, name, cron, task_type, input)
    VALUES (CURRENT_USER, schedule.name, schedule.cron, schedule.task_type, schedule.input)
    ON CONFLICT ON CONSTRAINT schedule_pkey DO UPDATE
        SET cron = excluded.cron, task_type = excluded.task_type, input = excluded.input,
            updated_at = pg_catalog.now();
    BEGIN
        -- same name again: pg_cron updates its job in place
        jid := cron.schedule('pg_jobs:' || schedule.name, schedule.cron,
                             pg_catalog.format('SELECT jobs._scheduled_enqueue(%L)', schedule.name));
    EXCEPTION WHEN OTHERS THEN
        IF SQLERRM LIKE 'invalid schedule%' THEN
            RAISE EXCEPTION 'invalid cron schedule "%"', schedule.cron
                USING ERRCODE = '22023',
                      DETAIL = SQLERRM,
                      HINT = 'Use five fields (minute hour day month weekday) in GMT, e.g. ''0 3 * * *''; @hourly, @daily, ... also work. pg_cron 1.4 has no seconds.';
        END IF;
        RAISE;
    END;
    UPDATE jobs.schedule s SET cron_job_id = jid
     WHERE s.owner = CURRENT_USER AND s.name = schedule.name;
    RETURN jid;
END
$fn$;
COMMENT ON FUNCTION jobs.schedule(text, text, text, jsonb) IS
    'Creates or updates the caller''s schedule name (at most 55 bytes): pg_cron enqueues task_type with input at every cron time (GMT), trigger source scheduled, owned by the caller. Returns the pg_cron job id. Needs jobs_scheduler (or admin) and USAGE on schema cron; 55000 when pg_cron is not installed.';

CREATE FUNCTION jobs.unschedule(name text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    had_row  boolean;
    had_cron boolean := false;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in database "%"', pg_catalog.current_database()
            USING ERRCODE = '55000',
                  DETAIL = 'Schedules of pg_jobs are run by pg_cron.',
                  HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database, and run CREATE EXTENSION pg_cron.';
    END IF;
    DELETE FROM jobs.schedule d
     WHERE d.owner = CURRENT_USER AND d.name = unschedule.name;
    had_row := FOUND;
    IF pg_catalog.has_schema_privilege('cron', 'USAGE') THEN
        -- cron.job shows the caller only its own jobs; one left without its
        -- row (deleted by hand) is removed too
        IF EXISTS (SELECT 1 FROM cron.job c WHERE c.jobname = 'pg_jobs:' || unschedule.name) THEN
            PERFORM cron.unschedule(('pg_jobs:' || unschedule.name)::name);
            had_cron := true;
        END IF;
    ELSIF had_row THEN
        RAISE EXCEPTION 'permission denied for schema cron'
            USING ERRCODE = '42501',
                  HINT = 'An administrator must GRANT USAGE ON SCHEMA cron to the role (or to jobs_scheduler).';
    END IF;
    RETURN had_row OR had_cron;
END
$fn$;
COMMENT ON FUNCTION jobs.unschedule(text) IS
    'Removes the caller''s schedule name and its pg_cron job; false when the caller has no such schedule.';

/*
 * The command of every pg_cron job of pg_jobs: enqueue one run of the
 * caller's schedule.  pg_cron runs it as the role that scheduled it.
 */
CREATE FUNCTION jobs._scheduled_enqueue(name text) RETURNS jobs.job
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s jobs.schedule;
BEGIN
    SELECT d.* INTO s FROM jobs.schedule d
     WHERE d.owner = CURRENT_USER AND d.name = _scheduled_enqueue.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'schedule "%" of role "%" does not exist', name, CURRENT_USER
            USING ERRCODE = 'PT404';
    END IF;
    RETURN jobs.enqueue(s.task_type,
                        s.input OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('_schedule', s.name),
                        'scheduled', s.owner);
END
$fn$;
COMMENT ON FUNCTION jobs._scheduled_enqueue(text) IS
    'Enqueues one run of the caller''s schedule (what pg_cron executes): trigger source scheduled, owner the caller, input with "_schedule": name.';

REVOKE ALL ON FUNCTION jobs.may_schedule(boolean), jobs.schedule(text, text, text, jsonb),
    jobs.unschedule(text), jobs._scheduled_enqueue(text) FROM PUBLIC;
-- The policy check runs for every role that inserts jobs; the API checks
-- inside (jobs_scheduler, pg_cron's USAGE, row-level security).
GRANT EXECUTE ON FUNCTION jobs.may_schedule(boolean), jobs.schedule(text, text, text, jsonb),
    jobs.unschedule(text) TO PUBLIC;
-- What pg_cron runs, as the scheduling role: only schedulers (and admins)
-- create scheduled jobs anyway.
GRANT EXECUTE ON FUNCTION jobs._scheduled_enqueue(text) TO jobs_scheduler, jobs_admin;

/*
 * User data: keep it in pg_dump output (see "Backup and restore" in the
 * README).  pg_dump leaves the tables of an extension out unless they are
 * marked here, and dumps the rows of a partitioned table through its
 * partitions, so the partitions that belong to the extension are marked
 * (marking jobs.job or jobs.job_done does nothing).  The day partitions of
 * jobs.job_done do not belong to it (jobs.ensure_partitions()) and are dumped
 * like any table, with their rows.  The restored rows pass the lifecycle
 * trigger unchanged (src/lifecycle.c, "restore").
 *
 * Not dumped: the built-in trigger sources (CREATE EXTENSION makes them
 * again), and what the engine rebuilds or only reports: jobs.job_daily and
 * jobs.job_daily_done (totals keyed by the storage of this database's
 * partitions; rolled up again by jobs.refresh_summaries()),
 * jobs.maintenance_state (the last retention run here) and jobs.log_follower
 * (live sessions).
 */
SELECT pg_catalog.pg_extension_config_dump('jobs.task_type', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.trigger_source',
    $$WHERE name NOT IN ('manual', 'scheduled', 'web_ui', 'api_upload', 'folder_consume', 'email_consume', 'system')$$);
SELECT pg_catalog.pg_extension_config_dump('jobs.job_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.job_hot', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.job_done_default', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.job_dependency', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.job_log', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.job_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.schedule', '');

NOTIFY pgrst, 'reload schema';
