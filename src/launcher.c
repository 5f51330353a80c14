/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The pg_jobs launcher: starts and supervises the workers and does the
 *	  periodic maintenance of the job table.
 *
 * One launcher per cluster, registered at startup when pg_jobs is preloaded,
 * connected to pg_jobs.database.  Every pg_jobs.maintenance_interval (and
 * whenever a worker it started exits) it:
 *	- starts a dynamic background worker for every free worker slot below
 *	  pg_jobs.workers (when max_worker_processes is exhausted it says so once
 *	  and tries again later);
 *	- reconciles jobs abandoned by in-database workers that no longer exist
 *	  (see shmem.c for how a worker's liveness is decided) and jobs of
 *	  external workers whose lease expired: each is requeued with backoff when
 *	  it has attempts left and failed with the reason otherwise, through
 *	  jobs._reconcile();
 *	- once an hour, creates the history partitions ahead;
 *	- rolls up the closed history days into the per-day totals that
 *	  jobs.summary() reads, through jobs.refresh_summaries() (a few days per
 *	  round, each day once), in a subtransaction like the retention;
 *	- every ten minutes, after a configuration reload, and again at once
 *	  while a run left work over, removes finished jobs past
 *	  pg_jobs.retention through jobs.apply_retention(), in a subtransaction
 *	  so that a failing retention cannot stall the rest.
 *
 * The launcher holds no job state of its own: if it is terminated, the
 * postmaster restarts it and it adopts the running workers from shared
 * memory; running jobs are not touched.
 *
 * IDENTIFICATION
 *	  src/launcher.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/vacuum.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "parser/parse_node.h"
#include "parser/parser.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "pg_jobs.h"
#include "privilege.h"

#define PARTITION_INTERVAL_MS	(3600 * 1000)
#define RETENTION_INTERVAL_MS	(600 * 1000)

static BackgroundWorkerHandle *handles[PGJOBS_MAX_WORKERS];
static bool warned_no_slot = false;
static bool warned_refresh = false;
static bool warned_no_extension = false;

/*
 * PgJobsRegisterLauncher
 *		Register the launcher; called from _PG_init while preloading.
 */
void
PgJobsRegisterLauncher(void)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 1;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "pg_jobs");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "PgJobsLauncherMain");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "pg_jobs launcher");
	snprintf(bgw.bgw_type, BGW_MAXLEN, "pg_jobs launcher");
	RegisterBackgroundWorker(&bgw);
}

/* Is the extension installed in our database?  Caller is in a transaction. */
static bool
extension_installed(void)
{
	return OidIsValid(get_extension_oid("pg_jobs", true));
}

/*
 * start_workers
 *		Start a worker for every free slot below pg_jobs.workers.
 */
static void
start_workers(void)
{
	for (int i = 0; i < pg_jobs_workers; i++)
	{
		BackgroundWorker bgw;
		pid_t		pid;
		WorkerState state;

		LWLockAcquire(PgJobsLock, LW_SHARED);
		state = PgJobsState->slots[i].state;
		LWLockRelease(PgJobsLock);
		if (state != WORKER_FREE)
			continue;			/* running, perhaps started by an earlier launcher */

		if (handles[i] != NULL)
		{
			BgwHandleStatus st = GetBackgroundWorkerPid(handles[i], &pid);

			if (st == BGWH_NOT_YET_STARTED || st == BGWH_STARTED)
				continue;		/* starting up */
			pfree(handles[i]);
			handles[i] = NULL;
		}

		memset(&bgw, 0, sizeof(bgw));
		bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
		bgw.bgw_restart_time = BGW_NEVER_RESTART;
		snprintf(bgw.bgw_library_name, BGW_MAXLEN, "pg_jobs");
		snprintf(bgw.bgw_function_name, BGW_MAXLEN, "PgJobsWorkerMain");
		snprintf(bgw.bgw_name, BGW_MAXLEN, "pg_jobs worker %d", i);
		snprintf(bgw.bgw_type, BGW_MAXLEN, "pg_jobs worker");
		bgw.bgw_main_arg = Int32GetDatum(i);
		bgw.bgw_notify_pid = MyProcPid;

		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
			bool		ok = RegisterDynamicBackgroundWorker(&bgw, &handles[i]);

			MemoryContextSwitchTo(old);
			if (!ok)
			{
				handles[i] = NULL;
				if (!warned_no_slot)
					ereport(LOG,
							(errmsg("pg_jobs: no background worker slot is free to start worker %d", i),
							 errdetail("Jobs wait until a slot is free; this is said once until a worker starts again."),
							 errhint("Raise max_worker_processes (it must exceed pg_jobs.workers plus the other background workers).")));
				warned_no_slot = true;
				return;
			}
			warned_no_slot = false;
		}
	}
}

