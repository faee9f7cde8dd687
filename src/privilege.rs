//! Least privilege for the service (SPEC §5): the power to chown anything, and no more.
//! Done once, before any thread is started (capabilities are per thread; threads made
//! later inherit the reduced set), after the control socket is bound and before any
//! event is handled. Linux has capabilities; elsewhere (macOS, launchd) the service runs
//! as root and the safety rules of every change are all there is.

#[cfg(not(target_os = "linux"))]
pub use elsewhere::{check, effective, reduce};
#[cfg(target_os = "linux")]
pub(crate) use linux::{check, effective, reduce, Cause};

/// Why the service cannot hold the power it needs, or cannot reduce itself to it. Each
/// says what to change; nothing has been changed in any cache.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PrivilegeError {
    /// Not root, and a capability of [`linux::NEEDED`] is not in the permitted set.
    #[cfg(target_os = "linux")]
    #[error("running as uid {uid} without {capability}, which repairs need: {hint}", hint = linux::UNIT_HINT)]
    Missing { capability: caps::Capability, uid: u32 },
    /// A step of reading or reducing the capability sets failed.
    #[cfg(target_os = "linux")]
    #[error("cannot {action}: {source}")]
    Step {
        /// What was being done, as a verb phrase: "drop CAP_SYS_ADMIN from the bounding set".
        action: String,
        #[source]
        source: Cause,
    },
    /// Not root, where only root can change owners.
    #[cfg(not(target_os = "linux"))]
    #[error("running as uid {uid}: on this system only root may change owners (run it as a LaunchDaemon)")]
    NotRoot { uid: u32 },
    /// `daemon.user` is set where no capability would survive the switch to it.
    #[cfg(not(target_os = "linux"))]
    #[error(
        "daemon.user (uid {uid}) needs Linux capabilities to keep the power to change owners; on this system \
         leave it out and run the service as root"
    )]
    UserWithoutCapabilities { uid: u32 },
}

#[cfg(target_os = "linux")]
impl PrivilegeError {
    /// A failed step: `action` is what was being done, as a verb phrase.
    pub(crate) fn step<E: Into<Cause>>(action: impl Into<String>) -> impl FnOnce(E) -> PrivilegeError {
        let action = action.into();
        move |e| PrivilegeError::Step { action, source: e.into() }
    }
}

#[cfg(not(target_os = "linux"))]
mod elsewhere {
    use super::PrivilegeError;

    /// Without capabilities only root can change owners.
    pub fn check() -> Result<(), PrivilegeError> {
        let uid = nix::unistd::geteuid();
        if uid.is_root() {
            Ok(())
        } else {
            Err(PrivilegeError::NotRoot { uid: uid.as_raw() })
        }
    }

    /// There is no set to reduce to: a switch to `daemon.user` would lose the power to
    /// chown, so it is refused rather than silently ignored.
    pub fn reduce(user: Option<(u32, u32)>) -> Result<(), PrivilegeError> {
        match user {
            Some((uid, _)) => Err(PrivilegeError::UserWithoutCapabilities { uid }),
            None => check(),
        }
    }

    /// No capabilities here.
    pub fn effective() -> Vec<String> {
        Vec::new()
    }
}

#[cfg(target_os = "linux")]
mod linux {

    use std::collections::HashSet;

    use caps::{CapSet, Capability};

    use super::PrivilegeError;

