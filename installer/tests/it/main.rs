//! Integration tests of the `coder-install` binary, run as a user runs it, against real servers.

mod airgap_license;
mod allowlist;
mod apply;
mod backup;
mod bundle;
mod chunked_push;
mod cli;
mod credentials;
mod hardening;
mod image_signatures;
mod inventory;
mod lease;
mod license;
mod port_table;
mod push;
mod real_node;
mod rollback;
mod serve;
mod signing;
mod snapshots;
mod split_bundle;
mod world;
