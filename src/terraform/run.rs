//! Running one Terraform command: its own process group, output streamed line by line,
//! cancellation by SIGINT then SIGTERM then SIGKILL, an overall timeout and a no-output
//! watchdog. Nothing it started outlives it.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How long a run may take, and how it is stopped.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    /// A run that prints nothing for this long is stopped as hung.
    pub idle_timeout: Duration,
    /// After SIGINT, how long Terraform gets to stop cleanly (release locks, save state).
    pub interrupt_grace: Duration,
    /// After SIGTERM, how long before SIGKILL.
    pub terminate_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30 * 60),
            idle_timeout: Duration::from_secs(10 * 60),
            interrupt_grace: Duration::from_secs(15),
            terminate_grace: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start terraform: {0}")]
    Spawn(std::io::Error),
    #[error("cancelled")]
    Cancelled,
    #[error("timed out after {} s", .0.as_secs())]
    TimedOut(Duration),
    #[error("no output for {} s: stopped as hung", .0.as_secs())]
    Hung(Duration),
    #[error("terraform I/O failed: {0}")]
    Io(std::io::Error),
}

/// Kills the whole process group when dropped, so a run abandoned halfway (its future dropped)
/// leaves no process behind.
struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

/// Why the run is being stopped.
enum Stop {
    Cancelled,
    TimedOut,
    Hung,
}

/// Runs `program args` in `dir` with exactly `env`, sending every output line to `lines`.
/// Returns the exit code.
pub async fn run(
    program: &str,
    args: &[String],
    dir: &Path,
    env: &[(String, String)],
    limits: Limits,
    cancel: &CancellationToken,
    lines: &mpsc::UnboundedSender<(Stream, String)>,
) -> Result<i32, RunError> {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: only an async-signal-safe call (prctl) runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            // If the worker dies (even by SIGKILL), Terraform dies with it rather than racing a
            // retry on another worker.
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
    let mut child = command.spawn().map_err(RunError::Spawn)?;
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    let guard = GroupGuard(pgid);

    let started = Instant::now();
    let last_output = Arc::new(AtomicU64::new(0));
    let readers = [
        child.stdout.take().map(|s| {
            read_lines(
                s,
                Stream::Stdout,
                lines.clone(),
                last_output.clone(),
                started,
            )
        }),
        child.stderr.take().map(|s| {
            read_lines(
                s,
                Stream::Stderr,
                lines.clone(),
                last_output.clone(),
                started,
            )
        }),
    ];

    let mut watchdog = tokio::time::interval(Duration::from_millis(500));
    let stop = loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.map_err(RunError::Io)?;
                finish(guard, readers).await;
                return Ok(status.code().unwrap_or(-1));
            }
            _ = cancel.cancelled() => break Stop::Cancelled,
            _ = tokio::time::sleep_until((started + limits.timeout).into()) => break Stop::TimedOut,
            _ = watchdog.tick() => {
                let silent_since = Duration::from_millis(last_output.load(Ordering::Relaxed));
                if started.elapsed().saturating_sub(silent_since) > limits.idle_timeout {
                    break Stop::Hung;
                }
            }
        }
    };

    // Stop it: SIGINT lets Terraform release its state lock; then SIGTERM; then SIGKILL.
    for (signal, grace) in [
        (Signal::SIGINT, limits.interrupt_grace),
        (Signal::SIGTERM, limits.terminate_grace),
        (Signal::SIGKILL, Duration::from_secs(5)),
    ] {
        if let Some(pgid) = pgid {
            let _ = killpg(pgid, signal);
        }
        if tokio::time::timeout(grace, child.wait()).await.is_ok() {
            break;
        }
    }
    finish(guard, readers).await;
    Err(match stop {
        Stop::Cancelled => RunError::Cancelled,
        Stop::TimedOut => RunError::TimedOut(limits.timeout),
        Stop::Hung => RunError::Hung(limits.idle_timeout),
    })
}

