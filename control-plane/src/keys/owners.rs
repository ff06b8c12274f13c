//! The people a page of keys names: each key's owner and maker (id and display name), and
//! whether a key holds more than its owner's role now allows (`exceeds_owner_scopes`).
//!
//! When a member's role shrinks, their keys keep working (an integration that breaks at a role
//! change is an outage nobody asked for); they are reported here, and
//! `POST /v1/keys/reconcile` narrows or revokes them in one call.

use std::collections::HashMap;

use keyplane_shared::Timestamp;
use keyplane_shared::ids::{OrgId, UserId};

use crate::access::ScopeCeiling;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{KeyRecord, KeyState, UserSummary};

/// A person as a key names them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct PersonView {
    /// `usr_…`.
    pub id: String,
    /// Display name.
    pub display_name: String,
}

/// The people of one organization, for the keys' views.
#[derive(Debug, Default)]
pub struct People {
    users: HashMap<UserId, UserSummary>,
    ceilings: HashMap<UserId, ScopeCeiling>,
}

impl People {
    /// Loads the members of `org` (and anyone else these keys name) with their ceilings.
    pub async fn load(state: &AppState, org: OrgId, keys: &[&KeyRecord]) -> Result<Self, ApiError> {
        let mut people = People::default();
        if keys
            .iter()
            .all(|key| key.owner_id.is_none() && key.created_by_user.is_none())
        {
            return Ok(people);
        }
        let roles = state.store.roles(org).await?;
        for member in state.store.members(org).await? {
            if let Some(role) = roles.iter().find(|role| role.name == member.role) {
                people.ceilings.insert(member.user.id, role.ceiling.clone());
            }
            people.users.insert(member.user.id, member.user);
        }
        let strangers: Vec<UserId> = keys
            .iter()
            .flat_map(|key| [key.owner_id, key.created_by_user])
            .flatten()
            .filter(|id| !people.users.contains_key(id))
            .collect();
        if !strangers.is_empty() {
            for user in state.store.user_summaries(&strangers).await? {
                people.users.insert(user.id, user);
            }
        }
        Ok(people)
    }

    /// The view of a user a key names.
    pub fn person(&self, id: Option<UserId>) -> Option<PersonView> {
        let id = id?;
        Some(PersonView {
            id: id.to_string(),
            display_name: self
                .users
                .get(&id)
                .map_or_else(String::new, |user| user.display_name.clone()),
        })
    }

    /// Whether an active key holds scopes beyond its owner's current ceiling (an owner who is
    /// no longer a member allows nothing).
    pub fn exceeds_owner_scopes(&self, key: &KeyRecord, now: Timestamp) -> bool {
        let Some(owner) = key.owner_id else {
            return false;
        };
        if key.state(now) != KeyState::Active {
            return false;
        }
        match self.ceilings.get(&owner) {
            Some(ceiling) => !ceiling.allows_all(&key.scopes),
            None => true,
        }
    }
}
