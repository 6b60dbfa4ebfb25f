//! A slot's place in an array shared by every slot: what the store's keys
//! ([`crate::keys::Keys`]), values ([`crate::value_lists::ValueLists`]) and edge lists
//! ([`crate::edges::EdgeLists`]) each keep per slot instead of a heap pointer.

use std::ops::Range;

use bincode::de::Decoder;
use bincode::error::DecodeError;
use bincode::Decode;

/// Most entries a shared array holds, live and garbage: spans are `u32`.
pub(crate) const ARRAY_MAX: usize = u32::MAX as usize;

/// Most live entries a store keeps in one array: with garbage at most the live entries
/// (plus one list), the array stays within [`ARRAY_MAX`]. `apply` refuses a change set
/// that would pass it.
pub(crate) const LIVE_MAX: usize = ARRAY_MAX / 4;

/// Where one slot's list lies in its array.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: u32,
    pub len: u32,
}

impl Span {
    /// The span of `len` entries from `start`; an empty one starts at 0, so no truncation
    /// of the array leaves it out of range. The caller keeps the end within [`ARRAY_MAX`].
    #[inline]
    pub(crate) fn new(start: usize, len: usize) -> Span {
        debug_assert!(start + len <= ARRAY_MAX);
        Span {
            start: if len == 0 { 0 } else { start as u32 },
            len: len as u32,
        }
    }

    /// Its entries' indices.
    #[inline]
    pub(crate) fn range(self) -> Range<usize> {
        self.start as usize..(self.start + self.len) as usize
    }
}

/// A length as bincode encodes a collection's, refused if it does not fit a `usize`.
pub(crate) fn decode_len<D: Decoder>(d: &mut D) -> Result<usize, DecodeError> {
    let v = u64::decode(d)?;
    usize::try_from(v).map_err(|_| DecodeError::OutsideUsizeRange(v))
}
