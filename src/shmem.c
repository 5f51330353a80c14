/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared state of the pg_jobs launcher and workers, and the commit-time
 *	  wakeups and interrupts that reach them.
 *
 * The state exists only when pg_jobs is in shared_preload_libraries; in a
 * backend that loaded the library later PgJobsState is NULL and every
 * function here quietly does nothing.
 *
 * Databases: the launcher (launcher.c) serves every database that has
 * pg_jobs.  Each has an entry in databases[] (its maintenance worker, its
 * share of pg_jobs.workers, its claim count), and each worker slot is given
 * to one database at a time (slot->assigned, written by the launcher) and
 * records the database of the worker in it (slot->dboid, written when a
 * worker takes the slot).  Job ids are per database, so wakeups, interrupts
 * and the cancel ring name the database too, and the slot lists show only
 * the current database's workers.  A backend asks the launcher to look at
 * its database (check_requests) when CREATE EXTENSION commits, and when it
 * enqueues where no worker serves yet.
 *
 * Locking protocol:
 *	- PgJobsLock (exclusive) is taken to change a slot's ownership (state
 *	  FREE <-> anything else, pid, generation, dboid), its assignment, the
 *	  database entries, the check requests and the launcher fields.
 *	- A worker changes the other fields of its own slot (state among the
 *	  non-FREE values, job_id, since) under PgJobsLock in exclusive mode too;
 *	  the lock is held for a few instructions, a few times per job.
 *	- cancel_job_id is written by any backend under PgJobsLock (exclusive)
 *	  and read by the worker in its timer callback without the lock: a
 *	  torn or stale read only delays the interrupt by one tick (an int64 read
 *	  is atomic on every platform we build for).
 *	- cancels and cancel_ring are written together under PgJobsLock
 *	  (exclusive) at the commit of a forced cancel; a worker reads cancels
 *	  without the lock and, when it moved, the ring under the lock
 *	  (PgJobsCancelledSince).
 *	- Wakeups read slot latches and dboids, and PgJobsFindDatabase() reads
 *	  the database entries, without the lock: a stale read sets a latch
 *	  in vain or misses one for a poll interval at most.
 *	- Wakeups read slot latches without the lock.  A latch pointer points
 *	  into PGPROC, which outlives any worker, so setting a stale one is
 *	  harmless; a worker resets its latch before it looks for work, so a
 *	  wakeup sent after that is never lost.
 *
 * Identity: an in-database worker writes "pg_jobs/<boot>/<slot>/<generation>"
 * into jobs.job.worker when it claims a job.  <boot> is drawn at random
 * whenever shared memory is initialised, that is at server start and after
 * every crash restart, and <generation> changes whenever a process takes the
 * slot.  A started job whose identity does not match a live slot was
 * therefore abandoned by a worker that no longer exists: the launcher decides
 * that from shared memory, which the postmaster resets on a crash, never
 * from a clock.
 *
 * Wakeups: the lifecycle triggers call PgJobsWakeWorkersAtCommit() when a
 * transaction makes a job pending; a transaction callback sets the workers'
 * latches after the commit has become visible.  No NOTIFY is involved, so
 * enqueueing takes no cluster-wide lock at commit.
 *
 * Interrupts: a job an in-database worker runs is interrupted only because
 * it was revoked.  The trigger job_revoked (AFTER INSERT on jobs.job_done,
 * for revoked rows whose worker is a pg_jobs worker: the row a revoke moves
 * there) queues the job's id, and the worker running it is told once the
 * revoking transaction commits.  An id queued in a subtransaction that is
 * rolled back is forgotten with it, so a worker is never told to abandon a
 * job that is still started (it would then stay started forever).  No SQL
 * function asks for an interrupt directly.
 *
 * Worker slots are read by jobs._worker_slots() (monitors: job ids
 * included) and jobs.workers() (everyone: the task id only of a job the
 * caller can see).
 *
 * IDENTIFICATION
 *	  src/shmem.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>
#include <unistd.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "commands/dbcommands.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "pg_jobs.h"

