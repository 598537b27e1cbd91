//! The `walgate` command: parses the command line and wires the parts together.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tracing_subscriber::EnvFilter;

use walgate::config::Config;
use walgate::gateway::Gateway;

/// Change-data-capture gateway for PostgreSQL: streams committed changes from the WAL to
/// WebSocket clients.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve one database, configured by the YAML file and environment variables
    /// (DATABASE_URL, WALGATE_LISTEN, WALGATE_SLOT, WALGATE_PUBLICATION).
    Serve {
        /// YAML config file [default: $WALGATE_CONFIG, else config/walgate.yaml if present]
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Start a throwaway PostgreSQL with a demo `orders` table and serve it; Ctrl-C stops both
    /// and deletes the database.
    Dev {
        /// HTTP and WebSocket address
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Subscribe to a channel and print each message as one JSON line.
    Subscribe {
        /// Channel name, like qail_table_orders or table:public.orders
        channel: String,
        /// WebSocket endpoint of the gateway
        #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
        url: String,
        /// Bearer token (JWT) sent in the Authorization header
        #[arg(long, env = "WALGATE_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = match Cli::parse().command {
        Command::Serve { config } => serve(config).await,
        Command::Dev { listen } => walgate::dev::run(listen)
            .await
            .map_err(|err| err.to_string()),
        Command::Subscribe {
            channel,
            url,
            token,
        } => subscribe(&url, &channel, token.as_deref()).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config_path: Option<PathBuf>) -> Result<(), String> {
    let config = Config::load(config_path.as_deref()).map_err(|err| err.to_string())?;
    // Installed before startup, so an early SIGHUP cannot end the process.
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|err| format!("cannot listen for SIGHUP: {err}"))?;
    let gateway = Gateway::start(config)
        .await
        .map_err(|err| err.to_string())?;
    let stop = walgate::dev::wait_for_stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = hangups.recv() => {
                match gateway.reload_triggers().await {
                    Ok(count) => tracing::info!(triggers = count, "reloaded trigger definitions"),
                    Err(err) => tracing::error!(
                        error = %err,
                        "trigger reload failed; the previous triggers stay in force"
                    ),
                }
                if let Err(err) = gateway.reload_rest_schema().await {
                    tracing::error!(error = %err, "REST catalog reload failed");
                }
            }
        }
    }
    tracing::info!("shutting down");
    gateway.stop().await;
    Ok(())
}

async fn subscribe(url: &str, channel: &str, token: Option<&str>) -> Result<(), String> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let mut request = url
        .into_client_request()
        .map_err(|err| format!("invalid WebSocket URL {url:?}: {err}"))?;
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| "the token contains characters not allowed in a header".to_string())?;
        request.headers_mut().insert("authorization", value);
    }
    let (mut socket, _) =
        tokio_tungstenite::connect_async(request)
            .await
            .map_err(|err| match err {
                tokio_tungstenite::tungstenite::Error::Http(response) => {
                    let body = response
                        .body()
                        .as_deref()
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default();
                    format!(
                        "the gateway at {url} refused the connection ({}): {body}",
                        response.status()
                    )
                }
                other => format!("cannot connect to {url}: {other}"),
            })?;
    let request = serde_json::json!({ "type": "subscribe", "channel": channel });
    socket
        .send(Message::Text(request.to_string().into()))
        .await
        .map_err(|err| format!("sending the subscription failed: {err}"))?;
    while let Some(message) = socket.next().await {
        match message.map_err(|err| format!("connection to {url} failed: {err}"))? {
            Message::Text(text) => {
                println!("{text}");
                let reply: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if reply["type"] == "error" && reply["channel"] == channel {
                    return Err(format!("subscription to {channel} rejected"));
                }
            }
            Message::Close(frame) => {
                let reason = frame
                    .map(|frame| format!("code {}, {}", u16::from(frame.code), frame.reason))
                    .unwrap_or_else(|| "no reason given".into());
                return Err(format!("the gateway closed the connection ({reason})"));
            }
            _ => {}
        }
    }
    Ok(())
}
