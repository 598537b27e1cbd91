//! The current trigger definitions, swapped whole on reload.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::definition::{check_catalog, TableKeys, TriggerError, TriggerSet};
use crate::db::SharedClient;
use crate::report::error_chain;

/// A validated trigger set with the primary keys of its tables.
pub struct LoadedTriggers {
    pub set: TriggerSet,
    pub keys: TableKeys,
}

/// The triggers in force. Readers take a snapshot; a reload replaces it atomically, so an event
/// is matched against one consistent set.
pub struct TriggerRegistry {
    path: Option<PathBuf>,
    current: RwLock<Arc<LoadedTriggers>>,
}

/// Error from loading trigger definitions.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid triggers in {path}: {source}")]
    Invalid { path: PathBuf, source: TriggerError },
    #[error("checking triggers against the database failed: {0}")]
    Database(String),
}

impl TriggerRegistry {
    /// Loads and checks the triggers at `path`; no path means no triggers.
    pub async fn load(path: Option<&Path>, db: &SharedClient) -> Result<Self, LoadError> {
        let loaded = load_checked(path, db).await?;
        Ok(Self {
            path: path.map(Path::to_path_buf),
            current: RwLock::new(Arc::new(loaded)),
        })
    }

    /// The triggers in force now.
    pub fn current(&self) -> Arc<LoadedTriggers> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reads the file again and, when it is valid, puts it in force. On error the previous set
    /// stays in force. Returns the number of triggers loaded.
    pub async fn reload(&self, db: &SharedClient) -> Result<usize, LoadError> {
        let loaded = load_checked(self.path.as_deref(), db).await?;
        let count = loaded.set.triggers().len();
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(loaded);
        Ok(count)
    }
}

async fn load_checked(path: Option<&Path>, db: &SharedClient) -> Result<LoadedTriggers, LoadError> {
    let set = match path {
        Some(path) => TriggerSet::load(path).map_err(|source| LoadError::Invalid {
            path: path.to_path_buf(),
            source,
        })?,
        None => TriggerSet::empty(),
    };
    let client = db
        .get()
        .await
        .map_err(|err| LoadError::Database(error_chain(&err)))?;
    let keys = check_catalog(&set, &client)
        .await
        .map_err(|source| LoadError::Invalid {
            path: path.map(Path::to_path_buf).unwrap_or_default(),
            source,
        })?;
    Ok(LoadedTriggers { set, keys })
}
