//! Progress for long work: bars on a terminal, plain log lines otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Reports the progress of a byte-counted job (downloads, writes, hashing).
pub struct Progress {
    bars: Option<MultiProgress>,
    total: ProgressBar,
    quiet: bool,
}

impl Progress {
    /// A progress display for a job of `total_bytes`; `quiet` prints nothing (for `--output json`).
    pub fn new(label: &str, total_bytes: u64, quiet: bool) -> Self {
        let interactive = !quiet && std::io::stderr().is_terminal();
        let total = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::hidden());
        if !interactive {
            return Self {
                bars: None,
                total,
                quiet,
            };
        }
        let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
        let total = bars.add(ProgressBar::new(total_bytes));
        total.set_style(
            ProgressStyle::with_template(
                "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        total.set_message(label.to_owned());
        total.enable_steady_tick(Duration::from_millis(250));
        Self {
            bars: Some(bars),
            total,
            quiet,
        }
    }

    /// A bar for one item (a blob), shown while it runs on a terminal.
    pub fn item(&self, name: &str, bytes: u64) -> ItemProgress {
        let bar = match &self.bars {
            Some(bars) => {
                let bar = bars.add(ProgressBar::new(bytes));
                bar.set_style(
                    ProgressStyle::with_template("  {msg:24} [{bar:20}] {bytes}/{total_bytes}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                bar.set_message(name.chars().take(24).collect::<String>());
                Some(bar)
            }
            None => None,
        };
        ItemProgress {
            bar,
            total: self.total.clone(),
            counted: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Prints a line above the bars (or to stderr), unless quiet.
    pub fn log(&self, line: &str) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    /// Removes the bars.
    pub fn finish(&self) {
        self.total.finish_and_clear();
        if let Some(bars) = &self.bars {
            let _ = bars.clear();
        }
    }
}

/// One item's progress; feeds the total as well.
pub struct ItemProgress {
    bar: Option<ProgressBar>,
    total: ProgressBar,
    counted: std::sync::atomic::AtomicU64,
}

impl ItemProgress {
    /// Sets how many of the item's bytes are done.
    pub fn set(&self, done: u64) {
        let before = self.counted.swap(done, std::sync::atomic::Ordering::Relaxed);
        if done >= before {
            self.total.inc(done - before);
        } else {
            self.total
                .set_position(self.total.position().saturating_sub(before - done));
        }
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }
}

impl Drop for ItemProgress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Bytes as a human reads them (binary units).
pub fn human_bytes(bytes: u64) -> String {
    indicatif::BinaryBytes(bytes).to_string()
}
