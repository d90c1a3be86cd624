//! The JUnit report: the model the gate fills, sanitising and redacting every text, writing it
//! atomically, reading the JUnit files of pytest and nextest, merging files (`junit-merge`).
//! Running the suites lives in `suites`; this module does no process work except `xmllint`.
//!
//! # CONTRACT (what the gate relies on)
//!
//! ```text
//! pub struct Report { name, properties: Vec<(String, String)>, harness: Vec<report::Check>,
//!                     suites: Vec<SuiteResult>, secrets: Vec<String>, time: Option<Duration>,
//!                     harness_time: Option<Duration>, started: Option<SystemTime>,
//!                     hostname: Option<String> }
//! pub struct SuiteResult { name, cases: Vec<Case>, duration, error: Option<String>,
//!                          output: Option<String>, interrupted: bool, started: Option<SystemTime> }
//! pub struct Case { classname, name, time, status: Status, system_out, system_err,
//!                   reruns: Vec<Rerun>, quarantined: bool }   // attempts(), flaky()
//! pub struct Rerun { status: Status, time, system_out, system_err }  // an earlier attempt that failed
//! pub enum Status { Passed, Failed { message, output }, Error { message, output }, Skipped { reason } }
//! pub type CaseStatus = Status;
//! pub struct Counts { tests, failures, errors, skipped }
//!
//! pub fn render(report: &Report) -> anyhow::Result<String>        // the XML, sanitised and redacted
//! pub fn write(report: &Report, path: &Path) -> anyhow::Result<()> // render + state::write_atomic
//! pub fn redact(text: &str, secrets: &[String]) -> String
//! pub fn sanitize(text: &str) -> String      // ANSI escapes and XML-invalid characters removed
//! pub fn lossy(bytes: &[u8]) -> String       // invalid UTF-8 replaced (process output is bytes)
//! pub fn keep_tail(text: &str, limit: usize) -> String
//! pub fn parse_cases(xml: &str) -> anyhow::Result<Vec<Case>>   // pytest --junitxml, nextest junit
//! pub fn merge(inputs: &[PathBuf], output: &Path) -> anyhow::Result<Merged>
//! pub fn validate_xsd(path: &Path) -> anyhow::Result<bool>     // false: xmllint not installed
//! ```
//!
//! Layout of the file: one `<testsuites name=...>` holding first the `harness` suite (the gate's
//! own steps as cases, `Report::properties` as its properties), then one `<testsuite>` per
//! [`SuiteResult`]. A suite that could not run as it should (collection failed, timed out, exit
//! code 5) gets an `error` case named after the suite, so that it never reads as a silent pass.
//! The root element carries only the attributes the Jenkins schema allows (no `skipped`); its
//! `time` is the run's wall time. Each `<testsuite>` has its wall `time`, its start as
//! `timestamp` (UTC) and the `hostname` it ran on. No `file` or `line` on a testcase (the schema
//! has none): those go to the GitHub annotations and the HTML report.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};

use crate::report::{Check, Outcome};

/// The Jenkins JUnit schema (xunit plugin, MIT licence) the report is checked against.
pub const JUNIT_XSD: &str = include_str!("junit-10.xsd");

/// Longest output body kept per case; longer output keeps its tail (where the error usually is).
pub const OUTPUT_LIMIT: usize = 64 * 1024;
/// Longest `message` attribute kept; longer ones keep their head.
pub const MESSAGE_LIMIT: usize = 2 * 1024;
/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// The whole report: the gate's own steps and every suite's results.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `<testsuites name=...>`, e.g. `mission-critical`.
    pub name: String,
    /// Properties of the `harness` suite: target, engine version, compose flavour, run id, git
    /// commit, interrupted.
    pub properties: Vec<(String, String)>,
    /// The gate's own steps, in order; they become the `harness` suite.
    pub harness: Vec<Check>,
    pub suites: Vec<SuiteResult>,
    /// Replaced by `[redacted]` in every text written (names, messages, outputs, properties).
    pub secrets: Vec<String>,
    /// The run's wall time (the root's `time`); the sum of the suites' when absent.
    pub time: Option<Duration>,
    /// The `harness` suite's wall time (its steps overlap); the sum of its steps' when absent.
    pub harness_time: Option<Duration>,
    /// When the run began (the `harness` suite's `timestamp`).
    pub started: Option<SystemTime>,
    /// The machine it ran on (each suite's `hostname`).
    pub hostname: Option<String>,
}

