//! Which datastore, and how to reach etcd: command-line values, then the environment variables
//! calicoctl reads, then calicoctl's own config file (a CalicoAPIConfig), so one configuration
//! serves both tools. Pure: the caller passes the environment lookup and the file's text.

use crate::policy::parse;
use std::path::PathBuf;

/// calicoctl's default config file.
pub const CALICOCTL_CFG: &str = "/etc/calico/calicoctl.cfg";

/// Where policies come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DatastoreType {
    /// The policy directory (the default).
    #[default]
    Directory,
    /// Calico's etcd v3 datastore.
    Etcdv3,
}

impl DatastoreType {
    pub fn as_str(self) -> &'static str {
        match self {
            DatastoreType::Directory => "directory",
            DatastoreType::Etcdv3 => "etcdv3",
        }
    }
}

/// How to reach etcd.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct EtcdConfig {
    /// `http://` or `https://` URLs.
    pub endpoints: Vec<String>,
    pub ca_cert_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for EtcdConfig {
    // The password never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("ca_cert_file", &self.ca_cert_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// What the command line said (clap has already merged the HOSTFW_* variables).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    pub datastore_type: Option<DatastoreType>,
    pub endpoints: Option<String>,
}

/// The resolved choice: the datastore, and for etcd how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Datastore {
    pub kind: DatastoreType,
    pub etcd: EtcdConfig,
}

/// The fields of a CalicoAPIConfig's spec hostfw reads.
const CFG_FIELDS: [&str; 7] = [
    "datastoreType",
    "etcdEndpoints",
    "etcdCACertFile",
    "etcdCertFile",
    "etcdKeyFile",
    "etcdUsername",
    "etcdPassword",
];

/// Read a CalicoAPIConfig's spec fields (YAML or JSON). Errors say what is wrong with the file.
pub fn parse_calicoctl_cfg(path: &str, text: &str) -> Result<Vec<(String, String)>, String> {
    let (resources, diags) = parse::parse(path, text);
    if let Some(d) = diags.iter().find(|d| d.is_error()) {
        return Err(format!("{path}: {}", d.message));
    }
    let Some(r) = resources.first() else {
        return Err(format!("{path}: empty"));
    };
    if let Some(kind) = r.node.get_text("kind") {
        if kind != "CalicoAPIConfig" {
            return Err(format!(
                "{path}: kind is `{kind}`, expected CalicoAPIConfig"
            ));
        }
    }
    let Some(spec) = r.node.get("spec") else {
        return Ok(Vec::new());
    };
    Ok(CFG_FIELDS
        .iter()
        .filter_map(|f| {
            spec.get_text(f)
                .filter(|v| !v.is_empty())
                .map(|v| (f.to_string(), v.to_string()))
        })
        .collect())
}

/// Resolve the datastore: flags first, then `env` (HOSTFW_DATASTORE_TYPE is clap's; here
/// calicoctl's DATASTORE_TYPE and ETCD_*), then the config file's fields. A datastore type
/// hostfw does not serve (`kubernetes`) named by calicoctl's settings leaves the directory in
/// use, with the reason returned as a note; named on hostfw's own flag it is an error (clap
/// refuses it before this runs).
pub fn resolve(
    flags: &Flags,
    env: &dyn Fn(&str) -> Option<String>,
    cfg: &[(String, String)],
) -> Result<(Datastore, Option<String>), String> {
    let from_cfg = |field: &str| cfg.iter().find(|(k, _)| k == field).map(|(_, v)| v.clone());
    let pick = |var: &str, field: &str| {
        env(var)
            .filter(|v| !v.is_empty())
            .or_else(|| from_cfg(field))
    };
    let mut note = None;
    let kind = match flags.datastore_type {
        Some(k) => k,
        None => match pick("DATASTORE_TYPE", "datastoreType").as_deref() {
            None => DatastoreType::Directory,
            Some("etcdv3") => DatastoreType::Etcdv3,
            Some("directory") => DatastoreType::Directory,
            Some(other) => {
                note = Some(format!(
                    "calicoctl's datastore type `{other}` is not one hostfw reads; using the policy directory"
                ));
                DatastoreType::Directory
            }
        },
    };
    let endpoints = flags
        .endpoints
        .clone()
        .or_else(|| pick("ETCD_ENDPOINTS", "etcdEndpoints"));
    let etcd = EtcdConfig {
        endpoints: endpoints
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect(),
        ca_cert_file: pick("ETCD_CA_CERT_FILE", "etcdCACertFile").map(PathBuf::from),
        cert_file: pick("ETCD_CERT_FILE", "etcdCertFile").map(PathBuf::from),
        key_file: pick("ETCD_KEY_FILE", "etcdKeyFile").map(PathBuf::from),
        username: pick("ETCD_USERNAME", "etcdUsername"),
        password: pick("ETCD_PASSWORD", "etcdPassword"),
    };
    if kind == DatastoreType::Etcdv3 {
        check(&etcd)?;
    }
    Ok((Datastore { kind, etcd }, note))
}

