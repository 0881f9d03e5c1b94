//! One function per fuzz target. Each feeds arbitrary bytes to fairlead's real code and must
//! never panic or abort: an error returned is fine, a broken invariant is a finding.
//!
//! Input layouts (so that a corpus file says what it is):
//! * `frame`: `[chunking seed][a byte stream of length-prefixed frames]`.
//! * `request_decode`: a request frame without its length prefix (api key, version, correlation
//!   id, client id, tagged fields, body); the prefix is added here, so it is always consistent.
//! * `response_merge`, `rewrite`: `[api selector][version selector][correlation id][header tagged
//!   fields if any][body]`, a response frame without its length prefix.
//! * `written`: `[base offset: 8][length of the stored batch: 2][stored batch][sent batch]`.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, MetadataResponse};
use tokio::io::{AsyncRead, ReadBuf};

use fairlead::config::Config;
use fairlead::testing::{
    api_versions, decode_body, decode_response, encode_request_with_header, encode_response,
    expects_response, metadata, parse_request, rewrite_response, safe_to_resend, Cluster,
    DeleteRecords, Fetch, FrameReader, ListOffsets, OffsetsForLeaderEpoch, Produce, RequestHeader,
    RoutedApi, TopicRef,
};

/// Largest frame the `frame` target's reader accepts (the real default is 100 MiB; small keeps
/// the fuzzer from spending its time on buffer growth).
const MAX_FRAME: usize = 1 << 16;
/// Broker node N is served at `NODE_PORT_BASE + N`: Metadata responses make fairlead bind ports
/// for the brokers they name, and these must stay in 40000-49999 (see [`keep_ports_in_range`]).
const NODE_PORT_BASE: u16 = 40000;
const NODE_IDS: i32 = 10000;

/// libfuzzer-sys installs a panic hook that aborts, so a panic fairlead catches on purpose (the
/// `catch_unwind` around kafka-protocol decoding) would count as a crash. Fuzz targets call
/// this first: caught panics are printed and survived; an uncaught one still aborts (libfuzzer-
/// sys checks for it around every input).
pub fn contain_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}"))));
}

// ---------------------------------------------------------------------------------------------
// frame
// ---------------------------------------------------------------------------------------------

/// Frames read from a stream delivered in arbitrary chunks, each parsed as a request header.
pub fn frame(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let rt = runtime();
    rt.block_on(async {
        let mut reader = FrameReader::new(Chunks::new(stream, seed), MAX_FRAME, 8);
        let mut consumed = 0;
        while let Ok(Some(frame)) = reader.read_frame().await {
            let declared = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
            assert_eq!(
                frame.len(),
                4 + declared as usize,
                "a frame is its prefix plus its length"
            );
            assert!(
                declared >= 8,
                "frames shorter than a request header are refused"
            );
            assert_eq!(
                &stream[consumed..consumed + frame.len()],
                &frame[..],
                "frames are the stream, in order"
            );
            consumed += frame.len();
            if let Ok(h) = parse_request(&frame) {
                if let Some(off) = h.body_offset {
                    assert!(
                        off <= frame.len(),
                        "body offset {off} beyond a {} byte frame",
                        frame.len()
                    );
                }
            }
        }
    });
}

/// Hands out a byte stream in chunks whose sizes follow a seed, as TCP may.
struct Chunks {
    data: Vec<u8>,
    at: usize,
    state: u32,
}

impl Chunks {
    fn new(data: &[u8], seed: u8) -> Chunks {
        Chunks {
            data: data.to_vec(),
            at: 0,
            state: u32::from(seed) | 1,
        }
    }
}

impl AsyncRead for Chunks {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        // xorshift: deterministic per input, so a crash reproduces.
        let mut s = self.state;
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        self.state = s;
        let want = 1 + (s as usize % 97);
        let n = want.min(buf.remaining()).min(self.data.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        std::task::Poll::Ready(Ok(()))
    }
}

// ---------------------------------------------------------------------------------------------
// request_decode
// ---------------------------------------------------------------------------------------------

