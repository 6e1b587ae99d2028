//! Where an import says what it does: the terminal (progress bar on stderr when it is one,
//! lines on stdout, problems on stderr), or, for an import run inside `quiver server` on
//! behalf of `quiver import --url`, lines handed to the server, which streams them back.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often an import inside a server reports its progress.
const REMOTE_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The import's voice.
pub(crate) struct Report<'a> {
    /// Lines go here instead of the terminal (an import inside a server); it answers false
    /// once nobody listens.
    sink: Option<RefCell<&'a mut dyn FnMut(String) -> bool>>,
    last_progress: RefCell<Instant>,
    /// The sink said nobody listens any more.
    gone: std::cell::Cell<bool>,
}

impl std::fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let to = if self.sink.is_some() {
            "lines"
        } else {
            "terminal"
        };
        write!(f, "Report({to})")
    }
}

impl<'a> Report<'a> {
    /// Reports on the terminal.
    pub(crate) fn terminal() -> Report<'static> {
        Report {
            sink: None,
            last_progress: RefCell::new(Instant::now()),
            gone: std::cell::Cell::new(false),
        }
    }

    /// Reports by calling `sink` with each line; `sink` answers false once nobody listens.
    pub(crate) fn lines(sink: &'a mut dyn FnMut(String) -> bool) -> Report<'a> {
        Report {
            sink: Some(RefCell::new(sink)),
            last_progress: RefCell::new(Instant::now()),
            gone: std::cell::Cell::new(false),
        }
    }

    /// Says `line` (stdout on a terminal).
    pub(crate) fn say(&self, line: impl Into<String>) {
        match &self.sink {
            Some(sink) => self.send(sink, line.into()),
            None => println!("{}", line.into()),
        }
    }

    /// Says a problem (stderr on a terminal).
    pub(crate) fn warn(&self, line: impl Into<String>) {
        match &self.sink {
            Some(sink) => self.send(sink, line.into()),
            None => eprintln!("{}", line.into()),
        }
    }

    fn send(&self, sink: &RefCell<&'a mut dyn FnMut(String) -> bool>, line: String) {
        if !(sink.borrow_mut())(line) {
            self.gone.set(true);
        }
    }

    /// Whether whoever the lines were for went away (the import should stop, resumably).
    pub(crate) fn abandoned(&self) -> bool {
        self.gone.get()
    }

    /// A progress bar of phase `phase` counting `unit`s up to `total` (a spinner with the
    /// count and rate when the total is unknown; hidden when the lines go elsewhere: see
    /// [`Report::progress`]).
    pub(crate) fn bar(&self, phase: &'static str, unit: &str, total: Option<u64>) -> ProgressBar {
        if self.sink.is_some() {
            return ProgressBar::hidden();
        }
        let bar = match total {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(&format!(
                    "{{prefix}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit}, {{per_sec}} {{msg}}"
                ))
                .expect("a valid template")
                .progress_chars("=> "),
            ),
            None => ProgressBar::no_length().with_style(
                ProgressStyle::with_template(&format!(
                    "{{prefix}} {{spinner}} {{human_pos}} {unit}, {{per_sec}} {{msg}}"
                ))
                .expect("a valid template"),
            ),
        };
        bar.set_prefix(phase);
        bar
    }

    /// Says a problem while `bar` is drawn (above it on a terminal).
    pub(crate) fn warn_over(&self, bar: &ProgressBar, line: String) {
        match &self.sink {
            Some(_) => self.warn(line),
            None => bar.println(line),
        }
    }

    /// Says where the import is, every few seconds, when the lines go elsewhere (a terminal
    /// has the bar).
    pub(crate) fn progress(&self, what: impl FnOnce() -> String) {
        if self.sink.is_none() {
            return;
        }
        let mut last = self.last_progress.borrow_mut();
        if last.elapsed() >= REMOTE_PROGRESS_EVERY {
            *last = Instant::now();
            self.say(what());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_go_to_the_sink_and_progress_is_throttled() {
        let mut got = Vec::new();
        let mut sink = |l: String| {
            got.push(l);
            got.len() < 3
        };
        {
            let r = Report::lines(&mut sink);
            r.say("a");
            r.warn("b");
            assert!(!r.abandoned());
            *r.last_progress.borrow_mut() = Instant::now() - REMOTE_PROGRESS_EVERY;
            r.progress(|| "p1".into());
            r.progress(|| "p2".into());
            assert!(r.bar("runs", "points", Some(10)).is_hidden());
            assert!(r.abandoned(), "the sink said nobody listens");
        }
        assert_eq!(got, ["a", "b", "p1"]);
    }
}
