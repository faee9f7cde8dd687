#!/usr/bin/env bash
# The one test command (README, and what CI runs: .ci/run calls exactly this). On a
# fresh Debian 12 machine, as root, with only the package registries reachable: installs
# what the tests need (Go, systemd tools, FUSE, ACL tools, the Rust packaging tools...),
# then runs every check: fmt, clippy, the macOS type-check, the packages, the booted
# systemd, the portable engine and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "tests/run.sh installs packages and runs tests as other users: run it as root (sudo bash tests/run.sh)" >&2
    exit 2
fi

export DEBIAN_FRONTEND=noninteractive
# golang-go: the end-to-end tests build real Go modules. util-linux: setpriv runs them
# (and the service) as other uids. systemd: systemd-analyze, -sysusers and -tmpfiles
# check what ships. python3: the launchd plist and Kubernetes manifest checks. rpm:
# reads the built RPM. bindfs: a FUSE filesystem, which the service must poll. acl,
# attr: setfacl and getfattr, which the ACL tests use to set up and read back ACLs.
# systemd-container (systemd-nspawn), debootstrap and procps (pgrep): the boot test
# runs the .deb under a real systemd in a Debian 12 container.
need=()
command -v go >/dev/null || need+=(golang-go)
command -v setpriv >/dev/null || need+=(util-linux)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v python3 >/dev/null || need+=(python3 python3-pip)
# The hard-link attack in tests/trust.rs runs as an unprivileged user: Debian's python3.
[ -x /usr/bin/python3 ] || need+=(python3)
command -v rpm >/dev/null || need+=(rpm)
command -v bindfs >/dev/null || need+=(bindfs)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v pgrep >/dev/null || need+=(procps)
command -v setfacl >/dev/null || need+=(acl)
command -v getfattr >/dev/null || need+=(attr)
# podman, buildah and runc: tests/containers/run.sh builds the shipped Dockerfiles and
# the README's recipes and runs them (debootstrap makes its base image).
command -v podman >/dev/null || need+=(podman)
command -v buildah >/dev/null || need+=(buildah)
command -v runc >/dev/null || need+=(runc)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -q
    apt-get install -y -q "${need[@]}"
fi
go version
# Toolchain switching (golang.org/toolchain modules) exists from Go 1.21, and Go 1.21
# changed how it runs git in cache/vcs (GIT_DIR): tests/go_e2e.rs runs its Go tests
# with every installed Go, and the toolchain test needs 1.21 or later. Debian 12 has
# them in bookworm-backports.
backports=/etc/apt/sources.list.d/bookworm-backports.list
if grep -q '^VERSION_CODENAME=bookworm' /etc/os-release && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo 'deb http://deb.debian.org/debian bookworm-backports main' > "$backports"
fi
gos=()
for v in 1.21 1.22 1.23; do
    [ -x "/usr/lib/go-$v/bin/go" ] || gos+=("golang-$v-go")
done
if [ ${#gos[@]} -gt 0 ]; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${gos[@]}"
fi
for go in /usr/lib/go-*/bin/go; do GOTOOLCHAIN=local "$go" version; done
# Kubernetes schemas, bundled for offline validation; the reference Prometheus parser.
python3 -m pip install -q --disable-pip-version-check kubernetes-validate prometheus-client
command -v cargo-deb >/dev/null || cargo install -q cargo-deb --locked
command -v cargo-generate-rpm >/dev/null || cargo install -q cargo-generate-rpm --locked

cargo fmt --check
cargo clippy --all-targets -- -D warnings

# macOS: the whole crate, tests included, type-checked and clippy-checked for
# aarch64-apple-darwin. Debian's rustc-web and its standard library source build std
# for the target (-Zbuild-std, allowed by RUSTC_BOOTSTRAP) with no Apple SDK and no C
# cross compiler; rust-web-clippy is the clippy of that rustc. The std build is cached
# in target/macos-check: about 5 minutes cold on 2 cores (the check; clippy then adds
# about 25 s), 5 to 10 s warm.
mac=()
for p in rustc-web rust-web-src rust-web-clippy; do
    dpkg -s "$p" >/dev/null 2>&1 || mac+=("$p")
done
if [ ${#mac[@]} -gt 0 ]; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${mac[@]}"
fi
# std must be built from the source of the very rustc that compiles against it.
rustc_version=$(/usr/bin/rustc --version | cut -d' ' -f2)
src_version=$(dpkg-query -W -f '${Version}' rust-web-src)
if [ "${src_version%%+*}" != "$rustc_version" ]; then
    echo "rust-web-src $src_version does not match /usr/bin/rustc $rustc_version" >&2
    exit 1
fi
macos=(env RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1)
macos_args=(--locked -Zbuild-std=std,panic_abort --target aarch64-apple-darwin --all-targets
    --target-dir target/macos-check)
"${macos[@]}" cargo check "${macos_args[@]}"
"${macos[@]}" /usr/bin/cargo-clippy clippy "${macos_args[@]}" -- -D warnings
# The packages first, so that the test runner's summary closes the log.
bash packaging/check.sh
# The .deb check.sh built, booted for real: 1.5 to 3 minutes cold, 30 s warm.
bash tests/systemd/boot-test.sh
# The Dockerfiles and the README's container recipes, built and run with podman and
# buildah: about 3 minutes cold (the base image is bootstrapped from Debian's packages
# once, into /var/cache/cachekeeper-ci), 15 to 20 s warm.
bash tests/containers/run.sh
# The engine macOS uses, tested here: the walk's unit tests (the deterministic races)
# and the hostile-tree and race tests, against the portable engine. Left out by name:
# a bind mount of the same filesystem, which only the Linux engine's mount ids see
# (macOS has no bind mounts).
CACHEKEEPER_ENGINE=portable cargo nextest run --no-fail-fast --lib --test repair \
    -E 'not test(=root_bind_mount_inside_the_tree_is_not_crossed)'
cargo nextest run --no-fail-fast
# Every mount a test makes (and every mount a service under test makes) is undone, also
# when a test fails: anything left below the tests' temporary directories fails CI.
left=$(awk -v tmp="${TMPDIR:-/tmp}/ck-" 'index($5, tmp) == 1 {print $5}' /proc/self/mountinfo)
if [ -n "$left" ]; then
    echo "mounts left behind by the tests:" >&2
    echo "$left" >&2
    exit 1
fi
