//! Rows per second of an NDJSON export over REST (`GET /api/t?stream=true`), measured side by
//! side with `psql` running `COPY (SELECT row_to_json(t) FROM t) TO STDOUT` on the same table,
//! and the gateway's memory while it streams.
//!
//! Run with `cargo bench --bench rest_ndjson`. The bench starts a throwaway cluster and, for each
//! size, a database `rows_<size>` with a table `t` of that many rows. It then starts
//! `walgate serve` as a child process on that database, with an anonymous role that may read
//! `t`, and alternates the two readers for a number of runs:
//!
//! - psql: `psql -X -c "COPY (SELECT row_to_json(t) FROM t) TO STDOUT"` with its output sent to
//!   `/dev/null`, timed from spawn to exit.
//! - walgate: a reqwest client in this process sends `GET /api/t?stream=true` and reads the
//!   body, counting newlines and dropping the bytes. It is timed from the request to the last
//!   byte, and the line count must equal the row count.
//!
//! During each run a thread samples, every 20 ms, the gateway's resident memory (`VmRSS`) and the
//! CPU time of the reader and of the database backends that serve it. The bench prints the
//! median rate of each reader, their ratio (walgate / psql), the gateway's resident memory once
//! started and idle, and its peak during the runs. Results are in `docs/benchmarks.md`.
//!
//! Environment variables, for profiling and quick checks:
//! - `REST_NDJSON_SIZES=N,...` sets the table sizes in rows (default `1000000,10000000`).
//! - `REST_NDJSON_SCALE=N` divides every size by N (default 1).
//! - `REST_NDJSON_RUNS=N` sets the number of runs per reader (default 3).
//! - `REST_NDJSON_BATCH_ROWS=N,...` starts one gateway per value, with `rest.stream_batch_rows`
//!   set to it in a config file. Without it the gateway runs with its default.
//! - `REST_NDJSON_QUIET_SECS=N` sets how long the bench waits, before each run, for the machine
//!   to go idle (default 15).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tokio::process::{Child, Command};

use walgate::cluster::{ClusterOptions, EphemeralCluster, PgBinaries, SUPERUSER};

/// The table every size gets, in a database of its own.
const SCHEMA: &str = "CREATE TABLE t (
    id bigint PRIMARY KEY,
    customer text NOT NULL,
    total numeric(10, 2) NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL
)";

/// Fills `t` with rows 1 to `$1`: about 50 bytes of column text per row, and about 115 bytes
/// of JSON, such as
/// `{"id":42,"customer":"customer-42","total":1.42,"status":"shipped","created_at":"..."}`.
const FILL: &str = "INSERT INTO t
 SELECT i, 'customer-' || (i % 5000), round((i % 100000) / 100.0 + 1, 2),
        (ARRAY['pending', 'paid', 'shipped', 'cancelled'])[1 + i % 4],
        timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second'
 FROM generate_series(1, $1::bigint) AS i";

/// The reference export.
const COPY: &str = "COPY (SELECT row_to_json(t) FROM t) TO STDOUT";

/// The NOLOGIN role that serves requests without a token.
const ANON_ROLE: &str = "rest_ndjson_anon";

/// The gateway's replication slot, dropped each time a gateway stops. Every gateway
/// starts after the tables are filled, so its slot has nothing to decode.
const SLOT: &str = "rest_ndjson";

const SAMPLE_INTERVAL: Duration = Duration::from_millis(20);

struct Settings {
    sizes: Vec<u64>,
    runs: usize,
    /// `rest.stream_batch_rows` of each gateway; `None` keeps walgate's default.
    batch_rows: Vec<Option<u64>>,
    quiet_wait: Duration,
}

