//! The agent's side of the agent protocol (`berth-agent-api`): JSON over HTTP/1.1 to the
//! control plane, with the node token as a Bearer credential once registered.

use berth_agent_api as api;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// The longest any one exchange may take: a poll is held up to [`api::POLL_WAIT_SECS`], so the
/// bound leaves it room; anything longer means the server or the network is gone.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(api::POLL_WAIT_SECS + 15);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached or did not answer in time: retry later.
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
    /// The server no longer accepts our node token (it was reset, or the instance deregistered):
    /// register again.
    #[error("the server refused the node's credential: {0}")]
    Unauthorized(String),
    /// The server answered with an error the agent cannot fix by retrying the same request.
    #[error("the server refused the request ({status}): {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("the server's answer does not parse: {0}")]
    Protocol(String),
    #[error("bad server URL {0}")]
    Url(String),
}

impl ClientError {
    /// Whether retrying the same call later may succeed (server away, overloaded, restarting).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable(_) => true,
            ClientError::Refused { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

#[derive(Clone)]
pub struct Client {
    base: String,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish()
    }
}

impl Client {
    /// `server` is the endpoint's base URL, e.g. `http://127.0.0.1:4566`.
    pub fn new(server: &str) -> Result<Client, ClientError> {
        let base = server.trim_end_matches('/').to_string();
        let uri: http::Uri = base
            .parse()
            .map_err(|e| ClientError::Url(format!("{server}: {e}")))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            // TLS is left to a fronting proxy for now; say so rather than fail obscurely.
            return Err(ClientError::Url(format!(
                "{server}: only http://host:port is supported"
            )));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Client { base, http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn register(
        &self,
        req: &api::RegisterRequest,
    ) -> Result<api::RegisterResponse, ClientError> {
        self.call(api::REGISTER, None, req).await
    }

    pub async fn poll(
        &self,
        token: &str,
        req: &api::PollRequest,
    ) -> Result<api::PollResponse, ClientError> {
        self.call(api::POLL, Some(token), req).await
    }

    pub async fn report(&self, token: &str, req: &api::StateReport) -> Result<(), ClientError> {
        let _: serde_json::Value = self.call(api::STATE, Some(token), req).await?;
        Ok(())
    }

    pub async fn ship_logs(
        &self,
        token: &str,
        req: &api::LogBatch,
    ) -> Result<api::LogBatchResponse, ClientError> {
        self.call(api::LOGS, Some(token), req).await
    }

    pub async fn ship_metrics(
        &self,
        token: &str,
        req: &api::MetricsReport,
    ) -> Result<(), ClientError> {
        let _: serde_json::Value = self.call(api::METRICS, Some(token), req).await?;
        Ok(())
    }

    pub async fn credentials(
        &self,
        token: &str,
        req: &api::CredentialsRequest,
    ) -> Result<api::CredentialsResponse, ClientError> {
        self.call(api::CREDENTIALS, Some(token), req).await
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Req,
    ) -> Result<Resp, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut req = http::Request::post(format!("{}{path}", self.base))
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(t) = token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::Url(e.to_string()))?;
        let exchange = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| ClientError::Unreachable(error_chain(&e)))?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, ClientError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| ClientError::Unreachable(format!("no answer to {path} in time")))??;
        if status.is_success() {
            // An empty body stands for `{}` (the state endpoint may answer 204).
            let bytes = if bytes.is_empty() {
                Bytes::from_static(b"{}")
            } else {
                bytes
            };
            return serde_json::from_slice(&bytes)
                .map_err(|e| ClientError::Protocol(format!("{path}: {e}")));
        }
        let err: Option<api::ErrorBody> = serde_json::from_slice(&bytes).ok();
        let (code, message) = match err {
            Some(e) => (e.code, e.message),
            None => (
                status.canonical_reason().unwrap_or("error").to_string(),
                String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            ),
        };
        if status == http::StatusCode::UNAUTHORIZED || status == http::StatusCode::FORBIDDEN {
            return Err(ClientError::Unauthorized(format!("{code}: {message}")));
        }
        Err(ClientError::Refused {
            status: status.as_u16(),
            code,
            message,
        })
    }
}

/// hyper's errors say little at the top ("client error (Connect)"); the cause says why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
