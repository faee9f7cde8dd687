# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_cachekeeperctl_global_optspecs
    string join \n socket= config= h/help V/version
end

function __fish_cachekeeperctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_cachekeeperctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_cachekeeperctl_using_subcommand
    set -l cmd (__fish_cachekeeperctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c cachekeeperctl -n "__fish_cachekeeperctl_needs_command" -l socket -d 'Control socket [default: $CACHEKEEPER_SOCKET, else daemon.socket of the configuration, else /run/cachekeeper/control.sock]' -r -F
complete -c cachekeeperctl -n "__fish_cachekeeperctl_needs_command" -l config -d 'Configuration: its socket, and for doctor and explain its caches [default: $CACHEKEEPER_CONFIG, else /etc/cachekeeper/config.toml]' -r -F
complete -c cachekeeperctl -n "__fish_cachekeeperctl_needs_command" -s h -l help -d 'Print help'
complete -c cachekeeperctl -n "__fish_cachekeeperctl_needs_command" -s V -l version -d 'Print version'
complete -c cachekeeperctl -n "__fish_cachekeeperctl_needs_command" -f -a "status" -d 'Health of the service and of every cache it keeps (exit 0 healthy, 1 degraded, 3 not running, 4 not permitted)'
complete -c cachekeeperctl -n "__fish_cachekeeperctl_needs_command" -f -a "sync" -d 'Return once every event that happened before the call has been handled'
complete -c cachekeeperctl -n "__fish_cachekeeperctl_needs_command" -f -a "rescan" -d 'Reconcile one cache, or all, now and wait for it'
complete -c cachekeeperctl -n "__fish_cachekeeperctl_needs_command" -f -a "reload" -d 'Re-read the configuration'
complete -c cachekeeperctl -n "__fish_cachekeeperctl_needs_command" -f -a "metrics" -d 'Counters and gauges in the Prometheus text format'
complete -c cachekeeperctl -n "__fish_cachekeeperctl_needs_command" -f -a "doctor" -d 'A checklist of everything that keeps a shared cache usable (exit 1 if anything fails)'
complete -c cachekeeperctl -n "__fish_cachekeeperctl_needs_command" -f -a "explain" -d 'Why a user may not do something at PATH, and what would fix it (no service needed); PATH may also be an error line as Go printed it (quoted), such as "go: mkdir /var/cache/go/mod/cache/download/x: permission denied"'
complete -c cachekeeperctl -n "__fish_cachekeeperctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand status" -l socket -d 'Control socket [default: $CACHEKEEPER_SOCKET, else daemon.socket of the configuration, else /run/cachekeeper/control.sock]' -r -F
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand status" -l config -d 'Configuration: its socket, and for doctor and explain its caches [default: $CACHEKEEPER_CONFIG, else /etc/cachekeeper/config.toml]' -r -F
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand status" -l json -d 'The stable JSON object (schema_version 1)'
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand status" -s h -l help -d 'Print help'
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand sync" -l timeout -d 'Give up after this long (exit 1)' -r
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand sync" -l socket -d 'Control socket [default: $CACHEKEEPER_SOCKET, else daemon.socket of the configuration, else /run/cachekeeper/control.sock]' -r -F
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand sync" -l config -d 'Configuration: its socket, and for doctor and explain its caches [default: $CACHEKEEPER_CONFIG, else /etc/cachekeeper/config.toml]' -r -F
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand sync" -s h -l help -d 'Print help'
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand rescan" -l socket -d 'Control socket [default: $CACHEKEEPER_SOCKET, else daemon.socket of the configuration, else /run/cachekeeper/control.sock]' -r -F
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand rescan" -l config -d 'Configuration: its socket, and for doctor and explain its caches [default: $CACHEKEEPER_CONFIG, else /etc/cachekeeper/config.toml]' -r -F
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand rescan" -s h -l help -d 'Print help'
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand reload" -l socket -d 'Control socket [default: $CACHEKEEPER_SOCKET, else daemon.socket of the configuration, else /run/cachekeeper/control.sock]' -r -F
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand reload" -l config -d 'Configuration: its socket, and for doctor and explain its caches [default: $CACHEKEEPER_CONFIG, else /etc/cachekeeper/config.toml]' -r -F
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand reload" -s h -l help -d 'Print help'
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand metrics" -l socket -d 'Control socket [default: $CACHEKEEPER_SOCKET, else daemon.socket of the configuration, else /run/cachekeeper/control.sock]' -r -F
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand metrics" -l config -d 'Configuration: its socket, and for doctor and explain its caches [default: $CACHEKEEPER_CONFIG, else /etc/cachekeeper/config.toml]' -r -F
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand metrics" -s h -l help -d 'Print help'
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand doctor" -l socket -d 'Control socket [default: $CACHEKEEPER_SOCKET, else daemon.socket of the configuration, else /run/cachekeeper/control.sock]' -r -F
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand doctor" -l config -d 'Configuration: its socket, and for doctor and explain its caches [default: $CACHEKEEPER_CONFIG, else /etc/cachekeeper/config.toml]' -r -F
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand doctor" -l json
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand explain" -l access -d 'The access to judge at PATH [default: what Go needs there: read for files of an extracted module tree, create for directories under cache/download, ...]' -r -f -a "search\t''
read\t''
write\t''
create\t'Create (or remove) an entry in a directory: write and search on it'"
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand explain" -l user -d 'The user to explain for [default: you]' -r
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand explain" -l socket -d 'Control socket [default: $CACHEKEEPER_SOCKET, else daemon.socket of the configuration, else /run/cachekeeper/control.sock]' -r -F
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand explain" -l config -d 'Configuration: its socket, and for doctor and explain its caches [default: $CACHEKEEPER_CONFIG, else /etc/cachekeeper/config.toml]' -r -F
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand explain" -l json
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand explain" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand help; and not __fish_seen_subcommand_from status sync rescan reload metrics doctor explain help" -f -a "status" -d 'Health of the service and of every cache it keeps (exit 0 healthy, 1 degraded, 3 not running, 4 not permitted)'
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand help; and not __fish_seen_subcommand_from status sync rescan reload metrics doctor explain help" -f -a "sync" -d 'Return once every event that happened before the call has been handled'
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand help; and not __fish_seen_subcommand_from status sync rescan reload metrics doctor explain help" -f -a "rescan" -d 'Reconcile one cache, or all, now and wait for it'
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand help; and not __fish_seen_subcommand_from status sync rescan reload metrics doctor explain help" -f -a "reload" -d 'Re-read the configuration'
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand help; and not __fish_seen_subcommand_from status sync rescan reload metrics doctor explain help" -f -a "metrics" -d 'Counters and gauges in the Prometheus text format'
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand help; and not __fish_seen_subcommand_from status sync rescan reload metrics doctor explain help" -f -a "doctor" -d 'A checklist of everything that keeps a shared cache usable (exit 1 if anything fails)'
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand help; and not __fish_seen_subcommand_from status sync rescan reload metrics doctor explain help" -f -a "explain" -d 'Why a user may not do something at PATH, and what would fix it (no service needed); PATH may also be an error line as Go printed it (quoted), such as "go: mkdir /var/cache/go/mod/cache/download/x: permission denied"'
complete -c cachekeeperctl -n "__fish_cachekeeperctl_using_subcommand help; and not __fish_seen_subcommand_from status sync rescan reload metrics doctor explain help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
