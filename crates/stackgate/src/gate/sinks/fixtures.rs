//! Recorded runs the sinks' snapshot tests render: a passing docker run (with its services'
//! state changes and its tests as they ran), a run with no engine that fell back to local
//! processes, and a run whose suite failed (a pytest test with its file and line). Times are
//! fixed so that renderings are stable.

use std::time::Duration;

use crate::gate::events::{Event, Record, Stage, StageOutcome, Verdict};
use crate::junit::{Case, Status, SuiteResult};
use crate::report::{Check, Outcome};
use crate::stack::ContainerState;
use crate::suites::{TestOutcome, TestRun};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

struct Builder {
    record: Record,
}

impl Builder {
    fn new() -> Builder {
        Builder {
            record: Record {
                events: Vec::new(),
                // 2026-11-27T07:17:38Z
                started: Some(std::time::UNIX_EPOCH + Duration::from_secs(1_795_763_858)),
            },
        }
    }
    /// A container's state change, noticed at `at_ms`, by the engine's clock at `engine_ms`.
    fn service(self, at_ms: u64, service: &str, state: ContainerState, engine_ms: u64) -> Builder {
        self.at(
            at_ms,
            Event::ServiceState {
                service: service.into(),
                container: format!("chat-4242_{service}_1"),
                state,
                at: ms(engine_ms),
            },
        )
    }
    /// A test that started at `start_ms` and ended at `end_ms`.
    fn test(self, start_ms: u64, end_ms: u64, suite: &str, test: TestRun) -> Builder {
        self.at(
            start_ms,
            Event::TestStarted {
                suite: suite.into(),
                worker: "0".into(),
                id: test.id.clone(),
                name: test.name.clone(),
            },
        )
        .at(
            end_ms,
            Event::TestFinished {
                suite: suite.into(),
                worker: "0".into(),
                test,
            },
        )
    }
    fn at(mut self, at_ms: u64, event: Event) -> Builder {
        self.record.events.push((ms(at_ms), event));
        self
    }
    fn started(self, at_ms: u64, stage: Stage) -> Builder {
        self.at(at_ms, Event::StageStarted { stage })
    }
    fn finished(self, at_ms: u64, stage: Stage, elapsed_ms: u64, outcome: StageOutcome) -> Builder {
        self.at(
            at_ms,
            Event::StageFinished {
                stage,
                elapsed: ms(elapsed_ms),
                outcome,
            },
        )
    }
    fn skipped(self, at_ms: u64, stage: Stage, reason: &str) -> Builder {
        self.finished(at_ms, stage, 0, StageOutcome::Skipped(reason.into()))
    }
    fn step(self, at_ms: u64, stage: Stage, check: Check) -> Builder {
        self.at(at_ms, Event::Step { stage, check })
    }
    fn property(self, at_ms: u64, name: &str, value: &str) -> Builder {
        self.at(
            at_ms,
            Event::Property {
                name: name.into(),
                value: value.into(),
            },
        )
    }
    fn done(self, at_ms: u64, verdict: Verdict, overhead_ms: u64) -> Record {
        self.at(
            at_ms,
            Event::Finished {
                verdict,
                total: ms(at_ms),
                overhead: ms(overhead_ms),
            },
        )
        .record
    }
}

fn suite(name: &str, cases: Vec<Case>, duration_ms: u64) -> SuiteResult {
    SuiteResult {
        cases,
        duration: ms(duration_ms),
        ..SuiteResult::new(name)
    }
}

fn passed(classname: &str, name: &str, time_ms: u64) -> Case {
    Case::new(classname, name, Status::Passed).with_time(ms(time_ms))
}

fn test_run(file: &str, name: &str, outcome: TestOutcome, time_ms: u64) -> TestRun {
    let classname = file.trim_end_matches(".py").replace('/', ".");
    TestRun {
        id: format!("{file}::{name}"),
        classname,
        name: name.into(),
        outcome,
        duration: ms(time_ms),
        message: None,
        file: Some(file.into()),
        line: None,
        began: None,
        ended: None,
    }
}

