//! `AgentService`: one bidirectional stream per member agent. Messages are validated and
//! converted at the edge, committed through the group committer in order, and acknowledged
//! cumulatively once durable.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use estate_common::convert::{self, ConvertError};
use estate_common::model::{self, AccountId, BucketKey, Region};
use estate_common::pb::{self, agent_service_server::AgentService, report_request::Body};

use crate::auth::{Authenticator, Identity};
use crate::error::ServiceError;
use crate::ingest::Committer;
use crate::owners::BucketList;
use crate::service::directory::AgentDirectory;
use crate::store::{Op, State, Store};

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
    let stored: HashMap<&str, u64> =
        state.account_scopes(account_id).map(|(region, scope)| (region.as_str(), scope.generation)).collect();
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
}

/// One open report stream of an account, counted while it lives.
struct OpenConnection {
    store: Arc<Store>,
    account_id: AccountId,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.store.connection_closed(&self.account_id);
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

/// Converts one message of an agent reporting for `account_id` into its store operation.
fn to_op(account_id: &AccountId, body: Body) -> Result<Op, Refusal> {
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
            Op::Upsert { facts, generation: snapshot.generation, cause: snapshot.cause.as_ref().map(Into::into) }
        }
        Body::Deleted(d) => Op::Delete {
            key: BucketKey::new(account_id.clone(), convert::region("deleted.region", d.region)?, d.bucket_name),
        },
        Body::Retained(r) => Op::Retain {
            key: BucketKey::new(account_id.clone(), convert::region("retained.region", r.region)?, r.bucket_name),
            generation: r.generation,
        },
        Body::AccountSettings(settings) => {
            check_account(&settings.account_id)?;
            Op::AccountSettings(model::AccountSettings::try_from(settings)?)
        }
        Body::ScopeStarted(s) => {
            let region = convert::region("scope_started.region", s.region)?;
            Op::ScopeStarted { account_id: account_id.clone(), region, total: s.bucket_total }
        }
        Body::AccountSettingsChanged(changed) => {
            let settings =
                changed.settings.ok_or_else(|| Refusal::invalid("account_settings_changed.settings", "missing"))?;
            check_account(&settings.account_id)?;
            let cause =
                changed.cause.as_ref().ok_or_else(|| Refusal::invalid("account_settings_changed.cause", "missing"))?;
            Op::AccountSettingsChanged { settings: model::AccountSettings::try_from(settings)?, cause: cause.into() }
        }
        Body::BucketObjects(o) => {
            let objects = o.objects.ok_or_else(|| Refusal::invalid("bucket_objects.objects", "missing"))?;
            let region = convert::region("bucket_objects.region", o.region)?;
            Op::Objects { key: BucketKey::new(account_id.clone(), region, o.bucket_name), objects: objects.try_into()? }
        }
        Body::AccountBuckets(b) => {
            if let Some(bad) = b.bucket_names.iter().find(|n| n.is_empty() || n.len() > 255) {
                return Err(Refusal::invalid("account_buckets.bucket_names", format!("`{bad}` is not a bucket name")));
            }
            Op::AccountBuckets {
                account_id: account_id.clone(),
                list: BucketList { read_at: b.read_at_ms, names: b.bucket_names.into_iter().collect() },
            }
        }
        Body::ScopeComplete(s) => Op::ScopeComplete {
            account_id: account_id.clone(),
            region: convert::region("scope_complete.region", s.region)?,
            generation: s.generation,
            read_at: s.read_at_ms,
            count: s.bucket_count,
        },
    };
    if let Op::Delete { key } | Op::Retain { key, .. } | Op::Objects { key, .. } = &op {
        if key.bucket_name.is_empty() {
            return Err(Refusal::invalid("bucket_name", "`bucket_name` must be set"));
        }
    }
    Ok(op)
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
        let account_id = AccountId::parse(std::mem::take(&mut hello.account_id))
            .map_err(|e| ServiceError::invalid(format!("`hello.account_id`: {e}")))?;
        let regions = std::mem::take(&mut hello.regions)
            .into_iter()
            .map(|r| convert::region("hello.regions", r))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ServiceError::invalid(e.to_string()))?;
        if !identity.may_report_for(&account_id) {
            tracing::warn!(agent = identity.name(), account = %account_id, "refused: agent reported for another account");
            return Err(ServiceError::forbidden(format!(
                "`{}` may not report for account `{account_id}`",
                identity.name()
            ))
            .into());
        }
        if !self.store.try_open_connection(&account_id, self.max_connections) {
            tracing::warn!(account = %account_id, limit = self.max_connections, "refused: too many streams for one agent");
            return Err(ServiceError::Exhausted(format!(
                "account `{account_id}` already has {} report streams open (--max-connections-per-agent)",
                self.max_connections
            ))
            .into());
        }
        // From here on the stream counts; it is released when its task ends.
        let opened = OpenConnection { store: Arc::clone(&self.store), account_id: account_id.clone() };
        tracing::info!(account = %account_id, regions = ?regions, version = %hello.agent_version, "agent connected");
        let lost = if hello.completed.is_empty() {
            Vec::new()
        } else {
            let (account, regions) = (account_id.clone(), regions.clone());
            let completed = std::mem::take(&mut hello.completed);
            self.store
                .read_blocking(move |state| lost_scopes(state, &account, &regions, &completed))
                .await
                .map_err(ServiceError::from)?
        };
        self.committer
            .commit(vec![Op::Hello {
                account_id: account_id.clone(),
                regions,
                canonical_user_id: hello.canonical_user_id,
                agent_version: hello.agent_version,
            }])
            .await
            .map_err(ServiceError::Unavailable)?;

        let (tx, rx) = mpsc::channel(256);
        self.directory.register(&account_id, tx.clone());
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
            mpsc::channel::<(u64, tokio::sync::oneshot::Receiver<Result<(), String>>)>(64);
        let ack_tx = tx.clone();
        tokio::spawn(async move {
            while let Some((seq, done)) = pending_rx.recv().await {
                let message = match done.await {
                    Ok(Ok(())) => {
                        Ok(pb::ReportResponse { body: Some(pb::report_response::Body::Ack(pb::Ack { seq })) })
                    }
                    Ok(Err(error)) => Err(ServiceError::unavailable(error).into()),
                    Err(_) => Err(ServiceError::unavailable("the committer has stopped").into()),
                };
                let failed = message.is_err();
                if ack_tx.send(message).await.is_err() || failed {
                    break;
                }
            }
        });

        let committer = self.committer.clone();
        tokio::spawn(async move {
            let _opened = opened;
            let outcome: Result<(), Status> = async {
                loop {
                    let Some(message) = inbound.next().await else { return Ok(()) };
                    let mut messages = vec![message?];
                    while messages.len() < MAX_MESSAGES_PER_SUBMISSION {
                        match inbound.next().now_or_never() {
                            Some(Some(message)) => messages.push(message?),
                            _ => break,
                        }
                    }
                    let mut ops = Vec::with_capacity(messages.len() + 1);
                    let mut last_seq = 0;
                    for message in messages {
                        last_seq = last_seq.max(message.seq);
                        let outcome = match message.body {
                            Some(body) => to_op(&account_id, body),
                            // A message of a newer agent's kind, or none at all.
                            None => Err(Refusal::invalid("body", "no message this administrator knows")),
                        };
                        match outcome {
                            Ok(op) => ops.push(op),
                            Err(Refusal::Denied(error)) => {
                                tracing::warn!(account = %account_id, %error, "refused a report");
                                return Err(error.into());
                            }
                            Err(Refusal::Invalid { field, reason }) => {
                                tracing::warn!(account = %account_id, seq = message.seq, %field, %reason, "rejected one message");
                                let reject = pb::Reject { seq: message.seq, field, reason };
                                let response =
                                    pb::ReportResponse { body: Some(pb::report_response::Body::Reject(reject)) };
                                if tx.send(Ok(response)).await.is_err() {
                                    return Ok(());
                                }
                            }
                        }
                    }
                    ops.push(Op::Contact { account_id: account_id.clone() });
                    let done = committer.submit(ops).await;
                    if pending_tx.send((last_seq, done)).await.is_err() {
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
