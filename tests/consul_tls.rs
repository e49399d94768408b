//! CONSUL_CACERT: TLS to a Consul whose certificate is signed by the user's
//! own CA. A throwaway CA and server certificate are made with openssl(1);
//! `openssl s_server -WWW` serves the leader endpoint as a static file.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{free_port, temp_dir, wait_until};
use oracle_watchdog::consul::{ConsulClient, ConsulError, ConsulSettings};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn https_consul_is_trusted_only_with_its_ca() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIP: openssl(1) is not installed");
        return;
    }
    let dir = temp_dir("consul-tls");
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=test consul CA",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    std::fs::create_dir_all(dir.join("v1/status")).unwrap();
    std::fs::write(dir.join("v1/status/leader"), "\"127.0.0.1:8300\"").unwrap();
    let port = free_port();
    let server = Server(
        Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-WWW",
                "-accept",
                &port.to_string(),
                "-cert",
                "server.pem",
                "-key",
                "server.key",
            ])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server"),
    );
    assert!(wait_until(Duration::from_secs(5), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));

    let ca = dir.join("ca.pem");
    let addr = format!("127.0.0.1:{port}");
    let with_ca = ConsulSettings::resolve(None, |k| match k {
        "CONSUL_HTTP_ADDR" => Some(addr.clone()),
        "CONSUL_HTTP_SSL" => Some("true".into()),
        "CONSUL_CACERT" => Some(ca.to_string_lossy().into_owned()),
        _ => None,
    })
    .unwrap();
    assert!(with_ca.base_url.starts_with("https://"));
    assert_eq!(
        ConsulClient::new(&with_ca).leader(),
        Ok(Some("127.0.0.1:8300".into()))
    );

    // Without the CA the bundled public roots must refuse the certificate.
    let without_ca = ConsulSettings::resolve(None, |k| match k {
        "CONSUL_HTTP_ADDR" => Some(format!("https://{addr}")),
        _ => None,
    })
    .unwrap();
    let err = ConsulClient::new(&without_ca).leader().unwrap_err();
    assert!(matches!(err, ConsulError::Unreachable { .. }), "{err:?}");
    drop(server);
}
