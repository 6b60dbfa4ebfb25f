//! The object dependency graph: tagged edges and the *effective* dependencies that links,
//! proxies (R16) and deletion order (R7) give.
//!
//! An edge is a `u32` object id with its top bit, [`PROXY`], set when the link is a proxy.
//! `deps[a]` holds `b` when a link field of `a` references `b`; `rdeps[b]` holds `a` with
//! the same tag. Effective dependencies add, for every non-proxy dependency `b` of `a`,
//! each extension `e` of `b` (an object with a proxy link to `b`): `a` also waits for `e`,
//! so an extension is synced after its base and before the base's dependents (R16).

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
#[inline]
pub(crate) fn for_each_effective_dep(store: &Store, id: ObjectId, mut f: impl FnMut(ObjectId)) {
    for &e in store.deps(id) {
        let b = target(e);
        f(b);
        if !is_proxy(e) {
            for &x in store.extensions(b) {
                if x != id.0 {
                    f(ObjectId(x));
                }
            }
        }
    }
}

/// Calls `f` with every effective referrer of `id`: the objects whose effective
/// dependencies include `id` (duplicates possible).
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
        if is_proxy(e) {
            // `id` extends base `b`: every non-proxy referrer of `b` waits for `id`.
            let b = target(e);
            for &r in store.rdeps(b) {
                if !is_proxy(r) && target(r) != id {
                    f(target(r));
                }
            }
        }
    }
}
