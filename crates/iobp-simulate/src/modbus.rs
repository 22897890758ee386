//! A Modbus device: a server (slave) for the read functions, over Modbus TCP or RTU on a
//! serial port, whose values change over time — the peer of the `modbus` source's tests and
//! of commissioning (`iobufferpro simulate modbus`).
//!
//! The protocol is written here rather than taken from `tokio-modbus` (which the engine's
//! client uses): its RTU server is tied to `tokio-serial`, a second serial stack, and a test
//! device must misbehave on demand (answer exceptions, stop answering). Implementing the
//! server independently also means the engine's client is tested against a second reading of
//! the specification, not against itself.
//!
//! # What it answers
//! Functions 1 (coils), 2 (discrete inputs), 3 (holding registers) and 4 (input registers);
//! any other function gets exception 1 (illegal function), a count outside 1–2000 bits or
//! 1–125 registers exception 3, a block past address 65535 exception 2.
//!
//! Holding and input registers hold the same values (`t`: seconds since the device started):
//!
//! | address | value |
//! |---|---|
//! | 0 | requests answered so far (wraps at 65536): it grows with every poll |
//! | 1 | whole seconds since start (wraps) |
//! | 2–3 | milliseconds since start, u32, high word first |
//! | 4 | a sine wave: `round(1000 + 1000 · sin(2π t / 60))`, 0–2000, one period a minute |
//! | 5 | a ramp: 0 to 999, one step every 100 ms, then again from 0 |
//! | 6–7 | the sine wave's `sin(2π t / 60)` as f32, high word first |
//! | any other `a` | `a` itself (a fixed pattern, so decoded values can be checked) |
//!
//! Coil and discrete input `a` is on when `a + t` is even: every bit flips once a second.
//!
//! # Misbehaving on purpose ([`Control`])
//! - An address range answers an exception (default 2, illegal data address) to every read
//!   that touches it.
//! - The device can go silent: requests are read and never answered (a timeout at the
//!   client), until it is told to answer again.
//! - With a unit id set, it answers only that unit (RTU: others are silence, as on a shared
//!   bus; TCP: exception 11, gateway target device failed to respond).

use std::f64::consts::PI;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{Endpoint, Error, Link};

/// Exception 1: the function is not supported.
pub const ILLEGAL_FUNCTION: u8 = 1;
/// Exception 2: the address (range) does not exist.
pub const ILLEGAL_DATA_ADDRESS: u8 = 2;
/// Exception 3: the count is out of range.
pub const ILLEGAL_DATA_VALUE: u8 = 3;
/// Exception 11: a gateway's target device did not respond.
pub const GATEWAY_TARGET_FAILED: u8 = 11;

/// Largest PDU (function code and data) of Modbus: 253 bytes.
const MAX_PDU: usize = 253;
/// An RTU request of the read functions: unit, function, address, count, CRC.
const RTU_READ_REQUEST: usize = 8;
/// Bytes an RTU receiver keeps while looking for a request; anything longer is noise.
const RTU_BUFFER: usize = 256;

/// What a running device does; shared with whoever steers it (a test, the command line).
#[derive(Debug)]
pub struct Control {
    started: Instant,
    /// Answer only this unit; `None`: any unit (but never broadcast, 0, on RTU).
    unit: Option<u8>,
    exception: Mutex<Option<ExceptionRange>>,
    silent: AtomicBool,
    answered: AtomicU64,
    ignored: AtomicU64,
}

/// Reads touching `from..=to` answer exception `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExceptionRange {
    /// First address.
    pub from: u16,
    /// Last address.
    pub to: u16,
    /// The exception code answered.
    pub code: u8,
}

impl Control {
    /// A device answering `unit` (`None`: any).
    #[must_use]
    pub fn new(unit: Option<u8>) -> Arc<Self> {
        Arc::new(Control {
            started: Instant::now(),
            unit,
            exception: Mutex::new(None),
            silent: AtomicBool::new(false),
            answered: AtomicU64::new(0),
            ignored: AtomicU64::new(0),
        })
    }

    /// Reads touching the range answer an exception from now on (`None`: none do).
    pub fn set_exception(&self, range: Option<ExceptionRange>) {
        *self.exception.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = range;
    }

