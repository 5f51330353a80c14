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

#include "access/htup_details.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "utils/tuplestore.h"

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

/*
 * The job receiver: takes the rows of a statement that returns every column
 * of jobs.job, in order (INSERT/UPDATE ... RETURNING *, SELECT * FROM a
 * function returning jobs.job), and stores them as rows of the calling
 * function's result type: into a tuplestore, or, without one, as its single
 * row.  The result type lists dropped columns too, RETURNING * does not;
 * those are filled with nulls.  The rows go straight from the executor into
 * the result, without a copy in SPI's tuple table.
 */
static void
jobdest_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	PgJobsJobDest *dest = (PgJobsJobDest *) self;
	int			live = 0;

	for (int i = 0; i < dest->resultdesc->natts; i++)
		if (!TupleDescAttr(dest->resultdesc, i)->attisdropped)
			live++;
	if (live != typeinfo->natts)
		elog(ERROR, "pg_jobs: the statement returned %d columns, jobs.job has %d",
			 typeinfo->natts, live);
	dest->remap = (live != dest->resultdesc->natts);
	if (dest->remap)
	{
		dest->values = palloc(sizeof(Datum) * dest->resultdesc->natts);
		dest->nulls = palloc(sizeof(bool) * dest->resultdesc->natts);
	}
}

static bool
jobdest_receive(TupleTableSlot *slot, DestReceiver *self)
{
	PgJobsJobDest *dest = (PgJobsJobDest *) self;
	Datum	   *values;
	bool	   *nulls;

	slot_getallattrs(slot);
	if (!dest->remap)
	{
		values = slot->tts_values;
		nulls = slot->tts_isnull;
	}
	else
	{
		int			src = 0;

		values = dest->values;
		nulls = dest->nulls;
		for (int i = 0; i < dest->resultdesc->natts; i++)
		{
			if (TupleDescAttr(dest->resultdesc, i)->attisdropped)
			{
				values[i] = (Datum) 0;
				nulls[i] = true;
				continue;
			}
			values[i] = slot->tts_values[src];
			nulls[i] = slot->tts_isnull[src];
			src++;
		}
	}

	if (dest->tupstore != NULL)
		tuplestore_putvalues(dest->tupstore, dest->resultdesc, values, nulls);
	else
	{
		MemoryContext old = MemoryContextSwitchTo(dest->resultcxt);

		if (dest->row != NULL)
			elog(ERROR, "pg_jobs: one job expected, the statement returned more");
		dest->row = heap_form_tuple(dest->resultdesc, values, nulls);
		MemoryContextSwitchTo(old);
	}
	return true;
}

static void
jobdest_shutdown(DestReceiver *self)
{
}

static void
jobdest_destroy(DestReceiver *self)
{
}

/*
 * PgJobsJobDestInit
 *		Set up dest to receive jobs.job rows as rows of resultdesc: into
 *		tupstore, or (tupstore NULL) as one row made in the current memory
 *		context, left in dest->row (NULL when no row came).
 */
void
PgJobsJobDestInit(PgJobsJobDest *dest, TupleDesc resultdesc,
				  Tuplestorestate *tupstore)
{
	memset(dest, 0, sizeof(PgJobsJobDest));
	dest->pub.receiveSlot = jobdest_receive;
	dest->pub.rStartup = jobdest_startup;
	dest->pub.rShutdown = jobdest_shutdown;
	dest->pub.rDestroy = jobdest_destroy;
	dest->pub.mydest = DestNone;
	dest->resultdesc = resultdesc;
	dest->tupstore = tupstore;
	dest->resultcxt = CurrentMemoryContext;
}

/*
 * PgJobsExecuteToDest
 *		Execute a kept plan with the given parameters (not read-only: a
 *		fresh snapshot per statement, refused in a read-only transaction),
 *		sending its rows to dest, or with dest NULL to SPI_tuptable.
 *		Returns SPI's result code.
 *
 * Caller must be connected to SPI.
 */
int
PgJobsExecuteToDest(SPIPlanPtr plan, int nargs, const Oid *argtypes,
					const Datum *values, const bool *nulls, DestReceiver *dest)
{
	ParamListInfo params = makeParamList(nargs);
	SPIExecuteOptions options;

	for (int i = 0; i < nargs; i++)
	{
		ParamExternData *prm = &params->params[i];

		prm->ptype = argtypes[i];
		prm->pflags = PARAM_FLAG_CONST;
		prm->isnull = nulls[i];
		prm->value = nulls[i] ? (Datum) 0 : values[i];
	}

	memset(&options, 0, sizeof(options));
	options.params = params;
	options.read_only = false;
	options.dest = dest;
	return SPI_execute_plan_extended(plan, &options);
}
