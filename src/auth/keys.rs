//! Public keys for RS256 and ES256, read from a JWKS file or a PEM file.

use std::path::Path;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::{quote, AuthSetupError};

/// The shortest RSA modulus accepted, in bits. NIST SP 800-57 part 1 rates 2048 bits as the
/// minimum for new signatures.
pub const MIN_RSA_BITS: usize = 2048;

/// The longest RSA modulus accepted, in bits: the default limit of the `rsa` crate 0.10, which
/// verifies the signatures.
pub const MAX_RSA_BITS: usize = 8192;

/// The largest RSA public exponent that the `rsa` crate 0.10 accepts, `2^33 - 1`.
const MAX_RSA_EXPONENT: u64 = (1 << 33) - 1;

/// base64url that accepts values with or without `=` padding. RFC 7517 forbids padding, but
/// some issuers add it.
const BASE64URL_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A public key that verifies one algorithm.
pub(super) struct VerificationKey {
    /// The JWK `kid`; None for the PEM key and for JWKS keys without one.
    pub kid: Option<String>,
    /// RS256 or ES256.
    pub algorithm: Algorithm,
    pub key: DecodingKey,
    pub from_pem: bool,
}

impl VerificationKey {
    /// Names the key in messages, for example `key "rsa-1" of the JWKS file`.
    pub fn describe(&self) -> String {
        match (&self.kid, self.from_pem) {
            (_, true) => "the key of auth.public_key_file".into(),
            (Some(kid), false) => format!("key {} of the JWKS file", quote(kid)),
            (None, false) => "the key without kid of the JWKS file".into(),
        }
    }
}

/// A JWKS entry left out because walgate cannot verify with it.
pub(super) struct SkippedKey {
    pub kid: Option<String>,
    pub reason: String,
}

/// The usable keys of a JWKS file and the entries that were skipped.
pub(super) struct JwksKeys {
    pub keys: Vec<VerificationKey>,
    pub skipped: Vec<SkippedKey>,
}

/// Reads a JWKS file (RFC 7517, section 5).
///
/// RS256 keys and ES256 (P-256) keys are kept. Encryption keys and keys of other types,
/// curves or algorithms are skipped with a warning, and so are RSA keys outside 2048 to 8192
/// bits and keys whose numbers do not decode. Fails when the file cannot be read, is not a
/// JWKS document, has two usable keys with the same `kid`, or has no usable key.
pub(super) fn load_jwks(path: &Path) -> Result<JwksKeys, AuthSetupError> {
    let invalid = |message: String| AuthSetupError::Invalid {
        kind: "JWKS",
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|source| AuthSetupError::Read {
        kind: "JWKS",
        path: path.to_path_buf(),
        source,
    })?;
    let document: Value = serde_json::from_str(&text)
        .map_err(|err| invalid(format!("the file is not valid JSON ({err})")))?;
    let Some(entries) = document.get("keys").and_then(Value::as_array) else {
        return Err(invalid(
            "expected a JSON object with a \"keys\" array, as in {\"keys\": [{\"kty\": \"RSA\", \
             ...}]}"
                .into(),
        ));
    };

    let mut loaded = JwksKeys {
        keys: Vec::new(),
        skipped: Vec::new(),
    };
    for (index, entry) in entries.iter().enumerate() {
        let kid = entry.get("kid").and_then(Value::as_str).map(str::to_owned);
        match read_jwk(entry) {
            Ok(key) => {
                if let Some(kid) = &key.kid {
                    if loaded.keys.iter().any(|k| k.kid.as_ref() == Some(kid)) {
                        return Err(invalid(format!(
                            "two keys have kid {}; give every key its own kid",
                            quote(kid)
                        )));
                    }
                }
                loaded.keys.push(key);
            }
            Err(reason) => {
                tracing::warn!(
                    path = %path.display(),
                    index,
                    kid = kid.as_deref().unwrap_or(""),
                    %reason,
                    "skipping a JWKS key that walgate cannot verify with"
                );
                loaded.skipped.push(SkippedKey { kid, reason });
            }
        }
    }

    if loaded.keys.is_empty() {
        let detail = if loaded.skipped.is_empty() {
            "the \"keys\" array is empty".to_string()
        } else {
            let reasons: Vec<String> = loaded
                .skipped
                .iter()
                .map(|skipped| match &skipped.kid {
                    Some(kid) => format!("{}: {}", quote(kid), skipped.reason),
                    None => format!("key without kid: {}", skipped.reason),
                })
                .collect();
            format!("every key was skipped ({})", reasons.join("; "))
        };
        return Err(invalid(format!(
            "no usable RS256 or ES256 signing key: {detail}"
        )));
    }
    Ok(loaded)
}

