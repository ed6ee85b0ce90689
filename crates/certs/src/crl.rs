//! Certificate revocation lists: [`Crl`], a CRL parsed once and verified against a trust
//! anchor, and [`CrlCache`], the newest CRL per issuer that the daemon keeps.
//!
//! Fetching is not done here: this crate does no I/O. The daemon reads the CRL file or
//! downloads it (with its own timeout, off the login path, so a slow CRL server never hangs a
//! login as in pam_pkcs11#68), turns the bytes into a [`Crl`] and offers it to its
//! [`CrlCache`]. How old a CRL may be before it stops counting is decided at check time from
//! the caller's `now` and [`CheckPolicy`](crate::CheckPolicy), never by reading a clock.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use time::OffsetDateTime;
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::OID_X509_EXT_DELTA_CRL_INDICATOR;
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::ReasonCode;

use crate::anchors::{TrustAnchor, TrustAnchors, parse_certificate};
use crate::error::{CertsError, der_error, truncation};

/// Why the CA revoked a certificate (RFC 5280 CRLReason), for the holder's message and the
/// audit log. Every listed certificate is treated as revoked whatever the reason: cancelled
/// NHS cards are never reactivated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RevocationReason {
    /// No reason given.
    Unspecified,
    /// The card's key may be in someone else's hands (a lost or stolen card).
    KeyCompromise,
    /// The issuing CA itself was compromised.
    CaCompromise,
    /// The holder's name or organisation changed.
    AffiliationChanged,
    /// A new certificate replaced this one.
    Superseded,
    /// The card is no longer needed (the holder left, or the card was cancelled).
    CessationOfOperation,
    /// Suspended (still refused here: a held card is not usable).
    CertificateHold,
    /// The holder's rights were withdrawn.
    PrivilegeWithdrawn,
    /// An attribute authority was compromised.
    AaCompromise,
    /// A code RFC 5280 does not define (including removeFromCRL, which only belongs in the
    /// delta CRLs this crate refuses).
    Other(u8),
}

impl RevocationReason {
    fn from_code(code: ReasonCode) -> RevocationReason {
        match code.0 {
            0 => RevocationReason::Unspecified,
            1 => RevocationReason::KeyCompromise,
            2 => RevocationReason::CaCompromise,
            3 => RevocationReason::AffiliationChanged,
            4 => RevocationReason::Superseded,
            5 => RevocationReason::CessationOfOperation,
            6 => RevocationReason::CertificateHold,
            9 => RevocationReason::PrivilegeWithdrawn,
            10 => RevocationReason::AaCompromise,
            other => RevocationReason::Other(other),
        }
    }
}

impl fmt::Display for RevocationReason {
    /// Words for pharmacy staff ("reported lost, stolen or misused"), not RFC names; they
    /// follow "reason: " in the holder's message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            RevocationReason::Unspecified => "none recorded",
            RevocationReason::KeyCompromise => "reported lost, stolen or misused",
            RevocationReason::CaCompromise => "the issuing authority's key was compromised",
            RevocationReason::AffiliationChanged => "the holder's details changed",
            RevocationReason::Superseded => "replaced by a new card or certificate",
            RevocationReason::CessationOfOperation => "no longer needed",
            RevocationReason::CertificateHold => "suspended",
            RevocationReason::PrivilegeWithdrawn => "access withdrawn",
            RevocationReason::AaCompromise => "an attribute authority was compromised",
            RevocationReason::Other(code) => return write!(f, "code {code}"),
        };
        f.write_str(text)
    }
}

/// One certificate the CRL lists as revoked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedEntry {
    /// When the CA revoked it (the RA cancelling the card).
    pub revoked_at: OffsetDateTime,
    /// Why, when the CRL says.
    pub reason: Option<RevocationReason>,
}

/// A CRL whose signature has been verified against a configured issuing CA.
///
/// The only way to get one is [`Crl::from_der`] / [`Crl::from_pem`], which check the
/// signature, so holding a `Crl` means holding a genuine list. Whether it is still fresh
/// enough depends on the time, so that is judged at each check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crl {
    issuer: String,
    issuer_raw: Vec<u8>,
    signer_spki: Vec<u8>,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    crl_number: Option<Vec<u8>>,
    revoked: BTreeMap<Vec<u8>, RevokedEntry>,
}

