//! cachekeeper keeps a Go module cache (`GOMODCACHE`) shared by several users usable:
//! it brings every entry to a configured owner model (owner, group, mode) through
//! descriptor-pinned, race-safe changes, once (`--init`, `--check`) or continuously.
//!
//! The pure parts ([`model`], [`config`], [`names`]) do no I/O; only [`repair`]
//! changes files, reached through the descriptor-based [`walk`] from a root that
//! [`root`] resolved safely and pinned. [`sidefile`] keeps the service's own files
//! (audit log, metrics, socket, sync markers) out of reach of the tree's users.
//!
//! Every system call that needs `unsafe` lives behind one seam, [`sys`], which is also
//! where the platforms differ.
//! [`service`] is the long-running keeper: one worker per cache owns its state, fed by
//! that cache's inotify reader ([`watch`]); the control socket only routes requests.

#![deny(unsafe_code)]

pub mod acl;
pub mod audit;
pub mod cli;
pub mod config;
pub mod ctl;
pub mod doctor;
pub mod error;
pub mod exec;
pub mod explain;
pub mod ext_acl;
pub mod gofidelity;
pub mod hint;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod names;
pub mod pasted;
pub mod privilege;
pub mod protocol;
pub mod repair;
pub mod root;
pub mod sandbox;
pub mod service;
pub mod sidefile;
pub mod summary;
#[allow(unsafe_code)]
pub mod sys;
pub mod walk;
pub mod watch;
