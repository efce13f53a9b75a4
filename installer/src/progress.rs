//! The binary's [`Progress`]s: bars and lines on a terminal, plain lines on stderr otherwise,
//! and nothing at all for `--output json` (stdout holds only the JSON document).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coder_progress::{Item, Job, Progress, WarningsOnly};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::OutputFormat;

/// The progress for a run with output `format`.
pub fn for_format(format: OutputFormat) -> &'static dyn Progress {
    match format {
        OutputFormat::Text => &Terminal,
        OutputFormat::Json => &WarningsOnly,
    }
}

/// Reports on stderr: step and message lines, and progress bars when stderr is a terminal.
#[derive(Debug, Clone, Copy, Default)]
pub struct Terminal;

impl Progress for Terminal {
    fn step(&self, text: &str) {
        eprintln!("==> {text}");
    }

    fn line(&self, text: &str) {
        eprintln!("{text}");
    }

    fn warning(&self, text: &str) {
        eprintln!("{text}");
    }

    fn job(&self, label: &str, total_bytes: u64) -> Box<dyn Job> {
        Box::new(Bars::new(label, total_bytes))
    }
}

/// A byte-counted job: bars on a terminal, its lines alone otherwise.
struct Bars {
    bars: Option<MultiProgress>,
    total: ProgressBar,
}

impl Bars {
    fn new(label: &str, total_bytes: u64) -> Self {
        let total = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::hidden());
        if !std::io::stderr().is_terminal() {
            return Self { bars: None, total };
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
        }
    }
}

impl Job for Bars {
    fn item(&self, name: &str, bytes: u64) -> Box<dyn Item> {
        let bar = self.bars.as_ref().map(|bars| {
            let bar = bars.add(ProgressBar::new(bytes));
            bar.set_style(
                ProgressStyle::with_template("  {msg:24} [{bar:20}] {bytes}/{total_bytes}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_message(name.chars().take(24).collect::<String>());
            bar
        });
        Box::new(ItemBar {
            bar,
            total: self.total.clone(),
            counted: AtomicU64::new(0),
        })
    }

    fn line(&self, text: &str) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    fn finish(&self) {
        self.total.finish_and_clear();
        if let Some(bars) = &self.bars {
            let _ = bars.clear();
        }
    }
}

/// One item's bar; feeds the total as well.
struct ItemBar {
    bar: Option<ProgressBar>,
    total: ProgressBar,
    counted: AtomicU64,
}

impl Item for ItemBar {
    fn set(&self, done: u64) {
        let before = self.counted.swap(done, Ordering::Relaxed);
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

impl Drop for ItemBar {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
