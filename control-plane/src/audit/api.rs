//! `GET /v1/audit` (the organization's audit records, newest first, filtered and paged) and
//! `GET /v1/audit/verify` (recomputes the organization's hash chain, a page at a time).
//!
//! There are no routes that change or delete audit records: the log is append-only in the API,
//! and in the database (triggers refuse UPDATE and DELETE).

use axum::Json;
use axum::extract::State;
use keyplane_shared::ids::{KeyId, OrgId};
use keyplane_shared::sync::hex;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::Permission;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::input::time::{rfc3339, timestamp};
use crate::input::{digits, has_id_shape};
use crate::state::AppState;
use crate::store::audit_chain::{AuditSealer, ChainVerifier};
use crate::store::{AuditAction, AuditFilter, AuditRecord, Store, StoreError};

/// The audit routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_audit))
        .routes(routes!(verify_audit))
}

/// Query of `GET /v1/audit`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this action.
    pub action: Option<AuditAction>,
    /// Only records about this key (`key_…`; an id's shape that names no key matches
    /// nothing).
    #[param(pattern = r"^key_[0-9A-Za-z]{22}$")]
    pub key_id: Option<String>,
    /// Only records at or after this time (RFC 3339).
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Only records before this time (RFC 3339).
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[0-9]{1,18}$")]
    pub cursor: Option<String>,
}

/// One audit record.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    /// Position in the organization's chain, from 1.
    pub seq: u64,
    /// When (RFC 3339).
    pub at: String,
    /// What happened.
    pub action: AuditAction,
    /// The management key that did it.
    pub actor_key_id: Option<String>,
    /// The user who did it (signed in, by a host product's token, or the management key's
    /// owner); records from before users existed have none.
    pub actor_user_id: Option<String>,
    /// The key it concerned.
    pub target_key_id: Option<String>,
    /// The member it concerned.
    pub target_user_id: Option<String>,
    /// The format the record was sealed in (1: before users existed; 2: with the user fields).
    pub format: u8,
    /// Client address.
    pub ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// The request's id.
    pub request_id: String,
    /// Action-specific facts.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// This record's chain hash (hex).
    pub hash: String,
    /// The previous record's chain hash (hex).
    pub prev_hash: String,
}

impl From<&AuditRecord> for AuditView {
    fn from(record: &AuditRecord) -> Self {
        AuditView {
            seq: record.seq,
            at: rfc3339(record.at),
            action: record.action,
            actor_key_id: record.actor_key_id.map(|id| id.to_string()),
            actor_user_id: record.actor_user_id.map(|id| id.to_string()),
            target_key_id: record.target_key_id.map(|id| id.to_string()),
            target_user_id: record.target_user_id.map(|id| id.to_string()),
            format: record.format,
            ip: record.ip.clone(),
            user_agent: record.user_agent.clone(),
            request_id: record.request_id.clone(),
            details: record.details.clone(),
            hash: hex(&record.hash),
            prev_hash: hex(&record.prev_hash),
        }
    }
}

/// A page of audit records.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Records, newest first.
    pub data: Vec<AuditView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The result of a chain verification.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChainReport {
    /// Whether every record matches its hash and links to the one before it.
    pub valid: bool,
    /// Records checked.
    pub records: u64,
    /// Where and how the chain breaks, if it does.
    pub error: Option<String>,
}

