# Backup and restore: pg_dump of a database with pg_jobs keeps every job.
#
# A database with jobs in every status (results, errors, acknowledged,
# a waiting job and its dependency, a child, a backdated history day and a
# row in the default partition), log entries, a trigger source and a
# schedule with its pg_cron job is dumped in plain and custom format.  Each
# dump is restored into the database recreated empty (pg_cron can only live
# in cron.database_name), with ON_ERROR_STOP / --exit-on-error, and a
# canonical snapshot of every user-data table, the sequences and the history
# partitions must equal the one taken before.  The restored database must go
# on working: new ids and log ids after the restored ones, a new job started
# and finished, finished jobs still immutable, retention dropping a restored
# history day.  The restore path of the lifecycle trigger (row_security off,
# superuser) must stay closed to every other client: an ordinary role, an
# admin with BYPASSRLS, and a superuser with row_security on.
#
# The launcher serves another database, so that nothing runs, requeues or
# creates partitions in the database while it is dropped and restored.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_cron,pg_jobs'
cron.database_name = 'app'
pg_jobs.database = 'engine'
pg_jobs.maintenance_interval = 100ms
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE DATABASE engine;
	CREATE DATABASE app;
	CREATE ROLE alice LOGIN;
});

$node->safe_psql('app', q{
	CREATE EXTENSION pg_cron;
	CREATE EXTENSION pg_jobs;
	CREATE ROLE boss LOGIN BYPASSRLS IN ROLE jobs_admin;
	SELECT jobs.register_task_type('work', max_attempts => 3);
	SELECT jobs.register_task_type('report', display_name => 'Monthly Report', priority => 1);
	INSERT INTO jobs.trigger_source VALUES ('mine', 'My Source');
	SELECT jobs.schedule('nightly', '17 3 29 2 *', 'report', '{"full": true}');

	-- history of an old day and of the default partition, as an import would
	-- write it (the lifecycle trigger off)
	DO $$
	DECLARE d date := now()::date - 12;
	BEGIN
		EXECUTE format('CREATE TABLE jobs.%I PARTITION OF jobs.job_done FOR VALUES FROM (%L) TO (%L)',
		               'job_done_' || to_char(d, 'YYYYMMDD'), d::timestamptz, (d + 1)::timestamptz);
	END $$;
	SET session_replication_role = replica;
	INSERT INTO jobs.job (id, task_id, task_type, queue, status, owner, input, result, priority,
	                      run_at, attempts, max_attempts, date_created, date_started, date_done)
	VALUES (nextval('jobs.job_id_seq'), 'old-day', 'work', 'default', 'success', 'alice', '{"n": 1}',
	        '{"ok": 1}', 2, now() - interval '12 days', 1, 3, now()::date - 12 + interval '1 hour',
	        now()::date - 12 + interval '2 hours', now()::date - 12 + interval '3 hours'),
	       (nextval('jobs.job_id_seq'), 'old-default', 'work', 'default', 'revoked', NULL, '{}',
	        NULL, 2, now() - interval '20 days', 0, 3, now() - interval '20 days', NULL,
	        now() - interval '20 days');
	RESET session_replication_role;

	SELECT jobs.enqueue('work', '{"n": 2}', owner => 'alice', task_id => 'pending-1');
	SELECT jobs.enqueue('work', '{"n": 3}', task_id => 'waiting',
	                    depends_on => ARRAY[(SELECT id FROM jobs.job WHERE task_id = 'pending-1')],
	                    trigger_source => 'mine', dedup_key => 'k1');
	SELECT jobs.enqueue('report', task_id => 'running', priority => 0);
	SELECT jobs.start('running');
	SELECT jobs.enqueue('work', task_id => 'child',
	                    parent_id => (SELECT id FROM jobs.job WHERE task_id = 'running'));
	SELECT jobs.enqueue('work', task_id => 'ok');
	SELECT jobs.start('ok');
	SELECT jobs.succeed('ok', '{"document_id": 7}');
	SELECT jobs.enqueue('work', task_id => 'bad');
	SELECT jobs.start('bad');
	SELECT jobs.fail('bad', 'it broke', 'ValueError', 'Traceback ...');
	SELECT jobs.enqueue('work', task_id => 'dup');
	SELECT jobs.start('dup');
	SELECT jobs.succeed('dup', '{"duplicate_of": 7}');
	SELECT jobs.enqueue('work', task_id => 'gone');
	SELECT jobs.revoke('gone');
	SELECT jobs.acknowledge(ARRAY[(SELECT id FROM jobs.job WHERE task_id = 'ok')]);
	SELECT jobs.log('started', task_id => 'running');
	SELECT jobs.log('half way', 'warning', 'handler', '{"pct": 50}', task_id => 'running');
	SELECT jobs.log('done', task_id => 'ok');
	INSERT INTO jobs.job_log (job_id, message)
	SELECT id, 'old entry' FROM jobs.job WHERE task_id = 'old-day';
});