/*
 * requeue_unstarted
 *		A job a gone worker had claimed but never started its handler on:
 *		back to pending at once, with the attempt its claim charged given
 *		back.  Returns whether the job was still the worker's.
 */
static bool
requeue_unstarted(int64 id, const char *worker)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[2] = {INT8OID, TEXTOID};
	Datum		args[2];
	int			ret;

	PgJobsLockJob(id);
	PgJobsRefundAttempt(id);
	args[0] = Int64GetDatum(id);
	args[1] = CStringGetTextDatum(worker);
	ret = SPI_execute_plan(PgJobsPreparePlan(&plan,
											 "UPDATE jobs.job j SET status = 'pending', run_at = pg_catalog.now(), "
											 "  last_error = pg_catalog.jsonb_build_object("
											 "    'error_type', 'WorkerLost', "
											 "    'error_message', 'the worker that had claimed the job is gone; its handler had not started, so no attempt is charged') "
											 "WHERE j.id OPERATOR(pg_catalog.=) $1 "
											 "  AND j.status OPERATOR(pg_catalog.=) 'started' "
											 "  AND j.worker OPERATOR(pg_catalog.=) $2",
											 2, argtypes),
						   args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "pg_jobs: requeueing job %lld failed: %s",
			 (long long) id, SPI_result_code_string(ret));
	return SPI_processed == 1;
}

/*
 * reconcile
 *		Requeue or fail the jobs of dead workers and expired leases.
 *		Caller is in a transaction with SPI connected and a snapshot pushed.
 */
static void
reconcile(void)
{
	int			ret;
	uint64		n;
	SPITupleTable *tuptable;
	int			counts[2][2];	/* [dead worker, expired lease][requeued, failed] */
	char	   *lost = NULL;	/* the gone worker whose started file is read */
	int64	   *lost_ids = NULL;
	int			nlost_ids = 0;
	bool		lost_known = false;
	List	   *lost_workers = NIL;
	ListCell   *lc;

	ret = SPI_execute("SELECT id, worker, false FROM jobs.job_hot "
					  "WHERE status OPERATOR(pg_catalog.=) 'started' "
					  "  AND worker OPERATOR(pg_catalog.~~) '" PGJOBS_WORKER_PREFIX "%' "
					  "UNION ALL "
					  "SELECT id, worker, true FROM jobs.job_hot "
					  "WHERE status OPERATOR(pg_catalog.=) 'started' "
					  "  AND lease_until IS NOT NULL "
					  "  AND lease_until OPERATOR(pg_catalog.<) pg_catalog.clock_timestamp() "
					  "ORDER BY 2, 1",
					  true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pg_jobs: scanning started jobs failed: %s",
			 SPI_result_code_string(ret));

	n = SPI_processed;
	tuptable = SPI_tuptable;
	memset(counts, 0, sizeof(counts));
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tup = tuptable->vals[i];
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(tup, tuptable->tupdesc, 1, &isnull));
		char	   *worker = SPI_getvalue(tup, tuptable->tupdesc, 2);
		Datum		expired = SPI_getbinval(tup, tuptable->tupdesc, 3, &isnull);
		const char *type;
		char	   *message;
		Oid			argtypes[4] = {INT8OID, TEXTOID, TEXTOID, TEXTOID};
		Datum		args[4];
		char		nulls[4] = {' ', ' ', ' ', ' '};

		if (worker != NULL &&
			strncmp(worker, PGJOBS_WORKER_PREFIX, strlen(PGJOBS_WORKER_PREFIX)) == 0)
		{
			bool		started = true;

			if (PgJobsWorkerIdentityAlive(worker))
				continue;
			/* did its handler run?  The worker's started file says (worker.c) */
			if (lost == NULL || strcmp(lost, worker) != 0)
			{
				lost = worker;
				lost_ids = PgJobsReadStarted(worker, &nlost_ids, &lost_known);
				lost_workers = lappend(lost_workers, worker);
			}
			if (lost_known)
			{
				started = false;
				for (int k = 0; k < nlost_ids; k++)
					if (lost_ids[k] == id)
						started = true;
			}
			if (!started)
			{
				if (requeue_unstarted(id, worker))
					counts[0][0]++;
				continue;
			}
			type = "WorkerLost";
			message = psprintf("the pg_jobs worker running the job (%s) is gone: it was terminated, or the server crashed or stopped", worker);
		}
		else if (!isnull && DatumGetBool(expired))
		{
			type = "LeaseExpired";
			message = psprintf("the lease of worker \"%s\" expired without a heartbeat",
							   worker ? worker : "(unnamed)");
		}
		else
			continue;

		args[0] = Int64GetDatum(id);
		args[1] = worker ? CStringGetTextDatum(worker) : (Datum) 0;
		nulls[1] = worker ? ' ' : 'n';
		args[2] = CStringGetTextDatum(type);
		args[3] = CStringGetTextDatum(message);
		ret = SPI_execute_with_args("SELECT jobs._reconcile($1, $2, $3, $4)::pg_catalog.text",
									4, argtypes, args, nulls, false, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "pg_jobs: reconciling job %lld failed: %s",
				 (long long) id, SPI_result_code_string(ret));
		{
			char	   *outcome = SPI_processed == 1 ?
				SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1) : NULL;
			int			kind = strcmp(type, "WorkerLost") == 0 ? 0 : 1;

			/* NULL: the job changed meanwhile; nothing done, nothing said */
			if (outcome != NULL)
				counts[kind][strcmp(outcome, "pending") == 0 ? 0 : 1]++;
			if (outcome != NULL && n <= 10)
				ereport(LOG,
						(errmsg("pg_jobs: reconciled job %lld (%s): %s",
								(long long) id, outcome, message)));
		}
	}
	/* the started files of the gone workers have served */
	foreach(lc, lost_workers)
		(void) unlink(PgJobsStartedFile((char *) lfirst(lc)));

	/* after a crash, one line for all, not one per job */
	if (n > 10 && (counts[0][0] + counts[0][1] + counts[1][0] + counts[1][1]) > 0)
		ereport(LOG,
				(errmsg("pg_jobs: reconciled %d jobs of workers that are gone (%d requeued, %d failed) and %d of expired leases (%d requeued, %d failed)",
						counts[0][0] + counts[0][1], counts[0][0], counts[0][1],
						counts[1][0] + counts[1][1], counts[1][0], counts[1][1])));
}

