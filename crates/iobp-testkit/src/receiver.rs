//! A receiving application for tests: listens on a TCP port (plain or TLS), takes what every
//! connection sends, and keeps it as bytes and as lines; optionally answers every line with an
//! acknowledgement byte (a destination with `"ack": "byte"` then counts a message delivered
//! only once the receiver has it, so stopping the receiver loses nothing).
//!
//! **In accept order.** A connection's data is taken only once the connection accepted before
//! it has ended (or [`PREVIOUS_CONNECTION_GRACE`] passed). A destination closes its connection
//! before it opens the next one (stop, edit, reconnect, `kill -9`), so the old connection's
//! bytes all reached this machine first; reading connections in parallel threads would let the
//! scheduler put a new connection's lines before an old one's last lines (seen under load as
//! "first arrived after a later one" in the crash and fault tests).
//!
//! **Lines.** A line is what comes before a `\n` (without it, and without a `\r` before it);
//! what a connection sent after its last `\n` counts as a line when the connection ends.
//! Lines are kept per connection, so a connection cut in the middle of a line never joins its
//! piece to the next connection's first line.
//!
//! **Two fronts, one receiver.** The receiver runs on threads of its own, so it works the same
//! in blocking and in async tests. [`Receiver`]'s waits block the calling thread;
//! [`AsyncReceiver`] is the same receiver with waits that yield to the tokio runtime.
//!
//! **Stopping** ([`Receiver::stop`], or dropping it) closes the listener and every connection:
//! the receiving application goes down, as far as its peers can tell. [`Receiver::restart`]
//! brings it back on the same address, collecting into the same [`Received`].

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::wait;

/// How long a connection waits for the one accepted before it to end before it is read anyway
/// (a peer that leaves a connection open must not stall the receiver for good).
pub const PREVIOUS_CONNECTION_GRACE: Duration = Duration::from_secs(10);

/// The acknowledgement byte of `"ack": "byte"` (ASCII ACK).
pub const ACK: u8 = 0x06;

/// How long [`ReceiverBuilder::start`] retries binding an address still in use (a receiver
/// restarted where another one just stopped).
const BIND_RETRY: Duration = Duration::from_secs(10);

/// How often the accept loop looks for a new connection or a stop.
const ACCEPT_POLL: Duration = Duration::from_millis(5);

/// What one or more receivers took: a handle that clones cheaply and sees every later
/// arrival. Receivers [sharing](ReceiverBuilder::sharing) one keep a single arrival order
/// across all of them, each line tagged with its receiver's name.
#[derive(Clone, Default)]
pub struct Received(Arc<Mutex<Collected>>);

#[derive(Default)]
struct Collected {
    /// Every byte, connection after connection (receivers sharing: in arrival order).
    bytes: Vec<u8>,
    /// Every line with the name of the receiver that took it, in arrival order.
    lines: Vec<(&'static str, String)>,
}

impl Received {
    /// An empty collection, for receivers to [share](ReceiverBuilder::sharing).
    pub fn new() -> Received {
        Received::default()
    }

    fn lock(&self) -> MutexGuard<'_, Collected> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every line so far, in arrival order.
    pub fn lines(&self) -> Vec<String> {
        self.lock().lines.iter().map(|(_, l)| l.clone()).collect()
    }

    /// The lines the receiver named `name` took, in arrival order.
    pub fn lines_from(&self, name: &str) -> Vec<String> {
        self.lock().lines.iter().filter(|(n, _)| *n == name).map(|(_, l)| l.clone()).collect()
    }

    /// Every line with the name of the receiver that took it, in arrival order.
    pub fn tagged_lines(&self) -> Vec<(&'static str, String)> {
        self.lock().lines.clone()
    }

    /// How many lines arrived.
    pub fn line_count(&self) -> usize {
        self.lock().lines.len()
    }

    /// How many lines the receiver named `name` took.
    pub fn line_count_from(&self, name: &str) -> usize {
        self.lock().lines.iter().filter(|(n, _)| *n == name).count()
    }

    /// Every byte so far, connection after connection.
    pub fn bytes(&self) -> Vec<u8> {
        self.lock().bytes.clone()
    }

    /// How many bytes arrived.
    pub fn byte_count(&self) -> usize {
        self.lock().bytes.len()
    }

    /// Every line, once at least `n` arrived (the check both fronts poll).
    fn lines_once(&self, n: usize) -> wait::Check<Vec<String>> {
        let c = self.lock();
        if c.lines.len() >= n {
            Ok(c.lines.iter().map(|(_, l)| l.clone()).collect())
        } else {
            let mut last = format!("only {} of {n} lines arrived", c.lines.len());
            if let Some((_, l)) = c.lines.last() {
                let _ = write!(last, ", the last {:?}", l.chars().take(80).collect::<String>());
            }
            Err(last)
        }
    }