impl Settings {
    fn from_env() -> Result<Self> {
        let text = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let list = |name: &str| -> Result<Option<Vec<u64>>> {
            let Some(text) = text(name) else {
                return Ok(None);
            };
            let values = text
                .split(',')
                .map(|item| {
                    let value: u64 = item.trim().parse().with_context(|| {
                        format!("invalid {name}: {item:?} is not a whole number")
                    })?;
                    ensure!(value > 0, "invalid {name}: every value must be at least 1");
                    Ok(value)
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Some(values))
        };
        let number = |name: &str, default: u64| -> Result<u64> {
            match list(name)?.as_deref() {
                None => Ok(default),
                Some([value]) => Ok(*value),
                Some(_) => bail!("invalid {name}: expected one number"),
            }
        };
        let scale = number("REST_NDJSON_SCALE", 1)?;
        let sizes = list("REST_NDJSON_SIZES")?
            .unwrap_or_else(|| vec![1_000_000, 10_000_000])
            .into_iter()
            .map(|size| (size / scale).max(1))
            .collect();
        let batch_rows = match list("REST_NDJSON_BATCH_ROWS")? {
            Some(values) => values.into_iter().map(Some).collect(),
            None => vec![None],
        };
        Ok(Self {
            sizes,
            runs: usize::try_from(number("REST_NDJSON_RUNS", 3)?)?,
            batch_rows,
            quiet_wait: Duration::from_secs(number("REST_NDJSON_QUIET_SECS", 15)?),
        })
    }
}

fn main() -> Result<()> {
    let settings = Settings::from_env()?;
    let binaries = PgBinaries::locate()?;
    let options = ClusterOptions {
        // Keeps the fill of the largest table from forcing checkpoints.
        extra_settings: vec!["max_wal_size = '8GB'".into()],
        ..ClusterOptions::default()
    };
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
    let admin = connect_sql(cluster, "postgres").await?;
    let server_version: String = admin.query_one("SHOW server_version", &[]).await?.get(0);
    print_machine(&server_version);
    admin
        .batch_execute(&format!("CREATE ROLE {ANON_ROLE} NOLOGIN"))
        .await?;
    for &rows in &settings.sizes {
        fill(cluster, &admin, rows).await?;
    }
    admin.batch_execute("CHECKPOINT").await?;

    let files = tempfile::tempdir()?;
    let bench = Bench {
        cluster,
        admin,
        files: files.path(),
        settings,
        postmaster: postmaster_pid(cluster)?,
        http: reqwest::Client::builder().no_proxy().build()?,
    };
    let mut outcomes = Vec::new();
    for &rows in &settings.sizes {
        for &batch_rows in &settings.batch_rows {
            outcomes.push(bench.measure(rows, batch_rows).await?);
        }
    }
    print_summary(&outcomes);
    Ok(())
}

/// Creates the database of `rows` rows, with `t` filled, vacuumed and readable by the anonymous
/// role. The vacuum sets hint bits and the visibility map, so no reader pays for that.
async fn fill(cluster: &EphemeralCluster, admin: &tokio_postgres::Client, rows: u64) -> Result<()> {
    let database = database_name(rows);
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await?;
    let db = connect_sql(cluster, &database).await?;
    let started = Instant::now();
    db.batch_execute(SCHEMA).await?;
    db.execute(FILL, &[&(rows as i64)]).await?;
    // VACUUM cannot share the implicit transaction of a multi-statement batch.
    db.batch_execute("VACUUM (FREEZE, ANALYZE) t").await?;
    db.batch_execute(&format!("GRANT SELECT ON t TO {ANON_ROLE}"))
        .await?;
    let bytes: i64 = db.query_one("SELECT pg_table_size('t')", &[]).await?.get(0);
    println!(
        "{database}: {rows} rows, table {:.0} MB, filled and vacuumed in {:.1} s",
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn database_name(rows: u64) -> String {
    format!("rows_{rows}")
}

struct Bench<'a> {
    cluster: &'a EphemeralCluster,
    /// A connection to the `postgres` database, outside the measured databases.
    admin: tokio_postgres::Client,
    files: &'a Path,
    settings: &'a Settings,
    postmaster: u32,
    http: reqwest::Client,
}

#[derive(Clone, Copy, PartialEq)]
enum Reader {
    Psql,
    Walgate,
}

impl Reader {
    fn name(self) -> &'static str {
        match self {
            Reader::Psql => "psql COPY",
            Reader::Walgate => "walgate",
        }
    }
}

/// One export of the whole table by one reader.
struct Run {
    reader: Reader,
    elapsed: Duration,
    bytes: u64,
    /// CPU time of psql or of the gateway process, sampled every 20 ms, so a psql run is up to
    /// 20 ms short.
    reader_cpu: Duration,
    /// CPU time of the database's client backends, sampled in the same way.
    backend_cpu: Duration,
    /// CPU time of this process, which is the HTTP client of a walgate run.
    client_cpu: Duration,
    /// Busy CPU time of the whole machine.
    machine_cpu: Duration,
    /// Highest gateway `VmRSS` sample during a walgate run, in KiB.
    peak_rss_kib: u64,
}

impl Run {
    fn rate(&self, rows: u64) -> f64 {
        rows as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self, number: usize, rows: u64) {
        let secs = self.elapsed.as_secs_f64();
        let percent = |cpu: Duration| format!("{:>3.0}%", 100.0 * cpu.as_secs_f64() / secs);
        let known = self.reader_cpu + self.backend_cpu + self.client_cpu;
        let mut line = format!(
            "run {number} {:<9} {secs:>7.3} s {:>9.0} rows/s  CPU: reader {} backend {} \
             client {} other {}",
            self.reader.name(),
            self.rate(rows),
            percent(self.reader_cpu),
            percent(self.backend_cpu),
            percent(self.client_cpu),
            percent(self.machine_cpu.saturating_sub(known)),
        );
        if self.reader == Reader::Walgate {
            line.push_str(&format!(
                "  {:.0} MB  peak RSS {}",
                self.bytes as f64 / 1e6,
                mib(self.peak_rss_kib)
            ));
        }
        println!("{line}");
    }
}

/// The runs of one size with one gateway setting.
struct Outcome {
    rows: u64,
    batch_rows: Option<u64>,
    idle_rss_kib: u64,
    /// `VmHWM` of the gateway just before it stopped: the kernel's record of its peak resident
    /// memory, which can lag the `VmRSS` samples.
    high_water_kib: u64,
    runs: Vec<Run>,
}

impl Outcome {
    fn median(&self, reader: Reader, measure: impl Fn(&Run) -> f64) -> f64 {
        let mut values: Vec<f64> = self
            .runs
            .iter()
            .filter(|run| run.reader == reader)
            .map(measure)
            .collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
    }

