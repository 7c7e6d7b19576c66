//! The worked example of docs/audit-log.md, checked against the code: the exact bytes of two
//! entries, their leaf hashes, the two-entry root and proofs, a signed checkpoint of that
//! tree and its verifier key, and the core's own formatting of the two example events.
//!
//! It uses identity_core and identity-core's own dependencies (identity_sdk, ring and
//! hex); plain #[test]s: nothing here needs a runtime.

use identity_core::audit::{in_request, AuditLog, Entry, Event, Outcome};
use identity_core::crypto::Kek;
use identity_core::storage::testing::fresh_db;
use identity_core::storage::Backend;
use identity_core::Clock;
use identity_sdk::audit::{
    empty_root, key_id, leaf_hash, node_hash, signature_line, verify_consistency, verify_inclusion,
    Checkpoint, Hash, TreeBuilder, VerifierKey,
};

const ENTRY_A: &str = "identity-audit/v1\ntime=1767225600000\nevent=token.issued\noutcome=success\nclient=audit-tool\nrequest=q1Xl0vJd2Yp_8mQy-3fTzA\nsubject=-\nsource=-\ndetail=client_credentials%20audit\n";
const ENTRY_B: &str = "identity-audit/v1\ntime=1767225600123\nevent=login\noutcome=failure\nclient=-\nrequest=Vb2n-0aQ8_sLkR4tYc7wEg\nsubject=6ktmC_gXQaD2IyWxDW-s2ynfQuhXUYdvaBg3qiRONHg\nsource=j5Gyou4fXKFtVtat\ndetail=bad-credentials\n";

const LEAF_A: &str = "20daa4b6d6bb004def0bc3b62d9a370f4ff4084ded17da67f074ddc276566fce";
const LEAF_B: &str = "8d5d2e0c92cfc7441695dc575df2e488951c588e6363b2bb32c3ea6c30eb5a6f";
const ROOT_2: &str = "7ee95f54cadbcd6ce2adb9f55a988ef3ec4bc45061fa2844710133e9a678bb39";

const ORIGIN: &str = "localhost:8080/audit";
/// The example signing key: the Ed25519 seed 0x00, 0x01, ..., 0x1f.
const PUBLIC: &str = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8";
const VERIFIER_KEY: &str =
    "localhost:8080/audit+1cc6d0a8+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4";
const BODY: &str = "localhost:8080/audit\n2\nfulfVMrbzWzirbn1WpiO8+xLxFBh+ihEcQEz6aZ4uzk=\n";
const SIGNATURE: &str = "c367a32509fb6fe5b07034b02fb2b842ceb850fe1b8c7fa2185a5207e558093069d86720a2f6c423283ede616252ced49a19f037a22e39a60ac860b28c4c290e";
const NOTE: &str = "localhost:8080/audit\n2\nfulfVMrbzWzirbn1WpiO8+xLxFBh+ihEcQEz6aZ4uzk=\n\n\u{2014} localhost:8080/audit HMbQqMNnoyUJ+2/lsHA0sC+yuELOuFD+G4x/ohhaUgflWAkwadhnIKL2xCMoPt5hYlLO1JoZ8DeiLjmmCshgsoxMKQ4=\n";

fn h(s: &str) -> Hash {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).unwrap();
    out
}

fn entry_a() -> Entry {
    Entry {
        time_ms: 1_767_225_600_000,
        event: "token.issued".into(),
        outcome: "success".into(),
        client: "audit-tool".into(),
        request: "q1Xl0vJd2Yp_8mQy-3fTzA".into(),
        subject: "-".into(),
        source: "-".into(),
        detail: "client_credentials%20audit".into(),
    }
}

fn entry_b() -> Entry {
    Entry {
        time_ms: 1_767_225_600_123,
        event: "login".into(),
        outcome: "failure".into(),
        client: "-".into(),
        request: "Vb2n-0aQ8_sLkR4tYc7wEg".into(),
        subject: "6ktmC_gXQaD2IyWxDW-s2ynfQuhXUYdvaBg3qiRONHg".into(),
        source: "j5Gyou4fXKFtVtat".into(),
        detail: "bad-credentials".into(),
    }
}