/// One suite's results, as the runners in `suites` produce them.
#[derive(Debug, Clone, Default)]
pub struct SuiteResult {
    pub name: String,
    pub cases: Vec<Case>,
    pub duration: Duration,
    /// Why the suite as a whole did not run as it should (collection failed, timed out, no tests,
    /// runner exit code); rendered as an `error` case named after the suite.
    pub error: Option<String>,
    /// Tail of the runner's own output (stdout and stderr); the body of the `error` case, and the
    /// suite's `system-out` when something failed.
    pub output: Option<String>,
    /// The run was interrupted (Ctrl-C, SIGTERM) while this suite ran.
    pub interrupted: bool,
    /// When it started (its `timestamp`).
    pub started: Option<SystemTime>,
    /// The runner's own id of each case (`classname::name` → pytest's node id): what a retry
    /// selects it by.
    pub ids: std::collections::BTreeMap<String, String>,
}

/// One test case.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub classname: String,
    pub name: String,
    pub time: Duration,
    pub status: Status,
    pub system_out: Option<String>,
    pub system_err: Option<String>,
    /// Its earlier attempts that failed, first first (`--retries`, `[[suite]] retries`; nextest's
    /// own retries). With a passing `status` the test is flaky (`<flakyFailure>`), with a failing
    /// one it failed every time (`<rerunFailure>`), as Maven Surefire and nextest write them.
    pub reruns: Vec<Rerun>,
    /// Named by its suite's `quarantine`: reported as it ended, but its failure does not fail the
    /// gate ([`SuiteResult::passed`]).
    pub quarantined: bool,
}

/// An earlier attempt of a test that was run again because it failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Rerun {
    /// [`Status::Failed`] or [`Status::Error`].
    pub status: Status,
    pub time: Duration,
    pub system_out: Option<String>,
    pub system_err: Option<String>,
}

/// The name the gate uses for [`Status`].
pub type CaseStatus = Status;

#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Passed,
    /// The test ran and an assertion failed.
    Failed {
        message: String,
        output: String,
    },
    /// The test (or its setup, or its collection) broke.
    Error {
        message: String,
        output: String,
    },
    Skipped {
        reason: String,
    },
}

/// Case counts, as the root and each suite element carry them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub tests: usize,
    pub failures: usize,
    pub errors: usize,
    pub skipped: usize,
}

impl Counts {
    pub fn passed(&self) -> usize {
        self.tests - self.failures - self.errors - self.skipped
    }
    fn add(&mut self, status: &Status) {
        self.tests += 1;
        match status {
            Status::Passed => {}
            Status::Failed { .. } => self.failures += 1,
            Status::Error { .. } => self.errors += 1,
            Status::Skipped { .. } => self.skipped += 1,
        }
    }
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        self.tests += other.tests;
        self.failures += other.failures;
        self.errors += other.errors;
        self.skipped += other.skipped;
    }
}

impl Case {
    pub fn new(classname: impl Into<String>, name: impl Into<String>, status: Status) -> Case {
        Case {
            classname: classname.into(),
            name: name.into(),
            time: Duration::ZERO,
            status,
            system_out: None,
            system_err: None,
            reruns: Vec::new(),
            quarantined: false,
        }
    }
    pub fn skipped(
        classname: impl Into<String>,
        name: impl Into<String>,
        reason: impl Into<String>,
    ) -> Case {
        Case::new(
            classname,
            name,
            Status::Skipped {
                reason: reason.into(),
            },
        )
    }
    pub fn with_time(mut self, time: Duration) -> Case {
        self.time = time;
        self
    }

