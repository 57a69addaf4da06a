use crate::helpers::*;

#[test]
fn check_config_prints_the_config_with_secrets_masked() {
    let (code, stdout, stderr) = run_binary(
        &["check-config"],
        &[
            ("RELAY_API_KEY", "sk-relay-very-secret"),
            ("GATEWAY_API_KEYS", "acme:gw-key-1"),
            ("ADMIN_TOKEN", "admin-token-0123456789"),
            ("PORT", "9090"),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("port = 9090"), "{stdout}");
    assert!(stdout.contains("*****"));
    for secret in ["sk-relay-very-secret", "gw-key-1", "admin-token-0123456789"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} leaked"
        );
    }
}

#[test]
fn invalid_config_exits_non_zero_naming_the_key() {
    for (key, value) in [
        ("PORT", "http"),
        ("RELAY_URL", "relay.example"),
        ("CACHE_TTL_SECS", "soon"),
        ("GATEWAY_API_KEYS", "no-colon-here"),
    ] {
        let (code, _, stderr) = run_binary(&["check-config"], &[(key, value)]);
        assert_eq!(code, 2, "{key}");
        assert!(stderr.contains(key), "{key}: {stderr}");
        // `serve` refuses to start on the same input.
        let (code, _, stderr) = run_binary(&["serve"], &[(key, value)]);
        assert_eq!(code, 2, "{key}");
        assert!(stderr.contains(key));
    }
}

#[test]
fn config_file_is_read_and_env_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(&path, "[server]\nport = 7000\n[cache]\nttl_secs = 60\n").unwrap();
    let path = path.to_str().unwrap();
    let (code, stdout, stderr) =
        run_binary(&["--config", path, "check-config"], &[("PORT", "7001")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("port = 7001") && stdout.contains("ttl_secs = 60"),
        "{stdout}"
    );
    let (code, stdout, _) = run_binary(&["check-config"], &[("EDGE_GATEWAY_CONFIG", path)]);
    assert_eq!(code, 0);
    assert!(stdout.contains("port = 7000"));
    std::fs::write(dir.path().join("bad.toml"), "[cache]\nttl = 1\n").unwrap();
    let bad = dir.path().join("bad.toml");
    let (code, _, stderr) = run_binary(&["--config", bad.to_str().unwrap(), "check-config"], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("ttl"), "{stderr}");
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["check-config", "--help"],
    ] {
        let (code, stdout, _) = run_binary(args, &[]);
        assert_eq!(code, 0);
        assert!(stdout.contains("Usage"), "{args:?}");
    }
}
