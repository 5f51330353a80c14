/*-------------------------------------------------------------------------
 *
 * lifecycle.c
 *	  The triggers that enforce the job lifecycle for every client.
 *
 * jobs.job is partitioned by status: pending and started rows live in
 * jobs.job_hot, finished rows in jobs.job_done (itself partitioned by day of
 * completion).  Both triggers are defined on jobs.job and so are cloned to
 * every partition.
 *
 * BEFORE INSERT (a new job):
 *	- must be pending; the task type must be registered (22023) and tracked
 *	  (an untracked type is ignored: the row is silently skipped);
 *	- the caller must be allowed to act for the owner (42501);
 *	- fills queue, priority and max_attempts from the task type, generates a
 *	  task id when none is given, stamps date_created and run_at, and resets
 *	  every column the lifecycle owns;
 *	- enforces the type's max_pending (53000) under a per-type lock, so that
 *	  concurrent enqueues can never exceed it;
 *	- rejects a caller-chosen task id that a finished job already has (23505;
 *	  in-flight duplicates hit the unique index of job_hot);
 *	- checks parent_id and depends_on when given (dependencies.c); a job
 *	  with an unfinished dependency waits with run_at far in the future.
 *
 * BEFORE UPDATE (a report):
 *	- allowed transitions: pending->started, pending->revoked,
 *	  pending->failure, started->success, started->failure,
 *	  started->revoked, started->pending; anything else raises PT409 naming
 *	  both states;
 *	- failure->success is skipped silently: the failure path owns failures;
 *	- finished rows are immutable except for "acknowledged";
 *	- id, task_id, task_type, date_created, depends_on and parent_id never
 *	  change;
 *	- a caller who may not act for the owner of an in-flight job (it got
 *	  past row-level security through the job_acknowledge policy: a holder
 *	  of the change permission acknowledging a visible job) may change
 *	  "acknowledged" only (42501);
 *	- run_at changes, for a caller who is not an admin, only when a started
 *	  job goes back to pending (jobs.retry()): a waiting job's far-future
 *	  run_at is what holds it back for its dependencies (42501);
 *	- stamps date_started and date_done, counts attempts, and records a
 *	  success whose result has "duplicate_of" as a failure.
 *
 * Restore: rows that pg_dump's scripts load (COPY into job_hot,
 * job_done_default and the day partitions, see "Backup and restore" in the
 * README) are finished or started jobs with their own ids, stamps and
 * attempts, whose task types may not be loaded yet.  The insert trigger lets
 * a row through unchanged only when it is complete (it has its
 * date_created, which no enqueue sets) and the session loads data the way
 * those scripts do and could bypass the lifecycle anyway: row_security is off
 * (pg_dump and pg_restore set it) and both the session user and the current
 * user are superusers, outside any security-restricted operation (a handler
 * run by a worker, a maintenance command).  Every other client, including
 * a superuser with row_security on and an admin with BYPASSRLS, goes through
 * the checks below.
 *
 * A transition to a finished state moves the row from job_hot to job_done,
 * which PostgreSQL carries out as a delete plus an insert that fires the
 * BEFORE INSERT trigger of the destination.  The update trigger remembers
 * the job it is moving (backend-local, for the current command only) so
 * that the insert trigger lets exactly that row through unchanged.
 *
 * Lookups in the registry run as the owner of the table, so that they do
 * not depend on the caller's privileges and see every pending row when
 * counting for max_pending.
 *
 * Registry cache: what the insert trigger needs from jobs.task_type and
 * jobs.trigger_source is kept per backend across transactions, so that an
 * ordinary enqueue runs no query of its own.  A trigger on both tables
 * (jobs._registry_changed()) sends a relcache invalidation for the table it
 * changed; it reaches this backend at the latest when the next statement
 * begins (the insert trigger accepts pending invalidations once per
 * command), and our callback then empties the cache.  Changes made by the
 * current transaction are seen at once (invalidations are applied locally
 * at the next command), and a rollback discards them the same way.
 *
 * IDENTIFICATION
 *	  src/lifecycle.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_enum.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "pg_jobs.h"
#include "privilege.h"

PG_FUNCTION_INFO_V1(pg_jobs_job_before_insert);
PG_FUNCTION_INFO_V1(pg_jobs_job_before_update);
PG_FUNCTION_INFO_V1(pg_jobs_registry_changed);

static const char *const status_names[JOB_NSTATUS] = {
	"pending", "started", "success", "failure", "revoked"
};

/* allowed[from][to]; same-state updates of in-flight rows are allowed */
static const bool allowed[JOB_NSTATUS][JOB_NSTATUS] = {
	/* to: pending started success failure revoked */
	/* pending */ {true, true, false, true, true},
	/* started */ {true, true, true, true, true},
	/* success */ {false, false, false, false, false},
	/* failure */ {false, false, false, false, false},
	/* revoked */ {false, false, false, false, false},
};

/* Column numbers of jobs.job in one relation (a partition) */
typedef struct JobAttrs
{
	Oid			relid;
	int			id;
	int			task_id;
	int			task_type;
	int			queue;
	int			status;
	int			trigger_source;
	int			owner;
	int			input;
	int			result;
	int			priority;
	int			run_at;
	int			attempts;
	int			max_attempts;
	int			date_created;
	int			date_started;
	int			date_done;
	int			acknowledged;
	int			dedup_key;
	int			depends_on;
	int			parent_id;
	int			worker;
	int			lease_until;
} JobAttrs;

#define ATTR_CACHE_SIZE 8
static JobAttrs attr_cache[ATTR_CACHE_SIZE];
static int	attr_cache_next = 0;

/* enum OIDs of jobs.status, looked up once per backend */
static Oid	status_typid = InvalidOid;
static Oid	status_oids[JOB_NSTATUS];

/* the row the update trigger is moving into job_done */
static int64 moving_job_id = -1;
static LocalTransactionId moving_lxid = InvalidLocalTransactionId;
static CommandId moving_cid = InvalidCommandId;

/* the job whose next started -> pending move gives its attempt back */
static int64 refund_job_id = -1;
static LocalTransactionId refund_lxid = InvalidLocalTransactionId;

/*
 * PgJobsRefundAttempt
 *		The next started -> pending move of job_id in this transaction is a
 *		requeue of a job whose handler did not fail (a shutdown, or a worker
 *		that stopped before or while running it): it gives back the attempt
 *		the claim charged.  Only the engine's C code calls this, so no
 *		client can have its own attempts given back.
 */
