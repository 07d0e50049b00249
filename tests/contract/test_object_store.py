"""One ObjectStore contract, run against every backend (a local folder, S3 on moto_server)."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import urllib3
from minio.error import S3Error

from clients.errors import InvalidRequest, NotFound, Unauthenticated, Unavailable
from flight_server import storage
from flight_server.config import MinioSettings, StorageSettings
from flight_server.storage import LocalObjectStore, ObjectStore, S3ObjectStore, load_object_store
from flight_server.storage.local import is_temp_name
from flight_server.storage.s3 import is_transient, map_error
from tests.fixtures.s3 import MotoServer
from tests.fixtures.services import free_port

BIG = 12 * 1024 * 1024 + 17  # > 5 MiB part size: the S3 backend uploads it in parts


def make_s3(moto: MotoServer, bucket: str, **kw) -> S3ObjectStore:
    kw.setdefault("retry_attempts", 2)
    kw.setdefault("retry_max_seconds", 0.2)
    kw.setdefault("part_size", 5 * 1024 * 1024)  # BIG objects still take the multipart path
    return S3ObjectStore(moto.endpoint, moto.access_key, moto.secret_key, bucket, **kw)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        s: ObjectStore = LocalObjectStore(tmp_path / "objects")
    else:
        s = make_s3(request.getfixturevalue("moto_server"), request.getfixturevalue("s3_bucket"))
    yield s
    s.close()


def keys(store: ObjectStore, prefix: str = "") -> list[str]:
    return [o.key for o in store.list(prefix)]


def no_temp_files(folder: Path) -> bool:
    return not any(is_temp_name(p.name) or p.name.endswith(".part") for p in folder.rglob("*"))


# -- the contract ---------------------------------------------------------------------------
def test_put_get_bytes_round_trip(store: ObjectStore) -> None:
    assert store.put_bytes("t/a.bin", b"hello\x00world") == 11
    assert store.get_bytes("t/a.bin") == b"hello\x00world"
    assert store.put_bytes("t/empty", b"") == 0
    assert store.get_bytes("t/empty") == b""


def test_put_file_round_trip_leaves_source(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "src.parquet"
    src.write_bytes(b"PAR1" + bytes(range(256)) * 10)
    assert store.put_file("t/f.parquet", src) == src.stat().st_size
    assert src.read_bytes() == store.get_bytes("t/f.parquet")  # the caller's file is untouched
    src.write_bytes(b"changed")  # later changes to the source do not reach the object
    assert store.get_bytes("t/f.parquet").startswith(b"PAR1")


def test_get_to_file(store: ObjectStore, tmp_path: Path) -> None:
    store.put_bytes("t/x.bin", b"x" * 1000)
    dest = tmp_path / "cache" / "deep" / "x.bin"  # parent folders are created
    assert store.get_to_file("t/x.bin", dest) == 1000
    assert dest.read_bytes() == b"x" * 1000
    store.put_bytes("t/x.bin", b"y")
    assert store.get_to_file("t/x.bin", str(dest)) == 1  # replaces an existing file
    assert dest.read_bytes() == b"y"
    assert no_temp_files(tmp_path / "cache")


def test_exists_and_stat(store: ObjectStore) -> None:
    assert not store.exists("t/s.bin")
    store.put_bytes("t/s.bin", b"12345")
    assert store.exists("t/s.bin")
    assert not store.exists("t")  # a prefix is not an object
    info = store.stat("t/s.bin")
    assert (info.key, info.size) == ("t/s.bin", 5)
    assert info.last_modified is not None and info.last_modified.tzinfo is not None
    assert abs(info.last_modified - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)


@pytest.mark.parametrize("op", ["get_bytes", "stat", "get_to_file"])
def test_missing_key_is_not_found(store: ObjectStore, op: str, tmp_path: Path) -> None:
    store.put_bytes("t/present", b"1")
    dest = tmp_path / "out.bin"
    args = ("t/missing",) + ((dest,) if op == "get_to_file" else ())
    with pytest.raises(NotFound) as err:
        getattr(store, op)(*args)
    assert "t/missing" in err.value.message
    assert not dest.exists() and no_temp_files(tmp_path)


def test_delete_is_idempotent(store: ObjectStore) -> None:
    store.delete("t/never-existed")
    store.put_bytes("t/d.bin", b"1")
    store.delete("t/d.bin")
    assert not store.exists("t/d.bin")
    store.delete("t/d.bin")
    store.delete_many(["t/d.bin", "t/nope"])
    store.delete_many([])


def test_delete_many_and_delete_prefix(store: ObjectStore) -> None:
    for k in ("a/1", "a/2", "a/b/3", "ab/4", "c/5"):
        store.put_bytes(k, k.encode())
    assert store.delete_prefix("a/") == 3
    assert keys(store) == ["ab/4", "c/5"]
    store.delete_many(["ab/4", "c/5", "zzz/missing"])
    assert keys(store) == []
    assert store.delete_prefix("a/") == 0


def test_list_is_sorted_recursive_and_filtered(store: ObjectStore) -> None:
    names = ["t/date=2024-01-02/n1-2.parquet", "t/date=2024-01-01/n1-1.parquet", "t/x",
             "t/date=2024-01-01/n0-9.parquet", "u/y", "t2/z", "t/date=2024-01-10/a.parquet"]
    for i, k in enumerate(names):
        store.put_bytes(k, b"0" * i)
    assert keys(store) == sorted(names)
    assert keys(store, "t/") == sorted(k for k in names if k.startswith("t/"))
    assert keys(store, "t") == sorted(k for k in names if k.startswith("t"))
    assert keys(store, "t/date=2024-01-0") == sorted(k for k in names if "=2024-01-0" in k)
    assert keys(store, "t/date=2024-01-01/") == ["t/date=2024-01-01/n0-9.parquet",
                                                  "t/date=2024-01-01/n1-1.parquet"]
    assert keys(store, "nope/") == [] and keys(store, "t/x/") == []
    sizes = {o.key: o.size for o in store.list()}
    assert sizes == {k: i for i, k in enumerate(names)}


def test_large_binary_object(store: ObjectStore, tmp_path: Path) -> None:
    data = random.Random(7).randbytes(BIG)
    digest = hashlib.sha256(data).hexdigest()
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    assert store.put_file("big/file.bin", src) == BIG
    assert store.put_bytes("big/bytes.bin", data) == BIG
    assert store.stat("big/file.bin").size == BIG
    out = tmp_path / "out" / "big.bin"
    assert store.get_to_file("big/file.bin", out) == BIG
    assert hashlib.sha256(out.read_bytes()).hexdigest() == digest
    assert hashlib.sha256(store.get_bytes("big/bytes.bin")).hexdigest() == digest


def test_overwrite(store: ObjectStore) -> None:
    store.put_bytes("t/o.bin", b"first version")
    store.put_bytes("t/o.bin", b"v2")
    assert store.get_bytes("t/o.bin") == b"v2"
    assert store.stat("t/o.bin").size == 2
    assert keys(store) == ["t/o.bin"]


def test_partition_style_keys(store: ObjectStore) -> None:
    key = "events/date=2024-01-01/node-1-000000000001.parquet"
    store.put_bytes(key, b"PAR1")
    assert store.get_bytes(key) == b"PAR1"
    assert keys(store, "events/date=2024-01-01/") == [key]
    assert store.stat(key).key == key


def test_local_path(store: ObjectStore) -> None:
    store.put_bytes("t/l.bin", b"in place")
    path = store.local_path("t/l.bin")
    if isinstance(store, LocalObjectStore):
        assert path is not None and path.is_file() and path.read_bytes() == b"in place"
        assert store.local_path("t/missing") is None
    else:
        assert path is None


def test_check(store: ObjectStore) -> None:
    store.check()


@pytest.mark.parametrize("bad", ["", "/abs/key", "a/../b", "..", "a//b", "./a", "a/"])
def test_invalid_keys(store: ObjectStore, bad: str) -> None:
    with pytest.raises(InvalidRequest):
        store.put_bytes(bad, b"1")
    with pytest.raises(InvalidRequest):
        store.get_bytes(bad)
    with pytest.raises(InvalidRequest):
        store.delete(bad)


def test_concurrent_writers_and_readers(store: ObjectStore) -> None:
    def work(i: int) -> bytes:
        key = f"c/date=2024-01-0{i % 3 + 1}/{i}.bin"
        store.put_bytes(key, str(i).encode() * 100)
        return store.get_bytes(key)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(32)))
    assert results == [str(i).encode() * 100 for i in range(32)]
    assert len(keys(store, "c/")) == 32


# -- local backend specifics ----------------------------------------------------------------
def test_local_writes_leave_no_temp_files_and_list_skips_them(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "root")
    store.put_bytes("a/b.bin", b"1")
    src = tmp_path / "src"
    src.write_bytes(b"2")
    store.put_file("a/c.bin", src)
    assert no_temp_files(store.root)
    (store.root / "a" / ".b.bin.abcd1234.tmp").write_bytes(b"half")  # a crashed writer's leftover
    assert keys(store) == ["a/b.bin", "a/c.bin"]
    assert store.url == f"file://{store.root}"


def test_local_delete_prunes_empty_folders(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "root")
    store.put_bytes("t/date=2024-01-01/x.parquet", b"1")
    store.put_bytes("t/keep.bin", b"1")
    store.delete("t/date=2024-01-01/x.parquet")
    assert not (store.root / "t" / "date=2024-01-01").exists()
    assert (store.root / "t").is_dir()
    store.delete("t/keep.bin")
    assert store.root.is_dir() and list(store.root.iterdir()) == []


def test_local_check_fails_without_root(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "root")
    store.root.rmdir()
    store.root.write_bytes(b"not a folder")
    with pytest.raises(Unavailable, match="root folder"):
        store.check()


# -- S3 backend specifics -------------------------------------------------------------------
@pytest.mark.s3
def test_s3_creates_missing_bucket(moto_server: MotoServer, s3_bucket: str) -> None:
    client = moto_server.client()
    assert not client.bucket_exists(s3_bucket)
    make_s3(moto_server, s3_bucket).check()
    assert client.bucket_exists(s3_bucket)
    make_s3(moto_server, s3_bucket).check()  # an existing bucket is fine


@pytest.mark.s3
def test_s3_check_without_bucket_is_unavailable(moto_server: MotoServer, s3_bucket: str) -> None:
    store = make_s3(moto_server, s3_bucket, create_bucket=False)
    with pytest.raises(Unavailable, match=s3_bucket):
        store.check()


@pytest.mark.s3
@pytest.mark.parametrize("create_bucket", [True, False])
def test_s3_dead_endpoint_is_unavailable_quickly(create_bucket: bool) -> None:
    endpoint = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(Unavailable) as err:
        store = S3ObjectStore(endpoint, "k", "s", "bucket", retry_attempts=2, retry_max_seconds=0.2,
                              create_bucket=create_bucket)
        store.get_bytes("t/a")
    elapsed = time.monotonic() - started
    msg = err.value.message
    assert endpoint in msg and "after 2 attempts" in msg, msg
    assert "Traceback" not in msg and "object at 0x" not in msg and 'File "' not in msg, msg
    assert isinstance(err.value.__cause__, urllib3.exceptions.HTTPError)
    assert elapsed < 10, elapsed  # generous: no urllib3-level retries hide behind tenacity


@pytest.mark.s3
def test_s3_store_survives_an_endpoint_restart(moto_server: MotoServer, s3_bucket: str) -> None:
    store = make_s3(moto_server, s3_bucket)
    store.put_bytes("t/before", b"kept")
    moto_server.stop()  # snapshots the buckets: moto alone would forget them
    try:
        with pytest.raises(Unavailable, match=moto_server.endpoint):
            store.get_bytes("t/before")
        with pytest.raises(Unavailable):
            store.check()
    finally:
        moto_server.start()
    assert store.get_bytes("t/before") == b"kept"  # same instance: stale pooled connections recover
    store.put_bytes("t/after", b"new")
    assert keys(store, "t/") == ["t/after", "t/before"]


def _s3_error(code: str, status: int) -> S3Error:
    resp = urllib3.HTTPResponse(body=b"", status=status)
    return S3Error(resp, code, f"{code} message", "/bucket/key", "req", "host", "bucket", "key")


@pytest.mark.parametrize("code", ["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"])
def test_s3_bad_credentials_map_to_unauthenticated(code: str) -> None:
    exc = _s3_error(code, 403)
    assert not is_transient(exc)
    err = map_error(exc, endpoint="minio:9000", bucket="data", key="k")
    assert isinstance(err, Unauthenticated)
    assert "minio:9000" in err.message and "'data'" in err.message and code in err.message


def test_s3_error_mapping() -> None:
    assert isinstance(map_error(_s3_error("NoSuchKey", 404), endpoint="e:1", bucket="b", key="k"), NotFound)
    missing = map_error(_s3_error("NoSuchBucket", 404), endpoint="e:1", bucket="b")
    assert isinstance(missing, Unavailable) and "bucket 'b' does not exist at e:1" in missing.message
    for code, status in (("SlowDown", 503), ("InternalError", 500), ("Whatever", 502)):
        exc = _s3_error(code, status)
        assert is_transient(exc)
        assert isinstance(map_error(exc, endpoint="e:1", bucket="b", attempts=3), Unavailable)
    assert is_transient(urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out"))
    assert not is_transient(_s3_error("NoSuchKey", 404))
    assert not is_transient(ValueError("bad bucket name"))


# -- the scheme registry --------------------------------------------------------------------
def test_load_local_store(tmp_path: Path) -> None:
    store = load_object_store(f"file://{tmp_path}/objects")
    assert isinstance(store, LocalObjectStore) and store.root == tmp_path / "objects"
    for bad in ("file://relative/path", "file:relative"):
        with pytest.raises(InvalidRequest):
            load_object_store(bad)


@pytest.mark.s3
def test_load_s3_store(moto_server: MotoServer, s3_bucket: str) -> None:
    settings = StorageSettings(
        minio=MinioSettings(endpoint=moto_server.endpoint, access_key=moto_server.access_key,
                            secret_key=moto_server.secret_key, bucket=s3_bucket),
        retry_attempts=3, retry_max_seconds=0.5,
    )
    store = load_object_store(moto_server.url_for(s3_bucket), settings)
    assert isinstance(store, S3ObjectStore) and store.bucket == s3_bucket
    assert store.url == moto_server.url_for(s3_bucket)
    store.put_bytes("k", b"v")
    assert moto_server.client().get_object(s3_bucket, "k").read() == b"v"
    for bad in (f"s3://{moto_server.endpoint}", f"s3://{moto_server.endpoint}/a/b", "s3:///bucket",
                f"s3://user:secret@{moto_server.endpoint}/b"):
        with pytest.raises(InvalidRequest) as err:
            load_object_store(bad, settings)
        assert "secret" not in err.value.message


@pytest.mark.s3
def test_load_s3s_store_over_tls(tls_moto: MotoServer, s3_bucket: str) -> None:
    assert tls_moto.tls is not None
    settings = StorageSettings(minio=MinioSettings(ca_file=str(tls_moto.ca_file), access_key="a", secret_key="b"))
    store = load_object_store(tls_moto.url_for(s3_bucket), settings)
    assert store.url.startswith("s3s://")
    store.put_bytes("tls/k", b"secure")
    assert store.get_bytes("tls/k") == b"secure"
    with pytest.raises(Unavailable):  # the server's certificate is not trusted without the CA file
        load_object_store(tls_moto.url_for(s3_bucket), StorageSettings(retry_attempts=1))


def test_unknown_scheme_and_custom_registration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for url in ("gs://bucket/x", "/just/a/path"):
        with pytest.raises(InvalidRequest) as err:
            load_object_store(url)
        assert url.split("://")[0] in err.value.message
    monkeypatch.setitem(storage._FACTORIES, "mem", lambda url, s: LocalObjectStore(tmp_path / "mem"))
    assert isinstance(load_object_store("mem://anything"), LocalObjectStore)


@pytest.fixture(scope="module")
def tls_moto(moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A second moto_server speaking HTTPS with a certificate for 127.0.0.1 from a test CA."""
    from tests.fixtures.certs import make_certs

    folder = tmp_path_factory.mktemp("moto-tls")
    certs = make_certs(folder / "tls")
    server = MotoServer(moto_server.binary, folder, tls=(certs.cert_file, certs.key_file))
    server.ca_file = certs.ca_file
    server.start()
    yield server
    server.stop(keep_data=False)

