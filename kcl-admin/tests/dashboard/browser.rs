//! Headless Chromium for the dashboard test: the DOM after the page's scripts ran (`--dump-dom`), and a screenshot.
//! Chromium comes from the Debian package `chromium`, which scripts/test installs; a missing browser fails the test
//! with that hint (no skip). `KCL_TEST_CHROMIUM` overrides the binary.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The flags that keep Chromium off the (closed) network and out of the user's profile.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

/// How long one browser run may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(120);

fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("KCL_TEST_CHROMIUM") {
        return PathBuf::from(path);
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Some(dir) = std::env::var_os("PATH")
            .and_then(|paths| std::env::split_paths(&paths).find(|dir| dir.join(name).is_file()))
        {
            return dir.join(name);
        }
    }
    panic!(
        "headless Chromium is not installed: run scripts/test (it installs the Debian packages `chromium` and \
         `chromium-driver` when root), or `apt-get install chromium`, or set KCL_TEST_CHROMIUM"
    );
}

async fn run(args: &[String]) -> String {
    let profile = tempfile::tempdir().expect("browser profile dir");
    let mut command = tokio::process::Command::new(chromium());
    command.args(FLAGS).arg(format!("--user-data-dir={}", profile.path().display())).args(args).kill_on_drop(true);
    let output = tokio::time::timeout(PATIENCE, command.output())
        .await
        .expect("chromium finished in time")
        .expect("run chromium");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "chromium failed ({}):\n{}\n{}",
        output.status,
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The DOM of `url` after `script_millis` of (virtual) time, so the page's refresh script has run.
pub async fn dom(url: &str, script_millis: u64) -> String {
    run(&[format!("--virtual-time-budget={script_millis}"), "--dump-dom".to_owned(), url.to_owned()]).await
}

/// A PNG screenshot of `url` into `path`.
pub async fn screenshot(url: &str, path: &Path, width: u32, height: u32) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("screenshot dir");
    }
    run(&[
        format!("--screenshot={}", path.display()),
        format!("--window-size={width},{height}"),
        "--hide-scrollbars".to_owned(),
        url.to_owned(),
    ])
    .await;
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    assert!(size > 1000, "chromium wrote no screenshot at {}", path.display());
}

/// The value of attribute `name` in each element whose opening tag starts with `tag_start` (e.g. `<tr data-shard=`).
/// Chromium serialises attributes in source order with double quotes, as the page writes them.
pub fn elements<'a>(dom: &'a str, tag_start: &str) -> Vec<&'a str> {
    dom.match_indices(tag_start).map(|(at, _)| &dom[at..at + dom[at..].find('>').unwrap_or(0)]).collect()
}

/// Attribute `name` of one opening tag from [`elements`].
pub fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = tag[start..].find('"')? + start;
    Some(&tag[start..end])
}

/// The text of the element that starts at the first `tag_start` (up to its closing `close`).
pub fn section<'a>(dom: &'a str, tag_start: &str, close: &str) -> &'a str {
    let Some(at) = dom.find(tag_start) else { return "" };
    let end = dom[at..].find(close).map_or(dom.len(), |e| at + e);
    &dom[at..end]
}
