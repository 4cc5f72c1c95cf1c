//! HTTP/1.1 peer for spindle's http_bench (issue #6): hyper 0.14 on a Tokio
//! `current_thread` runtime.
//!
//!   hyper_http server --port P [--seconds S]
//!       GET / -> 200 "hello" (keep-alive) on 127.0.0.1:P until SIGINT/SIGTERM
//!       or S seconds (default 60); then a graceful shutdown.
//!   hyper_http client --url URL --requests N --concurrency C [--repeat K]
//!       one hyper::Client; N GETs run by C spawned tasks sharing a counter
//!       (so at most C connections are in use); every response checked to be
//!       200 "hello". One JSON line per repeat:
//!       {"impl":"tokio","op":"http_client_c<C>","ns_per_op":wall/N,"note":...}

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::exit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::client::HttpConnector;
use hyper::service::{make_service_fn, service_fn};
use hyper::{Body, Client, Method, Request, Response, Server, StatusCode, Uri};

async fn hello(req: Request<Body>) -> Result<Response<Body>, Infallible> {
    let resp = if req.method() == Method::GET && req.uri().path() == "/" {
        Response::builder()
            .header("Content-Type", "text/plain")
            .body(Body::from("hello"))
    } else {
        Response::builder().status(StatusCode::NOT_FOUND).body(Body::empty())
    };
    Ok(resp.expect("a valid response"))
}

async fn serve(port: u16, seconds: u64) -> i32 {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let make_svc = make_service_fn(|_conn| async { Ok::<_, Infallible>(service_fn(hello)) });
    let builder = match Server::try_bind(&addr) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("hyper_http: bind 127.0.0.1:{port}: {e}");
            return 1;
        }
    };
    let server = builder.http1_only(true).tcp_nodelay(true).serve(make_svc);
    eprintln!("hyper_http: serving on 127.0.0.1:{port} for at most {seconds} s");
    let shutdown = async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            _ = tokio::time::sleep(Duration::from_secs(seconds)) => {}
        }
    };
    match server.with_graceful_shutdown(shutdown).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("hyper_http: server: {e}");
            1
        }
    }
}

/// N GETs by C tasks; returns (bad responses, first error).
async fn fetch_all(client: &Client<HttpConnector>, uri: &Uri, n: usize, c: usize) -> (usize, Option<String>) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::with_capacity(c);
    for _ in 0..c.min(n) {
        let client = client.clone();
        let uri = uri.clone();
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            let mut bad = 0usize;
            let mut first: Option<String> = None;
            // Bounded: every pass takes one of the N indices.
            while next.fetch_add(1, Ordering::Relaxed) < n {
                match client.get(uri.clone()).await {
                    Ok(resp) => {
                        let status = resp.status();
                        match hyper::body::to_bytes(resp.into_body()).await {
                            Ok(body) if status == StatusCode::OK && &body[..] == b"hello" => {}
                            Ok(_) => {
                                bad += 1;
                                first.get_or_insert_with(|| format!("unexpected response: status {status}"));
                            }
                            Err(e) => {
                                bad += 1;
                                first.get_or_insert_with(|| format!("body: {e}"));
                            }
                        }
                    }
                    Err(e) => {
                        bad += 1;
                        first.get_or_insert_with(|| format!("request: {e}"));
                    }
                }
            }
            (bad, first)
        }));
    }
    let mut bad = 0;
    let mut first = None;
    for w in workers {
        let (b, f) = w.await.expect("worker task");
        bad += b;
        if first.is_none() {
            first = f;
        }
    }
    (bad, first)
}

async fn client(url: String, n: usize, c: usize, repeat: usize) -> i32 {
    let uri: Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("hyper_http: bad url {url}: {e}");
            return 2;
        }
    };
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector> = Client::builder().pool_max_idle_per_host(c).build(connector);
    // Warm-up (not timed): opens the C connections, as for every peer.
    let (mut bad, mut first) = fetch_all(&client, &uri, n.min(1000), c).await;
    for _ in 0..repeat {
        if bad != 0 {
            break;
        }
        let t0 = Instant::now();
        let (b, f) = fetch_all(&client, &uri, n, c).await;
        let wall = t0.elapsed().as_nanos() as f64;
        bad += b;
        if first.is_none() {
            first = f;
        }
        println!(
            "{{\"impl\": \"tokio\", \"op\": \"http_client_c{c}\", \"ns_per_op\": {:.1}, \"note\": \"hyper 0.14 client; {n} GETs, {c} in flight\"}}",
            wall / n as f64
        );
    }
    if bad != 0 {
        eprintln!("hyper_http: {bad} bad responses; first: {}", first.unwrap_or_default());
        return 1;
    }
    0
}

fn usage() -> ! {
    eprintln!(
        "usage: hyper_http server --port P [--seconds S]\n       hyper_http client --url URL --requests N --concurrency C [--repeat K]"
    );
    exit(2)
}

fn number<T: std::str::FromStr>(s: &str) -> T {
    s.parse().unwrap_or_else(|_| usage())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 2 {
        usage();
    }
    let mut port: Option<u16> = None;
    let mut seconds: u64 = 60;
    let mut url = String::new();
    let mut requests: usize = 20000;
    let mut concurrency: usize = 64;
    let mut repeat: usize = 1;
    let mut i = 2;
    while i < args.len() {
        if i + 1 >= args.len() {
            usage();
        }
        let v = args[i + 1].as_str();
        match args[i].as_str() {
            "--port" => port = Some(number(v)),
            "--seconds" => seconds = number(v),
            "--url" => url = v.to_string(),
            "--requests" => requests = number(v),
            "--concurrency" => concurrency = number(v),
            "--repeat" => repeat = number(v),
            _ => usage(),
        }
        i += 2;
    }
    if requests == 0 || concurrency == 0 || seconds == 0 {
        usage();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = match args[1].as_str() {
        "server" => {
            let p = port.unwrap_or_else(|| usage());
            rt.block_on(async move { tokio::spawn(serve(p, seconds)).await.expect("server") })
        }
        "client" => {
            if url.is_empty() {
                usage();
            }
            // The work runs in a spawned task, as in tokio_core (block_on's own
            // wake path is slower than a spawned task's).
            rt.block_on(async move { tokio::spawn(client(url, requests, concurrency, repeat)).await.expect("client") })
        }
        _ => usage(),
    };
    exit(code);
}
