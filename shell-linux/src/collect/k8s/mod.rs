//! `k8s` (compat §6.4): the kubelet Summary API, `GET https://IP:PORT/stats/summary`, with a
//! client certificate and **verified** TLS (webpki roots plus `K8S_CA_PATH`, the cluster CA;
//! never the original's `verify=False`), and a timeout.
//!
//! Variables ([`Settings`]): `K8S_STATS_SERVICE_IP` (required), `K8S_STATS_SERVICE_PORT`,
//! `K8S_CERT_PATH` and `K8S_KEY_PATH` (required, PEM), `K8S_CA_PATH` (PEM, optional),
//! `K8S_METRICS`; their defaults are in the table ([`crate::config::vars`]).
//!
//! | option | metrics | tags |
//! |---|---|---|
//! | node `cpu` | `Chouette.k8s.node.cpu.usageNanoCores`, `.usageCoreNanoSeconds` | `node_name:` |
//! | node `ram` | `Chouette.k8s.node.memory.rssBytes`, `.usageBytes`, `.availableBytes`, `.workingSetBytes` | `node_name:` |
//! | node `network` | `Chouette.k8s.node.network.rxBytes`, `.txBytes` | `node_name:` |
//! | node `inodes` | `Chouette.k8s.node.fs.inodesFree` | `node_name:` |
//! | node `filesystem` | `Chouette.k8s.node.fs.availableBytes`, `.usedBytes` | `node_name:` |
//! | pods `cpu` | `Chouette.k8s.pod.cpu.usageNanoCores` | `namespace:`, `pod_name:` |
//! | pods `memory` | `Chouette.k8s.pod.memory.rssBytes`, `.usageBytes` | same |
//! | pods `network` | `Chouette.k8s.pod.network.rxBytes`, `.txBytes` | same |
//! | always | `Chouette.k8s.pods.running` (number of pods listed) | |

use std::sync::Arc;
use std::time::Duration;

use super::json::{Json, JsonDoc};
use super::{CollectError, Collector, PluginConfigError, PluginVars, Point};
use crate::config::vars::{self, Var};
use crate::limits::K8S_MAX_BODY_BYTES;

/// The request timeout (the original's 5 s).
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Which metrics to emit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct K8sMetrics {
    /// Node options (`cpu`, `ram`, `network`, `inodes`, `filesystem`).
    pub node: Vec<String>,
    /// Pod options (`cpu`, `memory`, `network`).
    pub pods: Vec<String>,
}

/// The `k8s` collector.
pub struct K8s {
    url: String,
    agent: ureq::Agent,
    metrics: K8sMetrics,
}

/// The `k8s` collector's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `https://{K8S_STATS_SERVICE_IP}:{K8S_STATS_SERVICE_PORT}/stats/summary`.
    pub url: String,
    /// `K8S_CERT_PATH`.
    pub cert: String,
    /// `K8S_KEY_PATH`.
    pub key: String,
    /// `K8S_CA_PATH`.
    pub ca: Option<String>,
    /// `K8S_METRICS`.
    pub metrics: K8sMetrics,
}

fn required(vars: &PluginVars, var: &Var) -> Result<String, PluginConfigError> {
    var.text(vars)?.ok_or_else(|| var.missing("by the k8s plugin").into())
}

fn read_pem(name: &str, path: &str) -> Result<Vec<u8>, PluginConfigError> {
    std::fs::read(path).map_err(|e| PluginConfigError::new(name, path, format!("a readable PEM file ({e})")))
}

impl Settings {
    /// From the plugin variables, through their table entries; nothing is read yet.
    pub fn from_vars(vars: &PluginVars) -> Result<Settings, PluginConfigError> {
        let ip = required(vars, &vars::K8S_STATS_SERVICE_IP)?;
        let port = vars::K8S_STATS_SERVICE_PORT.port(vars)?;
        let port = port.ok_or_else(|| vars::K8S_STATS_SERVICE_PORT.missing(""))?;
        let host = if ip.contains(':') && !ip.starts_with('[') { format!("[{ip}]") } else { ip };
        let map = vars::K8S_METRICS.list_map(vars)?;
        Ok(Settings {
            url: format!("https://{host}:{port}/stats/summary"),
            cert: required(vars, &vars::K8S_CERT_PATH)?,
            key: required(vars, &vars::K8S_KEY_PATH)?,
            ca: vars::K8S_CA_PATH.text(vars)?,
            metrics: K8sMetrics {
                node: map.get("node").cloned().unwrap_or_default(),
                pods: map.get("pods").cloned().unwrap_or_default(),
            },
        })
    }
}

impl K8s {
    /// From its [`Settings`]; reads the certificate, key and CA now, so a bad path is a startup
    /// error naming the variable.
    pub fn from_vars(vars: &PluginVars) -> Result<K8s, PluginConfigError> {
        let settings = Settings::from_vars(vars)?;
        let tls = tls_config(&settings.cert, &settings.key, settings.ca.as_deref())?;
        Ok(K8s::new(settings.url, tls, TIMEOUT, settings.metrics))
    }

    /// A collector fetching `url` with `tls` and `timeout`.
    pub fn new(url: String, tls: Arc<rustls::ClientConfig>, timeout: Duration, metrics: K8sMetrics) -> K8s {
        let agent = ureq::AgentBuilder::new()
            .tls_config(tls)
            .timeout_connect(timeout)
            .timeout(timeout)
            .redirects(0)
            .user_agent(&format!("chouette/{}", env!("CARGO_PKG_VERSION")))
            .build();
        K8s { url, agent, metrics }
    }

