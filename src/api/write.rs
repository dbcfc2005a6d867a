//! The mutating endpoints: each needs the admin token and becomes a command on the agent
//! loop's queue ([`crate::control`]), answered after its commit. A restore needs the agent
//! stopped and says so.

use super::error::{ApiError, ApiResult};
use super::{ApiState, Body, PathParam};
use crate::control::{Applied, Command};
use crate::risk::{BreakerKind, Limit};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The admin token, checked before anything else of the request is looked at (a request
/// without it learns nothing about its input).
pub struct Admin;

impl axum::extract::FromRequestParts<ApiState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &ApiState,
    ) -> Result<Self, ApiError> {
        state.guard.admit(&parts.headers).await?;
        Ok(Admin)
    }
}

/// Sends `command` to the agent loop and waits for its committed answer.
async fn command(state: &ApiState, command: Command) -> ApiResult<Json<Applied>> {
    Ok(Json(state.shared.commands.send(command).await?))
}

/// A reason for the journal.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// Why (journaled; required).
    #[schema(min_length = 1, max_length = 1000, pattern = "\\S")]
    pub reason: String,
}

/// The answers every command endpoint may give.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum CommandResponses {
    /// Applied and committed.
    #[response(status = 200)]
    Applied(#[to_schema] Applied),
    /// Bad input: nothing changed.
    #[response(status = 400)]
    BadRequest(super::error::ErrorBody),
    /// The body is larger than `api.max_body_bytes`.
    #[response(status = 413)]
    TooLarge(super::error::ErrorBody),
    /// The body is not JSON (`Content-Type: application/json`).
    #[response(status = 415)]
    NotJson(super::error::ErrorBody),
    /// The body is JSON of the wrong shape.
    #[response(status = 422)]
    WrongShape(super::error::ErrorBody),
    /// The admin token is missing or wrong.
    #[response(status = 401)]
    Unauthorized(super::error::ErrorBody),
    /// No admin token is configured.
    #[response(status = 403)]
    Forbidden(super::error::ErrorBody),
    /// The command queue is full.
    #[response(status = 429)]
    Busy(super::error::ErrorBody),
    /// The agent cannot answer now.
    #[response(status = 503)]
    Unavailable(super::error::ErrorBody),
}

fn reason_of(r: &str) -> ApiResult<String> {
    if r.len() > 1000 {
        return Err(ApiError::bad_request(
            "reason is longer than 1000 characters",
        ));
    }
    Ok(r.to_string())
}

/// Emergency stop: no entries until resumed (exits still go through).
#[utoipa::path(post, path = "/emergency/stop", tag = "control", request_body = Reason,
    responses(CommandResponses), security(("admin_token" = [])))]
pub async fn stop(
    State(state): State<ApiState>,
    _admin: Admin,
    Body(body): Body<Reason>,
) -> ApiResult<Json<Applied>> {
    let reason = reason_of(&body.reason)?;
    command(&state, Command::Stop { reason }).await
}

/// Lift an operator stop (tripped breakers keep their effect).
#[utoipa::path(post, path = "/emergency/resume", tag = "control", request_body = Reason,
    responses(CommandResponses), security(("admin_token" = [])))]
pub async fn resume(
    State(state): State<ApiState>,
    _admin: Admin,
    Body(body): Body<Reason>,
) -> ApiResult<Json<Applied>> {
    let reason = reason_of(&body.reason)?;
    command(&state, Command::Resume { reason }).await
}

/// Exit-all's confirmation and reason.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExitAll {
    /// Must be true: exit-all closes every position.
    pub confirm: bool,
    /// Why (journaled; required).
    #[schema(min_length = 1, max_length = 1000, pattern = "\\S")]
    pub reason: String,
}

/// Close every position at once (the next tick runs now) and halt.
#[utoipa::path(post, path = "/emergency/exit-all", tag = "control", request_body = ExitAll,
    responses(CommandResponses), security(("admin_token" = [])))]
pub async fn exit_all(
    State(state): State<ApiState>,
    _admin: Admin,
    Body(body): Body<ExitAll>,
) -> ApiResult<Json<Applied>> {
    let reason = reason_of(&body.reason)?;
    let confirm = body.confirm;
    command(&state, Command::ExitAll { confirm, reason }).await
}