/// Converts one JWKS entry, or returns why it is skipped.
fn read_jwk(entry: &Value) -> Result<VerificationKey, String> {
    let jwk: Jwk =
        serde_json::from_value(entry.clone()).map_err(|err| format!("not a valid JWK ({err})"))?;
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return Err("it is an encryption key (\"use\": \"enc\")".into());
    }
    if let Some(operations) = &jwk.common.key_operations {
        if !operations.contains(&KeyOperations::Verify) {
            return Err("its \"key_ops\" do not include \"verify\"".into());
        }
    }
    let declared_alg = entry.get("alg").and_then(Value::as_str).unwrap_or("");
    let kid = jwk.common.key_id.clone();

    match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            if !matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::RS256)) {
                return Err(unsupported_alg(declared_alg));
            }
            let modulus = decode_base64url(&rsa.n).map_err(|err| format!("\"n\" {err}"))?;
            let exponent = decode_base64url(&rsa.e).map_err(|err| format!("\"e\" {err}"))?;
            check_rsa_modulus(&modulus)?;
            check_rsa_exponent(&exponent)?;
            Ok(VerificationKey {
                kid,
                algorithm: Algorithm::RS256,
                key: DecodingKey::from_rsa_raw_components(&modulus, &exponent),
                from_pem: false,
            })
        }
        AlgorithmParameters::EllipticCurve(ec) => {
            if ec.curve != EllipticCurve::P256 {
                let curve = entry.get("crv").and_then(Value::as_str).unwrap_or("");
                return Err(format!(
                    "its curve {} is not supported; walgate verifies ES256 with P-256 keys",
                    quote(curve)
                ));
            }
            if !matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::ES256)) {
                return Err(unsupported_alg(declared_alg));
            }
            let x = decode_base64url(&ec.x).map_err(|err| format!("\"x\" {err}"))?;
            let y = decode_base64url(&ec.y).map_err(|err| format!("\"y\" {err}"))?;
            if x.len() != 32 || y.len() != 32 {
                return Err(format!(
                    "\"x\" and \"y\" are {} and {} bytes, but a P-256 coordinate is 32 bytes",
                    x.len(),
                    y.len()
                ));
            }
            // SEC1 uncompressed point: 0x04, then x, then y.
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let key = DecodingKey::from_ec_der(&point);
            check_ec_point(&key)?;
            Ok(VerificationKey {
                kid,
                algorithm: Algorithm::ES256,
                key,
                from_pem: false,
            })
        }
        AlgorithmParameters::OctetKey(_) => Err(
            "it is a symmetric (\"oct\") key; walgate reads HS256 secrets only from \
             WALGATE_JWT_SECRET or auth.jwt_secret"
                .into(),
        ),
        _ => {
            let kty = entry.get("kty").and_then(Value::as_str).unwrap_or("");
            Err(format!(
                "its key type {} is not supported; walgate verifies RS256 (\"RSA\") and ES256 \
                 (\"EC\") keys",
                quote(kty)
            ))
        }
    }
}

fn unsupported_alg(declared_alg: &str) -> String {
    format!(
        "its \"alg\" {} is not supported; walgate verifies RS256 and ES256",
        quote(declared_alg)
    )
}

fn decode_base64url(value: &str) -> Result<Vec<u8>, String> {
    BASE64URL_ANY_PADDING
        .decode(value)
        .map_err(|err| format!("is not valid base64url ({err})"))
}

