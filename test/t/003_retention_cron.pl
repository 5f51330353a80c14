# Retention run by the launcher, and schedules run by pg_cron.
#
# Retention: finished jobs are backdated (history partitions of old days and
# rows in the default partition), a short pg_jobs.retention is configured
# with ALTER SYSTEM and a reload, and the launcher removes them with their
# logs while an old in-flight job and today's history stay; jobs.health()
# reports the run.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('retention');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_jobs'
pg_jobs.maintenance_interval = 100ms
});
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_jobs;
	SELECT jobs.register_task_type('nightly');
	CREATE FUNCTION old_job(tid text, st jobs.status, done timestamptz) RETURNS void
	LANGUAGE plpgsql AS $$
	DECLARE
		jid bigint := nextval('jobs.job_id_seq');
	BEGIN
		SET LOCAL session_replication_role = replica;
		INSERT INTO jobs.job (id, task_id, task_type, queue, status, owner, input, priority,
		                      run_at, attempts, max_attempts, date_created, date_started, date_done)
		VALUES (jid, tid, 'nightly', 'default', st, NULL, '{}', 2, done, 1, 1, done, done, done);
		INSERT INTO jobs.job_log (job_id, message) VALUES (jid, 'old entry');
	END $$;
	DO $$
	DECLARE d date := now()::date - 12;
	BEGIN
		EXECUTE format('CREATE TABLE jobs.%I PARTITION OF jobs.job_done FOR VALUES FROM (%L) TO (%L)',
		               'job_done_' || to_char(d, 'YYYYMMDD'), d::timestamptz, (d + 1)::timestamptz);
	END $$;
	SELECT old_job('old-day-1', 'success', now()::date - 12 + interval '3 hours');
	SELECT old_job('old-day-2', 'failure', now()::date - 12 + interval '4 hours');
	SELECT old_job('old-default', 'revoked', now() - interval '20 days');
	SELECT jobs.enqueue('nightly', task_id => 'in-flight');
	SELECT jobs.enqueue('nightly', task_id => 'today');
	SELECT jobs.start('today');
	SELECT jobs.succeed('today');
});
is($node->safe_psql('postgres', q{SELECT count(*) FROM jobs.job}), '5',
	'five jobs before retention: three backdated, one in flight, one finished today');

# The default retention (30 days) keeps them all: wait for a run that
# started after the jobs were backdated (a reload triggers one).
my $since = $node->safe_psql('postgres', q{SELECT clock_timestamp()});
$node->safe_psql('postgres', q{SELECT pg_reload_conf()});
$node->poll_query_until('postgres',
	qq{SELECT last_run > '$since' FROM jobs.maintenance_state WHERE name = 'retention'})
  or die 'the launcher did not run retention';
is($node->safe_psql('postgres', q{SELECT count(*) FROM jobs.job}), '5',
	'the default retention of 30 days keeps jobs finished 12 and 20 days ago');

$node->safe_psql('postgres', q{ALTER SYSTEM SET pg_jobs.retention = '7d'; SELECT pg_reload_conf()});
$node->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM jobs.job WHERE task_id LIKE 'old-%'})
  or die 'the launcher did not remove the old jobs';
pass('after a reload with pg_jobs.retention = 7d the launcher removes the backdated jobs');

is($node->safe_psql('postgres',
		q{SELECT string_agg(task_id || ':' || status, ',' ORDER BY task_id) FROM jobs.job}),
	'in-flight:pending,today:success', 'the in-flight job and today\'s job are kept');
is($node->safe_psql('postgres', q{SELECT count(*) FROM jobs.job_log WHERE message = 'old entry'}),
	'0', 'the log entries of the removed jobs are gone');
is($node->safe_psql('postgres', q{
		SELECT count(*) FROM pg_class
		WHERE relname = 'job_done_' || to_char(now()::date - 12, 'YYYYMMDD')}),
	'0', 'the history partition of the old day was dropped');