    /// Every byte, once at least `n` arrived.
    fn bytes_once(&self, n: usize) -> wait::Check<Vec<u8>> {
        let c = self.lock();
        if c.bytes.len() >= n {
            Ok(c.bytes.clone())
        } else {
            Err(format!("only {} of {n} bytes arrived", c.bytes.len()))
        }
    }

    /// Waits until at least `n` lines arrived; returns every line.
    ///
    /// # Panics
    /// After `secs` seconds, saying how many arrived.
    pub fn wait_lines(&self, n: usize, secs: u64) -> Vec<String> {
        wait::poll(secs, &format!("{n} lines"), || self.lines_once(n))
    }

    /// Waits until at least `n` bytes arrived; returns every byte.
    ///
    /// # Panics
    /// After `secs` seconds, saying how many arrived.
    pub fn wait_bytes(&self, n: usize, secs: u64) -> Vec<u8> {
        wait::poll(secs, &format!("{n} bytes"), || self.bytes_once(n))
    }

    /// [`Received::wait_lines`] for async tests.
    ///
    /// # Panics
    /// After `secs` seconds, saying how many arrived.
    pub async fn wait_lines_async(&self, n: usize, secs: u64) -> Vec<String> {
        wait::poll_async(secs, &format!("{n} lines"), || self.lines_once(n)).await
    }

    /// [`Received::wait_bytes`] for async tests.
    ///
    /// # Panics
    /// After `secs` seconds, saying how many arrived.
    pub async fn wait_bytes_async(&self, n: usize, secs: u64) -> Vec<u8> {
        wait::poll_async(secs, &format!("{n} bytes"), || self.bytes_once(n)).await
    }

    /// Takes what `stream` sends until it ends, tagging lines with `name`; answers each line
    /// with `ack` if given.
    fn take(&self, mut stream: impl Read + Write, name: &'static str, ack: Option<u8>) {
        let mut buf = vec![0u8; 64 * 1024];
        // The part of a line that has no `\n` yet.
        let mut partial = Vec::new();
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            let mut complete = 0;
            {
                let mut c = self.lock();
                c.bytes.extend_from_slice(chunk);
                let mut rest = chunk;
                while let Some(at) = rest.iter().position(|&b| b == b'\n') {
                    partial.extend_from_slice(&rest[..at]);
                    c.lines.push((name, line_text(&partial)));
                    partial.clear();
                    rest = &rest[at + 1..];
                    complete += 1;
                }
                partial.extend_from_slice(rest);
            }
            if let Some(byte) = ack
                && complete > 0
                && (stream.write_all(&vec![byte; complete]).is_err() || stream.flush().is_err())
            {
                break;
            }
        }
        if !partial.is_empty() {
            self.lock().lines.push((name, line_text(&partial)));
        }
    }
}

/// A line's text: without a trailing `\r`, invalid UTF-8 replaced.
fn line_text(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8_lossy(line).into_owned()
}

/// How a receiver takes connections.
#[derive(Clone)]
struct Options {
    addr: SocketAddr,
    ack: Option<u8>,
    tls: Option<Arc<rustls::ServerConfig>>,
    into: Received,
    name: &'static str,
}

/// A receiver to be started: [`Receiver::on`], then options, then [`ReceiverBuilder::start`].
pub struct ReceiverBuilder(Options);

impl ReceiverBuilder {
    /// Answers every line with [`ACK`] once it is taken.
    #[must_use]
    pub fn acking(mut self) -> ReceiverBuilder {
        self.0.ack = Some(ACK);
        self
    }

    /// Accepts TLS connections with this configuration (plain ones fail their handshake).
    #[must_use]
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> ReceiverBuilder {
        self.0.tls = Some(config);
        self
    }

    /// Collects into `into`, with other receivers, tagging lines with `name`.
    #[must_use]
    pub fn sharing(mut self, into: &Received, name: &'static str) -> ReceiverBuilder {
        self.0.into = into.clone();
        self.0.name = name;
        self
    }

    /// Binds the address (retrying for a while if it is still in use) and starts taking
    /// connections.
    ///
    /// # Panics
    /// If the address cannot be bound.
    pub fn start(self) -> Receiver {
        let mut r = Receiver {
            options: self.0,
            stop: Arc::default(),
            open: Arc::default(),
            acceptor: None,
        };
        r.listen();
        r
    }

    /// [`ReceiverBuilder::start`], with waits for async tests.
    ///
    /// # Panics
    /// If the address cannot be bound.
    pub fn start_async(self) -> AsyncReceiver {
        AsyncReceiver(self.start())
    }
}

