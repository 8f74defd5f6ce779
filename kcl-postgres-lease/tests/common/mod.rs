//! What every test of this crate shares: the URL of the PostgreSQL that `scripts/test` starts.
#![allow(dead_code)]

/// The environment variable holding the test PostgreSQL's URL.
pub const POSTGRES_URL_ENV: &str = "KCL_TEST_POSTGRES_URL";

/// The URL of this run's PostgreSQL.
///
/// # Panics
/// When [`POSTGRES_URL_ENV`] is unset: these tests need a real PostgreSQL, which `scripts/test` installs and starts.
pub fn postgres_url() -> String {
    match std::env::var(POSTGRES_URL_ENV) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{POSTGRES_URL_ENV} is not set, so these tests have no PostgreSQL: run them with \
             `scripts/test -p kcl-postgres-lease` (it installs PostgreSQL with apt-get when missing and starts a \
             throwaway cluster), or start one yourself and export {POSTGRES_URL_ENV}=postgres://USER@127.0.0.1:PORT/postgres"
        ),
    }
}
