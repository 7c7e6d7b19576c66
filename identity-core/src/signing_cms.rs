//! Document signing for citizens: the service's signing CA, a certificate per citizen key,
//! and detached CMS (RFC 5652) signatures over a digest that the e-service computed.
//!
//! The document never reaches the service: the e-service hashes it and submits only the
//! digest, so a signature is made over signed attributes that carry that digest
//! (RFC 5652 §5.4), never over the document itself. The result verifies with
//! `openssl cms -verify -binary -inform DER -in SIG -content DOC -CAfile CA.pem` and with the
//! SDK's offline verifier (`identity_sdk::signature`).
//!
//! Certificate profile (the SDK reads it back the same way): the subject is
//! `CN=<name>, pseudonym=<pairwise id>` when the citizen's name is given, else
//! `CN=<pairwise id>`; keyUsage is digitalSignature + nonRepudiation, critical; there is no
//! extendedKeyUsage, so OpenSSL's default S/MIME signing purpose accepts the certificate.
//!
//! Everything here is pure: keys and certificates are bytes the caller stores, and the time
//! is passed in so that tests and the database clock decide it.

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::der::asn1::{OctetString, SetOfVec};
use cms::der::oid::db::{rfc5911, rfc5912};
use cms::der::oid::ObjectIdentifier;
use cms::der::{Any, DateTime, Decode, Encode, EncodeValue, Tag, Tagged};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use cms::spki::AlgorithmIdentifierOwned;
use cms::x509_cert::attr::Attribute;
use cms::x509_cert::ext::pkix::name::DirectoryString;
use cms::x509_cert::ext::pkix::SubjectKeyIdentifier;
use cms::x509_cert::time::Time;
use cms::x509_cert::Certificate;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::pkcs8::DecodePrivateKey;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING};
use std::time::Duration;

/// Which digest the e-service submitted; it also fixes the ECDSA signature's hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlg {
    /// SHA-256 (32-byte digest), signed with ecdsa-with-SHA256.
    Sha256,
    /// SHA-512 (64-byte digest), signed with ecdsa-with-SHA512.
    Sha512,
}

impl HashAlg {
    /// Parses the name an e-service sends: `SHA-256` or `SHA-512` (ASCII case ignored).
    pub fn parse(name: &str) -> Result<Self, String> {
        match name.to_ascii_uppercase().as_str() {
            "SHA-256" => Ok(Self::Sha256),
            "SHA-512" => Ok(Self::Sha512),
            _ => Err(format!("unsupported hash algorithm {name:?}")),
        }
    }

    /// The canonical name, as `parse` accepts it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SHA-256",
            Self::Sha512 => "SHA-512",
        }
    }

    /// Length in bytes of a digest made with this algorithm.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    /// The digest algorithm and the matching ECDSA signature algorithm.
    fn oids(self) -> (ObjectIdentifier, ObjectIdentifier) {
        match self {
            Self::Sha256 => (rfc5912::ID_SHA_256, rfc5912::ECDSA_WITH_SHA_256),
            Self::Sha512 => (rfc5912::ID_SHA_512, rfc5912::ECDSA_WITH_SHA_512),
        }
    }
}

/// The service's signing CA: a self-signed ECDSA P-256 certificate and its PKCS#8 key.
pub struct CaMaterial {
    /// The CA certificate, DER; e-services pin it to verify signatures offline.
    pub cert_der: Vec<u8>,
    /// The CA's private key, PKCS#8 DER; a secret to keep encrypted at rest.
    pub key_pkcs8: Vec<u8>,
}

/// Makes a new signing CA named `CN=<common_name>`, valid for ten years from `now_unix`
/// (less a minute of allowance for clocks behind ours).
pub fn new_ca(common_name: &str, now_unix: i64) -> Result<CaMaterial, String> {
    let key_pkcs8 = new_signing_key()?;
    let key = rcgen_key(&key_pkcs8)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    // Path length 0: this CA signs citizens' certificates and never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(random_serial()?);
    set_validity(&mut params, now_unix, 10)?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("CA certificate: {e}"))?;
    Ok(CaMaterial {
        cert_der: cert.der().to_vec(),
        key_pkcs8,
    })
}

