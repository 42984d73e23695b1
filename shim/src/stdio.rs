//! A process's stdio as containerd hands it over: FIFO paths (ctr, the CRI plugin),
//! `file:///path` log files (`ctr run --log-uri`), or nothing (/dev/null).
//!
//! Without a terminal, stdout and stderr FIFOs are given to the process itself, with no copy
//! loop in the shim: nothing to buffer, no task per stream, and output is in the FIFO before
//! the process exits. They are opened read-write so a process never gets EPIPE while no
//! client is attached (it blocks once the FIFO is full, as under containerd-shim-runc-v2).
//!
//! stdin is the one stream that is copied: the process reads a pipe that the shim feeds from
//! the FIFO. The process must see EOF exactly when the client closes its end (`echo x | ctr
//! run ... cat`), which it cannot if it held the FIFO itself: a FIFO nobody has opened for
//! writing yet reads as EOF at once. The shim's read end waits for the client (epoll reports
//! nothing until a writer has come), copies, and closes the pipe on EOF or on CloseIO.
//!
//! With a terminal, sgrun sends the pty master over `--console-socket`; the shim copies
//! between it and the FIFOs and applies ResizePty to it.

use std::fs::{File, OpenOptions};
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::error::{Result, ShimError};
use crate::runtime::ChildIo;

/// Where a stream goes, from the string containerd sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    Null,
    Fifo(PathBuf),
    File(PathBuf),
}

pub fn parse_target(id: &str, uri: &str) -> Result<Target> {
    if uri.is_empty() {
        return Ok(Target::Null);
    }
    let bad = |reason| ShimError::StdioUri {
        id: id.into(),
        uri: uri.into(),
        reason,
    };
    if let Some(rest) = uri.strip_prefix("file://") {
        if !rest.starts_with('/') {
            return Err(bad("a file:// URI needs an absolute path"));
        }
        return Ok(Target::File(PathBuf::from(rest)));
    }
    if uri.starts_with("binary://") {
        return Err(bad("binary:// loggers are not supported by the sgrun shim"));
    }
    if uri.contains("://") {
        return Err(bad("unknown scheme (fifo paths and file:// are supported)"));
    }
    if !uri.starts_with('/') {
        return Err(bad("a fifo path must be absolute"));
    }
    Ok(Target::Fifo(PathBuf::from(uri)))
}

fn open(path: &Path, flags: OFlag, action: &'static str) -> Result<OwnedFd> {
    let fd = nix::fcntl::open(
        path,
        flags | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| ShimError::io(path, action, e.into()))?;
    // SAFETY: open(2) just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn check_fifo(path: &Path) -> Result<()> {
    let md = std::fs::metadata(path).map_err(|e| ShimError::io(path, "stdio fifo", e))?;
    if md.file_type().is_fifo() {
        Ok(())
    } else {
        Err(ShimError::io(
            path,
            "stdio fifo",
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a fifo"),
        ))
    }
}

fn open_log_file(path: &Path) -> Result<OwnedFd> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ShimError::io(dir, "creating log dir", e))?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|e| ShimError::io(path, "opening log file", e))
}

/// stdio for a process without a terminal, and the stdin copy to start once it runs.
pub struct DirectIo {
    pub child: ChildIo,
    pub stdin_copy: Option<StdinCopy>,
}

/// The client's stdin FIFO and the pipe the process reads.
pub struct StdinCopy {
    fifo: tokio::net::unix::pipe::Receiver,
    pipe: tokio::net::unix::pipe::Sender,
}

impl StdinCopy {
    /// Copies until the client closes its end; dropping the pipe then gives the process EOF.
    pub async fn run(mut self) {
        if let Err(e) = tokio::io::copy(&mut self.fifo, &mut self.pipe).await {
            tracing::debug!(error = %e, "stdin copy");
        }
    }
}

pub fn open_direct(id: &str, stdin: &str, stdout: &str, stderr: &str) -> Result<DirectIo> {
    let mut io = DirectIo {
        child: ChildIo::default(),
        stdin_copy: None,
    };
    match parse_target(id, stdin)? {
        Target::Null => {}
        Target::File(p) => {
            io.child.stdin = Some(
                File::open(&p)
                    .map(OwnedFd::from)
                    .map_err(|e| ShimError::io(&p, "opening stdin", e))?,
            )
        }
        Target::Fifo(p) => {
            check_fifo(&p)?;
            // O_NONBLOCK: the open does not wait for the client's write end
            let fifo = open(
                &p,
                OFlag::O_RDONLY | OFlag::O_NONBLOCK,
                "opening stdin fifo",
            )?;
            let fifo = tokio::net::unix::pipe::Receiver::from_owned_fd(fifo)
                .map_err(|e| ShimError::io(&p, "stdin fifo", e))?;
            let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
                .map_err(|e| ShimError::io(&p, "stdin pipe", e.into()))?;
            let pipe = tokio::net::unix::pipe::Sender::from_owned_fd(w)
                .map_err(|e| ShimError::io(&p, "stdin pipe", e))?;
            io.child.stdin = Some(r);
            io.stdin_copy = Some(StdinCopy { fifo, pipe });
        }
    }
    for (uri, slot) in [
        (stdout, &mut io.child.stdout),
        (stderr, &mut io.child.stderr),
    ] {
        *slot = match parse_target(id, uri)? {
            Target::Null => None,
            Target::File(p) => Some(open_log_file(&p)?),
            Target::Fifo(p) => {
                check_fifo(&p)?;
                // O_RDWR never blocks on open, and the process never gets EPIPE
                Some(open(&p, OFlag::O_RDWR, "opening output fifo")?)
            }
        };
    }
    Ok(io)
}