/// Reads a PEM file that contains one public key: RSA (RS256) or EC P-256 (ES256).
///
/// Private keys, certificates, files with several PEM blocks, other key types and RSA keys
/// outside 2048 to 8192 bits are rejected with a message that explains how to fix the file.
pub(super) fn load_pem(path: &Path) -> Result<VerificationKey, AuthSetupError> {
    let invalid = |message: String| AuthSetupError::Invalid {
        kind: "public key",
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|source| AuthSetupError::Read {
        kind: "public key",
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let labels: Vec<&str> = text
        .lines()
        .filter_map(|line| {
            line.trim()
                .strip_prefix("-----BEGIN ")?
                .strip_suffix("-----")
        })
        .collect();
    let label = match labels.as_slice() {
        [label] => *label,
        [] => {
            return Err(invalid(
                "the file is not in PEM format (it has no -----BEGIN line); give a public key \
                 that starts with -----BEGIN PUBLIC KEY-----"
                    .into(),
            ))
        }
        several => {
            return Err(invalid(format!(
                "the file has {} PEM blocks; put exactly one public key in it, or list several \
                 keys in a JWKS file (auth.jwks_file)",
                several.len()
            )))
        }
    };

    if label.contains("PRIVATE KEY") {
        return Err(invalid(format!(
            "the file holds a private key (-----BEGIN {label}-----), which walgate must not \
             be given; extract the public key with `openssl pkey -in {} -pubout -out \
             public.pem`",
            path.display()
        )));
    }
    if label == "CERTIFICATE" {
        return Err(invalid(format!(
            "the file holds a certificate; extract its public key with `openssl x509 -in {} \
             -pubkey -noout -out public.pem`",
            path.display()
        )));
    }
    if label != "PUBLIC KEY" && label != "RSA PUBLIC KEY" {
        return Err(invalid(format!(
            "the file holds a {} block, but a public key (-----BEGIN PUBLIC KEY-----) is \
             expected",
            quote(label)
        )));
    }

    if let Ok(key) = DecodingKey::from_rsa_pem(&bytes) {
        return rsa_pem_key(key).map_err(invalid);
    }
    if label == "PUBLIC KEY" {
        if let Ok(key) = DecodingKey::from_ec_pem(&bytes) {
            return ec_pem_key(key).map_err(invalid);
        }
    }
    Err(invalid(
        "the public key is neither a valid RSA key nor a valid EC P-256 key; walgate verifies \
         RS256 and ES256 only"
            .into(),
    ))
}

fn rsa_pem_key(key: DecodingKey) -> Result<VerificationKey, String> {
    // Converting to a JWK parses the PKCS#1 structure and yields the modulus.
    let jwk = Jwk::from_decoding_key(&key, None)
        .map_err(|err| format!("the RSA public key cannot be parsed ({err})"))?;
    let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
        return Err("the RSA public key cannot be parsed".into());
    };
    let modulus = decode_base64url(&rsa.n).map_err(|err| format!("the modulus {err}"))?;
    check_rsa_modulus(&modulus)?;
    Ok(VerificationKey {
        kid: None,
        algorithm: Algorithm::RS256,
        key,
        from_pem: true,
    })
}

fn ec_pem_key(key: DecodingKey) -> Result<VerificationKey, String> {
    let jwk = Jwk::from_decoding_key(&key, None)
        .map_err(|err| format!("the EC public key cannot be parsed ({err})"))?;
    match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {}
        AlgorithmParameters::EllipticCurve(ec) => {
            return Err(format!(
                "the key is on curve {}, but walgate verifies ES256, which needs a P-256 key",
                curve_name(&ec.curve)
            ))
        }
        _ => return Err("the EC public key cannot be parsed".into()),
    }
    check_ec_point(&key)?;
    Ok(VerificationKey {
        kid: None,
        algorithm: Algorithm::ES256,
        key,
        from_pem: true,
    })
}

/// Names a curve as JWK `crv` values do (RFC 7518, section 6.2.1.1).
fn curve_name(curve: &EllipticCurve) -> String {
    match serde_json::to_value(curve) {
        Ok(Value::String(name)) => name,
        _ => format!("{curve:?}"),
    }
}

/// Rejects a modulus outside [`MIN_RSA_BITS`] to [`MAX_RSA_BITS`], or an even one.
fn check_rsa_modulus(modulus: &[u8]) -> Result<(), String> {
    let bits = bit_length(modulus);
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "the RSA key is {bits} bits, but at least {MIN_RSA_BITS} are required"
        ));
    }
    if bits > MAX_RSA_BITS {
        return Err(format!(
            "the RSA key is {bits} bits, but at most {MAX_RSA_BITS} are supported"
        ));
    }
    if modulus.last().is_some_and(|byte| byte % 2 == 0) {
        return Err("the RSA modulus is even, so it is not a valid RSA key".into());
    }
    Ok(())
}

fn check_rsa_exponent(exponent: &[u8]) -> Result<(), String> {
    let significant: Vec<u8> = exponent.iter().copied().skip_while(|&b| b == 0).collect();
    let value = if significant.len() <= 8 {
        significant
            .iter()
            .fold(0u64, |value, &byte| (value << 8) | u64::from(byte))
    } else {
        u64::MAX
    };
    if !(3..=MAX_RSA_EXPONENT).contains(&value) {
        return Err(format!(
            "the RSA public exponent is out of range; use 3 to {MAX_RSA_EXPONENT} (65537 is usual)"
        ));
    }
    Ok(())
}

/// Checks that a P-256 key is a point on the curve, which jsonwebtoken checks only when it
/// builds a verifier.
fn check_ec_point(key: &DecodingKey) -> Result<(), String> {
    match jsonwebtoken::crypto::verify("", b"", key, Algorithm::ES256) {
        Ok(_) => Ok(()),
        Err(_) => Err("the EC key is not a valid point on the P-256 curve".into()),
    }
}

/// Counts the significant bits of a big-endian unsigned integer.
fn bit_length(bytes: &[u8]) -> usize {
    match bytes.iter().position(|&b| b != 0) {
        Some(first) => (bytes.len() - first) * 8 - bytes[first].leading_zeros() as usize,
        None => 0,
    }
}
