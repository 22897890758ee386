//! `tcp_server` and `tcp_client` sources, with or without TLS: how they open connections;
//! the connector loop ([`crate::connector`]) runs the byte-stream intake on each.

use std::time::Duration;

use iobp_config::{TcpClientSpec, TcpServerSpec};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::stream::{StreamIntake, WhenFull};
use crate::connector::{Opened, Opener, Shape};
use crate::net::{Accepted, AfterHandshake, Dial, keepalive};
use crate::side::{SideCtx, SideError};
use crate::stats::Side;

/// How long accepting pauses after a failed accept (out of file descriptors and similar),
/// instead of spinning.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Listens and serves every connection (up to `max_connections`) concurrently, each with its
/// own framing state. Connections over the limit are closed at once and counted.
pub(crate) async fn server(ctx: SideCtx, spec: TcpServerSpec) {
    let session = AfterHandshake(StreamIntake {
        framing: spec.framing.clone(),
        ack: spec.ack.clone(),
        idle_timeout: spec.idle_timeout_s.map(Duration::from_secs),
        when_full: WhenFull::Hold,
    });
    crate::connector::run(ctx, Side::Source, Senders::new(spec), session).await;
}

/// Connects to a server and reads messages from it; reconnects with backoff.
pub(crate) async fn client(ctx: SideCtx, spec: TcpClientSpec) {
    let session = StreamIntake {
        framing: spec.framing.clone(),
        ack: spec.ack.clone(),
        idle_timeout: None,
        when_full: WhenFull::Hold,
    };
    crate::connector::run(ctx, Side::Source, Dial::new(&spec), session).await;
}

/// The senders of a `tcp_server` source: accepted side by side, up to `max_connections`.
struct Senders {
    spec: TcpServerSpec,
    addr: String,
    tls_note: &'static str,
    bound: Option<(TcpListener, Option<TlsAcceptor>)>,
    /// After a failed accept, the next waits until then.
    paused_until: Option<Instant>,
}

impl Senders {
    fn new(spec: TcpServerSpec) -> Self {
        Senders {
            addr: format!("{}:{}", spec.host, spec.port),
            tls_note: if spec.tls.enabled { " (TLS)" } else { "" },
            spec,
            bound: None,
            paused_until: None,
        }
    }
}

impl Opener for Senders {
    type Io = Accepted;

    fn shape(&self) -> Shape {
        Shape::Concurrent { limit: Some(self.spec.max_connections as usize) }
    }

    fn opening(&self) -> Option<String> {
        Some(format!("binding {}", self.addr))
    }

    fn waiting(&self) -> String {
        format!("listening on {}{}, no sender connected", self.addr, self.tls_note)
    }

    fn connected(&self, n: u64) -> String {
        format!("{n} sender(s) connected{}", self.tls_note)
    }

    async fn prepare(&mut self) -> Result<(), SideError> {
        self.bound = Some(crate::net::listen(&self.spec).await?);
        Ok(())
    }

    async fn open(&mut self) -> Result<Opened<Accepted>, SideError> {
        if let Some(t) = self.paused_until {
            tokio::time::sleep_until(t).await;
            self.paused_until = None;
        }
        // `prepare` bound the listener before the first `open`.
        let Some((listener, tls)) = &self.bound else { return std::future::pending().await };
        match listener.accept().await {
            Ok((tcp, from)) => {
                keepalive(&tcp);
                let accepted = Accepted { tcp, tls: tls.clone() };
                Ok(Opened::new(accepted, from.to_string().into(), String::new()))
            }
            Err(e) => {
                self.paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                Err(SideError::Peer(format!("accept on {}: {e}", self.addr)))
            }
        }
    }
}
