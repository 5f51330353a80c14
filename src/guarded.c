/*-------------------------------------------------------------------------
 *
 * guarded.c
 *	  SQL functions that check the caller first and then do one thing the
 *	  caller could not do alone: take report locks (jobs.lock_jobs) and
 *	  count the jobs ahead of one in its queue (jobs.queue_position).
 *
 * Both are executable by everyone, because the SECURITY INVOKER functions
 * of the API call them as the caller.  What they may touch is therefore
 * decided here, by reading jobs.job as the caller (row-level security
 * applies) and by the access rules of access.c:
 *
 *	- jobs.lock_jobs(task_ids) locks only in-flight jobs the caller may change
 *	  (act for their owner), so an idle transaction can hold back no report,
 *	  claim or worker but on the caller's own jobs, which the caller could
 *	  hold anyway with SELECT ... FOR UPDATE.  Internal code that must lock
 *	  any job (the launcher) calls PgJobsLockJob or jobs._lock_job().
 *	- jobs.queue_position(task_id) answers only for a due pending job the
 *	  caller can see; the count of the jobs ahead includes jobs the caller
 *	  cannot see, so it is computed by jobs._queue_ahead(), a SECURITY
 *	  DEFINER function that nobody is granted: it is reached from here
 *	  through fmgr, which checks no EXECUTE privilege (as summary.c does for
 *	  jobs._summary_forget).  It reveals a number, never a job.
 *
 * The statements name every object, type and operator schema-qualified and
 * take their values as typed parameters, so the caller's search_path cannot
 * change what they mean.
 *
 * IDENTIFICATION
 *	  src/guarded.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/pg_list.h"
#include "parser/parse_func.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "pg_jobs.h"

PG_FUNCTION_INFO_V1(pg_jobs_lock_jobs);
PG_FUNCTION_INFO_V1(pg_jobs_queue_position);

static SPIPlanPtr lock_plan = NULL;
static SPIPlanPtr position_plan = NULL;

/*
 * pg_jobs_lock_jobs
 *		jobs.lock_jobs(task_ids text[]) RETURNS bigint[]: take the report
 *		lock (access.c) of each in-flight job among task_ids that the caller
 *		can see and may change, in id order so that two callers cannot
 *		deadlock; return their ids.  Other task ids are left alone.  The
 *		locks are held to the end of the transaction.
 */
Datum
pg_jobs_lock_jobs(PG_FUNCTION_ARGS)
{
	static Oid	argtypes[1] = {TEXTARRAYOID};
	MemoryContext outer = CurrentMemoryContext;
	Datum		args[1];
	int64	   *ids;
	Datum	   *locked;
	int			nlocked = 0;
	int			ret;

	if (PG_ARGISNULL(0))
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(INT8OID));
	args[0] = PG_GETARG_DATUM(0);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_jobs: SPI_connect failed");
	PgJobsPreparePlan(&lock_plan,
					  "SELECT j.id, j.owner FROM jobs.job j "
					  "WHERE j.task_id OPERATOR(pg_catalog.=) ANY ($1) "
					  "  AND j.status OPERATOR(pg_catalog.=) "
					  "      ANY ('{pending,started}'::jobs.status[]) "
					  "ORDER BY j.id",
					  1, argtypes);
	/* not read-only: a new snapshot sees what committed before the call */
	ret = SPI_execute_plan(lock_plan, args, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pg_jobs: job lookup failed: %s", SPI_result_code_string(ret));

	ids = MemoryContextAlloc(outer, sizeof(int64) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(tup, td, 1, &isnull));
		Datum		owner = SPI_getbinval(tup, td, 2, &isnull);

		if (!PgJobsMayActFor(GetUserId(),
							 isnull ? NULL : NameStr(*DatumGetName(owner))))
			continue;
		PgJobsLockJob(id);
		ids[nlocked++] = id;
	}
	SPI_finish();

	locked = palloc(sizeof(Datum) * Max(nlocked, 1));
	for (int i = 0; i < nlocked; i++)
		locked[i] = Int64GetDatum(ids[i]);
	PG_RETURN_ARRAYTYPE_P(construct_array(locked, nlocked, INT8OID,
										  sizeof(int64), FLOAT8PASSBYVAL,
										  TYPALIGN_DOUBLE));
}

/*
 * pg_jobs_queue_position
 *		jobs.queue_position(task_id text) RETURNS bigint: the place of a due
 *		pending job in its queue, 1 = next; NULL unless the caller can see
 *		such a job with that task id.
 */
Datum
pg_jobs_queue_position(PG_FUNCTION_ARGS)
{
	static Oid	argtypes[1] = {TEXTOID};
	Oid			ahead_argtypes[1] = {INT8OID};
	Datum		args[1];
	int64		job_id = 0;
	bool		found;
	bool		isnull;
	FmgrInfo	flinfo;
	LOCAL_FCINFO(ahead_fcinfo, 1);
	Datum		result;
	int			ret;

	args[0] = PG_GETARG_DATUM(0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_jobs: SPI_connect failed");
	PgJobsPreparePlan(&position_plan,
					  "SELECT j.id FROM jobs.job j "
					  "WHERE j.task_id OPERATOR(pg_catalog.=) $1 "
					  "  AND j.status OPERATOR(pg_catalog.=) 'pending'::jobs.status "
					  "  AND j.run_at OPERATOR(pg_catalog.<=) pg_catalog.now()",
					  1, argtypes);
	/* read-only: the caller's snapshot, as the rest of its query */
	ret = SPI_execute_plan(position_plan, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pg_jobs: job lookup failed: %s", SPI_result_code_string(ret));
	found = SPI_processed == 1;
	if (found)
		job_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	if (!found)
		PG_RETURN_NULL();

	/* a security definer reached through fmgr: no EXECUTE check */
	fmgr_info(LookupFuncName(list_make2(makeString("jobs"), makeString("_queue_ahead")),
							 1, ahead_argtypes, false),
			  &flinfo);
	InitFunctionCallInfoData(*ahead_fcinfo, &flinfo, 1, InvalidOid, NULL, NULL);
	ahead_fcinfo->args[0].value = Int64GetDatum(job_id);
	ahead_fcinfo->args[0].isnull = false;
	result = FunctionCallInvoke(ahead_fcinfo);
	if (ahead_fcinfo->isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}
