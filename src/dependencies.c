/*-------------------------------------------------------------------------
 *
 * dependencies.c
 *	  Jobs that wait for other jobs (depends_on), and the link from a job to
 *	  the job that produced it (parent_id).
 *
 * A job enqueued with depends_on waits while any of its dependencies is
 * unfinished.  Waiting means: pending with run_at = 9999-12-31 (finite:
 * the workers compute their sleep from min(run_at) - now()), so neither
 * the in-database workers nor jobs.claim() take it, and no claim query needs
 * to know about dependencies.  jobs.job_dependency holds one row per
 * unfinished dependency (job_id waits for depends_on_id) together with the
 * run_at the job asked for.  The rows exist only while the job waits.
 *
 * At enqueue (called from the BEFORE INSERT trigger, only when depends_on
 * is not null; a job without dependencies costs nothing here):
 *	- every id must name a job the caller can see (22023 otherwise), and not
 *	  the job itself;
 *	- a dependency that already failed or was revoked is rejected (22023):
 *	  the job could never run;
 *	- all dependencies already succeeded: the job is runnable at once;
 *	- otherwise one row per unfinished dependency goes into
 *	  jobs.job_dependency and run_at becomes PgJobsWaitingRunAt().
 * Cycles cannot form: dependencies must exist (and be visible) when the
 * dependent is inserted, and depends_on never changes afterwards, so every
 * edge points from a job to an older one.
 *
 * When a job finishes (AFTER INSERT on jobs.job_done, which fires when the
 * row moves there), the rows naming it are deleted; when nothing depends on
 * it, that is one index probe without SPI.  For each dependent:
 *	- success: once it has no unfinished dependency left, its run_at is set
 *	  back to the requested time and the workers are woken at commit;
 *	- failure or revoked: the dependent is revoked with a result naming the
 *	  dependency; its own move to job_done fires this trigger again, so a
 *	  chain is revoked to its end.
 *
 * Locking protocol.  Lifecycle reports take the per-job report lock
 * (PgJobsLockJob) before moving a job to a finished state.
 *	- The enqueue takes the report lock of every unfinished-looking
 *	  dependency, in ascending id order, and then reads their status with a
 *	  new snapshot and FOR KEY SHARE.  So either the dependency finished and
 *	  committed first (the enqueue sees it), or the enqueue commits its
 *	  job_dependency rows before the finishing transaction can take the lock
 *	  and look for them.  A finisher that takes no report lock (a plain
 *	  UPDATE) conflicts with FOR KEY SHARE instead: the enqueue fails with a
 *	  retryable 40001 rather than leaving the job waiting forever.  Under
 *	  REPEATABLE READ a dependency changed after the snapshot also ends in
 *	  40001.
 *	- The finishing side deletes its own job_dependency rows first, then
 *	  takes the report lock of each dependent (ascending ids) and checks for
 *	  the remaining rows with a new snapshot.  Of two dependencies finishing
 *	  at once, the one that takes the dependent's lock last sees the other's
 *	  delete committed and releases the job.  Dependents always have larger
 *	  ids than their dependencies (their id is drawn after the dependency
 *	  existed), so all these locks are taken in ascending id order.
 *
 * Everything here runs as the owner of jobs.job, so that a job can be
 * released or revoked whoever finished its dependency.
 *
 * IDENTIFICATION
 *	  src/dependencies.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "pg_jobs.h"
#include "privilege.h"

PG_FUNCTION_INFO_V1(pg_jobs_job_finished);

/* cached plans */
static SPIPlanPtr visible_plan = NULL;
static SPIPlanPtr deps_status_plan = NULL;
static SPIPlanPtr edge_insert_plan = NULL;
static SPIPlanPtr parent_plan = NULL;
static SPIPlanPtr finished_plan = NULL;
static SPIPlanPtr release_plan = NULL;
static SPIPlanPtr revoke_plan = NULL;

/*
 * PgJobsWaitingRunAt
 *		The run_at of a waiting job: 9999-12-31 00:00 UTC.
 */
TimestampTz
PgJobsWaitingRunAt(void)
{
	return (TimestampTz) (date2j(9999, 12, 31) - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY;
}

static int
cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

/* the sorted, distinct elements of a bigint[]; NULL elements are an error */
static int64 *
sorted_ids(ArrayType *arr, int *count)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			m = 0;
	int64	   *ids;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("depends_on must be a one-dimensional array of job ids")));
	deconstruct_array(arr, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &nulls, &n);
	ids = palloc(sizeof(int64) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("depends_on must not contain null")));
		ids[i] = DatumGetInt64(elems[i]);
	}
	qsort(ids, n, sizeof(int64), cmp_int64);
	for (int i = 0; i < n; i++)
		if (m == 0 || ids[m - 1] != ids[i])
			ids[m++] = ids[i];
	*count = m;
	return ids;
}

