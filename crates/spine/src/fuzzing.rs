//! The client's answer handling, reachable from the fuzz targets in `fuzz/` without a
//! network: an endpoint's HTTP status, `Date` header and body go through exactly the code a
//! real answer takes (`expect`, the refusal mapping, the HTTP date parser). Not an API for
//! the agent; hidden from the documentation.

use hyper::StatusCode;
use hyper::body::Bytes;
use serde::de::DeserializeOwned;

use crate::error::SpineError;
use crate::http::{Response, parse_http_date};

/// Decodes an answer with `status`, an optional `Date` header and `body` as the client does
/// when it expects `expected` (200 or 201) carrying a `T`. An invalid status code is a
/// protocol error, as hyper would never have produced it.
pub fn decode_answer<T: DeserializeOwned>(
    status: u16,
    date: Option<&str>,
    body: &[u8],
    expected: u16,
) -> Result<T, SpineError> {
    let invalid = |code| SpineError::Protocol {
        reason: format!("invalid HTTP status {code}"),
    };
    let status = StatusCode::from_u16(status).map_err(|_| invalid(status))?;
    let expected = StatusCode::from_u16(expected).map_err(|_| invalid(expected))?;
    let response = Response {
        status,
        date: date.and_then(parse_http_date),
        body: Bytes::copy_from_slice(body),
    };
    crate::client::expect(response, expected)
}

/// Decodes an answer that must be `expected` with no body wanted (logout, TAC return).
pub fn decode_empty_answer(status: u16, body: &[u8], expected: u16) -> Result<(), SpineError> {
    let status = StatusCode::from_u16(status).map_err(|_| SpineError::Protocol {
        reason: format!("invalid HTTP status {status}"),
    })?;
    let expected = StatusCode::from_u16(expected).map_err(|_| SpineError::Protocol {
        reason: format!("invalid HTTP status {expected}"),
    })?;
    let response = Response {
        status,
        date: None,
        body: Bytes::copy_from_slice(body),
    };
    crate::client::expect_empty(response, expected)
}

/// The HTTP `Date` parser the clock-skew check uses.
pub fn http_date(value: &str) -> Option<time::OffsetDateTime> {
    parse_http_date(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::wire::{IntrospectResponse, Session};

    #[test]
    fn an_expected_answer_decodes_and_a_refusal_maps_to_its_error() {
        let session = br#"{"session_id":"s-1","token":"t","uid":"555000111222","name":"A",
            "max_idle_time":900,"logout_url":"/v1/sessions/s-1",
            "certificate_not_after":"2028-11-22T10:00:00Z","role_profiles":[],
            "selected_role_profile":null}"#;
        let decoded: Session = decode_answer(201, None, session, 201).unwrap();
        assert_eq!(decoded.uid, "555000111222");
        // The same body under another status is never taken for a session.
        assert!(decode_answer::<Session>(200, None, session, 201).is_err());
        let expired = br#"{"error":"session_expired","message":"ended"}"#;
        assert!(matches!(
            decode_answer::<IntrospectResponse>(401, None, expired, 200),
            Err(SpineError::SessionExpired)
        ));
        assert!(matches!(
            decode_answer::<Session>(1000, None, b"", 200),
            Err(SpineError::Protocol { .. })
        ));
        assert!(decode_empty_answer(204, b"", 204).is_ok());
        assert!(http_date("Sun, 06 Nov 1994 08:49:37 GMT").is_some());
    }
}
