//! Load benchmark of the manager at a site's size (not a timed test). It starts PostgreSQL from
//! `coder-testenv` and a manager on a free loopback port in this process (one tokio runtime, so
//! the load generator shares the machine's cores with the manager and PostgreSQL), and writes
//! straight into the tables 1,000 members (one argon2 hash, of a known password, shared by all),
//! 10 workspace rows each (10,000) and 1,000 API keys of the admin. Then it prints:
//!
//! 1. closed loop (the figure kept from before): `BENCH_REQUESTS` authenticated requests,
//!    `BENCH_CONCURRENCY` at a time, `GET /api/v0/users/me`, `/api/v0/workspaces` and
//!    `/api/v0/api-keys` in turn: p50, p99, max, the rate reached;
//! 2. the list endpoints, one after the other, each open loop at `BENCH_RATE` requests/s for
//!    `BENCH_SECONDS`: requests are sent on a clock whatever the answers do, and a request's
//!    latency counts from when it was due, so time queued (in the client, the kernel or the
//!    manager) is counted. The first page (100 rows) and a page deep in (after the 900th user,
//!    the 9,000th workspace, the 900th API key) of each list, and a member's own workspaces:
//!    p50, p90, p99, max, the rate achieved, failures, and the goal p99 <= 50 ms met or NOT MET;
//! 3. login (`POST /auth/basic/login`, a different member each time, so argon2 verifies every
//!    one): open loop at `BENCH_LOGIN_RATE`/s for `BENCH_SECONDS`, then a burst of
//!    `BENCH_LOGIN_BURST` at once: p50, p99, max against the goal p99 <= 300 ms, with the argon2
//!    parameters the manager hashes with and how many hashes it runs at once.
//!
//! Knobs: `BENCH_REQUESTS` (1000), `BENCH_CONCURRENCY` (8), `BENCH_RATE` (200), `BENCH_SECONDS`
//! (10), `BENCH_LOGIN_RATE` (10), `BENCH_LOGIN_BURST` (20). Run with `scripts/bench-manager.sh`
//! or `cargo benches -p coder-service --bench manager`.

#[path = "../tests/it/seed.rs"]
#[expect(dead_code, reason = "the tests' seeding module: the bench uses some of it")]
mod seed;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coder_service::cli::ManagerArgs;
use coder_service::manager::Manager;
use coder_service::manager::credentials;
use coder_service::manager::pagination::Cursor;
use coder_testenv::Postgres;
use sqlx::PgPool;
use tokio::sync::Mutex;

const PATHS: [&str; 3] = ["/api/v0/users/me", "/api/v0/workspaces", "/api/v0/api-keys"];
/// Members seeded, workspaces each, API keys of the admin.
const MEMBERS: i32 = 1000;
const WORKSPACES_EACH: i32 = 10;
const ADMIN_API_KEYS: i32 = 1000;
/// The password of every seeded member.
const MEMBER_PASSWORD: &str = "bench-member-password";
const LIST_GOAL: Duration = Duration::from_millis(50);
const LOGIN_GOAL: Duration = Duration::from_millis(300);

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// The manager under test, its admin's token and a way to stop it.
struct Bench {
    base: String,
    http: reqwest::Client,
    admin: String,
    pool: PgPool,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), coder_service::manager::StartError>>,
    _postgres: Postgres,
    _password_file: tempfile::NamedTempFile,
}

