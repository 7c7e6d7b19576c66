//! Interoperability: a full FAPI 2.0 flow (PAR, PKCE, DPoP, `private_key_jwt`) driven by
//! openid-client, an OpenID-certified relying-party library this project did not write
//! (`tests/interop/fapi-rp.mjs`, run with Node.js). The citizen's part (login and consent)
//! is done here, as in the other end-to-end tests.

use identity_core::storage::Backend;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use crate::util::*;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Node.js and `npm ci --prefix tests/interop`; .ci/run installs them and runs this"]
async fn fapi2_flow_driven_by_openid_client() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/interop");
    let mut rp = Command::new("node")
        .current_dir(dir)
        .args(["fapi-rp.mjs", &server.base, "interop-rp", REDIRECT_URI])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is installed");
    let mut to_rp = rp.stdin.take().unwrap();
    let mut from_rp = BufReader::new(rp.stdout.take().unwrap()).lines();
    // Reading the child's lines blocks this worker for moments; the server is another process.
    let mut expect = |prefix: &str| -> String {
        match from_rp.next() {
            Some(Ok(line)) if line.starts_with(prefix) => line[prefix.len()..].to_owned(),
            other => panic!("expected {prefix}from the relying party, got {other:?}"),
        }
    };

    // The relying party made its key; register it as a FAPI client with that JWKS.
    let jwks = expect("JWKS ");
    let keys = identity_core::storage::testing::tempfile_guard::Dir::new();
    let path = keys.path().join("jwks.json");
    std::fs::write(&path, &jwks).unwrap();
    server.cli(&[
        "client",
        "add",
        "--id",
        "interop-rp",
        "--name",
        "Interop RP",
        "--department",
        "Dept I",
        "--redirect-uri",
        REDIRECT_URI,
        "--jwks",
        path.to_str().unwrap(),
        "--fapi",
    ]);
    writeln!(to_rp, "registered").unwrap();

    // It pushed its request and sends the citizen to the authorization URL.
    let auth = expect("AUTH ");
    assert!(auth.contains("request_uri="), "{auth}");
    let back = login_and_consent(&server, &browser(), &auth, USERNAME, PASSWORD).await;
    writeln!(to_rp, "{back}").unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| expect("RESULT ")));
    let status = rp.wait().unwrap();
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(&mut rp.stderr.take().unwrap(), &mut err);
    let Ok(line) = result else {
        panic!("no result ({status}): {err}\nserver:\n{}", server.log())
    };
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        v["token_type"], "dpop",
        "openid-client reports DPoP-bound tokens: {v}"
    );
    assert_eq!(v["sub"], v["userinfo_sub"]);
    assert_eq!(v["name"], "CHAN Tai Man");
}
