# pg_jobs: PGXS build.  `make && make install`, then see README.md.
EXTENSION   = pg_jobs
EXTVERSION  = 0.1.0

MODULE_big  = pg_jobs
OBJS        = src/pg_jobs.o src/access.o src/lifecycle.o src/shmem.o \
              src/launcher.o src/worker.o src/logs.o src/util.o \
              src/dependencies.o src/summary.o src/enqueue.o src/report.o \
              src/privilege.o src/guarded.o

DATA_built  = $(EXTENSION)--$(EXTVERSION).sql
EXTRA_CLEAN = $(EXTENSION)--$(EXTVERSION).sql src/errnames.h

# Every suite starts its own throw-away server with pg_jobs (and pg_cron)
# preloaded, so `make installcheck` works on any machine (see README).
REGRESS      = lifecycle tracking monitoring postgrest logs retention schedule dependencies \
               engine summary audit redteam sandbox runner
REGRESS_OPTS = --temp-config=test/pg_jobs.conf --temp-instance=./tmp_check

ISOLATION      = finalize_race enqueue_race claim_race acknowledge_race registry_cache \
                 dependency_race summary_race runner_fence
ISOLATION_OPTS = --temp-config=test/isolation.conf --temp-instance=./tmp_check_iso \
                 --inputdir=test --outputdir=test

TAP_TESTS   = 1
PROVE_TESTS = test/t/*.pl

PG_CONFIG ?= pg_config
PG_CPPFLAGS = -I$(srcdir)/src
# -Wall is PostgreSQL's default; add -Wextra, less unused-parameter (every
# V1 function has an fcinfo it may not use).
PG_CFLAGS = -Wextra -Wno-unused-parameter

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(EXTENSION)--$(EXTVERSION).sql: $(EXTENSION).sql
	cp $< $@

# Condition names ("division_by_zero") for SQLSTATEs, from PostgreSQL's own list.
ERRCODES_TXT := $(shell $(PG_CONFIG) --sharedir)/errcodes.txt
src/errnames.h: $(ERRCODES_TXT)
	{ echo '/* generated from errcodes.txt by the Makefile */'; \
	  echo 'static const struct { const char *sqlstate; const char *name; } pg_jobs_errnames[] = {'; \
	  awk 'NF == 4 && $$2 ~ /^[EWS]$$/ { printf "\t{\"%s\", \"%s\"},\n", $$1, $$4 }' $<; \
	  echo '};'; } > $@
src/worker.o: src/errnames.h

# PGXS tracks no header dependencies: every object depends on our headers,
# so that a changed struct never leaves objects with two layouts of it.
$(OBJS): src/pg_jobs.h src/privilege.h
