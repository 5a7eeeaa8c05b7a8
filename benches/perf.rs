//! Performance harness binary (harness = false) driven by `scripts/bench.sh`. Owns the
//! in-process measurements (load+validate+resolve, render, peak RSS) and the policy generator's
//! command line; the kernel-facing stages (apply, floors, daemon) live in the script, which runs
//! the real `hostfw` binary. Must not touch the kernel.
//!
//! Usage (after `cargo bench --bench perf --no-run`, or through cargo with `--`):
//! - `perf gen <S|M|L> <DIR> [SEED]`: write a policy directory;
//! - `perf stages <DIR> <ENDPOINTS> <REPS>`: time load+validate+resolve and render (both families)
//!   `REPS` times after one warm-up; prints `stage <name> <ms>...` lines and `rss_kb <VmHWM>`;
//! - `perf daemon-load <DIR> <REPS>`: time the daemon engine's whole load (read, validate,
//!   resolve against this host's interfaces, render, lockout guard) `REPS` times after one
//!   warm-up; prints `stage daemon_load <ms>...`. Writes only to a temporary run directory.
//!
//! Without arguments (as under `cargo test --all-targets`) it is a smoke test: it generates S
//! and M and fails unless they load with no error and render both families.

#[path = "perf/gen.rs"]
mod gen;

use hostfw::render::render;
use hostfw::resolve::{resolve, HostInterfaces};
use hostfw::ruleset::Family;
use hostfw::source::load_paths;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

const DEFAULT_SEED: u64 = 8;

fn main() -> ExitCode {
    // cargo passes `--bench` to bench binaries; it is not one of ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let result = match args.first().map(String::as_str) {
        None => smoke(),
        Some("gen") => cmd_gen(&args[1..]),
        Some("stages") => cmd_stages(&args[1..]),
        Some("daemon-load") => cmd_daemon_load(&args[1..]),
        Some(other) => Err(format!(
            "unknown command `{other}` (gen, stages, daemon-load)"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perf: {e}");
            ExitCode::FAILURE
        }
    }
}

fn cmd_gen(args: &[String]) -> Result<(), String> {
    let [name, dir, rest @ ..] = args else {
        return Err("usage: perf gen <S|M|L> <DIR> [SEED]".into());
    };
    let scale = gen::scale(name).ok_or_else(|| format!("unknown scale `{name}`"))?;
    let seed = match rest.first() {
        Some(s) => s.parse().map_err(|e| format!("seed `{s}`: {e}"))?,
        None => DEFAULT_SEED,
    };
    gen::write(scale, seed, Path::new(dir)).map_err(|e| format!("{dir}: {e}"))
}

/// The interfaces the generated endpoints name (`bench0`..), without addresses, plus `lo`.
fn interfaces(endpoints: usize) -> HostInterfaces {
    let mut ifaces = HostInterfaces::new();
    ifaces.insert("lo".into(), Vec::new());
    for i in 0..endpoints {
        ifaces.insert(format!("bench{i}"), Vec::new());
    }
    ifaces
}

/// One load+validate+resolve and one render of both families; (load ms, render ms, rules).
fn one_pass(dir: &Path, ifaces: &HostInterfaces) -> Result<(f64, f64, usize), String> {
    let started = Instant::now();
    let loaded = load_paths(&[PathBuf::from(dir)]);
    let errors: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(ToString::to_string)
        .collect();
    let set = loaded
        .set
        .ok_or_else(|| format!("{} does not load:\n{}", dir.display(), errors.join("\n")))?;
    let view = resolve(&set, gen::NODE, ifaces);
    let loaded_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    let mut rules = 0;
    for family in [Family::V4, Family::V6] {
        let ruleset = render(&view, family).map_err(|e| format!("render: {e}"))?;
        rules += ruleset
            .tables
            .iter()
            .flat_map(|t| t.chains.values())
            .map(|c| c.rules.len())
            .sum::<usize>();
    }
    Ok((loaded_ms, started.elapsed().as_secs_f64() * 1e3, rules))
}

fn cmd_stages(args: &[String]) -> Result<(), String> {
    let [dir, endpoints, reps] = args else {
        return Err("usage: perf stages <DIR> <ENDPOINTS> <REPS>".into());
    };
    let endpoints: usize = endpoints.parse().map_err(|e| format!("{endpoints}: {e}"))?;
    let reps: usize = reps.parse().map_err(|e| format!("{reps}: {e}"))?;
    let ifaces = interfaces(endpoints);
    let dir = Path::new(dir);
    let (_, _, rules) = one_pass(dir, &ifaces)?;
    let mut load = Vec::new();
    let mut rend = Vec::new();
    for _ in 0..reps {
        let (l, r, _) = one_pass(dir, &ifaces)?;
        load.push(format!("{l:.2}"));
        rend.push(format!("{r:.2}"));
    }
    println!("stage load_resolve {}", load.join(" "));
    println!("stage render {}", rend.join(" "));
    println!("rendered_rules {rules}");
    println!("rss_kb {}", vm_hwm_kb());
    Ok(())
}

fn cmd_daemon_load(args: &[String]) -> Result<(), String> {
    use hostfw::daemon::{Engine, LoadOutcome, PolicySource, RealEngine};
    let [dir, reps] = args else {
        return Err("usage: perf daemon-load <DIR> <REPS>".into());
    };
    let reps: usize = reps.parse().map_err(|e| format!("{reps}: {e}"))?;
    let state = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let settings = hostfw::settings::Settings {
        policy_dir: PathBuf::from(dir),
        node: gen::NODE.into(),
        backend: None,
        run_dir: state.path().join("run"),
        state_dir: state.path().join("state"),
        lockout_guard: hostfw::guard::DaemonMode::Warn,
        datastore: hostfw::settings::DatastoreSettings::default(),
    };
    let source = Box::new(hostfw::source::directory::Directory::new(dir));
    let mut engine = RealEngine::new(settings, source);
    let mut times = Vec::new();
    for rep in 0..=reps {
        let started = Instant::now();
        let outcome = engine.load(PolicySource::Directory);
        let ms = started.elapsed().as_secs_f64() * 1e3;
        if let LoadOutcome::Invalid { diagnostics } = outcome {
            return Err(format!("{dir} does not load: {diagnostics:?}"));
        }
        if rep > 0 {
            times.push(format!("{ms:.2}"));
        }
    }
    println!("stage daemon_load {}", times.join(" "));
    Ok(())
}

/// Peak resident set size of this process (VmHWM, kB); 0 when /proc is unreadable.
fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// S and M generate, load without errors and render; generation is deterministic.
fn smoke() -> Result<(), String> {
    for name in ["S", "M"] {
        let scale = gen::scale(name).ok_or("scale table")?;
        if gen::files(scale, DEFAULT_SEED) != gen::files(scale, DEFAULT_SEED) {
            return Err(format!("{name}: two runs with one seed differ"));
        }
        let dir =
            std::env::temp_dir().join(format!("hostfw-perf-smoke-{}-{name}", std::process::id()));
        gen::write(scale, DEFAULT_SEED, &dir).map_err(|e| e.to_string())?;
        let result = one_pass(&dir, &interfaces(scale.endpoints));
        let _ = std::fs::remove_dir_all(&dir);
        let (_, _, rules) = result?;
        // Each policy rule renders at least one iptables rule in at least one family.
        if rules < scale.policies * scale.rules_per_policy {
            return Err(format!("{name}: only {rules} rules rendered"));
        }
        println!("perf smoke {name}: ok ({rules} rules rendered)");
    }
    Ok(())
}
