#!/usr/bin/env bash
# Builds the keyward .deb (scripts/package.sh) and proves it on this machine, as root: the unit passes
# 'systemd-analyze verify' and carries its hardening, the package installs with dpkg, the installed binary
# reports the package's version and initialises, serves and verifies a fresh data directory as the keyward
# system user, the man pages and completions are in place, and 'dpkg -r' then 'dpkg -P' remove every file
# again (a purge keeps /var/lib/keyward: CA keys are an operator's to destroy). Any failure stops it with a
# message and exit 1. CI (.ci/run) runs it after the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "package-check: FAIL: $*" >&2; exit 1; }
step() { echo "package-check: $*"; }

[ "$(id -u)" = 0 ] || fail "must run as root (dpkg -i, a system user)"
command -v dpkg >/dev/null || fail "dpkg is missing: the .deb is checked on Debian"

need=()
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v man >/dev/null 2>&1 || need+=(man-db)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  step "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

work=$(mktemp -d)
chmod 0755 "$work" # the keyward user reaches its data directory below it
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  if dpkg-query -W keyward >/dev/null 2>&1; then dpkg -P keyward >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

step "building the package"
deb=$(./scripts/package.sh "$work/dist" | tail -n 1)
[ -f "$deb" ] || fail "scripts/package.sh wrote no package ($deb)"
version=$(dpkg-deb -f "$deb" Version)
step "built $deb (version $version)"

# The unit's hardening, directive by directive (packaging/unit_test.go checks the same on the source).
unit_in_deb=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/lib/systemd/system/keyward.service)
for d in 'User=keyward' 'StateDirectory=keyward' 'ProtectSystem=strict' 'NoNewPrivileges=yes' 'CapabilityBoundingSet=$' \
  'PrivateTmp=yes' 'ProtectHome=yes' 'PrivateDevices=yes' 'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' \
  'SystemCallFilter=@system-service' 'MemoryDenyWriteExecute=yes' 'LockPersonality=yes' 'RestrictNamespaces=yes'; do
  grep -qx "$d" <<<"$unit_in_deb" || fail "keyward.service lacks $d"
done
conffiles=$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)
for f in /etc/keyward/keyward.env /etc/keyward/keyward.yaml; do
  grep -qx "$f" <<<"$conffiles" || fail "$f is not a conffile"
done

if dpkg-query -W keyward >/dev/null 2>&1; then
  step "removing a keyward package installed before this check"
  dpkg -P keyward >/dev/null
fi
step "dpkg -i"
dpkg -i "$deb" || fail "dpkg -i $deb"
files=$(dpkg -L keyward | while read -r f; do [ -f "$f" ] && echo "$f"; done)
for f in /usr/bin/keyward /usr/lib/systemd/system/keyward.service /etc/keyward/keyward.env /etc/keyward/keyward.yaml \
  /usr/share/man/man1/keyward.1.gz /usr/share/man/man1/keyward-serve.1.gz /usr/share/bash-completion/completions/keyward \
  /usr/share/zsh/vendor-completions/_keyward /usr/share/fish/vendor_completions.d/keyward.fish; do
  [ -f "$f" ] || fail "$f not installed"
done
getent passwd keyward >/dev/null || fail "postinst created no keyward user"
[ "$(stat -c %a:%G /etc/keyward/keyward.env)" = 640:keyward ] || fail "/etc/keyward/keyward.env is $(stat -c %a:%G /etc/keyward/keyward.env), want 640:keyward"