    /// How many times it ran: once, plus once per [`Rerun`].
    pub fn attempts(&self) -> u32 {
        1 + self.reruns.len() as u32
    }

    /// It passed in the end after failing before.
    pub fn flaky(&self) -> bool {
        self.status == Status::Passed && !self.reruns.is_empty()
    }

    /// It failed or broke (its last attempt).
    pub fn failing(&self) -> bool {
        matches!(self.status, Status::Failed { .. } | Status::Error { .. })
    }

    /// This attempt as an earlier one, when it failed: what a retry keeps of it.
    pub fn as_rerun(&self) -> Option<Rerun> {
        self.failing().then(|| Rerun {
            status: self.status.clone(),
            time: self.time,
            system_out: self.system_out.clone(),
            system_err: self.system_err.clone(),
        })
    }
}

impl SuiteResult {
    pub fn new(name: impl Into<String>) -> SuiteResult {
        SuiteResult {
            name: name.into(),
            ..SuiteResult::default()
        }
    }

    /// The cases as rendered: the suite's own, plus the `error` case for [`SuiteResult::error`]
    /// (or for an interruption that left no error).
    pub fn rendered_cases(&self) -> Vec<Case> {
        let mut cases = self.cases.clone();
        let problem = match (&self.error, self.interrupted) {
            (Some(error), _) => Some(error.clone()),
            (None, true) => Some("interrupted before the suite finished".to_owned()),
            (None, false) => None,
        };
        if let Some(message) = problem {
            cases.push(Case {
                classname: self.name.clone(),
                name: self.name.clone(),
                time: self.duration,
                status: Status::Error {
                    message,
                    output: self.output.clone().unwrap_or_default(),
                },
                system_out: None,
                system_err: None,
                reruns: Vec::new(),
                quarantined: false,
            });
        }
        cases
    }

    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for case in self.rendered_cases() {
            counts.add(&case.status);
        }
        counts
    }

    /// No failure, no error, not interrupted (skips are fine). A quarantined test's failure
    /// does not count; the suite's own error (it could not run as it should) always does.
    pub fn passed(&self) -> bool {
        self.error.is_none()
            && !self.interrupted
            && !self.cases.iter().any(|c| c.failing() && !c.quarantined)
    }

    /// Its tests that passed only after failing.
    pub fn flaky(&self) -> impl Iterator<Item = &Case> {
        self.cases.iter().filter(|c| c.flaky())
    }
}

impl Report {
    /// Counts over the harness suite and every suite.
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for check in &self.harness {
            counts.add(&check_case(check).status);
        }
        for suite in &self.suites {
            counts += suite.counts();
        }
        counts
    }
}

/// A gate step as a case of the `harness` suite.
pub fn check_case(check: &Check) -> Case {
    let detail = check.detail.clone();
    let (status, system_out) = match check.outcome {
        Outcome::Passed => (Status::Passed, Some(detail).filter(|d| !d.is_empty())),
        Outcome::Warned => {
            let mut note = format!("warning: {detail}");
            if let Some(remedy) = &check.remedy {
                note.push_str(&format!("\nhint: {remedy}"));
            }
            (Status::Passed, Some(note))
        }
        Outcome::Failed => {
            let mut output = check.output.clone().unwrap_or_default();
            if let Some(remedy) = &check.remedy {
                if !output.is_empty() && !output.ends_with('\n') {
                    output.push('\n');
                }
                output.push_str(&format!("hint: {remedy}"));
            }
            let status = if check.errored {
                Status::Error {
                    message: detail,
                    output,
                }
            } else {
                Status::Failed {
                    message: detail,
                    output,
                }
            };
            (status, None)
        }
        Outcome::Skipped => (Status::Skipped { reason: detail }, None),
    };
    Case {
        classname: "harness".to_owned(),
        name: check.name.clone(),
        time: check.duration,
        status,
        system_out,
        system_err: None,
        reruns: Vec::new(),
        quarantined: false,
    }
}

// ---------------------------------------------------------------------------------------------
// Text hygiene.

