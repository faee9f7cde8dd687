//! The documentation as a user meets it. Man pages and shell completions are generated
//! from the command-line definitions and committed under `packaging/`, where the
//! packages install them from: a test fails when they are stale
//! (`CK_REGENERATE=1 cargo nextest run --test docs` rewrites them). The README's examples
//! marked `sh test` and `toml test` run as printed, and every relative link and anchor
//! in the README and `docs/` leads somewhere.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap_complete::Shell;

fn shipped(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging").join(rel)
}

/// Every generated file: where it is shipped from, and what it must hold.
fn generated() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for mut cmd in [cachekeeper::cli::command(), cachekeeper::ctl::command()] {
        let name = cmd.get_name().to_owned();
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone()).render(&mut page).unwrap();
        files.push((shipped(&format!("man/{name}.1")), page));
        for (shell, file) in
            [(Shell::Bash, name.clone()), (Shell::Zsh, format!("_{name}")), (Shell::Fish, format!("{name}.fish"))]
        {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, &name, &mut script);
            files.push((shipped(&format!("completions/{shell}/{file}")), script));
        }
    }
    files
}

#[test]
fn man_pages_and_completions_match_the_command_line() {
    let regenerate = std::env::var_os("CK_REGENERATE").is_some();
    let mut stale = Vec::new();
    for (path, want) in generated() {
        if regenerate {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &want).unwrap();
        } else if std::fs::read(&path).ok().as_ref() != Some(&want) {
            stale.push(path.display().to_string());
        }
    }
    assert!(stale.is_empty(), "stale, regenerate with CK_REGENERATE=1 cargo nextest run --test docs: {stale:?}");
}

#[test]
fn the_man_pages_state_the_exit_codes_and_that_no_flag_runs_the_service() {
    let page = String::from_utf8(std::fs::read(shipped("man/cachekeeper.1")).unwrap()).unwrap();
    assert!(page.contains("runs the service") && page.contains("Exit codes"), "{page}");
    let page = String::from_utf8(std::fs::read(shipped("man/cachekeeperctl.1")).unwrap()).unwrap();
    assert!(page.contains("not running") && page.contains("socket_group"), "{page}");
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The README, then `docs/*.md` by name.
fn pages() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    std::iter::once(repo().join("README.md")).chain(docs).collect()
}

/// A fenced code block: where it starts (the page and the line of its opening fence),
/// its info string's words, and its text.
#[derive(Debug)]
struct Block {
    at: String,
    info: Vec<String>,
    text: String,
}

impl Block {
    /// GitHub highlights by the first word; `test` after it marks a block to run.
    fn marked(&self, lang: &str) -> bool {
        self.info.first().is_some_and(|l| l == lang) && self.info.iter().skip(1).any(|w| w == "test")
    }
}

fn blocks(page: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(page).unwrap();
    let name = page.strip_prefix(repo()).unwrap().display().to_string();
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                let info = info.split_whitespace().map(str::to_owned).collect();
                open = Some(Block { at: format!("{name}:{}", i + 1), info, text: String::new() });
            }
            (Some(_), Some("")) => out.push(open.take().unwrap()),
            (Some(b), _) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "{name}: a code block is not closed");
    out
}

