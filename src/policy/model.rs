//! The owner model (SPEC §1): given what an entry is and how it looks now, what owner,
//! group and mode it should have. Pure: no I/O, table-tested.

use serde::{Deserialize, Serialize};

pub(crate) const S_ISUID: u32 = 0o4000;
pub(crate) const S_ISGID: u32 = 0o2000;
pub(crate) const S_ISVTX: u32 = 0o1000;
/// Every bit `chmod` can set: permissions plus setuid, setgid and sticky.
pub(crate) const MODE_BITS: u32 = 0o7777;

/// How the group relates to the owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    /// The group is a co-owner: g = u, and directories are setgid so that new
    /// entries inherit the group.
    Shared,
    /// The group may read what the owner may read: g = u without `w`.
    Private,
}

/// What everyone else may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Other {
    /// o = u without `w`.
    Read,
    /// o = nothing.
    None,
}

/// Whether directories carry a default ACL so that new entries are group-usable the
/// moment the kernel creates them, whatever the creator's umask (SPEC §1, "Inheritance").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Inherit {
    Acl,
    None,
}

impl Inherit {
    /// `acl` for the shared model, where a second user opens what the first just
    /// created; `none` for private, where only the owner writes.
    pub fn default_for(model: Model) -> Inherit {
        match model {
            Model::Shared => Inherit::Acl,
            Model::Private => Inherit::None,
        }
    }
}

/// How new entries of a cache become usable by the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Inheritance {
    /// Default ACLs: at creation, whatever the creator's umask.
    Acl,
    /// `inherit = "none"`: by repair only, by choice.
    None,
    /// `inherit = "acl"` on a filesystem without POSIX ACLs: by repair only.
    RepairOnly,
}

impl Inheritance {
    pub fn of(policy: &Policy, no_acl: bool) -> Inheritance {
        match policy.inherit {
            Inherit::Acl if no_acl => Inheritance::RepairOnly,
            Inherit::Acl => Inheritance::Acl,
            Inherit::None => Inheritance::None,
        }
    }

    /// One line for people: what it means and, when repair is all there is, what to do.
    pub fn describe(self, policy: &Policy) -> &'static str {
        let shared = policy.model == Model::Shared;
        match self {
            Inheritance::Acl => "default ACLs: new entries are usable by the group from the moment they exist",
            Inheritance::None if !shared => "none (private model)",
            Inheritance::None => {
                "none: new entries wait for a repair; members need umask 002 so that what they create is group-writable at once"
            }
            Inheritance::RepairOnly => {
                "repair only: the filesystem has no POSIX ACLs; members need umask 002 so that what they create is group-writable at once"
            }
        }
    }
}

/// The two kinds of entry the model changes; everything else is only reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// Where an entry lies in Go's layout, for the subtrees whose rules are Go's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Plain,
    /// Below `cache/vcs/`: bare git clones (`modfetch/codehost`), owner-preserving.
    Vcs,
    /// A file below `pkg/tool/` or `bin/` of a `golang.org/toolchain` module tree,
    /// which Go makes executable on first use.
    ToolExec,
    /// The toolchain's `bin/go`: executable last, because Go takes its execute bit as
    /// the sign that the first-use steps are done.
    ToolGo,
}

/// The module path of Go's toolchains (cmd/go/internal/toolchain/select.go).
pub(crate) const TOOLCHAIN_MODULE: &[u8] = b"golang.org/toolchain@";

/// The toolchain module tree `rel` is, e.g. `golang.org/toolchain@v0.0.1-go1.21.0.linux-amd64`.
pub(crate) fn toolchain_root(rel: &[u8]) -> Option<&[u8]> {
    let rest = rel.strip_prefix(TOOLCHAIN_MODULE)?;
    (!rest.is_empty() && !rest.contains(&b'/')).then_some(rest)
}

/// The toolchain tree whose download marker (`.partial`, `.ziphash`) `rel` is.
pub(crate) fn toolchain_of_download(rel: &[u8]) -> Option<Vec<u8>> {
    let name = rel.strip_prefix(b"cache/download/golang.org/toolchain/@v/".as_slice())?;
    let version = name.strip_suffix(b".partial".as_slice()).or_else(|| name.strip_suffix(b".ziphash".as_slice()))?;
    (!version.is_empty() && !version.contains(&b'/')).then(|| [TOOLCHAIN_MODULE, version].concat())
}

