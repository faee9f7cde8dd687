//! What ships is data checked by the tools that consume it: the systemd unit by
//! `systemd-analyze verify` and `security --offline=true` (exposure ≤ 2.0), the
//! sysusers and tmpfiles files by their parsers, the LaunchDaemon plist by a plist
//! parser. A missing tool fails the test: CI installs them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn shipped(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn tool(cmd: &mut Command) -> std::process::Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?} ({e}): install it (systemd, python3)"))
}

/// The unit as installed, but with ExecStart at the binary just built (verify checks
/// that the executable exists).
fn unit_copy(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(shipped("systemd/cachekeeper.service")).unwrap();
    let text = text.replace("/usr/bin/cachekeeper", bin("cachekeeper").to_str().unwrap());
    let unit = dir.join("cachekeeper.service");
    std::fs::write(&unit, text).unwrap();
    unit
}

#[test]
fn the_systemd_unit_verifies() {
    let t = Tree::new();
    let unit = unit_copy(&t.base);
    let out = tool(Command::new("systemd-analyze").arg("verify").arg(&unit));
    assert!(out.status.success() && stderr(&out).trim().is_empty(), "{}{}", stdout(&out), stderr(&out));
}

#[test]
fn the_systemd_unit_exposure_is_at_most_2() {
    let t = Tree::new();
    let unit = unit_copy(&t.base);
    let out = tool(Command::new("systemd-analyze").args(["security", "--offline=true", "--no-pager"]).arg(&unit));
    let text = stdout(&out);
    let line = text.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_else(|| panic!("{text}"));
    let level: f64 = line.split(':').nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!(level <= 2.0, "{line}");
}

#[test]
fn the_unit_grants_exactly_the_four_capabilities_and_no_forbidden_hardening() {
    let text = std::fs::read_to_string(shipped("systemd/cachekeeper.service")).unwrap();
    let four = "CAP_CHOWN CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID";
    assert!(text.contains(&format!("\nAmbientCapabilities={four}\n")));
    assert!(text.contains(&format!("\nCapabilityBoundingSet={four}\n")));
    for line in ["Type=notify", "NoNewPrivileges=yes", "ProtectSystem=strict", "SystemCallFilter=@system-service"] {
        assert!(text.contains(&format!("\n{line}\n")), "missing {line}");
    }
    // Each of these would break repairs: see the comments in the unit.
    for forbidden in ["\nDynamicUser=", "\nPrivateUsers=", "\nRestrictSUIDSGID=", "~@privileged"] {
        assert!(!text.contains(forbidden), "the unit must not set {forbidden:?}");
    }
}

#[test]
fn sysusers_and_tmpfiles_parse() {
    let t = Tree::new();
    let root = t.base.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let out = tool(
        Command::new("systemd-sysusers")
            .arg(format!("--root={}", root.display()))
            .arg(shipped("systemd/cachekeeper.sysusers")),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    assert!(passwd.lines().any(|l| l.starts_with("cachekeeper:")), "no cachekeeper user: {passwd}{}", stderr(&out));
    let out = tool(
        Command::new("systemd-tmpfiles")
            .arg(format!("--root={}", root.display()))
            .arg("--create")
            .arg(shipped("systemd/cachekeeper.tmpfiles")),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(root.join("run/cachekeeper").is_dir() && root.join("var/cache/go").is_dir(), "{}", stderr(&out));
}

#[test]
fn the_launchd_plist_parses_and_runs_the_service() {
    let script = r#"
import plistlib, sys
p = plistlib.load(open(sys.argv[1], "rb"))
assert p["Label"] == "org.cachekeeper.cachekeeper", p["Label"]
assert p["ProgramArguments"][0].endswith("/cachekeeper"), p["ProgramArguments"]
assert "--init" not in p["ProgramArguments"] and "--check" not in p["ProgramArguments"]
assert p["RunAtLoad"] is True and p["KeepAlive"] is True
assert p["StandardErrorPath"] and p["StandardOutPath"]
print("ok")
"#;
    let out =
        tool(Command::new("python3").args(["-c", script]).arg(shipped("launchd/org.cachekeeper.cachekeeper.plist")));
    assert!(out.status.success() && stdout(&out).trim() == "ok", "{}", stderr(&out));
}
