//! The startup phase of a connection: startup message, authentication, and the wait for the
//! first `ReadyForQuery`.

use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{self, ChannelBinding, ScramSha256};
use postgres_protocol::message::backend::{AuthenticationSaslBody, ErrorResponseBody, Message};
use postgres_protocol::message::frontend;

use super::error::{log_notice, ServerFields, SourceError};
use super::protocol::{unexpected, Backend, Framed};

/// Session facts that the server reports during startup.
#[derive(Debug, Default)]
pub(crate) struct SessionInfo {
    /// Process id of the walsender, from `BackendKeyData`.
    pub backend_pid: Option<i32>,
    /// The `server_version` parameter.
    pub server_version: Option<String>,
}

/// Sends the startup message with `parameters`, authenticates as `user` and waits until the
/// server is ready for queries.
pub(crate) async fn start_session(
    framed: &mut Framed,
    parameters: &[(String, String)],
    user: &str,
    password: Option<&[u8]>,
) -> Result<SessionInfo, SourceError> {
    let pairs = parameters
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()));
    framed
        .send(|buf| frontend::startup_message(pairs, buf))
        .await?;
    authenticate(framed, user, password).await?;
    wait_until_ready(framed).await
}

/// Progress of a SCRAM exchange.
enum Scram {
    NotStarted,
    /// The client-first message is sent, and the server's first or final message is expected.
    InProgress(ScramSha256),
    /// The server's signature was verified.
    Verified,
}

/// Responds to the server's authentication requests until `AuthenticationOk`.
async fn authenticate(
    framed: &mut Framed,
    user: &str,
    password: Option<&[u8]>,
) -> Result<(), SourceError> {
    let mut scram = Scram::NotStarted;
    loop {
        let message = match framed.read().await? {
            Backend::Message(message) => message,
            other => return Err(unexpected(&other, "authentication")),
        };
        match message {
            Message::AuthenticationOk => {
                if let Scram::InProgress(_) = scram {
                    return Err(auth_error(
                        user,
                        "the server ended SCRAM authentication without proving that it knows \
                         the password",
                    ));
                }
                return Ok(());
            }
            Message::AuthenticationCleartextPassword => {
                let password = require_password(user, password, "cleartext")?;
                framed
                    .send(|buf| frontend::password_message(password, buf))
                    .await?;
            }
            Message::AuthenticationMd5Password(body) => {
                let password = require_password(user, password, "md5")?;
                let hash = md5_hash(user.as_bytes(), password, body.salt());
                framed
                    .send(|buf| frontend::password_message(hash.as_bytes(), buf))
                    .await?;
            }
            Message::AuthenticationSasl(body) => {
                let password = require_password(user, password, "SCRAM-SHA-256")?;
                scram = Scram::InProgress(start_scram(framed, user, password, &body).await?);
            }
            Message::AuthenticationSaslContinue(body) => {
                let Scram::InProgress(exchange) = &mut scram else {
                    return Err(out_of_order_sasl("AuthenticationSASLContinue"));
                };
                exchange
                    .update(body.data())
                    .map_err(|err| auth_error(user, &format!("invalid SCRAM message: {err}")))?;
                let response = exchange.message();
                framed
                    .send(|buf| frontend::sasl_response(response, buf))
                    .await?;
            }
            Message::AuthenticationSaslFinal(body) => {
                let Scram::InProgress(exchange) = &mut scram else {
                    return Err(out_of_order_sasl("AuthenticationSASLFinal"));
                };
                exchange.finish(body.data()).map_err(|err| {
                    auth_error(user, &format!("SCRAM server signature rejected: {err}"))
                })?;
                scram = Scram::Verified;
            }
            Message::ErrorResponse(body) => return Err(startup_error(user, &body)),
            Message::NoticeResponse(body) => log_notice(&body),
            Message::AuthenticationKerberosV5
            | Message::AuthenticationScmCredential
            | Message::AuthenticationGss
            | Message::AuthenticationGssContinue(_)
            | Message::AuthenticationSspi => {
                return Err(auth_error(
                    user,
                    "the server requested Kerberos, GSSAPI, SSPI or SCM credential \
                     authentication, which walgate does not support; use trust, password, md5 \
                     or scram-sha-256 in pg_hba.conf",
                ));
            }
            other => return Err(unexpected(&Backend::Message(other), "authentication")),
        }
    }
}

