//! The etcd v3 gRPC calls hostfw makes (the `etcd-client` crate): connect with TLS and
//! authentication, list the managed keys at a revision, write a push in one guarded transaction
//! (or, when the operator opts in, several).
//! Async; callers run it on their own current-thread runtime (`block_on` here, or the watch
//! thread), so the rest of hostfw stays synchronous.

use super::config::EtcdConfig;
use super::layout::{self, PREFIX};
use super::plan::{batches, Listing, Stored, Write};
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, TlsOptions, Txn,
    TxnOp,
};
use std::time::Duration;

/// Largest list or watch response accepted: the policy directory's total limit, far above
/// gRPC's 4 MiB default, which a fleet of a few thousand policies already exceeds.
pub const MAX_RESPONSE_BYTES: usize = crate::source::directory::MAX_TOTAL_BYTES as usize;

/// How long a connection attempt may take before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// gRPC keep-alive: a silent partition is noticed within interval + timeout.
pub const KEEP_ALIVE: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(5));

/// An error talking to etcd, as text for status and messages.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("cannot read {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// A guarded write found the key changed since it was read.
    #[error("{0}")]
    Conflict(String),
    /// The server refused a push as one transaction (too many operations or bytes).
    #[error("{0}")]
    Refused(String),
    /// The watch ended without an error from the server.
    #[error("the watch stream ended")]
    WatchEnded,
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path).map_err(|source| EtcdError::File {
        path: path.display().to_string(),
        source,
    })
}

/// Connect to the configured endpoints.
pub async fn connect(cfg: &EtcdConfig) -> Result<Client, EtcdError> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_keep_alive(KEEP_ALIVE.0, KEEP_ALIVE.1)
        .with_keep_alive_while_idle(true);
    if let (Some(user), Some(password)) = (&cfg.username, &cfg.password) {
        options = options.with_user(user.clone(), password.clone());
    }
    let tls_wanted = cfg.ca_cert_file.is_some()
        || cfg.cert_file.is_some()
        || cfg.endpoints.iter().any(|e| e.starts_with("https://"));
    if tls_wanted {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &cfg.ca_cert_file {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&cfg.cert_file, &cfg.key_file) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        options = options.with_tls(tls);
    }
    Ok(Client::connect(&cfg.endpoints, Some(options)).await?)
}

/// List every key under Calico's v3 prefix that belongs to a managed kind.
pub async fn list(client: &mut Client) -> Result<Listing, EtcdError> {
    let resp = client
        .kv_client()
        .max_decoding_message_size(MAX_RESPONSE_BYTES)
        .get(PREFIX, Some(GetOptions::new().with_prefix()))
        .await?;
    let revision = resp.header().map_or(0, |h| h.revision());
    let mut kvs = std::collections::BTreeMap::new();
    for kv in resp.kvs() {
        let Ok(key) = kv.key_str() else { continue };
        if layout::parse_key(key).is_some() {
            kvs.insert(
                key.to_string(),
                Stored {
                    value: kv.value().to_vec(),
                    mod_revision: kv.mod_revision(),
                },
            );
        }
    }
    Ok(Listing { revision, kvs })
}

/// Connect and list once, on a runtime of the calling thread (the one-shot commands).
pub fn list_once(cfg: &EtcdConfig) -> Result<Listing, EtcdError> {
    block_on(async {
        let mut client = connect(cfg).await?;
        list(&mut client).await
    })
}

/// Run a future on a fresh current-thread runtime.
pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds (no I/O resources are reserved at build)")
        .block_on(f)
}

/// How a push is committed: all of it in one transaction (the default: hosts see the old set
/// or the new one, never part of it), or split into transactions of at most this many writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    Whole,
    Split(usize),
}

/// The transaction of one batch: every guard holds and every write lands, or nothing does.
fn txn(batch: &[Write]) -> Txn {
    let mut compares = Vec::with_capacity(batch.len());
    let mut ops = Vec::with_capacity(batch.len());
    for w in batch {
        match w {
            Write::Put { key, value, expect } => {
                compares.push(match expect {
                    None => Compare::version(key.as_str(), CompareOp::Equal, 0),
                    Some(rev) => Compare::mod_revision(key.as_str(), CompareOp::Equal, *rev),
                });
                ops.push(TxnOp::put(key.as_str(), value.as_str(), None));
            }
            Write::Delete { key, expect } => {
                compares.push(Compare::mod_revision(
                    key.as_str(),
                    CompareOp::Equal,
                    *expect,
                ));
                ops.push(TxnOp::delete(key.as_str(), None));
            }
        }
    }
    Txn::new().when(compares).and_then(ops)
}

/// gRPC's status codes for a refused request (grpc/codes/codes.go): etcd's own refusals are
/// `InvalidArgument`; gRPC refuses a message beyond its size limit as `ResourceExhausted`.
const GRPC_INVALID_ARGUMENT: i32 = 3;
const GRPC_RESOURCE_EXHAUSTED: i32 = 8;

