//! The snapshot byte format (R14).
//!
//! ```text
//! magic "SYNCORE\0" | format version u32 LE | payload length u64 LE | payload | FNV-1a-64 of payload, u64 LE
//! ```
//! The payload is bincode 2 (standard configuration, with a size limit proportional to the
//! payload length, so a forged length prefix cannot allocate far beyond the input). After
//! decoding, the whole state is checked for consistency (ids, field counts, edges against field values,
//! acyclicity, the unsettled set), so well-formed but inconsistent bytes are refused too.

use crate::engine::Config;
use crate::error::SnapshotError;
use crate::graph::{self, Edge, PROXY};
use crate::id::ObjectId;
use crate::schema::{Schema, SchemaDef};
use crate::store::{Store, StoreData, DEAD};

/// The magic bytes that open a snapshot.
pub const MAGIC: &[u8; 8] = b"SYNCORE\0";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 3;

#[derive(bincode::Encode, bincode::Decode)]
struct Body {
    schema_json: String,
    config: Config,
    store: StoreData,
}

/// 64-bit FNV-1a.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The hash of what a snapshot carries besides the store: the schema and configuration.
pub(crate) fn header_hash(schema: &Schema, config: &Config) -> u64 {
    let json = serde_json::to_string(schema.def()).unwrap_or_default();
    let config = bincode::encode_to_vec(config, bincode::config::standard()).unwrap_or_default();
    let mut h = crate::state_hash::WordHasher::new(0x5359_4e43);
    h.bytes(json.as_bytes());
    h.bytes(&config);
    h.finish()
}

pub(crate) fn encode(schema: &Schema, config: &Config, store: &StoreData) -> Vec<u8> {
    let body = BodyRef {
        schema_json: serde_json::to_string(schema.def()).unwrap_or_default(),
        config,
        store,
    };
    let payload = bincode::encode_to_vec(&body, bincode::config::standard()).unwrap_or_default();
    let mut out = Vec::with_capacity(payload.len() + 28);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&fnv1a(&payload).to_le_bytes());
    out
}

/// Encodes like [`Body`] without cloning the store.
struct BodyRef<'a> {
    schema_json: String,
    config: &'a Config,
    store: &'a StoreData,
}

impl bincode::Encode for BodyRef<'_> {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        e: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.schema_json.encode(e)?;
        self.config.encode(e)?;
        self.store.encode(e)
    }
}

pub(crate) fn decode(bytes: &[u8]) -> Result<(Schema, Config, Store), SnapshotError> {
    decode_with(bytes, true)
}

/// [`decode`], with the checksum pass skipped when `check_sum` is false: for bytes whose
/// integrity the caller has already checked (the scheduler's snapshot checksums the
/// engine's bytes it embeds). Format, lengths and the whole-state consistency check
/// still run.
pub(crate) fn decode_with(
    bytes: &[u8],
    check_sum: bool,
) -> Result<(Schema, Config, Store), SnapshotError> {
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let corrupt = |m: &str| SnapshotError::Corrupt(m.to_string());
    let header = bytes
        .get(8..20)
        .ok_or_else(|| corrupt("truncated header"))?;
    let version = u32::from_le_bytes(header[..4].try_into().map_err(|_| corrupt("header"))?);
    if version != FORMAT_VERSION {
        return Err(SnapshotError::Version {
            found: version,
            expected: FORMAT_VERSION,
        });
    }
    let len = u64::from_le_bytes(header[4..12].try_into().map_err(|_| corrupt("header"))?);
    let rest = &bytes[20..];
    if (rest.len() as u64) < 8 || len != rest.len() as u64 - 8 {
        return Err(corrupt("length does not match (truncated or extended)"));
    }
    let (payload, sum) = rest.split_at(len as usize);
    if check_sum && fnv1a(payload).to_le_bytes() != sum {
        return Err(corrupt("checksum mismatch"));
    }
    let (body, used) =
        decode_body(payload).map_err(|e| SnapshotError::Corrupt(format!("payload: {e}")))?;
    if used != payload.len() {
        return Err(corrupt("trailing bytes in payload"));
    }
    let def: SchemaDef = serde_json::from_str(&body.schema_json)
        .map_err(|e| SnapshotError::Corrupt(format!("schema: {e}")))?;
    let schema = Schema::new(def)?;
    let store = validate(&schema, body.store).map_err(SnapshotError::Corrupt)?;
    Ok((schema, body.config, store))
}

