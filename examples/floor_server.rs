//! The benchmark's floor: the least a hyper 1.x server can do per scrape.
//!
//! It answers every request, whatever its method or path, with one fixed body
//! and content type read at start (`scripts/bench` captures them from
//! clock_exporter, so the body has the same size and format). What
//! clock_exporter spends above this server's latency is the cost of scraping
//! and encoding; what they share is hyper, tokio and the kernel's loopback.
//!
//! It runs on the same runtime shape as clock_exporter's `main.rs` (multi-thread,
//! two workers) and the same HTTP/1 settings that change the wire (keep-alive,
//! `TCP_NODELAY`), so the runtime choice does not count as exporter work.
//!
//! `cargo run --release --example floor_server -- 127.0.0.1:9999 body.txt 'text/plain; version=0.0.4; charset=utf-8'`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A minimal hyper server answering every request with a fixed body.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    listen: SocketAddr,
    /// File whose bytes are the body of every response.
    body: PathBuf,
    /// The `Content-Type` of every response.
    content_type: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let body = match std::fs::read(&args.body) {
        Ok(b) => Bytes::from(b),
        Err(e) => {
            eprintln!("floor_server: {}: {e}", args.body.display());
            return ExitCode::FAILURE;
        }
    };
    let Ok(content_type) = HeaderValue::from_str(&args.content_type) else {
        eprintln!("floor_server: invalid content type {:?}", args.content_type);
        return ExitCode::FAILURE;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let result = runtime.and_then(|rt| rt.block_on(serve(args.listen, body, content_type)));
    if let Err(e) = result {
        eprintln!("floor_server: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

async fn serve(listen: SocketAddr, body: Bytes, content_type: HeaderValue) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let (body, content_type) = (body.clone(), content_type.clone());
        let svc = service_fn(move |_: Request<hyper::body::Incoming>| {
            let mut r = Response::new(Full::new(body.clone()));
            r.headers_mut().insert(CONTENT_TYPE, content_type.clone());
            async move { Ok::<_, Infallible>(r) }
        });
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                eprintln!("floor_server: connection: {e}");
            }
        });
    }
}
