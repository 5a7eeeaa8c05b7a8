//! Choosing legacy vs nft from what was observed (pure). The probing that produces the
//! observations lives in `real.rs`; this file decides, so every case is a table-driven test.
//!
//! Order (Felix's auto-detection, `DetectBackend` in felix/iptables/feature_detect.go, plus
//! hostfw's two changes):
//! 1. an explicit choice wins;
//! 2. kube-proxy/kubelet's hint chains in nft mangle, then in legacy mangle;
//! 3. hostfw/Felix `cali-` state: in both → refuse (changed: Felix would guess); in one → that one;
//! 4. rules of anyone: in one → that one; in both → the one with more (legacy on a tie, as Felix);
//! 5. no rules anywhere → the system default `iptables --version` reports (changed: Felix picks
//!    legacy).

use super::Backend;

/// What one backend's tables hold, as far as detection cares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendObservation {
    /// `KUBE-IPTABLES-HINT` or `KUBE-KUBELET-CANARY` in the mangle table (either family).
    pub kube_hint: bool,
    /// Rule lines (`-A ...`) in every table of both families.
    pub rules: usize,
    /// `cali-` chains plus rules carrying a `cali:` hash, in every table of both families.
    pub cali_state: usize,
}

/// Everything detection looked at. `None`: that backend could not be probed (tools missing, or
/// legacy probing skipped because the ip_tables module is not loaded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendProbe {
    pub legacy: Option<BackendObservation>,
    pub nft: Option<BackendObservation>,
    /// What plain `iptables --version` says it is, if it could be run.
    pub system_default: Option<Backend>,
}

/// Detection could not decide on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error(
        "both iptables backends hold hostfw/Calico state (legacy: {legacy} cali- chains and rules, \
         nft: {nft}); choose one with --backend legacy|nft, HOSTFW_IPTABLES_BACKEND, or \
         FelixConfiguration iptablesBackend, then run `hostfw flush` with the other backend"
    )]
    Ambiguous { legacy: usize, nft: usize },
    #[error(
        "no iptables tools found: install them (apt-get install iptables), or choose a backend \
         with --backend legacy|nft"
    )]
    NoTools,
}

/// Decide the backend. `configured` is the explicit choice (flag, environment, or
/// FelixConfiguration), `None` for auto.
pub fn choose_backend(
    configured: Option<Backend>,
    probe: &BackendProbe,
) -> Result<Backend, BackendError> {
    if let Some(choice) = configured {
        return Ok(choice);
    }
    let legacy = probe.legacy.unwrap_or_default();
    let nft = probe.nft.unwrap_or_default();
    if nft.kube_hint {
        return Ok(Backend::Nft);
    }
    if legacy.kube_hint {
        return Ok(Backend::Legacy);
    }
    match (legacy.cali_state > 0, nft.cali_state > 0) {
        (true, true) => {
            return Err(BackendError::Ambiguous {
                legacy: legacy.cali_state,
                nft: nft.cali_state,
            })
        }
        (true, false) => return Ok(Backend::Legacy),
        (false, true) => return Ok(Backend::Nft),
        (false, false) => {}
    }
    match (legacy.rules, nft.rules) {
        (0, 0) => {}
        (l, n) if l >= n => return Ok(Backend::Legacy),
        _ => return Ok(Backend::Nft),
    }
    if let Some(default) = probe.system_default {
        return Ok(default);
    }
    // No `iptables` alternative: use whichever variant exists, preferring nft (the default of
    // every current distribution).
    match (probe.nft.is_some(), probe.legacy.is_some()) {
        (true, _) => Ok(Backend::Nft),
        (false, true) => Ok(Backend::Legacy),
        (false, false) => Err(BackendError::NoTools),
    }
}

/// Count what detection needs in a full `iptables-save` output.
pub(crate) fn observe(save_text: &str) -> BackendObservation {
    let mut obs = BackendObservation::default();
    for line in save_text.lines() {
        if line.starts_with("-A ") || line.starts_with("-I ") {
            obs.rules += 1;
            if line.contains("cali:") {
                obs.cali_state += 1;
            }
        } else if line.starts_with(":cali-") {
            obs.cali_state += 1;
        }
        if line.contains("KUBE-IPTABLES-HINT") || line.contains("KUBE-KUBELET-CANARY") {
            obs.kube_hint = true;
        }
    }
    obs
}