/// The place of the entry `name` in the directory `parent` (both relative to the cache
/// root). Allocation-free: the walk calls it for every entry.
pub(crate) fn place(parent: &[u8], name: &[u8]) -> Place {
    if let Some(below) = parent.strip_prefix(b"cache/vcs".as_slice()) {
        if below.is_empty() || below[0] == b'/' {
            return Place::Vcs;
        }
    }
    let Some(rest) = parent.strip_prefix(TOOLCHAIN_MODULE) else { return Place::Plain };
    let Some(slash) = rest.iter().position(|&b| b == b'/') else { return Place::Plain };
    let inside = &rest[slash + 1..];
    let under = |dir: &[u8]| inside == dir || inside.starts_with(dir) && inside.get(dir.len()) == Some(&b'/');
    match inside {
        b"bin" if name == b"go" => Place::ToolGo,
        _ if under(b"bin") || under(b"pkg/tool") => Place::ToolExec,
        _ => Place::Plain,
    }
}

/// The place of the entry at `rel`.
pub(crate) fn place_of(rel: &[u8]) -> Place {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => place(&rel[..i], &rel[i + 1..]),
        None => place(b"", rel),
    }
}

/// The configured owner model of one cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub owner: Option<u32>,
    pub group: Option<u32>,
    pub model: Model,
    pub other: Other,
    /// Directories gain the owner's `w`, like `go -modcacherw`.
    pub writable: bool,
    pub inherit: Inherit,
}

/// Owner, group and mode bits (`MODE_BITS`, no file type) of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Attrs {
    pub uid: u32,
    pub gid: u32,
    /// In JSON an octal string (`"0755"`), as people write modes.
    #[serde(serialize_with = "octal")]
    pub mode: u32,
}

/// A mode as JSON: `"0755"`, the one convention of every JSON output.
pub(crate) fn octal<S: serde::Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{mode:04o}"))
}

impl Policy {
    /// The default model: shared when a group is configured, else private.
    pub fn default_model(group: Option<u32>) -> Model {
        if group.is_some() {
            Model::Shared
        } else {
            Model::Private
        }
    }

    /// What an entry of `kind` that now has `now` should have.
    pub fn target(&self, kind: Kind, now: Attrs) -> Attrs {
        self.target_at(kind, now, Place::Plain)
    }

    /// What an entry of `kind` that now has `now` should have at `place` in Go's
    /// layout: Go's own rules win where they are stricter (SPEC §1, "Go's own subtrees").
    pub fn target_at(&self, kind: Kind, now: Attrs, place: Place) -> Attrs {
        let mut mode = now.mode;
        if kind == Kind::File && matches!(place, Place::ToolExec | Place::ToolGo) {
            // Go's first use of a toolchain: `os.Chmod(path, info.Mode()&0777|0111)` on
            // every file of pkg/tool and bin (cmd/go/internal/toolchain/select.go, Go 1.21+).
            mode = mode & 0o777 | 0o111;
        }
        Attrs {
            // Go drives the clones of cache/vcs with git under its own per-repository lock;
            // git refuses a repository owned by someone else ("dubious ownership",
            // CVE-2022-24765), so their owner is never changed.
            uid: if place == Place::Vcs { now.uid } else { self.owner.unwrap_or(now.uid) },
            gid: self.group.unwrap_or(now.gid),
            mode: self.target_mode(kind, mode),
        }
    }

    /// The default ACL every directory the group may create entries in carries, or `None`
    /// when the model leaves default ACLs alone. Its entries are the model's bits for a directory Go creates with
    /// `MkdirAll(0777)`, so the kernel's inheritance (mode argument ∩ ACL) produces
    /// exactly the model's bits for what Go creates: see [`crate::policy::acl`].
    pub fn default_acl(&self) -> Option<crate::policy::acl::Acl> {
        (self.inherit == Inherit::Acl)
            .then(|| crate::policy::acl::Acl::minimal(self.target_mode(Kind::Dir, 0o777) & 0o777))
    }

