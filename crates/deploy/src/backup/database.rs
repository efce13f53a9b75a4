//! The platform's PostgreSQL as a backup sees it: where it is (the chart's StatefulSet pod, or an
//! external server), and PostgreSQL's own programs (`pg_dump`, `pg_restore`, `psql`) run
//! against it: inside the database's pod through the API server's `exec` (the image carries
//! them; nothing is installed), or on this machine for an external database.
//!
//! Every byte streams through bounded buffers both ways: a dump is read from the program's
//! standard output as it is written, a restore feeds its standard input.

use std::pin::Pin;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{AttachParams, AttachedProcess};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The in-cluster database's pod (the chart's StatefulSet `coder-postgres`, one replica).
pub const POSTGRES_POD: &str = "coder-postgres-0";
/// Its container.
const POSTGRES_CONTAINER: &str = "postgres";
/// The buffers between the API server's stream and the program.
const EXEC_BUFFER: usize = 1 << 20;
/// The most of a program's standard error (the end of it) kept for a message.
const STDERR_KEPT: usize = 4096;
/// The most of a query's answer read.
const QUERY_OUTPUT: u64 = 1 << 20;

/// Why the database could not be reached or a program failed.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The install's values do not say where the database is.
    #[error("the install record does not say where the database is ({0})")]
    Unknown(String),
    /// A read from the API server failed.
    #[error("{what}: {source}")]
    Api {
        /// What was read.
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The database pod is not running.
    #[error(
        "the database pod {namespace}/{POSTGRES_POD} is not running ({phase}): a backup and a restore need PostgreSQL up; see `kubectl -n {namespace} describe pod {POSTGRES_POD}`"
    )]
    NotRunning {
        /// The namespace.
        namespace: String,
        /// Its phase.
        phase: String,
    },
    /// A local program could not be started.
    #[error(
        "running {program} on this machine for the external database: {source} (install PostgreSQL's client programs, of the server's major version or newer)"
    )]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A program failed.
    #[error("{program} failed{where_}: {stderr}")]
    Failed {
        /// The program.
        program: String,
        /// ` in pod NS/NAME`, or nothing (this machine).
        where_: String,
        /// The end of its standard error, or the exit status.
        stderr: String,
    },
    /// Streaming to or from a program failed.
    #[error("streaming to or from {program}: {source}")]
    Stream {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Where the database is.
pub enum Location {
    /// The chart's StatefulSet: programs run in its pod.
    InCluster {
        /// The namespace's pods (boxed: an API handle is large beside the other variant).
        pods: Box<Api<Pod>>,
        /// The namespace (for messages).
        namespace: String,
    },
    /// An external server: programs run on this machine.
    External {
        /// Its host.
        host: String,
        /// Its port.
        port: u16,
        /// `sslmode`.
        ssl_mode: String,
        /// The password (from the Secret the values name).
        password: String,
    },
}

/// The platform's database, and how to run PostgreSQL's programs against it.
pub struct Database {
    /// Where it is.
    pub location: Location,
    /// The user the platform connects as.
    pub user: String,
    /// The database's name.
    pub name: String,
}

impl Database {
    /// The database an install's recorded `values` describe (`postgres.*`), in `namespace`.
    pub async fn of_install(
        client: &kube::Client,
        namespace: &str,
        values: &Value,
    ) -> Result<Self, DatabaseError> {
        let text = |pointer: &str| {
            values
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| DatabaseError::Unknown(format!("no {pointer}")))
        };
        let user = text("/postgres/user")?;
        let name = text("/postgres/database")?;
        let host = text("/postgres/host")?;
        let location = if host.is_empty() {
            let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
            let pod = pods
                .get_opt(POSTGRES_POD)
                .await
                .map_err(|source| DatabaseError::Api {
                    what: format!("reading pod {namespace}/{POSTGRES_POD}"),
                    source,
                })?;
            let phase = match pod {
                Some(pod) => pod.status.and_then(|status| status.phase).unwrap_or_default(),
                None => "there is no such pod".to_owned(),
            };
            if phase != "Running" {
                return Err(DatabaseError::NotRunning {
                    namespace: namespace.to_owned(),
                    phase,
                });
            }
            Location::InCluster {
                pods: Box::new(pods),
                namespace: namespace.to_owned(),
            }
        } else {
            let port = values
                .pointer("/postgres/port")
                .and_then(Value::as_u64)
                .and_then(|port| u16::try_from(port).ok())
                .unwrap_or(5432);
            let ssl_mode = text("/postgres/sslMode").unwrap_or_else(|_| "prefer".to_owned());
            let password = external_password(client, namespace, &text("/postgres/passwordSecret")?).await?;
            Location::External {
                host,
                port,
                ssl_mode,
                password,
            }
        };
        Ok(Self { location, user, name })
    }

    /// `in-cluster` or `external`, as a backup's manifest says.
    pub fn location_name(&self) -> &'static str {
        match self.location {
            Location::InCluster { .. } => "in-cluster",
            Location::External { .. } => "external",
        }
    }

    /// Starts `pg_dump --format=custom` of the database; its output is the returned stream.
    pub async fn dump(&self) -> Result<Running, DatabaseError> {
        let args = vec![
            "--format=custom".to_owned(),
            "--no-password".to_owned(),
            format!("--username={}", self.user),
            format!("--dbname={}", self.name),
        ];
        self.start("pg_dump", args, None).await
    }

    /// Runs `sql` with `psql` in database `database`; its unaligned, tuples-only output.
    pub async fn query(&self, database: &str, sql: &str) -> Result<String, DatabaseError> {
        let args = vec![
            "--no-psqlrc".to_owned(),
            "--no-password".to_owned(),
            "--tuples-only".to_owned(),
            "--no-align".to_owned(),
            "--set=ON_ERROR_STOP=1".to_owned(),
            format!("--username={}", self.user),
            format!("--dbname={database}"),
            format!("--command={sql}"),
        ];
        let mut running = self.start("psql", args, None).await?;
        let mut output = String::new();
        let read = (&mut running.stdout)
            .take(QUERY_OUTPUT)
            .read_to_string(&mut output)
            .await;
        running.finish().await?;
        read.map_err(|source| DatabaseError::Stream {
            program: "psql".to_owned(),
            source,
        })?;
        Ok(output)
    }

    /// Feeds `length` bytes of a custom-format dump from `dump` to `pg_restore` into database
    /// `database`, in one transaction, stopping at the first error.
    pub async fn restore<R>(&self, database: &str, dump: &mut R, length: u64) -> Result<(), DatabaseError>
    where
        R: AsyncRead + Unpin + ?Sized,
    {
        let args = vec![
            "--no-password".to_owned(),
            "--exit-on-error".to_owned(),
            "--single-transaction".to_owned(),
            "--no-owner".to_owned(),
            "--no-privileges".to_owned(),
            format!("--username={}", self.user),
            format!("--dbname={database}"),
        ];
        let mut running = self.start("pg_restore", args, Some(length)).await?;
        let stream = |source| DatabaseError::Stream {
            program: "pg_restore".to_owned(),
            source,
        };
        let mut stdin = running
            .stdin
            .take()
            .ok_or_else(|| stream(std::io::Error::other("pg_restore's standard input is not open")))?;
        let copied = tokio::io::copy(&mut dump.take(length), &mut stdin).await;
        let flushed = stdin.flush().await;
        // A local program sees the end of its input when the pipe closes; in the pod, `head`
        // ends it after `length` bytes (an exec's stdin cannot be closed alone before
        // Kubernetes 1.29's protocol), so the stream stays open until the program has finished.
        let held_open = match self.location {
            Location::External { .. } => None,
            Location::InCluster { .. } => Some(stdin),
        };
        let result = running.finish().await;
        drop(held_open);
        result?;
        copied.map_err(stream)?;
        flushed.map_err(stream)?;
        Ok(())
    }

    /// Starts `program args`; `stdin_length`: the exact number of bytes that will be written
    /// to its standard input (none is opened otherwise).
    async fn start(
        &self,
        program: &str,
        args: Vec<String>,
        stdin_length: Option<u64>,
    ) -> Result<Running, DatabaseError> {
        match &self.location {
            Location::InCluster { pods, namespace } => {
                start_in_pod(pods, namespace, program, args, stdin_length).await
            }
            Location::External {
                host,
                port,
                ssl_mode,
                password,
            } => {
                let mut command = tokio::process::Command::new(program);
                command
                    .args(args)
                    .arg(format!("--host={host}"))
                    .arg(format!("--port={port}"))
                    .env("PGPASSWORD", password)
                    .env("PGSSLMODE", ssl_mode)
                    .stdin(if stdin_length.is_some() {
                        std::process::Stdio::piped()
                    } else {
                        std::process::Stdio::null()
                    })
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .kill_on_drop(true);
                let spawn = |source| DatabaseError::Spawn {
                    program: program.to_owned(),
                    source,
                };
                let mut child = command.spawn().map_err(spawn)?;
                let missing = || spawn(std::io::Error::other("a standard stream was not opened"));
                let stdout = child.stdout.take().ok_or_else(missing)?;
                let stderr = child.stderr.take().ok_or_else(missing)?;
                let stdin = child.stdin.take();
                Ok(Running::new(program, stdout, stderr, stdin, End::Local(child)))
            }
        }
    }
}

