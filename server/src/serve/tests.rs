use std::io::{Read, Write};
use std::os::fd::BorrowedFd;

use super::*;

/// Starts `serve` on a loopback port with a router answering `GET /` with "hi".
async fn start(options: ServeOptions) -> (std::net::SocketAddr, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new().route("/", axum::routing::get(|| async { "hi" }));
    let (stop_tx, mut stop) = watch::channel(false);
    tokio::spawn(serve(listener, router, options, async move {
        let _ = stop.changed().await;
    }));
    (addr, stop_tx)
}

/// The accepted sockets of this process whose peer is `client` (a local address).
fn server_sockets_for(client: std::net::SocketAddr) -> Vec<socket2::Socket> {
    let mut found: Vec<socket2::Socket> = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: the descriptor is only borrowed for the duplication below; if it was closed
        // meanwhile, dup fails and it is skipped.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let Ok(owned) = borrowed.try_clone_to_owned() else {
            continue;
        };
        let socket = socket2::Socket::from(owned);
        let peer = socket.peer_addr().ok().and_then(|a| a.as_socket());
        if peer == Some(client) {
            found.push(socket);
        }
    }
    // A test running alongside may hold a duplicate of the same socket for a moment (it scans
    // the descriptors too): one socket per local address.
    let mut seen = std::collections::HashSet::new();
    found.retain(|s| seen.insert(s.local_addr().ok().and_then(|a| a.as_socket())));
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_sockets_have_tcp_nodelay() {
    let (addr, _stop) = start(ServeOptions::default()).await;
    let (client, response) = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap();
        (s, String::from_utf8_lossy(&buf[..n]).into_owned())
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let sockets = server_sockets_for(client.local_addr().unwrap());
    assert_eq!(sockets.len(), 1, "the server's end of the connection");
    assert!(sockets[0].tcp_nodelay().unwrap(), "TCP_NODELAY is set");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_parse_errors_answer_json() {
    let (addr, _stop) = start(ServeOptions::default()).await;
    let raw = |request: Vec<u8>| {
        tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            let _ = s.write_all(&request);
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    // Over hyper's fixed 65,534-byte request-target limit: hyper's own 414, rewritten.
    let long = format!(
        "GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "a".repeat(70_000)
    );
    let text = raw(long.into_bytes()).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 414"), "{text}");
    assert!(
        text.contains(r#""error_code":"INVALID_PARAMETER_VALUE""#),
        "{text}"
    );
    // A malformed request line: hyper's own 400, rewritten.
    let text = raw(b"GET /\x01 HTTP/1.1\r\n\r\n".to_vec()).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains(r#""error_code":"BAD_REQUEST""#), "{text}");
    // A kept-alive connection still gets the service's answers unchanged afterwards.
    let two = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\nGET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let text = raw(two.to_vec()).await.unwrap();
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
}
