//! A loopback TCP proxy between the pool and the throwaway server, for fault tests. It
//! listens on 127.0.0.1 only and forwards only to 127.0.0.1.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Forward everything.
    Pass,
    /// Accept bytes in both directions, forward none.
    Stall,
    /// Read nothing from the client (its writes back up in the kernel's buffers) until the
    /// mode changes; nothing is lost.
    Hold,
    /// Forward each chunk after this delay.
    Delay(Duration),
    /// Forward this many bytes from the server on each connection, then close it.
    CloseAfter(usize),
    /// Reset new connections at once (SO_LINGER 0, then close).
    Reset,
}

/// The receive buffer of each connection from a client (the kernel doubles it).
const RECEIVE_BUFFER: u32 = 256 * 1024;

pub(crate) struct Proxy {
    port: u16,
    mode: Arc<Mutex<Mode>>,
    /// Bumped to reset every open connection.
    reset_all: watch::Sender<u64>,
    /// Connections being forwarded now.
    open: Arc<AtomicUsize>,
}

impl Proxy {
    /// A proxy to 127.0.0.1:`upstream`, forwarding.
    pub(crate) async fn start(upstream: u16) -> Proxy {
        // The connections' receive buffers are bounded (accepted sockets take the
        // listener's), so a client's writes back up while the proxy holds them: the kernel
        // would otherwise grow the buffer to tens of MiB, and a whole request could fit.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(RECEIVE_BUFFER).unwrap();
        socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
        let listener: TcpListener = socket.listen(1024).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(Mutex::new(Mode::Pass));
        let (reset_all, _) = watch::channel(0u64);
        let open = Arc::new(AtomicUsize::new(0));
        let (m, r, o) = (mode.clone(), reset_all.clone(), open.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (m, rx, o) = (m.clone(), r.subscribe(), o.clone());
                o.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if *m.lock() == Mode::Reset {
                        reset(client);
                    } else if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        pump(client, server, m, rx).await;
                    }
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Proxy {
            port,
            mode,
            reset_all,
            open,
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn set(&self, mode: Mode) {
        *self.mode.lock() = mode;
    }

    /// Connections being forwarded now (a reset one no longer is).
    #[allow(dead_code)]
    pub(crate) fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Resets every connection open now (RST to both sides).
    pub(crate) fn reset_open_connections(&self) {
        self.reset_all.send_modify(|n| *n += 1);
    }
}

fn reset(s: TcpStream) {
    // Linger 0 makes the close an immediate RST; with a zero timeout the drop cannot block,
    // which is what the deprecation warns about.
    #[allow(deprecated)]
    let _ = s.set_linger(Some(Duration::ZERO));
    drop(s);
}

async fn pump(
    client: TcpStream,
    server: TcpStream,
    mode: Arc<Mutex<Mode>>,
    mut reset_rx: watch::Receiver<u64>,
) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let mut from_server = 0usize;
    let (mut cbuf, mut sbuf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    loop {
        tokio::select! {
            _ = reset_rx.changed() => {
                let (c, s) = (cr.reunite(cw), sr.reunite(sw));
                if let Ok(c) = c { reset(c); }
                if let Ok(s) = s { reset(s); }
                return;
            }
            // While held, the mode is looked at again every millisecond.
            _ = tokio::time::sleep(Duration::from_millis(1)), if *mode.lock() == Mode::Hold => {}
            n = cr.read(&mut cbuf), if *mode.lock() != Mode::Hold => {
                let Ok(n @ 1..) = n else { return };
                if !forward(&mode, &mut sw, &cbuf[..n], None).await { return; }
            }
            n = sr.read(&mut sbuf) => {
                let Ok(n @ 1..) = n else { return };
                from_server += n;
                if !forward(&mode, &mut cw, &sbuf[..n], Some(from_server)).await { return; }
            }
        }
    }
}

/// Forwards `bytes` as the mode says; false when the connection is to end.
async fn forward(
    mode: &Mutex<Mode>,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    bytes: &[u8],
    from_server_total: Option<usize>,
) -> bool {
    let m = *mode.lock();
    match m {
        Mode::Pass | Mode::Hold => to.write_all(bytes).await.is_ok(),
        Mode::Stall => true,
        Mode::Delay(d) => {
            tokio::time::sleep(d).await;
            to.write_all(bytes).await.is_ok()
        }
        Mode::CloseAfter(limit) => match from_server_total {
            Some(total) if total > limit => {
                let keep = bytes.len().saturating_sub(total - limit);
                let _ = to.write_all(&bytes[..keep]).await;
                false
            }
            _ => to.write_all(bytes).await.is_ok(),
        },
        Mode::Reset => false,
    }
}
