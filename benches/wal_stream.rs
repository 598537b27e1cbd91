//! Rows per second from a logical replication slot to decoded, JSON-encoded change events,
//! measured side by side with `pg_recvlogical` draining the same WAL in the same run.
//!
//! Run with `cargo bench --bench wal_stream`. The bench starts a throwaway cluster, and for each
//! workload creates `2 × runs` pgoutput slots, writes the workload once, and drains the same WAL
//! range `runs` times with each reader, alternating which one goes first. It prints the median
//! rate of each reader and their ratio (walgate / pg_recvlogical). Results are in
//! `docs/benchmarks.md`.
//!
//! Environment variables, for profiling and quick checks:
//! - `WAL_STREAM_SCALE=N` divides every workload's row count by N (default 1).
//! - `WAL_STREAM_RUNS=N` sets the number of runs per reader (default 3).
//! - `WAL_STREAM_READERS=walgate` or `=pg_recvlogical` runs only that reader.
//! - `WAL_STREAM_WORKLOADS=2` runs only the second workload (a comma-separated list of 1 and 2).
//!
//! Before each run the bench waits up to 15 s for the machine to go idle. For each run it prints
//! the CPU time of the reader, of the walsender and of everything else, in percent of one core,
//! so that a run slowed by another program shows as such.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tokio::time::MissedTickBehavior;

use walgate::change::EncodedEvent;
use walgate::cluster::{ClusterOptions, EphemeralCluster, PgBinaries};
use walgate::decode::types::TypeRegistry;
use walgate::decode::{Decoded, Decoder};
use walgate::lsn::Lsn;
use walgate::pipeline::replicator::ReplicatorConfig;
use walgate::source::connection::{ReplicationClient, ReplicationMessage, ReplicationStream};

const PUBLICATION: &str = "bench_pub";

/// Events the production replicator collects before handing them to consumers.
const BATCH_SIZE: usize = 512;

/// The demo `orders` table.
const SCHEMA: &str = "
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer text NOT NULL,
    total numeric(10, 2) NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    notes text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE PUBLICATION bench_pub FOR ALL TABLES;
";

/// The values of order number `i`, as a select list: about 100 bytes of column text per row.
const ROW_VALUES: &str = "'customer-' || (i % 5000), \
     round((i % 100000) / 100.0 + 1, 2), \
     (ARRAY['pending', 'paid', 'shipped', 'cancelled'])[1 + i % 4], \
     'order note ' || md5(i::text), \
     timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second'";

const COLUMNS: &str = "customer, total, status, notes, created_at";

#[derive(Clone, Copy)]
enum Shape {
    /// One transaction that inserts every row.
    OneTransaction,
    /// One transaction per row.
    RowPerTransaction,
}

struct Workload {
    name: &'static str,
    shape: Shape,
    rows: u64,
}

