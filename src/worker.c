/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  A pg_jobs worker: claims pending jobs that have an SQL handler and runs
 *	  the handler as the job's owner.
 *
 * Each job takes two transactions:
 *	1. claim: the highest-priority, oldest due pending jobs whose task type
 *	   has a handler are locked (FOR UPDATE SKIP LOCKED, so two workers never
 *	   get the same job), cut to what fits in CLAIM_BUDGET_MS of the run time
 *	   this worker measured per task type, and moved to started, stamped with
 *	   this worker's identity (see shmem.c); when the outcome is written,
 *	   date_started becomes the moment the handler was called;
 *	2. run: the handler runs in a subtransaction as the job's owner (or the
 *	   task type's run_as role) through PgJobsBecome (privilege.c):
 *	   SECURITY_RESTRICTED_OPERATION, its own GUC nest level, every setting
 *	   it changed undone when it ends.  On success its jsonb result and the
 *	   final state are committed together with the handler's work, so a
 *	   pure-SQL job takes effect exactly once.  On error the subtransaction
 *	   is rolled back and the failure (or a retry with backoff) is committed
 *	   instead.
 * Before writing the final state the worker takes the job's report lock, and
 * it writes only if the job is still started by this worker.  The worker's
 * own statements run with search_path pinned (PgJobsPinSearchPath).
 *
 * Batches: a claim takes up to pg_jobs.batch_size jobs, and returns with
 * each everything its handler needs.  Transaction 2 runs them in order, each
 * handler in its own subtransaction, without reading the job again, and
 * writes all the successes with one UPDATE at the end (failures are written
 * as they happen).  That UPDATE also checks that every job is still started
 * by this worker; if one is not (a forced cancel or a plain UPDATE got
 * there first), the transaction is rolled back, so no handler's work took
 * effect, and the same jobs run again the careful way: each one read again,
 * skipped if it is no longer ours, and its success written inside its
 * handler's subtransaction, which is rolled back if the job was revoked
 * meanwhile.  Before each handler the worker also checks the ring of
 * committed forced cancels (shmem.c), so a cancelled job waiting in the
 * batch is never started.
 *
 * Attempts: the claim charges one; a requeue by the worker (shutdown, or the
 * exit below) gives it back (PgJobsRefundAttempt).  If the process dies, the
 * launcher charges only the jobs listed in this worker's started file, where
 * each job's id is written just before its handler is called.
 *
 * Interrupts: while a handler runs, a 100 ms timer checks the job's timeout,
 * a forced cancel request in the worker's slot, and the shutdown grace
 * period; any of them cancels the handler the way a query cancel would,
 * and the reason decides the outcome (failure with "timed out after ...",
 * nothing as the cancel already revoked the job, or a requeue on shutdown).
 * A handler that catches the cancel is cancelled again at every tick and,
 * pg_jobs.interrupt_grace after the first, stopped by ending this process;
 * worker_exit_record() then records the outcomes in a new transaction.
 *
 * Errors outside the handler are not caught: they end the worker process,
 * which frees its slot; the launcher then reconciles its job and starts a
 * new worker.
 *
 * IDENTIFICATION
 *	  src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include <fcntl.h>
#include <unistd.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "pg_jobs.h"
#include "privilege.h"
#include "errnames.h"

#define TICK_MS 100
#define BATCH_BUDGET_MS 50		/* most time one transaction spends on a batch */
#define CLAIM_BUDGET_MS 100		/* most expected work a worker claims at once */

typedef enum InterruptReason
{
	INTR_NONE = 0,
	INTR_TIMEOUT,
	INTR_CANCEL,
	INTR_SHUTDOWN
} InterruptReason;

static volatile sig_atomic_t got_sigterm = false;

static int	my_slotno = -1;
static PgJobsWorkerSlot *my_slot = NULL;
static char *my_identity = NULL;

/* state the timer callback reads; set only while a handler runs */
static volatile int64 running_job_id = 0;
static volatile TimestampTz job_deadline = 0;
static volatile TimestampTz shutdown_seen_at = 0;
static volatile sig_atomic_t interrupt_reason = INTR_NONE;
static volatile TimestampTz interrupted_at = 0;
static TimeoutId tick_timeout;

/*
 * A handler that keeps running pg_jobs.interrupt_grace after it was
 * interrupted (it caught the cancel) is stopped by ending this process
 * (see tick_handler); worker_exit_record() then records the outcomes of the
 * jobs of the transaction that the exit rolls back.
 */
static volatile sig_atomic_t escalated = false;
static TimestampTz handler_started_at = 0;	/* of the running handler */
static volatile int64 escalated_job_id = 0;
static volatile sig_atomic_t escalated_reason = INTR_NONE;
static struct ClaimedJob *xact_jobs = NULL; /* claimed jobs not yet committed */
static int	xact_njobs = 0;

/*
 * Log entries of the running handler, buffered in log_cxt and written to
 * the job's log after the handler, in the transaction that records the
 * outcome: they survive the handler's rollback, cost no commit each, and
 * are visible no later than the final state.
 */
typedef struct BufferedLog
{
	int			level;
	char	   *source;
	char	   *message;
	Jsonb	   *fields;
	TimestampTz at;
} BufferedLog;

static MemoryContext log_cxt = NULL;
static List *log_buffer = NIL;
static int	log_buffered = 0;
static int64 log_job_id = 0;	/* job whose handler may buffer, 0 if none */
static bool in_log_hook = false;
static bool rolling_back_handler = false;	/* see capture_log_hook */
static int	worker_log_min_messages = WARNING;	/* the worker's own */
static emit_log_hook_type prev_emit_log_hook = NULL;

/*
 * A claimed job, as the claim returned it (in batch_cxt, reset after each
 * batch): what the handler needs, so that running it needs no fetch.
 */
typedef struct ClaimedJob
{
	int64		id;
	char	   *task_id;
	char	   *task_type;
	int16		priority;
	Datum		row;			/* the jobs.job row, as claimed */
	Oid			handler;		/* InvalidOid if the type lost its handler */
	char	   *run_as;			/* owner, else the type's run_as; NULL if none */
	int64		timeout_ms;		/* 0: none */
	int32		attempts;
	int32		max_attempts;
} ClaimedJob;

static MemoryContext batch_cxt = NULL;

/*
 * Successes of the current transaction, not yet written: the optimistic
 * path writes them with one statement at the end (see run_batch).
 */
static int64 *succ_ids = NULL;
static Datum *succ_results = NULL;
static bool *succ_nulls = NULL;
static int	nsucc = 0;

/*
 * How long each task type's handler takes, as this worker measured it (an
 * exponentially weighted mean of its runs), for the claim's budget.
 */
#define TYPE_KEYSIZE	128
typedef struct TypeTiming
{
	char		name[TYPE_KEYSIZE];	/* hash key (longer names cut) */
	double		avg_ms;
} TypeTiming;

static HTAB *type_timing = NULL;

static double
expected_ms(const char *type)
{
	char		key[TYPE_KEYSIZE] = {0};
	TypeTiming *t;

	if (type_timing == NULL)
		return CLAIM_BUDGET_MS;
	strlcpy(key, type, TYPE_KEYSIZE);
	t = hash_search(type_timing, key, HASH_FIND, NULL);
	return t ? t->avg_ms : CLAIM_BUDGET_MS;
}

