/*-------------------------------------------------------------------------
 *
 * logs.c
 *	  Per-job logs: writing entries, the per-job cap, and live following.
 *
 * Every entry is written by PgJobsLogWrite(), whichever way it comes in:
 * jobs.log() (a client or a handler, after checking who may write to the
 * job), jobs._log_write() (admins and the engine, by job id) or a direct C
 * call from the engine.  PgJobsLogWrite runs as the owner of jobs.job_log,
 * since nobody else may insert into it: the cap and the notifications of
 * followers cannot be bypassed.
 *
 * Rights: every statement that runs as the owner of jobs.job_log (writes,
 * follow, unfollow) runs inside PgJobsBecome() (privilege.c): a security-
 * restricted operation with search_path pinned to pg_catalog, pg_temp.  The
 * statements that run as the caller (the job lookup, under row-level
 * security) are written the same way: every type and operator is
 * schema-qualified, so that no type, domain or operator of the caller's
 * (in pg_temp, or in a schema on its search_path) is ever chosen.
 *
 * The cap (pg_jobs.log_max_entries): each entry stores its position in its
 * job's log (seq).  A write reads the seq of the job's newest entry through
 * the (job_id, id) index, one probe, instead of counting.  Once a job holds
 * the cap, one warning from source "pg_jobs" notes that later entries are
 * dropped, and every later entry is dropped (jobs.log() returns NULL).
 * Concurrent writers to one job may both take the same seq, so under
 * concurrency the cap can be overshot by at most the number of writers;
 * it bounds runaway handlers, it is not an exact quota.
 *
 * Per-(sub)transaction caches keep a batch of writes cheap: the job found
 * for a task id (per role), and the seq this backend last wrote for a job.
 * Both are keyed on the local transaction id and the subtransaction id, so
 * they never outlive what they describe: a rolled-back subtransaction's
 * writes are never trusted, and other transactions always look again.
 *
 * Following: jobs.follow() records a filter (job, minimum level, source) in
 * the unlogged table jobs.log_follower under a random channel name, and
 * LISTENs on it in the caller's session.  A write looks the job up in that
 * table (one index probe, on a table that is empty when nobody follows) and
 * NOTIFYs only the channels whose filter matches, whose backend is alive,
 * and whose role may see the job as it is owned now (an admin may have
 * given it to another role since the follow).  So unfollowed writes never
 * take the commit-time lock of NOTIFY.  Channel names carry 128 random bits
 * and are only ever returned to the follower, and the table is not readable
 * by others, so another role cannot listen in; the payload holds the entry,
 * its id being the cursor for jobs.logs(after_id => ...), in at most
 * PAYLOAD_MAX (7000) bytes after JSON escaping, whatever the entry and its
 * task id hold, so that NOTIFY never fails a write.
 *
 * Locking: no locks of our own.  Rows of jobs.log_follower belong to one
 * backend (pid); dead backends' rows are purged by the next jobs.follow().
 *
 * The engine sets PgJobsRunningTaskId while a handler runs, so that
 * jobs.log() and jobs.current_task_id() default to the running job.
 *
 * IDENTIFICATION
 *	  src/logs.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "pg_jobs.h"
#include "privilege.h"

PG_FUNCTION_INFO_V1(pg_jobs_log);
PG_FUNCTION_INFO_V1(pg_jobs_log_write);
PG_FUNCTION_INFO_V1(pg_jobs_follow);
PG_FUNCTION_INFO_V1(pg_jobs_unfollow);
PG_FUNCTION_INFO_V1(pg_jobs_current_task_id);

/* GUC pg_jobs.log_max_entries: entries kept per job, 0 = no cap */
int			PgJobsLogMaxEntries = 10000;

/* task id of the job whose handler this backend runs; NULL otherwise */
char	   *PgJobsRunningTaskId = NULL;

/* the source of the entries pg_jobs writes itself */
#define LOG_SOURCE_PGJOBS	"pg_jobs"

/* at most this many follow filters per session */
#define MAX_FOLLOWERS_PER_SESSION 100

static const char *const level_names[PGJOBS_LOG_NLEVELS] = {
	"debug", "info", "notice", "warning", "error"
};

/* jobs.log(): the job found for a task id in this (sub)transaction */
typedef struct JobCache
{
	LocalTransactionId lxid;
	SubTransactionId subxid;
	Oid			userid;
	int64		job_id;
	bool		has_owner;
	NameData	owner;
	char	   *task_id;		/* in TopMemoryContext */
} JobCache;

