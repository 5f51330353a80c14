# The execution engine under failure: a worker killed with SIGKILL (crash
# restart), a worker terminated, an immediate stop, the launcher terminated,
# a normal stop within and beyond the shutdown grace period, timeouts,
# expired leases, and too few background worker slots.  In every case no job
# is lost, none finishes twice, and attempts are counted.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('engine');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'pg_jobs'
pg_jobs.database = 'postgres'
pg_jobs.workers = 2
pg_jobs.retry_base_delay = 50ms
pg_jobs.maintenance_interval = 100ms
pg_jobs.poll_interval = 200ms
pg_jobs.shutdown_grace = 2s
restart_after_crash = on
});
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_jobs;
	CREATE TABLE effects (task_id text, attempt int);
	-- Records its attempt, then sleeps input.seconds on the attempts listed
	-- in input.sleep_on, or with sleep_first only on its first run (a job
	-- requeued by a stop has a last_error but no new attempt), else always.
	CREATE FUNCTION work(job jobs.job) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO effects VALUES (job.task_id, job.attempts);
		IF job.input ? 'sleep_first' THEN
			IF job.last_error IS NULL THEN
				PERFORM pg_sleep((job.input->>'seconds')::float8);
			END IF;
		ELSIF NOT job.input ? 'sleep_on' OR job.input->'sleep_on' @> to_jsonb(job.attempts) THEN
			PERFORM pg_sleep((job.input->>'seconds')::float8);
		END IF;
		RETURN jsonb_build_object('attempt', job.attempts);
	END $$;
	SELECT jobs.register_task_type('work', 'work(jobs.job)', max_attempts => 2);
	SELECT jobs.register_task_type('work_once', 'work(jobs.job)', max_attempts => 1);
	SELECT jobs.register_task_type('batched', 'work(jobs.job)', max_attempts => 1);
	SELECT jobs.register_task_type('work_timeout', 'work(jobs.job)', timeout => '500 ms');
	SELECT jobs.register_task_type('remote', queue => 'remote', max_attempts => 2);
});

sub enqueue
{
	my ($type, $task_id, $input) = @_;
	$node->safe_psql('postgres',
		"SELECT jobs.enqueue('$type', '$input', task_id => '$task_id')");
}

sub wait_status
{
	my ($task_id, $status) = @_;
	ok( $node->poll_query_until('postgres',
			"SELECT status = '$status' FROM jobs.job WHERE task_id = '$task_id'"),
		"$task_id reaches $status");
}

sub worker_pid
{
	my ($task_id) = @_;
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM jobs._worker_slots() w JOIN jobs.job j ON j.id = w.job_id "
		  . "WHERE j.task_id = '$task_id' AND j.status = 'started'")
	  or die "no worker is running $task_id";
	return $node->safe_psql('postgres',
		"SELECT w.pid FROM jobs._worker_slots() w JOIN jobs.job j ON j.id = w.job_id "
		  . "WHERE j.task_id = '$task_id'");
}

sub job
{
	my ($task_id, $cols) = @_;
	return $node->safe_psql('postgres',
		"SELECT $cols FROM jobs.job WHERE task_id = '$task_id'");
}

sub effects
{
	my ($task_id) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce(string_agg(attempt::text, ',' ORDER BY attempt), '') "
		  . "FROM effects WHERE task_id = '$task_id'");
}

# 1. SIGKILL of a worker mid-job: the server restarts after the crash, the
# job is retried once and its first attempt's work is gone.
enqueue('work', 'kill9', '{"seconds": 60, "sleep_on": [1]}');
my $pid = worker_pid('kill9');
kill 'KILL', $pid;
wait_status('kill9', 'success');
is(job('kill9', 'attempts'), '2', 'SIGKILL: the job was retried once');
is(effects('kill9'), '2', 'SIGKILL: only the successful attempt left its work');
like(job('kill9', "last_error->>'error_type'"), qr/WorkerLost/,
	'SIGKILL: the lost attempt is recorded');
ok($node->log_contains('terminated by signal 9'), 'SIGKILL: the server saw the crash');

