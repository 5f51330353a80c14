# Installing pg_jobs where a new user would: on a server that does not
# preload it, and in several databases of a server that does.
#
# Without shared_preload_libraries, CREATE EXTENSION works (it used to end
# the session with FATAL), says that no worker will run handlers, and the
# SQL API works: tracking, reports, external claims, monitoring, logs,
# retention by hand; jobs.health() says why no worker runs.
#
# Preloaded, the launcher serves every database that has pg_jobs: handler
# jobs run in two databases, pg_jobs.workers is shared between them,
# dropping the extension in one leaves the other running (and gives it the
# whole budget), and CREATE EXTENSION in a third database is noticed without
# a restart.  pg_jobs.database restricts the workers to one database, and
# registering a handler elsewhere warns.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $handler = q{
	CREATE FUNCTION where_am_i(job jobs.job) RETURNS jsonb LANGUAGE sql
	RETURN jsonb_build_object('database', current_database());
};

# 1. No preloading --------------------------------------------------------
my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init;
$plain->start;

# one session throughout: a FATAL would end it and fail every later statement
my ($ret, $out, $err) = $plain->psql('postgres', qq{
	CREATE EXTENSION pg_jobs;
	$handler
	SELECT name FROM jobs.register_task_type('here', 'where_am_i(jobs.job)');
	SELECT jobs.register_task_type('remote', queue => 'remote') IS NOT NULL;
	SELECT 'still connected';
});
is($ret, 0, 'without preloading: CREATE EXTENSION and the session survive');
like($out, qr/still connected/, 'without preloading: the session goes on after CREATE EXTENSION');
unlike($err, qr/FATAL/, 'without preloading: no FATAL');
like($err, qr/NOTICE:  no pg_jobs worker runs the jobs of database "postgres"/,
	'without preloading: CREATE EXTENSION says that no worker runs handlers');
my @warnings = ($err =~ /WARNING:  no pg_jobs worker runs the jobs of database "postgres"/g);
is(scalar(@warnings), 1, 'without preloading: registering a handler warns, once');
like($err, qr/HINT:  Add pg_jobs to shared_preload_libraries and restart the server/,
	'without preloading: the warning names the setting and the restart');

is($plain->safe_psql('postgres', q{
	SELECT (jobs.enqueue('here', '{"n": 1}', task_id => 'p1')).status;
	SELECT status FROM jobs.start('p1');
	SELECT jobs.log('half way', task_id => 'p1') > 0;
	SELECT (jobs.progress('p1', 1, 2)).task_id = 'p1';
	SELECT status FROM jobs.succeed('p1', '{"done": true}');
}), "pending\nstarted\nt\nt\nsuccess",
	'without preloading: enqueue, start, log, progress and succeed');

is($plain->safe_psql('postgres', q{
	SELECT (jobs.enqueue('remote', task_id => 'r1')).status;
	SELECT count(*) FROM jobs.claim('remote', 1, 'ext-1', '1 minute');
	SELECT status FROM jobs.fail('r1', 'it broke', 'Boom');
}), "pending\n1\nfailure",
	'without preloading: an external worker claims a job and reports its failure');

is($plain->safe_psql('postgres', q{
	SELECT (jobs.enqueue('here', task_id => 'p2')).status;
	SELECT status FROM jobs.start('p2');
	SELECT status FROM jobs.cancel('p2', force => true);
}), "pending\nstarted\nrevoked",
	'without preloading: a forced cancel of a started job revokes it');

is($plain->safe_psql('postgres', q{
	SELECT jsonb_array_length(jobs.tasks()->'results') >= 3;
	SELECT sum(total_count) FROM jobs.summary();
	SELECT string_agg(message, ',' ORDER BY id) FROM jobs.logs('p1');
	SELECT count(*) FROM jobs.workers();
	SELECT (jobs.apply_retention() ? 'rows_deleted');
}), "t\n3\nhalf way\n0\nt",
	'without preloading: tasks(), summary(), logs(), workers() and retention by hand');

is($plain->safe_psql('postgres', q{
	SELECT h->'engine'->>'preloaded', h->'engine'->>'serves_this_database',
	       h->'engine'->>'reason', h->>'pending', jsonb_array_length(h->'workers')
	FROM jobs.health() h;
}), 'false|false|pg_jobs is not in shared_preload_libraries|0|0',
	'without preloading: health() says that no worker runs, and why');
$plain->stop;

# 2. Preloaded, several databases -----------------------------------------
my $node = PostgreSQL::Test::Cluster->new('multi');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'pg_jobs'
pg_jobs.workers = 2
pg_jobs.maintenance_interval = 100ms
pg_jobs.poll_interval = 200ms
});
$node->start;

sub install
{
	my ($db) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	my ($r, $o, $e) = $node->psql($db, qq{
		CREATE EXTENSION pg_jobs;
		$handler
		SELECT name FROM jobs.register_task_type('here', 'where_am_i(jobs.job)');
	});
	is($e, '', "$db: CREATE EXTENSION and registering a handler do not warn");
}