is($node->safe_psql('postgres', q{
		SELECT format('%s %s %s %s', r->>'retention', r->>'rows_deleted',
		              jsonb_array_length(r->'partitions_dropped'), r->>'more')
		FROM jobs.health() h, LATERAL (SELECT h->'last_retention') AS x(r)}),
	'7 days 3 1 false',
	'jobs.health() reports the last retention run: 3 jobs removed, 1 partition dropped');
ok(!$node->log_contains('retention failed'), 'no retention run failed');

# A retention that fails is logged and undone; the launcher goes on.
my $launcher = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_jobs launcher'});
my $offset = -s $node->logfile;
$node->safe_psql('postgres', q{
	ALTER FUNCTION jobs.apply_retention(integer) RENAME TO apply_retention_away;
	SELECT pg_reload_conf();
});
$node->wait_for_log(qr/pg_jobs: retention failed: function jobs.apply_retention\(\) does not exist/, $offset);
$node->safe_psql('postgres', q{
	ALTER FUNCTION jobs.apply_retention_away(integer) RENAME TO apply_retention;
	SELECT jobs.enqueue('nightly', task_id => 'after-failure');
});
is($node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_jobs launcher'}),
	$launcher, 'a failing retention run is logged and the launcher keeps running');

# Without pg_cron in the database, jobs.schedule() says what is missing.
my ($ret, $out, $err) = $node->psql('postgres',
	q{SELECT jobs.schedule('nightly-run', '0 3 * * *', 'nightly')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  55000: .*pg_cron/, 'scheduling without pg_cron fails with 55000');
like($err, qr/HINT:  .*CREATE EXTENSION pg_cron/, 'and hints at installing it');

$node->stop;

# Schedules: a real pg_cron run.  pg_cron 1.4 fires at minute boundaries, so
# this waits up to the default timeout (180 s) for the first run.  Its
# commands run in background workers as the scheduling role, which must be
# able to log in (PostgreSQL 15 refuses NOLOGIN roles to background workers).
my $cron = PostgreSQL::Test::Cluster->new('cron');
$cron->init;
$cron->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_cron,pg_jobs'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 16
pg_jobs.maintenance_interval = 100ms
});
$cron->start;
$cron->safe_psql('postgres', q{
	CREATE EXTENSION pg_cron;
	CREATE EXTENSION pg_jobs;
	SELECT jobs.register_task_type('report');
	CREATE ROLE cron_alice LOGIN IN ROLE jobs_scheduler;
	GRANT USAGE ON SCHEMA cron TO jobs_scheduler;
});
my $jobid = $cron->safe_psql('postgres',
	q{SELECT jobs.schedule('every-minute', '* * * * *', 'report', '{"kind": "tap"}')},
	extra_params => [ '-U', 'cron_alice' ]);
like($jobid, qr/^\d+$/, 'jobs.schedule() returns the pg_cron job id');
is($cron->safe_psql('postgres', q{SELECT username || ' ' || command FROM cron.job}),
	q{cron_alice SELECT jobs._scheduled_enqueue('every-minute')},
	'the pg_cron job belongs to the scheduling role and only names the schedule');

$cron->poll_query_until('postgres',
	q{SELECT count(*) > 0 FROM jobs.job WHERE trigger_source = 'scheduled'})
  or diag($cron->safe_psql('postgres',
	q{SELECT string_agg(status || ': ' || coalesce(return_message, ''), E'\n') FROM cron.job_run_details}));
is($cron->safe_psql('postgres', q{
		SELECT format('%s %s %s %s', trigger_source, owner, task_type, input)
		FROM jobs.job WHERE trigger_source = 'scheduled' ORDER BY id LIMIT 1}),
	'scheduled cron_alice report {"kind": "tap", "_schedule": "every-minute"}',
	'pg_cron enqueued a scheduled job owned by the scheduling role that names its schedule');
is($cron->safe_psql('postgres',
		q{SELECT jobs.unschedule('every-minute')}, extra_params => [ '-U', 'cron_alice' ]),
	't', 'the schedule can be removed by its owner');
is($cron->safe_psql('postgres', q{SELECT count(*) FROM cron.job}), '0',
	'and its pg_cron job is gone');
$cron->stop;

done_testing();