impl Crl {
    /// Parses a DER CRL and verifies it was signed by one of `anchors`.
    ///
    /// Refuses (with the reason) a CRL that is malformed or truncated, issued by an untrusted
    /// CA, badly signed, missing nextUpdate (its freshness could never be judged), a delta
    /// CRL, a partitioned CRL, or one with a critical extension this code does not know:
    /// trusting any of those could hide a cancelled card.
    pub fn from_der(der: &[u8], anchors: &TrustAnchors) -> Result<Crl, CertsError> {
        const WHAT: &str = "the CRL";
        if let Some(e) = truncation(WHAT, der) {
            return Err(e);
        }
        let (rest, crl) =
            CertificateRevocationList::from_der(der).map_err(|e| der_error(WHAT, &e))?;
        if !rest.is_empty() {
            return Err(CertsError::TrailingData {
                what: WHAT.to_owned(),
                extra: rest.len(),
            });
        }
        let issuer = crl.issuer().to_string();
        let signer = verify_crl_signature(&crl, &issuer, anchors)?;
        let unsupported = |reason: String| CertsError::CrlUnsupported {
            issuer: issuer.clone(),
            reason,
        };

        let this_update = crl.last_update().to_datetime();
        let next_update = crl
            .next_update()
            .ok_or_else(|| {
                unsupported(
                    "it has no nextUpdate, so there is no way to tell when it goes stale".into(),
                )
            })?
            .to_datetime();
        if next_update <= this_update {
            return Err(unsupported(format!(
                "its nextUpdate ({next_update}) is not after its thisUpdate ({this_update})"
            )));
        }
        for extension in crl.extensions() {
            if extension.oid == OID_X509_EXT_DELTA_CRL_INDICATOR {
                return Err(unsupported(
                    "it is a delta CRL; configure the CA's full CRL instead".into(),
                ));
            }
            match extension.parsed_extension() {
                ParsedExtension::IssuingDistributionPoint(idp)
                    if idp.only_contains_ca_certs
                        || idp.only_contains_attribute_certs
                        || idp.only_some_reasons.is_some()
                        || idp.indirect_crl =>
                {
                    return Err(unsupported(
                        "it covers only some certificates or reasons (a partitioned or \
                         indirect CRL); configure the CA's full CRL instead"
                            .into(),
                    ));
                }
                ParsedExtension::UnsupportedExtension { .. }
                | ParsedExtension::ParseError { .. }
                    if extension.critical =>
                {
                    return Err(unsupported(format!(
                        "it has a critical extension {} that this agent does not understand",
                        extension.oid
                    )));
                }
                _ => {}
            }
        }

        let mut revoked = BTreeMap::new();
        for entry in crl.iter_revoked_certificates() {
            if let Some(extension) = entry.extensions().iter().find(|e| {
                e.critical
                    && matches!(
                        e.parsed_extension(),
                        ParsedExtension::UnsupportedExtension { .. }
                            | ParsedExtension::ParseError { .. }
                    )
            }) {
                return Err(unsupported(format!(
                    "entry {} has a critical extension {} that this agent does not understand",
                    entry.raw_serial_as_string(),
                    extension.oid
                )));
            }
            let new = RevokedEntry {
                revoked_at: entry.revocation_date.to_datetime(),
                reason: entry
                    .reason_code()
                    .map(|(_, code)| RevocationReason::from_code(code)),
            };
            // Listed twice: keep the earliest date, the one that protects the most.
            revoked
                .entry(entry.serial().to_bytes_be())
                .and_modify(|held: &mut RevokedEntry| {
                    if new.revoked_at < held.revoked_at {
                        *held = new.clone();
                    }
                })
                .or_insert(new);
        }

        Ok(Crl {
            issuer_raw: crl.issuer().as_raw().to_vec(),
            signer_spki: signer.spki_raw().to_vec(),
            this_update,
            next_update,
            crl_number: crl.crl_number().map(|n| n.to_bytes_be()),
            revoked,
            issuer,
        })
    }

