//! The daemon's HTTP endpoints, configured as Felix's are: `GET /metrics` on
//! `prometheusMetricsHost:prometheusMetricsPort`, `GET /liveness` and `GET /readiness` on
//! `healthHost:healthPort`. A small synchronous server (tiny_http) on a helper thread that
//! blocks in accept/recv, so an unscraped daemon does not wake up for it. Listeners bind exactly
//! the configured address and are rebound only when the configuration changes.

use super::Metrics;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Where to listen, as FelixConfiguration says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// An address, a name to resolve, or empty for all addresses.
    pub host: String,
    pub port: u16,
}

/// What the endpoints should serve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServeConfig {
    /// `prometheusMetricsEnabled` with its host and port.
    pub metrics: Option<Bind>,
    /// `prometheusProcessMetricsEnabled`.
    pub process_metrics: bool,
    /// `healthEnabled` with its host and port.
    pub health: Option<Bind>,
}

/// Which paths one listener answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Routes {
    metrics: bool,
    process_metrics: bool,
    health: bool,
}

/// The address a `Bind` means: an IP literal as given, a name resolved (IPv4 first, as Go's
/// listener does for `localhost`), empty as every address (`[::]`, which also takes IPv4 unless
/// IPv6 is off, then `0.0.0.0`).
fn resolve(bind: &Bind) -> io::Result<Vec<SocketAddr>> {
    let host = bind
        .host
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Ok(vec![
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), bind.port),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), bind.port),
        ]);
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, bind.port)]);
    }
    let mut addrs: Vec<SocketAddr> = (host, bind.port).to_socket_addrs()?.collect();
    addrs.sort_by_key(|a| a.is_ipv6());
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host} resolves to no address"),
        ));
    }
    Ok(addrs)
}

/// Bind the first address that works. A listener we just closed may hold the port for a
/// moment (its accept thread is waking up), so an address in use is retried briefly.
fn listen(bind: &Bind) -> io::Result<TcpListener> {
    let addrs = resolve(bind)?;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let mut last = None;
        for addr in &addrs {
            match TcpListener::bind(addr) {
                Ok(l) => return Ok(l),
                Err(e) => last = Some(e),
            }
        }
        let err = last.unwrap_or_else(|| io::Error::other("no address to bind"));
        if err.kind() != io::ErrorKind::AddrInUse || Instant::now() >= deadline {
            return Err(err);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// One bound listener and the thread answering it.
struct Listener {
    bind: Bind,
    routes: Routes,
    addr: SocketAddr,
    server: Option<Arc<tiny_http::Server>>,
    thread: Option<JoinHandle<()>>,
    /// The listening socket itself, to stop accepting the moment we close: tiny_http's own
    /// accept thread lets go of its copy only after it next wakes up.
    socket: TcpListener,
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.unblock();
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
        // SAFETY: shutdown on a socket we own; on a listening socket it stops listening, so
        // new connections are refused even while tiny_http's accept thread winds down.
        unsafe { libc::shutdown(self.socket.as_raw_fd(), libc::SHUT_RDWR) };
    }
}

fn start(bind: &Bind, routes: Routes, metrics: Arc<Metrics>) -> io::Result<Listener> {
    let listener = listen(bind)?;
    let addr = listener.local_addr()?;
    let socket = listener.try_clone()?;
    let server = tiny_http::Server::from_listener(listener, None)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let server = Arc::new(server);
    let serving = server.clone();
    let header = |value: &str| {
        tiny_http::Header::from_bytes("Content-Type", value)
            .map_err(|()| io::Error::other("invalid Content-Type header"))
    };
    let (text, json) = (header(TEXT)?, header(JSON)?);
    let thread = thread::Builder::new()
        .name("hostfw-http".into())
        .spawn(move || {
            for request in serving.incoming_requests() {
                let (status, content_type, body) = answer(&request, routes, &metrics);
                let header = if content_type == JSON {
                    json.clone()
                } else {
                    text.clone()
                };
                let response = tiny_http::Response::from_string(body)
                    .with_status_code(status)
                    .with_header(header);
                if let Err(e) = request.respond(response) {
                    log::debug!("metrics: client went away: {e}");
                }
            }
        })?;
    Ok(Listener {
        bind: bind.clone(),
        routes,
        addr,
        server: Some(server),
        thread: Some(thread),
        socket,
    })
}

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const JSON: &str = "application/json";

/// Status, content type and body for one request.
fn answer(
    request: &tiny_http::Request,
    routes: Routes,
    metrics: &Metrics,
) -> (u16, &'static str, String) {
    if !matches!(
        request.method(),
        tiny_http::Method::Get | tiny_http::Method::Head
    ) {
        return (405, TEXT, "only GET\n".into());
    }
    let path = request.url().split('?').next().unwrap_or("");
    match path {
        "/metrics" if routes.metrics => (
            200,
            TEXT,
            metrics.render(Instant::now(), routes.process_metrics),
        ),
        "/liveness" | "/readiness" if routes.health => {
            let health = metrics.health();
            let (key, good) = if path == "/liveness" {
                ("live", health.live)
            } else {
                ("ready", health.ready)
            };
            let body = serde_json::json!({ key: good, "detail": health.detail }).to_string();
            (if good { 200 } else { 503 }, JSON, body + "\n")
        }
        _ => (404, TEXT, "not found\n".into()),
    }
}

/// The running listeners; `configure` brings them to a new configuration.
pub struct Endpoints {
    metrics: Arc<Metrics>,
    listeners: Vec<Listener>,
}

impl Endpoints {
    pub fn new(metrics: Arc<Metrics>) -> Endpoints {
        Endpoints {
            metrics,
            listeners: Vec::new(),
        }
    }

    /// Listen as `config` says. Listeners whose address and routes are unchanged keep running
    /// (a scraper's connection is not dropped); the others are closed and rebound. Metrics and
    /// health on the same host and port share one listener. Returns what could not be bound.
    pub fn configure(&mut self, config: &ServeConfig) -> Vec<String> {
        let mut wanted: Vec<(Bind, Routes)> = Vec::new();
        let none = Routes {
            metrics: false,
            process_metrics: false,
            health: false,
        };
        for (bind, is_metrics) in [(&config.metrics, true), (&config.health, false)] {
            let Some(bind) = bind else { continue };
            let index = match wanted.iter().position(|(b, _)| b == bind) {
                Some(i) => i,
                None => {
                    wanted.push((bind.clone(), none));
                    wanted.len() - 1
                }
            };
            let routes = &mut wanted[index].1;
            if is_metrics {
                routes.metrics = true;
                routes.process_metrics = config.process_metrics;
            } else {
                routes.health = true;
            }
        }
        self.listeners
            .retain(|l| wanted.iter().any(|(b, r)| *b == l.bind && *r == l.routes));
        let mut errors = Vec::new();
        for (bind, routes) in wanted {
            if self.listeners.iter().any(|l| l.bind == bind) {
                continue;
            }
            match start(&bind, routes, self.metrics.clone()) {
                Ok(l) => {
                    log::info!("serving {} on http://{}", describe(routes), l.addr);
                    self.listeners.push(l);
                }
                Err(e) => errors.push(format!(
                    "cannot listen on {}:{} for {}: {e}",
                    bind.host,
                    bind.port,
                    describe(routes)
                )),
            }
        }
        errors
    }

    /// The addresses actually bound (port 0 in the configuration becomes a real port here).
    #[cfg(test)]
    fn addresses(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.addr).collect()
    }
}

