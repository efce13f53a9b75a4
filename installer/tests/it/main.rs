//! Integration tests of the `coder-install` binary, run as a user runs it.

mod cli;
mod license;
