//! Offline verification of a citizen's document signature.
//!
//! The identity service signs a digest that the e-service computed and returns a detached
//! CMS SignedData (RFC 5652, DER). [`verify_detached`] checks it with nothing but the
//! service's signing CA certificate, which the e-service pins: no network call, no clock
//! (validity is judged at the signing time the service attested).
//!
//! ```no_run
//! # fn demo(cms: &[u8], document: &[u8], ca: &[u8]) -> Result<(), identity_sdk::signature::SignatureError> {
//! let digest = ring::digest::digest(&ring::digest::SHA256, document);
//! let signed = identity_sdk::signature::verify_detached(cms, digest.as_ref(), ca, Some("pairwise-id"))?;
//! println!("signed by {} at {}", signed.subject_id, signed.signing_time);
//! # Ok(()) }
//! ```

use cms::cert::CertificateChoices;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::der::asn1::{ObjectIdentifier, OctetString};
use cms::der::oid::db::{rfc5911, rfc5912};
use cms::der::{Decode, Encode};
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use cms::spki::AlgorithmIdentifierOwned;
use cms::x509_cert::ext::pkix::name::DirectoryString;
use cms::x509_cert::ext::pkix::KeyUsage;
use cms::x509_cert::time::Time;
use cms::x509_cert::Certificate;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA384_ASN1};
use std::fmt;

/// The digest algorithm of a signature; the signature's ECDSA hash is always the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HashAlg {
    /// SHA-256: 32-byte digests, ecdsa-with-SHA256.
    Sha256,
    /// SHA-512: 64-byte digests, ecdsa-with-SHA512.
    Sha512,
}

impl HashAlg {
    /// Length in bytes of a digest made with this algorithm.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }
}

/// What a valid signature tells about who signed and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedSignature {
    /// The signer's pairwise subject id: the same `sub` the e-service gets at login.
    pub subject_id: String,
    /// The citizen's name, when the service put it in the certificate.
    pub subject_name: Option<String>,
    /// When the service signed, in seconds since the Unix epoch.
    pub signing_time: i64,
    /// The signer's certificate, DER, for the e-service's records.
    pub certificate_der: Vec<u8>,
    /// The digest algorithm the signature covers.
    pub hash_alg: HashAlg,
}

/// Why a signature was refused. Any of these means the document must not be taken as
/// signed; they differ only to help find the cause.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// The input is not a DER CMS SignedData with one signer as the service makes it, or a
    /// required signed attribute (content-type, message-digest, signing-time) is missing
    /// or malformed.
    Malformed,
    /// The SignedData carries the content itself; the service only makes detached ones.
    NotDetached,
    /// A digest or signature algorithm other than SHA-256/SHA-512 with ECDSA P-256, or a
    /// signature algorithm that does not match the digest algorithm.
    UnsupportedAlgorithm,
    /// The signature covers another document: its message digest differs from the given
    /// one (or has another length, i.e. another hash algorithm).
    DigestMismatch,
    /// The signature does not verify with the signer certificate's key.
    BadSignature,
    /// The signer certificate is absent from the SignedData, was not issued by the pinned
    /// CA, or its signature does not verify with the CA's key.
    UntrustedCertificate,
    /// The signing time falls outside the validity of the signer or the CA certificate.
    CertificateExpired,
    /// The signer certificate may not make signatures: its key usage lacks
    /// digitalSignature or nonRepudiation.
    WrongKeyUsage,
    /// The signature is valid but was made by another citizen than the expected one.
    UnexpectedSubject,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed CMS signature",
            Self::NotDetached => "CMS signature is not detached",
            Self::UnsupportedAlgorithm => "unsupported signature algorithm",
            Self::DigestMismatch => "signature is for another document",
            Self::BadSignature => "signature does not verify",
            Self::UntrustedCertificate => "signer certificate not issued by the pinned CA",
            Self::CertificateExpired => "certificate not valid at signing time",
            Self::WrongKeyUsage => "certificate not meant for signing",
            Self::UnexpectedSubject => "signed by another citizen",
        })
    }
}

impl std::error::Error for SignatureError {}