impl Workload {
    fn sql(&self) -> String {
        match self.shape {
            Shape::OneTransaction => format!(
                "INSERT INTO orders ({COLUMNS}) SELECT {ROW_VALUES} \
                 FROM generate_series(1, {}) AS i",
                self.rows
            ),
            // A DO block run as a lone statement may commit inside its loop.
            Shape::RowPerTransaction => format!(
                "DO $$ BEGIN FOR i IN 1..{} LOOP \
                 INSERT INTO orders ({COLUMNS}) SELECT {ROW_VALUES}; COMMIT; \
                 END LOOP; END $$",
                self.rows
            ),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reader {
    PgRecvlogical,
    Walgate,
}

impl Reader {
    fn name(self) -> &'static str {
        match self {
            Reader::PgRecvlogical => "pg_recvlogical",
            Reader::Walgate => "walgate",
        }
    }

    fn slot_prefix(self) -> &'static str {
        match self {
            Reader::PgRecvlogical => "ref",
            Reader::Walgate => "wg",
        }
    }
}

struct Settings {
    scale: u64,
    runs: usize,
    readers: Vec<Reader>,
    workloads: Vec<usize>,
}

impl Settings {
    fn from_env() -> Result<Self> {
        let number = |name: &str, default: u64| -> Result<u64> {
            match std::env::var(name) {
                Ok(text) => {
                    let value: u64 = text.parse().with_context(|| format!("{name}={text}"))?;
                    ensure!(value > 0, "invalid {name}={text}: expected at least 1");
                    Ok(value)
                }
                Err(_) => Ok(default),
            }
        };
        let readers = match std::env::var("WAL_STREAM_READERS").as_deref() {
            Err(_) | Ok("") | Ok("both") => vec![Reader::PgRecvlogical, Reader::Walgate],
            Ok("walgate") => vec![Reader::Walgate],
            Ok("pg_recvlogical") => vec![Reader::PgRecvlogical],
            Ok(other) => {
                bail!(
                    "invalid WAL_STREAM_READERS={other}: expected walgate, pg_recvlogical or both"
                )
            }
        };
        let workloads = match std::env::var("WAL_STREAM_WORKLOADS") {
            Err(_) => vec![1, 2],
            Ok(list) => list
                .split(',')
                .map(|item| match item.trim() {
                    "1" => Ok(1),
                    "2" => Ok(2),
                    other => {
                        bail!("invalid workload {other:?} in WAL_STREAM_WORKLOADS: expected 1 or 2")
                    }
                })
                .collect::<Result<_>>()?,
        };
        Ok(Self {
            workloads,
            scale: number("WAL_STREAM_SCALE", 1)?,
            runs: usize::try_from(number("WAL_STREAM_RUNS", 3)?)?,
            readers,
        })
    }
}

/// One drain of a slot by one reader.
struct Run {
    elapsed: Duration,
    /// CPU time of the reader: this process for walgate, the child for pg_recvlogical (sampled
    /// every 20 ms, so up to 20 ms short).
    reader_cpu: Option<Duration>,
    /// CPU time of the walsender that served the run: read at the end for walgate, sampled
    /// every 20 ms for pg_recvlogical.
    walsender_cpu: Option<Duration>,
    /// CPU time of the whole machine during the run, from `/proc/stat`.
    machine_cpu: Duration,
    /// Bytes of event JSON produced (walgate runs only).
    json_bytes: u64,
}

struct Outcome {
    workload: &'static str,
    rows: u64,
    write_time: Duration,
    wal_bytes: u64,
    runs: Vec<(Reader, Run)>,
}

impl Outcome {
    /// Computes the median of `measure` over the runs of `reader` that have it.
    fn median(&self, reader: Reader, measure: impl Fn(&Run) -> Option<f64>) -> Option<f64> {
        let mut values: Vec<f64> = self
            .runs
            .iter()
            .filter(|(r, _)| *r == reader)
            .filter_map(|(_, run)| measure(run))
            .collect();
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        Some(values[values.len() / 2])
    }

    /// Median rows per second.
    fn rate(&self, reader: Reader) -> Option<f64> {
        self.median(reader, |run| {
            Some(self.rows as f64 / run.elapsed.as_secs_f64())
        })
    }

    /// Median CPU time of the reader per row, in microseconds.
    fn reader_micros_per_row(&self, reader: Reader) -> Option<f64> {
        self.median(reader, |run| {
            run.reader_cpu
                .map(|cpu| cpu.as_secs_f64() * 1e6 / self.rows as f64)
        })
    }

