# A cluster with pg_jobs preloaded: jobs go through their lifecycle, the
# server restarts (cleanly, then after an immediate stop that forces crash
# recovery), and every job, its status and its timestamps are intact.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('restart');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_jobs'");
$node->start;

is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'pg_jobs', 'pg_jobs is preloaded');

$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_jobs;
	SELECT jobs.register_task_type('consume', display_name => 'Consume File');
	SELECT jobs.enqueue('consume', '{"filename": "a.pdf"}', 'folder_consume', task_id => 'done-1');
	SELECT jobs.start('done-1');
	SELECT jobs.succeed('done-1', '{"document_id": 42}');
	SELECT jobs.enqueue('consume', task_id => 'failed-1');
	SELECT jobs.start('failed-1');
	SELECT jobs.fail('failed-1', 'corrupt file', 'PDFError', 'Traceback ...');
	SELECT jobs.enqueue('consume', task_id => 'running-1');
	SELECT jobs.start('running-1');
	SELECT jobs.enqueue('consume', task_id => 'waiting-1');
});

my $snapshot = q{
	SELECT string_agg(format('%s|%s|%s|%s|%s|%s|%s|%s|%s', task_id, status, trigger_source,
	                         attempts, input, result, date_created, date_started, date_done),
	                  E'\n' ORDER BY task_id)
	FROM jobs.job
};
my $before = $node->safe_psql('postgres', $snapshot);
like($before, qr/^done-1\|success\|folder_consume\|1\|\{"filename": "a.pdf"\}\|\{"document_id": 42\}/m,
	'a finished job is recorded with its result');
like($before, qr/^failed-1\|failure\|manual\|1\|.*"error_message": "corrupt file"/m,
	'a failed job is recorded with its error');

$node->restart;
is($node->safe_psql('postgres', $snapshot), $before,
	'every job and its timestamps survive a clean restart');

$node->stop('immediate');
$node->start;
is($node->safe_psql('postgres', $snapshot), $before,
	'every job and its timestamps survive crash recovery after an immediate stop');

# The lifecycle still holds after the restarts.
$node->safe_psql('postgres', q{SELECT jobs.succeed('running-1', '{"document_id": 43}')});
is($node->safe_psql('postgres', q{SELECT status FROM jobs.job WHERE task_id = 'running-1'}),
	'success', 'a job started before the restarts can finish after them');
my ($ret, $out, $err) = $node->psql('postgres',
	q{UPDATE jobs.job SET status = 'started' WHERE task_id = 'done-1'});
like($err, qr/cannot go from success to started/,
	'a finished job still cannot be reopened');

$node->stop;
done_testing();
