# Red team, worker and launcher paths that need a server of their own: a
# handler that swallows every cancel does not hold a fast shutdown, and the
# job it ran is requeued, not lost; a login role with CREATE on public plants
# operators and functions the launcher and the workers could resolve, and
# gains nothing while they claim, run, finish and reconcile jobs.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = PostgreSQL::Test::Cluster->new('redteam');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'pg_jobs'
pg_jobs.workers = 2
pg_jobs.maintenance_interval = 100ms
pg_jobs.poll_interval = 200ms
pg_jobs.shutdown_grace = 500ms
pg_jobs.interrupt_grace = 500ms
});
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_jobs;
	CREATE ROLE mallory LOGIN;
	CREATE ROLE victim NOLOGIN;
	GRANT CREATE ON SCHEMA public TO mallory;     -- as in a database from before PostgreSQL 15
	CREATE TABLE public.trojan_ran (who name);
	GRANT INSERT ON public.trojan_ran TO PUBLIC;
	CREATE FUNCTION public.stubborn(job jobs.job) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		LOOP
			BEGIN
				PERFORM pg_sleep(10);
			EXCEPTION WHEN query_canceled THEN
				NULL;
			END;
		END LOOP;
	END $$;
	CREATE FUNCTION public.quick(job jobs.job) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
	SELECT jobs.register_task_type('stubborn', 'public.stubborn(jobs.job)', max_attempts => 3);
	SELECT jobs.register_task_type('quick', 'public.quick(jobs.job)');
	SELECT jobs.register_task_type('leased', queue => 'default');
	CREATE FUNCTION public.failing(job jobs.job) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		RAISE EXCEPTION 'this handler fails';
	END $$;
	SELECT jobs.register_task_type('failing', 'public.failing(jobs.job)');
});

# mallory's trojans: every operator and function name the engine's own SQL
# might resolve through public, each recording who ran it.
$node->safe_psql('postgres', q{
	SET ROLE mallory;
	CREATE FUNCTION public.evil_status(a jobs.status, b jobs.status) RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.trojan_ran VALUES (current_user);
		IF current_user <> 'mallory' THEN EXECUTE 'ALTER ROLE mallory SUPERUSER'; END IF;
		RETURN a::pg_catalog.text OPERATOR(pg_catalog.=) b::pg_catalog.text;
	END $$;
	CREATE OPERATOR public.= (LEFTARG = jobs.status, RIGHTARG = jobs.status, FUNCTION = public.evil_status);
	CREATE OPERATOR public.<> (LEFTARG = jobs.status, RIGHTARG = jobs.status, FUNCTION = public.evil_status);
	CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.trojan_ran VALUES (current_user);
		IF current_user <> 'mallory' THEN EXECUTE 'ALTER ROLE mallory SUPERUSER'; END IF;
		RETURN pg_catalog.now();
	END $$;
});

# The workers claim, run and finish; the launcher reconciles an expired lease.
# (This script's own queries run as a superuser with public on the path, so
# they name their operators: the trojans would catch them as they would any
# careless superuser session.)
$node->safe_psql('postgres', q{
	SELECT jobs.enqueue('quick', owner => 'victim') FROM generate_series(1, 20);
	SELECT jobs.enqueue('leased', owner => 'victim', task_id => 'leased-1');
	SELECT count(*) FROM jobs.claim('default', 1, 'runner-1', lease => '100 ms');
});
$node->poll_query_until('postgres',
	q{SELECT count(*) = 20 FROM jobs.job WHERE task_type = 'quick' AND status OPERATOR(pg_catalog.=) 'success'})
  or die 'quick jobs did not finish';
$node->poll_query_until('postgres',
	q{SELECT status OPERATOR(pg_catalog.<>) 'started' FROM jobs.job WHERE task_id = 'leased-1'})
  or die 'the expired lease was not reconciled';
