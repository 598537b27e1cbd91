//! Webhook deliveries per second and commit-to-delivery latency, through the outbox.
//!
//! Run with `cargo bench --bench webhooks`. The bench starts a throwaway cluster, an in-process
//! gateway with one trigger on an `orders` table, and an in-process HTTP receiver that returns
//! 200 at once and records when each request arrived. Parts 1 to 4 run by default:
//!
//! 1. Backlog: with the gateway stopped, 100,000 single-row transactions are written, then the
//!    gateway starts and drains them from the slot, so the outbox INSERTs and the dispatcher run
//!    at the same time. The rate is deliveries over the time from the first to the last
//!    request seen by the receiver.
//! 2. Dispatch only: with the gateway stopped, the same 100,000 outbox rows are set back to
//!    pending, then the gateway starts and sends them. Nothing new comes from the slot, so this
//!    measures the dispatcher alone, once for each dispatcher setting.
//! 3. Latency: with the gateway running, a few connections write single-row transactions at a
//!    steady rate. For each request the latency is its receive time minus the commit time in
//!    the payload's `timestamp` field (same machine, same clock).
//! 4. Plain POSTs: the same number of POSTs of a recorded body, sent by a reqwest loop in this
//!    process to the same receiver with as many requests in flight as the trigger allows. It
//!    is an upper bound for the dispatcher's HTTP side.
//!
//! Parts 5 to 7 profile the outbox and run with `WEBHOOKS_PROFILE=1`:
//!
//! 5. Outbox alone: part 1 with the dispatcher held, which times the replicator and the outbox
//!    INSERT by themselves.
//! 6. INSERT timings: the outbox INSERT on a scratch table, sent as `outbox.rs` sends it,
//!    prepared once, and with 100 rows per statement.
//! 7. Claim query: the dispatcher's claim on a scratch table whose statistics predate a burst
//!    of pending rows, as written and with `OFFSET 0` in its NOT EXISTS.
//!
//! Results are in `docs/benchmarks.md`. Environment variables, for profiling and quick checks:
//! - `WEBHOOKS_SCALE=N` divides the row count of parts 1, 2, 4, 5 and 7 by N (default 1).
//! - `WEBHOOKS_SETTINGS=C:B,...` lists dispatcher settings as trigger `concurrency` and
//!   `webhooks.batch_size` pairs (default `64:500,16:500,256:2000`). Part 2 runs each one;
//!   the other parts use the first.
//! - `WEBHOOKS_POLL_MS=N` sets `webhooks.poll_interval_ms` (default 1000, walgate's default).
//! - `WEBHOOKS_RATES=R,...` sets the write rates of part 3 in transactions per second
//!   (default `1000,2000,5000`), and `WEBHOOKS_LATENCY_SECS=N` how long each rate runs
//!   (default 10).
//! - `WEBHOOKS_WRITERS=N` sets the writing connections of part 3 (default 4).
//! - `WEBHOOKS_PARTS=1,2,...` runs only the listed parts. Part 2 needs part 1's rows.
//! - `WEBHOOKS_PROFILE=1` loads `pg_stat_statements`, prints after each run the statements
//!   that took the most server time, and adds parts 5 to 7 to the default parts.
//! - `WEBHOOKS_QUIET_SECS=N` sets how long the bench waits, before each run, for the machine to
//!   go idle (default 10).
//!
//! Each run prints CPU time in percent of one core, split into this process (gateway, receiver
//! and writers), the walsender, the backends of the outbox and dispatcher connections, and
//! everything else. It also prints the dispatcher's mean HTTP request time, read from its
//! `walgate_webhook_request_seconds` metric.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, ensure, Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use walgate::cluster::{ClusterOptions, EphemeralCluster, PgBinaries};
use walgate::config::Config;
use walgate::gateway::Gateway;

/// Single-row transactions of parts 1, 2, 4 and 5 before `WEBHOOKS_SCALE`. Part 7 uses half as
/// many pending rows.
const ROWS: u64 = 100_000;

const TRIGGER: &str = "order_created";
const HOOK_PATH: &str = "/hooks/orders";
/// A receiver path whose requests wait for `Receiver::release_held` before they get a 200.
const HELD_PATH: &str = "/hooks/held";

/// The statement of `Outbox::store` in `src/webhooks/outbox.rs`, copied for part 6 with the
/// table name as a placeholder. Keep it in step with that file.
const OUTBOX_INSERT: &str = "INSERT INTO {table}
     (trigger_name, event_id, row_key, body, commit_time)
 SELECT t, e, k, b, c::timestamptz
 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
     AS u(t, e, k, b, c)
 ON CONFLICT (trigger_name, event_id) DO NOTHING";

/// The claim statement of `Dispatcher::claim` in `src/webhooks/dispatch.rs`, copied for part 7
/// with the table name as a placeholder, and `{fence}` where part 7 adds `OFFSET 0`. Keep it
/// in step with that file.
const CLAIM: &str = "UPDATE {table} d
 SET leased_until = now() + $2::bigint * interval '1 millisecond',
     attempts = d.attempts + 1
 WHERE d.id IN (
     SELECT c.id FROM {table} c
     WHERE c.status = 'pending'
       AND c.next_attempt_at <= now()
       AND (c.leased_until IS NULL OR c.leased_until < now())
       AND c.trigger_name = ANY($3)
       AND NOT EXISTS (
           SELECT 1 FROM {table} e
           WHERE e.status = 'pending' AND e.trigger_name = c.trigger_name
             AND e.row_key = c.row_key AND e.id < c.id{fence})
     ORDER BY c.next_attempt_at, c.id
     LIMIT $1
     FOR UPDATE SKIP LOCKED)
 RETURNING d.id, d.trigger_name, d.event_id, d.body, d.attempts";

/// Delivered rows in part 7's scratch table, analyzed before the pending rows arrive.
const DELIVERED_ROWS: u64 = 180_000;

/// The demo `orders` table, as in the WAL benchmark.
const SCHEMA: &str = "
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer text NOT NULL,
    total numeric(10, 2) NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    notes text,
    created_at timestamptz NOT NULL DEFAULT now()
);
";

/// The values of order number `i`, as a select list: about 120 bytes of column text per row.
const ROW_VALUES: &str = "'customer-' || (i % 5000), \
     round((i % 100000) / 100.0 + 1, 2), \
     (ARRAY['pending', 'paid', 'shipped', 'cancelled'])[1 + i % 4], \
     'order note ' || md5(i::text), \
     timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second'";

