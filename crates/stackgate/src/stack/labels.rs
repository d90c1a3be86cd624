//! What the harness lays over a compose file: the labels override (the run's labels on every
//! service, the default network, and every network and volume the model declares, external ones
//! excepted) and the names of the images compose builds, which belong to one checkout:
//! `<project>-<service>:xtask-<8 hex of the checkout root's digest>`, labelled with that root.
//!
//! Not here: reading the model ([super::model]); removing a checkout's tags ([super::down]).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Map, Value};

use super::model::Model;
use crate::config::Config;

/// Image label: the checkout root (its path) whose sources the image was built from, so that
/// `docker-down --prune-images` can tell the tags of checkouts that no longer exist.
pub const LABEL_ROOT_PATH: &str = "io.xtask.root-path";
/// Image label: the digest of that root (as `io.xtask.root` on containers). Images carry labels
/// of their own, not the run's: a container started by hand from such an image must not look
/// like a leftover of a run.
pub const LABEL_IMAGE_ROOT: &str = "io.xtask.image-root";
/// Image label: `[project] name`.
pub const LABEL_IMAGE_PROJECT: &str = "io.xtask.image-project";
/// Container label: its service's `stop_grace_period` in whole seconds, when the compose file
/// sets one. Compose v1 does not hand it to the engine, so teardown reads it from here.
pub const LABEL_STOP_GRACE: &str = "io.xtask.stop-grace-s";
/// Every per-checkout tag starts with this.
pub const TAG_PREFIX: &str = "xtask-";

/// `xtask-<8 hex>`: the tag of the images one checkout builds.
pub fn checkout_tag(root: &Path) -> String {
    let digest = crate::state::root_digest(root);
    format!("{TAG_PREFIX}{}", &digest[..8])
}

/// `<project>-<service>:xtask-<8 hex>`: the image a built service of this checkout runs.
/// Isolated runs of one checkout share it (and reuse it); another checkout has its own.
pub fn image_tag(config: &Config, service: &str) -> String {
    format!(
        "{}:{}",
        image_repository(&config.project.name.0, service),
        checkout_tag(&config.root)
    )
}

/// `<project>-<service>`, lower-cased as image names must be.
pub fn image_repository(project: &str, service: &str) -> String {
    format!("{project}-{service}").to_ascii_lowercase()
}

/// The override that puts `labels` on every service (with its stop grace,
/// [`LABEL_STOP_GRACE`]), the default network (unless the model makes it external), every
/// declared network and volume except external ones (compose refuses labels there). JSON is
/// YAML, so compose reads it; its `version` repeats the model's, which compose v1 requires.
pub fn labels_override(model: &Model, labels: &BTreeMap<String, String>) -> Value {
    let labelled = || json!({ "labels": labels });
    let mut out = Map::new();
    if let Some(version) = &model.version {
        out.insert("version".into(), Value::String(version.clone()));
    }
    let service_labels = |service: &super::model::Service| {
        let mut labels = labels.clone();
        if let Some(grace) = service.stop_grace_period {
            // Whole seconds, rounded up: the engine's stop call counts no finer.
            let seconds = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
            labels.insert(LABEL_STOP_GRACE.to_owned(), seconds.to_string());
        }
        json!({ "labels": labels })
    };
    out.insert(
        "services".into(),
        Value::Object(
            model
                .services
                .iter()
                .map(|(name, service)| (name.clone(), service_labels(service)))
                .collect(),
        ),
    );
    let mut networks = Map::new();
    if !model.networks.get("default").is_some_and(|n| n.external) {
        networks.insert("default".into(), labelled());
    }
    for (name, network) in &model.networks {
        if !network.external {
            networks.insert(name.clone(), labelled());
        }
    }
    out.insert("networks".into(), Value::Object(networks));
    let volumes: Map<String, Value> = model
        .volumes
        .iter()
        .filter(|(_, volume)| !volume.external)
        .map(|(name, _)| (name.clone(), labelled()))
        .collect();
    if !volumes.is_empty() {
        out.insert("volumes".into(), Value::Object(volumes));
    }
    Value::Object(out)
}