/// Sends the SASL initial response for SCRAM-SHA-256 without channel binding, because the
/// connection has no TLS to bind to.
async fn start_scram(
    framed: &mut Framed,
    user: &str,
    password: &[u8],
    body: &AuthenticationSaslBody,
) -> Result<ScramSha256, SourceError> {
    use fallible_iterator::FallibleIterator;

    let mechanisms: Vec<String> = body
        .mechanisms()
        .map(|mechanism| Ok(mechanism.to_string()))
        .collect()
        .map_err(|err| SourceError::Protocol(format!("invalid SASL mechanism list: {err}")))?;
    if !mechanisms.iter().any(|m| m == sasl::SCRAM_SHA_256) {
        return Err(auth_error(
            user,
            &format!(
                "the server offered only the SASL mechanisms {mechanisms:?}; walgate supports \
                 SCRAM-SHA-256 without channel binding"
            ),
        ));
    }
    let exchange = ScramSha256::new(password, ChannelBinding::unsupported());
    let initial = exchange.message();
    framed
        .send(|buf| frontend::sasl_initial_response(sasl::SCRAM_SHA_256, initial, buf))
        .await?;
    Ok(exchange)
}

/// Reads the messages after `AuthenticationOk` until `ReadyForQuery`.
async fn wait_until_ready(framed: &mut Framed) -> Result<SessionInfo, SourceError> {
    let mut info = SessionInfo::default();
    loop {
        let message = match framed.read().await? {
            Backend::Message(message) => message,
            other => return Err(unexpected(&other, "session startup")),
        };
        match message {
            Message::ReadyForQuery(_) => return Ok(info),
            Message::BackendKeyData(body) => info.backend_pid = Some(body.process_id()),
            Message::ParameterStatus(body) => {
                let name = body.name().unwrap_or_default();
                let value = body.value().unwrap_or_default();
                tracing::debug!(name, value, "server parameter");
                if name == "server_version" {
                    info.server_version = Some(value.to_string());
                }
            }
            Message::NoticeResponse(body) => log_notice(&body),
            Message::ErrorResponse(body) => return Err(super::error::server_error(&body)),
            other => return Err(unexpected(&Backend::Message(other), "session startup")),
        }
    }
}

fn require_password<'a>(
    user: &str,
    password: Option<&'a [u8]>,
    method: &str,
) -> Result<&'a [u8], SourceError> {
    password.ok_or_else(|| {
        auth_error(
            user,
            &format!(
                "the server requested {method} password authentication, but no password is \
                 set: put it in DATABASE_URL, as in postgres://user:password@host/dbname \
                 (percent-encode special characters)"
            ),
        )
    })
}

/// Converts an `ErrorResponse` received during authentication. Class 28 (invalid
/// authorization specification, such as `28P01` for a wrong password) becomes
/// [`SourceError::Auth`]; other errors stay server errors.
fn startup_error(user: &str, body: &ErrorResponseBody) -> SourceError {
    let fields = match ServerFields::from_error(body) {
        Ok(fields) => fields,
        Err(err) => return err,
    };
    match fields.code.as_deref() {
        Some(code) if code.starts_with("28") => {
            let message = fields.message.as_deref().unwrap_or("rejected");
            auth_error(user, &format!("{message} (SQLSTATE {code})"))
        }
        _ => fields.into_server_error(),
    }
}

fn auth_error(user: &str, reason: &str) -> SourceError {
    SourceError::Auth {
        user: user.to_string(),
        reason: reason.to_string(),
    }
}

fn out_of_order_sasl(name: &str) -> SourceError {
    SourceError::Protocol(format!("{name} received outside a SCRAM exchange"))
}
