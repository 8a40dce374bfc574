//! One encoded resource, and the writer that lays resources out.
//!
//! The translator encodes each resource once, straight into a buffer it
//! shares with the other resources written with it, already framed as an
//! entry of a delta response's `resources` (field 2 of
//! `DeltaDiscoveryResponse`):
//!
//! ```text
//! 0x12 len Resource { 1: version, 2: Any { 1: type_url, 2: value }, 3: name }
//! ```
//!
//! The `Any` in it is, byte for byte, an entry of a SotW response's
//! `resources` (field 2 of `DiscoveryResponse`), and its `value` is the
//! resource itself. A whole type set is laid out in name order, so the
//! resources a new client lacks, which a set's diff lists in name order, lie
//! next to each other and go out as a few large shared slices instead of
//! thousands of small copies per stream (`super::responses::Entries`).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use super::ResourceType;
use crate::protobuf::{field_len, put_field_head};

/// One encoded resource. Shared (`Arc`) between snapshots and streams.
#[derive(Debug, PartialEq, Eq)]
pub struct Resource {
    pub name: String,
    /// Content hash of `body`.
    pub version: String,
    /// The resource encoded as protobuf (the `value` of its `Any`).
    pub body: Bytes,
    /// The buffer the resource was written into, shared with the resources
    /// written with it.
    arena: Bytes,
    /// `arena[entry]`: the resource as a delta response entry.
    entry: Range<usize>,
    /// `arena[any]`: the resource as a SotW response entry.
    any: Range<usize>,
}

/// A stretch of a shared buffer: `arena[range]`.
#[derive(Debug, Clone)]
pub struct Span<'a> {
    pub arena: &'a Bytes,
    pub range: Range<usize>,
}

impl Resource {
    /// Encodes `msg` once, framed for both protocols and versioned by content.
    pub fn encode<M: prost::Message + prost::Name>(name: String, msg: &M) -> Arc<Resource> {
        let mut w = ResourceWriter::new(M::type_url());
        w.encode(name, msg);
        w.single()
    }

    /// A resource of type `ty` from its encoded body.
    pub fn from_body(ty: ResourceType, name: String, body: &[u8]) -> Arc<Resource> {
        let mut w = ResourceWriter::for_type(ty);
        w.put_body(name, body);
        w.single()
    }

    /// The resource framed as an entry of `DeltaDiscoveryResponse.resources`.
    pub fn delta_entry(&self) -> Span<'_> {
        Span {
            arena: &self.arena,
            range: self.entry.clone(),
        }
    }

    /// The resource framed as an entry of `DiscoveryResponse.resources`.
    pub fn sotw_entry(&self) -> Span<'_> {
        Span {
            arena: &self.arena,
            range: self.any.clone(),
        }
    }
}

/// A content hash as a short hex string.
pub fn content_version(bytes: &[u8]) -> String {
    // Written by hand: `format!` costs more than hashing a small resource,
    // and a full translation versions every resource of the mesh.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = xxhash_rust::xxh3::xxh3_64(bytes);
    let digits: Vec<u8> = (0..VERSION_LEN)
        .rev()
        .map(|i| HEX[(hash >> (4 * i)) as usize & 0xf])
        .collect();
    String::from_utf8(digits).expect("hex digits are ASCII")
}

/// Length of every version `content_version` makes.
const VERSION_LEN: usize = 16;

/// Where one written resource lies in the writer's buffer.
struct Written {
    name: String,
    version: String,
    entry: Range<usize>,
    any: Range<usize>,
    body: Range<usize>,
}

/// Writes resources of one type into one buffer, each framed as described
/// in the module docs.
pub struct ResourceWriter {
    type_url: String,
    buf: Vec<u8>,
    written: Vec<Written>,
}

impl ResourceWriter {
    pub fn new(type_url: impl Into<String>) -> ResourceWriter {
        ResourceWriter {
            type_url: type_url.into(),
            buf: Vec::new(),
            written: Vec::new(),
        }
    }

    pub fn for_type(ty: ResourceType) -> ResourceWriter {
        ResourceWriter::new(ty.type_url())
    }

    /// Encodes `msg` as the resource `name`.
    pub fn encode<M: prost::Message>(&mut self, name: String, msg: &M) {
        self.put(name, msg.encoded_len(), |buf| msg.encode_raw(buf));
    }

    /// Writes an already encoded resource.
    pub fn put_body(&mut self, name: String, body: &[u8]) {
        self.put(name, body.len(), |buf| buf.extend_from_slice(body));
    }