static Datum
ids_datum(int64 *ids, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(ids[i]);
	return PointerGetDatum(construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL,
										   TYPALIGN_DOUBLE));
}

/*
 * PgJobsEnqueueDependencies
 *		Check the dependencies of a job being inserted and record the
 *		unfinished ones.
 *
 * Called by the BEFORE INSERT trigger as the caller (not inside SPI), only
 * when depends_on is not null.  owner is the role the registry lookups run
 * as (the table owner).  Returns true when the job must wait: the caller
 * then stores run_at = PgJobsWaitingRunAt().  Raises 22023 for an unknown, invisible,
 * self, failed or revoked dependency.
 */
bool
PgJobsEnqueueDependencies(int64 job_id, Datum depends_on, TimestampTz run_at,
						  Oid owner)
{
	int			n;
	int64	   *ids = sorted_ids(DatumGetArrayTypeP(depends_on), &n);
	int64	   *waiting;
	int			nwaiting = 0;
	Oid			argtypes[3] = {INT8ARRAYOID, INT8OID, TIMESTAMPTZOID};
	Datum		args[3];
	int			ret;
	PgJobsRunAs ra;

	if (n == 0)
		return false;
	for (int i = 0; i < n; i++)
		if (ids[i] == job_id)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("job %lld cannot depend on itself", (long long) job_id)));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_jobs: SPI_connect failed");

	/* Which of them may the caller see?  Row-level security decides. */
	PgJobsPreparePlan(&visible_plan,
				  "SELECT pg_catalog.array_agg(j.id) FROM jobs.job j "
				  "WHERE j.id OPERATOR(pg_catalog.=) ANY ($1)",
				  1, argtypes);
	args[0] = ids_datum(ids, n);
	ret = SPI_execute_plan(visible_plan, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pg_jobs: dependency lookup failed: %s",
			 SPI_result_code_string(ret));
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 1, &isnull);
		int			nseen = 0;
		int64	   *seen = isnull ? NULL : sorted_ids(DatumGetArrayTypeP(d), &nseen);

		for (int i = 0, k = 0; i < n; i++)
		{
			while (k < nseen && seen[k] < ids[i])
				k++;
			if (k >= nseen || seen[k] != ids[i])
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("unknown dependency %lld", (long long) ids[i]),
						 errhint("depends_on lists ids (jobs.job.id) of existing jobs you can see.")));
		}
	}

	/*
	 * As the table owner: lock each dependency against a concurrent finish,
	 * then read their status afresh (see the locking protocol above).
	 */
	PgJobsBecome(&ra, owner, NULL);

	for (int i = 0; i < n; i++)
		PgJobsLockJob(ids[i]);

	PgJobsPreparePlan(&deps_status_plan,
				  "SELECT j.id, j.status::pg_catalog.text, j.task_id FROM jobs.job j "
				  "WHERE j.id OPERATOR(pg_catalog.=) ANY ($1) "
				  "ORDER BY j.id FOR KEY SHARE OF j",
				  1, argtypes);
	ret = SPI_execute_plan(deps_status_plan, args, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pg_jobs: dependency lookup failed: %s",
			 SPI_result_code_string(ret));
	if (SPI_processed != (uint64) n)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a dependency of the job no longer exists"),
				 errhint("depends_on lists ids (jobs.job.id) of existing jobs you can see.")));

	waiting = palloc(sizeof(int64) * n);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(tup, td, 1, &isnull));
		char	   *status = SPI_getvalue(tup, td, 2);

		if (strcmp(status, "failure") == 0 || strcmp(status, "revoked") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("dependency %lld (task %s) has already %s",
							(long long) id, SPI_getvalue(tup, td, 3),
							strcmp(status, "failure") == 0 ? "failed" : "been revoked"),
					 errdetail("A job runs only after all its dependencies have succeeded, so this one never could."),
					 errhint("Retry the dependency as a new job and depend on that one.")));
		if (strcmp(status, "success") != 0)
			waiting[nwaiting++] = id;
	}

	if (nwaiting > 0)
	{
		PgJobsPreparePlan(&edge_insert_plan,
					  "INSERT INTO jobs.job_dependency (job_id, depends_on_id, run_at) "
					  "SELECT $2, d, $3 FROM pg_catalog.unnest($1) AS d",
					  3, argtypes);
		args[0] = ids_datum(waiting, nwaiting);
		args[1] = Int64GetDatum(job_id);
		args[2] = TimestampTzGetDatum(run_at);
		ret = SPI_execute_plan(edge_insert_plan, args, NULL, false, 0);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "pg_jobs: recording dependencies failed: %s",
				 SPI_result_code_string(ret));
	}

	PgJobsRestore(&ra);
	SPI_finish();
	return nwaiting > 0;
}

