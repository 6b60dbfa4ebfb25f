//! Every object's dependency list in one array (compressed sparse rows with room to
//! rewrite): a span per slot into a shared edge array.
//!
//! A bulk load or a restore writes the lists back to back, in slot order, so planning reads
//! them as one sequential stream instead of chasing a heap pointer per object. A rewrite
//! that fits stays in place; a longer one moves to the end, leaving its old span as garbage,
//! which a compaction reclaims once it outweighs the live edges (amortized O(1) per edge
//! written, as a `Vec`'s growth is). Equality and encoding see only the lists, never the
//! layout: a snapshot holds `Vec<Box<[Edge]>>`'s bytes, and two stores with the same lists
//! compare equal however they got them.

use bincode::de::Decoder;
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{Decode, Encode};

use crate::graph::Edge;
use crate::span::{decode_len, Span};

/// Most edges the array holds, live and garbage.
pub(crate) const EDGES_MAX: usize = crate::span::ARRAY_MAX;

/// Most live edges a store holds (see [`crate::span::LIVE_MAX`]).
pub(crate) const EDGES_LIVE_MAX: usize = crate::span::LIVE_MAX;

/// The dependency lists of every slot (usage: the tests below; the type is crate-private,
/// so a rustdoc example could not run).
#[derive(Clone, Debug, Default)]
pub(crate) struct EdgeLists {
    spans: Vec<Span>,
    edges: Vec<Edge>,
    /// Entries of `edges` no span covers.
    garbage: usize,
}

impl EdgeLists {
    /// Slots.
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    /// Edges of every list (garbage aside).
    pub(crate) fn edge_count(&self) -> usize {
        self.edges.len() - self.garbage
    }

    /// The list of slot `i`.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> &[Edge] {
        let s = self.spans[i];
        &self.edges[s.range()]
    }

    /// Room for `slots` more slots and `edges` more edges.
    pub(crate) fn reserve(&mut self, slots: usize, edges: usize) {
        self.spans.reserve(slots);
        self.edges.reserve(edges);
    }

    /// Appends a slot holding `list`. The caller keeps the total within [`EDGES_MAX`].
    pub(crate) fn push(&mut self, list: &[Edge]) {
        let start = self.edges.len();
        self.edges.extend_from_slice(list);
        self.spans.push(Span::new(start, list.len()));
    }

    /// Replaces the list of slot `i`.
    pub(crate) fn set(&mut self, i: usize, list: &[Edge]) {
        let old = self.spans[i];
        let (start, len) = (old.start as usize, old.len as usize);
        if list.len() <= len {
            self.edges[start..start + list.len()].copy_from_slice(list);
            self.garbage += len - list.len();
            self.spans[i] = Span::new(start, list.len());
            return;
        }
        if start + len == self.edges.len() {
            // The last list grows where it is.
            self.edges.truncate(start);
        } else {
            self.garbage += len;
        }
        if self.garbage > self.edge_count().max(1024) {
            self.spans[i] = Span::default();
            self.compact();
        }
        let start = self.edges.len();
        self.edges.extend_from_slice(list);
        self.spans[i] = Span::new(start, list.len());
    }

    /// Rewrites the array without garbage, lists in slot order.
    fn compact(&mut self) {
        let mut edges = Vec::with_capacity(self.edge_count());
        for s in &mut self.spans {
            let from = s.range();
            *s = Span::new(edges.len(), s.len as usize);
            edges.extend_from_slice(&self.edges[from]);
        }
        self.edges = edges;
        self.garbage = 0;
    }

    /// Heap bytes held.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.spans.capacity() * std::mem::size_of::<Span>()
            + self.edges.capacity() * std::mem::size_of::<Edge>()
    }
}

impl PartialEq for EdgeLists {
    fn eq(&self, other: &EdgeLists) -> bool {
        self.len() == other.len() && (0..self.len()).all(|i| self.get(i) == other.get(i))
    }
}

/// The bytes of a `Vec<Box<[Edge]>>` holding the same lists.
impl Encode for EdgeLists {
    fn encode<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
        (self.len() as u64).encode(e)?;
        (0..self.len()).try_for_each(|i| self.get(i).encode(e))
    }
}

