//! Spawning a hub for the run: a fresh temp directory and SQLite database, a free loopback
//! port, `/readyz` polled until ready, SIGTERM (via `kill`) at the end. Plus what `/proc` says
//! about a process: CPU time, RSS, threads.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Res;

pub struct Hub {
    child: Child,
    bin: PathBuf,
    pub pid: u32,
    pub base_url: String,
    pub dir: PathBuf,
    pub db_path: PathBuf,
    pub log_path: PathBuf,
    keep_dir: bool,
}

impl Hub {
    /// Starts `bin serve` on a free port with a fresh database; returns once `/readyz` is 200.
    /// `env` is applied last, so a scenario can raise a limit for its run.
    pub async fn spawn(bin: &Path, client: &reqwest::Client, secret: Option<&str>, keep_dir: bool, env: &[(String, String)]) -> Res<Self> {
        if !bin.is_file() {
            return Err(format!("hub binary {} not found; build it with `cargo build --release -p switchboard`", bin.display()).into());
        }
        let bin = bin.canonicalize()?;
        let port = {
            let l = TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("switchboard-loadtest-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let db_path = dir.join("lt.db");
        let log_path = dir.join("hub.log");
        let log = File::create(&log_path)?;
        let mut cmd = Command::new(&bin);
        cmd.arg("serve").current_dir(&dir).stdin(Stdio::null()).stdout(Stdio::from(log.try_clone()?)).stderr(Stdio::from(log));
        // Only the settings chosen here: nothing inherited from the caller's SWITCHBOARD_* environment.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SWITCHBOARD_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("SWITCHBOARD_LISTEN", format!("127.0.0.1:{port}"))
            .env("SWITCHBOARD_DATABASE_URL", format!("sqlite://{}", db_path.display()))
            .env("SWITCHBOARD_LOG", "warn")
            .env("SWITCHBOARD_SHUTDOWN_TIMEOUT_MS", "5000");
        if let Some(s) = secret {
            cmd.env("SWITCHBOARD_VAPI_SECRET", s);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let pid = child.id();
        let mut hub = Hub { child, bin: bin.clone(), pid, base_url: format!("http://127.0.0.1:{port}"), dir, db_path, log_path, keep_dir };
        hub.wait_ready(client, Duration::from_secs(30)).await?;
        Ok(hub)
    }

    async fn wait_ready(&mut self, client: &reqwest::Client, within: Duration) -> Res<()> {
        let url = format!("{}/readyz", self.base_url);
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("the hub exited during startup ({status}); log:\n{}", self.log_tail(20)).into());
            }
            if let Ok(r) = client.get(&url).timeout(Duration::from_secs(2)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("the hub was not ready within {within:?}; log:\n{}", self.log_tail(20)).into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Mints a supervisor token for every org with `switchboard token create`, against the
    /// hub's own database (SQLite in WAL mode lets a second process write beside the hub).
    pub fn supervisor_token(&self) -> Res<String> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["token", "create", "--role", "supervisor", "--org", "*", "--label", "loadtest"]).current_dir(&self.dir);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SWITCHBOARD_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("SWITCHBOARD_DATABASE_URL", format!("sqlite://{}", self.db_path.display())).env("SWITCHBOARD_LOG", "warn");
        let out = cmd.output().map_err(|e| format!("cannot run {} token create: {e}", self.bin.display()))?;
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || !token.starts_with("sb_") {
            return Err(format!("token create failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()).into());
        }
        Ok(token)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Database file plus WAL, in bytes.
    pub fn db_bytes(&self) -> u64 {
        ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", self.db_path.display())).ok())
            .map(|m| m.len())
            .sum()
    }

    /// The hub's last warnings (without the expected no-secret one), then its exit: what every
    /// report records once a run is over.
    pub async fn finish(self) -> Res<(String, Vec<String>)> {
        let tail = self.log_tail(400);
        let mut warnings: Vec<String> = tail.lines().filter(|l| !l.contains("NO VAPI SECRET")).rev().take(10).map(str::to_string).collect();
        warnings.reverse();
        Ok((self.stop().await?, warnings))
    }

    /// SIGTERM, then wait (bounded) for the drain; SIGKILL if it does not exit in time.
    pub async fn stop(mut self) -> Res<String> {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(format!("{status}"));
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Ok("killed (did not exit within 15 s of SIGTERM)".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        // Never leave a hub behind, whatever went wrong.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A process's resource use at one moment, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    pub cpu_ticks: u64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub threads: u64,
}

pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// One thread's counters.
#[derive(Debug, Clone, Default)]
pub struct ThreadSample {
    pub name: String,
    /// utime + stime
    pub ticks: u64,
    /// Voluntary context switches: each time the thread blocked (waited for work, a lock, I/O).
    pub switches: u64,
}

/// Every thread of `pid`, by thread id.
pub fn threads(pid: &str) -> std::collections::BTreeMap<u64, ThreadSample> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<u64>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let name = stat[open + 1..close].to_string();
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let switches = std::fs::read_to_string(e.path().join("status"))
            .ok()
            .and_then(|st| {
                st.lines().find(|l| l.starts_with("voluntary_ctxt_switches:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0);
        out.insert(tid, ThreadSample { name, ticks, switches });
    }
    out
}

/// `pid` is a number, or "self".
pub fn sample(pid: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> u64 {
        status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    Some(ProcSample { cpu_ticks: utime + stime, rss_kib: field("VmRSS:"), hwm_kib: field("VmHWM:"), threads: field("Threads:") })
}

/// Whole-machine CPU counters from `/proc/stat`, in ticks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SysCpu {
    /// user + nice + system + irq + softirq
    pub busy: u64,
    /// Time the hypervisor ran something else while this VM wanted the CPU.
    pub steal: u64,
    pub total: u64,
}

pub fn system_cpu() -> Option<SysCpu> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    Some(SysCpu { busy: at(0) + at(1) + at(2) + at(5) + at(6), steal: at(7), total: (0..8).map(at).sum() })
}
