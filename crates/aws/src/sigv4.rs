//! Server-side verification of AWS Signature Version 4 (header-signed and presigned requests).
//!
//! The signature is recomputed with the `aws-sigv4` crate — the same code the AWS SDK for Rust signs
//! with — from only what the client says it signed: the method, the path and query as received, the
//! headers named in `SignedHeaders` (plus `host`), the body, and the time and scope it claims.
//! This module's job is to parse what the client sent, check time windows, look up the secret and
//! drive `aws-sigv4` with settings that reproduce what botocore and the SDKs do. The one
//! exception is `fast`: for requests whose canonical form is their received bytes (what every
//! SDK sends to a JSON or query API) it builds the canonical request itself and reuses the
//! signing key, because `aws-sigv4` spent ~13% of a ListClusters request's CPU on per-call
//! set-up; a property test holds it to `aws-sigv4`'s answer.
//!
//! **Invariant:** no input panics. Every header value may be non-UTF-8 or absurdly long; the fuzz
//! target `crates/aws/fuzz/fuzz_targets/sigv4_parse.rs` holds us to it. In particular
//! `aws-sigv4` `expect`s a host when none is given, so we never call it without one.
//!
//! Error codes and messages are AWS's own (as a JSON-protocol service such as ECS words them), so
//! clients and people searching for the message land on the right explanation.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SessionTokenMode, SignableBody, SignableRequest,
    SignatureLocation, SigningSettings, UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use http::StatusCode;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The only algorithm we accept; SigV4a (`AWS4-ECDSA-P256-SHA256`) is not offered by any of the
/// services berth speaks.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const TERMINATOR: &str = "aws4_request";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// AWS caps presigned URLs at seven days.
const MAX_EXPIRES_SECS: u64 = 604_800;
/// How much of a client-supplied value we echo back in an error message.
const ECHO_LIMIT: usize = 512;

const Q_ALGORITHM: &str = "X-Amz-Algorithm";
const Q_CREDENTIAL: &str = "X-Amz-Credential";
const Q_DATE: &str = "X-Amz-Date";
const Q_EXPIRES: &str = "X-Amz-Expires";
const Q_SIGNED_HEADERS: &str = "X-Amz-SignedHeaders";
const Q_SIGNATURE: &str = "X-Amz-Signature";
const Q_SECURITY_TOKEN: &str = "X-Amz-Security-Token";
/// The query parameters a presigning client adds; `aws-sigv4` re-adds them itself from the values
/// we parsed, so they are removed from the query we hand it.
const PRESIGN_PARAMS: [&str; 7] = [
    Q_ALGORITHM,
    Q_CREDENTIAL,
    Q_DATE,
    Q_EXPIRES,
    Q_SIGNED_HEADERS,
    Q_SIGNATURE,
    Q_SECURITY_TOKEN,
];

const H_DATE: &str = "x-amz-date";
const H_CONTENT_SHA256: &str = "x-amz-content-sha256";
const H_SECURITY_TOKEN: &str = "x-amz-security-token";

/// Looks up a secret by access key id.
pub trait SecretSource: Send + Sync {
    fn secret(&self, access_key_id: &str) -> Option<Secret>;
}

/// What the server knows about an access key.
#[derive(Clone)]
pub struct Secret {
    pub secret_access_key: String,
    pub account_id: String,
}

impl fmt::Debug for Secret {
    // Secrets end up in logs through `{:?}` far too easily.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("secret_access_key", &"** redacted **")
            .field("account_id", &self.account_id)
            .finish()
    }
}

/// How strictly requests are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Look up the secret, check the time window and the signature.
    Verify,
    /// Parse and require a well-formed signature but check neither the signature, the secret nor
    /// the clock (for local CI, where any credentials should do). The account comes from the
    /// caller's config, so [`Principal::account_id`] is `None`.
    Open,
}

/// What a verified (or, in Open mode, well-formed) request says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub access_key_id: String,
    /// `None` in Open mode.
    pub account_id: Option<String>,
    pub region: String,
    pub service: String,
    pub signed_at: DateTime<Utc>,
}

/// Why a request was refused, as an AWS JSON service words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The Authorization header or the presigned query parameters are malformed.
    #[error("{0}")]
    IncompleteSignature(String),
    /// A signature that does not match, a time outside the window, a scope that does not fit.
    #[error("{0}")]
    InvalidSignature(String),
    /// The access key id is unknown.
    #[error("The security token included in the request is invalid.")]
    UnrecognizedClient,
    /// No signature at all, in Verify mode.
    #[error("Missing Authentication Token")]
    MissingAuthenticationToken,
    /// A presigned URL used after `X-Amz-Date + X-Amz-Expires`. AWS answers this with
    /// `AccessDenied` / "Request has expired" (S3, STS); for a JSON service the code takes the
    /// `Exception` suffix, as ECS's own `AccessDeniedException` does.
    #[error("Request has expired")]
    RequestExpired,
}