# With the binary and the man pages installed, verify checks ExecStart= and Documentation= too.
step "systemd-analyze verify"
man=yes
man -w keyward-serve >/dev/null 2>&1 || { man=no; step "man pages not indexed here (dpkg path-exclude?): verify --man=no"; }
verify=$(systemd-analyze verify --man=$man /usr/lib/systemd/system/keyward.service 2>&1) || fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify warns: $verify"
if systemd-analyze security --help 2>/dev/null | grep -q -- --offline; then
  exposure=$(systemd-analyze security --offline=true /usr/lib/systemd/system/keyward.service 2>&1 | sed -n 's/.*Overall exposure level for keyward.service: \([0-9.]*\).*/\1/p')
  step "systemd-analyze security: exposure $exposure"
  awk -v e="$exposure" 'BEGIN { exit !(e != "" && e + 0 <= 2.0) }' || fail "systemd-analyze security exposure ${exposure:-unknown}, want at most 2.0"
fi

step "the installed binary"
out=$(/usr/bin/keyward version) || fail "keyward version"
[ "$(head -n 1 <<<"$out")" = "keyward v${version//+/-}" ] || fail "keyward version says $(head -n 1 <<<"$out"), the package $version"
man -w keyward-cert-issue >/dev/null 2>&1 || [ $man = no ] || fail "man keyward-cert-issue finds no page"
bash -c 'source /usr/share/bash-completion/completions/keyward && complete -p keyward' >/dev/null || fail "bash completion does not load"

# A fresh data directory, owned by the service's user, used as the unit uses /var/lib/keyward.
data=$work/state
install -d -o keyward -g keyward -m 0700 "$data"
# setpriv execs the command itself (runuser would stand between the server and its SIGTERM).
as_keyward() { setpriv --reuid=keyward --regid=keyward --init-groups -- env -u KEYWARD_DATA -u KEYWARD_DB -u KEYWARD_PASSPHRASE "$@"; }
cp /etc/keyward/keyward.yaml "$data/keyward.yaml" && chown keyward:keyward "$data/keyward.yaml"
as_keyward /usr/bin/keyward init --data "$data" || fail "keyward init --data $data"
as_keyward /usr/bin/keyward ca list --data "$data" --json | grep -q '"dev/demo-implant"' || fail "keyward ca list: no dev/demo-implant CA"
port=$((20000 + RANDOM % 20000))
# Not through as_keyward: a function in the background is a subshell, and $! would be it, not the server.
setpriv --reuid=keyward --regid=keyward --init-groups -- env -u KEYWARD_DATA -u KEYWARD_DB -u KEYWARD_PASSPHRASE /usr/bin/keyward serve --data "$data" --listen 127.0.0.1:$port --log-level warn &
server=$!
for _ in $(seq 1 60); do
  curl -sf --cacert "$data/tls/ca.pem" "https://127.0.0.1:$port/healthz" >/dev/null && break
  kill -0 "$server" 2>/dev/null || fail "keyward serve exited"
  sleep 0.5
done
curl -sf --cacert "$data/tls/ca.pem" -H "Authorization: Bearer $(cat "$data/admin.token")" \
  "https://127.0.0.1:$port/api/v1/cas" | grep -q demo-implant || fail "GET /api/v1/cas on the installed server"
kill "$server" && wait "$server" || fail "keyward serve did not stop cleanly on SIGTERM"
server=
as_keyward /usr/bin/keyward audit verify --data "$data" >/dev/null || fail "keyward audit verify"

step "dpkg -r"
dpkg -r keyward >/dev/null || fail "dpkg -r"
while read -r f; do
  case "$f" in
  /etc/keyward/*) [ -f "$f" ] || fail "dpkg -r removed the conffile $f" ;;
  *) [ ! -e "$f" ] || fail "dpkg -r left $f" ;;
  esac
done <<<"$files"
step "dpkg -P"
dpkg -P keyward >/dev/null || fail "dpkg -P"
while read -r f; do [ ! -e "$f" ] || fail "dpkg -P left $f"; done <<<"$files"
[ ! -e /etc/keyward ] || fail "dpkg -P left /etc/keyward"
dpkg-query -W keyward >/dev/null 2>&1 && fail "dpkg still knows keyward after the purge"
step "ok: $(wc -l <<<"$files") files installed, served and removed"
