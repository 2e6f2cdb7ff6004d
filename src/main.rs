use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: relaying a chat chunk or a live event allocates a few
/// small, short-lived values on one worker thread and frees them on another, the pattern
/// glibc's arenas handle worst (its malloc and free were a fifth of the hub's instructions per
/// chat answer; measured in README §Performance). The binary only: tests keep the system's.
/// Built without transparent huge pages (`no_thp` in Cargo.toml): see there for why.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = switchboard::cli::Cli::parse();
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt.block_on(switchboard::cli::run(cli)),
        Err(e) => {
            let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("switchboard: cannot start the runtime: {e}\n"));
            ExitCode::FAILURE
        }
    }
}
