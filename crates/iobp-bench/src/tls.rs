//! TLS on both sides of a pair: throughput and latency at 10,000 msg/s next to the plain
//! pair's. Certificates come from a lab PKI generated for the run (the product's own
//! `tls lab-pki` generator); the bench is the TLS client that sends and the TLS server that
//! receives.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::instance::{line_framing, pair_json};
use crate::load::{blast, connect, latency, throughput};
use crate::receiver::{Shared, receiver, verified, wait_count};
use crate::report::{percentile, print_latency};

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The TLS pair's PKI, ports, and the bench's own receiver (TLS server) and sender (TLS
/// client).
pub(crate) struct Phase {
    pki: iobp_tls::LabPki,
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    src: u16,
    dst: u16,
}

impl Phase {
    /// Generates the PKI into `dir`.
    pub(crate) fn prepare(dir: &Path) -> anyhow::Result<Phase> {
        let pki = iobp_tls::generate_lab_pki(dir, &["localhost".into(), "127.0.0.1".into()])?;
        let acceptor =
            TlsAcceptor::from(iobp_tls::server_config(&pki.server_cert, &pki.server_key)?);
        let connector = TlsConnector::from(iobp_tls::client_config(&iobp_tls::ClientTls {
            ca: Some(pki.ca.clone()),
            ..iobp_tls::ClientTls::default()
        })?);
        let src = iobp_testkit::ports::free_port()?;
        let dst = iobp_testkit::ports::free_port()?;
        Ok(Phase { pki, acceptor, connector, src, dst })
    }

    /// The pair, `tls`: a TLS server source, a TLS client destination that verifies the
    /// receiver against the lab CA.
    pub(crate) fn pair(&self, size: usize) -> String {
        let (cert, key, ca) =
            (self.pki.server_cert.display(), self.pki.server_key.display(), self.pki.ca.display());
        pair_json(
            "tls",
            &format!(
                r#"{{"type": "tcp_server", "host": "127.0.0.1", "port": {}, {},
                    "tls": {{"enabled": true, "cert": "{cert}", "key": "{key}"}}}}"#,
                self.src,
                line_framing(size)
            ),
            self.dst,
            &format!(r#", "tls": {{"enabled": true, "ca": "{ca}"}}"#),
            size,
        )
    }

    async fn connect(
        &self,
        addr: SocketAddr,
    ) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = connect(addr).await?;
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost")?;
        self.connector.connect(name, tcp).await.context("TLS handshake with the instance")
    }

    /// Throughput of `n` messages and latency at 10,000 msg/s for `latency_secs`, compared
    /// with the plain pair's; whether every message arrived exactly once and in order.
    #[allow(clippy::cast_precision_loss)] // figures for display
    pub(crate) async fn run(
        self,
        plain: &crate::throughput::Figures,
        n: u64,
        latency_secs: u64,
        size: usize,
        epoch: Instant,
    ) -> anyhow::Result<bool> {
        let got: Shared = Arc::default();
        let listener = TcpListener::bind(localhost(self.dst)).await?;
        let _recv =
            tokio::spawn(receiver(listener, Some(self.acceptor.clone()), got.clone(), epoch));
        let mut conn = self.connect(localhost(self.src)).await?;
        blast(&mut conn, 0, 10_000, size, epoch).await?;
        wait_count(&got, 10_000, Duration::from_secs(30)).await?;
        let mut seq = 10_000;
        let (rate, el) = throughput(&mut conn, &got, seq, n, size, epoch).await?;
        seq += n;
        println!(
            "TLS throughput:         {rate:>12.0} msg/s  {:>8.1} MB/s   ({n} messages in {:.2} s; TLS 1.3 in and out)",
            rate * size as f64 / 1e6,
            el.as_secs_f64()
        );
        let (lat, sent) = latency(&mut conn, &got, seq, 10_000, latency_secs, size, epoch).await?;
        seq += sent;
        print_latency("TLS latency", 10_000, &lat);
        let p99 = percentile(&lat, 0.99);
        println!(
            "TLS vs plain:           throughput {:.0} % of plain (costs {:.0} %, target <= 30 %), p99 at 10,000 msg/s {p99:.3} ms vs {:.3} ms",
            100.0 * rate / plain.rate,
            100.0 * (1.0 - rate / plain.rate),
            plain.p99_at_10k
        );
        Ok(verified("TLS", &got, seq))
    }
}
