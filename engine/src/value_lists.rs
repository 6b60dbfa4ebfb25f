//! Every slot's field values in one array: a span per slot instead of a boxed slice each.
//!
//! A bulk load or a restore writes the values back to back, in slot order. Writing a
//! field changes a value in place; only a slot that gets a list of another length (a freed
//! slot reused, a migration) moves to the end, leaving its old span as garbage (its values
//! dropped), which a compaction reclaims once it outweighs the live values (as
//! [`crate::edges::EdgeLists`] does for edges). Equality and encoding see only the lists: a
//! snapshot holds `Vec<Box<[Value]>>`'s bytes.

use std::ops::{Index, IndexMut};

use bincode::de::Decoder;
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{Decode, Encode};

use crate::value::Value;

use crate::span::{decode_len, Span, ARRAY_MAX as VALUES_MAX};

/// Most live values a store holds (see [`crate::span::LIVE_MAX`]).
pub(crate) const VALUES_LIVE_MAX: usize = crate::span::LIVE_MAX;

/// The value lists of every slot (a free slot's is empty).
#[derive(Clone, Debug, Default)]
pub(crate) struct ValueLists {
    spans: Vec<Span>,
    values: Vec<Value>,
    /// Entries of `values` no span covers (all `Null`).
    garbage: usize,
}

impl ValueLists {
    /// Slots.
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    /// Values of every list (garbage aside).
    pub(crate) fn live_count(&self) -> usize {
        self.values.len() - self.garbage
    }

    /// Room for `slots` more slots and `values` more values.
    pub(crate) fn reserve(&mut self, slots: usize, values: usize) {
        self.spans.reserve(slots);
        self.values.reserve(values);
    }

    /// Appends a slot holding `values`. The caller keeps the total within the limit.
    pub(crate) fn push(&mut self, values: impl IntoIterator<Item = Value>) {
        let start = self.values.len();
        self.values.extend(values);
        self.spans.push(Span::new(start, self.values.len() - start));
    }

    /// Replaces slot `i`'s list: in place when the length is the same, else at the end.
    pub(crate) fn set<I>(&mut self, i: usize, values: I)
    where
        I: IntoIterator<Item = Value>,
        I::IntoIter: ExactSizeIterator,
    {
        let values = values.into_iter();
        let old = self.spans[i];
        let (start, len) = (old.start as usize, old.len as usize);
        if values.len() == len {
            for (slot, v) in self.values[start..start + len].iter_mut().zip(values) {
                *slot = v;
            }
            return;
        }
        for v in &mut self.values[start..start + len] {
            *v = Value::Null;
        }
        self.garbage += len;
        self.spans[i] = Span::default();
        if self.garbage > self.live_count().max(1024) {
            self.compact();
        }
        let at = self.values.len();
        self.values.extend(values);
        self.spans[i] = Span::new(at, self.values.len() - at);
    }

    /// Empties slot `i`'s list (its values dropped).
    pub(crate) fn clear(&mut self, i: usize) {
        self.set(i, std::iter::empty());
    }

    /// Rewrites the array without garbage, lists in slot order.
    fn compact(&mut self) {
        let mut values = Vec::with_capacity(self.live_count());
        for s in &mut self.spans {
            let from = s.range();
            *s = Span::new(values.len(), s.len as usize);
            values.extend(self.values[from].iter_mut().map(std::mem::take));
        }
        self.values = values;
        self.garbage = 0;
    }

    /// Heap bytes of the array and spans (not what the values point to).
    pub(crate) fn memory_bytes(&self) -> usize {
        self.spans.capacity() * std::mem::size_of::<Span>()
            + self.values.capacity() * std::mem::size_of::<Value>()
    }
}

impl Index<usize> for ValueLists {
    type Output = [Value];
    #[inline]
    fn index(&self, i: usize) -> &[Value] {
        let s = self.spans[i];
        &self.values[s.range()]
    }
}

impl IndexMut<usize> for ValueLists {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut [Value] {
        let s = self.spans[i];
        &mut self.values[s.range()]
    }
}

impl PartialEq for ValueLists {
    fn eq(&self, other: &ValueLists) -> bool {
        self.len() == other.len() && (0..self.len()).all(|i| self[i] == other[i])
    }
}

/// The bytes of a `Vec<Box<[Value]>>` holding the same lists.
impl Encode for ValueLists {
    fn encode<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
        (self.len() as u64).encode(e)?;
        (0..self.len()).try_for_each(|i| self[i].encode(e))
    }
}