/* PgJobsLogWrite(): the last entry this backend wrote, per (sub)transaction */
typedef struct SeqCache
{
	LocalTransactionId lxid;
	SubTransactionId subxid;
	int64		job_id;
	int32		last_seq;
	bool		last_is_note;
} SeqCache;

static JobCache job_cache = {InvalidLocalTransactionId};
static SeqCache seq_cache = {InvalidLocalTransactionId};

/* SPI plans, prepared once per backend */
static SPIPlanPtr last_plan = NULL;
static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr followers_plan = NULL;
static SPIPlanPtr job_owner_plan = NULL;
static SPIPlanPtr job_plan = NULL;
static SPIPlanPtr purge_plan = NULL;
static SPIPlanPtr count_followers_plan = NULL;
static SPIPlanPtr add_follower_plan = NULL;
static SPIPlanPtr unfollow_plan = NULL;

/*
 * PgJobsLogsInit
 *		Define the GUCs of the logs component.  Called from _PG_init.
 */
void
PgJobsLogsInit(void)
{
	DefineCustomIntVariable("pg_jobs.log_max_entries",
							"Maximum number of log entries kept per job.",
							"Later entries are dropped, after one warning in the job's log "
							"saying so. 0 means no limit.",
							&PgJobsLogMaxEntries,
							10000, 0, INT_MAX,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
}

/*
 * PgJobsLogLevelFromName
 *		The level number of a level name, or -1 when there is no such level.
 */
int
PgJobsLogLevelFromName(const char *name)
{
	for (int i = 0; i < PGJOBS_LOG_NLEVELS; i++)
		if (strcmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

const char *
PgJobsLogLevelName(int level)
{
	Assert(level >= 0 && level < PGJOBS_LOG_NLEVELS);
	return level_names[level];
}

/*
 * PgJobsCurrentTaskId
 *		The task id of the job whose handler is running in this backend, or
 *		NULL outside a handler.  The engine sets PgJobsRunningTaskId.
 */
const char *
PgJobsCurrentTaskId(void)
{
	return PgJobsRunningTaskId;
}

/*
 * log_table_owner
 *		The owner of jobs.job_log, as whom entries and followers are written.
 */
static Oid
log_table_owner(void)
{
	Oid			nsp = get_namespace_oid("jobs", false);
	Oid			relid = get_relname_relid("job_log", nsp);
	HeapTuple	tup;
	Oid			owner;

	if (!OidIsValid(relid))
		elog(ERROR, "pg_jobs: table jobs.job_log is missing");
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * check_level
 *		The level number of a level argument (NULL = info); 22023 if unknown.
 */
static int
check_level(text *arg, int dflt)
{
	char	   *name;
	int			level;

	if (arg == NULL)
		return dflt;
	name = text_to_cstring(arg);
	level = PgJobsLogLevelFromName(name);
	if (level < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown log level \"%s\"", name),
				 errhint("Use debug, info, notice, warning or error.")));
	return level;
}

static char *
check_message(text *arg)
{
	char	   *message = arg ? text_to_cstring(arg) : NULL;

	if (message == NULL || message[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("log message must not be empty")));
	return message;
}

/* an empty source is no source */
static char *
check_source(text *arg)
{
	char	   *source = arg ? text_to_cstring(arg) : NULL;

	return (source != NULL && source[0] != '\0') ? source : NULL;
}

static Jsonb *
check_fields(Jsonb *fields)
{
	if (fields != NULL &&
		(!JB_ROOT_IS_OBJECT(fields) || JB_ROOT_IS_SCALAR(fields)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("log fields must be a JSON object")));
	return fields;
}

/*
 * lookup_job
 *		Find a job by task id as the current user, so that row-level
 *		security decides; PT404 when it does not exist or is invisible.
 *		Returns the job id and sets *owner (NULL = unowned), palloc'd in the
 *		caller's context.  Must be called inside SPI.
 */
static int64
lookup_job(const char *task_id, char **owner)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	bool		isnull;
	int64		job_id;
	Datum		d;
	int			ret;

	if (task_id[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("task id must not be empty")));

	PgJobsPreparePlan(&job_plan,
				 "SELECT j.id, j.owner FROM jobs.job j "
				 "WHERE j.task_id OPERATOR(pg_catalog.=) $1",
				 1, argtypes);
	args[0] = CStringGetTextDatum(task_id);
	ret = SPI_execute_plan(job_plan, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pg_jobs: job lookup failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PGJOBS_NOT_FOUND),
				 errmsg("task %s does not exist", task_id),
				 errhint("The task id is unknown, or the job belongs to another role.")));

	job_id = DatumGetInt64(heap_getattr(SPI_tuptable->vals[0], 1,
										SPI_tuptable->tupdesc, &isnull));
	d = heap_getattr(SPI_tuptable->vals[0], 2, SPI_tuptable->tupdesc, &isnull);
	*owner = isnull ? NULL : SPI_palloc(NAMEDATALEN);
	if (!isnull)
		strlcpy(*owner, NameStr(*DatumGetName(d)), NAMEDATALEN);
	return job_id;
}

