//! What a cache should look like, and nothing else: the owner model (`model`: kind,
//! owner, group and mode in, the wanted ones out), the formats of the ACLs it may want
//! (`acl` for POSIX, `ext_acl` for macOS), the configuration (`config`: TOML and flags
//! in, validated caches out), how names are shown (`names`: paths, users, groups) and
//! how commands are spelled so that they run as printed (`hint`). Pure: no I/O but the
//! user and group look-ups; it uses nothing else of the crate but the engine's
//! root-path rules, which `config` applies to a spelled path. Everything else uses it.

pub(crate) mod acl;
pub mod config;
pub(crate) mod ext_acl;
pub(crate) mod hint;
pub(crate) mod model;
pub(crate) mod names;
