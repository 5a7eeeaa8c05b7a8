//! Build-time asset generator for the packages: writes the `hostfw(8)` man page and the bash, zsh
//! and fish completions, all derived from the clap definition in `hostfw::cli`, and the licence
//! notices of the crates linked into the binary (from `cargo metadata`), into the directory given
//! as the only argument. It documents the CLI; it must not invent options the CLI lacks, so
//! everything per-option comes from clap and only the prose sections (exit status, files,
//! environment extras) are written here.
//!
//! Usage: `cargo run --example gen-assets -- target/assets`

use clap::CommandFactory;
use clap_complete::Shell;
use hostfw::settings::{DEFAULT_POLICY_DIR, DEFAULT_RUN_DIR, DEFAULT_STATE_DIR};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: gen-assets OUT_DIR");
        return ExitCode::from(2);
    };
    match generate(Path::new(&dir)) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen-assets: {e}");
            ExitCode::from(2)
        }
    }
}

/// Writes every asset into `dir` (created if missing) and returns the paths written.
fn generate(dir: &Path) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let mut written = Vec::new();

    let man_path = dir.join("hostfw.8");
    let mut man = Vec::new();
    render_man(&mut man)?;
    fs::write(&man_path, man)?;
    written.push(man_path);

    // File names are the ones each shell looks up by command name; the packages install them
    // into the distribution's completion directories under these names.
    for (shell, name) in [
        (Shell::Bash, "hostfw.bash"),
        (Shell::Zsh, "_hostfw"),
        (Shell::Fish, "hostfw.fish"),
    ] {
        let path = dir.join(name);
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut hostfw::cli::Cli::command(), "hostfw", &mut out);
        fs::write(&path, out)?;
        written.push(path);
    }

    let notices_path = dir.join("THIRD-PARTY-NOTICES");
    fs::write(&notices_path, third_party_notices()?)?;
    written.push(notices_path);
    Ok(written)
}

/// The licence texts of every crate statically linked into the binary: MIT, BSD and ISC require
/// their notices to travel with binary copies. The crates are hostfw's normal (not dev, not
/// build-script) dependencies, transitively, for the host platform, in name order; each entry
/// carries the crate's own LICENSE*/LICENCE*/COPYING*/NOTICE* files.
fn third_party_notices() -> io::Result<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let host = command_stdout(std::process::Command::new("rustc").arg("-vV"))?
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .ok_or_else(|| io::Error::other("rustc -vV printed no host triple"))?;
    let metadata = command_stdout(std::process::Command::new(cargo).args([
        "metadata",
        "--format-version",
        "1",
        "--locked",
        "--filter-platform",
        &host,
    ]))?;
    let metadata: serde_json::Value = serde_json::from_str(&metadata).map_err(io::Error::other)?;
    let packages: std::collections::BTreeMap<&str, &serde_json::Value> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["id"].as_str()?, p)))
        .collect();
    let nodes: std::collections::BTreeMap<&str, &serde_json::Value> = metadata["resolve"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| Some((n["id"].as_str()?, n)))
        .collect();
    let root = metadata["resolve"]["root"]
        .as_str()
        .ok_or_else(|| io::Error::other("cargo metadata: no root package"))?;

    // Walk normal dependency edges only ("kind": null); dev and build dependencies are not linked.
    let mut linked = std::collections::BTreeSet::new();
    let mut todo = vec![root];
    while let Some(id) = todo.pop() {
        if !linked.insert(id) {
            continue;
        }
        for dep in nodes
            .get(id)
            .and_then(|n| n["deps"].as_array())
            .into_iter()
            .flatten()
        {
            let normal = dep["dep_kinds"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k["kind"].is_null()));
            if let (true, Some(pkg)) = (normal, dep["pkg"].as_str()) {
                todo.push(pkg);
            }
        }
    }
    linked.remove(root);

    let mut crates: Vec<&serde_json::Value> = linked
        .iter()
        .filter_map(|id| packages.get(id).copied())
        .collect();
    crates.sort_by_key(|p| (p["name"].as_str(), p["version"].as_str()));
    let mut out = String::from(
        "Third-party software in hostfw\n\n\
         /usr/sbin/hostfw is statically linked with the Rust crates below. Each is listed with \
         its\nversion, its licence (as its author declares it) and the licence files it ships.\n",
    );
    let mut seen: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for package in crates {
        let name = package["name"].as_str().unwrap_or("?");
        let version = package["version"].as_str().unwrap_or("?");
        let license = package["license"].as_str().unwrap_or("(not declared)");
        out.push_str(&format!("\n==== {name} {version}: {license}\n"));
        let dir = package["manifest_path"]
            .as_str()
            .and_then(|m| Path::new(m).parent().map(Path::to_path_buf));
        let mut files: Vec<PathBuf> = dir
            .and_then(|d| fs::read_dir(d).ok())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_license_file(p))
            .collect();
        files.sort();
        if files.is_empty() {
            out.push_str("(the crate ships no licence file)\n");
        }
        for file in files {
            let text = fs::read_to_string(&file)?;
            let text = text.trim_end().to_owned();
            let file_name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let label = format!("{name} {version} {file_name}");
            // Most crates ship the same Apache and MIT texts: print each text once.
            match seen.get(&text) {
                Some(first) => out.push_str(&format!("\n---- {file_name}: the text of {first}\n")),
                None => {
                    out.push_str(&format!("\n---- {file_name}\n{text}\n"));
                    seen.insert(text, label);
                }
            }
        }
    }
    Ok(out)
}