    fn target_mode(&self, kind: Kind, mode: u32) -> u32 {
        let (r, w, x) = (0o4, 0o2, 0o1);
        // Owner: gains r (and x on directories); w is kept as it is, because Go makes
        // extracted module trees read-only on purpose (golang/go#27455, #31481).
        let mut u = (mode >> 6) & 0o7 | r;
        if kind == Kind::Dir {
            u |= x;
            if self.writable {
                u |= w;
            }
        }
        let g = match self.model {
            Model::Shared => u,
            Model::Private => u & !w,
        };
        let o = match self.other {
            Other::Read => u & !w,
            Other::None => 0,
        };
        let mut special = mode & (S_ISUID | S_ISGID);
        match kind {
            Kind::Dir if self.model == Model::Shared => special |= S_ISGID,
            Kind::Dir => {}
            // A setuid or setgid file in a shared cache is a privilege escalation waiting
            // to happen; Go never creates one.
            Kind::File => special = 0,
        }
        // Sticky directories would stop group members renaming over each other's files.
        special | u << 6 | g << 3 | o
    }
}

/// What differs between how an entry is and how it should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Divergence {
    pub from: Attrs,
    pub to: Attrs,
    /// The entry's access ACL grants what the model does not (on macOS: its extended
    /// ACL has a `deny` entry): it goes, and the mode bits are the whole truth again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub drop_access_acl: bool,
    /// A directory lacks the model's default ACL (or has another one).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub set_default_acl: bool,
}

impl Divergence {
    /// `None` when `from` already complies.
    pub(crate) fn between(from: Attrs, to: Attrs) -> Option<Self> {
        (from != to).then_some(Divergence { from, to, drop_access_acl: false, set_default_acl: false })
    }

    /// `d` (or, when the attributes comply, a divergence of ACLs alone) with the ACL
    /// changes added; `None` when nothing at all diverges.
    pub(crate) fn with_acl(d: Option<Self>, now: Attrs, drop_access_acl: bool, set_default_acl: bool) -> Option<Self> {
        if !drop_access_acl && !set_default_acl {
            return d;
        }
        let base = d.unwrap_or(Divergence { from: now, to: now, drop_access_acl: false, set_default_acl: false });
        Some(Divergence { drop_access_acl, set_default_acl, ..base })
    }

    /// Only ACLs differ: a change of its own kind in the counts.
    pub(crate) fn acl(&self) -> bool {
        self.drop_access_acl || self.set_default_acl
    }

    pub(crate) fn owner(&self) -> bool {
        self.from.uid != self.to.uid
    }

    pub(crate) fn group(&self) -> bool {
        self.from.gid != self.to.gid
    }

    pub(crate) fn mode(&self) -> bool {
        self.from.mode != self.to.mode
    }
}

/// How a removed ACL is shown: a POSIX access ACL on Linux, the extended ACL (its
/// `deny` entries) on macOS.
pub(crate) const DROPPED_ACL: &str =
    if cfg!(target_os = "macos") { "extended ACL→none" } else { "access ACL→none" };

impl std::fmt::Display for Divergence {
    /// `owner 0→1001, group 0→1001, mode 0644→0664`: only what changes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::with_capacity(3);
        if self.owner() {
            parts.push(format!("owner {}→{}", self.from.uid, self.to.uid));
        }
        if self.group() {
            parts.push(format!("group {}→{}", self.from.gid, self.to.gid));
        }
        if self.mode() {
            parts.push(format!("mode {:04o}→{:04o}", self.from.mode, self.to.mode));
        }
        if self.drop_access_acl {
            parts.push(DROPPED_ACL.to_owned());
        }
        if self.set_default_acl {
            parts.push("default ACL→the model's".to_owned());
        }
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHARED: Policy = Policy {
        owner: Some(1001),
        group: Some(3000),
        model: Model::Shared,
        other: Other::Read,
        writable: false,
        inherit: Inherit::Acl,
    };

    fn mode(p: Policy, kind: Kind, m: u32) -> u32 {
        p.target(kind, Attrs { uid: 0, gid: 0, mode: m }).mode
    }

    fn check(p: Policy, cases: &[(Kind, u32, u32)]) {
        for &(kind, from, want) in cases {
            let got = mode(p, kind, from);
            assert_eq!(got, want, "{kind:?} {from:04o}: got {got:04o}, want {want:04o} under {p:?}");
        }
    }

