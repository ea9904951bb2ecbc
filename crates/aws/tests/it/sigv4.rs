//! SigV4 verification against requests signed the way the SDKs sign them: by `aws-sigv4`'s client
//! API (the Rust SDK's signer) and by botocore itself, run as a subprocess.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use berth_aws::sigv4::{AuthError, Mode, Principal, Secret, SecretSource, Verifier};
use http::request::Parts;
use http::{HeaderValue, Method, StatusCode};
use proptest::prelude::*;

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const OTHER_AKID: &str = "AKIDOTHER";
const OTHER_SECRET: &str = "otherSecretKeyotherSecretKeyotherSecretK";
const ACCOUNT: &str = "123456789012";
const ENDPOINT: &str = "http://127.0.0.1:4566";
const MISMATCH: &str = "The request signature we calculated does not match the signature you \
                        provided. Check your AWS Secret Access Key and signing method. Consult \
                        the service documentation for details.";

/// 2025-01-01T12:00:00Z: midday, so a few minutes either way stay on the same scope date.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_735_732_800)
}

struct Keys(HashMap<String, Secret>);

impl SecretSource for Keys {
    fn secret(&self, access_key_id: &str) -> Option<Secret> {
        self.0.get(access_key_id).cloned()
    }
}

fn keys(pairs: &[(&str, &str)]) -> Arc<dyn SecretSource> {
    Arc::new(Keys(
        pairs
            .iter()
            .map(|(k, s)| {
                let secret = Secret {
                    secret_access_key: (*s).to_owned(),
                    account_id: ACCOUNT.to_owned(),
                };
                ((*k).to_owned(), secret)
            })
            .collect(),
    ))
}

fn verifier() -> Verifier {
    Verifier::new(
        Mode::Verify,
        keys(&[(AKID, SECRET), (OTHER_AKID, OTHER_SECRET)]),
    )
}

/// How the client signs.
#[derive(Debug, Clone, Copy, Default)]
struct How {
    /// Sign `x-amz-content-sha256` (what S3-style signers do).
    content_sha256: bool,
    /// With `content_sha256`: sign `UNSIGNED-PAYLOAD` instead of the body's hash.
    unsigned_payload: bool,
    session_token: bool,
    /// Presign for this many seconds instead of signing headers.
    presign: Option<u64>,
}

/// An awsJson request as the Rust SDK builds it before signing.
fn ecs_request(
    path_and_query: &str,
    body: &[u8],
    extra: &[(String, String)],
) -> http::Request<Vec<u8>> {
    let mut builder = http::Request::builder()
        .method(Method::POST)
        .uri(format!("{ENDPOINT}{path_and_query}"))
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "x-amz-target",
            "AmazonEC2ContainerServiceV20141113.ListClusters",
        )
        .header(
            "x-amz-user-agent",
            "aws-sdk-rust/1.3.9 api/ecs/1.0 os/linux lang/rust/1.95.0",
        )
        .header("user-agent", "aws-sdk-rust/1.3.9 os/linux lang/rust/1.95.0")
        .header("content-length", body.len().to_string());
    for (name, value) in extra {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder.body(body.to_vec()).expect("valid test request")
}

/// Signs `req` with `aws-sigv4`'s client API, as the SDK does, and returns what a server would
/// receive: the origin-form URI and a `Host` header.
fn signed(req: http::Request<Vec<u8>>, time: SystemTime, how: How) -> (Parts, Vec<u8>) {
    let token = how
        .session_token
        .then(|| "FQoGZXIvYXdzEJr//////////session+token/=".to_owned());
    let identity: Identity = Credentials::new(AKID, SECRET, token, None, "test").into();
    let mut settings = SigningSettings::default();
    if how.content_sha256 {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    if let Some(secs) = how.presign {
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(secs));
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("ecs")
        .time(time)
        .settings(settings)
        .build()
        .expect("signing params")
        .into();

    let (parts, body) = req.into_parts();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().expect("ascii").to_owned()))
        .collect();
    let signable_body = if how.unsigned_payload {
        SignableBody::UnsignedPayload
    } else {
        SignableBody::Bytes(&body)
    };
    let signable = SignableRequest::new(
        parts.method.as_str(),
        parts.uri.to_string(),
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        signable_body,
    )
    .expect("signable");
    let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
    let mut req = http::Request::from_parts(parts.clone(), body.clone());
    instructions.apply_to_request_http1x(&mut req);
    to_server(req)
}

