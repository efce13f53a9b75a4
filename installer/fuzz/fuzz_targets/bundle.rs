//! A bundle file as an attacker could hand it over: everything `verify`, `inspect`, `apply
//! --bundle`, `push` and `bundle --delta-from` read from it before trusting it. The tar index
//! walk, the bundle manifest, the OCI index and manifests, the lock and the chart archive, the
//! images' cosign signatures (`--image-key`), and (the raw input again) a split bundle's index.
//!
//! Two input forms:
//!
//! - Raw bytes: the bundle file itself (the tar index walk and whatever it reaches).
//! - Documents, when the input starts with `==== `: sections `==== <path>\n<content>`, packed
//!   into a well-formed tar by the harness. So that mutations keep the digests and sizes the
//!   readers check, `@@N` in a path or content stands for the hex SHA-256 of section N's final
//!   content and `##N` for its length (N one of `0-9a-z`, sections before this one only), and
//!   `@@.` in a path for the section's own digest (`blobs/sha256/@@.`). A
//!   section `==== <path> <chart` holds a chart's files (`---- <name>\n<content>` each) and
//!   becomes their tar.gz, as a chart layer is.
#![no_main]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use coder_bundle_spec::ImageLock;
use coder_bundle_spec::format::BundleManifest;
use coder_deploy::release::{Release, ReleaseSource};
use coder_bundle::DeltaSource;
use coder_bundle::read::image_signatures::{ImageKey, check_image_signatures};
use coder_bundle::read::inspect::inspect_bundle;
use coder_bundle::read::BundleReader;
use coder_bundle::read::verify::verify_bundle;
use coder_registry::oci::{ImageManifest, IndexDocument};
use coder_mirror::SiteRegistry;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

/// Where this process writes the bundle under test (tmpfs when there is one).
fn bundle_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| coder_install_fuzz::scratch_file("fuzz.bundle"))
}

/// Where this process writes the input again as a split bundle's index (`<name>.parts.json`).
fn parts_index_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| coder_install_fuzz::scratch_file("fuzz.split.parts.json"))
}

fn site() -> SiteRegistry {
    "registry.site:5000/mirror"
        .parse()
        .expect("a valid site registry")
}

/// An image key (ECDSA P-256) that signed nothing: every image signature must be found bad or
/// absent, never panic.
fn image_key() -> &'static ImageKey {
    static KEY: OnceLock<ImageKey> = OnceLock::new();
    KEY.get_or_init(|| {
        ImageKey::from_pem(
            "-----BEGIN PUBLIC KEY-----\n\
             MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEzo3oQErNk7FaxBId+igMPStcztpO\n\
             eH8uVyRAQuJkXqp8HSRXDbKyl7onSryPhYXdGagmq/+iFc+bs8dBlBgEEg==\n\
             -----END PUBLIC KEY-----\n",
            "fuzz.pub",
        )
        .expect("a valid P-256 key")
    })
}

/// A key that signed nothing: a signed bundle must fail to verify with it, never panic.
fn key() -> ed25519_dalek::VerifyingKey {
    ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key()
}

