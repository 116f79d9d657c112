use std::time::{Duration, Instant};
#[test]
fn basic() {
    let rt = sigcoro::Runtime::builder().workers(2).build().unwrap();
    let v = rt.block_on(|| {
        let hs: Vec<_> = (0..1000u64).map(|i| sigcoro::spawn(move || { sigcoro::yield_now(); i })).collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(v, 499500);
    let t = Instant::now();
    rt.block_on(|| sigcoro::sleep(Duration::from_millis(20)));
    assert!(t.elapsed() >= Duration::from_millis(20));
    let h = rt.spawn(|| { sigcoro::park(); 5 });
    std::thread::sleep(Duration::from_millis(10));
    h.thread().unpark();
    assert_eq!(h.join().unwrap(), 5);
    let h = rt.spawn(|| { sigcoro::sleep(Duration::from_secs(100)); 5 });
    std::thread::sleep(Duration::from_millis(10));
    h.cancel();
    assert!(h.join().unwrap_err().is_cancelled());
    let h = rt.spawn(|| -> u32 { panic!("boom") });
    assert!(h.join().unwrap_err().is_panic());
    let _parked = rt.spawn(|| { sigcoro::park(); });
    std::thread::sleep(Duration::from_millis(10));
    assert_eq!(rt.shutdown().alive, 1);
}