    fn rate(&self, reader: Reader) -> f64 {
        self.median(reader, |run| run.rate(self.rows))
    }

    /// Median CPU time per row of `cpu`, in microseconds.
    fn micros_per_row(&self, reader: Reader, cpu: impl Fn(&Run) -> Duration) -> f64 {
        self.median(reader, |run| {
            cpu(run).as_secs_f64() * 1e6 / self.rows as f64
        })
    }

    fn peak_rss_kib(&self) -> u64 {
        self.runs
            .iter()
            .map(|run| run.peak_rss_kib)
            .max()
            .unwrap_or(0)
    }
}

impl Bench<'_> {
    /// Starts a gateway on the database of `rows` rows and runs both readers in turn.
    async fn measure(&self, rows: u64, batch_rows: Option<u64>) -> Result<Outcome> {
        let database = database_name(rows);
        let setting = batch_rows.map_or("default".to_string(), |rows| rows.to_string());
        println!("\n{rows} rows, rest.stream_batch_rows {setting}");
        let gateway = self.start_gateway(&database, batch_rows).await?;
        let load = wait_until_quiet(self.settings.quiet_wait).await?;
        let idle_rss_kib = memory_kib(gateway.pid, "VmRSS")?;
        println!(
            "gateway idle: RSS {} (machine load {load:.2} cores)",
            mib(idle_rss_kib)
        );

        let mut runs = Vec::new();
        for run in 0..self.settings.runs {
            let order = if run % 2 == 0 {
                [Reader::Psql, Reader::Walgate]
            } else {
                [Reader::Walgate, Reader::Psql]
            };
            for reader in order {
                let load = wait_until_quiet(self.settings.quiet_wait).await?;
                if load >= 0.1 {
                    println!("machine still busy ({load:.2} cores) after the wait; running anyway");
                }
                let result = match reader {
                    Reader::Psql => self.psql(&database).await,
                    Reader::Walgate => self.walgate(&database, &gateway, rows).await,
                };
                let result =
                    result.with_context(|| format!("{} run {}", reader.name(), run + 1))?;
                result.print(run + 1, rows);
                runs.push(result);
            }
        }
        let high_water_kib = memory_kib(gateway.pid, "VmHWM")?;
        gateway.stop(&self.admin).await?;
        Ok(Outcome {
            rows,
            batch_rows,
            idle_rss_kib,
            high_water_kib,
            runs,
        })
    }

