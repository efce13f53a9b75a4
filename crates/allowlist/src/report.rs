//! The allowlist audit report: one typed document that every output format renders, and that
//! `--format json` writes as it is (so scripts read it back with these types).

use serde::{Deserialize, Serialize};

use super::coverage::{self, Coverage, EndpointCoverage, Usage};
use super::endpoints::{InClusterFlow, RequiredEndpoint, Requirements};
use super::entry::{Allowlist, AllowlistForm, EntryKind, Location, Malformed};
use super::probe::ProbeResult;

/// An input of the audit, identified by its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputDigest {
    /// `allowlist`, `spec` or `lock`.
    pub role: String,
    /// The file, or `built-in`.
    pub source: String,
    /// `sha256:` of its bytes.
    pub digest: String,
}

/// The counts of the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Endpoints the install needs.
    pub required: usize,
    /// Covered by an entry of reasonable breadth.
    pub covered: usize,
    /// Covered by nothing.
    pub missing: usize,
    /// Covered only by an over-broad entry.
    pub over_broad: usize,
    /// Probed and not reachable (0 without `--probe`).
    pub unreachable: usize,
    /// Entries read.
    pub entries: usize,
    /// Entries that could not be read.
    pub malformed: usize,
    /// Entries that allow far more than needed.
    pub over_broad_entries: usize,
    /// Entries repeating an earlier one.
    pub duplicate_entries: usize,
    /// Entries that cover nothing the install needs.
    pub unused_entries: usize,
}

impl Summary {
    /// The summary line: `N required, N covered, N missing, N over-broad` (and unreachable).
    pub fn line(&self, probed: bool) -> String {
        let mut line = format!(
            "{} required, {} covered, {} missing, {} over-broad",
            self.required, self.covered, self.missing, self.over_broad
        );
        if probed {
            line.push_str(&format!(", {} unreachable", self.unreachable));
        }
        line
    }
}

/// Pass or fail, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Whether the allowlist lets the install reach everything it needs.
    pub passed: bool,
    /// Why it failed (empty when it passed).
    pub reasons: Vec<String>,
    /// What should still be looked at (over-broad entries, unused entries, ...).
    pub warnings: Vec<String>,
}

/// An entry, as the report names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRef {
    /// Where it is written.
    pub location: Location,
    /// The entry as written.
    pub text: String,
}

/// One required endpoint and its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointReport {
    /// The endpoint.
    pub endpoint: RequiredEndpoint,
    /// Covered, over-broad only, or not covered.
    pub coverage: Coverage,
    /// The entries that allow it.
    pub covered_by: Vec<EntryRef>,
    /// More on the verdict, when there is more to say.
    pub detail: Option<String>,
    /// What probing found (`--probe`).
    pub probe: Option<ProbeResult>,
}

/// A finding about one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "finding", content = "detail")]
pub enum EntryFinding {
    /// It allows far more than any install needs (why).
    OverBroad(String),
    /// It repeats the entry at this location.
    Duplicate(Location),
    /// It covers nothing the install needs.
    Unused,
    /// An IP or CIDR entry not checked: run with `--probe` to resolve the hosts.
    NotChecked,
    /// It was normalised while reading (what changed).
    Normalised(String),
}

/// One entry with at least one finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryReport {
    /// Where it is written.
    pub location: Location,
    /// The entry as written.
    pub text: String,
    /// What kind of entry it is.
    pub kind: EntryKind,
    /// How it was read (lower-case ASCII host, normalised network, default port).
    pub canonical: String,
    /// What is worth knowing about it.
    pub findings: Vec<EntryFinding>,
}

/// The whole audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    /// `coder-install <version>`.
    pub tool: String,
    /// When the audit ran.
    pub generated_at: jiff::Timestamp,
    /// The release the requirements are for (`coder 1.0.0`).
    pub release: String,
    /// The allowlist, spec and lock, by digest.
    pub inputs: Vec<InputDigest>,
    /// Whether the endpoints were probed from this host.
    pub probed: bool,
    /// The allowlist file's form.
    pub form: AllowlistForm,
    /// Whether every line of the allowlist could be read (and it was not empty).
    pub allowlist_valid: bool,
    /// The counts.
    pub summary: Summary,
    /// Pass or fail.
    pub verdict: Verdict,
    /// Every required endpoint with its verdict.
    pub endpoints: Vec<EndpointReport>,
    /// Entries that could not be read, with what is wrong.
    pub malformed: Vec<Malformed>,
    /// Entries with findings (over-broad, duplicate, unused, normalised).
    pub entries: Vec<EntryReport>,
    /// The in-cluster flows, for the same network team.
    pub in_cluster: Vec<InClusterFlow>,
    /// Notes on the requirements and on probing.
    pub notes: Vec<String>,
}

