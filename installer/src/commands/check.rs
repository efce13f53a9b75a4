//! `coder-install check`: the installed platform tested as a user uses it, hop by hop.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::args::{OutputFormat, TargetArgs};
use coder_deploy::check::{CheckOptions, check};
use coder_deploy::cluster;
use coder_units::parse_duration;

/// `coder-install check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Cluster and namespace.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Send the access URL's host to ADDR instead of the ingress controller's load-balancer
    /// address (as `curl --resolve` does; HOST must be the access URL's host).
    #[arg(long, value_name = "HOST:ADDR", value_parser = parse_resolve)]
    pub resolve: Option<(String, IpAddr)>,
    /// Trust this CA certificate (PEM) for the access URL, beside the system's: the site's
    /// private CA that signed the platform's certificate.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Read the admin's password from stdin, instead of from the install's Secret
    /// `coder-admin-password` (for when the admin has changed it since).
    #[arg(long)]
    pub admin_password_stdin: bool,
    /// How long the throwaway workspace may take to start (e.g. 90s, 5m).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub workspace_timeout: Duration,
    /// Output format.
    #[arg(long = "output", value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// `HOST:ADDR` (an IPv6 address in brackets or bare after the first colon).
fn parse_resolve(text: &str) -> Result<(String, IpAddr), String> {
    let (host, address) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: expected HOST:ADDR, e.g. coder.example.com:198.51.100.7"))?;
    let address = address.trim_start_matches('[').trim_end_matches(']');
    let address: IpAddr = address
        .parse()
        .map_err(|_| format!("{address:?} is not an IP address (HOST:ADDR)"))?;
    if host.is_empty() {
        return Err(format!("{text:?}: the host is empty (HOST:ADDR)"));
    }
    Ok((host.to_owned(), address))
}

/// The admin's password from stdin, without its line ending.
fn read_admin_password() -> anyhow::Result<String> {
    let mut password = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut password)
        .map_err(|error| anyhow::anyhow!("--admin-password-stdin: reading stdin: {error}"))?;
    let password = password.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        anyhow::bail!("--admin-password-stdin: standard input was empty; pipe the admin's password in");
    }
    Ok(password)
}

/// Walks the hops and prints them; exits non-zero when any failed.
pub async fn run(args: CheckArgs) -> anyhow::Result<()> {
    let namespace = args.target.checked_namespace()?;
    let ca_pem = match &args.ca {
        Some(path) => {
            Some(std::fs::read(path).map_err(|error| anyhow::anyhow!("--ca {}: {error}", path.display()))?)
        }
        None => None,
    };
    let admin_password = match args.admin_password_stdin {
        true => Some(read_admin_password()?),
        false => None,
    };
    let cluster = cluster::connect(&args.target.cluster()).await?;
    let progress = crate::progress::for_format(args.format);
    let options = CheckOptions {
        namespace,
        resolve: args.resolve,
        ca_pem,
        admin_password,
        workspace_timeout: args.workspace_timeout,
    };
    let report = check(&cluster, &options, progress).await?;
    match args.format {
        OutputFormat::Json => super::print_json(&report)?,
        OutputFormat::Text => print!("{}", report.to_text()),
    }
    if !report.passed {
        anyhow::bail!("check failed: {}", report.failed().join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_takes_a_host_and_an_address() {
        assert_eq!(
            parse_resolve("coder.example.test:198.18.0.7"),
            Ok(("coder.example.test".to_owned(), "198.18.0.7".parse().expect("ip")))
        );
        assert_eq!(
            parse_resolve("coder.example.test:[::1]").map(|(_, ip)| ip.is_loopback()),
            Ok(true)
        );
        assert!(parse_resolve("coder.example.test").is_err());
        assert!(parse_resolve("coder.example.test:not-an-ip").is_err());
        assert!(parse_resolve(":127.0.0.1").is_err());
    }
}