impl Bench {
    async fn start() -> anyhow::Result<Self> {
        let postgres = Postgres::start().await?;
        let url = postgres.create_database("coder").await?;
        let password_file = tempfile::NamedTempFile::new()?;
        std::fs::write(password_file.path(), "bench-admin-password")?;
        let mut args = ManagerArgs::for_database(&url);
        args.admin_password_file = Some(password_file.path().to_owned());
        // Every login comes from 127.0.0.1: the per-address bucket must not be what is measured.
        args.login_burst = 1_000_000;
        args.login_per_minute = 1_000_000;
        let manager = Manager::start(args.into(), None).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(manager.serve(listener, async move {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder().no_proxy().build()?;
        let mut bench = Self {
            base,
            http,
            admin: String::new(),
            pool: PgPool::connect(&url).await?,
            stop,
            server,
            _postgres: postgres,
            _password_file: password_file,
        };
        bench.admin = bench.login("admin@coder.local", "bench-admin-password").await?;
        Ok(bench)
    }

    async fn login(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let login: serde_json::Value = self
            .http
            .post(format!("{}/auth/basic/login", self.base))
            .json(&serde_json::json!({ "email": email, "password": password }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token = login["session_token"].as_str().unwrap_or_default().to_owned();
        anyhow::ensure!(!token.is_empty(), "login returned no token: {login}");
        Ok(token)
    }

    /// One authenticated GET, its body read; an error unless it succeeded.
    fn get(&self, path: &str, token: &str) -> impl Future<Output = anyhow::Result<()>> + Send + 'static {
        let request = self
            .http
            .get(format!("{}{path}", self.base))
            .header("Session-Token", token);
        let path = path.to_owned();
        async move {
            let response = request.send().await?;
            let status = response.status();
            response.bytes().await?;
            anyhow::ensure!(status.is_success(), "{path} answered {status}");
            Ok(())
        }
    }

    /// The seeded rows.
    async fn seed(&self) -> anyhow::Result<()> {
        let password = MEMBER_PASSWORD.to_owned();
        let hash = tokio::task::spawn_blocking(move || credentials::hash_password(&password)).await??;
        let started = Instant::now();
        let members = seed::users(&self.pool, "member", MEMBERS, &hash).await;
        seed::workspaces(&self.pool, &members, "ws", WORKSPACES_EACH).await;
        let admin: String = sqlx::query_scalar("SELECT id FROM users WHERE role = 'admin'")
            .fetch_one(&self.pool)
            .await?;
        seed::api_keys(&self.pool, &admin, "key", ADMIN_API_KEYS).await;
        sqlx::query("ANALYZE").execute(&self.pool).await?;
        let count = |table: &'static str| async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&self.pool)
                .await
        };
        println!(
            "seeded in {:.1} s: {} users, {} workspaces, {} API keys (rows written straight into PostgreSQL)",
            started.elapsed().as_secs_f64(),
            count("users").await?,
            count("workspaces").await?,
            count("api_keys WHERE kind = 'api_key'").await?,
        );
        Ok(())
    }

    /// The cursor of the `row`-th row (from 1) of `table` in list order, `filter` applied.
    async fn cursor_at(&self, table: &str, filter: &str, row: i64) -> anyhow::Result<String> {
        let (created_at, id): (chrono::DateTime<chrono::Utc>, String) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT created_at, id FROM {table} WHERE {filter} ORDER BY created_at, id OFFSET $1 LIMIT 1"
            )))
            .bind(row - 1)
            .fetch_one(&self.pool)
            .await?;
        Ok(Cursor::of(created_at, &id).encode())
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.server.await??;
        Ok(())
    }
}

