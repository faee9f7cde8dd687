//! The `cachekeeper` command line (SPEC §3): parse arguments into a list of caches,
//! run `--init` or `--check` over each, print the summary, map the outcome to an exit
//! code (0 compliant, 1 not compliant, 2 usage or configuration error).

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::engine::root::{self, Origin, Root};
use crate::engine::walk::{self, Action, Tally};
use crate::oneshot::summary::{self, CacheSummary};
use crate::policy::config::{self, CacheConfig, Config, Excludes};
use crate::policy::model::{Inherit, Model, Other, Policy};
use crate::sys;

const AFTER_HELP: &str = "\
Without --init or --check, cachekeeper runs the service: it keeps every cache of the
configuration compliant as it changes, until SIGTERM (see cachekeeperctl).

Examples:
  cachekeeper --init                       repair your own Go module cache
  sudo cachekeeper --init                  after `sudo go ...`: the cache of the user who ran sudo
  cachekeeper --check --path /var/cache/go/mod --owner gocache --group gobuild
  sudo cachekeeper --init --isolate --config /etc/cachekeeper/config.toml
  cachekeeper --config /etc/cachekeeper/config.toml   the service, in the foreground
  cachekeeper --init --owner 1001:1001 -- go build ./...
                                           a container entrypoint: repair, then run the
                                           command as 1001 (its exit status is ours)

Exit codes:
  0  compliant at exit (the service: stopped by SIGTERM or SIGINT)
  1  some entries could not be made compliant (--check: some diverge); the service
     could not start
  2  usage or configuration error, or a root that may not be managed
  130  interrupted (Ctrl-C)";

#[derive(Debug, Parser)]
#[command(
    name = "cachekeeper",
    version,
    about = "Keeps a shared Go module cache usable by everyone who shares it",
    after_help = AFTER_HELP
)]
struct Args {
    /// Configuration file [default: $CACHEKEEPER_CONFIG, else /etc/cachekeeper/config.toml]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Bring the cache to the owner model once, then exit
    #[arg(long, conflicts_with = "check")]
    init: bool,
    /// List what diverges from the owner model without changing anything; exit 1 if anything does
    #[arg(long)]
    check: bool,
    /// Cache root [default: $GOMODCACHE, else $GOPATH[0]/pkg/mod, else ~/go/pkg/mod]
    #[arg(long, value_name = "DIR")]
    path: Option<PathBuf>,
    /// Owner of every entry [default: the invoking user, SUDO_UID:SUDO_GID under sudo]
    #[arg(long, value_name = "USER[:GROUP]")]
    owner: Option<String>,
    /// Group of every entry
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// shared: the group can do what the owner can; private: the group only reads
    /// [default: shared when a group is given, else private]
    #[arg(long)]
    model: Option<ModelArg>,
    /// What everyone else may do
    #[arg(long, value_enum, default_value_t = OtherArg::Read)]
    other: OtherArg,
    /// Leave paths matching this glob (relative to the root) alone; repeatable
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Give directories the owner's (and so the group's) write bit, like `go -modcacherw`
    #[arg(long)]
    writable: bool,
    /// Accept a non-empty root that does not look like a Go cache (no cache/download/ or cache/vcs/,
    /// nor README and trim.txt)
    #[arg(long)]
    force: bool,
    /// Make the cache root a mount of its own (a bind mount on itself), so that no file
    /// from elsewhere can be hard-linked into the cache; needs root; only with --init
    #[arg(long, requires = "init")]
    isolate: bool,
    /// acl: every directory carries a default ACL, so that new entries are usable by the
    /// group the moment they are created, whatever the creator's umask; none: repair only
    /// [default: acl for the shared model, none for private]
    #[arg(long)]
    inherit: Option<InheritArg>,
    /// Print the summary as JSON
    #[arg(long)]
    json: bool,
    /// Log every repair (-v) and more (-vv)
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// After --init, run CMD as the cache's owner (setgroups, setgid, setuid, no
    /// capabilities) in place of cachekeeper, for container entrypoints; HOME and GOCACHE
    /// are set when unset. As PID 1, cachekeeper stays as a minimal init that forwards
    /// signals and reaps
    #[arg(last = true, value_name = "CMD", requires = "init")]
    exec: Vec<OsString>,
}

/// `--model`: the owner model's names (SPEC §1).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ModelArg {
    Shared,
    Private,
}

/// `--other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum OtherArg {
    Read,
    None,
}

