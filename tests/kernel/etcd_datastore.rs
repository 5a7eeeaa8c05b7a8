//! `hostfw datastore push/pull` and the one-shot commands against a real etcd (in a namespace):
//! the pull/push round trip is byte-identical, values as calicoctl writes them (both policy name
//! forms) render exactly like the same files, an invalid push writes nothing, an invalid stored
//! object is named by its key, and TLS with client certificates and etcd users work.

use crate::etcd::{etcd_tests_enabled, hostfw_etcd, Certs, Etcd};
use crate::netns::{hostfw, HostfwRun, Netns, Workdir};
use std::fs;
use std::path::Path;

const PREFIX: &str = "/calico/resources/v3/projectcalico.org/";
const NODE: &str = "h1";

/// A set touching every kind the datastore holds for hosts.
const FILES: &str = r#"apiVersion: projectcalico.org/v3
kind: Tier
metadata:
  name: security
spec:
  order: 100
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: allow-ssh
  labels:
    team: net
spec:
  selector: role == 'web'
  order: 10
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports: [22, "8000:8080"]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: security.block-db
spec:
  tier: security
  selector: all()
  types: [Ingress, Egress]
  ingress:
  - action: Deny
    source:
      selector: role == 'db'
  egress:
  - action: Pass
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: h1-eth0
  labels:
    role: web
spec:
  node: h1
  interfaceName: eth0
  expectedIPs: ["198.51.100.1"]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata:
  name: office
  labels:
    zone: office
spec:
  nets: ["203.0.113.0/24"]
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata:
  name: quiet
spec:
  labelsToApply:
    quiet: "true"
---
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata:
  name: default
spec:
  failsafeInboundHostPorts: []
"#;

fn files_in(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = fs::read_dir(dir)
        .expect("list")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read_to_string(e.path()).expect("read"),
            )
        })
        .collect();
    out.sort();
    out
}

/// One namespace with etcd on its loopback and a work directory holding `FILES`.
struct Rig {
    ns: Netns,
    etcd: Etcd,
    work: Workdir,
}

impl Rig {
    fn new(tag: &str) -> Rig {
        let ns = Netns::new(tag);
        let etcd = Etcd::start(&ns, "127.0.0.1");
        Rig::with(ns, etcd)
    }

    fn with(ns: Netns, etcd: Etcd) -> Rig {
        let work = Workdir::new();
        work.write_policies(FILES);
        Rig { ns, etcd, work }
    }

    /// hostfw against this etcd.
    fn run(&self, args: &[&str]) -> HostfwRun {
        self.run_with(&self.work, args)
    }

    /// As `run`, with another work directory.
    fn run_with(&self, work: &Workdir, args: &[&str]) -> HostfwRun {
        hostfw_etcd(&self.ns, work, NODE, &self.etcd, args)
    }

    fn push(&self, dir: &Path, prune: bool) -> HostfwRun {
        let dir = dir.to_str().expect("UTF-8 path");
        let args: &[&str] = if prune {
            &["datastore", "push", "--prune", dir]
        } else {
            &["datastore", "push", dir]
        };
        self.run(args)
    }

    fn pull(&self, dir: &Path) -> HostfwRun {
        self.run(&["datastore", "pull", dir.to_str().expect("UTF-8 path")])
    }
}

