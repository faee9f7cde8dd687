#!/usr/bin/env bash
# The .deb under a real, booted systemd: Debian 12 with systemd as PID 1 inside
# systemd-nspawn. Installs the package, reboots, then follows the README as a new
# administrator and new users would, checking each promise on the live system.
#
#   tests/systemd/boot-test.sh [path/to/cachekeeper_VERSION_ARCH.deb]
#
# Without an argument it takes the newest target/debian/cachekeeper_*.deb (CI builds
# it in packaging/check.sh). Needs root, systemd-nspawn (systemd-container),
# debootstrap, nsenter, python3, and the Debian mirror on the first run: the guest's
# root filesystem is bootstrapped once into $CK_ROOTFS_CACHE (default
# /var/cache/cachekeeper-ci) and copied for every run, so that a run never changes it.
#
# Each check prints "ok" or "FAIL"; the last line counts them; the exit status is 1 if
# any check failed, 2 if the harness itself could not run (that is a failure too,
# never a skip).
set -uo pipefail
cd "$(dirname "$0")/../.."

# Bump when the package list below changes: the cached root filesystem is keyed on it.
ROOTFS_KEY=bookworm-minbase-go-v1
ROOTFS_CACHE=${CK_ROOTFS_CACHE:-/var/cache/cachekeeper-ci}
GUEST_PATH=/usr/sbin:/usr/bin:/sbin:/bin
started=$(date +%s)

die() {
    echo "boot test: cannot run: $*" >&2
    echo "boot test: HARNESS FAILED after $(($(date +%s) - started)) s" >&2
    exit 2
}
log() { echo "--- $*"; }

deb=${1:-$(ls -t target/debian/cachekeeper_*.deb 2>/dev/null | head -1)}
[ -n "$deb" ] && [ -f "$deb" ] || die "no .deb given and none in target/debian (run cargo deb)"
[ "$(id -u)" = 0 ] || die "needs root"
for tool in systemd-nspawn debootstrap nsenter python3 pgrep; do
    command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install systemd-container debootstrap util-linux python3 procps)"
done

# ---------------------------------------------------------------------------------
# The guest's root filesystem: bootstrapped once, then copied per run.

base=$ROOTFS_CACHE/$ROOTFS_KEY
if [ ! -x "$base/usr/bin/go" ]; then
    log "bootstrapping Debian 12 into $base (once; a few minutes)"
    # Go is installed last: without it the copy is incomplete, whatever else is there.
    rm -rf "$base"
    mkdir -p "$ROOTFS_CACHE"
    tmp=$(mktemp -d -p "$ROOTFS_CACHE")
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,procps,adduser \
        bookworm "$tmp/rootfs" http://deb.debian.org/debian >"$tmp/debootstrap.log" 2>&1 \
        || { tail -20 "$tmp/debootstrap.log" >&2; rm -rf "$tmp"; die "debootstrap failed"; }
    chroot "$tmp/rootfs" apt-get install -y -q --no-install-recommends golang-go ca-certificates \
        >"$tmp/apt.log" 2>&1 || { tail -20 "$tmp/apt.log" >&2; rm -rf "$tmp"; die "installing Go into the guest failed"; }
    chroot "$tmp/rootfs" apt-get clean
    # Another run may have finished first; either copy is as good.
    mv -T "$tmp/rootfs" "$base" 2>/dev/null || true
    rm -rf "$tmp"
fi

name=ck-boot-$$
work=$(mktemp -d -p /var/tmp)
rootfs=$work/rootfs
nspawn_pid=
cgroup=

