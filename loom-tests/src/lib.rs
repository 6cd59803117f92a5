//! loom models of the pool core and the leak detector; see tests/. This library holds
//! what the models share.

/// Checks `f` under loom with a preemption bound of `default_bound`, unless
/// `LOOM_MAX_PREEMPTIONS` sets one.
#[cfg(wirepool_loom)]
pub fn model(default_bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(default_bound);
    }
    b.check(f);
}
