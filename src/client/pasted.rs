//! An error line as Go (or git under Go) printed it, pasted into `cachekeeperctl explain`:
//! which path and which access it was about, or that it is not about permissions at all.
//! Pure: the caller explains the path.

use std::path::PathBuf;

use crate::client::explain::Access;

/// What a pasted line asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pasted {
    /// A permission error at `path`: judge `access` there (`None`: what Go needs there, or
    /// creating it when it does not exist). `note` says what Go was doing.
    Path { path: PathBuf, access: Option<Access>, note: String },
    /// git refused a repository that another user owns ("dubious ownership").
    Dubious { path: PathBuf },
    /// Not about permissions: one line that says so, and what usually fixes it.
    NotPermissions(&'static str),
}

/// System calls Go names in its errors, and what the failure of each asks of the path.
/// Removing an entry needs write and search on its directory, as creating one does.
const OPS: [(&str, Op); 11] = [
    ("mkdir", Op::Create),
    ("mkdirat", Op::Create),
    ("open", Op::AsGoNeeds),
    ("openat", Op::AsGoNeeds),
    ("unlinkat", Op::RemoveFrom),
    ("remove", Op::RemoveFrom),
    ("rename", Op::RemoveFrom),
    ("chmod", Op::Chmod),
    ("chtimes", Op::Chmod),
    ("lstat", Op::AsGoNeeds),
    ("stat", Op::AsGoNeeds),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    AsGoNeeds,
    RemoveFrom,
    Chmod,
}

/// Errors that are not about permissions, by a phrase they carry, and the usual fix.
const OTHERS: [(&str, &str); 9] = [
    ("dial tcp", NETWORK),
    ("no such host", NETWORK),
    ("connection refused", NETWORK),
    ("i/o timeout", NETWORK),
    ("tls: ", NETWORK),
    ("checksum mismatch", CHECKSUM),
    ("security error", CHECKSUM),
    ("unknown revision", VERSION),
    ("no matching versions", VERSION),
];

const NETWORK: &str = "a network error, not a permission one: cachekeeper cannot fix it; check GOPROXY (`go env \
     GOPROXY`), DNS, the proxy settings and the connection";
const CHECKSUM: &str = "a checksum mismatch, not a permission error: cachekeeper cannot fix it; the download differs \
     from go.sum or the checksum database: check GOPROXY and GONOSUMDB, and `go clean -modcache` the module only if \
     you trust the source";
const VERSION: &str = "the module or version does not exist where Go looked, not a permission error: cachekeeper \
     cannot fix it; check the module path and version, and GOPRIVATE/GOPROXY for private modules";

