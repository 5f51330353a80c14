# Claims stay index lookups when the statistics are stale.
#
# Right after a burst of enqueues, job_hot's statistics may still describe
# it as it was when last analyzed: pages full of finished jobs' dead rows and
# almost no pending job.  Planned from those numbers, a claim that joined its
# chosen ids back to job_hot looped over every pending job once per claimed
# job (a second per claim with a million pending jobs), and a claim could
# sort the whole pending set.  The claims now hand the chosen ids to the
# UPDATE as an array and plan without sorts; auto_explain shows the plans
# the worker and jobs.claim() actually used.  Pending jobs of a type without
# a handler (an external queue's backlog) are not in the worker's way: it
# reads the handler types' own index ranges, also when idle.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('plans');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'pg_jobs, auto_explain'
pg_jobs.database = 'postgres'
pg_jobs.workers = 0
pg_jobs.hot_vacuum_threshold = 0
autovacuum = off
});
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_jobs;
	CREATE FUNCTION noop(job jobs.job) RETURNS jsonb LANGUAGE sql RETURN '{}'::jsonb;
	SELECT jobs.register_task_type('noop', 'noop(jobs.job)');
	SELECT jobs.register_task_type('ext', queue => 'ext');
	-- stale statistics: analyzed while full of finished jobs' dead rows
	SELECT count(*) FROM jobs.enqueue_many('ext', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 20000)));
	UPDATE jobs.job SET status = 'started' WHERE status = 'pending';
	UPDATE jobs.job SET status = 'success' WHERE status = 'started';
	ANALYZE jobs.job_hot;
	-- then a burst of enqueues
	SELECT count(*) FROM jobs.enqueue_many('noop', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 20000)));
	SELECT count(*) FROM jobs.enqueue_many('ext', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 20000)));
});
my $reltuples = $node->safe_psql('postgres',
	"SELECT reltuples FROM pg_class WHERE oid = 'jobs.job_hot'::regclass");
cmp_ok($reltuples, '<', 1000, 'the statistics are stale: job_hot looks almost empty');

$node->append_conf('postgresql.conf', q{
auto_explain.log_min_duration = 0
auto_explain.log_nested_statements = on
pg_jobs.workers = 1
});
$node->reload;
ok( $node->poll_query_until('postgres',
		"SELECT NOT EXISTS (SELECT 1 FROM jobs.job WHERE task_type = 'noop' AND status <> 'success')"),
	'the worker ran the burst');
$node->safe_psql('postgres', q{
	SELECT count(*) FROM jobs.claim('ext', 1, 'plans');
	SELECT count(*) FROM jobs.claim('ext', 100, 'plans');
});

# Each logged plan of a claim, from "Query Text" to the next log line: the
# external claim (jobs.claim, one statement), and the worker's two steps
# (lock the candidates, then claim those that fit its budget).
my $log = slurp_file($node->logfile);
my @plans = ($log =~ /(Query Text:\s+WITH n AS MATERIALIZED.*?UPDATE jobs\.job j\s+SET status = 'started'.*?)(?=\n\S)/gs);
my @external = grep { /coalesce\(/ } @plans;
my @lock = ($log =~ /(Query Text: SELECT x\.id, x\.task_type FROM jobs\.task_type t.*?)(?=\n\S)/gs);
my @worker = ($log =~ /(Query Text: UPDATE jobs\.job j SET status = 'started', worker = \$1.*?)(?=\n\S)/gs);
cmp_ok(scalar(@worker), '>', 3, 'auto_explain logged the worker\'s claims');
cmp_ok(scalar(@lock), '>', 3, 'auto_explain logged the worker\'s candidate locks');
cmp_ok(scalar(@external), '>=', 2, 'auto_explain logged jobs.claim()');
is(scalar(grep { !/Index Cond: \(id = ANY/ } (@external, @worker)), 0,
	'every claim updates its jobs by an index lookup of their ids');
is(scalar(grep { /Join Filter: \(\S+\.id = n\.id\)/ } @external), 0,
	'no claim loops over the pending jobs for each claimed one');
is(scalar(grep { /Sort Key: c\.priority/ } (@external, @lock)), 0, 'no claim sorts the pending jobs');

# The 20000 pending jobs of 'ext' (no handler) are never stepped over by the
# worker: it reads each handler type's own range of job_hot_type_next, both
# to claim and, once idle, to find the next delayed job.
is(scalar(grep { !/Index Scan using job_hot_type_next on job_hot c\b[^\n]*\n\s+Index Cond: \(task_type = / } @lock),
	0, 'the worker claims from each handler type\'s own index range');
my @next = ($log =~ /(Query Text: SELECT pg_catalog\.ceil.*?)(?=\n\S)/gs);
cmp_ok(scalar(@next), '>=', 1, 'auto_explain logged the idle worker\'s look for the next delayed job');
is(scalar(grep { /Seq Scan on job_hot/ } @next), 0,
	'the idle worker does not read other types\' pending jobs');

$node->stop;
done_testing();
