/*-------------------------------------------------------------------------
 *
 * util.c
 *	  Small helpers shared by the pg_jobs components.
 *
 * IDENTIFICATION
 *	  src/util.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"

#include "pg_jobs.h"

/*
 * PgJobsPreparePlan
 *		Prepare sql once per backend and keep the plan in *plan.
 *
 * Caller must be connected to SPI.  The kept plan survives transactions;
 * PostgreSQL's plan cache replans it when the objects it uses change.
 */
SPIPlanPtr
PgJobsPreparePlan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, argtypes);

		if (p == NULL)
			elog(ERROR, "pg_jobs: SPI_prepare failed: %s",
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "pg_jobs: SPI_keepplan failed");
		*plan = p;
	}
	return *plan;
}
