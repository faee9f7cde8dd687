# podman and buildah set up for this machine, for the container test and the image-layer
# bench: cgroupfs (no systemd user session to ask), events to a file (no journald in
# CI), runc, no network. Sourced, with `work` set to a scratch directory.

cat >"$work/containers.conf" <<'CONF'
[containers]
netns = "none"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
CONF
export CONTAINERS_CONF=$work/containers.conf
export BUILDAH_ISOLATION=oci
limits=(--ulimit nofile=20000:20000 --ulimit nproc=4096:4096)
run_opts=(--rm --network=none "${limits[@]}")
build_opts=(--network=none "${limits[@]}" --pull=never --layers)