    /// Why a step failed: the caps crate reports text only, nix the errno.
    #[derive(Debug, thiserror::Error)]
    pub(crate) enum Cause {
        #[error(transparent)]
        Caps(#[from] caps::errors::CapsError),
        #[error(transparent)]
        Sys(#[from] nix::errno::Errno),
    }

    /// What repairing needs: chown (CHOWN), chmod of others' entries (FOWNER), setgid on
    /// directories whose group we are not in (FSETID), and reading every directory
    /// (DAC_READ_SEARCH).
    pub(super) const NEEDED: [Capability; 4] =
        [Capability::CAP_CHOWN, Capability::CAP_DAC_READ_SEARCH, Capability::CAP_FOWNER, Capability::CAP_FSETID];

    /// The unit settings that grant [`NEEDED`] to an unprivileged service.
    pub(super) const UNIT_HINT: &str = "grant it in the unit with AmbientCapabilities=CAP_CHOWN \
        CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID (and the same in CapabilityBoundingSet=)";

    fn needed() -> HashSet<Capability> {
        NEEDED.into_iter().collect()
    }

    /// Lower-case names of a capability set, sorted (`cap_chown`, ...).
    pub(super) fn names(set: &HashSet<Capability>) -> Vec<String> {
        let mut v: Vec<String> = set.iter().map(|c| c.to_string().to_lowercase()).collect();
        v.sort();
        v
    }

    /// The calling thread's effective capabilities.
    pub(crate) fn effective() -> Vec<String> {
        caps::read(None, CapSet::Effective).map(|s| names(&s)).unwrap_or_default()
    }

    /// Whether the service can hold what it needs: root can; anyone else must have been
    /// given the four. Checked before anything is changed, so that a service that cannot
    /// run leaves nothing behind.
    pub(crate) fn check() -> Result<(), PrivilegeError> {
        let uid = nix::unistd::geteuid();
        if uid.is_root() {
            return Ok(());
        }
        let permitted = caps::read(None, CapSet::Permitted).map_err(PrivilegeError::step("read the permitted set"))?;
        match NEEDED.into_iter().find(|c| !permitted.contains(c)) {
            Some(capability) => Err(PrivilegeError::Missing { capability, uid: uid.as_raw() }),
            None => Ok(()),
        }
    }

    /// Reduces the process to [`NEEDED`]:
    /// * root with `user`: switch to `user` (uid, gid; no supplementary groups), keeping
    ///   exactly the four, permitted and effective;
    /// * root without `user` (a container): stay uid 0 with the four;
    /// * not root (systemd `AmbientCapabilities=`): check that the four are held, drop the rest.
    ///
    /// In every case: nothing inheritable or ambient, everything else out of the bounding
    /// set where we may change it, and `no_new_privs`.
    pub(crate) fn reduce(user: Option<(u32, u32)>) -> Result<(), PrivilegeError> {
        let root = nix::unistd::geteuid().is_root();
        if root {
            // Needs CAP_SETPCAP, so before the permitted set shrinks.
            let bounding = caps::read(None, CapSet::Bounding).map_err(PrivilegeError::step("read the bounding set"))?;
            for cap in bounding.difference(&needed()) {
                caps::drop(None, CapSet::Bounding, *cap)
                    .map_err(PrivilegeError::step(format!("drop {cap} from the bounding set")))?;
            }
            if let Some((uid, gid)) = user {
                use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
                // Keep the permitted set across the uid change; the effective set is
                // cleared by it and raised again below.
                nix::sys::prctl::set_keepcaps(true).map_err(PrivilegeError::step("keep capabilities across setuid"))?;
                setgroups(&[]).map_err(PrivilegeError::step("clear supplementary groups"))?;
                let g = Gid::from_raw(gid);
                setresgid(g, g, g).map_err(PrivilegeError::step(format!("switch to gid {gid}")))?;
                let u = Uid::from_raw(uid);
                setresuid(u, u, u).map_err(PrivilegeError::step(format!("switch to uid {uid}")))?;
                nix::sys::prctl::set_keepcaps(false).map_err(PrivilegeError::step("reset keepcaps"))?;
            }
        } else {
            check()?;
        }
        caps::clear(None, CapSet::Ambient).map_err(PrivilegeError::step("clear the ambient set"))?;
        caps::clear(None, CapSet::Inheritable).map_err(PrivilegeError::step("clear the inheritable set"))?;
        // Effective before permitted: the effective set must stay within the permitted one.
        caps::set(None, CapSet::Effective, &needed()).map_err(PrivilegeError::step("set the effective set"))?;
        caps::set(None, CapSet::Permitted, &needed()).map_err(PrivilegeError::step("set the permitted set"))?;
        nix::sys::prctl::set_no_new_privs().map_err(PrivilegeError::step("set no_new_privs"))?;
        tracing::info!(
            uid = nix::unistd::geteuid().as_raw(),
            gid = nix::unistd::getegid().as_raw(),
            "holding only {}",
            effective().join(", ")
        );
        Ok(())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_missing_capability_names_it_the_uid_and_the_unit_settings() {
        let e = PrivilegeError::Missing { capability: caps::Capability::CAP_FSETID, uid: 1000 };
        assert_eq!(
            e.to_string(),
            "running as uid 1000 without CAP_FSETID, which repairs need: grant it in the unit with \
             AmbientCapabilities=CAP_CHOWN CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID (and the same in \
             CapabilityBoundingSet=)"
        );
    }

    #[test]
    fn a_failed_step_says_what_it_was_doing_and_keeps_the_errno() {
        let e = PrivilegeError::step("switch to uid 7")(nix::errno::Errno::EPERM);
        assert_eq!(e.to_string(), "cannot switch to uid 7: EPERM: Operation not permitted");
        assert!(matches!(e, PrivilegeError::Step { source: Cause::Sys(nix::errno::Errno::EPERM), .. }), "{e:?}");
    }
}
