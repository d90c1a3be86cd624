//! The `[[suite]]` keys (what each suite runs, where, and whether its tests may run beside
//! others) and `[gate]` (how many workers the gate spreads them over). Read raw by [super] with
//! the rest of the file, validated here.
//!
//! Not here: running the suites ([crate::suites]), the plan over the workers
//! ([crate::suites::plan]).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::{Jobs, Locator, Secs, TargetKind};
use crate::error::Failure;

/// `[gate]`: how the gate runs its suites.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateCfg {
    /// Workers the tests of `parallel` suites are spread over (`--jobs` wins); none: the
    /// harness's default ([`crate::suites::DEFAULT_JOBS`]).
    pub jobs: Option<Jobs>,
}

#[derive(Debug, Clone)]
pub struct SuiteCfg {
    pub name: String,
    pub runner: Runner,
    pub args: Vec<String>,
    /// Targets this suite can run on; empty: every target.
    pub needs: Vec<TargetKind>,
    pub timeout_s: Secs,
    /// Exit 5 (no tests collected) is a pass.
    pub allow_empty: bool,
    /// Its tests may run at the same time as other tests (spread over the gate's workers).
    pub parallel: bool,
    /// Its tests carrying one of these pytest markers run alone, nothing else running.
    pub serial_markers: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// A failed test is run again up to this many more times (`--retries` wins); one that then
    /// passes is a pass, and flaky.
    pub retries: u32,
    /// Tests that still run and are reported but do not fail the gate: a test id
    /// (`classname::name`, as the report and `history` name it) or a pattern with `*`.
    pub quarantine: Vec<String>,
}

/// The most `retries` a suite (or `--retries`) may ask for: more reruns of a failing test hide
/// more than they tell.
pub const MAX_RETRIES: u32 = 10;

impl SuiteCfg {
    /// Whether its `quarantine` names this test (`classname::name`).
    pub fn quarantined(&self, test: &str) -> bool {
        self.quarantine
            .iter()
            .any(|pattern| matches_pattern(pattern, test))
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters (none too) and
/// everything else for itself.
pub fn matches_pattern(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the whole text.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runner {
    Pytest,
    Nextest,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSuite {
    name: Spanned<String>,
    runner: Runner,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    needs: Vec<TargetKind>,
    #[serde(default = "default_suite_timeout")]
    timeout_s: Secs,
    #[serde(default)]
    allow_empty: bool,
    #[serde(default)]
    parallel: bool,
    #[serde(default = "default_serial_markers")]
    serial_markers: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    retries: Option<Spanned<u32>>,
    #[serde(default)]
    quarantine: Vec<Spanned<String>>,
}

fn default_serial_markers() -> Vec<String> {
    vec!["destructive".to_owned()]
}

fn default_suite_timeout() -> Secs {
    Secs(900)
}

/// The `[[suite]]` tables, validated: names are unique.
pub(super) fn suites(at: &Locator<'_>, raw: Vec<RawSuite>) -> Result<Vec<SuiteCfg>, Failure> {
    let mut suites: Vec<SuiteCfg> = Vec::new();
    for suite in raw {
        if suites.iter().any(|s| &s.name == suite.name.get_ref()) {
            return Err(at.at(
                suite.name.span(),
                "suite.name",
                format!("suite `{}` is defined twice", suite.name.get_ref()),
            ));
        }
        if let Some(retries) = suite
            .retries
            .as_ref()
            .filter(|r| *r.get_ref() > MAX_RETRIES)
        {
            return Err(at.at(
                retries.span(),
                "suite.retries",
                format!(
                    "suite `{}`: retries = {} is more than {MAX_RETRIES}",
                    suite.name.get_ref(),
                    retries.get_ref()
                ),
            ));
        }
        if let Some(empty) = suite
            .quarantine
            .iter()
            .find(|p| p.get_ref().trim().is_empty())
        {
            return Err(at.at(
                empty.span(),
                "suite.quarantine",
                format!(
                    "suite `{}`: an empty quarantine pattern would name no test",
                    suite.name.get_ref()
                ),
            ));
        }
        suites.push(SuiteCfg {
            name: suite.name.into_inner(),
            runner: suite.runner,
            args: suite.args,
            needs: suite.needs,
            timeout_s: suite.timeout_s,
            allow_empty: suite.allow_empty,
            parallel: suite.parallel,
            serial_markers: suite.serial_markers,
            env: suite.env,
            retries: suite.retries.map_or(0, Spanned::into_inner),
            quarantine: suite
                .quarantine
                .into_iter()
                .map(Spanned::into_inner)
                .collect(),
        });
    }
    Ok(suites)
}