void
PgJobsRefundAttempt(int64 job_id)
{
	refund_job_id = job_id;
	refund_lxid = MyProc->lxid;
}

/*
 * When this transaction's handlers started, by job id (see
 * PgJobsNoteHandlerStart); emptied when a new transaction first uses it.
 */
typedef struct StartedAt
{
	int64		job_id;			/* hash key */
	TimestampTz at;
} StartedAt;

static HTAB *started_at = NULL;
static LocalTransactionId started_at_lxid = InvalidLocalTransactionId;

/*
 * PgJobsNoteHandlerStart
 *		A worker is about to call the handler of reserved job job_id: the
 *		transition that records its outcome in this transaction stamps
 *		date_started with `at`.  Only the engine's C code calls this.
 */
void
PgJobsNoteHandlerStart(int64 job_id, TimestampTz at)
{
	StartedAt  *e;

	if (started_at == NULL || started_at_lxid != MyProc->lxid)
	{
		HASHCTL		ctl;

		if (started_at != NULL)
			hash_destroy(started_at);
		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(StartedAt);
		ctl.hcxt = TopMemoryContext;
		started_at = hash_create("pg_jobs handler starts", 64, &ctl,
								 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		started_at_lxid = MyProc->lxid;
	}
	e = hash_search(started_at, &job_id, HASH_ENTER, NULL);
	e->at = at;
}

/* cached plans */
static SPIPlanPtr type_plan = NULL;
static SPIPlanPtr source_plan = NULL;
static SPIPlanPtr pending_plan = NULL;
static SPIPlanPtr task_id_plan = NULL;
static SPIPlanPtr dedup_plan = NULL;

const char *
JobStatusName(JobStatus s)
{
	Assert(s >= 0 && s < JOB_NSTATUS);
	return status_names[s];
}

static int
attnum_of(TupleDesc tupdesc, const char *name)
{
	int			attnum = SPI_fnumber(tupdesc, name);

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pg_jobs triggers may only be used on jobs.job"),
				 errdetail("The table has no column \"%s\".", name)));
	return attnum;
}

/*
 * job_attrs
 *		Column numbers of the jobs.job columns in rel (cached per relation).
 */
static const JobAttrs *
job_attrs(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	TupleDesc	td = RelationGetDescr(rel);
	JobAttrs   *a;

	for (int i = 0; i < ATTR_CACHE_SIZE; i++)
		if (attr_cache[i].relid == relid)
			return &attr_cache[i];

	a = &attr_cache[attr_cache_next];
	attr_cache_next = (attr_cache_next + 1) % ATTR_CACHE_SIZE;
	a->relid = InvalidOid;		/* in case of error below */
	a->id = attnum_of(td, "id");
	a->task_id = attnum_of(td, "task_id");
	a->task_type = attnum_of(td, "task_type");
	a->queue = attnum_of(td, "queue");
	a->status = attnum_of(td, "status");
	a->trigger_source = attnum_of(td, "trigger_source");
	a->owner = attnum_of(td, "owner");
	a->input = attnum_of(td, "input");
	a->result = attnum_of(td, "result");
	a->priority = attnum_of(td, "priority");
	a->run_at = attnum_of(td, "run_at");
	a->attempts = attnum_of(td, "attempts");
	a->max_attempts = attnum_of(td, "max_attempts");
	a->date_created = attnum_of(td, "date_created");
	a->date_started = attnum_of(td, "date_started");
	a->date_done = attnum_of(td, "date_done");
	a->acknowledged = attnum_of(td, "acknowledged");
	a->dedup_key = attnum_of(td, "dedup_key");
	a->depends_on = attnum_of(td, "depends_on");
	a->parent_id = attnum_of(td, "parent_id");
	a->worker = attnum_of(td, "worker");
	a->lease_until = attnum_of(td, "lease_until");
	a->relid = relid;
	return a;
}

/*
 * status_of
 *		Map a jobs.status datum (an enum OID) to JobStatus.
 */
static JobStatus
status_of(Oid typid, Datum d)
{
	Oid			v = DatumGetObjectId(d);

	if (status_typid != typid)
	{
		for (int i = 0; i < JOB_NSTATUS; i++)
		{
			status_oids[i] = GetSysCacheOid2(ENUMTYPOIDNAME, Anum_pg_enum_oid,
											 ObjectIdGetDatum(typid),
											 CStringGetDatum(status_names[i]));
			if (!OidIsValid(status_oids[i]))
				elog(ERROR, "pg_jobs: status \"%s\" missing from jobs.status",
					 status_names[i]);
		}
		status_typid = typid;
	}
	for (int i = 0; i < JOB_NSTATUS; i++)
		if (status_oids[i] == v)
			return (JobStatus) i;
	elog(ERROR, "pg_jobs: unknown jobs.status value %u", v);
	return JOB_PENDING;			/* keep compiler quiet */
}

static void
check_trigger(FunctionCallInfo fcinfo, const char *name, bool insert)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s must be called as a trigger", name)));
	if (!TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		(insert ? !TRIGGER_FIRED_BY_INSERT(td->tg_event) :
		 !TRIGGER_FIRED_BY_UPDATE(td->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s must be fired BEFORE %s FOR EACH ROW", name,
						insert ? "INSERT" : "UPDATE")));
}

static char *
text_attr(HeapTuple tup, TupleDesc td, int attnum)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, attnum, td, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/*
 * Random bytes for task ids, drawn from pg_strong_random() a block at a
 * time: one call per id cost more than the rest of a batch insert.  The
 * block belongs to the process that drew it (a forked child draws anew).
 */
#define TASK_ID_RANDOM_BYTES	10
#define TASK_ID_BLOCK			(64 * TASK_ID_RANDOM_BYTES)
static unsigned char task_id_random[TASK_ID_BLOCK];
static int	task_id_random_used = TASK_ID_BLOCK;
static int	task_id_random_pid = 0;

/*
 * generate_task_id
 *		A time-ordered (version 7) UUID in text form: 48 bits of Unix time in
 *		milliseconds, then 74 random bits.
 *
 * Ids made close in time sort together, so the task id index of job_hot
 * grows at its right edge instead of at a random leaf per job.
 */
