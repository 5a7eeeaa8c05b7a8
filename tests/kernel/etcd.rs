//! A real etcd for the datastore tests: Debian's `etcd` started inside a test network
//! namespace with a temporary data directory, optionally with TLS and client certificates
//! (made with `openssl`), stopped and started again on the same data, killed on drop.
//!
//! Gate: `etcd_tests_enabled()` is `kernel_tests_enabled()` plus the etcd, etcdctl (and for TLS
//! openssl) binaries; under `CI=true` a missing binary or an etcd that does not come up fails
//! the test.

use crate::netns::{
    hostfw_command, kernel_tests_enabled, must, run_hostfw, HostfwRun, Netns, Workdir,
};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long etcd may take to answer its health check after starting.
const START_WITHIN: Duration = Duration::from_secs(20);

fn have(binary: &str) -> bool {
    Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// True when the etcd tests can run; false (said loudly) when not and not in CI; panics in CI.
pub fn etcd_tests_enabled() -> bool {
    if !kernel_tests_enabled() {
        return false;
    }
    let missing: Vec<&str> = ["etcd", "etcdctl", "openssl"]
        .into_iter()
        .filter(|b| !have(b))
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but the etcd tests cannot run: missing {missing:?} (make deps)");
    }
    eprintln!("\n*** skipped: etcd test needs {missing:?} (make deps) ***\n");
    false
}

/// Certificates for a TLS etcd: a CA, the server's (for `ip`), and a client's.
pub struct Certs {
    pub dir: tempfile::TempDir,
}

