//! `cachekeeper --init` and `--check`: the command line (`cli`), the summary it prints
//! (`summary`), exec mode for container entrypoints (`exec`), and hints spelled so that
//! they run as printed (`hint`). It drives the engine once over each cache and exits.

pub mod cli;
pub(crate) mod exec;
pub(crate) mod hint;
pub(crate) mod summary;
