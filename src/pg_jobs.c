/*-------------------------------------------------------------------------
 *
 * pg_jobs.c
 *	  Module entry point of pg_jobs: background jobs inside PostgreSQL.
 *
 * _PG_init only reserves the "pg_jobs." GUC prefix; each component
 * registers its own settings.  The SQL API works whether or not the library
 * is in shared_preload_libraries.
 *
 * IDENTIFICATION
 *	  src/pg_jobs.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"

#include "pg_jobs.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	/* components define their GUCs before the prefix is reserved */
	PgJobsLogsInit();
	MarkGUCPrefixReserved("pg_jobs");
}