    /// Starts `walgate serve` on `database` and waits until `/healthz` returns 200.
    async fn start_gateway(&self, database: &str, batch_rows: Option<u64>) -> Result<Gateway> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = self.files.join(format!("walgate-{database}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_walgate"));
        command.arg("serve");
        // Only the settings below apply, whatever this shell has set.
        for (name, _) in std::env::vars() {
            if name.starts_with("WALGATE_") || name == "DATABASE_URL" {
                command.env_remove(name);
            }
        }
        command
            .env("DATABASE_URL", self.cluster.url(database))
            .env("WALGATE_LISTEN", format!("127.0.0.1:{port}"))
            .env("WALGATE_ANON_ROLE", ANON_ROLE)
            .env("WALGATE_SLOT", SLOT)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true);

        if let Some(rows) = batch_rows {
            let config = self.files.join("walgate.yaml");
            std::fs::write(&config, format!("rest:\n  stream_batch_rows: {rows}\n"))?;
            command.env("WALGATE_CONFIG", &config);
        }

        let mut child = command.spawn().context("starting walgate serve")?;
        let pid = child
            .id()
            .context("walgate serve exited before its process id was read")?;
        let base = format!("http://127.0.0.1:{port}");

        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "walgate serve exited ({status}) before it was healthy: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let health = self.http.get(format!("{base}/healthz")).send().await;
            if health.is_ok_and(|response| response.status() == 200) {
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(60),
                "timed out after 60 s waiting for walgate serve to become healthy. Its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "gateway pid {pid} healthy after {:.2} s",
            started.elapsed().as_secs_f64()
        );
        Ok(Gateway {
            child,
            pid,
            base,
            log,
        })
    }

    async fn psql(&self, database: &str) -> Result<Run> {
        let marks = Marks::now(self.postmaster, database)?;
        let started = Instant::now();
        let mut child = Command::new(self.cluster.client_program("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.cluster.connection_string(database))
            .args(["-c", COPY])
            // The backend formats values with the settings of the gateway's connections.
            .env("PGOPTIONS", walgate::decode::output_settings_options())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting psql")?;

        let pid = child
            .id()
            .context("psql exited before its process id was read")?;
        let sampler = Sampler::start(&marks, pid, false);
        let status = child.wait().await?;
        let elapsed = started.elapsed();
        let samples = sampler.finish();

        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            tokio::io::AsyncReadExt::read_to_string(&mut pipe, &mut stderr).await?;
        }
        ensure!(
            status.success(),
            "psql failed ({status}): {}",
            stderr.trim()
        );
        marks.finish(Reader::Psql, elapsed, 0, samples)
    }

    async fn walgate(&self, database: &str, gateway: &Gateway, rows: u64) -> Result<Run> {
        let marks = Marks::now(self.postmaster, database)?;
        let sampler = Sampler::start(&marks, gateway.pid, true);
        let started = Instant::now();
        let body = read_ndjson(&self.http, &format!("{}/api/t?stream=true", gateway.base)).await;
        let elapsed = started.elapsed();
        let samples = sampler.finish();
        let body = body.with_context(|| format!("gateway log: {}", gateway.log.display()))?;
        ensure!(
            body.lines == rows,
            "walgate sent {} lines for {rows} rows",
            body.lines
        );
        ensure!(
            !body.last_line.starts_with("{\"error\"") && body.last_line.starts_with("{\"id\":"),
            "the stream ended with {:?}",
            body.last_line
        );
        marks.finish(Reader::Walgate, elapsed, body.bytes, samples)
    }
}

/// A `walgate serve` child process.
struct Gateway {
    child: Child,
    pid: u32,
    base: String,
    log: PathBuf,
}

