//! Go's first use of a toolchain tree, done by the walk for every member once the
//! download is complete (see [`Walker::first_use`]).

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::*;

/// The directory `rel` below `dir`, each component opened without following a symlink.
fn open_below(dir: BorrowedFd<'_>, rel: &[u8]) -> Option<OwnedFd> {
    let mut fd: Option<OwnedFd> = None;
    for c in rel.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        let c = CString::new(c).ok()?;
        let at = fd.as_ref().map_or(dir, |f| f.as_fd());
        fd = Some(sys::open_dir_at(at, &c).ok()?);
    }
    match fd {
        Some(fd) => Some(fd),
        None => sys::open_dir_at(dir, c".").ok(),
    }
}

/// Whether every file below `dir` (but `except`, in `dir` itself) has all its
/// execute bits: what Go's first use leaves before it makes `bin/go` executable.
fn all_executable(dir: BorrowedFd<'_>, except: Option<&CStr>) -> bool {
    let mut ok = true;
    let mut subdirs = Vec::new();
    let listed = sys::read_dir(dir, |name, _| {
        if Some(name) == except {
            return;
        }
        match sys::stat_at(dir, name) {
            Ok(st) if st.file_type == FileType::Dir => subdirs.push(name.to_owned()),
            Ok(st) if st.file_type == FileType::File => ok &= st.mode & 0o111 == 0o111,
            Ok(_) => {}
            Err(_) => ok = false,
        }
    });
    ok && listed.is_ok()
        && subdirs.iter().all(|d| sys::open_dir_at(dir, d).is_ok_and(|fd| all_executable(fd.as_fd(), None)))
}

impl Walker<'_> {
    /// Go's first use of the toolchain tree `rel` (open as `fd`), done for every member
    /// once the download is complete, so that no member's first use has anything left
    /// to change (a member who does not own the tree could not: Go chmods and creates
    /// files there). Follows `Exec` in cmd/go/internal/toolchain/select.go (Go 1.21 to
    /// 1.23): the execute bits of `pkg/tool/**` and `bin/**` with `bin/go` last (its
    /// execute bit tells later go commands the step is done), then every `_go.mod`
    /// copied to `go.mod` beside it with `src/go.mod` last (the same sign for that
    /// step). The `_go.mod` names exist since the toolchain zips of Go 1.21
    /// (golang/go#60847: a module zip may hold no nested go.mod).
    pub(super) fn first_use(&self, fd: BorrowedFd<'_>, rel: &[u8], version: &[u8]) {
        let go_mods: Vec<Vec<u8>> = {
            let mut all = self.go_mods.lock().unwrap_or_else(|p| p.into_inner());
            let (mine, others) = all.drain(..).partition(|m| m.starts_with(rel) && m.get(rel.len()) == Some(&b'/'));
            *all = others;
            mine
        };
        if !self.download_complete(version) {
            return;
        }
        let bin = CString::new("bin").ok().and_then(|b| sys::open_dir_at(fd, &b).ok());
        if let Some(bin) = bin {
            let tools = sys::open_dir_at(fd, c"pkg").and_then(|pkg| sys::open_dir_at(pkg.as_fd(), c"tool"));
            let ready =
                tools.is_ok_and(|t| all_executable(t.as_fd(), None)) && all_executable(bin.as_fd(), Some(c"go"));
            if ready {
                self.make_go_executable(bin.as_fd(), &names::join(rel, b"bin"));
            }
        }
        let inside = |m: &[u8]| m[rel.len() + 1..].to_vec();
        let mut go_mods: Vec<Vec<u8>> = go_mods.iter().map(|m| inside(m)).collect();
        go_mods.sort();
        // src/go.mod last: Go skips the whole step when it exists with _go.mod's size.
        go_mods.sort_by_key(|m| m.as_slice() == b"src/_go.mod");
        for m in go_mods {
            let shown = names::join(rel, &m);
            let Some(dir) = open_below(fd, names::parent(&m)) else { continue };
            match repair::copy_go_mod(dir.as_fd()) {
                Ok(true) => Tally::bump(&self.tally.changed),
                Ok(false) => {}
                Err(e) if vanished(&e) => {}
                Err(e) => self.fail(shown, Failure::new("cannot copy _go.mod to go.mod (Go's first use)", &e)),
            }
        }
    }

    /// Go considers a module tree complete when its `.ziphash` exists and its
    /// `.partial` does not (cmd/go/internal/modfetch/fetch.go, `download`).
    pub(super) fn download_complete(&self, version: &[u8]) -> bool {
        let Some(at) = open_below(self.pinned_root.fd(), b"cache/download/golang.org/toolchain/@v") else {
            return false;
        };
        let marker = |ext: &str| CString::new([version, ext.as_bytes()].concat()).ok();
        let (Some(partial), Some(ziphash)) = (marker(".partial"), marker(".ziphash")) else { return false };
        sys::stat_at(at.as_fd(), &partial).is_err_and(|e| vanished(&e))
            && sys::stat_at(at.as_fd(), &ziphash).is_ok_and(|st| st.file_type == FileType::File)
    }

    pub(super) fn make_go_executable(&self, bin: BorrowedFd<'_>, bin_rel: &[u8]) {
        let rel = names::join(bin_rel, b"go");
        let Ok(pin) = sys::pin_at(bin, c"go") else { return };
        let Ok(st) = sys::stat_fd(pin.as_fd()) else { return };
        match self.classify(&st) {
            Ok(Kind::File) => {}
            Ok(Kind::Dir) => return,
            Err(reason) => return self.report(rel, reason),
        }
        if let Some(d) = self.divergence(Kind::File, &st, Place::ToolGo) {
            self.settle(pin.as_fd(), &rel, d, Place::ToolGo);
        }
    }
}
