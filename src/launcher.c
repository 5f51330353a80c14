/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The pg_jobs launcher, which finds the databases where pg_jobs is
 *	  installed and starts their workers, and the per-database maintenance
 *	  worker, which does the periodic maintenance of a database's jobs.
 *
 * The launcher: one per cluster, registered at startup when pg_jobs is
 * preloaded, connected to no database (it reads only the shared catalog
 * pg_database), the way TimescaleDB's launcher finds its databases.  Every
 * pg_jobs.maintenance_interval, and whenever one of its processes exits or a
 * backend asks, it:
 *	- lists the databases that accept connections and are not templates
 *	  (only pg_jobs.database when that is set);
 *	- starts a maintenance worker for each database it is asked to look at:
 *	  every database when it starts, again every ten minutes those without
 *	  pg_jobs, and at once a database where CREATE EXTENSION pg_jobs commits
 *	  or where a job is enqueued while no worker serves it.  A maintenance
 *	  worker that finds no pg_jobs exits; at most MAX_CHECKING such checks
 *	  run at once;
 *	- shares pg_jobs.workers among the databases whose maintenance worker
 *	  found pg_jobs ("served"): in order of database oid, each gets
 *	  workers / n and the first workers % n one more, and every database at
 *	  least one (so with more databases than pg_jobs.workers, each has one),
 *	  as long as pg_jobs.workers is not 0;
 *	- gives each served database that many worker slots (shmem.c), takes
 *	  slots back from databases above their share (their workers finish the
 *	  jobs in hand and exit) and from databases no longer served, and starts
 *	  a dynamic background worker, connected to the slot's database, for
 *	  every slot given out and free (when max_worker_processes is exhausted
 *	  it says so once and tries again later).
 *
 * A maintenance worker: one per served database, connected to it.  Every
 * pg_jobs.maintenance_interval it:
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
 *	  so that a failing retention cannot stall the rest;
 *	- after pg_jobs.hot_vacuum_threshold claims, vacuums jobs.job_hot.
 * When it finds that pg_jobs is not (or no longer) installed, it marks its
 * database absent and exits; so do the database's workers at their next
 * claim, and the launcher gives their slots to the other databases.
 *
 * Neither holds job state of its own: if the launcher is terminated, the
 * postmaster restarts it and it adopts the running maintenance workers and
 * workers from shared memory; running jobs are not touched.
 *
 * IDENTIFICATION
 *	  src/launcher.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
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
#define RECHECK_INTERVAL_MS		(600 * 1000)	/* databases without pg_jobs */
#define MAX_CHECKING			2	/* maintenance workers checking at once */

/* the launcher's handles of the processes it started */
static BackgroundWorkerHandle *handles[PGJOBS_MAX_WORKERS];
static BackgroundWorkerHandle *db_handles[PGJOBS_MAX_DATABASES];
static List *to_check = NIL;	/* database oids to look at, TopMemoryContext */
static bool warned_no_slot = false;
static bool warned_full = false;

/* a maintenance worker's state */
static PgJobsDatabase *my_database = NULL;
static bool extension_gone = false;
static bool warned_refresh = false;

/* name of the database a maintenance worker or worker is connected to */
char	   *PgJobsDatabaseName = NULL;

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

/*
 * connect_to_extra_database
 *		Connect a maintenance worker or worker to the database whose oid the
 *		launcher put into bgw_extra, and remember its name.
 */
static void
connect_to_extra_database(void)
{
	Oid			dboid;
	char	   *name;

	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	StartTransactionCommand();
	name = get_database_name(MyDatabaseId);
	PgJobsDatabaseName = MemoryContextStrdup(TopMemoryContext, name ? name : "?");
	CommitTransactionCommand();
}

/*
 * PgJobsWorkerConnect
 *		A worker's connection: to the database of the slot it was started
 *		for (worker.c).
 */
void
PgJobsWorkerConnect(void)
{
	connect_to_extra_database();
}

/* Is the extension installed in our database?  Caller is in a transaction. */
static bool
extension_installed(void)
{
	return OidIsValid(get_extension_oid("pg_jobs", true));
}

