/*-------------------------------------------------------------------------
 *
 * report.c
 *	  The common case of the report functions jobs.start(), jobs.succeed(),
 *	  jobs.fail() and jobs.revoke(): an in-flight job changes state.
 *
 * A report runs, as the caller, the first statements of
 * jobs._report_checked() (pg_jobs.sql) through plans kept for the life of
 * the backend: find the in-flight job by task id, take its report lock
 * (access.c), and, in a new statement whose snapshot sees what a report
 * that held the lock before committed, change it.  Privileges, row-level
 * security and the lifecycle trigger (lifecycle.c) check the change as they
 * check a client's own UPDATE.  When nothing changes (unknown or invisible
 * task id, a finished job, a repeated start), the call is handed to
 * jobs._report_checked(), which does it all again and answers: the row, or
 * the error that applies (PT404, PT409, 42501).  It is called through fmgr,
 * so that it needs no EXECUTE grant: no internal function is open to
 * PUBLIC.
 *
 * Being C rather than PL/pgSQL saves, per report, two PL/pgSQL calls with
 * their search_path switches, which is a measurable part of an external
 * worker's claim + succeed.  Without a SET search_path, every name and
 * operator below is schema-qualified, so the caller's search_path cannot
 * change what the statements mean.
 *
 * IDENTIFICATION
 *	  src/report.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "catalog/namespace.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/syscache.h"
#include "utils/jsonb.h"

#include "pg_jobs.h"

PG_FUNCTION_INFO_V1(pg_jobs_report);
PG_FUNCTION_INFO_V1(pg_jobs_start);
PG_FUNCTION_INFO_V1(pg_jobs_succeed);
PG_FUNCTION_INFO_V1(pg_jobs_revoke);

static SPIPlanPtr find_plan = NULL;
static SPIPlanPtr change_plan = NULL;
static Datum report_checked(text *task_id, const char *status, Jsonb *result);

/*
 * report
 *		Report status (a jobs.status label) with result for task_id; the
 *		job as it is afterwards, formed as a row of resultdesc.
 */
static Datum
report(FunctionCallInfo fcinfo, text *task_id, const char *status, Jsonb *result)
{
	static const Oid find_types[1] = {TEXTOID};
	static const Oid change_types[3] = {INT8OID, TEXTOID, JSONBOID};
	TupleDesc	resultdesc;
	PgJobsJobDest dest;
	Datum		values[3];
	bool		nulls[3];
	int			ret;

	if (task_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("task id must not be null")));
	if (VARSIZE_ANY_EXHDR(task_id) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("task id must not be empty")));
	if (get_call_result_type(fcinfo, NULL, &resultdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pg_jobs: a report must return jobs.job");
	PgJobsJobDestInit(&dest, resultdesc, NULL);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_jobs: SPI_connect failed");

	PgJobsPreparePlan(&find_plan,
					  "SELECT j.id FROM jobs.job j "
					  "WHERE j.task_id OPERATOR(pg_catalog.=) $1 "
					  "  AND j.status OPERATOR(pg_catalog.=) "
					  "      ANY ('{pending,started}'::jobs.status[])",
					  1, (Oid *) find_types);
	values[0] = PointerGetDatum(task_id);
	nulls[0] = false;
	ret = PgJobsExecuteToDest(find_plan, 1, find_types, values, nulls, NULL);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pg_jobs: report lookup failed: %s", SPI_result_code_string(ret));

	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		id = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									   1, &isnull);

		PgJobsLockJob(DatumGetInt64(id));
		PgJobsPreparePlan(&change_plan,
						  "UPDATE jobs.job j "
						  "SET status = $2::jobs.status, "
						  "    result = CASE WHEN $2 OPERATOR(pg_catalog.=) 'started' "
						  "                  THEN j.result ELSE $3 END "
						  "WHERE j.id OPERATOR(pg_catalog.=) $1 "
						  "  AND j.status OPERATOR(pg_catalog.=) "
						  "      ANY ('{pending,started}'::jobs.status[]) "
						  "  AND NOT (j.status OPERATOR(pg_catalog.=) 'started'::jobs.status "
						  "           AND $2 OPERATOR(pg_catalog.=) 'started') "
						  "RETURNING j.*",
						  3, (Oid *) change_types);
		values[0] = id;
		values[1] = CStringGetTextDatum(status);
		values[2] = PointerGetDatum(result);
		nulls[1] = false;
		nulls[2] = (result == NULL);
		ret = PgJobsExecuteToDest(change_plan, 3, change_types, values, nulls,
								  (DestReceiver *) &dest);
		if (ret != SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "pg_jobs: report failed: %s", SPI_result_code_string(ret));
	}

	SPI_finish();

	if (dest.row == NULL)
		return report_checked(task_id, status, result);
	return HeapTupleGetDatum(dest.row);
}