fn probe(exit_code: i64) -> ContainerState {
    ContainerState::Probe {
        exit_code,
        took: ms(40),
        output: if exit_code == 0 {
            "accepting connections".into()
        } else {
            "no response".into()
        },
    }
}

fn preflight(b: Builder) -> Builder {
    b.started(0, Stage::Preflight)
        .property(1, "run_id", "19a2b3c4d5e-4242")
        .property(1, "git_commit", "0123456789abcdef")
        .step(
            1010,
            Stage::Preflight,
            Check::passed("memory", ms(1), "23.1 GiB available (need 8)"),
        )
        .step(
            1010,
            Stage::Preflight,
            Check::new("cpu load", Outcome::Warned, ms(1000), "91% busy (max 80)"),
        )
        .finished(1011, Stage::Preflight, 1010, StageOutcome::Passed)
}

pub fn docker_passing() -> Record {
    let b = teardown_passing(suites_passing(docker_up_passing(preflight(Builder::new()))));
    b.done(9500, Verdict::Passed, 153)
}

/// [`docker_passing`]'s engine, target, images and stack: healthy at 5 s.
fn docker_up_passing(b: Builder) -> Builder {
    b.started(2, Stage::Engine)
        .step(
            40,
            Stage::Engine,
            Check::passed(
                "engine available",
                ms(38),
                "unix:///var/run/docker.sock 20.10.24",
            ),
        )
        .property(40, "engine_version", "20.10.24 (API 1.41)")
        .started(41, Stage::Target)
        .step(
            41,
            Stage::Target,
            Check::passed("target docker", ms(0), "the engine answered"),
        )
        .property(41, "target", "docker")
        .finished(41, Stage::Target, 0, StageOutcome::Passed)
        .started(41, Stage::Images)
        .step(
            44,
            Stage::Images,
            Check::passed("image debian:bookworm-slim", ms(3), "present"),
        )
        .finished(44, Stage::Images, 3, StageOutcome::Passed)
        .started(44, Stage::Stack)
        .service(1000, "postgres", ContainerState::Created, 1000)
        .service(1000, "backend", ContainerState::Created, 1000)
        .service(1100, "postgres", ContainerState::Started, 1100)
        .service(1300, "backend", ContainerState::Started, 1300)
        .service(2100, "postgres", probe(1), 2100)
        .service(3150, "postgres", probe(0), 3150)
        .service(3200, "postgres", ContainerState::Healthy, 3200)
        .service(4590, "backend", probe(0), 4590)
        .service(4600, "backend", ContainerState::Healthy, 4600)
        .step(
            600,
            Stage::Engine,
            Check::passed("smoke container", ms(556), "`hello-world` exited 0"),
        )
        .finished(600, Stage::Engine, 598, StageOutcome::Passed)
        .property(300, "compose_flavour", "docker-compose 1.29.2")
        .step(
            4900,
            Stage::Stack,
            Check::passed(
                "compose up",
                ms(4200),
                "docker-compose 1.29.2, project chat-4242",
            ),
        )
        .step(
            5000,
            Stage::Stack,
            Check::passed(
                "service postgres healthy",
                ms(2100),
                "healthy 2.10s after start",
            ),
        )
        .step(
            5000,
            Stage::Stack,
            Check::passed(
                "service backend healthy",
                ms(3300),
                "healthy 3.30s after start",
            ),
        )
        .finished(5001, Stage::Stack, 4957, StageOutcome::Passed)
}