/// The console socket sgrun connects to with `--console-socket` to send the pty master. It
/// lives in a private directory (0700) under the temp dir: bundle paths can be longer than a
/// socket address allows.
pub struct ConsoleSocket {
    dir: tempfile::TempDir,
    listener: tokio::net::UnixListener,
}

impl ConsoleSocket {
    pub fn new() -> Result<Self> {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = tempfile::Builder::new()
            .prefix(&format!(
                "sgrun-shim-{}-{}-",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ))
            .tempdir()
            .map_err(|e| ShimError::io(std::env::temp_dir(), "creating console socket dir", e))?;
        let path = dir.path().join("pty.sock");
        let listener = tokio::net::UnixListener::bind(&path)
            .map_err(|e| ShimError::io(&path, "binding console socket", e))?;
        Ok(Self { dir, listener })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("pty.sock")
    }

    /// Accepts sgrun's connection and takes the pty master it sends (SCM_RIGHTS).
    pub async fn receive(&self) -> Result<OwnedFd> {
        let path = self.path();
        let err = |reason: String| ShimError::Console {
            path: path.clone(),
            reason,
        };
        let (stream, _) = self
            .listener
            .accept()
            .await
            .map_err(|e| err(format!("accept: {e}")))?;
        loop {
            stream
                .readable()
                .await
                .map_err(|e| err(format!("wait: {e}")))?;
            let got = stream.try_io(tokio::io::Interest::READABLE, || {
                recv_fd(stream.as_fd().as_raw_fd()).map_err(std::io::Error::from)
            });
            match got {
                Ok(Some(fd)) => return Ok(fd),
                Ok(None) => return Err(err("sgrun sent no file descriptor".into())),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(err(format!("recvmsg: {e}"))),
            }
        }
    }
}

fn recv_fd(sock: RawFd) -> nix::Result<Option<OwnedFd>> {
    let mut buf = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    // CLOEXEC: a pty master must never leak into the next sgrun child (or its container)
    let msg = recvmsg::<()>(
        sock,
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    )?;
    let mut first = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: the kernel installed these descriptors for us just now; each is
                // owned exactly once (extras are closed on drop).
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                if first.is_none() {
                    first = Some(owned);
                }
            }
        }
    }
    Ok(first)
}

/// The pty master, non-blocking, readable and writable through tokio.
pub struct PtyMaster {
    fd: AsyncFd<OwnedFd>,
}

impl PtyMaster {
    pub fn new(fd: OwnedFd) -> std::io::Result<Self> {
        let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?;
        fcntl(
            fd.as_raw_fd(),
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        )?;
        // SAFETY: an OwnedFd stays open and returns the same descriptor until the AsyncFd
        // that owns it is dropped.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(std::io::Error::from)?;
        Ok(Self { fd })
    }

    pub fn resize(&self, width: u32, height: u32) -> std::io::Result<()> {
        let ws = libc::winsize {
            ws_row: height.min(u16::MAX as u32) as u16,
            ws_col: width.min(u16::MAX as u32) as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is valid for the call.
        let r = unsafe { libc::ioctl(self.fd.get_ref().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn poll_read_buf(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let mut guard = std::task::ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| {
                nix::unistd::read(fd.get_ref().as_raw_fd(), unfilled).map_err(std::io::Error::from)
            }) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // EIO: every slave fd is closed (the process and its children are gone): EOF
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_write_buf(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        loop {
            let mut guard = std::task::ready!(self.fd.poll_write_ready(cx))?;
            match guard
                .try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(std::io::Error::from))
            {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }
}

/// `&PtyMaster` as a tokio reader/writer, so one master serves both copy directions.
pub struct PtyRef<'a>(pub &'a PtyMaster);

impl AsyncRead for PtyRef<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.0.poll_read_buf(cx, buf)
    }
}

impl AsyncWrite for PtyRef<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.poll_write_buf(cx, data)
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Where the terminal's output goes.
pub enum Sink {
    Null,
    Fifo(tokio::net::unix::pipe::Sender),
    /// A regular file: its writes do not block for long, and epoll cannot wait on it.
    File(File),
}

impl Sink {
    pub fn open(id: &str, uri: &str) -> Result<Self> {
        Ok(match parse_target(id, uri)? {
            Target::Null => Sink::Null,
            Target::File(p) => Sink::File(File::from(open_log_file(&p)?)),
            Target::Fifo(p) => {
                check_fifo(&p)?;
                // O_RDWR opens without waiting for a reader; reopening that through /proc
                // write-only then succeeds (a reader exists: ourselves), and dropping the
                // O_RDWR end leaves the client's read end as the only reader, so it sees EOF
                // when the shim closes its write end.
                let rw = open(&p, OFlag::O_RDWR, "opening output fifo")?;
                let proc_path = PathBuf::from(format!("/proc/self/fd/{}", rw.as_raw_fd()));
                let w = open(
                    &proc_path,
                    OFlag::O_WRONLY | OFlag::O_NONBLOCK,
                    "reopening output fifo",
                )
                .map_err(|e| match e {
                    ShimError::Io { action, source, .. } => ShimError::Io {
                        path: p.clone(),
                        action,
                        source,
                    },
                    other => other,
                })?;
                drop(rw);
                Sink::Fifo(
                    tokio::net::unix::pipe::Sender::from_owned_fd(w)
                        .map_err(|e| ShimError::io(&p, "output fifo", e))?,
                )
            }
        })
    }

    async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Null => Ok(()),
            Sink::Fifo(s) => s.write_all(data).await,
            Sink::File(f) => std::io::Write::write_all(f, data),
        }
    }
}