cleanup() {
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        # nspawn asks the guest to power off on SIGTERM; SIGKILL if it does not.
        kill -TERM "$nspawn_pid" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$nspawn_pid" 2>/dev/null
        wait "$nspawn_pid" 2>/dev/null
    fi
    if [ -n "$cgroup" ] && [ -d "$cgroup" ]; then
        find "$cgroup" -depth -type d -exec rmdir {} + 2>/dev/null
    fi
    if [ -n "${CK_KEEP:-}" ]; then echo "boot test: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$(date +%s)
cp -a "$base" "$rootfs" || die "cannot copy $base"
log "copied the guest's root filesystem in $(($(date +%s) - t0)) s"

# What the guest needs from outside, put in place before it boots: the package, and a
# file:// GOPROXY with two versions of a module (no network in the guest).
cp "$deb" "$rootfs/root/cachekeeper.deb"
python3 tests/goproxy.py "$rootfs/srv/goproxy" "$rootfs/srv/apps" v1.0.0 v1.1.0 || die "cannot write the Go proxy"

# ---------------------------------------------------------------------------------
# Booting and driving the guest.

nspawn_args=(-b -D "$rootfs" -M "$name" --private-network --console=pipe)
nspawn_env=()
# Without systemd as the host's PID 1 there is no machined to register with and no
# unit to make a scope in.
if [ "$(cat /proc/1/comm)" != systemd ]; then nspawn_args+=(--register=no --keep-unit); fi
# On a hybrid cgroup host, nspawn gets a subtree of the unified hierarchy of its own,
# so that the guest's systemd runs on cgroup v2 like on a normal Debian 12 host.
if [ "$(stat -fc %T /sys/fs/cgroup)" = tmpfs ] && [ -d /sys/fs/cgroup/unified ]; then
    cgroup=/sys/fs/cgroup/unified/$name
    mkdir "$cgroup" || die "cannot create $cgroup"
    nspawn_env+=(SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1)
fi

guest_pid=
boot() {
    (
        if [ -n "$cgroup" ]; then echo "$BASHPID" >"$cgroup/cgroup.procs"; fi
        exec env "${nspawn_env[@]}" systemd-nspawn "${nspawn_args[@]}"
    ) </dev/null >>"$work/console.log" 2>&1 &
    nspawn_pid=$!
    guest_pid=
    for _ in $(seq 300); do
        guest_pid=$(pgrep -x -P "$nspawn_pid" systemd) && break
        kill -0 "$nspawn_pid" 2>/dev/null || { tail -30 "$work/console.log" >&2; die "systemd-nspawn exited"; }
        sleep 0.1
    done
    [ -n "$guest_pid" ] || { tail -30 "$work/console.log" >&2; die "no systemd under systemd-nspawn (pid $nspawn_pid)"; }
    # Everything below runs through nsenter: if these namespaces were ours, the
    # commands would land on the host.
    local ns
    for ns in mnt pid; do
        [ "$(readlink "/proc/$guest_pid/ns/$ns")" != "$(readlink "/proc/self/ns/$ns")" ] \
            || die "pid $guest_pid shares our $ns namespace: it is not the guest's PID 1"
    done
    [ "$(g cat /proc/1/comm)" = systemd ] || die "PID 1 in the guest is not systemd"
    local state= deadline=$(($(date +%s) + 120))
    while :; do
        state=$(g timeout 10 systemctl is-system-running --wait 2>/dev/null)
        case $state in running | degraded | maintenance | stopping) break ;; esac
        if [ "$(date +%s)" -ge "$deadline" ]; then
            g systemctl list-jobs --no-pager >&2
            g systemctl --failed --no-pager >&2
            # inotify limits are the host's: a test that lowers them meanwhile (the
            # service tests do) makes the guest's .path units fail and its boot hang.
            die "the guest did not finish booting within 120 s (state '$state'; fs.inotify.max_user_instances is $(cat /proc/sys/fs/inotify/max_user_instances))"
        fi
        sleep 0.5
    done
    log "booted (guest PID 1 is host pid $guest_pid): $state"
    boot_state=$state
}

# Powers the guest off and waits for nspawn to exit.
shutdown() {
    g systemctl poweroff >/dev/null 2>&1
    for _ in $(seq 600); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$nspawn_pid" 2>/dev/null; then
        kill -KILL "$nspawn_pid"
        die "the guest did not power off within 60 s"
    fi
    wait "$nspawn_pid" 2>/dev/null
    nspawn_pid=
}