/// What the server sees of a client request: `Host` from the authority, origin-form URI.
fn to_server(req: http::Request<Vec<u8>>) -> (Parts, Vec<u8>) {
    let (mut parts, body) = req.into_parts();
    if let Some(authority) = parts.uri.authority().cloned() {
        parts
            .headers
            .entry(http::header::HOST)
            .or_insert(HeaderValue::from_str(authority.as_str()).expect("host"));
    }
    let origin = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    parts.uri = origin.parse().expect("origin-form uri");
    (parts, body)
}

fn verify_at(
    v: &Verifier,
    parts: &Parts,
    body: &[u8],
    now: SystemTime,
) -> Result<Principal, AuthError> {
    v.verify(parts, body, now)
        .and_then(|p| p.ok_or_else(AuthError::missing))
}

fn ok_principal(parts: &Parts, body: &[u8]) -> Principal {
    match verify_at(&verifier(), parts, body, t0()) {
        Ok(p) => p,
        Err(e) => panic!("expected verification to pass, got {}: {e}", e.code()),
    }
}

fn err_at(v: &Verifier, parts: &Parts, body: &[u8], now: SystemTime) -> AuthError {
    match v.verify(parts, body, now) {
        Err(e) => e,
        Ok(p) => panic!("expected an error, got {p:?}"),
    }
}

const LIST_CLUSTERS: &[u8] = b"{\"maxResults\":10}";

#[test]
fn header_signed_requests_verify() {
    for how in [
        How::default(),
        How {
            content_sha256: true,
            ..How::default()
        },
        How {
            content_sha256: true,
            unsigned_payload: true,
            ..How::default()
        },
        How {
            session_token: true,
            ..How::default()
        },
        How {
            session_token: true,
            content_sha256: true,
            ..How::default()
        },
    ] {
        let (parts, body) = signed(ecs_request("/", LIST_CLUSTERS, &[]), t0(), how);
        let p = ok_principal(&parts, &body);
        assert_eq!(p.access_key_id, AKID, "{how:?}");
        assert_eq!(p.account_id.as_deref(), Some(ACCOUNT));
        assert_eq!(
            (p.region.as_str(), p.service.as_str()),
            ("us-east-1", "ecs")
        );
        assert_eq!(SystemTime::from(p.signed_at), t0());
    }
}

#[test]
fn the_sdk_signs_x_amz_user_agent_and_not_user_agent() {
    let (parts, body) = signed(ecs_request("/", LIST_CLUSTERS, &[]), t0(), How::default());
    let auth = parts.headers["authorization"].to_str().expect("ascii");
    assert!(auth.contains("x-amz-user-agent"), "{auth}");
    assert!(!auth.contains(";user-agent"), "{auth}");
    ok_principal(&parts, &body);
}

#[test]
fn presigned_requests_verify() {
    for how in [
        How {
            presign: Some(900),
            ..How::default()
        },
        How {
            presign: Some(900),
            session_token: true,
            ..How::default()
        },
        How {
            presign: Some(900),
            unsigned_payload: true,
            ..How::default()
        },
    ] {
        let req = ecs_request("/some/path?Action=ListClusters&x=a%20b", b"", &[]);
        let (parts, body) = signed(req, t0(), how);
        assert!(
            parts
                .uri
                .query()
                .is_some_and(|q| q.contains("X-Amz-Signature="))
        );
        ok_principal(&parts, &body);
        // Unlike a header-signed request, a presigned URL is good for its whole lifetime.
        let later = t0() + Duration::from_secs(899);
        verify_at(&verifier(), &parts, &body, later).expect("still valid");
    }
}

