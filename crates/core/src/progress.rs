//! Progress of long CLI operations (`slate replay`, `slate verify`, `slate bench enrich`), on
//! **stderr** only, so stdout stays for results and `--json`.
//!
//! On a terminal one line is redrawn in place (`\r`) at most ten times a second; anywhere else
//! (CI logs, pipes, files) a plain line is printed at most every two seconds, plus always a final
//! line, so logs stay readable. A line shows the label, done/total with percent (when the total
//! is known), the rate per second, the elapsed time and, with a total, an ETA.
//!
//! Counting is cheap enough to call per item: an atomic add and a clock read; the output lock is
//! taken only by the one caller that wins the (atomic) right to draw.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Redraw interval on a terminal.
pub const TTY_INTERVAL: Duration = Duration::from_millis(100);
/// Interval between plain lines when stderr is not a terminal.
pub const PLAIN_INTERVAL: Duration = Duration::from_secs(2);

const UNKNOWN: u64 = u64::MAX;

/// Time since the reporter was created; injectable so tests never sleep.
pub trait Clock: Send + Sync {
    fn elapsed(&self) -> Duration;
}

struct SystemClock(Instant);

impl Clock for SystemClock {
    fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

/// Where an operation stands, as a line shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Still going: elapsed time and, with a total, an ETA.
    Running,
    /// [`Progress::finish`] was called: `done in …`.
    Done,
    /// Dropped without `finish` (the operation failed or was abandoned): `stopped after …`.
    Stopped,
}

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A terminal: one line redrawn with `\r`, at most every [`TTY_INTERVAL`].
    Redraw,
    /// A pipe or file: a new line at most every [`PLAIN_INTERVAL`].
    Lines,
}

impl Style {
    fn interval(self) -> Duration {
        match self {
            Self::Redraw => TTY_INTERVAL,
            Self::Lines => PLAIN_INTERVAL,
        }
    }
}

/// A progress reporter. Clones share one counter; the final line is written by [`finish`]
/// (or, as `stopped after`, when the last clone is dropped unfinished, e.g. on an error).
/// [`Progress::hidden`] does nothing at all.
///
/// [`finish`]: Progress::finish
#[derive(Clone)]
pub struct Progress {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    done: AtomicU64,
    total: AtomicU64,
    /// Nanoseconds (on `clock`) before which nobody draws.
    next_draw: AtomicU64,
    finished: AtomicBool,
    style: Style,
    clock: Box<dyn Clock>,
    out: Mutex<Output>,
}

struct Output {
    label: String,
    writer: Box<dyn Write + Send>,
    /// Length of the line on screen (Redraw), to blank out what a shorter line leaves.
    shown: usize,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress").field("visible", &self.is_visible()).field("done", &self.done()).finish()
    }
}

impl Progress {
    /// A reporter on stderr (redrawn on a terminal, plain lines otherwise), or a hidden one
    /// when `quiet`.
    pub fn stderr(label: impl Into<String>, total: Option<u64>, quiet: bool) -> Self {
        if quiet {
            return Self::hidden();
        }
        let style = if std::io::stderr().is_terminal() { Style::Redraw } else { Style::Lines };
        Self::with_output(label, total, style, Box::new(SystemClock(Instant::now())), Box::new(std::io::stderr()))
    }

    /// A reporter that never writes anything.
    pub fn hidden() -> Self {
        Self { inner: None }
    }

    /// A reporter writing to `writer` with an explicit style and clock (tests, other sinks).
    pub fn with_output(
        label: impl Into<String>,
        total: Option<u64>,
        style: Style,
        clock: Box<dyn Clock>,
        writer: Box<dyn Write + Send>,
    ) -> Self {
        // On a terminal the first line appears at once; in logs, an operation shorter than the
        // interval prints only its final line.
        let first = match style {
            Style::Redraw => 0,
            Style::Lines => nanos(clock.elapsed() + PLAIN_INTERVAL),
        };
        let inner = Inner {
            done: AtomicU64::new(0),
            total: AtomicU64::new(total.unwrap_or(UNKNOWN)),
            next_draw: AtomicU64::new(first),
            finished: AtomicBool::new(false),
            style,
            clock,
            out: Mutex::new(Output { label: label.into(), writer, shown: 0 }),
        };
        Self { inner: Some(Arc::new(inner)) }
    }

    pub fn is_visible(&self) -> bool {
        self.inner.is_some()
    }

    /// Items done so far (0 when hidden).
    pub fn done(&self) -> u64 {
        self.inner.as_ref().map_or(0, |i| i.done.load(Ordering::Relaxed))
    }

    /// Counts `n` more items done; draws when the interval has passed.
    pub fn inc(&self, n: u64) {
        if let Some(i) = &self.inner {
            i.done.fetch_add(n, Ordering::Relaxed);
            i.tick();
        }
    }

    /// Sets the total (e.g. once a listing is complete).
    pub fn set_total(&self, total: u64) {
        if let Some(i) = &self.inner {
            i.total.store(total, Ordering::Relaxed);
        }
    }