/// `--inherit`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum InheritArg {
    Acl,
    None,
}

impl Args {
    fn has_cache_flags(&self) -> bool {
        self.path.is_some()
            || self.owner.is_some()
            || self.group.is_some()
            || self.model.is_some()
            || self.other != OtherArg::Read
            || !self.exclude.is_empty()
            || self.writable
            || self.force
            || self.inherit.is_some()
    }
}

/// A usage or configuration error: exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(String);

/// Parses the command line, or says why not (exit 2; `--help` and `--version` exit 0).
pub fn parse<T: Parser>(argv: impl IntoIterator<Item = OsString>) -> Result<T, ExitCode> {
    T::try_parse_from(argv).map_err(|e| {
        let _ = e.print();
        ExitCode::from(if e.use_stderr() { 2 } else { 0 })
    })
}

/// The command line's definition, for man pages and completions.
pub fn command() -> clap::Command {
    <Args as clap::CommandFactory>::command()
}

/// `cachekeeper help` is `cachekeeper --help`: there are no subcommands to confuse it with.
fn help_word(argv: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut argv: Vec<OsString> = argv.into_iter().collect();
    if argv.len() == 2 && argv[1] == "help" {
        argv[1] = "--help".into();
    }
    argv
}

pub fn main(argv: impl IntoIterator<Item = OsString>) -> ExitCode {
    let argv = help_word(argv);
    let args: Args = match parse(argv.clone()) {
        Ok(args) => args,
        Err(code) => return code,
    };
    if !args.init && !args.check {
        return service(&args);
    }
    if !args.exec.is_empty() && crate::oneshot::exec::is_pid1() {
        return crate::oneshot::exec::reap(&argv);
    }
    init_logging(args.verbose);
    match run(&args) {
        Ok(Outcome { compliant: true, exec_as: Some(target) }) => crate::oneshot::exec::exec(&target, &args.exec),
        Ok(Outcome { compliant: true, .. }) => ExitCode::SUCCESS,
        Ok(Outcome { compliant: false, exec_as }) => {
            if exec_as.is_some() {
                eprintln!("cachekeeper: not running the command after `--`: the cache is not compliant (see above)");
            }
            ExitCode::from(1)
        }
        Err(Usage(message)) => {
            eprintln!("cachekeeper: {message}");
            ExitCode::from(2)
        }
    }
}

/// What a one-shot run ends with.
struct Outcome {
    /// Every cache is compliant at exit.
    compliant: bool,
    /// Exec mode: who runs the command after `--`.
    exec_as: Option<crate::oneshot::exec::Target>,
}