#[test]
fn expired_presigned_url_is_access_denied() {
    let req = ecs_request("/?Action=ListClusters", b"", &[]);
    let (parts, body) = signed(
        req,
        t0(),
        How {
            presign: Some(60),
            ..How::default()
        },
    );
    let e = err_at(&verifier(), &parts, &body, t0() + Duration::from_secs(61));
    assert_eq!(e.code(), "AccessDeniedException");
    assert_eq!(e.to_string(), "Request has expired");
    assert_eq!(e.status(), StatusCode::FORBIDDEN);
}

#[test]
fn presigned_url_from_the_future_is_not_yet_current() {
    let req = ecs_request("/?Action=ListClusters", b"", &[]);
    let (parts, body) = signed(
        req,
        t0(),
        How {
            presign: Some(60),
            ..How::default()
        },
    );
    let e = err_at(&verifier(), &parts, &body, t0() - Duration::from_secs(360));
    assert_eq!(e.code(), "InvalidSignatureException");
    assert!(
        e.to_string().starts_with("Signature not yet current:"),
        "{e}"
    );
}

#[test]
fn presigned_query_needs_every_parameter() {
    let (mut parts, body) = signed(
        ecs_request("/", b"", &[]),
        t0(),
        How {
            presign: Some(60),
            ..How::default()
        },
    );
    let query = parts.uri.query().expect("query").to_owned();
    let without: Vec<&str> = query
        .split('&')
        .filter(|p| !p.starts_with("X-Amz-Expires="))
        .collect();
    parts.uri = format!("/?{}", without.join("&")).parse().expect("uri");
    let e = err_at(&verifier(), &parts, &body, t0());
    assert_eq!(e.code(), "IncompleteSignatureException");
    assert_eq!(
        e.to_string(),
        "AWS query-string parameters must include 'X-Amz-Expires'. Re-examine the query-string \
         parameters."
    );
}

#[test]
fn skew_window() {
    let (parts, body) = signed(ecs_request("/", LIST_CLUSTERS, &[]), t0(), How::default());
    let v = verifier();
    let min = |m: u64| Duration::from_secs(60 * m);

    verify_at(&v, &parts, &body, t0() + min(4)).expect("4 minutes late is fine");
    verify_at(&v, &parts, &body, t0() - min(4)).expect("4 minutes early is fine");

    let late = err_at(&v, &parts, &body, t0() + min(6));
    assert_eq!(late.code(), "InvalidSignatureException");
    assert_eq!(
        late.to_string(),
        "Signature expired: 20250101T120000Z is now earlier than 20250101T120100Z \
         (20250101T120600Z - 5 min.)"
    );
    assert_eq!(late.status(), StatusCode::BAD_REQUEST);

    let early = err_at(&v, &parts, &body, t0() - min(6));
    assert_eq!(early.code(), "InvalidSignatureException");
    assert_eq!(
        early.to_string(),
        "Signature not yet current: 20250101T120000Z is still later than 20250101T115900Z \
         (20250101T115400Z + 5 min.)"
    );
}

#[test]
fn configurable_skew() {
    let (parts, body) = signed(ecs_request("/", LIST_CLUSTERS, &[]), t0(), How::default());
    let v = verifier().with_clock_skew(Duration::from_secs(900));
    verify_at(&v, &parts, &body, t0() + Duration::from_secs(600)).expect("inside 15 minutes");
    let e = err_at(&v, &parts, &body, t0() + Duration::from_secs(1000));
    assert!(e.to_string().ends_with("- 15 min.)"), "{e}");
}

