//! A site's allowlist file (what `allowlist audit --allowlist F` reads): every form (lines, YAML,
//! JSON), every entry, then the audit against the built-in spec's requirements, coverage with
//! resolved addresses (as `--probe` would give), and every report rendering.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use coder_bundle_spec::{BundleSpec, DEFAULT_SPEC};
use coder_allowlist::coverage;
use coder_allowlist::endpoints::{RequirementInputs, Requirements, required};
use coder_allowlist::report::{AuditInputs, AuditReport};
use coder_allowlist::{Allowlist, render};
use libfuzzer_sys::fuzz_target;

fn requirements() -> &'static Requirements {
    static REQUIREMENTS: OnceLock<Requirements> = OnceLock::new();
    REQUIREMENTS.get_or_init(|| {
        let spec = BundleSpec::from_yaml(DEFAULT_SPEC, "built-in spec").expect("the built-in spec parses");
        let insecure = ["registry.site:5000".to_owned(), "[fd00::5]:5000".to_owned()];
        required(RequirementInputs {
            spec: &spec,
            insecure_registries: &insecure,
        })
        .expect("the built-in spec's requirements")
    })
}

/// Addresses a probe could resolve a host to: private, public and IPv6.
const ADDRESSES: [IpAddr; 4] = [
    IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
    IpAddr::V4(Ipv4Addr::new(140, 82, 112, 3)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 5)),
];

fuzz_target!(|data: &[u8]| {
    // The audit command refuses a file that is not UTF-8 before parsing it.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let allowlist = Allowlist::parse(text);
    for entry in &allowlist.entries {
        let _ = (entry.rule.to_string(), entry.rule.kind());
    }
    let requirements = requirements();
    let coverages: Vec<_> = requirements
        .endpoints
        .iter()
        .map(|endpoint| coverage::cover(endpoint, &allowlist, &ADDRESSES))
        .collect();
    let _ = coverage::usage(&allowlist, &coverages, true);
    let indexes: Vec<usize> = (0..allowlist.entries.len()).collect();
    let _ = coverage::describe(&allowlist, &indexes);

    let report = AuditReport::build(AuditInputs::unprobed(&requirements, &allowlist));
    let _ = serde_json::to_string(&report).expect("an audit report always serialises");
    let _ = (
        render::text(&report),
        render::markdown(&report),
        render::html(&report),
    );
});