    /// Changes the label (e.g. the phase of a benchmark); shown with the next draw.
    pub fn set_label(&self, label: impl Into<String>) {
        if let Some(i) = &self.inner {
            i.out.lock().unwrap_or_else(|e| e.into_inner()).label = label.into();
            i.tick();
        }
    }

    /// Writes the final line, `… done in …` (once; later calls and increments draw nothing).
    /// Without it, dropping the last clone writes `… stopped after …`.
    pub fn finish(&self) {
        if let Some(i) = &self.inner {
            i.finish(Phase::Done);
        }
    }
}

impl Inner {
    fn tick(&self) {
        let now = self.clock.elapsed();
        let next = self.next_draw.load(Ordering::Relaxed);
        if nanos(now) < next {
            return;
        }
        let after = nanos(now + self.style.interval());
        if self.next_draw.compare_exchange(next, after, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            self.draw(now, Phase::Running);
        }
    }

    fn finish(&self, phase: Phase) {
        if !self.finished.swap(true, Ordering::AcqRel) {
            self.draw(self.clock.elapsed(), phase);
        }
    }

    fn draw(&self, elapsed: Duration, phase: Phase) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let last = phase != Phase::Running;
        if !last && self.finished.load(Ordering::Acquire) {
            return;
        }
        let total = Some(self.total.load(Ordering::Relaxed)).filter(|t| *t != UNKNOWN);
        let line = render(&out.label, self.done.load(Ordering::Relaxed), total, elapsed, phase);
        let text = match self.style {
            Style::Lines => format!("{line}\n"),
            Style::Redraw => {
                let width = line.chars().count();
                let pad = " ".repeat(out.shown.saturating_sub(width));
                out.shown = width;
                format!("\r{line}{pad}{}", if last { "\n" } else { "" })
            }
        };
        // Progress is best effort: a closed stderr must not fail the operation.
        let _ = out.writer.write_all(text.as_bytes()).and_then(|()| out.writer.flush());
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.finish(Phase::Stopped);
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1)
}

/// One progress line, e.g. `replay production: 1200/5000 (24%), 850/s, elapsed 1.4s, eta 4.5s`.
pub fn render(label: &str, done: u64, total: Option<u64>, elapsed: Duration, phase: Phase) -> String {
    let mut s = format!("{label}: {done}");
    if let Some(t) = total {
        s.push_str(&format!("/{t}"));
        if t > 0 {
            s.push_str(&format!(" ({}%)", (done.min(t) as u128 * 100 / t as u128)));
        }
    }
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    if secs > 0.0 {
        s.push_str(&format!(", {}/s", fmt_rate(rate)));
    }
    match phase {
        Phase::Done => return format!("{s}, done in {}", fmt_duration(elapsed)),
        Phase::Stopped => return format!("{s}, stopped after {}", fmt_duration(elapsed)),
        Phase::Running => {}
    }
    s.push_str(&format!(", elapsed {}", fmt_duration(elapsed)));
    if let Some(eta) = total.and_then(|t| eta(done, t, rate)) {
        s.push_str(&format!(", eta {}", fmt_duration(eta)));
    }
    s
}

/// Time left at `rate` items/s; `None` when nothing is known yet (no rate) or nothing is left.
pub fn eta(done: u64, total: u64, rate: f64) -> Option<Duration> {
    if done >= total || !rate.is_finite() || rate <= 0.0 {
        return None;
    }
    Duration::try_from_secs_f64((total - done) as f64 / rate).ok()
}

fn fmt_rate(rate: f64) -> String {
    match rate {
        r if r >= 100.0 => format!("{r:.0}"),
        r if r >= 10.0 => format!("{r:.1}"),
        r => format!("{r:.2}"),
    }
}

