#!/usr/bin/env python3
"""Print the decode-guard schema tables (src/codec/sanity/schema.rs) for Kafka messages, read
from kafka-protocol's generated sources.

What it does: for each message named on the command line (the Rust type, e.g.
`JoinGroupRequest`), it reads `<messages>/<snake_case>.rs` from kafka-protocol and, for every
struct in that file, runs the struct's `decode()` implementation symbolically at every version
in the struct's `Message::VERSIONS`: each `if version ...` condition is evaluated, and the
`types::X.decode(buf)` calls on the taken branches are collected in order, with the variable they
assign and the tagged-field arm (`match tag { N => ... }`) they sit in. A tag arm that `bail!`s at
a version is not known at that version (the walker then skips it by size, as unknown). The
per-version results are merged into `f(name, ty, since, until)` / `tagged(name, tag, ty, since,
until)` entries, one per contiguous range of versions with the same wire type. So the tables
follow what the decoder reads, not the doc comments: a tagged field whose arm has no version
check is read in place at every flexible version, whatever its "Supported API versions" say.

Wire types map to `Ty` as follows: Int8/Boolean -> Fixed(1), Int16/UInt16 -> Fixed(2),
Int32/UInt32 -> Fixed(4), Int64/Float64 -> Fixed(8), Uuid -> Fixed(16); (Compact)String -> Str;
(Compact)Bytes -> Bytes; Struct -> Struct(..); OptionStruct (an INT8 marker, 1 = present, then
the struct) -> NullableStruct(..); (Compact)Array of Struct -> Structs(..), of a fixed-width
scalar -> Fixeds(width), of (Compact)String -> Strs. Anything else is an error, as is a compact
type at a non-flexible version (or the reverse), or a nested struct whose flexible versions
differ from its message's: the walker assumes one flexibility per message.

Output: for each message a comment line ("// XRequest: versions a-b, flexible from c."), one
`const MESSAGE_STRUCT: &[Field]` per struct (the root struct is just `MESSAGE`) in file order,
then the `Schema { .. }` entries for all messages, in command-line order, to paste into
`SCHEMAS`. Paste and run `cargo fmt` (or pass --fmt to run rustfmt here).

Run (from the repository root):

    python3 tools/sanity_schemas.py [--src DIR] [--fmt] MESSAGE...
    python3 tools/sanity_schemas.py --fmt JoinGroupRequest JoinGroupResponse

`--src` defaults to ~/.cargo/registry/src/*/kafka-protocol-<VERSION>/src/messages, VERSION being
the kafka-protocol version in Cargo.lock.
"""

import argparse
import glob
import os
import re
import subprocess
import sys

FIXED = {
    "Int8": 1,
    "Boolean": 1,
    "Int16": 2,
    "UInt16": 2,
    "Int32": 4,
    "UInt32": 4,
    "Int64": 8,
    "Float64": 8,
    "Uuid": 16,
}


def snake(name):
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def upper(name):
    return snake(name).upper()


def default_src():
    lock = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Cargo.lock")
    version = "*"
    try:
        text = open(lock).read()
        m = re.search(r'name = "kafka-protocol"\nversion = "([^"]+)"', text)
        if m:
            version = m.group(1)
    except OSError:
        pass
    pattern = os.path.expanduser(
        f"~/.cargo/registry/src/*/kafka-protocol-{version}/src/messages"
    )
    found = sorted(glob.glob(pattern))
    if not found:
        sys.exit(f"no kafka-protocol sources at {pattern}; pass --src")
    return found[-1]


def block(text, start):
    """The text between the `{` at or after `start` and its matching `}`."""
    i = text.index("{", start)
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    raise ValueError("unbalanced braces")


def normalize(text):
    text = re.sub(r'"(\\.|[^"\\])*"', '""', text)  # strings may hold braces
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"types::(Option)?Struct\s*\{\s*version\s*\}", r"types::\1Struct<version>", text)


