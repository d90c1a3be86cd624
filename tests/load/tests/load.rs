//! Load and isolation against a running stack (`BACKEND_WS_URL`, `AUTH_URL`): many users at
//! once, concurrent spam, a reconnect storm. Every wait has a deadline.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use stack_load_tests::{kind, run_id, user_id, Client, FIVE};

const EVENT_WAIT: Duration = Duration::from_secs(20);

/// Reads events until `runs` runs started with `request_ids` have completed; returns the events.
/// Panics on a misrouted event (a run this user did not start) or an out-of-order run.
async fn collect_runs(
    client: &mut Client,
    request_ids: &HashSet<String>,
) -> Vec<serde_json::Value> {
    let mut own: HashMap<String, Vec<String>> = HashMap::new();
    let mut events = Vec::new();
    let mut completed = 0;
    while completed < request_ids.len() {
        let Some(event) = client.next_event(EVENT_WAIT).await else {
            panic!(
                "user {}: {completed}/{} runs completed, then no event within {EVENT_WAIT:?}; own runs so far: {own:?}",
                client.user,
                request_ids.len()
            );
        };
        let name = kind(&event).to_owned();
        assert_ne!(name, "error", "user {}: error event {event}", client.user);
        let run = run_id(&event)
            .unwrap_or_else(|| panic!("user {}: event without run_id: {event}", client.user))
            .to_owned();
        if name == "agent_started" {
            let request = event["request_id"].as_str().unwrap_or("");
            assert!(
                request_ids.contains(request),
                "user {}: MISROUTED: agent_started of request {request:?} (run {run}), not one of ours",
                client.user
            );
            own.insert(run.clone(), Vec::new());
        }
        let seen = own.get_mut(&run).unwrap_or_else(|| {
            panic!(
                "user {}: MISROUTED: `{name}` of run {run}, which this user did not start",
                client.user
            )
        });
        seen.push(name.clone());
        if name == "agent_completed" {
            assert_eq!(seen, &FIVE, "user {}: run {run} out of order", client.user);
            completed += 1;
        }
        events.push(event);
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_users_at_once_each_get_their_own_five_events() {
    let _stack = stack_load_tests::exclusive();
    const USERS: usize = 200;
    // Everyone connects first, so that all 200 connections are open when the messages flow.
    let mut connecting = tokio::task::JoinSet::new();
    let ramp = std::sync::Arc::new(tokio::sync::Semaphore::new(50));
    for index in 0..USERS {
        let ramp = ramp.clone();
        connecting.spawn(async move {
            let _permit = ramp.acquire().await.expect("semaphore open");
            Client::new_user(user_id("two-hundred", index)).await
        });
    }
    let mut clients = Vec::new();
    while let Some(joined) = connecting.join_next().await {
        clients.push(joined.expect("a user connected"));
    }
    assert_eq!(clients.len(), USERS);

    // All 200 stay connected while their messages arrive over about a second (5 ms apart), as
    // users' messages do. Sent in the same millisecond, on a loaded two-core machine, they exhaust
    // the backend's Postgres pool (10 connections, 3 s acquire timeout) and some users get
    // `unavailable` errors: a burst limit of the backend, measured by bench/ws-load.sh.
    let start = tokio::time::Instant::now();
    let mut running = tokio::task::JoinSet::new();
    for (index, mut client) in clients.into_iter().enumerate() {
        running.spawn(async move {
            tokio::time::sleep_until(start + Duration::from_millis(5 * index as u64)).await;
            let request = format!("{}-r0", client.user);
            client.send_message("What is 2 + 3?", &request).await;
            let events = collect_runs(&mut client, &HashSet::from([request])).await;
            let run = run_id(&events[0]).expect("a run id").to_owned();
            assert_eq!(events.last().expect("events")["answer"], "5");
            client.close().await;
            run
        });
    }
    let mut runs = HashSet::new();
    while let Some(joined) = running.join_next().await {
        let run = joined.expect("a user passed");
        assert!(
            runs.insert(run.clone()),
            "run {run} was claimed by two users"
        );
    }
    assert_eq!(runs.len(), USERS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_spamming_at_once_never_see_each_others_events() {
    let _stack = stack_load_tests::exclusive();
    const USERS: usize = 10;
    const MESSAGES: usize = 10;
    let mut clients = Vec::new();
    for index in 0..USERS {
        clients.push(Client::new_user(user_id("spam", index)).await);
    }
    let mut running = tokio::task::JoinSet::new();
    for (index, mut client) in clients.into_iter().enumerate() {
        running.spawn(async move {
            let mut requests = HashSet::new();
            // Back to back, without waiting: many runs of many users interleave on the server.
            for message in 0..MESSAGES {
                let request = format!("{}-r{message}", client.user);
                client
                    .send_message(&format!("What is {index} + {message}?"), &request)
                    .await;
                requests.insert(request);
            }
            let events = collect_runs(&mut client, &requests).await;
            assert_eq!(events.len(), MESSAGES * FIVE.len());
            client.close().await;
            events
                .iter()
                .filter_map(|e| run_id(e).map(str::to_owned))
                .collect::<HashSet<_>>()
        });
    }
    let mut seen_by: HashMap<String, usize> = HashMap::new();
    while let Some(joined) = running.join_next().await {
        for run in joined.expect("a user passed") {
            *seen_by.entry(run).or_default() += 1;
        }
    }
    assert_eq!(seen_by.len(), USERS * MESSAGES);
    assert!(
        seen_by.values().all(|&users| users == 1),
        "a run reached two users: {seen_by:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reconnect_storm_leaves_the_backend_healthy() {
    let _stack = stack_load_tests::exclusive();
    const CONNECTIONS: usize = 100;
    let user = user_id("storm", 0);
    let token = stack_load_tests::token(&user).await;
    let ramp = std::sync::Arc::new(tokio::sync::Semaphore::new(25));
    let mut storm = tokio::task::JoinSet::new();
    for index in 0..CONNECTIONS {
        let (user, token, ramp) = (user.clone(), token.clone(), ramp.clone());
        storm.spawn(async move {
            let _permit = ramp.acquire().await.expect("semaphore open");
            let mut client = Client::connect(&user, &token).await;
            // Some leave mid-run, some politely, some by dropping the socket.
            if index % 3 == 0 {
                client
                    .send_message("What is 1 + 1?", &format!("storm-{index}"))
                    .await;
            }
            if index % 2 == 0 {
                client.close().await;
            } else {
                client.abandon();
            }
        });
    }
    while let Some(joined) = storm.join_next().await {
        joined.expect("a storm connection");
    }

    // Still serving: a new user gets its five events, and /health answers.
    let mut client = Client::new_user(user_id("after-storm", 0)).await;
    let request = format!("{}-r0", client.user);
    client.send_message("What is 6 * 7?", &request).await;
    let events = collect_runs(&mut client, &HashSet::from([request])).await;
    assert_eq!(events.last().expect("events")["answer"], "42");
    client.close().await;
    let backend = stack_load_tests::backend_ws_url().replacen("ws://", "http://", 1);
    assert_eq!(
        stack_load_tests::http_status(&backend, "/health").await,
        200
    );
}
