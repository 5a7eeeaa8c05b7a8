//! `hostfw datastore push PATH...` and `hostfw datastore pull DIR`: write policy files to
//! Calico's etcd datastore as calicoctl's apply does, and export it back to files. A push is
//! validated whole (the files together with what they leave in etcd) before anything is
//! written: exit 1 and no write when invalid, exit 2 when etcd or a file cannot be reached.
//! The writes go in one transaction, so hosts never see part of a push; one the server refuses
//! as too large is refused whole (exit 2) unless `--max-ops-per-txn` allows splitting it.

use super::{CmdError, CmdResult, Exit};
use crate::cli::DatastoreCommand;
use crate::diag::Diagnostic;
use crate::policy::{self, parse};
use crate::settings::Settings;
use crate::source::directory;
use crate::source::etcd::client::{self, Commit};
use crate::source::etcd::config::EtcdConfig;
use crate::source::etcd::layout::{self, Stamp};
use crate::source::etcd::plan::{self, Listing};
use std::collections::BTreeSet;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// `hostfw datastore push|pull`.
pub fn run(settings: &Settings, command: &DatastoreCommand) -> CmdResult {
    let cfg = settings.etcd_config()?;
    match command {
        DatastoreCommand::Push(args) => {
            let commit = match args.max_ops_per_txn {
                Some(n) => Commit::Split(n as usize),
                None => Commit::Whole,
            };
            push(&cfg, &args.paths, args.prune, commit)
        }
        DatastoreCommand::Pull(args) => pull(&cfg, &args.dir),
    }
}

fn print(diagnostics: &[Diagnostic]) {
    for d in diagnostics {
        eprintln!("{d}");
    }
}

