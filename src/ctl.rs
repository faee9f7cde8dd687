//! The `cachekeeperctl` client (SPEC §3). It finds the service through its control
//! socket; exit 3 means "not running", as with `systemctl status`.

use std::ffi::OsString;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::DEFAULT_SOCKET;

#[derive(Debug, Parser)]
#[command(name = "cachekeeperctl", version, about = "Talk to the running cachekeeper service")]
struct Args {
    /// Control socket [default: $CACHEKEEPER_SOCKET, else /run/cachekeeper/control.sock]
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Health of the service and of every cache it keeps
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Return once every event that happened before the call has been handled
    Sync {
        #[arg(long, value_name = "DUR")]
        timeout: Option<String>,
    },
    /// Reconcile one cache, or all, now and wait for it
    Rescan { path: Option<PathBuf> },
    /// Re-read the configuration
    Reload,
}

const NOT_RUNNING: u8 = 3;

pub fn main(argv: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args = match Args::try_parse_from(argv) {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if let Command::Sync { timeout: Some(t) } = &args.command {
        if let Err(m) = crate::config::parse_duration(t) {
            eprintln!("cachekeeperctl: --timeout: {m}");
            return ExitCode::from(2);
        }
    }
    let socket = args
        .socket
        .or_else(|| std::env::var_os("CACHEKEEPER_SOCKET").filter(|s| !s.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    match UnixStream::connect(&socket) {
        Err(e) => {
            eprintln!(
                "cachekeeperctl: cachekeeper is not running (no service at {}: {})",
                socket.display(),
                crate::sys::describe(&e)
            );
            ExitCode::from(NOT_RUNNING)
        }
        Ok(_) => {
            // The service and its protocol are not part of this version: whatever
            // listens there is not a cachekeeper this client can talk to.
            eprintln!("cachekeeperctl: {} does not speak this client's protocol", socket.display());
            ExitCode::from(NOT_RUNNING)
        }
    }
}