impl Gateway {
    /// Stops the gateway with SIGTERM, or SIGKILL after 10 s, and drops its slot.
    async fn stop(mut self, admin: &tokio_postgres::Client) -> Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await?;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            println!("walgate serve did not stop within 10 s of SIGTERM; killing it");
            self.child.kill().await?;
        }
        // The walsender can outlive the gateway by a moment, and an active slot cannot be
        // dropped, so this retries.
        let started = Instant::now();
        loop {
            let remaining = admin
                .execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                     WHERE slot_name = $1 AND NOT active",
                    &[&SLOT],
                )
                .await;
            let left: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
                    &[&SLOT],
                )
                .await?
                .get(0);
            if remaining.is_ok() && left == 0 {
                return Ok(());
            }
            ensure!(
                started.elapsed() < Duration::from_secs(10),
                "slot {SLOT} still active 10 s after the gateway stopped"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

struct NdjsonBody {
    lines: u64,
    bytes: u64,
    last_line: String,
}

/// Reads an NDJSON response to its end, counting newlines and keeping only the last line.
async fn read_ndjson(http: &reqwest::Client, url: &str) -> Result<NdjsonBody> {
    let mut response = http.get(url).send().await?;
    let status = response.status();
    if status != 200 {
        bail!("GET {url}: {status}: {}", response.text().await?);
    }

    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    ensure!(
        content_type.starts_with("application/x-ndjson"),
        "GET {url}: content type {content_type:?}"
    );

    let (mut lines, mut bytes) = (0u64, 0u64);
    // The end of the body, long enough to hold the last line of a table row.
    let mut tail: Vec<u8> = Vec::new();
    const TAIL: usize = 4096;
    while let Some(chunk) = response.chunk().await? {
        lines += chunk.iter().filter(|&&byte| byte == b'\n').count() as u64;
        bytes += chunk.len() as u64;
        if chunk.len() >= TAIL {
            tail.clear();
            tail.extend_from_slice(&chunk[chunk.len() - TAIL..]);
        } else {
            tail.extend_from_slice(&chunk);
            if tail.len() > 2 * TAIL {
                tail.drain(..tail.len() - TAIL);
            }
        }
    }

    let text = String::from_utf8_lossy(&tail);
    let last_line = text
        .trim_end_matches('\n')
        .rsplit('\n')
        .next()
        .unwrap_or("")
        .to_string();
    Ok(NdjsonBody {
        lines,
        bytes,
        last_line,
    })
}

/// CPU counters at the start of a run.
struct Marks {
    postmaster: u32,
    /// The start of the process title of the database's client backends.
    backend_title: String,
    /// Client backends of the database that existed before the run, with their CPU time then.
    backends: HashMap<u32, Duration>,
    client: Duration,
    machine: Duration,
}

impl Marks {
    fn now(postmaster: u32, database: &str) -> Result<Self> {
        let backend_title = format!("postgres: {SUPERUSER} {database} ");
        let mut backends = HashMap::new();
        for pid in children(postmaster) {
            if process_title(pid).starts_with(&backend_title) {
                backends.insert(pid, process_cpu(&pid.to_string()).unwrap_or_default());
            }
        }
        Ok(Self {
            postmaster,
            backend_title,
            backends,
            client: process_cpu("self")?,
            machine: machine_cpu()?,
        })
    }

    fn finish(
        &self,
        reader: Reader,
        elapsed: Duration,
        bytes: u64,
        samples: Samples,
    ) -> Result<Run> {
        let backend_cpu = samples
            .backends
            .iter()
            .map(|(pid, cpu)| {
                cpu.saturating_sub(self.backends.get(pid).copied().unwrap_or_default())
            })
            .sum();
        let client_cpu = match reader {
            Reader::Psql => Duration::ZERO,
            Reader::Walgate => process_cpu("self")?.saturating_sub(self.client),
        };
        Ok(Run {
            reader,
            elapsed,
            bytes,
            reader_cpu: samples.reader_cpu.saturating_sub(samples.reader_cpu_start),
            backend_cpu,
            client_cpu,
            machine_cpu: machine_cpu()?.saturating_sub(self.machine),
            peak_rss_kib: samples.peak_rss_kib,
        })
    }
}

/// Values read by a `Sampler`, the last of each.
#[derive(Default)]
struct Samples {
    reader_cpu_start: Duration,
    reader_cpu: Duration,
    /// CPU time of each client backend of the database seen during the run.
    backends: HashMap<u32, Duration>,
    peak_rss_kib: u64,
}

/// A thread that reads `/proc` every 20 ms until `finish`.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Samples>,
}

impl Sampler {
    /// Samples the CPU time of `reader` and of the backends `marks` describes, and with `rss`
    /// the peak `VmRSS` of `reader`.
    fn start(marks: &Marks, reader: u32, rss: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let postmaster = marks.postmaster;
        let title = marks.backend_title.clone();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let reader_pid = reader.to_string();
            let mut samples = Samples {
                reader_cpu_start: process_cpu(&reader_pid).unwrap_or_default(),
                ..Samples::default()
            };
            // Children whose title shows that they are not client backends of the database,
            // such as walsenders and autovacuum workers, are not read again.
            let mut others = std::collections::HashSet::new();
            loop {
                let last = flag.load(Ordering::Acquire);
                if let Ok(cpu) = process_cpu(&reader_pid) {
                    samples.reader_cpu = cpu;
                }
                if rss {
                    if let Ok(kib) = memory_kib(reader, "VmRSS") {
                        samples.peak_rss_kib = samples.peak_rss_kib.max(kib);
                    }
                }
                for pid in children(postmaster) {
                    if others.contains(&pid) {
                        continue;
                    }
                    if !samples.backends.contains_key(&pid) {
                        let process = process_title(pid);
                        if !process.starts_with(&title) {
                            // A child just forked keeps the postmaster's command line until it
                            // sets its title, so it is checked again at the next sample.
                            if process.starts_with("postgres: ") {
                                others.insert(pid);
                            }
                            continue;
                        }
                    }
                    if let Ok(cpu) = process_cpu(&pid.to_string()) {
                        samples.backends.insert(pid, cpu);
                    }
                }
                if last {
                    return samples;
                }
                std::thread::sleep(SAMPLE_INTERVAL);
            }
        });
        Self { stop, thread }
    }

    /// Takes one last sample and returns them all.
    fn finish(self) -> Samples {
        self.stop.store(true, Ordering::Release);
        self.thread.join().unwrap_or_default()
    }
}

