#!/usr/bin/env bash
# Runs Keyward's whole test suite. On a fresh Debian machine (as root) it first installs what the integration
# tests need: SoftHSM2 (PKCS#11), OpenSSL, curl and jq (interop peers), Chromium (the web console's browser
# test), and a PostgreSQL server if none answers on 127.0.0.1:5432. Elsewhere, integration tests whose
# dependency is missing skip with a message, unless KEYWARD_REQUIRE_INTEGRATION=1 (CI), which turns every such
# skip into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v softhsm2-util >/dev/null 2>&1 || need+=(softhsm2)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v jq >/dev/null 2>&1 || need+=(jq)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
pg_up || need+=(postgresql)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "scripts/test.sh: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "scripts/test.sh: missing ${need[*]}; integration tests needing them will skip (install them to run everything)"
  fi
fi

# Start a PostgreSQL cluster if one is installed but not running, with trust auth on loopback and a database
# "test", as the PostgreSQL tests expect (KEYWARD_TEST_POSTGRES overrides the DSN).
if ! pg_up && command -v pg_lsclusters >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$ver" ]; then
    ver=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    pg_createcluster "$ver" main >/dev/null
  fi
  hba=/etc/postgresql/$ver/main/pg_hba.conf
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
if pg_up && command -v psql >/dev/null 2>&1; then
  psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" 2>/dev/null | grep -q 1 ||
    psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE test" >/dev/null 2>&1 || true
fi

go vet ./...
# -json through testsummary: failed tests with their whole output, skipped tests with their reasons, and a
# closing "tests: N passed, N failed, N skipped" line.
go build -o /tmp/keyward-testsummary ./internal/testsummary
fail_on_skip=()
[ "${KEYWARD_REQUIRE_INTEGRATION:-}" = 1 ] && fail_on_skip=(-fail-on-skip)
go test -json -count=1 -timeout 25m "$@" ./... | /tmp/keyward-testsummary "${fail_on_skip[@]}"
