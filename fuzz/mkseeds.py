#!/usr/bin/python3
"""mkseeds.py CORPUS_DIR FIXTURES_DIR REPO_DIR -- write the seed corpora of the fuzz targets.

Seeds come from the repository's own test data (tests/data/realhub/*.xml, config/kojid.conf,
docs/config.md), the image fixtures (tests/fixtures/make-fixtures.sh: layers, hostile layers,
OCI layouts) and the hand-written cases below (hostile tar features the fixtures do not use,
references, config shapes). Everything is generated; nothing here is committed but this script.
Deterministic: the same inputs give the same files.
"""
import hashlib
import io
import json
import os
import gzip
import subprocess
import sys
import tarfile

SENTINEL_REL = "../../sentinel"          # from <base>/<run>/t, see runtime/tests/fuzz_harness/unpack.rs
SENTINEL_ABS = "/dev/shm/ka-fuzz/sentinel"
MTIME = 1704067200


def put(corpus, target, name, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def tar_bytes(entries, fmt=tarfile.PAX_FORMAT):
    """entries: (kind, name, extra dict) with kind in dir/file/symlink/hardlink/fifo/char."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for kind, name, extra in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = extra.get("mtime", MTIME)
            ti.uid, ti.gid = extra.get("owner", (0, 0))
            ti.uname = ti.gname = ""
            ti.mode = extra.get("mode", 0o755 if kind == "dir" else 0o644)
            data = None
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif kind == "file":
                data = extra.get("data", b"x\n")
                ti.size = len(data)
            elif kind in ("symlink", "hardlink"):
                ti.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                ti.linkname = extra["to"]
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            elif kind == "char":
                ti.type = tarfile.CHRTYPE
                ti.devmajor, ti.devminor = extra.get("dev", (1, 3))
            if "pax" in extra:
                ti.pax_headers = extra["pax"]
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def layer_seeds(corpus, fixtures):
    t = "layer_unpack"
    layers = os.path.join(fixtures, "layers")
    for sub in ("", "hostile"):
        d = os.path.join(layers, sub)
        for n in sorted(os.listdir(d)):
            p = os.path.join(d, n)
            # busybox.tar (2 MB) would set libFuzzer's max_len far above what is useful.
            if n.endswith(".tar") and os.path.getsize(p) <= 64 << 10:
                put(corpus, t, (sub + "-" if sub else "") + n, open(p, "rb").read())
    cases = {
        # Writes aimed at the sentinel next to the target, relative and absolute.
        "sentinel-symlink-rel": [
            ("symlink", "s", {"to": SENTINEL_REL}),
            ("file", "s/escaped", {}),
        ],
        "sentinel-symlink-abs": [
            ("symlink", "s", {"to": SENTINEL_ABS}),
            ("file", "s/canary", {"data": b"overwritten\n"}),
            ("dir", "s/sub", {}),
        ],
        "sentinel-hardlink": [
            ("hardlink", "h", {"to": SENTINEL_REL + "/canary"}),
            ("hardlink", "h2", {"to": SENTINEL_ABS + "/canary"}),
        ],
        "sentinel-symlink-chain": [
            ("dir", "a", {}),
            ("symlink", "a/up", {"to": ".."}),
            ("symlink", "a/b", {"to": "up/up/up/sentinel"}),
            ("file", "a/b/x", {}),
            ("hardlink", "c", {"to": "a/b/canary"}),
        ],
        "sentinel-whiteout": [
            ("file", "../.wh.sentinel", {}),
            ("file", ".wh.." + "/x", {}),
            ("dir", "d", {}),
            ("file", "d/.wh..wh..opq", {}),
            ("file", "d/.wh.gone", {}),
        ],
        # PAX records the unpacker interprets.
        "pax-records": [
            ("dir", "etc", {"pax": {"mtime": "-1.5", "SCHILY.xattr.user.comment": "hi"}}),
            ("file", "short", {"pax": {"path": "etc/from-pax", "uid": "1000", "gid": "1000",
                                       "mtime": "1700000000.123456789",
                                       "SCHILY.xattr.security.capability": "\x01\x00\x00\x02",
                                       "SCHILY.xattr.user.overlay.opaque": "y",
                                       "SCHILY.xattr.trusted.overlay.redirect": "/x"}}),
            ("symlink", "l", {"to": "x", "pax": {"linkpath": "etc/from-pax"}}),
            ("file", "etc/setuid", {"mode": 0o4755, "owner": (0, 0)}),
            ("file", "etc/setgid", {"mode": 0o2755, "owner": (5, 5)}),
        ],
        "pax-sparse": [("file", "sparse", {"pax": {"GNU.sparse.major": "1"}})],
        "pax-size": [("dir", "big", {"pax": {"size": "99999999999"}})],
        "long-names": [
            ("dir", "d" * 120, {}),
            ("file", "d" * 120 + "/" + "f" * 200, {}),
            ("symlink", "l" * 150, {"to": "t" * 300}),
            ("hardlink", "h" * 110, {"to": "d" * 120 + "/" + "f" * 200}),
        ],
        "replace-kinds": [
            ("dir", "a", {}),
            ("file", "a/f", {}),
            ("file", "x", {}),
            ("dir", "x/", {"mode": 0o700}),
            ("symlink", "y", {"to": "a"}),
            ("dir", "y", {}),
            ("fifo", "p", {"mode": 0o600}),
            ("hardlink", "a/f2", {"to": "a/f"}),
            ("char", "dev/null", {"dev": (1, 3)}),
            ("file", "ro", {"mode": 0o000}),
            ("dir", "rodir", {"mode": 0o555}),
            ("file", "rodir/f", {}),
            ("dir", ".", {"mode": 0o700, "owner": (0, 0)}),
        ],
        "owners": [
            ("file", "nobody", {"owner": (65534, 65534)}),
            ("file", "unmapped", {"owner": (70000, 0)}),
        ],
    }
    for name, entries in cases.items():
        for fmt, fname in ((tarfile.PAX_FORMAT, "pax"), (tarfile.GNU_FORMAT, "gnu")):
            try:
                data = tar_bytes(entries, fmt)
            except (ValueError, tarfile.HeaderError):
                continue  # e.g. a name too long for the format
            put(corpus, t, f"{name}-{fname}.tar", data)


def stream_seeds(corpus):
    """layer_stream: selector byte (0 gzip, 1 zstd, 2 none) + blob."""
    t = "layer_stream"
    layer = tar_bytes([("dir", "etc", {}), ("file", "etc/motd", {"data": b"hello\n" * 50})],
                      tarfile.GNU_FORMAT)
    gz = lambda b: gzip.compress(b, mtime=0)
    put(corpus, t, "gzip", b"\x00" + gz(layer))
    put(corpus, t, "gzip-members", b"\x00" + gz(layer[:700]) + gz(layer[700:]))
    put(corpus, t, "gzip-padded", b"\x00" + gz(layer) + bytes(1024))
    put(corpus, t, "gzip-garbage", b"\x00" + gz(layer) + b"junk")
    put(corpus, t, "plain", b"\x02" + layer)
    try:
        z = subprocess.run(["zstd", "-q", "-c", "-3"], input=layer, capture_output=True,
                           check=True).stdout
        put(corpus, t, "zstd", b"\x01" + z)
        put(corpus, t, "zstd-frames", b"\x01" + z + z)
        # A skippable frame between two frames.
        put(corpus, t, "zstd-skippable", b"\x01" + z + b"\x50\x2a\x4d\x18\x04\x00\x00\x00abcd" + z)
    except (OSError, subprocess.CalledProcessError):
        pass


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def manifest_seeds(corpus, fixtures):
    t = "image_manifest"
    cts = ["", "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
           "application/vnd.docker.distribution.manifest.v2+json",
           "application/vnd.docker.distribution.manifest.list.v2+json"]
    oci = os.path.join(fixtures, "oci")
    n = 0
    for img in sorted(os.listdir(oci)):
        blobs = os.path.join(oci, img, "blobs", "sha256")
        idx = open(os.path.join(oci, img, "index.json"), "rb").read()
        put(corpus, t, f"{img}-index.json", b"\x00" + idx)
        todo = [d["digest"] for d in json.loads(idx)["manifests"]]
        while todo:
            d = todo.pop()
            b = open(os.path.join(blobs, d.split(":")[1]), "rb").read()
            doc = json.loads(b)
            if "manifests" in doc:
                put(corpus, t, f"{img}-{n}-index.json", bytes([2]) + b)
                todo += [m["digest"] for m in doc["manifests"]]
            else:
                cfg = open(os.path.join(blobs, doc["config"]["digest"].split(":")[1]), "rb").read()
                put(corpus, t, f"{img}-{n}-manifest.json", bytes([1]) + b + b"\x00" + cfg)
                # The same as Docker schema 2, which gets an OCI form.
                dk = dict(doc, mediaType=cts[3])
                dk["config"] = dict(doc["config"], mediaType="application/vnd.docker.container.image.v1+json")
                dk["layers"] = [dict(l, mediaType="application/vnd.docker.image.rootfs.diff.tar.gzip")
                                for l in doc["layers"]]
                put(corpus, t, f"{img}-{n}-docker.json",
                    bytes([3]) + json.dumps(dk).encode() + b"\x00" + cfg)
            n += 1
    # Hostile sizes and shapes.
    d1, d2 = sha(b"1"), sha(b"2")
    big = {"schemaVersion": 2, "mediaType": cts[1],
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d1, "size": 2},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d2,
                       "size": 18446744073709551615},
                      {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": d2,
                       "size": 1, "urls": ["http://x"], "annotations": {"a": "b"},
                       "platform": {"architecture": "amd64", "os": "linux", "os.features": ["x"]}}]}
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": [d1, d2]}}).encode()
    put(corpus, t, "huge-layer-size.json", bytes([1]) + json.dumps(big).encode() + b"\x00" + cfg)
    idx = {"schemaVersion": 2, "manifests": [
        {"mediaType": cts[1], "digest": d1, "size": 1,
         "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        {"mediaType": cts[3], "digest": d2, "size": 1,
         "platform": {"architecture": "amd64", "os": "linux", "extra": {"k": [1, 2]}}},
        {"mediaType": "application/vnd.in-toto+json", "digest": d2, "size": 1}]}
    put(corpus, t, "index-platforms.json", b"\x00" + json.dumps(idx).encode())
    put(corpus, t, "schema1.json", b"\x05" + b'{"schemaVersion":1,"fsLayers":[]}')


def archive_seeds(corpus):
    t = "oci_archive"

    def layout(index_ref=True, extra=()):
        layer = tar_bytes([("file", "hello", {"data": b"hi\n"})], tarfile.GNU_FORMAT)
        cfg = json.dumps({"architecture": "amd64", "os": "linux",
                          "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}}).encode()
        man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                     "digest": sha(cfg), "size": len(cfg)},
                          "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                      "digest": sha(layer), "size": len(layer)}]}).encode()
        desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(man),
                "size": len(man)}
        if index_ref:
            desc["annotations"] = {"org.opencontainers.image.ref.name": "latest"}
        index = json.dumps({"schemaVersion": 2, "manifests": [desc]}).encode()
        files = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index)]
        for b in (man, cfg, layer):
            files.append(("blobs/sha256/" + sha(b).split(":")[1], b))
        files += list(extra)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for name, data in files:
                ti = tarfile.TarInfo(name)
                ti.size, ti.mtime = len(data), MTIME
                tar.addfile(ti, io.BytesIO(data))
        return buf.getvalue()

    put(corpus, t, "layout.tar", layout())
    put(corpus, t, "layout-dotslash.tar",
        layout(extra=[("./index.json", b'{"schemaVersion":2,"manifests":[]}')]))
    put(corpus, t, "no-layout.tar", tar_bytes([("file", "index.json", {"data": b"{}"})]))


REFERENCES = [
    "busybox", "busybox:1.36", "fedora/fedora", "index.docker.io/library/x", "quay.io/fedora/fedora:40",
    "127.0.0.1:5000/test/busybox", "localhost/buildroot", "localhost:5000/a/b:t",
    "registry.fedoraproject.org/fedora:41",
    "busybox@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "quay.io/a/b:tag@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "[::1]:5000/x/y:z", "docker://alpine:3", "oci:/var/tmp/layout:latest", "oci:relative",
    "oci-archive:/tmp/image.tar:v1.0", "oci-archive:/tmp/image.tar", "Foo/bar", "a__b/c--d/e.f_g",
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "x" * 300, "é" * 2100,
]

CONFIGS = {
    "defaults-and-continuations.conf":
        "# comment\n; another\n[DEFAULT]\nshared = yes\n\n[kojid]\nServer = http://hub/kojihub\n"
        "topurl: http://a  \n  http://b\n\n  http://c\n\nnote = a ; not a comment\n"
        "interp = %(server)s/x\n   # indented comment\nempty =\n[kojid ] trailing\nx=1\n",
    "adjutant.conf":
        "[kojid]\nserver = https://hub.example.com/kojihub\ntopurl = https://h/kojifiles\n"
        "maxjobs = 1_0\nsleeptime = +5\nRLIMIT_NOFILE = 1024 2048\nplugins = a b\n"
        "adjutant_default_image = busybox\nlog_level = debug\n"
        "[adjutant]\nid_mapping = 200000:65536\nstatus_bind = localhost:8080\n"
        "mounts = /a:/b:ro,/c:/d\nmax_memory = 4G\nnetwork_enabled = no\n"
        "container_timeouts = pull=10,start=5,stop_grace=1,x=2\nhost_mount_map = /a=/b /c:/d\n"
        "podman_socket = /run/podman.sock\nimage_pull_policy = always\n",
    "errors.conf": "[kojid]\na = 1\nA = 2\n[kojid]\njust words\n= value\n",
    "crlf-bom.conf": "\ufeff[kojid]\r\nserver = http://x\r\n\r\n",
}


def config_seeds(corpus, repo):
    t = "kojid_config"
    put(corpus, t, "kojid.conf", open(os.path.join(repo, "config", "kojid.conf"), "rb").read())
    for name, text in CONFIGS.items():
        put(corpus, t, name, text)


def xmlrpc_seeds(corpus, repo):
    t = "xmlrpc_decode"
    d = os.path.join(repo, "tests", "data", "realhub")
    for n in sorted(os.listdir(d)):
        put(corpus, t, n, open(os.path.join(d, n), "rb").read())
    put(corpus, t, "types.xml",
        "<?xml version='1.0'?><methodResponse><params><param><value><array><data>"
        "<value>plain &amp; text</value><value><ex:nil xmlns:ex='x'/></value><value><i4> 7 </i4></value>"
        "<value><i8>9223372036854775807</i8></value><value/><value><string/></value>"
        "<value><boolean>1</boolean></value><value><double>-1.5e3</double></value>"
        "<value><dateTime.iso8601>20250702T16:29:15</dateTime.iso8601></value>"
        "<value><base64>aGVs\nbG8=</base64></value><value><string>&#x41;&#66;<![CDATA[<c>]]></string></value>"
        "<value><struct><member><name>__starstar</name><value><boolean>1</boolean></value></member>"
        "</struct></value><value><biginteger>1</biginteger></value><value><float>nan</float></value>"
        "</data></array></value></param></params></methodResponse>")
    put(corpus, t, "call.xml",
        "<?xml version='1.0'?>\n<methodCall>\n<methodName>host.closeTask</methodName>\n<params>\n"
        "<param>\n<value><int>1</int></value>\n</param>\n<param>\n<value><string>&lt;x&#13;</string>"
        "</value>\n</param>\n</params>\n</methodCall>\n")
    put(corpus, t, "value.xml", "<value><struct><member><name>a</name><value/></member></struct></value>")


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    corpus, fixtures, repo = sys.argv[1:]
    layer_seeds(corpus, fixtures)
    stream_seeds(corpus)
    manifest_seeds(corpus, fixtures)
    archive_seeds(corpus)
    for i, r in enumerate(REFERENCES):
        put(corpus, "image_reference", f"ref-{i:02}", r)
    config_seeds(corpus, repo)
    xmlrpc_seeds(corpus, repo)
    os.makedirs(os.path.join(corpus, "xmlrpc_roundtrip"), exist_ok=True)


if __name__ == "__main__":
    main()