/*
 * The NOTIFY payload of an entry is a JSON object of at most PAYLOAD_MAX
 * bytes, whatever the entry and its task id hold, so that NOTIFY (which
 * refuses payloads of 8000 bytes and more) never fails a write.  Each part
 * is bounded after JSON escaping, which can turn one byte into six (a
 * control character becomes \u0001):
 *	- task_id: whole when its escaped form takes at most PAYLOAD_TASK_ID_MAX
 *	  bytes (room for any task id of 255 bytes, each escaped to six), else
 *	  null (a cut id would name another job; the channel still says which
 *	  job the entry belongs to);
 *	- source and message: cut at a character boundary to at most
 *	  PAYLOAD_SOURCE_MAX and PAYLOAD_MESSAGE_MAX escaped bytes;
 *	- fields: whole when its JSON text takes at most PAYLOAD_FIELDS_MAX
 *	  bytes, else left out;
 * and "truncated": true says that something was cut or left out.  The
 * static assertions below prove that the parts and the frame around them
 * (keys, punctuation, id, time, level) fit PAYLOAD_MAX.
 */
#define PAYLOAD_MAX			7000
#define PAYLOAD_TASK_ID_MAX	1536
#define PAYLOAD_SOURCE_MAX	200
#define PAYLOAD_MESSAGE_MAX	2000
#define PAYLOAD_FIELDS_MAX	3000
#define PAYLOAD_FRAME_MAX \
	(sizeof("{\"id\": , \"task_id\": \"\", \"at\": \"\", \"level\": \"\", " \
			"\"source\": \"\", \"message\": \"\", \"fields\": , " \
			"\"truncated\": true}") - 1 \
	 + 20						/* an int64 */ \
	 + MAXDATELEN				/* JsonEncodeDateTime() */ \
	 + 7)						/* "warning" */

StaticAssertDecl(PAYLOAD_FRAME_MAX + PAYLOAD_TASK_ID_MAX + PAYLOAD_SOURCE_MAX +
				 PAYLOAD_MESSAGE_MAX + PAYLOAD_FIELDS_MAX <= PAYLOAD_MAX,
				 "the parts of a log NOTIFY payload do not fit PAYLOAD_MAX");
StaticAssertDecl(PAYLOAD_MAX < 8000,
				 "PAYLOAD_MAX must stay below NOTIFY's payload limit");

/*
 * json_escape_char
 *		The JSON-escaped form of the character at p, as escape_json() writes
 *		it: sets *out (esc, or p itself) and *inlen, returns its length.
 *		A multibyte character is copied whole (in server encodings no byte
 *		of one is ASCII).
 */
static int
json_escape_char(const char *p, char *esc, const char **out, int *inlen)
{
	*out = esc;
	*inlen = 1;
	if (IS_HIGHBIT_SET(*p))
	{
		*out = p;
		*inlen = pg_encoding_mblen_bounded(GetDatabaseEncoding(), p);
		return *inlen;
	}
	esc[0] = '\\';
	switch (*p)
	{
		case '\b':
			esc[1] = 'b';
			return 2;
		case '\f':
			esc[1] = 'f';
			return 2;
		case '\n':
			esc[1] = 'n';
			return 2;
		case '\r':
			esc[1] = 'r';
			return 2;
		case '\t':
			esc[1] = 't';
			return 2;
		case '"':
		case '\\':
			esc[1] = *p;
			return 2;
		default:
			if ((unsigned char) *p < ' ')
				return snprintf(esc, 7, "\\u%04x", (int) *p);
			esc[0] = *p;
			return 1;
	}
}

/*
 * append_json_cut
 *		Append value (NULL: null) as a JSON string whose contents take at
 *		most max bytes once escaped, cut at a character boundary; sets *cut
 *		when it had to cut.
 */
