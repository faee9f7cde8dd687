//! Every change to a tree goes through here: `root` resolves and pins a cache root
//! safely, `walk` visits the tree through directory descriptors and hands what it finds
//! to its caller's visitor, `walk::repair` is the one place that changes owner, group,
//! mode and ACLs, and `sidefile` keeps the service's own files out of the tree users'
//! reach. It uses `policy` for what to want and `sys` for the system calls; it never
//! logs what it finds nor holds state between walks.

pub(crate) mod root;
pub(crate) mod sidefile;
pub(crate) mod walk;
