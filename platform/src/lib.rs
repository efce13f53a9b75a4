//! The Coder platform: one binary, `coder-service`, whose subcommands are the platform's
//! components, as Coder v1 ran its manager and envproxy from one image.
//!
//! - `manager`: authentication, session tokens, the workspace API (port 8080);
//! - `envproxy`: the WebSocket proxy to a workspace's editor and terminal (port 8080);
//! - `dashboard`: the web UI (port 3000);
//! - `migrate`: applies the versioned PostgreSQL migrations;
//! - `probe`: tries TCP connections and prints what opened (`coder-install check`'s probe pods).

pub mod api_types;
pub mod cli;
pub mod cookies;
pub mod dashboard;
pub mod db;
pub mod envproxy;
pub mod forwarded;
pub mod html;
pub mod manager;
pub mod manager_client;
pub mod migrate;
pub mod probe;
pub mod request_id;
pub mod shutdown;
pub mod workspace_names;