PgJobsShared *PgJobsState = NULL;
LWLock	   *PgJobsLock = NULL;

/* a job to interrupt at commit, and the subtransaction level that asked */
typedef struct PendingInterrupt
{
	int64		job_id;
	int			nest_level;
} PendingInterrupt;

static bool wake_at_commit = false;
static int	wake_jobs = 0;			/* jobs this transaction made runnable */
static bool check_at_commit = false;	/* ask the launcher to look at us */
static bool notice_at_commit = false;	/* CREATE EXTENSION: say if unserved */

static void warn_not_served(int elevel);
static List *interrupt_at_commit = NIL;	/* PendingInterrupt, TopTransactionContext */
static bool xact_callback_registered = false;

PG_FUNCTION_INFO_V1(pg_jobs_worker_slots);
PG_FUNCTION_INFO_V1(pg_jobs_worker_list);
PG_FUNCTION_INFO_V1(pg_jobs_job_revoked);
PG_FUNCTION_INFO_V1(pg_jobs_engine);
PG_FUNCTION_INFO_V1(pg_jobs_installed);
PG_FUNCTION_INFO_V1(pg_jobs_handler_registered);

/*
 * PgJobsShmemInit
 *		shmem_startup_hook work: create or attach the shared state.
 */
void
PgJobsShmemInit(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	PgJobsState = ShmemInitStruct("pg_jobs", sizeof(PgJobsShared), &found);
	PgJobsLock = &(GetNamedLWLockTranche("pg_jobs"))->lock;
	if (!found)
	{
		memset(PgJobsState, 0, sizeof(PgJobsShared));
		pg_atomic_init_u64(&PgJobsState->cancels, 0);
		for (int i = 0; i < PGJOBS_MAX_DATABASES; i++)
			pg_atomic_init_u64(&PgJobsState->databases[i].claimed, 0);
		if (!pg_strong_random(&PgJobsState->boot_id, sizeof(PgJobsState->boot_id)))
			PgJobsState->boot_id = (uint64) GetCurrentTimestamp() ^ (uint64) getpid();
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * PgJobsCountClaim
 *		A job went from pending to started (any claimer, the lifecycle
 *		trigger counts).  Each claim leaves a dead entry in job_hot's
 *		pending indexes; after pg_jobs.hot_vacuum_threshold of them the
 *		launcher is woken to vacuum job_hot (see launcher.c).
 */
void
PgJobsCountClaim(void)
{
	uint64		before;
	PgJobsDatabase *d;
	Latch	   *latch;

	if (PgJobsState == NULL || (d = PgJobsFindDatabase(MyDatabaseId)) == NULL)
		return;					/* not preloaded or not served: autovacuum alone */
	before = pg_atomic_fetch_add_u64(&d->claimed, 1);
	latch = d->latch;
	if (pg_jobs_hot_vacuum_threshold > 0 &&
		(before + 1) % (uint64) pg_jobs_hot_vacuum_threshold == 0 && latch)
		SetLatch(latch);
}

/*
 * PgJobsFindDatabase
 *		The launcher's entry for database dboid (being checked or served),
 *		or NULL.  Read without the lock: the entry may change right after,
 *		which callers only use to set a latch or count must tolerate.
 */
PgJobsDatabase *
PgJobsFindDatabase(Oid dboid)
{
	if (PgJobsState == NULL)
		return NULL;
	for (int i = 0; i < PGJOBS_MAX_DATABASES; i++)
	{
		PgJobsDatabase *d = &PgJobsState->databases[i];

		if (d->dboid == dboid &&
			(d->state == DATABASE_CHECKING || d->state == DATABASE_SERVED))
			return d;
	}
	return NULL;
}

/*
 * PgJobsWorkerWanted
 *		Is worker slot slotno still given to the database the calling worker
 *		is connected to?  A worker exits when not (worker.c).
 */
bool
PgJobsWorkerWanted(int slotno)
{
	bool		wanted;

	LWLockAcquire(PgJobsLock, LW_SHARED);
	wanted = PgJobsState->slots[slotno].assigned == MyDatabaseId;
	LWLockRelease(PgJobsLock);
	return wanted;
}

/*
 * PgJobsRequestCheck
 *		Ask the launcher to look at database dboid (is pg_jobs installed
 *		there?) at once.  Caller must not hold PgJobsLock.
 */
void
PgJobsRequestCheck(Oid dboid)
{
	bool		known = false;

	if (PgJobsState == NULL)
		return;
	LWLockAcquire(PgJobsLock, LW_EXCLUSIVE);
	for (int i = 0; i < PgJobsState->ncheck_requests; i++)
		if (PgJobsState->check_requests[i] == dboid)
			known = true;
	if (!known && PgJobsState->ncheck_requests < PGJOBS_CHECK_REQUESTS)
		PgJobsState->check_requests[PgJobsState->ncheck_requests++] = dboid;
	else if (!known)
		PgJobsState->check_all = true;
	LWLockRelease(PgJobsLock);
	if (PgJobsState->launcher_latch)
		SetLatch(PgJobsState->launcher_latch);
}

static void
pg_jobs_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			/* after the install script, whose client_min_messages is warning */
			if (notice_at_commit)
			{
				notice_at_commit = false;
				warn_not_served(NOTICE);
			}
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (PgJobsState != NULL && interrupt_at_commit != NIL)
			{
				LWLockAcquire(PgJobsLock, LW_EXCLUSIVE);
				foreach(lc, interrupt_at_commit)
				{
					int64		job_id = ((PendingInterrupt *) lfirst(lc))->job_id;
					uint64		n = pg_atomic_read_u64(&PgJobsState->cancels);

					/* for workers that hold the job in a claimed batch */
					PgJobsState->cancel_ring[n % PGJOBS_CANCEL_RING] = job_id;
					PgJobsState->cancel_ring_db[n % PGJOBS_CANCEL_RING] = MyDatabaseId;
					pg_atomic_write_u64(&PgJobsState->cancels, n + 1);

					for (int i = 0; i < PGJOBS_MAX_WORKERS; i++)
					{
						PgJobsWorkerSlot *slot = &PgJobsState->slots[i];

						if (slot->state != WORKER_FREE && slot->dboid == MyDatabaseId &&
							slot->job_id == job_id)
						{
							slot->cancel_job_id = job_id;
							if (slot->latch)
								SetLatch(slot->latch);
						}
					}
				}
				LWLockRelease(PgJobsLock);
			}
			if (PgJobsState != NULL && wake_at_commit)
			{
				static TimestampTz last_request = 0;

				int			idle_to_wake = wake_jobs;

				/*
				 * Wake the workers that can take the new jobs and no more:
				 * every worker of this database that is claiming (its claim
				 * may have missed our commit, and it would then sleep: a
				 * latch set now makes it look again), and as many idle ones
				 * as jobs were made runnable.  Running workers claim again
				 * when their batch is done.
				 */
				for (int i = 0; i < PGJOBS_MAX_WORKERS; i++)
				{
					PgJobsWorkerSlot *slot = &PgJobsState->slots[i];
					Latch	   *latch = slot->latch;

					if (slot->dboid != MyDatabaseId || latch == NULL)
						continue;
					if (slot->state == WORKER_CLAIMING)
						SetLatch(latch);
					else if (slot->state == WORKER_IDLE && idle_to_wake > 0)
					{
						SetLatch(latch);
						idle_to_wake--;
					}
				}

				/*
				 * No worker serves this database (say, it was created from a
				 * template that has pg_jobs): ask the launcher to look, at
				 * most once a second per backend.
				 */
				if (PgJobsFindDatabase(MyDatabaseId) == NULL &&
					TimestampDifferenceExceeds(last_request, GetCurrentTimestamp(), 1000))
				{
					last_request = GetCurrentTimestamp();
					check_at_commit = true;
				}
			}
			if (PgJobsState != NULL && check_at_commit)
				PgJobsRequestCheck(MyDatabaseId);
			wake_at_commit = false;
			wake_jobs = 0;
			check_at_commit = false;
			notice_at_commit = false;
			interrupt_at_commit = NIL;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_at_commit = false;
			wake_jobs = 0;
			check_at_commit = false;
			notice_at_commit = false;
			interrupt_at_commit = NIL;
			break;
		default:
			break;
	}
}

