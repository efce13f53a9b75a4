//! Pushing a bundle into a site registry: every image and chart under
//! `PREFIX/<original repository path>`, manifests byte for byte.

mod target;

pub use target::{SiteRegistry, SiteRegistryError};
