//! The deployment files, checked without a Docker engine: parsed, then held against the
//! configuration loader, the router and each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use edge_gateway::config::{Config, ENV, env_var_names};
use yaml_rust2::{Yaml, YamlLoader};

use crate::helpers::*;

mod compose;
mod image;

fn read(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn fly() -> toml::Table {
    toml::from_str(&read("fly.toml")).expect("fly.toml parses")
}

fn fly_env() -> BTreeMap<String, String> {
    fly()["env"]
        .as_table()
        .expect("[env]")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string values").to_owned()))
        .collect()
}

/// Every variable a deployment file sets must be one the gateway reads.
fn assert_known_env(file: &str, env: &BTreeMap<String, String>) {
    for key in env.keys() {
        assert!(
            env_var_names().any(|name| name == key),
            "{file} sets {key}, which the gateway does not read"
        );
    }
}

/// The path of a served route answers 200 on a real app.
async fn assert_route_ok(path: &str) {
    let app = spawn_app().await;
    let r = app.get(path).await;
    assert_eq!(r.status(), 200, "{path} is not served");
}

#[tokio::test]
async fn fly_toml_agrees_with_the_config_and_the_router() {
    let fly = fly();
    let env = fly_env();
    assert_known_env("fly.toml", &env);
    let config = Config::load(None, &env).expect("fly.toml's [env] is a valid configuration");
    let service = fly["http_service"].as_table().expect("[http_service]");
    assert_eq!(
        service["internal_port"].as_integer(),
        Some(i64::from(config.server.port))
    );
    assert_eq!(config.server.port, Config::default().server.port);
    assert_eq!(
        config.server.bind.to_string(),
        "0.0.0.0",
        "Fly's proxy must reach the app"
    );
    assert_eq!(service["force_https"].as_bool(), Some(true));
    assert_eq!(service["auto_stop_machines"].as_str(), Some("stop"));
    assert_eq!(service["auto_start_machines"].as_bool(), Some(true));
    assert!(service["min_machines_running"].as_integer().unwrap() >= 1);
    let concurrency = service["concurrency"]
        .as_table()
        .expect("concurrency limits");
    assert!(concurrency["soft_limit"].as_integer() <= concurrency["hard_limit"].as_integer());
    let checks = service["checks"]
        .as_array()
        .expect("[[http_service.checks]]");
    for check in checks {
        assert_route_ok(check["path"].as_str().unwrap()).await;
    }
    assert!(
        checks
            .iter()
            .any(|c| c["path"].as_str() == Some("/healthz"))
    );

    let mounts = fly["mounts"].as_array().expect("[[mounts]]");
    let destination = mounts[0]["destination"].as_str().unwrap();
    assert!(
        config.sqlite.path.starts_with(destination),
        "SQLITE_PATH {} is not on the volume {destination}",
        config.sqlite.path.display()
    );
    assert!(fly["app"].as_str().is_some() && fly["primary_region"].as_str().is_some());
    let dockerfile = fly["build"]["dockerfile"].as_str().unwrap();
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(dockerfile)
            .exists()
    );

    let kill_timeout: u64 = fly["kill_timeout"]
        .as_str()
        .unwrap()
        .trim_end_matches('s')
        .parse()
        .unwrap();
    assert!(
        kill_timeout > config.server.shutdown_grace_secs,
        "Fly must wait for the drain"
    );
    assert_eq!(fly["kill_signal"].as_str(), Some("SIGTERM"));

    let vm = &fly["vm"].as_array().expect("[[vm]]")[0];
    let memory_mb: u64 = vm["memory"]
        .as_str()
        .unwrap()
        .trim_end_matches("gb")
        .parse::<u64>()
        .unwrap()
        * 1024;
    assert!(memory_mb * 1024 * 1024 >= config.cache.l1_max_bytes + 64 * 1024 * 1024);
    for secret in [
        "RELAY_API_KEY",
        "GATEWAY_API_KEYS",
        "ADMIN_TOKEN",
        "REDIS_URL",
    ] {
        assert!(
            !env.contains_key(secret),
            "{secret} belongs in fly secrets, not fly.toml"
        );
    }
}

/// The README's configuration table and the gateway's table of environment variables
/// list the same variables, with the same TOML keys: a new setting cannot be loaded but
/// undocumented, or documented but not loaded.
#[test]
fn the_readme_documents_every_environment_variable_and_no_other() {
    let readme = read("README.md");
    let section = readme
        .split("## Configuration")
        .nth(1)
        .and_then(|s| s.split("\n### ").next())
        .expect("a Configuration section");
    let mut documented = BTreeMap::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let names: Vec<&str> = cells[1].split('`').skip(1).step_by(2).collect();
        let keys: Vec<&str> = cells[2].split('`').skip(1).step_by(2).collect();
        for (i, name) in names.iter().enumerate() {
            documented.insert(name.to_string(), keys.get(i).map(|k| k.to_string()));
        }
    }
    for var in ENV {
        let key = documented.remove(var.name);
        assert!(key.is_some(), "README's table lacks {}", var.name);
        if var.toml_key != "—" {
            assert_eq!(
                key.flatten().as_deref(),
                Some(var.toml_key),
                "{}: README's TOML key",
                var.name
            );
        }
    }
    assert!(
        documented.is_empty(),
        "README documents variables the gateway does not read: {:?}",
        documented.keys()
    );
}

/// The Grafana board in `deploy/grafana/` only queries metrics the gateway exports: every
/// `edge_gateway_*` name in its expressions is a family in `/metrics` once traffic of
/// every kind the board shows has passed (miss, hit, semantic hit and refusal, a leased
/// miss over Redis).
#[tokio::test]
async fn the_grafana_board_queries_only_metrics_that_exist() {
    let board: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/edge-gateway.json")).expect("valid JSON");
    let mut queried = BTreeSet::new();
    for panel in board["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(at) = rest.find("edge_gateway_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(&name)
                    .to_owned();
                queried.insert(family);
            }
        }
    }
    assert!(queried.len() >= 12, "{queried:?}");

    let redis = RedisServer::start();
    let app = spawn_app_with(|c| {
        c.redis.url = Some(edge_gateway::config::Secret::new(redis.url()));
        c.semantic.mode = edge_gateway::config::SemanticMode::On;
        c.semantic.threshold = 0.7;
    })
    .await;
    for question in [
        "Is the store open on Sunday?",
        "Is the store open on Sunday?",
        "Is the shop open on Sunday?",
        "Is the store closed on Sunday?",
    ] {
        let response = app.chat(&chat_body(question)).await;
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let missing: Vec<&String> = queried
        .iter()
        .filter(|family| !metrics.contains(&format!("# TYPE {family} ")))
        .collect();
    assert!(
        missing.is_empty(),
        "the board queries metrics that do not exist: {missing:?}"
    );
    app.stop().await;
}