/// `iptables v1.8.9 (nf_tables)` → nft, `(legacy)` → legacy; before 1.8 there was no suffix and
/// only legacy existed.
pub(crate) fn parse_version(text: &str) -> Option<Backend> {
    let line = text.lines().next()?;
    if !line.starts_with("iptables v") && !line.starts_with("ip6tables v") {
        return None;
    }
    if line.contains("(nf_tables)") {
        Some(Backend::Nft)
    } else {
        Some(Backend::Legacy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Backend::{Legacy, Nft};

    fn obs(kube_hint: bool, rules: usize, cali_state: usize) -> Option<BackendObservation> {
        Some(BackendObservation {
            kube_hint,
            rules,
            cali_state,
        })
    }

    /// (name, configured, legacy, nft, system default, expected)
    type Case = (
        &'static str,
        Option<Backend>,
        Option<BackendObservation>,
        Option<BackendObservation>,
        Option<Backend>,
        Result<Backend, BackendError>,
    );

    #[test]
    fn decision_table() {
        let empty = obs(false, 0, 0);
        let cases: Vec<Case> = vec![
            (
                "explicit legacy beats everything",
                Some(Legacy),
                obs(false, 0, 0),
                obs(true, 9, 9),
                Some(Nft),
                Ok(Legacy),
            ),
            (
                "explicit nft beats ambiguity",
                Some(Nft),
                obs(false, 5, 5),
                obs(false, 5, 5),
                None,
                Ok(Nft),
            ),
            (
                "kube hint in nft",
                None,
                obs(true, 50, 0),
                obs(true, 3, 0),
                Some(Legacy),
                Ok(Nft),
            ),
            (
                "kube hint in legacy only",
                None,
                obs(true, 1, 0),
                obs(false, 40, 0),
                Some(Nft),
                Ok(Legacy),
            ),
            (
                "kube hint beats cali state",
                None,
                obs(false, 10, 10),
                obs(true, 1, 0),
                None,
                Ok(Nft),
            ),
            (
                "cali state in both refuses",
                None,
                obs(false, 12, 4),
                obs(false, 30, 7),
                Some(Nft),
                Err(BackendError::Ambiguous { legacy: 4, nft: 7 }),
            ),
            (
                "cali state in legacy only",
                None,
                obs(false, 3, 3),
                obs(false, 100, 0),
                Some(Nft),
                Ok(Legacy),
            ),
            (
                "cali state in nft only",
                None,
                obs(false, 100, 0),
                obs(false, 3, 3),
                Some(Legacy),
                Ok(Nft),
            ),
            (
                "foreign rules in legacy only",
                None,
                obs(false, 4, 0),
                empty,
                Some(Nft),
                Ok(Legacy),
            ),
            (
                "foreign rules in nft only",
                None,
                empty,
                obs(false, 4, 0),
                Some(Legacy),
                Ok(Nft),
            ),
            (
                "more rules in nft",
                None,
                obs(false, 2, 0),
                obs(false, 9, 0),
                Some(Legacy),
                Ok(Nft),
            ),
            (
                "tie goes to legacy like Felix",
                None,
                obs(false, 5, 0),
                obs(false, 5, 0),
                Some(Nft),
                Ok(Legacy),
            ),
            (
                "no rules: system default nft",
                None,
                empty,
                empty,
                Some(Nft),
                Ok(Nft),
            ),
            (
                "no rules: system default legacy",
                None,
                empty,
                empty,
                Some(Legacy),
                Ok(Legacy),
            ),
            (
                "legacy not probed, nft empty: default",
                None,
                None,
                empty,
                Some(Legacy),
                Ok(Legacy),
            ),
            (
                "legacy not probed, nft has rules",
                None,
                None,
                obs(false, 2, 0),
                Some(Legacy),
                Ok(Nft),
            ),
            (
                "no default, only legacy tools",
                None,
                empty,
                None,
                None,
                Ok(Legacy),
            ),
            ("no default, both tools", None, empty, empty, None, Ok(Nft)),
            (
                "no tools at all",
                None,
                None,
                None,
                None,
                Err(BackendError::NoTools),
            ),
        ];
        for (name, configured, legacy, nft, system_default, expected) in cases {
            let probe = BackendProbe {
                legacy,
                nft,
                system_default,
            };
            assert_eq!(choose_backend(configured, &probe), expected, "case: {name}");
        }
    }

    #[test]
    fn the_refusal_says_what_was_found_and_how_to_choose() {
        let message = BackendError::Ambiguous { legacy: 4, nft: 7 }.to_string();
        for needle in [
            "legacy: 4",
            "nft: 7",
            "--backend",
            "HOSTFW_IPTABLES_BACKEND",
        ] {
            assert!(message.contains(needle), "{needle} missing from: {message}");
        }
    }

    #[test]
    fn observe_counts_rules_cali_state_and_hints() {
        let text = "# Generated by iptables-nft-save v1.8.9\n\
                    *mangle\n\
                    :PREROUTING ACCEPT [0:0]\n\
                    :KUBE-IPTABLES-HINT - [0:0]\n\
                    :cali-PREROUTING - [0:0]\n\
                    -A PREROUTING -m comment --comment \"cali:6gwbT8clXdHdC1b1\" -j cali-PREROUTING\n\
                    -A PREROUTING -s 203.0.113.0/24 -j ACCEPT\n\
                    COMMIT\n";
        assert_eq!(
            observe(text),
            BackendObservation {
                kube_hint: true,
                rules: 2,
                cali_state: 2,
            }
        );
        assert_eq!(observe(""), BackendObservation::default());
    }

    #[test]
    fn version_suffix_names_the_backend() {
        assert_eq!(parse_version("iptables v1.8.9 (nf_tables)\n"), Some(Nft));
        assert_eq!(parse_version("iptables v1.8.9 (legacy)\n"), Some(Legacy));
        assert_eq!(parse_version("iptables v1.6.1\n"), Some(Legacy));
        assert_eq!(parse_version("something else"), None);
    }
}
