//! Any text as a signed checkpoint, and any bytes as an inclusion proof, or a signing
//! result: refused without a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = identity_sdk::audit::VerifierKey::new("id.example/audit", [7u8; 32]);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = identity_sdk::audit::Checkpoint::verify_note(text, &key);
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
            let expect = identity_sdk::signing::Expectations {
                request_id: "r",
                document_digest: &[0u8; 32],
                ca_certificate: &[],
                subject: "s",
                origin: "https://id.example",
                audit_key: &key,
            };
            assert!(identity_sdk::signing::verify_signing_result(&v, &expect).is_err());
        }
    }
    let hashes: Vec<[u8; 32]> = data
        .chunks_exact(32)
        .map(|c| c.try_into().unwrap())
        .collect();
    if let Some((leaf, rest)) = hashes.split_first() {
        let size = 1 + rest.len() as u64 * 3;
        let _ = identity_sdk::audit::verify_inclusion(
            data.len() as u64 % size,
            size,
            leaf,
            rest,
            &[0u8; 32],
        );
    }
});