impl Certs {
    /// Make a CA and sign a server certificate for `ip` and a client certificate with it.
    pub fn new(ip: &str) -> Certs {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let ssl = |args: &[&str]| {
            must(Command::new("openssl").current_dir(d).args(args));
        };
        // A P-256 key and either a self-signed CA certificate or a request to sign.
        let new_key = |name: &str, out: &str, extra: &[&str]| {
            let (key, out, subj) = (
                format!("{name}.key"),
                out.to_string(),
                format!("/CN={name}"),
            );
            let mut args = vec![
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ];
            args.extend(["-nodes", "-keyout", &key, "-out", &out, "-subj", &subj]);
            args.extend(extra);
            ssl(&args);
        };
        new_key("ca", "ca.pem", &["-x509", "-days", "2"]);
        let ext = format!("subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth,clientAuth\n");
        std::fs::write(d.join("ext.cnf"), ext).expect("ext");
        for who in ["server", "client"] {
            new_key(who, &format!("{who}.csr"), &[]);
            ssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{who}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{who}.pem"),
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ]);
        }
        Certs { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// One etcd member in a namespace.
pub struct Etcd {
    ns: String,
    pub url: String,
    ip: String,
    data: tempfile::TempDir,
    child: Option<Child>,
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
    /// Further server flags (limits a test needs).
    flags: Vec<String>,
}

impl Etcd {
    /// Start etcd in `ns` listening on `ip` port 2379 (plain HTTP).
    pub fn start(ns: &Netns, ip: &str) -> Etcd {
        Self::start_with(ns, ip, None, &[])
    }

    /// As `start`, with further server flags (e.g. `--max-txn-ops 8`).
    pub fn start_flags(ns: &Netns, ip: &str, flags: &[&str]) -> Etcd {
        Self::start_with(ns, ip, None, flags)
    }

    /// Start etcd with TLS: the server certificate of `certs`, clients must present one
    /// signed by its CA.
    pub fn start_tls(ns: &Netns, ip: &str, certs: &Certs) -> Etcd {
        Self::start_with(
            ns,
            ip,
            Some((
                certs.path("ca.pem"),
                certs.path("server.pem"),
                certs.path("server.key"),
            )),
            &[],
        )
    }

    fn start_with(
        ns: &Netns,
        ip: &str,
        tls: Option<(PathBuf, PathBuf, PathBuf)>,
        flags: &[&str],
    ) -> Etcd {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut etcd = Etcd {
            ns: ns.name.clone(),
            url: format!("{scheme}://{ip}:2379"),
            ip: ip.to_string(),
            data: tempfile::tempdir().expect("etcd data dir"),
            child: None,
            tls,
            flags: flags.iter().map(|f| f.to_string()).collect(),
        };
        etcd.resume();
        etcd
    }

    /// Start again on the same data directory (after `stop`).
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "etcd already running");
        let peer = format!("http://{}:2380", self.ip);
        let log = std::fs::File::create(self.data.path().join("etcd.log")).expect("log");
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.ns,
            "etcd",
            "--name",
            "t",
            "--data-dir",
        ])
        .arg(self.data.path().join("member"))
        .args(["--listen-client-urls", &self.url])
        .args(["--advertise-client-urls", &self.url])
        .args(["--listen-peer-urls", &peer])
        .args(["--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("t={peer}")])
        .args(["--logger", "zap", "--log-level", "error"])
        .args(&self.flags)
        .stdout(Stdio::null())
        .stderr(log);
        if let Some((ca, cert, key)) = &self.tls {
            cmd.arg("--client-cert-auth")
                .arg("--trusted-ca-file")
                .arg(ca)
                .arg("--cert-file")
                .arg(cert)
                .arg("--key-file")
                .arg(key);
        }
        self.child = Some(cmd.spawn().expect("start etcd"));
        let deadline = Instant::now() + START_WITHIN;
        loop {
            let out = self.ctl_output(&["endpoint", "health"]);
            if out.status.success() {
                return;
            }
            if Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(self.data.path().join("etcd.log")).unwrap_or_default();
                panic!(
                    "etcd did not become healthy within {START_WITHIN:?}:\n{}\n--- etcd log ---\n{log}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kill etcd (the data stays for `resume`).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn ctl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.ns,
            "etcdctl",
            "--endpoints",
            &self.url,
        ])
        .env("ETCDCTL_API", "3");
        if let Some((ca, _, _)) = &self.tls {
            let client = |n: &str| ca.with_file_name(n);
            cmd.arg("--cacert")
                .arg(ca)
                .arg("--cert")
                .arg(client("client.pem"))
                .arg("--key")
                .arg(client("client.key"));
        }
        cmd.args(args);
        cmd
    }

    fn ctl_output(&self, args: &[&str]) -> std::process::Output {
        self.ctl_command(args).output().expect("run etcdctl")
    }

    /// `etcdctl ARGS`, panicking on failure; stdout.
    pub fn ctl(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&must(&mut self.ctl_command(args)).stdout).into_owned()
    }

    pub fn put(&self, key: &str, value: &str) {
        self.ctl(&["put", key, value]);
    }

    /// The value at `key`, if any.
    pub fn get(&self, key: &str) -> Option<String> {
        let out = self.ctl(&["get", key, "--print-value-only"]);
        let v = out.trim_end_matches('\n');
        (!v.is_empty()).then(|| v.to_string())
    }

    /// Every key under `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.ctl(&["get", prefix, "--prefix", "--keys-only"])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// The current revision.
    pub fn revision(&self) -> i64 {
        let out = self.ctl(&["endpoint", "status", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("status json");
        v[0]["Status"]["header"]["revision"]
            .as_i64()
            .expect("revision")
    }

    /// Compact the history up to the current revision.
    pub fn compact(&self) {
        let rev = self.revision();
        self.ctl(&["compact", &rev.to_string(), "--physical"]);
    }

    /// The flags hostfw needs to reach this etcd (TLS files come from `hostfw_env`).
    pub fn hostfw_args(&self) -> Vec<String> {
        ["--datastore-type", "etcdv3", "--etcd-endpoints", &self.url]
            .map(String::from)
            .to_vec()
    }

    /// The environment hostfw reads for TLS, as calicoctl does.
    pub fn hostfw_env(&self) -> Vec<(String, PathBuf)> {
        let Some((ca, _, _)) = &self.tls else {
            return Vec::new();
        };
        vec![
            ("ETCD_CA_CERT_FILE".to_string(), ca.clone()),
            (
                "ETCD_CERT_FILE".to_string(),
                ca.with_file_name("client.pem"),
            ),
            ("ETCD_KEY_FILE".to_string(), ca.with_file_name("client.key")),
        ]
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `hostfw ARGS` inside `ns` against `etcd` (its flags and TLS environment), with `work`'s
/// directories and no calicoctl settings from the machine running the tests.
pub fn hostfw_etcd(
    ns: &Netns,
    work: &Workdir,
    node: &str,
    etcd: &Etcd,
    args: &[&str],
) -> HostfwRun {
    run_hostfw(hostfw_etcd_command(ns, work, node, etcd, args))
}

/// The command `hostfw_etcd` runs, not yet started.
pub fn hostfw_etcd_command(
    ns: &Netns,
    work: &Workdir,
    node: &str,
    etcd: &Etcd,
    args: &[&str],
) -> Command {
    let mut all: Vec<String> = etcd.hostfw_args();
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let mut cmd = hostfw_command(ns, work, node, "legacy", &all);
    for var in [
        "DATASTORE_TYPE",
        "HOSTFW_DATASTORE_TYPE",
        "ETCD_ENDPOINTS",
        "ETCD_CA_CERT_FILE",
        "ETCD_CERT_FILE",
        "ETCD_KEY_FILE",
        "ETCD_USERNAME",
        "ETCD_PASSWORD",
    ] {
        cmd.env_remove(var);
    }
    cmd.env(
        "HOSTFW_CALICOCTL_CONFIG",
        work.dir.path().join("no-calicoctl.cfg"),
    );
    for (k, v) in etcd.hostfw_env() {
        cmd.env(k, v);
    }
    cmd
}
