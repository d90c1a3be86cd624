//! The one reporter: every event of a run goes through [`Reporter::emit`], which stamps it with
//! its time since the run began, appends it to the run's [`Record`] and hands it to the live
//! sinks (the terminal, the JSON event stream) in the same order for all of them. The reports
//! made at the end (summary, JUnit, GitHub) are rendered from the record.
//!
//! Not here: deciding outcomes (the pipeline does) or what a sink prints (the sinks do).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::events::{Event, Record};

/// A sink that sees each event as it happens.
pub trait LiveSink: Send + Sync {
    fn event(&self, at: Duration, event: &Event);
}

pub struct Reporter {
    started: Instant,
    record: Mutex<Record>,
    sinks: Vec<Box<dyn LiveSink>>,
}

impl Reporter {
    pub fn new(sinks: Vec<Box<dyn LiveSink>>) -> Reporter {
        Reporter {
            started: Instant::now(),
            record: Mutex::new(Record {
                events: Vec::new(),
                started: Some(std::time::SystemTime::now()),
            }),
            sinks,
        }
    }

    /// When the run began.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// When the run began, by the wall clock (engine timestamps are turned into run times
    /// against it).
    pub fn started_wall(&self) -> std::time::SystemTime {
        self.record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .started
            .unwrap_or_else(std::time::SystemTime::now)
    }

    pub fn emit(&self, event: Event) {
        // One lock around recording and the live sinks: every sink sees the record's order.
        let mut record = self.record.lock().unwrap_or_else(|p| p.into_inner());
        let at = self.started.elapsed();
        for sink in &self.sinks {
            sink.event(at, &event);
        }
        record.events.push((at, event));
    }

    /// Reads the record so far without copying it (a stage's outcome, whether anything failed).
    pub fn with_record<T>(&self, read: impl FnOnce(&Record) -> T) -> T {
        read(&self.record.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A copy of everything recorded so far.
    pub fn record(&self) -> Record {
        self.record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
