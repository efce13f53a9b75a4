//! coder-deploy: turn a bundle (air-gapped) or the lock (connected) into a running platform:
//! rendering the chart ([`render`]), and applying, recording, rolling back and waiting on a
//! cluster ([`apply`] and the modules beside it).
//!
//! [`apply::run`] is the pipeline, one function whose parts read in this order:
//!
//! 1. **verify** the bundle ([`coder_bundle::read::verify`]);
//! 2. **license** ([`license_gate`]): air-gapped installs need a valid enterprise license with
//!    the air-gap entitlement, checked offline before anything is pushed or written;
//! 3. **preflight** ([`preflight`]): API server, permissions, existing install, storage class,
//!    site registry;
//! 4. **push** the bundle into the site registry ([`coder_mirror`]);
//! 5. **render** the chart ([`render`]);
//! 6. **deploy**: when the version changes, a backup of the database first ([`backup`]); under a Lease ([`lease`]), the namespace and kept Secrets ([`secrets`]), then
//!    every object by server-side apply ([`objects`]), pruning what the previous revision had
//!    and this one does not, recorded in the namespace ([`record`]);
//! 7. **wait** for readiness ([`wait`]).
//!
//! [`check`] is `coder-install check`, the self-test of an installed platform.
//!
//! `--dry-run` runs every check and render and the server's dry run of every object, and writes
//! nothing.

pub mod apply;
pub mod backup;
pub mod check;
mod error;
pub use error::{DeployError, Result};
pub mod cluster;
pub mod lease;
pub mod license_gate;
pub mod objects;
pub mod preflight;
pub mod record;
pub mod release;
pub mod render;
pub mod revision;
pub mod rollback;
pub mod secrets;
pub mod support;
pub mod uninstall;
pub mod wait;