/// Lossy UTF-8 decoding: process output is bytes, and may not be UTF-8 at all.
pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Removes ANSI escape sequences (CSI, OSC and two-byte escapes) and every character XML 1.0
/// does not allow (NUL and the other C0 controls but tab, newline and carriage return; U+FFFE,
/// U+FFFF). `]]>` needs nothing here: text is escaped when written, never put in CDATA.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            match chars.next() {
                // CSI: parameters and intermediates, then one final byte in @..~.
                Some('[') => {
                    for next in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&next) {
                            break;
                        }
                    }
                }
                // OSC (and DCS, PM, APC, SOS): up to BEL or ESC \.
                Some(']' | 'P' | '^' | '_' | 'X') => {
                    while let Some(next) = chars.next() {
                        if next == '\u{7}' {
                            break;
                        }
                        if next == '\u{1b}' && chars.peek() == Some(&'\\') {
                            chars.next();
                            break;
                        }
                    }
                }
                // Two-byte escapes (ESC 7, ESC c, charset selection ESC ( B ...).
                Some('(' | ')' | '*' | '+') => {
                    chars.next();
                }
                Some(_) | None => {}
            }
            continue;
        }
        if xml_char_allowed(c) {
            out.push(c);
        }
    }
    out
}

fn xml_char_allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r')
        || ('\u{20}'..='\u{d7ff}').contains(&c)
        || ('\u{e000}'..='\u{fffd}').contains(&c)
        || c >= '\u{10000}'
}

/// Replaces every occurrence of every non-empty secret by `[redacted]`, longest secret first (so
/// that a secret containing another is replaced whole).
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut secrets: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_owned();
    for secret in secrets {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), REDACTED);
        }
    }
    out
}

/// Keeps the last `limit` bytes of `text` (on a character boundary), saying how much was cut.
pub fn keep_tail(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut start = text.len() - limit;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!(
        "[output cut: the first {} of {} bytes were dropped, the last {} are kept]\n{}",
        start,
        text.len(),
        text.len() - start,
        &text[start..]
    )
}

/// Keeps the first `limit` bytes of `text` (on a character boundary), saying it was cut.
fn keep_head(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} [cut: {} bytes in all]", &text[..end], text.len())
}

struct Cleaner<'a> {
    secrets: &'a [String],
}

impl Cleaner<'_> {
    /// Names, classnames, property values: sanitised, redacted, bounded by the message limit.
    fn short(&self, text: &str) -> String {
        keep_head(&redact(&sanitize(text), self.secrets), MESSAGE_LIMIT)
    }
    /// Output bodies: sanitised, redacted, the tail kept.
    fn long(&self, text: &str) -> String {
        keep_tail(&redact(&sanitize(text), self.secrets), OUTPUT_LIMIT)
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering and writing.

/// Renders the report as JUnit XML (sanitised, redacted, bounded).
pub fn render(report: &Report) -> anyhow::Result<String> {
    let clean = Cleaner {
        secrets: &report.secrets,
    };
    let mut junit = quick_junit::Report::new(clean.short(&report.name));

    let mut harness = TestSuite::new("harness");
    for (name, value) in &report.properties {
        harness.add_property((clean.short(name), clean.short(value)));
    }
    harness.set_time(
        report
            .harness_time
            .unwrap_or_else(|| report.harness.iter().map(|c| c.duration).sum()),
    );
    stamp(&mut harness, report.started, report.hostname.as_deref());
    harness.add_test_cases(
        report
            .harness
            .iter()
            .map(|c| to_junit_case(&check_case(c), &clean)),
    );
    junit.add_test_suite(harness);

    for suite in &report.suites {
        let mut rendered = to_junit_suite(suite, &clean);
        stamp(&mut rendered, suite.started, report.hostname.as_deref());
        junit.add_test_suite(rendered);
    }
    junit.set_time(
        report
            .time
            .unwrap_or_else(|| report.suites.iter().map(|s| s.duration).sum()),
    );
    let xml = junit
        .to_string()
        .context("cannot render the JUnit report")?;
    Ok(schema_root(xml))
}

/// A suite's `timestamp` (UTC, to the millisecond) and `hostname`, as the schema allows them.
fn stamp(suite: &mut TestSuite, started: Option<SystemTime>, hostname: Option<&str>) {
    if let Some(started) = started {
        suite
            .extra
            .insert("timestamp".into(), timestamp(started).into());
    }
    if let Some(hostname) = hostname {
        suite
            .extra
            .insert("hostname".into(), sanitize(hostname).into());
    }
}

/// `2026-11-27T08:17:38.123Z`.
pub fn timestamp(time: SystemTime) -> String {
    let ms = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let seconds = crate::clock::utc_stamp(ms);
    format!("{}.{:03}Z", seconds.trim_end_matches('Z'), ms % 1000)
}

/// This machine's name, for the report.
pub fn hostname() -> Option<String> {
    #[cfg(unix)]
    {
        let mut buffer = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
        let ok = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } == 0;
        let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
        (ok && end > 0).then(|| String::from_utf8_lossy(&buffer[..end]).into_owned())
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME").ok().filter(|n| !n.is_empty())
    }
}

