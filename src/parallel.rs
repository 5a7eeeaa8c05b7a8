//! A pure computation spread over cores: one scoped thread per item, joined before returning,
//! results in item order. Used per family (render, digest, plan, kernel reads), where the two
//! halves share nothing but what they read.

use std::thread::ScopedJoinHandle;

/// `f` of every item, each item on its own thread; a panic in one is raised here.
pub fn map<T, R, F>(items: impl IntoIterator<Item = T>, f: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(T) -> R + Sync,
{
    std::thread::scope(|scope| {
        let f = &f;
        let running: Vec<_> = items
            .into_iter()
            .map(|item| scope.spawn(move || f(item)))
            .collect();
        running.into_iter().map(join).collect()
    })
}

/// The result of a scoped thread; its panic, if it panicked, goes on in the caller.
pub fn join<T>(running: ScopedJoinHandle<'_, T>) -> T {
    running
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_come_in_item_order() {
        assert_eq!(super::map([3u64, 1, 2], |n| n * 10), [30, 10, 20]);
        assert!(super::map(Vec::<u8>::new(), |n| n).is_empty());
    }

    #[test]
    #[should_panic(expected = "boom")]
    fn a_panic_reaches_the_caller() {
        super::map([1, 2], |n| if n == 2 { panic!("boom") } else { n });
    }
}
