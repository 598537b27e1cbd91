//! Throwaway PostgreSQL clusters for `walgate dev` and the test suite.
//!
//! A cluster lives in a temporary directory, listens on 127.0.0.1 on a free port and on a Unix
//! socket inside its own directory, runs with `wal_level = logical`, and is stopped and deleted
//! when the [`EphemeralCluster`] is dropped. `initdb` refuses to run as root, so when the current
//! user is root every server command runs as the `postgres` user through `runuser`.

use std::ffi::OsStr;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Errors from locating, creating or starting a throwaway cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL server binaries not found: looked for initdb on PATH, in `pg_config --bindir` \
         and in /usr/lib/postgresql/*/bin; install the server (for example \
         `apt-get install postgresql`) or put its bin directory on PATH"
    )]
    BinariesNotFound,
    #[error("running as root, but there is no `postgres` user to run the server as: {0}")]
    NoPostgresUser(String),
    #[error("{command} failed: {detail}")]
    CommandFailed { command: String, detail: String },
    #[error("I/O error while preparing the cluster in {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Location of the PostgreSQL server programs (`initdb`, `pg_ctl`, `postgres`).
#[derive(Debug, Clone)]
pub struct PgBinaries {
    pub bindir: PathBuf,
}

impl PgBinaries {
    /// Finds the server binaries: `initdb` on PATH, then `pg_config --bindir`, then the newest
    /// `/usr/lib/postgresql/<version>/bin` (Debian's layout, which keeps them off PATH).
    pub fn locate() -> Result<Self, ClusterError> {
        if let Some(dir) = find_on_path("initdb") {
            // A PATH entry may hold only links to some server programs (as /usr/local/bin does
            // on some machines), so the directory of the real initdb is used.
            let real = fs::canonicalize(dir.join("initdb")).ok();
            let bindir = real
                .as_deref()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .unwrap_or(dir);
            return Ok(Self { bindir });
        }
        if let Some(dir) = pg_config_bindir() {
            return Ok(Self { bindir: dir });
        }
        newest_debian_bindir()
            .map(|bindir| Self { bindir })
            .ok_or(ClusterError::BinariesNotFound)
    }

    /// Path of one program in the bin directory.
    pub fn program(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|dir| dir.join(program).is_file())
}

fn pg_config_bindir() -> Option<PathBuf> {
    let output = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    dir.join("initdb").is_file().then_some(dir)
}

fn newest_debian_bindir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bindir = entry.path().join("bin");
            bindir.join("initdb").is_file().then_some((version, bindir))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

/// Settings for a new cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Authentication method for TCP connections in `pg_hba.conf`: `trust`, `password`, `md5`
    /// or `scram-sha-256`.
    pub host_auth: String,
    /// Password given to the `postgres` superuser (needed by every method except `trust`).
    pub superuser_password: Option<String>,
    /// Extra `postgresql.conf` lines.
    pub extra_settings: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            host_auth: "trust".into(),
            superuser_password: None,
            extra_settings: Vec::new(),
        }
    }
}

/// A running PostgreSQL cluster in a temporary directory, removed on drop.
#[derive(Debug)]
pub struct EphemeralCluster {
    binaries: PgBinaries,
    root: tempfile::TempDir,
    port: u16,
    as_postgres_user: bool,
    running: bool,
    /// Set once the server has started, after which restarts keep the same port.
    running_once: bool,
}

/// The superuser created by `initdb -U`.
pub const SUPERUSER: &str = "postgres";

impl EphemeralCluster {
    /// Creates and starts a cluster with `wal_level = logical` on a free port.
    ///
    /// Blocking: call it from `spawn_blocking` inside an async runtime.
    pub fn start(binaries: &PgBinaries, options: &ClusterOptions) -> Result<Self, ClusterError> {
        let as_postgres_user = is_root();
        let root = tempfile::Builder::new()
            .prefix("walgate-pg-")
            .tempdir()
            .map_err(|source| io_error(Path::new("/tmp"), source))?;
        let mut cluster = Self {
            binaries: binaries.clone(),
            root,
            port: 0,
            as_postgres_user,
            running: false,
            running_once: false,
        };
        cluster.init(options)?;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Data directory of the cluster.
    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// Directory of the server's Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.root.path().to_path_buf()
    }

    /// Server log file.
    pub fn log_file(&self) -> PathBuf {
        self.root.path().join("server.log")
    }

    /// Connection string (key=value form) for the superuser over TCP.
    pub fn connection_string(&self, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={SUPERUSER} dbname={dbname}",
            self.port
        )
    }

    /// Connection URL for the superuser over TCP.
    pub fn url(&self, dbname: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{dbname}", self.port)
    }

    /// Path of a server program such as `pg_ctl` or `pg_recvlogical`.
    pub fn program(&self, name: &str) -> PathBuf {
        self.binaries.program(name)
    }

    /// Path of a client program such as `psql`: beside the server binaries when it is there
    /// (Debian keeps both in `/usr/lib/postgresql/<version>/bin`), else the first on PATH,
    /// else the bare name.
    pub fn client_program(&self, name: &str) -> PathBuf {
        let beside = self.binaries.program(name);
        if beside.is_file() {
            return beside;
        }
        find_on_path(name)
            .map(|dir| dir.join(name))
            .unwrap_or_else(|| PathBuf::from(name))
    }

    fn init(&mut self, options: &ClusterOptions) -> Result<(), ClusterError> {
        if self.as_postgres_user {
            chown_to_postgres(self.root.path())?;
        }
        let data = self.data_dir();
        let mut args: Vec<String> = vec![
            "-D".into(),
            data.display().to_string(),
            "-U".into(),
            SUPERUSER.into(),
            "-E".into(),
            "UTF8".into(),
            "--locale=C".into(),
            "--no-sync".into(),
            "--auth-local=trust".into(),
            format!("--auth-host={}", options.host_auth),
        ];
        let password_file = self.root.path().join("pwfile");
        if let Some(password) = &options.superuser_password {
            fs::write(&password_file, password)
                .map_err(|source| io_error(&password_file, source))?;
            if self.as_postgres_user {
                chown_to_postgres(&password_file)?;
            }
            args.push(format!("--pwfile={}", password_file.display()));
        }
        self.run_server_command("initdb", &args)?;
        let _ = fs::remove_file(&password_file);
        self.write_settings(options)
    }

    fn write_settings(&mut self, options: &ClusterOptions) -> Result<(), ClusterError> {
        let mut settings = vec![
            "listen_addresses = '127.0.0.1'".to_string(),
            format!(
                "unix_socket_directories = '{}'",
                self.socket_dir().display()
            ),
            "wal_level = logical".into(),
            "max_replication_slots = 20".into(),
            "max_wal_senders = 20".into(),
            "max_connections = 100".into(),
            "shared_buffers = 64MB".into(),
            "fsync = off".into(),
            "full_page_writes = off".into(),
            "log_min_messages = warning".into(),
        ];
        settings.extend(options.extra_settings.iter().cloned());
        let conf = self.data_dir().join("postgresql.conf");
        let mut text = fs::read_to_string(&conf).map_err(|source| io_error(&conf, source))?;
        text.push_str("\n# throwaway cluster settings\n");
        for line in settings {
            text.push_str(&line);
            text.push('\n');
        }
        fs::write(&conf, text).map_err(|source| io_error(&conf, source))
    }

    fn start_server(&mut self) -> Result<(), ClusterError> {
        // A port found free can be taken by another process before the server binds it, so a
        // failed start is retried on a fresh port.
        let mut last_error = None;
        for _ in 0..3 {
            match self.start_server_on_free_port() {
                Ok(()) => return Ok(()),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.expect("at least one start attempt"))
    }

    fn start_server_on_free_port(&mut self) -> Result<(), ClusterError> {
        if self.port == 0 || !self.running_once {
            self.port = free_port().map_err(|source| io_error(Path::new("127.0.0.1"), source))?;
        }
        let args = [
            "-D".to_string(),
            self.data_dir().display().to_string(),
            "-l".into(),
            self.log_file().display().to_string(),
            "-o".into(),
            format!("-p {}", self.port),
            "-w".into(),
            "-t".into(),
            "60".into(),
            "start".into(),
        ];
        self.run_server_command("pg_ctl", &args).map_err(|err| {
            let log = fs::read_to_string(self.log_file()).unwrap_or_default();
            ClusterError::CommandFailed {
                command: "pg_ctl start".into(),
                detail: format!("{err}; server log:\n{log}"),
            }
        })?;
        self.running = true;
        self.running_once = true;
        Ok(())
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`). Dropping the cluster does this too.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let args = [
            "-D".to_string(),
            self.data_dir().display().to_string(),
            "-m".into(),
            "immediate".into(),
            "-w".into(),
            "stop".into(),
        ];
        if let Err(err) = self.run_server_command("pg_ctl", &args) {
            tracing::warn!(error = %err, "stopping the throwaway cluster failed");
        }
        self.running = false;
    }

    /// Restarts the server on the same port, keeping its data.
    pub fn restart(&mut self) -> Result<(), ClusterError> {
        self.stop();
        self.start_server()
    }

    fn run_server_command<S: AsRef<OsStr>>(
        &self,
        program: &str,
        args: &[S],
    ) -> Result<Output, ClusterError> {
        let path = self.binaries.program(program);
        let mut command = if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", SUPERUSER, "--"]).arg(&path);
            command
        } else {
            Command::new(&path)
        };
        command.args(args).current_dir(self.root.path());
        let output = command
            .output()
            .map_err(|err| ClusterError::CommandFailed {
                command: path.display().to_string(),
                detail: err.to_string(),
            })?;
        if !output.status.success() {
            return Err(ClusterError::CommandFailed {
                command: format!("{} ({})", path.display(), output.status),
                detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(output)
    }
}

impl Drop for EphemeralCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_root() -> bool {
    // The effective uid is not in std; the owner of /proc/self is the process's uid.
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn postgres_ids() -> Result<(u32, u32), ClusterError> {
    let passwd = fs::read_to_string("/etc/passwd")
        .map_err(|err| ClusterError::NoPostgresUser(err.to_string()))?;
    let line = passwd
        .lines()
        .find(|line| line.starts_with("postgres:"))
        .ok_or_else(|| ClusterError::NoPostgresUser("no postgres entry in /etc/passwd".into()))?;
    let fields: Vec<&str> = line.split(':').collect();
    let parse = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<u32>().ok())
    };
    match (parse(2), parse(3)) {
        (Some(uid), Some(gid)) => Ok((uid, gid)),
        _ => Err(ClusterError::NoPostgresUser(format!(
            "malformed passwd entry {line:?}"
        ))),
    }
}

fn chown_to_postgres(path: &Path) -> Result<(), ClusterError> {
    let (uid, gid) = postgres_ids()?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|source| io_error(path, source))
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn io_error(path: &Path, source: std::io::Error) -> ClusterError {
    ClusterError::Io {
        path: path.to_path_buf(),
        source,
    }
}
