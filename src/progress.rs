//! Progress of a run on the terminal: a live status line (build, cell, elapsed) on a TTY, plain log lines otherwise.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::engine::StepReport;
use crate::runner::Event;

/// Prints run events to stderr.
pub struct Progress {
    tty: bool,
    /// Print each finished step; on a terminal without it the log is one line per build.
    verbose: bool,
    started: Instant,
    status: Arc<Mutex<String>>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts the status-line ticker when stderr is a terminal.
    pub fn start(verbose: bool) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let started = Instant::now();
        let status = Arc::new(Mutex::new(String::new()));
        let ticker = tty.then(|| {
            let status = Arc::clone(&status);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let line = status.lock().map(|s| s.clone()).unwrap_or_default();
                    if !line.is_empty() {
                        eprint!("\r\x1b[2K{line} · {} elapsed", elapsed(started.elapsed()));
                        let _ = std::io::stderr().flush();
                    }
                }
            })
        });
        Progress { tty, verbose, started, status, ticker }
    }

    fn line(&self, text: &str) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
        eprintln!("{text}");
    }

    pub fn event(&mut self, event: Event<'_>) {
        match event {
            Event::CellStarted { cell, of, .. } => {
                self.line(&format!("cell {}/{of}: {}", cell.index + 1, cell.label()));
            }
            Event::BuildStarted { cell, step, build, of, .. } => {
                let bar = bar(build - 1, of);
                let text = format!("{bar} build {build}/{of} · {} · {step}", cell.label());
                if let Ok(mut s) = self.status.lock() {
                    s.clone_from(&text);
                }
                if !self.tty {
                    self.line(&format!("  build {build}/{of}: {step} ({} elapsed)", elapsed(self.started.elapsed())));
                }
            }
            Event::StepFinished { step } if self.verbose || !self.tty || step.error.is_some() => self.line(&step_line(step)),
            Event::StepFinished { .. } => {}
            Event::BuildFinished { record } => {
                let mut text = format!(
                    "  => {}: {} in {:.1} s, {} proxy requests",
                    record.step,
                    record.outcome,
                    record.wall_ms / 1000.0,
                    record.proxy.requests
                );
                if let Some(e) = &record.error {
                    text.push_str(&format!("\n     {e}"));
                }
                if let Some(e) = record.inspection.as_ref().and_then(|i| i.error.as_ref()) {
                    text.push_str(&format!("\n     inspection: {e}"));
                }
                if let Some(rt) = record.inspection.as_ref().and_then(|i| i.runtime.as_ref()).filter(|rt| !rt.passed) {
                    text.push_str(&format!("\n     probe {:?} exited {} (expected {})", rt.command, rt.exit_code, rt.expected_exit));
                }
                self.line(&text);
            }
            Event::Warning { message } => self.line(&format!("  warning: {message}")),
        }
    }

    pub fn finish(mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        if self.tty {
            eprint!("\r\x1b[2K");
        }
    }
}

/// One finished step: outcome, seconds, name.
pub fn step_line(s: &StepReport) -> String {
    let secs = match (s.started_unix_ms, s.completed_unix_ms) {
        (Some(a), Some(b)) => format!("{:7.2} s", b.saturating_sub(a) as f64 / 1000.0),
        _ => "         ".to_string(),
    };
    let outcome = if s.error.is_some() {
        "FAILED  "
    } else if s.cached {
        "cached  "
    } else {
        "executed"
    };
    format!("    {outcome} {secs}  {}", s.name)
}

fn bar(done: usize, of: usize) -> String {
    let width = 20;
    let filled = (done * width).checked_div(of).unwrap_or(0).min(width);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

fn elapsed(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}", s / 60, s % 60)
}