# 1b. SIGKILL of a worker holding a claimed batch: only the job whose handler
# was running is charged (max_attempts 1: it fails WorkerLost); the jobs
# claimed behind it never started, so they are requeued without a charge
# and succeed.  One worker, so that the batch is one worker's.
$node->safe_psql('postgres', 'ALTER SYSTEM SET pg_jobs.workers = 1');
$node->reload;
$node->poll_query_until('postgres', 'SELECT count(*) = 1 FROM jobs._worker_slots()')
  or die 'the second worker did not stop';
$node->safe_psql('postgres', q{
	BEGIN;
	-- quick runs first: the worker learns the type is short and its batch grows
	SELECT count(jobs.enqueue('batched', '{"seconds": 0}', task_id => 'quick-' || i)) FROM generate_series(1, 31) i;
	SELECT jobs.enqueue('batched', '{"seconds": 60, "sleep_first": true}', task_id => 'slow-in-batch');
	SELECT count(jobs.enqueue('batched', '{"seconds": 0}', task_id => 'behind-' || i)) FROM generate_series(1, 10) i;
	COMMIT;
});
$pid = worker_pid('slow-in-batch');
my $reserved = $node->safe_psql('postgres',
	"SELECT count(*) FROM jobs.job WHERE task_id LIKE 'behind-%' AND status = 'started'");
cmp_ok($reserved, '>', 0, 'SIGKILL in a batch: jobs behind the running one are claimed with it');
note("jobs claimed behind the running one: $reserved");
kill 'KILL', $pid;
$node->poll_query_until('postgres',
	"SELECT count(*) = 10 FROM jobs.job WHERE task_id LIKE 'behind-%' AND status = 'success'")
  or diag($node->safe_psql('postgres',
	"SELECT string_agg(task_id || ' ' || status || ' ' || attempts, ', ') FROM jobs.job WHERE task_id LIKE 'behind-%'"));
is($node->safe_psql('postgres',
		"SELECT count(*) || ' ' || max(attempts) FROM jobs.job WHERE task_id LIKE 'behind-%' AND status = 'success'"),
	'10 1', 'SIGKILL in a batch: the jobs that never started succeed on their one attempt');
wait_status('slow-in-batch', 'failure');
is(job('slow-in-batch', "result->>'error_type'"), 'WorkerLost',
	'SIGKILL in a batch: the running job is charged its attempt');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET pg_jobs.workers');
$node->reload;
$node->poll_query_until('postgres', 'SELECT count(*) = 2 FROM jobs._worker_slots()')
  or die 'the workers did not come back';

# 2. pg_terminate_backend of a worker is a graceful stop of that worker:
# the handler gets the grace period, then it is interrupted, its work rolled
# back and the job requeued without charging an attempt; a new worker runs
# it again.
enqueue('work', 'terminated', '{"seconds": 60, "sleep_first": true}');
$pid = worker_pid('terminated');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
wait_status('terminated', 'success');
is(job('terminated', 'attempts'), '1', 'terminated worker: the job ran again, its requeue charged no attempt');
is(job('terminated', "last_error->>'error_type'"), 'shutdown',
	'terminated worker: the interrupted attempt is recorded');
is(effects('terminated'), '1', 'terminated worker: the interrupted run left nothing');

# 3. Immediate stop with a job running: reconciled at the next start.
enqueue('work', 'immediate', '{"seconds": 60, "sleep_on": [1]}');
worker_pid('immediate');
$node->stop('immediate');
$node->start;
wait_status('immediate', 'success');
is(job('immediate', 'attempts'), '2', 'immediate stop: retried once after the restart');
is(effects('immediate'), '2', 'immediate stop: the interrupted attempt left nothing');

# 4. Terminating only the launcher does not disturb a running job, and the
# restarted launcher adopts the workers instead of starting more.
enqueue('work', 'launcher', '{"seconds": 2}');
worker_pid('launcher');
my $launcher = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_jobs launcher'");
$node->safe_psql('postgres', "SELECT pg_terminate_backend($launcher)");
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_jobs launcher' "
		  . "AND pid <> $launcher"),
	'launcher: restarted by the postmaster');
wait_status('launcher', 'success');
is(job('launcher', 'attempts'), '1', 'launcher: the running job finished on its first attempt');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_jobs worker'"),
	'2', 'launcher: still exactly two workers');

