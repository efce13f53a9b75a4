//! A workspace's terminal in the browser: a dashboard page whose small script (served by the
//! dashboard, no external asset) opens a WebSocket to the envproxy's
//! `/proxy/workspaces/<id>/terminal` on the same origin (the ingress routes `/proxy/` there), and
//! shows what the shell writes.
//!
//! Why here, on the platform's origin, and not on the workspace's own origin: this page and
//! its script are the platform's own code, and what the workspace sends is only ever written as
//! text (`textContent`), never as HTML or script, so no workspace content runs where the
//! dashboard's cookie lives. The envproxy accepts the dashboard's cookie for the terminal under
//! its existing rules (owner or admin, workspace running, a same-origin `Origin` on the upgrade),
//! so nothing in it changes. The page's CSP allows only the dashboard's own script and
//! same-origin connections.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use reqwest::Method;

use super::pages::{self, Frame};
use super::reply::{explain, message, page};
use super::session;
use super::signed_in::SignedIn;
use super::state::DashState;
use crate::api_types::Workspace;
use crate::html::escape;
use crate::manager_client::{Caller, path_segment};
use crate::request_id;

/// The terminal page's CSP: the dashboard's default plus its own script and same-origin
/// connections (`'self'` covers `ws:`/`wss:` to this host).
const TERMINAL_CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
     style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The script: connects, shows output as text, sends each line typed (Enter) with a newline.
pub const SCRIPT: &str = r#""use strict";
(function () {
  const root = document.getElementById("terminal");
  const output = document.getElementById("terminal-output");
  const form = document.getElementById("terminal-form");
  const input = document.getElementById("terminal-input");
  const status = document.getElementById("terminal-status");
  const interrupt = document.getElementById("terminal-interrupt");
  const limit = 200000;
  const decoder = new TextDecoder();
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const socket = new WebSocket(scheme + location.host + root.dataset.socket);
  socket.binaryType = "arraybuffer";
  function show(text, className) {
    // Escape sequences (colours, cursor moves) are dropped; what remains is shown as text.
    text = text.replace(/\x1b\][^\x07\x1b]*(\x07|\x1b\\)/g, "")
               .replace(/\x1b\[[0-9;?]*[ -\/]*[@-~]/g, "")
               .replace(/\x1b[@-_]/g, "")
               .replace(/\r\n/g, "\n").replace(/\r/g, "");
    let node = output.lastChild;
    if (className || !node || node.nodeType !== Node.TEXT_NODE) {
      node = className ? document.createElement("span") : document.createTextNode("");
      if (className) node.className = className;
      output.appendChild(node);
    }
    for (const ch of text) {
      if (ch === "\b") { node.textContent = node.textContent.slice(0, -1); }
      else if (ch !== "\x07") { node.textContent += ch; }
    }
    while (output.textContent.length > limit && output.firstChild) output.removeChild(output.firstChild);
    output.scrollTop = output.scrollHeight;
  }
  function setStatus(text, state) {
    status.textContent = text;
    root.dataset.state = state;
  }
  setStatus("Connecting…", "connecting");
  socket.addEventListener("open", function () { setStatus("Connected", "open"); input.focus(); });
  socket.addEventListener("message", function (event) {
    show(typeof event.data === "string" ? event.data : decoder.decode(event.data, { stream: true }));
  });
  socket.addEventListener("close", function (event) {
    let text = "Disconnected";
    if (event.code && event.code !== 1000) text += " (" + event.code + (event.reason ? ": " + event.reason : "") + ")";
    if (root.dataset.state === "connecting") {
      text += ". The terminal could not connect: is the workspace running, and is the platform opened at its address (where /proxy/ reaches the envproxy)?";
    }
    setStatus(text + ". Reload the page to reconnect.", "closed");
    input.disabled = true;
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (socket.readyState !== WebSocket.OPEN) return;
    const line = input.value;
    show("$ " + line + "\n", "sent");
    socket.send(line + "\n");
    input.value = "";
  });
  interrupt.addEventListener("click", function () {
    if (socket.readyState === WebSocket.OPEN) socket.send("\x03");
    input.focus();
  });
})();
"#;