static Datum
generate_task_id(TimestampTz now)
{
	unsigned char u[16];
	const unsigned char *r;
	char		buf[37];
	static const char hex[] = "0123456789abcdef";
	int			p = 0;
	uint64		unix_ms;

	if (task_id_random_used + TASK_ID_RANDOM_BYTES > TASK_ID_BLOCK ||
		task_id_random_pid != MyProcPid)
	{
		if (!pg_strong_random(task_id_random, sizeof(task_id_random)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate a random task id")));
		task_id_random_used = 0;
		task_id_random_pid = MyProcPid;
	}
	r = task_id_random + task_id_random_used;
	task_id_random_used += TASK_ID_RANDOM_BYTES;

	unix_ms = (uint64) (now / 1000 +
						(POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) *
						(int64) SECS_PER_DAY * 1000);
	for (int i = 0; i < 6; i++)
		u[i] = (unsigned char) (unix_ms >> (8 * (5 - i)));
	memcpy(u + 6, r, TASK_ID_RANDOM_BYTES);
	u[6] = (u[6] & 0x0f) | 0x70;
	u[8] = (u[8] & 0x3f) | 0x80;
	for (int i = 0; i < 16; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			buf[p++] = '-';
		buf[p++] = hex[u[i] >> 4];
		buf[p++] = hex[u[i] & 0x0f];
	}
	buf[p] = '\0';
	return CStringGetTextDatum(buf);
}

/* what the insert trigger needs to know about a task type */
typedef struct TaskTypeInfo
{
	bool		tracked;
	Datum		queue;			/* text, in the caller's memory context */
	int16		priority;
	int32		max_attempts;
	bool		has_max_pending;
	int32		max_pending;
	Oid			handler;		/* InvalidOid: run elsewhere */
	bool		has_run_as;
	NameData	run_as;			/* role for unowned jobs */
} TaskTypeInfo;

/* longest name kept in the registry cache; longer ones are looked up */
#define REGISTRY_KEYSIZE	256

typedef struct TaskTypeEntry
{
	char		name[REGISTRY_KEYSIZE]; /* hash key */
	bool		tracked;
	text	   *queue;			/* in RegistryContext */
	int16		priority;
	int32		max_attempts;
	bool		has_max_pending;
	int32		max_pending;
	Oid			handler;		/* InvalidOid: run elsewhere */
	bool		has_run_as;
	NameData	run_as;			/* role for unowned jobs */
} TaskTypeEntry;

typedef struct SourceEntry
{
	char		name[REGISTRY_KEYSIZE]; /* hash key */
} SourceEntry;

static MemoryContext RegistryContext = NULL;
static HTAB *type_cache = NULL;
static HTAB *source_cache = NULL;
static bool registry_valid = false;
static Oid	task_type_relid = InvalidOid;
static Oid	source_relid = InvalidOid;
static bool registry_callback_set = false;

/* the command that last accepted invalidations */
static LocalTransactionId inval_lxid = InvalidLocalTransactionId;
static CommandId inval_cid = InvalidCommandId;

/*
 * registry_invalidate
 *		Relcache callback: forget the cache when jobs.task_type or
 *		jobs.trigger_source (or every relation) is invalidated.
 *
 * May run whenever invalidations are accepted, so it only clears a flag;
 * the cache is emptied by registry_prepare() before its next use.
 */
static void
registry_invalidate(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == task_type_relid ||
		relid == source_relid)
		registry_valid = false;
}

/*
 * registry_prepare
 *		Make the registry cache usable for the current command.
 *
 * Accepts pending invalidations once per command, so that a registry change
 * committed by another session is seen by the next statement, as a query of
 * the registry would see it.
 */
static void
registry_prepare(void)
{
	LocalTransactionId lxid = MyProc->lxid;
	CommandId	cid = GetCurrentCommandId(false);

	if (!registry_callback_set)
	{
		CacheRegisterRelcacheCallback(registry_invalidate, (Datum) 0);
		registry_callback_set = true;
	}
	if (inval_lxid != lxid || inval_cid != cid)
	{
		AcceptInvalidationMessages();
		inval_lxid = lxid;
		inval_cid = cid;
	}
	if (!registry_valid || type_cache == NULL)
	{
		HASHCTL		ctl;
		Oid			nsp = get_namespace_oid("jobs", false);

		/* the tables whose invalidation empties the cache */
		task_type_relid = get_relname_relid("task_type", nsp);
		source_relid = get_relname_relid("trigger_source", nsp);
		if (!OidIsValid(task_type_relid) || !OidIsValid(source_relid))
			elog(ERROR, "pg_jobs: registry tables of schema jobs not found");

		if (RegistryContext == NULL)
			RegistryContext = AllocSetContextCreate(CacheMemoryContext,
													"pg_jobs registry cache",
													ALLOCSET_SMALL_SIZES);
		else
			MemoryContextReset(RegistryContext);
		ctl.keysize = REGISTRY_KEYSIZE;
		ctl.entrysize = sizeof(TaskTypeEntry);
		ctl.hcxt = RegistryContext;
		type_cache = hash_create("pg_jobs task types", 16, &ctl,
								 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
		ctl.entrysize = sizeof(SourceEntry);
		source_cache = hash_create("pg_jobs trigger sources", 16, &ctl,
								   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
		registry_valid = true;
	}
}

/*
 * registry_connect
 *		Connect to SPI as the owner of the jobs table, once per row.
 */
static void
registry_connect(bool *connected, Oid owner, PgJobsRunAs *ra)
{
	if (*connected)
		return;
	PgJobsBecome(ra, owner, NULL);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_jobs: SPI_connect failed");
	*connected = true;
}

/*
 * lookup_task_type
 *		Find a task type in the cache, or in jobs.task_type (as the table
 *		owner, connecting to SPI through registry_connect()).
 *
 * The queue is returned in the caller's memory context.  Returns false for
 * an unknown type.
 */
static bool
lookup_task_type(const char *task_type, TaskTypeInfo *info, bool *connected,
				 Oid owner, PgJobsRunAs *ra)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	bool		isnull;
	Datum		d;
	int			ret;
	HeapTuple	tup;
	TupleDesc	td;
	TaskTypeEntry entry;
	bool		cacheable = strlen(task_type) < REGISTRY_KEYSIZE;

	if (cacheable)
	{
		TaskTypeEntry *e = hash_search(type_cache, task_type, HASH_FIND, NULL);

		if (e != NULL)
		{
			info->tracked = e->tracked;
			info->queue = PointerGetDatum(e->queue);
			info->priority = e->priority;
			info->max_attempts = e->max_attempts;
			info->has_max_pending = e->has_max_pending;
			info->max_pending = e->max_pending;
			info->handler = e->handler;
			info->has_run_as = e->has_run_as;
			info->run_as = e->run_as;
			return true;
		}
	}

	registry_connect(connected, owner, ra);
	PgJobsPreparePlan(&type_plan,
					  "SELECT tracked, queue, priority, max_attempts, max_pending, "
					  "       handler::pg_catalog.oid, run_as "
					  "FROM jobs.task_type WHERE name OPERATOR(pg_catalog.=) $1",
					  1, argtypes);
	args[0] = CStringGetTextDatum(task_type);
	ret = SPI_execute_plan(type_plan, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pg_jobs: task type lookup failed: %s",
			 SPI_result_code_string(ret));
	if (SPI_processed == 0)
		return false;

	tup = SPI_tuptable->vals[0];
	td = SPI_tuptable->tupdesc;
	entry.tracked = DatumGetBool(heap_getattr(tup, 1, td, &isnull));
	entry.queue = (text *) DatumGetPointer(heap_getattr(tup, 2, td, &isnull));
	entry.priority = DatumGetInt16(heap_getattr(tup, 3, td, &isnull));
	entry.max_attempts = DatumGetInt32(heap_getattr(tup, 4, td, &isnull));
	entry.max_pending = DatumGetInt32(heap_getattr(tup, 5, td, &isnull));
	entry.has_max_pending = !isnull;
	d = heap_getattr(tup, 6, td, &isnull);
	entry.handler = isnull ? InvalidOid : DatumGetObjectId(d);
	d = heap_getattr(tup, 7, td, &isnull);
	entry.has_run_as = !isnull;
	memset(&entry.run_as, 0, sizeof(NameData));
	if (!isnull)
		namestrcpy(&entry.run_as, NameStr(*DatumGetName(d)));

	info->tracked = entry.tracked;
	/* SPI's memory goes away with SPI_finish(): copy to the caller's */
	info->queue = SPI_datumTransfer(PointerGetDatum(entry.queue), false, -1);
	info->priority = entry.priority;
	info->max_attempts = entry.max_attempts;
	info->has_max_pending = entry.has_max_pending;
	info->max_pending = entry.max_pending;
	info->handler = entry.handler;
	info->has_run_as = entry.has_run_as;
	info->run_as = entry.run_as;

	/*
	 * Cache it, unless an invalidation arrived while we looked it up (the
	 * row may be older than the change it announces).
	 */
	if (cacheable && registry_valid)
	{
		TaskTypeEntry *e = hash_search(type_cache, task_type, HASH_ENTER, NULL);

		e->tracked = entry.tracked;
		e->queue = (text *) MemoryContextAlloc(RegistryContext,
											   VARSIZE_ANY(entry.queue));
		memcpy(e->queue, entry.queue, VARSIZE_ANY(entry.queue));
		e->priority = entry.priority;
		e->max_attempts = entry.max_attempts;
		e->has_max_pending = entry.has_max_pending;
		e->max_pending = entry.max_pending;
		e->handler = entry.handler;
		e->has_run_as = entry.has_run_as;
		e->run_as = entry.run_as;
	}
	return true;
}

static bool
trigger_source_exists(const char *source, bool *connected, Oid owner,
					  PgJobsRunAs *ra)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	int			ret;
	bool		cacheable = strlen(source) < REGISTRY_KEYSIZE;

	if (cacheable && hash_search(source_cache, source, HASH_FIND, NULL) != NULL)
		return true;

	registry_connect(connected, owner, ra);
	PgJobsPreparePlan(&source_plan,
					  "SELECT 1 FROM jobs.trigger_source "
					  "WHERE name OPERATOR(pg_catalog.=) $1",
					  1, argtypes);
	args[0] = CStringGetTextDatum(source);
	ret = SPI_execute_plan(source_plan, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pg_jobs: trigger source lookup failed: %s",
			 SPI_result_code_string(ret));
	if (SPI_processed == 0)
		return false;
	if (cacheable && registry_valid)
		(void) hash_search(source_cache, source, HASH_ENTER, NULL);
	return true;
}

/*
 * check_task_type_row
 *		A task type as written (any client: register_task_type() or a plain
 *		INSERT/UPDATE by an admin) may not point the workers at something
 *		they must not run: its handler must be a permanent function (job
 *		jobs.job) RETURNS jsonb -- a temporary one belongs to one session,
 *		yet a worker could call it by oid -- and its run_as role one the
 *		writer may make work run as (PgJobsMayRunAs).
 */
static void
check_task_type_row(TriggerData *trigdata)
{
	TupleDesc	td = RelationGetDescr(trigdata->tg_relation);
	HeapTuple	tup = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;
	int			handler_att = SPI_fnumber(td, "handler");
	int			run_as_att = SPI_fnumber(td, "run_as");
	int			name_att = SPI_fnumber(td, "name");
	bool		isnull;
	Datum		d;
	char	   *name;

	if (handler_att <= 0 || run_as_att <= 0 || name_att <= 0)
		return;					/* jobs.trigger_source */
	name = text_attr(tup, td, name_att);

	d = heap_getattr(tup, run_as_att, td, &isnull);
	if (!isnull)
		PgJobsCheckRunAs(GetUserId(), NameStr(*DatumGetName(d)),
						 psprintf("run the unowned jobs of task type \"%s\"", name));

	d = heap_getattr(tup, handler_att, td, &isnull);
	if (!isnull)
	{
		bool		exists;
		bool		temp;
		Oid			owner;

		if (!PgJobsHandlerShape(DatumGetObjectId(d), &exists, &temp, &owner))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("handler of task type \"%s\" must be a function (job jobs.job) RETURNS jsonb%s",
							name, temp ? " outside a temporary schema" : ""),
					 temp ? errdetail("A temporary function belongs to one session; the workers must not call it.") : 0,
					 errhint("Declare it as CREATE FUNCTION f(job jobs.job) RETURNS jsonb in a permanent schema.")));
	}
}

