//! Every change to a tree goes through here: `root` resolves and pins a cache root
//! safely, `walk` visits the tree through directory descriptors and hands what it finds
//! to its caller, `repair` is the one place that changes owner, group, mode and ACLs
//! (`acl` and `ext_acl` read and write them), and `sidefile` keeps the service's own
//! files out of the tree users' reach. It uses `policy` for what to want and `sys` for
//! the system calls; it never logs what it finds nor holds state between walks.

pub mod acl;
pub mod ext_acl;
pub mod repair;
pub mod root;
pub mod sidefile;
pub mod walk;
