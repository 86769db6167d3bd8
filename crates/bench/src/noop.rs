//! The floor of `allowgate-bench postfix`: a policy service and a milter that decide nothing.
//!
//! The policy service answers `DUNNO` to every request; the milter negotiates exactly as
//! allowgate's does (version 6, the same "no reply" bits), keeps nothing and answers
//! `continue` wherever an answer is due. With them in Postfix's path, a run measures what the
//! two protocols cost Postfix itself — its smtpd talking to them, round trips, processes
//! scheduled on the same cores — with no decision and no history behind them.

use std::net::SocketAddr;

use allowgate_milter::{Command, Decoder, Limits, Response, encode_response, needs_reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The two services on a runtime of their own (two worker threads, like `allowgate serve`).
pub struct Noop {
    /// The policy service's address.
    pub policy: SocketAddr,
    /// The milter's address.
    pub milter: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

/// Start both on free loopback ports.
pub fn start() -> Result<Noop, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (policy, milter) = runtime
        .block_on(async {
            let p = TcpListener::bind("127.0.0.1:0").await?;
            let m = TcpListener::bind("127.0.0.1:0").await?;
            Ok::<_, std::io::Error>((p, m))
        })
        .map_err(|e| e.to_string())?;
    let addrs = (
        policy.local_addr().map_err(|e| e.to_string())?,
        milter.local_addr().map_err(|e| e.to_string())?,
    );
    runtime.spawn(accept(policy, serve_policy));
    runtime.spawn(accept(milter, serve_milter));
    Ok(Noop {
        policy: addrs.0,
        milter: addrs.1,
        _runtime: runtime,
    })
}

async fn accept<F, Fut>(listener: TcpListener, serve: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(stream));
    }
}

/// `DUNNO` to every request (a request ends with an empty line).
async fn serve_policy(mut stream: TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut answers = 0;
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            pending.drain(..end + 2);
            answers += 1;
        }
        if answers > 0
            && stream
                .write_all(&b"action=DUNNO\n\n".repeat(answers))
                .await
                .is_err()
        {
            return;
        }
    }
}

/// Negotiate as allowgate does, then `continue` wherever an answer is due.
async fn serve_milter(mut stream: TcpStream) {
    let mut decoder = Decoder::new(Limits::default());
    let mut protocol = 0;
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut out = Vec::new();
    loop {
        buf.clear();
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let _ = rustix_quickack(&stream);
        decoder.feed(&buf);
        out.clear();
        loop {
            let command = match decoder.next_command() {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(_) => return,
            };
            let response = match &command {
                Command::OptNeg(offer) => match allowgate_milter::negotiate(offer) {
                    Ok(ours) => {
                        protocol = ours.protocol;
                        Some(Response::OptNeg(ours))
                    }
                    Err(_) => return,
                },
                Command::Quit => return,
                c if needs_reply(protocol, c) => Some(Response::Continue),
                _ => None,
            };
            if let Some(r) = response
                && encode_response(&r, &mut out).is_err()
            {
                return;
            }
        }
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// The same quick acknowledgement allowgate's milter sets after each read.
fn rustix_quickack(stream: &TcpStream) -> std::io::Result<()> {
    rustix::net::sockopt::set_tcp_quickack(stream, true).map_err(std::io::Error::from)
}
