/*-------------------------------------------------------------------------
 *
 * access.c
 *	  Who may see and change which job, and the locks that serialise
 *	  reports on one job.
 *
 * Visibility (used by the row-level security policies of jobs.job):
 * admins (superusers and members of jobs_admin) see every job; other roles
 * see unowned jobs and jobs owned by a role they are a member of.  Acting
 * for an owner (enqueueing in its name, reporting on its jobs) needs
 * membership in that role or admin rights; unowned jobs belong to admins.
 * Membership is PostgreSQL's own (is_member_of_role, cached per backend and
 * invalidated on catalog changes), so GRANT/REVOKE take effect at once.
 *
 * Locking: lifecycle reports on one job take an advisory-method lock with
 * locktag_field4 = PGJOBS_LOCK_JOB, which cannot collide with user advisory
 * locks (they use 1 and 2).  It is held to the end of the transaction, so a
 * second report waits until the first has committed and then, in a new
 * statement, sees its outcome instead of failing on a moved tuple.
 *
 * IDENTIFICATION
 *	  src/access.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "pg_jobs.h"
#include "privilege.h"

PG_FUNCTION_INFO_V1(pg_jobs_is_admin);
PG_FUNCTION_INFO_V1(pg_jobs_visible);
PG_FUNCTION_INFO_V1(pg_jobs_may_act_for);
PG_FUNCTION_INFO_V1(pg_jobs_lock_job);

/*
 * PgJobsIsAdmin
 *		True when roleid is a superuser or a member of jobs_admin.
 */
bool
PgJobsIsAdmin(Oid roleid)
{
	Oid			admin;

	if (superuser_arg(roleid))
		return true;
	admin = get_role_oid("jobs_admin", true);
	return OidIsValid(admin) && is_member_of_role(roleid, admin);
}

/*
 * PgJobsMayActFor
 *		May roleid act for the role named owner (NULL = unowned)?
 *
 * A role that no longer exists can be acted for by admins only.
 */
bool
PgJobsMayActFor(Oid roleid, const char *owner)
{
	Oid			ownerid;

	if (PgJobsIsAdmin(roleid))
		return true;
	if (owner == NULL)
		return false;
	ownerid = get_role_oid(owner, true);
	return OidIsValid(ownerid) && is_member_of_role(roleid, ownerid);
}

/*
 * PgJobsMayRunAs
 *		May roleid put work in a position to run as role target (a job's
 *		owner, a task type's run_as, a handler's owner vouching for it)?
 *
 * Admin rights (jobs_admin) reach every role but the privileged ones
 * (privilege.c): a job runs as one of those only if a superuser or a
 * member of that role arranged it.
 */
bool
PgJobsMayRunAs(Oid roleid, Oid target)
{
	if (superuser_arg(roleid) || roleid == target)
		return true;
	if (!PgJobsRoleIsPrivileged(target))
		return true;
	return is_member_of_role(roleid, target);
}

/*
 * PgJobsCheckRunAs
 *		Raise 42501 unless roleid may make a job run as the role
 *		named role_name (see PgJobsMayRunAs); what names what the role is
 *		for ("own a job", "run the handlers of task type ...").
 */
void
PgJobsCheckRunAs(Oid roleid, const char *role_name, const char *what)
{
	Oid			target = get_role_oid(role_name, true);

	if (OidIsValid(target) && !PgJobsMayRunAs(roleid, target))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to make role \"%s\" %s", role_name, what),
				 errdetail("Role \"%s\" is a superuser or can become one (CREATEROLE, or the privileges of pg_execute_server_program, pg_write_server_files or pg_read_server_files).",
						   role_name),
				 errhint("Only a superuser, or a member of that role, may make work run as it.")));
}

/*
 * PgJobsHandlerShape
 *		Is fn a permanent function (job jobs.job) RETURNS jsonb, the only
 *		thing the workers may call?  A temporary function belongs to one
 *		session, yet a worker could call it by oid.  Sets *exists, *temp and
 *		*owner (InvalidOid when it does not exist).  The one place this rule
 *		lives: the task type trigger (lifecycle.c) and the worker before
 *		each handler (worker.c) both ask here.
 */
bool
PgJobsHandlerShape(Oid fn, bool *exists, bool *temp, Oid *owner)
{
	HeapTuple	proc = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	Form_pg_proc p;
	bool		ok;

	*exists = HeapTupleIsValid(proc);
	*temp = false;
	*owner = InvalidOid;
	if (!*exists)
		return false;
	p = (Form_pg_proc) GETSTRUCT(proc);
	*temp = isAnyTempNamespace(p->pronamespace);
	*owner = p->proowner;
	ok = !*temp && p->prokind == PROKIND_FUNCTION && !p->proretset &&
		p->pronargs == 1 && p->prorettype == JSONBOID &&
		p->proargtypes.values[0] ==
		get_rel_type_id(get_relname_relid("job", get_namespace_oid("jobs", false)));
	ReleaseSysCache(proc);
	return ok;
}

Datum
pg_jobs_is_admin(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(PgJobsIsAdmin(GetUserId()));
}

Datum
pg_jobs_visible(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(true);
	PG_RETURN_BOOL(PgJobsMayActFor(GetUserId(),
								   NameStr(*PG_GETARG_NAME(0))));
}

Datum
pg_jobs_may_act_for(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(PgJobsMayActFor(GetUserId(),
								   PG_ARGISNULL(0) ? NULL :
								   NameStr(*PG_GETARG_NAME(0))));
}

/*
 * PgJobsLockJob
 *		Take the per-job report lock, held until the end of the transaction.
 */
void
PgJobsLockJob(int64 job_id)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId,
						 (uint32) ((uint64) job_id >> 32),
						 (uint32) job_id,
						 PGJOBS_LOCK_JOB);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/*
 * PgJobsLockTaskType
 *		Serialise enqueues of one task type for one owner (NULL: unowned),
 *		for the type's max_pending limit, which applies per owner.  Held
 *		to the end of the transaction, so a client idle in a transaction
 *		holds back only further jobs of its own owner.
 *
 * Keyed on a hash of the two names; a collision only makes two pairs wait
 * for each other, it cannot break the limit.
 */
void
PgJobsLockTaskType(const char *task_type, const char *owner)
{
	LOCKTAG		tag;
	uint32		h = hash_bytes((const unsigned char *) task_type,
							   strlen(task_type));
	uint32		o = owner ? hash_bytes((const unsigned char *) owner, strlen(owner)) : 0;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, h, o, PGJOBS_LOCK_TYPE);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

Datum
pg_jobs_lock_job(PG_FUNCTION_ARGS)
{
	PgJobsLockJob(PG_GETARG_INT64(0));
	PG_RETURN_VOID();
}
