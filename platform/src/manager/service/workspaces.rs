//! Workspaces: the database record and its objects in the cluster.
//!
//! The record is written first (state `CREATING`, `STOPPING`, `STARTING`), then the cluster is
//! changed; the Deployment watch ([`crate::manager::k8s`]) settles the state to `ON` or `OFF`.

use serde::Deserialize;
use serde_json::json;
use sqlx::QueryBuilder;

use crate::api_types::{Workspace, states};
use crate::manager::actor::Actor;
use crate::manager::credentials::new_id;
use crate::manager::error::{ApiError, ApiResult};
use crate::manager::k8s::{WorkspaceCluster, observed_state};
use crate::manager::model::validate_dns_label;
use crate::manager::pagination::{Cursor, Page, PageRequest};
use crate::manager::state::AppState;

use super::{audit, conflict_on_unique};

/// The columns of `workspaces`, as a literal for `concat!`.
macro_rules! columns {
    () => {
        "id, owner_id, name, image, state, cpu_cores, memory_gb, disk_gb, created_at, updated_at"
    };
}

/// `POST /api/v0/workspaces`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspace {
    /// DNS-1123 label, unique among the owner's workspaces.
    pub name: String,
    /// Container image; must be allowed by `--allowed-images`.
    pub image: String,
    /// CPU cores (0.1 to 64; default 1).
    #[serde(default)]
    pub cpu_cores: Option<f32>,
    /// Memory in GB (0.25 to 256; default 2).
    #[serde(default)]
    pub memory_gb: Option<f32>,
    /// Home volume in GB (1 to 1024; default 10).
    #[serde(default)]
    pub disk_gb: Option<i32>,
}

fn cluster(state: &AppState) -> ApiResult<&WorkspaceCluster> {
    state.cluster.as_ref().ok_or(ApiError::KubernetesNotConfigured)
}

fn in_range<T: PartialOrd + Copy>(field: &'static str, value: T, min: T, max: T) -> ApiResult<T> {
    if value >= min && value <= max {
        Ok(value)
    } else {
        Err(ApiError::bad_request(
            "invalid_resources",
            format!("{field} is out of range"),
            format!("field: {field}"),
        ))
    }
}

fn validate_image(state: &AppState, image: &str) -> ApiResult<()> {
    // The characters of an image reference: [registry[:port]/]path[:tag][@algorithm:digest].
    let reference_char = |c: char| c.is_ascii_alphanumeric() || "._-/:@".contains(c);
    let well_formed = !image.is_empty() && image.len() <= 512 && image.chars().all(reference_char);
    if !well_formed {
        return Err(ApiError::bad_request(
            "invalid_image",
            "image is not an image reference",
            "field: image",
        ));
    }
    if !state.config.image_allowed(image) {
        return Err(ApiError::bad_request(
            "image_not_allowed",
            "this image is not in the admin's list of allowed images",
            "field: image",
        ));
    }
    Ok(())
}