fn to_junit_suite(suite: &SuiteResult, clean: &Cleaner<'_>) -> TestSuite {
    let mut junit = TestSuite::new(clean.short(&suite.name));
    junit.set_time(suite.duration);
    if suite.interrupted {
        junit.add_property(("interrupted", "true"));
    }
    let cases = suite.rendered_cases();
    let troubled = cases
        .iter()
        .any(|c| matches!(c.status, Status::Failed { .. } | Status::Error { .. }));
    junit.add_test_cases(cases.iter().map(|c| to_junit_case(c, clean)));
    // The error case already carries the output; a suite with failing tests gets it as context.
    if troubled && suite.error.is_none() {
        if let Some(output) = suite.output.as_deref().filter(|o| !o.is_empty()) {
            junit.set_system_out(clean.long(output));
        }
    }
    junit
}

fn to_junit_case(case: &Case, clean: &Cleaner<'_>) -> TestCase {
    let status = match &case.status {
        Status::Passed => TestCaseStatus::success(),
        Status::Failed { message, output } | Status::Error { message, output } => {
            let kind = if matches!(case.status, Status::Failed { .. }) {
                NonSuccessKind::Failure
            } else {
                NonSuccessKind::Error
            };
            let mut status = TestCaseStatus::non_success(kind);
            status.set_message(clean.short(message));
            if !output.is_empty() {
                status.set_description(clean.long(output));
            }
            status
        }
        Status::Skipped { reason } => {
            let mut status = TestCaseStatus::skipped();
            status.set_message(clean.short(reason));
            status
        }
    };
    let mut status = status;
    if !case.reruns.is_empty() {
        status.add_reruns(case.reruns.iter().map(|rerun| to_junit_rerun(rerun, clean)));
        // A test that failed every time: `<rerunFailure>`; one that passed: `<flakyFailure>`.
        status.set_rerun_kind(quick_junit::FlakyOrRerun::Rerun);
    }
    let mut junit = TestCase::new(clean.short(&case.name), status);
    junit.set_classname(clean.short(&case.classname));
    junit.set_time(case.time);
    if let Some(out) = case.system_out.as_deref() {
        junit.set_system_out(clean.long(out));
    }
    if let Some(err) = case.system_err.as_deref() {
        junit.set_system_err(clean.long(err));
    }
    junit
}

fn to_junit_rerun(rerun: &Rerun, clean: &Cleaner<'_>) -> quick_junit::TestRerun {
    let (kind, message, output) = match &rerun.status {
        Status::Error { message, output } => (NonSuccessKind::Error, message, output),
        Status::Failed { message, output } => (NonSuccessKind::Failure, message, output),
        // Only failed attempts are kept; anything else reads as a failure without a message.
        Status::Passed | Status::Skipped { .. } => {
            let mut junit = quick_junit::TestRerun::new(NonSuccessKind::Failure);
            junit.set_type("failure");
            return junit;
        }
    };
    // The schema requires a `type` and has no `time` on these elements (Surefire's).
    let mut junit = quick_junit::TestRerun::new(kind);
    junit.set_type(match kind {
        NonSuccessKind::Failure => "failure",
        NonSuccessKind::Error => "error",
    });
    junit.set_message(clean.short(message));
    if !output.is_empty() {
        junit.set_description(clean.long(output));
    }
    if let Some(out) = rerun.system_out.as_deref() {
        junit.set_system_out(clean.long(out));
    }
    if let Some(err) = rerun.system_err.as_deref() {
        junit.set_system_err(clean.long(err));
    }
    junit
}

