//! The Dockerfile: multi-stage, cached, non-root, serving.

use super::*;

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

/// The dependency stage, replayed here: the files its `COPY`s bring, the placeholder
/// sources its `RUN` makes, then `cargo metadata --locked`. A workspace member or path
/// dependency whose manifest the stage does not copy fails the image build at its first
/// step (it did, once the test kit became a crate).
#[test]
fn the_dockerfile_dependency_stage_resolves_the_workspace() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = read("Dockerfile").replace("\\\n", " ");
    let stage = tempfile::tempdir().unwrap();
    let mut placeholders = None;
    for line in dockerfile.lines().map(str::trim) {
        if let Some(args) = line.strip_prefix("COPY ") {
            assert!(
                !args.starts_with("--from"),
                "a COPY --from before the build: {line}"
            );
            let mut parts: Vec<&str> = args.split_whitespace().collect();
            let dest = parts.pop().unwrap();
            for source in parts {
                let target = if dest.ends_with('/') || dest == "." {
                    stage.path().join(dest).join(source)
                } else {
                    stage.path().join(dest)
                };
                copy_tree(&root.join(source), &target);
            }
        } else if let Some(script) = line.strip_prefix("RUN ")
            && let Some((before, _)) = script.split_once("cargo build")
        {
            placeholders = Some(before.trim_end().trim_end_matches("&&").to_owned());
            break;
        }
    }
    let placeholders = placeholders.expect("a RUN with cargo build in the build stage");
    let made = std::process::Command::new("sh")
        .args(["-c", &placeholders])
        .current_dir(stage.path())
        .status()
        .unwrap();
    assert!(made.success(), "{placeholders}");
    let metadata = std::process::Command::new(option_env!("CARGO").unwrap_or("cargo"))
        .args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .args([
            "--filter-platform",
            &format!("{}-unknown-linux-gnu", std::env::consts::ARCH),
        ])
        .current_dir(stage.path())
        .output()
        .unwrap();
    assert!(
        metadata.status.success(),
        "the dependency stage cannot load the workspace:\n{}",
        String::from_utf8_lossy(&metadata.stderr)
    );
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    }
}
