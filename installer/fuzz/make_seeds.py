#!/usr/bin/env python3
"""Writes the bundle and journal seeds of the installer's fuzz targets (seeds/bundle, seeds/journal).

The bundles follow coder_bundle_spec::format and the layout `coder-install bundle` writes (entry order,
ustar headers with mtime 0 and owner 0:0): a multi-platform OCI image carrying one of its two
platforms, a Docker schema2 image, and the `coder` Helm chart, with the spec and lock. Tiny layers
keep every seed a few KiB. The same content is also written in the target's documents form
(`==== path` sections with `@@N` digests and `##N` sizes), which mutations cannot desynchronise.

Run from installer/fuzz: python3 make_seeds.py
"""
import gzip
import hashlib
import io
import json
import os
import tarfile

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def targz(files):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def jdump(value):
    return json.dumps(value, separators=(",", ":")).encode()


class Bundle:
    def __init__(self):
        self.blobs = {}
        self.images = []
        self.charts = []

    def blob(self, data):
        self.blobs[digest(data)] = data
        return {"digest": digest(data), "size": len(data)}

    def image_manifest(self, manifest_type, config_type, layer_type, arch, text):
        config = self.blob(jdump({"architecture": arch, "os": "linux", "rootfs": {"type": "layers"}}))
        layer = self.blob(targz([("etc/motd", text)]))
        manifest = jdump({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": dict(config, mediaType=config_type),
            "layers": [dict(layer, mediaType=layer_type)],
        })
        return manifest, [config["digest"], layer["digest"]]

    def artifact(self, kind, name, ref, top, media_type, platforms, blobs):
        blobs = sorted(set(blobs + [digest(top)]))
        entry = {
            "name": name, "ref": ref, "digest": digest(top), "media_type": media_type,
            "platforms": platforms, "blobs": blobs,
            "size": sum(len(self.blobs[b]) for b in blobs),
        }
        (self.images if kind == "image" else self.charts).append(entry)

    def multiarch(self):
        amd64, blobs = self.image_manifest(OCI_MANIFEST, OCI_CONFIG, OCI_LAYER, "amd64", b"amd64\n")
        self.blob(amd64)
        arm64 = jdump({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {}, "layers": []})
        index = jdump({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": digest(amd64), "size": len(amd64),
             "platform": {"architecture": "amd64", "os": "linux"}},
            # Not carried: the bundle is for linux/amd64 only.
            {"mediaType": OCI_MANIFEST, "digest": digest(arm64), "size": len(arm64),
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        ]})
        self.blob(index)
        self.artifact("image", "coder-service", "docker.io/coderenvs/coder-service:1.0.0", index, OCI_INDEX,
                      [{"platform": "linux/amd64", "digest": digest(amd64)}], blobs + [digest(amd64)])
        return index

    def signatures(self, image):
        """A cosign simple-signing signature of `image`'s carried platform (its ECDSA signature
        made by no key: the fuzzed checks reach the signature manifest, base64 and DER), and
        the index's uncarried arm64 child carried after all, unlisted."""
        entry = image
        subject = entry["platforms"][0]["digest"]
        payload = jdump({"critical": {"identity": {"docker-reference": "docker.io/coderenvs/coder-service"},
                                      "image": {"docker-manifest-digest": subject},
                                      "type": "cosign container image signature"}, "optional": None})
        layer = self.blob(payload)
        config = self.blob(b"{}")
        signature = jdump({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": dict(config, mediaType="application/vnd.oci.image.config.v1+json"),
                           "layers": [dict(layer, mediaType="application/vnd.dev.cosign.simplesigning.v1+json",
                                           annotations={"dev.cosignproject.cosign/signature":
                                                        "MEUCIQDx" + "A" * 88})]})
        self.blob(signature)
        entry["referrers"] = [{
            "subject": subject, "kind": "signature", "tag": "sha256-" + subject[len("sha256:"):] + ".sig",
            "digest": digest(signature), "media_type": OCI_MANIFEST, "size": len(signature),
            "blobs": sorted([digest(signature), config["digest"], layer["digest"]]),
        }]
        arm64 = jdump({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {}, "layers": []})
        self.blob(arm64)
        entry["blobs"] = sorted(set(entry["blobs"] + [digest(arm64)]))

    def docker(self):
        manifest, blobs = self.image_manifest(DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER, "amd64", b"pg\n")
        self.blob(manifest)
        self.artifact("image", "postgres", "docker.io/library/postgres:13", manifest, DOCKER_MANIFEST, [], blobs)
        return manifest

    def chart(self):
        chart_yaml = b"apiVersion: v2\nname: coder\nversion: 1.0.0\n"
        config = self.blob(jdump({"apiVersion": "v2", "name": "coder", "version": "1.0.0"}))
        layer = self.blob(targz([
            ("coder/Chart.yaml", chart_yaml),
            ("coder/values.yaml", b"replicas: 1\n"),
            ("coder/templates/cm.yaml", b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"),
        ]))
        manifest = jdump({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                          "config": dict(config, mediaType=HELM_CONFIG),
                          "layers": [dict(layer, mediaType=HELM_LAYER)]})
        self.blob(manifest)
        self.artifact("chart", "coder", "oci://ghcr.io/coder/charts/coder:1.0.0", manifest, OCI_MANIFEST, [],
                      [config["digest"], layer["digest"]])
        return manifest


SPEC = b"""name: coder
version: 1.0.0
platforms: [linux/amd64]
images:
  - name: coder-service
    ref: docker.io/coderenvs/coder-service:1.0.0
  - name: postgres
    ref: docker.io/library/postgres:13
charts:
  - name: coder
    ref: oci://ghcr.io/coder/charts/coder:1.0.0
"""


def lock(bundle):
    lines = ["version: 1", "spec:", "  name: coder", "  version: 1.0.0",
             "locked_at: 2026-11-30T12:00:00Z", "images:"]
    for kind, artifacts in (("images", bundle.images), ("charts", bundle.charts)):
        if kind == "charts":
            lines.append("charts:")
        for a in artifacts:
            lines += [f"  - name: {a['name']}", f"    ref: {a['ref']}", f"    digest: {a['digest']}",
                      f"    media_type: {a['media_type']}", f"    size: {len(bundle.blobs[a['digest']])}"]
            for p in a["platforms"]:
                child = bundle.blobs[p["digest"]]
                lines += ["    platforms:", f"      - platform: {p['platform']}", f"        digest: {p['digest']}",
                          f"        media_type: {OCI_MANIFEST}", f"        size: {len(child)}"]
    return ("\n".join(lines) + "\n").encode()


def documents(bundle, delta=None, signed=False, format_version=1):
    descriptors = [{"mediaType": a["media_type"], "digest": a["digest"], "size": len(bundle.blobs[a["digest"]]),
                    "annotations": {"org.opencontainers.image.ref.name": a["ref"]}}
                   for a in bundle.images + bundle.charts]
    index = jdump({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors})
    lock_text = lock(bundle)
    blobs = {d: b for d, b in bundle.blobs.items()}
    omitted = []
    if delta:
        for d in delta:
            omitted.append({"digest": d, "size": len(blobs.pop(d))})
    manifest = {
        "format_version": format_version, "tool": "coder-install 0.1.0", "created": "2026-11-30T12:00:00Z",
        "name": "coder", "version": "1.0.0", "platforms": ["linux/amd64"],
        "index_digest": digest(index), "spec_digest": digest(SPEC), "lock_digest": digest(lock_text),
        "images": bundle.images, "charts": bundle.charts,
        "blobs": [{"digest": d, "size": len(blobs[d])} for d in sorted(blobs)],
        "total_size": sum(len(b) for b in blobs.values()),
    }
    if delta:
        manifest["delta"] = {"base": "coder 0.9.0 (old.bundle)", "omitted": sorted(omitted, key=lambda b: b["digest"])}
    manifest = json.dumps(manifest, indent=2).encode()
    entries = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index),
               ("blobs/", None), ("blobs/sha256/", None), ("coder-bundle/", None),
               ("coder-bundle/manifest.json", manifest)]
    if signed:
        entries.append(("coder-bundle/manifest.json.sig", bytes(range(64))))
    entries += [("coder-bundle/spec.yaml", SPEC), ("coder-bundle/images.lock", lock_text)]
    entries += [("blobs/sha256/" + d[len("sha256:"):], blobs[d]) for d in sorted(blobs)]
    return entries


