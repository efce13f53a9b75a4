//! coder-bundle: making the one file that crosses the air gap, and checking it on the other
//! side (`lock`, `bundle`, `verify` and `inspect`). The file format itself is
//! [`bundle_spec::format`].
//!
//! Resolving the spec's tags to digests is [`lock`]. Making a bundle ([`create`]): [`plan`] fetches every manifest named by the lock and lists the blobs;
//! [`charts`] packages local charts; [`layout`] places every entry of the tar before any blob
//! is downloaded; [`fill`] then writes each blob straight into its place, in parallel, from the
//! cache or the registry, recording progress in the resume [`journal`]. A finished bundle is
//! kept in the [`cache::BlobCache`] as a pack (a hard link), so that the same inputs next time give a
//! link, not a download.
//!
//! Images' cosign signatures, attestations and SBOMs (spec `signatures: true`) are found by
//! [`lock`], carried by [`plan`] like images, and their signatures checked offline by
//! [`image_signatures`] (`verify --image-key`).

pub mod bundle_file;
pub mod cache;
pub mod charts;
pub mod create;
mod error;
pub mod fill;
mod hashing;
pub mod image_signatures;
pub mod inspect;
pub mod journal;
pub mod layout;
pub mod lock;
pub mod plan;
pub mod read;
pub mod signing;
pub mod verify;
pub mod write;
pub mod writeback;

pub use create::{BundleOptions, BundleSummary, DeltaSource, Inputs, create};
pub use error::{BundleError, Result};
