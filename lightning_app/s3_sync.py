"""Sync an ``s3://bucket/prefix`` dataset into a local cache.

Training reads images thousands of times; reading them from S3 each epoch would be slow and costly.
The sync copies the prefix once per node and skips objects whose size and ETag-derived marker match
what is already cached, so re-runs (and every trial of a sweep) start immediately.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import urlparse

from lightning_app.layout import DatasetLayoutError

MANIFEST = ".s3-manifest.json"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise DatasetLayoutError(f"not an s3:// URI: {uri!r} (expected s3://bucket/prefix)")
    return parsed.netloc, parsed.path.lstrip("/").rstrip("/")


def _key_prefix(prefix: str) -> str:
    """Keys under ``prefix`` start with this; empty for a dataset at the bucket root (s3://bucket)."""
    return f"{prefix}/" if prefix else ""


def cache_path(uri: str, cache_dir: str | Path) -> Path:
    """A stable local folder per URI, readable by humans (bucket/prefix) and unique (hash suffix)."""
    bucket, prefix = parse_s3_uri(uri)
    tag = hashlib.sha256(uri.encode()).hexdigest()[:8]
    return Path(cache_dir).expanduser() / f"{bucket}-{prefix.replace('/', '_')}-{tag}"


def list_class_folders(uri: str, s3_client=None) -> list[str]:
    """Class folder names under ``train/``, from a listing (no download)."""
    import boto3

    client = s3_client or boto3.client("s3")
    bucket, prefix = parse_s3_uri(uri)
    folders: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{_key_prefix(prefix)}train/", Delimiter="/"
    ):
        folders += [p["Prefix"].rstrip("/").rsplit("/", 1)[-1] for p in page.get("CommonPrefixes", [])]
    if not folders:
        raise DatasetLayoutError(
            f"no class folders under {uri}/train/: check the bucket, prefix and credentials "
            "(expected the dogImages layout: train/001.Affenpinscher/...)"
        )
    return sorted(folders)


def sync(uri: str, cache_dir: str | Path, s3_client=None) -> tuple[Path, dict[str, int]]:
    """Copy new or changed objects; return the local root and counts of downloaded/skipped objects."""
    import boto3  # deferred: local-only runs never need it

    client = s3_client or boto3.client("s3")
    bucket, prefix = parse_s3_uri(uri)
    target = cache_path(uri, cache_dir)
    target.mkdir(parents=True, exist_ok=True)
    manifest_file = target / MANIFEST
    manifest = json.loads(manifest_file.read_text()) if manifest_file.exists() else {}
    counts = {"downloaded": 0, "skipped": 0}
    listed = False
    base = _key_prefix(prefix)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
        for obj in page.get("Contents", []):
            listed = True
            key = obj["Key"]
            relative = key[len(base) :]
            if not relative or key.endswith("/"):
                continue
            local = target / relative
            marker = f"{obj['Size']}:{obj['ETag']}"
            if manifest.get(relative) == marker and local.exists():
                counts["skipped"] += 1
                continue
            local.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, key, str(local))
            manifest[relative] = marker
            counts["downloaded"] += 1
    if not listed:
        raise DatasetLayoutError(f"no objects under {uri}: check the bucket, prefix and credentials")
    manifest_file.write_text(json.dumps(manifest))
    return target, counts