    /// Frames a body of `body_len` bytes that `write` appends. Empty fields
    /// are left out, as proto3 encoders do.
    fn put(&mut self, name: String, body_len: usize, write: impl FnOnce(&mut Vec<u8>)) {
        let any_len =
            field_len(self.type_url.len()) + if body_len > 0 { field_len(body_len) } else { 0 };
        let resource_len = field_len(VERSION_LEN)
            + field_len(any_len)
            + if name.is_empty() {
                0
            } else {
                field_len(name.len())
            };
        let buf = &mut self.buf;
        let start = buf.len();
        buf.reserve(field_len(resource_len));
        put_field_head(2, resource_len, buf);
        put_field_head(1, VERSION_LEN, buf);
        let version_at = buf.len();
        buf.resize(version_at + VERSION_LEN, 0);
        let any_start = buf.len();
        put_field_head(2, any_len, buf);
        put_field_head(1, self.type_url.len(), buf);
        buf.extend_from_slice(self.type_url.as_bytes());
        if body_len > 0 {
            put_field_head(2, body_len, buf);
        }
        let body_start = buf.len();
        write(buf);
        let body = body_start..buf.len();
        assert_eq!(body.len(), body_len, "a body is as long as announced");
        let any_end = buf.len();
        if !name.is_empty() {
            put_field_head(3, name.len(), buf);
            buf.extend_from_slice(name.as_bytes());
        }
        let version = content_version(&buf[body.clone()]);
        buf[version_at..version_at + VERSION_LEN].copy_from_slice(version.as_bytes());
        self.written.push(Written {
            name,
            version,
            entry: start..buf.len(),
            any: any_start..any_end,
            body,
        });
    }

    /// The resources in the order they were written.
    pub fn finish(self) -> Vec<Arc<Resource>> {
        let arena = frozen(self.buf);
        self.written
            .into_iter()
            .map(|w| {
                let at = w.entry.start;
                resource(&arena, w, at, at)
            })
            .collect()
    }

    /// The resources by name, laid out in name order in one buffer (of a
    /// name written twice, the last). Copies the buffer once unless it was
    /// written in that order.
    pub fn finish_by_name(mut self) -> SortedResources {
        if self.written.windows(2).all(|w| w[0].name < w[1].name) {
            return SortedResources(self.finish());
        }
        self.take_by_name()
    }

    /// The resources written so far, laid out by name in a buffer of their
    /// own as `finish_by_name` does, leaving this writer empty with its room
    /// kept for more: a writer reused this way is written into memory that
    /// is already mapped and warm.
    pub fn take_by_name(&mut self) -> SortedResources {
        let mut all = std::mem::take(&mut self.written);
        // Stable: of equal names, the last written stays last, and is kept.
        all.sort_by(|a, b| a.name.cmp(&b.name));
        keep_last_of_each_name(&mut all, |w| &w.name);
        let len = all.iter().map(|w| w.entry.len()).sum();
        let mut laid = Vec::with_capacity(len);
        let mut placed = Vec::with_capacity(all.len());
        for w in all {
            // The entry moves from `w.entry.start` in this writer's buffer
            // to the end of `laid`.
            let at = laid.len();
            laid.extend_from_slice(&self.buf[w.entry.clone()]);
            placed.push((w, at));
        }
        self.buf.clear();
        let arena = Bytes::from(laid);
        SortedResources(
            placed
                .into_iter()
                .map(|(w, at)| {
                    let from = w.entry.start;
                    resource(&arena, w, from, at)
                })
                .collect(),
        )
    }

    /// The one resource written.
    fn single(self) -> Arc<Resource> {
        self.finish()
            .pop()
            .expect("a writer for one resource wrote one")
    }
}

/// Resources in name order, one per name: a type set's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SortedResources(Vec<Arc<Resource>>);

impl SortedResources {
    /// The resource named `name`, found by binary search.
    pub fn get(&self, name: &str) -> Option<&Arc<Resource>> {
        self.position(name).ok().map(|i| &self.0[i])
    }

    /// Where `name` is, or would go.
    fn position(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|r| r.name.as_str().cmp(name))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Arc<Resource>> {
        self.0.iter()
    }

