//! Least privilege for the service (SPEC §5): the power to chown anything, and no more.
//! Done once, before any thread is started (capabilities are per thread; threads made
//! later inherit the reduced set), after the control socket is bound and before any
//! event is handled. Linux has capabilities; elsewhere (macOS, launchd) the service runs
//! as root and the safety rules of every change are all there is.

#[cfg(not(target_os = "linux"))]
pub use elsewhere::{check, effective, reduce};
#[cfg(target_os = "linux")]
pub use linux::{check, effective, names, reduce, NEEDED};

#[cfg(not(target_os = "linux"))]
mod elsewhere {
    /// Without capabilities only root can change owners.
    pub fn check() -> Result<(), String> {
        if nix::unistd::geteuid().is_root() {
            Ok(())
        } else {
            Err(format!(
                "running as uid {}: on this system only root may change owners (run it as a LaunchDaemon)",
                nix::unistd::geteuid()
            ))
        }
    }

    /// There is no set to reduce to: a switch to `daemon.user` would lose the power to
    /// chown, so it is refused rather than silently ignored.
    pub fn reduce(user: Option<(u32, u32)>) -> Result<(), String> {
        match user {
            Some((uid, _)) => Err(format!(
                "daemon.user (uid {uid}) needs Linux capabilities to keep the power to change owners; on this \
                 system leave it out and run the service as root"
            )),
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

    /// What repairing needs: chown (CHOWN), chmod of others' entries (FOWNER), setgid on
    /// directories whose group we are not in (FSETID), and reading every directory
    /// (DAC_READ_SEARCH).
    pub const NEEDED: [Capability; 4] =
        [Capability::CAP_CHOWN, Capability::CAP_DAC_READ_SEARCH, Capability::CAP_FOWNER, Capability::CAP_FSETID];

    /// The unit settings that grant [`NEEDED`] to an unprivileged service.
    const UNIT_HINT: &str = "grant it in the unit with AmbientCapabilities=CAP_CHOWN CAP_DAC_READ_SEARCH CAP_FOWNER \
     CAP_FSETID (and the same in CapabilityBoundingSet=)";

    fn needed() -> HashSet<Capability> {
        NEEDED.into_iter().collect()
    }

    /// Lower-case names of a capability set, sorted (`cap_chown`, ...).
    pub fn names(set: &HashSet<Capability>) -> Vec<String> {
        let mut v: Vec<String> = set.iter().map(|c| c.to_string().to_lowercase()).collect();
        v.sort();
        v
    }

    /// The calling thread's effective capabilities.
    pub fn effective() -> Vec<String> {
        caps::read(None, CapSet::Effective).map(|s| names(&s)).unwrap_or_default()
    }

    /// Whether the service can hold what it needs: root can; anyone else must have been
    /// given the four. Checked before anything is changed, so that a service that cannot
    /// run leaves nothing behind.
    pub fn check() -> Result<(), String> {
        if nix::unistd::geteuid().is_root() {
            return Ok(());
        }
        let permitted =
            caps::read(None, CapSet::Permitted).map_err(|e| format!("cannot read the permitted set: {e}"))?;
        match NEEDED.iter().find(|c| !permitted.contains(c)) {
            Some(missing) => Err(format!(
                "running as uid {} without {missing}, which repairs need: {UNIT_HINT}",
                nix::unistd::geteuid()
            )),
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
    pub fn reduce(user: Option<(u32, u32)>) -> Result<(), String> {
        let root = nix::unistd::geteuid().is_root();
        let err = |what: &str, e: &dyn std::fmt::Display| format!("cannot {what}: {e}");
        if root {
            // Needs CAP_SETPCAP, so before the permitted set shrinks.
            let bounding = caps::read(None, CapSet::Bounding).map_err(|e| err("read the bounding set", &e))?;
            for cap in bounding.difference(&needed()) {
                caps::drop(None, CapSet::Bounding, *cap)
                    .map_err(|e| err(&format!("drop {cap} from the bounding set"), &e))?;
            }
            if let Some((uid, gid)) = user {
                use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
                // Keep the permitted set across the uid change; the effective set is
                // cleared by it and raised again below.
                nix::sys::prctl::set_keepcaps(true).map_err(|e| err("keep capabilities across setuid", &e))?;
                setgroups(&[]).map_err(|e| err("clear supplementary groups", &e))?;
                let g = Gid::from_raw(gid);
                setresgid(g, g, g).map_err(|e| err(&format!("switch to gid {gid}"), &e))?;
                let u = Uid::from_raw(uid);
                setresuid(u, u, u).map_err(|e| err(&format!("switch to uid {uid}"), &e))?;
                nix::sys::prctl::set_keepcaps(false).map_err(|e| err("reset keepcaps", &e))?;
            }
        } else {
            check()?;
        }
        caps::clear(None, CapSet::Ambient).map_err(|e| err("clear the ambient set", &e))?;
        caps::clear(None, CapSet::Inheritable).map_err(|e| err("clear the inheritable set", &e))?;
        // Effective before permitted: the effective set must stay within the permitted one.
        caps::set(None, CapSet::Effective, &needed()).map_err(|e| err("set the effective set", &e))?;
        caps::set(None, CapSet::Permitted, &needed()).map_err(|e| err("set the permitted set", &e))?;
        nix::sys::prctl::set_no_new_privs().map_err(|e| err("set no_new_privs", &e))?;
        tracing::info!(
            uid = nix::unistd::geteuid().as_raw(),
            gid = nix::unistd::getegid().as_raw(),
            "holding only {}",
            effective().join(", ")
        );
        Ok(())
    }
}
