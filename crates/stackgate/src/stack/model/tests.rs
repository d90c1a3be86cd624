//! The model parsed from compose's real outputs: `v1-*.yaml` are what `docker-compose config`
//! (1.29.2) printed for `services/compose.yaml` and for `anchors.compose.yaml` (paths replaced by
//! `/repo`); `v2-reference.json` follows `docker compose config --format json`.

use super::*;

fn secs(s: f64) -> Option<Duration> {
    Some(Duration::from_secs_f64(s))
}

#[test]
fn reads_the_reference_stack_from_compose_v1() {
    let model = parse_output(include_str!("v1-reference.yaml")).unwrap();
    assert_eq!(model.version.as_deref(), Some("2.4"));
    assert_eq!(
        model.service_names(),
        ["auth", "backend", "postgres", "redis"]
    );
    assert_eq!(
        model.built_without_image(),
        ["auth", "backend", "postgres", "redis"]
    );
    let backend = &model.services["backend"];
    assert_eq!(backend.build.as_deref(), Some("/repo/services/backend"));
    assert_eq!(
        backend.ports,
        [Port {
            target: 8000,
            published: Some("8000".into()),
            host_ip: Some("127.0.0.1".into()),
            protocol: "tcp".into(),
        }]
    );
    let check = backend.healthcheck.as_ref().unwrap();
    assert_eq!(check.test[..3], ["CMD", "bash", "-c"]);
    assert!(check.test[3].contains("GET /ready"), "{:?}", check.test);
    assert_eq!(check.interval, secs(0.5));
    assert_eq!(check.timeout, secs(3.0));
    assert_eq!(check.start_period, secs(30.0));
    assert_eq!(check.retries, Some(30));
    assert!(!check.disabled());
    assert_eq!(
        backend.depends_on,
        BTreeMap::from([
            ("auth".to_owned(), Condition::Healthy),
            ("postgres".to_owned(), Condition::Healthy),
            ("redis".to_owned(), Condition::Healthy),
        ])
    );
    assert_eq!(backend.stop_grace_period, None);
    // `127.0.0.1::5432`: the engine picks the host port.
    let postgres = &model.services["postgres"];
    assert_eq!(postgres.ports[0].published, None);
    assert_eq!(postgres.ports[0].host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(postgres.healthcheck.as_ref().unwrap().test[0], "CMD-SHELL");
    assert!(model.networks.is_empty());
    assert_eq!(
        model.volumes,
        BTreeMap::from([("pgdata".to_owned(), Resource::default())])
    );
}

#[test]
fn externals_merged_by_anchor_and_in_flow_style_are_external_in_compose_v1_output() {
    // anchors.compose.yaml: `networks: {front: {}, shared: {<<: *external, name: ...}}` and a
    // volume `team: {<<: *external}`; compose resolved both.
    let model = parse_output(include_str!("v1-anchors.yaml")).unwrap();
    assert_eq!(model.networks["front"], Resource::default());
    assert_eq!(
        model.networks["shared"],
        Resource {
            external: true,
            name: Some("xtask-shared".into())
        }
    );
    assert_eq!(model.volumes["cache"], Resource::default());
    assert!(model.volumes["team"].external);
    let app = &model.services["app"];
    assert_eq!(app.stop_grace_period, secs(90.0));
    let check = app.healthcheck.as_ref().unwrap();
    assert_eq!(check.test, ["CMD-SHELL", "test -f /tmp/ready"]);
    assert_eq!((check.interval, check.retries), (secs(2.0), Some(5)));
    let db = &model.services["db"];
    assert!(db.healthcheck.as_ref().unwrap().disabled());
    assert_eq!(db.depends_on["app"], Condition::Started);
    assert_eq!(model.built_without_image(), ["app"]);
}

#[test]
fn reads_compose_v2_json() {
    let model = parse_output(include_str!("v2-reference.json")).unwrap();
    assert_eq!(model.version, None);
    assert_eq!(
        model.built_without_image(),
        ["auth", "backend", "postgres", "redis"]
    );
    let backend = &model.services["backend"];
    assert_eq!(backend.stop_grace_period, secs(90.0));
    assert_eq!(
        backend.depends_on["migrate"],
        Condition::CompletedSuccessfully
    );
    assert_eq!(backend.depends_on["redis"], Condition::Healthy);
    assert_eq!(backend.ports[0].published.as_deref(), Some("8000"));
    assert_eq!(backend.healthcheck.as_ref().unwrap().interval, secs(0.5));
    // An empty or absent `published` lets the engine pick.
    assert_eq!(model.services["postgres"].ports[0].published, None);
    assert_eq!(model.services["auth"].ports[0].published, None);
    assert!(model.services["redis"]
        .healthcheck
        .as_ref()
        .unwrap()
        .disabled());
    assert_eq!(
        model.services["migrate"].image.as_deref(),
        Some("chat-migrate:1.4")
    );
    // v2 names every network and volume after the project: only an external one's name is kept
    // (the model is cached across isolated runs, whose project names differ).
    assert_eq!(model.networks["default"], Resource::default());
    assert_eq!(
        model.networks["shared"],
        Resource {
            external: true,
            name: Some("team-shared".into())
        }
    );
    assert_eq!(model.volumes["pgdata"], Resource::default());
    assert!(model.volumes["archive"].external);
}

#[test]
fn yaml_merge_keys_and_flow_style_are_applied_when_read_directly() {
    // What compose would be handed, not what it prints: the conversion itself applies `<<`.
    let value = yaml_to_json(include_str!("anchors.compose.yaml")).unwrap();
    assert_eq!(value["networks"]["shared"]["external"], true);
    assert_eq!(value["networks"]["front"], serde_json::json!({}));
    assert_eq!(value["volumes"]["team"]["external"], true);
    assert_eq!(value["volumes"]["cache"], Value::Null);
    assert_eq!(value["version"], "2.4");
    assert_eq!(value["services"]["app"]["healthcheck"]["retries"], 5);
    // Explicit keys win over merged ones; the first of several sources wins.
    let value = yaml_to_json(
        "a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc:\n  <<: [*a, *b]\n  x: 3\nd: 2.10\n",
    )
    .unwrap();
    assert_eq!(value["c"], serde_json::json!({"x": 3, "y": 1, "z": 2}));
    assert_eq!(value["d"], "2.10", "a float keeps its text");
    let model = from_value(&yaml_to_json(include_str!("anchors.compose.yaml")).unwrap()).unwrap();
    assert!(model.networks["shared"].external);
}

#[test]
fn short_port_forms() {
    let ports = |text: &str| port(&Value::String(text.into()), "p").unwrap();
    let one = |target, published: Option<&str>, ip: Option<&str>, protocol: &str| Port {
        target,
        published: published.map(str::to_owned),
        host_ip: ip.map(str::to_owned),
        protocol: protocol.to_owned(),
    };
    assert_eq!(ports("8000"), [one(8000, None, None, "tcp")]);
    assert_eq!(
        ports("9000:8000/udp"),
        [one(8000, Some("9000"), None, "udp")]
    );
    assert_eq!(
        ports("127.0.0.1::5432/tcp"),
        [one(5432, None, Some("127.0.0.1"), "tcp")]
    );
    assert_eq!(
        ports("7000-7001:8000-8001"),
        [
            one(8000, Some("7000"), None, "tcp"),
            one(8001, Some("7001"), None, "tcp")
        ]
    );
    assert_eq!(
        port(&serde_json::json!({"target": 80, "published": 8080}), "p").unwrap(),
        [one(80, Some("8080"), None, "tcp")]
    );
    let error = port(&Value::String("web".into()), "services.a.ports[0]").unwrap_err();
    assert_eq!(
        error.to_string(),
        "`services.a.ports[0]`: `web` is not a port or a range"
    );
}

#[test]
fn go_durations() {
    assert_eq!(parse_duration("1m30s"), secs(90.0));
    assert_eq!(parse_duration("500ms"), secs(0.5));
    assert_eq!(parse_duration("1.5s"), secs(1.5));
    assert_eq!(parse_duration("2h"), secs(7200.0));
    assert_eq!(parse_duration("10us"), Some(Duration::from_micros(10)));
    assert_eq!(parse_duration("0"), Some(Duration::ZERO));
    assert_eq!(parse_duration("10"), None);
    assert_eq!(parse_duration("soon"), None);
    let error = from_value(&serde_json::json!({
        "services": {"web": {"healthcheck": {"interval": "often"}}}
    }))
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "`services.web.healthcheck.interval`: `often` is not a duration"
    );
}