fn is_license_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_uppercase())
        .unwrap_or_default();
    ["LICENSE", "LICENCE", "COPYING", "NOTICE", "UNLICENSE"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// Runs a command and returns its stdout; a failure carries the command's stderr.
fn command_stdout(cmd: &mut std::process::Command) -> io::Result<String> {
    let output = cmd.output()?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "{:?} failed: {}",
            cmd,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    String::from_utf8(output.stdout).map_err(io::Error::other)
}

/// The whole man page: clap_mangen's name, synopsis, description and global options, then one
/// subsection per subcommand and the hand-written administrative sections.
fn render_man(w: &mut dyn Write) -> io::Result<()> {
    let mut cmd = hostfw::cli::Cli::command();
    cmd.build();
    let version = cmd.get_version().unwrap_or_default().to_owned();
    let man = clap_mangen::Man::new(cmd.clone());
    // clap_mangen repeats its string-definition preamble before every section; it is written
    // once here. The title line is our own: an empty date keeps the output reproducible, and
    // clap_mangen would drop the empty argument and shift the source into the date column.
    writeln!(w, "{ROFF_PREAMBLE}")?;
    writeln!(
        w,
        ".TH HOSTFW 8 \"\" \"hostfw {version}\" \"System Administration\""
    )?;
    w.write_all(section(|o| man.render_name_section(o), true)?.as_bytes())?;
    w.write_all(section(|o| man.render_synopsis_section(o), true)?.as_bytes())?;
    w.write_all(section(|o| man.render_description_section(o), true)?.as_bytes())?;
    writeln!(
        w,
        ".PP\nOne binary with subcommands: one-shot commands that validate, show, render, \
         compare and apply the policy directory, and the daemon run by \\fBhostfw.service\\fR. \
         Stopping the daemon leaves the rules in the kernel; \\fBhostfw flush\\fR removes them."
    )?;
    w.write_all(section(|o| man.render_options_section(o), true)?.as_bytes())?;
    render_commands(&cmd, w)?;
    render_exit_status(w)?;
    render_environment(&cmd, w)?;
    render_files(w)?;
    writeln!(w, ".SH SEE ALSO")?;
    writeln!(
        w,
        ".BR iptables (8),\n.BR ip6tables (8),\n.BR ipset (8),\n.BR systemctl (1)"
    )
}

/// The string definitions clap_mangen's text relies on (`\*(Aq` for an apostrophe).
const ROFF_PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '";

/// COMMANDS: each subcommand's synopsis, description and own options. clap_mangen would list
/// subcommands as separate `hostfw-NAME(8)` pages, which we do not ship, so each one is rendered
/// here as a subsection instead, with the global options hidden (they are documented once above).
fn render_commands(cmd: &clap::Command, w: &mut dyn Write) -> io::Result<()> {
    let shared: Vec<clap::Id> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .map(|a| a.get_id().clone())
        .chain(["help", "version"].map(clap::Id::from))
        .collect();
    writeln!(w, ".SH COMMANDS")?;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        // Whether clap has copied the global options into this subcommand yet depends on
        // how far it was built, so only the ones present are hidden.
        let present: Vec<clap::Id> = sub
            .get_arguments()
            .filter(|a| shared.contains(a.get_id()))
            .map(|a| a.get_id().clone())
            .collect();
        let mut sub = sub.clone();
        for id in present {
            sub = sub.mut_arg(id, |a| a.hide(true));
        }
        writeln!(w, ".SS {}", sub.get_name())?;
        let sub_man = clap_mangen::Man::new(sub.clone());
        w.write_all(section(|o| sub_man.render_synopsis_section(o), false)?.as_bytes())?;
        writeln!(w, ".PP")?;
        w.write_all(section(|o| sub_man.render_description_section(o), false)?.as_bytes())?;
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            w.write_all(section(|o| sub_man.render_options_section(o), false)?.as_bytes())?;
        }
    }
    Ok(())
}

