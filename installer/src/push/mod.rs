//! Pushing a bundle into a site registry: every image and chart under
//! `PREFIX/<original repository path>`, manifests byte for byte, streamed from the bundle file
//! (see [`push_bundle`]); and the preflight probe that the registry takes pushes
//! ([`check_registry_writable`]).

mod pipeline;
mod target;

#[cfg(fuzzing)]
pub use pipeline::plan_bundle;
pub use pipeline::{
    ArtifactKind, PushError, PushOptions, PushReport, PushedArtifact, WritableCheck, check_registry_writable,
    push_bundle,
};
pub use target::{SiteRegistry, SiteRegistryError};