/// What the report is built from.
pub struct AuditInputs<'a> {
    /// The release name and version.
    pub release: String,
    /// The inputs' digests.
    pub inputs: Vec<InputDigest>,
    /// The parsed allowlist.
    pub allowlist: &'a Allowlist,
    /// Each required endpoint with its probe result (when probed).
    pub endpoints: Vec<(RequiredEndpoint, Option<ProbeResult>)>,
    /// The in-cluster flows.
    pub in_cluster: Vec<InClusterFlow>,
    /// Notes to carry.
    pub notes: Vec<String>,
    /// Whether probes ran.
    pub probed: bool,
}

impl<'a> AuditInputs<'a> {
    /// An audit without probes and without input digests: every endpoint of `requirements`
    /// judged against `allowlist` alone (what benchmarks and the fuzz target build).
    pub fn unprobed(requirements: &Requirements, allowlist: &'a Allowlist) -> Self {
        Self {
            release: requirements.release.clone(),
            inputs: Vec::new(),
            allowlist,
            endpoints: requirements
                .endpoints
                .iter()
                .cloned()
                .map(|endpoint| (endpoint, None))
                .collect(),
            in_cluster: requirements.in_cluster.clone(),
            notes: requirements.notes.clone(),
            probed: false,
        }
    }
}

impl AuditReport {
    /// Checks every endpoint against the allowlist and judges the result.
    pub fn build(inputs: AuditInputs<'_>) -> Self {
        let allowlist = inputs.allowlist;
        let coverages: Vec<EndpointCoverage> = inputs
            .endpoints
            .iter()
            .map(|(endpoint, probe)| {
                let addresses: Vec<_> = probe
                    .iter()
                    .flat_map(|probe| probe.addresses.iter().map(|resolved| resolved.address))
                    .collect();
                coverage::cover(endpoint, allowlist, &addresses)
            })
            .collect();
        let usages = coverage::usage(allowlist, &coverages, inputs.probed);
        let entries = entry_reports(allowlist, &usages);

        let endpoints: Vec<EndpointReport> = inputs
            .endpoints
            .into_iter()
            .zip(coverages)
            .map(|((endpoint, probe), coverage)| EndpointReport {
                endpoint,
                coverage: coverage.coverage,
                covered_by: coverage::describe(allowlist, &coverage.covered_by)
                    .into_iter()
                    .map(|(location, text)| EntryRef { location, text })
                    .collect(),
                detail: coverage.detail,
                probe,
            })
            .collect();

        let count = |coverage: Coverage| {
            endpoints
                .iter()
                .filter(|report| report.coverage == coverage)
                .count()
        };
        let unreachable = endpoints
            .iter()
            .filter(|report| report.probe.as_ref().is_some_and(counts_as_unreachable))
            .count();
        let summary = Summary {
            required: endpoints.len(),
            covered: count(Coverage::Covered),
            missing: count(Coverage::NotCovered),
            over_broad: count(Coverage::OverBroadOnly),
            unreachable,
            entries: allowlist.entries.len(),
            malformed: allowlist.malformed.len(),
            over_broad_entries: allowlist
                .entries
                .iter()
                .filter(|entry| entry.over_broad.is_some())
                .count(),
            duplicate_entries: usages.iter().filter(|usage| **usage == Usage::Duplicate).count(),
            unused_entries: usages.iter().filter(|usage| **usage == Usage::Unused).count(),
        };
        let allowlist_valid = allowlist.malformed.is_empty() && !allowlist.entries.is_empty();
        let verdict = judge(&summary, allowlist, &endpoints);
        Self {
            tool: format!("coder-install {}", env!("CARGO_PKG_VERSION")),
            generated_at: jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .unwrap_or_else(|_| jiff::Timestamp::now()),
            release: inputs.release,
            inputs: inputs.inputs,
            probed: inputs.probed,
            form: allowlist.form,
            allowlist_valid,
            summary,
            verdict,
            endpoints,
            malformed: allowlist.malformed.clone(),
            entries,
            in_cluster: inputs.in_cluster,
            notes: inputs.notes,
        }
    }
}