static void
ensure_partitions(void)
{
	int			ret = SPI_execute("SELECT jobs.ensure_partitions()", false, 0);

	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pg_jobs: ensure_partitions failed: %s",
			 SPI_result_code_string(ret));
}

/*
 * select_in_subxact
 *		Run a SELECT in a subtransaction,
 *		so that an error (say, an extension version without the function)
 *		is undone and the round's other work still commits.  Returns NULL on
 *		success, with *result set to the first column when it is a true
 *		boolean; else the error, in the caller's memory context.  Caller
 *		has SPI connected.
 */
static ErrorData *
select_in_subxact(const char *sql, bool *result)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	*result = false;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		int			ret = SPI_execute(sql, false, 0);

		if (ret != SPI_OK_SELECT)
			elog(ERROR, "pg_jobs: \"%s\" failed: %s", sql, SPI_result_code_string(ret));
		if (SPI_processed == 1 &&
			SPI_gettypeid(SPI_tuptable->tupdesc, 1) == BOOLOID)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull);

			*result = !isnull && DatumGetBool(d);
		}
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return edata;
}

/*
 * apply_retention
 *		Remove finished jobs past retention; returns whether work is left
 *		(a run removes a bounded number of rows).  Runs last in the round,
 *		so the short exclusive lock of a partition drop ends at the commit
 *		right after it.  An error is logged; the round's other work still
 *		commits.  Caller has SPI connected.
 */
static bool
apply_retention(void)
{
	bool		more;
	ErrorData  *edata;

	edata = select_in_subxact("SELECT (jobs.apply_retention() OPERATOR(pg_catalog.->>) 'more')::pg_catalog.bool",
							  &more);
	if (edata == NULL)
		return more;
	ereport(LOG,
			(errmsg("pg_jobs: retention failed: %s", edata->message),
			 errdetail("It is tried again in %d minutes.", RETENTION_INTERVAL_MS / 60000)));
	FreeErrorData(edata);
	return false;
}

/*
 * refresh_summaries
 *		Roll up the closed history days not yet rolled up (see
 *		jobs.refresh_summaries()); cheap when there is none.  An error is
 *		logged once until it works again; the round's other work still
 *		commits.  Caller has SPI connected.
 */
static void
refresh_summaries(void)
{
	bool		ignored;
	ErrorData  *edata;

	edata = select_in_subxact("SELECT jobs.refresh_summaries(wait => false)", &ignored);
	if (edata == NULL)
	{
		warned_refresh = false;
		return;
	}
	/* tried every round: say it once until it works again */
	if (!warned_refresh)
		ereport(LOG,
				(errmsg("pg_jobs: rolling up the summaries failed: %s", edata->message),
				 errdetail("It is tried again on every maintenance round; jobs.summary() reads the rows meanwhile.")));
	warned_refresh = true;
	FreeErrorData(edata);
}

/*
 * maintain
 *		One round of the launcher's work, in one transaction.
 *		*partitions_due and *retention_due say what else is due; they are
 *		cleared when done (retention stays due while a run left work over).
 */