/// Creates a workspace for the caller and its objects in the cluster.
pub async fn create(state: &AppState, actor: &Actor, request: CreateWorkspace) -> ApiResult<Workspace> {
    validate_dns_label("name", &request.name)?;
    validate_image(state, &request.image)?;
    let cpu = in_range("cpu_cores", request.cpu_cores.unwrap_or(1.0), 0.1, 64.0)?;
    let memory = in_range("memory_gb", request.memory_gb.unwrap_or(2.0), 0.25, 256.0)?;
    let disk = in_range("disk_gb", request.disk_gb.unwrap_or(10), 1, 1024)?;
    let cluster = cluster(state)?;
    let mut tx = state.pool.begin().await?;
    // One creation at a time per owner, so two requests cannot both take the last of a quota.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('workspaces-of:' || $1))")
        .bind(&actor.user.id)
        .execute(&mut *tx)
        .await?;
    let (count, used_cpu, used_memory, used_disk): (i64, f64, f64, i64) = sqlx::query_as(
        "SELECT count(*), COALESCE(sum(cpu_cores), 0)::float8, COALESCE(sum(memory_gb), 0)::float8,
                COALESCE(sum(disk_gb), 0)::int8
         FROM workspaces WHERE owner_id = $1",
    )
    .bind(&actor.user.id)
    .fetch_one(&mut *tx)
    .await?;
    state.config.workspace_quota.check(
        count,
        used_cpu + f64::from(cpu),
        used_memory + f64::from(memory),
        used_disk + i64::from(disk),
    )?;
    let workspace: Workspace = sqlx::query_as(concat!(
        "INSERT INTO workspaces (id, owner_id, name, image, state, cpu_cores, memory_gb, disk_gb)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ",
        columns!()
    ))
    .bind(new_id()?)
    .bind(&actor.user.id)
    .bind(&request.name)
    .bind(&request.image)
    .bind(states::CREATING)
    .bind(cpu)
    .bind(memory)
    .bind(disk)
    .fetch_one(&mut *tx)
    .await
    .map_err(conflict_on_unique(
        "workspace_name_taken",
        "you already have a workspace with this name",
    ))?;
    tx.commit().await?;
    if let Err(error) = cluster.apply(&workspace, 1).await {
        // Leave nothing half made: no record, no objects.
        let _ = cluster.delete(&workspace.id).await;
        sqlx::query("DELETE FROM workspaces WHERE id = $1")
            .bind(&workspace.id)
            .execute(&state.pool)
            .await?;
        return Err(error.into());
    }
    Ok(workspace)
}

/// A page of the caller's workspaces (for admins, everyone's), in creation order.
pub async fn list(state: &AppState, actor: &Actor, page: &PageRequest) -> ApiResult<Page<Workspace>> {
    let mut query = QueryBuilder::new(concat!("SELECT ", columns!(), " FROM workspaces WHERE "));
    if actor.is_admin() {
        query.push("TRUE");
    } else {
        query.push("owner_id = ").push_bind(&actor.user.id);
    }
    page.push_keyset(&mut query);
    let rows: Vec<Workspace> = query.build_query_as().fetch_all(&state.pool).await?;
    Ok(Page::cut(rows, page, |row| Cursor::of(row.created_at, &row.id)))
}

/// One workspace: the caller's own, or any for admins. Others' are 404, like missing ones.
pub async fn get(state: &AppState, actor: &Actor, id: &str) -> ApiResult<Workspace> {
    let workspace: Option<Workspace> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM workspaces WHERE id = $1 AND (owner_id = $2 OR $3)"
    ))
    .bind(id)
    .bind(&actor.user.id)
    .bind(actor.is_admin())
    .fetch_optional(&state.pool)
    .await?;
    workspace.ok_or(ApiError::NotFound("workspace"))
}

/// Any workspace by id, whoever owns it: for the envproxy, which authorises the user itself
/// (owner or admin) and must tell "not yours" (403) from "no such workspace" (404).
pub async fn get_any(state: &AppState, id: &str) -> ApiResult<Workspace> {
    let workspace: Option<Workspace> =
        sqlx::query_as(concat!("SELECT ", columns!(), " FROM workspaces WHERE id = $1"))
            .bind(id)
            .fetch_optional(&state.pool)
            .await?;
    workspace.ok_or(ApiError::NotFound("workspace"))
}

/// Records an admin acting on another user's workspace.
async fn audit_if_foreign(
    state: &AppState,
    actor: &Actor,
    workspace: &Workspace,
    action: &str,
) -> ApiResult<()> {
    if workspace.owner_id != actor.user.id {
        let mut connection = state.pool.acquire().await?;
        let details = json!({ "owner": workspace.owner_id, "name": workspace.name });
        audit::record(&mut connection, &actor.user.id, action, &workspace.id, details).await?;
    }
    Ok(())
}

/// Sets the recorded state, returning the updated workspace.
async fn set_state(state: &AppState, id: &str, new_state: &str) -> ApiResult<Workspace> {
    let workspace: Option<Workspace> = sqlx::query_as(concat!(
        "UPDATE workspaces SET state = $2, updated_at = now() WHERE id = $1 RETURNING ",
        columns!()
    ))
    .bind(id)
    .bind(new_state)
    .fetch_optional(&state.pool)
    .await?;
    workspace.ok_or(ApiError::NotFound("workspace"))
}