/// The CPU time this process (the manager and the load generator, not PostgreSQL) has used.
fn process_cpu() -> Duration {
    // /proc/self/stat: utime and stime, fields 14 and 15, in clock ticks of 10 ms.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|field| field.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// The figures of one run.
struct Figures {
    latencies: Vec<Duration>,
    failures: Vec<String>,
    wall: Duration,
    /// Cores this process kept busy on average meanwhile.
    cores: f64,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    /// `p50 p90 p99 max` in ms, then the goal's verdict on the p99 (failures miss it too).
    fn row(&self, name: &str, asked: &str, goal: Duration) -> String {
        let sorted = &self.latencies;
        if sorted.is_empty() {
            return format!(
                "{name:<52} {asked:>8} no request succeeded: {:?}",
                self.failures.first()
            );
        }
        let p99 = percentile(sorted, 99.0);
        let verdict = if p99 <= goal && self.failures.is_empty() {
            "met"
        } else {
            "NOT MET"
        };
        format!(
            "{name:<52} {asked:>6} {:>7.1}/s {:>4} {:>5.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2}  p99 <= {} ms: {verdict}",
            self.rate(),
            self.failures.len(),
            self.cores,
            ms(percentile(sorted, 50.0)),
            ms(percentile(sorted, 90.0)),
            ms(p99),
            ms(sorted.last().copied().unwrap_or_default()),
            goal.as_millis(),
        )
    }
}

fn header() -> String {
    format!(
        "{:<52} {:>6} {:>9} {:>4} {:>5} {:>7} {:>7} {:>7} {:>7}  goal",
        "scenario", "asked", "achieved", "fail", "cores", "p50 ms", "p90 ms", "p99 ms", "max ms"
    )
}

/// Sends `count` requests made by `request(n)`, the n-th due at `n / rate` seconds from the
/// start whatever the earlier ones do (open loop; `rate` infinite: all at once). A latency
/// counts from when its request was due, so it includes any wait to be sent and served.
async fn open_loop<F, Fut>(count: usize, rate: f64, request: F) -> Figures
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let start = Instant::now() + Duration::from_millis(20);
    let cpu_before = process_cpu();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..count {
        let due = start + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let sent = request(n);
        tasks.spawn(async move { sent.await.map(|()| (due.elapsed(), Instant::now())) });
    }
    let mut figures = Figures {
        latencies: Vec::with_capacity(count),
        failures: Vec::new(),
        wall: Duration::ZERO,
        cores: 0.0,
    };
    let mut last = start;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok((latency, at))) => {
                figures.latencies.push(latency);
                last = last.max(at);
            }
            Ok(Err(error)) => figures.failures.push(error.to_string()),
            Err(error) => figures.failures.push(error.to_string()),
        }
    }
    figures.latencies.sort_unstable();
    figures.wall = last
        .saturating_duration_since(start)
        .max(Duration::from_millis(1));
    figures.cores = (process_cpu() - cpu_before).as_secs_f64() / figures.wall.as_secs_f64();
    figures
}

/// The closed-loop figure kept from the first version of this bench.
async fn closed_loop(bench: &Bench, requests: usize, concurrency: usize) -> anyhow::Result<()> {
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(requests)));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (latencies, next) = (latencies.clone(), next.clone());
        let requests_of = PATHS.map(|path| (path, bench.admin.clone()));
        let (http, base) = (bench.http.clone(), bench.base.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= requests {
                    return Ok::<(), anyhow::Error>(());
                }
                let (path, token) = &requests_of[n % PATHS.len()];
                let sent = Instant::now();
                let response = http
                    .get(format!("{base}{path}"))
                    .header("Session-Token", token)
                    .send()
                    .await?;
                let status = response.status();
                response.bytes().await?;
                let elapsed = sent.elapsed();
                anyhow::ensure!(status.is_success(), "{path} answered {status}");
                latencies.lock().await.push(elapsed);
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let wall = started.elapsed();
    let mut latencies = latencies.lock().await.clone();
    latencies.sort_unstable();
    let (p50, p99) = (percentile(&latencies, 50.0), percentile(&latencies, 99.0));
    println!(
        "closed loop: {} authenticated requests (users/me, workspaces, api-keys in turn), concurrency {concurrency}, {:.0} req/s",
        latencies.len(),
        latencies.len() as f64 / wall.as_secs_f64()
    );
    println!(
        "latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (target p99 < 50 ms: {})",
        ms(p50),
        ms(p99),
        ms(latencies.last().copied().unwrap_or_default()),
        if p99 < LIST_GOAL { "met" } else { "MISSED" }
    );
    Ok(())
}

