//! Whether the unit's sandbox hides a cache from the service, and the drop-in that
//! shows it. The shipped unit has `ProtectSystem=strict` and `ProtectHome=yes`: a
//! cache outside `/var/cache/go` is read-only to the service, and one under `/home`
//! does not exist for it at all, until a drop-in names it in `ReadWritePaths=`. The
//! kernel then answers EROFS or ENOENT, which on their own send people looking for a
//! read-only disk; this module turns them into the fix.

use std::path::{Path, PathBuf};

/// Directories that `ProtectHome=` hides.
const HOME_DIRS: [&str; 3] = ["/home", "/root", "/run/user"];

/// Why the service cannot write at `path` and what to do, when the reason is its
/// sandbox: the service runs under systemd, and the nearest existing part of `path` is
/// on a read-only bind of a filesystem that is itself writable (a real read-only disk
/// is read-only in its superblock too, and no drop-in would help).
pub(crate) fn hidden(path: &Path) -> Option<String> {
    std::env::var_os("INVOCATION_ID")?;
    let existing = path.ancestors().find(|p| std::fs::symlink_metadata(p).is_ok())?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    read_only_bind(&mountinfo, existing).then(|| advice(path))
}

/// The drop-in for `path`, and the restart it needs.
pub(crate) fn advice(path: &Path) -> String {
    let home = HOME_DIRS.iter().any(|h| path.starts_with(h));
    format!(
        "the service's sandbox ({}) hides it: add a drop-in (systemctl edit cachekeeper) with [Service] {}ReadWritePaths=-{}, then systemctl restart cachekeeper (a reload is not enough)",
        if home { "ProtectHome=yes" } else { "ProtectSystem=strict" },
        if home { "ProtectHome=read-only and " } else { "" },
        path.display()
    )
}

/// True when the mount that holds `path` (the longest mount point that is a prefix) is
/// read-only while its superblock is writable: a read-only bind mount.
fn read_only_bind(mountinfo: &str, path: &Path) -> bool {
    let ro = |opts: &str| opts.split(',').any(|o| o == "ro");
    containing_mount(mountinfo, path).is_some_and(|(_, options, super_options)| ro(options) && !ro(super_options))
}

/// The mount point of the mount that holds `path` (an absolute path), from
/// `/proc/self/mountinfo`: what to remount when it is read-only.
pub(crate) fn mount_point(path: &Path) -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    containing_mount(&mountinfo, path).map(|(point, _, _)| point)
}

/// The longest mount point that is a prefix of `path`, with its mount options and its
/// superblock's options.
fn containing_mount<'m>(mountinfo: &'m str, path: &Path) -> Option<(PathBuf, &'m str, &'m str)> {
    let mut best: Option<(PathBuf, &str, &str)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else { continue };
        let (Some(point), Some(options), Some(super_options)) = (fields.get(4), fields.get(5), fields.get(dash + 3))
        else {
            continue;
        };
        let point = PathBuf::from(unescape(point));
        if !path.starts_with(&point)
            || best.as_ref().is_some_and(|(b, _, _)| b.as_os_str().len() > point.as_os_str().len())
        {
            continue;
        }
        best = Some((point, options, super_options));
    }
    best
}

/// mountinfo writes space, tab, newline and backslash in mount points as octal escapes.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    // What the shipped unit's namespace looks like (trimmed from a live one).
    const SANDBOX: &str = "\
1 0 254:0 / / ro,nosuid,nodev,relatime master:1 - ext4 /dev/vda rw
2 1 254:0 /var/cache/go /var/cache/go rw,relatime master:1 - ext4 /dev/vda rw
3 1 0:25 /systemd/inaccessible/dir /home ro,nosuid,nodev,noexec master:5 - tmpfs tmpfs rw,mode=755
4 1 0:30 / /mnt/cd ro,relatime - iso9660 /dev/sr0 ro
5 1 254:0 /srv/my\\040cache /srv/my\\040cache rw,relatime - ext4 /dev/vda rw
";

    #[test]
    fn a_read_only_bind_of_a_writable_filesystem_is_the_sandbox() {
        assert!(read_only_bind(SANDBOX, Path::new("/srv")));
        assert!(read_only_bind(SANDBOX, Path::new("/home")));
        assert!(read_only_bind(SANDBOX, Path::new("/var/cache")));
    }

    #[test]
    fn what_read_write_paths_names_and_a_read_only_disk_are_not() {
        assert!(!read_only_bind(SANDBOX, Path::new("/var/cache/go/mod")));
        assert!(!read_only_bind(SANDBOX, Path::new("/mnt/cd/go")));
        assert!(!read_only_bind(SANDBOX, Path::new("/srv/my cache/mod")));
        assert!(!read_only_bind("", Path::new("/srv")));
    }

    #[test]
    fn the_mount_that_holds_a_path_is_the_longest_prefix() {
        let point = |p: &str| containing_mount(SANDBOX, Path::new(p)).map(|m| m.0);
        assert_eq!(point("/var/cache/go/mod/x"), Some(PathBuf::from("/var/cache/go")));
        assert_eq!(point("/var/cache/gone"), Some(PathBuf::from("/")));
        assert_eq!(point("/srv/my cache/mod"), Some(PathBuf::from("/srv/my cache")));
    }

    #[test]
    fn the_advice_is_the_drop_in_and_the_restart() {
        let a = advice(Path::new("/srv/go/mod"));
        assert!(a.contains("ProtectSystem=strict") && a.contains("ReadWritePaths=-/srv/go/mod"), "{a}");
        assert!(a.contains("systemctl restart cachekeeper") && !a.contains("ProtectHome"), "{a}");
        let a = advice(Path::new("/home/alice/go/pkg/mod"));
        assert!(a.contains("ProtectHome=read-only and ReadWritePaths=-/home/alice/go/pkg/mod"), "{a}");
    }
}
