//! macOS extended ACLs (`acl_get_fd_np`, `acl_get_link_np`, `acl_to_text`,
//! `acl_set_fd_np`), declared here because the libc crate does not bind them. These are
//! the ACLs `chmod +a` and `ls -le` show; Time Machine restores and Migration Assistant
//! leave `deny` entries (`group:everyone deny delete`) that block the shared group. The
//! text is parsed by the pure [`crate::policy::ext_acl`], which is unit-tested on every platform.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::AclText;

type AclT = *mut c_void;

/// `ACL_TYPE_EXTENDED` of `<sys/acl.h>`.
const ACL_TYPE_EXTENDED: c_int = 0x0000_0100;

extern "C" {
    fn acl_get_fd_np(fd: c_int, kind: c_int) -> AclT;
    fn acl_get_link_np(path: *const c_char, kind: c_int) -> AclT;
    fn acl_to_text(acl: AclT, len: *mut isize) -> *mut c_char;
    fn acl_init(count: c_int) -> AclT;
    fn acl_set_fd_np(fd: c_int, acl: AclT, kind: c_int) -> c_int;
    fn acl_free(obj: *mut c_void) -> c_int;
}

/// The text of `acl` (freed here), `None` for a null `acl` with `ENOENT` (no ACL).
fn text(acl: AclT) -> io::Result<Option<AclText>> {
    if acl.is_null() {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOENT) { Ok(None) } else { Err(e) };
    }
    // SAFETY: `acl` is a valid ACL returned by acl_get_*; a null length pointer is allowed.
    let raw = unsafe { acl_to_text(acl, std::ptr::null_mut()) };
    let result = if raw.is_null() {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: acl_to_text returns a NUL-terminated string, copied before it is freed.
        let s = unsafe { CStr::from_ptr(raw) }.to_string_lossy().into_owned();
        // SAFETY: `raw` came from acl_to_text and is freed once.
        unsafe { acl_free(raw.cast()) };
        Ok(Some(s))
    };
    // SAFETY: `acl` came from acl_get_* and is freed once.
    unsafe { acl_free(acl) };
    result
}

/// The extended ACL of the inode behind `fd`, as `acl_to_text` writes it.
pub fn ext_acl_fd(fd: BorrowedFd<'_>) -> io::Result<Option<AclText>> {
    // SAFETY: a valid descriptor; the result is checked for null in `text`.
    text(unsafe { acl_get_fd_np(fd.as_raw_fd(), ACL_TYPE_EXTENDED) })
}

/// The extended ACL of `path`, not following a final symlink: for diagnostics only.
pub fn ext_acl_path(path: &CStr) -> io::Result<Option<AclText>> {
    // SAFETY: NUL-terminated path; the result is checked for null in `text`.
    text(unsafe { acl_get_link_np(path.as_ptr(), ACL_TYPE_EXTENDED) })
}

/// Removes every entry of the extended ACL of the inode behind `fd`: an empty ACL set
/// through the pinned descriptor, never by name.
pub fn clear_ext_acl_fd(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: acl_init allocates an empty ACL or returns null.
    let empty = unsafe { acl_init(0) };
    if empty.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a valid descriptor and ACL.
    let ret = unsafe { acl_set_fd_np(fd.as_raw_fd(), empty, ACL_TYPE_EXTENDED) };
    let result = if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(()) };
    // SAFETY: `empty` came from acl_init and is freed once.
    unsafe { acl_free(empty) };
    result
}