/// A reader for the terminal's stdin FIFO. Opened read-write: with the shim as a writer too,
/// the FIFO never reports EOF/HUP before the client opens its end (a busy loop otherwise);
/// the copy ends on CloseIO or when the process exits.
pub fn open_tty_stdin(id: &str, uri: &str) -> Result<Option<tokio::net::unix::pipe::Receiver>> {
    match parse_target(id, uri)? {
        Target::Null => Ok(None),
        Target::File(p) => Err(ShimError::StdioUri {
            id: id.into(),
            uri: p.display().to_string(),
            reason: "stdin from a file with a terminal is not supported",
        }),
        Target::Fifo(p) => {
            check_fifo(&p)?;
            let fd = open(&p, OFlag::O_RDWR, "opening stdin fifo")?;
            tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
                .map(Some)
                .map_err(|e| ShimError::io(&p, "stdin fifo", e))
        }
    }
}

/// Copies the terminal's output to the sink until the pty reports EOF (EIO: every slave fd
/// closed). A sink that fails (no reader) is dropped, but the master is still drained so the
/// process never blocks on a full terminal.
pub async fn pump_output(master: &PtyMaster, mut sink: Sink) {
    let mut buf = vec![0u8; 8192];
    let mut reader = PtyRef(master);
    loop {
        let n = match tokio::io::AsyncReadExt::read(&mut reader, &mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "terminal read");
                break;
            }
        };
        if let Err(e) = sink.write_all(&buf[..n]).await {
            tracing::debug!(error = %e, "terminal output dropped");
            sink = Sink::Null;
        }
    }
}

/// Copies the client's stdin into the terminal.
pub async fn pump_input(master: &PtyMaster, mut stdin: tokio::net::unix::pipe::Receiver) {
    let mut writer = PtyRef(master);
    if let Err(e) = tokio::io::copy(&mut stdin, &mut writer).await {
        tracing::debug!(error = %e, "terminal input");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_parsed_strictly() {
        assert_eq!(parse_target("c", "").unwrap(), Target::Null);
        assert_eq!(
            parse_target("c", "/run/x/stdout").unwrap(),
            Target::Fifo("/run/x/stdout".into())
        );
        assert_eq!(
            parse_target("c", "file:///var/log/c.log").unwrap(),
            Target::File("/var/log/c.log".into())
        );
        for bad in [
            "binary:///usr/bin/logger?x=1",
            "relative/fifo",
            "file://rel",
            "tcp://1.2.3.4",
        ] {
            let e = parse_target("c", bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn stdin_is_copied_until_the_client_closes() {
        use tokio::io::AsyncReadExt;
        let dir = tempfile::tempdir().unwrap();
        let fifo = |n: &str| {
            let p = dir.path().join(n);
            nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
            p
        };
        let (i, o) = (fifo("in"), fifo("out"));
        let io = open_direct("c", i.to_str().unwrap(), o.to_str().unwrap(), "").unwrap();
        assert!(io.child.stderr.is_none());
        let copy = tokio::spawn(io.stdin_copy.unwrap().run());
        let mut proc_stdin =
            tokio::net::unix::pipe::Receiver::from_owned_fd(io.child.stdin.unwrap()).unwrap();
        // no client yet: no EOF for the process, the copy waits
        let mut buf = [0u8; 16];
        let early = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            proc_stdin.read(&mut buf),
        )
        .await;
        assert!(
            early.is_err(),
            "the process must not see EOF before the client came"
        );
        // the client writes and closes: the process reads the data, then EOF
        let i2 = i.clone();
        tokio::task::spawn_blocking(move || std::fs::write(&i2, b"hello").unwrap());
        let mut got = Vec::new();
        proc_stdin.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        copy.await.unwrap();
    }
}