/// quick-junit puts `skipped` on `<testsuites>`, which the Jenkins schema does not allow there
/// (it does on `<testsuite>`): drop it from the root element only.
fn schema_root(xml: String) -> String {
    let Some(start) = xml.find("<testsuites") else {
        return xml;
    };
    let Some(len) = xml[start..].find('>') else {
        return xml;
    };
    let tag = &xml[start..start + len];
    let Some(at) = tag.find(" skipped=\"") else {
        return xml;
    };
    let value_start = at + " skipped=\"".len();
    let Some(value_len) = tag[value_start..].find('"') else {
        return xml;
    };
    let cut_from = start + at;
    let cut_to = start + value_start + value_len + 1;
    format!("{}{}", &xml[..cut_from], &xml[cut_to..])
}

/// Renders the report and writes it atomically: readers see the old file or the new one.
pub fn write(report: &Report, path: &Path) -> anyhow::Result<()> {
    let xml = render(report)?;
    crate::state::write_atomic(path, xml.as_bytes())
        .with_context(|| format!("cannot write the JUnit report {}", path.display()))
}

/// Checks a file against the Jenkins schema with `xmllint`; `Ok(false)` when xmllint is not
/// installed (nothing was checked).
pub fn validate_xsd(path: &Path) -> anyhow::Result<bool> {
    let Ok(xmllint) = which::which("xmllint") else {
        return Ok(false);
    };
    let dir = tempfile_dir()?;
    let xsd = dir.join(format!("junit-10.{}.xsd", std::process::id()));
    std::fs::write(&xsd, JUNIT_XSD).with_context(|| format!("cannot write {}", xsd.display()))?;
    let output = std::process::Command::new(xmllint)
        .arg("--noout")
        .arg("--schema")
        .arg(&xsd)
        .arg(path)
        .output()
        .context("cannot run xmllint");
    let _ = std::fs::remove_file(&xsd);
    let output = output?;
    if output.status.success() {
        Ok(true)
    } else {
        anyhow::bail!(
            "{} does not validate against the JUnit schema:\n{}",
            path.display(),
            keep_tail(&lossy(&output.stderr), 4096)
        )
    }
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

// ---------------------------------------------------------------------------------------------
// Reading the runners' files.

/// Every test case of a JUnit file (pytest's `--junitxml`, nextest's report, one of ours), in
/// file order. Counts are not trusted (pytest's report-level counts read as zero): callers count
/// the cases.
pub fn parse_cases(xml: &str) -> anyhow::Result<Vec<Case>> {
    Ok(parse_suites(xml)?
        .into_iter()
        .flat_map(|suite| suite.cases)
        .collect())
}

/// A parsed `<testsuite>`: its name, properties, cases, time, system-out.
#[derive(Debug, Clone, Default)]
pub struct ParsedSuite {
    pub name: String,
    pub properties: Vec<(String, String)>,
    pub cases: Vec<Case>,
    pub time: Duration,
    pub system_out: Option<String>,
}

/// The suites of a JUnit file, as quick-junit reads them.
pub fn parse_suites(xml: &str) -> anyhow::Result<Vec<ParsedSuite>> {
    let report = match quick_junit::Report::deserialize_from_str(xml) {
        Ok(report) => report,
        // pytest interrupted by SIGINT (our deadline) writes `<testcase time="0.000" />` for the
        // test it was in: no name. Drop such placeholders; the caller reports that test as not run.
        Err(first) => quick_junit::Report::deserialize_from_str(&drop_nameless_testcases(xml))
            .map_err(|_| anyhow::anyhow!("not a JUnit report: {first}"))?,
    };
    Ok(report
        .test_suites
        .into_iter()
        .map(|suite| ParsedSuite {
            name: suite.name.to_string(),
            properties: suite
                .properties
                .iter()
                .map(|p| (p.name.to_string(), p.value.to_string()))
                .collect(),
            time: suite.time.unwrap_or_default(),
            system_out: suite.system_out.as_ref().map(|s| s.to_string()),
            cases: suite
                .test_cases
                .iter()
                .map(|case| from_junit_case(case, &suite.name))
                .collect(),
        })
        .collect())
}

/// Removes `<testcase>` elements that have no `name` attribute.
fn drop_nameless_testcases(xml: &str) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(at) = rest.find("<testcase") {
        let after = &rest[at + "<testcase".len()..];
        let is_tag = after.starts_with(|c: char| c.is_whitespace() || c == '>' || c == '/');
        let Some(tag_len) = after.find('>') else {
            break;
        };
        let tag = &after[..tag_len];
        let named = tag.split_whitespace().any(|attr| attr.starts_with("name="));
        if !is_tag || named {
            out.push_str(&rest[..at + "<testcase".len()]);
            rest = after;
            continue;
        }
        out.push_str(&rest[..at]);
        let element_end = if tag.ends_with('/') {
            tag_len + 1
        } else {
            after
                .find("</testcase>")
                .map_or(tag_len + 1, |end| end + "</testcase>".len())
        };
        rest = &after[element_end..];
    }
    out.push_str(rest);
    out
}

