"""Just enough of the Kafka wire protocol for the benchmarks' Python clients: ApiVersions v3
(what every client sends first) and Produce v9 (acks=1 or all, non-idempotent) with a magic-2
record batch and its CRC-32C, encoded by hand, and the error code of a Produce answer."""

import struct


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # Castagnoli, reflected
        table.append(c)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    t = CRC32C_TABLE
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the standard check value


def uvarint(u):
    out = bytearray()
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)
    return bytes(out)


def varint(n):
    return uvarint((n << 1) ^ (n >> 63))  # zigzag


def compact_str(s):
    b = s.encode()
    return uvarint(len(b) + 1) + b


def header_v2(api_key, version, corr, client_id):
    cid = client_id.encode()
    return struct.pack(">hhih", api_key, version, corr, len(cid)) + cid + b"\x00"


def frame(payload):
    return struct.pack(">i", len(payload)) + payload


def api_versions_v3(corr, client_id):
    body = compact_str("fairlead-bench") + compact_str("1") + b"\x00"
    return frame(header_v2(18, 3, corr, client_id) + body)


def record_batch(n_records, value, timestamp_ms):
    """A magic-2 record batch: no key, no headers, no compression, no producer id."""
    recs = bytearray()
    for i in range(n_records):
        body = b"\x00" + varint(0) + varint(i) + varint(-1) + varint(len(value)) + value + varint(0)
        recs += varint(len(body)) + body
    after_crc = struct.pack(">hiqqqhii", 0, n_records - 1, timestamp_ms, timestamp_ms, -1, -1, -1,
                            n_records) + bytes(recs)
    rest = struct.pack(">ibI", -1, 2, crc32c(after_crc)) + after_crc
    return struct.pack(">qi", 0, len(rest)) + rest


def produce_v9(corr, client_id, topic, partition, batch, acks=1, timeout_ms=30000):
    body = (b"\x00" + struct.pack(">hi", acks, timeout_ms)  # null transactional id
            + uvarint(2) + compact_str(topic)
            + uvarint(2) + struct.pack(">i", partition) + uvarint(len(batch) + 1) + batch + b"\x00"
            + b"\x00" + b"\x00")
    return frame(header_v2(0, 9, corr, client_id) + body)


class Buf:
    def __init__(self, b, o=0):
        self.b, self.o = b, o

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.o)[0]
        self.o += struct.calcsize(fmt)
        return v

    def uvarint(self):
        shift = v = 0
        while True:
            x = self.b[self.o]
            self.o += 1
            v |= (x & 0x7F) << shift
            if not x & 0x80:
                return v
            shift += 7

    def skip_tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            size = self.uvarint()
            self.o += size


def produce_v9_error(payload):
    """(correlation id, error code of the first partition) of a Produce v9 response."""
    r = Buf(payload)
    corr = r.take(">i")
    r.skip_tags()  # response header v1
    if r.uvarint() < 2:
        return corr, -1
    name_len = r.uvarint() - 1
    r.o += name_len  # topic name
    if r.uvarint() < 2:
        return corr, -1
    r.take(">i")  # partition index
    return corr, r.take(">h")


def recv_frame(sock):
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    return recv_exact(sock, size)


def recv_exact(sock, n):
    chunks = []
    while n:
        c = sock.recv(n)
        if not c:
            raise ConnectionError("closed by fairlead")
        chunks.append(c)
        n -= len(c)
    return b"".join(chunks)


# ---------------------------------------------------------------------------------------------
# Metadata v12 (flexible): a request for some topics or all, and the answer's brokers and
# partition leaders


def compact_nullable_str(s):
    return b"\x00" if s is None else compact_str(s)


def metadata_v12(corr, client_id, topics=None):
    """Metadata v12 asking for `topics` (names), or for every topic when None."""
    if topics is None:
        arr = b"\x00"  # null: all topics
    else:
        arr = uvarint(len(topics) + 1) + b"".join(
            bytes(16) + compact_str(t) + b"\x00" for t in topics)  # topic id zero, name, no tags
    body = arr + b"\x00" + b"\x00" + b"\x00"  # allow_auto_topic_creation, include_topic_authorized_operations, tags
    return frame(header_v2(3, 12, corr, client_id) + body)


def parse_metadata_v12(payload):
    """{"brokers": {id: (host, port)}, "topics": {name: {"error": e, "leaders": {p: leader}}}} of a
    Metadata v12 response frame (length prefix stripped)."""
    r = Buf(payload)
    r.take(">i")  # correlation id
    r.skip_tags()  # response header v1
    r.take(">i")  # throttle
    brokers = {}
    for _ in range(r.uvarint() - 1):
        node = r.take(">i")
        n = r.uvarint() - 1
        host = bytes(r.b[r.o:r.o + n]).decode()
        r.o += n
        port = r.take(">i")
        n = r.uvarint() - 1  # rack, nullable
        if n > 0:
            r.o += n
        r.skip_tags()
        brokers[node] = (host, port)
    n = r.uvarint() - 1  # cluster id
    if n > 0:
        r.o += n
    r.take(">i")  # controller
    topics = {}
    for _ in range(r.uvarint() - 1):
        err = r.take(">h")
        n = r.uvarint() - 1
        name = bytes(r.b[r.o:r.o + n]).decode() if n >= 0 else None
        r.o += max(n, 0)
        r.o += 16  # topic id
        r.o += 1  # is_internal
        leaders = {}
        for _ in range(r.uvarint() - 1):
            r.take(">h")
            idx = r.take(">i")
            leader = r.take(">i")
            r.take(">i")  # epoch
            for _ in range(3):  # replicas, isr, offline
                # Read the length first: `r.o += f()` loads r.o before f advances it.
                count = r.uvarint() - 1
                r.o += 4 * count
            r.skip_tags()
            leaders[idx] = leader
        r.take(">i")  # topic authorized operations
        r.skip_tags()
        topics[name] = {"error": err, "leaders": leaders}
    return {"brokers": brokers, "topics": topics}