sub run_job
{
	my ($db, $task_id) = @_;
	$node->safe_psql($db, "SELECT jobs.enqueue('here', task_id => '$task_id')");
	$node->poll_query_until($db,
		"SELECT status = 'success' FROM jobs.job WHERE task_id = '$task_id'")
	  or diag("job $task_id in $db did not succeed");
	return $node->safe_psql($db,
		"SELECT status || ' ' || (result->>'database') FROM jobs.job WHERE task_id = '$task_id'");
}

sub workers_of
{
	my ($db) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_jobs worker' AND datname = '$db'");
}

install('db1');
install('db2');
is(run_job('db1', 'a1'), 'success db1', 'two databases: a handler job runs in the first');
is(run_job('db2', 'b1'), 'success db2', 'two databases: a handler job runs in the second');
ok( $node->poll_query_until('postgres', q{
		SELECT string_agg(datname || ':' || n, ' ' ORDER BY datname) = 'db1:1 db2:1'
		FROM (SELECT datname, count(*) n FROM pg_stat_activity
		      WHERE backend_type = 'pg_jobs worker' GROUP BY datname) w}),
	'two databases: pg_jobs.workers = 2 is shared, one worker each');
is($node->safe_psql('db1', q{
	SELECT e->>'serves_this_database', e->>'workers', e->'databases'
	FROM jobs.engine() e}),
	'true|1|["db1", "db2"]',
	'two databases: engine() names both and this database\'s share');
is($node->safe_psql('postgres',
		"SELECT string_agg(datname, ' ' ORDER BY datname) FROM pg_stat_activity WHERE backend_type = 'pg_jobs maintenance'"),
	'db1 db2', 'two databases: one maintenance worker each, none in postgres');

# Dropping the extension in one database leaves the other running, and gives
# it the whole budget.
$node->safe_psql('db2', "SELECT jobs.enqueue('here', '{}', run_at => now() + interval '2 seconds', task_id => 'b2')");
$node->safe_psql('db1', 'DROP EXTENSION pg_jobs CASCADE');
ok( $node->poll_query_until('postgres', q{
		SELECT count(*) = 0 FROM pg_stat_activity
		WHERE backend_type LIKE 'pg_jobs %' AND datname = 'db1'}),
	'drop: the workers and the maintenance worker of db1 exit');
ok($node->poll_query_until('db2', "SELECT status = 'success' FROM jobs.job WHERE task_id = 'b2'"),
	'drop: a job enqueued in db2 before the drop still runs');
is(run_job('db2', 'b3'), 'success db2', 'drop: jobs enqueued in db2 after the drop run');
ok($node->poll_query_until('postgres', "SELECT " . "(" . q{
		SELECT count(*) FROM pg_stat_activity
		WHERE backend_type = 'pg_jobs worker' AND datname = 'db2'} . ") = 2"),
	'drop: db2 now has both workers');

# A third database, without a restart.
install('db3');
is(run_job('db3', 'c1'), 'success db3', 'create: a job in a database that gets pg_jobs later runs');
ok( $node->poll_query_until('postgres', q{
		SELECT string_agg(datname || ':' || n, ' ' ORDER BY datname) = 'db2:1 db3:1'
		FROM (SELECT datname, count(*) n FROM pg_stat_activity
		      WHERE backend_type = 'pg_jobs worker' GROUP BY datname) w}),
	'create: the budget is shared again, one worker each');
is(run_job('db2', 'b4'), 'success db2', 'create: db2 still runs its jobs');

# The extension back in db1: served again.
$node->safe_psql('db1', "CREATE EXTENSION pg_jobs; $handler; SELECT jobs.register_task_type('here', 'where_am_i(jobs.job)')");
is(run_job('db1', 'a2'), 'success db1', 'recreate: db1 is served again after CREATE EXTENSION');

# pg_jobs.database restricts the workers to one database.
$node->append_conf('postgresql.conf', "pg_jobs.database = 'db2'");
$node->restart;
is(run_job('db2', 'b5'), 'success db2', 'restricted: the named database is served');
($ret, $out, $err) = $node->psql('db3',
	"SELECT name FROM jobs.register_task_type('here2', 'where_am_i(jobs.job)')");
like($err, qr/WARNING:  no pg_jobs worker runs the jobs of database "db3"/,
	'restricted: registering a handler in another database warns');
like($err, qr/pg_jobs.database restricts the workers to database "db2"/,
	'restricted: the warning says which database the workers serve');
is($node->safe_psql('db3', q{SELECT e->>'serves_this_database', e->'databases' FROM jobs.engine() e}),
	'false|["db2"]', 'restricted: engine() in another database names the one served');
is(workers_of('db3') . ' ' . workers_of('db2'), '0 2', 'restricted: all workers serve db2');

$node->stop;
done_testing();
