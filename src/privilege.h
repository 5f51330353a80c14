/*-------------------------------------------------------------------------
 *
 * privilege.h
 *	  The one way pg_jobs runs SQL with rights other than the caller's.
 *
 * See privilege.c for the rules every such path follows.
 *
 * IDENTIFICATION
 *	  src/privilege.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_JOBS_PRIVILEGE_H
#define PG_JOBS_PRIVILEGE_H

#include "postgres.h"

/* the search_path of every statement pg_jobs runs with other rights */
#define PGJOBS_SAFE_SEARCH_PATH		"pg_catalog, pg_temp"

/* what PgJobsBecome() saved, for PgJobsRestore() */
typedef struct PgJobsRunAs
{
	Oid			save_userid;
	int			save_sec;
	int			nest;			/* GUC nest level opened by PgJobsBecome */
	bool		active;
} PgJobsRunAs;

extern void PgJobsBecome(PgJobsRunAs *ra, Oid roleid, const char *search_path);
extern void PgJobsRestore(PgJobsRunAs *ra);
extern int	PgJobsPinSearchPath(void);
extern void PgJobsUnpinSearchPath(int nest);
extern bool PgJobsRoleIsPrivileged(Oid roleid);

#endif							/* PG_JOBS_PRIVILEGE_H */