#[test]
fn unknown_access_key_is_unrecognized() {
    let (parts, body) = signed(ecs_request("/", LIST_CLUSTERS, &[]), t0(), How::default());
    let v = Verifier::new(Mode::Verify, keys(&[(OTHER_AKID, OTHER_SECRET)]));
    let e = err_at(&v, &parts, &body, t0());
    assert_eq!(e.code(), "UnrecognizedClientException");
    assert_eq!(
        e.to_string(),
        "The security token included in the request is invalid."
    );
    assert_eq!(e.status(), StatusCode::BAD_REQUEST);
}

#[test]
fn unsigned_request_is_none_and_the_caller_says_missing() {
    let (parts, body) = to_server(ecs_request("/", LIST_CLUSTERS, &[]));
    assert_eq!(verifier().verify(&parts, &body, t0()), Ok(None));
    let open = Verifier::new(Mode::Open, keys(&[]));
    assert_eq!(open.verify(&parts, &body, t0()), Ok(None));
    let e = AuthError::missing();
    assert_eq!(e.code(), "MissingAuthenticationTokenException");
    assert_eq!(e.to_string(), "Missing Authentication Token");
    assert_eq!(e.status(), StatusCode::FORBIDDEN);
    let wire = e.into_aws();
    assert_eq!(
        (wire.code.as_ref(), wire.status),
        ("MissingAuthenticationTokenException", StatusCode::FORBIDDEN)
    );
}

fn with_authorization(value: &[u8]) -> Parts {
    let (mut parts, _) = to_server(ecs_request("/", LIST_CLUSTERS, &[]));
    parts.headers.insert(
        "authorization",
        HeaderValue::from_bytes(value).expect("header value"),
    );
    parts
        .headers
        .insert("x-amz-date", HeaderValue::from_static("20250101T120000Z"));
    parts
}

#[test]
fn malformed_authorization_headers() {
    let check = |auth: &[u8], code: &str, message: &str| {
        let parts = with_authorization(auth);
        for mode in [Mode::Verify, Mode::Open] {
            let v = Verifier::new(mode, keys(&[(AKID, SECRET)]));
            let e = err_at(&v, &parts, LIST_CLUSTERS, t0());
            assert_eq!(
                (e.code(), e.to_string().as_str()),
                (code, message),
                "{mode:?}"
            );
        }
    };
    check(
        b"Bearer abc",
        "IncompleteSignatureException",
        "Authorization header requires 'Credential' parameter. Authorization header requires \
         'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. \
         Authorization=Bearer abc",
    );
    check(
        b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250101/us-east-1/ecs/aws4_request",
        "IncompleteSignatureException",
        "Authorization header requires 'Signature' parameter. Authorization header requires \
         'SignedHeaders' parameter. Authorization=AWS4-HMAC-SHA256 \
         Credential=AKIDEXAMPLE/20250101/us-east-1/ecs/aws4_request",
    );
    check(
        b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250101/us-east-1, SignedHeaders=host, \
          Signature=00",
        "IncompleteSignatureException",
        "Credential must have exactly 5 slash-delimited elements, e.g. \
         keyid/date/region/service/term, got 'AKIDEXAMPLE/20250101/us-east-1'",
    );
    check(
        b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250101/us-east-1/ecs/aws4_request/, \
          SignedHeaders=host, Signature=00",
        "IncompleteSignatureException",
        "Credential must have exactly 5 slash-delimited elements, e.g. \
         keyid/date/region/service/term, got 'AKIDEXAMPLE/20250101/us-east-1/ecs/aws4_request/'",
    );
    check(
        b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250101/us-east-1/ecs/aws5_request, \
          SignedHeaders=host, Signature=00",
        "IncompleteSignatureException",
        "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws5_request'.",
    );
    check(
        b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250102/us-east-1/ecs/aws4_request, \
          SignedHeaders=host;x-amz-date, Signature=00",
        "InvalidSignatureException",
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from \
         HTTP: '20250102' != '20250101', from '20250101T120000Z'.",
    );
    check(
        b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250101/us-east-1/ecs/aws4_request, \
          SignedHeaders=x-amz-date, Signature=00",
        "InvalidSignatureException",
        "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
    );
    // Non-UTF-8 in the header is answered like any other foreign scheme.
    let e = err_at(
        &verifier(),
        &with_authorization(b"AWS4-HMAC-SHA256 \xff\xfe"),
        b"",
        t0(),
    );
    assert_eq!(e.code(), "IncompleteSignatureException");
}