#[test]
fn pull_then_push_then_pull_is_byte_identical() {
    if !etcd_tests_enabled() {
        return;
    }
    let rig = Rig::new("etcd-rt");
    let (etcd, work) = (&rig.etcd, &rig.work);
    let policies = work.policy_dir();
    let push = rig.push(&policies, false);
    assert_eq!(push.code, 0, "{push:?}");
    assert!(
        push.stdout.contains("7 created, 0 updated, 0 unchanged"),
        "{push:?}"
    );

    // Stored as calicoctl stores it: tiered backend name, the v3 name in the annotation.
    let stored = etcd
        .get(&format!("{PREFIX}globalnetworkpolicies/default.allow-ssh"))
        .expect("stored under the backend name");
    let v: serde_json::Value = serde_json::from_str(&stored).expect("json");
    assert_eq!(v["metadata"]["name"], "default.allow-ssh");
    assert_eq!(
        v["metadata"]["annotations"]["projectcalico.org/metadata"],
        r#"{"name":"allow-ssh"}"#
    );
    assert_eq!(v["metadata"]["labels"]["projectcalico.org/tier"], "default");
    assert!(v["metadata"]["uid"].as_str().is_some_and(|u| u.len() == 36));
    assert_eq!(v["spec"]["types"], serde_json::json!(["Ingress"]));

    let again = rig.push(&policies, false);
    assert!(
        again.stdout.contains("0 created, 0 updated, 7 unchanged"),
        "{again:?}"
    );

    let one = work.dir.path().join("pull-1");
    let two = work.dir.path().join("pull-2");
    let pull = rig.pull(&one);
    assert_eq!(pull.code, 0, "{pull:?}");
    let check = hostfw(
        &rig.ns,
        work,
        NODE,
        "legacy",
        &["check", one.to_str().unwrap()],
    );
    assert_eq!(check.code, 0, "pulled files pass check: {check:?}");
    let back = rig.push(&one, false);
    assert!(
        back.stdout.contains("0 created, 0 updated, 7 unchanged"),
        "{back:?}"
    );
    let pull = rig.pull(&two);
    assert_eq!(pull.code, 0, "{pull:?}");
    let (a, b) = (files_in(&one), files_in(&two));
    assert_eq!(a.len(), 7);
    assert_eq!(a, b, "pull → push → pull is byte-identical");

    // Prune removes what the files no longer name, and only that.
    fs::remove_file(one.join("globalnetworkset-office.yaml")).expect("rm");
    let prune = rig.push(&one, true);
    assert!(prune.stdout.contains("1 deleted"), "{prune:?}");
    assert_eq!(etcd.get(&format!("{PREFIX}globalnetworksets/office")), None);
    assert!(etcd.get(&format!("{PREFIX}tiers/security")).is_some());
}

