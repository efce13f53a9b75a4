//! Where a workspace's ports are reached: its Service `<ws-id>.<namespace>.<domain>:PORT`, or an
//! override (for tests, and for sites whose cluster DNS differs).

use std::collections::HashMap;

use crate::workspace_names::object_name;

/// A malformed `--workspace-address` entry.
#[derive(Debug, thiserror::Error)]
#[error("--workspace-address {entry:?}: {reason} (expected ID=HOST or ID:PORT=HOST:PORT)")]
pub struct AddressError {
    /// The entry.
    pub entry: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// Maps a workspace and a port to `host:port`.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    namespace: String,
    domain: String,
    /// `(workspace id or "*", Some(port))` → `host:port`; `(id, None)` → host.
    overrides: HashMap<(String, Option<u16>), String>,
}

impl Resolver {
    /// A resolver for Services in `namespace` under `domain`, with `ID=HOST` /
    /// `ID:PORT=HOST:PORT` overrides.
    pub fn new(namespace: &str, domain: &str, entries: &[String]) -> Result<Self, AddressError> {
        let mut overrides = HashMap::new();
        for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let error = |reason| AddressError {
                entry: entry.to_owned(),
                reason,
            };
            let (key, value) = entry.split_once('=').ok_or_else(|| error("no '='"))?;
            if value.is_empty() || key.is_empty() {
                return Err(error("empty side"));
            }
            let key = match key.rsplit_once(':') {
                Some((id, port)) => {
                    let port = port.parse::<u16>().map_err(|_| error("bad port"))?;
                    if value
                        .rsplit_once(':')
                        .is_none_or(|(_, p)| p.parse::<u16>().is_err())
                    {
                        return Err(error("a port override needs HOST:PORT"));
                    }
                    (id.to_owned(), Some(port))
                }
                None => (key.to_owned(), None),
            };
            overrides.insert(key, value.to_owned());
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            domain: domain.trim_matches('.').to_owned(),
            overrides,
        })
    }

    /// `host:port` for a workspace's port: the most specific override, else its Service.
    pub fn address(&self, workspace_id: &str, port: u16) -> String {
        for id in [workspace_id, "*"] {
            if let Some(address) = self.overrides.get(&(id.to_owned(), Some(port))) {
                return address.clone();
            }
            if let Some(host) = self.overrides.get(&(id.to_owned(), None)) {
                return format!("{host}:{port}");
            }
        }
        format!(
            "{}.{}.{}:{port}",
            object_name(workspace_id),
            self.namespace,
            self.domain
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_by_default_and_overrides_by_specificity() {
        let entries = [
            "abc:13337=127.0.0.1:4000".to_owned(),
            "abc=10.0.0.9".to_owned(),
            "*=fallback.example".to_owned(),
        ];
        let resolver = Resolver::new("coder", "svc.cluster.local", &entries).expect("parses");
        assert_eq!(resolver.address("abc", 13337), "127.0.0.1:4000");
        assert_eq!(resolver.address("abc", 26337), "10.0.0.9:26337");
        assert_eq!(resolver.address("other", 12212), "fallback.example:12212");
        let plain = Resolver::new("coder", "svc", &[]).expect("parses");
        assert_eq!(plain.address("abc", 12212), "ws-abc.coder.svc:12212");
        for bad in ["abc", "=x", "abc:port=x:1", "abc:1=host"] {
            assert!(Resolver::new("n", "svc", &[bad.to_owned()]).is_err(), "{bad}");
        }
    }
}