/// The credential scope's date is compared with `X-Amz-Date`'s day field by field: a scope one
/// day either side of it is refused with AWS's message, across a month's and a year's end, and
/// a request signed in the first or last second of its day verifies.
#[test]
fn scope_date_one_day_off_is_refused() {
    let check = |amz_date: &'static str, scope_date: &str| {
        let mut parts = with_authorization(
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{scope_date}/us-east-1/ecs/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature=00"
            )
            .as_bytes(),
        );
        parts
            .headers
            .insert("x-amz-date", HeaderValue::from_static(amz_date));
        let e = err_at(
            &Verifier::new(Mode::Open, keys(&[(AKID, SECRET)])),
            &parts,
            LIST_CLUSTERS,
            t0(),
        );
        assert_eq!(
            (e.code(), e.to_string()),
            (
                "InvalidSignatureException",
                format!(
                    "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of \
                     date from HTTP: '{scope_date}' != '{}', from '{amz_date}'.",
                    &amz_date[..8]
                )
            )
        );
    };
    check("20250101T000000Z", "20241231");
    check("20241231T235959Z", "20250101");
    check("20250228T120000Z", "20250227");
    check("20250228T120000Z", "20250301");
    check("20240229T120000Z", "20240228");
    check("20240229T120000Z", "20240301");
    // Same digits in another order, and a date with a sign, are not the day either.
    check("20250102T120000Z", "20250201");
    check("20250102T120000Z", "+2025010");

    for edge in [1_735_689_600, 1_735_689_600 + 86_399] {
        let at = UNIX_EPOCH + Duration::from_secs(edge);
        let (parts, body) = signed(ecs_request("/", LIST_CLUSTERS, &[]), at, How::default());
        let p = verify_at(&verifier(), &parts, &body, at).expect("verifies at the day's edge");
        assert_eq!(p.signed_at.timestamp(), i64::try_from(edge).unwrap());
    }
}

#[test]
fn missing_date_is_incomplete() {
    let (mut parts, body) = signed(ecs_request("/", LIST_CLUSTERS, &[]), t0(), How::default());
    parts.headers.remove("x-amz-date");
    let e = err_at(&verifier(), &parts, &body, t0());
    assert_eq!(e.code(), "IncompleteSignatureException");
    assert!(
        e.to_string().starts_with(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        ),
        "{e}"
    );
}

#[test]
fn header_and_query_signature_together_is_refused() {
    let (mut parts, body) = signed(ecs_request("/", LIST_CLUSTERS, &[]), t0(), How::default());
    parts.uri = "/?X-Amz-Signature=00".parse().expect("uri");
    assert_eq!(
        err_at(&verifier(), &parts, &body, t0()).code(),
        "IncompleteSignatureException"
    );
}