/// A receiving application on a TCP port; see the [module docs](self). Its [`Received`]
/// methods are reachable on it directly.
pub struct Receiver {
    options: Options,
    stop: Arc<AtomicBool>,
    /// Every connection accepted (a handle to shut it down on stop).
    open: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Receiver {
    /// A receiver on `addr` (see [`ReceiverBuilder`] for the options).
    ///
    /// # Panics
    /// If `addr` names no address.
    pub fn on(addr: impl ToSocketAddrs) -> ReceiverBuilder {
        let addr = addr
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| panic!("a receiver needs an address"));
        ReceiverBuilder(Options { addr, ack: None, tls: None, into: Received::new(), name: "" })
    }

    /// A plain receiver on `addr`, started.
    ///
    /// # Panics
    /// If `addr` names no address or cannot be bound.
    pub fn start(addr: impl ToSocketAddrs) -> Receiver {
        Receiver::on(addr).start()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.options.addr
    }

    /// What it took.
    pub fn received(&self) -> &Received {
        &self.options.into
    }

    /// Stops listening and closes every connection it accepted. Idempotent.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        for c in self.open.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Stops (if running) and listens again on the same address, with the same options and
    /// the same [`Received`].
    ///
    /// # Panics
    /// If the address cannot be bound again.
    pub fn restart(&mut self) {
        self.stop();
        self.stop = Arc::default();
        self.listen();
    }

