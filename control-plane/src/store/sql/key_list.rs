//! Listing an organization's keys: the filters of `GET /v1/keys` as SQL conditions, newest
//! first, a page at a time (keyset pagination on `(created_at, id)`).

use keyplane_shared::Timestamp;
use keyplane_shared::ids::OrgId;

use super::SqlStore;
use super::filtered::{Filtered, Param};
use super::rows::{KEY_COLUMNS, key_from_row};
use crate::store::StoreError;
use crate::store::records::{KeyFilter, KeyRecord, KeyState, Page};

/// A page of an organization's keys, newest first; deleted keys are left out.
pub(super) async fn list(
    store: &SqlStore,
    org: OrgId,
    filter: &KeyFilter,
    now: Timestamp,
) -> Result<Page<KeyRecord>, StoreError> {
    let mut query = Filtered::new("org_id", Param::Bytes(org.to_bytes().to_vec()));
    query.condition("deleted_at IS NULL");
    let now_param = || Param::Int(now.as_millis());
    match filter.state {
        None => {}
        Some(KeyState::Revoked) => query.condition("revoked_at IS NOT NULL"),
        Some(KeyState::Expired) => {
            let now = query.bind(now_param());
            query.condition(&format!(
                "revoked_at IS NULL AND expires_at IS NOT NULL AND expires_at <= {now}"
            ));
        }
        Some(KeyState::Active) => {
            let now = query.bind(now_param());
            query.condition(&format!(
                "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > {now})"
            ));
        }
    }
    if let Some(environment) = filter.environment {
        let environment = query.bind(Param::Text(environment.as_str().to_owned()));
        query.condition(&format!("environment = {environment}"));
    }
    if let Some(text) = &filter.name_contains {
        let pattern = format!("%{}%", escape_like(&text.to_lowercase()));
        let pattern = query.bind(Param::Text(pattern));
        query.condition(&format!("LOWER(name) LIKE {pattern} ESCAPE '\\'"));
    }
    match filter.never_used {
        None => {}
        Some(true) => query.condition("last_used_at IS NULL"),
        Some(false) => query.condition("last_used_at IS NOT NULL"),
    }
    if let Some(before) = filter.last_used_before {
        let before = query.bind(Param::Int(before.as_millis()));
        query.condition(&format!("last_used_at IS NULL OR last_used_at < {before}"));
    }
    if let Some(ip) = &filter.last_used_ip {
        let ip = query.bind(Param::Text(ip.clone()));
        query.condition(&format!("last_used_ip = {ip}"));
    }
    if !filter.last_used_ip_not.is_empty() {
        let expected: Vec<String> = filter
            .last_used_ip_not
            .iter()
            .map(|ip| query.bind(Param::Text(ip.clone())))
            .collect();
        query.condition(&format!(
            "last_used_ip IS NOT NULL AND last_used_ip NOT IN ({})",
            expected.join(", ")
        ));
    }
    if let Some(owner) = filter.owner {
        let owner = query.bind(Param::Bytes(owner.to_bytes().to_vec()));
        query.condition(&format!("owner_id = {owner}"));
    }
    if let Some((at, id)) = filter.after {
        let at = query.bind(Param::Int(at.as_millis()));
        let id = query.bind(Param::Bytes(id.to_bytes().to_vec()));
        // A row-value comparison, so both databases seek the listing index to the cursor
        // instead of filtering every row before it.
        query.condition(&format!("(created_at, id) < ({at}, {id})"));
    }
    let limit = query.bind(Param::Int(i64::from(filter.limit) + 1));
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE {} ORDER BY created_at DESC, id DESC \
         LIMIT {limit}",
        query.conditions()
    );
    let rows = query.fetch_all(&sql, &store.pool).await?;
    let items = rows
        .iter()
        .map(key_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_overfetch(items, filter.limit))
}

/// Escapes `LIKE` wildcards so user text matches literally (with `ESCAPE '\'`).
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape_like;

    #[test]
    fn like_wildcards_match_literally() {
        assert_eq!(escape_like("50%_off\\"), "50\\%\\_off\\\\");
        assert_eq!(escape_like("plain"), "plain");
    }
}