    #[test]
    fn spec_worked_examples_shared_read() {
        use Kind::*;
        check(
            SHARED,
            &[
                (Dir, 0o755, 0o2775),
                (Dir, 0o555, 0o2555),
                (Dir, 0o700, 0o2775),
                (File, 0o644, 0o664),
                (File, 0o444, 0o444),
                (File, 0o600, 0o664),
                (File, 0o4755, 0o775),
            ],
        );
    }

    #[test]
    fn spec_worked_examples_private() {
        use Kind::*;
        let p = Policy { model: Model::Private, ..SHARED };
        check(p, &[(Dir, 0o700, 0o755), (File, 0o600, 0o644), (File, 0o444, 0o444)]);
    }

    #[test]
    fn owner_write_bit_is_never_added_nor_removed_without_writable() {
        use Kind::*;
        for p in [SHARED, Policy { model: Model::Private, ..SHARED }] {
            check(p, &[(File, 0o000, 0o444), (File, 0o200, if p.model == Model::Shared { 0o664 } else { 0o644 })]);
            assert_eq!(mode(p, Dir, 0o500) & 0o200, 0);
            assert_eq!(mode(p, Dir, 0o300) & 0o200, 0o200);
        }
    }

    #[test]
    fn owner_gains_read_and_dirs_gain_search() {
        use Kind::*;
        let p = Policy { model: Model::Private, ..SHARED };
        check(p, &[(Dir, 0o000, 0o555), (Dir, 0o200, 0o755), (File, 0o100, 0o555)]);
    }

    #[test]
    fn other_none_removes_every_other_bit() {
        use Kind::*;
        let p = Policy { other: Other::None, ..SHARED };
        check(p, &[(Dir, 0o777, 0o2770), (Dir, 0o555, 0o2550), (File, 0o666, 0o660), (File, 0o444, 0o440)]);
        let p = Policy { model: Model::Private, other: Other::None, ..SHARED };
        check(p, &[(Dir, 0o777, 0o750), (File, 0o666, 0o640)]);
    }

    #[test]
    fn group_write_follows_owner_in_shared_and_never_in_private() {
        use Kind::*;
        check(SHARED, &[(File, 0o604, 0o664), (File, 0o474, 0o444)]);
        let p = Policy { model: Model::Private, ..SHARED };
        check(p, &[(File, 0o664, 0o644), (File, 0o474, 0o444), (Dir, 0o2775, 0o2755)]);
    }

    #[test]
    fn writable_adds_owner_and_group_write_to_directories_only() {
        use Kind::*;
        let p = Policy { writable: true, ..SHARED };
        check(p, &[(Dir, 0o555, 0o2775), (File, 0o444, 0o444), (File, 0o644, 0o664)]);
        let p = Policy { writable: true, model: Model::Private, ..SHARED };
        check(p, &[(Dir, 0o555, 0o755)]);
    }

    #[test]
    fn files_lose_setuid_and_setgid_and_everything_loses_sticky() {
        use Kind::*;
        check(SHARED, &[(File, 0o6755, 0o775), (File, 0o2644, 0o664), (Dir, 0o1777, 0o2775), (File, 0o1644, 0o664)]);
        let p = Policy { model: Model::Private, ..SHARED };
        check(p, &[(Dir, 0o1755, 0o755), (File, 0o4755, 0o755)]);
    }

    #[test]
    fn private_directories_keep_an_existing_setgid_bit() {
        let p = Policy { model: Model::Private, ..SHARED };
        check(p, &[(Kind::Dir, 0o2755, 0o2755)]);
    }

    #[test]
    fn owner_and_group_are_left_alone_when_not_configured() {
        let p = Policy { owner: None, group: None, ..SHARED };
        let now = Attrs { uid: 7, gid: 8, mode: 0o644 };
        let t = p.target(Kind::File, now);
        assert_eq!((t.uid, t.gid), (7, 8));
        let t = SHARED.target(Kind::File, now);
        assert_eq!((t.uid, t.gid), (1001, 3000));
    }