/// `4.2s`, `42s`, `3m05s`, `2h07m`.
pub fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..10 => format!("{:.1}s", d.as_secs_f64()),
        10..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct ManualClock(Arc<AtomicU64>);

    impl ManualClock {
        fn set(&self, millis: u64) {
            self.0.store(millis * 1_000_000, Ordering::Relaxed);
        }
    }

    impl Clock for ManualClock {
        fn elapsed(&self) -> Duration {
            Duration::from_nanos(self.0.load(Ordering::Relaxed))
        }
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn reporter(style: Style, total: Option<u64>) -> (Progress, ManualClock, Buf) {
        let (clock, buf) = (ManualClock::default(), Buf::default());
        (Progress::with_output("replay production", total, style, Box::new(clock.clone()), Box::new(buf.clone())), clock, buf)
    }

    #[test]
    fn lines_show_count_percent_rate_elapsed_and_eta() {
        let s = Duration::from_secs;
        assert_eq!(render("x", 250, Some(1000), s(5), Phase::Running), "x: 250/1000 (25%), 50.0/s, elapsed 5.0s, eta 15s");
        assert_eq!(render("x", 1000, Some(1000), s(20), Phase::Done), "x: 1000/1000 (100%), 50.0/s, done in 20s");
        assert_eq!(render("x", 7, None, Duration::from_millis(2500), Phase::Running), "x: 7, 2.80/s, elapsed 2.5s");
        assert_eq!(render("x", 0, Some(10), Duration::ZERO, Phase::Running), "x: 0/10 (0%), elapsed 0.0s");
        assert_eq!(render("x", 0, Some(0), s(1), Phase::Done), "x: 0/0, 0.00/s, done in 1.0s");
        assert_eq!(render("x", 12, Some(10), s(1), Phase::Stopped), "x: 12/10 (100%), 12.0/s, stopped after 1.0s");
        assert_eq!(render("x", 90_000, Some(1_000_000), s(75), Phase::Running), "x: 90000/1000000 (9%), 1200/s, elapsed 1m15s, eta 12m38s");
    }

    #[test]
    fn eta_and_durations() {
        assert_eq!(eta(10, 110, 20.0), Some(Duration::from_secs(5)));
        assert_eq!(eta(0, 10, 0.0), None);
        assert_eq!(eta(10, 10, 5.0), None);
        assert_eq!(eta(1, 10, f64::NAN), None);
        assert_eq!(fmt_duration(Duration::from_millis(4240)), "4.2s");
        assert_eq!(fmt_duration(Duration::from_secs(59)), "59s");
        assert_eq!(fmt_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(fmt_duration(Duration::from_secs(7620)), "2h07m");
    }

    #[test]
    fn plain_lines_at_most_every_two_seconds_and_always_a_final_line() {
        let (p, clock, buf) = reporter(Style::Lines, Some(10_000));
        for _ in 0..1000 {
            p.inc(1);
        }
        clock.set(1999);
        p.inc(1);
        assert_eq!(buf.text(), "", "nothing before the first interval");
        clock.set(2000);
        p.inc(1);
        clock.set(2500);
        p.inc(1);
        clock.set(3999);
        p.inc(1);
        clock.set(4100);
        p.inc(1);
        p.finish();
        p.inc(1);
        p.finish();
        let text = buf.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("replay production: 1002/10000 (10%), 501/s, elapsed 2.0s, eta"), "{text}");
        assert!(lines[1].starts_with("replay production: 1005/10000"), "{text}");
        assert_eq!(lines[2], "replay production: 1005/10000 (10%), 245/s, done in 4.1s");
        assert!(!text.contains('\r'));
    }

    #[test]
    fn a_short_operation_prints_only_its_final_line_and_dropping_it_unfinished_says_so() {
        let (p, clock, buf) = reporter(Style::Lines, None);
        p.inc(3);
        clock.set(500);
        drop(p);
        assert_eq!(buf.text(), "replay production: 3, 6.00/s, stopped after 0.5s\n", "dropping the last clone ends it");
        let (p, clock, buf) = reporter(Style::Lines, None);
        p.inc(3);
        clock.set(500);
        p.finish();
        drop(p);
        assert_eq!(buf.text(), "replay production: 3, 6.00/s, done in 0.5s\n");
    }

    #[test]
    fn a_terminal_line_is_redrawn_at_most_ten_times_a_second() {
        let (p, clock, buf) = reporter(Style::Redraw, Some(100));
        p.inc(1); // t = 0: the first draw is immediate
        clock.set(50);
        p.inc(1);
        clock.set(99);
        p.inc(1);
        assert_eq!(buf.text().matches('\r').count(), 1);
        clock.set(100);
        p.inc(1);
        clock.set(150);
        p.set_label("x");
        clock.set(200);
        p.set_label("replay"); // a shorter line blanks out the rest of the previous one
        assert_eq!(buf.text().matches('\r').count(), 3);
        assert!(!buf.text().contains('\n'));
        let before = buf.text();
        let third = before.rsplit('\r').next().unwrap();
        let second = before.rsplit('\r').nth(1).unwrap();
        assert_eq!(third.len(), second.len(), "padded to the previous width: {before:?}");
        assert!(third.starts_with("replay: 4/100 (4%), 20.0/s, elapsed 0.2s, eta 4.8s "), "{third:?}");
        p.finish();
        assert!(buf.text().ends_with("replay: 4/100 (4%), 20.0/s, done in 0.2s          \n"), "{:?}", buf.text());
    }

    #[test]
    fn hidden_does_nothing_and_clones_share_the_count() {
        let h = Progress::hidden();
        h.inc(5);
        h.set_total(9);
        h.set_label("x");
        h.finish();
        assert!(!h.is_visible());
        assert_eq!(h.done(), 0);

        let (p, _clock, buf) = reporter(Style::Lines, None);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || (0..10_000).for_each(|_| p.inc(1)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(p.done(), 40_000);
        p.set_total(40_000);
        p.finish();
        assert_eq!(buf.text(), "replay production: 40000/40000 (100%), done in 0.0s\n");
    }
}