def write_tar(path, entries):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    with open(path, "wb") as out:
        out.write(raw.getvalue())


def write_documents(path, entries, bundle, chart_files):
    """The documents form: every digest and size replaced by a reference to its section."""
    ordered = sorted(entries, key=lambda e: (not e[0].startswith("blobs/sha256/") or e[1] is None, e[0] == "coder-bundle/manifest.json"))
    # Blobs first (leaves before what references them), then the documents, the manifest last.
    blobs = [e for e in ordered if e[0].startswith("blobs/sha256/") and e[1] is not None]
    others = [e for e in ordered if e not in blobs]
    refs = {}
    done = []

    def referenced(data):
        for name, (hexdigest, size) in refs.items():
            data = data.replace(hexdigest.encode(), b"@@" + name.encode())
            data = data.replace(b'"size": %d' % size, b'"size": ##' + name.encode())
            data = data.replace(b'"size":%d' % size, b'"size":##' + name.encode())
        return data

    def ordered_blobs(pending):
        # A blob can only refer to blobs placed before it.
        while pending:
            for entry in pending:
                text = entry[1]
                if not any(d[len("sha256:"):].encode() in text for d in bundle.blobs
                           if "blobs/sha256/" + d[len("sha256:"):] in [p[0] for p in pending] and
                           "blobs/sha256/" + d[len("sha256:"):] != entry[0]):
                    pending.remove(entry)
                    yield entry
                    break

    out = []
    names = "0123456789abcdefghijklmnopqrstuvwxyz"
    for name, data in list(ordered_blobs(blobs)) + [e for e in others if e[1] is not None and e[0] != "coder-bundle/manifest.json"] + [e for e in others if e[0] == "coder-bundle/manifest.json"] + [e for e in others if e[1] is None]:
        if data is None:
            out.append(b"==== " + name.encode() + b"\n")
            continue
        hexdigest = hashlib.sha256(data).hexdigest()
        section = names[len(done)]
        header = referenced(name.encode()).replace(hexdigest.encode(), b"@@.")
        if data in chart_files:
            out.append(b"==== " + header + b" <chart\n" + referenced(chart_files[data]))
        else:
            out.append(b"==== " + header + b"\n" + referenced(data))
        refs[section] = (hexdigest, len(data))
        done.append(name)
    with open(path, "wb") as f:
        f.write(b"\n".join(part.rstrip(b"\n") if False else part for part in out))


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def main():
    os.makedirs("seeds/bundle", exist_ok=True)
    full = Bundle()
    full.multiarch()
    full.docker()
    full.chart()
    entries = documents(full, signed=True)
    write_tar("seeds/bundle/signed-multiarch.bundle", entries)
    write_tar("seeds/bundle/delta.bundle", documents(full, delta=[d for d in full.images[1]["blobs"]
                                                                   if d != full.images[1]["digest"]]))
    cosigned = Bundle()
    cosigned.multiarch()
    cosigned.signatures(cosigned.images[0])
    cosigned.chart()
    write_tar("seeds/bundle/image-signatures.bundle", documents(cosigned, format_version=2))
    small = Bundle()
    small.docker()
    small.chart()
    small_entries = documents(small)
    write_tar("seeds/bundle/unsigned.bundle", small_entries)

    # The documents form of the small bundle: the chart layer as its files.
    layer = [b for b in small.blobs.values() if b[:2] == b"\x1f\x8b" and b"templates" in gzip.decompress(b)][0]
    files = tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer)))
    chart_text = b"".join(b"---- " + m.name.encode() + b"\n" + files.extractfile(m).read() for m in files.getmembers())
    write_documents("seeds/bundle/documents.txt", small_entries, small, {layer: chart_text})

    # A split bundle's index (the target also opens the raw input as one).
    with open("seeds/bundle/split.parts.json", "wb") as f:
        f.write(jdump({"kind": "coder-install split bundle", "format": 1, "bundle_size": 65539,
                       "part_size": 65536,
                       "parts": [{"file": "fuzz.split.part000", "size": 65536, "sha256": sha(b"a")},
                                 {"file": "fuzz.split.part001", "size": 3, "sha256": sha(b"b")}]}))

    os.makedirs("seeds/journal", exist_ok=True)
    with open("seeds/journal/resume.journal", "w") as f:
        f.write(f"coder-install bundle journal 1 0f1e2d\npart {sha(b'a')} 1048576\ndone {sha(b'b')}\n"
                f"part {sha(b'a')} 2097152\ndone {sha(b'a')}\npart {sha(b'c')} 12")


if __name__ == "__main__":
    main()
