//! The binary's contract: a clear message and a non-zero exit on failure.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_identity-audit");

#[test]
fn a_malformed_key_is_refused_with_a_message() {
    let out = Command::new(BIN)
        .args(["--key", "not-a-key", "checkpoint"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--key: malformed verifier key"), "{err}");
}

#[test]
fn an_unreachable_log_is_a_failure_not_a_panic() {
    let key = "log.example/audit+2b9d5fa4+AZz3vJNbNbbLUwlfc1Jq6lOyZMy5SkhrKkQldPzSRr9L";
    let out = Command::new(BIN)
        .args(["--url", "http://127.0.0.1:9", "--key", key, "checkpoint"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("identity-audit: "), "{err}");
    assert!(!err.contains("panicked"));
}
