//! A map that forgets its oldest entries beyond a bound: what the verification caches (signer
//! certificates, batch roots, parsed SM2 keys) are built on, so that no stream of new keys or
//! certificates grows a daemon's memory without limit. A forgotten entry costs only the work it
//! saved, done again the next time.

use std::{
    borrow::Borrow,
    collections::{HashMap, VecDeque},
    hash::Hash,
};

/// At most `cap` entries; inserting a new key beyond that drops the oldest inserted one.
/// Replacing the value of a key keeps its place in the order.
#[derive(Debug)]
pub struct BoundedMap<K, V> {
    map: HashMap<K, V>,
    /// Keys in insertion order, for eviction.
    order: VecDeque<K>,
    cap: usize,
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    /// An empty map holding at most `cap` entries (at least one).
    pub fn new(cap: usize) -> Self {
        BoundedMap {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// The value of `key`, if remembered.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key)
    }

    /// Whether `key` is remembered.
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.contains_key(key)
    }

    /// Remembers `value` for `key`, forgetting the oldest entry if that makes one too many.
    pub fn insert(&mut self, key: K, value: V) {
        if self.map.insert(key.clone(), value).is_some() {
            return;
        }
        self.order.push_back(key);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }

    /// How many entries are remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_entry_goes_first_and_a_replaced_value_keeps_its_place() {
        let mut m = BoundedMap::new(3);
        for k in 0..3 {
            m.insert(k, k * 10);
        }
        m.insert(0, 1); // replaced: still the oldest
        m.insert(3, 30);
        assert!(!m.contains(&0), "the oldest is forgotten");
        assert_eq!(m.get(&1), Some(&10));
        assert_eq!(m.get(&3), Some(&30));
        assert_eq!(m.len(), 3);
        for k in 4..100 {
            m.insert(k, k);
        }
        assert_eq!(m.len(), 3, "never more than the bound");
        assert_eq!(m.order.len(), 3);
        assert!(m.contains(&99) && m.contains(&97) && !m.contains(&96));
    }
}
