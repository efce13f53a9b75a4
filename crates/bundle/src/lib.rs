//! coder-bundle: making the one file that crosses the air gap, and checking it on the other
//! side (`lock`, `bundle`, `verify` and `inspect`). The file format itself is
//! [`coder_bundle_spec::format`].
//!
//! Two halves over a shared floor:
//! - [`make`], the vendor's side: resolving the spec's tags to digests ([`make::lock`]), then
//!   the bundle ([`make::create`]): plan, layout, fill from the [`make::cache`] or the registry,
//!   resumable through a journal. A finished bundle is kept in the cache as a pack (a hard
//!   link), so that the same inputs next time give a link, not a download.
//! - [`read`], the site's side: a bundle opened once ([`read::OpenedBundle`]), verified
//!   ([`read::verify`]), its images' cosign signatures checked offline
//!   ([`read::image_signatures`]), inspected ([`read::inspect`]).
//! - Shared by both: the bundle's bytes at any offset, one file or a split bundle's parts
//!   ([`bundle_file`]), files written whole or not at all ([`write`]), parallel hashing, the
//!   bundle signature ([`signing`]) and charts packaged as OCI artifacts ([`charts`]).

pub mod bundle_file;
pub mod charts;
mod error;
mod hashing;
pub mod make;
pub mod read;
pub mod signing;
pub mod write;

pub use error::{BundleError, Result};
pub use make::create::{BundleOptions, BundleSummary, DeltaSource, Inputs, create};