/// Warnings only: what the walk finds is summarised by the summary (`-v` lists every
/// entry, sorted); `-vv` shows the walk's own debug lines.
fn init_logging(verbose: u8) {
    let level = if verbose >= 2 { "debug" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CACHEKEEPER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .init();
}

/// Colour and lines rewritten in place only for a person at a terminal that can show
/// them: never when `NO_COLOR` is set (no-color.org) nor with `TERM=dumb`, whose
/// terminals (and build logs) print `\r` and escape codes as they are.
pub fn colour(stream: &impl IsTerminal) -> bool {
    stream.is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// `cachekeeper [--config PATH]`: the long-running service.
fn service(args: &Args) -> ExitCode {
    if args.has_cache_flags() || args.json {
        eprintln!(
            "cachekeeper: the service takes its caches from --config; --path, --owner, ... go with --init or --check"
        );
        return ExitCode::from(2);
    }
    let config = config::path_or_default(args.config.as_deref());
    match crate::service::run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(crate::service::DaemonError::Config(e)) => {
            eprintln!("cachekeeper: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("cachekeeper: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &Args) -> Result<Outcome, Usage> {
    let action = if args.init { Action::Repair } else { Action::Check };
    if !args.exec.is_empty() && !args.init {
        return Err(Usage("`-- CMD` goes with --init: a check runs nothing after it".into()));
    }
    if args.isolate && !args.init {
        return Err(Usage("--isolate goes with --init: a check never changes the system (it mounts nothing)".into()));
    }
    let (caches, origin) = if args.config.is_some() && args.has_cache_flags() {
        return Err(Usage(
            "give either --config or the cache on the command line (--path, --owner, ...), not both".into(),
        ));
    } else if let Some(path) = &args.config {
        (Config::load(path).map_err(|e| Usage(e.to_string()))?.caches, Origin::Admin)
    } else if let (false, Some(path)) =
        (args.has_cache_flags(), std::env::var_os("CACHEKEEPER_CONFIG").filter(|v| !v.is_empty()))
    {
        (Config::load(Path::new(&path)).map_err(|e| Usage(e.to_string()))?.caches, Origin::Admin)
    } else {
        let (cache, origin) = cache_from_flags(args)?;
        (vec![cache], origin)
    };

    if let (Some((uid, _)), false, Some(cache)) = (config::sudo_ids(), args.json, caches.first()) {
        if args.config.is_none() {
            let mut names = crate::policy::names::Names::default();
            let p = cache.policy;
            let owner = p.owner.map_or("unchanged".to_owned(), |u| names.user(u));
            let group = p.group.map_or("unchanged".to_owned(), |g| names.group(g));
            println!(
                "for {} (who ran sudo): owner {owner}, group {group}, model {}",
                names.user(uid),
                if p.model == Model::Shared { "shared" } else { "private" }
            );
        }
    }
    // Who runs the command after `--`: known before anything is changed.
    let exec_as = if args.exec.is_empty() {
        None
    } else {
        Some(crate::oneshot::exec::target(&caches).map_err(|e| Usage(e.to_string()))?)
    };
    // Every root is resolved and checked before the first one is changed.
    let mut roots = Vec::new();
    for cache in &caches {
        roots.push(open_cache(cache, &origin, action, args.isolate)?);
    }
    let interrupted = Interrupt::watch(!args.json);
    let mut all_compliant = true;
    let mut summaries = Vec::new();
    for (cache, (root, created)) in caches.iter().zip(roots) {
        let tally = interrupted.track();
        let started = Instant::now();
        let seen = Seen { cache, notes: walk::Collect::default(), repairs: (args.verbose > 0).then(Default::default) };
        let scan = walk::Scan { cache, root: &root, action, tally: &tally, visit: &seen, stop: None, hold_root: true };
        with_progress(!args.json, &tally, || scan.all())
            .map_err(|e| Usage(format!("cannot open cache root {}: {}", cache.path.display(), sys::describe(&e))))?;
        let mut repairs = seen.repairs.map(|r| r.into_inner().unwrap_or_else(|p| p.into_inner())).unwrap_or_default();
        repairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut s = CacheSummary::new(cache, action, &tally, seen.notes.into_notes(), started.elapsed());
        s.repairs = repairs;
        s.created = created;
        all_compliant &= s.compliant;
        summaries.push(s);
    }
    // In exec mode stdout is the command's: the summary goes to stderr.
    let mut out: Box<dyn Write> =
        if exec_as.is_some() { Box::new(std::io::stderr().lock()) } else { Box::new(std::io::stdout().lock()) };
    let printed = if args.json {
        summary::write_json(&mut out, action, &summaries)
    } else {
        summary::write_text(&mut out, &summaries, args.verbose > 0)
    };
    let _ = printed.and_then(|()| out.flush());
    Ok(Outcome { compliant: all_compliant, exec_as })
}

/// What the one-shot keeps of a walk: every finding for its summary, each repair (with
/// `-v`) for its list, and a log line per repair and finding.
struct Seen<'a> {
    cache: &'a CacheConfig,
    notes: walk::Collect,
    repairs: Option<std::sync::Mutex<Vec<summary::Repaired>>>,
}

impl walk::Visit for Seen<'_> {
    fn repaired(&self, rel: &[u8], d: &crate::policy::model::Divergence) {
        tracing::info!(path = %crate::policy::names::display(&self.cache.path, rel), "repaired: {d}");
        if let Some(repairs) = &self.repairs {
            repairs.lock().unwrap_or_else(|p| p.into_inner()).push((rel.to_vec(), *d));
        }
    }

    /// The summary tells what was found; the lines are for `-vv`.
    fn found(&self, note: walk::Note) {
        let path = crate::policy::names::display(&self.cache.path, &note.rel);
        match &note.finding {
            walk::Finding::Reported(r) => tracing::debug!(path = %path, "left as it is: {}", r.explain()),
            walk::Finding::Failed(f) => tracing::debug!(path = %path, "{f}"),
            walk::Finding::Diverges(_) => {}
        }
        self.notes.found(note);
    }
}

/// Creates a missing root (for `--init`), resolves and pins it, isolates it when asked,
/// and refuses to change a cache that hard links from outside could reach.
/// Returns the pinned root and the directories created for it.
fn open_cache(
    cache: &CacheConfig,
    origin: &Origin,
    action: Action,
    isolate: bool,
) -> Result<(Root, Vec<PathBuf>), Usage> {
    let usage = |e: root::RootError| Usage(e.0);
    let mut created = Vec::new();
    if action == Action::Repair {
        let own = root::Ownership::for_cache(&cache.policy, parents_owner(&cache.path));
        created = root::create(&cache.path, origin, own).map_err(usage)?;
    }
    let mut pinned = root::resolve(&cache.path, origin, cache.force).map_err(usage)?;
    if action == Action::Repair {
        warn_foreign_mount(cache, &pinned);
    }
    if isolate && root::isolate(&pinned).map_err(usage)?.is_some() {
        let root = pinned.path().display();
        eprintln!(
            "cachekeeper: isolated {root} (bind-mounted on itself): no file from elsewhere can be hard-linked into \
             the cache; `go clean -modcache` now empties it but cannot remove it. To keep it across reboots add \
             `{root} {root} none bind 0 0` to /etc/fstab; to undo it: umount {root}"
        );
        // Pin the root again on the new mount, which is the one users reach.
        pinned = root::resolve(&cache.path, origin, cache.force).map_err(usage)?;
    }
    if action == Action::Repair {
        root::hard_link_guard(&root::isolation(&pinned), root::protected_hardlinks(), pinned.path()).map_err(usage)?;
    }
    Ok((pinned, created))
}

/// A bind mount or volume that someone else (a host user, not root) owns is about to be
/// given to the configured owner: in a container that changes the owner on the host too,
/// where that user then finds their own cache taken. Said once, before any change.
fn warn_foreign_mount(cache: &CacheConfig, pinned: &Root) {
    let (Some(owner), now) = (cache.policy.owner, pinned.stat().uid) else { return };
    if now == owner || now == 0 || !root::isolation(pinned).isolated() {
        return;
    }
    let mut names = crate::policy::names::Names::default();
    eprintln!(
        "cachekeeper: warning: {} is a mount of its own (a bind mount or a volume) owned by {}; --init gives it to \
         {}, on the host too. To keep its owner, pass --owner {now} (or run the container as uid {now}, e.g. \
         podman run --userns=keep-id)",
        cache.path.display(),
        names.user(now),
        names.user(owner)
    );
}

/// Ctrl-C (or SIGTERM) during a walk: end the progress line and say how far it got,
/// then exit 130 like a shell. The signals are taken by a thread of their own, blocked
/// everywhere else (rayon's threads start later and inherit the mask).
struct Interrupt {
    current: std::sync::Arc<std::sync::Mutex<std::sync::Arc<Tally>>>,
}

impl Interrupt {
    fn watch(progress: bool) -> Interrupt {
        use nix::sys::signal::{SigSet, Signal};
        let current = std::sync::Arc::new(std::sync::Mutex::new(std::sync::Arc::new(Tally::default())));
        let mut set = SigSet::empty();
        set.add(Signal::SIGINT);
        set.add(Signal::SIGTERM);
        if set.thread_block().is_ok() {
            let seen = std::sync::Arc::clone(&current);
            let spawned = std::thread::Builder::new().name("interrupt".into()).spawn(move || {
                let Ok(signal) = set.wait() else { return };
                let t = std::sync::Arc::clone(&seen.lock().unwrap_or_else(|p| p.into_inner()));
                let clear = if progress && colour(&std::io::stderr()) { "\r\x1b[K" } else { "" };
                eprintln!(
                    "{clear}cachekeeper: interrupted ({signal}) after {} seen, {} changed; run it again to finish",
                    summary::entries(t.entries.load(Relaxed)),
                    t.changed.load(Relaxed)
                );
                std::process::exit(130);
            });
            if spawned.is_err() {
                let _ = set.thread_unblock();
            }
        }
        Interrupt { current }
    }

    /// A new tally for the next cache, which the interrupt message reads.
    fn track(&self) -> std::sync::Arc<Tally> {
        let t = std::sync::Arc::new(Tally::default());
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = std::sync::Arc::clone(&t);
        t
    }
}

/// Who gets the missing parents `--init` creates: under sudo, inside the caller's own
/// home, the caller (no root-owned `~/go` left behind); otherwise whoever runs it.
fn parents_owner(path: &Path) -> Option<(u32, u32)> {
    let (uid, gid) = config::sudo_ids()?;
    let home = nix::unistd::User::from_uid(uid.into()).ok().flatten()?.dir;
    path.starts_with(&home).then_some((uid, gid))
}

/// The cache described by `--path`, `--owner`, ... with Go's and sudo's defaults, and
/// where its path came from.
fn cache_from_flags(args: &Args) -> Result<(CacheConfig, Origin), Usage> {
    let (path, origin, source) = match &args.path {
        Some(p) => (p.clone(), Origin::Admin, "--path".to_owned()),
        None => default_gomodcache().map_err(|e| Usage(e.to_string()))?,
    };
    let path = config::cache_root(&path).map_err(|m| Usage(format!("{source}: {m}")))?;
    let flag_group = args
        .group
        .as_deref()
        .map(|g| config::resolve_group(g).map_err(|m| Usage(format!("--group: {m}"))))
        .transpose()?;
    let (owner, group, explicit_group) = match &args.owner {
        Some(spec) => {
            let (user, owner_group) = match spec.split_once(':') {
                Some((u, g)) => (u, Some(g)),
                None => (spec.as_str(), None),
            };
            let uid = config::resolve_user(user).map_err(|m| Usage(format!("--owner: {m}")))?.0;
            let owner_group = owner_group
                .map(|g| config::resolve_group(g).map_err(|m| Usage(format!("--owner: {m}"))))
                .transpose()?;
            if let (Some(a), Some(b)) = (owner_group, flag_group) {
                if a != b {
                    return Err(Usage(format!(
                        "--owner {spec} and --group {} name different groups",
                        args.group.as_deref().unwrap_or("")
                    )));
                }
            }
            // SPEC §3: `--owner USER[:GROUP]` alone is a cache that belongs to that user
            // (private); only `--group` or `--model shared` make the group a co-owner.
            (uid, owner_group.or(flag_group), flag_group.is_some())
        }
        // The invoking user, and under sudo the user who ran sudo: `sudo go mod download`
        // left root-owned files in *their* cache.
        None => {
            let (uid, gid) =
                config::sudo_ids().unwrap_or((nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw()));
            (uid, Some(flag_group.unwrap_or(gid)), flag_group.is_some())
        }
    };
    let model = match args.model {
        Some(ModelArg::Shared) => Model::Shared,
        Some(ModelArg::Private) => Model::Private,
        // An implied group (the invoking user's own) keeps a personal cache private.
        None if explicit_group => Model::Shared,
        None => Model::Private,
    };
    if args.owner.is_none() && model == Model::Shared {
        if let Some(found) = single_other_owner(&path, owner) {
            return Err(Usage(format!(
                "{} belongs to uid {found} throughout, not to the invoking user (uid {owner}): pass --owner {found} to \
                 keep its owner (or --owner {owner} to take it over), or --config with the cache's configuration",
                path.display()
            )));
        }
    }
    let other = match args.other {
        OtherArg::Read => Other::Read,
        OtherArg::None => Other::None,
    };
    let inherit = match args.inherit {
        Some(InheritArg::Acl) => Inherit::Acl,
        Some(InheritArg::None) => Inherit::None,
        None => Inherit::default_for(model),
    };
    let exclude = Excludes::new(&args.exclude).map_err(|m| Usage(format!("--exclude: {m}")))?;
    let cache = CacheConfig {
        path,
        policy: Policy { owner: Some(owner), group, model, other, writable: args.writable, inherit },
        exclude,
        force: args.force,
    };
    Ok((cache, origin))
}

/// The one owner of an existing shared cache when it is not `me`: the root and the first
/// entries below it (breadth first, a few hundred) all belong to it. A shared cache kept
/// by a service belongs to its configured owner; without `--owner` the command line would
/// otherwise chown every entry to whoever runs it. A tree of mixed owners (the classic
/// `sudo go mod download` in one's own cache) is what the default is for: `None`.
fn single_other_owner(root: &Path, me: u32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(root).ok()?.uid();
    if owner == me {
        return None;
    }
    let mut queue = std::collections::VecDeque::from([root.to_path_buf()]);
    let mut seen = 0;
    while let Some(dir) = queue.pop_front() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let meta = entry.metadata().ok()?;
            if meta.uid() != owner {
                return None;
            }
            if meta.is_dir() {
                queue.push_back(entry.path());
            }
            seen += 1;
            if seen >= 256 {
                return Some(owner);
            }
        }
    }
    Some(owner)
}

