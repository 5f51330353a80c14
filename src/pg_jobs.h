/*-------------------------------------------------------------------------
 *
 * pg_jobs.h
 *	  Shared declarations of the pg_jobs extension.
 *
 * IDENTIFICATION
 *	  src/pg_jobs.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_JOBS_H
#define PG_JOBS_H

#include "postgres.h"

#include "executor/spi.h"

#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"
#include "datatype/timestamp.h"
#include "utils/jsonb.h"
#include "utils/tuplestore.h"
#include "tcop/dest.h"

/* SQLSTATEs of our own; PostgREST maps PTxyz to HTTP status xyz. */
#define ERRCODE_PGJOBS_NOT_FOUND	MAKE_SQLSTATE('P','T','4','0','4')
#define ERRCODE_PGJOBS_CONFLICT		MAKE_SQLSTATE('P','T','4','0','9')
#define ERRCODE_PGJOBS_GONE			MAKE_SQLSTATE('P','T','4','1','0')

/* locktag_field4 of our advisory-method locks (user locks use 1 and 2) */
#define PGJOBS_LOCK_JOB				0x4A42	/* one job: lifecycle reports */
#define PGJOBS_LOCK_TYPE			0x4A43	/* one task type: backpressure */

/* job statuses, in the order of the jobs.status enum */
typedef enum JobStatus
{
	JOB_PENDING = 0,
	JOB_STARTED,
	JOB_SUCCESS,
	JOB_FAILURE,
	JOB_REVOKED,
	JOB_NSTATUS
} JobStatus;

#define JobStatusIsTerminal(s)	((s) >= JOB_SUCCESS)

/* identity prefix of in-database workers in jobs.job.worker */
#define PGJOBS_WORKER_PREFIX		"pg_jobs/"

/* pg_jobs.c: settings */
extern char *pg_jobs_database;
extern int	pg_jobs_retention;
extern int	pg_jobs_retention_failed;
extern int	pg_jobs_workers;
extern int	pg_jobs_poll_interval;
extern int	pg_jobs_shutdown_grace;
extern int	pg_jobs_interrupt_grace;
extern int	pg_jobs_maintenance_interval;
extern int	pg_jobs_retry_base_delay;
extern int	pg_jobs_batch_size;
extern int	pg_jobs_hot_vacuum_threshold;

#define PGJOBS_MAX_BATCH			10000

/* longest task id and dedup key accepted, in bytes (22023 beyond) */
#define PGJOBS_MAX_TASK_ID			255
#define PGJOBS_MAX_DEDUP_KEY		1024

/* util.c */
extern SPIPlanPtr PgJobsPreparePlan(SPIPlanPtr *plan, const char *sql,
									int nargs, Oid *argtypes);

/* receives jobs.job rows as the rows of a function's result (util.c) */
typedef struct PgJobsJobDest
{
	DestReceiver pub;
	TupleDesc	resultdesc;		/* jobs.job as the function returns it */
	Tuplestorestate *tupstore;	/* the set, or NULL for a single row */
	MemoryContext resultcxt;	/* where the single row is made */
	HeapTuple	row;			/* the single row */
	bool		remap;			/* result type has dropped columns */
	Datum	   *values;
	bool	   *nulls;
} PgJobsJobDest;

extern void PgJobsJobDestInit(PgJobsJobDest *dest, TupleDesc resultdesc,
							  Tuplestorestate *tupstore);
extern int	PgJobsExecuteToDest(SPIPlanPtr plan, int nargs, const Oid *argtypes,
								const Datum *values, const bool *nulls,
								DestReceiver *dest);

/* lifecycle.c */
extern const char *JobStatusName(JobStatus s);
extern void PgJobsRefundAttempt(int64 job_id);
extern void PgJobsNoteHandlerStart(int64 job_id, TimestampTz at);

/* shmem.c: shared state of the launcher and workers */
#define PGJOBS_MAX_WORKERS			64

typedef enum WorkerState
{
	WORKER_FREE = 0,			/* slot unused */
	WORKER_IDLE,				/* waiting for work */
	WORKER_CLAIMING,			/* looking for a job */
	WORKER_RUNNING,				/* running a handler */
	WORKER_STOPPING				/* finishing on shutdown */
} WorkerState;

typedef struct PgJobsWorkerSlot
{
	WorkerState state;
	pid_t		pid;
	uint32		generation;		/* bumped each time a worker takes the slot */
	Latch	   *latch;
	int64		job_id;			/* job being run, 0 if none */
	TimestampTz since;			/* when the current state began */
	int64		cancel_job_id;	/* a forced cancel asks to interrupt this job */
	Oid			dboid;			/* database of the worker in the slot */
	Oid			assigned;		/* database the launcher gives the slot to,
								 * InvalidOid for none */
} PgJobsWorkerSlot;

/* the databases the launcher serves, one maintenance worker each */
#define PGJOBS_MAX_DATABASES		64
#define PGJOBS_CHECK_REQUESTS		16

typedef enum DatabaseState
{
	DATABASE_FREE = 0,			/* entry unused */
	DATABASE_CHECKING,			/* maintenance worker starting: is pg_jobs there? */
	DATABASE_SERVED,			/* pg_jobs is installed: maintained, given workers */
	DATABASE_ABSENT				/* pg_jobs is not installed (entry about to be freed) */
} DatabaseState;

