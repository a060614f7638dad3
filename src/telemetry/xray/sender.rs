//! Fire-and-forget UDP transport to the X-Ray daemon (`AWS_XRAY_DAEMON_ADDRESS`).
//! Tracing must never slow down or break an invocation, so every failure (no or bad
//! address, dead port, full buffer) drops the document and only bumps a counter.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Environment variable Lambda sets when active tracing is on.
pub const DAEMON_ADDRESS_ENV: &str = "AWS_XRAY_DAEMON_ADDRESS";

/// A connected, non-blocking UDP socket to the X-Ray daemon plus drop/sent counters.
#[derive(Debug)]
pub struct UdpSender {
    socket: Option<UdpSocket>,
    daemon: Option<SocketAddr>,
    setup_error: Option<String>,
    sent: AtomicU64,
    dropped: AtomicU64,
    warned: AtomicBool,
}

impl UdpSender {
    /// Sender for `AWS_XRAY_DAEMON_ADDRESS` (`host:port` or `tcp:h:p udp:h:p`).
    /// Unset or unparsable → a sender that counts every document as dropped.
    pub fn from_env() -> Self {
        Self::from_address(crate::settings::xray_daemon_address(crate::settings::env).as_deref())
    }

    /// Sender for an `AWS_XRAY_DAEMON_ADDRESS` value (see [`UdpSender::from_env`]).
    pub fn from_address(raw: Option<&str>) -> Self {
        match raw {
            Some(raw) => match parse_daemon_address(raw) {
                Some(addr) => Self::new(addr),
                None => Self::unconfigured(format!("unparsable {DAEMON_ADDRESS_ENV}={raw:?}")),
            },
            None => Self::unconfigured(format!("{DAEMON_ADDRESS_ENV} not set")),
        }
    }

    /// Sender connected to `daemon`. Socket errors are kept and reported on first drop.
    pub fn new(daemon: SocketAddr) -> Self {
        match connect(daemon) {
            Ok(socket) => Self {
                socket: Some(socket),
                daemon: Some(daemon),
                ..Self::unconfigured(String::new())
            },
            Err(e) => Self {
                daemon: Some(daemon),
                ..Self::unconfigured(format!("cannot open UDP socket to {daemon}: {e}"))
            },
        }
    }

    /// A sender with no daemon: every send is a counted drop.
    pub fn unconfigured(reason: String) -> Self {
        Self {
            socket: None,
            daemon: None,
            setup_error: Some(reason),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            warned: AtomicBool::new(false),
        }
    }

    /// The daemon address, if one is configured.
    pub fn daemon(&self) -> Option<SocketAddr> {
        self.daemon
    }

    /// Sends one datagram without blocking. On any failure the datagram is dropped and
    /// counted; the first drop logs one warning. Returns whether it was handed to the OS.
    pub fn send(&self, datagram: &[u8]) -> bool {
        let result = match &self.socket {
            Some(socket) => socket.send(datagram).map(|_| ()),
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                self.setup_error.as_deref().unwrap_or("no X-Ray daemon"),
            )),
        };
        match result {
            Ok(()) => {
                self.sent.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(e) => {
                self.record_drop(&e.to_string());
                false
            }
        }
    }

    /// Counts a dropped document (also used for documents too large to send).
    pub fn record_drop(&self, reason: &str) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        if !self.warned.swap(true, Ordering::Relaxed) {
            // Events are never turned into subsegments, so this cannot recurse.
            tracing::warn!(
                daemon = ?self.daemon,
                reason,
                "X-Ray document dropped; further drops are only counted"
            );
        }
    }

    /// Documents dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Datagrams handed to the OS so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

fn connect(daemon: SocketAddr) -> io::Result<UdpSocket> {
    let local: IpAddr = match daemon.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => Ipv4Addr::LOCALHOST.into(),
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(ip) if ip.is_loopback() => Ipv6Addr::LOCALHOST.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind((local, 0))?;
    socket.connect(daemon)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Parses `169.254.79.129:2000`, `localhost:2000` or `tcp:h:p udp:h:p` (the `udp:` part
/// wins; a plain `host:port` is used when there is no `udp:` part). Host must be an IP
/// literal or `localhost`: no DNS lookups.
pub fn parse_daemon_address(raw: &str) -> Option<SocketAddr> {
    let mut plain = None;
    for token in raw.split_whitespace() {
        if let Some(rest) = strip_prefix_ci(token, "udp:") {
            return parse_host_port(rest);
        }
        if strip_prefix_ci(token, "tcp:").is_none() && plain.is_none() {
            plain = Some(token);
        }
    }
    plain.and_then(parse_host_port)
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn parse_host_port(s: &str) -> Option<SocketAddr> {
    if let Ok(addr) = s.parse() {
        return Some(addr);
    }
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    host.eq_ignore_ascii_case("localhost")
        .then(|| SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_daemon_addresses() {
        let a = |s: &str| parse_daemon_address(s).map(|a| a.to_string());
        assert_eq!(
            a("169.254.79.129:2000").as_deref(),
            Some("169.254.79.129:2000")
        );
        assert_eq!(a("localhost:2001").as_deref(), Some("127.0.0.1:2001"));
        assert_eq!(
            a("tcp:127.0.0.1:2000 udp:127.0.0.2:2001").as_deref(),
            Some("127.0.0.2:2001")
        );
        assert_eq!(
            a("UDP:127.0.0.1:2002 tcp:127.0.0.1:9").as_deref(),
            Some("127.0.0.1:2002")
        );
        assert_eq!(a("[::1]:2000").as_deref(), Some("[::1]:2000"));
        for bad in [
            "",
            "tcp:127.0.0.1:2000",
            "example.com:2000",
            "127.0.0.1",
            "udp:x",
        ] {
            assert_eq!(a(bad), None, "{bad}");
        }
    }

    #[test]
    fn unconfigured_sender_counts_drops() {
        let s = UdpSender::unconfigured("test".into());
        assert!(!s.send(b"x"));
        assert!(!s.send(b"y"));
        assert_eq!((s.sent(), s.dropped()), (0, 2));
    }

    #[test]
    fn sends_to_a_live_socket() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let s = UdpSender::new(rx.local_addr().unwrap());
        assert!(s.send(b"hello"));
        let mut buf = [0u8; 16];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(s.sent(), 1);
    }
}
