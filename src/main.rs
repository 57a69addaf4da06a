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
    edge_gateway::commands::run(edge_gateway::cli::Cli::parse())
}
