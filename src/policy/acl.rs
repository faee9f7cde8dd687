//! POSIX ACLs as Linux stores them in the `system.posix_acl_access` and
//! `system.posix_acl_default` xattrs, and what the owner model makes of them (SPEC §1,
//! "Inheritance"). Pure: no I/O; `sys` reads and writes the bytes, `walk` decides with
//! this module.
//!
//! Why a *minimal* default ACL (`u::`, `g::`, `o::`, no mask): when a directory has a
//! default ACL the kernel ignores the creator's umask and gives a new entry the
//! creator's mode argument masked by that ACL. A minimal ACL is equivalent to a mode,
//! so the kernel stores no access ACL on the new entry (`posix_acl_create_masq`): Go's
//! `0666` file becomes `0664`, its `0777` directory `2775` (it also inherits the default
//! ACL), its `0444` file stays `0444` — and the entry's mode stays the whole truth, so
//! Go's own `chmod` to read-only keeps working and a compliant file costs the checker
//! nothing beyond its `statx`. With a mask entry every new entry would carry an access
//! ACL whose mask is the creator's mode argument, a second place to keep in step.

use std::ffi::CStr;

pub(crate) const ACCESS: &CStr = c"system.posix_acl_access";
pub(crate) const DEFAULT: &CStr = c"system.posix_acl_default";

/// `POSIX_ACL_XATTR_VERSION`: the only version the kernel reads or writes.
pub(crate) const VERSION: u32 = 2;
pub(crate) const USER_OBJ: u16 = 0x01;
pub(crate) const USER: u16 = 0x02;
pub(crate) const GROUP_OBJ: u16 = 0x04;
pub(crate) const GROUP: u16 = 0x08;
pub(crate) const MASK: u16 = 0x10;
pub(crate) const OTHER: u16 = 0x20;
/// The id of entries that name no one (`ACL_UNDEFINED_ID`).
pub(crate) const UNDEFINED_ID: u32 = u32::MAX;

/// One entry: `tag`, permission bits (`rwx` = 4|2|1) and, for named entries, a uid or gid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub tag: u16,
    pub perm: u16,
    pub id: u32,
}

/// A decoded ACL, entries in the kernel's order (by tag, then id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    pub entries: Vec<Entry>,
}

/// Bytes that are not a version-2 POSIX ACL.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("ACL xattr shorter than its header")]
    Short,
    #[error("ACL xattr version {0}, expected 2")]
    Version(u32),
    #[error("ACL xattr of {0} bytes is not a header plus whole entries")]
    Length(usize),
}

impl Acl {
    /// The little-endian layout of `include/uapi/linux/posix_acl_xattr.h`: a `u32`
    /// version, then entries of `u16` tag, `u16` perm, `u32` id.
    pub fn decode(bytes: &[u8]) -> Result<Acl, DecodeError> {
        let header = bytes.get(..4).ok_or(DecodeError::Short)?;
        let version = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let body = &bytes[4..];
        if body.len() % 8 != 0 {
            return Err(DecodeError::Length(bytes.len()));
        }
        let entries = body
            .chunks_exact(8)
            .map(|e| Entry {
                tag: u16::from_le_bytes([e[0], e[1]]),
                perm: u16::from_le_bytes([e[2], e[3]]),
                id: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            })
            .collect();
        Ok(Acl { entries })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 8 * self.entries.len());
        out.extend_from_slice(&VERSION.to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.tag.to_le_bytes());
            out.extend_from_slice(&e.perm.to_le_bytes());
            out.extend_from_slice(&e.id.to_le_bytes());
        }
        out
    }

    /// The three-entry ACL equivalent to the permission bits of `mode`.
    pub fn minimal(mode: u32) -> Acl {
        let e = |tag, shift: u32| Entry { tag, perm: ((mode >> shift) & 0o7) as u16, id: UNDEFINED_ID };
        Acl { entries: vec![e(USER_OBJ, 6), e(GROUP_OBJ, 3), e(OTHER, 0)] }
    }

    /// The permission of the first entry with `tag`.
    pub fn perm(&self, tag: u16) -> Option<u32> {
        self.entries.iter().find(|e| e.tag == tag).map(|e| u32::from(e.perm))
    }

    /// Entries that name a user or a group: access the mode bits cannot express.
    pub fn named(&self) -> usize {
        self.entries.iter().filter(|e| e.tag == USER || e.tag == GROUP).count()
    }

    /// `u::rwx,g::rwx,o::r-x` (with `m::` when there is a mask), as getfacl writes it.
    pub fn text(&self) -> String {
        let rwx = |p: u16| {
            let f = |b: u16, c: char| if p & b != 0 { c } else { '-' };
            format!("{}{}{}", f(4, 'r'), f(2, 'w'), f(1, 'x'))
        };
        let parts: Vec<String> = self
            .entries
            .iter()
            .map(|e| match e.tag {
                USER_OBJ => format!("u::{}", rwx(e.perm)),
                USER => format!("u:{}:{}", e.id, rwx(e.perm)),
                GROUP_OBJ => format!("g::{}", rwx(e.perm)),
                GROUP => format!("g:{}:{}", e.id, rwx(e.perm)),
                MASK => format!("m::{}", rwx(e.perm)),
                OTHER => format!("o::{}", rwx(e.perm)),
                t => format!("tag{t:#x}:{}:{}", e.id, rwx(e.perm)),
            })
            .collect();
        parts.join(",")
    }
}

