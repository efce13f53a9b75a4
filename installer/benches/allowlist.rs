//! Allowlist benchmark: `cargo benches -p coder-install --bench allowlist` prints figures, asserts
//! nothing.
//!
//! A 100,000-line allowlist (host names, IPv6 networks, URLs and wildcards, a quarter each)
//! audited against the built-in spec's requirements, without probing: reading the file, judging
//! every endpoint and entry, and rendering the JSON, text and HTML reports. Target: seconds at
//! most for the whole (the bound for a huge allowlist).

use std::time::{Duration, Instant};

use coder_allowlist::endpoints::{RequirementInputs, required};
use coder_allowlist::report::{AuditInputs, AuditReport};
use coder_allowlist::{Allowlist, render};
use coder_bundle_spec::{BundleSpec, DEFAULT_SPEC};

const LINES: usize = 100_000;
const ROUNDS: usize = 5;

fn allowlist_text() -> String {
    let mut text = String::with_capacity(5 << 20);
    for index in 0..LINES {
        let line = match index % 4 {
            0 => format!("host-{index}.example.com\n"),
            1 => format!("fd00:{:x}:{:x}::/48\n", index >> 16, index & 0xffff),
            2 => format!("https://svc-{index}.example.net:8443/api/\n"),
            _ => format!("*.team-{index}.example.org  # team {index}\n"),
        };
        text.push_str(&line);
    }
    text.push_str("registry-1.docker.io\nauth.docker.io\n*.docker.com\nregistry.k8s.io\n*.pkg.dev\n");
    text
}

fn best(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[0]
}

fn main() {
    let spec = BundleSpec::from_yaml(DEFAULT_SPEC, "built-in spec").expect("built-in spec");
    let requirements = required(RequirementInputs {
        spec: &spec,
        insecure_registries: &[],
    })
    .expect("requirements");
    let text = allowlist_text();

    let (mut parse, mut judge, mut json, mut report_text, mut html) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut sizes = (0, 0, 0);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let allowlist = Allowlist::parse(&text);
        parse.push(started.elapsed());

        let started = Instant::now();
        let report = AuditReport::build(AuditInputs::unprobed(&requirements, &allowlist));
        judge.push(started.elapsed());

        let started = Instant::now();
        let rendered = serde_json::to_string_pretty(&report).expect("json");
        json.push(started.elapsed());
        sizes.0 = rendered.len();
        let started = Instant::now();
        sizes.1 = render::text(&report).len();
        report_text.push(started.elapsed());
        let started = Instant::now();
        sizes.2 = render::html(&report).len();
        html.push(started.elapsed());
    }
    let total = best(parse.clone()) + best(judge.clone()) + best(json.clone());
    println!(
        "allowlist audit, {LINES} lines ({} KiB), best of {ROUNDS}:",
        text.len() / 1024
    );
    println!("  read and check every entry   {:>9.1?}", best(parse));
    println!("  judge endpoints and entries  {:>9.1?}", best(judge));
    println!(
        "  JSON report                  {:>9.1?}  ({} KiB)",
        best(json),
        sizes.0 / 1024
    );
    println!(
        "  text report                  {:>9.1?}  ({} KiB)",
        best(report_text),
        sizes.1 / 1024
    );
    println!(
        "  HTML report                  {:>9.1?}  ({} KiB)",
        best(html),
        sizes.2 / 1024
    );
    println!("  read + judge + JSON          {total:>9.1?}  (target: a few seconds at most)");
}