/// In-memory bytes a container may claim per payload byte while decoding. Containers
/// claim `len * size_of::<T>()` against bincode's limit before allocating; every element
/// takes at least one encoded byte and none is larger than 32 bytes in memory, so a real
/// snapshot stays within 64 times its payload.
const CLAIM_PER_BYTE_MAX: usize = 64;

/// Decodes the payload with a bincode limit proportional to its length (issue 7): a forged
/// length prefix is refused as `LimitExceeded` instead of allocating what it claims (a
/// fixed limit of 2^40 let 9 bytes ask for 512 GiB). bincode's limit is a const generic, so
/// the limit is the first of a ladder of powers of four that covers the payload.
fn decode_body(payload: &[u8]) -> Result<(Body, usize), bincode::error::DecodeError> {
    let want = payload.len().saturating_mul(CLAIM_PER_BYTE_MAX);
    macro_rules! ladder {
        ($($bits:literal)*) => {
            $(
                if want <= 1usize << $bits {
                    let config = bincode::config::standard().with_limit::<{ 1usize << $bits }>();
                    return bincode::decode_from_slice(payload, config);
                }
            )*
        };
    }
    ladder!(12 14 16 18 20 22 24 26 28 30);
    #[cfg(target_pointer_width = "64")]
    ladder!(32 34 36 38 40 42 44 46 48);
    Err(bincode::error::DecodeError::LimitExceeded)
}

/// Longest edge list [`edges_match_by_key`] checks (one bit per edge).
const MATCH_BY_KEY_MAX: usize = 64;

/// Whether object `id`'s edges are exactly what its reference fields say, checked without
/// the key index: the edge list is strictly sorted, and the references and the edges match
/// one to one up to duplicates (each reference names the key of a live edge target of the
/// link's model, with the link's proxy flag, and every edge is named). Keys are unique
/// among live objects, so this is the lookup path's check. `false` means "not shown here"
/// (a mismatch, or a list longer than [`MATCH_BY_KEY_MAX`]), never "valid".
fn edges_match_by_key(d: &StoreData, model: &crate::schema::Model, id: usize) -> bool {
    let edges = d.deps.get(id);
    if edges.len() > MATCH_BY_KEY_MAX || edges.windows(2).any(|w| w[0] >= w[1]) {
        return false;
    }
    let mut named: u64 = 0;
    for l in &model.links {
        let flag = if l.proxy { PROXY } else { 0 };
        for t in d.values[id][l.field as usize].refs() {
            let hit = edges.iter().position(|&e| {
                let target = graph::target(e).index();
                e & PROXY == flag && d.model.get(target) == Some(&l.target) && d.keys[target] == **t
            });
            match hit {
                Some(i) => named |= 1 << i,
                None => return false,
            }
        }
    }
    named.count_ones() as usize == edges.len()
}