/*
 * PgJobsCheckParent
 *		The parent of a job being inserted must be a job the caller can see
 *		(22023 otherwise).  Called as the caller, not inside SPI.
 */
void
PgJobsCheckParent(int64 job_id, int64 parent_id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1];
	int			ret;

	if (parent_id == job_id)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("job %lld cannot be its own parent", (long long) job_id)));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_jobs: SPI_connect failed");
	PgJobsPreparePlan(&parent_plan,
				  "SELECT 1 FROM jobs.job j WHERE j.id OPERATOR(pg_catalog.=) $1",
				  1, argtypes);
	args[0] = Int64GetDatum(parent_id);
	ret = SPI_execute_plan(parent_plan, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pg_jobs: parent lookup failed: %s",
			 SPI_result_code_string(ret));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown parent job %lld", (long long) parent_id),
				 errhint("parent_id is the id (jobs.job.id) of an existing job you can see.")));
	SPI_finish();
}

/*
 * has_dependents
 *		Does any job wait for job_id?  One probe of the depends_on index,
 *		without SPI, so that finishing a job nobody waits for stays cheap.
 *		Uses a new snapshot: it must see the waits that enqueues committed
 *		before the caller took the job's report lock, and its own.
 */
static bool
has_dependents(int64 job_id)
{
	Oid			nsp = get_namespace_oid("jobs", false);
	Oid			relid = get_relname_relid("job_dependency", nsp);
	Oid			indexid = get_relname_relid("job_dependency_depends_on", nsp);
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	Snapshot	snapshot;
	bool		found;

	if (!OidIsValid(relid) || !OidIsValid(indexid))
		elog(ERROR, "pg_jobs: jobs.job_dependency or its index is missing");
	rel = table_open(relid, AccessShareLock);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	/* systable_beginscan takes the heap's attribute number */
	ScanKeyInit(&key, get_attnum(relid, "depends_on_id"), BTEqualStrategyNumber,
				F_INT8EQ, Int64GetDatum(job_id));
	scan = systable_beginscan(rel, indexid, true, snapshot, 1, &key);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * pg_jobs_job_finished
 *		AFTER INSERT FOR EACH ROW trigger of jobs.job_done: a job has
 *		finished; release or revoke the jobs waiting for it (see the file
 *		header).
 */
Datum
pg_jobs_job_finished(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	tupdesc;
	HeapTuple	tup;
	bool		isnull;
	int64		job_id;
	bool		has_deps;
	char	   *status;
	char	   *task_id;
	Oid			argtypes[5] = {INT8OID, INT8OID, TEXTOID, TEXTOID, TIMESTAMPTZOID};
	Datum		args[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	int			ret;
	int64	   *dependents;
	TimestampTz *run_ats;
	int			ndependents = 0;
	PgJobsRunAs ra;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pg_jobs_job_finished must be fired AFTER INSERT FOR EACH ROW")));

	rel = trigdata->tg_relation;
	tupdesc = RelationGetDescr(rel);
	tup = trigdata->tg_trigtuple;
	job_id = DatumGetInt64(heap_getattr(tup, SPI_fnumber(tupdesc, "id"),
										tupdesc, &isnull));
	(void) heap_getattr(tup, SPI_fnumber(tupdesc, "depends_on"), tupdesc,
						&isnull);
	has_deps = !isnull;

	/* the common case: no waits of its own, nobody waiting for it */
	if (!has_deps && !has_dependents(job_id))
		return PointerGetDatum(NULL);

	status = SPI_getvalue(tup, tupdesc, SPI_fnumber(tupdesc, "status"));
	task_id = SPI_getvalue(tup, tupdesc, SPI_fnumber(tupdesc, "task_id"));

	PgJobsBecome(&ra, rel->rd_rel->relowner, NULL);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_jobs: SPI_connect failed");

	/*
	 * Forget the job's own remaining waits (it was revoked or failed while
	 * waiting) and take the rows of the jobs waiting for it.  Without
	 * dependencies either way this is one index probe.
	 */
	PgJobsPreparePlan(&finished_plan,
				  "DELETE FROM jobs.job_dependency d "
				  "WHERE d.depends_on_id OPERATOR(pg_catalog.=) $1 "
				  "   OR d.job_id OPERATOR(pg_catalog.=) $2 "
				  "RETURNING d.job_id, d.run_at, d.depends_on_id",
				  2, argtypes);
	args[0] = Int64GetDatum(job_id);
	args[1] = Int64GetDatum(job_id);
	nulls[1] = has_deps ? ' ' : 'n';
	ret = SPI_execute_plan(finished_plan, args, nulls, false, 0);
	if (ret != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "pg_jobs: dependency cleanup failed: %s",
			 SPI_result_code_string(ret));

	dependents = palloc(sizeof(int64) * (SPI_processed + 1));
	run_ats = palloc(sizeof(TimestampTz) * (SPI_processed + 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;

		if (DatumGetInt64(SPI_getbinval(row, td, 3, &isnull)) != job_id)
			continue;
		dependents[ndependents] = DatumGetInt64(SPI_getbinval(row, td, 1, &isnull));
		run_ats[ndependents] = DatumGetTimestampTz(SPI_getbinval(row, td, 2, &isnull));
		ndependents++;
	}

	/* ascending ids: the lock order of the protocol */
	for (int i = 0; i < ndependents; i++)
		for (int k = i + 1; k < ndependents; k++)
			if (dependents[k] < dependents[i])
			{
				int64		t = dependents[i];
				TimestampTz r = run_ats[i];

				dependents[i] = dependents[k];
				run_ats[i] = run_ats[k];
				dependents[k] = t;
				run_ats[k] = r;
			}

	for (int i = 0; i < ndependents; i++)
	{
		PgJobsLockJob(dependents[i]);
		args[0] = Int64GetDatum(dependents[i]);
		nulls[1] = ' ';
		if (strcmp(status, "success") == 0)
		{
			Oid			types[2] = {INT8OID, TIMESTAMPTZOID};

			/* a new snapshot: sees the deletes of dependencies finished before */
			PgJobsPreparePlan(&release_plan,
						  "UPDATE jobs.job j SET run_at = $2 "
						  "WHERE j.id OPERATOR(pg_catalog.=) $1 "
						  "  AND j.status OPERATOR(pg_catalog.=) 'pending' "
						  "  AND j.run_at OPERATOR(pg_catalog.=) " PGJOBS_WAITING_RUN_AT_SQL " "
						  "  AND NOT EXISTS (SELECT 1 FROM jobs.job_dependency d "
						  "                  WHERE d.job_id OPERATOR(pg_catalog.=) $1)",
						  2, types);
			args[1] = TimestampTzGetDatum(run_ats[i]);
			ret = SPI_execute_plan(release_plan, args, nulls, false, 0);
			if (ret != SPI_OK_UPDATE)
				elog(ERROR, "pg_jobs: releasing job %lld failed: %s",
					 (long long) dependents[i], SPI_result_code_string(ret));
			if (SPI_processed > 0)
				PgJobsWakeWorkersAtCommit(1);
		}
		else
		{
			char	   *reason = psprintf("dependency %lld (task %s) %s",
										  (long long) job_id, task_id,
										  strcmp(status, "failure") == 0 ?
										  "failed" : "was revoked");

			PgJobsPreparePlan(&revoke_plan,
						  "UPDATE jobs.job j SET status = 'revoked'::jobs.status, run_at = $5, "
						  "  result = pg_catalog.jsonb_build_object("
						  "    'reason', $3, 'dependency', $2, "
						  "    'dependency_task_id', $4) "
						  "WHERE j.id OPERATOR(pg_catalog.=) $1 "
						  "  AND j.status OPERATOR(pg_catalog.=) 'pending'",
						  5, argtypes);
			args[1] = Int64GetDatum(job_id);
			args[2] = CStringGetTextDatum(reason);
			args[3] = CStringGetTextDatum(task_id);
			args[4] = TimestampTzGetDatum(run_ats[i]);
			ret = SPI_execute_plan(revoke_plan, args, nulls, false, 0);
			if (ret != SPI_OK_UPDATE)
				elog(ERROR, "pg_jobs: revoking job %lld failed: %s",
					 (long long) dependents[i], SPI_result_code_string(ret));
		}
	}

	SPI_finish();
	PgJobsRestore(&ra);
	return PointerGetDatum(NULL);
}
