//! The dashboard's HTML, rendered on the server: no script, no external asset (it must work
//! air-gapped); one stylesheet served by the dashboard itself. Every value is escaped.

use chrono::SecondsFormat;
use serde_json::Value;

use super::config::DashboardConfig;
use crate::api_types::{LicenseSummary, User, Workspace};
use crate::html::escape;

/// What every page shows around its content.
pub struct Frame<'a> {
    /// The page title.
    pub title: &'a str,
    /// The logged-in user, if any.
    pub user: Option<&'a User>,
    /// The CSRF token the page's forms carry.
    pub csrf: &'a str,
    /// An error to show above the content.
    pub error: Option<&'a str>,
    /// Why the platform is read-only (air-gapped without a license that allows it): a banner
    /// above everything else.
    pub read_only: Option<&'a str>,
}

/// The page around `content`.
pub fn layout(frame: &Frame<'_>, content: &str) -> String {
    let nav = match frame.user {
        Some(user) => {
            let admin = if user.is_admin() {
                "<a href=\"/admin/users\">Users</a><a href=\"/admin/license\">License</a>"
            } else {
                ""
            };
            format!(
                "<nav><a href=\"/\">Workspaces</a>{admin}<span class=\"who\">{email}</span>\
                 <form method=\"post\" action=\"/logout\" class=\"inline\">{csrf}\
                 <button type=\"submit\" id=\"logout\">Log out</button></form></nav>",
                email = escape(&user.email),
                csrf = csrf_field(frame.csrf),
            )
        }
        None => String::new(),
    };
    let banner = frame
        .read_only
        .map(|reason| {
            format!(
                "<p class=\"read-only\" id=\"read-only\" role=\"alert\">Read-only: {}</p>",
                escape(reason)
            )
        })
        .unwrap_or_default();
    let error = frame
        .error
        .map(|error| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(error)))
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Coder</title><link rel=\"stylesheet\" href=\"/assets/style.css\"></head>\
         <body><header><strong>Coder</strong>{nav}</header><main>{banner}<h1>{title}</h1>{error}{content}</main></body></html>",
        title = escape(frame.title),
    )
}

fn csrf_field(token: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(token)
    )
}

/// A warning about the address the page was opened at (above the login form).
pub fn address_notice(text: &str) -> String {
    format!(
        "<p class=\"notice\" id=\"address-notice\" role=\"alert\">{}</p>",
        escape(text)
    )
}

/// The login form.
pub fn login(csrf: &str, email: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/login\" class=\"card\">{csrf}\
         <label>Email <input type=\"email\" name=\"email\" id=\"email\" value=\"{email}\" required autocomplete=\"username\"></label>\
         <label>Password <input type=\"password\" name=\"password\" id=\"password\" required autocomplete=\"current-password\"></label>\
         <button type=\"submit\" id=\"login\">Log in</button></form>",
        csrf = csrf_field(csrf),
        email = escape(email),
    )
}

