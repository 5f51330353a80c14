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

#include "datatype/timestamp.h"
#include "utils/jsonb.h"

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

/* lifecycle.c */
extern const char *JobStatusName(JobStatus s);

/* access.c */
extern bool PgJobsIsAdmin(Oid roleid);
extern bool PgJobsMayActFor(Oid roleid, const char *owner);
extern void PgJobsLockJob(int64 job_id);
extern void PgJobsLockTaskType(const char *task_type);

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
