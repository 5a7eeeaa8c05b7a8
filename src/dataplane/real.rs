//! The real dataplane: finds the iptables/ip6tables/ipset binaries for the chosen backend and
//! runs them (argv and stdin, never a shell, each call bounded in time). Also probes both
//! backends for auto-detection.

use super::backend::{self, BackendObservation, BackendProbe};
use super::exec::{self, timeout_for, FailureKind, CHILD_TIMEOUT};
use super::{filter_ipset_save, match_set_names, Backend, Dataplane, DataplaneError};
use crate::ruleset::restore::RestoreScript;
use crate::ruleset::{Family, TableName};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Save and restore binaries of one family.
#[derive(Debug, Clone)]
struct FamilyTools {
    save: PathBuf,
    restore: PathBuf,
    /// `iptables` itself (for `-S CHAIN`), when found.
    list: Option<PathBuf>,
}

/// Talks to the kernel through the iptables and ipset tools.
#[derive(Debug, Clone)]
pub struct RealDataplane {
    backend: Backend,
    /// Families whose tools exist (IPv4 always; IPv6 when ip6tables and kernel support exist).
    tools: BTreeMap<Family, FamilyTools>,
    ipset: Option<PathBuf>,
    /// Once set, running children are killed and no more start (`abandoned_when`).
    abandon: Arc<AtomicBool>,
}

/// `ip[6]tables-<backend>-<verb>`, falling back to `ip[6]tables-<verb>` (Felix's lookup).
fn find_tool(family: Family, backend: Backend, verb: &str) -> Result<PathBuf, DataplaneError> {
    let prefix = family.iptables();
    let specific = format!("{prefix}-{}-{verb}", backend.as_str());
    exec::find_in_path(&specific)
        .or_else(|| exec::find_in_path(&format!("{prefix}-{verb}")))
        .ok_or(DataplaneError::MissingBinary {
            program: specific,
            package: "iptables",
        })
}

fn family_tools(family: Family, backend: Backend) -> Result<FamilyTools, DataplaneError> {
    Ok(FamilyTools {
        save: find_tool(family, backend, "save")?,
        restore: find_tool(family, backend, "restore")?,
        list: exec::find_in_path(&format!("{}-{}", family.iptables(), backend.as_str()))
            .or_else(|| exec::find_in_path(family.iptables())),
    })
}

/// A file under the calling thread's `/proc/.../net` (`/proc/net` follows the main thread,
/// which may sit in another network namespace than the thread doing the work).
fn proc_net(file: &str) -> PathBuf {
    let thread = Path::new("/proc/thread-self/net");
    if thread.exists() {
        thread.join(file)
    } else {
        Path::new("/proc/net").join(file)
    }
}

/// The kernel has IPv6 (not built without it, not disabled with `ipv6.disable=1`).
fn kernel_has_ipv6() -> bool {
    proc_net("if_inet6").exists()
}

impl RealDataplane {
    /// Use `backend`. IPv4 tools are required; IPv6 is used when its tools and the kernel allow.
    pub fn new(backend: Backend) -> Result<RealDataplane, DataplaneError> {
        let mut tools = BTreeMap::new();
        tools.insert(Family::V4, family_tools(Family::V4, backend)?);
        if kernel_has_ipv6() {
            if let Ok(v6) = family_tools(Family::V6, backend) {
                tools.insert(Family::V6, v6);
            }
        }
        Ok(RealDataplane {
            backend,
            tools,
            ipset: exec::find_in_path("ipset"),
            abandon: Arc::default(),
        })
    }

    /// This dataplane, for work that `abandon` may call off: once it is set, the child running
    /// is killed and later calls fail at once (`DataplaneError::Cancelled`). The daemon's drift
    /// check reads through one, so an edit arriving meanwhile does not share the machine with
    /// save tools whose output nobody will use.
    pub fn abandoned_when(&self, abandon: Arc<AtomicBool>) -> RealDataplane {
        RealDataplane {
            abandon,
            ..self.clone()
        }
    }

    /// `exec::run`, unless abandoned.
    fn run(
        &self,
        program: &Path,
        args: &[&str],
        stdin: Option<&str>,
        timeout: std::time::Duration,
    ) -> Result<exec::Output, DataplaneError> {
        exec::run_unless(program, args, stdin, timeout, &self.abandon)
    }