static void
append_json_cut(StringInfo buf, const char *value, int max, bool *cut)
{
	int			used = 0;

	if (value == NULL)
	{
		appendStringInfoString(buf, "null");
		return;
	}
	appendStringInfoCharMacro(buf, '"');
	for (const char *p = value; *p != '\0';)
	{
		char		esc[7];
		const char *out;
		int			inlen;
		int			outlen = json_escape_char(p, esc, &out, &inlen);

		if (used + outlen > max)
		{
			*cut = true;
			break;
		}
		appendBinaryStringInfo(buf, out, outlen);
		used += outlen;
		p += inlen;
	}
	appendStringInfoCharMacro(buf, '"');
}

/*
 * build_payload
 *		The NOTIFY payload of an entry (see above), palloc'd.
 */
static char *
build_payload(int64 entry_id, const char *task_id, Datum at, int level,
			  const char *source, const char *message, Jsonb *fields)
{
	StringInfoData buf;
	char		datebuf[MAXDATELEN + 1];
	bool		cut = false;
	bool		id_cut = false;
	int			mark;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"id\": " INT64_FORMAT ", \"task_id\": ", entry_id);
	mark = buf.len;
	append_json_cut(&buf, task_id, PAYLOAD_TASK_ID_MAX, &id_cut);
	if (id_cut)
	{
		buf.len = mark;
		buf.data[mark] = '\0';
		appendStringInfoString(&buf, "null");
		cut = true;
	}
	appendStringInfo(&buf, ", \"at\": \"%s\", \"level\": \"%s\", \"source\": ",
					 JsonEncodeDateTime(datebuf, at, TIMESTAMPTZOID, NULL),
					 level_names[level]);
	append_json_cut(&buf, source, PAYLOAD_SOURCE_MAX, &cut);
	appendStringInfoString(&buf, ", \"message\": ");
	append_json_cut(&buf, message, PAYLOAD_MESSAGE_MAX, &cut);
	if (fields != NULL)
	{
		char	   *text = JsonbToCString(NULL, &fields->root, VARSIZE(fields));

		if (strlen(text) <= PAYLOAD_FIELDS_MAX)
			appendStringInfo(&buf, ", \"fields\": %s", text);
		else
			cut = true;
	}
	if (cut)
		appendStringInfoString(&buf, ", \"truncated\": true");
	appendStringInfoChar(&buf, '}');
	Assert(buf.len <= PAYLOAD_MAX);
	return buf.data;
}

/*
 * current_job
 *		The task id and current owner (NULL = unowned) of job_id, palloc'd;
 *		false when the job no longer exists.  Must be called inside SPI, as
 *		the owner of jobs.job_log (who owns jobs.job too: no row-level
 *		security hides the job).
 */
static bool
current_job(int64 job_id, char **task_id, char **owner)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1];
	bool		isnull;
	Datum		d;
	int			ret;

	PgJobsPreparePlan(&job_owner_plan,
				 "SELECT j.task_id, j.owner FROM jobs.job j "
				 "WHERE j.id OPERATOR(pg_catalog.=) $1",
				 1, argtypes);
	args[0] = Int64GetDatum(job_id);
	ret = SPI_execute_plan(job_owner_plan, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pg_jobs: job lookup failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		return false;
	*task_id = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	d = heap_getattr(SPI_tuptable->vals[0], 2, SPI_tuptable->tupdesc, &isnull);
	*owner = isnull ? NULL : pstrdup(NameStr(*DatumGetName(d)));
	return true;
}

/*
 * notify_followers
 *		NOTIFY every live follower of the job whose filter matches the entry
 *		and whose role may see the job now.  Must be called inside SPI, as
 *		the owner of jobs.job_log.
 *
 * Who may see the job is decided by its current owner, read here, not by
 * the owner recorded at follow time: an admin may have handed the job to
 * another role since.  The job is read only once a follower's filter
 * matches, so followers of other levels or sources cost no lookup.
 */