/*
 * A subtransaction that is rolled back takes its interrupt requests with it;
 * one that commits hands them to its parent.
 */
static void
pg_jobs_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	ListCell   *lc;

	switch (event)
	{
		case SUBXACT_EVENT_ABORT_SUB:
			foreach(lc, interrupt_at_commit)
			{
				PendingInterrupt *p = (PendingInterrupt *) lfirst(lc);

				if (p->nest_level >= level)
					interrupt_at_commit = foreach_delete_current(interrupt_at_commit, lc);
			}
			break;
		case SUBXACT_EVENT_COMMIT_SUB:
			foreach(lc, interrupt_at_commit)
			{
				PendingInterrupt *p = (PendingInterrupt *) lfirst(lc);

				if (p->nest_level >= level)
					p->nest_level = level - 1;
			}
			break;
		default:
			break;
	}
}

static void
register_xact_callback(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(pg_jobs_xact_callback, NULL);
		RegisterSubXactCallback(pg_jobs_subxact_callback, NULL);
		xact_callback_registered = true;
	}
}

/*
 * PgJobsWakeWorkersAtCommit
 *		Wake the workers once the current transaction commits.
 */
void
PgJobsWakeWorkersAtCommit(int njobs)
{
	if (PgJobsState == NULL)
		return;
	wake_jobs += njobs;
	if (wake_at_commit)
		return;
	register_xact_callback();
	wake_at_commit = true;
}

