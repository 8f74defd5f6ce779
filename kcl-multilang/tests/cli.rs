//! The command line without emulators: a bad value stops the daemon with an error naming the key and the line; the
//! key table prints.

use std::process::Command;

fn run_with(properties: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.properties");
    std::fs::write(&file, properties).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kcl-multilang")).arg("--properties").arg(&file).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_bad_value_is_an_error_naming_the_key_and_line() {
    let (code, stderr) =
        run_with("executableName = python3 app.py\napplicationName = a\nstreamName = s\nmaxRecords = many\n");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("bad.properties:4: bad value for `maxRecords`: expected a whole number"), "{stderr}");
}

#[test]
fn a_missing_required_key_is_named() {
    let (code, stderr) = run_with("applicationName = a\nstreamName = s\n");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("`executableName` is missing"), "{stderr}");
}

#[test]
fn the_key_table_lists_every_honoured_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_kcl-multilang")).arg("--help-keys").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for key in ["executableName", "streamArn", "initialPositionInStreamExtended", "timeoutInSeconds", "retrievalMode"] {
        assert!(text.contains(&format!("`{key}`")), "{key} missing from:\n{text}");
    }
}