/// The organization's audit records, newest first.
#[utoipa::path(
    get, path = "/v1/audit", tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of audit records", body = AuditPage),
        (status = 400, description = "Invalid filter or cursor", body = crate::openapi::ErrorResponse),
        (status = 401, description = "Not authenticated", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn list_audit(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    principal.require(Permission::Read)?;
    let time = |text: Option<&str>, field: &str| {
        text.map(|text| {
            timestamp(text)
                .map_err(|_| ApiError::InvalidRequest(format!("`{field}` must be RFC 3339")))
        })
        .transpose()
    };
    // `Some(None)`: a key id's shape that names no key.
    let target = query
        .key_id
        .as_deref()
        .map(|text| match text.parse::<KeyId>() {
            Ok(id) => Ok(Some(id)),
            Err(_) if has_id_shape(text, KeyId::TAG) => Ok(None),
            Err(error) => Err(ApiError::InvalidRequest(format!("`key_id`: {error}"))),
        })
        .transpose()?;
    let filter = AuditFilter {
        action: query.action,
        target: target.flatten(),
        before_seq: query.cursor.as_deref().map(audit_cursor).transpose()?,
        since: time(query.since.as_deref(), "since")?,
        until: time(query.until.as_deref(), "until")?,
        limit: crate::input::page::LISTING.size(query.limit)?,
    };
    if target == Some(None) {
        return Ok(Json(AuditPage {
            data: Vec::new(),
            next_cursor: None,
        }));
    }
    let page = state.store.list_audit(principal.org, &filter).await?;
    let next_cursor = page
        .has_more
        .then(|| page.items.last())
        .flatten()
        .map(|last| last.seq.to_string());
    let data = page.items.iter().map(AuditView::from).collect();
    Ok(Json(AuditPage { data, next_cursor }))
}

/// Reads an audit cursor: a sequence number as this API issues them, 1 to 18 digits (as the
/// document's pattern says; the database's signed 64-bit sequence never gets past that).
fn audit_cursor(text: &str) -> Result<u64, ApiError> {
    digits(text, 18)
        .ok_or_else(|| ApiError::InvalidRequest("`cursor` is not one this API issued".into()))
}

/// Recomputes the organization's audit chain and reports whether it is intact.
#[utoipa::path(
    get, path = "/v1/audit/verify", tag = "audit",
    responses(
        (status = 200, description = "Verification result", body = ChainReport),
        (status = 401, description = "Not authenticated", body = crate::openapi::ErrorResponse),
    ),
    security(("api_key" = []), ("bearer" = []), ("session" = []))
)]
pub(crate) async fn verify_audit(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<ChainReport>, ApiError> {
    principal.require(Permission::Read)?;
    let report = verify_chain(state.store.as_ref(), &state.sealer, principal.org).await?;
    Ok(Json(report))
}

/// Records read per query when verifying a chain.
pub const VERIFY_PAGE: u32 = 1_000;

/// Verifies an organization's whole audit chain, reading it [`VERIFY_PAGE`] records at a time
/// (the API and `keyplane audit verify` both use it).
pub async fn verify_chain(
    store: &dyn Store,
    sealer: &AuditSealer,
    org: OrgId,
) -> Result<ChainReport, StoreError> {
    verify_chain_in_pages(store, sealer, org, VERIFY_PAGE).await
}

/// [`verify_chain`] with a given page size: memory holds one page, never the chain.
///
/// The head is read after the last page. A record and the head that points at it are written in
/// one transaction, so a head read later covers every record read before it. When the head is
/// further on than the last record read, records were appended meanwhile (the next page holds
/// them) or removed: if a page read after such a head brings nothing new, the chain really ends
/// short of its head, and the report says so.
pub async fn verify_chain_in_pages(
    store: &dyn Store,
    sealer: &AuditSealer,
    org: OrgId,
    page_size: u32,
) -> Result<ChainReport, StoreError> {
    let page_size = page_size.max(1);
    let mut verifier = ChainVerifier::new(sealer);
    let mut after = 0;
    // The last record read when a head was last found further on.
    let mut short_of_head_at = None;
    let (head_seq, head_hash) = loop {
        let page = store.audit_page(org, after, page_size).await?;
        for record in &page {
            verifier.push(record);
        }
        if let Some(last) = page.last() {
            after = last.seq;
        }
        if page.len() >= page_size as usize {
            continue;
        }
        let (head_seq, head_hash) = store.audit_head(org).await?;
        if after >= head_seq || short_of_head_at == Some(after) {
            break (head_seq, head_hash);
        }
        short_of_head_at = Some(after);
    };
    let seen = verifier.seen();
    Ok(match verifier.finish(head_seq, &head_hash) {
        Ok(count) => ChainReport {
            valid: true,
            records: count,
            error: None,
        },
        Err(error) => ChainReport {
            valid: false,
            records: seen,
            error: Some(error.to_string()),
        },
    })
}