/// etcd's messages for a transaction beyond `--max-txn-ops` and a request beyond
/// `--max-request-bytes` (`ErrGRPCTooManyOps`, `ErrGRPCRequestTooLarge` in
/// api/v3rpc/rpctypes/error.go; the client crate does not export them).
const TOO_MANY_OPS: &str = "etcdserver: too many operations in txn request";
const REQUEST_TOO_LARGE: &str = "etcdserver: request is too large";

/// Which server limit a refused transaction hit, from its gRPC status code and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    Ops,
    Bytes,
}

fn limit_hit(code: i32, message: &str) -> Option<Limit> {
    match code {
        GRPC_INVALID_ARGUMENT if message == TOO_MANY_OPS => Some(Limit::Ops),
        GRPC_INVALID_ARGUMENT if message == REQUEST_TOO_LARGE => Some(Limit::Bytes),
        GRPC_RESOURCE_EXHAUSTED => Some(Limit::Bytes),
        _ => None,
    }
}

/// The server's refusal of a whole push, with the limit it hit and the ways out; other errors
/// as they are. etcd checks the operation count against `--max-txn-ops` and the request size
/// against `--max-request-bytes` (server/etcdserver/api/v3rpc/key.go), and gRPC refuses a
/// message beyond that size plus its overhead before etcd sees it.
fn refused_whole(e: etcd_client::Error, writes: &[Write]) -> EtcdError {
    let hit = match &e {
        etcd_client::Error::GRpcStatus(status) => {
            limit_hit(i32::from(status.code()), status.message())
        }
        _ => None,
    };
    let limit = match hit {
        Some(Limit::Ops) => format!(
            "more operations than the server's --max-txn-ops allows (etcd's default is {})",
            super::plan::DEFAULT_MAX_TXN_OPS
        ),
        Some(Limit::Bytes) => "a larger request than the server's --max-request-bytes allows \
                               (etcd's default is 1.5 MiB)"
            .to_string(),
        None => return EtcdError::Etcd(e),
    };
    let bytes: usize = writes.iter().map(Write::size).sum();
    EtcdError::Refused(format!(
        "etcd refused the push as one transaction of {} operations ({bytes} bytes): {limit}; \
         nothing was written. Raise the server's limit, or push with --max-ops-per-txn N (N at \
         most the server's --max-txn-ops) to split it, accepting that hosts may see part of the \
         set between transactions ({e})",
        writes.len()
    ))
}

/// Commit a push's writes. `Commit::Whole` is one transaction; `Commit::Split` writes the
/// batches in order, and a failed guard stops the push there, naming the batches already
/// written. A failed guard names the keys concerned. Returns the revision of the last
/// transaction.
pub async fn write(
    client: &mut Client,
    writes: &[Write],
    commit: Commit,
) -> Result<i64, EtcdError> {
    let all = match commit {
        Commit::Whole => vec![writes],
        Commit::Split(max_ops) => batches(writes, max_ops),
    };
    let mut revision = 0;
    for (done, batch) in all.iter().enumerate() {
        let resp = match client.txn(txn(batch)).await {
            Ok(resp) => resp,
            Err(e) if commit == Commit::Whole => return Err(refused_whole(e, writes)),
            Err(e) => return Err(e.into()),
        };
        if !resp.succeeded() {
            let keys: Vec<&str> = batch.iter().map(Write::key).collect();
            return Err(EtcdError::Conflict(format!(
                "another writer changed the datastore while pushing (one of: {}); {}; run the \
                 push again",
                keys.join(", "),
                if all.len() == 1 {
                    "nothing was written".to_string()
                } else {
                    format!(
                        "this batch was not written, {done} earlier batch(es) of {} were",
                        all.len()
                    )
                }
            )));
        }
        revision = resp.header().map_or(revision, |h| h.revision());
    }
    Ok(revision)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_known_by_its_status_code_and_etcd_message() {
        assert_eq!(
            limit_hit(GRPC_INVALID_ARGUMENT, TOO_MANY_OPS),
            Some(Limit::Ops)
        );
        assert_eq!(
            limit_hit(GRPC_INVALID_ARGUMENT, REQUEST_TOO_LARGE),
            Some(Limit::Bytes)
        );
        assert_eq!(
            limit_hit(
                GRPC_RESOURCE_EXHAUSTED,
                "grpc: received message larger than max"
            ),
            Some(Limit::Bytes)
        );
        // Another invalid argument, or the same words under another code, is no refusal.
        assert_eq!(
            limit_hit(
                GRPC_INVALID_ARGUMENT,
                "etcdserver: duplicate key given in txn request"
            ),
            None
        );
        // 14 is Unavailable.
        assert_eq!(limit_hit(14, TOO_MANY_OPS), None);
    }
}