# 5. A normal stop lets a running handler finish within the grace period...
enqueue('work', 'graceful', '{"seconds": 0.5}');
worker_pid('graceful');
$node->stop('fast');
$node->start;
is(job('graceful', 'status'), 'success', 'graceful stop: the handler finished before shutdown');
is(job('graceful', 'attempts'), '1', 'graceful stop: on its first attempt');

# ... and requeues one that runs past it, without losing an attempt's work.
$node->append_conf('postgresql.conf', "pg_jobs.shutdown_grace = 300ms");
$node->reload;
enqueue('work_once', 'beyond_grace', '{"seconds": 60, "sleep_first": true}');
worker_pid('beyond_grace');
$node->stop('fast');
$node->start;
is(job('beyond_grace', "last_error->>'error_type'"), 'shutdown',
	'beyond grace: the job was requeued on shutdown');
wait_status('beyond_grace', 'success');
is(effects('beyond_grace'), '1', 'beyond grace: only the rerun left its work');
is(job('beyond_grace', 'attempts'), '1',
	'beyond grace: a job with max_attempts 1 keeps its only attempt through the requeue');

# 6. A handler that exceeds its timeout is stopped and fails, saying so.
enqueue('work_timeout', 'slow', '{"seconds": 60}');
wait_status('slow', 'failure');
is(job('slow', "result->>'error_message'"), 'timed out after 500 ms',
	'timeout: the failure says after how long');
is(effects('slow'), '', 'timeout: the handler\'s work was rolled back');

# 7. An external claim whose lease expires (backdated, not slept) is
# requeued by the launcher; the stale worker's report changes nothing.
enqueue('remote', 'leased', '{}');
$node->safe_psql('postgres', "SELECT jobs.claim('remote', 1, 'w1', '1 hour')");
$node->safe_psql('postgres',
	"UPDATE jobs.job SET lease_until = now() - interval '1 second' WHERE task_id = 'leased'");
wait_status('leased', 'pending');
my ($ret, $out, $err) = $node->psql('postgres', "SELECT jobs.succeed('leased', '{}')");
like($err, qr/cannot go from pending to success/, 'lease: the late report is refused');
is(job('leased', "attempts || ' ' || status"), '1 pending', 'lease: the job waits for a new claim');

# 8. A handler that logs and then fails: its entries are kept with the
# failure (its work is not), and survive a restart.
$node->safe_psql('postgres', q{
	CREATE FUNCTION chatty(job jobs.job) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO effects VALUES (job.task_id, job.attempts);
		RAISE NOTICE 'step one';
		PERFORM jobs.log('step two', 'warning', 'ocr', '{"page": 2}');
		RAISE EXCEPTION 'step three failed';
	END $$;
	SELECT jobs.register_task_type('chatty', 'chatty(jobs.job)');
});
enqueue('chatty', 'chatty', '{}');
wait_status('chatty', 'failure');
my $entries = q{SELECT string_agg(level || ':' || coalesce(source, '') || ':' || message, ' | ' ORDER BY id)
                FROM jobs.logs('chatty')};
my $logged = $node->safe_psql('postgres', $entries);
is($logged,
	'notice:handler:step one | warning:ocr:step two | error:handler:step three failed',
	'handler log: entries written before the failure are kept, the error last');
is(effects('chatty'), '', 'handler log: the failed handler\'s work was rolled back');
$node->restart;
is($node->safe_psql('postgres', $entries), $logged, 'handler log: the entries survive a restart');

# A job that stops being ours while its batch runs.  Workers run a batch
# optimistically and write all its successes with one statement; when that
# statement finds a job no longer started by the worker, the transaction is
# rolled back and the batch run again one job at a time.  Here 'rev' and
# 'vic' share the second batch of a lone worker (batches grow 1, 2, 4, ...)
# and rev's handler revokes vic, which the optimistic run of vic cannot see.
$node->safe_psql('postgres', q{
	CREATE FUNCTION revoker(me jobs.job) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO effects VALUES (me.task_id, me.attempts);
		UPDATE jobs.job j SET status = 'revoked', result = '{"reason": "revoked by rev"}'
		 WHERE j.task_id = me.input->>'victim';
		RETURN '{}';
	END $$;
	SELECT jobs.register_task_type('revoker', 'revoker(jobs.job)');
	ALTER SYSTEM SET pg_jobs.workers = 0;
	SELECT pg_reload_conf();
});
$node->poll_query_until('postgres', "SELECT count(*) = 0 FROM jobs._worker_slots()")
  or die "workers did not stop";