# A command in the guest, as root, with a clean environment.
g() {
    nsenter -t "$guest_pid" -m -u -i -n -p -C -r -w \
        env -i PATH="$GUEST_PATH" HOME=/root LANG=C.UTF-8 timeout 300 "$@"
}
# A command in the guest as USER, with that user's groups as /etc/group has them.
as() {
    local user=$1
    shift
    g setpriv --reuid="$user" --regid="$user" --init-groups \
        env HOME="/home/$user" USER="$user" "$@"
}
# The Go environment of a member of the shared cache.
goenv=(env GOMODCACHE=/var/cache/go/mod GOPROXY=file:///srv/goproxy GOSUMDB=off GOFLAGS=-mod=mod)

# ---------------------------------------------------------------------------------
# Checks.

# shellcheck source=tests/checks.sh
source tests/checks.sh
# eventually SECONDS CMD...: CMD succeeds within SECONDS.
eventually() {
    local deadline=$(($(date +%s) + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}
prop() { g systemctl show -p "$1" --value cachekeeper; }
main_pid() { prop MainPID; }
settled() {
    case $(prop ActiveState) in activating | deactivating | reloading) return 1 ;; esac
}
# The service runs again, under another pid than $1.
restarted_from() {
    local now
    now=$(main_pid)
    [ "$now" != "$1" ] && [ "$now" != 0 ] && g systemctl is-active --quiet cachekeeper
}
stat_of() { g stat -c '%U:%G %a' "$1" 2>&1; }
code_of() {
    "$@" >/dev/null 2>&1
    echo $?
}
config=/etc/cachekeeper/config.toml
set_config() { g sh -c "cat > $config" <<<"$1"; }

# ---------------------------------------------------------------------------------
log "first boot, before the package"
boot
[ "$boot_state" = running ] || {
    g systemctl --failed --no-legend >&2
    die "the bare guest boots '$boot_state', not running: fix the root filesystem first"
}
for user in alice bob carol; do g useradd -m -s /bin/sh "$user" || die "useradd $user"; done

log "install the package"
check "dpkg -i installs the package" g dpkg -i /root/cachekeeper.deb
same "the service is enabled" enabled "$(g systemctl is-enabled cachekeeper 2>&1)"
fails "the service is not started by the package" g systemctl is-active --quiet cachekeeper
check "the package creates the group gobuild that the shipped config names" g getent group gobuild

log "README first steps: members join gobuild, start the service"
check "usermod -aG gobuild alice" g usermod -aG gobuild alice
check "usermod -aG gobuild bob" g usermod -aG gobuild bob
check "systemctl start cachekeeper (returns after READY=1)" g systemctl start cachekeeper
same "the service is active (running)" active/running "$(prop ActiveState)/$(prop SubState)"
has "STATUS= tells systemctl status how the caches are" "1 cache(s): 1 healthy" "$(prop StatusText)"
check "cachekeeperctl status: healthy" g cachekeeperctl status
same "the default cache /var/cache/go/mod exists with the shipped model" "root:gobuild 2775" "$(stat_of /var/cache/go/mod)"

log "reboot with the package installed and enabled"
shutdown
boot
# The boot may be over while the service is still starting (or restarting): the state
# that counts is the one after it settled.
eventually 60 settled
same "after the reboot the system is running" running "$(g systemctl is-system-running 2>&1)"
same "after the reboot the service is active (running)" active/running "$(prop ActiveState)/$(prop SubState)"
same "the service started once, without restarts" 0 "$(prop NRestarts)"
same "after the reboot the default cache is there with the shipped model" "root:gobuild 2775" "$(stat_of /var/cache/go/mod)"
same "/var/cache/go/mod is a mount of its own" /var/cache/go/mod "$(g findmnt -n -o TARGET --mountpoint /var/cache/go/mod 2>&1)"

log "the running process: user, capabilities, sandbox"
pid=$(main_pid)
pstatus=$(g cat "/proc/$pid/status" 2>&1)
same "it runs as the cachekeeper user" "$(g id -u cachekeeper)" "$(awk '/^Uid:/ {print $3}' <<<"$pstatus")"
# CAP_CHOWN (0), CAP_DAC_READ_SEARCH (2), CAP_FOWNER (3), CAP_FSETID (4) and nothing else.
same "effective capabilities are exactly the four" 000000000000001d "$(awk '/^CapEff:/ {print $2}' <<<"$pstatus")"
same "the bounding set is the same four" 000000000000001d "$(awk '/^CapBnd:/ {print $2}' <<<"$pstatus")"
same "no_new_privs is set" 1 "$(awk '/^NoNewPrivs:/ {print $2}' <<<"$pstatus")"
same "a seccomp filter is on" 2 "$(awk '/^Seccomp:/ {print $2}' <<<"$pstatus")"
has "status reports the four capabilities" "cap_chown,cap_dac_read_search,cap_fowner,cap_fsetid" "$(g cachekeeperctl status 2>&1)"
exposure=$(g systemd-analyze security --no-pager cachekeeper 2>&1 | sed -n 's/.*Overall exposure level for cachekeeper.service: \([0-9.]*\).*/\1/p')
check "live exposure ($exposure) is at most 2.0" awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.0) }'

