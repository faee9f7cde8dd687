//! Commands the tool suggests, spelled so that they run as printed: the binary by its bare
//! name only where the shell that runs the hint finds this very binary under that name
//! (for `sudo`, its `secure_path`, not the caller's `PATH`), else by its full path (a build
//! in `target/`, `~/.cargo/bin` under sudo); and the arguments of this run, quoted.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// Where `sudo` looks for commands on Debian and most distributions (`secure_path`).
const SUDO_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `name` (`cachekeeper` or `cachekeeperctl`) as a command line should spell it: this
/// binary's sibling of that name, by its bare name when `search` (a `PATH`) leads to it.
fn program(name: &str, search: &OsStr) -> String {
    // The kernel names this binary by its real path; a caller who may not search a
    // directory above it (a build below a 0700 directory) still runs it by that path.
    let here = std::env::current_exe().ok().map(|e| e.canonicalize().unwrap_or(e));
    let sibling = |dir: &Path| Some(dir.join(name)).filter(|p| p.exists());
    let Some(installed) = (match here {
        Some(here) if here.file_name() == Some(OsStr::new(name)) => Some(here),
        here => here.as_deref().and_then(Path::parent).and_then(sibling),
    }) else {
        return name.to_owned();
    };
    let found: Option<PathBuf> = std::env::split_paths(search).map(|d| d.join(name)).find(|p| p.is_file());
    if found.and_then(|p| p.canonicalize().ok()).as_deref() == Some(installed.as_path()) {
        name.to_owned()
    } else {
        installed.display().to_string()
    }
}

/// `name` for the caller's own shell.
pub(crate) fn command(name: &str) -> String {
    program(name, &std::env::var_os("PATH").unwrap_or_default())
}

/// `sudo` and `name`, as sudo will find it.
pub(crate) fn sudo(name: &str) -> String {
    format!("sudo {}", program(name, OsStr::new(SUDO_PATH)))
}

/// This run again, as root, with `--check` turned into `--init` when `init`: the fix for
/// entries only root may change.
pub(crate) fn rerun_with_sudo(init: bool) -> String {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let mut line = sudo("cachekeeper");
    let has_mode = args.iter().any(|a| a == "--init" || a == "--check");
    if init && !has_mode {
        line.push_str(" --init");
    }
    for arg in &args {
        line.push(' ');
        if init && arg == "--check" {
            line.push_str("--init");
        } else {
            line.push_str(&quote(arg));
        }
    }
    line
}

/// One shell word: as it is when it needs no quoting, else in single quotes.
pub(crate) fn quote(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_a_shell_would_split_or_expand_them() {
        assert_eq!(quote(OsStr::new("/var/cache/go/mod")), "/var/cache/go/mod");
        assert_eq!(quote(OsStr::new("my cache")), "'my cache'");
        assert_eq!(quote(OsStr::new("it's")), r"'it'\''s'");
        assert_eq!(quote(OsStr::new("$HOME")), "'$HOME'");
        assert_eq!(quote(OsStr::new("")), "''");
    }

    #[test]
    fn a_binary_the_path_does_not_lead_to_is_named_by_its_full_path() {
        // The test binary's own directory holds no `cachekeeper`: the bare name is kept.
        assert_eq!(program("no-such-binary", OsStr::new("/usr/bin")), "no-such-binary");
        let exe = std::env::current_exe().unwrap().canonicalize().unwrap();
        let name = exe.file_name().unwrap().to_str().unwrap().to_owned();
        let dir = exe.parent().unwrap();
        assert_eq!(program(&name, OsStr::new("/nonexistent")), exe.display().to_string());
        assert_eq!(program(&name, dir.as_os_str()), name);
    }
}