    fn fetch(&self) -> Result<Vec<u8>, CollectError> {
        let response = match self.agent.get(&self.url).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, _)) => {
                return Err(CollectError::remote(&self.url, format!("HTTP {code}")))
            }
            Err(ureq::Error::Transport(t)) => return Err(CollectError::remote(&self.url, t)),
        };
        let mut body = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(response.into_reader(), K8S_MAX_BODY_BYTES),
            &mut body,
        )
        .map_err(|e| CollectError::io(self.url.clone(), e))?;
        Ok(body)
    }

    /// The points of a Summary API document, in the original's order.
    pub fn summary_points<D: JsonDoc>(summary: D, metrics: &K8sMetrics) -> Vec<Point> {
        let mut out = Vec::new();
        if let Some(node) = summary.get("node") {
            let name = node.get("nodeName");
            let name = name.as_ref().and_then(|n| n.as_str());
            let name = name.as_deref().unwrap_or("None");
            let wants = |o: &str| metrics.node.iter().any(|n| n == o);
            let groups: [(&str, &str, &[&str]); 5] = [
                ("cpu", "cpu", &["usageNanoCores", "usageCoreNanoSeconds"]),
                ("ram", "memory", &["rssBytes", "usageBytes", "availableBytes", "workingSetBytes"]),
                ("network", "network", &["rxBytes", "txBytes"]),
                ("inodes", "fs", &["inodesFree"]),
                ("filesystem", "fs", &["availableBytes", "usedBytes"]),
            ];
            for (option, section, fields) in groups {
                if !wants(option) {
                    continue;
                }
                for field in fields {
                    if let Some(v) = node.get(section).and_then(|s| s.get(field)).and_then(|v| v.as_f64()) {
                        out.push(
                            Point::new(format!("Chouette.k8s.node.{section}.{field}"), v)
                                .tag("node_name", name),
                        );
                    }
                }
            }
        }
        let pods = summary.get("pods").and_then(|p| p.elements()).unwrap_or_default();
        for pod in &pods {
            let Some(pod_ref) = pod.get("podRef") else { continue };
            let (namespace, pod_name) = (pod_ref.get("namespace"), pod_ref.get("name"));
            let namespace = namespace.as_ref().and_then(|n| n.as_str());
            let namespace = namespace.as_deref().unwrap_or("None");
            let pod_name = pod_name.as_ref().and_then(|n| n.as_str());
            let pod_name = pod_name.as_deref().unwrap_or("None");
            let groups: [(&str, &[&str]); 3] = [
                ("cpu", &["usageNanoCores"]),
                ("memory", &["rssBytes", "usageBytes"]),
                ("network", &["rxBytes", "txBytes"]),
            ];
            for (option, fields) in groups {
                if !metrics.pods.iter().any(|p| p == option) {
                    continue;
                }
                for field in fields {
                    if let Some(v) = pod.get(option).and_then(|s| s.get(field)).and_then(|v| v.as_f64()) {
                        out.push(
                            Point::new(format!("Chouette.k8s.pod.{option}.{field}"), v)
                                .tag("namespace", namespace)
                                .tag("pod_name", pod_name),
                        );
                    }
                }
            }
        }
        if !pods.is_empty() {
            out.push(Point::new("Chouette.k8s.pods.running", pods.len() as f64));
        }
        out
    }
}

impl Collector for K8s {
    fn name(&self) -> &str {
        "k8s"
    }

    fn timeout(&self) -> Duration {
        TIMEOUT * 2
    }

    fn collect(&mut self, _now: f64) -> Result<Vec<Point>, CollectError> {
        let body = self.fetch()?;
        let summary = Json::parse(&body).map_err(|e| CollectError::parse(&self.url, e))?;
        Ok(K8s::summary_points(summary, &self.metrics))
    }
}

/// rustls client configuration: webpki roots plus the certificates of `ca` (when given), and the
/// client certificate chain `cert` with its private key `key` (all PEM files).
pub fn tls_config(
    cert: &str,
    key: &str,
    ca: Option<&str>,
) -> Result<Arc<rustls::ClientConfig>, PluginConfigError> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(ca) = ca {
        let pem = read_pem("K8S_CA_PATH", ca)?;
        let mut reader = pem.as_slice();
        let certs: Vec<_> = rustls_pemfile::certs(&mut reader).filter_map(Result::ok).collect();
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(PluginConfigError::new(
                "K8S_CA_PATH",
                ca,
                "a PEM file with at least one CA certificate",
            ));
        }
    }
    let pem = read_pem("K8S_CERT_PATH", cert)?;
    let chain: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice()).filter_map(Result::ok).collect();
    if chain.is_empty() {
        return Err(PluginConfigError::new("K8S_CERT_PATH", cert, "a PEM file with the client certificate"));
    }
    let pem = read_pem("K8S_KEY_PATH", key)?;
    let private = rustls_pemfile::private_key(&mut pem.as_slice()).ok().flatten().ok_or_else(|| {
        PluginConfigError::new("K8S_KEY_PATH", key, "a PEM file with the client's private key")
    })?;
    let config = rustls::ClientConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| PluginConfigError::new("K8S_CERT_PATH", cert, e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, private)
        .map_err(|e| {
            PluginConfigError::new("K8S_KEY_PATH", key, format!("a key matching K8S_CERT_PATH ({e})"))
        })?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests;