/// The same policy as calicoctl v3.29 and v3.30+ store it, and as a file: one rendering.
#[test]
fn both_calicoctl_name_forms_render_like_the_file() {
    if !etcd_tests_enabled() {
        return;
    }
    let rig = Rig::new("etcd-names");
    let (ns, etcd, work) = (&rig.ns, &rig.etcd, &rig.work);
    let hep = r#"{"kind":"HostEndpoint","apiVersion":"projectcalico.org/v3","metadata":{"name":"h1-eth0","uid":"5e0c0a4e-1111-4222-8333-444455556666","creationTimestamp":"2026-01-01T00:00:00Z","labels":{"role":"web"}},"spec":{"node":"h1","interfaceName":"eth0","expectedIPs":["198.51.100.1"]}}"#;
    etcd.put(&format!("{PREFIX}hostendpoints/h1-eth0"), hep);
    let policy = |annotations: &str| {
        format!(
            r#"{{"kind":"GlobalNetworkPolicy","apiVersion":"projectcalico.org/v3","metadata":{{"name":"default.allow-ssh","uid":"9d4c2f0e-1111-4222-8333-444455556666","creationTimestamp":"2026-01-01T00:00:00Z","labels":{{"projectcalico.org/tier":"default"}}{annotations}}},"spec":{{"tier":"default","order":10,"selector":"role == 'web'","types":["Ingress"],"ingress":[{{"action":"Allow","protocol":"TCP","destination":{{"ports":[22]}}}}]}}}}"#
        )
    };
    let key = format!("{PREFIX}globalnetworkpolicies/default.allow-ssh");
    let render = |work: &Workdir| {
        let out = rig.run_with(work, &["render"]);
        assert_eq!(out.code, 0, "{out:?}");
        out.stdout
    };
    etcd.put(&key, &policy(""));
    let old = render(work);
    etcd.put(
        &key,
        &policy(r#","annotations":{"projectcalico.org/metadata":"{\"name\":\"allow-ssh\"}"}"#),
    );
    let new = render(work);
    assert_eq!(old, new, "v3.29 and v3.30+ forms render alike");

    let dir_work = Workdir::new();
    dir_work.write_policies(
        "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: h1-eth0\n  labels:\n    role: web\n\
         spec:\n  node: h1\n  interfaceName: eth0\n  expectedIPs: [\"198.51.100.1\"]\n---\n\
         apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: allow-ssh\nspec:\n  \
         order: 10\n  selector: role == 'web'\n  ingress:\n  - action: Allow\n    protocol: TCP\n    destination:\n      ports: [22]\n",
    );
    let from_files = hostfw(ns, &dir_work, NODE, "legacy", &["render"]);
    assert_eq!(from_files.code, 0, "{from_files:?}");
    let from_files = from_files.stdout;
    assert_eq!(new, from_files, "etcd and the directory render alike");
}

#[test]
fn an_invalid_push_writes_nothing_and_a_bad_stored_object_is_named_by_key() {
    if !etcd_tests_enabled() {
        return;
    }
    let rig = Rig::new("etcd-bad");
    let etcd = &rig.etcd;
    let policies = rig.work.policy_dir();
    fs::write(
        policies.join("zz-bad.yaml"),
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: bad\nspec:\n  \
         ingress:\n  - action: Alow\n",
    )
    .expect("write");
    let push = rig.push(&policies, false);
    assert_eq!(push.code, 1, "{push:?}");
    assert!(push.stderr.contains("zz-bad.yaml"), "{push:?}");
    assert!(etcd.keys(PREFIX).is_empty(), "nothing written");

    fs::remove_file(policies.join("zz-bad.yaml")).expect("rm");
    let push = rig.push(&policies, false);
    assert_eq!(push.code, 0, "{push:?}");
    let key = format!("{PREFIX}globalnetworkpolicies/default.broken");
    etcd.put(
        &key,
        r#"{"kind":"GlobalNetworkPolicy","apiVersion":"projectcalico.org/v3","metadata":{"name":"default.broken"},"spec":{"ingress":[{"action":"Alow"}]}}"#,
    );
    let check = rig.run(&["check"]);
    assert_eq!(check.code, 1, "{check:?}");
    assert!(
        check.stderr.contains(&key),
        "the diagnostic names the key: {check:?}"
    );
    assert!(
        check.stderr.contains("broken"),
        "and the resource: {check:?}"
    );
    // A push that does not fix it is refused too: hosts could not load the result.
    let push = rig.push(&policies, false);
    assert_eq!(push.code, 1, "{push:?}");
    assert!(push.stderr.contains(&key), "{push:?}");
}

#[test]
fn tls_with_client_certificates() {
    if !etcd_tests_enabled() {
        return;
    }
    let ns = Netns::new("etcd-tls");
    let certs = Certs::new("127.0.0.1");
    let etcd = Etcd::start_tls(&ns, "127.0.0.1", &certs);
    let rig = Rig::with(ns, etcd);
    let policies = rig.work.policy_dir();
    let push = rig.push(&policies, false);
    assert_eq!(push.code, 0, "{push:?}");
    let check = rig.run(&["check"]);
    assert_eq!(check.code, 0, "{check:?}");

    // Without the client certificate the server refuses us: exit 2 and a reason.
    let mut cmd = crate::etcd::hostfw_etcd_command(&rig.ns, &rig.work, NODE, &rig.etcd, &["check"]);
    cmd.env_remove("ETCD_CERT_FILE").env_remove("ETCD_KEY_FILE");
    let refused = crate::netns::run_hostfw(cmd);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("etcd"), "{refused:?}");
}

#[test]
fn username_and_password() {
    if !etcd_tests_enabled() {
        return;
    }
    let rig = Rig::new("etcd-auth");
    rig.etcd
        .ctl(&["user", "add", "root", "--new-user-password", "s3cret"]);
    rig.etcd.ctl(&["auth", "enable"]);
    let mut cmd = crate::etcd::hostfw_etcd_command(&rig.ns, &rig.work, NODE, &rig.etcd, &["check"]);
    let refused = crate::netns::run_hostfw(cmd);
    assert_eq!(refused.code, 2, "anonymous access is refused: {refused:?}");
    let policies = rig.work.policy_dir();
    cmd = crate::etcd::hostfw_etcd_command(
        &rig.ns,
        &rig.work,
        NODE,
        &rig.etcd,
        &["datastore", "push", policies.to_str().unwrap()],
    );
    cmd.env("ETCD_USERNAME", "root")
        .env("ETCD_PASSWORD", "s3cret");
    let push = crate::netns::run_hostfw(cmd);
    assert_eq!(push.code, 0, "{push:?}");
    assert!(push.stdout.contains("7 created"), "{push:?}");
}

