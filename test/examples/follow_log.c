/*
 * follow_log.c
 *	  Follow one job's log live with libpq: jobs.follow() + LISTEN, the
 *	  backlog through jobs.logs(), then one line per notification, without
 *	  polling.  Runs until interrupted.
 *
 *	  cc -o follow_log follow_log.c -I$(pg_config --includedir) -L$(pg_config --libdir) -lpq
 *	  ./follow_log "dbname=app" <task_id> [min_level] [source]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>

#include "libpq-fe.h"

static void
die(PGconn *conn, const char *what)
{
	fprintf(stderr, "%s: %s", what, PQerrorMessage(conn));
	PQfinish(conn);
	exit(1);
}

int
main(int argc, char **argv)
{
	PGconn	   *conn;
	PGresult   *res;
	const char *params[3];
	char		last_id[32] = "0";

	if (argc < 3)
	{
		fprintf(stderr, "usage: %s conninfo task_id [min_level] [source]\n", argv[0]);
		return 2;
	}
	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
		die(conn, "connect");

	/* 1. register the filter and LISTEN (in autocommit: effective at once) */
	params[0] = argv[2];
	params[1] = argc > 3 ? argv[3] : NULL;
	params[2] = argc > 4 ? argv[4] : NULL;
	res = PQexecParams(conn, "SELECT jobs.follow($1, $2, $3)", 3, NULL, params,
					   NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		die(conn, "follow");		/* PT404: no such job, or not yours */
	PQclear(res);

	/* 2. the backlog, through the same filter; remember the last id */
	res = PQexecParams(conn,
					   "SELECT id, level, coalesce(source, '-'), message "
					   "FROM jobs.logs($1, $2, $3, max_rows => 10000)",
					   3, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		die(conn, "logs");
	for (int i = 0; i < PQntuples(res); i++)
	{
		printf("%s %s [%s] %s\n", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
			   PQgetvalue(res, i, 2), PQgetvalue(res, i, 3));
		snprintf(last_id, sizeof(last_id), "%s", PQgetvalue(res, i, 0));
	}
	PQclear(res);
	fflush(stdout);

	/* 3. wait on the socket; each notification's payload is one entry */
	for (;;)
	{
		int			sock = PQsocket(conn);
		fd_set		fds;
		PGnotify   *n;

		FD_ZERO(&fds);
		FD_SET(sock, &fds);
		if (select(sock + 1, &fds, NULL, NULL, NULL) < 0)
			die(conn, "select");
		if (!PQconsumeInput(conn))
			die(conn, "consume");
		while ((n = PQnotifies(conn)) != NULL)
		{
			/* {"id": .., "task_id", "at", "level", "source", "message", ...} */
			long long	id = strtoll(strstr(n->extra, "\"id\": ") + 6, NULL, 10);

			if (id > atoll(last_id))	/* not already in the backlog */
				printf("%s\n", n->extra);
			PQfreemem(n);
		}
		fflush(stdout);
	}
}