# Every user-data table, the sequences, the history partitions and pg_cron's
# job, as text; identical before and after a restore.
my $snapshot_sql = q{
	SELECT concat_ws(E'\n--\n',
		(SELECT string_agg(format('%s %s', j.tableoid::regclass, j), E'\n' ORDER BY j.id) FROM jobs.job j),
		(SELECT string_agg(l::text, E'\n' ORDER BY l.id) FROM jobs.job_log l),
		(SELECT string_agg(d::text, E'\n' ORDER BY d.job_id, d.depends_on_id) FROM jobs.job_dependency d),
		(SELECT string_agg(s::text, E'\n' ORDER BY s.owner, s.name) FROM jobs.schedule s),
		(SELECT string_agg(format('%s %s %s %s %s', c.jobid, c.jobname, c.schedule, c.command, c.username),
		                   E'\n' ORDER BY c.jobid) FROM cron.job c),
		(SELECT string_agg(t::text, E'\n' ORDER BY t.name) FROM jobs.task_type t),
		(SELECT string_agg(t::text, E'\n' ORDER BY t.name) FROM jobs.trigger_source t),
		(SELECT string_agg(s::text, E'\n' ORDER BY s.name) FROM jobs.setting s),
		(SELECT format('%s %s', last_value, is_called) FROM jobs.job_id_seq),
		(SELECT format('%s %s', last_value, is_called) FROM jobs.job_log_id_seq),
		(SELECT string_agg(format('%s %s', c.relname, pg_get_expr(c.relpartbound, c.oid)),
		                   E'\n' ORDER BY c.relname)
		 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		 WHERE i.inhparent = 'jobs.job_done'::regclass))
};
my $before = $node->safe_psql('app', $snapshot_sql);
like($before, qr/half way.*pg_jobs:nightly.*job_done_default DEFAULT/s,
	'the snapshot holds log entries, the pg_cron job of the schedule and the partitions');
is($node->safe_psql('app', q{
		SELECT string_agg(DISTINCT status::text, ',' ORDER BY status::text) FROM jobs.job}),
	'failure,pending,revoked,started,success', 'the source database has jobs in every status');

my $plain = $node->basedir . '/app.sql';
my $custom = $node->basedir . '/app.dump';
$node->command_ok([ 'pg_dump', '-f', $plain, 'app' ], 'pg_dump in plain format');
$node->command_ok([ 'pg_dump', '-Fc', '-f', $custom, 'app' ], 'pg_dump in custom format');

sub recreate
{
	$node->safe_psql('postgres', q{DROP DATABASE app WITH (FORCE)});
	$node->safe_psql('postgres', q{CREATE DATABASE app});
}

# ---- plain format: psql, stopping at the first error
recreate();
my ($ret, $stdout, $stderr) = $node->psql('app', undef,
	extra_params => [ '-f', $plain ], on_error_stop => 1);
is($ret, 0, 'the plain dump restores with psql without an error');
is($stderr, '', 'the plain restore prints no error or warning');
is($node->safe_psql('app', $snapshot_sql), $before,
	'after the plain restore every job, log entry, dependency, schedule and sequence is as before');

# The restored database works.
my $max_id = $node->safe_psql('app', q{SELECT max(id) FROM jobs.job});
is($node->safe_psql('app', q{
		SELECT id > (SELECT max(id) FROM jobs.job) FROM jobs.enqueue('work', task_id => 'new')}),
	't', 'a new job gets an id after the restored ones');
$node->safe_psql('app', q{SELECT FROM jobs.start('new')});
is($node->safe_psql('app', q{
		SELECT status || ' ' || attempts FROM jobs.succeed('new', '{"x": 1}')}),
	'success 1', 'a new job is started and finished in the restored database');
is($node->safe_psql('app', q{
		SELECT jobs.log('after restore', task_id => 'new') > max(id) FILTER (WHERE message <> 'after restore')
		FROM jobs.job_log}),
	't', 'a new log entry gets an id after the restored ones');
($ret, $stdout, $stderr) = $node->psql('app',
	q{UPDATE jobs.job SET status = 'pending' WHERE task_id = 'ok'});