/// Why an access ACL diverges from the owner model, or `None` when it says nothing the
/// mode bits do not. The mode bits themselves are checked by the mode table: for an
/// entry with an access ACL the group bits of `st_mode` *are* the mask, so a mask that
/// denies the group what the model gives already shows as a mode divergence, and
/// `chmod` fixes it.
pub(crate) fn access_divergence(acl: &Acl) -> Option<&'static str> {
    if acl.named() > 0 {
        // Named users and groups are access the model never gives.
        return Some("names users or groups beyond the owner model");
    }
    match (acl.perm(GROUP_OBJ), acl.perm(MASK)) {
        // The owning group's own entry differs from the mask the mode shows: it would
        // grant (after a chmod widens the mask) or withhold what the mode bits say.
        (Some(g), Some(m)) if g != m => Some("gives the owning group other access than its mode bits"),
        _ => None,
    }
}

/// Whether an access ACL on an entry whose mode is `now` (and, after any repair, `to`)
/// could give anyone more than the model does. With an access ACL, everyone but the
/// owner is judged by entries the mask caps, and the mask is the mode's group bits. Where
/// those are within what every other user already has — Go's `0444` files and `0555`
/// directories with `other = "read"` — no entry can grant anything beyond that, so a full
/// walk need not read the ACL (which doubles the syscalls per file). What such an ACL can
/// still do is deny the owning group its read; that takes a deliberate `setfacl`, whose
/// attribute change the service checks with the ACL read.
pub(crate) fn could_grant_more(now: u32, to: u32) -> bool {
    let group_class = ((now | to) >> 3) & 0o7;
    let everyone = now & to & 0o7;
    group_class & !everyone != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `setfacl -d -m u::rwx,g::rwx,o::rx DIR; getfattr -e hex -n system.posix_acl_default DIR`
    /// on Linux 6.18, ext4.
    const SETFACL_DEFAULT: &str = "0200000001000700ffffffff04000700ffffffff20000500ffffffff";

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn minimal_acl_encodes_as_setfacl_writes_it() {
        let acl = Acl::minimal(0o775);
        assert_eq!(hex(&acl.encode()), SETFACL_DEFAULT);
        assert_eq!(acl.text(), "u::rwx,g::rwx,o::r-x");
    }

    #[test]
    fn decode_is_the_inverse_of_encode() {
        let acl = Acl {
            entries: vec![
                Entry { tag: USER_OBJ, perm: 7, id: UNDEFINED_ID },
                Entry { tag: USER, perm: 6, id: 1001 },
                Entry { tag: GROUP_OBJ, perm: 5, id: UNDEFINED_ID },
                Entry { tag: GROUP, perm: 4, id: 3000 },
                Entry { tag: MASK, perm: 7, id: UNDEFINED_ID },
                Entry { tag: OTHER, perm: 0, id: UNDEFINED_ID },
            ],
        };
        assert_eq!(Acl::decode(&acl.encode()), Ok(acl.clone()));
        assert_eq!(acl.text(), "u::rwx,u:1001:rw-,g::r-x,g:3000:r--,m::rwx,o::---");
        assert_eq!(acl.named(), 2);
    }

    #[test]
    fn malformed_xattrs_are_errors_not_panics() {
        assert_eq!(Acl::decode(&[]), Err(DecodeError::Short));
        assert_eq!(Acl::decode(&[2, 0, 0]), Err(DecodeError::Short));
        assert_eq!(Acl::decode(&[1, 0, 0, 0]), Err(DecodeError::Version(1)));
        assert_eq!(Acl::decode(&[2, 0, 0, 0, 1, 0, 7]), Err(DecodeError::Length(7)));
        assert_eq!(Acl::decode(&[2, 0, 0, 0]), Ok(Acl { entries: vec![] }));
        for len in 0..64 {
            let _ = Acl::decode(&vec![2u8; len]);
        }
    }

    #[test]
    fn the_mask_is_what_the_group_bits_show() {
        // u::rw-,g::rw-,m::r--,o::r-- : what chmod 0444 makes of a file with an access
        // ACL; the group entry still says rw-, which would come back with the next
        // chmod g+w: divergent.
        let acl = Acl {
            entries: vec![
                Entry { tag: USER_OBJ, perm: 6, id: UNDEFINED_ID },
                Entry { tag: GROUP_OBJ, perm: 6, id: UNDEFINED_ID },
                Entry { tag: MASK, perm: 4, id: UNDEFINED_ID },
                Entry { tag: OTHER, perm: 4, id: UNDEFINED_ID },
            ],
        };
        assert_eq!(acl.perm(MASK), Some(4));
        assert!(access_divergence(&acl).is_some());
        let equal = Acl {
            entries: acl
                .entries
                .iter()
                .map(|e| Entry { perm: if e.tag == GROUP_OBJ { 4 } else { e.perm }, ..*e })
                .collect(),
        };
        assert_eq!(access_divergence(&equal), None);
    }

    #[test]
    fn named_entries_grant_more_than_the_model() {
        let mut acl = Acl::minimal(0o664);
        assert_eq!(access_divergence(&acl), None);
        acl.entries.insert(1, Entry { tag: USER, perm: 7, id: 4242 });
        acl.entries.insert(3, Entry { tag: MASK, perm: 7, id: UNDEFINED_ID });
        assert_eq!(access_divergence(&acl), Some("names users or groups beyond the owner model"));
    }

    #[test]
    fn only_a_group_class_above_other_makes_an_access_acl_worth_reading() {
        // Go's read-only trees under other = read: nothing to gain.
        assert!(!could_grant_more(0o444, 0o444));
        assert!(!could_grant_more(0o2555, 0o2555));
        // Group-writable files, other = none, or a repair that widens the group.
        assert!(could_grant_more(0o664, 0o664));
        assert!(could_grant_more(0o440, 0o440));
        assert!(could_grant_more(0o444, 0o440));
        assert!(could_grant_more(0o644, 0o664));
    }
}