const COLUMNS: &str = "customer, total, status, notes, created_at";

/// Maximum time for a drain before the bench gives up.
const DRAIN_LIMIT: Duration = Duration::from_secs(180);

/// Dispatcher settings of one run.
#[derive(Clone, Copy, Debug)]
struct DispatchSetting {
    /// The trigger's `concurrency`: requests in flight.
    concurrency: usize,
    /// `webhooks.batch_size`: rows claimed per query.
    batch_size: u32,
}

/// Written as `concurrency:batch_size`.
impl std::fmt::Display for DispatchSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.concurrency, self.batch_size)
    }
}

struct Settings {
    rows: u64,
    dispatch: Vec<DispatchSetting>,
    poll_ms: u64,
    rates: Vec<u64>,
    latency_time: Duration,
    writers: u64,
    parts: Vec<u32>,
    profile: bool,
    /// Maximum wait for an idle machine before each run.
    quiet_wait: Duration,
}

impl Settings {
    fn from_env() -> Result<Self> {
        let text = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let number = |name: &str, default: u64| -> Result<u64> {
            let Some(text) = text(name) else {
                return Ok(default);
            };
            let value: u64 = text.parse().with_context(|| format!("{name}={text}"))?;
            ensure!(value > 0, "{name} must be at least 1");
            Ok(value)
        };
        let list = |name: &str, default: &str| -> Result<Vec<u64>> {
            text(name)
                .as_deref()
                .unwrap_or(default)
                .split(',')
                .map(|item| {
                    let value: u64 = item
                        .trim()
                        .parse()
                        .with_context(|| format!("{name}: {item:?} is not a whole number"))?;
                    ensure!(value > 0, "{name}: every value must be at least 1");
                    Ok(value)
                })
                .collect()
        };
        let dispatch = text("WEBHOOKS_SETTINGS")
            .as_deref()
            .unwrap_or("64:500,16:500,256:2000")
            .split(',')
            .map(|pair| {
                let parsed = pair
                    .split_once(':')
                    .and_then(|(c, b)| Some((c.trim().parse().ok()?, b.trim().parse().ok()?)));
                let Some((concurrency, batch_size)) = parsed else {
                    bail!(
                        "WEBHOOKS_SETTINGS: {pair:?} is not CONCURRENCY:BATCH_SIZE, such as 64:500"
                    );
                };
                Ok(DispatchSetting {
                    concurrency,
                    batch_size,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let profile = text("WEBHOOKS_PROFILE").is_some_and(|value| value != "0");
        let default_parts = if profile { "1,2,3,4,5,6,7" } else { "1,2,3,4" };
        let parts = list("WEBHOOKS_PARTS", default_parts)?
            .into_iter()
            .map(|part| {
                ensure!((1..=7).contains(&part), "WEBHOOKS_PARTS: no part {part}");
                Ok(part as u32)
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            rows: ROWS / number("WEBHOOKS_SCALE", 1)?,
            dispatch,
            poll_ms: number("WEBHOOKS_POLL_MS", 1000)?,
            rates: list("WEBHOOKS_RATES", "1000,2000,5000")?,
            latency_time: Duration::from_secs(number("WEBHOOKS_LATENCY_SECS", 10)?),
            writers: number("WEBHOOKS_WRITERS", 4)?,
            parts,
            profile,
            quiet_wait: Duration::from_secs(number("WEBHOOKS_QUIET_SECS", 10)?),
        })
    }

    fn runs(&self, part: u32) -> bool {
        self.parts.contains(&part)
    }
}

fn main() -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let settings = Settings::from_env()?;
    let binaries = PgBinaries::locate()?;
    let mut options = ClusterOptions::default();
    if settings.profile {
        options
            .extra_settings
            .push("shared_preload_libraries = 'pg_stat_statements'".into());
    }
    let cluster = EphemeralCluster::start(&binaries, &options)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(bench(&cluster, &settings));
    drop(runtime);
    drop(cluster);
    result
}

async fn bench(cluster: &EphemeralCluster, settings: &Settings) -> Result<()> {
    let db = connect_sql(cluster).await?;
    db.batch_execute(SCHEMA).await?;
    if settings.profile {
        db.batch_execute("CREATE EXTENSION pg_stat_statements")
            .await?;
    }
    let server_version: String = db.query_one("SHOW server_version", &[]).await?.get(0);
    print_machine(&server_version);
    println!(
        "rows: {}, dispatcher settings: {}, poll_interval_ms: {}",
        settings.rows,
        settings
            .dispatch
            .iter()
            .map(DispatchSetting::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        settings.poll_ms
    );

    let receiver = Receiver::start().await?;
    let files = tempfile::tempdir()?;
    let mut bench = Bench {
        cluster,
        db,
        receiver,
        files: files.path(),
        settings,
        requests_seen: RequestTotals::default(),
        summary: Vec::new(),
    };
    // The first start creates the outbox table, the publication and the slot, so that the
    // backlog written next waits in the slot.
    let main = settings.dispatch[0];
    let gateway = bench.start_gateway(main, HOOK_PATH).await?;
    gateway.stop().await;

    let mut backlog = None;
    if settings.runs(1) {
        backlog = Some(bench.backlog(main).await?);
    }
    if settings.runs(2) {
        let Some(backlog) = &backlog else {
            bail!("part 2 sends the outbox rows that part 1 stores; add 1 to WEBHOOKS_PARTS");
        };
        for &setting in &settings.dispatch {
            bench.dispatch_only(backlog, setting).await?;
        }
    }
    if settings.runs(3) {
        bench.latency(main).await?;
    }
    if settings.runs(4) {
        let body = bench.sample_body().await?;
        bench.plain_posts(&body, main.concurrency).await?;
    }
    // Parts 5 to 7 come last because they leave pending rows and scratch tables behind.
    if settings.runs(5) {
        bench.outbox_alone().await?;
    }
    if settings.runs(6) {
        bench.insert_timings().await?;
    }
    if settings.runs(7) {
        bench.claim_plans().await?;
    }
    bench.print_summary();
    bench.receiver.stop.cancel();
    Ok(())
}

/// Outbox ids of the backlog rows: `first..=last`.
struct Backlog {
    first: i64,
    last: i64,
}

/// One line of the closing table.
struct SummaryLine {
    part: String,
    setting: String,
    deliveries: u64,
    requests: u64,
    rate: f64,
    latency: Option<Latency>,
}

struct Latency {
    p50: Duration,
    p99: Duration,
}

struct Bench<'a> {
    cluster: &'a EphemeralCluster,
    db: tokio_postgres::Client,
    receiver: Receiver,
    files: &'a Path,
    settings: &'a Settings,
    /// The request-time metric as last read; the recorder is process-wide, so each run reads
    /// the difference.
    requests_seen: RequestTotals,
    summary: Vec<SummaryLine>,
}

impl Bench<'_> {
    /// Writes the trigger file, with `webhook_url` on `path` of the receiver, and starts a
    /// gateway; returns once it streams.
    async fn start_gateway(&self, setting: DispatchSetting, path: &str) -> Result<Gateway> {
        let triggers = self.files.join("triggers.yaml");
        let url = format!("http://{}{path}", self.receiver.addr);
        std::fs::write(
            &triggers,
            format!(
                "- name: {TRIGGER}\n  table: orders\n  operations: [create]\n  \
                 webhook_url: \"{url}\"\n  concurrency: {}\n",
                setting.concurrency
            ),
        )?;
        let yaml = format!(
            "triggers: {}\nwebhooks:\n  batch_size: {}\n  poll_interval_ms: {}\n",
            serde_json::to_string(&triggers.display().to_string())?,
            setting.batch_size,
            self.settings.poll_ms
        );
        let database_url = self.cluster.url("postgres");
        let config = Config::from_yaml(&yaml, &|name| match name {
            "DATABASE_URL" => Some(database_url.clone()),
            "WALGATE_LISTEN" => Some("127.0.0.1:0".into()),
            _ => None,
        })?;
        let gateway = Gateway::start(config).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !gateway.health.is_streaming() {
            ensure!(
                Instant::now() < deadline,
                "the gateway did not start streaming within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(gateway)
    }

    /// Writes `rows` single-row transactions in one statement; returns the outbox ids they
    /// will get. Call it with the gateway stopped.
    async fn write_backlog(&self) -> Result<Backlog> {
        let rows = self.settings.rows;
        let first = max_outbox_id(&self.db).await? + 1;
        let started = Instant::now();
        // A DO block run as a lone statement may commit inside its loop.
        self.db
            .batch_execute(&format!(
                "DO $$ BEGIN FOR i IN 1..{rows} LOOP \
                 INSERT INTO orders ({COLUMNS}) SELECT {ROW_VALUES}; COMMIT; \
                 END LOOP; END $$"
            ))
            .await?;
        println!(
            "wrote {rows} transactions in {:.2} s with the gateway stopped",
            started.elapsed().as_secs_f64()
        );
        Ok(Backlog {
            first,
            last: first + rows as i64 - 1,
        })
    }

    /// Part 1: writes the backlog with the gateway stopped, then times the drain.
    async fn backlog(&mut self, setting: DispatchSetting) -> Result<Backlog> {
        let rows = self.settings.rows;
        println!("\n== 1. backlog: {rows} single-row transactions waiting in the slot");
        let backlog = self.write_backlog().await?;
        let drain = self.drain(setting, &backlog).await?;
        let stored = drain
            .outbox_full
            .map_or("-".to_string(), |at| format!("{:.2} s", at.as_secs_f64()));
        println!(
            "all {rows} outbox rows stored {stored} after the gateway started ({} rows/s)",
            drain.outbox_full.map_or("-".to_string(), |at| format!(
                "{:.0}",
                rows as f64 / at.as_secs_f64()
            ))
        );
        self.summarize(
            "1 backlog (outbox INSERT + dispatch)",
            &setting.to_string(),
            &drain,
        );
        Ok(backlog)
    }

    /// Part 2: sets the backlog's outbox rows back to pending and times the dispatcher alone.
    async fn dispatch_only(&mut self, backlog: &Backlog, setting: DispatchSetting) -> Result<()> {
        println!("\n== 2. dispatch only: concurrency:batch_size {setting}");
        let reset = self
            .db
            .execute(
                "UPDATE walgate.webhook_deliveries
                 SET status = 'pending', attempts = 0, next_attempt_at = now(),
                     leased_until = NULL, last_status = NULL, last_error = NULL,
                     finished_at = NULL
                 WHERE id BETWEEN $1 AND $2",
                &[&backlog.first, &backlog.last],
            )
            .await?;
        ensure!(
            reset == self.settings.rows,
            "set {reset} outbox rows back to pending, expected {}",
            self.settings.rows
        );
        self.db
            .batch_execute("VACUUM ANALYZE walgate.webhook_deliveries")
            .await?;
        // The reset changed only walgate's own schema, whose changes never become events. Moving
        // the slot past it keeps the walsender from decoding it during the run.
        self.db
            .execute(
                "SELECT pg_replication_slot_advance('walgate', pg_current_wal_lsn())",
                &[],
            )
            .await?;
        let drain = self.drain(setting, backlog).await?;
        self.summarize("2 dispatch only", &setting.to_string(), &drain);
        Ok(())
    }

    /// Starts a gateway and waits until every backlog row is delivered, then stops it.
    async fn drain(&mut self, setting: DispatchSetting, backlog: &Backlog) -> Result<Drain> {
        let rows = self.settings.rows;
        self.prepare_run().await?;
        let marks = CpuMarks::now()?;
        let started = Instant::now();
        let gateway = self.start_gateway(setting, HOOK_PATH).await?;

        let mut outbox_full = None;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if outbox_full.is_none() && max_outbox_id(&self.db).await? >= backlog.last {
                outbox_full = Some(started.elapsed());
            }
            if self.receiver.count() >= rows && pending(&self.db, backlog).await? == 0 {
                break;
            }
            ensure!(
                started.elapsed() < DRAIN_LIMIT,
                "{} of {rows} requests arrived within {DRAIN_LIMIT:?}",
                self.receiver.count()
            );
        }
        let cpu = self.cpu_since(&marks).await?;
        let http = self.request_totals(gateway.addr).await?;
        gateway.stop().await;

        let arrivals = self.receiver.take();
        let attempts: i64 = self
            .db
            .query_one(
                "SELECT coalesce(sum(attempts), 0)::bigint FROM walgate.webhook_deliveries
                 WHERE id BETWEEN $1 AND $2 AND status = 'delivered'",
                &[&backlog.first, &backlog.last],
            )
            .await?
            .get(0);
        let drain = Drain::new(arrivals, outbox_full, attempts as u64);
        ensure!(
            drain.distinct == rows,
            "the receiver saw {} distinct deliveries, expected {rows}",
            drain.distinct
        );

        drain.print(started);
        cpu.print();
        http.print();
        self.print_statements(cpu.span).await?;
        Ok(drain)
    }

    /// Part 3: writes at steady rates with the gateway running and measures commit-to-delivery
    /// latency.
    async fn latency(&mut self, setting: DispatchSetting) -> Result<()> {
        println!(
            "\n== 3. latency while keeping up: concurrency:batch_size {setting}, {} writing \
             connections",
            self.settings.writers
        );
        let gateway = self.start_gateway(setting, HOOK_PATH).await?;
        for &rate in &self.settings.rates {
            let first = max_outbox_id(&self.db).await? + 1;
            self.prepare_run().await?;
            let marks = CpuMarks::now()?;
            let transactions = rate * self.settings.latency_time.as_secs();
            let written = write_steady(self.cluster, rate, transactions, self.settings.writers)
                .await
                .context("steady writes")?;
            let writes_ended = Instant::now();
            let deadline = writes_ended + DRAIN_LIMIT;
            let batch = Backlog {
                first,
                last: first + transactions as i64 - 1,
            };
            while self.receiver.count() < transactions || pending(&self.db, &batch).await? > 0 {
                ensure!(
                    Instant::now() < deadline,
                    "{} of {transactions} requests arrived within {DRAIN_LIMIT:?} of the last \
                     write",
                    self.receiver.count()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let cpu = self.cpu_since(&marks).await?;
            let http = self.request_totals(gateway.addr).await?;
            let drain = Drain::new(self.receiver.take(), None, 0);
            ensure!(
                drain.distinct == transactions,
                "the receiver saw {} distinct deliveries, expected {transactions}",
                drain.distinct
            );
            let latencies = drain.latencies()?;
            let behind = drain.arrivals.last().map_or(Duration::ZERO, |last| {
                last.at.saturating_duration_since(writes_ended)
            });
            println!(
                "target {rate} transactions/s: wrote {transactions} in {:.2} s ({:.0}/s); \
                 the last delivery came {:.2} s after the last commit",
                written.as_secs_f64(),
                transactions as f64 / written.as_secs_f64(),
                behind.as_secs_f64()
            );
            println!(
                "commit-to-delivery latency: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, \
                 max {:.1} ms; {} requests for {} deliveries",
                ms(percentile(&latencies, 0.50)),
                ms(percentile(&latencies, 0.90)),
                ms(percentile(&latencies, 0.99)),
                ms(percentile(&latencies, 1.0)),
                drain.requests,
                drain.distinct
            );
            cpu.print();
            http.print();
            self.print_statements(cpu.span).await?;
            self.summary.push(SummaryLine {
                part: format!("3 latency at {rate}/s"),
                setting: setting.to_string(),
                deliveries: drain.distinct,
                requests: drain.requests,
                rate: transactions as f64 / written.as_secs_f64(),
                latency: Some(Latency {
                    p50: percentile(&latencies, 0.50),
                    p99: percentile(&latencies, 0.99),
                }),
            });
        }
        gateway.stop().await;
        Ok(())
    }

    /// Profile part 5: times the replicator and the outbox INSERT without the dispatcher's
    /// work. The trigger has `concurrency: 1` and points at `HELD_PATH`, and four rows wait in
    /// the outbox before the gateway starts. So the dispatcher claims once, and then waits for
    /// its first request while the backlog is stored.
    async fn outbox_alone(&mut self) -> Result<()> {
        let rows = self.settings.rows;
        println!(
            "\n== 5. outbox alone: {rows} single-row transactions stored while the dispatcher \
             is held"
        );
        // The dispatcher claims these first and, holding `concurrency * 4` rows, claims no more.
        self.db
            .execute(
                "INSERT INTO walgate.webhook_deliveries
                     (trigger_name, event_id, row_key, body, commit_time)
                 SELECT $1, 'held:' || i, '[\"held\", ' || i || ']', '{}', now()
                 FROM generate_series(1, 4) AS i",
                &[&TRIGGER],
            )
            .await?;
        let backlog = self.write_backlog().await?;

        self.prepare_run().await?;
        let marks = CpuMarks::now()?;
        let started = Instant::now();
        let setting = DispatchSetting {
            concurrency: 1,
            batch_size: self.settings.dispatch[0].batch_size,
        };
        let gateway = self.start_gateway(setting, HELD_PATH).await?;
        while max_outbox_id(&self.db).await? < backlog.last {
            ensure!(
                started.elapsed() < DRAIN_LIMIT,
                "the outbox rows were not all stored within {DRAIN_LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let elapsed = started.elapsed();
        let cpu = self.cpu_since(&marks).await?;

        // Stopping first keeps the dispatcher from claiming the stored rows once released.
        gateway.shutdown();
        self.receiver.release_held();
        gateway.stop().await;
        self.receiver.take();

        println!(
            "all {rows} outbox rows stored {:.2} s after the gateway started: {:.0} rows/s, \
             {:.0} µs per transaction",
            elapsed.as_secs_f64(),
            rows as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * 1e6 / rows as f64
        );
        cpu.print();
        self.print_statements(elapsed).await?;
        Ok(())
    }

    /// Profile part 6: times the outbox INSERT on a scratch copy of the outbox table, one
    /// statement per transaction. The first variant sends it as `outbox.rs` does, as text, so
    /// tokio-postgres prepares it again on every call. The others prepare it once and send 1
    /// or 100 rows per statement.
    async fn insert_timings(&mut self) -> Result<()> {
        const ROWS: usize = 10_000;
        const BATCH: usize = 100;
        println!("\n== 6. outbox INSERT timings: {ROWS} rows per variant, autocommit");
        let body = String::from_utf8(self.sample_body().await?.to_vec())?;
        self.db
            .batch_execute(
                "CREATE SCHEMA bench_scratch;
                 CREATE TABLE bench_scratch.outbox
                     (LIKE walgate.webhook_deliveries INCLUDING ALL)",
            )
            .await?;
        let sql = OUTBOX_INSERT.replace("{table}", "bench_scratch.outbox");
        let client = connect_sql(self.cluster).await?;
        let commit_time = "2026-01-01T00:00:00.000000Z";
        self.prepare_run().await?;

        let select = client.prepare("SELECT 1").await?;
        let started = Instant::now();
        for _ in 0..ROWS {
            client.query_one(&select, &[]).await?;
        }
        print_timing("prepared SELECT 1 (one round trip)", started, ROWS, 1);

        let mut next_id = 0usize;
        let mut columns = |rows: usize| {
            let ids: Vec<String> = (next_id..next_id + rows).map(|i| i.to_string()).collect();
            let keys: Vec<String> = ids.iter().map(|id| format!("[{id}]")).collect();
            next_id += rows;
            (ids, keys)
        };
        let (one_trigger, one_body, one_time) =
            (vec![TRIGGER], vec![body.as_str()], vec![commit_time]);
        let started = Instant::now();
        for _ in 0..ROWS {
            let (ids, keys) = columns(1);
            client
                .execute(
                    sql.as_str(),
                    &[&one_trigger, &ids, &keys, &one_body, &one_time],
                )
                .await?;
        }
        print_timing("as outbox.rs: text, 1 row", started, ROWS, 1);

        let insert = client.prepare(&sql).await?;
        let started = Instant::now();
        for _ in 0..ROWS {
            let (ids, keys) = columns(1);
            client
                .execute(&insert, &[&one_trigger, &ids, &keys, &one_body, &one_time])
                .await?;
        }
        print_timing("prepared once, 1 row", started, ROWS, 1);

        let triggers = vec![TRIGGER; BATCH];
        let bodies = vec![body.as_str(); BATCH];
        let commit_times = vec![commit_time; BATCH];
        let started = Instant::now();
        for _ in 0..ROWS / BATCH {
            let (ids, keys) = columns(BATCH);
            client
                .execute(&insert, &[&triggers, &ids, &keys, &bodies, &commit_times])
                .await?;
        }
        print_timing(
            &format!("prepared once, {BATCH} rows"),
            started,
            ROWS / BATCH,
            BATCH,
        );
        self.print_statements(Duration::ZERO).await?;
        Ok(())
    }

    /// Profile part 7: times one claim on a scratch copy of the outbox table. The copy gets
    /// delivered rows, an ANALYZE, and then pending rows, as after an idle spell followed by a
    /// burst. The claim then runs again after a fresh ANALYZE. Each time it runs as
    /// `dispatch.rs` has it, and with `OFFSET 0` in its NOT EXISTS, which keeps PostgreSQL from
    /// turning the NOT EXISTS into an anti join.
    async fn claim_plans(&mut self) -> Result<()> {
        let pending = self.settings.rows / 2;
        let batch = i64::from(self.settings.dispatch[0].batch_size);
        println!(
            "\n== 7. claim query: {batch} rows claimed among {pending} pending rows and \
             {DELIVERED_ROWS} delivered ones"
        );
        self.db
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS bench_scratch;
                 CREATE TABLE bench_scratch.claims
                     (LIKE walgate.webhook_deliveries INCLUDING ALL);
                 INSERT INTO bench_scratch.claims (trigger_name, event_id, row_key, body,
                     commit_time, status, attempts, finished_at, last_status)
                 SELECT '{TRIGGER}', 'old:' || i, '[' || i || ']', repeat('x', 400), now(),
                     'delivered', 1, now(), 200
                 FROM generate_series(1, {DELIVERED_ROWS}) AS i"
            ))
            .await?;
        // VACUUM cannot run in the implicit transaction of a multi-statement batch.
        self.db
            .batch_execute("VACUUM ANALYZE bench_scratch.claims")
            .await?;
        self.db
            .batch_execute(&format!(
                "INSERT INTO bench_scratch.claims (trigger_name, event_id, row_key, body,
                     commit_time)
                 SELECT '{TRIGGER}', 'new:' || i, '[' || ({DELIVERED_ROWS} + i) || ']',
                     repeat('x', 400), now()
                 FROM generate_series(1, {pending}) AS i;"
            ))
            .await?;
        for fresh in [false, true] {
            if fresh {
                self.db
                    .batch_execute("ANALYZE bench_scratch.claims")
                    .await?;
            }
            let stats = if fresh {
                "fresh statistics"
            } else {
                "statistics from before the burst"
            };
            for (variant, fence) in [("as dispatch.rs", ""), ("with OFFSET 0", " OFFSET 0")] {
                let sql = CLAIM
                    .replace("{table}", "bench_scratch.claims")
                    .replace("{fence}", fence);
                // Each claim is rolled back so that every variant starts from the same rows.
                self.db
                    .batch_execute("BEGIN; SET LOCAL statement_timeout = '120s'")
                    .await?;
                let started = Instant::now();
                let result = self
                    .db
                    .query(&sql, &[&batch, &15_000i64, &vec![TRIGGER]])
                    .await;
                let elapsed = started.elapsed();
                self.db.batch_execute("ROLLBACK").await?;
                let outcome = match result {
                    Ok(rows) => format!("{} rows in {:.1} ms", rows.len(), ms(elapsed)),
                    Err(err) => format!("failed after {:.1} ms: {err}", ms(elapsed)),
                };
                println!("{stats:<34} {variant:<16} {outcome}");
            }
        }
        Ok(())
    }

    /// Reads the body of the newest outbox row, for the plain POST loop.
    async fn sample_body(&self) -> Result<Bytes> {
        let row = self
            .db
            .query_opt(
                "SELECT body FROM walgate.webhook_deliveries ORDER BY id DESC LIMIT 1",
                &[],
            )
            .await?;
        Ok(match row {
            Some(row) => Bytes::from(row.get::<_, String>(0)),
            None => Bytes::from_static(
                br#"{"trigger":"order_created","table":"orders","schema":"public","operation":"INSERT","data":{"new":{"id":1},"old":null},"timestamp":"2026-01-01T00:00:00.000000Z"}"#,
            ),
        })
    }

    /// Part 4: sends plain POSTs from a reqwest loop with `concurrency` requests in flight.
    async fn plain_posts(&mut self, body: &Bytes, concurrency: usize) -> Result<()> {
        let rows = self.settings.rows;
        println!(
            "\n== 4. plain POST loop: {rows} requests of {} bytes, {concurrency} in flight",
            body.len()
        );
        self.prepare_run().await?;
        let marks = CpuMarks::now()?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let url = format!("http://{}{HOOK_PATH}", self.receiver.addr);

        let started = Instant::now();
        let failures = futures_util::stream::iter(0..rows)
            .map(|i| {
                client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("webhook-id", format!("{TRIGGER}:plain:{i}"))
                    .body(body.clone())
                    .send()
            })
            .buffer_unordered(concurrency)
            .filter(|result| {
                let failed = !result
                    .as_ref()
                    .is_ok_and(|response| response.status().is_success());
                std::future::ready(failed)
            })
            .count()
            .await;
        let elapsed = started.elapsed();
        ensure!(failures == 0, "{failures} plain POSTs failed");
        let cpu = self.cpu_since(&marks).await?;

        let drain = Drain::new(self.receiver.take(), None, 0);
        drain.print(started);
        println!(
            "client side: {rows} requests in {:.2} s ({:.0}/s)",
            elapsed.as_secs_f64(),
            rows as f64 / elapsed.as_secs_f64()
        );
        cpu.print();
        self.summarize(
            "4 plain POST loop",
            &format!("{concurrency} in flight"),
            &drain,
        );
        Ok(())
    }

    /// Waits for the machine to go idle, clears the receiver and the statement statistics.
    async fn prepare_run(&mut self) -> Result<()> {
        let load = wait_until_quiet(self.settings.quiet_wait).await?;
        if load >= 0.1 {
            println!("(the machine stayed busy: {load:.2} cores in use before this run)");
        }
        self.receiver.take();
        if self.settings.profile {
            self.db
                .batch_execute("SELECT pg_stat_statements_reset()")
                .await?;
        }
        Ok(())
    }

    /// CPU use since `marks`, split by the gateway's database backends.
    async fn cpu_since(&self, marks: &CpuMarks) -> Result<CpuUse> {
        // Each backend's CPU time at the start of the run is subtracted, so a backend that
        // serves several runs (part 3) is counted once per run.
        let rows = self
            .db
            .query(
                "SELECT pid, backend_type, coalesce(query, '') FROM pg_stat_activity
                 WHERE pid <> pg_backend_pid()",
                &[],
            )
            .await?;
        let mut backends = BackendCpu::default();
        for row in rows {
            let pid: i32 = row.get(0);
            let backend_type: Option<String> = row.get(1);
            let query: String = row.get(2);
            let Ok(cpu) = process_cpu(&pid.to_string()) else {
                continue;
            };
            let cpu = cpu.saturating_sub(marks.backend(pid));
            if backend_type.as_deref() == Some("walsender") {
                backends.walsender += cpu;
            } else if query
                .trim_start()
                .starts_with("INSERT INTO walgate.webhook_deliveries")
            {
                backends.outbox += cpu;
            } else if query.contains("walgate.webhook_deliveries") {
                backends.dispatch += cpu;
            }
        }
        Ok(CpuUse {
            span: marks.at.elapsed(),
            process: process_cpu("self")?.saturating_sub(marks.process),
            machine: machine_cpu()?.saturating_sub(marks.machine),
            backends,
        })
    }

    /// Reads the gateway's `/metrics` and returns the change of the request-time summary since
    /// the last reading.
    async fn request_totals(&mut self, addr: SocketAddr) -> Result<RequestTotals> {
        let text = reqwest::get(format!("http://{addr}/metrics"))
            .await?
            .text()
            .await?;
        let read = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|value| value.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let now = RequestTotals {
            count: read("walgate_webhook_request_seconds_count"),
            seconds: read("walgate_webhook_request_seconds_sum"),
        };
        let change = RequestTotals {
            count: now.count - self.requests_seen.count,
            seconds: now.seconds - self.requests_seen.seconds,
        };
        self.requests_seen = now;
        Ok(change)
    }

    /// With `WEBHOOKS_PROFILE`, prints the statements that took the most server time, and
    /// their share of `span` unless it is zero.
    async fn print_statements(&self, span: Duration) -> Result<()> {
        if !self.settings.profile {
            return Ok(());
        }
        let rows = self
            .db
            .query(
                "SELECT calls, rows, total_exec_time, mean_exec_time,
                        left(regexp_replace(query, '\\s+', ' ', 'g'), 100)
                 FROM pg_stat_statements
                 WHERE query NOT LIKE '%pg_stat%' AND query NOT LIKE '%max(id)%'
                 ORDER BY total_exec_time DESC LIMIT 6",
                &[],
            )
            .await?;
        println!(
            "{:>8} {:>8} {:>9} {:>8} {:>6}  statement (pg_stat_statements)",
            "calls", "rows", "total ms", "mean ms", "% time"
        );
        for row in rows {
            let total: f64 = row.get(2);
            let share = if span.is_zero() {
                "-".to_string()
            } else {
                format!("{:.0}%", total / 10.0 / span.as_secs_f64())
            };
            println!(
                "{:>8} {:>8} {:>9.0} {:>8.3} {:>6}  {}",
                row.get::<_, i64>(0),
                row.get::<_, i64>(1),
                total,
                row.get::<_, f64>(3),
                share,
                row.get::<_, String>(4)
            );
        }
        Ok(())
    }

    fn summarize(&mut self, part: &str, setting: &str, drain: &Drain) {
        self.summary.push(SummaryLine {
            part: part.to_string(),
            setting: setting.to_string(),
            deliveries: drain.distinct,
            requests: drain.requests,
            rate: drain.rate(),
            latency: None,
        });
    }

    fn print_summary(&self) {
        if self.summary.is_empty() {
            return;
        }
        println!(
            "\nSummary. Setting is concurrency:batch_size. Rate is deliveries per second from \
             the first to the last request; in part 3 it is the write rate reached."
        );
        println!(
            "{:<38} {:>12} {:>10} {:>9} {:>9} {:>9} {:>9}",
            "part", "setting", "deliveries", "requests", "per s", "p50 ms", "p99 ms"
        );
        let plain = self
            .summary
            .iter()
            .find(|line| line.part.starts_with('4'))
            .map(|line| line.rate);
        for line in &self.summary {
            let (p50, p99) = match &line.latency {
                Some(latency) => (
                    format!("{:.1}", ms(latency.p50)),
                    format!("{:.1}", ms(latency.p99)),
                ),
                None => ("-".into(), "-".into()),
            };
            println!(
                "{:<38} {:>12} {:>10} {:>9} {:>9.0} {:>9} {:>9}",
                line.part, line.setting, line.deliveries, line.requests, line.rate, p50, p99
            );
        }
        if let Some(plain) = plain {
            for line in &self.summary {
                if line.part.starts_with('1') || line.part.starts_with('2') {
                    println!(
                        "ratio walgate / plain POST loop, {} ({}): {:.2}",
                        line.part,
                        line.setting,
                        line.rate / plain
                    );
                }
            }
        }
    }
}

/// Requests seen by the receiver during one run.
struct Drain {
    arrivals: Vec<Arrival>,
    requests: u64,
    distinct: u64,
    /// Time from the gateway's start until every backlog row was in the outbox.
    outbox_full: Option<Duration>,
    /// Attempts recorded in the outbox for the delivered rows.
    attempts: u64,
}

impl Drain {
    fn new(mut arrivals: Vec<Arrival>, outbox_full: Option<Duration>, attempts: u64) -> Self {
        arrivals.sort_by_key(|arrival| arrival.at);
        let distinct = arrivals
            .iter()
            .map(|arrival| arrival.id.as_bytes())
            .collect::<HashSet<_>>()
            .len() as u64;
        Self {
            requests: arrivals.len() as u64,
            distinct,
            arrivals,
            outbox_full,
            attempts,
        }
    }

    /// Time from the first to the last request.
    fn span(&self) -> Duration {
        match (self.arrivals.first(), self.arrivals.last()) {
            (Some(first), Some(last)) => last.at - first.at,
            _ => Duration::ZERO,
        }
    }

    /// Deliveries per second from the first to the last request.
    fn rate(&self) -> f64 {
        self.distinct as f64 / self.span().as_secs_f64().max(1e-9)
    }

    fn print(&self, started: Instant) {
        let first = self
            .arrivals
            .first()
            .map_or(0.0, |arrival| (arrival.at - started).as_secs_f64());
        let mut line = format!(
            "{} deliveries, {} requests ({} duplicates), first after {first:.2} s, \
             first to last {:.2} s: {:.0} deliveries/s",
            self.distinct,
            self.requests,
            self.requests - self.distinct,
            self.span().as_secs_f64(),
            self.rate()
        );
        if self.attempts > 0 {
            let _ = write!(line, "; {} attempts recorded", self.attempts);
        }
        println!("{line}");
    }

    /// Receive time minus commit time of the first request of each delivery.
    fn latencies(&self) -> Result<Vec<Duration>> {
        #[derive(Deserialize)]
        struct Payload<'a> {
            timestamp: &'a str,
        }
        let mut seen = HashSet::new();
        let mut latencies = Vec::with_capacity(self.arrivals.len());
        for arrival in &self.arrivals {
            if !seen.insert(arrival.id.as_bytes()) {
                continue;
            }
            let payload: Payload = serde_json::from_slice(&arrival.body)?;
            let commit = chrono::DateTime::parse_from_rfc3339(payload.timestamp)
                .with_context(|| format!("payload timestamp {:?}", payload.timestamp))?;
            let micros = (arrival.unix_micros - commit.timestamp_micros()).max(0);
            latencies.push(Duration::from_micros(micros as u64));
        }
        latencies.sort();
        Ok(latencies)
    }
}

/// Prints the time per statement and per row of `statements` statements of `rows` rows each.
fn print_timing(name: &str, started: Instant, statements: usize, rows: usize) {
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{name:<36} {:>7.1} µs per statement {:>7.1} µs per row {:>8.0} rows/s",
        elapsed * 1e6 / statements as f64,
        elapsed * 1e6 / (statements * rows) as f64,
        (statements * rows) as f64 / elapsed
    );
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Writes `transactions` single-row transactions at `rate` per second from `writers`
/// connections; returns the time taken. Transaction `j` is due `j / rate` seconds after the
/// start, and a connection that falls behind writes without pausing until it catches up.
async fn write_steady(
    cluster: &EphemeralCluster,
    rate: u64,
    transactions: u64,
    writers: u64,
) -> Result<Duration> {
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let client = connect_sql(cluster).await?;
        tasks.push(tokio::spawn(async move {
            let insert = client
                .prepare(&format!(
                    "INSERT INTO orders ({COLUMNS}) SELECT {ROW_VALUES} \
                     FROM (SELECT $1::bigint AS i) AS s"
                ))
                .await?;
            let mut j = writer;
            while j < transactions {
                let due = started + Duration::from_secs_f64(j as f64 / rate as f64);
                tokio::time::sleep_until(due).await;
                client.execute(&insert, &[&(j as i64)]).await?;
                j += writers;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed())
}

async fn max_outbox_id(db: &tokio_postgres::Client) -> Result<i64> {
    Ok(db
        .query_one(
            "SELECT coalesce(max(id), 0) FROM walgate.webhook_deliveries",
            &[],
        )
        .await?
        .get(0))
}

/// Rows of `batch` not yet delivered, counting rows not stored yet.
async fn pending(db: &tokio_postgres::Client, batch: &Backlog) -> Result<i64> {
    let delivered: i64 = db
        .query_one(
            "SELECT count(*) FROM walgate.webhook_deliveries
             WHERE id BETWEEN $1 AND $2 AND status = 'delivered'",
            &[&batch.first, &batch.last],
        )
        .await?
        .get(0);
    Ok(batch.last - batch.first + 1 - delivered)
}

/// One request seen by the receiver.
struct Arrival {
    at: Instant,
    /// Receive time in microseconds since the Unix epoch, to compare with commit times.
    unix_micros: i64,
    /// The `webhook-id` header: the same for every attempt of one delivery.
    id: HeaderValue,
    body: Bytes,
}

#[derive(Clone)]
struct ReceiverState {
    count: Arc<AtomicU64>,
    arrivals: mpsc::UnboundedSender<Arrival>,
    /// Closed by `Receiver::release_held`; until then requests on `HELD_PATH` wait for it.
    held: Arc<tokio::sync::Semaphore>,
}

/// An HTTP server on a free loopback port that returns 200 to every POST on `HOOK_PATH` and
/// records each request. POSTs on `HELD_PATH` are not recorded, and wait for
/// `release_held` before they get their 200.
struct Receiver {
    addr: SocketAddr,
    count: Arc<AtomicU64>,
    arrivals: Mutex<mpsc::UnboundedReceiver<Arrival>>,
    held: Arc<tokio::sync::Semaphore>,
    stop: CancellationToken,
}

impl Receiver {
    async fn start() -> Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (sender, arrivals) = mpsc::unbounded_channel();
        let count = Arc::new(AtomicU64::new(0));
        let held = Arc::new(tokio::sync::Semaphore::new(0));
        let state = ReceiverState {
            count: count.clone(),
            arrivals: sender,
            held: held.clone(),
        };
        let app = axum::Router::new()
            .route(HOOK_PATH, axum::routing::post(receive))
            .route(HELD_PATH, axum::routing::post(hold))
            .with_state(state);
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await;
        });
        Ok(Receiver {
            addr,
            count,
            arrivals: Mutex::new(arrivals),
            held,
            stop,
        })
    }

    /// Releases the held requests, and lets every later request on `HELD_PATH` through at once.
    fn release_held(&self) {
        self.held.close();
    }

    /// Requests since the last `take`.
    fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Drains the requests recorded since the last `take` and resets the count.
    fn take(&self) -> Vec<Arrival> {
        let mut arrivals = Vec::new();
        let mut receiver = self.arrivals.lock().unwrap();
        while let Ok(arrival) = receiver.try_recv() {
            arrivals.push(arrival);
        }
        self.count.store(0, Ordering::Release);
        arrivals
    }
}

/// Records the request and returns 200. Sending on an unbounded channel never waits.
async fn receive(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let at = Instant::now();
    let unix_micros = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as i64);
    let id = headers
        .get("webhook-id")
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static(""));
    let _ = state.arrivals.send(Arrival {
        at,
        unix_micros,
        id,
        body,
    });
    state.count.fetch_add(1, Ordering::AcqRel);
    StatusCode::OK
}

/// Waits until `Receiver::release_held`, then answers 200.
async fn hold(State(state): State<ReceiverState>) -> StatusCode {
    // Acquiring fails once the semaphore is closed, which is the release.
    let _ = state.held.acquire().await;
    StatusCode::OK
}

/// The dispatcher's `walgate_webhook_request_seconds` summary: requests and their total time.
#[derive(Default)]
struct RequestTotals {
    count: f64,
    seconds: f64,
}

impl RequestTotals {
    fn print(&self) {
        if self.count > 0.0 {
            println!(
                "dispatcher HTTP requests: {:.0}, mean {:.2} ms each (from sending to the response)",
                self.count,
                1e3 * self.seconds / self.count
            );
        }
    }
}

/// CPU counters at the start of a run.
struct CpuMarks {
    at: Instant,
    process: Duration,
    machine: Duration,
    /// Backends that existed before the run, with their CPU time then.
    backends: Vec<(i32, Duration)>,
}

impl CpuMarks {
    fn now() -> Result<Self> {
        let mut backends = Vec::new();
        for entry in std::fs::read_dir("/proc")? {
            let name = entry?.file_name();
            let Some(pid) = name.to_str().and_then(|name| name.parse::<i32>().ok()) else {
                continue;
            };
            if let Ok(cpu) = process_cpu(&pid.to_string()) {
                backends.push((pid, cpu));
            }
        }
        Ok(Self {
            at: Instant::now(),
            process: process_cpu("self")?,
            machine: machine_cpu()?,
            backends,
        })
    }