static void
notify_followers(int64 job_id, int64 entry_id, Datum at, int level,
				 const char *source, const char *message, Jsonb *fields)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1];
	int			ret;
	uint64		n;
	SPITupleTable *tt;
	bool		job_read = false;
	char	   *task_id = NULL;
	char	   *owner = NULL;
	char	   *payload = NULL;

	PgJobsPreparePlan(&followers_plan,
				 "SELECT channel, roleid, pid, min_level, source "
				 "FROM jobs.log_follower WHERE job_id OPERATOR(pg_catalog.=) $1",
				 1, argtypes);
	args[0] = Int64GetDatum(job_id);
	ret = SPI_execute_plan(followers_plan, args, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pg_jobs: follower lookup failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		return;					/* the common case: nobody follows */
	n = SPI_processed;
	tt = SPI_tuptable;

	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tup = tt->vals[i];
		TupleDesc	td = tt->tupdesc;
		bool		isnull;
		char	   *want_source;
		Oid			roleid;
		int			pid;
		int			min_level;

		min_level = DatumGetInt16(heap_getattr(tup, 4, td, &isnull));
		if (level < min_level)
			continue;
		want_source = SPI_getvalue(tup, td, 5);
		if (want_source != NULL &&
			(source == NULL || strcmp(source, want_source) != 0))
			continue;
		pid = DatumGetInt32(heap_getattr(tup, 3, td, &isnull));
		if (BackendPidGetProc(pid) == NULL)
			continue;			/* gone; purged by the next follow() */

		/* the job as it is now, once, for the first follower that matches */
		if (!job_read)
		{
			job_read = true;
			if (!current_job(job_id, &task_id, &owner))
				return;			/* the job is gone: nobody may see it */
		}
		roleid = DatumGetObjectId(heap_getattr(tup, 2, td, &isnull));
		/* as jobs._visible(): unowned jobs are everyone's */
		if (owner != NULL && !PgJobsMayActFor(roleid, owner))
			continue;

		if (payload == NULL)
			payload = build_payload(entry_id, task_id, at, level, source,
									message, fields);
		Async_Notify(SPI_getvalue(tup, td, 1), payload);
	}
}

/*
 * insert_entry
 *		Insert one entry and notify its followers; returns its id.  Must be
 *		called inside SPI, as the owner of jobs.job_log.
 */
static int64
insert_entry(int64 job_id, int32 seq, TimestampTz at, int level,
			 const char *source, const char *message, Jsonb *fields)
{
	Oid			argtypes[7] = {INT8OID, TIMESTAMPTZOID, TEXTOID, TEXTOID,
							   TEXTOID, JSONBOID, INT4OID};
	Datum		args[7];
	char		nulls[7] = "       ";
	bool		isnull;
	int64		entry_id;
	Datum		stamp;
	int			ret;

	PgJobsPreparePlan(&insert_plan,
				 "INSERT INTO jobs.job_log (job_id, at, level, source, message, fields, seq) "
				 "VALUES ($1, COALESCE($2, pg_catalog.clock_timestamp()), "
				 "$3, $4, $5, $6, $7) RETURNING id, at",
				 7, argtypes);
	args[0] = Int64GetDatum(job_id);
	args[1] = TimestampTzGetDatum(at);
	if (at == 0)
		nulls[1] = 'n';
	args[2] = CStringGetTextDatum(level_names[level]);
	args[3] = source ? CStringGetTextDatum(source) : (Datum) 0;
	if (source == NULL)
		nulls[3] = 'n';
	args[4] = CStringGetTextDatum(message);
	args[5] = PointerGetDatum(fields);
	if (fields == NULL)
		nulls[5] = 'n';
	args[6] = Int32GetDatum(seq);

	ret = SPI_execute_plan(insert_plan, args, nulls, false, 1);
	if (ret != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "pg_jobs: log insert failed: %s", SPI_result_code_string(ret));
	entry_id = DatumGetInt64(heap_getattr(SPI_tuptable->vals[0], 1,
										  SPI_tuptable->tupdesc, &isnull));
	stamp = heap_getattr(SPI_tuptable->vals[0], 2, SPI_tuptable->tupdesc, &isnull);

	notify_followers(job_id, entry_id, stamp, level, source, message, fields);
	return entry_id;
}

/*
 * newest_entry
 *		Position of the job's newest entry (0 when there is none), and
 *		whether it is the cap note.  Must be called inside SPI.
 */
static int32
newest_entry(int64 job_id, bool *is_note)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1];
	int32		seq = 0;
	int			ret;

	*is_note = false;
	PgJobsPreparePlan(&last_plan,
				 "SELECT l.seq, "
				 "COALESCE(l.source OPERATOR(pg_catalog.=) "
				 "'" LOG_SOURCE_PGJOBS "'::pg_catalog.text "
				 "AND l.fields OPERATOR(pg_catalog.?) 'max_entries'::pg_catalog.text, "
				 "false) "
				 "FROM jobs.job_log l WHERE l.job_id OPERATOR(pg_catalog.=) $1 "
				 "ORDER BY l.id DESC LIMIT 1",
				 1, argtypes);
	args[0] = Int64GetDatum(job_id);
	ret = SPI_execute_plan(last_plan, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pg_jobs: log lookup failed: %s", SPI_result_code_string(ret));
	if (SPI_processed > 0)
	{
		bool		isnull;
		Datum		d;

		d = heap_getattr(SPI_tuptable->vals[0], 1, SPI_tuptable->tupdesc, &isnull);
		seq = isnull ? 0 : DatumGetInt32(d);
		d = heap_getattr(SPI_tuptable->vals[0], 2, SPI_tuptable->tupdesc, &isnull);
		*is_note = !isnull && DatumGetBool(d);
	}
	return seq;
}