#[test]
fn spec_entry_bytes_and_tree_hashes() {
    // The text form, both ways.
    assert_eq!(entry_a().encode(), ENTRY_A);
    assert_eq!(entry_b().encode(), ENTRY_B);
    assert_eq!(ENTRY_A.len(), 174);
    assert_eq!(ENTRY_B.len(), 204);
    assert_eq!(Entry::decode(ENTRY_A), Some(entry_a()));
    assert_eq!(Entry::decode(ENTRY_B), Some(entry_b()));

    // Leaves, the interior node, the builder's root.
    let (la, lb) = (leaf_hash(ENTRY_A.as_bytes()), leaf_hash(ENTRY_B.as_bytes()));
    assert_eq!(la, h(LEAF_A));
    assert_eq!(lb, h(LEAF_B));
    assert_eq!(node_hash(&la, &lb), h(ROOT_2));
    let mut tree = TreeBuilder::new();
    assert_eq!(tree.root(), empty_root());
    assert_eq!(
        empty_root(),
        h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    tree.push(la);
    assert_eq!(tree.root(), la);
    tree.push(lb);
    assert_eq!((tree.size(), tree.root()), (2, h(ROOT_2)));

    // The proofs of the two-entry tree are one hash each.
    verify_inclusion(0, 2, &la, &[lb], &h(ROOT_2)).unwrap();
    verify_inclusion(1, 2, &lb, &[la], &h(ROOT_2)).unwrap();
    verify_consistency(1, 2, &[lb], &la, &h(ROOT_2)).unwrap();
}

#[test]
fn spec_checkpoint_and_verifier_key() {
    use ring::signature::{Ed25519KeyPair, KeyPair};
    let seed: Vec<u8> = (0u8..32).collect();
    let pair = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    let public: [u8; 32] = pair.public_key().as_ref().try_into().unwrap();
    assert_eq!(public, h(PUBLIC));
    assert_eq!(key_id(ORIGIN, &public), [0x1c, 0xc6, 0xd0, 0xa8]);

    let key = VerifierKey::new(ORIGIN, public);
    assert_eq!(key.to_text(), VERIFIER_KEY);
    assert_eq!(VerifierKey::parse(VERIFIER_KEY).unwrap(), key);
    assert_eq!(key.name(), ORIGIN);

    let cp = Checkpoint {
        origin: ORIGIN.into(),
        size: 2,
        root: h(ROOT_2),
    };
    assert_eq!(cp.body(), BODY);
    // Ed25519 is deterministic: the same key and body give the same signature.
    let sig = pair.sign(BODY.as_bytes());
    assert_eq!(hex::encode(sig.as_ref()), SIGNATURE);
    // The note exactly as AuditLog::checkpoint builds it (audit.rs: body, "\n", signature line).
    let note = format!("{}\n{}", cp.body(), signature_line(&key, sig.as_ref()));
    assert_eq!(note, NOTE);
    assert_eq!(Checkpoint::verify_note(NOTE, &key).unwrap(), cp);
}

#[test]
fn spec_core_formats_the_example_events() {
    let (db, _dir) = fresh_db(Backend::Sqlite);
    // The example's key-encryption key: 32 bytes of 0x07. Pseudonyms depend on it.
    let kek = Kek::from_bytes([7u8; 32]);
    let log = AuditLog::open(db, &kek, Clock::system(), ORIGIN).unwrap();
    assert_eq!(
        log.pseudonym("c1"),
        "6ktmC_gXQaD2IyWxDW-s2ynfQuhXUYdvaBg3qiRONHg"
    );

    // Entry A: what the client_credentials grant records (client_credentials.rs).
    let mut a = in_request(Some("q1Xl0vJd2Yp_8mQy-3fTzA".into()), || {
        log.entry(
            &Event::new("token.issued", Outcome::Success)
                .client("audit-tool")
                .detail("client_credentials audit"),
        )
    });
    a.time_ms = 1_767_225_600_000; // stamped with the clock; fixed here
    assert_eq!(a, entry_a());
    assert_eq!(a.encode(), ENTRY_A);

    // Entry B: what a failed password login records (login.rs).
    let mut b = in_request(Some("Vb2n-0aQ8_sLkR4tYc7wEg".into()), || {
        log.entry(
            &Event::new("login", Outcome::Failure)
                .source("203.0.113.7")
                .detail("bad-credentials")
                .citizen("c1"),
        )
    });
    b.time_ms = 1_767_225_600_123;
    assert_eq!(b, entry_b());
    assert_eq!(b.encode(), ENTRY_B);

    // The escaping table of the document, through the public path (escape() is private).
    let detail = |d: &str| -> String {
        log.entry(&Event::new("test.escape", Outcome::Success).detail(d))
            .detail
    };
    assert_eq!(detail("-"), "%2D");
    assert_eq!(detail("--"), "--");
    assert_eq!(detail("-x"), "-x");
    assert_eq!(detail("a-b"), "a-b");
    assert_eq!(detail(""), "%");
    assert_eq!(detail("%"), "%25");
    assert_eq!(detail("a=b\nc"), "a%3Db%0Ac");
    assert_eq!(detail("\t\r\u{7f}"), "%09%0D%7F");
    assert_eq!(detail("a b,c;d"), "a%20b%2Cc%3Bd");
    assert_eq!(detail("._~:/@+"), "._~:/@+");
    assert_eq!(detail("\u{e9}"), "%C3%A9");
    assert_eq!(detail("\u{65e5}"), "%E6%97%A5");
    // At most 200 characters (Unicode scalar values) are kept, then escaped, and a cut
    // value ends in `%*`; `*` itself is always escaped.
    assert_eq!(detail("x".repeat(200).as_str()), "x".repeat(200));
    assert_eq!(
        detail("x".repeat(250).as_str()),
        format!("{}%*", "x".repeat(200))
    );
    assert_eq!(
        detail("\u{e9}".repeat(201).as_str()),
        format!("{}%*", "%C3%A9".repeat(200))
    );
    assert_eq!(detail("*"), "%2A");
    // Two long values that agree on their first 200 characters still give one field, but
    // it says that it was cut (§9.1).
    assert_eq!(
        detail(format!("{}1", "x".repeat(200)).as_str()),
        detail(format!("{}2", "x".repeat(200)).as_str())
    );

    // Absent fields, and no request outside a request.
    let bare = log.entry(&Event::new("test.bare", Outcome::Failure));
    assert_eq!(
        (
            bare.client.as_str(),
            bare.request.as_str(),
            bare.subject.as_str(),
            bare.source.as_str(),
            bare.detail.as_str(),
            bare.outcome.as_str()
        ),
        ("-", "-", "-", "-", "-", "failure")
    );
    // An empty client is "%", not "-"; a citizen or source, even empty, is a keyed hash.
    let empty = log.entry(
        &Event::new("test.empty", Outcome::Success)
            .client("")
            .citizen("")
            .source(""),
    );
    assert_eq!(empty.client, "%");
    assert_eq!(empty.subject.len(), 43);
    assert_eq!(empty.source.len(), 16);
}