fn marked(lang: &str) -> Vec<Block> {
    let found: Vec<Block> = pages().iter().flat_map(|p| blocks(p)).filter(|b| b.marked(lang)).collect();
    // Nothing marked would make the test pass by doing nothing.
    assert!(
        found.iter().any(|b| b.at.starts_with("README.md:")),
        "no ```{lang} test block in README.md: the README's examples would go untested"
    );
    found
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// A Go-shaped module cache with entries that diverge from the private model.
fn fill_cache(cache: &Path) {
    let at = |rel: &str| cache.join(rel);
    std::fs::create_dir_all(at("cache/download/example.com/x/@v")).unwrap();
    std::fs::create_dir_all(at("example.com/x@v1.0.0")).unwrap();
    std::fs::write(at("cache/download/example.com/x/@v/v1.0.0.zip"), "zip").unwrap();
    std::fs::set_permissions(at("cache/download/example.com/x/@v/v1.0.0.zip"), PermissionsExt::from_mode(0o600))
        .unwrap();
    std::fs::set_permissions(at("cache/download/example.com"), PermissionsExt::from_mode(0o700)).unwrap();
    std::fs::write(at("example.com/x@v1.0.0/go.mod"), "module example.com/x\n").unwrap();
    std::fs::set_permissions(at("example.com/x@v1.0.0/go.mod"), PermissionsExt::from_mode(0o444)).unwrap();
    std::fs::set_permissions(at("example.com/x@v1.0.0"), PermissionsExt::from_mode(0o555)).unwrap();
}

/// The README's shell examples, as a newcomer runs them: from the repository's root, in
/// order, in a fresh HOME whose Go module cache (found the way Go finds it, nothing
/// configured) was left broken. Afterwards that cache complies.
#[test]
fn readme_shell_examples_run_as_printed_and_leave_the_cache_compliant() {
    let blocks = marked("sh");
    let scratch = tempfile::Builder::new().prefix("ck-docs-").tempdir().unwrap();
    std::fs::set_permissions(scratch.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let home = scratch.path().join("home");
    let cache = home.join("go/pkg/mod");
    fill_cache(&cache);
    // cargo and rustup keep their state under the real HOME: keep it reachable.
    let real_home = PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()));
    let cargo_home = std::env::var_os("CARGO_HOME").map_or(real_home.join(".cargo"), PathBuf::from);
    let rustup_home = std::env::var_os("RUSTUP_HOME").map_or(real_home.join(".rustup"), PathBuf::from);
    // A test that lowers fs.protected_hardlinks makes --init refuse: not meanwhile.
    let _lock = common::sysctl_lock(false);
    for b in &blocks {
        let mut cmd = Command::new("bash");
        cmd.args(["-euo", "pipefail", "-c", &b.text])
            .current_dir(repo())
            .env("HOME", &home)
            .env("CARGO_HOME", &cargo_home)
            .env("RUSTUP_HOME", &rustup_home)
            // As printed: `./target/release/...` is where a plain `cargo build` puts it.
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CACHEKEEPER_CONFIG");
        for var in ["GOMODCACHE", "GOPATH", "GOENV", "GOFLAGS", "XDG_CONFIG_HOME", "SUDO_UID", "SUDO_GID", "SUDO_USER"]
        {
            cmd.env_remove(var);
        }
        let out = common::run(cmd, Duration::from_secs(30 * 60));
        assert!(
            out.status.success(),
            "{}: the README's example fails as printed ({}):\n{}\nstdout:\n{}\nstderr:\n{}",
            b.at,
            out.status,
            b.text,
            common::stdout(&out),
            common::stderr(&out)
        );
    }
    let check = common::cachekeeper(&["--check", "--path", cache.to_str().unwrap()], &[]);
    assert_eq!(
        common::code(&check),
        0,
        "the README's examples left the cache non-compliant: {}",
        common::stdout(&check)
    );
    assert_eq!(mode(&cache.join("cache/download/example.com")), 0o755, "the examples never repaired this cache");
    assert_eq!(mode(&cache.join("example.com/x@v1.0.0/go.mod")), 0o444, "Go's read-only files stay read-only");
}

/// A group that exists for the length of a test.
struct TempGroup(String);

impl TempGroup {
    fn new() -> TempGroup {
        let name = format!("ckdocs{}", std::process::id());
        let out = Command::new("groupadd").arg(&name).output().expect("groupadd runs");
        assert!(out.status.success(), "groupadd {name}: {}", String::from_utf8_lossy(&out.stderr));
        TempGroup(name)
    }
}

impl Drop for TempGroup {
    fn drop(&mut self) {
        let _ = Command::new("groupdel").arg(&self.0).output();
    }
}

