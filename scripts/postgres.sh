#!/usr/bin/env bash
# Throwaway PostgreSQL server for badmac's "postgres" store variant.
#
#   scripts/postgres.sh [start]   install if needed, create and start the cluster;
#                                 prints only the export to eval on stdout
#   scripts/postgres.sh stop      stop it (data kept)
#   scripts/postgres.sh status    say whether it runs
#   scripts/postgres.sh destroy   stop it and delete its data directory
#   scripts/postgres.sh bin       print the server binaries' directory, or exit 3
#                                 if they are not installed (never installs)
#   scripts/postgres.sh install   install the server binaries if missing (root)
#
# Typical use:  eval "$(scripts/postgres.sh)"
#
# The tests start their own cluster with this script when
# BADMAC_POSTGRES_DSN is unset (internal/testenv: bin, then start with a
# temporary BADMAC_PG_DIR and a free BADMAC_PG_PORT, destroy at exit).
#
# Environment: BADMAC_PG_DIR (data directory, default /tmp/badmac-pg),
# BADMAC_PG_PORT (default 54329). The server listens on 127.0.0.1 only, trusts
# every loopback connection and has one superuser, badmac. It trades crash
# safety of the server for speed (fsync off): badmac kills clients, never this
# server, so what clients see is unchanged.
set -euo pipefail

DIR=${BADMAC_PG_DIR:-/tmp/badmac-pg}
PORT=${BADMAC_PG_PORT:-54329}
SUPERUSER=badmac
CMD=${1:-start}

log() { echo "postgres.sh: $*" >&2; }
die() {
	log "$*"
	exit 1
}

# find_bin sets BIN to the directory holding initdb and pg_ctl, or returns 1.
find_bin() {
	local d
	# Debian keeps the server binaries out of PATH; prefer the newest version.
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		if [[ -x $d/initdb && -x $d/pg_ctl ]]; then
			BIN=$d
			return 0
		fi
	done
	if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
		BIN=$(dirname "$(command -v pg_ctl)")
		return 0
	fi
	return 1
}

ensure_installed() {
	find_bin || install_postgres
	find_bin || die "PostgreSQL installed but initdb/pg_ctl not found under /usr/lib/postgresql/*/bin"
}

install_postgres() {
	[[ $(id -u) -eq 0 ]] || die "PostgreSQL is not installed and we are not root: install the postgresql package, then rerun"
	command -v apt-get >/dev/null || die "PostgreSQL is not installed and apt-get is missing: install PostgreSQL by hand, then rerun"
	log "installing postgresql with apt-get"
	apt-get update >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >&2
}

# pick_user sets RUNAS to the OS user the server runs as: initdb and postgres
# refuse to run as root.
pick_user() {
	if [[ -e $DIR/PG_VERSION ]]; then
		RUNAS=$(stat -c %U "$DIR")
	elif [[ $(id -u) -ne 0 ]]; then
		RUNAS=$(id -un)
	elif id postgres >/dev/null 2>&1; then
		RUNAS=postgres
	else
		id badmac >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin badmac
		RUNAS=badmac
	fi
}

as_user() {
	if [[ $(id -un) == "$RUNAS" ]]; then
		"$@"
	elif command -v runuser >/dev/null; then
		runuser -u "$RUNAS" -- "$@"
	else
		su -s /bin/sh "$RUNAS" -c "$(printf '%q ' "$@")"
	fi
}

running() { [[ -e $DIR/PG_VERSION ]] && as_user "$BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1; }

# running_port reads the port of the running server from postmaster.pid
# (line 4), which may differ from BADMAC_PG_PORT if it was started earlier.
running_port() { sed -n 4p "$DIR/postmaster.pid"; }

init_cluster() {
	if [[ -e $DIR && ! -e $DIR/PG_VERSION && -n $(ls -A "$DIR" 2>/dev/null) ]]; then
		die "$DIR exists, is not empty and is not a PostgreSQL data directory; set BADMAC_PG_DIR"
	fi
	mkdir -p "$DIR"
	[[ $(id -u) -ne 0 ]] || chown "$RUNAS" "$DIR"
	chmod 700 "$DIR"
	log "creating cluster in $DIR (OS user $RUNAS, superuser $SUPERUSER)"
	as_user "$BIN/initdb" -D "$DIR" -U "$SUPERUSER" --auth-local=trust --auth-host=trust \
		-E UTF8 --locale=C.UTF-8 --no-sync --no-instructions >&2
}

start() {
	find_bin || ensure_installed

	pick_user
	[[ -e $DIR/PG_VERSION ]] || init_cluster
	if running; then
		PORT=$(running_port)
		log "already running on 127.0.0.1:$PORT"
	else
		log "starting on 127.0.0.1:$PORT"
		# Settings go on the command line so BADMAC_PG_PORT applies on every start.
		# The socket lives in the data directory: /var/run/postgresql may not exist.
		if ! as_user "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w -t 30 start -o \
			"-p $PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$DIR -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >&2; then
			tail -n 20 "$DIR/server.log" >&2 || true
			die "server did not start (log: $DIR/server.log)"
		fi
	fi
	local i
	for ((i = 0; i < 60; i++)); do
		if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U "$SUPERUSER" -d postgres; then
			echo "export BADMAC_POSTGRES_DSN='postgres://$SUPERUSER@127.0.0.1:$PORT/postgres?sslmode=disable'"
			return 0
		fi
		sleep 0.5
	done
	die "server on 127.0.0.1:$PORT is not ready after 30s (log: $DIR/server.log)"
}

stop() {
	if ! find_bin || [[ ! -e $DIR/PG_VERSION ]]; then
		log "no cluster in $DIR"
		return 0
	fi
	pick_user
	if running; then
		as_user "$BIN/pg_ctl" -D "$DIR" -m fast -w stop >&2
	else
		log "not running"
	fi
}

case $CMD in
start) start ;;
stop) stop ;;
status)
	if find_bin && pick_user && running; then
		echo "running on 127.0.0.1:$(running_port), data in $DIR"
	else
		echo "not running (data dir $DIR)"
		exit 3
	fi
	;;
bin)
	find_bin || exit 3
	echo "$BIN"
	;;
install)
	ensure_installed
	echo "$BIN"
	;;
destroy)
	stop
	rm -rf "$DIR"
	log "removed $DIR"
	;;
*) die "usage: $0 [start|stop|status|destroy|bin|install]" ;;
esac