/// [`docker_passing`]'s ws check and its suite `e2e`: two tests passed, one skipped.
fn suites_passing(b: Builder) -> Builder {
    b.started(5001, Stage::Ws)
        .step(
            5110,
            Stage::Ws,
            Check::passed("websocket events", ms(101), "5 events in order"),
        )
        .finished(5110, Stage::Ws, 109, StageOutcome::Passed)
        .started(5110, Stage::Suites)
        .test(
            5200,
            6400,
            "e2e",
            test_run(
                "tests/e2e/test_chat.py",
                "test_agent_answers",
                TestOutcome::Passed,
                1200,
            ),
        )
        .test(
            6400,
            7300,
            "e2e",
            test_run(
                "tests/e2e/test_chat.py",
                "test_two_users",
                TestOutcome::Passed,
                900,
            ),
        )
        .at(
            9000,
            Event::Suite(suite(
                "e2e",
                vec![
                    passed("tests.e2e.test_chat", "test_agent_answers", 1200),
                    passed("tests.e2e.test_chat", "test_two_users", 900),
                    Case::skipped("tests.e2e.test_chat", "test_restart", "destructive"),
                ],
                3890,
            )),
        )
        .finished(9000, Stage::Suites, 3890, StageOutcome::Passed)
}

/// [`docker_passing`]'s teardown: the services stop, the stack goes.
fn teardown_passing(b: Builder) -> Builder {
    b.started(9000, Stage::Teardown)
        .service(9010, "postgres", ContainerState::Stopping, 9010)
        .service(9010, "backend", ContainerState::Stopping, 9010)
        .service(
            9300,
            "backend",
            ContainerState::Died {
                exit_code: Some("0".into()),
            },
            9300,
        )
        .service(
            9400,
            "postgres",
            ContainerState::Died {
                exit_code: Some("0".into()),
            },
            9400,
        )
        .step(
            9500,
            Stage::Teardown,
            Check::passed(
                "stack down",
                ms(500),
                "4 containers, 1 network, 1 volume removed",
            ),
        )
        .finished(9500, Stage::Teardown, 500, StageOutcome::Passed)
}

pub fn no_engine_local() -> Record {
    preflight(Builder::new())
        .started(2, Stage::Engine)
        .step(
            20,
            Stage::Engine,
            Check::skipped(
                "engine available",
                "no engine (nothing answers at unix:///var/run/docker.sock); trying [fallback] order",
            ),
        )
        .finished(
            20,
            Stage::Engine,
            18,
            StageOutcome::Skipped("no engine: fell back to [fallback] order".into()),
        )
        .started(20, Stage::Target)
        .at(
            21,
            Event::Note("target staging not usable: STAGING_BACKEND_URL is not set".into()),
        )
        .at(
            30,
            Event::Progress {
                stage: Stage::Target,
                message: "waiting for local `auth` at http://127.0.0.1:18001/health".into(),
            },
        )
        .step(
            15900,
            Stage::Target,
            Check::passed("local auth ready", ms(15000), "http://127.0.0.1:18001/health answered"),
        )
        .step(
            16200,
            Stage::Target,
            Check::passed("local backend ready", ms(300), "http://127.0.0.1:18000/health answered"),
        )
        .property(16200, "target", "local")
        .finished(16200, Stage::Target, 16180, StageOutcome::Passed)
        .skipped(16200, Stage::Images, "not used on the local target")
        .skipped(16200, Stage::Stack, "not used on the local target")
        .started(16200, Stage::Ws)
        .step(
            16300,
            Stage::Ws,
            Check::passed("websocket events", ms(100), "5 events in order"),
        )
        .finished(16300, Stage::Ws, 100, StageOutcome::Passed)
        .started(16300, Stage::Suites)
        .at(
            20000,
            Event::Suite(suite(
                "mission_critical",
                vec![
                    passed("tests.mc.test_tokens", "test_token_is_a_jwt", 20),
                    Case::skipped(
                        "tests.mc.test_stack",
                        "test_postgres_container",
                        "marker docker: not run on the local target",
                    ),
                ],
                3700,
            )),
        )
        .finished(20000, Stage::Suites, 3700, StageOutcome::Passed)
        .started(20000, Stage::Teardown)
        .step(
            20100,
            Stage::Teardown,
            Check::passed("stop local processes", ms(100), "auth: stopped; backend: stopped"),
        )
        .finished(20100, Stage::Teardown, 100, StageOutcome::Passed)
        .done(20100, Verdict::Passed, 120)
}

