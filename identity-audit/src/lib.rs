//! The auditor's tool: checks the identity service's audit log against a pinned key,
//! recomputing every hash itself. The server is not trusted for anything but bytes.
//!
//! - [`Auditor::checkpoint`]: the latest checkpoint, its signature checked.
//! - [`Auditor::verify_all`]: every entry fetched and the tree recomputed; the result must
//!   equal the signed checkpoint, and must extend the checkpoint saved by an earlier run.
//! - [`Auditor::verify_inclusion`]: one entry's inclusion proof against the checkpoint.
//!
//! Every failure is a [`Failure`] whose text says exactly what is wrong.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use identity_sdk::audit::{
    leaf_hash, verify_consistency, verify_inclusion, Checkpoint, Hash, TreeBuilder, VerifierKey,
};
use identity_sdk::login::ClientKey;
use identity_sdk::service::ServiceClient;
use std::fmt;
use std::path::Path;

/// What went wrong, in words for the auditor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

fn fail<T>(msg: impl Into<String>) -> Result<T, Failure> {
    Err(Failure(msg.into()))
}

fn b64(h: &Hash) -> String {
    STANDARD.encode(h)
}

/// How the auditor authenticates for entries and proofs.
#[derive(Debug)]
pub enum Credential {
    /// An auditor client registered with the `audit` scope and its `private_key_jwt` key:
    /// each token is fetched by client credentials and bound to a DPoP key of this run.
    Client {
        /// Client id.
        id: String,
        /// The client's private key (its public half is registered with the service).
        key: Box<ClientKey>,
    },
    /// None: only the public checkpoint can be checked.
    None,
}

/// A connection to one log, with its pinned key.
pub struct Auditor {
    http: reqwest::Client,
    base: String,
    key: VerifierKey,
    client: Option<ServiceClient>,
}

/// What a successful run found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The verified checkpoint.
    pub checkpoint: Checkpoint,
    /// What was checked, for the auditor to read.
    pub summary: String,
}

/// Entries per request (the server's page size).
const PAGE: u64 = 10_000;

