//! A minimal blocking HTTP/1.1 client for awsJson and awsQuery calls to a loopback endpoint,
//! signed with `aws-sigv4` (the signer the AWS SDK for Rust uses) either in the `Authorization`
//! header or as a presigned query string. Requests and answers are JSON for the rest of the
//! suite whatever the protocol: an awsQuery call is sent as a form and its XML answer read back
//! into JSON here ([`crate::query`]), the only place the suite knows awsQuery.
//!
//! One connection per request (`connection: close`): the suite sends a few thousand requests to
//! loopback, where a connect costs microseconds, and a fresh connection per request keeps one
//! bad response from poisoning the next.

use crate::{Error, Result};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime};

/// Where the SigV4 signature travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: AWS4-HMAC-SHA256 …`, as SDKs send every call.
    Header,
    /// `?X-Amz-Algorithm=…&X-Amz-Signature=…`, as a presigned URL carries it.
    Presigned,
}

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; `None` when it is not JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The awsJson error code: `__type` without a namespace (`…#ClusterNotFoundException`), or
    /// the `x-amzn-ErrorType` header, as botocore reads it; for a query-compatible service the
    /// awsQuery code `x-amzn-query-error: <Code>;<Sender|Receiver>` names, which botocore and
    /// the SDKs put first.
    pub fn error_code(&self) -> Option<String> {
        if let Some((code, _)) = self
            .header("x-amzn-query-error")
            .and_then(|h| h.split_once(';'))
            .filter(|(code, _)| !code.is_empty())
        {
            return Some(code.to_string());
        }
        let from_body = self
            .json()
            .and_then(|v| v.get("__type").and_then(Value::as_str).map(String::from));
        let raw = from_body.or_else(|| self.header("x-amzn-errortype").map(String::from))?;
        let raw = raw.split(':').next().unwrap_or(&raw);
        Some(raw.rsplit('#').next().unwrap_or(raw).to_string())
    }
}

/// A signing client for one service on one endpoint.
#[derive(Debug, Clone)]
pub struct Client {
    pub addr: SocketAddr,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
    /// SigV4 service name (`ecs`).
    pub signing_name: String,
    /// awsJson target prefix (`AmazonEC2ContainerServiceV20141113`).
    pub target_prefix: String,
    /// `1.0` or `1.1`.
    pub json_version: String,
    /// The service model when it speaks awsQuery (`None` for awsJson).
    pub query: Option<std::sync::Arc<Value>>,
    /// The service model when calls go as Smithy RPC v2 CBOR ([`Client::speaking_cbor`]).
    pub cbor: Option<std::sync::Arc<Value>>,
    pub timeout: Duration,
}