/// `n` fresh stamps: a random uid (UUID v4, as the Kubernetes apimachinery calicoctl uses makes
/// them) and the current time, for resources this push creates.
fn new_stamps(n: usize) -> Result<Vec<Stamp>, CmdError> {
    let mut random = vec![0u8; 16 * n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .map_err(|e| format!("cannot read /dev/urandom for resource uids: {e}"))?;
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    Ok(random
        .chunks_exact(16)
        .map(|c| {
            let mut b = [0u8; 16];
            b.copy_from_slice(c);
            b[6] = (b[6] & 0x0f) | 0x40;
            b[8] = (b[8] & 0x3f) | 0x80;
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            Stamp {
                uid: format!(
                    "{}-{}-{}-{}-{}",
                    &hex[0..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..32]
                ),
                creation_timestamp: now.clone(),
            }
        })
        .collect())
}

/// The stored values a push leaves in place, decoded for validation beside the files.
fn kept_sources(listing: &Listing, replaced: &BTreeSet<String>, prune: bool) -> layout::Texts {
    layout::texts(
        listing
            .kvs
            .iter()
            .filter(|(k, _)| !(replaced.contains(*k) || prune && plan::prunable(k)))
            .map(|(k, s)| (k.as_str(), s.value.as_slice())),
    )
}

/// `datastore push`.
pub fn push(cfg: &EtcdConfig, paths: &[PathBuf], prune: bool, commit: Commit) -> CmdResult {
    let read = directory::read(paths);
    if read.unreadable {
        print(&read.diagnostics);
        return Ok(Exit::Error);
    }
    let listing = client::list_once(cfg)?;
    // The keys the files name, so their stored versions are judged as replaced.
    let mut resources = Vec::new();
    let mut diagnostics = read.diagnostics.clone();
    for t in &read.texts {
        let (mut r, mut d) = parse::parse(&t.name, &t.text);
        resources.append(&mut r);
        diagnostics.append(&mut d);
    }
    let replaced: BTreeSet<String> = resources
        .iter()
        .filter_map(|r| {
            let kind = r.node.get_text("kind")?;
            let name = r.node.get("metadata")?.get_text("name")?;
            layout::key(kind, name)
        })
        .collect();
    let kept = kept_sources(&listing, &replaced, prune);
    let mut all = read.texts.clone();
    all.extend(kept.sources.iter().cloned());
    let loaded = policy::load_sources(&all);
    diagnostics.extend(kept.diagnostics.iter().cloned());
    diagnostics.extend(loaded.diagnostics);
    crate::diag::sort(&mut diagnostics);
    diagnostics.dedup();
    print(&diagnostics);
    if loaded.set.is_none() || diagnostics.iter().any(Diagnostic::is_error) {
        eprintln!("hostfw: nothing written: the set after this push would be invalid");
        return Ok(Exit::Invalid);
    }
    let mut stamps = new_stamps(resources.len())?.into_iter();
    // `plan` asks for at most one stamp per resource.
    let plan = plan::plan(&resources, &listing.kvs, prune, &mut || {
        stamps.next().expect("one stamp per resource")
    });
    for (kind, name) in &plan.skipped {
        eprintln!("note: {kind} {name}: not a kind the datastore holds for hosts; not written");
    }
    // What hosts will read must be what was validated: load the encoded values themselves.
    let mut written: Vec<(String, Vec<u8>)> = plan
        .encoded
        .iter()
        .map(|e| (e.key.clone(), e.value.clone().into_bytes()))
        .collect();
    written.sort();
    let encoded = layout::texts(written.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
    let mut check = encoded.sources;
    check.extend(kept.sources);
    let reloaded = policy::load_sources(&check);
    let errors: Vec<Diagnostic> = encoded
        .diagnostics
        .into_iter()
        .chain(reloaded.diagnostics)
        .filter(Diagnostic::is_error)
        .collect();
    if !errors.is_empty() {
        print(&errors);
        eprintln!(
            "hostfw: nothing written: a value would not read back as the file wrote it \
             (quote the scalar in the file)"
        );
        return Ok(Exit::Invalid);
    }
    if let Commit::Split(n) = commit {
        let count = plan::batches(&plan.writes, n).len();
        if count > 1 {
            eprintln!(
                "warning: writing {} operations in {count} transactions of at most {n}: hosts \
                 may see part of the set between them (tiers, sets and profiles first, then \
                 policies, then host endpoints, deletions last)",
                plan.writes.len()
            );
        }
    }
    let revision = if plan.writes.is_empty() {
        listing.revision
    } else {
        client::block_on(async {
            let mut c = client::connect(cfg).await?;
            client::write(&mut c, &plan.writes, commit).await
        })?
    };
    println!(
        "pushed: {} created, {} updated, {} unchanged, {} deleted; revision {revision}",
        plan.created, plan.updated, plan.unchanged, plan.deleted
    );
    Ok(Exit::Ok)
}

/// `datastore pull DIR`: one YAML file per resource into DIR, which must be empty or absent (a
/// stale file would bring a deleted resource back on the next push).
pub fn pull(cfg: &EtcdConfig, dir: &Path) -> CmdResult {
    if let Ok(mut entries) = std::fs::read_dir(dir) {
        if entries.next().is_some() {
            return Err(
                format!("{} is not empty; pull into a new directory", dir.display()).into(),
            );
        }
    }
    let listing = client::list_once(cfg)?;
    let mut files = Vec::new();
    let mut diagnostics = Vec::new();
    for (key, stored) in &listing.kvs {
        match layout::export(key, &stored.value) {
            Ok(Some(e)) => files.push(e),
            Ok(None) => {}
            Err(d) => diagnostics.push(*d),
        }
    }
    if !diagnostics.is_empty() {
        print(&diagnostics);
        eprintln!("hostfw: nothing written: fix or delete the values above first");
        return Ok(Exit::Invalid);
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for f in &files {
        let path = dir.join(&f.file_name);
        std::fs::write(&path, &f.yaml)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    println!(
        "pulled {} resources at revision {} into {}",
        files.len(),
        listing.revision,
        dir.display()
    );
    Ok(Exit::Ok)
}