#[test]
fn open_mode_accepts_well_formed_wrong_signatures() {
    let (mut parts, body) = signed(ecs_request("/", LIST_CLUSTERS, &[]), t0(), How::default());
    let auth = parts.headers["authorization"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let (head, _) = auth.rsplit_once("Signature=").expect("signature");
    let forged = format!("{head}Signature={}", "0".repeat(64));
    parts.headers.insert(
        "authorization",
        HeaderValue::from_str(&forged).expect("value"),
    );

    let e = err_at(&verifier(), &parts, &body, t0());
    assert_eq!(
        (e.code(), e.to_string().as_str()),
        ("InvalidSignatureException", MISMATCH)
    );

    // Open mode needs no secret, and ignores the clock too.
    let open = Verifier::new(Mode::Open, keys(&[]));
    let p = verify_at(&open, &parts, &body, t0() + Duration::from_secs(86_400)).expect("open");
    assert_eq!(p.access_key_id, AKID);
    assert_eq!(p.account_id, None);
    assert_eq!(p.service, "ecs");
}

#[test]
fn open_mode_still_rejects_malformed_presigned_queries() {
    let open = Verifier::new(Mode::Open, keys(&[]));
    let (mut parts, _) = to_server(ecs_request("/", b"", &[]));
    parts.uri = "/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=x"
        .parse()
        .expect("uri");
    let e = err_at(&open, &parts, b"", t0());
    assert_eq!(e.code(), "IncompleteSignatureException");
    assert!(
        e.to_string().contains("must include 'X-Amz-Signature'"),
        "{e}"
    );
}

/// One way to tamper with a signed request, and the code the verifier must answer with.
#[derive(Debug, Clone)]
enum Mutation {
    HeaderValue(prop::sample::Index),
    Body,
    Path,
    Query,
    Date,
    /// A different, known access key: the signature cannot match.
    KnownAccessKey,
    /// An access key the server never heard of.
    UnknownAccessKey,
    /// The server holds a different secret for the key.
    Secret,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Mutation::HeaderValue),
        Just(Mutation::Body),
        Just(Mutation::Path),
        Just(Mutation::Query),
        Just(Mutation::Date),
        Just(Mutation::KnownAccessKey),
        Just(Mutation::UnknownAccessKey),
        Just(Mutation::Secret),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec("[A-Za-z0-9_~-]{1,8}(%20|%2F|%25)?", 0..4)
        .prop_map(|segments| format!("/{}", segments.join("/")))
}

fn query() -> impl Strategy<Value = String> {
    prop::collection::vec(("[a-zA-Z]{1,6}", "[a-zA-Z0-9 /+=]{0,8}"), 0..3).prop_map(|pairs| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &pairs {
            q.append_pair(k, v);
        }
        q.finish()
    })
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(("x-test-[a-z]{1,5}", "[!-~][ -~]{0,20}"), 0..4)
}

fn how() -> impl Strategy<Value = How> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(sha, unsigned, token)| How {
        content_sha256: sha,
        unsigned_payload: sha && unsigned,
        session_token: token,
        presign: None,
    })
}

fn set_header(parts: &mut Parts, name: &str, value: &str) {
    parts.headers.insert(
        http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
        HeaderValue::from_str(value).expect("value"),
    );
}

