//! Where an apply's time goes: the wall time of each step of the pipeline, in the order they
//! ran, for `apply --timings` and the `timings` of its JSON report.

use std::time::{Duration, Instant};

use serde::Serialize;

/// The steps an apply ran and how long each took.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Timings {
    /// Each step that ran, in order.
    pub steps: Vec<StepTime>,
    /// The whole pipeline, from the first step to the last.
    pub total_seconds: f64,
}

/// One step's wall time.
#[derive(Debug, Clone, Serialize)]
pub struct StepTime {
    /// `verify`, `license`, `preflight`, `push`, `backup`, `render`, `server-side apply` or `wait`.
    pub step: &'static str,
    /// Its wall time in seconds.
    pub seconds: f64,
}

impl StepTime {
    pub(crate) fn new(step: &'static str, took: Duration) -> Self {
        Self {
            step,
            seconds: took.as_secs_f64(),
        }
    }
}

/// The step during which the cluster, not this tool, works: its workloads start.
pub const WAIT: &str = "wait";

impl Timings {
    /// The seconds of `step`, if it ran.
    pub fn seconds(&self, step: &str) -> Option<f64> {
        self.steps
            .iter()
            .find(|timed| timed.step == step)
            .map(|timed| timed.seconds)
    }

    /// The seconds of every step but the [`WAIT`] for the workloads: what the tool itself spent
    /// (checking, pushing, rendering, writing), as opposed to the pods starting.
    pub fn own_seconds(&self) -> f64 {
        self.steps
            .iter()
            .filter(|timed| timed.step != WAIT)
            .map(|timed| timed.seconds)
            .sum()
    }
}

/// Measures the steps of a pipeline one after another: each [`lap`](Self::lap) closes the step
/// that ran since the last one.
pub(crate) struct Stopwatch {
    started: Instant,
    lap_started: Instant,
    steps: Vec<StepTime>,
}

impl Stopwatch {
    pub(crate) fn start() -> Self {
        let now = Instant::now();
        Self {
            started: now,
            lap_started: now,
            steps: Vec::new(),
        }
    }

    /// Closes `step`: the time since the last lap.
    pub(crate) fn lap(&mut self, step: &'static str) {
        let now = Instant::now();
        self.record(step, now - self.lap_started);
        self.lap_started = now;
    }

    /// Takes the steps measured inside one call (`timings`), which ran since the last lap.
    pub(crate) fn take(&mut self, timings: &Timings) {
        self.steps.extend(timings.steps.iter().cloned());
        self.lap_started = Instant::now();
    }

    fn record(&mut self, step: &'static str, took: Duration) {
        self.steps.push(StepTime::new(step, took));
    }

    pub(crate) fn finish(self) -> Timings {
        Timings {
            steps: self.steps,
            total_seconds: self.started.elapsed().as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{StepTime, Timings, WAIT};

    #[test]
    fn the_tools_own_time_is_every_step_but_the_wait() {
        let step = |step, seconds| StepTime { step, seconds };
        let timings = Timings {
            steps: vec![
                step("verify", 1.0),
                step("push", 2.0),
                step("render", 0.5),
                step(WAIT, 30.0),
            ],
            total_seconds: 33.5,
        };
        assert_eq!(timings.own_seconds(), 3.5);
        assert_eq!(timings.seconds("push"), Some(2.0));
        assert_eq!(timings.seconds("backup"), None);
    }
}