log "repairs by root and by members"
m=/var/cache/go/mod
g sh -c "umask 077; mkdir -p $m/cache/download/r && echo x > $m/cache/download/r/f"
check "sync" g cachekeeperctl sync --timeout 30s
same "a directory root made with umask 077 is repaired" "root:gobuild 2775" "$(stat_of $m/cache/download/r)"
same "a file root made with umask 077 is repaired" "root:gobuild 664" "$(stat_of $m/cache/download/r/f)"
as alice sh -c "umask 022; mkdir $m/cache/download/a && echo x > $m/cache/download/a/f"
check "sync" g cachekeeperctl sync --timeout 30s
same "a directory a member made is repaired" "alice:gobuild 2775" "$(stat_of $m/cache/download/a)"
same "a file a member made is repaired" "alice:gobuild 664" "$(stat_of $m/cache/download/a/f)"
check "another member writes into it" as bob sh -c "echo y >> $m/cache/download/a/f && touch $m/cache/download/a/g"
has "a member cannot hard-link a file from outside into the cache" "cross-device" \
    "$(as alice ln /home/alice/.profile $m/cache/download/a/planted-link 2>&1)"

log "socket_group: members use cachekeeperctl after a restart"
same "without socket_group a member is refused (exit 4)" 4 "$(code_of as alice cachekeeperctl status)"
g sed -i 's/^#socket_group = /socket_group = /' $config
check "systemctl restart cachekeeper" g systemctl restart cachekeeper
same "a member may use cachekeeperctl" 0 "$(code_of as alice cachekeeperctl status)"
same "a member may sync" 0 "$(code_of as alice cachekeeperctl sync)"
same "a user outside the group is refused (exit 4)" 4 "$(code_of as carol cachekeeperctl status)"
same "the socket is cachekeeper:gobuild 660" "cachekeeper:gobuild 660" "$(stat_of /run/cachekeeper/control.sock)"

log "Go builds by two members through the shared module cache"
as alice sh -c 'cp -r /srv/apps/v1.0.0 ~/app'
out=$(as alice "${goenv[@]}" sh -c 'cd ~/app && go build -o app . && ./app' 2>&1)
same "alice builds with example.com/hello v1.0.0 from the shared cache" "hello v1.0.0" "$(tail -1 <<<"$out")"
check "sync" g cachekeeperctl sync
same "Go's read-only module tree keeps its protection, shared with the group" "alice:gobuild 2555" \
    "$(stat_of $m/example.com/hello@v1.0.0)"
as bob sh -c 'cp -r /srv/apps/v1.1.0 ~/app'
out=$(as bob "${goenv[@]}" sh -c 'cd ~/app && go build -o app . && ./app' 2>&1)
same "bob adds v1.1.0 into the directories alice's download made" "hello v1.1.0" "$(tail -1 <<<"$out")"
out=$(as bob "${goenv[@]}" sh -c 'cp -r /srv/apps/v1.0.0 ~/app0 && cd ~/app0 && go build -o app . && ./app' 2>&1)
same "bob builds with the version alice downloaded" "hello v1.0.0" "$(tail -1 <<<"$out")"

