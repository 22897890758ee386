//! Real message brokers as child processes on loopback: Debian's `mosquitto` (MQTT) and
//! `nats-server` (JetStream). Each broker gets a free port and its own directory (configuration,
//! store, log); [`Broker::kill`] is SIGKILL (nothing flushed beyond what the broker already
//! wrote), [`Broker::restart`] starts it again on the same port and store, and dropping it kills
//! it (printing its log when a test is panicking). Tests never skip when a broker is missing:
//! the panicking constructors say which Debian package to install; the benchmark uses the
//! fallible ones.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports;

/// A broker process with its port, directory and log.
#[derive(Debug)]
pub struct Broker {
    child: Option<Child>,
    program: PathBuf,
    args: Vec<OsString>,
    scheme: &'static str,
    host: String,
    port: u16,
    dir: tempfile::TempDir,
}

/// How a test mosquitto is configured.
#[derive(Debug, Clone, Default)]
pub struct MosquittoConfig {
    /// Only this user (with this password) may connect; anyone when `None`.
    pub user: Option<(String, String)>,
    /// Keep a store written at every change (so a SIGKILL loses nothing the broker
    /// acknowledged); in memory only when false (fast, for brokers that never die).
    pub persistent: bool,
    /// More configuration lines, appended as they are (TLS files, ACLs, limits).
    pub extra: String,
    /// The URL scheme (`mqtt` when empty; `mqtts` for a TLS listener set up in `extra`).
    pub scheme: Option<&'static str>,
    /// The host name in the URL (`127.0.0.1` when empty; `localhost` to match a test
    /// certificate).
    pub url_host: Option<String>,
}

fn installed(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

impl Broker {
    /// Starts mosquitto as `config` says.
    ///
    /// # Errors
    /// When mosquitto is not installed, its configuration cannot be written, or it does not
    /// listen within 10 s (the error carries its log).
    pub fn try_mosquitto(config: &MosquittoConfig) -> io::Result<Broker> {
        let program =
            installed(&["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]).ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "mosquitto (Debian package mosquitto)")
            })?;
        let dir = tempfile::tempdir()?;
        let port = ports::free_port()?;
        // `user root`: as root, mosquitto would otherwise drop to user `mosquitto`, which
        // cannot write the test's directory.
        let mut conf = format!(
            "listener {port} 127.0.0.1\nuser root\npersistence {}\npersistence_location {}/\n\
             autosave_on_changes true\nautosave_interval 1\nmax_queued_messages 10000000\n\
             max_inflight_messages 1000\nlog_dest stderr\n",
            config.persistent,
            dir.path().display()
        );
        match &config.user {
            None => conf.push_str("allow_anonymous true\n"),
            Some((user, password)) => {
                let file = dir.path().join("passwords");
                let ok = Command::new("mosquitto_passwd")
                    .args(["-b", "-c"])
                    .arg(&file)
                    .args([user, password])
                    .status()?;
                if !ok.success() {
                    return Err(io::Error::other(format!("mosquitto_passwd failed: {ok}")));
                }
                let _ = writeln!(conf, "allow_anonymous false\npassword_file {}", file.display());
            }
        }
        conf.push_str(&config.extra);
        conf.push('\n');
        let conf_file = dir.path().join("mosquitto.conf");
        std::fs::write(&conf_file, conf)?;
        let mut broker = Broker {
            child: None,
            program,
            args: vec!["-c".into(), conf_file.into()],
            scheme: config.scheme.unwrap_or("mqtt"),
            host: config.url_host.clone().unwrap_or_else(|| "127.0.0.1".into()),
            port,
            dir,
        };
        broker.try_restart()?;
        Ok(broker)
    }

    /// Starts mosquitto as `config` says.
    ///
    /// # Panics
    /// When it cannot (mosquitto missing, or not listening within 10 s).
    #[must_use]
    pub fn mosquitto(config: &MosquittoConfig) -> Broker {
        Self::try_mosquitto(config).unwrap_or_else(|e| panic!("starting mosquitto: {e}"))
    }

    /// Starts `nats-server` with JetStream (file store in the broker's directory) on `ip`,
    /// with `extra` arguments (e.g. `--user u --pass p`, `--tls …`; a `--tls` argument makes
    /// the URL scheme `tls`).
    ///
    /// # Errors
    /// When nats-server is not installed or does not listen within 10 s.
    pub fn try_nats(ip: &str, extra: &[&str]) -> io::Result<Broker> {
        let program =
            installed(&["/usr/sbin/nats-server", "/usr/bin/nats-server"]).ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "nats-server (Debian package nats-server)")
            })?;
        let dir = tempfile::tempdir()?;
        let addr: std::net::IpAddr = ip
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{ip}: {e}")))?;
        let port = ports::free_port_on(addr)?;
        let mut args: Vec<OsString> = vec!["-js".into(), "-sd".into()];
        args.push(dir.path().join("store").into());
        args.extend(["-a", ip, "-p"].map(OsString::from));
        args.push(port.to_string().into());
        args.extend(extra.iter().map(OsString::from));
        let mut broker = Broker {
            child: None,
            program,
            args,
            scheme: if extra.contains(&"--tls") { "tls" } else { "nats" },
            host: ip.to_string(),
            port,
            dir,
        };
        broker.try_restart()?;
        Ok(broker)
    }

    /// Starts `nats-server` with JetStream on `ip` (see [`Broker::try_nats`]).
    ///
    /// # Panics
    /// When it cannot.
    #[must_use]
    pub fn nats(ip: &str, extra: &[&str]) -> Broker {
        Self::try_nats(ip, extra).unwrap_or_else(|e| panic!("starting nats-server: {e}"))
    }

    /// `scheme://host:port`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.host, self.port)
    }

    /// The port it listens on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its directory (configuration, store, log).
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What it wrote to stderr so far.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    /// SIGKILL: no shutdown, nothing saved beyond what the broker already wrote.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGHUP: mosquitto reloads its password and ACL files (a broker operator's change,
    /// without a restart).
    ///
    /// # Panics
    /// When it is not running or the signal cannot be sent.
    pub fn reload(&self) {
        let pid = self.child.as_ref().expect("the broker is running").id();
        let ok = Command::new("kill").args(["-HUP", &pid.to_string()]).status();
        assert!(
            ok.as_ref().is_ok_and(std::process::ExitStatus::success),
            "SIGHUP to the broker: {ok:?}"
        );
    }

    /// Starts it (again, after [`Broker::kill`]) on the same port and store, and waits until
    /// it listens.
    ///
    /// # Panics
    /// When it does not listen within 10 s.
    pub fn restart(&mut self) {
        self.try_restart().unwrap_or_else(|e| panic!("restarting the broker: {e}"));
    }

    fn try_restart(&mut self) -> io::Result<()> {
        self.kill();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = (self.host_ip(), self.port);
        while let Err(e) = std::net::TcpStream::connect(addr) {
            if Instant::now() > deadline {
                self.kill();
                return Err(io::Error::other(format!(
                    "{} not listening on port {}: {e}; log:\n{}",
                    self.program.display(),
                    self.port,
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The address it listens on (the URL's host may be a name such as `localhost`).
    fn host_ip(&self) -> &str {
        if self.host.parse::<std::net::IpAddr>().is_ok() { &self.host } else { "127.0.0.1" }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("{}'s log:\n{}", self.program.display(), self.log());
        }
    }
}
