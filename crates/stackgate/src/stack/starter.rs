//! The harness's side of `stack.start = "ordered"`: which created containers wait for their
//! service's `depends_on` conditions, and starting them through the engine the moment those
//! hold ([super::order] decides the order; [super::up] drives the wait).

use std::collections::BTreeMap;

use super::order::StartOrder;
use super::watch::{ContainerEvent, Failed, Inspected, Watch};
use super::{emit, Progress, UpEvent};

/// A service compose may start the moment its container exists: no `depends_on`, and at most one
/// network (compose connects further networks after creating the container).
pub(super) fn starts_at_once(model: &super::model::Model, service: &str) -> bool {
    model
        .services
        .get(service)
        .is_some_and(|s| s.depends_on.is_empty() && s.networks.len() <= 1)
}

/// Starts a container compose just created. A failure is left to the start after `up --no-start`
/// (which finds it not running and reports why it cannot start).
pub(super) async fn start_early(docker: &bollard::Docker, container: &str) {
    let _ = docker
        .start_container(
            container,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await;
}

/// The harness's side of `stack.start = "ordered"`: the containers compose created, and the
/// order they start in.
#[derive(Default)]
pub(super) struct Starter {
    order: Option<StartOrder>,
    /// Created containers not started yet, by service.
    containers: BTreeMap<String, Vec<String>>,
}

impl Starter {
    /// After `up --no-start`: every created container that does not run yet waits for its
    /// service's conditions.
    pub(super) fn new(
        model: &super::model::Model,
        seen: &[Inspected],
        watched: &[String],
        watch: &Watch,
    ) -> Starter {
        let mut containers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut running = std::collections::BTreeSet::new();
        for inspected in seen {
            if inspected.running {
                running.insert(inspected.service.clone());
            } else {
                containers
                    .entry(inspected.service.clone())
                    .or_default()
                    .push(inspected.container.clone());
            }
        }
        let to_start = containers.keys().cloned().collect();
        let mut order = StartOrder::new(model, &to_start, &running);
        for service in watched {
            if watch.ready(service).is_some() {
                order.ready(service);
            }
        }
        Starter {
            order: Some(order),
            containers,
        }
    }

    pub(super) fn done(&self) -> bool {
        self.order.as_ref().is_none_or(StartOrder::done)
    }

    pub(super) fn waiting(&self) -> Vec<String> {
        self.order
            .as_ref()
            .map(StartOrder::waiting)
            .unwrap_or_default()
    }

    pub(super) fn ready(&mut self, service: &str) {
        if let Some(order) = &mut self.order {
            order.ready(service);
        }
    }

    /// Services of any kind start and stop: what `service_started` and
    /// `service_completed_successfully` wait on.
    pub(super) fn on_event(&mut self, event: &ContainerEvent) {
        let Some(order) = &mut self.order else { return };
        match event.action.as_str() {
            "start" => order.started(&event.service),
            "die" => order.exited(
                &event.service,
                event
                    .exit_code
                    .as_deref()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(-1),
            ),
            _ => {}
        }
    }

    /// Starts, through the engine, every service whose conditions hold now (their containers
    /// at once).
    pub(super) async fn start_due(
        &mut self,
        docker: &bollard::Docker,
        progress: &Option<Progress>,
    ) -> Result<(), Failed> {
        let Some(order) = &mut self.order else {
            return Ok(());
        };
        let due = order.due().map_err(|(service, reason)| Failed {
            service,
            container: None,
            reason,
        })?;
        let starts = due.iter().flat_map(|service| {
            let containers = self.containers.remove(service).unwrap_or_default();
            containers.into_iter().map(move |container| async move {
                let result = docker
                    .start_container(
                        &container,
                        None::<bollard::query_parameters::StartContainerOptions>,
                    )
                    .await;
                (service.clone(), container, result)
            })
        });
        for (service, container, result) in futures_util::future::join_all(starts).await {
            match result {
                Ok(())
                // Already running (304): someone else started it, which is what was wanted.
                | Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 304, ..
                }) => {}
                Err(e) => {
                    let reason = format!("cannot start service `{service}`: {e}");
                    emit(
                        progress,
                        UpEvent::ServiceFailed {
                            service: service.clone(),
                            reason: reason.clone(),
                        },
                    );
                    return Err(Failed {
                        service,
                        container: Some(container),
                        reason,
                    });
                }
            }
        }
        Ok(())
    }
}
