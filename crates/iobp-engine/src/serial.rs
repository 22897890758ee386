//! Serial ports (RS-232/RS-485): opening a port with a side's settings, and telling the
//! operator exactly what went wrong or what the driver did not apply.
//!
//! - Settings map onto the operating system's serial configuration (termios on Unix): any
//!   baud rate the driver accepts, 5–8 data bits, parity None/Even/Odd (Mark/Space on Linux
//!   through `CMSPAR`), 1 or 2 stop bits, flow control None, RTS/CTS or XON/XOFF, raw mode.
//! - After applying them the port is read back: a setting the driver silently ignored (a
//!   pseudo-terminal drops parity, for example) is reported by name, never hidden.
//! - A port is used by one side at a time: an advisory lock is held on the device while it is
//!   open, so a second ioBufferPro or pair gets "in use" instead of a garbled stream.
//! - RS-485 (Linux): the driver switches the transceiver with RTS; a driver without RS-485
//!   support is a clear error.
//! - Line health (Linux): while a port is open its UART's error counters (`TIOCGICOUNT`:
//!   overrun, parity, framing, break, buffer overrun) are read every [`LINE_SAMPLE`]; new
//!   errors are added to the side's counts (status, API, `/metrics`) and reported, so a wrong
//!   baud rate or a noisy RS-485 bus shows instead of arriving as silent garbage. Drivers
//!   without the counters (USB adapters often, pseudo-terminals) show none.

use std::path::Path;
use std::sync::Arc;

use iobp_config::{FlowControl, Parity, SerialSpec};
use serial2_tokio::{CharSize, SerialPort, Settings, StopBits};

use crate::connector::{Opened, Opener, Shape};
use crate::side::SideError;
use crate::stats::{LineErrors, PairStats, Side};

/// How often an open port's line error counters are read.
pub(crate) const LINE_SAMPLE: std::time::Duration = std::time::Duration::from_secs(1);

/// What a side holds while its port is open: the advisory lock on the device, and the task
/// reading the line error counters (stopped when the port closes).
#[derive(Debug)]
pub(crate) struct PortHold {
    _lock: std::fs::File,
    sampler: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for PortHold {
    fn drop(&mut self) {
        if let Some(t) = self.sampler.take() {
            t.abort();
        }
    }
}

/// The UART's error counters of the device `fd` is open on; `None` when its driver keeps
/// none.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn line_counters(fd: &impl std::os::fd::AsRawFd) -> Option<LineErrors> {
    /// `struct serial_icounter_struct` of `<linux/serial.h>`.
    #[repr(C)]
    #[derive(Default)]
    struct Icount {
        cts: i32,
        dsr: i32,
        rng: i32,
        dcd: i32,
        rx: i32,
        tx: i32,
        frame: i32,
        overrun: i32,
        parity: i32,
        brk: i32,
        buf_overrun: i32,
        reserved: [i32; 9],
    }
    let mut c = Icount::default();
    // SAFETY: TIOCGICOUNT writes one `serial_icounter_struct` to the pointer, which points at
    // one, alive for the call; the descriptor is open (borrowed for the call).
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGICOUNT, &raw mut c) };
    if r != 0 {
        return None;
    }
    // The kernel's counters are `int`s that wrap; read as unsigned they keep counting.
    let n = |v: i32| u64::from(v.cast_unsigned());
    Some(LineErrors {
        overrun: n(c.overrun),
        parity: n(c.parity),
        framing: n(c.frame),
        breaks: n(c.brk),
        buffer_overrun: n(c.buf_overrun),
    })
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn line_counters<T>(_fd: &T) -> Option<LineErrors> {
    None
}

/// Reads the counters of the port `file` is open on every [`LINE_SAMPLE`] and adds new errors
/// to the side's counts, reporting them; ends at once when the driver keeps no counters.
fn sample_line(
    file: std::fs::File,
    stats: Arc<PairStats>,
    pair: Arc<str>,
    side: Side,
    port: Arc<str>,
) -> Option<tokio::task::JoinHandle<()>> {
    let mut last = line_counters(&file)?;
    stats.side(side).add_line_errors(LineErrors::default());
    Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(LINE_SAMPLE).await;
            let Some(now) = line_counters(&file) else { return };
            let new = now.since(last);
            last = now;
            if new.total() > 0 {
                stats.side(side).add_line_errors(new);
                stats.error(
                    &pair,
                    side,
                    format!(
                        "{port}: line errors {} (a wrong baud rate, parity or a noisy line?)",
                        new.describe()
                    ),
                );
            }
        }
    }))
}

