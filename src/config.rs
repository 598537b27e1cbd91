//! Settings: `config/walgate.yaml`, overridden by environment variables.
//!
//! Every field is documented in `docs/configuration.md`. Unknown fields are rejected so that a
//! misspelt setting fails at startup instead of being ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::http::WebSocketLimits;
use crate::webhooks::delivery::RetryPolicy;
use crate::webhooks::dispatch::DispatchConfig;

/// The default config file, read when it exists and no other path is given.
pub const DEFAULT_CONFIG_PATH: &str = "config/walgate.yaml";

/// Error from loading or validating the settings.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_yaml_ng::Error,
    },
    #[error("invalid setting {name}: {message}")]
    Invalid { name: &'static str, message: String },
    #[error(
        "no database to connect to: set DATABASE_URL (for example \
         postgres://user:password@localhost:5432/app) or database_url in the config file"
    )]
    MissingDatabaseUrl,
}

/// The settings file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    database_url: Option<String>,
    listen: Option<String>,
    slot: Option<String>,
    publication: Option<String>,
    #[serde(default)]
    replication: ReplicationFile,
    #[serde(default)]
    websocket: WebSocketFile,
    triggers: Option<PathBuf>,
    admin_token: Option<String>,
    #[serde(default)]
    webhooks: WebhooksFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhooksFile {
    batch_size: Option<i64>,
    poll_interval_ms: Option<u64>,
    retry_base_ms: Option<u64>,
    retry_max_ms: Option<u64>,
    retention_hours: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplicationFile {
    status_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebSocketFile {
    max_message_bytes: Option<usize>,
    max_frame_bytes: Option<usize>,
    client_queue_bytes: Option<usize>,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Connection string as given (URL or key=value).
    pub database_url: String,
    /// The parsed connection settings.
    pub database: tokio_postgres::Config,
    pub listen: SocketAddr,
    pub slot: String,
    pub publication: String,
    pub status_interval: Duration,
    pub websocket: WebSocketLimits,
    /// Trigger definitions file; None means no triggers.
    pub triggers: Option<PathBuf>,
    /// Bearer token of the admin API; None turns the API off.
    pub admin_token: Option<String>,
    pub webhooks: DispatchConfig,
}

/// The default trigger file, read when it exists and no other path is given.
pub const DEFAULT_TRIGGERS_PATH: &str = "config/triggers.yaml";

impl Config {
    /// Loads the settings: the YAML file at `path` (or `WALGATE_CONFIG`, or
    /// `config/walgate.yaml` when it exists), then environment variables on top.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let path = path
            .map(Path::to_path_buf)
            .or_else(|| env("WALGATE_CONFIG").map(PathBuf::from));
        let file = match path {
            Some(path) => read_file(&path)?,
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
                read_file(Path::new(DEFAULT_CONFIG_PATH))?
            }
            None => FileConfig::default(),
        };
        Self::resolve(file, &env)
    }

    /// Builds settings from YAML text and an environment look-up, for tests and embedding.
    pub fn from_yaml(
        yaml: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let file = serde_yaml_ng::from_str(yaml).map_err(|source| ConfigError::Parse {
            path: PathBuf::from("<inline>"),
            source,
        })?;
        Self::resolve(file, env)
    }

    fn resolve(
        file: FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let database_url = env("DATABASE_URL")
            .or(file.database_url)
            .ok_or(ConfigError::MissingDatabaseUrl)?;
        let mut database = tokio_postgres::Config::from_str(&database_url).map_err(|err| {
            ConfigError::Invalid {
                name: "DATABASE_URL",
                message: format!(
                    "{err}; use a URL (postgres://user:password@host:5432/db) or key=value \
                     pairs (host=... user=... dbname=...)"
                ),
            }
        })?;
        if database.get_application_name().is_none() {
            database.application_name("walgate");
        }
        let listen = env("WALGATE_LISTEN")
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen = listen.parse().map_err(|err| ConfigError::Invalid {
            name: "WALGATE_LISTEN",
            message: format!("{listen:?} is not an address like 127.0.0.1:8080 ({err})"),
        })?;
        let slot = env("WALGATE_SLOT")
            .or(file.slot)
            .unwrap_or_else(|| "walgate".into());
        validate_slot_name(&slot)?;
        let publication = env("WALGATE_PUBLICATION")
            .or(file.publication)
            .unwrap_or_else(|| "walgate".into());
        validate_publication_name(&publication)?;
        let status_ms = file.replication.status_interval_ms.unwrap_or(10_000);
        if !(100..=30_000).contains(&status_ms) {
            return Err(ConfigError::Invalid {
                name: "replication.status_interval_ms",
                message: format!(
                    "{status_ms} is out of range: use 100 to 30000, well below the server's \
                     wal_sender_timeout (60000 by default)"
                ),
            });
        }
        let triggers = env("WALGATE_TRIGGERS")
            .map(PathBuf::from)
            .or(file.triggers)
            .or_else(|| {
                let default = Path::new(DEFAULT_TRIGGERS_PATH);
                default.exists().then(|| default.to_path_buf())
            });
        let admin_token = env("WALGATE_ADMIN_TOKEN").or(file.admin_token);
        if admin_token.as_ref().is_some_and(|token| token.len() < 16) {
            return Err(ConfigError::Invalid {
                name: "WALGATE_ADMIN_TOKEN",
                message: "the admin token must be at least 16 characters; generate one with \
                          `openssl rand -hex 32`"
                    .into(),
            });
        }
        Ok(Config {
            database_url,
            database,
            listen,
            slot,
            publication,
            status_interval: Duration::from_millis(status_ms),
            websocket: websocket_limits(file.websocket)?,
            triggers,
            admin_token,
            webhooks: dispatch_config(file.webhooks)?,
        })
    }
}