/// Why Go's rule for the module cache gives no path here.
#[derive(Debug, thiserror::Error)]
enum DefaultPathError {
    #[error("cannot find the Go module cache: set GOMODCACHE, GOPATH or HOME, or pass --path")]
    NoHome,
    #[error("uid {0} (SUDO_UID) has no home directory: pass --path")]
    SudoNoHome(u32),
}

/// Go's rule for `GOMODCACHE`, as the invoking user would see it: the environment, then
/// the `go env -w` file, then `$GOPATH[0]/pkg/mod`, then `~/go/pkg/mod`. Under sudo all of
/// these are the caller's to choose, so the root must then lie beneath the caller's home
/// and is resolved from it without symlinks ([`Origin::Home`]).
/// Returns the path, where it may lead, and where it came from (for messages).
fn default_gomodcache() -> Result<(PathBuf, Origin, String), DefaultPathError> {
    let sudo = config::sudo_ids();
    let home = match sudo {
        Some((uid, _)) => nix::unistd::User::from_uid(uid.into()).ok().flatten().map(|u| u.dir),
        None => std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(|| nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|u| u.dir)),
    };
    let go_env = match (sudo, &home, std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty())) {
        (Some(_), Some(home), _) => root::read_home_file(home, &[c".config", c"go", c"env"]),
        (None, _, Some(xdg)) => std::fs::read_to_string(PathBuf::from(xdg).join("go/env")).ok(),
        (None, Some(home), None) => std::fs::read_to_string(home.join(".config/go/env")).ok(),
        _ => None,
    }
    .unwrap_or_default();
    let lookup = |key: &str| -> Option<(String, String)> {
        if let Some(v) = std::env::var_os(key).filter(|v| !v.is_empty()) {
            return Some((v.to_string_lossy().into_owned(), key.to_owned()));
        }
        let from_file = go_env.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('='));
        from_file.filter(|v| !v.is_empty()).map(|v| (v.to_owned(), format!("{key} (from the `go env -w` file)")))
    };
    let first_entry = |(list, source): (String, String)| {
        list.split(':').find(|e| !e.is_empty()).map(|first| (Path::new(first).join("pkg/mod"), source))
    };
    let (path, source) = if let Some((m, source)) = lookup("GOMODCACHE") {
        (PathBuf::from(m), source)
    } else if let Some(found) = lookup("GOPATH").and_then(first_entry) {
        found
    } else {
        let home = home.as_ref().ok_or(DefaultPathError::NoHome)?;
        (home.join("go/pkg/mod"), "the default cache (~/go/pkg/mod)".to_owned())
    };
    let origin = match (sudo, home) {
        (Some(_), Some(home)) => Origin::Home(config::clean(home)),
        (Some((uid, _)), None) => return Err(DefaultPathError::SudoNoHome(uid)),
        (None, _) => Origin::Admin,
    };
    Ok((path, origin, source))
}

