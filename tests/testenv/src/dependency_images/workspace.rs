//! A workspace image: the `workspace-standin` program (this crate's binary) standing in for
//! code-server and the envagent, with busybox as its shell.

use std::sync::OnceLock;

use super::{
    DESCRIPTION_LABEL, User, cached, stand_in_description, with_busybox, with_shared_libraries, with_users,
    workspace_program,
};
use crate::Result;
use crate::fixture::{Image, ImageBuilder, LayerBuilder};

/// The stand-in program's name, as cargo builds it.
const PROGRAM: &str = "workspace-standin";

/// Where the program is in the image.
const ENTRYPOINT: &str = "/usr/local/bin/workspace-standin";

/// The workspace user's uid and gid (as in `codercom/enterprise-base`).
const CODER_ID: u32 = 1000;

/// A workspace: HTTP on 13337 (code-server stand-in), terminal WebSocket on 26337, TCP echo on 12212.
///
/// Stands in for `codercom/enterprise-base:ubuntu` (code-server plus the envagent); the servers
/// are `workspace-standin` (see its documentation): any HTTP path answers a small page that
/// names it, WebSockets on 13337 echo, each terminal WebSocket runs `/bin/sh` (busybox), and
/// 12212 echoes bytes. Runs as `coder` (1000:1000, home `/home/coder`); `/tmp` is 1777.
///
/// The program is this crate's binary, which only `cargo build -p coder-testenv --bin
/// workspace-standin` builds for other crates' tests: it is looked up next to the running test
/// executable, then in `$CARGO_TARGET_DIR/debug`, else [`Error::MissingBinary`](crate::Error::MissingBinary). Built once per
/// process, then cloned.
pub fn workspace_image() -> Result<Image> {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    cached(&IMAGE, build)
}

fn build() -> Result<Image> {
    let program = workspace_program(
        PROGRAM,
        "run cargo build -p coder-testenv --bin workspace-standin (scripts/test.sh does)",
    )?;
    let layer = LayerBuilder::new()
        .host_executable(ENTRYPOINT.trim_start_matches('/'), &program)?
        .directory_owned_by("home/coder", 0o755, CODER_ID.into(), CODER_ID.into());
    let layer = with_users(
        layer,
        &[User {
            name: "coder",
            id: CODER_ID,
            home: "/home/coder",
        }],
    );
    let layer = with_shared_libraries(layer, &[program])?;
    let layer = with_busybox(layer)?;
    ImageBuilder::new()
        .layer(layer)
        .label(
            DESCRIPTION_LABEL,
            &stand_in_description("codercom/enterprise-base:ubuntu (code-server and the envagent)"),
        )
        .env("HOME", "/home/coder")
        .env("SHELL", "/bin/sh")
        .user(&format!("{CODER_ID}:{CODER_ID}"))
        .working_dir("/home/coder")
        .entrypoint([ENTRYPOINT])
        .expose_tcp(13337)
        .expose_tcp(26337)
        .expose_tcp(12212)
        .build()
}
