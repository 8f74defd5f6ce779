//! Finding the Java KCL peer: `interop/java-kcl/target/<build>/java-kcl-peer.jar` with its dependencies in `lib/`,
//! built by `scripts/test`. When a build is missing or older than its sources, it is built here with Maven (offline
//! first, then online), and a failure is an error naming what to install: these tests never skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::SystemTime;

/// The workspace root.
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Which Java KCL the peer is built with (the Maven profiles of `interop/java-kcl/pom.xml`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JavaBuild {
    /// amazon-kinesis-client 2.7.2 (the 2.x lease protocol).
    Kcl2,
    /// amazon-kinesis-client 3.5.1.
    Kcl3,
}

impl JavaBuild {
    /// The Maven profile (and build directory) name.
    pub fn profile(self) -> &'static str {
        match self {
            Self::Kcl2 => "kcl2",
            Self::Kcl3 => "kcl3",
        }
    }
}

fn project() -> PathBuf {
    Path::new(ROOT).join("interop/java-kcl")
}

fn newest(dir: &Path) -> Option<SystemTime> {
    let mut latest: Option<SystemTime> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() { newest(&path) } else { entry.metadata().ok().and_then(|m| m.modified().ok()) };
        latest = latest.max(time);
    }
    latest
}

/// The class path of an up-to-date peer build (`jar:lib/*`), building it when needed.
pub fn java_peer(build: JavaBuild) -> Result<String, String> {
    // One Maven at a time: tests run in parallel and both builds share ~/.m2.
    static BUILDING: Mutex<()> = Mutex::new(());
    let _guard = BUILDING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let project = project();
    let dir = project.join("target").join(build.profile());
    let jar = dir.join("java-kcl-peer.jar");
    let sources = newest(&project.join("src"))
        .max(std::fs::metadata(project.join("pom.xml")).ok().and_then(|m| m.modified().ok()));
    let built = std::fs::metadata(&jar).ok().and_then(|m| m.modified().ok());
    if built.is_none() || built < sources || !dir.join("lib").is_dir() {
        eprintln!("interop: building the Java KCL peer ({}) with Maven", build.profile());
        let run = |offline: bool| {
            let mut command = Command::new("mvn");
            command.current_dir(&project).args(["-q", "-B", "-P", build.profile(), "package"]);
            if offline {
                command.arg("-o");
            }
            command.output()
        };
        let ok = match run(true) {
            Ok(output) if output.status.success() => true,
            Ok(_) => match run(false) {
                Ok(output) if output.status.success() => true,
                Ok(output) => {
                    return Err(format!(
                        "`mvn -P {} package` in {} failed (Maven Central must be reachable for the first build):\n{}{}",
                        build.profile(),
                        project.display(),
                        String::from_utf8_lossy(&output.stdout),
                        String::from_utf8_lossy(&output.stderr)
                    ));
                }
                Err(e) => return Err(format!("cannot run mvn: {e}")),
            },
            Err(e) => {
                return Err(format!(
                    "cannot run Maven (`mvn`: {e}): the Java KCL interop tests need Maven 3.8+ and Java 17 \
                     (e.g. `apt-get install maven`); scripts/test builds the peer"
                ));
            }
        };
        if !ok || !jar.is_file() {
            return Err(format!("Maven did not produce {}", jar.display()));
        }
    }
    Ok(format!("{}:{}/*", jar.display(), dir.join("lib").display()))
}
