//! Registry auth as ECR does it: GetAuthorizationToken hands out `base64("AWS:<token>")`, valid
//! for 12 hours, and `/v2/` accepts HTTP Basic with user `AWS` and that token. The token is
//! opaque to clients: an account and an expiry, HMAC-signed with the server's key, so checking
//! it needs no store read and a restart (same key) keeps issued tokens valid.

use crate::Ecr;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::ecr as wire;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How long a token is valid, as ECR's.
pub const TOKEN_LIFETIME_MS: i64 = 12 * 3600 * 1000;

/// Separates these MACs from the pagination tokens signed with the same key.
const DOMAIN: &[u8] = b"berth.ecr.registry-auth.v1\0";

/// Issues and checks registry auth tokens.
#[derive(Clone)]
pub struct AuthTokens {
    key: [u8; 32],
}

impl std::fmt::Debug for AuthTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthTokens")
    }
}

impl AuthTokens {
    pub fn new(key: [u8; 32]) -> Self {
        AuthTokens { key }
    }

    fn mac(&self, payload: &str) -> Vec<u8> {
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key) else {
            // HMAC takes keys of any length; this branch cannot be reached.
            return Vec::new();
        };
        mac.update(DOMAIN);
        mac.update(payload.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// A token for `account` that expires at `expires_at_ms`.
    pub fn issue(&self, account: &str, expires_at_ms: i64) -> String {
        let payload = format!("{account}.{expires_at_ms}");
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            URL_SAFE_NO_PAD.encode(self.mac(&payload))
        )
    }

    /// The account a token was issued for, if this server signed it and it has not expired at
    /// `now_ms`.
    pub fn verify(&self, token: &str, now_ms: i64) -> Option<String> {
        let (payload, mac) = token.split_once('.')?;
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            mac.as_slice(),
            self.mac(&payload).as_slice(),
        )) {
            return None;
        }
        let (account, expires) = payload.rsplit_once('.')?;
        let expires: i64 = expires.parse().ok()?;
        (now_ms < expires).then(|| account.to_owned())
    }

    /// The Basic-auth check `/v2/` runs: user `AWS`, a valid token for `account`.
    pub fn check_basic(&self, user: &str, password: &str, account: &str, now_ms: i64) -> bool {
        user == "AWS" && self.verify(password, now_ms).as_deref() == Some(account)
    }
}

/// What a node needs to pull from this registry: what GetAuthorizationToken hands a client,
/// already decoded (`docker login` would split `AWS:<token>` the same way).
#[derive(Clone, PartialEq, Eq)]
pub struct PullCredentials {
    /// `host:port`, as in every `repositoryUri`.
    pub host: String,
    pub username: String,
    pub password: String,
    pub expires_at_ms: i64,
}

impl std::fmt::Debug for PullCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullCredentials")
            .field("host", &self.host)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

impl Ecr {
    /// A fresh 12-hour login for the server's registry, for the node agents (which, like ECS's
    /// agent with its instance role, pull with a token the control plane gives them).
    pub fn pull_credentials(&self) -> PullCredentials {
        let place = self.place();
        let expires_at_ms = self.now_ms() + TOKEN_LIFETIME_MS;
        PullCredentials {
            host: place.host.clone(),
            username: "AWS".into(),
            password: self.auth().issue(&place.account_id, expires_at_ms),
            expires_at_ms,
        }
    }
}

pub async fn get_authorization_token(
    ecr: &Ecr,
    _ctx: &RequestContext,
    _req: wire::GetAuthorizationTokenRequest,
) -> Result<wire::GetAuthorizationTokenResponse, AwsError> {
    let place = ecr.place();
    let expires = ecr.now_ms() + TOKEN_LIFETIME_MS;
    let token = ecr.auth().issue(&place.account_id, expires);
    Ok(wire::GetAuthorizationTokenResponse {
        authorization_data: Some(vec![wire::AuthorizationData {
            authorization_token: Some(STANDARD.encode(format!("AWS:{token}"))),
            expires_at: Some(berth_shapes::Timestamp::from_millis(expires)),
            proxy_endpoint: Some(format!("http://{}", place.host)),
        }]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_until_they_expire() {
        let t = AuthTokens::new([3; 32]);
        let token = t.issue("000000000000", 1_000);
        assert_eq!(t.verify(&token, 999).as_deref(), Some("000000000000"));
        assert_eq!(t.verify(&token, 1_000), None);
        assert!(t.check_basic("AWS", &token, "000000000000", 0));
        assert!(!t.check_basic("aws", &token, "000000000000", 0));
        assert!(!t.check_basic("AWS", &token, "111111111111", 0));
    }

    #[test]
    fn forged_or_foreign_tokens_fail() {
        let t = AuthTokens::new([3; 32]);
        let other = AuthTokens::new([4; 32]);
        let token = other.issue("000000000000", i64::MAX);
        assert_eq!(t.verify(&token, 0), None);
        // A payload with a later expiry but the old MAC.
        let good = t.issue("000000000000", 10);
        let (_, mac) = good.split_once('.').unwrap_or_default();
        let forged = format!("{}.{mac}", URL_SAFE_NO_PAD.encode("000000000000.99999"));
        assert_eq!(t.verify(&forged, 0), None);
        for junk in ["", ".", "a.b", "not a token"] {
            assert_eq!(t.verify(junk, 0), None);
        }
    }
}
