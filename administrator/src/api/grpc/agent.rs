//! `AgentService`: one bidirectional stream per member agent. Messages are validated and
//! converted at the edge, committed through the group committer in order, and acknowledged
//! cumulatively once durable.
//!
//! Each stream counts against its account's limit (`--max-connections-per-agent`). A message
//! that does not convert gets a `Reject` naming its field and is skipped; a message for another
//! account, a revoked token (checked again after registration) or a storage failure ends the
//! stream. New buckets past the account's quota are rejected, counting those submitted and not
//! yet applied (`over_quota`); times more than [`MAX_CLOCK_SKEW_MS`] ahead are refused. The
//! hello's acknowledged completions that the store no longer holds get those Regions
//! refreshed, objects counted (`lost_scopes`).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use estate_common::convert::{self, ConvertError};
use estate_common::findings::Cause;
use estate_common::limits::{self, MAX_AGENT_VERSION_BYTES, MAX_CANONICAL_ID_BYTES, MAX_PROBLEM_BYTES};
use estate_common::model::{self, AccountId, BucketKey, Region, UnixMillis};
use estate_common::pb::{self, agent_service_server::AgentService, report_request::Body};

use crate::api::auth::{Authenticator, Identity};
use crate::api::error::ServiceError;
use crate::api::grpc::directory::AgentDirectory;
use crate::ingest::Committer;
use crate::state::owners::BucketList;
use crate::state::store::{Op, State, Store};

/// How many messages one submission to the committer carries at most.
const MAX_MESSAGES_PER_SUBMISSION: usize = 512;

/// The Regions (of those the agent covers) whose last acknowledged refresh the agent names is
/// newer than the one stored: acknowledged data this store no longer holds.
/// Both lists are bounded by [`MAX_HELLO_REGIONS`] before this runs.
fn lost_scopes(
    state: &State,
    account_id: &AccountId,
    regions: &[Region],
    completed: &[pb::ScopeGeneration],
) -> Vec<String> {
    let stored: HashMap<&str, u64> = state
        .membership
        .account_scopes(account_id)
        .map(|(region, scope)| (region.as_str(), scope.generation))
        .collect();
    let mut lost: Vec<String> = completed
        .iter()
        .filter(|c| regions.iter().any(|r| *r == c.region))
        .filter(|c| stored.get(c.region.as_str()).copied().unwrap_or(0) < c.generation)
        .map(|c| c.region.clone())
        .collect();
    lost.sort();
    lost.dedup();
    lost
}

/// What the store holds of each of the hello's Regions: the last completed refresh, and
/// whether one is under way. Bounded by [`MAX_HELLO_REGIONS`].
fn held_scopes(state: &State, account_id: &AccountId, regions: &[Region]) -> pb::Held {
    let scopes = regions
        .iter()
        .map(|region| {
            let scope = state.scope(account_id, region).cloned().unwrap_or_default();
            pb::HeldScope {
                region: region.to_string(),
                generation: scope.generation,
                last_updated_ms: scope.last_updated.unwrap_or(0),
                refreshing: state.progress(account_id, region).is_some(),
            }
        })
        .collect();
    pb::Held { scopes }
}

/// The most Regions one hello may name (AWS has a few dozen): it bounds what the hello costs.
const MAX_HELLO_REGIONS: usize = 64;

#[derive(Debug, Clone)]
pub struct AgentServiceImpl {
    pub store: Arc<Store>,
    pub committer: Committer,
    pub auth: Authenticator,
    pub directory: Arc<AgentDirectory>,
    /// Report streams one account may have open at once.
    pub max_connections: usize,
    /// Buckets one account may hold (`--max-buckets-per-account`).
    pub max_buckets_per_account: u64,
}

/// One open report stream of an account, counted while it lives.
struct OpenConnection {
    store: Arc<Store>,
    account_id: AccountId,
    reporter: String,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.store.connection_closed(&self.account_id, &self.reporter);
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<pb::ReportResponse, Status>> + Send>>;

/// Why a message is not applied.
#[derive(Debug)]
enum Refusal {
    /// The agent may not say this (another account's data): the stream ends.
    Denied(ServiceError),
    /// The message is not valid (a field at fault): it alone is rejected, the stream goes on.
    Invalid { field: String, reason: String },
}

impl Refusal {
    fn invalid(field: &str, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.to_owned(), reason: reason.into() }
    }
}

