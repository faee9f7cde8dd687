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

/// The shipped sysusers file applied to an empty root filesystem below `t`.
fn sysusers_into(t: &Tree) -> (PathBuf, std::process::Output) {
    let root = t.base.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let out = tool(
        Command::new("systemd-sysusers")
            .arg(format!("--root={}", root.display()))
            .arg(shipped("systemd/cachekeeper.sysusers")),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    (root, out)
}

#[test]
fn sysusers_and_tmpfiles_parse() {
    let t = Tree::new();
    let (root, out) = sysusers_into(&t);
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
# For an install outside Homebrew, the same on Apple silicon and Intel: /usr/local/bin, and
# logs in a directory every Mac has. Homebrew's own plist comes from the formula.
args = p["ProgramArguments"]
assert args[0] == "/usr/local/bin/cachekeeper", args
assert not any("/opt/homebrew" in a or "Cellar" in a for a in args), args
assert p["StandardErrorPath"].startswith("/Library/Logs/"), p["StandardErrorPath"]
assert p["StandardOutPath"].startswith("/Library/Logs/"), p["StandardOutPath"]
print("ok")
"#;
    let out =
        tool(Command::new("python3").args(["-c", script]).arg(shipped("launchd/org.cachekeeper.cachekeeper.plist")));
    assert!(out.status.success() && stdout(&out).trim() == "ok", "{}", stderr(&out));
}

/// Dockerfile instructions with their arguments, continuation lines joined.
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let line = line.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => pending.push_str(part),
            None => {
                pending.push_str(line);
                let (word, args) = pending.split_once(char::is_whitespace).unwrap_or((&pending, ""));
                out.push((word.to_uppercase(), args.trim().to_owned()));
                pending.clear();
            }
        }
    }
    assert!(pending.is_empty(), "a continuation line runs off the end");
    out
}

#[test]
fn the_example_dockerfile_runs_init_after_the_root_download_and_before_user_1001() {
    const KNOWN: &[&str] = &[
        "FROM",
        "RUN",
        "CMD",
        "LABEL",
        "EXPOSE",
        "ENV",
        "ADD",
        "COPY",
        "ENTRYPOINT",
        "VOLUME",
        "USER",
        "WORKDIR",
        "ARG",
        "ONBUILD",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "SHELL",
    ];
    for file in ["packaging/docker/Dockerfile", "packaging/docker/cachekeeper.Dockerfile"] {
        let text = std::fs::read_to_string(shipped(file)).unwrap();
        let ins = dockerfile_instructions(&text);
        let first = ins.iter().find(|(w, _)| w != "ARG").map(|i| i.0.as_str());
        assert_eq!(first, Some("FROM"), "{file} must start with FROM (after the ARGs that name its images)");
        for (word, args) in &ins {
            assert!(KNOWN.contains(&word.as_str()), "{file}: unknown instruction {word}");
            assert!(!args.is_empty(), "{file}: {word} without arguments");
        }
        // Every COPY --from names an earlier stage.
        let mut stages = Vec::new();
        // Images are build arguments (`ARG GO_IMAGE=...` before the first FROM), so that
        // CI builds the file as shipped with only the base images substituted.
        let args_before_from: Vec<&str> = ins
            .iter()
            .take_while(|(w, _)| w == "ARG")
            .filter_map(|(_, a)| a.split_once('=').map(|(name, _)| name))
            .collect();
        for (word, args) in ins.iter().filter(|(w, _)| w == "FROM") {
            let image = args.split_whitespace().next().unwrap_or_default();
            let name = image.strip_prefix("${").and_then(|i| i.strip_suffix('}'));
            assert!(
                name.is_some_and(|n| args_before_from.contains(&n)),
                "{file}: {word} {args}: the image is a build argument"
            );
        }
        for (word, args) in &ins {
            if word == "FROM" {
                if let Some((_, name)) = args.split_once(" AS ") {
                    stages.push(name.trim().to_owned());
                }
            }
            if let Some(from) = args.strip_prefix("--from=") {
                let stage = from.split_whitespace().next().unwrap();
                assert!(stages.iter().any(|s| s == stage), "{file}: COPY --from={stage} before that stage");
            }
        }
    }
    let text = std::fs::read_to_string(shipped("packaging/docker/Dockerfile")).unwrap();
    let ins = dockerfile_instructions(&text);
    let at = |pred: &dyn Fn(&(String, String)) -> bool| ins.iter().position(pred);
    let download = at(&|(w, a)| w == "RUN" && a.contains("go mod download")).expect("a root go mod download");
    // The model is explicit: `--owner U:G` alone is private, and a reader should not guess.
    let init = at(&|(w, a)| w == "RUN" && a.contains("cachekeeper --init --owner 1001:1001 --model private"))
        .expect("cachekeeper --init");
    let user = at(&|(w, a)| w == "USER" && a == "1001:1001")
        .expect("USER 1001:1001: without the group, a uid with no passwd entry runs with gid 0");
    assert!(download <= init && init < user, "download, then --init, then USER 1001");
    // uid 1001 has no home: without a GOCACHE made for it, `go build` fails with
    // "failed to initialize build cache at /.cache/go-build".
    let gocache = at(&|(w, a)| w == "ENV" && a.contains("GOCACHE=")).expect("ENV GOCACHE");
    let made =
        at(&|(w, a)| w == "RUN" && a.contains("--path \"$GOCACHE\" --owner 1001:1001")).expect("a GOCACHE for 1001");
    assert!(gocache < made && made < user, "GOCACHE set, then made for 1001, before USER 1001");
    assert!(text.contains("cachekeeper.Dockerfile"), "the Dockerfile says where the cachekeeper image comes from");
    // `go build` writes into the working directory, which WORKDIR made root's.
    assert!(
        ins[..user].iter().any(|(w, a)| w == "RUN" && a.contains("chown 1001:1001 /app /go/pkg")),
        "the working directory belongs to the build user"
    );
    assert!(!ins[..download].iter().any(|(w, _)| w == "USER"), "the download runs as root");
}

