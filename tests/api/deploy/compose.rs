//! docker-compose.yml: consistent with the config, pulled images fully qualified, and
//! accepted by `docker-compose config`.

use super::*;

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
