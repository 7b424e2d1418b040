//! Watching a run: the [`Observer`] callbacks, and [`ProgressBars`] drawing them with
//! indicatif (one bar per partition plus a total with events per second).

use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{lock, InvocationRecord, Outcome, PartitionPlan, RestartRecord, SealRecord};

/// Callbacks during a run (all optional). Called from the simulator's tasks: keep them quick.
pub trait Observer: Send + Sync {
    /// The run starts with these partitions.
    fn plan(&self, _partitions: &[PartitionPlan], _batch_size: usize) {}
    /// A handler process answered the readiness probe.
    fn handler_ready(&self, _generation: u32, _port: u16, _after: Duration) {}
    /// An ingest invocation returned (or failed).
    fn invocation(&self, _record: &InvocationRecord) {}
    /// Partition `partition` has had its first `delivered` events delivered and answered.
    fn progress(&self, _partition: usize, _delivered: u64, _checkpoint: Option<i64>) {}
    /// The handler died and was restarted.
    fn restart(&self, _record: &RestartRecord) {}
    /// A timer (seal) invocation returned.
    fn seal(&self, _record: &SealRecord) {}
    /// Every partition is done.
    fn finished(&self) {}
}

/// Failure lines printed above the bars before they are only counted.
const MAX_PRINTED_FAILURES: u64 = 12;

/// Progress bars on stderr (drawn only on a terminal).
pub struct ProgressBars {
    multi: MultiProgress,
    /// Print nothing at all (otherwise notable lines go to stderr when no bars are drawn).
    quiet: bool,
    state: Mutex<BarState>,
}

#[derive(Default)]
struct BarState {
    partitions: Vec<ProgressBar>,
    delivered: Vec<u64>,
    retries: Vec<u64>,
    total: Option<ProgressBar>,
    failures: u64,
    seals: u64,
    restarts: u64,
}

impl Default for ProgressBars {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressBars {
    /// Bars on stderr when it is a terminal; otherwise failures and restarts are
    /// printed there as plain lines.
    pub fn new() -> Self {
        Self::with_target(ProgressDrawTarget::stderr(), false)
    }

    /// No bars; failures and restarts are still printed to stderr as plain lines.
    pub fn lines_only() -> Self {
        Self::with_target(ProgressDrawTarget::hidden(), false)
    }

    /// Draws and prints nothing (tests).
    pub fn hidden() -> Self {
        Self::with_target(ProgressDrawTarget::hidden(), true)
    }

    fn with_target(target: ProgressDrawTarget, quiet: bool) -> Self {
        Self {
            multi: MultiProgress::with_draw_target(target),
            quiet,
            state: Mutex::new(BarState::default()),
        }
    }

    fn println(&self, line: &str) {
        if self.quiet {
            return;
        }
        if self.multi.is_hidden() {
            eprintln!("{line}");
        } else {
            let _ = self.multi.println(line);
        }
    }

    fn update_total(&self, st: &BarState) {
        if let Some(total) = &st.total {
            let delivered: u64 = st.delivered.iter().sum();
            total.set_position(delivered);
            let secs = total.elapsed().as_secs_f64();
            let rate = if secs > 0.0 { delivered as f64 / secs } else { 0.0 };
            let mut msg = format!("{rate:.0} events/s · retries {}", st.retries.iter().sum::<u64>());
            if st.restarts > 0 {
                msg.push_str(&format!(" · restarts {}", st.restarts));
            }
            if st.seals > 0 {
                msg.push_str(&format!(" · seal runs {}", st.seals));
            }
            total.set_message(msg);
        }
    }
}

fn style(template: &str, chars: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars(chars)
}

impl Observer for ProgressBars {
    fn plan(&self, partitions: &[PartitionPlan], _batch_size: usize) {
        let mut st = lock(&self.state);
        // One bar per partition while that stays readable.
        if partitions.len() <= 16 {
            for p in partitions {
                let bar = self.multi.add(ProgressBar::new(p.events));
                bar.set_style(style(
                    "  partition {prefix:>3} [{bar:32.cyan/blue}] {pos:>7}/{len:<7} {msg}",
                    "=> ",
                ));
                bar.set_prefix(p.partition_id.clone());
                st.partitions.push(bar);
            }
        }
        let total = self
            .multi
            .add(ProgressBar::new(partitions.iter().map(|p| p.events).sum()));
        total.set_style(style(
            "  {spinner:.green} total     [{bar:32.green/white}] {pos:>7}/{len:<7} {elapsed} · {msg}",
            "=> ",
        ));
        total.enable_steady_tick(Duration::from_millis(120));
        st.total = Some(total);
        st.delivered = vec![0; partitions.len()];
        st.retries = vec![0; partitions.len()];
        self.update_total(&st);
    }

    fn handler_ready(&self, generation: u32, port: u16, after: Duration) {
        if generation > 1 {
            self.println(&format!(
                "  ↻ handler #{generation} ready on 127.0.0.1:{port} after {} ms; partitions resume from their checkpoints",
                after.as_millis()
            ));
        }
    }

    fn invocation(&self, record: &InvocationRecord) {
        let mut st = lock(&self.state);
        if record.retry_count > 0 {
            if let Ok(p) = record.partition_id.parse::<usize>() {
                if let Some(r) = st.retries.get_mut(p) {
                    *r += 1;
                }
            }
        }
        if let Outcome::Failed { error, .. } = &record.outcome {
            st.failures += 1;
            if st.failures <= MAX_PRINTED_FAILURES {
                let first_line = error.lines().next().unwrap_or_default();
                let short: String = first_line.chars().take(140).collect();
                self.println(&format!(
                    "  ✗ partition {} seq {}..{} attempt {} failed: {short}",
                    record.partition_id,
                    record.first_sequence_number,
                    record.last_sequence_number,
                    record.retry_count + 1
                ));
            } else if st.failures == MAX_PRINTED_FAILURES + 1 {
                self.println("  ✗ … more failures are only counted");
            }
        }
        self.update_total(&st);
    }

    fn progress(&self, partition: usize, delivered: u64, checkpoint: Option<i64>) {
        let mut st = lock(&self.state);
        if let Some(d) = st.delivered.get_mut(partition) {
            *d = delivered;
        }
        if let Some(bar) = st.partitions.get(partition) {
            bar.set_position(delivered);
            let retries = st.retries.get(partition).copied().unwrap_or(0);
            let ck = checkpoint.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
            bar.set_message(format!("checkpoint {ck} · retries {retries}"));
        }
        self.update_total(&st);
    }

    fn restart(&self, record: &RestartRecord) {
        let mut st = lock(&self.state);
        st.restarts += 1;
        self.println(&format!(
            "  ✗ handler #{} {}; restarting it (as the host does)",
            record.generation, record.reason
        ));
        self.update_total(&st);
    }

    fn seal(&self, record: &SealRecord) {
        let mut st = lock(&self.state);
        st.seals += 1;
        if let Some(e) = &record.error {
            self.println(&format!("  ✗ seal run for {} failed: {e}", record.scheduled));
        }
        self.update_total(&st);
    }

    fn finished(&self) {
        let st = lock(&self.state);
        for bar in &st.partitions {
            bar.finish();
        }
        if let Some(total) = &st.total {
            total.finish();
        }
    }
}