/// The workspace list with its actions, and the "new workspace" form.
pub fn workspaces(config: &DashboardConfig, csrf: &str, list: &[Workspace], show_owner: bool) -> String {
    let mut rows = String::new();
    for workspace in list {
        let id = escape(&workspace.id);
        let action = |verb: &str, label: &str| {
            format!(
                "<form method=\"post\" action=\"/workspaces/{id}/{verb}\" class=\"inline\">{csrf}\
                 <button type=\"submit\" class=\"{verb}\">{label}</button></form>",
                csrf = csrf_field(csrf),
            )
        };
        let open = if workspace.state == "ON" {
            format!(
                "<a class=\"button\" href=\"{}\" target=\"_blank\" rel=\"noopener\">Open IDE</a>\
                 <a class=\"button terminal\" href=\"{}\">Terminal</a>",
                escape(&config.open_link(&workspace.id)),
                escape(&DashboardConfig::terminal_link(&workspace.id)),
            )
        } else {
            String::new()
        };
        let toggle = match workspace.state.as_str() {
            "OFF" | "STOPPING" => action("start", "Start"),
            _ => action("stop", "Stop"),
        };
        let owner = if show_owner {
            format!("<td>{}</td>", escape(&workspace.owner_id))
        } else {
            String::new()
        };
        rows.push_str(&format!(
            "<tr data-workspace=\"{name}\"><td class=\"name\">{name}</td>{owner}<td class=\"image\">{image}</td>\
             <td><span class=\"state state-{state_class}\">{state}</span></td>\
             <td>{cpu} CPU · {memory} GB · {disk} GB</td><td class=\"actions\">{open}{toggle}{delete}</td></tr>",
            name = escape(&workspace.name),
            image = escape(&workspace.image),
            state = escape(&workspace.state),
            state_class = escape(&workspace.state.to_ascii_lowercase()),
            cpu = workspace.cpu_cores,
            memory = workspace.memory_gb,
            disk = workspace.disk_gb,
            delete = action("delete", "Delete"),
        ));
    }
    let owner_head = if show_owner { "<th>Owner</th>" } else { "" };
    let table = if list.is_empty() {
        "<p id=\"no-workspaces\">No workspaces yet.</p>".to_owned()
    } else {
        format!(
            "<table id=\"workspaces\"><thead><tr><th>Name</th>{owner_head}<th>Image</th><th>State</th>\
             <th>Resources</th><th></th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    format!(
        "{table}<p><a href=\"/\">Refresh</a></p><h2>New workspace</h2>\
         <form method=\"post\" action=\"/workspaces\" class=\"card\">{csrf}\
         <label>Name <input name=\"name\" id=\"workspace-name\" required pattern=\"[a-z0-9]([a-z0-9-]*[a-z0-9])?\" maxlength=\"63\"></label>\
         <label>Image <input name=\"image\" id=\"workspace-image\" value=\"{image}\" required></label>\
         <label>CPU cores <input name=\"cpu_cores\" type=\"number\" step=\"0.1\" min=\"0.1\" value=\"1\"></label>\
         <label>Memory (GB) <input name=\"memory_gb\" type=\"number\" step=\"0.25\" min=\"0.25\" value=\"2\"></label>\
         <label>Disk (GB) <input name=\"disk_gb\" type=\"number\" min=\"1\" value=\"10\"></label>\
         <button type=\"submit\" id=\"create-workspace\">Create</button></form>",
        csrf = csrf_field(csrf),
        image = escape(&config.default_image),
    )
}

/// The user list and the "new user" form (admins).
pub fn users(csrf: &str, list: &[User]) -> String {
    let rows: String = list
        .iter()
        .map(|user| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&user.email),
                escape(&user.name),
                user.role.as_str(),
                // As the manager's JSON writes it.
                escape(&user.created_at.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            )
        })
        .collect();
    format!(
        "<table id=\"users\"><thead><tr><th>Email</th><th>Name</th><th>Role</th><th>Created</th></tr></thead>\
         <tbody>{rows}</tbody></table><h2>New user</h2>\
         <form method=\"post\" action=\"/admin/users\" class=\"card\">{csrf}\
         <label>Email <input type=\"email\" name=\"email\" required></label>\
         <label>Name <input name=\"name\" required></label>\
         <label>Password <input type=\"password\" name=\"password\" required minlength=\"8\" autocomplete=\"new-password\"></label>\
         <label>Role <select name=\"role\"><option value=\"member\">member</option><option value=\"admin\">admin</option></select></label>\
         <button type=\"submit\">Create user</button></form>",
        csrf = csrf_field(csrf),
    )
}

/// The license status and the form to install a new one (admins). Each field is shown as the
/// manager's JSON has it (`—` for none).
pub fn license(csrf: &str, summary: &LicenseSummary) -> String {
    let status = serde_json::to_value(summary).unwrap_or_default();
    let field = |key: &str| match &status[key] {
        Value::Null => "—".to_owned(),
        Value::String(text) => escape(text),
        other => escape(&other.to_string()),
    };
    let rows: String = [
        ("Tier", "tier"),
        ("License", "license_id"),
        ("Account", "account_name"),
        ("Air-gapped use", "airgap"),
        ("This install is air-gapped", "airgapped"),
        ("Seats used", "seats_used"),
        ("Seats allowed", "seats_allowed"),
        ("Expires", "expires_at"),
        ("Grace period until", "grace_until"),
        ("Warning", "warning"),
    ]
    .iter()
    .map(|(label, key)| {
        format!(
            "<tr><th>{label}</th><td id=\"license-{key}\">{}</td></tr>",
            field(key)
        )
    })
    .collect();
    format!(
        "<table id=\"license\">{rows}</table><h2>Install a license</h2>\
         <form method=\"post\" action=\"/admin/license\" class=\"card\">{csrf}\
         <label>License <textarea name=\"license\" id=\"license-token\" rows=\"4\" required spellcheck=\"false\"></textarea></label>\
         <button type=\"submit\" id=\"install-license\">Install</button></form>",
        csrf = csrf_field(csrf),
    )
}
