//! The worked examples of docs/signing.md (§4, §5, §6.3, §7.3–7.5, §9), checked against
//! the code: the identification code, the approval challenge, the CMS signed attributes and
//! the certificate profiles.

use super::*;

/// base64url (no padding) of the bytes 0x00..=0x1f: the shape of a real request id.
const REQUEST_ID: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
const REQUEST_ID_HEX: &str =
    "41414543417751464267634943516f4c4441304f4478415245684d554652595847426b6147787764486838";
const HELLO_SHA256: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
const HELLO_SHA512: &str = "9b71d224bd62f3785d96d46ad3ea3d73319bfbc2890caadae2dff72519673ca7\
                            2323c3d99ba5c11d7c7acc6e14b8c5da0c4663475c2e5c3adef46f73bcdec043";

const CODE_PREIMAGE_SHA256: &str = "6964656e746974792d736572766963652f7369676e2d636f64652f7631\
    41414543417751464267634943516f4c4441304f4478415245684d554652595847426b6147787764486838\
    2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
const CODE_HASH_SHA256: &str = "9528b7bcd3e61845dfdb849d14f968689391739b099c631c751a417a76942686";

const CHALLENGE_PREIMAGE_SHA256: &str = "000000186964656e746974792d736572766963652f7369676e2f7631\
     0000002b41414543417751464267634943516f4c4441304f4478415245684d554652595847426b6147787764486838\
     000000075348412d323536\
     000000202cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
const CHALLENGE_SHA256_HEX: &str =
    "bfe3e0b27f254c4b5aa245d29588f51ba4f505e256fcaa1075f250f4587a3957";
const CHALLENGE_SHA256_B64URL: &str = "v-Pgsn8lTEtaokXSlYj1G6T1BeJW_KoQdfJQ9Fh6OVc";
const CHALLENGE_SHA512_HEX: &str =
    "302e1596cc631b3429346050c527f92c2594070e1c2af278374c61c8f4b4e4a2";
const CHALLENGE_SHA512_B64URL: &str = "MC4VlsxjGzQpNGBQxSf5LCWUBw4cKvJ4N0xhyPS05KI";

/// 2026-01-01T00:00:00Z.
const NOW: i64 = 1_767_225_600;
const SIGNED_ATTRS_HEX: &str = "3169\
    301806092a864886f70d010903310b06092a864886f70d010701\
    301c06092a864886f70d010905310f170d3236303130313030303030305a\
    302f06092a864886f70d010904312204202cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

