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

use crate::config::{self, CacheConfig, Config, Excludes};
use crate::model::{Inherit, Model, Other, Policy};
use crate::summary::{self, CacheSummary};
use crate::sys;
use crate::walk::{self, Action, Tally};

#[derive(Debug, Parser)]
#[command(name = "cachekeeper", version, about = "Keeps a shared Go module cache usable by everyone who shares it")]
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
    #[arg(long, value_parser = ["shared", "private"])]
    model: Option<String>,
    /// What everyone else may do
    #[arg(long, value_parser = ["read", "none"], default_value = "read")]
    other: String,
    /// Leave paths matching this glob (relative to the root) alone; repeatable
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Give directories the owner's (and so the group's) write bit, like `go -modcacherw`
    #[arg(long)]
    writable: bool,
    /// acl: every directory carries a default ACL, so that new entries are usable by the
    /// group the moment they are created, whatever the creator's umask; none: repair only
    /// [default: acl for the shared model, none for private]
    #[arg(long, value_parser = ["acl", "none"])]
    inherit: Option<String>,
    /// Print the summary as JSON
    #[arg(long)]
    json: bool,
    /// Log every repair (-v) and more (-vv)
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

impl Args {
    fn has_cache_flags(&self) -> bool {
        self.path.is_some()
            || self.owner.is_some()
            || self.group.is_some()
            || self.model.is_some()
            || self.other != "read"
            || !self.exclude.is_empty()
            || self.writable
            || self.inherit.is_some()
    }
}

/// A usage or configuration error: exit 2.
#[derive(Debug)]
struct Usage(String);

/// Parses the command line, or says why not (exit 2; `--help` and `--version` exit 0).
pub fn parse<T: Parser>(argv: impl IntoIterator<Item = OsString>) -> Result<T, ExitCode> {
    T::try_parse_from(argv).map_err(|e| {
        let _ = e.print();
        ExitCode::from(if e.use_stderr() { 2 } else { 0 })
    })
}

