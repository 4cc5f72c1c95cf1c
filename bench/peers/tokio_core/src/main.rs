//! Tokio peer for spindle's core-runtime benchmarks.
//!
//! Prints JSON Lines, one per measurement:
//!   {"impl": "tokio", "op": <op>, "ns_per_op": <float>[, "p50_us": .., "p99_us": ..][, "note": ..]}
//!
//! Every measurement uses a fresh `current_thread` runtime (the runtime thread
//! is "the loop"; foreign threads are plain std::threads).  For the portal_*
//! ops the runtime is driven on its own std::thread and the main thread is the
//! foreign thread that calls into it.
//!
//! Usage: tokio_core [--repeat K] [--ops op1,op2,...]

use std::hint::black_box;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::sync::{oneshot, Notify, Semaphore};
use tokio::task::{JoinError, JoinSet};

const SPAWN_AWAIT_N: u64 = 1_000_000;
const AWAIT_CHAIN_N: u64 = 1_000_000;
const TIMER_N: usize = 100_000;
const TS_THREADS: usize = 4;
const TS_PER_THREAD: usize = 100_000;
const RT_N: usize = 10_000;
const RT_WARMUP: usize = 100;
const BLOCKING_RT_N: usize = 10_000;
const BLOCKING_RT_WARMUP: usize = 100;
const BLOCKING_TP_N: usize = 20_000;
const BLOCKING_TP_WARMUP: usize = 1_000;
const BLOCKING_TP_WINDOW: usize = 256;
const PORTAL_RT_N: usize = 10_000;
const PORTAL_RT_WARMUP: usize = 100;
const PORTAL_TP_N: usize = 16_000; // total calls, split evenly among the foreign threads
const PORTAL_TP_WARMUP: usize = 10; // per foreign thread, before the barrier
const SEM_N: u64 = 1_000_000;
const HANDOFF_N: u64 = 100_000;
const CHANNEL_N: u64 = 1_000_000;
const GATHER_N: usize = 100_000;
const GATHER_LIMIT: usize = 1_000;

const ALL_OPS: &[&str] = &[
    "spawn_await",
    "await_chain",
    "timer_fire",
    "threadsafe_throughput",
    "threadsafe_roundtrip",
    "blocking_roundtrip",
    "blocking_throughput_1",
    "blocking_throughput_2",
    "blocking_throughput_4",
    "portal_roundtrip",
    "portal_roundtrip_block_on",
    "portal_throughput_1",
    "portal_throughput_4",
    "portal_throughput_16",
    "semaphore",
    "semaphore_handoff",
    "channel",
    "gather_settled_100k",
    "gather_100k",
    "gather_100k_inline",
];

struct Result {
    ns_per_op: f64,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    note: Option<&'static str>,
}

impl Result {
    fn plain(ns_per_op: f64) -> Self {
        Result { ns_per_op, p50_us: None, p99_us: None, note: None }
    }
}

fn runtime() -> Runtime {
    Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build current_thread runtime")
}

/// Like `runtime()`, but with the spawn_blocking pool capped at `n` threads.
fn runtime_blocking(n: usize) -> Runtime {
    Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(n)
        .build()
        .expect("build current_thread runtime")
}

/// Run `fut` as a spawned task on a fresh current_thread runtime.
///
/// The benchmark body deliberately runs in a task rather than directly in the
/// `block_on` future: in tokio 1.x waking the `block_on` future goes through
/// the driver's unpark (an eventfd write + epoll_wait round trip when the I/O
/// driver is enabled), whereas waking a task is a plain run-queue push.  This
/// mirrors asyncio, where run_until_complete() also runs the coroutine as a Task.
fn run_in_task<F>(fut: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    run_in_task_on(runtime(), fut)
}

/// `run_in_task` on a given (fresh) runtime.
fn run_in_task_on<F>(rt: Runtime, fut: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let out = rt.block_on(async move { tokio::spawn(fut).await.expect("benchmark task panicked") });
    drop(rt);
    out
}

fn ns(d: Duration) -> f64 {
    d.as_nanos() as f64
}

