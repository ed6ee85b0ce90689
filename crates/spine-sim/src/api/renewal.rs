//! The card's certificates: the CRL, and renewal of the authentication certificate for a
//! key generated on the card (only within the renewal window, never for old-generation
//! cards).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use cardgate_spine::wire::{ErrorCode, RenewRequest, RenewResponse};

use super::extract::ApiJson;
use super::{ApiError, AppResult, Shared, old_generation};

/// Days of validity above which renewal is refused (`renewal_not_due`).
const RENEWAL_WINDOW_DAYS: i64 = 90;

pub(super) async fn crl(State(state): Shared) -> Response {
    let der = state.authority.crl_der();
    (
        [(CONTENT_TYPE, "application/pkix-crl")],
        Bytes::from(der.as_ref().clone()),
    )
        .into_response()
}

pub(super) async fn renew(
    State(state): Shared,
    headers: HeaderMap,
    ApiJson(request): ApiJson<RenewRequest>,
) -> AppResult<axum::Json<RenewResponse>> {
    use x509_parser::prelude::FromDer as _;
    let session = state.authorise(&headers)?;
    if let Some(card) = state.directory.card_of(&session.uid)
        && cardgate_certs::is_old_generation(&card.serial)
    {
        return Err(old_generation(&card.serial));
    }
    let now = time::OffsetDateTime::now_utc();
    if session.certificate_not_after <= now {
        return Err(ApiError::new(
            ErrorCode::CertificateExpired,
            "Your certificate has expired: it cannot be renewed online. See your RA in person.",
        ));
    }
    let days_left = (session.certificate_not_after - now).whole_days();
    if days_left > RENEWAL_WINDOW_DAYS {
        return Err(ApiError::new(
            ErrorCode::RenewalNotDue,
            format!(
                "Your certificate is valid for {days_left} more days; renewal opens {RENEWAL_WINDOW_DAYS} days before expiry."
            ),
        ));
    }
    let (rest, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&request.csr)
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::MalformedRequest,
                    format!("csr is not a PKCS#10 request: {e}"),
                )
            })?;
    if !rest.is_empty() {
        return Err(ApiError::new(
            ErrorCode::MalformedRequest,
            "csr has trailing bytes after the PKCS#10 request.",
        ));
    }
    csr.verify_signature().map_err(|_| {
        ApiError::new(
            ErrorCode::BadSignature,
            "The CSR is not signed by the key it carries.",
        )
    })?;
    let named = csr
        .certification_request_info
        .subject
        .iter_by_oid(&x509_parser::oid_registry::OID_X509_SERIALNUMBER)
        .next()
        .and_then(|a| a.as_str().ok());
    if named != Some(session.uid.as_str()) {
        return Err(ApiError::new(
            ErrorCode::ForbiddenActivity,
            "The CSR must name you (your user id as the subject serialNumber): you can only renew your own certificate.",
        ));
    }
    let spki = csr.certification_request_info.subject_pki.raw;
    let old_spki = x509_parser::parse_x509_certificate(&session.certificate_der)
        .map(|(_, c)| c.public_key().raw.to_vec())
        .map_err(|_| ApiError::internal("session certificate"))?;
    if spki == old_spki.as_slice() {
        return Err(ApiError::new(
            ErrorCode::MalformedRequest,
            "The CSR carries the current key: renewal needs a new key generated on the card.",
        ));
    }
    let certificate = state
        .authority
        .issue_renewal(&session.certificate_der, spki)?;
    tracing::info!(uid = %session.uid, "certificate renewed");
    Ok(axum::Json(RenewResponse { certificate }))
}
