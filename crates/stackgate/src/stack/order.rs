//! Starting services in dependency order, as compose would, but on the harness's readiness: after
//! `compose up --no-start` created every container, [`StartOrder`] says which services may start
//! now: those whose `depends_on` conditions hold (`service_started`: running;
//! `service_healthy`: ready by the harness's probe or the engine's health;
//! `service_completed_successfully`: exited 0). Compose itself waits for the engine's own health
//! status, up to a whole healthcheck interval after a dependency is in fact ready. Pure: fed by
//! the wait loop ([super::up]), tested without an engine.
//!
//! Not here: starting containers (the engine API, in [super::up]), readiness ([super::watch]).

use std::collections::{BTreeMap, BTreeSet};

use super::model::{Condition, Model};

/// Which services are still to be started, and what each waits for.
#[derive(Debug, Default)]
pub struct StartOrder {
    /// Services not started yet, with their conditions on other services.
    pending: BTreeMap<String, BTreeMap<String, Condition>>,
    running: BTreeSet<String>,
    ready: BTreeSet<String>,
    /// Exit codes of services that stopped.
    exited: BTreeMap<String, i64>,
}

impl StartOrder {
    /// `to_start`: the services whose containers compose created and that do not run yet.
    /// Dependencies outside the model, or that compose did not create (profiles), impose nothing.
    pub fn new(
        model: &Model,
        to_start: &BTreeSet<String>,
        running: &BTreeSet<String>,
    ) -> StartOrder {
        let pending = to_start
            .iter()
            .map(|service| {
                let conditions = model
                    .services
                    .get(service)
                    .map(|s| {
                        s.depends_on
                            .iter()
                            .filter(|(dep, _)| to_start.contains(*dep) || running.contains(*dep))
                            .map(|(dep, condition)| (dep.clone(), condition.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                (service.clone(), conditions)
            })
            .collect();
        StartOrder {
            pending,
            running: running.clone(),
            ..StartOrder::default()
        }
    }

    /// The services a `service_healthy` condition waits on: the wait must watch their readiness
    /// even when `[stack] services` does not list them.
    pub fn awaited_healthy(model: &Model) -> BTreeSet<String> {
        model
            .services
            .values()
            .flat_map(|s| s.depends_on.iter())
            .filter(|(_, condition)| **condition == Condition::Healthy)
            .map(|(dep, _)| dep.clone())
            .collect()
    }

    pub fn started(&mut self, service: &str) {
        self.running.insert(service.to_owned());
        self.exited.remove(service);
    }

    pub fn ready(&mut self, service: &str) {
        self.ready.insert(service.to_owned());
    }

    pub fn exited(&mut self, service: &str, code: i64) {
        self.running.remove(service);
        self.exited.insert(service.to_owned(), code);
    }

    /// Whether nothing is left to start.
    pub fn done(&self) -> bool {
        self.pending.is_empty()
    }

    /// The services whose conditions hold now, taken off the pending list (in name order; the
    /// caller starts them at once). `Err` names a service that can never start, and why: a
    /// dependency it needs to complete successfully exited with another code.
    pub fn due(&mut self) -> Result<Vec<String>, (String, String)> {
        let mut due = Vec::new();
        for (service, conditions) in &self.pending {
            let mut holds = true;
            for (dep, condition) in conditions {
                let met = match condition {
                    Condition::Started => {
                        self.running.contains(dep) || self.exited.contains_key(dep)
                    }
                    Condition::Healthy => self.ready.contains(dep),
                    Condition::CompletedSuccessfully => match self.exited.get(dep) {
                        Some(0) => true,
                        Some(code) => {
                            return Err((
                                service.clone(),
                                format!(
                                    "service `{service}` depends on `{dep}` completing successfully, and `{dep}` exited with code {code}"
                                ),
                            ))
                        }
                        None => false,
                    },
                };
                holds &= met;
            }
            if holds {
                due.push(service.clone());
            }
        }
        for service in &due {
            self.pending.remove(service);
        }
        Ok(due)
    }

    /// What each service still pending waits for: `web (cache healthy)`.
    pub fn waiting(&self) -> Vec<String> {
        self.pending
            .iter()
            .map(|(service, conditions)| {
                let open: Vec<String> = conditions
                    .iter()
                    .filter(|(dep, condition)| match condition {
                        Condition::Started => !self.running.contains(*dep),
                        Condition::Healthy => !self.ready.contains(*dep),
                        Condition::CompletedSuccessfully => self.exited.get(*dep) != Some(&0),
                    })
                    .map(|(dep, condition)| {
                        let what = match condition {
                            Condition::Started => "started",
                            Condition::Healthy => "healthy",
                            Condition::CompletedSuccessfully => "completed",
                        };
                        format!("{dep} {what}")
                    })
                    .collect();
                format!("{service} ({})", open.join(", "))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::model::Service;

    fn model(edges: &[(&str, &[(&str, Condition)])]) -> Model {
        let mut model = Model::default();
        for (service, deps) in edges {
            model.services.insert(
                service.to_string(),
                Service {
                    depends_on: deps
                        .iter()
                        .map(|(d, c)| (d.to_string(), c.clone()))
                        .collect(),
                    ..Service::default()
                },
            );
        }
        model
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dependents_start_when_their_conditions_hold() {
        let model = model(&[
            ("db", &[]),
            ("cache", &[]),
            ("migrate", &[("db", Condition::Healthy)]),
            (
                "web",
                &[
                    ("cache", Condition::Healthy),
                    ("migrate", Condition::CompletedSuccessfully),
                    ("logs", Condition::Started),
                ],
            ),
            ("logs", &[]),
        ]);
        let all = set(&["db", "cache", "migrate", "web", "logs"]);
        let mut order = StartOrder::new(&model, &all, &BTreeSet::new());
        assert_eq!(order.due().unwrap(), ["cache", "db", "logs"]);
        assert!(order.due().unwrap().is_empty(), "each service is due once");
        order.started("db");
        order.started("cache");
        order.started("logs");
        assert!(order.due().unwrap().is_empty());
        order.ready("db");
        assert_eq!(order.due().unwrap(), ["migrate"]);
        order.started("migrate");
        order.ready("cache");
        assert_eq!(order.waiting(), ["web (migrate completed)"]);
        order.exited("migrate", 0);
        assert_eq!(order.due().unwrap(), ["web"]);
        assert!(order.done());
    }

    #[test]
    fn a_failed_job_blocks_its_dependents_with_a_reason() {
        let model = model(&[
            ("migrate", &[]),
            ("web", &[("migrate", Condition::CompletedSuccessfully)]),
        ]);
        let mut order = StartOrder::new(&model, &set(&["migrate", "web"]), &BTreeSet::new());
        assert_eq!(order.due().unwrap(), ["migrate"]);
        order.exited("migrate", 3);
        let (service, error) = order.due().unwrap_err();
        assert_eq!(service, "web");
        assert!(error.contains("`migrate` exited with code 3"), "{error}");
    }

    #[test]
    fn running_dependencies_count_and_uncreated_ones_impose_nothing() {
        let model = model(&[
            ("db", &[]),
            ("debug", &[]),
            (
                "web",
                &[("db", Condition::Started), ("debug", Condition::Healthy)],
            ),
        ]);
        // db runs already (a continued stack); debug is behind a profile compose did not create.
        let mut order = StartOrder::new(&model, &set(&["web"]), &set(&["db"]));
        assert_eq!(order.due().unwrap(), ["web"]);
        assert_eq!(
            StartOrder::awaited_healthy(&model),
            set(&["debug"]),
            "what a service_healthy condition waits on"
        );
    }
}