    #[test]
    fn the_target_is_a_fixed_point() {
        for p in [SHARED, Policy { model: Model::Private, other: Other::None, writable: true, ..SHARED }] {
            for kind in [Kind::Dir, Kind::File] {
                for m in 0..=MODE_BITS {
                    let once = mode(p, kind, m);
                    assert_eq!(mode(p, kind, once), once, "{kind:?} {m:04o} under {p:?}");
                }
            }
        }
    }

    #[test]
    fn default_model_depends_on_group() {
        assert_eq!(Policy::default_model(Some(1)), Model::Shared);
        assert_eq!(Policy::default_model(None), Model::Private);
    }

    #[test]
    fn divergence_names_only_what_changes() {
        let from = Attrs { uid: 0, gid: 0, mode: 0o644 };
        assert_eq!(Divergence::between(from, from), None);
        let d = Divergence::between(from, Attrs { uid: 1001, gid: 0, mode: 0o664 }).unwrap();
        assert_eq!(d.to_string(), "owner 0→1001, mode 0644→0664");
    }

    #[test]
    fn default_acls_follow_the_model() {
        let text = |p: Policy| p.default_acl().map(|a| a.text());
        assert_eq!(text(SHARED).as_deref(), Some("u::rwx,g::rwx,o::r-x"));
        assert_eq!(text(Policy { other: Other::None, ..SHARED }).as_deref(), Some("u::rwx,g::rwx,o::---"));
        assert_eq!(text(Policy { writable: true, ..SHARED }).as_deref(), Some("u::rwx,g::rwx,o::r-x"));
        assert_eq!(text(Policy { model: Model::Private, ..SHARED }).as_deref(), Some("u::rwx,g::r-x,o::r-x"));
        assert_eq!(text(Policy { inherit: Inherit::None, ..SHARED }), None);
        assert_eq!(Inherit::default_for(Model::Shared), Inherit::Acl);
        assert_eq!(Inherit::default_for(Model::Private), Inherit::None);
    }

    /// What the kernel gives a new entry in a directory with a minimal default ACL
    /// (`posix_acl_create_masq`): the creator's mode argument masked by the ACL, the
    /// umask ignored, and setgid from the setgid parent for directories.
    fn inherited(p: Policy, kind: Kind, mode_arg: u32) -> u32 {
        let acl = p.default_acl().unwrap();
        let [u, g, o] = [crate::policy::acl::USER_OBJ, crate::policy::acl::GROUP_OBJ, crate::policy::acl::OTHER]
            .map(|t| acl.perm(t).unwrap());
        let bits = mode_arg & (u << 6 | g << 3 | o);
        if kind == Kind::Dir && p.model == Model::Shared {
            bits | S_ISGID
        } else {
            bits
        }
    }

    #[test]
    fn what_go_creates_under_the_default_acl_already_complies() {
        use Kind::*;
        // Go's mode arguments: MkdirAll 0777, tempFile/lockedfile 0666, zip.Unzip 0444,
        // and (for a new entry that is then chmodded) 0555 directories.
        for p in [SHARED, Policy { other: Other::None, ..SHARED }, Policy { model: Model::Private, ..SHARED }] {
            for (kind, arg) in [(Dir, 0o777), (File, 0o666), (File, 0o444), (File, 0o777), (Dir, 0o555)] {
                let got = inherited(p, kind, arg);
                assert_eq!(mode(p, kind, got), got, "{kind:?} created {arg:04o} became {got:04o} under {p:?}");
            }
        }
        // And the shared group can do what the owner can from the first moment.
        assert_eq!(inherited(SHARED, File, 0o666), 0o664);
        assert_eq!(inherited(SHARED, Dir, 0o777), 0o2775);
        assert_eq!(inherited(SHARED, File, 0o444), 0o444);
    }

    const TC: &str = "golang.org/toolchain@v0.0.1-go1.21.0.linux-amd64";