/* a database the launcher may serve */
typedef struct DatabaseInfo
{
	Oid			oid;
	char		name[NAMEDATALEN];
} DatabaseInfo;

/*
 * list_databases
 *		The databases that accept connections, are not templates and pass
 *		pg_jobs.database, read from pg_database (a shared catalog, which the
 *		launcher can read without a database), into *dbs (palloc'd in the
 *		caller's context); returns how many.
 */
static int
list_databases(DatabaseInfo **dbs)
{
	MemoryContext cxt = CurrentMemoryContext;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	int			n = 0;
	int			size = 16;

	*dbs = palloc(sizeof(DatabaseInfo) * size);
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (!db->datallowconn || db->datistemplate)
			continue;
#ifdef DATCONNLIMIT_INVALID_DB
		if (db->datconnlimit == DATCONNLIMIT_INVALID_DB)
			continue;			/* a DROP DATABASE was interrupted */
#endif
		if (pg_jobs_database[0] != '\0' &&
			strcmp(NameStr(db->datname), pg_jobs_database) != 0)
			continue;
		if (n == size)
		{
			size *= 2;
			*dbs = repalloc(*dbs, sizeof(DatabaseInfo) * size);
		}
		(*dbs)[n].oid = db->oid;
		strlcpy((*dbs)[n].name, NameStr(db->datname), NAMEDATALEN);
		n++;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return n;
}

static const DatabaseInfo *
find_info(const DatabaseInfo *dbs, int n, Oid oid)
{
	for (int i = 0; i < n; i++)
		if (dbs[i].oid == oid)
			return &dbs[i];
	return NULL;
}

/* Is a process we started (or may have started) still starting or running? */
static bool
handle_alive(BackgroundWorkerHandle **handle)
{
	pid_t		pid;
	BgwHandleStatus st;

	if (*handle == NULL)
		return false;
	st = GetBackgroundWorkerPid(*handle, &pid);
	if (st == BGWH_NOT_YET_STARTED || st == BGWH_STARTED)
		return true;
	pfree(*handle);
	*handle = NULL;
	return false;
}

/*
 * start_process
 *		Register a dynamic background worker that runs function with
 *		main_arg, connected to dboid; false (said once until one starts) when
 *		no background worker slot is free.
 */
static bool
start_process(const char *function, const char *type, const char *name,
			  int main_arg, Oid dboid, BackgroundWorkerHandle **handle)
{
	BackgroundWorker bgw;
	MemoryContext old;
	bool		ok;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "pg_jobs");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(bgw.bgw_name, BGW_MAXLEN, "%s", name);
	snprintf(bgw.bgw_type, BGW_MAXLEN, "%s", type);
	bgw.bgw_main_arg = Int32GetDatum(main_arg);
	memcpy(bgw.bgw_extra, &dboid, sizeof(Oid));
	bgw.bgw_notify_pid = MyProcPid;

	old = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&bgw, handle);
	MemoryContextSwitchTo(old);
	if (!ok)
	{
		*handle = NULL;
		if (!warned_no_slot)
			ereport(LOG,
					(errmsg("pg_jobs: no background worker slot is free to start %s", name),
					 errdetail("Jobs wait until a slot is free; this is said once until a worker starts again."),
					 errhint("Raise max_worker_processes (it must exceed pg_jobs.workers plus one for the launcher, one per database with pg_jobs and the other background workers).")));
		warned_no_slot = true;
		return false;
	}
	warned_no_slot = false;
	return true;
}

/*
 * plan_databases
 *		Under PgJobsLock (exclusive): free the entries of databases found
 *		absent or gone, open entries for the databases to look at, share the
 *		worker budget among the served ones and give out or take back
 *		worker slots accordingly.
 */