/// An open port and what the operator should know about it.
#[derive(Debug)]
pub(crate) struct OpenPort {
    pub port: SerialPort,
    /// Held while the port is open (advisory exclusive lock on the device).
    pub lock: std::fs::File,
    /// Settings the driver did not apply, in words.
    pub ignored: Vec<String>,
}

/// A serial port of this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// The name to configure: a stable `/dev/serial/by-id/...` link where udev made one (it
    /// survives replugging into another USB socket), else the device (`/dev/ttyUSB0`, `COM3`).
    pub path: String,
    /// For a stable link, the device it points at now.
    pub device: Option<String>,
}

/// Line speeds offered in forms; any other rate the driver accepts works too.
pub const COMMON_BAUD_RATES: &[u32] =
    &[300, 1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115_200, 230_400, 460_800, 921_600];

/// The serial ports of this machine: stable links first, then devices without one.
pub fn available_ports() -> Vec<PortInfo> {
    let mut devices: Vec<String> = SerialPort::available_ports()
        .unwrap_or_default()
        .into_iter()
        .map(|p| p.display().to_string())
        .collect();
    devices.sort();
    let mut out = Vec::new();
    for dir in ["/dev/serial/by-id", "/dev/serial/by-path"] {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut links: Vec<PortInfo> = entries
            .flatten()
            .filter_map(|e| {
                let device = std::fs::canonicalize(e.path()).ok()?.display().to_string();
                Some(PortInfo { path: e.path().display().to_string(), device: Some(device) })
            })
            .collect();
        links.sort_by(|a, b| a.path.cmp(&b.path));
        // by-path only for devices that have no by-id name (adapters without a serial number).
        links.retain(|l| !out.iter().any(|o: &PortInfo| o.device == l.device));
        out.extend(links);
    }
    for d in devices {
        if !out.iter().any(|o| o.device.as_deref() == Some(d.as_str())) {
            out.push(PortInfo { path: d, device: None });
        }
    }
    out
}

/// `9600 8N1, RTS/CTS` style summary of a side's settings.
pub(crate) fn describe(spec: &SerialSpec) -> String {
    let parity = match spec.parity {
        Parity::None => 'N',
        Parity::Even => 'E',
        Parity::Odd => 'O',
        Parity::Mark => 'M',
        Parity::Space => 'S',
    };
    let flow = match spec.flow_control {
        FlowControl::None => "",
        FlowControl::RtsCts => ", RTS/CTS",
        FlowControl::XonXoff => ", XON/XOFF",
    };
    let rs485 = if spec.rs485.is_some() { ", RS-485" } else { "" };
    format!("{} {}{}{}{flow}{rs485}", spec.baud_rate, spec.data_bits, parity, spec.stop_bits)
}

/// The settings a side asks for, built on the port's current ones.
pub(crate) fn desired(spec: &SerialSpec, mut s: Settings) -> Result<Settings, SideError> {
    s.set_raw();
    // What rates a port takes is up to its driver: another adapter may take this one.
    s.set_baud_rate(spec.baud_rate)
        .map_err(|e| SideError::Peer(format!("baud rate {}: {e}", spec.baud_rate)))?;
    s.set_char_size(match spec.data_bits {
        5 => CharSize::Bits5,
        6 => CharSize::Bits6,
        7 => CharSize::Bits7,
        _ => CharSize::Bits8,
    });
    s.set_stop_bits(if spec.stop_bits == 2 { StopBits::Two } else { StopBits::One });
    s.set_flow_control(match spec.flow_control {
        FlowControl::None => serial2_tokio::FlowControl::None,
        FlowControl::RtsCts => serial2_tokio::FlowControl::RtsCts,
        FlowControl::XonXoff => serial2_tokio::FlowControl::XonXoff,
    });
    match spec.parity {
        Parity::None => s.set_parity(serial2_tokio::Parity::None),
        Parity::Even => s.set_parity(serial2_tokio::Parity::Even),
        Parity::Odd => s.set_parity(serial2_tokio::Parity::Odd),
        Parity::Mark | Parity::Space => set_stick_parity(&mut s, spec.parity == Parity::Mark)?,
    }
    Ok(s)
}

