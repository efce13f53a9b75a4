//! Integration tests of the `platform-image` binary, run as the quick start runs it: on the
//! static `coder-service` that `scripts/build-platform-image.sh --profile dev` builds, against a
//! real registry, read back with skopeo.

mod bad_input;
mod build;
mod registry;
mod tool;
