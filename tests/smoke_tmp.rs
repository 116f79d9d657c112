use sigcoro::coroutine::{Coroutine, CoroutineResult};
#[test]
fn smoke() {
    let mut c = Coroutine::new(|y, a: u32| { let b = y.suspend(a + 1); let c = y.suspend(b * 2); c + 100 });
    assert_eq!(c.resume(1), CoroutineResult::Yield(2));
    assert_eq!(c.resume(5), CoroutineResult::Yield(10));
    assert_eq!(c.resume(7), CoroutineResult::Return(107));
    assert!(c.is_finished());
    println!("{:?}", sigcoro::stack::thread_stats());
    for _ in 0..1000 { let mut c = Coroutine::new(|_y: &sigcoro::coroutine::Yielder<(), ()>, ()| 5); assert_eq!(c.resume(()), CoroutineResult::Return(5)); }
    println!("{:?} {:?}", sigcoro::stack::thread_stats(), sigcoro::stack::guards_are_lightweight());
}