/// Makes a fresh citizen signing key: ECDSA P-256, PKCS#8 DER, from ring's system RNG.
pub fn new_signing_key() -> Result<Vec<u8>, String> {
    let rng = SystemRandom::new();
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map(|doc| doc.as_ref().to_vec())
        .map_err(|_| "could not generate a P-256 key".to_string())
}

/// Issues the certificate of a citizen's signing key, signed by `ca`, valid for two years
/// from `now_unix` (less a minute). The pairwise id identifies the citizen to the e-service
/// that asked for the signature; `name` is shown by signature viewers when given.
pub fn issue_certificate(
    ca: &CaMaterial,
    citizen_key_pkcs8: &[u8],
    pairwise_id: &str,
    name: Option<&str>,
    now_unix: i64,
) -> Result<Vec<u8>, String> {
    if pairwise_id.is_empty() {
        return Err("empty pairwise subject id".into());
    }
    let ca_cert = parse_cert(&ca.cert_der, "CA certificate")?;
    let ca_key = rcgen_key(&ca.key_pkcs8)?;
    let citizen_key = rcgen_key(citizen_key_pkcs8)?;
    if spki_point(&ca_cert) != Some(ca_key.public_key_raw()) {
        return Err("the CA key does not belong to the CA certificate".into());
    }
    let issuer = ca_issuer(&ca_cert, ca_key)?;

    let mut params = CertificateParams::default();
    let name = name.filter(|n| !n.trim().is_empty());
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name.unwrap_or(pairwise_id));
    if name.is_some() {
        let pseudonym = DnType::CustomDnType(oid_arcs(&PSEUDONYM));
        dn.push(pseudonym, DnValue::Utf8String(pairwise_id.to_owned()));
    }
    params.distinguished_name = dn;
    // ExplicitNoCa writes basicConstraints CA:FALSE and a subjectKeyIdentifier, which
    // RFC 5280 expects of end-entity certificates.
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::ContentCommitment,
    ];
    params.serial_number = Some(random_serial()?);
    set_validity(&mut params, now_unix, 2)?;
    let cert = params
        .signed_by(&citizen_key, &issuer)
        .map_err(|e| format!("citizen certificate: {e}"))?;

    // The issuer name is rebuilt from the CA certificate; a verifier matches it byte for
    // byte, so refuse to hand out a certificate whose issuer is not exactly the CA subject.
    let issued = parse_cert(cert.der(), "issued certificate")?;
    if issued.tbs_certificate().issuer() != ca_cert.tbs_certificate().subject() {
        return Err("issuer name does not reproduce the CA subject".into());
    }
    Ok(cert.der().to_vec())
}

