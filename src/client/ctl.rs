//! The `cachekeeperctl` client (SPEC §3): one request over the control socket, the
//! answer rendered for people or as JSON. Exit codes follow `systemctl status`:
//! 0 healthy/done, 1 degraded/failed, 3 not running, 4 not permitted.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};

use crate::policy::config::DEFAULT_SOCKET;
use crate::protocol::{CacheState, Request, Response, Status};

const AFTER_HELP: &str = "\
Exit codes (as systemctl status):
  0  healthy, done, allowed
  1  degraded, failed, timed out, denied by the file system (explain), a FAIL (doctor)
  2  usage error
  3  the service is not running
  4  you may not use the service (only root and members of daemon.socket_group)
  5  sync/rescan done, but entries you own could not be repaired (others' are only listed)

Examples:
  cachekeeperctl status
  cachekeeperctl sync --timeout 30s && go build ./...
  cachekeeperctl explain --user bob /var/cache/go/mod/cache/download/example.com
  cachekeeperctl doctor";

#[derive(Debug, Parser)]
#[command(name = "cachekeeperctl", version, about = "Talk to the running cachekeeper service", after_help = AFTER_HELP)]
struct Args {
    /// Control socket [default: $CACHEKEEPER_SOCKET, else daemon.socket of the
    /// configuration, else /run/cachekeeper/control.sock]
    #[arg(long, value_name = "PATH", global = true)]
    socket: Option<PathBuf>,
    /// Configuration: its socket, and for doctor and explain its caches [default:
    /// $CACHEKEEPER_CONFIG, else /etc/cachekeeper/config.toml]
    #[arg(long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Health of the service and of every cache it keeps (exit 0 healthy, 1 degraded,
    /// 3 not running, 4 not permitted)
    Status {
        /// The stable JSON object (schema_version 1)
        #[arg(long)]
        json: bool,
    },
    /// Return once every event that happened before the call has been handled
    Sync {
        /// Give up after this long (exit 1)
        #[arg(long, value_name = "DUR", default_value = "60s")]
        timeout: String,
    },
    /// Reconcile one cache, or all, now and wait for it
    Rescan { path: Option<PathBuf> },
    /// Re-read the configuration
    Reload,
    /// Counters and gauges in the Prometheus text format
    Metrics,
    /// A checklist of everything that keeps a shared cache usable (exit 1 if anything fails)
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// Why a user may not do something at PATH, and what would fix it (no service needed);
    /// PATH may also be an error line as Go printed it (quoted), such as
    /// "go: mkdir /var/cache/go/mod/cache/download/x: permission denied"
    Explain {
        /// The access to judge at PATH [default: what Go needs there: read for files of
        /// an extracted module tree, create for directories under cache/download, ...]
        #[arg(long, value_enum)]
        access: Option<crate::client::explain::Access>,
        /// The user to explain for [default: you]
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        #[arg(long)]
        json: bool,
        #[arg(value_name = "PATH|ERROR")]
        path: std::ffi::OsString,
    },
}

/// The command line's definition, for man pages and completions.
pub fn command() -> clap::Command {
    <Args as clap::CommandFactory>::command()
}

const FAILED: u8 = 1;
const NOT_RUNNING: u8 = 3;
/// `sync`/`rescan` did their work, but entries the caller owns stay unrepaired.
const UNREPAIRED: u8 = 5;
const DENIED: u8 = 4;

pub fn main(argv: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args: Args = match crate::oneshot::cli::parse(argv) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let config = args.config.as_deref();
    if let Command::Explain { access, user, json, path } = &args.command {
        return explain(*access, user.as_deref(), config, *json, path);
    }
    let socket = args
        .socket
        .clone()
        .or_else(|| std::env::var_os("CACHEKEEPER_SOCKET").filter(|s| !s.is_empty()).map(PathBuf::from))
        .or_else(|| {
            let file = crate::policy::config::path_or_default(config);
            crate::policy::config::Config::load(&file).ok().map(|c| c.daemon.socket)
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    if let Command::Doctor { json } = &args.command {
        return doctor(&socket, config, *json);
    }
    let (request, wait) = match &args.command {
        Command::Status { .. } | Command::Metrics => (Request::Status, Some(Duration::from_secs(30))),
        Command::Sync { timeout } => match crate::policy::config::parse_duration(timeout) {
            Ok(t) => (Request::Sync { timeout_ms: t.as_millis() as u64 }, Some(t + Duration::from_secs(10))),
            Err(m) => {
                eprintln!("cachekeeperctl: --timeout: {m}");
                return ExitCode::from(2);
            }
        },
        Command::Rescan { path } => (Request::Rescan { path: path.as_ref().map(|p| p.display().to_string()) }, None),
        Command::Reload => (Request::Reload, Some(Duration::from_secs(600))),
        Command::Explain { .. } | Command::Doctor { .. } => unreachable!("answered above"),
    };
    let response = match call(&socket, &request, wait) {
        Ok(r) => r,
        Err((code, message)) => {
            eprintln!("cachekeeperctl: {message}");
            return ExitCode::from(code);
        }
    };
    match (response, &args.command) {
        (Response::Status(status), Command::Status { json }) => {
            if *json {
                println!("{}", serde_json::to_string(&status).unwrap_or_default());
            } else {
                print!("{}", render_status(&status));
            }
            ExitCode::from(if status.healthy { 0 } else { FAILED })
        }
        (Response::Status(status), Command::Metrics) => {
            print!("{}", crate::metrics::render(&status));
            ExitCode::SUCCESS
        }
        (Response::Synced { leftovers }, _) => ExitCode::from(tell_leftovers(&leftovers)),
        (Response::Rescanned { caches, scans, leftovers }, _) => {
            for (i, path) in caches.iter().enumerate() {
                match scans.get(i) {
                    Some(s) => println!(
                        "{path}: reconciled, {} seen, {} repaired in {:.2}s",
                        crate::oneshot::summary::entries(s.entries),
                        s.repaired,
                        s.duration_ms as f64 / 1000.0
                    ),
                    None => println!("{path}: reconciled"),
                }
            }
            ExitCode::from(tell_leftovers(&leftovers))
        }
        (Response::Reloaded { caches }, _) => {
            println!("configuration reloaded; caches: {}", caches.join(", "));
            ExitCode::SUCCESS
        }
        (Response::Failed { message }, _) => {
            eprintln!("cachekeeperctl: {message}");
            ExitCode::from(FAILED)
        }
        (Response::Denied { message }, _) => {
            eprintln!("cachekeeperctl: {message}");
            ExitCode::from(DENIED)
        }
        (other, _) => {
            eprintln!("cachekeeperctl: unexpected answer from the service: {}", other.kind());
            ExitCode::from(FAILED)
        }
    }
}

/// Says what a `sync` or `rescan` left unrepaired, on stderr: the work is done either way.
/// Exit 5 when some of it is the caller's own (they can act on it), else 0: an entry
/// another user broke never fails everyone else's `sync` (SPEC §4).
fn tell_leftovers(leftovers: &[crate::protocol::Leftover]) -> u8 {
    let mut yours = 0;
    for l in leftovers {
        let first = l.first.first().map(|u| format!(" (first: {}: {})", u.path, u.cause)).unwrap_or_default();
        let whose = match l.yours {
            0 => "none of them yours".to_owned(),
            n if n == l.unrepaired => "all of them yours".to_owned(),
            n => format!("{n} of them yours"),
        };
        eprintln!(
            "cachekeeperctl: {}: done; {} entr{} could not be repaired, {whose}{first}; \
             `{} status` lists them",
            l.cache,
            l.unrepaired,
            if l.unrepaired == 1 { "y" } else { "ies" },
            crate::policy::hint::command("cachekeeperctl")
        );
        yours += l.yours;
    }
    if yours > 0 {
        UNREPAIRED
    } else {
        0
    }
}

/// `doctor`: exit 1 when any line fails.
fn doctor(socket: &std::path::Path, config: Option<&std::path::Path>, json: bool) -> ExitCode {
    use crate::client::doctor::Unanswered;
    let named = config.is_some() || std::env::var_os("CACHEKEEPER_CONFIG").is_some_and(|c| !c.is_empty());
    let config = crate::policy::config::path_or_default(config);
    let status = match call(socket, &Request::Status, Some(Duration::from_secs(30))) {
        Ok(Response::Status(s)) => Ok(*s),
        Ok(Response::Denied { message }) => Err(Unanswered::NotAllowed(message)),
        Ok(other) => Err(Unanswered::Failed(format!("unexpected answer: {}", other.kind()))),
        Err((NOT_RUNNING, message)) => Err(Unanswered::NotRunning(message)),
        Err((DENIED, message)) => Err(Unanswered::NotAllowed(message)),
        Err((_, message)) => Err(Unanswered::Failed(message)),
    };
    let own_cache = (!named && !config.exists()).then(crate::oneshot::cli::own_cache);
    let lines =
        crate::client::doctor::run(&crate::client::doctor::Inputs { config: &config, named, status, own_cache });
    if json {
        println!("{}", serde_json::json!({ "schema_version": 1, "checks": lines }));
    } else {
        print!("{}", crate::client::doctor::render(&lines));
    }
    let failed = lines.iter().any(|l| l.verdict == crate::client::doctor::Verdict::Fail);
    ExitCode::from(if failed { FAILED } else { 0 })
}

/// `explain`: exit 0 when everything asked for is allowed, 1 when something is denied,
/// 2 for what it cannot judge (a bad `--user` or `--config`, an error line that is not
/// about permissions).
fn explain(
    mut access: Option<crate::client::explain::Access>,
    user: Option<&str>,
    config: Option<&std::path::Path>,
    json: bool,
    arg: &std::ffi::OsStr,
) -> ExitCode {
    use crate::client::pasted::Pasted;
    let mut note = None;
    let path = match crate::client::pasted::parse(&arg.to_string_lossy()) {
        None => PathBuf::from(arg),
        Some(Pasted::NotPermissions(why)) => {
            println!("{why}");
            return ExitCode::from(2);
        }
        Some(Pasted::Dubious { path }) => return dubious(&path),
        Some(Pasted::Path { path, access: asked, note: said }) => {
            access = access.or(asked);
            note = Some(said);
            path
        }
    };
    let path = path.as_path();
    let who = match user {
        Some(u) => match crate::client::explain::Who::lookup(u) {
            Ok(w) => w,
            Err(m) => {
                eprintln!("cachekeeperctl: --user: {m}");
                return ExitCode::from(2);
            }
        },
        None => crate::client::explain::Who::caller(),
    };
    let path = match std::path::absolute(path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cachekeeperctl: {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let caches = match crate::client::explain::configured_caches(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cachekeeperctl: {e}");
            return ExitCode::from(2);
        }
    };
    let e = crate::client::explain::explain(&who, &path, &caches, access);
    if json {
        println!("{}", serde_json::to_string(&e).unwrap_or_default());
    } else {
        if let Some(note) = note {
            println!("from the error line: {} — {note}", path.display());
        }
        print!("{}", crate::client::explain::render(&e));
    }
    ExitCode::from(if e.allowed { 0 } else { FAILED })
}

/// git's "dubious ownership": the repository belongs to another user than the caller.
fn dubious(path: &std::path::Path) -> ExitCode {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let owner = std::fs::metadata(path).map(|m| m.uid());
    let whose = match owner {
        Ok(uid) if uid == me => format!("it belongs to you (uid {me}) now: run the go command again"),
        Ok(uid) => format!("it belongs to uid {uid}, not to you (uid {me}), and git refuses such repositories"),
        Err(e) => format!("cannot read it: {e}"),
    };
    let clones = path.ancestors().find(|a| a.ends_with("cache/vcs")).map(|v| v.join("*"));
    let system = clones.map_or(String::new(), |c| {
        format!(
            " (or, for every clone of the cache, as root: `git config --system --add safe.directory '{}'`)",
            c.display()
        )
    });
    println!(
        "git at {}: {whose}; fix: `git config --global --add safe.directory {}`{system}",
        path.display(),
        crate::policy::hint::quote(path.as_os_str())
    );
    ExitCode::from(FAILED)
}

/// One request, one response. Errors carry the exit code.
fn call(socket: &std::path::Path, request: &Request, wait: Option<Duration>) -> Result<Response, (u8, String)> {
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => (
            DENIED,
            format!(
                "permission denied on {}: only root and members of the service's socket_group may use it",
                socket.display()
            ),
        ),
        _ => (
            NOT_RUNNING,
            format!("cachekeeper is not running (no service at {}: {})", socket.display(), crate::sys::describe(&e)),
        ),
    })?;
    let lost = |e: std::io::Error| (FAILED, format!("lost the connection to the service: {e}"));
    stream.set_read_timeout(wait).map_err(lost)?;
    let mut line = serde_json::to_vec(request).map_err(|e| (FAILED, e.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(lost)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(lost)?;
    if answer.is_empty() {
        return Err((FAILED, "the service closed the connection without an answer".into()));
    }
    serde_json::from_str(&answer).map_err(|e| (FAILED, format!("cannot read the service's answer: {e}")))
}

fn ago(unix: u64) -> String {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    human(Duration::from_secs(now.saturating_sub(unix))) + " ago"
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// The human form of `status`.
pub fn render_status(status: &Status) -> String {
    let d = &status.daemon;
    let caps = if d.capabilities.is_empty() { "none".to_owned() } else { d.capabilities.join(",") };
    let mut out = format!(
        "cachekeeper {}: {} — pid {}, up {}, uid {}, capabilities {caps}\n",
        d.version,
        if status.healthy { "healthy" } else { "degraded" },
        d.pid,
        human(Duration::from_secs(d.uptime_s)),
        d.uid
    );
    if let Some(trouble) = &d.trouble {
        out += &format!("  TROUBLE {trouble}\n");
    }
    if !d.config.is_empty() {
        out += &format!("  config {}, socket {}\n", d.config, if d.socket.is_empty() { "?" } else { &d.socket });
    }
    let mut names = crate::policy::names::Names::default();
    for c in &status.caches {
        let state = match c.state {
            CacheState::Starting => "starting",
            CacheState::Healthy => "healthy",
            CacheState::Degraded => "DEGRADED",
            CacheState::Polling => "polling",
        };
        out += &format!("{}: {state} ({})\n", c.path, c.filesystem);
        if let Some(reason) = &c.reason {
            out += &format!("  why        {reason}\n");
        }
        if let Some(p) = &c.owner_model {
            let owner = p.owner.map_or("unchanged".to_owned(), |u| names.user(u));
            let group = p.group.map_or("unchanged".to_owned(), |g| names.group(g));
            let model = if p.model == crate::policy::model::Model::Shared { "shared" } else { "private" };
            out += &format!("  model      {model}: owner {owner}, group {group}\n");
        }
        if let Some(isolation) = &c.isolation {
            out += &format!("  isolation  {isolation}\n");
        }
        match &c.last_full_scan {
            Some(s) => {
                // The count is the last full scan's; the watches are live (directories
                // added since have theirs), so both are shown, each for what it is.
                out += &format!(
                    "  entries    {} as of the last full scan {} (took {:.2}s); {} directories watched now\n",
                    s.entries,
                    ago(s.finished_at),
                    s.duration_ms as f64 / 1000.0,
                    c.watches
                )
            }
            None => out += "  entries    (first full scan running)\n",
        }
        out += &format!("  repairs    {}\n", c.repairs);
        match c.inheritance {
            Some(crate::policy::model::Inheritance::Acl) => {
                out += "  inherit    default ACLs: new entries are group-usable at creation\n"
            }
            Some(crate::policy::model::Inheritance::RepairOnly) => {
                out += "  inherit    repair only: the filesystem has no POSIX ACLs; members need umask 002\n"
            }
            Some(crate::policy::model::Inheritance::None) => {
                out += "  inherit    none: new entries wait for a repair\n"
            }
            None => {}
        }
        let p = &c.reported;
        out += &format!(
            "  reported   symlink {}, hard link {}, special {}, other mount {}\n",
            p.symlink, p.hard_link, p.special, p.other_mount
        );
        out += &format!(
            "  events     {} received, {} overflows, queue {}, errors {}\n",
            c.events_received, c.overflows, c.queue_depth, c.errors
        );
        if c.unrepaired > 0 {
            // Never hidden, though it degrades nothing: each is its entry's problem.
            out += &format!("  unrepaired {} (retried; `status --json` lists the first)\n", c.unrepaired);
            for u in &c.unrepaired_entries {
                let owner = u.owner.map(|o| format!(" [uid {o}]")).unwrap_or_default();
                out += &format!("             {}{owner}: {}\n", u.path, u.cause);
            }
        }
    }
    out
}