/// How far a walk has got, on stderr: for a person at a capable terminal a live line
/// rewritten in place after half a second; elsewhere (a `docker build` log, CI,
/// `TERM=dumb`, `NO_COLOR`) a plain line every [`PLAIN_PROGRESS`], and nothing for a
/// walk shorter than that.
fn with_progress<T>(wanted: bool, tally: &Tally, f: impl FnOnce() -> T) -> T {
    if !wanted {
        return f();
    }
    let live = colour(&std::io::stderr());
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            let tick = if live { Duration::from_millis(200) } else { PLAIN_PROGRESS };
            let started = Instant::now();
            let mut shown = false;
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(tick) {
                let (n, c) = (tally.entries.load(Relaxed), tally.changed.load(Relaxed));
                if !live {
                    eprintln!("cachekeeper: {} seen, {c} changed so far", summary::entries(n));
                } else if started.elapsed() > Duration::from_millis(500) {
                    eprint!("\r\x1b[Kcachekeeper: {n} entries seen, {c} changed");
                    shown = true;
                }
            }
            if shown {
                eprint!("\r\x1b[K");
            }
        });
        let result = f();
        drop(done_tx);
        result
    })
}

/// How often a walk off a capable terminal says how far it has got.
const PLAIN_PROGRESS: Duration = Duration::from_secs(10);

/// The caller's own module cache as `cachekeeper --init` with no flags keeps it (Go's
/// rule for the path, the private model, the caller the owner): what `doctor` checks
/// where no service is configured.
pub fn own_cache() -> Result<CacheConfig, Usage> {
    let args = Args::try_parse_from(["cachekeeper", "--check"]).map_err(|e| Usage(e.to_string()))?;
    cache_from_flags(&args).map(|(cache, _)| cache)
}
