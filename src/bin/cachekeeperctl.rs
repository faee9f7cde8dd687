//! `cachekeeperctl`: talks to the running cachekeeper service.

fn main() -> std::process::ExitCode {
    cachekeeper::ctl::main(std::env::args_os())
}
