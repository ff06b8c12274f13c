//! Portal rows: one-time portal links (made, and used by one conditional update) and each
//! organization's branding (read with its defaults in one query, set with an upsert).

use async_trait::async_trait;
use keyplane_shared::Timestamp;
use keyplane_shared::ids::{OrgId, UserId};
use serde_json::json;
use sqlx::Row as _;

use super::SqlStore;
use super::journal::OrgMutation;
use super::members::note;
use super::people::id_bytes;
use super::rows::bytes16;
use super::sweep::{self, Expiring};
use crate::store::StoreError;
use crate::store::portal::{Branding, BrandingUpdate, NewPortalLink, PortalStore, UsedPortalLink};
use crate::store::records::{AuditAction, AuditContext};

/// How `frame_ancestors` is stored: the origins, space-separated (an origin has no space).
fn joined(origins: &[String]) -> String {
    origins.join(" ")
}

#[async_trait]
impl PortalStore for SqlStore {
    async fn create_portal_link(
        &self,
        link: NewPortalLink,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut mutation = OrgMutation::begin_for(self, link.org, context, now).await?;
        sqlx::query(
            "INSERT INTO portal_links (token_digest, org_id, user_id, return_url, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(link.token_digest.to_vec())
        .bind(id_bytes(link.org.to_bytes()))
        .bind(id_bytes(link.user.to_bytes()))
        .bind(link.return_url.clone())
        .bind(now.as_millis())
        .bind(link.expires_at.as_millis())
        .execute(mutation.connection())
        .await?;
        let details = json!({
            "role": link.role.as_str(),
            "return_url": link.return_url,
            "expires_at": link.expires_at.as_millis(),
        });
        mutation
            .audit(
                &self.sealer,
                note(AuditAction::PortalLinkCreated, Some(link.user), details),
                context,
                now,
            )
            .await?;
        mutation.commit(&self.heads).await
    }

    async fn use_portal_link(
        &self,
        digest: &[u8; 32],
        now: Timestamp,
    ) -> Result<Option<UsedPortalLink>, StoreError> {
        let row = sqlx::query(
            "UPDATE portal_links SET used_at = $1 \
             WHERE token_digest = $2 AND used_at IS NULL AND expires_at > $1 \
             RETURNING org_id, user_id, return_url",
        )
        .bind(now.as_millis())
        .bind(digest.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(UsedPortalLink {
                org_id: OrgId::from_bytes(bytes16(row.try_get("org_id")?)?),
                user_id: UserId::from_bytes(bytes16(row.try_get("user_id")?)?),
                return_url: row.try_get("return_url")?,
            })
        })
        .transpose()
    }

    async fn delete_spent_portal_links(&self, before: Timestamp) -> Result<u64, StoreError> {
        let links = Expiring::by("portal_links", "token_digest", "expires_at");
        sweep::delete_before(&self.pool, &links, before).await
    }

    async fn branding(&self, org: OrgId) -> Result<Branding, StoreError> {
        let row = sqlx::query(
            "SELECT o.name, b.display_name, b.logo_url, b.accent_color, b.frame_ancestors, \
             b.updated_at FROM orgs o LEFT JOIN org_branding b ON b.org_id = o.id WHERE o.id = $1",
        )
        .bind(id_bytes(org.to_bytes()))
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        let display_name: Option<String> = row.try_get("display_name")?;
        let frame_ancestors: Option<String> = row.try_get("frame_ancestors")?;
        Ok(Branding {
            display_name: match display_name {
                Some(name) => name,
                None => row.try_get("name")?,
            },
            logo_url: row.try_get("logo_url")?,
            accent_color: row.try_get("accent_color")?,
            frame_ancestors: frame_ancestors
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            updated_at: row.try_get::<Option<i64>, _>("updated_at")?.map(Timestamp),
        })
    }

    async fn put_branding(
        &self,
        org: OrgId,
        branding: BrandingUpdate,
        context: &AuditContext,
        now: Timestamp,
    ) -> Result<Branding, StoreError> {
        let mut mutation = OrgMutation::begin_for(self, org, context, now).await?;
        sqlx::query(
            "INSERT INTO org_branding (org_id, display_name, logo_url, accent_color, \
             frame_ancestors, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (org_id) DO UPDATE SET display_name = excluded.display_name, \
             logo_url = excluded.logo_url, accent_color = excluded.accent_color, \
             frame_ancestors = excluded.frame_ancestors, updated_at = excluded.updated_at",
        )
        .bind(id_bytes(org.to_bytes()))
        .bind(branding.display_name.clone())
        .bind(branding.logo_url.clone())
        .bind(branding.accent_color.clone())
        .bind(joined(&branding.frame_ancestors))
        .bind(now.as_millis())
        .execute(mutation.connection())
        .await?;
        let details = json!({
            "display_name": branding.display_name,
            "logo_url": branding.logo_url,
            "accent_color": branding.accent_color,
            "frame_ancestors": branding.frame_ancestors,
        });
        mutation
            .audit(
                &self.sealer,
                note(AuditAction::BrandingUpdated, None, details),
                context,
                now,
            )
            .await?;
        mutation.commit(&self.heads).await?;
        Ok(Branding {
            display_name: branding.display_name,
            logo_url: branding.logo_url,
            accent_color: branding.accent_color,
            frame_ancestors: branding.frame_ancestors,
            updated_at: Some(now),
        })
    }
}
