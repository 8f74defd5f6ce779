//! Finding the workspace binaries tests run (`verify-worker`, `kcl-admin`): next to this test executable's profile
//! directory (`target/debug`), where `scripts/test` puts them (its `cargo test --workspace --no-run` builds the
//! binaries of every package that has integration tests). When one is missing or older than the sources it is built
//! from, it is built with `cargo build -p <package> --bin <name>` (the first such build may compile dependencies
//! again with a different feature set; later ones are incremental).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The workspace root.
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The newest modification time of the files under `dir` (recursively).
fn newest(dir: &Path) -> Option<SystemTime> {
    let mut latest: Option<SystemTime> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() { newest(&path) } else { entry.metadata().ok().and_then(|m| m.modified().ok()) };
        latest = latest.max(time);
    }
    latest
}

/// The path of an up-to-date `verify-worker`, building it when needed.
pub fn verify_worker() -> Result<PathBuf, String> {
    workspace_binary(
        "kcl-bench",
        "verify-worker",
        // Its sources: the two library crates and this binary (not the other binaries of kcl-bench).
        &["kcl-core/src", "kcl-dynamo-lease/src", "kcl-bench/src/bin/verify-worker"],
        &["Cargo.lock", "kcl-core/Cargo.toml", "kcl-bench/Cargo.toml"],
    )
}

/// The path of an up-to-date `kcl-admin`, building it when needed.
pub fn kcl_admin() -> Result<PathBuf, String> {
    workspace_binary(
        "kcl-admin",
        "kcl-admin",
        &["kcl-core/src", "kcl-dynamo-lease/src", "kcl-admin/src"],
        &["Cargo.lock", "kcl-core/Cargo.toml", "kcl-admin/Cargo.toml"],
    )
}

/// `target/<profile>/<bin>` of `package`, built with `cargo build` when missing or older than `sources` (folders)
/// and `manifests` (files), relative to the workspace root.
fn workspace_binary(package: &str, bin: &str, sources: &[&str], manifests: &[&str]) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the test executable: {e}"))?;
    // target/<profile>/deps/<test> -> target/<profile>
    let profile_dir = exe.parent().and_then(Path::parent).ok_or("unexpected test executable location")?;
    let binary = profile_dir.join(bin);
    let root = Path::new(ROOT);
    let sources = sources
        .iter()
        .filter_map(|dir| newest(&root.join(dir)))
        .chain(
            manifests.iter().filter_map(|file| std::fs::metadata(root.join(file)).ok().and_then(|m| m.modified().ok())),
        )
        .max();
    let built = std::fs::metadata(&binary).ok().and_then(|m| m.modified().ok());
    if built.is_some() && built >= sources {
        return Ok(binary);
    }
    eprintln!("building {bin} (missing or older than its sources)");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.current_dir(root).args(["build", "-p", package, "--bin", bin]);
    if profile_dir.file_name().is_some_and(|name| name == "release") {
        command.arg("--release");
    }
    let status = command.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() || !binary.is_file() {
        return Err(format!("`cargo build -p {package} --bin {bin}` failed ({status})"));
    }
    Ok(binary)
}
