//! Client-certificate login (`sslLogin` on `<server>/ssllogin`) over TLS with the
//! hub's CA (`serverca`), against the fake hub serving HTTPS; certificates are made
//! with the openssl command (tests/setup-host.sh installs it).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use koji_adjutant::hub::{
    AuthMethod, HubError, HubSession, HubTransport, RetryPolicy, TransportError, TransportOptions,
};
use koji_adjutant::xmlrpc::Value;
use support::fakehub::{FakeHub, TlsSetup, CLOSED};
use support::{spawn, wait_until};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn p(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }
}

/// CA, hub certificate for 127.0.0.1, client certificates builder1 and stranger (signed
/// by another CA), each client as one PEM file with certificate and key.
fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for ca in ["ca", "otherca"] {
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-sha256",
                "-days",
                "2",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
                "-subj",
                &format!("/CN={ca}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
    }
    std::fs::write(d.join("hub.ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n").unwrap();
    std::fs::write(
        d.join("client.ext"),
        "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    for (name, ca, ext) in [
        ("hub", "ca", "hub.ext"),
        ("builder1", "ca", "client.ext"),
        ("stranger", "otherca", "client.ext"),
    ] {
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-sha256",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-sha256",
                "-days",
                "2",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.crt"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-out",
                &format!("{name}.crt"),
                "-extfile",
                ext,
            ],
        );
        let pem = [
            std::fs::read(d.join(format!("{name}.crt"))).unwrap(),
            std::fs::read(d.join(format!("{name}.key"))).unwrap(),
        ]
        .concat();
        std::fs::write(d.join(format!("{name}.pem")), pem).unwrap();
    }
    Pki { dir }
}

async fn tls_hub(pki: &Pki) -> FakeHub {
    FakeHub::start_tls(
        1,
        TlsSetup {
            server_cert: pki.p("hub.crt"),
            server_key: pki.p("hub.key"),
            client_ca: pki.p("ca.crt"),
            clients: vec![(pki.p("builder1.pem"), "builder1".into())],
        },
    )
    .await
}

fn session(
    url: &str,
    cert: Option<PathBuf>,
    serverca: PathBuf,
) -> Result<HubSession, TransportError> {
    let mut o = TransportOptions::new(url.parse().unwrap());
    o.cert = cert;
    o.serverca = Some(serverca);
    let t = Arc::new(HubTransport::new(o)?);
    Ok(HubSession::new(
        t,
        AuthMethod::Certificate,
        RetryPolicy::default(),
        true,
    ))
}

#[tokio::test]
async fn ssl_login_with_a_client_certificate() {
    let pki = pki();
    let hub = tls_hub(&pki).await;
    // an http:// server URL is switched to https for sslLogin, as koji's client does
    let url = hub.url().replace("https://", "http://");
    let s = session(&url, Some(pki.p("builder1.pem")), pki.p("ca.crt")).unwrap();
    s.login().await.unwrap();
    s.exclusive_session(false).await.unwrap();
    assert_eq!(s.host_get_id().await.unwrap(), 1);
    let logins = hub.calls_of("sslLogin");
    assert_eq!(logins.len(), 1);
    assert!(logins[0].outcome.is_ok());
    // renewal re-runs sslLogin with renew=True
    hub.expire_sessions();
    assert_eq!(s.host_get_id().await.unwrap(), 1);
    assert_eq!(hub.calls_of("sslLogin").len(), 2);
}

#[tokio::test]
async fn certificate_problems_are_not_retried() {
    let pki = pki();
    let hub = tls_hub(&pki).await;
    // the hub's certificate is not signed by the CA we trust
    let s = session(
        &hub.url(),
        Some(pki.p("builder1.pem")),
        pki.p("otherca.crt"),
    )
    .unwrap();
    let e = s.login().await.unwrap_err();
    assert!(
        matches!(
            &e,
            HubError::Transport {
                source: TransportError::Certificate { .. },
                ..
            }
        ),
        "{e}"
    );
    assert!(hub.calls_of("sslLogin").is_empty());
    // a client certificate the hub does not accept: the TLS handshake fails
    let s = session(&hub.url(), Some(pki.p("stranger.pem")), pki.p("ca.crt")).unwrap();
    assert!(s.login().await.is_err());
    assert!(hub.calls_of("sslLogin").is_empty());
    // no client certificate at all: the hub refuses sslLogin
    let s = session(&hub.url(), None, pki.p("ca.crt")).unwrap();
    let e = s.login().await.unwrap_err();
    assert!(e.is_fault(koji_adjutant::xmlrpc::FaultKind::Auth), "{e}");
    // a cert file without its key is a setup error naming the file
    let e = session(&hub.url(), Some(pki.p("builder1.crt")), pki.p("ca.crt")).unwrap_err();
    assert!(e.to_string().contains("builder1.crt"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_logs_in_with_its_certificate() {
    let pki = pki();
    let hub = tls_hub(&pki).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = support::config(
        &hub.url(),
        1,
        dir.path(),
        &format!(
            "user = \npassword = \ncert = {}\nserverca = {}",
            pki.p("builder1.pem").display(),
            pki.p("ca.crt").display()
        ),
    );
    let d = spawn(cfg, None).await;
    let t = hub.make_task("sleep", vec![Value::Int(0)]);
    wait_until("closed", || hub.task(t).state == CLOSED).await;
    assert!(
        hub.calls_of("login").is_empty(),
        "the certificate takes precedence over a password"
    );
    assert_eq!(hub.calls_of("sslLogin").len(), 1);
    d.stop().await;
}