/// A tier and `n` policies in it: `n + 1` creates.
fn many_policies(n: usize) -> String {
    let mut yaml = String::from(
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: security\nspec:\n  order: 100\n",
    );
    for i in 0..n {
        yaml.push_str(&format!(
            "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: \
             security.p{i:02}\nspec:\n  tier: security\n  selector: all()\n  ingress:\n  - action: Allow\n"
        ));
    }
    yaml
}

#[test]
fn a_push_is_one_transaction_refused_whole_above_the_server_limit_unless_split() {
    if !etcd_tests_enabled() {
        return;
    }
    let ns = Netns::new("etcd-txn");
    let etcd = Etcd::start_flags(&ns, "127.0.0.1", &["--max-txn-ops", "8"]);
    let rig = Rig::with(ns, etcd);
    rig.work.write_policies(&many_policies(12));
    let policies = rig.work.policy_dir();
    let dir = policies.to_str().expect("UTF-8 path");

    let whole = rig.run(&["datastore", "push", dir]);
    assert_eq!(whole.code, 2, "{whole:?}");
    for needle in [
        "13 operations",
        "--max-txn-ops",
        "--max-ops-per-txn",
        "nothing was written",
    ] {
        assert!(whole.stderr.contains(needle), "{needle}: {whole:?}");
    }
    assert!(rig.etcd.keys(PREFIX).is_empty(), "nothing written");

    let split = rig.run(&["datastore", "push", "--max-ops-per-txn", "8", dir]);
    assert_eq!(split.code, 0, "{split:?}");
    assert!(
        split.stderr.contains("in 2 transactions of at most 8"),
        "the split is warned about: {split:?}"
    );
    assert!(split.stdout.contains("13 created"), "{split:?}");
    assert_eq!(rig.etcd.keys(PREFIX).len(), 13);

    // Within the limit the default writes it whole, in one revision.
    let before = rig.etcd.revision();
    rig.work.write_policies(&many_policies(8));
    let pruned = rig.run(&["datastore", "push", "--prune", dir]);
    assert_eq!(pruned.code, 0, "{pruned:?}");
    assert!(pruned.stdout.contains("4 deleted"), "{pruned:?}");
    assert_eq!(rig.etcd.revision(), before + 1, "one transaction");
}

#[test]
fn a_change_between_plan_and_commit_fails_the_whole_push() {
    use hostfw::source::etcd::client::{self, Commit, EtcdError};
    use hostfw::source::etcd::config::EtcdConfig;
    use hostfw::source::etcd::plan::Write;
    if !etcd_tests_enabled() {
        return;
    }
    let rig = Rig::new("etcd-race");
    let key = |n: &str| format!("{PREFIX}globalnetworksets/{n}");
    let value = |n: &str| {
        format!(
            r#"{{"kind":"GlobalNetworkSet","apiVersion":"projectcalico.org/v3","metadata":{{"name":"{n}"}},"spec":{{"nets":["203.0.113.0/24"]}}}}"#
        )
    };
    rig.etcd.put(&key("held"), &value("held"));
    let cfg = EtcdConfig {
        endpoints: vec![rig.etcd.url.clone()],
        ..EtcdConfig::default()
    };
    let listed = cfg.clone();
    let listing = rig
        .ns
        .run_in(move || client::list_once(&listed).expect("list"));
    let held = listing.kvs[&key("held")].mod_revision;
    // The plan: four creates and an update of `held` guarded by the revision listed.
    let mut writes: Vec<Write> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| Write::Put {
            key: key(n),
            value: value(n),
            expect: None,
        })
        .collect();
    writes.push(Write::Put {
        key: key("held"),
        value: value("held").replace("203.0.113.0/24", "198.51.100.0/24"),
        expect: Some(held),
    });
    // Another writer changes `held` before the commit.
    rig.etcd.put(&key("held"), &value("held"));
    let result = rig.ns.run_in(move || {
        client::block_on(async {
            let mut c = client::connect(&cfg).await?;
            client::write(&mut c, &writes, Commit::Whole).await
        })
    });
    match result {
        Err(EtcdError::Conflict(text)) => {
            assert!(text.contains("nothing was written"), "{text}")
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(rig.etcd.keys(PREFIX), [key("held")], "no create landed");
    assert!(rig
        .etcd
        .get(&key("held"))
        .is_some_and(|v| v.contains("203.0.113.0/24")));
}