/// Reads a `Vec<Box<[Edge]>>`'s bytes into one array, claiming each list's bytes before
/// reading it (a corrupt length is refused, not allocated).
impl<Context> Decode<Context> for EdgeLists {
    fn decode<D: Decoder<Context = Context>>(d: &mut D) -> Result<EdgeLists, DecodeError> {
        let slots = decode_len(d)?;
        d.claim_container_read::<Span>(slots)?;
        let mut lists = EdgeLists {
            spans: Vec::with_capacity(slots),
            ..EdgeLists::default()
        };
        for _ in 0..slots {
            d.unclaim_bytes_read(std::mem::size_of::<Span>());
            let len = decode_len(d)?;
            d.claim_container_read::<Edge>(len)?;
            let start = lists.edges.len();
            if len > EDGES_MAX - start {
                return Err(DecodeError::Other("more edges than a store holds"));
            }
            lists.edges.reserve(len);
            for _ in 0..len {
                d.unclaim_bytes_read(std::mem::size_of::<Edge>());
                lists.edges.push(Edge::decode(d)?);
            }
            lists.spans.push(Span::new(start, len));
        }
        Ok(lists)
    }
}

bincode::impl_borrow_decode!(EdgeLists);

/// Where one slot's referrer list lies in [`RefLists`]' array, with room to grow in place.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RoomySpan {
    start: u32,
    len: u32,
    cap: u32,
}

impl RoomySpan {
    /// The list's entries' indices (its room aside).
    #[inline]
    fn range(self) -> std::ops::Range<usize> {
        Span::new(self.start as usize, self.len as usize).range()
    }
}

/// Every object's referrer list in one array (derived from the dependency lists, never
/// encoded). Lists grow one referrer at a time, so each span has room: a referrer is added
/// in place while the span has room, else the list moves to the end of the array with twice
/// the room; a compaction reclaims the moved-out spans once they outweigh the rest. The
/// order within a list is that of a `Vec` given the same pushes and swap-removes.
#[derive(Clone, Debug, Default)]
pub(crate) struct RefLists {
    spans: Vec<RoomySpan>,
    edges: Vec<Edge>,
    /// Entries of `edges` no span's room covers.
    garbage: usize,
}

impl RefLists {
    /// Slots with empty lists and exactly `rooms[i]` room each, laid out in slot order.
    pub(crate) fn with_rooms(rooms: &[u32]) -> RefLists {
        let mut spans = Vec::with_capacity(rooms.len());
        let mut at = 0usize;
        for &cap in rooms {
            spans.push(RoomySpan {
                start: if cap == 0 { 0 } else { at as u32 },
                len: 0,
                cap,
            });
            at += cap as usize;
        }
        RefLists {
            spans,
            edges: vec![0; at],
            garbage: 0,
        }
    }

    /// The list of slot `i`.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> &[Edge] {
        let s = self.spans[i];
        &self.edges[s.range()]
    }

    /// Appends a slot with an empty list.
    pub(crate) fn push_slot(&mut self) {
        self.spans.push(RoomySpan::default());
    }

    /// Adds `e` at the end of slot `i`'s list.
    pub(crate) fn push(&mut self, i: usize, e: Edge) {
        let s = self.spans[i];
        if s.len == s.cap {
            self.reserve(i, (s.cap as usize).max(2));
        }
        let s = &mut self.spans[i];
        self.edges[(s.start + s.len) as usize] = e;
        s.len += 1;
    }

    /// Removes the first `e` from slot `i`'s list, the last entry taking its place;
    /// whether it was there.
    pub(crate) fn swap_remove(&mut self, i: usize, e: Edge) -> bool {
        let s = self.spans[i];
        let list = &mut self.edges[s.range()];
        let Some(pos) = list.iter().position(|&x| x == e) else {
            return false;
        };
        list[pos] = list[list.len() - 1];
        self.spans[i].len -= 1;
        true
    }

    /// Room for `more` entries beyond slot `i`'s list.
    pub(crate) fn reserve(&mut self, i: usize, more: usize) {
        let s = self.spans[i];
        let cap = s.len as usize + more;
        if cap <= s.cap as usize {
            return;
        }
        if s.cap > 0 && (s.start + s.cap) as usize == self.edges.len() {
            // The last span grows where it is.
            self.edges.resize(s.start as usize + cap, 0);
            self.spans[i].cap = cap as u32;
            return;
        }
        self.garbage += s.cap as usize;
        if self.garbage > (self.edges.len() - self.garbage).max(1024)
            || self.edges.len() + cap > EDGES_MAX
        {
            self.compact();
            // The list is left where the compaction put it.
            self.garbage += self.spans[i].cap as usize;
        }
        let s = self.spans[i];
        let start = self.edges.len();
        self.edges.extend_from_within(s.range());
        self.edges.resize(start + cap, 0);
        self.spans[i] = RoomySpan {
            start: start as u32,
            len: s.len,
            cap: cap as u32,
        };
    }

    /// Rewrites the array without garbage or room, lists in slot order.
    fn compact(&mut self) {
        let live: usize = self.spans.iter().map(|s| s.len as usize).sum();
        let mut edges = Vec::with_capacity(live);
        for s in &mut self.spans {
            let from = s.range();
            *s = RoomySpan {
                start: if s.len == 0 { 0 } else { edges.len() as u32 },
                len: s.len,
                cap: s.len,
            };
            edges.extend_from_slice(&self.edges[from]);
        }
        self.edges = edges;
        self.garbage = 0;
    }

    /// Heap bytes held.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.spans.capacity() * std::mem::size_of::<RoomySpan>()
            + self.edges.capacity() * std::mem::size_of::<Edge>()
    }
}

