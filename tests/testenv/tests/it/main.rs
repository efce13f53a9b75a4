//! Smoke tests: each test server is real, reachable, and usable through the crates the project
//! uses in production (`oci-client`, `kube`, `sqlx`), and fixture images are readable by an
//! independent client (`skopeo`).

mod dependency_images;
mod fixture;
mod kubernetes;
mod node;
mod postgres;
mod registry;