    /// Parses a PEM CRL (`-----BEGIN X509 CRL-----`) and verifies it as [`Crl::from_der`]
    /// does; the daemon may be given either form.
    pub fn from_pem(pem: &[u8], anchors: &TrustAnchors) -> Result<Crl, CertsError> {
        const WHAT: &str = "the CRL file";
        let block = Pem::iter_from_buffer(pem)
            .next()
            .ok_or_else(|| CertsError::MalformedPem {
                what: WHAT.to_owned(),
                detail: "it holds no PEM block".into(),
            })?
            .map_err(|e| CertsError::MalformedPem {
                what: WHAT.to_owned(),
                detail: e.to_string(),
            })?;
        if block.label != "X509 CRL" {
            return Err(CertsError::MalformedPem {
                what: WHAT.to_owned(),
                detail: format!("it is a {:?} block, not an X509 CRL", block.label),
            });
        }
        Crl::from_der(&block.contents, anchors)
    }

    /// The issuing CA's name, as RFC 4514 text.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// When the CA issued this CRL.
    pub fn this_update(&self) -> OffsetDateTime {
        self.this_update
    }

    /// When the CA promised the next CRL; after this the list may miss recent cancellations.
    pub fn next_update(&self) -> OffsetDateTime {
        self.next_update
    }

    /// The CRL number (big-endian, no leading zeros), when the CA numbers its CRLs.
    pub fn crl_number(&self) -> Option<&[u8]> {
        self.crl_number.as_deref()
    }

    /// How many certificates it lists.
    pub fn revoked_count(&self) -> usize {
        self.revoked.len()
    }

    /// The entry for a certificate serial (big-endian bytes as in the certificate; leading
    /// zero bytes are ignored), if the CRL lists it.
    pub fn revoked(&self, serial: &[u8]) -> Option<&RevokedEntry> {
        let first = serial.iter().position(|&b| b != 0).unwrap_or(serial.len());
        // An all-zero serial is stored as [0] by BigUint::to_bytes_be.
        let key: &[u8] = if first == serial.len() {
            &[0]
        } else {
            &serial[first..]
        };
        self.revoked.get(key)
    }

    /// DER of the issuer name, to match the certificate's issuer byte for byte.
    pub(crate) fn issuer_raw(&self) -> &[u8] {
        &self.issuer_raw
    }

    /// DER SubjectPublicKeyInfo of the anchor that signed this CRL.
    pub(crate) fn signer_spki(&self) -> &[u8] {
        &self.signer_spki
    }

    /// Whether `self` was issued after `other` by the same CA: by CRL number when both
    /// carry one (RFC 5280 makes it monotonic), then by thisUpdate (which also settles a tie
    /// from a CA that numbers CRLs by the second, as the lab's test CA does).
    fn compare_age(&self, other: &Crl) -> Ordering {
        let by_number = match (&self.crl_number, &other.crl_number) {
            (Some(a), Some(b)) => a.len().cmp(&b.len()).then_with(|| a.cmp(b)),
            _ => Ordering::Equal,
        };
        by_number.then_with(|| self.this_update.cmp(&other.this_update))
    }
}

fn verify_crl_signature<'a>(
    crl: &CertificateRevocationList<'_>,
    issuer: &str,
    anchors: &'a TrustAnchors,
) -> Result<&'a TrustAnchor, CertsError> {
    let mut last_problem = None;
    for anchor in anchors.named(crl.issuer().as_raw()) {
        if !anchor.may_sign_crls() {
            last_problem = Some("that CA's keyUsage does not allow it to sign CRLs".to_owned());
            continue;
        }
        let Some(spki) = anchor.spki() else {
            last_problem = Some("that CA's public key could not be read".to_owned());
            continue;
        };
        match crl.verify_signature(&spki) {
            Ok(()) => return Ok(anchor),
            Err(e) => last_problem = Some(e.to_string()),
        }
    }
    match last_problem {
        None => Err(CertsError::CrlIssuerNotTrusted {
            issuer: issuer.to_owned(),
        }),
        Some(detail) => Err(CertsError::CrlSignatureInvalid {
            issuer: issuer.to_owned(),
            detail,
        }),
    }
}

/// What [`CrlCache::offer`] did with a CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrlUpdate {
    /// The first CRL held for this issuer.
    Added,
    /// It replaced an older CRL, issued at `previous_this_update`.
    Replaced {
        /// thisUpdate of the CRL it replaced.
        previous_this_update: OffsetDateTime,
    },
    /// The same CRL (or one of the same age) was already held; nothing changed.
    Unchanged,
}

/// The newest verified CRL of each issuing CA, kept by the daemon between fetches.
///
/// It refuses a CRL older than the one it holds (rollback protection): an attacker who can
/// replay yesterday's CRL file must not be able to un-cancel a card revoked today.
#[derive(Clone, Debug, Default)]
pub struct CrlCache {
    by_issuer: BTreeMap<Vec<u8>, Crl>,
}

