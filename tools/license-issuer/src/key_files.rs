//! Key files: one line of 64 hex digits, `NAME.key` the Ed25519 private key (seed, mode 0600)
//! and `NAME.pub` the public key. The `.pub` file is what `crates/license/keys/` compiles in (under the
//! kid `NAME`); the `.key` file is written only outside git work trees.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use ed25519_dalek::SigningKey;

/// Generates a key pair: `NAME.key` (mode 0600) into `out`, `NAME.pub` into `public_out`.
/// Refuses to overwrite either, and to write the private key inside a git work tree.
pub fn keygen(out: &Path, public_out: &Path, name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        bail!("--name `{name}` must be a plain file name stem (no slashes, not starting with '.')");
    }
    for dir in [out, public_out] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if let Some(work_tree) = git_work_tree(out)? {
        bail!(
            "{} is inside the git work tree {}: write the private key outside any repository \
             (e.g. an offline medium) and only the public key into the repository (--public-out)",
            out.display(),
            work_tree.display()
        );
    }
    let private_path = out.join(format!("{name}.key"));
    let public_path = public_out.join(format!("{name}.pub"));
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

/// The git work tree `dir` lies in (a directory of it or of an ancestor holds `.git`), if any.
fn git_work_tree(dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let dir = fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?;
    Ok(dir
        .ancestors()
        .find(|ancestor| ancestor.join(".git").exists())
        .map(Path::to_path_buf))
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
        keygen(dir.path(), dir.path(), "k1").expect("keygen");
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
        keygen(dir.path(), dir.path(), "k1").expect("keygen");
        let before = fs::read(dir.path().join("k1.key")).expect("read");
        let error = keygen(dir.path(), dir.path(), "k1").expect_err("refused");
        assert!(error.to_string().contains("refusing to overwrite"), "{error}");
        assert_eq!(fs::read(dir.path().join("k1.key")).expect("read"), before);
    }

    #[test]
    fn the_public_key_can_go_elsewhere_and_the_private_key_never_into_a_git_work_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (private_dir, repo) = (dir.path().join("offline"), dir.path().join("repo"));
        let public_dir = repo.join("crates/license/keys");
        fs::create_dir_all(repo.join(".git")).expect("mkdir");
        keygen(&private_dir, &public_dir, "k2").expect("keygen");
        assert!(private_dir.join("k2.key").exists() && !private_dir.join("k2.pub").exists());
        assert!(public_dir.join("k2.pub").exists() && !public_dir.join("k2.key").exists());
        let error = keygen(&repo.join("secrets"), &public_dir, "k3").expect_err("refused");
        assert!(error.to_string().contains("git work tree"), "{error}");
        assert!(!repo.join("secrets/k3.key").exists() && !public_dir.join("k3.pub").exists());
    }

    #[test]
    fn a_file_that_is_not_a_key_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.key");
        fs::write(&path, "not hex").expect("write");
        assert!(read_signing_key(&path).is_err());
    }
}