impl Client {
    pub fn new(
        addr: SocketAddr,
        access_key_id: &str,
        secret_access_key: &str,
        model: &crate::Model,
    ) -> Client {
        Client {
            addr,
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            region: "us-east-1".into(),
            signing_name: model.signing_name().into(),
            target_prefix: model.target_prefix().into(),
            json_version: model.json_version().into(),
            query: (model.metadata("protocol") == Some("query"))
                .then(|| std::sync::Arc::new(model.service_json.clone())),
            cbor: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// The same client speaking another protocol the model lists: `smithy-rpc-v2-cbor`
    /// (`POST /service/<target prefix>/operation/<Op>`, CBOR bodies) or `query` (forms and
    /// XML); awsJson otherwise.
    pub fn speaking(mut self, protocol: &str, model: &crate::Model) -> Client {
        let service = std::sync::Arc::new(model.service_json.clone());
        self.query = None;
        self.cbor = None;
        match protocol {
            "smithy-rpc-v2-cbor" => self.cbor = Some(service),
            "query" => self.query = Some(service),
            _ => {}
        }
        self
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Calls `op` with a JSON body, signed in the header.
    pub fn call(&self, op: &str, body: &Value) -> Result<Response> {
        self.call_raw(op, body.to_string().as_bytes(), Auth::Header)
    }

    /// Calls `op` with raw body bytes and the chosen signature location.
    pub fn call_raw(&self, op: &str, body: &[u8], auth: Auth) -> Result<Response> {
        if let Some(service) = &self.query {
            return self.call_query(service, op, body, auth);
        }
        if let Some(service) = &self.cbor {
            return self.call_cbor(service, op, body, auth);
        }
        let target = format!("{}.{}", self.target_prefix, op);
        let content_type = format!("application/x-amz-json-{}", self.json_version);
        let host = self.addr.to_string();
        // `aws-sigv4` signs `host` from the URI itself, so it is only added to what is sent.
        let signed = vec![
            ("content-type".to_string(), content_type),
            ("x-amz-target".to_string(), target),
        ];
        let (extra_headers, query) = self.sign("/", &signed, body, auth)?;
        let mut headers = vec![("host".to_string(), host)];
        headers.extend(signed);
        headers.extend(extra_headers);
        let path = if query.is_empty() {
            "/".to_string()
        } else {
            format!("/?{query}")
        };
        self.send("POST", &path, &headers, body)
    }

    /// awsQuery: a JSON body is sent as its form (raw bytes that are not JSON go as they are),
    /// and the XML answer comes back as JSON (errors as `{"__type", "message"}`); an answer
    /// that is not the XML botocore reads is passed on untouched, for the checks to refuse.
    fn call_query(&self, service: &Value, op: &str, body: &[u8], auth: Auth) -> Result<Response> {
        let form = match serde_json::from_slice::<Value>(body) {
            Ok(input) => crate::query::to_form(service, op, &input).into_bytes(),
            Err(_) => body.to_vec(),
        };
        let signed = vec![(
            "content-type".to_string(),
            "application/x-www-form-urlencoded; charset=utf-8".to_string(),
        )];
        let (extra_headers, query) = self.sign("/", &signed, &form, auth)?;
        let mut headers = vec![("host".to_string(), self.addr.to_string())];
        headers.extend(signed);
        headers.extend(extra_headers);
        let path = if query.is_empty() {
            "/".to_string()
        } else {
            format!("/?{query}")
        };
        let mut r = self.send("POST", &path, &headers, &form)?;
        let text = r.text();
        let json = if r.status == 200 {
            crate::query::response_to_json(service, op, &text)
        } else {
            crate::query::error_to_json(&text)
        };
        if let Some(json) = json {
            r.body = json.to_string().into_bytes();
        }
        Ok(r)
    }

    /// rpc-v2-cbor: a JSON body is sent as the CBOR of the input shape (raw bytes that are not
    /// JSON go as they are), and a CBOR answer comes back as JSON (errors keep their
    /// `__type`/`message` map); an answer that is not CBOR is passed on untouched, for the
    /// checks to refuse.
    fn call_cbor(&self, service: &Value, op: &str, body: &[u8], auth: Auth) -> Result<Response> {
        let payload = match serde_json::from_slice::<Value>(body) {
            Ok(input) => crate::cbor::request(service, op, &input),
            Err(_) => body.to_vec(),
        };
        let path = format!("/service/{}/operation/{op}", self.target_prefix);
        let signed = vec![
            ("content-type".to_string(), "application/cbor".to_string()),
            ("accept".to_string(), "application/cbor".to_string()),
            ("smithy-protocol".to_string(), "rpc-v2-cbor".to_string()),
        ];
        let (extra_headers, query) = self.sign(&path, &signed, &payload, auth)?;
        let mut headers = vec![("host".to_string(), self.addr.to_string())];
        headers.extend(signed);
        headers.extend(extra_headers);
        let target = if query.is_empty() {
            path
        } else {
            format!("{path}?{query}")
        };
        let mut r = self.send("POST", &target, &headers, &payload)?;
        if r.header("smithy-protocol") == Some("rpc-v2-cbor")
            && let Some(json) = crate::cbor::response(&r.body)
        {
            r.body = json.to_string().into_bytes();
        }
        Ok(r)
    }

    /// An unsigned JSON POST with an optional bearer token (berth's agent endpoints).
    pub fn post_json(&self, path: &str, bearer: Option<&str>, body: &Value) -> Result<Response> {
        let mut headers = vec![
            ("host".to_string(), self.addr.to_string()),
            ("content-type".to_string(), "application/json".to_string()),
        ];
        if let Some(t) = bearer {
            headers.push(("authorization".to_string(), format!("Bearer {t}")));
        }
        self.send("POST", path, &headers, body.to_string().as_bytes())
    }

    /// An unsigned POST (berth's `/_berth/reset`).
    pub fn post_unsigned(&self, path: &str) -> Result<Response> {
        let headers = vec![("host".to_string(), self.addr.to_string())];
        self.send("POST", path, &headers, b"")
    }

    /// Signs the request; returns the headers to add and the query string (presigned only).
    fn sign(
        &self,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
        auth: Auth,
    ) -> Result<(Vec<(String, String)>, String)> {
        use aws_sigv4::http_request::{
            SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
        };
        use aws_sigv4::sign::v4;
        use aws_smithy_runtime_api::client::identity::Identity;

        let identity: Identity = aws_credential_types::Credentials::new(
            self.access_key_id.clone(),
            self.secret_access_key.clone(),
            None,
            None,
            "berth-conformance",
        )
        .into();
        let mut settings = SigningSettings::default();
        if auth == Auth::Presigned {
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(Duration::from_secs(300));
        }
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.signing_name)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| Error::Other(format!("signing params: {e}")))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            format!("http://{}{path}", self.addr),
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|e| Error::Other(format!("signable request: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| Error::Other(format!("sign: {e}")))?
            .into_parts();
        let out_headers = instructions
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let query = instructions
            .params()
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        Ok((out_headers, query))
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Response> {
        let mut stream = TcpStream::connect_timeout(&self.addr, self.timeout)?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        let mut head = format!("{method} {path} HTTP/1.1\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        ));
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        read_response(&mut stream)
    }
}

/// SigV4's URI encoding: everything but unreserved characters is percent-encoded.
fn encode(s: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SET: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(s, SET).to_string()
}

/// Reads one response: status line, headers, then a `content-length`, chunked or to-close body.
pub fn read_response(stream: &mut TcpStream) -> Result<Response> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(len) = find("content-length") {
        let len: usize = len
            .parse()
            .map_err(|e| Error::Other(format!("bad content-length: {e}")))?;
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    } else if find("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|e| Error::Other(format!("bad chunk size: {e}")))?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if status != 204 && status != 304 {
        reader.read_to_end(&mut body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}