fn from_junit_case(case: &TestCase, suite_name: &str) -> Case {
    let text = |s: &Option<quick_junit::XmlString>| s.as_ref().map(|s| s.to_string());
    let reruns = match &case.status {
        TestCaseStatus::Success { flaky_runs } => flaky_runs.as_slice(),
        TestCaseStatus::NonSuccess { reruns, .. } => reruns.runs.as_slice(),
        TestCaseStatus::Skipped { .. } => &[],
    };
    let reruns = reruns
        .iter()
        .map(|rerun| {
            let message = text(&rerun.message)
                .or_else(|| text(&rerun.ty))
                .unwrap_or_else(|| "failed".to_owned());
            let output = text(&rerun.description)
                .or_else(|| text(&rerun.stack_trace))
                .unwrap_or_default();
            Rerun {
                status: match rerun.kind {
                    NonSuccessKind::Failure => Status::Failed { message, output },
                    NonSuccessKind::Error => Status::Error { message, output },
                },
                time: rerun.time.unwrap_or_default(),
                system_out: text(&rerun.system_out),
                system_err: text(&rerun.system_err),
            }
        })
        .collect();
    let status = match &case.status {
        TestCaseStatus::Success { .. } => Status::Passed,
        TestCaseStatus::NonSuccess {
            kind,
            message,
            ty,
            description,
            ..
        } => {
            let message = text(message)
                .or_else(|| text(ty))
                .unwrap_or_else(|| "failed".to_owned());
            let output = text(description).unwrap_or_default();
            match kind {
                NonSuccessKind::Failure => Status::Failed { message, output },
                NonSuccessKind::Error => Status::Error { message, output },
            }
        }
        TestCaseStatus::Skipped {
            message,
            description,
            ..
        } => Status::Skipped {
            reason: text(message)
                .or_else(|| text(description))
                .unwrap_or_else(|| "skipped".to_owned()),
        },
    };
    Case {
        classname: case
            .classname
            .as_ref()
            .map_or_else(|| suite_name.to_owned(), |c| c.to_string()),
        name: case.name.to_string(),
        time: case.time.unwrap_or_default(),
        status,
        system_out: text(&case.system_out),
        system_err: text(&case.system_err),
        reruns,
        quarantined: false,
    }
}

// ---------------------------------------------------------------------------------------------
// Merging: [merge].

