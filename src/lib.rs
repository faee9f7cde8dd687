//! cachekeeper keeps a Go module cache (`GOMODCACHE`) shared by several users usable:
//! it brings every entry to a configured owner model (owner, group, mode) through
//! descriptor-pinned, race-safe changes, once (`--init`, `--check`) or continuously.
//!
//! The map, each folder opening with what lives there and what it may use:
//!
//! - [`policy`]: what a cache should look like (owner model, configuration, names); pure.
//! - [`engine`]: resolving a root, walking a tree, the one place that changes files.
//! - [`sys`]: every system call that needs `unsafe`, and where the platforms differ.
//! - [`service`]: the long-running keeper: one worker per cache, fed by that cache's
//!   inotify reader (`watch`); the control socket only routes requests.
//! - [`client`]: `cachekeeperctl`, `explain`, `doctor`: run as the caller, never privileged.
//! - [`oneshot`]: `--init`, `--check` and exec mode.
//!
//! Followed from the kernel to a repair: `service::watch` turns an inotify event into
//! work, `service::worker` takes it, `engine::walk` looks at the entry, `policy::model`
//! says what it should be, and `engine::repair` changes it.

#![deny(unsafe_code)]

pub mod client;
pub mod engine;
pub mod error;
pub mod logging;
pub mod oneshot;
pub mod policy;
pub mod privilege;
pub mod protocol;
pub mod sandbox;
pub mod service;
#[allow(unsafe_code)]
pub mod sys;

// The modules by their short names, as the code and the tests name them.
pub use client::{ctl, doctor, explain, gofidelity, pasted};
pub use engine::{acl, ext_acl, repair, root, sidefile, walk};
pub use oneshot::{cli, exec, hint, summary};
pub use policy::{config, model, names};
pub use service::{audit, metrics, watch};