/*
 * pg_jobs_registry_changed
 *		AFTER trigger (each row, and each TRUNCATE) of jobs.task_type and
 *		jobs.trigger_source: tell every backend to drop its registry cache.
 *
 * The invalidation goes out at commit; repeated ones for one table in one
 * transaction are merged, so a trigger per row costs next to nothing.
 */
Datum
pg_jobs_registry_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pg_jobs_registry_changed must be called as a trigger")));
	if (TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) &&
		!TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		check_task_type_row(trigdata);
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}

static Name
owner_name(const char *owner)
{
	Name		n = (Name) palloc0(NAMEDATALEN);

	namestrcpy(n, owner);
	return n;
}

/*
 * How many jobs of a type are pending for one owner (NULL: unowned jobs),
 * counting at most limit + 1.  Reads the type's pending jobs in the
 * (task_type, priority, id) index and filters by owner: with the limit in
 * force a type has at most limit pending jobs per owner.
 */
static int64
count_pending(const char *task_type, const char *owner, int32 limit)
{
	Oid			argtypes[3] = {TEXTOID, INT4OID, NAMEOID};
	Datum		args[3];
	char		nulls[3] = {' ', ' ', ' '};
	int			ret;

	PgJobsPreparePlan(&pending_plan,
				 "SELECT 1 FROM jobs.job_hot "
				 "WHERE task_type OPERATOR(pg_catalog.=) $1 "
				 "AND status OPERATOR(pg_catalog.=) 'pending' "
				 "AND CASE WHEN $3 IS NULL THEN owner IS NULL "
				 "         ELSE owner OPERATOR(pg_catalog.=) $3 END "
				 "LIMIT $2",
				 3, argtypes);
	args[0] = CStringGetTextDatum(task_type);
	args[1] = Int32GetDatum(limit + 1);
	if (owner)
		args[2] = NameGetDatum(owner_name(owner));
	else
		nulls[2] = 'n';
	/* not read-only: take a fresh snapshot after the type lock */
	ret = SPI_execute_plan(pending_plan, args, nulls, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pg_jobs: pending count failed: %s",
			 SPI_result_code_string(ret));
	return (int64) SPI_processed;
}

