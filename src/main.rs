//! `cachekeeper`: the one-shot `--init` / `--check`, and the service.

fn main() -> std::process::ExitCode {
    cachekeeper::cli::main(std::env::args_os())
}
