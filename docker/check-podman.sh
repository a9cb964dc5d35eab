#!/usr/bin/env bash
# Build docker/Dockerfile with podman and smoke-test the image, on a Debian
# bookworm machine (as root) with no Docker engine and no reachable container
# registry, but with the Debian mirror, the Go module proxy and a Go toolchain.
#
# What it checks (each line prints PASS or FAIL):
#   - docker/Dockerfile builds, unchanged, against two local base images:
#     "bubbled-base" (Debian bookworm minbase made with debootstrap and imported
#     with podman; stands in for debian:bookworm-slim) and "bubbled-builder"
#     (that plus gcc, libc6-dev, git and this machine's Go; stands in for
#     golang:1.26-bookworm). The runtime stage's apt-get runs against the
#     Debian mirror. `go mod download` is served from this machine's module
#     cache (filled on the host first, mounted as an overlay), because
#     HTTPS from a container here fails certificate verification.
#   - --version prints the VERSION build argument; the binary was built with
#     CGO_ENABLED=1, -tags goolm and -trimpath (go version -m).
#   - the image's user is uid 1337, not root, in the dialout group; it has
#     ca-certificates and tzdata; it exposes 29340/tcp.
#   - `-g` writes /data/registration.yaml from a copy of example-config.yaml
#     in a bind-mounted directory owned by uid 1337, with the BUBBLED_*
#     overrides that docker/compose.yaml sets; the tokens are saved back into
#     the config.
#   - the bridge starts from that config without a homeserver: it migrates its
#     SQLite database in /data (cgo) and opens the appservice listener; it is
#     stopped after a few seconds.
#   - the image has a HEALTHCHECK (`bubbled health`, GET /readyz), and it
#     passes: with a real Dendrite on the host (bridge/dendritetest/cmd/
#     run-dendrite) and the container on the host's network, `podman
#     healthcheck run` turns healthy once the bridge is up, and unhealthy
#     after Dendrite is stopped (/readyz names the homeserver).
#   - docker/compose.yaml loads with compose-go (the loader of Docker Compose
#     v2: schema, interpolation, consistency), fetched through the Go module
#     proxy; SKIP if that cannot be fetched.
# What it cannot check:
#   - no Docker engine: the image is not built with docker/BuildKit, nor
#     against the public golang:1.26-bookworm and debian:bookworm-slim images;
#   - the compose file is not run (no Synapse image, no `docker compose`);
#   - device passthrough (`devices:`, `group_add:`), a real modem and the
#     dialout permission on a serial port are not exercised;
#   - the appservice is not reached by a homeserver.
#
# Usage: bash docker/check-podman.sh [--head] [--rebuild-base]
#   --head          build `git archive HEAD` (with the work tree's docker/
#                   directory) instead of the work tree as it is
#   --rebuild-base  make the local base images again even if they exist
# Environment: WORK (scratch directory, default /var/tmp/bubbled-podman-check),
# DEBIAN_MIRROR (default http://deb.debian.org/debian).
# The base images are kept for the next run; the scratch directory is removed.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${WORK:-/var/tmp/bubbled-podman-check}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE=localhost/bubbled-base:bookworm
BUILDER=localhost/bubbled-builder:bookworm
IMAGE=localhost/bubbled:podman-check
VERSION=podman-check
COMPOSE_GO=github.com/compose-spec/compose-go/v2@v2.16.2
USE_HEAD=0
REBUILD_BASE=0
for a in "$@"; do
  case $a in
    --head) USE_HEAD=1 ;;
    --rebuild-base) REBUILD_BASE=1 ;;
    *) echo "usage: $0 [--head] [--rebuild-base]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "run as root (apt-get, debootstrap, rootful podman)" >&2; exit 2; }

pass=0 fail=0 skip=0
ok()   { pass=$((pass+1)); echo "PASS: $*"; }
bad()  { fail=$((fail+1)); echo "FAIL: $*"; }
skp()  { skip=$((skip+1)); echo "SKIP: $*"; }
step() { echo; echo "== $*"; }
took() { echo "   ($1: $(( SECONDS - $2 ))s)"; }

