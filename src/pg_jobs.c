/*-------------------------------------------------------------------------
 *
 * pg_jobs.c
 *	  Module entry point of pg_jobs: background jobs inside PostgreSQL.
 *
 * _PG_init defines the settings and, when the library is preloaded
 * (shared_preload_libraries), requests the shared state and registers the
 * launcher, which starts and supervises the workers.  Without preloading the
 * SQL API (tracking, monitoring, external claiming, logs, retention by hand)
 * works, but nothing runs in-database handlers: the library is then loaded
 * by a backend after startup, where postmaster-level settings cannot be
 * defined and shared memory cannot be requested, so _PG_init defines only
 * what may be defined then, and jobs.engine() (and the warnings at
 * CREATE EXTENSION and at registering a handler) say that workers need the
 * library preloaded.
 *
 * IDENTIFICATION
 *	  src/pg_jobs.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/guc.h"

#include "pg_jobs.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

char	   *pg_jobs_database = NULL;
int			pg_jobs_retention = 30 * 86400;	/* seconds; 0 = forever */
int			pg_jobs_retention_failed = -1;	/* -1 = as pg_jobs_retention */
int			pg_jobs_workers = 2;
int			pg_jobs_poll_interval = 1000;
int			pg_jobs_shutdown_grace = 5000;
int			pg_jobs_interrupt_grace = 2000;
int			pg_jobs_maintenance_interval = 1000;
int			pg_jobs_retry_base_delay = 1000;
int			pg_jobs_batch_size = 1000;
int			pg_jobs_hot_vacuum_threshold = 100000;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
pg_jobs_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(PgJobsShared)));
	RequestNamedLWLockTranche("pg_jobs", 1);
}

static void
pg_jobs_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	PgJobsShmemInit();
}

void
_PG_init(void)
{
	/*
	 * A postmaster-level setting can be defined only while preloading; a
	 * backend that loads the library later (CREATE EXTENSION on a server
	 * without shared_preload_libraries) defines it as a placeholder that a
	 * reload may change, so that the library loads and the SQL API works.
	 * Nothing reads it there but jobs.engine(), which reports the value.
	 */
	DefineCustomStringVariable("pg_jobs.database",
							   "Only database whose jobs the pg_jobs workers run; empty for every database that has pg_jobs.",
							   NULL,
							   &pg_jobs_database,
							   "",
							   process_shared_preload_libraries_in_progress ?
							   PGC_POSTMASTER : PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("pg_jobs.workers",
							"Number of background workers that run job handlers, shared by the databases that have pg_jobs.",
							"Each database gets an even share, at least one; 0 disables in-database execution.",
							&pg_jobs_workers,
							2, 0, PGJOBS_MAX_WORKERS,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pg_jobs.poll_interval",
							"Longest time an idle worker sleeps before it looks for due jobs.",
							"Workers are woken at once when a job is enqueued; the poll only catches jobs whose run_at arrives.",
							&pg_jobs_poll_interval,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pg_jobs.shutdown_grace",
							"How long a running handler may continue when the server shuts down.",
							"After this the handler is interrupted and its job requeued.",
							&pg_jobs_shutdown_grace,
							5000, 0, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pg_jobs.interrupt_grace",
							"How long a handler may keep running after it was interrupted.",
							"A handler interrupted by its timeout, a forced cancel or a shutdown that has not "
							"ended after this (it caught the cancel) is stopped by ending its worker process; "
							"the other jobs of the worker are requeued and a new worker starts.",
							&pg_jobs_interrupt_grace,
							2000, 100, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pg_jobs.maintenance_interval",
							"How often each database's maintenance worker reconciles abandoned jobs and expired leases.",
							NULL,
							&pg_jobs_maintenance_interval,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pg_jobs.batch_size",
							"Most jobs a worker claims at once.",
							"A worker claims one job at a time, doubling up to this while jobs are short and the queue full; the outcomes of a batch commit together, at most 50 ms of work per transaction.",
							&pg_jobs_batch_size,
							1000, 1, PGJOBS_MAX_BATCH,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pg_jobs.hot_vacuum_threshold",
							"Jobs claimed (by workers or external claimers) after which the launcher vacuums jobs.job_hot; 0 leaves it to autovacuum.",
							"Every claim leaves a dead entry at the head of the pending-job index that the next claims must step over; under a sustained backlog they pile up faster than autovacuum (on its naptime) removes them.",
							&pg_jobs_hot_vacuum_threshold,
							100000, 0, INT_MAX,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pg_jobs.retry_base_delay",
							"Delay before the first retry of a failed job; it doubles with each attempt.",
							"Capped at one hour, with +-25% jitter.",
							&pg_jobs_retry_base_delay,
							1000, 1, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	/*
	 * Retention is read by jobs.apply_retention() through pg_settings; it is
	 * PGC_SUSET so that an admin session (and the tests) can try a value
	 * before putting it into the configuration the launcher reads.
	 */
	DefineCustomIntVariable("pg_jobs.retention",
							"How long finished jobs and their logs are kept.",
							"0 keeps them forever.  The launcher removes older ones by dropping whole daily history partitions.",
							&pg_jobs_retention,
							30 * 86400, 0, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pg_jobs.retention_failed",
							"How long failed and revoked jobs are kept.",
							"-1 (the default) means the same as pg_jobs.retention; 0 keeps them forever.",
							&pg_jobs_retention_failed,
							-1, -1, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	/* components define their GUCs before the prefix is reserved */
	PgJobsLogsInit();
	MarkGUCPrefixReserved("pg_jobs");

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = pg_jobs_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = pg_jobs_shmem_startup;

	PgJobsRegisterLauncher();
}
