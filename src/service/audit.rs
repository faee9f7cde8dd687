//! The audit trail (`daemon.audit_log`): one JSON line per repair with the time, the
//! path, the owner, group and mode before and after, and the uid that owned the entry
//! before — for an entry the service repairs as it appears, the uid that created it.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;

use crate::policy::model::{Attrs, Divergence};
use crate::policy::names;

/// Shared by every cache's walk, with no lock: the file is open with `O_APPEND`, and
/// each record goes out whole in one `write`, which the kernel appends at the end as
/// one piece, so records of walks running at once never interleave.
#[derive(Debug)]
pub(crate) struct AuditLog {
    file: File,
}

#[derive(Serialize)]
struct Side {
    uid: u32,
    gid: u32,
    mode: String,
}

impl From<Attrs> for Side {
    fn from(a: Attrs) -> Side {
        Side { uid: a.uid, gid: a.gid, mode: format!("{:04o}", a.mode) }
    }
}

#[derive(Serialize)]
struct Record {
    /// RFC 3339, UTC.
    time: String,
    path: String,
    before: Side,
    after: Side,
    creator_uid: u32,
    /// ACL changes made (`access_acl` removed, `default_acl` set); absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    acl: Vec<&'static str>,
}

impl AuditLog {
    /// Opened once, before privileges are dropped, and kept open: the service's user
    /// need not be able to open it itself. Opened relative to its directory, resolved
    /// safely ([`crate::engine::sidefile`]) and private to root and `trusted` (as the socket's
    /// is: whoever else could write there could swap the name), and never a file someone
    /// else planted or linked there, nor a FIFO, which would block the start.
    pub(crate) fn open(path: &Path, trusted: &[u32]) -> Result<AuditLog, crate::engine::sidefile::SideFileError> {
        let (dir, name) = crate::engine::sidefile::split(path)?;
        let dir = crate::engine::sidefile::SafeDir::open(dir)?;
        dir.require_private(trusted).map_err(|e| e.of_file(path))?;
        let file = dir.append(name, 0o640, trusted)?;
        Ok(AuditLog { file })
    }

    pub(crate) fn record(&self, root: &Path, rel: &[u8], d: &Divergence) {
        let time = crate::protocol::rfc3339(SystemTime::now());
        let record = Record {
            time,
            path: names::display(root, rel),
            before: d.from.into(),
            after: d.to.into(),
            creator_uid: d.from.uid,
            acl: [(d.drop_access_acl, "access_acl"), (d.set_default_acl, "default_acl")]
                .into_iter()
                .filter_map(|(on, k)| on.then_some(k))
                .collect(),
        };
        let Ok(mut line) = serde_json::to_vec(&record) else { return };
        line.push(b'\n');
        if let Err(e) = (&self.file).write_all(&line) {
            tracing::warn!("cannot write the audit log: {e}");
        }
    }
}
