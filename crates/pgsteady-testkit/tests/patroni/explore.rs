use std::time::{Duration, Instant};
use pgsteady_testkit::PatroniCluster;

#[tokio::test]
#[ignore]
async fn explore() {
    let t = Instant::now();
    let c = PatroniCluster::builder().haproxy(true).start().await.unwrap();
    eprintln!("boot {:?}", t.elapsed());
    let h = c.wait_healthy(Duration::from_secs(30)).await.unwrap();
    eprintln!("{h:?} {:?}", c.members().await.unwrap());
    let t = Instant::now();
    c.switchover(&h.replica).await.unwrap();
    eprintln!("switchover returned {:?}", t.elapsed());
    let ch = c.wait_leader_change(h.timeline, Duration::from_secs(30)).await.unwrap();
    eprintln!("{ch:?} since-start {:?}", ch.at.unwrap().duration_since(std::time::SystemTime::now() - t.elapsed()));
    let h2 = c.wait_healthy(Duration::from_secs(60)).await.unwrap();
    eprintln!("healthy again {:?} {h2:?}", t.elapsed());
    for n in c.nodes() { eprintln!("{} ready {:?}", n.name(), n.ready_times()); }
}
