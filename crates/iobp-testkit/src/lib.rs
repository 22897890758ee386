//! # iobp-testkit: fixtures for tests and the benchmark (never a dependency of shipped code)
//!
//! The one place the test suites of every crate (and the benchmark) take their fixtures from,
//! so that a fix to a fixture — a flake found in one suite — reaches all of them:
//!
//! - [`ports`]: free ports, never the same one twice in a process, and unique loopback
//!   addresses (parallel tests never collide).
//! - [`pki`] ([`TestPki`]): a throwaway certificate authority with server, client, expired and
//!   foreign certificates, as PEM files. The only way tests make certificates.
//! - [`receiver`]: a receiving application on a TCP port (plain or TLS, optionally
//!   acknowledging each line) that takes connections in the order they were accepted;
//!   blocking ([`receiver::Receiver`]) and async ([`receiver::AsyncReceiver`]) fronts.
//! - [`pty`] (Linux): a pseudo-terminal pair behind a symlink, standing in for a serial
//!   device.
//! - [`brokers`] ([`Broker`]): real `mosquitto` and `nats-server` processes on loopback, each
//!   with its own port, directory and log; killed with SIGKILL and restarted at will.
//! - [`streams`]: JetStream streams created as operators are told to, read back with their
//!   message ids, and the duplicate-window checks.
//! - [`wait`]: waiting for a condition with a deadline, instead of sleeping for a while.
//! - [`nats_auth`]: NATS JWT authentication (operator, accounts, users' `.creds` files and the
//!   `nats-server` configuration trusting them), generated per test like the PKI.
//!
//! Fixtures panic when the machine cannot provide them (a test has nothing better to do), and
//! say so in their `# Panics` sections; [`ports`] also has error-returning functions for the
//! benchmark.

#![warn(missing_docs)]

pub mod brokers;
pub mod nats_auth;
pub mod pki;
pub mod ports;
#[cfg(target_os = "linux")]
pub mod pty;
pub mod receiver;
pub mod streams;
pub mod wait;

pub use brokers::{Broker, MosquittoConfig};
pub use pki::TestPki;