mod merge;
pub use merge::{merge, Merged};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_strips_ansi_and_invalid_characters() {
        let text =
            "\u{1b}[1;31mred\u{1b}[0m \u{1b}]0;title\u{7}ok\0\u{1}\u{b}\tend\u{fffe}\u{1b}(B";
        assert_eq!(sanitize(text), "red ok\tend");
        assert_eq!(sanitize("a]]>b"), "a]]>b");
    }

    #[test]
    fn redact_replaces_longest_first() {
        let secrets = vec!["abc".to_owned(), "abcdef".to_owned(), String::new()];
        assert_eq!(
            redact("x abcdef y abc", &secrets),
            "x [redacted] y [redacted]"
        );
    }

    #[test]
    fn keep_tail_keeps_the_end_on_a_char_boundary() {
        let text = format!("{}é-end", "a".repeat(100));
        let kept = keep_tail(&text, 5);
        assert!(kept.ends_with("-end"), "{kept}");
        assert!(
            kept.starts_with("[output cut: the first 102 of 106 bytes"),
            "{kept}"
        );
        assert_eq!(keep_tail("short", 10), "short");
    }

    #[test]
    fn root_element_loses_skipped_only() {
        let xml = "<?xml?>\n<testsuites name=\"x\" tests=\"1\" skipped=\"0\" failures=\"0\">\n<testsuite skipped=\"0\"/>";
        assert_eq!(
            schema_root(xml.to_owned()),
            "<?xml?>\n<testsuites name=\"x\" tests=\"1\" failures=\"0\">\n<testsuite skipped=\"0\"/>"
        );
    }

    #[test]
    fn nameless_testcases_of_an_interrupted_pytest_are_dropped() {
        let xml = r#"<testsuites><testsuite name="pytest" tests="2" errors="0" failures="0"><testcase classname="a" name="ok" time="0.001"><system-out>x</system-out></testcase><testcase time="0.000" /><testcase time="1"><failure>f</failure></testcase></testsuite></testsuites>"#;
        let cases = parse_cases(xml).unwrap();
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].name, "ok");
        assert_eq!(cases[0].system_out.as_deref(), Some("x"));
    }

    #[test]
    fn interrupted_suite_has_a_property_and_an_error_case() {
        let mut suite = SuiteResult::new("e2e");
        suite.interrupted = true;
        suite.cases = vec![Case::new("m", "t", Status::Passed)];
        assert!(!suite.passed());
        assert_eq!(suite.counts().errors, 1);
        let report = Report {
            name: "r".into(),
            suites: vec![suite],
            ..Report::default()
        };
        let xml = render(&report).unwrap();
        assert!(
            xml.contains(r#"<property name="interrupted" value="true"/>"#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<error message="interrupted before the suite finished"/>"#),
            "{xml}"
        );
    }

    #[test]
    fn warned_check_passes_with_a_note() {
        let check = Check::new("memory", Outcome::Warned, Duration::ZERO, "6 GiB < 8 GiB")
            .with_remedy("close something");
        let case = check_case(&check);
        assert_eq!(case.status, Status::Passed);
        assert_eq!(
            case.system_out.as_deref(),
            Some("warning: 6 GiB < 8 GiB\nhint: close something")
        );
    }

    #[test]
    fn an_errored_check_is_an_error_case_and_a_failed_one_a_failure() {
        let lost = Check::errored(
            "engine lost at 41.2s",
            Duration::ZERO,
            "its event stream ended",
        );
        assert!(matches!(
            check_case(&lost).status,
            Status::Error { ref message, .. } if message == "its event stream ended"
        ));
        let failed = Check::failed("smoke container", Duration::ZERO, "exited with 1");
        assert!(matches!(check_case(&failed).status, Status::Failed { .. }));
        let xml = render(&Report {
            name: "gate".into(),
            properties: Vec::new(),
            harness: vec![lost, failed],
            suites: Vec::new(),
            secrets: Vec::new(),
            time: None,
            harness_time: None,
            started: None,
            hostname: None,
        })
        .unwrap();
        assert!(xml.contains("errors=\"1\""), "{xml}");
        assert!(
            xml.contains("<error message=\"its event stream ended\""),
            "{xml}"
        );
    }
}
