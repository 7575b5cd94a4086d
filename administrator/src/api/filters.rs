//! Findings filters saved and deleted for a client, one way for gRPC and HTTP: the checks
//! Macie makes (a name of its own, at most [`MAX_FILTERS`], criteria that compile within the
//! administrator's value limit), idempotent creation by client token, then a commit. Changes
//! are made one at a time ([`CHANGES`]), so that two requests cannot both pass a check that
//! only one of them may (one name, one token) and an update cannot bring back a filter a
//! delete just removed.

use crate::api::auth::Identity;
use crate::api::error::ServiceError;
use crate::ingest::Committer;
use crate::state::filters::{FindingsFilter, MAX_FILTERS};
use crate::state::store::{Op, Store};

/// Held from a change's checks to its commit.
static CHANGES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn no_such_filter(id: &str) -> ServiceError {
    ServiceError::NotFound(format!("no findings filter `{}`", estate_common::text::for_log(id)))
}

/// Creates a filter as a client asked for it (its ID and creation time are given here), or
/// returns the one an earlier request with the same client token created.
pub async fn create(
    store: &Store,
    committer: &Committer,
    mut filter: FindingsFilter,
    max_values: usize,
    who: &Identity,
) -> Result<FindingsFilter, ServiceError> {
    let _one_at_a_time = CHANGES.lock().await;
    if let Some(token) = &filter.client_token {
        if let Some(existing) = store.read().findings().filters.by_client_token(token).cloned() {
            return Ok(existing);
        }
    }
    if store.read().findings().filters.len() >= MAX_FILTERS {
        return Err(ServiceError::Exhausted(format!("at most {MAX_FILTERS} findings filters")));
    }
    filter.id = hex::encode(rand::random::<[u8; 16]>());
    filter.created_at = estate_common::time::now_ms();
    commit_checked(store, committer, filter.clone(), max_values, who).await?;
    Ok(filter)
}

/// Changes the filter `id` with `change`, then checks and commits it.
pub async fn update(
    store: &Store,
    committer: &Committer,
    id: &str,
    change: impl FnOnce(&mut FindingsFilter) -> Result<(), ServiceError>,
    max_values: usize,
    who: &Identity,
) -> Result<FindingsFilter, ServiceError> {
    let _one_at_a_time = CHANGES.lock().await;
    let mut filter = store.read().findings().filters.get(id).cloned().ok_or_else(|| no_such_filter(id))?;
    change(&mut filter)?;
    commit_checked(store, committer, filter.clone(), max_values, who).await?;
    Ok(filter)
}

/// Checks and commits a new or changed filter (an archiving one archives what it matches);
/// the caller holds [`CHANGES`].
async fn commit_checked(
    store: &Store,
    committer: &Committer,
    filter: FindingsFilter,
    max_values: usize,
    who: &Identity,
) -> Result<(), ServiceError> {
    filter.check()?;
    crate::criteria::check_value_counts(&filter.criteria, max_values)?;
    if store.read().findings().filters.by_name(&filter.name).is_some_and(|other| other.id != filter.id) {
        return Err(ServiceError::Precondition(format!("a findings filter is already named `{}`", filter.name)));
    }
    tracing::info!(by = %who.name(), filter = %filter.id, action = ?filter.action, "saving a findings filter");
    committer.commit(vec![Op::PutFindingsFilter(Box::new(filter))]).await.map_err(ServiceError::from)
}

pub async fn delete(store: &Store, committer: &Committer, id: String, who: &Identity) -> Result<(), ServiceError> {
    let _one_at_a_time = CHANGES.lock().await;
    if store.read().findings().filters.get(&id).is_none() {
        return Err(no_such_filter(&id));
    }
    tracing::info!(by = %who.name(), filter = %id, "deleting a findings filter");
    committer.commit(vec![Op::DeleteFindingsFilter { id }]).await.map_err(ServiceError::from)
}
