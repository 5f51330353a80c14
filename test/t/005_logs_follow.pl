# Per-job logs on a real server: a follower LISTENing through jobs.follow()
# receives exactly the entries that match its filter (job, level, source)
# while another job logs at the same time, cannot follow a job it may not
# see, and every entry (of a failed job too) survives a clean restart and
# crash recovery.
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('logs');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_jobs'");
$node->start;

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