is($node->safe_psql('postgres', q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'}),
	'f', 'the trojans in public made nobody superuser');
is($node->safe_psql('postgres', q{SELECT count(*) FROM public.trojan_ran WHERE who <> 'mallory'}),
	'0', 'no trojan ran as the workers or the launcher');

# A row lock held on a due job: the workers must not spin on it (they
# claimed ~750 times a second before).  Commits of the database over two
# seconds, while nothing else runs, count the workers' claims.
my $locker = $node->background_psql('postgres');
$node->safe_psql('postgres', q{SELECT jobs.enqueue('quick', owner => 'victim', task_id => 'locked-1', run_at => now() + interval '300 ms')});
$locker->query_safe(q{BEGIN; SELECT 1 FROM jobs.job WHERE task_id = 'locked-1' FOR UPDATE});
sleep(1);
my $commits = q{SELECT pg_stat_force_next_flush(), pg_stat_clear_snapshot();
	SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()};
my $c0 = $node->safe_psql('postgres', $commits);
sleep(2);
my $c1 = $node->safe_psql('postgres', $commits);
$c0 =~ s/.*\n//s;
$c1 =~ s/.*\n//s;
cmp_ok($c1 - $c0, '<', 300, 'a locked due job does not make the workers claim in a loop');
note("commits in 2 s with a due job locked: " . ($c1 - $c0));
$locker->query_safe('COMMIT');
$locker->quit;
$node->poll_query_until('postgres',
	q{SELECT status OPERATOR(pg_catalog.=) 'success' FROM jobs.job WHERE task_id = 'locked-1'})
  or die 'the locked job did not run once released';

# Enqueues of a type without a handler (a Celery-tracked type) wake no
# worker: before, every such commit woke every worker, which claimed and
# found nothing.  300 enqueues, one commit each: the database's commits
# besides them are the maintenance worker's rounds and these queries.
my $enqueues = join('', map { "SELECT 1 FROM jobs.enqueue('leased', owner => 'victim');\n" } 1 .. 300);
# (Workers report their commits at most once a second: wait for that.)
sleep(1.5);
my $w0 = $node->safe_psql('postgres', $commits);
$node->safe_psql('postgres', $enqueues);
sleep(1.5);
my $w1 = $node->safe_psql('postgres', $commits);
$w0 =~ s/.*\n//s;
$w1 =~ s/.*\n//s;
cmp_ok($w1 - $w0 - 300, '<', 150, 'enqueues of a type without a handler wake no worker');
note("commits besides 300 enqueues of a tracked-only type: " . ($w1 - $w0 - 300));

# A failing handler leaves no DEBUG lines of its rollback in the server log
# (its raised log level used to be in force while the rollback ran).
$node->safe_psql('postgres', q{SELECT count(jobs.enqueue('failing', owner => 'victim')) FROM generate_series(1, 5)});
$node->poll_query_until('postgres',
	q{SELECT count(*) = 5 FROM jobs.job WHERE task_type = 'failing' AND status OPERATOR(pg_catalog.=) 'failure'})
  or die 'the failing jobs did not fail';
ok(!$node->log_contains(qr/DEBUG:  AbortSubTransaction/),
	'a failed handler writes no DEBUG lines to the server log');

# A handler that swallows every cancel, running when the server stops fast.
$node->safe_psql('postgres', q{SELECT jobs.enqueue('stubborn', owner => 'victim', task_id => 'stubborn-1')});
$node->poll_query_until('postgres',
	q{SELECT status OPERATOR(pg_catalog.=) 'started' FROM jobs.job WHERE task_id = 'stubborn-1'})
  or die 'the stubborn job did not start';
my $t0 = time();
$node->stop('fast');
my $took = time() - $t0;
cmp_ok($took, '<', 20, 'a fast stop is not held by a handler that swallows cancels');
note(sprintf('fast stop took %.1f s (shutdown_grace 0.5 s + interrupt_grace 0.5 s)', $took));
$node->append_conf('postgresql.conf', "pg_jobs.workers = 0\n");
$node->start;
is($node->safe_psql('postgres', q{SELECT status || ' ' || (last_error->>'error_type') FROM jobs.job WHERE task_id = 'stubborn-1'}),
	'pending shutdown', 'the stopped job was requeued, not lost');
ok($node->log_contains(qr/ended to stop the handler of job/), 'the worker said why it ended');

$node->stop;
done_testing();