fn describe(routes: Routes) -> &'static str {
    match (routes.metrics, routes.health) {
        (true, true) => "/metrics, /liveness and /readiness",
        (true, false) => "/metrics",
        _ => "/liveness and /readiness",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(addr).expect("connects");
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").expect("writes");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("reads");
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (status, body)
    }

    fn local(port: u16) -> Option<Bind> {
        Some(Bind {
            host: "127.0.0.1".into(),
            port,
        })
    }

    #[test]
    fn names_resolve_ipv4_first_and_empty_means_every_address() {
        let all = resolve(&Bind {
            host: String::new(),
            port: 9091,
        })
        .expect("resolves");
        assert!(all[0].ip().is_unspecified() && all[0].is_ipv6());
        let lo = resolve(&Bind {
            host: "localhost".into(),
            port: 9099,
        })
        .expect("resolves");
        assert!(lo[0].ip().is_loopback() && lo[0].is_ipv4());
        let exact = resolve(&Bind {
            host: "[::1]".into(),
            port: 1,
        })
        .expect("resolves");
        assert_eq!(exact, ["[::1]:1".parse().expect("valid")]);
    }

    #[test]
    fn shared_listener_serves_metrics_and_health_and_rebinds_on_change() {
        let metrics = Arc::new(Metrics::new());
        let mut endpoints = Endpoints::new(metrics.clone());
        let config = ServeConfig {
            metrics: local(0),
            process_metrics: false,
            health: local(0),
        };
        assert!(endpoints.configure(&config).is_empty());
        let addrs = endpoints.addresses();
        assert_eq!(addrs.len(), 1, "same host and port: one listener");
        let (status, body) = get(addrs[0], "/metrics");
        assert_eq!(status, 200);
        assert!(body.contains("# TYPE felix_iptables_restore_calls counter"));
        assert!(!body.contains("process_cpu_seconds_total"));
        assert_eq!(get(addrs[0], "/readiness").0, 503);
        metrics.update(|v| {
            v.generation = 1;
            v.in_sync = true;
        });
        let (status, body) = get(addrs[0], "/readiness");
        assert_eq!(status, 200);
        assert!(body.contains("\"ready\":true"), "{body}");
        assert_eq!(get(addrs[0], "/liveness").0, 200);
        assert_eq!(get(addrs[0], "/nothing").0, 404);

        // Unchanged configuration: the same listener keeps running.
        assert!(endpoints.configure(&config).is_empty());
        assert_eq!(endpoints.addresses(), addrs);

        // Health off: the listener is rebound with metrics only.
        let metrics_only = ServeConfig {
            health: None,
            ..config
        };
        assert!(endpoints.configure(&metrics_only).is_empty());
        let now = endpoints.addresses();
        assert_eq!(now.len(), 1);
        assert_eq!(get(now[0], "/readiness").0, 404);
        assert!(TcpStream::connect(addrs[0]).is_err() || addrs[0] == now[0]);

        endpoints.configure(&ServeConfig::default());
        assert!(endpoints.addresses().is_empty());
        assert!(TcpStream::connect(now[0]).is_err(), "closed when disabled");
    }
}
