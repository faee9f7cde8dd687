//! macOS extended ACLs as `acl_to_text(3)` writes them, parsed without I/O so that the
//! parsing is tested on every platform (the calls that read and clear them are in
//! `sys`, macOS only). The text is a header line and one line per entry:
//!
//! ```text
//! !#acl 1
//! group:ABCDEFAB-CDEF-ABCD-EFAB-CDEF0000000C:everyone:12:deny:delete
//! user:FFFFEEEE-DDDD-CCCC-BBBB-AAAA000001F5:alice:501:allow,inherited:read,write,file_inherit
//! ```
//!
//! that is `tag:uuid:name:id:kind:permissions`, where name or id may be empty. SPEC §1: a
//! `deny` entry on a cache entry is a divergence (it blocks what the model grants, most
//! often `delete` to `everyone` after a Time Machine restore), and the repair removes the
//! extended ACL through the pinned descriptor.

/// One access control entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ace {
    /// `user` or `group`.
    pub tag: String,
    /// The user or group name, or its uuid when the name is unknown.
    pub name: String,
    pub id: Option<u32>,
    pub deny: bool,
    /// `read`, `write`, `delete`, ... and the inheritance flags.
    pub perms: Vec<String>,
}

impl Ace {
    /// As `ls -le` shows it: `group:everyone deny delete`.
    pub(crate) fn describe(&self) -> String {
        format!("{}:{} {} {}", self.tag, self.name, if self.deny { "deny" } else { "allow" }, self.perms.join(","))
    }
}

/// The entries of an `acl_to_text` string; lines that are not entries (the header,
/// blank lines, anything unknown) are skipped.
pub(crate) fn parse(text: &str) -> Vec<Ace> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Ace> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('!') || line.starts_with('#') {
        return None;
    }
    // Names cannot hold ':', but split from both ends anyway so that the fixed fields
    // stay right if one ever does.
    let (tag, rest) = line.split_once(':')?;
    if tag != "user" && tag != "group" {
        return None;
    }
    let (uuid, rest) = rest.split_once(':')?;
    let mut back = rest.rsplitn(4, ':');
    let perms = back.next()?;
    let kind = back.next()?;
    let id = back.next()?;
    let name = back.next()?;
    let deny = kind.split(',').any(|k| k == "deny");
    if !deny && !kind.split(',').any(|k| k == "allow") {
        return None;
    }
    Some(Ace {
        tag: tag.to_owned(),
        name: if name.is_empty() { uuid.to_owned() } else { name.to_owned() },
        id: id.parse().ok(),
        deny,
        perms: perms.split(',').filter(|p| !p.is_empty()).map(str::to_owned).collect(),
    })
}

/// The `deny` entries: each one diverges from the model.
pub(crate) fn denies(text: &str) -> Vec<Ace> {
    parse(text).into_iter().filter(|a| a.deny).collect()
}

/// Whether a `deny` entry applies to `uid` or to one of `groups`: `everyone` (gid 12 on
/// macOS) applies to all; an entry without an id is assumed to apply.
pub(crate) fn blocks(ace: &Ace, uid: u32, groups: &[u32]) -> bool {
    match (ace.tag.as_str(), ace.id) {
        (_, _) if ace.name == "everyone" => true,
        ("user", Some(id)) => id == uid,
        ("group", Some(id)) => groups.contains(&id),
        _ => true,
    }
}

/// Whether a `deny` entry takes away part of `need` (the `rwx` bits of an access):
/// macOS splits them into finer permissions.
pub(crate) fn takes_away(ace: &Ace, need: u32) -> bool {
    ace.perms.iter().any(|p| match p.as_str() {
        "read" | "list" | "readattr" | "readextattr" | "readsecurity" => need & 0o4 != 0,
        "write" | "append" | "add_file" | "add_subdirectory" | "delete_child" | "delete" | "writeattr"
        | "writeextattr" => need & 0o2 != 0,
        "execute" | "search" => need & 0o1 != 0,
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESTORED: &str = "!#acl 1\n\
        group:ABCDEFAB-CDEF-ABCD-EFAB-CDEF0000000C:everyone:12:deny:delete\n\
        user:FFFFEEEE-DDDD-CCCC-BBBB-AAAA000001F5:alice:501:allow,inherited:read,write,file_inherit\n";

    #[test]
    fn entries_are_parsed_and_deny_ones_named_as_ls_shows_them() {
        let all = parse(RESTORED);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].describe(), "group:everyone deny delete");
        assert_eq!(all[0].id, Some(12));
        assert!(!all[1].deny);
        assert_eq!(all[1].perms, ["read", "write", "file_inherit"]);
        let deny = denies(RESTORED);
        assert_eq!(deny.len(), 1);
        assert!(blocks(&deny[0], 501, &[20]), "everyone blocks every user");
    }

    #[test]
    fn a_deny_entry_blocks_only_its_user_or_group() {
        let text = "!#acl 1\nuser:UUID:bob:502:deny:write\ngroup:UUID:staff:20:deny:add_file,delete_child\n";
        let d = denies(text);
        assert_eq!(d[1].describe(), "group:staff deny add_file,delete_child");
        assert!(blocks(&d[0], 502, &[]));
        assert!(!blocks(&d[0], 501, &[20]));
        assert!(blocks(&d[1], 501, &[20]));
        assert!(!blocks(&d[1], 501, &[80]));
        assert!(takes_away(&d[1], 0o2));
        assert!(!takes_away(&d[1], 0o4), "deny add_file does not take reading away");
    }

    #[test]
    fn an_unknown_name_shows_its_uuid_and_garbage_is_skipped() {
        let text = "!#acl 1\ngroup:ABCDEFAB-0000:::deny:delete\nnonsense\nuser:x:y\n\n";
        let d = denies(text);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].describe(), "group:ABCDEFAB-0000 deny delete");
        assert_eq!(d[0].id, None);
        assert!(parse("").is_empty());
    }
}
