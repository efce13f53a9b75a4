//! The human formats: the requirements as a text table, and the audit report as text,
//! Markdown, or one self-contained HTML file (inline style, no external assets).

use std::fmt::Write as _;

use super::endpoints::{RequiredEndpoint, Requirements};
use super::probe::ProbeResult;
use super::report::{AuditReport, EndpointReport};

/// How many entries with findings the human formats list; JSON has them all.
const ENTRY_ROWS: usize = 200;

/// The requirements as text: external endpoints, then in-cluster flows, then notes.
pub fn requirements_text(requirements: &Requirements) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Endpoints {} needs (connected mode)\n", requirements.release);
    let rows: Vec<[String; 5]> = requirements
        .endpoints
        .iter()
        .map(|endpoint| {
            [
                endpoint.url(),
                endpoint.role.label().to_owned(),
                origin_label(endpoint),
                endpoint.needed_by.join(", "),
                endpoint.why.clone(),
            ]
        })
        .collect();
    out.push_str(&table(&["ENDPOINT", "ROLE", "ORIGIN", "NEEDED BY", "WHY"], &rows));
    let _ = writeln!(out, "\nIn-cluster flows (what the NetworkPolicies allow)\n");
    let rows: Vec<[String; 4]> = requirements
        .in_cluster
        .iter()
        .map(|flow| {
            [
                flow.from.clone(),
                flow.to.clone(),
                format!("{}/{}", flow.port, flow.protocol),
                flow.purpose.clone(),
            ]
        })
        .collect();
    out.push_str(&table(&["FROM", "TO", "PORT", "PURPOSE"], &rows));
    out.push('\n');
    for note in &requirements.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

fn origin_label(endpoint: &RequiredEndpoint) -> String {
    use super::endpoints::{Evidence, Origin};
    let origin = match endpoint.origin {
        Origin::Fixed => "fixed",
        Origin::Redirect => "redirect target",
    };
    let evidence = match endpoint.evidence {
        Evidence::Spec => "spec",
        Evidence::Documented => "documented",
        Evidence::Probed => "probed",
    };
    format!("{origin} ({evidence})")
}

