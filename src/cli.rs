//! The command line: `serve` (the default), `check-config`, `migrate`, `cache purge`.
//! `main` only wires these to the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "edge-gateway",
    version,
    about = "OpenAI-compatible caching gateway: L1 (moka) → Redis → SQLite → relay"
)]
pub struct Cli {
    /// TOML configuration file; environment variables override it.
    #[arg(long, global = true, env = "EDGE_GATEWAY_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default when no command is given).
    Serve,
    /// Load and validate the configuration, print it with secrets masked, and exit.
    CheckConfig,
    /// Apply the SQL files of `migrations/` to the SQLite database and exit.
    Migrate,
    /// Hit rate, requests, tokens and dollars saved per group, from the analytics table.
    Analytics(AnalyticsArgs),
    /// Manage the cache tiers.
    Cache {
        #[command(subcommand)]
        action: CacheCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Empty Redis and the local SQLite cache (all entries, or one namespace). Running
    /// instances sharing the Redis drop their in-process copies within
    /// `redis.purge_poll_ms` (the purge generation this bumps).
    Purge {
        /// Only this namespace (a tenant, or `tenant/partition`) and its partitions.
        #[arg(long)]
        namespace: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Debug, clap::Args)]
pub struct AnalyticsArgs {
    /// Start of the range: 24h, 7d, 30m, YYYY-MM-DD or unix ms.
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// End of the range (exclusive), same forms; default now.
    #[arg(long)]
    pub until: Option<String>,
    /// Comma-separated groups: tier, model, region, endpoint, namespace, day, similarity.
    #[arg(long, default_value = "tier")]
    pub group_by: String,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// All regions' figures from the shared Redis counters instead of the local table.
    #[arg(long)]
    pub global: bool,
    /// The semantic cache's shadow-mode report: per threshold, would-be hits, dollars
    /// and disagreements with the fresh answers, and a suggested threshold.
    #[arg(long, conflicts_with_all = ["global", "group_by"])]
    pub semantic: bool,
    /// With --semantic: the disagreement rate the suggested threshold must stay under.
    #[arg(long, default_value_t = 0.02, requires = "semantic")]
    pub max_disagreement: f64,
    /// With --semantic: answers of non-deterministic requests agree when their
    /// embeddings are at least this similar.
    #[arg(long, default_value_t = 0.85, requires = "semantic")]
    pub answer_agreement: f32,
}
