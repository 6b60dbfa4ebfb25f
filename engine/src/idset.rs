//! [`IdSet`]: a set of dense `u32` ids as a two-level bitset.
//!
//! Insert, remove and membership are O(1) with no allocation once the set has grown to the
//! largest id; iteration is in ascending id order and costs O(members + capacity / 4096)
//! (a summary bit per 64-bit word of members lets it skip empty words). It replaces a
//! `BTreeSet<u32>` on the completion path (the store's unsettled set), whose removals were
//! the largest cost of a completion after hashing. The bincode encoding is the one of a
//! `BTreeSet<u32>` (length, then the ids ascending), so snapshots keep their format.

use bincode::de::Decoder;
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{Decode, Encode};

/// A set of `u32` ids. See the [module docs](self).
#[derive(Clone, Default)]
pub(crate) struct IdSet {
    /// Bit `i % 64` of word `i / 64`: `i` is a member.
    words: Vec<u64>,
    /// Bit `w % 64` of word `w / 64`: `words[w]` is not zero.
    summary: Vec<u64>,
    len: usize,
}

impl IdSet {
    /// An empty set.
    pub(crate) fn new() -> IdSet {
        IdSet::default()
    }

    /// Members.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether `id` is a member.
    pub(crate) fn contains(&self, id: u32) -> bool {
        let (w, b) = (id as usize / 64, id % 64);
        self.words.get(w).is_some_and(|x| x >> b & 1 == 1)
    }

    /// Adds `id`; false if it was a member already.
    pub(crate) fn insert(&mut self, id: u32) -> bool {
        let (w, b) = (id as usize / 64, id % 64);
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
            self.summary.resize(self.words.len().div_ceil(64), 0);
        }
        let word = &mut self.words[w];
        if *word >> b & 1 == 1 {
            return false;
        }
        *word |= 1 << b;
        self.summary[w / 64] |= 1 << (w % 64);
        self.len += 1;
        true
    }

    /// Removes `id`; false if it was not a member.
    pub(crate) fn remove(&mut self, id: u32) -> bool {
        let (w, b) = (id as usize / 64, id % 64);
        let Some(word) = self.words.get_mut(w) else {
            return false;
        };
        if *word >> b & 1 == 0 {
            return false;
        }
        *word &= !(1 << b);
        if *word == 0 {
            self.summary[w / 64] &= !(1 << (w % 64));
        }
        self.len -= 1;
        true
    }

    /// The members in ascending order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.summary.iter().enumerate().flat_map(move |(s, &sum)| {
            bits(sum).flat_map(move |sb| {
                let w = s * 64 + sb as usize;
                bits(self.words[w]).map(move |b| (w * 64) as u32 + b)
            })
        })
    }

    /// Heap bytes held.
    pub(crate) fn memory_bytes(&self) -> usize {
        (self.words.capacity() + self.summary.capacity()) * 8
    }
}

/// The set bits of `x`, lowest first.
fn bits(mut x: u64) -> impl Iterator<Item = u32> {
    std::iter::from_fn(move || {
        (x != 0).then(|| {
            let b = x.trailing_zeros();
            x &= x - 1;
            b
        })
    })
}

/// The largest id a decoded set may hold (a forged id cannot make decoding allocate more
/// than 32 MiB of words).
const MAX_DECODED_ID: u32 = 1 << 28;

impl PartialEq for IdSet {
    fn eq(&self, other: &IdSet) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for IdSet {}

impl FromIterator<u32> for IdSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> IdSet {
        let mut s = IdSet::new();
        for id in iter {
            s.insert(id);
        }
        s
    }
}

impl std::fmt::Debug for IdSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Encode for IdSet {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        (self.len as u64).encode(encoder)?;
        for id in self.iter() {
            id.encode(encoder)?;
        }
        Ok(())
    }
}

impl<Context> Decode<Context> for IdSet {
    fn decode<D: Decoder<Context = Context>>(decoder: &mut D) -> Result<IdSet, DecodeError> {
        let n = u64::decode(decoder)?;
        let n: usize = n
            .try_into()
            .map_err(|_| DecodeError::OutsideUsizeRange(n))?;
        // Claims the bytes the ids take, so a forged length cannot make us loop for long.
        decoder.claim_container_read::<u32>(n)?;
        let mut s = IdSet::new();
        for _ in 0..n {
            decoder.unclaim_bytes_read(std::mem::size_of::<u32>());
            let id = u32::decode(decoder)?;
            if id > MAX_DECODED_ID {
                return Err(DecodeError::OtherString(format!(
                    "id {id} in a set is out of range (at most {MAX_DECODED_ID})"
                )));
            }
            s.insert(id);
        }
        Ok(s)
    }
}

bincode::impl_borrow_decode!(IdSet);

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::IdSet;

    proptest! {
        /// The set behaves as a `BTreeSet<u32>` and encodes to the same bytes.
        #[test]
        fn matches_a_btreeset(ops in proptest::collection::vec((any::<bool>(), 0u32..20_000), 0..400)) {
            let (mut s, mut r) = (IdSet::new(), BTreeSet::new());
            for (ins, id) in ops {
                if ins {
                    prop_assert_eq!(s.insert(id), r.insert(id));
                } else {
                    prop_assert_eq!(s.remove(id), r.remove(&id));
                }
                prop_assert_eq!(s.len(), r.len());
                prop_assert_eq!(s.contains(id), r.contains(&id));
            }
            prop_assert_eq!(s.iter().collect::<Vec<_>>(), r.iter().copied().collect::<Vec<_>>());
            let cfg = bincode::config::standard();
            let a = bincode::encode_to_vec(&s, cfg).unwrap();
            prop_assert_eq!(&a, &bincode::encode_to_vec(&r, cfg).unwrap());
            let (back, _): (IdSet, usize) = bincode::decode_from_slice(&a, cfg).unwrap();
            prop_assert_eq!(back, s);
        }
    }

    #[test]
    fn a_forged_length_is_refused_not_looped_over() {
        let cfg = bincode::config::standard();
        let bytes = bincode::encode_to_vec(u64::MAX / 2, cfg).unwrap();
        assert!(bincode::decode_from_slice::<IdSet, _>(&bytes, cfg).is_err());
    }
}
