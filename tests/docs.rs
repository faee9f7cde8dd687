//! Man pages and shell completions are generated from the command-line definitions and
//! committed under `packaging/`, where the packages install them from. This test fails
//! when they are stale; `CK_REGENERATE=1 cargo nextest run --test docs` rewrites them.

use std::path::{Path, PathBuf};

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
