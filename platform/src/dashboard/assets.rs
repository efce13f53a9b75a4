//! The dashboard's one stylesheet (served by the dashboard: no CDN) and the security headers
//! every response carries.

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The stylesheet.
pub const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f8fa}\
header{display:flex;gap:1.5rem;align-items:center;padding:.75rem 1.5rem;background:#24292f;color:#fff}\
header a{color:#fff;margin-right:1rem}nav{display:flex;align-items:center;gap:.5rem;flex:1}\
.who{margin-left:auto;opacity:.8}main{max-width:64rem;margin:1.5rem auto;padding:0 1.5rem}\
table{border-collapse:collapse;width:100%;background:#fff}th,td{text-align:left;padding:.5rem;border-bottom:1px solid #d0d7de}\
.card{display:grid;gap:.75rem;max-width:28rem;background:#fff;padding:1rem;border:1px solid #d0d7de;border-radius:6px}\
label{display:grid;gap:.25rem}input,select{padding:.4rem}.inline{display:inline}\
button,.button{padding:.35rem .8rem;border:1px solid #1f883d;background:#1f883d;color:#fff;border-radius:6px;cursor:pointer;text-decoration:none;font-size:.9rem;margin-right:.25rem}\
button.delete{background:#cf222e;border-color:#cf222e}button.stop,button.start{background:#57606a;border-color:#57606a}\
.error{background:#ffebe9;border:1px solid #cf222e;padding:.5rem;border-radius:6px}\
.read-only{background:#fff8c5;border:1px solid #9a6700;padding:.5rem;border-radius:6px;font-weight:600}\
.notice{background:#fff8c5;border:1px solid #9a6700;padding:.5rem;border-radius:6px}\
.state{font-weight:600}.state-on{color:#1f883d}.state-off{color:#57606a}\
td.image{word-break:break-all;font-family:ui-monospace,monospace;font-size:.8rem}td.actions{white-space:nowrap}\
#terminal-output{background:#0d1117;color:#e6edf3;padding:.75rem;border-radius:6px;height:28rem;overflow:auto;white-space:pre-wrap;word-break:break-all;margin:0}\
#terminal-output .sent{color:#7ee787}#terminal-form{display:flex;gap:.5rem;margin-top:.5rem}\
#terminal-input{flex:1;font-family:ui-monospace,monospace}#terminal-status{opacity:.8}";

/// `GET /assets/style.css`.
pub async fn style() -> Response {
    let mut response = STYLE.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// Adds the security headers: a CSP allowing only the dashboard's own stylesheet and forms,
/// no framing, no MIME sniffing, no referrer leaks; pages are not cached.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    // A page that needs more (the terminal's script and WebSocket) sets its own, as strict.
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                 frame-ancestors 'none'; base-uri 'none'",
            ),
        );
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
