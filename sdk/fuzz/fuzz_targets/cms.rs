//! Any bytes as a CMS signature (and as the pinned CA): refused without a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (sig, ca) = data.split_at(data.len() / 2);
    assert!(identity_sdk::signature::verify_detached(sig, &[0u8; 32], ca, Some("s")).is_err());
});
