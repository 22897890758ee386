//! `tcp_client` and `tcp_server` destinations: how they open connections; the connector loop
//! ([`crate::connector`]) runs the byte-stream delivery on each.
//!
//! `tcp_server` with several receivers: the most recently connected receiver gets the
//! messages and any earlier one is closed. A receiver that reconnects after a network
//! problem thereby takes over at once, instead of waiting for its dead predecessor's
//! connection to time out. Messages in flight on the replaced connection return to Pending
//! and go to the new receiver (at-least-once; counted as retries).

use std::time::Duration;

use iobp_config::{TcpClientSpec, TcpServerSpec};
use tokio::sync::mpsc;

use super::stream::StreamDelivery;
use crate::connector::{Opened, Opener, Shape};
use crate::net::{Accepted, Dial, Stream, keepalive};
use crate::side::{SideCtx, SideError};
use crate::stats::Side;

pub(crate) async fn client(ctx: SideCtx, spec: TcpClientSpec) {
    let session = StreamDelivery {
        framing: spec.framing.clone(),
        ack: spec.ack.clone(),
        write_timeout: spec.write_timeout_ms,
    };
    crate::connector::run(ctx, Side::Destination, Dial::new(&spec), session).await;
}

pub(crate) async fn server(ctx: SideCtx, spec: TcpServerSpec) {
    let session = StreamDelivery {
        framing: spec.framing.clone(),
        ack: spec.ack.clone(),
        write_timeout: spec.write_timeout_ms,
    };
    let receivers = Receivers {
        addr: format!("{}:{}", spec.host, spec.port),
        spec,
        cancel: ctx.cancel.clone(),
        accepted: None,
    };
    crate::connector::run(ctx, Side::Destination, receivers, session).await;
}

type Accepting = mpsc::Receiver<Result<Opened<Stream>, SideError>>;

/// The receivers of a `tcp_server` destination, the newest of which is delivered to.
struct Receivers {
    spec: TcpServerSpec,
    addr: String,
    cancel: tokio_util::sync::CancellationToken,
    /// Receivers accepted (and through their TLS handshake) by the accepting task.
    accepted: Option<Accepting>,
}

impl Opener for Receivers {
    type Io = Stream;

    fn shape(&self) -> Shape {
        Shape::Newest
    }

    fn opening(&self) -> Option<String> {
        Some(format!("binding {}", self.addr))
    }

    fn waiting(&self) -> String {
        format!("listening on {}, waiting for a receiver", self.addr)
    }

    async fn prepare(&mut self) -> Result<(), SideError> {
        let (listener, acceptor) = crate::net::listen(&self.spec).await?;
        // Accepting runs in a task of its own, beside delivery, so that a newer receiver can
        // take over mid-stream; it ends with the pair or when this side is dropped.
        let (tx, rx) = mpsc::channel(4);
        let cancel = self.cancel.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tx.closed() => return,
                    r = listener.accept() => r,
                };
                let next = match accepted {
                    Ok((tcp, from)) => {
                        keepalive(&tcp);
                        // Handshakes run here, one at a time: receivers are few, and a slow
                        // one only delays the next receiver, never delivery to the current.
                        match (Accepted { tcp, tls: acceptor.clone() }).handshake().await {
                            Ok(stream) => {
                                let detail = format!("receiver {from} connected");
                                Ok(Opened::new(stream, from.to_string().into(), detail))
                            }
                            Err(e) => Err(e.within(&format!("receiver {from}"))),
                        }
                    }
                    Err(e) => {
                        // Out of file descriptors and similar: pause instead of spinning.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Err(SideError::Peer(format!("accept: {e}")))
                    }
                };
                if tx.send(next).await.is_err() {
                    return;
                }
            }
        });
        self.accepted = Some(rx);
        Ok(())
    }

    async fn open(&mut self) -> Result<Opened<Stream>, SideError> {
        // `prepare` started accepting before the first `open`; the accepting task ends only
        // with the pair, which the loop notices first.
        match &mut self.accepted {
            Some(rx) => match rx.recv().await {
                Some(next) => next,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }
}