/// Renders one clap_mangen section without its preamble lines; `keep_heading: false` also drops
/// its `.SH` line so the body can sit inside a `.SS` subsection.
fn section(
    render: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    keep_heading: bool,
) -> io::Result<String> {
    let mut buf = Vec::new();
    render(&mut buf)?;
    let text = String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let preamble: Vec<&str> = ROFF_PREAMBLE.lines().collect();
    let mut out = String::new();
    for line in text.lines() {
        if preamble.contains(&line) || (!keep_heading && line.starts_with(".SH")) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

fn render_exit_status(w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, ".SH EXIT STATUS")?;
    for (code, meaning) in [
        ("0", "Success."),
        (
            "1",
            "The input is invalid; for \\fBdiff\\fR, changes are pending.",
        ),
        (
            "2",
            "An error: a missing binary, no permission, or the kernel refused a change.",
        ),
        (
            "4",
            "\\fBrun\\fR only: the process lacks CAP_NET_ADMIN; the unit does not restart on it.",
        ),
    ] {
        writeln!(w, ".TP\n.B {code}\n{meaning}")?;
    }
    Ok(())
}

/// ENVIRONMENT: every variable clap reads (from the CLI definition, so a new `env = ...` option
/// appears here by itself), plus the ones read outside clap (the daemon's lockout guard mode,
/// env_logger's filter).
fn render_environment(cmd: &clap::Command, w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, ".SH ENVIRONMENT")?;
    writeln!(
        w,
        "Each variable below is the default for the option named; an option given on the \
         command line wins. The systemd unit reads them from \\fI/etc/default/hostfw\\fR \
         (Debian) or \\fI/etc/sysconfig/hostfw\\fR (Fedora, RHEL)."
    )?;
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        writeln!(
            w,
            ".TP\n.B {}\nSee \\fB\\-\\-{}\\fR.",
            env.to_string_lossy(),
            roff_escape(long)
        )?;
    }
    writeln!(
        w,
        ".TP\n.B HOSTFW_LOCKOUT_GUARD\nWhat the daemon does when a new ruleset would cut the \
         SSH session of the person applying it, or leave no inbound SSH at all: \\fBwarn\\fR \
         (the default) logs a loud warning and applies it; \\fBrefuse\\fR keeps the current \
         rules."
    )?;
    writeln!(
        w,
        ".TP\n.B RUST_LOG\nLog filter in env_logger syntax (for example \\fBinfo\\fR or \
         \\fBhostfw=debug\\fR); \\fB\\-\\-log\\-level\\fR takes precedence."
    )
}

fn render_files(w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, ".SH FILES")?;
    let policy_dir = roff_escape(DEFAULT_POLICY_DIR);
    let run_dir = roff_escape(DEFAULT_RUN_DIR);
    let state_dir = roff_escape(DEFAULT_STATE_DIR);
    for (path, meaning) in [
        (
            format!("{policy_dir}/"),
            "Policy directory: *.yaml and *.yml files, read in name order.".to_owned(),
        ),
        (
            "/etc/default/hostfw, /etc/sysconfig/hostfw".to_owned(),
            "Agent settings read by the systemd unit.".to_owned(),
        ),
        (
            format!("{run_dir}/status.json"),
            "Daemon status, written atomically.".to_owned(),
        ),
        (
            format!("{run_dir}/hostfw.lock"),
            "Lock shared by the daemon and one-shot commands.".to_owned(),
        ),
        (
            format!("{state_dir}/last\\-good/"),
            "The last policy set that validated and applied; used at boot when the policy \
             directory is invalid."
                .to_owned(),
        ),
        (
            "/usr/share/doc/hostfw/examples/".to_owned(),
            "Commented example policies.".to_owned(),
        ),
    ] {
        writeln!(w, ".TP\n.I {path}\n{meaning}")?;
    }
    Ok(())
}

/// Escapes text for a roff body line: backslashes and hyphens (so option names stay copyable).
fn roff_escape(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}