/// Mark/Space parity: "stick" parity (`CMSPAR`), Linux only.
#[cfg(target_os = "linux")]
#[expect(clippy::unnecessary_wraps, reason = "fails on other operating systems")]
fn set_stick_parity(s: &mut Settings, mark: bool) -> Result<(), SideError> {
    s.set_parity(if mark { serial2_tokio::Parity::Odd } else { serial2_tokio::Parity::Even });
    s.as_termios_mut().c_cflag |= libc::CMSPAR;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn set_stick_parity(_s: &mut Settings, mark: bool) -> Result<(), SideError> {
    Err(SideError::Config(format!(
        "{} parity is not supported on this operating system",
        if mark { "Mark" } else { "Space" }
    )))
}

/// Which requested settings differ from what the driver reports.
pub(crate) fn ignored_settings(spec: &SerialSpec, got: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(b) = got.get_baud_rate()
        && b != spec.baud_rate
    {
        out.push(format!("baud rate {} (the port reports {b})", spec.baud_rate));
    }
    if let Ok(c) = got.get_char_size()
        && c.as_u8() != spec.data_bits
    {
        out.push(format!("{} data bits (the port reports {})", spec.data_bits, c.as_u8()));
    }
    if let Ok(sb) = got.get_stop_bits()
        && sb.as_u8() != spec.stop_bits
    {
        out.push(format!("{} stop bits (the port reports {})", spec.stop_bits, sb.as_u8()));
    }
    let want_parity = match spec.parity {
        Parity::None => serial2_tokio::Parity::None,
        Parity::Even | Parity::Space => serial2_tokio::Parity::Even,
        Parity::Odd | Parity::Mark => serial2_tokio::Parity::Odd,
    };
    if let Ok(p) = got.get_parity()
        && p != want_parity
    {
        out.push(format!("parity {:?} (the port reports {})", spec.parity, p.as_str()));
    }
    let want_flow = match spec.flow_control {
        FlowControl::None => serial2_tokio::FlowControl::None,
        FlowControl::RtsCts => serial2_tokio::FlowControl::RtsCts,
        FlowControl::XonXoff => serial2_tokio::FlowControl::XonXoff,
    };
    if let Ok(f) = got.get_flow_control()
        && f != want_flow
    {
        out.push(format!("flow control {:?} (the port reports {})", spec.flow_control, f.as_str()));
    }
    #[cfg(target_os = "linux")]
    if matches!(spec.parity, Parity::Mark | Parity::Space)
        && got.as_termios().c_cflag & libc::CMSPAR == 0
    {
        out.push(format!("{:?} parity (stick parity is off)", spec.parity));
    }
    out
}

/// Opens a `serial` side's port, and opens it again after every loss (unplugged, missing,
/// busy, not permitted): the opener of serial sides for the connector loop. Settings the
/// driver ignored are reported at each opening, and the side shows Yellow with them.
pub(crate) struct PortOpener {
    spec: SerialSpec,
    name: Arc<str>,
    side: Side,
    /// "reading" (a source) or "writing to" (a destination).
    doing: &'static str,
    /// Where the line error counts go.
    stats: Arc<PairStats>,
    pair: Arc<str>,
}

impl PortOpener {
    pub(crate) fn new(spec: SerialSpec, side: Side, ctx: &crate::side::SideCtx) -> Self {
        let doing = match side {
            Side::Source => "reading",
            Side::Destination => "writing to",
        };
        PortOpener {
            name: spec.port.clone().into(),
            spec,
            side,
            doing,
            stats: ctx.stats.clone(),
            pair: ctx.pair.clone(),
        }
    }
}

impl Opener for PortOpener {
    type Io = SerialPort;

    fn shape(&self) -> Shape {
        Shape::Dial
    }

    fn opening(&self) -> Option<String> {
        Some(format!("opening {}", self.name))
    }

    fn closed(&self, peer: &str) -> String {
        format!("{peer} closed")
    }

    fn hint(&self) -> &'static str {
        " (device unplugged?)"
    }

    async fn open(&mut self) -> Result<Opened<SerialPort>, SideError> {
        let OpenPort { port, lock, ignored } = open(&self.spec)?;
        let mut detail = format!("{} {} ({})", self.doing, self.name, describe(&self.spec));
        let ignored = (!ignored.is_empty()).then(|| ignored.join(", "));
        if let Some(list) = &ignored {
            detail = format!("{detail}; the driver did not apply {list}");
        }
        let warning = ignored.map(|list| format!("{}: the driver did not apply {list}", self.name));
        let sampler = lock.try_clone().ok().and_then(|f| {
            sample_line(f, self.stats.clone(), self.pair.clone(), self.side, self.name.clone())
        });
        let hold = PortHold { _lock: lock, sampler };
        Ok(Opened { io: port, peer: self.name.clone(), detail, warning, lock: Some(hold) })
    }
}

