//! The throwaway cluster's TLS certificates: a CA, the server's certificate for the
//! loopback names, another CA no one trusts, and a client certificate for `cert_user`.

use std::process::{Command, Stdio};

use super::cluster::*;
use crate::cluster_error::{err, ClusterError};

impl Cluster {
    /// A test CA, a server certificate for localhost and 127.0.0.1 signed by it, a client
    /// certificate for `cert_user`, and an unrelated CA; EC P-256 keys.
    pub(crate) fn make_certificates(&self) -> Result<(), ClusterError> {
        let dir = self.root.join("tls");
        std::fs::create_dir_all(&dir).map_err(|e| err(format!("creating the TLS dir: {e}")))?;
        let openssl = |args: &[&str]| -> Result<(), ClusterError> {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| {
                    err(format!(
                        "running openssl: {e} (install it: `apt-get install openssl`)"
                    ))
                })?;
            if out.status.success() {
                Ok(())
            } else {
                Err(err(format!(
                    "openssl {} failed: {}",
                    args.first().copied().unwrap_or(""),
                    String::from_utf8_lossy(&out.stderr)
                )))
            }
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for ca in ["ca", "other_ca"] {
            let (key, crt, subj) = (
                format!("{ca}.key"),
                format!("{ca}.crt"),
                format!("/CN=wirepool test {ca}"),
            );
            let mut args = vec!["req", "-x509"];
            args.extend_from_slice(&ec);
            args.extend_from_slice(&[
                "-keyout",
                &key,
                "-out",
                &crt,
                "-days",
                "3",
                "-subj",
                &subj,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
            openssl(&args)?;
        }
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .map_err(|e| err(format!("writing server.ext: {e}")))?;
        std::fs::write(
            dir.join("client.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        )
        .map_err(|e| err(format!("writing client.ext: {e}")))?;
        for (name, cn) in [("server", "localhost"), ("client", "cert_user")] {
            let (key, csr, crt, ext, subj) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
                format!("{name}.ext"),
                format!("/CN={cn}"),
            );
            let mut args = vec!["req"];
            args.extend_from_slice(&ec);
            args.extend_from_slice(&["-keyout", &key, "-out", &csr, "-subj", &subj]);
            openssl(&args)?;
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "3",
                "-extfile",
                &ext,
            ])?;
        }
        // The server reads its key as its own user, and only from a private file.
        for f in ["server.key", "server.crt", "ca.crt"] {
            self.chown(&dir.join(f))?;
        }
        std::fs::set_permissions(
            dir.join("server.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .map_err(|e| err(format!("chmod server.key: {e}")))?;
        self.chown(&dir)?;
        Ok(())
    }
}
