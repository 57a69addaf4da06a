//! The deployment files, checked without a Docker engine: parsed, then held against the
//! configuration loader, the router and each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use edge_gateway::config::{Config, ENV, env_var_names};
use yaml_rust2::{Yaml, YamlLoader};

use crate::helpers::*;

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

fn compose() -> Yaml {
    YamlLoader::load_from_str(&read("docker-compose.yml"))
        .expect("docker-compose.yml parses")
        .remove(0)
}

/// Services with `<<: *anchor` merged in.
fn services(doc: &Yaml) -> BTreeMap<String, Yaml> {
    let mut out = BTreeMap::new();
    for (name, service) in doc["services"].as_hash().expect("services") {
        let mut merged = yaml_rust2::yaml::Hash::new();
        if let Some(base) = service["<<"].as_hash() {
            merged.extend(base.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        for (k, v) in service.as_hash().unwrap() {
            if k.as_str() != Some("<<") {
                merged.insert(k.clone(), v.clone());
            }
        }
        out.insert(name.as_str().unwrap().to_owned(), Yaml::Hash(merged));
    }
    out
}

fn text(y: &Yaml) -> String {
    match y {
        Yaml::String(s) => s.clone(),
        Yaml::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(" "),
        Yaml::Integer(i) => i.to_string(),
        _ => String::new(),
    }
}

#[tokio::test]
async fn docker_compose_is_consistent_and_its_gateway_config_is_valid() {
    let doc = compose();
    let services = services(&doc);
    for required in ["gateway", "relay-stub", "redis-init"] {
        assert!(
            services.contains_key(required),
            "missing service {required}"
        );
    }
    // Every depends_on names a service, with a condition that service can satisfy.
    for (name, service) in &services {
        if let Some(deps) = service["depends_on"].as_hash() {
            for (dep, spec) in deps {
                let dep = dep.as_str().unwrap();
                let target = services
                    .get(dep)
                    .unwrap_or_else(|| panic!("{name} depends on unknown {dep}"));
                match spec["condition"].as_str() {
                    Some("service_healthy") => assert!(
                        !target["healthcheck"].is_badvalue(),
                        "{name} waits for {dep} to be healthy, but {dep} has no healthcheck"
                    ),
                    Some("service_completed_successfully") => {
                        assert_eq!(
                            target["restart"].as_str(),
                            Some("no"),
                            "{dep} must run once"
                        )
                    }
                    other => panic!("{name} -> {dep}: unexpected condition {other:?}"),
                }
            }
        }
    }
    // The gateway's environment is a valid configuration of known variables.
    let gateway = &services["gateway"];
    let env: BTreeMap<String, String> = gateway["environment"]
        .as_hash()
        .expect("gateway environment")
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), text(v)))
        .collect();
    assert_known_env("docker-compose.yml", &env);
    let config = Config::load(None, &env).expect("the compose gateway config is valid");
    let ports: Vec<String> = gateway["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .map(text)
        .collect();
    assert!(
        ports
            .iter()
            .any(|p| p.ends_with(&format!(":{}", config.server.port))),
        "{ports:?} does not publish PORT {}",
        config.server.port
    );
    // The SQLite file is on a declared named volume.
    let declared: BTreeSet<String> = doc["volumes"]
        .as_hash()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    let mounts: Vec<String> = gateway["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .map(text)
        .collect();
    let data_mount = mounts
        .iter()
        .find_map(|m| {
            let (volume, target) = m.split_once(':')?;
            config
                .sqlite
                .path
                .starts_with(target)
                .then(|| volume.to_owned())
        })
        .expect("SQLITE_PATH lies on a mounted volume");
    assert!(
        declared.contains(&data_mount),
        "volume {data_mount} is not declared"
    );
    // RELAY_URL points at the stub service and the port it listens on.
    let relay = reqwest::Url::parse(&config.relay.url).unwrap();
    let stub_host = relay.host_str().unwrap();
    assert!(
        services.contains_key(stub_host),
        "RELAY_URL host {stub_host} is not a service"
    );
    let stub_listen = text(&services[stub_host]["entrypoint"]);
    assert!(
        stub_listen.contains(&format!(":{}", relay.port().unwrap())),
        "the stub listens on {stub_listen}, RELAY_URL says {relay}"
    );
    // The Redis Cluster: at least three masters, the init service creates the cluster
    // from exactly the nodes the gateway is given.
    let nodes: BTreeMap<String, String> = services
        .iter()
        .filter(|(_, s)| text(&s["command"]).contains("--cluster-enabled yes"))
        .map(|(name, s)| {
            let ip = s["networks"]["edge"]["ipv4_address"]
                .as_str()
                .expect("fixed address");
            (name.clone(), format!("{ip}:6379"))
        })
        .collect();
    assert!(nodes.len() >= 3, "{nodes:?}");
    let seeds: BTreeSet<String> = config
        .redis
        .cluster_urls
        .iter()
        .map(|u| u.expose().trim_start_matches("redis://").to_owned())
        .collect();
    assert_eq!(seeds, nodes.values().cloned().collect());
    let init = text(&services["redis-init"]["command"]);
    for addr in nodes.values() {
        assert!(
            init.contains(addr),
            "redis-init does not create the cluster with {addr}"
        );
    }
    assert!(init.contains("--cluster-replicas 0"));
    // The gateway's healthcheck path is served.
    let check = text(&gateway["healthcheck"]["test"]);
    assert!(check.contains("/healthz"));
    assert_route_ok("/healthz").await;
}

#[test]
fn dockerfile_is_multi_stage_cached_non_root_and_serves() {
    let dockerfile = read("Dockerfile");
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    let from: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert!(from.len() >= 2, "multi-stage");
    let runtime = from
        .iter()
        .find(|l| l.ends_with("AS runtime"))
        .expect("a runtime stage");
    assert!(runtime.contains("slim"), "small runtime image");
    let position = |needle: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("no line starting with {needle}"))
    };
    assert!(
        position("COPY Cargo.toml Cargo.lock") < position("COPY src"),
        "dependencies are built before the sources are copied"
    );
    assert!(dockerfile.contains("ca-certificates"));
    assert!(dockerfile.contains("EXPOSE 8080"));
    assert!(dockerfile.contains("PORT=8080"));
    let fly_env = fly_env();
    assert!(dockerfile.contains(&format!("SQLITE_PATH={}", fly_env["SQLITE_PATH"])));
    let cmd = lines.iter().find(|l| l.starts_with("CMD ")).expect("CMD");
    assert!(
        cmd.contains("\"edge-gateway\"") && cmd.contains("\"serve\""),
        "{cmd}"
    );
    // The entrypoint drops root before running anything.
    let entrypoint = read("deploy/entrypoint.sh");
    assert!(entrypoint.contains("setpriv --reuid=edge"));
    let status = std::process::Command::new("sh")
        .args(["-n", "deploy/entrypoint.sh"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success(), "entrypoint.sh has a syntax error");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            std::fs::metadata(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/entrypoint.sh"))
                .unwrap()
                .permissions()
                .mode();
        assert!(mode & 0o111 != 0, "entrypoint.sh must be executable");
    }
    // The stub is test code: only the `demo` stage (the compose stack's stub) has it.
    let stage_of = |needle: &str| {
        let at = position(needle);
        lines[..at]
            .iter()
            .rev()
            .find(|l| l.starts_with("FROM "))
            .map(|l| l.to_string())
            .unwrap_or_default()
    };
    assert!(
        stage_of("COPY --from=stub-build").ends_with("AS demo"),
        "the stub is copied into the demo stage only"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("relay_stub") && l.starts_with("COPY"))
            .count(),
        1,
        "exactly one image gets the stub"
    );
    let last_from = from.last().unwrap();
    assert!(
        last_from.starts_with("FROM runtime"),
        "the default target is the production image: {last_from}"
    );
    for image in from.iter().filter(|l| {
        !l.contains(" AS demo") && !l.starts_with("FROM runtime") && !l.starts_with("FROM build")
    }) {
        assert!(
            image.contains("docker.io/"),
            "fully qualified image names (podman, registries without a search list): {image}"
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

/// Podman and registries without a search list refuse short names (`rust:1.95`): every
/// image the Dockerfile and the compose file pull names its registry.
#[test]
fn every_pulled_image_is_fully_qualified() {
    let stages: Vec<String> = read("Dockerfile")
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
        .collect();
    let mut pulled: Vec<String> = read("Dockerfile")
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|image| !stages.iter().any(|s| s == image))
        .map(str::to_owned)
        .collect();
    assert!(pulled.len() >= 2, "{pulled:?}");
    for service in services(&compose()).values() {
        if let Some(image) = service["image"].as_str() {
            pulled.push(image.to_owned());
        }
    }
    for image in &pulled {
        let registry = image.split('/').next().unwrap_or_default();
        assert!(
            image.contains('/') && (registry.contains('.') || registry.contains(':')),
            "{image} does not name its registry"
        );
    }
}

/// The compose file as Compose itself reads it (Debian's `docker-compose` package;
/// `scripts/test` and `.ci/run` install it): beyond our own parsing, the real validator.
#[test]
fn docker_compose_config_accepts_the_compose_file() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml");
    let output = std::process::Command::new("docker-compose")
        .args(["-f", file, "config", "-q"])
        .output()
        .expect("docker-compose is installed (scripts/test installs it as root: apt-get install docker-compose)");
    assert!(
        output.status.success(),
        "docker-compose config rejected the file: {}",
        String::from_utf8_lossy(&output.stderr)
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