fn dispatch_config(file: WebhooksFile) -> Result<DispatchConfig, ConfigError> {
    let defaults = DispatchConfig::default();
    let in_range = |name: &'static str, value: u64, range: std::ops::RangeInclusive<u64>| {
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError::Invalid {
                name,
                message: format!(
                    "{value} is out of range; use {} to {}",
                    range.start(),
                    range.end()
                ),
            })
        }
    };
    let batch_size = match file.batch_size {
        Some(size) => in_range("webhooks.batch_size", size.max(0) as u64, 1..=10_000)? as i64,
        None => defaults.batch_size,
    };
    let millis =
        |value: Option<u64>, default: Duration| value.map(Duration::from_millis).unwrap_or(default);
    let poll_interval = millis(file.poll_interval_ms, defaults.poll_interval);
    in_range(
        "webhooks.poll_interval_ms",
        poll_interval.as_millis() as u64,
        10..=60_000,
    )?;
    let retry = RetryPolicy {
        base: millis(file.retry_base_ms, defaults.retry.base),
        max: millis(file.retry_max_ms, defaults.retry.max),
    };
    in_range(
        "webhooks.retry_base_ms",
        retry.base.as_millis() as u64,
        1..=3_600_000,
    )?;
    in_range(
        "webhooks.retry_max_ms",
        retry.max.as_millis() as u64,
        1..=86_400_000,
    )?;
    let retention = match file.retention_hours {
        Some(hours) => {
            Duration::from_secs(in_range("webhooks.retention_hours", hours, 0..=8760)? * 3600)
        }
        None => defaults.retention,
    };
    Ok(DispatchConfig {
        batch_size,
        poll_interval,
        retry,
        retention,
    })
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_yaml_ng::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

fn websocket_limits(file: WebSocketFile) -> Result<WebSocketLimits, ConfigError> {
    let defaults = WebSocketLimits::default();
    let limits = WebSocketLimits {
        max_message_bytes: file.max_message_bytes.unwrap_or(defaults.max_message_bytes),
        max_frame_bytes: file.max_frame_bytes.unwrap_or(defaults.max_frame_bytes),
        client_queue_bytes: file
            .client_queue_bytes
            .unwrap_or(defaults.client_queue_bytes),
    };
    if limits.max_message_bytes < 1024 {
        return Err(ConfigError::Invalid {
            name: "websocket.max_message_bytes",
            message: format!(
                "{} is too small to hold a subscribe message; use at least 1024",
                limits.max_message_bytes
            ),
        });
    }
    if limits.max_frame_bytes < limits.max_message_bytes {
        return Err(ConfigError::Invalid {
            name: "websocket.max_frame_bytes",
            message: format!(
                "{} is below websocket.max_message_bytes ({}); it must be at least as large",
                limits.max_frame_bytes, limits.max_message_bytes
            ),
        });
    }
    if limits.client_queue_bytes < limits.max_message_bytes {
        return Err(ConfigError::Invalid {
            name: "websocket.client_queue_bytes",
            message: format!(
                "{} is below websocket.max_message_bytes ({}); a client must be able to queue \
                 at least one reply",
                limits.client_queue_bytes, limits.max_message_bytes
            ),
        });
    }
    Ok(limits)
}

/// Replication slot names may hold only lower-case letters, digits and underscores, up to
/// 63 bytes (PostgreSQL's rule).
fn validate_slot_name(slot: &str) -> Result<(), ConfigError> {
    let valid = !slot.is_empty()
        && slot.len() <= 63
        && slot
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        name: "WALGATE_SLOT",
        message: format!(
            "{slot:?} is not a valid slot name: use 1 to 63 lower-case letters, digits and \
             underscores"
        ),
    })
}

fn validate_publication_name(publication: &str) -> Result<(), ConfigError> {
    if !publication.is_empty() && publication.len() <= 63 && !publication.contains('\0') {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        name: "WALGATE_PUBLICATION",
        message: format!("{publication:?} is not a valid publication name: use 1 to 63 bytes"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_apply() {
        let config = Config::from_yaml("database_url: postgres://u@localhost/db", &no_env).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.slot, "walgate");
        assert_eq!(config.publication, "walgate");
        assert_eq!(config.status_interval, Duration::from_secs(10));
        assert_eq!(config.websocket.max_message_bytes, 65536);
    }

    #[test]
    fn environment_overrides_file() {
        let env = |name: &str| match name {
            "DATABASE_URL" => Some("host=/tmp dbname=other".to_string()),
            "WALGATE_LISTEN" => Some("127.0.0.1:9000".to_string()),
            "WALGATE_SLOT" => Some("s2".to_string()),
            _ => None,
        };
        let config = Config::from_yaml("database_url: postgres://u@h/db\nslot: s1", &env).unwrap();
        assert_eq!(config.database_url, "host=/tmp dbname=other");
        assert_eq!(config.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(config.slot, "s2");
    }

    #[test]
    fn missing_database_url_is_explained() {
        let err = Config::from_yaml("{}", &no_env).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("no database to connect to: set DATABASE_URL"));
    }

    #[test]
    fn unknown_field_is_rejected() {
        let err = Config::from_yaml("database_url: x\nlisten_on: y", &no_env).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `listen_on`"),
            "{err}"
        );
    }

    #[test]
    fn bad_slot_name_is_rejected() {
        let err =
            Config::from_yaml("database_url: postgres://h/db\nslot: My-Slot", &no_env).unwrap_err();
        assert!(
            err.to_string()
                .contains("\"My-Slot\" is not a valid slot name"),
            "{err}"
        );
    }
}