/// A change of a running or stopped workspace.
#[derive(Debug, Clone, Copy)]
enum Change {
    Stop,
    Start,
    Rebuild,
}

impl Change {
    /// The state recorded until the watch sees the result.
    fn transitional(self) -> &'static str {
        match self {
            Self::Stop => states::STOPPING,
            Self::Start => states::STARTING,
            Self::Rebuild => states::CREATING,
        }
    }

    /// The audit log's action name.
    fn action(self) -> &'static str {
        match self {
            Self::Stop => "workspace.stop",
            Self::Start => "workspace.start",
            Self::Rebuild => "workspace.rebuild",
        }
    }
}

/// Applies `change`, recording its transitional state first and restoring the previous state
/// if the cluster refuses.
async fn transition(state: &AppState, actor: &Actor, id: &str, change: Change) -> ApiResult<Workspace> {
    let workspace = get(state, actor, id).await?;
    let cluster = cluster(state)?;
    let updated = set_state(state, id, change.transitional()).await?;
    let result = match change {
        Change::Stop => cluster.scale(&workspace, 0).await,
        Change::Start => cluster.scale(&workspace, 1).await,
        Change::Rebuild => cluster.rebuild(&workspace).await,
    };
    let deployment = match result {
        Ok(deployment) => deployment,
        Err(error) => {
            set_state(state, id, &workspace.state).await?;
            return Err(error.into());
        }
    };
    audit_if_foreign(state, actor, &workspace, change.action()).await?;
    // A change that is already settled (stopping a stopped workspace, starting a running one)
    // makes no new Deployment event for the watch: record its state now.
    match observed_state(&deployment) {
        Some(settled) => settle(state, id, change.transitional(), settled).await,
        None => Ok(updated),
    }
}

/// Moves the workspace from `from` to `to` unless something else changed it meanwhile.
async fn settle(state: &AppState, id: &str, from: &str, to: &str) -> ApiResult<Workspace> {
    sqlx::query("UPDATE workspaces SET state = $3, updated_at = now() WHERE id = $1 AND state = $2")
        .bind(id)
        .bind(from)
        .bind(to)
        .execute(&state.pool)
        .await?;
    let workspace: Option<Workspace> =
        sqlx::query_as(concat!("SELECT ", columns!(), " FROM workspaces WHERE id = $1"))
            .bind(id)
            .fetch_optional(&state.pool)
            .await?;
    workspace.ok_or(ApiError::NotFound("workspace"))
}

/// Scales the workspace to zero.
pub async fn stop(state: &AppState, actor: &Actor, id: &str) -> ApiResult<Workspace> {
    transition(state, actor, id, Change::Stop).await
}

/// Scales the workspace back to one.
pub async fn start(state: &AppState, actor: &Actor, id: &str) -> ApiResult<Workspace> {
    transition(state, actor, id, Change::Start).await
}

/// Replaces the workspace's container (the home volume stays).
pub async fn rebuild(state: &AppState, actor: &Actor, id: &str) -> ApiResult<Workspace> {
    transition(state, actor, id, Change::Rebuild).await
}

/// Deletes the workspace's objects, then its record.
pub async fn delete(state: &AppState, actor: &Actor, id: &str) -> ApiResult<()> {
    let workspace = get(state, actor, id).await?;
    cluster(state)?.delete(&workspace.id).await?;
    sqlx::query("DELETE FROM workspaces WHERE id = $1")
        .bind(&workspace.id)
        .execute(&state.pool)
        .await?;
    audit_if_foreign(state, actor, &workspace, "workspace.delete").await
}

/// Deletes every workspace of a user from the cluster (before the account is deleted).
pub async fn delete_all_of(state: &AppState, owner_id: &str) -> ApiResult<()> {
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM workspaces WHERE owner_id = $1")
        .bind(owner_id)
        .fetch_all(&state.pool)
        .await?;
    if ids.is_empty() {
        return Ok(());
    }
    let cluster = cluster(state)?;
    for id in ids {
        cluster.delete(&id).await?;
    }
    Ok(())
}