/// After Terraform exits: kill what is left of its group (provisioner children), then let the
/// readers drain the pipes.
async fn finish(guard: GroupGuard, readers: [Option<tokio::task::JoinHandle<()>>; 2]) {
    drop(guard);
    for reader in readers.into_iter().flatten() {
        let _ = reader.await;
    }
}

fn read_lines(
    stream: impl AsyncRead + Unpin + Send + 'static,
    which: Stream,
    lines: mpsc::UnboundedSender<(Stream, String)>,
    last_output: Arc<AtomicU64>,
    started: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            last_output.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            if lines.send((which, line)).is_err() {
                break;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(timeout_ms: u64, idle_ms: u64) -> Limits {
        Limits {
            timeout: Duration::from_millis(timeout_ms),
            idle_timeout: Duration::from_millis(idle_ms),
            interrupt_grace: Duration::from_millis(300),
            terminate_grace: Duration::from_millis(300),
        }
    }

    async fn sh(
        script: &str,
        limits: Limits,
        cancel: &CancellationToken,
    ) -> (Result<i32, RunError>, Vec<String>, Duration) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let env = vec![(
            "PATH".to_string(),
            std::env::var("PATH").unwrap_or_default(),
        )];
        let args = vec!["-c".to_string(), script.to_string()];
        let started = Instant::now();
        let result = run(
            "/bin/sh",
            &args,
            Path::new("/tmp"),
            &env,
            limits,
            cancel,
            &tx,
        )
        .await;
        drop(tx);
        let mut lines = vec![];
        while let Some((_, line)) = rx.recv().await {
            lines.push(line);
        }
        (result, lines, started.elapsed())
    }

    /// Whether the process still lives a second after it was killed (a zombie is dead).
    fn alive(pid: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let dead = stat.is_empty() || stat.contains(") Z ") || stat.contains(") X ");
            if dead {
                return false;
            }
            if Instant::now() > deadline {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[tokio::test]
    async fn output_is_streamed_and_the_exit_code_returned() {
        let (result, lines, _) = sh(
            "echo one; echo two >&2; exit 3",
            Limits::default(),
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(result.unwrap(), 3);
        assert!(lines.contains(&"one".to_string()) && lines.contains(&"two".to_string()));
    }

    #[tokio::test]
    async fn a_silent_run_is_stopped_as_hung_with_its_children() {
        let (result, lines, elapsed) = sh(
            "sleep 30 & echo $!; wait",
            limits(60_000, 500),
            &CancellationToken::new(),
        )
        .await;
        assert!(matches!(result, Err(RunError::Hung(_))), "{result:?}");
        assert!(elapsed < Duration::from_secs(5));
        assert!(
            !alive(&lines[0]),
            "the child sleep was killed with the group"
        );
    }

    #[tokio::test]
    async fn a_run_past_its_timeout_is_stopped() {
        let (result, _, elapsed) = sh(
            "while true; do echo tick; sleep 0.1; done",
            limits(600, 60_000),
            &CancellationToken::new(),
        )
        .await;
        assert!(matches!(result, Err(RunError::TimedOut(_))), "{result:?}");
        assert!(elapsed < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn cancelling_escalates_past_an_ignored_sigint() {
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.cancel();
        });
        // Ignores SIGINT: only SIGTERM (after the interrupt grace) stops it.
        let (result, lines, elapsed) = sh(
            "trap '' INT; sleep 30 & echo $!; wait",
            limits(60_000, 60_000),
            &cancel,
        )
        .await;
        assert!(matches!(result, Err(RunError::Cancelled)), "{result:?}");
        assert!(
            elapsed >= Duration::from_millis(600),
            "waited for the SIGINT grace: {elapsed:?}"
        );
        assert!(elapsed < Duration::from_secs(5));
        assert!(!alive(&lines[0]));
    }
}
