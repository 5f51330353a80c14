/*-------------------------------------------------------------------------
 *
 * summary.c
 *	  The row trigger of rolled-up history partitions (see jobs.job_daily in
 *	  pg_jobs.sql).
 *
 * jobs.refresh_summaries() puts job_daily_stale (AFTER INSERT OR DELETE,
 * FOR EACH ROW, ENABLE ALWAYS) on every daily partition of jobs.job_done it
 * has rolled up.  Such a day is closed: no finishing job lands in it, so the
 * trigger never fires on the job hot path.  It fires for the rare writes
 * that do reach a closed day (retention and admin deletes, backfills with
 * session_replication_role = replica) and makes the day's totals be
 * forgotten in the same transaction, through the security definer
 * jobs._summary_forget(oid).  A bulk write fires it once per row, so it
 * forgets once per partition and statement and returns at once for the
 * other rows.
 *
 * IDENTIFICATION
 *	  src/summary.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "nodes/makefuncs.h"
#include "nodes/pg_list.h"
#include "parser/parse_func.h"
#include "storage/proc.h"
#include "utils/rel.h"

#include "pg_jobs.h"

PG_FUNCTION_INFO_V1(pg_jobs_job_daily_stale);

/* the partition forgotten last, and in which transaction and command */
static Oid	forgot_relid = InvalidOid;
static LocalTransactionId forgot_lxid = InvalidLocalTransactionId;
static CommandId forgot_cid = InvalidCommandId;

Datum
pg_jobs_job_daily_stale(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Oid			relid;
	Oid			argtypes[1] = {OIDOID};
	Oid			forget;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pg_jobs_job_daily_stale must be fired AFTER ... FOR EACH ROW")));

	relid = RelationGetRelid(td->tg_relation);
	if (relid == forgot_relid && forgot_lxid == MyProc->lxid &&
		forgot_cid == GetCurrentCommandId(false))
		return PointerGetDatum(NULL);

	/*
	 * Called through fmgr, the function runs as its owner (security definer)
	 * and needs no EXECUTE grant for the writer.
	 */
	forget = LookupFuncName(list_make2(makeString("jobs"), makeString("_summary_forget")),
							1, argtypes, false);
	(void) OidFunctionCall1(forget, ObjectIdGetDatum(relid));

	forgot_relid = relid;
	forgot_lxid = MyProc->lxid;
	forgot_cid = GetCurrentCommandId(false);
	return PointerGetDatum(NULL);
}