/// Why a port could not be opened, in an operator's words.
fn open_error(path: &str, e: &std::io::Error) -> String {
    let why = match (e.kind(), e.raw_os_error()) {
        (std::io::ErrorKind::NotFound, _) => "no such port (unplugged?)".to_string(),
        (std::io::ErrorKind::PermissionDenied, _) => "permission denied (the service user needs \
            access, e.g. the dialout group on Linux; on Windows the port may be in use)"
            .to_string(),
        (_, Some(code)) if is_busy(code) => "busy: in use by another program".to_string(),
        _ => e.to_string(),
    };
    format!("cannot open serial port {path}: {why}")
}

#[cfg(unix)]
fn is_busy(code: i32) -> bool {
    code == libc::EBUSY
}

#[cfg(not(unix))]
fn is_busy(_code: i32) -> bool {
    // Windows reports a COM port held by another program as access denied (above).
    false
}

/// Whether the port of `spec` could be opened now (for failback): it exists and no one holds
/// it. The probe's own lock is released at once.
pub(crate) fn probe(spec: &SerialSpec) -> bool {
    lock_device(&spec.port).is_ok()
}

/// Opens and configures a port; the lock and the report of ignored settings come with it.
pub(crate) fn open(spec: &SerialSpec) -> Result<OpenPort, SideError> {
    let path = spec.port.as_str();
    let lock = lock_device(path)?;
    // The device the checks approved, not whatever the path names a moment later (Linux
    // reopens the same inode through /proc; the port is opened as it is, its settings are
    // applied only below).
    #[cfg(target_os = "linux")]
    let same = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&lock));
    #[cfg(not(target_os = "linux"))]
    let same = path.to_string();
    let mut port = SerialPort::open(&same, serial2_tokio::KeepSettings)
        .map_err(|e| SideError::Peer(open_error(path, &e)))?;
    let reading =
        |e: std::io::Error| SideError::Peer(format!("reading the settings of {path}: {e}"));
    let current = port.get_configuration().map_err(reading)?;
    let want = desired(spec, current)?;
    let ignored = match port.set_configuration(&want) {
        Ok(()) => Vec::new(),
        // The driver applied what it could: find out what it did not.
        Err(e) if e.kind() == std::io::ErrorKind::Other => {
            let got = port.get_configuration().map_err(reading)?;
            let mut ignored = ignored_settings(spec, &got);
            if ignored.is_empty() {
                ignored.push(format!("some settings ({e})"));
            }
            ignored
        }
        Err(e) => return Err(SideError::Peer(format!("configuring {path}: {e}"))),
    };
    if let Some(r) = &spec.rs485 {
        set_rs485(&port, r).map_err(|e| e.within(path))?;
    }
    Ok(OpenPort { port, lock, ignored })
}

#[cfg(target_os = "linux")]
fn set_rs485(port: &SerialPort, r: &iobp_config::Rs485Spec) -> Result<(), SideError> {
    use serial2_tokio::rs4xx::{Rs485Config, TransceiverMode};
    let mut c = Rs485Config::new();
    c.set_full_duplex(r.full_duplex);
    c.set_bus_termination(r.terminate_bus);
    c.set_delay_before_send(std::time::Duration::from_millis(u64::from(r.delay_before_send_ms)));
    c.set_delay_after_send(std::time::Duration::from_millis(u64::from(r.delay_after_send_ms)));
    c.set_invert_rts(!r.rts_on_send);
    // Whether RS-485 works is up to the port's driver: another adapter may support it.
    port.set_rs4xx_mode(TransceiverMode::Rs485(c)).map_err(|e| match e.raw_os_error() {
        // ENOTTY / EINVAL: the driver has no RS-485 mode.
        Some(25 | 22) => SideError::Peer("this port's driver does not support RS-485 mode".into()),
        _ => SideError::Peer(format!("enabling RS-485 mode: {e}")),
    })
}

#[cfg(not(target_os = "linux"))]
fn set_rs485(_port: &SerialPort, _r: &iobp_config::Rs485Spec) -> Result<(), SideError> {
    Err(SideError::Config("RS-485 mode is only available on Linux".into()))
}

