//! The object dependency graph: tagged edges and the *effective* dependencies that links,
//! proxies (R16) and deletion order (R7) give.
//!
//! An edge is a `u32` object id with its top bit, [`PROXY`], set when the link is a proxy.
//! `deps[a]` holds `b` when a link field of `a` references `b`; `rdeps[b]` holds `a` with
//! the same tag. Effective dependencies add, for every non-proxy dependency `b` of `a`,
//! each extension `e` of `b` (an object with a proxy link to `b`): `a` also waits for `e`,
//! so an extension is synced after its base and before the base's dependents (R16). An
//! extension being deleted drops out of that, unless its base is deleted too (then the
//! deletes run in the mirror order).

use crate::id::ObjectId;
use crate::store::Store;

/// A tagged edge: an object id, with [`PROXY`] set for proxy links.
pub(crate) type Edge = u32;

/// Tag bit of a proxy edge.
pub(crate) const PROXY: u32 = 1 << 31;

/// Most objects a store holds: ids must leave the tag bit free.
pub const OBJECTS_MAX: usize = (PROXY - 1) as usize;

/// The object an edge points at.
#[inline]
pub(crate) fn target(e: Edge) -> ObjectId {
    ObjectId(e & !PROXY)
}

/// Whether an edge is a proxy link.
#[inline]
pub(crate) fn is_proxy(e: Edge) -> bool {
    e & PROXY != 0
}

/// `id` carrying the tag of `e`.
#[inline]
pub(crate) fn retag(id: u32, e: Edge) -> Edge {
    id | (e & PROXY)
}

/// Calls `f` with every effective dependency of `id` (duplicates possible).
///
/// An extension that is being deleted is no longer an effective dependency of its base's
/// referrers: leaving, it orders nothing (R16), so a referrer's new version never waits for
/// it (the base itself, if deleted too, holds the referrer anyway, R7).
#[inline]
pub(crate) fn for_each_effective_dep(store: &Store, id: ObjectId, mut f: impl FnMut(ObjectId)) {
    for &e in store.deps(id) {
        let b = target(e);
        f(b);
        if !is_proxy(e) {
            for &x in store.extensions(b) {
                if x != id.0 && !store.deleting(ObjectId(x)) {
                    f(ObjectId(x));
                }
            }
        }
    }
}

/// Calls `f` with every referrer a delete of `id` waits for (R7, R16; duplicates possible):
/// the objects that reference `id`, and, when `id` extends a base that is being deleted
/// too, the base's other referrers (the mirror of the sync order). An extension of a live
/// base waits only for its own referrers.
#[inline]
pub(crate) fn for_each_effective_referrer(
    store: &Store,
    id: ObjectId,
    mut f: impl FnMut(ObjectId),
) {
    for &r in store.rdeps(id) {
        f(target(r));
    }
    for &e in store.deps(id) {
        if is_proxy(e) && store.deleting(target(e)) {
            // `id` extends base `b`, deleted too: every non-proxy referrer of `b` goes first.
            let b = target(e);
            for &r in store.rdeps(b) {
                if !is_proxy(r) && target(r) != id {
                    f(target(r));
                }
            }
        }
    }
}