/// A client request through header parsing, the routed APIs' decoders at every version, and
/// the flatten/build round trip the router uses to split it.
pub fn request_decode(data: &[u8]) {
    let frame = with_len_prefix(data);
    let Ok(hdr) = parse_request(&frame) else {
        return;
    };
    let _ = expects_response(&frame, &hdr);
    let _ = safe_to_resend(hdr.known);
    let Some(off) = hdr.body_offset else {
        return;
    };
    match hdr.known {
        Some(ApiKey::Produce) => routed_request::<Produce>(&frame, off, &hdr),
        Some(ApiKey::Fetch) => routed_request::<Fetch>(&frame, off, &hdr),
        Some(ApiKey::ListOffsets) => routed_request::<ListOffsets>(&frame, off, &hdr),
        Some(ApiKey::OffsetForLeaderEpoch) => {
            routed_request::<OffsetsForLeaderEpoch>(&frame, off, &hdr)
        }
        Some(ApiKey::DeleteRecords) => routed_request::<DeleteRecords>(&frame, off, &hdr),
        _ => {}
    }
}

fn routed_request<A: RoutedApi>(frame: &Bytes, off: usize, hdr: &RequestHeader) {
    let range = A::KEY.valid_versions();
    for v in range.min..=range.max {
        let _ = decode_body::<A::Req>(frame, off, A::KEY, v);
    }
    let v = hdr.api_version;
    let Ok(req) = decode_body::<A::Req>(frame, off, A::KEY, v) else {
        return;
    };
    let (mut envelope, parts) = A::flatten(req);
    let _ = A::routable(&envelope, v);
    let _ = A::home_may_serve(&envelope, v);
    let _ = A::prepare(&mut envelope, v);
    let _ = A::expects_response(&envelope);
    let _ = A::broker_wait(&envelope);
    for (_, p) in &parts {
        let _ = A::partition(p);
        let _ = A::leader_epoch(p);
        let _ = A::produce_facts(p);
        let _ = A::error_part(p, 6);
    }
    let refs: Vec<(&TopicRef, &A::PartReq)> = parts.iter().map(|(t, p)| (t, p)).collect();
    // What the router sends: every partition, and each half on its own (a split by leader).
    let half = refs.len() / 2;
    for subset in [&refs[..], &refs[..half], &refs[half..]] {
        let mut built = A::build(&envelope, subset);
        A::for_replay(&mut built);
        let header = &frame[4..off];
        let Ok(sub) = encode_request_with_header(header, &built, A::KEY, v) else {
            continue;
        };
        let sub = sub.freeze();
        let again = parse_request(&sub).expect("a frame fairlead built has a header it can read");
        let reread: A::Req = decode_body(&sub, again.body_offset.unwrap(), A::KEY, v)
            .expect("a request fairlead built decodes");
        let (_, reparts) = A::flatten(reread);
        assert_eq!(
            reparts.len(),
            subset.len(),
            "partitions lost or invented by a split"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// response_merge
// ---------------------------------------------------------------------------------------------

/// A broker's answer to a routed request, through decode, flatten, merge and re-encode.
pub fn response_merge(data: &[u8]) {
    let [api, version, rest @ ..] = data else {
        return;
    };
    match api % 5 {
        0 => merge::<Produce>(*version, rest),
        1 => merge::<Fetch>(*version, rest),
        2 => merge::<ListOffsets>(*version, rest),
        3 => merge::<OffsetsForLeaderEpoch>(*version, rest),
        _ => merge::<DeleteRecords>(*version, rest),
    }
}

fn merge<A: RoutedApi>(version: u8, rest: &[u8]) {
    let v = pick_version(A::KEY, version);
    let frame = with_len_prefix(rest);
    let Ok(resp) = decode_response::<A::Resp>(&frame, A::KEY, v) else {
        return;
    };
    let (mut envelope, parts) = A::flatten_resp(resp);
    for (_, p) in &parts {
        let _ = A::resp_partition(p);
        let _ = A::error_code(p);
        let _ = A::leader_hint(p);
        let _ = A::base_offset(p);
    }
    if let Some(list) = A::node_endpoints(&mut envelope) {
        let mut seen = 0;
        list.visit(&mut |_, _, _, _| seen += 1);
        assert_eq!(seen, list.len());
    }
    // Two sub-responses merged into one, as a split request's answers are.
    let mut merged = A::Resp::default();
    A::merge_envelope(&mut merged, &envelope);
    A::merge_envelope(&mut merged, &envelope);
    let n = parts.len();
    let out = A::build_resp(envelope, parts);
    let Ok(encoded) = encode_response(&out, A::KEY, v, 7) else {
        return;
    };
    let back: A::Resp =
        decode_response(&encoded, A::KEY, v).expect("a response fairlead built decodes");
    let (_, again) = A::flatten_resp(back);
    assert_eq!(again.len(), n, "partitions lost or invented by a merge");
}

// ---------------------------------------------------------------------------------------------
// rewrite
// ---------------------------------------------------------------------------------------------

/// A forwarded response of an API that names brokers, through `rewrite::response`; ApiVersions
/// also through `cap`, whose promises are checked.
pub fn rewrite(data: &[u8]) {
    let [api, version, rest @ ..] = data else {
        return;
    };
    let key = match api % 6 {
        0 => ApiKey::Metadata,
        1 => ApiKey::FindCoordinator,
        2 => ApiKey::DescribeCluster,
        3 => ApiKey::ApiVersions,
        4 => ApiKey::ShareFetch,
        _ => ApiKey::ShareAcknowledge,
    };
    let v = pick_version(key, *version);
    let mut frame = with_len_prefix(rest);
    if key == ApiKey::Metadata {
        frame = keep_ports_in_range(frame, v);
    }
    let hdr = RequestHeader {
        api_key: key as i16,
        api_version: v,
        correlation_id: 7,
        known: Some(key),
        body_offset: None,
    };
    let cluster = cluster();
    // As the client reads it: a spliced answer's parts one after the other.
    let got = rewrite_response(&cluster, &hdr, &Bytes::new(), frame.clone()).map(|o| o.to_bytes());
    if key == ApiKey::Metadata {
        metadata_paths_agree(&frame, v, got.as_ref().map_err(|e| e.to_string()));
    }
    if key == ApiKey::ApiVersions {
        cap_keeps_its_promises(&frame, v);
    }
}

/// `cap` never raises a maximum, never touches an API fairlead does not inspect, and drops only
/// APIs left with no version in common.
pub fn cap_keeps_its_promises(frame: &Bytes, v: i16) {
    let Ok(out) = api_versions::cap(frame, v, 7) else {
        return;
    };
    let Ok(before) = decode_response::<ApiVersionsResponse>(frame, ApiKey::ApiVersions, v) else {
        assert_eq!(
            &out, frame,
            "an answer fairlead cannot read is relayed unchanged"
        );
        return;
    };
    let after: ApiVersionsResponse =
        decode_response(&out, ApiKey::ApiVersions, v).expect("cap's output decodes");
    let mut kept = after.api_keys.iter();
    for k in &before.api_keys {
        let inspected = ApiKey::try_from(k.api_key).is_ok_and(api_versions::is_inspected);
        let capped = if inspected {
            let key = ApiKey::try_from(k.api_key).unwrap();
            k.max_version.min(api_versions::max_supported(key))
        } else {
            k.max_version
        };
        if before.error_code != 0 || !inspected || k.min_version <= capped {
            let a = kept
                .next()
                .expect("an API that was not dropped is still there, in order");
            assert_eq!((a.api_key, a.min_version), (k.api_key, k.min_version));
            let want = if before.error_code != 0 {
                k.max_version
            } else {
                capped
            };
            assert_eq!(a.max_version, want, "api {}", k.api_key);
            assert!(a.max_version <= k.max_version, "a maximum was raised");
        }
    }
    assert!(kept.next().is_none(), "cap invented an API");
}

/// A Metadata answer through `rewrite_response` (walked, learned from, spliced: fairlead's
/// `rewrite::metadata`) comes out as the decoding path makes it (decoded, learned from by a
/// cluster of its own, rewritten, encoded), and is refused where the decoding path refuses it.
fn metadata_paths_agree(frame: &Bytes, v: i16, spliced: Result<&Bytes, String>) {
    let fresh = cluster();
    let decoding = decode_response::<MetadataResponse>(frame, ApiKey::Metadata, v).and_then(|r| {
        fresh.learn_metadata(&r, &|_| true);
        metadata::rewrite_decoded(r, v, 7, &fresh.advertised())
    });
    match (spliced, decoding) {
        (Ok(a), Ok(b)) => assert_eq!(a, &b, "the splice and the decoding path give other bytes"),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("the paths disagree: rewrite_response {a:?}, decoding {b:?}"),
    }
}

/// Metadata responses make fairlead bind a port for every broker they name (`learn_metadata`
/// -> `Listeners::ensure_node`). Broker ids are folded into 0..10000 so the ports stay within
/// 40000-49999; a response that does not decode is passed as is (nothing is learned from it).
fn keep_ports_in_range(frame: Bytes, v: i16) -> Bytes {
    let Ok(mut r) = decode_response::<MetadataResponse>(&frame, ApiKey::Metadata, v) else {
        return frame;
    };
    if r.brokers
        .iter()
        .all(|b| (0..NODE_IDS).contains(&b.node_id.0))
    {
        return frame;
    }
    for b in r.brokers.iter_mut() {
        b.node_id.0 = b.node_id.0.rem_euclid(NODE_IDS);
    }
    match encode_response(&r, ApiKey::Metadata, v, 7) {
        Ok(f) => f,
        Err(_) => Bytes::new(),
    }
}

/// A fresh cluster handle per input: leadership learned from one input must not leak into the
/// next, and ports bound for one are released (nothing accepts on them).
fn cluster() -> Arc<Cluster> {
    let mut cfg = Config::with_bootstrap("127.0.0.1:1");
    cfg.node_port_base = NODE_PORT_BASE;
    fairlead::testing::cluster(cfg)
}

// ---------------------------------------------------------------------------------------------
// written
// ---------------------------------------------------------------------------------------------

/// The produce-outcome check's batch comparison: the leader's stored batch against the one the
/// client sent. Takes the comparison as an argument so this file builds whether or not it is
/// public (the fuzz target passes `testing::same_batch_at`).
pub fn written(data: &[u8], same_batch_at: impl Fn(&Bytes, &Bytes, i64) -> Option<bool>) {
    let [o0, o1, o2, o3, o4, o5, o6, o7, l0, l1, rest @ ..] = data else {
        return;
    };
    let base = i64::from_be_bytes([*o0, *o1, *o2, *o3, *o4, *o5, *o6, *o7]);
    let split = (u16::from_be_bytes([*l0, *l1]) as usize).min(rest.len());
    // A client can always give its batch a valid CRC: fix them up, or the fuzzer would never get
    // past the decoder's CRC check to the record count and headers behind it.
    let found = Bytes::from(with_valid_crc(&rest[..split]));
    let sent = Bytes::from(with_valid_crc(&rest[split..]));
    let _ = same_batch_at(&found, &sent, base);
    let _ = same_batch_at(&sent, &sent, base);
}

/// The batch with the CRC-32C of its first batch set to match (KIP-98: covers attributes on).
pub fn with_valid_crc(batch: &[u8]) -> Vec<u8> {
    let mut b = batch.to_vec();
    if b.len() < 21 {
        return b;
    }
    let len = i32::from_be_bytes([b[8], b[9], b[10], b[11]]);
    let end = usize::try_from(len).map_or(b.len(), |l| (l.saturating_add(12)).min(b.len()));
    if end > 21 {
        let crc = crc32c(&b[21..end]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    b
}

/// CRC-32C (Castagnoli), bit by bit: slow, small, and only for fuzz inputs.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

// ---------------------------------------------------------------------------------------------

fn with_len_prefix(data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + data.len());
    b.put_i32(data.len() as i32);
    b.put_slice(data);
    b.freeze()
}

/// A version of `key` that kafka-protocol decodes, chosen by a byte.
fn pick_version(key: ApiKey, selector: u8) -> i16 {
    let r = key.valid_versions();
    r.min + (i16::from(selector) % (r.max - r.min + 1))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}
