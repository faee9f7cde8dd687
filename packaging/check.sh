#!/usr/bin/env bash
# Builds the Debian and RPM packages and checks them the way a user would meet them:
# dpkg -i installs the binaries, the unit, the sysusers/tmpfiles files and the
# configuration (as a conffile), creates the user, enables but does not start the
# service; dpkg --purge removes it all again. The RPM's file list is checked with rpm.
# Needs root, cargo-deb, cargo-generate-rpm and rpm (.ci/run installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "packaging check: $*" >&2; exit 1; }

cargo deb
deb=$(ls -t target/debian/cachekeeper_*.deb | head -1)
if dpkg -s cachekeeper >/dev/null 2>&1; then dpkg --purge cachekeeper; fi
dpkg -i "$deb"
for f in /usr/bin/cachekeeper /usr/bin/cachekeeperctl /usr/lib/systemd/system/cachekeeper.service \
         /usr/lib/systemd/system/var-cache-go-mod.mount \
         /usr/lib/sysusers.d/cachekeeper.conf /usr/lib/tmpfiles.d/cachekeeper.conf \
         /usr/share/man/man1/cachekeeper.1.gz /usr/share/man/man1/cachekeeperctl.1.gz \
         /usr/share/bash-completion/completions/cachekeeper /usr/share/bash-completion/completions/cachekeeperctl \
         /usr/share/zsh/vendor-completions/_cachekeeper /usr/share/zsh/vendor-completions/_cachekeeperctl \
         /usr/share/fish/vendor_completions.d/cachekeeper.fish /usr/share/fish/vendor_completions.d/cachekeeperctl.fish \
         /etc/cachekeeper/config.toml /usr/share/doc/cachekeeper/README.md; do
    [ -e "$f" ] || fail "$f is not installed"
done
# The README links to docs/: every page it ships with must be there beside it.
for doc in docs/*.md; do
    [ -e "/usr/share/doc/cachekeeper/$doc" ] || fail "/usr/share/doc/cachekeeper/$doc is not installed"
done
dpkg-query -W -f='${Conffiles}\n' cachekeeper | grep -q /etc/cachekeeper/config.toml \
    || fail "/etc/cachekeeper/config.toml is not a conffile"
getent passwd cachekeeper >/dev/null || fail "the cachekeeper user was not created"
getent group gobuild >/dev/null || fail "the gobuild group of the shipped configuration was not created"
version=$(cachekeeper --version)
[ "$version" = "cachekeeper $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)" ] \
    || fail "cachekeeper --version says '$version'"
[ -L /etc/systemd/system/multi-user.target.wants/cachekeeper.service ] \
    || fail "the service is not enabled"
# Only a process of the installed binary that started after this script did counts:
# a service running elsewhere on the machine is none of this check's business.
since=$(awk '{sub(/.*\) /, ""); print $20}' /proc/$$/stat)
for p in /proc/[0-9]*; do
    [ "$(readlink "$p/exe" 2>/dev/null)" = /usr/bin/cachekeeper ] || continue
    started=$(awk '{sub(/.*\) /, ""); print $20}' "$p/stat" 2>/dev/null) || continue
    [ "$started" -lt "$since" ] || fail "the package started the service (pid ${p#/proc/})"
done
echo "deb: installed $deb ($version), user and files in place, service enabled and not started"

dpkg --purge cachekeeper
for f in /usr/bin/cachekeeper /usr/bin/cachekeeperctl /usr/lib/systemd/system/cachekeeper.service \
         /etc/cachekeeper/config.toml /etc/systemd/system/multi-user.target.wants/cachekeeper.service; do
    [ ! -e "$f" ] || fail "$f is left after purge"
done
echo "deb: purged cleanly"

cargo generate-rpm
rpmfile=$(ls -t target/generate-rpm/cachekeeper-*.rpm | head -1)
listing=$(rpm -qlp "$rpmfile")
for f in /usr/bin/cachekeeper /usr/bin/cachekeeperctl /usr/lib/systemd/system/cachekeeper.service \
         /usr/lib/sysusers.d/cachekeeper.conf /usr/lib/tmpfiles.d/cachekeeper.conf /etc/cachekeeper/config.toml \
         /usr/lib/systemd/system/var-cache-go-mod.mount /usr/share/man/man1/cachekeeper.1 \
         /usr/share/man/man1/cachekeeperctl.1 /usr/share/bash-completion/completions/cachekeeperctl \
         /usr/share/zsh/site-functions/_cachekeeperctl /usr/share/fish/vendor_completions.d/cachekeeperctl.fish; do
    grep -qx "$f" <<<"$listing" || fail "$f is missing from $rpmfile"
done
for doc in README.md docs/*.md; do
    grep -qx "/usr/share/doc/cachekeeper/$doc" <<<"$listing" || fail "/usr/share/doc/cachekeeper/$doc is missing from $rpmfile"
done
rpm -qcp "$rpmfile" | grep -qx /etc/cachekeeper/config.toml || fail "the RPM's config.toml is not %config"
rpm -qp --scripts "$rpmfile" | grep -q systemd-sysusers || fail "the RPM does not create the user"
rpm -qp --scripts "$rpmfile" | grep -q "try-restart cachekeeper" || fail "an RPM upgrade does not restart the service"
echo "rpm: $rpmfile lists every file, config marked, scripts present"