    /// Use `configured` if given, else detect the backend from what the kernel holds.
    pub fn detect(configured: Option<Backend>) -> Result<RealDataplane, DataplaneError> {
        let backend = match configured {
            Some(choice) => choice,
            None => {
                let probe = probe();
                let chosen = backend::choose_backend(None, &probe)?;
                log::debug!("backend detection: {probe:?} -> {chosen}");
                chosen
            }
        };
        RealDataplane::new(backend)
    }

    /// `iptables-save -c` of every table (one process), as the tool printed it.
    pub fn save_all_with_counters(&self, family: Family) -> Result<String, DataplaneError> {
        let program = &self.tools(family)?.save;
        let out = exec::run(program, &["-c"], None, CHILD_TIMEOUT)?;
        if !out.status.success() {
            return Err(failure(program, &out, None));
        }
        Ok(out.stdout)
    }

    fn tools(&self, family: Family) -> Result<&FamilyTools, DataplaneError> {
        self.tools
            .get(&family)
            .ok_or_else(|| DataplaneError::MissingBinary {
                program: format!("{}-{}-save", family.iptables(), self.backend.as_str()),
                package: "iptables",
            })
    }
}

/// `iptables-restore` flags. `--wait`: queue behind another xtables writer instead of failing
/// at once. No `--wait-interval`: iptables 1.8.9 legacy ignores it and prints a notice
/// ("Ignoring deprecated --wait-interval option.") that then headed every error message, and
/// iptables-nft accepts and ignores it; older versions fall back to their default interval.
pub(crate) const RESTORE_ARGS: [&str; 3] = ["--noflush", "--wait", "10"];

/// Turn a failed child into the matching error; `input` is kept for restores.
fn failure(program: &Path, out: &exec::Output, input: Option<&str>) -> DataplaneError {
    let program = exec::display_name(program);
    let stderr = out.stderr.trim_end().to_string();
    let status = exec::describe_status(&out.status);
    match exec::classify(&stderr) {
        FailureKind::Permission => DataplaneError::PermissionDenied { program, stderr },
        FailureKind::Kernel => DataplaneError::KernelUnsupported { program, stderr },
        FailureKind::Busy => DataplaneError::Busy { program, stderr },
        FailureKind::Other => match input {
            Some(input) => DataplaneError::RestoreFailed {
                program,
                status,
                stderr,
                input: input.to_string(),
            },
            None => DataplaneError::SaveFailed {
                program,
                status,
                stderr,
            },
        },
    }
}

impl Dataplane for RealDataplane {
    fn sets_used_by_other_backend(&self) -> BTreeSet<String> {
        let other = match self.backend {
            Backend::Legacy => Backend::Nft,
            Backend::Nft => Backend::Legacy,
        };
        let mut names = BTreeSet::new();
        for family in Family::ALL {
            // Only the backend-specific tool: the generic name may be this very backend.
            let tool = format!("{}-{}-save", family.iptables(), other.as_str());
            let Some(program) = exec::find_in_path(&tool) else {
                continue;
            };
            // Unreadable means nothing of ours can be seen there; the flush goes ahead and the
            // kernel still refuses to destroy a set in use.
            if let Ok(out) = self.run(&program, &[], None, CHILD_TIMEOUT) {
                if out.status.success() {
                    names.extend(match_set_names(&out.stdout));
                }
            }
        }
        names
    }

    fn save(&self, family: Family, table: TableName) -> Result<String, DataplaneError> {
        let program = &self.tools(family)?.save;
        let out = self.run(program, &["-t", table.as_str()], None, CHILD_TIMEOUT)?;
        if !out.status.success() {
            return Err(failure(program, &out, None));
        }
        Ok(out.stdout)
    }

    fn save_tables(
        &self,
        family: Family,
        line: &mut dyn FnMut(&str),
    ) -> Result<(), DataplaneError> {
        // One process for all tables. Without `-t` the tools list only tables that exist, so
        // reading never loads a kernel module.
        let program = &self.tools(family)?.save;
        let out = exec::run_lines_unless(program, &[], CHILD_TIMEOUT, &self.abandon, line)?;
        if !out.status.success() {
            return Err(failure(program, &out, None));
        }
        Ok(())
    }