log "the example configuration's audit log and metrics file"
g sed -i -e 's/^#audit_log = /audit_log = /' -e 's/^#metrics_textfile = /metrics_textfile = /' $config
audit=$(g sed -n 's/^audit_log = "\(.*\)"/\1/p' $config)
metrics=$(g sed -n 's/^metrics_textfile = "\(.*\)"/\1/p' $config)
check "with audit_log and metrics_textfile uncommented the service restarts" g systemctl restart cachekeeper
# Default ACLs make a new file group-usable whatever the umask, so the repair to audit is
# provoked by what inheritance cannot prevent: an explicit chmod.
g sh -c "echo z > $m/cache/download/audited && chmod 0600 $m/cache/download/audited"
check "sync" g cachekeeperctl sync
has "the audit log ($audit) records the repair" "$m/cache/download/audited" "$(g cat "$audit" 2>&1)"
if eventually 30 g test -s "$metrics"; then ok "the metrics file ($metrics) is written"; else bad "the metrics file ($metrics) is written"; fi
has "it holds the metrics" "cachekeeper_up 1" "$(g cat "$metrics" 2>&1)"
lacks "no warnings about the side files" "cannot write" "$(g journalctl -u cachekeeper -b -o cat -p warning 2>&1)"

log "reload: a broken configuration is refused, and the journal says so at priority err"
good_config=$(g cat $config)
pid=$(main_pid)
g sh -c "echo 'no_such_key = 1' >> $config"
fails "systemctl reload fails on a broken configuration" g systemctl reload cachekeeper
same "the service keeps running" "active $pid" "$(prop ActiveState) $(main_pid)"
check "with the running configuration" g cachekeeperctl status
errors=$(g journalctl -u cachekeeper -b -o cat -p err 2>&1)
has "journalctl -p err shows the refusal" "no_such_key" "$errors"
lacks "journalctl -p err does not show info lines" "first full scan done" "$errors"
has "the info lines are in the journal" "first full scan done" "$(g journalctl -u cachekeeper -b -o cat 2>&1)"
g ln -s /etc/shadow $m/cache/download/planted
check "rescan" g cachekeeperctl rescan
warnings=$(g journalctl -u cachekeeper -b -o cat -p warning..warning 2>&1)
has "a reported symlink is a warning at priority 4" "cache/download/planted" "$warnings"
lacks "no info line at priority 4" "first full scan done" "$warnings"
set_config "$good_config"
check "systemctl reload of a good configuration succeeds" g systemctl reload cachekeeper

log "a broken configuration at start does not loop"
g sh -c "echo 'no_such_key = 1' >> $config"
fails "systemctl restart with a broken configuration fails" g systemctl restart cachekeeper
sleep 3
same "no restart loop: it stays failed with exit status 2" "failed 0 2" "$(prop ActiveState) $(prop NRestarts) $(prop ExecMainStatus)"
set_config "$good_config"
g systemctl reset-failed cachekeeper
check "systemctl start with the configuration fixed" g systemctl start cachekeeper

log "a cache under /home: the sandbox hides it until the documented drop-in"
home_cache=/home/alice/go/pkg/mod
as alice mkdir -p "$home_cache/cache/download"
set_config "$good_config
[[cache]]
path = \"$home_cache\"
owner = \"alice\""
check "the service starts with a cache under /home" g systemctl restart cachekeeper
st=$(g cachekeeperctl status 2>&1)
same "status: degraded (exit 1)" 1 "$(code_of g cachekeeperctl status)"
has "the reason names ProtectHome=" "ProtectHome=" "$st"
has "and the fix, ReadWritePaths=" "ReadWritePaths=-$home_cache" "$st"
same "rescan of the hidden cache fails (exit 1)" 1 "$(code_of g cachekeeperctl rescan "$home_cache")"
lacks "rescan does not say it reconciled it" "reconciled:" "$(g cachekeeperctl rescan "$home_cache" 2>/dev/null)"
same "sync fails while the cache is hidden (exit 1)" 1 "$(code_of g cachekeeperctl sync --timeout 30s)"
has "doctor gives the same fix" "ReadWritePaths=-$home_cache" "$(g cachekeeperctl doctor 2>&1)"
# The drop-in exactly as the installed README gives it, for this path.
dropin=$(g awk '/^<!-- drop-in -->/ {f=1; next} f && /^```/ {if (n++) exit; next} f' /usr/share/doc/cachekeeper/README.md \
    | sed "s|/home/builds/go/pkg/mod|$home_cache|g")