/// Makes a detached CMS SignedData (RFC 5652) over a document whose `alg` digest is
/// `digest`, signed with the citizen's key; returns the ContentInfo, DER.
///
/// The signed attributes are content-type id-data, message-digest `digest` and
/// signing-time `now_unix`; both certificates travel in the SignedData so that a verifier
/// needs nothing but the pinned CA.
pub fn sign_detached(
    alg: HashAlg,
    digest: &[u8],
    citizen_key_pkcs8: &[u8],
    citizen_cert_der: &[u8],
    ca_cert_der: &[u8],
    now_unix: i64,
) -> Result<Vec<u8>, String> {
    if digest.len() != alg.digest_len() {
        return Err(format!(
            "{} digest must be {} bytes",
            alg.name(),
            alg.digest_len()
        ));
    }
    let cert = parse_cert(citizen_cert_der, "citizen certificate")?;
    let ca_cert = parse_cert(ca_cert_der, "CA certificate")?;
    let rng = SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, citizen_key_pkcs8, &rng)
        .map_err(|e| format!("citizen key: {e}"))?;
    // A key that does not match the certificate would give a signature nobody can verify;
    // better to fail here, where the mix-up can be seen.
    if spki_point(&cert) != Some(key.public_key().as_ref()) {
        return Err("the citizen key does not belong to the citizen certificate".into());
    }

    let signing_time = DateTime::from_unix_duration(Duration::from_secs(non_negative(now_unix)?))
        .map_err(der_err)?;
    let signed_attrs = SetOfVec::try_from(vec![
        attribute(rfc5911::ID_CONTENT_TYPE, &rfc5911::ID_DATA)?,
        attribute(
            rfc5911::ID_MESSAGE_DIGEST,
            &OctetString::new(digest).map_err(der_err)?,
        )?,
        // Time picks UTCTime up to 2049 and GeneralizedTime after, as RFC 5652 §11.3 says.
        attribute(rfc5911::ID_SIGNING_TIME, &Time::from(signing_time))?,
    ])
    .map_err(der_err)?;
    // RFC 5652 §5.4: the signature covers the attributes encoded as a SET OF, not with the
    // [0] IMPLICIT tag they carry inside SignerInfo; SetOfVec encodes as exactly that.
    let to_sign = signed_attrs.to_der().map_err(der_err)?;
    let signature = match alg {
        HashAlg::Sha256 => key
            .sign(&rng, &to_sign)
            .map_err(|_| "ECDSA signing failed".to_string())?
            .as_ref()
            .to_vec(),
        // ring has no ECDSA P-256 with SHA-512, so p256 signs the SHA-512 prehash; ECDSA
        // takes its leftmost 256 bits, as OpenSSL and the SDK do when verifying.
        HashAlg::Sha512 => {
            let signer = p256::ecdsa::SigningKey::from_pkcs8_der(citizen_key_pkcs8)
                .map_err(|e| format!("citizen key: {e}"))?;
            let prehash = ring::digest::digest(&ring::digest::SHA512, &to_sign);
            let sig: p256::ecdsa::Signature = signer
                .sign_prehash(prehash.as_ref())
                .map_err(|_| "ECDSA signing failed".to_string())?;
            sig.to_der().as_bytes().to_vec()
        }
    };

    let tbs = cert.tbs_certificate();
    let (digest_oid, signature_oid) = alg.oids();
    // RFC 5754 and RFC 5758: SHA-2 and ECDSA algorithm identifiers without parameters.
    let digest_alg = AlgorithmIdentifierOwned {
        oid: digest_oid,
        parameters: None,
    };
    let signer_info = SignerInfo {
        // Version 1 goes with an issuerAndSerialNumber signer identifier (RFC 5652 §5.3).
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: tbs.issuer().clone(),
            serial_number: tbs.serial_number().clone(),
        }),
        digest_alg: digest_alg.clone(),
        signed_attrs: Some(signed_attrs),
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: signature_oid,
            parameters: None,
        },
        signature: OctetString::new(signature).map_err(der_err)?,
        unsigned_attrs: None,
    };
    let signed_data = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![digest_alg]).map_err(der_err)?,
        // No eContent: the signature is detached and the document stays with the e-service.
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: rfc5911::ID_DATA,
            econtent: None,
        },
        // A DER SET OF is sorted, so the order given here is not the order on the wire.
        certificates: Some(
            CertificateSet::try_from(vec![
                CertificateChoices::Certificate(cert),
                CertificateChoices::Certificate(ca_cert),
            ])
            .map_err(der_err)?,
        ),
        crls: None,
        signer_infos: SignerInfos::try_from(vec![signer_info]).map_err(der_err)?,
    };
    ContentInfo {
        content_type: rfc5911::ID_SIGNED_DATA,
        content: Any::encode_from(&signed_data).map_err(der_err)?,
    }
    .to_der()
    .map_err(der_err)
}

/// Certificates start a minute early so that a relying party whose clock lags ours does
/// not see a certificate from the future.
const CLOCK_SKEW_SECS: i64 = 60;

fn attribute<T: EncodeValue + Tagged>(
    oid: ObjectIdentifier,
    value: &T,
) -> Result<Attribute, String> {
    let value = Any::encode_from(value).map_err(der_err)?;
    Ok(Attribute {
        oid,
        values: SetOfVec::try_from(vec![value]).map_err(der_err)?,
    })
}

