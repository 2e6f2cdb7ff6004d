//! The processes of the `chat` scenario: the mock model (`<bin> mock-llm`) and a hub
//! (`<bin> serve`, fresh SQLite, pointed at the mock, chat rate limits raised so they never
//! bite), both on free loopback ports in one temp directory. Kept apart from `hub.rs` (which
//! starts the hub of `ingest`) so the two scenarios do not edit the same code.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Res;

/// One child process, killed on drop whatever went wrong.
pub struct Proc {
    child: Child,
    pub pid: u32,
    pub base_url: String,
    pub log_path: PathBuf,
}

fn free_port() -> Res<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl Proc {
    fn spawn(bin: &Path, args: &[String], env: &[(&str, String)], dir: &Path, log_name: &str, base_url: String) -> Res<Proc> {
        let log_path = dir.join(log_name);
        let log = File::create(&log_path)?;
        let mut cmd = Command::new(bin);
        cmd.args(args).current_dir(dir).stdin(Stdio::null()).stdout(Stdio::from(log.try_clone()?)).stderr(Stdio::from(log));
        // Only the settings chosen here: nothing inherited from the caller's SWITCHBOARD_* environment.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SWITCHBOARD_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let pid = child.id();
        Ok(Proc { child, pid, base_url, log_path })
    }

    /// Polls `url` until it answers (any status when `any_status`, else 2xx), at most `within`.
    async fn wait_ready(&mut self, client: &reqwest::Client, url: &str, any_status: bool, within: Duration) -> Res<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("{} exited during startup ({status}); log:\n{}", self.log_path.display(), self.log_tail(20)).into());
            }
            if let Ok(r) = client.get(url).timeout(Duration::from_secs(2)).send().await
                && (any_status || r.status().is_success())
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("{url} did not answer within {within:?}; log:\n{}", self.log_tail(20)).into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM, then wait (bounded); SIGKILL if it does not exit in time.
    async fn stop(&mut self) -> String {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return format!("{status}"),
                Ok(None) => {}
                Err(e) => return format!("wait failed: {e}"),
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return "killed (did not exit within 15 s of SIGTERM)".into();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The mock and the hub, in one temp directory (removed at the end unless kept).
pub struct Stack {
    pub mock: Option<Proc>,
    pub hub: Option<Proc>,
    pub dir: PathBuf,
    keep_dir: bool,
}

/// Rate limits far above anything a run sends, so they never bite (bursts only exist in the file).
const CHAT_TOML: &str = "[chat]\nrate_ip_per_minute = 1000000\nrate_ip_burst = 100000\nrate_session_per_minute = 1000000\n\
     rate_session_burst = 100000\nrate_site_per_minute = 1000000\nrate_site_burst = 100000\n";

impl Stack {
    /// Starts the mock (`--chunks`, `--chunk-delay-ms 0`: every request names its own pacing),
    /// then the hub pointed at it; returns once the mock answers HTTP and the hub's `/readyz` is 200.
    pub async fn start(bin: &Path, client: &reqwest::Client, chunks: u32, keep_dir: bool) -> Res<Stack> {
        if !bin.is_file() {
            return Err(format!("hub binary {} not found; build it with `cargo build --release -p switchboard`", bin.display()).into());
        }
        let bin = bin.canonicalize()?;
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("switchboard-loadtest-chat-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut stack = Stack { mock: None, hub: None, dir: dir.clone(), keep_dir };

        let mock_port = free_port()?;
        let mock_base = format!("http://127.0.0.1:{mock_port}");
        let args = ["mock-llm", "--listen", &format!("127.0.0.1:{mock_port}"), "--chunks", &chunks.to_string(), "--chunk-delay-ms", "0"]
            .map(String::from);
        let mut mock = Proc::spawn(&bin, &args, &[("SWITCHBOARD_LOG", "warn".into())], &dir, "mock.log", mock_base.clone())?;
        // Any HTTP answer (a 404 or 405 on this path) means it is serving.
        let mock_ready = mock.wait_ready(client, &format!("{mock_base}/v1/chat/completions"), true, Duration::from_secs(30)).await;
        stack.mock = Some(mock);
        mock_ready?;

        let config = dir.join("chat.toml");
        std::fs::write(&config, CHAT_TOML)?;
        let hub_port = free_port()?;
        let hub_base = format!("http://127.0.0.1:{hub_port}");
        let env = [
            ("SWITCHBOARD_LISTEN", format!("127.0.0.1:{hub_port}")),
            ("SWITCHBOARD_DATABASE_URL", format!("sqlite://{}", dir.join("lt.db").display())),
            ("SWITCHBOARD_LOG", "warn".into()),
            ("SWITCHBOARD_SHUTDOWN_TIMEOUT_MS", "5000".into()),
            ("SWITCHBOARD_CONFIG", config.display().to_string()),
            ("SWITCHBOARD_OPENAI_BASE_URL", format!("{mock_base}/v1")),
            ("SWITCHBOARD_CHAT_RATE_IP_PER_MINUTE", "1000000".into()),
            ("SWITCHBOARD_CHAT_RATE_SESSION_PER_MINUTE", "1000000".into()),
            ("SWITCHBOARD_CHAT_RATE_SITE_PER_MINUTE", "1000000".into()),
        ];
        let mut hub = Proc::spawn(&bin, &["serve".to_string()], &env, &dir, "hub.log", hub_base.clone())?;
        let hub_ready = hub.wait_ready(client, &format!("{hub_base}/readyz"), false, Duration::from_secs(30)).await;
        stack.hub = Some(hub);
        hub_ready?;
        Ok(stack)
    }

    pub fn hub_pid(&self) -> Option<u32> {
        self.hub.as_ref().map(|p| p.pid)
    }

    pub fn mock_pid(&self) -> Option<u32> {
        self.mock.as_ref().map(|p| p.pid)
    }

    /// Stops the hub, then the mock; returns how each exited.
    pub async fn stop(&mut self) -> (Option<String>, Option<String>) {
        let hub = match self.hub.as_mut() {
            Some(h) => Some(h.stop().await),
            None => None,
        };
        let mock = match self.mock.as_mut() {
            Some(m) => Some(m.stop().await),
            None => None,
        };
        (hub, mock)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Processes first (their Drop kills them), then their directory.
        self.hub = None;
        self.mock = None;
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use switchboard::config::{ConfigArgs, Settings};

    #[test]
    fn the_hubs_chat_rate_limits_are_far_above_what_a_run_sends() {
        let path = std::env::temp_dir().join(format!("loadtest-chat-{}.toml", std::process::id()));
        std::fs::write(&path, super::CHAT_TOML).unwrap();
        let s = Settings::load(&ConfigArgs { config: Some(path.clone()), ..ConfigArgs::default() }).unwrap();
        std::fs::remove_file(&path).unwrap();
        // A zero-delay round opens up to 2,000 sessions at once: every bucket's burst covers it.
        for (name, rate) in [("ip", s.chat.ip_rate), ("session", s.chat.session_rate), ("site", s.chat.site_rate)] {
            assert!(rate.burst >= 100_000 && rate.per_minute >= 1_000_000, "{name}: {rate:?}");
        }
    }
}