has "the README gives the drop-in" "ReadWritePaths=-$home_cache" "$dropin"
g mkdir -p /etc/systemd/system/cachekeeper.service.d
g sh -c 'cat > /etc/systemd/system/cachekeeper.service.d/cache.conf' <<<"$dropin"
check "systemctl daemon-reload" g systemctl daemon-reload
check "systemctl restart cachekeeper, as the README says" g systemctl restart cachekeeper
check "status: healthy with the drop-in" g cachekeeperctl status
as alice sh -c "umask 077; echo x > $home_cache/cache/download/f"
check "sync" g cachekeeperctl sync --timeout 30s
same "a file in the /home cache is repaired" "alice:alice 644" "$(stat_of $home_cache/cache/download/f)"
check "rescan of the /home cache" g cachekeeperctl rescan "$home_cache"

log "the watchdog restarts a service that stopped answering"
same "the shipped unit sets a watchdog" 1min "$(prop WatchdogUSec)"
g sh -c 'cat > /etc/systemd/system/cachekeeper.service.d/watchdog.conf' <<'EOF'
[Service]
WatchdogSec=3s
TimeoutAbortSec=3s
EOF
g systemctl daemon-reload
check "restart with a 3 s watchdog" g systemctl restart cachekeeper
pid=$(main_pid)
sleep 8
same "pings keep it alive" "$pid 0" "$(main_pid) $(prop NRestarts)"
# Never "kill -STOP 0": that would stop our own process group.
if [ "$pid" -gt 1 ] && g kill -STOP "$pid" && eventually 40 restarted_from "$pid"; then
    ok "a SIGSTOPped service is restarted"
else
    bad "a SIGSTOPped service is restarted" "$(prop ActiveState) pid $(main_pid)"
fi
has "the journal names the watchdog" "Watchdog timeout" "$(g journalctl -u cachekeeper -b -o cat 2>&1)"
g rm /etc/systemd/system/cachekeeper.service.d/watchdog.conf
g systemctl daemon-reload

log "stop and restart"
check "systemctl stop cachekeeper" g systemctl stop cachekeeper
fails "the socket is removed" g test -e /run/cachekeeper/control.sock
same "cachekeeperctl status: not running (exit 3)" 3 "$(code_of g cachekeeperctl status)"
check "systemctl start cachekeeper" g systemctl start cachekeeper
check "cachekeeperctl status" g cachekeeperctl status

log "upgrade: the running service moves to the new binary"
pid=$(main_pid)
running_config=$(g cat $config | md5sum)
check "dpkg -i over the installed package" g dpkg -i /root/cachekeeper.deb
new=$(main_pid)
if [ "$new" != "$pid" ] && [ "$new" != 0 ]; then ok "the service was restarted ($pid → $new)"; else bad "the service was restarted" "MainPID $pid → $new"; fi
exe=$(g readlink "/proc/$new/exe" 2>&1)
same "it runs the installed binary" /usr/bin/cachekeeper "$exe"
check "cachekeeperctl status after the upgrade" g cachekeeperctl status
same "the edited configuration is kept" "$running_config" "$(g cat $config | md5sum)"

log "purge"
check "dpkg --purge cachekeeper" g dpkg --purge cachekeeper
fails "no cachekeeper process is left" g pgrep -x cachekeeper
fails "the unit is gone" g test -e /usr/lib/systemd/system/cachekeeper.service
fails "the configuration is gone" g test -e $config
same "/var/cache/go/mod is unmounted" "" "$(g findmnt -n -o TARGET --mountpoint /var/cache/go/mod 2>&1)"
same "systemd knows nothing to run" inactive "$(g systemctl is-active cachekeeper 2>&1)"

shutdown
took=$(($(date +%s) - started))
if [ ${#failed[@]} -eq 0 ]; then
    echo "boot test: all $checks checks passed in $took s ($deb)"
    exit 0
fi
echo "boot test: ${#failed[@]} of $checks checks FAILED in $took s ($deb):"
printf '  - %s\n' "${failed[@]}"
exit 1
