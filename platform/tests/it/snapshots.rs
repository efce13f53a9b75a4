//! Snapshot tests (insta) of what users read: every `coder-service --help`, and every page of
//! the dashboard, rendered by the real dashboard against a real manager (ids, CSRF tokens and
//! times redacted; the HTML a tag a line). A change to one shows as a diff of the committed
//! `snapshots/*.snap` file; review it and accept it with `cargo insta review` (or
//! `INSTA_UPDATE=always` and a look at the diff).

use coder_service::cli::DashboardArgs;
use reqwest::header::COOKIE;
use reqwest::{RequestBuilder, Response};

use crate::dashboard::start_dashboard;
use crate::envproxy::running_workspace;
use crate::harness::{ADMIN_EMAIL, Env};

/// Runs `coder-service` at a fixed help width and without the environment, so that neither the
/// terminal nor a `CODER_*` variable of the machine shows in the text.
fn help_of(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_coder-service"))
        .args(args)
        .arg("--help")
        .env_clear()
        .env("COLUMNS", "100")
        .output()
        .expect("run coder-service");
    assert!(output.status.success(), "{args:?} --help failed: {output:?}");
    String::from_utf8(output.stdout).expect("UTF-8 help")
}

#[test]
fn every_help_text() {
    let mut all = String::new();
    for component in [&[][..], &["manager"], &["envproxy"], &["dashboard"], &["migrate"]] {
        let help = help_of(component);
        let command = [&["coder-service"][..], component, &["--help"]]
            .concat()
            .join(" ");
        all.push_str(&format!("==== {command}\n{help}\n"));
    }
    insta::assert_snapshot!("help", all);
}

/// A dashboard page as a snapshot shows it: the status, then the HTML with a line break between
/// tags.
async fn page_text(request: RequestBuilder) -> String {
    let response: Response = request.send().await.expect("the dashboard answers");
    let status = response.status();
    let html = response.text().await.expect("HTML");
    format!("{status}\n{}\n", html.replace("><", ">\n<"))
}

/// What changes from run to run: ids (24 hex digits), CSRF tokens (32), times, loopback ports.
fn redactions() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"\b[0-9a-f]{32}\b", "[csrf]");
    settings.add_filter(r"\b[0-9a-f]{24}\b", "[id]");
    settings.add_filter(
        r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})",
        "[time]",
    );
    settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[port]");
    settings
}

#[tokio::test]
async fn every_dashboard_page() {
    let env = Env::with_kubernetes().await;
    let (_, member) = env.create_member("dev@example.com").await;
    let workspace = running_workspace(&env, &member, "snapshot").await;
    let base = format!(
        "http://127.0.0.1:{}",
        start_dashboard(DashboardArgs::for_manager(&env.base)).await
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let signed_in = |token: &str, request: RequestBuilder| {
        request.header(
            COOKIE,
            format!("__Host-coder_session={token}; __Host-coder_csrf={CSRF}"),
        )
    };
    let admin = env.admin_token.clone();
    let get = |token: &str, path: &str| signed_in(token, http.get(format!("{base}{path}")));
    let post = |token: &str, path: &str, form: &[(&str, &str)]| {
        let mut form = form.to_vec();
        form.push(("csrf", CSRF));
        signed_in(token, http.post(format!("{base}{path}"))).form(&form)
    };

    let mut pages = vec![
        ("login", page_text(http.get(format!("{base}/login"))).await),
        (
            "login_refused",
            page_text(post(
                "",
                "/login",
                &[("email", ADMIN_EMAIL), ("password", "wrong password")],
            ))
            .await,
        ),
        ("workspaces_admin", page_text(get(&admin, "/")).await),
        ("workspaces_member", page_text(get(&member, "/")).await),
        (
            "workspace_form_refused",
            page_text(post(
                &member,
                "/workspaces",
                &[("name", "Not A Name"), ("image", "x")],
            ))
            .await,
        ),
        (
            "terminal",
            page_text(get(&member, &format!("/workspaces/{workspace}/terminal"))).await,
        ),
        ("users", page_text(get(&admin, "/admin/users")).await),
        (
            "users_form_refused",
            page_text(post(
                &admin,
                "/admin/users",
                &[
                    ("email", "x@example.com"),
                    ("name", "X"),
                    ("password", "short"),
                    ("role", "member"),
                ],
            ))
            .await,
        ),
        (
            "users_for_a_member",
            page_text(get(&member, "/admin/users")).await,
        ),
        ("license", page_text(get(&admin, "/admin/license")).await),
        (
            "license_form_refused",
            page_text(post(&admin, "/admin/license", &[("license", "not-a-license")])).await,
        ),
        (
            "no_such_action",
            page_text(post(&member, &format!("/workspaces/{workspace}/explode"), &[])).await,
        ),
        (
            "form_without_csrf_cookie",
            page_text(http.post(format!("{base}/logout")).form(&[("csrf", CSRF)])).await,
        ),
    ];
    // At an address that is not the access URL, the login page says where to go.
    let mut elsewhere = DashboardArgs::for_manager(&env.base);
    elsewhere.access_url = "https://coder.example.com".to_owned();
    let elsewhere = format!("http://127.0.0.1:{}", start_dashboard(elsewhere).await);
    pages.push((
        "login_at_another_address",
        page_text(http.get(format!("{elsewhere}/login"))).await,
    ));

    let _redacted = redactions().bind_to_scope();
    for (name, text) in pages {
        insta::assert_snapshot!(format!("dashboard_{name}"), text);
    }
}

/// The CSRF token the signed-in requests carry, in the cookie and the form alike.
const CSRF: &str = "0123456789abcdef0123456789abcdef";
