//! Database sessions for REST requests: a pooled connection, and a transaction that runs as
//! the request's role with its JWT claims visible to row-level-security policies.

use axum::http::StatusCode;
use deadpool_postgres::{Object, Pool, PoolError, Transaction};
use tokio_postgres::CancelToken;

use super::error::RestError;
use super::RestConfig;
use crate::auth::Identity;

/// Prepared statements kept per pooled connection before the cache is emptied, so requests
/// with many different filter shapes cannot grow it without bound.
const STATEMENT_CACHE_LIMIT: usize = 256;

/// A pooled connection held by a request.
///
/// When the request is dropped before [`Checkout::release`] (its client went away), the
/// connection may still be running a statement. Dropping the checkout then takes the
/// connection out of the pool, cancels whatever it runs and closes it, so the statement stops
/// and the next request does not queue behind it.
pub struct Checkout {
    object: Option<Object>,
    cancel: CancelToken,
    armed: bool,
}

impl Checkout {
    /// Takes a connection from the pool.
    pub async fn new(pool: &Pool) -> Result<Checkout, RestError> {
        let object = connect(pool).await?;
        Ok(Checkout {
            cancel: object.cancel_token(),
            object: Some(object),
            armed: true,
        })
    }

    /// The connection.
    pub fn object(&mut self) -> &mut Object {
        self.object
            .as_mut()
            .expect("the connection is held until drop")
    }

    /// Marks the request's statements as finished, so the connection goes back to the pool.
    pub fn release(&mut self) {
        self.armed = false;
    }

    /// Cancels and closes the connection now instead of returning it to the pool.
    pub fn abandon(mut self) {
        self.armed = true;
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let (true, Some(object)) = (self.armed, self.object.take()) {
            abandon(object, self.cancel.clone());
        }
    }
}

/// Takes the connection out of the pool, cancels whatever it runs and closes it, so an
/// abandoned statement neither keeps running nor delays the next request.
fn abandon(object: Object, cancel: CancelToken) {
    let client = Object::take(object);
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        if let Err(err) = cancel.cancel_query(tokio_postgres::NoTls).await {
            tracing::debug!(error = %err, "cancel request failed; closing the connection");
        }
        drop(client);
    });
}

/// Takes a connection from the pool.
async fn connect(pool: &Pool) -> Result<Object, RestError> {
    let object = pool.get().await.map_err(|err| {
        let message = match &err {
            PoolError::Timeout(_) => {
                "every database connection of the REST pool is busy; retry, or raise rest.pool_size"
                    .to_string()
            }
            other => {
                tracing::warn!(error = %crate::report::error_chain(other), "REST pool cannot connect");
                "the database is not reachable; retry later".to_string()
            }
        };
        RestError::new(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", message)
    })?;
    if object.statement_cache.size() > STATEMENT_CACHE_LIMIT {
        object.statement_cache.clear();
    }
    Ok(object)
}

/// Starts a transaction and switches to the identity's role, with
/// `request.jwt.claims` and the configured `statement_timeout` set for the transaction.
///
/// A role that does not exist is a 401, because the token names it. A role the gateway's
/// database user may not switch to is a 403. So is a superuser or BYPASSRLS role unless
/// `allow_privileged_roles` is set, because such a role sees every row whatever the policies
/// allow.
pub async fn begin<'a>(
    object: &'a mut Object,
    identity: &Identity,
    read_only: bool,
    config: &RestConfig,
) -> Result<Transaction<'a>, RestError> {
    let anonymous = identity.anonymous;
    if identity.role == "none" {
        // `SET ROLE none` means the session user, the gateway's own database user.
        return Err(RestError::new(
            StatusCode::FORBIDDEN,
            "role_not_allowed",
            "the role \"none\" would run the request as the gateway's own database user; \
             issue tokens for a named role",
        ));
    }
    let timeout_ms = config.statement_timeout.as_millis().to_string();
    let tx = object
        .build_transaction()
        .read_only(read_only)
        .start()
        .await
        .map_err(|err| RestError::from_db(&err, anonymous))?;
    let statement = tx
        .prepare_cached(
            "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true), \
             CASE WHEN $3 <> '0' THEN set_config('statement_timeout', $3, true) END, \
             (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = $1)",
        )
        .await
        .map_err(|err| RestError::from_db(&err, anonymous))?;
    let row = tx
        .query_one(
            &statement,
            &[&identity.role, &identity.claims_json, &timeout_ms],
        )
        .await
        .map_err(|err| role_error(&err, identity))?;
    let privileged: Option<bool> = row.get(3);
    if privileged == Some(true) && !config.allow_privileged_roles {
        return Err(RestError::new(
            StatusCode::FORBIDDEN,
            "privileged_role",
            format!(
                "role {:?} is a superuser or has BYPASSRLS, so row-level security would not \
                 apply; issue tokens for an ordinary role, or set rest.allow_privileged_roles",
                identity.role
            ),
        ));
    }
    Ok(tx)
}

fn role_error(err: &tokio_postgres::Error, identity: &Identity) -> RestError {
    let state = err.as_db_error().map(|db| db.code().code());
    match state {
        Some("22023") if identity.anonymous => {
            tracing::error!(role = %identity.role, "the anonymous role does not exist");
            RestError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "anonymous_role_missing",
                format!(
                    "the gateway's anonymous role {:?} (WALGATE_ANON_ROLE) does not exist in \
                     the database; send a token, or ask the operator to create the role",
                    identity.role
                ),
            )
        }
        Some("22023") => RestError::new(
            StatusCode::UNAUTHORIZED,
            "unknown_role",
            format!(
                "the role {:?} named by the token does not exist in the database",
                identity.role
            ),
        ),
        Some("42501") => RestError::new(
            StatusCode::FORBIDDEN,
            "role_not_allowed",
            format!(
                "the gateway's database user may not act as role {:?}; grant it with \
                 GRANT {:?} TO <the gateway's user>",
                identity.role, identity.role
            ),
        ),
        _ => RestError::from_db(err, identity.anonymous),
    }
}