#[test]
fn the_digest_covers_every_resolved_key_and_not_the_notation() {
    let yaml = "services:\n  web:\n    image: x\n    environment:\n      A: '1'\n";
    let json = r#"{"services": {"web": {"environment": {"A": "1"}, "image": "x"}}}"#;
    let model = parse_output(yaml).unwrap();
    assert_eq!(model.digest.len(), 16);
    assert_eq!(model.digest, parse_output(json).unwrap().digest);
    // Compose v2 prints the project's name: not a difference between two runs of one stack.
    let run = |name: &str| {
        format!(
            r#"{{"name": "{name}", "networks": {{"default": {{"name": "{name}_default"}}}}, "services": {{}}}}"#
        )
    };
    assert_eq!(
        digest_of(&run("chat-1a2b"), "chat-1a2b").unwrap(),
        digest_of(&run("chat-9z8y"), "chat-9z8y").unwrap()
    );
    assert_ne!(
        digest_of(&run("chat-1a2b"), "chat-1a2b").unwrap(),
        digest_of(
            &run("chat-1a2b").replace("services", "volumes"),
            "chat-1a2b"
        )
        .unwrap()
    );
    // A key the model does not read (environment) still changes the digest.
    let changed = parse_output(&yaml.replace("'1'", "'2'")).unwrap();
    assert_eq!(changed.services, model.services);
    assert_ne!(changed.digest, model.digest);
}