impl AuthError {
    /// The error a caller returns when [`Verifier::verify`] says there is no signature at all.
    pub fn missing() -> Self {
        AuthError::MissingAuthenticationToken
    }

    /// The AWS error code (`__type` for awsJson).
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::IncompleteSignature(_) => "IncompleteSignatureException",
            AuthError::InvalidSignature(_) => "InvalidSignatureException",
            AuthError::UnrecognizedClient => "UnrecognizedClientException",
            AuthError::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            AuthError::RequestExpired => "AccessDeniedException",
        }
    }

    /// The HTTP status an awsJson service (ECS, ECR, Logs) answers with. Signature and credential
    /// problems are 400 there (rest-json services such as EKS use 403 for some of them; a
    /// rest-json adapter can override); a missing token and a denied request are 403.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::IncompleteSignature(_)
            | AuthError::InvalidSignature(_)
            | AuthError::UnrecognizedClient => StatusCode::BAD_REQUEST,
            AuthError::MissingAuthenticationToken | AuthError::RequestExpired => {
                StatusCode::FORBIDDEN
            }
        }
    }

    /// The same error in the crate's wire error type.
    pub fn into_aws(self) -> crate::AwsError {
        let status = self.status();
        crate::AwsError::client(self.code(), self.to_string()).with_status(status)
    }

    fn mismatch() -> Self {
        AuthError::InvalidSignature(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method. Consult the service \
             documentation for details."
                .to_owned(),
        )
    }
}

/// Verifies SigV4 signatures.
///
/// The common request — header-signed, a plain path, no query, plain header values — takes
/// [`fast`]: its canonical request is built directly and the signing key of its day, region
/// and service is derived once. Everything else goes through `aws-sigv4`.
pub struct Verifier {
    mode: Mode,
    skew: Duration,
    secrets: Arc<dyn SecretSource>,
    keys: fast::KeyCache,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("mode", &self.mode)
            .field("skew", &self.skew)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier with AWS's clock-skew window of five minutes.
    pub fn new(mode: Mode, secrets: Arc<dyn SecretSource>) -> Self {
        Verifier {
            mode,
            skew: Duration::from_secs(300),
            secrets,
            keys: fast::KeyCache::default(),
        }
    }