/// Columns padded to their widest cell (the last column is not padded).
fn table<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|header| header.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (index, cell) in cells.iter().enumerate() {
            if index + 1 == N {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ", width = widths[index]);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

fn verdict_word(report: &AuditReport) -> &'static str {
    if report.verdict.passed { "PASS" } else { "FAIL" }
}

fn probe_cell(probe: Option<&ProbeResult>) -> String {
    let Some(probe) = probe else {
        return "not probed".to_owned();
    };
    match &probe.failure {
        Some(failure) => format!(
            "{} ({}): {}",
            serde_label(&failure.kind),
            serde_label(&failure.step),
            failure.message
        ),
        None => {
            let mut text = "reachable".to_owned();
            if let Some(address) = probe.connected_to {
                let _ = write!(text, " via {address}");
            }
            if let Some(status) = probe.http_status {
                let _ = write!(text, ", /v2/ HTTP {status}");
            }
            if let Some(certificate) = &probe.certificate {
                let _ = write!(
                    text,
                    ", certificate {} until {}",
                    certificate.subject,
                    certificate.not_after.strftime("%Y-%m-%d")
                );
            }
            text
        }
    }
}

/// The kebab-case name serde gives a unit variant.
fn serde_label(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn covered_by_cell(report: &EndpointReport) -> String {
    let mut cell = report
        .covered_by
        .iter()
        .map(|entry| format!("{} ({})", entry.text, entry.location))
        .collect::<Vec<_>>()
        .join(", ");
    if let Some(detail) = &report.detail {
        if !cell.is_empty() {
            cell.push_str("; ");
        }
        cell.push_str(detail);
    }
    if cell.is_empty() { "-".to_owned() } else { cell }
}

fn endpoint_rows(report: &AuditReport) -> Vec<[String; 5]> {
    report
        .endpoints
        .iter()
        .map(|endpoint| {
            [
                endpoint.coverage.label().to_owned(),
                endpoint.endpoint.url(),
                endpoint.endpoint.role.label().to_owned(),
                covered_by_cell(endpoint),
                probe_cell(endpoint.probe.as_ref()),
            ]
        })
        .collect()
}

/// The report as plain text.
pub fn text(report: &AuditReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {}",
        verdict_word(report),
        report.summary.line(report.probed)
    );
    let _ = writeln!(
        out,
        "{} audit of the allowlist for {}, {}",
        report.tool, report.release, report.generated_at
    );
    for input in &report.inputs {
        let _ = writeln!(out, "  {}: {} ({})", input.role, input.source, input.digest);
    }
    out.push('\n');
    out.push_str(&table(
        &["VERDICT", "ENDPOINT", "ROLE", "COVERED BY", "PROBE"],
        &endpoint_rows(report),
    ));
    if !report.malformed.is_empty() {
        let _ = writeln!(out, "\nUnreadable entries (the allowlist is invalid):");
        for malformed in &report.malformed {
            let _ = writeln!(
                out,
                "  {}: {:?}: {}",
                malformed.location, malformed.text, malformed.reason
            );
        }
    }
    if !report.entries.is_empty() {
        let _ = writeln!(out, "\nEntries to look at:");
        for entry in report.entries.iter().take(ENTRY_ROWS) {
            let findings: Vec<String> = entry.findings.iter().map(|finding| finding.describe()).collect();
            let _ = writeln!(
                out,
                "  {}: {}: {}",
                entry.location,
                entry.text,
                findings.join("; ")
            );
        }
        if report.entries.len() > ENTRY_ROWS {
            let _ = writeln!(
                out,
                "  ... and {} more (--format json lists them all)",
                report.entries.len() - ENTRY_ROWS
            );
        }
    }
    out.push('\n');
    for reason in &report.verdict.reasons {
        let _ = writeln!(out, "fail: {reason}");
    }
    for warning in &report.verdict.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

/// Escapes a Markdown table cell.
fn md(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The report as Markdown.
pub fn markdown(report: &AuditReport) -> String {
    let mut out = String::new();
    markdown_header(&mut out, report);
    markdown_endpoints(&mut out, report);
    markdown_malformed(&mut out, report);
    markdown_entries(&mut out, report);
    markdown_flows(&mut out, report);
    markdown_verdict(&mut out, report);
    out
}

/// Writes the Markdown title, the summary line, who made the report and when, and the inputs table.
fn markdown_header(out: &mut String, report: &AuditReport) {
    let _ = writeln!(out, "# Allowlist audit: {}\n", verdict_word(report));
    let _ = writeln!(out, "**{}**\n", report.summary.line(report.probed));
    let _ = writeln!(
        out,
        "{} for {}, {}{}.\n",
        report.tool,
        report.release,
        report.generated_at,
        if report.probed {
            ", probed from this host"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "| input | source | digest |\n|---|---|---|");
    for input in &report.inputs {
        let _ = writeln!(
            out,
            "| {} | {} | `{}` |",
            input.role,
            md(&input.source),
            input.digest
        );
    }
}

/// Writes the Markdown table of required endpoints, one row each with its coverage and probe.
fn markdown_endpoints(out: &mut String, report: &AuditReport) {
    let _ = writeln!(out, "\n## Required endpoints\n");
    let _ = writeln!(
        out,
        "| verdict | endpoint | role | covered by | probe |\n|---|---|---|---|---|"
    );
    for [verdict, url, role, covered, probe] in endpoint_rows(report) {
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {} | {} |",
            md(&verdict),
            url,
            role,
            md(&covered),
            md(&probe)
        );
    }
}

/// Writes the Markdown table of allowlist entries that could not be read, if there are any.
fn markdown_malformed(out: &mut String, report: &AuditReport) {
    if report.malformed.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n## Unreadable entries (the allowlist is invalid)\n");
    let _ = writeln!(out, "| where | entry | problem |\n|---|---|---|");
    for malformed in &report.malformed {
        let _ = writeln!(
            out,
            "| {} | `{}` | {} |",
            malformed.location,
            md(&malformed.text),
            md(&malformed.reason)
        );
    }
}

/// Writes the Markdown table of entries with findings (at most `ENTRY_ROWS`, then a count of the rest).
fn markdown_entries(out: &mut String, report: &AuditReport) {
    if report.entries.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n## Entries to look at\n");
    let _ = writeln!(out, "| where | entry | findings |\n|---|---|---|");
    for entry in report.entries.iter().take(ENTRY_ROWS) {
        let findings: Vec<String> = entry.findings.iter().map(|finding| finding.describe()).collect();
        let _ = writeln!(
            out,
            "| {} | `{}` | {} |",
            entry.location,
            md(&entry.text),
            md(&findings.join("; "))
        );
    }
    if report.entries.len() > ENTRY_ROWS {
        let _ = writeln!(out, "\n… and {} more.", report.entries.len() - ENTRY_ROWS);
    }
}

/// Writes the Markdown table of in-cluster flows.
fn markdown_flows(out: &mut String, report: &AuditReport) {
    let _ = writeln!(out, "\n## In-cluster flows\n");
    let _ = writeln!(out, "| from | to | port | purpose |\n|---|---|---|---|");
    for flow in &report.in_cluster {
        let _ = writeln!(
            out,
            "| {} | {} | {}/{} | {} |",
            flow.from,
            flow.to,
            flow.port,
            flow.protocol,
            md(&flow.purpose)
        );
    }
}

/// Writes the Markdown verdict heading and its list of failures, warnings and notes.
fn markdown_verdict(out: &mut String, report: &AuditReport) {
    let _ = writeln!(out, "\n## Verdict: {}\n", verdict_word(report));
    for reason in &report.verdict.reasons {
        let _ = writeln!(out, "- **fail**: {}", reason);
    }
    for warning in &report.verdict.warnings {
        let _ = writeln!(out, "- warning: {}", warning);
    }
    for note in &report.notes {
        let _ = writeln!(out, "- note: {}", note);
    }
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#1d1d1f}\
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.3em .6em;\
text-align:left;vertical-align:top}th{background:#f2f2f2}code{font-size:12px}\
#verdict{font-size:1.6em;font-weight:700;padding:.4em .8em;display:inline-block;border-radius:6px}\
.pass{background:#dff5e1;color:#0b6b1d}.fail{background:#fde2e1;color:#9b1c1c}\
tr.covered td:first-child{color:#0b6b1d}tr.not-covered td:first-child{color:#9b1c1c;font-weight:700}\
tr.over-broad-only td:first-child{color:#8a5a00}";

/// The report as one HTML file with no external assets.
pub fn html(report: &AuditReport) -> String {
    let mut out = String::new();
    html_header(&mut out, report);
    html_reasons(&mut out, report);
    html_endpoints(&mut out, report);
    html_malformed(&mut out, report);
    html_entries(&mut out, report);
    html_flows(&mut out, report);
    html_notes(&mut out, report);
    out.push_str("</body></html>\n");
    out
}

/// Writes the HTML head (title, inline style), the heading, the verdict badge, the summary line,
/// who made the report and when, and the inputs table.
fn html_header(out: &mut String, report: &AuditReport) {
    let word = verdict_word(report);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Allowlist audit: {word}</title><style>{STYLE}</style></head><body>\n"
    );
    let _ = writeln!(
        out,
        "<h1>Allowlist audit for {}</h1>\n<p id=\"verdict\" class=\"{}\" data-passed=\"{}\">{word}</p>\n<p id=\"summary\"><strong>{}</strong></p>",
        tera::escape_html(&report.release),
        word.to_ascii_lowercase(),
        report.verdict.passed,
        tera::escape_html(&report.summary.line(report.probed)),
    );
    let _ = writeln!(
        out,
        "<p>{} at {}{}.</p>\n<table><tr><th>input</th><th>source</th><th>digest</th></tr>",
        tera::escape_html(&report.tool),
        report.generated_at,
        if report.probed {
            ", probed from this host"
        } else {
            ""
        }
    );
    for input in &report.inputs {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            tera::escape_html(&input.role),
            tera::escape_html(&input.source),
            tera::escape_html(&input.digest)
        );
    }
    out.push_str("</table>\n");
}

/// Writes the HTML list of the verdict's failures and warnings, if there are any.
fn html_reasons(out: &mut String, report: &AuditReport) {
    if report.verdict.reasons.is_empty() && report.verdict.warnings.is_empty() {
        return;
    }
    out.push_str("<ul id=\"reasons\">\n");
    for reason in &report.verdict.reasons {
        let _ = writeln!(out, "<li class=\"fail\">{}</li>", tera::escape_html(reason));
    }
    for warning in &report.verdict.warnings {
        let _ = writeln!(out, "<li>{}</li>", tera::escape_html(warning));
    }
    out.push_str("</ul>\n");
}

/// Writes the HTML table of required endpoints, each row classed by its coverage.
fn html_endpoints(out: &mut String, report: &AuditReport) {
    out.push_str(
        "<h2>Required endpoints</h2>\n<table id=\"endpoints\"><tr><th>verdict</th><th>endpoint</th><th>role</th><th>covered by</th><th>probe</th></tr>\n",
    );
    for (endpoint, cells) in report.endpoints.iter().zip(endpoint_rows(report)) {
        let class = serde_label(&endpoint.coverage);
        let _ = write!(out, "<tr class=\"{class}\">");
        for (index, cell) in cells.iter().enumerate() {
            if index == 1 {
                let _ = write!(out, "<td><code>{}</code></td>", tera::escape_html(cell));
            } else {
                let _ = write!(out, "<td>{}</td>", tera::escape_html(cell));
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

/// Writes the HTML table of allowlist entries that could not be read, if there are any.
fn html_malformed(out: &mut String, report: &AuditReport) {
    if report.malformed.is_empty() {
        return;
    }
    out.push_str("<h2>Unreadable entries (the allowlist is invalid)</h2>\n<table id=\"malformed\"><tr><th>where</th><th>entry</th><th>problem</th></tr>\n");
    for malformed in &report.malformed {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            malformed.location,
            tera::escape_html(&malformed.text),
            tera::escape_html(&malformed.reason)
        );
    }
    out.push_str("</table>\n");
}

/// Writes the HTML table of entries with findings (at most `ENTRY_ROWS`, then a count of the rest).
fn html_entries(out: &mut String, report: &AuditReport) {
    if report.entries.is_empty() {
        return;
    }
    out.push_str("<h2>Entries to look at</h2>\n<table id=\"entries\"><tr><th>where</th><th>entry</th><th>findings</th></tr>\n");
    for entry in report.entries.iter().take(ENTRY_ROWS) {
        let findings: Vec<String> = entry.findings.iter().map(|finding| finding.describe()).collect();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            entry.location,
            tera::escape_html(&entry.text),
            tera::escape_html(&findings.join("; "))
        );
    }
    out.push_str("</table>\n");
    if report.entries.len() > ENTRY_ROWS {
        let _ = writeln!(
            out,
            "<p>… and {} more (the JSON report lists them all).</p>",
            report.entries.len() - ENTRY_ROWS
        );
    }
}

/// Writes the HTML table of in-cluster flows.
fn html_flows(out: &mut String, report: &AuditReport) {
    out.push_str("<h2>In-cluster flows</h2>\n<table id=\"flows\"><tr><th>from</th><th>to</th><th>port</th><th>purpose</th></tr>\n");
    for flow in &report.in_cluster {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}/{}</td><td>{}</td></tr>",
            tera::escape_html(&flow.from),
            tera::escape_html(&flow.to),
            flow.port,
            flow.protocol,
            tera::escape_html(&flow.purpose)
        );
    }
    out.push_str("</table>\n");
}

/// Writes the HTML list of notes, if there are any.
fn html_notes(out: &mut String, report: &AuditReport) {
    if report.notes.is_empty() {
        return;
    }
    out.push_str("<h2>Notes</h2>\n<ul>\n");
    for note in &report.notes {
        let _ = writeln!(out, "<li>{}</li>", tera::escape_html(note));
    }
    out.push_str("</ul>\n");
}
