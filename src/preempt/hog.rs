//! Hogs: coroutines that keep their worker for slices on end without reaching a safe point.
//!
//! In the default (safe-point) mode nothing can take a worker back from a coroutine that never
//! reaches a safe point: the flag the timer thread raises waits for it. Such a coroutine is a
//! *hog*, and the runtime says so instead of degrading silently: once a coroutine has run
//! two slices without taking its flag (four times as many inside a
//! [`preemptible`](super::preemptible) region, whose signal usually takes it back first), the
//! timer thread files a [`HogReport`]
//! ([`Runtime::hogs`](crate::Runtime::hogs)), counts it in the runtime's and (when the hog
//! finally switches out) the coroutine's [`PreemptStats::hogs`](super::PreemptStats), and, if the
//! runtime was built with [`report_hogs`](crate::RuntimeBuilder::report_hogs), prints one line
//! on stderr.
//!
//! The timer thread cannot look into the running task (it may end and be freed at any moment),
//! so each worker copies who it runs into its `Ident` (in the worker's watch) at every switch in: the id, the entry
//! closure's type name and up to 48 bytes of the name. Plain stores, no pointer into
//! the task; the reader checks that the id did not change while it read.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

/// How many slices a coroutine runs without a safe point before it is reported as a hog.
pub(crate) const HOG_SLICES: u64 = 2;

/// How many reports a runtime keeps (the oldest go first).
const KEPT: usize = 64;

/// A coroutine that held its worker for two slices or more without reaching a safe
/// point, so that the coroutines queued behind it on that worker could not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HogReport {
    /// The worker it ran on (its thread is named `<prefix>-<worker>`).
    pub worker: usize,
    /// The coroutine's id ([`GreenThread::id`](crate::GreenThread::id)).
    pub id: u64,
    /// Its name, if it was given one (at most 48 bytes of it).
    pub name: Option<String>,
    /// The type name of the closure it was spawned with: the function it runs.
    pub entry: &'static str,
    /// Where the preemption handler last found it, for a coroutine inside an
    /// [`preemptible`](super::preemptible) region (the handler is the only safe way to learn
    /// an instruction address; safe-point mode sends no signal, so this is `None` there).
    pub function: Option<String>,
    /// How long it had run without a safe point when last seen.
    pub held_for: Duration,
    /// Whether it was still running that slice when the report was last updated.
    pub ongoing: bool,
}

impl std::fmt::Display for HogReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "coroutine {}", self.id)?;
        if let Some(name) = &self.name {
            write!(f, " '{name}'")?;
        }
        write!(
            f,
            " (spawned with {}) has held worker {} for {:.1?} without reaching a safe point",
            self.entry, self.worker, self.held_for
        )?;
        if let Some(function) = &self.function {
            write!(f, "; last seen in {function}")?;
        }
        Ok(())
    }
}

/// A runtime's hog reports, newest last.
#[derive(Default)]
pub(crate) struct HogLog {
    reports: Mutex<VecDeque<HogReport>>,
}

impl HogLog {
    /// Files a new report; returns it for printing.
    pub(crate) fn file(&self, report: HogReport) -> HogReport {
        let mut reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        if reports.len() == KEPT {
            reports.pop_front();
        }
        reports.push_back(report.clone());
        report
    }

    /// Updates the newest report about coroutine `id` on `worker`.
    pub(crate) fn update(&self, worker: usize, id: u64, held_for: Duration, ongoing: bool, function: Option<String>) {
        let mut reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = reports.iter_mut().rev().find(|r| r.worker == worker && r.id == id) {
            r.held_for = r.held_for.max(held_for);
            r.ongoing = ongoing;
            if function.is_some() {
                r.function = function;
            }
        }
    }

    /// The reports kept, oldest first.
    pub(crate) fn snapshot(&self) -> Vec<HogReport> {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}
