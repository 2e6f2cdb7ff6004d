//! Supervisor and admin API tokens. A token is shown once when created and stored only as
//! its SHA-256; each carries a role and the VAPI org ids it may see (`*` for all).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::http::ApiError;
use crate::store::{DynStore, OrgScope};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Supervisor,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "supervisor" => Some(Role::Supervisor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
        }
    }
}

/// An authenticated API caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_id: String,
    /// How others see this caller (presence, audit): the token's label, else a short id.
    pub name: String,
    pub role: Role,
    pub scope: OrgScope,
}

impl Principal {
    /// An admin token, of whatever orgs: enough for what is scoped to them (webhook endpoints).
    pub fn admin(&self) -> Result<(), ApiError> {
        if self.role == Role::Admin { Ok(()) } else { Err(ApiError::Forbidden) }
    }

    /// An admin token for every org: for what acts on the whole hub (the job queue, whose
    /// payloads carry every org's data; retention). An admin of some orgs gets a `403` that says so.
    pub fn hub_admin(&self) -> Result<(), ApiError> {
        self.admin()?;
        match self.scope {
            OrgScope::All => Ok(()),
            OrgScope::Only(_) => Err(ApiError::Denied {
                code: "hub_admin_only",
                message: "This acts on every org's data: it needs an admin token for every org (--org '*').".into(),
            }),
        }
    }
}

pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Creates a token, stores its hash, and returns the token itself (shown once).
pub async fn create(store: &DynStore, role: Role, orgs: &[String], label: Option<&str>) -> Result<String, crate::store::StoreError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| crate::store::StoreError::Internal(format!("no randomness: {e}")))?;
    let token = format!("sb_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let id = uuid::Uuid::now_v7().to_string();
    let orgs_json = serde_json::to_string(orgs).map_err(|e| crate::store::StoreError::Internal(e.to_string()))?;
    store.insert_token(&id, &hash(&token), role.as_str(), &orgs_json, label, crate::clock::now_ms()).await?;
    Ok(token)
}

/// Resolves a presented token; `None` if unknown or revoked.
pub async fn authenticate(store: &DynStore, token: &str) -> Result<Option<Principal>, crate::store::StoreError> {
    if !token.starts_with("sb_") || token.len() > 100 {
        return Ok(None);
    }
    let Some(row) = store.find_token(&hash(token)).await? else { return Ok(None) };
    if row.revoked_at.is_some() {
        return Ok(None);
    }
    let Some(role) = Role::parse(&row.role) else { return Ok(None) };
    let scope = OrgScope::from_json(&row.orgs).unwrap_or(OrgScope::Only(Vec::new()));
    let name = row.label.clone().filter(|l| !l.trim().is_empty()).unwrap_or_else(|| format!("token {}", short_id(&row.id)));
    Ok(Some(Principal { token_id: row.id, name, role, scope }))
}

/// The random tail of a UUIDv7 (its head is a timestamp shared by tokens made together).
fn short_id(id: &str) -> &str {
    let tail = id.len().saturating_sub(6);
    id.get(tail..).unwrap_or(id)
}

/// Anything holding the store can authenticate API callers.
pub trait HasStore {
    fn store(&self) -> &DynStore;
}

impl<S> FromRequestParts<S> for Principal
where
    S: HasStore + Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthenticated)?;
        authenticate(state.store(), token.trim()).await?.ok_or(ApiError::Unauthenticated)
    }
}

impl HasStore for Arc<crate::app::AppState> {
    fn store(&self) -> &DynStore {
        &self.store
    }
}