/*
 * PgJobsLogWrite
 *		Append an entry to the log of job_id, applying the cap and notifying
 *		followers.  The one path by which entries are written.
 *
 * The caller must be inside a transaction and must have checked that the
 * writer may write to this job: no permission check is made here, and the
 * job's existence is not checked either.  level is a PGJOBS_LOG_* number,
 * source and fields may be NULL, at = 0 means clock_timestamp().
 * Returns the new entry's id, or 0 when the cap dropped the entry.
 */
int64
PgJobsLogWrite(int64 job_id, int level, const char *source,
			   const char *message, Jsonb *fields, TimestampTz at)
{
	PgJobsRunAs ra;
	int64		entry_id = 0;
	int32		last_seq = 0;
	bool		last_is_note = false;
	int			cap = PgJobsLogMaxEntries;

	Assert(level >= 0 && level < PGJOBS_LOG_NLEVELS);

	PgJobsBecome(&ra, log_table_owner(), NULL);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_jobs: SPI_connect failed");

	/* the job's newest entry: its position and whether it is the cap note */
	if (seq_cache.lxid == MyProc->lxid &&
		seq_cache.subxid == GetCurrentSubTransactionId() &&
		seq_cache.job_id == job_id)
	{
		last_seq = seq_cache.last_seq;
		last_is_note = seq_cache.last_is_note;
	}
	else
		last_seq = newest_entry(job_id, &last_is_note);

	if (cap == 0 || last_seq < cap)
	{
		entry_id = insert_entry(job_id, last_seq + 1, at, level, source,
								message, fields);
		last_seq++;
		last_is_note = false;
	}
	else if (!last_is_note && last_seq < INT_MAX)
	{
		/* the first entry over the cap: note it once, drop the entry */
		char	   *note;
		Jsonb	   *note_fields;

		note = psprintf("log limit of %d entries reached; later entries of this job are dropped",
						cap);
		note_fields = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
														 CStringGetDatum(psprintf("{\"max_entries\": %d}", cap))));
		(void) insert_entry(job_id, last_seq + 1, 0, PGJOBS_LOG_WARNING,
							LOG_SOURCE_PGJOBS, note, note_fields);
		last_seq++;
		last_is_note = true;
	}

	seq_cache.lxid = MyProc->lxid;
	seq_cache.subxid = GetCurrentSubTransactionId();
	seq_cache.job_id = job_id;
	seq_cache.last_seq = last_seq;
	seq_cache.last_is_note = last_is_note;

	SPI_finish();
	PgJobsRestore(&ra);
	return entry_id;
}

/*
 * jobs.log(message, level, source, fields, task_id) RETURNS bigint
 *
 * task_id defaults to the job whose handler is running.  The job is looked
 * up as the caller (RLS: PT404 when invisible); writing needs the right to
 * act for its owner (42501).  Returns the entry id, NULL when dropped.
 */