/*
 * report_checked
 *		Nothing changed: jobs._report_checked() decides what to answer (the
 *		row, or the error that says why).  Called through fmgr, which checks
 *		no EXECUTE privilege, so the internal function stays closed to
 *		PUBLIC; it runs as the caller, and row-level security, the lifecycle
 *		trigger and its own checks apply as to any report.
 */
static Datum
report_checked(text *task_id, const char *status, Jsonb *result)
{
	Oid			nsp = get_namespace_oid("jobs", false);
	Oid			status_typid = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
											   CStringGetDatum("status"),
											   ObjectIdGetDatum(nsp));
	Oid			argtypes[3] = {TEXTOID, status_typid, JSONBOID};
	Oid			fn = LookupFuncName(list_make2(makeString("jobs"),
											   makeString("_report_checked")),
									3, argtypes, false);
	FmgrInfo	flinfo;
	LOCAL_FCINFO(fc, 3);
	Datum		row;

	fmgr_info(fn, &flinfo);
	InitFunctionCallInfoData(*fc, &flinfo, 3, InvalidOid, NULL, NULL);
	fc->args[0].value = PointerGetDatum(task_id);
	fc->args[0].isnull = false;
	fc->args[1].value = DirectFunctionCall2(enum_in, CStringGetDatum(status),
											ObjectIdGetDatum(status_typid));
	fc->args[1].isnull = false;
	fc->args[2].value = PointerGetDatum(result);
	fc->args[2].isnull = (result == NULL);
	row = FunctionCallInvoke(fc);
	if (fc->isnull)
		elog(ERROR, "pg_jobs: a report returned no job");
	return row;
}

#define ARG_TEXT(n)		(PG_ARGISNULL(n) ? NULL : PG_GETARG_TEXT_PP(n))
#define ARG_JSONB(n)	(PG_ARGISNULL(n) ? NULL : PG_GETARG_JSONB_P(n))

/*
 * pg_jobs_report
 *		jobs.report(task_id text, status jobs.status, result jsonb): the
 *		report of any state (jobs.fail() builds its result and calls this).
 */
Datum
pg_jobs_report(PG_FUNCTION_ARGS)
{
	char	   *status;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("status must not be null")));
	status = DatumGetCString(DirectFunctionCall1(enum_out, PG_GETARG_DATUM(1)));
	return report(fcinfo, ARG_TEXT(0), status, ARG_JSONB(2));
}

/* jobs.start(task_id text) */
Datum
pg_jobs_start(PG_FUNCTION_ARGS)
{
	return report(fcinfo, ARG_TEXT(0), "started", NULL);
}

/* jobs.succeed(task_id text, result jsonb) */
Datum
pg_jobs_succeed(PG_FUNCTION_ARGS)
{
	return report(fcinfo, ARG_TEXT(0), "success", ARG_JSONB(1));
}

/* jobs.revoke(task_id text) */
Datum
pg_jobs_revoke(PG_FUNCTION_ARGS)
{
	return report(fcinfo, ARG_TEXT(0), "revoked", NULL);
}
