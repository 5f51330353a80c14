# Per-job logs on a real server: a follower LISTENing through jobs.follow()
# receives exactly the entries that match its filter (job, level, source)
# while another job logs at the same time, cannot follow a job it may not
# see, stops receiving a job's entries once it may no longer see the job
# (it left the owning role, or an admin gave the job to another role),
# receives every entry however long its task id and however much its text
# grows when JSON-escaped (payloads stay valid JSON under NOTIFY's limit,
# from a client and from a handler run by a worker), and every entry (of a
# failed job too) survives a clean restart and crash recovery.
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('logs');
$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'pg_jobs'
pg_jobs.database = 'postgres'
pg_jobs.workers = 1
pg_jobs.poll_interval = 200ms
});
$node->start;

# notifications(session, marker): what session is sent until a payload
# holds marker, as [ { channel, bytes, payload (decoded, undef when not
# JSON) } ].
sub notifications
{
	my ($session, $marker) = @_;
	my $received = '';
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while ($received !~ /\Q$marker\E/ && time() < $deadline)
	{
		$received .= $session->query_safe('SELECT 1');
	}
	my @notes;
	while ($received =~
		/Asynchronous notification "(\w+)" with payload "(.*)" received from server process/g)
	{
		my ($channel, $payload) = ($1, $2);
		push @notes, {
			channel => $channel,
			bytes => length($payload),
			payload => eval { decode_json($payload) } };
	}
	return @notes;
}

$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_jobs;
	CREATE ROLE tap_alice NOLOGIN;
	CREATE ROLE tap_bob NOLOGIN;
	SELECT jobs.register_task_type('ocr');
	SELECT jobs.enqueue('ocr', owner => 'tap_alice', task_id => 'job-a');
	SELECT jobs.enqueue('ocr', owner => 'tap_bob', task_id => 'job-b');
	SELECT jobs.start('job-a');
	SELECT jobs.start('job-b');
});

# The follower is alice: warnings and worse from source "ocr" of her job.
my $follower = $node->background_psql('postgres', on_error_stop => 0);
$follower->query_safe('SET ROLE tap_alice');
my $channel = $follower->query_safe(
	q{SELECT jobs.follow('job-a', level => 'warning', source => 'ocr')});
like($channel, qr/^pg_jobs_log_[0-9a-f]{32}$/, 'follow returns a random channel name');
is($follower->query_safe('SELECT pg_listening_channels()'), $channel,
	'the follower listens on its channel after commit');
my ($out, $failed) = $follower->query(q{SELECT jobs.follow('job-b')});
ok($failed && $follower->{stderr} =~ /task job-b does not exist/,
	'alice cannot follow a job of bob');
$follower->{stderr} = '';

# Bob's job logs in the background, one transaction per entry, from before
# alice's first entry until after her last one ("a7 last")...
my $noise = $node->background_psql('postgres');
$noise->{stdin} .= q{
DO $$
DECLARE
	seen boolean := false;
BEGIN
	FOR i IN 1..1000000 LOOP
		PERFORM jobs.log('bob ' || i, 'error', 'ocr', task_id => 'job-b');
		COMMIT;
		EXIT WHEN seen;
		seen := EXISTS (SELECT 1 FROM jobs.job_log WHERE message = 'a7 last');
	END LOOP;
END $$;
};
$noise->{run}->pump_nb();
$node->poll_query_until('postgres', q{
	SELECT count(*) >= 10 FROM jobs.job_log l JOIN jobs.job j ON j.id = l.job_id
	WHERE j.task_id = 'job-b'
}) or die 'bob\'s job does not log';

# ...while alice's job logs entries that do and do not match the filter.
$node->safe_psql('postgres', q{
	SET ROLE tap_alice;
	SELECT jobs.log('a1 info', 'info', 'ocr', task_id => 'job-a');
	SELECT jobs.log('a2 warning', 'warning', 'ocr', '{"page": 2}', task_id => 'job-a');
	SELECT jobs.log('a3 error from llm', 'error', 'llm', task_id => 'job-a');
	SELECT jobs.log('a4 debug', 'debug', 'ocr', task_id => 'job-a');
	SELECT jobs.log('a5 error', 'error', 'ocr', task_id => 'job-a');
	SELECT jobs.log('a6 unsourced warning', 'warning', task_id => 'job-a');
	SELECT jobs.log('a7 last', 'warning', 'ocr', task_id => 'job-a');
});
$noise->query_safe('SELECT 1');    # returns once the DO block has finished
is($node->safe_psql('postgres', q{
	SELECT min(l.id) FILTER (WHERE j.task_id = 'job-b') < min(l.id) FILTER (WHERE j.task_id = 'job-a')
	   AND max(l.id) FILTER (WHERE j.task_id = 'job-b') > max(l.id) FILTER (WHERE j.task_id = 'job-a')
	FROM jobs.job_log l JOIN jobs.job j ON j.id = l.job_id
}), 't', 'bob\'s job logged before, during and after alice\'s entries');