    #[test]
    fn places_in_gos_layout() {
        let cases = [
            ("cache/vcs/0123abcd/objects/pack/x.pack", Place::Vcs),
            ("cache/vcs/0123abcd", Place::Vcs),
            ("cache/vcs/0123abcd.lock", Place::Vcs),
            ("cache/vcs", Place::Plain),
            ("cache/vcsx/y", Place::Plain),
            ("cache/download/golang.org/toolchain/@v/list", Place::Plain),
            (&format!("{TC}/bin/go"), Place::ToolGo),
            (&format!("{TC}/bin/gofmt"), Place::ToolExec),
            (&format!("{TC}/pkg/tool/linux_amd64/compile"), Place::ToolExec),
            (&format!("{TC}/pkg/tool"), Place::Plain),
            (&format!("{TC}/pkg/toolbox/x"), Place::Plain),
            (&format!("{TC}/binx/go"), Place::Plain),
            (&format!("{TC}/src/cmd/go/main.go"), Place::Plain),
            (&format!("{TC}/bin/sub/go"), Place::ToolExec),
            ("golang.org/toolchain@v0.0.1-go1.21.0.linux-amd64", Place::Plain),
            ("example.com/m@v1.0.0/bin/go", Place::Plain),
        ];
        for (rel, want) in cases {
            assert_eq!(place_of(rel.as_bytes()), want, "{rel}");
        }
        assert_eq!(toolchain_root(TC.as_bytes()), Some(&b"v0.0.1-go1.21.0.linux-amd64"[..]));
        assert_eq!(toolchain_root(format!("{TC}/bin").as_bytes()), None);
        assert_eq!(toolchain_root(b"golang.org/toolchain@"), None);
        let marker = |s: &str| toolchain_of_download(s.as_bytes()).map(|v| String::from_utf8(v).unwrap());
        let at = "cache/download/golang.org/toolchain/@v/v0.0.1-go1.21.0.linux-amd64";
        assert_eq!(marker(&format!("{at}.partial")).as_deref(), Some(TC));
        assert_eq!(marker(&format!("{at}.ziphash")).as_deref(), Some(TC));
        assert_eq!(marker(&format!("{at}.zip")), None);
        assert_eq!(marker("cache/download/example.com/m/@v/v1.0.0.partial"), None);
    }

    #[test]
    fn vcs_entries_keep_their_owner_in_every_model_and_take_group_and_mode() {
        let now = Attrs { uid: 1101, gid: 1101, mode: 0o755 };
        for p in [SHARED, Policy { model: Model::Private, group: None, ..SHARED }] {
            for kind in [Kind::Dir, Kind::File] {
                let t = p.target_at(kind, now, Place::Vcs);
                assert_eq!(t.uid, 1101, "{kind:?} under {p:?}");
                assert_eq!(t.gid, p.group.unwrap_or(1101));
                assert_eq!(t.mode, p.target(kind, now).mode);
            }
        }
    }

    #[test]
    fn toolchain_commands_are_executable_for_everyone_the_model_lets_read() {
        use Kind::*;
        let at = |p: Policy, kind, m, place| p.target_at(kind, Attrs { uid: 0, gid: 0, mode: m }, place).mode;
        for place in [Place::ToolExec, Place::ToolGo] {
            assert_eq!(at(SHARED, File, 0o444, place), 0o555);
            assert_eq!(at(SHARED, File, 0o644, place), 0o775);
            assert_eq!(at(Policy { other: Other::None, ..SHARED }, File, 0o444, place), 0o550);
            assert_eq!(at(Policy { model: Model::Private, ..SHARED }, File, 0o4644, place), 0o755);
            // Directories are the model's alone: Go chmods only files.
            assert_eq!(at(SHARED, Dir, 0o555, place), 0o2555);
        }
        assert_eq!(at(SHARED, File, 0o444, Place::Plain), 0o444);
        // Fixed points over every mode, as for the plain model.
        for m in 0..=MODE_BITS {
            let once = at(SHARED, File, m, Place::ToolExec);
            assert_eq!(at(SHARED, File, once, Place::ToolExec), once, "{m:04o}");
        }
    }

    #[test]
    fn acl_only_divergences_keep_the_attributes() {
        let now = Attrs { uid: 1, gid: 2, mode: 0o2775 };
        assert_eq!(Divergence::with_acl(None, now, false, false), None);
        let d = Divergence::with_acl(None, now, false, true).unwrap();
        assert!(d.acl() && !d.mode() && !d.owner());
        assert_eq!(d.to_string(), "default ACL→the model's");
        let m = Divergence::between(now, Attrs { mode: 0o2770, ..now });
        let d = Divergence::with_acl(m, now, true, false).unwrap();
        assert_eq!(d.to_string(), "mode 2775→2770, access ACL→none");
    }
}