    fn save_chains(
        &self,
        family: Family,
        table: TableName,
        chains: &[&str],
    ) -> Result<Option<String>, DataplaneError> {
        let Some(program) = self.tools(family)?.list.as_ref() else {
            return Ok(None);
        };
        if self.backend != Backend::Nft {
            return Ok(None);
        }
        let mut out = format!("*{}\n", table.as_str());
        for chain in chains {
            let args = ["--wait", "10", "-t", table.as_str(), "-S", chain];
            let listed = self.run(program, &args, None, CHILD_TIMEOUT)?;
            if !listed.status.success() {
                return Err(failure(program, &listed, None));
            }
            super::listed_as_saved(&listed.stdout, &mut out);
        }
        out.push_str("COMMIT\n");
        Ok(Some(out))
    }

    fn restore(
        &self,
        family: Family,
        _table: TableName,
        input: &str,
    ) -> Result<(), DataplaneError> {
        let program = &self.tools(family)?.restore;
        let out = self.run(
            program,
            &RESTORE_ARGS,
            Some(input),
            timeout_for(input.len()),
        )?;
        if !out.status.success() {
            return Err(failure(program, &out, Some(input)));
        }
        Ok(())
    }

    fn restore_script(
        &self,
        family: Family,
        _table: TableName,
        script: &RestoreScript,
    ) -> Result<(), DataplaneError> {
        let program = &self.tools(family)?.restore;
        let timeout = timeout_for(script.approx_len());
        let out = exec::run_script_unless(program, &RESTORE_ARGS, script, timeout, &self.abandon)?;
        if !out.status.success() {
            // The text is made again only to quote the line the tool refused.
            return Err(failure(program, &out, Some(&script.text())));
        }
        Ok(())
    }

    fn ipset_save(&self) -> Result<String, DataplaneError> {
        // Without the tool or the kernel's ip_set support none of our sets can exist.
        let Some(program) = &self.ipset else {
            return Ok(String::new());
        };
        let out = self.run(program, &["save"], None, CHILD_TIMEOUT)?;
        if !out.status.success() {
            return match failure(program, &out, None) {
                DataplaneError::KernelUnsupported { .. } => Ok(String::new()),
                other => Err(other),
            };
        }
        Ok(filter_ipset_save(&out.stdout))
    }

    fn ipset_restore(&self, input: &str) -> Result<(), DataplaneError> {
        let program = self.ipset.as_ref().ok_or(DataplaneError::MissingBinary {
            program: "ipset".into(),
            package: "ipset",
        })?;
        let out = self.run(
            program,
            &["restore", "-exist"],
            Some(input),
            timeout_for(input.len()),
        )?;
        if !out.status.success() {
            return Err(failure(program, &out, Some(input)));
        }
        Ok(())
    }

    fn backend(&self) -> Backend {
        self.backend
    }

    fn supports(&self, family: Family) -> bool {
        self.tools.contains_key(&family)
    }

    fn save_counters(&self, family: Family, table: TableName) -> Result<String, DataplaneError> {
        let program = &self.tools(family)?.save;
        let out = self.run(program, &["-c", "-t", table.as_str()], None, CHILD_TIMEOUT)?;
        if !out.status.success() {
            return Err(failure(program, &out, None));
        }
        Ok(out.stdout)
    }
}

/// Look at both backends the way Felix does, without loading kernel modules: legacy is probed
/// only when the ip_tables module is already loaded (`/proc/net/ip_tables_names` exists), and a
/// save without `-t` lists only tables that already exist.
pub fn probe() -> BackendProbe {
    BackendProbe {
        legacy: observe_backend(Backend::Legacy),
        nft: observe_backend(Backend::Nft),
        system_default: exec::find_in_path("iptables")
            .and_then(|p| exec::run(&p, &["--version"], None, CHILD_TIMEOUT).ok())
            .and_then(|out| backend::parse_version(&out.stdout)),
    }
}

fn observe_backend(backend: Backend) -> Option<BackendObservation> {
    let mut text = String::new();
    let mut probed = false;
    for family in Family::ALL {
        if backend == Backend::Legacy && !proc_net(family.legacy_tables_proc_file()).exists() {
            continue;
        }
        let name = format!("{}-{}-save", family.iptables(), backend.as_str());
        let Some(program) = exec::find_in_path(&name) else {
            continue;
        };
        probed = true;
        if let Ok(out) = exec::run(&program, &[], None, CHILD_TIMEOUT) {
            if out.status.success() {
                text.push_str(&out.stdout);
            }
        }
    }
    probed.then(|| backend::observe(&text))
}
