//! A fault-injecting HTTP/1.1 proxy on loopback, between the function and a real S3 server.
//!
//! Each request is read whole, matched against the injected faults (method + a fragment of the
//! request target), then either forwarded to the upstream server (one upstream connection per
//! request, `Connection: close`) or answered with the fault: an S3 error status, a TCP reset, a
//! stall, a response body cut short or stalled half way, or a request body cut short upstream.
//! Every request is logged, so tests can count attempts. Every wait is bounded.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Longest head we accept (S3 requests carry a few KB of headers at most).
const MAX_HEAD: usize = 64 * 1024;
/// Longest body we buffer (test objects are small).
const MAX_BODY: usize = 64 * 1024 * 1024;
/// Upper bound on any stall, whatever a test asks for.
const MAX_STALL: Duration = Duration::from_secs(30);

/// What the proxy does to a matching request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyFault {
    /// Answer `status` with an S3 XML error of this code (e.g. 503 `SlowDown`, 500
    /// `InternalError`), without forwarding.
    Status(u16, &'static str),
    /// Reset the connection (RST) without answering.
    Reset,
    /// Answer nothing for this long, then close.
    Stall(Duration),
    /// Forward, then send the response head and only half of its body, and close.
    TruncateResponse,
    /// Forward, then send the response head and half of its body, and stall for this long.
    StallResponseBody(Duration),
    /// Forward the request head and only half of its body upstream, then reset both sides.
    TruncateRequest,
}

#[derive(Debug)]
struct Rule {
    method: String,
    target: String,
    fault: ProxyFault,
    remaining: Option<u32>,
}

/// One request seen by the proxy.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub fault: Option<ProxyFault>,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    seen: Vec<Seen>,
}

/// The proxy; dropping it stops it.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    // Errors just end the connection; the client sees that.
                    let _ = serve(client, upstream, state).await;
                });
            }
        });
        FaultProxy { addr, state, task }
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Applies `fault` to the next `times` requests (`None`: all) whose method is `method` and
    /// whose request target (path and query, as sent) contains `target`.
    pub fn inject(&self, method: &str, target: &str, fault: ProxyFault, times: Option<u32>) {
        self.state.lock().unwrap().rules.push(Rule {
            method: method.to_owned(),
            target: target.to_owned(),
            fault,
            remaining: times,
        });
    }

    /// Removes every fault: from now on the proxy only forwards.
    pub fn clear(&self) {
        self.state.lock().unwrap().rules.clear();
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// How many requests with this method and a target containing `target` arrived.
    pub fn count(&self, method: &str, target: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == method && s.target.contains(target))
            .count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A parsed request or response head.
struct Head {
    /// The head's bytes, `\r\n\r\n` included.
    raw: Vec<u8>,
    method: String,
    target: String,
    content_length: usize,
    expect_continue: bool,
}

/// Reads until the end of a head; `Ok(None)` on a clean EOF before any byte.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<usize>> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(end + 4));
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::Error::other("head too long"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(std::io::Error::other("EOF inside a head"))
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn parse_request(raw: &[u8]) -> std::io::Result<Head> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(raw).map_err(std::io::Error::other)?;
    let mut content_length = 0;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            content_length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| std::io::Error::other("bad content-length"))?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(std::io::Error::other("chunked requests are not supported"));
        } else if h.name.eq_ignore_ascii_case("expect") {
            expect_continue = h.value.eq_ignore_ascii_case(b"100-continue");
        }
    }
    Ok(Head {
        raw: raw.to_vec(),
        method: req.method.unwrap_or("").to_owned(),
        target: req.path.unwrap_or("").to_owned(),
        content_length,
        expect_continue,
    })
}

