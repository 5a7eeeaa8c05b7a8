//! A `Dataplane` that counts what it does into `Metrics` (Felix's `felix_iptables_*` and
//! `felix_ipset_*` counters) and otherwise passes every call through unchanged.

use super::{Metrics, Values};
use crate::dataplane::{Backend, Dataplane, DataplaneError};
use crate::ruleset::restore::RestoreScript;
use crate::ruleset::{Family, TableName};
use std::sync::Arc;

pub struct Metered<D> {
    inner: D,
    metrics: Arc<Metrics>,
}

impl<D: Dataplane> Metered<D> {
    pub fn new(inner: D, metrics: Arc<Metrics>) -> Metered<D> {
        Metered { inner, metrics }
    }

    /// Another dataplane made from this one's (`RealDataplane::abandoned_when`), counted into
    /// the same metrics.
    pub fn derive(&self, make: impl FnOnce(&D) -> D) -> Metered<D> {
        Metered {
            inner: make(&self.inner),
            metrics: self.metrics.clone(),
        }
    }

    /// Count one call of a kind and, when `result` failed, one error of it; `counters` picks the
    /// kind's (calls, errors) pair.
    fn counted<T>(
        &self,
        result: Result<T, DataplaneError>,
        counters: fn(&mut Values) -> (&mut u64, &mut u64),
    ) -> Result<T, DataplaneError> {
        let failed = result.is_err();
        self.metrics.update(|v| {
            let (calls, errors) = counters(v);
            *calls += 1;
            *errors += u64::from(failed);
        });
        result
    }

    /// Counts a restore of `lines` lines (Felix counts every line it feeds iptables-restore,
    /// `*table` and COMMIT included).
    fn restored(
        &self,
        family: Family,
        table: TableName,
        lines: usize,
        result: Result<(), DataplaneError>,
    ) -> Result<(), DataplaneError> {
        let failed = result.is_err();
        self.metrics.update(|v| {
            v.restore_calls += 1;
            v.restore_errors += u64::from(failed);
            *v.lines_executed.entry((family, table)).or_default() += lines as u64;
        });
        result
    }

    fn saved<T>(&self, result: Result<T, DataplaneError>) -> Result<T, DataplaneError> {
        self.counted(result, |v| (&mut v.save_calls, &mut v.save_errors))
    }

    fn ipset<T>(&self, result: Result<T, DataplaneError>) -> Result<T, DataplaneError> {
        self.counted(result, |v| (&mut v.ipset_calls, &mut v.ipset_errors))
    }
}

impl<D: Dataplane> Dataplane for Metered<D> {
    fn save(&self, family: Family, table: TableName) -> Result<String, DataplaneError> {
        self.saved(self.inner.save(family, table))
    }

    fn save_tables(
        &self,
        family: Family,
        line: &mut dyn FnMut(&str),
    ) -> Result<(), DataplaneError> {
        self.saved(self.inner.save_tables(family, line))
    }

    fn restore(&self, family: Family, table: TableName, input: &str) -> Result<(), DataplaneError> {
        let result = self.inner.restore(family, table, input);
        self.restored(family, table, input.lines().count(), result)
    }

    fn restore_script(
        &self,
        family: Family,
        table: TableName,
        script: &RestoreScript,
    ) -> Result<(), DataplaneError> {
        let result = self.inner.restore_script(family, table, script);
        self.restored(family, table, script.lines(), result)
    }

    fn ipset_save(&self) -> Result<String, DataplaneError> {
        self.ipset(self.inner.ipset_save())
    }

    fn ipset_restore(&self, input: &str) -> Result<(), DataplaneError> {
        self.ipset(self.inner.ipset_restore(input))
    }

    fn backend(&self) -> Backend {
        self.inner.backend()
    }

    fn supports(&self, family: Family) -> bool {
        self.inner.supports(family)
    }

    fn save_counters(&self, family: Family, table: TableName) -> Result<String, DataplaneError> {
        self.saved(self.inner.save_counters(family, table))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::fake::{FakeDataplane, Fault, Op};

    #[test]
    fn calls_lines_and_errors_are_counted() {
        let metrics = Arc::new(Metrics::new());
        let dp = Metered::new(FakeDataplane::default(), metrics.clone());
        dp.save_tables(Family::V4, &mut |_| {}).expect("fake saves");
        dp.restore(
            Family::V4,
            TableName::Filter,
            "*filter\n:cali-x - [0:0]\nCOMMIT\n",
        )
        .expect("fake restores");
        dp.ipset_save().expect("fake ipset save");
        let v = metrics.snapshot();
        assert_eq!((v.save_calls, v.save_errors), (1, 0));
        assert_eq!((v.restore_calls, v.restore_errors), (1, 0));
        assert_eq!(v.lines_executed[&(Family::V4, TableName::Filter)], 3);
        assert_eq!(v.lines_executed[&(Family::V6, TableName::Filter)], 0);
        assert_eq!((v.ipset_calls, v.ipset_errors), (1, 0));
    }

    #[test]
    fn failures_count_as_calls_and_errors() {
        let metrics = Arc::new(Metrics::new());
        let fake = FakeDataplane::default();
        fake.inject(Op::Restore, Fault::Busy);
        fake.inject(Op::Save, Fault::PermissionDenied);
        let dp = Metered::new(fake, metrics.clone());
        assert!(dp
            .restore(Family::V6, TableName::Raw, "*raw\nCOMMIT\n")
            .is_err());
        assert!(dp.save(Family::V4, TableName::Filter).is_err());
        let v = metrics.snapshot();
        assert_eq!((v.restore_calls, v.restore_errors), (1, 1));
        assert_eq!((v.save_calls, v.save_errors), (1, 1));
        assert_eq!(v.lines_executed[&(Family::V6, TableName::Raw)], 2);
    }
}
