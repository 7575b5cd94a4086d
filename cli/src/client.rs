//! The connection to the administrator: both client services over one channel, the token on
//! every request, and errors that name their causes.

use anyhow::Context;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use estate_common::pb::{
    findings_service_client::FindingsServiceClient, inventory_service_client::InventoryServiceClient,
};
use estate_common::transport::{self, ClientTls};

/// The largest answer accepted (a page of 1,000 buckets' metadata).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

pub struct Client {
    pub inventory: InventoryServiceClient<Channel>,
    pub findings: FindingsServiceClient<Channel>,
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Client {
    pub async fn connect(endpoint: &str, tls: &ClientTls, token: Option<&str>) -> anyhow::Result<Self> {
        let channel = transport::endpoint(endpoint, tls)?.connect().await.with_context(|| {
            if endpoint.starts_with("https://") {
                format!("cannot reach the administrator at `{endpoint}` over TLS (is it serving plaintext, or is the CA wrong?)")
            } else {
                format!("cannot reach the administrator at `{endpoint}`")
            }
        })?;
        let token = token.map(|t| format!("Bearer {t}").parse()).transpose().context("the token is not valid ASCII")?;
        Ok(Self {
            inventory: InventoryServiceClient::new(channel.clone()).max_decoding_message_size(MAX_ANSWER_BYTES),
            findings: FindingsServiceClient::new(channel).max_decoding_message_size(MAX_ANSWER_BYTES),
            token,
        })
    }

    /// `message` as a request carrying the token.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            request.metadata_mut().insert("authorization", token.clone());
        }
        request
    }
}

/// The status, and for transport failures (a refused TLS handshake, a reset) their causes,
/// which `message` alone does not name.
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut source = std::error::Error::source(&status);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    anyhow::anyhow!(text)
}

/// Every page of a paginated RPC from `token` on (`follow`: or only the first), with the token
/// of the page after the last one fetched (empty at the end). `fetch` takes a page token and
/// returns the page's items and the next token.
pub async fn paginate<T, F, Fut>(token: String, follow: bool, mut fetch: F) -> anyhow::Result<(Vec<T>, String)>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(Vec<T>, String)>>,
{
    let mut items = Vec::new();
    let mut token = token;
    loop {
        let (page, next) = fetch(token).await?;
        items.extend(page);
        token = next;
        if !follow || token.is_empty() {
            return Ok((items, token));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pages_are_followed_to_the_end_or_not_at_all() {
        let pages = |token: String| async move {
            let at: usize = if token.is_empty() { 0 } else { token.parse()? };
            let next = if at < 2 { (at + 1).to_string() } else { String::new() };
            Ok((vec![at], next))
        };
        assert_eq!(paginate(String::new(), true, pages).await.unwrap(), (vec![0, 1, 2], String::new()));
        assert_eq!(paginate(String::new(), false, pages).await.unwrap(), (vec![0], "1".to_owned()));
        assert_eq!(paginate("1".into(), true, pages).await.unwrap(), (vec![1, 2], String::new()));
    }
}