    /// Stop answering (`true`) or answer again (`false`).
    pub fn set_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::Relaxed);
    }

    /// Requests answered so far (exceptions included).
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Requests read and not answered (silent, another unit, broken frames).
    pub fn ignored(&self) -> u64 {
        self.ignored.load(Ordering::Relaxed)
    }

    fn exception_for(&self, address: u16, count: u16) -> Option<u8> {
        let range = *self.exception.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let r = range?;
        let last = u32::from(address) + u32::from(count) - 1;
        (u32::from(address) <= u32::from(r.to) && last >= u32::from(r.from)).then_some(r.code)
    }

    /// The value of register `a` now (see the module docs).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // bounded by construction
    pub fn register(&self, a: u16) -> u16 {
        let elapsed = self.started.elapsed();
        let t = elapsed.as_secs_f64();
        let ms = u32::try_from(elapsed.as_millis() & 0xFFFF_FFFF).unwrap_or(0);
        let sine = (2.0 * PI * t / 60.0).sin();
        match a {
            0 => (self.answered() & 0xFFFF) as u16,
            1 => (elapsed.as_secs() & 0xFFFF) as u16,
            2 => (ms >> 16) as u16,
            3 => (ms & 0xFFFF) as u16,
            4 => (1000.0 + 1000.0 * sine).round() as u16,
            5 => ((elapsed.as_millis() / 100) % 1000) as u16,
            6 => ((sine as f32).to_bits() >> 16) as u16,
            7 => ((sine as f32).to_bits() & 0xFFFF) as u16,
            other => other,
        }
    }

    /// The value of coil or discrete input `a` now.
    pub fn bit(&self, a: u16) -> bool {
        (u64::from(a) + self.started.elapsed().as_secs()).is_multiple_of(2)
    }

    /// The response PDU to request PDU `req` for `unit`, or `None` to stay silent.
    fn answer(&self, unit: u8, req: &[u8], rtu: bool) -> Option<Vec<u8>> {
        if self.silent.load(Ordering::Relaxed) || (rtu && unit == 0) {
            self.ignored.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let fc = *req.first()?;
        if self.unit.is_some_and(|u| u != unit) {
            if rtu {
                self.ignored.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            return Some(self.exception(fc, GATEWAY_TARGET_FAILED));
        }
        if !(1..=4).contains(&fc) {
            return Some(self.exception(fc, ILLEGAL_FUNCTION));
        }
        let [_, a_hi, a_lo, n_hi, n_lo] = req else {
            return Some(self.exception(fc, ILLEGAL_DATA_VALUE));
        };
        let (address, count) =
            (u16::from_be_bytes([*a_hi, *a_lo]), u16::from_be_bytes([*n_hi, *n_lo]));
        let bits = fc <= 2;
        let max = if bits { 2000 } else { 125 };
        if count == 0 || count > max {
            return Some(self.exception(fc, ILLEGAL_DATA_VALUE));
        }
        if u32::from(address) + u32::from(count) > 65_536 {
            return Some(self.exception(fc, ILLEGAL_DATA_ADDRESS));
        }
        if let Some(code) = self.exception_for(address, count) {
            return Some(self.exception(fc, code));
        }
        // Counted before the values are read, so register 0 includes this request.
        self.answered.fetch_add(1, Ordering::Relaxed);
        let mut out = vec![fc];
        if bits {
            let mut bytes = vec![0u8; usize::from(count).div_ceil(8)];
            for i in 0..count {
                if self.bit(address + i) {
                    bytes[usize::from(i / 8)] |= 1 << (i % 8);
                }
            }
            out.push(u8::try_from(bytes.len()).unwrap_or(u8::MAX));
            out.extend(bytes);
        } else {
            out.push(u8::try_from(count * 2).unwrap_or(u8::MAX));
            for i in 0..count {
                out.extend(self.register(address + i).to_be_bytes());
            }
        }
        Some(out)
    }

    fn exception(&self, fc: u8, code: u8) -> Vec<u8> {
        self.answered.fetch_add(1, Ordering::Relaxed);
        vec![fc | 0x80, code]
    }
}

/// Serves the device on `endpoint` until an error of the link: a TCP listener serves every
/// client side by side; a serial port one line (reopened by the caller if it fails).
///
/// # Errors
/// The link could not be opened, or (serial) failed.
pub async fn serve(endpoint: Endpoint, control: Arc<Control>) -> Result<(), Error> {
    match endpoint.link().clone() {
        Link::Listen(_) => loop {
            let stream = endpoint.next().await?;
            let control = control.clone();
            tokio::spawn(async move {
                // A client that went away is no fault of the device.
                let _ = serve_tcp(stream, &control).await;
            });
        },
        Link::Connect(_) => serve_tcp(endpoint.next().await?, &control)
            .await
            .map_err(|e| Error::Link { link: endpoint.link().to_string(), source: e }),
        Link::Serial { baud, .. } => serve_rtu(endpoint.next().await?, &control, baud)
            .await
            .map_err(|e| Error::Link { link: endpoint.link().to_string(), source: e }),
    }
}

/// Modbus TCP on one connection: MBAP header (transaction, protocol 0, length, unit), then the
/// PDU. Returns when the client closes.
///
/// # Errors
/// Reading or writing failed, or the client sent something that is not Modbus TCP.
pub async fn serve_tcp<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    control: &Control,
) -> std::io::Result<()> {
    let mut head = [0u8; 7];
    let mut pdu = [0u8; MAX_PDU];
    loop {
        match s.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let len = usize::from(u16::from_be_bytes([head[4], head[5]]));
        if head[2..4] != [0, 0] || !(2..=MAX_PDU + 1).contains(&len) {
            // Not Modbus: there is no way to find the next frame in the stream.
            return Err(std::io::Error::other("not a Modbus TCP frame"));
        }
        let pdu = &mut pdu[..len - 1];
        s.read_exact(pdu).await?;
        let Some(answer) = control.answer(head[6], pdu, false) else { continue };
        let mut out = Vec::with_capacity(7 + answer.len());
        out.extend(&head[..4]);
        out.extend(u16::try_from(answer.len() + 1).unwrap_or(u16::MAX).to_be_bytes());
        out.push(head[6]);
        out.extend(answer);
        s.write_all(&out).await?;
        s.flush().await?;
    }
}

