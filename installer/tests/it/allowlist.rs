//! `coder-install allowlist generate|audit`: requirements, coverage verdicts, entry findings,
//! probes against servers these tests start on loopback (and a network namespace for "no
//! route"), and every report format.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;

use coder_allowlist::coverage::Coverage;
use coder_allowlist::endpoints::{EndpointRole, Evidence, Origin, Scheme};
use coder_allowlist::entry::Location;
use coder_allowlist::probe::{FailureKind, ProbeStep};
use coder_allowlist::report::{AuditReport, EntryFinding};
use coder_allowlist::{RequiredEndpoint, Requirements};
use coder_testenv::{BLOB_REDIRECT_BASE, Registry, RegistryFlavour};

use crate::world::{World, coder_install, failure, success};

/// The exit code of an audit that ran and failed.
const AUDIT_FAILED: i32 = 30;

/// A spec with images on three public registries (nothing is contacted without --probe).
const PUBLIC_SPEC: &str = "name: coder\nversion: 1.0.0\nplatforms: [linux/amd64]\nimages:\n\
    - name: postgres\n  ref: docker.io/library/postgres:13\n\
    - name: app\n  ref: ghcr.io/example/app:1\n\
    - name: controller\n  ref: registry.k8s.io/ingress-nginx/controller:v1.11.2\n\
    charts:\n  - name: coder\n    path: charts/coder\n";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

fn run(args: &[&str]) -> Output {
    coder_install(args, &[])
}

/// `allowlist audit --allowlist ALLOWLIST --spec SPEC EXTRA...`.
fn audit(allowlist: &str, spec: &str, extra: &[&str]) -> Output {
    let mut args = vec!["allowlist", "audit", "--allowlist", allowlist, "--spec", spec];
    args.extend_from_slice(extra);
    run(&args)
}