// 1. spawn_await: spawn an empty task and immediately await its JoinHandle.
fn spawn_await() -> Result {
    let el = run_in_task(async {
        let t0 = Instant::now();
        for _ in 0..SPAWN_AWAIT_N {
            tokio::spawn(async {}).await.unwrap();
        }
        t0.elapsed()
    });
    Result::plain(ns(el) / SPAWN_AWAIT_N as f64)
}

// 2. await_chain: sequential awaits of an async fn that returns immediately.
async fn noop(i: u64) -> u64 {
    black_box(i)
}

fn await_chain() -> Result {
    let el = run_in_task(async {
        let mut acc: u64 = 0;
        let t0 = Instant::now();
        for i in 0..AWAIT_CHAIN_N {
            acc = acc.wrapping_add(noop(black_box(i)).await);
        }
        let el = t0.elapsed();
        black_box(acc);
        el
    });
    Result::plain(ns(el) / AWAIT_CHAIN_N as f64)
}

// 3. timer_fire: 100k timers, delay (i*7919 % 1000) us; one spawned task per timer.
fn timer_fire() -> Result {
    let el = run_in_task(async {
        let remaining: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(TIMER_N)));
        let done: &'static Notify = Box::leak(Box::new(Notify::new()));
        let t0 = Instant::now();
        for i in 0..TIMER_N {
            let d = Duration::from_micros(((i * 7919) % 1000) as u64);
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                if remaining.fetch_sub(1, Ordering::Relaxed) == 1 {
                    done.notify_one();
                }
            });
        }
        done.notified().await;
        t0.elapsed()
    });
    Result {
        note: Some(
            "one tokio::spawn per timer (task + sleep); tokio timer wheel has 1 ms granularity, so sub-ms delays round up to 1 ms",
        ),
        ..Result::plain(ns(el) / TIMER_N as f64)
    }
}

// 4. threadsafe_throughput: 4 std::threads each Handle::spawn 100k no-op tasks.
fn threadsafe_throughput() -> Result {
    let total = TS_THREADS * TS_PER_THREAD;
    let el = run_in_task(async move {
        let handle = Handle::current();
        let counter: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
        let done: &'static Notify = Box::leak(Box::new(Notify::new()));
        let barrier = Arc::new(Barrier::new(TS_THREADS + 1));
        let threads: Vec<_> = (0..TS_THREADS)
            .map(|_| {
                let h = handle.clone();
                let b = barrier.clone();
                std::thread::spawn(move || {
                    b.wait();
                    for _ in 0..TS_PER_THREAD {
                        h.spawn(async move {
                            // Only the runtime thread touches the counter.
                            if counter.fetch_add(1, Ordering::Relaxed) + 1 == total {
                                done.notify_one();
                            }
                        });
                    }
                })
            })
            .collect();
        // Blocks the runtime thread only until all posters are ready.
        barrier.wait();
        let t0 = Instant::now();
        done.notified().await;
        let el = t0.elapsed();
        for t in threads {
            t.join().unwrap();
        }
        el
    });
    Result {
        note: Some("Handle::spawn of a no-op task from 4 std::threads (not an mpsc channel)"),
        ..Result::plain(ns(el) / total as f64)
    }
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    let idx = ((q * sorted.len() as f64) as usize).min(sorted.len() - 1);
    sorted[idx]
}

// 5. threadsafe_roundtrip: foreign thread posts a task that signals it; it blocks until then.
fn threadsafe_roundtrip() -> Result {
    let mut lat = run_in_task(async {
        let handle = Handle::current();
        let (res_tx, res_rx) = oneshot::channel::<Vec<u64>>();
        let t = std::thread::spawn(move || {
            let (tx, rx) = mpsc::channel::<()>();
            let mut lat = Vec::with_capacity(RT_N);
            for i in 0..(RT_WARMUP + RT_N) {
                let tx2 = tx.clone();
                let t0 = Instant::now();
                handle.spawn(async move {
                    let _ = tx2.send(());
                });
                rx.recv().unwrap();
                let el = t0.elapsed();
                if i >= RT_WARMUP {
                    lat.push(el.as_nanos() as u64);
                }
            }
            let _ = res_tx.send(lat);
        });
        let lat = res_rx.await.unwrap();
        t.join().unwrap();
        lat
    });
    lat.sort_unstable();
    let p50 = percentile(&lat, 0.50);
    let p99 = percentile(&lat, 0.99);
    Result {
        ns_per_op: p50 as f64,
        p50_us: Some(p50 as f64 / 1e3),
        p99_us: Some(p99 as f64 / 1e3),
        note: Some("Handle::spawn(task doing std mpsc send) + blocking recv on the foreign thread"),
    }
}