    /// CPU time of `pid` at the start of the run; zero for a process started since.
    fn backend(&self, pid: i32) -> Duration {
        self.backends
            .iter()
            .find(|(known, _)| *known == pid)
            .map_or(Duration::ZERO, |(_, cpu)| *cpu)
    }
}

/// CPU time of the gateway's database backends during a run.
#[derive(Default)]
struct BackendCpu {
    walsender: Duration,
    /// The backend whose last statement was the outbox INSERT.
    outbox: Duration,
    /// Backends whose last statement was another one on the outbox table: the dispatcher's.
    dispatch: Duration,
}

struct CpuUse {
    /// Time since the marks were taken.
    span: Duration,
    process: Duration,
    machine: Duration,
    backends: BackendCpu,
}

impl CpuUse {
    fn print(&self) {
        let secs = self.span.as_secs_f64().max(1e-9);
        let percent = |cpu: Duration| format!("{:.0}%", 100.0 * cpu.as_secs_f64() / secs);
        let backends = &self.backends;
        let known = self.process + backends.walsender + backends.outbox + backends.dispatch;
        println!(
            "CPU in % of one core over {:.2} s: this process {}, walsender {}, outbox backend {}, \
             dispatcher backend {}, other {}",
            secs,
            percent(self.process),
            percent(backends.walsender),
            percent(backends.outbox),
            percent(backends.dispatch),
            percent(self.machine.saturating_sub(known)),
        );
    }
}

async fn connect_sql(cluster: &EphemeralCluster) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(
        &cluster.connection_string("postgres"),
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(connection);
    Ok(client)
}

/// User plus system CPU time of a process, from `/proc/<pid>/stat` (`self` for this one).
fn process_cpu(pid: &str) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name in parentheses may hold spaces; the fields after it are plain.
    let (_, rest) = stat.rsplit_once(')').context("malformed stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11).context("no utime")?.parse::<u64>()?
        + fields.get(12).context("no stime")?.parse::<u64>()?;
    // Linux reports these in USER_HZ, which is 100 on every mainstream architecture.
    Ok(Duration::from_millis(ticks * 10))
}

/// Busy CPU time of the whole machine since boot, from the first line of `/proc/stat`.
fn machine_cpu() -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal ...; guest time is already in user.
    let busy: u64 = ticks.iter().take(8).sum::<u64>()
        - ticks.get(3).copied().unwrap_or(0)
        - ticks.get(4).copied().unwrap_or(0);
    Ok(Duration::from_millis(busy * 10))
}

/// Waits, for up to `limit`, until the machine is nearly idle, so that a run does not share
/// the two cores with a build. Returns the load seen last, in cores.
async fn wait_until_quiet(limit: Duration) -> Result<f64> {
    const SAMPLE: Duration = Duration::from_millis(500);
    let started = Instant::now();
    loop {
        let before = machine_cpu()?;
        tokio::time::sleep(SAMPLE).await;
        let load = machine_cpu()?.saturating_sub(before).as_secs_f64() / SAMPLE.as_secs_f64();
        if load < 0.1 || started.elapsed() >= limit {
            return Ok(load);
        }
    }
}

fn print_machine(server_version: &str) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or("unknown", |(_, model)| model.trim());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0);
    println!(
        "machine: {cpus} CPUs ({model}), {:.1} GiB memory, PostgreSQL {server_version}",
        memory_kib as f64 / (1024.0 * 1024.0)
    );
}