/*
 * The status of the job that has task_id, or NULL.  For a clear message
 * naming the task id: the unique index on job_hot is what keeps in-flight
 * task ids unique under concurrency.
 */
static char *
task_id_status(Datum task_id)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	int			ret;

	PgJobsPreparePlan(&task_id_plan,
				 "SELECT status::pg_catalog.text FROM jobs.job "
				 "WHERE task_id OPERATOR(pg_catalog.=) $1 LIMIT 1",
				 1, argtypes);
	args[0] = task_id;
	ret = SPI_execute_plan(task_id_plan, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pg_jobs: task id lookup failed: %s",
			 SPI_result_code_string(ret));
	/* allocated in SPI's context: valid until SPI_finish() */
	if (SPI_processed == 0)
		return NULL;
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/*
 * The task id of the in-flight job of this type with this dedup key, or NULL.
 * Only for a clear message: the unique index on job_hot is what makes the
 * rule hold under concurrency.
 */
static char *
inflight_duplicate(const char *task_type, Datum dedup_key, Oid caller,
				   bool *visible)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		args[2];
	int			ret;
	char	   *found = NULL;

	PgJobsPreparePlan(&dedup_plan,
				 "SELECT task_id, owner FROM jobs.job_hot "
				 "WHERE task_type OPERATOR(pg_catalog.=) $1 "
				 "AND dedup_key OPERATOR(pg_catalog.=) $2",
				 2, argtypes);
	args[0] = CStringGetTextDatum(task_type);
	args[1] = dedup_key;
	ret = SPI_execute_plan(dedup_plan, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pg_jobs: dedup lookup failed: %s",
			 SPI_result_code_string(ret));
	/* allocated in SPI's context: valid until SPI_finish() */
	*visible = false;
	if (SPI_processed > 0)
	{
		char	   *owner = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);

		found = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		/* the caller's own rights, not the table owner's we run as */
		*visible = owner == NULL || PgJobsMayActFor(caller, owner);
	}
	return found;
}

/*
 * restoring_rows
 *		True when the current command loads rows as a restore does: see
 *		"Restore" in the file header.  row_security is read first, so an
 *		ordinary insert pays one comparison.
 */
static bool
restoring_rows(void)
{
	return !row_security &&
		!InSecurityRestrictedOperation() &&
		superuser() &&
		superuser_arg(GetSessionUserId());
}

/*
 * pg_jobs_job_before_insert
 *		BEFORE INSERT FOR EACH ROW trigger of jobs.job; see the file header.
 */
