/*-------------------------------------------------------------------------
 *
 * privilege.c
 *	  The one way pg_jobs runs SQL with rights other than the caller's.
 *
 * pg_jobs is installed by a superuser, its workers and launcher connect as
 * the bootstrap superuser, and some checks run as the owner of the job
 * tables.  Every such path -- a user switch in a trigger or an SQL-callable
 * function, a worker running a handler as the job's owner, the workers' and
 * the launcher's own statements -- goes through PgJobsBecome() or
 * PgJobsPinSearchPath(), and nowhere else calls SetUserIdAndSecContext or
 * sets search_path.  If you add SQL to C that runs with other rights, use
 * them; if your SQL runs as the caller, qualify it all the same.
 *
 * Why both the pin and qualified SQL: a caller controls name resolution
 * through its search_path.  pg_temp is searched first for relations and
 * types unless the path lists it (last), and any role may create types and
 * functions there; operators are chosen by exact argument types, so an
 * "=" on (jobs.status, jobs.status) in any schema on the path beats
 * pg_catalog's anyenum one.  Kept plans are re-analysed when the
 * search_path they were made under differs from the current one, so
 * preparing a plan under a safe path is not enough: it must also run under
 * one.  Hence:
 *	- PgJobsBecome() switches the user with SECURITY_RESTRICTED_OPERATION
 *	  (no temp tables, no PREPARE, no LISTEN, no SET ROLE; V12 of FACTS)
 *	  and opens a GUC nest level in which search_path is pinned to
 *	  "pg_catalog, pg_temp" (pg_temp last: never searched first);
 *	- PgJobsRestore() closes that level *as aborted*, so that every setting
 *	  changed inside it -- SET, set_config(..., false), SET LOCAL -- is
 *	  undone, not only the pinned path (closing it as committed would keep
 *	  session-level changes, as a function's SET clause does);
 *	- the SQL itself still names every type and operator with its schema
 *	  (pg_catalog.text, OPERATOR(pg_catalog.=)), so that it means the same
 *	  under any path.
 * On an error the (sub)transaction abort restores both the user and the
 * settings, as long as PgJobsBecome() was called inside that
 * (sub)transaction; code that catches errors must roll the subtransaction
 * back, never carry on in it.
 *
 * Handlers run through PgJobsBecome() too (worker.c), with search_path
 * "pg_catalog, public", so a handler's SETs end with the handler.
 *
 * Who may be run as: PgJobsRoleIsPrivileged() names the roles whose rights
 * reach beyond the database (superusers, and on PostgreSQL 15 roles that
 * can get there: CREATEROLE, and members of the server file and program
 * roles).  Only a superuser may make a job run as one of them.
 *
 * IDENTIFICATION
 *	  src/privilege.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_authid.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/syscache.h"

#include "privilege.h"

/*
 * PgJobsBecome
 *		Run as roleid (InvalidOid: stay the current user) in a security-
 *		restricted operation, with search_path pinned to search_path
 *		(NULL: PGJOBS_SAFE_SEARCH_PATH) in a new GUC nest level.
 *
 * Caller must call PgJobsRestore() in the same (sub)transaction, or let it
 * abort.
 */
void
PgJobsBecome(PgJobsRunAs *ra, Oid roleid, const char *search_path)
{
	GetUserIdAndSecContext(&ra->save_userid, &ra->save_sec);
	SetUserIdAndSecContext(OidIsValid(roleid) ? roleid : ra->save_userid,
						   ra->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	ra->nest = NewGUCNestLevel();
	(void) set_config_option("search_path",
							 search_path ? search_path : PGJOBS_SAFE_SEARCH_PATH,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	ra->active = true;
}

/*
 * PgJobsRestore
 *		Undo PgJobsBecome(): every setting changed since, then the user.
 */
void
PgJobsRestore(PgJobsRunAs *ra)
{
	if (!ra->active)
		return;
	AtEOXact_GUC(false, ra->nest);
	SetUserIdAndSecContext(ra->save_userid, ra->save_sec);
	ra->active = false;
}

/*
 * PgJobsPinSearchPath
 *		Pin search_path to PGJOBS_SAFE_SEARCH_PATH for the workers' and the
 *		launcher's own statements, in a new GUC nest level; returns it for
 *		PgJobsUnpinSearchPath(), which undoes every setting changed since.
 */
int
PgJobsPinSearchPath(void)
{
	int			nest = NewGUCNestLevel();

	(void) set_config_option("search_path", PGJOBS_SAFE_SEARCH_PATH,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nest;
}

void
PgJobsUnpinSearchPath(int nest)
{
	AtEOXact_GUC(false, nest);
}

/*
 * PgJobsRoleIsPrivileged
 *		True for a role whose rights reach beyond the database: a superuser,
 *		a CREATEROLE role (on PostgreSQL 15 it can grant itself the roles
 *		below), or a role with the privileges of pg_execute_server_program,
 *		pg_write_server_files or pg_read_server_files.
 */
bool
PgJobsRoleIsPrivileged(Oid roleid)
{
	HeapTuple	tup;
	bool		createrole = false;

	if (superuser_arg(roleid))
		return true;
	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(roleid));
	if (HeapTupleIsValid(tup))
	{
		createrole = ((Form_pg_authid) GETSTRUCT(tup))->rolcreaterole;
		ReleaseSysCache(tup);
	}
	return createrole ||
		has_privs_of_role(roleid, ROLE_PG_EXECUTE_SERVER_PROGRAM) ||
		has_privs_of_role(roleid, ROLE_PG_WRITE_SERVER_FILES) ||
		has_privs_of_role(roleid, ROLE_PG_READ_SERVER_FILES);
}
