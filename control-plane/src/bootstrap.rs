//! Creating an organization with its first admin key: on a first start with an empty database,
//! or on demand with `keyplane bootstrap`. The key is returned to be printed once.

use keyplane_shared::ids::OrgId;
use keyplane_shared::{ApiKey, Environment, Scope, ScopeSet};

use crate::error::ApiError;
use crate::keys::issue::{KeySettings, issue_key};
use crate::state::AppState;
use crate::store::{AuditContext, NewOrg, OrgRecord};

/// Creates an organization named `name` and its first key (`admin:full`, live, never expires).
pub async fn create_organization(
    state: &AppState,
    name: &str,
) -> Result<(OrgRecord, ApiKey), ApiError> {
    let org = NewOrg {
        id: OrgId::generate().map_err(ApiError::internal)?,
        name: crate::keys::input::name(name)?,
    };
    let admin = ScopeSet::new([Scope::AdminFull]).map_err(ApiError::internal)?;
    let settings = KeySettings {
        name: "Initial admin key".into(),
        scopes: admin.clone(),
        ..KeySettings::default()
    };
    let (key, new) = issue_key(state, org.id, Environment::Live, None, settings).await?;
    let context = AuditContext {
        actor: None,
        actor_scopes: admin,
        ip: None,
        user_agent: Some("keyplane bootstrap".into()),
        request_id: "bootstrap".into(),
    };
    let (record, _) = state
        .store
        .create_org(org, new, &context, state.now())
        .await?;
    Ok((record, key))
}
