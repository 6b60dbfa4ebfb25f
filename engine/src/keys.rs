//! Every slot's key in one buffer: a span per slot instead of a boxed string each.
//!
//! A bulk load or a restore writes the keys back to back, in slot order. A slot reused for
//! a key that fits its old span keeps it; a longer key goes to the end, leaving the old span
//! as garbage, which a compaction reclaims once it outweighs the live bytes (as
//! [`crate::edges::EdgeLists`] does for edges). Equality and encoding see only the keys: a
//! snapshot holds `Vec<Box<str>>`'s bytes.

use std::ops::Index;

use bincode::de::read::Reader;
use bincode::de::Decoder;
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{Decode, Encode};

use crate::span::{decode_len, Span, ARRAY_MAX as BYTES_MAX};

/// Most live key bytes a store holds (see [`crate::span::LIVE_MAX`]).
pub(crate) const KEY_BYTES_LIVE_MAX: usize = crate::span::LIVE_MAX;

/// The keys of every slot (a free slot's is empty).
#[derive(Clone, Debug, Default)]
pub(crate) struct Keys {
    spans: Vec<Span>,
    bytes: String,
    /// Bytes of `bytes` no span covers.
    garbage: usize,
}

impl Keys {
    /// Slots.
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    /// Bytes of every key (garbage aside).
    pub(crate) fn live_bytes(&self) -> usize {
        self.bytes.len() - self.garbage
    }

    /// Slot `i`'s key.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> &str {
        let s = self.spans[i];
        &self.bytes[s.range()]
    }

    /// Every slot's key, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Room for `slots` more slots and `bytes` more key bytes.
    pub(crate) fn reserve(&mut self, slots: usize, bytes: usize) {
        self.spans.reserve(slots);
        self.bytes.reserve(bytes);
    }

    /// Appends a slot holding `key`. The caller keeps the total within the limit.
    pub(crate) fn push(&mut self, key: &str) {
        let start = self.bytes.len();
        self.bytes.push_str(key);
        self.spans.push(Span::new(start, key.len()));
    }

    /// Replaces slot `i`'s key.
    pub(crate) fn set(&mut self, i: usize, key: &str) {
        let old = self.spans[i];
        let (start, len) = (old.start as usize, old.len as usize);
        if key.len() == len || key.is_empty() {
            // In place: the span's ends are character boundaries, and a replacement of
            // the same length moves nothing. (A shorter key would leave part of a
            // character behind, so it moves like a longer one.)
            self.bytes.replace_range(start..start + key.len(), key);
            self.garbage += len - key.len();
            self.spans[i] = Span::new(start, key.len());
            return;
        }
        if start + len == self.bytes.len() {
            // The last key grows where it is.
            self.bytes.truncate(start);
        } else {
            self.garbage += len;
        }
        if self.garbage > self.live_bytes().max(4096) {
            self.spans[i] = Span::default();
            self.compact();
        }
        let start = self.bytes.len();
        self.bytes.push_str(key);
        self.spans[i] = Span::new(start, key.len());
    }

    /// Rewrites the buffer without garbage, keys in slot order.
    fn compact(&mut self) {
        let mut bytes = String::with_capacity(self.live_bytes());
        for s in &mut self.spans {
            let from = s.range();
            *s = Span::new(bytes.len(), s.len as usize);
            bytes.push_str(&self.bytes[from]);
        }
        self.bytes = bytes;
        self.garbage = 0;
    }

    /// Heap bytes held.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.spans.capacity() * std::mem::size_of::<Span>() + self.bytes.capacity()
    }
}

impl Index<usize> for Keys {
    type Output = str;
    #[inline]
    fn index(&self, i: usize) -> &str {
        self.get(i)
    }
}

impl PartialEq for Keys {
    fn eq(&self, other: &Keys) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

/// The bytes of a `Vec<Box<str>>` holding the same keys.
impl Encode for Keys {
    fn encode<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
        (self.len() as u64).encode(e)?;
        self.iter().try_for_each(|k| k.encode(e))
    }
}