class Struct:
    def __init__(self, name, text, raw):
        self.name = name
        decl = block(text, text.index(f"pub struct {name} {{"))
        self.types = dict(re.findall(r"pub (\w+): ([^,]+),", decl))
        # The doc comments' "Supported API versions", for --check-docs.
        self.docs = {}
        raw_decl = block(raw, raw.index(f"pub struct {name} {{"))
        for m in re.finditer(
            r"Supported API versions: (none|(\d+)(?:-(\d+))?)\n(?:\s*///[^\n]*\n)*\s*pub (\w+):",
            raw_decl,
        ):
            if m.group(1) == "none":
                self.docs[m.group(4)] = None
            else:
                lo = int(m.group(2))
                self.docs[m.group(4)] = (lo, int(m.group(3) or lo))
        m = re.search(
            rf"impl Message for {name} \{{\s*const VERSIONS: VersionRange = VersionRange \{{ min: (-?\d+), max: (-?\d+) \}}",
            text,
        )
        self.min, self.max = int(m.group(1)), int(m.group(2))
        start = text.index(f"impl Decodable for {name} {{")
        self.body = block(text, text.index("fn decode", start))

    def inner_type(self, var):
        """The struct a field holds: `Vec<X>`, `Option<X>`, `X` -> `X`."""
        ty = self.types[var]
        while True:
            m = re.fullmatch(r"(?:Vec|Option)<(.+)>", ty)
            if not m:
                break
            ty = m.group(1)
        return ty.split("::")[-1]


class Frame:
    def __init__(self, active, tag=None):
        self.active = active
        self.tag = tag
        self.taken = None  # for an if/else chain: whether a branch has been taken
        self.prev_chain = None  # the if chain that just closed in this frame, for `else`


COND_OK = re.compile(r"^[\sversion0-9<>=!&|()-]+$")
DECODE = re.compile(
    r"types::([A-Za-z0-9]+(?:<version>)?(?:\(types::[A-Za-z0-9]+(?:<version>)?\))?)\.decode\(buf\)"
)
ASSIGN = re.compile(r"^(?:let\s+(?:mut\s+)?)?(\w+)\s*(?::\s*\w+\s*)?=(?![=>])")


def cond(text, version):
    text = text.strip()
    if not COND_OK.match(text):
        raise ValueError(f"condition not understood: {text!r}")
    expr = text.replace("&&", " and ").replace("||", " or ")
    return bool(eval(expr, {}, {"version": version}))


def run(body, version):
    """What decode() reads at `version`: [(position, var, wire type, tag)], the tags it
    refuses, and whether it reads a tagged-field section."""
    reads, refused, flexible = [], set(), False
    stack = [Frame(True)]
    var = None
    pending = ""

    def statement(text, pos):
        nonlocal var, flexible
        text = text.strip()
        m = ASSIGN.match(text)
        if m:
            var = m.group(1)
        frame = stack[-1]
        if not frame.active:
            return
        if "bail!" in text:
            if frame.tag is None:
                raise ValueError(f"decode bails at version {version}")
            refused.add(frame.tag)
        for d in DECODE.finditer(text):
            wire = d.group(1)
            if wire == "UnsignedVarInt":
                if var == "num_tagged_fields":
                    flexible = True
                elif var not in ("tag", "size"):
                    raise ValueError(f"unexpected varint {var}")
                continue
            reads.append((pos, var, wire, frame.tag))

    tokens = re.findall(r"\{|\}|;|[^{};]+", body)
    for pos, tok in enumerate(tokens):
        if tok == "{":
            parent = stack[-1]
            header = pending.strip()
            pending = ""
            m = re.match(r"^(.*?)\bif\b(.*)$", header)
            if header.startswith("else"):
                chain = parent.prev_chain
                if chain is None:
                    raise ValueError("else without if")
                rest = header[len("else") :].strip()
                if rest.startswith("if"):
                    c = cond(rest[2:], version)
                    frame = Frame(parent.active and not chain and c, parent.tag)
                    frame.taken = chain or c
                else:
                    frame = Frame(parent.active and not chain, parent.tag)
                    frame.taken = True
            elif m and not m.group(1).strip().startswith("for"):
                statement(m.group(1), pos)  # `let x = if ...`
                c = cond(m.group(2), version)
                frame = Frame(parent.active and c, parent.tag)
                frame.taken = c
            elif re.fullmatch(r"\d+\s*=>", header):
                frame = Frame(parent.active, int(header.split()[0]))
            elif re.fullmatch(r"_\s*=>", header):
                frame = Frame(False)
            else:
                statement(header, pos)
                frame = Frame(parent.active, parent.tag)
            parent.prev_chain = None
            stack.append(frame)
        elif tok == "}":
            statement(pending, pos)
            pending = ""
            frame = stack.pop()
            stack[-1].prev_chain = frame.taken
        elif tok == ";":
            statement(pending, pos)
            pending = ""
            stack[-1].prev_chain = None
        else:
            pending += tok
    return reads, refused, flexible