/// Starts `program args` in the database's pod.
async fn start_in_pod(
    pods: &Api<Pod>,
    namespace: &str,
    program: &str,
    args: Vec<String>,
    stdin_length: Option<u64>,
) -> Result<Running, DatabaseError> {
    let mut command = Vec::with_capacity(args.len() + 5);
    if let Some(length) = stdin_length {
        // `head` passes exactly `length` bytes and then ends the program's input.
        command.extend([
            "sh".to_owned(),
            "-c".to_owned(),
            "head -c \"$0\" | exec \"$@\"".to_owned(),
            length.to_string(),
        ]);
    }
    command.push(program.to_owned());
    command.extend(args);
    let params = AttachParams {
        container: Some(POSTGRES_CONTAINER.to_owned()),
        stdin: stdin_length.is_some(),
        stdout: true,
        stderr: true,
        tty: false,
        max_stdin_buf_size: Some(EXEC_BUFFER),
        max_stdout_buf_size: Some(EXEC_BUFFER),
        max_stderr_buf_size: Some(STDERR_KEPT),
    };
    let mut process = pods
        .exec(POSTGRES_POD, command, &params)
        .await
        .map_err(|source| DatabaseError::Api {
            what: format!("running {program} in pod {namespace}/{POSTGRES_POD} (exec)"),
            source,
        })?;
    let missing = || DatabaseError::Stream {
        program: program.to_owned(),
        source: std::io::Error::other("the exec stream has no standard output or error"),
    };
    let stdout = process.stdout().ok_or_else(missing)?;
    let stderr = process.stderr().ok_or_else(missing)?;
    let stdin = process.stdin();
    let end = End::Pod {
        process,
        place: format!(" in pod {namespace}/{POSTGRES_POD}"),
    };
    Ok(Running::new(program, stdout, stderr, stdin, end))
}

