//! Key files: one line of 64 hex digits, `NAME.key` the Ed25519 private key (seed, mode 0600)
//! and `NAME.pub` the public key. The `.pub` file is what `license/keys/` compiles in.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use ed25519_dalek::SigningKey;

/// Generates a key pair into `out` as `NAME.key` (mode 0600) and `NAME.pub`; refuses to
/// overwrite either.
pub fn keygen(out: &Path, name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        bail!("--name `{name}` must be a plain file name stem (no slashes, not starting with '.')");
    }
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let private_path = out.join(format!("{name}.key"));
    let public_path = out.join(format!("{name}.pub"));
    for path in [&private_path, &public_path] {
        if path.exists() {
            bail!("{} already exists; refusing to overwrite a key", path.display());
        }
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|error| anyhow::anyhow!("no randomness for a key: {error}"))?;
    let key = SigningKey::from_bytes(&seed);
    write_new(&private_path, &hex::encode(key.to_bytes()), 0o600)?;
    write_new(&public_path, &hex::encode(key.verifying_key().to_bytes()), 0o644)?;
    println!(
        "private key: {} (mode 0600; keep it offline, never commit it)",
        private_path.display()
    );
    println!("public key:  {}", public_path.display());
    Ok(())
}

/// Writes `hex` and a newline to a file that must not exist yet, created with `mode`.
fn write_new(path: &Path, hex: &str, mode: u32) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{hex}").with_context(|| format!("writing {}", path.display()))
}

/// Reads a private key file written by [`keygen`].
pub fn read_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let seed: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .with_context(|| format!("{} is not a private key file (64 hex digits)", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn keygen_writes_a_matching_pair_with_a_private_key_only_its_owner_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        keygen(dir.path(), "k1").expect("keygen");
        let private_path = dir.path().join("k1.key");
        let mode = fs::metadata(&private_path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let key = read_signing_key(&private_path).expect("read key");
        let public_hex = fs::read_to_string(dir.path().join("k1.pub")).expect("read pub");
        assert_eq!(public_hex.trim(), hex::encode(key.verifying_key().to_bytes()));
    }

    #[test]
    fn keygen_refuses_to_overwrite_and_leaves_the_old_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        keygen(dir.path(), "k1").expect("keygen");
        let before = fs::read(dir.path().join("k1.key")).expect("read");
        let error = keygen(dir.path(), "k1").expect_err("refused");
        assert!(error.to_string().contains("refusing to overwrite"), "{error}");
        assert_eq!(fs::read(dir.path().join("k1.key")).expect("read"), before);
    }

    #[test]
    fn a_file_that_is_not_a_key_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.key");
        fs::write(&path, "not hex").expect("write");
        assert!(read_signing_key(&path).is_err());
    }
}