static void
record_ms(const char *type, double ms)
{
	char		key[TYPE_KEYSIZE] = {0};
	TypeTiming *t;
	bool		found;

	if (type_timing == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = TYPE_KEYSIZE;
		ctl.entrysize = sizeof(TypeTiming);
		type_timing = hash_create("pg_jobs task type timings", 64, &ctl,
								  HASH_ELEM | HASH_STRINGS);
	}
	strlcpy(key, type, TYPE_KEYSIZE);
	t = hash_search(type_timing, key, HASH_ENTER, &found);
	t->avg_ms = found ? 0.7 * t->avg_ms + 0.3 * ms : ms;
}

static int
claimed_job_cmp(const void *a, const void *b)
{
	const ClaimedJob *x = (const ClaimedJob *) a;
	const ClaimedJob *y = (const ClaimedJob *) b;

	if (x->priority != y->priority)
		return x->priority < y->priority ? -1 : 1;
	return x->id < y->id ? -1 : (x->id > y->id ? 1 : 0);
}

static void
worker_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	got_sigterm = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/* Runs in the SIGALRM handler every TICK_MS while a handler runs. */
static void
tick_handler(void)
{
	TimestampTz now;

	if (running_job_id == 0)
		return;
	now = GetCurrentTimestamp();
	if (interrupt_reason != INTR_NONE)
	{
		/*
		 * Still running: the handler caught the cancel.  Cancel it again at
		 * every tick, and once the grace is over end the process, which no
		 * handler can catch.
		 */
		if (!escalated &&
			now >= TimestampTzPlusMilliseconds(interrupted_at, pg_jobs_interrupt_grace))
		{
			escalated = true;
			escalated_job_id = running_job_id;
			escalated_reason = interrupt_reason;
			ProcDiePending = true;
		}
		QueryCancelPending = true;
		InterruptPending = true;
		SetLatch(MyLatch);
		return;
	}
	if (job_deadline != 0 && now >= job_deadline)
		interrupt_reason = INTR_TIMEOUT;
	else if (my_slot->cancel_job_id == running_job_id)
		interrupt_reason = INTR_CANCEL;
	else if (got_sigterm)
	{
		if (shutdown_seen_at == 0)
			shutdown_seen_at = now;
		if (now >= TimestampTzPlusMilliseconds(shutdown_seen_at, pg_jobs_shutdown_grace))
			interrupt_reason = INTR_SHUTDOWN;
	}
	if (interrupt_reason != INTR_NONE)
	{
		interrupted_at = now;
		QueryCancelPending = true;
		InterruptPending = true;
		SetLatch(MyLatch);
	}
}

/*
 * buffer_log
 *		Keep an entry for the running job, up to the log cap (the entries
 *		beyond it would be dropped when written anyway; one more is kept so
 *		that the cap's note is written).
 */
static void
buffer_log(int level, const char *source, const char *message, Jsonb *fields)
{
	MemoryContext old;
	BufferedLog *e;

	if (PgJobsLogMaxEntries > 0 && log_buffered > PgJobsLogMaxEntries)
		return;
	old = MemoryContextSwitchTo(log_cxt);
	e = palloc(sizeof(BufferedLog));
	e->level = level;
	e->source = source ? pstrdup(source) : NULL;
	e->message = pstrdup(message);
	e->fields = fields ? (Jsonb *) datumCopy(JsonbPGetDatum(fields), false, -1) : NULL;
	e->at = GetCurrentTimestamp();
	log_buffer = lappend(log_buffer, e);
	log_buffered++;
	MemoryContextSwitchTo(old);
}

/*
 * PgJobsWorkerBufferLog
 *		Called by jobs.log(): buffer an entry for the job whose handler runs
 *		in this process.  False (nothing done) anywhere else.
 */
bool
PgJobsWorkerBufferLog(int64 job_id, int level, const char *source,
					  const char *message, Jsonb *fields)
{
	if (log_job_id == 0 || job_id != log_job_id)
		return false;
	buffer_log(level, source ? source : "handler", message, fields);
	return true;
}

/*
 * Capture what the handler RAISEs (DEBUG ... WARNING) into its job's log.
 * While a handler runs, log_min_messages is lowered so that every message
 * reaches this hook; messages below WARNING are then kept out of the server
 * log.  DEBUG and LOG messages are taken from PL/pgSQL's RAISE only, so the
 * server's own debugging output is not mixed in.
 */
static void
capture_log_hook(ErrorData *edata)
{
	/*
	 * While a failed handler's subtransaction is rolled back, its raised
	 * log_min_messages is still in force: keep the server's DEBUG lines
	 * about the rollback out of the log unless the worker's own setting
	 * asked for them.
	 */
	if (rolling_back_handler && edata->elevel <= DEBUG1 &&
		edata->elevel < worker_log_min_messages)
		edata->output_to_server = false;

	if (log_job_id != 0 && !in_log_hook && edata->elevel < ERROR)
	{
		int			level = -1;
		bool		from_raise = edata->filename && strcmp(edata->filename, "pl_exec.c") == 0;

		if (edata->elevel <= DEBUG1 && from_raise)
			level = PGJOBS_LOG_DEBUG;
		else if ((edata->elevel == LOG || edata->elevel == LOG_SERVER_ONLY) && from_raise)
			level = PGJOBS_LOG_INFO;
		else if (edata->elevel == INFO)
			level = PGJOBS_LOG_INFO;
		else if (edata->elevel == NOTICE)
			level = PGJOBS_LOG_NOTICE;
		else if (edata->elevel == WARNING)
			level = PGJOBS_LOG_WARNING;

		if (level >= 0 && edata->message)
		{
			in_log_hook = true;
			buffer_log(level, "handler", edata->message, NULL);
			in_log_hook = false;
		}
		if (edata->elevel < WARNING)
			edata->output_to_server = false;
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/*
 * flush_logs
 *		Write the buffered entries of job_id.  Caller is in the outer
 *		transaction (after the handler's subtransaction).
 */
static void
flush_logs(int64 job_id)
{
	ListCell   *lc;

	foreach(lc, log_buffer)
	{
		BufferedLog *e = (BufferedLog *) lfirst(lc);

		(void) PgJobsLogWrite(job_id, e->level, e->source, e->message,
							  e->fields, e->at);
	}
	log_buffer = NIL;
	log_buffered = 0;
	MemoryContextReset(log_cxt);
}

static void
set_state(WorkerState state, int64 job_id)
{
	LWLockAcquire(PgJobsLock, LW_EXCLUSIVE);
	my_slot->state = state;
	my_slot->job_id = job_id;
	my_slot->since = GetCurrentTimestamp();
	LWLockRelease(PgJobsLock);
}

static void
release_slot(int code, Datum arg)
{
	if (my_slot == NULL)
		return;
	LWLockAcquire(PgJobsLock, LW_EXCLUSIVE);
	if (my_slot->pid == MyProcPid)
	{
		my_slot->state = WORKER_FREE;
		my_slot->job_id = 0;
		my_slot->latch = NULL;
		my_slot->pid = 0;
	}
	LWLockRelease(PgJobsLock);
	/* the launcher reconciles whatever job we leave behind */
	if (PgJobsState->launcher_latch)
		SetLatch(PgJobsState->launcher_latch);
}

/* Take slot number slotno; false if a live worker already has it. */
static bool
take_slot(int slotno)
{
	bool		ok = false;

	LWLockAcquire(PgJobsLock, LW_EXCLUSIVE);
	my_slot = &PgJobsState->slots[slotno];
	if (my_slot->state == WORKER_FREE)
	{
		my_slot->state = WORKER_IDLE;
		my_slot->pid = MyProcPid;
		my_slot->generation++;
		my_slot->latch = MyLatch;
		my_slot->job_id = 0;
		my_slot->cancel_job_id = 0;
		my_slot->since = GetCurrentTimestamp();
		my_slot->dboid = MyDatabaseId;
		my_identity = MemoryContextStrdup(TopMemoryContext,
										  PgJobsWorkerIdentity(slotno, my_slot->generation));
		ok = true;
	}
	LWLockRelease(PgJobsLock);
	if (!ok)
		my_slot = NULL;
	return ok;
}

/*
 * The started file.  Which claimed jobs had their handler called is known
 * only to this process until the transaction that records their outcomes
 * commits; if the process dies first (a crash restarts the whole server),
 * the launcher finds them all still started by a worker that is gone.  So
 * that it charges an attempt only to the jobs whose handler ran, the worker
 * appends each job's id to a small file of its own (PGJOBS_STARTED_DIR,
 * named after its identity) just before calling the handler, and empties
 * the file when the transaction ends.  A write per job, no fsync: the file
 * must survive the process and the server restart, not the machine.
 */
static int	started_fd = -1;
static int	started_n = 0;

/* the started file of a worker identity, "pg_jobs/<boot>/<slot>/<gen>" */
char *
PgJobsStartedFile(const char *identity)
{
	char	   *name = pstrdup(identity + strlen(PGJOBS_WORKER_PREFIX));

	for (char *c = name; *c; c++)
		if (*c == '/')
			*c = '-';
	return psprintf("%s/%s", PGJOBS_STARTED_DIR, name);
}

static void
started_append(int64 job_id)
{
	if (started_fd < 0)
	{
		if (MakePGDirectory(PGJOBS_STARTED_DIR) < 0 && errno != EEXIST)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not create directory \"%s\": %m", PGJOBS_STARTED_DIR)));
		/* not a transient file: it stays open across transactions */
		started_fd = BasicOpenFile(PgJobsStartedFile(my_identity),
								   O_RDWR | O_CREAT | O_TRUNC | PG_BINARY);
		if (started_fd < 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not open the started file of worker %d: %m", my_slotno)));
	}
	if (pg_pwrite(started_fd, &job_id, sizeof(job_id),
				  (off_t) started_n * sizeof(job_id)) != sizeof(job_id))
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write the started file of worker %d: %m", my_slotno)));
	started_n++;
}