pub fn failing_suite() -> Record {
    let failure = Status::Failed {
        message: "AssertionError: expected agent_completed, got error, then: s3cret".into(),
        output:
            "def test_agent_answers(ws):\n>       assert events == EXPECTED\nE       AssertionError"
                .into(),
    };
    preflight(Builder::new())
        .started(2, Stage::Engine)
        .step(
            40,
            Stage::Engine,
            Check::passed(
                "engine available",
                ms(38),
                "unix:///var/run/docker.sock 20.10.24",
            ),
        )
        .finished(600, Stage::Engine, 598, StageOutcome::Passed)
        .started(600, Stage::Target)
        .property(600, "target", "docker")
        .finished(600, Stage::Target, 0, StageOutcome::Passed)
        .started(600, Stage::Stack)
        .step(
            4000,
            Stage::Stack,
            Check::passed(
                "service backend healthy",
                ms(3300),
                "healthy 3.30s after start",
            ),
        )
        .finished(4000, Stage::Stack, 3400, StageOutcome::Passed)
        .started(4000, Stage::Ws)
        .step(
            4100,
            Stage::Ws,
            Check::failed(
                "websocket events",
                ms(100),
                "expected agent_completed, got error",
            ),
        )
        .finished(4100, Stage::Ws, 100, StageOutcome::Failed)
        .skipped(4100, Stage::Suites, "the WebSocket check failed")
        .test(
            2500,
            3300,
            "e2e",
            TestRun {
                message: Some(
                    "AssertionError: expected agent_completed, got error, then: s3cret".into(),
                ),
                line: Some(42),
                ..test_run(
                    "tests/e2e/test_chat.py",
                    "test_agent_answers, with commas",
                    TestOutcome::Failed,
                    800,
                )
            },
        )
        .at(
            4200,
            Event::Suite(suite(
                "e2e",
                vec![
                    Case::new(
                        "tests.e2e.test_chat",
                        "test_agent_answers, with commas",
                        failure,
                    )
                    .with_time(ms(800)),
                    passed("tests.e2e.test_chat", "test_two_users", 900),
                ],
                1700,
            )),
        )
        .started(4200, Stage::Teardown)
        .step(
            4700,
            Stage::Teardown,
            Check::passed("stack down", ms(500), "removed"),
        )
        .finished(4700, Stage::Teardown, 500, StageOutcome::Passed)
        .done(4700, Verdict::Failed, 90)
}

/// A docker run whose suite passed with a flaky test (failed once, passed on its retry) and a
/// quarantined one that failed.
pub fn flaky_and_quarantined() -> Record {
    let reset = Status::Error {
        message: "ConnectionResetError: peer went away\nmore".into(),
        output: "Traceback ...".into(),
    };
    let flaky = Case {
        reruns: vec![crate::junit::Rerun {
            status: reset,
            time: ms(300),
            system_out: None,
            system_err: None,
        }],
        ..passed("tests.e2e.test_chat", "test_reconnect", 400)
    };
    let quarantined = Case {
        quarantined: true,
        ..Case::new(
            "tests.e2e.test_chat",
            "test_known_bad",
            Status::Failed {
                message: "AssertionError: still broken".into(),
                output: String::new(),
            },
        )
        .with_time(ms(100))
    };
    preflight(Builder::new())
        .started(2, Stage::Engine)
        .finished(600, Stage::Engine, 598, StageOutcome::Passed)
        .started(600, Stage::Target)
        .property(600, "target", "docker")
        .finished(600, Stage::Target, 0, StageOutcome::Passed)
        .started(600, Stage::Suites)
        .at(
            1900,
            Event::Suite(suite(
                "e2e",
                vec![
                    flaky,
                    quarantined,
                    passed("tests.e2e.test_chat", "test_two_users", 900),
                ],
                1300,
            )),
        )
        .finished(1900, Stage::Suites, 1300, StageOutcome::Passed)
        .done(1900, Verdict::Passed, 60)
}

/// The addresses a machine without any engine tries, as discovery describes them.
const FIVE_ADDRESSES: &str = "5 addresses tried:
unix:///var/run/docker.sock (default): socket does not exist
unix:///root/.docker/run/docker.sock (Docker Desktop): socket does not exist
unix:///root/.docker/desktop/docker.sock (Docker Desktop): socket does not exist
unix:///root/.colima/default/docker.sock (colima): socket does not exist
unix:///run/user/0/podman/podman.sock (podman): socket does not exist";

