//! The provider's signing key and what is made with it: the JWKS that publishes its public
//! half, and ID tokens signed ES256 by `jsonwebtoken` (a JOSE library, not a hand-rolled JWS).

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::error::SimError;

/// An ECDSA P-256 signing key (ES256) with its key id.
pub(crate) struct SigningKey {
    encoding: EncodingKey,
    kid: String,
    x: String,
    y: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Writes a new P-256 signing key (PKCS#8 PEM, mode 0600) to `path`, refusing to replace one:
/// relying parties may have cached its public half.
pub fn write_signing_key(path: &Path) -> Result<(), SimError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let key =
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| SimError::Certificate {
            what: "the OpenID Connect signing key",
            source,
        })?;
    let pem = Zeroizing::new(key.serialize_pem());
    let io = |source| SimError::Write {
        path: path.to_path_buf(),
        source,
    };
    if path.exists() {
        return Err(SimError::ServiceIdentityExists {
            path: path.to_path_buf(),
        });
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(pem.as_bytes()))
        .map_err(io)
}

impl SigningKey {
    /// Reads the key file `path` (PKCS#8 PEM of a P-256 key).
    pub fn load(path: &Path) -> Result<SigningKey, SimError> {
        let invalid = |reason: String| SimError::ServiceIdentity {
            path: path.to_path_buf(),
            reason,
        };
        let pem = std::fs::read_to_string(path)
            .map(Zeroizing::new)
            .map_err(|e| invalid(e.to_string()))?;
        let key =
            KeyPair::from_pem(&pem).map_err(|e| invalid(format!("not a PKCS#8 key ({e})")))?;
        if !key.is_compatible(&PKCS_ECDSA_P256_SHA256) {
            return Err(invalid("not an ECDSA P-256 key (ES256 needs one)".into()));
        }
        let raw = key.public_key_raw();
        if raw.len() != 65 || raw[0] != 0x04 {
            return Err(invalid(
                "the public key is not an uncompressed P-256 point".into(),
            ));
        }
        let der = Zeroizing::new(key.serialize_der());
        let digest = ring::digest::digest(&ring::digest::SHA256, raw);
        Ok(SigningKey {
            encoding: EncodingKey::from_ec_der(&der),
            kid: URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12]),
            x: URL_SAFE_NO_PAD.encode(&raw[1..33]),
            y: URL_SAFE_NO_PAD.encode(&raw[33..65]),
        })
    }

    /// The JWKS document (RFC 7517) with the one public key.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "EC",
                "crv": "P-256",
                "use": "sig",
                "alg": "ES256",
                "kid": self.kid,
                "x": self.x,
                "y": self.y,
            }]
        })
    }

    /// Signs `claims` as a compact JWS with ES256 and this key's `kid`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_token_verifies_with_the_published_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        write_signing_key(&path).unwrap();
        assert!(write_signing_key(&path).is_err(), "a key is never replaced");
        let key = SigningKey::load(&path).unwrap();
        let token = key
            .sign(&serde_json::json!({"sub": "555000111222"}))
            .unwrap();
        let jwks = key.jwks();
        let jwk = &jwks["keys"][0];
        let decoding = jsonwebtoken::DecodingKey::from_ec_components(
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap(),
        )
        .unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let data =
            jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).unwrap();
        assert_eq!(data.claims["sub"], "555000111222");
        assert_eq!(data.header.kid.as_deref(), jwk["kid"].as_str());
    }
}