    pub fn as_slice(&self) -> &[Arc<Resource>] {
        &self.0
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|r| r.name.as_str())
    }

    /// The resources whose names start with `prefix`.
    pub fn with_prefix<'a>(&'a self, prefix: &str) -> &'a [Arc<Resource>] {
        let start = self.0.partition_point(|r| r.name.as_str() < prefix);
        let len = self.0[start..].partition_point(|r| r.name.starts_with(prefix));
        &self.0[start..start + len]
    }

    /// One set of the resources of `runs`; of a name in more than one, the
    /// one in the last run is kept. Nothing is copied: resources stay in
    /// the buffers their runs were laid out in. Runs cut from a name-ordered
    /// input (chunks of a mesh's services) interleave in long stretches: a
    /// run is taken from until its next name passes the smallest name the
    /// other runs have left, so most resources cost one comparison.
    pub fn merge(runs: Vec<SortedResources>) -> SortedResources {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let total = runs.iter().map(SortedResources::len).sum();
        let mut out: Vec<Arc<Resource>> = Vec::with_capacity(total);
        // Heads of the runs not yet used up: (name, run, position).
        let mut heads: BinaryHeap<Reverse<(&str, usize, usize)>> = runs
            .iter()
            .enumerate()
            .filter(|(_, run)| !run.is_empty())
            .map(|(i, run)| Reverse((run.0[0].name.as_str(), i, 0)))
            .collect();
        while let Some(Reverse((_, run, mut at))) = heads.pop() {
            let items = &runs[run].0;
            loop {
                out.push(items[at].clone());
                at += 1;
                let Some(next) = items.get(at) else { break };
                let key = (next.name.as_str(), run, at);
                if heads.peek().is_some_and(|Reverse(other)| *other < key) {
                    heads.push(Reverse(key));
                    break;
                }
            }
        }
        // Equal names come out side by side, the later run's last.
        keep_last_of_each_name(&mut out, |r| &r.name);
        SortedResources(out)
    }

    /// This set with `upserts` put in (replacing resources of the same name)
    /// and `removed` taken out; `None` when that changes nothing, an upsert
    /// equal in version to the resource it replaces counting as no change
    /// (the existing one stays, so sets keep sharing it).
    pub fn patched(
        &self,
        upserts: impl IntoIterator<Item = Arc<Resource>>,
        removed: impl IntoIterator<Item = String>,
    ) -> Option<SortedResources> {
        let upserts: SortedResources = upserts
            .into_iter()
            .filter(|r| self.get(&r.name).is_none_or(|old| old.version != r.version))
            .collect();
        let mut removed: Vec<String> = removed
            .into_iter()
            .filter(|n| self.get(n).is_some() && upserts.get(n).is_none())
            .collect();
        if upserts.is_empty() && removed.is_empty() {
            return None;
        }
        // Each name once, in the order the set holds them.
        removed.sort_unstable();
        removed.dedup();
        let mut out = Vec::with_capacity(self.len() + upserts.len());
        let mut new = upserts.0.into_iter().peekable();
        let mut gone = removed.iter().peekable();
        for r in &self.0 {
            while let Some(n) = new.next_if(|n| n.name < r.name) {
                out.push(n);
            }
            if gone.next_if(|g| **g == r.name).is_some() {
                continue;
            }
            match new.next_if(|n| n.name == r.name) {
                Some(n) => out.push(n),
                None => out.push(r.clone()),
            }
        }
        out.extend(new);
        Some(SortedResources(out))
    }
}