/// No engine anywhere and none installed, in the order a real run sends its events: the engine
/// stage starts beside preflight and speaks before preflight's checks end; the run falls back to
/// the local target.
pub fn no_engine_overlapping() -> Record {
    Builder::new()
        .property(0, "run_id", "19a2b3c4d5e-4242")
        .started(1, Stage::Preflight)
        .started(2, Stage::Engine)
        .at(
            3,
            Event::Progress {
                stage: Stage::Engine,
                message: "looking for the engine: DOCKER_HOST is not set".into(),
            },
        )
        .step(
            1010,
            Stage::Preflight,
            Check::passed("memory", ms(1), "23.1 GiB available (need 8)"),
        )
        .step(
            1010,
            Stage::Preflight,
            Check::new(
                "engine",
                Outcome::Warned,
                ms(4),
                format!("no engine answers: {FIVE_ADDRESSES}"),
            )
            .with_remedy("install Docker Engine: apt-get install docker.io"),
        )
        .step(
            1010,
            Stage::Preflight,
            Check::passed("python", ms(90), "Python 3.11.7 (python3)"),
        )
        .finished(1011, Stage::Preflight, 1010, StageOutcome::Passed)
        .step(
            1020,
            Stage::Engine,
            Check::skipped(
                "engine available",
                format!(
                    "no Docker engine is installed ({FIVE_ADDRESSES}); trying [fallback] order"
                ),
            ),
        )
        .finished(
            1020,
            Stage::Engine,
            1018,
            StageOutcome::Skipped("no engine: fell back to [fallback] order".into()),
        )
        .started(1020, Stage::Target)
        .step(
            1400,
            Stage::Target,
            Check::passed(
                "local backend ready",
                ms(300),
                "http://127.0.0.1:18000/health answered",
            ),
        )
        .property(1400, "target", "local")
        .finished(1400, Stage::Target, 380, StageOutcome::Passed)
        .started(1400, Stage::Suites)
        .at(
            2400,
            Event::Suite(suite(
                "e2e",
                vec![passed("tests.e2e.test_chat", "test_two_users", 900)],
                1000,
            )),
        )
        .finished(2400, Stage::Suites, 1000, StageOutcome::Passed)
        .done(2400, Verdict::Passed, 80)
}

/// A compose file that compose itself refuses: preflight warns with compose's own lines, the
/// stack stage fails with them, and nothing runs after it.
pub fn broken_compose() -> Record {
    let compose_error = "`docker-compose -f services/compose.yaml config` exited with 1:
ERROR: The Compose file './services/compose.yaml' is invalid because:
services.web.ports contains an invalid type, it should be an array";
    Builder::new()
        .started(0, Stage::Preflight)
        .step(
            900,
            Stage::Preflight,
            Check::new("compose", Outcome::Warned, ms(160), compose_error),
        )
        .finished(901, Stage::Preflight, 900, StageOutcome::Passed)
        .started(901, Stage::Engine)
        .step(
            940,
            Stage::Engine,
            Check::passed(
                "engine available",
                ms(38),
                "unix:///var/run/docker.sock 20.10.24",
            ),
        )
        .finished(940, Stage::Engine, 39, StageOutcome::Passed)
        .started(940, Stage::Stack)
        .step(
            1200,
            Stage::Stack,
            Check::failed(
                "compose up",
                ms(260),
                format!("cannot read the stack: {compose_error}"),
            ),
        )
        .finished(1200, Stage::Stack, 260, StageOutcome::Failed)
        .skipped(1200, Stage::Suites, "the stack did not come up")
        .started(1200, Stage::Teardown)
        .step(
            1300,
            Stage::Teardown,
            Check::passed("stack down", ms(100), "nothing was created"),
        )
        .finished(1300, Stage::Teardown, 100, StageOutcome::Passed)
        .done(1300, Verdict::Failed, 40)
}