Datum
pg_jobs_job_before_insert(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	tupdesc;
	HeapTuple	tup;
	const JobAttrs *a;
	bool		isnull;
	Datum		d;
	JobStatus	status;
	char	   *task_type;
	char	   *source;
	char	   *owner;
	bool		own_task_id;
	TaskTypeInfo info;
	Oid			caller = GetUserId();
	Oid			relowner;
	bool		connected = false;
	PgJobsRunAs ra = {0};
	TimestampTz now;
	TimestampTz run_at;
	bool		run_at_given;
	int64		job_id;
	int			cols[16];
	Datum		vals[16];
	bool		nulls[16];
	int			n = 0;

	check_trigger(fcinfo, "pg_jobs_job_before_insert", true);
	rel = trigdata->tg_relation;
	tupdesc = RelationGetDescr(rel);
	tup = trigdata->tg_trigtuple;
	a = job_attrs(rel);
	relowner = rel->rd_rel->relowner;

	/* A row moving from job_hot to job_done: let it through as it is. */
	d = heap_getattr(tup, a->id, tupdesc, &isnull);
	if (!isnull && DatumGetInt64(d) == moving_job_id &&
		moving_lxid == MyProc->lxid &&
		moving_cid == GetCurrentCommandId(false))
	{
		moving_job_id = -1;
		return PointerGetDatum(tup);
	}

	/* A row of a restore, complete with its stamps: as it was dumped. */
	if (restoring_rows() && !heap_attisnull(tup, a->date_created, tupdesc))
		return PointerGetDatum(tup);

	d = heap_getattr(tup, a->status, tupdesc, &isnull);
	status = isnull ? JOB_PENDING : status_of(TupleDescAttr(tupdesc, a->status - 1)->atttypid, d);
	if (status != JOB_PENDING)
		ereport(ERROR,
				(errcode(ERRCODE_PGJOBS_CONFLICT),
				 errmsg("a new job must be pending, not %s", JobStatusName(status)),
				 errhint("Create the job pending, then report its progress with jobs.start(), jobs.succeed(), jobs.fail() or jobs.revoke().")));

	task_type = text_attr(tup, tupdesc, a->task_type);
	if (task_type == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("task type must not be null")));

	source = text_attr(tup, tupdesc, a->trigger_source);
	d = heap_getattr(tup, a->owner, tupdesc, &isnull);
	owner = isnull ? NULL : pstrdup(NameStr(*DatumGetName(d)));

	if (!PgJobsMayActFor(caller, owner))
	{
		if (owner == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to create an unowned job"),
					 errhint("Only superusers and members of jobs_admin may create jobs without an owner.")));
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to create a job owned by \"%s\"", owner),
				 errhint("Create jobs in your own name, or in the name of a role you are a member of.")));
	}

	d = heap_getattr(tup, a->task_id, tupdesc, &isnull);
	own_task_id = !isnull;
	if (own_task_id && VARSIZE_ANY_EXHDR(DatumGetPointer(d)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("task id must not be empty"),
				 errhint("Pass NULL to have one generated.")));
	if (own_task_id && VARSIZE_ANY_EXHDR(DatumGetPointer(d)) > PGJOBS_MAX_TASK_ID)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("task id is too long (%d bytes)",
						(int) VARSIZE_ANY_EXHDR(DatumGetPointer(d))),
				 errdetail("A task id has at most %d bytes.", PGJOBS_MAX_TASK_ID)));
	d = heap_getattr(tup, a->dedup_key, tupdesc, &isnull);
	if (!isnull && VARSIZE_ANY_EXHDR(DatumGetPointer(d)) > PGJOBS_MAX_DEDUP_KEY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("dedup key is too long (%d bytes)",
						(int) VARSIZE_ANY_EXHDR(DatumGetPointer(d))),
				 errdetail("A dedup key has at most %d bytes.", PGJOBS_MAX_DEDUP_KEY),
				 errhint("Use a hash of a longer key.")));

	d = heap_getattr(tup, a->input, tupdesc, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("job input must not be null"),
				 errhint("Pass an empty object {} for a job without input.")));
	if (!JB_ROOT_IS_OBJECT(DatumGetJsonbP(d)) ||
		JB_ROOT_IS_SCALAR(DatumGetJsonbP(d)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("job input must be a JSON object")));

	/*
	 * Registry lookups and checks run as the table's owner, connected to SPI
	 * only when a query is needed (usually none: the registry is cached).
	 */
	registry_prepare();
	if (!lookup_task_type(task_type, &info, &connected, relowner,
						  &ra))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown task type \"%s\"", task_type),
				 errhint("Register it with jobs.register_task_type().")));
	if (!info.tracked)
	{
		/* untracked types are ignored: store nothing */
		if (connected)
		{
			SPI_finish();
			PgJobsRestore(&ra);
		}
		return PointerGetDatum(NULL);
	}

	/*
	 * Whom the handler will run as: the owner, or for an unowned job the
	 * type's run_as.  Only a superuser (or a member) may make a job run as
	 * a privileged role, and that role must be allowed to execute the
	 * handler: enqueueing grants no right the owner does not have.
	 */
	if (owner != NULL)
		PgJobsCheckRunAs(caller, owner, "the owner of a job");
	else if (info.has_run_as)
		PgJobsCheckRunAs(caller, NameStr(info.run_as),
						 psprintf("run an unowned job of task type \"%s\"", task_type));
	if (OidIsValid(info.handler) &&
		(owner != NULL || info.has_run_as) &&
		SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(info.handler)))
	{
		const char *runner = owner != NULL ? owner : NameStr(info.run_as);
		Oid			runner_id = get_role_oid(runner, true);

		if (OidIsValid(runner_id) &&
			pg_proc_aclcheck(info.handler, runner_id, ACL_EXECUTE) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("role \"%s\" may not execute the handler of task type \"%s\"",
							runner, task_type),
					 errdetail("The handler %s runs as the job's owner (or the task type's run_as role for an unowned job), which needs EXECUTE on it.",
							   format_procedure(info.handler)),
					 errhint("Grant EXECUTE on the handler to that role.")));
	}

	if (source == NULL)
		source = "manual";
	else if (!trigger_source_exists(source, &connected, relowner,
									&ra))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown trigger source \"%s\"", source),
				 errhint("Known sources are listed in jobs.trigger_source; admins may add more.")));

	if (info.has_max_pending)
	{
		registry_connect(&connected, relowner, &ra);
		PgJobsLockTaskType(task_type, owner);
		if (count_pending(task_type, owner, info.max_pending) >= info.max_pending)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
					 errmsg_plural("task type \"%s\" already has %d pending job of this owner",
								   "task type \"%s\" already has %d pending jobs of this owner",
								   info.max_pending, task_type, info.max_pending),
					 errdetail("The task type allows at most %d pending jobs per owner (max_pending).", info.max_pending),
					 errhint("Retry later, when workers have caught up.")));
	}

	d = heap_getattr(tup, a->dedup_key, tupdesc, &isnull);
	if (!isnull)
	{
		char	   *existing;
		bool		visible;

		registry_connect(&connected, relowner, &ra);
		existing = inflight_duplicate(task_type, d, caller, &visible);
		if (existing != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("task type \"%s\" already has an unfinished job with dedup key \"%s\"",
							task_type, TextDatumGetCString(d)),
					 visible ? errdetail("Task %s is pending or running.", existing) :
					 errdetail("A job you cannot see is pending or running with this key."),
					 errhint("The key is free again once that job has finished.")));
	}

	if (own_task_id)
	{
		char	   *st;

		d = heap_getattr(tup, a->task_id, tupdesc, &isnull);
		registry_connect(&connected, relowner, &ra);
		st = task_id_status(d);
		if (st != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("task id \"%s\" already exists", TextDatumGetCString(d)),
					 errdetail("A %s job has this task id.", st),
					 errhint("A runner retrying a started job reports jobs.retry() instead of enqueueing it again.")));
	}

	if (connected)
	{
		SPI_finish();
		PgJobsRestore(&ra);
	}

	now = GetCurrentTimestamp();
	d = heap_getattr(tup, a->run_at, tupdesc, &isnull);
	run_at = isnull ? now : DatumGetTimestampTz(d);
	run_at_given = !isnull;

	/* Parent and dependencies: nothing to do for a job without them. */
	job_id = DatumGetInt64(heap_getattr(tup, a->id, tupdesc, &isnull));
	d = heap_getattr(tup, a->parent_id, tupdesc, &isnull);
	if (!isnull)
		PgJobsCheckParent(job_id, DatumGetInt64(d));
	d = heap_getattr(tup, a->depends_on, tupdesc, &isnull);
	if (!isnull && PgJobsEnqueueDependencies(job_id, d, run_at,
											 rel->rd_rel->relowner))
	{
		/* wait: unclaimable until the last dependency succeeds */
		run_at = PgJobsWaitingRunAt();
		run_at_given = false;
	}

	/* Fill in what the lifecycle owns. */
	memset(nulls, false, sizeof(nulls));

	if (!own_task_id)
	{
		cols[n] = a->task_id;
		vals[n++] = generate_task_id(now);
	}
	cols[n] = a->status;
	vals[n++] = ObjectIdGetDatum(status_oids[JOB_PENDING]);
	cols[n] = a->trigger_source;
	vals[n++] = CStringGetTextDatum(source);
	cols[n] = a->queue;
	vals[n++] = info.queue;

	d = heap_getattr(tup, a->priority, tupdesc, &isnull);
	if (isnull)
	{
		cols[n] = a->priority;
		vals[n++] = Int16GetDatum(info.priority);
	}
	else if (DatumGetInt16(d) < 0 || DatumGetInt16(d) > 3)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("priority must be between 0 (urgent) and 3 (low), not %d",
						DatumGetInt16(d))));

	cols[n] = a->max_attempts;
	vals[n++] = Int32GetDatum(info.max_attempts);
	cols[n] = a->date_created;
	vals[n++] = TimestampTzGetDatum(now);
	if (!run_at_given)
	{
		cols[n] = a->run_at;
		vals[n++] = TimestampTzGetDatum(run_at);
	}
	cols[n] = a->attempts;
	vals[n++] = Int32GetDatum(0);
	cols[n] = a->acknowledged;
	vals[n++] = BoolGetDatum(false);
	cols[n] = a->result;
	nulls[n++] = true;
	cols[n] = a->date_started;
	nulls[n++] = true;
	cols[n] = a->date_done;
	nulls[n++] = true;
	cols[n] = a->worker;
	nulls[n++] = true;
	cols[n] = a->lease_until;
	nulls[n++] = true;
	Assert(n <= lengthof(cols));

	/* only the in-database workers run jobs, and only of types with a handler */
	if (OidIsValid(info.handler))
		PgJobsWakeWorkersAtCommit(1);
	return PointerGetDatum(heap_modify_tuple_by_cols(tup, tupdesc, n, cols,
													 vals, nulls));
}