    /// Median CPU use of the walsender, in percent of one core.
    fn walsender_percent(&self, reader: Reader) -> Option<f64> {
        self.median(reader, |run| {
            run.walsender_cpu
                .map(|cpu| 100.0 * cpu.as_secs_f64() / run.elapsed.as_secs_f64())
        })
    }
}

fn main() -> Result<()> {
    let settings = Settings::from_env()?;
    let binaries = PgBinaries::locate()?;
    let cluster = EphemeralCluster::start(&binaries, &ClusterOptions::default())?;
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
    let server_version: String = db.query_one("SHOW server_version", &[]).await?.get(0);
    print_machine(&server_version);
    println!(
        "runs per reader: {}, scale: 1/{}, readers: {}",
        settings.runs,
        settings.scale,
        settings
            .readers
            .iter()
            .map(|r| r.name())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let workloads = [
        Workload {
            name: "1 transaction of 1,000,000 rows",
            shape: Shape::OneTransaction,
            rows: 1_000_000 / settings.scale,
        },
        Workload {
            name: "100,000 single-row transactions",
            shape: Shape::RowPerTransaction,
            rows: 100_000 / settings.scale,
        },
    ];
    let mut outcomes = Vec::new();
    for (index, workload) in workloads.iter().enumerate() {
        if !settings.workloads.contains(&(index + 1)) {
            continue;
        }
        outcomes.push(run_workload(cluster, &db, settings, index, workload).await?);
    }
    print_summary(&outcomes);
    Ok(())
}

async fn run_workload(
    cluster: &EphemeralCluster,
    db: &tokio_postgres::Client,
    settings: &Settings,
    index: usize,
    workload: &Workload,
) -> Result<Outcome> {
    println!("\n== {} ({} rows)", workload.name, workload.rows);
    // Slots made before the workload all start before its first change; each is read once.
    let mut slots = Vec::new();
    for run in 0..settings.runs {
        for &reader in &settings.readers {
            let name = format!("{}_{index}_{run}", reader.slot_prefix());
            let row = db
                .query_one(
                    "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
                    &[&name],
                )
                .await?;
            let start: Lsn = row.get::<_, String>(0).parse()?;
            slots.push((run, reader, name, start));
        }
    }
    let before = current_wal_lsn(db).await?;
    let started = Instant::now();
    db.batch_execute(&workload.sql()).await?;
    let write_time = started.elapsed();
    let end = current_wal_lsn(db).await?;
    let wal_bytes = end.0 - before.0;
    println!(
        "wrote the workload in {:.2} s: {:.1} MB of WAL, end position {end}",
        write_time.as_secs_f64(),
        wal_bytes as f64 / 1e6
    );

    let mut runs = Vec::new();
    for run in 0..settings.runs {
        let mut order: Vec<&(usize, Reader, String, Lsn)> =
            slots.iter().filter(|slot| slot.0 == run).collect();
        // Alternate which reader goes first, so neither always finds a warmer cache.
        if run % 2 == 1 {
            order.reverse();
        }
        for (_, reader, slot, start) in order {
            let load = wait_until_quiet().await?;
            if load >= 0.1 {
                println!("(the machine stayed busy: {load:.2} cores in use before this run)");
            }
            let result = match reader {
                Reader::PgRecvlogical => pg_recvlogical(cluster, db, slot, end).await?,
                Reader::Walgate => {
                    // Production runs the replicator as a task on the runtime's workers.
                    let conn = cluster.connection_string("postgres");
                    let task = walgate(conn, slot.clone(), *start, end, workload.rows);
                    tokio::spawn(task).await??
                }
            };
            print_run(run, *reader, workload.rows, &result);
            runs.push((*reader, result));
        }
    }
    for (_, _, slot, _) in &slots {
        db.execute("SELECT pg_drop_replication_slot($1)", &[slot])
            .await?;
    }
    db.batch_execute("CHECKPOINT").await?;
    Ok(Outcome {
        workload: workload.name,
        rows: workload.rows,
        write_time,
        wal_bytes,
        runs,
    })
}

/// Drains `slot` up to `end` with pg_recvlogical, timed from its start to its exit.
async fn pg_recvlogical(
    cluster: &EphemeralCluster,
    db: &tokio_postgres::Client,
    slot: &str,
    end: Lsn,
) -> Result<Run> {
    let program = server_program(cluster, "pg_recvlogical");
    let publication = format!("publication_names={PUBLICATION}");
    let end_text = end.to_string();
    let machine_before = machine_cpu()?;
    let started = Instant::now();

    let mut child = tokio::process::Command::new(&program)
        .args(["-d", &cluster.connection_string("postgres")])
        .args(["--slot", slot, "--start", "--no-loop"])
        .args(["-o", "proto_version=1", "-o", &publication])
        .args(["--endpos", &end_text, "-f", "/dev/null"])
        // The walsender prints values with the settings walgate's connection sends.
        .env("PGOPTIONS", walgate::decode::output_settings_options())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", program.display()))?;

    let child_pid = child.id().map(|pid| pid.to_string());
    let mut walsender: Option<String> = None;
    let (mut reader_cpu, mut walsender_cpu) = (None, None);
    // Sample the CPU time of both processes until pg_recvlogical exits.
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {
                if let Some(pid) = &child_pid {
                    reader_cpu = process_cpu(pid).ok().or(reader_cpu);
                }
                match &walsender {
                    Some(pid) => walsender_cpu = process_cpu(pid).ok().or(walsender_cpu),
                    None => walsender = active_pid(db, slot).await?,
                }
            }
        }
    };
    let elapsed = started.elapsed();
    let machine_cpu = machine_cpu()?.saturating_sub(machine_before);

    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        tokio::io::AsyncReadExt::read_to_string(&mut pipe, &mut stderr).await?;
    }
    ensure!(
        status.success(),
        "pg_recvlogical failed ({status}): {}",
        stderr.trim()
    );

    // pg_recvlogical stops at a keepalive at or past the end position and confirms it, so a
    // slot left behind the end means it stopped early.
    let confirmed: Option<String> = db
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?
        .get(0);
    let confirmed: Lsn = confirmed.unwrap_or_default().parse()?;
    ensure!(
        confirmed >= end,
        "pg_recvlogical stopped at {confirmed}, before the end position {end}"
    );

    Ok(Run {
        elapsed,
        reader_cpu,
        walsender_cpu,
        machine_cpu,
        json_bytes: 0,
    })
}