impl From<ConvertError> for Refusal {
    fn from(error: ConvertError) -> Self {
        match error {
            ConvertError::Missing(field) => Self::invalid(field, "missing"),
            ConvertError::Invalid { field, reason } => Self::invalid(field, reason),
        }
    }
}

/// How far ahead of the administrator's clock an agent's clock may be. A time or generation
/// further ahead is refused: a read "from the future" would beat every true read that follows
/// (the newer read wins), and a huge generation would keep a scope's stale buckets for good.
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

/// The default quota of buckets one account may hold (`--max-buckets-per-account`): S3 allows
/// 10,000 general purpose buckets per account by default, and at most a million on request.
pub const DEFAULT_MAX_BUCKETS_PER_ACCOUNT: u64 = 1_000_000;

/// A time an agent reports, at most [`MAX_CLOCK_SKEW_MS`] ahead of `now`.
fn not_ahead(field: &str, at: i64, now: UnixMillis) -> Result<(), Refusal> {
    if at > now.saturating_add(MAX_CLOCK_SKEW_MS) {
        return Err(Refusal::invalid(
            field,
            format!(
                "{at} is more than {} minutes ahead of the administrator's clock ({now})",
                MAX_CLOCK_SKEW_MS / 60_000
            ),
        ));
    }
    Ok(())
}

/// A refresh generation (the agent's clock when the refresh began), at most
/// [`MAX_CLOCK_SKEW_MS`] ahead of `now`.
fn generation(field: &str, generation: u64, now: UnixMillis) -> Result<u64, Refusal> {
    not_ahead(field, i64::try_from(generation).unwrap_or(i64::MAX), now)?;
    Ok(generation)
}

/// The CloudTrail event behind a re-read, checked at the edge.
fn cause(field: &'static str, cause: pb::EventCause, now: UnixMillis) -> Result<Cause, Refusal> {
    let cause = Cause::try_from(cause)?;
    not_ahead(field, cause.event_time, now)?;
    Ok(cause)
}

