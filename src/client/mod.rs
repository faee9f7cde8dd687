//! What runs as the caller, never privileged: `cachekeeperctl` (`ctl`: the socket
//! client and how answers are shown), `explain` (why a user may not do something at a
//! path, and a pasted Go error line read by `pasted`), `doctor` (the checklist) and the
//! Go-specific checks both share (`gofidelity`). It reads the tree and asks the service;
//! it changes nothing. It uses `policy`, `sys`, the engine's root resolution (read
//! only), `protocol` to reach the service and the command line's helpers of `oneshot`;
//! never the service's insides.

pub mod ctl;
pub(crate) mod doctor;
pub(crate) mod explain;
pub(crate) mod gofidelity;
pub(crate) mod pasted;
