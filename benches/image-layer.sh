#!/usr/bin/env bash
# The size of the image layer that `cachekeeper --init` adds, against `chown -R`'s, on a
# cache of N module files (7,000 by default, CK_BENCH_LAYER_FILES) baked into an image:
# fully root-owned, and 95 % compliant already. A layer holds every file a RUN step
# changed; --init leaves compliant entries alone, so it copies up only what it changes,
# while chown -R copies up every file it touches, changed or not.
#
#   bash benches/image-layer.sh          (as root, after tests/containers/run.sh has
#                                         imported its base image once)
#
# Prints one line per case with both sizes and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_IMAGE=localhost/cachekeeper-ci/base:container-bookworm-minbase-go-v1
files=${CK_BENCH_LAYER_FILES:-7000}
[ "$(id -u)" = 0 ] || { echo "image-layer bench: run it as root" >&2; exit 2; }
work=$(mktemp -d --tmpdir=/var/tmp)
trap 'rm -rf "$work"' EXIT
# shellcheck source=tests/containers/podman.sh
source tests/containers/podman.sh
podman image exists "$BASE_IMAGE" \
    || { echo "image-layer bench: no $BASE_IMAGE: run tests/containers/run.sh once first" >&2; exit 2; }
cargo build -q --release --locked --bin cachekeeper
cp target/release/cachekeeper "$work/"
build() { buildah bud -q "${build_opts[@]}" -f "$1" -t "$2" "$work" >/dev/null; }
# The newest layer of an image, in bytes.
layer() { podman history --format json "$1" | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["size"])'; }

dirs=$((files / 100))
for case in root-owned 95-percent; do
    if [ "$case" = root-owned ]; then fix=":"; else
        # All but every twentieth module tree already belongs to uid 1001.
        fix="chown -R 1001:1001 /go/pkg/mod && for d in \$(seq 1 20 $dirs); do chown -R 0:0 /go/pkg/mod/example.com/m\$d@v1.0.0; done"
    fi
    cat >"$work/Cache.$case" <<DF
FROM $BASE_IMAGE
COPY cachekeeper /usr/local/bin/cachekeeper
RUN mkdir -p /go/pkg/mod/cache/download/example.com /go/pkg/mod/example.com && cd /go/pkg/mod/example.com \\
    && for d in \$(seq 1 $dirs); do mkdir m\$d@v1.0.0 && for f in \$(seq 1 100); do echo "package m\$d" > m\$d@v1.0.0/f\$f.go; done; done \\
    && chmod -R a-w /go/pkg/mod/example.com/*@* && $fix
DF
    build "$work/Cache.$case" "localhost/ck-bench/cache:$case"
    printf 'FROM localhost/ck-bench/cache:%s\nRUN cachekeeper --init --path /go/pkg/mod --owner 1001:1001 --model private >/dev/null\n' "$case" >"$work/Init.$case"
    printf 'FROM localhost/ck-bench/cache:%s\nRUN chown -R 1001:1001 /go/pkg/mod\n' "$case" >"$work/Chown.$case"
    build "$work/Init.$case" "localhost/ck-bench/init:$case"
    build "$work/Chown.$case" "localhost/ck-bench/chown:$case"
    init=$(layer "localhost/ck-bench/init:$case")
    chown=$(layer "localhost/ck-bench/chown:$case")
    awk -v c="$case" -v n="$files" -v i="$init" -v o="$chown" 'BEGIN {
        printf "image layer, %s cache of %d files: cachekeeper --init %.2f MB, chown -R %.2f MB: %.1fx smaller\n",
            c, n, i / 1e6, o / 1e6, (i > 0 ? o / i : 0) }'
done
podman rmi -f localhost/ck-bench/init:root-owned localhost/ck-bench/chown:root-owned localhost/ck-bench/cache:root-owned \
    localhost/ck-bench/init:95-percent localhost/ck-bench/chown:95-percent localhost/ck-bench/cache:95-percent >/dev/null 2>&1 || true