/// Converts one message of an agent reporting for `account_id` into its store operation, at
/// the administrator's clock `now`.
fn to_op(account_id: &AccountId, body: Body, now: UnixMillis) -> Result<Op, Refusal> {
    let check_account = |reported: &str| {
        if reported == account_id {
            Ok(())
        } else {
            Err(Refusal::Denied(ServiceError::forbidden(format!(
                "this agent reports for account `{account_id}` and may not report for `{reported}`"
            ))))
        }
    };
    let op = match body {
        Body::Hello(_) => return Err(Refusal::invalid("hello", "`hello` may only be the first message")),
        Body::Bucket(snapshot) => {
            let facts = snapshot.facts.ok_or_else(|| Refusal::invalid("bucket.facts", "missing"))?;
            check_account(&facts.account_id)?;
            let facts = model::BucketFacts::try_from(facts)?;
            not_ahead("bucket.facts.read_at_ms", facts.read_at, now)?;
            not_ahead("bucket.facts.created_at_ms", facts.created_at, now)?;
            if let Some(objects) = facts.config().and_then(|c| c.objects.as_ref()) {
                not_ahead("bucket.facts.objects.read_at_ms", objects.read_at, now)?;
            }
            Op::Upsert {
                facts,
                generation: generation("bucket.generation", snapshot.generation, now)?,
                cause: snapshot.cause.map(|c| cause("bucket.cause.event_time_ms", c, now)).transpose()?,
            }
        }
        Body::Deleted(d) => {
            let region = convert::region("deleted.region", d.region)?;
            let name = convert::bucket_name("deleted.bucket_name", &region, d.bucket_name)?;
            Op::Delete { key: BucketKey::new(account_id.clone(), region, name) }
        }
        Body::Retained(r) => {
            let region = convert::region("retained.region", r.region)?;
            let name = convert::bucket_name("retained.bucket_name", &region, r.bucket_name)?;
            Op::Retain {
                key: BucketKey::new(account_id.clone(), region, name),
                generation: generation("retained.generation", r.generation, now)?,
            }
        }
        Body::AccountSettings(settings) => {
            check_account(&settings.account_id)?;
            let settings = model::AccountSettings::try_from(settings)?;
            not_ahead("account_settings.read_at_ms", settings.read_at, now)?;
            Op::AccountSettings(settings)
        }
        Body::ScopeStarted(s) => {
            let region = convert::region("scope_started.region", s.region)?;
            Op::ScopeStarted { account_id: account_id.clone(), region, total: s.bucket_total }
        }
        Body::AccountSettingsChanged(changed) => {
            let settings =
                changed.settings.ok_or_else(|| Refusal::invalid("account_settings_changed.settings", "missing"))?;
            check_account(&settings.account_id)?;
            let event = changed.cause.ok_or_else(|| Refusal::invalid("account_settings_changed.cause", "missing"))?;
            let settings = model::AccountSettings::try_from(settings)?;
            not_ahead("account_settings_changed.settings.read_at_ms", settings.read_at, now)?;
            Op::AccountSettingsChanged {
                settings,
                cause: cause("account_settings_changed.cause.event_time_ms", event, now)?,
            }
        }
        Body::BucketObjects(o) => {
            let objects = o.objects.ok_or_else(|| Refusal::invalid("bucket_objects.objects", "missing"))?;
            let region = convert::region("bucket_objects.region", o.region)?;
            let name = convert::bucket_name("bucket_objects.bucket_name", &region, o.bucket_name)?;
            let objects: estate_common::objects::ObjectStats = objects.try_into()?;
            not_ahead("bucket_objects.objects.read_at_ms", objects.read_at, now)?;
            Op::Objects { key: BucketKey::new(account_id.clone(), region, name), objects }
        }
        Body::AccountBuckets(b) => {
            // The list covers every Region, us-east-1's legacy names included.
            for name in &b.bucket_names {
                limits::check_bucket_name(name, true)
                    .map_err(|e| Refusal::invalid("account_buckets.bucket_names", e.to_string()))?;
            }
            not_ahead("account_buckets.read_at_ms", b.read_at_ms, now)?;
            Op::AccountBuckets {
                account_id: account_id.clone(),
                list: BucketList { read_at: b.read_at_ms, names: b.bucket_names.into_iter().collect() },
            }
        }
        Body::ScopeComplete(s) => {
            not_ahead("scope_complete.read_at_ms", s.read_at_ms, now)?;
            Op::ScopeComplete {
                account_id: account_id.clone(),
                region: convert::region("scope_complete.region", s.region)?,
                generation: generation("scope_complete.generation", s.generation, now)?,
                read_at: s.read_at_ms,
                count: s.bucket_count,
            }
        }
    };
    Ok(op)
}

/// The messages of one submission that would take the account past its bucket quota: new
/// buckets (not in the index yet) beyond `quota`, counting `in_flight` new buckets of this
/// stream submitted but not yet applied, and bucket lists longer than the quota. Returns the
/// positions of the messages to reject, with the reason, and how many new buckets pass. A
/// short read on the reactor: one lookup per new bucket.
fn over_quota(
    state: &State,
    account_id: &AccountId,
    ops: &[(u64, Op)],
    quota: u64,
    in_flight: u64,
) -> (Vec<(usize, String)>, u64) {
    let stored = u64::try_from(state.stats.account(account_id).bucket_count).unwrap_or(0);
    let mut held = stored.saturating_add(in_flight);
    let mut new = 0;
    let mut over = Vec::new();
    for (position, (_, op)) in ops.iter().enumerate() {
        match op {
            Op::Upsert { facts, .. } if state.index.get(&facts.key.stored()).is_none() => {
                if held >= quota {
                    over.push((
                        position,
                        format!(
                            "account `{account_id}` already holds {held} buckets, its quota \
                             (--max-buckets-per-account {quota})"
                        ),
                    ));
                } else {
                    held += 1;
                    new += 1;
                }
            }
            Op::AccountBuckets { list, .. } if list.names.len() as u64 > quota => over
                .push((position, format!("{} names, over the quota of {quota} buckets per account", list.names.len()))),
            _ => {}
        }
    }
    (over, new)
}