# Collect what the follower was sent until the last matching entry is in.
my $received = '';
my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
while ($received !~ /a7 last/ && time() < $deadline)
{
	$received .= $follower->query_safe('SELECT 1');
}
my @notes;
while ($received =~ /Asynchronous notification "(\w+)" with payload "(.*)" received from server process/g)
{
	push @notes, { channel => $1, %{ decode_json($2) } };
}
is_deeply([ map { $_->{message} } @notes ], [ 'a2 warning', 'a5 error', 'a7 last' ],
	'the follower receives exactly the entries matching its filter, in order');
is_deeply([ map { $_->{channel} } @notes ], [ ($channel) x 3 ],
	'every notification comes on the follower\'s channel');
is($notes[0]{task_id} . '|' . $notes[0]{level} . '|' . $notes[0]{source} . '|'
	  . encode_json($notes[0]{fields}),
	'job-a|warning|ocr|{"page":2}', 'a notification carries the entry');
my $ids = $node->safe_psql('postgres', q{
	SELECT string_agg(id::text, ',' ORDER BY id)
	FROM jobs.logs('job-a', level => 'warning', source => 'ocr')
});
is(join(',', map { $_->{id} } @notes), $ids,
	'notified ids are the ids jobs.logs returns for the same filter');

# After unfollow, nothing more arrives.
is($follower->query_safe('SELECT jobs.unfollow()'), '1', 'unfollow removes the filter');
$node->safe_psql('postgres',
	q{SELECT jobs.log('a8 after unfollow', 'error', 'ocr', task_id => 'job-a')});
$received = $follower->query_safe('SELECT 1') . $follower->query_safe('SELECT 1');
unlike($received, qr/Asynchronous notification/, 'nothing arrives after unfollow');
$follower->quit;
$noise->quit;

# Visibility is checked again for every entry: alice follows her team's
# job; once she leaves the team she receives nothing more from it.
$node->safe_psql('postgres', q{
	CREATE ROLE tap_team NOLOGIN;
	GRANT tap_team TO tap_alice;
	SELECT jobs.enqueue('ocr', owner => 'tap_team', task_id => 'job-t');
	SELECT jobs.enqueue('ocr', owner => 'tap_alice', task_id => 'job-m');
});
my $member = $node->background_psql('postgres');
$member->query_safe('SET ROLE tap_alice');
$member->query_safe(q{SELECT jobs.follow('job-t')});
$member->query_safe(q{SELECT jobs.follow('job-m')});
$node->safe_psql('postgres', q{
	SELECT jobs.log('t1 while a member', task_id => 'job-t');
	REVOKE tap_team FROM tap_alice;
});
$node->safe_psql('postgres', q{
	SELECT jobs.log('t2 after leaving', task_id => 'job-t');
	SELECT jobs.log('m1 marker', task_id => 'job-m');
});
$received = '';
$deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
while ($received !~ /m1 marker/ && time() < $deadline)
{
	$received .= $member->query_safe('SELECT 1');
}
like($received, qr/t1 while a member.*m1 marker/s, 'a member follows the team\'s job');
unlike($received, qr/t2 after leaving/, 'after leaving the team, its job\'s entries no longer arrive');
$member->quit;

# Visibility follows the job's current owner, not the one at follow time:
# an admin gives alice's pending job to bob; she receives nothing more of it.
$node->safe_psql('postgres',
	q{SELECT jobs.enqueue('ocr', owner => 'tap_alice', task_id => 'job-h')});
my $handed = $node->background_psql('postgres');
$handed->query_safe('SET ROLE tap_alice');
$handed->query_safe(q{SELECT jobs.follow('job-h')});
$handed->query_safe(q{SELECT jobs.follow('job-m')});
$node->safe_psql('postgres', q{SELECT jobs.log('h1 while alice''s', task_id => 'job-h')});
$node->safe_psql('postgres', q{UPDATE jobs.job SET owner = 'tap_bob' WHERE task_id = 'job-h'});
$node->safe_psql('postgres', q{
	SELECT jobs.log('h2 after the handover', task_id => 'job-h');
	SELECT jobs.log('m2 marker', task_id => 'job-m');
});
my @handed = map { $_->{payload}{message} } notifications($handed, 'm2 marker');
is_deeply(\@handed, [ "h1 while alice's", 'm2 marker' ],
	'once her job is given to another role, its entries no longer reach her');
$handed->quit;

