//! Names are bytes, not UTF-8: how relative paths are joined, and how they are shown
//! in logs and summaries without letting a newline or a terminal escape through.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// `parent/name`, or `name` when `parent` is the cache root (empty).
pub(crate) fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut rel = Vec::with_capacity(parent.len() + 1 + name.len());
    if !parent.is_empty() {
        rel.extend_from_slice(parent);
        rel.push(b'/');
    }
    rel.extend_from_slice(name);
    rel
}

/// The parent part of a relative path (`a/b` of `a/b/c`; empty for `c`).
pub(crate) fn parent(rel: &[u8]) -> &[u8] {
    rel.iter().rposition(|&b| b == b'/').map_or(&[][..], |i| &rel[..i])
}

/// Shows a byte path: valid printable UTF-8 as it is, `\n`, `\t`, `\\` and other
/// control characters escaped, invalid bytes as `\xNN`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '\n' => f.write_str("\\n")?,
                    '\t' => f.write_str("\\t")?,
                    '\r' => f.write_str("\\r")?,
                    c if c.is_control() => write!(f, "\\u{{{:x}}}", c as u32)?,
                    c => write!(f, "{c}")?,
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// The full path of an entry for display: the cache root, then the relative path.
pub(crate) fn display(root: &Path, rel: &[u8]) -> String {
    let root = root.as_os_str().as_encoded_bytes();
    if rel.is_empty() {
        Escaped(root).to_string()
    } else {
        let sep = if root.ends_with(b"/") { "" } else { "/" };
        format!("{}{sep}{}", Escaped(root), Escaped(rel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_characters_and_invalid_utf8() {
        assert_eq!(Escaped(b"a\nb").to_string(), "a\\nb");
        assert_eq!(Escaped(b"caf\xc3\xa9").to_string(), "café");
        assert_eq!(Escaped(b"bad\xff").to_string(), "bad\\xff");
        assert_eq!(Escaped(b"esc\x1b[31m").to_string(), "esc\\u{1b}[31m");
        assert_eq!(Escaped(b"back\\slash").to_string(), "back\\\\slash");
    }

    #[test]
    fn joins_relative_paths() {
        assert_eq!(join(b"", b"a"), b"a");
        assert_eq!(join(b"a/b", b"c"), b"a/b/c");
        assert_eq!(parent(b"a/b/c"), b"a/b");
        assert_eq!(parent(b"c"), b"");
        assert_eq!(display(Path::new("/m"), b""), "/m");
        assert_eq!(display(Path::new("/m"), b"x/y"), "/m/x/y");
    }
}

/// User and group names for ids, looked up once each.
#[derive(Debug, Default)]
pub(crate) struct Names {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Names {
    pub(crate) fn user(&mut self, uid: u32) -> String {
        self.users
            .entry(uid)
            .or_insert_with(|| match nix::unistd::User::from_uid(uid.into()) {
                Ok(Some(u)) => u.name,
                _ => uid.to_string(),
            })
            .clone()
    }

    pub(crate) fn group(&mut self, gid: u32) -> String {
        self.groups
            .entry(gid)
            .or_insert_with(|| match nix::unistd::Group::from_gid(gid.into()) {
                Ok(Some(g)) => g.name,
                _ => gid.to_string(),
            })
            .clone()
    }

    /// `owner root→alice, mode 0644→0664`: only what changes, with names where they exist.
    pub(crate) fn divergence(&mut self, d: &crate::policy::model::Divergence) -> String {
        let mut parts = Vec::with_capacity(3);
        if d.owner() {
            parts.push(format!("owner {}→{}", self.user(d.from.uid), self.user(d.to.uid)));
        }
        if d.group() {
            parts.push(format!("group {}→{}", self.group(d.from.gid), self.group(d.to.gid)));
        }
        if d.mode() {
            parts.push(format!("mode {:04o}→{:04o}", d.from.mode, d.to.mode));
        }
        if d.drop_access_acl {
            parts.push(crate::policy::model::DROPPED_ACL.to_owned());
        }
        if d.set_default_acl {
            parts.push("default ACL→the model's".to_owned());
        }
        parts.join(", ")
    }
}