#[tonic::async_trait]
impl AgentService for AgentServiceImpl {
    type ReportStream = ResponseStream;

    async fn report(
        &self,
        request: Request<Streaming<pb::ReportRequest>>,
    ) -> Result<Response<Self::ReportStream>, Status> {
        let identity = self.auth.identify(&request)?;
        if let Identity::Client { name, .. } = &identity {
            return Err(ServiceError::forbidden(format!("`{name}` is a client, not an agent")).into());
        }
        // Kept to check the credentials again once the stream is registered (below).
        let authorization = request.metadata().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let certificate = request.peer_certs().and_then(|certs| certs.first().cloned());
        let mut inbound = request.into_inner();
        let first = inbound.next().await.ok_or_else(|| ServiceError::invalid("the stream closed before `hello`"))??;
        let Some(Body::Hello(mut hello)) = first.body else {
            return Err(ServiceError::invalid("the first message must be `hello`").into());
        };
        if hello.regions.len() > MAX_HELLO_REGIONS || hello.completed.len() > hello.regions.len() {
            return Err(ServiceError::invalid(format!(
                "`hello` names {} Regions and {} completions; at most {MAX_HELLO_REGIONS} Regions, and no more \
                 completions than Regions",
                hello.regions.len(),
                hello.completed.len()
            ))
            .into());
        }
        for (field, value, max) in [
            ("hello.agent_version", &hello.agent_version, MAX_AGENT_VERSION_BYTES),
            ("hello.canonical_user_id", &hello.canonical_user_id, MAX_CANONICAL_ID_BYTES),
            ("hello.problem", &hello.problem, MAX_PROBLEM_BYTES),
        ] {
            if value.len() > max {
                return Err(ServiceError::invalid(format!(
                    "`{field}`: {} bytes, over the limit of {max}",
                    value.len()
                ))
                .into());
            }
        }
        let account_id = AccountId::parse(std::mem::take(&mut hello.account_id))
            .map_err(|e| ServiceError::invalid(format!("`hello.account_id`: {e}")))?;
        let regions = std::mem::take(&mut hello.regions)
            .into_iter()
            .map(|r| convert::region("hello.regions", r))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ServiceError::invalid(e.to_string()))?;
        let in_organization = self.store.read().org.members().contains(&account_id);
        if !identity.may_report_for(&account_id, in_organization) {
            tracing::warn!(agent = identity.name(), account = %account_id, "refused: a report for an account this agent or hub may not report for");
            return Err(ServiceError::forbidden(format!(
                "`{}` may not report for account `{account_id}`",
                identity.name()
            ))
            .into());
        }
        let reporter = identity.reporter();
        if !self.store.try_open_connection(&account_id, &reporter, self.max_connections) {
            self.store.note_refusal(&account_id, "too many report streams open (--max-connections-per-agent)");
            tracing::warn!(account = %account_id, limit = self.max_connections, "refused: too many streams for one agent");
            return Err(ServiceError::Exhausted(format!(
                "account `{account_id}` already has {} report streams open (--max-connections-per-agent)",
                self.max_connections
            ))
            .into());
        }
        // From here on the stream counts; it is released when its task ends.
        let opened = OpenConnection {
            store: Arc::clone(&self.store),
            account_id: account_id.clone(),
            reporter: reporter.clone(),
        };
        tracing::info!(
            account = %account_id,
            regions = ?regions,
            version = %estate_common::text::for_log(&hello.agent_version),
            "agent connected"
        );
        let (lost, held) = {
            let (account, regions) = (account_id.clone(), regions.clone());
            let completed = std::mem::take(&mut hello.completed);
            self.store
                .read_blocking(move |state| {
                    (lost_scopes(state, &account, &regions, &completed), held_scopes(state, &account, &regions))
                })
                .await
                .map_err(ServiceError::from)?
        };
        // A reporter that cannot read the account knows nothing of it (not its canonical ID,
        // whose claim other accounts' verdicts depend on): its hello changes no record, and
        // only its problem is kept.
        if hello.problem.is_empty() {
            self.committer
                .commit(vec![Op::Hello {
                    account_id: account_id.clone(),
                    regions,
                    canonical_user_id: hello.canonical_user_id,
                    agent_version: hello.agent_version,
                }])
                .await
                .map_err(ServiceError::from)?;
        }