fn rcgen_key(pkcs8: &[u8]) -> Result<KeyPair, String> {
    KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.into(), &PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("not a P-256 PKCS#8 key: {e}"))
}

fn parse_cert(der: &[u8], what: &str) -> Result<Certificate, String> {
    Certificate::from_der(der).map_err(|e| format!("{what}: {e}"))
}

/// The public point in a certificate, to compare with a private key's.
fn spki_point(cert: &Certificate) -> Option<&[u8]> {
    cert.tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .as_bytes()
}

/// rcgen can only sign as an issuer it has parameters for, and it cannot parse a
/// certificate without pulling in x509-parser; so the issuer name and key identifier are
/// rebuilt from the CA certificate decoded by x509-cert.
fn ca_issuer(ca: &Certificate, key: KeyPair) -> Result<Issuer<'static, KeyPair>, String> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    for rdn in ca.tbs_certificate().subject().iter_rdn() {
        // rcgen writes one attribute per RDN, so only such names can be reproduced.
        let [atv] = rdn.iter().collect::<Vec<_>>()[..] else {
            return Err("CA subject has a multi-valued RDN".into());
        };
        let text = DirectoryString::try_from(&atv.value).map_err(der_err)?;
        let text = text.value().into_owned();
        let value = match atv.value.tag() {
            Tag::Utf8String => DnValue::Utf8String(text),
            Tag::PrintableString => {
                DnValue::PrintableString(text.try_into().map_err(|e| format!("CA subject: {e}"))?)
            }
            tag => return Err(format!("CA subject has an unsupported string type {tag}")),
        };
        params
            .distinguished_name
            .push(DnType::CustomDnType(oid_arcs(&atv.oid)), value);
    }
    // The authority key identifier must equal the CA's subject key identifier, whatever
    // method made that.
    if let Ok(Some((_, ski))) = ca.tbs_certificate().get_extension::<SubjectKeyIdentifier>() {
        params.key_identifier_method = KeyIdMethod::PreSpecified(ski.0.as_bytes().to_vec());
    }
    Ok(Issuer::new(params, key))
}

fn oid_arcs(oid: &ObjectIdentifier) -> Vec<u64> {
    oid.arcs().map(u64::from).collect()
}

/// X.520 `pseudonym` (2.5.4.65): a DirectoryString, so a base64url pairwise id (which may hold
/// `_`, outside PrintableString) is written as UTF8String and stays within the standard.
pub const PSEUDONYM: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.65");

fn random_serial() -> Result<SerialNumber, String> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "system RNG failed".to_string())?;
    // rcgen encodes these as a positive INTEGER (prefixing 0x00 when the top bit is set),
    // so all 128 bits are random; zero alone is not a valid serial.
    if bytes == [0; 16] {
        bytes[15] = 1;
    }
    Ok(SerialNumber::from_slice(&bytes))
}

fn non_negative(unix: i64) -> Result<u64, String> {
    u64::try_from(unix).map_err(|_| format!("time {unix} is before 1970"))
}

/// Validity from a minute before `now_unix` for `years` calendar years. rcgen takes
/// `time::OffsetDateTime`; the epoch plus a std `Duration` builds one without a direct
/// dependency on `time`.
fn set_validity(params: &mut CertificateParams, now_unix: i64, years: u8) -> Result<(), String> {
    let secs = non_negative(now_unix - CLOCK_SKEW_SECS)?;
    // Adding a Duration panics past year 9999; refuse long before, no clock is near that.
    if secs > 253_402_300_799 - (u64::from(years) + 1) * 366 * 86_400 {
        return Err(format!("time {now_unix} is too far in the future"));
    }
    let start = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(secs);
    let end_year = start.year() + i32::from(years);
    // 29 February has no twin in most years: end on 1 March then.
    params.not_after = start
        .replace_year(end_year)
        .or_else(|_| (start + Duration::from_secs(86_400)).replace_year(end_year))
        .map_err(|e| format!("validity end: {e}"))?;
    params.not_before = start;
    Ok(())
}

fn der_err(e: cms::der::Error) -> String {
    format!("DER: {e}")
}