def ty_of(s, var, wire, version, flexible):
    compact = wire.startswith("Compact")
    if compact != flexible and wire not in FIXED and not wire.startswith(
        ("Struct", "OptionStruct")
    ):
        raise ValueError(f"{s.name}.{var} v{version}: {wire} at flexible={flexible}")
    m = re.fullmatch(r"(?:Compact)?Array\(types::(.+)\)", wire)
    if m:
        elem = m.group(1)
        if elem == "Struct<version>":
            return ("Structs", s.inner_type(var))
        if elem in FIXED:
            return ("Fixeds", FIXED[elem])
        if elem in ("String", "CompactString"):
            if (elem == "CompactString") != flexible:
                raise ValueError(f"{s.name}.{var}: {wire} at flexible={flexible}")
            return ("Strs", None)
        raise ValueError(f"{s.name}.{var}: array of {elem}")
    if wire in FIXED:
        return ("Fixed", FIXED[wire])
    if wire in ("String", "CompactString"):
        return ("Str", None)
    if wire in ("Bytes", "CompactBytes"):
        return ("Bytes", None)
    if wire == "Struct<version>":
        return ("Struct", s.inner_type(var))
    if wire == "OptionStruct<version>":
        return ("NullableStruct", s.inner_type(var))
    raise ValueError(f"{s.name}.{var}: wire type {wire} not known")


def fields_of(s):
    """[(name, tag, ty, since, until)] in decode order (tagged ones last, by arm), and the
    struct's first flexible version (None: never)."""
    per_var = {}  # (var, tag) -> {version: ty}
    order = {}
    flex = None
    for v in range(s.min, s.max + 1):
        reads, refused, flexible = run(s.body, v)
        if flexible and flex is None:
            flex = v
        if flex is not None and not flexible:
            raise ValueError(f"{s.name}: not flexible at v{v} after v{flex}")
        seen = set()
        for pos, var, wire, tag in reads:
            if tag in refused:
                continue
            key = (var, tag)
            if key in seen:
                raise ValueError(f"{s.name}.{var} read twice at v{v}")
            seen.add(key)
            per_var.setdefault(key, {})[v] = ty_of(s, var, wire, v, flexible)
            order[key] = min(order.get(key, pos), pos)
    out = []
    keys = sorted(per_var, key=lambda k: (k[1] is not None, order[k]))
    for var, tag in keys:
        versions = per_var[(var, tag)]
        run_start = None
        for v in range(s.min, s.max + 2):
            ty = versions.get(v)
            if run_start is not None and ty != versions[run_start]:
                out.append((var, tag, versions[run_start], run_start, v - 1))
                run_start = None
            if ty is not None and run_start is None:
                run_start = v
    return out, flex


def render_ty(message, ty):
    kind, arg = ty
    if kind in ("Fixed", "Fixeds"):
        return f"{kind}({arg})"
    if kind in ("Str", "Bytes", "Strs"):
        return kind
    const = upper(message) if arg == message else f"{upper(message)}_{upper(arg)}"
    return f"{kind}({const})"


