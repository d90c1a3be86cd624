//! How work below the commands tells a person what it is doing or waiting for, without printing:
//! a [`Progress`] handle that the command hands down. A plain command prints through
//! `crate::commands::terminal_progress`; the gate routes it into its reporter as events, so that
//! one sink decides what reaches the terminal. Nothing here prints.
//!
//! Not here: rendering ([crate::ui]), the gate's events ([crate::gate::events]).

use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a long wait says that it is still waiting.
pub const SAY_EVERY: Duration = Duration::from_secs(5);

/// A function that takes a progress message.
pub type Sink = Arc<dyn Fn(&str) + Send + Sync>;

/// Where progress messages go.
#[derive(Clone)]
pub struct Progress(Option<Sink>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress"
        } else {
            "Progress(silent)"
        })
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::silent()
    }
}

impl Progress {
    /// Nowhere (tests, callers that report results only).
    pub fn silent() -> Progress {
        Progress(None)
    }

    /// Into a function (the gate's reporter).
    pub fn to(sink: impl Fn(&str) + Send + Sync + 'static) -> Progress {
        Progress(Some(Arc::new(sink)))
    }

    pub fn say(&self, message: impl std::fmt::Display) {
        if let Some(sink) = &self.0 {
            sink(&message.to_string());
        }
    }

    /// Awaits `work`, saying every [`SAY_EVERY`] that it still waits for `what` (and for how
    /// long, of its deadline).
    pub async fn while_waiting<T>(
        &self,
        what: &str,
        deadline: Duration,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let began = Instant::now();
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                result = &mut work => return result,
                _ = tokio::time::sleep(SAY_EVERY) => self.say(format!(
                    "still waiting for {what} ({} of {})",
                    crate::ui::duration(began.elapsed()),
                    crate::ui::duration(deadline)
                )),
            }
        }
    }

    /// A throttled sayer for a polling loop: says at once, then at most every [`SAY_EVERY`].
    pub fn throttled(&self) -> Throttle {
        Throttle {
            progress: self.clone(),
            last: None,
        }
    }
}

/// Says what a polling wait is waiting for: at once, then every [`SAY_EVERY`].
pub struct Throttle {
    progress: Progress,
    last: Option<Instant>,
}

impl Throttle {
    pub fn say(&mut self, message: impl FnOnce() -> String) {
        if self.last.is_none_or(|last| last.elapsed() >= SAY_EVERY) {
            self.last = Some(Instant::now());
            self.progress.say(message());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn a_throttle_says_once_per_interval() {
        let said = Arc::new(Mutex::new(Vec::new()));
        let progress = {
            let said = said.clone();
            Progress::to(move |m| said.lock().unwrap().push(m.to_owned()))
        };
        let mut throttle = progress.throttled();
        throttle.say(|| "first".into());
        throttle.say(|| "second".into());
        assert_eq!(*said.lock().unwrap(), vec!["first".to_owned()]);
        Progress::silent().say("nowhere");
    }
}
