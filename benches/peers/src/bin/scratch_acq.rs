use std::time::{Duration, Instant};
use wirepool_testkit::{Cluster, Role};
fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2_000_000);
    let pg = Cluster::start().expect("pg");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = pg.url(Role::Trust);
    rt.block_on(async {
        let pool = wirepool::Pool::builder(url.parse().unwrap()).min_size(1).max_size(10)
            .acquire_timeout(Duration::from_secs(60)).build().await.unwrap();
        for _ in 0..3 {
            let s = Instant::now();
            for _ in 0..n { drop(pool.acquire().await.unwrap()); }
            println!("{:.1} ns/op", s.elapsed().as_nanos() as f64 / n as f64);
        }
    });
}