/// Verifies a detached CMS signature offline, against the digest of the document.
///
/// `document_digest` is the SHA-256 or SHA-512 digest of the document; `pinned_ca_der` is
/// the service's signing CA certificate (DER); `expected_subject`, when given, is the
/// pairwise id of the citizen who should have signed.
///
/// Checks, in this order: the structure; that the signer certificate was issued by the
/// pinned CA; the signature over the signed attributes; content-type id-data and
/// message-digest equal to `document_digest`; both certificates valid at the signing time;
/// digitalSignature and nonRepudiation key usage; the subject.
pub fn verify_detached(
    cms_der: &[u8],
    document_digest: &[u8],
    pinned_ca_der: &[u8],
    expected_subject: Option<&str>,
) -> Result<VerifiedSignature, SignatureError> {
    use SignatureError::*;
    // The pinned CA is the caller's configuration, not attacker input, but a wrong file
    // must not verify anything either.
    let ca = Certificate::from_der(pinned_ca_der).map_err(|_| UntrustedCertificate)?;
    let content = ContentInfo::from_der(cms_der).map_err(|_| Malformed)?;
    if content.content_type != rfc5911::ID_SIGNED_DATA {
        return Err(Malformed);
    }
    let signed: SignedData = content.content.decode_as().map_err(|_| Malformed)?;
    if signed.encap_content_info.econtent_type != rfc5911::ID_DATA {
        return Err(Malformed);
    }
    if signed.encap_content_info.econtent.is_some() {
        return Err(NotDetached);
    }
    let [info] = signed.signer_infos.0.as_slice() else {
        return Err(Malformed);
    };
    // RFC 5652 §5.1, §5.3: with id-data content, plain certificates and an
    // issuerAndSerialNumber signer, both versions are 1; anything else was not made so.
    if signed.version != CmsVersion::V1 || info.version != CmsVersion::V1 {
        return Err(Malformed);
    }
    let hash_alg = algorithms(info)?;
    // digestAlgorithms is an unsigned hint for one-pass verifiers; one that does not list
    // the signer's algorithm was not made by the service.
    if !signed
        .digest_algorithms
        .iter()
        .any(|a| a.oid == info.digest_alg.oid)
    {
        return Err(Malformed);
    }
    let SignerIdentifier::IssuerAndSerialNumber(sid) = &info.sid else {
        return Err(Malformed);
    };
    let cert = signed
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .find_map(|choice| match choice {
            CertificateChoices::Certificate(c)
                if c.tbs_certificate().issuer() == &sid.issuer
                    && c.tbs_certificate().serial_number() == &sid.serial_number =>
            {
                Some(c)
            }
            _ => None,
        })
        .ok_or(UntrustedCertificate)?;

    if cert.tbs_certificate().issuer() != ca.tbs_certificate().subject() {
        return Err(UntrustedCertificate);
    }
    verify_certificate(cert, &ca).map_err(|_| UntrustedCertificate)?;

    let attrs = info.signed_attrs.as_ref().ok_or(Malformed)?;
    // RFC 5652 §5.4: the signature covers the attributes as a SET OF (tag 0x31), which is
    // how SetOfVec re-encodes them; strict DER decoding makes that the bytes signed.
    let signed_bytes = attrs.to_der().map_err(|_| Malformed)?;
    let point = ec_p256_point(cert).ok_or(UntrustedCertificate)?;
    verify_ecdsa(hash_alg, point, &signed_bytes, info.signature.as_bytes())
        .map_err(|_| BadSignature)?;

    let content_type: ObjectIdentifier = single_attr(info, rfc5911::ID_CONTENT_TYPE)?;
    if content_type != rfc5911::ID_DATA {
        return Err(Malformed);
    }
    let digest: OctetString = single_attr(info, rfc5911::ID_MESSAGE_DIGEST)?;
    // The lengths are checked first so that a digest of the wrong algorithm is a mismatch.
    if document_digest.len() != hash_alg.digest_len() || digest.as_bytes() != document_digest {
        return Err(DigestMismatch);
    }
    // The signing time is the service's own statement, covered by the signature; the
    // service is the signer, so it is as trustworthy as the signature itself.
    let time: Time = single_attr(info, rfc5911::ID_SIGNING_TIME)?;
    let signing_time = time.to_unix_duration().as_secs();
    for c in [cert, &ca] {
        let validity = c.tbs_certificate().validity();
        if signing_time < validity.not_before.to_unix_duration().as_secs()
            || signing_time > validity.not_after.to_unix_duration().as_secs()
        {
            return Err(CertificateExpired);
        }
    }

    // keyUsage is required: a certificate without it would be good for any purpose.
    match cert.tbs_certificate().get_extension::<KeyUsage>() {
        Ok(Some((_, ku))) if ku.digital_signature() && ku.non_repudiation() => {}
        _ => return Err(WrongKeyUsage),
    }

    let (subject_id, subject_name) = subject(cert).ok_or(Malformed)?;
    if expected_subject.is_some_and(|want| want != subject_id) {
        return Err(UnexpectedSubject);
    }
    Ok(VerifiedSignature {
        subject_id,
        subject_name,
        signing_time: i64::try_from(signing_time).map_err(|_| Malformed)?,
        certificate_der: cert.to_der().map_err(|_| Malformed)?,
        hash_alg,
    })
}

