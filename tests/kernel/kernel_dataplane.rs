//! Real-kernel tests of the dataplane layer alone (no policies): save/restore/ipset through the
//! real tools inside a fresh network namespace, failure classification, backend detection.

use crate::netns;

use hostfw::dataplane::{
    choose_backend, probe, Backend, BackendError, Dataplane, DataplaneError, RealDataplane,
};
use hostfw::ruleset::{Family, TableName};
use netns::{kernel_tests_enabled, Netns};

const OURS: &str = "*filter\n:cali-INPUT - [0:0]\n\
    -A cali-INPUT -p tcp -m comment --comment \"cali:AAAAAAAAAAAAAAAA\" -j ACCEPT\n\
    -I INPUT 1 -m comment --comment \"cali:BBBBBBBBBBBBBBBB\" -j cali-INPUT\nCOMMIT\n";

/// On each backend, in a fresh namespace named `tag-backend`: restore [`OURS`] into the IPv4
/// filter table, then `check` the dataplane. Gated as every kernel test is.
fn on_each_backend_with_ours(tag: &str, check: fn(&RealDataplane)) {
    if !kernel_tests_enabled() {
        return;
    }
    for backend in [Backend::Legacy, Backend::Nft] {
        let ns = Netns::new(&format!("{tag}-{backend}"));
        ns.run_in(move || {
            let dp = RealDataplane::new(backend).expect("tools present");
            assert_eq!(dp.backend(), backend);
            assert!(dp.supports(Family::V4));
            dp.restore(Family::V4, TableName::Filter, OURS).unwrap();
            check(&dp);
        });
    }
}

/// A table's text without its comment lines (the timestamps of a save).
fn without_comments(table: &str) -> String {
    table
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn save_restore_and_ipsets_round_trip_on_both_backends() {
    on_each_backend_with_ours("rt", |dp| {
        let text = dp.save(Family::V4, TableName::Filter).unwrap();
        assert!(text.contains(":cali-INPUT - [0:0]"), "{text}");
        assert!(
            text.contains("-A INPUT -m comment --comment \"cali:BBBBBBBBBBBBBBBB\" -j cali-INPUT"),
            "{text}"
        );

        // One process for all tables, a line at a time, holds the same table text (timestamps
        // aside).
        let mut all = String::new();
        dp.save_tables(Family::V4, &mut |line| {
            all.push_str(line);
            all.push('\n');
        })
        .unwrap();
        let filter = without_comments(&text);
        assert!(without_comments(&all).contains(&filter), "{all}");

        // IPv6 is independent.
        if dp.supports(Family::V6) {
            let v6 = dp.save(Family::V6, TableName::Filter).unwrap();
            assert!(!v6.contains("cali-INPUT"), "{v6}");
        }

        dp.ipset_restore(
                "create cali40s:test-AAAAAAAAAAAAAAAAAA hash:net family inet hashsize 1024 maxelem 1048576\n\
                 add cali40s:test-AAAAAAAAAAAAAAAAAA 198.51.100.0/25\n\
                 create f2b-sshd hash:ip family inet hashsize 1024 maxelem 65536\n\
                 add f2b-sshd 203.0.113.9\n",
            )
            .unwrap();
        let sets = dp.ipset_save().unwrap();
        assert!(
            sets.contains("create cali40s:test-AAAAAAAAAAAAAAAAAA hash:net"),
            "{sets}"
        );
        assert!(
            sets.contains("add cali40s:test-AAAAAAAAAAAAAAAAAA 198.51.100.0/25"),
            "{sets}"
        );
        assert!(!sets.contains("f2b-sshd"), "foreign set leaked: {sets}");
    });
}

#[test]
fn a_failing_restore_keeps_input_and_stderr_and_changes_nothing() {
    on_each_backend_with_ours("fail", |dp| {
        let before = dp.save(Family::V4, TableName::Filter).unwrap();
        let bad =
            "*filter\n:cali-new - [0:0]\n-A cali-new -m hostfw-no-such-match -j ACCEPT\nCOMMIT\n";
        match dp.restore(Family::V4, TableName::Filter, bad) {
            Err(DataplaneError::RestoreFailed { stderr, input, .. }) => {
                assert_eq!(input, bad);
                assert!(stderr.contains("hostfw-no-such-match"), "{stderr}");
            }
            other => panic!("expected RestoreFailed, got {other:?}"),
        }
        let after = dp.save(Family::V4, TableName::Filter).unwrap();
        assert_eq!(
            without_comments(&after),
            without_comments(&before),
            "a failed transaction changed the table"
        );
    });
}

#[test]
fn detection_follows_cali_state_and_refuses_when_both_hold_it() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = Netns::new("detect");
    ns.run_in(|| {
        // Nothing anywhere: the system default (whatever `iptables --version` says here).
        let empty = probe();
        let default = empty.system_default;
        assert_eq!(
            choose_backend(None, &empty).unwrap(),
            default.unwrap_or(Backend::Nft)
        );

        RealDataplane::new(Backend::Legacy)
            .unwrap()
            .restore(Family::V4, TableName::Filter, OURS)
            .unwrap();
        assert_eq!(choose_backend(None, &probe()).unwrap(), Backend::Legacy);

        RealDataplane::new(Backend::Nft)
            .unwrap()
            .restore(Family::V4, TableName::Filter, OURS)
            .unwrap();
        match choose_backend(None, &probe()) {
            Err(BackendError::Ambiguous { legacy, nft }) => {
                // One chain declaration and two hashed rules in each.
                assert_eq!((legacy, nft), (3, 3));
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // An explicit choice still works.
        assert_eq!(
            RealDataplane::detect(Some(Backend::Nft)).unwrap().backend(),
            Backend::Nft
        );
        assert!(matches!(
            RealDataplane::detect(None),
            Err(DataplaneError::Backend(BackendError::Ambiguous { .. }))
        ));
    });
}