pub fn main(argv: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args: Args = match parse(argv) {
        Ok(args) => args,
        Err(code) => return code,
    };
    if !args.init && !args.check {
        return service(&args);
    }
    init_logging(args.verbose);
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(Usage(message)) => {
            eprintln!("cachekeeper: {message}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CACHEKEEPER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();
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
    match crate::daemon::run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(crate::daemon::DaemonError::Config(e)) => {
            eprintln!("cachekeeper: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("cachekeeper: {e}");
            ExitCode::from(1)
        }
    }
}

/// True when every cache is compliant at exit.
fn run(args: &Args) -> Result<bool, Usage> {
    let action = if args.init { Action::Repair } else { Action::Check };
    let caches = if args.config.is_some() && args.has_cache_flags() {
        return Err(Usage(
            "give either --config or the cache on the command line (--path, --owner, ...), not both".into(),
        ));
    } else if let Some(path) = &args.config {
        Config::load(path).map_err(|e| Usage(e.to_string()))?.caches
    } else if let (false, Some(path)) = (args.has_cache_flags(), std::env::var_os("CACHEKEEPER_CONFIG")) {
        Config::load(Path::new(&path)).map_err(|e| Usage(e.to_string()))?.caches
    } else {
        vec![cache_from_flags(args)?]
    };

    let mut all_compliant = true;
    let mut summaries = Vec::new();
    for cache in &caches {
        if action == Action::Repair {
            crate::repair::create_root(cache).map_err(Usage)?;
        }
        let tally = Tally::default();
        let started = Instant::now();
        let notes = with_progress(!args.json, &tally, || walk::walk(cache, action, &tally))
            .map_err(|e| Usage(format!("cannot open cache root {}: {}", cache.path.display(), sys::describe(&e))))?;
        let s = CacheSummary::new(cache, action, &tally, notes, started.elapsed());
        all_compliant &= s.compliant;
        summaries.push(s);
    }
    let mut out = std::io::stdout().lock();
    let printed = if args.json {
        summary::write_json(&mut out, action, &summaries)
    } else {
        summary::write_text(&mut out, &summaries)
    };
    let _ = printed.and_then(|()| out.flush());
    Ok(all_compliant)
}

/// The cache described by `--path`, `--owner`, ... with Go's and sudo's defaults.
fn cache_from_flags(args: &Args) -> Result<CacheConfig, Usage> {
    let path = match &args.path {
        Some(p) => p.clone(),
        None => default_gomodcache().map_err(Usage)?,
    };
    let path = config::cache_root(&path).map_err(|m| Usage(format!("--path: {m}")))?;
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
            let group = owner_group.or(flag_group);
            (uid, group, group.is_some())
        }
        // The invoking user, and under sudo the user who ran sudo: `sudo go mod download`
        // left root-owned files in *their* cache.
        None => {
            let (uid, gid) =
                config::sudo_ids().unwrap_or((nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw()));
            (uid, Some(flag_group.unwrap_or(gid)), flag_group.is_some())
        }
    };
    let model = match args.model.as_deref() {
        Some("shared") => Model::Shared,
        Some(_) => Model::Private,
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
    let other = if args.other == "none" { Other::None } else { Other::Read };
    let inherit = match args.inherit.as_deref() {
        Some("acl") => Inherit::Acl,
        Some(_) => Inherit::None,
        None => Inherit::default_for(model),
    };
    let exclude = Excludes::new(&args.exclude).map_err(|m| Usage(format!("--exclude: {m}")))?;
    Ok(CacheConfig {
        path,
        policy: Policy { owner: Some(owner), group, model, other, writable: args.writable, inherit },
        exclude,
    })
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

/// Go's rule for `GOMODCACHE`, as the invoking user would see it: the environment, then
/// the `go env -w` file, then `$GOPATH[0]/pkg/mod`, then `~/go/pkg/mod`.
fn default_gomodcache() -> Result<PathBuf, String> {
    let home = match config::sudo_ids() {
        Some((uid, _)) => nix::unistd::User::from_uid(uid.into()).ok().flatten().map(|u| u.dir),
        None => std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(|| nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|u| u.dir)),
    };
    let env_file = match (config::sudo_ids(), std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty())) {
        (None, Some(xdg)) => Some(PathBuf::from(xdg).join("go/env")),
        _ => home.as_ref().map(|h| h.join(".config/go/env")),
    };
    let go_env = env_file.and_then(|f| std::fs::read_to_string(f).ok()).unwrap_or_default();
    let lookup = |key: &str| -> Option<String> {
        if let Some(v) = std::env::var_os(key).filter(|v| !v.is_empty()) {
            return Some(v.to_string_lossy().into_owned());
        }
        go_env.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).map(str::to_owned).filter(|v| !v.is_empty())
    };
    if let Some(m) = lookup("GOMODCACHE") {
        return Ok(PathBuf::from(m));
    }
    if let Some(first) = lookup("GOPATH").and_then(|p| p.split(':').find(|e| !e.is_empty()).map(str::to_owned)) {
        return Ok(Path::new(&first).join("pkg/mod"));
    }
    home.map(|h| h.join("go/pkg/mod"))
        .ok_or_else(|| "cannot find the Go module cache: set GOMODCACHE, GOPATH or HOME, or pass --path".into())
}

/// Runs `f`, showing a live count on the terminal when both stdout and stderr are one.
fn with_progress<T>(wanted: bool, tally: &Tally, f: impl FnOnce() -> T) -> T {
    if !(wanted && std::io::stdout().is_terminal() && std::io::stderr().is_terminal()) {
        return f();
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            let started = Instant::now();
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(Duration::from_millis(200))
            {
                if started.elapsed() > Duration::from_millis(500) {
                    let (n, c) = (tally.entries.load(Relaxed), tally.changed.load(Relaxed));
                    eprint!("\r\x1b[Kcachekeeper: {n} entries seen, {c} changed");
                }
            }
            eprint!("\r\x1b[K");
        });
        let result = f();
        drop(done_tx);
        result
    })
}