    fn listen(&mut self) {
        let addr = self.options.addr;
        let deadline = Instant::now() + BIND_RETRY;
        let listener = loop {
            match TcpListener::bind(addr) {
                Ok(l) => break l,
                Err(e) => {
                    assert!(Instant::now() < deadline, "cannot bind a receiver on {addr}: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let (stop, open, options) = (self.stop.clone(), self.open.clone(), self.options.clone());
        self.acceptor = Some(std::thread::spawn(move || {
            // Ends when the connection accepted last ends: the next one waits for it.
            let mut previous: Option<mpsc::Receiver<()>> = None;
            while !stop.load(Ordering::Relaxed) {
                let Ok((conn, _)) = listener.accept() else {
                    std::thread::sleep(ACCEPT_POLL);
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                // A handle to close it on stop, and one to close it when it was taken: the
                // first keeps the socket open otherwise (a peer refused by the TLS handshake
                // must see the connection end).
                let (Ok(on_stop), Ok(when_taken)) = (conn.try_clone(), conn.try_clone()) else {
                    continue;
                };
                open.lock().unwrap_or_else(PoisonError::into_inner).push(on_stop);
                let before = previous.take();
                let (ended, next) = mpsc::channel::<()>();
                previous = Some(next);
                let options = options.clone();
                std::thread::spawn(move || {
                    if let Some(b) = before {
                        let _ = b.recv_timeout(PREVIOUS_CONNECTION_GRACE);
                    }
                    serve(conn, &options);
                    let _ = when_taken.shutdown(Shutdown::Both);
                    drop(ended);
                });
            }
        }));
    }
}

/// Takes one connection's data, through TLS if configured.
fn serve(conn: TcpStream, o: &Options) {
    match &o.tls {
        None => o.into.take(conn, o.name, o.ack),
        Some(config) => {
            let Ok(tls) = rustls::ServerConnection::new(config.clone()) else { return };
            o.into.take(rustls::StreamOwned::new(tls, conn), o.name, o.ack);
        }
    }
}

impl std::ops::Deref for Receiver {
    type Target = Received;

    fn deref(&self) -> &Received {
        &self.options.into
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A [`Receiver`] whose waits yield to the tokio runtime instead of blocking a worker (an
/// engine under test runs on the same runtime).
pub struct AsyncReceiver(Receiver);

impl AsyncReceiver {
    /// A plain receiver on `addr`, started.
    ///
    /// # Panics
    /// If `addr` names no address or cannot be bound.
    pub fn start(addr: impl ToSocketAddrs) -> AsyncReceiver {
        Receiver::on(addr).start_async()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.0.addr()
    }

    /// What it took.
    pub fn received(&self) -> &Received {
        self.0.received()
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lines()
    }

    /// Every byte so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.bytes()
    }

    /// How many lines arrived.
    pub fn line_count(&self) -> usize {
        self.0.line_count()
    }

    /// Waits until at least `n` lines arrived; returns every line.
    ///
    /// # Panics
    /// After `secs` seconds, saying how many arrived.
    pub async fn wait_lines(&self, n: usize, secs: u64) -> Vec<String> {
        self.0.wait_lines_async(n, secs).await
    }

    /// Waits until at least `n` bytes arrived; returns every byte.
    ///
    /// # Panics
    /// After `secs` seconds, saying how many arrived.
    pub async fn wait_bytes(&self, n: usize, secs: u64) -> Vec<u8> {
        self.0.wait_bytes_async(n, secs).await
    }

    /// [`Receiver::stop`].
    pub fn stop(&mut self) {
        self.0.stop();
    }

    /// [`Receiver::restart`].
    ///
    /// # Panics
    /// If the address cannot be bound again.
    pub fn restart(&mut self) {
        self.0.restart();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports;

    fn local(port: u16) -> (&'static str, u16) {
        ("127.0.0.1", port)
    }

    #[test]
    fn a_later_connection_is_read_only_after_the_earlier_one_ended() {
        let port = ports::tcp();
        let r = Receiver::start(local(port));
        let mut first = TcpStream::connect(local(port)).expect("connect");
        first.write_all(b"one\n").expect("send");
        r.wait_lines(1, 5);
        let mut second = TcpStream::connect(local(port)).expect("connect");
        second.write_all(b"three\n").expect("send");
        // The second connection's line waits while the first is open, even though it was
        // sent before the first one's last line.
        first.write_all(b"two\npartial").expect("send");
        wait::until(5, "two lines", || r.line_count() == 2);
        drop(first);
        assert_eq!(r.wait_lines(4, 5), ["one", "two", "partial", "three"]);
        assert_eq!(r.bytes(), b"one\ntwo\npartialthree\n");
    }

    #[test]
    fn an_acking_receiver_answers_each_line_and_stop_closes_its_connections() {
        let port = ports::tcp();
        let mut r = Receiver::on(local(port)).acking().start();
        let mut c = TcpStream::connect(local(port)).expect("connect");
        c.write_all(b"a\r\nb\n").expect("send");
        let mut acks = [0u8; 2];
        c.read_exact(&mut acks).expect("acks");
        assert_eq!(acks, [ACK, ACK]);
        assert_eq!(r.lines(), ["a", "b"], "a CR before the LF is not part of the line");
        r.stop();
        let mut rest = Vec::new();
        c.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        assert_eq!(c.read_to_end(&mut rest).expect("closed by the receiver"), 0);
        assert!(TcpStream::connect(local(port)).is_err(), "no longer listening");
        r.restart();
        let mut c = TcpStream::connect(local(port)).expect("listening again");
        c.write_all(b"c\n").expect("send");
        assert_eq!(r.wait_lines(3, 5), ["a", "b", "c"], "the same collection after a restart");
    }

    #[test]
    fn receivers_sharing_a_collection_keep_one_arrival_order() {
        let (p1, p2) = (ports::tcp(), ports::tcp());
        let all = Received::new();
        let _r1 = Receiver::on(local(p1)).sharing(&all, "one").start();
        let _r2 = Receiver::on(local(p2)).sharing(&all, "two").start();
        for (port, line) in [(p1, "x"), (p2, "y"), (p1, "z")] {
            let n = all.line_count();
            let mut c = TcpStream::connect(local(port)).expect("connect");
            c.write_all(format!("{line}\n").as_bytes()).expect("send");
            wait::until(5, line, || all.line_count() > n);
        }
        assert_eq!(
            all.tagged_lines(),
            [("one", "x".into()), ("two", "y".into()), ("one", "z".into())]
        );
        assert_eq!(all.lines_from("one"), ["x", "z"]);
    }

    #[test]
    fn a_tls_receiver_takes_lines_over_tls() {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        let dir = tempfile::tempdir().expect("tmp");
        let pki = crate::TestPki::generate(dir.path());
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs = |path| -> Vec<CertificateDer<'static>> {
            CertificateDer::pem_file_iter(path).expect("PEM").map(|c| c.expect("cert")).collect()
        };
        let key = PrivateKeyDer::from_pem_file(&pki.server_key).expect("key");
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs(&pki.server_cert), key)
            .expect("server config");
        let port = ports::tcp();
        let r = Receiver::on(local(port)).tls(Arc::new(config)).start();
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(certs(&pki.ca));
        let client =
            rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        let name = ServerName::try_from("localhost").expect("name");
        let conn = rustls::ClientConnection::new(Arc::new(client), name).expect("client");
        let mut s = rustls::StreamOwned::new(conn, TcpStream::connect(local(port)).expect("tcp"));
        s.write_all(b"secret\n").expect("send");
        s.flush().expect("flush");
        assert_eq!(r.wait_lines(1, 5), ["secret"]);
        drop(s);
        // A plain connection fails its handshake (the receiver closes it) and adds nothing.
        let mut plain = TcpStream::connect(local(port)).expect("tcp");
        plain.write_all(b"plain\n").expect("send");
        plain.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
        let _ = plain.read_to_end(&mut Vec::new());
        assert_eq!(r.lines(), ["secret"]);
    }
}
