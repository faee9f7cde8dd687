# Create the service user, the gobuild group and the default cache; enable, do not
# start. On an upgrade ($1 is 2 or more), restart a running service onto the new binary.
systemd-sysusers cachekeeper.conf >/dev/null 2>&1 || :
systemd-tmpfiles --create cachekeeper.conf >/dev/null 2>&1 || :
systemctl --system daemon-reload >/dev/null 2>&1 || :
systemctl --system preset var-cache-go-mod.mount cachekeeper.service >/dev/null 2>&1 || :
if [ "$1" -ge 2 ]; then
    systemctl --system try-restart cachekeeper.service >/dev/null 2>&1 || :
fi