Datum
pg_jobs_log(PG_FUNCTION_ARGS)
{
	char	   *message = check_message(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	int			level = check_level(PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1),
									PGJOBS_LOG_INFO);
	char	   *source = check_source(PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2));
	Jsonb	   *fields = check_fields(PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3));
	const char *task_id;
	char	   *owner;
	int64		job_id;
	int64		entry_id;

	if (!PG_ARGISNULL(4))
		task_id = text_to_cstring(PG_GETARG_TEXT_PP(4));
	else
	{
		task_id = PgJobsCurrentTaskId();
		if (task_id == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("no task to log to"),
					 errhint("Pass task_id; it defaults to the running job only inside a handler run by pg_jobs.")));
	}

	if (job_cache.lxid == MyProc->lxid &&
		job_cache.subxid == GetCurrentSubTransactionId() &&
		job_cache.userid == GetUserId() &&
		strcmp(job_cache.task_id, task_id) == 0)
	{
		job_id = job_cache.job_id;
		owner = job_cache.has_owner ? NameStr(job_cache.owner) : NULL;
	}
	else
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "pg_jobs: SPI_connect failed");
		job_id = lookup_job(task_id, &owner);
		SPI_finish();

		job_cache.lxid = InvalidLocalTransactionId;
		if (job_cache.task_id)
			pfree(job_cache.task_id);
		job_cache.task_id = MemoryContextStrdup(TopMemoryContext, task_id);
		job_cache.job_id = job_id;
		job_cache.has_owner = (owner != NULL);
		if (owner)
			namestrcpy(&job_cache.owner, owner);
		job_cache.userid = GetUserId();
		job_cache.subxid = GetCurrentSubTransactionId();
		job_cache.lxid = MyProc->lxid;
	}

	if (!PgJobsMayActFor(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to write to the log of task %s", task_id),
				 errhint("Only admins and members of the owning role may write to a job's log.")));

	/*
	 * Inside a handler, entries for the running job are buffered by the
	 * worker and written after the handler, so that they survive its
	 * rollback; there is no entry id yet.
	 */
	if (PgJobsWorkerBufferLog(job_id, level, source, message, fields))
		PG_RETURN_NULL();

	entry_id = PgJobsLogWrite(job_id, level, source, message, fields, 0);
	if (entry_id == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT64(entry_id);
}

/*
 * jobs._log_write(job_id, message, level, source, fields, at) RETURNS bigint
 *
 * The internal path by job id, for admins and the engine (which writes
 * buffered entries with their original time).  The job is not looked up.
 */
Datum
pg_jobs_log_write(PG_FUNCTION_ARGS)
{
	int64		job_id;
	char	   *message;
	int			level;
	char	   *source;
	Jsonb	   *fields;
	TimestampTz at;
	int64		entry_id;

	if (!PgJobsIsAdmin(GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to write log entries by job id"),
				 errhint("Use jobs.log(); jobs._log_write() is for admins and the pg_jobs engine.")));
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("job id must not be null")));
	job_id = PG_GETARG_INT64(0);
	message = check_message(PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1));
	level = check_level(PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2), PGJOBS_LOG_INFO);
	source = check_source(PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3));
	fields = check_fields(PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4));
	at = PG_ARGISNULL(5) ? 0 : PG_GETARG_TIMESTAMPTZ(5);

	entry_id = PgJobsLogWrite(job_id, level, source, message, fields, at);
	if (entry_id == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT64(entry_id);
}

/*
 * jobs.follow(task_id, level, source) RETURNS text
 *
 * Registers a filter on a job the caller can see (PT404 otherwise), LISTENs
 * on a fresh random channel in this session and returns the channel name.
 * Registration and LISTEN take effect when the transaction commits.
 */
