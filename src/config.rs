//! Settings: `config/walgate.yaml`, overridden by environment variables.
//!
//! Every field is documented in `docs/configuration.md`. Unknown fields are rejected so that a
//! misspelt setting fails at startup instead of being ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::auth::{AuthConfig, AuthFile};
use crate::http::WebSocketLimits;
use crate::rest::schema::Exposure;
use crate::rest::RestConfig;
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
    #[serde(default)]
    rest: RestFile,
    #[serde(default)]
    auth: AuthFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestFile {
    schemas: Option<Vec<String>>,
    tables: Option<Vec<String>>,
    exclude_tables: Option<Vec<String>>,
    default_limit: Option<u64>,
    max_limit: Option<u64>,
    max_body_bytes: Option<usize>,
    pool_size: Option<usize>,
    stream_batch_rows: Option<i32>,
    schema_refresh_ms: Option<u64>,
    statement_timeout_ms: Option<u64>,
    allow_privileged_roles: Option<bool>,
    database_url: Option<String>,
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
    pub rest: RestConfig,
    pub auth: AuthConfig,
}

/// The default trigger file, read when it exists and no other path is given.
pub const DEFAULT_TRIGGERS_PATH: &str = "config/triggers.yaml";

impl Config {
    /// Loads the settings: the YAML file at `path` (or `WALGATE_CONFIG`, or
    /// `config/walgate.yaml` when it exists), then environment variables on top.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env = |name: &str| std::env::var(name).ok();
        let path = path.map(Path::to_path_buf).or_else(|| {
            env("WALGATE_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
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
    /// `env` returns a variable's value as set, empty or not.
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
        raw_env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let env = |name: &str| raw_env(name).filter(|value| !value.is_empty());
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
            rest: rest_config(file.rest, &env)?,
            auth: AuthConfig::resolve(file.auth, raw_env)?,
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

fn rest_config(
    file: RestFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RestConfig, ConfigError> {
    let defaults = RestConfig::default();
    let invalid = |name: &'static str, message: String| ConfigError::Invalid { name, message };
    let schemas = file.schemas.unwrap_or(defaults.exposure.schemas);
    if schemas.is_empty() || schemas.iter().any(|s| s.is_empty() || s.len() > 63) {
        return Err(invalid(
            "rest.schemas",
            format!("{schemas:?} must list at least one schema name of 1 to 63 bytes"),
        ));
    }
    let default_limit = file.default_limit.unwrap_or(defaults.default_limit);
    let max_limit = file.max_limit.unwrap_or(defaults.max_limit);
    if !(1..=1_000_000).contains(&max_limit) {
        return Err(invalid(
            "rest.max_limit",
            format!("{max_limit} is out of range; use 1 to 1000000"),
        ));
    }
    if default_limit == 0 || default_limit > max_limit {
        return Err(invalid(
            "rest.default_limit",
            format!("{default_limit} must be between 1 and rest.max_limit ({max_limit})"),
        ));
    }
    let max_body_bytes = file.max_body_bytes.unwrap_or(defaults.max_body_bytes);
    if !(1024..=1024 * 1024 * 1024).contains(&max_body_bytes) {
        return Err(invalid(
            "rest.max_body_bytes",
            format!("{max_body_bytes} is out of range; use 1024 to 1073741824"),
        ));
    }
    let pool_size = file.pool_size.unwrap_or(defaults.pool_size);
    if !(1..=1000).contains(&pool_size) {
        return Err(invalid(
            "rest.pool_size",
            format!(
                "{pool_size} is out of range; use 1 to 1000, below the server's max_connections"
            ),
        ));
    }
    let stream_batch_rows = file.stream_batch_rows.unwrap_or(defaults.stream_batch_rows);
    if !(1..=1_000_000).contains(&stream_batch_rows) {
        return Err(invalid(
            "rest.stream_batch_rows",
            format!("{stream_batch_rows} is out of range; use 1 to 1000000"),
        ));
    }
    let schema_refresh = file
        .schema_refresh_ms
        .map(Duration::from_millis)
        .unwrap_or(defaults.schema_refresh);
    if !schema_refresh.is_zero() && schema_refresh < Duration::from_millis(100) {
        return Err(invalid(
            "rest.schema_refresh_ms",
            format!(
                "{} is too short; use 0 to turn the timer off, or at least 100",
                schema_refresh.as_millis()
            ),
        ));
    }
    let statement_timeout = file
        .statement_timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(defaults.statement_timeout);
    if statement_timeout > Duration::from_secs(24 * 3600) {
        return Err(invalid(
            "rest.statement_timeout_ms",
            format!(
                "{} is out of range; use 0 (the database's setting) to 86400000",
                statement_timeout.as_millis()
            ),
        ));
    }
    let database = match env("WALGATE_REST_DATABASE_URL").or(file.database_url) {
        None => None,
        Some(url) => {
            let mut parsed = tokio_postgres::Config::from_str(&url).map_err(|err| {
                invalid(
                    "WALGATE_REST_DATABASE_URL",
                    format!("{err}; use a URL or key=value pairs, like DATABASE_URL"),
                )
            })?;
            if parsed.get_application_name().is_none() {
                parsed.application_name("walgate");
            }
            Some(parsed)
        }
    };
    Ok(RestConfig {
        exposure: Exposure {
            schemas,
            allow: file.tables.unwrap_or_default(),
            block: file.exclude_tables.unwrap_or_default(),
        },
        default_limit,
        max_limit,
        max_body_bytes,
        pool_size,
        stream_batch_rows,
        schema_refresh,
        statement_timeout,
        allow_privileged_roles: file.allow_privileged_roles.unwrap_or(false),
        database,
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
    fn shipped_config_file_parses_with_its_defaults() {
        let yaml = include_str!("../config/walgate.yaml");
        let env = |name: &str| (name == "DATABASE_URL").then(|| "postgres://u@h/db".to_string());
        let config = Config::from_yaml(yaml, &env).unwrap();
        let defaults = RestConfig::default();
        assert_eq!(config.rest.max_limit, defaults.max_limit);
        assert_eq!(config.rest.statement_timeout, defaults.statement_timeout);
        assert_eq!(config.rest.exposure.schemas, vec!["public".to_string()]);
        assert_eq!(config.auth.role_claim, "role");
        assert_eq!(config.auth.anon_role, None);
    }

    #[test]
    fn rest_limits_are_checked() {
        let err = Config::from_yaml(
            "database_url: postgres://h/db\nrest: {default_limit: 500, max_limit: 100}",
            &no_env,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid setting rest.default_limit: 500 must be between 1 and rest.max_limit (100)"
        );
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