        let (tx, rx) = mpsc::channel(256);
        let registration = self.directory.register(&account_id, &reporter, tx.clone());
        // A token revoked between the check above and this registration was revoked while no
        // revocation could reach this stream: check once more, now that one can.
        if self.auth.identify_parts(authorization.as_deref(), certificate.as_ref()).ok().as_ref() != Some(&identity) {
            return Err(ServiceError::unauthenticated("the token of this stream was revoked").into());
        }
        // Only a caller that is still who it was may take the account from another reporter.
        self.directory.supersede_others(&registration, &reporter);
        self.store.note_problem(&account_id, &hello.problem);
        if !hello.problem.is_empty() {
            tracing::warn!(
                account = %account_id,
                problem = %estate_common::text::for_log(&hello.problem),
                "the reporter cannot read the account"
            );
        }
        let _ = tx.send(Ok(pb::ReportResponse { body: Some(pb::report_response::Body::Held(held)) })).await;
        if !lost.is_empty() {
            tracing::warn!(
                account = %account_id,
                regions = lost.len(),
                "the agent completed refreshes this store does not hold (restored from an older copy?); \
                 asking for those Regions again"
            );
            let refresh = pb::RefreshRequest { regions: lost, count_objects: true, ..Default::default() };
            let _ = tx.send(Ok(pb::ReportResponse { body: Some(pb::report_response::Body::Refresh(refresh)) })).await;
        }
        // Acknowledgements go out in order, each after its submission is durable.
        let (pending_tx, mut pending_rx) =
            mpsc::channel::<(u64, u64, tokio::sync::oneshot::Receiver<Result<(), crate::ingest::CommitError>>)>(64);
        let ack_tx = tx.clone();
        // New buckets this stream submitted that are not applied yet: the quota counts them.
        let in_flight = Arc::new(AtomicU64::new(0));
        let applied = Arc::clone(&in_flight);
        tokio::spawn(async move {
            while let Some((seq, new, done)) = pending_rx.recv().await {
                let outcome = done.await;
                applied.fetch_sub(new, Ordering::AcqRel);
                let message = match outcome {
                    Ok(Ok(())) => {
                        Ok(pb::ReportResponse { body: Some(pb::report_response::Body::Ack(pb::Ack { seq })) })
                    }
                    Ok(Err(error)) => Err(ServiceError::from(error).into()),
                    Err(_) => Err(ServiceError::from(crate::ingest::CommitError::Stopped).into()),
                };
                let failed = message.is_err();
                if ack_tx.send(message).await.is_err() || failed {
                    break;
                }
            }
        });