/// Reads a `Vec<Box<str>>`'s bytes into one buffer, claiming each key's bytes before
/// reading it (a corrupt length is refused, not allocated); a key that is not UTF-8 is
/// refused as `Box<str>`'s decoding refuses it.
impl<Context> Decode<Context> for Keys {
    fn decode<D: Decoder<Context = Context>>(d: &mut D) -> Result<Keys, DecodeError> {
        let slots = decode_len(d)?;
        d.claim_container_read::<Span>(slots)?;
        let mut keys = Keys {
            spans: Vec::with_capacity(slots),
            ..Keys::default()
        };
        let mut buf: Vec<u8> = Vec::new();
        for _ in 0..slots {
            d.unclaim_bytes_read(std::mem::size_of::<Span>());
            let len = decode_len(d)?;
            d.claim_container_read::<u8>(len)?;
            let start = keys.bytes.len();
            if len > BYTES_MAX - start {
                return Err(DecodeError::Other("more key bytes than a store holds"));
            }
            buf.clear();
            buf.resize(len, 0);
            d.reader().read(&mut buf)?;
            let key = std::str::from_utf8(&buf).map_err(|inner| DecodeError::Utf8 { inner })?;
            keys.bytes.push_str(key);
            keys.spans.push(Span::new(start, len));
        }
        Ok(keys)
    }
}

bincode::impl_borrow_decode!(Keys);

#[cfg(test)]
mod tests {
    use bincode::config::standard;
    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        Push(String),
        Set(usize, String),
    }

    fn op() -> impl Strategy<Value = Op> {
        let key = "[a-c\u{e9}]{0,6}";
        prop_oneof![
            key.prop_map(Op::Push),
            (any::<usize>(), key).prop_map(|(i, k)| Op::Set(i, k)),
        ]
    }

    proptest! {
        /// Any sequence of pushes and rewrites reads back as the same keys as a
        /// `Vec<Box<str>>` given it, encodes to its bytes, and decodes back equal.
        #[test]
        fn keys_match_boxed_keys(ops in prop::collection::vec(op(), 0..300)) {
            let mut keys = Keys::default();
            let mut model: Vec<Box<str>> = Vec::new();
            for op in ops {
                match op {
                    Op::Push(k) => {
                        keys.push(&k);
                        model.push(k.into());
                    }
                    Op::Set(i, k) if !model.is_empty() => {
                        let i = i % model.len();
                        keys.set(i, &k);
                        model[i] = k.into();
                    }
                    Op::Set(..) => {}
                }
                prop_assert!(keys.garbage <= keys.live_bytes().max(4096) + 12);
            }
            prop_assert_eq!(keys.len(), model.len());
            for (i, k) in model.iter().enumerate() {
                prop_assert_eq!(&keys[i], &**k);
            }
            let bytes = bincode::encode_to_vec(&keys, standard()).unwrap();
            prop_assert_eq!(&bytes, &bincode::encode_to_vec(&model, standard()).unwrap());
            let (back, used): (Keys, usize) = bincode::decode_from_slice(&bytes, standard()).unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(back, keys);
        }
    }

    #[test]
    fn rewrites_reuse_space_and_compaction_reclaims_it() {
        let mut keys = Keys::default();
        for i in 0..3000 {
            keys.push(&format!("k{i:04}"));
        }
        keys.set(5, "abcde");
        assert_eq!(
            (&keys[5], keys.garbage),
            ("abcde", 0),
            "the same length: in place"
        );
        keys.set(6, "");
        assert_eq!((&keys[6], keys.garbage), ("", 5), "emptied in place");
        keys.set(2999, "longer-key");
        assert_eq!(keys.garbage, 5, "the last key grows where it is");
        keys.set(7, "\u{e9}");
        assert_eq!((&keys[7], keys.garbage), ("\u{e9}", 10), "shorter: moved");
        for i in 0..2500 {
            keys.set(i, "a-longer-key");
        }
        assert!(
            keys.garbage <= keys.live_bytes().max(4096),
            "{}",
            keys.garbage
        );
        assert_eq!(&keys[0], "a-longer-key");
        assert_eq!(&keys[2600], "k2600");
    }

    #[test]
    fn a_corrupt_length_or_bad_utf8_is_refused_not_allocated() {
        let bytes = bincode::encode_to_vec((1u64, u64::MAX / 8), standard()).unwrap();
        let got: Result<(Keys, usize), _> = bincode::decode_from_slice(&bytes, standard());
        assert!(got.is_err());
        let bytes = bincode::encode_to_vec((1u64, 2u64, 0xffu8, 0xfeu8), standard()).unwrap();
        let got: Result<(Keys, usize), _> = bincode::decode_from_slice(&bytes, standard());
        assert!(matches!(got, Err(DecodeError::Utf8 { .. })), "{got:?}");
    }
}