#[test]
fn the_homebrew_formula_builds_with_cargo_and_runs_a_root_service() {
    let text = std::fs::read_to_string(shipped("packaging/homebrew/cachekeeper.rb")).unwrap();
    for needed in [
        "class Cachekeeper < Formula",
        "depends_on \"rust\" => :build",
        "system \"cargo\", \"install\", *std_cargo_args",
        "service do",
        "run [opt_bin/\"cachekeeper\", \"--config\"",
        "require_root true",
        "cachekeeper.service",
        "test do",
        "man1.install \"packaging/man/cachekeeper.1\", \"packaging/man/cachekeeperctl.1\"",
        "bash_completion.install",
        "zsh_completion.install",
        "fish_completion.install",
    ] {
        assert!(text.contains(needed), "the formula lacks {needed:?}");
    }
    // The service block's paths come from the prefix (opt_bin, etc, var), so they are
    // right under /opt/homebrew (Apple silicon) and /usr/local (Intel) alike.
    for fixed in ["/opt/homebrew", "/usr/local", "/Cellar"] {
        assert!(!text.contains(fixed), "the formula names the fixed prefix path {fixed}");
    }
    // Every file the formula installs is in the tree.
    for quoted in
        text.split('"').skip(1).step_by(2).filter(|q| q.starts_with("packaging/") || q.starts_with("systemd/"))
    {
        assert!(shipped(quoted).exists(), "the formula installs {quoted}, which does not exist");
    }
    let opens = text
        .lines()
        .filter(|l| {
            l.trim_end().ends_with(" do") || l.trim_start().starts_with("class ") || l.trim_start().starts_with("def ")
        })
        .count();
    let ends = text.lines().filter(|l| l.trim() == "end").count();
    assert_eq!(opens, ends, "unbalanced blocks in the formula");
}

#[test]
fn the_kubernetes_manifests_validate_and_the_init_container_is_baseline() {
    let dir = shipped("packaging/kubernetes");
    let manifests: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    let out = tool(Command::new("python3").args(["-m", "kubernetes_validate", "--strict"]).args(&manifests));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // Baseline pod security: only capabilities from its list may be added; no host
    // namespaces, no privileged containers, no hostPath.
    let script = r#"
import sys, yaml
BASELINE = {"AUDIT_WRITE","CHOWN","DAC_OVERRIDE","FOWNER","FSETID","KILL","MKNOD","NET_BIND_SERVICE","SETFCAP","SETGID","SETPCAP","SETUID","SYS_CHROOT"}
pod = yaml.safe_load(open(sys.argv[1]))
spec = pod["spec"]
assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), "host namespaces"
assert not any("hostPath" in v for v in spec.get("volumes", [])), "hostPath volume"
init = spec["initContainers"][0]
assert "--init" in init["command"], init["command"]
for c in spec["initContainers"] + spec["containers"]:
    sc = c.get("securityContext", {})
    assert not sc.get("privileged"), c["name"]
    caps = sc.get("capabilities", {})
    assert caps.get("drop") == ["ALL"], (c["name"], caps)
    assert set(caps.get("add", [])) <= BASELINE, (c["name"], caps)
assert set(init["securityContext"]["capabilities"]["add"]) == {"CHOWN", "FOWNER", "FSETID"}
# The kubelet walks the volume only when the root differs from what fsGroup wants, and
# the shared model's group is the fsGroup, so it never has a reason to.
assert spec["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch", spec["securityContext"]
cmd = init["command"]
assert cmd[cmd.index("--model") + 1] == "shared", cmd
assert cmd[cmd.index("--group") + 1] == str(spec["securityContext"]["fsGroup"]), cmd
build = spec["containers"][0]["securityContext"]
assert build["runAsUser"] == 1001 and build["runAsNonRoot"] is True
print("ok")
"#;
    let out = tool(Command::new("python3").args(["-c", script]).arg(dir.join("init-container.yaml")));
    assert!(out.status.success() && stdout(&out).trim() == "ok", "{}", stderr(&out));
    let daemonset = std::fs::read_to_string(dir.join("daemonset.yaml")).unwrap();
    assert!(daemonset.contains("fsGroupChangePolicy: OnRootMismatch"), "the DaemonSet sets OnRootMismatch");
}