impl Auditor {
    /// Connects to the log at `base` (the identity service's URL) with a pinned key.
    pub async fn connect(
        base: &str,
        key: VerifierKey,
        credential: Credential,
    ) -> Result<Self, Failure> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| Failure(format!("cannot build an HTTP client: {e}")))?;
        let base = base.trim_end_matches('/').to_owned();
        let client = match credential {
            Credential::None => None,
            Credential::Client { id, key } => {
                let refused = |e| Failure(format!("the auditor credential: {e}"));
                let client = ServiceClient::connect(&base, &id, *key, "audit")
                    .await
                    .map_err(refused)?;
                client.authenticate().await.map_err(refused)?;
                Some(client)
            }
        };
        Ok(Auditor {
            http,
            base,
            key,
            client,
        })
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response, Failure> {
        let url = format!("{}{path}", self.base);
        let r = match &self.client {
            Some(c) => c
                .send(c.get(&url))
                .await
                .map_err(|e| Failure(format!("{path}: {e}")))?,
            None => self
                .http
                .get(&url)
                .send()
                .await
                .map_err(|e| Failure(format!("cannot reach {}: {e}", self.base)))?,
        };
        if !r.status().is_success() {
            return fail(format!("{path}: the server answered {}", r.status()));
        }
        Ok(r)
    }

    /// Fetches the latest checkpoint and checks its signature by the pinned key.
    pub async fn checkpoint(&self) -> Result<(Checkpoint, String), Failure> {
        let note = self
            .get("/audit/checkpoint")
            .await?
            .text()
            .await
            .map_err(|e| Failure(e.to_string()))?;
        let cp = Checkpoint::verify_note(&note, &self.key)
            .map_err(|e| Failure(format!("checkpoint: {e}")))?;
        Ok((cp, note))
    }

    async fn proof(&self, path: &str) -> Result<Vec<Hash>, Failure> {
        let body: serde_json::Value = self
            .get(path)
            .await?
            .json()
            .await
            .map_err(|e| Failure(format!("{path}: {e}")))?;
        body["proof"]
            .as_array()
            .ok_or_else(|| Failure(format!("{path}: no proof in the answer")))?
            .iter()
            .map(|h| {
                h.as_str()
                    .and_then(|s| STANDARD.decode(s).ok())
                    .and_then(|v| Hash::try_from(v).ok())
                    .ok_or_else(|| Failure(format!("{path}: a proof hash is malformed")))
            })
            .collect()
    }

    /// The entries `[start, end)` as the server gives them (index and bytes), fetched a
    /// page at a time; nothing is verified (for tools that read the log, not for audits).
    pub async fn entries(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, Failure> {
        let mut all = Vec::new();
        let mut at = start;
        while at < end {
            let page = self.page(at, end.min(at + PAGE)).await?;
            let Some(&(last, _)) = page.last() else {
                break;
            };
            all.extend(page);
            at = last + 1;
        }
        Ok(all)
    }

    async fn page(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, Failure> {
        let text = self
            .get(&format!("/audit/entries?start={start}&end={end}"))
            .await?
            .text()
            .await
            .map_err(|e| Failure(e.to_string()))?;
        text.lines()
            .map(|line| {
                let (i, e) = line
                    .split_once(' ')
                    .ok_or_else(|| Failure("a malformed entry line".into()))?;
                let i: u64 = i
                    .parse()
                    .map_err(|_| Failure("a malformed entry index".into()))?;
                let e = STANDARD
                    .decode(e)
                    .map_err(|_| Failure(format!("entry {i} is not base64")))?;
                Ok((i, e))
            })
            .collect()
    }

    /// Fetches every entry up to the signed size, recomputes the tree and compares it with
    /// the checkpoint; with `state`, also checks that the log extends the checkpoint saved
    /// there by an earlier run, then saves the new one.
    pub async fn verify_all(
        &self,
        state: Option<&Path>,
        progress: bool,
    ) -> Result<Report, Failure> {
        let (cp, note) = self.checkpoint().await?;
        let earlier = match state {
            Some(p) if p.exists() => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| Failure(format!("{}: {e}", p.display())))?;
                Some(
                    Checkpoint::verify_note(&text, &self.key)
                        .map_err(|e| Failure(format!("the saved checkpoint: {e}")))?,
                )
            }
            _ => None,
        };
        if let Some(old) = &earlier {
            if cp.size < old.size {
                return fail(format!(
                    "the log shrank: it was {} entries at the checkpoint saved earlier, the server now signs {}",
                    old.size, cp.size
                ));
            }
        }
        let bar = if progress && cp.size > PAGE {
            indicatif::ProgressBar::new(cp.size)
        } else {
            indicatif::ProgressBar::hidden()
        };
        let mut tree = TreeBuilder::new();
        let mut root_at_earlier: Option<Hash> = earlier
            .as_ref()
            .filter(|o| o.size == 0)
            .map(|_| tree.root());
        let mut next = 0u64;
        while next < cp.size {
            let end = (next + PAGE).min(cp.size);
            let rows = self.page(next, end).await?;
            for (i, entry) in rows {
                if i != next {
                    return fail(format!(
                        "entry {next} is missing: the log returned entry {i} in its place"
                    ));
                }
                tree.push(leaf_hash(&entry));
                next += 1;
                if earlier.as_ref().is_some_and(|o| o.size == next) {
                    root_at_earlier = Some(tree.root());
                }
            }
            if next < end {
                return fail(format!(
                    "entries {next} to {} are missing: the log returned fewer than it signed",
                    end - 1
                ));
            }
            bar.set_position(next);
        }
        bar.finish_and_clear();
        let root = tree.root();
        if root != cp.root {
            return fail(format!(
                "the entries do not match the signed checkpoint: recomputed root {} over {} entries, the checkpoint says {}; an entry was changed, removed or reordered",
                b64(&root),
                cp.size,
                b64(&cp.root)
            ));
        }
        let mut summary = format!(
            "checkpoint of {} entries signed by {}; every entry rehashed and the root matches",
            cp.size,
            self.key.name()
        );
        if let Some(old) = &earlier {
            if root_at_earlier != Some(old.root) {
                return fail(format!(
                    "the log is not consistent with the checkpoint saved earlier (size {}, root {}): its first {} entries now hash to {}",
                    old.size,
                    b64(&old.root),
                    old.size,
                    root_at_earlier.map(|r| b64(&r)).unwrap_or_default()
                ));
            }
            if old.size > 0 && old.size < cp.size {
                let proof = self
                    .proof(&format!(
                        "/audit/proof/consistency?from={}&to={}",
                        old.size, cp.size
                    ))
                    .await?;
                verify_consistency(old.size, cp.size, &proof, &old.root, &cp.root).map_err(
                    |e| {
                        Failure(format!(
                            "the consistency proof from the saved checkpoint (size {}) fails: {e}",
                            old.size
                        ))
                    },
                )?;
            }
            summary.push_str(&format!(
                "; consistent with the checkpoint saved earlier at size {}",
                old.size
            ));
        }
        if let Some(p) = state {
            std::fs::write(p, &note).map_err(|e| Failure(format!("{}: {e}", p.display())))?;
        }
        Ok(Report {
            checkpoint: cp,
            summary,
        })
    }

    /// Checks the latest checkpoint against the one saved in `state` by an earlier run,
    /// with the server's consistency proof (no entries fetched), then saves it.
    pub async fn check_against_saved(&self, state: &Path) -> Result<Report, Failure> {
        let (cp, note) = self.checkpoint().await?;
        let mut summary = format!(
            "checkpoint of {} entries signed by {}",
            cp.size,
            self.key.name()
        );
        if state.exists() {
            let text = std::fs::read_to_string(state)
                .map_err(|e| Failure(format!("{}: {e}", state.display())))?;
            let old = Checkpoint::verify_note(&text, &self.key)
                .map_err(|e| Failure(format!("the saved checkpoint: {e}")))?;
            if cp.size < old.size {
                return fail(format!(
                    "the log shrank: it was {} entries at the checkpoint saved earlier, the server now signs {}",
                    old.size, cp.size
                ));
            }
            let proof = if old.size == 0 || old.size == cp.size {
                Vec::new()
            } else {
                self.proof(&format!(
                    "/audit/proof/consistency?from={}&to={}",
                    old.size, cp.size
                ))
                .await?
            };
            verify_consistency(old.size, cp.size, &proof, &old.root, &cp.root).map_err(|e| {
                Failure(format!(
                    "the log is not consistent with the checkpoint saved earlier (size {}): {e}",
                    old.size
                ))
            })?;
            summary.push_str(&format!(
                "; consistent with the checkpoint saved earlier at size {}",
                old.size
            ));
        }
        let tmp = state.with_extension("tmp");
        std::fs::write(&tmp, &note)
            .and_then(|()| std::fs::rename(&tmp, state))
            .map_err(|e| Failure(format!("{}: {e}", state.display())))?;
        Ok(Report {
            checkpoint: cp,
            summary,
        })
    }

    /// Checks that entry `index` is in the signed log: its hash is computed here, and its
    /// inclusion proof must lead to the checkpoint's root.
    pub async fn verify_inclusion(&self, index: u64) -> Result<Report, Failure> {
        let (cp, _) = self.checkpoint().await?;
        if index >= cp.size {
            return fail(format!(
                "entry {index} is not in the signed log of {} entries",
                cp.size
            ));
        }
        let rows = self.page(index, index + 1).await?;
        let Some((i, entry)) = rows.into_iter().next().filter(|(i, _)| *i == index) else {
            return fail(format!("entry {index} is missing"));
        };
        let proof = self
            .proof(&format!(
                "/audit/proof/inclusion?index={i}&size={}",
                cp.size
            ))
            .await?;
        verify_inclusion(index, cp.size, &leaf_hash(&entry), &proof, &cp.root).map_err(|e| {
            Failure(format!(
                "entry {index} is not included in the signed checkpoint: {e}"
            ))
        })?;
        Ok(Report {
            summary: format!(
                "entry {index} is included in the checkpoint of {} entries:\n{}",
                cp.size,
                String::from_utf8_lossy(&entry)
            ),
            checkpoint: cp,
        })
    }
}