/*
 * PgJobsRequestCheckAtCommit
 *		Ask the launcher to look at the current database once the current
 *		transaction commits (CREATE EXTENSION pg_jobs).
 */
void
PgJobsRequestCheckAtCommit(void)
{
	if (PgJobsState == NULL)
		return;
	register_xact_callback();
	check_at_commit = true;
}

/*
 * PgJobsCancelledSince
 *		Was job_id the subject of a forced cancel committed after the
 *		caller read `seen` from PgJobsState->cancels?  *known is false when
 *		more cancels than the ring holds came since: the caller must then
 *		read the job itself.
 */
bool
PgJobsCancelledSince(uint64 seen, int64 job_id, bool *known)
{
	bool		found = false;
	uint64		now;

	*known = true;
	if (PgJobsState == NULL)
		return false;
	now = pg_atomic_read_u64(&PgJobsState->cancels);
	if (now == seen)
		return false;
	LWLockAcquire(PgJobsLock, LW_SHARED);
	now = pg_atomic_read_u64(&PgJobsState->cancels);
	if (now - seen > PGJOBS_CANCEL_RING)
		*known = false;
	else
		for (uint64 i = seen; i < now; i++)
			if (PgJobsState->cancel_ring[i % PGJOBS_CANCEL_RING] == job_id &&
				PgJobsState->cancel_ring_db[i % PGJOBS_CANCEL_RING] == MyDatabaseId)
				found = true;
	LWLockRelease(PgJobsLock);
	return found;
}

/*
 * PgJobsInterruptAtCommit
 *		Once the current transaction commits, interrupt the worker running
 *		job_id (if any); its handler's work is rolled back.  Forgotten if
 *		the current subtransaction is rolled back.  Call it only for a job
 *		this transaction has revoked: the worker records nothing for a job
 *		it was told to abandon.
 */
void
PgJobsInterruptAtCommit(int64 job_id)
{
	MemoryContext old;
	PendingInterrupt *p;

	if (PgJobsState == NULL)
		return;
	register_xact_callback();
	old = MemoryContextSwitchTo(TopTransactionContext);
	p = palloc(sizeof(PendingInterrupt));
	p->job_id = job_id;
	p->nest_level = GetCurrentTransactionNestLevel();
	interrupt_at_commit = lappend(interrupt_at_commit, p);
	MemoryContextSwitchTo(old);
}

/*
 * PgJobsWorkerIdentity
 *		The string a worker in slot/generation writes into jobs.job.worker.
 */