fn hello(alg: &'static digest::Algorithm) -> Vec<u8> {
    digest::digest(alg, b"hello").as_ref().to_vec()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

#[test]
fn spec_inputs() {
    assert_eq!(
        URL_SAFE_NO_PAD.encode((0u8..32).collect::<Vec<u8>>()),
        REQUEST_ID
    );
    assert_eq!(REQUEST_ID.len(), 43);
    assert_eq!(hex::encode(REQUEST_ID.as_bytes()), REQUEST_ID_HEX);
    assert_eq!(hex::encode(hello(&digest::SHA256)), HELLO_SHA256);
    assert_eq!(hex::encode(hello(&digest::SHA512)), HELLO_SHA512);
    assert_eq!(
        URL_SAFE_NO_PAD.encode(hello(&digest::SHA256)),
        "LPJNul-wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ"
    );
}

#[test]
fn spec_identification_code_sha256() {
    assert_eq!(
        identification_code(REQUEST_ID, &hello(&digest::SHA256)),
        "3660"
    );
}

#[test]
fn spec_identification_code_sha512() {
    assert_eq!(
        identification_code(REQUEST_ID, &hello(&digest::SHA512)),
        "8388"
    );
}

#[test]
fn spec_identification_code_by_hand() {
    // prefix ‖ request id (ASCII) ‖ raw digest, no length prefixes, then SHA-256.
    let mut m = b"identity-service/sign-code/v1".to_vec();
    m.extend_from_slice(REQUEST_ID.as_bytes());
    m.extend_from_slice(&hello(&digest::SHA256));
    assert_eq!(hex::encode(&m), CODE_PREIMAGE_SHA256);
    let h = digest::digest(&digest::SHA256, &m);
    assert_eq!(hex::encode(h.as_ref()), CODE_HASH_SHA256);
    let n = u32::from_be_bytes([h.as_ref()[0], h.as_ref()[1], h.as_ref()[2], h.as_ref()[3]]);
    assert_eq!(n, 2_502_473_660);
    assert_eq!(format!("{:04}", n % 10_000), "3660");
    assert_eq!(
        identification_code(REQUEST_ID, &hello(&digest::SHA256)),
        format!("{:04}", n % 10_000)
    );
}

#[test]
fn spec_identification_code_is_zero_padded() {
    // Any code has four ASCII digits; the padding is `{:04}`.
    for i in 0..200u32 {
        let code = identification_code(&format!("r{i}"), &hello(&digest::SHA256));
        assert_eq!(code.len(), 4, "{code}");
        assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");
    }
}

#[test]
fn spec_approval_challenge_sha256() {
    let c = approval_challenge(REQUEST_ID, "SHA-256", &hello(&digest::SHA256));
    assert_eq!(c.len(), 32);
    assert_eq!(hex::encode(&c), CHALLENGE_SHA256_HEX);
    assert_eq!(URL_SAFE_NO_PAD.encode(&c), CHALLENGE_SHA256_B64URL);
}

#[test]
fn spec_approval_challenge_sha512() {
    let c = approval_challenge(REQUEST_ID, "SHA-512", &hello(&digest::SHA512));
    assert_eq!(hex::encode(&c), CHALLENGE_SHA512_HEX);
    assert_eq!(URL_SAFE_NO_PAD.encode(&c), CHALLENGE_SHA512_B64URL);
}

#[test]
fn spec_approval_challenge_by_hand() {
    // Each part preceded by its length as a big-endian u32, then SHA-256 (raw bytes).
    let d = hello(&digest::SHA256);
    let mut p = Vec::new();
    for part in [
        b"identity-service/sign/v1".as_slice(),
        REQUEST_ID.as_bytes(),
        b"SHA-256".as_slice(),
        d.as_slice(),
    ] {
        p.extend_from_slice(&(part.len() as u32).to_be_bytes());
        p.extend_from_slice(part);
    }
    assert_eq!(p.len(), 122);
    assert_eq!(hex::encode(&p), CHALLENGE_PREIMAGE_SHA256);
    assert_eq!(
        digest::digest(&digest::SHA256, &p).as_ref(),
        approval_challenge(REQUEST_ID, "SHA-256", &d).as_slice()
    );
}

#[test]
fn spec_approval_detail() {
    let cms = [0x30u8, 0x03, 0x02, 0x01, 0x00];
    assert_eq!(
        approval_detail(REQUEST_ID, &cms),
        "ea866a757e4c38babfa8127cbe9a409d3e1f93a00ff1488ff735fcf917afffd0:\
         b560833d6f787af46113b96aad4dd5b5d1ae00dccc69cf30cc92bed651c56617"
    );
    assert_eq!(
        approval_detail(REQUEST_ID, &cms),
        format!("{}:{}", sha256_hex(REQUEST_ID.as_bytes()), sha256_hex(&cms))
    );
}

#[test]
fn spec_short_hash() {
    assert_eq!(
        short_hash(&hello(&digest::SHA256)),
        "2cf24dba\u{2026}938b9824"
    );
}

#[test]
fn spec_cms_signed_attributes_and_algorithms() {
    use cms::content_info::ContentInfo;
    use cms::der::{Decode, Encode};
    use cms::signed_data::SignedData;

    let ca = signing_cms::new_ca("Identity Service Signing CA", NOW).unwrap();
    let key = signing_cms::new_signing_key().unwrap();
    let cert = signing_cms::issue_certificate(&ca, &key, "pairwise-subject", None, NOW).unwrap();
    let d = hello(&digest::SHA256);
    let der =
        signing_cms::sign_detached(HashAlg::Sha256, &d, &key, &cert, &ca.cert_der, NOW).unwrap();

    let ci = ContentInfo::from_der(&der).unwrap();
    assert_eq!(ci.content_type.to_string(), "1.2.840.113549.1.7.2");
    let sd: SignedData = ci.content.decode_as().unwrap();
    assert_eq!(
        sd.encap_content_info.econtent_type.to_string(),
        "1.2.840.113549.1.7.1"
    );
    assert!(sd.encap_content_info.econtent.is_none());
    assert_eq!(sd.certificates.as_ref().unwrap().0.len(), 2);
    assert!(sd.crls.is_none());
    let [info] = sd.signer_infos.0.as_slice() else {
        panic!("one signer")
    };
    assert_eq!(info.digest_alg.oid.to_string(), "2.16.840.1.101.3.4.2.1");
    assert!(info.digest_alg.parameters.is_none());
    assert_eq!(
        info.signature_algorithm.oid.to_string(),
        "1.2.840.10045.4.3.2"
    );
    assert!(info.signature_algorithm.parameters.is_none());
    assert!(info.unsigned_attrs.is_none());
    // The bytes the signature covers: the attributes as a DER SET OF (tag 0x31), in the
    // order content-type, signing-time, message-digest.
    let attrs = info.signed_attrs.as_ref().unwrap().to_der().unwrap();
    assert_eq!(hex::encode(&attrs), SIGNED_ATTRS_HEX);
    assert_eq!(
        sha256_hex(&attrs),
        "d1ea49d0a6e63a80732a6ec61a30f05f197e2f0b53c93334e790e72babe44ccd"
    );

    let v =
        identity_sdk::signature::verify_detached(&der, &d, &ca.cert_der, Some("pairwise-subject"))
            .unwrap();
    assert_eq!(v.signing_time, NOW);
    assert_eq!(v.subject_id, "pairwise-subject");
    assert_eq!(v.subject_name, None);
}

#[test]
fn spec_certificate_profiles() {
    use cms::der::Decode;
    use cms::x509_cert::ext::pkix::name::DirectoryString;
    use cms::x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
    use cms::x509_cert::Certificate;

    let ca = signing_cms::new_ca("Identity Service Signing CA", NOW).unwrap();
    let key = signing_cms::new_signing_key().unwrap();
    let cert_der =
        signing_cms::issue_certificate(&ca, &key, "pairwise-subject", Some("CHAN Tai Man"), NOW)
            .unwrap();
    let cert = Certificate::from_der(&cert_der).unwrap();
    let ca_cert = Certificate::from_der(&ca.cert_der).unwrap();
    let (tbs, ca_tbs) = (cert.tbs_certificate(), ca_cert.tbs_certificate());

    // Citizen: CN = name, pseudonym = pairwise id; issued by the CA's exact subject.
    let cn = tbs.subject().common_name().unwrap().unwrap();
    assert_eq!(cn.value(), "CHAN Tai Man");
    let pseudonym: DirectoryString = tbs
        .subject()
        .by_oid(signing_cms::PSEUDONYM)
        .unwrap()
        .unwrap();
    assert_eq!(pseudonym.value(), "pairwise-subject");
    assert_eq!(tbs.issuer(), ca_tbs.subject());
    // Validity: from a minute before, two calendar years.
    assert_eq!(
        tbs.validity().not_before.to_unix_duration().as_secs(),
        1_767_225_540
    );
    assert_eq!(
        tbs.validity().not_after.to_unix_duration().as_secs(),
        1_830_297_540
    );
    // keyUsage critical, digitalSignature + nonRepudiation only; basicConstraints cA FALSE.
    let (critical, ku) = tbs.get_extension::<KeyUsage>().unwrap().unwrap();
    assert!(critical);
    assert!(ku.digital_signature() && ku.non_repudiation());
    assert!(!ku.key_cert_sign() && !ku.crl_sign() && !ku.key_encipherment());
    let (critical, bc) = tbs.get_extension::<BasicConstraints>().unwrap().unwrap();
    assert!(critical);
    assert!(!bc.ca);

    // CA: CN, ten years, keyCertSign + cRLSign, cA TRUE with path length 0.
    let ca_cn = ca_tbs.subject().common_name().unwrap().unwrap();
    assert_eq!(ca_cn.value(), "Identity Service Signing CA");
    assert_eq!(ca_tbs.issuer(), ca_tbs.subject());
    assert_eq!(
        ca_tbs.validity().not_before.to_unix_duration().as_secs(),
        1_767_225_540
    );
    assert_eq!(
        ca_tbs.validity().not_after.to_unix_duration().as_secs(),
        2_082_758_340
    );
    let (critical, ku) = ca_tbs.get_extension::<KeyUsage>().unwrap().unwrap();
    assert!(critical);
    assert!(ku.key_cert_sign() && ku.crl_sign());
    assert!(!ku.digital_signature());
    let (critical, bc) = ca_tbs.get_extension::<BasicConstraints>().unwrap().unwrap();
    assert!(critical);
    assert!(bc.ca);
    assert_eq!(bc.path_len_constraint, Some(0));
}
