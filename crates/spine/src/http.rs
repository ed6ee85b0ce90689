//! One HTTPS request over hyper 1: a fresh connection per request (logins are rare and the
//! card-signed connection must not be reused for another holder), the time limits, the
//! response size limit, and the server's `Date` for the clock-skew check.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, DATE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;
use tokio_rustls::TlsConnector;
use zeroize::Zeroizing;

use crate::config::Endpoint;
use crate::error::{SpineError, Step};
use crate::tls::{map_transport_error, tcp_connect};
use crate::wire::Secret;

/// The largest answer accepted: a CRL of a national CA can be large, but not this large.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// An answer, read completely.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: StatusCode,
    /// The server's `Date` header, when present and well-formed.
    pub date: Option<OffsetDateTime>,
    pub body: Bytes,
}

/// What to send.
pub(crate) struct Call<'a> {
    pub method: Method,
    pub path: &'a str,
    pub bearer: Option<&'a Secret>,
    /// A JSON body; `None` sends none.
    pub json: Option<Vec<u8>>,
}

/// Sends `call` to `endpoint` over a new TLS connection made with `tls`. The TCP connect
/// must finish within `connect_timeout`, and everything after it (handshake with a card
/// signature, request, complete answer) within `request_timeout`.
pub(crate) async fn send(
    tls: Arc<ClientConfig>,
    endpoint: &Endpoint,
    connect_timeout: Duration,
    request_timeout: Duration,
    call: Call<'_>,
) -> Result<Response, SpineError> {
    let tcp = tcp_connect(endpoint, connect_timeout).await?;
    let exchange = async {
        let stream = TlsConnector::from(tls)
            .connect(endpoint.server_name().clone(), tcp)
            .await
            .map_err(|e| map_transport_error(&e, endpoint))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| map_transport_error(&e, endpoint))?;
        let driver = tokio::spawn(connection);
        let request = build_request(endpoint, call)?;
        let answer = async {
            let response = sender.send_request(request).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(BodyError)?
                .to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((parts, body))
        }
        .await;
        match answer {
            Ok((parts, body)) => {
                driver.abort();
                let date = parts
                    .headers
                    .get(DATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_http_date);
                Ok(Response {
                    status: parts.status,
                    date,
                    body,
                })
            }
            Err(request_error) => {
                // The connection task holds the root cause (a TLS alert read after the
                // request was written, as TLS 1.3 client authentication failures arrive).
                let from_connection =
                    match tokio::time::timeout(Duration::from_millis(200), driver).await {
                        Ok(Ok(Err(e))) => Some(map_transport_error(&e, endpoint)),
                        _ => None,
                    };
                let from_request = map_transport_error(request_error.as_ref(), endpoint);
                Err(match (from_connection, from_request) {
                    (Some(c), SpineError::Protocol { .. }) => c,
                    (Some(c @ (SpineError::CardRevoked | SpineError::CertificateExpired)), _) => c,
                    (_, r) => r,
                })
            }
        }
    };
    match tokio::time::timeout(request_timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(SpineError::TimedOut {
            step: Step::Request,
            after: request_timeout,
        }),
    }
}

/// A response body over the size limit (or broken), as an error with a useful message.
#[derive(Debug)]
struct BodyError(Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reading the answer failed: {}", self.0)
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

fn build_request(endpoint: &Endpoint, call: Call<'_>) -> Result<Request<Full<Bytes>>, SpineError> {
    let invalid = |e: hyper::http::Error| SpineError::Config {
        reason: format!("the request cannot be built: {e}"),
    };
    let mut builder = Request::builder()
        .method(call.method)
        .uri(call.path)
        .header(HOST, endpoint.authority())
        .header(ACCEPT, "application/json");
    if let Some(token) = call.bearer {
        let value = Zeroizing::new(format!("Bearer {}", token.expose()));
        let mut header = HeaderValue::from_str(&value).map_err(|_| SpineError::Protocol {
            reason: "the session token holds characters a header cannot carry".into(),
        })?;
        // Keeps the token out of hyper's debug output.
        header.set_sensitive(true);
        builder = builder.header(AUTHORIZATION, header);
    }
    let body = match call.json {
        Some(json) => {
            builder = builder.header(CONTENT_TYPE, "application/json");
            Full::new(Bytes::from(json))
        }
        None => Full::new(Bytes::new()),
    };
    builder.body(body).map_err(invalid)
}

/// Parses an HTTP date (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`).
pub(crate) fn parse_http_date(value: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(value, &Rfc2822).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(datetime!(1994-11-06 08:49:37 UTC))
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }
}
