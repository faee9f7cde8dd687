# Create the service user and the socket directory; enable, do not start.
systemd-sysusers cachekeeper.conf >/dev/null 2>&1 || :
systemd-tmpfiles --create cachekeeper.conf >/dev/null 2>&1 || :
systemctl --system daemon-reload >/dev/null 2>&1 || :
systemctl --system preset cachekeeper.service >/dev/null 2>&1 || :