/// Modbus RTU on a line (a serial port, a pseudo-terminal's other end): unit, PDU, CRC-16
/// (low byte first). Read requests are 8 bytes; bytes that do not make a request with a good
/// CRC are dropped one at a time until one does, and a pause on the line (3.5 characters, at
/// least 20 ms) starts a new frame. Returns when the line closes.
///
/// # Errors
/// Reading or writing failed.
pub async fn serve_rtu<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    control: &Control,
    baud: u32,
) -> std::io::Result<()> {
    let gap = silent_interval(baud);
    let mut buf: Vec<u8> = Vec::with_capacity(RTU_BUFFER);
    let mut chunk = [0u8; 64];
    loop {
        let n = if buf.is_empty() {
            s.read(&mut chunk).await?
        } else if let Ok(r) =
            tokio::time::timeout(gap.max(Duration::from_millis(20)), s.read(&mut chunk)).await
        {
            r?
        } else {
            // A pause: what is there is no request; start over.
            control.ignored.fetch_add(1, Ordering::Relaxed);
            buf.clear();
            continue;
        };
        if n == 0 {
            return Ok(());
        }
        buf.extend(&chunk[..n]);
        if buf.len() > RTU_BUFFER {
            buf.clear();
            continue;
        }
        while buf.len() >= RTU_READ_REQUEST {
            let frame = &buf[..RTU_READ_REQUEST];
            let crc = crc16(&frame[..6]).to_le_bytes();
            if frame[6..] != crc {
                buf.remove(0);
                continue;
            }
            let (unit, pdu) = (frame[0], frame[1..6].to_vec());
            buf.drain(..RTU_READ_REQUEST);
            if let Some(answer) = control.answer(unit, &pdu, true) {
                let mut out = Vec::with_capacity(answer.len() + 3);
                out.push(unit);
                out.extend(answer);
                out.extend(crc16(&out).to_le_bytes());
                s.write_all(&out).await?;
                s.flush().await?;
            }
        }
    }
}

/// Modbus RTU's frame gap: 3.5 character times (11 bits each), at least 1.75 ms (the
/// specification's fixed value above 19200 baud).
pub fn silent_interval(baud: u32) -> Duration {
    let micros = 38_500_000 / u64::from(baud.max(1));
    Duration::from_micros(micros.max(1750))
}

/// CRC-16/MODBUS (polynomial 0xA001 reflected, initial 0xFFFF).
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for b in bytes {
        crc ^= u16::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xA001 } else { crc >> 1 };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_specifications_example() {
        // Read 2 holding registers at 0x006B from unit 0x11: CRC 0x8776, sent 76 87.
        assert_eq!(crc16(&[0x11, 0x03, 0x00, 0x6B, 0x00, 0x03]).to_le_bytes(), [0x76, 0x87]);
    }

    #[test]
    fn answers_reads_exceptions_and_silence() {
        let c = Control::new(Some(1));
        let regs = c.answer(1, &[3, 0, 100, 0, 2], false).expect("answer");
        assert_eq!(regs, vec![3, 4, 0, 100, 0, 101]);
        assert_eq!(c.answer(1, &[3, 0, 0, 0, 126], false), Some(vec![0x83, 3]));
        assert_eq!(c.answer(1, &[3, 0xFF, 0xFF, 0, 2], false), Some(vec![0x83, 2]));
        assert_eq!(c.answer(1, &[5, 0, 0, 0xFF, 0], false), Some(vec![0x85, 1]));
        assert_eq!(c.answer(2, &[3, 0, 0, 0, 1], true), None, "another unit on RTU");
        assert_eq!(c.answer(2, &[3, 0, 0, 0, 1], false), Some(vec![0x83, 11]));
        c.set_exception(Some(ExceptionRange { from: 200, to: 209, code: 2 }));
        assert_eq!(c.answer(1, &[4, 0, 198, 0, 5], false), Some(vec![0x84, 2]));
        assert!(c.answer(1, &[4, 0, 190, 0, 5], false).is_some_and(|a| a[0] == 4));
        c.set_silent(true);
        assert_eq!(c.answer(1, &[3, 0, 0, 0, 1], false), None);
        let bits = Control::new(None).answer(7, &[1, 0, 0, 0, 10], true).expect("bits");
        assert_eq!((bits[0], bits[1], bits.len()), (1, 2, 4));
    }
}