# --- tools ------------------------------------------------------------------
step "tools"
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
fi
command -v go >/dev/null || { echo "needs a Go toolchain on PATH (it is copied into the builder image)" >&2; exit 2; }
GOROOT_HOST=$(go env GOROOT)
MODCACHE=$(go env GOMODCACHE)
podman --version; runc --version | head -1; go version

rm -rf "$WORK"; mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT
# crun fails here (cgroups in hybrid mode) and podman's default ulimits are refused.
printf '[containers]\ndefault_ulimits = []\n' > "$WORK/containers.conf"
export CONTAINERS_CONF=$WORK/containers.conf
P=(podman --runtime runc --cgroup-manager=cgroupfs)

# --- base images --------------------------------------------------------------
if [ $REBUILD_BASE = 1 ] || ! "${P[@]}" image exists $BASE; then
  step "debootstrap bookworm (minbase) -> $BASE"
  t=$SECONDS
  debootstrap --variant=minbase bookworm "$WORK/rootfs" "$MIRROR" > "$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log"; exit 1; }
  took debootstrap $t
  r=$WORK/rootfs
  # Like debian:bookworm-slim: bookworm, -updates and -security; slim's apt and
  # dpkg settings (no package caches, docs or locales).
  rm -f "$r/etc/apt/sources.list"
  cat > "$r/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  cat > "$r/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' > "$r/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Acquire::GzipIndexes "true";' > "$r/etc/apt/apt.conf.d/docker-gzip-indexes"
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/groff/*' 'path-exclude /usr/share/info/*' \
    'path-exclude /usr/share/lintian/*' 'path-exclude /usr/share/linda/*' 'path-exclude /usr/share/locale/*' \
    > "$r/etc/dpkg/dpkg.cfg.d/docker"
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin "$r"/var/lib/apt/lists/* \
         "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/locale/*
  tar -C "$r" -c . | "${P[@]}" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - $BASE > "$WORK/import.log" 2>&1
  rm -rf "$r"
  REBUILD_BASE=1
fi
if [ $REBUILD_BASE = 1 ] || ! "${P[@]}" image exists $BUILDER; then
  step "builder image $BUILDER ($BASE + gcc, libc6-dev, git + $(go version | cut -d' ' -f3))"
  t=$SECONDS
  mkdir -p "$WORK/builder"
  cat > "$WORK/builder/Containerfile" <<EOF
FROM $BASE
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev git ca-certificates \\
 && rm -rf /var/lib/apt/lists/*
RUN cp -a /hostgo /usr/local/go
ENV GOPATH=/go GOTOOLCHAIN=local PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /go
EOF
  "${P[@]}" build -q -v "$GOROOT_HOST:/hostgo:ro" -t $BUILDER "$WORK/builder" > "$WORK/builder.log" 2>&1 \
    || { tail -20 "$WORK/builder.log"; exit 1; }
  took "builder image" $t
fi

# --- source -------------------------------------------------------------------
if [ $USE_HEAD = 1 ]; then
  SRC=$WORK/src; mkdir -p "$SRC"
  git -C "$REPO" archive HEAD | tar -x -C "$SRC"
  rm -rf "$SRC/docker"; cp -a "$REPO/docker" "$SRC/docker"
  rm -rf "$SRC/docker/data" "$SRC/docker/synapse"
else
  SRC=$REPO
fi
# Fill the host's module cache for this go.mod (the host reaches the proxy).
(cd "$SRC" && go mod download)

# --- build --------------------------------------------------------------------
step "podman build -f docker/Dockerfile"
t=$SECONDS
# --format docker: OCI images cannot carry HEALTHCHECK, podman would drop it.
if "${P[@]}" build --format docker -f "$SRC/docker/Dockerfile" \
     --build-arg BUILDER_IMAGE=$BUILDER --build-arg RUNTIME_IMAGE=$BASE \
     --build-arg VERSION=$VERSION \
     -v "$MODCACHE:/go/pkg/mod:O" \
     -t $IMAGE "$SRC" > "$WORK/build.log" 2>&1; then
  took "image build" $t
  ok "docker/Dockerfile builds (image $(( $("${P[@]}" image inspect --format '{{.Size}}' $IMAGE) / 1000000 )) MB)"
else
  tail -30 "$WORK/build.log"
  bad "docker/Dockerfile builds"
  echo; echo "$pass passed, $fail failed"; exit 1
fi
# --no-healthcheck: without systemd, podman prints an error about the image's
# HEALTHCHECK timer into the output of every run; the health check has its
# own step below (podman healthcheck run).
R=("${P[@]}" run --rm --network none --no-healthcheck)

# --- checks -------------------------------------------------------------------
step "checks"
out=$("${R[@]}" $IMAGE --version 2>&1) || true
[[ $out == "bubbled $VERSION "* ]] && ok "--version: $out" || bad "--version printed: $out"

"${R[@]}" --entrypoint cat $IMAGE /usr/local/bin/bubbled > "$WORK/bubbled.bin" || true
info=$(go version -m "$WORK/bubbled.bin" 2>&1 || true)
if grep -q 'CGO_ENABLED=1' <<<"$info" && grep -q -- '-tags=goolm' <<<"$info" && grep -q -- '-trimpath=true' <<<"$info"; then
  ok "binary built with CGO_ENABLED=1, -tags goolm, -trimpath"
else
  bad "binary build settings: $(grep -E 'build\s' <<<"$info" | tr '\n' ' ')"
fi

uid=$("${R[@]}" --entrypoint id $IMAGE -u); groups=$("${R[@]}" --entrypoint id $IMAGE -Gn)
[[ $uid == 1337 && " $groups " == *" dialout "* ]] \
  && ok "runs as uid $uid (groups: $groups)" || bad "user: uid=$uid groups=$groups"

"${R[@]}" --entrypoint sh $IMAGE -c 'test -s /etc/ssl/certs/ca-certificates.crt && test -e /usr/share/zoneinfo/Europe/London' \
  && ok "ca-certificates and tzdata present" || bad "ca-certificates or tzdata missing"

meta=$("${P[@]}" image inspect --format '{{.Config.User}} {{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}' $IMAGE)
[[ $meta == "bubbled 29340/tcp "* ]] && ok "image user and port: $meta" || bad "image user and port: $meta"

d=$WORK/data; mkdir -p "$d"
cp "$SRC/example-config.yaml" "$d/config.yaml"; chown -R 1337 "$d"
ENVS=(-e BUBBLED_HOMESERVER__ADDRESS=http://synapse:8008 -e BUBBLED_APPSERVICE__ADDRESS=http://bubbled:29340 -e BUBBLED_APPSERVICE__HOSTNAME=0.0.0.0)
if "${R[@]}" -v "$d:/data" "${ENVS[@]}" $IMAGE -c /data/config.yaml -g -r /data/registration.yaml > "$WORK/g.log" 2>&1 \
   && grep -q '^url: http://bubbled:29340$' "$d/registration.yaml" && grep -q '^as_token: ' "$d/registration.yaml" \
   && ! grep -qE '^\s*(as|hs)_token: generate' "$d/config.yaml"; then
  ok "-g wrote /data/registration.yaml (url: http://bubbled:29340) and saved the tokens into config.yaml"
else
  cat "$WORK/g.log"; bad "-g registration"
fi

rc=0
"${R[@]}" -v "$d:/data" --entrypoint timeout $IMAGE 8 /usr/local/bin/bubbled -c /data/config.yaml > "$WORK/run.log" 2>&1 || rc=$?
if [ $rc = 124 ] && [ -s "$d/bubbled.db" ] && grep -q 'Upgrading database' "$WORK/run.log" && grep -q 'started the appservice listener' "$WORK/run.log"; then
  ok "the bridge starts: SQLite database migrated in /data, appservice listener opened (stopped after 8s)"
else
  tail -20 "$WORK/run.log"; bad "the bridge start (exit $rc)"
fi

step "health check"
hc=$("${P[@]}" image inspect --format '{{if .Config.Healthcheck}}{{json .Config.Healthcheck.Test}}{{end}}' $IMAGE)
[[ $hc == *'"health"'* ]] && ok "image HEALTHCHECK: $hc" || bad "image HEALTHCHECK missing or unexpected: '$hc'"
health_check() {
  local hd=$WORK/health hsport=$((20000 + RANDOM % 10000)) asport=$((30000 + RANDOM % 5000)) mport=$((35000 + RANDOM % 5000))
  local name=bubbled-health-check-$$ i state
  mkdir -p "$hd"; cp "$SRC/example-config.yaml" "$hd/config.yaml"; chown -R 1337 "$hd"
  local HENV=(-e BUBBLED_HOMESERVER__ADDRESS=http://127.0.0.1:$hsport -e BUBBLED_APPSERVICE__ADDRESS=http://127.0.0.1:$asport
              -e BUBBLED_APPSERVICE__HOSTNAME=127.0.0.1 -e BUBBLED_APPSERVICE__PORT=$asport -e BUBBLED_METRICS__LISTEN=127.0.0.1:$mport)
  local H=("${P[@]}" run --network host -v "$hd:/data" "${HENV[@]}")
  "${H[@]}" --rm $IMAGE -c /data/config.yaml -g -r /data/registration.yaml > "$WORK/health-g.log" 2>&1 \
    || { cat "$WORK/health-g.log"; bad "health check: -g"; return; }
  (cd "$REPO" && go build -o "$WORK/run-dendrite" ./bridge/dendritetest/cmd/run-dendrite) \
    || { bad "health check: build run-dendrite"; return; }
  "$WORK/run-dendrite" -port $hsport -reg "$hd/registration.yaml" > "$WORK/dendrite.out" 2>&1 &
  local dpid=$!
  for i in $(seq 120); do grep -q '^http' "$WORK/dendrite.out" && break; sleep 1; done
  grep -q '^http' "$WORK/dendrite.out" || { tail "$WORK/dendrite.out"; kill $dpid; bad "health check: Dendrite did not start"; return; }
  "${H[@]}" -d --name $name $IMAGE -c /data/config.yaml --ignore-unsupported-server > /dev/null
  state=unhealthy
  for i in $(seq 60); do
    if "${P[@]}" healthcheck run $name > /dev/null 2>&1; then state=healthy; break; fi
    sleep 2
  done
  [ $state = healthy ] && ok "healthy with Dendrite up (podman healthcheck run, after ~$((i*2))s)" \
    || { "${P[@]}" logs $name 2>&1 | tail -20; bad "health check never passed"; }
  kill $dpid; wait $dpid 2>/dev/null || true
  state=healthy
  for i in $(seq 30); do
    if ! "${P[@]}" healthcheck run $name > /dev/null 2>&1; then state=unhealthy; break; fi
    sleep 2
  done
  local body; body=$("${P[@]}" exec $name /usr/local/bin/bubbled health -c /data/config.yaml 2>&1 || true)
  [[ $state == unhealthy && $body == *'"check":"homeserver"'* ]] && ok "unhealthy once Dendrite is stopped: $body" \
    || bad "health check after Dendrite stopped: $state $body"
  "${P[@]}" rm -f $name > /dev/null 2>&1 || true
}
health_check

step "compose.yaml"
mkdir -p "$WORK/composecheck"
cat > "$WORK/composecheck/main.go" <<'EOF'
// Loads compose files with compose-go, as Docker Compose v2 does.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	opts, err := cli.NewProjectOptions(os.Args[1:], cli.WithName("bubbled"), cli.WithConsistency(true))
	if err == nil {
		_, err = opts.LoadProject(context.Background())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
EOF
if (cd "$WORK/composecheck" && go mod init composecheck >/dev/null 2>&1 && go get $COMPOSE_GO >/dev/null 2>&1 && go mod tidy >/dev/null 2>&1 \
    && go build -o composecheck . > build.log 2>&1); then
  if cerr=$("$WORK/composecheck/composecheck" "$REPO/docker/compose.yaml" 2>&1); then
    ok "docker/compose.yaml loads with compose-go ${COMPOSE_GO#*@}"
  else
    bad "docker/compose.yaml: $cerr"
  fi
else
  skp "compose-go could not be fetched or built"
fi

echo
echo "image $IMAGE: $("${P[@]}" image inspect --format '{{.Size}}' $IMAGE) bytes"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail = 0 ]
