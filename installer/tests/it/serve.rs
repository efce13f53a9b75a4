//! `coder-install serve`: the bundle as a read-only registry, read by skopeo and by the
//! project's own registry client byte for byte; the pull API's details (HEAD, Range, tags,
//! catalog, pagination), its error codes, refused writes, TLS and basic auth; and `apply
//! --no-push` deploying from it.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use coder_registry::{CredentialStore, Credentials, RegistryClient, RegistryOptions, Repository};
use coder_testenv::{Registry, RegistryFlavour, TestCa};
use futures_util::StreamExt;
use serde_json::Value;

use crate::world::{World, failure, skopeo, skopeo_output, success};

/// The prefix the tests serve under.
const PREFIX: &str = "site/mirror";

/// A running `coder-install serve`; dropping it stops it (SIGTERM).
pub struct Served {
    child: Child,
    /// The line of JSON it printed once listening.
    pub summary: Value,
    stdout: BufReader<std::process::ChildStdout>,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Served {
    /// Starts `serve` of `bundle` on a free loopback port with `extra` flags; waits until it
    /// listens (its JSON line).
    pub fn start(bundle: &Path, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let stderr = dir.path().join("serve.stderr");
        let mut child = Command::new(env!("CARGO_BIN_EXE_coder-install"))
            .args(["serve", "--bundle"])
            .arg(bundle)
            .args(["--listen", "127.0.0.1:0", "--output", "json"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("run coder-install serve");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        stdout.read_line(&mut line).expect("read serve's JSON line");
        let summary = serde_json::from_str(&line).unwrap_or_else(|error| {
            let _ = child.wait();
            panic!(
                "serve printed no JSON line ({error}): {line:?}\nstderr: {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            )
        });
        Self {
            child,
            summary,
            stdout,
            stderr,
            _dir: dir,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.summary["listen"].as_str().expect("listen").to_owned()
    }

    /// Stops it and returns its last line of JSON (what it served); its stderr if there is none.
    pub fn stop(mut self) -> Value {
        self.terminate();
        let mut rest = String::new();
        let _ = self.stdout.read_to_string(&mut rest);
        serde_json::from_str(rest.trim()).unwrap_or_else(|error| {
            panic!(
                "no JSON line when stopped ({error}): {rest:?}\nstderr: {}",
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            )
        })
    }

    fn terminate(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// The registry client of the project, for a plain-HTTP host or with a CA and credentials.
pub(crate) fn client(host: &str, ca: Option<&Path>, credentials: Option<(&str, &str)>) -> RegistryClient {
    let mut store = CredentialStore::default();
    if let Some((username, password)) = credentials {
        store.insert(
            host,
            Credentials {
                username: username.to_owned(),
                password: password.to_owned(),
            },
        );
    }
    RegistryClient::new(RegistryOptions {
        insecure_registries: if ca.is_none() {
            vec![host.to_owned()]
        } else {
            Vec::new()
        },
        ca_files: ca.map(Path::to_path_buf).into_iter().collect(),
        credentials: store,
        attempts: 1,
        ..RegistryOptions::default()
    })
    .expect("registry client")
}

/// Pulls `reference` (tag or digest) of `repository` with the project's client, and every
/// manifest and blob under it (each child of an index that is served: a bundle may carry some
/// platforms only), checking every byte against its digest. Returns how many blobs it pulled.
pub(crate) async fn pull_all(
    client: &RegistryClient,
    repository: &Repository,
    reference: &str,
    expected_digest: &str,
) -> usize {
    let top = client.manifest(repository, reference).await.expect("manifest");
    assert_eq!(top.digest, expected_digest, "{repository}:{reference}");
    let mut manifests = vec![top.clone()];
    if top.media_type.contains("index") || top.media_type.contains("list") {
        let index: Value = serde_json::from_slice(&top.bytes).expect("index JSON");
        for child in index["manifests"].as_array().expect("children") {
            let digest = child["digest"].as_str().expect("digest");
            match client.manifest(repository, digest).await {
                Ok(fetched) => manifests.push(fetched),
                Err(coder_registry::RegistryError::ManifestNotFound { .. }) => {}
                Err(error) => panic!("{repository}@{digest}: {error}"),
            }
        }
    }
    let mut pulled = 0;
    for manifest in manifests
        .iter()
        .filter(|manifest| !manifest.media_type.contains("index"))
    {
        let document: Value = serde_json::from_slice(&manifest.bytes).expect("manifest JSON");
        let blobs =
            std::iter::once(&document["config"]).chain(document["layers"].as_array().into_iter().flatten());
        for blob in blobs {
            let digest = blob["digest"].as_str().expect("digest");
            let (response, offset) = client.blob(repository, digest, 0).await.expect("blob");
            assert_eq!(offset, 0);
            let mut stream = response.bytes_stream();
            // Test blobs are small: collected whole, then hashed.
            let mut data = Vec::new();
            while let Some(chunk) = stream.next().await {
                data.extend_from_slice(&chunk.expect("blob chunk"));
            }
            assert_eq!(
                coder_testenv::fixture::sha256_digest(&data),
                digest,
                "{repository}@{digest}"
            );
            assert_eq!(Some(data.len() as u64), blob["size"].as_u64(), "{digest}");
            pulled += 1;
        }
    }
    pulled
}

fn artifact<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["artifacts"]
        .as_array()
        .and_then(|artifacts| artifacts.iter().find(|artifact| artifact["name"] == name))
        .unwrap_or_else(|| panic!("no artifact {name} in {summary}"))
}

/// A raw HTTP/1.1 request, for paths an HTTP client library would normalise (`..`); returns
/// the status code and the body.
fn raw_get(host: &str, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(host).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    (status, body)
}

/// The first error code of a registry error body.
fn code(body: &str) -> String {
    let parsed: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"));
    parsed["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_and_the_registry_client_pull_every_image_from_serve_byte_for_byte() {
    let world = World::new(RegistryFlavour::Plain).await;
    world.write_spec(&crate::push::all_platforms(&world));
    let (bundle, _) = world.lock_and_bundle("full.bundle");
    let served = Served::start(&bundle, &["--prefix", PREFIX, "--allow-unsigned"]);
    let host = served.host();
    let summary = &served.summary;
    assert_eq!(summary["registry"], format!("{host}/{PREFIX}"));
    assert_eq!(summary["url"], format!("http://{host}"));
    assert_eq!(summary["signature"], "NOT checked (--allow-unsigned)");
    assert_eq!(
        summary["repositories"],
        serde_json::json!([
            format!("{PREFIX}/charts/coder"),
            format!("{PREFIX}/library/db"),
            format!("{PREFIX}/team/app")
        ])
    );
    let chart_digest = artifact(summary, "coder")["digest"]
        .as_str()
        .expect("chart digest")
        .to_owned();

    // skopeo reads the exact bytes: the index, both children, the schema2 image, the chart.
    let raw = |reference: &str| {
        let bytes = skopeo(
            "inspect",
            &["--raw", &format!("docker://{host}/{PREFIX}/{reference}")],
            None,
            None,
        );
        coder_testenv::fixture::sha256_digest(&bytes)
    };
    assert_eq!(raw("team/app:1.0"), world.app.digest());
    for image in &world.app.images {
        assert_eq!(raw(&format!("team/app@{}", image.digest())), image.digest());
    }
    assert_eq!(raw("library/db:13"), world.db.digest());
    assert_eq!(raw("charts/coder:1.2.3"), chart_digest);
    // A full copy of the multi-platform index and of the schema2 image: skopeo fetches and
    // checks every blob, and keeps the index as it was served.
    let copy = tempfile::tempdir().expect("tempdir");
    skopeo(
        "copy",
        &[
            "--all",
            &format!("docker://{host}/{PREFIX}/team/app:1.0"),
            &format!("oci:{}:app", copy.path().display()),
        ],
        None,
        None,
    );
    let layout: Value =
        serde_json::from_slice(&std::fs::read(copy.path().join("index.json")).expect("index.json"))
            .expect("layout index");
    assert_eq!(layout["manifests"][0]["digest"], world.app.digest());
    for image in &world.app.images {
        for blob in image.layers.iter().chain([&image.config]) {
            let path = copy
                .path()
                .join("blobs/sha256")
                .join(blob.digest.trim_start_matches("sha256:"));
            assert_eq!(std::fs::read(path).expect("copied blob"), blob.data);
        }
    }
    skopeo(
        "copy",
        &[
            &format!("docker://{host}/{PREFIX}/library/db:13"),
            &format!("oci:{}:db", copy.path().display()),
        ],
        None,
        None,
    );

    // The project's own client: every manifest and blob of every image and chart.
    let client = client(&host, None, None);
    let repository = |path: &str| Repository {
        registry: host.clone(),
        repository: format!("{PREFIX}/{path}"),
    };
    let app_blobs = pull_all(&client, &repository("team/app"), "1.0", world.app.digest()).await;
    assert_eq!(app_blobs, 6, "two platforms, each a config and two layers");
    assert_eq!(
        pull_all(&client, &repository("library/db"), "13", world.db.digest()).await,
        world.db.layers.len() + 1
    );
    assert_eq!(
        pull_all(&client, &repository("charts/coder"), "1.2.3", &chart_digest).await,
        2
    );
    drop(served);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pull_api_answers_heads_ranges_lists_and_errors_as_the_distribution_registry_does() {
    let world = World::new(RegistryFlavour::Plain).await;
    let (bundle, _) = world.lock_and_bundle("amd64.bundle");
    let served = Served::start(&bundle, &["--prefix", PREFIX, "--allow-unsigned"]);
    let host = served.host();
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{host}/v2/{path}");
    let app = |rest: &str| url(&format!("{PREFIX}/team/app/{rest}"));

    let base = http.get(url("")).send().await.expect("GET /v2/");
    assert_eq!(base.status(), 200);
    assert_eq!(base.headers()["docker-distribution-api-version"], "registry/2.0");

    // The catalog and tags, paginated with n and last.
    let catalog: Value = http
        .get(url("_catalog"))
        .send()
        .await
        .expect("catalog")
        .json()
        .await
        .expect("JSON");
    assert_eq!(catalog["repositories"].as_array().expect("repositories").len(), 3);
    let page = http.get(url("_catalog?n=1")).send().await.expect("catalog page");
    let link = page.headers()["link"].to_str().expect("link").to_owned();
    assert_eq!(
        link,
        format!("</v2/_catalog?n=1&last={PREFIX}/charts/coder>; rel=\"next\"")
    );
    let page: Value = page.json().await.expect("JSON");
    assert_eq!(
        page["repositories"],
        serde_json::json!([format!("{PREFIX}/charts/coder")])
    );
    let next: Value = http
        .get(url(&format!("_catalog?n=5&last={PREFIX}/charts/coder")))
        .send()
        .await
        .expect("next page")
        .json()
        .await
        .expect("JSON");
    assert_eq!(next["repositories"].as_array().expect("repositories").len(), 2);
    let tags: Value = http
        .get(app("tags/list"))
        .send()
        .await
        .expect("tags")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        tags,
        serde_json::json!({ "name": format!("{PREFIX}/team/app"), "tags": ["1.0"] })
    );

    // HEAD of a manifest by tag: its type, digest and length, no body. This bundle carries the
    // amd64 platform only: the index is served whole, the arm64 manifest is unknown.
    let head = http
        .head(app("manifests/1.0"))
        .send()
        .await
        .expect("HEAD manifest");
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-type"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(head.headers()["docker-content-digest"], world.app.digest());
    let length: usize = head.headers()["content-length"]
        .to_str()
        .expect("length")
        .parse()
        .expect("number");
    assert_eq!(length, world.app.index.data.len());
    assert!(head.bytes().await.expect("body").is_empty());
    let amd64 = &world.app.images[0];
    let child = http
        .get(app(&format!("manifests/{}", amd64.digest())))
        .send()
        .await
        .expect("child");
    assert_eq!(
        child.headers()["content-type"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(child.bytes().await.expect("body"), amd64.manifest.data);
    let arm64 = http
        .get(app(&format!("manifests/{}", world.app.images[1].digest())))
        .send()
        .await
        .expect("arm64");
    assert_eq!(arm64.status(), 404);
    assert_eq!(code(&arm64.text().await.expect("body")), "MANIFEST_UNKNOWN");
    let db = http
        .get(url(&format!("{PREFIX}/library/db/manifests/13")))
        .send()
        .await
        .expect("db");
    assert_eq!(
        db.headers()["content-type"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );

    // Ranges of a layer: a part, a suffix, past the end; HEAD gives the whole length.
    let layer = &amd64.layers[1];
    let blob_url = app(&format!("blobs/{}", layer.digest));
    let part = http
        .get(&blob_url)
        .header("Range", "bytes=10-19")
        .send()
        .await
        .expect("range");
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 10-19/{}", layer.data.len()).as_str()
    );
    assert_eq!(part.bytes().await.expect("body"), layer.data[10..20]);
    let suffix = http
        .get(&blob_url)
        .header("Range", "bytes=-7")
        .send()
        .await
        .expect("suffix");
    assert_eq!(suffix.status(), 206);
    assert_eq!(
        suffix.bytes().await.expect("body"),
        layer.data[layer.data.len() - 7..]
    );
    let from = http
        .get(&blob_url)
        .header("Range", "bytes=100-")
        .send()
        .await
        .expect("open range");
    assert_eq!(from.bytes().await.expect("body"), layer.data[100..]);
    let past = http
        .get(&blob_url)
        .header("Range", format!("bytes={}-", layer.data.len()))
        .send()
        .await
        .expect("past the end");
    assert_eq!(past.status(), 416);
    assert_eq!(
        past.headers()["content-range"],
        format!("bytes */{}", layer.data.len()).as_str()
    );
    let head = http.head(&blob_url).send().await.expect("HEAD blob");
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        layer.data.len().to_string().as_str()
    );
    assert_eq!(head.headers()["accept-ranges"], "bytes");
    assert_eq!(head.headers()["docker-content-digest"], layer.digest.as_str());
    let whole = http.get(&blob_url).send().await.expect("whole blob");
    assert_eq!(whole.headers()["content-type"], "application/octet-stream");
    assert_eq!(whole.bytes().await.expect("body"), layer.data);

    // Unknown things get the registry's codes and statuses.
    let unknown_digest = coder_testenv::fixture::sha256_digest(b"nothing");
    let status_and_code = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        (status, code(&response.text().await.expect("body")))
    };
    let get = |path: String| {
        let http = http.clone();
        async move { status_and_code(http.get(path).send().await.expect("GET")).await }
    };
    assert_eq!(
        get(app(&format!("blobs/{unknown_digest}"))).await,
        (404, "BLOB_UNKNOWN".to_owned())
    );
    // Blobs are per repository: the db's config is not in the app's repository.
    assert_eq!(
        get(app(&format!("blobs/{}", world.db.config.digest))).await,
        (404, "BLOB_UNKNOWN".to_owned())
    );
    assert_eq!(
        get(app("manifests/2.0")).await,
        (404, "MANIFEST_UNKNOWN".to_owned())
    );
    assert_eq!(
        get(app(&format!("manifests/{unknown_digest}"))).await,
        (404, "MANIFEST_UNKNOWN".to_owned())
    );
    assert_eq!(
        get(url("team/app/manifests/1.0")).await,
        (404, "NAME_UNKNOWN".to_owned()),
        "no prefix"
    );
    assert_eq!(
        get(url("nothing/tags/list")).await,
        (404, "NAME_UNKNOWN".to_owned())
    );
    assert_eq!(
        get(app("blobs/sha256:abc")).await,
        (400, "DIGEST_INVALID".to_owned())
    );

    // Paths that try to escape never reach a lookup (sent raw: clients normalise `..`).
    let escape = raw_get(
        &host,
        &format!("/v2/{PREFIX}/../../../etc/passwd/blobs/{}", layer.digest),
    );
    assert_eq!((escape.0, code(&escape.1)), (400, "NAME_INVALID".to_owned()));
    let escape = raw_get(
        &host,
        &format!("/v2/{PREFIX}/team/app/blobs/..%2F..%2Findex.json"),
    );
    assert_eq!((escape.0, code(&escape.1)), (400, "DIGEST_INVALID".to_owned()));
    let escape = raw_get(&host, "/v2/%2e%2e/tags/list");
    assert_eq!((escape.0, code(&escape.1)), (400, "NAME_INVALID".to_owned()));
    let outside = raw_get(&host, "/../index.json");
    assert_eq!(outside.0, 404);

    // Read-only: uploads, manifest puts and deletes are 405 UNSUPPORTED.
    for request in [
        http.post(app("blobs/uploads/")),
        http.patch(app("blobs/uploads/some-session")),
        http.put(app("manifests/2.0")).body("{}"),
        http.delete(app("manifests/1.0")),
        http.delete(app(&format!("blobs/{}", layer.digest))),
    ] {
        let response = request.send().await.expect("write");
        assert_eq!(response.headers()["allow"], "GET, HEAD");
        assert_eq!(status_and_code(response).await, (405, "UNSUPPORTED".to_owned()));
    }
    // `push` into it says the registry is read-only.
    let license = world.path("coder.license");
    std::fs::write(
        &license,
        crate::license::signed(&crate::license::claims(coder_license::Tier::Enterprise, true)),
    )
    .expect("license");
    let error = failure(world.run(&[
        "push",
        "--allow-unsigned",
        "--bundle",
        &bundle.display().to_string(),
        "--registry",
        &format!("{host}/elsewhere"),
        "--insecure-registry",
        &host,
        "--license",
        &license.display().to_string(),
    ]));
    assert!(error.contains("read-only") && error.contains("405"), "{error}");

    let stopped = served.stop();
    assert!(
        stopped["stopped"]["requests"]
            .as_u64()
            .is_some_and(|requests| requests > 30),
        "{stopped}"
    );
    assert!(
        stopped["stopped"]["blob_bytes"]
            .as_u64()
            .is_some_and(|bytes| bytes > 0),
        "{stopped}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_over_tls_with_basic_auth_lets_only_its_users_pull() {
    let world = World::new(RegistryFlavour::Plain).await;
    let (bundle, _) = world.lock_and_bundle("amd64.bundle");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new().expect("CA");
    let ca_file = dir.path().join("ca.crt");
    ca.write_cert(&ca_file).expect("CA file");
    let cert = ca
        .issue_server_cert(dir.path(), "serve")
        .expect("server certificate");
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash("pull-secret", 4).expect("bcrypt");
    std::fs::write(&htpasswd, format!("# site users\nsite-user:{hash}\n")).expect("htpasswd");
    // Trusting an earlier verify for the blobs: the manifest digest it printed, no re-hash at
    // start; the signature policy is still the one given (here: unsigned, and said so).
    let verified: Value = serde_json::from_str(&success(world.run(&[
        "verify",
        &bundle.display().to_string(),
        "--allow-unsigned",
        "--output",
        "json",
    ])))
    .expect("verify JSON");
    let manifest_digest = verified["manifest_digest"].as_str().expect("manifest digest");
    let served = Served::start(
        &bundle,
        &[
            "--verified-manifest",
            manifest_digest,
            "--allow-unsigned",
            "--tls-cert",
            &cert.cert.display().to_string(),
            "--tls-key",
            &cert.key.display().to_string(),
            "--htpasswd",
            &htpasswd.display().to_string(),
        ],
    );
    let host = served.host();
    assert_eq!(served.summary["url"], format!("https://{host}"));
    assert!(
        served.summary["signature"]
            .as_str()
            .is_some_and(|text| text.starts_with("NOT checked (--allow-unsigned")
                && text.contains("earlier verify")
                && text.contains(manifest_digest)),
        "{}",
        served.summary
    );
    assert_eq!(served.summary["registry"], host.as_str(), "no prefix");
    assert_eq!(
        (served.summary["tls"].clone(), served.summary["auth"].clone()),
        (true.into(), true.into())
    );
    let credentials = Some(("site-user", "pull-secret"));

    // skopeo with the CA and the credentials reads the image; with a wrong password it cannot.
    let raw = skopeo(
        "inspect",
        &["--raw", &format!("docker://{host}/library/db:13")],
        Some(&ca_file),
        credentials,
    );
    assert_eq!(coder_testenv::fixture::sha256_digest(&raw), world.db.digest());
    let copy = tempfile::tempdir().expect("tempdir");
    skopeo(
        "copy",
        &[
            &format!("docker://{host}/team/app:1.0"),
            &format!("oci:{}:app", copy.path().display()),
        ],
        Some(&ca_file),
        credentials,
    );
    let refused = skopeo_output(
        "inspect",
        &["--raw", &format!("docker://{host}/library/db:13")],
        Some(&ca_file),
        Some(("site-user", "wrong")),
    );
    assert!(!refused.status.success());

    // Without credentials: 401 with the Basic challenge, even for /v2/.
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).expect("CA")])
        .build()
        .expect("client");
    let anonymous = http.get(format!("https://{host}/v2/")).send().await.expect("GET");
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.headers()["www-authenticate"],
        "Basic realm=\"coder-install serve\""
    );
    assert_eq!(code(&anonymous.text().await.expect("body")), "UNAUTHORIZED");
    let wrong = http
        .get(format!("https://{host}/v2/library/db/manifests/13"))
        .basic_auth("site-user", Some("wrong"))
        .send()
        .await
        .expect("GET");
    assert_eq!(wrong.status(), 401);

    // The project's client, trusting the CA, with the credentials.
    let client = client(&host, Some(&ca_file), credentials);
    let repository = Repository {
        registry: host.clone(),
        repository: "library/db".to_owned(),
    };
    pull_all(&client, &repository, "13", world.db.digest()).await;

    let stopped = served.stop();
    assert!(
        stopped["stopped"]["unauthorized"]
            .as_u64()
            .is_some_and(|refused| refused >= 2),
        "{stopped}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_refuses_bundles_that_do_not_verify_and_bad_settings_before_listening() {
    let world = World::new(RegistryFlavour::Plain).await;
    let (bundle, _) = world.lock_and_bundle("coder.bundle");
    let bundle_arg = bundle.display().to_string();
    let run = |extra: &[&str]| {
        let mut args = vec!["serve", "--bundle", &bundle_arg, "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        world.run(&args)
    };
    // Neither --public-key nor --allow-unsigned.
    let error = failure(run(&[]));
    assert!(
        error.contains("--public-key") && error.contains("--allow-unsigned"),
        "{error}"
    );
    // An unsigned bundle with a key given.
    let key_dir = tempfile::tempdir().expect("tempdir");
    let public_key = key_dir.path().join("vendor.pub");
    let signing = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    std::fs::write(
        &public_key,
        ed25519_dalek::pkcs8::EncodePublicKey::to_public_key_pem(
            &signing.verifying_key(),
            Default::default(),
        )
        .expect("PEM"),
    )
    .expect("public key");
    let error = failure(run(&["--public-key", &public_key.display().to_string()]));
    assert!(
        error.contains("not signed") && error.contains("nothing was served"),
        "{error}"
    );
    // A non-bcrypt htpasswd, a bad prefix, half a TLS pair.
    let htpasswd = key_dir.path().join("htpasswd");
    std::fs::write(&htpasswd, "someone:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n").expect("htpasswd");
    let error = failure(run(&[
        "--allow-unsigned",
        "--htpasswd",
        &htpasswd.display().to_string(),
    ]));
    assert!(error.contains("bcrypt") && error.contains("line 1"), "{error}");
    let error = failure(run(&["--allow-unsigned", "--prefix", "Bad/../x"]));
    assert!(error.contains("--prefix"), "{error}");
    let error = failure(run(&["--allow-unsigned", "--tls-cert", "cert.pem"]));
    assert!(error.contains("--tls-key"), "{error}");
    // A manifest digest that is not this bundle's: an earlier verify was of another file.
    let other_digest = coder_testenv::fixture::sha256_digest(b"other");
    let error = failure(run(&["--verified-manifest", &other_digest, "--allow-unsigned"]));
    assert!(error.contains("changed since it was verified"), "{error}");
    // --verified-manifest does not stand in for the signature policy.
    let error = failure(run(&["--verified-manifest", &other_digest]));
    assert!(
        error.contains("--public-key") && error.contains("--allow-unsigned"),
        "{error}"
    );
    // A bundle signed by another key than the one given is refused, with or without an earlier
    // verify; with the right key, the output names the key and that blobs were not re-hashed.
    let vendor = ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]);
    let vendor_pem = key_dir.path().join("signer.pem");
    std::fs::write(
        &vendor_pem,
        ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_pem(&vendor, Default::default())
            .expect("PEM")
            .as_bytes(),
    )
    .expect("signing key");
    let vendor_pub = key_dir.path().join("signer.pub");
    std::fs::write(
        &vendor_pub,
        ed25519_dalek::pkcs8::EncodePublicKey::to_public_key_pem(&vendor.verifying_key(), Default::default())
            .expect("PEM"),
    )
    .expect("public key");
    let signed = world.path("signed.bundle");
    world.bundle_into(&signed, &["--signing-key", &vendor_pem.display().to_string()]);
    let signed_arg = signed.display().to_string();
    let verified: Value = serde_json::from_str(&success(world.run(&[
        "verify",
        &signed_arg,
        "--public-key",
        &vendor_pub.display().to_string(),
        "--output",
        "json",
    ])))
    .expect("verify JSON");
    let signed_digest = verified["manifest_digest"].as_str().expect("manifest digest");
    let serve_signed = |extra: &[&str]| {
        let mut args = vec!["serve", "--bundle", &signed_arg, "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        world.run(&args)
    };
    let wrong_key = public_key.display().to_string();
    for extra in [
        vec!["--public-key", &wrong_key, "--verified-manifest", signed_digest],
        vec!["--public-key", &wrong_key],
    ] {
        let error = failure(serve_signed(&extra));
        assert!(
            error.contains("signature does not match") && error.contains("nothing was served"),
            "{extra:?}: {error}"
        );
    }
    let served = Served::start(
        &signed,
        &[
            "--public-key",
            &vendor_pub.display().to_string(),
            "--verified-manifest",
            signed_digest,
        ],
    );
    let signature = served.summary["signature"].as_str().unwrap_or_default();
    assert!(
        signature.starts_with("verified with key ed25519:") && signature.contains("blobs not re-hashed"),
        "{signature}"
    );
    drop(served);

    // A damaged blob: verify finds it, nothing is served.
    let damaged = world.path("damaged.bundle");
    std::fs::copy(&bundle, &damaged).expect("copy");
    let layer = &world.db.layers[0];
    let bytes = std::fs::read(&damaged).expect("read");
    let at = bytes
        .windows(layer.data.len().min(64))
        .position(|window| window == &layer.data[..layer.data.len().min(64)])
        .expect("the layer's bytes in the bundle");
    let mut bytes = bytes;
    bytes[at + 1] ^= 0xff;
    std::fs::write(&damaged, bytes).expect("write");
    let output = world.run(&[
        "serve",
        "--bundle",
        &damaged.display().to_string(),
        "--listen",
        "127.0.0.1:0",
        "--allow-unsigned",
    ]);
    let error = failure(output);
    assert!(
        error.contains("corrupt") && error.contains("nothing was served"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_no_push_deploys_from_serve_and_refuses_a_registry_without_the_bundle() {
    let platform = crate::apply::Platform::start().await;
    // A split bundle: serve is given its first part, apply its shared name; both read the
    // parts in place.
    let bundle = platform.bundle_with("coder.bundle", &["--part-size", "64Ki"]);
    let index: Value = serde_json::from_slice(
        &std::fs::read(platform.path("coder.bundle.parts.json")).expect("the split bundle's index"),
    )
    .expect("index JSON");
    assert!(index["parts"].as_array().map_or(0, Vec::len) >= 2, "{index}");
    assert!(!bundle.exists(), "a split bundle is not joined");
    let first_part = platform.path("coder.bundle.part000");
    let served = Served::start(&first_part, &["--prefix", "coder", "--allow-unsigned"]);
    let host = served.host();
    let license = platform.airgap_license();
    let license = platform.text(&license);
    let apply = |registry: &str, extra: &[&str]| {
        let mut extra = extra.to_vec();
        extra.extend(["--license", &license]);
        platform.run(platform.air_gapped_apply(&bundle, registry, &extra))
    };
    let served_registry = format!("{host}/coder");

    // Without --no-push, preflight finds the registry read-only and says what to do.
    let error = failure(apply(&served_registry, &[]));
    assert!(error.contains("read-only"), "{error}");
    // An empty registry does not hold the bundle: --no-push names what is missing.
    let empty = Registry::start(RegistryFlavour::Plain).await.expect("registry");
    let error = failure(apply(&format!("{}/coder", empty.host()), &["--no-push"]));
    assert!(
        error.contains("does not hold") && error.contains("coder-install serve"),
        "{error}"
    );

    // From serve: every workload runs an image from it, by digest.
    let report = crate::apply::stdout_json(apply(&served_registry, &["--no-push", "--output", "json"]));
    assert_eq!(report["mode"], "air-gapped");
    let client = platform.client().await;
    let objects = crate::apply::managed_objects(&client, "coder").await;
    let images = crate::apply::container_images(&objects);
    assert!(images.len() >= 6, "{images:?}");
    let http = reqwest::Client::new();
    for image in &images {
        let (repository, digest) = image
            .strip_prefix(&format!("{host}/"))
            .and_then(|rest| rest.split_once('@'))
            .unwrap_or_else(|| panic!("{image} is not served by serve, by digest"));
        let status = http
            .head(format!("http://{host}/v2/{repository}/manifests/{digest}"))
            .send()
            .await
            .expect("HEAD")
            .status();
        assert_eq!(status, 200, "{image}");
    }
    let stopped = served.stop();
    assert_eq!(stopped["stopped"]["unauthorized"], 0, "{stopped}");
}

/// Downloads opened and never read by the stall test: more than tokio's blocking pool (512).
const STALLED_DOWNLOADS: usize = 600;
/// The stall test's blob: much more than the kernel buffers of a connection hold.
const BIG_BLOB: usize = 16 << 20;
/// The stall test's `--stall-timeout`, in seconds.
const STALL_TIMEOUT: u64 = 10;

/// A GET of `path` on `host` with `authorization`, sent on a socket with a small receive buffer
/// and never read: the server's writes stall once the kernel buffers are full.
async fn stalled_download(host: &str, path: &str, authorization: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let addr: std::net::SocketAddr = host.parse().expect("serve's address");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut stream = socket.connect(addr).await.expect("connect");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {authorization}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("send the request");
    stream
}

/// An htpasswd file of `users` (cost 4), in `dir`.
pub(crate) fn htpasswd_file(dir: &Path, users: &[(&str, &str)]) -> PathBuf {
    let path = dir.join("htpasswd");
    let lines: String = users
        .iter()
        .map(|(user, password)| format!("{user}:{}\n", bcrypt::hash(password, 4).expect("bcrypt")))
        .collect();
    std::fs::write(&path, lines).expect("htpasswd");
    path
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn downloads_that_never_read_do_not_stall_other_pulls() {
    let world = World::new(RegistryFlavour::Plain).await;
    let big = world.push_big_image(BIG_BLOB, 77).await;
    world.write_spec(&format!(
        "name: coder\nversion: 1.0.0\nimages:\n  - name: big\n    ref: {}/team/big:1\n  - name: db\n    ref: {}\n",
        world.registry.host(),
        world.db_ref()
    ));
    let (bundle, _) = world.lock_and_bundle("stall.bundle");
    let dir = tempfile::tempdir().expect("tempdir");
    let htpasswd = htpasswd_file(
        dir.path(),
        &[("stall", "stall-secret"), ("site-user", "pull-secret")],
    );
    let served = Served::start(
        &bundle,
        &[
            "--allow-unsigned",
            "--htpasswd",
            &htpasswd.display().to_string(),
            "--stall-timeout",
            &STALL_TIMEOUT.to_string(),
        ],
    );
    let host = served.host();

    // Hundreds of downloads of the big layer that never read a byte.
    let started = std::time::Instant::now();
    let path = format!("/v2/team/big/blobs/{}", big.layers[0].digest);
    let authorization = basic("stall", "stall-secret");
    let mut stalled = Vec::with_capacity(STALLED_DOWNLOADS);
    for _ in 0..STALLED_DOWNLOADS {
        stalled.push(stalled_download(&host, &path, &authorization).await);
    }
    // Time for the server to fill every one's buffers; all of them are open.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let port = host
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .expect("port");
    assert!(established_connections(port) >= STALLED_DOWNLOADS);

    // Meanwhile another user (a bcrypt check) pulls a whole image.
    let pull = async {
        let client = client(&host, None, Some(("site-user", "pull-secret")));
        let repository = Repository {
            registry: host.clone(),
            repository: "library/db".to_owned(),
        };
        pull_all(&client, &repository, "13", world.db.digest()).await
    };
    let pulled = tokio::time::timeout(std::time::Duration::from_secs(30), pull)
        .await
        .unwrap_or_else(|_| {
            panic!("a pull did not finish within 30 s while {STALLED_DOWNLOADS} downloads stalled")
        });
    assert_eq!(pulled, world.db.layers.len() + 1);

    // Past the stall timeout, serve has dropped every stalled download: none of its
    // connections is established any more (the client side has not read or closed a thing).
    let deadline = started + std::time::Duration::from_secs(STALL_TIMEOUT + 15);
    let mut open = established_connections(port);
    while open > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        open = established_connections(port);
    }
    assert_eq!(
        open, 0,
        "connections still open {STALL_TIMEOUT} s after they stalled"
    );
    drop(stalled);
    let stopped = served.stop();
    assert!(
        stopped["stopped"]["requests"]
            .as_u64()
            .is_some_and(|requests| requests > STALLED_DOWNLOADS as u64),
        "{stopped}"
    );
}

/// How many TCP connections on loopback port `port` (the server's side) are established, from
/// the kernel's table.
fn established_connections(port: u16) -> usize {
    const ESTABLISHED: &str = "01";
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local_port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let local = fields.next().unwrap_or_default();
            let state = fields.nth(1).unwrap_or_default();
            local.ends_with(&local_port) && state == ESTABLISHED
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_wrong_passwords_are_answered_429_without_a_password_check() {
    let world = World::new(RegistryFlavour::Plain).await;
    let (bundle, _) = world.lock_and_bundle("amd64.bundle");
    let dir = tempfile::tempdir().expect("tempdir");
    let htpasswd = htpasswd_file(dir.path(), &[("alice", "alice-secret"), ("bob", "bob-secret")]);
    let served = Served::start(
        &bundle,
        &["--allow-unsigned", "--htpasswd", &htpasswd.display().to_string()],
    );
    let url = format!("http://{}/v2/", served.host());
    let http = reqwest::Client::new();
    let get = |user: &'static str, password: &'static str| {
        let request = http.get(&url).basic_auth(user, Some(password));
        async move { request.send().await.expect("GET /v2/") }
    };
    // Alice logs in (her header is remembered), then someone guesses Bob's password.
    assert_eq!(get("alice", "alice-secret").await.status(), 200);
    for guess in 0..10 {
        assert_eq!(get("bob", "guess").await.status(), 401, "guess {guess}");
    }
    // The eleventh guess, and even Bob's right password from this client, get 429 with
    // Retry-After and no bcrypt: the budget is per client, 10 failures, then one every 6 s.
    for password in ["guess", "bob-secret"] {
        let limited = get("bob", password).await;
        assert_eq!(limited.status(), 429, "{password}");
        let retry_after: u64 = limited.headers()["retry-after"]
            .to_str()
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        assert!((1..=6).contains(&retry_after), "{retry_after}");
        assert_eq!(code(&limited.text().await.expect("body")), "TOOMANYREQUESTS");
    }
    // A header that passed before still passes.
    assert_eq!(get("alice", "alice-secret").await.status(), 200);
    let stopped = served.stop();
    assert_eq!(stopped["stopped"]["unauthorized"], 12, "{stopped}");
}