async fn connect_sql(cluster: &EphemeralCluster, database: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) =
        tokio_postgres::connect(&cluster.connection_string(database), tokio_postgres::NoTls)
            .await?;
    tokio::spawn(connection);
    Ok(client)
}

fn postmaster_pid(cluster: &EphemeralCluster) -> Result<u32> {
    let path = cluster.data_dir().join("postmaster.pid");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path:?}"))?;
    let first = text.lines().next().unwrap_or("");
    first
        .trim()
        .parse()
        .with_context(|| format!("{path:?} starts with {first:?}, not a process id"))
}

/// Child processes of `pid` (the postmaster is single-threaded, so its main thread has them all).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|child| child.parse().ok())
        .collect()
}

/// Reads the process title, which PostgreSQL sets to
/// `postgres: <user> <database> <client> <state>` for a client backend.
fn process_title(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// Reads a memory field of `/proc/<pid>/status`, such as `VmRSS` or `VmHWM`, in KiB.
fn memory_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// User plus system CPU time of a process, from `/proc/<pid>/stat` (`self` for this one).
fn process_cpu(pid: &str) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name in parentheses may contain spaces, but the fields after it do not.
    let (_, rest) = stat
        .rsplit_once(')')
        .with_context(|| format!("malformed /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11).context("no utime")?.parse::<u64>()?
        + fields.get(12).context("no stime")?.parse::<u64>()?;
    // Linux reports these in USER_HZ, which is 100 on every mainstream architecture.
    Ok(Duration::from_millis(ticks * 10))
}

/// Busy CPU time of the whole machine since boot: every column of the first line of
/// `/proc/stat` but idle and iowait (guest time is already in user).
fn machine_cpu() -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
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
        .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown", |(_, model)| model.trim());
    let memory_kib = memory_total_kib().unwrap_or(0);
    println!(
        "machine: {cpus} CPUs ({model}), {:.1} GiB memory, PostgreSQL {server_version}",
        memory_kib as f64 / (1024.0 * 1024.0)
    );
}

fn memory_total_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn print_summary(outcomes: &[Outcome]) {
    println!(
        "\nMedians of the runs. CPU in microseconds per row. Peak RSS is the highest 20 ms sample \
         of any walgate run. VmHWM is the kernel's high-water mark when the gateway stopped."
    );
    println!(
        "{:>10} {:>7} {:>10} {:>10} {:>6} {:>9} {:>9} {:>9} {:>7} {:>20} {:>20} {:>8}",
        "rows",
        "batch",
        "psql/s",
        "walgate/s",
        "ratio",
        "idle RSS",
        "peak RSS",
        "delta",
        "VmHWM",
        "psql CPU: psql+be",
        "walgate CPU: wg+be",
        "client"
    );
    for outcome in outcomes {
        let psql = outcome.rate(Reader::Psql);
        let walgate = outcome.rate(Reader::Walgate);
        let peak = outcome.peak_rss_kib();
        let cpu = |reader| {
            format!(
                "{:.2} + {:.2}",
                outcome.micros_per_row(reader, |run| run.reader_cpu),
                outcome.micros_per_row(reader, |run| run.backend_cpu)
            )
        };
        println!(
            "{:>10} {:>7} {:>10.0} {:>10.0} {:>6.2} {:>9} {:>9} {:>9} {:>7} {:>20} {:>20} {:>8.2}",
            outcome.rows,
            outcome
                .batch_rows
                .map_or("default".to_string(), |rows| rows.to_string()),
            psql,
            walgate,
            walgate / psql,
            mib(outcome.idle_rss_kib),
            mib(peak),
            mib(peak.saturating_sub(outcome.idle_rss_kib)),
            mib(outcome.high_water_kib),
            cpu(Reader::Psql),
            cpu(Reader::Walgate),
            outcome.micros_per_row(Reader::Walgate, |run| run.client_cpu),
        );
    }
}