/// The request head as sent upstream: `Connection: close` (one request per upstream
/// connection), no `Expect` (the proxy already answered it). Neither header is signed.
fn upstream_head(head: &Head) -> Vec<u8> {
    let text = String::from_utf8_lossy(&head.raw);
    let mut out = String::with_capacity(text.len() + 32);
    for (i, line) in text.split("\r\n").enumerate() {
        if line.is_empty() {
            continue;
        }
        let name = line.split(':').next().unwrap_or("").trim();
        if i > 0 && (name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("expect"))
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

fn take_fault(state: &Mutex<State>, method: &str, target: &str) -> Option<ProxyFault> {
    let mut st = state.lock().unwrap();
    let fault = st.rules.iter_mut().find_map(|r| {
        let matches = r.method == method && target.contains(&r.target) && r.remaining != Some(0);
        if !matches {
            return None;
        }
        if let Some(n) = &mut r.remaining {
            *n -= 1;
        }
        Some(r.fault)
    });
    st.seen.push(Seen {
        method: method.to_owned(),
        target: target.to_owned(),
        fault,
    });
    fault
}

fn reset(stream: TcpStream) {
    // SO_LINGER 0: close() sends RST instead of FIN. (Deprecated because a non-zero linger
    // blocks the thread on drop; a zero linger never does.)
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    state: Arc<Mutex<State>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let Some(head_len) = read_head(&mut client, &mut buf).await? else {
        return Ok(());
    };
    let head = parse_request(&buf[..head_len])?;
    if head.content_length > MAX_BODY {
        return Err(std::io::Error::other("body too large for the proxy"));
    }
    if head.expect_continue && buf.len() == head_len && head.content_length > 0 {
        client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    let total = head_len + head.content_length;
    while buf.len() < total {
        let mut chunk = vec![0u8; (total - buf.len()).min(1 << 16)];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("EOF inside a body"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_len..total].to_vec();
    buf.drain(..total);

    let fault = take_fault(&state, &head.method, &head.target);
    match fault {
        Some(ProxyFault::Status(status, code)) => {
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
                 <Message>injected by the fault proxy</Message><RequestId>PROXY</RequestId></Error>"
            );
            let reason = if status == 503 { "Slow Down" } else { "Error" };
            let response = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
                 x-amz-request-id: PROXY\r\nConnection: close\r\n\r\n{xml}",
                xml.len()
            );
            client.write_all(response.as_bytes()).await?;
            client.shutdown().await?;
            return Ok(());
        }
        Some(ProxyFault::Reset) => {
            reset(client);
            return Ok(());
        }
        Some(ProxyFault::Stall(d)) => {
            tokio::time::sleep(d.min(MAX_STALL)).await;
            return Ok(());
        }
        Some(ProxyFault::TruncateRequest) => {
            let mut up = TcpStream::connect(upstream).await?;
            up.write_all(&upstream_head(&head)).await?;
            up.write_all(&body[..body.len() / 2]).await?;
            up.flush().await?;
            // Give the server the partial body before the reset.
            tokio::time::sleep(Duration::from_millis(50)).await;
            reset(up);
            reset(client);
            return Ok(());
        }
        None | Some(ProxyFault::TruncateResponse | ProxyFault::StallResponseBody(_)) => {}
    }

    // Forward: one upstream connection per request, read to EOF.
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(&upstream_head(&head)).await?;
    up.write_all(&body).await?;
    let mut response = Vec::new();
    tokio::time::timeout(MAX_STALL, up.read_to_end(&mut response))
        .await
        .map_err(|_| std::io::Error::other("upstream timed out"))??;
    match fault {
        Some(ProxyFault::TruncateResponse) | Some(ProxyFault::StallResponseBody(_)) => {
            let head_end = response
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(response.len(), |p| p + 4);
            let body_len = response.len() - head_end;
            client
                .write_all(&response[..head_end + body_len / 2])
                .await?;
            client.flush().await?;
            if let Some(ProxyFault::StallResponseBody(d)) = fault {
                tokio::time::sleep(d.min(MAX_STALL)).await;
            }
            reset(client);
            Ok(())
        }
        _ => {
            client.write_all(&response).await?;
            // The upstream said `Connection: close` to us, not necessarily to the client:
            // close, so that the client never waits for a second response here.
            client.shutdown().await
        }
    }
}