        let committer = self.committer.clone();
        let (store, quota) = (Arc::clone(&self.store), self.max_buckets_per_account);
        tokio::spawn(async move {
            let _opened = opened;
            // Revoked, or superseded: the status the directory gave the stream.
            let revoked = || registration.ending();
            let outcome: Result<(), Status> = async {
                loop {
                    let next = tokio::select! {
                        next = inbound.next() => next,
                        () = registration.revoked() => return Err(revoked()),
                    };
                    let Some(message) = next else { return Ok(()) };
                    let mut messages = vec![message?];
                    while messages.len() < MAX_MESSAGES_PER_SUBMISSION {
                        match inbound.next().now_or_never() {
                            Some(Some(message)) => messages.push(message?),
                            _ => break,
                        }
                    }
                    let mut accepted: Vec<(u64, Op)> = Vec::with_capacity(messages.len());
                    let mut rejected: Vec<pb::Reject> = Vec::new();
                    let mut last_seq = 0;
                    let now = model::now_ms();
                    for message in messages {
                        last_seq = last_seq.max(message.seq);
                        let outcome = match message.body {
                            Some(body) => to_op(&account_id, body, now),
                            // A message of a newer agent's kind, or none at all.
                            None => Err(Refusal::invalid("body", "no message this administrator knows")),
                        };
                        match outcome {
                            Ok(op) => accepted.push((message.seq, op)),
                            Err(Refusal::Denied(error)) => {
                                store.note_refusal(&account_id, &error.to_string());
                                tracing::warn!(account = %account_id, error = %estate_common::text::for_log(&error.to_string()), "refused a report");
                                return Err(error.into());
                            }
                            Err(Refusal::Invalid { field, reason }) => {
                                rejected.push(pb::Reject { seq: message.seq, field, reason });
                            }
                        }
                    }
                    let mut new = 0;
                    if accepted.iter().any(|(_, op)| matches!(op, Op::Upsert { .. } | Op::AccountBuckets { .. })) {
                        let pending = in_flight.load(Ordering::Acquire);
                        let over;
                        (over, new) = over_quota(&store.read(), &account_id, &accepted, quota, pending);
                        for (position, reason) in over.into_iter().rev() {
                            let (seq, _) = accepted.remove(position);
                            rejected.push(pb::Reject { seq, field: "bucket".into(), reason });
                        }
                    }
                    if let Some(first) = rejected.first() {
                        store.note_refusal(&account_id, &format!("`{}`: {}", first.field, first.reason));
                    }
                    for reject in rejected {
                        tracing::warn!(
                            account = %account_id,
                            seq = reject.seq,
                            field = %reject.field,
                            reason = %estate_common::text::for_log(&reject.reason),
                            "rejected one message"
                        );
                        let response = pb::ReportResponse { body: Some(pb::report_response::Body::Reject(reject)) };
                        if tx.send(Ok(response)).await.is_err() {
                            return Ok(());
                        }
                    }
                    let mut ops: Vec<Op> = accepted.into_iter().map(|(_, op)| op).collect();
                    ops.push(Op::Contact { account_id: account_id.clone() });
                    // A token revoked while this batch was read: nothing of it is applied.
                    if registration.is_revoked() {
                        return Err(revoked());
                    }
                    in_flight.fetch_add(new, Ordering::AcqRel);
                    let done = committer.submit(ops).await;
                    if pending_tx.send((last_seq, new, done)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            .await;
            if let Err(status) = outcome {
                let _ = tx.send(Err(status)).await;
            }
            tracing::info!(account = %account_id, "agent disconnected");
        });

        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::judge::OrgView;

    const NOW: UnixMillis = 1_700_000_000_000;

    fn account() -> AccountId {
        "111111111111".parse().unwrap()
    }

    fn facts(name: &str, read_at_ms: i64) -> pb::BucketFacts {
        pb::BucketFacts {
            account_id: "111111111111".into(),
            region: "eu-west-1".into(),
            bucket_name: name.into(),
            created_at_ms: 1,
            read_at_ms,
            ..Default::default()
        }
    }

    fn snapshot(name: &str, read_at_ms: i64, generation: u64) -> Body {
        Body::Bucket(pb::BucketSnapshot { generation, facts: Some(facts(name, read_at_ms)), cause: None })
    }

    /// The field a refused message names.
    fn refused_field(body: Body) -> String {
        match to_op(&account(), body, NOW) {
            Err(Refusal::Invalid { field, .. }) => field,
            Err(Refusal::Denied(error)) => panic!("denied: {error}"),
            Ok(op) => panic!("accepted: {op:?}"),
        }
    }

    #[test]
    fn times_and_generations_ahead_of_the_clock_are_refused() {
        let ahead = NOW + MAX_CLOCK_SKEW_MS + 1;
        let within = NOW + MAX_CLOCK_SKEW_MS;
        assert!(to_op(&account(), snapshot("bucket-ok", within, within as u64), NOW).is_ok());
        assert_eq!(refused_field(snapshot("bucket-ok", ahead, 1)), "bucket.facts.read_at_ms");
        assert_eq!(refused_field(snapshot("bucket-ok", NOW, ahead as u64)), "bucket.generation");
        assert_eq!(refused_field(snapshot("bucket-ok", NOW, u64::MAX)), "bucket.generation");
        let complete = |generation: u64, read_at_ms: i64| {
            Body::ScopeComplete(pb::ScopeComplete {
                region: "eu-west-1".into(),
                generation,
                read_at_ms,
                bucket_count: 0,
            })
        };
        assert!(to_op(&account(), complete(NOW as u64, NOW), NOW).is_ok());
        assert_eq!(refused_field(complete(u64::MAX, NOW)), "scope_complete.generation");
        assert_eq!(refused_field(complete(1, ahead)), "scope_complete.read_at_ms");
        assert_eq!(
            refused_field(Body::Retained(pb::BucketRetained {
                region: "eu-west-1".into(),
                bucket_name: "bucket-ok".into(),
                generation: u64::MAX,
                ..Default::default()
            })),
            "retained.generation"
        );
        let cause = pb::EventCause { event_name: "PutBucketAcl".into(), event_time_ms: ahead, ..Default::default() };
        let caused = Body::Bucket(pb::BucketSnapshot {
            generation: 1,
            facts: Some(facts("bucket-ok", NOW)),
            cause: Some(cause),
        });
        assert_eq!(refused_field(caused), "bucket.cause.event_time_ms");
        let list = Body::AccountBuckets(pb::AccountBuckets { bucket_names: vec![], read_at_ms: ahead });
        assert_eq!(refused_field(list), "account_buckets.read_at_ms");
    }

    #[test]
    fn bucket_names_are_checked_in_every_message_that_carries_one() {
        let deleted =
            |name: &str| Body::Deleted(pb::BucketDeleted { region: "eu-west-1".into(), bucket_name: name.into() });
        assert_eq!(refused_field(deleted("x")), "deleted.bucket_name");
        assert_eq!(refused_field(deleted("")), "deleted.bucket_name");
        assert!(to_op(&account(), deleted("bucket-ok"), NOW).is_ok());
        let list =
            |names: Vec<String>| Body::AccountBuckets(pb::AccountBuckets { bucket_names: names, read_at_ms: NOW });
        assert_eq!(refused_field(list(vec!["ok-name".into(), "a".repeat(300)])), "account_buckets.bucket_names");
        assert!(to_op(&account(), list(vec!["ok-name".into(), "Legacy_Name".into()]), NOW).is_ok());
    }

    #[test]
    fn new_buckets_past_the_quota_are_rejected_and_known_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let org = OrgView::new(None, [account()].into(), Vec::new());
        let store = Store::open(dir.path(), org, BTreeSet::new(), None).unwrap();
        let upsert = |name: &str| to_op(&account(), snapshot(name, NOW, 1), NOW).unwrap();
        store.commit(vec![upsert("held-1"), upsert("held-2")], NOW).unwrap();
        let ops: Vec<(u64, Op)> =
            vec![(1, upsert("held-1")), (2, upsert("new-1")), (3, upsert("held-2")), (4, upsert("new-2"))];
        // Quota 3: one new bucket fits, the second does not; re-reads of held buckets always do.
        let (over, new) = over_quota(&store.read(), &account(), &ops, 3, 0);
        assert_eq!(over.iter().map(|(position, _)| *position).collect::<Vec<_>>(), vec![3]);
        assert_eq!(new, 1);
        assert!(over[0].1.contains("--max-buckets-per-account 3"), "{}", over[0].1);
        assert!(over_quota(&store.read(), &account(), &ops, 4, 0).0.is_empty());
        // New buckets submitted but not applied yet count: with one in flight, none fits.
        let (over, new) = over_quota(&store.read(), &account(), &ops, 3, 1);
        assert_eq!((over.len(), new), (2, 0));
        let names: BTreeSet<String> = (0..5).map(|i| format!("name-{i}")).collect();
        let list = vec![(5, Op::AccountBuckets { account_id: account(), list: BucketList { read_at: NOW, names } })];
        assert_eq!(over_quota(&store.read(), &account(), &list, 4, 0).0.len(), 1);
    }
}
