//! cachekeeper keeps a Go module cache (`GOMODCACHE`) shared by several users usable:
//! it brings every entry to a configured owner model (owner, group, mode) through
//! descriptor-pinned, race-safe changes, once (`--init`, `--check`) or continuously.
//!
//! The map, each folder opening with what lives there and what it may use, from the
//! bottom up (a layer uses those before it, never one after):
//!
//! - `policy`: what a cache should look like (owner model, ACL formats, configuration,
//!   names); pure.
//! - `sys`: every system call that needs `unsafe`, and where the platforms differ.
//! - `engine`: resolving a root, walking a tree, the one place that changes files.
//! - `service`: the long-running keeper: one worker per cache, the sole owner of its
//!   state, fed by that cache's inotify reader (`watch`); the control socket sends it
//!   messages and reads the view it publishes.
//! - `client`: `cachekeeperctl`, `explain`, `doctor`: run as the caller, never privileged.
//! - `oneshot`: `--init`, `--check` and exec mode.
//!
//! Beside them: `protocol` (what the socket carries) and `metrics` (its status as
//! Prometheus text), `privilege`, `sandbox` (systemd's), `logging` and `error`.
//!
//! Followed from the kernel to a repair, in five files: `service::watch` queues the
//! inotify event, `service::worker` maps it to a path (`watch::seen`) and walks it,
//! `engine::walk` looks at the entry, `policy::model` says what it should be, and
//! `engine::walk::repair` changes it; the walk's visitor tells the worker.

#![deny(unsafe_code)]

mod client;
mod engine;
mod error;
mod logging;
mod metrics;
mod oneshot;
mod policy;
mod privilege;
mod protocol;
mod sandbox;
mod service;
#[allow(unsafe_code)]
mod sys;

// What the two binaries run, and what the tests drive through the library: the
// command lines and the configuration's parser. Everything else is the crate's own.
pub use client::ctl;
pub use oneshot::cli;
pub use policy::config;