/// The list endpoints, each open loop at `rate` for `seconds`.
async fn lists(bench: &Bench, rate: usize, seconds: usize) -> anyhow::Result<()> {
    let member = bench.login("member1@example.com", MEMBER_PASSWORD).await?;
    let deep_user = bench.cursor_at("users", "TRUE", 900).await?;
    let deep_workspace = bench.cursor_at("workspaces", "TRUE", 9000).await?;
    let deep_key = bench
        .cursor_at(
            "api_keys",
            "kind = 'api_key' AND user_id = (SELECT id FROM users WHERE role = 'admin')",
            900,
        )
        .await?;
    let scenarios = [
        (
            "GET /api/v0/users (first page, 100 of 1,001)",
            "/api/v0/users".to_owned(),
            &bench.admin,
        ),
        (
            "GET /api/v0/users?after= (rows 901-1,000)",
            format!("/api/v0/users?limit=100&after={deep_user}"),
            &bench.admin,
        ),
        (
            "GET /api/v0/workspaces (admin, first 100 of 10,000)",
            "/api/v0/workspaces".to_owned(),
            &bench.admin,
        ),
        (
            "GET /api/v0/workspaces?after= (admin, 9,001-9,100)",
            format!("/api/v0/workspaces?limit=100&after={deep_workspace}"),
            &bench.admin,
        ),
        (
            "GET /api/v0/workspaces (a member's own 10)",
            "/api/v0/workspaces".to_owned(),
            &member,
        ),
        (
            "GET /api/v0/api-keys (first 100 of 1,000)",
            "/api/v0/api-keys".to_owned(),
            &bench.admin,
        ),
        (
            "GET /api/v0/api-keys?after= (keys 901-1,000)",
            format!("/api/v0/api-keys?limit=100&after={deep_key}"),
            &bench.admin,
        ),
    ];
    println!("\nlist endpoints, open loop, {rate} requests/s for {seconds} s each:");
    println!("{}", header());
    for (name, path, token) in scenarios {
        // Check the page is what it says before timing it.
        bench.get(&path, token).await?;
        let figures = open_loop(rate * seconds, rate as f64, |_| bench.get(&path, token)).await;
        println!("{}", figures.row(name, &format!("{rate}/s"), LIST_GOAL));
    }
    Ok(())
}

/// Logins, open loop at `rate` for `seconds`, then `burst` at once: each a different member.
async fn logins(bench: &Bench, rate: usize, seconds: usize, burst: usize) -> anyhow::Result<()> {
    println!(
        "\nlogin (POST /auth/basic/login, a different member each time; {}; at most {} hashes at once, the rest wait):",
        credentials::hash_parameters(),
        credentials::hashing_slots()
    );
    let hash = credentials::hash_password(MEMBER_PASSWORD)?;
    let mut single = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        anyhow::ensure!(credentials::verify_password(MEMBER_PASSWORD, &hash));
        single.push(started.elapsed());
    }
    single.sort_unstable();
    let one = single[2];
    println!(
        "one verification alone: {:.1} ms (median of 5), so a burst of {burst} on {} slots ends after at least {:.0} ms",
        ms(one),
        credentials::hashing_slots(),
        ms(one) * (burst as f64 / credentials::hashing_slots() as f64).ceil()
    );
    println!("{}", header());
    let members = usize::try_from(MEMBERS)?;
    let login = |n: usize| {
        let request = bench
            .http
            .post(format!("{}/auth/basic/login", bench.base))
            .json(&serde_json::json!({
                "email": format!("member{}@example.com", n % members + 1),
                "password": MEMBER_PASSWORD,
            }));
        async move {
            let status = request.send().await?.error_for_status()?.status();
            anyhow::ensure!(status.is_success(), "login answered {status}");
            Ok(())
        }
    };
    let steady = open_loop(rate * seconds, rate as f64, login).await;
    println!(
        "{}",
        steady.row(
            "POST /auth/basic/login (steady)",
            &format!("{rate}/s"),
            LOGIN_GOAL
        )
    );
    let offset = rate * seconds;
    let burst_figures = open_loop(burst, f64::INFINITY, |n| login(offset + n)).await;
    println!(
        "{}",
        burst_figures.row(
            &format!("POST /auth/basic/login (burst of {burst} at once)"),
            "burst",
            LOGIN_GOAL
        )
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let requests = env_number("BENCH_REQUESTS", 1000);
    let concurrency = env_number("BENCH_CONCURRENCY", 8).max(1);
    let rate = env_number("BENCH_RATE", 200).max(1);
    let seconds = env_number("BENCH_SECONDS", 10).max(1);
    let login_rate = env_number("BENCH_LOGIN_RATE", 10).max(1);
    let login_burst = env_number("BENCH_LOGIN_BURST", 20).max(1);

    println!(
        "manager bench: {} CPUs, load average before: {}",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let bench = Bench::start().await?;
    bench.seed().await?;
    // Warm up connections and the pool.
    for path in PATHS {
        bench.get(path, &bench.admin).await?;
    }
    closed_loop(&bench, requests, concurrency).await?;
    lists(&bench, rate, seconds).await?;
    logins(&bench, login_rate, seconds, login_burst).await?;
    bench.stop().await
}