/// The password of an external database, from the Secret the values name (key `password`).
async fn external_password(
    client: &kube::Client,
    namespace: &str,
    secret: &str,
) -> Result<String, DatabaseError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let found = secrets.get(secret).await.map_err(|source| DatabaseError::Api {
        what: format!("reading the external database's password Secret {namespace}/{secret}"),
        source,
    })?;
    found
        .data
        .and_then(|data| data.get("password").map(|bytes| bytes.0.clone()))
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .map(|password| password.trim().to_owned())
        .ok_or_else(|| DatabaseError::Unknown(format!("Secret {namespace}/{secret} has no password key")))
}

/// The end of what `stream` yields (at most [`STDERR_KEPT`] bytes), read to its end so that
/// the program never waits on a full pipe.
async fn tail(mut stream: impl AsyncRead + Unpin) -> String {
    let mut kept: Vec<u8> = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(read) = stream.read(&mut buffer).await {
        if read == 0 {
            break;
        }
        kept.extend_from_slice(&buffer[..read]);
        if kept.len() > STDERR_KEPT {
            kept.drain(..kept.len() - STDERR_KEPT);
        }
    }
    String::from_utf8_lossy(&kept).trim().to_owned()
}

/// How a started program ends.
enum End {
    /// In the pod: the API server's status message says.
    Pod {
        /// The exec stream.
        process: AttachedProcess,
        /// ` in pod NS/NAME`.
        place: String,
    },
    /// On this machine.
    Local(tokio::process::Child),
}

/// A started program: its output, its input if opened, and how it ends.
pub struct Running {
    /// The program's name.
    program: String,
    /// Its standard output.
    pub stdout: Pin<Box<dyn AsyncRead + Send>>,
    /// Its standard input, when opened.
    stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    /// The end of its standard error.
    stderr: tokio::task::JoinHandle<String>,
    end: End,
}

impl Running {
    /// A started `program` with its streams; its standard error is read to its end at once.
    fn new(
        program: &str,
        stdout: impl AsyncRead + Send + 'static,
        stderr: impl AsyncRead + Unpin + Send + 'static,
        stdin: Option<impl AsyncWrite + Send + 'static>,
        end: End,
    ) -> Self {
        Self {
            program: program.to_owned(),
            stdout: Box::pin(stdout),
            stdin: stdin.map(|stdin| Box::pin(stdin) as Pin<Box<dyn AsyncWrite + Send>>),
            stderr: tokio::spawn(tail(stderr)),
            end,
        }
    }

    /// Waits for the program to end: an error with the end of its standard error unless it
    /// succeeded. The caller has read its output to the end (or no longer needs it).
    pub async fn finish(self) -> Result<(), DatabaseError> {
        let Running {
            program,
            stdout,
            stdin,
            stderr,
            end,
        } = self;
        drop(stdout);
        drop(stdin);
        let (succeeded, place, status) = match end {
            End::Pod { mut process, place } => {
                let status = match process.take_status() {
                    Some(status) => status.await,
                    None => None,
                };
                let succeeded = status
                    .as_ref()
                    .is_some_and(|status| status.status.as_deref() == Some("Success"));
                let said = status
                    .and_then(|status| status.message)
                    .unwrap_or_else(|| "the exec stream ended without an exit status".to_owned());
                (succeeded, place, said)
            }
            End::Local(mut child) => match child.wait().await {
                Ok(exit) => (exit.success(), String::new(), exit.to_string()),
                Err(error) => (false, String::new(), error.to_string()),
            },
        };
        let stderr = stderr.await.unwrap_or_default();
        if succeeded {
            return Ok(());
        }
        Err(DatabaseError::Failed {
            program,
            where_: place,
            stderr: if stderr.is_empty() {
                status
            } else {
                format!("{stderr} ({status})")
            },
        })
    }
}

/// `"name"`: an SQL identifier quoted.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`: an SQL string literal.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_quoted_with_their_quotes_doubled() {
        assert_eq!(quote_identifier("co\"der"), "\"co\"\"der\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
