//! A throw-away PostgreSQL server for tests: `initdb` into a temporary directory (owned by
//! the `postgres` user when the tests run as root, since PostgreSQL refuses to run as
//! root), `pg_ctl` on 127.0.0.1 and a free port, stopped and removed when dropped.
//!
//! Without PostgreSQL installed, [`PgServer::start`] prints why and returns `None`, unless
//! `VMX_REQUIRE_POSTGRES` is set (as in CI), where it panics instead: nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A running test server.
pub struct PgServer {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    fsync: bool,
}

fn find_bin() -> Option<PathBuf> {
    if let Some(b) = std::env::var_os("VMX_PG_BIN") {
        return Some(PathBuf::from(b));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn check(what: &str, out: std::io::Result<Output>) -> Output {
    let out = out.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl PgServer {
    /// Starts a server, or says why it cannot (see the module docs). It runs with
    /// `fsync=off` (tests need no durability against power loss).
    pub fn start() -> Option<PgServer> {
        Self::start_with(false)
    }

    /// Like [`PgServer::start`], with PostgreSQL's `fsync` on (for benchmarks comparing
    /// against a store that syncs its commits).
    pub fn start_durable() -> Option<PgServer> {
        Self::start_with(true)
    }

    fn start_with(fsync: bool) -> Option<PgServer> {
        let Some(bin) = find_bin() else {
            let why = "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; apt-get install postgresql)";
            if std::env::var_os("VMX_REQUIRE_POSTGRES").is_some() {
                panic!("VMX_REQUIRE_POSTGRES is set but {why}");
            }
            eprintln!("SKIPPED: the PostgreSQL tests: {why}");
            return None;
        };
        // SAFETY: geteuid has no preconditions.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let base = std::env::temp_dir().join(format!(
            "vmx-pg-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&base).unwrap();
        let server = PgServer { dir: base, bin, port: free_port(), as_postgres, fsync };
        if as_postgres {
            check(
                "chown postgres",
                Command::new("chown").arg("postgres:").arg(&server.dir).output(),
            );
        }
        let data = server.dir.join("data");
        check(
            "initdb",
            server
                .cmd("initdb")
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "-D"])
                .arg(&data)
                .output(),
        );
        server.ctl("start");
        Some(server)
    }

    fn cmd(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn ctl(&self, action: &str) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync={} -c max_connections=200",
            self.port,
            self.dir.display(),
            if self.fsync { "on" } else { "off" }
        );
        check(
            &format!("pg_ctl {action}"),
            self.cmd("pg_ctl")
                .arg("-D")
                .arg(self.dir.join("data"))
                .arg("-l")
                .arg(self.dir.join("log"))
                .args(["-o", &opts, "-w", "-m", "fast", action])
                .output(),
        );
    }

    /// Restarts the server (`pg_ctl restart`).
    pub fn restart(&self) {
        self.ctl("restart");
    }

    /// Stops the server (`pg_ctl stop`).
    pub fn stop(&self) {
        self.ctl("stop");
    }

    /// Starts it again after [`PgServer::stop`].
    pub fn start_again(&self) {
        self.ctl("start");
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` as `user`.
    pub fn url_as(&self, user: &str, db: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{db}", self.port)
    }

    /// A new, empty database; returns its URL (as the superuser).
    pub fn new_db(&self, name: &str) -> String {
        self.sql("postgres", &format!("CREATE DATABASE {name}"));
        self.url_as("postgres", name)
    }

    /// Runs `sql` in database `db` as the superuser; returns its output.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let out = check(
            &format!("psql {sql}"),
            Command::new(self.bin.join("psql"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres"])
                .args(["-d", db, "-v", "ON_ERROR_STOP=1", "-tAc", sql])
                .output(),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Where the server's log is.
    pub fn log(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-w", "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