static void
plan_databases(const DatabaseInfo *dbs, int ndbs, bool check_all)
{
	PgJobsDatabase *served[PGJOBS_MAX_DATABASES];
	int			nserved = 0;
	int			nchecking = 0;
	ListCell   *lc;

	/* requests from backends */
	if (PgJobsState->check_all)
		check_all = true;
	for (int i = 0; i < PgJobsState->ncheck_requests; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		to_check = list_append_unique_oid(to_check, PgJobsState->check_requests[i]);
		MemoryContextSwitchTo(old);
	}
	PgJobsState->ncheck_requests = 0;
	PgJobsState->check_all = false;

	/* entries whose database is absent or gone are freed once empty */
	for (int i = 0; i < PGJOBS_MAX_DATABASES; i++)
	{
		PgJobsDatabase *d = &PgJobsState->databases[i];

		if (d->state == DATABASE_FREE)
			continue;
		if ((d->state == DATABASE_ABSENT || find_info(dbs, ndbs, d->dboid) == NULL) &&
			d->pid == 0)
		{
			d->dboid = InvalidOid;
			d->state = DATABASE_FREE;
			d->latch = NULL;
			d->workers = 0;
			pg_atomic_write_u64(&d->claimed, 0);
			continue;
		}
		if (d->state == DATABASE_CHECKING)
			nchecking++;
		else if (d->state == DATABASE_SERVED && find_info(dbs, ndbs, d->dboid) != NULL)
			served[nserved++] = d;
	}

	/* databases to look at: the requested ones, or every one without an entry */
	if (check_all)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		for (int i = 0; i < ndbs; i++)
			to_check = list_append_unique_oid(to_check, dbs[i].oid);
		MemoryContextSwitchTo(old);
	}
	foreach(lc, to_check)
	{
		Oid			oid = lfirst_oid(lc);
		int			free_entry = -1;
		bool		known = false;

		if (find_info(dbs, ndbs, oid) == NULL)
		{
			to_check = foreach_delete_current(to_check, lc);
			continue;			/* not a database we may serve */
		}
		for (int i = 0; i < PGJOBS_MAX_DATABASES; i++)
		{
			if (PgJobsState->databases[i].state == DATABASE_FREE)
			{
				if (free_entry < 0)
					free_entry = i;
			}
			else if (PgJobsState->databases[i].dboid == oid)
				known = true;
		}
		if (known)
		{
			to_check = foreach_delete_current(to_check, lc);
			continue;			/* being checked or served already */
		}
		if (nchecking >= MAX_CHECKING)
			break;
		if (free_entry < 0)
		{
			if (!warned_full)
				ereport(LOG,
						(errmsg("pg_jobs: more than %d databases have pg_jobs; database %u is not served",
								PGJOBS_MAX_DATABASES, oid)));
			warned_full = true;
			break;
		}
		warned_full = false;
		PgJobsState->databases[free_entry].dboid = oid;
		PgJobsState->databases[free_entry].state = DATABASE_CHECKING;
		PgJobsState->databases[free_entry].pid = 0;
		nchecking++;
		to_check = foreach_delete_current(to_check, lc);
	}

	/* the budget, in order of database oid */
	for (int i = 1; i < nserved; i++)
		for (int j = i; j > 0 && served[j - 1]->dboid > served[j]->dboid; j--)
		{
			PgJobsDatabase *t = served[j];

			served[j] = served[j - 1];
			served[j - 1] = t;
		}
	for (int i = 0; i < PGJOBS_MAX_DATABASES; i++)
		PgJobsState->databases[i].workers = 0;
	for (int i = 0; i < nserved; i++)
		served[i]->workers = pg_jobs_workers == 0 ? 0 :
			Max(1, pg_jobs_workers / nserved + (i < pg_jobs_workers % nserved ? 1 : 0));

	/* take back slots beyond a database's share, the highest first */
	for (int i = 0; i < nserved + 1; i++)
	{
		Oid			oid = i < nserved ? served[i]->dboid : InvalidOid;
		int			kept = 0;

		for (int s = 0; s < PGJOBS_MAX_WORKERS; s++)
		{
			PgJobsWorkerSlot *slot = &PgJobsState->slots[s];
			PgJobsDatabase *d;

			if (!OidIsValid(slot->assigned))
				continue;
			if (i == nserved)
			{
				/* the slots of databases no longer served */
				d = PgJobsFindDatabase(slot->assigned);
				if (d != NULL && d->state == DATABASE_SERVED && d->workers > 0)
					continue;
			}
			else if (slot->assigned != oid || ++kept <= served[i]->workers)
				continue;
			slot->assigned = InvalidOid;
			if (slot->state != WORKER_FREE && slot->latch)
				SetLatch(slot->latch);	/* it finishes its jobs and exits */
		}
	}

	/* give free slots to databases below their share */
	for (int i = 0; i < nserved; i++)
	{
		int			have = 0;

		for (int s = 0; s < PGJOBS_MAX_WORKERS; s++)
			if (PgJobsState->slots[s].assigned == served[i]->dboid)
				have++;
		for (int s = 0; s < PGJOBS_MAX_WORKERS && have < served[i]->workers; s++)
		{
			PgJobsWorkerSlot *slot = &PgJobsState->slots[s];

			if (OidIsValid(slot->assigned) || slot->state != WORKER_FREE ||
				handle_alive(&handles[s]))
				continue;		/* in use, or a worker is still on its way */
			slot->assigned = served[i]->dboid;
			have++;
		}
	}
}