// 6. blocking_roundtrip: from a task, spawn_blocking a trivial fn and await its result.
fn trivial() -> u64 {
    black_box(42)
}

fn blocking_roundtrip() -> Result {
    let mut lat = run_in_task_on(runtime_blocking(1), async {
        let mut lat = Vec::with_capacity(BLOCKING_RT_N);
        let mut acc: u64 = 0;
        for i in 0..(BLOCKING_RT_WARMUP + BLOCKING_RT_N) {
            let t0 = Instant::now();
            acc += tokio::task::spawn_blocking(trivial).await.unwrap();
            let el = t0.elapsed();
            if i >= BLOCKING_RT_WARMUP {
                lat.push(el.as_nanos() as u64);
            }
        }
        assert_eq!(acc, 42 * (BLOCKING_RT_WARMUP + BLOCKING_RT_N) as u64);
        lat
    });
    lat.sort_unstable();
    let p50 = percentile(&lat, 0.50);
    let p99 = percentile(&lat, 0.99);
    Result {
        ns_per_op: p50 as f64,
        p50_us: Some(p50 as f64 / 1e3),
        p99_us: Some(p99 as f64 / 1e3),
        note: Some("tokio::task::spawn_blocking(fn).await; runtime built with max_blocking_threads(1)"),
    }
}

