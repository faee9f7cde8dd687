//! What a cache should look like, and nothing else: the owner model (`model`: kind,
//! owner, group and mode in, the wanted ones out), the configuration (`config`: TOML and
//! flags in, validated caches out) and how names are shown (`names`). Pure: no I/O but
//! the user and group look-ups of `config`; it uses nothing else of the crate but the
//! engine's root-path rules, which `config` applies to a spelled path.

pub mod config;
pub(crate) mod model;
pub(crate) mod names;
