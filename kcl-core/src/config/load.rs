//! Reading a [`WorkerConfig`] from a TOML file and `KCL_…` environment variables: defaults, then the file, then the
//! environment (each later source wins), then the code's own builder calls. Every error names the key (or variable)
//! and where it came from.

use std::collections::HashMap;
use std::path::Path;

use super::WorkerConfig;
use super::file::{FileSettings, KEYS};
use crate::error::KclError;

/// The prefix of the environment variables read.
pub const ENV_PREFIX: &str = "KCL_";

/// Where a key's value came from, for messages.
enum Origin {
    /// The file, under this name (the key or a Java alias).
    File(String),
    /// This environment variable.
    Env(String),
}

impl WorkerConfig {
    /// The defaults with the settings of this TOML text laid over them (no environment variables).
    ///
    /// ```
    /// # use kcl_core::config::WorkerConfig;
    /// let config = WorkerConfig::from_toml_str("failoverTimeMillis = 20000\nmax_records = 500").unwrap();
    /// assert_eq!(config.lease.lease_duration(), std::time::Duration::from_secs(20));
    /// ```
    pub fn from_toml_str(text: &str) -> Result<Self, KclError> {
        Self::default().with_toml_and_vars(Some(text), "the configuration", std::iter::empty())
    }

    /// The defaults, then the TOML file at `path` (when given), then the `KCL_…` variables of this process's
    /// environment: what an application's `--config FILE` option should call.
    pub fn load(path: Option<&Path>) -> Result<Self, KclError> {
        Self::default().with_file_and_env(path)
    }

    /// These settings, then the TOML file at `path` (when given), then the `KCL_…` variables of this process's
    /// environment laid over them: for an application whose own choices should give way to its configuration.
    pub fn with_file_and_env(self, path: Option<&Path>) -> Result<Self, KclError> {
        let text = match path {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|error| {
                KclError::InvalidConfig(format!("could not read the configuration file {}: {error}", path.display()))
            })?),
            None => None,
        };
        let label = path.map_or_else(|| "the configuration".to_owned(), |p| p.display().to_string());
        self.with_toml_and_vars(text.as_deref(), &label, std::env::vars())
    }

    /// These settings, then `toml` (when given; `label` names it in messages, e.g. its path), then the `KCL_…`
    /// variables among `vars` laid over them. Variables without a matching key are ignored (other tools use the
    /// prefix too). A lease key replaces the lease settings with the lease defaults plus the lease keys given.
    pub fn with_toml_and_vars(
        self,
        toml: Option<&str>,
        label: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, KclError> {
        let mut table = match toml {
            Some(text) => text
                .parse::<toml::Table>()
                .map_err(|error| KclError::InvalidConfig(format!("{label} is not valid TOML: {error}")))?,
            None => toml::Table::new(),
        };
        let mut origins: HashMap<&'static str, Origin> = HashMap::new();
        for key in table.keys() {
            match canonical(key) {
                Some(canonical) => {
                    if let Some(Origin::File(other)) = origins.insert(canonical, Origin::File(key.clone())) {
                        return Err(KclError::InvalidConfig(format!(
                            "{label}: `{other}` and `{key}` both set {canonical}; keep one (the other is another \
                             name of the same setting)"
                        )));
                    }
                }
                None => {
                    return Err(KclError::InvalidConfig(format!(
                        "{label}: unknown key `{key}` (the keys are listed in the kcl_core::config documentation)"
                    )));
                }
            }
        }
        for (name, value) in vars {
            let Some(canonical) = name.strip_prefix(ENV_PREFIX).and_then(env_key) else { continue };
            // The environment wins over the file, whichever name the file used.
            table.retain(|key, _| self::canonical(key) != Some(canonical));
            table.insert(canonical.to_owned(), toml::Value::String(value));
            origins.insert(canonical, Origin::Env(name));
        }
        let place = |key: &'static str| match origins.get(key) {
            Some(Origin::Env(var)) => format!("environment variable {var} ({key})"),
            Some(Origin::File(name)) if name != key => format!("`{name}` ({key}) in {label}"),
            _ => format!("`{key}` in {label}"),
        };
        let settings: FileSettings = match toml::Value::Table(table.clone()).try_into() {
            Ok(settings) => settings,
            Err(error) => {
                // Find the key to blame: every key alone, until one fails.
                for (key, value) in &table {
                    let alone = toml::Table::from_iter([(key.clone(), value.clone())]);
                    if let Err(error) = toml::Value::Table(alone).try_into::<FileSettings>() {
                        let key = canonical(key).unwrap_or("?");
                        return Err(KclError::InvalidConfig(format!("{}: {}", place(key), message(&error))));
                    }
                }
                return Err(KclError::InvalidConfig(format!("{label}: {}", message(&error))));
            }
        };
        let config = settings
            .apply_to(self)
            .map_err(|(key, problem)| KclError::InvalidConfig(format!("{}: {problem}", place(key))))?;
        config.validate(false, false).map_err(|error| match error {
            KclError::InvalidConfig(problem) => KclError::InvalidConfig(format!("{label}: {problem}")),
            other => other,
        })?;
        Ok(config)
    }
}

/// The message of a deserialisation error, on one line.
fn message(error: &toml::de::Error) -> String {
    error.message().trim().replace('\n', " ")
}

/// The key `name` stands for: the key itself or one of its Java aliases, exactly.
fn canonical(name: &str) -> Option<&'static str> {
    KEYS.iter().find(|(key, aliases)| *key == name || aliases.contains(&name)).map(|(key, _)| *key)
}

/// The key an environment variable (without its prefix) stands for: the key upper-cased, or a Java alias in upper
/// snake case (`FAILOVER_TIME_MILLIS`).
fn env_key(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    KEYS.iter()
        .find(|(key, aliases)| *key == name || aliases.iter().any(|alias| snake_case(alias) == name))
        .map(|(key, _)| *key)
}

/// `failoverTimeMillis` → `failover_time_millis`.
pub(super) fn snake_case(camel: &str) -> String {
    let mut snake = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            if !snake.is_empty() {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    snake
}