// 7. blocking_throughput_N: N blocking threads, trivial calls with at most
//    BLOCKING_TP_WINDOW in flight (sliding window: Semaphore permit per call,
//    released on the runtime thread once the result is back).
async fn blocking_window(n: usize) {
    let sem = Arc::new(Semaphore::new(BLOCKING_TP_WINDOW));
    let done: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
    for _ in 0..n {
        let permit = sem.clone().acquire_owned().await.unwrap();
        // Submit right away (like run_in_executor); a task awaits the result on the loop.
        let h = tokio::task::spawn_blocking(trivial);
        tokio::spawn(async move {
            black_box(h.await.unwrap());
            done.fetch_add(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    // Drain: every slot free again => all calls are back.
    let _all = sem.acquire_many(BLOCKING_TP_WINDOW as u32).await.unwrap();
    assert_eq!(done.load(Ordering::Relaxed), n);
}

fn blocking_throughput(nthreads: usize) -> Result {
    let el = run_in_task_on(runtime_blocking(nthreads), async {
        blocking_window(BLOCKING_TP_WARMUP).await; // start the pool's threads
        let t0 = Instant::now();
        blocking_window(BLOCKING_TP_N).await;
        t0.elapsed()
    });
    let note = match nthreads {
        1 => "max_blocking_threads(1) + spawn_blocking, <= 256 in flight (Semaphore permit released by a task awaiting the JoinHandle)",
        2 => "max_blocking_threads(2) + spawn_blocking, <= 256 in flight (Semaphore permit released by a task awaiting the JoinHandle)",
        4 => "max_blocking_threads(4) + spawn_blocking, <= 256 in flight (Semaphore permit released by a task awaiting the JoinHandle)",
        _ => unreachable!(),
    };
    Result { note: Some(note), ..Result::plain(ns(el) / BLOCKING_TP_N as f64) }
}

// 8. portal_*: a fresh current_thread runtime driven on its own std::thread
//    (block_on a future that waits for shutdown); foreign threads submit a
//    trivial task and block until its result is back.
/// Drive a fresh runtime on its own thread; call `body(handle)` on this (foreign) thread.
fn run_portal<R>(body: impl FnOnce(&Handle) -> R) -> R {
    let rt = runtime();
    let handle = rt.handle().clone();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let t = std::thread::Builder::new()
        .name("loop".into())
        .spawn(move || {
            rt.block_on(async move {
                let _ = ready_tx.send(());
                let _ = stop_rx.await;
            });
            drop(rt);
        })
        .expect("spawn loop thread");
    ready_rx.recv().unwrap();
    let out = body(&handle);
    let _ = stop_tx.send(());
    t.join().unwrap();
    out
}

/// One blocking round trip from a foreign thread: spawn a task that returns an
/// int (sent through a oneshot) and wait for it without a runtime.
#[inline]
fn portal_call(handle: &Handle) -> u64 {
    let (tx, rx) = oneshot::channel::<u64>();
    handle.spawn(async move {
        let _ = tx.send(black_box(1));
    });
    rx.blocking_recv().unwrap()
}

fn latency_result(mut lat: Vec<u64>, note: &'static str) -> Result {
    lat.sort_unstable();
    let p50 = percentile(&lat, 0.50);
    let p99 = percentile(&lat, 0.99);
    Result {
        ns_per_op: p50 as f64,
        p50_us: Some(p50 as f64 / 1e3),
        p99_us: Some(p99 as f64 / 1e3),
        note: Some(note),
    }
}

fn portal_roundtrip() -> Result {
    let lat = run_portal(|handle| {
        let mut lat = Vec::with_capacity(PORTAL_RT_N);
        let mut acc: u64 = 0;
        for i in 0..(PORTAL_RT_WARMUP + PORTAL_RT_N) {
            let t0 = Instant::now();
            acc += portal_call(handle);
            let el = t0.elapsed();
            if i >= PORTAL_RT_WARMUP {
                lat.push(el.as_nanos() as u64);
            }
        }
        assert_eq!(acc, (PORTAL_RT_WARMUP + PORTAL_RT_N) as u64);
        lat
    });
    latency_result(lat, "Handle::spawn + oneshot::blocking_recv from the main thread; runtime block_on on its own thread")
}

fn portal_roundtrip_block_on() -> Result {
    let lat = run_portal(|handle| {
        let mut lat = Vec::with_capacity(PORTAL_RT_N);
        let mut acc: u64 = 0;
        for i in 0..(PORTAL_RT_WARMUP + PORTAL_RT_N) {
            let t0 = Instant::now();
            acc += handle.block_on(async { black_box(1u64) });
            let el = t0.elapsed();
            if i >= PORTAL_RT_WARMUP {
                lat.push(el.as_nanos() as u64);
            }
        }
        assert_eq!(acc, (PORTAL_RT_WARMUP + PORTAL_RT_N) as u64);
        lat
    });
    latency_result(lat, "Handle::block_on runs the future on the calling thread (not a cross-thread round trip)")
}

fn portal_throughput(nthreads: usize) -> Result {
    let per = PORTAL_TP_N / nthreads;
    let total = nthreads * per;
    let el = run_portal(|handle| {
        let barrier = Arc::new(Barrier::new(nthreads + 1));
        let threads: Vec<_> = (0..nthreads)
            .map(|_| {
                let h = handle.clone();
                let b = barrier.clone();
                std::thread::spawn(move || {
                    for _ in 0..PORTAL_TP_WARMUP {
                        portal_call(&h);
                    }
                    b.wait();
                    let mut acc: u64 = 0;
                    for _ in 0..per {
                        acc += portal_call(&h);
                    }
                    assert_eq!(acc, per as u64);
                })
            })
            .collect();
        barrier.wait(); // all callers warmed up and ready
        let t0 = Instant::now();
        for t in threads {
            t.join().unwrap();
        }
        t0.elapsed()
    });
    let note = match nthreads {
        1 => "1 foreign thread x 16000 blocking calls (Handle::spawn + oneshot::blocking_recv); runtime block_on on its own thread",
        4 => "4 foreign threads x 4000 blocking calls (Handle::spawn + oneshot::blocking_recv); runtime block_on on its own thread",
        16 => "16 foreign threads x 1000 blocking calls (Handle::spawn + oneshot::blocking_recv); runtime block_on on its own thread",
        _ => unreachable!(),
    };
    Result { note: Some(note), ..Result::plain(ns(el) / total as f64) }
}

// Sync primitives, as bench/fanout_bench.cpp measures spindle's (issue #17:
// the semaphore and channel rows must stay ahead of Tokio's).
// semaphore: uncontended acquire + release (ns per pair).
fn semaphore() -> Result {
    let el = run_in_task(async {
        let sem = Semaphore::new(10);
        let t0 = Instant::now();
        for _ in 0..SEM_N {
            let permit = sem.acquire().await.unwrap();
            drop(black_box(permit));
        }
        t0.elapsed()
    });
    Result::plain(ns(el) / SEM_N as f64)
}

// semaphore_handoff: two tasks pass one permit back and forth, each holding
// it across a yield (ns per hand-off).
fn semaphore_handoff() -> Result {
    let el = run_in_task(async {
        let sem = Arc::new(Semaphore::new(1));
        let t0 = Instant::now();
        let player = |s: Arc<Semaphore>| async move {
            for _ in 0..HANDOFF_N / 2 {
                let permit = s.acquire().await.unwrap();
                tokio::task::yield_now().await;
                drop(permit);
            }
        };
        let a = tokio::spawn(player(sem.clone()));
        let b = tokio::spawn(player(sem.clone()));
        a.await.unwrap();
        b.await.unwrap();
        t0.elapsed()
    });
    Result::plain(ns(el) / HANDOFF_N as f64)
}

// channel: 1,000,000 values through a bounded channel of 1,024, producer and
// consumer tasks (ns per value).
fn channel() -> Result {
    let el = run_in_task(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(1024);
        let t0 = Instant::now();
        let producer = tokio::spawn(async move {
            for i in 0..CHANNEL_N {
                tx.send(i).await.unwrap();
            }
        });
        let consumer = tokio::spawn(async move {
            let mut sum: u64 = 0;
            while let Some(v) = rx.recv().await {
                sum += v;
            }
            black_box(sum)
        });
        producer.await.unwrap();
        consumer.await.unwrap();
        t0.elapsed()
    });
    Result::plain(ns(el) / CHANNEL_N as f64)
}

// Fan-out, as bench/fanout_bench.cpp's BM_gather_settled_100k and
// BM_gather_100k: 100,000 trivial tasks, at most 1,000 in flight (a JoinSet
// used as a sliding window: when one ends the next is spawned), every
// result collected in input order (ns per item).
async fn trivial_item(i: u64) -> u64 {
    black_box(i)
}

/// Runs the window; `done` gets each finished item as it is joined.
async fn gather_window(mut done: impl FnMut(std::result::Result<(usize, u64), JoinError>)) {
    let mut set = JoinSet::new();
    for i in 0..GATHER_N {
        if set.len() >= GATHER_LIMIT {
            done(set.join_next().await.expect("a task in the set"));
        }
        set.spawn(async move { (i, trivial_item(i as u64).await) });
    }
    while let Some(r) = set.join_next().await {
        done(r);
    }
}

// gather_settled_100k: every item's outcome (a value, or the JoinError of a
// task that panicked or was aborted), in input order.
fn gather_settled_100k() -> Result {
    let el = run_in_task(async {
        let t0 = Instant::now();
        let mut out: Vec<Option<std::result::Result<u64, JoinError>>> = Vec::with_capacity(GATHER_N);
        out.resize_with(GATHER_N, || None);
        let mut failed: Vec<JoinError> = Vec::new();
        gather_window(|r| match r {
            Ok((i, v)) => out[i] = Some(Ok(v)),
            Err(e) => failed.push(e), // (a JoinError does not say which input; never happens here)
        })
        .await;
        assert!(failed.is_empty() && out.iter().all(|o| o.is_some()));
        black_box(out.as_ptr());
        t0.elapsed()
    });
    Result {
        note: Some("JoinSet window of 1,000 spawned tasks, outcomes stored in input order"),
        ..Result::plain(ns(el) / GATHER_N as f64)
    }
}

// gather_100k: the values in input order; a failure would end the fan-out
// (dropping the JoinSet aborts the rest).
fn gather_100k() -> Result {
    let el = run_in_task(async {
        let t0 = Instant::now();
        let mut out: Vec<u64> = vec![0; GATHER_N];
        gather_window(|r| {
            let (i, v) = r.expect("no item fails");
            out[i] = v;
        })
        .await;
        black_box(out.as_ptr());
        t0.elapsed()
    });
    Result {
        note: Some("JoinSet window of 1,000 spawned tasks, values stored in input order"),
        ..Result::plain(ns(el) / GATHER_N as f64)
    }
}

// gather_100k_inline: the same with the items not spawned but polled inside
// the benchmark task (futures' buffer_unordered(1,000)), values stored in
// input order: no task per item, like spindle's window (its items are
// coroutine frames awaited by the window's workers).
fn gather_100k_inline() -> Result {
    use futures_util::stream::{self, StreamExt};
    let el = run_in_task(async {
        let t0 = Instant::now();
        let mut out: Vec<u64> = vec![0; GATHER_N];
        let mut done = stream::iter(0..GATHER_N)
            .map(|i| async move { (i, trivial_item(i as u64).await) })
            .buffer_unordered(GATHER_LIMIT);
        while let Some((i, v)) = done.next().await {
            out[i] = v;
        }
        black_box(out.as_ptr());
        t0.elapsed()
    });
    Result {
        note: Some("buffer_unordered(1,000) inside one task, values stored in input order"),
        ..Result::plain(ns(el) / GATHER_N as f64)
    }
}

fn run(op: &str) -> Result {
    match op {
        "spawn_await" => spawn_await(),
        "await_chain" => await_chain(),
        "timer_fire" => timer_fire(),
        "threadsafe_throughput" => threadsafe_throughput(),
        "threadsafe_roundtrip" => threadsafe_roundtrip(),
        "blocking_roundtrip" => blocking_roundtrip(),
        "blocking_throughput_1" => blocking_throughput(1),
        "blocking_throughput_2" => blocking_throughput(2),
        "blocking_throughput_4" => blocking_throughput(4),
        "portal_roundtrip" => portal_roundtrip(),
        "portal_roundtrip_block_on" => portal_roundtrip_block_on(),
        "portal_throughput_1" => portal_throughput(1),
        "portal_throughput_4" => portal_throughput(4),
        "portal_throughput_16" => portal_throughput(16),
        "semaphore" => semaphore(),
        "semaphore_handoff" => semaphore_handoff(),
        "channel" => channel(),
        "gather_settled_100k" => gather_settled_100k(),
        "gather_100k" => gather_100k(),
        "gather_100k_inline" => gather_100k_inline(),
        _ => unreachable!(),
    }
}

fn usage() -> ! {
    eprintln!("usage: tokio_core [--repeat K] [--ops {}]", ALL_OPS.join(","));
    std::process::exit(2);
}

fn main() {
    let mut repeat: usize = 1;
    let mut ops: Vec<String> = ALL_OPS.iter().map(|s| s.to_string()).collect();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--repeat" => {
                repeat = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
            }
            "--ops" => {
                let v = args.next().unwrap_or_else(|| usage());
                ops = v.split(',').filter(|s| !s.is_empty()).map(|s| s.to_string()).collect();
                if let Some(bad) = ops.iter().find(|o| !ALL_OPS.contains(&o.as_str())) {
                    eprintln!("unknown op: {bad}");
                    usage();
                }
            }
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    let stdout = std::io::stdout();
    for op in &ops {
        for _ in 0..repeat {
            let r = run(op);
            let mut line = format!(
                "{{\"impl\": \"tokio\", \"op\": \"{}\", \"ns_per_op\": {:.3}",
                op, r.ns_per_op
            );
            if let (Some(p50), Some(p99)) = (r.p50_us, r.p99_us) {
                line.push_str(&format!(", \"p50_us\": {:.3}, \"p99_us\": {:.3}", p50, p99));
            }
            if let Some(n) = r.note {
                line.push_str(&format!(", \"note\": \"{}\"", n));
            }
            line.push('}');
            let mut out = stdout.lock();
            writeln!(out, "{line}").unwrap();
            out.flush().unwrap();
        }
    }
}