    /// Changes the clock-skew window (how far `X-Amz-Date` may be from `now`).
    pub fn with_clock_skew(mut self, skew: Duration) -> Self {
        self.skew = skew;
        self
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Verifies header-signed (`Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…,
    /// Signature=…`) and presigned (`X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`,
    /// `X-Amz-Expires`, `X-Amz-SignedHeaders`, `X-Amz-Signature` query parameters) requests.
    ///
    /// Returns `Ok(None)` when the request carries no signature at all: the caller decides (Open
    /// mode lets it through, Verify mode answers [`AuthError::missing`]).
    pub fn verify(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Option<Principal>, AuthError> {
        let Some(claim) = parse(parts)? else {
            return Ok(None);
        };
        let principal = |account_id| Principal {
            access_key_id: claim.access_key_id.clone(),
            account_id,
            region: claim.region.clone(),
            service: claim.service.clone(),
            signed_at: claim.signed_at,
        };
        if self.mode == Mode::Open {
            return Ok(Some(principal(None)));
        }

        self.check_time(&claim, now)?;
        let secret = self
            .secrets
            .secret(&claim.access_key_id)
            .ok_or(AuthError::UnrecognizedClient)?;
        if !signature_matches(parts, body, &claim, &secret.secret_access_key, &self.keys) {
            return Err(AuthError::mismatch());
        }
        Ok(Some(principal(Some(secret.account_id))))
    }

    fn check_time(&self, claim: &Claim, now: SystemTime) -> Result<(), AuthError> {
        let now = truncate_to_secs(DateTime::<Utc>::from(now));
        let skew = TimeDelta::from_std(self.skew).unwrap_or(TimeDelta::MAX);
        let minutes = self.skew.as_secs() / 60;
        let signed_at = claim.signed_at;

        // A presigned URL is valid from (date - skew) until (date + expires); a header-signed
        // request within the skew window on either side of `now`.
        if let Some(upper) = now.checked_add_signed(skew)
            && signed_at > upper
        {
            return Err(AuthError::InvalidSignature(format!(
                "Signature not yet current: {} is still later than {} ({} + {minutes} min.)",
                fmt_amz(signed_at),
                fmt_amz(upper),
                fmt_amz(now),
            )));
        }
        match claim.expires {
            Some(expires) => {
                let deadline = TimeDelta::try_seconds(i64::try_from(expires).unwrap_or(i64::MAX))
                    .and_then(|d| signed_at.checked_add_signed(d));
                if deadline.is_some_and(|deadline| deadline < now) {
                    return Err(AuthError::RequestExpired);
                }
            }
            None => {
                if let Some(lower) = now.checked_sub_signed(skew)
                    && signed_at < lower
                {
                    return Err(AuthError::InvalidSignature(format!(
                        "Signature expired: {} is now earlier than {} ({} - {minutes} min.)",
                        fmt_amz(signed_at),
                        fmt_amz(lower),
                        fmt_amz(now),
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Where the signature travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    Header,
    Query,
}

/// What the request claims about its signature, parsed but not yet checked.
#[derive(Debug)]
struct Claim {
    location: Location,
    access_key_id: String,
    region: String,
    service: String,
    /// Lowercase names, in the client's order.
    signed_headers: Vec<String>,
    signature: String,
    signed_at: DateTime<Utc>,
    /// Presigned only: seconds after `signed_at` the URL stays valid.
    expires: Option<u64>,
    /// Only when the client signed it; otherwise it plays no part in the signature.
    session_token: Option<String>,
}

/// Parses the signature parts of a request; `Ok(None)` when there are none.
fn parse(parts: &http::request::Parts) -> Result<Option<Claim>, AuthError> {
    let query = parts.uri.query().unwrap_or("");
    let presigned = form_urlencoded::parse(query.as_bytes())
        .any(|(k, _)| k == Q_ALGORITHM || k == Q_CREDENTIAL || k == Q_SIGNATURE);
    let authorization = parts.headers.get(http::header::AUTHORIZATION);
    match (authorization, presigned) {
        (None, false) => Ok(None),
        (Some(_), true) => Err(AuthError::IncompleteSignature(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, \
             Signature query string parameter or the Authorization header should be specified"
                .to_owned(),
        )),
        (Some(value), false) => parse_header(parts, value.as_bytes()).map(Some),
        (None, true) => parse_query(query).map(Some),
    }
}

fn parse_header(parts: &http::request::Parts, raw: &[u8]) -> Result<Claim, AuthError> {
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    // Non-UTF-8 or another scheme (`Bearer …`, SigV2, SigV4a) leaves every parameter missing,
    // which is how AWS answers such a header.
    if let Ok(text) = std::str::from_utf8(raw)
        && let Some(rest) = text.strip_prefix(ALGORITHM)
        && rest.starts_with([' ', '\t'])
    {
        for param in rest.split(',') {
            let Some((key, value)) = param.trim().split_once('=') else {
                continue;
            };
            let slot = match key.trim() {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed_headers,
                "Signature" => &mut signature,
                _ => continue,
            };
            slot.get_or_insert(value.trim());
        }
    }
    let date = parts.headers.get(H_DATE).map(|v| v.as_bytes());

    let mut missing = Vec::new();
    if credential.is_none() {
        missing.push("Authorization header requires 'Credential' parameter.");
    }
    if signature.is_none() {
        missing.push("Authorization header requires 'Signature' parameter.");
    }
    if signed_headers.is_none() {
        missing.push("Authorization header requires 'SignedHeaders' parameter.");
    }
    if date.is_none() {
        // AWS also accepts `Date`, but `aws-sigv4` always puts `x-amz-date` in the canonical
        // request, and every SDK sends it.
        missing.push(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        );
    }
    let (Some(credential), Some(signed_headers), Some(signature), Some(date)) =
        (credential, signed_headers, signature, date)
    else {
        return Err(AuthError::IncompleteSignature(format!(
            "{} Authorization={}",
            missing.join(" "),
            echo(raw)
        )));
    };

    let signed_at = parse_amz_date(date)?;
    let scope = parse_scope(credential, signed_at)?;
    let signed_headers = parse_signed_headers(signed_headers)?;
    let session_token = if signed_headers.iter().any(|h| h == H_SECURITY_TOKEN) {
        parts
            .headers
            .get(H_SECURITY_TOKEN)
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
            .map(str::to_owned)
    } else {
        None
    };
    Ok(Claim {
        location: Location::Header,
        access_key_id: scope.access_key_id,
        region: scope.region,
        service: scope.service,
        signed_headers,
        signature: signature.to_owned(),
        signed_at,
        expires: None,
        session_token,
    })
}

fn parse_query(query: &str) -> Result<Claim, AuthError> {
    let mut values: [Option<Cow<'_, str>>; PRESIGN_PARAMS.len()] = Default::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if let Some(i) = PRESIGN_PARAMS.iter().position(|p| *p == key) {
            values[i].get_or_insert(value);
        }
    }
    let [
        algorithm,
        credential,
        date,
        expires,
        signed_headers,
        signature,
        session_token,
    ] = values;

    let mut missing = Vec::new();
    for (name, value) in [
        (Q_ALGORITHM, &algorithm),
        (Q_CREDENTIAL, &credential),
        (Q_SIGNATURE, &signature),
        (Q_SIGNED_HEADERS, &signed_headers),
        (Q_DATE, &date),
        (Q_EXPIRES, &expires),
    ] {
        if value.is_none() {
            missing.push(format!(
                "AWS query-string parameters must include '{name}'."
            ));
        }
    }
    let (
        Some(algorithm),
        Some(credential),
        Some(date),
        Some(expires),
        Some(signed_headers),
        Some(signature),
    ) = (
        algorithm,
        credential,
        date,
        expires,
        signed_headers,
        signature,
    )
    else {
        return Err(AuthError::IncompleteSignature(format!(
            "{} Re-examine the query-string parameters.",
            missing.join(" ")
        )));
    };

    if algorithm != ALGORITHM {
        return Err(AuthError::IncompleteSignature(format!(
            "X-Amz-Algorithm only supports \"{ALGORITHM}\", not '{}'.",
            echo(algorithm.as_bytes())
        )));
    }
    let expires = parse_expires(&expires)?;
    let signed_at = parse_amz_date(date.as_bytes())?;
    let scope = parse_scope(&credential, signed_at)?;
    let signed_headers = parse_signed_headers(&signed_headers)?;
    Ok(Claim {
        location: Location::Query,
        access_key_id: scope.access_key_id,
        region: scope.region,
        service: scope.service,
        signed_headers,
        signature: signature.into_owned(),
        signed_at,
        expires: Some(expires),
        session_token: session_token.map(Cow::into_owned),
    })
}

fn parse_expires(raw: &str) -> Result<u64, AuthError> {
    // Only the canonical decimal form: `aws-sigv4` re-serialises the number, so "0300" would
    // never match anyway, and a clear message beats a signature mismatch.
    let canonical = !raw.is_empty()
        && raw.bytes().all(|b| b.is_ascii_digit())
        && (raw == "0" || !raw.starts_with('0'));
    let value = if canonical {
        raw.parse::<u64>().ok()
    } else {
        None
    };
    match value {
        Some(v) if v <= MAX_EXPIRES_SECS => Ok(v),
        Some(_) => Err(AuthError::IncompleteSignature(format!(
            "X-Amz-Expires must be less than a week (in seconds) that is, the given X-Amz-Expires \
             must be less than {MAX_EXPIRES_SECS} seconds"
        ))),
        None => Err(AuthError::IncompleteSignature(format!(
            "X-Amz-Expires should be a number of seconds, not '{}'.",
            echo(raw.as_bytes())
        ))),
    }
}

/// `YYYYMMDD'T'HHMMSS'Z'`, exactly; anything else could not round-trip through `aws-sigv4`.
fn parse_amz_date(raw: &[u8]) -> Result<DateTime<Utc>, AuthError> {
    let well_formed = raw.len() == 16
        && raw[8] == b'T'
        && raw[15] == b'Z'
        && raw[..8].iter().chain(&raw[9..15]).all(u8::is_ascii_digit);
    match well_formed.then(|| amz_date_time(raw)).flatten() {
        Some(naive) => Ok(naive.and_utc()),
        None => Err(AuthError::IncompleteSignature(format!(
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\", not '{}'.",
            echo(raw)
        ))),
    }
}

/// The time a well-formed `YYYYMMDD'T'HHMMSS'Z'` names, `None` for one no calendar has (month
/// 13, February 30, hour 24). Built from the digits, because chrono's `parse_from_str`
/// interprets its format string on every call (~0.8 % of a request); a second of 60, a leap
/// second only chrono's parser knows how to represent, still goes to it.
fn amz_date_time(raw: &[u8]) -> Option<NaiveDateTime> {
    let second = decimal(&raw[13..15]);
    if second > 59 {
        let text = std::str::from_utf8(raw).ok()?;
        return NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%SZ").ok();
    }
    let year = i32::try_from(decimal(&raw[..4])).ok()?;
    NaiveDate::from_ymd_opt(year, decimal(&raw[4..6]), decimal(&raw[6..8]))?.and_hms_opt(
        decimal(&raw[9..11]),
        decimal(&raw[11..13]),
        second,
    )
}

/// The value of a run of ASCII digits (at most nine, so it cannot overflow).
fn decimal(digits: &[u8]) -> u32 {
    digits
        .iter()
        .fold(0, |n, d| n * 10 + u32::from(d.wrapping_sub(b'0')))
}

struct Scope {
    access_key_id: String,
    region: String,
    service: String,
}

/// `AKID/YYYYMMDD/region/service/aws4_request`, with the date matching `X-Amz-Date`.
fn parse_scope(credential: &str, signed_at: DateTime<Utc>) -> Result<Scope, AuthError> {
    let mut elements = credential.split('/');
    let (Some(access_key_id), Some(date), Some(region), Some(service), Some(terminator), None) = (
        elements.next(),
        elements.next(),
        elements.next(),
        elements.next(),
        elements.next(),
        elements.next(),
    ) else {
        return Err(AuthError::IncompleteSignature(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. \
             keyid/date/region/service/term, got '{}'",
            echo(credential.as_bytes())
        )));
    };
    if terminator != TERMINATOR {
        return Err(AuthError::IncompleteSignature(format!(
            "Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{}'.",
            echo(terminator.as_bytes())
        )));
    }
    if access_key_id.is_empty() {
        return Err(AuthError::IncompleteSignature(
            "Credential should name an access key id.".to_owned(),
        ));
    }
    if region.is_empty() {
        return Err(AuthError::IncompleteSignature(
            "Credential should be scoped to a valid region.".to_owned(),
        ));
    }
    if service.is_empty() {
        return Err(AuthError::IncompleteSignature(
            "Credential should be scoped to correct service.".to_owned(),
        ));
    }
    if !is_day_of(date, signed_at) {
        let amz_date = fmt_amz(signed_at);
        return Err(AuthError::InvalidSignature(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from \
             HTTP: '{}' != '{}', from '{amz_date}'.",
            echo(date.as_bytes()),
            amz_date.get(..8).unwrap_or_default(),
        )));
    }
    Ok(Scope {
        access_key_id: access_key_id.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
    })
}

/// Whether `date` is `signed_at`'s day written `YYYYMMDD`, as the first eight characters of
/// [`fmt_amz`] would write it. Compared on numbers, because formatting the time for every
/// request was ~2 % of its CPU. `signed_at` comes from [`parse_amz_date`], so its year has four
/// digits (0 to 9999), the years `fmt_amz` writes without a sign.
fn is_day_of(date: &str, signed_at: DateTime<Utc>) -> bool {
    let digits = date.as_bytes();
    if digits.len() != 8 || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    i32::try_from(decimal(&digits[..4])) == Ok(signed_at.year())
        && decimal(&digits[4..6]) == signed_at.month()
        && decimal(&digits[6..8]) == signed_at.day()
}

fn parse_signed_headers(raw: &str) -> Result<Vec<String>, AuthError> {
    let names: Vec<String> = raw.split(';').map(str::to_ascii_lowercase).collect();
    if !names.iter().any(|n| n == "host") {
        // `aws-sigv4` always signs `host`, and AWS insists on it too.
        return Err(AuthError::InvalidSignature(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".to_owned(),
        ));
    }
    Ok(names)
}

/// Recomputes the signature with `aws-sigv4` and compares it in constant time.
fn signature_matches(
    parts: &http::request::Parts,
    body: &[u8],
    claim: &Claim,
    secret_access_key: &str,
    keys: &fast::KeyCache,
) -> bool {
    let expected = match claim.location {
        Location::Header => {
            // The client chose whether to sign `x-amz-content-sha256`; when it did, the canonical
            // request's payload line is that header's value, which for us must be either
            // `UNSIGNED-PAYLOAD` or the body's hash. The hash is checked here, because a signature
            // over the declared hash says nothing about the body that actually arrived.
            // Streaming (`STREAMING-…`) payloads would need chunk signatures checked, so they
            // are refused.
            let signs_sha256 = claim.signed_headers.iter().any(|h| h == H_CONTENT_SHA256);
            let declared = parts.headers.get(H_CONTENT_SHA256).map(|v| v.as_bytes());
            let body = match declared {
                Some(v) if signs_sha256 && v == UNSIGNED_PAYLOAD.as_bytes() => {
                    SignableBody::UnsignedPayload
                }
                Some(v) if signs_sha256 => {
                    let actual = hex::encode(Sha256::digest(body));
                    if v != actual.as_bytes() {
                        return false;
                    }
                    SignableBody::Precomputed(actual)
                }
                _ => SignableBody::Bytes(body),
            };
            if let Some(expected) = fast::signature(parts, claim, secret_access_key, &body, keys) {
                return ct_eq(&expected, &claim.signature);
            }
            let kind = if signs_sha256 {
                PayloadChecksumKind::XAmzSha256
            } else {
                PayloadChecksumKind::NoHeader
            };
            compute(parts, claim, secret_access_key, body, kind)
        }
        Location::Query => {
            // SDKs presign other services over the body's hash (botocore's SigV4QueryAuth, the
            // Rust SDK) but S3-style presigners over `UNSIGNED-PAYLOAD`; the query does not say
            // which, so a mismatch gets a second try.
            let first = compute(
                parts,
                claim,
                secret_access_key,
                SignableBody::Bytes(body),
                PayloadChecksumKind::NoHeader,
            );
            if first.as_deref().is_some_and(|s| ct_eq(s, &claim.signature)) {
                return true;
            }
            compute(
                parts,
                claim,
                secret_access_key,
                SignableBody::UnsignedPayload,
                PayloadChecksumKind::NoHeader,
            )
        }
    };
    expected.is_some_and(|s| ct_eq(&s, &claim.signature))
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// One `aws-sigv4` signing pass; `None` when the request cannot be signed as received (a signed
/// header that is not UTF-8 or not a valid header value, a missing host), which can only mean
/// the client did not sign what we see.
fn compute(
    parts: &http::request::Parts,
    claim: &Claim,
    secret_access_key: &str,
    body: SignableBody<'_>,
    payload_checksum_kind: PayloadChecksumKind,
) -> Option<String> {
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(claim.signed_headers.len());
    let mut has_host = false;
    for name in &claim.signed_headers {
        // `aws-sigv4` adds these itself from the parsed time, credentials and payload setting;
        // passing them too would only be overwritten.
        if matches!(name.as_str(), H_DATE | H_SECURITY_TOKEN | H_CONTENT_SHA256)
            && claim.location == Location::Header
        {
            continue;
        }
        let mut found = false;
        for value in parts.headers.get_all(name.as_str()) {
            headers.push((name.as_str(), std::str::from_utf8(value.as_bytes()).ok()?));
            found = true;
        }
        if name == "host" && !found {
            // HTTP/2 carries the host in `:authority`, which `http` keeps in the URI.
            headers.push(("host", parts.uri.authority()?.as_str()));
            found = true;
        }
        has_host |= name == "host" && found;
    }
    if !has_host {
        return None;
    }

    let path = parts.uri.path();
    let query = match claim.location {
        Location::Header => Cow::Borrowed(parts.uri.query().unwrap_or("")),
        Location::Query => Cow::Owned(strip_presign_params(parts.uri.query().unwrap_or(""))),
    };
    let uri = if query.is_empty() {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(format!("{path}?{query}"))
    };
    let request =
        SignableRequest::new(parts.method.as_str(), uri, headers.into_iter(), body).ok()?;

    let mut settings = SigningSettings::default();
    // Only what the client listed in SignedHeaders was handed over, so nothing more to exclude.
    settings.excluded_headers = None;
    // What every SDK does outside S3: the received path is encoded once more and dot segments
    // are removed (botocore: `quote(normalize_url_path(path), safe='/~')`).
    settings.percent_encoding_mode = PercentEncodingMode::Double;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Enabled;
    settings.payload_checksum_kind = payload_checksum_kind;
    settings.session_token_mode = SessionTokenMode::Include;
    match claim.location {
        Location::Header => settings.signature_location = SignatureLocation::Headers,
        Location::Query => {
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = claim.expires.map(Duration::from_secs);
        }
    }

    let identity: Identity = Credentials::new(
        claim.access_key_id.clone(),
        secret_access_key.to_owned(),
        claim.session_token.clone(),
        None,
        "berth-sigv4-verifier",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&claim.region)
        .name(&claim.service)
        .time(SystemTime::from(claim.signed_at))
        .settings(settings)
        .build()
        .ok()?
        .into();
    let output = sign(request, &params).ok()?;
    Some(output.signature().to_owned())
}

/// The received query without the presigning parameters, each remaining pair kept exactly as
/// received (`aws-sigv4` decodes and re-encodes them when it builds the canonical query).
fn strip_presign_params(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            let decoded = form_urlencoded::parse(key.as_bytes())
                .next()
                .map(|(k, _)| k)
                .unwrap_or_default();
            !PRESIGN_PARAMS.contains(&decoded.as_ref())
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The canonical request of the requests every SDK sends to a JSON or query API, built without
/// `aws-sigv4` (which allocates a settings object, credentials, an identity, a sorted header map
/// and formats the time for every call), and signed with a cached signing key.
///
/// It applies only where the canonical forms are the received bytes themselves, so there is
/// nothing to encode or normalise: a header-signed request whose path is unreserved characters
/// and single slashes without dot segments, with no query, whose signed headers each appear
/// once with a value of visible ASCII and single inner spaces, and which signs `host` and
/// `x-amz-date`. For anything else it returns `None` and `aws-sigv4` decides. The unit test
/// `fast_path_agrees_with_aws_sigv4` compares both on generated requests.
mod fast {
    use super::{Claim, H_CONTENT_SHA256, H_DATE, Location, SignableBody, TERMINATOR};
    use hmac::{Hmac, KeyInit, Mac};
    use parking_lot::Mutex;
    use sha2::{Digest, Sha256};

    type HmacSha256 = Hmac<Sha256>;

    /// How many (secret, day, region, service) signing keys are kept.
    const KEYS_KEPT: usize = 16;

    struct CachedKey {
        secret: String,
        /// `YYYYMMDD/region/service`.
        scope: String,
        key: [u8; 32],
    }

    /// Derived signing keys, newest last.
    #[derive(Default)]
    pub(super) struct KeyCache(Mutex<Vec<CachedKey>>);

    impl KeyCache {
        fn key(&self, secret: &str, day: &str, region: &str, service: &str) -> [u8; 32] {
            let scope = format!("{day}/{region}/{service}");
            let mut keys = self.0.lock();
            if let Some(found) = keys.iter().find(|k| k.scope == scope && k.secret == secret) {
                return found.key;
            }
            let k_date = hmac(format!("AWS4{secret}").as_bytes(), day.as_bytes());
            let k_region = hmac(&k_date, region.as_bytes());
            let k_service = hmac(&k_region, service.as_bytes());
            let key = hmac(&k_service, TERMINATOR.as_bytes());
            if keys.len() >= KEYS_KEPT {
                keys.remove(0);
            }
            keys.push(CachedKey {
                secret: secret.to_owned(),
                scope,
                key,
            });
            key
        }
    }

    fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// Whether `path` is its own canonical form (see the module comment).
    fn plain_path(path: &str) -> bool {
        path.starts_with('/')
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/'))
            && !path.contains("//")
            && path
                .split('/')
                .all(|segment| segment != "." && segment != "..")
    }

    /// Whether `value` is its own canonical form: visible ASCII words, one space between them.
    fn plain_value(value: &[u8]) -> bool {
        !value.is_empty()
            && value.first() != Some(&b' ')
            && value.last() != Some(&b' ')
            && value.iter().all(|b| (b' '..=b'~').contains(b))
            && !value.windows(2).any(|w| w == b"  ")
    }

    /// The expected signature, or `None` when the request is not one this path handles.
    pub(super) fn signature(
        parts: &http::request::Parts,
        claim: &Claim,
        secret_access_key: &str,
        body: &SignableBody<'_>,
        keys: &KeyCache,
    ) -> Option<String> {
        if claim.location != Location::Header || parts.uri.query().is_some() {
            return None;
        }
        let path = parts.uri.path();
        if !plain_path(path) {
            return None;
        }
        let mut names: Vec<&str> = claim.signed_headers.iter().map(String::as_str).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) || !names.contains(&H_DATE) {
            return None;
        }
        let payload_hash = match body {
            SignableBody::UnsignedPayload => super::UNSIGNED_PAYLOAD.to_owned(),
            SignableBody::Precomputed(hash) => hash.clone(),
            SignableBody::Bytes(bytes) => hex::encode(Sha256::digest(bytes)),
            _ => return None,
        };

        let mut canonical = String::with_capacity(256 + payload_hash.len());
        canonical.push_str(parts.method.as_str());
        canonical.push('\n');
        canonical.push_str(path);
        canonical.push_str("\n\n");
        let mut amz_date = None;
        for name in &names {
            let mut values = parts.headers.get_all(*name).iter();
            let value = match (values.next(), values.next()) {
                (Some(v), None) => v.as_bytes(),
                // HTTP/2 carries the host in `:authority`, which `http` keeps in the URI.
                (None, _) if *name == "host" => parts.uri.authority()?.as_str().as_bytes(),
                _ => return None,
            };
            if !plain_value(value) {
                return None;
            }
            // Plain ASCII by the check above.
            let value = std::str::from_utf8(value).ok()?;
            if *name == H_DATE {
                amz_date = Some(value);
            }
            if *name == H_CONTENT_SHA256 && value != payload_hash {
                return None;
            }
            canonical.push_str(name);
            canonical.push(':');
            canonical.push_str(value);
            canonical.push('\n');
        }
        canonical.push('\n');
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                canonical.push(';');
            }
            canonical.push_str(name);
        }
        canonical.push('\n');
        canonical.push_str(&payload_hash);

        let amz_date = amz_date?;
        let day = amz_date.get(..8)?;
        let mut to_sign = String::with_capacity(160);
        to_sign.push_str(super::ALGORITHM);
        to_sign.push('\n');
        to_sign.push_str(amz_date);
        to_sign.push('\n');
        for part in [day, &claim.region, &claim.service, TERMINATOR] {
            to_sign.push_str(part);
            to_sign.push('/');
        }
        to_sign.pop();
        to_sign.push('\n');
        to_sign.push_str(&hex::encode(Sha256::digest(canonical.as_bytes())));

        let key = keys.key(secret_access_key, day, &claim.region, &claim.service);
        Some(hex::encode(hmac(&key, to_sign.as_bytes())))
    }
}

fn fmt_amz(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

fn truncate_to_secs(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// A client-supplied value, safe to put in a message: lossy UTF-8, bounded length.
fn echo(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    if text.chars().count() > ECHO_LIMIT {
        let mut cut: String = text.chars().take(ECHO_LIMIT).collect();
        cut.push('…');
        cut
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    /// A request claiming to sign `host`, `x-amz-date`, `extra` (in that order, `extra` may
    /// repeat a name) and optionally `x-amz-content-sha256`; the signature itself is a dummy.
    fn request(
        path: &str,
        extra: &[(String, String)],
        content_sha256: Option<&str>,
    ) -> (http::request::Parts, Claim) {
        let mut names = vec!["host".to_owned(), "x-amz-date".to_owned()];
        let mut builder = http::Request::builder()
            .method("POST")
            .uri(path)
            .header("host", "127.0.0.1:4566")
            .header("x-amz-date", "20250101T120000Z");
        for (name, value) in extra {
            builder = builder.header(name, value);
            names.push(name.clone());
        }
        if let Some(hash) = content_sha256 {
            builder = builder.header(H_CONTENT_SHA256, hash);
            names.push(H_CONTENT_SHA256.to_owned());
        }
        let authorization = format!(
            "{ALGORITHM} Credential=AKID/20250101/us-east-1/ecs/aws4_request, \
             SignedHeaders={}, Signature=00",
            names.join(";")
        );
        let (parts, ()) = builder
            .header("authorization", authorization)
            .body(())
            .expect("request")
            .into_parts();
        let claim = parse(&parts).expect("parses").expect("signed");
        (parts, claim)
    }

    /// Both ways to the expected signature; the fast one is `None` where it does not apply.
    fn both(
        parts: &http::request::Parts,
        claim: &Claim,
        body: &[u8],
        content_sha256: Option<&str>,
    ) -> (Option<String>, Option<String>) {
        let (signable, kind) = match content_sha256 {
            Some(UNSIGNED_PAYLOAD) => (
                SignableBody::UnsignedPayload,
                PayloadChecksumKind::XAmzSha256,
            ),
            Some(hash) => (
                SignableBody::Precomputed(hash.to_owned()),
                PayloadChecksumKind::XAmzSha256,
            ),
            None => (SignableBody::Bytes(body), PayloadChecksumKind::NoHeader),
        };
        let keys = fast::KeyCache::default();
        let quick = fast::signature(parts, claim, SECRET, &signable, &keys);
        // Twice: the second takes the cached key.
        assert_eq!(
            quick,
            fast::signature(parts, claim, SECRET, &signable, &keys)
        );
        (quick, compute(parts, claim, SECRET, signable, kind))
    }

    #[test]
    fn fast_path_takes_the_sdk_request() {
        let body = br#"{"clusterName":"c"}"#;
        let extra = [
            (
                "content-type".to_owned(),
                "application/x-amz-json-1.1".to_owned(),
            ),
            (
                "x-amz-target".to_owned(),
                "AmazonEC2ContainerServiceV20141113.ListClusters".to_owned(),
            ),
        ];
        let (parts, claim) = request("/", &extra, None);
        let (quick, slow) = both(&parts, &claim, body, None);
        assert!(quick.is_some(), "the fast path declined a plain request");
        assert_eq!(quick, slow);
    }

    fn path() -> impl Strategy<Value = String> {
        prop_oneof![
            "(/[A-Za-z0-9._~-]{0,6}){1,3}",
            "/[A-Za-z0-9%/. -]{0,10}"
                .prop_filter("a valid URI", |p| p.parse::<http::Uri>().is_ok()),
        ]
    }

    fn extra() -> impl Strategy<Value = Vec<(String, String)>> {
        prop::collection::vec(("x-test-[ab]", "[ -~]{0,12}"), 0..4)
    }

    fn content_sha256() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            Just(Some(UNSIGNED_PAYLOAD.to_owned())),
            Just(Some(hex::encode(Sha256::digest(b"body")))),
        ]
    }

    /// Digits shaped like a date, mostly near the valid ranges so both valid and impossible
    /// dates (month 13, day 31 of a short month, hour 24, second 60) come up often.
    fn amz_date() -> impl Strategy<Value = String> {
        "[0-9]{4}(0[0-9]|1[0-3])([0-2][0-9]|3[0-2])T([01][0-9]|2[0-5])[0-6][0-9][0-6][0-9]Z"
    }

    /// Any time an `X-Amz-Date` can name: years 0 to 9999, leap seconds included.
    fn any_time() -> impl Strategy<Value = DateTime<Utc>> {
        (
            -62_167_219_200i64..=253_402_300_799,
            prop_oneof![Just(0u32), 0u32..2_000_000_000],
        )
            .prop_filter_map("a representable time", |(secs, nanos)| {
                DateTime::from_timestamp(secs, nanos)
            })
    }

    /// Scope dates to hold against `t`: its own day, the days either side, its digits
    /// shuffled, and anything at all.
    fn scope_date_for(t: DateTime<Utc>) -> impl Strategy<Value = String> {
        let day = |d: Option<DateTime<Utc>>| {
            d.and_then(|d| fmt_amz(d).get(..8).map(str::to_owned))
                .unwrap_or_default()
        };
        let own = day(Some(t));
        let before = day(t.checked_sub_signed(TimeDelta::days(1)));
        let after = day(t.checked_add_signed(TimeDelta::days(1)));
        let reversed: String = own.chars().rev().collect();
        prop_oneof![
            Just(own),
            Just(before),
            Just(after),
            Just(reversed),
            "[0-9]{8}",
            "[+0-9]{0,10}",
        ]
    }

    proptest! {
        /// The digit parser answers exactly what chrono's `parse_from_str` did before it.
        #[test]
        fn amz_dates_parse_as_chrono_parses_them(raw in amz_date()) {
            prop_assert_eq!(
                amz_date_time(raw.as_bytes()),
                NaiveDateTime::parse_from_str(&raw, "%Y%m%dT%H%M%SZ").ok()
            );
        }

        /// The scope date comparison answers exactly what comparing with the formatted time did.
        #[test]
        fn scope_day_compares_as_formatting_did(
            (t, date) in any_time().prop_flat_map(|t| (Just(t), scope_date_for(t)))
        ) {
            prop_assert_eq!(is_day_of(&date, t), fmt_amz(t).get(..8) == Some(date.as_str()));
        }

        #[test]
        fn fast_path_agrees_with_aws_sigv4(
            path in path(),
            extra in extra(),
            content_sha256 in content_sha256(),
        ) {
            let (parts, claim) = request(&path, &extra, content_sha256.as_deref());
            let (quick, slow) = both(&parts, &claim, b"body", content_sha256.as_deref());
            if let Some(quick) = quick {
                prop_assert_eq!(Some(quick), slow);
            }
        }
    }
}
