use super::*;
use crate::collect::tests::{expected, flat};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/chouette/");

fn fixture(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(format!("{DATA}{name}")).expect("fixture");
    serde_json::from_str(&text).expect("json")
}

fn metrics(config: &serde_json::Value) -> K8sMetrics {
    let list = |k: &str| {
        config[k]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    K8sMetrics { node: list("node"), pods: list("pods") }
}

#[test]
fn parity_with_the_original_expected_outputs() {
    let summary = fixture("k8s_stats_summary.json");
    let exp = fixture("k8s_stats_summary.expected.json");
    let default = K8s::summary_points(&summary, &metrics(&exp["config_default"]));
    assert_eq!(flat(&default), expected(&exp["default"]));
    let all = K8s::summary_points(&summary, &metrics(&exp["config_all"]));
    // The original dropped the node network's zeros; they are sent now (compat §7 item 24).
    let zeros: Vec<_> = all.iter().filter(|p| p.value == 0.0).map(|p| p.name.as_str()).collect();
    assert_eq!(zeros, ["Chouette.k8s.node.network.rxBytes", "Chouette.k8s.node.network.txBytes"]);
    let non_zero: Vec<_> = all.into_iter().filter(|p| p.value != 0.0).collect();
    assert_eq!(flat(&non_zero), expected(&exp["all"]));
}

#[test]
fn edge_cases_as_the_original() {
    let m = K8sMetrics { node: vec!["inodes".into()], pods: vec!["memory".into(), "network".into()] };
    assert!(K8s::summary_points(&serde_json::json!({}), &m).is_empty());
    let no_ref = serde_json::json!({"pods": [{"cpu": {"usageNanoCores": 5}}]});
    let points = K8s::summary_points(&no_ref, &m);
    assert_eq!(flat(&points), [("Chouette.k8s.pods.running".to_owned(), vec![], 1.0)]);
}

#[test]
fn configuration_errors_name_the_variable() {
    let mut vars = PluginVars::new();
    let err = K8s::from_vars(&vars).err().expect("no ip").to_string();
    assert!(err.contains("K8S_STATS_SERVICE_IP"), "{err}");
    vars.insert("K8S_STATS_SERVICE_IP".into(), "10.0.0.1".into());
    let err = K8s::from_vars(&vars).err().expect("no cert").to_string();
    assert!(err.contains("K8S_CERT_PATH"), "{err}");
    vars.insert("K8S_CERT_PATH".into(), "/nonexistent/cert.pem".into());
    vars.insert("K8S_KEY_PATH".into(), "/nonexistent/key.pem".into());
    let err = K8s::from_vars(&vars).err().expect("bad cert").to_string();
    assert!(err.contains("K8S_CERT_PATH") && err.contains("/nonexistent/cert.pem"), "{err}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with `openssl`.
struct Pki {
    dir: std::path::PathBuf,
}

impl Pki {
    fn make(tag: &str) -> Option<Pki> {
        let dir = std::env::temp_dir().join(format!("chouette-k8s-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(dir.join("stats")).ok()?;
        let run = |args: &[&str]| {
            Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=chouette-test-ca"]);
        ca.extend([
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        if !run(&ca).ok()?.success() {
            return None;
        }
        std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
            .ok()?;
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").ok()?;
        for who in ["server", "client"] {
            let mut req = vec!["req"];
            req.extend(ec);
            let (key, csr, pem, ext) =
                (format!("{who}.key"), format!("{who}.csr"), format!("{who}.pem"), format!("{who}.ext"));
            req.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=chouette-test"]);
            run(&req).ok()?;
            let sign = [
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ];
            if !run(&sign).ok()?.success() {
                return None;
            }
        }
        // `s_server -HTTP` sends the file as is (no header for non-.html files in OpenSSL 3): the
        // file carries its own HTTP/1.0 head, and the connection closes after it.
        let body = std::fs::read_to_string(format!("{DATA}k8s_stats_summary.json")).ok()?;
        let response = format!("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{body}");
        std::fs::write(dir.join("stats/summary"), response).ok()?;
        Some(Pki { dir })
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// `openssl s_server -HTTP` serving `stats/summary`, requiring a client certificate.
    fn serve(&self, port: u16) -> Option<Child> {
        let child = Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-HTTP",
                "-accept",
                &port.to_string(),
                "-cert",
                "server.pem",
                "-key",
                "server.key",
            ])
            .args(["-CAfile", "ca.pem", "-Verify", "1", "-verify_return_error"])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(child)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

#[test]
fn verified_tls_with_a_client_certificate() {
    let Some(pki) = Pki::make("tls") else {
        eprintln!("openssl missing: skipping the TLS test");
        return;
    };
    let port = free_port();
    let Some(mut server) = pki.serve(port) else {
        eprintln!("openssl s_server did not start: skipping the TLS test");
        return;
    };
    let mut vars = PluginVars::new();
    vars.insert("K8S_STATS_SERVICE_IP".into(), "127.0.0.1".into());
    vars.insert("K8S_STATS_SERVICE_PORT".into(), port.to_string());
    vars.insert("K8S_CERT_PATH".into(), pki.path("client.pem"));
    vars.insert("K8S_KEY_PATH".into(), pki.path("client.key"));
    // Without the cluster CA the kubelet's certificate is refused: TLS is verified.
    let mut unverified = K8s::from_vars(&vars).expect("config");
    let err = unverified.collect(0.0).expect_err("unknown issuer").to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    vars.insert("K8S_CA_PATH".into(), pki.path("ca.pem"));
    let mut k8s = K8s::from_vars(&vars).expect("config");
    let points = k8s.collect(0.0).expect("verified fetch");
    assert!(points.iter().any(|p| p.name == "Chouette.k8s.node.fs.inodesFree" && p.value == 1600584.0));
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn an_unreachable_kubelet_is_an_error_within_the_timeout() {
    let Some(pki) = Pki::make("unreachable") else { return };
    let tls =
        tls_config(&pki.path("client.pem"), &pki.path("client.key"), Some(&pki.path("ca.pem"))).expect("tls");
    let url = format!("https://127.0.0.1:{}/stats/summary", free_port());
    let mut k8s = K8s::new(url, tls, Duration::from_millis(500), K8sMetrics::default());
    let start = Instant::now();
    assert!(k8s.collect(0.0).is_err());
    assert!(start.elapsed() < Duration::from_secs(3));
}