$node->safe_psql('postgres', q{
	SELECT jobs.enqueue('work', '{"seconds": 0}', task_id => 'b1');
	SELECT jobs.enqueue('revoker', '{"victim": "vic"}', task_id => 'rev');
	SELECT jobs.enqueue('work', '{"seconds": 0}', task_id => 'vic');
	SELECT jobs.enqueue('work', '{"seconds": 0}', task_id => 'b4');
	ALTER SYSTEM SET pg_jobs.workers = 1;
	SELECT pg_reload_conf();
});
wait_status('b4', 'success');
is(job('rev', 'status'), 'success', 'batch: the revoking job succeeded');
is(effects('rev'), '1', 'batch: its work took effect once, though it ran twice');
is(job('vic', "status || ' ' || (result->>'reason')"), 'revoked revoked by rev',
	'batch: the revoked job stays revoked');
is(effects('vic'), '', 'batch: the revoked job\'s optimistic run was rolled back');
is(effects('b1') . ' ' . effects('b4'), '1 1', 'batch: the other jobs ran once');
$node->safe_psql('postgres', q{
	ALTER SYSTEM RESET pg_jobs.workers;
	SELECT pg_reload_conf();
});

# The launcher vacuums job_hot after pg_jobs.hot_vacuum_threshold claims, so
# that the dead entries claims leave at the head of the pending index do not
# pile up between autovacuum runs.
my $vacuums = q{SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = 'jobs.job_hot'::regclass};
my $before = $node->safe_psql('postgres', $vacuums);
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET pg_jobs.hot_vacuum_threshold = 50;
	SELECT pg_reload_conf();
});
$node->safe_psql('postgres',
	"SELECT jobs.enqueue('work', '{\"seconds\": 0}', task_id => 'hv' || i) FROM generate_series(1, 120) i");
wait_status('hv120', 'success');
ok($node->poll_query_until('postgres', "SELECT ($vacuums) > $before"),
	'hot vacuum: the launcher vacuumed job_hot after the claims');
$node->safe_psql('postgres', q{
	ALTER SYSTEM RESET pg_jobs.hot_vacuum_threshold;
	SELECT pg_reload_conf();
});

# No job finished twice: one successful attempt's work per successful job.
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM jobs.job j
	WHERE j.status = 'success'
	  AND (SELECT count(*) FROM effects e WHERE e.task_id = j.task_id) <> 1}),
	'0', 'every successful job took effect exactly once');

$node->stop;

# 9. Too few background worker slots: jobs wait, the log says so once.
my $small = PostgreSQL::Test::Cluster->new('small');
$small->init;
$small->append_conf('postgresql.conf', q{
shared_preload_libraries = 'pg_jobs'
pg_jobs.database = 'postgres'
pg_jobs.workers = 4
pg_jobs.maintenance_interval = 50ms
max_worker_processes = 4
});
$small->start;
$small->safe_psql('postgres', q{
	CREATE EXTENSION pg_jobs;
	CREATE FUNCTION noop(job jobs.job) RETURNS jsonb LANGUAGE sql RETURN '{}'::jsonb;
	SELECT jobs.register_task_type('noop', 'noop(jobs.job)');
	SELECT jobs.enqueue('noop', task_id => 'n' || i) FROM generate_series(1, 5) i;
});
ok( $small->poll_query_until('postgres',
		"SELECT count(*) = 5 FROM jobs.job WHERE status = 'success'"),
	'slots: jobs still run on the workers that could start');
sleep(1);    # many launcher rounds at 50 ms
my $log = slurp_file($small->logfile);
my @said = ($log =~ /no background worker slot is free/g);
is(scalar(@said), 1, 'slots: the shortage is logged once, not in a loop');
$small->stop;

done_testing();