/// Names the images of the services compose builds without an `image:` of their own after this
/// checkout ([`image_tag`]) and labels them with its root, so that two checkouts of one project
/// on one engine never run each other's builds.
pub fn with_checkout_images(mut value: Value, model: &Model, config: &Config) -> Value {
    let build_labels = json!({
        LABEL_ROOT_PATH: config.root.to_string_lossy(),
        LABEL_IMAGE_ROOT: crate::state::root_digest(&config.root),
        LABEL_IMAGE_PROJECT: config.project.name.0,
    });
    for service in model.built_without_image() {
        if let Some(entry) = value
            .get_mut("services")
            .and_then(|s| s.get_mut(service))
            .and_then(|e| e.as_object_mut())
        {
            entry.insert("image".into(), Value::String(image_tag(config, service)));
            entry.insert("build".into(), json!({ "labels": build_labels }));
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::model::{Resource, Service};
    use crate::state::{self, LABEL_PID, LABEL_ROOT};

    fn config(root: &str) -> Config {
        crate::config::parse(
            &Path::new(root).join("harness.toml"),
            "[project]\nname = \"chat\"\n",
        )
        .unwrap()
    }

    fn model() -> Model {
        let built = Service {
            build: Some("/repo/web".into()),
            ..Service::default()
        };
        let external = Resource {
            external: true,
            name: Some("team".into()),
        };
        Model {
            version: Some("2.4".into()),
            services: BTreeMap::from([
                ("web".to_owned(), built.clone()),
                (
                    "db".to_owned(),
                    Service {
                        image: Some("postgres".into()),
                        stop_grace_period: Some(std::time::Duration::from_millis(2500)),
                        ..Service::default()
                    },
                ),
                (
                    "both".to_owned(),
                    Service {
                        image: Some("mine".into()),
                        ..built
                    },
                ),
            ]),
            networks: BTreeMap::from([
                ("front".to_owned(), Resource::default()),
                ("outside".to_owned(), external.clone()),
            ]),
            volumes: BTreeMap::from([
                ("data".to_owned(), Resource::default()),
                ("shared".to_owned(), external),
            ]),
            digest: String::new(),
        }
    }

    #[test]
    fn override_labels_everything_but_externals_and_keeps_the_version() {
        let config = config("/repo");
        let labels = state::run_labels(
            &config,
            "r1",
            &state::Owner {
                pid: 42,
                ..Default::default()
            },
        );
        assert_eq!(labels[LABEL_PID], "42");
        assert_eq!(labels[LABEL_ROOT], state::root_digest(Path::new("/repo")));
        let value = labels_override(&model(), &labels);
        assert_eq!(value["version"], "2.4");
        for service in ["web", "db", "both"] {
            assert_eq!(
                value["services"][service]["labels"]["io.xtask.run-id"],
                "r1"
            );
        }
        // A service's stop grace rides along, rounded up to whole seconds; none without one.
        assert_eq!(value["services"]["db"]["labels"][LABEL_STOP_GRACE], "3");
        assert!(value["services"]["web"]["labels"]
            .get(LABEL_STOP_GRACE)
            .is_none());
        assert_eq!(
            value["networks"]["default"]["labels"]["io.xtask.run-id"],
            "r1"
        );
        assert_eq!(
            value["networks"]["front"]["labels"]["io.xtask.run-id"],
            "r1"
        );
        assert!(value["networks"].get("outside").is_none());
        assert_eq!(value["volumes"]["data"]["labels"]["io.xtask.run-id"], "r1");
        assert!(value["volumes"].get("shared").is_none());

        // An external default network is not labelled either; no volumes, no section.
        let mut bare = Model::default();
        bare.networks.insert(
            "default".into(),
            Resource {
                external: true,
                name: None,
            },
        );
        let value = labels_override(&bare, &labels);
        assert!(value.get("version").is_none());
        assert_eq!(value["networks"], json!({}));
        assert!(value.get("volumes").is_none());
    }

    #[test]
    fn built_services_get_an_image_name_of_the_checkout_labelled_with_its_root() {
        let (one, other) = (config("/work/one"), config("/work/other"));
        let labels = state::run_labels(
            &one,
            "r1",
            &state::Owner {
                pid: 42,
                ..Default::default()
            },
        );
        let value = with_checkout_images(labels_override(&model(), &labels), &model(), &one);
        let tag = checkout_tag(Path::new("/work/one"));
        assert_eq!(tag.len(), "xtask-".len() + 8);
        assert_eq!(value["services"]["web"]["image"], format!("chat-web:{tag}"));
        assert_eq!(
            value["services"]["web"]["build"]["labels"][LABEL_ROOT_PATH],
            "/work/one"
        );
        assert_eq!(
            value["services"]["web"]["build"]["labels"][LABEL_IMAGE_PROJECT],
            "chat"
        );
        // The run's labels stay on the container, not on the image.
        assert!(value["services"]["web"]["build"]["labels"]
            .get(LABEL_ROOT)
            .is_none());
        assert!(value["services"]["db"].get("image").is_none());
        assert!(value["services"]["both"].get("image").is_none());
        // Another checkout of the same project: another tag; the same checkout: the same.
        assert_ne!(image_tag(&one, "web"), image_tag(&other, "web"));
        assert_eq!(
            image_tag(&one, "web"),
            image_tag(&config("/work/one"), "web")
        );
        assert_eq!(image_repository("chat", "Web"), "chat-web");
    }
}