/*
 * launcher_round
 *		One round of the launcher: plan (see plan_databases), then start the
 *		maintenance workers and workers that are missing.
 */
static void
launcher_round(bool check_all)
{
	DatabaseInfo *dbs;
	int			ndbs = list_databases(&dbs);
	Oid			start_db[PGJOBS_MAX_DATABASES];
	Oid			start_slot[PGJOBS_MAX_WORKERS];

	LWLockAcquire(PgJobsLock, LW_EXCLUSIVE);
	plan_databases(dbs, ndbs, check_all);
	for (int i = 0; i < PGJOBS_MAX_DATABASES; i++)
	{
		PgJobsDatabase *d = &PgJobsState->databases[i];

		start_db[i] = InvalidOid;
		if ((d->state == DATABASE_CHECKING || d->state == DATABASE_SERVED) && d->pid == 0)
			start_db[i] = d->dboid;
	}
	for (int s = 0; s < PGJOBS_MAX_WORKERS; s++)
	{
		PgJobsWorkerSlot *slot = &PgJobsState->slots[s];

		start_slot[s] = slot->state == WORKER_FREE ? slot->assigned : InvalidOid;
	}
	LWLockRelease(PgJobsLock);

	/* registering takes the postmaster's lock: outside ours */
	for (int i = 0; i < PGJOBS_MAX_DATABASES; i++)
	{
		const DatabaseInfo *info = find_info(dbs, ndbs, start_db[i]);

		if (!OidIsValid(start_db[i]) || info == NULL || handle_alive(&db_handles[i]))
			continue;
		if (!start_process("PgJobsMaintenanceMain", "pg_jobs maintenance",
						   psprintf("pg_jobs maintenance %s", info->name),
						   i, start_db[i], &db_handles[i]))
			break;
	}
	for (int s = 0; s < PGJOBS_MAX_WORKERS; s++)
	{
		if (!OidIsValid(start_slot[s]) || handle_alive(&handles[s]))
			continue;
		if (!start_process("PgJobsWorkerMain", "pg_jobs worker",
						   psprintf("pg_jobs worker %d", s),
						   s, start_slot[s], &handles[s]))
			break;
	}
	pfree(dbs);
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
 *		One round of a maintenance worker's work, in one transaction.
 *		*partitions_due and *retention_due say what else is due; they are
 *		cleared when done (retention stays due while a run left work over).
 *		Sets extension_gone when pg_jobs is not installed.
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
	pgstat_report_activity(STATE_RUNNING, "pg_jobs maintenance");

	if (!extension_installed())
	{
		/* said only where pg_jobs.database names the database to serve */
		if (pg_jobs_database[0] != '\0')
			ereport(LOG,
					(errmsg("pg_jobs: extension \"pg_jobs\" is not installed in database \"%s\"; no jobs will run",
							PgJobsDatabaseName),
					 errhint("Run CREATE EXTENSION pg_jobs in that database, or set pg_jobs.database.")));
		extension_gone = true;
	}
	else
	{
		if (my_database->state == DATABASE_CHECKING)
		{
			LWLockAcquire(PgJobsLock, LW_EXCLUSIVE);
			my_database->state = DATABASE_SERVED;
			LWLockRelease(PgJobsLock);
			/* the launcher gives this database its workers */
			if (PgJobsState->launcher_latch)
				SetLatch(PgJobsState->launcher_latch);
		}
		reconcile();
		if (*partitions_due)
		{
			ensure_partitions();
			*partitions_due = false;
		}
		refresh_summaries();
		if (*retention_due)
			*retention_due = apply_retention();
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
 *		claimed (by workers or external claimers) in this database since the
 *		last time.
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
	uint64		claimed = pg_atomic_read_u64(&my_database->claimed);
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
		pgstat_report_activity(STATE_RUNNING, "pg_jobs maintenance: VACUUM jobs.job_hot");
		if (extension_installed())
		{
			raw = raw_parser("VACUUM (INDEX_CLEANUP ON, TRUNCATE OFF) jobs.job_hot", RAW_PARSE_DEFAULT);
			pstate = make_parsestate(NULL);
			pstate->p_sourcetext = "VACUUM (INDEX_CLEANUP ON, TRUNCATE OFF) jobs.job_hot";
			ExecVacuum(pstate, (VacuumStmt *) linitial_node(RawStmt, raw)->stmt, true);
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
 *		instead of ending the maintenance worker.
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

/* before_shmem_exit of a maintenance worker: leave its database's entry */
static void
release_database(int code, Datum arg)
{
	LWLockAcquire(PgJobsLock, LW_EXCLUSIVE);
	if (my_database->pid == MyProcPid)
	{
		my_database->pid = 0;
		my_database->latch = NULL;
		if (extension_gone)
			my_database->state = DATABASE_ABSENT;
	}
	LWLockRelease(PgJobsLock);
	if (PgJobsState->launcher_latch)
		SetLatch(PgJobsState->launcher_latch);
}

/*
 * PgJobsMaintenanceMain
 *		A maintenance worker: main_arg is its database's entry, bgw_extra
 *		the database's oid.  Exits when pg_jobs is not installed there.
 */
void
PgJobsMaintenanceMain(Datum main_arg)
{
	int			entry = DatumGetInt32(main_arg);
	TimestampTz next_partitions = 0;
	TimestampTz next_retention = 0;
	bool		taken = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	connect_to_extra_database();
	pgstat_report_appname("pg_jobs maintenance");

	if (entry >= 0 && entry < PGJOBS_MAX_DATABASES)
	{
		LWLockAcquire(PgJobsLock, LW_EXCLUSIVE);
		my_database = &PgJobsState->databases[entry];
		if (my_database->dboid == MyDatabaseId && my_database->pid == 0 &&
			(my_database->state == DATABASE_CHECKING ||
			 my_database->state == DATABASE_SERVED))
		{
			my_database->pid = MyProcPid;
			my_database->latch = MyLatch;
			taken = true;
		}
		LWLockRelease(PgJobsLock);
	}
	if (!taken)
		proc_exit(0);			/* another one serves it, or the entry moved on */
	before_shmem_exit(release_database, (Datum) 0);

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
		if (extension_gone)
			break;
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
	proc_exit(0);
}

/*
 * launcher_round_guarded
 *		launcher_round(), with an error logged and the round abandoned
 *		instead of ending the launcher.
 */
static void
launcher_round_guarded(bool check_all)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		launcher_round(check_all);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
	}
	PG_END_TRY();
}

void
PgJobsLauncherMain(Datum main_arg)
{
	TimestampTz next_check_all = 0;
	MemoryContext round_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* no database: the launcher reads only the shared catalog pg_database */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("pg_jobs launcher");

	LWLockAcquire(PgJobsLock, LW_EXCLUSIVE);
	PgJobsState->launcher_pid = MyProcPid;
	PgJobsState->launcher_latch = MyLatch;
	LWLockRelease(PgJobsLock);

	round_cxt = AllocSetContextCreate(TopMemoryContext, "pg_jobs launcher round",
									  ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		bool		check_all;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		check_all = GetCurrentTimestamp() >= next_check_all;
		if (check_all)
			next_check_all = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														 RECHECK_INTERVAL_MS);
		old = MemoryContextSwitchTo(round_cxt);
		launcher_round_guarded(check_all);
		MemoryContextSwitchTo(old);
		MemoryContextReset(round_cxt);

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 pg_jobs_maintenance_interval,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
