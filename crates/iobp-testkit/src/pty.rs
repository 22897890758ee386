//! A serial device for tests (Linux): a pseudo-terminal pair whose terminal side a pair opens
//! as its serial port, through a symlink (like `/dev/serial/by-id/...`), while the test plays
//! the instrument on the other side, [`Device::master`], an async byte stream. Unplugging is
//! dropping the device (the engine sees a hangup, then a missing port); plugging in again is a
//! new pair behind the same symlink.
//!
//! Needs a tokio runtime with I/O enabled (the master is registered with its reactor).

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::unix::pipe;

/// The instrument's end of a pseudo-terminal pair. Dropping it unplugs the device: the
/// terminal and the symlink to it disappear, as udev removes `/dev/serial/by-id/...` links. (A
/// stale link would point at a recycled pseudo-terminal number that another test, in this
/// process or another, may be using.)
pub struct Device {
    /// What the instrument reads and writes.
    pub master: Master,
    /// Kept open so that the terminal exists while the engine has it closed (between
    /// reconnects), as a real port does.
    _slave: OwnedFd,
    link: PathBuf,
    tty: PathBuf,
}

impl Device {
    /// Creates a pseudo-terminal pair in raw mode and points `link` at its terminal side
    /// (replacing what `link` pointed at).
    ///
    /// # Panics
    /// If the pair or the link cannot be made (a broken test machine), or outside a tokio
    /// runtime.
    pub fn plug(link: &Path) -> Device {
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let pty = nix::pty::openpty(None, None).expect("openpty");
        for fd in [&pty.master, &pty.slave] {
            let mut t = tcgetattr(fd).expect("tcgetattr");
            cfmakeraw(&mut t);
            tcsetattr(fd, SetArg::TCSANOW, &t).expect("tcsetattr");
        }
        let tty = nix::unistd::ttyname(pty.slave.as_fd()).expect("ttyname");
        // Replaced atomically: a pair reopening the port never finds the link missing.
        let tmp = link.with_extension("new");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&tty, &tmp).expect("symlink");
        std::fs::rename(&tmp, link).expect("replace symlink");
        let flags = fcntl(&pty.master, FcntlArg::F_GETFL).expect("getfl");
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        fcntl(&pty.master, FcntlArg::F_SETFL(flags)).expect("setfl");
        let dup = pty.master.try_clone().expect("dup");
        let master = Master {
            rx: pipe::Receiver::from_owned_fd_unchecked(pty.master).expect("reader"),
            tx: pipe::Sender::from_owned_fd_unchecked(dup).expect("writer"),
        };
        Device { master, _slave: pty.slave, link: link.to_path_buf(), tty }
    }

    /// The terminal's device path (`/dev/pts/N`).
    pub fn tty(&self) -> &Path {
        &self.tty
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if std::fs::read_link(&self.link).is_ok_and(|t| t == self.tty) {
            let _ = std::fs::remove_file(&self.link);
        }
    }
}

/// A pseudo-terminal master as an async byte stream. Tokio's pipe types serve any pollable
/// file descriptor (`*_unchecked` skips their FIFO check): one for reading, one for writing on
/// a duplicate of the same descriptor.
pub struct Master {
    rx: pipe::Receiver,
    tx: pipe::Sender,
}

impl AsyncRead for Master {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.rx).poll_read(cx, buf)
    }
}

impl AsyncWrite for Master {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tx).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tx).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tx).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn bytes_pass_both_ways_and_unplugging_removes_the_link() {
        let dir = tempfile::tempdir().expect("tmp");
        let link = dir.path().join("ttyTEST");
        let mut dev = Device::plug(&link);
        assert_eq!(std::fs::read_link(&link).expect("link"), dev.tty());
        let mut port =
            std::fs::OpenOptions::new().read(true).write(true).open(&link).expect("open");
        dev.master.write_all(b"\x00\x11\x13raw").await.expect("write");
        let mut got = [0u8; 6];
        std::io::Read::read_exact(&mut port, &mut got).expect("read the port");
        assert_eq!(&got, b"\x00\x11\x13raw", "raw mode: every byte as it is");
        std::io::Write::write_all(&mut port, b"back").expect("write the port");
        let mut back = [0u8; 4];
        dev.master.read_exact(&mut back).await.expect("read");
        assert_eq!(&back, b"back");
        drop(dev);
        assert!(std::fs::symlink_metadata(&link).is_err(), "unplugged: the link is gone");
    }
}