impl CrlCache {
    /// An empty cache.
    pub fn new() -> CrlCache {
        CrlCache::default()
    }

    /// Keeps `crl` if it is newer than the one held for its issuer; refuses an older one
    /// with [`CertsError::CrlRollback`].
    pub fn offer(&mut self, crl: Crl) -> Result<CrlUpdate, CertsError> {
        match self.by_issuer.get(crl.issuer_raw()) {
            None => {
                self.by_issuer.insert(crl.issuer_raw().to_vec(), crl);
                Ok(CrlUpdate::Added)
            }
            Some(held) => match crl.compare_age(held) {
                Ordering::Less => Err(CertsError::CrlRollback {
                    issuer: crl.issuer.clone(),
                    held_this_update: held.this_update,
                    offered_this_update: crl.this_update,
                }),
                Ordering::Equal => Ok(CrlUpdate::Unchanged),
                Ordering::Greater => {
                    let previous_this_update = held.this_update;
                    self.by_issuer.insert(crl.issuer_raw().to_vec(), crl);
                    Ok(CrlUpdate::Replaced {
                        previous_this_update,
                    })
                }
            },
        }
    }

    /// The CRL held for the CA that issued `certificate_der`, if any. `None` also for a
    /// certificate that does not parse: the check itself reports that.
    pub fn for_certificate(&self, certificate_der: &[u8]) -> Option<&Crl> {
        let certificate = parse_certificate(certificate_der, "certificate").ok()?;
        self.by_issuer.get(certificate.issuer().as_raw())
    }

    /// Every CRL held, for diagnostics (`doctor` shows each issuer's next update).
    pub fn iter(&self) -> impl Iterator<Item = &Crl> {
        self.by_issuer.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn crl(number: Option<&[u8]>, this_update: OffsetDateTime, revoked: &[&[u8]]) -> Crl {
        Crl {
            issuer: "CN=Test".into(),
            issuer_raw: vec![1, 2, 3],
            signer_spki: vec![4, 5, 6],
            this_update,
            next_update: this_update + time::Duration::days(7),
            crl_number: number.map(<[u8]>::to_vec),
            revoked: revoked
                .iter()
                .map(|s| {
                    (
                        s.to_vec(),
                        RevokedEntry {
                            revoked_at: this_update,
                            reason: None,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn serials_match_whatever_their_leading_zeros() {
        let t = datetime!(2025-01-01 00:00 UTC);
        let list = crl(None, t, &[&[0x40, 0x01], &[0]]);
        assert!(list.revoked(&[0x40, 0x01]).is_some());
        assert!(list.revoked(&[0x00, 0x40, 0x01]).is_some());
        assert!(list.revoked(&[0x00]).is_some());
        assert!(list.revoked(&[0x00, 0x00]).is_some());
        assert!(list.revoked(&[0x40, 0x02]).is_none());
        assert!(list.revoked(&[0x01, 0x40, 0x01]).is_none());
    }

    #[test]
    fn crl_age_is_by_number_then_by_issue_time() {
        let early = datetime!(2025-01-01 00:00 UTC);
        let late = datetime!(2025-01-02 00:00 UTC);
        // A higher number wins even with an earlier thisUpdate; 0x0100 > 0xFF.
        assert_eq!(
            crl(Some(&[0x01, 0x00]), early, &[]).compare_age(&crl(Some(&[0xFF]), late, &[])),
            Ordering::Greater
        );
        assert_eq!(
            crl(Some(&[5]), late, &[]).compare_age(&crl(Some(&[5]), early, &[])),
            Ordering::Greater
        );
        assert_eq!(
            crl(None, early, &[]).compare_age(&crl(Some(&[9]), late, &[])),
            Ordering::Less
        );
        assert_eq!(
            crl(Some(&[5]), early, &[]).compare_age(&crl(Some(&[5]), early, &[])),
            Ordering::Equal
        );
    }

    #[test]
    fn reasons_read_as_plain_english() {
        assert_eq!(
            RevocationReason::from_code(ReasonCode(1)).to_string(),
            "reported lost, stolen or misused"
        );
        assert_eq!(
            RevocationReason::from_code(ReasonCode(8)),
            RevocationReason::Other(8)
        );
    }
}