/// Whether `etcd` is complete enough to connect with: endpoints given as URLs, certificate and
/// key together, user and password together.
pub fn check(etcd: &EtcdConfig) -> Result<(), String> {
    if etcd.endpoints.is_empty() {
        return Err(
            "the etcdv3 datastore needs --etcd-endpoints (ETCD_ENDPOINTS, or etcdEndpoints in calicoctl.cfg)"
                .to_string(),
        );
    }
    if let Some(bad) = etcd
        .endpoints
        .iter()
        .find(|e| !(e.starts_with("http://") || e.starts_with("https://")))
    {
        return Err(format!(
            "etcd endpoint `{bad}` must be an http:// or https:// URL"
        ));
    }
    if etcd.cert_file.is_some() != etcd.key_file.is_some() {
        return Err("a client certificate needs both ETCD_CERT_FILE and ETCD_KEY_FILE".to_string());
    }
    if etcd.username.is_some() != etcd.password.is_some() {
        return Err("etcd authentication needs both ETCD_USERNAME and ETCD_PASSWORD".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    const CFG: &str =
        "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata:\nspec:\n  \
                       datastoreType: etcdv3\n  etcdEndpoints: https://a:2379, https://b:2379\n  \
                       etcdCACertFile: /ca.pem\n  etcdCertFile: /c.pem\n  etcdKeyFile: /k.pem\n";

    #[test]
    fn flags_beat_environment_beat_config_file() {
        let cfg = parse_calicoctl_cfg("calicoctl.cfg", CFG).expect("cfg");
        let (ds, note) = resolve(&Flags::default(), &env_of(&[]), &cfg).expect("resolve");
        assert_eq!(note, None);
        assert_eq!(ds.kind, DatastoreType::Etcdv3);
        assert_eq!(ds.etcd.endpoints, ["https://a:2379", "https://b:2379"]);
        assert_eq!(ds.etcd.ca_cert_file, Some(PathBuf::from("/ca.pem")));

        let env = env_of(&[
            ("ETCD_ENDPOINTS", "http://e:2379"),
            ("ETCD_KEY_FILE", "/k2"),
        ]);
        let (ds, _) = resolve(&Flags::default(), &env, &cfg).expect("resolve");
        assert_eq!(ds.etcd.endpoints, ["http://e:2379"]);
        assert_eq!(ds.etcd.key_file, Some(PathBuf::from("/k2")));

        let flags = Flags {
            datastore_type: Some(DatastoreType::Directory),
            endpoints: Some("http://f:1".into()),
        };
        let (ds, _) = resolve(&flags, &env, &cfg).expect("resolve");
        assert_eq!(ds.kind, DatastoreType::Directory);
        assert_eq!(ds.etcd.endpoints, ["http://f:1"]);
    }

    #[test]
    fn the_directory_is_the_default_and_kubernetes_is_a_note() {
        let (ds, note) = resolve(&Flags::default(), &env_of(&[]), &[]).expect("resolve");
        assert_eq!(ds.kind, DatastoreType::Directory);
        assert_eq!(note, None);
        let env = env_of(&[("DATASTORE_TYPE", "kubernetes")]);
        let (ds, note) = resolve(&Flags::default(), &env, &[]).expect("resolve");
        assert_eq!(ds.kind, DatastoreType::Directory);
        assert!(note.expect("note").contains("kubernetes"));
    }

    #[test]
    fn incomplete_etcd_settings_are_refused() {
        let cases: &[(&'static [(&'static str, &'static str)], &str)] = &[
            (&[("DATASTORE_TYPE", "etcdv3")], "needs --etcd-endpoints"),
            (
                &[("DATASTORE_TYPE", "etcdv3"), ("ETCD_ENDPOINTS", "e:2379")],
                "http:// or https://",
            ),
            (
                &[
                    ("DATASTORE_TYPE", "etcdv3"),
                    ("ETCD_ENDPOINTS", "https://e:2379"),
                    ("ETCD_CERT_FILE", "/c"),
                ],
                "both ETCD_CERT_FILE and ETCD_KEY_FILE",
            ),
            (
                &[
                    ("DATASTORE_TYPE", "etcdv3"),
                    ("ETCD_ENDPOINTS", "https://e:2379"),
                    ("ETCD_USERNAME", "u"),
                ],
                "both ETCD_USERNAME and ETCD_PASSWORD",
            ),
        ];
        for (vars, message) in cases {
            let err = resolve(&Flags::default(), &env_of(vars), &[]).expect_err(message);
            assert!(err.contains(message), "{err}");
        }
    }

    #[test]
    fn a_config_file_of_another_kind_is_refused() {
        let err = parse_calicoctl_cfg("c", "kind: Tier\nspec: {}\n").expect_err("kind");
        assert!(err.contains("expected CalicoAPIConfig"), "{err}");
    }

    #[test]
    fn the_password_is_not_printed() {
        let c = EtcdConfig {
            password: Some("hunter2".into()),
            ..EtcdConfig::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
