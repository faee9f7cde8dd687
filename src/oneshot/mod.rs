//! `cachekeeper --init` and `--check`: the command line (`cli`, which starts the service
//! when neither is given), the summary it prints (`summary`) and exec mode for container
//! entrypoints (`exec`). It drives the engine once over each cache and exits; the
//! clients borrow its command-line helpers (the user's own cache, the usage error).

pub mod cli;
pub(crate) mod exec;
pub(crate) mod summary;