/// The JSON report of an audit that ran and failed (exit status 30).
fn failed_report(output: &Output) -> AuditReport {
    assert_eq!(
        output.status.code(),
        Some(AUDIT_FAILED),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    report_of(output)
}

fn report_of(output: &Output) -> AuditReport {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "the JSON report does not read back ({error}):\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn endpoint<'a>(report: &'a AuditReport, url: &str) -> &'a coder_allowlist::report::EndpointReport {
    report
        .endpoints
        .iter()
        .find(|endpoint| endpoint.endpoint.url() == url)
        .unwrap_or_else(|| {
            let urls: Vec<String> = report.endpoints.iter().map(|e| e.endpoint.url()).collect();
            panic!("{url} not in the report: {urls:?}")
        })
}

#[test]
fn generate_lists_registries_their_redirect_targets_and_the_in_cluster_flows() {
    let json = success(run(&["allowlist", "generate", "--output", "json"]));
    let requirements: Requirements = serde_json::from_str(&json).expect("requirements JSON");
    let find = |host: &str| -> &RequiredEndpoint {
        requirements
            .endpoints
            .iter()
            .find(|endpoint| endpoint.host == host)
            .unwrap_or_else(|| panic!("{host} missing from {json}"))
    };
    let hub = find("registry-1.docker.io");
    assert_eq!(
        (hub.scheme, hub.port, hub.path.as_deref(), hub.role, hub.origin),
        (
            Scheme::Https,
            443,
            Some("/v2/"),
            EndpointRole::RegistryApi,
            Origin::Fixed
        )
    );
    assert!(
        hub.needed_by.contains(&"image postgres".to_owned()),
        "{:?}",
        hub.needed_by
    );
    assert!(hub.needed_by.contains(&"image coder-service".to_owned()));
    assert_eq!(find("registry.k8s.io").role, EndpointRole::RegistryApi);
    assert_eq!(find("auth.docker.io").role, EndpointRole::TokenService);
    let cdn = find("production.cloudflare.docker.com");
    assert_eq!(
        (cdn.role, cdn.origin, cdn.evidence),
        (EndpointRole::BlobStorage, Origin::Redirect, Evidence::Documented)
    );
    assert_eq!(find("*.pkg.dev").origin, Origin::Redirect);

    let flows: Vec<(&str, &str, u16)> = requirements
        .in_cluster
        .iter()
        .map(|flow| (flow.from.as_str(), flow.to.as_str(), flow.port))
        .collect();
    for flow in [
        ("envproxy", "workspace", 13337),
        ("envproxy", "workspace", 26337),
        ("envproxy", "workspace", 12212),
        ("manager", "postgres", 5432),
    ] {
        assert!(flows.contains(&flow), "{flow:?} missing from {flows:?}");
    }

    let yaml = success(run(&["allowlist", "generate", "--output", "yaml"]));
    let from_yaml: Requirements = serde_saphyr::from_str(&yaml).expect("requirements YAML");
    assert_eq!(from_yaml, requirements);

    let text = success(run(&["allowlist", "generate"]));
    for expected in [
        "https://registry-1.docker.io:443/v2/",
        "redirect target (documented)",
        "In-cluster flows",
        "13337/TCP",
        "Licenses are verified offline",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn generate_with_probe_learns_where_the_registry_redirects_blob_downloads() {
    let world = World::new(RegistryFlavour::RedirectingBlobs).await;
    let (spec, _) = world.lock_spec();
    let host = world.registry.host();
    let json = success(run(&[
        "allowlist",
        "generate",
        "--spec",
        &spec,
        "--probe",
        "--insecure-registry",
        &host,
        "--output",
        "json",
    ]));
    let requirements: Requirements = serde_json::from_str(&json).expect("requirements JSON");
    let storage = url::Url::parse(BLOB_REDIRECT_BASE).expect("base URL");
    let learnt = requirements
        .endpoints
        .iter()
        .find(|endpoint| Some(endpoint.host.as_str()) == storage.host_str())
        .unwrap_or_else(|| panic!("the redirect target was not learnt: {json}"));
    assert_eq!(
        (
            learnt.scheme,
            learnt.port,
            learnt.role,
            learnt.origin,
            learnt.evidence
        ),
        (
            Scheme::Https,
            443,
            EndpointRole::BlobStorage,
            Origin::Redirect,
            Evidence::Probed
        )
    );
    assert!(learnt.why.contains("redirects blob downloads"), "{}", learnt.why);
    let registry = &requirements.endpoints[0];
    assert_eq!(
        (registry.scheme, registry.role, registry.url()),
        (
            Scheme::Http,
            EndpointRole::RegistryApi,
            format!("http://{host}/v2/")
        )
    );

    // Without probing, a registry nobody documents has no redirect target listed.
    let plain: Requirements = serde_json::from_str(&success(run(&[
        "allowlist",
        "generate",
        "--spec",
        &spec,
        "--insecure-registry",
        &host,
        "--output",
        "json",
    ])))
    .expect("requirements JSON");
    assert_eq!(plain.endpoints.len(), 1, "{plain:?}");
}

/// An allowlist that exercises every verdict and every finding against [`PUBLIC_SPEC`].
const MIXED_ALLOWLIST: &str = "# egress of the coder namespace\n\
registry-1.docker.io\n\
auth.docker.io:443   # the token service\n\
*.docker.com\n\
https://ghcr.io/v2/\n\
pkg-containers.githubusercontent.com\n\
*.dev\n\
REGISTRY-1.docker.io\n\
example.org\n\
10.1.2.3/16\n\
bad host!\n\
bücher.example\n\
ghcr.io:99999\n";

#[test]
fn audit_gives_each_endpoint_its_verdict_and_each_entry_its_findings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = write(dir.path(), "coder.yaml", PUBLIC_SPEC);
    let allowlist = write(dir.path(), "allowlist.txt", MIXED_ALLOWLIST);
    let (spec, allowlist) = (spec.display().to_string(), allowlist.display().to_string());

    let output = audit(&allowlist, &spec, &["--format", "json"]);
    let report = failed_report(&output);
    assert_eq!(
        report.summary.line(false),
        "7 required, 5 covered, 1 missing, 1 over-broad"
    );
    assert!(!report.verdict.passed);
    assert!(!report.allowlist_valid);

    let verdict = |url: &str| endpoint(&report, url).coverage;
    assert_eq!(verdict("https://registry-1.docker.io:443/v2/"), Coverage::Covered);
    assert_eq!(verdict("https://auth.docker.io:443"), Coverage::Covered);
    assert_eq!(
        verdict("https://production.cloudflare.docker.com:443"),
        Coverage::Covered
    );
    assert_eq!(verdict("https://ghcr.io:443/v2/"), Coverage::Covered);
    assert_eq!(verdict("https://*.pkg.dev:443"), Coverage::OverBroadOnly);
    assert_eq!(verdict("https://registry.k8s.io:443/v2/"), Coverage::NotCovered);
    let hub = endpoint(&report, "https://registry-1.docker.io:443/v2/");
    assert_eq!(hub.covered_by[0].location, Location::Line(2));

    let malformed: Vec<(Location, &str)> = report
        .malformed
        .iter()
        .map(|malformed| (malformed.location, malformed.reason.as_str()))
        .collect();
    assert_eq!(malformed.len(), 2, "{malformed:?}");
    assert_eq!(malformed[0].0, Location::Line(11));
    assert!(malformed[0].1.contains("one entry a line"));
    assert_eq!(malformed[1].0, Location::Line(13));
    assert!(malformed[1].1.contains("port 99999 is out of range"));

    let findings = |line: usize| -> Vec<EntryFinding> {
        report
            .entries
            .iter()
            .find(|entry| entry.location == Location::Line(line))
            .map(|entry| entry.findings.clone())
            .unwrap_or_default()
    };
    assert!(
        matches!(findings(7)[..], [EntryFinding::OverBroad(_)]),
        "{:?}",
        findings(7)
    );
    assert_eq!(findings(8), [EntryFinding::Duplicate(Location::Line(2))]);
    assert_eq!(findings(9), [EntryFinding::Unused]);
    assert!(
        matches!(&findings(10)[..], [EntryFinding::Normalised(what), EntryFinding::NotChecked] if what.contains("10.1.0.0/16")),
        "{:?}",
        findings(10)
    );
    assert!(
        matches!(&findings(12)[..], [EntryFinding::Normalised(what), EntryFinding::Unused] if what.contains("xn--bcher-kva.example")),
        "{:?}",
        findings(12)
    );
    assert!(
        report
            .verdict
            .reasons
            .iter()
            .any(|reason| reason.contains("registry.k8s.io") && reason.contains("not covered"))
    );
    assert!(
        report
            .verdict
            .reasons
            .iter()
            .any(|reason| reason.contains("invalid"))
    );
    let roles: Vec<&str> = report.inputs.iter().map(|input| input.role.as_str()).collect();
    assert_eq!(roles, ["allowlist", "spec"]);
    assert!(report.inputs[0].digest.starts_with("sha256:"));

    // The text report: summary line first, then the table, line numbers of the bad entries.
    let output = audit(&allowlist, &spec, &[]);
    assert_eq!(output.status.code(), Some(AUDIT_FAILED));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with("FAIL: 7 required, 5 covered, 1 missing, 1 over-broad\n"),
        "{text}"
    );
    assert!(
        text.contains("line 13: \"ghcr.io:99999\": port 99999 is out of range (1-65535)"),
        "{text}"
    );
    assert!(text.contains("NOT COVERED"), "{text}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("the allowlist audit failed"));
}

/// Every endpoint of [`PUBLIC_SPEC`], allowed by name, as a YAML list.
const COMPLETE_YAML_ALLOWLIST: &str = "allowlist:\n\
  - registry-1.docker.io:443\n\
  - auth.docker.io\n\
  - production.cloudflare.docker.com\n\
  - https://ghcr.io/\n\
  - pkg-containers.githubusercontent.com\n\
  - registry.k8s.io\n\
  - '*.pkg.dev'\n";

#[test]
fn a_complete_allowlist_passes_and_every_report_format_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = write(dir.path(), "coder.yaml", PUBLIC_SPEC).display().to_string();
    let yaml = write(dir.path(), "allowlist.yaml", COMPLETE_YAML_ALLOWLIST);
    let json_list = write(
        dir.path(),
        "allowlist.json",
        &serde_json::to_string(
            &COMPLETE_YAML_ALLOWLIST
                .lines()
                .skip(1)
                .map(|line| line.trim().trim_start_matches("- ").trim_matches('\''))
                .collect::<Vec<_>>(),
        )
        .expect("json"),
    );
    for allowlist in [&yaml, &json_list] {
        let report_path = dir.path().join("report.json");
        let stdout = success(audit(
            &allowlist.display().to_string(),
            &spec,
            &["--format", "json", "-o", &report_path.display().to_string()],
        ));
        assert!(
            stdout.starts_with("PASS: 7 required, 7 covered, 0 missing, 0 over-broad"),
            "{stdout}"
        );
        let report: AuditReport =
            serde_json::from_slice(&std::fs::read(&report_path).expect("report")).expect("typed report");
        assert!(
            report.verdict.passed && report.allowlist_valid,
            "{:?}",
            report.verdict
        );
        assert!(report.entries.is_empty(), "{:?}", report.entries);
        // The typed report writes back to the same JSON.
        let again: AuditReport =
            serde_json::from_str(&serde_json::to_string(&report).expect("json")).expect("json");
        assert_eq!(again, report);
    }

    let allowlist = yaml.display().to_string();
    let markdown = dir.path().join("report.md");
    success(audit(
        &allowlist,
        &spec,
        &["--format", "markdown", "-o", &markdown.display().to_string()],
    ));
    let markdown = std::fs::read_to_string(markdown).expect("markdown");
    assert!(markdown.starts_with("# Allowlist audit: PASS\n"), "{markdown}");
    assert!(
        markdown.contains(
            "| covered | `https://registry.k8s.io:443/v2/` | registry API | registry.k8s.io (item 6) |"
        ),
        "{markdown}"
    );
    assert!(markdown.contains("| input | source | digest |"));

    let html = dir.path().join("report.html");
    success(audit(
        &allowlist,
        &spec,
        &["--format", "html", "-o", &html.display().to_string()],
    ));
    let page = std::fs::read_to_string(&html).expect("html");
    assert!(
        !page.contains("src=") && !page.contains("href=") && !page.contains("@import"),
        "external assets"
    );
    let dom = chromium_dom(&html);
    assert!(
        dom.contains(r#"id="verdict" class="pass" data-passed="true">PASS<"#),
        "{dom}"
    );
    assert!(dom.contains("7 required, 7 covered, 0 missing, 0 over-broad"));

    // A failing audit's HTML says so, and the file is still written.
    let failing = write(dir.path(), "partial.txt", "registry-1.docker.io\n");
    let output = audit(
        &failing.display().to_string(),
        &spec,
        &["--format", "html", "-o", &html.display().to_string()],
    );
    assert_eq!(output.status.code(), Some(AUDIT_FAILED));
    let dom = chromium_dom(&html);
    assert!(
        dom.contains(r#"id="verdict" class="fail" data-passed="false">FAIL<"#),
        "{dom}"
    );
    assert!(
        dom.contains("https://registry.k8s.io:443/v2/ (registry API) is not covered"),
        "{dom}"
    );
}

/// The DOM of a local HTML file after headless Chromium has loaded it.
fn chromium_dom(file: &Path) -> String {
    let profile = tempfile::tempdir().expect("chromium profile");
    let output = std::process::Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", file.display()))
        .output()
        .expect("run chromium (scripts/install-system-deps.sh installs it)");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A server that accepts connections and never says anything.
async fn silent_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_tell_reachable_refused_tls_failure_timeout_and_unresolvable_apart() {
    let (tls, plain) = tokio::join!(
        Registry::start(RegistryFlavour::TlsBasicAuth),
        Registry::start(RegistryFlavour::Plain)
    );
    let (tls, plain) = (tls.expect("TLS registry"), plain.expect("plain registry"));
    let tls_port = tls.host().rsplit_once(':').expect("port").1.to_owned();
    let tls_host = format!("localhost:{tls_port}");
    let refused = format!("127.0.0.1:{}", closed_port());
    let silent = silent_server().await.to_string();
    // The plain registry twice: over HTTP as configured, and over HTTPS, which it cannot speak.
    let plain_http = plain.host();
    let plain_as_https = format!("localhost:{}", plain_http.rsplit_once(':').expect("port").1);
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = write(
        dir.path(),
        "coder.yaml",
        &format!(
            "name: coder\nversion: 1.0.0\nplatforms: [linux/amd64]\nimages:\n\
             - name: secured\n  ref: {tls_host}/team/app:1\n\
             - name: plain\n  ref: {plain_http}/team/app:1\n\
             - name: not-tls\n  ref: {plain_as_https}/team/app:1\n\
             - name: refused\n  ref: {refused}/team/app:1\n\
             - name: silent\n  ref: {silent}/team/app:1\n\
             - name: nowhere\n  ref: nothing-here.invalid/team/app:1\n\
             charts: []\n"
        ),
    );
    // Everything is allowed: the verdicts below are about reachability alone. `localhost` is
    // allowed through its addresses, which only probing can check.
    let allowlist = write(
        dir.path(),
        "allowlist.txt",
        &format!("127.0.0.1\n::1\n{refused}\n{silent}\nnothing-here.invalid\n"),
    );
    let ca = tls.ca_file().expect("CA file").display().to_string();
    let output = audit(
        &allowlist.display().to_string(),
        &spec.display().to_string(),
        &[
            "--probe",
            "--probe-timeout",
            "1s",
            "--probe-deadline",
            "20s",
            "--registry-ca",
            &ca,
            "--insecure-registry",
            &plain_http,
            "--format",
            "json",
        ],
    );
    let report = failed_report(&output);
    assert!(report.probed);
    for endpoint in &report.endpoints {
        assert_eq!(endpoint.coverage, Coverage::Covered, "{endpoint:?}");
    }
    let probe = |url: &str| endpoint(&report, url).probe.clone().expect("probed");

    let secured = probe(&format!("https://localhost:{tls_port}/v2/"));
    assert!(secured.reachable(), "{secured:?}");
    assert_eq!(secured.http_status, Some(401));
    let certificate = secured.certificate.expect("certificate");
    assert!(certificate.subject.contains("CN=registry"), "{certificate:?}");
    assert!(
        certificate.issuer.contains("coder-install test CA"),
        "{certificate:?}"
    );

    let plain_probe = probe(&format!("http://{plain_http}/v2/"));
    assert_eq!(
        (plain_probe.reachable(), plain_probe.http_status),
        (true, Some(200))
    );

    let failure = |url: &str| probe(url).failure.map(|failure| (failure.step, failure.kind));
    assert_eq!(
        failure(&format!("https://{plain_as_https}/v2/")),
        Some((ProbeStep::Tls, FailureKind::TlsError))
    );
    assert_eq!(
        failure(&format!("https://{refused}/v2/")),
        Some((ProbeStep::Connect, FailureKind::Refused))
    );
    assert_eq!(
        failure(&format!("https://{silent}/v2/")),
        Some((ProbeStep::Tls, FailureKind::Timeout))
    );
    let nowhere = failure("https://nothing-here.invalid:443/v2/").expect("unresolvable");
    assert_eq!(nowhere.0, ProbeStep::Dns, "{nowhere:?}");
    assert_eq!(report.summary.unreachable, 4);
    assert!(
        report
            .verdict
            .reasons
            .iter()
            .any(|reason| reason.contains("not reachable from here"))
    );
}

#[test]
fn inside_a_network_namespace_probes_report_no_route() {
    // A new network namespace has no interface up, not even loopback: nothing can leave it,
    // and connecting anywhere fails with "network unreachable".
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = write(
        dir.path(),
        "coder.yaml",
        "name: coder\nversion: 1.0.0\nplatforms: [linux/amd64]\nimages:\n\
         - name: app\n  ref: 192.0.2.10:443/team/app:1\ncharts: []\n",
    );
    let allowlist = write(dir.path(), "allowlist.txt", "192.0.2.0/24\n");
    let output = std::process::Command::new("unshare")
        .args(["--net", "--"])
        .arg(env!("CARGO_BIN_EXE_coder-install"))
        .args([
            "allowlist",
            "audit",
            "--probe",
            "--probe-timeout",
            "2s",
            "--format",
            "json",
            "--allowlist",
        ])
        .arg(&allowlist)
        .arg("--spec")
        .arg(&spec)
        .output()
        .expect("run unshare (util-linux); the test needs root or user namespaces");
    let report = failed_report(&output);
    let probe = endpoint(&report, "https://192.0.2.10:443/v2/")
        .probe
        .clone()
        .expect("probed");
    let failure = probe.failure.expect("unreachable");
    assert_eq!(
        (failure.step, failure.kind),
        (ProbeStep::Connect, FailureKind::NoRoute),
        "{failure:?}"
    );
    assert_eq!(report.endpoints[0].coverage, Coverage::Covered);
}

#[test]
fn bad_allowlist_files_are_refused_or_audited_as_invalid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = write(dir.path(), "coder.yaml", PUBLIC_SPEC).display().to_string();

    let missing = dir.path().join("missing.txt").display().to_string();
    let stderr = failure(audit(&missing, &spec, &[]));
    assert!(
        stderr.contains("reading the allowlist") && stderr.contains("missing.txt"),
        "{stderr}"
    );

    let binary = dir.path().join("binary.txt");
    std::fs::write(&binary, b"ghcr.io\n\xff\xfe\n").expect("write");
    let output = audit(&binary.display().to_string(), &spec, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not UTF-8 text (invalid byte at offset 8)"));

    let empty = write(dir.path(), "empty.txt", "# nothing allowed yet\n\n");
    let output = audit(&empty.display().to_string(), &spec, &["--format", "json"]);
    let report = failed_report(&output);
    assert_eq!(report.verdict.reasons[0], "the allowlist has no entries");
    assert_eq!(report.summary.missing, 7);

    let broken_json = write(dir.path(), "broken.json", "[\"ghcr.io\",\n");
    let output = audit(&broken_json.display().to_string(), &spec, &["--format", "json"]);
    let report = failed_report(&output);
    assert!(!report.allowlist_valid);
    assert!(
        report.malformed[0]
            .reason
            .starts_with("not a JSON list of strings"),
        "{:?}",
        report.malformed
    );
}

#[test]
fn a_hundred_thousand_line_allowlist_is_audited_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = write(dir.path(), "coder.yaml", PUBLIC_SPEC).display().to_string();
    let mut text = String::with_capacity(4 << 20);
    for index in 0..100_000 {
        match index % 4 {
            0 => text.push_str(&format!("host-{index}.example.com\n")),
            1 => text.push_str(&format!("fd00:{:x}:{:x}::/48\n", index >> 16, index & 0xffff)),
            2 => text.push_str(&format!("https://svc-{index}.example.net:8443/api/\n")),
            _ => text.push_str(&format!("*.team-{index}.example.org  # team {index}\n")),
        }
    }
    text.push_str("registry-1.docker.io\n");
    let allowlist = write(dir.path(), "huge.txt", &text).display().to_string();
    let output = audit(&allowlist, &spec, &["--format", "json"]);
    let report = failed_report(&output);
    assert_eq!(report.summary.entries, 100_001);
    assert_eq!(report.summary.malformed, 0);
    assert_eq!(report.summary.covered, 1);
    assert_eq!(report.summary.unused_entries, 75_000);
    assert_eq!(
        report.entries.len(),
        100_000,
        "every entry but the used one has a finding"
    );
}