/// Applies `m`; returns the verifier to use and the code it must answer with.
fn mutate(
    m: &Mutation,
    parts: &mut Parts,
    body: &mut Vec<u8>,
    how: How,
) -> (Verifier, &'static str) {
    let invalid = "InvalidSignatureException";
    let auth = parts.headers["authorization"]
        .to_str()
        .expect("ascii")
        .to_owned();
    match m {
        Mutation::HeaderValue(index) => {
            let signed = auth
                .split("SignedHeaders=")
                .nth(1)
                .and_then(|s| s.split(',').next());
            let names: Vec<&str> = signed
                .expect("signed headers")
                .split(';')
                .filter(|n| *n != "x-amz-date")
                .collect();
            let name = names[index.index(names.len())];
            let old = parts.headers[name].to_str().expect("ascii").to_owned();
            set_header(parts, name, &format!("{old}z"));
            (verifier(), invalid)
        }
        Mutation::Body => {
            body.push(b'!');
            // An UNSIGNED-PAYLOAD signature does not cover the body, by design.
            let code = if how.unsigned_payload { "" } else { invalid };
            (verifier(), code)
        }
        Mutation::Path => {
            let pq = parts.uri.path_and_query().expect("pq").as_str();
            let changed = match pq.split_once('?') {
                Some((p, q)) => format!("{p}zz?{q}"),
                None => format!("{pq}zz"),
            };
            parts.uri = changed.parse().expect("uri");
            (verifier(), invalid)
        }
        Mutation::Query => {
            let pq = parts.uri.path_and_query().expect("pq").as_str();
            let sep = if pq.contains('?') { '&' } else { '?' };
            parts.uri = format!("{pq}{sep}extra=1").parse().expect("uri");
            (verifier(), invalid)
        }
        Mutation::Date => {
            set_header(parts, "x-amz-date", "20250101T120001Z");
            (verifier(), invalid)
        }
        Mutation::KnownAccessKey => {
            set_header(parts, "authorization", &auth.replace(AKID, OTHER_AKID));
            (verifier(), invalid)
        }
        Mutation::UnknownAccessKey => {
            set_header(parts, "authorization", &auth.replace(AKID, "AKIDNOBODY"));
            (verifier(), "UnrecognizedClientException")
        }
        Mutation::Secret => {
            let v = Verifier::new(Mode::Verify, keys(&[(AKID, OTHER_SECRET)]));
            (v, invalid)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn signed_verifies_and_any_mutation_is_rejected(
        body in prop::collection::vec(any::<u8>(), 0..256),
        path in path(),
        query in query(),
        extra in headers(),
        how in how(),
        m in mutation(),
    ) {
        let pq = if query.is_empty() { path } else { format!("{path}?{query}") };
        let (mut parts, mut body) = signed(ecs_request(&pq, &body, &extra), t0(), how);
        let p = verify_at(&verifier(), &parts, &body, t0());
        prop_assert!(p.is_ok(), "{:?} for {:?}", p, parts);

        let (v, code) = mutate(&m, &mut parts, &mut body, how);
        let result = v.verify(&parts, &body, t0());
        if code.is_empty() {
            prop_assert!(matches!(result, Ok(Some(_))), "{:?}", result);
        } else {
            let e = result.expect_err("mutated request must fail");
            prop_assert_eq!(e.code(), code, "{:?}: {}", m, e);
            if code == "InvalidSignatureException" {
                prop_assert_eq!(e.to_string(), MISMATCH);
            }
        }
    }

    #[test]
    fn presigned_verifies_and_tampering_is_rejected(
        path in path(),
        query in query(),
        tamper_path in any::<bool>(),
    ) {
        let pq = if query.is_empty() { path } else { format!("{path}?{query}") };
        let how = How { presign: Some(300), ..How::default() };
        let (mut parts, body) = signed(ecs_request(&pq, b"", &[]), t0(), how);
        prop_assert!(verify_at(&verifier(), &parts, &body, t0()).is_ok());

        let pq = parts.uri.path_and_query().expect("pq").as_str().to_owned();
        let changed = if tamper_path {
            pq.replacen('?', "zz?", 1)
        } else {
            format!("{pq}&extra=1")
        };
        parts.uri = changed.parse().expect("uri");
        let e = err_at(&verifier(), &parts, &body, t0());
        prop_assert_eq!(e.code(), "InvalidSignatureException");
    }

    /// Whatever arrives, the verifier answers without panicking.
    #[test]
    fn arbitrary_authorization_never_panics(
        auth in prop::collection::vec(any::<u8>(), 0..300),
        date in prop::collection::vec(any::<u8>(), 0..20),
        query in "[ -~]{0,80}",
    ) {
        let (mut parts, body) = to_server(ecs_request("/", b"{}", &[]));
        if let Ok(v) = HeaderValue::from_bytes(&auth) {
            parts.headers.insert("authorization", v);
        }
        if let Ok(v) = HeaderValue::from_bytes(&date) {
            parts.headers.insert("x-amz-date", v);
        }
        if let Ok(uri) = format!("/?{query}").parse() {
            parts.uri = uri;
        }
        for mode in [Mode::Verify, Mode::Open] {
            let v = Verifier::new(mode, keys(&[(AKID, SECRET)]));
            let _ = v.verify(&parts, &body, t0());
        }
    }
}

/// Runs botocore (the library under boto3 and awscli) to sign a request; prints it as JSON.
fn botocore_sign(script_body: &str) -> serde_json::Value {
    let script = format!(
        r#"
import json
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
{script_body}
print(json.dumps({{"method": req.method, "url": req.url,
                  "headers": [[k, v] for k, v in req.headers.items()],
                  "body": (req.body or b"").decode() if isinstance(req.body, bytes) else (req.body or "")}}))
"#
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "botocore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json from botocore")
}

/// Rebuilds what the server receives from botocore's signed request (urllib3 adds `Host`).
fn from_botocore(v: &serde_json::Value) -> (Parts, Vec<u8>) {
    let mut builder = http::Request::builder()
        .method(v["method"].as_str().expect("method"))
        .uri(v["url"].as_str().expect("url"));
    for pair in v["headers"].as_array().expect("headers") {
        builder = builder.header(
            pair[0].as_str().expect("name"),
            pair[1].as_str().expect("value"),
        );
    }
    let body = v["body"].as_str().expect("body").as_bytes().to_vec();
    to_server(builder.body(body).expect("request"))
}

#[test]
fn botocore_header_signed_list_clusters() {
    for token in ["None", "'IQoJb3JpZ2luX2VjEXAMPLE//token+/='"] {
        let signed = botocore_sign(&format!(
            r#"
creds = Credentials("{AKID}", "{SECRET}", {token})
req = AWSRequest(method="POST", url="{ENDPOINT}/", data=b'{{}}', headers={{
    "X-Amz-Target": "AmazonEC2ContainerServiceV20141113.ListClusters",
    "Content-Type": "application/x-amz-json-1.1",
    "User-Agent": "aws-cli/1.40.0 md/Botocore#1.43.11",
}})
SigV4Auth(creds, "ecs", "eu-west-3").add_auth(req)
"#
        ));
        let (parts, body) = from_botocore(&signed);
        let p = verify_at(&verifier(), &parts, &body, SystemTime::now())
            .unwrap_or_else(|e| panic!("botocore request rejected: {e}\n{signed}"));
        assert_eq!(
            (p.region.as_str(), p.service.as_str()),
            ("eu-west-3", "ecs")
        );

        let (parts, mut body) = from_botocore(&signed);
        body.push(b' ');
        let e = err_at(&verifier(), &parts, &body, SystemTime::now());
        assert_eq!(e.code(), "InvalidSignatureException");
    }
}

#[test]
fn botocore_presigned_get_caller_identity() {
    // The shape `aws eks get-token` produces: a presigned STS call with a query.
    let signed = botocore_sign(&format!(
        r#"
creds = Credentials("{AKID}", "{SECRET}", "session/token+x=")
req = AWSRequest(method="GET", url="{ENDPOINT}/?Action=GetCallerIdentity&Version=2011-06-15",
                 headers={{"x-k8s-aws-id": "my-cluster"}})
SigV4QueryAuth(creds, "sts", "us-east-1", expires=60).add_auth(req)
"#
    ));
    let (parts, body) = from_botocore(&signed);
    let p = verify_at(&verifier(), &parts, &body, SystemTime::now())
        .unwrap_or_else(|e| panic!("botocore presigned request rejected: {e}\n{signed}"));
    assert_eq!(p.service, "sts");
}

/// Not a benchmark harness, just a number for the report: the per-request cost of verifying a
/// typical awsJson request (printed, never asserted, since CI machines vary).
#[test]
fn cost() {
    let (parts, body) = signed(ecs_request("/", LIST_CLUSTERS, &[]), t0(), How::default());
    let v = verifier();
    let n = 2_000u32;
    let start = std::time::Instant::now();
    for _ in 0..n {
        verify_at(&v, &parts, &body, t0()).expect("verifies");
    }
    let per = start.elapsed() / n;
    println!("sigv4 verify: {per:?} per request ({n} iterations)");

    // The part a signing-key cache would save: the four HMACs of the key derivation.
    let start = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(
            v4::generate_signing_key(SECRET, t0(), "us-east-1", "ecs")
                .as_ref()
                .len(),
        );
    }
    let per = start.elapsed() / n;
    println!("sigv4 signing-key derivation: {per:?} per request");
}
