#!/usr/bin/env bash
# Builds the keyward .deb into dist/ (or $1): the binary, a man page per command ('keyward man'), bash, zsh and
# fish completions, keyward.service and the default configuration under /etc/keyward, packed by a pinned nfpm
# (packaging/nfpm.yaml). The version comes from 'git describe' and is stamped into the binary, so
# 'keyward version' and the package agree. Prints the path of the package it wrote on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
out=${1:-dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Version: v1.2.3 from a tag, v1.2.3-4-gabcdef0 after it, or 0.0.0-<commits>-g<hash> with no tag yet; "-dirty"
# with uncommitted changes. The .deb's version is the Debian form of the same (a digit first, '-' as '+').
if describe=$(git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null); then
  version=$describe
else
  version="v0.0.0-$(git rev-list --count HEAD)-g$(git rev-parse --short=12 HEAD)"
  git diff --quiet HEAD 2>/dev/null || version+="-dirty"
fi
deb_version=${version#v}
deb_version=${deb_version//-/+}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/man" "$stage/completions"

arch=$(go env GOARCH)
# -trimpath: no build machine paths in the binary. cgo stays on: PKCS#11 modules are loaded through it.
go build -trimpath -ldflags "-s -w -X github.com/keyward/keyward/internal/cli.Version=$version" -o "$stage/keyward" ./cmd/keyward

# Pages and completions come from the binary just built, with no KEYWARD_* of this shell in their defaults.
run() { env -u KEYWARD_DATA -u KEYWARD_DB -u KEYWARD_PASSPHRASE "$stage/keyward" "$@"; }
run man --out "$stage/man" >/dev/null
gzip -9n "$stage"/man/*.1
run completion bash >"$stage/completions/keyward.bash"
run completion zsh >"$stage/completions/_keyward"
run completion fish >"$stage/completions/keyward.fish"

# The binary needs the C library it was linked against (cgo), at least this machine's version.
glibc=$(getconf GNU_LIBC_VERSION | awk '{print $2}')

deb="$out/keyward_${deb_version}_${arch}.deb"
rm -f "$deb"
KEYWARD_STAGE=$stage KEYWARD_ARCH=$arch KEYWARD_DEB_VERSION=$deb_version KEYWARD_LIBC_DEPENDS="libc6 (>= $glibc)" \
  go run "$NFPM" package --config packaging/nfpm.yaml --packager deb --target "$deb" >&2
echo "$deb"
