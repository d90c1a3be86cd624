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
        });
    }
    Ok(suites)
}
