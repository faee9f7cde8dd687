complete -c cachekeeper -l config -d 'Configuration file [default: $CACHEKEEPER_CONFIG, else /etc/cachekeeper/config.toml]' -r -F
complete -c cachekeeper -l path -d 'Cache root [default: $GOMODCACHE, else $GOPATH[0]/pkg/mod, else ~/go/pkg/mod]' -r -F
complete -c cachekeeper -l owner -d 'Owner of every entry [default: the invoking user, SUDO_UID:SUDO_GID under sudo]' -r
complete -c cachekeeper -l group -d 'Group of every entry' -r
complete -c cachekeeper -l model -d 'shared: the group can do what the owner can; private: the group only reads [default: shared when a group is given, else private]' -r -f -a "shared\t''
private\t''"
complete -c cachekeeper -l other -d 'What everyone else may do' -r -f -a "read\t''
none\t''"
complete -c cachekeeper -l exclude -d 'Leave paths matching this glob (relative to the root) alone; repeatable' -r
complete -c cachekeeper -l inherit -d 'acl: every directory carries a default ACL, so that new entries are usable by the group the moment they are created, whatever the creator\'s umask; none: repair only [default: acl for the shared model, none for private]' -r -f -a "acl\t''
none\t''"
complete -c cachekeeper -l init -d 'Bring the cache to the owner model once, then exit'
complete -c cachekeeper -l check -d 'List what diverges from the owner model without changing anything; exit 1 if anything does'
complete -c cachekeeper -l writable -d 'Give directories the owner\'s (and so the group\'s) write bit, like `go -modcacherw`'
complete -c cachekeeper -l force -d 'Accept a non-empty root that does not look like a Go cache (no cache/download/ or cache/vcs/, nor README and trim.txt)'
complete -c cachekeeper -l isolate -d 'Make the cache root a mount of its own (a bind mount on itself), so that no file from elsewhere can be hard-linked into the cache; needs root; only with --init'
complete -c cachekeeper -l json -d 'Print the summary as JSON'
complete -c cachekeeper -s v -l verbose -d 'Log every repair (-v) and more (-vv)'
complete -c cachekeeper -s h -l help -d 'Print help'
complete -c cachekeeper -s V -l version -d 'Print version'
