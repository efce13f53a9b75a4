//! What `check` found: one result per hop (pass, fail or skipped, what was seen, and on a
//! failure what to look at), and the report as people read it.

use serde::Serialize;

use super::hops::Hop;

/// A hop's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// It worked as the port table says.
    Pass,
    /// It did not.
    Fail,
    /// Not tried: a hop it needs failed (or it does not apply).
    Skip,
}

/// One hop's result.
#[derive(Debug, Clone, Serialize)]
pub struct HopResult {
    /// The hop.
    #[serde(flatten)]
    pub hop: Hop,
    /// Pass, fail or skip.
    pub verdict: Verdict,
    /// What was seen (an answer, an address, an error).
    pub detail: String,
    /// On a failure: where to look, often a command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub look_at: Option<String>,
    /// How long it took, in milliseconds.
    pub millis: u64,
}

/// The whole walk.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The install's namespace.
    pub namespace: String,
    /// The access URL walked.
    pub access_url: String,
    /// The address the access URL's host was sent to (the load balancer's, `--resolve`'s, or
    /// what DNS gave).
    pub address: String,
    /// Every hop, in the order walked.
    pub hops: Vec<HopResult>,
    /// No hop failed.
    pub passed: bool,
}

impl CheckReport {
    /// The report of `hops`.
    pub fn new(namespace: String, access_url: String, address: String, hops: Vec<HopResult>) -> Self {
        let passed = hops.iter().all(|result| result.verdict != Verdict::Fail);
        Self {
            namespace,
            access_url,
            address,
            hops,
            passed,
        }
    }

    /// The names of the hops that failed.
    pub fn failed(&self) -> Vec<&str> {
        self.hops
            .iter()
            .filter(|result| result.verdict == Verdict::Fail)
            .map(|result| result.hop.name.as_str())
            .collect()
    }

    /// The report for people: one line per hop, what to look at under each failure, a summary.
    pub fn to_text(&self) -> String {
        let width = self
            .hops
            .iter()
            .map(|result| result.hop.name.len())
            .max()
            .unwrap_or(0);
        let mut text = format!(
            "check of namespace {} at {} (address {})\n",
            self.namespace, self.access_url, self.address
        );
        for result in &self.hops {
            let hop = &result.hop;
            let verdict = match result.verdict {
                Verdict::Pass => "pass",
                Verdict::Fail => "FAIL",
                Verdict::Skip => "skip",
            };
            let port = hop.port.map(|port| format!(":{port}")).unwrap_or_default();
            text.push_str(&format!(
                "{verdict}  {:<width$}  {} -> {}{port}: {}",
                hop.name,
                hop.from.name(),
                hop.to.name(),
                hop.checks
            ));
            if !result.detail.is_empty() {
                text.push_str(&format!(" ({})", result.detail));
            }
            text.push('\n');
            if let Some(look_at) = &result.look_at {
                text.push_str(&format!("      look at: {look_at}\n"));
            }
        }
        let count = |verdict: Verdict| {
            self.hops
                .iter()
                .filter(|result| result.verdict == verdict)
                .count()
        };
        let failed = self.failed();
        text.push_str(&format!(
            "{} passed, {} failed, {} skipped{}\n",
            count(Verdict::Pass),
            failed.len(),
            count(Verdict::Skip),
            if failed.is_empty() {
                String::new()
            } else {
                format!(": {}", failed.join(", "))
            }
        ));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::super::hops::{Layout, plan};
    use super::*;

    fn report(fail: &str) -> CheckReport {
        let hops = plan(&Layout {
            https: true,
            port: None,
            in_cluster_postgres: true,
        });
        let results = hops
            .into_iter()
            .map(|hop| {
                let failed = hop.name == fail;
                HopResult {
                    verdict: if failed { Verdict::Fail } else { Verdict::Pass },
                    detail: if failed {
                        "502 Bad Gateway".to_owned()
                    } else {
                        String::new()
                    },
                    look_at: failed.then(|| "kubectl -n coder get deploy coder-envproxy".to_owned()),
                    millis: 3,
                    hop,
                }
            })
            .collect();
        CheckReport::new(
            "coder".to_owned(),
            "https://coder.example.test".to_owned(),
            "198.18.0.7".to_owned(),
            results,
        )
    }

    #[test]
    fn a_failed_hop_is_named_with_what_to_look_at_and_fails_the_report() {
        let report = report("envproxy");
        assert!(!report.passed);
        assert_eq!(report.failed(), ["envproxy"]);
        let text = report.to_text();
        let line = text
            .lines()
            .find(|line| line.starts_with("FAIL  envproxy "))
            .expect("the envproxy's line");
        assert!(
            line.ends_with(" outside -> envproxy:8080: an answer of its own through the ingress to the envproxy (:8080) (502 Bad Gateway)"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{line}\n      look at: kubectl -n coder get deploy coder-envproxy\n"
            )),
            "{text}"
        );
        assert!(text.ends_with("failed, 0 skipped: envproxy\n"), "{text}");
        assert!(
            text.lines()
                .any(|line| line.starts_with("pass  terminal ")
                    && line.contains(" envproxy -> workspace:26337: ")),
            "{text}"
        );
    }

    #[test]
    fn the_json_has_every_hop_with_its_verdict() {
        let json = serde_json::to_value(report("terminal")).expect("JSON");
        assert_eq!(json["passed"], false);
        let hops = json["hops"].as_array().expect("hops");
        let terminal = hops
            .iter()
            .find(|hop| hop["name"] == "terminal")
            .expect("terminal");
        assert_eq!(terminal["verdict"], "fail");
        assert_eq!(terminal["from"], "envproxy");
        assert_eq!(terminal["to"], "workspace");
        assert_eq!(terminal["port"], 26337);
        assert_eq!(terminal["kind"], "terminal");
        assert!(terminal["look_at"].is_string());
        let editor = hops.iter().find(|hop| hop["name"] == "editor").expect("editor");
        assert_eq!(editor["verdict"], "pass");
        assert!(editor.get("look_at").is_none());
        assert!(report("none").passed);
    }
}