char *
PgJobsWorkerIdentity(int slot, uint32 generation)
{
	return psprintf(PGJOBS_WORKER_PREFIX "%016llx/%d/%u",
					(unsigned long long) PgJobsState->boot_id, slot, generation);
}

/*
 * PgJobsWorkerIdentityAlive
 *		Is the worker named by identity still alive?
 *
 * False for any identity from an earlier boot or an earlier occupant of the
 * slot, and for a slot that is free.  Caller must not hold PgJobsLock.
 */
bool
PgJobsWorkerIdentityAlive(const char *identity)
{
	unsigned long long boot;
	int			slotno;
	unsigned int generation;
	bool		alive = false;

	if (PgJobsState == NULL ||
		sscanf(identity, PGJOBS_WORKER_PREFIX "%llx/%d/%u", &boot, &slotno, &generation) != 3)
		return false;
	if (boot != (unsigned long long) PgJobsState->boot_id ||
		slotno < 0 || slotno >= PGJOBS_MAX_WORKERS)
		return false;

	LWLockAcquire(PgJobsLock, LW_SHARED);
	alive = PgJobsState->slots[slotno].state != WORKER_FREE &&
		PgJobsState->slots[slotno].generation == generation;
	LWLockRelease(PgJobsLock);
	return alive;
}

static const char *
state_name(WorkerState s)
{
	switch (s)
	{
		case WORKER_FREE:
			return "free";
		case WORKER_IDLE:
			return "idle";
		case WORKER_CLAIMING:
			return "claiming";
		case WORKER_RUNNING:
			return "running";
		case WORKER_STOPPING:
			return "stopping";
	}
	return "unknown";
}

/*
 * pg_jobs_worker_slots
 *		SQL: jobs._worker_slots() -> (slot, pid, state, job_id, since,
 *		identity) for every occupied worker slot; no rows without shared
 *		state.  Granted to admins and monitors only: it names every running
 *		job.
 */
