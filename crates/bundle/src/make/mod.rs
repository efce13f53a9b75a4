//! Making a bundle, the vendor's side of the air gap: [`lock`] resolves the spec's tags to
//! digests; [`create`] runs the rest. [`plan`] fetches every manifest the lock names and lists
//! the blobs, [`layout`] places every entry of the tar before any blob is downloaded, [`fill`]
//! writes each blob straight into its place from the [`cache`] or the registry, recording
//! progress in the resume [`journal`], and [`writeback`] flushes what was written as it goes;
//! [`output`] is the partial file (or parts) and its commit, [`chart_package`] local charts as
//! OCI artifacts.

pub mod cache;
pub mod chart_package;
pub mod create;
pub mod fill;
pub mod journal;
pub mod layout;
pub mod lock;
pub mod output;
pub mod plan;
pub mod writeback;