# NOTIFY refuses payloads of 8000 bytes and more.  Entries whose task id,
# message, source or fields grow past that when JSON-escaped (quotes and
# backslashes double, control characters become \u00XX) are still written
# and notified: each part is cut or left out ("truncated": true) so that
# the payload stays valid JSON of at most 7000 bytes (src/logs.c).  Task
# ids of up to 255 bytes (what enqueue accepts) are carried whole; a longer
# one, which only a superuser bypassing the triggers can make, is left out.
my $payload_max = 7000;
$node->safe_psql('postgres', q{
	SELECT jobs.enqueue('ocr', owner => 'tap_alice', task_id => 'long-' || repeat(E'\x01', 250));
	SELECT jobs.enqueue('ocr', owner => 'tap_alice', task_id => 'w-' || repeat(E'\x01', 253));
	SELECT jobs.enqueue('ocr', owner => 'tap_alice', task_id => 'job-x');
	SELECT jobs.enqueue('ocr', owner => 'tap_alice', task_id => 'job-huge');
	SET session_replication_role = replica;
	UPDATE jobs.job SET task_id = 'huge-' || repeat('"\', 2000) WHERE task_id = 'job-huge';
});
my $big = $node->background_psql('postgres');
$big->query_safe('SET ROLE tap_alice');
$big->query_safe(q{SELECT count(jobs.follow(task_id)) FROM jobs.job
	WHERE task_id ~ '^(long-|w-|huge-|job-x$)'});
my @writes = (
	[ 'a task id of 255 bytes escaped to 1505 beside a message, source and fields that grow',
		<<'SQL' ],
SELECT jobs.log('x1 ' || repeat('"', 3000), 'warning', repeat('\', 300),
                jsonb_build_object('k', repeat('y', 2990)), 'long-' || repeat(E'\x01', 250))
SQL
	[ 'a message of 3000 control characters', <<'SQL' ],
SELECT jobs.log('x2 ' || repeat(E'\x01', 3000), task_id => 'job-x')
SQL
	[ 'quotes, backslashes and multibyte characters in every part', <<'SQL' ],
SELECT jobs.log('x3 ' || repeat(E'"\\\u00e9\u20ac\U0001F600', 1000), 'error',
                repeat(E'"\\\x1f', 300),
                jsonb_build_object('k', repeat(E'\x02', 1000)), 'job-x')
SQL
	[ 'every part just under its limit', <<'SQL' ],
SELECT jobs.log('x4 ' || repeat('m', 1987) || repeat(E'\x01', 5), 'warning',
                repeat('s', 200), jsonb_build_object('k', repeat('y', 2990)),
                'w-' || repeat(E'\x01', 253))
SQL
	[ 'a task id of 8005 bytes once escaped', <<'SQL' ],
SELECT jobs.log('x5 huge task id', task_id => 'huge-' || repeat('"\', 2000))
SQL
	[ 'a short message', <<'SQL' ]);
SELECT jobs.log('x9 marker', 'info', 'ocr', '{"page": 9}', 'job-x')
SQL
foreach my $w (@writes)
{
	my ($ret, $stdout, $stderr) =
	  $node->psql('postgres', "SET ROLE tap_alice;\n$w->[1]");
	is($ret, 0, "an entry with $w->[0] is written while followed")
	  or diag($stderr);
}
my @big = notifications($big, 'x9 marker');
$big->quit;
my %note = map { defined $_->{payload} ? (substr($_->{payload}{message}, 0, 2) => $_) : () } @big;
is(scalar(@big), 6, 'each of those entries is notified');
is(scalar(grep { defined $_->{payload} } @big), 6, 'every payload is valid JSON');
my $largest = (sort { $b <=> $a } map { $_->{bytes} } @big)[0];
ok($largest <= $payload_max, "no payload is longer than $payload_max bytes");
note("largest payload: $largest bytes; "
	  . join(', ', map { "$_ $note{$_}{bytes}" } sort keys %note));

my $x1 = $note{x1}{payload};
is( join('|', $x1->{task_id}, $x1->{message}, $x1->{source}, length($x1->{fields}{k}),
		$x1->{truncated} ? 'truncated' : 'whole'),
	join('|', 'long-' . ("\x01" x 250), 'x1 ' . ('"' x 998), '\\' x 100, 2990, 'truncated'),
	'a 255-byte task id is carried whole; message and source are cut to 2000 and 200 bytes once escaped');
is($note{x2}{payload}{message}, 'x2 ' . ("\x01" x 332),
	'a message of control characters is cut to 2000 bytes once escaped');
my $x3 = $note{x3}{payload};
my $x3_message = 'x3 ' . ("\"\\\x{e9}\x{20ac}\x{1F600}" x 1000);
my $x3_source = "\"\\\x1f" x 300;
ok( length($x3->{message}) > 3
	  && $x3->{message} eq substr($x3_message, 0, length($x3->{message}))
	  && length($x3->{source}) > 0
	  && $x3->{source} eq substr($x3_source, 0, length($x3->{source}))
	  && !exists $x3->{fields}
	  && $x3->{truncated},
	'multibyte characters are cut whole; fields too long for the payload are left out');
my $x4 = $note{x4}{payload};
is( join('|', $x4->{task_id}, length($x4->{message}), $x4->{source}, length($x4->{fields}{k}),
		$x4->{truncated} ? 'truncated' : 'whole'),
	join('|', 'w-' . ("\x01" x 253), 3 + 1987 + 1, 's' x 200, 2990, 'truncated'),
	'parts within their limits are kept whole');
is_deeply([ $note{x5}{payload}{task_id}, $note{x5}{payload}{message}, $note{x5}{payload}{truncated} ],
	[ undef, 'x5 huge task id', JSON::PP::true ],
	'a task id too long for the payload is left out, and the payload says so');
is_deeply([ $note{x9}{payload}{fields}, exists $note{x9}{payload}{truncated} ],
	[ { page => 9 }, '' ], 'a short entry is notified whole');
is($node->safe_psql('postgres', q{
	SELECT string_agg(pg_catalog.length(l.message)::text, ',' ORDER BY l.id)
	FROM jobs.job_log l JOIN jobs.job j ON j.id = l.job_id
	WHERE j.task_id ~ '^(long-|w-|huge-|job-x$)'}),
	'3003,3003,5003,1995,15,9', 'every entry is stored whole');

# A handler's entries are written by the worker after the handler: one
# that would overflow NOTIFY fails neither that job nor the worker.
$node->safe_psql('postgres', q{
	CREATE TABLE go ();
	GRANT SELECT ON go TO PUBLIC;
	CREATE FUNCTION chatty(job jobs.job) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		WHILE NOT EXISTS (SELECT FROM public.go) LOOP
			PERFORM pg_catalog.pg_sleep(0.05);
		END LOOP;
		PERFORM jobs.log('w1 ' || repeat(E'\x01', 3000), 'warning');
		PERFORM jobs.log('w2 done');
		RETURN '{}';
	END $$;
	SELECT jobs.register_task_type('chatty', 'chatty(jobs.job)');
	SELECT jobs.enqueue('chatty', owner => 'tap_alice', task_id => 'h-long-' || repeat('"\', 124));
});
my $watcher = $node->background_psql('postgres');
$watcher->query_safe('SET ROLE tap_alice');
$watcher->query_safe(q{SELECT jobs.follow(task_id) FROM jobs.job WHERE task_id ~ '^h-long-'});
$node->safe_psql('postgres', 'INSERT INTO go DEFAULT VALUES');
$node->poll_query_until('postgres',
	q{SELECT status IN ('success', 'failure') FROM jobs.job WHERE task_id ~ '^h-long-'})
  or die 'the handler did not finish';
is($node->safe_psql('postgres',
	q{SELECT status || ' after ' || attempts FROM jobs.job WHERE task_id ~ '^h-long-'}),
	'success after 1', 'a handler whose followed entries overflow NOTIFY succeeds');
my @worker_notes = notifications($watcher, 'w2 done');
is_deeply([ map { substr($_->{payload}{message} // '', 0, 2) . ' ' . ($_->{bytes} <= $payload_max ? 'fits' : 'too long') } @worker_notes ],
	[ 'w1 fits', 'w2 fits' ], 'its entries reach the follower, bounded');
$watcher->quit;

# The external runner reports a failure: the entries stay with the job.
$node->safe_psql('postgres', q{
	SELECT jobs.log('giving up', 'error', 'ocr', task_id => 'job-a');
	SELECT jobs.fail('job-a', 'unreadable scan', 'OCRError');
});
my $snapshot = q{
	SELECT string_agg(format('%s|%s|%s|%s|%s|%s', j.task_id, l.id, l.level, l.source,
	                         l.message, l.at), E'\n' ORDER BY l.id)
	FROM jobs.job_log l JOIN jobs.job j ON j.id = l.job_id
};
my $before = $node->safe_psql('postgres', $snapshot);
is($node->safe_psql('postgres', q{
	SELECT status || ' ' || count(*) FROM jobs.job j, jobs.logs('job-a') l
	WHERE j.task_id = 'job-a' GROUP BY status}),
	'failure 9', 'a failed job keeps its log');

$node->restart;
is($node->safe_psql('postgres', $snapshot), $before, 'every entry survives a clean restart');
$node->stop('immediate');
$node->start;
is($node->safe_psql('postgres', $snapshot), $before,
	'every entry survives crash recovery after an immediate stop');
is($node->safe_psql('postgres', 'SELECT count(*) FROM jobs.log_follower'), '0',
	'followers do not outlive the crash (their table is unlogged)');
ok($node->safe_psql('postgres',
	q{SELECT jobs.log('after restart', task_id => 'job-b') > 0}) eq 't',
	'logging works after the restarts');

$node->stop;
done_testing();