def check_docs(s, fields):
    """Where what decode() reads differs from the doc comments' "Supported API versions"."""
    out = []
    for var, doc in s.docs.items():
        got = sorted((since, until) for name, _, _, since, until in fields if name == var)
        read = (got[0][0], got[-1][1]) if got else None
        if doc is not None:
            doc = (max(doc[0], s.min), min(doc[1], s.max))
            if doc[0] > doc[1]:
                doc = None
        if read != doc:
            out.append(f"{s.name}.{var}: decode() reads it at {read}, the docs say {doc}")
    return out


def message_tables(src, message, docs=False):
    path = os.path.join(src, snake(message) + ".rs")
    raw = open(path).read()
    text = normalize(raw)
    names = re.findall(r"^pub struct (\w+) \{", text, re.M)
    structs = {n: Struct(n, text, raw) for n in names}
    root = structs[message]
    lines = []
    tables, flexes = {}, {}
    for name in names:
        tables[name], flexes[name] = fields_of(structs[name])
    flex_root = flexes[message]
    if docs:
        for name in names:
            for line in check_docs(structs[name], tables[name]):
                print(f"note: {line}", file=sys.stderr)
    # Every nested struct must be flexible exactly where the message is: the walker assumes one
    # flexibility per message.
    for name in names:
        s, flex = structs[name], flexes[name]
        for v in range(max(s.min, root.min), min(s.max, root.max) + 1):
            a = flex is not None and v >= flex
            b = flex_root is not None and v >= flex_root
            if a != b:
                raise ValueError(f"{name} v{v}: flexible={a}, {message} flexible={b}")
    flexible = "never flexible" if flex_root is None else f"flexible from {flex_root}"
    lines.append(f"// {message}: versions {root.min}-{root.max}, {flexible}.")
    for name in names:
        const = upper(message) if name == message else f"{upper(message)}_{upper(name)}"
        entries = []
        for var, tag, ty, since, until in tables[name]:
            t = render_ty(message, ty)
            if tag is None:
                entries.append(f'f("{var}", {t}, {since}, {until})')
            else:
                entries.append(f'tagged("{var}", {tag}, {t}, {since}, {until})')
        lines.append(f"const {const}: &[Field] = &[{', '.join(entries)}];")
    m = re.fullmatch(r"(\w+?)(Request|Response)", message)
    schema = (
        "    Schema {\n"
        f"        api: ApiKey::{m.group(1)},\n"
        f"        dir: Direction::{m.group(2)},\n"
        f"        min: {root.min},\n"
        f"        max: {root.max},\n"
        f"        flexible: {'i16::MAX' if flex_root is None else flex_root},\n"
        f"        root: {upper(message)},\n"
        "    },"
    )
    return lines, schema


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", help="kafka-protocol's src/messages directory")
    p.add_argument("--fmt", action="store_true", help="format the output with rustfmt")
    p.add_argument(
        "--check-docs",
        action="store_true",
        help="note on stderr where decode() differs from the fields' documented versions",
    )
    p.add_argument("messages", nargs="+", help="e.g. JoinGroupRequest")
    args = p.parse_args()
    src = args.src or default_src()
    consts, schemas = [], []
    for message in args.messages:
        lines, schema = message_tables(src, message, args.check_docs)
        consts += lines
        schemas.append(schema)
    out = "\n".join(consts) + "\n\n// SCHEMAS entries:\n" + "\n".join(schemas) + "\n"
    if args.fmt:
        # rustfmt wants items: wrap the entries in a throwaway const and unwrap them again.
        wrapped = out.replace("// SCHEMAS entries:\n", "const _S: &[Schema] = &[\n") + "];\n"
        r = subprocess.run(
            ["rustfmt", "--edition", "2021", "--emit", "stdout"],
            input=wrapped,
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            sys.exit(r.stderr)
        out = r.stdout.replace("const _S: &[Schema] = &[\n", "// SCHEMAS entries:\n")
        out = out[: out.rindex("];")]
    sys.stdout.write(out)


if __name__ == "__main__":
    main()
