//! The JUnit report: every status kind, hostile output, the Jenkins schema (with xmllint), a
//! second reader (Python's xml.etree), merging, atomic writes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use stackgate::junit::{self, Case, Report, Status, SuiteResult};
use stackgate::report::{Check, Outcome};

fn xsd() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/junit-10.xsd")
}

/// Validates with `xmllint` (from [`crate::require::xmllint`]) against the schema; panics with
/// xmllint's complaint.
fn assert_schema_valid(xmllint: &Path, path: &Path) {
    let output = Command::new(xmllint)
        .arg("--noout")
        .arg("--schema")
        .arg(xsd())
        .arg(path)
        .output()
        .expect("xmllint runs");
    assert!(
        output.status.success(),
        "{} is not valid against the JUnit schema:\n{}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Reads the file with Python's xml.etree (`python3` from [`crate::require::python`]) and returns
/// (suites, cases, failures, errors, skipped) as counted by that reader.
fn python_counts(python: &Path, path: &Path) -> (usize, usize, usize, usize, usize) {
    let script = r#"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = root.findall("testsuite")
cases = root.findall("testsuite/testcase")
count = lambda tag: sum(1 for c in cases if c.find(tag) is not None)
print(len(suites), len(cases), count("failure"), count("error"), count("skipped"))
"#;
    let output = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "python cannot read {}:\n{}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let numbers: Vec<usize> = String::from_utf8(output.stdout)
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    (numbers[0], numbers[1], numbers[2], numbers[3], numbers[4])
}

fn every_kind() -> Report {
    let mut suite = SuiteResult::new("mission_critical");
    suite.duration = Duration::from_millis(1500);
    suite.cases = vec![
        Case::new("tests.test_a", "test_ok", Status::Passed).with_time(Duration::from_millis(12)),
        Case::new(
            "tests.test_a",
            "test_fails",
            Status::Failed {
                message: "assert 1 == 2".into(),
                output: "Traceback ...\nAssertionError".into(),
            },
        ),
        Case::new(
            "tests.test_a",
            "test_breaks",
            Status::Error {
                message: "fixture failed".into(),
                output: "ConnectionRefusedError".into(),
            },
        ),
        Case::skipped("tests.test_a", "test_docker", "needs docker"),
    ];
    let mut empty = SuiteResult::new("e2e");
    empty.error = Some("no tests collected (pytest exit code 5)".into());
    empty.output = Some("collected 0 items".into());
    Report {
        name: "mission-critical".into(),
        properties: vec![
            ("target".into(), "docker".into()),
            ("run id".into(), "abc-1".into()),
            ("interrupted".into(), "false".into()),
        ],
        harness: vec![
            Check::passed("engine available", Duration::from_millis(40), "20.10.24"),
            Check::new("memory", Outcome::Warned, Duration::ZERO, "6 GiB < 8 GiB"),
            Check::failed(
                "backend healthy",
                Duration::from_secs(60),
                "not healthy in 60s",
            )
            .with_output("log line 1\nlog line 2")
            .with_remedy("docker logs backend"),
            Check::skipped("websocket events", "backend healthy failed"),
        ],
        suites: vec![suite, empty],
        secrets: vec![],
        ..Report::default()
    }
}

#[test]
fn every_status_kind_is_schema_valid_and_readable() {
    let Some(xmllint) = crate::require::xmllint() else {
        return;
    };
    let Some(python) = crate::require::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junit.xml");
    let report = every_kind();
    junit::write(&report, &path).unwrap();
    assert_schema_valid(&xmllint, &path);
    assert!(junit::validate_xsd(&path).unwrap());
    // 4 harness + 4 suite cases + 1 error case for the empty suite.
    assert_eq!(python_counts(&python, &path), (3, 9, 2, 2, 2));
    let counts = report.counts();
    assert_eq!(
        (counts.tests, counts.failures, counts.errors, counts.skipped),
        (9, 2, 2, 2)
    );

    let cases = junit::parse_cases(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let by_name = |name: &str| cases.iter().find(|c| c.name == name).unwrap().clone();
    assert_eq!(
        by_name("backend healthy").status,
        Status::Failed {
            message: "not healthy in 60s".into(),
            output: "log line 1\nlog line 2\nhint: docker logs backend".into()
        }
    );
    assert_eq!(
        by_name("websocket events").status,
        Status::Skipped {
            reason: "backend healthy failed".into()
        }
    );
    assert_eq!(by_name("memory").status, Status::Passed);
    assert_eq!(
        by_name("memory").system_out.as_deref(),
        Some("warning: 6 GiB < 8 GiB")
    );
    assert_eq!(
        by_name("e2e").status,
        Status::Error {
            message: "no tests collected (pytest exit code 5)".into(),
            output: "collected 0 items".into()
        }
    );
    assert_eq!(by_name("test_fails").classname, "tests.test_a");
}

#[test]
fn rendered_xml_of_a_small_report() {
    let report = Report {
        name: "gate".into(),
        properties: vec![("target".into(), "local".into())],
        harness: vec![Check::skipped("engine available", "no engine")],
        suites: vec![SuiteResult {
            name: "s".into(),
            cases: vec![Case::new("m", "t", Status::Passed).with_time(Duration::from_millis(5))],
            duration: Duration::from_millis(250),
            ..SuiteResult::default()
        }],
        secrets: vec![],
        time: Some(Duration::from_millis(1500)),
        started: Some(std::time::UNIX_EPOCH + Duration::from_millis(1_795_763_858_123)),
        hostname: Some("ci-7".into()),
        ..Report::default()
    };
    // The root's time is the run's wall time; each suite says when and where it ran.
    let expected = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="gate" tests="2" failures="0" errors="0" time="1.500">
    <testsuite name="harness" tests="1" skipped="1" errors="0" failures="0" time="0.000" timestamp="2026-11-27T07:17:38.123Z" hostname="ci-7">
        <properties>
            <property name="target" value="local"/>
        </properties>
        <testcase name="engine available" classname="harness" time="0.000">
            <skipped message="no engine"/>
        </testcase>
    </testsuite>
    <testsuite name="s" tests="1" skipped="0" errors="0" failures="0" time="0.250" hostname="ci-7">
        <testcase name="t" classname="m" time="0.005"/>
    </testsuite>
</testsuites>
"#;
    assert_eq!(junit::render(&report).unwrap(), expected);
}

#[test]
fn hostile_output_stays_valid() {
    let Some(xmllint) = crate::require::xmllint() else {
        return;
    };
    let Some(python) = crate::require::python() else {
        return;
    };
    let mut hostile = Vec::new();
    hostile.extend_from_slice(b"\x1b[1;31mRED\x1b[0m before NUL\0after ");
    hostile.extend_from_slice(b"bad utf8 \xff\xfe\xc3 ]]> <tag> & \"quote\" \x07\x08\x0b\x0c ");
    hostile.extend_from_slice("token=s3cr3t-TOKEN ".as_bytes());
    let mut huge = Vec::with_capacity(10 * 1024 * 1024 + 100);
    while huge.len() < 10 * 1024 * 1024 {
        huge.extend_from_slice(b"\x1b[32mnoise\x1b[0m line\0\n");
    }
    huge.extend_from_slice(b"THE END ]]>");
    let hostile = junit::lossy(&hostile);
    let huge = junit::lossy(&huge);

    let mut suite = SuiteResult::new("hostile ]]> \u{1b}[31msuite");
    suite.cases = vec![
        Case::new(
            "c",
            "fails with \0 in name ]]>",
            Status::Failed {
                message: hostile.clone(),
                output: hostile.clone(),
            },
        ),
        Case::new(
            "c",
            "ten megabytes",
            Status::Error {
                message: "huge".into(),
                output: huge.clone(),
            },
        ),
        Case {
            system_out: Some(huge.clone()),
            system_err: Some(hostile.clone()),
            ..Case::new("c", "passes noisily", Status::Passed)
        },
        Case::skipped("c", "skipped", hostile.clone()),
    ];
    suite.error = Some(format!("timed out after 5s {hostile}"));
    suite.output = Some(huge.clone());
    let report = Report {
        name: "hostile".into(),
        properties: vec![("secret".into(), "s3cr3t-TOKEN".into())],
        harness: vec![Check::failed("step", Duration::ZERO, hostile.clone()).with_output(huge)],
        suites: vec![suite],
        secrets: vec!["s3cr3t-TOKEN".into()],
        ..Report::default()
    };

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junit.xml");
    junit::write(&report, &path).unwrap();
    let xml = std::fs::read_to_string(&path).unwrap();
    assert!(
        xml.len() < 2 * 1024 * 1024,
        "outputs are bounded, got {}",
        xml.len()
    );
    assert!(!xml.contains("s3cr3t-TOKEN"), "the secret leaked");
    assert!(xml.contains("[redacted]"));
    assert!(!xml.contains('\u{1b}'));
    assert!(!xml.contains('\0'));
    assert!(xml.contains("THE END ]]&gt;"), "the tail is kept");
    assert!(xml.contains("[output cut: the first "));
    assert_schema_valid(&xmllint, &path);
    assert_eq!(python_counts(&python, &path), (2, 6, 2, 2, 1));
    let cases = junit::parse_cases(&xml).unwrap();
    assert_eq!(cases.len(), 6);
    assert!(cases
        .iter()
        .any(|c| c.name == "fails with  in name ]]>" && matches!(c.status, Status::Failed { .. })));
}

#[test]
fn pytest_and_nextest_files_parse_into_cases() {
    // As pytest 9 writes it (xunit2): the report-level counts are not given.
    let pytest = r#"<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="4" time="0.050" timestamp="2026-11-27T08:30:00.123456+00:00" hostname="h"><testcase classname="test_a" name="test_ok" time="0.001" /><testcase classname="test_a" name="test_bad" time="0.002"><failure message="assert 1 == 2">def test_bad():
&gt;       assert 1 == 2</failure><system-out>printed</system-out></testcase><testcase classname="test_a" name="test_skip" time="0.000"><skipped type="pytest.skip" message="not today">test_a.py:9: not today</skipped></testcase><testcase classname="" name="test_b" time="0.000"><error message="collection failure">ImportError</error></testcase></testsuite></testsuites>"#;
    let cases = junit::parse_cases(pytest).unwrap();
    assert_eq!(cases.len(), 4);
    assert_eq!(cases[0].status, Status::Passed);
    assert_eq!(
        cases[1].status,
        Status::Failed {
            message: "assert 1 == 2".into(),
            output: "def test_bad():\n>       assert 1 == 2".into()
        }
    );
    assert_eq!(cases[1].system_out.as_deref(), Some("printed"));
    assert_eq!(
        cases[2].status,
        Status::Skipped {
            reason: "not today".into()
        }
    );
    assert!(matches!(cases[3].status, Status::Error { .. }));

    let nextest = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="2" failures="1" errors="0" uuid="1e6f4a5c-9d6f-4e2a-8c8c-6f1f0e0a8b1d" timestamp="2026-11-27T08:30:00.000+00:00" time="0.010">
    <testsuite name="fixture" tests="2" disabled="0" errors="0" failures="1">
        <testcase name="tests::passes" classname="fixture" timestamp="2026-11-27T08:30:00.000+00:00" time="0.001">
        </testcase>
        <testcase name="tests::fails" classname="fixture" timestamp="2026-11-27T08:30:00.000+00:00" time="0.002">
            <failure type="test failure with exit code 101">thread panicked</failure>
        </testcase>
    </testsuite>
</testsuites>"#;
    let cases = junit::parse_cases(nextest).unwrap();
    assert_eq!(cases.len(), 2);
    assert_eq!(cases[0].name, "tests::passes");
    assert_eq!(
        cases[1].status,
        Status::Failed {
            message: "test failure with exit code 101".into(),
            output: "thread panicked".into()
        }
    );
}

#[test]
fn merge_of_two_shards_sums_counts_and_names_each_shards_harness_cases() {
    let Some(xmllint) = crate::require::xmllint() else {
        return;
    };
    let Some(python) = crate::require::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let shard = |index: usize, property: &str, status: Status| Report {
        name: "mission-critical".into(),
        properties: vec![
            ("shard".into(), property.into()),
            ("interrupted".into(), "false".into()),
        ],
        harness: vec![Check::passed("engine available", Duration::ZERO, "")],
        suites: vec![SuiteResult {
            name: "e2e".into(),
            cases: vec![
                Case::new("t", format!("test_{index}_a"), Status::Passed),
                Case::new("t", format!("test_{index}_b"), status),
            ],
            ..SuiteResult::default()
        }],
        secrets: vec![],
        ..Report::default()
    };
    let first = dir.path().join("one.xml");
    let second = dir.path().join("two.xml");
    junit::write(&shard(1, "1/2", Status::Passed), &first).unwrap();
    junit::write(
        &shard(
            2,
            "2/2",
            Status::Skipped {
                reason: "why".into(),
            },
        ),
        &second,
    )
    .unwrap();
    let merged = dir.path().join("merged.xml");

    // Through the command, as CI calls it.
    let output = crate::support::stackgate()
        .arg("junit-merge")
        .arg("-o")
        .arg(&merged)
        .arg(&first)
        .arg(&second)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("6 tests, 0 failures"));
    assert_schema_valid(&xmllint, &merged);
    // One harness suite and one e2e suite, each holding both shards' cases.
    assert_eq!(python_counts(&python, &merged), (2, 6, 0, 0, 1));
    let xml = std::fs::read_to_string(&merged).unwrap();
    assert!(
        xml.contains(r#"<property name="shard" value="1/2, 2/2"/>"#),
        "{xml}"
    );
    assert!(xml.contains(r#"<property name="interrupted" value="false"/>"#));
    assert!(
        xml.contains(r#"tests="6" failures="0" errors="0""#),
        "{xml}"
    );
    let suites = junit::parse_suites(&xml).unwrap();
    let harness: Vec<&str> = suites[0].cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        harness,
        ["shard 1/2: engine available", "shard 2/2: engine available"]
    );
    let names: Vec<&str> = suites[1].cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["test_1_a", "test_1_b", "test_2_a", "test_2_b"]);

    // An interrupted shard makes the merged report interrupted (and the merge fail), whichever
    // input it is; --json says so in one object.
    let mut interrupted = shard(2, "2/2", Status::Passed);
    interrupted.properties[1].1 = "true".into();
    let third = dir.path().join("three.xml");
    junit::write(&interrupted, &third).unwrap();
    let output = crate::support::stackgate()
        .args(["junit-merge", "--json", "-o"])
        .arg(&merged)
        .arg(&first)
        .arg(&third)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["passed"], false, "{json}");
    assert_eq!(json["interrupted"], true, "{json}");
    assert!(std::fs::read_to_string(&merged)
        .unwrap()
        .contains(r#"<property name="interrupted" value="true"/>"#));

    // A failing shard makes the merge exit 1, after writing the file.
    junit::write(
        &shard(
            3,
            "x",
            Status::Failed {
                message: "m".into(),
                output: String::new(),
            },
        ),
        &second,
    )
    .unwrap();
    let status = crate::support::stackgate()
        .args(["junit-merge", "-o"])
        .arg(&merged)
        .arg(&first)
        .arg(&second)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    assert_eq!(python_counts(&python, &merged), (2, 6, 1, 0, 0));

    // An input that is missing or not JUnit is a usage error, and names the file.
    let not_junit = dir.path().join("not-junit.xml");
    std::fs::write(&not_junit, "<html></html>").unwrap();
    for bad in [dir.path().join("missing.xml"), not_junit] {
        let output = crate::support::stackgate()
            .args(["junit-merge", "-o"])
            .arg(dir.path().join("never.xml"))
            .arg(&first)
            .arg(&bad)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&*bad.to_string_lossy()), "{stderr}");
        assert!(!dir.path().join("never.xml").exists());
    }
}

#[test]
fn write_is_atomic_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reports/junit.xml");
    junit::write(&every_kind(), &path).unwrap();
    let first = std::fs::read_to_string(&path).unwrap();
    let mut second = every_kind();
    second.name = "second".into();
    junit::write(&second, &path).unwrap();
    let entries: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, ["junit.xml"]);
    assert_ne!(std::fs::read_to_string(&path).unwrap(), first);
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains(r#"<testsuites name="second""#));
}

/// A flaky test (failed, then passed) and one that failed on every attempt, as `--retries` leaves
/// them: `<flakyFailure>` and `<rerunFailure>`, valid against the schema, read back with their
/// attempts, and kept by `junit-merge`.
#[test]
fn retried_tests_carry_their_earlier_failures_through_render_parse_and_merge() {
    let Some(xmllint) = crate::require::xmllint() else {
        return;
    };
    let failure = |message: &str| Status::Failed {
        message: message.into(),
        output: format!("{message}: traceback"),
    };
    let earlier = |message: &str| junit::Rerun {
        status: failure(message),
        time: Duration::from_millis(20),
        system_out: Some("captured".into()),
        system_err: None,
    };
    let flaky = Case {
        reruns: vec![earlier("first attempt")],
        ..Case::new("t", "test_flaky", Status::Passed)
    };
    let hopeless = Case {
        reruns: vec![earlier("attempt 1"), earlier("attempt 2")],
        ..Case::new("t", "test_broken", failure("attempt 3"))
    };
    let steady = Case::new("t", "test_steady", Status::Passed);
    assert!(flaky.flaky() && !hopeless.flaky() && !steady.flaky());
    assert_eq!((flaky.attempts(), hopeless.attempts()), (2, 3));
    let report = Report {
        name: "mission-critical".into(),
        suites: vec![SuiteResult {
            name: "e2e".into(),
            cases: vec![flaky, hopeless, steady],
            ..SuiteResult::default()
        }],
        ..Report::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junit.xml");
    junit::write(&report, &path).unwrap();
    assert_schema_valid(&xmllint, &path);
    let xml = std::fs::read_to_string(&path).unwrap();
    assert_eq!(xml.matches("<flakyFailure").count(), 1, "{xml}");
    assert_eq!(xml.matches("<rerunFailure").count(), 2, "{xml}");
    // A flaky test is a pass: one failure in the counts, the hopeless one.
    assert!(xml.contains(r#"failures="1""#), "{xml}");

    let read = |xml: &str| {
        junit::parse_cases(xml)
            .unwrap()
            .into_iter()
            .filter(|c| c.classname == "t")
            .map(|c| (c.name.clone(), c.attempts(), c.flaky()))
            .collect::<Vec<_>>()
    };
    let expected = vec![
        ("test_flaky".to_owned(), 2, true),
        ("test_broken".to_owned(), 3, false),
        ("test_steady".to_owned(), 1, false),
    ];
    assert_eq!(read(&xml), expected);
    let case = &junit::parse_cases(&xml).unwrap()[0];
    assert_eq!(
        case.reruns[0].status,
        failure("first attempt"),
        "the earlier failure keeps its message and output"
    );

    let merged = dir.path().join("merged.xml");
    let output = crate::support::stackgate()
        .arg("junit-merge")
        .arg("-o")
        .arg(&merged)
        .arg(&path)
        .output()
        .unwrap();
    // The hopeless test still fails the merged report; the flaky one does not.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        crate::support::explain(&output)
    );
    assert!(stderr.contains("1 failures"), "{stderr}");
    assert_schema_valid(&xmllint, &merged);
    assert_eq!(read(&std::fs::read_to_string(&merged).unwrap()), expected);
}
