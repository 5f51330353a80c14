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
 * Runner protocol: a start may name its runner and a lease (recorded in
 * worker, lease and lease_until, which the launcher reconciles as it does a
 * claim's), and the other reports may carry an attempt, the fencing token:
 * then the UPDATE changes the job only while it is started at that attempt,
 * and a stale report falls through to jobs._report_checked(), which refuses
 * it (PT409) having changed nothing.
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
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "pg_jobs.h"

PG_FUNCTION_INFO_V1(pg_jobs_report);
PG_FUNCTION_INFO_V1(pg_jobs_start);
PG_FUNCTION_INFO_V1(pg_jobs_succeed);
PG_FUNCTION_INFO_V1(pg_jobs_revoke);

static SPIPlanPtr find_plan = NULL;
static SPIPlanPtr change_plan = NULL;
/* what a report carries besides the status and result */
typedef struct ReportArgs
{
	bool		has_attempt;
	int32		attempt;		/* fencing token, when has_attempt */
	text	   *worker;			/* start: the runner, or NULL */
	Interval   *lease;			/* start: its lease, or NULL */
} ReportArgs;

static Datum report_checked(text *task_id, const char *status, Jsonb *result,
							const ReportArgs *ra);

/*
 * report
 *		Report status (a jobs.status label) with result for task_id; the
 *		job as it is afterwards, formed as a row of resultdesc.
 */
static Datum
report(FunctionCallInfo fcinfo, text *task_id, const char *status, Jsonb *result,
	   const ReportArgs *ra)
{
	static const Oid find_types[1] = {TEXTOID};
	static const Oid change_types[6] = {INT8OID, TEXTOID, JSONBOID, INT4OID,
	TEXTOID, INTERVALOID};
	TupleDesc	resultdesc;
	PgJobsJobDest dest;
	Datum		values[6];
	bool		nulls[6];
	int			ret;

	if (task_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("task id must not be null")));
	if (VARSIZE_ANY_EXHDR(task_id) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("task id must not be empty")));
	if (ra->worker != NULL)
	{
		char	   *w = text_to_cstring(ra->worker);

		if (w[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("worker must not be empty"),
					 errhint("Name the runner, e.g. \"celery@host\", or pass NULL.")));
		if (strncmp(w, PGJOBS_WORKER_PREFIX, strlen(PGJOBS_WORKER_PREFIX)) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("worker names starting with \"%s\" are reserved for in-database workers",
							PGJOBS_WORKER_PREFIX),
					 errhint("Name the runner after its host or process instead.")));
	}
	if (ra->lease != NULL)
	{
		Interval	zero = {0};

		if (DatumGetInt32(DirectFunctionCall2(interval_cmp,
											  IntervalPGetDatum(ra->lease),
											  IntervalPGetDatum(&zero))) <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("lease must be a positive interval"),
					 errhint("Pass a lease longer than the runner's heartbeat period, or NULL.")));
	}
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
						  "                  THEN j.result ELSE $3 END, "
						  "    worker = CASE WHEN $2 OPERATOR(pg_catalog.=) 'started' "
						  "                  THEN $5 ELSE j.worker END, "
						  "    lease = CASE WHEN $2 OPERATOR(pg_catalog.=) 'started' "
						  "                 THEN $6 ELSE j.lease END, "
						  "    lease_until = CASE WHEN $2 OPERATOR(pg_catalog.=) 'started' "
						  "                       THEN pg_catalog.now() OPERATOR(pg_catalog.+) $6 "
						  "                       ELSE j.lease_until END "
						  "WHERE j.id OPERATOR(pg_catalog.=) $1 "
						  "  AND j.status OPERATOR(pg_catalog.=) "
						  "      ANY ('{pending,started}'::jobs.status[]) "
						  "  AND NOT (j.status OPERATOR(pg_catalog.=) 'started'::jobs.status "
						  "           AND $2 OPERATOR(pg_catalog.=) 'started') "
						  "  AND ($4 IS NULL "
						  "       OR (j.status OPERATOR(pg_catalog.=) 'started'::jobs.status "
						  "           AND j.attempts OPERATOR(pg_catalog.=) $4)) "
						  "RETURNING j.*",
						  6, (Oid *) change_types);
		values[0] = id;
		values[1] = CStringGetTextDatum(status);
		values[2] = PointerGetDatum(result);
		values[3] = Int32GetDatum(ra->attempt);
		values[4] = PointerGetDatum(ra->worker);
		values[5] = IntervalPGetDatum(ra->lease);
		nulls[1] = false;
		nulls[2] = (result == NULL);
		nulls[3] = !ra->has_attempt;
		nulls[4] = (ra->worker == NULL);
		nulls[5] = (ra->lease == NULL);
		ret = PgJobsExecuteToDest(change_plan, 6, change_types, values, nulls,
								  (DestReceiver *) &dest);
		if (ret != SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "pg_jobs: report failed: %s", SPI_result_code_string(ret));
	}

	SPI_finish();

	if (dest.row == NULL)
		return report_checked(task_id, status, result, ra);
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
report_checked(text *task_id, const char *status, Jsonb *result,
			   const ReportArgs *ra)
{
	Oid			nsp = get_namespace_oid("jobs", false);
	Oid			status_typid = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
											   CStringGetDatum("status"),
											   ObjectIdGetDatum(nsp));
	Oid			argtypes[6] = {TEXTOID, status_typid, JSONBOID, INT4OID,
	TEXTOID, INTERVALOID};
	Oid			fn = LookupFuncName(list_make2(makeString("jobs"),
											   makeString("_report_checked")),
									6, argtypes, false);
	FmgrInfo	flinfo;
	LOCAL_FCINFO(fc, 6);
	Datum		row;

	fmgr_info(fn, &flinfo);
	InitFunctionCallInfoData(*fc, &flinfo, 6, InvalidOid, NULL, NULL);
	fc->args[0].value = PointerGetDatum(task_id);
	fc->args[0].isnull = false;
	fc->args[1].value = DirectFunctionCall2(enum_in, CStringGetDatum(status),
											ObjectIdGetDatum(status_typid));
	fc->args[1].isnull = false;
	fc->args[2].value = PointerGetDatum(result);
	fc->args[2].isnull = (result == NULL);
	fc->args[3].value = Int32GetDatum(ra->attempt);
	fc->args[3].isnull = !ra->has_attempt;
	fc->args[4].value = PointerGetDatum(ra->worker);
	fc->args[4].isnull = (ra->worker == NULL);
	fc->args[5].value = IntervalPGetDatum(ra->lease);
	fc->args[5].isnull = (ra->lease == NULL);
	row = FunctionCallInvoke(fc);
	if (fc->isnull)
		elog(ERROR, "pg_jobs: a report returned no job");
	return row;
}