typedef struct PgJobsDatabase
{
	Oid			dboid;			/* InvalidOid when the entry is free */
	DatabaseState state;
	pid_t		pid;			/* its maintenance worker, 0 if none */
	Latch	   *latch;
	int			workers;		/* worker slots the launcher gives it */
	pg_atomic_uint64 claimed;	/* pending -> started moves while served */
} PgJobsDatabase;

#define PGJOBS_CANCEL_RING			64

typedef struct PgJobsShared
{
	uint64		boot_id;		/* random, new at every (re)initialisation */
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	/*
	 * Forced cancels committed since start, and the job ids of the last
	 * PGJOBS_CANCEL_RING of them (written under PgJobsLock): a worker checks
	 * them before each handler of a claimed batch (worker.c).
	 */
	pg_atomic_uint64 cancels;
	int64		cancel_ring[PGJOBS_CANCEL_RING];
	Oid			cancel_ring_db[PGJOBS_CANCEL_RING];	/* database of each */
	PgJobsWorkerSlot slots[PGJOBS_MAX_WORKERS];
	PgJobsDatabase databases[PGJOBS_MAX_DATABASES];
	/* databases a backend asks the launcher to look at (under PgJobsLock) */
	Oid			check_requests[PGJOBS_CHECK_REQUESTS];
	int			ncheck_requests;
	bool		check_all;		/* more requests came than the array holds */
} PgJobsShared;

extern PgJobsShared *PgJobsState;
extern LWLock *PgJobsLock;

extern void PgJobsShmemInit(void);
extern void PgJobsWakeWorkersAtCommit(int njobs);
extern void PgJobsCountClaim(void);
extern void PgJobsInterruptAtCommit(int64 job_id);
extern bool PgJobsCancelledSince(uint64 seen, int64 job_id, bool *known);
extern char *PgJobsWorkerIdentity(int slot, uint32 generation);
extern bool PgJobsWorkerIdentityAlive(const char *identity);
extern PgJobsDatabase *PgJobsFindDatabase(Oid dboid);
extern bool PgJobsWorkerWanted(int slotno);
extern void PgJobsRequestCheck(Oid dboid);
extern void PgJobsRequestCheckAtCommit(void);

/* launcher.c, worker.c */
extern void PgJobsRegisterLauncher(void);
extern PGDLLEXPORT void PgJobsLauncherMain(Datum main_arg);
extern PGDLLEXPORT void PgJobsMaintenanceMain(Datum main_arg);
extern void PgJobsWorkerConnect(void);
extern char *PgJobsDatabaseName;
extern PGDLLEXPORT void PgJobsWorkerMain(Datum main_arg);
/* directory of the workers' started files (worker.c), in the data directory */
#define PGJOBS_STARTED_DIR			"pg_jobs"
extern char *PgJobsStartedFile(const char *identity);
extern int64 *PgJobsReadStarted(const char *identity, int *n, bool *exists);
extern bool PgJobsWorkerBufferLog(int64 job_id, int level, const char *source,
								  const char *message, Jsonb *fields);

/* access.c */
extern bool PgJobsIsAdmin(Oid roleid);
extern bool PgJobsMayActFor(Oid roleid, const char *owner);
extern bool PgJobsMayRunAs(Oid roleid, Oid target);
extern bool PgJobsHandlerShape(Oid fn, bool *exists, bool *temp, Oid *owner);
extern void PgJobsCheckRunAs(Oid roleid, const char *role_name, const char *what);
extern void PgJobsLockJob(int64 job_id);
extern void PgJobsLockTaskType(const char *task_type, const char *owner);

/* dependencies.c */
/*
 * run_at of a job waiting for its dependencies: far in the future, so no
 * claim takes it.  Finite, because the workers compute their sleep from
 * min(run_at) - now(), which is an error for 'infinity'.  Keep it equal to
 * jobs._waiting_run_at() in pg_jobs.sql.
 */
#define PGJOBS_WAITING_RUN_AT_SQL	"'9999-12-31 00:00:00+00'::pg_catalog.timestamptz"
extern TimestampTz PgJobsWaitingRunAt(void);
extern bool PgJobsEnqueueDependencies(int64 job_id, Datum depends_on,
									  TimestampTz run_at, Oid owner);
extern void PgJobsCheckParent(int64 job_id, int64 parent_id);

/* logs.c: log levels, in order of severity */
#define PGJOBS_LOG_DEBUG			0
#define PGJOBS_LOG_INFO				1
#define PGJOBS_LOG_NOTICE			2
#define PGJOBS_LOG_WARNING			3
#define PGJOBS_LOG_ERROR			4
#define PGJOBS_LOG_NLEVELS			5

extern int	PgJobsLogMaxEntries;
extern char *PgJobsRunningTaskId;
extern void PgJobsLogsInit(void);
extern int	PgJobsLogLevelFromName(const char *name);
extern const char *PgJobsLogLevelName(int level);
extern const char *PgJobsCurrentTaskId(void);
extern int64 PgJobsLogWrite(int64 job_id, int level, const char *source,
							const char *message, Jsonb *fields,
							TimestampTz at);

#endif							/* PG_JOBS_H */