/// Refuses what is not a serial port: anything but a character device that is a terminal,
/// and (Linux) the terminals people work at — the controlling terminal, the console,
/// virtual consoles and pseudo-terminals — unless this user owns them. An Operator may
/// name any path as a port; without this it could open another user's session terminal
/// and read or type into it.
///
/// A path that names no port is the side's settings, not a device that may come back.
fn check_terminal(f: &std::fs::File, path: &str) -> Result<(), SideError> {
    use std::io::IsTerminal;
    // What the device is (its type, numbers and owner) is read only where it is checked.
    #[cfg(unix)]
    let meta = f
        .metadata()
        .map_err(|e| SideError::Peer(format!("cannot open serial port {path}: {e}")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_char_device() {
            return Err(SideError::Config(format!(
                "{path} is not a serial port (not a character device)"
            )));
        }
    }
    if !f.is_terminal() {
        return Err(SideError::Config(format!(
            "{path} is not a serial port (not a terminal device)"
        )));
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        let (major, minor) = linux_device_numbers(meta.rdev());
        // 5:0 /dev/tty, 5:1 /dev/console, 5:2 /dev/ptmx.
        if major == 5 && minor <= 2 {
            return Err(SideError::Config(format!(
                "{path} is a session terminal, not a serial port"
            )));
        }
        // 136–143: pseudo-terminal slaves (/dev/pts/N); 4:0–63: virtual consoles (/dev/ttyN).
        let session = (136..=143).contains(&major) || (major == 4 && minor < 64);
        let me = nix::unistd::geteuid().as_raw();
        if session && meta.uid() != me {
            return Err(SideError::Config(format!(
                "{path} is another user's terminal (owner uid {}), not a serial port",
                meta.uid()
            )));
        }
    }
    Ok(())
}

/// Major and minor of a Linux device number (glibc's `gnu_dev_major`/`gnu_dev_minor`).
#[cfg(target_os = "linux")]
fn linux_device_numbers(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

/// An advisory exclusive lock on the device, held while it is in use.
fn lock_device(path: &str) -> Result<std::fs::File, SideError> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    // Opening a tty must not wait for carrier detect nor make it our controlling terminal.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut o, libc::O_NONBLOCK | libc::O_NOCTTY);
    let f = o.open(Path::new(path)).map_err(|e| SideError::Peer(open_error(path, &e)))?;
    check_terminal(&f, path)?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(SideError::Peer(format!(
            "cannot open serial port {path}: in use by another ioBufferPro pair or program"
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(SideError::Peer(open_error(path, &e))),
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn spec(json: &str) -> SerialSpec {
        match iobp_config::parse_endpoint(json).expect("spec") {
            iobp_config::EndpointSpec::Serial(s) => s,
            other => panic!("{other:?}"),
        }
    }

    /// A real port's settings to build on: those of a fresh pseudo-terminal.
    fn base() -> Settings {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_io().build().expect("runtime");
        let _guard = rt.enter();
        let (a, _b) = SerialPort::pair().expect("pty pair");
        a.get_configuration().expect("settings")
    }

    fn termios_of(json: &str) -> libc::termios2 {
        let s = desired(&spec(json), base()).expect("settings");
        *s.as_termios()
    }

    #[test]
    fn data_bits_parity_stop_bits_and_flow_control_map_onto_termios() {
        let t = termios_of(
            r#"{"type": "serial", "port": "x", "baud_rate": 19200, "data_bits": 7, "parity": "Even", "stop_bits": 2, "flow_control": "RTS/CTS"}"#,
        );
        assert_eq!(t.c_cflag & libc::CSIZE, libc::CS7);
        assert_ne!(t.c_cflag & libc::PARENB, 0);
        assert_eq!(t.c_cflag & libc::PARODD, 0);
        assert_ne!(t.c_cflag & libc::CSTOPB, 0);
        assert_ne!(t.c_cflag & libc::CRTSCTS, 0);
        assert_eq!(t.c_iflag & (libc::IXON | libc::IXOFF), 0);
        assert_eq!((t.c_ispeed, t.c_ospeed), (19200, 19200));
        // Raw mode: no echo, no line editing, no translation.
        assert_eq!(t.c_lflag & (libc::ICANON | libc::ECHO | libc::ISIG), 0);
        assert_eq!(t.c_oflag & libc::OPOST, 0);
        assert_ne!(t.c_cflag & libc::CREAD, 0);

        let t = termios_of(
            r#"{"type": "serial", "port": "x", "parity": "Odd", "flow_control": "XON/XOFF"}"#,
        );
        assert_eq!(t.c_cflag & libc::CSIZE, libc::CS8);
        assert_ne!(t.c_cflag & libc::PARODD, 0);
        assert_eq!(t.c_cflag & libc::CSTOPB, 0);
        assert_eq!(t.c_cflag & libc::CRTSCTS, 0);
        assert_ne!(t.c_iflag & libc::IXON, 0);
        assert_ne!(t.c_iflag & libc::IXOFF, 0);

        let t = termios_of(r#"{"type": "serial", "port": "x", "data_bits": 5}"#);
        assert_eq!(t.c_cflag & libc::CSIZE, libc::CS5);
        assert_eq!(t.c_cflag & (libc::PARENB | libc::CRTSCTS), 0);
    }

    #[test]
    fn mark_and_space_parity_use_stick_parity() {
        let t = termios_of(r#"{"type": "serial", "port": "x", "parity": "Mark"}"#);
        assert_eq!(
            t.c_cflag & (libc::PARENB | libc::PARODD | libc::CMSPAR),
            libc::PARENB | libc::PARODD | libc::CMSPAR
        );
        let t = termios_of(r#"{"type": "serial", "port": "x", "parity": "Space"}"#);
        assert_eq!(
            t.c_cflag & (libc::PARENB | libc::PARODD | libc::CMSPAR),
            libc::PARENB | libc::CMSPAR
        );
    }

    #[test]
    fn unusual_baud_rates_are_passed_through() {
        let t = termios_of(r#"{"type": "serial", "port": "x", "baud_rate": 31250}"#);
        assert_eq!((t.c_ispeed, t.c_ospeed), (31250, 31250));
        assert_eq!(t.c_cflag & libc::CBAUD, libc::BOTHER, "a non-standard rate uses BOTHER");
    }

    #[test]
    fn ignored_settings_are_named() {
        let s = spec(
            r#"{"type": "serial", "port": "x", "baud_rate": 9600, "parity": "Even", "flow_control": "RTS/CTS"}"#,
        );
        let mut got = desired(&s, base()).expect("settings");
        got.set_parity(serial2_tokio::Parity::None);
        got.set_flow_control(serial2_tokio::FlowControl::None);
        let ignored = ignored_settings(&s, &got);
        assert_eq!(ignored.len(), 2, "{ignored:?}");
        assert!(
            ignored[0].contains("parity Even") && ignored[1].contains("flow control RtsCts"),
            "{ignored:?}"
        );
    }

    #[test]
    fn a_missing_port_says_so() {
        let s = spec(r#"{"type": "serial", "port": "/dev/does-not-exist-iobp"}"#);
        let e = open(&s).expect_err("missing");
        assert!(matches!(e, SideError::Peer(_)), "a port that may come back: {e:?}");
        let e = e.to_string();
        assert!(e.contains("/dev/does-not-exist-iobp") && e.contains("no such port"), "{e}");
    }

    /// Only terminals that are not someone's session are ports (on 325539c a pseudo-terminal
    /// of another user opened as a "serial port").
    #[test]
    fn only_character_devices_that_are_terminals_and_not_another_users_session_open() {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_io().build().expect("runtime");
        let _guard = rt.enter();
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("not-a-port");
        std::fs::write(&file, b"x").expect("file");
        let port = |p: &str| spec(&format!(r#"{{"type": "serial", "port": "{p}"}}"#));
        let e = open(&port(&file.to_string_lossy())).expect_err("a file");
        assert!(matches!(e, SideError::Config(_)), "no port to wait for: {e:?}");
        assert!(e.to_string().contains("not a character device"), "{e}");
        let e = open(&port("/dev/null")).expect_err("/dev/null").to_string();
        assert!(e.contains("not a terminal"), "{e}");
        // Without a controlling terminal the kernel refuses /dev/tty itself (ENXIO).
        let e = open(&port("/dev/tty")).expect_err("/dev/tty").to_string();
        assert!(e.contains("/dev/tty"), "{e}");
        // A pseudo-terminal of this user opens (the tests' serial ports); the same one owned
        // by another user does not.
        let (_a, _b) = SerialPort::pair().expect("pty pair");
        let slave = std::fs::read_dir("/proc/self/fd")
            .expect("fds")
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|p| p.starts_with("/dev/pts/"))
            .max_by_key(|p| {
                p.to_string_lossy().trim_start_matches("/dev/pts/").parse::<u32>().unwrap_or(0)
            })
            .expect("the pair's slave");
        let name = slave.to_string_lossy().to_string();
        drop(open(&port(&name)).expect("own pty"));
        let me = nix::unistd::geteuid().as_raw();
        let other = if me == 65534 { 65533 } else { 65534 };
        std::os::unix::fs::chown(&slave, Some(other), None)
            .expect("chown (the tests run as root, like CI)");
        let e = open(&port(&name)).expect_err("another user's pty").to_string();
        assert!(e.contains("another user's terminal"), "{e}");
        std::os::unix::fs::chown(&slave, Some(me), None).expect("chown back");
    }

    #[test]
    fn open_errors_name_the_cause() {
        use std::io::{Error, ErrorKind};
        let e = open_error("/dev/ttyUSB0", &Error::from(ErrorKind::PermissionDenied));
        assert!(e.contains("/dev/ttyUSB0") && e.contains("dialout"), "{e}");
        let e = open_error("/dev/ttyUSB0", &Error::from_raw_os_error(libc::EBUSY));
        assert!(e.contains("busy"), "{e}");
        let e = open_error("/dev/ttyUSB0", &Error::from(ErrorKind::NotFound));
        assert!(e.contains("unplugged"), "{e}");
    }

    #[test]
    fn describe_reads_like_an_instrument_manual() {
        let s = spec(
            r#"{"type": "serial", "port": "x", "baud_rate": 115200, "parity": "Even", "stop_bits": 2, "flow_control": "RTS/CTS"}"#,
        );
        assert_eq!(describe(&s), "115200 8E2, RTS/CTS");
    }

    #[test]
    fn line_errors_count_what_is_new_and_survive_a_counter_reset() {
        let then = LineErrors { framing: 10, parity: 2, ..LineErrors::default() };
        let now = LineErrors { framing: 13, parity: 2, breaks: 1, ..LineErrors::default() };
        let new = now.since(then);
        assert_eq!(new, LineErrors { framing: 3, breaks: 1, ..LineErrors::default() });
        assert_eq!(new.describe(), "3 framing, 1 break");
        assert_eq!(new.total(), 4);
        // The driver's counters started over (the device was reset): count from zero.
        let reset = LineErrors { framing: 1, ..LineErrors::default() };
        assert_eq!(reset.since(now).framing, 1);
    }

    /// A pseudo-terminal keeps no line counters: the side shows none (not zeros). A real
    /// 8250-family UART — the `ttyS0` of a PC or a virtual machine, where this machine has
    /// one — is read, and shows zero errors. (Inducing errors needs a second UART at another
    /// baud rate; no such wiring exists here.)
    #[tokio::test]
    async fn line_counters_are_read_where_the_driver_keeps_them() {
        let stats = Arc::new(PairStats::default());
        let pty = nix::pty::openpty(None, None).expect("openpty");
        assert_eq!(line_counters(&pty.slave), None);
        let file = std::fs::File::from(pty.slave);
        let sampler = sample_line(file, stats.clone(), "p".into(), Side::Source, "pty".into());
        assert!(sampler.is_none(), "no counters, no sampler");
        assert_eq!(stats.side_snapshots().0.line_errors, None);

        let uart = std::fs::read_to_string("/proc/tty/driver/serial")
            .is_ok_and(|t| t.lines().any(|l| l.starts_with("0: uart:") && !l.contains("unknown")));
        if !uart {
            eprintln!("no 8250-family UART at ttyS0 on this machine: the pseudo-terminal half ran");
            return;
        }
        let mut o = std::fs::OpenOptions::new();
        o.read(true);
        std::os::unix::fs::OpenOptionsExt::custom_flags(&mut o, libc::O_NONBLOCK | libc::O_NOCTTY);
        let tty = o.open("/dev/ttyS0").expect("open ttyS0 (root)");
        assert!(line_counters(&tty).is_some(), "a 16550 keeps counters");
        let sampler =
            sample_line(tty, stats.clone(), "p".into(), Side::Destination, "/dev/ttyS0".into());
        assert!(sampler.is_some());
        assert_eq!(stats.side_snapshots().1.line_errors, Some(LineErrors::default()));
    }
}
