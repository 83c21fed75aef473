#!/usr/bin/env python3
"""Generates src/table.json: for every message of the `k8s-pb` crate, its fields'
protobuf tags, wire kinds and Kubernetes JSON names.

Tags and kinds come from k8s-pb's prost attributes; JSON names from k8s-openapi's
deserializers (`"podIP" => Field::Key_pod_ip`), because snake_case -> camelCase is not
reversible (podIP, hostIPs, targetCPUUtilizationPercentage). Run from the repo root:
    python3 crates/skiff-protobuf/gen/gen_table.py
The test `table_is_current` runs it in check mode."""
import json, os, re, subprocess, sys

def sources():
    meta = json.loads(subprocess.check_output(["cargo", "metadata", "--format-version", "1"], stderr=subprocess.DEVNULL))
    out = {}
    for p in meta["packages"]:
        if p["name"] in ("k8s-pb", "k8s-openapi"):
            out[p["name"]] = os.path.dirname(p["manifest_path"])
    return out

FIELD_RE = re.compile(r'#\[prost\(([^\]]*)\)\]\s*pub (?:r#)?(\w+):\s*(.*?),\s*\n(?=\s*(?:///|#\[|\}|pub ))', re.S)
STRUCT_RE = re.compile(r'pub struct (\w+) \{(.*?)\n\}', re.S)

def resolve(ty, module):
    """The fully qualified proto name of the message a Rust type path points at."""
    ty = re.sub(r'\s+', '', ty).replace(",>", ">")
    # innermost generic argument / last path
    for wrapper in ("::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<"):
        if ty.startswith(wrapper):
            return resolve(ty[len(wrapper):-1], module)
    if ty.startswith("::prost::alloc::collections::BTreeMap<"):
        inner = ty[len("::prost::alloc::collections::BTreeMap<"):-1]
        return resolve(inner.split(",", 1)[1], module)
    parts = ty.split("::")
    up = 0
    while parts and parts[0] == "super":
        up += 1
        parts = parts[1:]
    base = module[:len(module) - up] if up else module
    return "io.k8s." + ".".join(base + parts)

def parse_pb(root):
    msgs = {}
    src = os.path.join(root, "src")
    for dirpath, _, files in os.walk(src):
        if "mod.rs" not in files:
            continue
        module = os.path.relpath(dirpath, src).split(os.sep)
        if module[0] not in ("api", "apimachinery"):
            continue
        text = open(os.path.join(dirpath, "mod.rs")).read()
        for m in STRUCT_RE.finditer(text):
            name, body = m.group(1), m.group(2) + "\n}"
            fields = []
            for f in FIELD_RE.finditer(body):
                attr, snake, ty = f.group(1), f.group(2), f.group(3)
                tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
                repeated = " repeated" in attr or attr.startswith("repeated")
                mm = re.match(r'btree_map = "string, (\w+)"', attr)
                if mm:
                    vk = mm.group(1)
                    kind = "map:" + ("message:" + resolve(ty, module) if vk == "message" else vk)
                else:
                    k = attr.split(",")[0].strip()
                    if k.startswith("bytes"):
                        k = "bytes"
                    kind = "message:" + resolve(ty, module) if k == "message" else k
                fields.append([tag, snake, kind, repeated])
            msgs["io.k8s." + ".".join(module) + "." + name] = fields
    return msgs

def parse_openapi(root):
    names = {}
    src = os.path.join(root, "src", "v1_33")
    for dirpath, _, files in os.walk(src):
        module = os.path.relpath(dirpath, src).split(os.sep)
        for fn in files:
            if fn == "mod.rs" or not fn.endswith(".rs"):
                continue
            text = open(os.path.join(dirpath, fn)).read()
            s = re.search(r'pub struct (\w+)', text)
            if not s:
                continue
            pairs = dict((key.rstrip("_"), js) for js, key in re.findall(r'"([A-Za-z0-9$_.-]+)" => Field::Key_(\w+),', text))
            # prost renames acronyms (HostIP -> HostIp): key case-insensitively.
            names[("io.k8s." + ".".join(module) + "." + s.group(1)).lower()] = pairs
    return names

def camel(s):
    p = s.split("_")
    return p[0] + "".join(x[:1].upper() + x[1:] for x in p[1:])

def build():
    src = sources()
    pb = parse_pb(src["k8s-pb"])
    oa = parse_openapi(src["k8s-openapi"])
    table = {}
    for msg, fields in sorted(pb.items()):
        names = oa.get(msg.lower(), {})
        # Match ignoring case and underscores: the two crates split acronyms differently
        # (target_ww_ns vs target_wwns), the JSON name is the same.
        by_norm = {js.lower(): js for js in names.values()}
        table[msg] = [[tag, by_norm.get(snake.replace("_", ""), camel(snake)), kind, rep] for tag, snake, kind, rep in fields]
    return json.dumps(table, sort_keys=True, separators=(",", ":")) + "\n"

if __name__ == "__main__":
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "table.json")
    data = build()
    if "--check" in sys.argv:
        sys.exit(0 if open(out).read() == data else 1)
    open(out, "w").write(data)
    print(f"wrote {out}: {len(json.loads(data))} messages")
