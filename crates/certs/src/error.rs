//! The crate's one error type: input that could not be used at all (malformed DER or PEM, a
//! CRL nobody we trust signed, a rolled-back CRL). Problems *with* a well-formed card
//! certificate (expired, revoked, wrong CA) are not errors: they are findings in a
//! [`CertificateReport`](crate::CertificateReport), because the holder must be told about them.

use time::OffsetDateTime;

/// What could not be used, and what to do about it.
///
/// Each variant names the input it is about (`what`: "the card's authentication certificate",
/// "trust anchor 2", "the CRL") so a service-desk log says which file or object to look at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertsError {
    /// The bytes are not a DER-encoded certificate or CRL.
    #[error("{what} is not valid DER: {detail} (re-read it from the card or re-fetch the file)")]
    MalformedDer {
        /// Which input ("the card's authentication certificate", "the CRL", ...).
        what: String,
        /// What the parser found wrong, e.g. "it is truncated: it ends before its declared length".
        detail: String,
    },
    /// The DER parsed but was followed by extra bytes: a concatenation or a corrupted read.
    #[error(
        "{what} has {extra} unexpected byte(s) after its end (the data was corrupted or two \
         objects were joined; re-read it)"
    )]
    TrailingData {
        /// Which input.
        what: String,
        /// How many bytes followed.
        extra: usize,
    },
    /// PEM text could not be decoded, or held no block of the expected kind.
    #[error("{what} is not valid PEM: {detail}")]
    MalformedPem {
        /// Which input.
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// No issuing CA was configured, so no card could ever be trusted.
    #[error(
        "no trust anchor (issuing CA certificate) is configured: add the CA certificate to the agent's configuration"
    )]
    NoTrustAnchors,
    /// A configured trust anchor is not a CA certificate, so it cannot vouch for cards.
    #[error(
        "trust anchor {subject:?} is not a certificate authority ({reason}); configure the \
         issuing CA's certificate, not a card's"
    )]
    AnchorNotCa {
        /// The anchor's subject.
        subject: String,
        /// Why it does not qualify (no basicConstraints cA, no keyCertSign).
        reason: &'static str,
    },
    /// The CRL was issued by nobody among the configured trust anchors.
    #[error(
        "the CRL was issued by {issuer:?}, which is not a configured issuing CA; fetch the CRL \
         of the CA that issues the cards"
    )]
    CrlIssuerNotTrusted {
        /// The CRL's issuer name.
        issuer: String,
    },
    /// The CRL names a trusted CA as issuer but that CA's key did not sign it.
    #[error(
        "the CRL claims to come from {issuer:?} but its signature does not verify with that \
         CA's key ({detail}); it was corrupted or forged: fetch it again"
    )]
    CrlSignatureInvalid {
        /// The CRL's issuer name.
        issuer: String,
        /// What the verifier said.
        detail: String,
    },
    /// The CRL is well formed but of a kind these checks cannot use safely.
    #[error("the CRL from {issuer:?} cannot be used: {reason}")]
    CrlUnsupported {
        /// The CRL's issuer name.
        issuer: String,
        /// Why (no nextUpdate, a delta CRL, a partitioned CRL, an unknown critical extension).
        reason: String,
    },
    /// A CRL older than the one already held was offered: replacing it would un-revoke cards.
    #[error(
        "refused an older CRL from {issuer:?} (issued {offered_this_update}) in place of the \
         one held (issued {held_this_update}): a rolled-back CRL could hide a cancelled card"
    )]
    CrlRollback {
        /// The issuer of both CRLs.
        issuer: String,
        /// thisUpdate of the CRL already held.
        held_this_update: OffsetDateTime,
        /// thisUpdate of the CRL offered.
        offered_this_update: OffsetDateTime,
    },
    /// The card serial (from the CHUID) is not a card number, so the old-generation rule
    /// cannot be applied.
    #[error("card serial {serial:?} is not valid: {reason}")]
    InvalidCardSerial {
        /// The serial given.
        serial: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Says "truncated" when the outer DER element declares more bytes than are present: a
/// short read from a card or a cut-off download, the usual cause, named so a person knows to
/// read or fetch it again. `None` when the outer header is complete and satisfied.
pub(crate) fn truncation(what: &str, der: &[u8]) -> Option<CertsError> {
    let truncated = |detail: String| {
        Some(CertsError::MalformedDer {
            what: what.to_owned(),
            detail,
        })
    };
    let (&first_length_byte, rest) = match der {
        [] => return truncated("it is empty".to_owned()),
        [_] => return truncated("it is truncated: it ends inside its first header".to_owned()),
        [_, length, rest @ ..] => (length, rest),
    };
    let (declared, body) = if first_length_byte < 0x80 {
        (usize::from(first_length_byte), rest)
    } else {
        let count = usize::from(first_length_byte & 0x7F);
        if count == 0 || count > 4 {
            // Indefinite or absurd length: not DER; the parser explains.
            return None;
        }
        let Some((length_bytes, body)) = rest.split_at_checked(count) else {
            return truncated("it is truncated: it ends inside its first header".to_owned());
        };
        let declared = length_bytes
            .iter()
            .fold(0usize, |n, &b| (n << 8) | usize::from(b));
        (declared, body)
    };
    (body.len() < declared).then(|| CertsError::MalformedDer {
        what: what.to_owned(),
        detail: format!(
            "it is truncated: it declares {declared} bytes of content but only {} are present",
            body.len()
        ),
    })
}

/// Turns an x509-parser error into words a person can act on.
pub(crate) fn der_error(
    what: &str,
    error: &x509_parser::nom::Err<x509_parser::error::X509Error>,
) -> CertsError {
    use x509_parser::asn1_rs::Error as Asn1Error;
    use x509_parser::error::X509Error;
    use x509_parser::nom::Err;
    use x509_parser::nom::error::ErrorKind;
    let detail = match error {
        Err::Incomplete(_)
        | Err::Error(X509Error::Der(Asn1Error::Incomplete(_)))
        | Err::Failure(X509Error::Der(Asn1Error::Incomplete(_))) => {
            "it is truncated: it ends before its declared length".to_owned()
        }
        Err::Error(X509Error::NomError(ErrorKind::Eof))
        | Err::Failure(X509Error::NomError(ErrorKind::Eof)) => {
            "an element inside it runs past the end of its container".to_owned()
        }
        Err::Error(e) | Err::Failure(e) => e.to_string(),
    };
    CertsError::MalformedDer {
        what: what.to_owned(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(der: &[u8]) -> Option<String> {
        match truncation("x", der) {
            Some(CertsError::MalformedDer { detail, .. }) => Some(detail),
            Some(other) => panic!("{other:?}"),
            None => None,
        }
    }

    #[test]
    fn truncation_is_measured_against_the_outer_length() {
        assert_eq!(detail(&[]).as_deref(), Some("it is empty"));
        assert!(detail(&[0x30]).unwrap().contains("header"));
        assert!(detail(&[0x30, 0x82, 0x01]).unwrap().contains("header"));
        assert_eq!(
            detail(&[0x30, 0x03, 0x01]).as_deref(),
            Some("it is truncated: it declares 3 bytes of content but only 1 are present")
        );
        assert!(
            detail(&[0x30, 0x82, 0x01, 0x00, 0xAA])
                .unwrap()
                .contains("declares 256 bytes")
        );
        // Complete, or too long (trailing data is reported elsewhere), or not DER at all.
        assert_eq!(detail(&[0x30, 0x01, 0x00]), None);
        assert_eq!(detail(&[0x30, 0x01, 0x00, 0x00]), None);
        assert_eq!(detail(&[0x30, 0x80, 0x00]), None);
        assert_eq!(detail(&[0x30, 0x89, 0x00]), None);
    }
}
