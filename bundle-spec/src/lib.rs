//! The bundle format of coder-install, as data and types.
//!
//! A bundle is what crosses the air gap. This crate will hold, in one place, the three documents
//! that describe it:
//!
//! - the **bundle spec** (`coder.yaml`): which images and charts make up a release;
//! - the **image lock** (`images.lock`): every image of the spec pinned by digest;
//! - the **bundle manifest**: what a bundle file holds, blob by blob.
//!
//! The types arrive with the bundle issue; until then the crate only reserves its place in the
//! workspace so that the layout shows the architecture.