/* do two versions of a column hold the same value? */
static bool
same_attr(HeapTuple oldtup, HeapTuple newtup, TupleDesc td, int attnum)
{
	Form_pg_attribute att = TupleDescAttr(td, attnum - 1);
	bool		oldnull,
				newnull;
	Datum		o = heap_getattr(oldtup, attnum, td, &oldnull);
	Datum		n = heap_getattr(newtup, attnum, td, &newnull);

	if (oldnull || newnull)
		return oldnull == newnull;
	return datum_image_eq(o, n, att->attbyval, att->attlen);
}

static bool
result_is_duplicate(HeapTuple tup, TupleDesc td, int attnum)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, attnum, td, &isnull);
	Jsonb	   *jb;
	JsonbValue	key;

	if (isnull)
		return false;
	jb = DatumGetJsonbP(d);
	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
		return false;
	key.type = jbvString;
	key.val.string.val = "duplicate_of";
	key.val.string.len = strlen("duplicate_of");
	return findJsonbValueFromContainer(&jb->root, JB_FOBJECT, &key) != NULL;
}

/*
 * pg_jobs_job_before_update
 *		BEFORE UPDATE FOR EACH ROW trigger of jobs.job; see the file header.
 */
Datum
pg_jobs_job_before_update(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	tupdesc;
	HeapTuple	oldtup;
	HeapTuple	newtup;
	const JobAttrs *a;
	bool		isnull;
	Oid			status_type;
	JobStatus	from;
	JobStatus	to;
	char	   *task_id;
	int			cols[10];
	Datum		vals[10];
	bool		nulls[10];
	int			n = 0;

	check_trigger(fcinfo, "pg_jobs_job_before_update", false);
	rel = trigdata->tg_relation;
	tupdesc = RelationGetDescr(rel);
	oldtup = trigdata->tg_trigtuple;
	newtup = trigdata->tg_newtuple;
	a = job_attrs(rel);

	status_type = TupleDescAttr(tupdesc, a->status - 1)->atttypid;
	from = status_of(status_type, heap_getattr(oldtup, a->status, tupdesc, &isnull));
	to = status_of(status_type, heap_getattr(newtup, a->status, tupdesc, &isnull));
	task_id = text_attr(oldtup, tupdesc, a->task_id);

	if (JobStatusIsTerminal(from))
	{
		if (from == JOB_FAILURE && to == JOB_SUCCESS)
			return PointerGetDatum(NULL);	/* the failure path owns failures */

		for (int attnum = 1; attnum <= tupdesc->natts; attnum++)
		{
			if (attnum == a->acknowledged ||
				TupleDescAttr(tupdesc, attnum - 1)->attisdropped)
				continue;
			if (same_attr(oldtup, newtup, tupdesc, attnum))
				continue;
			if (from != to)
				ereport(ERROR,
						(errcode(ERRCODE_PGJOBS_CONFLICT),
						 errmsg("task %s cannot go from %s to %s", task_id,
								JobStatusName(from), JobStatusName(to)),
						 errdetail("The job has already finished.")));
			ereport(ERROR,
					(errcode(ERRCODE_PGJOBS_CONFLICT),
					 errmsg("task %s has finished and cannot be changed", task_id),
					 errdetail("Column \"%s\" of a %s job is immutable; only \"acknowledged\" may change.",
							   NameStr(TupleDescAttr(tupdesc, attnum - 1)->attname),
							   JobStatusName(from))));
		}
		return PointerGetDatum(newtup);
	}

	if (!allowed[from][to])
		ereport(ERROR,
				(errcode(ERRCODE_PGJOBS_CONFLICT),
				 errmsg("task %s cannot go from %s to %s", task_id,
						JobStatusName(from), JobStatusName(to)),
				 errhint("A job must be started before it can succeed.")));

	if (!same_attr(oldtup, newtup, tupdesc, a->id) ||
		!same_attr(oldtup, newtup, tupdesc, a->task_id) ||
		!same_attr(oldtup, newtup, tupdesc, a->task_type) ||
		!same_attr(oldtup, newtup, tupdesc, a->date_created))
		ereport(ERROR,
				(errcode(ERRCODE_PGJOBS_CONFLICT),
				 errmsg("the id, task_id, task_type and date_created of task %s cannot be changed",
						task_id)));

	if (!same_attr(oldtup, newtup, tupdesc, a->depends_on) ||
		!same_attr(oldtup, newtup, tupdesc, a->parent_id))
		ereport(ERROR,
				(errcode(ERRCODE_PGJOBS_CONFLICT),
				 errmsg("the depends_on and parent_id of task %s cannot be changed",
						task_id),
				 errhint("Dependencies are fixed at enqueue; enqueue a new job instead.")));

	{
		Datum		od = heap_getattr(oldtup, a->owner, tupdesc, &isnull);

		if (!PgJobsMayActFor(GetUserId(), isnull ? NULL : NameStr(*DatumGetName(od))))
		{
			for (int attnum = 1; attnum <= tupdesc->natts; attnum++)
			{
				if (attnum == a->acknowledged ||
					TupleDescAttr(tupdesc, attnum - 1)->attisdropped ||
					same_attr(oldtup, newtup, tupdesc, attnum))
					continue;
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("permission denied to change task %s", task_id),
						 errdetail("Column \"%s\" may change only by admins and members of the owning role; others may only acknowledge the job.",
								   NameStr(TupleDescAttr(tupdesc, attnum - 1)->attname))));
			}
		}
	}

	if (!same_attr(oldtup, newtup, tupdesc, a->run_at) &&
		!(from == JOB_STARTED && to == JOB_PENDING) &&
		!PgJobsIsAdmin(GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to change the run_at of task %s", task_id),
				 errdetail("Only a retry (started to pending) sets a new run_at."),
				 errhint("Use jobs.retry() for a started job, or enqueue a new job with run_at.")));

	if (!same_attr(oldtup, newtup, tupdesc, a->owner))
	{
		Datum		od = heap_getattr(newtup, a->owner, tupdesc, &isnull);
		char	   *new_owner = isnull ? NULL : NameStr(*DatumGetName(od));

		if (!PgJobsMayActFor(GetUserId(), new_owner))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to give task %s to %s%s%s", task_id,
							new_owner ? "\"" : "", new_owner ? new_owner : "no owner",
							new_owner ? "\"" : ""),
					 errhint("Only admins, and members of the new owner role, may change a job's owner.")));
		if (new_owner != NULL)
			PgJobsCheckRunAs(GetUserId(), new_owner, "the owner of a job");
	}

	/* Columns the lifecycle owns: start from the old values. */
	memset(nulls, false, sizeof(nulls));
	cols[n] = a->date_started;
	vals[n] = heap_getattr(oldtup, a->date_started, tupdesc, &nulls[n]);
	n++;
	cols[n] = a->date_done;
	vals[n] = heap_getattr(oldtup, a->date_done, tupdesc, &nulls[n]);
	n++;
	cols[n] = a->attempts;
	vals[n] = heap_getattr(oldtup, a->attempts, tupdesc, &nulls[n]);
	n++;

	/* a job whose handler this transaction called: when it did */
	if (from == JOB_STARTED && started_at_lxid == MyProc->lxid &&
		started_at != NULL)
	{
		int64		id = DatumGetInt64(heap_getattr(oldtup, a->id, tupdesc, &isnull));
		StartedAt  *e = hash_search(started_at, &id, HASH_FIND, NULL);

		if (e != NULL)
		{
			vals[0] = TimestampTzGetDatum(e->at);
			nulls[0] = false;
		}
	}

	if (from != to)
	{
		TimestampTz now = GetCurrentTimestamp();

		if (to == JOB_STARTED)
		{
			/*
			 * pending -> started: one more attempt.  For a job an
			 * in-database worker claims in a batch this is the claim; the
			 * transition that records its outcome replaces date_started
			 * with the moment its handler was called
			 * (PgJobsNoteHandlerStart), and a requeue before that gives the
			 * attempt back (PgJobsRefundAttempt).
			 */
			vals[0] = TimestampTzGetDatum(now);
			nulls[0] = false;
			vals[2] = Int32GetDatum(DatumGetInt32(vals[2]) + 1);
			PgJobsCountClaim();
		}
		else if (to == JOB_PENDING)
		{
			/* started -> pending: a retry or a recovery; wait afresh */
			nulls[0] = true;
			/* a requeue that took no attempt gives back the one it was charged */
			if (refund_lxid == MyProc->lxid &&
				refund_job_id == DatumGetInt64(heap_getattr(oldtup, a->id, tupdesc, &isnull)))
			{
				vals[2] = Int32GetDatum(Max(DatumGetInt32(vals[2]) - 1, 0));
				refund_job_id = -1;
			}
			cols[n] = a->worker;
			nulls[n++] = true;
			cols[n] = a->lease_until;
			nulls[n++] = true;
			PgJobsWakeWorkersAtCommit(1);
		}
		else
		{
			/* finished */
			vals[1] = TimestampTzGetDatum(now);
			nulls[1] = false;
			if (to == JOB_SUCCESS && result_is_duplicate(newtup, tupdesc, a->result))
			{
				cols[n] = a->status;
				vals[n] = ObjectIdGetDatum(status_oids[JOB_FAILURE]);
				nulls[n++] = false;
			}
			cols[n] = a->lease_until;
			nulls[n++] = true;

			/* the row moves to job_done: let its insert trigger pass it */
			moving_job_id = DatumGetInt64(heap_getattr(oldtup, a->id, tupdesc, &isnull));
			moving_lxid = MyProc->lxid;
			moving_cid = GetCurrentCommandId(false);
		}
	}

	return PointerGetDatum(heap_modify_tuple_by_cols(newtup, tupdesc, n, cols,
													 vals, nulls));
}
