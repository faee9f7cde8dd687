if [ "$1" -eq 0 ]; then
    systemctl --system --no-reload disable --now cachekeeper.service >/dev/null 2>&1 || :
    systemctl --system --no-reload disable --now var-cache-go-mod.mount >/dev/null 2>&1 || :
fi
