#!/usr/bin/env bash
# The shipped Dockerfiles and the README's container recipes, built and run for real
# with rootful podman and buildah (no registry: the base image is bootstrapped from
# Debian's packages and imported), as a person would copy them.
#
#   tests/containers/run.sh
#
# Needs root, podman, buildah, runc and debootstrap (CI installs them: this script
# installs nothing). The base image (Debian 12 minbase with Go) is bootstrapped once
# into $CK_ROOTFS_CACHE (default /var/cache/cachekeeper-ci) and imported once into
# podman's storage; every later run reuses both.
#
# Each check prints "ok" or "FAIL"; the last line counts them; the exit status is 1 if
# any check failed, 2 if the harness itself could not run (a failure too, never a skip).
set -uo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

# Bump when the package list below changes: the cached base is keyed on it.
BASE_KEY=container-bookworm-minbase-go-v1
ROOTFS_CACHE=${CK_ROOTFS_CACHE:-/var/cache/cachekeeper-ci}
BASE_IMAGE=localhost/cachekeeper-ci/base:$BASE_KEY
started=$(date +%s)

die() {
    echo "container test: cannot run: $*" >&2
    echo "container test: HARNESS FAILED after $(($(date +%s) - started)) s" >&2
    exit 2
}
log() { echo "--- $*"; }

[ "$(id -u)" = 0 ] || die "needs root"
for tool in podman buildah runc debootstrap python3; do
    command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install podman buildah runc debootstrap python3)"
done

# ---------------------------------------------------------------------------------
# A scratch directory (mktemp's own name), and podman set up for this machine.

