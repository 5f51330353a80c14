#!/usr/bin/env bash
# Installs what pg_jobs needs on Debian 12 (idempotent), then builds and
# installs the extension.  Sourced by test/check and test/demo; runs as root
# (or a user with sudo).
set -euo pipefail

PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
export PATH="$PG_BIN:$PATH"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

SUDO=
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
fi

PACKAGES=(build-essential postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR
          postgresql-$PG_MAJOR-cron libipc-run-perl libpq-dev rsync)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

# One build+install+test at a time on this machine: parallel checkouts
# (git worktrees) install into the same PostgreSQL directories.  Servers
# that outlive the script must be started with "9>&-" so that they do not
# inherit (and hold) the lock.
exec 9>/tmp/pg_jobs-install.lock
flock 9

echo "== building pg_jobs"
make -C "$ROOT" -s PG_CONFIG="$PG_BIN/pg_config"
$SUDO make -C "$ROOT" -s install PG_CONFIG="$PG_BIN/pg_config" >/dev/null

# initdb refuses to run as root: the clusters run as this user.
PG_USER=postgres
id "$PG_USER" >/dev/null 2>&1 || $SUDO useradd --system --create-home "$PG_USER"

# as_pg CMD...: run a command as $PG_USER
as_pg() {
    if [ "$(id -un)" = "$PG_USER" ]; then
        "$@"
    else
        $SUDO runuser -u "$PG_USER" -- env PATH="$PATH" "$@"
    fi
}
