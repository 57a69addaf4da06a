//! The `edge-gateway` binary: parses its arguments; [`edge_gateway::commands`] does
//! the rest.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: every request allocates (the L1-hit profile showed glibc malloc/free at ~7%
/// of CPU). Its effect was not measured apart from the changes that landed with it; see
/// bench/RESULTS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // SAFETY: first thing in main: no SQLite connection is open, no other thread runs.
    unsafe { edge_gateway::commands::sqlite_on_mimalloc() };
    edge_gateway::commands::run(edge_gateway::cli::Cli::parse())
}