/// Checks every invariant the engine relies on, so that no later call can panic, and
/// builds the store (its indexes are built once, and serve the checks: each key is hashed
/// once, each reference looked up once, no value copied).
fn validate(schema: &Schema, d: StoreData) -> Result<Store, String> {
    let n = d.keys.len();
    if [
        d.model.len(),
        d.meta.len(),
        d.owner.len(),
        d.values.len(),
        d.deps.len(),
    ]
    .iter()
    .any(|&l| l != n)
    {
        return Err("array lengths differ".into());
    }
    if n > graph::OBJECTS_MAX {
        return Err("too many objects".into());
    }
    let mut free = vec![false; n];
    for &f in &d.free {
        let f = f as usize;
        if f >= n || free[f] || d.model[f] != DEAD {
            return Err(format!("free slot {f} is invalid"));
        }
        free[f] = true;
    }
    for (id, &is_free) in free.iter().enumerate() {
        let meta = d.meta[id];
        let m = d.model[id];
        if m == DEAD {
            if !is_free {
                return Err(format!("slot {id} is neither live nor free"));
            }
            // A free slot holds nothing (the state hash and the indexes skip it).
            if !d.keys[id].is_empty()
                || meta != crate::store::Meta::default()
                || d.owner[id] != crate::store::NO_OWNER
                || !d.values[id].is_empty()
                || !d.deps.get(id).is_empty()
            {
                return Err(format!("free slot {id} is not empty"));
            }
            continue;
        }
        let Some(model) = schema.models().get(m.index()) else {
            return Err(format!("object {id}: unknown model {}", m.0));
        };
        if d.keys[id].is_empty() {
            return Err(format!("object {id}: empty or duplicate key"));
        }
        if d.values[id].len() != model.fields.len() + model.feedback.len() {
            return Err(format!("object {}: wrong number of values", &d.keys[id]));
        }
        if meta.version == 0
            || meta.version >= d.next_version
            || meta.enacted > meta.version
            || meta.born == 0
            || meta.born > meta.version
        {
            return Err(format!("object {}: bad version", &d.keys[id]));
        }
        let o = d.owner[id];
        if o != crate::store::NO_OWNER
            && (o as usize >= n || o as usize == id || d.model[o as usize] == DEAD)
        {
            return Err(format!("object {}: bad owner", &d.keys[id]));
        }
        let fields = model.fields.iter().chain(model.feedback.iter());
        for (f, v) in fields.zip(d.values[id].iter()) {
            if !v.has_type(f.ty) {
                return Err(format!(
                    "object {}: field {} has a {} value",
                    &d.keys[id],
                    f.name,
                    v.kind_name()
                ));
            }
        }
    }
    drop(free);
    let decl = schema
        .models()
        .iter()
        .map(|m| m.fields.len() as u16)
        .collect();
    let store = Store::from_data(d, decl).map_err(|e| {
        if e.ends_with("duplicate key") {
            e.replace("duplicate key", "empty or duplicate key")
        } else {
            e
        }
    })?;
    let d = &store.d;
    // Edges must be exactly what the field values say. Most objects have a few edges: their
    // references are matched against the keys the edges point to (no hashing, one key read
    // per edge); only a list too long for that, or a mismatch, takes the lookup path (which
    // names what is wrong).
    let mut want: Vec<Edge> = Vec::new();
    for id in 0..n {
        let m = d.model[id];
        if m == DEAD {
            continue;
        }
        let model = schema.model(m);
        if edges_match_by_key(d, model, id) {
            continue;
        }
        want.clear();
        for l in &model.links {
            for t in d.values[id][l.field as usize].refs() {
                let Some(tid) = store.id_of(t) else {
                    return Err(format!("object {}: dangling reference {t}", &d.keys[id]));
                };
                if d.model[tid.index()] != l.target {
                    return Err(format!(
                        "object {}: reference {t} has the wrong model",
                        &d.keys[id]
                    ));
                }
                want.push(tid.0 | if l.proxy { PROXY } else { 0 });
            }
        }
        want.sort_unstable();
        want.dedup();
        if d.deps.get(id) != want.as_slice() {
            return Err(format!(
                "object {}: edges do not match its fields",
                &d.keys[id]
            ));
        }
    }
    drop(want);
    // Acyclic effective graph (R11): Kahn over link edges plus proxy implications, peeling
    // objects nothing waits for. `waiting[t]` counts the effective dependencies on `t`
    // (duplicates included: the same enumeration adds and removes them).
    let mut waiting = vec![0u32; n];
    for id in 0..n {
        if d.model[id] != DEAD {
            graph::for_each_effective_dep(&store, ObjectId(id as u32), |t| {
                waiting[t.index()] += 1;
            });
        }
    }
    let mut queue: Vec<u32> = (0..n as u32)
        .filter(|&i| d.model[i as usize] != DEAD && waiting[i as usize] == 0)
        .collect();
    let mut seen = 0;
    while let Some(u) = queue.pop() {
        seen += 1;
        graph::for_each_effective_dep(&store, ObjectId(u), |t| {
            let w = &mut waiting[t.index()];
            *w -= 1;
            if *w == 0 {
                queue.push(t.0);
            }
        });
    }
    if seen != store.live_count {
        return Err("object graph has a cycle".into());
    }
    drop(waiting);
    let mut wanted = 0;
    for id in 0..n {
        let meta = &d.meta[id];
        let live = d.model[id] != DEAD;
        let want = live
            && (meta.enacted != meta.version
                || meta.backoff.deleting()
                || meta.backoff.external_failed());
        wanted += usize::from(want);
        if want != d.unsettled.contains(id as u32) {
            return Err(format!("unsettled set disagrees at slot {id}"));
        }
    }
    // Every member below `n` agrees, so a larger set holds an id out of range.
    if d.unsettled.len() != wanted
        || d.messages
            .keys()
            .any(|&k| k as usize >= n || d.model[k as usize] == DEAD)
    {
        return Err("index out of range".into());
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChangeSet, Engine, Value};

    /// A Site, a Tag extending it (proxy link), and Slices naming many Sites, one Tag.
    const SCHEMA: &str = r#"{"models": [
      {"name": "Site", "fields": [{"name": "name", "type": "string"}]},
      {"name": "Tag", "fields": [{"name": "on", "type": "ref"}],
       "links": [{"field": "on", "target": "Site", "proxy": true}]},
      {"name": "Slice", "fields": [{"name": "sites", "type": "refs"}, {"name": "tag", "type": "ref"}],
       "links": [{"field": "sites", "target": "Site"}, {"field": "tag", "target": "Tag"}]}]}"#;

    /// Sites s0..s{sites}, a Tag on s0, and Slice `small` (3 Sites, one named twice) and
    /// Slice `big` (every Site: more edges than the key-matching path checks).
    fn state(sites: usize) -> (Schema, StoreData) {
        let mut set = ChangeSet::new();
        for i in 0..sites {
            set = set.upsert(format!("s{i}"), "Site", [("name", format!("n{i}"))]);
        }
        let refs = |keys: &[usize]| Value::Refs(keys.iter().map(|i| format!("s{i}")).collect());
        set = set
            .upsert("t", "Tag", [("on", "s0")])
            .upsert(
                "small",
                "Slice",
                [("sites", refs(&[2, 1, 2])), ("tag", Value::from("t"))],
            )
            .upsert(
                "big",
                "Slice",
                [
                    ("sites", refs(&(0..sites).collect::<Vec<_>>())),
                    ("tag", Value::from("t")),
                ],
            );
        let mut engine = Engine::new(Schema::from_json(SCHEMA).unwrap(), Default::default());
        engine.apply(set).unwrap();
        let bytes = engine.snapshot();
        let (body, _) = decode_body(&bytes[20..bytes.len() - 8]).unwrap();
        (
            Schema::new(serde_json::from_str(&body.schema_json).unwrap()).unwrap(),
            body.store,
        )
    }

    fn id(d: &StoreData, key: &str) -> usize {
        d.keys.iter().position(|k| k == key).unwrap()
    }

    /// Restores `d` with object `key`'s edge list replaced by what `edit` makes of it.
    fn with_edges(
        (schema, mut d): (Schema, StoreData),
        key: &str,
        edit: impl FnOnce(&mut Vec<Edge>, &StoreData),
    ) -> Result<Store, String> {
        let i = id(&d, key);
        let mut edges = d.deps.get(i).to_vec();
        edit(&mut edges, &d);
        d.deps.set(i, &edges);
        validate(&schema, d)
    }

    #[test]
    fn valid_edges_restore_on_both_paths() {
        let (schema, d) = state(MATCH_BY_KEY_MAX + 6);
        let small = id(&d, "small");
        let big = id(&d, "big");
        let model = schema.model(d.model[small]);
        assert!(edges_match_by_key(&d, model, small));
        assert!(
            !edges_match_by_key(&d, model, big),
            "too long for the key path"
        );
        assert!(validate(&schema, d).is_ok());
    }

    #[test]
    fn a_missing_extra_or_altered_edge_is_refused() {
        type Edit = fn(&mut Vec<Edge>, &StoreData);
        let cases: [(&str, &str, Edit); 8] = [
            ("small", "drop an edge", |e, _| {
                e.pop();
            }),
            ("small", "add an edge to a Site nothing names", |e, d| {
                e.push(id(d, "s5") as u32);
                e.sort_unstable();
            }),
            ("small", "duplicate an edge", |e, _| {
                e.push(e[0]);
                e.sort_unstable();
            }),
            ("small", "unsort the list", |e, _| e.reverse()),
            ("t", "drop the proxy flag", |e, _| e[0] &= !PROXY),
            ("small", "flag a plain link as a proxy", |e, _| {
                e[0] |= PROXY
            }),
            ("small", "point at an object of the wrong model", |e, d| {
                let t = id(d, "t") as u32;
                let s1 = id(d, "s1") as u32;
                for x in e.iter_mut().filter(|x| graph::target(**x).0 == s1) {
                    *x = t;
                }
                e.sort_unstable();
            }),
            ("big", "drop an edge from a long list", |e, _| {
                e.remove(3);
            }),
        ];
        for (key, what, edit) in cases {
            let got = with_edges(state(MATCH_BY_KEY_MAX + 6), key, edit);
            match got {
                Err(e) => assert_eq!(
                    e,
                    format!("object {key}: edges do not match its fields"),
                    "{what}"
                ),
                Ok(_) => panic!("{what}: restored"),
            }
        }
    }

    #[test]
    fn an_edge_past_the_last_object_is_refused() {
        let (schema, d) = state(4);
        let (small, past) = (id(&d, "small"), d.keys.len());
        let got = with_edges((schema, d), "small", |e, _| e.push(past as u32));
        match got {
            Err(e) => assert_eq!(
                e,
                format!("object {small}: edge to slot {past} out of range")
            ),
            Ok(_) => panic!("an edge past the last slot restored"),
        }
    }
}
