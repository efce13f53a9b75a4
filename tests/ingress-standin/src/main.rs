//! `ingress-standin`: runs as `nginx-ingress-controller` or `kube-webhook-certgen`, chosen by
//! the file name it is run as (`/nginx-ingress-controller`, `/kube-webhook-certgen`) or else by
//! its first argument.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use ingress_standin::certgen::{self, CertgenArgs};
use ingress_standin::controller::{self, ControllerArgs};

/// The controller's program name.
const CONTROLLER: &str = "nginx-ingress-controller";
/// The certificate jobs' program name.
const CERTGEN: &str = "kube-webhook-certgen";

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let name_of = |arg: Option<&OsString>| {
        arg.and_then(|arg| Path::new(arg).file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut program = name_of(args.first());
    if program != CONTROLLER && program != CERTGEN {
        program = name_of(args.get(1));
        if program != CONTROLLER && program != CERTGEN {
            eprintln!(
                "ingress-standin: run as {CONTROLLER} or {CERTGEN} (by file name, or as the first argument)"
            );
            return ExitCode::from(2);
        }
        args.remove(0);
    }
    match run(&program, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{program}: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(program: &str, args: Vec<OsString>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if program == CONTROLLER {
        let args = ControllerArgs::parse_from(args);
        runtime.block_on(controller::run(args))?;
    } else {
        let args = CertgenArgs::parse_from(args);
        runtime.block_on(certgen::run(args))?;
    }
    Ok(())
}
