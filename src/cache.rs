//! A bounded, thread-safe LRU cache that loads missing values itself.
//!
//! Concurrent requests for the same key wait for one load instead of each reading and
//! decrypting the same blob: a sequential reader and its prefetcher often ask for the same chunk
//! at once. Failed loads are not cached, so a transient error is retried on the next request.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

/// One cached value, or the place where a load in progress will put it.
struct Slot<V> {
    value: Mutex<Option<V>>,
}

struct Entry<V> {
    slot: Arc<Slot<V>>,
    tick: u64,
    weight: usize,
}

struct Inner<K, V> {
    map: HashMap<K, Entry<V>>,
    /// Recency order: tick → key, oldest first.
    order: BTreeMap<u64, K>,
    tick: u64,
    weight: usize,
}

pub struct LoadingLru<K, V> {
    inner: Mutex<Inner<K, V>>,
    capacity: usize,
    weigh: fn(&V) -> usize,
}

/// A poisoned lock only means another thread panicked mid-update of a cache; the data is still
/// usable, and a filesystem handler must not panic in turn.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<K: Eq + Hash + Clone, V: Clone> LoadingLru<K, V> {
    /// A cache holding values whose total `weigh` stays at or under `capacity` (the newest
    /// value is always kept, even when it alone is heavier).
    pub fn new(capacity: usize, weigh: fn(&V) -> usize) -> Self {
        LoadingLru {
            inner: Mutex::new(Inner { map: HashMap::new(), order: BTreeMap::new(), tick: 0, weight: 0 }),
            capacity,
            weigh,
        }
    }

    pub fn contains(&self, key: &K) -> bool {
        lock(&self.inner).map.contains_key(key)
    }

    /// Total weight of the values held now.
    pub fn weight(&self) -> usize {
        lock(&self.inner).weight
    }

    /// The cached value for `key`, or the result of `load` (which runs at most once at a time
    /// per key).
    pub fn get_or_load<E>(&self, key: &K, load: impl FnOnce() -> Result<V, E>) -> Result<V, E> {
        let slot = {
            let mut inner = lock(&self.inner);
            inner.tick += 1;
            let tick = inner.tick;
            let old = match inner.map.get_mut(key) {
                Some(e) => Some((std::mem::replace(&mut e.tick, tick), e.slot.clone())),
                None => None,
            };
            match old {
                Some((old_tick, slot)) => {
                    inner.order.remove(&old_tick);
                    inner.order.insert(tick, key.clone());
                    slot
                }
                None => {
                    let slot = Arc::new(Slot { value: Mutex::new(None) });
                    inner.map.insert(key.clone(), Entry { slot: slot.clone(), tick, weight: 0 });
                    inner.order.insert(tick, key.clone());
                    slot
                }
            }
        };
        let mut value = lock(&slot.value);
        if let Some(v) = &*value {
            return Ok(v.clone());
        }
        match load() {
            Ok(v) => {
                *value = Some(v.clone());
                drop(value);
                self.account(key, &slot, (self.weigh)(&v));
                Ok(v)
            }
            Err(e) => {
                drop(value);
                let mut inner = lock(&self.inner);
                if inner.map.get(key).is_some_and(|e| Arc::ptr_eq(&e.slot, &slot)) {
                    let e = inner.map.remove(key).expect("present");
                    inner.order.remove(&e.tick);
                }
                Err(e)
            }
        }
    }

    /// Records a loaded value's weight and evicts the least recently used values over capacity.
    fn account(&self, key: &K, slot: &Arc<Slot<V>>, weight: usize) {
        let mut inner = lock(&self.inner);
        // The slot may have been evicted while it loaded; then it holds nothing in the cache.
        match inner.map.get_mut(key) {
            Some(e) if Arc::ptr_eq(&e.slot, slot) => e.weight = weight,
            _ => return,
        }
        inner.weight += weight;
        while inner.weight > self.capacity && inner.order.len() > 1 {
            let Some((_, k)) = inner.order.pop_first() else { break };
            if let Some(e) = inner.map.remove(&k) {
                inner.weight -= e.weight;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_by_weight() {
        let c: LoadingLru<u32, Vec<u8>> = LoadingLru::new(10, |v| v.len());
        for k in 0..3 {
            c.get_or_load::<()>(&k, || Ok(vec![0; 4])).unwrap();
        }
        // 12 > 10: key 0 went.
        assert!(!c.contains(&0) && c.contains(&1) && c.contains(&2));
        assert_eq!(c.weight(), 8);
        // Touch 1, add 3: 2 is now the oldest and goes.
        c.get_or_load::<()>(&1, || panic!("cached")).unwrap();
        c.get_or_load::<()>(&3, || Ok(vec![0; 4])).unwrap();
        assert!(c.contains(&1) && !c.contains(&2) && c.contains(&3));
    }

    #[test]
    fn failures_are_not_cached() {
        let c: LoadingLru<u32, Vec<u8>> = LoadingLru::new(10, |v| v.len());
        assert_eq!(c.get_or_load(&1, || Err("boom")), Err("boom"));
        assert!(!c.contains(&1));
        assert_eq!(c.get_or_load::<&str>(&1, || Ok(vec![7])).unwrap(), vec![7]);
    }

    #[test]
    fn concurrent_requests_load_once() {
        let c: Arc<LoadingLru<u32, Vec<u8>>> = Arc::new(LoadingLru::new(100, |v| v.len()));
        let loads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (c, loads) = (c.clone(), loads.clone());
                std::thread::spawn(move || {
                    c.get_or_load::<()>(&5, || {
                        loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        Ok(vec![1, 2, 3])
                    })
                    .unwrap()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), vec![1, 2, 3]);
        }
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