fn hex_digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Replaces `@@N` by the hex digest and `##N` by the length of section N, for the sections
/// already resolved (`digests` and `lengths`).
fn resolve(bytes: &[u8], digests: &[String], lengths: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let rest = &bytes[index..];
        let section = rest.get(2).and_then(|&name| match name {
            b'0'..=b'9' => Some(usize::from(name - b'0')),
            b'a'..=b'z' => Some(usize::from(name - b'a') + 10),
            _ => None,
        });
        let replacement = match section {
            Some(section) if rest.starts_with(b"@@") => digests.get(section).cloned(),
            Some(section) if rest.starts_with(b"##") => lengths.get(section).map(ToString::to_string),
            _ => None,
        };
        match replacement {
            Some(replacement) => {
                out.extend_from_slice(replacement.as_bytes());
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    out
}

/// Splits `text` at every line that starts with `marker`: (header line, content) pairs.
fn sections<'a>(text: &'a [u8], marker: &[u8]) -> Vec<(&'a [u8], &'a [u8])> {
    let mut starts = Vec::new();
    for index in 0..text.len() {
        if (index == 0 || text[index - 1] == b'\n') && text[index..].starts_with(marker) {
            starts.push(index);
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(number, &start)| {
            let end = starts
                .get(number + 1)
                .map_or(text.len(), |&next| next.saturating_sub(1).max(start));
            let section = &text[start + marker.len()..end.max(start + marker.len())];
            match section.iter().position(|&byte| byte == b'\n') {
                Some(newline) => (&section[..newline], &section[newline + 1..]),
                None => (section, &[][..]),
            }
        })
        .collect()
}

fn append(builder: &mut tar::Builder<impl Write>, path: &str, content: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_size(content.len() as u64);
    if path.ends_with('/') {
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
    }
    // Paths the tar crate refuses to write (`..`) are left out: the raw form reaches those.
    let _ = builder.append_data(
        &mut header,
        path,
        if path.ends_with('/') { &[][..] } else { content },
    );
}

/// A chart archive: `---- <name>` sections packed as a tar.gz.
fn chart_archive(content: &[u8]) -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    for (name, file) in sections(content, b"---- ") {
        append(&mut builder, &String::from_utf8_lossy(name), file);
    }
    builder
        .into_inner()
        .and_then(|encoder| encoder.finish())
        .unwrap_or_default()
}

/// The documents form, packed into a tar.
fn pack(data: &[u8]) -> Vec<u8> {
    let (mut digests, mut lengths) = (Vec::new(), Vec::new());
    let mut builder = tar::Builder::new(Vec::new());
    for (header, content) in sections(data, b"==== ") {
        let (header, chart) = match header.strip_suffix(b" <chart") {
            Some(header) => (header, true),
            None => (header, false),
        };
        let content = resolve(content, &digests, &lengths);
        let content = if chart { chart_archive(&content) } else { content };
        let own = hex_digest(&content);
        let path = String::from_utf8_lossy(&resolve(header, &digests, &lengths)).replace("@@.", &own);
        digests.push(own);
        lengths.push(content.len());
        append(&mut builder, &path, &content);
    }
    builder.into_inner().unwrap_or_default()
}

/// Every parser of a bundle's documents, on one document whatever its path.
fn parse_document(bytes: &[u8]) {
    let _ = BundleManifest::from_json(bytes).map_err(|error| error.to_string());
    if let Ok(index) = serde_json::from_slice::<IndexDocument>(bytes) {
        let wanted = [coder_bundle_spec::Platform {
            os: "linux".to_owned(),
            architecture: "arm64".to_owned(),
            variant: Some("v8".to_owned()),
        }];
        let _ = index.first_missing(&wanted);
        for entry in &index.manifests {
            let _ = entry.platform.as_ref().map(|platform| platform.to_platform());
        }
    }
    let _ = serde_json::from_slice::<ImageManifest>(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = ImageLock::from_yaml(text, "fuzz").map_err(|error| error.to_string());
        // A reference, or a signature payload's repository name.
        let _ = coder_bundle_spec::ImageReference::parse(text.trim()).map(|reference| reference.repository_name());
        let _ = coder_bundle_spec::normalised_repository_name(text.trim());
    }
}

fuzz_target!(|data: &[u8]| {
    let bytes = if data.starts_with(b"==== ") {
        pack(data)
    } else {
        data.to_vec()
    };
    let path = bundle_path();
    std::fs::write(path, &bytes).expect("writing the scratch bundle");

    if let Ok(reader) = BundleReader::open(path) {
        match reader.manifest() {
            // The images' cosign signatures: payloads, signature manifests and indexes.
            Ok(manifest) => {
                let reports = check_image_signatures(&reader, &manifest, std::slice::from_ref(image_key()));
                let _ = serde_json::to_string(&reports);
            }
            Err(error) => drop(error.to_string()),
        }
        for name in reader.entries().keys() {
            if let Ok(Some(document)) = reader.read_document(name) {
                parse_document(&document);
            }
        }
    }
    let _ = inspect_bundle(path).map(|inspection| serde_json::to_string(&inspection));
    for public_key in [None, Some(&key())] {
        if let Ok(report) = verify_bundle(path, public_key, &|_| {}) {
            let _ = (report.ok(), serde_json::to_string(&report));
        }
    }
    let _ = DeltaSource::from_bundle(path);
    let _ = Release::load(&ReleaseSource::Bundle {
        path: path.to_owned(),
        site: site(),
    })
    .map_err(|error| error.to_string());
    let _ = coder_mirror::plan_bundle(path, &site()).map_err(|error| error.to_string());

    // The raw input as a split bundle's index, opened as every command opens one (its parts
    // are not there, so it must fail with a reason).
    std::fs::write(parts_index_path(), data).expect("writing the scratch index");
    let _ = BundleReader::open(parts_index_path()).map_err(|error| error.to_string());
});