/// The digest algorithm, after checking that the signature algorithm uses the same hash.
fn algorithms(info: &SignerInfo) -> Result<HashAlg, SignatureError> {
    let (alg, signature_oid) = match info.digest_alg.oid {
        oid if oid == rfc5912::ID_SHA_256 => (HashAlg::Sha256, rfc5912::ECDSA_WITH_SHA_256),
        oid if oid == rfc5912::ID_SHA_512 => (HashAlg::Sha512, rfc5912::ECDSA_WITH_SHA_512),
        _ => return Err(SignatureError::UnsupportedAlgorithm),
    };
    // RFC 5754 lets SHA-2 parameters be absent or NULL; RFC 5758 has ECDSA's absent.
    if !absent_or_null(&info.digest_alg)
        || info.signature_algorithm.oid != signature_oid
        || info.signature_algorithm.parameters.is_some()
    {
        return Err(SignatureError::UnsupportedAlgorithm);
    }
    Ok(alg)
}

fn absent_or_null(alg: &AlgorithmIdentifierOwned) -> bool {
    alg.parameters.as_ref().is_none_or(|p| p.is_null())
}

/// The one value of a signed attribute that RFC 5652 §11 allows once with one value.
fn single_attr<T>(info: &SignerInfo, oid: ObjectIdentifier) -> Result<T, SignatureError>
where
    T: for<'a> Decode<'a>,
{
    let attrs = info
        .signed_attrs
        .as_ref()
        .ok_or(SignatureError::Malformed)?;
    let mut found = attrs.iter().filter(|a| a.oid == oid);
    let (Some(attr), None) = (found.next(), found.next()) else {
        return Err(SignatureError::Malformed);
    };
    let [value] = attr.values.as_slice() else {
        return Err(SignatureError::Malformed);
    };
    // Through DER rather than `Any::decode_as`, which refuses CHOICE types like Time.
    let der = value.to_der().map_err(|_| SignatureError::Malformed)?;
    T::from_der(&der).map_err(|_| SignatureError::Malformed)
}

/// The signer certificate's signature, checked with the CA's P-256 key.
fn verify_certificate(cert: &Certificate, ca: &Certificate) -> Result<(), ()> {
    let alg = cert.signature_algorithm();
    // The outer algorithm is not signed; RFC 5280 §4.1.1.2 has it equal the signed one.
    if alg != cert.tbs_certificate().signature() || alg.parameters.is_some() {
        return Err(());
    }
    let verifier: &'static dyn ring::signature::VerificationAlgorithm = match alg.oid {
        oid if oid == rfc5912::ECDSA_WITH_SHA_256 => &ECDSA_P256_SHA256_ASN1,
        oid if oid == rfc5912::ECDSA_WITH_SHA_384 => &ECDSA_P256_SHA384_ASN1,
        _ => return Err(()),
    };
    let tbs = cert.tbs_certificate().to_der().map_err(|_| ())?;
    let signature = cert.signature().as_bytes().ok_or(())?;
    let point = ec_p256_point(ca).ok_or(())?;
    UnparsedPublicKey::new(verifier, point)
        .verify(&tbs, signature)
        .map_err(|_| ())
}

/// The public point of a certificate whose key is ECDSA P-256, else nothing.
fn ec_p256_point(cert: &Certificate) -> Option<&[u8]> {
    let spki = cert.tbs_certificate().subject_public_key_info();
    let curve: ObjectIdentifier = spki.algorithm.parameters.as_ref()?.decode_as().ok()?;
    if spki.algorithm.oid != rfc5912::ID_EC_PUBLIC_KEY || curve != rfc5912::SECP_256_R_1 {
        return None;
    }
    spki.subject_public_key.as_bytes()
}

fn verify_ecdsa(alg: HashAlg, point: &[u8], message: &[u8], signature: &[u8]) -> Result<(), ()> {
    match alg {
        HashAlg::Sha256 => UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
            .verify(message, signature)
            .map_err(|_| ()),
        // ring has no P-256 with SHA-512; p256 verifies the prehash, taking its leftmost
        // 256 bits as ECDSA prescribes.
        HashAlg::Sha512 => {
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|_| ())?;
            let signature = p256::ecdsa::Signature::from_der(signature).map_err(|_| ())?;
            let prehash = ring::digest::digest(&ring::digest::SHA512, message);
            key.verify_prehash(prehash.as_ref(), &signature)
                .map_err(|_| ())
        }
    }
}

/// X.520 `pseudonym`, where the service writes the pairwise id when the name is in `CN`.
const PSEUDONYM: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.65");

/// The pairwise id and name, read the way the service writes them: `pseudonym` holds the
/// id when the name is in `CN`, otherwise `CN` holds the id.
fn subject(cert: &Certificate) -> Option<(String, Option<String>)> {
    let name = cert.tbs_certificate().subject();
    let cn = name.common_name().ok()?.map(|s| s.value().into_owned());
    let serial: Option<DirectoryString> = name.by_oid(PSEUDONYM).ok()?;
    match (serial, cn) {
        (Some(id), name) => Some((id.value().into_owned(), name)),
        (None, Some(id)) => Some((id, None)),
        (None, None) => None,
    }
}
