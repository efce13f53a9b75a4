//! How the installer's libraries tell the person running them what is going on.
//!
//! Library code never prints: it calls a [`Progress`] for step lines, notes and byte-counted
//! jobs (downloads, uploads, hashing). The `coder-install` binary implements it for a terminal
//! (bars on a TTY, plain lines otherwise) and for a JSON run (warnings only, on stderr, so that
//! stdout holds only the JSON document); [`Silent`] is the implementation for callers that
//! report on their own.

/// Receives a run's progress and messages.
pub trait Progress: Send + Sync {
    /// A step of a pipeline (`verify`, `push`, `deploy`): shown as a heading line.
    fn step(&self, text: &str);
    /// A line of information or a note.
    fn line(&self, text: &str);
    /// A warning: something went wrong that the run survives (shown in a JSON run too, on
    /// stderr).
    fn warning(&self, text: &str);
    /// Starts a byte-counted job of `total_bytes` named `label` (`bundling`, `pushing`).
    fn job(&self, label: &str, total_bytes: u64) -> Box<dyn Job>;
}

/// A byte-counted job in progress.
pub trait Job: Send + Sync {
    /// Starts one item (a blob) of `bytes`; its progress feeds the job's total.
    fn item(&self, name: &str, bytes: u64) -> Box<dyn Item>;
    /// A line of information shown with the job (above its bars on a terminal).
    fn line(&self, text: &str);
    /// Ends the job's display.
    fn finish(&self);
}

/// One item of a [`Job`]; its display ends when it is dropped.
pub trait Item: Send + Sync {
    /// Sets how many of the item's bytes are done.
    fn set(&self, done: u64);
}

/// Progress that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn step(&self, _text: &str) {}

    fn line(&self, _text: &str) {}

    fn warning(&self, _text: &str) {}

    fn job(&self, _label: &str, _total_bytes: u64) -> Box<dyn Job> {
        Box::new(Silent)
    }
}

impl Job for Silent {
    fn item(&self, _name: &str, _bytes: u64) -> Box<dyn Item> {
        Box::new(Silent)
    }

    fn line(&self, _text: &str) {}

    fn finish(&self) {}
}

impl Item for Silent {
    fn set(&self, _done: u64) {}
}

/// Shows warnings on stderr and nothing else: a JSON run's progress, and the default of
/// libraries whose caller names no progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct WarningsOnly;

impl Progress for WarningsOnly {
    fn step(&self, _text: &str) {}

    fn line(&self, _text: &str) {}

    fn warning(&self, text: &str) {
        eprintln!("{text}");
    }

    fn job(&self, label: &str, total_bytes: u64) -> Box<dyn Job> {
        Silent.job(label, total_bytes)
    }
}

/// Progress kept in a long-lived value (a client's options): [`WarningsOnly`] unless set.
#[derive(Clone, Copy)]
pub struct SharedProgress(pub &'static dyn Progress);

impl Default for SharedProgress {
    fn default() -> Self {
        Self(&WarningsOnly)
    }
}

impl std::fmt::Debug for SharedProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedProgress")
    }
}

impl std::ops::Deref for SharedProgress {
    type Target = dyn Progress;

    fn deref(&self) -> &Self::Target {
        self.0
    }
}

/// Bytes as a human reads them, in binary units: `15 B`, `1.46 KiB`, `1.43 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const PREFIXES: [&str; 8] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"];
    // A display value: the precision lost in the conversion is far below what is printed.
    #[allow(clippy::cast_precision_loss)]
    let mut amount = bytes as f64;
    let mut prefix = 0;
    while amount >= 1024.0 && prefix < PREFIXES.len() {
        amount /= 1024.0;
        prefix += 1;
    }
    match prefix {
        0 => format!("{amount:.0} B"),
        _ => format!("{amount:.2} {}B", PREFIXES[prefix - 1]),
    }
}

/// An error and every source under it, `: `-separated, the way the binary prints errors
/// (`error: outer: inner: innermost`). A source whose text the message already holds is left
/// out: many errors (ours and other crates') say their source in their own message as well as
/// returning it, which would print it twice.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let said = inner.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::{error_chain, human_bytes};

    /// An error whose message is `what`, followed by its source's when `says_source`.
    #[derive(Debug)]
    struct Layer {
        what: &'static str,
        says_source: bool,
        source: Box<dyn std::error::Error + 'static>,
    }

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self.says_source {
                true => write!(f, "{}: {}", self.what, self.source),
                false => f.write_str(self.what),
            }
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(self.source.as_ref())
        }
    }

    fn layer(what: &'static str, says_source: bool, source: impl std::error::Error + 'static) -> Layer {
        Layer {
            what,
            says_source,
            source: Box::new(source),
        }
    }

    #[test]
    fn an_error_chain_reads_outer_to_inner() {
        let error = layer("reading the bundle", false, std::io::Error::other("disk on fire"));
        assert_eq!(error_chain(&error), "reading the bundle: disk on fire");
    }

    #[test]
    fn a_source_the_message_already_says_is_not_repeated() {
        let saying = layer("reading the bundle", true, std::io::Error::other("disk on fire"));
        let error = layer("pushing", true, saying);
        assert_eq!(error_chain(&error), "pushing: reading the bundle: disk on fire");
    }

    #[test]
    fn bytes_read_the_way_the_progress_bars_print_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(15), "15 B");
        assert_eq!(human_bytes(1_023), "1023 B");
        assert_eq!(human_bytes(1_024), "1.00 KiB");
        assert_eq!(human_bytes(1_500), "1.46 KiB");
        assert_eq!(human_bytes(1_500_000), "1.43 MiB");
        assert_eq!(human_bytes(1_500_000_000), "1.40 GiB");
        assert_eq!(human_bytes(1_500_000_000_000), "1.36 TiB");
        assert_eq!(human_bytes(1_500_000_000_000_000), "1.33 PiB");
    }
}