/// A probe failure counts, except for a family of hosts, which cannot be probed.
fn counts_as_unreachable(probe: &ProbeResult) -> bool {
    probe
        .failure
        .as_ref()
        .is_some_and(|failure| failure.kind != super::probe::FailureKind::Pattern)
}

fn judge(summary: &Summary, allowlist: &Allowlist, endpoints: &[EndpointReport]) -> Verdict {
    let mut reasons = Vec::new();
    let mut warnings = Vec::new();
    if allowlist.is_empty() {
        reasons.push("the allowlist has no entries".to_owned());
    }
    if summary.malformed > 0 {
        reasons.push(format!(
            "the allowlist is invalid: {} could not be read",
            entries(summary.malformed)
        ));
    }
    for report in endpoints {
        let url = report.endpoint.url();
        if report.coverage == Coverage::NotCovered {
            reasons.push(format!("{url} ({}) is not covered", report.endpoint.role.label()));
        }
        if let Some(failure) = report
            .probe
            .as_ref()
            .filter(|probe| counts_as_unreachable(probe))
            .and_then(|probe| probe.failure.as_ref())
        {
            reasons.push(format!("{url} is not reachable from here: {}", failure.message));
        }
    }
    if summary.over_broad > 0 {
        warnings.push(format!(
            "{} endpoint{} covered only by over-broad entries: allow them by name instead",
            summary.over_broad,
            if summary.over_broad == 1 { " is" } else { "s are" }
        ));
    }
    if summary.over_broad_entries > 0 {
        warnings.push(format!("{} over-broad", entries(summary.over_broad_entries)));
    }
    if summary.duplicate_entries > 0 {
        warnings.push(format!(
            "{} repeating an earlier one",
            entries(summary.duplicate_entries)
        ));
    }
    if summary.unused_entries > 0 {
        warnings.push(format!(
            "{} covering nothing this install needs",
            entries(summary.unused_entries)
        ));
    }
    Verdict {
        passed: reasons.is_empty(),
        reasons,
        warnings,
    }
}

/// `1 entry`, `2 entries`.
fn entries(count: usize) -> String {
    format!("{count} entr{}", if count == 1 { "y" } else { "ies" })
}

fn entry_reports(allowlist: &Allowlist, usages: &[Usage]) -> Vec<EntryReport> {
    allowlist
        .entries
        .iter()
        .zip(usages)
        .filter_map(|(entry, usage)| {
            let mut findings: Vec<EntryFinding> = entry
                .notes
                .iter()
                .map(|note| EntryFinding::Normalised(note.clone()))
                .collect();
            if let Some(why) = &entry.over_broad {
                findings.push(EntryFinding::OverBroad(why.clone()));
            }
            match (usage, entry.duplicate_of) {
                (Usage::Duplicate, Some(first)) => findings.push(EntryFinding::Duplicate(first)),
                (Usage::Unused, _) => findings.push(EntryFinding::Unused),
                (Usage::NotChecked, _) => findings.push(EntryFinding::NotChecked),
                _ => {}
            }
            (!findings.is_empty()).then(|| EntryReport {
                location: entry.location,
                text: entry.text.clone(),
                kind: entry.rule.kind(),
                canonical: entry.rule.to_string(),
                findings,
            })
        })
        .collect()
}

impl EntryFinding {
    /// The finding in words.
    pub fn describe(&self) -> String {
        match self {
            Self::OverBroad(why) => format!("over-broad: {why}"),
            Self::Duplicate(first) => format!("duplicate of {first}"),
            Self::Unused => "unused: covers nothing this install needs".to_owned(),
            Self::NotChecked => {
                "not checked: IP entries are matched against resolved addresses with --probe".to_owned()
            }
            Self::Normalised(what) => format!("normalised: {what}"),
        }
    }
}