/// Reads a pasted line; `None` when `arg` is a plain path, not an error line.
pub(crate) fn parse(arg: &str) -> Option<Pasted> {
    let line = arg.trim();
    if line.starts_with('/') && !line.contains(": ") {
        return None;
    }
    if let Some(at) = line.find("dubious ownership in repository at '") {
        let rest = &line[at + "dubious ownership in repository at '".len()..];
        let path = rest.split('\'').next().unwrap_or(rest);
        return Some(Pasted::Dubious { path: PathBuf::from(path) });
    }
    let lower = line.to_ascii_lowercase();
    if let Some((_, why)) = OTHERS.iter().find(|(phrase, _)| lower.contains(phrase)) {
        return Some(Pasted::NotPermissions(why));
    }
    // The last `<op> /path: <error>` of the line: Go wraps the system call's error in its
    // own context ("go: writing stat cache: open /x: permission denied").
    let mut found = None;
    for (op, kind) in OPS {
        let needle = format!("{op} /");
        let mut from = 0;
        while let Some(i) = line[from..].find(&needle) {
            let start = from + i;
            let at_word = start == 0 || !line.as_bytes()[start - 1].is_ascii_alphanumeric();
            if at_word && found.is_none_or(|(s, _, _)| start > s) {
                found = Some((start, op, kind));
            }
            from = start + needle.len();
        }
    }
    let Some((start, op, kind)) = found else {
        return Some(Pasted::NotPermissions(
            "no path in this line that explain could judge: pass the path itself, or the line with Go's `open`, \
             `mkdir` or `unlinkat` and the path",
        ));
    };
    let rest = &line[start + op.len() + 1..];
    // The path ends where the error begins (`: permission denied`), or at a second path
    // (`rename /a /b: ...`, judged in the directory of the first).
    let end = rest.find(": ").unwrap_or(rest.len());
    let path = rest[..end].split(" /").next().unwrap_or(&rest[..end]);
    let path = PathBuf::from(path);
    let parent = path.parent().map(PathBuf::from).unwrap_or_else(|| path.clone());
    Some(match kind {
        Op::Create => Pasted::Path { path, access: None, note: format!("Go could not create it ({op})") },
        Op::AsGoNeeds => Pasted::Path { path, access: None, note: format!("Go could not use it ({op})") },
        Op::RemoveFrom => Pasted::Path {
            path: parent,
            access: Some(Access::Create),
            note: format!("Go could not remove or rename an entry in this directory ({op})"),
        },
        Op::Chmod => Pasted::Path {
            path,
            access: None,
            note: format!(
                "Go tried to change it ({op}), which only its owner may do: cachekeeper's model gives the \
                 execute and write bits Go would add, so that no member's use has anything left to change"
            ),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str, access: Option<Access>) -> (PathBuf, Option<Access>) {
        (PathBuf::from(p), access)
    }

    fn judged(line: &str) -> (PathBuf, Option<Access>) {
        match parse(line) {
            Some(Pasted::Path { path, access, .. }) => (path, access),
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn go_error_lines_name_the_path_and_the_access() {
        let stat_cache = "go: writing stat cache: open /var/cache/go/mod/cache/download/example.com/lib/@v/\
                          v1.1.0.info1234.tmp: permission denied";
        assert_eq!(
            judged(stat_cache),
            path("/var/cache/go/mod/cache/download/example.com/lib/@v/v1.1.0.info1234.tmp", None)
        );
        assert_eq!(
            judged("go: example.com/lib@v1.1.0: mkdir /var/cache/go/mod/cache/download/example.com: permission denied"),
            path("/var/cache/go/mod/cache/download/example.com", None)
        );
        assert_eq!(
            judged("go: unlinkat /var/cache/go/mod/cache/lock: permission denied"),
            path("/var/cache/go/mod/cache", Some(Access::Create))
        );
        assert_eq!(
            judged("failed to initialize build cache at /.cache/go-build: mkdir /.cache: permission denied"),
            path("/.cache", None)
        );
        assert_eq!(
            judged("go: rename /m/cache/download/x/@v/v1.zip1234.tmp /m/cache/download/x/@v/v1.zip: permission denied"),
            path("/m/cache/download/x/@v", Some(Access::Create))
        );
        assert_eq!(
            judged("chmod /m/golang.org/toolchain@v0.0.1-go1.22.0.linux-amd64/pkg/tool/linux_amd64/vet: operation not permitted"),
            path("/m/golang.org/toolchain@v0.0.1-go1.22.0.linux-amd64/pkg/tool/linux_amd64/vet", None)
        );
    }

    #[test]
    fn a_plain_path_is_not_a_pasted_line() {
        assert_eq!(parse("/var/cache/go/mod/cache"), None);
        assert_eq!(parse("  /var/cache/go/mod  "), None);
    }

    #[test]
    fn git_refusing_a_clone_is_named_as_such() {
        let line = "fatal: detected dubious ownership in repository at '/m/cache/vcs/0a1b'";
        assert_eq!(parse(line), Some(Pasted::Dubious { path: PathBuf::from("/m/cache/vcs/0a1b") }));
    }

    #[test]
    fn errors_about_something_else_say_so_in_one_line() {
        for (line, want) in [
            ("go: example.com/x@v1.0.0: Get \"https://proxy.golang.org/x\": dial tcp: lookup proxy.golang.org: no such host", NETWORK),
            ("verifying example.com/x@v1.0.0: checksum mismatch", CHECKSUM),
            ("go: example.com/x@v9.9.9: invalid version: unknown revision v9.9.9", VERSION),
        ] {
            assert_eq!(parse(line), Some(Pasted::NotPermissions(want)), "{line}");
            assert!(!want.contains('\n'));
        }
        assert!(matches!(parse("something else entirely"), Some(Pasted::NotPermissions(_))));
    }
}
