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
//!   hyper_http fetch --urls FILE --concurrency C [--out FILE]
//!       what `spindle fetch` does (issue #7), for bench/run_fetch.sh: the URL
//!       list (one per line; blank lines and #comments skipped) is read as it
//!       goes by C spawned tasks sharing the reader, through one hyper::Client
//!       (at most C connections); one JSON line per input, in completion
//!       order, to --out (default stdout): index, url, ok, status, attempts
//!       (always 1: no retries), elapsed_ms, bytes, and on failure error.
//!       Then on stderr `ok=<n> failed=<n> elapsed_s=<x> rps=<y>`. Exit 0 if
//!       every input was ok, 3 if some failed, 2 on a usage error.

use std::convert::Infallible;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::SocketAddr;
use std::process::exit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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

/// The URL list, read line by line as the workers take them.
struct Inputs {
    lines: std::io::Lines<BufReader<Box<dyn std::io::Read + Send>>>,
    next_index: usize,
}

impl Inputs {
    /// The next URL with its 0-based input position; None at the end.
    fn next(&mut self) -> Option<(usize, String)> {
        for line in self.lines.by_ref() {
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("hyper_http: reading the URL list: {e}");
                    return None;
                }
            };
            let s = line.trim();
            if s.is_empty() || s.starts_with('#') {
                continue;
            }
            let i = self.next_index;
            self.next_index += 1;
            return Some((i, s.to_string()));
        }
        None
    }
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One input: one GET, the body read whole; its JSON line.
async fn fetch_one(client: &Client<HttpConnector>, index: usize, url: &str) -> (bool, String) {
    let t0 = Instant::now();
    let (ok, status, bytes, error): (bool, Option<u16>, usize, Option<(&str, String)>) = match url.parse::<Uri>() {
        Err(e) => (false, None, 0, Some(("invalid_url", e.to_string()))),
        Ok(uri) => match client.get(uri).await {
            Err(e) => (false, None, 0, Some(("connect", e.to_string()))),
            Ok(resp) => {
                let status = resp.status();
                match hyper::body::to_bytes(resp.into_body()).await {
                    Err(e) => (false, Some(status.as_u16()), 0, Some(("protocol", e.to_string()))),
                    Ok(body) if status.is_success() => (true, Some(status.as_u16()), body.len(), None),
                    Ok(body) => (false, Some(status.as_u16()), body.len(), Some(("http_status", format!("HTTP {status}")))),
                }
            }
        },
    };
    let elapsed_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut line = String::with_capacity(160);
    line.push_str(&format!("{{\"index\":{index},\"url\":"));
    json_str(&mut line, url);
    line.push_str(&format!(",\"ok\":{ok},\"status\":"));
    match status {
        Some(s) => line.push_str(&s.to_string()),
        None => line.push_str("null"),
    }
    line.push_str(&format!(",\"attempts\":1,\"elapsed_ms\":{elapsed_ms:.3},\"bytes\":{bytes}"));
    if let Some((kind, message)) = error {
        line.push_str(&format!(",\"error\":{{\"kind\":\"{kind}\",\"message\":"));
        json_str(&mut line, &message);
        line.push('}');
    }
    line.push_str("}\n");
    (ok, line)
}

async fn fetch(urls: String, out: String, c: usize) -> i32 {
    let input: Box<dyn std::io::Read + Send> = if urls == "-" {
        Box::new(std::io::stdin())
    } else {
        match File::open(&urls) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("hyper_http: {urls}: {e}");
                return 2;
            }
        }
    };
    let output: Box<dyn Write + Send> = if out == "-" {
        Box::new(std::io::stdout())
    } else {
        match File::create(&out) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("hyper_http: {out}: {e}");
                return 2;
            }
        }
    };
    let inputs = Arc::new(Mutex::new(Inputs { lines: BufReader::new(input).lines(), next_index: 0 }));
    let output = Arc::new(Mutex::new(BufWriter::with_capacity(256 << 10, output)));
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector> = Client::builder().pool_max_idle_per_host(c).build(connector);
    let t0 = Instant::now();
    let mut workers = Vec::with_capacity(c);
    for _ in 0..c {
        let client = client.clone();
        let inputs = inputs.clone();
        let output = output.clone();
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0usize, 0usize);
            // Bounded: every pass takes one input line.
            loop {
                let next = inputs.lock().expect("inputs").next();
                let Some((index, url)) = next else { break };
                let (good, line) = fetch_one(&client, index, &url).await;
                if good {
                    ok += 1;
                } else {
                    failed += 1;
                }
                if let Err(e) = output.lock().expect("output").write_all(line.as_bytes()) {
                    eprintln!("hyper_http: writing the results: {e}");
                    std::process::exit(1);
                }
            }
            (ok, failed)
        }));
    }
    let (mut ok, mut failed) = (0, 0);
    for w in workers {
        let (o, f) = w.await.expect("worker task");
        ok += o;
        failed += f;
    }
    if let Err(e) = output.lock().expect("output").flush() {
        eprintln!("hyper_http: writing the results: {e}");
        return 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    eprintln!("ok={ok} failed={failed} elapsed_s={secs:.3} rps={:.1}", (ok + failed) as f64 / secs);
    if failed == 0 {
        0
    } else {
        3
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: hyper_http server --port P [--seconds S]\n       hyper_http client --url URL --requests N --concurrency C [--repeat K]\n       hyper_http fetch --urls FILE --concurrency C [--out FILE]"
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
    let mut urls = String::new();
    let mut out = String::from("-");
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
            "--urls" => urls = v.to_string(),
            "--out" => out = v.to_string(),
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
        "fetch" => {
            if urls.is_empty() {
                usage();
            }
            rt.block_on(async move { tokio::spawn(fetch(urls, out, concurrency)).await.expect("fetch") })
        }
        _ => usage(),
    };
    exit(code);
}