/// The unit's settings, `Key=value` lines, in order (a key may repeat).
fn unit_settings() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(shipped("systemd/cachekeeper.service")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Regression: uncommenting `audit_log` in the example stopped the service from
/// starting, and `metrics_textfile` was never written: ProtectSystem=strict made their
/// directories read-only. Every path the example names, commented or not, must be
/// writable under the unit: a ReadWritePaths= (with `-`, so that a missing directory
/// does not stop the unit), or a directory systemd creates for the service.
#[test]
fn every_path_the_example_configuration_names_is_writable_under_the_unit() {
    let settings = unit_settings();
    let mut writable: Vec<String> = Vec::new();
    for (key, value) in &settings {
        let base = match key.as_str() {
            "ReadWritePaths" => "",
            "LogsDirectory" => "/var/log/",
            "StateDirectory" => "/var/lib/",
            "RuntimeDirectory" => "/run/",
            "CacheDirectory" => "/var/cache/",
            _ => continue,
        };
        for v in value.split_whitespace() {
            if key == "ReadWritePaths" {
                assert!(v.starts_with('-'), "ReadWritePaths={v} stops the unit when {v} does not exist: write -{v}");
            }
            writable.push(format!("{base}{}", v.trim_start_matches('-')));
        }
    }
    let example = std::fs::read_to_string(shipped("systemd/config.toml")).unwrap();
    let mut named = 0;
    for line in example.lines() {
        let line = line.trim_start_matches('#').trim();
        let Some((key, value)) = line.split_once('=') else { continue };
        let key = key.trim();
        if !["path", "socket", "audit_log", "metrics_textfile"].contains(&key) {
            continue;
        }
        let path = value.trim().trim_matches('"');
        named += 1;
        assert!(
            writable.iter().any(|w| Path::new(path).starts_with(w)),
            "{key} = {path} in systemd/config.toml is read-only under the unit (writable: {writable:?})"
        );
    }
    assert_eq!(named, 4, "path, socket, audit_log and metrics_textfile are in the example");
}

/// Regression: a broken configuration made the unit restart five times and fail, and a
/// refused reload looked like a successful one (ExecReload= sent SIGHUP).
#[test]
fn a_configuration_error_does_not_loop_and_a_refused_reload_fails() {
    let settings = unit_settings();
    let get = |k: &str| settings.iter().filter(|(key, _)| key == k).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
    assert_eq!(get("RestartPreventExitStatus"), ["2"], "exit status 2 is a configuration error");
    assert_eq!(get("ExecReload"), ["/usr/bin/cachekeeperctl reload"], "the reload must wait for the answer");
}

/// Regression: the shipped configuration names group `gobuild`, which nothing created,
/// and the service could not create the default cache in root-owned /var/cache/go.
#[test]
fn the_package_creates_the_group_and_the_default_cache_of_the_shipped_configuration() {
    let t = Tree::new();
    let (root, _) = sysusers_into(&t);
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap_or_default();
    assert!(group.lines().any(|l| l.starts_with("gobuild:")), "no gobuild group: {group}");
    let example = std::fs::read_to_string(shipped("systemd/config.toml")).unwrap();
    assert!(example.contains("\npath = \"/var/cache/go/mod\"\n") && example.contains("\ngroup = \"gobuild\"\n"));
    let tmpfiles = std::fs::read_to_string(shipped("systemd/cachekeeper.tmpfiles")).unwrap();
    assert!(tmpfiles.lines().any(|l| l == "d /var/cache/go/mod 2775 root gobuild -"), "{tmpfiles}");
}

/// The bind mount that puts the default cache root, exactly, on a mount of its own (hard
/// links from outside fail with EXDEV), and the service's dependency on it.
#[test]
fn the_mount_unit_verifies_and_the_service_requires_it() {
    let t = Tree::new();
    let unit = t.base.join("var-cache-go-mod.mount");
    std::fs::copy(shipped("systemd/var-cache-go-mod.mount"), &unit).unwrap();
    let out = tool(Command::new("systemd-analyze").arg("verify").arg(&unit));
    assert!(out.status.success() && stderr(&out).trim().is_empty(), "{}{}", stdout(&out), stderr(&out));
    let text = std::fs::read_to_string(&unit).unwrap();
    for line in ["What=/var/cache/go/mod", "Where=/var/cache/go/mod", "Options=bind"] {
        assert!(text.lines().any(|l| l == line), "missing {line}");
    }
    let service = unit_settings();
    assert!(service.iter().any(|(k, v)| k == "RequiresMountsFor" && v == "/var/cache/go/mod"), "{service:?}");
}