/// Looks up the process id of the walsender reading `slot`, which is `None` until it starts.
async fn active_pid(db: &tokio_postgres::Client, slot: &str) -> Result<Option<String>> {
    let row = db
        .query_one(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok(row.get::<_, Option<i32>>(0).map(|pid| pid.to_string()))
}

/// Drains `slot` up to `end` the way the production replicator does, timed from the first
/// connection to the closed stream.
async fn walgate(
    conn: String,
    slot: String,
    start: Lsn,
    end: Lsn,
    expected_rows: u64,
) -> Result<Run> {
    let machine_before = machine_cpu()?;
    let cpu_before = process_cpu("self")?;
    let started = Instant::now();

    let config: tokio_postgres::Config = conn.parse()?;
    let (catalog, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let mut decoder = Decoder::new(TypeRegistry::new(Arc::new(catalog)));
    let client = ReplicationClient::connect(&config).await?;
    let options = [
        ("proto_version", "1"),
        ("publication_names", PUBLICATION),
        ("messages", "true"),
    ];
    let stream = client
        .start_logical_replication(&slot, start, &options)
        .await?;

    let mut drain = Drain::new(start, end);
    drain.pump(stream, &mut decoder).await?;
    let elapsed = started.elapsed();
    let reader_cpu = process_cpu("self")?.saturating_sub(cpu_before);
    let machine_cpu = machine_cpu()?.saturating_sub(machine_before);

    ensure!(
        drain.events == expected_rows,
        "walgate decoded {} events, expected {expected_rows}",
        drain.events
    );
    Ok(Run {
        elapsed,
        reader_cpu: Some(reader_cpu),
        walsender_cpu: drain.walsender_cpu,
        machine_cpu,
        json_bytes: drain.json_bytes,
    })
}

/// The receive loop of `pipeline::replicator`, with a counter in place of the consumers.
struct Drain {
    end: Lsn,
    batch: Vec<Arc<EncodedEvent>>,
    events: u64,
    json_bytes: u64,
    received: Lsn,
    confirmed: Lsn,
    reported: Lsn,
    last_status: tokio::time::Instant,
    status_interval: Duration,
    confirm_interval: Duration,
    walsender_cpu: Option<Duration>,
}

impl Drain {
    fn new(start: Lsn, end: Lsn) -> Self {
        let defaults = ReplicatorConfig::new(tokio_postgres::Config::new(), "", "");
        Self {
            end,
            batch: Vec::with_capacity(BATCH_SIZE),
            events: 0,
            json_bytes: 0,
            received: start,
            confirmed: start,
            reported: start,
            last_status: tokio::time::Instant::now(),
            status_interval: defaults.status_interval,
            confirm_interval: defaults.confirm_interval,
            walsender_cpu: None,
        }
    }

    async fn pump(&mut self, mut stream: ReplicationStream, decoder: &mut Decoder) -> Result<()> {
        let mut ticker = tokio::time::interval(self.confirm_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                message = stream.recv() => {
                    let Some(message) = message? else {
                        bail!("the server ended the replication stream before {}", self.end);
                    };
                    if self.handle(&mut stream, decoder, message).await? {
                        break;
                    }
                }
                _ = ticker.tick() => {
                    if self.confirmed > self.reported
                        || self.last_status.elapsed() >= self.status_interval
                    {
                        self.send_status(&mut stream).await?;
                    }
                }
            }
        }
        // Read the walsender's CPU time before it exits with the connection.
        self.walsender_cpu = stream
            .backend_pid()
            .and_then(|pid| process_cpu(&pid.to_string()).ok());
        self.send_status(&mut stream).await?;
        stream.close().await?;
        Ok(())
    }

    /// Handles one message; true once the end position is reached.
    async fn handle(
        &mut self,
        stream: &mut ReplicationStream,
        decoder: &mut Decoder,
        message: ReplicationMessage,
    ) -> Result<bool> {
        match message {
            ReplicationMessage::XLogData {
                wal_start,
                wal_end,
                data,
                ..
            } => {
                self.received = self.received.max(wal_end);
                match decoder.decode(&data, wal_start).await? {
                    Decoded::Nothing | Decoded::Begin(_) | Decoded::LogicalMessage(_) => {}
                    Decoded::Event(event) => self.push(event),
                    Decoded::Events(events) => events.into_iter().for_each(|e| self.push(e)),
                    Decoded::Commit { end_lsn, .. } => {
                        self.batch.clear();
                        self.confirmed = self.confirmed.max(end_lsn);
                        return Ok(end_lsn >= self.end);
                    }
                }
                Ok(false)
            }
            ReplicationMessage::PrimaryKeepalive {
                wal_end,
                reply_requested,
                ..
            } => {
                self.received = self.received.max(wal_end);
                if !decoder.in_transaction() && self.batch.is_empty() {
                    self.confirmed = self.confirmed.max(wal_end);
                    if wal_end >= self.end {
                        return Ok(true);
                    }
                }
                if reply_requested {
                    self.send_status(stream).await?;
                }
                Ok(false)
            }
        }
    }

    fn push(&mut self, event: walgate::change::ChangeEvent) {
        let encoded = EncodedEvent::new(event);
        self.events += 1;
        self.json_bytes += encoded.json.len() as u64;
        self.batch.push(encoded);
        if self.batch.len() >= BATCH_SIZE {
            // Where production hands the batch to its consumers.
            self.batch.clear();
        }
    }

    async fn send_status(&mut self, stream: &mut ReplicationStream) -> Result<()> {
        stream
            .send_status(self.received, self.confirmed, self.confirmed, false)
            .await?;
        self.reported = self.confirmed;
        self.last_status = tokio::time::Instant::now();
        Ok(())
    }
}

/// Finds a PostgreSQL program. `PgBinaries::locate` may pick a PATH directory that contains
/// symlinks to a few server programs only (such as `/usr/local/bin/initdb`), so a program
/// missing there is looked up beside the file that `initdb` links to.
fn server_program(cluster: &EphemeralCluster, name: &str) -> std::path::PathBuf {
    let direct = cluster.program(name);
    if direct.is_file() {
        return direct;
    }
    std::fs::canonicalize(cluster.program("initdb"))
        .ok()
        .and_then(|initdb| Some(initdb.parent()?.join(name)))
        .filter(|path| path.is_file())
        .unwrap_or(direct)
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

async fn current_wal_lsn(db: &tokio_postgres::Client) -> Result<Lsn> {
    let text: String = db
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    Ok(text.parse()?)
}

/// Returns the user plus system CPU time of a process, from `/proc/<pid>/stat` (`self` for this
/// one).
fn process_cpu(pid: &str) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name in parentheses may hold spaces; the fields after it are plain.
    let (_, rest) = stat
        .rsplit_once(')')
        .with_context(|| format!("invalid /proc/{pid}/stat: no ')' after the command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let field = |index: usize, name: &str| -> Result<u64> {
        let text = fields
            .get(index)
            .with_context(|| format!("missing {name} field in /proc/{pid}/stat"))?;
        Ok(text.parse()?)
    };
    let ticks = field(11, "utime")? + field(12, "stime")?;
    // NOTE: the kernel reports these in USER_HZ, taken here to be 100 (its value on x86-64 and
    // arm64 Linux, as `getconf CLK_TCK` prints).
    Ok(Duration::from_millis(ticks * 10))
}

/// Returns the busy CPU time of the whole machine since boot, from the first line of
/// `/proc/stat` (in USER_HZ, taken to be 100 as in `process_cpu`).
fn machine_cpu() -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("/proc/stat is empty")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    // The columns are user, nice, system, idle, iowait, irq, softirq and steal, then guest time,
    // which user already includes (proc(5)). Busy time is all but idle and iowait.
    let busy: u64 = ticks.iter().take(8).sum::<u64>()
        - ticks.get(3).copied().unwrap_or(0)
        - ticks.get(4).copied().unwrap_or(0);
    Ok(Duration::from_millis(busy * 10))
}

/// Waits, for up to `QUIET_WAIT`, until the machine is nearly idle, so that a run does not
/// share the two cores with a build. Returns the load seen last, in cores.
async fn wait_until_quiet() -> Result<f64> {
    const QUIET_WAIT: Duration = Duration::from_secs(15);
    const SAMPLE: Duration = Duration::from_millis(500);
    let started = Instant::now();
    loop {
        let before = machine_cpu()?;
        tokio::time::sleep(SAMPLE).await;
        let load = machine_cpu()?.saturating_sub(before).as_secs_f64() / SAMPLE.as_secs_f64();
        if load < 0.1 || started.elapsed() >= QUIET_WAIT {
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

fn print_run(run: usize, reader: Reader, rows: u64, result: &Run) {
    let secs = result.elapsed.as_secs_f64();
    let percent = |cpu: Option<Duration>| {
        cpu.map_or("   -".to_string(), |cpu| {
            format!("{:>3.0}%", 100.0 * cpu.as_secs_f64() / secs)
        })
    };
    let known = result.reader_cpu.unwrap_or_default() + result.walsender_cpu.unwrap_or_default();
    let mut line = format!(
        "run {} {:<15} {:>7.3} s {:>8.0} rows/s  CPU: reader {} walsender {} other {}",
        run + 1,
        reader.name(),
        secs,
        rows as f64 / secs,
        percent(result.reader_cpu),
        percent(result.walsender_cpu),
        percent(Some(result.machine_cpu.saturating_sub(known))),
    );
    if result.json_bytes > 0 {
        let _ = write!(line, "  {:.0} MB JSON", result.json_bytes as f64 / 1e6);
    }
    println!("{line}");
}

fn print_summary(outcomes: &[Outcome]) {
    println!(
        "\nMedians of the runs. ref = pg_recvlogical, wg = walgate. Reader CPU in microseconds \
         per row; walsender CPU in percent of one core."
    );
    println!(
        "{:<32} {:>8} {:>7} {:>7} {:>15} {:>8} {:>6}  {:>14} {:>10} {:>12}",
        "workload",
        "rows",
        "WAL MB",
        "write s",
        "pg_recvlogical",
        "walgate",
        "ratio",
        "reader µs/row",
        "walsender",
        "WAL MB/s"
    );
    println!(
        "{:<32} {:>8} {:>7} {:>7} {:>15} {:>8} {:>6}  {:>14} {:>10} {:>12}",
        "", "", "", "", "rows/s", "rows/s", "", "ref / walgate", "ref / wg", "ref / wg"
    );
    let show = |value: Option<f64>, digits: usize| {
        value.map_or("-".to_string(), |v| format!("{v:.digits$}"))
    };
    for outcome in outcomes {
        let reference = outcome.rate(Reader::PgRecvlogical);
        let walgate = outcome.rate(Reader::Walgate);
        let ratio = match (walgate, reference) {
            (Some(w), Some(r)) => Some(w / r),
            _ => None,
        };
        let pair = |reference: Option<f64>, walgate: Option<f64>, digits: usize| {
            format!("{} / {}", show(reference, digits), show(walgate, digits))
        };
        let wal_mb_per_s = |rate: Option<f64>| {
            rate.map(|rows_per_s| outcome.wal_bytes as f64 / 1e6 * rows_per_s / outcome.rows as f64)
        };
        println!(
            "{:<32} {:>8} {:>7.1} {:>7.2} {:>15} {:>8} {:>6}  {:>14} {:>10} {:>12}",
            outcome.workload,
            outcome.rows,
            outcome.wal_bytes as f64 / 1e6,
            outcome.write_time.as_secs_f64(),
            show(reference, 0),
            show(walgate, 0),
            show(ratio, 2),
            pair(
                outcome.reader_micros_per_row(Reader::PgRecvlogical),
                outcome.reader_micros_per_row(Reader::Walgate),
                2
            ),
            pair(
                outcome.walsender_percent(Reader::PgRecvlogical),
                outcome.walsender_percent(Reader::Walgate),
                0
            ),
            pair(wal_mb_per_s(reference), wal_mb_per_s(walgate), 1),
        );
    }
}