/// Sorts by name; of a name given twice, the last is kept.
impl FromIterator<Arc<Resource>> for SortedResources {
    fn from_iter<I: IntoIterator<Item = Arc<Resource>>>(iter: I) -> SortedResources {
        let mut all: Vec<Arc<Resource>> = iter.into_iter().collect();
        if all.windows(2).all(|w| w[0].name < w[1].name) {
            return SortedResources(all);
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        keep_last_of_each_name(&mut all, |r| &r.name);
        SortedResources(all)
    }
}

impl<'a> IntoIterator for &'a SortedResources {
    type Item = &'a Arc<Resource>;
    type IntoIter = std::slice::Iter<'a, Arc<Resource>>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for SortedResources {
    type Item = Arc<Resource>;
    type IntoIter = std::vec::IntoIter<Arc<Resource>>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Of neighbours with equal names (as a stable sort by name leaves them, in
/// the order given), keeps the last.
fn keep_last_of_each_name<T>(items: &mut Vec<T>, name: impl Fn(&T) -> &str) {
    items.dedup_by(|later, kept| {
        let same = name(later) == name(kept);
        if same {
            std::mem::swap(later, kept);
        }
        same
    });
}

/// The buffer as an arena, without the room its growth left: resources keep
/// their arena alive as long as they live.
fn frozen(mut buf: Vec<u8>) -> Bytes {
    if buf.capacity() - buf.len() > buf.len() / 8 {
        buf.shrink_to_fit();
    }
    Bytes::from(buf)
}

/// The resource `w` describes, whose entry moved from offset `from` to `to`
/// (later or earlier) in `arena`.
fn resource(arena: &Bytes, w: Written, from: usize, to: usize) -> Arc<Resource> {
    let moved = |r: Range<usize>| r.start - from + to..r.end - from + to;
    Arc::new(Resource {
        name: w.name,
        version: w.version,
        body: arena.slice(moved(w.body)),
        arena: arena.clone(),
        entry: moved(w.entry),
        any: moved(w.any),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::service::discovery::v3 as ds;
    use prost::Message;

    fn cluster(name: &str) -> Cluster {
        Cluster {
            name: name.into(),
            alt_stat_name: format!("{name};"),
            ..Default::default()
        }
    }

    /// Decodes a delta response made of `entries` only.
    fn delta_resources(entries: &[u8]) -> Vec<ds::Resource> {
        ds::DeltaDiscoveryResponse::decode(entries)
            .unwrap()
            .resources
    }

    #[test]
    fn entries_decode_as_envoy_types_and_match_prost() {
        let msg = cluster("outbound|80||a");
        let r = Resource::encode("outbound|80||a".into(), &msg);
        assert_eq!(r.body.as_ref(), msg.encode_to_vec());
        assert_eq!(r.version, content_version(&msg.encode_to_vec()));
        let e = r.delta_entry();
        let decoded = delta_resources(&e.arena[e.range]);
        let expected = ds::Resource {
            name: "outbound|80||a".into(),
            version: r.version.clone(),
            resource: Some(envoy_types::pb::google::protobuf::Any {
                type_url: ResourceType::Cluster.type_url().into(),
                value: msg.encode_to_vec(),
            }),
            ..Default::default()
        };
        assert_eq!(decoded, vec![expected.clone()]);
        // Byte for byte what prost writes for the same response.
        let prost = ds::DeltaDiscoveryResponse {
            resources: vec![expected.clone()],
            ..Default::default()
        };
        assert_eq!(&e.arena[r.delta_entry().range], prost.encode_to_vec());
        let s = r.sotw_entry();
        let sotw = ds::DiscoveryResponse {
            resources: vec![expected.resource.unwrap()],
            ..Default::default()
        };
        assert_eq!(&s.arena[s.range], sotw.encode_to_vec());
    }

    #[test]
    fn versions_are_the_hash_in_sixteen_hex_digits() {
        for body in [&b""[..], b"x", b"a longer body of bytes"] {
            let expected = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(body));
            assert_eq!(content_version(body), expected);
        }
    }

    #[test]
    fn empty_bodies_and_names_are_left_out_as_prost_does() {
        let r = Resource::from_body(ResourceType::Endpoint, String::new(), b"");
        let e = r.delta_entry();
        let prost = ds::DeltaDiscoveryResponse {
            resources: vec![ds::Resource {
                version: r.version.clone(),
                resource: Some(envoy_types::pb::google::protobuf::Any {
                    type_url: ResourceType::Endpoint.type_url().into(),
                    value: Vec::new(),
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(&e.arena[e.range], prost.encode_to_vec());
    }

    #[test]
    fn a_set_is_laid_out_in_name_order_in_one_buffer() {
        let mut w = ResourceWriter::for_type(ResourceType::Cluster);
        for name in ["c", "a", "b", "a"] {
            w.encode(name.to_string(), &cluster(&format!("{name}-body")));
        }
        // The second "a" replaced the first.
        let body_of_last_a = cluster("a-body").encode_to_vec();
        let set = w.finish_by_name();
        assert_eq!(set.names().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(set.get("a").unwrap().body.as_ref(), body_of_last_a);
        let spans: Vec<Span> = set.iter().map(|r| r.delta_entry()).collect();
        for pair in spans.windows(2) {
            assert_eq!(pair[0].arena.as_ptr(), pair[1].arena.as_ptr());
            assert_eq!(pair[0].range.end, pair[1].range.start, "next to each other");
        }
        let all = &spans[0].arena[spans[0].range.start..spans[2].range.end];
        let names: Vec<String> = delta_resources(all).into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["a", "b", "c"]);
        for r in set.iter() {
            assert_eq!(r.version, content_version(&r.body));
            let decoded = Cluster::decode(r.body.as_ref()).unwrap();
            assert_eq!(decoded.name, format!("{}-body", r.name));
        }
    }

    #[test]
    fn a_set_written_in_order_is_laid_out_as_written() {
        let mut w = ResourceWriter::for_type(ResourceType::Cluster);
        w.encode("a".into(), &cluster("a"));
        w.encode("b".into(), &cluster("b"));
        let set = w.finish_by_name();
        let (a, b) = (
            set.get("a").unwrap().delta_entry(),
            set.get("b").unwrap().delta_entry(),
        );
        assert_eq!(a.arena.as_ptr(), b.arena.as_ptr());
        assert_eq!((a.range.start, a.range.end), (0, b.range.start));
        assert_eq!(b.range.end, a.arena.len());
    }

    #[test]
    fn a_writer_taken_from_starts_again_empty() {
        let mut w = ResourceWriter::for_type(ResourceType::Cluster);
        w.encode("b".into(), &cluster("b1"));
        w.encode("a".into(), &cluster("a1"));
        let first = w.take_by_name();
        w.encode("c".into(), &cluster("c2"));
        let second = w.take_by_name();
        assert_eq!(first.names().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(second.names().collect::<Vec<_>>(), ["c"]);
        let c = second.get("c").unwrap();
        assert_eq!(Cluster::decode(c.body.as_ref()).unwrap().name, "c2");
        assert_eq!(c.delta_entry().range, 0..c.delta_entry().arena.len());
        assert_eq!(first.get("a").unwrap().body, cluster("a1").encode_to_vec());
        assert!(w.take_by_name().is_empty());
    }

    #[test]
    fn runs_merge_into_one_set_in_name_order_without_moving_bytes() {
        let run = |names: &[&str], tag: &str| {
            let mut w = ResourceWriter::for_type(ResourceType::Cluster);
            for name in names {
                w.encode(name.to_string(), &cluster(&format!("{name}-{tag}")));
            }
            w.finish_by_name()
        };
        let runs = vec![
            run(&["d", "a", "c", "e"], "first"),
            run(&["b", "c", "f"], "second"),
            run(&[], "empty"),
            run(&["a2", "a3"], "third"),
        ];
        let arenas: Vec<*const u8> = runs
            .iter()
            .map(|r| {
                r.iter()
                    .next()
                    .map_or(std::ptr::null(), |x| x.delta_entry().arena.as_ptr())
            })
            .collect();
        let set = SortedResources::merge(runs);
        assert_eq!(
            set.names().collect::<Vec<_>>(),
            ["a", "a2", "a3", "b", "c", "d", "e", "f"]
        );
        let c = Cluster::decode(set.get("c").unwrap().body.as_ref()).unwrap();
        assert_eq!(c.name, "c-second", "the later run wins");
        // Each resource stays in its run's buffer; neighbours from one run
        // stay next to each other.
        let of = |name: &str| set.get(name).unwrap().delta_entry().arena.as_ptr();
        assert_eq!(of("a"), arenas[0]);
        assert_eq!((of("a2"), of("f")), (arenas[3], arenas[1]));
        let (d, e) = (set.get("d").unwrap(), set.get("e").unwrap());
        assert_eq!(d.delta_entry().range.end, e.delta_entry().range.start);
        for r in set.iter() {
            assert_eq!(r.version, content_version(&r.body));
        }
        assert!(SortedResources::merge(Vec::new()).is_empty());
    }

    #[test]
    fn a_patched_set_stays_in_name_order_and_keeps_what_did_not_change() {
        let r = |name: &str, body: &str| {
            Resource::from_body(ResourceType::Endpoint, name.into(), body.as_bytes())
        };
        let set: SortedResources = [r("f", "1"), r("b", "1"), r("d", "1"), r("b", "0")]
            .into_iter()
            .collect();
        assert_eq!(set.names().collect::<Vec<_>>(), ["b", "d", "f"]);
        assert_eq!(
            set.get("b").unwrap().body.as_ref(),
            b"0",
            "the last b is kept"
        );
        let patched = set
            .patched(
                [r("g", "1"), r("b", "0"), r("a", "1"), r("d", "2")],
                ["f".to_string(), "missing".to_string()],
            )
            .expect("a change");
        assert_eq!(patched.names().collect::<Vec<_>>(), ["a", "b", "d", "g"]);
        assert!(Arc::ptr_eq(
            patched.get("b").unwrap(),
            set.get("b").unwrap()
        ));
        assert_eq!(patched.get("d").unwrap().body.as_ref(), b"2");
        assert_eq!(set.with_prefix("d").len(), 1);
        assert!(set.with_prefix("c").is_empty());
        // A name removed twice is removed once, and the rest still go.
        let fewer = set
            .patched([], ["b".to_string(), "b".to_string(), "f".to_string()])
            .expect("a change");
        assert_eq!(fewer.names().collect::<Vec<_>>(), ["d"]);
        // Upserting what is there and removing what is not changes nothing.
        assert!(set
            .patched([r("d", "1")], ["missing".to_string()])
            .is_none());
    }
}
