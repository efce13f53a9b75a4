//! Integration tests of `coder-service` against a real PostgreSQL 15 and a real
//! kube-apiserver (from `coder-testenv`), through the manager's HTTP API.

mod access_url;
mod auth;
mod binary;
mod cookie_names;
mod dashboard;
mod envproxy;
mod envproxy_load;
mod harness;
mod license;
mod migrations;
mod pagination;
mod real_node;
mod resilience;
mod seed;
mod snapshots;
mod standins;
mod users;
mod workspace_origin;
mod workspace_tickets;
mod workspaces;