like($stderr, qr/task ok cannot go from success to pending/,
	'a restored finished job is still immutable');
$node->safe_psql('app', q{SELECT FROM jobs.start('pending-1')});
$node->safe_psql('app', q{SELECT FROM jobs.succeed('pending-1')});
is($node->safe_psql('app', q{
		SELECT format('%s %s', status, run_at < now()) FROM jobs.job WHERE task_id = 'waiting'}),
	'pending t', 'a restored waiting job is released when its restored dependency succeeds');
is($node->safe_psql('app', q{
		SET pg_jobs.retention = '7d';
		SELECT format('%s %s', r->'partitions_dropped', r->>'rows_deleted') FROM jobs.apply_retention() r}),
	'["job_done_' . $node->safe_psql('app', q{SELECT to_char(now()::date - 12, 'YYYYMMDD')})
	  . '"] 2',
	'retention drops the restored history day and deletes the restored default-partition row');
is($node->safe_psql('app', q{
		SELECT count(*) FROM jobs.job WHERE task_id LIKE 'old-%'}),
	'0', 'the jobs past retention are gone');

# The restore path is closed to every client but a superuser loading rows
# with row_security off.
my $finished_row = q{
	INSERT INTO jobs.job (task_id, task_type, queue, status, owner, priority, run_at, attempts,
	                      max_attempts, date_created, date_started, date_done, result)
	VALUES ('forged', 'work', 'default', 'success', current_user, 2, now(), 1, 1,
	        now(), now(), now(), '{"forged": true}')};
($ret, $stdout, $stderr) = $node->psql('app', "SET row_security = off; $finished_row",
	extra_params => [ '-U', 'alice' ]);
like($stderr, qr/query would be affected by row-level security policy for table "job"/,
	'an ordinary role with row_security off cannot insert a finished job');
($ret, $stdout, $stderr) = $node->psql('app', $finished_row, extra_params => [ '-U', 'alice' ]);
like($stderr, qr/permission denied for table job/,
	'an ordinary role with row_security on cannot insert a finished job');
($ret, $stdout, $stderr) = $node->psql('app', "SET row_security = off; $finished_row",
	extra_params => [ '-U', 'boss' ]);
like($stderr, qr/a new job must be pending, not success/,
	'an admin with BYPASSRLS and row_security off gets the lifecycle check');
($ret, $stdout, $stderr) = $node->psql('app', $finished_row);
like($stderr, qr/a new job must be pending, not success/,
	'a superuser with row_security on gets the lifecycle check');
is($node->safe_psql('app', q{
		SET row_security = off;
		INSERT INTO jobs.job (task_id, task_type, queue, status, owner, priority, run_at,
		                      attempts, max_attempts, date_created)
		VALUES ('forged-2', 'work', 'default', 'pending', 'boss', 2, now(), 7, 1,
		        '2000-01-01') RETURNING id},
		extra_params => [ '-U', 'boss' ]) > $max_id ? 'ok' : 'no',
	'ok', 'an admin\'s insert of a complete pending row is a new job');
is($node->safe_psql('app', q{
		SELECT format('%s %s', attempts, date_created > now() - interval '1 hour')
		FROM jobs.job WHERE task_id = 'forged-2'}),
	'0 t', 'its attempts and date_created are the lifecycle\'s, not the admin\'s');
is($node->safe_psql('app', q{
		SET row_security = off;
		SELECT format('%s %s %s', status, attempts, date_created IS NOT NULL)
		FROM jobs.enqueue('work', task_id => 'su-enqueue')}),
	'pending 0 t', 'a superuser\'s enqueue with row_security off is an ordinary enqueue');
is($node->safe_psql('app', q{SELECT count(*) FROM jobs.job WHERE task_id = 'forged'}),
	'0', 'no forged finished job exists');

# ---- custom format: pg_restore, stopping at the first error
recreate();
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', 'app', $custom ],
	'the custom dump restores with pg_restore without an error');
is($node->safe_psql('app', $snapshot_sql), $before,
	'after pg_restore every job, log entry, dependency, schedule and sequence is as before');
$node->safe_psql('app', q{SELECT FROM jobs.enqueue('work', task_id => 'new')});
$node->safe_psql('app', q{SELECT FROM jobs.start('new')});
is($node->safe_psql('app', q{SELECT status FROM jobs.succeed('new')}), 'success',
	'a new job is started and finished after pg_restore');
is($node->safe_psql('app', q{SELECT jobs.ensure_partitions(7) >= 0}), 't',
	'the launcher\'s partition maintenance works on the restored partitions');

done_testing();
