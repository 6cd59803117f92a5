//! LISTEN/NOTIFY: 10 senders to 3 listeners, every notification in order per sender; a
//! payload of 7,999 bytes whole; channel names quoted; a listener that survives
//! `pg_terminate_backend` and a server restart, listening again; a pooled connection's
//! LISTEN and unread notifications gone for the next caller; notifications kept while rows
//! stream; channel names of 64 bytes or more refused before anything is sent, and
//! `channels()` agreeing with the server's `pg_listening_channels()`.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use wirepool::{Connection, ErrorKind, Listener, ListenerEvent, Pool};
use wirepool_testkit::{cluster, eventually, fast_config, Role};

async fn recv_notification(l: &mut wirepool::Listener) -> wirepool::Notification {
    match tokio::time::timeout(Duration::from_secs(60), l.recv())
        .await
        .expect("a notification within 60 s")
        .unwrap()
    {
        ListenerEvent::Notification(n) => n,
        other => panic!("expected a notification, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_senders_three_listeners_everything_in_order() {
    let pg = cluster();
    let pool = wirepool_testkit::pool(&pg, Role::Scram, 2, 10).await;
    let mut listeners = Vec::new();
    for _ in 0..3 {
        let mut l = pool.listener().await.unwrap();
        l.listen("Mixed Case").await.unwrap();
        listeners.push(l);
    }
    assert_eq!(pool.statistics().listeners, 3);
    assert_eq!(
        pool.statistics().total_connections,
        2,
        "the listeners' connections are not the pool's"
    );
    let receivers: Vec<_> = listeners
        .into_iter()
        .map(|mut l| {
            tokio::spawn(async move {
                let mut last: HashMap<u32, u32> = HashMap::new();
                for _ in 0..10_000 {
                    let n = recv_notification(&mut l).await;
                    assert_eq!(n.channel(), "Mixed Case");
                    let (sender, seq) = n.payload().split_once(':').unwrap();
                    let (sender, seq): (u32, u32) = (sender.parse().unwrap(), seq.parse().unwrap());
                    let expected = last.get(&sender).map_or(0, |s| s + 1);
                    assert_eq!(seq, expected, "sender {sender} out of order");
                    last.insert(sender, seq);
                }
                assert_eq!(last.len(), 10);
                assert!(last.values().all(|&s| s == 999));
                l
            })
        })
        .collect();
    let senders: Vec<_> = (0..10u32)
        .map(|s| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for i in 0..1000u32 {
                    pool.notify("Mixed Case", &format!("{s}:{i}"))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    let mut back = Vec::new();
    for r in receivers {
        back.push(r.await.unwrap());
    }
    assert_eq!(pool.statistics().notifications_received, 30_000);
    let metrics = pool.render_prometheus();
    assert!(
        metrics.contains("codebase_mcp_pool_notifications_received_total 30000"),
        "{metrics}"
    );
    assert!(metrics.contains("codebase_mcp_pool_listeners 3"));

    // A payload just under the server's limit, and a channel name that would be SQL.
    let l = &mut back[0];
    let odd = "x\"; DROP TABLE t; --";
    l.listen(odd).await.unwrap();
    let big = "p".repeat(7999);
    pool.notify(odd, &big).await.unwrap();
    let n = recv_notification(l).await;
    assert_eq!((n.channel(), n.payload().len()), (odd, 7999));
    assert!(n.payload().chars().all(|c| c == 'p'));
    assert!(n.process_id() > 0);
    let e = pool.notify(odd, &"p".repeat(8000)).await.unwrap_err();
    assert!(e.as_db_error().is_some(), "{e}");
    drop(back);
    assert_eq!(pool.statistics().listeners, 0);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_reconnects_and_listens_again() {
    let mut pg = cluster();
    let mut cfg = fast_config();
    cfg.min_size = 1;
    cfg.reconnect_delays = vec![Duration::from_millis(200), Duration::from_millis(400)];
    let pool = wirepool_testkit::pool_from(pg.config(Role::Scram), cfg).await;
    let mut l = pool.listener().await.unwrap();
    l.listen("jobs").await.unwrap();
    l.listen("cache").await.unwrap();
    pool.notify("jobs", "before").await.unwrap();
    assert_eq!(recv_notification(&mut l).await.payload(), "before");

    let pid = l.process_id().unwrap();
    pool.acquire()
        .await
        .unwrap()
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(60), l.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev, ListenerEvent::Reconnected);
    pool.notify("cache", "after terminate").await.unwrap();
    assert_eq!(recv_notification(&mut l).await.payload(), "after terminate");

    // The server stopped and started again: back within a step of the schedule.
    pg.kill().unwrap();
    let waiting = tokio::spawn(async move {
        let ev = l.recv().await.unwrap();
        (ev, l)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    pg.start_again().unwrap();
    let back_at = std::time::Instant::now();
    let (ev, mut l) = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev, ListenerEvent::Reconnected);
    // The schedule's longest step is 400 ms; a connect on a loaded machine takes more.
    assert!(
        back_at.elapsed() < Duration::from_secs(30),
        "{:?}",
        back_at.elapsed()
    );
    eventually("the pool to be back", || {
        pool.statistics().idle_connections >= 1
    })
    .await;
    // Its new backend listens to every channel.
    let mut listening = l.listening_channels().await.unwrap();
    listening.sort();
    assert_eq!(
        listening,
        ["cache", "jobs"],
        "pg_listening_channels() of its new backend"
    );
    assert_ne!(l.process_id(), Some(pid), "a new backend");
    for ch in ["jobs", "cache"] {
        pool.notify(ch, ch).await.unwrap();
        let n = recv_notification(&mut l).await;
        assert_eq!((n.channel(), n.payload()), (ch, ch));
    }
    let s = pool.statistics();
    assert_eq!((s.listeners, s.listeners_connected), (1, 1));
    assert!(s.listener_reconnects >= 2, "{}", s.listener_reconnects);
    drop(l);
    pool.close().await;
}

#[tokio::test]
async fn a_returned_connection_forgets_its_listens_and_its_queue() {
    let pg = cluster();
    let pool = wirepool_testkit::pool(&pg, Role::Scram, 1, 1).await;
    let mut c = pool.acquire().await.unwrap();
    let pid = c.process_id();
    c.batch_execute("LISTEN x").await.unwrap();
    c.batch_execute("NOTIFY x, 'one'").await.unwrap();
    // Delivered with the answer to the NOTIFY: kept, unread.
    drop(c);
    let mut c = pool.acquire().await.unwrap();
    assert_eq!(c.process_id(), pid, "the same connection");
    assert!(
        c.take_notifications().is_empty(),
        "the queue is not the next caller's"
    );
    let channels = c
        .simple_query("SELECT count(*) FROM pg_listening_channels()")
        .await
        .unwrap();
    assert_eq!(channels[0].get(0), Some("0"), "not subscribed");
    drop(c);
    pool.close().await;
}

/// A LISTEN a function made on the shared path (no tag shows it) lasts until the lane gives
/// its connection back; a notification sent meanwhile waits in the socket and is read by
/// the reset that ends the LISTEN. It is not the next caller's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_to_a_listen_a_function_made_is_not_the_next_callers() {
    let pg = cluster();
    pg.psql(
        "CREATE FUNCTION listen_in_fn() RETURNS int LANGUAGE plpgsql AS \
         $$BEGIN EXECUTE 'LISTEN hidden_channel'; RETURN 1; END$$",
    )
    .unwrap();
    let pool = wirepool_testkit::pool(&pg, Role::Admin, 1, 1).await;
    for round in 0..5 {
        pool.query("SELECT listen_in_fn()", &[]).await.unwrap();
        pg.psql(&format!("NOTIFY hidden_channel, 'round {round}'"))
            .unwrap();
        let mut c = pool.acquire().await.unwrap();
        c.query_one("SELECT 1", &[]).await.unwrap();
        let got: Vec<String> = c
            .take_notifications()
            .iter()
            .map(|n| format!("{}: {}", n.channel(), n.payload()))
            .collect();
        assert!(got.is_empty(), "round {round}: the next caller got {got:?}");
        let channels = c
            .simple_query("SELECT count(*) FROM pg_listening_channels()")
            .await
            .unwrap();
        assert_eq!(
            channels[0].get(0),
            Some("0"),
            "round {round}: not subscribed"
        );
        drop(c);
    }
    pool.close().await;
}

#[tokio::test]
async fn notifications_are_kept_while_rows_stream_up_to_the_bound() {
    let pg = cluster();
    let mut conn = Connection::connect(&pg.config(Role::Scram)).await.unwrap();
    let mut sender = Connection::connect(&pg.config(Role::Scram)).await.unwrap();
    conn.batch_execute("LISTEN s").await.unwrap();
    // Notifications are delivered between transactions of the receiver: send them, then
    // stream a long result; they arrive before or among its rows.
    sender
        .batch_execute("SELECT pg_notify('s', g::text) FROM generate_series(1, 100) g")
        .await
        .unwrap();
    let mut rows = conn
        .query_raw("SELECT g FROM generate_series(1, 50000) g", &[])
        .await
        .unwrap();
    let mut n = 0;
    while let Some(r) = rows.next().await {
        r.unwrap();
        n += 1;
    }
    assert_eq!(n, 50_000);
    drop(rows);
    let mut got = Vec::new();
    while got.len() < 100 {
        let note = tokio::time::timeout(Duration::from_secs(30), conn.next_notification())
            .await
            .unwrap()
            .unwrap();
        got.push(note.payload().parse::<i32>().unwrap());
    }
    assert_eq!(got, (1..=100).collect::<Vec<_>>());

    // Past the bound: the overflow is counted, the kept ones are the first.
    let bound = wirepool::conn::NOTIFICATION_QUEUE as i32;
    sender
        .execute(
            "SELECT pg_notify('s', g::text) FROM generate_series(1, $1) g",
            &[&(bound + 500)],
        )
        .await
        .unwrap();
    // Wait until all have arrived: a query after them reads them into the queue.
    eventually_async(&mut conn, bound as usize).await;
    assert_eq!(conn.notifications_dropped(), 500);
    let kept = conn.take_notifications();
    assert_eq!(kept.len(), bound as usize);
    assert_eq!(kept[0].payload(), "1");
}

/// Runs queries until the queue is full and `dropped` more were counted (each query
/// reads what arrived).
async fn eventually_async(conn: &mut Connection, want: usize) {
    for _ in 0..1500 {
        conn.batch_execute("SELECT 1").await.unwrap();
        if conn.queued_notifications() >= want && conn.notifications_dropped() >= 500 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the notifications did not arrive");
}

/// `channels()` and the server's `pg_listening_channels()`, both sorted.
async fn both_views(l: &mut Listener) -> (Vec<String>, Vec<String>) {
    let mut ours: Vec<String> = l.channels().map(str::to_string).collect();
    let mut server = l.listening_channels().await.unwrap();
    ours.sort();
    server.sort();
    (ours, server)
}

#[tokio::test]
async fn channel_names_the_server_would_cut_are_refused_and_channels_agree_with_the_server() {
    let pg = cluster();
    let pool = Pool::builder(pg.config(Role::Scram))
        .min_size(1)
        .build()
        .await
        .unwrap();
    let mut l = Listener::connect(pg.config(Role::Scram)).await.unwrap();
    // 63 bytes is what the server keeps (NAMEDATALEN - 1); one more and it would cut the
    // name, so that these two would be one channel.
    let at_limit = "a".repeat(63);
    let over_b = format!("{at_limit}b");
    let over_c = format!("{at_limit}c");
    // Bytes of UTF-8, not characters: 32 characters, 64 bytes.
    let multibyte = "\u{e9}".repeat(32);
    for name in [&over_b, &over_c, &multibyte] {
        let e = l
            .listen(name)
            .await
            .expect_err("listen of a name over 63 bytes");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e:?}");
        let e = l
            .unlisten(name)
            .await
            .expect_err("unlisten of a name over 63 bytes");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e:?}");
        let e = pool
            .notify(name, "x")
            .await
            .expect_err("notify on a name over 63 bytes");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e:?}");
    }
    let (ours, server) = both_views(&mut l).await;
    assert!(ours.is_empty() && server.is_empty(), "{ours:?} {server:?}");

    l.listen(&at_limit).await.unwrap();
    l.listen("short").await.unwrap();
    pool.notify(&at_limit, "p").await.unwrap();
    let n = recv_notification(&mut l).await;
    assert_eq!(n.channel(), at_limit);
    let (ours, server) = both_views(&mut l).await;
    assert_eq!(ours, server);
    assert_eq!(ours, vec![at_limit.clone(), "short".to_string()]);

    l.unlisten(&at_limit).await.unwrap();
    let (ours, server) = both_views(&mut l).await;
    assert_eq!(ours, server);
    assert_eq!(ours, vec!["short".to_string()]);

    // A LISTEN whose future is dropped after it was sent: the server listens; the next
    // call takes the channels from the server again.
    let _ = tokio::time::timeout(Duration::ZERO, l.listen("dropped")).await;
    l.listen("after").await.unwrap();
    let (ours, server) = both_views(&mut l).await;
    assert_eq!(ours, server);

    l.unlisten_all().await.unwrap();
    let (ours, server) = both_views(&mut l).await;
    assert!(ours.is_empty() && server.is_empty(), "{ours:?} {server:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pools_listeners_end_when_it_closes() {
    let pg = cluster();
    let mut cfg = fast_config();
    cfg.min_size = 1;
    // A listener that lost its connection waits out a long step of the schedule.
    cfg.reconnect_delays = vec![Duration::from_secs(600)];
    let pool = wirepool_testkit::pool_from(pg.config(Role::Scram), cfg).await;
    let mut waiting = pool.listener().await.unwrap();
    waiting.listen("jobs").await.unwrap();
    let pid = waiting.process_id().unwrap();
    let mut reconnecting = pool.listener().await.unwrap();
    reconnecting.listen("jobs").await.unwrap();
    let lost = reconnecting.process_id().unwrap();
    pool.acquire()
        .await
        .unwrap()
        .execute("SELECT pg_terminate_backend($1, 10000)", &[&lost])
        .await
        .unwrap();
    let recv = |mut l: Listener| {
        tokio::spawn(async move {
            let r = tokio::time::timeout(Duration::from_secs(60), l.recv()).await;
            (l, r)
        })
    };
    let (waiting, reconnecting) = (recv(waiting), recv(reconnecting));
    // Both are in their recv(): one waiting for a notification, one for its reconnect.
    let p = pool.clone();
    eventually("the terminated listener noticed", move || {
        p.statistics().listeners_connected == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    pool.close().await;
    for task in [waiting, reconnecting] {
        let (mut l, r) = task.await.unwrap();
        let e = r.expect("recv() ends with the pool's close").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PoolClosed, "{e:?}");
        assert_eq!(l.process_id(), None);
        let e = l.listen("more").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PoolClosed, "{e:?}");
    }
    let e = pool.listener().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PoolClosed, "{e:?}");
    assert_eq!(pool.statistics().listeners_connected, 0);
    eventually("the listener's session ended on the server", move || {
        pg.psql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"
        ))
        .unwrap()
        .trim()
            == "0"
    })
    .await;
}
