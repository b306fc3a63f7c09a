#!/usr/bin/env bash
# Install what Beffroi's local stack needs on Debian 12 (bookworm) or 13 (trixie):
# Mosquitto, the PostgreSQL server, and the TimescaleDB extension for that server.
# Idempotent: each step checks first and does nothing when its part is present.
# Run as root (or through sudo). Usage: install-deps.sh [PG_MAJOR]
set -euo pipefail

log() { printf '[beffroi install] %s\n' "$*" >&2; }

TSDB_SOURCE_VERSION="${BEFFROI_TSDB_SOURCE_VERSION:-2.19.3+dfsg-1+deb13u1}"
DEBIAN_MIRROR="${BEFFROI_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
export DEBIAN_FRONTEND=noninteractive

apt_updated=0
apt_update() {
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    apt-get update -qq
    apt_updated=1
  fi
}

need_pkgs=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_pkgs+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need_pkgs+=(mosquitto-clients)

PG_MAJOR="${1:-}"
if [ -z "$PG_MAJOR" ]; then
  PG_MAJOR=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1 || true)
fi
if [ -z "$PG_MAJOR" ] || [ ! -x "/usr/lib/postgresql/$PG_MAJOR/bin/postgres" ]; then
  # No server yet: the release's default one.
  need_pkgs+=(postgresql postgresql-contrib)
fi
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  apt_update
  log "installing Debian packages: ${need_pkgs[*]}"
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  PG_MAJOR=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
fi

PG_CONFIG="/usr/lib/postgresql/$PG_MAJOR/bin/pg_config"
ext_dir() { "/usr/lib/postgresql/$PG_MAJOR/bin/pg_config" --sharedir 2>/dev/null || echo "/usr/share/postgresql/$PG_MAJOR"; }
tsdb_present() {
  [ -f "/usr/share/postgresql/$PG_MAJOR/extension/timescaledb.control" ] \
    && ls "/usr/lib/postgresql/$PG_MAJOR/lib/"timescaledb*.so >/dev/null 2>&1
}

if tsdb_present; then
  exit 0
fi

apt_update
if apt-cache show "postgresql-$PG_MAJOR-timescaledb" >/dev/null 2>&1; then
  log "installing the Debian package postgresql-$PG_MAJOR-timescaledb"
  apt-get install -y -qq --no-install-recommends "postgresql-$PG_MAJOR-timescaledb" >/dev/null
  exit 0
fi

# Debian 12 has no TimescaleDB package: build the extension from Debian 13's source
# package against the installed server (about a minute on 2 cores).
log "building TimescaleDB $TSDB_SOURCE_VERSION for PostgreSQL $PG_MAJOR from Debian's source package (about 1 minute)"
server_version=$(dpkg-query -W -f='${Version}' "postgresql-$PG_MAJOR")
apt-get install -y -qq --no-install-recommends build-essential cmake dpkg-dev \
  "postgresql-server-dev-$PG_MAJOR=$server_version" libssl-dev >/dev/null

work=$(mktemp -d /tmp/beffroi-tsdb.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/sources.d"
echo "deb-src $DEBIAN_MIRROR trixie main" > "$work/sources.d/trixie-src.list"
apt_private=(-oDir::State::Lists="$work/lists" -oDir::Etc::SourceList=/dev/null
             -oDir::Etc::SourceParts="$work/sources.d" -oAPT::Get::Only-Source=true
             -oAPT::Sandbox::User=root)
apt-get "${apt_private[@]}" update -qq
( cd "$work" && apt-get "${apt_private[@]}" source -qq --download-only "timescaledb=$TSDB_SOURCE_VERSION" >/dev/null \
  && dpkg-source -x --no-check ./*.dsc src >/dev/null )
cd "$work/src"
BUILD_FORCE_REMOVE=true ./bootstrap -DAPACHE_ONLY=ON -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
  -DWARNINGS_AS_ERRORS=OFF -DUSE_TELEMETRY=OFF -DSEND_TELEMETRY_DEFAULT=OFF \
  -DCMAKE_BUILD_TYPE=Release -DPG_CONFIG="$PG_CONFIG" >"$work/configure.log" 2>&1 \
  || { tail -n 30 "$work/configure.log" >&2; exit 1; }
GIT_DIR=/nonexistent make -C build -j"$(nproc)" >"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log" >&2; exit 1; }
make -C build install >"$work/install.log" 2>&1 || { tail -n 30 "$work/install.log" >&2; exit 1; }
tsdb_present || { log "TimescaleDB build finished but the extension is not installed"; exit 1; }
log "TimescaleDB installed for PostgreSQL $PG_MAJOR"