Datum
pg_jobs_worker_slots(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PgJobsWorkerSlot copy[PGJOBS_MAX_WORKERS];

	InitMaterializedSRF(fcinfo, 0);
	if (PgJobsState == NULL)
		return (Datum) 0;

	LWLockAcquire(PgJobsLock, LW_SHARED);
	memcpy(copy, PgJobsState->slots, sizeof(copy));
	LWLockRelease(PgJobsLock);

	for (int i = 0; i < PGJOBS_MAX_WORKERS; i++)
	{
		Datum		values[6];
		bool		nulls[6] = {false};

		if (copy[i].state == WORKER_FREE || copy[i].dboid != MyDatabaseId)
			continue;
		values[0] = Int32GetDatum(i);
		values[1] = Int32GetDatum(copy[i].pid);
		values[2] = CStringGetTextDatum(state_name(copy[i].state));
		values[3] = Int64GetDatum(copy[i].job_id);
		nulls[3] = copy[i].job_id == 0;
		values[4] = TimestampTzGetDatum(copy[i].since);
		nulls[4] = copy[i].since == 0;
		values[5] = CStringGetTextDatum(PgJobsWorkerIdentity(i, copy[i].generation));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * pg_jobs_worker_list
 *		SQL: jobs.workers() -> (slot, pid, state, task_id, since) for every
 *		occupied worker slot, for everyone: the task id of the running job
 *		only when the caller can see that job (read as the caller, so
 *		row-level security decides), NULL otherwise.
 */
Datum
pg_jobs_worker_list(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	static Oid	argtypes[1] = {INT8OID};
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PgJobsWorkerSlot copy[PGJOBS_MAX_WORKERS];
	MemoryContext outer;

	InitMaterializedSRF(fcinfo, 0);
	if (PgJobsState == NULL)
		return (Datum) 0;

	LWLockAcquire(PgJobsLock, LW_SHARED);
	memcpy(copy, PgJobsState->slots, sizeof(copy));
	LWLockRelease(PgJobsLock);

	outer = CurrentMemoryContext;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_jobs: SPI_connect failed");
	PgJobsPreparePlan(&plan,
					  "SELECT j.task_id FROM jobs.job j "
					  "WHERE j.id OPERATOR(pg_catalog.=) $1 "
					  "  AND j.status OPERATOR(pg_catalog.=) 'started'::jobs.status",
					  1, argtypes);
	for (int i = 0; i < PGJOBS_MAX_WORKERS; i++)
	{
		Datum		values[5];
		bool		nulls[5] = {false};
		MemoryContext old;

		if (copy[i].state == WORKER_FREE || copy[i].dboid != MyDatabaseId)
			continue;
		nulls[3] = true;
		if (copy[i].job_id != 0)
		{
			Datum		args[1] = {Int64GetDatum(copy[i].job_id)};
			int			ret = SPI_execute_plan(plan, args, NULL, true, 1);

			if (ret != SPI_OK_SELECT)
				elog(ERROR, "pg_jobs: job lookup failed: %s", SPI_result_code_string(ret));
			if (SPI_processed == 1)
			{
				char	   *task_id = SPI_getvalue(SPI_tuptable->vals[0],
												   SPI_tuptable->tupdesc, 1);

				old = MemoryContextSwitchTo(outer);
				values[3] = CStringGetTextDatum(task_id);
				MemoryContextSwitchTo(old);
				nulls[3] = false;
			}
		}
		old = MemoryContextSwitchTo(outer);
		values[0] = Int32GetDatum(i);
		values[1] = Int32GetDatum(copy[i].pid);
		values[2] = CStringGetTextDatum(state_name(copy[i].state));
		values[4] = TimestampTzGetDatum(copy[i].since);
		nulls[4] = copy[i].since == 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return (Datum) 0;
}

/*
 * pg_jobs_job_revoked
 *		Trigger job_revoked on jobs.job_done: AFTER INSERT FOR EACH ROW, for
 *		revoked rows whose worker is a pg_jobs worker (its WHEN clause), that
 *		is a started job of an in-database worker just revoked (a forced
 *		cancel, jobs.revoke(), an admin's UPDATE).  Interrupts that worker
 *		once the revoke commits.
 */
Datum
pg_jobs_job_revoked(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	int			attnum;
	Datum		id;
	bool		isnull;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pg_jobs_job_revoked must be fired AFTER INSERT ... FOR EACH ROW")));

	desc = RelationGetDescr(td->tg_relation);
	attnum = SPI_fnumber(desc, "id");
	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pg_jobs_job_revoked must be fired on jobs.job_done")));
	id = heap_getattr(td->tg_trigtuple, attnum, desc, &isnull);
	if (!isnull)
		PgJobsInterruptAtCommit(DatumGetInt64(id));
	return PointerGetDatum(NULL);
}

/*
 * not_served
 *		Why no pg_jobs worker runs the jobs of the current database, with a
 *		hint at the remedy; NULL when they do.  *lasting is false for a
 *		reason that passes by itself (the launcher has not got to the
 *		database yet).  Caller is in a transaction.
 */
static const char *
not_served(const char **hint, bool *lasting)
{
	char	   *dbname = get_database_name(MyDatabaseId);
	PgJobsDatabase *d;

	*hint = NULL;
	*lasting = true;
	if (PgJobsState == NULL)
	{
		*hint = "Add pg_jobs to shared_preload_libraries and restart the server; until then only external workers (jobs.claim) run jobs.";
		return "pg_jobs is not in shared_preload_libraries";
	}
	if (pg_jobs_database[0] != '\0' &&
		(dbname == NULL || strcmp(pg_jobs_database, dbname) != 0))
	{
		*hint = "Empty pg_jobs.database to serve every database that has pg_jobs, or set it to this one, and restart the server.";
		return psprintf("pg_jobs.database restricts the workers to database \"%s\"", pg_jobs_database);
	}
	*lasting = false;
	if (PgJobsState->launcher_pid == 0)
	{
		*hint = "The postmaster starts it once recovery is finished; see the server log.";
		return "the pg_jobs launcher is not running";
	}
	d = PgJobsFindDatabase(MyDatabaseId);
	if (d == NULL || d->state != DATABASE_SERVED)
	{
		*hint = "The launcher looks at a database when pg_jobs is created there or a job is enqueued, and every ten minutes; see the server log if this lasts.";
		return "the launcher has not started serving this database yet";
	}
	return NULL;
}

static int
compare_names(const ListCell *a, const ListCell *b)
{
	return strcmp((char *) lfirst(a), (char *) lfirst(b));
}

/*
 * pg_jobs_engine
 *		SQL: jobs.engine() -> jsonb: whether pg_jobs serves this database
 *		(maintenance and workers), with how many worker slots, which
 *		databases it serves, and if not why and what to do.  For everyone:
 *		jobs.health() includes it.
 */
Datum
pg_jobs_engine(PG_FUNCTION_ARGS)
{
	StringInfoData buf;
	const char *hint;
	bool		lasting;
	const char *reason = not_served(&hint, &lasting);
	PgJobsDatabase *d = PgJobsFindDatabase(MyDatabaseId);
	int			workers = 0;
	List	   *names = NIL;
	ListCell   *lc;

	if (reason == NULL && d != NULL)
	{
		workers = d->workers;
		if (workers == 0)
		{
			reason = "pg_jobs.workers is 0: maintenance runs, but no worker runs handlers";
			hint = "Set pg_jobs.workers and reload the configuration.";
		}
	}
	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"preloaded\": %s, \"serves_this_database\": %s, \"databases\": [",
					 PgJobsState != NULL ? "true" : "false",
					 d != NULL && d->state == DATABASE_SERVED ? "true" : "false");
	for (int i = 0; PgJobsState != NULL && i < PGJOBS_MAX_DATABASES; i++)
	{
		char	   *name;

		if (PgJobsState->databases[i].state == DATABASE_SERVED &&
			(name = get_database_name(PgJobsState->databases[i].dboid)) != NULL)
			names = lappend(names, name);
	}
	list_sort(names, compare_names);
	foreach(lc, names)
	{
		if (lc != list_head(names))
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, (char *) lfirst(lc));
	}
	appendStringInfo(&buf, "], \"workers\": %d, \"reason\": ", workers);
	if (reason)
		escape_json(&buf, reason);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfoString(&buf, ", \"hint\": ");
	if (hint)
		escape_json(&buf, hint);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfoChar(&buf, '}');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/* Say at elevel that handlers will not run in this database, if they will not */
static void
warn_not_served(int elevel)
{
	const char *hint;
	bool		lasting;
	const char *reason = not_served(&hint, &lasting);

	if (reason == NULL || !lasting)
		return;
	ereport(elevel,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("no pg_jobs worker runs the jobs of database \"%s\"",
					get_database_name(MyDatabaseId)),
			 errdetail("Jobs whose task type has a handler stay pending here: %s.", reason),
			 errhint("%s", hint)));
}

/*
 * pg_jobs_installed
 *		SQL: jobs._installed(), called once by the install script: asks the
 *		launcher to serve this database once CREATE EXTENSION commits, or
 *		says (a NOTICE, just before the commit) that no worker will.  Not
 *		from here: CREATE EXTENSION runs its script with client_min_messages
 *		= warning.  Not a WARNING: a restore (pg_dump's output sets
 *		client_min_messages = warning too) stays quiet; registering a
 *		handler is where it matters, and warns.
 */
Datum
pg_jobs_installed(PG_FUNCTION_ARGS)
{
	PgJobsRequestCheckAtCommit();
	register_xact_callback();
	notice_at_commit = true;
	PG_RETURN_VOID();
}

/*
 * pg_jobs_handler_registered
 *		Trigger handler_registered on jobs.task_type: AFTER INSERT OR UPDATE
 *		OF handler FOR EACH ROW WHEN a handler is set.  Warns when no worker
 *		will run the task type's jobs in this database.
 */
Datum
pg_jobs_handler_registered(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pg_jobs_handler_registered must be fired as a trigger")));
	warn_not_served(WARNING);
	return PointerGetDatum(NULL);
}