#define ARG_TEXT(n)		(PG_NARGS() <= (n) || PG_ARGISNULL(n) ? NULL : PG_GETARG_TEXT_PP(n))
#define ARG_JSONB(n)	(PG_NARGS() <= (n) || PG_ARGISNULL(n) ? NULL : PG_GETARG_JSONB_P(n))

/*
 * attempt_arg
 *		The fencing token in argument n (absent or NULL: none).
 */
static void
attempt_arg(FunctionCallInfo fcinfo, int n, ReportArgs *ra)
{
	memset(ra, 0, sizeof(*ra));
	if (PG_NARGS() > n && !PG_ARGISNULL(n))
	{
		ra->has_attempt = true;
		ra->attempt = PG_GETARG_INT32(n);
	}
}

/*
 * pg_jobs_report
 *		jobs.report(task_id text, status jobs.status, result jsonb,
 *		attempt integer): the report of any state (jobs.fail() builds its
 *		result and calls this).
 */
Datum
pg_jobs_report(PG_FUNCTION_ARGS)
{
	char	   *status;
	ReportArgs	ra;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("status must not be null")));
	status = DatumGetCString(DirectFunctionCall1(enum_out, PG_GETARG_DATUM(1)));
	attempt_arg(fcinfo, 3, &ra);
	return report(fcinfo, ARG_TEXT(0), status, ARG_JSONB(2), &ra);
}

/* jobs.start(task_id text, worker text, lease interval) */
Datum
pg_jobs_start(PG_FUNCTION_ARGS)
{
	ReportArgs	ra;

	memset(&ra, 0, sizeof(ra));
	ra.worker = ARG_TEXT(1);
	if (PG_NARGS() > 2 && !PG_ARGISNULL(2))
		ra.lease = PG_GETARG_INTERVAL_P(2);
	return report(fcinfo, ARG_TEXT(0), "started", NULL, &ra);
}

/* jobs.succeed(task_id text, result jsonb, attempt integer) */
Datum
pg_jobs_succeed(PG_FUNCTION_ARGS)
{
	ReportArgs	ra;

	attempt_arg(fcinfo, 2, &ra);
	return report(fcinfo, ARG_TEXT(0), "success", ARG_JSONB(1), &ra);
}

/*
 * jobs.revoke(task_id text, reason text, attempt integer): the result is
 * {"reason": reason} when a reason is given.
 */
Datum
pg_jobs_revoke(PG_FUNCTION_ARGS)
{
	ReportArgs	ra;
	Jsonb	   *result = NULL;

	attempt_arg(fcinfo, 2, &ra);
	if (PG_NARGS() > 1 && !PG_ARGISNULL(1))
	{
		StringInfoData buf;

		initStringInfo(&buf);
		appendStringInfoString(&buf, "{\"reason\": ");
		escape_json(&buf, text_to_cstring(PG_GETARG_TEXT_PP(1)));
		appendStringInfoChar(&buf, '}');
		result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
	}
	return report(fcinfo, ARG_TEXT(0), "revoked", result, &ra);
}
