//! The per-policy counters' source in the daemon: `iptables-save -c` of every table, one process
//! per family, through the real dataplane. Deliberately not through `Metered`: these reads are
//! the scrape's, not the dataplane's, and would otherwise inflate Felix's save counters.

use super::CounterReader;
use crate::dataplane::{Dataplane, RealDataplane};
use crate::ruleset::Family;

pub struct KernelCounters {
    dataplane: RealDataplane,
}

impl KernelCounters {
    pub fn new(dataplane: RealDataplane) -> KernelCounters {
        KernelCounters { dataplane }
    }
}

impl CounterReader for KernelCounters {
    fn read(&self) -> Result<Vec<String>, String> {
        [Family::V4, Family::V6]
            .into_iter()
            .filter(|f| self.dataplane.supports(*f))
            .map(|f| {
                self.dataplane
                    .save_all_with_counters(f)
                    .map_err(|e| e.to_string())
            })
            .collect()
    }
}