/// What `docker-compose -p chat config` printed on a machine where `docker-up` failed (see
/// shared/findings/docker-up-yaml.md): the project's name is a word of the stack's own values.
#[test]
fn a_project_named_like_a_word_of_the_stack_still_reads() {
    let text = include_str!("v1-reference-project-chat.yaml");
    assert!(text.contains("JWT_ISSUER: chat-auth"));
    let model = parse_output(text).unwrap();
    assert_eq!(
        model.service_names(),
        ["auth", "backend", "postgres", "redis"]
    );
    // Taking the name out of the text made `JWT_ISSUER: {project}-auth`, which is not YAML.
    let digest = digest_of(text, "chat").unwrap();
    assert_eq!(digest, digest_of(text, "chat").unwrap());
    assert_ne!(
        digest,
        digest_of(&text.replace("chat-auth", "chat-other"), "chat").unwrap()
    );
}

#[test]
fn a_parse_error_shows_the_lines_around_its_position() {
    let text = "services:\n  a:\n    environment:\n      X: {p}-auth\n";
    let error = yaml_to_json(text).unwrap_err();
    let lines = excerpt(text, &error.problem).expect("a position in the message");
    assert!(lines.contains("    4 |       X: {p}-auth"), "{lines}");
    assert!(lines.contains('^'), "{lines}");
    assert_eq!(excerpt(text, "no position here"), None);
}

#[test]
fn a_services_networks_read_from_either_form() {
    let model = parse_output(
        "services:\n  a:\n    networks: [front, back]\n  b:\n    networks:\n      front: {aliases: [x]}\n  c:\n    image: x\n",
    )
    .unwrap();
    assert_eq!(model.services["a"].networks, ["front", "back"]);
    assert_eq!(model.services["b"].networks, ["front"]);
    assert!(model.services["c"].networks.is_empty());
}