Datum
pg_jobs_follow(PG_FUNCTION_ARGS)
{
	char	   *task_id;
	int			min_level;
	char	   *source;
	char	   *owner;
	int64		job_id;
	unsigned char rnd[16];
	char		channel[NAMEDATALEN];
	static const char hex[] = "0123456789abcdef";
	PgJobsRunAs ra;
	Oid			roleid = GetUserId();
	int			ret;

	if (InSecurityRestrictedOperation())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot follow a job log within a security-restricted operation")));
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("task id must not be empty")));
	task_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	min_level = check_level(PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1),
							PGJOBS_LOG_DEBUG);
	source = check_source(PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_jobs: SPI_connect failed");
	job_id = lookup_job(task_id, &owner);

	if (!pg_strong_random(rnd, sizeof(rnd)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random channel name")));
	strcpy(channel, "pg_jobs_log_");
	for (int i = 0; i < (int) sizeof(rnd); i++)
	{
		channel[12 + 2 * i] = hex[rnd[i] >> 4];
		channel[13 + 2 * i] = hex[rnd[i] & 0x0f];
	}
	channel[12 + 2 * sizeof(rnd)] = '\0';

	PgJobsBecome(&ra, log_table_owner(), NULL);
	{
		Oid			addtypes[8] = {TEXTOID, INT8OID, TEXTOID, NAMEOID, OIDOID,
								   INT4OID, INT2OID, TEXTOID};
		Datum		args[8];
		char		nulls[8] = "        ";
		Oid			pidtype[1] = {INT4OID};

		/* followers whose session has ended */
		PgJobsPreparePlan(&purge_plan,
					 "DELETE FROM jobs.log_follower f WHERE NOT EXISTS "
					 "(SELECT 1 FROM pg_catalog.pg_stat_get_activity(NULL::pg_catalog.int4) a "
					 " WHERE a.pid OPERATOR(pg_catalog.=) f.pid)",
					 0, NULL);
		ret = SPI_execute_plan(purge_plan, NULL, NULL, false, 0);
		if (ret != SPI_OK_DELETE)
			elog(ERROR, "pg_jobs: follower purge failed: %s", SPI_result_code_string(ret));

		PgJobsPreparePlan(&count_followers_plan,
					 "SELECT pg_catalog.count(*) FROM jobs.log_follower "
					 "WHERE pid OPERATOR(pg_catalog.=) $1",
					 1, pidtype);
		args[0] = Int32GetDatum(MyProcPid);
		ret = SPI_execute_plan(count_followers_plan, args, NULL, false, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "pg_jobs: follower count failed: %s", SPI_result_code_string(ret));
		{
			bool		isnull;
			int64		n = DatumGetInt64(heap_getattr(SPI_tuptable->vals[0], 1,
													   SPI_tuptable->tupdesc, &isnull));

			if (n >= MAX_FOLLOWERS_PER_SESSION)
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
						 errmsg("too many log followers in this session"),
						 errdetail("A session may follow at most %d logs at a time.",
								   MAX_FOLLOWERS_PER_SESSION),
						 errhint("Stop following with jobs.unfollow().")));
		}

		PgJobsPreparePlan(&add_follower_plan,
					 "INSERT INTO jobs.log_follower "
					 "(channel, job_id, task_id, owner, roleid, pid, min_level, source) "
					 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
					 8, addtypes);
		args[0] = CStringGetTextDatum(channel);
		args[1] = Int64GetDatum(job_id);
		args[2] = CStringGetTextDatum(task_id);
		/* the owner now, for inspection; notify_followers reads it anew */
		args[3] = owner ? CStringGetDatum(owner) : (Datum) 0;
		if (owner == NULL)
			nulls[3] = 'n';
		args[4] = ObjectIdGetDatum(roleid);
		args[5] = Int32GetDatum(MyProcPid);
		args[6] = Int16GetDatum((int16) min_level);
		args[7] = source ? CStringGetTextDatum(source) : (Datum) 0;
		if (source == NULL)
			nulls[7] = 'n';
		ret = SPI_execute_plan(add_follower_plan, args, nulls, false, 0);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "pg_jobs: follower insert failed: %s", SPI_result_code_string(ret));
	}
	SPI_finish();
	PgJobsRestore(&ra);

	Async_Listen(channel);
	PG_RETURN_TEXT_P(cstring_to_text(channel));
}

/*
 * jobs.unfollow(channel) RETURNS integer
 *
 * Stops this session's following of one channel, or of all (NULL), and
 * UNLISTENs; returns how many filters were removed.
 */
Datum
pg_jobs_unfollow(PG_FUNCTION_ARGS)
{
	Oid			argtypes[2] = {INT4OID, TEXTOID};
	Datum		args[2];
	char		nulls[2] = "  ";
	PgJobsRunAs ra;
	List	   *channels = NIL;
	ListCell   *lc;
	MemoryContext caller_cxt = CurrentMemoryContext;
	int			ret;

	PgJobsBecome(&ra, log_table_owner(), NULL);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_jobs: SPI_connect failed");
	PgJobsPreparePlan(&unfollow_plan,
				 "DELETE FROM jobs.log_follower "
				 "WHERE pid OPERATOR(pg_catalog.=) $1 "
				 "AND ($2 IS NULL OR channel OPERATOR(pg_catalog.=) $2) "
				 "RETURNING channel",
				 2, argtypes);
	args[0] = Int32GetDatum(MyProcPid);
	if (PG_ARGISNULL(0))
	{
		args[1] = (Datum) 0;
		nulls[1] = 'n';
	}
	else
		args[1] = PG_GETARG_DATUM(0);
	ret = SPI_execute_plan(unfollow_plan, args, nulls, false, 0);
	if (ret != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "pg_jobs: unfollow failed: %s", SPI_result_code_string(ret));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *c = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		MemoryContext old = MemoryContextSwitchTo(caller_cxt);

		channels = lappend(channels, pstrdup(c));
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	PgJobsRestore(&ra);

	foreach(lc, channels)
		Async_Unlisten((char *) lfirst(lc));
	PG_RETURN_INT32(list_length(channels));
}

/*
 * jobs.current_task_id() RETURNS text
 *
 * The running job's task id inside a handler run by pg_jobs, else NULL.
 */
Datum
pg_jobs_current_task_id(PG_FUNCTION_ARGS)
{
	const char *task_id = PgJobsCurrentTaskId();

	if (task_id == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(task_id));
}