/// Reads a `Vec<Box<[Value]>>`'s bytes into one array, claiming each list's bytes before
/// reading it (a corrupt length is refused, not allocated).
impl<Context> Decode<Context> for ValueLists {
    fn decode<D: Decoder<Context = Context>>(d: &mut D) -> Result<ValueLists, DecodeError> {
        let slots = decode_len(d)?;
        d.claim_container_read::<Span>(slots)?;
        let mut lists = ValueLists {
            spans: Vec::with_capacity(slots),
            ..ValueLists::default()
        };
        for _ in 0..slots {
            d.unclaim_bytes_read(std::mem::size_of::<Span>());
            let len = decode_len(d)?;
            d.claim_container_read::<Value>(len)?;
            let start = lists.values.len();
            if len > VALUES_MAX - start {
                return Err(DecodeError::Other("more values than a store holds"));
            }
            lists.values.reserve(len);
            for _ in 0..len {
                d.unclaim_bytes_read(std::mem::size_of::<Value>());
                lists.values.push(Value::decode(d)?);
            }
            lists.spans.push(Span::new(start, len));
        }
        Ok(lists)
    }
}

bincode::impl_borrow_decode!(ValueLists);

#[cfg(test)]
mod tests {
    use bincode::config::standard;
    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        Push(Vec<Value>),
        Set(usize, Vec<Value>),
        Write(usize, usize, Value),
        Clear(usize),
    }

    fn value() -> impl Strategy<Value = Value> + Clone {
        prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::Int),
            "[a-c]{0,3}".prop_map(Value::Str),
            prop::collection::vec("[a-c]{1,2}", 0..3).prop_map(Value::Refs),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        let list = prop::collection::vec(value(), 0..4);
        prop_oneof![
            list.clone().prop_map(Op::Push),
            (any::<usize>(), list).prop_map(|(i, l)| Op::Set(i, l)),
            (any::<usize>(), any::<usize>(), value()).prop_map(|(i, k, v)| Op::Write(i, k, v)),
            any::<usize>().prop_map(Op::Clear),
        ]
    }

    proptest! {
        /// Any sequence of pushes, rewrites, writes and clears reads back as the same lists
        /// as a `Vec<Box<[Value]>>` given it, encodes to its bytes, and decodes back equal.
        #[test]
        fn lists_match_boxed_lists(ops in prop::collection::vec(op(), 0..300)) {
            let mut lists = ValueLists::default();
            let mut model: Vec<Box<[Value]>> = Vec::new();
            for op in ops {
                match op {
                    Op::Push(l) => {
                        lists.push(l.clone());
                        model.push(l.into());
                    }
                    _ if model.is_empty() => {}
                    Op::Set(i, l) => {
                        let i = i % model.len();
                        lists.set(i, l.clone());
                        model[i] = l.into();
                    }
                    Op::Write(i, k, v) => {
                        let i = i % model.len();
                        if !model[i].is_empty() {
                            let k = k % model[i].len();
                            lists[i][k] = v.clone();
                            model[i][k] = v;
                        }
                    }
                    Op::Clear(i) => {
                        let i = i % model.len();
                        lists.clear(i);
                        model[i] = Box::new([]);
                    }
                }
                prop_assert!(lists.garbage <= lists.live_count().max(1024) + 4);
                prop_assert!(lists.values.iter().filter(|v| **v == Value::Null).count() >= lists.garbage);
            }
            prop_assert_eq!(lists.len(), model.len());
            for (i, l) in model.iter().enumerate() {
                prop_assert_eq!(&lists[i], &**l);
            }
            let bytes = bincode::encode_to_vec(&lists, standard()).unwrap();
            prop_assert_eq!(&bytes, &bincode::encode_to_vec(&model, standard()).unwrap());
            let (back, used): (ValueLists, usize) = bincode::decode_from_slice(&bytes, standard()).unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(back, lists);
        }
    }

    #[test]
    fn same_length_rewrites_stay_in_place_and_compaction_reclaims_moves() {
        let mut lists = ValueLists::default();
        for i in 0..3000 {
            lists.push([Value::Int(i), Value::Null]);
        }
        lists.set(5, [Value::Int(-1), Value::Int(-2)]);
        assert_eq!((lists.values.len(), lists.garbage), (6000, 0), "in place");
        lists.clear(6);
        assert_eq!((lists[6].len(), lists.garbage), (0, 2), "cleared");
        for i in 0..2500 {
            lists.set(i, [Value::Int(7)]);
        }
        assert!(lists.garbage <= lists.live_count().max(1024));
        assert_eq!(lists[0], [Value::Int(7)]);
        assert_eq!(lists[2600], [Value::Int(2600), Value::Null]);
    }

    #[test]
    fn a_corrupt_length_is_refused_not_allocated() {
        let bytes = bincode::encode_to_vec((1u64, u64::MAX / 8), standard()).unwrap();
        let got: Result<(ValueLists, usize), _> = bincode::decode_from_slice(&bytes, standard());
        assert!(got.is_err());
    }
}
