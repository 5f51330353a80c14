/*-------------------------------------------------------------------------
 *
 * enqueue.c
 *	  jobs.enqueue() and jobs.enqueue_many(): creating jobs.
 *
 * Both run one INSERT into jobs.job through a plan kept for the life of the
 * backend, as the caller, so that privileges, row-level security and the
 * lifecycle trigger (lifecycle.c) check the new jobs exactly as they check
 * an INSERT a client writes itself.  The one check made here is the range of
 * priority: the argument is an integer and the column a smallint, so a value
 * beyond smallint would otherwise fail in the cast (22003) before the
 * trigger could say what is wrong (22023).
 *
 * Being C rather than PL/pgSQL saves, per call, the PL/pgSQL interpreter and
 * the search_path switch of a SET clause (every name below is
 * schema-qualified, and the INSERT touches nothing found through the
 * search_path), and per connection the loading and compiling of PL/pgSQL
 * code.  The returned rows go straight from the INSERT's RETURNING into the
 * result (a tuple, or the tuplestore of the set), without a copy in
 * SPI's tuple table.
 *
 * IDENTIFICATION
 *	  src/enqueue.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "nodes/params.h"
#include "tcop/dest.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/tuplestore.h"

#include "pg_jobs.h"

PG_FUNCTION_INFO_V1(pg_jobs_enqueue);
PG_FUNCTION_INFO_V1(pg_jobs_enqueue_many);

#define ENQUEUE_NARGS		10
#define ENQUEUE_MANY_NARGS	6
#define PRIORITY_ARG		4	/* of both functions */

static SPIPlanPtr enqueue_plan = NULL;
static SPIPlanPtr enqueue_many_plan = NULL;

/*
 * check_priority
 *		22023 unless the priority argument is NULL (the type's default) or
 *		0 to 3; the same message as the lifecycle trigger's.
 */
static void
check_priority(FunctionCallInfo fcinfo)
{
	int32		priority;

	if (PG_ARGISNULL(PRIORITY_ARG))
		return;
	priority = PG_GETARG_INT32(PRIORITY_ARG);
	if (priority < 0 || priority > 3)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("priority must be between 0 (urgent) and 3 (low), not %d",
						priority)));
}

/*
 * run_insert
 *		Execute a kept INSERT ... RETURNING * with the function's arguments
 *		as its parameters, sending the rows to dest.
 *
 * Caller must be connected to SPI.  Not read-only, so the INSERT sees a
 * fresh snapshot and a read-only transaction refuses it (25006).
 */
static void
run_insert(FunctionCallInfo fcinfo, SPIPlanPtr plan, const Oid *argtypes,
		   int nargs, PgJobsJobDest *dest)
{
	Datum		values[ENQUEUE_NARGS];
	bool		nulls[ENQUEUE_NARGS];
	int			ret;

	Assert(nargs <= ENQUEUE_NARGS);
	for (int i = 0; i < nargs; i++)
	{
		nulls[i] = PG_ARGISNULL(i);
		values[i] = nulls[i] ? (Datum) 0 : PG_GETARG_DATUM(i);
	}
	ret = PgJobsExecuteToDest(plan, nargs, argtypes, values, nulls,
							  (DestReceiver *) dest);
	if (ret != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "pg_jobs: enqueue failed: %s", SPI_result_code_string(ret));
}

/*
 * pg_jobs_enqueue
 *		jobs.enqueue(task_type, input, trigger_source, owner, priority,
 *		run_at, dedup_key, depends_on, parent_id, task_id): the new job, or
 *		NULL when the task type is not tracked.
 */
Datum
pg_jobs_enqueue(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[ENQUEUE_NARGS] = {
		TEXTOID, JSONBOID, TEXTOID, NAMEOID, INT4OID, TIMESTAMPTZOID,
		TEXTOID, INT8ARRAYOID, INT8OID, TEXTOID
	};
	TupleDesc	resultdesc;
	PgJobsJobDest dest;

	check_priority(fcinfo);
	if (get_call_result_type(fcinfo, NULL, &resultdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pg_jobs: jobs.enqueue must return jobs.job");
	PgJobsJobDestInit(&dest, resultdesc, NULL);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_jobs: SPI_connect failed");
	PgJobsPreparePlan(&enqueue_plan,
					  "INSERT INTO jobs.job (task_type, input, trigger_source, owner, "
					  "priority, run_at, dedup_key, depends_on, parent_id, task_id) "
					  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
					  "RETURNING *",
					  ENQUEUE_NARGS, (Oid *) argtypes);
	run_insert(fcinfo, enqueue_plan, argtypes, ENQUEUE_NARGS, &dest);
	SPI_finish();

	if (dest.row == NULL)
		PG_RETURN_NULL();		/* an untracked task type: nothing stored */
	PG_RETURN_DATUM(HeapTupleGetDatum(dest.row));
}

/*
 * pg_jobs_enqueue_many
 *		jobs.enqueue_many(task_type, inputs, trigger_source, owner, priority,
 *		run_at): one job per element of the JSON array inputs, in the order
 *		of the array, created by one INSERT.
 */
Datum
pg_jobs_enqueue_many(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[ENQUEUE_MANY_NARGS] = {
		TEXTOID, JSONBOID, TEXTOID, NAMEOID, INT4OID, TIMESTAMPTZOID
	};
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Jsonb	   *inputs = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);
	PgJobsJobDest dest;

	/* a scalar is stored as a one-element array marked scalar */
	if (inputs == NULL || !JB_ROOT_IS_ARRAY(inputs) || JB_ROOT_IS_SCALAR(inputs))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("inputs must be a JSON array of job inputs")));
	check_priority(fcinfo);

	InitMaterializedSRF(fcinfo, 0);
	PgJobsJobDestInit(&dest, rsinfo->setDesc, rsinfo->setResult);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_jobs: SPI_connect failed");
	PgJobsPreparePlan(&enqueue_many_plan,
					  "INSERT INTO jobs.job (task_type, input, trigger_source, owner, "
					  "priority, run_at) "
					  "SELECT $1, e.value, $3, $4, $5, $6 "
					  "FROM pg_catalog.jsonb_array_elements($2) "
					  "WITH ORDINALITY AS e(value, n) "
					  "ORDER BY e.n "
					  "RETURNING *",
					  ENQUEUE_MANY_NARGS, (Oid *) argtypes);
	run_insert(fcinfo, enqueue_many_plan, argtypes, ENQUEUE_MANY_NARGS, &dest);
	SPI_finish();

	return (Datum) 0;
}
