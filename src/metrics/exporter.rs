//! The daemon's handle on observability: the shared `Metrics`, the HTTP endpoints, and the log
//! level, all following the FelixConfiguration of the policy set in force.

use super::server::{Bind, Endpoints, ServeConfig};
use super::Metrics;
use crate::resolve::EffectiveConfig;
use std::sync::Arc;

pub struct Exporter {
    metrics: Arc<Metrics>,
    endpoints: Endpoints,
    /// What the listeners were last asked to do; unchanged settings bind nothing again.
    serving: Option<ServeConfig>,
}

impl Default for Exporter {
    fn default() -> Exporter {
        Exporter::new()
    }
}

impl Exporter {
    pub fn new() -> Exporter {
        let metrics = Arc::new(Metrics::new());
        Exporter {
            endpoints: Endpoints::new(metrics.clone()),
            metrics,
            serving: None,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Follow a policy set's FelixConfiguration: metrics and health listeners (rebinding what
    /// changed) and `logSeverityScreen`.
    pub fn configure(&mut self, config: &EffectiveConfig) {
        crate::logging::apply_severity_screen(crate::logging::level_of(config.log_severity_screen));
        let wanted = serve_config(config);
        if self.serving.as_ref() == Some(&wanted) {
            return;
        }
        for error in self.endpoints.configure(&wanted) {
            log::error!("{error}");
        }
        self.serving = Some(wanted);
    }
}

fn serve_config(config: &EffectiveConfig) -> ServeConfig {
    ServeConfig {
        metrics: config.prometheus_metrics_enabled.then(|| Bind {
            host: config.prometheus_metrics_host.clone(),
            port: config.prometheus_metrics_port,
        }),
        process_metrics: config.prometheus_process_metrics_enabled,
        health: config.health_enabled.then(|| Bind {
            host: config.health_host.clone(),
            port: config.health_port,
        }),
    }
}
