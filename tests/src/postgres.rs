//! PostgreSQL for the tests of `kcl-postgres-lease`: the emulator runner makes a throwaway cluster (`initdb` in a
//! temporary directory), starts `postgres` on a free loopback port as a user other than root (the server refuses
//! root), and exports its URL in [`POSTGRES_URL_ENV`]. `scripts/test` installs the Debian package `postgresql`
//! when it is missing. This file holds what the runner needs besides starting a process: finding the binaries,
//! choosing the user, `initdb`, and the readiness probe's message.

use std::path::{Path, PathBuf};

/// Environment variable holding the test PostgreSQL's URL (`postgres://kcl@127.0.0.1:PORT/postgres`).
pub const POSTGRES_URL_ENV: &str = "KCL_TEST_POSTGRES_URL";
/// The superuser `initdb` creates (trust authentication on loopback: a throwaway cluster).
pub const POSTGRES_USER: &str = "kcl";
/// What to do when PostgreSQL is missing.
pub const POSTGRES_INSTALL_HINT: &str = "install the PostgreSQL server: `apt-get install -y postgresql` (Debian; \
                                         scripts/test does it when run as root), or put a directory holding initdb \
                                         and postgres in KCL_POSTGRES_BIN";

/// The directory holding `initdb` and `postgres`: `$KCL_POSTGRES_BIN`, else the newest
/// `/usr/lib/postgresql/<major>/bin` (Debian keeps them off PATH), else the directory of `initdb` on PATH.
pub fn find_postgres_bin() -> Result<PathBuf, String> {
    let usable = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("KCL_POSTGRES_BIN").map(PathBuf::from) {
        return if usable(&dir) {
            Ok(dir)
        } else {
            Err(format!("KCL_POSTGRES_BIN={} holds no initdb and postgres", dir.display()))
        };
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .filter(|(_, dir)| usable(dir))
        .collect();
    debian.sort();
    if let Some((_, dir)) = debian.pop() {
        return Ok(dir);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("initdb"))
        .find_map(|initdb| {
            let real = initdb.canonicalize().ok()?;
            let dir = real.parent()?.to_path_buf();
            usable(&dir).then_some(dir)
        })
        .ok_or_else(|| format!("PostgreSQL (initdb, postgres) is not installed: {POSTGRES_INSTALL_HINT}"))
}

/// The user and group the server runs as: `None` (this process's) unless it is root, which PostgreSQL refuses; then
/// the system user `postgres` (the Debian package creates it), else `nobody`.
pub fn server_user() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    for name in [c"postgres", c"nobody"] {
        // SAFETY: getpwnam with a NUL-terminated name; the record is copied out at once (the runner starts the
        // emulators from one thread, so the static buffer is not shared).
        let entry = unsafe { libc::getpwnam(name.as_ptr()) };
        if !entry.is_null() {
            // SAFETY: non-null, points to a valid passwd record.
            let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
            return Ok(Some((uid, gid)));
        }
    }
    Err("running as root, and neither the user postgres nor nobody exists to run the PostgreSQL server as \
         (it refuses root): `useradd --system postgres`"
        .to_owned())
}

/// Gives `path` to the server's user (nothing to do when running as that user already).
pub fn hand_over(path: &Path, user: Option<(u32, u32)>) -> Result<(), String> {
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| format!("cannot give {} to uid {uid}: {e}", path.display()))?;
    }
    Ok(())
}

/// The arguments of `initdb` for a throwaway cluster in `data`: trust authentication (loopback only, no
/// password to leak), UTF-8, no fsync (nothing here must survive a crash).
pub fn initdb_args(data: &Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec!["-D".into(), data.into()];
    for arg in ["-U", POSTGRES_USER, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"] {
        args.push(arg.into());
    }
    args
}

/// The arguments of `postgres` serving `data` on 127.0.0.1:`port`, its Unix socket in `socket_dir`. Durability off
/// (fsync, full-page writes, synchronous commit): a test cluster is rebuilt on every run, and this halves commit
/// latency on a shared machine.
pub fn server_args(data: &Path, port: u16, socket_dir: &Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec!["-D".into(), data.into(), "-p".into(), port.to_string().into()];
    let socket = format!("unix_socket_directories={}", socket_dir.display());
    for setting in [
        "listen_addresses=127.0.0.1",
        socket.as_str(),
        "fsync=off",
        "full_page_writes=off",
        "synchronous_commit=off",
        "max_connections=200",
    ] {
        args.push("-c".into());
        args.push(setting.into());
    }
    args
}

/// The URL the tests connect to.
pub fn postgres_url(port: u16) -> String {
    format!("postgres://{POSTGRES_USER}@127.0.0.1:{port}/postgres")
}

/// A protocol-3.0 startup message for [`POSTGRES_USER`] on database `postgres`: with trust authentication a ready
/// server answers `R` (AuthenticationOk), one still starting answers `E`.
pub fn startup_message() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608u32.to_be_bytes()); // protocol 3.0
    for part in ["user", POSTGRES_USER, "database", "postgres"] {
        body.extend_from_slice(part.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut message = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    message.extend_from_slice(&body);
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_message_is_length_prefixed() {
        let message = startup_message();
        assert_eq!(u32::from_be_bytes(message[..4].try_into().unwrap()) as usize, message.len());
        assert_eq!(&message[4..8], &196_608u32.to_be_bytes());
        assert!(message.ends_with(b"postgres\0\0"));
    }

    #[test]
    fn server_listens_on_loopback_only() {
        let args = server_args(Path::new("/d"), 5555, Path::new("/s"));
        let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(args.contains(&"listen_addresses=127.0.0.1".to_owned()), "{args:?}");
        assert!(args.windows(2).any(|w| w == ["-p", "5555"]), "{args:?}");
    }
}