/// `GET /assets/terminal.js`.
pub async fn script() -> Response {
    let mut response = SCRIPT.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// The page's content: where the WebSocket goes (`data-socket`), the output, the input line.
pub fn content(workspace: &Workspace) -> String {
    let socket = format!("/proxy/workspaces/{}/terminal", path_segment(&workspace.id));
    format!(
        "<section id=\"terminal\" data-socket=\"{socket}\" data-state=\"connecting\">\
         <p>Workspace <strong id=\"terminal-workspace\">{name}</strong> · \
         <span id=\"terminal-status\" role=\"status\">Starting…</span></p>\
         <pre id=\"terminal-output\" aria-live=\"polite\"></pre>\
         <form id=\"terminal-form\" autocomplete=\"off\">\
         <input id=\"terminal-input\" aria-label=\"Command\" spellcheck=\"false\" autocapitalize=\"off\">\
         <button type=\"submit\" id=\"terminal-send\">Send</button>\
         <button type=\"button\" id=\"terminal-interrupt\" class=\"stop\">Ctrl-C</button></form>\
         <p><a href=\"/\">Back to the workspaces</a></p></section>\
         <script src=\"/assets/terminal.js\"></script>",
        socket = escape(&socket),
        name = escape(&workspace.name),
    )
}

/// `GET /workspaces/{id}/terminal`: the terminal page of a workspace the user may see.
pub async fn page_for(
    State(state): State<DashState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    who: SignedIn,
) -> Response {
    let workspace: Result<Workspace, _> = state
        .client
        .call(
            Method::GET,
            &format!("/api/v0/workspaces/{}", path_segment(&id)),
            Caller::user(&who.token, request_id::of(&headers)),
            None,
        )
        .await;
    let workspace = match workspace {
        Ok(workspace) => workspace,
        Err(error) => {
            let (status, text) = explain(&error);
            return message(&state, &headers, status, "Terminal", &text);
        }
    };
    if workspace.state != "ON" {
        let text = format!(
            "The workspace {} is {}: start it, then open its terminal.",
            workspace.name, workspace.state
        );
        return message(&state, &headers, StatusCode::CONFLICT, "Terminal", &text);
    }
    let (csrf, cookie) = session::csrf_token(&state.config, &headers);
    let frame = Frame {
        title: "Terminal",
        user: Some(&who.user),
        csrf: &csrf,
        error: None,
        read_only: None,
    };
    let mut response = page(
        StatusCode::OK,
        [cookie],
        pages::layout(&frame, &content(&workspace)),
    );
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(TERMINAL_CSP),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_the_socket_on_its_own_origin_and_escapes_the_name() {
        let workspace: Workspace = serde_json::from_value(serde_json::json!({
            "id": "ab12", "name": "<b>dev</b>", "owner_id": "u1", "image": "i", "state": "ON",
            "cpu_cores": 1.0, "memory_gb": 2.0, "disk_gb": 10,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
        }))
        .expect("workspace");
        let html = content(&workspace);
        assert!(
            html.contains("data-socket=\"/proxy/workspaces/ab12/terminal\""),
            "{html}"
        );
        assert!(html.contains("&lt;b&gt;dev&lt;/b&gt;"), "{html}");
        for id in [
            "terminal-output",
            "terminal-input",
            "terminal-status",
            "terminal-send",
        ] {
            assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
        }
        // The script writes what the workspace sends as text only.
        assert!(!SCRIPT.contains("innerHTML") && !SCRIPT.contains("insertAdjacentHTML"));
        assert!(TERMINAL_CSP.contains("script-src 'self'") && !TERMINAL_CSP.contains("unsafe"));
    }
}
