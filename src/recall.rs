//! What the last pass of a repeated computation made, by key and a digest of its input: a pass
//! takes a value again when its input's digest is unchanged and makes it anew otherwise, and
//! keeps exactly the keys it asked for (`finish`), so it never holds more than one pass's
//! worth. The daemon's per-file load cache, the etcd source's decoded values and the plan's
//! rule hashes are each one of these.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::convert::Infallible;
use std::hash::Hash;

pub struct Recall<K, D, V> {
    /// What the previous pass made.
    previous: HashMap<K, (D, V)>,
    /// What the pass under way made or took so far.
    current: HashMap<K, (D, V)>,
}

impl<K, D, V> Default for Recall<K, D, V> {
    fn default() -> Self {
        Recall {
            previous: HashMap::new(),
            current: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash, D: PartialEq, V> Recall<K, D, V> {
    /// The value for `key` whose input has `digest`: this pass's or the previous pass's when
    /// made from an input with the same digest, else `make()`'s.
    pub fn get_or_make(&mut self, key: K, digest: D, make: impl FnOnce() -> V) -> &V {
        match self.get_or_try_make(key, digest, || Ok::<V, Infallible>(make())) {
            Ok(value) => value,
            Err(never) => match never {},
        }
    }

    /// `get_or_make` for a `make` that can fail: its error is returned and nothing is kept
    /// for `key` (the previous pass's value, made from another input, is dropped).
    pub fn get_or_try_make<E>(
        &mut self,
        key: K,
        digest: D,
        make: impl FnOnce() -> Result<V, E>,
    ) -> Result<&V, E> {
        match self.current.entry(key) {
            Entry::Occupied(mut e) => {
                if e.get().0 != digest {
                    match make() {
                        Ok(value) => e.insert((digest, value)),
                        Err(err) => {
                            e.remove();
                            return Err(err);
                        }
                    };
                }
                Ok(&e.into_mut().1)
            }
            Entry::Vacant(e) => {
                let value = match self.previous.remove(e.key()) {
                    Some((d, v)) if d == digest => v,
                    _ => make()?,
                };
                Ok(&e.insert((digest, value)).1)
            }
        }
    }

    /// End the pass: what it asked for is what the next pass finds; the rest is dropped.
    pub fn finish(&mut self) {
        self.previous = std::mem::take(&mut self.current);
    }

    /// How many values are held (both passes'); a test's view.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.previous.len() + self.current.len()
    }

    /// The keys held (both passes').
    #[cfg(test)]
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.previous.keys().chain(self.current.keys())
    }

    /// The values held, to alter (both passes').
    #[cfg(test)]
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        let previous = self.previous.values_mut();
        previous.chain(self.current.values_mut()).map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::Recall;

    #[test]
    fn a_value_is_made_again_only_when_its_digest_changed_and_a_pass_keeps_what_it_asked_for() {
        let mut made = Vec::new();
        let mut recall: Recall<&str, u8, String> = Recall::default();
        let mut pass = |recall: &mut Recall<&str, u8, String>, asks: &[(&'static str, u8)]| {
            for &(key, digest) in asks {
                let value = recall.get_or_make(key, digest, || {
                    made.push((key, digest));
                    format!("{key}{digest}")
                });
                assert_eq!(*value, format!("{key}{digest}"));
            }
            recall.finish();
        };
        pass(&mut recall, &[("a", 1), ("b", 1), ("a", 1)]);
        pass(&mut recall, &[("a", 1), ("b", 2)]);
        pass(&mut recall, &[("b", 2)]);
        pass(&mut recall, &[("a", 1), ("b", 2), ("b", 3)]);
        assert_eq!(
            made,
            [("a", 1), ("b", 1), ("b", 2), ("a", 1), ("b", 3)],
            "made once per pass and digest; `a` was dropped when a pass did not ask for it"
        );
        assert_eq!(recall.held(), 2);
    }

    #[test]
    fn a_failed_make_keeps_nothing_for_its_key() {
        let mut recall: Recall<&str, u8, u8> = Recall::default();
        assert_eq!(recall.get_or_try_make("a", 1, || Ok::<_, ()>(10)), Ok(&10));
        recall.finish();
        // The previous pass's value was made from another input: a failure drops it.
        assert_eq!(recall.get_or_try_make("a", 2, || Err("bad")), Err("bad"));
        assert_eq!(recall.held(), 0);
        // So does a failure for a key this pass already made.
        assert_eq!(recall.get_or_try_make("b", 1, || Ok::<_, ()>(20)), Ok(&20));
        assert_eq!(recall.get_or_try_make("b", 2, || Err("bad")), Err("bad"));
        assert_eq!(recall.held(), 0);
        // And a value made from the same input is taken, not made.
        assert_eq!(recall.get_or_try_make("c", 1, || Ok::<_, ()>(30)), Ok(&30));
        assert_eq!(recall.get_or_try_make("c", 1, || Err("made")), Ok(&30));
    }
}
