//! The per-policy counters' source in the daemon: `iptables-save -c` of every table, one process
//! per family, through the real dataplane. Deliberately not through `Metered`: these reads are
//! the scrape's, not the dataplane's, and would otherwise inflate Felix's save counters.

use super::CounterReader;
use crate::dataplane::{Dataplane, RealDataplane};
use crate::ruleset::{parse_save, Family, LiveTable};

pub struct KernelCounters {
    dataplane: RealDataplane,
}

impl KernelCounters {
    pub fn new(dataplane: RealDataplane) -> KernelCounters {
        KernelCounters { dataplane }
    }
}

impl CounterReader for KernelCounters {
    fn read(&self) -> Result<Vec<LiveTable>, String> {
        let mut tables = Vec::new();
        for family in [Family::V4, Family::V6] {
            if !self.dataplane.supports(family) {
                continue;
            }
            let saved = self
                .dataplane
                .save_tables_with_counters(family)
                .map_err(|e| e.to_string())?;
            for text in saved.values() {
                tables.push(parse_save(text).map_err(|e| e.to_string())?);
            }
        }
        Ok(tables)
    }
}