/// Reset one breaker (the only way to clear memory_corruption and position_mismatch).
#[utoipa::path(post, path = "/risk/circuit-breakers/{name}/reset", tag = "control",
    params(("name" = BreakerKind, Path, description = "The breaker")),
    request_body = Reason, responses(CommandResponses), security(("admin_token" = [])))]
pub async fn reset_breaker(
    State(state): State<ApiState>,
    _admin: Admin,
    PathParam(breaker): PathParam<BreakerKind>,
    Body(body): Body<Reason>,
) -> ApiResult<Json<Applied>> {
    let reason = reason_of(&body.reason)?;
    command(&state, Command::ResetBreaker { breaker, reason }).await
}

/// A limit override.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// Limit key, e.g. risk.max_position_fraction.
    #[schema(schema_with = limit_keys)]
    pub limit: String,
    /// Its value while the override lasts.
    pub value: f64,
    /// How long, e.g. 2h (more than 0, at most 24h).
    #[serde(rename = "for")]
    #[schema(rename = "for", pattern = "^[1-9][0-9]*(s|m|h)$")]
    pub for_: String,
    /// Why (journaled; required).
    #[schema(min_length = 1, max_length = 1000, pattern = "\\S")]
    pub reason: String,
}

/// Change one limit for a bounded time (at most 24 h); it expires by itself.
#[utoipa::path(post, path = "/risk/override", tag = "control", request_body = Override,
    responses(CommandResponses), security(("admin_token" = [])))]
pub async fn override_limit(
    State(state): State<ApiState>,
    _admin: Admin,
    Body(body): Body<Override>,
) -> ApiResult<Json<Applied>> {
    let limit = Limit::parse(&body.limit).map_err(|e| ApiError::bad_request(e.0))?;
    let for_ms = crate::clock::parse_duration_arg(&body.for_)
        .map_err(|e| ApiError::bad_request(format!("for: {e}")))?
        .as_millis() as u64;
    let reason = reason_of(&body.reason)?;
    let value = body.value;
    command(
        &state,
        Command::Override {
            limit,
            value,
            for_ms,
            reason,
        },
    )
    .await
}

/// Take a checkpoint now.
#[utoipa::path(post, path = "/recovery/checkpoint", tag = "control",
    responses(CommandResponses), security(("admin_token" = [])))]
pub async fn checkpoint(State(state): State<ApiState>, _admin: Admin) -> ApiResult<Json<Applied>> {
    command(&state, Command::Checkpoint).await
}

/// Ask the sync worker for a pass now.
#[utoipa::path(post, path = "/sync/flush", tag = "control",
    responses(CommandResponses), security(("admin_token" = [])))]
pub async fn sync_flush(State(state): State<ApiState>, _admin: Admin) -> ApiResult<Json<Applied>> {
    command(&state, Command::SyncFlush).await
}

/// Run a memory pruning pass now.
#[utoipa::path(post, path = "/memory/prune", tag = "control",
    responses(CommandResponses), security(("admin_token" = [])))]
pub async fn prune(State(state): State<ApiState>, _admin: Admin) -> ApiResult<Json<Applied>> {
    command(&state, Command::Prune).await
}

/// A restore replaces the store: it needs the agent stopped.
#[utoipa::path(post, path = "/recovery/restore", tag = "control",
    responses((status = 409, description = "The agent must be stopped", body = super::error::ErrorBody),
              (status = 401, description = "Token missing or wrong", body = super::error::ErrorBody),
              (status = 403, description = "No token configured", body = super::error::ErrorBody)),
    security(("admin_token" = [])))]
pub async fn restore(_admin: Admin) -> ApiResult<Json<Applied>> {
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "conflict",
        "a restore replaces the store, so it needs the agent stopped: stop it, then run `athena checkpoint restore` (or `athena run --restore-from gcs|firestore` on an empty data directory)",
    ))
}

/// The schema of a limit key: one of [`Limit::ALL`].
fn limit_keys() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(Limit::ALL.iter().map(|l| l.key())))
        .build()
}
