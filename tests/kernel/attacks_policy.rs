//! Attacks through the policy source (docs/design.md, "Failure model"): a set without a single
//! resource (an empty directory, one holding only a README, a directory symlinked to /dev, the
//! moment between `rm old.yaml` and the new file arriving) must never be applied as "remove
//! everything"; the rules in force stay and the message points at `hostfw flush`.

use crate::netns;

use netns::*;

fn policies() -> String {
    format!(
        "{}{}",
        allow_ports_policy("web", "8080"),
        scenario_hep("host-eth0", Some("eth0"), "{role: web}")
    )
}

fn filter_rules(s: &Scenario) -> String {
    save(&s.pair.host, s.backend, false, "filter", false)
        .lines()
        .filter(|l| l.starts_with("-A "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Attack: the policy set empties out. hostfw refuses it (exit 1, pointing at `hostfw flush`)
/// and the rules stay, whatever the emptiness looks like.
fn an_empty_policy_set_is_never_applied_scenario() {
    let s = Scenario::new("emptyset", "legacy", &policies());
    let _server = tcp_server(&s.pair.host, sock("::", 9090));
    let run = s.run(&["apply"]);
    assert_eq!(run.code, 0, "{run:?}");
    let applied = filter_rules(&s);
    assert!(applied.contains("cali-INPUT"), "{applied}");
    let dir = s.work.policy_dir();
    let layouts: [(&str, &dyn Fn()); 3] = [
        ("an empty directory", &|| s.work.write_policy_files(&[])),
        ("a README only", &|| {
            s.work
                .write_policy_files(&[("README".to_string(), "policies go here\n".to_string())])
        }),
        ("a directory symlinked to /dev", &|| {
            let _ = std::fs::remove_dir_all(&dir);
            std::os::unix::fs::symlink("/dev", &dir).expect("symlink");
        }),
    ];
    for (what, make) in layouts {
        make();
        for args in [&["apply"][..], &["diff"][..]] {
            let run = s.run(args);
            assert_eq!(run.code, 1, "{what}, {args:?}: {run:?}");
            assert!(
                run.stderr.contains("hostfw flush") && run.stderr.contains("no resources"),
                "{what}: {run:?}"
            );
        }
        assert_eq!(filter_rules(&s), applied, "{what} changed the rules");
        assert!(
            !tcp_ok(&s.pair.peer, None, sock(HOST4, 9090)),
            "{what} opened the host"
        );
        let _ = std::fs::remove_file(&dir);
    }
    // `flush` is how protection is removed on purpose.
    let run = s.run(&["flush"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!filter_rules(&s).contains("cali"));
}

#[test]
fn an_empty_policy_set_is_never_applied() {
    if kernel_tests_enabled() {
        an_empty_policy_set_is_never_applied_scenario();
    }
}