static void
started_reset(void)
{
	if (started_fd >= 0 && started_n > 0)
	{
		if (ftruncate(started_fd, 0) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not empty the started file of worker %d: %m", my_slotno)));
	}
	started_n = 0;
}

/*
 * PgJobsReadStarted
 *		The job ids in the started file of a worker identity (palloc'd,
 *		*n of them; NULL if none).  *exists is false when there is no file:
 *		the worker never started a handler, or the machine restarted, so
 *		nothing is known.
 */
int64 *
PgJobsReadStarted(const char *identity, int *n, bool *exists)
{
	char	   *path = PgJobsStartedFile(identity);
	int			fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	int64	   *ids;
	off_t		size;

	*n = 0;
	*exists = fd >= 0;
	if (fd < 0)
		return NULL;
	size = lseek(fd, 0, SEEK_END);
	if (size <= 0)
	{
		CloseTransientFile(fd);
		return NULL;
	}
	ids = palloc(size);
	if (pg_pread(fd, ids, size, 0) != size)
	{
		CloseTransientFile(fd);
		return NULL;
	}
	CloseTransientFile(fd);
	*n = size / sizeof(int64);
	return ids;
}

static int	xact_nest = 0;
static uint64 claim_cancels = 0;	/* PgJobsState->cancels before the claim */
static long due_backoff_ms = 0;	/* see claim_jobs */

static void started_reset(void);

static void
begin_xact(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_jobs: SPI_connect failed");
	/* our own statements: never under a path a handler could have set */
	xact_nest = PgJobsPinSearchPath();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
end_xact(bool commit)
{
	SPI_finish();
	PgJobsUnpinSearchPath(xact_nest);
	PopActiveSnapshot();
	if (commit)
		CommitTransactionCommand();
	else
		AbortCurrentTransaction();
	started_reset();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * job_run_fields
 *		Fill in what running a job needs from a claim's or a re-read's
 *		result row, whose columns from `first` on are: the job row, the
 *		handler, the role to run as, the timeout in ms, attempts and
 *		max_attempts.  The row is copied into the current memory context.
 */
static void
job_run_fields(ClaimedJob *job, HeapTuple tup, TupleDesc td, int first)
{
	bool		isnull;
	Datum		d;

	job->row = datumCopy(SPI_getbinval(tup, td, first, &isnull), false, -1);
	d = SPI_getbinval(tup, td, first + 1, &isnull);
	job->handler = isnull ? InvalidOid : DatumGetObjectId(d);
	job->run_as = SPI_getvalue(tup, td, first + 2);
	d = SPI_getbinval(tup, td, first + 3, &isnull);
	job->timeout_ms = isnull ? 0 : DatumGetInt64(d);
	job->attempts = DatumGetInt32(SPI_getbinval(tup, td, first + 4, &isnull));
	job->max_attempts = DatumGetInt32(SPI_getbinval(tup, td, first + 5, &isnull));
}

/*
 * claim_jobs
 *		Transaction 1: claim up to max due jobs, in priority then FIFO order.
 *		Returns how many; when none, sets *sleep_ms to the time until the
 *		next delayed job is due (at most the poll interval).
 */
static int
claim_jobs(ClaimedJob *jobs, int max, long *sleep_ms)
{
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr claim_plan = NULL;
	static SPIPlanPtr next_plan = NULL;
	static Datum locked_ids[PGJOBS_MAX_BATCH];
	Oid			lock_argtypes[1] = {INT4OID};
	Datum		lock_args[1];
	int			nlocked;
	int			n = 0;
	bool		isnull;
	volatile int ret = 0;
	int			nest;

	/* before the claim: a forced cancel of a job we claim commits after it */
	claim_cancels = pg_atomic_read_u64(&PgJobsState->cancels);
	begin_xact("pg_jobs worker: claiming");
	if (!OidIsValid(get_extension_oid("pg_jobs", true)))
	{
		/* dropped under us: stop; the launcher starts workers again once it is back */
		end_xact(true);
		ereport(LOG,
				(errmsg("pg_jobs: extension \"pg_jobs\" is not installed in database \"%s\"; worker %d exits",
						PgJobsDatabaseName, my_slotno)));
		proc_exit(0);
	}
	if (lock_plan == NULL)
	{
		/*
		 * Step 1, lock the candidates: read per task type with a handler,
		 * each from the head of its own (task_type, priority, id) index
		 * range, and merged: jobs of types without a handler (an external
		 * queue's or a tracked Celery backlog) are never stepped over,
		 * however many are pending.  Each type's scan locks at most the
		 * batch size; the rows beyond the merged head, and those the budget
		 * below leaves out, stay locked only until the claim commits, and
		 * stay pending.
		 *
		 * Always a custom plan: a generic one cannot see the LIMIT and may
		 * sort the whole pending set instead of reading the head of the
		 * index.
		 */
		SPIPlanPtr	p = SPI_prepare_cursor(
								 "SELECT x.id, x.task_type FROM jobs.task_type t "
								 "CROSS JOIN LATERAL ("
								 "  SELECT c.id, c.priority, c.task_type FROM jobs.job_hot c "
								 "  WHERE c.task_type OPERATOR(pg_catalog.=) t.name "
								 "    AND c.status OPERATOR(pg_catalog.=) 'pending' "
								 "    AND c.run_at OPERATOR(pg_catalog.<=) pg_catalog.now() "
								 "  ORDER BY c.priority, c.id LIMIT $1 "
								 "  FOR UPDATE OF c SKIP LOCKED) x "
								 "WHERE t.handler IS NOT NULL "
								 "ORDER BY x.priority, x.id LIMIT $1",
								 1, lock_argtypes, CURSOR_OPT_CUSTOM_PLAN);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "pg_jobs: preparing the claim failed");
		lock_plan = p;
	}
	lock_args[0] = Int32GetDatum(max);

	/*
	 * A candidate that another worker claimed and finished since our
	 * snapshot has moved to job_done, and FOR UPDATE reports that as a
	 * serialization failure instead of skipping it: claim again, with a
	 * new snapshot, in a subtransaction so that only the claim is undone.
	 */
	/*
	 * No sort of a task type's pending jobs in a claim plan (only of the
	 * few candidates merged from the types' heads).  The only plan that
	 * scales is the ordered scan of job_hot_type_next, reading as many
	 * entries as the batch needs; but right after a burst of enqueues the
	 * statistics may still say there are few pending jobs, and the planner
	 * then prefers to fetch them all and sort them: a second per claim on
	 * a million jobs, until autovacuum analyzes job_hot.
	 */
	nest = NewGUCNestLevel();
	(void) set_config_option("enable_sort", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	/*
	 * The sort that merges the task types' heads is then priced as a
	 * disabled one, far above jit_above_cost: JIT-compiling the claim took
	 * ~90 ms, on a statement that runs in a fraction of a millisecond.
	 */
	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	for (int tries = 0;; tries++)
	{
		MemoryContext cxt = CurrentMemoryContext;
		ResourceOwner owner = CurrentResourceOwner;
		volatile bool moved = false;

		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(cxt);
		PG_TRY();
		{
			ret = SPI_execute_plan(lock_plan, lock_args, NULL, false, 0);
			ReleaseCurrentSubTransaction();
		}
		PG_CATCH();
		{
			ErrorData  *e;

			MemoryContextSwitchTo(cxt);
			e = CopyErrorData();
			if (e->sqlerrcode != ERRCODE_T_R_SERIALIZATION_FAILURE || tries >= 100)
				PG_RE_THROW();
			FlushErrorState();
			FreeErrorData(e);
			RollbackAndReleaseCurrentSubTransaction();
			moved = true;
		}
		PG_END_TRY();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (!moved)
			break;
	}
	AtEOXact_GUC(true, nest);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pg_jobs: claim failed: %s", SPI_result_code_string(ret));

	/*
	 * Step 2, the budget: take the locked jobs in order while their
	 * expected run times (per task type, as this worker measured them) fit
	 * in CLAIM_BUDGET_MS, at least one.  A type not measured yet counts as
	 * the whole budget.  So a worker never holds more claimed work than it
	 * starts within the budget, and slow jobs are left to idle workers.
	 */
	nlocked = 0;
	{
		double		sum = 0;

		for (uint64 i = 0; i < SPI_processed; i++)
		{
			char	   *type = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
			double		est = expected_ms(type);

			if (nlocked > 0 && sum + est > CLAIM_BUDGET_MS)
				break;
			sum += est;
			locked_ids[nlocked++] = SPI_getbinval(SPI_tuptable->vals[i],
												  SPI_tuptable->tupdesc, 1, &isnull);
		}
	}

	ret = SPI_OK_UPDATE_RETURNING;
	SPI_processed = 0;
	if (nlocked > 0)
	{
		Oid			upd_argtypes[2] = {TEXTOID, INT8ARRAYOID};
		Datum		upd_args[2];
		int			dims[1] = {nlocked};
		int			lbs[1] = {1};

		/*
		 * Step 3, claim them.  The UPDATE takes the chosen ids as an array,
		 * so it is an index lookup by id whatever the statistics say.  Its
		 * status test names both states of job_hot: it prunes to job_hot as
		 * well, but implies none of the partial indexes on pending jobs,
		 * which the planner would otherwise read whole and filter by id.
		 * (Step 1 locked the rows as pending; nobody changed them since.)
		 */
		PgJobsPreparePlan(&claim_plan,
						  "UPDATE jobs.job j SET status = 'started', worker = $1 "
						  "FROM jobs.task_type t "
						  "WHERE j.id OPERATOR(pg_catalog.=) ANY ($2) "
						  "  AND j.status OPERATOR(pg_catalog.=) ANY ('{pending,started}'::jobs.status[]) "
						  "  AND t.name OPERATOR(pg_catalog.=) j.task_type "
						  "RETURNING j.id, j.task_id, j.priority, j, t.handler::pg_catalog.oid, "
						  "  COALESCE(j.owner, t.run_as)::pg_catalog.text, "
						  "  (pg_catalog.date_part('epoch', t.timeout) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8, "
						  "  j.attempts, j.max_attempts, j.task_type",
						  2, upd_argtypes);
		upd_args[0] = CStringGetTextDatum(my_identity);
		upd_args[1] = PointerGetDatum(construct_md_array(locked_ids, NULL, 1, dims, lbs,
														  INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		ret = SPI_execute_plan(claim_plan, upd_args, NULL, false, 0);
		if (ret != SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "pg_jobs: claim failed: %s", SPI_result_code_string(ret));
	}

	if (SPI_processed > 0)
	{
		MemoryContext old = MemoryContextSwitchTo(batch_cxt);

		for (uint64 i = 0; i < SPI_processed && n < max; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	td = SPI_tuptable->tupdesc;
			ClaimedJob *job = &jobs[n++];

			job->id = DatumGetInt64(SPI_getbinval(tup, td, 1, &isnull));
			job->task_id = SPI_getvalue(tup, td, 2);
			job->priority = DatumGetInt16(SPI_getbinval(tup, td, 3, &isnull));
			job_run_fields(job, tup, td, 4);
			job->task_type = SPI_getvalue(tup, td, 10);
		}
		MemoryContextSwitchTo(old);
		/* RETURNING has no order: run them in claim order */
		qsort(jobs, n, sizeof(ClaimedJob), claimed_job_cmp);
		/* visible in the slot before the claim commits */
		set_state(WORKER_RUNNING, jobs[0].id);
	}
	else
	{
		/*
		 * Sleep until the next delayed job is due, at most the poll
		 * interval; read per task type with a handler, like the claim, so
		 * that an idle worker does not read other types' pending jobs.
		 */
		PgJobsPreparePlan(&next_plan,
									"SELECT pg_catalog.ceil(pg_catalog.date_part('epoch', "
									"         pg_catalog.min(x.run_at) OPERATOR(pg_catalog.-) pg_catalog.clock_timestamp()) "
									"         OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8 "
									"FROM jobs.task_type t CROSS JOIN LATERAL ("
									"  SELECT pg_catalog.min(c.run_at) AS run_at FROM jobs.job_hot c "
									"  WHERE c.task_type OPERATOR(pg_catalog.=) t.name "
									"    AND c.status OPERATOR(pg_catalog.=) 'pending' "
									"    AND pg_catalog.isfinite(c.run_at)) x "
									"WHERE t.handler IS NOT NULL",
									0, NULL);
		*sleep_ms = pg_jobs_poll_interval;
		/*
		 * An index scan of each type's pending jobs: with stale statistics
		 * the planner may read all of job_hot instead (40 ms with 300k
		 * pending jobs of other types), and JIT-compile that (100 ms more),
		 * each time the worker runs out of jobs.
		 */
		nest = NewGUCNestLevel();
		(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		ret = SPI_execute_plan(next_plan, NULL, NULL, true, 1);
		AtEOXact_GUC(true, nest);
		if (ret == SPI_OK_SELECT && SPI_processed > 0)
		{
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

			if (!isnull && DatumGetInt64(d) > 0)
			{
				*sleep_ms = Min(*sleep_ms, DatumGetInt64(d));
				due_backoff_ms = 0;
			}
			else if (!isnull)
			{
				/*
				 * A job is due, yet the claim found none: another session
				 * holds its row lock.  Back off (10 ms, doubling up to the
				 * poll interval) instead of claiming in a tight loop; a
				 * commit that makes jobs pending still wakes us at once.
				 */
				due_backoff_ms = due_backoff_ms == 0 ? 10 : Min(due_backoff_ms * 2, pg_jobs_poll_interval);
				*sleep_ms = Min(*sleep_ms, due_backoff_ms);
			}
		}
	}
	end_xact(true);
	return n;
}

static const char *
condition_name(int sqlerrcode)
{
	const char *state = unpack_sql_state(sqlerrcode);

	for (size_t i = 0; i < lengthof(pg_jobs_errnames); i++)
		if (strcmp(pg_jobs_errnames[i].sqlstate, state) == 0)
			return pg_jobs_errnames[i].name;
	return state;
}

/*
 * finalize
 *		Write the job's final state unless someone else (a forced cancel)
 *		already did.  Returns false when the job is no longer ours, in which
 *		case the caller must roll back.
 *
 * kind: 's' success (result), 'f' failure (error fields), 'r' retry
 * (error fields), 'q' requeue now (shutdown).
 */
static bool
finalize(int64 job_id, char kind, Datum result, bool result_null,
		 const char *error_type, const char *error_message, const char *traceback)
{
	static SPIPlanPtr plans[4];
	int			which = kind == 's' ? 0 : kind == 'f' ? 1 : kind == 'r' ? 2 : 3;
	const char *sql;
	Oid			argtypes[5] = {INT8OID, TEXTOID, JSONBOID, TEXTOID, TEXTOID};
	Datum		args[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	int			ret;

	PgJobsLockJob(job_id);

	if (kind != 's')
		argtypes[2] = TEXTOID;
	switch (kind)
	{
		case 's':
			sql = "UPDATE jobs.job SET status = 'success', result = $3 "
				"WHERE id OPERATOR(pg_catalog.=) $1 AND status OPERATOR(pg_catalog.=) 'started' "
				"AND worker OPERATOR(pg_catalog.=) $2";
			break;
		case 'f':
			sql = "UPDATE jobs.job SET status = 'failure', "
				"result = pg_catalog.jsonb_build_object('error_type', $4, 'error_message', $5::pg_catalog.text, "
				"                                       'traceback', pg_catalog.left($3, 5000)) "
				"WHERE id OPERATOR(pg_catalog.=) $1 AND status OPERATOR(pg_catalog.=) 'started' "
				"AND worker OPERATOR(pg_catalog.=) $2";
			break;
		case 'r':
			sql = "UPDATE jobs.job SET status = 'pending', "
				"run_at = pg_catalog.now() OPERATOR(pg_catalog.+) jobs._retry_delay(attempts), "
				"last_error = pg_catalog.jsonb_build_object('error_type', $4, 'error_message', $5::pg_catalog.text, "
				"                                           'traceback', pg_catalog.left($3, 5000), "
				"                                           'attempt', attempts) "
				"WHERE id OPERATOR(pg_catalog.=) $1 AND status OPERATOR(pg_catalog.=) 'started' "
				"AND worker OPERATOR(pg_catalog.=) $2";
			break;
		default:
			sql = "UPDATE jobs.job SET status = 'pending', run_at = pg_catalog.now(), "
				"last_error = pg_catalog.jsonb_build_object('error_type', $4, 'error_message', $5::pg_catalog.text, "
				"                                           'attempt', attempts) "
				"WHERE id OPERATOR(pg_catalog.=) $1 AND status OPERATOR(pg_catalog.=) 'started' "
				"AND worker OPERATOR(pg_catalog.=) $2";
			break;
	}

	/* a requeue ('q') is not a failed attempt */
	if (kind == 'q')
		PgJobsRefundAttempt(job_id);
	args[0] = Int64GetDatum(job_id);
	args[1] = CStringGetTextDatum(my_identity);
	if (kind == 's')
	{
		args[2] = result;
		nulls[2] = result_null ? 'n' : ' ';
	}
	else
	{
		args[2] = traceback ? CStringGetTextDatum(traceback) : (Datum) 0;
		nulls[2] = traceback ? ' ' : 'n';
	}
	args[3] = error_type ? CStringGetTextDatum(error_type) : (Datum) 0;
	nulls[3] = error_type ? ' ' : 'n';
	args[4] = error_message ? CStringGetTextDatum(error_message) : (Datum) 0;
	nulls[4] = error_message ? ' ' : 'n';

	ret = SPI_execute_plan(PgJobsPreparePlan(&plans[which], sql, 5, argtypes),
						   args, nulls, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "pg_jobs: writing the outcome of job %lld failed: %s",
			 (long long) job_id, SPI_result_code_string(ret));
	return SPI_processed == 1;
}

/*
 * refetch_job
 *		Read a claimed job again (careful path), into the current memory
 *		context.  False if it is no longer started by this worker.
 */
static bool
refetch_job(ClaimedJob *job)
{
	static SPIPlanPtr fetch_plan = NULL;
	Oid			argtypes[2] = {INT8OID, TEXTOID};
	Datum		args[2];

	PgJobsPreparePlan(&fetch_plan,
					  "SELECT j, t.handler::pg_catalog.oid, "
					  "       COALESCE(j.owner, t.run_as)::pg_catalog.text, "
					  "       (pg_catalog.date_part('epoch', t.timeout) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8, "
					  "       j.attempts, j.max_attempts "
					  "FROM jobs.job j JOIN jobs.task_type t ON t.name OPERATOR(pg_catalog.=) j.task_type "
					  "WHERE j.id OPERATOR(pg_catalog.=) $1 AND j.status OPERATOR(pg_catalog.=) 'started' "
					  "  AND j.worker OPERATOR(pg_catalog.=) $2",
					  2, argtypes);
	args[0] = Int64GetDatum(job->id);
	args[1] = CStringGetTextDatum(my_identity);
	if (SPI_execute_plan(fetch_plan, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "pg_jobs: fetching job %lld failed", (long long) job->id);
	if (SPI_processed == 0)
		return false;

	job_run_fields(job, SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	return true;
}

/*
 * handler_refusal
 *		Why the handler may not run as role run_as_id, or NULL if it may:
 *		it must still be a permanent function (job jobs.job) RETURNS jsonb,
 *		the role must have EXECUTE on it, and a privileged role (privilege.c)
 *		runs only a handler whose owner may make work run as that role.
 *		Sets *errtype to the condition name recorded with the failure.
 */
static char *
handler_refusal(Oid handler, Oid run_as_id, const char *run_as,
				const char **errtype)
{
	Oid			proowner;
	bool		exists;
	bool		temp;

	*errtype = "invalid_parameter_value";
	if (!PgJobsHandlerShape(handler, &exists, &temp, &proowner))
		return exists ?
			psprintf("the handler %s is not a permanent function (job jobs.job) RETURNS jsonb",
					 format_procedure(handler)) :
			psprintf("the handler function (oid %u) no longer exists", handler);

	*errtype = "insufficient_privilege";
	if (pg_proc_aclcheck(handler, run_as_id, ACL_EXECUTE) != ACLCHECK_OK)
		return psprintf("role \"%s\" has no EXECUTE privilege on the handler %s",
						run_as, format_procedure(handler));
	if (PgJobsRoleIsPrivileged(run_as_id) && !PgJobsMayRunAs(proowner, run_as_id))
		return psprintf("the handler %s would run as the privileged role \"%s\", but its owner \"%s\" may not make work run as that role",
						format_procedure(handler), run_as,
						GetUserNameFromId(proowner, true) ? GetUserNameFromId(proowner, true) : "?");
	*errtype = NULL;
	return NULL;
}

/*
 * record_interrupted
 *		The outcome of a job whose handler was interrupted for reason.
 */
static void
record_interrupted(ClaimedJob *job, InterruptReason reason)
{
	if (reason == INTR_TIMEOUT)
	{
		int64		ms = job->timeout_ms;
		char	   *message = psprintf("timed out after %s", ms % 1000 == 0 ?
									   psprintf("%lld s", (long long) (ms / 1000)) :
									   psprintf("%lld ms", (long long) ms));

		(void) finalize(job->id, job->attempts < job->max_attempts ? 'r' : 'f',
						(Datum) 0, true, "timeout", message, NULL);
	}
	else if (reason == INTR_SHUTDOWN)
		(void) finalize(job->id, 'q', (Datum) 0, true, "shutdown",
						"the server shut down while the job ran; requeued", NULL);
	else if (reason == INTR_CANCEL)
	{
		/* a forced cancel revoked it first; if not, say what stopped it */
		(void) finalize(job->id, 'f', (Datum) 0, true, "query_canceled",
						"the handler was interrupted by a cancel request", NULL);
	}
}

/*
 * end_handler
 *		What must not outlive a handler, whatever it did: the timer, the log
 *		capture, and session-level advisory locks it took (its settings were
 *		undone by PgJobsRestore or the subtransaction's rollback).
 */
static void
end_handler(void)
{
	disable_timeout(tick_timeout, false);
	running_job_id = 0;
	log_job_id = 0;
	PgJobsRunningTaskId = NULL;
	/* a tick that fired as the handler returned must not cancel us now */
	QueryCancelPending = false;
	LockReleaseSession(USER_LOCKMETHOD);
}

/*
 * flush_logs_safely
 *		Write the job's buffered log in a subtransaction: if that fails (a
 *		follower's notification, say), the job's outcome stands and one
 *		note says what was lost.
 */
static void
flush_logs_safely(int64 job_id)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	int			lost = log_buffered;
	char	   *volatile why = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		flush_logs(job_id);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *e;

		MemoryContextSwitchTo(cxt);
		e = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		why = e->message ? pstrdup(e->message) : "unknown error";
		log_buffer = NIL;
		log_buffered = 0;
		MemoryContextReset(log_cxt);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;

	if (why != NULL)
	{
		ereport(WARNING,
				(errmsg("pg_jobs: could not write the log of job %lld: %s",
						(long long) job_id, why)));
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(cxt);
		PG_TRY();
		{
			(void) PgJobsLogWrite(job_id, PGJOBS_LOG_WARNING, "pg_jobs",
								  psprintf("%d log entries of the handler could not be written: %.200s",
										   lost, why),
								  NULL, 0);
			ReleaseCurrentSubTransaction();
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(cxt);
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
		}
		PG_END_TRY();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
}

/*
 * run_one
 *		Run one claimed job's handler and record its outcome, inside the
 *		caller's transaction (transaction 2, shared by a batch of jobs).
 *		The handler runs in a subtransaction, as the job's owner, through
 *		PgJobsBecome (privilege.c): SECURITY_RESTRICTED_OPERATION, its own
 *		GUC nest level, every setting it changed undone when it returns.
 *
 *		optimistic: run the job as claimed, without reading it again, and
 *		leave a success in succ_* for flush_successes() to write with the
 *		others; that statement finds out whether every job was still ours.
 *		Otherwise (careful): read the job again, skip it if it is no longer
 *		ours, and write a success inside the handler's subtransaction, which
 *		is rolled back if a forced cancel revoked the job meanwhile.
 *		Failures are written at once either way.
 */
static void
run_one(ClaimedJob *job, bool optimistic_arg)
{
	volatile bool optimistic = optimistic_arg;
	Datum		jobdatum;
	Oid			handler;
	char	   *run_as;
	Oid			run_as_id = InvalidOid;
	int64		timeout_ms;
	int32		attempts;
	int32		max_attempts;
	MemoryContext outer_cxt;
	ResourceOwner outer_owner;
	volatile Datum result = (Datum) 0;
	volatile bool result_null = true;
	ErrorData  *volatile edata = NULL;
	volatile bool revoked_meanwhile = false;
	InterruptReason reason;
	char	   *refusal;
	const char *refusal_type;

	set_state(WORKER_RUNNING, job->id);
	if (optimistic)
	{
		bool		known;

		/*
		 * A forced cancel of a job waiting in our batch interrupts nobody
		 * (we are running another job): it must stop the job here, before
		 * its handler is called.  If more cancels came than we can tell
		 * apart, read the job.
		 */
		if (PgJobsCancelledSince(claim_cancels, job->id, &known))
			return;
		if (!known)
			optimistic = false;
	}
	if (!optimistic && !refetch_job(job))
		return;					/* cancelled or reconciled since we claimed it */
	jobdatum = job->row;
	handler = job->handler;
	run_as = job->run_as;
	timeout_ms = job->timeout_ms;
	attempts = job->attempts;
	max_attempts = job->max_attempts;

	if (run_as != NULL)
		run_as_id = get_role_oid(run_as, true);

	if (!OidIsValid(handler) || !OidIsValid(run_as_id))
	{
		const char *msg = !OidIsValid(handler) ?
		"the task type has no handler any more" :
		run_as == NULL ?
		"the job has no owner and its task type no run_as role, so there is no role to run its handler as" :
		psprintf("role \"%s\" that the handler should run as does not exist", run_as);

		(void) finalize(job->id, 'f', (Datum) 0, true, "invalid_role_specification", msg, NULL);
		return;
	}
	refusal = handler_refusal(handler, run_as_id, run_as, &refusal_type);
	if (refusal != NULL)
	{
		(void) finalize(job->id, 'f', (Datum) 0, true, refusal_type, refusal, NULL);
		return;
	}

	/* from here on the handler is called: an attempt is charged if we die */
	started_append(job->id);
	handler_started_at = GetCurrentTimestamp();
	PgJobsNoteHandlerStart(job->id, handler_started_at);

	outer_cxt = CurrentMemoryContext;
	outer_owner = CurrentResourceOwner;
	worker_log_min_messages = log_min_messages;
	interrupt_reason = INTR_NONE;
	shutdown_seen_at = 0;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(outer_cxt);

	PG_TRY();
	{
		PgJobsRunAs ra;
		LOCAL_FCINFO(fcinfo, 1);
		FmgrInfo	flinfo;
		TimestampTz now = GetCurrentTimestamp();

		PgJobsBecome(&ra, run_as_id, "pg_catalog, public");
		/* let every RAISE reach capture_log_hook (see there) */
		(void) set_config_option("log_min_messages", "debug5",
								 PGC_SUSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		log_job_id = job->id;
		PgJobsRunningTaskId = job->task_id;

		job_deadline = timeout_ms > 0 ? TimestampTzPlusMilliseconds(now, timeout_ms) : 0;
		running_job_id = job->id;
		enable_timeout_every(tick_timeout,
							 TimestampTzPlusMilliseconds(now, TICK_MS), TICK_MS);

		fmgr_info(handler, &flinfo);
		InitFunctionCallInfoData(*fcinfo, &flinfo, 1, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = jobdatum;
		fcinfo->args[0].isnull = false;
		result = FunctionCallInvoke(fcinfo);
		result_null = fcinfo->isnull;

		end_handler();
		PgJobsRestore(&ra);

		/* it caught the cancel and returned: the interrupt decides */
		if (interrupt_reason != INTR_NONE)
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("the handler returned after it was interrupted")));

		if (!result_null)
			result = datumCopy(result, false, -1);

		/*
		 * The outcome commits with the handler's work; if a forced cancel
		 * revoked the job meanwhile, the work is rolled back instead.
		 */
		if (optimistic)
		{
			ReleaseCurrentSubTransaction();
			succ_ids[nsucc] = job->id;
			succ_results[nsucc] = result;
			succ_nulls[nsucc] = result_null;
			nsucc++;
		}
		else if (finalize(job->id, 's', result, result_null, NULL, NULL, NULL))
			ReleaseCurrentSubTransaction();
		else
		{
			RollbackAndReleaseCurrentSubTransaction();
			revoked_meanwhile = true;
		}
		MemoryContextSwitchTo(outer_cxt);
		CurrentResourceOwner = outer_owner;
	}
	PG_CATCH();
	{
		end_handler();

		MemoryContextSwitchTo(outer_cxt);
		edata = CopyErrorData();
		FlushErrorState();

		/* undoes the user switch and every setting of the handler too */
		rolling_back_handler = true;
		RollbackAndReleaseCurrentSubTransaction();
		rolling_back_handler = false;
		MemoryContextSwitchTo(outer_cxt);
		CurrentResourceOwner = outer_owner;
		/* session-level advisory locks survive a rollback */
		LockReleaseSession(USER_LOCKMETHOD);
	}
	PG_END_TRY();

	reason = (InterruptReason) interrupt_reason;
	interrupt_reason = INTR_NONE;

	/* the handler's log, its final error included, goes before the outcome */
	if (edata != NULL && reason != INTR_CANCEL)
	{
		StringInfoData f;
		Jsonb	   *fields;

		initStringInfo(&f);
		appendStringInfoString(&f, "{\"error_type\": ");
		escape_json(&f, reason == INTR_TIMEOUT ? "timeout" :
					reason == INTR_SHUTDOWN ? "shutdown" : condition_name(edata->sqlerrcode));
		if (edata->context)
		{
			appendStringInfoString(&f, ", \"context\": ");
			escape_json(&f, edata->context);
		}
		appendStringInfoChar(&f, '}');
		fields = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(f.data)));
		buffer_log(PGJOBS_LOG_ERROR, "handler",
				   edata->message ? edata->message : "unknown error", fields);
	}
	if (reason != INTR_CANCEL && !revoked_meanwhile)
		flush_logs_safely(job->id);
	else
	{
		log_buffer = NIL;
		log_buffered = 0;
		MemoryContextReset(log_cxt);
	}

	if (edata == NULL)
		return;					/* recorded above, or revoked by the cancel */
	else if (reason != INTR_NONE)
		record_interrupted(job, reason);
	else
	{
		const char *type;
		char	   *message;
		StringInfoData tb;

		type = condition_name(edata->sqlerrcode);
		message = edata->message ? edata->message : "unknown error";

		initStringInfo(&tb);
		if (edata->detail)
			appendStringInfo(&tb, "DETAIL:  %s\n", edata->detail);
		if (edata->hint)
			appendStringInfo(&tb, "HINT:  %s\n", edata->hint);
		if (edata->context)
			appendStringInfo(&tb, "CONTEXT:  %s\n", edata->context);

		(void) finalize(job->id, attempts < max_attempts ? 'r' : 'f', (Datum) 0, true,
						type, message, tb.len > 0 ? tb.data : NULL);
	}
}

static int
cmp_success(const void *a, const void *b)
{
	int64		x = succ_ids[*(const int *) a];
	int64		y = succ_ids[*(const int *) b];

	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * flush_successes
 *		Write the successes the optimistic path left in succ_*, with one
 *		statement, under the report lock of each job (ascending ids, as
 *		dependencies.c expects).  The ids go in as a sorted array, looked up
 *		by id (no join whose order stale statistics could get wrong), and
 *		each job's result is found by binary search (width_bucket) in it.  Returns false if not every job was still
 *		started by this worker (a forced cancel or a plain UPDATE got there
 *		first) or if writing failed: the caller must then roll the whole
 *		transaction back, as the handlers' work of those jobs is in it.
 */
static bool
flush_successes(void)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[3] = {INT8ARRAYOID, JSONBARRAYOID, TEXTOID};
	Datum		args[3];
	int		   *order;
	Datum	   *ids;
	Datum	   *results;
	bool	   *nulls;
	int			dims[1];
	int			lbs[1] = {1};
	MemoryContext outer_cxt = CurrentMemoryContext;
	ResourceOwner outer_owner = CurrentResourceOwner;
	volatile bool ok = false;

	if (nsucc == 0)
		return true;

	order = palloc(sizeof(int) * nsucc);
	ids = palloc(sizeof(Datum) * nsucc);
	results = palloc(sizeof(Datum) * nsucc);
	nulls = palloc(sizeof(bool) * nsucc);
	for (int i = 0; i < nsucc; i++)
		order[i] = i;
	qsort(order, nsucc, sizeof(int), cmp_success);
	for (int i = 0; i < nsucc; i++)
	{
		ids[i] = Int64GetDatum(succ_ids[order[i]]);
		results[i] = succ_results[order[i]];
		nulls[i] = succ_nulls[order[i]];
	}
	dims[0] = nsucc;
	args[0] = PointerGetDatum(construct_md_array(ids, NULL, 1, dims, lbs,
												 INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[1] = PointerGetDatum(construct_md_array(results, nulls, 1, dims, lbs,
												 JSONBOID, -1, false, TYPALIGN_INT));
	args[2] = CStringGetTextDatum(my_identity);

	/* in a subtransaction, so that an error only sends us the careful way */
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(outer_cxt);
	PG_TRY();
	{
		int			ret;

		for (int i = 0; i < nsucc; i++)
			PgJobsLockJob(DatumGetInt64(ids[i]));
		ret = SPI_execute_plan(PgJobsPreparePlan(&plan,
												 "UPDATE jobs.job j SET status = 'success', "
												 "  result = $2[pg_catalog.width_bucket(j.id, $1)] "
												 "WHERE j.id OPERATOR(pg_catalog.=) ANY ($1) "
												 "  AND j.status OPERATOR(pg_catalog.=) 'started' "
												 "  AND j.worker OPERATOR(pg_catalog.=) $3",
												 3, argtypes),
							   args, NULL, false, 0);
		ok = ret == SPI_OK_UPDATE && SPI_processed == (uint64) nsucc;
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *e;

		MemoryContextSwitchTo(outer_cxt);
		e = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		ereport(LOG,
				(errmsg("pg_jobs: writing the outcomes of %d jobs failed; running them again one by one",
						nsucc),
				 errdetail("%s", e->message)));
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(outer_cxt);
	CurrentResourceOwner = outer_owner;
	nsucc = 0;
	return ok;
}

/*
 * run_batch
 *		Run the claimed jobs in order, as many per transaction as fit in
 *		BATCH_BUDGET_MS (at least one), so that a batch of short jobs costs
 *		one commit while a slow job does not hold back the outcomes of the
 *		others for long.  On shutdown the jobs not yet run are requeued.
 *		Returns the longest time one job took, in ms.
 *
 *		Each transaction runs its jobs optimistically (see run_one): no
 *		re-read per job, and one statement for all successes.  If that
 *		statement finds a job that is no longer ours, the transaction is
 *		rolled back, so none of those handlers' work took effect, and the
 *		same jobs are run again the careful way, one statement per job.
 */
static long
run_batch(ClaimedJob *jobs, int n)
{
	int			i = 0;
	long		longest = 0;

	while (i < n)
	{
		TimestampTz batch_start = GetCurrentTimestamp();
		int			first = i;

		begin_xact("pg_jobs worker: running jobs");
		/* what an exit now would roll back: every job from first on */
		xact_jobs = &jobs[first];
		xact_njobs = n - first;
		nsucc = 0;
		do
		{
			TimestampTz t0 = GetCurrentTimestamp();
			long		secs;
			int			usecs;

			run_one(&jobs[i], true);
			TimestampDifference(t0, GetCurrentTimestamp(), &secs, &usecs);
			longest = Max(longest, secs * 1000 + usecs / 1000);
			record_ms(jobs[i].task_type, secs * 1000.0 + usecs / 1000.0);
			i++;
		} while (i < n && !got_sigterm &&
				 !TimestampDifferenceExceeds(batch_start, GetCurrentTimestamp(),
											 BATCH_BUDGET_MS));
		if (flush_successes())
			end_xact(true);
		else
		{
			end_xact(false);
			begin_xact("pg_jobs worker: running jobs one by one");
			for (int k = first; k < i; k++)
				run_one(&jobs[k], false);
			end_xact(true);
		}

		if (got_sigterm && i < n)
		{
			begin_xact("pg_jobs worker: requeueing on shutdown");
			for (; i < n; i++)
				(void) finalize(jobs[i].id, 'q', (Datum) 0, true, "shutdown",
								"the worker stopped before running the job; requeued", NULL);
			end_xact(true);
		}
	}
	xact_jobs = NULL;
	xact_njobs = 0;
	return longest;
}

/*
 * worker_exit_record
 *		before_shmem_exit callback: when the process ends because a handler
 *		would not stop (tick_handler), the transaction of the running batch
 *		is rolled back by the exit; record the outcomes here, in a new
 *		transaction: the stopped job's as its interrupt says ("timed out",
 *		requeued on shutdown; a cancelled job is already revoked), and every
 *		other job of the batch requeued, its work undone with the rollback.
 *		Registered after the connection is made, so it runs before
 *		PostgreSQL's own exit cleanup, the way temp-table removal does.  An
 *		error here ends the exit as usual; the launcher then reconciles the
 *		jobs (WorkerLost).
 */
static void
worker_exit_record(int code, Datum arg)
{
	/* a started file with nothing in it says nothing: remove it */
	if (started_fd >= 0 && started_n == 0 && !escalated)
	{
		close(started_fd);
		started_fd = -1;
		(void) unlink(PgJobsStartedFile(my_identity));
	}
	if (!escalated || xact_jobs == NULL)
		return;
	disable_all_timeouts(false);
	running_job_id = 0;
	log_job_id = 0;
	PgJobsRunningTaskId = NULL;
	rolling_back_handler = true;
	AbortOutOfAnyTransaction();
	rolling_back_handler = false;

	begin_xact("pg_jobs worker: recording a stopped handler");
	for (int k = 0; k < xact_njobs; k++)
	{
		ClaimedJob *job = &xact_jobs[k];

		if (job->id == escalated_job_id)
		{
			PgJobsNoteHandlerStart(job->id, handler_started_at);
			(void) PgJobsLogWrite(job->id, PGJOBS_LOG_ERROR, "pg_jobs",
								  psprintf("the handler did not stop within pg_jobs.interrupt_grace (%d ms) of its interrupt; its worker was ended",
										   pg_jobs_interrupt_grace),
								  NULL, 0);
			record_interrupted(job, (InterruptReason) escalated_reason);
		}
		else
			(void) finalize(job->id, 'q', (Datum) 0, true, "worker_stopped",
							"the worker ended to stop another job's handler; requeued", NULL);
	}
	end_xact(true);
	ereport(LOG,
			(errmsg("pg_jobs: worker %d ended to stop the handler of job %lld, which did not stop within %d ms of its interrupt",
					my_slotno, (long long) escalated_job_id, pg_jobs_interrupt_grace)));
}

void
PgJobsWorkerMain(Datum main_arg)
{
	ClaimedJob *jobs;
	int			batch = 1;

	my_slotno = DatumGetInt32(main_arg);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, worker_sigterm);
	BackgroundWorkerUnblockSignals();

	PgJobsWorkerConnect();

	if (my_slotno < 0 || my_slotno >= PGJOBS_MAX_WORKERS || !take_slot(my_slotno))
	{
		ereport(LOG,
				(errmsg("pg_jobs: worker slot %d is taken; exiting", my_slotno)));
		proc_exit(0);
	}
	before_shmem_exit(release_slot, (Datum) 0);
	before_shmem_exit(worker_exit_record, (Datum) 0);
	tick_timeout = RegisterTimeout(USER_TIMEOUT, tick_handler);
	log_cxt = AllocSetContextCreate(TopMemoryContext, "pg_jobs handler log",
									ALLOCSET_DEFAULT_SIZES);
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = capture_log_hook;
	pgstat_report_appname(psprintf("pg_jobs worker %d", my_slotno));

	jobs = MemoryContextAlloc(TopMemoryContext, sizeof(ClaimedJob) * PGJOBS_MAX_BATCH);
	batch_cxt = AllocSetContextCreate(TopMemoryContext, "pg_jobs claimed jobs",
									  ALLOCSET_DEFAULT_SIZES);
	succ_ids = MemoryContextAlloc(TopMemoryContext, sizeof(int64) * PGJOBS_MAX_BATCH);
	succ_results = MemoryContextAlloc(TopMemoryContext, sizeof(Datum) * PGJOBS_MAX_BATCH);
	succ_nulls = MemoryContextAlloc(TopMemoryContext, sizeof(bool) * PGJOBS_MAX_BATCH);
	while (!got_sigterm)
	{
		long		sleep_ms = pg_jobs_poll_interval;
		int			n;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (!PgJobsWorkerWanted(my_slotno))
			break;				/* the launcher gave the slot to another database */

		/* reset before looking, so that a wakeup from now on is not lost */
		ResetLatch(MyLatch);
		set_state(WORKER_CLAIMING, 0);
		n = claim_jobs(jobs, Min(batch, pg_jobs_batch_size), &sleep_ms);
		if (n > 0)
		{
			long		longest;

			due_backoff_ms = 0;
			longest = run_batch(jobs, n);
			MemoryContextReset(batch_cxt);
			/*
			 * Claim more at a time while jobs are short and the queue full;
			 * back to one at a time as soon as a job is slow, so that slow
			 * jobs are spread over the workers.
			 */
			if (longest > BATCH_BUDGET_MS)
				batch = 1;
			else if (n == batch)
				batch = Min(batch * 2, PGJOBS_MAX_BATCH);
			set_state(WORKER_IDLE, 0);
			continue;
		}

		batch = 1;
		set_state(WORKER_IDLE, 0);
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms,
						 PG_WAIT_EXTENSION);
	}

	set_state(WORKER_STOPPING, 0);
	proc_exit(0);
}