/// Every configuration marked `toml test`, with its paths, groups and users made ones
/// that exist here: it validates, and `--init --config` then `--check` succeed on it.
#[test]
fn root_readme_configurations_validate_and_keep_a_scratch_cache() {
    common::require_root();
    let blocks = marked("toml");
    let group = TempGroup::new();
    for b in &blocks {
        let scratch = tempfile::Builder::new().prefix("ck-docs-").tempdir().unwrap();
        std::fs::set_permissions(scratch.path(), PermissionsExt::from_mode(0o755)).unwrap();
        let mut doc: toml::Table =
            toml::from_str(&b.text).unwrap_or_else(|e| panic!("{}: not TOML: {e}\n{}", b.at, b.text));
        let mut roots = Vec::new();
        if let Some(toml::Value::Array(caches)) = doc.get_mut("cache") {
            for (i, c) in caches.iter_mut().enumerate() {
                let t = c.as_table_mut().unwrap_or_else(|| panic!("{}: [[cache]] is not a table", b.at));
                let root = scratch.path().join(format!("cache{i}/mod"));
                fill_cache(&root);
                t.insert("path".into(), root.to_str().unwrap().into());
                if t.contains_key("group") {
                    t.insert("group".into(), group.0.clone().into());
                }
                if t.contains_key("owner") {
                    t.insert("owner".into(), "nobody".into());
                }
                roots.push(root);
            }
        }
        if let Some(toml::Value::Table(d)) = doc.get_mut("daemon") {
            for (key, file) in
                [("socket", "control.sock"), ("audit_log", "audit.jsonl"), ("metrics_textfile", "ck.prom")]
            {
                if d.contains_key(key) {
                    d.insert(key.into(), scratch.path().join(file).to_str().unwrap().into());
                }
            }
            if d.contains_key("socket_group") {
                d.insert("socket_group".into(), group.0.clone().into());
            }
            if d.contains_key("user") {
                d.insert("user".into(), "nobody".into());
            }
        }
        assert!(!roots.is_empty(), "{}: a configuration without a [[cache]]", b.at);
        let text = toml::to_string(&doc).unwrap();
        let file = scratch.path().join("config.toml");
        std::fs::write(&file, &text).unwrap();
        if let Err(e) = cachekeeper::config::Config::parse(&file, &text) {
            panic!("{}: the README's configuration does not validate: {e}\n{}", b.at, b.text);
        }
        for mode in ["--init", "--check"] {
            let out = common::cachekeeper(&[mode, "--config", file.to_str().unwrap()], &[]);
            assert_eq!(
                common::code(&out),
                0,
                "{}: cachekeeper {mode} --config with the README's configuration:\n{}\n{}{}",
                b.at,
                text,
                common::stdout(&out),
                common::stderr(&out)
            );
        }
        for root in &roots {
            assert_ne!(mode(&root.join("cache/download/example.com")), 0o700, "{}: {root:?} was not kept", b.at);
        }
    }
}

/// GitHub's anchor for a heading: lower case, punctuation but `-` and `_` dropped,
/// spaces made `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a page's headings (outside code blocks), with GitHub's `-1`, `-2`
/// for repeats.
fn anchors(page: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(page).unwrap_or_default();
    let mut seen: Vec<String> = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let base = slug(line.trim_start_matches('#'));
        let n = seen
            .iter()
            .filter(|s| **s == base || s.strip_prefix(&format!("{base}-")).is_some_and(|r| r.parse::<u32>().is_ok()))
            .count();
        seen.push(if n == 0 { base } else { format!("{base}-{n}") });
    }
    seen
}

#[test]
fn readme_and_docs_links_and_anchors_lead_somewhere() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let name = page.strip_prefix(repo()).unwrap().display().to_string();
        let mut fenced = false;
        for line in text.lines() {
            if line.starts_with("```") {
                fenced = !fenced;
            }
            if fenced {
                continue;
            }
            for part in line.split("](").skip(1) {
                let Some(target) = part.split(')').next() else { continue };
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
                let dest = if file.is_empty() { page.clone() } else { page.parent().unwrap().join(file) };
                if !dest.exists() {
                    broken.push(format!("{name}: {target}: no such file"));
                } else if !anchor.is_empty() && !anchors(&dest).iter().any(|a| a == anchor) {
                    broken.push(format!("{name}: {target}: no such heading"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