#[cfg(test)]
mod tests {
    use bincode::config::standard;
    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        Push(Vec<Edge>),
        Set(usize, Vec<Edge>),
    }

    fn op() -> impl Strategy<Value = Op> {
        let list = prop::collection::vec(0u32..50, 0..6);
        prop_oneof![
            list.clone().prop_map(Op::Push),
            (any::<usize>(), list).prop_map(|(i, l)| Op::Set(i, l)),
        ]
    }

    proptest! {
        /// Any sequence of pushes and rewrites reads back as the same lists as a
        /// `Vec<Box<[Edge]>>` given it, encodes to its bytes, and decodes back equal.
        #[test]
        fn lists_match_boxed_lists(ops in prop::collection::vec(op(), 0..200)) {
            let mut lists = EdgeLists::default();
            let mut model: Vec<Box<[Edge]>> = Vec::new();
            for op in ops {
                match op {
                    Op::Push(l) => {
                        lists.push(&l);
                        model.push(l.into());
                    }
                    Op::Set(i, l) if !model.is_empty() => {
                        let i = i % model.len();
                        lists.set(i, &l);
                        model[i] = l.into();
                    }
                    Op::Set(..) => {}
                }
                prop_assert!(lists.garbage <= lists.edge_count().max(1024) + 6);
            }
            prop_assert_eq!(lists.len(), model.len());
            for (i, l) in model.iter().enumerate() {
                prop_assert_eq!(lists.get(i), &**l);
            }
            let bytes = bincode::encode_to_vec(&lists, standard()).unwrap();
            prop_assert_eq!(&bytes, &bincode::encode_to_vec(&model, standard()).unwrap());
            let (back, used): (EdgeLists, usize) = bincode::decode_from_slice(&bytes, standard()).unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(back, lists);
        }
    }

    #[derive(Clone, Debug)]
    enum RefOp {
        Slot,
        Push(usize, Edge),
        Remove(usize, Edge),
        Reserve(usize, u8),
    }

    fn ref_op() -> impl Strategy<Value = RefOp> {
        prop_oneof![
            1 => Just(RefOp::Slot),
            6 => (any::<usize>(), 0u32..8).prop_map(|(i, e)| RefOp::Push(i, e)),
            3 => (any::<usize>(), 0u32..8).prop_map(|(i, e)| RefOp::Remove(i, e)),
            1 => (any::<usize>(), 0u8..5).prop_map(|(i, n)| RefOp::Reserve(i, n)),
        ]
    }

    /// Every span lies inside the array and no two overlap; the garbage count is exact.
    fn check_layout(lists: &RefLists) -> Result<(), TestCaseError> {
        let mut used: Vec<(u32, u32)> = lists
            .spans
            .iter()
            .filter(|s| s.cap > 0)
            .map(|s| (s.start, s.start + s.cap))
            .collect();
        used.sort_unstable();
        for w in used.windows(2) {
            prop_assert!(w[0].1 <= w[1].0, "spans overlap: {:?}", w);
        }
        let covered: u32 = used.iter().map(|(a, b)| b - a).sum();
        prop_assert!(used
            .last()
            .is_none_or(|l| l.1 as usize <= lists.edges.len()));
        prop_assert_eq!(lists.edges.len() - covered as usize, lists.garbage);
        for s in &lists.spans {
            prop_assert!(s.len <= s.cap);
        }
        Ok(())
    }

    proptest! {
        /// Any sequence of slot pushes, referrer pushes, swap-removes and reservations
        /// reads back as the same lists as a `Vec<Vec<Edge>>` given it, with spans that
        /// never overlap and garbage that stays bounded.
        #[test]
        fn ref_lists_match_vecs(
            rooms in prop::collection::vec(0u32..3, 0..6),
            ops in prop::collection::vec(ref_op(), 0..400),
        ) {
            let mut lists = RefLists::with_rooms(&rooms);
            let mut model: Vec<Vec<Edge>> = vec![Vec::new(); rooms.len()];
            for op in ops {
                match op {
                    RefOp::Slot => {
                        lists.push_slot();
                        model.push(Vec::new());
                    }
                    _ if model.is_empty() => {}
                    RefOp::Push(i, e) => {
                        let i = i % model.len();
                        lists.push(i, e);
                        model[i].push(e);
                    }
                    RefOp::Remove(i, e) => {
                        let i = i % model.len();
                        let pos = model[i].iter().position(|&x| x == e);
                        if let Some(p) = pos {
                            model[i].swap_remove(p);
                        }
                        prop_assert_eq!(lists.swap_remove(i, e), pos.is_some());
                    }
                    RefOp::Reserve(i, n) => {
                        lists.reserve(i % model.len(), n as usize);
                    }
                }
                check_layout(&lists)?;
                let room: usize = lists.spans.iter().map(|s| s.cap as usize).sum();
                prop_assert!(lists.garbage <= room.max(1024) + 8);
            }
            for (i, l) in model.iter().enumerate() {
                prop_assert_eq!(lists.get(i), &l[..]);
            }
        }
    }

    #[test]
    fn referrers_grow_in_place_then_move_and_compaction_reclaims_them() {
        let mut lists = RefLists::with_rooms(&[2, 0, 1]);
        lists.push(0, 10);
        lists.push(0, 11);
        assert_eq!((lists.edges.len(), lists.garbage), (3, 0), "within room");
        lists.push(2, 20);
        lists.push(2, 21);
        assert_eq!(lists.garbage, 0, "the last span grows where it is");
        lists.push(0, 12);
        assert_eq!(lists.get(0), [10, 11, 12]);
        assert_eq!(lists.garbage, 2, "moved out of its room");
        assert!(lists.swap_remove(0, 10));
        assert_eq!(lists.get(0), [12, 11]);
        assert!(!lists.swap_remove(1, 10));
        for k in 0..5000 {
            lists.push_slot();
            lists.push(3 + k, k as Edge);
            lists.push(k % 3, k as Edge);
        }
        let live: usize = (0..5003).map(|i| lists.get(i).len()).sum();
        assert!(
            lists.edges.len() <= 4 * live + 1024,
            "{} for {live}",
            lists.edges.len()
        );
        assert_eq!(lists.get(4000), [3997]);
    }

    #[test]
    fn rewrites_reuse_space_and_compaction_reclaims_it() {
        let mut lists = EdgeLists::default();
        for i in 0..2000 {
            lists.push(&[i, i + 1]);
        }
        lists.set(5, &[7]);
        assert_eq!(
            (lists.get(5), lists.garbage),
            (&[7][..], 1),
            "shrinks in place"
        );
        lists.set(1999, &[1, 2, 3]);
        assert_eq!(lists.garbage, 1, "the last list grows where it is");
        for i in 0..1500 {
            lists.set(i, &[1, 2, 3]);
        }
        assert!(lists.garbage <= lists.edge_count(), "{}", lists.garbage);
        assert_eq!(lists.get(0), &[1, 2, 3]);
        assert_eq!(lists.get(1600), &[1600, 1601]);
        assert_eq!(lists.edge_count(), 1501 * 3 + 499 * 2);
    }

    #[test]
    fn a_corrupt_length_is_refused_not_allocated() {
        let bytes = bincode::encode_to_vec((1u64, u64::MAX / 8), standard()).unwrap();
        let limited = standard().with_limit::<1_000_000>();
        assert!(bincode::decode_from_slice::<EdgeLists, _>(&bytes, limited).is_err());
        assert!(bincode::decode_from_slice::<EdgeLists, _>(&bytes, standard()).is_err());
    }
}