work=$(mktemp -d --tmpdir=/var/tmp)
cleanup() {
    if [ -n "${CK_KEEP:-}" ]; then echo "container test: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# shellcheck source=tests/containers/podman.sh
source tests/containers/podman.sh

# ---------------------------------------------------------------------------------
# The base image: bootstrapped once, imported once.

t0=$(date +%s)
if ! podman image exists "$BASE_IMAGE"; then
    tarball=$ROOTFS_CACHE/$BASE_KEY.tar
    if [ ! -s "$tarball" ]; then
        log "bootstrapping Debian 12 with Go into $tarball (once; a few minutes)"
        mkdir -p "$ROOTFS_CACHE"
        tmp=$(mktemp -d -p "$ROOTFS_CACHE")
        debootstrap --variant=minbase bookworm "$tmp/rootfs" http://deb.debian.org/debian \
            >"$tmp/debootstrap.log" 2>&1 \
            || { tail -20 "$tmp/debootstrap.log" >&2; rm -rf "$tmp"; die "debootstrap failed"; }
        chroot "$tmp/rootfs" apt-get install -y -q --no-install-recommends golang-go ca-certificates \
            >"$tmp/apt.log" 2>&1 || { tail -20 "$tmp/apt.log" >&2; rm -rf "$tmp"; die "installing Go into the base failed"; }
        chroot "$tmp/rootfs" apt-get clean
        rm -rf "$tmp/rootfs/var/lib/apt/lists/"*
        tar -C "$tmp/rootfs" --numeric-owner --xattrs --acls -cf "$tmp/base.tar" . \
            || { rm -rf "$tmp"; die "cannot pack the base"; }
        # Another run may have finished first; either copy is as good.
        mv -f "$tmp/base.tar" "$tarball"
        rm -rf "$tmp"
    fi
    podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$tarball" "$BASE_IMAGE" >/dev/null || die "podman import $tarball failed"
fi
log "base image $BASE_IMAGE ready in $(($(date +%s) - t0)) s"

# ---------------------------------------------------------------------------------
# Checks.

# shellcheck source=tests/checks.sh
source tests/checks.sh

# ---------------------------------------------------------------------------------
# What the images are built from: the binaries built here, a file:// GOPROXY with two
# versions of a module (no network in a build or a container), and a Go module.

target=${CARGO_TARGET_DIR:-target}
t0=$(date +%s)
cargo build -q --release --locked --bin cachekeeper --bin cachekeeperctl || die "cargo build failed"
log "release binaries ready in $(($(date +%s) - t0)) s"

python3 tests/goproxy.py "$work/goproxy" "$work/app" v1.0.0 || die "cannot write the Go proxy"
chmod -R a+rX "$work/goproxy" "$work/app"
goenv=(GOPROXY=file:///goproxy GOSUMDB=off GOFLAGS=-mod=mod)
(cd "$work/app" && env GOPROXY="file://$work/goproxy" GOSUMDB=off GOMODCACHE="$work/hostmod" GOFLAGS=-mod=mod \
    go mod tidy) || die "go mod tidy for the test module failed"
chmod -R u+w "$work/hostmod" && rm -rf "$work/hostmod"
proxy=(-v "$work/goproxy:/goproxy:ro")
envs=()
for e in "${goenv[@]}"; do envs+=(--env "$e"); done

# ---------------------------------------------------------------------------------
# The images.

# cachekeeper.Dockerfile's build stage compiles with cargo, which needs crates.io: here
# its image is substituted by one that holds the binaries built above at the path the
# stage would build them, and a cargo that only checks they are there. Everything
# else in the file runs as shipped.
standin=$work/standin
mkdir -p "$standin"
cp "$target/release/cachekeeper" "$target/release/cachekeeperctl" "$standin/"
cat >"$standin/cargo" <<'SH'
#!/bin/sh
# Stand-in for `cargo build --release` in CI: the binaries were built outside.
test -x /src/target/release/cachekeeper && test -x /src/target/release/cachekeeperctl
SH
chmod +x "$standin/cargo"
cat >"$standin/Containerfile" <<CF
FROM $BASE_IMAGE
COPY cachekeeper cachekeeperctl /src/target/release/
COPY cargo /usr/local/bin/cargo
CF

build() { podman build -q "${build_opts[@]}" "$@"; }
ck_image=localhost/cachekeeper-ci/cachekeeper:test
app_image=localhost/cachekeeper-ci/app:test

t0=$(date +%s)
check "the stand-in build image builds" build -t localhost/cachekeeper-ci/build-standin:test "$standin"
check "packaging/docker/cachekeeper.Dockerfile builds (only its images substituted)" \
    build -f packaging/docker/cachekeeper.Dockerfile \
    --build-arg BUILD_IMAGE=localhost/cachekeeper-ci/build-standin:test --build-arg RUNTIME_IMAGE="$BASE_IMAGE" \
    -t "$ck_image" .
same "the cachekeeper image runs cachekeeper" "0" \
    "$(podman run "${run_opts[@]}" "$ck_image" --version >/dev/null 2>&1; echo $?)"
check "packaging/docker/Dockerfile builds (only its images substituted): root download, --init, USER 1001, go build" \
    build -f packaging/docker/Dockerfile "${proxy[@]}" "${envs[@]}" \
    --build-arg GO_IMAGE="$BASE_IMAGE" --build-arg CACHEKEEPER_IMAGE="$ck_image" -t "$app_image" "$work/app"
log "images built in $(($(date +%s) - t0)) s"

# As the non-root user, in a later layer and in a running container: a new module
# version, a build, a clean cache by cachekeeper's own check, and go clean -modcache.
user_steps='set -e
test "$(id -u)" = 1001
go get example.com/hello@v1.1.0
go build -o /tmp/app . && /tmp/app | grep -q "hello v1.1.0"
cachekeeper --check --model private
cachekeeper --check --path "$GOCACHE" --model private
go clean -modcache
test ! -e "$GOMODCACHE/example.com"'
mkdir -p "$work/later"
cat >"$work/later/Containerfile" <<CF
FROM $app_image
RUN $(printf '%s; ' "${user_steps//$'\n'/; }" | sed 's/; $//')
CF
check "a later layer as uid 1001: go get a new version, go build, cachekeeper --check clean, go clean -modcache" \
    build "${proxy[@]}" "${envs[@]}" -t localhost/cachekeeper-ci/later:test "$work/later"
check "a running container as uid 1001: go get, go build, cachekeeper --check clean, go clean -modcache" \
    podman run "${run_opts[@]}" "${proxy[@]}" "${envs[@]}" "$app_image" sh -c "$user_steps"

# Exec mode as the container's entrypoint, cachekeeper as PID 1.
out=$(podman run "${run_opts[@]}" --user 0 "$app_image" \
    cachekeeper --init --owner 1001:1001 --model private -- sh -c 'id -u; grep ^CapEff /proc/self/status; echo pid $$; exit 7' 2>/dev/null)
same "exec mode in podman run: the command's exit status is the container's" 7 "$?"
has "exec mode: the command runs as uid 1001" "1001" "$(sed -n 1p <<<"$out")"
has "exec mode: no capabilities left" "0000000000000000" "$(sed -n 2p <<<"$out")"
pid=$(sed -n 3p <<<"$out")
[ -n "$pid" ] && [ "$pid" != "pid 1" ] && ok "exec mode as PID 1: cachekeeper stays as init, the command is its child ($pid)" \
    || bad "exec mode as PID 1: cachekeeper stays as init, the command is its child" "the command ran as '$pid'"
name=ck-exec-$$
podman run -d --name "$name" --network=none "${limits[@]}" --user 0 "$app_image" \
    cachekeeper --init --owner 1001:1001 --model private -- \
    sh -c 'trap "exit 42" TERM; while :; do sleep 0.1; done' >/dev/null 2>&1
sleep 1
t0=$(date +%s)
podman stop --time 30 "$name" >/dev/null 2>&1
stopped_in=$(($(date +%s) - t0))
same "podman stop: SIGTERM reaches the command through cachekeeper as PID 1 (exit 42)" 42 \
    "$(podman inspect --format '{{.State.ExitCode}}' "$name" 2>&1)"
[ "$stopped_in" -lt 10 ] && ok "podman stop took ${stopped_in} s, not the SIGKILL timeout" \
    || bad "podman stop took ${stopped_in} s: SIGTERM was not delivered"
podman rm -f "$name" >/dev/null 2>&1

# The README's recipes, as printed there, with only the image names substituted.
python3 - README.md "$work/readme" <<'PY' || die "cannot extract the README's Dockerfiles"
import os, re, sys
text = open(sys.argv[1]).read()
start = text.index("### In a Dockerfile")
blocks = re.findall(r"```dockerfile\n(.*?)```", text[start:], re.S)
os.makedirs(sys.argv[2])
for i, b in enumerate(blocks[:2]):
    open(os.path.join(sys.argv[2], f"snippet{i}"), "w").write(b)
PY
sub() { sed -e "s|golang:1.22-bookworm|$BASE_IMAGE|" -e "s|cachekeeper:latest|$ck_image|" "$1"; }
rm -rf "$work/readme-app" && cp -r "$work/app" "$work/readme-app"
sub "$work/readme/snippet0" >"$work/readme-app/Dockerfile"
check "the README's Dockerfile builds as printed" \
    build "${proxy[@]}" "${envs[@]}" -t localhost/cachekeeper-ci/readme:test "$work/readme-app"
{ echo "FROM localhost/cachekeeper-ci/readme:test"; sub "$work/readme/snippet1"; } >"$work/readme-app/Dockerfile.entry"
check "the README's exec-mode entrypoint builds" \
    build -f "$work/readme-app/Dockerfile.entry" -t localhost/cachekeeper-ci/readme-entry:test "$work/readme-app"
check "the README's exec-mode entrypoint runs go build as 1001 (podman run IMAGE)" \
    podman run "${run_opts[@]}" localhost/cachekeeper-ci/readme-entry:test

# A host's cache bind-mounted into a container: `sudo go mod download`-style root-owned
# files in a cache owned by uid 4242, which the README's recipe gives back to 4242.
host=$work/host-cache
mkdir -p "$host" && chown 4242:4242 "$host"
check "a root container fills the host's cache (root-owned files, as after sudo go)" \
    podman run "${run_opts[@]}" "${proxy[@]}" "${envs[@]}" --user 0 -v "$host:/go/pkg/mod" -w /app "$app_image" \
    go mod download
out=$(podman run "${run_opts[@]}" --user 0 -v "$host:/cache/mod" -e GOMODCACHE=/cache/mod -e GOCACHE=/tmp/go-build \
    -v "$work/app:/src:ro" -w /src "$app_image" \
    cachekeeper --init --owner 4242:4242 --model private -- go build -o /tmp/app . 2>&1)
status=$?
[ "$status" = 0 ] && ok "the bind-mount recipe: --init as the host owner, then go build as 4242" \
    || bad "the bind-mount recipe: --init as the host owner, then go build as 4242" "exit $status: $(tail -3 <<<"$out" | tr '\n' ' ')"
check "on the host, the cache is 4242's again and compliant" \
    "$target/release/cachekeeper" --check --path "$host" --owner 4242:4242 --model private
same "Go's module files stay read-only" "444" "$(stat -c %a "$host/example.com/hello@v1.0.0/go.mod" 2>&1)"
out=$(podman run "${run_opts[@]}" --user 0 -v "$host:/cache/mod" "$app_image" \
    cachekeeper --init --path /cache/mod --owner 1001:1001 --model private 2>&1)
has "--init warns before giving the host's bind-mounted cache to the container's uid" "owned by 4242" "$out"

# A build cache mount (`RUN --mount=type=cache`, the syntax BuildKit and buildah share):
# the cache lives outside every layer and `uid=` sets only its root, so what a root step
# downloads stays root's. The recipe in docs/containers.md: the step that downloads as
# root gives the cache to the build user; the build user's later step then adds to it.
cat >"$work/app/Dockerfile.cachemount" <<DF
FROM $app_image
USER 0
RUN --mount=type=cache,id=ck-ci-gomod,target=/go/pkg/mod,uid=1001,gid=1001 \
    go mod download && cachekeeper --init --path /go/pkg/mod --owner 1001:1001 --model private
USER 1001:1001
RUN --mount=type=cache,id=ck-ci-gomod,target=/go/pkg/mod,uid=1001,gid=1001 \
    go get example.com/hello@v1.1.0 && cachekeeper --check --path /go/pkg/mod --owner 1001:1001 --model private
DF
check "a build cache mount: root's download is given to the build user, whose later step adds to it" \
    build -f "$work/app/Dockerfile.cachemount" "${proxy[@]}" "${envs[@]}" \
    -t localhost/cachekeeper-ci/cachemount:test "$work/app"

# ---------------------------------------------------------------------------------

elapsed=$(($(date +%s) - started))
if [ ${#failed[@]} -eq 0 ]; then
    echo "container test: all $checks checks passed in $elapsed s"
    echo "$checks passed, 0 failed"
    exit 0
fi
echo "container test: ${#failed[@]} of $checks checks FAILED in $elapsed s:"
printf '  %s\n' "${failed[@]}"
echo "$((checks - ${#failed[@]})) passed, ${#failed[@]} failed"
exit 1
