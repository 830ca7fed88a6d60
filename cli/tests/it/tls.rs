//! `[serve.tls]`: both servers over TLS with real clients (Python `requests`, the ADBC Flight
//! SQL driver), mutual TLS, and plain-text clients refused.

use std::path::Path;
use std::process::Command;

use crate::kit::Fixture;

/// Makes a CA, a server certificate for 127.0.0.1 / localhost and a client certificate, all
/// signed by the CA, with the `openssl` command.
pub(crate) fn certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints = CA:FALSE\nextendedKeyUsage = clientAuth\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=assay test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    for who in ["server", "client"] {
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={who}"),
            "-keyout",
            &format!("{who}.key"),
            "-out",
            &format!("{who}.csr"),
        ]);
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            &format!("{who}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{who}.pem"),
        ]
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
        // Extensions make X.509 v3 certificates (webpki takes no v1 certificate).
        args.extend(["-extfile".to_string(), format!("{who}.ext")]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args);
    }
}

/// `requests.get` over HTTPS with the test CA (and a client certificate when `client` is
/// set): the status, or the error's class name when the request fails.
pub(crate) fn https_get(dir: &Path, url: &str, client: bool) -> String {
    const SCRIPT: &str = r#"
import sys, requests
url, ca, cert = sys.argv[1], sys.argv[2], sys.argv[3:]
try:
    r = requests.get(url, verify=ca, cert=tuple(cert) if cert else None, timeout=10)
    print(r.status_code)
except Exception as e:
    print(type(e).__name__)
"#;
    let mut cmd = Command::new("python3");
    cmd.args(["-c", SCRIPT, url, &dir.join("ca.pem").display().to_string()]);
    if client {
        cmd.arg(dir.join("client.pem")).arg(dir.join("client.key"));
    }
    let out = cmd.output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `SELECT 41 + 1` through the ADBC Flight SQL driver over TLS, trusting the test CA (and
/// presenting the client certificate when `client` is set).
pub(crate) fn adbc_over_tls(dir: &Path, uri: &str, client: bool) -> String {
    const SCRIPT: &str = r#"
import sys, os
import adbc_driver_flightsql.dbapi as fs
ca = open(sys.argv[2]).read()
kwargs = {"username": "root", "password": "pw-123456",
          "adbc.flight.sql.client_option.tls_root_certs": ca}
if len(sys.argv) > 3:
    kwargs["adbc.flight.sql.client_option.mtls_cert_chain"] = open(sys.argv[3]).read()
    kwargs["adbc.flight.sql.client_option.mtls_private_key"] = open(sys.argv[4]).read()
try:
    with fs.connect(sys.argv[1], db_kwargs=kwargs) as conn:
        cur = conn.cursor()
        cur.execute("SELECT 41 + 1")
        print(cur.fetch_arrow_table().column(0).to_pylist()[0], flush=True)
except Exception as e:
    print(type(e).__name__, e, flush=True)
os._exit(0)
"#;
    let mut cmd = Command::new("python3");
    cmd.args(["-c", SCRIPT, uri, &dir.join("ca.pem").display().to_string()]);
    if client {
        cmd.arg(dir.join("client.pem")).arg(dir.join("client.key"));
    }
    let out = cmd.output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn both_servers_speak_tls_and_plain_text_clients_are_refused() {
    let f = Fixture::example();
    certificates(f.path());
    let toml = std::fs::read_to_string(f.path().join("assay.toml")).unwrap();
    f.write(
        "assay.toml",
        &format!("{toml}\n[serve.tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n"),
    );
    f.run_ok(&[]);
    let served = f.serve_as_root(std::process::Stdio::null());
    assert!(served.rest.starts_with("https://"), "{}", served.rest);
    assert!(
        served.flight.starts_with("grpc+tls://"),
        "{}",
        served.flight
    );
    let base = served.rest.replace("127.0.0.1", "localhost");
    assert_eq!(https_get(f.path(), &format!("{base}/health"), false), "200");
    assert_eq!(
        https_get(f.path(), &format!("{base}/api/v1/catalog"), false),
        "401"
    );
    assert_eq!(adbc_over_tls(f.path(), &served.flight, false), "42");
    // A plain-text client gets no answer, and the server keeps serving.
    let (status, _) = assay_testkit::http(served.port, "GET", "/health", &[]);
    assert_eq!(status, 0, "plain HTTP on a TLS port must not be answered");
    let plain = served.flight.replace("grpc+tls://", "grpc://");
    let out = adbc_over_tls(f.path(), &plain, false);
    assert_ne!(out, "42", "plain gRPC on a TLS port must fail: {out}");
    assert_eq!(https_get(f.path(), &format!("{base}/health"), false), "200");
    served.stop();
}

#[test]
fn a_client_ca_requires_client_certificates() {
    let f = Fixture::example();
    certificates(f.path());
    let toml = std::fs::read_to_string(f.path().join("assay.toml")).unwrap();
    f.write(
        "assay.toml",
        &format!(
            "{toml}\n[serve.tls]\ncert = \"server.pem\"\nkey = \"server.key\"\nclient_ca = \"ca.pem\"\n"
        ),
    );
    let served = f.serve_as_root(std::process::Stdio::null());
    let base = served.rest.replace("127.0.0.1", "localhost");
    assert_eq!(https_get(f.path(), &format!("{base}/health"), true), "200");
    assert_ne!(https_get(f.path(), &format!("{base}/health"), false), "200");
    assert_eq!(adbc_over_tls(f.path(), &served.flight, true), "42");
    assert_ne!(adbc_over_tls(f.path(), &served.flight, false), "42");
    served.stop();
}

#[test]
fn bad_tls_files_are_named() {
    let f = Fixture::example();
    certificates(f.path());
    let toml = std::fs::read_to_string(f.path().join("assay.toml")).unwrap();
    for (tls, wanted) in [
        (
            "cert = \"nope.pem\"\nkey = \"server.key\"",
            "`serve.tls.cert`: cannot read",
        ),
        (
            "cert = \"server.pem\"\nkey = \"ca.key\"",
            "`serve.tls.key`: does not go with the certificate",
        ),
        (
            "cert = \"server.key\"\nkey = \"server.key\"",
            "`serve.tls.cert`",
        ),
    ] {
        f.write("assay.toml", &format!("{toml}\n[serve.tls]\n{tls}\n"));
        let out = f
            .command(&[
                "serve",
                "--flight-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
            ])
            .env("ASSAY_ADMIN_USER", "root")
            .env("ASSAY_ADMIN_PASSWORD", "pw-123456")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(wanted), "{wanted} in {err}");
    }
}
