//! The error every layer shares: a system call that failed on a path, with what it was
//! doing. Each layer keeps its own enum of causes (`SideFileError`, `RootError`, ...) for
//! callers that branch; this is the variant they wrap when the cause is the system's.

use std::path::PathBuf;

/// "cannot open /run/cachekeeper/control.sock: Permission denied": the action, the path
/// and the error, in one line a person can act on; the errno for callers that branch.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {}", path.display(), crate::sys::describe(source))]
pub(crate) struct IoPathError {
    /// What was being done, as a verb phrase: "open", "create the temporary file of".
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl IoPathError {
    pub(crate) fn new(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> IoPathError {
        IoPathError { action, path: path.into(), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_with_the_action_the_path_and_the_cause() {
        let e = IoPathError::new("open", "/run/x.sock", std::io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(e.to_string(), "cannot open /run/x.sock: Permission denied");
        assert_eq!(e.source.raw_os_error(), Some(libc::EACCES));
    }
}