static void
maintain_xact(bool *partitions_due, bool *retention_due)
{
	int			nest;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	/* every statement of the round under the pinned path (privilege.c) */
	nest = PgJobsPinSearchPath();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "pg_jobs launcher: maintenance");

	if (!extension_installed())
	{
		if (!warned_no_extension)
			ereport(LOG,
					(errmsg("pg_jobs: extension \"pg_jobs\" is not installed in database \"%s\"; no jobs will run",
							pg_jobs_database),
					 errhint("Run CREATE EXTENSION pg_jobs in that database, or set pg_jobs.database.")));
		warned_no_extension = true;
	}
	else
	{
		warned_no_extension = false;
		start_workers();
		reconcile();
		if (*partitions_due)
		{
			ensure_partitions();
			*partitions_due = false;
		}
		refresh_summaries();
		if (*retention_due)
			*retention_due = apply_retention();
		PgJobsState->last_maintenance = GetCurrentTimestamp();
	}

	SPI_finish();
	PgJobsUnpinSearchPath(nest);
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(true);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * maybe_vacuum_hot
 *		VACUUM jobs.job_hot once pg_jobs.hot_vacuum_threshold jobs have been
 *		claimed (by workers or external claimers) since the last time.
 *
 *		A claim moves a job from pending to started, leaving a dead entry at
 *		the head of the (priority, id) index of pending jobs; every later
 *		claim reads from the head and steps over all of them.  Autovacuum
 *		removes them, but only every autovacuum_naptime: under a sustained
 *		backlog, claims would slow down in proportion to the jobs already
 *		done.  Vacuuming after a fixed number of claims bounds that walk.
 *		VACUUM runs its own transactions, so it is called here as a
 *		top-level statement, outside any transaction.
 */
static void
maybe_vacuum_hot(void)
{
	static uint64 claimed_at_vacuum = 0;
	uint64		claimed = pg_atomic_read_u64(&PgJobsState->claimed);
	MemoryContext cxt = CurrentMemoryContext;

	if (claimed < claimed_at_vacuum)
		claimed_at_vacuum = 0;	/* shared memory was reinitialised */
	if (pg_jobs_hot_vacuum_threshold <= 0 ||
		claimed - claimed_at_vacuum < (uint64) pg_jobs_hot_vacuum_threshold)
		return;
	claimed_at_vacuum = claimed;

	PG_TRY();
	{
		List	   *raw;
		ParseState *pstate;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		pgstat_report_activity(STATE_RUNNING, "pg_jobs launcher: VACUUM jobs.job_hot");
		if (extension_installed())
		{
			raw = raw_parser("VACUUM (INDEX_CLEANUP ON, TRUNCATE OFF) jobs.job_hot", RAW_PARSE_DEFAULT);
			pstate = make_parsestate(NULL);
			pstate->p_sourcetext = "VACUUM (INDEX_CLEANUP ON, TRUNCATE OFF) jobs.job_hot";
			ExecVacuum(pstate, (VacuumStmt *) linitial_node(RawStmt, raw)->stmt, true);
			PgJobsState->last_hot_vacuum = GetCurrentTimestamp();
		}
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
	}
	PG_END_TRY();
	pgstat_report_stat(true);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * maintain
 *		maintain_xact(), with an error logged and the round abandoned
 *		instead of ending the launcher.
 */
static void
maintain(bool *partitions_due, bool *retention_due)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		maintain_xact(partitions_due, retention_due);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);
	}
	PG_END_TRY();
}

void
PgJobsLauncherMain(Datum main_arg)
{
	TimestampTz next_partitions = 0;
	TimestampTz next_retention = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(pg_jobs_database, NULL, 0);
	pgstat_report_appname("pg_jobs launcher");

	LWLockAcquire(PgJobsLock, LW_EXCLUSIVE);
	PgJobsState->launcher_pid = MyProcPid;
	PgJobsState->launcher_latch = MyLatch;
	LWLockRelease(PgJobsLock);

	for (;;)
	{
		bool		partitions_due;
		bool		retention_due;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			next_retention = 0; /* the retention may have changed */
		}

		partitions_due = GetCurrentTimestamp() >= next_partitions;
		retention_due = GetCurrentTimestamp() >= next_retention;
		maintain(&partitions_due, &retention_due);
		maybe_vacuum_hot();
		if (!partitions_due && next_partitions <= GetCurrentTimestamp())
			next_partitions = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														  PARTITION_INTERVAL_MS);
		if (!retention_due && next_retention <= GetCurrentTimestamp())
			next_retention = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														 RETENTION_INTERVAL_MS);

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 pg_jobs_maintenance_interval,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
